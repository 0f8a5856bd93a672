//! The read loop of one stream connection: framing by Content-Length (RFC 3261 §18.3),
//! CRLF keep-alive (RFC 5626 §3.5.1), size limits and the idle and slow-message timers.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::{Dispatch, FlowInfo};
use crate::sip::{self, Message, Status};

/// The per-connection limits, from the `[limits]` section.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    pub sip: sip::Limits,
    pub idle_timeout: Duration,
    pub message_timeout: Duration,
}

/// Why a connection ended; logged once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    PeerClosed,
    Idle,
    SlowMessage,
    Unframeable,
    Shutdown,
    Io,
}

/// Read buffer size kept by an idle connection; grows on demand for large messages
/// and shrinks back once they are processed.
const READ_CHUNK: usize = 4096;
const SHRINK_ABOVE: usize = 64 * 1024;

/// Serves one connection until it closes. `rx` carries bytes other tasks want sent on
/// this connection (responses from calls, requests the proxy originates).
pub async fn serve<S>(
    mut stream: S,
    flow: Arc<FlowInfo>,
    dispatch: Arc<dyn Dispatch>,
    limits: StreamLimits,
    mut rx: mpsc::Receiver<Bytes>,
    shutdown: CancellationToken,
) -> CloseReason
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::new();
    let mut out = BytesMut::new();
    let mut last_activity = Instant::now();
    // When the first byte of a still-incomplete message arrived.
    let mut message_started: Option<Instant> = None;

    let reason = loop {
        // Frame and dispatch everything complete in the buffer, batching the answers.
        let mut fatal = false;
        loop {
            skip_keepalives(&mut buf, &mut out);
            if buf.is_empty() || buf.as_ref() == b"\r\n" {
                message_started = None;
                break;
            }
            match Message::parse(&buf, &limits.sip) {
                Ok(Status::Complete(msg)) => {
                    let len = msg.len();
                    dispatch.on_message(&flow, &msg, &mut out);
                    buf.advance(len);
                    message_started = None;
                }
                Ok(Status::Partial) => {
                    message_started.get_or_insert(Instant::now());
                    break;
                }
                Err(e) => {
                    info!(flow = %flow.id, peer = %flow.peer, error = %e, "unframeable stream; closing");
                    dispatch.on_unframeable(&flow, &buf, &e, &mut out);
                    fatal = true;
                    break;
                }
            }
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                break CloseReason::Io;
            }
            out.clear();
            if out.capacity() > SHRINK_ABOVE {
                out = BytesMut::new();
            }
        }
        if fatal {
            break CloseReason::Unframeable;
        }
        if buf.is_empty() && buf.capacity() > SHRINK_ABOVE {
            buf = BytesMut::new();
        }

        let idle_deadline = last_activity + limits.idle_timeout;
        let deadline = match message_started {
            Some(t) => idle_deadline.min(t + limits.message_timeout),
            None => idle_deadline,
        };
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            read = stream.read_buf(&mut buf) => match read {
                Ok(0) => break CloseReason::PeerClosed,
                Ok(_) => last_activity = Instant::now(),
                Err(e) => {
                    debug!(flow = %flow.id, error = %e, "read failed");
                    break CloseReason::Io;
                }
            },
            queued = rx.recv() => {
                // The sender side lives in the registry as long as the flow does.
                let Some(bytes) = queued else { break CloseReason::Shutdown };
                if stream.write_all(&bytes).await.is_err() {
                    break CloseReason::Io;
                }
                last_activity = Instant::now();
            }
            _ = tokio::time::sleep_until(deadline) => {
                break if message_started.is_some_and(|t| t + limits.message_timeout <= Instant::now()) {
                    CloseReason::SlowMessage
                } else {
                    CloseReason::Idle
                };
            }
            _ = shutdown.cancelled() => break CloseReason::Shutdown,
        }
    };
    // Flush and close cleanly (TLS close_notify); a peer that already left is fine.
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.shutdown()).await;
    reason
}

/// Consumes leading keep-alives: each double CRLF (ping) is answered with one CRLF
/// (pong); a lone CRLF (a pong, or a bare keep-alive) is dropped silently. A single
/// trailing CRLF is kept in case its pair is still in flight.
fn skip_keepalives(buf: &mut BytesMut, out: &mut BytesMut) {
    loop {
        if buf.starts_with(b"\r\n\r\n") {
            buf.advance(4);
            out.extend_from_slice(b"\r\n");
        } else if buf.starts_with(b"\r\n") && buf.len() > 2 {
            buf.advance(2);
        } else {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut buf = BytesMut::from(input);
        let mut out = BytesMut::new();
        skip_keepalives(&mut buf, &mut out);
        (buf.to_vec(), out.to_vec())
    }

    #[test]
    fn dr_tls_3_double_crlf_ping_gets_single_crlf_pong() {
        assert_eq!(run(b"\r\n\r\n"), (vec![], b"\r\n".to_vec()));
        assert_eq!(run(b"\r\n\r\n\r\n\r\n"), (vec![], b"\r\n\r\n".to_vec()));
        assert_eq!(
            run(b"\r\n\r\nOPTIONS"),
            (b"OPTIONS".to_vec(), b"\r\n".to_vec())
        );
    }

    #[test]
    fn dr_tls_3_lone_crlf_is_not_answered() {
        // Trailing lone CRLF: kept, its pair may still arrive.
        assert_eq!(run(b"\r\n"), (b"\r\n".to_vec(), vec![]));
        // Followed by a message: dropped.
        assert_eq!(run(b"\r\nINVITE"), (b"INVITE".to_vec(), vec![]));
    }
}
