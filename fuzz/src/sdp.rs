//! Target `sdp`: what drhub does with an SDP body an SBC sends (`call/router.rs`):
//! [`Offer::parse`], the media processor's and an endpoint's answers, and the ICE
//! restart re-offer built from an answer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use drhub::sdp::{
    endpoint_answer, ice_restart, media_processor_answer, Answer, AnswerSource, MediaConfig, Offer,
    SdpError,
};

/// The media processor's address (TEST-NET-1).
const MP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
/// A bypass endpoint's address (documentation IPv6), so both address families render.
const ENDPOINT: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5));
const MP_PORT: u16 = 50_000;
const ENDPOINT_PORT: u16 = 40_000;
const SESSION_ID: u64 = 4_242;

/// Longest diagnostic an error may render: the fixed text plus peer text that
/// `sanitize` bounds to 160 characters and `...`, each control escaped in at most 10.
const MAX_ERROR_CHARS: usize = 120 + 160 * 10 + 3;

/// The target body.
pub fn run(data: &[u8]) {
    let offer = match Offer::parse(data) {
        Ok(o) => o,
        Err(e) => {
            error(&e);
            assert!(
                matches!(e, SdpError::Unparseable { .. } | SdpError::NoAudio { .. }),
                "parse gave {e:?}"
            );
            return;
        }
    };
    offer_views(&offer, data.len());

    let cfg = MediaConfig::new(MP);
    let mp = media_processor_answer(&offer, &cfg, MP_PORT, SESSION_ID);
    let ep = endpoint_answer(&offer, ENDPOINT, ENDPOINT_PORT, SESSION_ID + 1);
    match (&mp, &ep) {
        (Ok(a), Ok(b)) => {
            // Same negotiation over the same codec list.
            assert_eq!(a.codec(), b.codec());
            assert_eq!(a.payload_type(), b.payload_type());
            assert_eq!(a.telephone_event(), b.telephone_event());
            assert_eq!(a.srtp_suite(), b.srtp_suite());
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "same offer, same codecs, different errors"),
        _ => panic!("media processor {mp:?} but endpoint {ep:?}"),
    }
    match mp {
        Ok(a) => {
            assert_eq!(a.source(), AnswerSource::MediaProcessor);
            assert!(cfg.codecs.iter().any(|c| c.matches(a.codec())));
            answer(&offer, &a, MP, MP_PORT, (SESSION_ID, 1));
            let restarted = ice_restart(&a, ENDPOINT, MP_PORT + 2).expect("the CSPRNG works");
            assert!(restarted.ice().is_restart_of(a.ice()));
            assert_eq!(restarted.codec(), a.codec());
            assert_eq!(restarted.srtp_suite(), a.srtp_suite());
            answer(&offer, &restarted, ENDPOINT, MP_PORT + 2, (SESSION_ID, 2));
        }
        Err(e) => {
            error(&e);
            assert!(e.is_not_acceptable(), "{e:?} from an offer that parsed");
        }
    }
    if let Ok(b) = ep {
        assert_eq!(b.source(), AnswerSource::Endpoint);
        answer(&offer, &b, ENDPOINT, ENDPOINT_PORT, (SESSION_ID + 1, 1));
    }
}

/// What a parsed offer guarantees.
fn offer_views(offer: &Offer, len: usize) {
    assert_eq!(offer.body_len(), len);
    assert!(offer.audio().count() >= 1, "an Offer without audio");
    let main = offer.main_audio().expect("an audio stream");
    assert_eq!(main.media, "audio");
    if main.port == 0 {
        assert!(
            offer.audio().all(|s| s.port == 0),
            "a disabled main stream beside an enabled one"
        );
    }
    assert_eq!(offer.is_srtp(), main.is_srtp() && !main.crypto.is_empty());
    assert_eq!(offer.crypto_suites().len(), main.crypto.len());
    assert_eq!(offer.ice(), main.ice.as_ref());
    assert_eq!(offer.connection_address(), main.connection);
    let _ = (offer.has_ice(), offer.origin(), offer.session().marshal());
    for s in offer.streams() {
        assert!(s.payload_formats.len() <= s.formats.len());
        for (i, f) in s.payload_formats.iter().enumerate() {
            assert!(f.payload_type <= 127);
            assert!(
                s.payload_formats[..i]
                    .iter()
                    .all(|g| g.payload_type != f.payload_type),
                "payload type {} twice",
                f.payload_type
            );
            let _ = f.to_string();
        }
    }
}

