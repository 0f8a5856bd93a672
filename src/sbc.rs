//! The front door for SBC messages: what needs no dialog state is answered here, at the
//! connection, from the borrowed message: RFC 3261 validity (DR-ERR-3), OPTIONS
//! (DR-OPT-1/2) after the Direct Routing checks of [`crate::policy`], and refusals of
//! out-of-dialog methods. INVITEs, in-dialog requests, CANCEL, ACK and responses go to
//! the transaction layer, and from there to the router. Every refusal leaves through
//! [`Rejection::respond`] (DR-VAL-8).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::sync::mpsc;
use tracing::debug;

use crate::diagnostics::{answer_unparsed, is_stateless_tag, Diagnostic, Rejection, Teller};
use crate::health::OptionsSeen;
use crate::hub::Hub;
use crate::observe::conformance::sbc_of;
use crate::observe::refusals::Refused;
use crate::policy::{self, peer_auth, ALLOW, SUPPORTED_OPTIONS};
use crate::sip::build::{ResponseWriter, Style};
use crate::sip::{HeaderName, Message, Method, ParseError, Stored};
use crate::transport::datacenter::Mode as DcMode;
use crate::transport::{Destination, Dispatch, FlowEvent, FlowInfo, Handled};

/// The SBC side's dispatcher (every SBC listener, and the proxy's outbound connections).
pub struct FrontDoor {
    hub: Arc<Hub>,
    events: mpsc::UnboundedSender<FlowEvent>,
}

impl FrontDoor {
    pub fn new(hub: Arc<Hub>, events: mpsc::UnboundedSender<FlowEvent>) -> FrontDoor {
        FrontDoor { hub, events }
    }

