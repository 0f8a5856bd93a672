//! The endpoint side's dispatcher, for its UDP socket and its TCP connections alike.
//!
//! Anyone can reach this listener without credentials, so what an unknown sender can
//! make the daemon keep is bounded (issue 7):
//! - every request first passes the per-source rate ([`SourceLimits`]); over it, `503`
//!   with `Retry-After`, answered without any state;
//! - REGISTER is answered at once through the registrar (digest), without a transaction;
//! - a request outside a dialog is answered here without a transaction (RFC 3261 §8.2.7,
//!   a stateless UAS): OPTIONS 200, CANCEL and BYE 481, anything else 405;
//! - a new INVITE (a call to the PSTN, DR-OUT-1) is digest-challenged here like a
//!   REGISTER, statelessly (`407`); only one whose credentials check out enters the
//!   transaction layer, and the router takes its From user as authenticated;
//! - only requests inside a call that is up, and responses, enter the transaction layer
//!   (and from there the router, like the SBC's); an ACK for no call is dropped;
//! - a request that fails the RFC 3261 checks, or does not parse, is answered `400`
//!   naming the fault where a response can be formed (DR-ERR-3), over UDP as over TCP.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tracing::debug;

use super::admission::{SourceLimits, Verdict};
use super::service::is_local;
use crate::call::router::reject_stateless;
use crate::diagnostics::{answer_unparsed, correlation_id, Diagnostic, Rejection, Teller};
use crate::hub::Hub;
use crate::policy::ALLOW;
use crate::sip::build::ResponseWriter;
use crate::sip::{Invalid, LocalIdentity, Message, Method, ParseError, Stored};
use crate::transport::udp::DatagramDispatch;
use crate::transport::{Destination, Dispatch, FlowInfo, Handled};

/// See the module docs.
pub struct EndpointDispatch {
    pub hub: Arc<Hub>,
    limits: Mutex<SourceLimits>,
}

impl EndpointDispatch {
    pub fn new(hub: Arc<Hub>) -> EndpointDispatch {
        let rate = hub.config().endpoints.requests_per_second_per_address;
        EndpointDispatch {
            hub,
            limits: Mutex::new(SourceLimits::new(rate)),
        }
    }

