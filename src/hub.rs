//! The shared state of a running daemon: configuration, directory, SBC health, live
//! calls, flows, the transaction layer's input, the endpoint registrar, the outbound
//! connector and the counters. The front door, the router, calls, health checks and
//! (later) the API read it; no layer imports another to get at it.

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;

use crate::call::CallTable;
use crate::config::{Config, Profile};
use crate::directory::Directory;
use crate::endpoint::service::Endpoints;
use crate::health::{Health, Timing};
use crate::overload::StandingDelay;
use crate::sdp::MediaConfig;
use crate::sip::build::Style;
use crate::transaction::{CoreEvent, LayerHandle};
use crate::transport::connect::Connector;
use crate::transport::datacenter::Datacenters;
use crate::transport::{Destination, Flows};

pub use crate::transport::ENDPOINT_LISTENER;

/// Counters for status and tests; relaxed atomics, never a lock on the hot path.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub options_ok: AtomicU64,
    pub rejected: AtomicU64,
    pub malformed: AtomicU64,
    /// New INVITEs refused at the door because the daemon was past its knee (DR-ERR-1).
    pub shed: AtomicU64,
}

/// See the module docs.
pub struct Hub {
    /// `[proxy] server`: the Server and User-Agent drhub's messages carry (a restart
    /// changes it, not a reload).
    pub server: Box<str>,
    /// `[proxy] ms_diagnostics` (a restart changes it, not a reload).
    pub ms_diagnostics: bool,
    /// The configuration new calls use; swapped by a reload ([`Hub::apply`]).
    config: ArcSwap<Config>,
    /// The tenants, users, numbers and trunks of [`Hub::config`], indexed.
    directory: ArcSwap<Directory>,
    pub health: Health,
    pub flows: Arc<Flows>,
    pub layer: LayerHandle<Destination>,
    /// SIP endpoints' registrations; `None` when `[endpoints] address = "off"`.
    pub endpoints: Option<Arc<Endpoints>>,
    pub calls: Arc<CallTable>,
    /// SBCs out of outbound rotation after a 503 with Retry-After (DR-OUT-3).
    pub rotation: crate::call::outbound::Rotation,
    /// The settings a new call takes (and keeps for its life), made from the config.
    call_settings: ArcSwap<crate::call::CallSettings>,
    pub counters: Counters,
    /// The last calls' SIP for the status page's ladder diagrams (fed by the tap).
    pub ladders: Arc<crate::observe::ladder::Ladders>,
    /// Where every SIP byte passes: the trace, the ladders, the wire log.
    pub tap: Arc<crate::transport::Tap>,
    /// What each SBC broke or nearly broke (DR-CONF).
    pub conformance: crate::observe::conformance::Conformance,
    pub media: Arc<MediaConfig>,
    connector: OnceLock<Arc<Connector>>,
    next_port: AtomicU16,
    draining: AtomicBool,
    /// How late the runtime's lag probe wakes, as a delay that stands: how long a task
    /// that is ready waits for a thread (see [`Hub::overload`]).
    pub runtime_lag: StandingDelay,
    /// The emulated datacenters, one per SBC listener, and their fault modes (DR-DC-1).
    pub datacenters: Datacenters,
    /// Every listener's name and bound address (SBC listeners and the endpoint
    /// listener), as the status API lists them; a reload changes them.
    listeners: ArcSwap<Vec<(String, std::net::SocketAddr)>>,
    /// How the API and `SIGHUP` ask the daemon to reload; set when it serves.
    reload: OnceLock<crate::reload::Handle>,
    /// The router's queue, to see how full it is.
    router: OnceLock<tokio::sync::mpsc::Sender<CoreEvent<Destination>>>,
}

impl Hub {
    pub fn new(
        config: Arc<Config>,
        flows: Arc<Flows>,
        layer: LayerHandle<Destination>,
        endpoints: Option<Arc<Endpoints>>,
        tap: Arc<crate::transport::Tap>,
    ) -> Hub {
        let mut media = MediaConfig::new(config.media.address);
        media.port_min = config.media.port_min;
        media.port_max = config.media.port_max;
        Hub {
            directory: ArcSwap::from_pointee(Directory::new(&config.tenants)),
            health: Health::new(Timing {
                interval: config.health.options_interval,
                active_window: config.health.active_window,
                inactive_after: config.health.inactive_after,
            }),
            flows,
            layer,
            endpoints,
            calls: Arc::new(CallTable::default()),
            rotation: Default::default(),
            call_settings: ArcSwap::from_pointee(crate::call::CallSettings::new(&config)),
            counters: Counters::default(),
            conformance: Default::default(),
            ladders: tap.ladders().clone(),
            tap,
            next_port: AtomicU16::new(even(config.media.port_min)),
            media: Arc::new(media),
            connector: OnceLock::new(),
            draining: AtomicBool::new(false),
            runtime_lag: StandingDelay::default(),
            datacenters: Datacenters::new(
                config
                    .listeners
                    .iter()
                    .filter(|l| l.enabled)
                    .map(|l| l.name.as_str()),
            ),
            router: OnceLock::new(),
            listeners: ArcSwap::from_pointee(Vec::new()),
            reload: OnceLock::new(),
            server: config.proxy.server.as_str().into(),
            ms_diagnostics: config.proxy.ms_diagnostics,
            config: ArcSwap::new(config),
        }
    }

