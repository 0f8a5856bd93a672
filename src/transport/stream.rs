//! The read loop of one stream connection: framing by Content-Length (RFC 3261 §18.3),
//! CRLF keep-alive (RFC 5626 §3.5.1), size limits and the idle and slow-message timers.
//! A message that does not parse but can be delimited is answered and skipped (DR-ERR-3),
//! one whose header block is not UTF-8 is read as Latin-1 ([`sip::recover`]); only a
//! stream that cannot be framed is closed (DR-TLS-2).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::tap::{Point, Way};
use super::{Dispatch, FlowInfo, Handled, Tap};
use crate::sip::{self, Message, Recovery, Status, Stored};

/// The per-connection limits, from the `[limits]` section.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    pub sip: sip::Limits,
    /// A connection with no traffic for this long is closed, unless the dispatcher
    /// keeps it ([`Dispatch::keep_idle`]).
    pub idle_timeout: Duration,
    pub message_timeout: Duration,
    /// A write the peer does not take within this time closes the connection.
    pub write_timeout: Duration,
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
    /// The peer took no bytes for `write_timeout`.
    WriteTimeout,
    /// Other tasks queued more than the connection could take: the peer is not reading.
    SendQueueFull,
}

/// Read buffer size kept by an idle connection; grows on demand for large messages
/// and shrinks back once they are processed.
const READ_CHUNK: usize = 4096;
const SHRINK_ABOVE: usize = 64 * 1024;

