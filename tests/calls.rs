//! Black-box: inbound calls from an SBC over mutual TLS to the shipped lab users, with
//! the virtual endpoints' scripts sped up 20x (so a 2 s answer takes 100 ms).

mod support;

use support::*;

const USER1: &str = "+18338006777";

async fn lab() -> TestDaemon {
    TestDaemon::start_with(lab_config(|t| fast(t, 0.05))).await
}

async fn until(sbc: &mut TlsSbc, status: u16) -> (Reply, Vec<Reply>) {
    sbc.until(status).await
}

#[tokio::test]
async fn dr_fork_1_2_5_two_endpoints_ring_then_desktop_answers() {
    let d = lab().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", USER1, &[]);
    sbc.send(&inv).await;
    // DR-FORK-1: 100 Trying at once.
    let first = sbc.recv().await;
    assert_eq!(first.status(), 100, "{}", first.text);
    let (ok, progress) = until(&mut sbc, 200).await;
    // DR-FORK-2: a 180 per endpoint, each its own early dialog (own To tag).
    let ringing: Vec<&Reply> = progress.iter().filter(|r| r.status() == 180).collect();
    assert_eq!(ringing.len(), 2, "{progress:#?}");
    let tags: Vec<String> = ringing
        .iter()
        .map(|r| r.to_tag().expect("180 has a To tag"))
        .collect();
    assert_ne!(tags[0], tags[1]);
    // DR-FORK-3: non-bypass trunk: one 183 for the call, with the media processor's SDP.
    let sp: Vec<&Reply> = progress.iter().filter(|r| r.status() == 183).collect();
    assert_eq!(sp.len(), 1, "{progress:#?}");
    assert!(sp[0].body().contains("m=audio "), "{}", sp[0].text);
    // DR-FORK-5: 200 with SDP on the answering fork's tag (the desktop rang first).
    let tag = ok.to_tag().unwrap();
    assert_eq!(
        tag, tags[0],
        "the 200 belongs to the desktop's early dialog"
    );
    assert_eq!(ok.header("Content-Type"), Some("application/sdp"));
    assert!(
        ok.body().contains("a=rtpmap:0 PCMU/8000"),
        "first offered codec chosen: {}",
        ok.body()
    );
    assert!(ok
        .header("Contact")
        .unwrap()
        .contains("sip.pstnhub.microsoft.com"));
    // ACK, then BYE from the SBC ends the call.
    sbc.send(in_dialog(&inv, "ACK", Some(&tag), 1)).await;
    let bye = sbc.request(&in_dialog(&inv, "BYE", Some(&tag), 2)).await;
    assert_eq!((bye.status(), bye.cseq_method()), (200, Some("BYE")));
    d.calls_drained().await;
}

#[tokio::test]
async fn dr_fork_8_cancel_gets_200_and_487_and_leaves_nothing() {
    let d = lab().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", USER1, &[]);
    sbc.send(&inv).await;
    until(&mut sbc, 180).await;
    sbc.send(in_dialog(&inv, "CANCEL", None, 1)).await;
    let mut got = Vec::new();
    while got.len() < 2 {
        let r = sbc.recv().await;
        if r.status() >= 200 {
            got.push((
                r.status(),
                r.cseq_method().unwrap_or("").to_owned(),
                r.to_tag(),
            ));
        }
    }
    assert!(
        got.iter().any(|(s, m, _)| *s == 200 && m == "CANCEL"),
        "{got:?}"
    );
    let (_, _, tag) = got
        .iter()
        .find(|(s, m, _)| *s == 487 && m == "INVITE")
        .expect("487 to the INVITE")
        .clone();
    sbc.send(ack_non2xx(&inv, tag.as_deref())).await;
    d.calls_drained().await;
}

#[tokio::test]
async fn dr_fork_8_cancel_for_an_unknown_transaction_is_481() {
    let d = lab().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", USER1, &[]);
    let r = sbc.request(&in_dialog(&inv, "CANCEL", None, 1)).await;
    assert_eq!((r.status(), r.cseq_method()), (481, Some("CANCEL")));
}

