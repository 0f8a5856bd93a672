//! Client transactions (RFC 3261 §17.1, with RFC 6026 §7.2 and §8 for the INVITE
//! "Accepted" state): sans-IO state machines that own one request drhub sent, retransmit
//! it on unreliable transports, filter the responses up to the TU and ACK non-2xx finals.
//!
//! Inputs: the wire ([`ClientInput`]: a matching response, a transport failure) and the
//! clock (`handle_timeout`). Outputs: `poll_transmit` (the request, its retransmissions,
//! the ACK), `poll_event` ([`ClientEvent`] for the TU), `poll_timeout`.
//!
//! Also here: [`build_ack`] (§17.1.1.3) and [`build_cancel`] (§9.1), which copy the
//! fields the RFC requires verbatim from the original request.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use super::{drain, Timer, TimerSet, Timers};
use crate::sip::{HeaderName, Limits, Message, Method, StartLine, Status, Stored, Transport};

/// Client transaction states (RFC 3261 Figures 5 and 6, RFC 6026 Figure 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// INVITE: sent, nothing heard yet.
    Calling,
    /// Non-INVITE: sent, nothing heard yet.
    Trying,
    /// A provisional arrived.
    Proceeding,
    /// A final arrived (3xx-6xx for INVITE); absorbing its retransmissions.
    Completed,
    /// INVITE (RFC 6026): a 2xx arrived; further 2xx (other forks downstream) go to the
    /// TU until Timer M.
    Accepted,
    /// Over: the layer forgets the transaction.
    Terminated,
}

/// What the wire or the transport tells a client transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientInput {
    /// A response matching the transaction (§17.1.3).
    Response {
        /// Its status code (100-699).
        code: u16,
        /// The response, passed to the TU as it is.
        wire: Stored,
    },
    /// The transport could not deliver the request or the ACK (§17.1.4).
    TransportError,
}

/// What a client transaction tells its TU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A 1xx.
    Provisional(Stored),
    /// The first final response. For an INVITE's 3xx-6xx the transaction has already
    /// sent the ACK; for a 2xx the ACK is the TU's (§13.2.2.4).
    Final(Stored),
    /// RFC 6026 §7.2: another 2xx in Accepted (a retransmission, or a different fork's 2xx
    /// downstream); the TU ACKs it, and BYEs it if it is a second dialog.
    Additional2xx(Stored),
    /// Timer B (INVITE, Calling) or Timer F (non-INVITE) fired: no final response.
    Timeout(Timer),
    /// The transport failed (§17.1.4).
    TransportError,
}

/// Why an ACK or CANCEL could not be built from the original request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The original request is not an INVITE.
    #[error("the original request is not an INVITE")]
    NotAnInvite,
    /// The message acknowledged is not a response.
    #[error("not a response")]
    NotAResponse,
    /// A header the RFC copies is missing.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// The CSeq of the original request does not parse.
    #[error("malformed CSeq header")]
    BadCSeq,
    /// An extra header name or value holds a control character or the name is empty.
    #[error("extra header name or value is not a single header line")]
    BadExtraHeader,
    /// The original request bytes do not parse (only from the machines, which store bytes).
    #[error("the original request does not parse")]
    Unparseable,
}

/// Limits for re-parsing messages drhub built itself: they were checked on the way in or
/// built by us, so no size limit applies.
const OWN: Limits = Limits {
    max_header_bytes: usize::MAX,
    max_body_bytes: usize::MAX,
};

fn parse_own(wire: &[u8]) -> Result<Message<'_>, BuildError> {
    match Message::parse(wire, &OWN) {
        Ok(Status::Complete(m)) => Ok(m),
        _ => Err(BuildError::Unparseable),
    }
}

/// The ACK for a non-2xx final response to `invite` (RFC 3261 §17.1.1.3): same
/// Request-URI, Call-ID and From; To of the response (with its tag); the INVITE's top Via
/// as the only Via; the CSeq number with method ACK; the INVITE's Route headers.
pub fn build_ack(invite: &Message<'_>, response: &Message<'_>) -> Result<Bytes, BuildError> {
    if response.status_code().is_none() {
        return Err(BuildError::NotAResponse);
    }
    let to = response
        .header(HeaderName::To)
        .ok_or(BuildError::Missing("To"))?;
    write_like_invite(invite, Method::Ack, to, &[])
}

