//! Black-box: the conformance report (DR-CONF). A deliberately misbehaving SBC sends,
//! over mutual TLS, an INVITE with an IP address in Contact (twice), one with Replaces,
//! one to a number without `+`, one without SDP, and one to a number without
//! `user=phone` that drhub accepts. `GET /api/report` and `drhub report` list each
//! fault with its requirement ID, count and last Call-ID.
//!
//! Then what an SBC does after a refusal, and what it sends towards a UDP leg: a call
//! declined with 603 and tried again (DR-ERR-2), a busy datacenter's 503 answered by
//! retrying it rather than the next one (DR-DC-2), and an SDP over 1,500 bytes that a
//! media-bypass call relays to a softphone registered over UDP (DR-FORK-10).

mod support;

use std::process::Command;

use serde_json::{json, Value};

use drhub::api::request;
use support::phone::Phone;
use support::*;

fn with_line(inv: &str, name: &str, value: &str) -> String {
    let mut out = Vec::new();
    let mut replaced = false;
    for l in inv.split("\r\n") {
        if l.to_ascii_lowercase()
            .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        {
            out.push(format!("{name}: {value}"));
            replaced = true;
        } else {
            out.push(l.to_owned());
        }
    }
    let s = out.join("\r\n");
    if replaced {
        s
    } else {
        s.replacen(
            "CSeq: 1 INVITE\r\n",
            &format!("CSeq: 1 INVITE\r\n{name}: {value}\r\n"),
            1,
        )
    }
}

