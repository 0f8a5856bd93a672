//! The UDP socket of the endpoint side: datagrams in (one message each, RFC 3261 §18.3),
//! datagrams out through the same socket, both through the [`Tap`].

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::tap::{Point, Way};
use super::{Destination, Tap, Transport};
use crate::sip::{LocalIdentity, Message, ParseError, Status, Stored};

/// The largest datagram read (a SIP message over UDP stays well below).
const MAX_DATAGRAM: usize = 65_535;

/// A bound UDP socket and how the proxy names itself on it.
#[derive(Debug)]
pub struct UdpFlow {
    socket: UdpSocket,
    pub local: SocketAddr,
    pub listener: String,
    pub proxy: LocalIdentity,
    tap: Arc<Tap>,
}

impl UdpFlow {
    pub fn new(
        socket: UdpSocket,
        listener: String,
        proxy: LocalIdentity,
        tap: Arc<Tap>,
    ) -> std::io::Result<UdpFlow> {
        Ok(UdpFlow {
            local: socket.local_addr()?,
            socket,
            listener,
            proxy,
            tap,
        })
    }

    /// Sends one datagram without waiting; false when the kernel refused it.
    pub fn send_to(&self, bytes: &[u8], addr: SocketAddr) -> bool {
        self.tap.record(Way::Out, &self.point(addr), bytes);
        self.socket.try_send_to(bytes, addr).is_ok()
    }

    fn point(&self, peer: SocketAddr) -> Point<'_> {
        Point {
            flow: &"udp",
            listener: &self.listener,
            transport: Transport::Udp,
            local: self.local,
            peer,
        }
    }
}

/// What handles the datagrams of a UDP socket.
pub trait DatagramDispatch: Send + Sync + 'static {
    /// One framed message; responses go back through `from`.
    fn on_datagram(&self, from: Destination, msg: Stored);

    /// A datagram that is not a SIP message.
    fn on_unframeable(&self, from: SocketAddr, datagram: &[u8], error: &ParseError) {
        debug!(%from, error = %error, len = datagram.len(), "unframeable datagram dropped");
    }
}

/// Receives datagrams until shutdown.
pub async fn serve(
    flow: Arc<UdpFlow>,
    dispatch: Arc<dyn DatagramDispatch>,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) = tokio::select! {
            r = flow.socket.recv_from(&mut buf) => match r {
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
        flow.tap.record(Way::In, &flow.point(from), datagram);
        match frame_datagram(datagram) {
            Ok(msg) => dispatch.on_datagram(
                Destination::Udp {
                    socket: flow.clone(),
                    addr: from,
                },
                msg,
            ),
            Err(e) => dispatch.on_unframeable(from, datagram, &e),
        }
    }
}

/// Frames one UDP datagram (RFC 3261 §18.3): Content-Length when present; without it the
/// body is the rest of the datagram, which the stream parser cannot express, so the header
/// is added to a copy (a cold path: SIP UAs send Content-Length on UDP too). Bytes after
/// the Content-Length body are dropped.
pub fn frame_datagram(datagram: &[u8]) -> Result<Stored, ParseError> {
    let limits = crate::sip::Limits::default();
    let bytes = match Message::parse(datagram, &limits) {
        Ok(Status::Complete(m)) => Bytes::copy_from_slice(&datagram[..m.len()]),
        Ok(Status::Partial) => return Err(ParseError::BodyTooLarge),
        Err(ParseError::MissingContentLength) => {
            let end = memchr::memmem::find(datagram, b"\r\n\r\n")
                .ok_or(ParseError::MissingContentLength)?;
            let body = &datagram[end + 4..];
            let mut out = Vec::with_capacity(datagram.len() + 24);
            out.extend_from_slice(&datagram[..end + 2]);
            out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            out.extend_from_slice(body);
            Bytes::from(out)
        }
        Err(e) => return Err(e),
    };
    // The bytes framed as exactly one message above (or were made to).
    Stored::new(bytes).map_err(|_| ParseError::MissingContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagram_without_content_length_gets_the_rest_as_body() {
        let d = b"MESSAGE sip:a@b.c SIP/2.0\r\nVia: SIP/2.0/UDP h.c;branch=z9hG4bK1\r\n\r\nhello";
        let framed = frame_datagram(d).unwrap();
        assert_eq!(framed.message().body(), b"hello");
    }

    #[test]
    fn datagram_extra_bytes_after_content_length_are_dropped() {
        let d = b"OPTIONS sip:a@b.c SIP/2.0\r\nContent-Length: 2\r\n\r\nhiJUNK";
        assert_eq!(frame_datagram(d).unwrap().len(), d.len() - 4);
    }
}
