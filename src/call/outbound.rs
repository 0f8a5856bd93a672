//! Outbound calls (DR-OUT): a Teams user calls a number, and drhub, as the UAC, sends
//! the INVITE to the SBCs the tenant's voice routing chose, one after the other.
//!
//! An [`Outbound`] call owns one [`UacLeg`] per attempt. Every attempt keeps the call's
//! Call-ID and From tag with the next CSeq (a UAC retrying elsewhere, RFC 3261
//! §8.1.3.4), so the SBC's log and drhub's read as one call. It moves to the next
//! gateway (DR-OUT-2) when the SBC answers a code of its trunk's
//! `failover_response_codes`, cannot be reached (the 504 family of the connect error),
//! or gives no final response within the trunk's `failover_time_seconds` (408,
//! 500001; the INVITE is cancelled). Microsoft fails over only while the SBC has sent
//! no provisional response other than 100 ("to prevent double ringing"): after a 180
//! or 183 the timer stops and a failure is final. `603` is always final (DR-ERR-2);
//! `503` with `Retry-After` also rests the SBC for that long (DR-OUT-3, through
//! [`Action::Rest`]). The caller is scripted (the control API, `drhub call`, a user's
//! `[[tenant.user.call]]`): it may give up ringing (CANCEL) and hangs up after a while
//! (BYE). Like [`super::Call`] it is sans-IO: events in, [`Action`]s out, time passed in.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::dialog::Peer;
use super::leg::{reply, reply_200, InviteParams, LegEvent, UacLeg, UasLeg};
use super::session_timer::{
    self, negotiate_uac, negotiate_uas, on_422, uac_request_headers, ResponseTimers, SessionTimer,
    UacHeaders, UasDecision,
};
use super::{
    request_timers, Action, CallEvent, CallSettings, InFlight, LegKey, Outcome, ReqId, Route, Tag,
};
use crate::diagnostics::{Diagnostic, Rejection, Teller};
use crate::policy::DIALOG_ALLOW;
use crate::sip::{HeaderName, LocalIdentity, Message, Method, Stored, Transport};
use crate::transaction::{ClientEvent, ServerTx};
use crate::transport::connect::Target;
use crate::transport::Destination;

/// One SBC an outbound call may try, with what its trunk says.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub fqdn: Arc<str>,
    pub port: u16,
    /// The trunk's `address` (a lab has no DNS).
    pub address: Option<SocketAddr>,
    /// A plain-TCP lab SBC (DR-TLS-5), known by this IP address.
    pub insecure_ip: Option<IpAddr>,
    /// The voice route that put it in the list, for the log.
    pub route: String,
    pub bypass: bool,
    pub forward_pai: bool,
    /// The trunk gets History-Info on forwarded calls (DR-FWD-4).
    pub forward_call_history: bool,
    pub failover_codes: Vec<u16>,
    pub failover_time: Duration,
    /// The listener (datacenter) whose certificate a new connection presents, and how
    /// drhub names itself there.
    pub listener: Arc<str>,
    pub local: LocalIdentity,
    /// The SDP offer for this trunk: the calling endpoint's on bypass trunks; else
    /// (`None`) the media processor's, or a virtual endpoint's on bypass, made when the
    /// gateway is tried.
    pub offer: Option<Bytes>,
    /// The RTP port the offer announces (answers to the SBC's re-offers keep it).
    pub media_port: u16,
    /// The SBC's OPTIONS listed REFER (DR-OPT-2): what DR-XFER-1 goes by when its 200
    /// has no Allow.
    pub options_allow_refer: bool,
}

/// Everything placing a call decided: who calls what, through which gateways.
#[derive(Debug, Clone)]
pub struct Placement {
    pub call_id: String,
    pub tenant: String,
    pub user: String,
    /// The number called, `+E164`.
    pub number: String,
    /// The caller's number, `+E164`.
    pub caller: String,
    pub display_name: String,
    /// Caller ID withheld: From is anonymous, `Privacy: id` (PAI still carries the number
    /// to a trunk with `forward_pai`).
    pub private: bool,
    pub gateways: Vec<Gateway>,
    /// The caller gives up (CANCEL) when nobody answered by then.
    pub ring_for: Duration,
    /// A scripted caller hangs up this long after the answer (`None`: an endpoint,
    /// whose user hangs up).
    pub talk_for: Option<Duration>,
    /// The media processor, for answers to the SBC's re-offers.
    pub media: Arc<crate::sdp::MediaConfig>,
    /// A user's forward of an inbound call (DR-FWD): the INVITEs carry its `cause` and,
    /// to trunks with `forward_call_history`, its History-Info.
    pub carried: Option<Box<super::forward::Carry>>,
}

/// SBCs out of rotation after a `503` with `Retry-After` (DR-OUT-3), until when.
#[derive(Debug, Default)]
pub struct Rotation {
    resting: Mutex<HashMap<Arc<str>, Instant>>,
}

impl Rotation {
    /// Takes `sbc` out of rotation for `for_`.
    pub fn rest(&self, sbc: &Arc<str>, for_: Duration, now: Instant) {
        let mut m = self.resting.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, until| *until > now);
        m.insert(sbc.clone(), now + for_);
    }

    /// When `sbc` comes back into rotation, if it is out now.
    pub fn resting_until(&self, sbc: &str, now: Instant) -> Option<Instant> {
        let m = self.resting.lock().unwrap_or_else(|p| p.into_inner());
        m.get(sbc).copied().filter(|until| *until > now)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Attempt `n` is out; no provisional beyond 100 yet.
    Trying(usize),
    /// Attempt `n`'s SBC rings (180/183): no more failover.
    Ringing(usize),
    /// The caller gave up on attempt `n`: the CANCEL is out, waiting for the INVITE's
    /// final response.
    Cancelling(usize),
    /// Answered by attempt `n`.
    Up(usize),
    /// BYE sent; waiting for its answer.
    Ending,
    Done,
}

#[derive(Debug, Clone)]
enum Purpose {
    Invite(usize),
    /// CANCEL, or BYE to a 2xx nobody wants: nothing waits on the answer.
    Fire,
    Closing,
    Refresh {
        headers: UacHeaders,
        invite: bool,
    },
    /// The Teams side's hold or resume re-INVITE (DR-HOLD-2).
    Hold {
        hold: bool,
        next: Box<crate::sdp::Continuity>,
    },
    /// A peer's re-INVITE or UPDATE relayed to the other (media bypass with a calling
    /// endpoint); its server transaction waits in [`Outbound::relays`].
    Relay,
    /// A REFER to the SBC: the Teams user transfers the call (DR-XFER-3).
    Refer,
    /// The INVITE of a transfer drhub carries out as referee (DR-XFER-2).
    TransferInvite,
}

/// A transfer of a call drhub placed, carried out as referee (DR-XFER-2): a second leg
/// to the SBC, the target's, which once answered is bridged with the answered leg
/// through the media processor, the Teams side gone.
#[derive(Debug)]
struct Bridge {
    leg: UacLeg,
    /// Its gateway (the SBC's trunk, as the user's voice routing gave it).
    gateway: Box<Gateway>,
    target: String,
    answered: bool,
    /// drhub's side of the media session with it (the media processor's), once
    /// answered: its re-offers are answered from here.
    media: super::LegMedia,
}

/// A re-INVITE or UPDATE waiting for the other peer's answer.
#[derive(Debug)]
struct Relay {
    tx: ServerTx,
    request: Stored,
    /// Sent on to the calling endpoint (from the SBC), else to the SBC.
    to_caller: bool,
}

/// How one attempt ended, for the log and the call's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    pub sbc: Arc<str>,
    pub status: u16,
    pub diagnostic: Diagnostic,
    /// The response code: the diagnostic's, or `560` and the SBC's status.
    pub code: u32,
    pub why: String,
}

/// The SIP endpoint that placed the call (DR-OUT-1): drhub is the UAS of its INVITE.
#[derive(Debug)]
pub struct Caller {
    pub leg: UasLeg,
    /// How requests reach it (its UDP address or TCP connection).
    pub route: Route,
    /// Its leg's index key: its Call-ID and From tag.
    pub key: LegKey,
    pub peer: Peer,
    /// The media processor's answer to its offer (what it gets on non-bypass trunks,
    /// DR-MEDIA-3).
    pub answer: Bytes,
    /// That answer's session, for answering the endpoint's later offers.
    pub media: Box<crate::sdp::Continuity>,
    /// Its name in the log.
    pub name: String,
}

/// See the module docs.
pub struct Outbound {
    settings: Arc<CallSettings>,
    placement: Box<Placement>,
    tag: Tag,
    cseq: u32,
    /// Every attempt's leg, with the attempt's index.
    legs: Vec<(usize, UacLeg)>,
    phase: Phase,
    /// The SBC that answered.
    answered: Option<Arc<str>>,
    /// Its 2xx listed UPDATE in Allow: session refreshes use it (RFC 4028 §7.4).
    update_allowed: bool,
    /// Its 2xx listed REFER in Allow: a transfer is a REFER to it (DR-XFER-1).
    refer_allowed: bool,
    /// A transfer by REFER, from the REFER to the NOTIFY that ends it (DR-XFER-3).
    transfer: Option<super::transfer::Target>,
    started: Instant,
    failover_at: Option<Instant>,
    give_up_at: Instant,
    hang_up_at: Option<Instant>,
    session: Option<SessionTimer>,
    /// The timer headers of the INVITE out now (non-bypass trunks, DR-ST-1).
    invite_timers: Option<UacHeaders>,
    /// The headers for the INVITE again after a 422 (RFC 4028 §7.4): same gateway.
    retry_422: Option<UacHeaders>,
    requests: InFlight<Purpose>,
    actions: Vec<Action>,
    pub attempts: Vec<AttemptResult>,
    pub outcome: Option<Outcome>,
    /// The endpoint that placed the call, if one did.
    caller: Option<Box<Caller>>,
    /// The To tag of drhub's answers to it.
    caller_tag: Tag,
    /// A 183 went to it already.
    sent_183: bool,
    /// The SDP session with the SBC that answered, from its first re-offer on.
    sbc_media: super::LegMedia,
    /// The media processor's session with the endpoint that placed the call
    /// (non-bypass trunks).
    caller_media: super::LegMedia,
    /// Re-INVITEs and UPDATEs relayed between the SBC and the calling endpoint, by the id
    /// of the request that carries each on.
    relays: Vec<(ReqId, Relay)>,
    /// What the call's record says before how it went (a forward's rule and target).
    outcome_prefix: Option<String>,
    /// The 200 to the calling endpoint's re-INVITE over UDP, until its ACK.
    kept_2xx: Option<Box<super::leg::Kept2xx>>,
    /// A transfer drhub carries out as referee (DR-XFER-2), from its INVITE on.
    bridge: Option<Box<Bridge>>,
    /// The calling endpoint got its BYE when the transfer completed: it is gone.
    caller_left: bool,
    /// SIP endpoints an inbound call cancelled before it forwarded to this call: a 2xx
    /// crossing the CANCEL is ACKed and ended with BYE.
    cancelled: Vec<UacLeg>,
}

impl Outbound {
    pub fn new(placement: Placement, settings: Arc<CallSettings>, now: Instant) -> Outbound {
        Outbound {
            give_up_at: now + placement.ring_for,
            placement: Box::new(placement),
            settings,
            tag: Tag::random(),
            cseq: 0,
            legs: Vec::new(),
            phase: Phase::Trying(0),
            answered: None,
            update_allowed: false,
            refer_allowed: false,
            transfer: None,
            started: now,
            sbc_media: super::LegMedia::new(super::MediaPeer::Sbc),
            caller_media: super::LegMedia::new(super::MediaPeer::Endpoint),
            relays: Vec::new(),
            failover_at: None,
            hang_up_at: None,
            session: None,
            invite_timers: None,
            retry_422: None,
            requests: InFlight::new(),
            actions: Vec::new(),
            attempts: Vec::new(),
            outcome: None,
            caller: None,
            caller_tag: Tag::random(),
            sent_183: false,
            outcome_prefix: None,
            kept_2xx: None,
            bridge: None,
            caller_left: false,
            cancelled: Vec::new(),
        }
    }

