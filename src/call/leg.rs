//! Legs: one side of a call as a SIP user agent.
//!
//! [`UasLeg`] faces whoever called (the SBC on an inbound call): drhub is the UAS of its
//! INVITE. It owns that server transaction, the early dialogs its 18x responses create,
//! the confirmed dialog its 2xx creates, the 2xx retransmissions until the ACK (RFC 3261
//! §13.3.1.4) and the answers to CANCEL. [`UacLeg`] faces a callee (a SIP endpoint today,
//! the SBC on outbound calls later): drhub is the UAC of its INVITE, builds its ACK for a
//! 2xx (§13.2.2.4), its CANCEL (§9.1, held back until a provisional arrived) and its BYE.
//! Both hand what they see to the call as [`LegEvent`]s, the same vocabulary a scripted
//! endpoint speaks, so that the call's rules do not care which kind of party it has.
//!
//! Legs never touch a socket: what they send goes out as [`Action`]s, or through the
//! server transaction handles of the transaction layer.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use std::time::Instant;
use tracing::{debug, warn};

use super::dialog::{Dialog, Peer};
use super::{Action, ReqId, Route, Tag};
use crate::diagnostics::{Rejection, Teller};
use crate::policy::DIALOG_ALLOW;
use crate::sip::build::{RequestWriter, ResponseHead, ResponseWriter, Style};
use crate::sip::{HeaderName, LocalIdentity, Message, Stored};
use crate::transaction::{
    build_cancel, Answered, Branch, ClientEvent, Final, Provisional, ServerTx,
};

/// What a leg (or a scripted endpoint) tells the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegEvent {
    /// Call progress: 180/181/182 (DR-FORK-2).
    Ringing,
    /// A media answer: 183 with SDP (DR-FORK-3). `None` for a scripted endpoint, whose
    /// SDP the call computes.
    EarlyMedia(Option<Bytes>),
    /// Accepted: 2xx (DR-FORK-4/5), with the callee's SDP when it sent one.
    Answered(Option<Bytes>),
    /// Declined with this final status.
    Failed(u16),
    /// Redirected (DR-FORK-9).
    Redirected(Redirect),
    /// The callee ended the confirmed call (BYE, or a script's hangup).
    HungUp,
    /// A scripted Teams client holds (`true`) or resumes the answered call (DR-HOLD-2).
    Hold(bool),
    /// A scripted Teams client transfers the answered call to this target (DR-XFER-3),
    /// after a consultation call to it when `consult` (RFC 5589 §7).
    Transfer { to: Box<str>, consult: bool },
    /// The callee never answered the INVITE, or could not be reached.
    Gone,
}

/// Where a 3xx sends the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// `opaque=app:voicemail`: the user's voicemail.
    Voicemail,
    /// Anything else (a number: forwarding, DR-FWD).
    Other(String),
}

/// How the UAS leg's INVITE transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UasState {
    /// No final response yet.
    Proceeding,
    /// 2xx sent on the dialog with this tag; retransmitting until the ACK.
    Accepted,
    /// The 2xx was ACKed: the dialog is confirmed.
    Confirmed,
    /// A failure was sent.
    Rejected,
}

/// The 2xx retransmission and ACK wait of RFC 3261 §13.3.1.4.
#[derive(Debug)]
struct AwaitAck {
    response: Final,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

/// What only the INVITE transaction needs: the request, its response head, the server
/// transaction and the 2xx retransmission. Boxed, and dropped once the 2xx is ACKed, so
/// that an established call keeps none of it.
#[derive(Debug)]
struct Pending {
    invite: Stored,
    /// What every response to the INVITE copies from it, written once.
    head: ResponseHead,
    tx: Option<ServerTx>,
    answered: Option<Answered>,
    await_ack: Option<AwaitAck>,
    /// The To tags of the early dialogs this leg's 18x responses created (DR-FORK-2).
    early_tags: Vec<Tag>,
    t1: Duration,
    t2: Duration,
}

/// See the module docs.
#[derive(Debug)]
pub struct UasLeg {
    pending: Option<Box<Pending>>,
    state: UasState,
    dialog: Option<Dialog>,
    invite_cseq: u32,
    /// Whether the caller listed UPDATE in its Allow (session refreshes prefer it).
    allows_update: bool,
    pub local: LocalIdentity,
    pub peer: Peer,
}

impl UasLeg {
    /// The leg for an INVITE just received through `tx`.
    pub fn new(
        tx: ServerTx,
        invite: Stored,
        local: LocalIdentity,
        peer: Peer,
        t1: Duration,
        t2: Duration,
    ) -> UasLeg {
        let (invite_cseq, allows_update, head) = {
            let m = invite.message();
            let allows = |method: &str| {
                m.values(HeaderName::Allow)
                    .any(|v| v.trim().eq_ignore_ascii_case(method))
            };
            (
                m.cseq().and_then(Result::ok).map_or(1, |c| c.seq),
                allows("UPDATE"),
                ResponseHead::new(&m),
            )
        };
        UasLeg {
            pending: Some(Box::new(Pending {
                invite,
                head,
                tx: Some(tx),
                answered: None,
                await_ack: None,
                early_tags: Vec::new(),
                t1,
                t2,
            })),
            state: UasState::Proceeding,
            dialog: None,
            invite_cseq,
            allows_update,
            local,
            peer,
        }
    }

