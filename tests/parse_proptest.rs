//! Robustness: random bytes and random mutations of the fixture messages never make the
//! parser, the checks or any typed view panic, and framing stays consistent (a complete
//! message's strict prefixes are `Partial`; `parse_head` agrees with `parse`).

use drhub::sip::{
    CSeq, CallId, Contact, ContentLength, HeaderName, Limits, MaxForwards, Message, NameAddr,
    SipDate, Status, Uri, Via,
};
use proptest::prelude::*;

const FIXTURES: &[&[u8]] = &[
    include_bytes!("../benches/fixtures/invite.sip"),
    include_bytes!("../benches/fixtures/session_progress_183.sip"),
    include_bytes!("../benches/fixtures/options_200.sip"),
    include_bytes!("torture/rfc4475/wsinv.dat"),
    include_bytes!("torture/rfc4475/intmeth.dat"),
    include_bytes!("torture/rfc4475/esc01.dat"),
    include_bytes!("torture/rfc4475/longreq.dat"),
    include_bytes!("torture/rfc4475/dblreq.dat"),
    include_bytes!("torture/rfc4475/mpart01.dat"),
    include_bytes!("torture/rfc4475/badinv01.dat"),
    include_bytes!("torture/rfc4475/quotbal.dat"),
    include_bytes!("torture/rfc4475/regescrt.dat"),
    include_bytes!("torture/rfc5118/ipv6-bug-abnf-3-colons.dat"),
    include_bytes!("torture/rfc5118/mult-ip-in-header.dat"),
];

const STARTS: &[&[u8]] = &[
    b"INVITE sip:a@b SIP/2.0\r\n",
    b"SIP/2.0 200 OK\r\n",
    b"OPTIONS sip:[::1]:5061 SIP/2.0\r\n",
];

/// Characters SIP header blocks are made of, compact header names included.
const ALPHABET: &[u8] = b"abcXYZ019.-_+~!*'()\r\n:<>\";,= \t\\[]%@?&/viltmfk";

/// Bytes that sit on grammar boundaries.
const SPECIAL: &[u8] = b"\r\n:<>\";,= \t\\[]%@?&*/\x00\x7f\x80\xff";

/// Runs every typed view over a value; the results are ignored, only panics matter.
fn views(v: &str) {
    let _ = NameAddr::parse(v).map(|n| {
        let _ = (
            n.tag(),
            n.display_name(),
            n.uri().is_phone(),
            n.uri().host(),
        );
        n.params().iter().count() + n.uri().params().iter().count() + n.uri().headers().count()
    });
    let _ = Contact::parse(v);
    let _ = Via::parse(v).map(|via| {
        let _ = (
            via.branch(),
            via.received(),
            via.rport(),
            via.maddr(),
            via.ttl(),
        );
        via.rfc3261_branch()
    });
    let _ = Uri::parse(v).map(|u| {
        let mut buf = [0u8; 64];
        let _ = u.user_decoded(&mut buf);
        u.param("lr")
    });
    let _ = (
        CSeq::parse(v),
        MaxForwards::parse(v),
        ContentLength::parse(v),
    );
    let _ = (
        CallId::parse(v),
        SipDate::parse(v),
        HeaderName::from_name(v),
    );
}

fn exercise_message(m: &Message<'_>) {
    // The two forms of the checks must agree.
    assert_eq!(m.check_request().is_ok(), m.checked_request().is_ok());
    assert_eq!(m.check_response(), m.checked_response().map(|_| ()));
    if let Ok(c) = m.checked_request() {
        assert_eq!(m.from(), Some(Ok(c.from)));
        assert_eq!(m.top_via(), Some(Ok(c.top_via)));
    }
    let _ = m.request_uri();
    let _ = (
        m.from(),
        m.to(),
        m.cseq(),
        m.max_forwards(),
        m.call_id(),
        m.contact(),
    );
    let _ = m.vias().count() + m.contacts().count();
    for h in m.headers() {
        let _ = m.values(h.name).count();
        views(h.value);
        let mut rest = h.value;
        for item in m.values(h.name).take(8) {
            views(item);
            rest = item;
        }
        views(rest);
    }
    if let drhub::sip::StartLine::Request { uri, .. } = m.start_line() {
        views(uri);
    }
}

fn exercise(buf: &[u8]) {
    let limits = [
        Limits::default(),
        Limits {
            max_header_bytes: 200,
            max_body_bytes: 100,
        },
    ];
    for l in limits {
        match Message::parse(buf, &l) {
            Ok(Status::Complete(m)) => {
                assert!(m.len() <= buf.len());
                assert_eq!(m.head().len() + m.body().len(), m.len());
                exercise_message(&m);
                // Strict prefixes of what framed are partial.
                for n in [0, m.len() / 3, m.len() / 2, m.len().saturating_sub(1)] {
                    if n < m.len() {
                        let p = Message::parse(&buf[..n], &l);
                        assert!(matches!(p, Ok(Status::Partial)), "prefix {n}: {p:?}");
                    }
                }
                // The header block alone agrees.
                match Message::parse_head(buf) {
                    Ok(Status::Complete(h)) => {
                        assert!(h.headers().eq(m.headers()));
                        assert_eq!(h.len(), m.head().len());
                    }
                    other => panic!("parse_head disagrees: {other:?}"),
                }
            }
            Ok(Status::Partial) => {}
            Err(e) => {
                assert!(!e.reason().is_empty());
                assert!(matches!(e.status(), 400 | 413 | 505));
            }
        }
    }
    if let Ok(Status::Complete(h)) = Message::parse_head(buf) {
        exercise_message(&h);
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let special = prop::sample::select(SPECIAL);
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Flip(p, b)),
        (any::<usize>(), special.clone()).prop_map(|(p, b)| Mutation::Flip(p, b)),
        (any::<usize>(), special).prop_map(|(p, b)| Mutation::Insert(p, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(buf: &mut Vec<u8>, m: &Mutation) {
    let len = buf.len().max(1);
    match *m {
        Mutation::Flip(p, b) => {
            if let Some(x) = buf.get_mut(p % len) {
                *x = b;
            }
        }
        Mutation::Insert(p, b) => buf.insert(p % (buf.len() + 1), b),
        Mutation::Delete(p) => {
            if !buf.is_empty() {
                buf.remove(p % buf.len());
            }
        }
        Mutation::Truncate(p) => buf.truncate(p % (buf.len() + 1)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(buf in prop::collection::vec(any::<u8>(), 0..1024)) {
        exercise(&buf);
    }

    #[test]
    fn random_sip_looking_bytes_never_panic(
        start in prop::sample::select(STARTS),
        tail in prop::collection::vec(prop::sample::select(ALPHABET), 0..400),
    ) {
        let mut buf = start.to_vec();
        buf.extend_from_slice(&tail);
        exercise(&buf);
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in 0..FIXTURES.len(),
        muts in prop::collection::vec(mutation(), 1..8),
    ) {
        let mut buf = FIXTURES[which].to_vec();
        for m in &muts {
            apply(&mut buf, m);
        }
        exercise(&buf);
    }

    #[test]
    fn typed_views_on_arbitrary_text_never_panic(s in "\\PC{0,80}") {
        views(&s);
    }
}

#[test]
fn unmutated_fixtures_are_exercised_too() {
    for f in FIXTURES {
        exercise(f);
    }
}
