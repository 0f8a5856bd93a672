//! Accept loops: one per configured listener. A TLS listener completes the mutual-TLS
//! handshake (DR-TLS-1) before anything is read; a failed handshake is logged with its
//! cause and touches nothing else. Accepted and outbound connections then run the same
//! [`run_flow`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

use super::datacenter::Mode;
use super::stream::{self, CloseReason, StreamLimits};
use super::tls::PeerIdentity;
use super::{Direction, Dispatch, FlowHandle, FlowId, FlowInfo, Flows, Tap, Transport};
use crate::sip::LocalIdentity;

/// Messages other tasks may queue for one connection before `FlowHandle::send` refuses
/// and closes it. The connection's task empties its queue before it reads again, so a
/// live peer never comes near this; only one that stops reading fills it (and its write
/// timeout closes it soon after). The queue's memory is taken as it fills, not up front.
const FLOW_QUEUE: usize = 32_768;

/// Everything an accept loop needs, shared by all its connections.
pub struct Listening {
    pub name: String,
    /// What handles this listener's messages (the SBC front door, or the endpoint side).
    pub dispatch: Arc<dyn Dispatch>,
    /// How the proxy names itself on this listener's flows.
    pub proxy: LocalIdentity,
    pub tls: Option<TlsAcceptor>,
    pub limits: StreamLimits,
    pub handshake_timeout: std::time::Duration,
    /// The connection caps this listener counts against: one gate for all the SBC
    /// listeners, another for the endpoint listener, so that neither side can use up
    /// the other's connections.
    pub gate: Arc<Gate>,
    /// This listener's datacenter mode (DR-DC-1); `None` for the endpoint listener.
    pub fault: Option<watch::Receiver<Mode>>,
}

/// Connection caps: in all, and per source address. A connection counts from accept
/// (before any TLS handshake) until it closes.
#[derive(Debug)]
pub struct Gate {
    /// For the log: `SBC listeners`, `endpoint listener`.
    pub name: &'static str,
    max: usize,
    max_per_address: usize,
    open: Mutex<GateCounts>,
}

