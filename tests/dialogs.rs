//! Black-box: dialogs on every leg (DR-NH-1..5, DR-TLS-4). A record-routing SBC completes
//! calls by its route set; the proxy's own requests follow the route set and reach an SBC
//! that reconnected, or one it has to connect to; nobody but the call's own peer can end
//! or change a call.

mod support;

use std::time::Duration;

use support::phone::Phone;
use support::*;

const USER1: &str = "+18338006777";
/// A lab user whose desktop answers and then hangs up after 0.5 s (Teams side BYE).
const HANGUP: &str = "+18338006790";

/// The lab config, scripts 20 times faster, with a user whose client hangs up.
fn config(edit: impl FnOnce(String) -> String) -> drhub::config::Config {
    lab_config(|t| {
        let t = fast(t, 0.05).replace(
            "  # Always busy: the call fails with 486 (DR-FORK-7).",
            "  [[tenant.user]]\n  sip_address = \"hangup@adatum.biz\"\n  display_name = \"Hangs Up\"\n  line_uri = \"tel:+18338006790\"\n\n    [[tenant.user.endpoint]]\n    name = \"desktop\"\n    ring_after_seconds = 0.01\n    answer_after_seconds = 0.05\n    hangup_after_seconds = 0.5\n\n  # Always busy: the call fails with 486 (DR-FORK-7).",
        );
        edit(t)
    })
}

#[tokio::test]
async fn dr_nh_4_a_record_routing_sbc_completes_a_call_by_its_route_set() {
    let d = TestDaemon::start_with(config(|t| t)).await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", USER1, &RR);
    sbc.send(&inv).await;
    let (ok, progress) = sbc.until(200).await;
    // RFC 3261 §12.1.1: every dialog-creating response copies the Record-Route, in order.
    let want: Vec<&str> = RR
        .iter()
        .map(|l| l.trim_start_matches("Record-Route: "))
        .collect();
    for r in progress
        .iter()
        .filter(|r| r.to_tag().is_some())
        .chain([&ok])
    {
        assert_eq!(r.headers("Record-Route"), want, "{}", r.text);
    }
    let trying = &progress[0];
    assert_eq!(trying.status(), 100);
    assert!(trying.headers("Record-Route").is_empty(), "{}", trying.text);
    // The ACK and the BYE come by the route set: Request-URI the proxy's Contact, one
    // of them with a Route naming the proxy left in (an SBC's preloaded route).
    sbc.send(routed(&inv, &ok, "ACK", 1, &[])).await;
    let route = "Route: <sip:sip.pstnhub.microsoft.com:5061;transport=tls;lr>";
    let bye = sbc.request(&routed(&inv, &ok, "BYE", 2, &[route])).await;
    assert_eq!(
        (bye.status(), bye.cseq_method()),
        (200, Some("BYE")),
        "{}",
        bye.text
    );
    d.calls_drained().await;
}

#[tokio::test]
async fn dr_nh_1_dr_nh_4_the_proxys_bye_follows_the_route_set() {
    let d = TestDaemon::start_with(config(|t| t)).await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let (_, _) = answered_call(&mut sbc, HANGUP).await;
    let bye = sbc.until_request("BYE").await;
    // §12.2.1.1: Request-URI the remote target (the INVITE's Contact), the route set as
    // Route headers in order; DR-NH-1: it went to the top Record-Route's FQDN.
    assert_eq!(
        bye.request_uri(),
        "sip:+17168712781@sbc1.adatum.biz:5061;transport=tls",
        "{}",
        bye.text
    );
    assert_eq!(
        bye.headers("Route"),
        RR.iter()
            .map(|l| l.trim_start_matches("Record-Route: "))
            .collect::<Vec<_>>(),
        "{}",
        bye.text
    );
    assert!(
        bye.header("ms-diagnostics").is_none(),
        "a hang-up, not an error: {}",
        bye.text
    );
    sbc.send(response_to(&bye.text, 200, "OK", &[])).await;
    d.calls_drained().await;
}

