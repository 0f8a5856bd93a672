//! Calls: a sans-IO state machine over legs, and the thin tokio task that drives it.
//!
//! A [`Call`] owns the caller's [`UasLeg`] (the SBC, for an inbound call) and one fork per
//! endpoint of the callee: a scripted Teams client ([`Script`]), the user's voicemail, or
//! a SIP endpoint's [`UacLeg`]. Everything it learns arrives through
//! [`Call::handle`] (requests and responses routed to it, client transaction outcomes) or
//! [`Call::handle_timeout`] (ring timeout, scripts, 2xx retransmission, session timer,
//! orphan wait), with time passed in; everything it wants sent leaves as an [`Action`],
//! or through the server transaction handles its UAS leg owns. So a whole call runs on a
//! virtual clock in tests, and its story reads top to bottom in the rules below.
//!
//! [`spawn`] runs a call on its own task, logged under one `call{call_id, tenant, user}`
//! span; [`router`] admits calls and routes messages to them.

pub mod dialog;
pub mod fork;
pub mod forward;
pub mod inbox;
pub mod leg;
pub mod outbound;
pub mod place;
pub mod router;
pub mod session_timer;
pub mod transfer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::config::Config;
use crate::diagnostics::{correlation_id, Diagnostic, Rejection, Teller};
use crate::endpoint::script::{Script, Step};
use crate::hub::Hub;
use crate::policy::DIALOG_ALLOW;
use crate::sip::{HeaderName, LocalIdentity, Message, Method, Stored, Transport};
use crate::transaction::{ClientEvent, ServerOutcome, ServerTx};
use crate::transport::connect::{ConnectError, Target};
use crate::transport::Destination;
use dialog::Peer;
use fork::{best_final, ForkState};
use leg::{reply, InviteParams, LegEvent, Redirect, UacLeg, UasLeg, UasState};
use session_timer::{
    negotiate_uac, negotiate_uas, on_422, Negotiated, RequestTimers, ResponseTimers, SessionTimer,
    UacHeaders, UasDecision,
};

pub use router::{CallTable, LegKey};

/// Identifies a request a call sent, so that its transaction's events come back to the
/// rule that sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReqId(pub u32);

/// How a request reaches its peer.
#[derive(Debug, Clone)]
pub enum Route {
    /// A known destination (an endpoint's address or flow).
    Dest(Destination),
    /// An SBC: any open connection to it, or a new one (DR-TLS-4, DR-NH-5), presenting
    /// the certificate of `listener`.
    Sbc { target: Target, listener: Arc<str> },
}

/// What a call asks of the world.
#[derive(Debug, Clone)]
pub enum Action {
    /// Start a client transaction for `request`; its events come back as
    /// [`CallEvent::Client`] with `id`.
    Send {
        id: ReqId,
        request: Bytes,
        route: Route,
    },
    /// Send bytes outside any transaction: the ACK for a 2xx (RFC 3261 §13.2.2.4).
    Stateless { bytes: Bytes, route: Route },
    /// Route in-dialog requests and stray responses of a new leg to this call.
    Index { key: LegKey, peer: Peer },
    /// Take an SBC out of outbound rotation for a while (DR-OUT-3).
    Rest { sbc: Arc<str>, for_: Duration },
    /// The call moved on (for the status API).
    Progress(router::CallState),
    /// A transfer was referred to the SBC: remember it for the SBC's INVITE back, by its
    /// `x-ti` (DR-XFER-3, DR-XFER-4).
    ExpectTransfer(Box<(String, transfer::Pending)>),
    /// A scripted Teams client's consultative transfer: place the consultation call,
    /// then transfer the call once it is answered.
    Consult(Box<ConsultPlan>),
    /// Something the SBC nearly broke, for the conformance report (DR-CONF).
    Conformance(Box<Note>),
    /// The SBC's INVITE was declined with `603`: remembered under the SBC's name, so that
    /// the report notes the SBC trying that call again (DR-ERR-2).
    Declined { sbc: Arc<str>, invite: Stored },
}

/// A near-miss of an SBC's in a call (DR-CONF).
#[derive(Debug, Clone)]
pub struct Note {
    pub sbc: Arc<str>,
    pub requirement: &'static str,
    pub what: &'static str,
    pub call_id: String,
    pub detail: String,
}

impl Note {
    /// DR-XFER-3: the SBC listed REFER but refused drhub's (or never answered it).
    fn refer_refused(sbc: &Arc<str>, call_id: &str, code: u16) -> Action {
        Action::Conformance(Box::new(Note {
            sbc: sbc.clone(),
            requirement: "DR-XFER-3",
            what: "REFER refused or unanswered although the SBC's Allow listed REFER",
            call_id: call_id.to_owned(),
            detail: format!("status={code}"),
        }))
    }

    /// DR-XFER-3: the SBC accepted a REFER and its NOTIFY reported the transfer failed.
    fn transfer_failed(sbc: &Arc<str>, call_id: &str, code: u16) -> Action {
        Action::Conformance(Box::new(Note {
            sbc: sbc.clone(),
            requirement: "DR-XFER-3",
            what: "The SBC's NOTIFY reported the transfer failed",
            call_id: call_id.to_owned(),
            detail: format!("sipfrag={code}"),
        }))
    }

    /// DR-FORK-10: the SBC's own SDP, over [`UDP_SDP_LIMIT`] bytes, went on as it is to
    /// a SIP endpoint over UDP.
    fn sdp_over_udp(sbc: &Arc<str>, call_id: &str, detail: String) -> Action {
        Action::Conformance(Box::new(Note {
            sbc: sbc.clone(),
            requirement: "DR-FORK-10",
            what: "SDP over 1,500 bytes relayed to a SIP endpoint over UDP (trim ICE candidates or codecs towards UDP legs)",
            call_id: call_id.to_owned(),
            detail,
        }))
    }

    /// DR-HOLD-1: the SBC held with `a=sendonly` or `a=recvonly`.
    fn odd_hold(sbc: &Arc<str>, call_id: &str, direction: &str) -> Action {
        Action::Conformance(Box::new(Note {
            sbc: sbc.clone(),
            requirement: "DR-HOLD-1",
            what: "Hold with a=sendonly or a=recvonly, which Direct Routing does not understand (a=inactive)",
            call_id: call_id.to_owned(),
            detail: format!("offered a={direction}"),
        }))
    }
}

/// The largest SDP of an SBC's that goes on to a UDP leg without a conformance note
/// (DR-CONF, the seed's 1,500 bytes). The spec counts the SBC's SDP, not the whole
/// message: the SDP is what the SBC controls, drhub's own headers are not its doing.
pub const UDP_SDP_LIMIT: usize = 1500;

/// A scripted consultative transfer (RFC 5589 §7): `user` transfers `call` to `number`
/// after calling it.
#[derive(Debug, Clone)]
pub struct ConsultPlan {
    pub call: String,
    pub user: String,
    pub number: String,
}

/// What a call is told.
#[derive(Debug)]
pub enum CallEvent {
    /// A request inside one of the call's dialogs (BYE, re-INVITE, UPDATE, INFO ...),
    /// from a peer the router already checked (DR-NH-4).
    Request {
        tx: ServerTx,
        request: Stored,
        source: Destination,
    },
    /// The caller cancelled the INVITE (DR-FORK-8).
    Cancel { tx: ServerTx, request: Stored },
    /// An ACK for a 2xx.
    Ack { request: Stored },
    /// The outcome of a request the call sent.
    Client { id: ReqId, event: ClientEvent },
    /// A request the call sent could not be delivered (DR-NH-5).
    Undeliverable { id: ReqId, error: Arc<ConnectError> },
    /// A response that matched no transaction on one of the call's UAC legs (a 2xx
    /// retransmitted after Timer M: it must be ACKed again).
    Stray { response: Stored },
    /// Every connection to the caller's SBC has closed.
    SbcGone,
    /// The operator ends the call (the control API's `DELETE /api/calls/{id}`).
    HangUp,
    /// The Teams user holds (`true`) or resumes (`false`) the call (DR-HOLD-2: the
    /// control API's `POST /api/calls/{id}/hold` and `/resume`).
    Hold(bool),
    /// The Teams user transfers the call (DR-XFER: `POST /api/calls/{id}/transfer`).
    Transfer(Box<TransferOrder>),
    /// What a consultative transfer needs of its consultation call: its dialog with the
    /// SBC, once answered (`None` otherwise).
    Consult(tokio::sync::oneshot::Sender<Option<transfer::Consultation>>),
}

/// A transfer the Teams user asks for.
#[derive(Debug)]
pub struct TransferOrder {
    pub target: transfer::Target,
    /// The legs drhub places itself when the SBC cannot take a REFER (option 1,
    /// DR-XFER-2): a number's through the user's voice routing, or the target user's
    /// clients; planned by whoever has the hub at hand. Empty: none can be.
    pub via: Vec<ForkPlan>,
    /// Consultative (RFC 5589 §7): the call whose SBC dialog the transfer replaces.
    pub consultation: Option<transfer::Consultation>,
}

/// A call's inbox (see [`inbox`] for why it is not a tokio channel).
pub type CallSender = inbox::Sender<CallEvent>;

/// The settings every call reads, made once from the config.
#[derive(Debug, Clone)]
pub struct CallSettings {
    pub t1: Duration,
    pub t2: Duration,
    pub ring_timeout: Duration,
    pub ring_timeout_status: u16,
    pub ms_diagnostics: bool,
    pub session: session_timer::Config,
    pub orphan_timeout: Duration,
    /// The codecs the media processor and scripted clients answer with.
    pub codecs: Vec<crate::sdp::Codec>,
}

impl CallSettings {
    pub fn new(config: &Config) -> CallSettings {
        CallSettings {
            t1: config.timers.t1,
            t2: config.timers.t2,
            ring_timeout: config.calls.ring_timeout,
            ring_timeout_status: config.calls.ring_timeout_status,
            ms_diagnostics: config.proxy.ms_diagnostics,
            session: session_timer::Config {
                session_expires: config.calls.session_expires,
                min_se: config.calls.min_se,
            },
            orphan_timeout: config.calls.orphan_timeout,
            codecs: crate::sdp::Codec::defaults(),
        }
    }
}

/// One fork of a new call, as admission planned it.
#[derive(Debug)]
pub enum ForkPlan {
    /// A scripted Teams client; `answer` is its own SDP on a bypass trunk (DR-ICE-1).
    Script {
        name: String,
        script: crate::config::Script,
        answer: Option<Box<crate::sdp::Answer>>,
    },
    /// A SIP endpoint: a registered or static contact.
    Sip {
        name: String,
        /// The INVITE's Request-URI.
        uri: String,
        route: Destination,
        local: LocalIdentity,
        /// The media processor's offer for it (non-bypass trunks, DR-MEDIA-3); `None`:
        /// the SBC's offer.
        offer: Option<Bytes>,
    },
    /// Simultaneous ring to a number (DR-FWD-1): an INVITE to the first gateway of the
    /// user's voice routing, with `cause` and History-Info as a forward's (DR-FWD-2/4).
    Pstn {
        name: String,
        /// `+E164`.
        number: String,
        gateway: Box<outbound::Gateway>,
        /// As [`ForkPlan::Sip`]'s.
        offer: Option<Bytes>,
    },
}

/// Everything admission learned about a call.
#[derive(Debug)]
pub struct NewCall {
    pub tx: ServerTx,
    pub invite: Stored,
    pub local: LocalIdentity,
    pub peer: Peer,
    /// The listener the INVITE came in on: its certificate goes on new connections.
    pub listener: Arc<str>,
    /// The SBC as the conformance report names it at its connections
    /// ([`crate::observe::conformance::sbc_of`]), where its INVITEs are checked for a
    /// call tried again after a `603` (DR-ERR-2).
    pub sbc: Arc<str>,
    pub tenant: String,
    pub user: String,
    /// The caller as the endpoints see it (From of their INVITE).
    pub caller: String,
    pub callee: String,
    pub forks: Vec<ForkPlan>,
    pub bypass: bool,
    /// The media processor's answer to the SBC's offer (non-bypass trunks).
    pub media_answer: crate::sdp::Answer,
    pub voicemail_after: Duration,
    /// The negotiated session timer (non-bypass trunks, DR-ST-1).
    pub session: Option<Negotiated>,
    /// The SBC's trunk: its FQDN, `address` and port, for new connections.
    pub trunk: TrunkRoute,
    /// The called user's forwarding rules, targets resolved (DR-FWD-1); `None`: none.
    pub forwarding: Option<Box<ForwardRules>>,
    /// The caller's trunk has `forward_call_history`: the History-Info that came in is
    /// kept, passed on and checked for loops (DR-FWD-4/5).
    pub keep_history: bool,
    /// The legs drhub would place as referee (DR-XFER-2) for the numbers the user's
    /// scripted clients transfer to, when the SBC's INVITE lists no REFER.
    pub referee: Vec<(String, Vec<ForkPlan>)>,
    /// The SBC's INVITE back for a transfer to a number (DR-XFER-4): it goes straight
    /// on to the number as an outbound call of the transferring user's.
    pub transfer_back: Option<Box<TransferBack>>,
    /// DR-XFER-1: the SBC takes REFER (its INVITE's Allow, else its OPTIONS').
    pub allows_refer: bool,
    /// When the router took the INVITE (INVITE-to-100 in the metrics).
    pub received: Instant,
}

/// Where the SBC's INVITE back for a transfer to a number goes on to.
#[derive(Debug)]
pub struct TransferBack {
    /// `+E164`.
    pub target: String,
    pub transferred: transfer::Transferred,
}

/// A user's forwarding rules as a call applies them (DR-FWD-1), resolved at admission.
#[derive(Debug, Default)]
pub struct ForwardRules {
    pub immediate: Option<Forward>,
    pub busy: Option<Forward>,
    pub no_answer: Option<(Duration, Forward)>,
    pub unavailable: Option<Forward>,
}

/// Where a forward goes.
#[derive(Debug)]
pub enum Forward {
    /// A number, `+E164`, out through the user's voice routing.
    Number(String),
    /// Another user of the tenant: the forks to ring them.
    User {
        address: String,
        forks: Vec<ForkPlan>,
    },
    Voicemail,
}

impl std::fmt::Display for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Forward::Number(n) => f.write_str(n),
            Forward::User { address, .. } => f.write_str(address),
            Forward::Voicemail => f.write_str("voicemail"),
        }
    }
}

/// What a fork to a number through an SBC is for.
#[derive(Debug)]
enum PstnFork {
    /// Simultaneous ring (DR-FWD-1).
    SimRing,
    /// A transfer drhub carries out as referee (DR-XFER-2), consultative when it
    /// replaces a consultation call's dialog with the SBC (RFC 5589 §7).
    Transfer(Box<transfer::Transferred>),
}

/// A forward (or a transfer back) to a number, decided: everything
/// [`forward::Handoff`] needs but the leg.
#[derive(Debug)]
struct HandoffPlan {
    route: Route,
    target: String,
    carry: forward::Carry,
}

/// What the call needs of the caller's trunk to reach it again (DR-NH-5).
#[derive(Debug, Clone)]
pub struct TrunkRoute {
    pub fqdn: Arc<str>,
    pub address: Option<std::net::SocketAddr>,
    pub port: u16,
    /// `max_concurrent_sessions` (DR-TEN-6, alert only).
    pub max_sessions: Option<u32>,
    /// `refer_fallback`: a refused REFER falls back to drhub as referee (DR-XFER-2).
    pub refer_fallback: bool,
}

/// The far peer's final answer to a relayed re-INVITE or UPDATE: a refusal (or no
/// answer, 408) goes back on `tx` at once and `None` is returned; a 2xx is returned, with
/// `tx`, for the call to ACK and pass on.
fn relayed_2xx(
    tx: ServerTx,
    asked: &Message<'_>,
    local: &LocalIdentity,
    event: ClientEvent,
) -> Option<(ServerTx, Stored)> {
    let resp = match event {
        ClientEvent::Final(r) => r,
        _ => {
            warn!("the relayed re-INVITE or UPDATE was not answered");
            reply(tx, asked, 408, "Request Timeout", local, &[], None);
            return None;
        }
    };
    let code = resp.message().status_code().unwrap_or(500);
    if (200..300).contains(&code) {
        return Some((tx, resp));
    }
    debug!(code, "the relayed offer was refused; passed back");
    let phrase = crate::diagnostics::standard_phrase(code);
    reply(tx, asked, code, phrase, local, &[], None);
    None
}

