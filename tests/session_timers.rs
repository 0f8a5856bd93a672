//! Black-box: RFC 4028 session timers on non-bypass calls (DR-ST-1..3), over real
//! sockets. Intervals are seconds, not minutes: the lab config lowers `min_se_seconds`
//! below RFC 4028's 90 (a lab-only setting `drhub check` warns about).

mod support;

use std::time::{Duration, Instant};

use support::phone::{Phone, PHONE_SDP};
use support::*;

const USER1: &str = "+18338006777";

/// Scripts 20 times faster and a Min-SE of 1 s.
fn config() -> drhub::config::Config {
    lab_config(|t| set_key(&fast(t, 0.05), "calls", "min_se_seconds", "1"))
}

#[tokio::test]
async fn dr_st_3_an_invite_below_min_se_gets_422_with_min_se() {
    let d = TestDaemon::start_with(lab_config(|t| fast(t, 0.05))).await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite(
        "sbc1.adatum.biz",
        USER1,
        &["Supported: timer", "Session-Expires: 30"],
    );
    let r = sbc.request(&inv).await;
    assert_eq!((r.status(), r.ms_code()), (422, Some(540422)), "{}", r.text);
    assert_eq!(r.header("Min-SE"), Some("90"), "{}", r.text);
    sbc.send(ack_non2xx(&inv, r.to_tag().as_deref())).await;
    // RFC 4028 §7.3: the retry with the Min-SE as its interval is taken.
    let retry = invite(
        "sbc1.adatum.biz",
        USER1,
        &["Supported: timer", "Session-Expires: 90", "Min-SE: 90"],
    );
    sbc.send(&retry).await;
    let (ok, _) = sbc.until(200).await;
    assert_eq!(
        ok.header("Session-Expires"),
        Some("90;refresher=uac"),
        "{}",
        ok.text
    );
    sbc.ack_and_bye(&retry, &ok.to_tag().unwrap()).await;
    d.calls_drained().await;
}

#[tokio::test]
async fn dr_st_1_non_bypass_200_carries_the_session_timer_and_bypass_none() {
    let d = TestDaemon::start_with(lab_config(|t| fast(t, 0.05))).await;
    // Non-bypass (sbc1): drhub's 1800 s, drhub refreshes (the SBC has no timer support).
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", USER1, &[]);
    sbc.send(&inv).await;
    let (ok, _) = sbc.until(200).await;
    assert_eq!(
        ok.header("Session-Expires"),
        Some("1800;refresher=uas"),
        "{}",
        ok.text
    );
    assert!(
        ok.header("Supported").is_some_and(|s| s.contains("timer")),
        "{}",
        ok.text
    );
    assert!(ok.header("Require").is_none(), "{}", ok.text);
    sbc.ack_and_bye(&inv, &ok.to_tag().unwrap()).await;
    // Bypass (sbc2.contoso.com): none.
    let mut bypass = connect_as(&d, "star.contoso.com").await.unwrap();
    bypass.fqdn = "sbc2.contoso.com".into();
    let inv = invite("sbc2.contoso.com", "+14255550190", &["Supported: timer"]);
    bypass.send(&inv).await;
    let (ok, _) = bypass.until(200).await;
    assert!(ok.header("Session-Expires").is_none(), "{}", ok.text);
    bypass.ack_and_bye(&inv, &ok.to_tag().unwrap()).await;
    d.calls_drained().await;
}

#[tokio::test]
async fn dr_st_2_the_sbc_refreshes_by_update_and_the_call_stays_up() {
    let d = TestDaemon::start_with(config()).await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite(
        "sbc1.adatum.biz",
        USER1,
        &["Supported: timer", "Session-Expires: 2;refresher=uac"],
    );
    sbc.send(&inv).await;
    let (ok, _) = sbc.until(200).await;
    assert_eq!(
        ok.header("Session-Expires"),
        Some("2;refresher=uac"),
        "{}",
        ok.text
    );
    assert_eq!(ok.header("Require"), Some("timer"), "{}", ok.text);
    let tag = ok.to_tag().unwrap();
    sbc.send(in_dialog(&inv, "ACK", Some(&tag), 1)).await;
    // Refresh every second for four seconds: twice the interval, no BYE.
    for cseq in 2..6 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let update = in_dialog(&inv, "UPDATE", Some(&tag), cseq).replace(
            "Content-Length: 0",
            "Supported: timer\r\nSession-Expires: 2;refresher=uac\r\nContent-Length: 0",
        );
        let r = sbc.request(&update).await;
        assert_eq!(
            (r.status(), r.cseq_method()),
            (200, Some("UPDATE")),
            "{}",
            r.text
        );
        assert_eq!(
            r.header("Session-Expires"),
            Some("2;refresher=uac"),
            "{}",
            r.text
        );
    }
    assert_eq!(d.hub.calls.len(), 1);
    let r = sbc.request(&in_dialog(&inv, "BYE", Some(&tag), 9)).await;
    assert_eq!((r.status(), r.cseq_method()), (200, Some("BYE")));
    d.calls_drained().await;
}

