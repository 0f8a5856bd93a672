//! The router: on its own task, behind a bounded channel from the transaction layer, it
//! admits new calls and hands every in-dialog request, CANCEL, ACK and stray response to
//! the call it belongs to, after checking that it came from that call's peer (DR-NH-4,
//! DR-NH-5). A request for an SBC's call is taken only from that SBC (its certificate,
//! any of its connections); a request for an endpoint's leg only from that endpoint's
//! address. Anyone else gets 481 and the call never hears of it.
//!
//! [`CallTable`] is its index: live calls and their legs, by (Call-ID, tag). A leg is
//! indexed by the tag that is fixed when it is made: the caller's From tag on a UAS leg,
//! drhub's own From tag on a UAC leg. A request from the remote side carries the former
//! as its From tag and the latter as its To tag, so two lookups find either kind.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::dialog::Peer;
use super::{
    negotiate_invite, spawn, CallEvent, CallSender, CallSettings, ForkPlan, NewCall, Outcome,
    TrunkRoute,
};
use crate::config::{EndpointKind, User, E164};
use crate::diagnostics::{Diagnostic, Rejection, Teller};
use crate::directory::{classify_target, Directory, TargetError};
use crate::hub::{Hub, ENDPOINT_LISTENER};
use crate::policy::{self, peer_auth, Accepted, ALLOW};
use crate::sdp::{self, Offer};
use crate::sip::{HeaderName, Message, Method, Transport};
use crate::transaction::{CancelTarget, CoreEvent, Final, IncomingRequest, ServerTx};
use crate::transport::{Destination, FlowEvent, FlowInfo};

use super::session_timer::UasDecision;

/// How many events may wait for the router before the transaction layer sheds new
/// requests with 503 (DR-ERR-1).
pub const ROUTER_QUEUE: usize = 8192;

/// A leg's index key: Call-ID and the tag fixed when the leg was made.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LegKey {
    call_id: Arc<str>,
    tag: Box<str>,
}

impl LegKey {
    pub fn new(call_id: &str, tag: &str) -> LegKey {
        LegKey {
            call_id: call_id.into(),
            tag: tag.into(),
        }
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }
}

#[derive(Debug)]
struct LegEntry {
    inbox: CallSender,
    peer: Peer,
}

/// Which way a call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallDirection {
    /// From the PSTN (an SBC) to a Teams user.
    Inbound,
    /// From a Teams user to the PSTN through the SBCs (DR-OUT).
    Outbound,
}

impl CallDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            CallDirection::Inbound => "inbound",
            CallDirection::Outbound => "outbound",
        }
    }
}

/// How far a live call got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// The INVITE is out (or in), no ringing yet.
    Trying,
    /// Ringing (180/183).
    Ringing,
    /// Answered (200 OK).
    Answered,
    /// Answered and on hold (DR-HOLD-1: the SBC's `a=inactive`).
    Held,
}

impl CallState {
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Trying => "trying",
            CallState::Ringing => "ringing",
            CallState::Answered => "answered",
            CallState::Held => "held",
        }
    }
}

/// What the call table records of a new call.
pub struct CallFacts<'a> {
    pub tenant: &'a str,
    pub user: &'a str,
    /// The SBC's trunk (an outbound call's first gateway).
    pub trunk: Arc<str>,
    pub direction: CallDirection,
    /// The number an outbound call dials (empty for inbound calls).
    pub number: &'a str,
}

/// A live call, as the status API sees it.
#[derive(Debug, Clone)]
pub struct LiveCall {
    pub call_id: Arc<str>,
    pub tenant: Arc<str>,
    pub user: Arc<str>,
    pub trunk: Arc<str>,
    pub direction: CallDirection,
    pub number: Option<Arc<str>>,
    pub started: SystemTime,
    pub state: CallState,
    /// When it started, on the monotonic clock (the post-dial delay).
    pub since: std::time::Instant,
    /// The Call-IDs of its legs, the caller's first: SIP clients rung, SBCs tried.
    pub call_ids: Vec<Arc<str>>,
}

/// An ended call, as the status API and the logs see it.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub call_id: Arc<str>,
    pub tenant: Arc<str>,
    pub user: Arc<str>,
    pub trunk: Arc<str>,
    pub direction: CallDirection,
    pub number: Option<Arc<str>>,
    pub started: SystemTime,
    pub ended: Option<SystemTime>,
    pub outcome: Option<Outcome>,
    /// The Call-IDs of its legs, the caller's first.
    pub call_ids: Vec<Arc<str>>,
}

/// Calls up on a trunk and its `max_concurrent_sessions`.
type TrunkCalls = (usize, Option<u32>);

/// How many ended calls the table remembers.
const RECENT: usize = 100;

