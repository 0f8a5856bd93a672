//! Black-box: the control API over HTTP (issue 8) and the emulated datacenters' fault
//! modes it sets (DR-DC-1), seen from an SBC over real sockets.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use tokio::net::TcpStream;

use drhub::api::request;
use support::*;

async fn get(d: &TestDaemon, path: &str, token: Option<&str>) -> (u16, Value) {
    request(d.addr("api"), "GET", path, token, None)
        .await
        .expect("API reachable")
}

async fn post(d: &TestDaemon, path: &str, body: Value) -> (u16, Value) {
    request(d.addr("api"), "POST", path, None, Some(&body))
        .await
        .expect("API reachable")
}

async fn delete(d: &TestDaemon, path: &str) -> (u16, Value) {
    request(d.addr("api"), "DELETE", path, None, None)
        .await
        .expect("API reachable")
}

async fn set_mode(d: &TestDaemon, dc: &str, body: Value) {
    let (status, v) = post(d, &format!("/api/datacenters/{dc}"), body).await;
    assert_eq!(status, 200, "{v}");
}

/// An SBC up on the `sip` datacenter: its OPTIONS answered, so health knows it.
async fn sbc_up(d: &TestDaemon) -> TlsSbc {
    let mut sbc = connect_as(d, "sbc1.adatum.biz").await.unwrap();
    let r = sbc.options().await;
    assert_eq!(r.status(), 200, "{}", r.text);
    sbc
}

