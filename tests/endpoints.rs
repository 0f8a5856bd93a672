//! Black-box: a SIP softphone (a UDP socket in the test) registers to the endpoint
//! listener with digest authentication and is rung as a fork of the user.

mod support;

use support::phone::{Phone, PHONE_SDP};
use support::*;

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
    // A phone that missed the ACK retransmits its 200 (RFC 3261 §13.3.1.4): ACKed again.
    phone
        .answer(&to_phone, 200, "OK", "phone1", Some(PHONE_SDP))
        .await;
    let again = phone.recv_request("ACK").await;
    assert_eq!(again.header("CSeq"), ack.header("CSeq"), "{}", again.text);
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

/// The lab config with the digest throttle set: `failures` within a minute lock for
/// `lockout_seconds`.
fn config_throttle(failures: u32, lockout_seconds: f64) -> drhub::config::Config {
    lab_config(|t| {
        let t = set_key(&t, "endpoints", "auth_failures", &failures.to_string());
        set_key(
            &t,
            "endpoints",
            "auth_lockout_seconds",
            &lockout_seconds.to_string(),
        )
    })
}

/// The final answer of `register_as` (the challenge's answer, or the first one when the
/// REGISTER was not challenged).
fn last(answers: (Reply, Option<Reply>)) -> Reply {
    answers.1.unwrap_or(answers.0)
}

