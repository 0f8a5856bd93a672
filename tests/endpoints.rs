//! Black-box: a SIP softphone (a UDP socket in the test) registers to the endpoint
//! listener with digest authentication and is rung as a fork of the user.

mod support;

use support::phone::Phone;
use support::*;

const PHONE_SDP: &str = "v=0\r\no=- 7 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// User1's virtual clients ring but never answer, so the softphone decides.
fn config_virtual_never_answer() -> drhub::config::Config {
    lab_config(|t| {
        fast(t, 0.05)
            .replace("answer_after_seconds = 0.1\n", "\n")
            .replace("answer_after_seconds = 0.125\n", "\n")
    })
}

#[tokio::test]
async fn register_with_digest_wrong_password_and_unknown_user_get_401() {
    let d = TestDaemon::start_with(config_virtual_never_answer()).await;
    let phone = Phone::new(d.addr("endpoints")).await;
    assert_eq!(phone.register_with("wrong-password").await, 401);
    assert_eq!(phone.register_with("user1-lab-password").await, 200);
}

#[tokio::test]
async fn registered_softphone_is_a_fork_and_its_answer_reaches_the_sbc() {
    let d = TestDaemon::start_with(config_virtual_never_answer()).await;
    let phone = Phone::new(d.addr("endpoints")).await;
    assert_eq!(phone.register_with("user1-lab-password").await, 200);

    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", "+18338006777", &[]);
    sbc.send(&inv).await;
    let to_phone = phone.recv_request("INVITE").await;
    assert!(
        to_phone
            .header("From")
            .unwrap()
            .contains("+17168712781@sip.pstnhub.microsoft.com"),
        "{}",
        to_phone.text
    );
    assert_ne!(
        to_phone.header("Call-ID"),
        req_header(&inv, "Call-ID"),
        "a B2BUA leg has its own Call-ID"
    );
    phone
        .answer(&to_phone, 180, "Ringing", "phone1", None)
        .await;
    phone
        .answer(&to_phone, 200, "OK", "phone1", Some(PHONE_SDP))
        .await;
    // The proxy ACKs the phone's 2xx.
    let ack = phone.recv_request("ACK").await;
    assert!(
        ack.header("To").unwrap().contains("tag=phone1"),
        "{}",
        ack.text
    );
    // The SBC: 100, 180s (virtual clients and the phone), then the 200.
    let ok = loop {
        let r = sbc.recv().await;
        if r.status() == 200 {
            break r;
        }
        assert!(r.status() < 200, "{}", r.text);
    };
    assert!(ok.body().contains("m=audio"), "{}", ok.text);
    let tag = ok.to_tag().unwrap();
    sbc.send(in_dialog(&inv, "ACK", Some(&tag), 1)).await;
    // SBC hangs up: the phone gets a BYE in its dialog.
    assert_eq!(
        sbc.request(&in_dialog(&inv, "BYE", Some(&tag), 2))
            .await
            .status(),
        200
    );
    let bye = phone.recv_request("BYE").await;
    assert_eq!(bye.header("Call-ID"), to_phone.header("Call-ID"));
    phone.answer(&bye, 200, "OK", "phone1", None).await;
    d.calls_drained().await;
}

#[tokio::test]
async fn dr_fork_5_losing_softphone_gets_cancel_call_completed_elsewhere() {
    // Default lab scripts: the desktop answers at 100 ms; the phone only rings.
    let d = TestDaemon::start_with(lab_config(|t| fast(t, 0.05))).await;
    let phone = Phone::new(d.addr("endpoints")).await;
    assert_eq!(phone.register_with("user1-lab-password").await, 200);
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", "+18338006777", &[]);
    sbc.send(&inv).await;
    let to_phone = phone.recv_request("INVITE").await;
    phone
        .answer(&to_phone, 180, "Ringing", "phone2", None)
        .await;
    let cancel = phone.recv_request("CANCEL").await;
    assert_eq!(
        cancel.header("Reason"),
        Some("SIP;cause=200;text=\"Call completed elsewhere\""),
        "{}",
        cancel.text
    );
    phone.answer(&cancel, 200, "OK", "phone2", None).await;
    phone
        .answer(&to_phone, 487, "Request Terminated", "phone2", None)
        .await;
    let ok = loop {
        let r = sbc.recv().await;
        if r.status() == 200 {
            break r;
        }
    };
    let tag = ok.to_tag().unwrap();
    sbc.ack_and_bye(&inv, &tag).await;
    d.calls_drained().await;
}

#[tokio::test]
async fn dr_fork_7_every_fork_fails_and_the_busy_softphone_wins_486() {
    // All of user1's forks fail: the virtual clients reject, the phone is busy.
    let cfg = lab_config(|t| {
        fast(t, 0.05)
            .replace("answer_after_seconds = 0.1\n", "reject_status = 480\n")
            .replace("answer_after_seconds = 0.125\n", "reject_status = 480\n")
    });
    let d = TestDaemon::start_with(cfg).await;
    let phone = Phone::new(d.addr("endpoints")).await;
    assert_eq!(phone.register_with("user1-lab-password").await, 200);
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", "+18338006777", &[]);
    sbc.send(&inv).await;
    let to_phone = phone.recv_request("INVITE").await;
    phone
        .answer(&to_phone, 486, "Busy Here", "phone3", None)
        .await;
    let fin = loop {
        let r = sbc.recv().await;
        if r.status() >= 300 {
            break r;
        }
    };
    // DR-FORK-7: 486 Busy Here beats 480.
    assert_eq!(fin.status(), 486, "{}", fin.text);
    sbc.send(ack_non2xx(&inv, fin.to_tag().as_deref())).await;
    d.calls_drained().await;
}