/// DR-DC-2: the status shows the listeners with their datacenter mode, and per SBC its
/// health and the datacenters it is connected to.
#[tokio::test]
async fn dr_dc_2_status_shows_listeners_and_the_sbc_connected_to_its_datacenter() {
    let d = TestDaemon::start().await;
    let _sbc = sbc_up(&d).await;
    let (status, v) = get(&d, "/api/status", None).await;
    assert_eq!(status, 200, "{v}");
    let sip = v["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "sip")
        .expect("listener sip");
    assert_eq!(sip["transport"], "tls");
    assert_eq!(sip["address"], d.tls_addr().to_string());
    assert_eq!(sip["datacenter"]["mode"], "normal");
    let sbc = v["sbcs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["fqdn"] == "sbc1.adatum.biz")
        .expect("sbc1 listed");
    assert_eq!(sbc["tenant"], "adatum");
    assert_eq!(sbc["datacenters"], json!(["sip"]), "{sbc}");
    assert_eq!(sbc["connections"][0]["direction"], "inbound");
    assert_eq!(sbc["options"]["received"], 1, "{sbc}");
    assert_eq!(v["calls"]["up"], 0);
    let (status, v) = get(&d, "/api/calls", None).await;
    assert_eq!(status, 200);
    assert_eq!(v["calls"], json!([]));
}

/// Errors are JSON with a status and a message; nothing changes.
#[tokio::test]
async fn api_errors_are_json_and_change_nothing() {
    let d = TestDaemon::start().await;
    let (status, v) = get(&d, "/api/nothing", None).await;
    assert_eq!((status, v["status"].as_u64()), (404, Some(404)), "{v}");
    assert!(v["error"].as_str().unwrap().contains("/api/nothing"));
    let (status, v) = post(&d, "/api/datacenters/sip9", json!({"mode": "busy"})).await;
    assert_eq!(status, 404, "{v}");
    assert!(v["error"].as_str().unwrap().contains("sip"), "{v}");
    let (status, v) = post(&d, "/api/datacenters/sip", json!({"mode": "down"})).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("unknown mode"), "{v}");
    let (status, v) = post(
        &d,
        "/api/datacenters/sip",
        json!({"mode": "busy", "retry_after": 0}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = delete(&d, "/api/status").await;
    assert_eq!(status, 405, "{v}");
    let (_, v) = get(&d, "/api/datacenters", None).await;
    assert_eq!(
        v["datacenters"][0],
        json!({"name": "sip", "mode": "normal"})
    );
}

/// With `[api] token`, a request without the bearer token or with a wrong one gets 401.
#[tokio::test]
async fn api_token_is_required_when_configured() {
    let d = TestDaemon::start_with(lab_config(|t| set_key(&t, "api", "token", "\"s3cret\""))).await;
    let (status, v) = get(&d, "/api/status", None).await;
    assert_eq!(status, 401, "{v}");
    let (status, _) = get(&d, "/api/status", Some("guess")).await;
    assert_eq!(status, 401);
    let (status, v) = get(&d, "/api/status", Some("s3cret")).await;
    assert_eq!(status, 200, "{v}");
}

/// DR-DC-1 busy: new INVITEs get 503 with the datacenter's Retry-After; a call already
/// up carries on and hangs up normally; back to normal, calls are taken again.
#[tokio::test]
async fn dr_dc_1_a_busy_datacenter_answers_new_invites_503_with_its_retry_after() {
    let d = TestDaemon::start_with(lab_config(with_instant_user)).await;
    let mut sbc = sbc_up(&d).await;
    let up = invite("sbc1.adatum.biz", INSTANT_NUMBER, &[]);
    sbc.send(&up).await;
    let (ok, _) = sbc.until(200).await;
    let tag = ok.to_tag().unwrap();

    set_mode(&d, "sip", json!({"mode": "busy", "retry_after": 7})).await;
    let refused = invite("sbc1.adatum.biz", INSTANT_NUMBER, &[]);
    sbc.send(&refused).await;
    let r = sbc.recv().await;
    assert_eq!(r.status(), 503, "{}", r.text);
    assert_eq!(r.header("Retry-After"), Some("7"), "{}", r.text);
    assert_eq!(r.ms_code(), Some(540503), "{}", r.text);
    sbc.send(ack_non2xx(&refused, r.to_tag().as_deref())).await;
    // The call up is unaffected.
    sbc.ack_and_bye(&up, &tag).await;

    set_mode(&d, "sip", json!({"mode": "normal"})).await;
    let again = invite("sbc1.adatum.biz", INSTANT_NUMBER, &[]);
    sbc.send(&again).await;
    let (ok, _) = sbc.until(200).await;
    sbc.ack_and_bye(&again, &ok.to_tag().unwrap()).await;
    d.calls_drained().await;
}

/// DR-DC-1 refuse: the listening socket closes (connection refused), and listens again
/// on the same address when set back to normal.
#[tokio::test]
async fn dr_dc_1_a_refusing_datacenter_refuses_connections_until_normal() {
    let d = TestDaemon::start().await;
    set_mode(&d, "sip", json!({"mode": "refuse"})).await;
    let mut refused = false;
    for _ in 0..50 {
        match TcpStream::connect(d.tls_addr()).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                refused = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(refused, "connections to a refusing datacenter are refused");
    set_mode(&d, "sip", json!({"mode": "normal"})).await;
    let mut back = false;
    for _ in 0..50 {
        if connect_as(&d, "sbc1.adatum.biz").await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(back, "the datacenter listens again on the same address");
}

/// DR-DC-1 reset: the TLS handshake is reset; an SBC already connected is unaffected.
#[tokio::test]
async fn dr_dc_1_a_resetting_datacenter_resets_tls_handshakes() {
    let d = TestDaemon::start().await;
    let mut old = sbc_up(&d).await;
    set_mode(&d, "sip", json!({"mode": "reset"})).await;
    let err = connect_as(&d, "sbc1.adatum.biz")
        .await
        .err()
        .expect("the handshake fails");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
        ),
        "{err:?}"
    );
    assert_eq!(old.options().await.status(), 200);
}

/// DR-DC-1 silent: a new connection gets no TLS handshake, a new request on an open
/// connection no answer; a call already up still hangs up normally.
#[tokio::test]
async fn dr_dc_1_a_silent_datacenter_answers_nothing_new() {
    let d = TestDaemon::start_with(lab_config(with_instant_user)).await;
    let mut sbc = sbc_up(&d).await;
    let up = invite("sbc1.adatum.biz", INSTANT_NUMBER, &[]);
    sbc.send(&up).await;
    let (ok, _) = sbc.until(200).await;
    let tag = ok.to_tag().unwrap();
    // ACKed now, so that its 200 is not retransmitted while nothing else may come.
    sbc.send(in_dialog(&up, "ACK", Some(&tag), 1)).await;
    set_mode(&d, "sip", json!({"mode": "silent"})).await;
    let handshake =
        tokio::time::timeout(Duration::from_secs(1), connect_as(&d, "sbc1.adatum.biz")).await;
    assert!(
        handshake.is_err(),
        "no TLS handshake from a silent datacenter"
    );
    sbc.send(options("sbc1.adatum.biz", None, &[])).await;
    sbc.send(invite("sbc1.adatum.biz", INSTANT_NUMBER, &[]))
        .await;
    if let Some(r) = sbc.try_recv(Duration::from_millis(700)).await {
        panic!("nothing new is answered, but: {}", r.text);
    }
    sbc.ack_and_bye(&up, &tag).await;
}

/// DR-DC-1, DR-DC-2: with `sip` busy, the SBC fails over to `sip2` (its own address) and
/// the call goes through there; the status shows the SBC connected to both.
#[tokio::test]
async fn dr_dc_1_an_sbc_fails_over_from_a_busy_datacenter_to_the_next() {
    let d = TestDaemon::start_with(lab_config(with_instant_user)).await;
    assert_ne!(
        d.addr("sip2").ip(),
        d.addr("sip").ip(),
        "own loopback address"
    );
    let mut first = sbc_up(&d).await;
    set_mode(&d, "sip", json!({"mode": "busy", "retry_after": 60})).await;
    let call = invite("sbc1.adatum.biz", INSTANT_NUMBER, &[]);
    first.send(&call).await;
    let r = first.recv().await;
    assert_eq!((r.status(), r.header("Retry-After")), (503, Some("60")));
    first.send(ack_non2xx(&call, r.to_tag().as_deref())).await;
    // The SBC's next datacenter.
    let mut second = connect_as_on(&d, "sip2", "sbc1.adatum.biz").await.unwrap();
    assert_eq!(second.options().await.status(), 200);
    let retry = invite("sbc1.adatum.biz", INSTANT_NUMBER, &[]);
    second.send(&retry).await;
    let (ok, _) = second.until(200).await;
    let (_, v) = get(&d, "/api/status", None).await;
    let sbc = &v["sbcs"][0];
    assert_eq!(sbc["fqdn"], "sbc1.adatum.biz");
    assert_eq!(sbc["datacenters"], json!(["sip", "sip2"]), "{sbc}");
    assert_eq!(sbc["options"]["last_received_on"], "sip2", "{sbc}");
    let moved = &sbc["options"]["moves"][0];
    assert_eq!(
        (&moved["from"], &moved["to"]),
        (&json!("sip"), &json!("sip2")),
        "{sbc}"
    );
    second.ack_and_bye(&retry, &ok.to_tag().unwrap()).await;
    d.calls_drained().await;
}

/// A user whose one endpoint rings and never answers.
const RINGING_USER: &str = r#"
  [[tenant.user]]
  sip_address = "ringing@adatum.biz"
  line_uri = "tel:+18338008888"

    [[tenant.user.endpoint]]
    name = "desk"
    ring_after_seconds = 0
"#;

/// `DELETE /api/calls/{id}`: an answered call ends with a BYE to the SBC (its 200 ends
/// the call); a ringing one is declined 603; an unknown Call-ID is 404.
#[tokio::test]
async fn the_api_hangs_up_calls_up_and_ringing() {
    let d = TestDaemon::start_with(lab_config(|t| {
        with_instant_user(t).replacen(
            "[[tenant]]\nid = \"contoso\"",
            &format!("{RINGING_USER}\n[[tenant]]\nid = \"contoso\""),
            1,
        )
    }))
    .await;
    let mut sbc = sbc_up(&d).await;
    let up = invite("sbc1.adatum.biz", INSTANT_NUMBER, &[]);
    sbc.send(&up).await;
    let (ok, _) = sbc.until(200).await;
    let tag = ok.to_tag().unwrap();
    sbc.send(in_dialog(&up, "ACK", Some(&tag), 1)).await;
    let call_id = req_header(&up, "Call-ID").unwrap().to_owned();
    let (status, v) = delete(&d, &format!("/api/calls/{call_id}")).await;
    assert_eq!(status, 202, "{v}");
    let bye = sbc.until_request("BYE").await;
    sbc.send(response_to(&bye.text, 200, "OK", &[])).await;
    d.calls_drained().await;
    let (_, v) = get(&d, "/api/calls", None).await;
    let ended = v["recent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["call_id"] == call_id.as_str())
        .expect("in the recent calls");
    assert_eq!(ended["reason"], "ended through the control API", "{ended}");

    let ringing = invite("sbc1.adatum.biz", "+18338008888", &[]);
    sbc.send(&ringing).await;
    let (_, _) = sbc.until(180).await;
    let call_id = req_header(&ringing, "Call-ID").unwrap().to_owned();
    let (status, _) = delete(&d, &format!("/api/calls/{call_id}")).await;
    assert_eq!(status, 202);
    let r = loop {
        let r = sbc.recv().await;
        if r.status() >= 200 {
            break r;
        }
    };
    assert_eq!(r.status(), 603, "{}", r.text);
    sbc.send(ack_non2xx(&ringing, r.to_tag().as_deref())).await;
    d.calls_drained().await;

    let (status, v) = delete(&d, "/api/calls/nope").await;
    assert_eq!(status, 404, "{v}");
}

/// DR-OUT-1 over the API: where a number would go, with the dial plan's rewrite and
/// the gateways in failover order; no route is 403/510559; bad queries are 4xx JSON.
#[tokio::test]
async fn dr_out_1_the_api_tells_where_a_number_would_go() {
    let d = TestDaemon::start().await;
    // 00 + international number, normalised to +E.164, routed abroad via sbc2 first.
    let (status, v) = get(
        &d,
        "/api/route?user=user1%40adatum.biz&number=00442071234567",
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["number"], "+442071234567", "{v}");
    assert_eq!(v["policy"], "Unrestricted");
    assert_eq!(v["routed"], true);
    assert_eq!(v["usage"], "International");
    let order: Vec<&str> = v["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["fqdn"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["sbc2.adatum.biz", "sbc1.adatum.biz"]);
    assert!(v["explanation"].as_str().unwrap().contains("International"));
    // A plus in the query is a plus.
    let (_, v) = get(
        &d,
        "/api/route?user=user1@adatum.biz&number=+14255550100",
        None,
    )
    .await;
    assert_eq!(v["usage"], "US and Canada", "{v}");
    assert_eq!(v["gateways"][0]["fqdn"], "sbc1.adatum.biz");
    // The Global policy has no International usage.
    let (status, v) = get(
        &d,
        "/api/route?user=reception@adatum.biz&number=+442071234567",
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (
            v["routed"].as_bool(),
            v["status"].as_u64(),
            v["code"].as_u64()
        ),
        (Some(false), Some(403), Some(510559)),
        "{v}"
    );
    let (status, v) = get(
        &d,
        "/api/route?user=nobody@adatum.biz&number=+14255550100",
        None,
    )
    .await;
    assert_eq!(status, 404, "{v}");
    let (status, v) = get(&d, "/api/route?user=user1@adatum.biz", None).await;
    assert_eq!(status, 400, "{v}");
}
