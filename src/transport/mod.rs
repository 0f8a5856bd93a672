//! Every socket and every direction: accepting SBC and endpoint connections, the proxy's
//! own outbound connections ([`connect`]), the endpoint UDP socket ([`udp`]), framing SIP
//! off byte streams ([`stream`]), and the registry of live flows that later layers send
//! on ([`Flows`]).
//!
//! The transport knows nothing of SIP semantics: it hands every framed message to a
//! [`Dispatch`] and writes back whatever the dispatcher produced. Every byte it reads or
//! writes passes the one [`Tap`] (trace, pcap and HEP hang on it).

pub mod connect;
pub mod datacenter;
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
use tokio_util::sync::CancellationToken;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

    /// The stream could not be framed at `buf` (a framing error: where the next message
    /// starts cannot be known). Write a response to `out` if one can be formed; the
    /// connection is closed afterwards (DR-TLS-2).
    fn on_unframeable(&self, flow: &FlowInfo, buf: &[u8], error: &ParseError, out: &mut BytesMut);

    /// A message that is delimited on the stream but does not parse (a content error):
    /// `raw` is exactly its bytes, which the stream skips afterwards; the connection stays
    /// open. Write a response to `out` if one can be formed (DR-ERR-3).
    fn on_malformed(&self, flow: &FlowInfo, raw: &[u8], error: &ParseError, out: &mut BytesMut);

    /// A connection is up and in the registry (inbound after the handshake, outbound
    /// once connected).
    fn on_opened(&self, _flow: &Arc<FlowInfo>) {}

    /// The connection has closed (its flow is already out of the registry).
    fn on_closed(&self, _flow: &Arc<FlowInfo>) {}

    /// The connection has been idle for its listener's idle timeout: `Some(d)` keeps it
    /// for `d` more (e.g. an endpoint's registration lives on it), `None` closes it.
    fn keep_idle(&self, _flow: &Arc<FlowInfo>) -> Option<std::time::Duration> {
        None
    }
}

/// A handle to send bytes on a live connection.
#[derive(Debug, Clone)]
pub struct FlowHandle {
    pub info: Arc<FlowInfo>,
    tx: mpsc::Sender<Bytes>,
    /// Cancelled to close the connection: its send queue overflowed.
    close: CancellationToken,
}

impl FlowHandle {
    /// A handle on a connection whose task reads `tx`'s other end and closes when `close`
    /// is cancelled.
    pub(crate) fn new(
        info: Arc<FlowInfo>,
        tx: mpsc::Sender<Bytes>,
        close: CancellationToken,
    ) -> FlowHandle {
        FlowHandle { info, tx, close }
    }

