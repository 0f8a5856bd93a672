//! Inbound calls: admitting an SBC's INVITE (DR-TEN, DR-FORK-6, DR-ERR-1) and one task
//! per call that owns the SBC leg and every fork, so a call's whole story reads top to
//! bottom in [`CallTask::run`] and is logged under one `call{call_id, tenant, user}`
//! span.
//!
//! The task receives everything on one channel: requests from the SBC inside the call
//! (CANCEL, ACK, BYE ...), the outcome of its client transactions, and its own timers
//! (virtual endpoints' scripts, ring timeout, 2xx retransmission). No locks guard call
//! state; the only shared structure is the [`CallTable`] that routes messages to calls.

pub mod fork;
pub mod inbox;
pub mod sip_leg;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::config::{Config, EndpointKind, User, E164};
use crate::diagnostics::{correlation_id, Diagnostic, Rejection};
use crate::directory::{classify_target, TargetError};
use crate::endpoint::registrar::Transport;
use crate::endpoint::service::{self, Endpoints};
use crate::sdp::{self, MediaConfig, Offer};
use crate::sip::build::{RequestWriter, ResponseWriter, Style};
use crate::sip::{HeaderName, Limits, Message, Status};
use crate::transaction::{
    Branch, ClientTxEvent, Final, LayerHandle, Provisional, ServerOutcome, ServerTx, TransportKind,
};
use crate::transport::FlowHandle;
use fork::{best_final, schedule, ForkState, Step};

/// Where the transaction layer sends bytes: an SBC's connection (its flow), or a UDP
/// endpoint. Cloned into every transaction.
#[derive(Debug, Clone)]
pub enum Dest {
    Flow(FlowHandle),
    Udp {
        socket: Arc<tokio::net::UdpSocket>,
        addr: std::net::SocketAddr,
    },
}

impl Dest {
    /// Sends without waiting; false when the bytes could not be queued or sent.
    pub fn send(&self, bytes: Bytes) -> bool {
        match self {
            Dest::Flow(flow) => flow.send(bytes),
            Dest::Udp { socket, addr } => socket.try_send_to(&bytes, *addr).is_ok(),
        }
    }
}

/// The SBC side of a dialog set: Call-ID and the SBC's From tag. Every request the SBC
/// sends for a call (CANCEL, ACK, BYE, re-INVITE) carries both.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallKey {
    pub call_id: String,
    pub from_tag: String,
}

impl CallKey {
    /// The key of a request from the SBC; `None` without Call-ID or From tag.
    pub fn of(msg: &Message<'_>) -> Option<CallKey> {
        let call_id = msg.call_id()?.to_owned();
        let from = msg.from()?.ok()?;
        Some(CallKey {
            call_id,
            from_tag: from.tag()?.to_owned(),
        })
    }
}

/// What a call task is told from outside.
#[derive(Debug)]
pub enum CallEvent {
    /// The SBC cancelled the INVITE; answer the CANCEL through `tx` (DR-FORK-8).
    Cancel { tx: ServerTx, request: Bytes },
    /// An ACK for the 2xx (DR-FORK-8).
    Ack,
    /// A request inside the call (BYE, re-INVITE, INFO ...).
    Request { tx: ServerTx, request: Bytes },
    /// A response to a request the call sent (to the SBC or an endpoint).
    Client(ClientTxEvent),
    /// A response that matched no transaction, on one of the call's endpoint legs (a 2xx
    /// retransmitted after Timer M: the call must ACK it again).
    Stray { response: Bytes, source: Dest },
}

/// A call's inbox (see [`inbox`] for why it is not a tokio channel).
pub type CallSender = inbox::Sender<CallEvent>;

/// Live calls by SBC dialog set. Also counts calls for the overload rules (DR-ERR-1)
/// and wakes the shutdown drain when the last call ends.
#[derive(Debug, Default)]
pub struct CallTable {
    map: Mutex<HashMap<CallKey, CallSender>>,
    /// Endpoint legs by the Call-ID drhub gave them.
    legs: Mutex<HashMap<String, CallSender>>,
    idle: Notify,
    /// Calls up per trunk FQDN, for `max_concurrent_sessions` (DR-TEN-6).
    trunk_calls: Mutex<HashMap<String, (usize, Option<u32>)>>,
    /// Admission rate window: (second, count).
    rate: Mutex<(u64, u32)>,
    pub started: AtomicU64,
    pub answered: AtomicU64,
    pub failed: AtomicU64,
}

impl CallTable {
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Routes an event to a live call; gives it back when there is none, so the caller
    /// can still answer the transaction inside it (hence the large `Err`, by design).
    #[allow(clippy::result_large_err)]
    pub fn send(&self, key: &CallKey, ev: CallEvent) -> Result<(), CallEvent> {
        match self.lock().get(key) {
            Some(tx) => tx.send(ev),
            None => Err(ev),
        }
    }

    /// Routes an event to the call owning an endpoint leg with this Call-ID.
    #[allow(clippy::result_large_err)]
    pub fn send_leg(&self, call_id: &str, ev: CallEvent) -> Result<(), CallEvent> {
        match self.legs_lock().get(call_id) {
            Some(tx) => tx.send(ev),
            None => Err(ev),
        }
    }

    fn add_leg(&self, call_id: String, tx: CallSender) {
        self.legs_lock().insert(call_id, tx);
    }

    fn remove_leg(&self, call_id: &str) {
        self.legs_lock().remove(call_id);
    }

    fn legs_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CallSender>> {
        self.legs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn contains(&self, key: &CallKey) -> bool {
        self.lock().contains_key(key)
    }

    /// DR-TEN-6: counts a call on its trunk. At 90 % of `max_concurrent_sessions` the
    /// trunk is flagged and a warning is logged once per crossing; no call is refused.
    fn trunk_call_started(&self, trunk: &str, max: Option<u32>) {
        let mut map = self.trunk_calls.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(trunk.to_owned()).or_insert((0, max));
        entry.0 += 1;
        if let Some(max) = max {
            let threshold = (max as usize * 9).div_ceil(10).max(1);
            if entry.0 == threshold {
                warn!(
                    trunk,
                    sessions = entry.0,
                    max,
                    "trunk at 90% of max_concurrent_sessions (alert only: calls are not refused)"
                );
            }
        }
    }

    fn trunk_call_ended(&self, trunk: &str) {
        let mut map = self.trunk_calls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = map.get_mut(trunk) {
            entry.0 = entry.0.saturating_sub(1);
            if entry.0 == 0 {
                map.remove(trunk);
            }
        }
    }

    /// Calls up on a trunk, and whether it is at 90 % of its `max_concurrent_sessions`
    /// (the status flag of DR-TEN-6).
    pub fn trunk_load(&self, trunk: &str) -> (usize, bool) {
        let map = self.trunk_calls.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(trunk) {
            Some((n, Some(max))) => (*n, *n * 10 >= *max as usize * 9),
            Some((n, None)) => (*n, false),
            None => (0, false),
        }
    }

    /// Resolves once no call is up.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// DR-ERR-1: one more call per second allowed?
    fn admit_rate(&self, max_per_second: u32) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut r = self.rate.lock().unwrap_or_else(|p| p.into_inner());
        if r.0 != now {
            *r = (now, 0);
        }
        r.1 += 1;
        r.1 <= max_per_second
    }

