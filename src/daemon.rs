//! Assembly only: certificates, sockets, the shared hub, the front door, the router and
//! the transaction layer's task; then serving until shutdown and draining within a
//! bounded grace period.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use arc_swap::ArcSwap;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::call::router::{self, Router, ROUTER_QUEUE};
use crate::certs::{self, PkiRequest};
use crate::config::{Config, Listener};
use crate::endpoint::net::EndpointDispatch;
use crate::endpoint::service::Endpoints;
use crate::hub::{Hub, ENDPOINT_LISTENER};
use crate::sbc::FrontDoor;
use crate::sip::build::Style;
use crate::sip::{self, LocalIdentity, Transport};
use crate::transaction::{CoreEvent, Output, Timers, TransactionLayer};
use crate::transport::connect::{ClientSide, Connector};
use crate::transport::listener::{self, Gate, Listening, Shared};
use crate::transport::stream::StreamLimits;
use crate::transport::tls::{self, TlsFiles};
use crate::transport::udp::{self, UdpFlow};
use crate::transport::{Destination, Flows, Tap};

/// Why the daemon could not start. Each names the listener or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("listener[{index}] `{name}`: {source}")]
    Tls {
        index: usize,
        name: String,
        source: Box<tls::TlsError>,
    },
    #[error("listener[{index}] `{name}`: {path}: file not found (and it is not a lab file drhub can create; see [certs] auto_create)")]
    MissingFile {
        index: usize,
        name: String,
        path: PathBuf,
    },
    #[error("creating the lab certificates in {dir}: {source}")]
    Certs {
        dir: PathBuf,
        source: Box<certs::CertError>,
    },
    #[error(transparent)]
    Endpoints(crate::endpoint::service::EndpointError),
    #[error("trace: cannot write the trace: {0}")]
    Trace(String),
    #[error("api.address: cannot listen on {address}: {source}")]
    ApiBind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("listener[{index}] `{name}`: cannot listen on {address}: {source}")]
    Bind {
        index: usize,
        name: String,
        address: SocketAddr,
        source: std::io::Error,
    },
}

impl StartError {
    /// True for errors the user fixes in the configuration or its files (exit 64).
    pub fn is_config_error(&self) -> bool {
        !matches!(
            self,
            StartError::Bind { .. } | StartError::ApiBind { .. } | StartError::Endpoints(_)
        )
    }
}

/// A daemon whose listeners are bound, ready to serve.
pub struct Daemon {
    config: Arc<Config>,
    /// The file the config came from, re-read by a reload; `None` for the built-in one.
    source: Option<PathBuf>,
    /// Bound sockets not yet served, each with what its accept loop serves and stops by.
    listening: Vec<(TcpListener, Arc<ArcSwap<Listening>>, CancellationToken)>,
    /// The SBC listeners (not the endpoint listener), for a reload to change.
    running: Vec<Running>,
    /// What every SBC listener shares, for a reload to make new ones.
    kit: ListenerKit,
    addrs: Vec<(String, SocketAddr)>,
    hub: Arc<Hub>,
    shared: Shared,
    layer: TransactionLayer<Destination>,
    router: Router,
    router_tx: mpsc::Sender<CoreEvent<Destination>>,
    endpoint_udp: Option<(Arc<UdpFlow>, Arc<EndpointDispatch>)>,
    /// The control API's socket, when `[api] address` is not "off".
    api: Option<TcpListener>,
}

