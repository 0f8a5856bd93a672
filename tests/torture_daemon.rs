//! Black-box torture: every RFC 4475 and RFC 5118 message sent to the real daemon over
//! mutual TLS, one connection each, as an SBC would send it. The parser-level
//! classification lives in tests/torture.rs; this checks what the daemon answers and
//! that it keeps serving (DR-ERR-3: no input crashes or stalls it).
//!
//! The files are datagram-style messages. On a stream, RFC 3261 §18.3 makes
//! Content-Length mandatory and authoritative, so a message without one (inv2543) or
//! with a wrong one (clerr, ncl) is a framing fault here: 400 and close, or, for a
//! length larger than what arrives, a close when the message timeout expires. Other
//! faults leave the connection open.
//!
//! The endpoint listener gets the same messages over UDP (one datagram each) and TCP: a
//! fault the SBC listener answers with 400 it answers with the same 400.

mod support;

use support::*;

/// RFC 4475 §3.1.1 and RFC 5118 valid messages: never refused as malformed. The Direct
/// Routing layer may still refuse them (403, 405, 416, or 400 "Contact Header Missing"
/// under DR-VAL-1, which SIP itself does not require of OPTIONS).
const WELL_FORMED: &[&str] = &[
    "rfc4475/wsinv",
    "rfc4475/intmeth",
    "rfc4475/esc01",
    "rfc4475/escnull",
    "rfc4475/esc02",
    "rfc4475/lwsdisp",
    "rfc4475/longreq",
    "rfc4475/dblreq",
    "rfc4475/semiuri",
    "rfc4475/transports",
    "rfc4475/mpart01",
    "rfc4475/unreason",
    "rfc4475/noreason",
    "rfc4475/badbranch",
    "rfc5118/ipv6-good",
    "rfc5118/port-ambiguous",
    "rfc5118/port-unambiguous",
    "rfc5118/via-received-param-with-delim",
    "rfc5118/ipv6-in-sdp",
    "rfc5118/mult-ip-in-header",
    "rfc5118/mult-ip-in-sdp",
    "rfc5118/ipv4-mapped-ipv6",
    "rfc5118/ipv6-correct-abnf-2-colons",
];

/// RFC 4475 §3.1.2 and RFC 5118 invalid messages: a 4xx/5xx naming the fault where a
/// response can be formed, else a close; never a 2xx.
const INVALID: &[&str] = &[
    "rfc4475/badinv01",
    "rfc4475/clerr",
    "rfc4475/ncl",
    "rfc4475/scalar02",
    "rfc4475/scalarlg",
    "rfc4475/quotbal",
    "rfc4475/ltgtruri",
    "rfc4475/lwsruri",
    "rfc4475/lwsstart",
    "rfc4475/trws",
    "rfc4475/escruri",
    "rfc4475/baddate",
    "rfc4475/regbadct",
    "rfc4475/badaspec",
    "rfc4475/baddn",
    "rfc4475/badvers",
    "rfc4475/mismatch01",
    "rfc4475/mismatch02",
    "rfc4475/bigcode",
    "rfc5118/ipv6-bad",
    "rfc5118/via-received-param-no-delim",
    "rfc5118/ipv6-bug-abnf-3-colons",
];

/// RFC 4475 §3.3: well-formed, but the application must refuse them (insuf 400,
/// unkscm/novelsc/unksm2 416, bext01 420, ...). Here: an error status, never a 2xx.
const APPLICATION: &[&str] = &[
    "rfc4475/insuf",
    "rfc4475/unkscm",
    "rfc4475/novelsc",
    "rfc4475/unksm2",
    "rfc4475/bext01",
    "rfc4475/invut",
    "rfc4475/regaut01",
    "rfc4475/multi01",
    "rfc4475/mcl01",
    "rfc4475/bcast",
    "rfc4475/zeromf",
    "rfc4475/cparam01",
    "rfc4475/cparam02",
    "rfc4475/regescrt",
    "rfc4475/sdp01",
    "rfc4475/inv2543",
];

