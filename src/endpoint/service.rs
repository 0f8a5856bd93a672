//! The endpoint side of the daemon: the socket SIP endpoints use (UDP and TCP on
//! `[endpoints] address`), their registrations, and how a call reaches them.
//!
//! REGISTER is answered here, through the registrar (digest authentication against the
//! user's `password`, throttled after repeated failures); every other message goes to the
//! transaction layer like the SBC's, with a UDP or TCP destination.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use bytes::BytesMut;
use tokio::net::{TcpListener, UdpSocket};
use tracing::{debug, info, warn};

use super::digest::{Authenticator, DigestConfig};
use super::registrar::{
    Aor, Credentials, RegisterResult, Registrar, RegistrarConfig, Rejection, RequestAuth,
    Transport, UserLookup,
};
use super::throttle::{Notice, Table, ThrottleConfig};
use crate::config::{Config, SipAddress};
use crate::directory::Directory;
use crate::sip::{Message, Method};
use crate::transport::udp::UdpFlow;

/// Why the endpoint side could not start.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("endpoints.address: cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("endpoints: {0}")]
    Registrar(String),
}

/// A place a call can ring: a registered (or static) contact and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The Request-URI of the INVITE.
    pub uri: String,
    /// Where to send it: the registration's source address (RFC 5626 style, works
    /// through NAT), or the static contact's host and port.
    pub addr: SocketAddr,
    pub transport: Transport,
}

/// Registrations of SIP endpoints, shared by the socket tasks and the calls.
pub struct Endpoints {
    registrar: Mutex<Registrar>,
    /// The bound UDP socket and TCP listener address.
    pub local: SocketAddr,
    /// The UDP socket requests to UDP endpoints leave from, and how the proxy names
    /// itself there (its IP address: lab phones need not resolve the proxy's names).
    pub udp: Arc<UdpFlow>,
}

impl Endpoints {
    pub fn new(config: &Config, udp: Arc<UdpFlow>) -> Result<Endpoints, EndpointError> {
        let local = udp.local;
        let digest = DigestConfig {
            algorithms: config.endpoints.digest_algorithms,
            ..DigestConfig::default()
        };
        let auth = Authenticator::new(digest, Instant::now())
            .map_err(|e| EndpointError::Registrar(e.to_string()))?;
        let cfg = RegistrarConfig {
            min_expires: config.endpoints.min_expires,
            max_expires: config.endpoints.max_expires,
            default_expires: config
                .endpoints
                .max_expires
                .min(3600)
                .max(config.endpoints.min_expires),
            aliases: vec![local.ip().to_string()],
            throttle: ThrottleConfig {
                failures: config.endpoints.auth_failures,
                window: config.endpoints.auth_window,
                lockout: config.endpoints.auth_lockout,
                ..ThrottleConfig::default()
            },
            ..RegistrarConfig::default()
        };
        let registrar = Registrar::new(cfg, auth, Instant::now(), SystemTime::now())
            .map_err(|e| EndpointError::Registrar(e.to_string()))?;
        Ok(Endpoints {
            registrar: Mutex::new(registrar),
            local,
            udp,
        })
    }

    /// Answers a REGISTER; the response goes back where the request came from.
    pub fn register(
        &self,
        dir: &Directory,
        msg: &Message<'_>,
        source: SocketAddr,
        transport: Transport,
    ) -> BytesMut {
        let (outcome, notices) = {
            let mut reg = self.lock();
            let outcome =
                reg.handle_register(msg, source, transport, Instant::now(), &DirectoryUsers(dir));
            (outcome, drain_notices(&mut reg))
        };
        log_notices(notices);
        match &outcome.result {
            RegisterResult::Updated { aor, .. } => {
                info!(aor = %aor_text(aor), %source, status = outcome.status, "REGISTER accepted")
            }
            RegisterResult::Challenged(why) => debug!(%source, ?why, "REGISTER challenged"),
            // Said once when the lock began; not once per refused request.
            RegisterResult::Rejected(r @ Rejection::Throttled(_)) => {
                debug!(%source, reason = %r, "REGISTER refused unread")
            }
            other => {
                crate::warn_limited!(%source, status = outcome.status, result = ?other, "REGISTER refused")
            }
        }
        outcome.response
    }

    /// Authenticates an endpoint's INVITE as its From user (DR-OUT-1), challenged like a
    /// REGISTER: `Ok` with the user's address, or `Err` with the response to send (407
    /// with challenges, 403 when locked or another user, 400 for unusable credentials).
    pub fn authenticate(
        &self,
        dir: &Directory,
        msg: &Message<'_>,
        source: SocketAddr,
    ) -> Result<SipAddress, BytesMut> {
        let (outcome, notices) = {
            let mut reg = self.lock();
            let outcome =
                reg.authenticate_request(msg, source, Instant::now(), &DirectoryUsers(dir));
            (outcome, drain_notices(&mut reg))
        };
        log_notices(notices);
        match outcome {
            RequestAuth::Authenticated(aor) => Ok(SipAddress {
                user: aor.user().to_owned(),
                domain: aor.domain().to_owned(),
            }),
            RequestAuth::Challenged { reason, response } => {
                debug!(%source, ?reason, "INVITE challenged (407)");
                Err(response)
            }
            RequestAuth::Refused { status, response } => {
                crate::warn_limited!(%source, status, "INVITE from an endpoint refused");
                Err(response)
            }
        }
    }