/// A CANCEL for `invite` (RFC 3261 §9.1): Request-URI, Call-ID, To, From and the CSeq
/// number of the INVITE, its top Via as the only Via (so it carries the INVITE's branch),
/// its Route headers, method CANCEL, plus `extra` headers (e.g. DR-FORK-5's
/// `Reason: SIP;cause=200;text="Call completed elsewhere"`).
pub fn build_cancel(invite: &Message<'_>, extra: &[(&str, &str)]) -> Result<Bytes, BuildError> {
    let to = invite
        .header(HeaderName::To)
        .ok_or(BuildError::Missing("To"))?;
    write_like_invite(invite, Method::Cancel, to, extra)
}

fn write_like_invite(
    invite: &Message<'_>,
    method: Method<'_>,
    to: &str,
    extra: &[(&str, &str)],
) -> Result<Bytes, BuildError> {
    let StartLine::Request {
        method: Method::Invite,
        uri,
        ..
    } = *invite.start_line()
    else {
        return Err(BuildError::NotAnInvite);
    };
    let via = invite
        .values(HeaderName::Via)
        .next()
        .ok_or(BuildError::Missing("Via"))?;
    let from = invite
        .header(HeaderName::From)
        .ok_or(BuildError::Missing("From"))?;
    let call_id = invite.call_id().ok_or(BuildError::Missing("Call-ID"))?;
    let seq = invite
        .cseq()
        .ok_or(BuildError::Missing("CSeq"))?
        .map_err(|_| BuildError::BadCSeq)?
        .seq;
    let clean = |s: &str| !s.bytes().any(|b| b.is_ascii_control() && b != b'\t');
    if extra
        .iter()
        .any(|(n, v)| n.is_empty() || n.contains([':', ' ']) || !clean(n) || !clean(v))
    {
        return Err(BuildError::BadExtraHeader);
    }
    let method = method.as_str();
    let mut out = BytesMut::with_capacity(512);
    let mut line = |parts: &[&str]| {
        for p in parts {
            out.put_slice(p.as_bytes());
        }
        out.put_slice(b"\r\n");
    };
    line(&[method, " ", uri, " SIP/2.0"]);
    line(&["Via: ", via]);
    line(&["Max-Forwards: 70"]);
    line(&["From: ", from]);
    line(&["To: ", to]);
    line(&["Call-ID: ", call_id]);
    line(&["CSeq: ", &seq.to_string(), " ", method]);
    for route in invite.headers_named(HeaderName::Route) {
        line(&["Route: ", route.value]);
    }
    for (name, value) in extra {
        line(&[name, ": ", value]);
    }
    line(&["Content-Length: 0"]);
    line(&[]);
    Ok(out.freeze())
}

/// Shared output plumbing of the two client machines.
#[derive(Debug)]
struct Outbox {
    transmit: VecDeque<Bytes>,
    events: VecDeque<ClientEvent>,
}

impl Outbox {
    fn with_request(request: &Bytes) -> Outbox {
        Outbox {
            transmit: VecDeque::from([request.clone()]),
            events: VecDeque::new(),
        }
    }
}

/// INVITE client transaction (RFC 3261 §17.1.1, RFC 6026 §7.2).
///
/// Guarantees: the INVITE is retransmitted by Timer A (unreliable) until a response; Timer
/// B reports a timeout only while nothing at all was heard; every 3xx-6xx is ACKed inside
/// the transaction (the TU sees only the first); every 2xx reaches the TU until Timer M.
#[derive(Debug)]
pub struct InviteClient {
    state: ClientState,
    transport: Transport,
    timers: Timers,
    armed: TimerSet,
    /// Current Timer A interval.
    a_interval: Duration,
    request: Bytes,
    ack: Option<Bytes>,
    out: Outbox,
}

impl InviteClient {
    /// Starts the transaction: the INVITE goes out, Timer A (unreliable) and Timer B
    /// start (§17.1.1.2).
    pub fn new(request: Bytes, transport: Transport, timers: Timers, now: Instant) -> InviteClient {
        let mut m = InviteClient {
            state: ClientState::Calling,
            transport,
            timers,
            armed: TimerSet::default(),
            a_interval: timers.t1,
            out: Outbox::with_request(&request),
            request,
            ack: None,
        };
        // RFC 3261 §17.1.1.2: Timer A = T1 on unreliable transports only; Timer B = 64*T1.
        m.start(Timer::TimerA, now);
        m.start(Timer::TimerB, now);
        m
    }

