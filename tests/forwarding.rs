//! Black-box: a Teams user's call forwarding (DR-FWD-1..5, DR-FORK-9). A record-routing
//! SBC calls forward@adatum.biz; by the user's rules drhub forwards the call to a number
//! (an INVITE back to the SBC, over the same connection, with `cause` in its
//! Request-URI and History-Info), to another user, or to voicemail; the PSTN caller
//! hears 181 first. A forward to a number the incoming History-Info names is a loop.

mod support;

use std::time::Duration;

use drhub::api::request;
use serde_json::Value;
use support::*;

const FORWARDER: &str = "+18338006780";
const TARGET: &str = "+14255550123";
const CALLER: &str = "+17168712781";

/// The lab config with sbc1's trunk keeping History-Info, the forwarding user's rules
/// replaced by `rules` and its desktop client's behaviour by `desktop`.
fn config(rules: &str, desktop: &str) -> String {
    let cfg = lab_config_text(&pki().dir, |t| {
        t.replacen(
            "forward_call_history = false",
            "forward_call_history = true",
            1,
        )
        .replace(
            "    [tenant.user.forwarding]\n    immediate = \"+14255550123\"\n",
            &format!("    [tenant.user.forwarding]\n{rules}\n"),
        )
        .replace(
            "    ring_after_seconds = 0.2\n    answer_after_seconds = 2\n\n# The carrier",
            &format!("{desktop}\n\n# The carrier"),
        )
    });
    assert!(
        cfg.contains(rules),
        "the lab config's forwarding user changed"
    );
    cfg
}

async fn daemon(rules: &str, desktop: &str) -> TestDaemon {
    start(&config(rules, desktop)).await
}

async fn start(text: &str) -> TestDaemon {
    TestDaemon::start_with(drhub::config::Config::parse(text, "test.toml").expect("config")).await
}

/// A record-routing SBC calls the forwarding user.
async fn call_in(d: &TestDaemon, extra: &[&str]) -> (TlsSbc, String) {
    let mut sbc = connect_as(d, "sbc1.adatum.biz").await.unwrap();
    let mut headers = RR.to_vec();
    headers.extend_from_slice(extra);
    let inv = invite("sbc1.adatum.biz", FORWARDER, &headers);
    sbc.send(&inv).await;
    (sbc, inv)
}

/// Reads what drhub sends until its forwarded INVITE arrives: the INVITE and the
/// responses the caller got before it.
async fn forwarded_invite(sbc: &mut TlsSbc) -> (Reply, Vec<Reply>) {
    let mut before = Vec::new();
    loop {
        let r = sbc.recv().await;
        if !r.is_response() && r.cseq_method() == Some("INVITE") {
            return (r, before);
        }
        assert!(
            !r.is_response() || r.status() < 200,
            "final response before the forward: {}",
            r.text
        );
        before.push(r);
    }
}

fn statuses(replies: &[Reply]) -> Vec<u16> {
    replies.iter().map(Reply::status).collect()
}

