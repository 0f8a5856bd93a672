//! Sockets only: accepting SBC connections (TLS and the plain-TCP lab listener),
//! framing SIP messages off the byte stream, and a registry of live flows so that later
//! layers can send on the connection an SBC opened.
//!
//! The transport knows nothing of SIP semantics: it hands every framed message to a
//! [`Dispatch`] and writes back whatever the dispatcher produced.

pub mod listener;
pub mod stream;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use crate::config::{Fqdn, ListenerTransport};
use crate::sip::{Message, ParseError};
use tls::PeerIdentity;

/// Identifies one connection for its whole life; never reused within a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(u64);

impl FlowId {
    pub(crate) fn next() -> FlowId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        FlowId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl std::fmt::Display for FlowId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "flow-{}", self.0)
    }
}

/// What is known about a connection once it is established: fixed for its lifetime.
#[derive(Debug)]
pub struct FlowInfo {
    pub id: FlowId,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// The listener's name (`sip`, `lab-tcp` ...).
    pub listener: String,
    /// The proxy FQDN this listener speaks as.
    pub proxy_fqdn: Fqdn,
    pub transport: ListenerTransport,
    /// The verified client certificate; `None` only on the plain-TCP listener.
    pub identity: Option<Arc<PeerIdentity>>,
}

/// What the dispatcher did with a borrowed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Fully handled from the borrowed view.
    Done,
    /// Needs the message as owned bytes (it outlives the read buffer, e.g. in a
    /// transaction): the transport calls [`Dispatch::on_owned`] with the same message.
    Owned,
}

/// The SIP layer above the transport.
pub trait Dispatch: Send + Sync + 'static {
    /// A complete message framed off the stream, borrowed from the read buffer. Any
    /// bytes written to `out` are sent on the same connection once the current batch of
    /// messages is processed.
    fn on_message(&self, flow: &Arc<FlowInfo>, msg: &Message<'_>, out: &mut BytesMut) -> Handled;

    /// The same message again, now backed by `wire` (exactly its bytes, no copy made).
    fn on_owned(&self, flow: &Arc<FlowInfo>, msg: &Message<'_>, wire: &Bytes, out: &mut BytesMut);

    /// The stream could not be framed at `buf`. Write a response to `out` if one can be
    /// formed; the connection is closed afterwards (DR-TLS-2).
    fn on_unframeable(&self, flow: &FlowInfo, buf: &[u8], error: &ParseError, out: &mut BytesMut);

    /// The connection has closed (its flow is already out of the registry).
    fn on_closed(&self, _flow: &FlowInfo) {}
}

/// A handle to send bytes on a live connection.
#[derive(Debug, Clone)]
pub struct FlowHandle {
    pub info: Arc<FlowInfo>,
    tx: mpsc::Sender<Bytes>,
}

impl FlowHandle {
    /// A handle on a connection whose task reads `tx`'s other end.
    pub(crate) fn new(info: Arc<FlowInfo>, tx: mpsc::Sender<Bytes>) -> FlowHandle {
        FlowHandle { info, tx }
    }

    /// Queues bytes for the connection; false when it has closed or its queue is full.
    pub fn send(&self, bytes: Bytes) -> bool {
        self.tx.try_send(bytes).is_ok()
    }
}

/// Live connections by id. Registration and removal happen once per connection; the
/// lock is never held across an await.
#[derive(Debug, Default)]
pub struct Flows {
    map: Mutex<HashMap<FlowId, FlowHandle>>,
}

impl Flows {
    pub(crate) fn insert(&self, handle: FlowHandle) {
        self.lock().insert(handle.info.id, handle);
    }

    fn remove(&self, id: FlowId) {
        self.lock().remove(&id);
    }

    pub fn get(&self, id: FlowId) -> Option<FlowHandle> {
        self.lock().get(&id).cloned()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most recent live connection whose certificate (or, on plain TCP, whose
    /// peer) is the given SBC, for reuse by requests the proxy originates (DR-TLS-4).
    pub fn find_by_name(&self, fqdn: &str) -> Option<FlowHandle> {
        self.find(|h| h.info.identity.as_ref().is_some_and(|id| id.matches(fqdn)))
    }

    /// The most recent live connection from this peer address (endpoints over TCP).
    pub fn find_by_peer(&self, peer: SocketAddr) -> Option<FlowHandle> {
        self.find(|h| h.info.peer == peer)
    }

    fn find(&self, pred: impl Fn(&FlowHandle) -> bool) -> Option<FlowHandle> {
        self.lock()
            .values()
            .filter(|h| pred(h))
            .max_by_key(|h| h.info.id)
            .cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<FlowId, FlowHandle>> {
        // A poisoned map only means a panic elsewhere mid-insert; the map itself is
        // still consistent (single insert/remove operations), so keep serving.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}
