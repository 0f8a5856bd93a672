//! The endpoint side's dispatcher, for its UDP socket and its TCP connections alike.
//! REGISTER is answered at once through the registrar; every other message enters the
//! transaction layer with a destination that leads back to the endpoint, and goes from
//! there to the router like the SBC's.

use std::sync::Arc;

use bytes::BytesMut;
use tracing::debug;

use super::service::is_local;
use crate::hub::Hub;
use crate::sip::{Message, ParseError, Stored};
use crate::transport::udp::DatagramDispatch;
use crate::transport::{Destination, Dispatch, FlowInfo, Handled};

/// See the module docs.
pub struct EndpointDispatch {
    pub hub: Arc<Hub>,
}

impl EndpointDispatch {
    fn on_endpoint_message(&self, wire: Stored, dest: Destination) {
        let msg = wire.message();
        if let Err(invalid) = msg.check() {
            debug!(from = %dest.label(), reason = invalid.reason, "invalid message from an endpoint dropped");
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
}

impl DatagramDispatch for EndpointDispatch {
    fn on_datagram(&self, from: Destination, msg: Stored) {
        self.on_endpoint_message(msg, from);
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

    fn on_unframeable(&self, flow: &FlowInfo, _: &[u8], error: &ParseError, _: &mut BytesMut) {
        debug!(flow = %flow.id, error = %error, "unframeable stream from an endpoint; closing");
    }

    fn on_closed(&self, flow: &Arc<FlowInfo>) {
        if let Some(endpoints) = &self.hub.endpoints {
            endpoints.flow_closed(flow.peer);
        }
    }
}