async fn record(d: &TestDaemon, call_id: &str) -> Value {
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
        if v["state"] == "ended" {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("call {call_id} never ended");
}

/// DR-FWD-1, DR-FWD-2, DR-FWD-3, DR-FWD-4: forward immediately to a number. The caller
/// hears 100 and 181; the SBC gets a new INVITE (its own Call-ID) to the number with
/// `cause=302`, the original caller in From, drhub's Record-Route and Contact, the media
/// processor's offer and History-Info naming the forwarding user (with the escaped
/// Reason) and the target. The forward leg's 180 and 200 reach the caller; the caller's
/// ACK and BYE (by its route set) end both legs.
#[tokio::test]
async fn dr_fwd_2_immediate_forward_to_a_number_goes_out_with_cause_and_history_info() {
    let d = daemon(
        "    immediate = \"+14255550123\"",
        "    ring_after_seconds = 0.2\n    answer_after_seconds = 2",
    )
    .await;
    let (mut sbc, inv) = call_in(&d, &[]).await;
    let (fwd, before) = forwarded_invite(&mut sbc).await;
    assert_eq!(
        statuses(&before),
        [100, 181],
        "the caller hears 181 (DR-FWD-3)"
    );
    assert_eq!(
        before[1].text.lines().next(),
        Some("SIP/2.0 181 Call Is Being Forwarded")
    );
    assert_eq!(
        fwd.request_uri(),
        format!("sip:{TARGET}@sbc1.adatum.biz:5061;user=phone;cause=302")
    );
    let call_id = req_header(&inv, "Call-ID").unwrap();
    assert_ne!(fwd.header("Call-ID"), Some(call_id), "a new dialog");
    let from = fwd.header("From").unwrap();
    assert!(
        from.contains(&format!(
            "<sip:{CALLER}@sip.pstnhub.microsoft.com;user=phone>;tag="
        )),
        "the original caller (emulator choice): {from}"
    );
    let port = d.tls_addr().port();
    assert_eq!(
        fwd.header("History-Info"),
        Some(
            format!(
                "<sip:{FORWARDER}@sip.pstnhub.microsoft.com:5061;user=phone?Reason=SIP%3Bcause%3D302%3Btext%3D%22Moved%20temporarily%22>;index=1, \
                 <sip:{TARGET}@sip.pstnhub.microsoft.com:5061;user=phone>;index=1.1"
            )
            .as_str()
        ),
        "{}",
        fwd.text
    );
    assert_eq!(
        fwd.header("Record-Route"),
        Some(format!("<sip:sip.pstnhub.microsoft.com:{port};transport=tls;lr>").as_str())
    );
    assert!(
        fwd.body().contains("a=crypto:"),
        "the media processor's offer\n{}",
        fwd.text
    );

    // The forward leg rings and answers; the caller hears both.
    let tag = "fwd1";
    let contact = "Contact: <sip:+14255550123@sbc1.adatum.biz:5061;transport=tls>";
    let rr = "Record-Route: <sip:sbc1.adatum.biz:5061;transport=tls;lr>";
    sbc.send(response_tagged(
        &fwd.text,
        180,
        "Ringing",
        tag,
        &[rr, contact],
        None,
    ))
    .await;
    let ringing = sbc.recv().await;
    assert_eq!(ringing.status(), 180, "{}", ringing.text);
    sbc.send(response_tagged(
        &fwd.text,
        200,
        "OK",
        tag,
        &[rr, contact],
        Some(SBC_ANSWER),
    ))
    .await;
    // drhub ACKs the forward leg's 200 and answers the caller, in either order.
    let (ok, ack) = sbc
        .until_both(|r| r.is_response() && r.status() == 200, request_of("ACK"))
        .await;
    assert_eq!(ok.header("Call-ID"), Some(call_id));
    assert!(ok.body().contains("m=audio"), "{}", ok.text);
    assert_eq!(
        ack.headers("Route"),
        vec!["<sip:sbc1.adatum.biz:5061;transport=tls;lr>"]
    );
    sbc.send(routed(&inv, &ok, "ACK", 1, &[])).await;

    // The caller hangs up: BYE to the forward leg, 200 to the caller.
    sbc.send(routed(&inv, &ok, "BYE", 2, &[])).await;
    let (done, bye) = sbc.until_both(response_of("BYE"), request_of("BYE")).await;
    assert_eq!(done.status(), 200);
    assert_eq!(done.header("Call-ID"), Some(call_id));
    assert_eq!(bye.header("Call-ID"), fwd.header("Call-ID"));
    sbc.send(response_to(&bye.text, 200, "OK", &[])).await;
    let rec = record(&d, call_id).await;
    assert_eq!(rec["status"], 200, "{rec}");
    assert_eq!(
        rec["reason"],
        format!("forwarded (immediate) to {TARGET}; answered by sbc1.adatum.biz; ended by the caller (BYE)"),
        "{rec}"
    );
    d.calls_drained().await;
}

/// DR-FWD-1, DR-FWD-2: the conditional rules, each with its RFC 4458 cause in the
/// Request-URI and the History-Info Reason: every client busy (486), unanswered after
/// `no_answer_after_seconds` (408), every client failing otherwise (480), no client at
/// all (480); and DR-FORK-9, a client's 3xx to a number (302). The forward leg's
/// refusal reaches the caller.
#[tokio::test]
async fn dr_fwd_1_conditional_rules_forward_with_their_cause() {
    let ring = "    ring_after_seconds = 0.1";
    let cases: &[(&str, String, u16, &[u16])] = &[
        (
            "    busy = \"+14255550123\"",
            format!("{ring}\n    reject_status = 486\n    reject_after_seconds = 0.3"),
            486,
            &[100, 180, 181],
        ),
        (
            "    no_answer = \"+14255550123\"\n    no_answer_after_seconds = 1",
            ring.to_owned(),
            408,
            &[100, 180, 181],
        ),
        (
            "    unavailable = \"+14255550123\"",
            format!("{ring}\n    reject_status = 480\n    reject_after_seconds = 0.3"),
            480,
            &[100, 180, 181],
        ),
        (
            "    busy = \"voicemail\"",
            format!("{ring}\n    redirect_to = \"+14255550123\"\n    redirect_after_seconds = 0.3"),
            302,
            &[100, 180, 181],
        ),
    ];
    for (rules, desktop, cause, heard) in cases {
        let d = daemon(rules, desktop).await;
        let (mut sbc, inv) = call_in(&d, &[]).await;
        let (fwd, before) = forwarded_invite(&mut sbc).await;
        assert_eq!(statuses(&before), *heard, "{rules}");
        assert!(
            fwd.request_uri()
                .ends_with(&format!(";user=phone;cause={cause}")),
            "{rules}: {}",
            fwd.request_uri()
        );
        let history = fwd.header("History-Info").unwrap_or_default();
        assert!(
            history.contains(&format!("?Reason=SIP%3Bcause%3D{cause}%3B")),
            "{rules}: {history}"
        );
        // The number is busy: the caller hears it.
        sbc.send(response_tagged(
            &fwd.text,
            486,
            "Busy Here",
            "fwd",
            &[],
            None,
        ))
        .await;
        let (failed, _) = sbc.until(486).await;
        assert_eq!(failed.cseq_method(), Some("INVITE"), "{rules}");
        sbc.send(ack_non2xx(&inv, failed.to_tag().as_deref())).await;
        d.calls_drained().await;
    }
}

/// DR-FWD-1: a user without any client online forwards when unavailable (cause 480)
/// instead of the 480 a user without endpoints gets.
#[tokio::test]
async fn dr_fwd_1_a_user_with_no_client_forwards_when_unavailable() {
    let text = config("    unavailable = \"+14255550123\"", "    ring_after_seconds = 0.2").replace(
        "    [[tenant.user.endpoint]]\n    name = \"desktop\"\n    ring_after_seconds = 0.2\n\n# The carrier",
        "\n# The carrier",
    );
    assert!(!text.contains("name = \"desktop\"\n    ring_after_seconds = 0.2\n\n# The carrier"));
    let d = start(&text).await;
    let (mut sbc, _inv) = call_in(&d, &[]).await;
    let (fwd, before) = forwarded_invite(&mut sbc).await;
    assert_eq!(statuses(&before), [100, 181]);
    assert!(
        fwd.request_uri().ends_with(";cause=480"),
        "{}",
        fwd.request_uri()
    );
}

/// DR-FWD-4, DR-FWD-5: with `forward_call_history`, the History-Info that came in is
/// kept, rewritten to the proxy's host (entries without a number dropped, private ones as
/// they are), before drhub's own entries, which continue its hierarchy. A route whose
/// first gateway is a disabled trunk forwards to the next (DR-TEN-6).
#[tokio::test]
async fn dr_fwd_4_incoming_history_info_goes_on_before_drhubs_entries() {
    let text = config(
        "    immediate = \"+442071234567\"",
        "    ring_after_seconds = 0.2",
    )
    .replace(
        "line_uri = \"tel:+18338006780\"",
        "line_uri = \"tel:+18338006780\"\n  voice_routing_policy = \"Unrestricted\"",
    )
    .replace(
        "  fqdn = \"sbc2.adatum.biz\"\n  port = 5061\n",
        "  fqdn = \"sbc2.adatum.biz\"\n  port = 5061\n  enabled = false\n",
    );
    let d = start(&text).await;
    let history = "History-Info: <sip:+12065550100@carrier.example;user=phone?Reason=SIP%3Bcause%3D302>;index=1;mp=1, <sip:bob@carrier.example>;index=1.1, <sip:+18338006780@sbc1.adatum.biz;user=phone>;index=1.2";
    let (mut sbc, _inv) = call_in(&d, &[history]).await;
    let (fwd, _) = forwarded_invite(&mut sbc).await;
    assert_eq!(
        fwd.request_uri(),
        "sip:+442071234567@sbc1.adatum.biz:5061;user=phone;cause=302",
        "the International route's sbc2 is disabled: sbc1 gets it"
    );
    assert_eq!(
        fwd.header("History-Info"),
        Some(
            "<sip:+12065550100@sip.pstnhub.microsoft.com:5061;user=phone?Reason=SIP%3Bcause%3D302>;index=1;mp=1, \
             <sip:+18338006780@sip.pstnhub.microsoft.com:5061;user=phone>;index=1.2, \
             <sip:+18338006780@sip.pstnhub.microsoft.com:5061;user=phone?Reason=SIP%3Bcause%3D302%3Btext%3D%22Moved%20temporarily%22>;index=1.2.1, \
             <sip:+442071234567@sip.pstnhub.microsoft.com:5061;user=phone>;index=1.2.1.1"
        ),
        "{}",
        fwd.text
    );
}

/// DR-FWD-5: a forward to a number the History-Info that came in already names is a
/// loop: 500 with ms-diagnostics 510482, and no INVITE goes out.
#[tokio::test]
async fn dr_fwd_5_a_forward_loop_through_history_info_is_500_510482() {
    let d = daemon(
        "    immediate = \"+14255550123\"",
        "    ring_after_seconds = 0.2",
    )
    .await;
    let history = "History-Info: <sip:+14255550123@carrier.example;user=phone?Reason=SIP%3Bcause%3D302>;index=1,<sip:+18338006780@sip.pstnhub.microsoft.com;user=phone>;index=1.1";
    let (mut sbc, inv) = call_in(&d, &[history]).await;
    let (refused, before) = sbc.until(500).await;
    assert_eq!(statuses(&before), [100]);
    assert_eq!(refused.ms_code(), Some(510482), "{}", refused.text);
    sbc.send(ack_non2xx(&inv, refused.to_tag().as_deref()))
        .await;
    assert!(
        sbc.try_recv(Duration::from_millis(500)).await.is_none(),
        "nothing else is sent"
    );
}

/// DR-FWD-1: forwards to another user ring that user's clients (after 181), and to
/// voicemail the user's voicemail answers; a number no voice route of the user reaches
/// is the caller's 403 with 510559 (DR-OUT-1).
#[tokio::test]
async fn dr_fwd_1_forwards_to_a_user_to_voicemail_and_to_no_route() {
    // To user1, whose desktop answers after 2 s.
    let d = daemon(
        "    immediate = \"user1@adatum.biz\"",
        "    ring_after_seconds = 0.2",
    )
    .await;
    let (mut sbc, inv) = call_in(&d, &[]).await;
    let (ok, before) = sbc.until(200).await;
    assert_eq!(statuses(&before)[..3], [100, 181, 180], "{before:?}");
    sbc.send(routed(&inv, &ok, "ACK", 1, &[])).await;
    sbc.send(routed(&inv, &ok, "BYE", 2, &[])).await;
    sbc.until(200).await;
    d.calls_drained().await;
    drop(d);

    // To voicemail.
    let text = config(
        "    immediate = \"voicemail\"",
        "    ring_after_seconds = 0.2",
    )
    .replace(
        "line_uri = \"tel:+18338006780\"",
        "line_uri = \"tel:+18338006780\"\n  voicemail_answer_after_seconds = 0.5",
    );
    let d = start(&text).await;
    let (mut sbc, inv) = call_in(&d, &[]).await;
    let (ok, before) = sbc.until(200).await;
    assert_eq!(statuses(&before), [100, 181]);
    sbc.send(routed(&inv, &ok, "ACK", 1, &[])).await;
    sbc.send(routed(&inv, &ok, "BYE", 2, &[])).await;
    sbc.until(200).await;
    drop(d);

    // To a number abroad: the Global policy has no route there.
    let d = daemon(
        "    immediate = \"+442071234567\"",
        "    ring_after_seconds = 0.2",
    )
    .await;
    let (mut sbc, inv) = call_in(&d, &[]).await;
    let (refused, before) = sbc.until(403).await;
    assert_eq!(statuses(&before), [100, 181]);
    assert_eq!(refused.ms_code(), Some(510559), "{}", refused.text);
    sbc.send(ack_non2xx(&inv, refused.to_tag().as_deref()))
        .await;
}

/// DR-FWD-1, DR-FWD-2, DR-FWD-4: simultaneous ring to a number. The user's client rings
/// (180) while drhub sends the SBC an INVITE to the number with `cause=302` (an emulator
/// choice) and History-Info; the number answers: the caller gets 200, the client is
/// cancelled, drhub ACKs the number's leg, and the caller's BYE ends it.
#[tokio::test]
async fn dr_fwd_1_simultaneous_ring_to_a_number_rings_it_with_the_users_clients() {
    let d = daemon(
        "    also_ring = \"+14255550123\"",
        "    ring_after_seconds = 0.1",
    )
    .await;
    let (mut sbc, inv) = call_in(&d, &[]).await;
    let (fwd, before) = forwarded_invite(&mut sbc).await;
    assert_eq!(
        fwd.request_uri(),
        format!("sip:{TARGET}@sbc1.adatum.biz:5061;user=phone;cause=302")
    );
    assert!(
        !statuses(&before).contains(&181),
        "no 181 on simultaneous ring"
    );
    assert!(
        fwd.header("History-Info")
            .is_some_and(|h| h.ends_with(&format!(
                "<sip:{TARGET}@sip.pstnhub.microsoft.com:5061;user=phone>;index=1.1"
            ))),
        "{}",
        fwd.text
    );
    assert!(fwd.header("From").unwrap().contains(CALLER), "{}", fwd.text);
    // The client rings too.
    if !statuses(&before).contains(&180) {
        let (ringing, _) = sbc.until(180).await;
        assert_eq!(ringing.header("Call-ID"), req_header(&inv, "Call-ID"));
    }
    let tag = "sim1";
    let contact = "Contact: <sip:+14255550123@sbc1.adatum.biz:5061;transport=tls>";
    sbc.send(response_tagged(
        &fwd.text,
        200,
        "OK",
        tag,
        &[contact],
        Some(SBC_ANSWER),
    ))
    .await;
    let (ok, _ack) = sbc
        .until_both(
            |r| response_of("INVITE")(r) && r.status() == 200,
            request_of("ACK"),
        )
        .await;
    assert_eq!(ok.header("Call-ID"), req_header(&inv, "Call-ID"));
    sbc.send(routed(&inv, &ok, "ACK", 1, &[])).await;
    sbc.send(routed(&inv, &ok, "BYE", 2, &[])).await;
    let bye = sbc.until_request("BYE").await;
    assert_eq!(bye.header("Call-ID"), fwd.header("Call-ID"));
    sbc.send(response_to(&bye.text, 200, "OK", &[])).await;
    d.calls_drained().await;
}

/// DR-FWD-1: simultaneous ring to another user rings that user's clients with the
/// user's own; the first to answer takes the call.
#[tokio::test]
async fn dr_fwd_1_simultaneous_ring_to_a_user_rings_both() {
    let d = daemon(
        "    also_ring = \"user1@adatum.biz\"",
        "    ring_after_seconds = 0.1",
    )
    .await;
    let (mut sbc, inv) = call_in(&d, &[]).await;
    // The forwarding user's desktop and User1's desktop and mobile ring: 180 each.
    let (ok, before) = sbc.until(200).await;
    let ringing = before.iter().filter(|r| r.status() == 180).count();
    assert!(ringing >= 2, "{before:?}");
    assert!(
        !statuses(&before).contains(&181),
        "no 181 on simultaneous ring"
    );
    sbc.send(routed(&inv, &ok, "ACK", 1, &[])).await;
    sbc.send(routed(&inv, &ok, "BYE", 2, &[])).await;
    sbc.until(200).await;
    d.calls_drained().await;
}

/// DR-FORK-9 with a SIP endpoint: a registered phone deflects User1's call with `302`
/// to a number; the 302 is ACKed, User1's other clients stop ringing, the caller hears
/// 181 and the number gets the forwarded INVITE (`cause=302`) through the SBC.
#[tokio::test]
async fn dr_fork_9_a_phones_302_to_a_number_forwards_the_call() {
    let d = TestDaemon::start_with(lab_config(|t| t)).await;
    let phone = support::phone::Phone::new(d.addr("endpoints")).await;
    assert_eq!(phone.register_with("user1-lab-password").await, 200);
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", "+18338006777", &RR);
    sbc.send(&inv).await;
    let to_phone = phone.recv_request("INVITE").await;
    phone
        .answer_with(
            &to_phone,
            302,
            "Moved Temporarily",
            "ph1",
            "<sip:+14255550123@192.0.2.99;user=phone>",
            None,
        )
        .await;
    let ack = phone.recv_request("ACK").await;
    assert_eq!(ack.header("Call-ID"), to_phone.header("Call-ID"));
    let (fwd, before) = forwarded_invite(&mut sbc).await;
    assert!(statuses(&before).contains(&181), "{before:?}");
    assert_eq!(
        fwd.request_uri(),
        format!("sip:{TARGET}@sbc1.adatum.biz:5061;user=phone;cause=302")
    );
    sbc.send(response_tagged(
        &fwd.text,
        486,
        "Busy Here",
        "fwd",
        &[],
        None,
    ))
    .await;
    let (failed, _) = sbc.until(486).await;
    sbc.send(ack_non2xx(&inv, failed.to_tag().as_deref())).await;
    d.calls_drained().await;
}

/// DR-FWD-1 with a SIP phone still ringing when the no-answer rule forwards: the phone's
/// INVITE is cancelled (its 487 arrives after the call was handed to the forward) and
/// the forward goes on undisturbed: the number answers and the caller gets its 200.
#[tokio::test]
async fn dr_fwd_1_no_answer_cancels_a_ringing_phone_and_the_forward_goes_on() {
    let d = TestDaemon::start_with(lab_config(|t| {
        t.replacen(
            "  voice_routing_policy = \"Unrestricted\"   # others of this tenant get \"Global\"\n",
            "  voice_routing_policy = \"Unrestricted\"\n\n    [tenant.user.forwarding]\n    no_answer = \"+14255550123\"\n    no_answer_after_seconds = 1\n",
            1,
        )
    }))
    .await;
    let phone = support::phone::Phone::new(d.addr("endpoints")).await;
    assert_eq!(phone.register_with("user1-lab-password").await, 200);
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", "+18338006777", &RR);
    sbc.send(&inv).await;
    let to_phone = phone.recv_request("INVITE").await;
    phone.answer(&to_phone, 180, "Ringing", "ph1", None).await;
    // After 1 s: CANCEL to the phone, which answers it and ends its INVITE with 487.
    let cancel = phone.recv_request("CANCEL").await;
    let (fwd, _) = forwarded_invite(&mut sbc).await;
    assert!(
        fwd.request_uri().ends_with(";cause=408"),
        "{}",
        fwd.request_uri()
    );
    phone.answer(&cancel, 200, "OK", "ph1", None).await;
    phone
        .answer(&to_phone, 487, "Request Terminated", "ph1", None)
        .await;
    phone.recv_request("ACK").await;
    let contact = "Contact: <sip:+14255550123@sbc1.adatum.biz:5061;transport=tls>";
    sbc.send(response_tagged(
        &fwd.text,
        200,
        "OK",
        "fwd",
        &[contact],
        Some(SBC_ANSWER),
    ))
    .await;
    let (ok, _) = loop {
        let (r, before) = sbc.until(200).await;
        if r.cseq_method() == Some("INVITE") && r.header("Call-ID") == req_header(&inv, "Call-ID") {
            break (r, before);
        }
    };
    sbc.send(routed(&inv, &ok, "ACK", 1, &[])).await;
    sbc.send(routed(&inv, &ok, "BYE", 2, &[])).await;
    let bye = sbc.until_request("BYE").await;
    assert_eq!(bye.header("Call-ID"), fwd.header("Call-ID"));
    sbc.send(response_to(&bye.text, 200, "OK", &[])).await;
    d.calls_drained().await;
}

/// RFC 3261 §9.1, §15 on a forward: the SIP phone still ringing when the no-answer rule
/// forwards answers 200 just as drhub's CANCEL crosses it. The call has already gone on
/// to the number, so the phone's dialog gets its ACK and, at once, a BYE; the forward
/// is undisturbed.
#[tokio::test]
async fn dr_fwd_1_a_phones_200_crossing_the_cancel_is_acked_and_ended() {
    let d = TestDaemon::start_with(lab_config(|t| {
        t.replacen(
            "  voice_routing_policy = \"Unrestricted\"   # others of this tenant get \"Global\"\n",
            "  voice_routing_policy = \"Unrestricted\"\n\n    [tenant.user.forwarding]\n    no_answer = \"+14255550123\"\n    no_answer_after_seconds = 1\n",
            1,
        )
    }))
    .await;
    let phone = support::phone::Phone::new(d.addr("endpoints")).await;
    assert_eq!(phone.register_with("user1-lab-password").await, 200);
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", "+18338006777", &RR);
    sbc.send(&inv).await;
    let to_phone = phone.recv_request("INVITE").await;
    phone.answer(&to_phone, 180, "Ringing", "ph1", None).await;
    let cancel = phone.recv_request("CANCEL").await;
    let (fwd, _) = forwarded_invite(&mut sbc).await;
    // The phone had answered before the CANCEL reached it.
    let phone_sdp = "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    phone
        .answer(&to_phone, 200, "OK", "ph1", Some(phone_sdp))
        .await;
    phone.answer(&cancel, 200, "OK", "ph1", None).await;
    let ack = phone.recv_request("ACK").await;
    assert_eq!(ack.header("Call-ID"), to_phone.header("Call-ID"));
    assert!(
        ack.header("To").unwrap().contains("tag=ph1"),
        "{}",
        ack.text
    );
    let bye = phone.recv_request("BYE").await;
    assert_eq!(bye.header("Call-ID"), to_phone.header("Call-ID"));
    phone.answer(&bye, 200, "OK", "ph1", None).await;
    // The forward goes on: the number answers, the caller gets its 200.
    let contact = "Contact: <sip:+14255550123@sbc1.adatum.biz:5061;transport=tls>";
    sbc.send(response_tagged(
        &fwd.text,
        200,
        "OK",
        "fwd",
        &[contact],
        Some(SBC_ANSWER),
    ))
    .await;
    let (ok, _) = loop {
        let (r, before) = sbc.until(200).await;
        if r.cseq_method() == Some("INVITE") && r.header("Call-ID") == req_header(&inv, "Call-ID") {
            break (r, before);
        }
    };
    sbc.send(routed(&inv, &ok, "ACK", 1, &[])).await;
    sbc.send(routed(&inv, &ok, "BYE", 2, &[])).await;
    let bye = sbc.until_request("BYE").await;
    assert_eq!(bye.header("Call-ID"), fwd.header("Call-ID"));
    sbc.send(response_to(&bye.text, 200, "OK", &[])).await;
    d.calls_drained().await;
}
