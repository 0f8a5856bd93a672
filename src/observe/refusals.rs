//! Recent refusals per SBC, for the conformance findings about what an SBC does *after*
//! drhub refused its INVITE (DR-CONF):
//!
//! - a call declined with `603` is final and must not be tried again (DR-ERR-2);
//! - a datacenter that answered `503` with `Retry-After` must not be tried again within
//!   that time: the SBC moves to the next datacenter (DR-DC-2, the seed's rule).
//!
//! A refusal is remembered where it is sent, under the SBC's name in the report and the
//! call's caller→callee pair (the From user part and the Request-URI user part, as they
//! came). The SBC's next new INVITE for that pair consumes it, wherever it arrives
//! ([`Refusals::retry`], called by the front door for every new INVITE, before any
//! datacenter mode applies); a retransmission of the refused INVITE (same Call-ID and
//! CSeq) neither counts nor consumes it.
//!
//! The memory is bounded, so that no SBC can make it grow: a refusal expires with its
//! window, an SBC keeps its last [`PER_SBC`], at most [`SBCS`] SBCs are followed at once
//! (a new one waits for room), and the strings kept are clipped to [`MAX_FIELD`] bytes.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sip::Message;

/// How long after a `603` a new INVITE for the same caller and callee counts as the
/// SBC trying the declined call again (an emulator choice, DR-ERR-2 names no time):
/// 64·T1 with RFC 3261's default T1 of 500 ms, as long as an INVITE client transaction
/// may live (Timer B). Later, it is taken for a new call.
pub const DECLINE_WINDOW: Duration = Duration::from_secs(32);

/// Refusals one SBC keeps (the oldest goes first).
pub const PER_SBC: usize = 256;

/// SBCs followed at once.
pub const SBCS: usize = 256;

/// Longest caller, callee or Call-ID kept, in bytes; a longer caller or callee is no
/// phone number or user name drhub routes, and is not followed.
pub const MAX_FIELD: usize = 128;

/// How drhub refused an SBC's INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// `603 Decline` (DR-ERR-2).
    Declined,
    /// `503` with `Retry-After` from a busy datacenter (DR-DC-1, DR-DC-2).
    Busy {
        datacenter: Box<str>,
        retry_after: u32,
    },
}

impl Refused {
    /// How long a new INVITE for the same pair is a finding.
    fn window(&self) -> Duration {
        match self {
            Refused::Declined => DECLINE_WINDOW,
            Refused::Busy { retry_after, .. } => Duration::from_secs(u64::from(*retry_after)),
        }
    }
}

#[derive(Debug)]
struct Refusal {
    how: Refused,
    caller: Box<str>,
    callee: Box<str>,
    call_id: Box<str>,
    cseq: u32,
    at: Instant,
}

impl Refusal {
    fn live(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.at) < self.how.window()
    }
}

/// A new INVITE that retried what drhub refused: the finding to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    pub requirement: &'static str,
    pub what: &'static str,
    pub detail: String,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Refusals {
    by_sbc: Mutex<HashMap<String, VecDeque<Refusal>>>,
}

impl Refusals {
    /// Remembers that drhub refused `invite` from `sbc` so (at `now`).
    pub fn remember(&self, sbc: &str, invite: &Message<'_>, how: Refused, now: Instant) {
        let Some((caller, callee)) = pair(invite) else {
            return;
        };
        let refusal = Refusal {
            how,
            caller: caller.into(),
            callee: callee.into(),
            call_id: clip(invite.call_id().unwrap_or_default()).into(),
            cseq: cseq(invite),
            at: now,
        };
        let mut map = self.lock();
        if !map.contains_key(sbc) && map.len() >= SBCS {
            map.retain(|_, list| {
                list.retain(|r| r.live(now));
                !list.is_empty()
            });
            if map.len() >= SBCS {
                return;
            }
        }
        let list = map.entry(sbc.to_owned()).or_default();
        // The latest refusal of a pair is the one the SBC answers to.
        list.retain(|r| r.live(now) && (&*r.caller, &*r.callee) != (caller, callee));
        if list.len() >= PER_SBC {
            list.pop_front();
        }
        list.push_back(refusal);
    }

