//! What the proxy does with each message an SBC sends: RFC 3261 validity first
//! (DR-ERR-3), then the Direct Routing checks of [`crate::policy`], then the method's
//! own handling. Every rejection leaves through [`Proxy::reject`], which writes the
//! `Reason` and `ms-diagnostics` headers (DR-VAL-8) and logs the same facts once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tracing::{debug, warn};

use crate::call::{CallCtx, CallEvent, CallKey, CallTable, Dest, NewCall};
use crate::config::{Config, Profile};
use crate::diagnostics::{correlation_id, Diagnostic, Rejection};
use crate::directory::Directory;
use crate::endpoint::service::Endpoints;
use crate::health::{Health, OptionsSeen};
use crate::policy::{self, PeerAuth, SUPPORTED_OPTIONS};
use crate::sip::build::{ResponseWriter, Style};
use crate::sip::Status;
use crate::sip::{HeaderName, Message, Method, ParseError};
use crate::transaction::{CancelTarget, CoreEvent, Final, LayerHandle, ServerTx, TransportKind};
use crate::transport::{Dispatch, FlowHandle, FlowInfo, Flows, Handled};

/// The listener name of the endpoint side's TCP socket.
pub const ENDPOINT_LISTENER: &str = "endpoints";

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

/// The SBC-facing proxy: owns the directory, the per-SBC health records and the call
/// table; routes what the transaction layer hands up.
pub struct Proxy {
    config: Arc<Config>,
    directory: Directory,
    health: Health,
    flows: Arc<Flows>,
    calls: Arc<CallCtx>,
    layer: LayerHandle<Dest>,
    endpoints: Option<Arc<Endpoints>>,
    draining: AtomicBool,
    pub counters: Counters,
}

impl Proxy {
    pub fn new(
        config: Arc<Config>,
        flows: Arc<Flows>,
        layer: LayerHandle<Dest>,
        endpoints: Option<Arc<Endpoints>>,
    ) -> Proxy {
        let table = Arc::new(CallTable::default());
        Proxy {
            directory: Directory::new(&config.tenants),
            calls: Arc::new(CallCtx::new(
                config.clone(),
                layer.clone(),
                table,
                endpoints.clone(),
                flows.clone(),
            )),
            config,
            health: Health::default(),
            flows,
            layer,
            endpoints,
            draining: AtomicBool::new(false),
            counters: Counters::default(),
        }
    }

    /// The live calls.
    pub fn calls(&self) -> &CallTable {
        &self.calls.calls
    }

    /// SIP endpoints' registrations; `None` when `[endpoints] address = "off"`.
    pub fn endpoints(&self) -> Option<&Arc<Endpoints>> {
        self.endpoints.as_ref()
    }

    /// The transaction layer's input side.
    pub fn layer(&self) -> &LayerHandle<Dest> {
        &self.layer
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

    /// Resolves when no call is up; the shutdown drain waits on it.
    pub async fn idle(&self) {
        self.calls.calls.idle().await
    }

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
            Method::Options => self.on_options(flow, msg, out),
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
        let label = flow.id.to_string();
        self.write_rejection(flow.proxy_fqdn.as_str(), &label, msg, &rejection, out);
    }

    /// [`Proxy::reject`] through a server transaction (INVITE and in-dialog requests).
    fn reject_tx(&self, source: &Dest, tx: ServerTx, msg: &Message<'_>, rejection: Rejection) {
        let (fqdn, label) = match source {
            Dest::Flow(f) => (f.info.proxy_fqdn.as_str(), f.info.id.to_string()),
            Dest::Udp { addr, .. } => (self.config.primary_fqdn().as_str(), format!("udp:{addr}")),
        };
        let mut out = BytesMut::new();
        self.write_rejection(fqdn, &label, msg, &rejection, &mut out);
        match Final::new(out.freeze()) {
            Ok(f) => drop(tx.respond(f)),
            Err(_) => drop(tx),
        }
    }