/// How long a transfer referred to an SBC waits for its INVITE back (an emulator
/// choice: the SBC's NOTIFY would long have told the transfer failed).
const TRANSFER_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Live calls and their legs; see the module docs. Also counts calls for the overload
/// rules (DR-ERR-1) and wakes the shutdown drain when the last call ends.
#[derive(Debug, Default)]
pub struct CallTable {
    legs: Mutex<HashMap<LegKey, LegEntry>>,
    calls: Mutex<HashMap<u64, LiveCall>>,
    recent: Mutex<VecDeque<CallRecord>>,
    next: AtomicU64,
    idle: Notify,
    /// Calls up per trunk FQDN, for `max_concurrent_sessions` (DR-TEN-6).
    trunk_calls: Mutex<HashMap<Arc<str>, TrunkCalls>>,
    /// Admission rate window: (second, count).
    rate: Mutex<(u64, u32)>,
    /// Tenant ids, user addresses and trunk FQDNs of call records, shared rather than
    /// copied into every call.
    names: Mutex<HashSet<Arc<str>>>,
    /// Transfers referred to an SBC (DR-XFER-3) by their `x-ti`, until its INVITE back.
    transfers: Mutex<HashMap<String, (std::time::Instant, super::transfer::Pending)>>,
    pub started: AtomicU64,
    pub answered: AtomicU64,
    pub failed: AtomicU64,
    /// Calls ended, INVITE-to-100, post-dial delay (`GET /metrics`).
    pub metrics: crate::observe::metrics::CallMetrics,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every operation is a single insert, remove or lookup: a panic elsewhere cannot leave
    // the maps half-updated, so a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CallTable {
    /// Calls up.
    pub fn len(&self) -> usize {
        lock(&self.calls).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Indexed legs (each call's caller leg plus its UAC legs).
    pub fn legs(&self) -> usize {
        lock(&self.legs).len()
    }

    /// Live calls, for status.
    pub fn snapshot(&self) -> Vec<LiveCall> {
        let mut v: Vec<LiveCall> = lock(&self.calls).values().cloned().collect();
        v.sort_by_key(|c| c.started);
        v
    }

    /// The last ended calls, oldest first.
    pub fn recent(&self) -> Vec<CallRecord> {
        lock(&self.recent).iter().cloned().collect()
    }

    /// A shared copy of a name that many calls record.
    pub fn intern(&self, name: &str) -> Arc<str> {
        let mut names = lock(&self.names);
        match names.get(name) {
            Some(n) => n.clone(),
            None => {
                let n: Arc<str> = name.into();
                names.insert(n.clone());
                n
            }
        }
    }

    /// Registers a new call under its caller leg; returns its number.
    pub fn insert(&self, key: LegKey, inbox: CallSender, peer: Peer, facts: CallFacts<'_>) -> u64 {
        let no = self.next.fetch_add(1, Ordering::Relaxed);
        let record = LiveCall {
            call_id: key.call_id.clone(),
            tenant: self.intern(facts.tenant),
            user: self.intern(facts.user),
            trunk: facts.trunk,
            direction: facts.direction,
            number: (!facts.number.is_empty()).then(|| facts.number.into()),
            started: SystemTime::now(),
            state: CallState::Trying,
            since: std::time::Instant::now(),
            call_ids: vec![key.call_id.clone()],
        };
        lock(&self.calls).insert(no, record);
        lock(&self.legs).insert(key, LegEntry { inbox, peer });
        self.started.fetch_add(1, Ordering::Relaxed);
        no
    }

    /// Records how far call `no` got.
    pub fn set_state(&self, no: u64, state: CallState) {
        if let Some(c) = lock(&self.calls).get_mut(&no) {
            // The first ringing, or an answer without it, ends the post-dial delay.
            if c.state == CallState::Trying
                && matches!(state, CallState::Ringing | CallState::Answered)
            {
                self.metrics.post_dial_delay(c.direction, c.since.elapsed());
            }
            c.state = state;
        }
    }

    /// Routes the requests of call `no`'s new leg to it.
    pub fn index(&self, no: u64, key: LegKey, inbox: CallSender, peer: Peer) {
        if let Some(c) = lock(&self.calls).get_mut(&no) {
            if !c.call_ids.contains(&key.call_id) {
                c.call_ids.push(key.call_id.clone());
            }
        }
        lock(&self.legs).insert(key, LegEntry { inbox, peer });
    }

    pub fn contains(&self, key: &LegKey) -> bool {
        lock(&self.legs).contains_key(key)
    }

    /// The call a message belongs to, and who may speak in it: by (Call-ID, From tag),
    /// then (Call-ID, To tag); see the module docs.
    fn find(&self, msg: &Message<'_>) -> Option<(CallSender, Peer)> {
        let call_id = msg.call_id()?;
        let from = msg.from().and_then(Result::ok).and_then(|f| f.tag());
        let to = msg.to().and_then(Result::ok).and_then(|t| t.tag());
        let legs = lock(&self.legs);
        [from, to]
            .into_iter()
            .flatten()
            .find_map(|tag| legs.get(&LegKey::new(call_id, tag)))
            .map(|e| (e.inbox.clone(), e.peer.clone()))
    }

    /// Whether a message's Call-ID and one of its tags belong to a call that is up.
    pub fn knows(&self, msg: &Message<'_>) -> bool {
        self.find(msg).is_some()
    }

    /// Remembers a transfer referred to an SBC under its `x-ti` (DR-XFER-3), for the
    /// SBC's INVITE back. Transfers older than [`TRANSFER_WAIT`] are forgotten.
    pub fn expect_transfer(&self, correlation: String, pending: super::transfer::Pending) {
        let now = std::time::Instant::now();
        let mut t = lock(&self.transfers);
        t.retain(|_, (at, _)| now.duration_since(*at) < TRANSFER_WAIT);
        t.insert(correlation, (now, pending));
    }

    /// The transfer a `Referred-By`'s `x-ti` names, taken out: one INVITE back each.
    pub fn take_transfer(&self, correlation: &str) -> Option<super::transfer::Pending> {
        let mut t = lock(&self.transfers);
        let (at, p) = t.remove(correlation)?;
        (at.elapsed() < TRANSFER_WAIT).then_some(p)
    }

    /// Takes a call out, with every key it registered, and remembers how it ended.
    pub fn remove(&self, no: u64, keys: &[LegKey], outcome: Option<Outcome>) {
        {
            let mut legs = lock(&self.legs);
            for k in keys {
                legs.remove(k);
            }
            if legs.capacity() > 64 && legs.len() < legs.capacity() / 4 {
                legs.shrink_to_fit();
            }
        }
        match outcome.as_ref().map(|o| o.status) {
            Some(200) => self.answered.fetch_add(1, Ordering::Relaxed),
            _ => self.failed.fetch_add(1, Ordering::Relaxed),
        };
        let (record, empty) = {
            let mut calls = lock(&self.calls);
            let r = calls.remove(&no);
            if calls.capacity() > 64 && calls.len() < calls.capacity() / 4 {
                calls.shrink_to_fit();
            }
            (r, calls.is_empty())
        };
        if let Some(live) = record {
            self.metrics.ended(live.direction, outcome.as_ref());
            let r = CallRecord {
                call_id: live.call_id,
                tenant: live.tenant,
                user: live.user,
                trunk: live.trunk,
                direction: live.direction,
                number: live.number,
                started: live.started,
                ended: Some(SystemTime::now()),
                outcome,
                call_ids: live.call_ids,
            };
            let mut recent = lock(&self.recent);
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(r);
        }
        if empty {
            self.idle.notify_waiters();
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

    /// The inboxes of every call whose caller is the SBC of `closed`.
    fn calls_of(&self, closed: &FlowInfo) -> Vec<CallSender> {
        lock(&self.legs)
            .values()
            .filter(|e| match (&e.peer, &closed.identity) {
                (Peer::Sbc { fqdn }, Some(id)) => id.matches(fqdn),
                (Peer::InsecureSbc { ip }, None) => closed.peer.ip() == *ip,
                _ => false,
            })
            .map(|e| e.inbox.clone())
            .collect()
    }

    /// Tells the call whose SBC leg has this Call-ID to end (the control API); false when
    /// no call up has it.
    pub fn hang_up(&self, call_id: &str) -> bool {
        self.tell(call_id, super::CallEvent::HangUp)
    }

    /// Gives the call whose SBC leg has this Call-ID an operator's event (the control
    /// API); false when no call up has it.
    pub fn tell(&self, call_id: &str, event: super::CallEvent) -> bool {
        let inbox = lock(&self.legs)
            .iter()
            .find(|(k, _)| &*k.call_id == call_id)
            .map(|(_, e)| e.inbox.clone());
        inbox.is_some_and(|i| i.send(event).is_ok())
    }

    /// DR-TEN-6: counts a call on its trunk. At 90 % of `max_concurrent_sessions` the
    /// trunk is flagged and a warning is logged once per crossing; no call is refused.
    pub fn trunk_call_started(&self, trunk: &Arc<str>, max: Option<u32>) {
        let mut map = lock(&self.trunk_calls);
        let entry = map.entry(trunk.clone()).or_insert((0, max));
        entry.0 += 1;
        if let Some(max) = max {
            let threshold = (max as usize * 9).div_ceil(10).max(1);
            if entry.0 == threshold {
                warn!(
                    trunk = %trunk,
                    sessions = entry.0,
                    max,
                    "trunk at 90% of max_concurrent_sessions (alert only: calls are not refused)"
                );
            }
        }
    }

    pub fn trunk_call_ended(&self, trunk: &str) {
        let mut map = lock(&self.trunk_calls);
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
        match lock(&self.trunk_calls).get(trunk) {
            Some((n, Some(max))) => (*n, *n * 10 >= *max as usize * 9),
            Some((n, None)) => (*n, false),
            None => (0, false),
        }
    }

    /// DR-ERR-1: one more call per second allowed?
    fn admit_rate(&self, max_per_second: u32) -> bool {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut r = lock(&self.rate);
        if r.0 != now {
            *r = (now, 0);
        }
        r.1 += 1;
        r.1 <= max_per_second
    }
}

/// See the module docs.
pub struct Router {
    hub: Arc<Hub>,
    core: mpsc::Receiver<CoreEvent<Destination>>,
    flows: mpsc::UnboundedReceiver<FlowEvent>,
}

impl Router {
    pub fn new(
        hub: Arc<Hub>,
        core: mpsc::Receiver<CoreEvent<Destination>>,
        flows: mpsc::UnboundedReceiver<FlowEvent>,
    ) -> Router {
        Router { hub, core, flows }
    }

    /// Routes until shutdown.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                Some(ev) = self.core.recv() => self.on_core(ev),
                Some(ev) = self.flows.recv() => self.on_flow(ev),
                _ = shutdown.cancelled() => return,
                else => return,
            }
        }
    }

    fn on_flow(&self, ev: FlowEvent) {
        match ev {
            FlowEvent::Opened(_) => {}
            FlowEvent::Closed(flow) => {
                if flow.listener == ENDPOINT_LISTENER {
                    return;
                }
                // DR-NH-5: only when no other connection to that SBC is left.
                let other = match &flow.identity {
                    Some(_) => self.hub.flows.find_same_peer(&flow).is_some(),
                    None => self.hub.flows.find_insecure(flow.peer.ip()).is_some(),
                };
                if other {
                    return;
                }
                for inbox in self.hub.calls.calls_of(&flow) {
                    let _ = inbox.send(CallEvent::SbcGone);
                }
            }
        }
    }

    fn on_core(&self, ev: CoreEvent<Destination>) {
        match ev {
            CoreEvent::Request(req) => self.on_request(req),
            CoreEvent::Cancel { request, target } => {
                let msg = request.request.message();
                let found = match target {
                    CancelTarget::Unknown => None,
                    _ => self.hub.calls.find(&msg),
                };
                match found {
                    Some((inbox, peer)) if peer.admits(&request.source) => {
                        let ev = CallEvent::Cancel {
                            tx: request.tx,
                            request: request.request.clone(),
                        };
                        if let Err(CallEvent::Cancel { tx, .. }) = inbox.send(ev) {
                            self.no_dialog(tx, &msg, &request.source, "CANCEL");
                        }
                    }
                    Some(_) => {
                        warn!(call_id = msg.call_id().unwrap_or("-"), from = %request.source.label(), "CANCEL for a call from someone else than its SBC (DR-NH-4)");
                        self.no_dialog(request.tx, &msg, &request.source, "CANCEL");
                    }
                    None => self.no_dialog(request.tx, &msg, &request.source, "CANCEL"),
                }
            }
            CoreEvent::Ack {
                request, source, ..
            } => {
                let msg = request.message();
                match self.hub.calls.find(&msg) {
                    Some((inbox, peer)) if peer.admits(&source) => {
                        let _ = inbox.send(CallEvent::Ack {
                            request: request.clone(),
                        });
                    }
                    _ => debug!(
                        call_id = msg.call_id().unwrap_or("-"),
                        "ACK for no call of its sender; dropped"
                    ),
                }
            }
            CoreEvent::StrayResponse { response, source } => {
                let msg = response.message();
                match self.hub.calls.find(&msg) {
                    Some((inbox, peer)) if peer.admits(&source) => {
                        let _ = inbox.send(CallEvent::Stray {
                            response: response.clone(),
                        });
                    }
                    _ => debug!("response matching no transaction; dropped"),
                }
            }
        }
    }

    fn on_request(&self, req: IncomingRequest<Destination>) {
        let msg = req.request.message();
        let method = msg.method();
        if method == Some(Method::Invite) && is_new(&msg) {
            let from_sbc = req
                .source
                .flow()
                .is_some_and(|f| f.listener != ENDPOINT_LISTENER);
            if from_sbc {
                return self.new_call(req);
            }
            return self.endpoint_call(req);
        }
        let method_name = method.map_or("-", |m| m.as_str());
        match self.hub.calls.find(&msg) {
            Some((inbox, peer)) if peer.admits(&req.source) => {
                let ev = CallEvent::Request {
                    tx: req.tx,
                    request: req.request.clone(),
                    source: req.source.clone(),
                };
                if let Err(CallEvent::Request { tx, .. }) = inbox.send(ev) {
                    self.no_dialog(tx, &msg, &req.source, method_name);
                }
            }
            Some(_) => {
                // DR-NH-4/5: the right Call-ID and tags, the wrong sender.
                warn!(
                    call_id = msg.call_id().unwrap_or("-"),
                    method = method_name,
                    from = %req.source.label(),
                    "request for a call from someone else than its peer; 481, call untouched"
                );
                self.no_dialog(req.tx, &msg, &req.source, method_name);
            }
            None => self.no_dialog(req.tx, &msg, &req.source, method_name),
        }
    }

    fn no_dialog(&self, tx: ServerTx, msg: &Message<'_>, source: &Destination, method: &str) {
        let r = Rejection::new(Diagnostic::NoSuchDialog).with("method", method);
        self.reject(tx, msg, source, r);
    }

    /// Answers a request's transaction with a rejection (DR-VAL-8).
    fn reject(&self, tx: ServerTx, msg: &Message<'_>, source: &Destination, r: Rejection) {
        reject_tx(&self.hub, tx, msg, source, &r);
    }

    /// A new INVITE from an SBC: DR-VAL, then admission, then the call task.
    fn new_call(&self, req: IncomingRequest<Destination>) {
        let received = std::time::Instant::now();
        let IncomingRequest {
            tx,
            request,
            source,
            ..
        } = req;
        let Some(flow) = source.flow().cloned() else {
            return drop(tx);
        };
        let msg = request.message();
        // One snapshot of the configuration for the whole admission: a reload in between
        // must not mix two (a tenant is an index into its directory).
        let dir = self.hub.directory();
        let settings = self.hub.call_settings();
        let accepted = match policy::check_sbc_request(&msg, peer_auth(&flow), &dir) {
            Ok(a) => a,
            Err(r) => return self.reject(tx, &msg, &source, r),
        };
        let Some(from_tag) = msg
            .from()
            .and_then(Result::ok)
            .and_then(|f| f.tag().map(str::to_owned))
        else {
            let r = Rejection::new(Diagnostic::Malformed("From Tag Missing"));
            return self.reject(tx, &msg, &source, r);
        };
        let call_id = msg.call_id().unwrap_or_default().to_owned();
        note_nearly(&self.hub, &accepted, &msg, &call_id);
        let key = LegKey::new(&call_id, &from_tag);
        if self.hub.calls.contains(&key) {
            // The dialog set is already up: a second INVITE without To tag (a new branch)
            // is a loop or an SBC bug, not a new call.
            let r = Rejection::new(Diagnostic::Malformed("Call Already Exists"))
                .with("call_id", call_id);
            return self.reject(tx, &msg, &source, r);
        }
        let admitted = match admit(&self.hub, &dir, &settings, &msg, &accepted, &flow) {
            Ok(a) => a,
            Err(r) => return self.reject(tx, &msg, &source, r),
        };
        let tenant = dir.tenant(accepted.tenant).id.clone();
        let peer = match &flow.identity {
            Some(_) => Peer::Sbc {
                fqdn: accepted.sbc_fqdn.as_str().into(),
            },
            None => Peer::InsecureSbc { ip: flow.peer.ip() },
        };
        let trunk = TrunkRoute {
            fqdn: accepted.trunk.fqdn.as_str().into(),
            address: accepted.trunk.address,
            port: accepted.trunk.port,
            max_sessions: accepted.trunk.max_concurrent_sessions,
            refer_fallback: accepted.trunk.refer_fallback,
        };
        let new = NewCall {
            tx,
            invite: request,
            local: flow.proxy.clone(),
            peer,
            listener: flow.listener.as_str().into(),
            sbc: crate::observe::conformance::sbc_of(&flow).into(),
            tenant,
            user: admitted.user.sip_address.to_string(),
            caller: admitted.caller,
            callee: admitted.user.sip_address.to_string(),
            forks: admitted.forks,
            bypass: accepted.trunk.media_bypass,
            media_answer: admitted.media_answer,
            voicemail_after: admitted.user.voicemail_answer_after,
            session: admitted.session,
            trunk,
            forwarding: admitted.forwarding,
            keep_history: accepted.trunk.forward_call_history,
            referee: admitted.referee,
            transfer_back: admitted.transfer_back,
            allows_refer: admitted.allows_refer,
            received,
        };
        spawn(self.hub.clone(), settings, new, key);
    }
}

impl Router {
    /// A new INVITE from a SIP endpoint (DR-OUT-1): digest-challenged as its From user
    /// like a REGISTER (407), then routed to the PSTN by that user's voice routing; the
    /// endpoint hears 100, the SBC's progress, and 200 or the failure.
    fn endpoint_call(&self, req: IncomingRequest<Destination>) {
        let settings = self.hub.call_settings();
        let IncomingRequest {
            tx,
            request,
            source,
            ..
        } = req;
        let msg = request.message();
        let hub = &self.hub;
        if hub.endpoints.is_none() {
            let r = Rejection::new(Diagnostic::NotImplemented)
                .with("detail", "the endpoint listener is off");
            return self.reject(tx, &msg, &source, r);
        }
        // The endpoint dispatcher let only INVITEs whose digest proved the From user's
        // password into the transaction layer (`endpoint::net`).
        // The From user, as the registrar names an address-of-record (unescaped, lower
        // case).
        let user = msg
            .from()
            .and_then(Result::ok)
            .and_then(|f| crate::endpoint::registrar::Aor::from_uri(f.uri()).ok())
            .map(|aor| crate::config::SipAddress {
                user: aor.user().to_owned(),
                domain: aor.domain().to_owned(),
            });
        let Some(user) = user else {
            let r = Rejection::new(Diagnostic::Malformed("From Is No User Address"));
            return self.reject(tx, &msg, &source, r);
        };
        let Some(from_tag) = msg
            .from()
            .and_then(Result::ok)
            .and_then(|f| f.tag().map(str::to_owned))
        else {
            let r = Rejection::new(Diagnostic::Malformed("From Tag Missing"));
            return self.reject(tx, &msg, &source, r);
        };
        let call_id = msg.call_id().unwrap_or_default().to_owned();
        let key = LegKey::new(&call_id, &from_tag);
        if hub.calls.contains(&key) {
            let r = Rejection::new(Diagnostic::Malformed("Call Already Exists"))
                .with("call_id", call_id);
            return self.reject(tx, &msg, &source, r);
        }
        // What the user dialled: the Request-URI's user part.
        let dialled = msg
            .request_uri()
            .and_then(Result::ok)
            .map(|u| u.user().unwrap_or_default().to_owned())
            .unwrap_or_default();
        if dialled.is_empty() {
            let r = Rejection::new(Diagnostic::NumberNotFound)
                .with("detail", "the Request-URI has no user part to dial")
                .with_status(484);
            return self.reject(tx, &msg, &source, r);
        }
        // The endpoint's offer, answered by the media processor (DR-MEDIA-3).
        if let Err(r) = require_offer(&msg) {
            return self.reject(tx, &msg, &source, r);
        }
        let answer = Offer::parse(msg.body()).and_then(|o| {
            sdp::media_processor_answer(&o, &hub.media, hub.media_port(), session_id())
        });
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                let r = Rejection::new(Diagnostic::NoAcceptableMedia).with("detail", e.to_string());
                return self.reject(tx, &msg, &source, r);
            }
        };
        // Caller ID withheld: RFC 3323 Privacy, or an anonymous From (RFC 3325 §9.3).
        let private = msg.values(HeaderName::Privacy).any(|v| {
            let v = v.trim();
            v.eq_ignore_ascii_case("id") || v.eq_ignore_ascii_case("header")
        }) || msg
            .from()
            .and_then(Result::ok)
            .and_then(|f| f.uri().user().map(|u| u.eq_ignore_ascii_case("anonymous")))
            .unwrap_or(false);
        let wanted = super::place::Request {
            user: user.to_string(),
            number: dialled.clone(),
            private,
            ring_for: settings.ring_timeout,
            talk_for: None,
        };
        let offer = Bytes::copy_from_slice(msg.body());
        let (placement, placed) = match super::place::plan(&self.hub, &wanted, Some(&offer)) {
            Ok(p) => p,
            Err(refused) => {
                let r = match refused {
                    super::place::Refused::Unavailable(why) => {
                        Rejection::new(Diagnostic::Overloaded).with("detail", why)
                    }
                    other => Rejection::new(Diagnostic::NoRoute)
                        .with("number", dialled)
                        .with(
                            "detail",
                            other.to_string().lines().last().unwrap_or("").to_owned(),
                        ),
                };
                return self.reject(tx, &msg, &source, r);
            }
        };
        info!(call_id = %placed.call_id, endpoint_call_id = %call_id, user = %user, to = %placed.number, "call from a SIP endpoint to the PSTN");
        let local = source.proxy().clone();
        let peer = Peer::Endpoint {
            addr: source.peer(),
            transport: source.transport(),
        };
        let leg = super::leg::UasLeg::new(
            tx,
            request.clone(),
            local,
            peer.clone(),
            settings.t1,
            settings.t2,
        );
        let caller = super::outbound::Caller {
            leg,
            route: super::Route::Dest(source.clone()),
            key,
            peer,
            answer: Bytes::copy_from_slice(answer.as_bytes()),
            media: Box::new(answer.continuity().clone()),
            name: format!("{user} at {}", source.label()),
        };
        super::spawn_outbound(self.hub.clone(), settings, placement, Some(caller));
    }
}

