//! Black-box: hold and other re-offers from the SBC (DR-HOLD-1, RFC 3264 §8) on an
//! inbound call through a record-routing SBC: `a=inactive` answered `a=inactive` from
//! the same media session, resume, `a=sendonly` answered `a=inactive`, and the offers
//! drhub refuses (`c=0.0.0.0`: 488 531052; no codec it can answer: 488 531000) leave
//! the call as it was.

mod support;

use support::*;

const USER1: &str = "+18338006777";

/// The SBC's first offer (the one `invite()` carries), as its later offers rewrite it.
const SBC_SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

/// The SBC's offer number `version` with `direction` and `c=` at `address`.
fn sbc_offer(version: u32, direction: &str, address: &str) -> String {
    let sdp = SBC_SDP
        .replace("o=- 1 1 ", &format!("o=- 1 {version} "))
        .replace("c=IN IP4 192.0.2.10", &format!("c=IN IP4 {address}"));
    format!("{sdp}a={direction}\r\n")
}

/// The ACK of a non-2xx final to the re-INVITE `req` (RFC 3261 §17.1.1.3): its Request-URI,
/// Via branch, Route, From, To, Call-ID and CSeq number, no body. The transaction layer
/// absorbs it.
fn ack_refused(req: &str) -> String {
    let head = req.split("\r\n\r\n").next().unwrap_or_default();
    let mut out = String::new();
    for (i, l) in head.split("\r\n").enumerate() {
        if i == 0 {
            out.push_str(&l.replacen("INVITE", "ACK", 1));
        } else if let Some(c) = l.strip_prefix("CSeq: ") {
            out.push_str(&format!("CSeq: {}", c.replace("INVITE", "ACK")));
        } else if l.starts_with("Content-") {
            continue;
        } else {
            out.push_str(l);
        }
        out.push_str("\r\n");
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// ACK for a 2xx to an in-dialog INVITE with CSeq `cseq`.
fn ack(inv: &str, ok: &Reply, cseq: u32) -> String {
    routed(inv, ok, "ACK", cseq, &[])
}

/// DR-HOLD-1, RFC 3264 §8: the SBC holds with a re-INVITE `a=inactive` and gets
/// `a=inactive` back from the same session (session id kept, version + 1, the same
/// port); resumes with `a=sendrecv`; holds again by UPDATE with `a=sendonly`, which is
/// answered `a=inactive`; and the call ends normally.
#[tokio::test]
async fn dr_hold_1_the_sbc_holds_and_resumes_through_a_record_routing_edge() {
    let d = TestDaemon::start_with(lab_config(|t| t)).await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let (inv, ok) = answered_call(&mut sbc, USER1).await;
    let first = ok.body().to_owned();
    let (id, v1) = sdp_origin(&first);
    let port = sdp_line(&first, "m=audio").to_owned();

    let hold = with_sdp(
        &routed(&inv, &ok, "INVITE", 2, &[]),
        &sbc_offer(2, "inactive", "192.0.2.10"),
    );
    let held = sbc.request(&hold).await;
    assert_eq!(held.status(), 200, "{}", held.text);
    sbc.send(ack(&inv, &ok, 2)).await;
    let body = held.body();
    assert_eq!(sdp_direction(body), "a=inactive", "{body}");
    assert_eq!(sdp_origin(body), (id.clone(), v1 + 1), "{body}");
    assert_eq!(sdp_line(body, "m=audio"), port);

    let resume = with_sdp(
        &routed(&inv, &ok, "INVITE", 3, &[]),
        &sbc_offer(3, "sendrecv", "192.0.2.10"),
    );
    let resumed = sbc.request(&resume).await;
    assert_eq!(resumed.status(), 200, "{}", resumed.text);
    sbc.send(ack(&inv, &ok, 3)).await;
    assert_eq!(sdp_direction(resumed.body()), "a=sendrecv");
    assert_eq!(sdp_origin(resumed.body()), (id.clone(), v1 + 2));

    // The real service understands a=inactive only: a=sendonly is answered a=inactive.
    let update = with_sdp(
        &routed(&inv, &ok, "UPDATE", 4, &[]),
        &sbc_offer(4, "sendonly", "192.0.2.10"),
    );
    let updated = sbc.request(&update).await;
    assert_eq!(updated.status(), 200, "{}", updated.text);
    assert_eq!(sdp_direction(updated.body()), "a=inactive");
    assert_eq!(sdp_origin(updated.body()), (id, v1 + 3));

    let bye = sbc.request(&routed(&inv, &ok, "BYE", 5, &[])).await;
    assert_eq!((bye.status(), bye.cseq_method()), (200, Some("BYE")));
    d.calls_drained().await;
    // DR-CONF: the conformance report notes the a=sendonly hold, with the call.
    let (s, v) = api(&d, "GET", "/api/report?sbc=sbc1.adatum.biz").await;
    assert_eq!(s, 200, "{v}");
    let hold = v["sbcs"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["requirement"] == "DR-HOLD-1")
        .unwrap_or_else(|| panic!("no DR-HOLD-1 finding in {v:#}"))
        .clone();
    assert_eq!(hold["severity"], "nearly");
    assert_eq!(hold["count"], 1);
    assert_eq!(hold["last_call_id"], req_header(&inv, "Call-ID").unwrap());
    assert_eq!(hold["detail"], "offered a=sendonly");
}

/// DR-HOLD-1 bad input: a hold with `c=0.0.0.0` gets 488 with 531052, and a re-offer
/// with only a codec drhub cannot answer gets 488 with 531000; after each, the call is
/// still up on its first answer (the next re-offer's answer is version + 1 of it) and
/// ends with the SBC's BYE.
#[tokio::test]
async fn dr_hold_1_zero_address_hold_and_an_unanswerable_codec_are_488_and_the_call_goes_on() {
    let d = TestDaemon::start_with(lab_config(|t| t)).await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let (inv, ok) = answered_call(&mut sbc, USER1).await;
    let (id, v1) = sdp_origin(ok.body());

    let zero = with_sdp(
        &routed(&inv, &ok, "INVITE", 2, &[]),
        &sbc_offer(2, "sendrecv", "0.0.0.0"),
    );
    let refused = sbc.request(&zero).await;
    assert_eq!(refused.status(), 488, "{}", refused.text);
    assert_eq!(refused.ms_code(), Some(531052), "{}", refused.text);
    // The ACK of a non-2xx is the INVITE's own transaction's: the layer absorbs it.
    sbc.send(ack_refused(&zero)).await;

    let ilbc = sbc_offer(3, "sendrecv", "192.0.2.10")
        .replace("m=audio 40000 RTP/AVP 0 8 101", "m=audio 40000 RTP/AVP 97")
        .replace(
            "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000",
            "a=rtpmap:97 iLBC/8000",
        );
    let other = with_sdp(&routed(&inv, &ok, "INVITE", 3, &[]), &ilbc);
    let refused = sbc.request(&other).await;
    assert_eq!(refused.status(), 488, "{}", refused.text);
    assert_eq!(refused.ms_code(), Some(531000), "{}", refused.text);
    sbc.send(ack_refused(&other)).await;

    // The call kept its media: the same offer as at first is answered as at first, one
    // version on (RFC 3264 §8: the version moves once per change).
    let again = with_sdp(
        &routed(&inv, &ok, "INVITE", 4, &[]),
        &sbc_offer(4, "inactive", "192.0.2.10"),
    );
    let held = sbc.request(&again).await;
    assert_eq!(held.status(), 200, "{}", held.text);
    sbc.send(ack(&inv, &ok, 4)).await;
    assert_eq!(sdp_origin(held.body()), (id, v1 + 1));

    let bye = sbc.request(&routed(&inv, &ok, "BYE", 5, &[])).await;
    assert_eq!((bye.status(), bye.cseq_method()), (200, Some("BYE")));
    d.calls_drained().await;
}

/// The Record-Route of a record-routing SBC of Contoso (a bypass trunk).
const CONTOSO_RR: [&str; 2] = [
    "Record-Route: <sip:sbc2.contoso.com:5061;transport=tls;lr;r2=on>",
    "Record-Route: <sip:10.0.0.7:5060;lr;r2=on>",
];

/// User2 of Contoso: a bypass trunk, clients with their own media.
const USER2: &str = "+14255550190";

async fn api(d: &TestDaemon, method: &str, path: &str) -> (u16, serde_json::Value) {
    drhub::api::request(d.addr("api"), method, path, None, None)
        .await
        .expect("API reachable")
}

/// Waits until `GET /api/calls/{id}` shows `want`.
async fn state_becomes(d: &TestDaemon, call_id: &str, want: &str) {
    let mut state = String::new();
    for _ in 0..250 {
        let (_, v) = api(d, "GET", &format!("/api/calls/{call_id}")).await;
        state = v["state"].as_str().unwrap_or_default().to_owned();
        if state == want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("call {call_id} is {state}, not {want}");
}

/// Contoso's record-routing SBC calls User2, whose bypass desktop answers; the SBC ACKs
/// and the API shows the call answered: the SBC, its INVITE, the 200 and the Call-ID.
async fn bypass_call_up(d: &TestDaemon) -> (TlsSbc, String, Reply, String) {
    let mut sbc = connect_as(d, "star.contoso.com").await.unwrap();
    let inv = invite("sbc2.contoso.com", USER2, &CONTOSO_RR);
    sbc.send(&inv).await;
    let (ok, _) = sbc.until(200).await;
    sbc.send(routed(&inv, &ok, "ACK", 1, &[])).await;
    let call_id = req_header(&inv, "Call-ID").unwrap().to_owned();
    state_becomes(d, &call_id, "answered").await;
    (sbc, inv, ok, call_id)
}

/// The SBC's 200 to drhub's re-INVITE `req`, with `sdp`.
fn ok_with_sdp(req: &Reply, sdp: &str) -> String {
    response_tagged(&req.text, 200, "OK", "unused", &[], Some(sdp))
}

/// DR-HOLD-2 on a bypass call: the Teams user holds through the API and the SBC gets a
/// re-INVITE from the client's own session (same `o=` session id, version one on,
/// `a=inactive`) by the dialog's route set (Request-URI the SBC's Contact, Route its
/// Record-Route); after the SBC's 200 and drhub's ACK the call shows held. Resume
/// offers `a=sendrecv`, version one on again.
#[tokio::test]
async fn dr_hold_2_teams_hold_on_a_bypass_call_reinvites_the_sbc() {
    let d = TestDaemon::start_with(lab_config(|t| fast(t, 0.05))).await;
    let (mut sbc, inv, ok, call_id) = bypass_call_up(&d).await;
    let (id, v1) = sdp_origin(ok.body());

    let (s, v) = api(&d, "POST", &format!("/api/calls/{call_id}/hold")).await;
    assert_eq!(s, 202, "{v}");
    let hold = sbc.until_request("INVITE").await;
    assert_eq!(
        hold.request_uri(),
        "sip:+17168712781@sbc2.contoso.com:5061;transport=tls"
    );
    let want: Vec<&str> = CONTOSO_RR
        .iter()
        .map(|l| l.trim_start_matches("Record-Route: "))
        .collect();
    assert_eq!(hold.headers("Route"), want, "{}", hold.text);
    assert_eq!(sdp_direction(hold.body()), "a=inactive", "{}", hold.text);
    assert_eq!(sdp_origin(hold.body()), (id.clone(), v1 + 1));
    sbc.send(ok_with_sdp(&hold, &sbc_offer(2, "inactive", "192.0.2.10")))
        .await;
    let ack = sbc.until_request("ACK").await;
    assert_eq!(ack.cseq_method(), Some("ACK"));
    state_becomes(&d, &call_id, "held").await;

    let (s, _) = api(&d, "POST", &format!("/api/calls/{call_id}/resume")).await;
    assert_eq!(s, 202);
    let resume = sbc.until_request("INVITE").await;
    assert_eq!(sdp_direction(resume.body()), "a=sendrecv");
    assert_eq!(sdp_origin(resume.body()), (id, v1 + 2));
    sbc.send(ok_with_sdp(
        &resume,
        &sbc_offer(3, "sendrecv", "192.0.2.10"),
    ))
    .await;
    sbc.until_request("ACK").await;
    state_becomes(&d, &call_id, "answered").await;

    let bye = sbc.request(&routed(&inv, &ok, "BYE", 2, &[])).await;
    assert_eq!((bye.status(), bye.cseq_method()), (200, Some("BYE")));
    d.calls_drained().await;
}

/// DR-HOLD-2 on a call through the media processor: the media processor plays music on
/// hold and the SBC sees nothing; the API shows the call held, then answered. Bad input:
/// a hold for no such call is 404, and a hold before the call is answered is 409.
#[tokio::test]
async fn dr_hold_2_teams_hold_through_the_media_processor_sends_the_sbc_nothing() {
    let d = TestDaemon::start_with(lab_config(|t| t)).await;
    let (s, v) = api(&d, "POST", "/api/calls/nosuchcall/hold").await;
    assert_eq!(s, 404, "{v}");
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", USER1, &RR);
    let call_id = req_header(&inv, "Call-ID").unwrap().to_owned();
    sbc.send(&inv).await;
    sbc.until(180).await;
    let (s, v) = api(&d, "POST", &format!("/api/calls/{call_id}/hold")).await;
    assert_eq!(s, 409, "{v}");
    let (ok, _) = sbc.until(200).await;
    sbc.send(routed(&inv, &ok, "ACK", 1, &[])).await;
    state_becomes(&d, &call_id, "answered").await;

    let (s, _) = api(&d, "POST", &format!("/api/calls/{call_id}/hold")).await;
    assert_eq!(s, 202);
    state_becomes(&d, &call_id, "held").await;
    assert!(
        sbc.try_recv(std::time::Duration::from_millis(300))
            .await
            .is_none(),
        "the SBC must see nothing"
    );
    let (s, _) = api(&d, "POST", &format!("/api/calls/{call_id}/resume")).await;
    assert_eq!(s, 202);
    state_becomes(&d, &call_id, "answered").await;

    let bye = sbc.request(&routed(&inv, &ok, "BYE", 2, &[])).await;
    assert_eq!((bye.status(), bye.cseq_method()), (200, Some("BYE")));
    d.calls_drained().await;
}

/// DR-HOLD-2 bad input: the SBC refuses the hold re-INVITE (488): drhub ACKs it (its
/// transaction layer), the call stays answered, and a later hold is sent again.
#[tokio::test]
async fn dr_hold_2_an_sbc_refusing_the_hold_leaves_the_call_answered() {
    let d = TestDaemon::start_with(lab_config(|t| fast(t, 0.05))).await;
    let (mut sbc, inv, ok, call_id) = bypass_call_up(&d).await;

    api(&d, "POST", &format!("/api/calls/{call_id}/hold")).await;
    let hold = sbc.until_request("INVITE").await;
    sbc.send(response_to(&hold.text, 488, "Not Acceptable Here", &[]))
        .await;
    let ack = sbc.until_request("ACK").await;
    assert_eq!(req_header(&ack.text, "Via"), req_header(&hold.text, "Via"));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    state_becomes(&d, &call_id, "answered").await;

    // Not held, so a hold is offered again, one version on from the first answer still.
    api(&d, "POST", &format!("/api/calls/{call_id}/hold")).await;
    let again = sbc.until_request("INVITE").await;
    assert_eq!(sdp_origin(again.body()), sdp_origin(hold.body()));
    sbc.send(ok_with_sdp(&again, &sbc_offer(2, "inactive", "192.0.2.10")))
        .await;
    sbc.until_request("ACK").await;
    state_becomes(&d, &call_id, "held").await;

    let bye = sbc.request(&routed(&inv, &ok, "BYE", 2, &[])).await;
    assert_eq!(bye.status(), 200, "{}", bye.text);
    d.calls_drained().await;
}

/// DR-HOLD-2 from a scripted client: User2's desktop (bypass) holds 6 s after answering
/// (0.3 s at the test's speed) and resumes 0.3 s later; the SBC gets the re-INVITEs
/// (`a=inactive`, then `a=sendrecv`) without anyone using the API.
#[tokio::test]
async fn dr_hold_2_a_scripted_client_holds_and_resumes() {
    let d = TestDaemon::start_with(lab_config(|t| {
        // The lab config's commented example, switched on.
        let t = t.replacen(
            "    # hold_after_seconds = 20\n    # hold_seconds = 10\n",
            "    hold_after_seconds = 6\n    hold_seconds = 0.3\n",
            1,
        );
        // `fast` scales the `*_after_seconds` keys only: hold_seconds stays 0.3.
        fast(t, 0.05)
    }))
    .await;
    let mut sbc = connect_as(&d, "star.contoso.com").await.unwrap();
    let inv = invite("sbc2.contoso.com", USER2, &CONTOSO_RR);
    sbc.send(&inv).await;
    let (ok, _) = sbc.until(200).await;
    sbc.send(routed(&inv, &ok, "ACK", 1, &[])).await;
    let (id, v1) = sdp_origin(ok.body());

    let hold = sbc.until_request("INVITE").await;
    assert_eq!(sdp_direction(hold.body()), "a=inactive", "{}", hold.text);
    assert_eq!(sdp_origin(hold.body()), (id.clone(), v1 + 1));
    sbc.send(ok_with_sdp(&hold, &sbc_offer(2, "inactive", "192.0.2.10")))
        .await;
    sbc.until_request("ACK").await;

    let resume = sbc.until_request("INVITE").await;
    assert_eq!(
        sdp_direction(resume.body()),
        "a=sendrecv",
        "{}",
        resume.text
    );
    assert_eq!(sdp_origin(resume.body()), (id, v1 + 2));
    sbc.send(ok_with_sdp(
        &resume,
        &sbc_offer(3, "sendrecv", "192.0.2.10"),
    ))
    .await;
    sbc.until_request("ACK").await;

    let bye = sbc.request(&routed(&inv, &ok, "BYE", 2, &[])).await;
    assert_eq!(bye.status(), 200, "{}", bye.text);
    d.calls_drained().await;
}

/// Glare (RFC 3261 §14.1, §14.2) on a bypass call, both ways: the SBC's re-INVITE that
/// crosses drhub's hold re-INVITE gets 491; and when the SBC answers drhub's hold 491,
/// drhub sends it again after a random wait of at most 2 s (the SBC made the Call-ID),
/// with a higher CSeq and the same offer.
#[tokio::test]
async fn dr_hold_2_glare_both_ways_491_and_the_back_off() {
    let d = TestDaemon::start_with(lab_config(|t| fast(t, 0.05))).await;
    let (mut sbc, inv, ok, call_id) = bypass_call_up(&d).await;

    api(&d, "POST", &format!("/api/calls/{call_id}/hold")).await;
    let hold = sbc.until_request("INVITE").await;
    // The SBC's own re-INVITE crosses it: 491 (and the SBC ACKs the 491).
    let crossing = with_sdp(
        &routed(&inv, &ok, "INVITE", 2, &[]),
        &sbc_offer(2, "inactive", "192.0.2.10"),
    );
    let refused = sbc.request(&crossing).await;
    assert_eq!(refused.status(), 491, "{}", refused.text);
    sbc.send(ack_refused(&crossing)).await;
    // The SBC refuses drhub's with 491 too: drhub tries again within 2 s.
    sbc.send(response_to(&hold.text, 491, "Request Pending", &[]))
        .await;
    sbc.until_request("ACK").await;
    let t0 = std::time::Instant::now();
    let again = sbc.until_request("INVITE").await;
    assert!(t0.elapsed() < std::time::Duration::from_millis(2500));
    let cseq = |r: &Reply| -> u32 {
        req_header(&r.text, "CSeq")
            .and_then(|c| c.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap()
    };
    assert!(cseq(&again) > cseq(&hold), "{}", again.text);
    assert_eq!(sdp_origin(again.body()), sdp_origin(hold.body()));
    assert_eq!(sdp_direction(again.body()), "a=inactive");
    sbc.send(ok_with_sdp(&again, &sbc_offer(3, "inactive", "192.0.2.10")))
        .await;
    sbc.until_request("ACK").await;
    state_becomes(&d, &call_id, "held").await;

    let bye = sbc.request(&routed(&inv, &ok, "BYE", 3, &[])).await;
    assert_eq!(bye.status(), 200, "{}", bye.text);
    d.calls_drained().await;
}

/// DR-MEDIA-3 with DR-HOLD-2: a registered softphone answers User1's call from a
/// non-bypass trunk. It got the media processor's offer, not the SBC's; when it holds
/// (re-INVITE `a=sendonly`) the media processor answers `a=recvonly` (RFC 3264 §6.1)
/// from that offer's session (version one on), the call shows held and the SBC sees
/// nothing (music on hold); `a=sendrecv` resumes. An offer the media processor cannot
/// answer gets 488 and changes nothing.
#[tokio::test]
async fn dr_hold_2_a_softphone_holds_through_the_media_processor() {
    // User1's virtual clients ring but never answer: the phone decides.
    let d = TestDaemon::start_with(lab_config(|t| {
        fast(t, 0.05)
            .replace("answer_after_seconds = 0.1\n", "\n")
            .replace("answer_after_seconds = 0.125\n", "\n")
    }))
    .await;
    let phone = support::phone::Phone::new(d.addr("endpoints")).await;
    assert_eq!(phone.register_with("user1-lab-password").await, 200);
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", USER1, &RR);
    let call_id = req_header(&inv, "Call-ID").unwrap().to_owned();
    sbc.send(&inv).await;
    let to_phone = phone.recv_request("INVITE").await;
    let offer = to_phone.body().to_owned();
    assert!(
        offer.contains("a=ice-lite"),
        "the media processor's: {offer}"
    );
    assert!(!offer.contains("192.0.2.10"), "not the SBC's: {offer}");
    let phone_sdp = |v: u32, dir: &str| {
        format!("v=0\r\no=- 7 {v} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\na={dir}\r\n")
    };
    phone
        .answer(&to_phone, 200, "OK", "ph1", Some(&phone_sdp(1, "sendrecv")))
        .await;
    phone.recv_request("ACK").await;
    let (ok, _) = sbc.until(200).await;
    sbc.send(routed(&inv, &ok, "ACK", 1, &[])).await;
    state_becomes(&d, &call_id, "answered").await;

    let via = format!("SIP/2.0/UDP {}", phone.addr());
    let (id, v1) = sdp_origin(&offer);
    let hold = with_sdp(
        &uas_request_via(&to_phone.text, "ph1", "INVITE", 1, &via),
        &phone_sdp(2, "sendonly"),
    );
    phone.send(&hold).await;
    let held = phone.recv().await;
    assert_eq!(held.status(), 200, "{}", held.text);
    assert_eq!(sdp_direction(held.body()), "a=recvonly", "{}", held.body());
    assert_eq!(sdp_origin(held.body()), (id.clone(), v1 + 1));
    phone
        .send(&uas_request_via(&to_phone.text, "ph1", "ACK", 1, &via))
        .await;
    state_becomes(&d, &call_id, "held").await;
    assert!(
        sbc.try_recv(std::time::Duration::from_millis(300))
            .await
            .is_none(),
        "the SBC sees nothing of a hold through the media processor"
    );

    let ilbc = phone_sdp(3, "sendrecv")
        .replace("RTP/SAVP 0", "RTP/SAVP 97")
        .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:97 iLBC/8000");
    let bad = with_sdp(
        &uas_request_via(&to_phone.text, "ph1", "INVITE", 2, &via),
        &ilbc,
    );
    phone.send(&bad).await;
    let refused = phone.recv().await;
    assert_eq!(refused.status(), 488, "{}", refused.text);
    phone.send(&ack_refused(&bad)).await;

    let resume = with_sdp(
        &uas_request_via(&to_phone.text, "ph1", "INVITE", 3, &via),
        &phone_sdp(4, "sendrecv"),
    );
    phone.send(&resume).await;
    let back = phone.recv().await;
    assert_eq!(back.status(), 200, "{}", back.text);
    assert_eq!(sdp_direction(back.body()), "a=sendrecv");
    assert_eq!(sdp_origin(back.body()), (id, v1 + 2));
    // RFC 3261 §13.3.1.4 over UDP: the phone holds its ACK back (a lost ACK, or a lost
    // 200 to it): drhub sends the same 200 again (T1, then 2*T1 ...) until the ACK.
    let again = phone.recv().await;
    assert_eq!(again.text, back.text, "the 200 retransmitted as it was");
    phone
        .send(&uas_request_via(&to_phone.text, "ph1", "ACK", 3, &via))
        .await;
    state_becomes(&d, &call_id, "answered").await;

    let bye = sbc.request(&routed(&inv, &ok, "BYE", 2, &[])).await;
    assert_eq!(bye.status(), 200, "{}", bye.text);
    let bye = phone.recv_request("BYE").await;
    phone.answer(&bye, 200, "OK", "ph1", None).await;
    d.calls_drained().await;
}

/// RFC 3264 §8 across the B2BUA on a media-bypass call to a registered softphone (sbc1
/// made a bypass trunk): the SBC's hold re-INVITE goes on to the phone in its dialog
/// with the SBC's SDP, the phone's answer comes back in the 200 and each 2xx is ACKed on
/// its own leg; the phone's resume re-INVITE goes on to the SBC the same way; a refusal
/// on the far side is passed back (488), and the call goes on.
#[tokio::test]
async fn dr_hold_1_offers_are_relayed_between_the_sbc_and_a_bypass_softphone() {
    let d = TestDaemon::start_with(lab_config(|t| {
        fast(t, 0.05)
            .replacen("media_bypass = false", "media_bypass = true", 1)
            .replace("answer_after_seconds = 0.1\n", "\n")
            .replace("answer_after_seconds = 0.125\n", "\n")
    }))
    .await;
    let phone = support::phone::Phone::new(d.addr("endpoints")).await;
    assert_eq!(phone.register_with("user1-lab-password").await, 200);
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", USER1, &RR);
    sbc.send(&inv).await;
    let to_phone = phone.recv_request("INVITE").await;
    // Bypass: the phone gets the SBC's own offer.
    assert!(
        to_phone.body().contains("192.0.2.10"),
        "{}",
        to_phone.body()
    );
    let phone_sdp = |v: u32, dir: &str| {
        format!("v=0\r\no=- 7 {v} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={dir}\r\n")
    };
    phone
        .answer(&to_phone, 200, "OK", "ph1", Some(&phone_sdp(1, "sendrecv")))
        .await;
    phone.recv_request("ACK").await;
    let (ok, _) = sbc.until(200).await;
    assert!(
        ok.body().contains("o=- 7 1 "),
        "the phone's SDP: {}",
        ok.body()
    );
    sbc.send(routed(&inv, &ok, "ACK", 1, &[])).await;

    // The SBC holds: the phone gets the offer, its answer reaches the SBC.
    let hold = with_sdp(
        &routed(&inv, &ok, "INVITE", 2, &[]),
        &sbc_offer(2, "sendonly", "192.0.2.10"),
    );
    sbc.send(&hold).await;
    let relayed = phone.recv_request("INVITE").await;
    assert_eq!(
        sdp_direction(relayed.body()),
        "a=sendonly",
        "{}",
        relayed.text
    );
    assert_eq!(relayed.header("Call-ID"), to_phone.header("Call-ID"));
    phone
        .answer(&relayed, 200, "OK", "ph1", Some(&phone_sdp(2, "recvonly")))
        .await;
    let phone_ack = phone.recv_request("ACK").await;
    assert!(
        phone_ack.header("CSeq").unwrap().ends_with(" ACK"),
        "{}",
        phone_ack.text
    );
    let held = sbc.until(200).await.0;
    assert_eq!(held.cseq_method(), Some("INVITE"));
    assert_eq!(sdp_direction(held.body()), "a=recvonly", "{}", held.text);
    sbc.send(ack(&inv, &ok, 2)).await;

    // The phone resumes: its offer goes to the SBC, the SBC's answer back to it.
    let via = format!("SIP/2.0/UDP {}", phone.addr());
    let resume = with_sdp(
        &uas_request_via(&to_phone.text, "ph1", "INVITE", 1, &via),
        &phone_sdp(3, "sendrecv"),
    );
    phone.send(&resume).await;
    let to_sbc = sbc.until_request("INVITE").await;
    assert!(to_sbc.body().contains("o=- 7 3 "), "{}", to_sbc.text);
    sbc.send(response_tagged(
        &to_sbc.text,
        200,
        "OK",
        "unused",
        &[],
        Some(&sbc_offer(3, "sendrecv", "192.0.2.10")),
    ))
    .await;
    sbc.until_request("ACK").await;
    let back = phone.recv().await;
    assert_eq!(back.status(), 200, "{}", back.text);
    assert!(
        back.body().contains("o=- 1 3 "),
        "the SBC's answer: {}",
        back.body()
    );
    phone
        .send(&uas_request_via(&to_phone.text, "ph1", "ACK", 1, &via))
        .await;

    // The phone refuses the SBC's next offer: the SBC gets the 488, the call goes on.
    let other = with_sdp(
        &routed(&inv, &ok, "INVITE", 3, &[]),
        &sbc_offer(4, "inactive", "192.0.2.10"),
    );
    sbc.send(&other).await;
    let relayed = phone.recv_request("INVITE").await;
    phone
        .answer(&relayed, 488, "Not Acceptable Here", "ph1", None)
        .await;
    let refused = sbc.until(488).await.0;
    assert_eq!(refused.cseq_method(), Some("INVITE"));
    sbc.send(ack_refused(&other)).await;

    // The SBC re-offers and hangs up before the phone answers (RFC 3261 §15.1.2): the
    // pending re-INVITE gets 487, the BYE 200, and the phone its BYE.
    let last = with_sdp(
        &routed(&inv, &ok, "INVITE", 4, &[]),
        &sbc_offer(5, "sendrecv", "192.0.2.10"),
    );
    sbc.send(&last).await;
    let _unanswered = phone.recv_request("INVITE").await;
    sbc.send(routed(&inv, &ok, "BYE", 5, &[])).await;
    let mut statuses = Vec::new();
    while statuses.len() < 2 {
        let r = sbc.recv().await;
        if r.is_response() && r.status() >= 200 {
            statuses.push((r.cseq_method().unwrap_or("").to_owned(), r.status()));
        }
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [("BYE".to_owned(), 200), ("INVITE".to_owned(), 487)],
        "the pending re-INVITE ends with the dialog"
    );
    sbc.send(ack_refused(&last)).await;
    let bye = phone.recv_request("BYE").await;
    phone.answer(&bye, 200, "OK", "ph1", None).await;
    d.calls_drained().await;
}
