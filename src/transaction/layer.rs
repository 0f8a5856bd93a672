//! The transaction layer driver: the only tokio code of the transaction module. It owns
//! every live transaction in two maps keyed by [`ServerKey`] and [`ClientKey`], feeds them
//! messages and timer expiries, and hands out what to transmit and what the TU must see.
//!
//! # How the daemon drives it
//!
//! ```text
//! let (mut layer, handle) = TransactionLayer::<FlowId>::new(timers);
//! // connection tasks, for every framed and checked message:
//! handle.receive(stored, flow_id, Transport::Tls)?;
//! // call tasks:
//! let key = handle.send_request(invite, flow_id, kind, move |ev| { let _ = call_tx.send(ev); })?;
//! req.tx.provisional(ringing)?;  let answered = req.tx.respond(ok);
//! // one transaction task:
//! loop {
//!     match layer.next().await {
//!         Output::Transmit(t) => if flows.send(t.dest, t.bytes).is_err() {
//!             if let Some(tx) = t.tx { handle.transport_error(tx)?; }
//!         },
//!         Output::Event(ev) => router.dispatch(ev), // new requests, CANCEL, 2xx ACKs, strays
//!     }
//! }
//! ```
//!
//! Events go to whoever owns the transaction: a client transaction's to the closure given
//! to [`LayerHandle::send_request`], a server transaction's outcome to the
//! [`Answered`] its final response returned; only what belongs to no transaction yet (a new
//! request, a CANCEL, an ACK for a 2xx, a stray response) comes out of
//! [`TransactionLayer::next`], so the daemon needs no second map of keys to calls.
//!
//! Timers: one [`DelayQueue`] entry per transaction, at the machine's earliest deadline
//! (`poll_timeout`), reset when it changes: a hierarchical wheel, O(1) per operation, so
//! 50,000 live transactions cost 50,000 slab entries and no sorting.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::time::delay_queue::{self, DelayQueue, Expired};

use crate::overload::{StandingDelay, Window};

use super::client::{ClientEvent, ClientInput, InviteClient, NonInviteClient};
use super::key::{ClientKey, KeyError, ServerKey, TxKey};
use super::server::{
    Final, InviteServer, NonInviteServer, Provisional, ServerError, ServerEvent, ServerInput,
    ServerState,
};
use super::Timers;
use crate::sip::{Invalid, Limits, Message, Method, StartLine, Status, Stored, Transport};

/// The layer task has ended (shutdown); nothing more can be sent through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the transaction layer has shut down")]
pub struct LayerClosed;

/// Why a received message was not taken by the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveError {
    /// The message lacks what transaction matching needs (400 for a request, DR-ERR-3).
    #[error("cannot match the message to a transaction: {0}")]
    Key(#[from] KeyError),
    /// A response status outside 100-699 (`check_response` rejects these first).
    #[error("response status {0} out of range")]
    StatusOutOfRange(u16),
    /// The layer has shut down.
    #[error(transparent)]
    Closed(#[from] LayerClosed),
}

/// Why a request was not sent. All but `Closed` are bugs in the TU's request builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The bytes are not exactly one complete SIP message.
    #[error("the request bytes are not one complete SIP message")]
    Unparseable,
    /// The request fails the RFC 3261 message checks.
    #[error("invalid request: {0}")]
    Invalid(Invalid),
    /// ACKs are not transactions: the ACK for a 2xx goes by
    /// [`LayerHandle::send_stateless`], the ACK for a non-2xx is the transaction's.
    #[error("an ACK is not sent in a client transaction")]
    Ack,
    /// The request cannot be keyed (no RFC 3261 branch in its top Via).
    #[error("cannot key the request: {0}")]
    Key(#[from] KeyError),
    /// The layer has shut down.
    #[error(transparent)]
    Closed(#[from] LayerClosed),
}

/// Something to write to the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit<D> {
    /// Where: the source of the request for server transactions, the destination given to
    /// `send_request` for client ones.
    pub dest: D,
    /// The whole message.
    pub bytes: Bytes,
    /// The transaction it belongs to; report a failed write with
    /// [`LayerHandle::transport_error`]. `None` for `send_stateless`.
    pub tx: Option<TxKey>,
}

/// What the layer hands out.
#[derive(Debug)]
pub enum Output<D> {
    /// Bytes to send.
    Transmit(Transmit<D>),
    /// Something for the TU core that belongs to no transaction yet.
    Event(CoreEvent<D>),
}

/// A request that created a server transaction.
#[derive(Debug)]
pub struct IncomingRequest<D> {
    /// The right (and duty) to answer it.
    pub tx: ServerTx,
    /// The request as received.
    pub request: Stored,
    /// Where it came from (responses go back there, RFC 3261 §18.2.2).
    pub source: D,
    /// The transport it came on.
    pub transport: Transport,
}

/// What a CANCEL matched (RFC 3261 §9.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelTarget {
    /// No INVITE transaction: answer the CANCEL 481.
    Unknown,
    /// The INVITE has no final response yet: answer the CANCEL 200 and the INVITE 487.
    Pending(ServerKey),
    /// The INVITE already has its final response: answer the CANCEL 200 only.
    Answered(ServerKey),
}

/// What the TU core receives from [`TransactionLayer::next`].
#[derive(Debug)]
pub enum CoreEvent<D> {
    /// A new request (not ACK, not CANCEL); its transaction is waiting for the TU.
    Request(IncomingRequest<D>),
    /// A new CANCEL (its own non-INVITE transaction) and the INVITE it cancels.
    Cancel {
        /// The CANCEL; answer it through `request.tx`.
        request: IncomingRequest<D>,
        /// The INVITE server transaction it matched, if any.
        target: CancelTarget,
    },
    /// An ACK for a 2xx: it matched no transaction (the usual case: the 2xx ACK has its
    /// own branch), or an INVITE transaction in Accepted (RFC 6026 §7.1). For the dialog.
    Ack {
        /// The ACK as received.
        request: Stored,
        /// Where it came from.
        source: D,
        /// The Accepted INVITE transaction it matched, if any.
        matched: Option<ServerKey>,
    },
    /// A response matching no client transaction, e.g. a 2xx retransmitted after Timer M:
    /// the UAC core ACKs a 2xx (RFC 3261 §13.2.2.4) and drops anything else.
    StrayResponse {
        /// The response as received.
        response: Stored,
        /// Where it came from.
        source: D,
    },
}

/// What a client transaction tells the closure given to [`LayerHandle::send_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTxEvent {
    /// The transaction (as returned by `send_request`).
    pub key: ClientKey,
    /// What happened. `TransportError` also reports a request refused because a
    /// transaction with the same key is live (a reused branch: a TU bug, logged).
    pub event: ClientEvent,
}

/// How a server transaction ended, as its [`Answered`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerOutcome {
    /// INVITE, 3xx-6xx: the peer ACKed (the transaction is in Confirmed).
    Acked,
    /// INVITE, 3xx-6xx: Timer H fired without an ACK. On the SBC leg the daemon reports
    /// "the SBC did not ACK".
    AckTimeout,
    /// The transaction ended normally: non-INVITE after Timer J, INVITE 2xx after Timer L.
    Completed,
    /// The transport failed to deliver a response (§17.2.4); may come before the final.
    TransportError,
    /// The layer shut down first.
    LayerClosed,
}

/// The TU's handle on a server transaction that has no final response yet.
///
/// Design point 6: [`respond`](ServerTx::respond) takes `self`, so a second final response
/// does not compile; provisionals take `&self`, as many as needed. `ServerTx` is not
/// `Clone`. Dropping it unanswered ends the transaction (logged as a TU bug): the peer
/// then retransmits or times out, which is what it would see from a crashed UAS.
#[derive(Debug)]
#[must_use = "a server transaction must be answered with a final response"]
pub struct ServerTx {
    key: ServerKey,
    serial: u64,
    commands: mpsc::UnboundedSender<TuCommand>,
    /// `Some` until [`respond`](ServerTx::respond) moves it into [`Answered`]; `Drop`
    /// abandons the transaction while it is still here.
    outcome: Option<oneshot::Receiver<ServerOutcome>>,
}

impl ServerTx {
    /// The transaction's key.
    pub fn key(&self) -> &ServerKey {
        &self.key
    }

    /// True for an INVITE transaction (3xx-6xx finals wait for an ACK).
    pub fn is_invite(&self) -> bool {
        self.key.method().is_invite()
    }