    fn insert(&self, key: CallKey, tx: CallSender) {
        self.lock().insert(key, tx);
    }

    fn remove(&self, key: &CallKey) {
        let empty = {
            let mut map = self.lock();
            map.remove(key);
            map.is_empty()
        };
        if empty {
            self.idle.notify_waiters();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CallKey, CallSender>> {
        // Single insert/remove operations keep the map consistent even after a panic.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What every call shares.
pub struct CallCtx {
    pub config: Arc<Config>,
    pub layer: LayerHandle<Dest>,
    pub calls: Arc<CallTable>,
    pub endpoints: Option<Arc<Endpoints>>,
    pub flows: Arc<crate::transport::Flows>,
    pub media: MediaConfig,
    next_port: AtomicU16,
}

impl CallCtx {
    pub fn new(
        config: Arc<Config>,
        layer: LayerHandle<Dest>,
        calls: Arc<CallTable>,
        endpoints: Option<Arc<Endpoints>>,
        flows: Arc<crate::transport::Flows>,
    ) -> CallCtx {
        let mut media = MediaConfig::new(config.media.address);
        media.port_min = config.media.port_min;
        media.port_max = config.media.port_max;
        CallCtx {
            next_port: AtomicU16::new(even(config.media.port_min)),
            config,
            layer,
            calls,
            endpoints,
            flows,
            media,
        }
    }

    /// An even RTP port from the configured range, round robin. No socket is opened:
    /// drhub emulates signalling; the port only has to look real.
    fn port(&self) -> u16 {
        let (min, max) = (
            even(self.media.port_min),
            self.media.port_max.saturating_sub(1),
        );
        let p = self.next_port.fetch_add(2, Ordering::Relaxed);
        if p < min || p > max {
            self.next_port.store(min + 2, Ordering::Relaxed);
            min
        } else {
            p
        }
    }
}

fn even(p: u16) -> u16 {
    p + (p & 1)
}

/// Everything admission learned about a call, handed to its task.
pub struct NewCall {
    pub tx: ServerTx,
    pub invite: Bytes,
    pub sbc: FlowHandle,
    pub key: CallKey,
    pub tenant: String,
    pub user: User,
    pub bypass: bool,
    pub offer: Offer,
    pub media_answer: Bytes,
    pub caller: Option<E164>,
    pub caller_name: Option<String>,
    /// The SBC's trunk and its `max_concurrent_sessions` (DR-TEN-6, alert only).
    pub trunk: String,
    pub max_sessions: Option<u32>,
}

/// Admission checks after DR-VAL passed (DR-TEN-3..5, DR-FORK-6, DR-ERR-1): the user,
/// the caller, the offer. `Err` carries the rejection to answer with.
pub fn admit(
    ctx: &CallCtx,
    proxy: &crate::proxy::Proxy,
    msg: &Message<'_>,
    accepted: &crate::policy::Accepted<'_>,
    draining: bool,
) -> Result<Admitted, Rejection> {
    let dir = proxy.directory();
    // DR-ERR-1
    if draining {
        return Err(Rejection::new(Diagnostic::Overloaded).with("detail", "shutting down"));
    }
    if ctx.calls.len() >= ctx.config.calls.max_concurrent {
        return Err(
            Rejection::new(Diagnostic::Overloaded).with("detail", "max_concurrent calls reached")
        );
    }
    if !ctx.calls.admit_rate(ctx.config.calls.max_per_second) {
        return Err(Rejection::new(Diagnostic::Overloaded).with("detail", "max_per_second reached"));
    }
    // DR-TEN-3/4
    let ruri = msg
        .request_uri()
        .and_then(Result::ok)
        .ok_or_else(|| Rejection::new(Diagnostic::Malformed("Malformed Request-URI")))?;
    let phone = ruri
        .param("user")
        .and_then(|p| p.value)
        .is_some_and(|v| v.eq_ignore_ascii_case("phone"));
    let host = ruri.host().map(|h| h.to_string()).unwrap_or_default();
    let uri_text = ruri.as_str().to_owned();
    let target = classify_target(ruri.user(), phone, &host).map_err(|e| {
        let why = match e {
            TargetError::NumberWithoutPlus => "phone number without a leading + (E.164 required)",
            TargetError::NotANumber => "user=phone but the user part is not a phone number",
            TargetError::NoUser => "Request-URI has no user part",
        };
        Rejection::new(Diagnostic::NumberNotFound)
            .with("uri", uri_text.clone())
            .with("detail", why)
    })?;
    let user = dir
        .user_for_target(accepted.tenant, &target)
        .cloned()
        .ok_or_else(|| {
            Rejection::new(Diagnostic::NumberNotFound)
                .with("uri", uri_text.clone())
                .with("tenant", dir.tenant(accepted.tenant).id.clone())
        })?;
    // DR-TEN-5
    let from = msg.from().and_then(Result::ok);
    let caller = from
        .as_ref()
        .and_then(|f| f.uri().user())
        .and_then(E164::parse_dialled);
    if let Some(number) = &caller {
        if let Some(pattern) = dir.blocked_by(accepted.tenant, number) {
            return Err(Rejection::new(Diagnostic::CallerBlocked)
                .with("caller", number.to_string())
                .with("pattern", pattern.to_string()));
        }
    }
    let caller_name = caller
        .as_ref()
        .and_then(|n| dir.caller_name(accepted.tenant, n))
        .map(str::to_owned);
    // DR-FORK-6: an SDP offer is required.
    let is_sdp = msg.header(HeaderName::ContentType).is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
    });
    if msg.body().is_empty() || !is_sdp {
        return Err(Rejection::new(Diagnostic::DelayedOffer).with(
            "content_type",
            msg.header(HeaderName::ContentType).unwrap_or("none"),
        ));
    }
    let offer = Offer::parse(msg.body())
        .map_err(|e| Rejection::new(Diagnostic::NoAcceptableMedia).with("detail", e.to_string()))?;
    // The media processor's answer for the whole call; it also refuses offers whose
    // codecs drhub cannot answer (488 before ringing anyone).
    let media_answer = sdp::media_processor_answer(&offer, &ctx.media, ctx.port(), session_id())
        .map(|a| Bytes::copy_from_slice(a.as_bytes()))
        .map_err(|e| Rejection::new(Diagnostic::NoAcceptableMedia).with("detail", e.to_string()))?;
    if !has_forks(ctx, &user) {
        return Err(
            Rejection::new(Diagnostic::NoEndpoints).with("user", user.sip_address.to_string())
        );
    }
    Ok(Admitted {
        user,
        caller,
        caller_name,
        offer,
        media_answer,
    })
}

/// What admission found: the callee, the caller, the parsed offer and the media
/// processor's answer to it.
pub struct Admitted {
    pub user: User,
    pub caller: Option<E164>,
    pub caller_name: Option<String>,
    pub offer: Offer,
    pub media_answer: Bytes,
}

/// Whether the user has any endpoint a call can ring now.
fn has_forks(ctx: &CallCtx, user: &User) -> bool {
    user.endpoints.iter().any(|e| match &e.kind {
        EndpointKind::Virtual(_) => true,
        EndpointKind::Sip { contact } => !sip_targets(ctx, user, contact.as_deref()).is_empty(),
    })
}

/// Where a SIP endpoint of the user can be rung: every registered contact, plus the
/// static contact of the config (UDP, an IP address and port: a lab phone or sipp).
fn sip_targets(ctx: &CallCtx, user: &User, contact: Option<&str>) -> Vec<service::Target> {
    let Some(endpoints) = &ctx.endpoints else {
        return Vec::new();
    };
    let mut targets = endpoints.targets(&user.sip_address);
    if let Some(c) = contact {
        match static_target(c) {
            Some(t) => targets.push(t),
            None => warn!(
                contact = c,
                "static contact is not sip:user@ip:port; skipped"
            ),
        }
    }
    targets
}

fn static_target(contact: &str) -> Option<service::Target> {
    let uri = crate::sip::Uri::parse(contact).ok()?;
    let ip = uri.host()?.ip()?;
    let transport = match uri.param("transport").and_then(|p| p.value) {
        Some(t) if t.eq_ignore_ascii_case("tcp") => Transport::Tcp,
        _ => Transport::Udp,
    };
    Some(service::Target {
        uri: contact.to_owned(),
        addr: std::net::SocketAddr::new(ip, uri.port().unwrap_or(5060)),
        transport,
    })
}

fn transport_kind(t: Transport) -> TransportKind {
    match t {
        Transport::Udp => TransportKind::Unreliable,
        Transport::Tcp => TransportKind::Reliable,
    }
}

/// Starts the call task (DR-FORK-1: 100 Trying first, then every fork at once).
pub fn spawn(ctx: Arc<CallCtx>, new: NewCall) {
    let (tx, rx) = inbox::inbox();
    ctx.calls.insert(new.key.clone(), tx.clone());
    ctx.calls.started.fetch_add(1, Ordering::Relaxed);
    let span = info_span!("call", call_id = %new.key.call_id, tenant = %new.tenant, user = %new.user.sip_address);
    let trunk = new.trunk.clone();
    ctx.calls.trunk_call_started(&trunk, new.max_sessions);
    let table = ctx.calls.clone();
    let mut task = CallTask::new(ctx, new, tx, rx);
    // The task is the future's one capture and `run` only borrows it, so the call's
    // state is stored once in the spawned future (an `async fn run(self)` would hold it
    // twice: as the argument and as the moved-in local).
    tokio::spawn(
        async move {
            let pending_ack = task.run().await;
            // Out of the table already; the call's state goes before the ACK wait.
            drop(task);
            table.trunk_call_ended(&trunk);
            if let Some(mut answered) = pending_ack {
                if answered.outcome().await == ServerOutcome::AckTimeout {
                    warn!("the SBC did not ACK the final response (Timer H)");
                }
            }
        }
        .instrument(span),
    );
}

/// One fork: the leg towards one endpoint, with its own To tag (DR-FORK-2).
///
/// A call keeps its forks until it ends, so a fork holds only what is still needed after
/// the answer, in exact-size storage; the larger SIP leg is boxed so that the common
/// virtual fork stays small.
struct Fork {
    name: String,
    to_tag: Tag,
    state: ForkState,
    /// A virtual endpoint's script as timed steps (exact size).
    steps: Box<[(Duration, Step)]>,
    next_step: usize,
    /// The SDP this fork would answer with (bypass: its own; else the media processor's).
    answer: Option<Bytes>,
    /// `Some(bypass)` for a scripted virtual endpoint: whether it answers with SDP of its
    /// own on a bypass trunk (DR-ICE-1). `None` for voicemail and SIP forks.
    scripted: Option<bool>,
    /// The SIP leg, for a SIP endpoint; `None` for a virtual one.
    sip: Option<Box<sip_leg::SipLeg>>,
}

/// Where the call as a whole stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// INVITE pending: forks ringing.
    Ringing,
    /// 200 sent on fork `n`, waiting for the ACK (2xx retransmitted meanwhile).
    AwaitingAck(usize),
    /// Dialog confirmed on fork `n`.
    Up(usize),
    /// We sent BYE to the SBC; waiting for its answer.
    Ending,
    Done,
}

/// What a call needs only to start its forks: the callee's record, the parsed offer and
/// the caller. Boxed, and dropped once the forks are out, so that it is not part of the
/// call's inline state for the rest of the call.
struct Setup {
    user: User,
    offer: Offer,
    caller: Option<E164>,
    caller_name: Option<String>,
}

/// One call's whole state, owned by its task (see the module docs). It lives inline in
/// the spawned future for as long as the call is up, so it holds only what the call
/// still needs; what only the start needs is in [`Setup`].
struct CallTask {
    ctx: Arc<CallCtx>,
    invite: Bytes,
    sbc: FlowHandle,
    key: CallKey,
    /// Until the forks are started.
    setup: Option<Box<Setup>>,
    /// The callee's voicemail delay (DR-FORK-9), the one part of the user's record the
    /// call needs after the start.
    voicemail_after: Duration,
    bypass: bool,
    /// The INVITE's server transaction until its final response.
    tx: Option<ServerTx>,
    answered: Option<crate::transaction::Answered>,
    forks: Vec<Fork>,
    /// Non-bypass trunks: the media processor's one answer, and whether its 183 went out.
    media_answer: Bytes,
    sent_183: bool,
    phase: Phase,
    started: Instant,
    ring_deadline: Instant,
    /// 2xx retransmission (RFC 3261 §13.3.1.4): next time and interval.
    retransmit: Option<(Instant, Duration)>,
    ack_deadline: Option<Instant>,
    final_2xx: Option<Bytes>,
    /// The INVITE got a 2xx (its ACK belongs to the dialog, not to Timer H).
    answered_2xx: bool,
    /// Voicemail fork index once the call was deflected (DR-FORK-9).
    voicemail: Option<usize>,
    local_cseq: u32,
    self_tx: CallSender,
    rx: inbox::Receiver<CallEvent>,
}

impl CallTask {
    fn new(
        ctx: Arc<CallCtx>,
        new: NewCall,
        self_tx: CallSender,
        rx: inbox::Receiver<CallEvent>,
    ) -> CallTask {
        let now = Instant::now();
        let ring_deadline = now + ctx.config.calls.ring_timeout;
        CallTask {
            invite: new.invite,
            sbc: new.sbc,
            key: new.key,
            voicemail_after: new.user.voicemail_answer_after,
            setup: Some(Box::new(Setup {
                user: new.user,
                offer: new.offer,
                caller: new.caller,
                caller_name: new.caller_name,
            })),
            bypass: new.bypass,
            tx: Some(new.tx),
            answered: None,
            forks: Vec::new(),
            media_answer: new.media_answer,
            sent_183: false,
            phase: Phase::Ringing,
            started: now,
            ring_deadline,
            retransmit: None,
            ack_deadline: None,
            final_2xx: None,
            answered_2xx: false,
            voicemail: None,
            local_cseq: 0,
            self_tx,
            rx,
            ctx,
        }
    }

