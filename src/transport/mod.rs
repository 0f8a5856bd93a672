//! Every socket and every direction: accepting SBC and endpoint connections, the proxy's
//! own outbound connections ([`connect`]), the endpoint UDP socket ([`udp`]), framing SIP
//! off byte streams ([`stream`]), and the registry of live flows that later layers send
//! on ([`Flows`]).
//!
//! The transport knows nothing of SIP semantics: it hands every framed message to a
//! [`Dispatch`] and writes back whatever the dispatcher produced. Every byte it reads or
//! writes passes the one [`Tap`] (trace, pcap and HEP hang on it).

pub mod connect;
pub mod listener;
pub mod stream;
pub mod tap;
pub mod tls;
pub mod udp;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

pub use crate::sip::Transport;
use crate::sip::{LocalIdentity, Message, ParseError, Stored};
pub use tap::Tap;
use tls::PeerIdentity;
use udp::UdpFlow;

/// The listener name of the endpoint side's sockets (UDP and TCP on `[endpoints]
/// address`).
pub const ENDPOINT_LISTENER: &str = "endpoints";

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

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Accepted on one of drhub's listeners.
    Inbound,
    /// Opened by drhub to an SBC (DR-TLS-4).
    Outbound,
}

/// What is known about a connection once it is established: fixed for its lifetime.
#[derive(Debug)]
pub struct FlowInfo {
    pub id: FlowId,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// The listener's name (`sip`, `lab-tcp`, `endpoints` ...); an outbound connection
    /// carries the name of the listener whose certificate it presented.
    pub listener: String,
    /// How the proxy names itself on this flow (Via, Contact, Record-Route).
    pub proxy: LocalIdentity,
    pub transport: Transport,
    pub direction: Direction,
    /// The peer's verified certificate (client certificate inbound, server certificate
    /// outbound); `None` on plain TCP.
    pub identity: Option<Arc<PeerIdentity>>,
}

/// A connection's life, as the SBC side's dispatcher reports it to the router (which
/// starts the orphan wait of calls whose SBC lost its last connection, DR-NH-5).
#[derive(Debug, Clone)]
pub enum FlowEvent {
    /// A connection (inbound or outbound) is up.
    Opened(Arc<FlowInfo>),
    /// A connection closed.
    Closed(Arc<FlowInfo>),
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

    /// The same message again, as owned bytes that outlive the read buffer.
    fn on_owned(&self, flow: &Arc<FlowInfo>, msg: Stored, out: &mut BytesMut);

    /// The stream could not be framed at `buf`. Write a response to `out` if one can be
    /// formed; the connection is closed afterwards (DR-TLS-2).
    fn on_unframeable(&self, flow: &FlowInfo, buf: &[u8], error: &ParseError, out: &mut BytesMut);

    /// A connection is up and in the registry (inbound after the handshake, outbound
    /// once connected).
    fn on_opened(&self, _flow: &Arc<FlowInfo>) {}

    /// The connection has closed (its flow is already out of the registry).
    fn on_closed(&self, _flow: &Arc<FlowInfo>) {}
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

    /// False once the connection's task has ended.
    pub fn is_open(&self) -> bool {
        !self.tx.is_closed()
    }
}

/// Where bytes go: a stream connection (an SBC's or an endpoint's), or a UDP endpoint.
/// Cloned into every transaction; the transaction layer sends through it.
#[derive(Debug, Clone)]
pub enum Destination {
    Flow(FlowHandle),
    Udp {
        socket: Arc<UdpFlow>,
        addr: SocketAddr,
    },
}

impl Destination {
    /// Sends without waiting; false when the bytes could not be queued or sent.
    pub fn send(&self, bytes: Bytes) -> bool {
        match self {
            Destination::Flow(flow) => flow.send(bytes),
            Destination::Udp { socket, addr } => socket.send_to(&bytes, *addr),
        }
    }

    pub fn transport(&self) -> Transport {
        match self {
            Destination::Flow(f) => f.info.transport,
            Destination::Udp { .. } => Transport::Udp,
        }
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        match self {
            Destination::Flow(f) => f.info.peer,
            Destination::Udp { addr, .. } => *addr,
        }
    }

    /// How the proxy names itself towards this destination.
    pub fn proxy(&self) -> &LocalIdentity {
        match self {
            Destination::Flow(f) => &f.info.proxy,
            Destination::Udp { socket, .. } => &socket.proxy,
        }
    }

    /// The connection, for a stream destination.
    pub fn flow(&self) -> Option<&Arc<FlowInfo>> {
        match self {
            Destination::Flow(f) => Some(&f.info),
            Destination::Udp { .. } => None,
        }
    }

    /// A short label for logs: the flow id, or `udp:<addr>`.
    pub fn label(&self) -> String {
        match self {
            Destination::Flow(f) => f.info.id.to_string(),
            Destination::Udp { addr, .. } => format!("udp:{addr}"),
        }
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

    /// The most recent live TLS connection, inbound or outbound, whose peer certificate
    /// names this SBC: the one requests the proxy originates reuse (DR-TLS-4, DR-NH-5).
    pub fn find_by_name(&self, fqdn: &str) -> Option<FlowHandle> {
        self.find(|h| h.info.identity.as_ref().is_some_and(|id| id.matches(fqdn)) && h.is_open())
    }

    /// The most recent live plain-TCP connection on an SBC listener from this IP address
    /// (DR-TLS-5 lab listener: no certificate names the SBC).
    pub fn find_insecure(&self, ip: IpAddr) -> Option<FlowHandle> {
        self.find(|h| {
            h.info.identity.is_none()
                && h.info.transport == Transport::Tcp
                && h.info.listener != ENDPOINT_LISTENER
                && h.info.peer.ip() == ip
                && h.is_open()
        })
    }

    /// The most recent live connection from this peer address (endpoints over TCP).
    pub fn find_by_peer(&self, peer: SocketAddr) -> Option<FlowHandle> {
        self.find(|h| h.info.peer == peer && h.is_open())
    }

    /// Another live connection of the same peer as `flow` (the same certificate): where
    /// a response goes when the connection its request came on has closed (RFC 3261
    /// §18.2.2), and requests of an SBC that reconnected (DR-NH-5).
    pub fn find_same_peer(&self, flow: &FlowInfo) -> Option<FlowHandle> {
        let id = flow.identity.as_ref()?;
        self.find(|h| {
            h.info.id != flow.id
                && h.info.listener != ENDPOINT_LISTENER
                && h.info.identity.as_ref() == Some(id)
                && h.is_open()
        })
    }

    /// How many live connections match.
    pub fn count(&self, pred: impl Fn(&FlowInfo) -> bool) -> usize {
        self.lock().values().filter(|h| pred(&h.info)).count()
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
