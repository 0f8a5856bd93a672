//! Sockets of the endpoint side: the UDP receive loop and the TCP dispatcher. REGISTER is
//! answered at once through the registrar; everything else enters the transaction layer
//! with a destination that leads back to the endpoint.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::registrar::Transport;
use super::service::{frame_datagram, is_local};
use crate::call::Dest;
use crate::proxy::Proxy;
use crate::sip::{Message, ParseError, Status};
use crate::transaction::TransportKind;
use crate::transport::{Dispatch, FlowInfo, Handled};

/// The largest datagram read (a SIP message over UDP stays well below).
const MAX_DATAGRAM: usize = 65_535;

/// Receives datagrams until shutdown.
pub async fn serve_udp(socket: Arc<UdpSocket>, proxy: Arc<Proxy>, shutdown: CancellationToken) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    debug!(error = %e, "UDP receive failed");
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let Some(datagram) = buf.get(..n) else {
            continue;
        };
        // Keep-alives (RFC 5626 §3.5.1 over UDP is STUN; a bare CRLF is common too).
        if datagram.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
            continue;
        }
        let wire = match frame_datagram(datagram) {
            Ok(w) => w,
            Err(e) => {
                debug!(%from, error = %e, "unframeable datagram dropped");
                continue;
            }
        };
        on_endpoint_message(
            &proxy,
            &wire,
            Dest::Udp {
                socket: socket.clone(),
                addr: from,
            },
            from,
            Transport::Udp,
        );
    }
}

/// One message from an endpoint, over either transport.
fn on_endpoint_message(
    proxy: &Proxy,
    wire: &Bytes,
    dest: Dest,
    from: SocketAddr,
    transport: Transport,
) {
    let Ok(Status::Complete(msg)) = Message::parse(wire, &crate::call::OWN) else {
        return;
    };
    let checked = if msg.is_request() {
        msg.check_request()
    } else {
        msg.check_response()
    };
    if let Err(invalid) = checked {
        debug!(%from, reason = invalid.reason, "invalid message from an endpoint dropped");
        return;
    }
    if is_local(&msg) {
        if let Some(endpoints) = proxy.endpoints() {
            let response = endpoints.register(proxy.directory(), &msg, from, transport);
            send_to(&dest, response.freeze());
        }
        return;
    }
    let kind = match transport {
        Transport::Udp => TransportKind::Unreliable,
        Transport::Tcp => TransportKind::Reliable,
    };
    if let Err(e) = proxy.layer().receive(&msg, wire.clone(), dest, kind) {
        debug!(%from, error = %e, "endpoint message not taken by the transaction layer");
    }
}

fn send_to(dest: &Dest, bytes: Bytes) {
    if !dest.send(bytes) {
        debug!("response to an endpoint could not be sent");
    }
}

/// The TCP side: framed messages from endpoint connections.
pub struct EndpointDispatch {
    pub proxy: Arc<Proxy>,
}

impl Dispatch for EndpointDispatch {
    fn on_message(
        &self,
        _flow: &Arc<FlowInfo>,
        _msg: &Message<'_>,
        _out: &mut BytesMut,
    ) -> Handled {
        Handled::Owned
    }

    fn on_owned(
        &self,
        flow: &Arc<FlowInfo>,
        _msg: &Message<'_>,
        wire: &Bytes,
        _out: &mut BytesMut,
    ) {
        let Some(handle) = self.proxy.flows().get(flow.id) else {
            return;
        };
        on_endpoint_message(
            &self.proxy,
            wire,
            Dest::Flow(handle),
            flow.peer,
            Transport::Tcp,
        );
    }

    fn on_unframeable(
        &self,
        flow: &FlowInfo,
        _buf: &[u8],
        error: &ParseError,
        _out: &mut BytesMut,
    ) {
        debug!(flow = %flow.id, error = %error, "unframeable stream from an endpoint; closing");
    }

    fn on_closed(&self, flow: &FlowInfo) {
        if let Some(endpoints) = self.proxy.endpoints() {
            endpoints.flow_closed(flow.peer);
        }
    }
}