    /// Request ids start after `last` (a call carried on in another call's task, whose
    /// requests may still be answered).
    pub fn with_requests_after(mut self, last: u32) -> Outbound {
        self.requests.next = self.requests.next.max(last);
        self
    }

    /// The call's record starts with `prefix` (a forwarded call's rule and target).
    pub fn with_outcome_prefix(mut self, prefix: String) -> Outbound {
        self.outcome_prefix = Some(prefix);
        self
    }

    /// Completes the record once the call is done: the prefix goes in front, once.
    pub fn finish(&mut self) {
        if let (Some(p), Some(o)) = (self.outcome_prefix.take(), self.outcome.as_mut()) {
            o.reason = format!("{p}; {}", o.reason);
        }
    }

    /// The SIP endpoints the inbound call this one carries on cancelled (a forward).
    pub fn with_cancelled_forks(mut self, legs: Vec<UacLeg>) -> Outbound {
        self.cancelled = legs;
        self
    }

    /// The call placed by a SIP endpoint's INVITE.
    pub fn with_caller(mut self, caller: Caller) -> Outbound {
        self.caller = Some(Box::new(caller));
        self
    }

    /// Every index key the call registered (the task removes them at the end).
    pub fn leg_keys(&self) -> Vec<LegKey> {
        let mut keys = vec![self.key()];
        keys.extend(self.caller.as_ref().map(|c| c.key.clone()));
        keys.extend(
            self.bridge
                .as_ref()
                .map(|b| LegKey::new(b.leg.call_id(), b.leg.local_tag().as_str())),
        );
        keys
    }

    /// The caller's failed INVITE transaction, whose ACK (Timer H) the task still awaits.
    pub fn take_failure(&mut self) -> Option<crate::transaction::Answered> {
        self.caller.as_mut()?.leg.take_failure()
    }

    pub fn call_id(&self) -> &str {
        &self.placement.call_id
    }

    pub fn tenant(&self) -> &str {
        &self.placement.tenant
    }

    pub fn user(&self) -> &str {
        &self.placement.user
    }

    /// The number called.
    pub fn number(&self) -> &str {
        &self.placement.number
    }

    /// The index key every attempt shares (Call-ID and drhub's From tag).
    pub fn key(&self) -> LegKey {
        LegKey::new(&self.placement.call_id, self.tag.as_str())
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        if self.actions.is_empty() {
            return None;
        }
        Some(self.actions.remove(0))
    }

    /// Sends the first attempt.
    pub fn start(&mut self, now: Instant) {
        info!(
            number = %self.placement.number,
            gateways = %self.placement.gateways.iter().map(|g| &*g.fqdn).collect::<Vec<_>>().join(","),
                        "outbound call: trying the route's gateways in order"
        );
        if let Some(c) = &mut self.caller {
            // A forwarded (or transferred) call's SBC heard 100 (and 181) from the call
            // it came in as.
            if self.placement.carried.is_none() {
                c.leg.provisional(100, "Trying", None, None, &[]);
            }
            self.actions.push(Action::Index {
                key: c.key.clone(),
                peer: c.peer.clone(),
            });
        }
        self.attempt(0, now);
    }

    fn next_id(&mut self) -> ReqId {
        self.requests.next_id()
    }

    /// The SDP offer for gateway `n`, made the first time it is needed (one per kind of
    /// media source: the SBCs of one call see the same media session).
    fn offer_for(&mut self, n: usize) -> Result<Bytes, crate::sdp::SdpError> {
        let g = &self.placement.gateways[n];
        if let Some(o) = &g.offer {
            return Ok(o.clone());
        }
        let bypass = g.bypass;
        let made = self
            .placement
            .gateways
            .iter()
            .find(|o| o.bypass == bypass && o.offer.is_some() && o.media_port == g.media_port)
            .and_then(|o| o.offer.clone());
        let offer = match made {
            Some(o) => o,
            None => {
                let media = &self.placement.media;
                let source = if bypass {
                    crate::sdp::AnswerSource::Endpoint
                } else {
                    crate::sdp::AnswerSource::MediaProcessor
                };
                let id = fastrand::u64(1..u64::MAX / 2);
                Bytes::from(crate::sdp::offer(
                    &media.codecs,
                    media.address,
                    g.media_port,
                    id,
                    source,
                )?)
            }
        };
        self.placement.gateways[n].offer = Some(offer.clone());
        Ok(offer)
    }