    /// The current state.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// True once the transaction is over.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientState::Terminated
    }

    /// The INVITE this transaction sends (the TU builds its CANCEL from it).
    pub fn request(&self) -> &Bytes {
        &self.request
    }

    /// A response or transport failure for this transaction.
    pub fn handle(&mut self, input: ClientInput, now: Instant) {
        let (code, wire) = match input {
            ClientInput::Response { code, wire } => (code, wire),
            ClientInput::TransportError => {
                // RFC 3261 §17.1.4: a transport failure terminates the transaction and
                // the TU is told (Figure 5: from Calling and from Completed).
                if self.state != ClientState::Terminated {
                    self.terminate();
                    self.out.events.push_back(ClientEvent::TransportError);
                }
                return;
            }
        };
        match (self.state, code) {
            // RFC 3261 §17.1.1.2: a 1xx in Calling moves to Proceeding (Timers A and B
            // stop: B guards Calling only) and every 1xx goes to the TU.
            (ClientState::Calling | ClientState::Proceeding, 100..=199) => {
                self.armed.clear();
                self.state = ClientState::Proceeding;
                self.out.events.push_back(ClientEvent::Provisional(wire));
            }
            // RFC 6026 §7.2: a 2xx in Calling or Proceeding moves to Accepted, goes to the
            // TU, and starts Timer M = 64*T1.
            (ClientState::Calling | ClientState::Proceeding, 200..=299) => {
                self.armed.clear();
                self.state = ClientState::Accepted;
                self.out.events.push_back(ClientEvent::Final(wire));
                self.start(Timer::TimerM, now);
            }
            // RFC 3261 §17.1.1.2: a 3xx-6xx in Calling or Proceeding: the transaction
            // sends the ACK, the response goes to the TU, Completed, Timer D starts
            // (32 s unreliable, 0 reliable).
            (ClientState::Calling | ClientState::Proceeding, 300..=699) => {
                self.armed.clear();
                self.state = ClientState::Completed;
                self.send_ack(&wire);
                self.out.events.push_back(ClientEvent::Final(wire));
                self.start(Timer::TimerD, now);
            }
            // RFC 6026 §7.2: every 2xx in Accepted goes to the TU.
            (ClientState::Accepted, 200..=299) => {
                self.out.events.push_back(ClientEvent::Additional2xx(wire));
            }
            // RFC 3261 §17.1.1.2: a retransmitted 3xx-6xx in Completed gets the ACK again
            // and is not passed up.
            (ClientState::Completed, 300..=699) => {
                if let Some(ack) = &self.ack {
                    self.out.transmit.push_back(ack.clone());
                }
            }
            // Late 1xx, 3xx-6xx after a 2xx, 2xx after a 3xx-6xx, a status outside
            // 100-699: nothing to do.
            _ => {}
        }
    }

    fn send_ack(&mut self, response: &Stored) {
        let built = parse_own(&self.request).and_then(|inv| build_ack(&inv, &response.message()));
        match built {
            Ok(ack) => {
                self.out.transmit.push_back(ack.clone());
                self.ack = Some(ack);
            }
            // The request was parsed when the layer took it and the response when the
            // transport framed it; neither can fail here short of a bug.
            Err(e) => tracing::warn!(error = %e, "cannot build the ACK for a non-2xx final"),
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.armed.pop_due(now) {
            self.fire(timer, now);
        }
    }

    fn fire(&mut self, timer: Timer, now: Instant) {
        match (self.state, timer) {
            // RFC 3261 §17.1.1.2: Timer A resends the INVITE and doubles (no cap).
            (ClientState::Calling, Timer::TimerA) => {
                self.out.transmit.push_back(self.request.clone());
                self.a_interval = self.a_interval.saturating_mul(2);
                self.armed.arm(Timer::TimerA, now + self.a_interval);
            }
            // RFC 3261 §17.1.1.2: Timer B in Calling: timeout, Terminated, TU told.
            (ClientState::Calling, Timer::TimerB) => {
                self.terminate();
                self.out.events.push_back(ClientEvent::Timeout(Timer::TimerB));
            }
            // RFC 3261 §17.1.1.2: Timer D ends Completed.
            (ClientState::Completed, Timer::TimerD)
            // RFC 6026 §7.2: Timer M ends Accepted.
            | (ClientState::Accepted, Timer::TimerM) => self.terminate(),
            _ => {}
        }
    }

    fn start(&mut self, timer: Timer, now: Instant) {
        match self.timers.timer(timer, self.transport) {
            Some(d) if d.is_zero() => self.fire(timer, now),
            Some(d) => self.armed.arm(timer, now + d),
            None => {}
        }
    }

    fn terminate(&mut self) {
        self.armed.clear();
        self.state = ClientState::Terminated;
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.armed.next()
    }

    /// The next message to send to the transaction's destination.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        drain(&mut self.out.transmit)
    }

    /// The next event for the TU.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        drain(&mut self.out.events)
    }
}