    /// The configuration as it is now: what a new call, OPTIONS or API request uses.
    /// A call keeps what it took at its start (its settings, its routing decisions).
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// The directory of [`Hub::config`]. A lookup and the use of its result (a
    /// [`crate::directory::TenantId`] is an index) must go through one snapshot.
    pub fn directory(&self) -> Arc<Directory> {
        self.directory.load_full()
    }

    /// The call settings a new call takes.
    pub fn call_settings(&self) -> Arc<crate::call::CallSettings> {
        self.call_settings.load_full()
    }

    /// Makes `config` the one new work uses (a reload): its directory and call settings
    /// with it, and a datacenter for every listener it adds. The sections only a
    /// restart applies (see [`crate::reload`]) keep what the daemon started with.
    pub fn apply(&self, config: Arc<Config>) {
        self.directory
            .store(Arc::new(Directory::new(&config.tenants)));
        self.call_settings
            .store(Arc::new(crate::call::CallSettings::new(&config)));
        self.datacenters.retain(
            config
                .listeners
                .iter()
                .filter(|l| l.enabled)
                .map(|l| l.name.as_str()),
        );
        self.config.store(config);
    }

    /// Every listener's name and bound address.
    pub fn listeners(&self) -> Arc<Vec<(String, std::net::SocketAddr)>> {
        self.listeners.load_full()
    }

    pub fn set_listeners(&self, listeners: Vec<(String, std::net::SocketAddr)>) {
        self.listeners.store(Arc::new(listeners));
    }

    pub fn set_reload(&self, handle: crate::reload::Handle) {
        let _ = self.reload.set(handle);
    }

    /// Re-reads the config file (see [`crate::reload`]).
    pub async fn reload(&self) -> Result<crate::reload::Report, crate::reload::Error> {
        match self.reload.get() {
            Some(h) => h.reload().await,
            None => Err(crate::reload::Error::Stopping),
        }
    }

    /// The outbound connector; set once by the daemon when its sockets exist.
    pub fn set_connector(&self, c: Arc<Connector>) {
        let _ = self.connector.set(c);
    }

    /// `None` only before the daemon serves (and in unit tests without sockets).
    pub fn connector(&self) -> Option<&Arc<Connector>> {
        self.connector.get()
    }

    /// Shutdown has begun: new calls are refused with 503 (DR-ERR-1).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// DR-ERR-1, measured where the work waits: why a new INVITE must be refused now
    /// (with `503` and `Retry-After`, before any state is kept for it), or `None`. The
    /// daemon is past its knee when the transaction layer, which every message crosses,
    /// has fallen `limits.overload_queue_delay_ms` behind; when tasks that are ready to
    /// run (connections, calls) wait that long for a thread; or when the router's queue
    /// is half full. Calls already admitted go on: only new INVITEs are turned away.
    pub fn overload(&self) -> Option<&'static str> {
        let load = self.layer.load();
        let limit = self.config().limits.overload_queue_delay;
        if load.queued() > 0 && load.delay() > limit {
            return Some("transaction layer queue delay over limits.overload_queue_delay_ms");
        }
        if self.runtime_lag.get() > limit {
            return Some("tasks wait for a thread longer than limits.overload_queue_delay_ms");
        }
        if let Some(router) = self.router.get() {
            if router.capacity() < router.max_capacity() / 2 {
                return Some("router queue half full");
            }
        }
        None
    }

    /// The router's queue; set once by the daemon.
    pub fn set_router(&self, tx: tokio::sync::mpsc::Sender<CoreEvent<Destination>>) {
        let _ = self.router.set(tx);
    }

    /// Header style of the responses the proxy answers itself (DR-OPT-1).
    pub fn style(&self) -> Style {
        match self.config().proxy.profile {
            Profile::Faithful => Style::Faithful,
            Profile::Rfc3261 => Style::Rfc3261,
        }
    }

    /// An even RTP port from the configured range, round robin. No socket is opened:
    /// drhub emulates signalling; the port only has to look real.
    pub fn media_port(&self) -> u16 {
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