/// What an answer (or a re-offer built from one) guarantees: well-formed SDP lines,
/// one m-line per offered m-line (RFC 3264 §6), the chosen stream at the given port
/// with the chosen codec first, every other one rejected with port 0.
fn answer(offer: &Offer, a: &Answer, address: IpAddr, port: u16, origin: (u64, u64)) {
    assert_eq!(a.address(), address);
    assert_eq!(a.port(), port);
    assert_eq!(a.origin(), origin);
    assert_eq!(a.as_bytes(), a.as_str().as_bytes());
    let text = a.as_str();
    assert!(text.ends_with("\r\n"), "answer does not end in CRLF");
    for line in text.split_terminator("\r\n") {
        let b = line.as_bytes();
        assert!(
            b.len() >= 2 && b[0].is_ascii_lowercase() && b[1] == b'=',
            "answer line {line:?} is not type=value"
        );
        assert!(
            !line.chars().any(|c| c == '\r' || c == '\n' || c == '\0'),
            "answer line {line:?} holds a line break or NUL"
        );
    }
    let ice = a.ice();
    assert!(!ice.ufrag().is_empty() && !ice.pwd().is_empty());

    let back = match Offer::parse(a.as_bytes()) {
        Ok(b) => b,
        Err(e) => panic!("the answer does not parse back: {e}\n{text}"),
    };
    assert_eq!(back.origin(), origin);
    assert_eq!(
        back.streams().len(),
        offer.streams().len(),
        "m-lines answered vs offered\n{text}"
    );
    let mut accepted = 0;
    for (theirs, ours) in offer.streams().iter().zip(back.streams()) {
        assert_eq!(theirs.media, ours.media, "m-line media changed\n{text}");
        if ours.port == 0 {
            continue;
        }
        accepted += 1;
        assert_eq!(ours.port, port);
        assert_eq!(ours.proto, theirs.proto);
        let first = ours.payload_formats.first().expect("an accepted codec");
        assert_eq!(first.payload_type, a.payload_type());
        assert!(first.codec.as_ref().is_some_and(|c| c.matches(a.codec())));
        assert!(
            theirs
                .payload_formats
                .iter()
                .any(|f| f.payload_type == a.payload_type()),
            "answered a payload type that was not offered"
        );
        assert_eq!(ours.ice.as_ref(), Some(ice));
        assert_eq!(ours.connection, Some(address));
        assert_eq!(ours.direction, theirs.direction.answer());
        match a.srtp_suite() {
            Some(suite) => {
                assert_eq!(ours.crypto.len(), 1);
                let c = &ours.crypto[0];
                assert_eq!(c.suite, suite);
                assert!(c.inline);
                assert!(
                    theirs
                        .crypto
                        .iter()
                        .any(|t| t.tag == c.tag && t.suite == c.suite),
                    "crypto tag {} / {} not offered",
                    c.tag,
                    c.suite
                );
            }
            None => assert!(ours.crypto.is_empty()),
        }
    }
    assert_eq!(accepted, 1, "exactly one accepted stream\n{text}");
}

/// Errors carry bounded, control-free peer text: they go into a SIP header.
fn error(e: &SdpError) {
    let text = e.to_string();
    assert!(
        !text.chars().any(char::is_control),
        "control character in {text:?}"
    );
    assert!(
        text.chars().count() <= MAX_ERROR_CHARS,
        "{} chars",
        text.chars().count()
    );
}
