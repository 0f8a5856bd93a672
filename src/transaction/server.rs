//! Server transactions (RFC 3261 §17.2, with RFC 6026 §7.1 and §8 for the INVITE
//! "Accepted" state): sans-IO state machines that own the responses drhub sent on one
//! request and decide when to resend them.
//!
//! Inputs: the wire ([`ServerInput`]: a request retransmission, an ACK, a transport
//! failure), the TU (`send_provisional`, `send_final`, `retransmit_2xx`) and the clock
//! (`handle_timeout`). Outputs: `poll_transmit` (bytes to send to the peer the request
//! came from), `poll_event` (what the TU must learn), `poll_timeout` (when to call
//! `handle_timeout` next).
//!
//! The 100 Trying of §17.2.1 is the TU's job: drhub's call layer answers every INVITE with
//! 100 at once (DR-FORK-1), well within the 200 ms the RFC allows.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{drain, Timer, TimerSet, Timers};
use crate::sip::Transport;
use crate::sip::{Message, Status};

/// Server transaction states (RFC 3261 Figures 7 and 8, RFC 6026 Figure 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Non-INVITE: the request is with the TU, nothing sent yet.
    Trying,
    /// A provisional was sent (non-INVITE), or the INVITE is with the TU.
    Proceeding,
    /// A final response was sent (3xx-6xx for INVITE); retransmitting it / absorbing
    /// request retransmissions.
    Completed,
    /// INVITE: the ACK for the non-2xx final arrived; absorbing ACK retransmissions.
    Confirmed,
    /// INVITE (RFC 6026): a 2xx was sent; absorbing INVITE retransmissions, passing ACKs
    /// up.
    Accepted,
    /// Over: the layer forgets the transaction.
    Terminated,
}

/// What the wire or the transport tells a server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerInput {
    /// A retransmission of the request that created the transaction.
    Request,
    /// An ACK matching this INVITE transaction.
    Ack,
    /// The transport could not deliver a response (§17.2.4).
    TransportError,
}

/// What a server transaction tells its TU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerEvent {
    /// INVITE: the ACK for the non-2xx final arrived (Completed -> Confirmed).
    Confirmed,
    /// INVITE, RFC 6026 §7.1: an ACK arrived in Accepted; it belongs to the TU (dialog).
    AckForTu,
    /// INVITE: Timer H fired, the peer never ACKed the non-2xx final.
    AckTimeout,
    /// The transport failed to deliver a response (§17.2.4).
    TransportError,
}

/// Why the TU's response was not taken. The layer's [`ServerTx`](super::ServerTx) makes
/// the first two impossible for its users; they remain as runtime answers for direct
/// users of the machines and for races with a transport failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ServerError {
    /// A final response was already sent.
    #[error("a final response was already sent (state {0:?})")]
    AlreadyFinal(ServerState),
    /// `retransmit_2xx` outside the Accepted state.
    #[error("a 2xx can only be retransmitted in the Accepted state (state {0:?})")]
    NotAccepted(ServerState),
    /// The transaction is over (transport failure or timeout).
    #[error("the transaction has terminated")]
    Terminated,
}

/// Why bytes are not a response of the expected class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// Not a complete SIP response head with a status code in 100-699.
    #[error("not a SIP response")]
    NotAResponse,
    /// A provisional was expected.
    #[error("status {0} is not provisional (1xx)")]
    NotProvisional(u16),
    /// A final response was expected.
    #[error("status {0} is not final (200-699)")]
    NotFinal(u16),
}

fn status_of(wire: &[u8]) -> Result<u16, ResponseError> {
    match Message::parse_head(wire) {
        Ok(Status::Complete(m)) => m
            .status_code()
            .filter(|c| (100..=699).contains(c))
            .ok_or(ResponseError::NotAResponse),
        _ => Err(ResponseError::NotAResponse),
    }
}

/// A 1xx response, ready for the wire. Guarantees the status is 100-199.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisional {
    code: u16,
    wire: Bytes,
}

impl Provisional {
    /// Checks that `wire` is a 1xx response (built with [`crate::sip::build`]).
    pub fn new(wire: Bytes) -> Result<Provisional, ResponseError> {
        match status_of(&wire)? {
            code @ 100..=199 => Ok(Provisional { code, wire }),
            code => Err(ResponseError::NotProvisional(code)),
        }
    }