#[tokio::test]
async fn dr_st_2_a_refresh_that_never_comes_ends_both_sides_and_leaves_nothing() {
    // The softphone answers; the virtual clients only ring.
    let d = TestDaemon::start_with(lab_config(|t| {
        let t = fast(t, 0.05)
            .replace("answer_after_seconds = 0.1\n", "\n")
            .replace("answer_after_seconds = 0.125\n", "\n");
        set_key(&t, "calls", "min_se_seconds", "1")
    }))
    .await;
    let phone = Phone::new(d.addr("endpoints")).await;
    assert_eq!(phone.register_with("user1-lab-password").await, 200);
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite(
        "sbc1.adatum.biz",
        USER1,
        &["Supported: timer", "Session-Expires: 3;refresher=uac"],
    );
    sbc.send(&inv).await;
    let to_phone = phone.recv_request("INVITE").await;
    phone
        .answer(&to_phone, 200, "OK", "ph", Some(PHONE_SDP))
        .await;
    let (ok, _) = sbc.until(200).await;
    let answered = Instant::now();
    sbc.send(in_dialog(&inv, "ACK", ok.to_tag().as_deref(), 1))
        .await;
    // No refresh: 3 - min(32, 1) = 2 s after the answer, BYE to both sides.
    let bye = sbc.until_request("BYE").await;
    let after = answered.elapsed();
    assert!(
        after >= Duration::from_millis(1800) && after < Duration::from_millis(3000),
        "BYE after {after:?}"
    );
    assert!(
        bye.header("ms-diagnostics").unwrap().starts_with("540408;"),
        "{}",
        bye.text
    );
    sbc.send(response_to(&bye.text, 200, "OK", &[])).await;
    let phone_bye = phone.recv_request("BYE").await;
    assert!(
        phone_bye.header("To").unwrap().contains("tag=ph"),
        "{}",
        phone_bye.text
    );
    phone.answer(&phone_bye, 200, "OK", "ph", None).await;
    d.calls_drained().await;
    assert_eq!(d.hub.calls.legs(), 0, "no leg left indexed");
}

#[tokio::test]
async fn dr_st_3_a_re_invite_below_min_se_gets_422_and_the_call_stays_up() {
    let d = TestDaemon::start_with(lab_config(|t| fast(t, 0.05))).await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", USER1, &["Supported: timer"]);
    sbc.send(&inv).await;
    let (ok, _) = sbc.until(200).await;
    let tag = ok.to_tag().unwrap();
    sbc.send(in_dialog(&inv, "ACK", Some(&tag), 1)).await;
    let sdp = inv.split("\r\n\r\n").nth(1).unwrap_or_default();
    let reinvite = in_dialog(&inv, "INVITE", Some(&tag), 2).replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Contact: <sip:+17168712781@sbc1.adatum.biz:5061;transport=tls>\r\nSupported: timer\r\nSession-Expires: 60\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ),
    );
    let r = sbc.request(&reinvite).await;
    assert_eq!((r.status(), r.ms_code()), (422, Some(540422)), "{}", r.text);
    assert_eq!(r.header("Min-SE"), Some("90"), "{}", r.text);
    sbc.send(ack_non2xx(&reinvite, Some(&tag))).await;
    // The call is up and its dialog answers.
    let r = sbc.request(&in_dialog(&inv, "BYE", Some(&tag), 3)).await;
    assert_eq!(
        (r.status(), r.cseq_method()),
        (200, Some("BYE")),
        "{}",
        r.text
    );
    d.calls_drained().await;
}