/// Non-INVITE client transaction (RFC 3261 §17.1.2).
///
/// Guarantees: the request is retransmitted by Timer E (unreliable: T1 doubling up to T2,
/// then every T2 once a provisional arrived) until a final response or Timer F; only the
/// first final reaches the TU; Completed lasts Timer K (T4 unreliable, zero reliable).
#[derive(Debug)]
pub struct NonInviteClient {
    state: ClientState,
    transport: Transport,
    timers: Timers,
    armed: TimerSet,
    /// Current Timer E interval.
    e_interval: Duration,
    request: Bytes,
    out: Outbox,
}

impl NonInviteClient {
    /// Starts the transaction: the request goes out, Timer E (unreliable) and Timer F
    /// start (§17.1.2.2).
    pub fn new(
        request: Bytes,
        transport: Transport,
        timers: Timers,
        now: Instant,
    ) -> NonInviteClient {
        let mut m = NonInviteClient {
            state: ClientState::Trying,
            transport,
            timers,
            armed: TimerSet::default(),
            e_interval: timers.t1,
            out: Outbox::with_request(&request),
            request,
        };
        // RFC 3261 §17.1.2.2: Timer E = T1 on unreliable transports; Timer F = 64*T1.
        if let Some(e) = timers.timer(Timer::TimerE, transport) {
            m.armed.arm(Timer::TimerE, now + e);
        }
        if let Some(f) = timers.timer(Timer::TimerF, transport) {
            m.armed.arm(Timer::TimerF, now + f);
        }
        m
    }

