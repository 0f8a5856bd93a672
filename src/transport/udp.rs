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
use crate::sip::{recover, Limits, LocalIdentity, Message, ParseError, Recovery, Status, Stored};

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
            traced: true,
        }
    }
}

/// What handles the datagrams of a UDP socket.
pub trait DatagramDispatch: Send + Sync + 'static {
    /// One framed message; responses go back through `from`.
    fn on_datagram(&self, from: Destination, msg: Stored);

    /// A datagram that does not parse as a SIP message; a response, if one can be formed,
    /// goes back through `from` (DR-ERR-3).
    fn on_unframeable(&self, from: Destination, datagram: &[u8], error: &ParseError) {
        debug!(from = %from.label(), error = %error, len = datagram.len(), "unframeable datagram dropped");
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
        let dest = Destination::Udp {
            socket: flow.clone(),
            addr: from,
        };
        match frame_datagram(datagram) {
            Ok(Framed { message, latin1 }) => {
                if latin1 {
                    debug!(%from, "header block is not UTF-8; read as Latin-1");
                }
                dispatch.on_datagram(dest, message)
            }
            Err(e) => dispatch.on_unframeable(dest, datagram, &e),
        }
    }
}

/// One datagram framed as a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed {
    pub message: Stored,
    /// The header block was not UTF-8 and `message` is its Latin-1 reading
    /// ([`crate::sip::recover`]).
    pub latin1: bool,
}

/// Frames one UDP datagram (RFC 3261 §18.3): Content-Length when present; without it the
/// body is the rest of the datagram, which the stream parser cannot express, so the header
/// is added to a copy (a cold path: SIP UAs send Content-Length on UDP too). Bytes after
/// the Content-Length body are dropped; a datagram shorter than its Content-Length is
/// [`ParseError::Truncated`]. A header block that is not UTF-8 is read as Latin-1. The
/// error names the fault a 400 (or 413, 505) reports.
pub fn frame_datagram(datagram: &[u8]) -> Result<Framed, ParseError> {
    let limits = Limits::default();
    match frame_one(datagram, &limits) {
        Err(ParseError::MissingContentLength) => {
            let end = memchr::memmem::find(datagram, b"\r\n\r\n")
                .ok_or(ParseError::MissingContentLength)?;
            let (Some(head), Some(body)) = (datagram.get(..end + 2), datagram.get(end + 4..))
            else {
                return Err(ParseError::MissingContentLength);
            };
            let mut out = Vec::with_capacity(datagram.len() + 24);
            out.extend_from_slice(head);
            out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            out.extend_from_slice(body);
            frame_one(&out, &limits)
        }
        other => other,
    }
}

/// [`frame_datagram`] for bytes that carry Content-Length (or fail without it).
fn frame_one(datagram: &[u8], limits: &Limits) -> Result<Framed, ParseError> {
    let error = match Message::parse(datagram, limits) {
        Ok(Status::Complete(m)) => {
            let bytes = Bytes::copy_from_slice(datagram.get(..m.len()).unwrap_or(datagram));
            // The bytes framed as exactly one message just now.
            let message = Stored::new(bytes).map_err(|_| ParseError::Truncated)?;
            return Ok(Framed {
                message,
                latin1: false,
            });
        }
        Ok(Status::Partial) => return Err(ParseError::Truncated),
        Err(e) => e,
    };
    match recover(datagram, error, limits) {
        Recovery::Latin1 { message, .. } => Ok(Framed {
            message,
            latin1: true,
        }),
        Recovery::Malformed { error, .. } => Err(error),
        // A datagram ends where it ends: a fault found before its end is the one to name.
        Recovery::Partial => Err(error),
        Recovery::Unframeable(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagram_without_content_length_gets_the_rest_as_body() {
        let d = b"MESSAGE sip:a@b.c SIP/2.0\r\nVia: SIP/2.0/UDP h.c;branch=z9hG4bK1\r\n\r\nhello";
        let framed = frame_datagram(d).unwrap();
        assert_eq!(framed.message.message().body(), b"hello");
        assert!(!framed.latin1);
    }

    #[test]
    fn datagram_extra_bytes_after_content_length_are_dropped() {
        let d = b"OPTIONS sip:a@b.c SIP/2.0\r\nContent-Length: 2\r\n\r\nhiJUNK";
        assert_eq!(frame_datagram(d).unwrap().message.len(), d.len() - 4);
    }

    #[test]
    fn datagram_faults_are_named_and_latin1_is_read() {
        use ParseError::*;
        let cases: &[(&[u8], Result<&str, ParseError>)] = &[
            (
                b"OPTIONS sip:a@b.c SIP/2.0\r\nFrom: \"M\xfcller\" <sip:a@b.c>\r\n\r\nhi",
                Ok("From: \"M\u{fc}ller\" <sip:a@b.c>\r\nContent-Length: 2\r\n\r\nhi"),
            ),
            (
                b"OPTIONS sip:a@b.c SIP/2.0\r\nX: \xfc\r\nl: 2\r\n\r\nhi",
                Ok("X: \u{fc}\r\nl: 2\r\n\r\nhi"),
            ),
            (
                b"OPTIONS sip:a@b.c SIP/2.0\r\nl: 9\r\n\r\nhi",
                Err(Truncated),
            ),
            (b"OPTIONS sip:a@b.c SIP/2.0\r\nVia: x\r\n", Err(Truncated)),
            (
                b"OPTIONS sip:a@b.c SIP/2.0\r\nno colon\r\n\r\n",
                Err(MalformedHeaderLine),
            ),
            (
                b"OPTIONS sip:a@b.c SIP/2.0\r\nno colon\r\nl: 0\r\n\r\n",
                Err(MalformedHeaderLine),
            ),
            (b"OPTIONS\r\nVia: x\r\n", Err(BadRequestLine)),
            (b"OPTIONS sip:a@b.c SIP/2.0\nVia: x\n\n", Err(BadLineEnding)),
            (
                b"OPTIONS sip:a@b.c SIP/2.0\r\nl: 1\r\nl: 2\r\n\r\nhi",
                Err(ConflictingContentLength),
            ),
            (
                b"OPTIONS sip:a@b.c SIP/3.0\r\nl: 0\r\n\r\n",
                Err(VersionNotSupported),
            ),
        ];
        for (d, want) in cases {
            let got = frame_datagram(d).map(|f| {
                assert_eq!(f.latin1, !d.is_ascii());
                let text = String::from_utf8(f.message.bytes().to_vec()).unwrap();
                text.split_once("\r\n").unwrap().1.to_owned()
            });
            assert_eq!(
                got,
                want.map(str::to_owned),
                "{:?}",
                String::from_utf8_lossy(d)
            );
        }
    }
}