    /// Runs the call to its end and takes it out of the call table; returns the INVITE's
    /// failed final response when the SBC's ACK for it is still outstanding.
    async fn run(&mut self) -> Option<crate::transaction::Answered> {
        self.send_provisional(100, "Trying", None, None);
        if let Some(mut setup) = self.setup.take() {
            self.start_forks(&mut setup);
            // Compute every answer a fork may need now, then drop the parsed offer: a
            // call keeps a few hundred bytes of SDP instead of the whole parsed session.
            for i in 0..self.forks.len() {
                if self.bypass && self.forks[i].scripted == Some(true) {
                    self.endpoint_answer(i, &setup.offer);
                }
            }
            info!(
                forks = self.forks.len(),
                caller = %setup.caller.as_ref().map_or("-".to_owned(), ToString::to_string),
                caller_name = setup.caller_name.as_deref().unwrap_or("-"),
                bypass = self.bypass,
                "INVITE accepted; ringing every endpoint"
            );
        }
        while self.phase != Phase::Done {
            let deadline = self.next_deadline();
            tokio::select! {
                ev = self.rx.recv() => self.on_event(ev),
                _ = sleep_until_opt(deadline) => self.on_timer(Instant::now()),
            }
        }
        for f in &self.forks {
            if let Some(leg) = &f.sip {
                self.ctx.calls.remove_leg(&leg.call_id);
            }
        }
        self.ctx.calls.remove(&self.key);
        // A non-2xx final still waits for the SBC's ACK (Timer H); the caller awaits it
        // after the call has left the table. After a 2xx the dialog saw its ACK already.
        match self.answered.take() {
            Some(answered) if !self.answered_2xx => Some(answered),
            _ => None,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut consider = |t: Instant| d = Some(d.map_or(t, |x| x.min(t)));
        if self.phase == Phase::Ringing {
            consider(self.ring_deadline);
        }
        for f in &self.forks {
            if let Some((off, _)) = f.steps.get(f.next_step) {
                if f.state.is_live()
                    || (f.state == ForkState::Answered && self.phase != Phase::Ringing)
                {
                    consider(self.started + *off);
                }
            }
        }
        if let Some((t, _)) = self.retransmit {
            consider(t);
        }
        if let Some(t) = self.ack_deadline {
            consider(t);
        }
        d
    }

    fn start_forks(&mut self, setup: &mut Setup) {
        let endpoints = std::mem::take(&mut setup.user.endpoints);
        self.forks.reserve_exact(endpoints.len());
        for e in endpoints {
            match e.kind {
                EndpointKind::Virtual(script) => {
                    self.forks.push(Fork {
                        name: e.name,
                        to_tag: Tag::random(),
                        state: ForkState::Trying,
                        steps: schedule(&script).into_boxed_slice(),
                        next_step: 0,
                        answer: None,
                        scripted: Some(script.bypass),
                        sip: None,
                    });
                }
                EndpointKind::Sip { contact } => {
                    for target in sip_targets(&self.ctx, &setup.user, contact.as_deref()) {
                        self.start_sip_fork(&e.name, target, setup);
                    }
                }
            }
        }
        // Forks live as long as the call: no spare capacity.
        self.forks.shrink_to_fit();
        if self.forks.is_empty() {
            self.fail_call(
                Rejection::new(Diagnostic::NoEndpoints)
                    .with("user", setup.user.sip_address.to_string()),
            );
        }
    }

    fn on_timer(&mut self, now: Instant) {
        if self.phase == Phase::Ringing && now >= self.ring_deadline {
            info!(after = ?self.ctx.config.calls.ring_timeout, "nobody answered: ring timeout");
            self.cancel_forks(None);
            let status = self.ctx.config.calls.ring_timeout_status;
            self.fail_call(Rejection::new(Diagnostic::RingTimeout).with_status(status));
            return;
        }
        // Virtual endpoints' scripts.
        for i in 0..self.forks.len() {
            while let Some((off, step)) = self.forks[i].steps.get(self.forks[i].next_step).copied()
            {
                if self.started + off > now {
                    break;
                }
                self.forks[i].next_step += 1;
                self.on_step(i, step);
                if self.phase == Phase::Done {
                    return;
                }
            }
        }
        if let Some((t, interval)) = self.retransmit {
            if now >= t {
                if let (Some(answered), Some(bytes)) = (&self.answered, &self.final_2xx) {
                    if let Ok(f) = Final::new(bytes.clone()) {
                        let _ = answered.retransmit_2xx(f);
                    }
                }
                let next = (interval * 2).min(self.ctx.config.timers.t2);
                self.retransmit = Some((now + next, next));
            }
        }
        if let Some(t) = self.ack_deadline {
            if now >= t {
                // RFC 3261 §13.3.1.4: no ACK within 64*T1: end the dialog with BYE.
                self.retransmit = None;
                self.ack_deadline = None;
                let r = Rejection::new(Diagnostic::SbcDidNotAck);
                warn!(
                    code = r.entry().code,
                    "the SBC did not ACK the 200 OK; sending BYE"
                );
                self.send_bye(Some(&r));
            }
        }
    }

    /// A scripted endpoint does something (DR-FORK-2..5, DR-FORK-9).
    fn on_step(&mut self, i: usize, step: Step) {
        let live = self.forks[i].state.is_live() && self.phase == Phase::Ringing;
        match step {
            Step::Ring if live => {
                self.forks[i].state = ForkState::Ringing;
                let tag = self.forks[i].to_tag;
                debug!(fork = %self.forks[i].name, "call progress -> 180");
                self.send_provisional(180, "Ringing", Some(tag.as_str()), None);
            }
            Step::MediaAnswer if live => {
                let Some(answer) = self.fork_answer(i) else {
                    return;
                };
                self.forks[i].state = ForkState::Early;
                // DR-FORK-3: non-bypass trunks see one 183 per call, the media processor's.
                if !self.bypass && self.sent_183 {
                    debug!(fork = %self.forks[i].name, "media answer: 183 already sent for this call");
                    return;
                }
                self.sent_183 = true;
                let tag = self.forks[i].to_tag;
                debug!(fork = %self.forks[i].name, "media answer -> 183 with SDP");
                self.send_provisional(
                    183,
                    "Session Progress",
                    Some(tag.as_str()),
                    Some(&answer[..]),
                );
            }
            Step::Answer if live => self.accept(i),
            Step::Reject(code) if live => {
                debug!(fork = %self.forks[i].name, code, "endpoint declined");
                self.forks[i].state = ForkState::Failed(code);
                self.check_all_failed();
            }
            Step::RedirectVoicemail if live => {
                // DR-FORK-9: the proxy ACKs the 3xx (a virtual endpoint needs none) and
                // sends the call to the user's voicemail; every other fork stops ringing.
                info!(fork = %self.forks[i].name, "call deflected to voicemail (303 opaque=app:voicemail)");
                self.forks[i].state = ForkState::Failed(303);
                self.cancel_forks(None);
                self.ring_voicemail();
            }
            Step::RedirectNumber if live => {
                warn!(fork = %self.forks[i].name, "redirect to a number needs forwarding (DR-FWD), not implemented yet; fork fails");
                self.forks[i].state = ForkState::Failed(480);
                self.check_all_failed();
            }
            Step::HangUp if matches!(self.phase, Phase::Up(n) | Phase::AwaitingAck(n) if n == i) => {
                info!(fork = %self.forks[i].name, "endpoint hung up; BYE to the SBC");
                self.send_bye(None);
            }
            _ => {}
        }
    }

    fn ring_voicemail(&mut self) {
        let after = self.voicemail_after;
        let offset = self.started.elapsed() + after;
        self.forks.push(Fork {
            name: "voicemail".into(),
            to_tag: Tag::random(),
            state: ForkState::Trying,
            steps: Box::new([(offset, Step::Answer)]),
            next_step: 0,
            answer: None,
            scripted: None,
            sip: None,
        });
        self.voicemail = Some(self.forks.len() - 1);
    }

    /// The SDP a fork answers with: on bypass trunks the endpoint's own (voicemail is a
    /// cloud service, so always the media processor's), else the call's one
    /// media-processor answer. A virtual endpoint's own answer is computed at the start
    /// ([`CallTask::endpoint_answer`]); `None` when that failed.
    fn fork_answer(&self, i: usize) -> Option<Bytes> {
        let endpoint_sdp =
            self.bypass && (self.forks[i].sip.is_some() || self.forks[i].scripted == Some(true));
        if !endpoint_sdp {
            return Some(self.media_answer.clone());
        }
        match &self.forks[i].sip {
            Some(leg) => leg.sdp.clone(),
            None => self.forks[i].answer.clone(),
        }
    }

    /// A scripted endpoint's own SDP answer to the SBC's offer (bypass trunks, DR-ICE-1).
    fn endpoint_answer(&mut self, i: usize, offer: &Offer) {
        let a = sdp::endpoint_answer(
            offer,
            self.ctx.config.media.address,
            self.ctx.port(),
            session_id(),
        );
        self.forks[i].answer = a
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .map_err(|e| warn!(error = %e, "endpoint SDP answer failed"))
            .ok();
    }

    /// DR-FORK-5: 200 with SDP on the fork's To tag; every other fork is cancelled.
    fn accept(&mut self, i: usize) {
        let Some(answer) = self.fork_answer(i) else {
            self.forks[i].state = ForkState::Failed(488);
            self.check_all_failed();
            return;
        };
        self.forks[i].state = ForkState::Answered;
        self.cancel_forks(Some(i));
        let tag = self.forks[i].to_tag;
        let bytes = self.response(200, "OK", Some(tag.as_str()), Some(&answer[..]));
        let Some(tx) = self.tx.take() else { return };
        let Ok(f) = Final::new(bytes.clone()) else {
            return;
        };
        self.answered = Some(tx.respond(f));
        self.final_2xx = Some(bytes);
        self.answered_2xx = true;
        let t1 = self.ctx.config.timers.t1;
        self.retransmit = Some((Instant::now() + t1, t1));
        self.ack_deadline = Some(Instant::now() + 64 * t1);
        self.phase = Phase::AwaitingAck(i);
        self.ctx.calls.answered.fetch_add(1, Ordering::Relaxed);
        info!(fork = %self.forks[i].name, after = ?self.started.elapsed(), "call accepted -> 200 OK");
    }

    /// Stops every live fork except `keep`. SIP forks will get CANCEL with
    /// `Reason: SIP;cause=200;text="Call completed elsewhere"` (DR-FORK-5).
    fn cancel_forks(&mut self, keep: Option<usize>) {
        let reason = match keep {
            Some(_) => "SIP;cause=200;text=\"Call completed elsewhere\"",
            None => "SIP;cause=487;text=\"Request terminated\"",
        };
        for i in 0..self.forks.len() {
            if Some(i) == keep || !self.forks[i].state.is_live() {
                continue;
            }
            self.forks[i].state = ForkState::Cancelled;
            let send_now = match &mut self.forks[i].sip {
                Some(leg) if leg.got_provisional => true,
                Some(leg) => {
                    // RFC 3261 §9.1: no CANCEL before a provisional; send it on the first.
                    leg.cancel_pending = Some(reason);
                    false
                }
                None => false,
            };
            if send_now {
                self.send_cancel(i, reason);
            }
        }
    }

    fn send_cancel(&mut self, i: usize, reason: &str) {
        let Some(leg) = &self.forks[i].sip else {
            return;
        };
        let Ok(Status::Complete(inv)) = Message::parse(&leg.invite, &OWN) else {
            return;
        };
        match crate::transaction::build_cancel(&inv, &[("Reason", reason)]) {
            Ok(cancel) => {
                let kind = transport_kind(leg.transport);
                if let Err(e) = self
                    .ctx
                    .layer
                    .send_request(cancel, leg.dest.clone(), kind, |_| {})
                {
                    warn!(fork = %self.forks[i].name, error = %e, "CANCEL not sent");
                }
            }
            Err(e) => warn!(fork = %self.forks[i].name, error = %e, "CANCEL not built"),
        }
    }

    fn start_sip_fork(&mut self, name: &str, target: service::Target, setup: &Setup) {
        let Some(endpoints) = &self.ctx.endpoints else {
            return;
        };
        let dest = match target.transport {
            Transport::Udp => Dest::Udp {
                socket: endpoints.udp.clone(),
                addr: target.addr,
            },
            Transport::Tcp => match self.ctx.flows.find_by_peer(target.addr) {
                Some(flow) => Dest::Flow(flow),
                None => {
                    warn!(endpoint = name, addr = %target.addr, "TCP endpoint's connection is gone; not rung");
                    return;
                }
            },
        };
        let caller = setup.caller.as_ref().map(ToString::to_string);
        let callee = setup.user.sip_address.to_string();
        let sdp = match Message::parse(&self.invite, &OWN) {
            Ok(Status::Complete(m)) => Bytes::copy_from_slice(m.body()),
            _ => return,
        };
        let leg = sip_leg::SipLeg::new(
            dest.clone(),
            &sip_leg::InviteParams {
                target: &target.uri,
                local: endpoints.local,
                transport: target.transport,
                proxy_fqdn: self.sbc.info.proxy_fqdn.as_str(),
                caller: caller.as_deref(),
                caller_name: setup.caller_name.as_deref(),
                callee: &callee,
                sdp: &sdp,
                server: &self.ctx.config.proxy.server,
            },
        );
        let events = self.self_tx.clone();
        let sent = self.ctx.layer.send_request(
            leg.invite.clone(),
            dest,
            transport_kind(target.transport),
            move |ev| {
                let _ = events.send(CallEvent::Client(ev));
            },
        );
        match sent {
            Ok(key) => {
                self.ctx
                    .calls
                    .add_leg(leg.call_id.clone(), self.self_tx.clone());
                let mut leg = leg;
                leg.client = Some(key);
                debug!(endpoint = name, target = %target.uri, "INVITE to SIP endpoint");
                self.forks.push(Fork {
                    name: name.to_owned(),
                    to_tag: Tag::random(),
                    state: ForkState::Trying,
                    steps: Box::new([]),
                    next_step: 0,
                    answer: None,
                    scripted: None,
                    sip: Some(Box::new(leg)),
                });
            }
            Err(e) => warn!(endpoint = name, error = %e, "INVITE to SIP endpoint not sent"),
        }
    }

    /// A response on a SIP fork's INVITE transaction (DR-FORK-2..5, 7, 9).
    fn on_sip_event(&mut self, i: usize, event: crate::transaction::ClientEvent) {
        use crate::transaction::ClientEvent;
        let bytes = match &event {
            ClientEvent::Provisional(b) | ClientEvent::Final(b) | ClientEvent::Additional2xx(b) => {
                b.clone()
            }
            ClientEvent::Timeout(_) | ClientEvent::TransportError => {
                warn!(fork = %self.forks[i].name, "SIP endpoint did not answer (timeout or transport error)");
                if self.forks[i].state.is_live() {
                    self.forks[i].state = ForkState::Failed(408);
                    self.check_all_failed();
                }
                return;
            }
        };
        let Ok(Status::Complete(resp)) = Message::parse(&bytes, &OWN) else {
            return;
        };
        let code = resp.status_code().unwrap_or(500);
        if let Some(leg) = &mut self.forks[i].sip {
            leg.learn(&resp);
        }
        if (100..200).contains(&code) {
            let pending = self.forks[i].sip.as_mut().and_then(|leg| {
                leg.got_provisional = true;
                leg.cancel_pending.take()
            });
            if let Some(reason) = pending {
                self.send_cancel(i, reason);
                return;
            }
            match code {
                180..=182 => self.on_step(i, Step::Ring),
                183 if self.forks[i].sip.as_ref().is_some_and(|l| l.sdp.is_some()) => {
                    self.on_step(i, Step::MediaAnswer)
                }
                _ => {}
            }
            return;
        }
        if (200..300).contains(&code) {
            // §13.2.2.4: the UAC core ACKs every 2xx, even one it will not keep.
            if let Some(leg) = &self.forks[i].sip {
                let _ = self.ctx.layer.send_stateless(leg.ack(), leg.dest.clone());
            }
            if matches!(event, ClientEvent::Final(_))
                && self.forks[i].state.is_live()
                && self.phase == Phase::Ringing
            {
                self.accept(i);
            } else if !matches!(self.phase, Phase::Up(n) | Phase::AwaitingAck(n) if n == i) {
                // A 2xx from a fork that lost the race: ACK (above), then BYE.
                self.bye_endpoint(i);
            }
            return;
        }
        if !self.forks[i].state.is_live() {
            return;
        }
        if (300..400).contains(&code) {
            let voicemail = resp.contacts().filter_map(Result::ok).any(|c| {
                c.uri()
                    .and_then(|u| u.param("opaque"))
                    .and_then(|p| p.value)
                    .is_some_and(|v| v.eq_ignore_ascii_case("app:voicemail"))
            });
            let step = if voicemail {
                Step::RedirectVoicemail
            } else {
                Step::RedirectNumber
            };
            return self.on_step(i, step);
        }
        self.on_step(i, Step::Reject(code));
    }

    fn bye_endpoint(&mut self, i: usize) {
        let Some(leg) = &mut self.forks[i].sip else {
            return;
        };
        if leg.remote_tag.is_none() {
            return;
        }
        let bye = leg.bye();
        let dest = leg.dest.clone();
        let kind = transport_kind(leg.transport);
        if let Err(e) = self.ctx.layer.send_request(bye, dest, kind, |_| {}) {
            warn!(fork = %self.forks[i].name, error = %e, "BYE to the endpoint not sent");
        }
    }

    /// DR-FORK-7: when no fork is live any more, the best failure goes to the SBC.
    fn check_all_failed(&mut self) {
        if self.phase != Phase::Ringing || self.forks.iter().any(|f| f.state.is_live()) {
            return;
        }
        let codes: Vec<u16> = self
            .forks
            .iter()
            .filter_map(|f| match f.state {
                ForkState::Failed(c) if c >= 400 => Some(c),
                _ => None,
            })
            .collect();
        let status = best_final(&codes).unwrap_or(480);
        let fails: Vec<String> = self
            .forks
            .iter()
            .filter_map(|f| match f.state {
                ForkState::Failed(c) => Some(format!("{}={c}", f.name)),
                _ => None,
            })
            .collect();
        self.fail_call(
            Rejection::new(Diagnostic::AllForksFailed)
                .with_status(status)
                .with("forks", fails.join(",")),
        );
    }

    /// Ends the call before an answer with a final failure to the SBC.
    fn fail_call(&mut self, r: Rejection) {
        let Some(tx) = self.tx.take() else {
            self.phase = Phase::Done;
            return;
        };
        let e = r.entry();
        let status = r.status();
        let id = correlation_id();
        warn!(
            status,
            code = e.code,
            requirement = e.requirement,
            correlation = %id,
            facts = %r.facts_line(),
            "call failed: {}",
            e.text
        );
        let reason = r.reason_header(&id);
        let diag = self
            .ctx
            .config
            .proxy
            .ms_diagnostics
            .then(|| r.ms_diagnostics(self.sbc.info.proxy_fqdn.as_str()));
        let phrase = r.phrase();
        let bytes = self.response_with(status, phrase, Some(Tag::random().as_str()), None, |w| {
            w.header("Reason", &reason);
            if let Some(d) = &diag {
                w.header("ms-diagnostics", d);
            }
        });
        if let Ok(f) = Final::new(bytes) {
            self.answered = Some(tx.respond(f));
        }
        self.ctx.calls.failed.fetch_add(1, Ordering::Relaxed);
        self.phase = Phase::Done;
    }

    fn on_event(&mut self, ev: CallEvent) {
        match ev {
            CallEvent::Cancel { tx, request } => {
                // DR-FORK-8: 200 to the CANCEL, CANCEL every fork, 487 to the INVITE.
                if let Ok(Status::Complete(cancel)) = Message::parse(&request, &OWN) {
                    if let Some(ok) = self.response_to(&cancel, 200, "OK") {
                        let _ = tx.respond(ok);
                    }
                }
                if self.phase == Phase::Ringing {
                    info!("the SBC cancelled the call");
                    self.cancel_forks(None);
                    if let Some(invite_tx) = self.tx.take() {
                        let b = self.response(
                            487,
                            "Request Terminated",
                            Some(Tag::random().as_str()),
                            None,
                        );
                        if let Ok(f) = Final::new(b) {
                            self.answered = Some(invite_tx.respond(f));
                        }
                    }
                    self.phase = Phase::Done;
                }
            }
            CallEvent::Ack => {
                if let Phase::AwaitingAck(i) = self.phase {
                    debug!("ACK for the 200 OK");
                    // No more 2xx retransmissions: the transaction's handle (its key, its
                    // outcome channel) is not needed for the rest of the call.
                    self.answered = None;
                    self.final_2xx = None;
                    self.retransmit = None;
                    self.ack_deadline = None;
                    self.phase = Phase::Up(i);
                }
            }
            CallEvent::Request { tx, request } => self.on_request(tx, &request),
            CallEvent::Stray { response, .. } => {
                // A 2xx retransmitted after the transaction ended: ACK it again.
                if let Ok(Status::Complete(m)) = Message::parse(&response, &OWN) {
                    let leg = self
                        .forks
                        .iter()
                        .filter_map(|f| f.sip.as_ref())
                        .find(|l| Some(l.call_id.as_str()) == m.call_id());
                    if let (Some(leg), true) = (
                        leg,
                        m.status_code().is_some_and(|c| (200..300).contains(&c)),
                    ) {
                        let _ = self.ctx.layer.send_stateless(leg.ack(), leg.dest.clone());
                    }
                }
            }
            CallEvent::Client(ev) => {
                use crate::transaction::ClientEvent;
                let fork = self.forks.iter().position(|f| {
                    f.sip
                        .as_ref()
                        .is_some_and(|l| l.client.as_ref() == Some(&ev.key))
                });
                if let Some(i) = fork {
                    return self.on_sip_event(i, ev.event);
                }
                if let ClientEvent::Final(_)
                | ClientEvent::Timeout(_)
                | ClientEvent::TransportError = ev.event
                {
                    if self.phase == Phase::Ending {
                        debug!("BYE answered (or timed out); call over");
                        self.phase = Phase::Done;
                    }
                }
            }
        }
    }

    /// A request inside the call from the SBC.
    fn on_request(&mut self, tx: ServerTx, request: &Bytes) {
        let Ok(Status::Complete(msg)) = Message::parse(request, &OWN) else {
            // Unreachable in practice: the layer only hands over framed, checked requests.
            drop(tx);
            return;
        };
        let from_endpoint = msg.call_id() != Some(self.key.call_id.as_str());
        if from_endpoint {
            let ok = self.response_to(&msg, 200, "OK");
            if let Some(ok) = ok {
                let _ = tx.respond(ok);
            }
            if msg.method() == Some(crate::sip::Method::Bye) {
                info!("the endpoint hung up (BYE); BYE to the SBC");
                if let Some(f) = self.forks.iter_mut().find(|f| {
                    f.sip
                        .as_ref()
                        .is_some_and(|l| Some(l.call_id.as_str()) == msg.call_id())
                }) {
                    if let Some(leg) = &mut f.sip {
                        leg.remote_tag = None; // the dialog is over on that side
                    }
                }
                self.send_bye(None);
            }
            return;
        }
        match msg.method() {
            Some(crate::sip::Method::Bye) => {
                info!(after = ?self.started.elapsed(), "the SBC hung up (BYE)");
                if let Phase::Up(i) | Phase::AwaitingAck(i) = self.phase {
                    self.bye_endpoint(i);
                }
                if let Some(ok) = self.response_to(&msg, 200, "OK") {
                    let _ = tx.respond(ok);
                }
                // Before the ACK, a BYE also ends 2xx retransmission.
                self.retransmit = None;
                self.ack_deadline = None;
                self.cancel_forks(None);
                self.phase = Phase::Done;
            }
            Some(crate::sip::Method::Invite) | Some(crate::sip::Method::Update) => {
                // Session refresh / re-INVITE: answer with the same SDP (DR-ST arrives later).
                let sdp = match self.phase {
                    Phase::Up(i) | Phase::AwaitingAck(i) => self.fork_answer(i),
                    _ => None,
                };
                let resp = match sdp {
                    Some(a) => self.response_to_with_body(&msg, 200, "OK", &a),
                    None => self.response_to(&msg, 491, "Request Pending"),
                };
                if let Some(resp) = resp {
                    let _ = tx.respond(resp);
                }
            }
            _ => {
                if let Some(ok) = self.response_to(&msg, 200, "OK") {
                    let _ = tx.respond(ok);
                }
            }
        }
    }

    /// BYE towards the SBC on the fork that answered (DR-NH-1: on the SBC's flow).
    fn send_bye(&mut self, reason: Option<&Rejection>) {
        let i = match self.phase {
            Phase::Up(i) | Phase::AwaitingAck(i) => i,
            _ => return,
        };
        let Ok(Status::Complete(inv)) = Message::parse(&self.invite, &OWN) else {
            return;
        };
        let remote_target = inv
            .contact()
            .and_then(Result::ok)
            .and_then(|c| c.uri().map(|u| u.as_str().to_owned()));
        let Some(target) = remote_target else { return };
        self.local_cseq += 1;
        let mut out = BytesMut::new();
        let mut w = RequestWriter::start(&mut out, "BYE", &target);
        let fqdn = self.sbc.info.proxy_fqdn.clone();
        w.header(
            "Via",
            &format!(
                "SIP/2.0/TLS {fqdn}:{};branch={}",
                self.sbc.info.local.port(),
                Branch::generate()
            ),
        );
        w.header("Max-Forwards", "70");
        for rr in inv.values(HeaderName::RecordRoute) {
            w.header("Route", rr);
        }
        let to = inv.header(HeaderName::To).unwrap_or_default();
        w.header("From", &format!("{to};tag={}", self.forks[i].to_tag));
        w.header("To", inv.header(HeaderName::From).unwrap_or_default());
        w.header("Call-ID", &self.key.call_id);
        w.header("CSeq", &format!("{} BYE", self.local_cseq));
        if let Some(r) = reason {
            w.header("Reason", &r.reason_header(&correlation_id()));
            if self.ctx.config.proxy.ms_diagnostics {
                w.header("ms-diagnostics", &r.ms_diagnostics(fqdn.as_str()));
            }
        }
        w.header("User-Agent", &self.ctx.config.proxy.server);
        w.finish(b"");
        let events = self.self_tx.clone();
        let sent = self.ctx.layer.send_request(
            out.freeze(),
            Dest::Flow(self.sbc.clone()),
            TransportKind::Reliable,
            move |ev| {
                let _ = events.send(CallEvent::Client(ev));
            },
        );
        match sent {
            Ok(_) => self.phase = Phase::Ending,
            Err(e) => {
                warn!(error = %e, "could not send BYE to the SBC");
                self.phase = Phase::Done;
            }
        }
    }

    // --- response building ---

    fn send_provisional(
        &mut self,
        code: u16,
        phrase: &str,
        to_tag: Option<&str>,
        body: Option<&[u8]>,
    ) {
        let Some(tx) = &self.tx else { return };
        let bytes = self.response(code, phrase, to_tag, body);
        if let Ok(p) = Provisional::new(bytes) {
            let _ = tx.provisional(p);
        }
    }

    fn response(
        &self,
        code: u16,
        phrase: &str,
        to_tag: Option<&str>,
        body: Option<&[u8]>,
    ) -> Bytes {
        self.response_with(code, phrase, to_tag, body, |_| {})
    }

    /// A response to the INVITE: copied headers, the proxy's Contact, and an SDP body.
    fn response_with(
        &self,
        code: u16,
        phrase: &str,
        to_tag: Option<&str>,
        body: Option<&[u8]>,
        extra: impl FnOnce(&mut ResponseWriter<'_>),
    ) -> Bytes {
        let mut out = BytesMut::new();
        let Ok(Status::Complete(inv)) = Message::parse(&self.invite, &OWN) else {
            return Bytes::new();
        };
        let mut w = ResponseWriter::start(&mut out, Style::Rfc3261, &inv, code, phrase, to_tag);
        if code > 100 && code < 300 {
            w.header(
                "Contact",
                &format!(
                    "<sip:{}:{};transport=tls>",
                    self.sbc.info.proxy_fqdn,
                    self.sbc.info.local.port()
                ),
            );
            w.header("Allow", crate::proxy::ALLOW);
        }
        extra(&mut w);
        w.header("Server", &self.ctx.config.proxy.server);
        match body {
            Some(b) => {
                w.header("Content-Type", "application/sdp");
                w.finish(b);
            }
            None => w.finish(b""),
        }
        out.freeze()
    }

    fn response_to(&self, msg: &Message<'_>, code: u16, phrase: &str) -> Option<Final> {
        self.response_to_with_body(msg, code, phrase, b"")
    }

    fn response_to_with_body(
        &self,
        msg: &Message<'_>,
        code: u16,
        phrase: &str,
        body: &[u8],
    ) -> Option<Final> {
        let mut out = BytesMut::new();
        let mut w = ResponseWriter::start(&mut out, Style::Rfc3261, msg, code, phrase, None);
        w.header("Server", &self.ctx.config.proxy.server);
        if !body.is_empty() {
            w.header(
                "Contact",
                &format!(
                    "<sip:{}:{};transport=tls>",
                    self.sbc.info.proxy_fqdn,
                    self.sbc.info.local.port()
                ),
            );
            w.header("Content-Type", "application/sdp");
        }
        w.finish(body);
        Final::new(out.freeze()).ok()
    }
}

/// Messages drhub itself keeps were framed once already; no limit applies re-reading them.
pub const OWN: Limits = Limits {
    max_header_bytes: usize::MAX,
    max_body_bytes: usize::MAX,
};

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// A tag drhub generates (a fork's To tag, a proxy-generated response's To tag, an
/// endpoint leg's From tag): 64 random bits as 16 lower-case hex digits, stored inline so
/// that a fork or leg keeps no allocation for it for the whole call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Tag([u8; 16]);

impl Tag {
    /// A fresh random tag.
    pub fn random() -> Tag {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let v = fastrand::u64(..);
        let mut digits = [0u8; 16];
        for (i, d) in digits.iter_mut().enumerate() {
            *d = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
        }
        Tag(digits)
    }

    /// The tag as it goes on the wire.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a tag holds hex digits only")
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tag({})", self.as_str())
    }
}

fn session_id() -> u64 {
    fastrand::u64(1..u64::MAX / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_sixteen_lower_case_hex_digits() {
        let a = Tag::random();
        let b = Tag::random();
        for t in [a, b] {
            assert_eq!(t.as_str().len(), 16);
            assert!(t
                .as_str()
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
            assert_eq!(t.to_string(), t.as_str());
        }
        assert_ne!(a, b, "64 random bits repeat");
    }
}