#[tokio::test]
async fn dr_nh_5_the_proxys_bye_reaches_an_sbc_that_reconnected() {
    let d = TestDaemon::start_with(config(|t| t)).await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    answered_call(&mut sbc, HANGUP).await;
    // The SBC restarts its TLS connection before the Teams user hangs up.
    sbc.close().await;
    let mut again = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let bye = again.until_request("BYE").await;
    assert!(
        bye.header("Call-ID").unwrap().starts_with("invite-"),
        "{}",
        bye.text
    );
    again.send(response_to(&bye.text, 200, "OK", &[])).await;
    d.calls_drained().await;
}

#[tokio::test]
async fn dr_tls_4_dr_nh_5_with_no_connection_left_the_proxy_connects_to_the_sbc_for_its_bye() {
    let listener = SbcListener::bind("sbc1.adatum.biz", "sbc1.adatum.biz").await;
    let d = TestDaemon::start_with(config(|t| {
        with_trunk_address(t, "sbc1.adatum.biz", listener.addr)
    }))
    .await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    answered_call(&mut sbc, HANGUP).await;
    sbc.close().await;
    // DR-TLS-4: a new TLS connection from the proxy, presenting the proxy certificate.
    let (mut out, client_names) = listener.accept().await;
    assert!(
        client_names
            .iter()
            .any(|n| n == "sip.pstnhub.microsoft.com"),
        "{client_names:?}"
    );
    let bye = out.until_request("BYE").await;
    assert!(
        bye.text
            .contains("Route: <sip:sbc1.adatum.biz:5061;transport=tls;lr;r2=on>"),
        "{}",
        bye.text
    );
    out.send(response_to(&bye.text, 200, "OK", &[])).await;
    d.calls_drained().await;
}

#[tokio::test]
async fn dr_nh_5_an_sbc_whose_certificate_does_not_match_its_trunk_504_569008_and_the_call_ends() {
    // Whoever listens at sbc1's address presents sbc9's certificate.
    let listener = SbcListener::bind("sbc9.adatum.biz", "sbc9.adatum.biz").await;
    let d = TestDaemon::start_with(config(|t| {
        with_trunk_address(t, "sbc1.adatum.biz", listener.addr)
    }))
    .await;
    let handshakes = listener.serve_handshakes();
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let (inv, _) = answered_call(&mut sbc, HANGUP).await;
    sbc.close().await;
    // The proxy's handshake fails on the name; the call still ends, cleanly.
    d.calls_drained().await;
    let call_id = req_header(&inv, "Call-ID").unwrap();
    let record = d
        .hub
        .calls
        .recent()
        .into_iter()
        .find(|r| &*r.call_id == call_id)
        .expect("the call is remembered");
    let outcome = record.outcome.expect("an outcome");
    assert_eq!(outcome.code, Some(569008), "{outcome:?}");
    assert!(outcome.reason.contains("sbc1.adatum.biz"), "{outcome:?}");
    handshakes.abort();
}

/// DR-NH-4, DR-NH-5 bad input: a BYE, re-INVITE or CANCEL for an SBC's call from anyone
/// but that SBC gets 481, and the call goes on.
#[tokio::test]
async fn dr_nh_4_nobody_but_the_calls_sbc_can_end_or_change_it() {
    let d = TestDaemon::start_with(config(|t| {
        t.replace("enabled = false\n", "enabled = true\n")
            .replace("allow_insecure = false", "allow_insecure = true")
    }))
    .await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let (inv, ok) = answered_call(&mut sbc, USER1).await;
    let tag = ok.to_tag().unwrap();
    let bye = in_dialog(&inv, "BYE", Some(&tag), 2);
    let reinvite = in_dialog(&inv, "INVITE", Some(&tag), 3);
    // Another tenant's SBC (its own certificate, *.contoso.com).
    let mut other = connect_as(&d, "star.contoso.com").await.unwrap();
    for req in [&bye, &reinvite] {
        let r = other.request(req).await;
        assert_eq!(r.status(), 481, "another tenant's SBC: {}", r.text);
    }
    // The plain-TCP lab listener (no certificate at all).
    let mut plain = connect_tcp(d.addr("lab-tcp"), "sbc1.adatum.biz").await;
    let r = plain.request(&bye).await;
    assert_eq!(r.status(), 481, "plain TCP: {}", r.text);
    // An unauthenticated UDP client of the endpoint listener.
    let phone = Phone::new(d.addr("endpoints")).await;
    phone.send(&bye.replace("SIP/2.0/TLS", "SIP/2.0/UDP")).await;
    let r = phone.recv().await;
    assert_eq!(r.status(), 481, "endpoint UDP: {}", r.text);
    // The right SBC with a wrong To tag.
    let r = sbc
        .request(&in_dialog(&inv, "BYE", Some("not-ours"), 4))
        .await;
    assert_eq!(r.status(), 481, "wrong To tag: {}", r.text);
    // The call is untouched: its own SBC still ends it.
    assert_eq!(d.hub.calls.len(), 1);
    let r = sbc.request(&in_dialog(&inv, "BYE", Some(&tag), 5)).await;
    assert_eq!(
        (r.status(), r.cseq_method()),
        (200, Some("BYE")),
        "{}",
        r.text
    );
    d.calls_drained().await;
}