/// The method of a relayed offer: a re-INVITE, else an UPDATE.
fn offer_method(msg: &Message<'_>) -> &'static str {
    if msg.method() == Some(Method::Invite) {
        "INVITE"
    } else {
        "UPDATE"
    }
}

/// Whether a request in a dialog would cross an offer of drhub's: a re-INVITE, or an
/// UPDATE carrying an offer (RFC 3261 §14.2, RFC 3311 §5.2).
fn offers_into_glare(msg: &Message<'_>) -> bool {
    match msg.method() {
        Some(Method::Invite) => true,
        Some(Method::Update) => !msg.body().is_empty(),
        _ => false,
    }
}

/// Refuses a request in a dialog with `r` (its status, and ms-diagnostics when
/// configured), from `local`, for either call machine.
fn reject_in_dialog(
    tx: ServerTx,
    req: &Message<'_>,
    r: Rejection,
    local: &LocalIdentity,
    settings: &CallSettings,
    flow: &str,
) {
    let mut out = bytes::BytesMut::new();
    let teller = Teller {
        style: crate::sip::build::Style::Rfc3261,
        source: local.host(),
        server: local.server(),
        ms_diagnostics: settings.ms_diagnostics,
        flow,
        allow: DIALOG_ALLOW,
    };
    r.respond(req, &teller, &mut out);
    match crate::transaction::Final::new(out.freeze()) {
        Ok(f) => drop(tx.respond(f)),
        Err(e) => warn!(error = %e, "rejection not built"),
    }
}

/// An answer to a peer's re-offer, made but not yet taken on.
struct ReAnswer {
    body: Bytes,
    /// The new answer and the offer it answers; `None` when the SBC got an endpoint's
    /// SDP as it was.
    answer: Option<(crate::sdp::Answer, crate::sdp::Offer)>,
}

/// The SDP session drhub keeps with one peer of a call once it is up (the SBC, or a
/// SIP endpoint the media processor talks to), for either call machine: drhub's side of
/// it (the media processor's or a scripted client's; `None` where the media is not
/// drhub's to answer for), and who holds the call.
#[derive(Debug)]
struct LegMedia {
    /// Whose offers this side answers.
    peer: MediaPeer,
    session: Option<crate::sdp::Continuity>,
    /// The peer holds the call (DR-HOLD-1 for the SBC).
    held: bool,
    /// The Teams side holds the call (DR-HOLD-2).
    holding: bool,
    /// A hold or resume the SBC answered 491 (glare), to send again then (RFC 3261
    /// §14.1).
    retry: Option<(Instant, bool)>,
    /// The SBC's last offer held with `a=sendonly`/`a=recvonly` (DR-HOLD-1), for the
    /// conformance report: taken by the call once committed.
    odd_hold: Option<&'static str>,
}

/// The peer a [`LegMedia`] faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MediaPeer {
    /// The SBC: Direct Routing's rules for its offers (DR-HOLD-1).
    Sbc,
    /// A SIP endpoint of the Teams user: RFC 3264 as it stands.
    Endpoint,
}

/// What the Teams side holding or resuming asks of the call (DR-HOLD-2).
enum TeamsHold {
    /// Nothing to do: already so, or not drhub's session to change.
    Nothing,
    /// Send the SBC this re-INVITE offer; `next` is the session once it is accepted.
    Offer {
        body: Bytes,
        next: Box<crate::sdp::Continuity>,
    },
}

impl LegMedia {
    fn new(peer: MediaPeer) -> LegMedia {
        LegMedia {
            peer,
            session: None,
            held: false,
            holding: false,
            retry: None,
            odd_hold: None,
        }
    }

    /// RFC 3264 §8: the answer to the peer's new offer (DR-HOLD-1: `a=inactive` answered
    /// `a=inactive`; `c=0.0.0.0` refused with 488 531052; an offer with nothing drhub
    /// can answer refused with 488 531000, the call unchanged). `None` when there is no
    /// session of drhub's to answer from. Nothing changes until [`commit`](Self::commit).
    fn answer(
        &self,
        body: &[u8],
        codecs: &[crate::sdp::Codec],
    ) -> Result<Option<ReAnswer>, Rejection> {
        let Some(prior) = &self.session else {
            return Ok(None);
        };
        let media = |e: crate::sdp::SdpError| match e {
            crate::sdp::SdpError::ZeroConnection => Rejection::new(Diagnostic::ZeroAddressHold),
            e => Rejection::new(Diagnostic::NoAcceptableMedia).with("detail", e.to_string()),
        };
        let offer = crate::sdp::Offer::parse(body).map_err(media)?;
        let rule = match self.peer {
            MediaPeer::Sbc => crate::sdp::HoldRule::DirectRouting,
            MediaPeer::Endpoint => crate::sdp::HoldRule::Rfc3264,
        };
        let answer = crate::sdp::reanswer(&offer, codecs, prior, rule).map_err(media)?;
        Ok(Some(ReAnswer {
            body: Bytes::copy_from_slice(answer.as_bytes()),
            answer: Some((answer, offer)),
        }))
    }

    /// The call's state for the API: held by either side, else answered.
    fn state(&self) -> router::CallState {
        if self.held || self.holding {
            router::CallState::Held
        } else {
            router::CallState::Answered
        }
    }

    /// DR-HOLD-2: the Teams user holds (`hold`) or resumes. On a call through the media
    /// processor the SBC sees nothing (the media processor plays music on hold); where
    /// a Teams client's own media reaches the SBC (media bypass) the SBC gets a
    /// re-INVITE offering `a=inactive`, then `a=sendrecv` to resume.
    fn teams_hold(&mut self, hold: bool, actions: &mut Vec<Action>) -> TeamsHold {
        if hold == self.holding {
            info!(hold, "the call is already so; nothing to do");
            return TeamsHold::Nothing;
        }
        let Some(session) = &self.session else {
            warn!("a SIP endpoint on a bypass trunk holds with its own re-INVITE; not sent for it");
            return TeamsHold::Nothing;
        };
        if session.source() == crate::sdp::AnswerSource::MediaProcessor {
            self.hold_locally(hold, actions);
            return TeamsHold::Nothing;
        }
        let direction = if hold {
            crate::sdp::Direction::Inactive
        } else {
            crate::sdp::Direction::SendRecv
        };
        match session.reoffer(direction) {
            Ok((text, next)) => {
                info!(
                    hold,
                    "the Teams client's re-INVITE to the SBC: a={} (DR-HOLD-2)",
                    direction.as_str()
                );
                TeamsHold::Offer {
                    body: Bytes::from(text),
                    next: Box::new(next),
                }
            }
            Err(e) => {
                warn!(error = %e, "no hold offer could be made");
                TeamsHold::Nothing
            }
        }
    }

    /// DR-HOLD-2 through the media processor: it plays music on hold (or stops), and the
    /// SBC sees nothing.
    fn hold_locally(&mut self, hold: bool, actions: &mut Vec<Action>) {
        if hold == self.holding {
            return;
        }
        if hold {
            info!("the Teams user holds: the media processor plays music on hold; no re-INVITE to the SBC (DR-HOLD-2)");
        } else {
            info!("the Teams user resumes: the media processor stops the music on hold");
        }
        let before = self.state();
        self.holding = hold;
        if self.state() != before {
            actions.push(Action::Progress(self.state()));
        }
    }

    /// The SBC's final answer to a Teams hold or resume re-INVITE (`answer`: its SDP on a
    /// 2xx, else the failure's status, 408 for none): on success the session moves on
    /// to `next`; an answer to `a=inactive` other than `a=inactive` breaks RFC 3264 §6.1
    /// and is logged. A 491 (glare) is tried again after RFC 3261 §14.1's random wait:
    /// 2.1-4 s when drhub made the Call-ID (`owner`), else up to 2 s.
    fn teams_hold_answered(
        &mut self,
        hold: bool,
        mut next: crate::sdp::Continuity,
        answer: Result<Bytes, u16>,
        (now, owner): (Instant, bool),
        actions: &mut Vec<Action>,
    ) {
        let answer = match answer {
            Ok(a) => a,
            Err(491) => {
                let tens_of_ms = if owner {
                    fastrand::u64(210..=400)
                } else {
                    fastrand::u64(0..=200)
                };
                let wait = Duration::from_millis(tens_of_ms * 10);
                info!(
                    hold,
                    ?wait,
                    "the SBC answered 491 (glare): trying again (RFC 3261 §14.1)"
                );
                self.retry = Some((now + wait, hold));
                return;
            }
            Err(status) => {
                warn!(
                    hold,
                    status,
                    "the SBC refused the Teams side's re-INVITE; the call goes on as it was"
                );
                return;
            }
        };
        let answered = crate::sdp::Offer::parse(&answer)
            .ok()
            .and_then(|o| o.main_audio().map(|s| s.direction));
        if hold && answered != Some(crate::sdp::Direction::Inactive) {
            warn!(
                answered = answered.map_or("no SDP", |d| d.as_str()),
                "the SBC answered a=inactive with another direction (RFC 3264 §6.1 allows only a=inactive)"
            );
        }
        next.answered_with(&answer);
        self.session = Some(next);
        let before = self.state();
        self.holding = hold;
        if self.state() != before {
            actions.push(Action::Progress(self.state()));
        }
    }

    /// The body of drhub's 200 to a request without SDP: an offerless re-INVITE gets the
    /// current SDP as an offer (RFC 3261 §14.2); an UPDATE without SDP (a session
    /// refresh) gets none.
    fn offerless(&self, msg: &Message<'_>) -> Option<Bytes> {
        if msg.method() == Some(Method::Invite) {
            self.current()
        } else {
            None
        }
    }

    /// The SDP last sent to the peer in this session, when drhub has a session of its own.
    fn current(&self) -> Option<Bytes> {
        self.session
            .as_ref()
            .map(|c| Bytes::copy_from_slice(c.sdp().as_bytes()))
    }

    /// Takes on an answer now that it is sent: the session moves on, and hold and resume
    /// are logged. `Some(held)` when the peer's hold changed.
    fn commit(&mut self, re: ReAnswer) -> Option<bool> {
        use crate::sdp::Direction;
        let (answer, offer) = re.answer?;
        let offered = offer.main_audio().map(|s| s.direction).unwrap_or_default();
        let peer = match self.peer {
            MediaPeer::Sbc => "the SBC",
            MediaPeer::Endpoint => "the Teams user's SIP endpoint",
        };
        if self.peer == MediaPeer::Sbc
            && matches!(offered, Direction::SendOnly | Direction::RecvOnly)
        {
            // DR-HOLD-1: the real service is documented not to understand these.
            self.odd_hold = Some(offered.as_str());
            warn!(
                offered = offered.as_str(),
                "the SBC held with a={}: Direct Routing understands a=inactive only; answered a=inactive",
                offered.as_str()
            );
        }
        let held = answer.direction() != Direction::SendRecv;
        self.session = Some(answer.continuity().clone());
        if held == self.held {
            return None;
        }
        if held {
            info!("{peer} put the call on hold (a={})", offered.as_str());
        } else {
            info!("{peer} resumed the call (a={})", offered.as_str());
        }
        self.held = held;
        Some(held)
    }
}

/// Where the call as a whole stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The INVITE is pending: forks ringing.
    Ringing,
    /// 200 sent on fork `n`; retransmitting until the ACK.
    Answered(usize),
    /// The dialog is confirmed on fork `n`.
    Up(usize),
    /// BYEs are out; waiting for their answers.
    Ending,
    Done,
}

/// The requests a call has in flight, each with what its answer means (`P`), and the
/// ids it hands out. Both call machines keep their bookkeeping here.
#[derive(Debug)]
struct InFlight<P> {
    list: Vec<(ReqId, P)>,
    next: u32,
}

impl<P: Clone> InFlight<P> {
    fn new() -> Self {
        InFlight {
            list: Vec::new(),
            next: 0,
        }
    }

    fn next_id(&mut self) -> ReqId {
        self.next += 1;
        ReqId(self.next)
    }

    /// Ids for a leg that may queue requests of its own (CANCEL, a BYE to a second 2xx);
    /// [`InFlight::adopt`] files them afterwards.
    fn ids(&mut self) -> impl FnMut() -> ReqId + '_ {
        move || {
            self.next += 1;
            ReqId(self.next)
        }
    }

    fn push(&mut self, id: ReqId, purpose: P) {
        self.list.push((id, purpose));
    }

    /// What an event of request `id` means; a final outcome retires the request.
    fn on_event(&mut self, id: ReqId, event: &ClientEvent) -> Option<P> {
        let pos = self.list.iter().position(|(r, _)| *r == id)?;
        let done = matches!(
            event,
            ClientEvent::Final(_) | ClientEvent::Timeout(_) | ClientEvent::TransportError
        );
        Some(if done {
            self.list.swap_remove(pos).1
        } else {
            self.list[pos].1.clone()
        })
    }

    /// Files the requests in `actions` nobody filed (a leg's own CANCEL or BYE) as `fire`.
    fn adopt(&mut self, actions: &[Action], fire: P) {
        for a in actions {
            if let Action::Send { id, .. } = a {
                if !self.list.iter().any(|(r, _)| r == id) {
                    self.list.push((*id, fire.clone()));
                }
            }
        }
    }

    fn retire(&mut self, id: ReqId) {
        self.list.retain(|(r, _)| *r != id);
    }

    fn any(&self, mut f: impl FnMut(&P) -> bool) -> bool {
        self.list.iter().any(|(_, p)| f(p))
    }

    fn find(&self, id: ReqId) -> Option<&P> {
        self.list.iter().find(|(r, _)| *r == id).map(|(_, p)| p)
    }
}

/// A request the call has in flight, and what its answer means.
#[derive(Debug, Clone)]
enum Purpose {
    /// A fork's INVITE.
    ForkInvite(usize),
    /// CANCEL to a fork, or BYE to a fork: nothing waits on the answer.
    Fire,
    /// A BYE that ends the call: it is over once every such BYE is answered.
    Closing { to_sbc: bool },
    /// A session refresh to the SBC (DR-ST-2).
    Refresh { headers: UacHeaders, invite: bool },
    /// The Teams side's hold (`true`) or resume re-INVITE (DR-HOLD-2), with the session
    /// as it stands once the SBC accepts it.
    Hold {
        hold: bool,
        next: Box<crate::sdp::Continuity>,
    },
    /// An in-dialog OPTIONS: is the SBC's dialog still there after its connection went?
    Probe,
    /// A peer's re-INVITE or UPDATE relayed to the other peer (media bypass with a SIP
    /// endpoint): its answer goes back on the server transaction kept in
    /// [`Call::relays`].
    Relay,
    /// A REFER to the SBC: drhub transfers the call (DR-XFER-3).
    Refer,
    /// The re-INVITE that inserts the media processor into a bypass call and restarts
    /// ICE (DR-ICE-1), with the session once the SBC accepts it.
    IceRestart { next: Box<crate::sdp::Continuity> },
}

/// A re-INVITE or UPDATE waiting for the other peer's answer.
#[derive(Debug)]
struct Relay {
    tx: ServerTx,
    request: Stored,
    /// Sent on to the SIP endpoint (from the SBC), else to the SBC.
    to_endpoint: bool,
}

#[derive(Debug)]
enum ForkKind {
    /// A scripted client; `bypass` whether it answers with SDP of its own (DR-ICE-1).
    Script {
        script: Script,
        bypass: bool,
        answer: Option<Box<crate::sdp::Answer>>,
    },
    /// The user's voicemail (DR-FORK-9): a cloud service, always the media processor's.
    Voicemail(Script),
    Sip(Box<UacLeg>),
}

/// One fork: the leg towards one endpoint, with its own To tag on the caller's side
/// (DR-FORK-2).
#[derive(Debug)]
struct Fork {
    name: Box<str>,
    to_tag: Tag,
    state: ForkState,
    kind: ForkKind,
    /// The media processor's offer this SIP endpoint got (non-bypass trunks,
    /// DR-MEDIA-3): the session its later offers are answered from.
    offer: Option<Bytes>,
}