    fn teller<'a>(&'a self, proxy: &'a LocalIdentity, label: &'a str) -> Teller<'a> {
        Teller {
            style: self.hub.style(),
            source: proxy.host(),
            server: &self.hub.server,
            ms_diagnostics: self.hub.ms_diagnostics,
            flow: label,
            allow: ALLOW,
        }
    }

    fn on_endpoint_message(&self, wire: Stored, dest: Destination) {
        let msg = wire.message();
        let Some(method) = msg.method() else {
            // A response: to one of the proxy's requests (an INVITE to a phone).
            return self.to_layer(wire, dest);
        };
        if !self.admit(dest.peer().ip(), &msg, &dest) {
            return;
        }
        if let Err(invalid) = msg.check() {
            self.invalid(&msg, invalid, &dest);
            return;
        }
        if is_local(&msg) {
            if let Some(endpoints) = &self.hub.endpoints {
                let transport = dest.transport();
                let response =
                    endpoints.register(&self.hub.directory(), &msg, dest.peer(), transport);
                if !dest.send(response.freeze()) {
                    debug!("response to an endpoint could not be sent");
                }
            }
            return;
        }
        if self.hub.calls.knows(&msg) {
            return self.to_layer(wire, dest);
        }
        let in_dialog = msg
            .to()
            .and_then(Result::ok)
            .is_some_and(|t| t.tag().is_some());
        if method == Method::Invite && !in_dialog {
            let Some(endpoints) = &self.hub.endpoints else {
                return;
            };
            match endpoints.authenticate(&self.hub.directory(), &msg, dest.peer()) {
                Ok(_) => {
                    return self.to_layer(wire, dest);
                }
                Err(response) => {
                    if !dest.send(response.freeze()) {
                        debug!("response to an endpoint could not be sent");
                    }
                    return;
                }
            }
        }
        let r = match method {
            // Nothing to answer, nothing to keep: the ACK of a stateless rejection.
            Method::Ack => return,
            Method::Options if !in_dialog => return self.options(&msg, &dest),

            Method::Bye | Method::Cancel => {
                Rejection::new(Diagnostic::NoSuchDialog).with("method", method.as_str())
            }
            _ if in_dialog => {
                Rejection::new(Diagnostic::NoSuchDialog).with("method", method.as_str())
            }
            other => Rejection::new(Diagnostic::MethodNotAllowed).with("method", other.as_str()),
        };
        reject_stateless(&self.hub, &msg, &dest, &r);
    }

    fn to_layer(&self, wire: Stored, dest: Destination) {
        let transport = dest.transport();
        let label = dest.label();
        if let Err(e) = self.hub.layer.receive(wire, dest, transport) {
            debug!(from = %label, error = %e, "endpoint message not taken by the transaction layer");
        }
    }

    /// The per-source rate: false when the request was refused (with a stateless 503).
    fn admit(&self, ip: IpAddr, msg: &Message<'_>, dest: &Destination) -> bool {
        if self.within_rate(ip) {
            return true;
        }
        if msg.method() != Some(Method::Ack) && crate::diagnostics::can_respond(msg) {
            let mut out = BytesMut::new();
            let tag = crate::diagnostics::stateless_tag();
            let mut w = ResponseWriter::start(
                &mut out,
                dest.proxy().style(),
                msg,
                503,
                "Service Unavailable",
                Some(&tag),
            );
            w.header("Retry-After", "1");
            w.header("Server", &self.hub.server);
            w.finish(b"");
            let _ = dest.send(out.freeze());
        }
        false
    }

    /// Takes one request from `ip` off its rate; false when it is over it. The first
    /// refusal of a spell is logged, and the count of a spell when it ends.
    fn within_rate(&self, ip: IpAddr) -> bool {
        let verdict = self
            .limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(ip, Instant::now());
        match verdict {
            Verdict::Admit => true,
            Verdict::Recovered { refused } => {
                crate::info_limited!(
                    source = %ip,
                    refused,
                    "endpoint source back under requests_per_second_per_address"
                );
                true
            }
            Verdict::Refuse { first } => {
                if first {
                    crate::warn_limited!(
                        source = %ip,
                        limit = self.hub.config().endpoints.requests_per_second_per_address,
                        "endpoint source over requests_per_second_per_address: 503 to its requests until it slows down"
                    );
                }
                false
            }
        }
    }

    /// An endpoint's OPTIONS outside a dialog (a keep-alive, or a capability query).
    fn options(&self, msg: &Message<'_>, dest: &Destination) {
        let mut out = BytesMut::new();
        let tag = format!("{:016x}", fastrand::u64(..));
        let mut w =
            ResponseWriter::start(&mut out, dest.proxy().style(), msg, 200, "OK", Some(&tag));
        w.header("Allow", ALLOW);
        w.header("Server", &self.hub.server);
        w.finish(b"");
        let _ = dest.send(out.freeze());
    }

    /// A message that parsed but fails the RFC 3261 checks: a request other than ACK is
    /// answered 400 (505 for another version) naming the fault, where it came from.
    fn invalid(&self, msg: &Message<'_>, invalid: Invalid, dest: &Destination) {
        self.hub.counters.malformed.fetch_add(1, Ordering::Relaxed);
        let label = dest.label();
        let mut out = BytesMut::new();
        let correlation = correlation_id();
        let answer = msg.is_request() && msg.method() != Some(Method::Ack);
        let sent = answer
            && Rejection::new(Diagnostic::invalid(invalid)).write(
                msg,
                &self.teller(dest.proxy(), &label),
                &correlation,
                &mut out,
            )
            && dest.send(out.freeze());
        if sent {
            self.hub.counters.rejected.fetch_add(1, Ordering::Relaxed);
        }
        debug!(
            from = %label,
            call_id = msg.call_id().unwrap_or("-"),
            reason = invalid.reason,
            correlation = %correlation,
            answered = sent,
            "invalid message from an endpoint"
        );
    }

    /// A message that does not parse: answered with the fault's status and reason phrase
    /// into `out`, from what [`crate::sip::salvage`] makes of `raw`, where that is
    /// possible (never for a response or an ACK); logged once either way.
    fn unparsed(
        &self,
        label: &str,
        proxy: &LocalIdentity,
        raw: &[u8],
        error: &ParseError,
        out: &mut BytesMut,
    ) {
        self.hub.counters.malformed.fetch_add(1, Ordering::Relaxed);
        let answered = answer_unparsed(raw, error, &self.teller(proxy, label), out);
        if answered.is_ok() {
            self.hub.counters.rejected.fetch_add(1, Ordering::Relaxed);
        }
        let (call_id, correlation, why) = match &answered {
            Ok(a) => (a.call_id.clone(), a.correlation.as_str(), None),
            Err(u) => {
                let call_id = String::from_utf8_lossy(u.call_id.unwrap_or(b"-")).into_owned();
                (call_id, "-", Some(u.why))
            }
        };
        debug!(
            from = label,
            call_id = %call_id,
            error = %error,
            correlation,
            unanswered = why.map(|w| w.to_string()),
            "message from an endpoint does not parse"
        );
    }
}

