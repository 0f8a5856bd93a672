//! SBC health: OPTIONS both ways (DR-OPT-2, DR-OPT-3).
//!
//! What the proxy knows of each SBC it has heard from: its last OPTIONS, the methods it
//! advertised (DR-XFER-1 reads them), its certificate, the connection it came on, and
//! the outcome of the proxy's own OPTIONS to it. From those, [`SbcRecord::state_at`]
//! says whether the SBC is active (both directions answered, and it sent OPTIONS within
//! the active window, 3 minutes), inactive (no OPTIONS from it for 5 minutes, or none of
//! the proxy's answered for 5 minutes) or in between; every change of state is logged.
//!
//! [`run`] is the proxy's side: it sends its own OPTIONS to the FQDN in the Contact of
//! the SBC's OPTIONS (DR-NH-2) right after answering the first, then every interval (60 s)
//! to every enabled trunk with `send_options` that it has heard from; it never sends first
//! to an SBC it has not heard from. The decisions are pure functions of the records and
//! the time passed in; only `run` touches tokio.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use crate::hub::Hub;
use crate::policy::ALLOW;
use crate::sip::build::RequestWriter;
use crate::sip::Transport;
use crate::transaction::{Branch, ClientEvent};
use crate::transport::connect::Target;
use crate::transport::tls::PeerIdentity;
use crate::transport::{Destination, FlowId};

/// The timing of DR-OPT-3. The spec's values are the defaults; a lab may shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How often the proxy sends its OPTIONS (60 s).
    pub interval: Duration,
    /// An SBC is active only if it sent OPTIONS this recently (3 minutes).
    pub active_window: Duration,
    /// An SBC that sent none for this long, or answered none of the proxy's for this
    /// long, is inactive (5 minutes).
    pub inactive_after: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            interval: Duration::from_secs(60),
            active_window: Duration::from_secs(180),
            inactive_after: Duration::from_secs(300),
        }
    }
}

/// Where an SBC stands (DR-OPT-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SbcState {
    /// Both directions answered, and its OPTIONS are recent: routes use it first.
    Active,
    /// Heard from, but not (yet, or no longer) active: one direction has not answered,
    /// or its last OPTIONS is older than the active window.
    Warning,
    /// Silent for the inactive time in either direction: tried last (DR-OUT-2).
    Inactive,
}

impl SbcState {
    pub fn as_str(self) -> &'static str {
        match self {
            SbcState::Active => "active",
            SbcState::Warning => "warning",
            SbcState::Inactive => "inactive",
        }
    }
}

impl std::fmt::Display for SbcState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The proxy's own OPTIONS to one SBC.
#[derive(Debug, Clone, Default)]
pub struct Outbound {
    /// When the last one was sent.
    pub last_sent: Option<Instant>,
    /// When one was last answered with a 2xx.
    pub last_ok: Option<Instant>,
    /// When the first of the current run of failures happened (none: the last one
    /// succeeded, or none was sent yet).
    pub failing_since: Option<Instant>,
    /// The last outcome, for display: `200 OK`, `408 timeout`, `504 569002 ...`.
    pub last_result: Option<String>,
    pub in_flight: bool,
    pub sent: u64,
    pub answered: u64,
}

/// Everything known of one SBC, keyed by its FQDN.
#[derive(Debug, Clone)]
pub struct SbcRecord {
    pub fqdn: String,
    pub tenant: String,
    /// Monotonic time of the last OPTIONS received, for the activity rules.
    pub last_options: Instant,
    /// Wall-clock time of the last OPTIONS received, for display.
    pub last_options_at: SystemTime,
    pub options_received: u64,
    /// Methods from the SBC's `Allow` header, upper-case, in its order.
    pub allow: Vec<String>,
    /// The `Allow` header as last received.
    allow_raw: String,
    /// The certificate the SBC presented; `None` on the plain-TCP lab listener.
    pub certificate: Option<Arc<PeerIdentity>>,
    pub flow: FlowId,
    pub peer: SocketAddr,
    /// The datacenter (listener) its last OPTIONS came to.
    pub listener: String,
    /// When its OPTIONS moved from one datacenter to another, newest last (at most
    /// [`MOVES_KEPT`]): an SBC's datacenter failover (DR-DC-2).
    pub moves: VecDeque<DatacenterMove>,
    /// Where the proxy's OPTIONS go: the Contact of the SBC's OPTIONS (DR-NH-2).
    pub contact_host: String,
    pub contact_port: Option<u16>,
    /// The trunk's settings that matter here.
    pub send_options: bool,
    pub enabled: bool,
    pub address: Option<SocketAddr>,
    pub trunk_port: u16,
    pub outbound: Outbound,
    /// The state last logged.
    pub state: SbcState,
    pub state_since: SystemTime,
    /// The time of this record's live entry in [`Records::queue`].
    scheduled: Option<Instant>,
}