/// One call's whole state; see the module docs.
pub struct Call {
    settings: Arc<CallSettings>,
    call_id: Box<str>,
    caller: UasLeg,
    listener: Arc<str>,
    /// See [`NewCall::sbc`].
    sbc: Arc<str>,
    trunk: TrunkRoute,
    forks: Vec<Fork>,
    phase: Phase,
    started: Instant,
    /// The time of the event or timeout being handled (the machine's clock).
    now: Instant,
    ring_deadline: Instant,
    bypass: bool,
    media_answer: Bytes,
    /// The media processor's session, for answering the SBC's later offers.
    media: crate::sdp::Continuity,
    /// The SDP session the SBC talks to once the call is answered.
    sbc_media: LegMedia,
    /// The media processor's session with the SIP endpoint that answered (non-bypass
    /// trunks, DR-MEDIA-3).
    endpoint_media: LegMedia,
    /// Re-INVITEs and UPDATEs relayed between the SBC and a SIP endpoint, by the id of
    /// the request that carries each on.
    relays: Vec<(ReqId, Relay)>,
    sent_183: bool,
    voicemail_after: Duration,
    /// Negotiated at admission, running once the call is answered.
    session_offer: Option<Negotiated>,
    session: Option<SessionTimer>,
    /// The SBC's connections all closed at this point; probe the dialog then.
    orphan_at: Option<Instant>,
    /// The called user's tenant and SIP address (a transfer's `x-t` and `x-m`).
    tenant: Box<str>,
    user: Box<str>,
    /// A transfer of drhub's as transferor, from its REFER to the NOTIFY that ends it
    /// (DR-XFER-3): where it goes.
    transfer: Option<transfer::Target>,
    /// The consultation call of the transfer under way, if consultative.
    consultation: Option<Box<transfer::Consultation>>,
    /// The SBC's INVITE back for a transfer to a number (DR-XFER-4).
    transfer_back: Option<Box<TransferBack>>,
    /// DR-XFER-1: the SBC takes REFER (option 2), else drhub is the referee.
    allows_refer: bool,
    /// The user's forwarding rules until one applied (DR-FWD-1).
    forwarding: Option<Box<ForwardRules>>,
    keep_history: bool,
    /// When the no-answer rule forwards (DR-FWD-1).
    no_answer_at: Option<Instant>,
    /// The caller as the endpoints see it (From of their INVITEs), for forks a forward to
    /// another user starts.
    /// (Kept only for calls of users with forwarding rules.)
    caller_from: Option<Box<str>>,
    /// A forward to a number: the SBC's leg goes to an outbound call (DR-FWD).
    handoff: Option<Box<HandoffPlan>>,
    /// Who called (the From of forwarded, simultaneous-ring and transfer INVITEs).
    caller_id: forward::CallerId,
    /// See [`NewCall::referee`].
    referee: Vec<(String, Vec<ForkPlan>)>,
    /// The forks of a transfer drhub carries out as referee, until one answers or all
    /// failed (DR-XFER-2).
    transfer_legs: Vec<usize>,
    /// Where a transfer drhub carried out as referee went (for the call's record).
    transferred_to: Option<Box<str>>,
    /// The referee's legs for the REFER out now, should the SBC refuse it and the trunk
    /// have `refer_fallback` (DR-XFER-2).
    refer_fallback: Vec<ForkPlan>,
    /// The 200 to a SIP endpoint's re-INVITE over UDP, until its ACK.
    kept_2xx: Option<Box<leg::Kept2xx>>,
    requests: InFlight<Purpose>,
    actions: Vec<Action>,
    /// Why the call ended, for the log and the call record.
    pub outcome: Option<Outcome>,
    setup: Option<Box<Setup>>,
}

/// What only the start of a call needs.
#[derive(Debug)]
struct Setup {
    plans: Vec<ForkPlan>,
    caller: String,
    callee: String,
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The final status the caller got (200 for an answered call).
    pub status: u16,
    /// The catalogue code when drhub ended or refused it.
    pub code: Option<u32>,
    pub reason: String,
}

impl Call {
    pub fn new(new: NewCall, settings: Arc<CallSettings>, now: Instant) -> Call {
        let call_id: Box<str> = new.invite.message().call_id().unwrap_or("-").into();
        let caller_id = forward::CallerId::of(&new.invite.message());
        let caller_from: Option<Box<str>> =
            new.forwarding.is_some().then(|| new.caller.as_str().into());
        let caller = UasLeg::new(
            new.tx,
            new.invite,
            new.local,
            new.peer,
            settings.t1,
            settings.t2,
        );
        Call {
            ring_deadline: now + settings.ring_timeout,
            settings,
            call_id,
            caller,
            listener: new.listener,
            sbc: new.sbc,
            trunk: new.trunk,
            forks: Vec::new(),
            phase: Phase::Ringing,
            started: now,
            now,
            bypass: new.bypass,
            media_answer: Bytes::copy_from_slice(new.media_answer.as_bytes()),
            media: new.media_answer.continuity().clone(),
            sbc_media: LegMedia::new(MediaPeer::Sbc),
            endpoint_media: LegMedia::new(MediaPeer::Endpoint),
            relays: Vec::new(),
            sent_183: false,
            voicemail_after: new.voicemail_after,
            session_offer: new.session,
            session: None,
            orphan_at: None,
            tenant: new.tenant.as_str().into(),
            user: new.user.as_str().into(),
            transfer: None,
            consultation: None,
            transfer_back: new.transfer_back,
            allows_refer: new.allows_refer,
            no_answer_at: new
                .forwarding
                .as_ref()
                .and_then(|f| f.no_answer.as_ref())
                .map(|(after, _)| now + *after),
            forwarding: new.forwarding,
            keep_history: new.keep_history,
            caller_from,
            handoff: None,
            caller_id,
            referee: new.referee,
            transfer_legs: Vec::new(),
            transferred_to: None,
            refer_fallback: Vec::new(),
            kept_2xx: None,
            requests: InFlight::new(),
            actions: Vec::new(),
            outcome: None,
            setup: Some(Box::new(Setup {
                plans: new.forks,
                caller: new.caller,
                callee: new.callee,
            })),
        }
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The next thing to do for the world, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        if self.actions.is_empty() {
            if self.actions.capacity() > 0 {
                self.actions = Vec::new();
            }
            return None;
        }
        Some(self.actions.remove(0))
    }

    /// The failed INVITE transaction whose ACK the task awaits after the call (Timer H).
    pub fn take_failure(&mut self) -> Option<crate::transaction::Answered> {
        self.caller.take_failure()
    }

    /// DR-FORK-1: 100 Trying at once, then every fork at the same time.
    pub fn start(&mut self) {
        self.caller.provisional(100, "Trying", None, None, &[]);
        if let Some(back) = self.transfer_back.take() {
            return self.carry_transfer_back(*back);
        }
        let Some(setup) = self.setup.take() else {
            return;
        };
        let Setup {
            plans,
            caller,
            callee,
        } = *setup;
        // DR-FWD-1: forward immediately rings none of the user's clients.
        if let Some(target) = self.forwarding.as_mut().and_then(|f| f.immediate.take()) {
            return self.forward(forward::Cause::Unconditional, target);
        }
        self.start_forks(plans, &caller, &callee);
        if self.forks.is_empty() {
            if let Some(target) = self.forwarding.as_mut().and_then(|f| f.unavailable.take()) {
                return self.forward(forward::Cause::Unavailable, target);
            }
            let r = Rejection::new(Diagnostic::NoEndpoints).with("user", callee);
            self.fail_call(r);
            return;
        }
        info!(
            forks = self.forks.len(),
            caller = %caller,
            bypass = self.bypass,
            session_timer = self.session_offer.is_some(),
            "INVITE accepted; ringing every endpoint"
        );
    }

    fn start_forks(&mut self, plans: Vec<ForkPlan>, caller: &str, callee: &str) {
        self.forks.reserve_exact(plans.len());
        // A client rung later in the call (a forward, a transfer) runs its script from
        // now.
        let late = self.now.saturating_duration_since(self.started);
        for plan in plans {
            match plan {
                ForkPlan::Script {
                    name,
                    script,
                    answer,
                } => self.forks.push(Fork {
                    name: name.into(),
                    to_tag: Tag::random(),
                    state: ForkState::Trying,
                    kind: ForkKind::Script {
                        script: Script::new(&script).delayed(late),
                        bypass: script.bypass,
                        answer,
                    },
                    offer: None,
                }),
                ForkPlan::Sip {
                    name,
                    uri,
                    route,
                    local,
                    offer,
                } => self.start_sip_fork(name, &uri, route, local, offer, (caller, callee)),
                ForkPlan::Pstn {
                    name,
                    number,
                    gateway,
                    offer,
                } => self.start_pstn_fork(name, &number, &gateway, offer, PstnFork::SimRing),
            }
        }
    }

    /// The History-Info that came in as kept (when the caller's trunk keeps it) and the
    /// number the forwarding user was called on (DR-FWD-4).
    fn history_and_forwarder(&self) -> (Vec<forward::Entry>, String) {
        let Some(invite) = self.caller.invite() else {
            return (Vec::new(), String::new());
        };
        let m = invite.message();
        let history = match self.keep_history {
            true => forward::incoming(&m, self.caller.local.host()),
            false => Vec::new(),
        };
        let forwarder = m
            .request_uri()
            .and_then(Result::ok)
            .and_then(|u| u.user().and_then(forward::phone_number))
            .unwrap_or_default();
        (history, forwarder)
    }

    /// A fork to a number through an SBC. The INVITE shows the original caller and
    /// drhub record-routes as on its outbound calls. For simultaneous ring (DR-FWD-1) it
    /// says `cause=302` (an emulator choice: RFC 4458 has no cause for it) and, to a trunk
    /// with `forward_call_history`, carries History-Info (DR-FWD-2/4); for a transfer
    /// (DR-XFER-2) it carries `Referred-By` and no History-Info (DR-XFER-5).
    fn start_pstn_fork(
        &mut self,
        name: String,
        number: &str,
        g: &outbound::Gateway,
        offer: Option<Bytes>,
        kind: PstnFork,
    ) {
        let (history, forwarder) = match kind {
            PstnFork::SimRing => self.history_and_forwarder(),
            PstnFork::Transfer(_) => (Vec::new(), String::new()),
        };
        let host = g.local.host();
        let private = self.caller_id.private;
        let from = self.caller_id.from_header(host);
        let mut target = format!("sip:{number}@{}:{};user=phone", g.fqdn, g.port);
        if matches!(kind, PstnFork::SimRing) {
            target.push_str(";cause=302");
        }
        let to = format!("<sip:{number}@{};user=phone>", g.fqdn);
        let record_route = format!(
            "<sip:{host}:{};transport={};lr>",
            g.local.port(),
            g.local.transport().param()
        );
        let sim_ring = matches!(kind, PstnFork::SimRing);
        let history = (sim_ring && g.forward_call_history).then(|| {
            forward::history_info(
                &history,
                host,
                &forwarder,
                number,
                forward::Cause::Unconditional,
            )
        });
        let mut extra: Vec<(&str, &str)> = vec![("Record-Route", &record_route)];
        if let Some(h) = &history {
            extra.push(("History-Info", h));
        }
        let replaces = match &kind {
            PstnFork::Transfer(t) => t.replaces_for(&g.fqdn),
            PstnFork::SimRing => None,
        };
        if let PstnFork::Transfer(t) = &kind {
            extra.push(("Referred-By", &t.referred_by));
            if t.consultation.is_some() && replaces.is_none() {
                warn!(sbc = %g.fqdn, "the consultation call went through another SBC: the transfer's INVITE cannot replace its dialog and rings the target afresh");
            }
        }
        if let Some(r) = &replaces {
            extra.push(("Replaces", r));
        }
        if private {
            extra.push(("Privacy", "id"));
        }
        let peer = Peer::Sbc {
            fqdn: g.fqdn.clone(),
        };
        let params = InviteParams {
            target: &target,
            from,
            to,
            sdp: &[],
            extra: &extra,
            again: None,
            contact: None,
        };
        if self.start_uac_fork(
            &name,
            outbound::route_to(g),
            g.local.clone(),
            peer,
            params,
            offer,
        ) {
            info!(fork = %name, sbc = %g.fqdn, target, "INVITE to the SBC for a fork to a number");
        } else {
            warn!(fork = %name, target, "fork to a number: INVITE not built; not rung");
        }
    }

    /// Starts a fork that is a UAC leg (to a SIP endpoint or through an SBC): its INVITE
    /// with `offer` (DR-MEDIA-3: the media processor's), else the SBC's own SDP; the
    /// leg's index entry before its first response can arrive. False when the INVITE
    /// could not be built.
    fn start_uac_fork(
        &mut self,
        name: &str,
        route: Route,
        local: LocalIdentity,
        peer: Peer,
        params: InviteParams<'_>,
        offer: Option<Bytes>,
    ) -> bool {
        let sdp = offer.clone().unwrap_or_else(|| {
            self.caller
                .invite()
                .map(|i| Bytes::copy_from_slice(i.message().body()))
                .unwrap_or_default()
        });
        let params = InviteParams {
            sdp: &sdp,
            ..params
        };
        let id = self.next_id();
        let Some(leg) = UacLeg::start(id, route, local, peer.clone(), &params, &mut self.actions)
        else {
            return false;
        };
        let key = LegKey::new(leg.call_id(), leg.local_tag().as_str());
        let at = self.actions.len() - 1;
        self.actions.insert(at, Action::Index { key, peer });
        self.requests
            .push(id, Purpose::ForkInvite(self.forks.len()));
        self.forks.push(Fork {
            name: name.into(),
            to_tag: Tag::random(),
            state: ForkState::Trying,
            kind: ForkKind::Sip(Box::new(leg)),
            offer,
        });
        true
    }

    /// A forwarding rule applies (DR-FWD): the PSTN caller hears 181 (DR-FWD-3); a
    /// number goes out through an outbound call that takes the SBC's leg over, a user's
    /// clients or the voicemail ring in this call. Every fork still ringing was cancelled
    /// by the caller of this.
    fn forward(&mut self, cause: forward::Cause, target: Forward) {
        self.forwarding = None;
        self.no_answer_at = None;
        info!(rule = cause.rule(), cause = cause.code(), to = %target, "forwarding the call (DR-FWD)");
        let history = match self.caller.invite() {
            Some(i) if self.keep_history => {
                forward::incoming(&i.message(), self.caller.local.host())
            }
            _ => Vec::new(),
        };
        if let Forward::Number(n) = &target {
            // DR-FWD-5: the History-Info that came in names the target already.
            if forward::loops(&history, n) {
                warn!(to = %n, "forwarding loop: the History-Info already names the target (DR-FWD-5)");
                let r = Rejection::new(Diagnostic::ForwardLoop).with("target", n.clone());
                return self.fail_call(r);
            }
        }
        self.caller.provisional(
            181,
            "Call Is Being Forwarded",
            Some(Tag::random()),
            None,
            &[],
        );
        self.ring_deadline = self.now + self.settings.ring_timeout;
        match target {
            Forward::Voicemail => self.ring_voicemail(),
            Forward::User { address, forks } => {
                let from = self.caller_from.clone().unwrap_or_default();
                self.start_forks(forks, &from, &address);
                if !self.forks.iter().any(|f| f.state.is_live()) {
                    let r = Rejection::new(Diagnostic::NoEndpoints).with("user", address);
                    self.fail_call(r);
                }
            }
            Forward::Number(n) => {
                let Some(route) = self.sbc_route_of_invite() else {
                    warn!("the SBC's INVITE names no Record-Route or Contact to reach it; forward failed");
                    let r = Rejection::new(Diagnostic::Malformed("Contact Missing"));
                    return self.fail_call(r);
                };
                // The Request-URI's number is the one the forwarding user was called on.
                let forwarder = self
                    .caller
                    .invite()
                    .and_then(|i| {
                        let m = i.message();
                        let ruri = m.request_uri()?.ok()?;
                        ruri.user().and_then(forward::phone_number)
                    })
                    .unwrap_or_default();
                self.handoff = Some(Box::new(HandoffPlan {
                    route,
                    target: n,
                    carry: forward::Carry::Forward(forward::Forwarded {
                        cause,
                        forwarder,
                        history,
                    }),
                }));
                self.phase = Phase::Done;
            }
        }
    }

    /// How requests reach the SBC in the dialog its INVITE asks for: its Record-Route,
    /// else its Contact.
    fn sbc_route_of_invite(&self) -> Option<Route> {
        let hop = self
            .caller
            .invite()
            .and_then(|i| dialog::NextHop::of_request(&i.message()));
        hop.and_then(|h| self.sbc_route_via(h))
    }

    /// DR-XFER-4: the SBC's INVITE back for a transfer to a number goes straight on to
    /// the number, as an outbound call of the transferring user's that carries the
    /// REFER's `Referred-By` (and a consultative transfer's `Replaces`).
    fn carry_transfer_back(&mut self, back: TransferBack) {
        let Some(route) = self.sbc_route_of_invite() else {
            warn!("the SBC's INVITE names no Record-Route or Contact to reach it; transfer failed");
            let r = Rejection::new(Diagnostic::Malformed("Contact Missing"));
            return self.fail_call(r);
        };
        info!(to = %back.target, "the transfer goes on to the number (DR-XFER-4)");
        self.handoff = Some(Box::new(HandoffPlan {
            route,
            target: back.target,
            carry: forward::Carry::Transfer(back.transferred),
        }));
        self.phase = Phase::Done;
    }