/// What an SBC's accepted INVITE nearly broke (DR-CONF): a Record-Route that names
/// another host than the Contact (DR-NH-3), a phone number in the Request-URI without
/// `user=phone` (DR-TEN-3 reads it as a number all the same).
fn note_nearly(hub: &Hub, accepted: &Accepted<'_>, msg: &Message<'_>, call_id: &str) {
    use crate::observe::conformance::Severity;
    let sbc = &accepted.sbc_fqdn;
    if let Some(rr) = &accepted.record_route_fqdn {
        if *rr != accepted.contact_fqdn {
            hub.conformance.record(
                sbc,
                "DR-NH-3",
                Severity::Nearly,
                "Record-Route differs from Contact",
                call_id,
                format!("record_route={rr} contact={}", accepted.contact_fqdn),
            );
        }
    }
    if let Some(Ok(ruri)) = msg.request_uri() {
        let phone = ruri
            .param("user")
            .and_then(|p| p.value)
            .is_some_and(|v| v.eq_ignore_ascii_case("phone"));
        let number = ruri.user().is_some_and(|u| u.starts_with('+'));
        if number && !phone {
            hub.conformance.record(
                sbc,
                "DR-TEN-3",
                Severity::Nearly,
                "A phone number in the Request-URI without user=phone",
                call_id,
                format!("uri={}", ruri.as_str()),
            );
        }
    }
}