    pub fn state(&self) -> UasState {
        self.state
    }

    /// True while the INVITE has no final response.
    pub fn is_pending(&self) -> bool {
        self.state == UasState::Proceeding
    }

    pub fn dialog(&self) -> Option<&Dialog> {
        self.dialog.as_ref()
    }

    pub fn dialog_mut(&mut self) -> Option<&mut Dialog> {
        self.dialog.as_mut()
    }

    pub fn allows_update(&self) -> bool {
        self.allows_update
    }

    /// The INVITE, while the leg keeps it.
    pub fn invite(&self) -> Option<&Stored> {
        self.pending.as_ref().map(|p| &p.invite)
    }

    /// A provisional response to the INVITE. With a To tag it creates (or continues) an
    /// early dialog, so it copies the INVITE's Record-Route (RFC 3261 §12.1.1, DR-NH-4).
    pub fn provisional(
        &mut self,
        code: u16,
        phrase: &str,
        tag: Option<Tag>,
        body: Option<&[u8]>,
        extra: &[(&str, &str)],
    ) {
        let bytes = self.response(code, phrase, tag, body, extra);
        let Some(p) = &mut self.pending else { return };
        if let Some(t) = tag {
            if !p.early_tags.contains(&t) {
                p.early_tags.push(t);
            }
        }
        let Some(tx) = &p.tx else { return };
        match Provisional::new(bytes) {
            Ok(r) => {
                let _ = tx.provisional(r);
            }
            Err(e) => warn!(code, error = %e, "provisional response not built"),
        }
    }

    /// The 2xx to the INVITE on the early dialog `tag` (DR-FORK-5): copies Record-Route,
    /// confirms the dialog on our side, and retransmits until the ACK (§13.3.1.4).
    pub fn accept(&mut self, tag: Tag, body: &[u8], extra: &[(&str, &str)], now: Instant) -> bool {
        let bytes = self.response(200, "OK", Some(tag), Some(body), extra);
        let Some(p) = &mut self.pending else {
            return false;
        };
        let Some(tx) = p.tx.take() else {
            return false;
        };
        let dialog = Dialog::uas(
            &p.invite.message(),
            tag,
            self.local.clone(),
            self.peer.clone(),
        );
        let (Ok(response), Ok(dialog)) = (Final::new(bytes), dialog) else {
            warn!("the INVITE cannot make a dialog (From tag, Contact, CSeq); answering 400");
            p.tx = Some(tx);
            return false;
        };
        p.answered = Some(tx.respond(response.clone()));
        p.await_ack = Some(AwaitAck {
            response,
            next: now + p.t1,
            interval: p.t1,
            give_up: now + 64 * p.t1,
        });
        self.dialog = Some(dialog);
        self.state = UasState::Accepted;
        true
    }

    /// A failure response with the rejection's status, Reason and ms-diagnostics
    /// (DR-VAL-8). The transaction waits for the ACK on its own (Timer H).
    pub fn reject(&mut self, r: &Rejection, teller: &Teller<'_>) {
        let Some(p) = &mut self.pending else { return };
        let Some(tx) = p.tx.take() else { return };
        let mut out = BytesMut::new();
        r.respond(&p.invite.message(), teller, &mut out);
        match Final::new(out.freeze()) {
            Ok(f) => p.answered = Some(tx.respond(f)),
            Err(e) => warn!(error = %e, "failure response not built"),
        }
        self.state = UasState::Rejected;
    }