    /// A forward to a number: the SBC's leg and what the outbound call carrying the call
    /// on needs (see [`forward`]); `None` when the call did not forward to a number.
    pub fn into_handoff(self, key: LegKey) -> Option<forward::Handoff> {
        let plan = self.handoff?;
        let peer = self.caller.peer.clone();
        let bypass = self.bypass;
        // SIP endpoints cancelled for the forward: a 200 crossing the CANCEL still needs
        // its ACK and a BYE (RFC 3261 §9.1, §15), which the outbound call sends.
        let cancelled = self
            .forks
            .into_iter()
            .filter_map(|f| match f.kind {
                ForkKind::Sip(leg) if f.state == ForkState::Cancelled => Some(*leg),
                _ => None,
            })
            .collect();
        Some(forward::Handoff {
            caller: outbound::Caller {
                name: format!("the SBC {}", self.trunk.fqdn),
                route: plan.route,
                key,
                peer,
                answer: self.media_answer,
                media: Box::new(self.media),
                leg: self.caller,
            },
            bypass,
            user: self.user.to_string(),
            target: plan.target,
            carry: plan.carry,
            last_request: self.requests.next,
            cancelled,
        })
    }

    fn start_sip_fork(
        &mut self,
        name: String,
        uri: &str,
        dest: Destination,
        local: LocalIdentity,
        offer: Option<Bytes>,
        (caller, callee): (&str, &str),
    ) {
        let peer = Peer::Endpoint {
            addr: dest.peer(),
            transport: dest.transport(),
        };
        // Media bypass: the endpoint gets the SBC's own offer.
        let relays_sbc_sdp = offer.is_none() && dest.transport() == Transport::Udp;
        let params = InviteParams {
            target: uri,
            from: caller.to_owned(),
            to: format!("<sip:{callee}>"),
            sdp: &[],
            extra: &[],
            again: None,
            contact: None,
        };
        if self.start_uac_fork(&name, Route::Dest(dest), local, peer, params, offer) {
            debug!(endpoint = %name, target = uri, "INVITE to SIP endpoint");
            if relays_sbc_sdp {
                let sdp = self.caller.invite().map_or(0, |i| i.message().body().len());
                self.note_sdp_over_udp(&name, "INVITE", sdp);
            }
        } else {
            warn!(endpoint = %name, target = uri, "endpoint not rung: its Contact cannot be a Request-URI");
        }
    }

