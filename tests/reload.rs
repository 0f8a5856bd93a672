//! Black-box: reloading the configuration of a running daemon (issue 10, item 5) over
//! `POST /api/reload`, as `drhub reload` and SIGHUP do (the binary's own test is in
//! `tests/cli.rs`). A call that is up when the config changes goes on to its BYE; new
//! calls see the new users; listeners are added, removed, and changed in place; a bad
//! config changes nothing and says why, path by path.

mod support;

use std::path::PathBuf;

use serde_json::Value;
use support::*;

/// The config file of one test, written from the lab config (loopback, port 0).
fn config_file(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("reload-{name}"));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let path = dir.join("drhub.toml");
    std::fs::write(&path, text).expect("config written");
    path
}

async fn reload(d: &TestDaemon) -> (u16, Value) {
    drhub::api::request(d.addr("api"), "POST", "/api/reload", None, None)
        .await
        .expect("API reachable")
}

async fn api_get(d: &TestDaemon, path: &str) -> Value {
    let (status, v) = drhub::api::request(d.addr("api"), "GET", path, None, None)
        .await
        .expect("API reachable");
    assert_eq!(status, 200, "{v}");
    v
}

/// The lab's second user, with a number of its own and an instant client.
const NEW_USER: &str = r#"
  [[tenant.user]]
  sip_address = "added@adatum.biz"
  display_name = "Added By Reload"
  line_uri = "tel:+18338005555"

    [[tenant.user.endpoint]]
    name = "instant"
    ring_after_seconds = 0
    answer_after_seconds = 0
"#;

/// `text` with [`NEW_USER`] in the first tenant.
fn with_new_user(text: &str) -> String {
    with_user(text.to_owned(), NEW_USER)
}

/// The `[[listener]]` block named `name` taken out.
fn without_listener(text: &str, name: &str) -> String {
    let marker = format!("[[listener]]\nname = \"{name}\"");
    let start = text.find(&marker).expect("the listener");
    let end = text[start + 1..]
        .find("\n[[")
        .map_or(text.len(), |i| start + 1 + i + 1);
    format!("{}{}", &text[..start], &text[end..])
}