    /// A plain failure (487 after CANCEL ...).
    pub fn fail(&mut self, code: u16, phrase: &str, extra: &[(&str, &str)]) {
        let bytes = self.response(code, phrase, Some(Tag::random()), None, extra);
        let Some(p) = &mut self.pending else { return };
        let Some(tx) = p.tx.take() else { return };
        match Final::new(bytes) {
            Ok(f) => p.answered = Some(tx.respond(f)),
            Err(e) => warn!(error = %e, "failure response not built"),
        }
        self.state = UasState::Rejected;
    }

    /// The ACK for the 2xx arrived (DR-FORK-8): the dialog is confirmed, retransmission
    /// stops, and what only the INVITE transaction needed is dropped.
    pub fn on_ack(&mut self, ack: &Message<'_>) -> bool {
        let ours = self.dialog.as_ref().is_some_and(|d| d.matches(ack));
        if !ours || self.state != UasState::Accepted {
            return false;
        }
        self.state = UasState::Confirmed;
        self.pending = None;
        true
    }

    /// Whether an in-dialog request from the caller belongs to one of this leg's dialogs
    /// (the confirmed one, or an early one of its forks).
    pub fn owns(&self, req: &Message<'_>) -> bool {
        if let Some(d) = &self.dialog {
            return d.matches(req);
        }
        let Some(p) = &self.pending else {
            return false;
        };
        let tag = |h: Option<Result<crate::sip::NameAddr<'_>, _>>| {
            h.and_then(Result::ok)
                .and_then(|n| n.tag().map(str::to_owned))
        };
        let from_tag = tag(req.from());
        from_tag.is_some()
            && from_tag == tag(p.invite.message().from())
            && tag(req.to()).is_some_and(|t| p.early_tags.iter().any(|e| e.as_str() == t))
    }

    /// When the 2xx retransmission timer or the ACK wait next needs `handle_timeout`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let a = self.pending.as_ref()?.await_ack.as_ref()?;
        Some(a.next.min(a.give_up))
    }

    /// Retransmits the 2xx (T1 doubling up to T2); true when 64*T1 passed without an ACK
    /// (§13.3.1.4: the dialog must then be ended with BYE).
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        let Some(p) = &mut self.pending else {
            return false;
        };
        let Some(a) = &mut p.await_ack else {
            return false;
        };
        if now >= a.give_up {
            self.pending = None;
            self.state = UasState::Confirmed;
            return true;
        }
        if now >= a.next {
            if let Some(answered) = &p.answered {
                let _ = answered.retransmit_2xx(a.response.clone());
            }
            a.interval = (a.interval * 2).min(p.t2);
            a.next = now + a.interval;
        }
        false
    }

    /// The failed INVITE transaction, whose ACK (Timer H) the task still awaits after the
    /// call is over.
    pub fn take_failure(&mut self) -> Option<Answered> {
        match self.state {
            UasState::Rejected => self.pending.as_mut()?.answered.take(),
            _ => None,
        }
    }

    /// The CSeq of the INVITE (the ACK carries it).
    pub fn invite_cseq(&self) -> u32 {
        self.invite_cseq
    }

    /// A response to the INVITE: copied headers, Record-Route when it creates a dialog,
    /// the proxy's Contact, Allow and Server, then `extra` and an SDP body.
    fn response(
        &self,
        code: u16,
        phrase: &str,
        tag: Option<Tag>,
        body: Option<&[u8]>,
        extra: &[(&str, &str)],
    ) -> Bytes {
        let Some(head) = self.pending.as_ref().map(|p| &p.head) else {
            return Bytes::new();
        };
        let mut out = BytesMut::new();
        let tag_text = tag.as_ref().map(Tag::as_str);
        // RFC 3261 §12.1.1, DR-NH-4: a dialog-creating response copies Record-Route.
        let creates_dialog = code > 100 && code < 300 && tag.is_some();
        let mut w =
            ResponseWriter::start_from_head(&mut out, head, code, phrase, tag_text, creates_dialog);
        if creates_dialog {
            w.header("Contact", self.local.contact());
            w.header("Allow", DIALOG_ALLOW);
        }
        for (name, value) in extra {
            w.header(name, value);
        }
        w.header("Server", self.local.server());
        match body {
            Some(b) => {
                w.header("Content-Type", "application/sdp");
                w.finish(b);
            }
            None => w.finish(b""),
        }
        out.freeze()
    }
}

