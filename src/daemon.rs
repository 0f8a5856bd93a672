//! Assembly only: certificates, sockets, the shared hub, the front door, the router and
//! the transaction layer's task; then serving until shutdown and draining within a
//! bounded grace period.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

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
    listening: Vec<(TcpListener, Listening)>,
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
        let tap = Arc::new(Tap::with_trace(trace, untraced, ladders.clone()));
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
            ladders,
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
        let sbc_gate = Arc::new(Gate::new(
            "SBC listeners",
            config.limits.max_connections,
            config.limits.max_connections_per_address,
        ));
        let style = hub.style();
        let mut listening = Vec::new();
        let mut addrs = Vec::new();
        let mut sides = Vec::new();
        for (index, l) in config
            .listeners
            .iter()
            .enumerate()
            .filter(|(_, l)| l.enabled)
        {
            let (tls, client) = match &l.tls {
                Some(t) => {
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
                    (Some(TlsAcceptor::from(server_cfg)), Some(client_cfg))
                }
                None => (None, None),
            };
            let socket = TcpListener::bind(l.address)
                .await
                .map_err(|source| StartError::Bind {
                    index,
                    name: l.name.clone(),
                    address: l.address,
                    source,
                })?;
            let local = socket.local_addr().map_err(|source| StartError::Bind {
                index,
                name: l.name.clone(),
                address: l.address,
                source,
            })?;
            info!(listener = %l.name, transport = %l.transport, address = %local, fqdn = %l.fqdn, "listening");
            if l.transport == Transport::Tcp {
                warn!(listener = %l.name, "plain TCP listener enabled: only trunks with allow_insecure = true are served there");
            }
            let proxy = LocalIdentity::new(
                l.fqdn.as_str(),
                local.port(),
                l.transport,
                server.clone(),
                style,
            );
            sides.push(ClientSide {
                listener: l.name.clone(),
                tls: client,
                proxy: proxy.clone(),
            });
            addrs.push((l.name.clone(), local));
            listening.push((
                socket,
                Listening {
                    name: l.name.clone(),
                    dispatch: front_door.clone(),
                    proxy,
                    tls,
                    limits: limits.clone(),
                    handshake_timeout: config.limits.handshake_timeout,
                    gate: sbc_gate.clone(),
                    fault: hub.datacenters.watch(&l.name),
                },
            ));
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
            listening.push((
                tcp,
                Listening {
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
                },
            ));
        }
        let api = match config.api.address {
            Some(address) => {
                let bind_err = |source| StartError::ApiBind { address, source };
                let socket = TcpListener::bind(address).await.map_err(bind_err)?;
                let local = socket.local_addr().map_err(bind_err)?;
                info!(address = %local, "control API listening (http://{local}/api/status)");
                addrs.push(("api".to_owned(), local));
                Some(socket)
            }
            None => None,
        };
        let (router_tx, router_rx) = mpsc::channel(ROUTER_QUEUE);
        hub.set_router(router_tx.clone());
        let router = Router::new(hub.clone(), router_rx, flow_rx);
        Ok(Daemon {
            config,
            listening,
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
        for (socket, l) in self.listening {
            tracker.spawn(listener::accept_loop(socket, l, shared.clone()));
        }
        if let Some(socket) = self.api {
            let listeners: Vec<_> = self
                .addrs
                .iter()
                .filter(|(n, _)| n != "api")
                .cloned()
                .collect();
            tracker.spawn(crate::api::serve(
                socket,
                self.hub.clone(),
                listeners,
                shared.close_connections.clone(),
            ));
        }
        let layer_task = tokio::spawn(drive_layer(self.layer, self.hub.clone(), self.router_tx));
        let router_stop = CancellationToken::new();
        let router_task = tokio::spawn(self.router.run(router_stop.clone()));
        // DR-OUT-1: calls users place on their own.
        tracker.spawn(crate::call::place::run_scheduled(
            self.hub.clone(),
            shared.close_connections.clone(),
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
        shutdown.cancelled().await;
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