/// Answers a server transaction with a rejection, told as the flow it came on speaks.
pub fn reject_tx(hub: &Hub, tx: ServerTx, msg: &Message<'_>, source: &Destination, r: &Rejection) {
    let Some(out) = rejection(hub, msg, source, r, false) else {
        return drop(tx);
    };
    match Final::new(out.freeze()) {
        Ok(f) => drop(tx.respond(f)),
        Err(e) => warn!(error = %e, "rejection not built"),
    }
}

/// Answers a request with a rejection without any transaction (RFC 3261 §8.2.7, a
/// stateless UAS): a retransmission is answered again the same way. For requests that
/// come from no one known (an endpoint that has not authenticated), so that a flood of
/// them leaves nothing behind.
pub fn reject_stateless(hub: &Hub, msg: &Message<'_>, source: &Destination, r: &Rejection) {
    if let Some(out) = rejection(hub, msg, source, r, true) {
        if !source.send(out.freeze()) {
            debug!(to = %source.label(), "stateless rejection not sent");
        }
    }
}

/// The response of a rejection (logged, DR-VAL-8), as `source` is answered.
fn rejection(
    hub: &Hub,
    msg: &Message<'_>,
    source: &Destination,
    r: &Rejection,
    stateless: bool,
) -> Option<BytesMut> {
    hub.counters.rejected.fetch_add(1, Ordering::Relaxed);
    if let Some(flow) = source.flow() {
        hub.conformance
            .rejected(flow, msg.call_id().unwrap_or(""), r);
    }
    let label = source.label();
    let teller = Teller {
        style: hub.style(),
        source: source.proxy().host(),
        server: &hub.server,
        ms_diagnostics: hub.ms_diagnostics,
        flow: &label,
        allow: ALLOW,
    };
    let mut out = BytesMut::new();
    let written = if stateless {
        r.respond_stateless(msg, &teller, &mut out)
    } else {
        r.respond(msg, &teller, &mut out)
    };
    written.then_some(out)
}

