//! Parser throughput against rsip 0.4 as the baseline, on messages shaped like real
//! Direct Routing traffic: an SBC INVITE with SDP, a 183 with SDP, and the proxy's thin
//! 200 to OPTIONS (DR-OPT-1).
//!
//! Both sides do comparable work: frame/parse the message and read From, To, top Via,
//! CSeq and Contact as typed values. drhub additionally validates the whole message
//! (`check_request` / `check_response`: every mandatory header, every Via, Contact and
//! Record-Route, the Request-URI).
//!
//! Groups: `drhub/*` uses `checked_request`/`checked_response`, which are the checks
//! returning the typed views they parsed (what the daemon does); `drhub_separate/*` runs
//! `check_*` and then parses the same headers again through the accessors; `rsip/*` is
//! `rsip::SipMessage::try_from` plus `.typed()` on the same five headers.
//!
//! Run: `cargo bench --bench parse -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use drhub::sip::{Limits, Message, Status};
use rsip::prelude::{HeadersExt, ToTypedHeader};

const INPUTS: &[(&str, &[u8])] = &[
    ("invite", include_bytes!("fixtures/invite.sip")),
    (
        "session_progress_183",
        include_bytes!("fixtures/session_progress_183.sip"),
    ),
    ("options_200", include_bytes!("fixtures/options_200.sip")),
];

/// drhub as the daemon uses it: frame, then check and take the typed headers in one go.
fn drhub_work(buf: &[u8], limits: &Limits) -> usize {
    let Ok(Status::Complete(m)) = Message::parse(buf, limits) else {
        return 0;
    };
    let checked = if m.is_request() {
        m.checked_request()
    } else {
        m.checked_response()
    };
    let Ok(c) = checked else {
        return 0;
    };
    let mut n = 1;
    n += c.from.tag().map_or(0, str::len) + c.from.uri().as_str().len();
    n += c.to.uri().as_str().len();
    n += c.top_via.branch().map_or(0, str::len) + usize::from(c.top_via.port().unwrap_or(0));
    n += c.cseq.seq as usize + c.cseq.method.as_str().len();
    n += c
        .contact
        .map_or(0, |c| c.uri().map_or(0, |u| u.as_str().len()));
    n + m.body().len()
}

/// drhub with the checks and the typed accessors as separate steps (each header parsed
/// twice). Returns a value derived from all of them so nothing is optimised away.
fn drhub_separate(buf: &[u8], limits: &Limits) -> usize {
    let Ok(Status::Complete(m)) = Message::parse(buf, limits) else {
        return 0;
    };
    let checked = if m.is_request() {
        m.check_request()
    } else {
        m.check_response()
    };
    let mut n = usize::from(checked.is_ok());
    if let Some(Ok(from)) = m.from() {
        n += from.tag().map_or(0, str::len) + from.uri().as_str().len();
    }
    if let Some(Ok(to)) = m.to() {
        n += to.uri().as_str().len();
    }
    if let Some(Ok(via)) = m.top_via() {
        n += via.branch().map_or(0, str::len) + usize::from(via.port().unwrap_or(0));
    }
    if let Some(Ok(cseq)) = m.cseq() {
        n += cseq.seq as usize + cseq.method.as_str().len();
    }
    if let Some(Ok(contact)) = m.contact() {
        n += contact.uri().map_or(0, |u| u.as_str().len());
    }
    n + m.body().len()
}

/// rsip: parse, then convert the same headers to their typed forms.
fn rsip_work(buf: &[u8]) -> usize {
    let Ok(msg) = rsip::SipMessage::try_from(buf) else {
        return 0;
    };
    let mut n = 1;
    if let Ok(from) = msg.from_header().and_then(|h| h.typed()) {
        n += from.tag().map_or(0, |t| t.to_string().len())
            + from.uri.host_with_port.port.map_or(0, |_| 1);
    }
    if let Ok(to) = msg.to_header().and_then(|h| h.typed()) {
        n += to.params.len();
    }
    if let Ok(via) = msg.via_header().and_then(|h| h.typed()) {
        n += via.params.len();
    }
    if let Ok(cseq) = msg.cseq_header().and_then(|h| h.typed()) {
        n += cseq.seq as usize;
    }
    if let Ok(contact) = msg.contact_header().and_then(|h| h.typed()) {
        n += contact.params.len();
    }
    n + msg.body().len()
}

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    for (name, buf) in INPUTS {
        // Both parsers must really succeed on the input, or the numbers mean nothing.
        assert!(drhub_work(buf, &limits) > 1, "drhub failed on {name}");
        assert!(drhub_separate(buf, &limits) > 1, "drhub failed on {name}");
        assert!(
            rsip::SipMessage::try_from(*buf).is_ok(),
            "rsip failed on {name}"
        );
    }

    let mut g = c.benchmark_group("drhub");
    for (name, buf) in INPUTS {
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_function(*name, |b| {
            b.iter(|| drhub_work(black_box(buf), &limits));
        });
    }
    g.finish();

    let mut g = c.benchmark_group("drhub_separate");
    for (name, buf) in INPUTS {
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_function(*name, |b| {
            b.iter(|| drhub_separate(black_box(buf), &limits));
        });
    }
    g.finish();

    let mut g = c.benchmark_group("rsip");
    for (name, buf) in INPUTS {
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_function(*name, |b| {
            b.iter(|| rsip_work(black_box(buf)));
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