/// Serves one connection until it closes. `rx` carries bytes other tasks want sent on
/// this connection (responses from calls, requests the proxy originates); `close` is
/// cancelled when that queue overflowed (see [`FlowHandle::send`](super::FlowHandle::send)).
///
/// Writing comes before reading: everything queued is written before more is read, so
/// a peer that sends faster than the daemon answers is slowed by TCP itself (its
/// requests wait in the socket buffers, not in memory), and the queue only fills when
/// the peer does not read. A write the peer does not take within
/// [`StreamLimits::write_timeout`] closes the connection.
#[allow(clippy::too_many_arguments)]
pub async fn serve<S>(
    mut stream: S,
    flow: Arc<FlowInfo>,
    dispatch: Arc<dyn Dispatch>,
    limits: StreamLimits,
    mut rx: mpsc::Receiver<Bytes>,
    close: CancellationToken,
    shutdown: CancellationToken,
    tap: Arc<Tap>,
) -> CloseReason
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let point = Point {
        flow: &flow.id,
        listener: &flow.listener,
        transport: flow.transport,
        local: flow.local,
        peer: flow.peer,
        traced: tap.traces(flow.identity.as_deref()),
    };
    let mut buf = BytesMut::new();
    let mut out = BytesMut::new();
    let mut last_activity = Instant::now();
    // Until when the dispatcher asked to keep an idle connection (a registration on it).
    let mut kept_until: Option<Instant> = None;
    // When the first byte of a still-incomplete message arrived.
    let mut message_started: Option<Instant> = None;
    // Made once and polled in every round: a fresh cancellation future registers a
    // waiter under a lock, a fresh timer a timer-wheel entry, per round of messages.
    let shutdown_wait = shutdown.cancelled();
    let close_wait = close.cancelled();
    let timer = tokio::time::sleep_until(last_activity + limits.idle_timeout);
    tokio::pin!(shutdown_wait, close_wait, timer);

    let reason = loop {
        // Frame and dispatch everything complete in the buffer, batching the answers.
        // What `out` holds already (queued by other tasks) went through the tap; each
        // answer the dispatcher writes goes through it as a message of its own.
        let mut tapped: usize;
        let mut fatal = false;
        loop {
            skip_keepalives(&mut buf, &mut out);
            // A keep-alive's answer is no message (DR-TLS-3).
            tapped = out.len();
            if buf.is_empty() || buf.as_ref() == b"\r\n" {
                message_started = None;
                break;
            }
            match Message::parse(&buf, &limits.sip) {
                Ok(Status::Complete(msg)) => {
                    let len = msg.len();
                    tap.record(Way::In, &point, &buf[..len]);
                    let handled = dispatch.on_message(&flow, &msg, &mut out);
                    tap_new(&tap, &point, &out, &mut tapped);
                    message_started = None;
                    if handled == Handled::Done {
                        buf.advance(len);
                        continue;
                    }
                    // An exact-size copy: a zero-copy split would keep the whole read
                    // chunk alive for as long as a transaction holds the message (32 s
                    // after a 2xx), which costs far more memory than the copy costs time.
                    let wire = Stored::new(Bytes::copy_from_slice(&buf[..len]));
                    buf.advance(len);
                    match wire {
                        Ok(wire) => {
                            dispatch.on_owned(&flow, wire, &mut out);
                            tap_new(&tap, &point, &out, &mut tapped);
                        }
                        // The same bytes framed a moment ago; this cannot happen.
                        Err(e) => debug!(flow = %flow.id, error = %e, "message lost on copy"),
                    }
                }
                Ok(Status::Partial) => {
                    message_started.get_or_insert(Instant::now());
                    break;
                }
                Err(e) => match sip::recover(&buf, e, &limits.sip) {
                    Recovery::Partial => {
                        message_started.get_or_insert(Instant::now());
                        break;
                    }
                    Recovery::Latin1 { message, len } => {
                        debug!(flow = %flow.id, "header block is not UTF-8; read as Latin-1");
                        tap.record(Way::In, &point, &buf[..len]);
                        buf.advance(len);
                        message_started = None;
                        let handled = dispatch.on_message(&flow, &message.message(), &mut out);
                        tap_new(&tap, &point, &out, &mut tapped);
                        if handled == Handled::Owned {
                            dispatch.on_owned(&flow, message, &mut out);
                            tap_new(&tap, &point, &out, &mut tapped);
                        }
                    }
                    Recovery::Malformed { len, error } => {
                        tap.record(Way::In, &point, &buf[..len]);
                        dispatch.on_malformed(&flow, &buf[..len], &error, &mut out);
                        tap_new(&tap, &point, &out, &mut tapped);
                        buf.advance(len);
                        message_started = None;
                    }
                    Recovery::Unframeable(e) => {
                        crate::info_limited!(flow = %flow.id, peer = %flow.peer, error = %e, "unframeable stream; closing");
                        tap.record(Way::In, &point, &buf);
                        dispatch.on_unframeable(&flow, &buf, &e, &mut out);
                        tap_new(&tap, &point, &out, &mut tapped);
                        fatal = true;
                        break;
                    }
                },
            }
        }
        // Anything else written (a keep-alive's answer) goes through the tap too.
        tap_new(&tap, &point, &out, &mut tapped);
        // What other tasks queued goes out in the same write.
        let mut gone = false;
        while out.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(bytes) => {
                    tap.record(Way::Out, &point, &bytes);
                    out.extend_from_slice(&bytes);
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    gone = true;
                    break;
                }
            }
        }
        if !out.is_empty() {
            if let Err(reason) = write(&mut stream, &out, limits.write_timeout).await {
                break reason;
            }
            last_activity = Instant::now();
            out.clear();
            if out.capacity() > SHRINK_ABOVE {
                out = BytesMut::new();
            }
        }
        if fatal {
            break CloseReason::Unframeable;
        }
        if gone {
            // The sender side lives in the registry as long as the flow does.
            break CloseReason::Shutdown;
        }
        if buf.is_empty() && buf.capacity() > SHRINK_ABOVE {
            buf = BytesMut::new();
        }

        let idle_deadline =
            (last_activity + limits.idle_timeout).max(kept_until.unwrap_or(last_activity));
        let deadline = match message_started {
            Some(t) => idle_deadline.min(t + limits.message_timeout),
            None => idle_deadline,
        };
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        // The timer is only ever moved earlier here. Activity moves the deadline later,
        // and the timer catches up when it fires: moving it on every message would
        // update the timer wheel every time.
        if deadline < timer.deadline() {
            timer.as_mut().reset(deadline);
        }
        tokio::select! {
            biased;
            _ = &mut shutdown_wait => break CloseReason::Shutdown,
            _ = &mut close_wait => break CloseReason::SendQueueFull,
            queued = rx.recv() => {
                let Some(bytes) = queued else { break CloseReason::Shutdown };
                tap.record(Way::Out, &point, &bytes);
                out.extend_from_slice(&bytes);
            }
            read = stream.read_buf(&mut buf) => match read {
                Ok(0) => break CloseReason::PeerClosed,
                Ok(_) => last_activity = Instant::now(),
                Err(e) => {
                    debug!(flow = %flow.id, error = %e, "read failed");
                    break CloseReason::Io;
                }
            },
            _ = &mut timer => {
                let now = Instant::now();
                if now < deadline {
                    // There was activity since the timer was set.
                    timer.as_mut().reset(deadline);
                } else if message_started.is_some_and(|t| t + limits.message_timeout <= now) {
                    break CloseReason::SlowMessage;
                } else {
                    match dispatch.keep_idle(&flow) {
                        Some(longer) => {
                            kept_until = Some(now + longer);
                            timer.as_mut().reset(now + longer);
                        }
                        None => break CloseReason::Idle,
                    }
                }
            }
        }
    };
    // Flush and close cleanly (TLS close_notify); a peer that already left is fine.
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.shutdown()).await;
    reason
}

