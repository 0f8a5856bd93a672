//! The SIP of the last calls, kept in memory for the status page's ladder diagrams
//! (issue 10). The [`Tap`](crate::transport::Tap) hands every message here: an INVITE
//! with a Call-ID not seen yet opens a ladder (the oldest is forgotten once
//! `[api] ladder_calls` are kept), and every later message with that Call-ID (its
//! responses, ACK, re-INVITEs, BYE, REFER, NOTIFY) is added to it. Everything else
//! (OPTIONS, REGISTER) costs a scan for the Call-ID and one map lookup.
//!
//! A call is several Call-IDs when drhub rings SIP clients or fails over between SBCs;
//! the call table knows which (its legs), and the page merges their ladders by time.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::transport::tap::{Point, Way};
use crate::transport::Transport;

/// How much of one message is kept: a body past this is cut (the ladder needs the
/// start line and headers; a pcap has it all).
const MESSAGE_MAX: usize = 16 * 1024;
/// How many messages one Call-ID keeps: a call refreshed by session timers for days must
/// not grow without end.
const RUNGS_MAX: usize = 400;

/// One message on a ladder.
#[derive(Debug, Clone)]
pub struct Rung {
    pub at: SystemTime,
    pub way: Way,
    pub transport: Transport,
    /// The listener (datacenter) or `endpoints`.
    pub listener: Arc<str>,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// The message as it went on the wire (lossy UTF-8, cut at 16 KiB).
    pub text: Box<str>,
}

impl Rung {
    /// The start line.
    pub fn start_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }

    /// Whether it carries a body (an SDP offer or answer, a NOTIFY's sipfrag).
    pub fn has_body(&self) -> bool {
        self.text
            .split_once("\r\n\r\n")
            .is_some_and(|(_, body)| !body.trim().is_empty())
    }
}

/// The last calls' messages by Call-ID.
#[derive(Debug)]
pub struct Ladders {
    keep: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_call_id: HashMap<Box<str>, Ladder>,
    /// Call-IDs oldest first, to forget the oldest.
    order: VecDeque<Box<str>>,
    /// Listener names, each kept once.
    listeners: Vec<Arc<str>>,
}

/// One Call-ID's messages: their bytes end to end in one buffer, so that a call costs
/// a few allocations, not several per message (this runs for every message of every
/// call on the daemon's hot path).
#[derive(Debug)]
struct Ladder {
    bytes: Vec<u8>,
    rungs: Vec<Meta>,
}

/// Where a message went, and where its bytes are in [`Ladder::bytes`].
#[derive(Debug)]
struct Meta {
    at: SystemTime,
    way: Way,
    transport: Transport,
    listener: Arc<str>,
    local: SocketAddr,
    peer: SocketAddr,
    start: usize,
    end: usize,
}

/// Room for a call's usual messages (an INVITE and a 200 with SDP, the provisional
/// responses, ACK, BYE and its 200) without growing.
const LADDER_BYTES: usize = 8 * 1024;