impl DatagramDispatch for EndpointDispatch {
    fn on_datagram(&self, from: Destination, msg: Stored) {
        self.on_endpoint_message(msg, from);
    }

    fn on_unframeable(&self, from: Destination, datagram: &[u8], error: &ParseError) {
        // Over its rate, a source's garbage is counted (in the spell's refusals), not
        // answered.
        if !self.within_rate(from.peer().ip()) {
            return;
        }
        let mut out = BytesMut::new();
        self.unparsed(&from.label(), from.proxy(), datagram, error, &mut out);
        if !out.is_empty() && !from.send(out.freeze()) {
            debug!(to = %from.label(), "response to an endpoint could not be sent");
        }
    }
}

impl Dispatch for EndpointDispatch {
    fn on_message(&self, _: &Arc<FlowInfo>, _: &Message<'_>, _: &mut BytesMut) -> Handled {
        Handled::Owned
    }

    fn on_owned(&self, flow: &Arc<FlowInfo>, wire: Stored, _out: &mut BytesMut) {
        let Some(handle) = self.hub.flows.get(flow.id) else {
            return;
        };
        self.on_endpoint_message(wire, Destination::Flow(handle));
    }

    fn on_unframeable(&self, flow: &FlowInfo, buf: &[u8], error: &ParseError, out: &mut BytesMut) {
        self.unparsed(&flow.id.to_string(), &flow.proxy, buf, error, out);
    }

    fn on_malformed(&self, flow: &FlowInfo, raw: &[u8], error: &ParseError, out: &mut BytesMut) {
        if !self.within_rate(flow.peer.ip()) {
            return;
        }
        self.unparsed(&flow.id.to_string(), &flow.proxy, raw, error, out);
    }

    fn on_closed(&self, flow: &Arc<FlowInfo>) {
        if let Some(endpoints) = &self.hub.endpoints {
            endpoints.flow_closed(flow.peer);
        }
    }

    /// A connection with a registration on it stays as long as an SBC's would; one
    /// without closes at the endpoint listener's shorter idle timeout.
    fn keep_idle(&self, flow: &Arc<FlowInfo>) -> Option<Duration> {
        let endpoints = self.hub.endpoints.as_ref()?;
        endpoints
            .registered_over(flow.peer)
            .then_some(self.hub.config().limits.idle_timeout)
    }
}
