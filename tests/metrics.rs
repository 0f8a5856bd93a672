//! Black-box: `GET /metrics` on the control API (issue 10): the text parses with a
//! Prometheus text-format parser, and it counts what an SBC did over real sockets:
//! its OPTIONS, an answered call and a busy one, their INVITE-to-100 and post-dial
//! delay, the connection, the datacenters' modes.

mod support;

use std::collections::HashMap;

use support::*;

/// Every sample of `name` whose labels include `want`, summed.
fn value(scrape: &prometheus_parse::Scrape, name: &str, want: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| want.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
        .sum()
}

#[tokio::test]
async fn metrics_parse_and_count_what_the_sbc_did() {
    let d = TestDaemon::start_with(lab_config(|t| fast(t, 0.05))).await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    assert_eq!(sbc.options().await.status(), 200);
    // An answered call, hung up by the SBC.
    let (inv, ok) = answered_call(&mut sbc, "+18338006777").await;
    let bye = sbc.request(&routed(&inv, &ok, "BYE", 2, &[])).await;
    assert_eq!(bye.status(), 200);
    // A busy one: busy@adatum.biz declines 486.
    let busy = invite("sbc1.adatum.biz", "+18338006778", &RR);
    sbc.send(&busy).await;
    let (r, _) = sbc.until(486).await;
    sbc.send(ack_non2xx(&busy, r.to_tag().as_deref())).await;
    d.calls_drained().await;

    let (head, body) = http_get(d.addr("api"), "/metrics", &[]).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let s = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let types: HashMap<&str, &str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    assert_eq!(types.get("drhub_calls_ended"), Some(&"counter"), "{body}");
    assert_eq!(types.get("drhub_invite_to_100_seconds"), Some(&"histogram"));

    let answered = [
        ("direction", "inbound"),
        ("result", "answered"),
        ("status_class", "2xx"),
    ];
    assert_eq!(
        value(&s, "drhub_calls_ended_total", &answered),
        1.0,
        "{body}"
    );
    let failed = [
        ("direction", "inbound"),
        ("result", "failed"),
        ("status_class", "4xx"),
    ];
    assert_eq!(value(&s, "drhub_calls_ended_total", &failed), 1.0, "{body}");
    assert_eq!(value(&s, "drhub_calls_started_total", &[]), 2.0);
    assert_eq!(value(&s, "drhub_calls_up", &[]), 0.0);
    // Both INVITEs got their 100; both rang (the busy user's client rings first).
    assert_eq!(value(&s, "drhub_invite_to_100_seconds", &[]), 2.0, "{body}");
    assert_eq!(
        value(
            &s,
            "drhub_post_dial_delay_seconds",
            &[("direction", "inbound")]
        ),
        2.0,
        "{body}"
    );
    let sbc1 = [("sbc", "sbc1.adatum.biz")];
    assert_eq!(value(&s, "drhub_sbc_options_received_total", &sbc1), 1.0);
    assert_eq!(
        value(
            &s,
            "drhub_sbc_state",
            &[("sbc", "sbc1.adatum.biz"), ("state", "unknown")]
        ),
        0.0,
        "an SBC that sent OPTIONS is known\n{body}"
    );
    assert_eq!(value(&s, "drhub_sbc_connections", &sbc1), 1.0);
    assert!(
        value(
            &s,
            "drhub_connections",
            &[("listener", "sip"), ("direction", "inbound")]
        ) >= 1.0,
        "{body}"
    );
    assert_eq!(
        value(
            &s,
            "drhub_datacenter_mode",
            &[("datacenter", "sip"), ("mode", "normal")]
        ),
        1.0
    );
    assert!(value(&s, "drhub_requests_total", &[]) >= 5.0, "{body}");
    assert_eq!(value(&s, "drhub_malformed_total", &[]), 0.0);
}