impl Daemon {
    /// Creates missing lab certificates when allowed, loads TLS, binds every enabled
    /// listener. Nothing is served until [`Daemon::serve`].
    pub async fn bind(config: Arc<Config>) -> Result<Daemon, StartError> {
        ensure_lab_pki(&config)?;
        let flows = Arc::new(Flows::default());
        let trace = match config.trace.is_on() {
            true => {
                Some(crate::observe::trace::Trace::open(&config.trace).map_err(StartError::Trace)?)
            }
            false => None,
        };
        let untraced = config
            .tenants
            .iter()
            .flat_map(|t| &t.trunks)
            .filter(|t| !t.trace)
            .map(|t| t.fqdn.to_string())
            .collect();
        let ladder_calls = match config.api.address {
            Some(_) => config.api.ladder_calls,
            None => 0, // no status page to draw them
        };
        let ladders = Arc::new(crate::observe::ladder::Ladders::new(ladder_calls));
        let tap = Arc::new(Tap::with_trace(trace, untraced, ladders));
        let shared = Shared {
            flows: flows.clone(),
            tap: tap.clone(),
            stop_accepting: CancellationToken::new(),
            close_connections: CancellationToken::new(),
            tracker: TaskTracker::new(),
        };
        let timers = Timers {
            t1: config.timers.t1,
            t2: config.timers.t2,
            t4: config.timers.t4,
        };
        let (layer, layer_handle) = TransactionLayer::new(timers);
        let server: Arc<str> = config.proxy.server.as_str().into();
        let endpoint_sockets = match config.endpoints.address {
            Some(address) => Some(
                crate::endpoint::service::bind(address)
                    .await
                    .map_err(StartError::Endpoints)?,
            ),
            None => None,
        };
        let mut endpoint_tcp = None;
        let endpoints = match endpoint_sockets {
            Some((udp, tcp)) => {
                let local = udp.local_addr().map_err(|source| {
                    StartError::Endpoints(crate::endpoint::service::EndpointError::Bind {
                        address: config
                            .endpoints
                            .address
                            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
                        source,
                    })
                })?;
                let proxy = LocalIdentity::new(
                    local.ip().to_string(),
                    local.port(),
                    Transport::Udp,
                    server.clone(),
                    Style::Rfc3261,
                );
                let udp = UdpFlow::new(
                    udp,
                    ENDPOINT_LISTENER.to_owned(),
                    proxy.clone(),
                    tap.clone(),
                )
                .map_err(|source| {
                    StartError::Endpoints(crate::endpoint::service::EndpointError::Bind {
                        address: local,
                        source,
                    })
                })?;
                let udp = Arc::new(udp);
                let e = Endpoints::new(&config, udp.clone()).map_err(StartError::Endpoints)?;
                info!(address = %e.local, "endpoint listener (UDP and TCP) for SIP endpoints");
                endpoint_tcp = Some((tcp, proxy.with_transport(Transport::Tcp)));
                Some(Arc::new(e))
            }
            None => None,
        };
        let hub = Arc::new(Hub::new(
            config.clone(),
            flows,
            layer_handle,
            endpoints,
            tap.clone(),
        ));
        let (flow_tx, flow_rx) = mpsc::unbounded_channel();
        let front_door = Arc::new(FrontDoor::new(hub.clone(), flow_tx));
        let limits = StreamLimits {
            sip: sip::Limits {
                max_header_bytes: config.limits.max_header_bytes,
                max_body_bytes: config.limits.max_body_bytes,
            },
            idle_timeout: config.limits.idle_timeout,
            message_timeout: config.limits.message_timeout,
            write_timeout: config.limits.write_timeout,
        };
        let kit = ListenerKit {
            front_door: front_door.clone(),
            limits: limits.clone(),
            handshake_timeout: config.limits.handshake_timeout,
            gate: Arc::new(Gate::new(
                "SBC listeners",
                config.limits.max_connections,
                config.limits.max_connections_per_address,
            )),
            server: server.clone(),
            style: hub.style(),
        };
        let mut listening = Vec::new();
        let mut running = Vec::new();
        let mut addrs = Vec::new();
        let mut sides = Vec::new();
        for (index, l) in config
            .listeners
            .iter()
            .enumerate()
            .filter(|(_, l)| l.enabled)
        {
            let tls = listener_tls(index, l)?;
            let (socket, local) = bind_listener(index, l).await?;
            let (made, side) = kit.listening(l, local, tls, &hub);
            let r = Running::new(l.clone(), local, made, shared.stop_accepting.child_token());
            sides.push(side);
            addrs.push((l.name.clone(), local));
            listening.push((socket, r.slot.clone(), r.stop.clone()));
            running.push(r);
        }
        let connector = Connector::new(
            shared.clone(),
            front_door.clone(),
            limits.clone(),
            config.limits.connect_timeout,
            sides,
        );
        hub.set_connector(Arc::new(connector));
        let mut endpoint_udp = None;
        if let (Some((tcp, proxy)), Some(endpoints)) = (endpoint_tcp, hub.endpoints.clone()) {
            addrs.push((ENDPOINT_LISTENER.to_owned(), endpoints.local));
            let dispatch = Arc::new(EndpointDispatch::new(hub.clone()));
            endpoint_udp = Some((endpoints.udp.clone(), dispatch.clone()));
            let endpoint_listening = Listening {
                name: ENDPOINT_LISTENER.to_owned(),
                dispatch,
                proxy,
                tls: None,
                limits: StreamLimits {
                    idle_timeout: config.endpoints.idle_timeout,
                    ..limits.clone()
                },
                handshake_timeout: config.limits.handshake_timeout,
                gate: Arc::new(Gate::new(
                    "endpoint listener",
                    config.endpoints.max_connections,
                    config.endpoints.max_connections_per_address,
                )),
                fault: None,
            };
            listening.push((
                tcp,
                Arc::new(ArcSwap::from_pointee(endpoint_listening)),
                shared.stop_accepting.child_token(),
            ));
        }
        let api = match config.api.address {
            Some(address) => {
                let bind_err = |source| StartError::ApiBind { address, source };
                let socket = TcpListener::bind(address).await.map_err(bind_err)?;
                let local = socket.local_addr().map_err(bind_err)?;
                info!(address = %local, "control API listening: status page http://{local}/, JSON http://{local}/api/status");
                addrs.push(("api".to_owned(), local));
                Some(socket)
            }
            None => None,
        };
        let (router_tx, router_rx) = mpsc::channel(ROUTER_QUEUE);
        hub.set_router(router_tx.clone());
        let router = Router::new(hub.clone(), router_rx, flow_rx);
        hub.set_listeners(addrs.iter().filter(|(n, _)| n != "api").cloned().collect());
        Ok(Daemon {
            config,
            source: None,
            listening,
            running,
            kit,
            addrs,
            hub,
            shared,
            layer,
            router,
            router_tx,
            endpoint_udp,
            api,
        })
    }