#[tokio::test]
async fn register_for_an_unknown_user_is_challenged_like_a_wrong_password() {
    let d = TestDaemon::start_with(config_virtual_never_answer()).await;
    let phone = Phone::new(d.addr("endpoints")).await;
    let unknown = phone
        .register(1, None)
        .replace("user1@adatum.biz", "nobody@adatum.biz");
    phone.send(&unknown).await;
    let r = phone.recv().await;
    assert_eq!(r.status(), 401, "{}", r.text);
    let challenges = r.text.matches("WWW-Authenticate:").count();
    phone.send(&phone.register(1, None)).await;
    let known = phone.recv().await;
    assert_eq!(known.status(), 401);
    assert_eq!(
        challenges,
        known.text.matches("WWW-Authenticate:").count(),
        "no hint whether the user exists"
    );
}

#[tokio::test]
async fn an_endpoint_that_vanishes_mid_ring_times_out_and_the_call_goes_on() {
    // T1 = 10 ms: the silent phone's INVITE times out (Timer B, 64*T1 = 640 ms) while the
    // desktop answers at 1 s.
    let cfg = lab_config(|t| fast(t, 0.5).replace("t1_seconds = 0.5", "t1_seconds = 0.01"));
    let d = TestDaemon::start_with(cfg).await;
    let phone = Phone::new(d.addr("endpoints")).await;
    assert_eq!(phone.register_with("user1-lab-password").await, 200);
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", "+18338006777", &[]);
    sbc.send(&inv).await;
    let _ = phone.recv_request("INVITE").await; // and then the phone says nothing
    let ok = loop {
        let r = sbc.recv().await;
        if r.status() >= 200 {
            break r;
        }
    };
    assert_eq!(ok.status(), 200, "the desktop still answers: {}", ok.text);
    // The phone's fork had already failed (Timer B), so it gets no CANCEL: only the
    // INVITE's retransmissions (Timer A), which stopped at Timer B.
    let mut buf = vec![0u8; 65535];
    while let Ok(Ok((n, _))) = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        phone.sock.recv_from(&mut buf),
    )
    .await
    {
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(
            text.starts_with("INVITE "),
            "after its timeout the phone got: {text}"
        );
    }
    let tag = ok.to_tag().unwrap();
    sbc.ack_and_bye(&inv, &tag).await;
    d.calls_drained().await;
}

#[tokio::test]
async fn register_over_tcp_is_challenged_too() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let d = TestDaemon::start_with(config_virtual_never_answer()).await;
    let mut tcp = tokio::net::TcpStream::connect(d.addr("endpoints"))
        .await
        .unwrap();
    let local = tcp.local_addr().unwrap();
    let reg = format!(
        "REGISTER sip:adatum.biz SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKtcpreg\r\nMax-Forwards: 70\r\nFrom: <sip:user1@adatum.biz>;tag=t1\r\nTo: <sip:user1@adatum.biz>\r\nCall-ID: tcpreg@test\r\nCSeq: 1 REGISTER\r\nContact: <sip:user1@{local};transport=tcp>\r\nContent-Length: 0\r\n\r\n"
    );
    tcp.write_all(reg.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("SIP/2.0 401 "), "{text}");
    assert!(
        text.contains("algorithm=SHA-256"),
        "RFC 8760 challenge first: {text}"
    );
}

#[tokio::test]
async fn dr_err_3_the_endpoint_listener_answers_malformed_requests_400_over_udp_and_tcp() {
    let d = TestDaemon::start_with(config_virtual_never_answer()).await;
    let phone = Phone::new(d.addr("endpoints")).await;
    // Does not parse (a header line without a colon), Via, From, To, Call-ID and CSeq
    // intact: 400 naming the fault, back to the datagram's source.
    let broken =
        phone
            .register(1, None)
            .replacen("Expires: 600\r\n", "Expires: 600\r\nno colon\r\n", 1);
    phone.send(&broken).await;
    let r = phone.recv().await;
    assert!(
        r.text.starts_with("SIP/2.0 400 Malformed Header Line\r\n"),
        "{}",
        r.text
    );
    assert_eq!(r.header("Call-ID"), req_header(&broken, "Call-ID"));
    // Parses, fails the RFC 3261 checks: 400 over UDP too.
    let mismatch = phone
        .register(2, None)
        .replacen("CSeq: 2 REGISTER", "CSeq: 2 INVITE", 1);
    phone.send(&mismatch).await;
    let r = phone.recv().await;
    assert!(
        r.text
            .starts_with("SIP/2.0 400 CSeq method does not match request method\r\n"),
        "{}",
        r.text
    );
    // A Latin-1 display name is read as Latin-1: the REGISTER is challenged as usual.
    let latin1: Vec<u8> = phone
        .register(3, None)
        .replacen("From: <", "From: \"M\u{fc}ller\" <", 1)
        .chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap())
        .collect();
    phone.sock.send_to(&latin1, phone.server).await.unwrap();
    let r = phone.recv().await;
    assert_eq!(r.status(), 401, "{}", r.text);
    assert!(
        r.header("From").unwrap().starts_with("\"Müller\""),
        "{}",
        r.text
    );
    assert_eq!(phone.register_with("user1-lab-password").await, 200);

    // TCP: the same 400, and the connection goes on.
    let mut tcp = connect_tcp(d.addr("endpoints"), "phone.example").await;
    let r = tcp.request(&broken).await;
    assert!(
        r.text.starts_with("SIP/2.0 400 Malformed Header Line\r\n"),
        "{}",
        r.text
    );
    assert_eq!(tcp.request(&phone.register(4, None)).await.status(), 401);
}