#[tokio::test]
async fn dr_nh_4_a_cancel_from_another_sbc_is_481_and_the_call_rings_on() {
    let d = TestDaemon::start_with(lab_config(|t| fast(t, 0.5))).await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", USER1, &[]);
    sbc.send(&inv).await;
    sbc.until(180).await;
    let mut other = connect_as(&d, "star.contoso.com").await.unwrap();
    let r = other.request(&in_dialog(&inv, "CANCEL", None, 1)).await;
    assert_eq!(
        (r.status(), r.cseq_method()),
        (481, Some("CANCEL")),
        "{}",
        r.text
    );
    // The call is answered as scripted.
    let (ok, _) = sbc.until(200).await;
    sbc.ack_and_bye(&inv, &ok.to_tag().unwrap()).await;
    d.calls_drained().await;
}

#[tokio::test]
async fn dr_tls_5_the_plain_tcp_listener_names_tcp_in_contact_and_via() {
    let d = TestDaemon::start_with(config(|t| {
        t.replace("enabled = false\n", "enabled = true\n")
            .replace("allow_insecure = false", "allow_insecure = true")
    }))
    .await;
    let mut sbc = connect_tcp(d.addr("lab-tcp"), "sbc1.adatum.biz").await;
    let inv = invite("sbc1.adatum.biz", HANGUP, &[]).replace("SIP/2.0/TLS", "SIP/2.0/TCP");
    sbc.send(&inv).await;
    let (ok, _) = sbc.until(200).await;
    let contact = ok.header("Contact").unwrap();
    assert!(contact.ends_with(";transport=tcp>"), "{contact}");
    sbc.send(in_dialog(&inv, "ACK", ok.to_tag().as_deref(), 1))
        .await;
    let bye = sbc.until_request("BYE").await;
    assert!(
        bye.header("Via")
            .unwrap()
            .starts_with("SIP/2.0/TCP sip.pstnhub.microsoft.com:"),
        "{}",
        bye.text
    );
    sbc.send(response_to(&bye.text, 200, "OK", &[])).await;
    d.calls_drained().await;
}

#[tokio::test]
async fn dr_nh_5_an_orphaned_bypass_call_is_ended_when_its_sbc_does_not_come_back() {
    // A bypass trunk (no session timer) whose SBC vanishes without BYE.
    let d = TestDaemon::start_with(config(|t| {
        let t = t
            .replace("media_bypass = false", "media_bypass = true")
            .replace("hangup_after_seconds = 0.5", "hangup_after_seconds = 600");
        let t = set_key(&t, "calls", "orphan_timeout_seconds", "0.3");
        set_key(&t, "limits", "connect_timeout_seconds", "0.5")
    }))
    .await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    answered_call(&mut sbc, HANGUP).await;
    assert_eq!(d.hub.calls.len(), 1);
    sbc.close().await;
    // No address to reconnect to (sbc1.adatum.biz does not resolve in the lab): the
    // proxy's probe cannot be delivered, so the call ends after the orphan timeout.
    tokio::time::timeout(Duration::from_secs(5), d.calls_drained())
        .await
        .expect("the orphaned call ends");
}