    /// The file the config came from, for reloads to re-read (`SIGHUP`, `drhub reload`).
    pub fn with_source(mut self, path: Option<PathBuf>) -> Daemon {
        self.source = path;
        self
    }

    /// The bound address of every enabled listener, by listener name.
    pub fn local_addrs(&self) -> &[(String, SocketAddr)] {
        &self.addrs
    }

    /// The address of the named listener.
    pub fn addr(&self, listener: &str) -> Option<SocketAddr> {
        self.addrs
            .iter()
            .find(|(n, _)| n == listener)
            .map(|(_, a)| *a)
    }

    /// The shared state, for status reporting and tests.
    pub fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, lets work in
    /// progress finish within `limits.shutdown_grace`, closes every connection and
    /// returns.
    pub async fn serve(self, shutdown: CancellationToken) {
        let shared = self.shared;
        let tracker = shared.tracker.clone();
        for (socket, slot, stop) in self.listening {
            tracker.spawn(listener::accept_loop(socket, slot, stop, shared.clone()));
        }
        let (reload, mut reloads) = crate::reload::Handle::new();
        self.hub.set_reload(reload);
        if let Some(socket) = self.api {
            tracker.spawn(crate::api::serve(
                socket,
                self.hub.clone(),
                shared.close_connections.clone(),
            ));
        }
        let layer_task = tokio::spawn(drive_layer(self.layer, self.hub.clone(), self.router_tx));
        let router_stop = CancellationToken::new();
        let router_task = tokio::spawn(self.router.run(router_stop.clone()));
        // DR-OUT-1: calls users place on their own (started over by a reload).
        let mut scheduled = shared.close_connections.child_token();
        tracker.spawn(crate::call::place::run_scheduled(
            self.hub.clone(),
            scheduled.clone(),
        ));
        // DR-OPT-3: the proxy's own OPTIONS.
        tracker.spawn(crate::health::run(
            self.hub.clone(),
            shared.close_connections.clone(),
        ));
        if let Some((udp, dispatch)) = self.endpoint_udp {
            tracker.spawn(udp::serve(udp, dispatch, shared.close_connections.clone()));
        }
        if let Some(endpoints) = self.hub.endpoints.clone() {
            let stop = shared.close_connections.clone();
            tracker.spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
                loop {
                    tokio::select! {
                        _ = tick.tick() => endpoints.expire(),
                        _ = stop.cancelled() => return,
                    }
                }
            });
        }
        // The protocol trace's files, written out every FLUSH_EVERY (and at the end).
        if shared.tap.traces_anything() {
            let tap = shared.tap.clone();
            let stop = shared.close_connections.clone();
            tracker.spawn(async move {
                let mut tick = tokio::time::interval(crate::observe::trace::FLUSH_EVERY);
                loop {
                    tokio::select! {
                        _ = tick.tick() => tap.flush(),
                        _ = stop.cancelled() => return,
                    }
                }
            });
        }
        // DR-ERR-1: how long a ready task waits for a thread.
        {
            let hub = self.hub.clone();
            let stop = shared.close_connections.clone();
            tracker.spawn(async move {
                tokio::select! {
                    _ = lag_probe(&hub) => {}
                    _ = stop.cancelled() => {}
                }
            });
        }
        if let Some(every) = self.config.log.status_interval {
            let hub = self.hub.clone();
            let stop = shared.close_connections.clone();
            tracker.spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = tick.tick() => log_status(&hub),
                        _ = stop.cancelled() => return,
                    }
                }
            });
        }
        let mut reloader = Reloader {
            source: self.source,
            config: self.config.clone(),
            running: self.running,
            kit: self.kit,
            hub: self.hub.clone(),
            shared: shared.clone(),
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(reply) = reloads.recv() => {
                    let outcome = reloader.reload().await;
                    if matches!(&outcome, Ok(r) if r.applied.iter().any(|a| a.starts_with("tenants"))) {
                        scheduled.cancel();
                        scheduled = shared.close_connections.child_token();
                        tracker.spawn(crate::call::place::run_scheduled(
                            self.hub.clone(),
                            scheduled.clone(),
                        ));
                    }
                    let _ = reply.send(outcome);
                }
            }
        }
        shared.stop_accepting.cancel();
        self.hub.set_draining();
        let grace = self.config.limits.shutdown_grace;
        let drained = tokio::time::timeout(grace, self.hub.calls.idle())
            .await
            .is_ok();
        if !drained {
            warn!(
                ?grace,
                "grace period over with work in progress; closing anyway"
            );
        }
        shared.close_connections.cancel();
        router_stop.cancel();
        let _ = router_task.await;
        layer_task.abort();
        tracker.close();
        // Each connection's close is itself bounded (2 s for close_notify).
        if tokio::time::timeout(std::time::Duration::from_secs(3), tracker.wait())
            .await
            .is_err()
        {
            warn!("some connections did not close in time");
        }
        shared.tap.flush();
    }
}