    /// When [`Call::handle_timeout`] must next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                d = Some(d.map_or(t, |x| x.min(t)));
            }
        };
        if self.phase == Phase::Ringing {
            consider(Some(self.ring_deadline));
            consider(self.no_answer_at);
        }
        for (i, f) in self.forks.iter().enumerate() {
            if self.fork_scripted(i) {
                let script = match &f.kind {
                    ForkKind::Script { script, .. } | ForkKind::Voicemail(script) => script,
                    ForkKind::Sip(_) => continue,
                };
                consider(script.poll_timeout(self.started));
            }
        }
        consider(self.caller.poll_timeout());
        consider(self.kept_2xx.as_ref().map(|k| k.poll_timeout()));
        if matches!(self.phase, Phase::Answered(_) | Phase::Up(_)) {
            consider(self.session.as_ref().and_then(SessionTimer::poll_timeout));
            consider(self.orphan_at);
            consider(self.sbc_media.retry.map(|(t, _)| t));
        }
        d
    }

    /// Whether a fork's script still matters: live forks ring and answer; the fork that
    /// answered may still hang up; a transfer's target rings and answers in a call up.
    fn fork_scripted(&self, i: usize) -> bool {
        let f = &self.forks[i];
        match self.phase {
            Phase::Ringing => f.state.is_live(),
            Phase::Answered(n) | Phase::Up(n) => {
                n == i || (f.state.is_live() && self.transfer_legs.contains(&i))
            }
            _ => false,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if self.phase == Phase::Ringing && self.no_answer_at.is_some_and(|t| now >= t) {
            self.no_answer_at = None;
            if let Some((after, target)) = self.forwarding.as_mut().and_then(|f| f.no_answer.take())
            {
                info!(?after, "unanswered: the no-answer rule forwards");
                self.cancel_forks(None);
                self.forward(forward::Cause::NoAnswer, target);
                return;
            }
        }
        if self.phase == Phase::Ringing && now >= self.ring_deadline {
            info!(after = ?self.settings.ring_timeout, "nobody answered: ring timeout");
            self.cancel_forks(None);
            let status = self.settings.ring_timeout_status;
            self.fail_call(Rejection::new(Diagnostic::RingTimeout).with_status(status));
            return;
        }
        for i in 0..self.forks.len() {
            while self.fork_scripted(i) {
                let started = self.started;
                let ev = match &mut self.forks[i].kind {
                    ForkKind::Script { script, .. } | ForkKind::Voicemail(script) => {
                        script.handle_timeout(started, now)
                    }
                    ForkKind::Sip(_) => None,
                };
                let Some(ev) = ev else { break };
                self.on_fork_event(i, ev, now);
                if self.phase == Phase::Done {
                    return;
                }
            }
        }
        if let Some(k) = &mut self.kept_2xx {
            if !k.handle_timeout(now, self.settings.t2) {
                self.kept_2xx = None;
            }
        }
        if let Some((at, hold)) = self.sbc_media.retry {
            if now >= at {
                self.sbc_media.retry = None;
                self.teams_hold(hold);
            }
        }
        if self.caller.handle_timeout(now) {
            // RFC 3261 §13.3.1.4: no ACK within 64*T1: end the dialog with BYE.
            let r = Rejection::new(Diagnostic::SbcDidNotAck);
            warn!(
                code = r.entry().code,
                "the SBC did not ACK the 200 OK; sending BYE"
            );
            if let Phase::Answered(n) = self.phase {
                self.phase = Phase::Up(n);
            }
            return self.hang_up(Some(&r), true, true);
        }
        if matches!(self.phase, Phase::Answered(_) | Phase::Up(_)) {
            let action = self.session.as_mut().and_then(|s| s.handle_timeout(now));
            match action {
                Some(session_timer::Action::Refresh) => self.send_refresh(None),
                Some(session_timer::Action::Expire) => {
                    let r = Rejection::new(Diagnostic::SessionExpired);
                    warn!(
                        code = r.entry().code,
                        "the session expired without a refresh (DR-ST-2); BYE both sides"
                    );
                    return self.hang_up(Some(&r), true, true);
                }
                None => {}
            }
            if self.orphan_at.is_some_and(|t| now >= t) {
                self.orphan_at = None;
                info!("the SBC's connections closed without BYE; asking whether the dialog is still there");
                let id = self.next_id();
                if let Some(request) = self.sbc_request("OPTIONS", &[], None) {
                    self.send_sbc(id, request, Purpose::Probe);
                }
            }
        }
    }

    pub fn handle(&mut self, ev: CallEvent, now: Instant) {
        self.now = now;
        match ev {
            CallEvent::Cancel { tx, request } => self.on_cancel(tx, &request),
            CallEvent::Ack { request } => {
                if self
                    .kept_2xx
                    .as_ref()
                    .is_some_and(|k| k.acked_by(&request.message()))
                    && !self.caller.owns(&request.message())
                {
                    debug!("ACK for the 200 to the endpoint's re-INVITE");
                    self.kept_2xx = None;
                    return;
                }
                if self.caller.on_ack(&request.message()) {
                    if let Phase::Answered(n) = self.phase {
                        debug!("ACK for the 200 OK");
                        self.phase = Phase::Up(n);
                    }
                }
            }
            CallEvent::Request {
                tx,
                request,
                source,
            } => self.on_request(tx, &request, &source, now),
            CallEvent::Client { id, event } => self.on_client(id, event, now),
            CallEvent::Undeliverable { id, error } => {
                let d = error.diagnostic();
                warn!(
                    code = d.entry().code,
                    status = d.entry().status,
                    requirement = d.entry().requirement,
                    error = %error,
                    "request to the SBC not delivered: {}",
                    d.entry().text
                );
                // The most telling fact of the call's end: it stays in its record.
                let status = self.outcome.as_ref().map_or(d.entry().status, |o| o.status);
                self.outcome = Some(Outcome {
                    status,
                    code: Some(d.entry().code),
                    reason: error.to_string(),
                });
                self.on_client(id, ClientEvent::TransportError, now)
            }
            CallEvent::Stray { response } => {
                let msg = response.message();
                for f in &self.forks {
                    if let ForkKind::Sip(leg) = &f.kind {
                        if msg.call_id() == Some(leg.call_id()) {
                            leg.on_stray_2xx(&msg, &mut self.actions);
                        }
                    }
                }
            }
            CallEvent::HangUp => self.operator_hang_up(),
            CallEvent::Hold(hold) => self.teams_hold(hold),
            CallEvent::Transfer(order) => self.transfer(*order),
            CallEvent::Consult(reply) => {
                let _ = reply.send(self.consultation());
            }
            CallEvent::SbcGone => {
                if self.session.is_none() && matches!(self.phase, Phase::Answered(_) | Phase::Up(_))
                {
                    let after = self.settings.orphan_timeout;
                    info!(?after, "every connection to the SBC closed; the call waits for it (no session timer on this call)");
                    self.orphan_at = Some(now + after);
                }
            }
        }
    }

    // --- the caller's side -------------------------------------------------------------

    fn teller_source(&self) -> &str {
        self.caller.local.host()
    }

    fn reject_in_dialog(&self, tx: ServerTx, req: &Message<'_>, r: Rejection, flow: &str) {
        reject_in_dialog(tx, req, r, &self.caller.local, &self.settings, flow);
    }

    /// DR-FORK-8: 200 to the CANCEL, CANCEL every fork, 487 to the INVITE.
    fn on_cancel(&mut self, tx: ServerTx, request: &Stored) {
        let msg = request.message();
        reply(tx, &msg, 200, "OK", &self.caller.local, &[], None);
        if self.phase == Phase::Ringing && self.caller.is_pending() {
            info!("the SBC cancelled the call");
            self.cancel_forks(None);
            self.caller.fail(487, "Request Terminated", &[]);
            self.outcome = Some(Outcome {
                status: 487,
                code: None,
                reason: "cancelled by the caller".into(),
            });
            self.phase = Phase::Done;
        }
    }

    /// A request inside one of the call's dialogs.
    fn on_request(&mut self, tx: ServerTx, request: &Stored, source: &Destination, now: Instant) {
        let msg = request.message();
        let method = msg.method();
        // A SIP endpoint's dialog?
        if let Some(i) = self.forks.iter().position(|f| match &f.kind {
            ForkKind::Sip(leg) => leg.owns(&msg),
            _ => false,
        }) {
            return self.on_endpoint_request(i, tx, request);
        }
        if !self.caller.owns(&msg) {
            // DR-NH-4: the right SBC, but no dialog of this call has these tags.
            let r = Rejection::new(Diagnostic::NoSuchDialog)
                .with("method", method.map_or("-", |m| m.as_str()))
                .with(
                    "to_tag",
                    msg.to()
                        .and_then(Result::ok)
                        .and_then(|t| t.tag())
                        .unwrap_or("-"),
                );
            return self.reject_in_dialog(tx, &msg, r, &source.label());
        }
        let cseq = msg.cseq().and_then(Result::ok).map(|c| c.seq);
        if let (Some(d), Some(n)) = (self.caller.dialog_mut(), cseq) {
            if !d.accept_remote_cseq(n) {
                // RFC 3261 §12.2.2.
                let r = Rejection::new(Diagnostic::CSeqOutOfOrder).with("cseq", n.to_string());
                return self.reject_in_dialog(tx, &msg, r, &source.label());
            }
        }
        match method {
            Some(Method::Bye) => {
                info!(after = ?self.now.saturating_duration_since(self.started), "the SBC hung up (BYE)");
                reply(tx, &msg, 200, "OK", &self.caller.local, &[], None);
                match self.phase {
                    Phase::Ringing => {
                        // §15: a BYE in an early dialog ends the whole INVITE.
                        self.cancel_forks(None);
                        self.caller.fail(487, "Request Terminated", &[]);
                    }
                    Phase::Answered(i) | Phase::Up(i) => self.bye_fork(i, true),
                    _ => {}
                }
                self.cancel_forks(None);
                self.end_relays();
                if self.caller.state() != UasState::Rejected {
                    self.outcome = Some(Outcome {
                        status: 200,
                        code: None,
                        reason: "ended by the SBC (BYE)".into(),
                    });
                }
                self.settle_end();
            }
            Some(Method::Notify) => self.on_notify(tx, &msg),
            Some(Method::Invite) | Some(Method::Update) if self.relays_to_endpoint(&msg) => {
                self.relay_to_endpoint(tx, request)
            }
            Some(Method::Invite) | Some(Method::Update) => self.on_refresh(tx, &msg, source, now),
            _ => reply(tx, &msg, 200, "OK", &self.caller.local, &[], None),
        }
    }

    /// A re-INVITE or UPDATE from the SBC: a session refresh (DR-ST-2/3), or any other
    /// offer; answered with the call's current SDP.
    fn on_refresh(&mut self, tx: ServerTx, msg: &Message<'_>, source: &Destination, now: Instant) {
        // RFC 3261 §14.2: no offer before the call is answered, nor a re-INVITE (or an
        // UPDATE with an offer, RFC 3311 §5.2) while ours is pending (glare).
        let glare = offers_into_glare(msg) && self.reinvite_pending();
        let answering = match self.phase {
            Phase::Answered(i) | Phase::Up(i) if !glare => Some(i),
            _ => None,
        };
        let Some(i) = answering else {
            let local = self.caller.local.clone();
            return reply(tx, msg, 491, "Request Pending", &local, &[], None);
        };
        // The answer first: a refused offer leaves the call, its target and its session
        // timer as they were (RFC 3261 §14.2, RFC 4028 §10).
        let reanswer = if msg.body().is_empty() {
            None
        } else {
            match self.answer_reoffer(i, msg) {
                Ok(a) => Some(a),
                Err(r) => {
                    warn!(diagnostic = ?r.diagnostic, "the SBC's new offer is refused; the call goes on unchanged");
                    return self.reject_in_dialog(tx, msg, r, &source.label());
                }
            }
        };
        let mut extra: Vec<(&str, String)> = Vec::new();
        if self.session.is_some() {
            let req = request_timers(msg);
            match negotiate_uas(&req, &self.settings.session) {
                UasDecision::TooSmall { min_se } => {
                    let r = Rejection::new(Diagnostic::SessionIntervalTooSmall)
                        .with("session_expires", req.session_expires.unwrap_or("-"))
                        .with("min_se", min_se.to_string());
                    return self.reject_in_dialog(tx, msg, r, &source.label());
                }
                UasDecision::Malformed(why) => {
                    let r = Rejection::new(Diagnostic::Malformed(why));
                    return self.reject_in_dialog(tx, msg, r, &source.label());
                }
                UasDecision::Accept(n) => {
                    extra.push(("Supported", "timer".into()));
                    extra.push(("Session-Expires", n.session_expires_header()));
                    if n.require {
                        extra.push(("Require", "timer".into()));
                    }
                    debug!(interval = n.interval, refresher = %n.refresher, "session refreshed by the SBC");
                    if let Some(s) = &mut self.session {
                        s.refreshed(n, now);
                    }
                }
            }
        }
        if let Some(d) = self.caller.dialog_mut() {
            d.refresh_target(msg);
        }
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let body = reanswer.as_ref().map(|r| r.body.clone());
        reply(
            tx,
            msg,
            200,
            "OK",
            &self.caller.local,
            &extra,
            body.as_deref(),
        );
        if let Some(r) = reanswer {
            let moved = self.sbc_media.commit(r).is_some();
            if let Some(d) = self.sbc_media.odd_hold.take() {
                let a = Note::odd_hold(&self.trunk.fqdn, &self.call_id, d);
                self.actions.push(a);
            }
            if moved {
                self.actions.push(Action::Progress(self.sbc_media.state()));
            }
        }
    }

    /// A request from a SIP endpoint in its dialog (its BYE).
    fn on_endpoint_request(&mut self, i: usize, tx: ServerTx, request: &Stored) {
        let msg = &request.message();
        let local = match &self.forks[i].kind {
            ForkKind::Sip(leg) => leg.local.clone(),
            _ => return,
        };
        let answered = matches!(self.phase, Phase::Answered(n) | Phase::Up(n) if n == i);
        if answered && matches!(msg.method(), Some(Method::Invite | Method::Update)) {
            return self.on_endpoint_offer(i, tx, request, &local);
        }
        reply(tx, msg, 200, "OK", &local, &[], None);
        if msg.method() == Some(Method::Bye) {
            if let ForkKind::Sip(leg) = &mut self.forks[i].kind {
                leg.terminated();
            }
            if matches!(self.phase, Phase::Answered(n) | Phase::Up(n) if n == i) {
                self.endpoint_hung_up(i, " (BYE)");
            }
        }
    }

    /// A re-INVITE or UPDATE from the SIP endpoint that answered: on a non-bypass trunk
    /// the media processor answers it (RFC 3264 §8) and a hold from the phone is the
    /// Teams user holding (DR-HOLD-2: music on hold, nothing to the SBC). On a bypass
    /// trunk the phone's media is the SBC's to answer, and relaying the offer is not
    /// built yet: 488, the call unchanged.
    fn on_endpoint_offer(
        &mut self,
        i: usize,
        tx: ServerTx,
        request: &Stored,
        local: &LocalIdentity,
    ) {
        let msg = &request.message();
        // RFC 3261 §14.2, RFC 3311 §5.2: an offer crossing one of drhub's in this call.
        if offers_into_glare(msg) && self.reinvite_pending() {
            return reply(tx, msg, 491, "Request Pending", local, &[], None);
        }
        let clock = (self.now, self.settings.t1);
        if msg.body().is_empty() {
            let body = self.endpoint_media.offerless(msg);
            self.kept_2xx = leg::reply_200(tx, msg, local, body.as_deref(), clock).map(Box::new);
            return;
        }
        match self
            .endpoint_media
            .answer(msg.body(), &self.settings.codecs)
        {
            Ok(Some(re)) => {
                self.kept_2xx =
                    leg::reply_200(tx, msg, local, Some(&re.body[..]), clock).map(Box::new);
                // RFC 3261 §12.2.2: a re-INVITE or UPDATE refreshes the target.
                if let ForkKind::Sip(leg) = &mut self.forks[i].kind {
                    if let Some(d) = leg.dialog_mut() {
                        d.refresh_target(msg);
                    }
                }
                if let Some(held) = self.endpoint_media.commit(re) {
                    self.sbc_media.hold_locally(held, &mut self.actions);
                }
            }
            Ok(None) => {
                // Media bypass: the phone's media is the SBC's to answer; the offer goes
                // on to the SBC and its answer comes back (RFC 3264 §8 across the B2BUA).
                let method = offer_method(msg);
                let id = self.next_id();
                match self.sbc_request(method, &[], Some(msg.body())) {
                    Some(req) => {
                        debug!(method, "the endpoint's offer relayed to the SBC");
                        let relay = Relay {
                            tx,
                            request: request.clone(),
                            to_endpoint: false,
                        };
                        self.relays.push((id, relay));
                        self.send_sbc(id, req, Purpose::Relay);
                    }
                    None => reply(
                        tx,
                        msg,
                        481,
                        "Call/Transaction Does Not Exist",
                        local,
                        &[],
                        None,
                    ),
                }
            }
            Err(r) => {
                warn!(diagnostic = ?r.diagnostic, "the SIP endpoint's new offer is refused; the call goes on unchanged");
                reject_in_dialog(tx, msg, r, local, &self.settings, "endpoint");
            }
        }
    }

    // --- forks --------------------------------------------------------------------------

    fn on_client(&mut self, id: ReqId, event: ClientEvent, now: Instant) {
        if let ClientEvent::Additional2xx(_) = &event {
            // A 2xx retransmitted (or another fork's) after the INVITE's final response,
            // which retired the request: its leg ACKs it again (RFC 6026 §7.2).
            {
                let mut next = self.requests.ids();
                for f in &mut self.forks {
                    if let ForkKind::Sip(leg) = &mut f.kind {
                        if leg.invite_id() == id {
                            leg.on_invite_event(event, &mut next, &mut self.actions);
                            break;
                        }
                    }
                }
            }
            return self.track_fire_and_forget();
        }
        let Some(purpose) = self.requests.on_event(id, &event) else {
            return;
        };
        match purpose {
            Purpose::ForkInvite(i) => {
                let ev = match &mut self.forks[i].kind {
                    ForkKind::Sip(leg) => {
                        leg.on_invite_event(event, &mut self.requests.ids(), &mut self.actions)
                    }
                    _ => None,
                };
                // Anything the leg sent on its own (CANCEL, BYE) needs no answer.
                self.track_fire_and_forget();
                if let Some(ev) = ev {
                    self.on_fork_event(i, ev, now);
                }
            }
            Purpose::Fire => {}
            Purpose::Closing { to_sbc } => {
                if to_sbc {
                    if let ClientEvent::Timeout(_) | ClientEvent::TransportError = event {
                        warn!("the SBC did not answer the BYE");
                    } else {
                        debug!("BYE answered; call over");
                    }
                }
                self.settle_end();
            }
            Purpose::Refresh { headers, invite } => {
                self.on_refresh_answer(event, headers, invite, now)
            }
            Purpose::Refer => self.on_refer_answer(event),
            Purpose::Relay => {
                if let Some(pos) = self.relays.iter().position(|(r, _)| *r == id) {
                    let (_, relay) = self.relays.swap_remove(pos);
                    self.on_relay_answer(relay, event);
                }
            }
            Purpose::IceRestart { mut next } => match self.hold_answered(event) {
                Ok(answer) => {
                    info!("the SBC accepted the ICE restart: the media processor carries the call's media (DR-ICE-1)");
                    next.answered_with(&answer);
                    self.sbc_media.session = Some(*next);
                    self.bypass = false;
                }
                Err(status) => {
                    warn!(status, "the SBC refused the ICE restart re-INVITE (DR-ICE-1); its media still goes to the Teams client that left");
                }
            },
            Purpose::Hold { hold, next } => {
                let answer = self.hold_answered(event);
                // The SBC made the Call-ID of an inbound call.
                let when = (now, false);
                self.sbc_media
                    .teams_hold_answered(hold, *next, answer, when, &mut self.actions);
            }
            Purpose::Probe => {
                let status = match &event {
                    ClientEvent::Final(r) => r.message().status_code().unwrap_or(500),
                    ClientEvent::Timeout(_) | ClientEvent::TransportError => 408,
                    _ => return,
                };
                if matches!(status, 408 | 481) {
                    let r = Rejection::new(Diagnostic::SbcGone);
                    warn!(
                        status,
                        code = r.entry().code,
                        "the SBC's dialog is gone; ending the call"
                    );
                    // The SBC does not know the dialog (or cannot be reached): no BYE there.
                    self.hang_up(Some(&r), false, true);
                } else {
                    info!(status, "the SBC still has the dialog; the call goes on");
                }
            }
        }
    }

    /// Requests a leg queued by itself (CANCEL, BYE to a second 2xx) are fire-and-forget.
    fn track_fire_and_forget(&mut self) {
        self.requests.adopt(&self.actions, Purpose::Fire);
    }

    /// What a fork did (a scripted step or a SIP leg's response), under the call's rules
    /// (DR-FORK-2..5, 7, 9).
    fn on_fork_event(&mut self, i: usize, ev: LegEvent, now: Instant) {
        if self.transfer_legs.contains(&i) {
            return self.on_transfer_leg_event(i, ev);
        }
        let live = self.forks[i].state.is_live() && self.phase == Phase::Ringing;
        match ev {
            LegEvent::Ringing if live => {
                self.forks[i].state = ForkState::Ringing;
                let tag = self.forks[i].to_tag;
                debug!(fork = %self.forks[i].name, "call progress -> 180");
                self.actions
                    .push(Action::Progress(router::CallState::Ringing));
                self.caller
                    .provisional(180, "Ringing", Some(tag), None, &[]);
            }
            LegEvent::EarlyMedia(_) if live => {
                let Some(answer) = self.fork_answer(i) else {
                    return;
                };
                self.forks[i].state = ForkState::Early;
                // DR-FORK-3: non-bypass trunks see one 183 per call, the media processor's.
                if !self.bypass && self.sent_183 {
                    debug!(fork = %self.forks[i].name, "media answer: 183 already sent for this call");
                    return;
                }
                self.sent_183 = true;
                let tag = self.forks[i].to_tag;
                debug!(fork = %self.forks[i].name, "media answer -> 183 with SDP");
                self.caller
                    .provisional(183, "Session Progress", Some(tag), Some(&answer[..]), &[]);
            }
            LegEvent::Answered(_) if live => self.accept(i, now),
            // A SIP fork's 2xx after another fork won (its ACK is already queued).
            LegEvent::Answered(_) if !matches!(self.phase, Phase::Answered(n) | Phase::Up(n) if n == i) =>
            {
                self.bye_fork(i, false);
            }
            LegEvent::Failed(code) if live => {
                debug!(fork = %self.forks[i].name, code, "endpoint declined");
                self.forks[i].state = ForkState::Failed(code);
                self.check_all_failed();
            }
            LegEvent::Gone if live => {
                warn!(fork = %self.forks[i].name, "SIP endpoint did not answer (timeout or transport error)");
                self.forks[i].state = ForkState::Failed(408);
                self.check_all_failed();
            }
            LegEvent::Redirected(Redirect::Voicemail) if live => {
                // DR-FORK-9: the 3xx is ACKed (by the transaction, or needs none) and the
                // call goes to the user's voicemail; every other fork stops ringing.
                info!(fork = %self.forks[i].name, "call deflected to voicemail (303 opaque=app:voicemail)");
                self.forks[i].state = ForkState::Failed(303);
                self.cancel_forks(None);
                self.ring_voicemail();
            }
            LegEvent::Redirected(Redirect::Other(target)) if live => {
                // DR-FORK-9: a 3xx to a number goes out as a forward (DR-FWD, cause 302).
                let number = target
                    .strip_prefix("tel:")
                    .or_else(|| target.strip_prefix("sip:"))
                    .unwrap_or(&target)
                    .split(['@', ';', '>'])
                    .next()
                    .and_then(forward::phone_number)
                    .filter(|n| n.starts_with('+'));
                self.forks[i].state = ForkState::Failed(302);
                match number {
                    Some(n) => {
                        info!(fork = %self.forks[i].name, to = %n, "call deflected to a number: forwarding");
                        self.cancel_forks(None);
                        self.forward(forward::Cause::Unconditional, Forward::Number(n));
                    }
                    None => {
                        warn!(fork = %self.forks[i].name, target, "redirect to no +E.164 number; fork fails");
                        self.forks[i].state = ForkState::Failed(480);
                        self.check_all_failed();
                    }
                }
            }
            LegEvent::HungUp if matches!(self.phase, Phase::Up(n) | Phase::Answered(n) if n == i) =>
            {
                self.endpoint_hung_up(i, "");
            }
            LegEvent::Transfer { to, consult } if matches!(self.phase, Phase::Up(n) | Phase::Answered(n) if n == i) =>
            {
                info!(fork = %self.forks[i].name, to = %to, consult, "the Teams client's script transfers the call");
                if consult {
                    // RFC 5589 §7: the client calls the target first; the transfer
                    // follows once that consultation call is answered.
                    self.actions.push(Action::Consult(Box::new(ConsultPlan {
                        call: self.call_id.to_string(),
                        user: self.user.to_string(),
                        number: to.to_string(),
                    })));
                    return;
                }
                match transfer::Target::parse(&to) {
                    Some(target) => {
                        let via = self
                            .referee
                            .iter()
                            .position(|(n, _)| **n == *to)
                            .map(|k| self.referee.swap_remove(k).1)
                            .unwrap_or_default();
                        self.transfer(TransferOrder {
                            target,
                            via,
                            consultation: None,
                        })
                    }
                    None => warn!(to = %to, "transfer target not understood"),
                }
            }
            LegEvent::Hold(hold) if matches!(self.phase, Phase::Up(n) | Phase::Answered(n) if n == i) =>
            {
                info!(fork = %self.forks[i].name, hold, "the Teams client's script holds or resumes");
                self.teams_hold(hold);
            }
            _ => {}
        }
    }

    fn ring_voicemail(&mut self) {
        let offset = self.now.saturating_duration_since(self.started) + self.voicemail_after;
        self.forks.push(Fork {
            name: "voicemail".into(),
            to_tag: Tag::random(),
            state: ForkState::Trying,
            kind: ForkKind::Voicemail(Script::one(offset, Step::Answer)),
            offer: None,
        });
    }

    /// The SDP a fork answers with: on bypass trunks the endpoint's own (voicemail is a
    /// cloud service, so the media processor's), else the call's one media-processor
    /// answer. `None` when a bypass endpoint has none.
    fn fork_answer(&self, i: usize) -> Option<Bytes> {
        if !self.bypass {
            return Some(self.media_answer.clone());
        }
        match &self.forks[i].kind {
            ForkKind::Sip(leg) => leg.sdp().cloned(),
            ForkKind::Script {
                bypass: true,
                answer,
                ..
            } => answer
                .as_ref()
                .map(|a| Bytes::copy_from_slice(a.as_bytes())),
            ForkKind::Script { .. } | ForkKind::Voicemail(_) => Some(self.media_answer.clone()),
        }
    }

    /// The SDP session fork `i`'s answer starts for the SBC: `None` for a SIP endpoint
    /// on a bypass trunk, whose SDP is its own.
    fn fork_session(&self, i: usize) -> Option<crate::sdp::Continuity> {
        match &self.forks[i].kind {
            _ if !self.bypass => Some(self.media.clone()),
            ForkKind::Sip(_) => None,
            ForkKind::Script {
                bypass: true,
                answer,
                ..
            } => answer.as_ref().map(|a| a.continuity().clone()),
            ForkKind::Script { .. } | ForkKind::Voicemail(_) => Some(self.media.clone()),
        }
    }

    /// Whether the SBC's offer goes on to the SIP endpoint that answered: media bypass,
    /// where the two talk media directly and drhub has no session of its own.
    fn relays_to_endpoint(&self, msg: &Message<'_>) -> bool {
        let Phase::Up(i) = self.phase else {
            return false;
        };
        self.bypass
            && !msg.body().is_empty()
            && self.sbc_media.session.is_none()
            && matches!(self.forks[i].kind, ForkKind::Sip(_))
    }

    /// Sends the SBC's re-INVITE or UPDATE on to the SIP endpoint in its dialog (RFC 3264
    /// §8 across the B2BUA); glare is 491 (RFC 3261 §14.2).
    fn relay_to_endpoint(&mut self, tx: ServerTx, request: &Stored) {
        let msg = request.message();
        let Phase::Up(i) = self.phase else {
            return drop(tx);
        };
        if self.reinvite_pending() {
            let local = self.caller.local.clone();
            return reply(tx, &msg, 491, "Request Pending", &local, &[], None);
        }
        let method = offer_method(&msg);
        let id = self.next_id();
        let (sent, udp) = match &mut self.forks[i].kind {
            ForkKind::Sip(leg) => (
                leg.request(id, method, Some(msg.body()), &mut self.actions),
                matches!(leg.route(), Route::Dest(d) if d.transport() == Transport::Udp),
            ),
            _ => (false, false),
        };
        if sent && udp {
            let name = self.forks[i].name.clone();
            self.note_sdp_over_udp(&name, method, msg.body().len());
        }
        if !sent {
            let local = self.caller.local.clone();
            return reply(
                tx,
                &msg,
                481,
                "Call/Transaction Does Not Exist",
                &local,
                &[],
                None,
            );
        }
        debug!(method, "the SBC's offer relayed to the SIP endpoint");
        let relay = Relay {
            tx,
            request: request.clone(),
            to_endpoint: true,
        };
        self.relays.push((id, relay));
        self.requests.push(id, Purpose::Relay);
    }

    /// DR-CONF: the SBC's own SDP (`sdp` bytes, media bypass) just went on as it is, in
    /// the request last sent, to the SIP endpoint `endpoint` over UDP. Over
    /// [`UDP_SDP_LIMIT`] it is noted on the SBC: the seed warns that a UDP peer may refuse
    /// such a message and asks the SBC to trim its SDP (ICE candidates, unused codecs).
    /// drhub still sends it whole over UDP, where the endpoint registered (DR-FORK-10:
    /// nothing truncates; it does not switch to TCP, which the phone may not listen on).
    fn note_sdp_over_udp(&mut self, endpoint: &str, method: &str, sdp: usize) {
        if sdp <= UDP_SDP_LIMIT {
            return;
        }
        let message = self.actions.iter().rev().find_map(|a| match a {
            Action::Send { request, .. } => Some(request.len()),
            _ => None,
        });
        let detail = format!(
            "sdp_bytes={sdp} message_bytes={} method={method} endpoint=\"{endpoint}\" transport=UDP",
            message.unwrap_or(0)
        );
        let note = Note::sdp_over_udp(&self.trunk.fqdn, &self.call_id, detail);
        self.actions.push(note);
    }

    /// The answer to the SBC's new offer: from the session it talks to ([`LegMedia`]),
    /// or a SIP endpoint's last SDP on a bypass trunk (relaying the offer to the
    /// endpoint is not built yet).
    fn answer_reoffer(&self, i: usize, msg: &Message<'_>) -> Result<ReAnswer, Rejection> {
        match self.sbc_media.answer(msg.body(), &self.settings.codecs)? {
            Some(a) => Ok(a),
            None => Ok(ReAnswer {
                body: self.fork_answer(i).unwrap_or_default(),
                answer: None,
            }),
        }
    }

    /// DR-FORK-5: 200 with SDP on the fork's To tag; every other fork is cancelled.
    fn accept(&mut self, i: usize, now: Instant) {
        let Some(answer) = self.fork_answer(i) else {
            self.forks[i].state = ForkState::Failed(488);
            return self.check_all_failed();
        };
        let tag = self.forks[i].to_tag;
        // DR-ST-1: non-bypass calls always carry a session timer.
        let mut extra: Vec<(&str, String)> = Vec::new();
        if let Some(n) = &self.session_offer {
            extra.push(("Supported", "timer".into()));
            extra.push(("Session-Expires", n.session_expires_header()));
            if n.require {
                extra.push(("Require", "timer".into()));
            }
        }
        let extra_ref: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if !self.caller.accept(tag, &answer, &extra_ref, now) {
            self.cancel_forks(None);
            self.fail_call(Rejection::new(Diagnostic::Malformed(
                "Cannot Create Dialog",
            )));
            return;
        }
        self.forks[i].state = ForkState::Answered;
        self.sbc_media.session = self.fork_session(i);
        if let (ForkKind::Sip(leg), Some(offer)) = (&self.forks[i].kind, &self.forks[i].offer) {
            let own = std::str::from_utf8(offer).ok();
            self.endpoint_media.session =
                own.and_then(|o| crate::sdp::Continuity::of_offer(o, leg.sdp().map(|b| &b[..])));
        }
        self.cancel_forks(Some(i));
        if let Some(n) = self.session_offer.take() {
            self.session = Some(SessionTimer::new(n, now));
        }
        self.phase = Phase::Answered(i);
        self.actions
            .push(Action::Progress(router::CallState::Answered));
        self.outcome = Some(Outcome {
            status: 200,
            code: None,
            reason: format!("answered by {}", self.forks[i].name),
        });
        info!(fork = %self.forks[i].name, after = ?self.now.saturating_duration_since(self.started), "call accepted -> 200 OK");
    }

    /// Stops every live fork except `keep`. SIP forks get CANCEL with
    /// `Reason: SIP;cause=200;text="Call completed elsewhere"` when another answered
    /// (DR-FORK-5).
    fn cancel_forks(&mut self, keep: Option<usize>) {
        let reason = match keep {
            Some(_) => "SIP;cause=200;text=\"Call completed elsewhere\"",
            None => "SIP;cause=487;text=\"Request terminated\"",
        };
        for i in 0..self.forks.len() {
            if Some(i) == keep || !self.forks[i].state.is_live() {
                continue;
            }
            self.forks[i].state = ForkState::Cancelled;
            if let ForkKind::Sip(leg) = &mut self.forks[i].kind {
                leg.cancel(reason, &mut self.requests.ids(), &mut self.actions);
            }
        }
        self.track_fire_and_forget();
    }

    /// BYE to fork `i`'s endpoint, if it has a confirmed dialog.
    fn bye_fork(&mut self, i: usize, closing: bool) {
        let id = self.next_id();
        let sent = match &mut self.forks[i].kind {
            ForkKind::Sip(leg) => leg.bye(id, &[], &mut self.actions),
            _ => false,
        };
        if sent {
            let purpose = if closing {
                Purpose::Closing { to_sbc: false }
            } else {
                Purpose::Fire
            };
            self.requests.push(id, purpose);
        }
    }

    /// DR-FORK-7: when no fork is live any more, the best failure goes to the SBC.
    fn check_all_failed(&mut self) {
        if self.phase != Phase::Ringing || self.forks.iter().any(|f| f.state.is_live()) {
            return;
        }
        let codes: Vec<u16> = self
            .forks
            .iter()
            .filter_map(|f| match f.state {
                ForkState::Failed(c) if c >= 400 => Some(c),
                _ => None,
            })
            .collect();
        let status = best_final(&codes).unwrap_or(480);
        // DR-FWD-1: busy everywhere (486, 600) or otherwise unreachable forwards, when
        // the user has the rule; a decline (603, other 6xx) does not.
        let rule = match status {
            486 | 600 => self
                .forwarding
                .as_mut()
                .and_then(|f| f.busy.take())
                .map(|t| (forward::Cause::Busy, t)),
            600..=699 => None,
            _ => self
                .forwarding
                .as_mut()
                .and_then(|f| f.unavailable.take())
                .map(|t| (forward::Cause::Unavailable, t)),
        };
        if let Some((cause, target)) = rule {
            return self.forward(cause, target);
        }
        let fails: Vec<String> = self
            .forks
            .iter()
            .filter_map(|f| match f.state {
                ForkState::Failed(c) => Some(format!("{}={c}", f.name)),
                _ => None,
            })
            .collect();
        self.fail_call(
            Rejection::new(Diagnostic::AllForksFailed)
                .with_status(status)
                .with("forks", fails.join(",")),
        );
    }

    /// Ends the call before an answer with a final failure to the caller.
    fn fail_call(&mut self, r: Rejection) {
        let e = r.entry();
        self.outcome = Some(Outcome {
            status: r.status(),
            code: Some(e.code),
            reason: e.text.to_owned(),
        });
        let local = self.caller.local.clone();
        let teller = Teller {
            style: crate::sip::build::Style::Rfc3261,
            source: local.host(),
            server: local.server(),
            ms_diagnostics: self.settings.ms_diagnostics,
            flow: &self.call_id,
            allow: DIALOG_ALLOW,
        };
        // DR-ERR-2: the task remembers the decline right after this event, while the 603
        // is still on its way through the transaction layer to the SBC.
        if let (603, Some(invite)) = (r.status(), self.caller.invite()) {
            self.actions.push(Action::Declined {
                sbc: self.sbc.clone(),
                invite: invite.clone(),
            });
        }
        self.caller.reject(&r, &teller);
        self.phase = Phase::Done;
    }

    // --- ending -------------------------------------------------------------------------

    /// Ends an answered call: BYE to the SBC (`to_sbc`) with the rejection's Reason and
    /// ms-diagnostics when drhub ends it, and to the answering endpoint (`to_fork`).
    /// The answered fork `i` ended the call (`how`: how it said so, for the record):
    /// BYE to the SBC.
    fn endpoint_hung_up(&mut self, i: usize, how: &str) {
        let name = &self.forks[i].name;
        info!(fork = %name, "endpoint hung up{how}; BYE to the SBC");
        self.outcome = Some(Outcome {
            status: 200,
            code: None,
            reason: format!("ended by endpoint {name}{how}"),
        });
        self.hang_up(None, true, false);
    }

    /// The operator ended the call through the control API: a ringing call is declined
    /// as if every endpoint of the user declined it (603, the CANCELs to the forks); an
    /// answered one gets a BYE both ways, as when the Teams user hangs up.
    fn operator_hang_up(&mut self) {
        match self.phase {
            Phase::Ringing => {
                info!("ended through the control API while ringing: 603 to the SBC");
                self.cancel_forks(None);
                self.fail_call(Rejection::new(Diagnostic::AllForksFailed).with_status(603));
            }
            Phase::Answered(_) | Phase::Up(_) => {
                info!("ended through the control API; BYE to the SBC and the endpoint");
                self.outcome = Some(Outcome {
                    status: 200,
                    code: None,
                    reason: "ended through the control API".to_owned(),
                });
                self.hang_up(None, true, true);
            }
            Phase::Ending | Phase::Done => {}
        }
    }

    fn hang_up(&mut self, reason: Option<&Rejection>, to_sbc: bool, to_fork: bool) {
        if let Some(r) = reason {
            let e = r.entry();
            self.outcome = Some(Outcome {
                status: 200,
                code: Some(e.code),
                reason: e.text.to_owned(),
            });
        }
        let fork = match self.phase {
            Phase::Answered(n) | Phase::Up(n) => Some(n),
            _ => None,
        };
        // A transfer target still ringing (DR-XFER-2) is cancelled.
        if !std::mem::take(&mut self.transfer_legs).is_empty() {
            self.cancel_forks(None);
        }
        self.end_relays();
        self.phase = Phase::Ending;
        self.session = None;
        self.orphan_at = None;
        if to_fork {
            if let Some(i) = fork {
                self.bye_fork(i, true);
            }
        }
        if to_sbc {
            let mut extra: Vec<(&str, String)> = Vec::new();
            if let Some(r) = reason {
                extra.push(("Reason", r.reason_header(&correlation_id())));
                if self.settings.ms_diagnostics {
                    extra.push(("ms-diagnostics", r.ms_diagnostics(self.teller_source())));
                }
            }
            let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let id = self.next_id();
            if let Some(bye) = self.sbc_request("BYE", &extra, None) {
                self.send_sbc(id, bye, Purpose::Closing { to_sbc: true });
            }
        }
        self.settle_end();
    }

    /// A re-INVITE or UPDATE still waiting for the other peer gets its final response
    /// when the dialog it was in ends (RFC 3261 §15.1.2).
    fn end_relays(&mut self) {
        for (_, r) in self.relays.drain(..) {
            let m = r.request.message();
            reply(
                r.tx,
                &m,
                487,
                "Request Terminated",
                &self.caller.local,
                &[],
                None,
            );
        }
    }

    /// The call is over once no BYE that ends it is still in flight.
    fn settle_end(&mut self) {
        let closing = self.requests.any(|p| matches!(p, Purpose::Closing { .. }));
        self.phase = if closing { Phase::Ending } else { Phase::Done };
    }

    // --- requests to the SBC -----------------------------------------------------------

    /// Builds a request in the SBC's dialog (DR-NH-4).
    fn sbc_request(
        &mut self,
        method: &str,
        extra: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Option<Bytes> {
        let d = self.caller.dialog_mut()?;
        Some(d.request(method, extra, body.map(|b| ("application/sdp", b))))
    }

    /// Where the SBC's dialog sends requests (DR-NH-1, DR-NH-5): any connection to it,
    /// or a new one to the top Record-Route's (else the Contact's) FQDN, at the trunk's
    /// `address` when it names one.
    fn sbc_route(&self) -> Option<Route> {
        self.sbc_route_via(self.caller.dialog()?.next_hop()?)
    }

    /// The route to the caller's SBC through `hop` (see [`Call::sbc_route`]).
    fn sbc_route_via(&self, hop: dialog::NextHop) -> Option<Route> {
        let (transport, insecure_ip, sbc) = match &self.caller.peer {
            Peer::Sbc { fqdn } => {
                // DR-VAL-3/4 made sure the hop's FQDN is on the certificate; an IP (not
                // supported, DR-NH-1) falls back to the trunk FQDN.
                let name = if hop.host.parse::<std::net::IpAddr>().is_ok() {
                    fqdn.to_string()
                } else {
                    hop.host.clone()
                };
                (crate::sip::Transport::Tls, None, name)
            }
            Peer::InsecureSbc { ip } => (
                crate::sip::Transport::Tcp,
                Some(*ip),
                self.trunk.fqdn.to_string(),
            ),
            Peer::Endpoint { .. } => return None,
        };
        Some(Route::Sbc {
            target: Target {
                sbc,
                host: hop.host,
                port: hop.port.unwrap_or(self.trunk.port),
                address: self.trunk.address,
                transport,
                insecure_ip,
            },
            listener: self.listener.clone(),
        })
    }

    fn send_sbc(&mut self, id: ReqId, request: Bytes, purpose: Purpose) {
        match self.sbc_route() {
            Some(route) => {
                self.requests.push(id, purpose);
                self.actions.push(Action::Send { id, request, route });
            }
            None => warn!("no route to the SBC in this dialog; request not sent"),
        }
    }

    /// DR-ST-2: drhub refreshes: UPDATE without SDP when the SBC allows it, else a
    /// re-INVITE offering the call's SDP again.
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
        let invite = !self.caller.allows_update();
        // The SDP the SBC has now: after a hold, the held one (RFC 3264 §8).
        let body = match self.phase {
            Phase::Answered(i) | Phase::Up(i) if invite => {
                self.sbc_media.current().or_else(|| self.fork_answer(i))
            }
            _ => None,
        };
        let method = if invite { "INVITE" } else { "UPDATE" };
        debug!(method, "session refresh to the SBC");
        let id = self.next_id();
        if let Some(req) = self.sbc_request(method, &extra, body.as_deref()) {
            self.send_sbc(id, req, Purpose::Refresh { headers, invite });
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
                return self.refresh_failed(408, now);
            }
            ClientEvent::Provisional(_) | ClientEvent::Additional2xx(_) => return,
        };
        let msg = resp.message();
        let code = msg.status_code().unwrap_or(500);
        if (200..300).contains(&code) {
            if invite {
                self.ack_sbc_2xx(&msg);
            }
            if let Some(d) = self.caller.dialog_mut() {
                d.refresh_target(&msg);
            }
            let n = negotiate_uac(
                &ResponseTimers {
                    require_timer: msg
                        .values(HeaderName::Require)
                        .any(|v| v.trim().eq_ignore_ascii_case("timer")),
                    session_expires: msg.header(HeaderName::SessionExpires),
                },
                &headers,
            );
            debug!(interval = n.interval, refresher = %n.refresher, "session refreshed");
            if let Some(s) = &mut self.session {
                s.refreshed(n, now);
            }
        } else if code == 422 {
            match on_422(msg.header(HeaderName::MinSE), &headers) {
                Ok(retry) => self.send_refresh(Some(retry)),
                Err(e) => {
                    warn!(error = %e, "the SBC refused the session refresh (422)");
                    self.refresh_failed(422, now);
                }
            }
        } else {
            self.refresh_failed(code, now);
        }
    }

    /// ACKs the SBC's 2xx to a re-INVITE of drhub's (RFC 3261 §13.2.2.4), along the
    /// dialog's route set.
    fn ack_sbc_2xx(&mut self, msg: &Message<'_>) {
        if let Some(d) = self.caller.dialog() {
            let cseq = msg.cseq().and_then(Result::ok).map_or(1, |c| c.seq);
            let ack = d.ack(cseq);
            if let Some(route) = self.sbc_route() {
                self.actions.push(Action::Stateless { bytes: ack, route });
            }
        }
    }

    /// The Teams user transfers the call (DR-XFER-1, DR-XFER-3: option 2 when the SBC's
    /// INVITE listed REFER in Allow): a REFER to the SBC with Direct Routing's
    /// `Refer-To` and `Referred-By`; its NOTIFYs tell how the transfer goes.
    fn transfer(&mut self, order: TransferOrder) {
        let TransferOrder {
            target,
            via,
            consultation,
        } = order;
        if !matches!(self.phase, Phase::Up(_) | Phase::Answered(_)) {
            info!("transfer ignored: the call is not up");
            return;
        }
        if let Some(t) = &self.transfer {
            warn!(pending = ?t, "transfer ignored: one is under way");
            return;
        }
        self.consultation = consultation.map(Box::new);
        if !self.allows_refer {
            return self.transfer_as_referee(target, via);
        }
        let proxy = self.caller.local.host().to_owned();
        let refer = transfer::Refer::new(
            &target,
            &proxy,
            &self.tenant,
            &self.user,
            self.consultation.as_deref(),
        );
        let extra = [
            ("Refer-To", refer.refer_to.as_str()),
            ("Referred-By", refer.referred_by.as_str()),
        ];
        let id = self.next_id();
        if let Some(req) = self.sbc_request("REFER", &extra, None) {
            info!(target = ?target, consultative = self.consultation.is_some(), "transfer: REFER to the SBC (DR-XFER-3)");
            let pending = refer.pending(&target, &self.user, &self.call_id);
            self.actions.push(Action::ExpectTransfer(Box::new(pending)));
            self.transfer = Some(target);
            if self.trunk.refer_fallback {
                self.refer_fallback = via;
            }
            self.send_sbc(id, req, Purpose::Refer);
        }
    }

    /// The call's dialog with the SBC, for a consultative transfer of another call of the
    /// user's that replaces it (RFC 5589 §7); `None` until answered.
    fn consultation(&self) -> Option<transfer::Consultation> {
        if !matches!(self.phase, Phase::Up(_) | Phase::Answered(_)) {
            return None;
        }
        let d = self.caller.dialog()?;
        Some(transfer::Consultation {
            call: self.call_id.to_string(),
            replaces: transfer::Replaces::of(d),
            trunk: self.trunk.fqdn.clone(),
            number: self.caller_id.number.clone(),
        })
    }

    /// DR-XFER-1, DR-XFER-2: the SBC's INVITE listed no REFER, so drhub carries the
    /// transfer out itself (option 1, RFC 3892 §7.1): an INVITE with `Referred-By` (the
    /// transferring user) to a number through the SBC, or the target user's clients
    /// rung; when one answers, drhub ends the Teams user's leg and the caller talks to
    /// the target. A number's leg on a media-bypass call needs the Teams client's SDP
    /// restarted (DR-ICE-1); a user's is not offered there (Microsoft supports no
    /// transfer without REFER in media bypass).
    fn transfer_as_referee(&mut self, target: transfer::Target, via: Vec<ForkPlan>) {
        let restartable = match self.phase {
            Phase::Up(n) | Phase::Answered(n) => matches!(
                &self.forks[n].kind,
                ForkKind::Script {
                    answer: Some(_),
                    ..
                }
            ),
            _ => false,
        };
        let consultation = self.consultation.take().map(|c| *c);
        match &target {
            transfer::Target::User(_) if self.bypass => {
                warn!(target = ?target, "the SBC lists no REFER and the call is media bypass: Microsoft supports no transfer without REFER in media bypass; the call goes on");
                return;
            }
            transfer::Target::Number(_) if self.bypass && !restartable => {
                warn!(target = ?target, "a transfer as referee of a media-bypass call answered by a SIP endpoint needs its SDP restarted (DR-ICE-1), which is built for Teams clients only; the call goes on");
                return;
            }
            _ => {}
        }
        if via.is_empty() {
            warn!(target = ?target, "the SBC lists no REFER and drhub as referee (DR-XFER-2) has no leg to the target (no route, or no client to ring); the call goes on");
            return;
        }
        let proxy = self.caller.local.host().to_owned();
        let refer = transfer::Refer::new(
            &target,
            &proxy,
            &self.tenant,
            &self.user,
            consultation.as_ref(),
        );
        info!(target = ?target, consultative = consultation.is_some(), "transfer: the SBC lists no REFER; drhub calls the target as referee (DR-XFER-2)");
        let at = self.forks.len();
        let callee = match &target {
            transfer::Target::User(u) | transfer::Target::Number(u) => u.clone(),
        };
        for plan in via {
            match plan {
                ForkPlan::Pstn {
                    name,
                    number,
                    gateway,
                    offer,
                } => self.start_pstn_fork(
                    name,
                    &number,
                    &gateway,
                    offer,
                    PstnFork::Transfer(Box::new(transfer::Transferred {
                        referred_by: refer.referred_by.clone(),
                        consultation: consultation.clone(),
                    })),
                ),
                other => {
                    let from = self.caller_from.clone().unwrap_or_default();
                    self.start_forks(vec![other], &from, &callee);
                }
            }
        }
        self.transfer_legs = (at..self.forks.len())
            .filter(|&i| self.forks[i].state.is_live())
            .collect();
        if self.transfer_legs.is_empty() {
            warn!(target = ?target, "no leg to the transfer target could be started; the call goes on");
        } else {
            self.transfer = Some(target);
        }
    }

    /// DR-ICE-1: a bypass call moves from the Teams client (fork `old`) to a peer that
    /// cannot do bypass: the SBC gets a re-INVITE with the client's SDP as it last was but
    /// new `ice-ufrag`/`ice-pwd` and the media processor's candidates (RFC 5245
    /// §9.1.1.1), the `o=` version one on.
    fn insert_media_processor(&mut self, old: usize) {
        let ForkKind::Script {
            answer: Some(previous),
            ..
        } = &self.forks[old].kind
        else {
            return;
        };
        let (address, port) = self.media.media_address();
        let restarted = match crate::sdp::ice_restart(previous, address, port) {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "the ICE restart SDP could not be made (DR-ICE-1)");
                return;
            }
        };
        let body = Bytes::copy_from_slice(restarted.as_bytes());
        let next = Box::new(restarted.continuity().clone());
        let id = self.next_id();
        if let Some(req) = self.sbc_request("INVITE", &[], Some(&body)) {
            info!("re-INVITE to the SBC: the media processor takes the media over, ICE restarts (DR-ICE-1)");
            self.send_sbc(id, req, Purpose::IceRestart { next });
        }
    }

    /// A transfer leg's progress (DR-XFER-2): the first 2xx completes the transfer (the
    /// other legs are cancelled, the Teams user's leg ends, the call goes on with the
    /// target), the last failure leaves the call as it was.
    fn on_transfer_leg_event(&mut self, i: usize, ev: LegEvent) {
        match ev {
            LegEvent::Answered(_) => {
                let (Phase::Up(old) | Phase::Answered(old)) = self.phase else {
                    return;
                };
                info!(fork = %self.forks[i].name, "the transfer target answered: the Teams user's leg ends (DR-XFER-2)");
                if self.bypass {
                    self.insert_media_processor(old);
                }
                self.forks[i].state = ForkState::Answered;
                for k in std::mem::take(&mut self.transfer_legs) {
                    if k != i && self.forks[k].state.is_live() {
                        self.forks[k].state = ForkState::Cancelled;
                        if let ForkKind::Sip(leg) = &mut self.forks[k].kind {
                            let reason = "SIP;cause=200;text=\"Call completed elsewhere\"";
                            leg.cancel(reason, &mut self.requests.ids(), &mut self.actions);
                        }
                    }
                }
                self.track_fire_and_forget();
                self.bye_fork(old, false);
                self.forks[old].state = ForkState::Cancelled;
                self.phase = Phase::Up(i);
                self.endpoint_media = LegMedia::new(MediaPeer::Endpoint);
                self.transferred_to = self.transfer.take().map(|t| match t {
                    transfer::Target::Number(n) | transfer::Target::User(n) => n.into(),
                });
            }
            LegEvent::Failed(_) | LegEvent::Gone => {
                let code = match ev {
                    LegEvent::Failed(code) => code,
                    _ => 408,
                };
                warn!(fork = %self.forks[i].name, code, "a transfer leg failed");
                self.forks[i].state = ForkState::Failed(code);
                self.transfer_legs.retain(|&k| k != i);
                if self.transfer_legs.is_empty() {
                    warn!("the transfer target refused or did not answer; the call goes on");
                    self.transfer = None;
                }
            }
            LegEvent::Ringing | LegEvent::EarlyMedia(_) => {
                debug!(fork = %self.forks[i].name, "the transfer target rings");
            }
            _ => {}
        }
    }

    /// The SBC's answer to the REFER: 202 (or another 2xx) accepts the transfer, whose
    /// NOTIFYs follow; anything else leaves the call as it was.
    fn on_refer_answer(&mut self, event: ClientEvent) {
        let code = match &event {
            ClientEvent::Final(r) => r.message().status_code().unwrap_or(500),
            _ => 408,
        };
        if (200..300).contains(&code) {
            info!(code, "the SBC accepted the REFER");
            self.refer_fallback = Vec::new();
            return;
        }
        let note = Note::refer_refused(&self.trunk.fqdn, &self.call_id, code);
        self.actions.push(note);
        let target = self.transfer.take();
        let via = std::mem::take(&mut self.refer_fallback);
        match target {
            Some(target) if !via.is_empty() => {
                warn!(code, "the SBC refused the REFER; refer_fallback: drhub carries the transfer out as referee (DR-XFER-2)");
                self.transfer_as_referee(target, via);
            }
            _ => {
                warn!(code, "the SBC refused the REFER; the call goes on");
                self.consultation = None;
            }
        }
    }

    /// A NOTIFY of the transfer (RFC 3515 §2.4.5): answered 200; its sipfrag's 2xx ends
    /// drhub's leg with BYE (the SBC has the transfer target now), a failure leaves the
    /// call up.
    fn on_notify(&mut self, tx: ServerTx, msg: &Message<'_>) {
        reply(tx, msg, 200, "OK", &self.caller.local, &[], None);
        let Some(target) = self.transfer.clone() else {
            debug!("NOTIFY outside a transfer; answered 200");
            return;
        };
        match transfer::sipfrag_status(msg.body()) {
            Some(code) if code < 200 => debug!(code, "transfer under way"),
            Some(code) if code < 300 => {
                info!(target = ?target, "transfer done (sipfrag {code}); BYE to the SBC and the endpoint");
                self.transfer = None;
                self.outcome = Some(Outcome {
                    status: 200,
                    code: None,
                    reason: match &target {
                        transfer::Target::Number(n) | transfer::Target::User(n) => {
                            format!("transferred to {n}")
                        }
                    },
                });
                self.hang_up(None, true, true);
            }
            Some(code) => {
                warn!(code, "the transfer failed (sipfrag); the call goes on");
                let note = Note::transfer_failed(&self.trunk.fqdn, &self.call_id, code);
                self.actions.push(note);
                self.transfer = None;
            }
            None => warn!("NOTIFY without a sipfrag status line; answered 200"),
        }
    }

    /// A re-INVITE of drhub's to the SBC (a refresh, a hold) is out.
    fn reinvite_pending(&self) -> bool {
        self.requests.any(|p| {
            matches!(
                p,
                Purpose::Refresh { invite: true, .. }
                    | Purpose::Hold { .. }
                    | Purpose::Relay
                    | Purpose::IceRestart { .. }
            )
        })
    }

    /// A relayed re-INVITE or UPDATE was answered by the peer it went to: the answer
    /// goes back to the one that sent it (2xx with the SDP; a failure with its status),
    /// a re-INVITE's 2xx is ACKed, and both dialogs' targets move on a 2xx.
    fn on_relay_answer(&mut self, relay: Relay, event: ClientEvent) {
        let Relay {
            tx,
            request,
            to_endpoint,
        } = relay;
        let asked = request.message();
        let fork = match self.phase {
            Phase::Answered(n) | Phase::Up(n) => n,
            _ => return drop(tx),
        };
        let local = match (&self.forks[fork].kind, to_endpoint) {
            (_, true) => self.caller.local.clone(),
            (ForkKind::Sip(leg), false) => leg.local.clone(),
            _ => return drop(tx),
        };
        let Some((tx, resp)) = relayed_2xx(tx, &asked, &local, event) else {
            return;
        };
        let msg = resp.message();
        let invite = asked.method() == Some(Method::Invite);
        if to_endpoint {
            if let ForkKind::Sip(leg) = &mut self.forks[fork].kind {
                if invite {
                    leg.reinvite_answered(&msg, &mut self.actions);
                }
            }
            if let Some(d) = self.caller.dialog_mut() {
                d.refresh_target(&asked);
            }
        } else {
            if invite {
                self.ack_sbc_2xx(&msg);
            }
            if let Some(d) = self.caller.dialog_mut() {
                d.refresh_target(&msg);
            }
            if let ForkKind::Sip(leg) = &mut self.forks[fork].kind {
                if let Some(d) = leg.dialog_mut() {
                    d.refresh_target(&asked);
                }
            }
        }
        let body = (!msg.body().is_empty()).then(|| msg.body());
        let kept = leg::reply_200(tx, &asked, &local, body, (self.now, self.settings.t1));
        if kept.is_some() {
            self.kept_2xx = kept.map(Box::new);
        }
    }

    /// DR-HOLD-2: the Teams user holds or resumes an answered call.
    fn teams_hold(&mut self, hold: bool) {
        if !matches!(self.phase, Phase::Up(_)) {
            info!(hold, "hold or resume ignored: the call is not up");
            return;
        }
        if self.reinvite_pending() {
            warn!(
                hold,
                "hold or resume not sent: a re-INVITE of drhub's is pending"
            );
            return;
        }
        if let TeamsHold::Offer { body, next } = self.sbc_media.teams_hold(hold, &mut self.actions)
        {
            let id = self.next_id();
            if let Some(req) = self.sbc_request("INVITE", &[], Some(&body)) {
                self.send_sbc(id, req, Purpose::Hold { hold, next });
            }
        }
    }

    /// The SBC's final answer to a hold or resume re-INVITE: a 2xx is ACKed, refreshes
    /// the dialog's target and gives its SDP; anything else its status (408 for none).
    fn hold_answered(&mut self, event: ClientEvent) -> Result<Bytes, u16> {
        let ClientEvent::Final(resp) = event else {
            return Err(408);
        };
        let msg = resp.message();
        let code = msg.status_code().unwrap_or(500);
        if !(200..300).contains(&code) {
            return Err(code);
        }
        self.ack_sbc_2xx(&msg);
        if let Some(d) = self.caller.dialog_mut() {
            d.refresh_target(&msg);
        }
        Ok(Bytes::copy_from_slice(msg.body()))
    }

    fn refresh_failed(&mut self, status: u16, now: Instant) {
        let expire = self
            .session
            .as_mut()
            .and_then(|s| s.refresh_failed(status, now));
        if expire == Some(session_timer::Action::Expire) {
            let r = Rejection::new(Diagnostic::SessionExpired);
            warn!(
                status,
                "the session refresh failed; ending the call (DR-ST-2)"
            );
            // A 481 means the SBC has no such dialog any more: a BYE would only get 481.
            self.hang_up(Some(&r), status != 481, true);
        }
    }

    fn next_id(&mut self) -> ReqId {
        self.requests.next_id()
    }

    /// The index keys of the call's UAC legs (the task unregisters them at the end).
    pub fn leg_keys(&self) -> Vec<LegKey> {
        self.forks
            .iter()
            .filter_map(|f| match &f.kind {
                ForkKind::Sip(leg) => Some(LegKey::new(leg.call_id(), leg.local_tag().as_str())),
                _ => None,
            })
            .collect()
    }

    /// The UAS leg's state, for the task wrapper's bookkeeping.
    pub fn answered(&self) -> bool {
        matches!(
            self.caller.state(),
            UasState::Accepted | UasState::Confirmed
        )
    }
}

