//! Scripted Teams clients: a user's virtual endpoints (desktop, mobile, voicemail) that
//! ring, answer, decline, deflect and hang up on a schedule from the config. A script
//! produces the same [`LegEvent`]s a SIP endpoint's leg does, so the call's rules treat
//! both alike. Time is passed in: scripts are tested on a virtual clock.

use std::time::{Duration, Instant};

use crate::call::leg::{LegEvent, Redirect};
use crate::config::{Outcome, RedirectTarget};

/// A step of a script, due at an offset from the call's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Ring,
    MediaAnswer,
    Answer,
    Reject(u16),
    RedirectVoicemail,
    RedirectNumber,
    HangUp,
    Hold,
    Resume,
    Transfer,
}

impl Step {
    fn event(self) -> LegEvent {
        match self {
            Step::Ring => LegEvent::Ringing,
            Step::MediaAnswer => LegEvent::EarlyMedia(None),
            Step::Answer => LegEvent::Answered(None),
            Step::Reject(code) => LegEvent::Failed(code),
            Step::RedirectVoicemail => LegEvent::Redirected(Redirect::Voicemail),
            // The number is the script's; see `Script::handle_timeout`.
            Step::RedirectNumber => LegEvent::Redirected(Redirect::Other(String::new())),
            Step::HangUp => LegEvent::HungUp,
            Step::Hold => LegEvent::Hold(true),
            Step::Resume => LegEvent::Hold(false),
            // The target is the script's; see `Script::handle_timeout`.
            Step::Transfer => LegEvent::Transfer {
                to: Box::from(""),
                consult: false,
            },
        }
    }
}

/// One scripted endpoint's remaining steps, in exact-size storage (a call keeps its
/// forks for its whole life).
#[derive(Debug, Clone)]
pub struct Script {
    steps: Box<[(Duration, Step)]>,
    next: usize,
    /// Where the transfer step transfers to, or the number a redirect step deflects to
    /// (a script does one or the other: only an answering client transfers).
    target: Option<Box<str>>,
    /// The transfer is consultative: the client calls the target first.
    consult: bool,
}

impl Script {
    /// The script of a `[[tenant.user.endpoint]]`, steps in time order.
    pub fn new(script: &crate::config::Script) -> Script {
        Script {
            steps: schedule(script).into_boxed_slice(),
            next: 0,
            target: match &script.outcome {
                Some((_, Outcome::Redirect(RedirectTarget::Number(n)))) => {
                    Some(n.to_string().into_boxed_str())
                }
                _ => script.transfer_to.as_deref().map(Box::from),
            },
            consult: script.transfer_consultative,
        }
    }

    /// The same script starting `by` into the call (a client rung when the call is
    /// forwarded or transferred to its user): every step that much later.
    pub fn delayed(mut self, by: Duration) -> Script {
        for (off, _) in self.steps.iter_mut() {
            *off += by;
        }
        self
    }

    /// A script of one step (the voicemail answering `after` into the call).
    pub fn one(after: Duration, step: Step) -> Script {
        Script {
            steps: Box::new([(after, step)]),
            next: 0,
            target: None,
            consult: false,
        }
    }

    /// A script that does nothing (a SIP endpoint's fork).
    pub fn none() -> Script {
        Script {
            steps: Box::new([]),
            next: 0,
            target: None,
            consult: false,
        }
    }

    /// When the next step is due, for a call that started at `started`.
    pub fn poll_timeout(&self, started: Instant) -> Option<Instant> {
        self.steps.get(self.next).map(|(off, _)| started + *off)
    }

    /// The next step due at `now`, as the event it stands for.
    pub fn handle_timeout(&mut self, started: Instant, now: Instant) -> Option<LegEvent> {
        let (off, step) = *self.steps.get(self.next)?;
        if started + off > now {
            return None;
        }
        self.next += 1;
        match (step, &self.target) {
            (Step::Transfer, Some(to)) => Some(LegEvent::Transfer {
                to: to.clone(),
                consult: self.consult,
            }),
            (Step::RedirectNumber, Some(to)) => {
                Some(LegEvent::Redirected(Redirect::Other(to.to_string())))
            }
            _ => Some(step.event()),
        }
    }
}