/// Every [`LAG_PROBE`], sleeps and records how much later than asked it woke: the time
/// a task that is ready waits for one of the runtime's threads, which every connection
/// and call task pays too. Published as the smallest lateness of each interval
/// ([`crate::overload`]), so a VM's stall is not taken for overload. Read by
/// [`Hub::overload`].
async fn lag_probe(hub: &Hub) {
    let mut window = crate::overload::Window::default();
    loop {
        let asked = tokio::time::Instant::now() + LAG_PROBE;
        tokio::time::sleep_until(asked).await;
        let now = tokio::time::Instant::now();
        window.sample(now, now.saturating_duration_since(asked), &hub.runtime_lag);
    }
}

/// How often [`lag_probe`] looks: four samples per interval of [`crate::overload`].
/// Every 5 ms cost 10 % of the OPTIONS throughput (each wake-up drew the other worker
/// thread in to steal the connection's task, most likely).
const LAG_PROBE: std::time::Duration = std::time::Duration::from_millis(25);

/// One line of what the daemon holds, for the journal (and the soak bench).
fn log_status(hub: &Hub) {
    let load = hub.layer.load();
    let c = &hub.counters;
    info!(
        calls = hub.calls.len(),
        legs = hub.calls.legs(),
        transactions = load.transactions(),
        layer_queue = load.queued(),
        layer_delay_us = load.delay().as_micros() as u64,
        runtime_lag_us = hub.runtime_lag.get().as_micros() as u64,
        connections = hub.flows.len(),
        requests = c.requests.load(Ordering::Relaxed),
        rejected = c.rejected.load(Ordering::Relaxed),
        shed = c.shed.load(Ordering::Relaxed),
        malformed = c.malformed.load(Ordering::Relaxed),
        "status"
    );
}