fn load(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/torture/{name}.dat", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Sends one message on its own connection and collects whatever comes back until
/// the daemon closes or a short quiet period passes.
async fn exchange(d: &TestDaemon, bytes: &[u8]) -> Vec<u16> {
    exchange_lines(d, bytes)
        .await
        .iter()
        .filter_map(|l| l.get(..3)?.parse().ok())
        .collect()
}

/// Like [`exchange`] but returns each status line after `SIP/2.0 ` (code and phrase).
async fn exchange_lines(d: &TestDaemon, bytes: &[u8]) -> Vec<String> {
    let mut sbc = connect_as(d, "sbc1.adatum.biz").await.unwrap();
    sbc.send(bytes).await;
    read_status_lines(&mut sbc.stream).await
}

/// The status lines read from `stream` until it closes or a short quiet period passes.
async fn read_status_lines(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> Vec<String> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match tokio::time::timeout(QUIET, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    status_lines(&got)
}

const QUIET: std::time::Duration = std::time::Duration::from_millis(300);

fn status_lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .split("\r\n")
        .filter_map(|l| l.strip_prefix("SIP/2.0 "))
        .map(str::to_owned)
        .collect()
}

/// Sends one message as a datagram to the endpoint listener, from a socket of its own,
/// and returns the status lines of what comes back before a short quiet period.
async fn exchange_endpoint_udp(d: &TestDaemon, bytes: &[u8]) -> Vec<String> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(bytes, d.addr("endpoints")).await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(Ok((n, _))) = tokio::time::timeout(QUIET, sock.recv_from(&mut buf)).await {
        got.extend(status_lines(&buf[..n]));
    }
    got
}

/// Sends one message on its own TCP connection to the endpoint listener.
async fn exchange_endpoint_tcp(d: &TestDaemon, bytes: &[u8]) -> Vec<String> {
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(d.addr("endpoints"))
        .await
        .unwrap();
    tcp.write_all(bytes).await.unwrap();
    read_status_lines(&mut tcp).await
}

async fn daemon() -> TestDaemon {
    TestDaemon::start_with(lab_config(|t| {
        t.replace(
            "message_timeout_seconds = 10",
            "message_timeout_seconds = 0.3",
        )
    }))
    .await
}