/// Answers a request received in a dialog (BYE, re-INVITE, UPDATE, INFO ...) through its
/// server transaction, with `extra` headers and an optional SDP body.
pub fn reply(
    tx: ServerTx,
    req: &Message<'_>,
    code: u16,
    phrase: &str,
    local: &LocalIdentity,
    extra: &[(&str, &str)],
    body: Option<&[u8]>,
) {
    if let Some(f) = build_reply(req, code, phrase, local, extra, body) {
        drop(tx.respond(f));
    }
}

fn build_reply(
    req: &Message<'_>,
    code: u16,
    phrase: &str,
    local: &LocalIdentity,
    extra: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Option<Final> {
    let mut out = BytesMut::new();
    let mut w = ResponseWriter::start(&mut out, Style::Rfc3261, req, code, phrase, None);
    if body.is_some() {
        w.header("Contact", local.contact());
    }
    for (name, value) in extra {
        w.header(name, value);
    }
    w.header("Server", local.server());
    match body {
        Some(b) => {
            w.header("Content-Type", "application/sdp");
            w.finish(b);
        }
        None => w.finish(b""),
    }
    Final::new(out.freeze())
        .map_err(|e| warn!(code, error = %e, "in-dialog response not built"))
        .ok()
}

/// The 200 to a re-INVITE that came over UDP, which the TU retransmits until its ACK
/// (RFC 3261 §13.3.1.4: T1 doubling up to T2, for 64*T1; the INVITE server transaction,
/// in Accepted, only absorbs the re-INVITE's retransmissions, RFC 6026 §7.1). Over TCP
/// and TLS the transport is reliable and nothing is kept.
#[derive(Debug)]
pub struct Kept2xx {
    answered: Answered,
    response: Final,
    cseq: u32,
    next: Instant,
    interval: Duration,
    until: Instant,
}

impl Kept2xx {
    /// When [`Kept2xx::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Instant {
        self.next
    }

    /// Retransmits when due; `false` once 64*T1 passed without an ACK (the caller gives
    /// up on it).
    pub fn handle_timeout(&mut self, now: Instant, t2: Duration) -> bool {
        if now < self.next {
            return true;
        }
        if now >= self.until {
            warn!(
                cseq = self.cseq,
                "no ACK for the 200 to the re-INVITE within 64*T1"
            );
            return false;
        }
        let _ = self.answered.retransmit_2xx(self.response.clone());
        self.interval = (self.interval * 2).min(t2);
        self.next = now + self.interval;
        true
    }

    /// Whether `ack` acknowledges this 200 (same CSeq number).
    pub fn acked_by(&self, ack: &Message<'_>) -> bool {
        ack.cseq()
            .and_then(Result::ok)
            .is_some_and(|c| c.seq == self.cseq)
    }
}

/// Answers an in-dialog request 200 with `body`, as [`reply`]; for a re-INVITE over UDP
/// the 200 is kept for retransmission ([`Kept2xx`]).
pub fn reply_200(
    tx: ServerTx,
    req: &Message<'_>,
    local: &LocalIdentity,
    body: Option<&[u8]>,
    (now, t1): (Instant, Duration),
) -> Option<Kept2xx> {
    let f = build_reply(req, 200, "OK", local, &[], body)?;
    let invite = req.method() == Some(crate::sip::Method::Invite);
    if !invite || local.transport() != crate::sip::Transport::Udp {
        drop(tx.respond(f));
        return None;
    }
    let cseq = req.cseq().and_then(Result::ok).map_or(0, |c| c.seq);
    let answered = tx.respond(f.clone());
    Some(Kept2xx {
        answered,
        response: f,
        cseq,
        next: now + t1,
        interval: t1,
        until: now + t1 * 64,
    })
}

/// How the UAC leg's INVITE stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UacState {
    Calling,
    /// A provisional arrived: CANCEL may be sent (§9.1).
    Proceeding,
    Confirmed,
    Terminated,
}