impl SbcRecord {
    /// Whether the SBC listed a method in its Allow header (DR-XFER-1 asks for REFER).
    pub fn allows(&self, method: &str) -> bool {
        self.allow.iter().any(|m| m.eq_ignore_ascii_case(method))
    }

    /// DR-OPT-3 at `now` (see the module docs).
    pub fn state_at(&self, now: Instant, t: &Timing) -> SbcState {
        let heard = now.saturating_duration_since(self.last_options);
        let ours_failing = self
            .outbound
            .failing_since
            .is_some_and(|since| now.saturating_duration_since(since) >= t.inactive_after);
        if heard >= t.inactive_after || ours_failing {
            return SbcState::Inactive;
        }
        let answered = self.outbound.last_ok.is_some() && self.outbound.failing_since.is_none();
        if answered && heard < t.active_window {
            SbcState::Active
        } else {
            SbcState::Warning
        }
    }

    /// The proxy's OPTIONS go to this SBC at all (DR-OPT-3: enabled trunks with
    /// `send_options`).
    fn wants_options(&self) -> bool {
        self.send_options && self.enabled
    }

    /// When the proxy's next OPTIONS to it is due: at once after the first OPTIONS from
    /// it, then an interval after the last one sent. One still in flight then delays it
    /// until its answer or timeout ([`Self::due_at`]).
    fn next_due(&self, t: &Timing) -> Option<Instant> {
        if !self.wants_options() {
            return None;
        }
        Some(match self.outbound.last_sent {
            None => self.last_options,
            Some(sent) => sent + t.interval,
        })
    }

    /// When the state may change next without any new event: the first threshold after
    /// `now` (those already passed have had their effect).
    fn next_change(&self, now: Instant, t: &Timing) -> Option<Instant> {
        [
            Some(self.last_options + t.active_window),
            Some(self.last_options + t.inactive_after),
            self.outbound.failing_since.map(|s| s + t.inactive_after),
        ]
        .into_iter()
        .flatten()
        .filter(|&at| at > now)
        .min()
    }

    /// Whether the proxy's OPTIONS to it is due at `now`.
    fn due_at(&self, now: Instant, t: &Timing) -> bool {
        !self.outbound.in_flight && self.next_due(t).is_some_and(|d| d <= now)
    }

    /// When this record next needs looking at: an OPTIONS due (perhaps already; while
    /// one is in flight, its answer reschedules the record), or a state that may change.
    fn next_deadline(&self, now: Instant, t: &Timing) -> Option<Instant> {
        let due = self
            .next_due(t)
            .filter(|&d| !self.outbound.in_flight || d > now);
        [due, self.next_change(now, t)].into_iter().flatten().min()
    }
}

/// An SBC's OPTIONS arriving at another datacenter than its previous ones did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatacenterMove {
    pub at: SystemTime,
    pub from: String,
    pub to: String,
}

/// How many datacenter moves an SBC's record keeps.
pub const MOVES_KEPT: usize = 16;

/// One OPTIONS observation, as the front door saw it.
#[derive(Debug, Clone)]
pub struct OptionsSeen<'a> {
    pub fqdn: &'a str,
    pub tenant: &'a str,
    /// The `Allow` header value (empty without one).
    pub allow: &'a str,
    pub certificate: Option<Arc<PeerIdentity>>,
    pub flow: FlowId,
    pub peer: SocketAddr,
    pub listener: &'a str,
    pub contact_host: &'a str,
    pub contact_port: Option<u16>,
    pub trunk: &'a crate::config::Trunk,
}