/// DR-ERR-1 at the router's door: its queue is full, so a request outside any dialog
/// is answered 503 with Retry-After at once instead of waiting. Requests inside a
/// dialog (a BYE, a re-INVITE, a session refresh), CANCEL, ACK and responses are not
/// shed: they end or carry on calls already admitted, so they wait their turn.
pub fn shed(hub: &Hub, ev: CoreEvent<Destination>) -> Option<CoreEvent<Destination>> {
    match ev {
        CoreEvent::Request(req) if is_new(&req.request.message()) => {
            let msg = req.request.message();
            let r = Rejection::new(Diagnostic::Overloaded).with("detail", "router queue full");
            reject_tx(hub, req.tx, &msg, &req.source, &r);
            None
        }
        other => Some(other),
    }
}

/// A request that would start something: outside any dialog, and neither CANCEL nor
/// ACK.
fn is_new(msg: &Message<'_>) -> bool {
    let in_dialog = msg
        .to()
        .and_then(Result::ok)
        .is_some_and(|t| t.tag().is_some());
    !in_dialog && !matches!(msg.method(), Some(Method::Cancel | Method::Ack))
}

/// DR-FORK-6 (and an endpoint's call, DR-OUT-1): an INVITE must carry an SDP offer.
fn require_offer(msg: &Message<'_>) -> Result<(), Rejection> {
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
    Ok(())
}

/// What admission found.
struct Admitted<'d> {
    user: &'d User,
    caller: String,
    media_answer: sdp::Answer,
    forks: Vec<ForkPlan>,
    session: Option<super::session_timer::Negotiated>,
    forwarding: Option<Box<super::ForwardRules>>,
    referee: Vec<(String, Vec<ForkPlan>)>,
    /// The SBC's INVITE back for a transfer to a number: where it goes on to.
    transfer_back: Option<Box<super::TransferBack>>,
    /// DR-XFER-1: the SBC takes REFER (its INVITE's Allow, else its OPTIONS').
    allows_refer: bool,
}