    /// Every registered contact of a user (one per RFC 5626 instance).
    pub fn targets(&self, user: &SipAddress) -> Vec<Target> {
        let aor = Aor::new(&user.user, &user.domain);
        let reg = self.lock();
        reg.targets(&aor, Instant::now())
            .into_iter()
            .map(|b| Target {
                uri: b.contact_uri.clone(),
                addr: b.source,
                transport: b.transport,
            })
            .collect()
    }

    /// Drops expired registrations and ends throttle locks that are over; called by a
    /// periodic task.
    pub fn expire(&self) {
        let (gone, notices) = {
            let mut reg = self.lock();
            let gone = reg.expire(Instant::now());
            (gone, drain_notices(&mut reg))
        };
        log_notices(notices);
        for (aor, b) in gone {
            debug!(aor = %aor_text(&aor), contact = %b.contact_uri, "registration expired");
        }
    }

    /// Whether a registration lives on the TCP connection from `peer`.
    pub fn registered_over(&self, peer: SocketAddr) -> bool {
        self.lock()
            .has_binding_from(peer, Transport::Tcp, Instant::now())
    }

    /// A TCP connection closed: its registrations cannot be reached any more.
    pub fn flow_closed(&self, peer: SocketAddr) {
        self.lock().flow_closed(peer, Transport::Tcp);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registrar> {
        // Registrar operations are single steps on a map; a poisoned lock is consistent.
        self.registrar.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn aor_text(aor: &Aor) -> String {
    format!("{}@{}", aor.user(), aor.domain())
}

/// The throttle's notices so far (none, almost always: no allocation then).
fn drain_notices(reg: &mut Registrar) -> Vec<Notice> {
    std::iter::from_fn(|| reg.poll_notice()).collect()
}

/// The throttle's notices, logged outside the registrar's lock: one WARN when a key locks,
/// one INFO when its lock ends.
fn log_notices(notices: Vec<Notice>) {
    for n in notices {
        match n {
            Notice::Locked {
                key,
                failures,
                window,
                lockout,
            } => warn!(
                locked = %key,
                failures,
                window_s = window.as_secs_f64(),
                lockout_s = lockout.as_secs_f64(),
                "too many failed digest authentications: locked, refused with 403 until the lockout ends"
            ),
            Notice::Unlocked { key, refused } => {
                info!(locked = %key, refused, "digest authentication lockout over")
            }
            Notice::Full(table) => warn!(
                table = match table {
                    Table::Addresses => "addresses",
                    Table::Users => "users",
                },
                "digest throttle table full of locks: new keys are not tracked until one ends"
            ),
        }
    }
}

/// The registrar's view of the directory: users with a password, in the tenant that
/// owns the AOR's domain.
struct DirectoryUsers<'a>(&'a Directory);

impl UserLookup for DirectoryUsers<'_> {
    type Identity = ();

    fn serves_domain(&self, domain: &str) -> bool {
        self.0.tenant_by_domain(domain).is_some()
    }

    fn lookup(&self, aor: &Aor) -> Option<Credentials<'_, ()>> {
        let tenant = self.0.tenant_by_domain(aor.domain())?;
        let address = SipAddress {
            user: aor.user().to_owned(),
            domain: aor.domain().to_owned(),
        };
        let user = self.0.user_by_address(tenant, &address)?;
        Some(Credentials {
            password: user.password.as_deref()?,
            identity: (),
        })
    }
}

/// Binds the endpoint listener: one UDP socket and one TCP listener on the same address.
/// With port 0 the UDP port is chosen first and TCP takes the same number; when that
/// number is taken for TCP, a new pair is tried.
pub async fn bind(address: SocketAddr) -> Result<(UdpSocket, TcpListener), EndpointError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let udp = UdpSocket::bind(address)
            .await
            .map_err(|source| EndpointError::Bind { address, source })?;
        let bound = udp
            .local_addr()
            .map_err(|source| EndpointError::Bind { address, source })?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e)
                if address.port() == 0
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && attempts < 20 =>
            {
                continue
            }
            Err(source) => {
                return Err(EndpointError::Bind {
                    address: bound,
                    source,
                })
            }
        }
    }
}

/// A static contact of the config (`sip:user@ip:port`, UDP unless `transport=tcp`): a
/// lab phone or sipp that does not register.
pub fn static_target(contact: &str) -> Option<Target> {
    let uri = crate::sip::Uri::parse(contact).ok()?;
    let ip = uri.host()?.ip()?;
    let transport = match uri.param("transport").and_then(|p| p.value) {
        Some(t) if t.eq_ignore_ascii_case("tcp") => Transport::Tcp,
        _ => Transport::Udp,
    };
    Some(Target {
        uri: contact.to_owned(),
        addr: SocketAddr::new(ip, uri.port().unwrap_or(5060)),
        transport,
    })
}

/// Whether a request from an endpoint is answered here rather than by a transaction.
pub fn is_local(msg: &Message<'_>) -> bool {
    matches!(msg.method(), Some(Method::Register))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_contacts_are_ip_and_port() {
        let t = static_target("sip:alice@192.0.2.7:5080;transport=tcp").unwrap();
        assert_eq!(t.addr, "192.0.2.7:5080".parse().unwrap());
        assert_eq!(t.transport, Transport::Tcp);
        assert_eq!(
            static_target("sip:alice@192.0.2.7").unwrap().transport,
            Transport::Udp
        );
        assert!(static_target("sip:alice@phone.example").is_none());
    }
}