    /// A new INVITE from `sbc`, arriving on `datacenter` at `now`: the finding when it
    /// retries a refusal still in its window. The refusal of its pair is consumed either
    /// way (the SBC's next move was this INVITE), unless it is that INVITE again.
    pub fn retry(
        &self,
        sbc: &str,
        invite: &Message<'_>,
        datacenter: &str,
        now: Instant,
    ) -> Option<Retry> {
        let (caller, callee) = pair(invite)?;
        let mut map = self.lock();
        let list = map.get_mut(sbc)?;
        list.retain(|r| r.live(now));
        let i = list
            .iter()
            .position(|r| (&*r.caller, &*r.callee) == (caller, callee));
        let again = i.is_some_and(|i| {
            let r = &list[i];
            *r.call_id == *clip(invite.call_id().unwrap_or_default()) && r.cseq == cseq(invite)
        });
        let found = if again {
            None
        } else {
            i.and_then(|i| list.remove(i))
        };
        if list.is_empty() {
            map.remove(sbc);
        }
        let found = found?;
        let after = now.saturating_duration_since(found.at).as_secs_f64();
        match found.how {
            Refused::Declined => Some(Retry {
                requirement: "DR-ERR-2",
                what: "A call declined with 603 was tried again (603 is final)",
                detail: format!(
                    "{after:.1} s after 603 Decline to Call-ID {}; from {caller} to {callee}",
                    found.call_id
                ),
            }),
            Refused::Busy {
                datacenter: refused_by,
                retry_after,
            } if *refused_by == *datacenter => Some(Retry {
                requirement: "DR-DC-2",
                what: "Retried the datacenter that answered 503 with Retry-After instead of the next one",
                detail: format!(
                    "retried the datacenter {refused_by} that answered 503 Retry-After {retry_after} after {after:.1} s instead of the next one (Call-ID {}; from {caller} to {callee})",
                    found.call_id
                ),
            }),
            // It moved to another datacenter, as it should.
            Refused::Busy { .. } => None,
        }
    }

    /// Refusals held, over every SBC.
    pub fn len(&self) -> usize {
        self.lock().values().map(VecDeque::len).sum()
    }