/// Admission checks after DR-VAL passed (DR-ERR-1, DR-TEN-3..5, DR-FORK-6, DR-ST-3):
/// the load, the user, the caller, the offer, the session interval; then the forks to
/// ring. `Err` carries the rejection to answer with.
fn admit<'d>(
    hub: &Arc<Hub>,
    dir: &'d Directory,
    settings: &CallSettings,
    msg: &Message<'_>,
    accepted: &Accepted<'_>,
    flow: &FlowInfo,
) -> Result<Admitted<'d>, Rejection> {
    let calls = &hub.calls;
    // DR-ERR-1
    if hub.is_draining() {
        return Err(Rejection::new(Diagnostic::Overloaded).with("detail", "shutting down"));
    }
    if calls.len() >= hub.config().calls.max_concurrent {
        return Err(
            Rejection::new(Diagnostic::Overloaded).with("detail", "max_concurrent calls reached")
        );
    }
    if !calls.admit_rate(hub.config().calls.max_per_second) {
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
    // DR-XFER-4: the SBC carrying out a transfer drhub referred it to calls the Refer-To
    // back with the REFER's Referred-By, whose `x-ti` names the transfer.
    let referred = match msg.header(HeaderName::ReferredBy) {
        Some(by) => super::transfer::correlation_of(by)
            .and_then(|ti| calls.take_transfer(ti))
            .map(|p| transfer_back(p, by, &ruri, &dir.tenant(accepted.tenant).id))
            .transpose()?,
        None => None,
    };
    let back_to_number = referred.as_ref().and_then(|p| match &p.target {
        super::transfer::Target::Number(n) => Some(n.clone()),
        super::transfer::Target::User(u) => {
            info!(transfer = %p.call, to = %u, "the SBC's INVITE back for a transfer to a Teams user, Referred-By as sent (DR-XFER-4)");
            None
        }
    });
    // A number goes back out through the transferring user's voice routing.
    let transferor = match (&referred, &back_to_number) {
        (Some(p), Some(_)) => {
            let address: crate::config::SipAddress = p.user.parse().map_err(|_| {
                Rejection::new(Diagnostic::TransferMismatch)
                    .with("detail", "the transferring user is gone")
            })?;
            Some(
                dir.user_by_address(accepted.tenant, &address)
                    .ok_or_else(|| {
                        Rejection::new(Diagnostic::TransferMismatch)
                            .with("detail", "the transferring user is gone")
                            .with("user", p.user.clone())
                    })?,
            )
        }
        _ => None,
    };
    // DR-XFER-4: the SBC carrying out a transfer to a Teams user calls the Refer-To back,
    // which names the user by MRI (`x-m`) in a tenant (`x-t`).
    let user = match (transferor, ruri.param("x-m").and_then(|p| p.value)) {
        (Some(transferor), _) => transferor,
        (None, Some(mri)) => {
            let tenant = &dir.tenant(accepted.tenant).id;
            let named = ruri.param("x-t").and_then(|p| p.value).unwrap_or("");
            if !named.eq_ignore_ascii_case(tenant) {
                return Err(Rejection::new(Diagnostic::NumberNotFound)
                    .with_status(403)
                    .with("uri", ruri.as_str())
                    .with("detail", "x-t names another tenant than the SBC's")
                    .with("tenant", tenant.clone()));
            }
            dir.user_by_mri(accepted.tenant, mri).ok_or_else(|| {
                Rejection::new(Diagnostic::NumberNotFound)
                    .with("uri", ruri.as_str())
                    .with("detail", "x-m names no user of the tenant")
                    .with("tenant", tenant.clone())
            })?
        }
        (None, None) => {
            let target = classify_target(ruri.user(), phone, &host).map_err(|e| {
                let why = match e {
                    TargetError::NumberWithoutPlus => {
                        "phone number without a leading + (E.164 required)"
                    }
                    TargetError::NotANumber => "user=phone but the user part is not a phone number",
                    TargetError::NoUser => "Request-URI has no user part",
                };
                Rejection::new(Diagnostic::NumberNotFound)
                    .with("uri", ruri.as_str())
                    .with("detail", why)
            })?;
            dir.user_for_target(accepted.tenant, &target)
                .ok_or_else(|| {
                    Rejection::new(Diagnostic::NumberNotFound)
                        .with("uri", ruri.as_str())
                        .with("tenant", dir.tenant(accepted.tenant).id.clone())
                })?
        }
    };
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
    require_offer(msg)?;
    let offer = Offer::parse(msg.body())
        .map_err(|e| Rejection::new(Diagnostic::NoAcceptableMedia).with("detail", e.to_string()))?;
    // The media processor's answer for the whole call; it also refuses offers whose
    // codecs drhub cannot answer (488 before ringing anyone).
    let media_answer =
        sdp::media_processor_answer(&offer, &hub.media, hub.media_port(), session_id()).map_err(
            |e| Rejection::new(Diagnostic::NoAcceptableMedia).with("detail", e.to_string()),
        )?;
    // DR-ST-1/3: non-bypass calls always run a session timer; bypass calls none.
    let session = if accepted.trunk.media_bypass {
        None
    } else {
        match negotiate_invite(msg, &settings.session) {
            UasDecision::Accept(n) => Some(n),
            UasDecision::TooSmall { min_se } => {
                return Err(Rejection::new(Diagnostic::SessionIntervalTooSmall)
                    .with(
                        "session_expires",
                        msg.header(HeaderName::SessionExpires).unwrap_or("-"),
                    )
                    .with("min_se", min_se.to_string()))
            }
            UasDecision::Malformed(why) => return Err(Rejection::new(Diagnostic::Malformed(why))),
        }
    };
    let bypass = accepted.trunk.media_bypass;
    if let (Some(p), Some(number)) = (referred, back_to_number) {
        info!(transfer = %p.call, to = %number, consultative = p.consultation.is_some(), "the SBC's INVITE back for a transfer to a number: out through the transferring user's voice routing (DR-XFER-4)");
        return Ok(Admitted {
            user,
            caller: String::new(),
            media_answer,
            forks: Vec::new(),
            session,
            forwarding: None,
            referee: Vec::new(),
            transfer_back: Some(Box::new(super::TransferBack {
                target: number,
                transferred: super::transfer::Transferred {
                    referred_by: p.referred_by,
                    consultation: p.consultation,
                },
            })),
            allows_refer: false,
        });
    }
    let mut forks = plan_forks(hub, user, bypass.then_some(&offer));
    // DR-FWD-1: simultaneous ring, with the user's own clients.
    match &user.forwarding.also_ring {
        Some(crate::config::ForwardTarget::User(a)) => {
            if let Some(other) = dir.user_by_address(accepted.tenant, a) {
                for mut f in plan_forks(hub, other, bypass.then_some(&offer)) {
                    match &mut f {
                        ForkPlan::Script { name, .. }
                        | ForkPlan::Sip { name, .. }
                        | ForkPlan::Pstn { name, .. } => *name = format!("{a} {name}"),
                    }
                    forks.push(f);
                }
            }
        }
        Some(crate::config::ForwardTarget::Number(n)) => {
            let sbc_offer = Bytes::copy_from_slice(msg.body());
            let name = format!("also ring {n}");
            forks.extend(pstn_fork(
                hub,
                user,
                n.as_str(),
                bypass.then_some(&sbc_offer),
                name,
                None,
            ));
        }
        _ => {}
    }
    let forwarding = forward_rules(hub, dir, accepted.tenant, user, &offer, bypass);
    // DR-FWD-1: a user with no client to ring may still forward.
    let forwards = forwarding
        .as_ref()
        .is_some_and(|f| f.immediate.is_some() || f.unavailable.is_some());
    if forks.is_empty() && !forwards {
        return Err(
            Rejection::new(Diagnostic::NoEndpoints).with("user", user.sip_address.to_string())
        );
    }
    let number = caller
        .as_ref()
        .map_or("anonymous".to_owned(), ToString::to_string);
    let caller = match caller_name {
        Some(name) => format!(
            "\"{}\" <sip:{number}@{}>",
            name.replace(['"', '\\'], ""),
            flow.proxy.host()
        ),
        None => format!("<sip:{number}@{}>", flow.proxy.host()),
    };
    // DR-XFER-2: when the SBC cannot take a REFER (or may refuse it, `refer_fallback`),
    // the legs to the numbers and users the user's scripted clients transfer to are
    // drhub's own; planned now, while the hub is at hand.
    // DR-XFER-1: the INVITE's Allow, else what the SBC's OPTIONS advertised (DR-OPT-2).
    let allows_refer = super::transfer::allow_lists_refer(msg)
        .unwrap_or_else(|| hub.health.allows(accepted.trunk.fqdn.as_str(), "REFER"));
    let mut referee = Vec::new();
    if !allows_refer || accepted.trunk.refer_fallback {
        for e in &user.endpoints {
            let EndpointKind::Virtual(script) = &e.kind else {
                continue;
            };
            let Some(to) = script.transfer_to.as_deref() else {
                continue;
            };
            let plans = match to.parse::<crate::config::SipAddress>() {
                Ok(a) => dir
                    .user_by_address(accepted.tenant, &a)
                    .map(|u| transfer_forks(hub, u))
                    .unwrap_or_default(),
                Err(_) => pstn_fork(hub, user, to, None, format!("transfer to {to}"), None)
                    .into_iter()
                    .collect(),
            };
            if !plans.is_empty() {
                referee.push((to.to_owned(), plans));
            }
        }
    }
    Ok(Admitted {
        user,
        caller,
        media_answer,
        forks,
        session,
        forwarding,
        referee,
        transfer_back: None,
        allows_refer,
    })
}

