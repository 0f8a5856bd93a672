//! The proxy's own connections to SBCs (DR-TLS-4, DR-NH-5): requests drhub originates
//! (OPTIONS, BYE, re-INVITE ...) go over any open connection to the SBC, inbound or
//! outbound, or over a new one this module opens: TCP to the trunk's `address` (a lab
//! has no DNS) or to what the system resolver says of its FQDN, then TLS presenting the
//! proxy certificate of a listener, sending SNI, and verifying the SBC's certificate
//! chain and name. The new connection then runs the same stream loop as an accepted
//! one, so the SBC's requests and responses on it reach the front door as usual.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::{info, warn};

use super::listener::{spawn_flow, Shared};
use super::stream::StreamLimits;
use super::tls::PeerIdentity;
use super::{Direction, Dispatch, FlowHandle, FlowId, FlowInfo, Transport};
use crate::diagnostics::Diagnostic;
use crate::sip::LocalIdentity;

/// Where a request for an SBC should go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The SBC's trunk FQDN: the TLS name its certificate must carry, and the key open
    /// connections are found by.
    pub sbc: String,
    /// The host to connect to when no connection is open (DR-NH-1: the top Route's or the
    /// Contact's FQDN; DR-NH-2: the trunk FQDN for OPTIONS).
    pub host: String,
    pub port: u16,
    /// The trunk's `address`: connect here instead of resolving `host`.
    pub address: Option<SocketAddr>,
    pub transport: Transport,
    /// A plain-TCP SBC (DR-TLS-5) is known by its address, not by a certificate: open
    /// connections from this IP address are reused.
    pub insecure_ip: Option<IpAddr>,
}

/// Why no connection to an SBC could be had; each maps to a 504 diagnostic of the
/// Direct Routing catalogue so the call and the log say what failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("{0} resolves to no address")]
    NoAddress(String),
    #[error("no certificate to present: no TLS listener is configured")]
    NoCertificate,
    #[error("connection to {addr} refused")]
    Refused { addr: SocketAddr },
    #[error("connection to {addr} timed out after {after:?}")]
    TimedOut { addr: SocketAddr, after: Duration },
    #[error("connection to {addr} failed: {reason}")]
    Io { addr: SocketAddr, reason: String },
    #[error("TLS to {addr} failed: the SBC certificate is not acceptable for {name}: {reason}")]
    Certificate {
        addr: SocketAddr,
        name: String,
        reason: String,
    },
    #[error("TLS to {addr} failed: {reason}")]
    Tls { addr: SocketAddr, reason: String },
    #[error("TLS name {0} is not a valid DNS name")]
    BadName(String),
    #[error("shutting down")]
    ShuttingDown,
}

impl ConnectError {
    /// The catalogue entry the failure is reported with (504 family, DR-NH-5).
    pub fn diagnostic(&self) -> Diagnostic {
        match self {
            ConnectError::Resolve { .. }
            | ConnectError::NoAddress(_)
            | ConnectError::NoCertificate
            | ConnectError::BadName(_)
            | ConnectError::ShuttingDown => Diagnostic::NotConnected,
            ConnectError::Refused { .. }
            | ConnectError::TimedOut { .. }
            | ConnectError::Io { .. } => Diagnostic::ConnectFailed,
            ConnectError::Tls { .. } => Diagnostic::TlsFailed,
            ConnectError::Certificate { .. } => Diagnostic::TlsCertificate,
        }
    }
}

/// The TLS client side of one listener: its certificate and how the proxy names itself.
#[derive(Clone)]
pub struct ClientSide {
    pub listener: String,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub proxy: LocalIdentity,
}

