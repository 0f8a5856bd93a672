//! What the proxy does with each message an SBC sends: RFC 3261 validity first
//! (DR-ERR-3), then the Direct Routing checks of [`crate::policy`], then the method's
//! own handling. Every rejection leaves through [`Proxy::reject`], which writes the
//! `Reason` and `ms-diagnostics` headers (DR-VAL-8) and logs the same facts once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tracing::{debug, info, warn};

use crate::config::{Config, Profile};
use crate::diagnostics::{correlation_id, Diagnostic, Rejection};
use crate::directory::Directory;
use crate::health::{Health, OptionsSeen};
use crate::policy::{self, PeerAuth, SUPPORTED_OPTIONS};
use crate::sip::build::{ResponseWriter, Style};
use crate::sip::{HeaderName, Message, Method, ParseError};
use crate::transport::{Dispatch, FlowInfo, Flows, Handled};

/// The methods the proxy advertises, as the real service does (DR-OPT-1).
pub const ALLOW: &str = "INVITE,ACK,OPTIONS,CANCEL,BYE,NOTIFY";

/// Counters for status and tests; relaxed atomics, never a lock on the hot path.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub options_ok: AtomicU64,
    pub rejected: AtomicU64,
    pub malformed: AtomicU64,
}

/// The SBC-facing proxy: owns the directory and the per-SBC health records.
pub struct Proxy {
    config: Arc<Config>,
    directory: Directory,
    health: Health,
    flows: Arc<Flows>,
    draining: AtomicBool,
    pub counters: Counters,
}

impl Proxy {
    pub fn new(config: Arc<Config>, flows: Arc<Flows>) -> Proxy {
        Proxy {
            directory: Directory::new(&config.tenants),
            config,
            health: Health::default(),
            flows,
            draining: AtomicBool::new(false),
            counters: Counters::default(),
        }
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    pub fn flows(&self) -> &Flows {
        &self.flows
    }

    /// Shutdown has begun: new calls are refused with 503 (DR-ERR-1).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Resolves when no work is in progress (no calls up); the drain waits on it.
    pub async fn idle(&self) {}

    fn style(&self) -> Style {
        match self.config.proxy.profile {
            Profile::Faithful => Style::Faithful,
            Profile::Rfc3261 => Style::Rfc3261,
        }
    }

    fn on_request(
        &self,
        flow: &FlowInfo,
        msg: &Message<'_>,
        method: Method<'_>,
        out: &mut BytesMut,
    ) {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        if let Err(invalid) = msg.check_request() {
            self.counters.malformed.fetch_add(1, Ordering::Relaxed);
            let d = match invalid.status {
                505 => Diagnostic::VersionNotSupported,
                _ => Diagnostic::Malformed(invalid.reason),
            };
            return self.reject(flow, msg, Rejection::new(d), out);
        }
        match method {
            // ACK to a non-2xx final is absorbed (RFC 3261 §17.2.1); there are no
            // dialogs yet for a 2xx ACK to belong to.
            Method::Ack => debug!(flow = %flow.id, "ACK absorbed"),
            Method::Options => self.on_options(flow, msg, out),
            Method::Invite => {
                let peer = peer_auth(flow);
                match policy::check_sbc_request(msg, peer, &self.directory) {
                    Err(r) => self.reject(flow, msg, r, out),
                    Ok(_) if self.is_draining() => self.reject(
                        flow,
                        msg,
                        Rejection::new(Diagnostic::Overloaded).with("detail", "shutting down"),
                        out,
                    ),
                    Ok(accepted) => {
                        info!(flow = %flow.id, sbc = %accepted.sbc_fqdn, "INVITE passed Direct Routing checks; calls are not implemented yet");
                        let mut w = ResponseWriter::start(
                            out,
                            self.style(),
                            msg,
                            501,
                            "Not Implemented",
                            Some(&to_tag()),
                        );
                        w.header("Server", &self.config.proxy.server);
                        w.finish(b"");
                    }
                }
            }
            Method::Bye | Method::Cancel => self.reject(
                flow,
                msg,
                Rejection::new(Diagnostic::NoSuchDialog).with("method", method.as_str()),
                out,
            ),
            other => self.reject(
                flow,
                msg,
                Rejection::new(Diagnostic::MethodNotAllowed).with("method", other.as_str()),
                out,
            ),
        }
    }

    /// DR-OPT-1, DR-OPT-2.
    fn on_options(&self, flow: &FlowInfo, msg: &Message<'_>, out: &mut BytesMut) {
        let accepted = match policy::check_sbc_request(msg, peer_auth(flow), &self.directory) {
            Ok(a) => a,
            Err(r) => return self.reject(flow, msg, r, out),
        };
        let tenant = self.directory.tenant(accepted.tenant);
        self.health.options_received(OptionsSeen {
            fqdn: &accepted.sbc_fqdn,
            tenant: &tenant.id,
            allow: msg
                .values(HeaderName::Allow)
                .map(|m| m.trim().to_ascii_uppercase())
                .filter(|m| !m.is_empty())
                .collect(),
            certificate: flow.identity.clone(),
            flow: flow.id,
            peer: flow.peer,
            listener: &flow.listener,
        });
        self.counters.options_ok.fetch_add(1, Ordering::Relaxed);
        debug!(flow = %flow.id, sbc = %accepted.sbc_fqdn, tenant = %tenant.id, "OPTIONS 200");
        match self.config.proxy.profile {
            Profile::Faithful => {
                let mut w = ResponseWriter::start(out, Style::Faithful, msg, 200, "OK", None)
                    .content_length_now(0);
                w.header("Allow", ALLOW);
                w.header("Server", &self.config.proxy.server);
                w.finish(b"");
            }
            Profile::Rfc3261 => {
                let mut w =
                    ResponseWriter::start(out, Style::Rfc3261, msg, 200, "OK", Some(&to_tag()));
                w.header(
                    "Contact",
                    &format!(
                        "<sip:{}:{};transport=tls>",
                        flow.proxy_fqdn,
                        flow.local.port()
                    ),
                );
                w.header("Allow", ALLOW);
                w.header("Accept", "application/sdp");
                w.header("Supported", &SUPPORTED_OPTIONS.join(","));
                w.header("Server", &self.config.proxy.server);
                w.finish(b"");
            }
        }
    }

    /// Answers with the rejection's status, `Reason` and `ms-diagnostics` (DR-VAL-8),
    /// and logs it once with the same facts. Needs the headers a response copies;
    /// without them the request is dropped and only logged (DR-ERR-3).
    pub fn reject(
        &self,
        flow: &FlowInfo,
        msg: &Message<'_>,
        rejection: Rejection,
        out: &mut BytesMut,
    ) {
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
        let e = rejection.entry();
        let id = correlation_id();
        let call_id = msg.header(HeaderName::CallId).unwrap_or("-");
        warn!(
            flow = %flow.id,
            call_id,
            status = e.status,
            code = e.code,
            requirement = e.requirement,
            correlation = %id,
            facts = %rejection.facts_line(),
            "rejected: {}",
            e.text
        );
        if !can_respond(msg) {
            warn!(flow = %flow.id, "no response possible (Via, From, To, Call-ID or CSeq missing); dropped");
            return;
        }
        let mut w =
            ResponseWriter::start(out, self.style(), msg, e.status, e.phrase, Some(&to_tag()));
        w.header("Reason", &rejection.reason_header(&id));
        if self.config.proxy.ms_diagnostics {
            w.header(
                "ms-diagnostics",
                &rejection.ms_diagnostics(flow.proxy_fqdn.as_str()),
            );
        }
        match rejection.diagnostic {
            Diagnostic::BadExtension => {
                if let Some((_, tags)) = rejection.facts.iter().find(|(k, _)| *k == "unsupported") {
                    w.header("Unsupported", tags);
                }
            }
            Diagnostic::MethodNotAllowed => {
                w.header("Allow", ALLOW);
            }
            Diagnostic::Overloaded => {
                w.header("Retry-After", "1");
            }
            _ => {}
        }
        w.header("Server", &self.config.proxy.server);
        w.finish(b"");
    }
}

impl Dispatch for Proxy {
    fn on_message(&self, flow: &Arc<FlowInfo>, msg: &Message<'_>, out: &mut BytesMut) -> Handled {
        match msg.method() {
            Some(method) => self.on_request(flow, msg, method, out),
            None => debug!(flow = %flow.id, "response with no client transaction; ignored"),
        }
        Handled::Done
    }

