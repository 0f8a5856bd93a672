//! Accept loops: one per configured listener. A TLS listener completes the mutual-TLS
//! handshake (DR-TLS-1) before anything is read; a failed handshake is logged with its
//! cause and touches nothing else. Accepted and outbound connections then run the same
//! [`run_flow`].

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

use super::stream::{self, StreamLimits};
use super::tls::PeerIdentity;
use super::{Direction, Dispatch, FlowHandle, FlowId, FlowInfo, Flows, Tap, Transport};
use crate::sip::LocalIdentity;

/// Messages other tasks may queue for one connection before `FlowHandle::send` refuses.
const FLOW_QUEUE: usize = 4096;

/// Everything an accept loop needs, shared by all its connections.
pub struct Listening {
    pub name: String,
    /// What handles this listener's messages (the SBC front door, or the endpoint side).
    pub dispatch: Arc<dyn Dispatch>,
    /// How the proxy names itself on this listener's flows.
    pub proxy: LocalIdentity,
    pub socket: TcpListener,
    pub tls: Option<TlsAcceptor>,
    pub limits: StreamLimits,
    pub handshake_timeout: std::time::Duration,
}

impl Listening {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

/// Shared by every listener and outbound connection: the flow registry, the connection
/// cap, the tap, shutdown and the task tracker that shutdown waits on.
#[derive(Clone)]
pub struct Shared {
    pub flows: Arc<Flows>,
    pub permits: Arc<Semaphore>,
    pub tap: Arc<Tap>,
    /// Cancelled first on shutdown: no new connections.
    pub stop_accepting: CancellationToken,
    /// Cancelled once the drain is over: live connections close (TLS close_notify).
    pub close_connections: CancellationToken,
    pub tracker: TaskTracker,
}

/// Accepts until shutdown. Connections already up are served by their own tasks.
pub async fn accept_loop(listening: Listening, shared: Shared) {
    let listening = Arc::new(listening);
    loop {
        let accepted = tokio::select! {
            a = listening.socket.accept() => a,
            _ = shared.stop_accepting.cancelled() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly rather than spin.
                warn!(listener = %listening.name, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = shared.permits.clone().try_acquire_owned() else {
            warn!(listener = %listening.name, peer = %peer, "connection limit reached; refusing");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let l = listening.clone();
        let s = shared.clone();
        let span = tracing::info_span!("conn", peer.addr = %peer, listener = %l.name);
        shared.tracker.spawn(
            async move {
                connection(tcp, peer, l, s).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
    debug!(listener = %listening.name, "stopped accepting");
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
                    warn!(error = %e, "TLS handshake failed; connection dropped (DR-TLS-1)");
                    return;
                }
                Err(_) => {
                    warn!("TLS handshake timed out; connection dropped");
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
    let (_, rx) = register(&info, &dispatch, s);
    serve_registered(stream, info, dispatch, limits, rx, s.clone())
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
    let (handle, rx) = register(&info, &dispatch, s);
    let span = tracing::info_span!("conn", peer.addr = %info.peer, listener = %info.listener, direction = "out");
    s.tracker
        .spawn(serve_registered(stream, info, dispatch, limits, rx, s.clone()).instrument(span));
    handle
}

fn register(
    info: &Arc<FlowInfo>,
    dispatch: &Arc<dyn Dispatch>,
    s: &Shared,
) -> (FlowHandle, mpsc::Receiver<Bytes>) {
    let (tx, rx) = mpsc::channel::<Bytes>(FLOW_QUEUE);
    let handle = FlowHandle::new(info.clone(), tx);
    s.flows.insert(handle.clone());
    dispatch.on_opened(info);
    (handle, rx)
}

async fn serve_registered<S>(
    stream: S,
    info: Arc<FlowInfo>,
    dispatch: Arc<dyn Dispatch>,
    limits: StreamLimits,
    rx: mpsc::Receiver<Bytes>,
    s: Shared,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let reason = stream::serve(
        stream,
        info.clone(),
        dispatch.clone(),
        limits,
        rx,
        s.close_connections.clone(),
        s.tap.clone(),
    )
    .await;
    s.flows.remove(info.id);
    dispatch.on_closed(&info);
    info!(flow = %info.id, direction = ?info.direction, ?reason, "connection closed");
}
