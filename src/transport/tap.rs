//! The one place every SIP byte drhub reads or writes passes: stream messages as they are
//! framed, what is written to a stream, and every datagram in and out. Today it logs each
//! message whole at `debug` (target `drhub::wire`), with its flow and addresses; trace
//! files, pcap and HEP and the status page's ladders (issue 10) hang here too, so no
//! code path can bypass them.

use std::net::SocketAddr;
use std::sync::Arc;

use tracing::debug;

use super::Transport;
use crate::observe::ladder::Ladders;

/// Which way the bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    In,
    Out,
}

impl Way {
    fn as_str(self) -> &'static str {
        match self {
            Way::In => "in",
            Way::Out => "out",
        }
    }
}

/// Where the bytes went: enough to draw a ladder or write a packet.
#[derive(Clone, Copy)]
pub struct Point<'a> {
    /// `flow-7`, or `udp` for datagrams.
    pub flow: &'a (dyn std::fmt::Display + Sync),
    pub listener: &'a str,
    pub transport: Transport,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// The protocol trace covers this flow (a trunk's `trace = false` leaves its SBC's
    /// connections out; the wire log still has them).
    pub traced: bool,
}

/// The tap. Shared by every flow; cheap when nothing listens.
#[derive(Debug)]
pub struct Tap {
    /// The protocol trace files (`[trace]`), when on.
    trace: Option<crate::observe::trace::Trace>,
    /// The FQDNs of trunks with `trace = false`.
    untraced: Vec<String>,
    /// The last calls' messages for the status page's ladders (every SBC's).
    ladders: Arc<Ladders>,
}

impl Default for Tap {
    fn default() -> Tap {
        Tap::new()
    }
}

impl Tap {
    pub fn new() -> Tap {
        Tap {
            trace: None,
            untraced: Vec::new(),
            ladders: Arc::new(Ladders::new(0)),
        }
    }

    /// A tap that also writes the protocol trace, but for the connections of the SBCs
    /// named in `untraced`, and keeps the last calls' messages in `ladders`.
    pub fn with_trace(
        trace: Option<crate::observe::trace::Trace>,
        untraced: Vec<String>,
        ladders: Arc<Ladders>,
    ) -> Tap {
        Tap {
            trace,
            untraced,
            ladders,
        }
    }

    /// The last calls' messages, for the status page.
    pub fn ladders(&self) -> &Arc<Ladders> {
        &self.ladders
    }

    /// Whether the protocol trace is on (and wants [`Tap::flush`]).
    pub fn traces_anything(&self) -> bool {
        self.trace.is_some()
    }

    /// Writes out what the trace files hold in their buffers.
    pub fn flush(&self) {
        if let Some(t) = &self.trace {
            t.flush();
        }
    }

    /// Whether the trace covers a connection whose peer presented `identity`.
    pub fn traces(&self, identity: Option<&super::tls::PeerIdentity>) -> bool {
        match identity {
            Some(id) => !self.untraced.iter().any(|f| id.matches(f)),
            None => true,
        }
    }

    /// Records bytes read or written at `point`.
    pub fn record(&self, way: Way, point: &Point<'_>, bytes: &[u8]) {
        if bytes.iter().all(|b| matches!(b, b'\r' | b'\n')) {
            return; // keep-alives (DR-TLS-3) are not messages
        }
        if let (Some(t), true) = (&self.trace, point.traced) {
            t.record(way, point, bytes);
        }
        self.ladders.record(way, point, bytes);
        debug!(
            target: "drhub::wire",
            flow = %point.flow,
            listener = point.listener,
            transport = %point.transport,
            local = %point.local,
            peer = %point.peer,
            way = way.as_str(),
            "\n{}",
            String::from_utf8_lossy(bytes)
        );
    }
}