#[tokio::test]
async fn bye_for_an_unknown_dialog_is_481() {
    let d = lab().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", USER1, &[]);
    let r = sbc
        .request(&in_dialog(&inv, "BYE", Some("nosuchtag"), 2))
        .await;
    assert_eq!(r.status(), 481, "{}", r.text);
    // A stray ACK gets no answer and harms nothing.
    sbc.send(in_dialog(&inv, "ACK", Some("nosuchtag"), 1)).await;
    assert_eq!(sbc.options().await.status(), 200);
}

#[tokio::test]
async fn dr_ten_3_unknown_number_and_number_without_plus_are_404_511404() {
    let d = lab().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    for number in ["+15555550100", "18338006777"] {
        let inv = invite("sbc1.adatum.biz", number, &[]);
        let r = sbc.request(&inv).await;
        assert_eq!(
            (r.status(), r.ms_code()),
            (404, Some(511404)),
            "{number}: {}",
            r.text
        );
        sbc.send(ack_non2xx(&inv, r.to_tag().as_deref())).await;
    }
    d.calls_drained().await;
}

#[tokio::test]
async fn dr_ten_3_without_user_phone_a_plus_number_is_still_a_number() {
    let d = lab().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", "+1-833-800-6777", &[]).replacen(
        ";user=phone SIP/2.0",
        " SIP/2.0",
        1,
    );
    sbc.send(&inv).await;
    assert_eq!(sbc.recv().await.status(), 100);
}

#[tokio::test]
async fn dr_ten_4_non_did_number_resolves_inside_the_callers_tenant() {
    // +1001 exists in adatum and contoso; neither reception user has endpoints, so the
    // 480's diagnostic shows which tenant's user was found.
    let d = lab().await;
    for (sbc_name, fqdn, user) in [
        ("sbc1.adatum.biz", "sbc1.adatum.biz", "reception@adatum.biz"),
        (
            "star.contoso.com",
            "sbc2.contoso.com",
            "reception@contoso.com",
        ),
    ] {
        let mut sbc = connect_as(&d, sbc_name).await.unwrap();
        let r = sbc.request(&invite(fqdn, "+1001", &[])).await;
        assert_eq!((r.status(), r.ms_code()), (480, Some(10037)), "{}", r.text);
        assert!(
            r.header("ms-diagnostics").unwrap().contains(user),
            "{}",
            r.text
        );
        assert!(
            r.header("Reason").unwrap().starts_with("Q.850;cause=31;"),
            "{}",
            r.text
        );
    }
}

#[tokio::test]
async fn dr_ten_5_blocked_caller_is_403_510534() {
    let d = lab().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", USER1, &[]).replace("+17168712781@", "+19005550100@");
    let r = sbc.request(&inv).await;
    assert_eq!((r.status(), r.ms_code()), (403, Some(510534)), "{}", r.text);
    assert!(r
        .header("ms-diagnostics")
        .unwrap()
        .contains("pattern=\"+1900*\""));
}

#[tokio::test]
async fn dr_fork_6_invite_without_sdp_is_415() {
    let d = lab().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", USER1, &[]);
    let head = inv.split("Content-Type:").next().unwrap();
    let delayed = format!("{head}Content-Length: 0\r\n\r\n");
    let r = sbc.request(&delayed).await;
    assert_eq!((r.status(), r.ms_code()), (415, Some(540415)), "{}", r.text);
}

