//! The endpoint side's dispatcher, for its UDP socket and its TCP connections alike.
//! REGISTER is answered at once through the registrar; every other message enters the
//! transaction layer with a destination that leads back to the endpoint, and goes from
//! there to the router like the SBC's. A request that fails the RFC 3261 checks, or does
//! not parse, is answered `400` naming the fault where a response can be formed
//! (DR-ERR-3), over UDP as over TCP.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use tracing::debug;

use super::service::is_local;
use crate::diagnostics::{answer_unparsed, correlation_id, Diagnostic, Rejection, Teller};
use crate::hub::Hub;
use crate::policy::ALLOW;
use crate::sip::{Invalid, LocalIdentity, Message, Method, ParseError, Stored};
use crate::transport::udp::DatagramDispatch;
use crate::transport::{Destination, Dispatch, FlowInfo, Handled};

/// See the module docs.
pub struct EndpointDispatch {
    pub hub: Arc<Hub>,
}

impl EndpointDispatch {
    fn teller<'a>(&'a self, proxy: &'a LocalIdentity, label: &'a str) -> Teller<'a> {
        Teller {
            style: self.hub.style(),
            source: proxy.host(),
            server: &self.hub.config.proxy.server,
            ms_diagnostics: self.hub.config.proxy.ms_diagnostics,
            flow: label,
            allow: ALLOW,
        }
    }

    fn on_endpoint_message(&self, wire: Stored, dest: Destination) {
        let msg = wire.message();
        if let Err(invalid) = msg.check() {
            self.invalid(&msg, invalid, &dest);
            return;
        }
        if is_local(&msg) {
            if let Some(endpoints) = &self.hub.endpoints {
                let transport = dest.transport();
                let response =
                    endpoints.register(&self.hub.directory, &msg, dest.peer(), transport);
                if !dest.send(response.freeze()) {
                    debug!("response to an endpoint could not be sent");
                }
            }
            return;
        }
        let transport = dest.transport();
        let label = dest.label();
        if let Err(e) = self.hub.layer.receive(wire, dest, transport) {
            debug!(from = %label, error = %e, "endpoint message not taken by the transaction layer");
        }
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
        self.unparsed(&flow.id.to_string(), &flow.proxy, raw, error, out);
    }

    fn on_closed(&self, flow: &Arc<FlowInfo>) {
        if let Some(endpoints) = &self.hub.endpoints {
            endpoints.flow_closed(flow.peer);
        }
    }
}