    /// The current state.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// True once the transaction is over.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientState::Terminated
    }

    /// A response or transport failure for this transaction.
    pub fn handle(&mut self, input: ClientInput, now: Instant) {
        let (code, wire) = match input {
            ClientInput::Response { code, wire } => (code, wire),
            ClientInput::TransportError => {
                // RFC 3261 §17.1.4: Terminated, TU told.
                if matches!(self.state, ClientState::Trying | ClientState::Proceeding) {
                    self.terminate();
                    self.out.events.push_back(ClientEvent::TransportError);
                }
                return;
            }
        };
        match (self.state, code) {
            // RFC 3261 §17.1.2.2: a 1xx moves Trying to Proceeding and goes to the TU;
            // Timers E and F keep running.
            (ClientState::Trying | ClientState::Proceeding, 100..=199) => {
                self.state = ClientState::Proceeding;
                self.out.events.push_back(ClientEvent::Provisional(wire));
            }
            // RFC 3261 §17.1.2.2: a final goes to the TU, Completed, Timer K starts
            // (T4 unreliable, 0 reliable).
            (ClientState::Trying | ClientState::Proceeding, 200..=699) => {
                self.armed.clear();
                self.state = ClientState::Completed;
                self.out.events.push_back(ClientEvent::Final(wire));
                match self.timers.timer(Timer::TimerK, self.transport) {
                    Some(k) if !k.is_zero() => self.armed.arm(Timer::TimerK, now + k),
                    _ => self.terminate(),
                }
            }
            // RFC 3261 §17.1.2.2: Completed absorbs response retransmissions; a status
            // outside 100-699 (the layer never passes one) is ignored.
            _ => {}
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.armed.pop_due(now) {
            match (self.state, timer) {
                // RFC 3261 §17.1.2.2: Timer E in Trying resends and doubles up to T2; in
                // Proceeding it resends every T2.
                (ClientState::Trying, Timer::TimerE) => {
                    self.out.transmit.push_back(self.request.clone());
                    self.e_interval = (self.e_interval * 2).min(self.timers.t2);
                    self.armed.arm(Timer::TimerE, now + self.e_interval);
                }
                (ClientState::Proceeding, Timer::TimerE) => {
                    self.out.transmit.push_back(self.request.clone());
                    self.e_interval = self.timers.t2;
                    self.armed.arm(Timer::TimerE, now + self.e_interval);
                }
                // RFC 3261 §17.1.2.2: Timer F in Trying or Proceeding: timeout, TU told.
                (ClientState::Trying | ClientState::Proceeding, Timer::TimerF) => {
                    self.terminate();
                    self.out
                        .events
                        .push_back(ClientEvent::Timeout(Timer::TimerF));
                }
                // RFC 3261 §17.1.2.2: Timer K ends Completed.
                (ClientState::Completed, Timer::TimerK) => self.terminate(),
                _ => {}
            }
        }
    }

    fn terminate(&mut self) {
        self.armed.clear();
        self.state = ClientState::Terminated;
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.armed.next()
    }

    /// The next message to send to the transaction's destination.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        drain(&mut self.out.transmit)
    }

    /// The next event for the TU.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        drain(&mut self.out.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(non_upper_case_globals)]
    const Reliable: Transport = Transport::Tls;
    #[allow(non_upper_case_globals)]
    const Unreliable: Transport = Transport::Udp;

    const INVITE: &str = "INVITE sip:alice@10.0.0.7:5062;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP sip.pstnhub.microsoft.com:5060;branch=z9hG4bKfork1\r\n\
Max-Forwards: 70\r\n\
Route: <sip:edge1.lab;lr>\r\n\
Route: <sip:edge2.lab;lr>, <sip:edge3.lab;lr>\r\n\
From: \"Caller\" <sip:+18005550100@sip.pstnhub.microsoft.com>;tag=b2b-1\r\n\
To: <sip:alice@contoso.com>\r\n\
Call-ID: leg2-abc@sip.pstnhub.microsoft.com\r\n\
CSeq: 314 INVITE\r\n\
Contact: <sip:sip.pstnhub.microsoft.com:5060>\r\n\
Content-Length: 0\r\n\r\n";

    fn response(code: u16, to_tag: &str) -> Stored {
        Stored::new(Bytes::from(format!(
            "SIP/2.0 {code} Whatever\r\n\
Via: SIP/2.0/UDP sip.pstnhub.microsoft.com:5060;branch=z9hG4bKfork1\r\n\
From: \"Caller\" <sip:+18005550100@sip.pstnhub.microsoft.com>;tag=b2b-1\r\n\
To: <sip:alice@contoso.com>;tag={to_tag}\r\n\
Call-ID: leg2-abc@sip.pstnhub.microsoft.com\r\n\
CSeq: 314 INVITE\r\n\
Content-Length: 0\r\n\r\n"
        )))
        .expect("fixture frames")
    }

    fn rx(code: u16, tag: &str) -> ClientInput {
        ClientInput::Response {
            code,
            wire: response(code, tag),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn invite() -> Bytes {
        Bytes::from_static(INVITE.as_bytes())
    }

    /// Steps the machine's clock deadline by deadline up to `until`; returns the offsets
    /// (ms from t0) of every transmission.
    fn run<M>(
        m: &mut M,
        t0: Instant,
        until: Duration,
        poll_timeout: fn(&M) -> Option<Instant>,
        handle: fn(&mut M, Instant),
        transmit: fn(&mut M) -> Option<Bytes>,
    ) -> Vec<u64> {
        let mut sent = Vec::new();
        while let Some(at) = poll_timeout(m) {
            if at > t0 + until {
                break;
            }
            handle(m, at);
            while transmit(m).is_some() {
                sent.push((at - t0).as_millis() as u64);
            }
        }
        sent
    }

    fn run_invite(m: &mut InviteClient, t0: Instant, until: Duration) -> Vec<u64> {
        run(
            m,
            t0,
            until,
            InviteClient::poll_timeout,
            InviteClient::handle_timeout,
            InviteClient::poll_transmit,
        )
    }

    fn run_non_invite(m: &mut NonInviteClient, t0: Instant, until: Duration) -> Vec<u64> {
        run(
            m,
            t0,
            until,
            NonInviteClient::poll_timeout,
            NonInviteClient::handle_timeout,
            NonInviteClient::poll_transmit,
        )
    }

    #[test]
    fn invite_timer_a_doubles_and_timer_b_times_out() {
        let t0 = Instant::now();
        let mut m = InviteClient::new(invite(), Unreliable, Timers::default(), t0);
        assert_eq!(m.state(), ClientState::Calling);
        assert_eq!(m.poll_transmit(), Some(invite()));
        assert_eq!(m.poll_timeout(), Some(t0 + ms(500)));
        let sent = run_invite(&mut m, t0, Duration::from_secs(40));
        // Timer A: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s (doubling, no T2 cap); B at 32 s.
        assert_eq!(sent, [500, 1500, 3500, 7500, 15500, 31500]);
        assert!(m.is_terminated());
        assert_eq!(m.poll_event(), Some(ClientEvent::Timeout(Timer::TimerB)));
        assert_eq!(m.poll_event(), None);
    }

    #[test]
    fn invite_reliable_has_no_timer_a_and_timer_b_still_runs() {
        let t0 = Instant::now();
        let mut m = InviteClient::new(invite(), Reliable, Timers::default(), t0);
        assert_eq!(m.poll_transmit(), Some(invite()));
        assert_eq!(m.poll_timeout(), Some(t0 + ms(32_000)));
        assert!(run_invite(&mut m, t0, Duration::from_secs(40)).is_empty());
        assert_eq!(m.poll_event(), Some(ClientEvent::Timeout(Timer::TimerB)));
    }

    #[test]
    fn invite_provisional_stops_timers_a_and_b() {
        let t0 = Instant::now();
        let mut m = InviteClient::new(invite(), Unreliable, Timers::default(), t0);
        m.poll_transmit();
        m.handle(rx(180, "e1"), t0 + ms(200));
        assert_eq!(m.state(), ClientState::Proceeding);
        assert_eq!(
            m.poll_event(),
            Some(ClientEvent::Provisional(response(180, "e1")))
        );
        assert_eq!(
            m.poll_timeout(),
            None,
            "Proceeding waits for the TU's CANCEL or a final"
        );
        m.handle(rx(183, "e2"), t0 + ms(300));
        assert_eq!(
            m.poll_event(),
            Some(ClientEvent::Provisional(response(183, "e2")))
        );
    }

    /// RFC 3261 §17.1.1.3: the ACK the transaction builds for a non-2xx.
    #[test]
    fn invite_non_2xx_is_acked_by_the_transaction_with_the_right_headers() {
        let t0 = Instant::now();
        let mut m = InviteClient::new(invite(), Unreliable, Timers::default(), t0);
        m.poll_transmit();
        m.handle(rx(486, "busy7"), t0 + ms(100));
        assert_eq!(m.state(), ClientState::Completed);
        assert_eq!(
            m.poll_event(),
            Some(ClientEvent::Final(response(486, "busy7")))
        );
        let ack = m.poll_transmit().expect("the transaction sends the ACK");
        let want = "ACK sip:alice@10.0.0.7:5062;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP sip.pstnhub.microsoft.com:5060;branch=z9hG4bKfork1\r\n\
Max-Forwards: 70\r\n\
From: \"Caller\" <sip:+18005550100@sip.pstnhub.microsoft.com>;tag=b2b-1\r\n\
To: <sip:alice@contoso.com>;tag=busy7\r\n\
Call-ID: leg2-abc@sip.pstnhub.microsoft.com\r\n\
CSeq: 314 ACK\r\n\
Route: <sip:edge1.lab;lr>\r\n\
Route: <sip:edge2.lab;lr>, <sip:edge3.lab;lr>\r\n\
Content-Length: 0\r\n\r\n";
        assert_eq!(std::str::from_utf8(&ack).unwrap(), want);
        // The ACK is a valid request for the parser.
        let parsed = parse_own(&ack).unwrap();
        assert_eq!(parsed.check_request(), Ok(()));
        assert_eq!(parsed.vias().count(), 1);
        // A retransmitted final gets the same ACK again and is not passed up.
        m.handle(rx(486, "busy7"), t0 + ms(600));
        assert_eq!(m.poll_transmit(), Some(ack.clone()));
        assert_eq!(m.poll_event(), None);
        // Timer D: 32 s on UDP.
        assert_eq!(m.poll_timeout(), Some(t0 + ms(100) + ms(32_000)));
        m.handle_timeout(t0 + ms(32_099));
        assert_eq!(m.state(), ClientState::Completed);
        m.handle_timeout(t0 + ms(32_100));
        assert!(m.is_terminated());
    }

    #[test]
    fn invite_timer_d_is_zero_on_reliable_transport() {
        let t0 = Instant::now();
        let mut m = InviteClient::new(invite(), Reliable, Timers::default(), t0);
        m.poll_transmit();
        m.handle(rx(180, "x"), t0);
        m.handle(rx(404, "x"), t0 + ms(10));
        assert!(m.poll_transmit().is_some(), "ACK sent");
        assert!(m.is_terminated());
        assert_eq!(m.poll_timeout(), None);
        assert_eq!(
            m.poll_event(),
            Some(ClientEvent::Provisional(response(180, "x")))
        );
        assert_eq!(m.poll_event(), Some(ClientEvent::Final(response(404, "x"))));
    }

    #[test]
    fn invite_accepted_passes_every_2xx_up_until_timer_m() {
        for kind in [Unreliable, Reliable] {
            let t0 = Instant::now();
            let mut m = InviteClient::new(invite(), kind, Timers::default(), t0);
            m.poll_transmit();
            m.handle(rx(200, "fork-a"), t0 + ms(50));
            assert_eq!(m.state(), ClientState::Accepted);
            assert_eq!(
                m.poll_event(),
                Some(ClientEvent::Final(response(200, "fork-a")))
            );
            assert_eq!(m.poll_transmit(), None, "the 2xx ACK is the TU's");
            assert_eq!(m.poll_timeout(), Some(t0 + ms(50) + ms(32_000)), "Timer M");
            // A second fork's 2xx, and a retransmission of the first, both go up.
            m.handle(rx(200, "fork-b"), t0 + ms(60));
            m.handle(rx(200, "fork-a"), t0 + ms(550));
            assert_eq!(
                m.poll_event(),
                Some(ClientEvent::Additional2xx(response(200, "fork-b")))
            );
            assert_eq!(
                m.poll_event(),
                Some(ClientEvent::Additional2xx(response(200, "fork-a")))
            );
            // Late provisionals and non-2xx finals are dropped.
            m.handle(rx(180, "fork-c"), t0 + ms(600));
            m.handle(rx(487, "fork-c"), t0 + ms(600));
            assert_eq!(m.poll_event(), None);
            assert_eq!(m.poll_transmit(), None);
            m.handle_timeout(t0 + ms(32_049));
            assert_eq!(m.state(), ClientState::Accepted);
            m.handle_timeout(t0 + ms(32_050));
            assert!(m.is_terminated(), "{kind:?}");
        }
    }

    #[test]
    fn invite_transport_error_terminates_and_reports() {
        let t0 = Instant::now();
        let mut m = InviteClient::new(invite(), Unreliable, Timers::default(), t0);
        m.handle(ClientInput::TransportError, t0);
        assert!(m.is_terminated());
        assert_eq!(m.poll_event(), Some(ClientEvent::TransportError));
        assert_eq!(m.poll_timeout(), None);
        m.handle(ClientInput::TransportError, t0);
        assert_eq!(m.poll_event(), None, "reported once");
    }

    #[test]
    fn non_invite_timer_e_caps_at_t2_and_timer_f_times_out() {
        let t0 = Instant::now();
        let mut m = NonInviteClient::new(invite(), Unreliable, Timers::default(), t0);
        assert_eq!(m.state(), ClientState::Trying);
        assert!(m.poll_transmit().is_some());
        let sent = run_non_invite(&mut m, t0, Duration::from_secs(40));
        assert_eq!(
            sent,
            [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert!(m.is_terminated());
        assert_eq!(m.poll_event(), Some(ClientEvent::Timeout(Timer::TimerF)));
    }

    #[test]
    fn non_invite_proceeding_retransmits_every_t2() {
        let t0 = Instant::now();
        let mut m = NonInviteClient::new(invite(), Unreliable, Timers::default(), t0);
        m.poll_transmit();
        m.handle_timeout(t0 + ms(500));
        assert!(m.poll_transmit().is_some());
        m.handle(rx(100, "x"), t0 + ms(600));
        assert_eq!(m.state(), ClientState::Proceeding);
        assert_eq!(
            m.poll_event(),
            Some(ClientEvent::Provisional(response(100, "x")))
        );
        // The Timer E armed in Trying (1500) fires, then every T2 = 4 s.
        let sent = run_non_invite(&mut m, t0, Duration::from_secs(40));
        assert_eq!(sent, [1500, 5500, 9500, 13500, 17500, 21500, 25500, 29500]);
        assert_eq!(m.poll_event(), Some(ClientEvent::Timeout(Timer::TimerF)));
    }

    #[test]
    fn non_invite_reliable_has_no_timer_e_and_timer_k_is_zero() {
        let t0 = Instant::now();
        let mut m = NonInviteClient::new(invite(), Reliable, Timers::default(), t0);
        m.poll_transmit();
        assert_eq!(m.poll_timeout(), Some(t0 + ms(32_000)), "Timer F only");
        m.handle(rx(200, "x"), t0 + ms(10));
        assert_eq!(m.poll_event(), Some(ClientEvent::Final(response(200, "x"))));
        assert!(m.is_terminated());
        assert_eq!(m.poll_timeout(), None);
        // Reliable Timer F.
        let mut m = NonInviteClient::new(invite(), Reliable, Timers::default(), t0);
        assert_eq!(m.poll_transmit(), Some(invite()));
        assert!(run_non_invite(&mut m, t0, Duration::from_secs(40)).is_empty());
        assert_eq!(m.poll_event(), Some(ClientEvent::Timeout(Timer::TimerF)));
    }

    #[test]
    fn non_invite_completed_absorbs_retransmissions_until_timer_k() {
        let t0 = Instant::now();
        let mut m = NonInviteClient::new(invite(), Unreliable, Timers::default(), t0);
        m.poll_transmit();
        m.handle(rx(404, "x"), t0 + ms(100));
        assert_eq!(m.state(), ClientState::Completed);
        assert_eq!(m.poll_event(), Some(ClientEvent::Final(response(404, "x"))));
        assert_eq!(m.poll_transmit(), None, "no ACK for non-INVITE");
        m.handle(rx(404, "x"), t0 + ms(200));
        m.handle(rx(180, "x"), t0 + ms(200));
        assert_eq!(m.poll_event(), None);
        // Timer K = T4 = 5 s; Timer E no longer fires.
        assert_eq!(m.poll_timeout(), Some(t0 + ms(5_100)));
        assert!(run_non_invite(&mut m, t0, Duration::from_secs(10)).is_empty());
        assert!(m.is_terminated());
        assert_eq!(m.poll_event(), None);
    }

    #[test]
    fn non_invite_transport_error() {
        let t0 = Instant::now();
        let mut m = NonInviteClient::new(invite(), Unreliable, Timers::default(), t0);
        m.handle(ClientInput::TransportError, t0);
        assert!(m.is_terminated());
        assert_eq!(m.poll_event(), Some(ClientEvent::TransportError));
    }

    #[test]
    fn cancel_copies_the_invite_fields() {
        let inv = parse_own(INVITE.as_bytes()).unwrap();
        let reason = ("Reason", "SIP;cause=200;text=\"Call completed elsewhere\"");
        let cancel = build_cancel(&inv, &[reason]).unwrap();
        let want = "CANCEL sip:alice@10.0.0.7:5062;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP sip.pstnhub.microsoft.com:5060;branch=z9hG4bKfork1\r\n\
Max-Forwards: 70\r\n\
From: \"Caller\" <sip:+18005550100@sip.pstnhub.microsoft.com>;tag=b2b-1\r\n\
To: <sip:alice@contoso.com>\r\n\
Call-ID: leg2-abc@sip.pstnhub.microsoft.com\r\n\
CSeq: 314 CANCEL\r\n\
Route: <sip:edge1.lab;lr>\r\n\
Route: <sip:edge2.lab;lr>, <sip:edge3.lab;lr>\r\n\
Reason: SIP;cause=200;text=\"Call completed elsewhere\"\r\n\
Content-Length: 0\r\n\r\n";
        assert_eq!(std::str::from_utf8(&cancel).unwrap(), want);
        // Same branch, method CANCEL: its own client transaction.
        let c = parse_own(&cancel).unwrap();
        assert_eq!(c.check_request(), Ok(()));
        let ck = super::super::ClientKey::from_request(&c).unwrap();
        let ik = super::super::ClientKey::from_request(&inv).unwrap();
        assert_eq!(ck.branch(), ik.branch());
        assert_ne!(ck, ik);
    }

    #[test]
    fn builder_errors() {
        let inv = parse_own(INVITE.as_bytes()).unwrap();
        let resp = response(486, "t");
        let resp = resp.message();
        assert_eq!(build_ack(&inv, &inv), Err(BuildError::NotAResponse));
        assert_eq!(build_ack(&resp, &resp), Err(BuildError::NotAnInvite));
        for bad in [
            ("X-A", "a\r\nInjected: 1"),
            ("", "v"),
            ("X:Y", "v"),
            ("X Y", "v"),
        ] {
            assert_eq!(build_cancel(&inv, &[bad]), Err(BuildError::BadExtraHeader));
        }
        let no_from = INVITE.replace(
            "From: \"Caller\" <sip:+18005550100@sip.pstnhub.microsoft.com>;tag=b2b-1\r\n",
            "",
        );
        let no_from = parse_own(no_from.as_bytes()).unwrap();
        assert_eq!(
            build_cancel(&no_from, &[]),
            Err(BuildError::Missing("From"))
        );
        let opt = INVITE.replacen("INVITE sip", "OPTIONS sip", 1);
        let opt = parse_own(opt.as_bytes()).unwrap();
        assert_eq!(build_cancel(&opt, &[]), Err(BuildError::NotAnInvite));
    }
}