/// The RFC 4028 view of a request's headers.
pub(crate) fn request_timers<'m>(msg: &Message<'m>) -> RequestTimers<'m> {
    let has = |h: HeaderName| {
        msg.values(h)
            .any(|v| v.trim().eq_ignore_ascii_case("timer"))
    };
    RequestTimers {
        supported_timer: has(HeaderName::Supported),
        require_timer: has(HeaderName::Require),
        session_expires: msg.header(HeaderName::SessionExpires),
        min_se: msg.header(HeaderName::MinSE),
    }
}

/// The UAS decision on an initial INVITE (DR-ST-1, DR-ST-3), for admission.
pub fn negotiate_invite(msg: &Message<'_>, cfg: &session_timer::Config) -> UasDecision {
    negotiate_uas(&request_timers(msg), cfg)
}

// --- the task -------------------------------------------------------------------------

/// Starts the call task: registers the call, runs it to its end, unregisters it.
pub fn spawn(hub: Arc<Hub>, settings: Arc<CallSettings>, new: NewCall, sbc_key: LegKey) {
    let (tx, rx) = inbox::inbox();
    let span =
        info_span!("call", call_id = %sbc_key.call_id(), tenant = %new.tenant, user = %new.user);
    let trunk = new.trunk.fqdn.clone();
    let peer = new.peer.clone();
    let received = new.received;
    let no = hub.calls.insert(
        sbc_key.clone(),
        tx.clone(),
        peer,
        router::CallFacts {
            tenant: &new.tenant,
            user: &new.user,
            trunk: new.trunk.fqdn.clone(),
            direction: router::CallDirection::Inbound,
            number: "",
        },
    );
    hub.calls.trunk_call_started(&trunk, new.trunk.max_sessions);
    let now = Instant::now();
    let mut call = Call::new(new, settings.clone(), now);
    let runner = Runner {
        hub: hub.clone(),
        inbox: tx,
        sbc_key,
        no,
    };
    tokio::spawn(
        async move {
            let mut runner = runner;
            let mut rx = rx;
            call.start();
            runner.hub.calls.metrics.invite_to_100(received.elapsed());
            runner.run(&mut call, &mut rx).await;
            let mut keys = call.leg_keys();
            keys.push(runner.sbc_key.clone());
            let (outcome, failure) = if call.handoff.is_some() {
                // DR-FWD: forwarded to a number; an outbound call carries the SBC's leg on.
                let Some(handoff) = call.into_handoff(runner.sbc_key.clone()) else {
                    return;
                };
                // Boxed: only forwarded calls pay for the outbound call's state.
                Box::pin(carry_on(&mut runner, &mut rx, settings, handoff, &mut keys)).await
            } else {
                let failure = call.take_failure();
                (call.outcome.clone(), failure)
            };
            runner.hub.calls.remove(no, &keys, outcome);
            runner.hub.calls.trunk_call_ended(&trunk);
            if let Some(mut f) = failure {
                if f.outcome().await == ServerOutcome::AckTimeout {
                    warn!("the SBC did not ACK the final response (Timer H)");
                }
            }
        }
        .instrument(span),
    );
}

