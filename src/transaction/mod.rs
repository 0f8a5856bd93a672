//! The SIP transaction layer (RFC 3261 §17, amended by RFC 6026): it owns every live
//! transaction, absorbs request and response retransmissions, retransmits on unreliable
//! transports, generates the ACK for non-2xx final responses, matches responses and
//! CANCEL/ACK requests to their transactions, and runs timers A to M.
//!
//! drhub is a B2BUA: it is the UAS (server transactions) towards the SBC and the UAC
//! (client transactions) towards every endpoint it forks to, and the other way round for
//! outbound calls.
//!
//! - [`key`]: typed transaction keys ([`ServerKey`], [`ClientKey`]) and the branch generator.
//! - [`server`]: sans-IO INVITE and non-INVITE server machines (§17.2.1, §17.2.2).
//! - [`client`]: sans-IO INVITE and non-INVITE client machines (§17.1.1, §17.1.2) and the
//!   ACK/CANCEL builders (§17.1.1.3, §9.1).
//! - [`layer`]: [`TransactionLayer`], the only code here that touches tokio: it keeps the
//!   machines in maps, feeds them messages and timer expiries, and hands out what to send.
//!
//! The machines take time as an argument (`handle(input, now)`, `handle_timeout(now)`) and
//! say when they next need it (`poll_timeout()`), so every timer is tested on a virtual clock
//! without sleeping. Time is `std::time::Instant`; the layer converts from tokio's clock so
//! `tokio::time::pause` drives it too.

pub mod client;
pub mod key;
pub mod layer;
pub mod server;

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::sip::Transport;

pub use client::{build_ack, build_cancel, BuildError, ClientEvent, ClientInput, ClientState};
pub use client::{InviteClient, NonInviteClient};
pub use key::{Branch, ClientKey, KeyError, ServerKey, TxKey, TxMethod};
pub use layer::{
    Answered, CancelTarget, ClientTxEvent, CoreEvent, IncomingRequest, LayerClosed, LayerHandle,
    Output, ReceiveError, SendError, ServerOutcome, ServerTx, TransactionLayer, Transmit,
};
pub use server::{
    Final, InviteServer, NonInviteServer, Provisional, ResponseError, ServerError, ServerEvent,
    ServerInput, ServerState,
};

/// The RFC 3261 timer base values (§17.1.1.1, table 4 of Appendix A). The daemon fills
/// them from config; every transaction timer is derived from these three by
/// [`Timers::timer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate: first retransmission interval and the base of the 64*T1 timeouts.
    pub t1: Duration,
    /// Cap of the non-INVITE request and INVITE response retransmission interval.
    pub t2: Duration,
    /// How long a message may linger in the network (Timers I and K).
    pub t4: Duration,
}

impl Default for Timers {
    /// RFC 3261 defaults: T1 = 500 ms, T2 = 4 s, T4 = 5 s.
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// The initial value of `timer` on `transport`, per the RFC 3261 Appendix A table and
    /// RFC 6026 §8.11 (L, M); `None` for the retransmission timers (A, E, G) that are not
    /// started on reliable transports.
    ///
    /// Timer D is "at least 32 s" on unreliable transports: drhub uses the larger of 32 s
    /// and 64*T1 so that it still outlasts the server's Timer H when T1 is configured up.
    pub fn timer(&self, timer: Timer, transport: Transport) -> Option<Duration> {
        let t64 = self.t1.saturating_mul(64);
        let reliable = transport.is_reliable();
        let zero_if_reliable = |d: Duration| Some(if reliable { Duration::ZERO } else { d });
        match timer {
            Timer::TimerA | Timer::TimerE | Timer::TimerG if reliable => None,
            Timer::TimerA | Timer::TimerE | Timer::TimerG => Some(self.t1),
            Timer::TimerB | Timer::TimerF | Timer::TimerH | Timer::TimerL | Timer::TimerM => {
                Some(t64)
            }
            Timer::TimerD => zero_if_reliable(t64.max(Duration::from_secs(32))),
            Timer::TimerI | Timer::TimerK => zero_if_reliable(self.t4),
            Timer::TimerJ => zero_if_reliable(t64),
        }
    }
}