/// DR-XFER-4: checks the SBC's INVITE back against the transfer drhub referred it to:
/// the same tenant, the `Referred-By` byte for byte, the `Refer-To` as Request-URI (the
/// number, or the user's `x-m`). A mismatch is refused (403, 404 for another user's
/// `x-m`) with the facts that differ.
fn transfer_back(
    p: super::transfer::Pending,
    by: &str,
    ruri: &crate::sip::Uri<'_>,
    tenant: &str,
) -> Result<super::transfer::Pending, Rejection> {
    let mismatch = |detail: &'static str| {
        Rejection::new(Diagnostic::TransferMismatch)
            .with("detail", detail)
            .with("transfer", p.call.clone())
    };
    if !p.tenant.eq_ignore_ascii_case(tenant) {
        return Err(mismatch("the transfer is another tenant's").with("tenant", tenant.to_owned()));
    }
    if by.trim() != p.referred_by {
        return Err(
            mismatch("Referred-By differs from the REFER's (copy it byte for byte)")
                .with("referred_by", by.trim().to_owned())
                .with("expected", p.referred_by.clone()),
        );
    }
    match &p.target {
        super::transfer::Target::Number(n) => {
            if ruri.user() != Some(n.as_str()) {
                return Err(mismatch("the Request-URI is not the REFER's Refer-To")
                    .with("uri", ruri.as_str())
                    .with("expected", n.clone()));
            }
        }
        super::transfer::Target::User(u) => {
            let mri = super::transfer::mri(&p.tenant, u);
            if ruri.param("x-m").and_then(|x| x.value) != Some(mri.as_str()) {
                return Err(Rejection::new(Diagnostic::NumberNotFound)
                    .with("uri", ruri.as_str())
                    .with("detail", "x-m is not the REFER's target")
                    .with("expected", mri)
                    .with("transfer", p.call.clone()));
            }
        }
    }
    Ok(p)
}

/// A fork of an inbound call to a number, for simultaneous ring (DR-FWD-1) or a
/// transfer drhub carries out as referee (DR-XFER-2): the first gateway the user's voice
/// routing gives for it, as an outbound call of the user's would try it, with the SBC's
/// offer `sbc_offer` when the trunk bypasses too, else the media processor's; `None`
/// (logged) when there is no gateway. A gateway named `prefer` goes first (a
/// consultative transfer's INVITE must reach the SBC that knows the dialog it replaces).
pub fn pstn_fork(
    hub: &Arc<Hub>,
    user: &User,
    number: &str,
    sbc_offer: Option<&Bytes>,
    name: String,
    prefer: Option<&str>,
) -> Option<ForkPlan> {
    let wanted = super::place::Request {
        user: user.sip_address.to_string(),
        number: number.to_owned(),
        private: false,
        ring_for: std::time::Duration::ZERO,
        talk_for: None,
    };
    let (placement, _) = match super::place::plan(hub, &wanted, sbc_offer) {
        Ok(p) => p,
        Err(e) => {
            warn!(to = %number, why = %e.to_string().lines().last().unwrap_or(""), "no gateway for a call to this number; not rung");
            return None;
        }
    };
    let at = prefer
        .and_then(|p| {
            placement
                .gateways
                .iter()
                .position(|g| g.fqdn.eq_ignore_ascii_case(p))
        })
        .unwrap_or(0);
    let mut gateway = placement.gateways.into_iter().nth(at)?;
    // Both trunks bypass: the SBC's own offer; else the media processor's.
    let offer = match gateway.offer.take().filter(|_| gateway.bypass) {
        Some(_) => None,
        None => {
            let m = &hub.media;
            let source = sdp::AnswerSource::MediaProcessor;
            sdp::offer(&m.codecs, m.address, hub.media_port(), session_id(), source)
                .map_err(|e| warn!(error = %e, "media processor offer failed"))
                .ok()
                .map(Bytes::from)
        }
    };
    Some(ForkPlan::Pstn {
        name,
        number: placement.number,
        gateway: Box::new(gateway),
        offer,
    })
}

