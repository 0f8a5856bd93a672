//! Black-box: outbound calls (DR-OUT), placed through the control API over HTTP and
//! sent by the daemon to SBCs that listen for its TLS connections as real SBCs do:
//! mutual TLS with the lab CA, a record-routing edge in front, 100/180/200, 503 with
//! Retry-After, 603, silence, a certificate with the wrong name.

mod support;

use std::time::Duration;

use serde_json::{json, Value};

use drhub::api::request;
use support::phone::{digest_md5, Phone};
use support::*;

async fn post(d: &TestDaemon, path: &str, body: Value) -> (u16, Value) {
    request(d.addr("api"), "POST", path, None, Some(&body))
        .await
        .expect("API reachable")
}

async fn get(d: &TestDaemon, path: &str) -> (u16, Value) {
    request(d.addr("api"), "GET", path, None, None)
        .await
        .expect("API reachable")
}

/// A call from user1 (policy Unrestricted) to a US number: sbc1 first, then sbc2.
async fn call(d: &TestDaemon, to: &str, talk: f64) -> Value {
    let (status, v) = post(
        d,
        "/api/calls",
        json!({"from": "user1@adatum.biz", "to": to, "talk_seconds": talk}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    v
}

/// The record of an ended call, once it ended.
async fn ended(d: &TestDaemon, call_id: &str) -> Value {
    for _ in 0..500 {
        let (status, v) = get(d, &format!("/api/calls/{call_id}")).await;
        assert_eq!(status, 200, "{v}");
        if v["state"] == "ended" {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("call {call_id} did not end");
}

/// `100 Trying`, without a To tag (RFC 3261 §8.2.6.1 lets a UAS add one; most don't).
fn trying(req: &str) -> String {
    response_to(req, 100, "Trying", &[])
        .split("\r\n")
        .map(|l| match l.strip_prefix("To: ") {
            Some(v) => format!("To: {}", v.split(";tag=").next().unwrap_or(v)),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn header<'a>(r: &'a Reply, name: &str) -> &'a str {
    r.header(name)
        .unwrap_or_else(|| panic!("no {name} in\n{}", r.text))
}

/// Two SBCs of adatum listening where their trunks' `address` says.
async fn two_sbcs(edit: impl FnOnce(String) -> String) -> (TestDaemon, SbcListener, SbcListener) {
    let sbc1 = SbcListener::bind("sbc1.adatum.biz", "sbc1.adatum.biz").await;
    let sbc2 = SbcListener::bind("sbc2.adatum.biz", "sbc2.adatum.biz").await;
    let (a1, a2) = (sbc1.addr, sbc2.addr);
    let d = TestDaemon::start_with(lab_config(|t| {
        let t = with_trunk_address(t, "sbc1.adatum.biz", a1);
        edit(with_trunk_address(t, "sbc2.adatum.biz", a2))
    }))
    .await;
    (d, sbc1, sbc2)
}

/// The SBC answers drhub's INVITE `inv` with 200 and SDP (To tag `tag`, `contact`), then
/// takes drhub's ACK and answers its BYE (the caller's talk time is short): the ACK.
async fn answered_until_bye(p: &mut ServerSbc, inv: &Reply, tag: &str, contact: &str) -> Reply {
    let ack = p.answer_200(inv, tag, contact).await;
    let bye = p.until_request("BYE").await;
    p.send(response_to(&bye.text, 200, "OK", &[])).await;
    ack
}

/// The Record-Route of a record-routing edge proxy in front of the SBC (the SBC's UAS
/// also copies drhub's own entry from the INVITE, RFC 3261 §12.1.1).
const EDGE_RR: &str = "Record-Route: <sip:sbc1.adatum.biz:5061;transport=tls;lr>";

/// DR-OUT-1: the INVITE an SBC receives for a user's call, in every header the spec
/// names; the SBC's 100/180/200 with a record-routing edge; drhub's ACK and BYE follow
/// the SBC's route set (without drhub's own echoed entry) to its Contact.
#[tokio::test]
async fn dr_out_1_api_call_reaches_the_sbc_with_the_direct_routing_invite_and_is_answered() {
    let (d, sbc1, _sbc2) = two_sbcs(|t| t).await;
    let v = call(&d, "+14255550100", 0.3).await;
    assert_eq!(v["number"], "+14255550100");
    assert_eq!(
        v["gateways"],
        json!(["sbc1.adatum.biz", "sbc2.adatum.biz"]),
        "{v}"
    );
    let call_id = v["call_id"].as_str().unwrap().to_owned();
    // DR-TLS-4: the proxy connects to the SBC with its certificate.
    let (mut pstn, names) = sbc1.accept().await;
    assert!(
        names.iter().any(|n| n == "sip.pstnhub.microsoft.com"),
        "{names:?}"
    );
    let inv = pstn.until_request("INVITE").await;
    assert_eq!(
        inv.request_uri(),
        "sip:+14255550100@sbc1.adatum.biz:5061;user=phone"
    );
    assert_eq!(header(&inv, "Call-ID"), call_id);
    let from = header(&inv, "From");
    assert!(
        from.starts_with("\"User1\" <sip:+18338006777@sip.pstnhub.microsoft.com;user=phone>;tag="),
        "{from}"
    );
    assert_eq!(
        header(&inv, "To"),
        "<sip:+14255550100@sbc1.adatum.biz;user=phone>"
    );
    // The listener's port (5061 in the lab config; the harness binds port 0).
    let port = d.tls_addr().port();
    let contact = header(&inv, "Contact");
    assert!(
        contact.starts_with(&format!(
            "<sip:sip.pstnhub.microsoft.com:{port};transport=tls;x-i=adatum;x-c="
        )),
        "{contact}"
    );
    assert_eq!(
        header(&inv, "Record-Route"),
        format!("<sip:sip.pstnhub.microsoft.com:{port};transport=tls;lr>")
    );
    assert_eq!(header(&inv, "Supported"), "timer,replaces");
    assert_eq!(header(&inv, "Session-Expires"), "1800");
    assert_eq!(header(&inv, "Min-SE"), "90");
    assert!(header(&inv, "Allow").contains("UPDATE"));
    // forward_pai = false on sbc1: no P-Asserted-Identity.
    assert!(inv.header("P-Asserted-Identity").is_none(), "{}", inv.text);
    // DR-MEDIA-1: the media processor's SRTP offer.
    let body = inv.body();
    assert!(
        body.contains("m=audio ") && body.contains(" RTP/SAVP "),
        "{body}"
    );
    assert!(
        body.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
        "{body}"
    );
    assert!(
        body.contains("a=rtcp-mux") && body.contains("a=ice-lite"),
        "{body}"
    );

    let (s, live) = get(&d, &format!("/api/calls/{call_id}")).await;
    assert_eq!(s, 200);
    assert_eq!(live["direction"], "outbound");
    assert_eq!(live["number"], "+14255550100");
    assert_eq!(live["state"], "trying");

    let tag = "pstn1";
    let sbc_contact = "Contact: <sip:+14255550100@sbc1.adatum.biz:5061;transport=tls>";
    pstn.send(trying(&inv.text)).await;
    let echoed = format!("Record-Route: <sip:sip.pstnhub.microsoft.com:{port};transport=tls;lr>");
    let rr = [EDGE_RR, echoed.as_str(), sbc_contact];
    pstn.send(response_tagged(&inv.text, 180, "Ringing", tag, &rr, None))
        .await;
    let mut ok_extra = rr.to_vec();
    ok_extra.extend(["Session-Expires: 1800;refresher=uac", "Require: timer"]);
    pstn.send(response_tagged(
        &inv.text,
        200,
        "OK",
        tag,
        &ok_extra,
        Some(SBC_ANSWER),
    ))
    .await;
    let ack = pstn.until_request("ACK").await;
    assert_eq!(
        ack.request_uri(),
        "sip:+14255550100@sbc1.adatum.biz:5061;transport=tls"
    );
    assert_eq!(ack.cseq_method(), Some("ACK"));
    assert!(header(&ack, "CSeq").starts_with("1 "), "{}", ack.text);
    assert_eq!(
        ack.headers("Route"),
        vec!["<sip:sbc1.adatum.biz:5061;transport=tls;lr>"],
        "the route set is the edge's entry only\n{}",
        ack.text
    );
    assert!(header(&ack, "To").ends_with(";tag=pstn1"));
    // The caller hangs up after talk_seconds.
    let bye = pstn.until_request("BYE").await;
    assert_eq!(
        bye.request_uri(),
        "sip:+14255550100@sbc1.adatum.biz:5061;transport=tls"
    );
    assert_eq!(
        bye.headers("Route"),
        vec!["<sip:sbc1.adatum.biz:5061;transport=tls;lr>"]
    );
    assert!(header(&bye, "CSeq").starts_with("2 BYE"), "{}", bye.text);
    pstn.send(response_to(&bye.text, 200, "OK", &[])).await;
    let rec = ended(&d, &call_id).await;
    assert_eq!(rec["status"], 200, "{rec}");
    assert_eq!(
        rec["reason"], "answered by sbc1.adatum.biz; ended by the caller",
        "{rec}"
    );
    d.calls_drained().await;
}

/// DR-OUT-2, DR-OUT-3: 503 with Retry-After moves the call to the next gateway (same
/// Call-ID, next CSeq) and takes the SBC out of rotation: the next call skips it.
#[tokio::test]
async fn dr_out_3_503_with_retry_after_fails_over_and_rests_the_sbc() {
    let (d, sbc1, sbc2) = two_sbcs(|t| t).await;
    let v = call(&d, "+14255550100", 0.2).await;
    let call_id = v["call_id"].as_str().unwrap().to_owned();
    let (mut p1, _) = sbc1.accept().await;
    let inv1 = p1.until_request("INVITE").await;
    p1.send(response_to(
        &inv1.text,
        503,
        "Service Unavailable",
        &["Retry-After: 60"],
    ))
    .await;
    // The transaction layer ACKs the 503 (RFC 3261 §17.1.1.3).
    let ack = p1.until_request("ACK").await;
    assert!(header(&ack, "CSeq").starts_with("1 ACK"));
    let (mut p2, _) = sbc2.accept().await;
    let inv2 = p2.until_request("INVITE").await;
    assert_eq!(
        inv2.request_uri(),
        "sip:+14255550100@sbc2.adatum.biz:5061;user=phone"
    );
    assert_eq!(header(&inv2, "Call-ID"), call_id);
    assert!(
        header(&inv2, "CSeq").starts_with("2 INVITE"),
        "{}",
        inv2.text
    );
    assert_eq!(
        header(&inv2, "From").split(";tag=").nth(1),
        header(&inv1, "From").split(";tag=").nth(1),
        "one From tag for every attempt"
    );
    let sbc_contact = "Contact: <sip:+14255550100@sbc2.adatum.biz:5061;transport=tls>";
    answered_until_bye(&mut p2, &inv2, "p2", sbc_contact).await;
    let rec = ended(&d, &call_id).await;
    let reason = rec["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("answered by sbc2.adatum.biz after sbc1.adatum.biz: 503 560503"),
        "{rec}"
    );

    // The next call skips sbc1 for the 60 s of its Retry-After.
    let v = call(&d, "+14255550101", 0.2).await;
    assert_eq!(v["gateways"], json!(["sbc2.adatum.biz"]), "{v}");
    assert_eq!(v["out_of_rotation"], json!(["sbc1.adatum.biz"]), "{v}");
    // Over the connection already open to sbc2; a busy callee is final (486 is not in
    // failover_response_codes) and nobody else is tried.
    let inv = p2.until_request("INVITE").await;
    assert!(inv.request_uri().starts_with("sip:+14255550101@sbc2"));
    p2.send(response_to(&inv.text, 486, "Busy Here", &[])).await;
    let rec = ended(&d, v["call_id"].as_str().unwrap()).await;
    assert_eq!(rec["status"], 486, "{rec}");
    assert!(
        rec["reason"]
            .as_str()
            .unwrap()
            .contains("486 is not in failover_response_codes"),
        "{rec}"
    );
    d.calls_drained().await;
}

/// DR-ERR-2: 603 Decline is final: never retried on the next gateway.
#[tokio::test]
async fn dr_err_2_603_is_final_and_never_retried() {
    let (d, sbc1, sbc2) = two_sbcs(|t| t).await;
    let v = call(&d, "+14255550100", 1.0).await;
    let (mut p1, _) = sbc1.accept().await;
    let inv = p1.until_request("INVITE").await;
    p1.send(response_to(&inv.text, 603, "Decline", &[])).await;
    let rec = ended(&d, v["call_id"].as_str().unwrap()).await;
    assert_eq!(rec["status"], 603, "{rec}");
    assert!(
        rec["reason"]
            .as_str()
            .unwrap()
            .contains("603 Decline is final"),
        "{rec}"
    );
    let tried = tokio::time::timeout(Duration::from_millis(500), sbc2.accept()).await;
    assert!(tried.is_err(), "sbc2 must not be tried after a 603");
}

/// DR-OUT-2: an SBC that answers only 100 Trying gets CANCEL after the trunk's
/// `failover_time_seconds` (408, 500001) and the call moves to the next gateway; an SBC
/// that rang (180) is never failed over.
#[tokio::test]
async fn dr_out_2_failover_time_cancels_and_moves_on() {
    let (d, sbc1, sbc2) =
        two_sbcs(|t| t.replacen("failover_time_seconds = 10", "failover_time_seconds = 1", 1))
            .await;
    let v = call(&d, "+14255550100", 0.2).await;
    let call_id = v["call_id"].as_str().unwrap().to_owned();
    let (mut p1, _) = sbc1.accept().await;
    let inv = p1.until_request("INVITE").await;
    p1.send(trying(&inv.text)).await;
    let cancel = p1.until_request("CANCEL").await;
    assert!(
        header(&cancel, "Reason").contains("cause=408"),
        "{}",
        cancel.text
    );
    p1.send(response_to(&cancel.text, 200, "OK", &[])).await;
    p1.send(response_to(&inv.text, 487, "Request Terminated", &[]))
        .await;
    let (mut p2, _) = sbc2.accept().await;
    let inv2 = p2.until_request("INVITE").await;
    let c = "Contact: <sip:+14255550100@sbc2.adatum.biz:5061;transport=tls>";
    p2.send(response_tagged(
        &inv2.text,
        180,
        "Ringing",
        "r2",
        &[c],
        None,
    ))
    .await;
    // Past sbc2's own failover time: it rang, so it is not cancelled.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ack = answered_until_bye(&mut p2, &inv2, "r2", c).await;
    assert!(header(&ack, "CSeq").starts_with("2 ACK"), "{}", ack.text);
    let rec = ended(&d, &call_id).await;
    let reason = rec["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("answered by sbc2.adatum.biz after sbc1.adatum.biz: 408 500001"),
        "{rec}"
    );
}

/// DR-OUT-2, DR-NH-5: an SBC whose certificate carries the wrong name is a TLS failure
/// (504, 569008) and the next gateway is tried; that one retransmits its 200 and gets
/// its ACK again.
#[tokio::test]
async fn dr_out_2_wrong_certificate_name_is_504_569008_and_the_next_gateway_answers() {
    let wrong = SbcListener::bind("sbc9.adatum.biz", "sbc9.adatum.biz").await;
    let sbc2 = SbcListener::bind("sbc2.adatum.biz", "sbc2.adatum.biz").await;
    let (a1, a2) = (wrong.addr, sbc2.addr);
    let d = TestDaemon::start_with(lab_config(|t| {
        let t = with_trunk_address(t, "sbc1.adatum.biz", a1);
        with_trunk_address(t, "sbc2.adatum.biz", a2)
    }))
    .await;
    let _handshakes = wrong.serve_handshakes();
    let v = call(&d, "+14255550100", 0.2).await;
    let (mut p2, _) = sbc2.accept().await;
    let inv = p2.until_request("INVITE").await;
    let c = "Contact: <sip:+14255550100@sbc2.adatum.biz:5061;transport=tls>";
    let ok = response_tagged(&inv.text, 200, "OK", "w2", &[c], Some(SBC_ANSWER));
    p2.send(&ok).await;
    p2.until_request("ACK").await;
    // An SBC that did not see the ACK retransmits its 200 (RFC 3261 §13.3.1.4): ACKed
    // again, the call unchanged.
    p2.send(&ok).await;
    let again = p2.until_request("ACK").await;
    assert!(
        header(&again, "CSeq").starts_with("2 ACK"),
        "{}",
        again.text
    );
    let bye = p2.until_request("BYE").await;
    p2.send(response_to(&bye.text, 200, "OK", &[])).await;
    let rec = ended(&d, v["call_id"].as_str().unwrap()).await;
    let reason = rec["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("answered by sbc2.adatum.biz after sbc1.adatum.biz: 504 569008"),
        "{rec}"
    );
}

/// DR-OUT-2: when every gateway fails the caller gets the last failure; the story of
/// every attempt is in the record.
#[tokio::test]
async fn dr_out_2_every_gateway_failing_ends_the_call_with_the_last_failure() {
    let (d, sbc1, sbc2) = two_sbcs(|t| t).await;
    let v = call(&d, "+14255550100", 1.0).await;
    let (mut p1, _) = sbc1.accept().await;
    let inv = p1.until_request("INVITE").await;
    p1.send(response_to(&inv.text, 504, "Server Time-out", &[]))
        .await;
    let (mut p2, _) = sbc2.accept().await;
    let inv = p2.until_request("INVITE").await;
    p2.send(response_to(&inv.text, 408, "Request Timeout", &[]))
        .await;
    let rec = ended(&d, v["call_id"].as_str().unwrap()).await;
    assert_eq!(rec["status"], 408, "{rec}");
    let reason = rec["reason"].as_str().unwrap();
    assert!(
        reason.contains("sbc1.adatum.biz: 504") && reason.contains("sbc2.adatum.biz: 408"),
        "{rec}"
    );
}

/// DR-OUT-1: a bypass trunk gets the endpoint's own offer (a full ICE agent, no
/// ice-lite) and no session timer (DR-ST-1); `forward_pai` and a withheld caller ID.
#[tokio::test]
async fn dr_out_1_bypass_trunk_private_caller_with_forward_pai() {
    let sbc = SbcListener::bind("sbc2.contoso.com", "sbc2.contoso.com").await;
    let a = sbc.addr;
    let d = TestDaemon::start_with(lab_config(|t| {
        let t = with_trunk_address(t, "sbc2.contoso.com", a);
        t.replacen(
            "  media_bypass = true\n  forward_call_history = true\n",
            "  media_bypass = true\n  forward_call_history = true\n  forward_pai = true\n",
            1,
        )
    }))
    .await;
    let (status, v) = post(
        &d,
        "/api/calls",
        json!({"from": "user2@contoso.com", "to": "+14255550100", "private": true, "talk_seconds": 0.2}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let (mut p, _) = sbc.accept().await;
    let inv = p.until_request("INVITE").await;
    assert_eq!(
        header(&inv, "From").split(";tag=").next(),
        Some("\"Anonymous\" <sip:anonymous@anonymous.invalid>")
    );
    assert_eq!(header(&inv, "Privacy"), "id");
    assert_eq!(
        header(&inv, "P-Asserted-Identity"),
        "<sip:+14255550190@sip.pstnhub.microsoft.com;user=phone>"
    );
    assert!(inv.header("Session-Expires").is_none(), "{}", inv.text);
    assert_eq!(header(&inv, "Supported"), "replaces");
    let body = inv.body();
    assert!(
        body.contains("a=ice-ufrag:") && !body.contains("a=ice-lite"),
        "{body}"
    );
    p.send(response_to(&inv.text, 486, "Busy Here", &[])).await;
    let rec = ended(&d, v["call_id"].as_str().unwrap()).await;
    assert_eq!(rec["status"], 486);
}

/// DR-OUT-1 bad input: no route (403, 510559, and no INVITE), a route whose only
/// gateway is disabled, an unknown user, a bad number, a bad body: 4xx JSON, nothing
/// started.
#[tokio::test]
async fn dr_out_1_refused_calls_start_nothing() {
    let sbc = SbcListener::bind("sbc2.contoso.com", "sbc2.contoso.com").await;
    let (a, sbc1) = (
        sbc.addr,
        SbcListener::bind("sbc1.adatum.biz", "sbc1.adatum.biz").await,
    );
    let a1 = sbc1.addr;
    let d = TestDaemon::start_with(lab_config(|t| {
        let t = with_trunk_address(t, "sbc1.adatum.biz", a1);
        let t = with_trunk_address(t, "sbc2.contoso.com", a);
        t.replacen(
            "  fqdn = \"sbc2.contoso.com\"\n",
            "  fqdn = \"sbc2.contoso.com\"\n  enabled = false\n",
            1,
        )
    }))
    .await;
    let cases: &[(Value, u16, Option<u32>, &str)] = &[
        // No route matches +1234 (US wants 10 digits, International no leading 1).
        (
            json!({"from": "user1@adatum.biz", "to": "+1234"}),
            403,
            Some(510559),
            "no voice route of the policy",
        ),
        // contoso's only gateway is disabled.
        (
            json!({"from": "user2@contoso.com", "to": "+14255550100"}),
            403,
            Some(510559),
            "disabled",
        ),
        (
            json!({"from": "nobody@adatum.biz", "to": "+14255550100"}),
            404,
            None,
            "no user",
        ),
        (
            json!({"from": "user1@adatum.biz", "to": ""}),
            400,
            None,
            "number",
        ),
        (
            json!({"from": "user1@adatum.biz", "to": "+1 425\r\nX: y"}),
            400,
            None,
            "number",
        ),
        (
            json!({"from": "user1@adatum.biz"}),
            400,
            None,
            "`to` is required",
        ),
        (
            json!({"from": 7, "to": "+14255550100"}),
            400,
            None,
            "must be a string",
        ),
        (
            json!({"from": "user1@adatum.biz", "to": "+14255550100", "talk_seconds": -1}),
            400,
            None,
            "talk_seconds",
        ),
    ];
    for (body, status, code, says) in cases {
        let (s, v) = post(&d, "/api/calls", body.clone()).await;
        assert_eq!(s, *status, "{body} -> {v}");
        assert_eq!(v["status"], *status, "{v}");
        assert_eq!(v["code"].as_u64().map(|c| c as u32), *code, "{v}");
        let error = v["error"].as_str().unwrap();
        assert!(
            error.to_lowercase().contains(&says.to_lowercase()),
            "{body}: `{says}` not in {error}"
        );
    }
    let (s, v) = request(d.addr("api"), "POST", "/api/calls", None, None)
        .await
        .expect("API reachable");
    assert_eq!(s, 400, "{v}");
    assert!(d.hub.calls.is_empty() && d.hub.calls.recent().is_empty());
    // No SBC saw a connection.
    for l in [&sbc, &sbc1] {
        let tried = tokio::time::timeout(Duration::from_millis(300), l.accept()).await;
        assert!(tried.is_err(), "an SBC was contacted for a refused call");
    }
}

/// DR-OUT-1: a scripted caller (`[[tenant.user.call]]`) places its calls at its times:
/// two calls 0.3 s apart, each answered by the SBC and hung up after talk_seconds.
#[tokio::test]
async fn dr_out_1_scheduled_calls_are_placed_at_their_times() {
    let (d, sbc1, _sbc2) = two_sbcs(|t| {
        t.replacen(
            "    name = \"softphone\"\n    kind = \"sip\"\n",
            "    name = \"softphone\"\n    kind = \"sip\"\n\n    [[tenant.user.call]]\n    to = \"4255550100\"\n    after_seconds = 0.1\n    every_seconds = 0.3\n    count = 2\n    talk_seconds = 0.1\n",
            1,
        )
    })
    .await;
    let (mut p, _) = sbc1.accept().await;
    let c = "Contact: <sip:+14255550100@sbc1.adatum.biz:5061;transport=tls>";
    let mut call_ids = Vec::new();
    for n in 0..2 {
        let inv = p.until_request("INVITE").await;
        // The dial plan made the 10 digits E.164.
        assert!(inv
            .request_uri()
            .starts_with("sip:+14255550100@sbc1.adatum.biz"));
        call_ids.push(header(&inv, "Call-ID").to_owned());
        answered_until_bye(&mut p, &inv, &format!("s{n}"), c).await;
    }
    assert_ne!(call_ids[0], call_ids[1]);
    for id in &call_ids {
        assert_eq!(ended(&d, id).await["status"], 200);
    }
    // count = 2: no third call.
    assert!(p.try_recv(Duration::from_millis(600)).await.is_none());
}

/// A softphone's plain-RTP offer (a lab phone without SRTP: the media processor is in
/// the path, DR-MEDIA-3).
const PHONE_SDP: &str = "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

/// A phone's INVITE to `number` (its CSeq and, answering a 407, its credentials).
fn phone_invite(phone: &Phone, number: &str, cseq: u32, auth: Option<&str>) -> String {
    let a = phone.addr();
    let mut s = format!(
        "INVITE sip:{number}@{} SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bKinv{cseq}\r\nMax-Forwards: 70\r\n\
From: \"User1\" <sip:user1@adatum.biz>;tag=ph-out\r\nTo: <sip:{number}@adatum.biz>\r\nCall-ID: phone-out-{}@test\r\n\
CSeq: {cseq} INVITE\r\nContact: <sip:user1@{a}>\r\nAllow: INVITE, ACK, CANCEL, BYE\r\n",
        phone.server,
        a.port()
    );
    if let Some(auth) = auth {
        s.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    s.push_str(&format!(
        "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{PHONE_SDP}",
        PHONE_SDP.len()
    ));
    s
}

/// A request of the phone in the dialog the 200 made (To with drhub's tag).
fn phone_in_dialog(phone: &Phone, ok: &Reply, method: &str, cseq: u32, branch: &str) -> String {
    let a = phone.addr();
    let to = header(ok, "To");
    let target = header(ok, "Contact")
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_owned();
    format!(
        "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\n\
From: \"User1\" <sip:user1@adatum.biz>;tag=ph-out\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
        header(ok, "Call-ID")
    )
}

/// INVITE, 407, INVITE with credentials: the phone's call is admitted; returns the
/// `100 Trying` of the second INVITE.
async fn phone_calls(phone: &Phone, number: &str) -> Reply {
    phone.send(&phone_invite(phone, number, 1, None)).await;
    let challenge = phone.recv().await;
    assert_eq!(challenge.status(), 407, "{}", challenge.text);
    assert!(challenge.header("Proxy-Authenticate").is_some());
    // The ACK for the 407 (the same branch, RFC 3261 §17.1.1.3).
    let inv1 = phone_invite(phone, number, 1, None);
    let ack: String = inv1
        .split("\r\n")
        .take_while(|l| !l.is_empty())
        .filter_map(|l| {
            if l.starts_with("INVITE ") {
                Some(l.replacen("INVITE", "ACK", 1))
            } else if l.starts_with("CSeq:") {
                Some("CSeq: 1 ACK".to_owned())
            } else if l.starts_with("To:") {
                Some(header(&challenge, "To").to_owned()).map(|t| format!("To: {t}"))
            } else if l.starts_with("Content-")
                || l.starts_with("Contact:")
                || l.starts_with("Allow:")
            {
                None
            } else {
                Some(l.to_owned())
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\nContent-Length: 0\r\n\r\n";
    phone.send(&ack).await;
    let uri = format!("sip:{number}@{}", phone.server);
    let auth = digest_md5(
        &challenge.text,
        "user1",
        "user1-lab-password",
        "INVITE",
        &uri,
    );
    phone
        .send(&phone_invite(phone, number, 2, Some(&auth)))
        .await;
    let trying = phone.recv().await;
    assert_eq!(trying.status(), 100, "{}", trying.text);
    trying
}

/// A registered phone of User1 calls +14255550100 through sbc1, which answers 200 with
/// its SDP; both ACKs are done: the phone, the SBC's side, drhub's INVITE and the
/// phone's 200.
async fn phone_call_up(d: &TestDaemon, sbc1: &SbcListener) -> (Phone, ServerSbc, Reply, Reply) {
    let phone = Phone::new(d.addr("endpoints")).await;
    assert_eq!(phone.register_with("user1-lab-password").await, 200);
    phone_calls(&phone, "+14255550100").await;
    let (mut pstn, _) = sbc1.accept().await;
    let inv = pstn.until_request("INVITE").await;
    let c = "Contact: <sip:+14255550100@sbc1.adatum.biz:5061;transport=tls>";
    pstn.send(response_tagged(
        &inv.text,
        200,
        "OK",
        "e1",
        &[c],
        Some(SBC_ANSWER),
    ))
    .await;
    let ok = phone.recv().await;
    assert_eq!(ok.status(), 200, "{}", ok.text);
    pstn.until_request("ACK").await;
    phone
        .send(&phone_in_dialog(&phone, &ok, "ACK", 2, "ack2"))
        .await;
    (phone, pstn, inv, ok)
}

/// DR-OUT-1: a registered SIP endpoint calls a number: its INVITE is challenged like a
/// REGISTER (407), then routed to the SBC as user1; the SBC's 180 and 200 reach the
/// phone (with the media processor's answer to its plain-RTP offer, DR-MEDIA-3); its ACK
/// and BYE reach the SBC.
#[tokio::test]
async fn dr_out_1_an_endpoints_invite_is_challenged_routed_and_bridged_to_the_sbc() {
    let (d, sbc1, _sbc2) = two_sbcs(|t| t).await;
    let phone = Phone::new(d.addr("endpoints")).await;
    assert_eq!(phone.register_with("user1-lab-password").await, 200);
    phone_calls(&phone, "+14255550100").await;

    let (mut pstn, _) = sbc1.accept().await;
    let inv = pstn.until_request("INVITE").await;
    assert_eq!(
        inv.request_uri(),
        "sip:+14255550100@sbc1.adatum.biz:5061;user=phone"
    );
    assert!(
        header(&inv, "From").contains("<sip:+18338006777@sip.pstnhub.microsoft.com;user=phone>"),
        "{}",
        inv.text
    );
    // Non-bypass: the media processor's SRTP offer, not the phone's RTP one.
    assert!(inv.body().contains("RTP/SAVP") && !inv.body().contains("o=phone"));
    let c = "Contact: <sip:+14255550100@sbc1.adatum.biz:5061;transport=tls>";
    pstn.send(response_tagged(&inv.text, 180, "Ringing", "e1", &[c], None))
        .await;
    let ringing = phone.recv().await;
    assert_eq!(ringing.status(), 180, "{}", ringing.text);
    pstn.send(response_tagged(
        &inv.text,
        200,
        "OK",
        "e1",
        &[c],
        Some(SBC_ANSWER),
    ))
    .await;
    let ok = phone.recv().await;
    assert_eq!(ok.status(), 200, "{}", ok.text);
    assert!(
        ok.body().contains("m=audio ") && ok.body().contains(" RTP/AVP 0"),
        "{}",
        ok.text
    );
    assert_eq!(
        header(&ok, "To").split(";tag=").nth(1).map(str::len),
        Some(16)
    );
    pstn.until_request("ACK").await;
    phone
        .send(&phone_in_dialog(&phone, &ok, "ACK", 2, "ack2"))
        .await;
    phone
        .send(&phone_in_dialog(&phone, &ok, "BYE", 3, "bye3"))
        .await;
    let bye_ok = phone.recv().await;
    assert_eq!((bye_ok.status(), bye_ok.cseq_method()), (200, Some("BYE")));
    let bye = pstn.until_request("BYE").await;
    pstn.send(response_to(&bye.text, 200, "OK", &[])).await;
    d.calls_drained().await;
    let rec = d.hub.calls.recent().pop().expect("a record");
    let o = rec.outcome.expect("outcome");
    assert_eq!(o.status, 200);
    assert_eq!(
        o.reason,
        "answered by sbc1.adatum.biz; ended by the caller (BYE)"
    );
}

/// DR-OUT-2, DR-VAL-8: a phone's call the SBC refuses gets the SBC's status with a
/// Reason and ms-diagnostics 560 + status; a number with no route 403 510559, with no
/// INVITE to any SBC; the SBC's BYE on an answered call reaches the phone.
#[tokio::test]
async fn dr_out_2_an_endpoint_hears_the_sbcs_failure_and_its_bye() {
    let (d, sbc1, _sbc2) = two_sbcs(|t| t).await;
    let phone = Phone::new(d.addr("endpoints")).await;
    assert_eq!(phone.register_with("user1-lab-password").await, 200);
    phone_calls(&phone, "+14255550100").await;
    let (mut pstn, _) = sbc1.accept().await;
    let inv = pstn.until_request("INVITE").await;
    pstn.send(response_to(&inv.text, 486, "Busy Here", &[]))
        .await;
    let busy = phone.recv().await;
    assert_eq!(busy.status(), 486, "{}", busy.text);
    let diag = header(&busy, "ms-diagnostics");
    assert!(diag.starts_with("560486;"), "{diag}");
    assert!(diag.contains("sbc=\"sbc1.adatum.biz\""), "{diag}");
    assert!(
        header(&busy, "Reason").starts_with("Q.850;cause=17"),
        "{}",
        busy.text
    );

    // No route: 403 510559 to the phone (a second call on the same phone: new Call-ID).
    let phone2 = Phone::new(d.addr("endpoints")).await;
    phone2.send(&phone_invite(&phone2, "+1234", 1, None)).await;
    let challenge = phone2.recv().await;
    let uri = format!("sip:+1234@{}", phone2.server);
    let auth = digest_md5(
        &challenge.text,
        "user1",
        "user1-lab-password",
        "INVITE",
        &uri,
    );
    phone2
        .send(&phone_invite(&phone2, "+1234", 2, Some(&auth)))
        .await;
    let mut r = phone2.recv().await;
    if r.status() == 100 {
        r = phone2.recv().await;
    }
    assert_eq!(r.status(), 403, "{}", r.text);
    assert!(
        header(&r, "ms-diagnostics").starts_with("510559;"),
        "{}",
        r.text
    );

    // Wrong password: challenged again, no call.
    let phone3 = Phone::new(d.addr("endpoints")).await;
    phone3
        .send(&phone_invite(&phone3, "+14255550100", 1, None))
        .await;
    let challenge = phone3.recv().await;
    let uri = format!("sip:+14255550100@{}", phone3.server);
    let auth = digest_md5(&challenge.text, "user1", "wrong", "INVITE", &uri);
    phone3
        .send(&phone_invite(&phone3, "+14255550100", 2, Some(&auth)))
        .await;
    assert_eq!(phone3.recv().await.status(), 407);
    d.calls_drained().await;

    // The SBC hangs up an answered call: the phone gets the BYE.
    let phone4 = Phone::new(d.addr("endpoints")).await;
    phone_calls(&phone4, "+14255550100").await;
    let inv = pstn.until_request("INVITE").await;
    let c = "Contact: <sip:+14255550100@sbc1.adatum.biz:5061;transport=tls>";
    pstn.send(response_tagged(
        &inv.text,
        200,
        "OK",
        "e4",
        &[c],
        Some(SBC_ANSWER),
    ))
    .await;
    let ok = phone4.recv().await;
    assert_eq!(ok.status(), 200);
    pstn.until_request("ACK").await;
    phone4
        .send(&phone_in_dialog(&phone4, &ok, "ACK", 2, "ack4"))
        .await;
    let sbc_bye = uas_request(&inv.text, "e4", "BYE", 1);
    pstn.send(&sbc_bye).await;
    let r = pstn.recv().await;
    assert_eq!(r.status(), 200, "{}", r.text);
    let bye = phone4.recv_request("BYE").await;
    phone4.answer(&bye, 200, "OK", "x", None).await;
    d.calls_drained().await;
}

/// The control API ends a ringing outbound call with CANCEL (and the call ends with the
/// SBC's 487); `GET /api/calls/{id}` shows it ringing first.
#[tokio::test]
async fn dr_out_1_api_hang_up_of_a_ringing_outbound_call_cancels_it() {
    let (d, sbc1, _sbc2) = two_sbcs(|t| t).await;
    let v = call(&d, "+14255550100", 5.0).await;
    let call_id = v["call_id"].as_str().unwrap().to_owned();
    let (mut p, _) = sbc1.accept().await;
    let inv = p.until_request("INVITE").await;
    let c = "Contact: <sip:+14255550100@sbc1.adatum.biz:5061;transport=tls>";
    p.send(response_tagged(&inv.text, 180, "Ringing", "h1", &[c], None))
        .await;
    state_becomes(&d, &call_id, "ringing").await;
    let (s, v) = request(
        d.addr("api"),
        "DELETE",
        &format!("/api/calls/{call_id}"),
        None,
        None,
    )
    .await
    .expect("API reachable");
    assert_eq!(s, 202, "{v}");
    let cancel = p.until_request("CANCEL").await;
    p.send(response_to(&cancel.text, 200, "OK", &[])).await;
    p.send(response_tagged(
        &inv.text,
        487,
        "Request Terminated",
        "h1",
        &[],
        None,
    ))
    .await;
    let rec = ended(&d, &call_id).await;
    assert_eq!(rec["status"], 487, "{rec}");
}

/// A phone's call the SBC only rings: after `[calls] ring_timeout_seconds` the SBC gets
/// CANCEL and the phone the ring timeout's status (480), not a 487 it never asked for.
#[tokio::test]
async fn dr_out_1_an_endpoints_unanswered_call_times_out_with_480_and_cancel() {
    let (d, sbc1, _sbc2) = two_sbcs(|t| set_key(&t, "calls", "ring_timeout_seconds", "1")).await;
    let phone = Phone::new(d.addr("endpoints")).await;
    assert_eq!(phone.register_with("user1-lab-password").await, 200);
    phone_calls(&phone, "+14255550100").await;
    let (mut pstn, _) = sbc1.accept().await;
    let inv = pstn.until_request("INVITE").await;
    let c = "Contact: <sip:+14255550100@sbc1.adatum.biz:5061;transport=tls>";
    pstn.send(response_tagged(&inv.text, 180, "Ringing", "rt", &[c], None))
        .await;
    assert_eq!(phone.recv().await.status(), 180);
    let cancel = pstn.until_request("CANCEL").await;
    pstn.send(response_to(&cancel.text, 200, "OK", &[])).await;
    pstn.send(response_tagged(
        &inv.text,
        487,
        "Request Terminated",
        "rt",
        &[],
        None,
    ))
    .await;
    let r = phone.recv().await;
    assert_eq!(r.status(), 480, "{}", r.text);
    assert!(
        header(&r, "ms-diagnostics").contains("reason="),
        "{}",
        r.text
    );
    d.calls_drained().await;
}

/// The state `GET /api/calls/{id}` shows for a call up, once it is `want` (a state
/// change travels from the call's task to the table).
async fn state_becomes(d: &TestDaemon, call_id: &str, want: &str) {
    let mut state = String::new();
    for _ in 0..250 {
        let (_, v) = get(d, &format!("/api/calls/{call_id}")).await;
        state = v["state"].as_str().unwrap_or_default().to_owned();
        if state == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("call {call_id} is {state}, not {want}");
}

/// DR-HOLD-1 on an outbound call: the SBC, as UAS of drhub's INVITE, holds with a
/// re-INVITE `a=inactive` sent by its route set (Route: drhub's Record-Route, Request-URI
/// drhub's Contact) and gets `a=inactive` from drhub's own offer's session: same session
/// id with the version one on, the same port, ICE credentials and SRTP key (RFC 3264
/// §8). The API shows the call held, then answered after the resume; `c=0.0.0.0` gets
/// 488 531052 and changes nothing.
#[tokio::test]
async fn dr_hold_1_the_sbc_holds_and_resumes_an_outbound_call() {
    let (d, sbc1, _sbc2) = two_sbcs(|t| t).await;
    let v = call(&d, "+14255550100", 30.0).await;
    let call_id = v["call_id"].as_str().unwrap().to_owned();
    let (mut p, _) = sbc1.accept().await;
    let inv = p.until_request("INVITE").await;
    let contact = "Contact: <sip:+14255550100@sbc1.adatum.biz:5061;transport=tls>";
    p.answer_200(&inv, "h1", contact).await;
    state_becomes(&d, &call_id, "answered").await;
    let offer = inv.body().to_owned();
    let (id, v1) = sdp_origin(&offer);

    let held_sdp = SBC_ANSWER
        .replace("o=SBC 1 1 ", "o=SBC 1 2 ")
        .replace("a=sendrecv", "a=inactive");
    p.send(with_sdp(
        &uas_request(&inv.text, "h1", "INVITE", 1),
        &held_sdp,
    ))
    .await;
    let (held, _) = p.until(200).await;
    p.send(uas_request(&inv.text, "h1", "ACK", 1)).await;
    let body = held.body();
    assert_eq!(sdp_line(body, "a=inactive"), "a=inactive", "{body}");
    assert_eq!(sdp_origin(body), (id.clone(), v1 + 1), "{body}");
    let port = |b: &str| {
        sdp_line(b, "m=audio")
            .split_whitespace()
            .nth(1)
            .map(str::to_owned)
    };
    assert_eq!(port(body), port(&offer));
    let key = |b: &str| {
        sdp_line(b, "a=crypto")
            .split_whitespace()
            .nth(2)
            .map(str::to_owned)
    };
    assert_eq!(key(body), key(&offer));
    for same in ["a=ice-ufrag", "a=ice-pwd"] {
        assert_eq!(sdp_line(body, same), sdp_line(&offer, same), "{same}");
    }
    state_becomes(&d, &call_id, "held").await;

    let zero = SBC_ANSWER
        .replace("o=SBC 1 1 ", "o=SBC 1 3 ")
        .replace("c=IN IP4 192.0.2.50", "c=IN IP4 0.0.0.0");
    p.send(with_sdp(&uas_request(&inv.text, "h1", "INVITE", 2), &zero))
        .await;
    let (refused, _) = p.until(488).await;
    assert_eq!(refused.ms_code(), Some(531052), "{}", refused.text);

    let resume = SBC_ANSWER.replace("o=SBC 1 1 ", "o=SBC 1 4 ");
    p.send(with_sdp(
        &uas_request(&inv.text, "h1", "INVITE", 3),
        &resume,
    ))
    .await;
    let (back, _) = p.until(200).await;
    p.send(uas_request(&inv.text, "h1", "ACK", 3)).await;
    assert_eq!(sdp_line(back.body(), "a=sendrecv"), "a=sendrecv");
    assert_eq!(sdp_origin(back.body()), (id, v1 + 2));
    state_becomes(&d, &call_id, "answered").await;

    let bye = p.request(&uas_request(&inv.text, "h1", "BYE", 4)).await;
    assert_eq!((bye.status(), bye.cseq_method()), (200, Some("BYE")));
    ended(&d, &call_id).await;
}

/// DR-HOLD-2 on an outbound bypass call (Contoso's trunk): the Teams user holds through
/// the API and the SBC gets a re-INVITE offering `a=inactive` from drhub's own offer's
/// session (same session id, version one on, same ICE credentials), by its route set;
/// resume offers `a=sendrecv`.
#[tokio::test]
async fn dr_hold_2_teams_hold_of_an_outbound_bypass_call_reinvites_the_sbc() {
    let sbc = SbcListener::bind("star.contoso.com", "sbc2.contoso.com").await;
    let addr = sbc.addr;
    let d = TestDaemon::start_with(lab_config(|t| {
        with_trunk_address(t, "sbc2.contoso.com", addr)
    }))
    .await;
    let (status, v) = post(
        &d,
        "/api/calls",
        json!({"from": "user2@contoso.com", "to": "+14255550100", "talk_seconds": 30}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let call_id = v["call_id"].as_str().unwrap().to_owned();
    let (mut p, _) = sbc.accept().await;
    let inv = p.until_request("INVITE").await;
    let contact = "Contact: <sip:+14255550100@sbc2.contoso.com:5061;transport=tls>";
    p.answer_200(&inv, "h2", contact).await;
    state_becomes(&d, &call_id, "answered").await;
    let offer = inv.body().to_owned();
    let (id, v1) = sdp_origin(&offer);

    let (s, _) = post(&d, &format!("/api/calls/{call_id}/hold"), json!({})).await;
    assert_eq!(s, 202);
    let hold = p.until_request("INVITE").await;
    assert_eq!(
        hold.request_uri(),
        "sip:+14255550100@sbc2.contoso.com:5061;transport=tls"
    );
    assert_eq!(sdp_line(hold.body(), "a=inactive"), "a=inactive");
    assert_eq!(sdp_origin(hold.body()), (id.clone(), v1 + 1));
    assert_eq!(
        sdp_line(hold.body(), "a=ice-ufrag"),
        sdp_line(&offer, "a=ice-ufrag")
    );
    let held_answer = SBC_ANSWER.replace("a=sendrecv", "a=inactive");
    p.send(response_tagged(
        &hold.text,
        200,
        "OK",
        "h2",
        &[contact],
        Some(&held_answer),
    ))
    .await;
    p.until_request("ACK").await;
    state_becomes(&d, &call_id, "held").await;

    let (s, _) = post(&d, &format!("/api/calls/{call_id}/resume"), json!({})).await;
    assert_eq!(s, 202);
    // The SBC's 200 listed no REFER and the call is media bypass: a transfer is accepted
    // by the API, nothing is sent (Microsoft supports no transfer without REFER in
    // media bypass) and the call goes on.
    let (s, v) = post(
        &d,
        &format!("/api/calls/{call_id}/transfer"),
        json!({"to": "+14255550199"}),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let resume = p.until_request("INVITE").await;
    assert_eq!(sdp_line(resume.body(), "a=sendrecv"), "a=sendrecv");
    assert_eq!(sdp_origin(resume.body()), (id, v1 + 2));
    p.answer_200(&resume, "h2", contact).await;
    state_becomes(&d, &call_id, "answered").await;

    let bye = p.request(&uas_request(&inv.text, "h2", "BYE", 1)).await;
    assert_eq!((bye.status(), bye.cseq_method()), (200, Some("BYE")));
    ended(&d, &call_id).await;
}

/// DR-HOLD-2 from a phone that placed a call on a non-bypass trunk: its hold re-INVITE
/// (`a=sendonly`) is answered `a=recvonly` by the media processor from the session of
/// its first answer (version one on), the call shows held and the SBC sees nothing; the
/// resume is answered `a=sendrecv`.
#[tokio::test]
async fn dr_hold_2_a_phone_holds_its_outbound_call_through_the_media_processor() {
    let (d, sbc1, _sbc2) = two_sbcs(|t| t).await;
    let (phone, mut pstn, inv, ok) = phone_call_up(&d, &sbc1).await;
    let call_id = header(&inv, "Call-ID").to_owned();
    state_becomes(&d, &call_id, "answered").await;
    let (id, v1) = sdp_origin(ok.body());

    let hold_sdp = format!(
        "{}a=sendonly\r\n",
        PHONE_SDP.replace("o=phone 1 1 ", "o=phone 1 2 ")
    );
    let hold = with_sdp(
        &phone_in_dialog(&phone, &ok, "INVITE", 3, "hold3"),
        &hold_sdp,
    );
    phone.send(&hold).await;
    let held = phone.recv().await;
    assert_eq!(held.status(), 200, "{}", held.text);
    assert_eq!(sdp_line(held.body(), "a=recvonly"), "a=recvonly");
    assert_eq!(sdp_origin(held.body()), (id.clone(), v1 + 1));
    phone
        .send(&phone_in_dialog(&phone, &ok, "ACK", 3, "ack3"))
        .await;
    state_becomes(&d, &call_id, "held").await;
    assert!(
        pstn.try_recv(Duration::from_millis(300)).await.is_none(),
        "the SBC sees nothing"
    );

    let resume_sdp = PHONE_SDP.replace("o=phone 1 1 ", "o=phone 1 3 ");
    let resume = with_sdp(
        &phone_in_dialog(&phone, &ok, "INVITE", 4, "res4"),
        &resume_sdp,
    );
    phone.send(&resume).await;
    let back = phone.recv().await;
    assert_eq!(back.status(), 200, "{}", back.text);
    assert_eq!(sdp_line(back.body(), "a=sendrecv"), "a=sendrecv");
    assert_eq!(sdp_origin(back.body()), (id, v1 + 2));
    // RFC 3261 §13.3.1.4 over UDP: no ACK yet, so the same 200 comes again.
    let again = phone.recv().await;
    assert_eq!(again.text, back.text, "the 200 retransmitted as it was");
    phone
        .send(&phone_in_dialog(&phone, &ok, "ACK", 4, "ack4"))
        .await;
    state_becomes(&d, &call_id, "answered").await;

    phone
        .send(&phone_in_dialog(&phone, &ok, "BYE", 5, "bye5"))
        .await;
    let bye_ok = phone.recv().await;
    assert_eq!(bye_ok.status(), 200, "{}", bye_ok.text);
    let bye = pstn.until_request("BYE").await;
    pstn.send(response_to(&bye.text, 200, "OK", &[])).await;
    d.calls_drained().await;
}

/// RFC 3264 §8 across the B2BUA on a bypass call a phone placed (sbc1 made a bypass
/// trunk): the SBC's hold re-INVITE goes on to the phone in its dialog, the phone's
/// answer comes back to the SBC, each 2xx ACKed on its own leg; the phone's resume goes
/// on to the SBC the same way.
#[tokio::test]
async fn dr_hold_1_offers_are_relayed_between_the_sbc_and_a_phone_that_placed_a_bypass_call() {
    let (d, sbc1, _sbc2) =
        two_sbcs(|t| t.replacen("media_bypass = false", "media_bypass = true", 1)).await;
    let (phone, mut pstn, inv, ok) = phone_call_up(&d, &sbc1).await;
    assert!(
        inv.body().contains("o=phone"),
        "bypass: the phone's offer: {}",
        inv.text
    );
    let c = "Contact: <sip:+14255550100@sbc1.adatum.biz:5061;transport=tls>";

    // The SBC holds: relayed to the phone, whose answer reaches the SBC.
    let hold_sdp = SBC_ANSWER
        .replace("o=SBC 1 1 ", "o=SBC 1 2 ")
        .replace("a=sendrecv", "a=sendonly");
    pstn.send(with_sdp(
        &uas_request(&inv.text, "e1", "INVITE", 1),
        &hold_sdp,
    ))
    .await;
    let relayed = phone.recv_request("INVITE").await;
    assert_eq!(sdp_line(relayed.body(), "a=sendonly"), "a=sendonly");
    let phone_answer = format!(
        "{}a=recvonly\r\n",
        PHONE_SDP.replace("o=phone 1 1 ", "o=phone 1 2 ")
    );
    phone
        .answer(&relayed, 200, "OK", "ph-out", Some(&phone_answer))
        .await;
    phone.recv_request("ACK").await;
    let (held, _) = pstn.until(200).await;
    assert_eq!(sdp_line(held.body(), "a=recvonly"), "a=recvonly");
    pstn.send(uas_request(&inv.text, "e1", "ACK", 1)).await;

    // The phone resumes: relayed to the SBC, whose answer reaches the phone.
    let resume_sdp = PHONE_SDP.replace("o=phone 1 1 ", "o=phone 1 3 ");
    phone
        .send(&with_sdp(
            &phone_in_dialog(&phone, &ok, "INVITE", 3, "res3"),
            &resume_sdp,
        ))
        .await;
    let to_sbc = pstn.until_request("INVITE").await;
    assert!(to_sbc.body().contains("o=phone 1 3 "), "{}", to_sbc.text);
    let sbc_resume = SBC_ANSWER.replace("o=SBC 1 1 ", "o=SBC 1 3 ");
    pstn.send(response_tagged(
        &to_sbc.text,
        200,
        "OK",
        "e1",
        &[c],
        Some(&sbc_resume),
    ))
    .await;
    pstn.until_request("ACK").await;
    let back = phone.recv().await;
    assert_eq!(back.status(), 200, "{}", back.text);
    assert!(back.body().contains("o=SBC 1 3 "), "{}", back.body());
    phone
        .send(&phone_in_dialog(&phone, &ok, "ACK", 3, "ack3"))
        .await;

    phone
        .send(&phone_in_dialog(&phone, &ok, "BYE", 4, "bye4"))
        .await;
    let bye_ok = phone.recv().await;
    assert_eq!(bye_ok.status(), 200, "{}", bye_ok.text);
    let bye = pstn.until_request("BYE").await;
    pstn.send(response_to(&bye.text, 200, "OK", &[])).await;
    d.calls_drained().await;
}

/// DR-XFER-1, DR-XFER-3 on a call drhub placed: the SBC's 200 listed REFER, so the Teams
/// user's transfer is a REFER in that dialog (Refer-To the number at the proxy,
/// Referred-By with x-m/x-t); after 202 and NOTIFY sipfrag 200, drhub ends its leg with
/// BYE and the call record says it was transferred.
#[tokio::test]
async fn dr_xfer_3_a_call_drhub_placed_is_transferred_by_refer() {
    let (d, sbc1, _sbc2) = two_sbcs(|t| t).await;
    let v = call(&d, "+14255550100", 30.0).await;
    let call_id = v["call_id"].as_str().unwrap().to_owned();
    let (mut pstn, _) = sbc1.accept().await;
    let inv = pstn.until_request("INVITE").await;
    let contact = "Contact: <sip:+14255550100@sbc1.adatum.biz:5061;transport=tls>";
    let allow = "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY";
    pstn.send(response_tagged(
        &inv.text,
        200,
        "OK",
        "x1",
        &[contact, allow],
        Some(SBC_ANSWER),
    ))
    .await;
    pstn.until_request("ACK").await;
    let (s, v) = post(
        &d,
        &format!("/api/calls/{call_id}/transfer"),
        json!({"to": "+14255550199"}),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let refer = pstn.until_request("REFER").await;
    assert_eq!(
        refer.header("Refer-To"),
        Some("<sip:+14255550199@sip.pstnhub.microsoft.com;user=phone>")
    );
    let by = refer.header("Referred-By").unwrap_or_default();
    assert!(
        by.contains(";x-m=8:orgid:") && by.contains(";x-t=adatum;"),
        "{by}"
    );
    pstn.send(response_to(&refer.text, 202, "Accepted", &[]))
        .await;
    let notify = with_body(
        &uas_request(&inv.text, "x1", "NOTIFY", 1),
        "message/sipfrag;version=2.0",
        "SIP/2.0 200 OK\r\n",
    )
    .replace(
        "CSeq: 1 NOTIFY\r\n",
        "CSeq: 1 NOTIFY\r\nEvent: refer\r\nSubscription-State: terminated\r\n",
    );
    let ok = pstn.request(&notify).await;
    assert_eq!(ok.status(), 200, "{}", ok.text);
    let bye = pstn.until_request("BYE").await;
    pstn.send(response_to(&bye.text, 200, "OK", &[])).await;
    let rec = ended(&d, &call_id).await;
    assert_eq!(
        rec["reason"], "answered by sbc1.adatum.biz; transferred to +14255550199",
        "{rec}"
    );
}

/// DR-XFER-2 on a call drhub placed: the SBC's 200 listed no REFER, so drhub carries
/// the Teams user's transfer out as referee: an INVITE to the SBC for the target with
/// Referred-By, From the party drhub called, no History-Info (DR-XFER-5). Once it is
/// answered the two SBC legs talk through the media processor: the target's hold
/// re-INVITE is answered by it (`a=inactive`), and its BYE ends the other leg too.
#[tokio::test]
async fn dr_xfer_2_a_call_drhub_placed_is_transferred_as_referee_without_refer() {
    let (d, sbc1, _sbc2) = two_sbcs(|t| t).await;
    let v = call(&d, "+14255550100", 30.0).await;
    let call_id = v["call_id"].as_str().unwrap().to_owned();
    let (mut pstn, _) = sbc1.accept().await;
    let inv = pstn.until_request("INVITE").await;
    let contact = "Contact: <sip:+14255550100@sbc1.adatum.biz:5061;transport=tls>";
    pstn.answer_200(&inv, "x1", contact).await;
    state_becomes(&d, &call_id, "answered").await;
    let (s, v) = post(
        &d,
        &format!("/api/calls/{call_id}/transfer"),
        json!({"to": "+14255550199"}),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let leg = pstn.until_request("INVITE").await;
    assert_ne!(leg.header("Call-ID"), Some(call_id.as_str()));
    assert_eq!(
        leg.request_uri(),
        "sip:+14255550199@sbc1.adatum.biz:5061;user=phone"
    );
    assert!(
        leg.header("From")
            .unwrap()
            .starts_with("<sip:+14255550100@sip.pstnhub.microsoft.com;user=phone>;tag="),
        "the party drhub called is the transferee\n{}",
        leg.text
    );
    let by = leg.header("Referred-By").unwrap_or_default();
    assert!(
        by.contains(";x-m=8:orgid:") && by.contains(";x-t=adatum;"),
        "{}",
        leg.text
    );
    assert!(leg.header("History-Info").is_none(), "DR-XFER-5");
    assert!(
        leg.body().contains("a=crypto:"),
        "the media processor's offer"
    );
    let contact2 = "Contact: <sip:+14255550199@sbc1.adatum.biz:5061;transport=tls>";
    let ack = pstn.answer_200(&leg, "t2", contact2).await;
    assert_eq!(ack.header("Call-ID"), leg.header("Call-ID"));
    // The target holds: the media processor answers for the call.
    let held = SBC_ANSWER.replace("a=sendrecv", "a=inactive");
    let hold = with_sdp(&uas_request(&leg.text, "t2", "INVITE", 1), &held);
    let r = pstn.request(&hold).await;
    assert_eq!(r.status(), 200, "{}", r.text);
    assert_eq!(sdp_direction(r.body()), "a=inactive", "{}", r.text);
    pstn.send(uas_request(&leg.text, "t2", "ACK", 1)).await;
    // The target hangs up: the first leg gets BYE.
    pstn.send(uas_request(&leg.text, "t2", "BYE", 2)).await;
    let (done, bye) = pstn.until_both(response_of("BYE"), request_of("BYE")).await;
    assert_eq!(done.status(), 200);
    assert_eq!(bye.header("Call-ID"), Some(call_id.as_str()));
    pstn.send(response_to(&bye.text, 200, "OK", &[])).await;
    let rec = ended(&d, &call_id).await;
    assert_eq!(
        rec["reason"],
        "answered by sbc1.adatum.biz; transferred to +14255550199 by drhub as referee; \
         ended by +14255550199 (BYE)",
        "{rec}"
    );
}

/// DR-XFER-2 on a call a SIP phone placed (the SBC's 200 listed no REFER): once the
/// target answers drhub's INVITE, the phone (the Teams user, who transferred) gets BYE
/// and the call goes on between the SBC's two legs; the called party's BYE ends the
/// target's leg.
#[tokio::test]
async fn dr_xfer_2_the_phone_that_placed_a_transferred_call_leaves_it() {
    let (d, sbc1, _sbc2) = two_sbcs(|t| t).await;
    let phone = Phone::new(d.addr("endpoints")).await;
    assert_eq!(phone.register_with("user1-lab-password").await, 200);
    phone_calls(&phone, "+14255550100").await;
    let (mut pstn, _) = sbc1.accept().await;
    let inv = pstn.until_request("INVITE").await;
    let c = "Contact: <sip:+14255550100@sbc1.adatum.biz:5061;transport=tls>";
    pstn.send(response_tagged(
        &inv.text,
        200,
        "OK",
        "e1",
        &[c],
        Some(SBC_ANSWER),
    ))
    .await;
    let ok = phone.recv().await;
    assert_eq!(ok.status(), 200, "{}", ok.text);
    pstn.until_request("ACK").await;
    phone
        .send(&phone_in_dialog(&phone, &ok, "ACK", 2, "ack2"))
        .await;
    let call_id = inv.header("Call-ID").unwrap().to_owned();
    state_becomes(&d, &call_id, "answered").await;
    let (s, v) = post(
        &d,
        &format!("/api/calls/{call_id}/transfer"),
        json!({"to": "+14255550199"}),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let leg = pstn.until_request("INVITE").await;
    assert!(leg.header("Referred-By").is_some(), "{}", leg.text);
    let c2 = "Contact: <sip:+14255550199@sbc1.adatum.biz:5061;transport=tls>";
    pstn.answer_200(&leg, "t2", c2).await;
    let bye = phone.recv_request("BYE").await;
    phone.send(&response_to(&bye.text, 200, "OK", &[])).await;
    // The party first called hangs up: the target's leg ends.
    pstn.send(uas_request(&inv.text, "e1", "BYE", 1)).await;
    let (done, bye) = pstn.until_both(response_of("BYE"), request_of("BYE")).await;
    assert_eq!(done.status(), 200);
    assert_eq!(bye.header("Call-ID"), leg.header("Call-ID"));
    pstn.send(response_to(&bye.text, 200, "OK", &[])).await;
    let rec = ended(&d, &call_id).await;
    assert_eq!(
        rec["reason"],
        "answered by sbc1.adatum.biz; transferred to +14255550199 by drhub as referee; \
         ended by the SBC (BYE)",
        "{rec}"
    );
}
