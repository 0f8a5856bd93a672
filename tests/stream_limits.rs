//! Black-box: what the daemon does with a stream it cannot frame or a peer that
//! misbehaves (DR-TLS-2, DR-ERR-3), the plain-TCP lab listener (DR-TLS-5) and shutdown.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::AsyncWriteExt;

/// Sends `bytes` on a fresh connection and returns (closed?, everything received).
async fn send_and_close(d: &TestDaemon, bytes: &[u8]) -> (bool, String) {
    let mut sbc = connect_as(d, "sbc1.adatum.biz").await.unwrap();
    sbc.send(bytes).await;
    sbc.closed().await
}

#[tokio::test]
async fn dr_tls_2_missing_content_length_is_400_and_close() {
    let d = TestDaemon::start().await;
    let req = options("sbc1.adatum.biz", None, &[]).replace("Content-Length: 0\r\n", "");
    let (closed, got) = send_and_close(&d, req.as_bytes()).await;
    assert!(closed);
    assert!(
        got.starts_with("SIP/2.0 400 Missing Content-Length"),
        "{got}"
    );
    assert!(got.contains("MS-DIAGNOSTICS: 540400;"), "{got}");
}

#[tokio::test]
async fn dr_tls_2_header_block_over_the_limit_closes_the_connection() {
    let d = TestDaemon::start().await;
    let huge = format!("X-Filler: {}", "a".repeat(20 * 1024));
    let req = options("sbc1.adatum.biz", None, &[&huge]);
    let (closed, got) = send_and_close(&d, req.as_bytes()).await;
    assert!(closed, "{got}");
    // The header block never ends within the limit; its first lines are enough to answer.
    assert!(
        got.starts_with("SIP/2.0 400 Header Block Too Large\r\n"),
        "{got}"
    );
}

#[tokio::test]
async fn dr_tls_2_body_over_the_limit_is_413_and_close() {
    let d = TestDaemon::start().await;
    let req = options("sbc1.adatum.biz", None, &[])
        .replace("Content-Length: 0", "Content-Length: 100000");
    let (closed, got) = send_and_close(&d, req.as_bytes()).await;
    assert!(closed);
    assert!(got.starts_with("SIP/2.0 413 "), "{got}");
}

#[tokio::test]
async fn dr_err_3_garbage_bytes_close_the_connection_and_others_are_served() {
    let d = TestDaemon::start().await;
    let mut good = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let (closed, got) = send_and_close(&d, b"\x16\x03\x01garbage\x00\xff\r\n\r\n").await;
    assert!(closed, "{got}");
    assert!(!got.starts_with("SIP/2.0 200"), "{got}");
    assert_eq!(good.options().await.status(), 200);
}

#[tokio::test]
async fn dr_tls_2_content_length_larger_than_what_arrives_times_out() {
    let cfg = lab_config(|t| {
        t.replace(
            "message_timeout_seconds = 10",
            "message_timeout_seconds = 0.3",
        )
    });
    let d = TestDaemon::start_with(cfg).await;
    let req = options("sbc1.adatum.biz", None, &[]).replace(
        "Content-Length: 0\r\n\r\n",
        "Content-Length: 50\r\n\r\nshort",
    );
    let (closed, got) = send_and_close(&d, req.as_bytes()).await;
    assert!(
        closed,
        "an incomplete message must not hold the connection forever"
    );
    assert!(
        got.is_empty(),
        "nothing is answered for a message that never completed: {got}"
    );
}