/// Carries a call forwarded to a number on (DR-FWD): places the forwarded INVITE through
/// the forwarding user's voice routing as an [`outbound::Outbound`] call whose caller is
/// the SBC's leg, and runs it in the same task. A forward that cannot be placed (no
/// route, overload) fails the SBC's INVITE with the reason. Returns the outcome and the
/// caller's failed INVITE transaction; `keys` gets the outbound call's index keys.
async fn carry_on(
    runner: &mut Runner,
    rx: &mut inbox::Receiver<CallEvent>,
    settings: Arc<CallSettings>,
    mut h: forward::Handoff,
    keys: &mut Vec<LegKey>,
) -> (Option<Outcome>, Option<crate::transaction::Answered>) {
    let hub = runner.hub.clone();
    let invite = h.caller.leg.invite().cloned();
    let offer = invite
        .as_ref()
        .map(|i| Bytes::copy_from_slice(i.message().body()))
        .unwrap_or_default();
    let forward::CallerId {
        number: caller,
        display,
        private,
    } = invite
        .as_ref()
        .map(|i| forward::CallerId::of(&i.message()))
        .unwrap_or(forward::CallerId {
            private: true,
            ..Default::default()
        });
    let wanted = place::Request {
        user: h.user.clone(),
        number: h.target.clone(),
        private,
        ring_for: settings.ring_timeout,
        talk_for: None,
    };
    // The SBC's own offer goes on only when both trunks bypass the media processor.
    let planned = place::plan(&hub, &wanted, h.bypass.then_some(&offer));
    let (mut placement, _) = match planned {
        Ok(p) => p,
        Err(refused) => {
            let r = match refused {
                place::Refused::Unavailable(why) => {
                    Rejection::new(Diagnostic::Overloaded).with("detail", why)
                }
                other => Rejection::new(Diagnostic::NoRoute)
                    .with("number", h.target.clone())
                    .with(
                        "detail",
                        other.to_string().lines().last().unwrap_or("").to_owned(),
                    ),
            };
            warn!(to = %h.target, code = r.entry().code, "the forward cannot be placed; the caller gets the refusal");
            let local = h.caller.leg.local.clone();
            let call_id = h.caller.key.call_id().to_owned();
            let teller = Teller {
                style: crate::sip::build::Style::Rfc3261,
                source: local.host(),
                server: local.server(),
                ms_diagnostics: settings.ms_diagnostics,
                flow: &call_id,
                allow: DIALOG_ALLOW,
            };
            h.caller.leg.reject(&r, &teller);
            let e = r.entry();
            let outcome = Outcome {
                status: r.status(),
                code: Some(e.code),
                reason: format!("forward to {} failed: {}", h.target, e.text),
            };
            return (Some(outcome), h.caller.leg.take_failure());
        }
    };
    // The forwarded call shows the original caller (emulator choice, README).
    if let Some(n) = caller {
        placement.caller = n;
    }
    placement.display_name = display.unwrap_or_default();
    for g in &mut placement.gateways {
        if !h.bypass {
            // The media processor anchors the caller's media: it offers on every trunk.
            g.bypass = false;
            g.offer = None;
        }
    }
    let prefix = match &h.carry {
        forward::Carry::Forward(f) => format!("forwarded ({}) to {}", f.cause.rule(), h.target),
        forward::Carry::Transfer(t) => {
            if let Some(c) = &t.consultation {
                // Only the SBC that knows the consultation dialog can replace it.
                placement
                    .gateways
                    .sort_by_key(|g| !g.fqdn.eq_ignore_ascii_case(&c.trunk));
            }
            format!("transferred by {} to {}", h.user, h.target)
        }
    };
    placement.carried = Some(Box::new(h.carry));
    let first = placement
        .gateways
        .first()
        .map_or_else(|| Arc::from("-"), |g| g.fqdn.clone());
    info!(outbound_call_id = %placement.call_id, to = %placement.number, "forwarded call placed");
    let now = Instant::now();
    let last_request = h.last_request;
    let mut call = outbound::Outbound::new(placement, settings, now)
        .with_cancelled_forks(h.cancelled)
        .with_caller(h.caller)
        .with_requests_after(last_request)
        .with_outcome_prefix(prefix);
    runner.perform(Action::Index {
        key: call.key(),
        peer: Peer::Sbc { fqdn: first },
    });
    call.start(now);
    runner.run(&mut call, rx).await;
    keys.extend(call.leg_keys());
    let failure = call.take_failure();
    (call.outcome.clone(), failure)
}