async fn still_serving(d: &TestDaemon, after: &str) {
    let mut sbc = connect_as(d, "sbc1.adatum.biz").await.unwrap();
    assert_eq!(
        sbc.options().await.status(),
        200,
        "daemon stopped serving after {after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_err_3_well_formed_torture_messages_are_never_answered_400() {
    let d = daemon().await;
    for name in WELL_FORMED {
        let lines = exchange_lines(&d, &load(name)).await;
        let malformed = |l: &String| {
            (l.starts_with("400") && l != "400 Contact Header Missing") || l.starts_with("505")
        };
        assert!(!lines.iter().any(malformed), "{name}: answered {lines:?}");
        still_serving(&d, name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_err_3_invalid_torture_messages_are_refused_without_harm() {
    let d = daemon().await;
    for name in INVALID {
        let codes = exchange(&d, &load(name)).await;
        assert!(
            codes.iter().all(|c| *c >= 400),
            "{name}: answered {codes:?}"
        );
        still_serving(&d, name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_err_3_application_layer_torture_messages_get_errors_not_success() {
    let d = daemon().await;
    for name in APPLICATION {
        let codes = exchange(&d, &load(name)).await;
        assert!(
            codes.iter().all(|c| *c >= 400),
            "{name}: answered {codes:?}"
        );
        still_serving(&d, name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn specific_answers_a_voice_engineer_can_rely_on() {
    let d = daemon().await;
    // §3.1.2.16 badvers: SIP/7.0 -> 505.
    assert_eq!(exchange(&d, &load("rfc4475/badvers")).await, [505]);
    // §3.3.2 unkscm: unknown Request-URI scheme -> 416.
    assert_eq!(exchange(&d, &load("rfc4475/unkscm")).await, [416]);
    // §3.3.4 bext01: Require of an unknown extension -> 420.
    assert_eq!(exchange(&d, &load("rfc4475/bext01")).await, [420]);
    // §3.1.2.7 mismatch01: CSeq method differs from the request method -> 400.
    assert_eq!(exchange(&d, &load("rfc4475/mismatch01")).await, [400]);
    // §3.4.1 inv2543 has no Content-Length: on a stream that is a framing fault.
    assert_eq!(exchange(&d, &load("rfc4475/inv2543")).await, [400]);
    // Responses arriving with no client transaction are ignored (noreason, unreason).
    assert_eq!(
        exchange(&d, &load("rfc4475/noreason")).await,
        Vec::<u16>::new()
    );
}

/// 400s the SBC listener gives for Direct Routing rules (DR-VAL-1, DR-VAL-7) or for a
/// stream's own framing rule (Content-Length is mandatory on a stream, RFC 3261 §18.3):
/// the endpoint listener over UDP need not give them.
const SBC_OR_STREAM_ONLY: &[&str] = &[
    "400 Contact Header Missing",
    "400 Empty User Part In URI",
    "400 Missing Content-Length",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_err_3_the_endpoint_listener_answers_what_the_sbc_listener_answers_400_over_udp_and_tcp()
{
    let d = daemon().await;
    let mut compared = 0;
    for name in INVALID.iter().chain(APPLICATION) {
        let bytes = load(name);
        let (tls, udp, tcp) = tokio::join!(
            exchange_lines(&d, &bytes),
            exchange_endpoint_udp(&d, &bytes),
            exchange_endpoint_tcp(&d, &bytes),
        );
        for bad in tls
            .iter()
            .filter(|l| l.starts_with("400 ") && !SBC_OR_STREAM_ONLY.contains(&l.as_str()))
        {
            compared += 1;
            assert!(
                udp.contains(bad),
                "{name}: TLS {tls:?}, endpoint UDP {udp:?}"
            );
            assert!(
                tcp.contains(bad),
                "{name}: TLS {tls:?}, endpoint TCP {tcp:?}"
            );
        }
        // Nothing the SBC listener finds malformed is accepted by the endpoint listener
        // (a valid OPTIONS, which the SBC listener refuses by the Direct Routing rules,
        // is answered 200 by the endpoint listener, as any out-of-dialog OPTIONS).
        let malformed = tls.iter().any(|l| {
            (l.starts_with("400 ") && !SBC_OR_STREAM_ONLY.contains(&l.as_str()))
                || l.starts_with("505 ")
        });
        assert!(
            !malformed || udp.iter().chain(&tcp).all(|l| !l.starts_with('2')),
            "{name}: SBC listener {tls:?}, endpoint listener answered {udp:?} {tcp:?}"
        );
    }
    assert!(compared >= 15, "only {compared} 400s compared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_err_3_torture_datagrams_name_their_fault_over_udp() {
    let d = daemon().await;
    // §3.1.2.3 clerr: Content-Length larger than the datagram (RFC 3261 §18.3: 400).
    let clerr = exchange_endpoint_udp(&d, &load("rfc4475/clerr")).await;
    assert_eq!(clerr, ["400 Message Truncated"]);
    // §3.1.2.16 badvers: SIP/7.0 -> 505, as over TLS.
    let badvers = exchange_endpoint_udp(&d, &load("rfc4475/badvers")).await;
    assert_eq!(badvers, ["505 Version Not Supported"]);
    // §3.1.2.7 mismatch01 parses; it fails check_request: 400 over UDP as over TLS.
    let mismatch = exchange_endpoint_udp(&d, &load("rfc4475/mismatch01")).await;
    assert_eq!(mismatch, ["400 CSeq method does not match request method"]);
    // Responses are never answered (noreason has no client transaction).
    assert!(exchange_endpoint_udp(&d, &load("rfc4475/noreason"))
        .await
        .is_empty());
}