    /// Sends a provisional response (100 Trying at once for INVITE, DR-FORK-1; then 180,
    /// 183 ...).
    pub fn provisional(&self, response: Provisional) -> Result<(), LayerClosed> {
        self.commands
            .send(TuCommand::Provisional(
                self.key.clone(),
                self.serial,
                response,
            ))
            .map_err(|_| LayerClosed)
    }

    /// Sends the final response. Consumes the handle: the transaction now runs on its
    /// own (retransmissions, ACK, timers); [`Answered`] says how it ends.
    pub fn respond(mut self, response: Final) -> Answered {
        let outcome = self.outcome.take();
        let sent = self
            .commands
            .send(TuCommand::Final(self.key.clone(), self.serial, response))
            .is_ok();
        Answered {
            key: self.key.clone(),
            serial: self.serial,
            commands: self.commands.clone(),
            result: (!sent || outcome.is_none()).then_some(ServerOutcome::LayerClosed),
            outcome,
        }
    }
}

impl Drop for ServerTx {
    fn drop(&mut self) {
        if self.outcome.is_some() {
            // The layer may be gone already; then there is nothing to end.
            let _ = self
                .commands
                .send(TuCommand::Abandon(self.key.clone(), self.serial));
        }
    }
}

/// A server transaction after its final response: reports how it ended and, after a 2xx
/// to an INVITE, carries the TU's 2xx retransmissions (RFC 3261 §13.3.1.4, RFC 6026 §7.1).
#[derive(Debug)]
pub struct Answered {
    key: ServerKey,
    serial: u64,
    commands: mpsc::UnboundedSender<TuCommand>,
    outcome: Option<oneshot::Receiver<ServerOutcome>>,
    result: Option<ServerOutcome>,
}

impl Answered {
    /// The transaction's key.
    pub fn key(&self) -> &ServerKey {
        &self.key
    }

    /// Passes a retransmission of the 2xx to the transport (Accepted state only; ignored
    /// with a log line otherwise).
    pub fn retransmit_2xx(&self, response: Final) -> Result<(), LayerClosed> {
        self.commands
            .send(TuCommand::Retransmit2xx(
                self.key.clone(),
                self.serial,
                response,
            ))
            .map_err(|_| LayerClosed)
    }

    /// How the transaction ended; waits until it is known. Cancel-safe and repeatable.
    pub async fn outcome(&mut self) -> ServerOutcome {
        if let Some(r) = self.result {
            return r;
        }
        let r = match self.outcome.as_mut() {
            Some(rx) => rx.await.unwrap_or(ServerOutcome::LayerClosed),
            None => ServerOutcome::LayerClosed,
        };
        self.result = Some(r);
        r
    }
}

/// The cloneable input side of the layer, for connection and call tasks.
#[derive(Debug)]
pub struct LayerHandle<D> {
    commands: mpsc::UnboundedSender<Queued<D>>,
    load: Arc<Load>,
}

impl<D> Clone for LayerHandle<D> {
    fn clone(&self) -> Self {
        LayerHandle {
            commands: self.commands.clone(),
            load: self.load.clone(),
        }
    }
}

/// How busy the layer is, for admission (DR-ERR-1): read by the front doors before they
/// accept a new INVITE, written by the layer's task as it works.
#[derive(Debug, Default)]
pub struct Load {
    /// Commands handed to the layer and not yet taken.
    queued: AtomicUsize,
    /// How long commands have waited in the queue, as a delay that stands (the
    /// smallest over the last interval; see [`crate::overload`]).
    delay: StandingDelay,
    /// Live transactions (server and client).
    transactions: AtomicUsize,
}

impl Load {
    /// Commands waiting for the layer.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// The smallest wait in the queue over the last interval: a standing delay, not
    /// a burst's.
    pub fn delay(&self) -> Duration {
        self.delay.get()
    }

    /// Live transactions.
    pub fn transactions(&self) -> usize {
        self.transactions.load(Ordering::Relaxed)
    }
}

/// A command and when it was sent.
struct Queued<D> {
    at: tokio::time::Instant,
    cmd: Command<D>,
}

/// Limits for parsing requests the TU built: ours, so no size limit.
const OWN: Limits = Limits {
    max_header_bytes: usize::MAX,
    max_body_bytes: usize::MAX,
};

impl<D> LayerHandle<D> {
    /// A message the transport framed and the caller checked (`check_request` /
    /// `check_response`); `source` is where responses to a request go. Keys are computed
    /// here, on the caller's task.
    pub fn receive(
        &self,
        wire: Stored,
        source: D,
        transport: Transport,
    ) -> Result<(), ReceiveError> {
        let msg = wire.message();
        let cmd = match *msg.start_line() {
            StartLine::Request { method, .. } => Command::Request {
                key: ServerKey::from_request(&msg)?,
                kind: match method {
                    Method::Ack => RequestKind::Ack,
                    Method::Cancel => RequestKind::Cancel,
                    _ => RequestKind::Other,
                },
                wire,
                source,
                transport,
            },
            StartLine::Response { code, .. } => {
                if !(100..=699).contains(&code) {
                    return Err(ReceiveError::StatusOutOfRange(code));
                }
                Command::Response {
                    key: ClientKey::from_response(&msg)?,
                    code,
                    wire,
                    source,
                }
            }
        };
        self.send(cmd)?;
        Ok(())
    }

    /// Starts a client transaction for `request` (built by the TU with a top Via carrying
    /// a [`Branch`](super::Branch)); its events go to `events`. Returns its key at once.
    pub fn send_request(
        &self,
        request: Bytes,
        dest: D,
        transport: Transport,
        events: impl Fn(ClientTxEvent) + Send + 'static,
    ) -> Result<ClientKey, SendError> {
        let msg = match Message::parse(&request, &OWN) {
            Ok(Status::Complete(m)) if m.len() == request.len() => m,
            _ => return Err(SendError::Unparseable),
        };
        msg.check_request().map_err(SendError::Invalid)?;
        if msg.method() == Some(Method::Ack) {
            return Err(SendError::Ack);
        }
        let key = ClientKey::from_request(&msg)?;
        self.send(Command::Send {
            key: key.clone(),
            request,
            dest,
            transport,
            events: Box::new(events),
        })
        .map_err(|_| LayerClosed)?;
        Ok(key)
    }

    /// Sends bytes outside any transaction: the ACK for a 2xx and its retransmissions
    /// (RFC 3261 §13.2.2.4), so that every byte drhub writes comes out of one place.
    pub fn send_stateless(&self, bytes: Bytes, dest: D) -> Result<(), LayerClosed> {
        self.send(Command::Stateless { bytes, dest })
    }

    /// Reports that writing a [`Transmit`] for `tx` failed (§17.1.4, §17.2.4).
    pub fn transport_error(&self, tx: TxKey) -> Result<(), LayerClosed> {
        self.send(Command::TransportError(tx))
    }

    /// How busy the layer is.
    pub fn load(&self) -> &Arc<Load> {
        &self.load
    }

    fn send(&self, cmd: Command<D>) -> Result<(), LayerClosed> {
        self.load.queued.fetch_add(1, Ordering::Relaxed);
        let at = tokio::time::Instant::now();
        self.commands.send(Queued { at, cmd }).map_err(|_| {
            self.load.queued.fetch_sub(1, Ordering::Relaxed);
            LayerClosed
        })
    }
}

type EventSink = Box<dyn Fn(ClientTxEvent) + Send>;

enum Command<D> {
    Request {
        key: ServerKey,
        kind: RequestKind,
        wire: Stored,
        source: D,
        transport: Transport,
    },
    Response {
        key: ClientKey,
        code: u16,
        wire: Stored,
        source: D,
    },
    Send {
        key: ClientKey,
        request: Bytes,
        dest: D,
        transport: Transport,
        events: EventSink,
    },
    Stateless {
        bytes: Bytes,
        dest: D,
    },
    TransportError(TxKey),
}