    fn teller<'a>(&'a self, flow: &'a FlowInfo, label: &'a str) -> Teller<'a> {
        Teller {
            style: self.hub.style(),
            source: flow.proxy.host(),
            server: &self.hub.server,
            ms_diagnostics: self.hub.ms_diagnostics,
            flow: label,
            allow: ALLOW,
        }
    }

    /// Answers with the rejection (DR-VAL-8) into the connection's output.
    fn reject(&self, flow: &FlowInfo, msg: &Message<'_>, r: Rejection, out: &mut BytesMut) {
        self.hub.counters.rejected.fetch_add(1, Ordering::Relaxed);
        self.hub
            .conformance
            .rejected(flow, msg.call_id().unwrap_or(""), &r);
        let label = flow.id.to_string();
        r.respond(msg, &self.teller(flow, &label), out);
    }

    /// A new INVITE refused at the door (DR-ERR-1): `503` with `Retry-After`, answered
    /// without a transaction, so that shedding costs next to nothing.
    fn shed(&self, flow: &FlowInfo, msg: &Message<'_>, why: &'static str, out: &mut BytesMut) {
        self.hub.counters.shed.fetch_add(1, Ordering::Relaxed);
        if msg.check_request().is_err() {
            // Let the normal path name the fault.
            return self.on_request(flow, msg, Method::Invite, out);
        }
        let label = flow.id.to_string();
        let r = Rejection::new(Diagnostic::Overloaded).with("detail", why);
        r.respond_stateless(msg, &self.teller(flow, &label), out);
    }

    /// A new INVITE to a datacenter set busy (DR-DC-1): `503` with the datacenter's
    /// `Retry-After`, without a transaction, as the real service answers while it moves
    /// load away from a datacenter.
    fn busy(&self, flow: &FlowInfo, msg: &Message<'_>, retry_after: u32, out: &mut BytesMut) {
        if msg.check_request().is_err() {
            return self.on_request(flow, msg, Method::Invite, out);
        }
        self.hub.counters.shed.fetch_add(1, Ordering::Relaxed);
        let label = flow.id.to_string();
        let r = Rejection::new(Diagnostic::Overloaded)
            .with("detail", format!("datacenter {} is busy", flow.listener))
            .with("retry_after", retry_after.to_string());
        if r.respond_stateless(msg, &self.teller(flow, &label), out) {
            // DR-DC-2: the SBC's next INVITE of this call belongs on another datacenter.
            let how = Refused::Busy {
                datacenter: flow.listener.as_str().into(),
                retry_after,
            };
            self.hub.conformance.refused(&sbc_of(flow), msg, how);
        }
    }

    fn malformed(
        &self,
        flow: &FlowInfo,
        msg: &Message<'_>,
        invalid: crate::sip::Invalid,
        out: &mut BytesMut,
    ) {
        self.hub.counters.malformed.fetch_add(1, Ordering::Relaxed);
        self.reject(flow, msg, Rejection::new(Diagnostic::invalid(invalid)), out);
    }

    /// A message the stream could not parse (DR-ERR-3, DR-TLS-2): answered with the
    /// fault's status and reason phrase, built from what [`crate::sip::salvage`] makes of
    /// `raw`, where that is possible (never for a response or an ACK); logged once either
    /// way, with the Call-ID when one was found.
    fn unparsed(&self, flow: &FlowInfo, raw: &[u8], error: &ParseError, out: &mut BytesMut) {
        self.hub.counters.malformed.fetch_add(1, Ordering::Relaxed);
        let label = flow.id.to_string();
        match answer_unparsed(raw, error, &self.teller(flow, &label), out) {
            Ok(a) => {
                self.hub.counters.rejected.fetch_add(1, Ordering::Relaxed);
                let e = a.rejection.entry();
                crate::info_limited!(
                    flow = %flow.id,
                    call_id = %a.call_id,
                    status = a.rejection.status(),
                    code = e.code,
                    requirement = e.requirement,
                    correlation = %a.correlation,
                    "rejected: {}: {}",
                    e.text,
                    error.reason()
                );
            }
            Err(u) => crate::info_limited!(
                flow = %flow.id,
                call_id = %String::from_utf8_lossy(u.call_id.unwrap_or(b"-")),
                why = %u.why,
                "message that does not parse not answered, dropped: {}",
                error.reason()
            ),
        }
    }

    /// An out-of-dialog request answered here: OPTIONS, or a refusal.
    fn on_request(
        &self,
        flow: &FlowInfo,
        msg: &Message<'_>,
        method: Method<'_>,
        out: &mut BytesMut,
    ) {
        self.hub.counters.requests.fetch_add(1, Ordering::Relaxed);
        if let Err(invalid) = msg.check_request() {
            return self.malformed(flow, msg, invalid, out);
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
        let dir = self.hub.directory();
        let accepted = match policy::check_sbc_request(msg, peer_auth(flow), &dir) {
            Ok(a) => a,
            Err(r) => return self.reject(flow, msg, r, out),
        };
        let tenant = dir.tenant(accepted.tenant);
        // Allow on several lines is one list (RFC 3261 §7.3.1); one line is the norm.
        let joined: String;
        let allow = if msg.count(HeaderName::Allow) > 1 {
            joined = msg.values(HeaderName::Allow).collect::<Vec<_>>().join(",");
            &joined
        } else {
            msg.header(HeaderName::Allow).unwrap_or_default()
        };
        // DR-NH-2: the proxy's own OPTIONS go to the Contact's FQDN and port.
        let contact_port = msg
            .contact()
            .and_then(Result::ok)
            .and_then(|c| c.uri().and_then(|u| u.port()));
        self.hub.health.options_received(OptionsSeen {
            fqdn: &accepted.sbc_fqdn,
            tenant: &tenant.id,
            allow,
            certificate: flow.identity.clone(),
            flow: flow.id,
            peer: flow.peer,
            listener: &flow.listener,
            contact_host: &accepted.contact_fqdn,
            contact_port,
            trunk: accepted.trunk,
        });
        self.hub.counters.options_ok.fetch_add(1, Ordering::Relaxed);
        debug!(flow = %flow.id, sbc = %accepted.sbc_fqdn, tenant = %tenant.id, "OPTIONS 200");
        let style = self.hub.style();
        match style {
            Style::Faithful => {
                let mut w =
                    ResponseWriter::start(out, style, msg, 200, "OK", None).content_length_now(0);
                w.header("Allow", ALLOW);
                w.header("Server", &self.hub.server);
                w.finish(b"");
            }
            Style::Rfc3261 => {
                let tag = format!("{:016x}", fastrand::u64(..));
                let mut w = ResponseWriter::start(out, style, msg, 200, "OK", Some(&tag));
                w.header("Contact", flow.proxy.contact());
                w.header("Allow", ALLOW);
                w.header("Accept", "application/sdp");
                w.header("Supported", &SUPPORTED_OPTIONS.join(","));
                w.header("Server", &self.hub.server);
                w.finish(b"");
            }
        }
    }
}