    fn on_owned(
        &self,
        _flow: &Arc<FlowInfo>,
        _msg: &Message<'_>,
        _wire: &Bytes,
        _out: &mut BytesMut,
    ) {
    }

    fn on_unframeable(&self, flow: &FlowInfo, buf: &[u8], error: &ParseError, out: &mut BytesMut) {
        self.counters.malformed.fetch_add(1, Ordering::Relaxed);
        let d = match error.status() {
            413 => Diagnostic::TooLarge(error.reason()),
            505 => Diagnostic::VersionNotSupported,
            _ => Diagnostic::Malformed(error.reason()),
        };
        let head_end = memchr::memmem::find(buf, b"\r\n\r\n").map(|i| i + 4);
        let head = head_end
            .and_then(|end| Message::parse_head(&buf[..end]).ok())
            .and_then(|s| s.complete());
        match head {
            Some(head) if head.method().is_some() => {
                self.reject(flow, &head, Rejection::new(d), out)
            }
            _ => warn!(
                flow = %flow.id,
                status = d.entry().status,
                "unframeable bytes with no request header block to answer: {}",
                error.reason()
            ),
        }
    }
}

fn peer_auth(flow: &FlowInfo) -> PeerAuth<'_> {
    match &flow.identity {
        Some(id) => PeerAuth::Certificate(id),
        None => PeerAuth::Insecure,
    }
}

/// RFC 3261 §8.2.6: a response needs these copied from the request.
fn can_respond(msg: &Message<'_>) -> bool {
    [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ]
    .iter()
    .all(|h| msg.header(*h).is_some())
}

/// A fresh To tag for a response the proxy answers itself.
fn to_tag() -> String {
    format!("{:016x}", fastrand::u64(..))
}