/// The methods of an `Allow` value, upper-case, in order.
fn parse_allow(allow: &str) -> Vec<String> {
    allow
        .split(',')
        .map(|m| m.trim().to_ascii_uppercase())
        .filter(|m| !m.is_empty())
        .collect()
}

/// A state change, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub fqdn: String,
    pub from: SbcState,
    pub to: SbcState,
}

/// What [`Health::tick`] found at one moment.
#[derive(Debug, Default)]
struct Tick {
    transitions: Vec<Transition>,
    /// The SBCs whose OPTIONS are due, each now marked in flight.
    due: Vec<SbcRecord>,
}

/// The records, and when each next needs looking at. A tick touches only the records
/// whose time has come, so its cost does not grow with the number of SBCs.
#[derive(Debug, Default)]
struct Records {
    by_fqdn: HashMap<String, SbcRecord>,
    /// Earliest first. A record's live entry is the one at its `scheduled` time; entries
    /// it was moved away from are stale and skipped when they come up.
    queue: BinaryHeap<Reverse<(Instant, String)>>,
}

impl Records {
    /// Makes sure `fqdn` is looked at no later than `at`; true when that moved it
    /// earlier (the run loop may have to wake sooner than it planned).
    fn schedule(&mut self, fqdn: &str, at: Option<Instant>) -> bool {
        let (Some(at), Some(r)) = (at, self.by_fqdn.get_mut(fqdn)) else {
            return false;
        };
        if r.scheduled.is_some_and(|s| s <= at) {
            // Looked at by then anyway; the tick then finds the real deadline.
            return false;
        }
        r.scheduled = Some(at);
        self.queue.push(Reverse((at, r.fqdn.clone())));
        true
    }
}

/// Per-SBC records. Written per OPTIONS in either direction, read by status and routing;
/// the lock is never held across an await.
#[derive(Debug, Default)]
pub struct Health {
    sbcs: Mutex<Records>,
    timing: Timing,
    /// Wakes [`run`] when an SBC needs looking at sooner than planned: heard from for
    /// the first time, or its state changed.
    wake: Notify,
}

impl Health {
    pub fn new(timing: Timing) -> Health {
        Health {
            timing,
            ..Health::default()
        }
    }

    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    /// Records an accepted OPTIONS from an SBC (DR-OPT-2).
    pub fn options_received(&self, seen: OptionsSeen<'_>) {
        self.options_received_at(seen, Instant::now());
    }

    fn options_received_at(&self, seen: OptionsSeen<'_>, now: Instant) {
        let mut records = self.lock();
        // The common case, an SBC heard from before: update in place (an SBC's OPTIONS
        // can come thousands of times a second under load).
        if let Some(r) = records.by_fqdn.get_mut(seen.fqdn) {
            r.last_options = now;
            r.last_options_at = SystemTime::now();
            r.options_received += 1;
            if r.allow_raw != seen.allow {
                r.allow_raw = seen.allow.to_owned();
                r.allow = parse_allow(seen.allow);
            }
            if r.flow != seen.flow {
                r.certificate = seen.certificate;
                r.flow = seen.flow;
                r.peer = seen.peer;
                if r.listener != seen.listener {
                    info!(sbc = seen.fqdn, from = %r.listener, to = seen.listener, "the SBC's OPTIONS moved to another datacenter (DR-DC-2)");
                    if r.moves.len() == MOVES_KEPT {
                        r.moves.pop_front();
                    }
                    r.moves.push_back(DatacenterMove {
                        at: SystemTime::now(),
                        from: std::mem::replace(&mut r.listener, seen.listener.to_owned()),
                        to: seen.listener.to_owned(),
                    });
                }
            }
            if r.contact_host != seen.contact_host || r.contact_port != seen.contact_port {
                r.contact_host = seen.contact_host.to_owned();
                r.contact_port = seen.contact_port;
            }
            r.send_options = seen.trunk.send_options;
            r.enabled = seen.trunk.enabled;
            r.address = seen.trunk.address;
            r.trunk_port = seen.trunk.port;
            // The proxy's side looks at it at once if this changes its state (or makes
            // an OPTIONS due: the trunk's settings may have changed).
            let at = if r.state_at(now, &self.timing) != r.state {
                Some(now)
            } else {
                r.next_deadline(now, &self.timing)
            };
            let sooner = records.schedule(seen.fqdn, at);
            drop(records);
            if sooner {
                self.wake.notify_one();
            }
            return;
        }
        records.by_fqdn.insert(
            seen.fqdn.to_owned(),
            SbcRecord {
                fqdn: seen.fqdn.to_owned(),
                tenant: seen.tenant.to_owned(),
                last_options: now,
                last_options_at: SystemTime::now(),
                options_received: 1,
                allow: parse_allow(seen.allow),
                allow_raw: seen.allow.to_owned(),
                certificate: seen.certificate,
                flow: seen.flow,
                peer: seen.peer,
                listener: seen.listener.to_owned(),
                moves: VecDeque::new(),
                contact_host: seen.contact_host.to_owned(),
                contact_port: seen.contact_port,
                send_options: seen.trunk.send_options,
                enabled: seen.trunk.enabled,
                address: seen.trunk.address,
                trunk_port: seen.trunk.port,
                outbound: Outbound::default(),
                state: SbcState::Warning,
                state_since: SystemTime::now(),
                scheduled: None,
            },
        );
        records.schedule(seen.fqdn, Some(now));
        drop(records);
        info!(
            sbc = seen.fqdn,
            "first OPTIONS from this SBC (DR-OPT-3: the proxy answers with its own)"
        );
        self.wake.notify_one();
    }