#[tokio::test]
async fn dr_conf_the_report_lists_what_a_misbehaving_sbc_did() {
    let d = TestDaemon::start_with(lab_config(|t| fast(t, 0.05))).await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    assert_eq!(sbc.options().await.status(), 200);
    let user1 = "+18338006777";
    let mut last_ip = String::new();
    for _ in 0..2 {
        let inv = with_line(
            &invite("sbc1.adatum.biz", user1, &[]),
            "Contact",
            "<sip:+17168712781@192.0.2.50:5061;transport=tls>",
        );
        let r = sbc.request(&inv).await;
        assert_eq!(r.status(), 403, "{}", r.text);
        last_ip = req_header(&inv, "Call-ID").unwrap().to_owned();
    }
    let replaces = invite(
        "sbc1.adatum.biz",
        user1,
        &["Replaces: abc@x;to-tag=1;from-tag=2"],
    );
    assert_eq!(sbc.request(&replaces).await.status(), 403);
    let no_plus = invite("sbc1.adatum.biz", "18338006777", &[]);
    assert_eq!(sbc.request(&no_plus).await.status(), 404);
    let inv = invite("sbc1.adatum.biz", user1, &[]);
    let head = inv.split("Content-Type:").next().unwrap();
    let delayed = format!("{head}Content-Length: 0\r\n\r\n");
    assert_eq!(sbc.request(&delayed).await.status(), 415);
    // Accepted, but without user=phone.
    let bare = invite("sbc1.adatum.biz", user1, &RR).replacen(";user=phone SIP/2.0", " SIP/2.0", 1);
    sbc.send(&bare).await;
    let (ok, _) = sbc.until(200).await;
    sbc.send(routed(&bare, &ok, "ACK", 1, &[])).await;
    let bye = sbc.request(&routed(&bare, &ok, "BYE", 2, &[])).await;
    assert_eq!(bye.status(), 200);
    d.calls_drained().await;

    let (s, v) = request(
        d.addr("api"),
        "GET",
        "/api/report?sbc=sbc1.adatum.biz",
        None,
        None,
    )
    .await
    .expect("API reachable");
    assert_eq!(s, 200, "{v}");
    let sbcs = v["sbcs"].as_array().unwrap();
    assert_eq!(sbcs.len(), 1, "{v}");
    let findings = sbcs[0]["findings"].as_array().unwrap();
    let find = |req: &str, severity: &str| {
        findings
            .iter()
            .find(|f| f["requirement"] == req && f["severity"] == severity)
            .unwrap_or_else(|| panic!("no {severity} {req} in {v:#}"))
    };
    let ip = find("DR-VAL-2", "broke");
    assert_eq!(ip["count"], 2, "{v:#}");
    assert_eq!(ip["last_call_id"], last_ip.as_str());
    assert!(
        ip["detail"].as_str().unwrap().contains("192.0.2.50"),
        "{v:#}"
    );
    find("DR-VAL-6", "broke");
    find("DR-FORK-6", "broke");
    let plus = find("DR-TEN-3", "broke");
    assert!(
        plus["what"]
            .as_str()
            .unwrap()
            .contains("without a leading +"),
        "{v:#}"
    );
    let phone = find("DR-TEN-3", "nearly");
    assert_eq!(phone["last_call_id"], req_header(&bare, "Call-ID").unwrap());
    // Broken first, then nearly.
    assert_eq!(findings.last().unwrap()["severity"], "nearly", "{v:#}");

    // Every SBC of the config is listed; an unknown one is 404.
    let (_, all) = request(d.addr("api"), "GET", "/api/report", None, None)
        .await
        .unwrap();
    let names: Vec<&str> = all["sbcs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["sbc"].as_str())
        .collect();
    assert!(
        names.contains(&"sbc2.adatum.biz") && names.contains(&"sbc1.adatum.biz"),
        "{names:?}"
    );
    let (s, _) = request(
        d.addr("api"),
        "GET",
        "/api/report?sbc=nobody.example",
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(s, 404);

    // The command line, as an engineer runs it against the daemon.
    let api = d.addr("api").to_string();
    // Off the runtime's thread: the daemon answering it runs there.
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_drhub"))
            .args(["report", "--sbc", "sbc1.adatum.biz", "--api", &api])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("sbc1.adatum.biz\n"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("broke") && l.contains("DR-VAL-2") && l.contains("2x")),
        "{text}"
    );
    assert!(text.contains(&format!("Call-ID {last_ip}")), "{text}");
}

/// The findings of one SBC, as `GET /api/report?sbc=` lists them.
async fn findings(d: &TestDaemon, sbc: &str) -> Vec<Value> {
    let path = format!("/api/report?sbc={sbc}");
    let (s, v) = request(d.addr("api"), "GET", &path, None, None)
        .await
        .expect("API reachable");
    assert_eq!(s, 200, "{v}");
    v["sbcs"][0]["findings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The finding of `requirement`, if any.
fn finding<'a>(findings: &'a [Value], requirement: &str) -> Option<&'a Value> {
    findings.iter().find(|f| f["requirement"] == requirement)
}

/// The SBC's INVITE got a final failure: ACKed, and that failure returned.
async fn refused(sbc: &mut TlsSbc, inv: &str, status: u16) -> Reply {
    sbc.send(inv).await;
    let (r, _) = sbc.until(status).await;
    sbc.send(ack_non2xx(inv, r.to_tag().as_deref())).await;
    r
}

/// A user whose one Teams client declines every call with 603 at once.
const DECLINING_USER: &str = r#"
  [[tenant.user]]
  sip_address = "decline@adatum.biz"
  line_uri = "tel:+18338008603"

    [[tenant.user.endpoint]]
    name = "desktop"
    ring_after_seconds = 0
    reject_status = 603
    reject_after_seconds = 0
"#;

/// DR-ERR-2: a call declined with 603 is final. The SBC that calls the same number from
/// the same caller again within 32 s (64·T1, the emulator's window) is noted (broke),
/// with the new Call-ID, the declined one and the time between; the decline alone is not.
#[tokio::test]
async fn dr_err_2_a_call_tried_again_after_603_is_reported() {
    let d = TestDaemon::start_with(lab_config(|t| with_user(t, DECLINING_USER))).await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    assert_eq!(sbc.options().await.status(), 200);
    let first = invite("sbc1.adatum.biz", "+18338008603", &[]);
    refused(&mut sbc, &first, 603).await;
    let declined = req_header(&first, "Call-ID").unwrap();
    assert!(
        finding(&findings(&d, "sbc1.adatum.biz").await, "DR-ERR-2").is_none(),
        "a 603 alone is no finding"
    );

    let again = invite("sbc1.adatum.biz", "+18338008603", &[]);
    refused(&mut sbc, &again, 603).await;
    d.calls_drained().await;
    let list = findings(&d, "sbc1.adatum.biz").await;
    let f = finding(&list, "DR-ERR-2").unwrap_or_else(|| panic!("no DR-ERR-2 in {list:#?}"));
    assert_eq!(f["severity"], "broke", "{f:#}");
    assert_eq!(f["count"], 1, "{f:#}");
    assert_eq!(f["last_call_id"], req_header(&again, "Call-ID").unwrap());
    let detail = f["detail"].as_str().unwrap();
    assert!(
        detail.contains(" s after 603 Decline to Call-ID ") && detail.contains(declined),
        "{detail}"
    );
    assert!(
        detail.contains("from +17168712781 to +18338008603"),
        "{detail}"
    );
}

/// DR-DC-2, the seed's rule: after a busy datacenter's 503 with Retry-After, the SBC's
/// next INVITE of the call goes to the next datacenter. Moving from `sip2` to `sip` is
/// right (no finding); retrying `sip2` within its Retry-After is noted (broke).
#[tokio::test]
async fn dr_dc_2_retrying_the_datacenter_that_answered_503_is_reported_moving_on_is_not() {
    let d = TestDaemon::start_with(lab_config(|t| fast(t, 0.05))).await;
    let body = json!({"mode": "busy", "retry_after": 30});
    let (s, v) = request(
        d.addr("api"),
        "POST",
        "/api/datacenters/sip2",
        None,
        Some(&body),
    )
    .await
    .expect("API reachable");
    assert_eq!(s, 200, "{v}");
    let mut on_sip2 = connect_as_on(&d, "sip2", "sbc1.adatum.biz").await.unwrap();
    assert_eq!(on_sip2.options().await.status(), 200);
    let mut on_sip = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    assert_eq!(on_sip.options().await.status(), 200);
    // The busy user: a 486 ends each call that gets through.
    let busy = "+18338006778";

    let first = invite("sbc1.adatum.biz", busy, &[]);
    let r = refused(&mut on_sip2, &first, 503).await;
    assert_eq!(r.header("Retry-After"), Some("30"), "{}", r.text);
    refused(&mut on_sip, &invite("sbc1.adatum.biz", busy, &[]), 486).await;
    assert!(
        finding(&findings(&d, "sbc1.adatum.biz").await, "DR-DC-2").is_none(),
        "moving to the next datacenter is right"
    );

    let again = invite("sbc1.adatum.biz", busy, &[]);
    refused(&mut on_sip2, &again, 503).await;
    let retry = invite("sbc1.adatum.biz", busy, &[]);
    refused(&mut on_sip2, &retry, 503).await;
    d.calls_drained().await;
    let list = findings(&d, "sbc1.adatum.biz").await;
    let f = finding(&list, "DR-DC-2").unwrap_or_else(|| panic!("no DR-DC-2 in {list:#?}"));
    assert_eq!(
        (&f["severity"], &f["count"]),
        (&json!("broke"), &json!(1)),
        "{f:#}"
    );
    assert_eq!(f["last_call_id"], req_header(&retry, "Call-ID").unwrap());
    let detail = f["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("retried the datacenter sip2 that answered 503 Retry-After 30 after ")
            && detail.contains(" s instead of the next one")
            && detail.contains(req_header(&again, "Call-ID").unwrap()),
        "{detail}"
    );
}

/// DR-FORK-10 and the seed's advice on UDP trunks: on a media-bypass call the SBC's own
/// offer goes on, whole, to the softphone registered over UDP, in the INVITE and in the
/// SBC's re-INVITE; over 1,500 bytes of SDP each is noted on the SBC (nearly), with the
/// sizes.
#[tokio::test]
async fn dr_fork_10_sdp_over_1500_bytes_relayed_to_a_udp_phone_is_reported() {
    let d = TestDaemon::start_with(lab_config(|t| {
        fast(t, 0.05)
            .replacen("media_bypass = false", "media_bypass = true", 1)
            // User1's Teams clients ring without answering: the phone takes the call.
            .replace("answer_after_seconds = 0.1\n", "\n")
            .replace("answer_after_seconds = 0.125\n", "\n")
    }))
    .await;
    let phone = Phone::new(d.addr("endpoints")).await;
    assert_eq!(phone.register_with("user1-lab-password").await, 200);
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    assert_eq!(sbc.options().await.status(), 200);

    let plain = invite("sbc1.adatum.biz", "+18338006777", &RR);
    let (head, sdp) = plain.split_once("Content-Type:").unwrap();
    let sdp = sdp.split_once("\r\n\r\n").unwrap().1;
    let mut padded = sdp.to_owned();
    for i in 0..40 {
        padded.push_str(&format!(
            "a=candidate:{i} 1 UDP 2130706431 192.0.2.10 {} typ host\r\n",
            40000 + 2 * i
        ));
    }
    assert!(padded.len() > 1500, "{}", padded.len());
    let inv = with_sdp(&format!("{head}Content-Length: 0\r\n\r\n"), &padded);
    sbc.send(&inv).await;
    let to_phone = phone.recv_request("INVITE").await;
    assert_eq!(to_phone.body(), padded, "the SBC's SDP, whole");
    let phone_sdp = "v=0\r\no=- 7 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    phone
        .answer(&to_phone, 200, "OK", "ph1", Some(phone_sdp))
        .await;
    phone.recv_request("ACK").await;
    let (ok, _) = sbc.until(200).await;
    sbc.send(routed(&inv, &ok, "ACK", 1, &[])).await;
    // The SBC's re-INVITE goes on to the phone in its dialog, the same SDP again.
    let reinvite = with_sdp(&routed(&inv, &ok, "INVITE", 2, &[]), &padded);
    sbc.send(&reinvite).await;
    let relayed = phone.recv_request("INVITE").await;
    assert_eq!(relayed.body(), padded);
    phone
        .answer(&relayed, 200, "OK", "ph1", Some(phone_sdp))
        .await;
    phone.recv_request("ACK").await;
    sbc.until(200).await;
    sbc.send(routed(&inv, &ok, "ACK", 2, &[])).await;
    sbc.send(routed(&inv, &ok, "BYE", 3, &[])).await;
    let bye = phone.recv_request("BYE").await;
    phone.answer(&bye, 200, "OK", "ph1", None).await;
    sbc.until(200).await;
    d.calls_drained().await;

    let list = findings(&d, "sbc1.adatum.biz").await;
    let f = finding(&list, "DR-FORK-10").unwrap_or_else(|| panic!("no DR-FORK-10 in {list:#?}"));
    // The INVITE and the re-INVITE; the last is the re-INVITE.
    assert_eq!(
        (&f["severity"], &f["count"]),
        (&json!("nearly"), &json!(2)),
        "{f:#}"
    );
    assert_eq!(f["last_call_id"], req_header(&inv, "Call-ID").unwrap());
    let detail = f["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("sdp_bytes={} ", padded.len()))
            && detail.contains(&format!("message_bytes={} ", relayed.text.len()))
            && detail.contains("method=INVITE")
            && detail.contains("transport=UDP"),
        "{detail}"
    );
}