/// The transaction timers by their RFC names (RFC 3261 Appendix A; L and M from RFC 6026).
#[allow(clippy::enum_variant_names)] // RFC 3261 names: `TimerG` greps to the RFC text
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// INVITE client: request retransmission, T1 doubling (unreliable only).
    TimerA,
    /// INVITE client: transaction timeout in Calling, 64*T1.
    TimerB,
    /// INVITE client: wait for response retransmissions in Completed.
    TimerD,
    /// Non-INVITE client: request retransmission, T1 doubling up to T2 (unreliable only).
    TimerE,
    /// Non-INVITE client: transaction timeout, 64*T1.
    TimerF,
    /// INVITE server: final response retransmission, T1 doubling up to T2 (unreliable only).
    TimerG,
    /// INVITE server: wait for the ACK of a non-2xx final, 64*T1.
    TimerH,
    /// INVITE server: absorb ACK retransmissions in Confirmed.
    TimerI,
    /// Non-INVITE server: absorb request retransmissions in Completed.
    TimerJ,
    /// Non-INVITE client: absorb response retransmissions in Completed.
    TimerK,
    /// INVITE server (RFC 6026): absorb INVITE retransmissions in Accepted, 64*T1.
    TimerL,
    /// INVITE client (RFC 6026): accept further 2xx in Accepted, 64*T1.
    TimerM,
}

impl fmt::Display for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let letter = match self {
            Timer::TimerA => "A",
            Timer::TimerB => "B",
            Timer::TimerD => "D",
            Timer::TimerE => "E",
            Timer::TimerF => "F",
            Timer::TimerG => "G",
            Timer::TimerH => "H",
            Timer::TimerI => "I",
            Timer::TimerJ => "J",
            Timer::TimerK => "K",
            Timer::TimerL => "L",
            Timer::TimerM => "M",
        };
        write!(f, "Timer {letter}")
    }
}

/// Takes the next item of a machine's output queue; a drained queue gives its buffer
/// back. A transaction outlives its last message by up to 64*T1 (Timer L after a 2xx,
/// 32 s), and an empty queue would keep its buffer all that time: 128 bytes per INVITE
/// transaction, across every call answered in the last 32 s.
pub(crate) fn drain<T>(queue: &mut VecDeque<T>) -> Option<T> {
    let item = queue.pop_front();
    if item.is_none() && queue.capacity() > 0 {
        *queue = VecDeque::new();
    }
    item
}

/// The (at most two) timers a machine has running at once: A+B, E+F, G+H, or one of D, I,
/// J, K, L, M. Shared by the four machines so that deadlines are computed one way.
#[derive(Debug, Clone, Default)]
pub(crate) struct TimerSet {
    slots: [Option<(Timer, Instant)>; 2],
}

impl TimerSet {
    /// Starts (or restarts) `timer` to fire at `at`.
    pub(crate) fn arm(&mut self, timer: Timer, at: Instant) {
        if let Some(slot) = self
            .slots
            .iter_mut()
            .find(|s| s.is_some_and(|(t, _)| t == timer))
        {
            *slot = Some((timer, at));
        } else if let Some(slot) = self.slots.iter_mut().find(|s| s.is_none()) {
            *slot = Some((timer, at));
        } else {
            // No machine runs three timers; keep the earliest rather than lose the new one.
            debug_assert!(false, "a third timer armed: {timer}");
            self.slots[1] = Some((timer, at));
        }
    }

    /// Stops every timer.
    pub(crate) fn clear(&mut self) {
        self.slots = [None, None];
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.slots.iter().flatten().map(|(_, at)| *at).min()
    }