#[tokio::test]
async fn digest_guessing_50_wrong_passwords_then_the_right_one_is_refused_for_the_lockout() {
    use std::time::{Duration, Instant};
    // Issue 7 item 5. The default threshold (10 in 60 s), a 3 s lockout.
    let lockout = Duration::from_secs(3);
    let d = TestDaemon::start_with(config_throttle(10, lockout.as_secs_f64())).await;
    let attacker = Phone::bind("127.0.0.2", d.addr("endpoints")).await;
    let mut statuses = Vec::new();
    let mut lock_window = None;
    for i in 0..50u32 {
        let before = Instant::now();
        let answer = last(
            attacker
                .register_as("user1", &format!("guess-{i}"), 2 * i + 1)
                .await,
        );
        if i == 9 {
            // The tenth failure locks: somewhere between sending it and its answer.
            lock_window = Some((before, Instant::now()));
        }
        if answer.status() == 403 {
            assert!(
                answer
                    .text
                    .starts_with("SIP/2.0 403 Too Many Failed Authentications\r\n"),
                "{}",
                answer.text
            );
            assert!(
                answer.header("WWW-Authenticate").is_none(),
                "{}",
                answer.text
            );
        }
        statuses.push(answer.status());
    }
    assert_eq!(statuses[..10], [401; 10], "{statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 403), "{statuses:?}");
    let (locked_after, locked_before) = lock_window.expect("ten guesses");
    // The right password from the same source: refused, unread, for the whole lockout.
    let right = last(
        attacker
            .register_as("user1", "user1-lab-password", 101)
            .await,
    );
    assert_eq!(right.status(), 403, "{}", right.text);
    assert!(
        locked_before.elapsed() < lockout,
        "the refusals took longer than the lockout; the test proves nothing"
    );
    // Then it is accepted again, not before the lockout has run.
    let mut cseq = 200;
    let accepted = loop {
        let answer = last(
            attacker
                .register_as("user1", "user1-lab-password", cseq)
                .await,
        );
        if answer.status() == 200 {
            break Instant::now();
        }
        assert_eq!(answer.status(), 403, "{}", answer.text);
        assert!(
            locked_after.elapsed() < lockout + WAIT,
            "still locked long after the lockout"
        );
        cseq += 2;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        accepted >= locked_after + lockout,
        "accepted before the lockout ended"
    );
}

#[tokio::test]
async fn a_registered_phone_still_registers_while_an_attacker_hammers_its_user() {
    let d = TestDaemon::start_with(config_throttle(5, 60.0)).await;
    let server = d.addr("endpoints");
    let phone = Phone::new(server).await;
    assert_eq!(phone.register_with("user1-lab-password").await, 200);
    // An attacker at another address: five failures lock it and user1.
    let attacker = Phone::bind("127.0.0.2", server).await;
    for i in 0..20u32 {
        let answer = last(attacker.register_as("user1", "guess", 2 * i + 1).await);
        let want = if i < 5 { 401 } else { 403 };
        assert_eq!(answer.status(), want, "guess {i}: {}", answer.text);
    }
    // The phone refreshes its registration from its own address as if nothing happened.
    let refresh = last(phone.register_as("user1", "user1-lab-password", 10).await);
    assert_eq!(refresh.status(), 200, "{}", refresh.text);
    // A new address is refused for user1 even with the right password, like the attacker.
    let newcomer = Phone::bind("127.0.0.3", server).await;
    let refused = last(newcomer.register_as("user1", "user1-lab-password", 1).await);
    assert_eq!(refused.status(), 403, "{}", refused.text);
    let refused = last(
        attacker
            .register_as("user1", "user1-lab-password", 100)
            .await,
    );
    assert_eq!(refused.status(), 403, "{}", refused.text);
    // The user is rung at the phone: the registration is intact.
    assert_eq!(
        d.hub
            .endpoints
            .as_ref()
            .expect("endpoint listener")
            .targets(&"user1@adatum.biz".parse().expect("SIP address"))
            .len(),
        1
    );
}

/// A response with what must differ masked: the To tag, the nonce, the user name.
fn masked(reply: &Reply, user: &str) -> String {
    let mut text = reply.text.replace(user, "USER");
    for (start, end) in [(";tag=", "\r\n"), ("nonce=\"", "\"")] {
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some(i) = rest.find(start) {
            let (head, tail) = rest.split_at(i + start.len());
            out.push_str(head);
            let j = tail.find(end).unwrap_or(tail.len());
            // The phone's own From tag is the same for both; mask every tag alike.
            out.push('*');
            rest = &tail[j..];
        }
        out.push_str(rest);
        text = out;
    }
    text
}

#[tokio::test]
async fn known_and_unknown_users_get_identical_answers_before_and_after_the_lock() {
    let d = TestDaemon::start_with(config_throttle(3, 60.0)).await;
    let server = d.addr("endpoints");
    // One wrong password each from the same socket: the same 401s.
    let probe = Phone::bind("127.0.0.4", server).await;
    let (k0, k1) = probe.register_as("user1", "guess", 1).await;
    let (u0, u1) = probe.register_as("nobody", "guess", 1).await;
    let (k1, u1) = (k1.expect("challenged"), u1.expect("challenged"));
    assert_eq!((k1.status(), u1.status()), (401, 401));
    assert_eq!(masked(&k0, "user1"), masked(&u0, "nobody"));
    assert_eq!(
        masked(&k1, "user1"),
        masked(&u1, "nobody"),
        "a wrong password and an unknown user must look alike"
    );
    // Each user guessed from its own address until refused: with the probe's failure,
    // two more lock the user (the addresses, at two failures, stay open).
    for (user, ip) in [("user1", "127.0.0.2"), ("nobody", "127.0.0.3")] {
        let attacker = Phone::bind(ip, server).await;
        let mut statuses = Vec::new();
        for i in 0..3u32 {
            statuses.push(last(attacker.register_as(user, "guess", 2 * i + 1).await).status());
        }
        assert_eq!(statuses, [401, 401, 403], "{user}");
    }
    // From the probe's address: both users are locked alike.
    let (k, _) = probe.register_as("user1", "user1-lab-password", 20).await;
    let (u, _) = probe.register_as("nobody", "user1-lab-password", 20).await;
    assert_eq!(k.status(), 403, "{}", k.text);
    assert_eq!(
        masked(&k, "user1"),
        masked(&u, "nobody"),
        "a locked user must not tell whether it exists"
    );
    // A locked address answers both alike too.
    let locked = Phone::bind("127.0.0.5", server).await;
    for i in 0..3u32 {
        let answer = last(locked.register_as("someone", "guess", 2 * i + 1).await);
        assert_eq!(answer.status(), 401, "{}", answer.text);
    }
    let (k, _) = locked.register_as("user1", "user1-lab-password", 20).await;
    let (u, _) = locked.register_as("nobody", "user1-lab-password", 20).await;
    assert_eq!(k.status(), 403, "{}", k.text);
    assert_eq!(masked(&k, "user1"), masked(&u, "nobody"));
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

/// `[endpoints] digest_algorithms`: MD5 alone for phones that fail on a SHA-256
/// challenge (baresip 1.0). The 401 offers one `WWW-Authenticate`, `algorithm=MD5`, and
/// the MD5 answer registers. With SHA-256 alone the same MD5 answer is refused (401
/// again): only what is offered is accepted. The default offers SHA-256, then MD5.
#[tokio::test]
async fn digest_algorithms_are_configurable_per_endpoint_listener() {
    let cases: [(Option<&str>, Vec<&str>, u16); 3] = [
        (None, vec!["SHA-256", "MD5"], 200),
        (Some("[\"MD5\"]"), vec!["MD5"], 200),
        (Some("[\"SHA-256\"]"), vec!["SHA-256"], 401),
    ];
    for (list, offered, status) in cases {
        let d = TestDaemon::start_with(lab_config(|t| match list {
            None => t,
            Some(l) => set_key(&t, "endpoints", "digest_algorithms", l),
        }))
        .await;
        let phone = Phone::new(d.addr("endpoints")).await;
        phone.send(&phone.register_for("user1", 1, None)).await;
        let challenge = phone.recv().await;
        assert_eq!(challenge.status(), 401, "{}", challenge.text);
        let algorithms: Vec<&str> = challenge
            .headers("WWW-Authenticate")
            .iter()
            .filter_map(|v| v.split("algorithm=").nth(1))
            .map(|a| a.split(',').next().unwrap_or(a).trim())
            .collect();
        assert_eq!(algorithms, offered, "{list:?}\n{}", challenge.text);
        // An old phone answers MD5 whatever was offered.
        let md5 = challenge.text.replace("algorithm=SHA-256", "algorithm=MD5");
        let auth = support::phone::digest_md5(
            &md5,
            "user1",
            "user1-lab-password",
            "REGISTER",
            "sip:adatum.biz",
        );
        phone
            .send(&phone.register_for("user1", 2, Some(&auth)))
            .await;
        let answer = phone.recv().await;
        assert_eq!(answer.status(), status, "{list:?}\n{}", answer.text);
        d.stop().await;
    }
}
