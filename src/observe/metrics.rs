//! Prometheus metrics at `GET /metrics` on the control API (OpenMetrics text).
//!
//! Two kinds. Events are counted where they happen, in [`CallMetrics`] (calls ended by
//! direction, status class and diagnostic code; INVITE-to-100 and post-dial delay
//! histograms). Everything that is a state (calls up, SBC health, OPTIONS both ways,
//! transactions, connections per listener, datacenter modes, the hub's counters) is read
//! from the hub when scraped, so nothing on the hot path keeps it twice.
//!
//! `prometheus-client` keeps its metrics per registry, not in a process-wide recorder:
//! the tests run many daemons in one process, and each must report only its own.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::call::router::{CallDirection, CallState};
use crate::call::Outcome;
use crate::hub::Hub;

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Label pairs, in order.
type Labels = Vec<(&'static str, String)>;

fn histogram() -> Histogram {
    // 0.25 ms to about 4 s: an INVITE's 100 takes well under a millisecond on a quiet
    // daemon; a post-dial delay is an SBC's or a client's seconds.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// The call events counted where they happen (the call table records them).
#[derive(Debug)]
pub struct CallMetrics {
    ended: Family<Labels, Counter>,
    invite_to_100: Histogram,
    post_dial_delay: Family<Labels, Histogram, fn() -> Histogram>,
}

impl Default for CallMetrics {
    fn default() -> Self {
        CallMetrics {
            ended: Family::default(),
            invite_to_100: histogram(),
            post_dial_delay: Family::new_with_constructor(histogram),
        }
    }
}

impl CallMetrics {
    /// A call ended: by direction, `answered` or `failed`, the status class of how it
    /// ended and its diagnostic code (empty when none).
    pub fn ended(&self, direction: CallDirection, outcome: Option<&Outcome>) {
        let (result, class, code) = match outcome {
            // A 2xx is an answered call, also one drhub ended with a diagnostic (1106, a
            // session that expired).
            Some(o) => (
                if (200..300).contains(&o.status) {
                    "answered"
                } else {
                    "failed"
                },
                format!("{}xx", o.status / 100),
                o.code.map(|c| c.to_string()).unwrap_or_default(),
            ),
            None => ("failed", "none".to_owned(), String::new()),
        };
        self.ended
            .get_or_create(&vec![
                ("direction", direction.as_str().to_owned()),
                ("result", result.to_owned()),
                ("status_class", class),
                ("code", code),
            ])
            .inc();
    }

    /// An inbound INVITE's `100 Trying` went out this long after the router took it.
    pub fn invite_to_100(&self, d: Duration) {
        self.invite_to_100.observe(d.as_secs_f64());
    }

    /// A call first rang (or was answered without ringing) this long after it started:
    /// the SBC's 18x on an outbound call, drhub's 180 on an inbound one.
    pub fn post_dial_delay(&self, direction: CallDirection, d: Duration) {
        self.post_dial_delay
            .get_or_create(&vec![("direction", direction.as_str().to_owned())])
            .observe(d.as_secs_f64());
    }
}

/// The text for `GET /metrics`.
pub fn render(hub: &Hub) -> String {
    let mut r = Registry::with_prefix("drhub");
    let m = &hub.calls.metrics;
    r.register(
        "calls_ended",
        "Calls ended, by direction, result, status class and diagnostic code",
        m.ended.clone(),
    );
    r.register(
        "invite_to_100_seconds",
        "From the router taking an inbound INVITE to its 100 Trying queued for sending",
        m.invite_to_100.clone(),
    );
    r.register(
        "post_dial_delay_seconds",
        "From a call's start to its first ringing (or its answer without ringing)",
        m.post_dial_delay.clone(),
    );
    calls(&mut r, hub);
    sbcs(&mut r, hub);
    transport(&mut r, hub);
    let mut out = String::with_capacity(8 * 1024);
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}

/// A count as a gauge's value.
fn int(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn gauge(v: usize) -> ConstGauge<i64> {
    ConstGauge::new(int(v))
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

fn calls(r: &mut Registry, hub: &Hub) {
    let up: Family<Labels, Gauge<i64, AtomicI64>> = Family::default();
    for d in [CallDirection::Inbound, CallDirection::Outbound] {
        for s in [
            CallState::Trying,
            CallState::Ringing,
            CallState::Answered,
            CallState::Held,
        ] {
            up.get_or_create(&vec![
                ("direction", d.as_str().to_owned()),
                ("state", s.as_str().to_owned()),
            ])
            .set(0);
        }
    }
    for c in hub.calls.snapshot() {
        up.get_or_create(&vec![
            ("direction", c.direction.as_str().to_owned()),
            ("state", c.state.as_str().to_owned()),
        ])
        .inc();
    }
    r.register("calls_up", "Calls up now, by direction and state", up);
    let t = &hub.calls;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    r.register("calls_started", "Calls started", counter(load(&t.started)));
    r.register(
        "calls_answered",
        "Calls that were answered",
        counter(load(&t.answered)),
    );
    r.register(
        "calls_failed",
        "Calls that ended unanswered",
        counter(load(&t.failed)),
    );
}

fn sbcs(r: &mut Registry, hub: &Hub) {
    let state: Family<Labels, Gauge<i64, AtomicI64>> = Family::default();
    let enabled: Family<Labels, Gauge<i64, AtomicI64>> = Family::default();
    let received: Family<Labels, Counter<u64, AtomicU64>> = Family::default();
    let sent: Family<Labels, Counter<u64, AtomicU64>> = Family::default();
    let answered: Family<Labels, Counter<u64, AtomicU64>> = Family::default();
    let calls_up: Family<Labels, Gauge<i64, AtomicI64>> = Family::default();
    let connections: Family<Labels, Gauge<i64, AtomicI64>> = Family::default();
    let now = std::time::Instant::now();
    let timing = hub.health.timing();
    for tenant in &hub.config().tenants {
        for trunk in &tenant.trunks {
            let fqdn = trunk.fqdn.to_string();
            let sbc = || vec![("sbc", fqdn.clone()), ("tenant", tenant.id.to_string())];
            let record = hub.health.get(&fqdn);
            let now_state = record
                .as_ref()
                .map_or("unknown", |r| r.state_at(now, timing).as_str());
            for s in ["active", "inactive", "unknown"] {
                let mut l = sbc();
                l.push(("state", s.to_owned()));
                state.get_or_create(&l).set(i64::from(s == now_state));
            }
            enabled.get_or_create(&sbc()).set(i64::from(trunk.enabled));
            let (rx, tx, ok) = record.as_ref().map_or((0, 0, 0), |r| {
                (r.options_received, r.outbound.sent, r.outbound.answered)
            });
            received.get_or_create(&sbc()).inc_by(rx);
            sent.get_or_create(&sbc()).inc_by(tx);
            answered.get_or_create(&sbc()).inc_by(ok);
            calls_up
                .get_or_create(&sbc())
                .set(int(hub.calls.trunk_load(&fqdn).0));
            connections
                .get_or_create(&sbc())
                .set(int(hub.flows.all_by_name(&fqdn).len()));
        }
    }
    r.register(
        "sbc_state",
        "SBC health per trunk (DR-OPT-3): 1 for the state it is in",
        state,
    );
    r.register("sbc_enabled", "The trunk is enabled", enabled);
    r.register(
        "sbc_options_received",
        "OPTIONS received from the SBC (DR-OPT-2)",
        received,
    );
    r.register(
        "sbc_options_sent",
        "The proxy's own OPTIONS sent to the SBC (DR-OPT-3)",
        sent,
    );
    r.register(
        "sbc_options_answered",
        "The proxy's OPTIONS the SBC answered",
        answered,
    );
    r.register("sbc_calls_up", "Calls up on the trunk", calls_up);
    r.register(
        "sbc_connections",
        "Live connections whose certificate names the SBC",
        connections,
    );
}

fn transport(r: &mut Registry, hub: &Hub) {
    let per_listener: Family<Labels, Gauge<i64, AtomicI64>> = Family::default();
    for (listener, direction, n) in hub.flows.count_by_listener() {
        let direction = match direction {
            crate::transport::Direction::Inbound => "inbound",
            crate::transport::Direction::Outbound => "outbound",
        };
        per_listener
            .get_or_create(&vec![
                ("listener", listener),
                ("direction", direction.to_owned()),
            ])
            .set(int(n));
    }
    r.register(
        "connections",
        "Live connections per listener (outbound ones under the listener whose certificate they present)",
        per_listener,
    );
    let modes: Family<Labels, Gauge<i64, AtomicI64>> = Family::default();
    for (dc, mode) in hub.datacenters.list() {
        for m in ["normal", "busy", "refuse", "reset", "silent"] {
            modes
                .get_or_create(&vec![("datacenter", dc.clone()), ("mode", m.to_owned())])
                .set(i64::from(mode.name() == m));
        }
    }
    r.register(
        "datacenter_mode",
        "Each emulated datacenter's fault mode (DR-DC-1): 1 for the mode it is in",
        modes,
    );
    r.register(
        "transactions",
        "SIP transactions live in the transaction layer",
        gauge(hub.layer.load().transactions()),
    );
    let c = &hub.counters;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    r.register(
        "requests",
        "SIP requests received from SBCs",
        counter(load(&c.requests)),
    );
    r.register(
        "rejected",
        "Requests refused with a diagnostic (DR-VAL-8)",
        counter(load(&c.rejected)),
    );
    r.register(
        "malformed",
        "Messages that failed to parse or the RFC 3261 checks (400, or the connection closed)",
        counter(load(&c.malformed)),
    );
    r.register(
        "shed",
        "New INVITEs shed with 503 and Retry-After under overload (DR-ERR-1)",
        counter(load(&c.shed)),
    );
}