    /// Whether no SBC has a refusal held (cheap: checked for every new INVITE).
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Refusal>>> {
        // Each change is made under one lock; a poisoned lock is still consistent.
        self.by_sbc.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The INVITE's caller→callee pair: the From user part and the Request-URI user part;
/// `None` without either, or when one is longer than [`MAX_FIELD`].
fn pair<'m>(invite: &Message<'m>) -> Option<(&'m str, &'m str)> {
    let from = invite.from()?.ok()?;
    let caller = from.uri().user()?;
    let callee = invite.request_uri()?.ok()?.user()?;
    (caller.len() <= MAX_FIELD && callee.len() <= MAX_FIELD).then_some((caller, callee))
}

fn cseq(invite: &Message<'_>) -> u32 {
    invite.cseq().and_then(Result::ok).map_or(0, |c| c.seq)
}

/// At most [`MAX_FIELD`] bytes of `s`, cut at a character boundary.
fn clip(s: &str) -> &str {
    let mut end = s.len().min(MAX_FIELD);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Stored;

    const SBC: &str = "sbc1.adatum.biz";
    const CALLER: &str = "+17168712781";
    const USER1: &str = "+18338006777";

    fn invite(call_id: &str, cseq: u32, from: &str, to: &str) -> Stored {
        let text = format!(
            "INVITE sip:{to}@sip.pstnhub.microsoft.com;user=phone SIP/2.0\r\n\
Via: SIP/2.0/TLS sbc1.adatum.biz:5061;branch=z9hG4bK{call_id}{cseq}\r\n\
From: <sip:{from}@sbc1.adatum.biz;user=phone>;tag=1\r\n\
To: <sip:{to}@sip.pstnhub.microsoft.com;user=phone>\r\n\
Call-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        Stored::new(bytes::Bytes::from(text)).unwrap()
    }

    /// SBC's INVITE `call_id` (CSeq 1) from CALLER to `to`, refused at `at`.
    fn refuse(r: &Refusals, call_id: &str, to: &str, how: Refused, at: Instant) {
        r.remember(SBC, &invite(call_id, 1, CALLER, to).message(), how, at);
    }

    /// What SBC's new INVITE `call_id` (CSeq `cseq`) to `to`, on `dc` at `at`, is.
    fn retry(
        r: &Refusals,
        (call_id, cseq): (&str, u32),
        to: &str,
        dc: &str,
        at: Instant,
    ) -> Option<Retry> {
        r.retry(SBC, &invite(call_id, cseq, CALLER, to).message(), dc, at)
    }

    fn busy(dc: &str, retry_after: u32) -> Refused {
        Refused::Busy {
            datacenter: dc.into(),
            retry_after,
        }
    }

    #[test]
    fn dr_err_2_a_new_invite_for_a_declined_pair_within_32_s_is_a_finding_once() {
        let r = Refusals::default();
        let t0 = Instant::now();
        refuse(&r, "a", USER1, Refused::Declined, t0);
        // The refused INVITE again (a retransmission): nothing, and still remembered.
        assert_eq!(retry(&r, ("a", 1), USER1, "sip", t0), None);
        // Another pair, another SBC: nothing.
        assert_eq!(retry(&r, ("b", 1), "+18338006778", "sip", t0), None);
        let other_sbc = invite("c", 1, CALLER, USER1);
        assert_eq!(
            r.retry("sbc2.adatum.biz", &other_sbc.message(), "sip", t0),
            None
        );
        let at = t0 + Duration::from_millis(1500);
        let found = retry(&r, ("c", 1), USER1, "sip2", at).expect("a finding");
        assert_eq!(found.requirement, "DR-ERR-2");
        let start = "1.5 s after 603 Decline to Call-ID a; from +17168712781 to +18338006777";
        assert_eq!(found.detail, start);
        // Consumed: the next one is no retry of that decline.
        assert_eq!(retry(&r, ("c", 1), USER1, "sip", t0), None);
        assert!(r.is_empty());
        // Past the window: nothing.
        refuse(&r, "d", USER1, Refused::Declined, t0);
        assert_eq!(retry(&r, ("e", 1), USER1, "sip", t0 + DECLINE_WINDOW), None);
        assert!(r.is_empty());
        // The same Call-ID with a higher CSeq is a new attempt.
        refuse(&r, "f", USER1, Refused::Declined, t0);
        assert!(retry(&r, ("f", 2), USER1, "sip", t0).is_some());
    }

    #[test]
    fn dr_dc_2_the_same_datacenter_within_retry_after_is_a_finding_another_is_not() {
        let r = Refusals::default();
        let t0 = Instant::now();
        refuse(&r, "a", USER1, busy("sip2", 30), t0);
        assert_eq!(retry(&r, ("b", 1), USER1, "sip3", t0), None);
        assert!(r.is_empty(), "the move consumed it");
        refuse(&r, "c", USER1, busy("sip2", 30), t0);
        let at = t0 + Duration::from_millis(2500);
        let found = retry(&r, ("d", 1), USER1, "sip2", at).expect("a finding");
        assert_eq!(found.requirement, "DR-DC-2");
        assert_eq!(
            found.detail,
            "retried the datacenter sip2 that answered 503 Retry-After 30 after 2.5 s instead \
             of the next one (Call-ID c; from +17168712781 to +18338006777)"
        );
        // After Retry-After, the same datacenter is fine.
        refuse(&r, "e", USER1, busy("sip2", 30), t0);
        let later = t0 + Duration::from_secs(30);
        assert_eq!(retry(&r, ("f", 1), USER1, "sip2", later), None);
    }

    #[test]
    fn the_memory_is_bounded_per_sbc_and_in_sbcs() {
        let r = Refusals::default();
        let t0 = Instant::now();
        let number = |i: usize| format!("+1833800{i:04}");
        for i in 0..(PER_SBC + 10) {
            refuse(&r, &format!("x{i}"), &number(i), Refused::Declined, t0);
        }
        assert_eq!(r.len(), PER_SBC);
        // The oldest went first.
        assert_eq!(retry(&r, ("y", 1), &number(0), "sip", t0), None);
        assert!(retry(&r, ("y", 1), &number(PER_SBC + 9), "sip", t0).is_some());

        let r = Refusals::default();
        let inv = invite("z", 1, CALLER, USER1);
        for i in 0..(SBCS + 5) {
            r.remember(
                &format!("sbc{i}.example"),
                &inv.message(),
                Refused::Declined,
                t0,
            );
        }
        assert_eq!(r.len(), SBCS);
        // Once the first have expired, a new SBC takes their room.
        let later = t0 + DECLINE_WINDOW;
        r.remember("new.example", &inv.message(), busy("sip", 60), later);
        assert_eq!(r.len(), 1);
        // A caller too long to be a number is not followed; a long Call-ID is clipped.
        let long = invite("l", 1, &"9".repeat(MAX_FIELD + 1), USER1);
        r.remember(SBC, &long.message(), Refused::Declined, t0);
        assert_eq!(r.len(), 1);
        assert_eq!(clip(&"aé".repeat(MAX_FIELD)).len(), MAX_FIELD - 1);
    }
}