    /// The status code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The bytes.
    pub fn wire(&self) -> &Bytes {
        &self.wire
    }
}

/// A final response, ready for the wire. Guarantees the status is 200-699, so a machine
/// can tell 2xx (Accepted) from 3xx-6xx (Completed) without re-parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Final {
    code: u16,
    wire: Bytes,
}

impl Final {
    /// Checks that `wire` is a 200-699 response.
    pub fn new(wire: Bytes) -> Result<Final, ResponseError> {
        match status_of(&wire)? {
            code @ 200..=699 => Ok(Final { code, wire }),
            code => Err(ResponseError::NotFinal(code)),
        }
    }

    /// The status code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// The bytes.
    pub fn wire(&self) -> &Bytes {
        &self.wire
    }
}

/// Shared output plumbing of the two server machines.
#[derive(Debug)]
struct Outbox {
    transmit: VecDeque<Bytes>,
    events: VecDeque<ServerEvent>,
}

impl Outbox {
    fn new() -> Outbox {
        Outbox {
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        }
    }
}

/// INVITE server transaction (RFC 3261 §17.2.1, RFC 6026 §7.1).
///
/// Guarantees: the last provisional answers INVITE retransmissions in Proceeding; a
/// 3xx-6xx final is retransmitted by Timer G (unreliable) until the ACK or Timer H; the
/// ACK for it never reaches the TU; a 2xx moves to Accepted where INVITE retransmissions
/// are absorbed and ACKs are passed up, until Timer L.
#[derive(Debug)]
pub struct InviteServer {
    state: ServerState,
    transport: Transport,
    timers: Timers,
    armed: TimerSet,
    /// Current Timer G interval.
    g_interval: Duration,
    last_provisional: Option<Bytes>,
    last_final: Option<Bytes>,
    out: Outbox,
}