/// What the INVITE of a UAC leg says.
pub struct InviteParams<'a> {
    /// The Request-URI: the endpoint's contact.
    pub target: &'a str,
    pub from: String,
    pub to: String,
    pub sdp: &'a [u8],
    pub extra: &'a [(&'a str, &'a str)],
    /// Another attempt of the same call (DR-OUT-2): its Call-ID, From tag and a higher
    /// CSeq, as a UAC retrying a request elsewhere does (RFC 3261 §8.1.3.4). `None`: a
    /// new Call-ID and tag, CSeq 1.
    pub again: Option<(&'a str, Tag, u32)>,
    /// The Contact to send instead of the listener's (a routing token, DR-OUT-1).
    pub contact: Option<&'a str>,
}

/// See the module docs.
#[derive(Debug)]
pub struct UacLeg {
    /// The INVITE as sent, until it has a final response (CANCEL is built from it).
    invite: Option<Stored>,
    invite_id: ReqId,
    invite_cseq: u32,
    call_id: String,
    local_tag: Tag,
    route: Route,
    state: UacState,
    /// CANCEL wanted before any provisional: sent when one arrives (§9.1).
    cancel_pending: Option<&'static str>,
    /// The callee's SDP from its 183 or 2xx (what a bypass trunk passes on).
    sdp: Option<Bytes>,
    dialog: Option<Dialog>,
    pub local: LocalIdentity,
    pub peer: Peer,
}

