//! Black-box: transfers the proxy makes as transferor (DR-XFER-1, DR-XFER-3, DR-XFER-5):
//! the Teams user transfers an answered call through the control API; an SBC whose
//! INVITE listed REFER gets a REFER with Direct Routing's Refer-To and Referred-By by the
//! dialog's route set, answers 202 and reports with NOTIFY `message/sipfrag`; a 200 in
//! the sipfrag ends drhub's leg with BYE. The SBCs here record-route.

mod support;

use std::time::Duration;

use serde_json::{json, Value};

use drhub::api::request;
use support::*;

const USER1: &str = "+18338006777";
const TARGET: &str = "+14255550123";
const ALLOW_REFER: &str = "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY";

async fn post(d: &TestDaemon, path: &str, body: Value) -> (u16, Value) {
    request(d.addr("api"), "POST", path, None, Some(&body))
        .await
        .expect("API reachable")
}

/// The Teams user transfers call `call_id` to `to` through the API.
async fn transfer(d: &TestDaemon, call_id: &str, to: &str) -> (u16, Value) {
    post(
        d,
        &format!("/api/calls/{call_id}/transfer"),
        json!({ "to": to }),
    )
    .await
}

/// A record-routing SBC (listing REFER when `refer`) calls User1, whose desktop
/// answers; the SBC ACKs. Returns the SBC, its INVITE, the 200 and the Call-ID.
async fn answered(d: &TestDaemon, refer: bool) -> (TlsSbc, String, Reply, String) {
    let mut sbc = connect_as(d, "sbc1.adatum.biz").await.unwrap();
    let mut extra = RR.to_vec();
    if refer {
        extra.push(ALLOW_REFER);
    }
    let inv = invite("sbc1.adatum.biz", USER1, &extra);
    sbc.send(&inv).await;
    let (ok, _) = sbc.until(200).await;
    sbc.send(routed(&inv, &ok, "ACK", 1, &[])).await;
    let call_id = req_header(&inv, "Call-ID").unwrap().to_owned();
    // The call is up once the API lists it answered.
    for _ in 0..250 {
        let (_, v) = request(
            d.addr("api"),
            "GET",
            &format!("/api/calls/{call_id}"),
            None,
            None,
        )
        .await
        .expect("API reachable");
        if v["state"] == "answered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (sbc, inv, ok, call_id)
}

/// The SBC's NOTIFY of the transfer with `sipfrag` (RFC 3515 §2.4.5), by the route set.
fn notify(inv: &str, ok: &Reply, cseq: u32, sipfrag: &str, state: &str) -> String {
    let events = ["Event: refer", state];
    with_body(
        &routed(inv, ok, "NOTIFY", cseq, &events),
        "message/sipfrag;version=2.0",
        sipfrag,
    )
}

/// DR-XFER-1, DR-XFER-3, DR-XFER-5: option 2 to a PSTN number. The REFER goes by the
/// route set to the SBC's Contact with `Refer-To: <sip:+E164@proxy;user=phone>` and a
/// `Referred-By` with `x-m`, `x-t`, `x-ti`, `x-tt`, no History-Info; after 202, NOTIFY
/// 100 and NOTIFY 200 (each answered 200), drhub hangs up its leg with BYE and the call
/// ends "transferred to +14255550123".
#[tokio::test]
async fn dr_xfer_3_the_proxy_refers_the_sbc_to_a_pstn_number() {
    let d = TestDaemon::start_with(lab_config(|t| fast(t, 0.05))).await;
    let (mut sbc, inv, ok, call_id) = answered(&d, true).await;
    let (s, v) = transfer(&d, &call_id, TARGET).await;
    assert_eq!(s, 202, "{v}");

    let refer = sbc.until_request("REFER").await;
    assert_eq!(
        refer.request_uri(),
        "sip:+17168712781@sbc1.adatum.biz:5061;transport=tls"
    );
    let want: Vec<&str> = RR
        .iter()
        .map(|l| l.trim_start_matches("Record-Route: "))
        .collect();
    assert_eq!(refer.headers("Route"), want, "{}", refer.text);
    assert_eq!(
        refer.header("Refer-To"),
        Some("<sip:+14255550123@sip.pstnhub.microsoft.com;user=phone>")
    );
    let by = refer.header("Referred-By").expect("Referred-By");
    assert!(
        by.starts_with("<sip:sip.pstnhub.microsoft.com;x-m=8:orgid:"),
        "{by}"
    );
    assert!(by.contains(";x-t=adatum;x-ti="), "{by}");
    assert!(
        by.ends_with(";x-tt=sip%3A%2B14255550123%40sip.pstnhub.microsoft.com%3Buser%3Dphone>"),
        "{by}"
    );
    assert!(
        refer.header("History-Info").is_none(),
        "DR-XFER-5: {}",
        refer.text
    );
    sbc.send(response_to(&refer.text, 202, "Accepted", &[]))
        .await;

    let trying = notify(
        &inv,
        &ok,
        2,
        "SIP/2.0 100 Trying\r\n",
        "Subscription-State: active;expires=60",
    );
    assert_eq!(sbc.request(&trying).await.status(), 200);
    let done = notify(
        &inv,
        &ok,
        3,
        "SIP/2.0 200 OK\r\n",
        "Subscription-State: terminated;reason=noresource",
    );
    let r = sbc.request(&done).await;
    assert_eq!((r.status(), r.cseq_method()), (200, Some("NOTIFY")));
    let bye = sbc.until_request("BYE").await;
    sbc.send(response_to(&bye.text, 200, "OK", &[])).await;
    d.calls_drained().await;
    let rec = d.hub.calls.recent().pop().expect("a record");
    assert_eq!(
        rec.outcome.expect("outcome").reason,
        "transferred to +14255550123"
    );
}

/// DR-XFER-3 to a Teams user of the same tenant: the Refer-To names the proxy with the
/// user's `x-m` (MRI) and the tenant's `x-t`.
#[tokio::test]
async fn dr_xfer_3_a_transfer_to_a_user_names_its_mri_and_tenant() {
    let d = TestDaemon::start_with(lab_config(|t| fast(t, 0.05))).await;
    let (mut sbc, inv, ok, call_id) = answered(&d, true).await;
    let (s, v) = transfer(&d, &call_id, "reception@adatum.biz").await;
    assert_eq!(s, 202, "{v}");
    let refer = sbc.until_request("REFER").await;
    let to = refer.header("Refer-To").expect("Refer-To");
    assert!(
        to.starts_with("<sip:sip.pstnhub.microsoft.com;x-m=8:orgid:"),
        "{to}"
    );
    assert!(to.ends_with(";x-t=adatum>"), "{to}");
    sbc.send(response_to(&refer.text, 202, "Accepted", &[]))
        .await;
    let done = notify(
        &inv,
        &ok,
        2,
        "SIP/2.0 200 OK\r\n",
        "Subscription-State: terminated",
    );
    assert_eq!(sbc.request(&done).await.status(), 200);
    let bye = sbc.until_request("BYE").await;
    sbc.send(response_to(&bye.text, 200, "OK", &[])).await;
    d.calls_drained().await;
}

/// DR-XFER bad input: a REFER the SBC refuses (405), and a transfer whose NOTIFY says
/// 486, leave the call up (the SBC's BYE still ends it with 200), and both show in the
/// conformance report (DR-CONF); an SBC whose INVITE did not list REFER gets no REFER
/// (drhub as referee rings the target user, who declines); the API refuses a bad
/// target or another tenant's user (400), an unknown call or user (404).
#[tokio::test]
async fn dr_xfer_a_refused_or_failed_transfer_leaves_the_call_up() {
    let d = TestDaemon::start_with(lab_config(|t| fast(t, 0.05))).await;
    let (s, _) = post(&d, "/api/calls/nosuch/transfer", json!({"to": TARGET})).await;
    assert_eq!(s, 404);

    // 405 to the REFER.
    let (mut sbc, inv, ok, call_id) = answered(&d, true).await;
    let (s, v) = transfer(&d, &call_id, "12345").await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = transfer(&d, &call_id, "nobody@adatum.biz").await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = transfer(&d, &call_id, "user2@contoso.com").await;
    assert_eq!(s, 400, "another tenant's user: {v}");
    transfer(&d, &call_id, TARGET).await;
    let refer = sbc.until_request("REFER").await;
    sbc.send(response_to(&refer.text, 405, "Method Not Allowed", &[]))
        .await;
    // The transfer is over: a second one is sent; its NOTIFY says 486.
    tokio::time::sleep(Duration::from_millis(100)).await;
    transfer(&d, &call_id, TARGET).await;
    let refer = sbc.until_request("REFER").await;
    sbc.send(response_to(&refer.text, 202, "Accepted", &[]))
        .await;
    let busy = notify(
        &inv,
        &ok,
        2,
        "SIP/2.0 486 Busy Here\r\n",
        "Subscription-State: terminated",
    );
    assert_eq!(sbc.request(&busy).await.status(), 200);
    assert!(
        sbc.try_recv(Duration::from_millis(300)).await.is_none(),
        "no BYE"
    );
    let bye = sbc.request(&routed(&inv, &ok, "BYE", 3, &[])).await;
    assert_eq!(bye.status(), 200, "{}", bye.text);

    // No REFER in the SBC's Allow and a user target: drhub as referee rings
    // busy@adatum.biz's client, which declines; the SBC sees nothing, the call goes on.
    let (mut sbc, inv, ok, call_id) = answered(&d, false).await;
    let (s, _) = transfer(&d, &call_id, "busy@adatum.biz").await;
    assert_eq!(s, 202);
    assert!(
        sbc.try_recv(Duration::from_millis(300)).await.is_none(),
        "no REFER"
    );
    let bye = sbc.request(&routed(&inv, &ok, "BYE", 2, &[])).await;
    assert_eq!(bye.status(), 200, "{}", bye.text);
    d.calls_drained().await;

    // DR-CONF: the refused REFER and the failed transfer are in the report.
    let (_, v) = request(
        d.addr("api"),
        "GET",
        "/api/report?sbc=sbc1.adatum.biz",
        None,
        None,
    )
    .await
    .expect("API reachable");
    let findings = v["sbcs"][0]["findings"].as_array().unwrap().clone();
    let xfer: Vec<(String, String)> = findings
        .iter()
        .filter(|f| f["requirement"] == "DR-XFER-3")
        .map(|f| {
            (
                f["what"].as_str().unwrap_or("").to_owned(),
                f["detail"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        xfer.iter()
            .any(|(w, d)| w.starts_with("REFER refused") && d == "status=405"),
        "{v:#}"
    );
    assert!(
        xfer.iter()
            .any(|(w, d)| w.contains("NOTIFY reported") && d == "sipfrag=486"),
        "{v:#}"
    );
}

/// DR-XFER-1, DR-XFER-2, DR-XFER-5: the SBC's INVITE listed no REFER, so drhub carries
/// the transfer out as referee (option 1, RFC 3892 §7.1): an INVITE to the number
/// through the SBC, from the original caller, with the transferring user's
/// `Referred-By`, no `cause` and no History-Info. When it answers, drhub ACKs it and the
/// caller talks to the target: the caller's BYE ends the new leg. A target that refuses
/// leaves the call as it was.
#[tokio::test]
async fn dr_xfer_2_without_refer_drhub_calls_the_target_as_referee() {
    let d = TestDaemon::start_with(lab_config(|t| {
        t.replacen(
            "forward_call_history = false",
            "forward_call_history = true",
            1,
        )
    }))
    .await;
    for answer in [200u16, 486] {
        let (mut sbc, inv, ok, call_id) = answered(&d, false).await;
        let (s, v) = transfer(&d, &call_id, TARGET).await;
        assert_eq!(s, 202, "{v}");
        let leg = sbc.until_request("INVITE").await;
        assert_eq!(
            leg.request_uri(),
            format!("sip:{TARGET}@sbc1.adatum.biz:5061;user=phone")
        );
        assert_ne!(leg.header("Call-ID"), Some(call_id.as_str()));
        let referred_by = leg.header("Referred-By").unwrap_or_default();
        assert!(
            referred_by.contains(";x-m=8:orgid:") && referred_by.contains(";x-t=adatum;"),
            "{}",
            leg.text
        );
        assert!(
            leg.header("History-Info").is_none(),
            "DR-XFER-5\n{}",
            leg.text
        );
        assert!(
            leg.header("From")
                .unwrap()
                .contains("<sip:+17168712781@sip.pstnhub.microsoft.com;user=phone>"),
            "{}",
            leg.text
        );
        assert!(
            leg.body().contains("a=crypto:"),
            "the media processor's offer"
        );
        let contact = "Contact: <sip:+14255550123@sbc1.adatum.biz:5061;transport=tls>";
        if answer == 200 {
            let ack = sbc.answer_200(&leg, "xfer", contact).await;
            assert_eq!(ack.header("Call-ID"), leg.header("Call-ID"));
            // The caller now talks to the target; its BYE ends the target's leg.
            sbc.send(routed(&inv, &ok, "BYE", 2, &[])).await;
            let (done, bye) = sbc.until_both(response_of("BYE"), request_of("BYE")).await;
            assert_eq!(done.status(), 200);
            assert_eq!(bye.header("Call-ID"), leg.header("Call-ID"));
            sbc.send(response_to(&bye.text, 200, "OK", &[])).await;
        } else {
            sbc.send(response_tagged(
                &leg.text,
                486,
                "Busy Here",
                "xfer",
                &[],
                None,
            ))
            .await;
            // The transaction ACKs the 486; the call with the Teams user goes on.
            let ack = sbc.until_request("ACK").await;
            assert_eq!(ack.header("Call-ID"), leg.header("Call-ID"));
            let bye = sbc.request(&routed(&inv, &ok, "BYE", 2, &[])).await;
            assert_eq!(bye.status(), 200, "{}", bye.text);
            assert!(
                sbc.try_recv(Duration::from_millis(300)).await.is_none(),
                "nothing else"
            );
        }
        d.calls_drained().await;
    }
}

/// DR-XFER-2: a REFER the SBC refuses (405) falls back to drhub as referee when the
/// trunk has `refer_fallback`: the INVITE with Referred-By follows; without the key the
/// call just goes on (see `dr_xfer_a_refused_or_failed_transfer_leaves_the_call_up`).
#[tokio::test]
async fn dr_xfer_2_a_refused_refer_falls_back_to_drhub_as_referee() {
    let d = TestDaemon::start_with(lab_config(|t| {
        t.replacen("refer_fallback = false", "refer_fallback = true", 1)
    }))
    .await;
    let (mut sbc, inv, ok, call_id) = answered(&d, true).await;
    let (s, v) = transfer(&d, &call_id, TARGET).await;
    assert_eq!(s, 202, "{v}");
    let refer = sbc.until_request("REFER").await;
    sbc.send(response_to(&refer.text, 405, "Method Not Allowed", &[]))
        .await;
    let leg = sbc.until_request("INVITE").await;
    assert_eq!(
        leg.request_uri(),
        format!("sip:{TARGET}@sbc1.adatum.biz:5061;user=phone")
    );
    assert!(leg.header("Referred-By").is_some(), "{}", leg.text);
    sbc.send(response_tagged(
        &leg.text,
        480,
        "Temporarily Unavailable",
        "x",
        &[],
        None,
    ))
    .await;
    sbc.until_request("ACK").await;
    let bye = sbc.request(&routed(&inv, &ok, "BYE", 2, &[])).await;
    assert_eq!(bye.status(), 200, "{}", bye.text);
    d.calls_drained().await;
}

/// DR-ICE-1 with DR-XFER-2: a media-bypass call, answered by a Teams client, moves to a
/// number drhub calls as referee; the media processor takes the media over: once the
/// target answered, the SBC gets a re-INVITE on the caller's dialog with the client's
/// SDP as it was but new `ice-ufrag` and `ice-pwd`, the media processor's candidates
/// and the `o=` version one on; its 200 is ACKed and the call goes on.
#[tokio::test]
async fn dr_ice_1_a_bypass_call_transferred_as_referee_restarts_ice_through_the_media_processor() {
    let d = TestDaemon::start_with(lab_config(|t| {
        t.replacen("media_bypass = false", "media_bypass = true", 1)
    }))
    .await;
    let (mut sbc, inv, ok, call_id) = answered(&d, false).await;
    let before = ok.body().to_owned();
    let ufrag = sdp_line(&before, "a=ice-ufrag:").to_owned();
    assert!(!ufrag.is_empty(), "the client's answer has ICE\n{before}");
    let (s, v) = transfer(&d, &call_id, TARGET).await;
    assert_eq!(s, 202, "{v}");
    let leg = sbc.until_request("INVITE").await;
    assert!(
        leg.body().contains("a=crypto:"),
        "the media processor's offer"
    );
    let contact = "Contact: <sip:+14255550123@sbc1.adatum.biz:5061;transport=tls>";
    sbc.send(response_tagged(
        &leg.text,
        200,
        "OK",
        "xfer",
        &[contact],
        Some(SBC_ANSWER),
    ))
    .await;
    // drhub ACKs the target and re-INVITEs the caller's SBC, in either order.
    let (_ack, re) = sbc
        .until_both(request_of("ACK"), request_of("INVITE"))
        .await;
    assert_eq!(
        re.header("Call-ID"),
        Some(call_id.as_str()),
        "on the caller's dialog"
    );
    let body = re.body();
    let new_ufrag = sdp_line(body, "a=ice-ufrag:");
    assert!(
        !new_ufrag.is_empty() && new_ufrag != ufrag,
        "{ufrag} -> {new_ufrag}"
    );
    assert_ne!(
        sdp_line(body, "a=ice-pwd:"),
        sdp_line(&before, "a=ice-pwd:")
    );
    assert!(body.contains("a=candidate:"), "new candidates\n{body}");
    let (id0, v0) = sdp_origin(&before);
    let (id1, v1) = sdp_origin(body);
    assert_eq!((id1, v1), (id0, v0 + 1), "same session, version one on");
    sbc.send(response_tagged(
        &re.text,
        200,
        "OK",
        "ignored",
        &[],
        Some(SBC_ANSWER),
    ))
    .await;
    let re_ack = sbc.until_request("ACK").await;
    assert_eq!(re_ack.header("Call-ID"), Some(call_id.as_str()));
    // The caller hangs up: the target's leg ends.
    sbc.send(routed(&inv, &ok, "BYE", 2, &[])).await;
    let bye = loop {
        let r = sbc.recv().await;
        if !r.is_response() && r.cseq_method() == Some("BYE") {
            break r;
        }
    };
    assert_eq!(bye.header("Call-ID"), leg.header("Call-ID"));
    sbc.send(response_to(&bye.text, 200, "OK", &[])).await;
    d.calls_drained().await;
}

/// The SBC's INVITE for a transfer: Request-URI the Refer-To's URI, the REFER's
/// Referred-By copied as it was.
fn invite_to(refer_to_uri: &str, referred_by: &str) -> String {
    let inv = invite("sbc1.adatum.biz", USER1, &RR);
    let first = inv.lines().next().unwrap_or_default().to_owned();
    inv.replacen(&first, &format!("INVITE {refer_to_uri} SIP/2.0"), 1)
        .replacen(
            "CSeq: 1 INVITE\r\n",
            &format!("CSeq: 1 INVITE\r\nReferred-By: {referred_by}\r\n"),
            1,
        )
}

/// DR-XFER-4: the SBC carries out a transfer to a Teams user by calling the Refer-To
/// back: an INVITE whose Request-URI names the user by `x-m` in tenant `x-t` rings that
/// user (User1's desktop answers 200). An `x-m` that names nobody is 404, an `x-t` of
/// another tenant 403, each with a diagnostic naming the mismatch.
#[tokio::test]
async fn dr_xfer_4_the_sbcs_invite_back_by_x_m_reaches_the_user() {
    let d = TestDaemon::start_with(lab_config(|t| fast(t, 0.05))).await;
    let (mut sbc, inv, ok, call_id) = answered(&d, true).await;
    transfer(&d, &call_id, "user1@adatum.biz").await;
    let refer = sbc.until_request("REFER").await;
    sbc.send(response_to(&refer.text, 202, "Accepted", &[]))
        .await;
    let uri = refer
        .header("Refer-To")
        .unwrap()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned();
    let by = refer.header("Referred-By").unwrap().to_owned();

    let back = invite_to(&uri, &by);
    sbc.send(&back).await;
    let (answered, _) = sbc.until(200).await;
    assert_eq!(answered.cseq_method(), Some("INVITE"), "{}", answered.text);
    assert_eq!(answered.header("Call-ID"), req_header(&back, "Call-ID"));
    sbc.send(routed(&back, &answered, "ACK", 1, &[])).await;
    // The transfer succeeded: the old leg ends.
    let done = notify(
        &inv,
        &ok,
        2,
        "SIP/2.0 200 OK\r\n",
        "Subscription-State: terminated",
    );
    assert_eq!(sbc.request(&done).await.status(), 200);
    let bye = sbc.until_request("BYE").await;
    assert_eq!(bye.header("Call-ID"), Some(call_id.as_str()));
    sbc.send(response_to(&bye.text, 200, "OK", &[])).await;
    let bye = sbc.request(&routed(&back, &answered, "BYE", 2, &[])).await;
    assert_eq!(bye.status(), 200, "{}", bye.text);

    // Mangled by the SBC: no such MRI, another tenant.
    let (nobody, _) = uri.split_once(";x-m=").unwrap();
    let wrong_m = format!("{nobody};x-m=8:orgid:00000000-0000-0000-0000-000000000000;x-t=adatum");
    let r = sbc.request(&invite_to(&wrong_m, &by)).await;
    assert_eq!((r.status(), r.ms_code()), (404, Some(511404)), "{}", r.text);
    assert!(
        r.header("ms-diagnostics")
            .unwrap()
            .contains("x-m names no user"),
        "{}",
        r.text
    );
    let wrong_t = uri.replace(";x-t=adatum", ";x-t=contoso");
    let r = sbc.request(&invite_to(&wrong_t, &by)).await;
    assert_eq!(r.status(), 403, "{}", r.text);
    assert!(
        r.header("ms-diagnostics")
            .unwrap()
            .contains("x-t names another tenant"),
        "{}",
        r.text
    );
    d.calls_drained().await;
}

/// DR-XFER-3 from a scripted client: User1's desktop transfers 10 s after answering
/// (0.5 s at the test's speed; the lab config's commented example switched on), and the
/// SBC gets the REFER with no API call.
#[tokio::test]
async fn dr_xfer_3_a_scripted_client_transfers_on_its_own() {
    let d = TestDaemon::start_with(lab_config(|t| {
        let t = t.replacen(
            "    # transfer_to = \"+14255550123\"\n    # transfer_after_seconds = 10\n",
            "    transfer_to = \"+14255550123\"\n    transfer_after_seconds = 10\n",
            1,
        );
        fast(t, 0.05)
    }))
    .await;
    let (mut sbc, inv, ok, _) = answered(&d, true).await;
    let refer = sbc.until_request("REFER").await;
    assert_eq!(
        refer.header("Refer-To"),
        Some("<sip:+14255550123@sip.pstnhub.microsoft.com;user=phone>")
    );
    sbc.send(response_to(&refer.text, 202, "Accepted", &[]))
        .await;
    let done = notify(
        &inv,
        &ok,
        2,
        "SIP/2.0 200 OK\r\n",
        "Subscription-State: terminated",
    );
    assert_eq!(sbc.request(&done).await.status(), 200);
    let bye = sbc.until_request("BYE").await;
    sbc.send(response_to(&bye.text, 200, "OK", &[])).await;
    d.calls_drained().await;
}

/// DR-XFER-2: the same scripted transfer with an SBC that lists no REFER: drhub, as
/// referee, calls the number itself (the leg planned when the call came in).
#[tokio::test]
async fn dr_xfer_2_a_scripted_client_transfers_as_referee_without_refer() {
    let d = TestDaemon::start_with(lab_config(|t| {
        let t = t.replacen(
            "    # transfer_to = \"+14255550123\"\n    # transfer_after_seconds = 10\n",
            "    transfer_to = \"+14255550123\"\n    transfer_after_seconds = 10\n",
            1,
        );
        fast(t, 0.05)
    }))
    .await;
    let (mut sbc, inv, ok, _) = answered(&d, false).await;
    let leg = sbc.until_request("INVITE").await;
    assert_eq!(
        leg.request_uri(),
        format!("sip:{TARGET}@sbc1.adatum.biz:5061;user=phone")
    );
    assert!(leg.header("Referred-By").is_some(), "{}", leg.text);
    sbc.send(response_tagged(
        &leg.text,
        480,
        "Temporarily Unavailable",
        "x",
        &[],
        None,
    ))
    .await;
    sbc.until_request("ACK").await;
    let bye = sbc.request(&routed(&inv, &ok, "BYE", 2, &[])).await;
    assert_eq!(bye.status(), 200, "{}", bye.text);
    d.calls_drained().await;
}

/// A Teams user's call to `to` through the API (the consultation call of a
/// consultative transfer), answered by the SBC with To tag `tag` and ACKed; returns its
/// Call-ID and drhub's INVITE.
async fn consultation(d: &TestDaemon, sbc: &mut TlsSbc, to: &str, tag: &str) -> (String, Reply) {
    let (s, v) = post(
        d,
        "/api/calls",
        json!({"from": "user1@adatum.biz", "to": to, "talk_seconds": 60}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let call_id = v["call_id"].as_str().expect("call_id").to_owned();
    let inv = sbc.until_request("INVITE").await;
    assert_eq!(inv.header("Call-ID"), Some(call_id.as_str()));
    let contact = "Contact: <sip:+14255550123@sbc1.adatum.biz:5061;transport=tls>";
    sbc.answer_200(&inv, tag, contact).await;
    (call_id, inv)
}

/// The `Replaces` an INVITE to the SBC must carry to replace the consultation dialog
/// drhub's INVITE `consult` opened (RFC 3891 §3: to-tag the SBC's, from-tag drhub's).
fn replaces_of(consult: &Reply, sbc_tag: &str) -> String {
    let from = consult.header("From").unwrap_or_default();
    let ours = from.split(";tag=").nth(1).unwrap_or_default();
    format!(
        "{};to-tag={sbc_tag};from-tag={ours}",
        consult.header("Call-ID").unwrap_or_default()
    )
}

/// DR-XFER-3, DR-XFER-4, DR-XFER-5: as Microsoft asks of SBCs, the INVITE for a
/// transfer to a number comes back to the proxy (Request-URI the Refer-To, Referred-By
/// copied byte for byte). drhub recognises the transfer by the Referred-By's `x-ti` and
/// sends the call back out through the transferring user's voice routing: an INVITE to
/// the number with that Referred-By, no History-Info and no `cause`. The SBC's NOTIFY
/// 200 then ends the old leg; the caller and the target talk through drhub.
#[tokio::test]
async fn dr_xfer_4_the_invite_back_for_a_number_goes_out_with_referred_by() {
    let d = TestDaemon::start_with(lab_config(|t| {
        let t = t.replacen(
            "forward_call_history = false",
            "forward_call_history = true",
            1,
        );
        fast(t, 0.05)
    }))
    .await;
    let (mut sbc, inv, ok, call_id) = answered(&d, true).await;
    let (s, v) = transfer(&d, &call_id, TARGET).await;
    assert_eq!(s, 202, "{v}");
    let refer = sbc.until_request("REFER").await;
    sbc.send(response_to(&refer.text, 202, "Accepted", &[]))
        .await;
    let uri = refer.header("Refer-To").unwrap();
    let uri = uri.trim_start_matches('<').trim_end_matches('>').to_owned();
    let by = refer.header("Referred-By").unwrap().to_owned();

    let back = invite_to(&uri, &by);
    sbc.send(&back).await;
    let out = sbc.until_request("INVITE").await;
    assert_eq!(
        out.request_uri(),
        format!("sip:{TARGET}@sbc1.adatum.biz:5061;user=phone"),
        "no cause= on a transfer\n{}",
        out.text
    );
    assert_eq!(out.header("Referred-By"), Some(by.as_str()), "{}", out.text);
    assert!(
        out.header("History-Info").is_none(),
        "DR-XFER-5\n{}",
        out.text
    );
    assert!(out.header("Replaces").is_none(), "blind\n{}", out.text);
    assert_ne!(out.header("Call-ID"), req_header(&back, "Call-ID"));
    let contact = "Contact: <sip:+14255550123@sbc1.adatum.biz:5061;transport=tls>";
    sbc.send(response_tagged(
        &out.text,
        200,
        "OK",
        "target",
        &[contact],
        Some(SBC_ANSWER),
    ))
    .await;
    let back_id = req_header(&back, "Call-ID").unwrap().to_owned();
    let (_, answered) = sbc
        .until_both(request_of("ACK"), |r: &Reply| {
            r.status() == 200 && r.header("Call-ID") == Some(back_id.as_str())
        })
        .await;
    sbc.send(routed(&back, &answered, "ACK", 1, &[])).await;
    // The SBC reports the transfer done; drhub's leg of the old call ends.
    let done = notify(
        &inv,
        &ok,
        2,
        "SIP/2.0 200 OK\r\n",
        "Subscription-State: terminated",
    );
    assert_eq!(sbc.request(&done).await.status(), 200);
    let bye = sbc.until_request("BYE").await;
    assert_eq!(bye.header("Call-ID"), Some(call_id.as_str()));
    sbc.send(response_to(&bye.text, 200, "OK", &[])).await;
    // The caller hangs up: the target's leg ends too.
    sbc.send(routed(&back, &answered, "BYE", 2, &[])).await;
    let (done, bye) = sbc.until_both(response_of("BYE"), request_of("BYE")).await;
    assert_eq!(done.status(), 200);
    assert_eq!(bye.header("Call-ID"), out.header("Call-ID"));
    sbc.send(response_to(&bye.text, 200, "OK", &[])).await;
    d.calls_drained().await;
    let recent = d.hub.calls.recent();
    let rec = recent
        .iter()
        .find(|r| *r.call_id == back_id)
        .expect("the INVITE back's record");
    let reason = &rec.outcome.as_ref().expect("outcome").reason;
    assert!(
        reason.starts_with("transferred by user1@adatum.biz to +14255550123; answered by sbc1"),
        "{reason}"
    );
}

/// DR-XFER-4, bad input: an INVITE back whose Referred-By the SBC altered, or whose
/// Request-URI is not the Refer-To, is refused 403 with a diagnostic naming the
/// mismatch (540436, an emulator code), and nothing goes out.
#[tokio::test]
async fn dr_xfer_4_an_invite_back_that_altered_the_refer_is_refused() {
    let d = TestDaemon::start_with(lab_config(|t| fast(t, 0.05))).await;
    let (mut sbc, _inv, _ok, call_id) = answered(&d, true).await;
    let cases = [
        ("altered", "Referred-By differs"),
        ("other number", "Request-URI is not the REFER's Refer-To"),
    ];
    for (how, says) in cases {
        let (s, v) = transfer(&d, &call_id, TARGET).await;
        assert_eq!(s, 202, "{v}");
        let refer = sbc.until_request("REFER").await;
        sbc.send(response_to(&refer.text, 405, "Method Not Allowed", &[]))
            .await;
        let uri = refer.header("Refer-To").unwrap();
        let uri = uri.trim_start_matches('<').trim_end_matches('>').to_owned();
        let by = refer.header("Referred-By").unwrap().to_owned();
        let back = match how {
            // An SBC that drops the display-less angle brackets' neighbour: a parameter.
            "altered" => invite_to(&uri, &by.replacen(";x-t=adatum", "", 1)),
            _ => invite_to(&uri.replace(TARGET, "+14255550199"), &by),
        };
        let r = sbc.request(&back).await;
        assert_eq!(
            (r.status(), r.ms_code()),
            (403, Some(540436)),
            "{how}\n{}",
            r.text
        );
        let diag = r.header("ms-diagnostics").unwrap();
        assert!(diag.contains(says), "{how}: {diag}");
        assert!(
            sbc.try_recv(Duration::from_millis(200)).await.is_none(),
            "{how}: nothing goes out"
        );
    }
}

/// RFC 5589 §7, DR-XFER-3/4: a consultative transfer through the API. User1 talks to the
/// caller (call 1), calls +14255550123 as a consultation (call 2, through the same SBC),
/// then transfers call 1 to call 2. The REFER's Referred-By names the consultation in its
/// `x-tt` (`?Replaces=`); the SBC's INVITE back goes out to the number with a `Replaces`
/// of call 2's dialog as the SBC knows it (to-tag the SBC's). The SBC replaces that
/// dialog (BYE on call 2), NOTIFYs 200 on call 1, and the caller talks to the target.
#[tokio::test]
async fn dr_xfer_3_a_consultative_transfer_replaces_the_consultation_dialog() {
    let d = TestDaemon::start_with(lab_config(|t| fast(t, 0.05))).await;
    let (mut sbc, inv, ok, call_id) = answered(&d, true).await;
    let (consult_id, consult) = consultation(&d, &mut sbc, TARGET, "consult").await;
    // Bad requests first: an unknown consultation, the call itself.
    let (s, v) = post(
        &d,
        &format!("/api/calls/{call_id}/transfer"),
        json!({ "consult": "no-such-call" }),
    )
    .await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = post(
        &d,
        &format!("/api/calls/{call_id}/transfer"),
        json!({ "consult": call_id }),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = post(
        &d,
        &format!("/api/calls/{call_id}/transfer"),
        json!({ "consult": consult_id }),
    )
    .await;
    assert_eq!((s, &v["to"]), (202, &json!(TARGET)), "{v}");

    let refer = sbc.until_request("REFER").await;
    assert_eq!(refer.header("Call-ID"), Some(call_id.as_str()));
    assert_eq!(
        refer.header("Refer-To"),
        Some("<sip:+14255550123@sip.pstnhub.microsoft.com;user=phone>")
    );
    let by = refer.header("Referred-By").unwrap().to_owned();
    let replaces = replaces_of(&consult, "consult");
    let escaped: String = replaces
        .bytes()
        .map(|b| match b {
            b';' => "%3B".to_owned(),
            b'=' => "%3D".to_owned(),
            b'@' => "%40".to_owned(),
            _ => char::from(b).to_string(),
        })
        .collect();
    // x-tt: the Refer-To's URI with `?Replaces=` (itself escaped), escaped once more.
    let escaped = escaped.replace('%', "%25");
    assert!(
        by.contains(&format!("%3Buser%3Dphone%3FReplaces%3D{escaped}>")),
        "{by}\nwant {escaped}"
    );
    assert!(by.len() <= 400, "DR-XFER-3: {} characters", by.len());
    sbc.send(response_to(&refer.text, 202, "Accepted", &[]))
        .await;

    let uri = "sip:+14255550123@sip.pstnhub.microsoft.com;user=phone";
    let back = invite_to(uri, &by);
    sbc.send(&back).await;
    let out = sbc.until_request("INVITE").await;
    assert_eq!(
        out.header("Replaces"),
        Some(replaces.as_str()),
        "{}",
        out.text
    );
    assert_eq!(out.header("Referred-By"), Some(by.as_str()));
    let contact = "Contact: <sip:+14255550123@sbc1.adatum.biz:5061;transport=tls>";
    sbc.send(response_tagged(
        &out.text,
        200,
        "OK",
        "replacing",
        &[contact],
        Some(SBC_ANSWER),
    ))
    .await;
    let back_id = req_header(&back, "Call-ID").unwrap().to_owned();
    let (_, answered) = sbc
        .until_both(request_of("ACK"), |r: &Reply| {
            r.status() == 200 && r.header("Call-ID") == Some(back_id.as_str())
        })
        .await;
    sbc.send(routed(&back, &answered, "ACK", 1, &[])).await;
    // RFC 3891 §3: the SBC ends the replaced dialog.
    let r = sbc
        .request(&uas_request(&consult.text, "consult", "BYE", 1))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text);
    let done = notify(
        &inv,
        &ok,
        2,
        "SIP/2.0 200 OK\r\n",
        "Subscription-State: terminated",
    );
    assert_eq!(sbc.request(&done).await.status(), 200);
    let bye = sbc.until_request("BYE").await;
    assert_eq!(bye.header("Call-ID"), Some(call_id.as_str()));
    sbc.send(response_to(&bye.text, 200, "OK", &[])).await;
    sbc.send(routed(&back, &answered, "BYE", 2, &[])).await;
    let (done, bye) = sbc.until_both(response_of("BYE"), request_of("BYE")).await;
    assert_eq!(done.status(), 200);
    assert_eq!(bye.header("Call-ID"), out.header("Call-ID"));
    sbc.send(response_to(&bye.text, 200, "OK", &[])).await;
    d.calls_drained().await;
}

/// DR-XFER-2 with RFC 5589 §7: a consultative transfer when the SBC lists no REFER.
/// drhub, as referee, sends the SBC an INVITE with `Replaces` of the consultation
/// dialog and `Referred-By` (the SBC must accept Replaces *from* the proxy: DR-VAL-6
/// refuses it only from the SBC); when the SBC answers, the Teams user's legs end and
/// the caller talks to the target; the SBC's BYE ends the consultation call.
#[tokio::test]
async fn dr_xfer_2_a_consultative_transfer_as_referee_sends_replaces() {
    let d = TestDaemon::start_with(lab_config(|t| fast(t, 0.05))).await;
    let (mut sbc, inv, ok, call_id) = answered(&d, false).await;
    let (consult_id, consult) = consultation(&d, &mut sbc, TARGET, "consult").await;
    let (s, v) = post(
        &d,
        &format!("/api/calls/{call_id}/transfer"),
        json!({ "consult": consult_id }),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let leg = sbc.until_request("INVITE").await;
    assert_eq!(
        leg.request_uri(),
        format!("sip:{TARGET}@sbc1.adatum.biz:5061;user=phone")
    );
    let replaces = replaces_of(&consult, "consult");
    assert_eq!(
        leg.header("Replaces"),
        Some(replaces.as_str()),
        "{}",
        leg.text
    );
    assert!(leg.header("Referred-By").is_some(), "{}", leg.text);
    let contact = "Contact: <sip:+14255550123@sbc1.adatum.biz:5061;transport=tls>";
    sbc.answer_200(&leg, "replacing", contact).await;
    let r = sbc
        .request(&uas_request(&consult.text, "consult", "BYE", 1))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text);
    // The caller now talks to the target; its BYE ends the target's leg.
    sbc.send(routed(&inv, &ok, "BYE", 2, &[])).await;
    let (done, bye) = sbc.until_both(response_of("BYE"), request_of("BYE")).await;
    assert_eq!(done.status(), 200);
    assert_eq!(bye.header("Call-ID"), leg.header("Call-ID"));
    sbc.send(response_to(&bye.text, 200, "OK", &[])).await;
    d.calls_drained().await;
    let recent = d.hub.calls.recent();
    let consult_rec = recent
        .iter()
        .find(|r| *r.call_id == consult_id)
        .expect("the consultation's record");
    assert_eq!(consult_rec.outcome.as_ref().map(|o| o.status), Some(200));
}

/// RFC 5589 §7 from a scripted client (`transfer_consultative`), with an SBC that lists
/// no REFER: 0.5 s after answering, User1's desktop calls +14255550123 (the
/// consultation, an outbound call through the SBC); once that answers, drhub as referee
/// (DR-XFER-2) sends the SBC an INVITE with `Replaces` of the consultation dialog. The
/// SBC ends the consultation with BYE; the caller talks to the target.
#[tokio::test]
async fn dr_xfer_2_a_scripted_consultative_transfer_calls_the_target_first() {
    let d = TestDaemon::start_with(lab_config(|t| {
        let t = t.replacen(
            "    # transfer_consultative = true\n    # transfer_to = \"+14255550123\"\n    # transfer_after_seconds = 10\n",
            "    transfer_consultative = true\n    transfer_to = \"+14255550123\"\n    transfer_after_seconds = 10\n",
            1,
        );
        fast(t, 0.05)
    }))
    .await;
    let (mut sbc, inv, ok, call_id) = answered(&d, false).await;
    // The consultation call: from User1's number, a call of its own.
    let consult = sbc.until_request("INVITE").await;
    assert_ne!(consult.header("Call-ID"), Some(call_id.as_str()));
    assert!(consult.header("Replaces").is_none(), "{}", consult.text);
    assert!(
        consult
            .header("From")
            .unwrap()
            .contains("<sip:+18338006777@sip.pstnhub.microsoft.com;user=phone>"),
        "{}",
        consult.text
    );
    let contact = "Contact: <sip:+14255550123@sbc1.adatum.biz:5061;transport=tls>";
    sbc.send(response_tagged(
        &consult.text,
        200,
        "OK",
        "consult",
        &[contact],
        Some(SBC_ANSWER),
    ))
    .await;
    // drhub ACKs the consultation, then sends the transfer's INVITE replacing it.
    let leg = loop {
        let r = sbc.until_request("INVITE").await;
        if r.header("Call-ID") != consult.header("Call-ID") {
            break r;
        }
    };
    let replaces = replaces_of(&consult, "consult");
    assert_eq!(
        leg.header("Replaces"),
        Some(replaces.as_str()),
        "{}",
        leg.text
    );
    assert!(leg.header("Referred-By").is_some(), "{}", leg.text);
    sbc.answer_200(&leg, "replacing", contact).await;
    let r = sbc
        .request(&uas_request(&consult.text, "consult", "BYE", 1))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text);
    sbc.send(routed(&inv, &ok, "BYE", 2, &[])).await;
    let (done, bye) = sbc.until_both(response_of("BYE"), request_of("BYE")).await;
    assert_eq!(done.status(), 200);
    assert_eq!(bye.header("Call-ID"), leg.header("Call-ID"));
    sbc.send(response_to(&bye.text, 200, "OK", &[])).await;
    d.calls_drained().await;
}

/// DR-XFER-2 to a Teams user: the SBC lists no REFER, so drhub rings the target user's
/// clients itself. busy@adatum.biz's desktop declines (486): the call goes on with
/// User1. forward@adatum.biz's desktop answers: User1's client leaves. The SBC sees
/// none of it (the media processor anchors the call): its dialog simply goes on, and
/// the record tells the story.
#[tokio::test]
async fn dr_xfer_2_without_refer_drhub_rings_a_target_users_clients() {
    let d = TestDaemon::start_with(lab_config(|t| fast(t, 0.05))).await;
    let (mut sbc, inv, ok, call_id) = answered(&d, false).await;
    let (s, v) = transfer(&d, &call_id, "busy@adatum.biz").await;
    assert_eq!(s, 202, "{v}");
    assert!(
        sbc.try_recv(Duration::from_millis(400)).await.is_none(),
        "the SBC sees nothing of a transfer to a Teams user"
    );
    let (s, v) = transfer(&d, &call_id, "forward@adatum.biz").await;
    assert_eq!(s, 202, "the refused transfer left room for another: {v}");
    assert!(sbc.try_recv(Duration::from_millis(400)).await.is_none());
    let bye = sbc.request(&routed(&inv, &ok, "BYE", 2, &[])).await;
    assert_eq!(bye.status(), 200, "{}", bye.text);
    d.calls_drained().await;
    let rec = d.hub.calls.recent().pop().expect("a record");
    let reason = rec.outcome.expect("outcome").reason;
    assert_eq!(
        reason,
        "transferred to forward@adatum.biz by drhub as referee; ended by the SBC (BYE)"
    );
}

/// DR-XFER-2, bad input: an SBC that never answers the REFER. Timer F (64*T1, 1.28 s
/// with T1 at 20 ms) ends the REFER's transaction as a 408; with the trunk's
/// `refer_fallback` drhub carries the transfer out as referee: the INVITE with
/// Referred-By follows, and the call goes on until it is answered.
#[tokio::test]
async fn dr_xfer_2_a_refer_never_answered_falls_back_after_timer_f() {
    let d = TestDaemon::start_with(lab_config(|t| {
        let t = t
            .replacen("refer_fallback = false", "refer_fallback = true", 1)
            .replacen("t1_seconds = 0.5", "t1_seconds = 0.02", 1);
        fast(t, 0.05)
    }))
    .await;
    let (mut sbc, inv, ok, call_id) = answered(&d, true).await;
    let (s, v) = transfer(&d, &call_id, TARGET).await;
    assert_eq!(s, 202, "{v}");
    let refer = sbc.until_request("REFER").await;
    let sent = std::time::Instant::now();
    // No answer: the next thing drhub sends is the referee's INVITE.
    let leg = sbc.until_request("INVITE").await;
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(1000),
        "Timer F is 64*T1 = 1.28 s, fell back after {waited:?}"
    );
    assert_ne!(leg.header("Call-ID"), refer.header("Call-ID"));
    assert_eq!(
        leg.request_uri(),
        format!("sip:{TARGET}@sbc1.adatum.biz:5061;user=phone")
    );
    assert!(leg.header("Referred-By").is_some(), "{}", leg.text);
    sbc.send(response_tagged(&leg.text, 486, "Busy Here", "x", &[], None))
        .await;
    sbc.until_request("ACK").await;
    let bye = sbc.request(&routed(&inv, &ok, "BYE", 2, &[])).await;
    assert_eq!(bye.status(), 200, "{}", bye.text);
    d.calls_drained().await;
}

/// DR-XFER-1 with DR-OPT-2: an SBC whose INVITE carries no Allow is judged by the Allow
/// of its OPTIONS. Its OPTIONS listed REFER, so the Teams user's transfer is a REFER
/// (option 2), not drhub as referee.
#[tokio::test]
async fn dr_xfer_1_an_invite_without_allow_goes_by_the_sbcs_options() {
    let d = TestDaemon::start_with(lab_config(|t| fast(t, 0.05))).await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let r = sbc.request(&options("sbc1.adatum.biz", None, &[])).await;
    assert_eq!(r.status(), 200, "{}", r.text);
    let inv = invite("sbc1.adatum.biz", USER1, &RR);
    assert!(req_header(&inv, "Allow").is_none());
    sbc.send(&inv).await;
    let (ok, _) = sbc.until(200).await;
    sbc.send(routed(&inv, &ok, "ACK", 1, &[])).await;
    let call_id = req_header(&inv, "Call-ID").unwrap().to_owned();
    let mut status = 0;
    for _ in 0..100 {
        let (s, _) = transfer(&d, &call_id, TARGET).await;
        status = s;
        if s == 202 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 202);
    let refer = loop {
        let r = sbc.recv().await;
        assert!(
            !r.text.starts_with("INVITE "),
            "drhub went referee despite the OPTIONS' REFER\n{}",
            r.text
        );
        if r.text.starts_with("REFER ") {
            break r;
        }
    };
    assert_eq!(
        refer.header("Refer-To"),
        Some("<sip:+14255550123@sip.pstnhub.microsoft.com;user=phone>")
    );
    sbc.send(response_to(&refer.text, 405, "Method Not Allowed", &[]))
        .await;
    let bye = sbc.request(&routed(&inv, &ok, "BYE", 2, &[])).await;
    assert_eq!(bye.status(), 200, "{}", bye.text);
    d.calls_drained().await;
}