impl Dispatch for FrontDoor {
    fn on_message(&self, flow: &Arc<FlowInfo>, msg: &Message<'_>, out: &mut BytesMut) -> Handled {
        let Some(method) = msg.method() else {
            // Responses go to the transaction layer (answers to the proxy's requests).
            return Handled::Owned;
        };
        let to_tag = msg.to().and_then(Result::ok).and_then(|t| t.tag());
        let in_dialog = to_tag.is_some();
        // DR-CONF: a new INVITE may try again what drhub refused (DR-ERR-2, DR-DC-2);
        // looked at here, before a busy datacenter refuses it again.
        if !in_dialog && method == Method::Invite {
            self.hub.conformance.new_invite(flow, msg);
        }
        // DR-DC-1: a datacenter in a fault mode; calls already up carry on, so only new
        // requests look it up.
        if !in_dialog && method != Method::Ack {
            match self.hub.datacenters.mode(&flow.listener) {
                DcMode::Silent => {
                    crate::info_limited!(flow = %flow.id, method = %method, "request not answered: datacenter mode silent (DR-DC-1)");
                    return Handled::Done;
                }
                DcMode::Busy { retry_after } if method == Method::Invite => {
                    self.busy(flow, msg, retry_after, out);
                    return Handled::Done;
                }
                _ => {}
            }
        }
        match method {
            Method::Options if !in_dialog => {
                self.on_request(flow, msg, method, out);
                Handled::Done
            }
            Method::Invite if !in_dialog => match self.hub.overload() {
                // DR-ERR-1: shed before any state is kept for the call.
                Some(why) => {
                    self.shed(flow, msg, why, out);
                    Handled::Done
                }
                None => Handled::Owned,
            },
            // The ACK of a rejection no transaction kept (a shed INVITE): nothing waits.
            Method::Ack if to_tag.is_some_and(is_stateless_tag) => Handled::Done,
            Method::Invite | Method::Ack | Method::Cancel => Handled::Owned,
            _ if in_dialog => Handled::Owned,
            _ => {
                self.on_request(flow, msg, method, out);
                Handled::Done
            }
        }
    }

    fn on_owned(&self, flow: &Arc<FlowInfo>, wire: Stored, out: &mut BytesMut) {
        let msg = wire.message();
        if let Err(invalid) = msg.check() {
            if msg.is_request() && msg.method() != Some(Method::Ack) {
                self.malformed(flow, &msg, invalid, out);
            } else {
                self.hub.counters.malformed.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        if msg.is_request() {
            self.hub.counters.requests.fetch_add(1, Ordering::Relaxed);
        }
        let Some(handle) = self.hub.flows.get(flow.id) else {
            return;
        };
        let is_request = msg.is_request() && msg.method() != Some(Method::Ack);
        let transport = flow.transport;
        if let Err(e) = self
            .hub
            .layer
            .receive(wire.clone(), Destination::Flow(handle), transport)
        {
            debug!(flow = %flow.id, error = %e, "not taken by the transaction layer");
            if is_request {
                let r = Rejection::new(Diagnostic::Malformed("Unmatchable Request"));
                self.reject(flow, &wire.message(), r, out);
            }
        }
    }

    fn on_unframeable(&self, flow: &FlowInfo, buf: &[u8], error: &ParseError, out: &mut BytesMut) {
        self.unparsed(flow, buf, error, out);
    }

    fn on_malformed(&self, flow: &FlowInfo, raw: &[u8], error: &ParseError, out: &mut BytesMut) {
        self.unparsed(flow, raw, error, out);
    }

    fn on_opened(&self, flow: &Arc<FlowInfo>) {
        let _ = self.events.send(FlowEvent::Opened(flow.clone()));
    }

    fn on_closed(&self, flow: &Arc<FlowInfo>) {
        let _ = self.events.send(FlowEvent::Closed(flow.clone()));
    }
}