impl<D> std::fmt::Debug for Command<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Request { key, .. } => write!(f, "Request({key})"),
            Command::Response { key, code, .. } => write!(f, "Response({key}, {code})"),
            Command::Send { key, .. } => write!(f, "Send({key})"),
            Command::Stateless { .. } => f.write_str("Stateless"),
            Command::TransportError(k) => write!(f, "TransportError({k})"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestKind {
    Ack,
    Cancel,
    Other,
}

/// From [`ServerTx`] / [`Answered`]: the key plus the serial of the transaction the handle
/// was made for, so a late command never reaches a newer transaction with the same key.
#[derive(Debug)]
enum TuCommand {
    Provisional(ServerKey, u64, Provisional),
    Final(ServerKey, u64, Final),
    Retransmit2xx(ServerKey, u64, Final),
    Abandon(ServerKey, u64),
}

#[derive(Debug)]
enum ServerMachine {
    Invite(InviteServer),
    NonInvite(NonInviteServer),
}

impl ServerMachine {
    fn state(&self) -> ServerState {
        match self {
            ServerMachine::Invite(m) => m.state(),
            ServerMachine::NonInvite(m) => m.state(),
        }
    }

    fn handle(&mut self, input: ServerInput, now: Instant) {
        match self {
            ServerMachine::Invite(m) => m.handle(input, now),
            ServerMachine::NonInvite(m) => m.handle(input, now),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            ServerMachine::Invite(m) => m.handle_timeout(now),
            ServerMachine::NonInvite(m) => m.handle_timeout(now),
        }
    }

    fn send_provisional(&mut self, r: Provisional) -> Result<(), ServerError> {
        match self {
            ServerMachine::Invite(m) => m.send_provisional(r),
            ServerMachine::NonInvite(m) => m.send_provisional(r),
        }
    }

    fn send_final(&mut self, r: Final, now: Instant) -> Result<(), ServerError> {
        match self {
            ServerMachine::Invite(m) => m.send_final(r, now),
            ServerMachine::NonInvite(m) => m.send_final(r, now),
        }
    }

    fn retransmit_2xx(&mut self, r: Final) -> Result<(), ServerError> {
        match self {
            ServerMachine::Invite(m) => m.retransmit_2xx(r),
            ServerMachine::NonInvite(m) => Err(ServerError::NotAccepted(m.state())),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            ServerMachine::Invite(m) => m.poll_timeout(),
            ServerMachine::NonInvite(m) => m.poll_timeout(),
        }
    }

    fn poll_transmit(&mut self) -> Option<Bytes> {
        match self {
            ServerMachine::Invite(m) => m.poll_transmit(),
            ServerMachine::NonInvite(m) => m.poll_transmit(),
        }
    }

    fn poll_event(&mut self) -> Option<ServerEvent> {
        match self {
            ServerMachine::Invite(m) => m.poll_event(),
            ServerMachine::NonInvite(m) => m.poll_event(),
        }
    }

    fn is_terminated(&self) -> bool {
        self.state() == ServerState::Terminated
    }

    /// RFC 3261 §17.2.3, RFC 2543 ACK: "the To tag of the ACK matches the To tag of the
    /// response sent by the server transaction".
    fn final_to_tag_is(&self, tag: Option<&str>) -> bool {
        let ServerMachine::Invite(m) = self else {
            return false;
        };
        let Some(wire) = m.last_final() else {
            return false;
        };
        match Message::parse_head(wire) {
            Ok(Status::Complete(resp)) => {
                resp.to().and_then(Result::ok).and_then(|t| t.tag()) == tag
            }
            _ => false,
        }
    }
}

#[derive(Debug)]
enum ClientMachine {
    Invite(InviteClient),
    NonInvite(NonInviteClient),
}

impl ClientMachine {
    fn handle(&mut self, input: ClientInput, now: Instant) {
        match self {
            ClientMachine::Invite(m) => m.handle(input, now),
            ClientMachine::NonInvite(m) => m.handle(input, now),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            ClientMachine::Invite(m) => m.handle_timeout(now),
            ClientMachine::NonInvite(m) => m.handle_timeout(now),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            ClientMachine::Invite(m) => m.poll_timeout(),
            ClientMachine::NonInvite(m) => m.poll_timeout(),
        }
    }

    fn poll_transmit(&mut self) -> Option<Bytes> {
        match self {
            ClientMachine::Invite(m) => m.poll_transmit(),
            ClientMachine::NonInvite(m) => m.poll_transmit(),
        }
    }

    fn poll_event(&mut self) -> Option<ClientEvent> {
        match self {
            ClientMachine::Invite(m) => m.poll_event(),
            ClientMachine::NonInvite(m) => m.poll_event(),
        }
    }

    fn is_terminated(&self) -> bool {
        match self {
            ClientMachine::Invite(m) => m.is_terminated(),
            ClientMachine::NonInvite(m) => m.is_terminated(),
        }
    }
}

/// The queue entry of a transaction's timer and the deadline it stands for.
type TimerSlot = Option<(delay_queue::Key, Instant)>;

struct ServerEntry<D> {
    machine: ServerMachine,
    dest: D,
    /// Taken when the outcome is sent: the TU hears it once.
    outcome: Option<oneshot::Sender<ServerOutcome>>,
    timer: TimerSlot,
    serial: u64,
}

struct ClientEntry<D> {
    machine: ClientMachine,
    dest: D,
    events: EventSink,
    timer: TimerSlot,
}

/// Owns every transaction and drives them; see the module docs for the loop around it.
///
/// Guarantees: every deadline a machine asks for is honoured (never early: a timer fires
/// with `now` no earlier than the machine's deadline); a terminated transaction is
/// removed at once with its timer; outputs come out in the order the machines produced
/// them.
pub struct TransactionLayer<D> {
    timers: Timers,
    // Entries are boxed so the tables hold keys and pointers only: with 240,000
    // transactions (8,000 calls/s, each INVITE kept 32 s after its 2xx, RFC 6026) an
    // inline table moved 90 MB on each resize and stalled every call for 100-300 ms.
    servers: HashMap<ServerKey, Box<ServerEntry<D>>>,
    clients: HashMap<ClientKey, Box<ClientEntry<D>>>,
    queue: DelayQueue<TxKey>,
    commands: mpsc::UnboundedReceiver<Queued<D>>,
    load: Arc<Load>,
    delay_window: Window,
    tu_rx: mpsc::UnboundedReceiver<TuCommand>,
    tu_tx: mpsc::UnboundedSender<TuCommand>,
    out: VecDeque<Output<D>>,
    next_serial: u64,
}

impl<D> std::fmt::Debug for TransactionLayer<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionLayer")
            .field("timers", &self.timers)
            .field("servers", &self.servers.len())
            .field("clients", &self.clients.len())
            .field("queued_outputs", &self.out.len())
            .finish()
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Points a transaction's queue entry at `want`, inserting or removing it as needed.
fn reschedule(
    queue: &mut DelayQueue<TxKey>,
    slot: &mut TimerSlot,
    want: Option<Instant>,
    tx: impl FnOnce() -> TxKey,
) {
    if slot.map(|(_, at)| at) == want {
        return;
    }
    if let Some((k, _)) = slot.take() {
        queue.try_remove(&k);
    }
    if let Some(at) = want {
        let k = queue.insert_at(tx(), tokio::time::Instant::from_std(at));
        *slot = Some((k, at));
    }
}

impl<D: Clone> TransactionLayer<D> {
    /// A layer with no transactions, and the handle that feeds it.
    pub fn new(timers: Timers) -> (TransactionLayer<D>, LayerHandle<D>) {
        let (cmd_tx, commands) = mpsc::unbounded_channel();
        let (tu_tx, tu_rx) = mpsc::unbounded_channel();
        let load = Arc::new(Load::default());
        let layer = TransactionLayer {
            timers,
            servers: HashMap::new(),
            clients: HashMap::new(),
            queue: DelayQueue::new(),
            commands,
            load: load.clone(),
            delay_window: Window::default(),
            tu_rx,
            tu_tx,
            out: VecDeque::new(),
            next_serial: 0,
        };
        (
            layer,
            LayerHandle {
                commands: cmd_tx,
                load,
            },
        )
    }

    /// Live transactions (server + client).
    pub fn len(&self) -> usize {
        self.servers.len() + self.clients.len()
    }

    /// True with no live transaction.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next thing to transmit or to tell the TU core. Cancel-safe: use it in
    /// `tokio::select!`. Never ends; the daemon's shutdown token ends the loop.
    pub async fn next(&mut self) -> Output<D> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Poll form of [`next`](Self::next).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Output<D>> {
        loop {
            if let Some(o) = self.out.pop_front() {
                return Poll::Ready(o);
            }
            let now = now();
            let mut progressed = false;
            // The TU's responses first: they unblock peers. Both channels and the queue
            // take part in tokio's cooperative budget, so a flood cannot starve the task.
            while let Poll::Ready(Some(cmd)) = self.tu_rx.poll_recv(cx) {
                self.on_tu(cmd, now);
                progressed = true;
            }
            let mut first = true;
            while let Poll::Ready(Some(q)) = self.commands.poll_recv(cx) {
                self.load.queued.fetch_sub(1, Ordering::Relaxed);
                if first {
                    // The oldest of a batch: how far behind the layer is.
                    first = false;
                    let at = tokio::time::Instant::now();
                    let delay = at.saturating_duration_since(q.at);
                    self.delay_window.sample(at, delay, &self.load.delay);
                }
                self.on_command(q.cmd, now);
                progressed = true;
            }
            while let Poll::Ready(Some(expired)) = self.queue.poll_expired(cx) {
                self.on_expired(expired, now);
                progressed = true;
            }
            self.load.transactions.store(self.len(), Ordering::Relaxed);
            if !progressed {
                return Poll::Pending;
            }
        }
    }

    fn on_command(&mut self, cmd: Command<D>, now: Instant) {
        match cmd {
            Command::Request {
                key,
                kind: RequestKind::Ack,
                wire,
                source,
                ..
            } => self.on_ack(key, wire, source, now),
            Command::Request {
                key,
                kind,
                wire,
                source,
                transport,
            } => self.on_request(
                key,
                kind == RequestKind::Cancel,
                wire,
                source,
                transport,
                now,
            ),
            Command::Response {
                key,
                code,
                wire,
                source,
            } => match self.clients.get_mut(&key) {
                // RFC 3261 §17.1.3: the response goes to the transaction it matches.
                Some(entry) => {
                    entry
                        .machine
                        .handle(ClientInput::Response { code, wire }, now);
                    self.settle_client(&key);
                }
                // RFC 3261 §18.1.2: a response matching no transaction goes to the core.
                None => self.out.push_back(Output::Event(CoreEvent::StrayResponse {
                    response: wire,
                    source,
                })),
            },
            Command::Send {
                key,
                request,
                dest,
                transport,
                events,
            } => self.on_send(key, request, dest, transport, events, now),
            Command::Stateless { bytes, dest } => {
                self.out.push_back(Output::Transmit(Transmit {
                    dest,
                    bytes,
                    tx: None,
                }));
            }
            Command::TransportError(TxKey::Server(key)) => {
                if let Some(entry) = self.servers.get_mut(&key) {
                    entry.machine.handle(ServerInput::TransportError, now);
                    self.settle_server(&key, None);
                }
            }
            Command::TransportError(TxKey::Client(key)) => {
                if let Some(entry) = self.clients.get_mut(&key) {
                    entry.machine.handle(ClientInput::TransportError, now);
                    self.settle_client(&key);
                }
            }
        }
    }

    fn on_request(
        &mut self,
        key: ServerKey,
        is_cancel: bool,
        wire: Stored,
        source: D,
        transport: Transport,
        now: Instant,
    ) {
        // RFC 3261 §17.2.3: a request matching a transaction is a retransmission; it
        // stays in the transaction.
        if let Some(entry) = self.servers.get_mut(&key) {
            entry.machine.handle(ServerInput::Request, now);
            self.settle_server(&key, None);
            return;
        }
        let machine = if key.method().is_invite() {
            ServerMachine::Invite(InviteServer::new(transport, self.timers))
        } else {
            ServerMachine::NonInvite(NonInviteServer::new(transport, self.timers))
        };
        let serial = self.next_serial;
        self.next_serial += 1;
        let (outcome_tx, outcome_rx) = oneshot::channel();
        tracing::debug!(tx = %key, "server transaction created");
        self.servers.insert(
            key.clone(),
            Box::new(ServerEntry {
                machine,
                dest: source.clone(),
                outcome: Some(outcome_tx),
                timer: None,
                serial,
            }),
        );
        let request = IncomingRequest {
            tx: ServerTx {
                key: key.clone(),
                serial,
                commands: self.tu_tx.clone(),
                outcome: Some(outcome_rx),
            },
            request: wire,
            source,
            transport,
        };
        let event = if is_cancel {
            // RFC 3261 §9.2: the CANCEL is its own transaction; the INVITE it cancels is
            // found by §17.2.3 matching with the method INVITE.
            let target = match key.invite_for_cancel() {
                Some(k) => match self.servers.get(&k).map(|e| e.machine.state()) {
                    Some(ServerState::Proceeding) => CancelTarget::Pending(k),
                    Some(_) => CancelTarget::Answered(k),
                    None => CancelTarget::Unknown,
                },
                None => CancelTarget::Unknown,
            };
            CoreEvent::Cancel { request, target }
        } else {
            CoreEvent::Request(request)
        };
        self.out.push_back(Output::Event(event));
    }

    fn on_ack(&mut self, key: ServerKey, wire: Stored, source: D, now: Instant) {
        // RFC 3261 §17.2.3: an ACK matches the INVITE transaction (its key maps ACK to
        // INVITE). RFC 2543 ACKs carry the To tag of the response, not of the INVITE:
        // retry without it and compare with the tag of the final response sent.
        let matched = if self.servers.contains_key(&key) {
            Some(key)
        } else {
            let tag = key.rfc2543_to_tag();
            key.without_to_tag().filter(|k| {
                self.servers
                    .get(k)
                    .is_some_and(|e| e.machine.final_to_tag_is(tag))
            })
        };
        match matched {
            Some(k) => {
                if let Some(entry) = self.servers.get_mut(&k) {
                    entry.machine.handle(ServerInput::Ack, now);
                }
                self.settle_server(&k, Some((wire, source)));
            }
            // No transaction: the ACK for a 2xx, which belongs to the dialog.
            None => self.out.push_back(Output::Event(CoreEvent::Ack {
                request: wire,
                source,
                matched: None,
            })),
        }
    }

    fn on_send(
        &mut self,
        key: ClientKey,
        request: Bytes,
        dest: D,
        transport: Transport,
        events: EventSink,
        now: Instant,
    ) {
        if self.clients.contains_key(&key) {
            tracing::error!(tx = %key, "request refused: a live client transaction has the same branch");
            events(ClientTxEvent {
                key,
                event: ClientEvent::TransportError,
            });
            return;
        }
        let machine = if key.method().is_invite() {
            ClientMachine::Invite(InviteClient::new(request, transport, self.timers, now))
        } else {
            ClientMachine::NonInvite(NonInviteClient::new(request, transport, self.timers, now))
        };
        tracing::debug!(tx = %key, "client transaction created");
        self.clients.insert(
            key.clone(),
            Box::new(ClientEntry {
                machine,
                dest,
                events,
                timer: None,
            }),
        );
        self.settle_client(&key);
    }

    fn on_tu(&mut self, cmd: TuCommand, now: Instant) {
        let (key, serial) = match &cmd {
            TuCommand::Provisional(k, s, _)
            | TuCommand::Final(k, s, _)
            | TuCommand::Retransmit2xx(k, s, _)
            | TuCommand::Abandon(k, s) => (k.clone(), *s),
        };
        let Some(entry) = self.servers.get_mut(&key).filter(|e| e.serial == serial) else {
            // Already ended (transport failure; the outcome said so) or shut down.
            tracing::debug!(tx = %key, "response for a transaction that has ended");
            return;
        };
        let result = match cmd {
            TuCommand::Provisional(_, _, r) => entry.machine.send_provisional(r),
            TuCommand::Final(_, _, r) => entry.machine.send_final(r, now),
            TuCommand::Retransmit2xx(_, _, r) => entry.machine.retransmit_2xx(r),
            TuCommand::Abandon(..) => {
                tracing::warn!(tx = %key, "server transaction dropped without a final response");
                if let Some(entry) = self.servers.remove(&key) {
                    if let Some((k, _)) = entry.timer {
                        self.queue.try_remove(&k);
                    }
                }
                self.release_memory();
                return;
            }
        };
        if let Err(e) = result {
            tracing::debug!(tx = %key, error = %e, "response not sent");
        }
        self.settle_server(&key, None);
    }

    fn on_expired(&mut self, expired: Expired<TxKey>, now: Instant) {
        let qkey = expired.key();
        match expired.into_inner() {
            TxKey::Server(key) => {
                let Some(entry) = self.servers.get_mut(&key) else {
                    return;
                };
                let Some((_, at)) = entry.timer.filter(|(k, _)| *k == qkey) else {
                    return;
                };
                entry.timer = None;
                // The queue works in whole milliseconds: never hand the machine a time
                // before the deadline it asked for.
                entry.machine.handle_timeout(now.max(at));
                self.settle_server(&key, None);
            }
            TxKey::Client(key) => {
                let Some(entry) = self.clients.get_mut(&key) else {
                    return;
                };
                let Some((_, at)) = entry.timer.filter(|(k, _)| *k == qkey) else {
                    return;
                };
                entry.timer = None;
                entry.machine.handle_timeout(now.max(at));
                self.settle_client(&key);
            }
        }
    }

    /// Moves a server machine's outputs out, re-arms its timer, forgets it if it ended.
    /// `ack` is the ACK just fed to it, for RFC 6026 pass-up.
    fn settle_server(&mut self, key: &ServerKey, mut ack: Option<(Stored, D)>) {
        let Some(entry) = self.servers.get_mut(key) else {
            return;
        };
        while let Some(bytes) = entry.machine.poll_transmit() {
            self.out.push_back(Output::Transmit(Transmit {
                dest: entry.dest.clone(),
                bytes,
                tx: Some(TxKey::Server(key.clone())),
            }));
        }
        while let Some(event) = entry.machine.poll_event() {
            let outcome = match event {
                ServerEvent::Confirmed => ServerOutcome::Acked,
                ServerEvent::AckTimeout => {
                    tracing::info!(tx = %key, "Timer H: the final response was never ACKed");
                    ServerOutcome::AckTimeout
                }
                ServerEvent::TransportError => ServerOutcome::TransportError,
                ServerEvent::AckForTu => {
                    if let Some((request, source)) = ack.take() {
                        self.out.push_back(Output::Event(CoreEvent::Ack {
                            request,
                            source,
                            matched: Some(key.clone()),
                        }));
                    }
                    continue;
                }
            };
            if let Some(tx) = entry.outcome.take() {
                // The TU may have stopped listening; that is its choice.
                let _ = tx.send(outcome);
            }
        }
        reschedule(
            &mut self.queue,
            &mut entry.timer,
            entry.machine.poll_timeout(),
            || TxKey::Server(key.clone()),
        );
        if entry.machine.is_terminated() {
            tracing::debug!(tx = %key, "server transaction terminated");
            if let Some(entry) = self.servers.remove(key) {
                if let Some((k, _)) = entry.timer {
                    self.queue.try_remove(&k);
                }
                if let Some(tx) = entry.outcome {
                    let _ = tx.send(ServerOutcome::Completed);
                }
            }
            self.release_memory();
        }
    }

    /// Moves a client machine's outputs out, re-arms its timer, forgets it if it ended.
    fn settle_client(&mut self, key: &ClientKey) {
        let Some(entry) = self.clients.get_mut(key) else {
            return;
        };
        while let Some(bytes) = entry.machine.poll_transmit() {
            self.out.push_back(Output::Transmit(Transmit {
                dest: entry.dest.clone(),
                bytes,
                tx: Some(TxKey::Client(key.clone())),
            }));
        }
        while let Some(event) = entry.machine.poll_event() {
            (entry.events)(ClientTxEvent {
                key: key.clone(),
                event,
            });
        }
        reschedule(
            &mut self.queue,
            &mut entry.timer,
            entry.machine.poll_timeout(),
            || TxKey::Client(key.clone()),
        );
        if entry.machine.is_terminated() {
            tracing::debug!(tx = %key, "client transaction terminated");
            if let Some(entry) = self.clients.remove(key) {
                if let Some((k, _)) = entry.timer {
                    self.queue.try_remove(&k);
                }
            }
            self.release_memory();
        }
    }

    /// Gives back the memory a burst of transactions left behind once they have ended:
    /// hash tables and the timer queue's slab otherwise keep their largest size (20,000
    /// calls' INVITE transactions leave about 16 MB after Timer L). A table less than a
    /// sixteenth full is shrunk to twice its length, which costs amortised O(1) per
    /// removal and goes straight from the large table to a small one (intermediate
    /// sizes would come from the heap and keep it from shrinking); the queue is shrunk
    /// once it is empty (its slab cannot move entries).
    fn release_memory(&mut self) {
        shrink_sparse(&mut self.servers);
        shrink_sparse(&mut self.clients);
        if self.queue.is_empty() && self.queue.capacity() > SHRINK_ABOVE {
            self.queue.shrink_to_fit();
        }
    }
}

/// Below this capacity a table or the timer queue is left as it is.
const SHRINK_ABOVE: usize = 1024;

/// Shrinks a table that is less than a sixteenth full to twice its length.
fn shrink_sparse<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > SHRINK_ABOVE && map.len() < map.capacity() / 16 {
        map.shrink_to(map.len() * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::build::{ResponseWriter, Style};
    use crate::transaction::{Branch, ClientState, Timer};
    use bytes::BytesMut;
    use std::time::Duration;
    #[allow(non_upper_case_globals)]
    const Reliable: Transport = Transport::Tls;
    #[allow(non_upper_case_globals)]
    const Unreliable: Transport = Transport::Udp;

    type Layer = TransactionLayer<u32>;

    fn parse(buf: &[u8]) -> Message<'_> {
        match Message::parse(buf, &Limits::default()) {
            Ok(Status::Complete(m)) => m,
            other => panic!("test message did not parse: {other:?}"),
        }
    }

    /// A request from the SBC; `via_params` is e.g. `;branch=z9hG4bK1` (empty: RFC 2543).
    fn request(method: &str, via_params: &str, cseq_method: &str, to_tag: Option<&str>) -> Bytes {
        let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        Bytes::from(format!(
            "{method} sip:+18338006777@sip.pstnhub.microsoft.com SIP/2.0\r\n\
Via: SIP/2.0/UDP sbc1.adatum.biz:5060{via_params}\r\n\
Max-Forwards: 70\r\n\
From: <sip:+15551234567@sbc1.adatum.biz>;tag=sbc-from\r\n\
To: <sip:+18338006777@sip.pstnhub.microsoft.com>{to_tag}\r\n\
Call-ID: call-1@sbc1\r\n\
CSeq: 1 {cseq_method}\r\n\
Contact: <sip:sbc1.adatum.biz:5060>\r\n\
Content-Length: 0\r\n\r\n"
        ))
    }

    fn invite(via_params: &str) -> Bytes {
        request("INVITE", via_params, "INVITE", None)
    }

    /// A response to `req` built the way the call layer will build it.
    fn reply(req: &Bytes, code: u16, to_tag: Option<&str>) -> Bytes {
        let msg = parse(req);
        let mut out = BytesMut::new();
        ResponseWriter::start(&mut out, Style::Rfc3261, &msg, code, "Phrase", to_tag).finish(b"");
        out.freeze()
    }

    fn feed(h: &LayerHandle<u32>, wire: &Bytes, source: u32, kind: Transport) {
        let m = parse(wire);
        if m.is_request() {
            assert_eq!(m.check_request(), Ok(()));
        } else {
            assert_eq!(m.check_response(), Ok(()));
        }
        h.receive(Stored::new(wire.clone()).unwrap(), source, kind)
            .unwrap();
    }

    fn status(b: &Bytes) -> u16 {
        parse(b).status_code().unwrap_or(0)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Every output until `t0 + until_ms` of virtual time, with its instant (ms from t0).
    async fn outputs_until(
        layer: &mut Layer,
        t0: tokio::time::Instant,
        until_ms: u64,
    ) -> Vec<(u64, Output<u32>)> {
        let mut got = Vec::new();
        while let Ok(o) = tokio::time::timeout_at(t0 + ms(until_ms), layer.next()).await {
            got.push(((tokio::time::Instant::now() - t0).as_millis() as u64, o));
        }
        got
    }

    async fn next_now(layer: &mut Layer) -> Output<u32> {
        match tokio::time::timeout(ms(0), layer.next()).await {
            Ok(o) => o,
            Err(_) => panic!("no output ready"),
        }
    }

    async fn nothing_now(layer: &mut Layer) {
        if let Ok(o) = tokio::time::timeout(ms(0), layer.next()).await {
            panic!("unexpected output {o:?}");
        }
    }

    fn transmit(o: Output<u32>) -> Transmit<u32> {
        match o {
            Output::Transmit(t) => t,
            Output::Event(e) => panic!("expected a transmit, got {e:?}"),
        }
    }

    fn new_request(o: Output<u32>) -> IncomingRequest<u32> {
        match o {
            Output::Event(CoreEvent::Request(r)) => r,
            other => panic!("expected a new request, got {other:?}"),
        }
    }

    fn prov(req: &Bytes, code: u16) -> Provisional {
        Provisional::new(reply(req, code, Some("drhub-1"))).unwrap()
    }

    fn fin(req: &Bytes, code: u16) -> Final {
        Final::new(reply(req, code, Some("drhub-1"))).unwrap()
    }

    /// The required driver test: an INVITE over UDP answered 486 is retransmitted by Timer
    /// G at the RFC instants, and Timer H reports the missing ACK at 32 s.
    #[tokio::test(start_paused = true)]
    async fn timers_g_and_h_fire_through_the_driver_at_virtual_instants() {
        let t0 = tokio::time::Instant::now();
        let (mut layer, handle) = Layer::new(Timers::default());
        let inv = invite(";branch=z9hG4bKsbc1");
        feed(&handle, &inv, 7, Unreliable);
        let req = new_request(next_now(&mut layer).await);
        assert_eq!((req.source, req.transport), (7, Unreliable));
        assert!(req.tx.is_invite());
        req.tx.provisional(prov(&inv, 100)).unwrap();
        req.tx.provisional(prov(&inv, 180)).unwrap();
        for code in [100, 180] {
            let t = transmit(next_now(&mut layer).await);
            assert_eq!((t.dest, status(&t.bytes)), (7, code));
            assert_eq!(t.tx, Some(TxKey::Server(req.tx.key().clone())));
        }
        // The SBC retransmits the INVITE: the last provisional again, nothing for the TU.
        feed(&handle, &inv, 7, Unreliable);
        assert_eq!(status(&transmit(next_now(&mut layer).await).bytes), 180);
        nothing_now(&mut layer).await;

        let mut answered = req.tx.respond(fin(&inv, 486));
        assert_eq!(status(&transmit(next_now(&mut layer).await).bytes), 486);
        let got = outputs_until(&mut layer, t0, 60_000).await;
        let at: Vec<u64> = got.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            at,
            [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert!(got
            .into_iter()
            .all(|(_, o)| status(&transmit(o).bytes) == 486));
        assert_eq!(answered.outcome().await, ServerOutcome::AckTimeout);
        assert!(layer.is_empty(), "Timer H removed the transaction");
    }

    #[tokio::test(start_paused = true)]
    async fn ack_for_non_2xx_is_absorbed_and_timer_i_ends_confirmed() {
        let t0 = tokio::time::Instant::now();
        let (mut layer, handle) = Layer::new(Timers::default());
        let inv = invite(";branch=z9hG4bKsbc2");
        feed(&handle, &inv, 1, Unreliable);
        let req = new_request(next_now(&mut layer).await);
        let mut answered = req.tx.respond(fin(&inv, 404));
        next_now(&mut layer).await;
        assert_eq!(
            outputs_until(&mut layer, t0, 700).await.len(),
            1,
            "Timer G at 500"
        );
        let ack = request("ACK", ";branch=z9hG4bKsbc2", "ACK", Some("drhub-1"));
        feed(&handle, &ack, 1, Unreliable);
        nothing_now(&mut layer).await;
        assert_eq!(answered.outcome().await, ServerOutcome::Acked);
        // ACK retransmissions are absorbed too; Timer G no longer fires.
        feed(&handle, &ack, 1, Unreliable);
        assert!(outputs_until(&mut layer, t0, 5_699).await.is_empty());
        assert_eq!(layer.len(), 1, "Confirmed until Timer I = T4 after the ACK");
        assert!(outputs_until(&mut layer, t0, 5_701).await.is_empty());
        assert!(layer.is_empty());
        // After the transaction is gone an ACK is just a stray ACK for the core.
        feed(&handle, &ack, 1, Unreliable);
        match next_now(&mut layer).await {
            Output::Event(CoreEvent::Ack { matched: None, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn accepted_2xx_timer_l_absorbs_invites_and_passes_acks_up() {
        let t0 = tokio::time::Instant::now();
        let (mut layer, handle) = Layer::new(Timers::default());
        let inv = invite(";branch=z9hG4bKsbc3");
        feed(&handle, &inv, 2, Reliable);
        let req = new_request(next_now(&mut layer).await);
        let key = req.tx.key().clone();
        let mut answered = req.tx.respond(fin(&inv, 200));
        assert_eq!(status(&transmit(next_now(&mut layer).await).bytes), 200);
        // INVITE retransmission: absorbed.
        feed(&handle, &inv, 2, Reliable);
        nothing_now(&mut layer).await;
        // The dialog's 2xx retransmission passes through.
        answered.retransmit_2xx(fin(&inv, 200)).unwrap();
        assert_eq!(status(&transmit(next_now(&mut layer).await).bytes), 200);
        // The usual 2xx ACK has a new branch: no transaction. One reusing the INVITE's
        // branch matches the Accepted transaction; both go to the core.
        let ack_new = request("ACK", ";branch=z9hG4bKsbc3ack", "ACK", Some("drhub-1"));
        let ack_same = request("ACK", ";branch=z9hG4bKsbc3", "ACK", Some("drhub-1"));
        feed(&handle, &ack_new, 2, Reliable);
        feed(&handle, &ack_same, 2, Reliable);
        for want in [None, Some(key)] {
            match next_now(&mut layer).await {
                Output::Event(CoreEvent::Ack {
                    request,
                    source: 2,
                    matched,
                }) => {
                    assert_eq!(matched, want);
                    assert!(request.bytes().starts_with(b"ACK "));
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(outputs_until(&mut layer, t0, 31_999).await.is_empty());
        assert_eq!(layer.len(), 1, "Accepted until Timer L");
        assert!(outputs_until(&mut layer, t0, 32_001).await.is_empty());
        assert!(layer.is_empty());
        assert_eq!(answered.outcome().await, ServerOutcome::Completed);
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_matches_the_invite_and_is_its_own_transaction() {
        let (mut layer, handle) = Layer::new(Timers::default());
        let inv = invite(";branch=z9hG4bKsbc4");
        feed(&handle, &inv, 3, Reliable);
        let req = new_request(next_now(&mut layer).await);
        let cancel = request("CANCEL", ";branch=z9hG4bKsbc4", "CANCEL", None);
        feed(&handle, &cancel, 3, Reliable);
        let (creq, target) = match next_now(&mut layer).await {
            Output::Event(CoreEvent::Cancel { request, target }) => (request, target),
            other => panic!("{other:?}"),
        };
        assert_eq!(target, CancelTarget::Pending(req.tx.key().clone()));
        assert!(!creq.tx.is_invite());
        // DR-FORK-8: 200 to the CANCEL, 487 to the INVITE.
        let mut c = creq.tx.respond(fin(&cancel, 200));
        let mut i = req.tx.respond(fin(&inv, 487));
        assert_eq!(status(&transmit(next_now(&mut layer).await).bytes), 200);
        assert_eq!(status(&transmit(next_now(&mut layer).await).bytes), 487);
        assert_eq!(
            c.outcome().await,
            ServerOutcome::Completed,
            "Timer J = 0 on TLS"
        );
        // A CANCEL after the final: matched, nothing to cancel.
        let cancel2 = request("CANCEL", ";branch=z9hG4bKsbc4", "CANCEL", None);
        feed(&handle, &cancel2, 3, Reliable);
        match next_now(&mut layer).await {
            Output::Event(CoreEvent::Cancel { target, request }) => {
                assert!(matches!(target, CancelTarget::Answered(_)));
                drop(request.tx.respond(fin(&cancel2, 200)));
            }
            other => panic!("{other:?}"),
        }
        next_now(&mut layer).await;
        // A CANCEL for an unknown INVITE.
        let stray = request("CANCEL", ";branch=z9hG4bKnope", "CANCEL", None);
        feed(&handle, &stray, 3, Reliable);
        match next_now(&mut layer).await {
            Output::Event(CoreEvent::Cancel { target, request }) => {
                assert_eq!(target, CancelTarget::Unknown);
                drop(request.tx.respond(fin(&stray, 481)));
            }
            other => panic!("{other:?}"),
        }
        next_now(&mut layer).await;
        let ack = request("ACK", ";branch=z9hG4bKsbc4", "ACK", Some("drhub-1"));
        feed(&handle, &ack, 3, Reliable);
        nothing_now(&mut layer).await;
        assert_eq!(i.outcome().await, ServerOutcome::Acked);
        assert!(layer.is_empty(), "Timer I = 0 on TLS");
    }

    #[tokio::test(start_paused = true)]
    async fn non_invite_retransmissions_get_the_last_response_until_timer_j() {
        let t0 = tokio::time::Instant::now();
        let (mut layer, handle) = Layer::new(Timers::default());
        let opt = request("OPTIONS", ";branch=z9hG4bKopt", "OPTIONS", None);
        feed(&handle, &opt, 4, Unreliable);
        let req = new_request(next_now(&mut layer).await);
        // Trying: a retransmission is absorbed.
        feed(&handle, &opt, 4, Unreliable);
        nothing_now(&mut layer).await;
        let mut answered = req.tx.respond(fin(&opt, 200));
        assert_eq!(status(&transmit(next_now(&mut layer).await).bytes), 200);
        feed(&handle, &opt, 4, Unreliable);
        assert_eq!(status(&transmit(next_now(&mut layer).await).bytes), 200);
        assert!(outputs_until(&mut layer, t0, 31_999).await.is_empty());
        assert_eq!(layer.len(), 1);
        assert!(outputs_until(&mut layer, t0, 32_001).await.is_empty());
        assert!(layer.is_empty(), "Timer J = 64*T1 on UDP");
        assert_eq!(answered.outcome().await, ServerOutcome::Completed);
    }

    #[tokio::test(start_paused = true)]
    async fn rfc2543_ack_matches_by_the_response_to_tag() {
        let (mut layer, handle) = Layer::new(Timers::default());
        let inv = invite("");
        feed(&handle, &inv, 5, Reliable);
        let req = new_request(next_now(&mut layer).await);
        assert!(req.tx.key().is_rfc2543());
        let mut answered = req.tx.respond(fin(&inv, 486));
        next_now(&mut layer).await;
        // Wrong To tag: not this transaction's ACK.
        let wrong = request("ACK", "", "ACK", Some("other"));
        feed(&handle, &wrong, 5, Reliable);
        assert!(matches!(
            next_now(&mut layer).await,
            Output::Event(CoreEvent::Ack { matched: None, .. })
        ));
        let ack = request("ACK", "", "ACK", Some("drhub-1"));
        feed(&handle, &ack, 5, Reliable);
        nothing_now(&mut layer).await;
        assert_eq!(answered.outcome().await, ServerOutcome::Acked);
        assert!(layer.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_server_tx_ends_the_transaction() {
        let (mut layer, handle) = Layer::new(Timers::default());
        let inv = invite(";branch=z9hG4bKsbc5");
        feed(&handle, &inv, 6, Unreliable);
        let req = new_request(next_now(&mut layer).await);
        drop(req);
        nothing_now(&mut layer).await;
        assert!(layer.is_empty());
        // The next retransmission is a new request; the old handle cannot touch it.
        feed(&handle, &inv, 6, Unreliable);
        let again = new_request(next_now(&mut layer).await);
        assert_eq!(layer.len(), 1);
        drop(again.tx.respond(fin(&inv, 500)));
        assert_eq!(status(&transmit(next_now(&mut layer).await).bytes), 500);
    }

    #[tokio::test(start_paused = true)]
    async fn server_transport_error_reaches_the_outcome() {
        let (mut layer, handle) = Layer::new(Timers::default());
        let inv = invite(";branch=z9hG4bKsbc6");
        feed(&handle, &inv, 8, Reliable);
        let req = new_request(next_now(&mut layer).await);
        req.tx.provisional(prov(&inv, 180)).unwrap();
        let t = transmit(next_now(&mut layer).await);
        handle.transport_error(t.tx.unwrap()).unwrap();
        nothing_now(&mut layer).await;
        assert!(layer.is_empty());
        // The TU learns it when it answers; the late final goes nowhere.
        let mut answered = req.tx.respond(fin(&inv, 200));
        nothing_now(&mut layer).await;
        assert_eq!(answered.outcome().await, ServerOutcome::TransportError);
    }

    fn our_request(method: &str, branch: &Branch) -> Bytes {
        Bytes::from(format!(
            "{method} sip:alice@10.0.0.7:5062 SIP/2.0\r\n\
Via: SIP/2.0/UDP sip.pstnhub.microsoft.com:5060;branch={branch}\r\n\
Max-Forwards: 70\r\n\
From: <sip:+15551234567@sip.pstnhub.microsoft.com>;tag=b2b\r\n\
To: <sip:alice@contoso.com>\r\n\
Call-ID: leg2@drhub\r\n\
CSeq: 1 {method}\r\n\
Content-Length: 0\r\n\r\n"
        ))
    }

    type Events = mpsc::UnboundedReceiver<ClientTxEvent>;

    fn send(handle: &LayerHandle<u32>, req: &Bytes, kind: Transport) -> (ClientKey, Events) {
        let (tx, rx) = mpsc::unbounded_channel();
        let key = handle
            .send_request(req.clone(), 9, kind, move |e| {
                let _ = tx.send(e);
            })
            .unwrap();
        (key, rx)
    }

    #[tokio::test(start_paused = true)]
    async fn client_timer_e_then_response_then_timer_k_through_the_driver() {
        let t0 = tokio::time::Instant::now();
        let (mut layer, handle) = Layer::new(Timers::default());
        let opt = our_request("OPTIONS", &Branch::generate());
        let (key, mut events) = send(&handle, &opt, Unreliable);
        let t = transmit(next_now(&mut layer).await);
        assert_eq!(
            (t.dest, &t.bytes, t.tx),
            (9, &opt, Some(TxKey::Client(key.clone())))
        );
        let got = outputs_until(&mut layer, t0, 1_600).await;
        assert_eq!(got.iter().map(|(t, _)| *t).collect::<Vec<_>>(), [500, 1500]);
        // A 200 at 1.6 s: to the sink, not to the core; Timer K = T4 then.
        feed(&handle, &reply(&opt, 200, Some("ep")), 9, Unreliable);
        nothing_now(&mut layer).await;
        let ev = events.try_recv().unwrap();
        assert_eq!(ev.key, key);
        assert!(matches!(ev.event, ClientEvent::Final(ref b) if status(b.bytes()) == 200));
        // Its retransmission is absorbed.
        feed(&handle, &reply(&opt, 200, Some("ep")), 9, Unreliable);
        assert!(outputs_until(&mut layer, t0, 6_599).await.is_empty());
        assert!(events.try_recv().is_err());
        assert_eq!(layer.len(), 1);
        assert!(outputs_until(&mut layer, t0, 6_601).await.is_empty());
        assert!(layer.is_empty());
        // Now it is a stray response.
        feed(&handle, &reply(&opt, 200, Some("ep")), 9, Unreliable);
        assert!(matches!(
            next_now(&mut layer).await,
            Output::Event(CoreEvent::StrayResponse { source: 9, .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn client_timers_b_and_f_report_timeouts_at_64_t1() {
        let t0 = tokio::time::Instant::now();
        let (mut layer, handle) = Layer::new(Timers::default());
        let (kb, mut eb) = send(
            &handle,
            &our_request("INVITE", &Branch::generate()),
            Reliable,
        );
        let (kf, mut ef) = send(&handle, &our_request("BYE", &Branch::generate()), Reliable);
        assert_eq!(
            outputs_until(&mut layer, t0, 31_999).await.len(),
            2,
            "no retransmissions on TLS"
        );
        assert!(eb.try_recv().is_err() && ef.try_recv().is_err());
        assert!(outputs_until(&mut layer, t0, 32_001).await.is_empty());
        let b = eb.try_recv().unwrap();
        let f = ef.try_recv().unwrap();
        assert_eq!((b.key, b.event), (kb, ClientEvent::Timeout(Timer::TimerB)));
        assert_eq!((f.key, f.event), (kf, ClientEvent::Timeout(Timer::TimerF)));
        assert!(layer.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn client_invite_acks_non_2xx_and_passes_every_2xx_up() {
        let t0 = tokio::time::Instant::now();
        let (mut layer, handle) = Layer::new(Timers::default());
        // Fork 1 answers 486: the layer sends the ACK, Timer D keeps absorbing for 32 s.
        let inv1 = our_request("INVITE", &Branch::generate());
        let (k1, mut e1) = send(&handle, &inv1, Unreliable);
        next_now(&mut layer).await;
        feed(&handle, &reply(&inv1, 486, Some("ep1")), 9, Unreliable);
        let ack = transmit(next_now(&mut layer).await);
        assert!(ack
            .bytes
            .starts_with(b"ACK sip:alice@10.0.0.7:5062 SIP/2.0\r\n"));
        assert_eq!(ack.tx, Some(TxKey::Client(k1.clone())));
        assert!(matches!(
            e1.try_recv().unwrap().event,
            ClientEvent::Final(_)
        ));
        feed(&handle, &reply(&inv1, 486, Some("ep1")), 9, Unreliable);
        assert_eq!(
            transmit(next_now(&mut layer).await).bytes,
            ack.bytes,
            "ACK again"
        );
        assert!(
            e1.try_recv().is_err(),
            "the retransmitted final is absorbed"
        );
        // Fork 2 answers 200 twice (two 2xx downstream): both reach the TU (Timer M).
        let inv2 = our_request("INVITE", &Branch::generate());
        let (_, mut e2) = send(&handle, &inv2, Unreliable);
        next_now(&mut layer).await;
        feed(&handle, &reply(&inv2, 200, Some("ep2a")), 9, Unreliable);
        feed(&handle, &reply(&inv2, 200, Some("ep2b")), 9, Unreliable);
        nothing_now(&mut layer).await;
        assert!(matches!(
            e2.try_recv().unwrap().event,
            ClientEvent::Final(_)
        ));
        assert!(matches!(
            e2.try_recv().unwrap().event,
            ClientEvent::Additional2xx(_)
        ));
        // Timer A stopped for both; Timer D (32 s) and Timer M (32 s) end them.
        assert!(outputs_until(&mut layer, t0, 31_999).await.is_empty());
        assert_eq!(layer.len(), 2);
        assert!(outputs_until(&mut layer, t0, 32_001).await.is_empty());
        assert!(layer.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn client_transport_error_and_duplicate_branch() {
        let (mut layer, handle) = Layer::new(Timers::default());
        let branch = Branch::generate();
        let req = our_request("OPTIONS", &branch);
        let (key, mut events) = send(&handle, &req, Reliable);
        let (_, mut dup) = send(&handle, &req, Reliable);
        let t = transmit(next_now(&mut layer).await);
        nothing_now(&mut layer).await;
        assert_eq!(dup.try_recv().unwrap().event, ClientEvent::TransportError);
        handle.transport_error(t.tx.unwrap()).unwrap();
        nothing_now(&mut layer).await;
        let e = events.try_recv().unwrap();
        assert_eq!((e.key, e.event), (key, ClientEvent::TransportError));
        assert!(layer.is_empty());
        // The ACK for a 2xx goes out untracked.
        handle
            .send_stateless(Bytes::from_static(b"ACK ..."), 9)
            .unwrap();
        let t = transmit(next_now(&mut layer).await);
        assert_eq!((t.dest, t.tx), (9, None));
        let _ = ClientState::Trying;
    }

    /// 50,000 live transactions: one queue entry each, all ended by Timer J at 32 s.
    #[tokio::test(start_paused = true)]
    async fn fifty_thousand_live_transactions() {
        const N: usize = 50_000;
        let t0 = tokio::time::Instant::now();
        let (mut layer, handle) = Layer::new(Timers::default());
        let mut answered = Vec::with_capacity(N);
        for i in 0..N {
            let opt = request("OPTIONS", &format!(";branch=z9hG4bKn{i}"), "OPTIONS", None);
            feed(&handle, &opt, 1, Unreliable);
            let req = new_request(next_now(&mut layer).await);
            answered.push(req.tx.respond(fin(&opt, 200)));
            transmit(next_now(&mut layer).await);
        }
        assert_eq!(layer.len(), N);
        assert!(outputs_until(&mut layer, t0, 31_999).await.is_empty());
        assert_eq!(layer.len(), N);
        assert!(outputs_until(&mut layer, t0, 32_001).await.is_empty());
        assert!(layer.is_empty());
        for a in &mut answered {
            assert_eq!(a.outcome().await, ServerOutcome::Completed);
        }
    }

    /// A burst of INVITE transactions accepted (2xx, Timer L) gives its table and queue
    /// memory back once Timer L has ended them all.
    #[tokio::test(start_paused = true)]
    async fn ended_transactions_give_their_memory_back() {
        const N: usize = 5_000;
        let t0 = tokio::time::Instant::now();
        let (mut layer, handle) = Layer::new(Timers::default());
        for i in 0..N {
            let inv = invite(&format!(";branch=z9hG4bKburst{i}"));
            feed(&handle, &inv, 1, Reliable);
            let req = new_request(next_now(&mut layer).await);
            drop(req.tx.respond(fin(&inv, 200)));
            transmit(next_now(&mut layer).await);
        }
        assert_eq!(layer.len(), N);
        assert!(layer.servers.capacity() >= N && layer.queue.capacity() >= N);
        assert!(outputs_until(&mut layer, t0, 32_001).await.is_empty());
        assert!(layer.is_empty());
        assert!(layer.servers.capacity() <= SHRINK_ABOVE);
        assert!(layer.queue.capacity() <= SHRINK_ABOVE);
    }

    #[test]
    fn send_and_receive_errors() {
        let (layer, handle) = Layer::new(Timers::default());
        let sink = |_: ClientTxEvent| {};
        let b = Branch::generate();
        let cases: &[(Bytes, SendError)] = &[
            (our_request("ACK", &b), SendError::Ack),
            (Bytes::from_static(b"garbage"), SendError::Unparseable),
            (
                Bytes::from(
                    String::from_utf8_lossy(&our_request("BYE", &b))
                        .replace(&b.to_string(), "1234"),
                ),
                SendError::Key(KeyError::NoRfc3261Branch),
            ),
            (
                Bytes::from(
                    String::from_utf8_lossy(&our_request("BYE", &b)).replace("1 BYE", "1 INVITE"),
                ),
                SendError::Invalid(Invalid {
                    status: 400,
                    reason: "CSeq method does not match request method",
                }),
            ),
        ];
        for (req, want) in cases {
            assert_eq!(
                handle.send_request(req.clone(), 1, Reliable, sink),
                Err(*want)
            );
        }
        let mut two = our_request("BYE", &b).to_vec();
        two.extend_from_slice(&our_request("BYE", &b));
        assert_eq!(
            handle.send_request(two.into(), 1, Reliable, sink),
            Err(SendError::Unparseable)
        );
        let no_via = Bytes::from_static(b"SIP/2.0 200 OK\r\nCSeq: 1 BYE\r\nl: 0\r\n\r\n");
        assert_eq!(
            handle.receive(Stored::new(no_via.clone()).unwrap(), 1, Reliable),
            Err(ReceiveError::Key(KeyError::MissingVia))
        );
        let low = Bytes::from_static(
            b"SIP/2.0 099 Low\r\nVia: SIP/2.0/TLS h;branch=z9hG4bK1\r\nCSeq: 1 BYE\r\nl: 0\r\n\r\n",
        );
        assert_eq!(
            handle.receive(Stored::new(low.clone()).unwrap(), 1, Reliable),
            Err(ReceiveError::StatusOutOfRange(99))
        );
        drop(layer);
        let ok = our_request("BYE", &b);
        assert_eq!(
            handle.send_request(ok.clone(), 1, Reliable, sink),
            Err(SendError::Closed(LayerClosed))
        );
        assert_eq!(
            handle.receive(Stored::new(ok.clone()).unwrap(), 1, Reliable),
            Err(ReceiveError::Closed(LayerClosed))
        );
    }

    #[tokio::test]
    async fn handles_report_a_closed_layer() {
        let (mut layer, handle) = Layer::new(Timers::default());
        let inv = invite(";branch=z9hG4bKsbc7");
        feed(&handle, &inv, 1, Reliable);
        let req = new_request(layer.next().await);
        drop(layer);
        assert_eq!(req.tx.provisional(prov(&inv, 180)), Err(LayerClosed));
        let mut answered = req.tx.respond(fin(&inv, 200));
        assert_eq!(answered.outcome().await, ServerOutcome::LayerClosed);
        assert_eq!(answered.retransmit_2xx(fin(&inv, 200)), Err(LayerClosed));
    }
}