    pub fn get(&self, fqdn: &str) -> Option<SbcRecord> {
        self.lock().by_fqdn.get(&fqdn.to_ascii_lowercase()).cloned()
    }

    /// Whether the SBC's last OPTIONS listed `method` in Allow (DR-OPT-2; DR-XFER-1 asks
    /// for REFER), without copying its record.
    pub fn allows(&self, fqdn: &str, method: &str) -> bool {
        self.lock()
            .by_fqdn
            .get(&fqdn.to_ascii_lowercase())
            .is_some_and(|r| r.allows(method))
    }

    /// What a call to the SBC needs of its record, without copying it: the datacenter
    /// its last OPTIONS came to, and, for an SBC on the plain-TCP lab listener (no
    /// certificate), the address it spoke from.
    pub fn reach(&self, fqdn: &str) -> Option<(String, Option<SocketAddr>)> {
        self.lock()
            .by_fqdn
            .get(&fqdn.to_ascii_lowercase())
            .map(|r| {
                (
                    r.listener.clone(),
                    r.certificate.is_none().then_some(r.peer),
                )
            })
    }

    /// The SBC's state now.
    pub fn state(&self, fqdn: &str) -> Option<SbcState> {
        let now = Instant::now();
        self.lock()
            .by_fqdn
            .get(&fqdn.to_ascii_lowercase())
            .map(|r| r.state_at(now, &self.timing))
    }

    /// Every SBC heard from, sorted by FQDN.
    pub fn snapshot(&self) -> Vec<SbcRecord> {
        let mut v: Vec<SbcRecord> = self.lock().by_fqdn.values().cloned().collect();
        v.sort_by(|a, b| a.fqdn.cmp(&b.fqdn));
        v
    }