impl Ladders {
    /// Keeps the messages of the last `keep` Call-IDs that began with an INVITE; 0 keeps
    /// nothing.
    pub fn new(keep: usize) -> Ladders {
        Ladders {
            keep,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn is_on(&self) -> bool {
        self.keep > 0
    }

    /// Records a message the tap saw.
    pub fn record(&self, way: Way, point: &Point<'_>, bytes: &[u8]) {
        if self.keep == 0 {
            return;
        }
        let Some(call_id) = call_id(bytes) else {
            return;
        };
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Inner {
            by_call_id,
            order,
            listeners,
        } = &mut *inner;
        let ladder = match by_call_id.get_mut(call_id) {
            Some(l) => l,
            None if bytes.starts_with(b"INVITE ") => {
                if order.len() >= self.keep {
                    if let Some(old) = order.pop_front() {
                        by_call_id.remove(&old);
                    }
                }
                order.push_back(call_id.into());
                by_call_id.entry(call_id.into()).or_insert_with(|| Ladder {
                    bytes: Vec::with_capacity(LADDER_BYTES),
                    rungs: Vec::with_capacity(8),
                })
            }
            None => return,
        };
        if ladder.rungs.len() >= RUNGS_MAX {
            return;
        }
        let listener = match listeners.iter().find(|l| l.as_ref() == point.listener) {
            Some(l) => l.clone(),
            None => {
                let l: Arc<str> = point.listener.into();
                listeners.push(l.clone());
                l
            }
        };
        let kept = &bytes[..bytes.len().min(MESSAGE_MAX)];
        let start = ladder.bytes.len();
        ladder.bytes.extend_from_slice(kept);
        ladder.rungs.push(Meta {
            at: SystemTime::now(),
            way,
            transport: point.transport,
            listener,
            local: point.local,
            peer: point.peer,
            start,
            end: ladder.bytes.len(),
        });
    }

    /// The messages of these Call-IDs, in the order they went.
    pub fn of(&self, call_ids: &[&str]) -> Vec<Rung> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut rungs: Vec<Rung> = call_ids
            .iter()
            .filter_map(|id| inner.by_call_id.get(*id))
            .flat_map(|l| {
                l.rungs.iter().map(|m| Rung {
                    at: m.at,
                    way: m.way,
                    transport: m.transport,
                    listener: m.listener.clone(),
                    local: m.local,
                    peer: m.peer,
                    text: String::from_utf8_lossy(&l.bytes[m.start..m.end]).into(),
                })
            })
            .collect();
        // Stable: messages recorded in the same instant keep their order.
        rungs.sort_by_key(|r| r.at);
        rungs
    }
}

/// The Call-ID of a message (`Call-ID:` or its compact form `i:`, any case), found by a
/// scan of the header lines without parsing the message.
fn call_id(bytes: &[u8]) -> Option<&str> {
    let mut headers = bytes
        .split(|&b| b == b'\n')
        .skip(1)
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .take_while(|line| !line.is_empty());
    headers.find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        let name = line[..colon].trim_ascii_end();
        let is_call_id = name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i");
        let value = std::str::from_utf8(line[colon + 1..].trim_ascii()).ok()?;
        (is_call_id && !value.is_empty()).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(listener: &str) -> (SocketAddr, SocketAddr, String) {
        (
            "127.0.0.1:5061".parse().unwrap(),
            "127.0.0.1:40000".parse().unwrap(),
            listener.to_owned(),
        )
    }

    impl Ladders {
        fn has(&self, call_id: &str) -> bool {
            !self.of(&[call_id]).is_empty()
        }
    }

    fn feed(l: &Ladders, way: Way, text: &str) {
        let (local, peer, listener) = point("sip");
        let flow = "flow-1";
        let p = Point {
            flow: &flow,
            listener: &listener,
            transport: Transport::Tls,
            local,
            peer,
            traced: true,
        };
        l.record(way, &p, text.as_bytes());
    }

    #[test]
    fn call_id_in_any_form() {
        for (msg, want) in [
            (
                "INVITE sip:a SIP/2.0\r\nCall-ID: abc@h\r\n\r\n",
                Some("abc@h"),
            ),
            ("INVITE sip:a SIP/2.0\r\nCALL-ID:abc\r\n\r\n", Some("abc")),
            (
                "SIP/2.0 200 OK\r\nVia: x\r\ni : short \r\n\r\n",
                Some("short"),
            ),
            ("BYE sip:a SIP/2.0\r\nCall-Info: <x>\r\n\r\n", None),
            ("BYE sip:a SIP/2.0\r\nCall-ID:\r\n\r\n", None),
            ("NOTIFY sip:a SIP/2.0\r\nVia: x\r\n\r\ni: in-body\r\n", None),
        ] {
            assert_eq!(call_id(msg.as_bytes()), want, "{msg:?}");
        }
    }

    #[test]
    fn an_invite_opens_a_ladder_and_its_dialog_follows() {
        let l = Ladders::new(2);
        feed(&l, Way::In, "OPTIONS sip:p SIP/2.0\r\nCall-ID: o1\r\n\r\n");
        feed(&l, Way::In, "BYE sip:p SIP/2.0\r\nCall-ID: unknown\r\n\r\n");
        feed(
            &l,
            Way::In,
            "INVITE sip:p SIP/2.0\r\nCall-ID: c1\r\n\r\nv=0\r\n",
        );
        feed(&l, Way::Out, "SIP/2.0 100 Trying\r\nCall-ID: c1\r\n\r\n");
        feed(&l, Way::Out, "SIP/2.0 200 OK\r\nCall-ID: c1\r\n\r\nv=0\r\n");
        assert!(!l.has("o1") && !l.has("unknown"));
        let rungs = l.of(&["c1"]);
        let lines: Vec<&str> = rungs.iter().map(Rung::start_line).collect();
        assert_eq!(
            lines,
            [
                "INVITE sip:p SIP/2.0",
                "SIP/2.0 100 Trying",
                "SIP/2.0 200 OK"
            ]
        );
        assert!(rungs[0].has_body() && !rungs[1].has_body());
        assert_eq!(rungs[1].way, Way::Out);
    }

    #[test]
    fn the_oldest_call_is_forgotten() {
        let l = Ladders::new(2);
        for id in ["c1", "c2", "c3"] {
            feed(
                &l,
                Way::In,
                &format!("INVITE sip:p SIP/2.0\r\nCall-ID: {id}\r\n\r\n"),
            );
        }
        assert!(!l.has("c1") && l.has("c2") && l.has("c3"));
        assert_eq!(l.of(&["c1", "c2", "c3"]).len(), 2);
        let off = Ladders::new(0);
        feed(&off, Way::In, "INVITE sip:p SIP/2.0\r\nCall-ID: c1\r\n\r\n");
        assert!(!off.has("c1"));
    }

    #[test]
    fn a_long_call_stops_growing() {
        let l = Ladders::new(1);
        feed(&l, Way::In, "INVITE sip:p SIP/2.0\r\nCall-ID: c1\r\n\r\n");
        for _ in 0..RUNGS_MAX + 10 {
            feed(&l, Way::In, "UPDATE sip:p SIP/2.0\r\nCall-ID: c1\r\n\r\n");
        }
        assert_eq!(l.of(&["c1"]).len(), RUNGS_MAX);
    }
}