#[derive(Debug, Default)]
struct GateCounts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Why the gate refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max` connections are open.
    Full(usize),
    /// `max_per_address` connections from this address are open.
    AddressFull(usize),
}

impl Gate {
    pub fn new(name: &'static str, max: usize, max_per_address: usize) -> Gate {
        Gate {
            name,
            max,
            max_per_address,
            open: Mutex::new(GateCounts::default()),
        }
    }

    /// Takes a place for a connection from `ip`, held until the pass is dropped.
    pub fn enter(self: &Arc<Gate>, ip: IpAddr) -> Result<Pass, Refused> {
        let mut open = self.lock();
        if open.total >= self.max {
            return Err(Refused::Full(self.max));
        }
        let here = open.by_address.entry(ip).or_default();
        if *here >= self.max_per_address {
            return Err(Refused::AddressFull(self.max_per_address));
        }
        *here += 1;
        open.total += 1;
        Ok(Pass {
            gate: self.clone(),
            ip,
        })
    }

    /// Connections open through this gate.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    fn leave(&self, ip: IpAddr) {
        let mut open = self.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(here) = open.by_address.get_mut(&ip) {
            *here -= 1;
            if *here == 0 {
                open.by_address.remove(&ip);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateCounts> {
        // Each update is a pair of counter steps; a poisoned lock is still consistent.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One connection's place at a [`Gate`]; dropping it frees the place.
#[derive(Debug)]
pub struct Pass {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl Drop for Pass {
    fn drop(&mut self) {
        self.gate.leave(self.ip);
    }
}

/// Shared by every listener and outbound connection: the flow registry, the tap,
/// shutdown and the task tracker that shutdown waits on.
#[derive(Clone)]
pub struct Shared {
    pub flows: Arc<Flows>,
    pub tap: Arc<Tap>,
    /// Cancelled first on shutdown: no new connections.
    pub stop_accepting: CancellationToken,
    /// Cancelled once the drain is over: live connections close (TLS close_notify).
    pub close_connections: CancellationToken,
    pub tracker: TaskTracker,
}

/// Accepts until `stop` (shutdown, or a reload that removed the listener: a child of
/// [`Shared::stop_accepting`]). Connections already up are served by their own tasks.
///
/// The listener's datacenter mode (DR-DC-1) is followed here: `refuse` closes the
/// listening socket until the mode changes (then it is bound again on the same
/// address), `reset` and `silent` take over each new connection before any handshake.
pub async fn accept_loop(
    socket: TcpListener,
    slot: Arc<ArcSwap<Listening>>,
    stop: CancellationToken,
    shared: Shared,
) {
    let mut fault = slot.load().fault.clone();
    let address = socket.local_addr().ok();
    // `None` while the datacenter refuses connections.
    let mut socket = Some(socket);
    let name = slot.load().name.clone();
    loop {
        let mode = fault.as_ref().map(|f| *f.borrow()).unwrap_or_default();
        if mode == Mode::Refuse {
            if socket.take().is_some() {
                info!(listener = %name, "listening socket closed: connections are refused (DR-DC-1)");
            }
        } else if socket.is_none() {
            match address.map(TcpListener::bind) {
                Some(bind) => match bind.await {
                    Ok(l) => {
                        info!(listener = %name, "listening again");
                        socket = Some(l);
                    }
                    Err(e) => {
                        warn!(listener = %name, error = %e, "cannot listen again; retrying in 1 s");
                        tokio::select! {
                            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                            _ = stop.cancelled() => break,
                        }
                    }
                },
                None => break,
            }
        }
        let accept = async {
            match &socket {
                Some(l) => l.accept().await,
                None => std::future::pending().await,
            }
        };
        let changed = async {
            match fault.as_mut() {
                Some(f) => {
                    if f.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        let accepted = tokio::select! {
            a = accept => a,
            _ = changed => continue,
            _ = stop.cancelled() => break,
        };
        // What a reload changed in place (certificate, CA, FQDN) applies from the next
        // connection on; the connections up keep what they were accepted with.
        let listening = slot.load_full();
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly rather than spin.
                warn!(listener = %listening.name, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = match listening.gate.enter(peer.ip()) {
            Ok(pass) => pass,
            Err(refused) => {
                let (limit, what) = match refused {
                    Refused::Full(n) => (n, "connections"),
                    Refused::AddressFull(n) => (n, "connections from this address"),
                };
                crate::warn_limited!(
                    listener = %listening.name,
                    peer = %peer,
                    limit,
                    "connection refused: the {} already have {limit} {what}",
                    listening.gate.name
                );
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let l = listening.clone();
        let s = shared.clone();
        let span = tracing::info_span!("conn", peer.addr = %peer, listener = %l.name);
        shared.tracker.spawn(
            async move {
                match mode {
                    Mode::Reset => reset(tcp).await,
                    Mode::Silent => silent(tcp, &l, &s).await,
                    _ => connection(tcp, peer, l, s).await,
                }
                drop(permit);
            }
            .instrument(span),
        );
    }
    debug!(listener = %name, "stopped accepting");
}

/// DR-DC-1 `reset`: reads what the peer sends first (its TLS ClientHello) and resets the
/// connection, as a datacenter whose TLS front end fails does.
async fn reset(mut tcp: TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut hello = [0u8; 512];
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), tcp.read(&mut hello)).await;
    // SO_LINGER 0: close with a reset instead of a FIN.
    if let Err(e) = tcp.set_zero_linger() {
        debug!(error = %e, "SO_LINGER refused; closing normally");
    }
    crate::info_limited!(
        "connection reset during the TLS handshake (datacenter mode reset, DR-DC-1)"
    );
}

/// DR-DC-1 `silent`: holds the connection and answers nothing (what the peer sends is
/// read and discarded), until the peer gives up, the idle timeout passes or the daemon
/// stops.
async fn silent(mut tcp: TcpStream, l: &Listening, s: &Shared) {
    use tokio::io::AsyncReadExt;
    crate::info_limited!(
        "connection accepted and never answered (datacenter mode silent, DR-DC-1)"
    );
    let mut sink = [0u8; 2048];
    let closed = async {
        while let Ok(n) = tcp.read(&mut sink).await {
            if n == 0 {
                return;
            }
        }
    };
    tokio::select! {
        _ = closed => {}
        _ = tokio::time::sleep(l.limits.idle_timeout) => {}
        _ = s.close_connections.cancelled() => {}
    }
}

async fn connection(tcp: TcpStream, peer: SocketAddr, l: Arc<Listening>, s: Shared) {
    let local = match tcp.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let info = |identity| {
        Arc::new(FlowInfo {
            id: FlowId::next(),
            peer,
            local,
            listener: l.name.clone(),
            proxy: l.proxy.clone(),
            transport: l.proxy.transport(),
            direction: Direction::Inbound,
            identity,
        })
    };
    match &l.tls {
        Some(acceptor) => {
            let handshake = tokio::time::timeout(l.handshake_timeout, acceptor.accept(tcp));
            let tls = tokio::select! {
                r = handshake => r,
                _ = s.close_connections.cancelled() => return,
            };
            let tls = match tls {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    // DR-TLS-1: the real service resets; nothing is parsed.
                    crate::warn_limited!(error = %e, "TLS handshake failed; connection dropped (DR-TLS-1)");
                    return;
                }
                Err(_) => {
                    crate::warn_limited!("TLS handshake timed out; connection dropped");
                    return;
                }
            };
            let identity = match PeerIdentity::of_peer(tls.get_ref().1) {
                Some(Ok(id)) => id,
                Some(Err(e)) => {
                    warn!(error = %e, "client certificate unreadable; connection dropped");
                    return;
                }
                None => {
                    // The verifier requires a certificate; this is defence in depth.
                    warn!("TLS client presented no certificate; connection dropped (DR-TLS-1)");
                    return;
                }
            };
            info!(cert.names = %identity.names().collect::<Vec<_>>().join(","), "SBC connected");
            let info = info(Some(Arc::new(identity)));
            run_flow(tls, info, l.dispatch.clone(), l.limits.clone(), &s).await;
        }
        None => {
            if l.proxy.transport() == Transport::Tcp {
                debug!("plain TCP connection");
            }
            let info = info(None);
            run_flow(tcp, info, l.dispatch.clone(), l.limits.clone(), &s).await;
        }
    }
}

/// Serves one established connection, inbound or outbound, until it closes: registers
/// it (so calls and health can send on it), runs the stream loop, deregisters it.
///
/// Not an `async fn` itself: it returns the stream loop's own future, so the connection's
/// task holds the TLS stream once (each `async fn` level that takes the stream by value
/// keeps a slot of its size, about 1.6 KB for a rustls server connection).
pub(crate) fn run_flow<S>(
    stream: S,
    info: Arc<FlowInfo>,
    dispatch: Arc<dyn Dispatch>,
    limits: StreamLimits,
    s: &Shared,
) -> impl std::future::Future<Output = ()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (_, outbox) = register(&info, &dispatch, s);
    serve_registered(stream, info, dispatch, limits, outbox, s.clone())
}

/// [`run_flow`] on a task of its own, for the proxy's outbound connections; returns the
/// connection's handle once it is in the registry.
pub(crate) fn spawn_flow<S>(
    stream: S,
    info: Arc<FlowInfo>,
    dispatch: Arc<dyn Dispatch>,
    limits: StreamLimits,
    s: &Shared,
) -> FlowHandle
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (handle, outbox) = register(&info, &dispatch, s);
    let span = tracing::info_span!("conn", peer.addr = %info.peer, listener = %info.listener, direction = "out");
    s.tracker.spawn(
        serve_registered(stream, info, dispatch, limits, outbox, s.clone()).instrument(span),
    );
    handle
}

fn register(
    info: &Arc<FlowInfo>,
    dispatch: &Arc<dyn Dispatch>,
    s: &Shared,
) -> (FlowHandle, Outbox) {
    let (tx, rx) = mpsc::channel::<Bytes>(FLOW_QUEUE);
    let close = CancellationToken::new();
    let handle = FlowHandle::new(info.clone(), tx, close.clone());
    s.flows.insert(handle.clone());
    dispatch.on_opened(info);
    (handle, Outbox { rx, close })
}

/// The receiving side of a connection's [`FlowHandle`].
struct Outbox {
    rx: mpsc::Receiver<Bytes>,
    close: CancellationToken,
}

async fn serve_registered<S>(
    stream: S,
    info: Arc<FlowInfo>,
    dispatch: Arc<dyn Dispatch>,
    limits: StreamLimits,
    outbox: Outbox,
    s: Shared,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let reason = stream::serve(
        stream,
        info.clone(),
        dispatch.clone(),
        limits,
        outbox.rx,
        outbox.close,
        s.close_connections.clone(),
        s.tap.clone(),
    )
    .await;
    s.flows.remove(info.id);
    dispatch.on_closed(&info);
    match reason {
        CloseReason::WriteTimeout => crate::warn_limited!(
            flow = %info.id,
            direction = ?info.direction,
            "connection closed: the peer took no bytes for limits.write_timeout_seconds"
        ),
        _ => info!(flow = %info.id, direction = ?info.direction, ?reason, "connection closed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_caps_connections_in_all_and_per_address_and_frees_them_on_drop() {
        let gate = Arc::new(Gate::new("test", 3, 2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = gate.enter(a).unwrap();
        let _a2 = gate.enter(a).unwrap();
        assert_eq!(gate.enter(a).unwrap_err(), Refused::AddressFull(2));
        let _b1 = gate.enter(b).unwrap();
        assert_eq!(gate.enter(b).unwrap_err(), Refused::Full(3));
        assert_eq!(gate.open(), 3);
        drop(a1);
        assert_eq!(gate.open(), 2);
        let _a3 = gate.enter(a).unwrap();
    }
}
