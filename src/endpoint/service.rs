//! The endpoint side of the daemon: the socket SIP endpoints use (UDP and TCP on
//! `[endpoints] address`), their registrations, and how a call reaches them.
//!
//! REGISTER is answered here, through the registrar (digest authentication against the
//! user's `password`); every other message goes to the transaction layer like the SBC's,
//! with a UDP or TCP destination.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use tokio::net::{TcpListener, UdpSocket};
use tracing::{debug, info, warn};

use super::digest::{Authenticator, DigestConfig};
use super::registrar::{
    Aor, Credentials, RegisterResult, Registrar, RegistrarConfig, Transport, UserLookup,
};
use crate::config::{Config, SipAddress};
use crate::directory::Directory;
use crate::sip::{Message, Method, ParseError, Status};

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
    /// The UDP socket requests to UDP endpoints leave from.
    pub udp: Arc<UdpSocket>,
}

impl Endpoints {
    pub fn new(config: &Config, udp: Arc<UdpSocket>) -> Result<Endpoints, EndpointError> {
        let local = udp.local_addr().map_err(|source| EndpointError::Bind {
            address: config
                .endpoints
                .address
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
            source,
        })?;
        let auth = Authenticator::new(DigestConfig::default(), Instant::now())
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
        let outcome = self.lock().handle_register(
            msg,
            source,
            transport,
            Instant::now(),
            &DirectoryUsers(dir),
        );
        match &outcome.result {
            RegisterResult::Updated { aor, .. } => {
                info!(aor = %aor_text(aor), %source, status = outcome.status, "REGISTER accepted")
            }
            RegisterResult::Challenged(why) => debug!(%source, ?why, "REGISTER challenged"),
            other => warn!(%source, status = outcome.status, result = ?other, "REGISTER refused"),
        }
        outcome.response
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

    /// Drops expired registrations; called by a periodic task.
    pub fn expire(&self) {
        let gone = self.lock().expire(Instant::now());
        for (aor, b) in gone {
            debug!(aor = %aor_text(&aor), contact = %b.contact_uri, "registration expired");
        }
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
pub async fn bind(address: SocketAddr) -> Result<(Arc<UdpSocket>, TcpListener), EndpointError> {
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
            Ok(tcp) => return Ok((Arc::new(udp), tcp)),
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

/// Frames one UDP datagram (RFC 3261 §18.3): Content-Length when present; without it the
/// body is the rest of the datagram, which the stream parser cannot express, so the header
/// is added to a copy (a cold path: SIP UAs send Content-Length on UDP too).
pub fn frame_datagram(datagram: &[u8]) -> Result<Bytes, ParseError> {
    let limits = crate::sip::Limits::default();
    match Message::parse(datagram, &limits) {
        Ok(Status::Complete(m)) => Ok(Bytes::copy_from_slice(&datagram[..m.len()])),
        Ok(Status::Partial) => Err(ParseError::BodyTooLarge),
        Err(ParseError::MissingContentLength) => {
            let end = memchr::memmem::find(datagram, b"\r\n\r\n")
                .ok_or(ParseError::MissingContentLength)?;
            let body = &datagram[end + 4..];
            let mut out = Vec::with_capacity(datagram.len() + 24);
            out.extend_from_slice(&datagram[..end + 2]);
            out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            out.extend_from_slice(body);
            Ok(Bytes::from(out))
        }
        Err(e) => Err(e),
    }
}

/// Whether a request from an endpoint is answered here rather than by a transaction.
pub fn is_local(msg: &Message<'_>) -> bool {
    matches!(msg.method(), Some(Method::Register))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagram_without_content_length_gets_the_rest_as_body() {
        let d = b"MESSAGE sip:a@b.c SIP/2.0\r\nVia: SIP/2.0/UDP h.c;branch=z9hG4bK1\r\n\r\nhello";
        let framed = frame_datagram(d).unwrap();
        let Ok(Status::Complete(m)) = Message::parse(&framed, &crate::sip::Limits::default())
        else {
            panic!("framed datagram parses")
        };
        assert_eq!(m.body(), b"hello");
    }

    #[test]
    fn datagram_extra_bytes_after_content_length_are_dropped() {
        let d = b"OPTIONS sip:a@b.c SIP/2.0\r\nContent-Length: 2\r\n\r\nhiJUNK";
        assert_eq!(frame_datagram(d).unwrap().len(), d.len() - 4);
    }
}