#[tokio::test]
async fn unusable_offer_is_488_531000_naming_what_was_offered() {
    let d = lab().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
    let inv = invite("sbc1.adatum.biz", USER1, &[]);
    let head = inv.split("Content-Type:").next().unwrap();
    let g729 = format!(
        "{head}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    let r = sbc.request(&g729).await;
    assert_eq!((r.status(), r.ms_code()), (488, Some(531000)), "{}", r.text);
    assert!(
        r.header("ms-diagnostics").unwrap().contains("G729/8000"),
        "{}",
        r.text
    );
    let junk = format!("{head}Content-Type: application/sdp\r\nContent-Length: 9\r\n\r\nnot sdp!!");
    assert_eq!(sbc.request(&junk).await.status(), 488);
}

#[tokio::test]
async fn dr_fork_7_every_fork_busy_gives_486_with_reason() {
    let d = lab().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", "+18338006778", &[]);
    sbc.send(&inv).await;
    let (busy, _) = until(&mut sbc, 486).await;
    assert_eq!(busy.ms_code(), Some(540100));
    assert!(
        busy.header("Reason")
            .unwrap()
            .starts_with("Q.850;cause=17;"),
        "{}",
        busy.text
    );
    assert!(busy
        .header("ms-diagnostics")
        .unwrap()
        .contains("desktop=486"));
    sbc.send(ack_non2xx(&inv, busy.to_tag().as_deref())).await;
    d.calls_drained().await;
}

#[tokio::test]
async fn dr_fork_7_ring_timeout_gives_the_configured_status() {
    let cfg = lab_config(|t| {
        fast(t, 0.05)
            .replace("ring_timeout_seconds = 60", "ring_timeout_seconds = 0.3")
            .replace("ring_timeout_status = 480", "ring_timeout_status = 408")
            // Nobody answers: drop the answers from user1's endpoints.
            .replace("answer_after_seconds = 0.1\n", "\n")
            .replace("answer_after_seconds = 0.125\n", "\n")
    });
    let d = TestDaemon::start_with(cfg).await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", USER1, &[]);
    sbc.send(&inv).await;
    let (timeout, _) = until(&mut sbc, 408).await;
    assert_eq!(timeout.ms_code(), Some(540480), "{}", timeout.text);
    sbc.send(ack_non2xx(&inv, timeout.to_tag().as_deref()))
        .await;
    d.calls_drained().await;
}

#[tokio::test]
async fn dr_fork_9_deflection_to_voicemail_is_answered_by_voicemail() {
    let d = lab().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", "+18338006779", &[]);
    sbc.send(&inv).await;
    let (ok, progress) = until(&mut sbc, 200).await;
    let ringing_tag = progress
        .iter()
        .find(|r| r.status() == 180)
        .and_then(Reply::to_tag)
        .expect("the web client rang");
    assert_ne!(
        ok.to_tag().unwrap(),
        ringing_tag,
        "voicemail answers on its own dialog"
    );
    assert!(ok.body().contains("m=audio"));
    let tag = ok.to_tag().unwrap();
    sbc.ack_and_bye(&inv, &tag).await;
    d.calls_drained().await;
}

#[tokio::test]
async fn dr_fork_3_bypass_trunk_gets_one_183_per_fork_with_endpoint_sdp() {
    let d = lab().await;
    let mut sbc = connect_as(&d, "star.contoso.com").await.unwrap();
    let inv = invite("sbc2.contoso.com", "+14255550190", &[]);
    sbc.send(&inv).await;
    let (ok, progress) = until(&mut sbc, 200).await;
    let sp: Vec<&Reply> = progress.iter().filter(|r| r.status() == 183).collect();
    assert_eq!(sp.len(), 2, "one 183 per answering fork: {progress:#?}");
    assert_ne!(sp[0].to_tag(), sp[1].to_tag());
    assert_ne!(sp[0].body(), sp[1].body(), "each endpoint's own SDP");
    // DR-FORK-5 on bypass: the 200 carries the answering endpoint's SDP, the same it
    // showed in its 183.
    let desktop_183 = sp
        .iter()
        .find(|r| r.to_tag() == ok.to_tag())
        .expect("the answering fork sent a 183");
    assert_eq!(desktop_183.body(), ok.body());
    let tag = ok.to_tag().unwrap();
    sbc.ack_and_bye(&inv, &tag).await;
    d.calls_drained().await;
}

#[tokio::test]
async fn retransmitted_invite_is_absorbed() {
    let d = lab().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", "+15555550100", &[]);
    let first = sbc.request(&inv).await;
    assert_eq!(first.status(), 404);
    // The same INVITE again (same branch): the transaction re-sends its final response.
    let again = sbc.request(&inv).await;
    assert_eq!(
        again.text, first.text,
        "the very same response, not a new rejection"
    );
    assert_eq!(
        d.hub
            .counters
            .rejected
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn endpoint_hangs_up_and_the_proxy_sends_bye() {
    let cfg = lab_config(|t| {
        fast(t, 0.05).replacen(
            "answer_after_seconds = 0.1\n",
            "answer_after_seconds = 0.1\n    hangup_after_seconds = 0.1\n",
            1,
        )
    });
    let d = TestDaemon::start_with(cfg).await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", USER1, &[]);
    sbc.send(&inv).await;
    let (ok, _) = until(&mut sbc, 200).await;
    let tag = ok.to_tag().unwrap();
    sbc.send(in_dialog(&inv, "ACK", Some(&tag), 1)).await;
    let bye = sbc.recv().await;
    assert!(
        bye.text
            .starts_with("BYE sip:+17168712781@sbc1.adatum.biz:5061;transport=tls SIP/2.0"),
        "{}",
        bye.text
    );
    assert!(bye.header("From").unwrap().contains(&tag));
    // Answer the BYE like an SBC.
    let via = bye.header("Via").unwrap();
    let resp = format!(
        "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        bye.header("From").unwrap(),
        bye.header("To").unwrap(),
        bye.header("Call-ID").unwrap(),
        bye.header("CSeq").unwrap()
    );
    sbc.send(resp).await;
    d.calls_drained().await;
}

#[tokio::test]
async fn sbc_that_never_acks_the_200_gets_a_bye_with_1106() {
    let cfg = lab_config(|t| fast(t, 0.05).replace("t1_seconds = 0.5", "t1_seconds = 0.01"));
    let d = TestDaemon::start_with(cfg).await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", USER1, &[]);
    sbc.send(&inv).await;
    until(&mut sbc, 200).await;
    // No ACK: the 200 is retransmitted, then after 64*T1 the proxy gives up with BYE.
    loop {
        let r = sbc.recv().await;
        if r.text.starts_with("BYE ") {
            assert!(
                r.header("ms-diagnostics").unwrap().starts_with("1106;"),
                "{}",
                r.text
            );
            break;
        }
        assert_eq!(
            r.status(),
            200,
            "only 200 retransmissions before the BYE: {}",
            r.text
        );
    }
}

#[tokio::test]
async fn draining_daemon_refuses_new_calls_with_503_retry_after() {
    let d = lab().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    d.hub.set_draining();
    let r = sbc.request(&invite("sbc1.adatum.biz", USER1, &[])).await;
    assert_eq!(
        (r.status(), r.header("Retry-After")),
        (503, Some("1")),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn dr_val_failures_on_invite_get_the_same_answers_as_on_options() {
    let d = lab().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let base = invite("sbc1.adatum.biz", USER1, &[]);
    let contact = "Contact: <sip:+17168712781@sbc1.adatum.biz:5061;transport=tls>";
    let cases: Vec<(&str, String, u16, Option<u32>)> = vec![
        (
            "DR-VAL-1 no Contact",
            base.replace(&format!("{contact}\r\n"), ""),
            400,
            Some(540400),
        ),
        (
            "DR-VAL-2 IP in Contact",
            base.replace(contact, "Contact: <sip:+17168712781@192.0.2.10:5061>"),
            403,
            Some(540431),
        ),
        (
            "DR-VAL-3 FQDN not on certificate",
            base.replace(contact, "Contact: <sip:+17168712781@sbc2.contoso.com>"),
            403,
            Some(540403),
        ),
        (
            "DR-VAL-4 IP in Record-Route",
            invite(
                "sbc1.adatum.biz",
                USER1,
                &["Record-Route: <sip:192.0.2.10;lr>"],
            ),
            403,
            Some(540432),
        ),
        (
            "DR-VAL-5 sips Request-URI",
            base.replacen("INVITE sip:", "INVITE sips:", 1),
            416,
            Some(540416),
        ),
        (
            "DR-VAL-7 empty user",
            base.replace(contact, "Contact: <sip:@sbc1.adatum.biz:5061>"),
            400,
            Some(540400),
        ),
    ];
    for (what, req, status, code) in cases {
        let r = sbc.request(&req).await;
        assert_eq!(
            (r.status(), r.ms_code()),
            (status, code),
            "{what}: {}",
            r.text
        );
        assert!(r.header("Reason").is_some(), "{what}: DR-VAL-8 Reason");
        sbc.send(ack_non2xx(&req, r.to_tag().as_deref())).await;
    }
    // An SBC in no tenant.
    let mut stranger = connect_as(&d, "sbc1.fabrikam.com").await.unwrap();
    let r = stranger
        .request(&invite("sbc1.fabrikam.com", USER1, &[]))
        .await;
    assert_eq!((r.status(), r.ms_code()), (403, Some(510532)));
    d.calls_drained().await;
}

#[tokio::test]
async fn dr_fork_4_an_endpoint_may_go_straight_to_accepted() {
    // User2 on the bypass trunk: the desktop answers without a 180 or 183 first.
    let cfg = lab_config(|t| {
        let direct = t.replace(
            "    ring_after_seconds = 0.1\n    media_answer_after_seconds = 0.5\n    answer_after_seconds = 1.5\n",
            "    answer_after_seconds = 0.4\n",
        );
        assert_ne!(direct, t, "the lab config's User2 desktop script changed");
        fast(direct, 0.05)
    });
    let d = TestDaemon::start_with(cfg).await;
    let mut sbc = connect_as(&d, "star.contoso.com").await.unwrap();
    let inv = invite("sbc2.contoso.com", "+14255550190", &[]);
    sbc.send(&inv).await;
    let (ok, progress) = until(&mut sbc, 200).await;
    let answered = ok.to_tag().unwrap();
    assert!(
        progress
            .iter()
            .all(|r| r.to_tag().as_deref() != Some(answered.as_str())),
        "the answering fork sent nothing before its 200: {progress:#?}"
    );
    sbc.ack_and_bye(&inv, &answered).await;
    d.calls_drained().await;
}

#[tokio::test]
async fn dr_fork_10_an_invite_with_a_3_kb_sdp_is_handled_whole() {
    let d = lab().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let mut sdp = String::from("v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n");
    for i in 0..60 {
        sdp.push_str(&format!(
            "a=candidate:{i} 1 UDP 2130706431 192.0.2.{} {} typ host\r\n",
            i + 10,
            40000 + i
        ));
    }
    assert!(sdp.len() > 3000, "{}", sdp.len());
    let inv = invite("sbc1.adatum.biz", USER1, &[]);
    let head = inv.split("Content-Type:").next().unwrap();
    let big = format!(
        "{head}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    sbc.send(&big).await;
    let (ok, _) = until(&mut sbc, 200).await;
    let tag = ok.to_tag().unwrap();
    sbc.ack_and_bye(&big, &tag).await;
    d.calls_drained().await;
}

#[tokio::test]
async fn dr_ten_1_tenant_by_the_full_sbc_fqdn() {
    // contoso also registers the SBC's own FQDN: the exact match (DR-TEN-1) finds it.
    let cfg = lab_config(|t| {
        fast(t, 0.05).replace(
            "domains = [\"contoso.com\"]",
            "domains = [\"contoso.com\", \"sbc2.contoso.com\"]",
        )
    });
    let d = TestDaemon::start_with(cfg).await;
    let mut sbc = connect_as(&d, "star.contoso.com").await.unwrap();
    sbc.fqdn = "sbc2.contoso.com".into();
    assert_eq!(sbc.options().await.status(), 200);
    let (id, how) = d
        .hub
        .directory()
        .tenant_for_sbc("sbc2.contoso.com")
        .unwrap();
    assert_eq!(
        (d.hub.directory().tenant(id).id.as_str(), how),
        ("contoso", drhub::directory::TenantMatch::Exact)
    );
    let inv = invite("sbc2.contoso.com", "+14255550190", &[]);
    sbc.send(&inv).await;
    let (ok, _) = until(&mut sbc, 200).await;
    let tag = ok.to_tag().unwrap();
    sbc.ack_and_bye(&inv, &tag).await;
}

#[tokio::test]
async fn dr_ten_6_max_concurrent_sessions_alerts_at_90_percent_and_refuses_nothing() {
    let cfg = lab_config(|t| {
        fast(t, 0.05).replace(
            "max_concurrent_sessions = 100",
            "max_concurrent_sessions = 2",
        )
    });
    let d = TestDaemon::start_with(cfg).await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    // Two calls to User1 at once; both are up (ringing) before the first answer at 100 ms.
    let a = invite("sbc1.adatum.biz", USER1, &[]);
    let b = invite("sbc1.adatum.biz", USER1, &[]);
    sbc.send(&a).await;
    sbc.send(&b).await;
    let mut trying = 0;
    while trying < 2 {
        if sbc.recv().await.status() == 100 {
            trying += 1;
        }
    }
    assert_eq!(
        d.hub.calls.trunk_load("sbc1.adatum.biz"),
        (2, true),
        "flagged at 90 % of 2"
    );
    // Nothing is refused: both calls are answered.
    let mut answered = Vec::new();
    while answered.len() < 2 {
        let r = sbc.recv().await;
        assert!(r.status() < 300, "no call refused: {}", r.text);
        if r.status() == 200 && r.cseq_method() == Some("INVITE") {
            answered.push((r.header("Call-ID").unwrap().to_owned(), r.to_tag().unwrap()));
        }
    }
    for (call_id, tag) in answered {
        let inv = if req_header(&a, "Call-ID") == Some(call_id.as_str()) {
            &a
        } else {
            &b
        };
        sbc.ack_and_bye(inv, &tag).await;
    }
    d.calls_drained().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while d.hub.calls.trunk_load("sbc1.adatum.biz") != (0, false) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "trunk count back to 0"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// `text` with each character as the one byte of its Latin-1 code, the way an SBC that
/// speaks Latin-1 sends a caller name such as Müller (0xFC).
fn latin1(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).expect("a Latin-1 character"))
        .collect()
}

/// The next final response to the request with this Call-ID (retransmissions of other
/// transactions' responses skipped).
async fn final_for(sbc: &mut TlsSbc, request: &str) -> Reply {
    let call_id = req_header(request, "Call-ID");
    loop {
        let r = sbc.recv().await;
        if r.is_response() && r.status() >= 200 && r.header("Call-ID") == call_id {
            return r;
        }
    }
}

#[tokio::test]
async fn dr_tls_2_a_latin1_caller_name_is_answered_and_the_call_up_on_the_connection_goes_on() {
    let d = lab().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", USER1, &[]);
    sbc.send(&inv).await;
    let (ok, _) = until(&mut sbc, 200).await;
    let tag = ok.to_tag().unwrap();
    sbc.send(in_dialog(&inv, "ACK", Some(&tag), 1)).await;

    // On the same TLS connection, an OPTIONS whose From has a Latin-1 display name: it is
    // answered, and the SBC sees its From echoed in UTF-8 (the emulator's choice).
    let opt = options("sbc1.adatum.biz", None, &[]).replacen("From: <", "From: \"Müller\" <", 1);
    sbc.send(latin1(&opt)).await;
    let r = final_for(&mut sbc, &opt).await;
    assert_eq!(r.status(), 200, "{}", r.text);
    assert!(
        r.header("From").unwrap().starts_with("\"Müller\" <sip:"),
        "{}",
        r.text
    );
    // An INVITE from a Latin-1 caller is taken like any other (here: a number nobody
    // has, 404), not dropped with the connection.
    let second =
        invite("sbc1.adatum.biz", "+15555550100", &[]).replacen("From: <", "From: \"Müller\" <", 1);
    sbc.send(latin1(&second)).await;
    let nf = final_for(&mut sbc, &second).await;
    assert_eq!(
        (nf.status(), nf.ms_code()),
        (404, Some(511404)),
        "{}",
        nf.text
    );
    assert!(nf.header("From").unwrap().contains("Müller"), "{}", nf.text);
    sbc.send(latin1(&ack_non2xx(&second, nf.to_tag().as_deref())))
        .await;

    // The call that was up is unaffected: the SBC's BYE ends it.
    let bye = in_dialog(&inv, "BYE", Some(&tag), 2);
    sbc.send(&bye).await;
    let r = final_for(&mut sbc, &bye).await;
    assert_eq!(
        (r.status(), r.cseq_method()),
        (200, Some("BYE")),
        "{}",
        r.text
    );
    d.calls_drained().await;
}