/// The transaction layer's one task: writes what it must transmit, hands what belongs to
/// no transaction to the router. It does transactions only. A failed write is retried on
/// another open connection of the same peer (an SBC that reconnected, RFC 3261 §18.2.2),
/// else reported back so the transaction ends (§17.1.4, §17.2.4).
async fn drive_layer(
    mut layer: TransactionLayer<Destination>,
    hub: Arc<Hub>,
    router: mpsc::Sender<CoreEvent<Destination>>,
) {
    loop {
        match layer.next().await {
            Output::Transmit(t) => {
                if t.dest.send(t.bytes.clone()) {
                    continue;
                }
                let again = match &t.dest {
                    Destination::Flow(f) if f.info.identity.is_some() => hub
                        .flows
                        .find_same_peer(&f.info)
                        .is_some_and(|other| other.send(t.bytes.clone())),
                    _ => false,
                };
                if !again {
                    crate::warn_limited!(to = %t.dest.label(), "message not sent: the connection is gone or its send queue is full");
                    if let Some(tx) = t.tx {
                        let _ = hub.layer.transport_error(tx);
                    }
                }
            }
            Output::Event(ev) => match router.try_send(ev) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(ev)) => {
                    if let Some(ev) = router::shed(&hub, ev) {
                        // Not shed (CANCEL, ACK, responses): wait for room.
                        if router.send(ev).await.is_err() {
                            return;
                        }
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            },
        }
    }
}

/// Writes the lab PKI when a TLS listener names missing files that are the lab's own
/// (`proxy.pem`, `proxy.key`, `ca.pem` in `[certs] dir`) and `auto_create` is on.
/// What every SBC listener shares: the front door, limits, the connection gate, how
/// drhub names itself.
struct ListenerKit {
    front_door: Arc<FrontDoor>,
    limits: StreamLimits,
    handshake_timeout: std::time::Duration,
    gate: Arc<Gate>,
    server: Arc<str>,
    style: Style,
}

impl ListenerKit {
    /// What an accept loop serves for listener `l` bound on `local`, and the client side
    /// of its certificate for the connections drhub opens.
    fn listening(
        &self,
        l: &Listener,
        local: SocketAddr,
        (tls, client): ListenerTlsPair,
        hub: &Hub,
    ) -> (Listening, ClientSide) {
        let proxy = LocalIdentity::new(
            l.fqdn.as_str(),
            local.port(),
            l.transport,
            self.server.clone(),
            self.style,
        );
        let side = ClientSide {
            listener: l.name.clone(),
            tls: client,
            proxy: proxy.clone(),
        };
        let listening = Listening {
            name: l.name.clone(),
            dispatch: self.front_door.clone(),
            proxy,
            tls,
            limits: self.limits.clone(),
            handshake_timeout: self.handshake_timeout,
            gate: self.gate.clone(),
            fault: hub.datacenters.watch(&l.name),
        };
        (listening, side)
    }
}

/// A listener's TLS server side and client side (`None` on plain TCP).
type ListenerTlsPair = (Option<TlsAcceptor>, Option<Arc<rustls::ClientConfig>>);

/// Reads a listener's certificate, key and client CA.
fn listener_tls(index: usize, l: &Listener) -> Result<ListenerTlsPair, StartError> {
    let Some(t) = &l.tls else {
        return Ok((None, None));
    };
    let files = TlsFiles {
        cert: t.certificate.clone(),
        key: t.key.clone(),
        client_ca: t.client_ca.clone(),
    };
    let to_err = |source| StartError::Tls {
        index,
        name: l.name.clone(),
        source: Box::new(source),
    };
    let server_cfg = tls::server_config(&files, &t.versions).map_err(to_err)?;
    let client_cfg = tls::client_config(&files, &t.versions).map_err(to_err)?;
    Ok((Some(TlsAcceptor::from(server_cfg)), Some(client_cfg)))
}

/// Binds a listener's socket; returns it and the address it got.
async fn bind_listener(
    index: usize,
    l: &Listener,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let err = |source| StartError::Bind {
        index,
        name: l.name.clone(),
        address: l.address,
        source,
    };
    let socket = TcpListener::bind(l.address).await.map_err(err)?;
    let local = socket.local_addr().map_err(err)?;
    info!(listener = %l.name, transport = %l.transport, address = %local, fqdn = %l.fqdn, "listening");
    if l.transport == Transport::Tcp {
        warn!(listener = %l.name, "plain TCP listener enabled: only trunks with allow_insecure = true are served there");
    }
    Ok((socket, local))
}