    /// Removes and returns the earliest timer due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let slot = self
            .slots
            .iter_mut()
            .filter(|s| s.is_some_and(|(_, at)| at <= now))
            .min_by_key(|s| s.map(|(_, at)| at))?;
        slot.take().map(|(t, _)| t)
    }

    /// True if `timer` is running.
    #[cfg(test)]
    pub(crate) fn is_armed(&self, timer: Timer) -> bool {
        self.slots.iter().flatten().any(|(t, _)| *t == timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3261_timer_table() {
        let t = Timers::default();
        let ms = Duration::from_millis;
        use Timer::*;
        #[allow(non_upper_case_globals)]
        const Reliable: Transport = Transport::Tls;
        #[allow(non_upper_case_globals)]
        const Unreliable: Transport = Transport::Udp;
        let cases = [
            (TimerA, Unreliable, Some(ms(500))),
            (TimerA, Reliable, None),
            (TimerB, Unreliable, Some(ms(32_000))),
            (TimerB, Reliable, Some(ms(32_000))),
            (TimerD, Unreliable, Some(ms(32_000))),
            (TimerD, Reliable, Some(ms(0))),
            (TimerE, Unreliable, Some(ms(500))),
            (TimerE, Reliable, None),
            (TimerF, Reliable, Some(ms(32_000))),
            (TimerG, Unreliable, Some(ms(500))),
            (TimerG, Reliable, None),
            (TimerH, Reliable, Some(ms(32_000))),
            (TimerI, Unreliable, Some(ms(5_000))),
            (TimerI, Reliable, Some(ms(0))),
            (TimerJ, Unreliable, Some(ms(32_000))),
            (TimerJ, Reliable, Some(ms(0))),
            (TimerK, Unreliable, Some(ms(5_000))),
            (TimerK, Reliable, Some(ms(0))),
            (TimerL, Reliable, Some(ms(32_000))),
            (TimerM, Unreliable, Some(ms(32_000))),
        ];
        for (timer, kind, want) in cases {
            assert_eq!(t.timer(timer, kind), want, "{timer} {kind:?}");
        }
        // Timer D outlasts Timer H when T1 is raised.
        let slow = Timers {
            t1: Duration::from_secs(1),
            ..t
        };
        assert_eq!(slow.timer(TimerD, Unreliable), Some(ms(64_000)));
        assert_eq!(TimerG.to_string(), "Timer G");
    }

    #[test]
    fn a_drained_output_queue_gives_its_buffer_back() {
        let mut q: VecDeque<u32> = VecDeque::new();
        q.extend([1, 2]);
        assert_eq!(drain(&mut q), Some(1));
        assert!(q.capacity() > 0, "not drained yet");
        assert_eq!(drain(&mut q), Some(2));
        assert_eq!(drain(&mut q), None);
        assert_eq!(q.capacity(), 0);
        assert_eq!(drain(&mut q), None);
    }

    #[test]
    fn timer_set_pops_in_deadline_order() {
        let t0 = Instant::now();
        let mut s = TimerSet::default();
        assert_eq!(s.next(), None);
        s.arm(Timer::TimerB, t0 + Duration::from_secs(32));
        s.arm(Timer::TimerA, t0 + Duration::from_millis(500));
        assert_eq!(s.next(), Some(t0 + Duration::from_millis(500)));
        assert_eq!(s.pop_due(t0), None);
        assert_eq!(s.pop_due(t0 + Duration::from_secs(40)), Some(Timer::TimerA));
        assert_eq!(s.pop_due(t0 + Duration::from_secs(40)), Some(Timer::TimerB));
        assert_eq!(s.pop_due(t0 + Duration::from_secs(40)), None);
        s.arm(Timer::TimerG, t0);
        s.arm(Timer::TimerG, t0 + Duration::from_secs(1));
        assert!(s.is_armed(Timer::TimerG));
        assert_eq!(s.next(), Some(t0 + Duration::from_secs(1)));
        s.clear();
        assert_eq!(s.next(), None);
    }
}