    /// Looks at every SBC whose time has come by `now`: logs nothing itself, but says
    /// which changed state and whose OPTIONS are due (each then marked in flight).
    fn tick(&self, now: Instant) -> Tick {
        let t = self.timing;
        let mut out = Tick::default();
        let mut records = self.lock();
        let Records { by_fqdn, queue } = &mut *records;
        while let Some(Reverse((at, _))) = queue.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, fqdn))) = queue.pop() else {
                break;
            };
            let Some(r) = by_fqdn.get_mut(&fqdn) else {
                continue;
            };
            if r.scheduled != Some(at) {
                continue;
            }
            let to = r.state_at(now, &t);
            if to != r.state {
                out.transitions.push(Transition {
                    fqdn: r.fqdn.clone(),
                    from: r.state,
                    to,
                });
                r.state = to;
                r.state_since = SystemTime::now();
            }
            if r.due_at(now, &t) {
                r.outbound.in_flight = true;
                r.outbound.last_sent = Some(now);
                r.outbound.sent += 1;
                out.due.push(r.clone());
            }
            r.scheduled = r.next_deadline(now, &t);
            if let Some(next) = r.scheduled {
                queue.push(Reverse((next, fqdn)));
            }
        }
        out
    }

    /// The outcome of the proxy's OPTIONS to `fqdn`: `Ok(status)` for a final response,
    /// `Err(why)` when none came or it could not be delivered.
    fn outbound_result(&self, fqdn: &str, result: Result<u16, String>, now: Instant) {
        let mut records = self.lock();
        let Some(r) = records.by_fqdn.get_mut(fqdn) else {
            return;
        };
        r.outbound.in_flight = false;
        match result {
            Ok(code) if (200..300).contains(&code) => {
                r.outbound.last_ok = Some(now);
                r.outbound.failing_since = None;
                r.outbound.answered += 1;
                r.outbound.last_result = Some(format!("{code}"));
            }
            Ok(code) => {
                r.outbound.answered += 1;
                r.outbound.failing_since.get_or_insert(now);
                r.outbound.last_result = Some(format!("{code}"));
            }
            Err(why) => {
                r.outbound.failing_since.get_or_insert(now);
                r.outbound.last_result = Some(why);
            }
        }
        let at = if r.state_at(now, &self.timing) != r.state {
            Some(now)
        } else {
            r.next_deadline(now, &self.timing)
        };
        records.schedule(fqdn, at);
    }

    /// When the next record needs looking at (perhaps a stale entry: an early wake that
    /// finds nothing to do is harmless).
    fn next_deadline(&self) -> Option<Instant> {
        self.lock().queue.peek().map(|Reverse((at, _))| *at)
    }

    fn lock(&self) -> MutexGuard<'_, Records> {
        // Inserts replace whole records and updates touch single fields, so a poisoned
        // map is still consistent.
        self.sbcs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What came back for one of the proxy's OPTIONS.
struct Answer {
    fqdn: String,
    result: Result<u16, String>,
}

/// The proxy's side of DR-OPT-3, until shutdown: sends its OPTIONS when due, records the
/// answers, logs every change of state.
pub async fn run(hub: Arc<Hub>, shutdown: CancellationToken) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Answer>();
    loop {
        let tick = hub.health.tick(Instant::now());
        for t in tick.transitions {
            match t.to {
                SbcState::Active => {
                    info!(sbc = %t.fqdn, from = %t.from, "SBC is active (OPTIONS answered both ways, DR-OPT-3)")
                }
                SbcState::Warning => {
                    warn!(sbc = %t.fqdn, from = %t.from, "SBC is no longer active (DR-OPT-3)")
                }
                SbcState::Inactive => {
                    warn!(sbc = %t.fqdn, from = %t.from, "SBC is inactive: tried last on every route (DR-OPT-3)")
                }
            }
        }
        for r in tick.due {
            send_options(&hub, &r, tx.clone());
        }
        let deadline = hub.health.next_deadline();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            _ = hub.health.wake.notified() => {}
            Some(a) = rx.recv() => {
                // Answers come in bursts (one per SBC each interval): record them all
                // before looking at the records again.
                let now = Instant::now();
                hub.health.outbound_result(&a.fqdn, a.result, now);
                while let Ok(a) = rx.try_recv() {
                    hub.health.outbound_result(&a.fqdn, a.result, now);
                }
            }
            _ = shutdown.cancelled() => return,
        }
    }
}