/// An SBC listener being served.
struct Running {
    /// What it was made from.
    config: Listener,
    local: SocketAddr,
    /// What its accept loop serves; a reload that keeps its address swaps it.
    slot: Arc<ArcSwap<Listening>>,
    /// Stops its accept loop (a reload that removes it, or shutdown).
    stop: CancellationToken,
}

impl Running {
    fn new(config: Listener, local: SocketAddr, l: Listening, stop: CancellationToken) -> Running {
        Running {
            config,
            local,
            slot: Arc::new(ArcSwap::from_pointee(l)),
            stop,
        }
    }
}

/// What a reload needs of the daemon: its config file, its listeners and how to make
/// new ones.
struct Reloader {
    source: Option<PathBuf>,
    config: Arc<Config>,
    running: Vec<Running>,
    kit: ListenerKit,
    hub: Arc<Hub>,
    shared: Shared,
}

/// What a reload does to one listener.
enum ListenerChange {
    /// Same name, address and transport: swap what its accept loop serves (its
    /// certificate files re-read, so a certificate renewed at the same path applies);
    /// `true` when its settings changed.
    Update(usize, Listening, ClientSide, bool),
    /// New, or moved: a new socket and accept loop.
    Add(
        Box<Listener>,
        TcpListener,
        SocketAddr,
        Listening,
        ClientSide,
    ),
}

impl Reloader {
    /// Re-reads the config file; see [`crate::reload`]. Everything that can fail
    /// (parsing, certificates, binding new sockets) happens before anything changes.
    async fn reload(&mut self) -> Result<crate::reload::Report, crate::reload::Error> {
        use crate::reload::{Error, Report};
        let outcome = self.try_reload().await;
        match &outcome {
            Ok(Report {
                applied,
                restart_needed,
            }) => {
                info!(applied = ?applied, "configuration reloaded");
                if !restart_needed.is_empty() {
                    warn!(sections = ?restart_needed, "changed sections that apply only at the next restart");
                }
            }
            Err(e @ Error::Config { issues, .. }) => {
                for issue in issues {
                    warn!("reload: {issue}");
                }
                warn!("reload refused: {e}");
            }
            Err(e) => warn!("reload refused: {e}"),
        }
        outcome
    }

