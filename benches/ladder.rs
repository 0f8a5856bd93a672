//! What the status page's ladders cost the daemon per call: the seven messages of an
//! inbound call cycle (INVITE, 100, 180, 200, ACK, BYE, 200; each a copy of the lab's
//! INVITE and 183 fixtures with its own Call-ID) recorded by
//! [`drhub::observe::ladder::Ladders`] with the shipped `[api] ladder_calls = 200`, so
//! that every new call also forgets the oldest. Compared with an OPTIONS, which is only
//! scanned for its Call-ID.
//!
//! Run: `cargo bench --bench ladder -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use drhub::observe::ladder::Ladders;
use drhub::transport::tap::{Point, Way};
use drhub::transport::Transport;

const INVITE: &str = include_str!("fixtures/invite.sip");
const PROGRESS: &str = include_str!("fixtures/session_progress_183.sip");
const OPTIONS_200: &str = include_str!("fixtures/options_200.sip");

/// A fixture with its Call-ID replaced by `id`.
fn with_call_id(text: &str, id: &str) -> String {
    text.lines()
        .map(|l| match l.split_once(':') {
            Some((name, _)) if name.eq_ignore_ascii_case("call-id") => format!("Call-ID: {id}\r"),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn bench(c: &mut Criterion) {
    let flow = "flow-1";
    let point = Point {
        flow: &flow,
        listener: "sip",
        transport: Transport::Tls,
        local: "127.0.0.1:5061".parse().expect("address"),
        peer: "127.0.0.1:40000".parse().expect("address"),
        traced: true,
    };
    // 1,000 distinct calls, recorded round and round: every call is new to a store that
    // keeps 200.
    let calls: Vec<[String; 7]> = (0..1000)
        .map(|n| {
            let id = format!("bench-{n}@sbc1.adatum.biz");
            let invite = with_call_id(INVITE, &id);
            let response = with_call_id(PROGRESS, &id);
            [
                invite.clone(),
                response.clone(),
                response.clone(),
                response.clone(),
                invite.replacen("INVITE ", "ACK ", 1),
                invite.replacen("INVITE ", "BYE ", 1),
                response,
            ]
        })
        .collect();
    let ladders = Ladders::new(200);
    let mut next = 0;
    c.bench_function("ladder/call_of_7_messages", |b| {
        b.iter(|| {
            for (i, m) in calls[next % calls.len()].iter().enumerate() {
                let way = if i % 2 == 0 { Way::In } else { Way::Out };
                ladders.record(way, &point, black_box(m.as_bytes()));
            }
            next += 1;
        })
    });
    c.bench_function("ladder/options_scanned", |b| {
        b.iter(|| ladders.record(Way::Out, &point, black_box(OPTIONS_200.as_bytes())))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