impl InviteServer {
    /// A transaction for a new INVITE: state Proceeding, no timers (§17.2.1).
    pub fn new(transport: Transport, timers: Timers) -> InviteServer {
        InviteServer {
            state: ServerState::Proceeding,
            transport,
            timers,
            armed: TimerSet::default(),
            g_interval: timers.t1,
            last_provisional: None,
            last_final: None,
            out: Outbox::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// True once the transaction is over.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerState::Terminated
    }

    /// The final response sent, if any (RFC 2543 ACK matching compares its To tag).
    pub fn last_final(&self) -> Option<&Bytes> {
        self.last_final.as_ref()
    }

    /// The TU sends a provisional response.
    pub fn send_provisional(&mut self, response: Provisional) -> Result<(), ServerError> {
        match self.state {
            // RFC 3261 §17.2.1: each provisional from the TU is passed to the transport;
            // the state does not change.
            ServerState::Proceeding => {
                self.out.transmit.push_back(response.wire.clone());
                self.last_provisional = Some(response.wire);
                Ok(())
            }
            ServerState::Terminated => Err(ServerError::Terminated),
            s => Err(ServerError::AlreadyFinal(s)),
        }
    }

    /// The TU sends the final response.
    pub fn send_final(&mut self, response: Final, now: Instant) -> Result<(), ServerError> {
        match self.state {
            // RFC 6026 §7.1: a 2xx moves to Accepted and starts Timer L = 64*T1; 2xx
            // retransmissions are the TU's (§13.3.1.4).
            ServerState::Proceeding if response.is_success() => {
                // Accepted absorbs INVITE retransmissions without answering them, so
                // neither response is kept (they would live for Timer L, 32 s).
                self.out.transmit.push_back(response.wire);
                self.last_final = None;
                self.last_provisional = None;
                self.state = ServerState::Accepted;
                self.start(Timer::TimerL, now);
                Ok(())
            }
            // RFC 3261 §17.2.1: a 3xx-6xx moves to Completed; Timer G (unreliable only)
            // retransmits it, Timer H = 64*T1 waits for the ACK.
            ServerState::Proceeding => {
                self.out.transmit.push_back(response.wire.clone());
                self.last_final = Some(response.wire);
                self.last_provisional = None;
                self.state = ServerState::Completed;
                self.g_interval = self.timers.t1;
                self.start(Timer::TimerG, now);
                self.start(Timer::TimerH, now);
                Ok(())
            }
            ServerState::Terminated => Err(ServerError::Terminated),
            s => Err(ServerError::AlreadyFinal(s)),
        }
    }

    /// The TU (dialog) retransmits its 2xx (RFC 3261 §13.3.1.4).
    pub fn retransmit_2xx(&mut self, response: Final) -> Result<(), ServerError> {
        match self.state {
            // RFC 6026 §7.1: a 2xx passed by the TU in Accepted goes to the transport.
            ServerState::Accepted if response.is_success() => {
                self.out.transmit.push_back(response.wire);
                Ok(())
            }
            ServerState::Terminated => Err(ServerError::Terminated),
            s => Err(ServerError::NotAccepted(s)),
        }
    }

    /// A message or transport failure for this transaction.
    pub fn handle(&mut self, input: ServerInput, now: Instant) {
        match (self.state, input) {
            // RFC 3261 §17.2.1: a retransmitted INVITE in Proceeding gets the most recent
            // provisional again.
            (ServerState::Proceeding, ServerInput::Request) => {
                if let Some(p) = &self.last_provisional {
                    self.out.transmit.push_back(p.clone());
                }
            }
            // RFC 3261 §17.2.1: in Completed, a retransmitted INVITE gets the final again.
            (ServerState::Completed, ServerInput::Request) => {
                if let Some(f) = &self.last_final {
                    self.out.transmit.push_back(f.clone());
                }
            }
            // RFC 3261 §17.2.1: the ACK moves Completed to Confirmed; Timer G stops, Timer
            // I = T4 (0 on reliable transports) starts. The ACK is not passed up.
            (ServerState::Completed, ServerInput::Ack) => {
                self.armed.clear();
                self.state = ServerState::Confirmed;
                self.out.events.push_back(ServerEvent::Confirmed);
                self.start(Timer::TimerI, now);
            }
            // RFC 3261 §17.2.1: Confirmed absorbs ACK (and INVITE) retransmissions.
            // RFC 6026 §7.1: Accepted absorbs INVITE retransmissions.
            (ServerState::Confirmed, ServerInput::Request | ServerInput::Ack)
            | (ServerState::Accepted, ServerInput::Request) => {}
            // RFC 6026 §7.1: an ACK in Accepted is passed up to the TU.
            (ServerState::Accepted, ServerInput::Ack) => {
                self.out.events.push_back(ServerEvent::AckForTu);
            }
            // RFC 3261 §17.2.4: a transport failure terminates the transaction and the TU
            // is told. RFC 6026 Figure 5: in Accepted the TU is told and the transaction
            // stays to absorb INVITE retransmissions until Timer L.
            (ServerState::Accepted, ServerInput::TransportError) => {
                self.out.events.push_back(ServerEvent::TransportError);
            }
            (
                ServerState::Proceeding | ServerState::Completed | ServerState::Confirmed,
                ServerInput::TransportError,
            ) => {
                self.terminate();
                self.out.events.push_back(ServerEvent::TransportError);
            }
            // An ACK before any final response matches nothing to acknowledge: absorbed.
            (ServerState::Proceeding, ServerInput::Ack) => {}
            (ServerState::Trying | ServerState::Terminated, _) => {}
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
            // RFC 3261 §17.2.1: Timer G resends the final and doubles, capped at T2.
            (ServerState::Completed, Timer::TimerG) => {
                if let Some(f) = &self.last_final {
                    self.out.transmit.push_back(f.clone());
                }
                self.g_interval = (self.g_interval * 2).min(self.timers.t2);
                self.armed.arm(Timer::TimerG, now + self.g_interval);
            }
            // RFC 3261 §17.2.1: Timer H in Completed: no ACK came; Terminated, TU told.
            (ServerState::Completed, Timer::TimerH) => {
                self.terminate();
                self.out.events.push_back(ServerEvent::AckTimeout);
            }
            // RFC 3261 §17.2.1: Timer I ends Confirmed.
            (ServerState::Confirmed, Timer::TimerI)
            // RFC 6026 §7.1: Timer L ends Accepted.
            | (ServerState::Accepted, Timer::TimerL) => self.terminate(),
            _ => {}
        }
    }

    /// Starts `timer` with its RFC value; a zero value fires at once (reliable
    /// transports), an unused one (G on reliable transports) is not started.
    fn start(&mut self, timer: Timer, now: Instant) {
        match self.timers.timer(timer, self.transport) {
            Some(d) if d.is_zero() => self.fire(timer, now),
            Some(d) => self.armed.arm(timer, now + d),
            None => {}
        }
    }

    fn terminate(&mut self) {
        self.armed.clear();
        self.state = ServerState::Terminated;
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.armed.next()
    }

    /// The next message to send to the peer the request came from.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        drain(&mut self.out.transmit)
    }