/// The steps of a script in time order.
pub fn schedule(script: &crate::config::Script) -> Vec<(Duration, Step)> {
    let mut steps = Vec::with_capacity(4);
    if let Some(t) = script.ring_after {
        steps.push((t, Step::Ring));
    }
    if let Some(t) = script.media_answer_after {
        steps.push((t, Step::MediaAnswer));
    }
    if let Some((t, outcome)) = &script.outcome {
        let step = match outcome {
            Outcome::Answer => Step::Answer,
            Outcome::Reject(code) => Step::Reject(*code),
            Outcome::Redirect(RedirectTarget::Voicemail) => Step::RedirectVoicemail,
            Outcome::Redirect(RedirectTarget::Number(_)) => Step::RedirectNumber,
        };
        steps.push((*t, step));
        if let (Outcome::Answer, Some(h)) = (outcome, script.hangup_after) {
            steps.push((*t + h, Step::HangUp));
        }
        if let (Outcome::Answer, Some(x)) = (outcome, script.transfer_after) {
            steps.push((*t + x, Step::Transfer));
        }
        if let (Outcome::Answer, Some(h)) = (outcome, script.hold_after) {
            steps.push((*t + h, Step::Hold));
            if let Some(d) = script.hold_for {
                steps.push((*t + h + d, Step::Resume));
            }
        }
    }
    // Stable: a ring and an answer due at the same instant keep their order.
    steps.sort_by_key(|(t, _)| *t);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Script as Config;

    #[test]
    fn script_steps_are_in_time_order_with_hangup_after_answer() {
        let s = Config {
            ring_after: Some(Duration::from_millis(300)),
            media_answer_after: Some(Duration::from_secs(1)),
            outcome: Some((Duration::from_secs(2), Outcome::Answer)),
            hangup_after: Some(Duration::from_secs(30)),
            hold_after: Some(Duration::from_secs(10)),
            hold_for: Some(Duration::from_secs(5)),
            transfer_after: None,
            transfer_to: None,
            transfer_consultative: false,
            bypass: true,
        };
        assert_eq!(
            schedule(&s),
            vec![
                (Duration::from_millis(300), Step::Ring),
                (Duration::from_secs(1), Step::MediaAnswer),
                (Duration::from_secs(2), Step::Answer),
                (Duration::from_secs(12), Step::Hold),
                (Duration::from_secs(17), Step::Resume),
                (Duration::from_secs(32), Step::HangUp),
            ]
        );
        let redirect = Config {
            ring_after: None,
            media_answer_after: None,
            outcome: Some((Duration::ZERO, Outcome::Redirect(RedirectTarget::Voicemail))),
            hangup_after: None,
            hold_after: None,
            hold_for: None,
            transfer_after: None,
            transfer_to: None,
            transfer_consultative: false,
            bypass: false,
        };
        assert_eq!(
            schedule(&redirect),
            vec![(Duration::ZERO, Step::RedirectVoicemail)]
        );
    }

    #[test]
    fn a_script_speaks_leg_events_on_a_virtual_clock() {
        let cfg = Config {
            ring_after: Some(Duration::from_millis(200)),
            media_answer_after: None,
            outcome: Some((Duration::from_secs(2), Outcome::Reject(486))),
            hangup_after: None,
            hold_after: None,
            hold_for: None,
            transfer_after: None,
            transfer_to: None,
            transfer_consultative: false,
            bypass: false,
        };
        let t0 = Instant::now();
        let mut s = Script::new(&cfg);
        assert_eq!(s.poll_timeout(t0), Some(t0 + Duration::from_millis(200)));
        assert_eq!(s.handle_timeout(t0, t0 + Duration::from_millis(199)), None);
        assert_eq!(
            s.handle_timeout(t0, t0 + Duration::from_millis(200)),
            Some(LegEvent::Ringing)
        );
        assert_eq!(s.poll_timeout(t0), Some(t0 + Duration::from_secs(2)));
        assert_eq!(
            s.handle_timeout(t0, t0 + Duration::from_secs(5)),
            Some(LegEvent::Failed(486))
        );
        assert_eq!(s.poll_timeout(t0), None);
        assert_eq!(s.handle_timeout(t0, t0 + Duration::from_secs(9)), None);
    }
}