/// One OPTIONS from the proxy to an SBC (DR-OPT-3), to the FQDN and port of its Contact
/// (DR-NH-2), over an open connection to it or a new one (DR-TLS-4).
fn send_options(hub: &Arc<Hub>, r: &SbcRecord, answers: mpsc::UnboundedSender<Answer>) {
    let fqdn = r.fqdn.clone();
    let (transport, insecure_ip) = match &r.certificate {
        Some(_) => (Transport::Tls, None),
        None => (Transport::Tcp, Some(r.peer.ip())),
    };
    let target = Target {
        sbc: r.fqdn.clone(),
        host: r.contact_host.clone(),
        port: r.contact_port.unwrap_or(r.trunk_port),
        address: r.address,
        transport,
        insecure_ip,
    };
    let Some(connector) = hub.connector().cloned() else {
        return;
    };
    let hub = hub.clone();
    let listener = r.listener.clone();
    let span = tracing::info_span!("options", sbc = %fqdn);
    tokio::spawn(
        async move {
            let flow = match connector.find_or_connect(&target, Some(&listener)).await {
                Ok(f) => f,
                Err(e) => {
                    let d = e.diagnostic().entry();
                    warn!(code = d.code, error = %e, "the proxy's OPTIONS not delivered");
                    let _ = answers.send(Answer {
                        fqdn,
                        result: Err(format!("{} {} {e}", d.status, d.code)),
                    });
                    return;
                }
            };
            let request = build_options(&flow.info.proxy, &target);
            let dest = Destination::Flow(flow);
            let transport = dest.transport();
            let events = answers.clone();
            let who = fqdn.clone();
            let sent = hub.layer.send_request(request, dest, transport, move |ev| {
                let result = match ev.event {
                    ClientEvent::Final(r) => Ok(r.message().status_code().unwrap_or(500)),
                    ClientEvent::Timeout(_) => Err("408 no answer (Timer F)".to_owned()),
                    ClientEvent::TransportError => Err("transport error".to_owned()),
                    _ => return,
                };
                let _ = events.send(Answer {
                    fqdn: who.clone(),
                    result,
                });
            });
            match sent {
                Ok(_) => debug!("OPTIONS sent"),
                Err(e) => {
                    let _ = answers.send(Answer {
                        fqdn,
                        result: Err(e.to_string()),
                    });
                }
            }
        }
        .instrument(span),
    );
}