/// A scripted consultative transfer (RFC 5589 §7): places the user's consultation call
/// to the number (an outbound call through their voice routing), waits until it is
/// answered, and tells the call to transfer to it. Gives up (logged; the call goes on)
/// when the consultation cannot be placed, is refused, or the call ended meanwhile.
async fn consult_and_transfer(hub: Arc<Hub>, plan: ConsultPlan) {
    let ring_for = hub.call_settings().ring_timeout;
    let req = place::Request {
        user: plan.user.clone(),
        number: plan.number.clone(),
        private: false,
        ring_for,
        // Replaced by the transfer; ended by the emulator if it never is.
        talk_for: Some(Duration::from_secs(3600)),
    };
    let placed = match place::place(&hub, &req) {
        Ok(p) => p,
        Err(e) => {
            let why = e.to_string();
            warn!(to = %plan.number, why = %why.lines().last().unwrap_or(""), "the consultation call cannot be placed; no transfer");
            return;
        }
    };
    info!(consultation = %placed.call_id, to = %placed.number, "consultation call placed (RFC 5589 §7)");
    let deadline = tokio::time::Instant::now() + ring_for + Duration::from_secs(1);
    let consultation = loop {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if !hub.calls.tell(&placed.call_id, CallEvent::Consult(tx)) {
            warn!(consultation = %placed.call_id, "the consultation call ended unanswered; no transfer");
            return;
        }
        if let Ok(Some(c)) = rx.await {
            break c;
        }
        if tokio::time::Instant::now() >= deadline {
            warn!(consultation = %placed.call_id, "the consultation call was not answered in time; no transfer");
            hub.calls.hang_up(&placed.call_id);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let dir = hub.directory();
    let via = plan
        .user
        .parse::<crate::config::SipAddress>()
        .ok()
        .and_then(|a| dir.find_user(&a))
        .and_then(|(_, u)| {
            let name = format!("transfer to {}", placed.number);
            router::pstn_fork(
                &hub,
                u,
                &placed.number,
                None,
                name,
                Some(&consultation.trunk),
            )
        })
        .into_iter()
        .collect();
    let order = TransferOrder {
        target: transfer::Target::Number(placed.number.clone()),
        via,
        consultation: Some(consultation),
    };
    if !hub
        .calls
        .tell(&plan.call, CallEvent::Transfer(Box::new(order)))
    {
        warn!(consultation = %placed.call_id, "the call to transfer ended; the consultation call ends too");
        hub.calls.hang_up(&placed.call_id);
    }
}

/// What the call task drives: an inbound [`Call`] or an [`outbound::Outbound`] call.
trait Machine {
    fn handle(&mut self, ev: CallEvent, now: Instant);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_timeout(&self) -> Option<Instant>;
    fn poll_action(&mut self) -> Option<Action>;
    fn is_done(&self) -> bool;
    /// Completes the call's record once it is done (before it is logged).
    fn finish(&mut self) {}
    fn outcome(&self) -> Option<&Outcome>;
}

impl Machine for Call {
    fn handle(&mut self, ev: CallEvent, now: Instant) {
        Call::handle(self, ev, now)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Call::handle_timeout(self, now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Call::poll_timeout(self)
    }
    fn poll_action(&mut self) -> Option<Action> {
        Call::poll_action(self)
    }
    fn is_done(&self) -> bool {
        Call::is_done(self)
    }
    fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }
    fn finish(&mut self) {
        // A transfer drhub carried out as referee shows in the record.
        if let (Some(t), Some(o)) = (self.transferred_to.take(), self.outcome.as_mut()) {
            o.reason = format!("transferred to {t} by drhub as referee; {}", o.reason);
        }
    }
}

impl Machine for outbound::Outbound {
    fn handle(&mut self, ev: CallEvent, now: Instant) {
        outbound::Outbound::handle(self, ev, now)
    }
    fn handle_timeout(&mut self, now: Instant) {
        outbound::Outbound::handle_timeout(self, now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        outbound::Outbound::poll_timeout(self)
    }
    fn poll_action(&mut self) -> Option<Action> {
        outbound::Outbound::poll_action(self)
    }
    fn is_done(&self) -> bool {
        outbound::Outbound::is_done(self)
    }
    fn finish(&mut self) {
        outbound::Outbound::finish(self)
    }
    fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }
}

/// Starts an outbound call's task (DR-OUT): registers it under its Call-ID and drhub's
/// From tag, sends the first attempt, runs it to its end, unregisters it.
pub fn spawn_outbound(
    hub: Arc<Hub>,
    settings: Arc<CallSettings>,
    placement: outbound::Placement,
    caller: Option<outbound::Caller>,
) {
    let (tx, rx) = inbox::inbox();
    let span = info_span!("call", call_id = %placement.call_id, tenant = %placement.tenant, user = %placement.user, direction = "outbound");
    let first = placement
        .gateways
        .first()
        .map_or_else(|| Arc::from("-"), |g| g.fqdn.clone());
    let peer = Peer::Sbc {
        fqdn: first.clone(),
    };
    let now = Instant::now();
    let mut call = outbound::Outbound::new(placement, settings, now);
    if let Some(c) = caller {
        call = call.with_caller(c);
    }
    let key = call.key();
    let no = hub.calls.insert(
        key.clone(),
        tx.clone(),
        peer,
        router::CallFacts {
            tenant: call.tenant(),
            user: call.user(),
            trunk: first,
            direction: router::CallDirection::Outbound,
            number: call.number(),
        },
    );
    let runner = Runner {
        hub: hub.clone(),
        inbox: tx,
        sbc_key: key,
        no,
    };
    tokio::spawn(
        async move {
            let mut runner = runner;
            let mut rx = rx;
            call.start(Instant::now());
            runner.run(&mut call, &mut rx).await;
            let outcome = call.outcome.clone();
            let keys = call.leg_keys();
            let failure = call.take_failure();
            drop(call);
            runner.hub.calls.remove(no, &keys, outcome);
            if let Some(mut f) = failure {
                if f.outcome().await == ServerOutcome::AckTimeout {
                    warn!("the endpoint did not ACK the final response (Timer H)");
                }
            }
        }
        .instrument(span),
    );
}

/// The tokio side of a call: feeds it events and timeouts, performs its actions.
struct Runner {
    hub: Arc<Hub>,
    inbox: CallSender,
    /// The caller leg's index key (the call knows its other legs').
    sbc_key: LegKey,
    /// The call's number in the call table.
    no: u64,
}

impl Runner {
    async fn run(&mut self, call: &mut impl Machine, rx: &mut inbox::Receiver<CallEvent>) {
        let mut due_in_a_row = 0u8;
        // One timer for the call's life, moved when the machine's deadline moves: a new
        // `Sleep` per event would register in and leave the timer wheel each time.
        let sleep = tokio::time::sleep(Duration::from_secs(86_400));
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        loop {
            while let Some(a) = call.poll_action() {
                self.perform(a);
            }
            if call.is_done() {
                call.finish();
                if let Some(o) = call.outcome() {
                    info!(status = o.status, code = ?o.code, reason = %o.reason, "call over");
                }
                return;
            }
            let deadline = call.poll_timeout();
            // A timer already due (a hang-up right after the answer) runs now, without a
            // trip through the timer wheel; a few in a row at most, so that a machine
            // whose deadline does not move still yields to the runtime.
            if let Some(d) = deadline {
                let now = Instant::now();
                if d <= now && due_in_a_row < 4 {
                    due_in_a_row += 1;
                    call.handle_timeout(now);
                    continue;
                }
            }
            due_in_a_row = 0;
            if deadline != armed {
                if let Some(d) = deadline {
                    sleep.as_mut().reset(tokio::time::Instant::from_std(d));
                }
                armed = deadline;
            }
            tokio::select! {
                ev = rx.recv() => call.handle(ev, Instant::now()),
                _ = &mut sleep, if armed.is_some() => call.handle_timeout(Instant::now()),
            }
        }
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::Index { key, peer } => {
                self.hub.calls.index(self.no, key, self.inbox.clone(), peer);
            }
            Action::Rest { sbc, for_ } => self.hub.rotation.rest(&sbc, for_, Instant::now()),
            Action::Progress(state) => self.hub.calls.set_state(self.no, state),
            Action::ExpectTransfer(t) => {
                let (correlation, pending) = *t;
                self.hub.calls.expect_transfer(correlation, pending);
            }
            Action::Conformance(n) => self.hub.conformance.record(
                &n.sbc,
                n.requirement,
                crate::observe::conformance::Severity::Nearly,
                n.what,
                &n.call_id,
                n.detail,
            ),
            Action::Declined { sbc, invite } => self.hub.conformance.refused(
                &sbc,
                &invite.message(),
                crate::observe::refusals::Refused::Declined,
            ),
            Action::Consult(plan) => {
                let task = consult_and_transfer(self.hub.clone(), *plan);
                tokio::spawn(task.instrument(tracing::Span::current()));
            }
            Action::Stateless { bytes, route } => match route {
                Route::Dest(d) => {
                    let _ = self.hub.layer.send_stateless(bytes, d);
                }
                Route::Sbc { target, .. } => {
                    // The ACK of a refresh: over an open connection (a new one would have
                    // been opened for the re-INVITE just answered).
                    match self.hub.connector().and_then(|c| c.find(&target)) {
                        Some(f) => {
                            let _ = self.hub.layer.send_stateless(bytes, Destination::Flow(f));
                        }
                        None => debug!("ACK not sent: no connection to the SBC"),
                    }
                }
            },
            Action::Send { id, request, route } => match route {
                Route::Dest(d) => self.send(id, request, d),
                Route::Sbc { target, listener } => {
                    let Some(connector) = self.hub.connector().cloned() else {
                        return self.undeliverable(id, ConnectError::NoCertificate);
                    };
                    if let Some(f) = connector.find(&target) {
                        return self.send(id, request, Destination::Flow(f));
                    }
                    // DR-NH-5: no connection: open one, off the call's task.
                    let hub = self.hub.clone();
                    let inbox = self.inbox.clone();
                    tokio::spawn(
                        async move {
                            match connector.find_or_connect(&target, Some(&listener)).await {
                                Ok(f) => {
                                    send_request(&hub, &inbox, id, request, Destination::Flow(f))
                                }
                                Err(error) => {
                                    let _ = inbox.send(CallEvent::Undeliverable {
                                        id,
                                        error: Arc::new(error),
                                    });
                                }
                            }
                        }
                        .in_current_span(),
                    );
                }
            },
        }
    }

    fn send(&self, id: ReqId, request: Bytes, dest: Destination) {
        send_request(&self.hub, &self.inbox, id, request, dest);
    }

    fn undeliverable(&self, id: ReqId, error: ConnectError) {
        let _ = self.inbox.send(CallEvent::Undeliverable {
            id,
            error: Arc::new(error),
        });
    }
}

fn send_request(hub: &Hub, inbox: &CallSender, id: ReqId, request: Bytes, dest: Destination) {
    let transport = dest.transport();
    let events = inbox.clone();
    let sent = hub.layer.send_request(request, dest, transport, move |ev| {
        let _ = events.send(CallEvent::Client {
            id,
            event: ev.event,
        });
    });
    if let Err(e) = sent {
        warn!(error = %e, "request not sent");
        let _ = inbox.send(CallEvent::Client {
            id,
            event: ClientEvent::TransportError,
        });
    }
}

/// A tag drhub generates (a fork's To tag, a proxy-generated response's To tag, a UAC
/// leg's From tag): 64 random bits as 16 lower-case hex digits, stored inline so that a
/// fork or leg keeps no allocation for it for the whole call.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag([u8; 16]);

impl Tag {
    /// A fresh random tag.
    pub fn random() -> Tag {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let v = fastrand::u64(..);
        let mut digits = [0u8; 16];
        for (i, d) in digits.iter_mut().enumerate() {
            *d = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
        }
        Tag(digits)
    }

    /// The tag as it goes on the wire.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a tag holds hex digits only")
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tag({})", self.as_str())
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tag_tests {
    use super::*;

    #[test]
    fn tags_are_sixteen_lower_case_hex_digits() {
        let a = Tag::random();
        let b = Tag::random();
        for t in [a, b] {
            assert_eq!(t.as_str().len(), 16);
            assert!(t
                .as_str()
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
            assert_eq!(t.to_string(), t.as_str());
        }
        assert_ne!(a, b, "64 random bits repeat");
    }
}