    /// Sends the INVITE of attempt `n`, or ends the call when no gateway is left.
    fn attempt(&mut self, n: usize, now: Instant) {
        if n >= self.placement.gateways.len() {
            return self.finish_failed();
        }
        let offer = match self.offer_for(n) {
            Ok(o) => o,
            Err(e) => {
                warn!(error = %e, "no SDP offer could be made; the call fails");
                self.outcome = Some(Outcome {
                    status: 500,
                    code: None,
                    reason: format!("no SDP offer: {e}"),
                });
                let r = Rejection::new(Diagnostic::NoAcceptableMedia)
                    .with_status(500)
                    .with("detail", e.to_string());
                self.reject_caller(&r);
                self.phase = Phase::Done;
                return;
            }
        };
        self.cseq += 1;
        let timers = if self.placement.gateways[n].bypass {
            None
        } else {
            // DR-ST-1: non-bypass calls always offer a session timer.
            Some(
                self.retry_422
                    .take()
                    .unwrap_or_else(|| uac_request_headers(&self.settings.session, 0)),
            )
        };
        self.invite_timers = timers;
        let id = self.next_id();
        let p = &self.placement;
        let g = &p.gateways[n];
        let host = g.local.host();
        let from = if p.private {
            "\"Anonymous\" <sip:anonymous@anonymous.invalid>".to_owned()
        } else {
            let name = p.display_name.replace(['"', '\\'], "");
            match name.is_empty() {
                true => format!("<sip:{}@{host};user=phone>", p.caller),
                false => format!("\"{name}\" <sip:{}@{host};user=phone>", p.caller),
            }
        };
        let mut target = format!("sip:{}@{}:{};user=phone", p.number, g.fqdn, g.port);
        let (forwarded, transferred) = match p.carried.as_deref() {
            Some(super::forward::Carry::Forward(f)) => (Some(f), None),
            Some(super::forward::Carry::Transfer(t)) => (None, Some(t)),
            None => (None, None),
        };
        // DR-FWD-2: a forwarded INVITE says why in its Request-URI (RFC 4458).
        if let Some(f) = forwarded {
            target.push_str(&format!(";cause={}", f.cause.code()));
        }
        let history = forwarded.filter(|_| g.forward_call_history).map(|f| {
            super::forward::history_info(&f.history, host, &f.forwarder, &p.number, f.cause)
        });
        // DR-XFER-4: the transfer's Referred-By goes on; a consultative transfer's
        // INVITE replaces the consultation dialog at the SBC that knows it (RFC 3891).
        let replaces = transferred.and_then(|t| t.replaces_for(&g.fqdn));
        let to = format!("<sip:{}@{};user=phone>", p.number, g.fqdn);
        // DR-OUT-1: the routing token names the tenant and the call, so that a request
        // the SBC sends to the Contact finds its way back (emulator choice of names).
        let token = p.call_id.get(..16).unwrap_or(&p.call_id);
        let transport = g.local.transport().param();
        let port = g.local.port();
        let contact = format!(
            "<sip:{host}:{port};transport={transport};x-i={};x-c={token}>",
            p.tenant
        );
        let record_route = format!("<sip:{host}:{port};transport={transport};lr>");
        let pai = g
            .forward_pai
            .then(|| format!("<sip:{}@{host};user=phone>", p.caller));
        let session = timers.map(|h| (h.session_expires_header(), h.min_se_header()));
        let mut extra: Vec<(&str, &str)> = Vec::with_capacity(6);
        extra.push(("Record-Route", &record_route));
        if let Some(pai) = &pai {
            extra.push(("P-Asserted-Identity", pai));
        }
        if p.private {
            extra.push(("Privacy", "id"));
        }
        if let Some(h) = &history {
            extra.push(("History-Info", h));
        }
        if let Some(t) = transferred {
            extra.push(("Referred-By", &t.referred_by));
        }
        if let Some(r) = &replaces {
            extra.push(("Replaces", r));
        }
        match &session {
            None => extra.push(("Supported", "replaces")),
            Some((se, min_se)) => {
                extra.push(("Supported", "timer,replaces"));
                extra.push(("Session-Expires", se));
                extra.push(("Min-SE", min_se));
            }
        }
        let peer = Peer::Sbc {
            fqdn: g.fqdn.clone(),
        };
        let leg = UacLeg::start(
            id,
            route_to(g),
            g.local.clone(),
            peer.clone(),
            &InviteParams {
                target: &target,
                from,
                to,
                sdp: &offer,
                extra: &extra,
                again: Some((&p.call_id, self.tag, self.cseq)),
                contact: Some(&contact),
            },
            &mut self.actions,
        );
        let failover_time = g.failover_time;
        info!(attempt = n + 1, sbc = %g.fqdn, route = %g.route, target, "INVITE to the SBC");
        let Some(leg) = leg else {
            warn!("INVITE not built; next gateway");
            return self.attempt(n + 1, now);
        };
        // Requests and stray responses of this attempt's dialog come from this SBC; the
        // index entry must exist before its first response can arrive. The first
        // gateway's is the call's own entry, made when the call was registered.
        if n > 0 {
            let at = self.actions.len() - 1;
            let key = self.key();
            self.actions.insert(at, Action::Index { key, peer });
        }
        self.requests.push(id, Purpose::Invite(n));
        self.legs.push((n, leg));
        self.phase = Phase::Trying(n);
        self.failover_at = Some(now + failover_time);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                d = Some(d.map_or(t, |x| x.min(t)));
            }
        };
        consider(self.kept_2xx.as_ref().map(|k| k.poll_timeout()));
        match self.phase {
            Phase::Trying(_) => {
                consider(self.failover_at);
                consider(Some(self.give_up_at));
            }
            Phase::Ringing(_) => consider(Some(self.give_up_at)),
            Phase::Up(_) => {
                consider(self.hang_up_at);
                consider(self.session.as_ref().and_then(SessionTimer::poll_timeout));
                consider(self.sbc_media.retry.map(|(t, _)| t));
            }
            _ => {}
        }
        consider(self.caller.as_ref().and_then(|c| c.leg.poll_timeout()));
        d
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(k) = &mut self.kept_2xx {
            if !k.handle_timeout(now, self.settings.t2) {
                self.kept_2xx = None;
            }
        }
        if let (Phase::Up(_), Some((at, hold))) = (self.phase, self.sbc_media.retry) {
            if now >= at {
                self.sbc_media.retry = None;
                self.teams_hold(hold);
            }
        }
        if self
            .caller
            .as_mut()
            .is_some_and(|c| c.leg.handle_timeout(now))
        {
            // RFC 3261 §13.3.1.4: no ACK within 64*T1: end the dialog with BYE.
            warn!("the endpoint did not ACK the 200 OK; BYE both ways");
            self.outcome = Some(Outcome {
                status: 200,
                code: Some(Diagnostic::SbcDidNotAck.entry().code),
                reason: format!("{}; the caller did not ACK the 200 OK", self.answered_by()),
            });
            return self.hang_up(&[], true, true);
        }
        match self.phase {
            Phase::Trying(_) | Phase::Ringing(_) if now >= self.give_up_at => {
                info!(after = ?self.placement.ring_for, "nobody answered: the caller gives up (CANCEL)");
                // An endpoint that placed the call hears the ring timeout (DR-FORK-7's
                // status), not the 487 of a call it cancelled itself.
                let status = self.settings.ring_timeout_status;
                self.reject_caller(&Rejection::new(Diagnostic::RingTimeout).with_status(status));
                self.give_up("SIP;cause=487;text=\"Request terminated\"");
            }
            Phase::Trying(n) if self.failover_at.is_some_and(|t| now >= t) => {
                let d = Diagnostic::FailoverTimer;
                let e = d.entry();
                let after = self.placement.gateways[n].failover_time;
                warn!(
                    code = e.code,
                    ?after,
                    "no answer from the SBC within failover_time_seconds; CANCEL and next gateway"
                );
                self.cancel_leg(n, "SIP;cause=408;text=\"Failover timer expired\"");
                self.failed_attempt(
                    n,
                    e.status,
                    d,
                    format!("no final response in {after:?} (failover_time_seconds)"),
                    true,
                    now,
                );
            }
            Phase::Up(_) => {
                if self.hang_up_at.is_some_and(|t| now >= t) {
                    info!("the caller hangs up; BYE to the SBC");
                    self.outcome = Some(Outcome {
                        status: 200,
                        code: None,
                        reason: format!("{}; ended by the caller", self.answered_by()),
                    });
                    return self.hang_up(&[], true, true);
                }
                match self.session.as_mut().and_then(|s| s.handle_timeout(now)) {
                    Some(session_timer::Action::Refresh) => self.send_refresh(None),
                    Some(session_timer::Action::Expire) => {
                        warn!("the session expired without a refresh (DR-ST-2); BYE");
                        self.session_expired();
                    }
                    None => {}
                }
            }
            _ => {}
        }
    }

    pub fn handle(&mut self, ev: CallEvent, now: Instant) {
        match ev {
            CallEvent::Client { id, event } => self.on_client(id, event, now),
            CallEvent::Undeliverable { id, error } => {
                let e = error.diagnostic().entry();
                warn!(code = e.code, status = e.status, error = %error, "request to the SBC not delivered: {}", e.text);
                match self.invite_attempt(id) {
                    Some(n) => {
                        self.requests.retire(id);
                        if let Some(pos) = self.leg_pos(n) {
                            self.legs[pos].1.terminated();
                        }
                        if self.is_current(n) {
                            self.failed_attempt(
                                n,
                                e.status,
                                error.diagnostic(),
                                error.to_string(),
                                true,
                                now,
                            );
                        } else if self.phase == Phase::Cancelling(n) {
                            self.phase = Phase::Done;
                        }
                    }
                    None => self.on_client(id, ClientEvent::TransportError, now),
                }
            }
            CallEvent::Request {
                tx,
                request,
                source,
            } => self.on_request(tx, &request, &source, now),
            CallEvent::Stray { response } => {
                let msg = response.message();
                for (_, leg) in &self.legs {
                    leg.on_stray_2xx(&msg, &mut self.actions);
                }
            }
            CallEvent::Hold(hold) => self.teams_hold(hold),
            CallEvent::Transfer(order) => self.transfer(*order),
            CallEvent::Consult(reply) => {
                let _ = reply.send(self.consultation());
            }
            CallEvent::HangUp => match self.phase {
                Phase::Trying(_) | Phase::Ringing(_) => {
                    info!("ended through the control API while ringing: CANCEL");
                    self.give_up("SIP;cause=487;text=\"Request terminated\"");
                }
                Phase::Up(_) => {
                    info!("ended through the control API; BYE to the SBC (and the caller)");
                    self.outcome = Some(Outcome {
                        status: 200,
                        code: None,
                        reason: format!("{}; ended through the control API", self.answered_by()),
                    });
                    self.hang_up(&[], true, true);
                }
                _ => {}
            },
            CallEvent::Cancel { tx, request } => self.on_caller_cancel(tx, &request),
            CallEvent::Ack { request } => {
                if self
                    .kept_2xx
                    .as_ref()
                    .is_some_and(|k| k.acked_by(&request.message()))
                    && self.caller.as_ref().is_some_and(|c| {
                        c.leg
                            .dialog()
                            .is_some_and(|d| d.matches(&request.message()))
                    })
                {
                    debug!("ACK for the 200 to the caller's re-INVITE");
                    self.kept_2xx = None;
                    return;
                }
                if let Some(c) = &mut self.caller {
                    if c.leg.on_ack(&request.message()) {
                        debug!("ACK from the caller");
                    }
                }
            }
            CallEvent::SbcGone => {}
        }
    }

    fn invite_attempt(&self, id: ReqId) -> Option<usize> {
        match self.requests.find(id) {
            Some(Purpose::Invite(n)) => Some(*n),
            _ => None,
        }
    }

    fn is_current(&self, n: usize) -> bool {
        matches!(self.phase, Phase::Trying(c) | Phase::Ringing(c) if c == n)
    }

    /// Where attempt `n`'s latest leg is in `legs` (an attempt whose INVITE could not be
    /// built has none; one retried after a 422 has two).
    fn leg_pos(&self, n: usize) -> Option<usize> {
        self.legs.iter().rposition(|(a, _)| *a == n)
    }

    /// The FQDN of the SBC that answered.
    fn answered_gateway(&self) -> Option<Arc<str>> {
        match self.phase {
            Phase::Up(n) => Some(self.placement.gateways[n].fqdn.clone()),
            _ => self.answered.clone(),
        }
    }

    fn answered_by(&self) -> String {
        match &self.answered {
            Some(sbc) => format!("answered by {sbc}{}", self.story(" after ")),
            None => "answered".to_owned(),
        }
    }

    fn on_client(&mut self, id: ReqId, event: ClientEvent, now: Instant) {
        if let Some(k) = self.cancelled.iter().position(|l| l.invite_id() == id) {
            return self.on_cancelled_fork(k, event);
        }
        if let ClientEvent::Additional2xx(_) = &event {
            // A 2xx retransmitted (or another fork's) after the INVITE's final response,
            // which retired the request: its leg ACKs it again (RFC 6026 §7.2).
            if let Some((_, leg)) = self.legs.iter_mut().find(|(_, l)| l.invite_id() == id) {
                leg.on_invite_event(event, &mut self.requests.ids(), &mut self.actions);
            }
            return self.track_fire_and_forget();
        }
        let Some(purpose) = self.requests.on_event(id, &event) else {
            return;
        };
        match purpose {
            Purpose::Invite(n) => self.on_invite(n, event, now),
            Purpose::TransferInvite => self.on_transfer_invite(event),
            Purpose::Refer => {
                let code = match &event {
                    ClientEvent::Final(r) => r.message().status_code().unwrap_or(500),
                    _ => 408,
                };
                if (200..300).contains(&code) {
                    info!(code, "the SBC accepted the REFER");
                } else {
                    warn!(code, "the SBC refused the REFER; the call goes on");
                    if let Some(g) = self.answered_gateway() {
                        let note = super::Note::refer_refused(&g, &self.placement.call_id, code);
                        self.actions.push(note);
                    }
                    self.transfer = None;
                }
            }
            Purpose::Fire => {}
            Purpose::Closing => {
                if let ClientEvent::Timeout(_) | ClientEvent::TransportError = event {
                    warn!("a BYE got no answer");
                }
                self.settle_end();
            }
            Purpose::Refresh { headers, invite } => {
                self.on_refresh_answer(event, headers, invite, now)
            }
            Purpose::Relay => {
                if let Some(pos) = self.relays.iter().position(|(r, _)| *r == id) {
                    let (_, relay) = self.relays.swap_remove(pos);
                    self.on_relay_answer(relay, event);
                }
            }
            Purpose::Hold { hold, next } => {
                let answer = match event {
                    ClientEvent::Final(r) => {
                        let msg = r.message();
                        let code = msg.status_code().unwrap_or(500);
                        if (200..300).contains(&code) {
                            self.ack_and_retarget(&msg, true);
                            Ok(Bytes::copy_from_slice(msg.body()))
                        } else {
                            Err(code)
                        }
                    }
                    _ => Err(408),
                };
                // drhub made the Call-ID of a call it places.
                let when = (now, true);
                self.sbc_media
                    .teams_hold_answered(hold, *next, answer, when, &mut self.actions);
            }
        }
    }

    /// An answer to the INVITE of a SIP endpoint the inbound call cancelled before it
    /// forwarded: the leg ACKs a 2xx that crossed the CANCEL, and drhub ends that dialog
    /// with BYE at once (RFC 3261 §9.1, §15); a retransmitted 2xx is ACKed again.
    fn on_cancelled_fork(&mut self, k: usize, event: ClientEvent) {
        let again = matches!(event, ClientEvent::Additional2xx(_));
        let ev =
            self.cancelled[k].on_invite_event(event, &mut self.requests.ids(), &mut self.actions);
        if let (Some(LegEvent::Answered(_)), false) = (ev, again) {
            info!("a cancelled endpoint's 200 crossed the CANCEL: ACK and BYE");
            let id = self.next_id();
            if self.cancelled[k].bye(id, &[], &mut self.actions) {
                self.requests.push(id, Purpose::Fire);
            }
        }
        self.track_fire_and_forget();
    }

    /// A response (or the end) of attempt `n`'s INVITE.
    fn on_invite(&mut self, n: usize, event: ClientEvent, now: Instant) {
        // What the leg does not tell: Retry-After of a 503, the timer headers of a 2xx.
        let (retry_after, timers, min_se) = match &event {
            ClientEvent::Final(r) => {
                let m = r.message();
                self.update_allowed = m
                    .values(HeaderName::Allow)
                    .any(|v| v.trim().eq_ignore_ascii_case("UPDATE"));
                // DR-XFER-1: the 200's Allow, else the SBC's OPTIONS' (DR-OPT-2).
                self.refer_allowed = super::transfer::allow_lists_refer(&m)
                    .unwrap_or(self.placement.gateways[n].options_allow_refer);
                let retry = m.header(HeaderName::RetryAfter).and_then(|v| {
                    v.split(|c: char| !c.is_ascii_digit())
                        .next()?
                        .parse::<u64>()
                        .ok()
                });
                let require_timer = m
                    .values(HeaderName::Require)
                    .any(|v| v.trim().eq_ignore_ascii_case("timer"));
                let se = m.header(HeaderName::SessionExpires).map(str::to_owned);
                let min_se = m.header(HeaderName::MinSE).map(str::to_owned);
                (retry, Some((require_timer, se)), min_se)
            }
            _ => (None, None, None),
        };
        let Some(pos) = self.leg_pos(n) else { return };
        let ev =
            self.legs[pos]
                .1
                .on_invite_event(event, &mut self.requests.ids(), &mut self.actions);
        self.track_fire_and_forget();
        let Some(ev) = ev else { return };
        let current = self.is_current(n);
        let sbc = self.placement.gateways[n].fqdn.clone();
        match ev {
            LegEvent::Ringing | LegEvent::EarlyMedia(_) if current => {
                let ev = ev.clone();
                if let Phase::Trying(_) = self.phase {
                    info!(sbc = %sbc, "the SBC rings; no failover from here on");
                    self.actions
                        .push(Action::Progress(super::router::CallState::Ringing));
                }
                self.phase = Phase::Ringing(n);
                self.failover_at = None;
                self.relay_progress(n, matches!(ev, LegEvent::EarlyMedia(_)));
            }
            LegEvent::Answered(_) if current => {
                let after = now - self.started;
                info!(sbc = %sbc, ?after, "answered");
                self.phase = Phase::Up(n);
                self.actions
                    .push(Action::Progress(super::router::CallState::Answered));
                self.answered = Some(sbc.clone());
                self.failover_at = None;
                self.hang_up_at = self.placement.talk_for.map(|t| now + t);
                if let (Some(sent), Some((require_timer, se))) = (self.invite_timers, timers) {
                    let neg = negotiate_uac(
                        &ResponseTimers {
                            require_timer,
                            session_expires: se.as_deref(),
                        },
                        &sent,
                    );
                    debug!(interval = neg.interval, refresher = %neg.refresher, "session timer");
                    self.session = Some(SessionTimer::new(neg, now));
                }
                self.outcome = Some(Outcome {
                    status: 200,
                    code: None,
                    reason: self.answered_by(),
                });
                if !self.accept_caller(n, now) {
                    warn!("the caller's INVITE cannot make a dialog; BYE to the SBC");
                    self.hang_up(&[], true, false);
                }
            }
            LegEvent::Answered(_) => {
                // A 2xx crossing our CANCEL (the caller gave up, or the failover timer
                // moved on): the leg ACKed it; end that dialog at once.
                info!(sbc = %sbc, "2xx after CANCEL; BYE");
                let id = self.next_id();
                if self.legs[pos].1.bye(id, &[], &mut self.actions) {
                    let purpose = if self.phase == Phase::Cancelling(n) {
                        Purpose::Closing
                    } else {
                        Purpose::Fire
                    };
                    self.requests.push(id, purpose);
                    if self.phase == Phase::Cancelling(n) {
                        self.phase = Phase::Ending;
                    }
                } else if self.phase == Phase::Cancelling(n) {
                    self.phase = Phase::Done;
                }
            }
            LegEvent::Failed(422) if current && !matches!(self.phase, Phase::Ringing(_)) => {
                // RFC 4028 §7.4: retry the same SBC with Session-Expires at its Min-SE.
                let retry = self
                    .invite_timers
                    .map(|sent| on_422(min_se.as_deref(), &sent));
                match retry {
                    Some(Ok(h)) => {
                        info!(sbc = %sbc, session_expires = h.session_expires, "422: INVITE again with the SBC's Min-SE");
                        self.retry_422 = Some(h);
                        self.attempt(n, now);
                    }
                    Some(Err(e)) => {
                        let why = format!("422 Session Interval Too Small: {e:?}");
                        self.failed_attempt(n, 422, Diagnostic::SbcDeclined, why, false, now);
                    }
                    None => {
                        let why = "422 to an INVITE without a session timer".to_owned();
                        self.failed_attempt(n, 422, Diagnostic::SbcDeclined, why, false, now);
                    }
                }
            }
            LegEvent::Failed(code) if current => {
                let ringing = matches!(self.phase, Phase::Ringing(_));
                let g = &self.placement.gateways[n];
                let failover = code != 603 && !ringing && g.failover_codes.contains(&code);
                if code == 503 {
                    if let Some(secs) = retry_after.filter(|s| *s > 0) {
                        let rest = Duration::from_secs(secs.min(86_400));
                        warn!(sbc = %sbc, retry_after = secs, "503 with Retry-After: the SBC is out of rotation (DR-OUT-3)");
                        self.actions.push(Action::Rest {
                            sbc: sbc.clone(),
                            for_: rest,
                        });
                    }
                }
                let why = match (code, ringing) {
                    (603, _) => "603 Decline is final, never retried (DR-ERR-2)".to_owned(),
                    (_, true) => format!(
                        "{code} after the SBC rang: final (no failover after a provisional)"
                    ),
                    _ if failover => format!("{code} is in failover_response_codes"),
                    _ => format!("{code} is not in failover_response_codes: final"),
                };
                let d = if code == 503 {
                    Diagnostic::SbcOverloaded
                } else {
                    Diagnostic::SbcDeclined
                };
                self.failed_attempt(n, code, d, why, failover, now);
            }
            LegEvent::Gone if current => {
                self.failed_attempt(
                    n,
                    408,
                    Diagnostic::FailoverTimer,
                    "no answer to the INVITE (Timer B) or transport error".into(),
                    true,
                    now,
                );
            }
            LegEvent::Failed(_) | LegEvent::Gone if self.phase == Phase::Cancelling(n) => {
                self.phase = Phase::Done;
            }
            LegEvent::HungUp | LegEvent::Redirected(_) if current => {
                self.failed_attempt(
                    n,
                    480,
                    Diagnostic::SbcDeclined,
                    "3xx from the SBC (not followed)".into(),
                    false,
                    now,
                );
            }
            _ => {}
        }
    }

    /// Records how attempt `n` ended; moves on when `failover`, else ends the call.
    fn failed_attempt(
        &mut self,
        n: usize,
        status: u16,
        diagnostic: Diagnostic,
        why: String,
        failover: bool,
        now: Instant,
    ) {
        let sbc = self.placement.gateways[n].fqdn.clone();
        let code = match diagnostic {
            Diagnostic::SbcDeclined => 560_000 + u32::from(status),
            d => d.entry().code,
        };
        let more = n + 1 < self.placement.gateways.len();
        if failover && more {
            warn!(attempt = n + 1, sbc = %sbc, status, code = ?code, "{why}; next gateway");
        } else {
            warn!(attempt = n + 1, sbc = %sbc, status, code = ?code, "{why}");
        }
        self.attempts.push(AttemptResult {
            sbc,
            status,
            diagnostic,
            code,
            why,
        });
        self.failover_at = None;
        if failover && more {
            self.attempt(n + 1, now);
        } else {
            self.finish_failed();
        }
    }

    /// The failed attempts so far, `prefix` first: `sbc1: 503 560503 (why); ...`.
    fn story(&self, prefix: &str) -> String {
        if self.attempts.is_empty() {
            return String::new();
        }
        let parts: Vec<String> = self
            .attempts
            .iter()
            .map(|a| format!("{}: {} {} ({})", a.sbc, a.status, a.code, a.why))
            .collect();
        format!("{prefix}{}", parts.join("; "))
    }

    fn finish_failed(&mut self) {
        let last = self.attempts.last();
        self.outcome = Some(Outcome {
            status: last.map_or(503, |a| a.status),
            code: last.map(|a| a.code),
            reason: match self.story("") {
                s if s.is_empty() => "no gateway could be tried".into(),
                s => s,
            },
        });
        info!(attempts = self.attempts.len(), "outbound call failed");
        // The caller hears the last failure, with Reason and ms-diagnostics (DR-VAL-8).
        if let Some(a) = self.attempts.last() {
            let mut r = Rejection::new(a.diagnostic)
                .with_status(a.status)
                .with("sbc", a.sbc.to_string())
                .with("attempts", self.attempts.len().to_string());
            if a.diagnostic == Diagnostic::SbcDeclined {
                r = r.with_code(a.code);
            }
            self.reject_caller(&r);
        }
        self.phase = Phase::Done;
    }

    /// A failure to the endpoint that placed the call, told as drhub tells rejections.
    fn reject_caller(&mut self, r: &Rejection) {
        let Some(c) = &mut self.caller else { return };
        let local = c.leg.local.clone();
        let teller = Teller {
            style: crate::sip::build::Style::Rfc3261,
            source: local.host(),
            server: local.server(),
            ms_diagnostics: self.settings.ms_diagnostics,
            flow: &self.placement.call_id,
            allow: DIALOG_ALLOW,
        };
        c.leg.reject(r, &teller);
    }

    /// Call progress to the endpoint that placed the call: 180, or 183 with SDP (the
    /// media processor's answer to its offer on non-bypass trunks, once; the SBC's own
    /// on bypass trunks).
    fn relay_progress(&mut self, n: usize, early_media: bool) {
        let bypass = self.placement.gateways[n].bypass;
        let sdp = match self.leg_pos(n) {
            Some(p) if bypass => self.legs[p].1.sdp().cloned(),
            _ => None,
        };
        let tag = self.caller_tag;
        let Some(c) = &mut self.caller else { return };
        if early_media {
            let body = if bypass { sdp } else { Some(c.answer.clone()) };
            if let Some(b) = body {
                if bypass || !self.sent_183 {
                    self.sent_183 = true;
                    c.leg
                        .provisional(183, "Session Progress", Some(tag), Some(&b), &[]);
                    return;
                }
            }
        }
        c.leg.provisional(180, "Ringing", Some(tag), None, &[]);
    }

    /// The SBC answered attempt `n`: 200 to the endpoint that placed the call, with the
    /// media processor's answer (non-bypass) or the SBC's SDP (bypass). False when the
    /// endpoint's INVITE cannot make a dialog.
    fn accept_caller(&mut self, n: usize, now: Instant) -> bool {
        let bypass = self.placement.gateways[n].bypass;
        let sdp = match self.leg_pos(n) {
            Some(p) if bypass => self.legs[p].1.sdp().cloned(),
            _ => None,
        };
        let tag = self.caller_tag;
        let Some(c) = &mut self.caller else {
            return true;
        };
        let body = if bypass {
            sdp.unwrap_or_else(|| c.answer.clone())
        } else {
            c.answer.clone()
        };
        info!(caller = %c.name, "200 OK to the caller");
        c.leg.accept(tag, &body, &[], now)
    }

    /// The endpoint cancelled its INVITE: 200 to the CANCEL, CANCEL to the SBC, 487.
    fn on_caller_cancel(&mut self, tx: ServerTx, request: &Stored) {
        let msg = request.message();
        let Some(c) = &mut self.caller else {
            return;
        };
        let local = c.leg.local.clone();
        reply(tx, &msg, 200, "OK", &local, &[], None);
        if !c.leg.is_pending() {
            return;
        }
        info!("the caller cancelled the call");
        c.leg.fail(487, "Request Terminated", &[]);
        self.give_up("SIP;cause=487;text=\"Request terminated\"");
    }

    /// The call is over once no BYE that ends it is in flight.
    fn settle_end(&mut self) {
        let closing = self.requests.any(|p| matches!(p, Purpose::Closing));
        self.phase = if closing { Phase::Ending } else { Phase::Done };
    }

    /// CANCEL to attempt `n`'s INVITE (§9.1: held until a provisional arrived).
    fn cancel_leg(&mut self, n: usize, reason: &'static str) {
        if let Some(pos) = self.leg_pos(n) {
            self.legs[pos]
                .1
                .cancel(reason, &mut self.requests.ids(), &mut self.actions);
        }
        self.track_fire_and_forget();
    }

    /// The caller gives up (or the operator ends a ringing call): CANCEL, and the call
    /// is over when the INVITE has its final response.
    fn give_up(&mut self, reason: &'static str) {
        let (Phase::Trying(n) | Phase::Ringing(n)) = self.phase else {
            return;
        };
        self.cancel_leg(n, reason);
        self.outcome = Some(Outcome {
            status: 487,
            code: None,
            reason: format!(
                "not answered by {}: cancelled by the caller after {:?}",
                self.placement.gateways[n].fqdn,
                self.started.elapsed().min(self.placement.ring_for)
            ),
        });
        self.failover_at = None;
        self.phase = Phase::Cancelling(n);
        // An endpoint still waiting (ring timeout, the operator) hears 487 too.
        if let Some(c) = &mut self.caller {
            if c.leg.is_pending() {
                c.leg.fail(487, "Request Terminated", &[]);
            }
        }
    }

    fn track_fire_and_forget(&mut self) {
        self.requests.adopt(&self.actions, Purpose::Fire);
    }

    /// Ends an answered call: BYE to the SBC (`to_sbc`) and to the endpoint that placed
    /// it (`to_caller`), `extra` on both; over when they are answered.
    fn hang_up(&mut self, extra: &[(&str, &str)], to_sbc: bool, to_caller: bool) {
        self.session = None;
        // A re-INVITE or UPDATE still waiting for the other peer gets its final response
        // now: the dialog it was in is ending (RFC 3261 §15.1.2).
        let sbc_local = self.placement.gateways.first().map(|g| g.local.clone());
        let caller_local = self.caller.as_ref().map(|c| c.leg.local.clone());
        for (_, r) in self.relays.drain(..) {
            // A relay to the caller came from the SBC, and the other way round.
            let local = if r.to_caller {
                &sbc_local
            } else {
                &caller_local
            };
            if let Some(local) = local {
                let m = r.request.message();
                reply(r.tx, &m, 487, "Request Terminated", local, &[], None);
            }
        }
        let pos = match self.phase {
            Phase::Up(n) => self.leg_pos(n),
            _ => None,
        };
        // A transfer's leg (DR-XFER-2) ends with the call: BYE once answered, else
        // CANCEL.
        if let Some(mut b) = self.bridge.take() {
            let id = self.next_id();
            if b.answered {
                if b.leg.bye(id, extra, &mut self.actions) {
                    self.requests.push(id, Purpose::Closing);
                }
            } else {
                let reason = "SIP;cause=487;text=\"Request terminated\"";
                b.leg
                    .cancel(reason, &mut self.requests.ids(), &mut self.actions);
                self.track_fire_and_forget();
                self.bridge = Some(b);
            }
        }
        self.phase = Phase::Ending;
        if to_sbc {
            let id = self.next_id();
            if pos.is_some_and(|p| self.legs[p].1.bye(id, extra, &mut self.actions)) {
                self.requests.push(id, Purpose::Closing);
            }
        }
        if to_caller && !self.caller_left {
            let id = self.next_id();
            if let Some(c) = &mut self.caller {
                if let Some(d) = c.leg.dialog_mut() {
                    let request = d.request("BYE", extra, None);
                    self.actions.push(Action::Send {
                        id,
                        request,
                        route: c.route.clone(),
                    });
                    self.requests.push(id, Purpose::Closing);
                }
            }
        }
        self.settle_end();
    }

    fn session_expired(&mut self) {
        let r = crate::diagnostics::Rejection::new(Diagnostic::SessionExpired);
        let e = r.entry();
        self.outcome = Some(Outcome {
            status: 200,
            code: Some(e.code),
            reason: e.text.to_owned(),
        });
        let reason = r.reason_header(&crate::diagnostics::correlation_id());
        self.hang_up(&[("Reason", reason.as_str())], true, true);
    }

    // --- requests from the SBC ------------------------------------------------------

    fn on_request(&mut self, tx: ServerTx, request: &Stored, source: &Destination, now: Instant) {
        let msg = request.message();
        if self.caller.as_ref().is_some_and(|c| c.leg.owns(&msg)) {
            return self.on_caller_request(tx, request, now);
        }
        if self.bridge.as_ref().is_some_and(|b| b.leg.owns(&msg)) {
            return self.on_bridge_request(tx, request, &source.label());
        }
        let Some(pos) = self.legs.iter().position(|(_, l)| l.owns(&msg)) else {
            let local = self.placement.gateways[0].local.clone();
            debug!(from = %source.label(), "request in no dialog of this call; 481");
            return reply(
                tx,
                &msg,
                481,
                "Call/Transaction Does Not Exist",
                &local,
                &[],
                None,
            );
        };
        let local = self.legs[pos].1.local.clone();
        let cseq = msg.cseq().and_then(Result::ok).map(|c| c.seq);
        if let (Some(d), Some(n)) = (self.legs[pos].1.dialog_mut(), cseq) {
            if !d.accept_remote_cseq(n) {
                // RFC 3261 §12.2.2.
                let r = "CSeq Lower Than The Last Request";
                return reply(tx, &msg, 500, r, &local, &[], None);
            }
        }
        let up = matches!(self.phase, Phase::Up(n) if self.leg_pos(n) == Some(pos));
        match msg.method() {
            Some(Method::Bye) => {
                reply(tx, &msg, 200, "OK", &local, &[], None);
                self.legs[pos].1.terminated();
                if up {
                    info!(after = ?(now - self.started), "the SBC hung up (BYE)");
                    let transferred = match &self.bridge {
                        Some(b) if b.answered => {
                            format!("; transferred to {} by drhub as referee", b.target)
                        }
                        _ => String::new(),
                    };
                    self.outcome = Some(Outcome {
                        status: 200,
                        code: None,
                        reason: format!(
                            "{}{transferred}; ended by the SBC (BYE)",
                            self.answered_by()
                        ),
                    });
                    self.hang_up(&[], false, true);
                }
            }
            Some(Method::Invite) | Some(Method::Update) if up => {
                self.on_offer(pos, tx, request, &source.label(), now)
            }
            Some(Method::Invite) | Some(Method::Update) => {
                reply(tx, &msg, 491, "Request Pending", &local, &[], None)
            }
            Some(Method::Notify) if up => {
                reply(tx, &msg, 200, "OK", &local, &[], None);
                self.on_notify(&msg);
            }
            _ => reply(tx, &msg, 200, "OK", &local, &[], None),
        }
    }

    /// DR-XFER-1, DR-XFER-3: the Teams user transfers the answered call. The SBC's 200
    /// listed REFER: drhub is the transferor and sends it REFER in the dialog, as on an
    /// inbound call. Without REFER, drhub as referee is not built for calls it placed.
    fn transfer(&mut self, order: super::TransferOrder) {
        let target = order.target.clone();
        let consultation = order.consultation.clone();
        let Phase::Up(n) = self.phase else {
            info!("transfer ignored: the call is not up");
            return;
        };
        if let Some(t) = &self.transfer {
            warn!(pending = ?t, "transfer ignored: one is under way");
            return;
        }
        if self.bridge.is_some() {
            warn!(target = ?target, "transfer ignored: one is under way or done");
            return;
        }
        if !self.refer_allowed {
            return self.transfer_as_referee(n, target, order.via, consultation);
        }
        let Some(pos) = self.leg_pos(n) else { return };
        let proxy = self.legs[pos].1.local.host().to_owned();
        let tenant = self.placement.tenant.clone();
        let refer = super::transfer::Refer::new(
            &target,
            &proxy,
            &tenant,
            &self.placement.user,
            consultation.as_ref(),
        );
        let extra = [
            ("Refer-To", refer.refer_to.as_str()),
            ("Referred-By", refer.referred_by.as_str()),
        ];
        let id = self.next_id();
        if self.legs[pos]
            .1
            .request_with(id, "REFER", &extra, None, &mut self.actions)
        {
            info!(target = ?target, consultative = consultation.is_some(), "transfer: REFER to the SBC (DR-XFER-3)");
            self.requests.push(id, Purpose::Refer);
            let pending = refer.pending(&target, &self.placement.user, &self.placement.call_id);
            self.actions.push(Action::ExpectTransfer(Box::new(pending)));
            self.transfer = Some(target);
        }
    }

    /// DR-XFER-2 for a call drhub placed: the SBC's 200 listed no REFER, so drhub calls
    /// the target itself through the SBC (the user's voice routing; `via`), as the party
    /// it called, with the user's `Referred-By` (and a consultative transfer's
    /// `Replaces`). Once the target answers, the Teams side leaves (BYE to a calling
    /// endpoint) and the two SBC legs talk through the media processor. Not offered on
    /// media-bypass calls (Microsoft supports no transfer without REFER there).
    fn transfer_as_referee(
        &mut self,
        n: usize,
        target: super::transfer::Target,
        via: Vec<super::ForkPlan>,
        consultation: Option<super::transfer::Consultation>,
    ) {
        if self.placement.gateways[n].bypass {
            warn!(target = ?target, "the SBC's 200 listed no REFER and the call is media bypass: Microsoft supports no transfer without REFER in media bypass; the call goes on");
            return;
        }
        let plan = via.into_iter().find_map(|p| match p {
            super::ForkPlan::Pstn {
                number,
                gateway,
                offer,
                ..
            } => Some((number, gateway, offer)),
            _ => None,
        });
        let (super::transfer::Target::Number(_), Some((number, gateway, offer))) = (&target, plan)
        else {
            warn!(target = ?target, "the SBC's 200 listed no REFER: drhub as referee of a call it placed is built for numbers with a route only; the call goes on");
            return;
        };
        let Some(offer) = offer else {
            warn!("no media processor offer for the transfer's INVITE; the call goes on");
            return;
        };
        let host = gateway.local.host().to_owned();
        let proxy = host.clone();
        let refer = super::transfer::Refer::new(
            &target,
            &proxy,
            &self.placement.tenant,
            &self.placement.user,
            consultation.as_ref(),
        );
        let transferred = super::transfer::Transferred {
            referred_by: refer.referred_by,
            consultation,
        };
        let replaces = transferred.replaces_for(&gateway.fqdn);
        // The party drhub called is the transferee: the target sees it calling.
        let from = format!("<sip:{}@{host};user=phone>", self.placement.number);
        let uri = format!("sip:{number}@{}:{};user=phone", gateway.fqdn, gateway.port);
        let to = format!("<sip:{number}@{};user=phone>", gateway.fqdn);
        let record_route = format!(
            "<sip:{host}:{};transport={};lr>",
            gateway.local.port(),
            gateway.local.transport().param()
        );
        // No session timer offered: the SBC refreshes this leg if it wants one.
        let mut extra: Vec<(&str, &str)> = vec![
            ("Record-Route", &record_route),
            ("Referred-By", &transferred.referred_by),
            ("Supported", "replaces"),
        ];
        if let Some(r) = &replaces {
            extra.push(("Replaces", r));
        }
        let peer = Peer::Sbc {
            fqdn: gateway.fqdn.clone(),
        };
        let id = self.next_id();
        let leg = UacLeg::start(
            id,
            route_to(&gateway),
            gateway.local.clone(),
            peer.clone(),
            &InviteParams {
                target: &uri,
                from,
                to,
                sdp: &offer,
                extra: &extra,
                again: None,
                contact: None,
            },
            &mut self.actions,
        );
        let Some(leg) = leg else {
            warn!("the transfer's INVITE could not be built; the call goes on");
            return;
        };
        let key = LegKey::new(leg.call_id(), leg.local_tag().as_str());
        let at = self.actions.len() - 1;
        self.actions.insert(at, Action::Index { key, peer });
        info!(target = ?target, sbc = %gateway.fqdn, consultative = transferred.consultation.is_some(), "transfer: the SBC's 200 listed no REFER; drhub calls the target as referee (DR-XFER-2)");
        self.requests.push(id, Purpose::TransferInvite);
        let mut gateway = gateway;
        gateway.offer = Some(offer);
        self.bridge = Some(Box::new(Bridge {
            leg,
            gateway,
            target: number,
            answered: false,
            media: super::LegMedia::new(super::MediaPeer::Sbc),
        }));
    }

    /// The transfer leg's INVITE progressed (DR-XFER-2): its 2xx completes the transfer
    /// (the Teams side leaves; the legs are bridged), a failure leaves the call as it
    /// was.
    fn on_transfer_invite(&mut self, event: ClientEvent) {
        let Some(b) = &mut self.bridge else { return };
        let ev = b
            .leg
            .on_invite_event(event, &mut self.requests.ids(), &mut self.actions);
        self.track_fire_and_forget();
        let Some(b) = &mut self.bridge else { return };
        match ev {
            Some(LegEvent::Answered(_))
                if self.phase == Phase::Ending || self.phase == Phase::Done =>
            {
                // The call ended while the target rang: the 2xx is ACKed; BYE it.
                let id = self.requests.next_id();
                if b.leg.bye(id, &[], &mut self.actions) {
                    self.requests.push(id, Purpose::Fire);
                }
            }
            Some(LegEvent::Answered(_)) => {
                info!(to = %b.target, "the transfer target answered: the Teams side leaves (DR-XFER-2)");
                b.answered = true;
                let own = b
                    .gateway
                    .offer
                    .as_deref()
                    .and_then(|o| std::str::from_utf8(o).ok());
                let remote = b.leg.sdp().map(|s| &s[..]);
                b.media.session = own.and_then(|o| crate::sdp::Continuity::of_offer(o, remote));
                let to = b.target.clone();
                // The talk time was the Teams user's: the transferred parties hang up.
                self.hang_up_at = None;
                self.outcome = Some(Outcome {
                    status: 200,
                    code: None,
                    reason: format!(
                        "{}; transferred to {to} by drhub as referee",
                        self.answered_by()
                    ),
                });
                let id = self.next_id();
                if let Some(c) = &mut self.caller {
                    if let Some(d) = c.leg.dialog_mut() {
                        let request = d.request("BYE", &[], None);
                        self.actions.push(Action::Send {
                            id,
                            request,
                            route: c.route.clone(),
                        });
                        self.requests.push(id, Purpose::Fire);
                        self.caller_left = true;
                    }
                }
            }
            Some(LegEvent::Failed(code)) => {
                warn!(code, "the transfer target refused; the call goes on");
                self.bridge = None;
            }
            Some(LegEvent::Gone) => {
                warn!("the transfer target did not answer; the call goes on");
                self.bridge = None;
            }
            _ => {}
        }
    }

    /// A request in the transfer leg's dialog: BYE ends the call (BYE to the other leg),
    /// a re-offer is answered from the media processor's session with it.
    fn on_bridge_request(&mut self, tx: ServerTx, request: &Stored, flow: &str) {
        let msg = request.message();
        let Some(b) = &mut self.bridge else { return };
        let local = b.leg.local.clone();
        let cseq = msg.cseq().and_then(Result::ok).map(|c| c.seq);
        if let (Some(d), Some(n)) = (b.leg.dialog_mut(), cseq) {
            if !d.accept_remote_cseq(n) {
                let r = "CSeq Lower Than The Last Request";
                return reply(tx, &msg, 500, r, &local, &[], None);
            }
        }
        match msg.method() {
            Some(Method::Bye) => {
                reply(tx, &msg, 200, "OK", &local, &[], None);
                b.leg.terminated();
                let to = b.target.clone();
                self.bridge = None;
                info!("the transfer target hung up (BYE); BYE to the other leg");
                self.outcome = Some(Outcome {
                    status: 200,
                    code: None,
                    reason: format!(
                        "{}; transferred to {to} by drhub as referee; ended by {to} (BYE)",
                        self.answered_by()
                    ),
                });
                self.hang_up(&[], true, false);
            }
            Some(Method::Invite) | Some(Method::Update) if !msg.body().is_empty() => {
                match b.media.answer(msg.body(), &self.placement.media.codecs) {
                    Ok(Some(a)) => {
                        reply(tx, &msg, 200, "OK", &local, &[], Some(&a.body));
                        b.media.commit(a);
                        if let Some(d) = b.media.odd_hold.take() {
                            let fqdn = b.gateway.fqdn.clone();
                            let call_id = b.leg.call_id().to_owned();
                            self.actions.push(super::Note::odd_hold(&fqdn, &call_id, d));
                        }
                    }
                    Ok(None) => reply(tx, &msg, 488, "Not Acceptable Here", &local, &[], None),
                    Err(r) => super::reject_in_dialog(tx, &msg, r, &local, &self.settings, flow),
                }
            }
            _ => {
                // A refresh without SDP (an offerless re-INVITE gets the session's SDP as
                // an offer, RFC 3261 §14.2), INFO, OPTIONS ...: nothing changes.
                let body = b.media.offerless(&msg);
                reply(tx, &msg, 200, "OK", &local, &[], body.as_deref());
            }
        }
    }

    /// The call's dialog with the SBC that answered, for a consultative transfer of
    /// another call of the user's that replaces it (RFC 5589 §7); `None` until answered.
    fn consultation(&self) -> Option<super::transfer::Consultation> {
        let Phase::Up(n) = self.phase else {
            return None;
        };
        let (_, leg) = &self.legs[self.leg_pos(n)?];
        let d = leg.dialog()?;
        Some(super::transfer::Consultation {
            call: self.placement.call_id.clone(),
            replaces: super::transfer::Replaces::of(d),
            trunk: self.placement.gateways[n].fqdn.clone(),
            number: Some(self.placement.number.clone()),
        })
    }

    /// A NOTIFY of the transfer (RFC 3515 §2.4.5), answered 200 already: its sipfrag's
    /// 2xx ends drhub's legs, a failure leaves the call up.
    fn on_notify(&mut self, msg: &Message<'_>) {
        let Some(target) = self.transfer.clone() else {
            debug!("NOTIFY outside a transfer; answered 200");
            return;
        };
        match super::transfer::sipfrag_status(msg.body()) {
            Some(code) if code < 200 => debug!(code, "transfer under way"),
            Some(code) if code < 300 => {
                info!(target = ?target, "transfer done (sipfrag {code}); BYE to the SBC");
                self.transfer = None;
                let (super::transfer::Target::Number(to) | super::transfer::Target::User(to)) =
                    &target;
                self.outcome = Some(Outcome {
                    status: 200,
                    code: None,
                    reason: format!("{}; transferred to {to}", self.answered_by()),
                });
                self.hang_up(&[], true, true);
            }
            Some(code) => {
                warn!(code, "the transfer failed (sipfrag); the call goes on");
                if let Some(g) = self.answered_gateway() {
                    let note = super::Note::transfer_failed(&g, &self.placement.call_id, code);
                    self.actions.push(note);
                }
                self.transfer = None;
            }
            None => warn!("NOTIFY without a sipfrag status line; answered 200"),
        }
    }

    /// A request from the endpoint that placed the call, in its dialog: BYE ends the call
    /// (BYE to the SBC); a re-INVITE or UPDATE is answered with the call's SDP for it.
    fn on_caller_request(&mut self, tx: ServerTx, request: &Stored, now: Instant) {
        let msg = &request.message();
        let Some(c) = &mut self.caller else { return };
        let local = c.leg.local.clone();
        let cseq = msg.cseq().and_then(Result::ok).map(|c| c.seq);
        if let (Some(d), Some(n)) = (c.leg.dialog_mut(), cseq) {
            if !d.accept_remote_cseq(n) {
                let r = "CSeq Lower Than The Last Request";
                return reply(tx, msg, 500, r, &local, &[], None);
            }
        }
        match msg.method() {
            Some(Method::Bye) => {
                reply(tx, msg, 200, "OK", &local, &[], None);
                match self.phase {
                    Phase::Up(_) => {
                        info!(after = ?(now - self.started), "the caller hung up (BYE); BYE to the SBC");
                        self.outcome = Some(Outcome {
                            status: 200,
                            code: None,
                            reason: format!("{}; ended by the caller (BYE)", self.answered_by()),
                        });
                        self.hang_up(&[], true, false);
                    }
                    // §15: a BYE before the 2xx ends the INVITE too.
                    Phase::Trying(_) | Phase::Ringing(_) => {
                        if let Some(c) = &mut self.caller {
                            c.leg.fail(487, "Request Terminated", &[]);
                        }
                        self.give_up("SIP;cause=487;text=\"Request terminated\"");
                    }
                    _ => {}
                }
            }
            Some(Method::Invite) | Some(Method::Update) => {
                self.on_caller_offer(tx, request, &local, now)
            }
            _ => reply(tx, msg, 200, "OK", &local, &[], None),
        }
    }

    /// A re-INVITE or UPDATE from the endpoint that placed the call: on a non-bypass
    /// trunk the media processor answers it (RFC 3264 §8), and a hold from the phone is
    /// the Teams user holding (DR-HOLD-2: music on hold, nothing to the SBC). On a bypass
    /// trunk the phone's media is the SBC's to answer, and relaying the offer is not
    /// built yet: 488, the call unchanged.
    fn on_caller_offer(
        &mut self,
        tx: ServerTx,
        request: &Stored,
        local: &LocalIdentity,
        now: Instant,
    ) {
        let clock = (now, self.settings.t1);
        let msg = &request.message();
        // RFC 3261 §14.2: an offer before drhub's final response to the first INVITE.
        let Phase::Up(n) = self.phase else {
            let retry = [("Retry-After", "1")];
            return reply(tx, msg, 500, "Server Internal Error", local, &retry, None);
        };
        if self.caller_media.session.is_none() && !self.placement.gateways[n].bypass {
            self.caller_media.session = self.caller.as_ref().map(|c| (*c.media).clone());
        }
        if msg.body().is_empty() {
            let body = self.caller_media.offerless(msg);
            self.kept_2xx = reply_200(tx, msg, local, body.as_deref(), clock).map(Box::new);
            return;
        }
        let codecs = &self.placement.media.codecs;
        match self.caller_media.answer(msg.body(), codecs) {
            Ok(Some(re)) => {
                self.kept_2xx = reply_200(tx, msg, local, Some(&re.body[..]), clock).map(Box::new);
                if let Some(c) = &mut self.caller {
                    if let Some(d) = c.leg.dialog_mut() {
                        d.refresh_target(msg);
                    }
                }
                if let Some(held) = self.caller_media.commit(re) {
                    self.sbc_media.hold_locally(held, &mut self.actions);
                }
            }
            Ok(None) => {
                // Media bypass: the phone's offer goes on to the SBC (RFC 3264 §8).
                if self.reinvite_pending() {
                    return reply(tx, msg, 491, "Request Pending", local, &[], None);
                }
                let method = super::offer_method(msg);
                let id = self.next_id();
                let sent = match self.leg_pos(n) {
                    Some(pos) => {
                        self.legs[pos]
                            .1
                            .request(id, method, Some(msg.body()), &mut self.actions)
                    }
                    None => false,
                };
                if !sent {
                    return reply(
                        tx,
                        msg,
                        481,
                        "Call/Transaction Does Not Exist",
                        local,
                        &[],
                        None,
                    );
                }
                debug!(method, "the calling endpoint's offer relayed to the SBC");
                self.relays.push((
                    id,
                    Relay {
                        tx,
                        request: request.clone(),
                        to_caller: false,
                    },
                ));
                self.requests.push(id, Purpose::Relay);
            }
            Err(r) => {
                warn!(diagnostic = ?r.diagnostic, "the calling endpoint's new offer is refused; the call goes on unchanged");
                super::reject_in_dialog(tx, msg, r, local, &self.settings, "endpoint");
            }
        }
    }

    /// Sends the SBC's re-INVITE or UPDATE on to the endpoint that placed a bypass call,
    /// in its dialog (RFC 3264 §8 across the B2BUA).
    fn relay_to_caller(&mut self, tx: ServerTx, request: &Stored, local: &LocalIdentity) {
        let msg = request.message();
        let method = super::offer_method(&msg);
        let id = self.next_id();
        let Some(c) = &mut self.caller else {
            return drop(tx);
        };
        let Some(d) = c.leg.dialog_mut() else {
            return reply(
                tx,
                &msg,
                481,
                "Call/Transaction Does Not Exist",
                local,
                &[],
                None,
            );
        };
        let req = d.request(method, &[], Some(("application/sdp", msg.body())));
        self.actions.push(Action::Send {
            id,
            request: req,
            route: c.route.clone(),
        });
        debug!(method, "the SBC's offer relayed to the calling endpoint");
        self.relays.push((
            id,
            Relay {
                tx,
                request: request.clone(),
                to_caller: true,
            },
        ));
        self.requests.push(id, Purpose::Relay);
    }

    /// A relayed re-INVITE or UPDATE was answered by the peer it went to: the answer
    /// goes back (2xx with the SDP; a failure with its status), a re-INVITE's 2xx is
    /// ACKed on its leg, and both dialogs' targets move on a 2xx.
    fn on_relay_answer(&mut self, relay: Relay, event: ClientEvent) {
        let Relay {
            tx,
            request,
            to_caller,
        } = relay;
        let asked = request.message();
        let Phase::Up(n) = self.phase else {
            return drop(tx);
        };
        let Some(pos) = self.leg_pos(n) else {
            return drop(tx);
        };
        let local = match (&self.caller, to_caller) {
            (_, true) => self.legs[pos].1.local.clone(),
            (Some(c), false) => c.leg.local.clone(),
            (None, false) => return drop(tx),
        };
        let Some((tx, resp)) = super::relayed_2xx(tx, &asked, &local, event) else {
            return;
        };
        let msg = resp.message();
        let invite = asked.method() == Some(Method::Invite);
        if to_caller {
            if let Some(c) = &mut self.caller {
                if let Some(d) = c.leg.dialog_mut() {
                    d.refresh_target(&msg);
                    if invite {
                        let cseq = msg.cseq().and_then(Result::ok).map_or(1, |c| c.seq);
                        let ack = d.ack(cseq);
                        self.actions.push(Action::Stateless {
                            bytes: ack,
                            route: c.route.clone(),
                        });
                    }
                }
            }
            if let Some(d) = self.legs[pos].1.dialog_mut() {
                d.refresh_target(&asked);
            }
        } else {
            if invite {
                self.legs[pos].1.reinvite_answered(&msg, &mut self.actions);
            } else if let Some(d) = self.legs[pos].1.dialog_mut() {
                d.refresh_target(&msg);
            }
            if let Some(d) = self.caller.as_mut().and_then(|c| c.leg.dialog_mut()) {
                d.refresh_target(&asked);
            }
        }
        let body = (!msg.body().is_empty()).then(|| msg.body());
        reply(tx, &asked, 200, "OK", &local, &[], body);
    }

    /// A re-INVITE or UPDATE from the SBC (a session refresh, DR-ST-2, or a new offer:
    /// hold, resume, a codec change; DR-HOLD-1): answered from drhub's side of the media
    /// session, the session timer restarted. A refused offer changes nothing.
    fn on_offer(&mut self, pos: usize, tx: ServerTx, request: &Stored, flow: &str, now: Instant) {
        let msg = &request.message();
        let local = self.legs[pos].1.local.clone();
        let glare = super::offers_into_glare(msg) && self.reinvite_pending();
        let Phase::Up(n) = self.phase else { return };
        if glare {
            return reply(tx, msg, 491, "Request Pending", &local, &[], None);
        }
        let reanswer = if msg.body().is_empty() {
            None
        } else {
            // The endpoint that placed a bypass call offered its own media: its session
            // is not drhub's to answer for (relaying is not built yet).
            self.ensure_media_session(n, pos);
            match self
                .sbc_media
                .answer(msg.body(), &self.placement.media.codecs)
            {
                Ok(Some(a)) => Some(a),
                Ok(None) => {
                    // The calling endpoint's own media: the offer goes on to it.
                    return self.relay_to_caller(tx, request, &local);
                }
                Err(r) => {
                    warn!(diagnostic = ?r.diagnostic, "the SBC's new offer is refused; the call goes on unchanged");
                    return super::reject_in_dialog(tx, msg, r, &local, &self.settings, flow);
                }
            }
        };
        let mut extra: Vec<(&str, String)> = Vec::new();
        if self.session.is_some() {
            match negotiate_uas(&request_timers(msg), &self.settings.session) {
                UasDecision::Accept(n) => {
                    extra.push(("Supported", "timer".into()));
                    extra.push(("Session-Expires", n.session_expires_header()));
                    if n.require {
                        extra.push(("Require", "timer".into()));
                    }
                    if let Some(s) = &mut self.session {
                        s.refreshed(n, now);
                    }
                }
                UasDecision::TooSmall { min_se } => {
                    let m = min_se.to_string();
                    return reply(
                        tx,
                        msg,
                        422,
                        "Session Interval Too Small",
                        &local,
                        &[("Min-SE", &m)],
                        None,
                    );
                }
                UasDecision::Malformed(why) => {
                    return reply(tx, msg, 400, why, &local, &[], None);
                }
            }
        }
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let body = reanswer.as_ref().map(|r| r.body.clone());
        reply(tx, msg, 200, "OK", &local, &extra, body.as_deref());
        if let Some(r) = reanswer {
            let moved = self.sbc_media.commit(r).is_some();
            if let Some(d) = self.sbc_media.odd_hold.take() {
                if let Phase::Up(n) = self.phase {
                    let fqdn = self.placement.gateways[n].fqdn.clone();
                    let a = super::Note::odd_hold(&fqdn, &self.placement.call_id, d);
                    self.actions.push(a);
                }
            }
            if moved {
                self.actions.push(Action::Progress(self.sbc_media.state()));
            }
        }
    }

    // --- session refresh (DR-ST-2) --------------------------------------------------

    fn send_refresh(&mut self, headers: Option<UacHeaders>) {
        let Some(s) = &self.session else { return };
        let headers = headers.unwrap_or_else(|| s.refresh_headers());
        let se = headers.session_expires_header();
        let min_se = headers.min_se_header();
        let extra = [
            ("Supported", "timer"),
            ("Session-Expires", se.as_str()),
            ("Min-SE", min_se.as_str()),
        ];
        let Phase::Up(n) = self.phase else { return };
        // UPDATE without SDP when the SBC allows it; else a re-INVITE offering the same
        // SDP again, its version unchanged (RFC 4028 §7.4, RFC 3264 §8).
        let invite = !self.update_allowed;
        // The SDP the SBC has now: drhub's offer, or its answer to a later offer of the
        // SBC's (a hold), unchanged (RFC 3264 §8).
        let offer = self
            .sbc_media
            .current()
            .or_else(|| self.placement.gateways[n].offer.clone())
            .unwrap_or_default();
        let id = self.next_id();
        let Some(pos) = self.leg_pos(n) else { return };
        let leg = &mut self.legs[pos].1;
        let route = leg.route().clone();
        let Some(d) = leg.dialog_mut() else { return };
        let request = if invite {
            d.request("INVITE", &extra, Some(("application/sdp", &offer[..])))
        } else {
            d.request("UPDATE", &extra, None)
        };
        debug!(invite, "session refresh to the SBC");
        self.requests.push(id, Purpose::Refresh { headers, invite });
        self.actions.push(Action::Send { id, request, route });
    }

    /// The SBC's 2xx to a re-INVITE (`invite`) or UPDATE of drhub's in the answered
    /// dialog: the target refreshed, and a re-INVITE's 2xx ACKed (RFC 3261 §13.2.2.4).
    fn ack_and_retarget(&mut self, msg: &Message<'_>, invite: bool) {
        let Phase::Up(n) = self.phase else { return };
        let Some(pos) = self.leg_pos(n) else { return };
        let leg = &mut self.legs[pos].1;
        let route = leg.route().clone();
        if let Some(d) = leg.dialog_mut() {
            d.refresh_target(msg);
            if invite {
                let cseq = msg.cseq().and_then(Result::ok).map_or(1, |c| c.seq);
                self.actions.push(Action::Stateless {
                    bytes: d.ack(cseq),
                    route,
                });
            }
        }
    }

    /// drhub's side of the media session with the SBC that answered, made from its
    /// offer and the SBC's answer the first time it is needed; none when the endpoint
    /// that placed a bypass call offered its own media (not drhub's to change).
    fn ensure_media_session(&mut self, n: usize, pos: usize) {
        let g = &self.placement.gateways[n];
        if self.sbc_media.session.is_some() || (g.bypass && self.caller.is_some()) {
            return;
        }
        let own = g.offer.as_deref().and_then(|o| std::str::from_utf8(o).ok());
        let remote = self.legs[pos].1.sdp().map(|b| &b[..]);
        self.sbc_media.session = own.and_then(|o| crate::sdp::Continuity::of_offer(o, remote));
    }

    /// A re-INVITE of drhub's to the SBC (a refresh, a hold) is out.
    fn reinvite_pending(&self) -> bool {
        self.requests.any(|p| {
            matches!(
                p,
                Purpose::Refresh { invite: true, .. } | Purpose::Hold { .. } | Purpose::Relay
            )
        })
    }

    /// DR-HOLD-2: the Teams user holds or resumes an answered call.
    fn teams_hold(&mut self, hold: bool) {
        let Phase::Up(n) = self.phase else {
            info!(hold, "hold or resume ignored: the call is not up");
            return;
        };
        if self.bridge.as_ref().is_some_and(|b| b.answered) {
            info!(
                hold,
                "hold or resume ignored: the Teams user transferred the call"
            );
            return;
        }
        let Some(pos) = self.leg_pos(n) else { return };
        if self.reinvite_pending() {
            warn!(
                hold,
                "hold or resume not sent: a re-INVITE of drhub's is pending"
            );
            return;
        }
        self.ensure_media_session(n, pos);
        if let super::TeamsHold::Offer { body, next } =
            self.sbc_media.teams_hold(hold, &mut self.actions)
        {
            let id = self.next_id();
            let leg = &mut self.legs[pos].1;
            let route = leg.route().clone();
            let Some(d) = leg.dialog_mut() else { return };
            let request = d.request("INVITE", &[], Some(("application/sdp", &body[..])));
            self.requests.push(id, Purpose::Hold { hold, next });
            self.actions.push(Action::Send { id, request, route });
        }
    }

    fn on_refresh_answer(
        &mut self,
        event: ClientEvent,
        headers: UacHeaders,
        invite: bool,
        now: Instant,
    ) {
        let resp = match event {
            ClientEvent::Final(r) => r,
            ClientEvent::Timeout(_) | ClientEvent::TransportError => {
                return self.refresh_failed(408, now)
            }
            _ => return,
        };
        let msg = resp.message();
        let code = msg.status_code().unwrap_or(500);
        if (200..300).contains(&code) {
            if !matches!(self.phase, Phase::Up(_)) {
                return;
            }
            self.ack_and_retarget(&msg, invite);
            let neg = negotiate_uac(
                &ResponseTimers {
                    require_timer: msg
                        .values(HeaderName::Require)
                        .any(|v| v.trim().eq_ignore_ascii_case("timer")),
                    session_expires: msg.header(HeaderName::SessionExpires),
                },
                &headers,
            );
            if let Some(s) = &mut self.session {
                s.refreshed(neg, now);
            }
        } else if code == 422 {
            match on_422(msg.header(HeaderName::MinSE), &headers) {
                Ok(retry) => self.send_refresh(Some(retry)),
                Err(_) => self.refresh_failed(422, now),
            }
        } else {
            self.refresh_failed(code, now);
        }
    }

    fn refresh_failed(&mut self, status: u16, now: Instant) {
        let expire = self
            .session
            .as_mut()
            .and_then(|s| s.refresh_failed(status, now));
        if expire == Some(session_timer::Action::Expire) {
            warn!(
                status,
                "the session refresh failed; ending the call (DR-ST-2)"
            );
            self.session_expired();
        }
    }
}