    /// Queues bytes for the connection; false when it has closed or its queue is full.
    ///
    /// Nothing queued is ever dropped while the connection lives: the connection's task
    /// writes its queue before it reads more, so the queue only fills when the peer stops
    /// reading. A full queue therefore closes the connection (logged with the reason),
    /// and the caller learns at once that these bytes did not go, as with any closed
    /// connection (RFC 3261 §18.2.2: a response may still go on another connection of
    /// the peer; a transaction ends with a transport error).
    pub fn send(&self, bytes: Bytes) -> bool {
        match self.tx.try_send(bytes) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.close.is_cancelled() {
                    self.close.cancel();
                    crate::warn_limited!(
                        flow = %self.info.id,
                        peer = %self.info.peer,
                        queued = self.tx.max_capacity(),
                        "send queue full: the peer is not reading; closing the connection"
                    );
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// False once the connection's task has ended.
    pub fn is_open(&self) -> bool {
        !self.tx.is_closed() && !self.close.is_cancelled()
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

/// Live connections by id, with indexes for the lookups made per request: by the names
/// in the peer's certificate (the proxy's requests to an SBC) and by the peer's IP
/// address (plain-TCP SBCs, endpoints). Registration and removal happen once per
/// connection; a lookup costs the same with 10 connections or 10,000. The lock is never
/// held across an await.
#[derive(Debug, Default)]
pub struct Flows {
    inner: Mutex<FlowIndex>,
}

#[derive(Debug, Default)]
struct FlowIndex {
    map: HashMap<FlowId, FlowHandle>,
    /// Certificate names (Common Name and DNS names) in lower case, without a trailing
    /// dot. A wildcard name is filed under the domain after its first label, which is
    /// where a name it may match is looked up.
    by_name: HashMap<Box<str>, Vec<FlowId>>,
    by_wildcard_parent: HashMap<Box<str>, Vec<FlowId>>,
    by_ip: HashMap<IpAddr, Vec<FlowId>>,
}

/// How a certificate name, or a name looked up, is filed: lower case, no trailing dot.
fn name_key(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// The domain after a name's first label (`a.com` for `*.a.com`, `sbc1.a.com`).
fn parent_of(key: &str) -> Option<&str> {
    key.split_once('.').map(|(_, parent)| parent)
}

fn file(index: &mut HashMap<Box<str>, Vec<FlowId>>, key: &str, id: FlowId) {
    let ids = index.entry(key.into()).or_default();
    if !ids.contains(&id) {
        ids.push(id);
    }
}

fn unfile<K, Q>(index: &mut HashMap<K, Vec<FlowId>>, key: &Q, id: FlowId)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if let Some(ids) = index.get_mut(key) {
        ids.retain(|&i| i != id);
        if ids.is_empty() {
            index.remove(key);
        }
    }
}

impl FlowHandle {
    /// Open, with a peer certificate that names `fqdn`.
    fn serves(&self, fqdn: &str) -> bool {
        self.info
            .identity
            .as_ref()
            .is_some_and(|id| id.matches(fqdn))
            && self.is_open()
    }
}

impl FlowIndex {
    /// The flows filed under a looked-up name `key` ([`name_key`]): exactly, or under its
    /// parent domain for wildcard certificates. Candidates only: the caller checks that
    /// the certificate really names it.
    fn filed_for<'a>(&'a self, key: &str) -> impl Iterator<Item = &'a FlowId> + 'a {
        let exact = self.by_name.get(key).into_iter().flatten();
        let wild = parent_of(key)
            .and_then(|parent| self.by_wildcard_parent.get(parent))
            .into_iter()
            .flatten();
        exact.chain(wild)
    }

    /// Where each of a certificate's names is filed: `(wildcard, key)`, the key being the
    /// name or, for a wildcard, the domain after its first label. A lone `*` matches
    /// nothing (tls::wildcard_match) and is not filed.
    fn filings(identity: &PeerIdentity) -> impl Iterator<Item = (bool, String)> + '_ {
        identity
            .subject_cn
            .iter()
            .chain(identity.dns_names.iter())
            .filter_map(|n| {
                let key = name_key(n);
                if !key.contains('*') {
                    return Some((false, key));
                }
                parent_of(&key).map(|parent| (true, parent.to_owned()))
            })
    }

    fn names(&self, wildcard: bool) -> &HashMap<Box<str>, Vec<FlowId>> {
        if wildcard {
            &self.by_wildcard_parent
        } else {
            &self.by_name
        }
    }

    fn names_mut(&mut self, wildcard: bool) -> &mut HashMap<Box<str>, Vec<FlowId>> {
        if wildcard {
            &mut self.by_wildcard_parent
        } else {
            &mut self.by_name
        }
    }

    fn insert(&mut self, handle: FlowHandle) {
        let info = handle.info.clone();
        if let Some(identity) = &info.identity {
            for (wild, key) in Self::filings(identity) {
                file(self.names_mut(wild), &key, info.id);
            }
        }
        self.by_ip.entry(info.peer.ip()).or_default().push(info.id);
        self.map.insert(info.id, handle);
    }

    fn remove(&mut self, id: FlowId) {
        let Some(handle) = self.map.remove(&id) else {
            return;
        };
        let info = &handle.info;
        if let Some(identity) = &info.identity {
            for (wild, key) in Self::filings(identity) {
                unfile(self.names_mut(wild), key.as_str(), id);
            }
        }
        unfile(&mut self.by_ip, &info.peer.ip(), id);
    }

    /// The newest of `ids` that satisfies `pred`.
    fn newest<'a>(
        &self,
        ids: impl Iterator<Item = &'a FlowId>,
        pred: impl Fn(&FlowHandle) -> bool,
    ) -> Option<FlowHandle> {
        ids.filter_map(|id| self.map.get(id))
            .filter(|h| pred(h))
            .max_by_key(|h| h.info.id)
            .cloned()
    }
}

impl Flows {
    pub(crate) fn insert(&self, handle: FlowHandle) {
        self.lock().insert(handle);
    }

    fn remove(&self, id: FlowId) {
        self.lock().remove(id);
    }