/// The user's forwarding rules with their targets resolved (DR-FWD-1): a user target's
/// forks are planned now, as the user's own are.
fn forward_rules(
    hub: &Hub,
    dir: &Directory,
    tenant: crate::directory::TenantId,
    user: &User,
    offer: &Offer,
    bypass: bool,
) -> Option<Box<super::ForwardRules>> {
    let f = &user.forwarding;
    if f.is_empty() {
        return None;
    }
    let resolve = |t: &Option<crate::config::ForwardTarget>| -> Option<super::Forward> {
        Some(match t.as_ref()? {
            crate::config::ForwardTarget::Number(n) => super::Forward::Number(n.to_string()),
            crate::config::ForwardTarget::Voicemail => super::Forward::Voicemail,
            crate::config::ForwardTarget::User(a) => {
                let forks = dir
                    .user_by_address(tenant, a)
                    .map(|u| plan_forks(hub, u, bypass.then_some(offer)))
                    .unwrap_or_default();
                super::Forward::User {
                    address: a.to_string(),
                    forks,
                }
            }
        })
    };
    Some(Box::new(super::ForwardRules {
        immediate: resolve(&f.immediate),
        busy: resolve(&f.busy),
        no_answer: resolve(&f.no_answer).map(|t| (f.no_answer_after, t)),
        unavailable: resolve(&f.unavailable),
    }))
}

/// Every fork the user's call rings (DR-FORK-1): scripted clients, then every SIP
/// endpoint contact that can be reached now.
/// The forks of a transfer to `user` that drhub carries out as referee (DR-XFER-2): the
/// user's clients, on a call the media processor anchors (Microsoft supports no
/// transfer without REFER in media bypass).
pub fn transfer_forks(hub: &Hub, user: &User) -> Vec<ForkPlan> {
    let mut forks = plan_forks(hub, user, None);
    for f in &mut forks {
        match f {
            ForkPlan::Script { name, .. }
            | ForkPlan::Sip { name, .. }
            | ForkPlan::Pstn { name, .. } => {
                *name = format!("transfer to {} {name}", user.sip_address)
            }
        }
    }
    forks
}

/// The forks that ring `user`'s clients: `bypass_offer` is the SBC's offer on a
/// media-bypass trunk (scripted clients answer it with SDP of their own), `None` when
/// the media processor anchors the call.
fn plan_forks(hub: &Hub, user: &User, bypass_offer: Option<&Offer>) -> Vec<ForkPlan> {
    let bypass = bypass_offer.is_some();
    let mut forks = Vec::with_capacity(user.endpoints.len());
    for e in &user.endpoints {
        match &e.kind {
            EndpointKind::Virtual(script) => {
                // A scripted client's own SDP answer (bypass trunks, DR-ICE-1).
                let answer = bypass_offer.filter(|_| script.bypass).map(|offer| {
                    sdp::endpoint_answer(
                        offer,
                        hub.config().media.address,
                        hub.media_port(),
                        session_id(),
                    )
                    .map(Box::new)
                    .map_err(|e| warn!(error = %e, "endpoint SDP answer failed"))
                    .ok()
                });
                forks.push(ForkPlan::Script {
                    name: e.name.clone(),
                    script: script.clone(),
                    answer: answer.flatten(),
                });
            }
            EndpointKind::Sip { contact } => {
                let Some(endpoints) = &hub.endpoints else {
                    continue;
                };
                let mut targets = endpoints.targets(&user.sip_address);
                if let Some(c) = contact {
                    match crate::endpoint::service::static_target(c) {
                        Some(t) => targets.push(t),
                        None => {
                            warn!(contact = %c, "static contact is not sip:user@ip:port; skipped")
                        }
                    }
                }
                for t in targets {
                    let route = match t.transport {
                        Transport::Udp => Destination::Udp {
                            socket: endpoints.udp.clone(),
                            addr: t.addr,
                        },
                        _ => match hub.flows.find_by_peer(t.addr) {
                            Some(f) => Destination::Flow(f),
                            None => {
                                warn!(endpoint = %e.name, addr = %t.addr, "TCP endpoint's connection is gone; not rung");
                                continue;
                            }
                        },
                    };
                    let local = endpoints.udp.proxy.with_transport(t.transport);
                    // DR-MEDIA-3: the media processor is in the path on non-bypass trunks.
                    let offer = (!bypass)
                        .then(|| {
                            let m = &hub.media;
                            let source = sdp::AnswerSource::MediaProcessor;
                            sdp::offer(&m.codecs, m.address, hub.media_port(), session_id(), source)
                                .map_err(|e| warn!(error = %e, "media processor offer failed; the endpoint gets the SBC's"))
                                .ok()
                        })
                        .flatten()
                        .map(Bytes::from);
                    forks.push(ForkPlan::Sip {
                        name: e.name.clone(),
                        uri: t.uri,
                        route,
                        local,
                        offer,
                    });
                }
            }
        }
    }
    forks
}

fn session_id() -> u64 {
    fastrand::u64(1..u64::MAX / 2)
}

#[cfg(test)]
mod shed_tests {
    use super::*;

    fn parsed(method: &str, to_tag: bool) -> bool {
        let tag = if to_tag { ";tag=p1" } else { "" };
        let text = format!(
            "{method} sip:+18338006777@sip.pstnhub.microsoft.com SIP/2.0\r\n\
Via: SIP/2.0/TLS sbc1.adatum.biz:5061;branch=z9hG4bKshed\r\n\
Max-Forwards: 70\r\n\
From: <sip:+17168712781@sbc1.adatum.biz>;tag=sbc\r\n\
To: <sip:+18338006777@sip.pstnhub.microsoft.com>{tag}\r\n\
Call-ID: shed-1\r\n\
CSeq: 1 {method}\r\n\
Content-Length: 0\r\n\r\n"
        );
        let stored = crate::sip::Stored::new(Bytes::from(text)).expect("frames");
        is_new(&stored.message())
    }

    /// DR-ERR-1: a full router queue sheds only what would start something; a BYE or
    /// re-INVITE of a call already admitted, CANCEL and ACK wait for room.
    #[test]
    fn dr_err_1_only_requests_outside_a_dialog_are_shed() {
        for (method, to_tag, shed) in [
            ("INVITE", false, true),
            ("OPTIONS", false, true),
            ("MESSAGE", false, true),
            ("INVITE", true, false),
            ("BYE", true, false),
            ("UPDATE", true, false),
            ("CANCEL", false, false),
            ("ACK", false, false),
            ("ACK", true, false),
        ] {
            assert_eq!(parsed(method, to_tag), shed, "{method} to-tag {to_tag}");
        }
    }
}