/// How an attempt's requests reach its SBC: any open connection, or a new one to the
/// trunk (DR-TLS-4).
pub(super) fn route_to(g: &Gateway) -> Route {
    let (transport, insecure_ip) = match g.insecure_ip {
        Some(ip) => (Transport::Tcp, Some(ip)),
        None => (Transport::Tls, None),
    };
    Route::Sbc {
        target: Target {
            sbc: g.fqdn.to_string(),
            host: g.fqdn.to_string(),
            port: g.port,
            address: g.address,
            transport,
            insecure_ip,
        },
        listener: g.listener.clone(),
    }
}

#[cfg(test)]
mod tests {
    //! The outbound call machine on a virtual clock: requests out as actions, the SBC's
    //! responses in as client events, time moved by hand.

    use super::*;
    use crate::sip::build::Style;

    fn local() -> LocalIdentity {
        LocalIdentity::new(
            "sip.pstnhub.microsoft.com",
            5061,
            Transport::Tls,
            "drhub-test",
            Style::Rfc3261,
        )
    }

    fn gateway(fqdn: &str, failover_time: f64) -> Gateway {
        Gateway {
            fqdn: fqdn.into(),
            port: 5061,
            address: None,
            insecure_ip: None,
            route: "US and Canada".into(),
            bypass: false,
            forward_pai: false,
            forward_call_history: false,
            failover_codes: vec![408, 503, 504],
            failover_time: Duration::from_secs_f64(failover_time),
            listener: "sip".into(),
            local: local(),
            offer: Some(Bytes::from_static(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 50000 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n")),
            media_port: 50000,
            options_allow_refer: false,
        }
    }

    struct Lab {
        call: Outbound,
        t0: Instant,
        now: Instant,
        /// Requests sent, with their id (0 for stateless ones) and where.
        sent: Vec<(ReqId, String, String)>,
        rested: Vec<(Arc<str>, Duration)>,
    }

    impl Lab {
        fn new() -> Lab {
            let t0 = Instant::now();
            let placement = Placement {
                call_id: "out-1@sip.pstnhub.microsoft.com".into(),
                tenant: "adatum".into(),
                user: "user1@adatum.biz".into(),
                number: "+14255550100".into(),
                caller: "+18338006777".into(),
                display_name: "User1".into(),
                private: false,
                gateways: vec![
                    gateway("sbc1.adatum.biz", 10.0),
                    gateway("sbc2.adatum.biz", 10.0),
                ],
                ring_for: Duration::from_secs(60),
                talk_for: Some(Duration::from_secs(600)),
                media: Arc::new(crate::sdp::MediaConfig::new("192.0.2.1".parse().unwrap())),
                carried: None,
            };
            let settings = Arc::new(CallSettings {
                t1: Duration::from_millis(500),
                t2: Duration::from_secs(4),
                ring_timeout: Duration::from_secs(60),
                ring_timeout_status: 480,
                ms_diagnostics: true,
                session: session_timer::Config::default(),
                orphan_timeout: Duration::from_secs(120),
                codecs: crate::sdp::Codec::defaults(),
            });
            let mut lab = Lab {
                call: Outbound::new(placement, settings, t0),
                t0,
                now: t0,
                sent: Vec::new(),
                rested: Vec::new(),
            };
            lab.call.start(t0);
            lab.collect();
            lab
        }

        fn collect(&mut self) {
            while let Some(a) = self.call.poll_action() {
                match a {
                    Action::Send { id, request, route } => {
                        let Route::Sbc { target, .. } = route else {
                            panic!("not to an SBC")
                        };
                        self.sent
                            .push((id, String::from_utf8_lossy(&request).into(), target.sbc))
                    }
                    Action::Stateless { bytes, route } => {
                        let Route::Sbc { target, .. } = route else {
                            panic!("not to an SBC")
                        };
                        self.sent.push((
                            ReqId(0),
                            String::from_utf8_lossy(&bytes).into(),
                            target.sbc,
                        ))
                    }
                    Action::Rest { sbc, for_ } => self.rested.push((sbc, for_)),
                    Action::Index { .. }
                    | Action::Progress(_)
                    | Action::ExpectTransfer(_)
                    | Action::Consult(_)
                    | Action::Conformance(_)
                    | Action::Declined { .. } => {}
                }
            }
        }

        /// Runs the timers due up to `t` after the start.
        fn run_until(&mut self, t: f64) {
            let end = self.t0 + Duration::from_secs_f64(t);
            while let Some(d) = self.call.poll_timeout() {
                if d > end || self.call.is_done() {
                    break;
                }
                self.now = d.max(self.now);
                self.call.handle_timeout(self.now);
                self.collect();
            }
            self.now = end.max(self.now);
        }

        /// The last request with this method: its id, text and SBC.
        fn last(&self, method: &str) -> (ReqId, String, String) {
            self.sent
                .iter()
                .rev()
                .find(|(_, r, _)| r.starts_with(&format!("{method} ")))
                .cloned()
                .unwrap_or_else(|| panic!("no {method} in {:#?}", self.sent))
        }

        fn count(&self, method: &str) -> usize {
            self.sent
                .iter()
                .filter(|(_, r, _)| r.starts_with(&format!("{method} ")))
                .count()
        }

        /// The SBC answers the last INVITE with `code` (To tag `t1` for 1xx/2xx).
        fn respond(&mut self, code: u16, extra: &[&str]) {
            let (id, req, _) = self.last("INVITE");
            let copy = |name: &str| {
                req.lines()
                    .find(|l| l.starts_with(&format!("{name}:")))
                    .unwrap_or_default()
                    .to_owned()
            };
            let to = if code > 100 {
                format!("{};tag=t1", copy("To"))
            } else {
                copy("To")
            };
            let mut s = format!(
                "SIP/2.0 {code} Whatever\r\n{}\r\n{}\r\n{to}\r\n{}\r\n{}\r\n",
                copy("Via"),
                copy("From"),
                copy("Call-ID"),
                copy("CSeq")
            );
            for e in extra {
                s.push_str(e);
                s.push_str("\r\n");
            }
            s.push_str("Contact: <sip:+14255550100@sbc1.adatum.biz:5061;transport=tls>\r\nContent-Length: 0\r\n\r\n");
            let stored = Stored::new(Bytes::from(s)).expect("frames");
            let event = if code < 200 {
                ClientEvent::Provisional(stored)
            } else {
                ClientEvent::Final(stored)
            };
            self.call.handle(CallEvent::Client { id, event }, self.now);
            self.collect();
        }

        fn at(&mut self, t: f64) {
            self.run_until(t);
        }
    }

    /// DR-OUT-2: no final response within failover_time_seconds: CANCEL (408 in its
    /// Reason), then the next gateway with the same Call-ID and From tag, CSeq 2.
    #[test]
    fn dr_out_2_failover_timer_cancels_and_tries_the_next_gateway() {
        let mut lab = Lab::new();
        let (_, first, sbc) = lab.last("INVITE");
        assert_eq!(sbc, "sbc1.adatum.biz");
        lab.respond(100, &[]);
        lab.at(9.9);
        assert_eq!(lab.count("INVITE"), 1);
        lab.at(10.0);
        let (_, cancel, to) = lab.last("CANCEL");
        assert_eq!(to, "sbc1.adatum.biz");
        assert!(cancel.contains("Reason: SIP;cause=408"), "{cancel}");
        let (_, second, sbc) = lab.last("INVITE");
        assert_eq!(sbc, "sbc2.adatum.biz");
        assert!(second.contains("CSeq: 2 INVITE"), "{second}");
        let header = |r: &str, h: &str| r.lines().find(|l| l.starts_with(h)).unwrap().to_owned();
        assert_eq!(header(&first, "Call-ID:"), header(&second, "Call-ID:"));
        assert_eq!(header(&first, "From:"), header(&second, "From:"));
        assert_eq!(lab.call.attempts[0].code, 500001);
    }

    /// Microsoft fails over only before a provisional other than 100: a 180 stops the
    /// failover timer, and a failure after it is final.
    #[test]
    fn dr_out_2_no_failover_after_the_sbc_rang() {
        let mut lab = Lab::new();
        lab.respond(180, &[]);
        lab.at(30.0);
        assert_eq!(lab.count("CANCEL"), 0);
        assert_eq!(lab.count("INVITE"), 1);
        lab.respond(503, &[]);
        assert!(lab.call.is_done());
        assert_eq!(lab.count("INVITE"), 1, "503 after 180 is final");
        assert_eq!(lab.call.outcome.as_ref().unwrap().status, 503);
    }

    /// DR-OUT-3: 503 with Retry-After rests the SBC for that long and moves on.
    #[test]
    fn dr_out_3_503_retry_after_rests_the_sbc() {
        let mut lab = Lab::new();
        lab.respond(503, &["Retry-After: 120 (maintenance)"]);
        assert_eq!(
            lab.rested,
            vec![(Arc::from("sbc1.adatum.biz"), Duration::from_secs(120))]
        );
        assert_eq!(lab.last("INVITE").2, "sbc2.adatum.biz");
        // Without Retry-After: failover, no rest.
        let mut lab = Lab::new();
        lab.respond(503, &[]);
        assert!(lab.rested.is_empty());
        assert_eq!(lab.last("INVITE").2, "sbc2.adatum.biz");
    }

    /// DR-ERR-2: 603 is final even when listed in failover_response_codes.
    #[test]
    fn dr_err_2_603_is_never_retried() {
        let mut lab = Lab::new();
        lab.call.placement.gateways[0].failover_codes.push(603);
        lab.respond(603, &[]);
        assert!(lab.call.is_done());
        assert_eq!(lab.count("INVITE"), 1);
        assert_eq!(lab.call.outcome.as_ref().unwrap().status, 603);
    }

    /// The caller gives up after ring_for: CANCEL, and the call ends with the 487.
    #[test]
    fn dr_out_1_caller_gives_up_with_cancel() {
        let mut lab = Lab::new();
        lab.respond(180, &[]);
        lab.at(60.0);
        assert_eq!(lab.count("CANCEL"), 1);
        assert!(!lab.call.is_done(), "waits for the INVITE's final response");
        lab.respond(487, &[]);
        assert!(lab.call.is_done());
        assert_eq!(lab.call.outcome.as_ref().unwrap().status, 487);
    }

    /// Answered: ACK for the 2xx; RFC 4028 refresh by drhub (refresher=uac) at half the
    /// interval, UPDATE when the SBC allows it; BYE after talk_for.
    #[test]
    fn dr_st_2_answered_call_refreshes_with_update_and_hangs_up() {
        let mut lab = Lab::new();
        lab.call.placement.talk_for = Some(Duration::from_secs(100));
        lab.respond(
            200,
            &[
                "Session-Expires: 90;refresher=uac",
                "Allow: INVITE, ACK, BYE, CANCEL, UPDATE",
            ],
        );
        let (_, ack, _) = lab.last("ACK");
        assert!(ack.contains("CSeq: 1 ACK"), "{ack}");
        lab.at(44.9);
        assert_eq!(lab.count("UPDATE"), 0);
        lab.at(45.0);
        let (_, update, _) = lab.last("UPDATE");
        assert!(update.contains("Session-Expires: 90"), "{update}");
        assert_eq!(
            lab.count("INVITE"),
            1,
            "no re-INVITE when UPDATE is allowed"
        );
        lab.at(100.0);
        let (id, bye, _) = lab.last("BYE");
        assert!(
            bye.starts_with("BYE sip:+14255550100@sbc1.adatum.biz:5061;transport=tls "),
            "{bye}"
        );
        assert!(!lab.call.is_done());
        let resp = format!(
            "SIP/2.0 200 OK\r\n{}\r\nContent-Length: 0\r\n\r\n",
            bye.lines()
                .skip(1)
                .filter(|l| ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
                    .iter()
                    .any(|h| l.starts_with(h)))
                .collect::<Vec<_>>()
                .join("\r\n")
        );
        let event = ClientEvent::Final(Stored::new(Bytes::from(resp)).unwrap());
        lab.call.handle(CallEvent::Client { id, event }, lab.now);
        assert!(lab.call.is_done());
        assert_eq!(lab.call.outcome.as_ref().unwrap().status, 200);
    }

    /// RFC 4028 §7.4, DR-ST-1: a 422 to the INVITE is retried once on the same SBC with
    /// Session-Expires raised to its Min-SE; a second 422 is final.
    #[test]
    fn dr_st_1_422_retries_the_same_sbc_with_its_min_se() {
        let mut lab = Lab::new();
        lab.respond(422, &["Min-SE: 3600"]);
        let (_, again, sbc) = lab.last("INVITE");
        assert_eq!(sbc, "sbc1.adatum.biz");
        assert!(again.contains("Session-Expires: 3600\r\n"), "{again}");
        assert!(again.contains("CSeq: 2 INVITE"), "{again}");
        lab.respond(422, &["Min-SE: 7200"]);
        assert!(lab.call.is_done());
        assert_eq!(lab.count("INVITE"), 2);
        assert_eq!(lab.call.outcome.as_ref().unwrap().status, 422);
    }

    /// A connect or TLS failure is the 504 family and the next gateway is tried.
    #[test]
    fn dr_out_2_undeliverable_invite_fails_over() {
        let mut lab = Lab::new();
        let (id, _, _) = lab.last("INVITE");
        let error = Arc::new(crate::transport::connect::ConnectError::Refused {
            addr: "192.0.2.9:5061".parse().unwrap(),
        });
        lab.call
            .handle(CallEvent::Undeliverable { id, error }, lab.now);
        lab.collect();
        assert_eq!(lab.call.attempts[0].status, 504);
        assert_eq!(lab.call.attempts[0].code, 569002);
        assert_eq!(lab.last("INVITE").2, "sbc2.adatum.biz");
    }
}