    /// The next event for the TU.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        drain(&mut self.out.events)
    }
}

/// Non-INVITE server transaction (RFC 3261 §17.2.2).
///
/// Guarantees: request retransmissions never reach the TU; in Proceeding and Completed
/// they are answered with the last response sent; Completed lasts Timer J (64*T1 on
/// unreliable transports, zero on reliable ones).
#[derive(Debug)]
pub struct NonInviteServer {
    state: ServerState,
    transport: Transport,
    timers: Timers,
    armed: TimerSet,
    last_response: Option<Bytes>,
    out: Outbox,
}

impl NonInviteServer {
    /// A transaction for a new non-INVITE request: state Trying (§17.2.2).
    pub fn new(transport: Transport, timers: Timers) -> NonInviteServer {
        NonInviteServer {
            state: ServerState::Trying,
            transport,
            timers,
            armed: TimerSet::default(),
            last_response: None,
            out: Outbox::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// True once the transaction is over.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerState::Terminated
    }

    /// The TU sends a provisional response.
    pub fn send_provisional(&mut self, response: Provisional) -> Result<(), ServerError> {
        match self.state {
            // RFC 3261 §17.2.2: a provisional in Trying or Proceeding is sent and the
            // state becomes Proceeding.
            ServerState::Trying | ServerState::Proceeding => {
                self.out.transmit.push_back(response.wire.clone());
                self.last_response = Some(response.wire);
                self.state = ServerState::Proceeding;
                Ok(())
            }
            ServerState::Terminated => Err(ServerError::Terminated),
            s => Err(ServerError::AlreadyFinal(s)),
        }
    }

    /// The TU sends the final response.
    pub fn send_final(&mut self, response: Final, now: Instant) -> Result<(), ServerError> {
        match self.state {
            // RFC 3261 §17.2.2: a final in Trying or Proceeding is sent, the state becomes
            // Completed and Timer J starts (64*T1 unreliable, 0 reliable).
            ServerState::Trying | ServerState::Proceeding => {
                self.out.transmit.push_back(response.wire.clone());
                self.last_response = Some(response.wire);
                self.state = ServerState::Completed;
                match self.timers.timer(Timer::TimerJ, self.transport) {
                    Some(d) if !d.is_zero() => self.armed.arm(Timer::TimerJ, now + d),
                    _ => self.terminate(),
                }
                Ok(())
            }
            ServerState::Terminated => Err(ServerError::Terminated),
            s => Err(ServerError::AlreadyFinal(s)),
        }
    }

    /// A message or transport failure for this transaction.
    pub fn handle(&mut self, input: ServerInput, _now: Instant) {
        match (self.state, input) {
            // RFC 3261 §17.2.2: in Trying, retransmissions are discarded.
            (ServerState::Trying, ServerInput::Request) => {}
            // RFC 3261 §17.2.2: in Proceeding and Completed, a retransmission gets the
            // most recent response again.
            (ServerState::Proceeding | ServerState::Completed, ServerInput::Request) => {
                if let Some(r) = &self.last_response {
                    self.out.transmit.push_back(r.clone());
                }
            }
            // RFC 3261 §17.2.4: transport failure: Terminated, TU told.
            (
                ServerState::Trying | ServerState::Proceeding | ServerState::Completed,
                ServerInput::TransportError,
            ) => {
                self.terminate();
                self.out.events.push_back(ServerEvent::TransportError);
            }
            // No ACK belongs to a non-INVITE transaction.
            (_, ServerInput::Ack) => {}
            (ServerState::Confirmed | ServerState::Accepted | ServerState::Terminated, _) => {}
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.armed.pop_due(now) {
            // RFC 3261 §17.2.2: Timer J ends Completed.
            if (self.state, timer) == (ServerState::Completed, Timer::TimerJ) {
                self.terminate();
            }
        }
    }

    fn terminate(&mut self) {
        self.armed.clear();
        self.state = ServerState::Terminated;
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.armed.next()
    }

    /// The next message to send to the peer the request came from.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        drain(&mut self.out.transmit)
    }

    /// The next event for the TU.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
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

    fn resp(code: u16) -> Bytes {
        Bytes::from(format!(
            "SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        ))
    }

    fn prov(code: u16) -> Provisional {
        Provisional::new(resp(code)).unwrap()
    }

    fn fin(code: u16) -> Final {
        Final::new(resp(code)).unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn drain(m: &mut InviteServer) -> Vec<Bytes> {
        std::iter::from_fn(|| m.poll_transmit()).collect()
    }

    fn drain_n(m: &mut NonInviteServer) -> Vec<Bytes> {
        std::iter::from_fn(|| m.poll_transmit()).collect()
    }

    /// Runs the machine's clock from `t0` to `until`, stepping to each deadline it asks
    /// for, and returns the offsets (ms from t0) at which it transmitted.
    fn run_invite(m: &mut InviteServer, t0: Instant, until: Duration) -> Vec<u64> {
        let mut sent = Vec::new();
        while let Some(at) = m.poll_timeout() {
            if at > t0 + until {
                break;
            }
            m.handle_timeout(at);
            for _ in drain(m) {
                sent.push((at - t0).as_millis() as u64);
            }
        }
        sent
    }

    #[test]
    fn response_types_check_the_class() {
        assert_eq!(prov(180).code(), 180);
        assert_eq!(fin(486).code(), 486);
        assert!(fin(200).is_success());
        assert!(!fin(300).is_success());
        assert_eq!(
            Provisional::new(resp(200)),
            Err(ResponseError::NotProvisional(200))
        );
        assert_eq!(Final::new(resp(183)), Err(ResponseError::NotFinal(183)));
        let cases: [&[u8]; 4] = [
            b"INVITE sip:a SIP/2.0\r\nl: 0\r\n\r\n",
            b"SIP/2.0 700 Big\r\nl: 0\r\n\r\n",
            b"SIP/2.0 200 OK\r\nl: 0\r\n",
            b"",
        ];
        for wire in cases {
            assert_eq!(
                Final::new(Bytes::from_static(wire)),
                Err(ResponseError::NotAResponse)
            );
        }
    }

    #[test]
    fn invite_proceeding_resends_the_last_provisional() {
        let t0 = Instant::now();
        let mut m = InviteServer::new(Unreliable, Timers::default());
        assert_eq!(m.state(), ServerState::Proceeding);
        assert_eq!(m.poll_timeout(), None, "no timer in Proceeding");
        // Nothing to resend before the TU has sent anything.
        m.handle(ServerInput::Request, t0);
        assert!(drain(&mut m).is_empty());
        m.send_provisional(prov(100)).unwrap();
        m.send_provisional(prov(180)).unwrap();
        assert_eq!(drain(&mut m), [resp(100), resp(180)]);
        m.handle(ServerInput::Request, t0);
        assert_eq!(drain(&mut m), [resp(180)]);
        // An early ACK is absorbed.
        m.handle(ServerInput::Ack, t0);
        assert_eq!(m.state(), ServerState::Proceeding);
        assert_eq!(m.poll_event(), None);
    }

    #[test]
    fn invite_timer_g_doubles_to_t2_and_timer_h_reports_ack_timeout() {
        let t0 = Instant::now();
        let mut m = InviteServer::new(Unreliable, Timers::default());
        m.send_final(fin(486), t0).unwrap();
        assert_eq!(m.state(), ServerState::Completed);
        assert_eq!(drain(&mut m), [resp(486)]);
        assert_eq!(m.poll_timeout(), Some(t0 + ms(500)));
        // Timer G: 500 ms doubling, capped at T2 = 4 s, until Timer H at 32 s.
        let sent = run_invite(&mut m, t0, Duration::from_secs(40));
        assert_eq!(
            sent,
            [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert_eq!(m.state(), ServerState::Terminated);
        assert_eq!(m.poll_event(), Some(ServerEvent::AckTimeout));
        assert_eq!(m.poll_timeout(), None);
    }

    #[test]
    fn invite_timer_h_on_reliable_transport_without_timer_g() {
        let t0 = Instant::now();
        let mut m = InviteServer::new(Reliable, Timers::default());
        m.send_final(fin(404), t0).unwrap();
        drain(&mut m);
        assert_eq!(m.poll_timeout(), Some(t0 + ms(32_000)), "only Timer H");
        m.handle_timeout(t0 + ms(31_999));
        assert_eq!(m.state(), ServerState::Completed);
        m.handle_timeout(t0 + ms(32_000));
        assert!(drain(&mut m).is_empty(), "no Timer G retransmission");
        assert_eq!(m.poll_event(), Some(ServerEvent::AckTimeout));
        assert!(m.is_terminated());
    }

    #[test]
    fn invite_completed_resends_final_and_absorbs_ack_then_timer_i() {
        let t0 = Instant::now();
        let mut m = InviteServer::new(Unreliable, Timers::default());
        m.send_provisional(prov(180)).unwrap();
        m.send_final(fin(603), t0).unwrap();
        drain(&mut m);
        // A retransmitted INVITE in Completed gets the final again.
        m.handle(ServerInput::Request, t0 + ms(100));
        assert_eq!(drain(&mut m), [resp(603)]);
        // A second final (or a provisional) is refused.
        assert_eq!(
            m.send_final(fin(500), t0),
            Err(ServerError::AlreadyFinal(ServerState::Completed))
        );
        assert_eq!(
            m.send_provisional(prov(180)),
            Err(ServerError::AlreadyFinal(ServerState::Completed))
        );
        // The ACK: Confirmed, told once, Timer I = T4 = 5 s, Timer G stopped.
        let t_ack = t0 + ms(700);
        m.handle(ServerInput::Ack, t_ack);
        assert_eq!(m.state(), ServerState::Confirmed);
        assert_eq!(m.poll_event(), Some(ServerEvent::Confirmed));
        assert_eq!(m.poll_timeout(), Some(t_ack + ms(5_000)));
        // ACK and INVITE retransmissions are absorbed.
        m.handle(ServerInput::Ack, t_ack + ms(10));
        m.handle(ServerInput::Request, t_ack + ms(20));
        assert!(drain(&mut m).is_empty());
        assert_eq!(m.poll_event(), None);
        m.handle_timeout(t_ack + ms(4_999));
        assert_eq!(m.state(), ServerState::Confirmed);
        m.handle_timeout(t_ack + ms(5_000));
        assert!(m.is_terminated());
        assert_eq!(m.poll_event(), None, "Timer I is silent");
    }

    #[test]
    fn invite_timer_i_is_zero_on_reliable_transport() {
        let t0 = Instant::now();
        let mut m = InviteServer::new(Reliable, Timers::default());
        m.send_final(fin(486), t0).unwrap();
        m.handle(ServerInput::Ack, t0 + ms(50));
        assert_eq!(m.poll_event(), Some(ServerEvent::Confirmed));
        assert!(m.is_terminated());
        assert_eq!(m.poll_timeout(), None);
    }

    #[test]
    fn invite_2xx_accepted_timer_l_absorbs_invites_and_passes_acks_up() {
        for kind in [Unreliable, Reliable] {
            let t0 = Instant::now();
            let mut m = InviteServer::new(kind, Timers::default());
            m.send_provisional(prov(183)).unwrap();
            m.send_final(fin(200), t0).unwrap();
            assert_eq!(m.state(), ServerState::Accepted);
            assert_eq!(drain(&mut m), [resp(183), resp(200)]);
            assert_eq!(m.poll_timeout(), Some(t0 + ms(32_000)), "Timer L only");
            // INVITE retransmissions are absorbed (not even the 2xx is resent).
            m.handle(ServerInput::Request, t0 + ms(500));
            assert!(drain(&mut m).is_empty());
            // The TU's 2xx retransmissions pass through; other finals do not.
            m.retransmit_2xx(fin(200)).unwrap();
            assert_eq!(drain(&mut m), [resp(200)]);
            assert_eq!(
                m.retransmit_2xx(fin(486)),
                Err(ServerError::NotAccepted(ServerState::Accepted))
            );
            assert_eq!(
                m.send_final(fin(200), t0),
                Err(ServerError::AlreadyFinal(ServerState::Accepted))
            );
            // An ACK in Accepted goes to the TU, every time.
            m.handle(ServerInput::Ack, t0 + ms(600));
            m.handle(ServerInput::Ack, t0 + ms(700));
            assert_eq!(m.poll_event(), Some(ServerEvent::AckForTu));
            assert_eq!(m.poll_event(), Some(ServerEvent::AckForTu));
            // A transport failure is reported; the transaction waits for Timer L.
            m.handle(ServerInput::TransportError, t0 + ms(800));
            assert_eq!(m.poll_event(), Some(ServerEvent::TransportError));
            assert_eq!(m.state(), ServerState::Accepted);
            m.handle_timeout(t0 + ms(31_999));
            assert_eq!(m.state(), ServerState::Accepted);
            m.handle_timeout(t0 + ms(32_000));
            assert!(m.is_terminated(), "{kind:?}");
            assert_eq!(m.retransmit_2xx(fin(200)), Err(ServerError::Terminated));
        }
    }

    #[test]
    fn invite_transport_error_terminates_and_reports() {
        let t0 = Instant::now();
        for final_first in [false, true] {
            let mut m = InviteServer::new(Unreliable, Timers::default());
            if final_first {
                m.send_final(fin(480), t0).unwrap();
            }
            m.handle(ServerInput::TransportError, t0);
            assert!(m.is_terminated());
            assert_eq!(m.poll_event(), Some(ServerEvent::TransportError));
            assert_eq!(m.poll_timeout(), None);
            assert_eq!(m.send_final(fin(500), t0), Err(ServerError::Terminated));
            assert_eq!(m.send_provisional(prov(180)), Err(ServerError::Terminated));
        }
    }

    #[test]
    fn non_invite_trying_absorbs_then_resends_last_response() {
        let t0 = Instant::now();
        let mut m = NonInviteServer::new(Unreliable, Timers::default());
        assert_eq!(m.state(), ServerState::Trying);
        m.handle(ServerInput::Request, t0);
        assert!(
            drain_n(&mut m).is_empty(),
            "Trying discards retransmissions"
        );
        m.send_provisional(prov(100)).unwrap();
        assert_eq!(m.state(), ServerState::Proceeding);
        m.handle(ServerInput::Request, t0);
        assert_eq!(drain_n(&mut m), [resp(100), resp(100)]);
        m.send_final(fin(200), t0).unwrap();
        assert_eq!(m.state(), ServerState::Completed);
        m.handle(ServerInput::Request, t0 + ms(1));
        m.handle(ServerInput::Ack, t0 + ms(1));
        assert_eq!(drain_n(&mut m), [resp(200), resp(200)]);
        assert_eq!(
            m.send_final(fin(500), t0),
            Err(ServerError::AlreadyFinal(ServerState::Completed))
        );
        assert_eq!(m.poll_event(), None);
    }

    #[test]
    fn non_invite_timer_j_unreliable_and_reliable() {
        let t0 = Instant::now();
        let mut m = NonInviteServer::new(Unreliable, Timers::default());
        m.send_final(fin(200), t0).unwrap();
        assert_eq!(m.poll_timeout(), Some(t0 + ms(32_000)));
        m.handle_timeout(t0 + ms(31_999));
        assert_eq!(m.state(), ServerState::Completed);
        m.handle_timeout(t0 + ms(32_000));
        assert!(m.is_terminated());
        // Reliable: Timer J is zero, the final ends the transaction.
        let mut m = NonInviteServer::new(Reliable, Timers::default());
        m.send_final(fin(200), t0).unwrap();
        assert_eq!(drain_n(&mut m), [resp(200)]);
        assert!(m.is_terminated());
        assert_eq!(m.poll_timeout(), None);
        // Timer J follows T1.
        let fast = Timers {
            t1: ms(100),
            ..Timers::default()
        };
        let mut m = NonInviteServer::new(Unreliable, fast);
        m.send_final(fin(200), t0).unwrap();
        assert_eq!(m.poll_timeout(), Some(t0 + ms(6_400)));
    }

    #[test]
    fn non_invite_transport_error() {
        let t0 = Instant::now();
        let mut m = NonInviteServer::new(Unreliable, Timers::default());
        m.send_provisional(prov(100)).unwrap();
        m.handle(ServerInput::TransportError, t0);
        assert!(m.is_terminated());
        assert_eq!(m.poll_event(), Some(ServerEvent::TransportError));
        assert_eq!(m.send_final(fin(200), t0), Err(ServerError::Terminated));
    }
}