/// Bytes of queued messages gathered into one write.
const WRITE_BATCH: usize = 64 * 1024;

/// Writes all of `bytes` within `limit`.
async fn write<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    limit: Duration,
) -> Result<(), CloseReason> {
    match tokio::time::timeout(limit, stream.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(CloseReason::Io),
        Err(_) => Err(CloseReason::WriteTimeout),
    }
}

/// Consumes leading keep-alives: each double CRLF (ping) is answered with one CRLF
/// (pong); a lone CRLF (a pong, or a bare keep-alive) is dropped silently. A single
/// trailing CRLF is kept in case its pair is still in flight.
/// Passes what was written to `out` since `tapped` through the tap, as one message.
fn tap_new(tap: &Tap, point: &super::tap::Point<'_>, out: &BytesMut, tapped: &mut usize) {
    if out.len() > *tapped {
        tap.record(Way::Out, point, &out[*tapped..]);
        *tapped = out.len();
    }
}

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

    // Virtual-time tests: `serve` over an in-memory duplex with paused tokio time, so
    // the timers fire at exact virtual instants and no test waits in real time.
    mod timers {
        use super::super::*;
        use crate::sip::{LocalIdentity, ParseError, Transport};
        use crate::transport::{Direction, Dispatch, FlowId, FlowInfo, Handled};
        use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

        /// Answers every framed message with its own length, so framing is visible.
        struct Echo;
        impl Dispatch for Echo {
            fn on_message(
                &self,
                _: &Arc<FlowInfo>,
                msg: &Message<'_>,
                out: &mut BytesMut,
            ) -> Handled {
                // INVITEs take the owned path, everything else the borrowed one.
                if msg.method() == Some(crate::sip::Method::Invite) {
                    return Handled::Owned;
                }
                out.extend_from_slice(format!("len={}\n", msg.len()).as_bytes());
                Handled::Done
            }
            fn on_owned(&self, _: &Arc<FlowInfo>, wire: Stored, out: &mut BytesMut) {
                assert_eq!(wire.message().len(), wire.len());
                out.extend_from_slice(format!("owned={}\n", wire.len()).as_bytes());
            }
            fn on_unframeable(&self, _: &FlowInfo, _: &[u8], e: &ParseError, out: &mut BytesMut) {
                out.extend_from_slice(format!("bad={}\n", e.status()).as_bytes());
            }
            fn on_malformed(&self, _: &FlowInfo, raw: &[u8], e: &ParseError, out: &mut BytesMut) {
                let line = format!("malformed={} {}\n", raw.len(), e.reason());
                out.extend_from_slice(line.as_bytes());
            }
        }

        fn limits(idle: u64, message: u64) -> StreamLimits {
            StreamLimits {
                sip: sip::Limits::default(),
                idle_timeout: Duration::from_secs(idle),
                message_timeout: Duration::from_secs(message),
                write_timeout: Duration::from_secs(10),
            }
        }

        fn start(
            l: StreamLimits,
        ) -> (
            DuplexStream,
            tokio::task::JoinHandle<CloseReason>,
            mpsc::Sender<Bytes>,
        ) {
            start_with(l, 64 * 1024, CancellationToken::new())
        }

        fn start_with(
            l: StreamLimits,
            pipe: usize,
            close: CancellationToken,
        ) -> (
            DuplexStream,
            tokio::task::JoinHandle<CloseReason>,
            mpsc::Sender<Bytes>,
        ) {
            let (client, server) = duplex(pipe);
            let flow = Arc::new(FlowInfo {
                id: FlowId::next(),
                peer: "192.0.2.1:5061".parse().unwrap(),
                local: "127.0.0.1:5061".parse().unwrap(),
                listener: "sip".into(),
                proxy: LocalIdentity::new(
                    "sip.pstnhub.microsoft.com",
                    5061,
                    Transport::Tls,
                    "drhub",
                    crate::sip::build::Style::Rfc3261,
                ),
                transport: Transport::Tls,
                direction: Direction::Inbound,
                identity: None,
            });
            let (tx, rx) = mpsc::channel(4);
            let task = tokio::spawn(serve(
                server,
                flow,
                Arc::new(Echo),
                l,
                rx,
                close,
                CancellationToken::new(),
                Arc::new(Tap::new()),
            ));
            (client, task, tx)
        }

        const MSG: &[u8] = b"OPTIONS sip:a.b SIP/2.0\r\nVia: SIP/2.0/TLS a.b;branch=z9hG4bK1\r\nFrom: <sip:a.b>;tag=1\r\nTo: <sip:a.b>\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

        #[tokio::test(start_paused = true)]
        async fn idle_connection_closes_exactly_at_the_idle_timeout() {
            let t0 = tokio::time::Instant::now();
            let (_client, task, _tx) = start(limits(600, 10));
            assert_eq!(task.await.unwrap(), CloseReason::Idle);
            assert_eq!(t0.elapsed(), Duration::from_secs(600));
        }

        #[tokio::test(start_paused = true)]
        async fn dr_tls_3_keepalives_keep_a_connection_alive() {
            let t0 = tokio::time::Instant::now();
            let (mut client, task, _tx) = start(limits(60, 10));
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(50)).await;
                client.write_all(b"\r\n\r\n").await.unwrap();
                let mut pong = [0u8; 2];
                client.read_exact(&mut pong).await.unwrap();
                assert_eq!(&pong, b"\r\n");
            }
            assert_eq!(task.await.unwrap(), CloseReason::Idle);
            assert_eq!(t0.elapsed(), Duration::from_secs(250 + 60));
        }

        #[tokio::test(start_paused = true)]
        async fn dr_tls_2_trickled_message_is_cut_at_the_message_timeout() {
            let t0 = tokio::time::Instant::now();
            let (mut client, task, _tx) = start(limits(600, 10));
            // One byte a second: never idle, never complete.
            let writer = tokio::spawn(async move {
                for b in MSG {
                    if client.write_all(&[*b]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                client
            });
            assert_eq!(task.await.unwrap(), CloseReason::SlowMessage);
            assert_eq!(t0.elapsed(), Duration::from_secs(10));
            drop(writer);
        }

        #[tokio::test(start_paused = true)]
        async fn pipelined_messages_in_one_write_are_all_framed() {
            let (mut client, task, _tx) = start(limits(600, 10));
            let three = [MSG, MSG, MSG].concat();
            client.write_all(&three).await.unwrap();
            let mut got = vec![0u8; 3 * format!("len={}\n", MSG.len()).len()];
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(
                String::from_utf8(got).unwrap(),
                format!("len={0}\nlen={0}\nlen={0}\n", MSG.len())
            );
            drop(client);
            assert_eq!(task.await.unwrap(), CloseReason::PeerClosed);
        }

        #[tokio::test(start_paused = true)]
        async fn owned_path_gets_exactly_the_message_bytes_in_order() {
            let (mut client, _task, _tx) = start(limits(600, 10));
            let invite = String::from_utf8_lossy(MSG).replace("OPTIONS", "INVITE");
            let all = [MSG, invite.as_bytes(), MSG].concat();
            client.write_all(&all).await.unwrap();
            let expect = format!("len={0}\nowned={1}\nlen={0}\n", MSG.len(), invite.len());
            let mut got = vec![0u8; expect.len()];
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), expect);
        }

        #[tokio::test(start_paused = true)]
        async fn queued_bytes_from_other_tasks_are_written() {
            let (mut client, _task, tx) = start(limits(600, 10));
            tx.send(Bytes::from_static(b"NOTIFY")).await.unwrap();
            let mut got = [0u8; 6];
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"NOTIFY");
        }

        /// MSG with `from` in place of its From value.
        fn with_from(from: &[u8], method: &str) -> Vec<u8> {
            let text = String::from_utf8_lossy(MSG).replace("OPTIONS", method);
            let (a, b) = text.split_once("<sip:a.b>;tag=1").unwrap();
            [a.as_bytes(), from, b"<sip:a.b>;tag=1", b.as_bytes()].concat()
        }

        async fn expect(client: &mut DuplexStream, want: &str) {
            let mut got = vec![0u8; want.len()];
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(String::from_utf8_lossy(&got), want);
        }

        #[tokio::test(start_paused = true)]
        async fn dr_err_3_malformed_message_is_answered_skipped_and_the_stream_goes_on() {
            let (mut client, task, _tx) = start(limits(600, 10));
            let bad = String::from_utf8_lossy(MSG)
                .replace("Call-ID: 1\r\n", "Call-ID: 1\r\nno colon\r\n")
                .into_bytes();
            // The fault is in the first write; the message ends in the second.
            let all = [bad.as_slice(), MSG].concat();
            let cut = bad.len() - 20;
            client.write_all(&all[..cut]).await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
            client.write_all(&all[cut..]).await.unwrap();
            let want = format!(
                "malformed={} Malformed Header Line\nlen={}\n",
                bad.len(),
                MSG.len()
            );
            expect(&mut client, &want).await;
            client.write_all(MSG).await.unwrap();
            expect(&mut client, &format!("len={}\n", MSG.len())).await;
            drop(client);
            assert_eq!(task.await.unwrap(), CloseReason::PeerClosed);
        }

        #[tokio::test(start_paused = true)]
        async fn latin1_header_block_is_dispatched_as_utf8_and_framed_on_its_own_length() {
            let (mut client, task, _tx) = start(limits(600, 10));
            let options = with_from(b"\"M\xfcller\" ", "OPTIONS");
            let invite = with_from(b"\"M\xfcller\" ", "INVITE");
            client
                .write_all(&[options.as_slice(), &invite, MSG].concat())
                .await
                .unwrap();
            // Each copy is one byte longer (0xFC is two bytes in UTF-8); the next message
            // is framed where the original ended.
            let want = format!(
                "len={}\nowned={}\nlen={}\n",
                options.len() + 1,
                invite.len() + 1,
                MSG.len()
            );
            expect(&mut client, &want).await;
            drop(client);
            assert_eq!(task.await.unwrap(), CloseReason::PeerClosed);
        }

        #[tokio::test(start_paused = true)]
        async fn dr_tls_2_conflicting_content_length_is_answered_then_closed() {
            let (mut client, task, _tx) = start(limits(600, 10));
            let two = String::from_utf8_lossy(MSG)
                .replace("Content-Length: 0", "Content-Length: 0\r\nl: 5")
                .into_bytes();
            client
                .write_all(&[two.as_slice(), MSG].concat())
                .await
                .unwrap();
            let mut got = String::new();
            client.read_to_string(&mut got).await.unwrap();
            assert_eq!(got, "bad=400\n");
            assert_eq!(task.await.unwrap(), CloseReason::Unframeable);
        }

        #[tokio::test(start_paused = true)]
        async fn a_peer_that_sends_but_never_reads_is_closed_at_the_write_timeout() {
            // A 1 KiB pipe: the answers to a few hundred pipelined requests cannot all
            // be written while the peer reads nothing.
            let t0 = tokio::time::Instant::now();
            let (mut client, task, _tx) =
                start_with(limits(600, 10), 1024, CancellationToken::new());
            let many = MSG.repeat(200);
            let writer = tokio::spawn(async move {
                let _ = client.write_all(&many).await;
                // Keep the pipe open, never read.
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(client);
            });
            assert_eq!(task.await.unwrap(), CloseReason::WriteTimeout);
            // Closed after the write timeout, long before the idle timeout.
            assert!(t0.elapsed() >= Duration::from_secs(10));
            assert!(t0.elapsed() < Duration::from_secs(11));
            writer.abort();
        }

        #[tokio::test(start_paused = true)]
        async fn a_full_send_queue_closes_the_connection() {
            let close = CancellationToken::new();
            let (_client, task, _tx) = start_with(limits(600, 10), 64 * 1024, close.clone());
            close.cancel();
            assert_eq!(task.await.unwrap(), CloseReason::SendQueueFull);
        }

        #[tokio::test(start_paused = true)]
        async fn queued_messages_go_out_before_more_is_read() {
            let (mut client, _task, tx) = start(limits(600, 10));
            tx.send(Bytes::from_static(b"ONE\n")).await.unwrap();
            tx.send(Bytes::from_static(b"TWO\n")).await.unwrap();
            client.write_all(MSG).await.unwrap();
            let expect = format!("ONE\nTWO\nlen={}\n", MSG.len());
            let mut got = vec![0u8; expect.len()];
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), expect);
        }

        #[tokio::test(start_paused = true)]
        async fn dr_tls_2_unframeable_stream_is_answered_then_closed() {
            let (mut client, task, _tx) = start(limits(600, 10));
            let no_length = b"OPTIONS sip:a.b SIP/2.0\r\nVia: SIP/2.0/TLS a.b\r\n\r\n";
            client.write_all(no_length).await.unwrap();
            let mut got = String::new();
            client.read_to_string(&mut got).await.unwrap();
            assert_eq!(got, "bad=400\n");
            assert_eq!(task.await.unwrap(), CloseReason::Unframeable);
        }
    }
}