    async fn try_reload(&mut self) -> Result<crate::reload::Report, crate::reload::Error> {
        use crate::reload::{Error, Report};
        let path = self.source.as_deref().ok_or(Error::NoFile)?;
        let new = Config::load(path).map_err(|e| Error::Config {
            source_name: e.source_name.clone(),
            issues: e.issues.iter().map(ToString::to_string).collect(),
        })?;
        ensure_lab_pki(&new).map_err(|e| Error::Listener(e.to_string()))?;
        let mut changes = Vec::new();
        let mut applied = crate::reload::applied_changes(&self.config, &new);
        for (index, l) in new.listeners.iter().enumerate().filter(|(_, l)| l.enabled) {
            let same_place = self.running.iter().position(|r| {
                r.config.name == l.name
                    && r.config.address == l.address
                    && r.config.transport == l.transport
            });
            match same_place {
                Some(i) => {
                    let changed = crate::reload::differs(&self.running[i].config, l);
                    let tls = listener_tls(index, l).map_err(|e| Error::Listener(e.to_string()))?;
                    let (made, side) = self.kit.listening(l, self.running[i].local, tls, &self.hub);
                    changes.push(ListenerChange::Update(i, made, side, changed));
                }
                None => {
                    let tls = listener_tls(index, l).map_err(|e| Error::Listener(e.to_string()))?;
                    let (socket, local) = bind_listener(index, l)
                        .await
                        .map_err(|e| Error::Listener(e.to_string()))?;
                    let (made, side) = self.kit.listening(l, local, tls, &self.hub);
                    changes.push(ListenerChange::Add(
                        Box::new(l.clone()),
                        socket,
                        local,
                        made,
                        side,
                    ));
                }
            }
        }
        // Nothing can fail from here on.
        let restart_needed = crate::reload::restart_only_changes(&self.config, &new);
        let new = Arc::new(new);
        // The datacenters first: a new accept loop watches its own.
        self.hub.apply(new.clone());
        let mut sides: HashMap<String, ClientSide> = HashMap::new();
        let mut added = Vec::new();
        for change in changes {
            match change {
                ListenerChange::Update(i, mut made, side, changed) => {
                    let r = &mut self.running[i];
                    made.fault = self.hub.datacenters.watch(&r.config.name);
                    if changed {
                        applied.push(format!(
                            "listener `{}` changed in place: new connections use its new settings",
                            r.config.name
                        ));
                    }
                    r.slot.store(Arc::new(made));
                    if let Some(l) = new.listeners.iter().find(|l| l.name == r.config.name) {
                        r.config = l.clone();
                    }
                    sides.insert(side.listener.clone(), side);
                }
                ListenerChange::Add(l, socket, local, mut made, side) => {
                    made.fault = self.hub.datacenters.watch(&l.name);
                    applied.push(format!("listener `{}` added on {local}", l.name));
                    let r = Running::new(*l, local, made, self.shared.stop_accepting.child_token());
                    sides.insert(side.listener.clone(), side);
                    added.push((socket, r));
                }
            }
        }
        // Listeners gone, disabled or moved stop accepting; their connections stay.
        let keep = |r: &Running| {
            new.listeners.iter().any(|l| {
                l.enabled
                    && l.name == r.config.name
                    && l.address == r.config.address
                    && l.transport == r.config.transport
            })
        };
        for r in self.running.iter().filter(|r| !keep(r)) {
            applied.push(format!(
                "listener `{}` on {} removed: no new connections there",
                r.config.name, r.local
            ));
            r.stop.cancel();
        }
        self.running.retain(keep);
        for (socket, r) in added {
            self.shared.tracker.spawn(listener::accept_loop(
                socket,
                r.slot.clone(),
                r.stop.clone(),
                self.shared.clone(),
            ));
            self.running.push(r);
        }
        // The client sides in the new config's order; those unchanged kept as they were.
        if let Some(connector) = self.hub.connector() {
            let mut all = Vec::new();
            for r in &self.running {
                match sides.remove(&r.config.name) {
                    Some(s) => all.push(s),
                    None => {
                        if let Some(s) = connector.side_of(&r.config.name) {
                            all.push(s);
                        }
                    }
                }
            }
            connector.set_sides(all);
        }
        let mut bound: Vec<(String, SocketAddr)> = self
            .running
            .iter()
            .map(|r| (r.config.name.clone(), r.local))
            .collect();
        bound.extend(
            self.hub
                .listeners()
                .iter()
                .filter(|(n, _)| n == ENDPOINT_LISTENER)
                .cloned(),
        );
        self.hub.set_listeners(bound);
        self.config = new;
        Ok(Report {
            applied,
            restart_needed,
        })
    }
}

fn ensure_lab_pki(config: &Config) -> Result<(), StartError> {
    let dir = &config.certs.dir;
    let mut need = false;
    for (index, l) in config
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| l.enabled)
    {
        let Some(t) = &l.tls else { continue };
        for path in [&t.certificate, &t.key, &t.client_ca] {
            if path.exists() {
                continue;
            }
            if config.certs.auto_create && is_lab_file(dir, path) {
                need = true;
            } else {
                return Err(missing(index, l, path));
            }
        }
    }
    if !need {
        return Ok(());
    }
    let proxy_names: Vec<String> = config.proxy.fqdns.iter().map(ToString::to_string).collect();
    let sbc = config.sbc_certificate_names();
    let req = PkiRequest {
        dir,
        proxy_names: &proxy_names,
        sbc_fqdns: &sbc,
        force: false,
    };
    let report = certs::write_lab_pki(&req).map_err(|source| StartError::Certs {
        dir: dir.clone(),
        source: Box::new(source),
    })?;
    info!(
        dir = %dir.display(),
        sbc_certificates = report.sbcs.len(),
        "created the lab PKI (certificates were missing); an SBC trusts ca.pem and presents its <fqdn>.pem/.key"
    );
    Ok(())
}

fn is_lab_file(dir: &Path, path: &Path) -> bool {
    ["proxy.pem", "proxy.key", "ca.pem"]
        .iter()
        .any(|f| path == dir.join(f))
}

fn missing(index: usize, l: &Listener, path: &Path) -> StartError {
    StartError::MissingFile {
        index,
        name: l.name.clone(),
        path: path.to_owned(),
    }
}