fn build_options(local: &crate::sip::LocalIdentity, target: &Target) -> bytes::Bytes {
    let uri = format!(
        "sip:{}:{};transport={}",
        target.host,
        target.port,
        target.transport.param()
    );
    let mut out = BytesMut::new();
    let mut w = RequestWriter::start(&mut out, "OPTIONS", &uri);
    w.header("Via", &local.via(Branch::generate().as_str()));
    w.header("Max-Forwards", "70");
    w.header(
        "From",
        &format!(
            "<sip:{}:{}>;tag={}",
            local.host(),
            local.port(),
            crate::call::Tag::random()
        ),
    );
    w.header("To", &format!("<{uri}>"));
    w.header(
        "Call-ID",
        &format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
    );
    w.header("CSeq", "1 OPTIONS");
    w.header("Contact", local.contact());
    w.header("Allow", ALLOW);
    w.header("User-Agent", local.server());
    w.finish(b"");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Trunk;

    fn trunk(send_options: bool) -> Trunk {
        Trunk {
            fqdn: "sbc1.adatum.biz".parse().unwrap(),
            port: 5061,
            enabled: true,
            send_options,
            media_bypass: false,
            forward_call_history: false,
            refer_fallback: false,
            trace: true,
            forward_pai: false,
            max_concurrent_sessions: None,
            failover_response_codes: vec![408, 503, 504],
            failover_time: Duration::from_secs(10),
            allow_insecure: false,
            address: None,
        }
    }

    fn seen<'a>(t: &'a Trunk) -> OptionsSeen<'a> {
        OptionsSeen {
            fqdn: "sbc1.adatum.biz",
            tenant: "adatum",
            allow: "INVITE, refer",
            certificate: None,
            flow: FlowId::next(),
            peer: "192.0.2.10:5061".parse().unwrap(),
            listener: "sip",
            contact_host: "sbc1.adatum.biz",
            contact_port: Some(5061),
            trunk: t,
        }
    }

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn dr_dc_2_options_arriving_at_another_datacenter_are_a_move() {
        let h = Health::new(Timing::default());
        let t = trunk(true);
        let t0 = Instant::now();
        h.options_received_at(seen(&t), t0);
        let same = OptionsSeen { ..seen(&t) };
        h.options_received_at(same, t0 + s(60));
        assert!(h.get("sbc1.adatum.biz").unwrap().moves.is_empty());
        let moved = OptionsSeen {
            listener: "sip2",
            ..seen(&t)
        };
        h.options_received_at(moved, t0 + s(120));
        let r = h.get("sbc1.adatum.biz").unwrap();
        assert_eq!(r.listener, "sip2");
        let m: Vec<(&str, &str)> = r
            .moves
            .iter()
            .map(|m| (m.from.as_str(), m.to.as_str()))
            .collect();
        assert_eq!(m, [("sip", "sip2")]);
        for i in 0..40 {
            let dc = if i % 2 == 0 { "sip" } else { "sip2" };
            let again = OptionsSeen {
                listener: dc,
                ..seen(&t)
            };
            h.options_received_at(again, t0 + s(180 + i));
        }
        assert_eq!(h.get("sbc1.adatum.biz").unwrap().moves.len(), MOVES_KEPT);
    }

    #[test]
    fn dr_opt_3_the_proxy_answers_the_first_options_at_once_then_every_60_s() {
        let h = Health::new(Timing::default());
        let t0 = Instant::now();
        assert!(
            h.tick(t0).due.is_empty(),
            "never first to an SBC not heard from"
        );
        let t = trunk(true);
        h.options_received_at(seen(&t), t0);
        assert_eq!(h.next_deadline(), Some(t0));
        assert_eq!(h.tick(t0).due.len(), 1);
        assert!(
            h.tick(t0 + s(100)).due.is_empty(),
            "one in flight at a time"
        );
        h.outbound_result("sbc1.adatum.biz", Ok(200), t0 + s(1));
        assert_eq!(h.next_deadline(), Some(t0 + s(1)), "its state changed");
        assert!(h.tick(t0 + s(1)).due.is_empty());
        assert_eq!(h.next_deadline(), Some(t0 + s(60)));
        assert!(h.tick(t0 + s(59)).due.is_empty());
        assert_eq!(h.tick(t0 + s(60)).due.len(), 1);
    }

    #[test]
    fn dr_opt_3_no_options_to_trunks_without_send_options() {
        let h = Health::new(Timing::default());
        let t = trunk(false);
        let t0 = Instant::now();
        h.options_received_at(seen(&t), t0);
        assert!(h.tick(t0 + s(600)).due.is_empty());
    }

    #[test]
    fn dr_opt_3_active_when_both_ways_answered_then_warning_then_inactive() {
        let h = Health::new(Timing::default());
        let t = trunk(true);
        let t0 = Instant::now();
        h.options_received_at(seen(&t), t0);
        let first = h.tick(t0);
        assert_eq!(first.transitions, vec![]);
        assert_eq!(first.due.len(), 1);
        assert_eq!(h.get("sbc1.adatum.biz").unwrap().state, SbcState::Warning);
        h.outbound_result("sbc1.adatum.biz", Ok(200), t0 + s(1));
        let changes = h.tick(t0 + s(1)).transitions;
        assert_eq!(changes.len(), 1);
        assert_eq!(
            (changes[0].from, changes[0].to),
            (SbcState::Warning, SbcState::Active)
        );
        // No OPTIONS from the SBC after t0: active until 3 minutes, inactive at 5.
        let r = h.get("sbc1.adatum.biz").unwrap();
        let timing = Timing::default();
        assert_eq!(r.state_at(t0 + s(179), &timing), SbcState::Active);
        assert_eq!(r.state_at(t0 + s(180), &timing), SbcState::Warning);
        assert_eq!(r.state_at(t0 + s(299), &timing), SbcState::Warning);
        assert_eq!(r.state_at(t0 + s(300), &timing), SbcState::Inactive);
        assert!(h.next_deadline().is_some_and(|d| d <= t0 + s(180)));
    }

    #[test]
    fn dr_opt_3_a_silent_sbc_changes_state_on_time_and_then_leaves_nothing_due() {
        // Without the proxy's own OPTIONS, the only deadlines are the state thresholds;
        // once all have passed nothing is due (the health task sleeps, never spins).
        let h = Health::new(Timing::default());
        let t = trunk(false);
        let t0 = Instant::now();
        h.options_received_at(seen(&t), t0);
        let mut now = t0;
        let mut seen_states = vec![];
        while let Some(d) = h.next_deadline() {
            assert!(d >= now, "a deadline never lies behind the last tick");
            now = d;
            seen_states.extend(h.tick(now).transitions.into_iter().map(|t| (t.to, now)));
        }
        assert_eq!(seen_states, vec![(SbcState::Inactive, t0 + s(300))]);
        assert!(now <= t0 + s(300));
    }

    #[test]
    fn dr_opt_3_many_sbcs_each_tick_looks_only_at_those_due() {
        // 1,000 SBCs heard from a second apart, for ten intervals of the proxy's
        // OPTIONS, every one answered: each gets exactly one OPTIONS per interval and
        // the queue holds about one entry per SBC, never a growing pile of stale ones.
        let h = Health::new(Timing::default());
        let t = trunk(true);
        let t0 = Instant::now();
        let names: Vec<String> = (0..1000).map(|i| format!("sbc{i}.adatum.biz")).collect();
        let mut sent = HashMap::<String, u32>::new();
        let mut now = t0;
        let end = t0 + s(600);
        let mut next_heard = 0usize;
        while now < end {
            // Each SBC sends its own OPTIONS every 60 s (at i seconds past the minute
            // for the first 60, then all again).
            let i = next_heard % names.len();
            let mut o = seen(&t);
            o.fqdn = &names[i];
            h.options_received_at(o, now);
            next_heard += 1;
            for r in h.tick(now).due {
                *sent.entry(r.fqdn.clone()).or_default() += 1;
                h.outbound_result(&r.fqdn, Ok(200), now);
            }
            assert!(h.lock().queue.len() <= 2 * names.len());
            now += Duration::from_millis(60);
        }
        assert_eq!(sent.len(), names.len());
        assert!(
            sent.values().all(|&n| (9..=11).contains(&n)),
            "{:?}",
            sent.values().min()
        );
    }

    #[test]
    fn dr_opt_3_an_sbc_that_never_answers_the_proxys_options_goes_inactive() {
        let h = Health::new(Timing::default());
        let t = trunk(true);
        let t0 = Instant::now();
        let timing = Timing::default();
        for minute in 0..10u64 {
            let now = t0 + s(60 * minute);
            // It keeps sending its own OPTIONS; ours time out every time.
            h.options_received_at(seen(&t), now);
            for _ in h.tick(now).due {
                h.outbound_result("sbc1.adatum.biz", Err("408 no answer".into()), now + s(32));
            }
            h.tick(now + s(32));
        }
        let r = h.get("sbc1.adatum.biz").unwrap();
        assert_eq!(r.outbound.failing_since, Some(t0 + s(32)));
        assert_eq!(r.state_at(t0 + s(32 + 299), &timing), SbcState::Warning);
        assert_eq!(r.state_at(t0 + s(32 + 300), &timing), SbcState::Inactive);
        assert_eq!(r.state, SbcState::Inactive);
        // One answer brings it back.
        h.options_received_at(seen(&t), t0 + s(700));
        h.tick(t0 + s(700));
        h.outbound_result("sbc1.adatum.biz", Ok(200), t0 + s(701));
        assert_eq!(
            h.state_at_for_test("sbc1.adatum.biz", t0 + s(701)),
            Some(SbcState::Active)
        );
        assert_eq!(h.tick(t0 + s(701)).transitions.len(), 1);
    }

    impl Health {
        fn state_at_for_test(&self, fqdn: &str, now: Instant) -> Option<SbcState> {
            self.lock()
                .by_fqdn
                .get(fqdn)
                .map(|r| r.state_at(now, &self.timing))
        }
    }

    #[test]
    fn the_proxys_options_go_to_the_contact_and_parse() {
        let local = crate::sip::LocalIdentity::new(
            "sip.pstnhub.microsoft.com",
            5061,
            Transport::Tls,
            "drhub",
            crate::sip::build::Style::Faithful,
        );
        let target = Target {
            sbc: "sbc1.adatum.biz".into(),
            host: "sbc1.adatum.biz".into(),
            port: 5067,
            address: None,
            transport: Transport::Tls,
            insecure_ip: None,
        };
        let req = build_options(&local, &target);
        let m = crate::sip::Stored::new(req).unwrap();
        let m = m.message();
        m.check_request().unwrap();
        assert_eq!(
            m.request_uri().unwrap().unwrap().as_str(),
            "sip:sbc1.adatum.biz:5067;transport=tls"
        );
    }
}