#[tokio::test]
async fn a_reload_applies_to_new_calls_and_listeners_while_a_call_stays_up() {
    let text = lab_config_text(&pki().dir, |t| t);
    let path = config_file("apply", &text);
    let d = TestDaemon::start_from_file(&path).await;
    let sip3 = d.addr("sip3");
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    assert_eq!(sbc.options().await.status(), 200);
    // A call up when the config changes.
    let (inv, ok) = answered_call(&mut sbc, "+18338006777").await;

    // Nobody has this number yet.
    let early = invite("sbc1.adatum.biz", "+18338005555", &RR);
    sbc.send(&early).await;
    let (r, _) = sbc.until(404).await;
    sbc.send(ack_non2xx(&early, r.to_tag().as_deref())).await;

    // The new config: a new user, the plain-TCP listener on, sip3 gone, sip2 on TLS 1.3
    // too (changed in place), a shorter ring timeout.
    let new = without_listener(&with_new_user(&text), "sip3")
        .replace("enabled = false", "enabled = true")
        .replace("ring_timeout_seconds = 60", "ring_timeout_seconds = 45");
    let new = {
        // sip2's block only: allow TLS 1.3 as well.
        let at = new.find("name = \"sip2\"").expect("sip2");
        let (head, tail) = new.split_at(at);
        format!(
            "{head}{}",
            tail.replacen(
                "tls_versions = [\"1.2\"]",
                "tls_versions = [\"1.2\", \"1.3\"]",
                1
            )
        )
    };
    std::fs::write(&path, &new).unwrap();
    let (status, v) = reload(&d).await;
    assert_eq!(status, 200, "{v}");
    let applied: Vec<&str> = v["applied"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(applied.iter().any(|a| a.starts_with("tenants")), "{v}");
    assert!(applied.contains(&"[calls]"), "{v}");
    assert!(
        applied
            .iter()
            .any(|a| a.starts_with("listener `lab-tcp` added on 127.0.0.1:")),
        "{v}"
    );
    assert!(
        applied
            .iter()
            .any(|a| a.starts_with("listener `sip3` on ") && a.contains("removed")),
        "{v}"
    );
    assert!(
        applied
            .iter()
            .any(|a| a.starts_with("listener `sip2` changed in place")),
        "{v}"
    );
    assert_eq!(v["restart_needed"], serde_json::json!([]), "{v}");

    // The call that was up goes on, even for an SBC that reconnects after the reload
    // (DR-NH-5): its BYE on the new connection ends it as before.
    sbc.close().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let bye = sbc.request(&routed(&inv, &ok, "BYE", 2, &[])).await;
    assert_eq!(bye.status(), 200, "{}", bye.text);
    // The new user's number answers, on the same connection.
    let (inv2, ok2) = answered_call(&mut sbc, "+18338005555").await;
    let bye = sbc.request(&routed(&inv2, &ok2, "BYE", 2, &[])).await;
    assert_eq!(bye.status(), 200);
    d.calls_drained().await;

    // Listeners: sip3 refuses connections, lab-tcp accepts them, sip2 speaks TLS 1.3.
    assert!(
        tokio::net::TcpStream::connect(sip3).await.is_err(),
        "sip3 still listening"
    );
    let status = api_get(&d, "/api/status").await;
    let names: Vec<&str> = status["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["name"].as_str())
        .collect();
    assert!(
        names.contains(&"lab-tcp") && !names.contains(&"sip3"),
        "{names:?}"
    );
    let tcp: std::net::SocketAddr = status["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "lab-tcp")
        .and_then(|l| l["address"].as_str()?.parse().ok())
        .expect("lab-tcp's address");
    assert!(tokio::net::TcpStream::connect(tcp).await.is_ok());
    let v13 = connect_to(
        d.addr("sip2"),
        client_tls_as(
            Some("sbc1.adatum.biz"),
            &[drhub::transport::tls::TlsVersion::V1_3],
        ),
        "sbc1.adatum.biz".to_owned(),
    )
    .await;
    assert!(
        v13.is_ok(),
        "sip2 takes TLS 1.3 after the reload: {:?}",
        v13.err()
    );
    // The datacenters follow the listeners (DR-DC-1: each SBC listener is one).
    let dcs = api_get(&d, "/api/datacenters").await.to_string();
    assert!(dcs.contains("lab-tcp") && !dcs.contains("sip3"), "{dcs}");
    d.stop().await;
}

#[tokio::test]
async fn a_bad_config_or_a_listener_that_cannot_bind_changes_nothing() {
    let text = lab_config_text(&pki().dir, |t| t);
    let path = config_file("refuse", &text);
    let d = TestDaemon::start_from_file(&path).await;

    // Two errors in the file: both reported with their paths.
    let broken = with_new_user(&text)
        .replace("tel:+18338006777", "tel:18338006777")
        .replace(
            "ring_timeout_seconds = 60",
            "ring_timeout_seconds = \"soon\"",
        );
    std::fs::write(&path, broken).unwrap();
    let (status, v) = reload(&d).await;
    assert_eq!(status, 422, "{v}");
    let errors = v["errors"].to_string();
    assert!(errors.contains("line_uri"), "{errors}");
    assert!(errors.contains("calls.ring_timeout_seconds"), "{errors}");
    assert!(
        v["error"].as_str().unwrap().contains("nothing changed"),
        "{v}"
    );

    // A valid file whose new listener cannot bind (the API's own port): refused too,
    // and its new user is not applied.
    let api = d.addr("api");
    let clash = with_new_user(&text).replace(
        "address = \"127.0.0.1:0\"\nfqdn = \"sip.pstnhub.microsoft.com\"\nenabled = false",
        &format!("address = \"{api}\"\nfqdn = \"sip.pstnhub.microsoft.com\"\nenabled = true"),
    );
    assert_ne!(
        clash,
        with_new_user(&text),
        "the lab-tcp listener is in the text"
    );
    std::fs::write(&path, clash).unwrap();
    let (status, v) = reload(&d).await;
    assert_eq!(status, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("lab-tcp"), "{v}");

    // Nothing changed: the old user answers, the new one does not exist.
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let (inv, ok) = answered_call(&mut sbc, "+18338006777").await;
    let bye = sbc.request(&routed(&inv, &ok, "BYE", 2, &[])).await;
    assert_eq!(bye.status(), 200);
    let inv = invite("sbc1.adatum.biz", "+18338005555", &RR);
    sbc.send(&inv).await;
    let (r, _) = sbc.until(404).await;
    sbc.send(ack_non2xx(&inv, r.to_tag().as_deref())).await;

    // A daemon on the built-in config has no file: 409.
    let builtin = TestDaemon::start().await;
    let (status, v) = reload(&builtin).await;
    assert_eq!(status, 409, "{v}");
    d.stop().await;
    builtin.stop().await;
}