/// Opens (or finds) connections to SBCs. One per daemon.
pub struct Connector {
    shared: Shared,
    dispatch: Arc<dyn Dispatch>,
    limits: StreamLimits,
    timeout: Duration,
    /// By listener name; the first TLS one presents the certificate when the caller has
    /// no preference. A reload replaces them with the listeners.
    sides: arc_swap::ArcSwap<Vec<ClientSide>>,
    /// One connect at a time per SBC: a burst of BYEs to an SBC that has no connection
    /// opens one connection, not one each.
    pending: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Connector {
    pub fn new(
        shared: Shared,
        dispatch: Arc<dyn Dispatch>,
        limits: StreamLimits,
        timeout: Duration,
        sides: Vec<ClientSide>,
    ) -> Connector {
        Connector {
            shared,
            dispatch,
            limits,
            timeout,
            sides: arc_swap::ArcSwap::from_pointee(sides),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// An open connection to the SBC, or a new one (DR-TLS-4). `listener` says whose
    /// certificate and identity to use when a connection must be opened (the listener
    /// the dialog started on); `None` takes the first TLS listener.
    pub async fn find_or_connect(
        &self,
        target: &Target,
        listener: Option<&str>,
    ) -> Result<FlowHandle, ConnectError> {
        if let Some(f) = self.find(target) {
            return Ok(f);
        }
        let key = format!("{}/{}", target.sbc.to_ascii_lowercase(), target.transport);
        let gate = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.entry(key.clone()).or_default().clone()
        };
        let result = {
            let _turn = gate.lock().await;
            // Someone else may have connected while we waited.
            match self.find(target) {
                Some(f) => Ok(f),
                None => self.connect(target, listener).await,
            }
        };
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if Arc::strong_count(&gate) <= 2 {
            pending.remove(&key);
        }
        result
    }

    /// An open connection to the SBC, if any.
    pub fn find(&self, target: &Target) -> Option<FlowHandle> {
        match (target.transport, target.insecure_ip) {
            (Transport::Tls, _) => self.shared.flows.find_by_name(&target.sbc),
            (_, Some(ip)) => self.shared.flows.find_insecure(ip),
            _ => None,
        }
    }

    /// The listener a new connection over `transport` would use, preferring `listener`,
    /// and how drhub names itself on it: for requests built before a connection exists.
    pub fn identity(
        &self,
        listener: Option<&str>,
        transport: Transport,
    ) -> Option<(String, LocalIdentity)> {
        self.side(listener, transport)
            .map(|s| (s.listener, s.proxy))
    }

    /// The client side of a listener, by name.
    pub fn side_of(&self, listener: &str) -> Option<ClientSide> {
        self.sides
            .load()
            .iter()
            .find(|s| s.listener == listener)
            .cloned()
    }

    /// The listeners' client sides after a reload.
    pub fn set_sides(&self, sides: Vec<ClientSide>) {
        self.sides.store(Arc::new(sides));
    }

    fn side(&self, listener: Option<&str>, transport: Transport) -> Option<ClientSide> {
        let sides = self.sides.load();
        let fits = |s: &&ClientSide| s.proxy.transport() == transport;
        listener
            .and_then(|l| sides.iter().filter(fits).find(|s| s.listener == l))
            .or_else(|| sides.iter().find(fits))
            .cloned()
    }

    async fn connect(
        &self,
        target: &Target,
        listener: Option<&str>,
    ) -> Result<FlowHandle, ConnectError> {
        if self.shared.stop_accepting.is_cancelled() {
            return Err(ConnectError::ShuttingDown);
        }
        let side = self
            .side(listener, target.transport)
            .ok_or(ConnectError::NoCertificate)?
            .clone();
        let addr = self.resolve(target).await?;
        let tcp = match tokio::time::timeout(self.timeout, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(ConnectError::TimedOut {
                    addr,
                    after: self.timeout,
                })
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(ConnectError::Refused { addr })
            }
            Ok(Err(e)) => {
                return Err(ConnectError::Io {
                    addr,
                    reason: e.to_string(),
                })
            }
            Ok(Ok(tcp)) => tcp,
        };
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().map_err(|e| ConnectError::Io {
            addr,
            reason: e.to_string(),
        })?;
        let info = |identity| {
            Arc::new(FlowInfo {
                id: FlowId::next(),
                peer: addr,
                local,
                listener: side.listener.clone(),
                proxy: side.proxy.clone(),
                transport: target.transport,
                direction: Direction::Outbound,
                identity,
            })
        };
        let handle = match &side.tls {
            Some(config) => {
                let name = ServerName::try_from(target.sbc.clone())
                    .map_err(|_| ConnectError::BadName(target.sbc.clone()))?;
                let connector = TlsConnector::from(config.clone());
                let tls =
                    match tokio::time::timeout(self.timeout, connector.connect(name, tcp)).await {
                        Err(_) => {
                            return Err(ConnectError::Tls {
                                addr,
                                reason: format!("handshake timed out after {:?}", self.timeout),
                            })
                        }
                        Ok(Err(e)) => return Err(tls_error(addr, &target.sbc, e)),
                        Ok(Ok(tls)) => tls,
                    };
                let identity = match PeerIdentity::of_peer(tls.get_ref().1) {
                    Some(Ok(id)) => Arc::new(id),
                    _ => {
                        return Err(ConnectError::Certificate {
                            addr,
                            name: target.sbc.clone(),
                            reason: "no readable server certificate".into(),
                        })
                    }
                };
                info!(%addr, sbc = %target.sbc, cert.names = %identity.names().collect::<Vec<_>>().join(","), "connected to the SBC (TLS)");
                spawn_flow(
                    tls,
                    info(Some(identity)),
                    self.dispatch.clone(),
                    self.limits.clone(),
                    &self.shared,
                )
            }
            None => {
                info!(%addr, sbc = %target.sbc, "connected to the SBC (plain TCP, DR-TLS-5)");
                spawn_flow(
                    tcp,
                    info(None),
                    self.dispatch.clone(),
                    self.limits.clone(),
                    &self.shared,
                )
            }
        };
        Ok(handle)
    }

    async fn resolve(&self, target: &Target) -> Result<SocketAddr, ConnectError> {
        if let Some(a) = target.address {
            return Ok(a);
        }
        let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
        let mut addrs = match tokio::time::timeout(self.timeout, lookup).await {
            Ok(r) => r.map_err(|e| ConnectError::Resolve {
                host: target.host.clone(),
                reason: e.to_string(),
            })?,
            Err(_) => {
                return Err(ConnectError::Resolve {
                    host: target.host.clone(),
                    reason: format!("no answer from the resolver within {:?}", self.timeout),
                })
            }
        };
        addrs
            .next()
            .ok_or_else(|| ConnectError::NoAddress(target.host.clone()))
    }
}

/// Sorts a failed handshake: the SBC's certificate refused by us (569008), or the
/// handshake failing otherwise, the SBC resetting or refusing ours included (569003).
fn tls_error(addr: SocketAddr, name: &str, e: std::io::Error) -> ConnectError {
    let inner = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .cloned();
    match inner {
        Some(rustls::Error::InvalidCertificate(c)) => ConnectError::Certificate {
            addr,
            name: name.to_owned(),
            reason: format!("{c:?}"),
        },
        Some(other) => ConnectError::Tls {
            addr,
            reason: other.to_string(),
        },
        None => {
            warn!(%addr, error = %e, "TLS handshake failed");
            ConnectError::Tls {
                addr,
                reason: e.to_string(),
            }
        }
    }
}