impl UacLeg {
    /// Builds the leg's INVITE (a Call-ID of its own: a B2BUA never shares the caller's)
    /// and queues it as request `id`. `None`, with nothing queued, if the INVITE did not
    /// frame as one message (the writer strips line breaks, so no target should cause it).
    pub fn start(
        id: ReqId,
        route: Route,
        local: LocalIdentity,
        peer: Peer,
        p: &InviteParams<'_>,
        actions: &mut Vec<Action>,
    ) -> Option<UacLeg> {
        let (call_id, local_tag, cseq) = match p.again {
            Some((call_id, tag, cseq)) => (call_id.to_owned(), tag, cseq),
            None => (
                format!(
                    "{:016x}{:08x}@{}",
                    fastrand::u64(..),
                    fastrand::u32(..),
                    local.host()
                ),
                Tag::random(),
                1,
            ),
        };
        let mut out = BytesMut::new();
        let mut w = RequestWriter::start(&mut out, "INVITE", p.target);
        w.header("Via", &local.via(Branch::generate().as_str()));
        w.header("Max-Forwards", "70");
        w.header("From", &format!("{};tag={local_tag}", p.from));
        w.header("To", &p.to);
        w.header("Call-ID", &call_id);
        w.header("CSeq", &format!("{cseq} INVITE"));
        w.header("Contact", p.contact.unwrap_or(local.contact()));
        w.header("Allow", DIALOG_ALLOW);
        for (name, value) in p.extra {
            w.header(name, value);
        }
        w.header("User-Agent", local.server());
        w.header("Content-Type", "application/sdp");
        w.finish(p.sdp);
        let invite = Stored::new(out.freeze()).ok()?;
        actions.push(Action::Send {
            id,
            request: invite.bytes().clone(),
            route: route.clone(),
        });
        Some(UacLeg {
            invite: Some(invite),
            invite_id: id,
            invite_cseq: cseq,
            call_id,
            local_tag,
            route,
            state: UacState::Calling,
            cancel_pending: None,
            sdp: None,
            dialog: None,
            local,
            peer,
        })
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    pub fn local_tag(&self) -> Tag {
        self.local_tag
    }

    pub fn invite_id(&self) -> ReqId {
        self.invite_id
    }

    /// The callee's SDP, once it sent one.
    pub fn sdp(&self) -> Option<&Bytes> {
        self.sdp.as_ref()
    }

    pub fn dialog(&self) -> Option<&Dialog> {
        self.dialog.as_ref()
    }

    pub fn dialog_mut(&mut self) -> Option<&mut Dialog> {
        self.dialog.as_mut()
    }

    /// How the leg's requests reach the callee.
    pub fn route(&self) -> &Route {
        &self.route
    }

    pub fn is_confirmed(&self) -> bool {
        self.state == UacState::Confirmed
    }

    /// Whether a request from the callee belongs to this leg's dialog.
    pub fn owns(&self, req: &Message<'_>) -> bool {
        self.dialog.as_ref().is_some_and(|d| d.matches(req))
    }

    /// A response to the leg's INVITE. Queues the ACK for a 2xx (§13.2.2.4) and a pending
    /// CANCEL once a provisional arrived; returns what the call should know.
    pub fn on_invite_event(
        &mut self,
        event: ClientEvent,
        next_id: &mut dyn FnMut() -> ReqId,
        actions: &mut Vec<Action>,
    ) -> Option<LegEvent> {
        let resp = match event {
            ClientEvent::Provisional(r) | ClientEvent::Final(r) => r,
            ClientEvent::Additional2xx(r) => {
                self.extra_2xx(&r, next_id, actions);
                return None;
            }
            ClientEvent::Timeout(_) | ClientEvent::TransportError => {
                self.state = UacState::Terminated;
                self.invite = None;
                return Some(LegEvent::Gone);
            }
        };
        let msg = resp.message();
        let code = msg.status_code().unwrap_or(500);
        self.learn_sdp(&msg);
        match code {
            100..=199 => {
                if self.state == UacState::Calling {
                    self.state = UacState::Proceeding;
                }
                if let Some(reason) = self.cancel_pending.take() {
                    self.send_cancel(reason, next_id, actions);
                    return None;
                }
                match code {
                    180..=182 => Some(LegEvent::Ringing),
                    183 if self.sdp.is_some() => Some(LegEvent::EarlyMedia(self.sdp.clone())),
                    _ => None,
                }
            }
            200..=299 => {
                let dialog = self.invite.as_ref().and_then(|inv| {
                    Dialog::uac(
                        &inv.message(),
                        &msg,
                        self.local_tag,
                        self.local.clone(),
                        self.peer.clone(),
                    )
                    .ok()
                });
                self.invite = None;
                match dialog {
                    Some(d) => {
                        // §13.2.2.4: the UAC core ACKs every 2xx.
                        actions.push(Action::Stateless {
                            bytes: d.ack(self.invite_cseq),
                            route: self.route.clone(),
                        });
                        self.dialog = Some(d);
                        self.state = UacState::Confirmed;
                        Some(LegEvent::Answered(self.sdp.clone()))
                    }
                    None => {
                        warn!("a 2xx that makes no dialog (no To tag or Contact); treated as a failure");
                        self.state = UacState::Terminated;
                        Some(LegEvent::Failed(502))
                    }
                }
            }
            300..=399 => {
                self.state = UacState::Terminated;
                self.invite = None;
                let voicemail = msg.contacts().filter_map(Result::ok).any(|c| {
                    c.uri()
                        .and_then(|u| u.param("opaque"))
                        .and_then(|p| p.value)
                        .is_some_and(|v| v.eq_ignore_ascii_case("app:voicemail"))
                });
                let target = msg
                    .contact()
                    .and_then(Result::ok)
                    .and_then(|c| c.uri().map(|u| u.as_str().to_owned()))
                    .unwrap_or_default();
                Some(LegEvent::Redirected(if voicemail {
                    Redirect::Voicemail
                } else {
                    Redirect::Other(target)
                }))
            }
            _ => {
                self.state = UacState::Terminated;
                self.invite = None;
                Some(LegEvent::Failed(code))
            }
        }
    }

    /// A 2xx retransmitted after the INVITE transaction ended (Timer M): ACK it again.
    pub fn on_stray_2xx(&self, resp: &Message<'_>, actions: &mut Vec<Action>) {
        if let Some(d) = &self.dialog {
            if resp.status_code().is_some_and(|c| (200..300).contains(&c)) {
                actions.push(Action::Stateless {
                    bytes: d.ack(self.invite_cseq),
                    route: self.route.clone(),
                });
            }
        }
    }

    /// RFC 6026 §7.2: another 2xx. The same dialog's is ACKed again; another fork's
    /// downstream is ACKed and ended with BYE.
    fn extra_2xx(
        &mut self,
        resp: &Stored,
        next_id: &mut dyn FnMut() -> ReqId,
        actions: &mut Vec<Action>,
    ) {
        let msg = resp.message();
        let same = self.dialog.as_ref().is_some_and(|d| {
            msg.to().and_then(Result::ok).and_then(|t| t.tag()) == Some(d.remote_tag())
        });
        if same {
            self.on_stray_2xx(&msg, actions);
            return;
        }
        let Some(mut d) = self.dialog.as_ref().and_then(|d| d.sibling(&msg).ok()) else {
            debug!("a 2xx of another dialog with no dialog of ours to compare; dropped");
            return;
        };
        actions.push(Action::Stateless {
            bytes: d.ack(self.invite_cseq),
            route: self.route.clone(),
        });
        actions.push(Action::Send {
            id: next_id(),
            request: d.request("BYE", &[], None),
            route: self.route.clone(),
        });
    }

    /// Stops an unanswered INVITE with CANCEL (`reason` is its Reason header, DR-FORK-5);
    /// before any provisional the CANCEL waits for one (§9.1).
    pub fn cancel(
        &mut self,
        reason: &'static str,
        next_id: &mut dyn FnMut() -> ReqId,
        actions: &mut Vec<Action>,
    ) {
        match self.state {
            UacState::Proceeding => self.send_cancel(reason, next_id, actions),
            UacState::Calling => self.cancel_pending = Some(reason),
            _ => {}
        }
    }

    fn send_cancel(
        &mut self,
        reason: &str,
        next_id: &mut dyn FnMut() -> ReqId,
        actions: &mut Vec<Action>,
    ) {
        let Some(inv) = &self.invite else { return };
        match build_cancel(&inv.message(), &[("Reason", reason)]) {
            Ok(cancel) => actions.push(Action::Send {
                id: next_id(),
                request: cancel,
                route: self.route.clone(),
            }),
            Err(e) => warn!(error = %e, "CANCEL not built"),
        }
    }

    /// Ends the confirmed dialog with BYE (request `id`).
    pub fn bye(&mut self, id: ReqId, extra: &[(&str, &str)], actions: &mut Vec<Action>) -> bool {
        let Some(d) = &mut self.dialog else {
            return false;
        };
        if self.state != UacState::Confirmed {
            return false;
        }
        self.state = UacState::Terminated;
        actions.push(Action::Send {
            id,
            request: d.request("BYE", extra, None),
            route: self.route.clone(),
        });
        true
    }

    /// Sends `method` (a re-INVITE or UPDATE) with an SDP `body` in the confirmed dialog
    /// (request `id`); false when there is no confirmed dialog.
    pub fn request(
        &mut self,
        id: ReqId,
        method: &str,
        body: Option<&[u8]>,
        actions: &mut Vec<Action>,
    ) -> bool {
        self.request_with(id, method, &[], body, actions)
    }

    /// As [`UacLeg::request`], with `extra` headers (a REFER's Refer-To ...).
    pub fn request_with(
        &mut self,
        id: ReqId,
        method: &str,
        extra: &[(&str, &str)],
        body: Option<&[u8]>,
        actions: &mut Vec<Action>,
    ) -> bool {
        let Some(d) = &mut self.dialog else {
            return false;
        };
        if self.state != UacState::Confirmed {
            return false;
        }
        actions.push(Action::Send {
            id,
            request: d.request(method, extra, body.map(|b| ("application/sdp", b))),
            route: self.route.clone(),
        });
        true
    }

    /// The callee's 2xx to a re-INVITE of drhub's in the confirmed dialog: ACKed
    /// (RFC 3261 §13.2.2.4), its target refreshed, its SDP (if any) the leg's now.
    pub fn reinvite_answered(&mut self, resp: &Message<'_>, actions: &mut Vec<Action>) {
        self.learn_sdp(resp);
        let Some(d) = &mut self.dialog else { return };
        d.refresh_target(resp);
        let cseq = resp.cseq().and_then(Result::ok).map_or(1, |c| c.seq);
        actions.push(Action::Stateless {
            bytes: d.ack(cseq),
            route: self.route.clone(),
        });
    }

    /// The callee ended the dialog (its BYE was answered).
    pub fn terminated(&mut self) {
        self.state = UacState::Terminated;
    }

    fn learn_sdp(&mut self, resp: &Message<'_>) {
        let is_sdp = resp
            .header(HeaderName::ContentType)
            .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/sdp"));
        if is_sdp && !resp.body().is_empty() {
            self.sdp = Some(Bytes::copy_from_slice(resp.body()));
        }
    }
}