    fn write_rejection(
        &self,
        source: &str,
        flow: &str,
        msg: &Message<'_>,
        rejection: &Rejection,
        out: &mut BytesMut,
    ) {
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
        let e = rejection.entry();
        let id = correlation_id();
        let call_id = msg.header(HeaderName::CallId).unwrap_or("-");
        warn!(
            flow,
            call_id,
            status = rejection.status(),
            code = e.code,
            requirement = e.requirement,
            correlation = %id,
            facts = %rejection.facts_line(),
            "rejected: {}",
            e.text
        );
        if !can_respond(msg) {
            warn!(
                flow,
                "no response possible (Via, From, To, Call-ID or CSeq missing); dropped"
            );
            return;
        }
        let mut w = ResponseWriter::start(
            out,
            self.style(),
            msg,
            rejection.status(),
            rejection.phrase(),
            Some(&to_tag()),
        );
        w.header("Reason", &rejection.reason_header(&id));
        if self.config.proxy.ms_diagnostics {
            w.header("ms-diagnostics", &rejection.ms_diagnostics(source));
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

    /// What the transaction layer hands up that belongs to no transaction yet: new
    /// requests, CANCELs, ACKs for 2xx, stray responses.
    pub fn on_core_event(&self, ev: CoreEvent<Dest>) {
        match ev {
            CoreEvent::Request(req) => {
                let source = req.source.clone();
                let Ok(Status::Complete(msg)) = Message::parse(&req.request, &crate::call::OWN)
                else {
                    return;
                };
                let in_dialog = msg
                    .to()
                    .and_then(Result::ok)
                    .is_some_and(|t| t.tag().is_some());
                if msg.method() == Some(Method::Invite) && !in_dialog {
                    match &source {
                        Dest::Flow(flow) if flow.info.listener != ENDPOINT_LISTENER => {
                            return self.on_invite(flow, req.tx, &req.request, &msg);
                        }
                        _ => {
                            let r = Rejection::new(Diagnostic::NotImplemented).with(
                                "detail",
                                "calls from endpoints (DR-OUT) are not implemented yet",
                            );
                            return self.reject_tx(&source, req.tx, &msg, r);
                        }
                    }
                }
                let ev = CallEvent::Request {
                    tx: req.tx,
                    request: req.request.clone(),
                };
                // SBC legs are keyed by Call-ID and the SBC's From tag; endpoint legs by
                // the Call-ID drhub chose for them.
                let routed = match CallKey::of(&msg) {
                    Some(k) => self.calls.calls.send(&k, ev),
                    None => Err(ev),
                };
                let routed = match (routed, msg.call_id()) {
                    (Err(ev), Some(id)) => self.calls.calls.send_leg(id, ev),
                    (r, _) => r,
                };
                if let Err(CallEvent::Request { tx, .. }) = routed {
                    let method = msg.method().map_or("-", |m| m.as_str());
                    let r = Rejection::new(Diagnostic::NoSuchDialog).with("method", method);
                    self.reject_tx(&source, tx, &msg, r);
                }
            }
            CoreEvent::Cancel { request, target } => {
                let source = request.source.clone();
                let Ok(Status::Complete(msg)) = Message::parse(&request.request, &crate::call::OWN)
                else {
                    return;
                };
                let ev = CallEvent::Cancel {
                    tx: request.tx,
                    request: request.request.clone(),
                };
                let routed = match (&target, CallKey::of(&msg)) {
                    (CancelTarget::Unknown, _) | (_, None) => Err(ev),
                    (_, Some(k)) => self.calls.calls.send(&k, ev),
                };
                if let Err(CallEvent::Cancel { tx, .. }) = routed {
                    let r = Rejection::new(Diagnostic::NoSuchDialog).with("method", "CANCEL");
                    self.reject_tx(&source, tx, &msg, r);
                }
            }
            CoreEvent::Ack { request, .. } => {
                let Ok(Status::Complete(msg)) = Message::parse(&request, &crate::call::OWN) else {
                    return;
                };
                let sent = match CallKey::of(&msg) {
                    Some(k) => self.calls.calls.send(&k, CallEvent::Ack).is_ok(),
                    None => false,
                };
                if !sent {
                    debug!(
                        call_id = msg.call_id().unwrap_or("-"),
                        "ACK for no live call; dropped"
                    );
                }
            }
            CoreEvent::StrayResponse { response, source } => {
                // A 2xx retransmitted after Timer M still needs its ACK (§13.2.2.4): the
                // endpoint leg it belongs to decides.
                let call_id = match Message::parse(&response, &crate::call::OWN) {
                    Ok(Status::Complete(msg)) => msg.call_id().map(str::to_owned),
                    _ => None,
                };
                let delivered = match call_id {
                    Some(id) => self
                        .calls
                        .calls
                        .send_leg(&id, CallEvent::Stray { response, source })
                        .is_ok(),
                    None => false,
                };
                if !delivered {
                    debug!("response matching no transaction; dropped");
                }
            }
        }
    }

    /// A new INVITE from an SBC: DR-VAL, then admission, then the call task.
    fn on_invite(&self, flow: &FlowHandle, tx: ServerTx, wire: &Bytes, msg: &Message<'_>) {
        let accepted = match policy::check_sbc_request(msg, peer_auth(&flow.info), &self.directory)
        {
            Ok(a) => a,
            Err(r) => return self.reject_tx(&Dest::Flow(flow.clone()), tx, msg, r),
        };
        let admitted = crate::call::admit(&self.calls, self, msg, &accepted, self.is_draining());
        let crate::call::Admitted {
            user,
            caller,
            caller_name,
            offer,
            media_answer,
        } = match admitted {
            Ok(a) => a,
            Err(r) => return self.reject_tx(&Dest::Flow(flow.clone()), tx, msg, r),
        };
        let Some(key) = CallKey::of(msg) else {
            let r = Rejection::new(Diagnostic::Malformed("From Tag Missing"));
            return self.reject_tx(&Dest::Flow(flow.clone()), tx, msg, r);
        };
        if self.calls.calls.contains(&key) {
            // The dialog set is already up: a second INVITE without To tag (a new branch)
            // is a loop or an SBC bug, not a new call.
            let r = Rejection::new(Diagnostic::Malformed("Call Already Exists"))
                .with("call_id", key.call_id.clone());
            return self.reject_tx(&Dest::Flow(flow.clone()), tx, msg, r);
        }
        let tenant = self.directory.tenant(accepted.tenant).id.clone();
        crate::call::spawn(
            self.calls.clone(),
            NewCall {
                tx,
                // Shared with the transaction (the transport already made it exact-size).
                invite: wire.clone(),
                sbc: flow.clone(),
                key,
                tenant,
                user,
                bypass: accepted.trunk.media_bypass,
                offer,
                media_answer,
                caller,
                caller_name,
                trunk: accepted.trunk.fqdn.to_string(),
                max_sessions: accepted.trunk.max_concurrent_sessions,
            },
        );
    }
}

impl Dispatch for Proxy {
    fn on_message(&self, flow: &Arc<FlowInfo>, msg: &Message<'_>, out: &mut BytesMut) -> Handled {
        let Some(method) = msg.method() else {
            // Responses go to the transaction layer (answers to our BYE ...).
            return Handled::Owned;
        };
        let in_dialog = msg
            .to()
            .and_then(Result::ok)
            .is_some_and(|t| t.tag().is_some());
        match method {
            Method::Options if !in_dialog => {
                self.on_request(flow, msg, method, out);
                Handled::Done
            }
            Method::Invite | Method::Ack | Method::Cancel => Handled::Owned,
            _ if in_dialog => Handled::Owned,
            _ => {
                self.on_request(flow, msg, method, out);
                Handled::Done
            }
        }
    }

    fn on_owned(&self, flow: &Arc<FlowInfo>, msg: &Message<'_>, wire: &Bytes, out: &mut BytesMut) {
        let checked = if msg.is_request() {
            msg.check_request()
        } else {
            msg.check_response()
        };
        if let Err(invalid) = checked {
            self.counters.malformed.fetch_add(1, Ordering::Relaxed);
            if msg.is_request() && msg.method() != Some(Method::Ack) {
                let d = match invalid.status {
                    505 => Diagnostic::VersionNotSupported,
                    _ => Diagnostic::Malformed(invalid.reason),
                };
                self.reject(flow, msg, Rejection::new(d), out);
            }
            return;
        }
        if msg.is_request() {
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
        }
        let Some(handle) = self.flows.get(flow.id) else {
            return;
        };
        if let Err(e) = self.layer.receive(
            msg,
            wire.clone(),
            Dest::Flow(handle),
            TransportKind::Reliable,
        ) {
            debug!(flow = %flow.id, error = %e, "not taken by the transaction layer");
            if msg.is_request() && msg.method() != Some(Method::Ack) {
                self.reject(
                    flow,
                    msg,
                    Rejection::new(Diagnostic::Malformed("Unmatchable Request")),
                    out,
                );
            }
        }
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