    pub fn get(&self, id: FlowId) -> Option<FlowHandle> {
        self.lock().map.get(&id).cloned()
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Live connections per listener and direction (an outbound connection counts under
    /// the listener whose certificate it presented), for the metrics.
    pub fn count_by_listener(&self) -> Vec<(String, Direction, usize)> {
        let mut counts: HashMap<(String, Direction), usize> = HashMap::new();
        for h in self.lock().map.values() {
            *counts
                .entry((h.info.listener.clone(), h.info.direction))
                .or_default() += 1;
        }
        let mut v: Vec<_> = counts.into_iter().map(|((l, d), n)| (l, d, n)).collect();
        v.sort_by(|a, b| (&a.0, a.1 as u8).cmp(&(&b.0, b.1 as u8)));
        v
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most recent live TLS connection, inbound or outbound, whose peer certificate
    /// names this SBC: the one requests the proxy originates reuse (DR-TLS-4, DR-NH-5).
    pub fn find_by_name(&self, fqdn: &str) -> Option<FlowHandle> {
        let key = name_key(fqdn);
        let index = self.lock();
        index.newest(index.filed_for(&key), |h| h.serves(fqdn))
    }

    /// Every live connection whose peer certificate names this SBC, oldest first: what
    /// the status API shows as the SBC's connections, by datacenter (DR-DC-2).
    pub fn all_by_name(&self, fqdn: &str) -> Vec<Arc<FlowInfo>> {
        let key = name_key(fqdn);
        let index = self.lock();
        let mut ids: Vec<FlowId> = index.filed_for(&key).copied().collect();
        ids.sort();
        ids.dedup();
        ids.into_iter()
            .filter_map(|id| index.map.get(&id))
            .filter(|h| h.serves(fqdn))
            .map(|h| h.info.clone())
            .collect()
    }

    /// The most recent live plain-TCP connection on an SBC listener from this IP address
    /// (DR-TLS-5 lab listener: no certificate names the SBC).
    pub fn find_insecure(&self, ip: IpAddr) -> Option<FlowHandle> {
        let index = self.lock();
        index.newest(index.by_ip.get(&ip).into_iter().flatten(), |h| {
            h.info.identity.is_none()
                && h.info.transport == Transport::Tcp
                && h.info.listener != ENDPOINT_LISTENER
                && h.is_open()
        })
    }

    /// The most recent live connection from this peer address (endpoints over TCP).
    pub fn find_by_peer(&self, peer: SocketAddr) -> Option<FlowHandle> {
        let index = self.lock();
        index.newest(index.by_ip.get(&peer.ip()).into_iter().flatten(), |h| {
            h.info.peer == peer && h.is_open()
        })
    }

    /// Another live connection of the same peer as `flow` (the same certificate): where
    /// a response goes when the connection its request came on has closed (RFC 3261
    /// §18.2.2), and requests of an SBC that reconnected (DR-NH-5).
    pub fn find_same_peer(&self, flow: &FlowInfo) -> Option<FlowHandle> {
        let id = flow.identity.as_ref()?;
        let index = self.lock();
        // Every flow with this certificate is filed under its first name.
        let (wild, key) = FlowIndex::filings(id).next()?;
        let ids = index.names(wild).get(key.as_str());
        index.newest(ids.into_iter().flatten(), |h| {
            h.info.id != flow.id
                && h.info.listener != ENDPOINT_LISTENER
                && h.info.identity.as_ref() == Some(id)
                && h.is_open()
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FlowIndex> {
        // A poisoned index only means a panic elsewhere mid-insert; each insert and
        // remove leaves it consistent, so keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::build::Style;

    fn identity(cn: Option<&str>, dns: &[&str]) -> Arc<PeerIdentity> {
        Arc::new(PeerIdentity {
            subject_cn: cn.map(str::to_owned),
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
            ip_addresses: vec![],
            not_before: time::OffsetDateTime::UNIX_EPOCH,
            not_after: time::OffsetDateTime::UNIX_EPOCH,
            serial: "01".into(),
            issuer: "CN=lab".into(),
        })
    }

    /// A registered flow; keep the receiver to keep it open.
    fn flow(
        flows: &Flows,
        peer: &str,
        transport: Transport,
        listener: &str,
        identity: Option<Arc<PeerIdentity>>,
    ) -> (FlowId, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(1);
        let info = Arc::new(FlowInfo {
            id: FlowId::next(),
            peer: peer.parse().unwrap(),
            local: "192.0.2.1:5061".parse().unwrap(),
            listener: listener.into(),
            proxy: LocalIdentity::new(
                "sip.pstnhub.microsoft.com",
                5061,
                transport,
                "drhub",
                Style::Faithful,
            ),
            transport,
            direction: Direction::Inbound,
            identity,
        });
        let id = info.id;
        flows.insert(FlowHandle::new(info, tx, CancellationToken::new()));
        (id, rx)
    }

    fn found(h: Option<FlowHandle>) -> Option<FlowId> {
        h.map(|h| h.info.id)
    }

    #[test]
    fn dr_tls_4_connections_are_found_by_certificate_name() {
        let flows = Flows::default();
        let (exact, _a) = flow(
            &flows,
            "198.51.100.1:40000",
            Transport::Tls,
            "sip",
            Some(identity(Some("SBC1.Adatum.biz."), &["sbc1.adatum.biz"])),
        );
        let (wild, _b) = flow(
            &flows,
            "198.51.100.2:40000",
            Transport::Tls,
            "sip",
            Some(identity(None, &["*.contoso.com"])),
        );
        let (partial, _c) = flow(
            &flows,
            "198.51.100.3:40000",
            Transport::Tls,
            "sip",
            Some(identity(Some("other"), &["gw*.fabrikam.com"])),
        );
        #[rustfmt::skip]
        let cases: &[(&str, Option<FlowId>)] = &[
            ("sbc1.adatum.biz", Some(exact)),
            ("SBC1.ADATUM.BIZ.", Some(exact)),
            ("sbc2.adatum.biz", None),
            ("adatum.biz", None),
            ("sbc9.contoso.com", Some(wild)),
            ("a.b.contoso.com", None),
            ("contoso.com", None),
            ("gw1.fabrikam.com", Some(partial)),
            ("sbc.fabrikam.com", None),
            ("other", Some(partial)),
            ("x.other", None),
            ("", None),
        ];
        for (name, want) in cases {
            assert_eq!(found(flows.find_by_name(name)), *want, "{name}");
        }
    }

    #[test]
    fn dr_nh_5_the_newest_open_connection_wins_and_closed_ones_are_forgotten() {
        let flows = Flows::default();
        let id = identity(Some("sbc1.adatum.biz"), &[]);
        let (first, rx1) = flow(
            &flows,
            "198.51.100.1:40000",
            Transport::Tls,
            "sip",
            Some(id.clone()),
        );
        let (second, rx2) = flow(
            &flows,
            "198.51.100.1:40001",
            Transport::Tls,
            "sip",
            Some(id.clone()),
        );
        assert_eq!(found(flows.find_by_name("sbc1.adatum.biz")), Some(second));
        let info = flows.get(second).unwrap().info;
        assert_eq!(found(flows.find_same_peer(&info)), Some(first));
        drop(rx2);
        assert_eq!(
            found(flows.find_by_name("sbc1.adatum.biz")),
            Some(first),
            "a closed one is skipped"
        );
        flows.remove(second);
        flows.remove(first);
        drop(rx1);
        assert!(flows.find_by_name("sbc1.adatum.biz").is_none());
        let index = flows.lock();
        assert!(
            index.by_name.is_empty() && index.by_ip.is_empty(),
            "nothing left filed"
        );
    }

    #[test]
    fn dr_tls_5_plain_tcp_sbcs_and_endpoints_are_found_by_address() {
        let flows = Flows::default();
        let (lab, _a) = flow(
            &flows,
            "198.51.100.7:40000",
            Transport::Tcp,
            "lab-tcp",
            None,
        );
        let (phone, _b) = flow(
            &flows,
            "198.51.100.7:5070",
            Transport::Tcp,
            ENDPOINT_LISTENER,
            None,
        );
        let (_tls, _c) = flow(
            &flows,
            "198.51.100.7:40001",
            Transport::Tls,
            "sip",
            Some(identity(Some("sbc1.adatum.biz"), &[])),
        );
        assert_eq!(
            found(flows.find_insecure("198.51.100.7".parse().unwrap())),
            Some(lab)
        );
        assert_eq!(
            found(flows.find_insecure("198.51.100.8".parse().unwrap())),
            None
        );
        assert_eq!(
            found(flows.find_by_peer("198.51.100.7:5070".parse().unwrap())),
            Some(phone)
        );
        assert_eq!(
            found(flows.find_by_peer("198.51.100.7:5071".parse().unwrap())),
            None
        );
    }
}