#[tokio::test]
async fn dr_tls_2_one_byte_at_a_time_is_cut_off_while_others_are_served() {
    let cfg = lab_config(|t| {
        t.replace(
            "message_timeout_seconds = 10",
            "message_timeout_seconds = 0.4",
        )
    });
    let d = TestDaemon::start_with(cfg).await;
    let mut slow = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let mut good = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let req = options("sbc1.adatum.biz", None, &[]);
    // Twelve bytes, one every 50 ms: the message is still incomplete after 0.6 s.
    for b in &req.as_bytes()[..12] {
        if slow.stream.write_all(&[*b]).await.is_err() || slow.stream.flush().await.is_err() {
            break;
        }
        assert_eq!(good.options().await.status(), 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (closed, got) = slow.closed().await;
    assert!(closed, "slow sender must be disconnected");
    assert!(got.is_empty(), "{got}");
}

#[tokio::test]
async fn dr_tls_5_plain_tcp_serves_only_trunks_that_allow_insecure() {
    let cfg = lab_config(|t| {
        t.replace("enabled = false\n", "enabled = true\n")
            .replace("allow_insecure = false", "allow_insecure = true")
    });
    let d = TestDaemon::start_with(cfg).await;
    let tcp = d.addr("lab-tcp");
    let mut adatum = connect_tcp(tcp, "sbc1.adatum.biz").await;
    assert_eq!(adatum.options().await.status(), 200);
    // contoso's trunk keeps the default allow_insecure = false.
    let mut contoso = connect_tcp(tcp, "sbc2.contoso.com").await;
    let r = contoso.options().await;
    assert_eq!((r.status(), r.ms_code()), (403, Some(540435)), "{}", r.text);
    // Unknown SBCs are still unknown.
    let mut unknown = connect_tcp(tcp, "sbc1.fabrikam.com").await;
    assert_eq!(unknown.options().await.ms_code(), Some(510532));
}

#[tokio::test]
async fn dr_tls_5_plain_tcp_listener_is_off_by_default() {
    let d = TestDaemon::start().await;
    let names: Vec<&str> = d
        .config
        .listeners
        .iter()
        .filter(|l| l.enabled)
        .map(|l| l.name.as_str())
        .collect();
    // DR-DC-1: three TLS datacenters; the plain-TCP lab listener stays off.
    assert_eq!(names, ["sip", "sip2", "sip3"]);
    assert!(d
        .config
        .listeners
        .iter()
        .filter(|l| l.enabled)
        .all(|l| l.tls.is_some()));
}

#[tokio::test]
async fn shutdown_closes_connections_and_stops_accepting() {
    let d = TestDaemon::start().await;
    let addr = d.tls_addr();
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    assert_eq!(sbc.options().await.status(), 200);
    d.stop().await;
    let (closed, _) = sbc.closed().await;
    assert!(closed, "live connection closed on shutdown");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener is gone"
    );
}

/// An OPTIONS from `fqdn` with a header line that is not `name: value`: Via, From, To,
/// Call-ID and CSeq are intact.
fn options_with_broken_line(fqdn: &str) -> String {
    options(fqdn, None, &["This line has no colon"])
}

/// What an SBC sees for messages that do not parse but can be delimited, on a stream:
/// a 400 naming the fault, with Reason and ms-diagnostics, and the connection goes on.
async fn malformed_messages_are_answered_and_the_connection_goes_on<S>(sbc: &mut Sbc<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let fqdn = sbc.fqdn.clone();
    let bad = options_with_broken_line(&fqdn);
    let r = sbc.request(&bad).await;
    assert!(
        r.text.starts_with("SIP/2.0 400 Malformed Header Line\r\n"),
        "{}",
        r.text
    );
    assert_eq!(r.ms_code(), Some(540400), "{}", r.text);
    assert!(
        r.header("Reason").unwrap().starts_with("Q.850;cause=41;"),
        "{}",
        r.text
    );
    assert_eq!(r.header("Call-ID"), req_header(&bad, "Call-ID"));
    // A start line without a version: the answer comes from the salvaged headers.
    let no_version = options(&fqdn, None, &[]).replacen(";transport=tls SIP/2.0\r\n", "\r\n", 1);
    let r = sbc.request(&no_version).await;
    assert!(
        r.text.starts_with("SIP/2.0 400 Bad Request-Line\r\n"),
        "{}",
        r.text
    );
    assert_eq!(r.header("CSeq"), req_header(&no_version, "CSeq"));
    // An ACK that does not parse gets no answer; the next answer is the OPTIONS'.
    let inv = invite(&fqdn, "+18338006777", &[]);
    let ack = in_dialog(&inv, "ACK", Some("x"), 1).replacen(
        "Max-Forwards",
        "No colon\r\nMax-Forwards",
        1,
    );
    sbc.send(&ack).await;
    let r = sbc.options().await;
    assert_eq!(
        (r.status(), r.cseq_method()),
        (200, Some("OPTIONS")),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn dr_err_3_malformed_message_with_intact_headers_is_400_and_the_tls_connection_goes_on() {
    let d = TestDaemon::start().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    malformed_messages_are_answered_and_the_connection_goes_on(&mut sbc).await;
}

#[tokio::test]
async fn dr_err_3_malformed_message_with_intact_headers_is_400_and_the_tcp_connection_goes_on() {
    let cfg = lab_config(|t| {
        t.replace("enabled = false\n", "enabled = true\n")
            .replace("allow_insecure = false", "allow_insecure = true")
    });
    let d = TestDaemon::start_with(cfg).await;
    let mut sbc = connect_tcp(d.addr("lab-tcp"), "sbc1.adatum.biz").await;
    malformed_messages_are_answered_and_the_connection_goes_on(&mut sbc).await;
}

#[tokio::test]
async fn dr_tls_2_conflicting_content_length_is_400_and_close() {
    let d = TestDaemon::start().await;
    let two = options("sbc1.adatum.biz", None, &["l: 7"]);
    // The OPTIONS after it is never read: where it starts cannot be known.
    let next = options("sbc1.adatum.biz", None, &[]);
    let (closed, got) = send_and_close(&d, format!("{two}{next}").as_bytes()).await;
    assert!(closed, "{got}");
    assert!(
        got.starts_with("SIP/2.0 400 Conflicting Content-Length\r\n"),
        "{got}"
    );
    assert_eq!(got.matches("SIP/2.0 ").count(), 1, "{got}");
}
