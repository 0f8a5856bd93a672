//! Whole calls on a virtual clock: the real call machine and the real transaction layer,
//! no sockets. The SBC's INVITE enters the layer as bytes, the call's answers come out
//! of it as bytes, the requests the call originates come out as [`Action`]s, and time is
//! an `Instant` the test moves: a 60 s ring timeout or a 1800 s session takes no time.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::session_timer::{self, UasDecision};
use super::*;
use crate::config::{Outcome as ScriptOutcome, Script as ScriptConfig};
use crate::sip::build::Style;
use crate::sip::Transport;
use crate::transaction::{CoreEvent, LayerHandle, Output, Timers, TransactionLayer};
use crate::transport::{Direction, FlowHandle, FlowId, FlowInfo};

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
/// The media processor's answer to the INVITE's offer.
fn media_answer() -> crate::sdp::Answer {
    let offer = crate::sdp::Offer::parse(SDP.as_bytes()).expect("the test offer parses");
    let cfg = crate::sdp::MediaConfig::new("127.0.0.1".parse().expect("address"));
    crate::sdp::media_processor_answer(&offer, &cfg, 49152, 7).expect("answerable")
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// An SBC's INVITE through a record-routing SBC (two Record-Route entries).
fn invite(extra: &[&str]) -> String {
    let mut s = String::from(
        "INVITE sip:+18338006777@sip.pstnhub.microsoft.com:5061;user=phone SIP/2.0\r\n\
Via: SIP/2.0/TLS sbc1.adatum.biz:5061;branch=z9hG4bKvt1\r\n\
Record-Route: <sip:sbc1.adatum.biz:5061;transport=tls;lr>\r\n\
Record-Route: <sip:10.1.1.1:5060;lr>\r\n\
Max-Forwards: 70\r\n\
From: <sip:+17168712781@sbc1.adatum.biz;user=phone>;tag=sbc\r\n\
To: <sip:+18338006777@sip.pstnhub.microsoft.com;user=phone>\r\n\
Call-ID: vt-1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:+17168712781@sbc1.adatum.biz:5061;transport=tls>\r\n",
    );
    for e in extra {
        s.push_str(e);
        s.push_str("\r\n");
    }
    s.push_str(&format!(
        "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    ));
    s
}

fn stored(text: &str) -> Stored {
    Stored::new(Bytes::copy_from_slice(text.as_bytes())).expect("test message frames")
}

fn script(ring: f64, answer: Option<f64>, hangup: Option<f64>) -> ScriptConfig {
    ScriptConfig {
        ring_after: Some(secs(ring)),
        media_answer_after: None,
        outcome: answer.map(|a| (secs(a), ScriptOutcome::Answer)),
        hangup_after: hangup.map(secs),
        hold_after: None,
        hold_for: None,
        transfer_after: None,
        transfer_to: None,
        transfer_consultative: false,
        bypass: false,
    }
}

fn settings() -> CallSettings {
    CallSettings {
        t1: Duration::from_millis(500),
        t2: Duration::from_secs(4),
        ring_timeout: Duration::from_secs(60),
        ring_timeout_status: 480,
        ms_diagnostics: true,
        session: session_timer::Config::default(),
        orphan_timeout: Duration::from_secs(120),
        codecs: crate::sdp::Codec::defaults(),
    }
}

/// A flow that stands for the SBC's connection (only its identity is looked at).
fn sbc_source() -> Destination {
    let (tx, _rx) = mpsc::channel(1);
    let info = Arc::new(FlowInfo {
        id: FlowId::next(),
        peer: "192.0.2.10:5061".parse().expect("addr"),
        local: "127.0.0.1:5061".parse().expect("addr"),
        listener: "sip".into(),
        proxy: proxy(),
        transport: Transport::Tls,
        direction: Direction::Inbound,
        identity: None,
    });
    Destination::Flow(FlowHandle::new(info, tx, Default::default()))
}

fn proxy() -> LocalIdentity {
    LocalIdentity::new(
        "sip.pstnhub.microsoft.com",
        5061,
        Transport::Tls,
        "drhub-test",
        Style::Rfc3261,
    )
}

/// One call with the SBC on the other side of a real transaction layer.
struct Lab {
    layer: TransactionLayer<u32>,
    handle: LayerHandle<u32>,
    call: Call,
    t0: Instant,
    /// The virtual time of the last step.
    now: Instant,
    /// What the layer sent to the SBC, with the virtual time it was sent.
    wire: Vec<(Duration, String)>,
    /// The requests the call originated, with their time.
    sent: Vec<(Duration, ReqId, String)>,
}

struct Plan {
    forks: Vec<ForkPlan>,
    bypass: bool,
    invite_extra: Vec<&'static str>,
    settings: CallSettings,
    forwarding: Option<Box<ForwardRules>>,
}

impl Default for Plan {
    fn default() -> Plan {
        Plan {
            forks: vec![ForkPlan::Script {
                name: "desktop".into(),
                script: script(0.2, Some(2.0), None),
                answer: None,
            }],
            bypass: false,
            forwarding: None,
            invite_extra: Vec::new(),
            settings: settings(),
        }
    }
}

impl Lab {
    fn new(plan: Plan) -> Lab {
        let (mut layer, handle) = TransactionLayer::<u32>::new(Timers::default());
        let text = invite(&plan.invite_extra);
        handle
            .receive(stored(&text), 1, Transport::Tls)
            .expect("the layer takes the INVITE");
        let req = match poll(&mut layer) {
            Some(Output::Event(CoreEvent::Request(r))) => r,
            other => panic!("expected the INVITE, got {other:?}"),
        };
        let session = if plan.bypass {
            None
        } else {
            match negotiate_invite(&req.request.message(), &plan.settings.session) {
                UasDecision::Accept(n) => Some(n),
                other => panic!("{other:?}"),
            }
        };
        let t0 = Instant::now();
        let new = NewCall {
            tx: req.tx,
            invite: req.request,
            local: proxy(),
            peer: Peer::Sbc {
                fqdn: "sbc1.adatum.biz".into(),
            },
            listener: "sip".into(),
            sbc: "sbc1.adatum.biz".into(),
            tenant: "adatum".into(),
            user: "user1@adatum.biz".into(),
            caller: "<sip:+17168712781@sip.pstnhub.microsoft.com>".into(),
            callee: "user1@adatum.biz".into(),
            forks: plan.forks,
            bypass: plan.bypass,
            media_answer: media_answer(),
            voicemail_after: Duration::from_secs(5),
            session,
            trunk: TrunkRoute {
                fqdn: "sbc1.adatum.biz".into(),
                address: None,
                port: 5061,
                max_sessions: None,
                refer_fallback: false,
            },
            forwarding: plan.forwarding,
            keep_history: true,
            referee: Vec::new(),
            transfer_back: None,
            allows_refer: false,
            received: t0,
        };
        let mut call = Call::new(new, Arc::new(plan.settings), t0);
        call.start();
        let mut lab = Lab {
            layer,
            handle,
            call,
            t0,
            now: t0,
            wire: Vec::new(),
            sent: Vec::new(),
        };
        lab.collect();
        lab
    }

    /// Moves what the layer and the call produced into `wire` and `sent`.
    fn collect(&mut self) {
        let at = self.now - self.t0;
        while let Some(o) = poll(&mut self.layer) {
            if let Output::Transmit(t) = o {
                self.wire
                    .push((at, String::from_utf8_lossy(&t.bytes).into_owned()));
            }
        }
        while let Some(a) = self.call.poll_action() {
            match a {
                Action::Send { id, request, .. } => {
                    self.sent
                        .push((at, id, String::from_utf8_lossy(&request).into_owned()))
                }
                Action::Stateless { bytes, .. } => {
                    self.sent
                        .push((at, ReqId(0), String::from_utf8_lossy(&bytes).into_owned()))
                }
                Action::Index { .. }
                | Action::Rest { .. }
                | Action::Progress(_)
                | Action::ExpectTransfer(_)
                | Action::Consult(_)
                | Action::Conformance(_)
                | Action::Declined { .. } => {}
            }
        }
    }

    /// Runs every timer due up to `t` after the start, in order.
    fn run_until(&mut self, t: Duration) {
        let end = self.t0 + t;
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

    fn handle(&mut self, ev: CallEvent) {
        self.call.handle(ev, self.now);
        self.collect();
    }

    /// The responses to the INVITE so far, as (time, status line).
    fn responses(&self) -> Vec<(Duration, u16)> {
        self.wire
            .iter()
            .filter(|(_, w)| w.contains("CSeq: 1 INVITE"))
            .map(|(t, w)| (*t, w[8..11].parse().unwrap_or(0)))
            .collect()
    }

    fn last_response(&self, code: u16) -> String {
        self.wire
            .iter()
            .rev()
            .find(|(_, w)| w.starts_with(&format!("SIP/2.0 {code} ")))
            .map(|(_, w)| w.clone())
            .unwrap_or_else(|| panic!("no {code} in {:#?}", self.wire))
    }

    /// A request from the SBC in the call's dialog (its To tag: the 200's).
    fn sbc_sends(&mut self, method: &str, cseq: u32, to_tag: &str, extra: &[&str], body: &str) {
        let mut s = format!(
            "{method} sip:sip.pstnhub.microsoft.com:5061;transport=tls SIP/2.0\r\n\
Via: SIP/2.0/TLS sbc1.adatum.biz:5061;branch=z9hG4bK{method}{cseq}\r\n\
Max-Forwards: 70\r\n\
From: <sip:+17168712781@sbc1.adatum.biz;user=phone>;tag=sbc\r\n\
To: <sip:+18338006777@sip.pstnhub.microsoft.com;user=phone>;tag={to_tag}\r\n\
Call-ID: vt-1\r\n\
CSeq: {cseq} {method}\r\n\
Contact: <sip:+17168712781@sbc1.adatum.biz:5061;transport=tls>\r\n"
        );
        for e in extra {
            s.push_str(e);
            s.push_str("\r\n");
        }
        if body.is_empty() {
            s.push_str("Content-Length: 0\r\n\r\n");
        } else {
            s.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        }
        let kind = if method == "ACK" { "ACK" } else { "request" };
        self.handle
            .receive(stored(&s), 1, Transport::Tls)
            .expect("the layer takes the request");
        let ev = match poll(&mut self.layer) {
            Some(Output::Event(CoreEvent::Request(r))) => CallEvent::Request {
                tx: r.tx,
                request: r.request,
                source: sbc_source(),
            },
            Some(Output::Event(CoreEvent::Ack { request, .. })) => CallEvent::Ack { request },
            other => panic!("expected the {kind}, got {other:?}"),
        };
        self.handle(ev);
    }

    /// The SBC answers request `id` of the call with `code`.
    fn answer(&mut self, id: ReqId, code: u16, extra: &[&str]) {
        let req = self
            .sent
            .iter()
            .find(|(_, i, _)| *i == id)
            .map(|(_, _, r)| r.clone())
            .expect("the request was sent");
        let header = |name: &str| {
            req.lines()
                .find(|l| l.starts_with(&format!("{name}:")))
                .unwrap_or_default()
                .to_owned()
        };
        let mut s = format!(
            "SIP/2.0 {code} Whatever\r\n{}\r\n{}\r\n{}\r\n{}\r\n{}\r\n",
            header("Via"),
            header("From"),
            header("To"),
            header("Call-ID"),
            header("CSeq")
        );
        for e in extra {
            s.push_str(e);
            s.push_str("\r\n");
        }
        s.push_str("Contact: <sip:+17168712781@sbc1.adatum.biz:5061;transport=tls>\r\nContent-Length: 0\r\n\r\n");
        self.handle(CallEvent::Client {
            id,
            event: ClientEvent::Final(stored(&s)),
        });
    }

    fn sent_named(&self, method: &str) -> Vec<(Duration, ReqId, String)> {
        self.sent
            .iter()
            .filter(|(_, _, r)| r.starts_with(&format!("{method} ")))
            .cloned()
            .collect()
    }

    fn answered_tag(&self) -> String {
        let ok = self.last_response(200);
        ok.lines()
            .find(|l| l.starts_with("To:"))
            .and_then(|l| l.split("tag=").nth(1))
            .map(|t| t.trim().to_owned())
            .expect("the 200 has a To tag")
    }
}

/// One output of the layer if one is ready (the layer runs no timers these tests need).
fn poll(layer: &mut TransactionLayer<u32>) -> Option<Output<u32>> {
    let mut cx = Context::from_waker(Waker::noop());
    match layer.poll_next(&mut cx) {
        Poll::Ready(o) => Some(o),
        Poll::Pending => None,
    }
}

#[tokio::test(start_paused = true)]
async fn dr_fork_7_ring_timeout_fires_at_exactly_60_seconds() {
    let mut lab = Lab::new(Plan {
        forks: vec![ForkPlan::Script {
            name: "desktop".into(),
            script: script(0.2, None, None),
            answer: None,
        }],
        ..Plan::default()
    });
    lab.run_until(secs(120.0));
    assert_eq!(
        lab.responses(),
        vec![(secs(0.0), 100), (secs(0.2), 180), (secs(60.0), 480)]
    );
    assert!(lab.call.is_done());
    assert_eq!(lab.call.outcome.as_ref().map(|o| o.status), Some(480));
}

/// The responses up to the first 200 (the lab does not ACK: the 200 is retransmitted).
fn until_200(mut r: Vec<(Duration, u16)>) -> Vec<(Duration, u16)> {
    if let Some(i) = r.iter().position(|(_, c)| *c == 200) {
        r.truncate(i + 1);
    }
    r
}

/// DR-FWD-1, DR-FWD-3: the no-answer rule forwards exactly `no_answer_after` after the
/// INVITE, before the ring timeout: the ringing client is stopped, the caller hears 181
/// and the voicemail answers `voicemail_after` later.
#[tokio::test(start_paused = true)]
async fn dr_fwd_1_no_answer_forwards_to_voicemail_at_exactly_its_time() {
    let mut lab = Lab::new(Plan {
        forks: vec![ForkPlan::Script {
            name: "desktop".into(),
            script: script(0.2, None, None),
            answer: None,
        }],
        forwarding: Some(Box::new(ForwardRules {
            no_answer: Some((secs(20.0), Forward::Voicemail)),
            ..ForwardRules::default()
        })),
        ..Plan::default()
    });
    lab.run_until(secs(30.0));
    assert_eq!(
        until_200(lab.responses()),
        vec![
            (secs(0.0), 100),
            (secs(0.2), 180),
            (secs(20.0), 181),
            (secs(25.0), 200)
        ]
    );
    let r = lab.last_response(181);
    assert!(
        r.starts_with("SIP/2.0 181 Call Is Being Forwarded\r\n"),
        "{r}"
    );
}

/// DR-FWD-1: a forward to a user rings that user's clients from the forward on, each on
/// its own schedule: forwarded at 20 s by the no-answer rule, a client that rings after
/// 0.5 s and answers after 2 s rings at 20.5 s and answers at 22 s (not at once, as if
/// it had been rung with the call).
#[tokio::test(start_paused = true)]
async fn dr_fwd_1_a_forwarded_users_client_runs_its_script_from_the_forward() {
    let mut lab = Lab::new(Plan {
        forks: vec![ForkPlan::Script {
            name: "desktop".into(),
            script: script(0.2, None, None),
            answer: None,
        }],
        forwarding: Some(Box::new(ForwardRules {
            no_answer: Some((
                secs(20.0),
                Forward::User {
                    address: "user2@adatum.biz".into(),
                    forks: vec![ForkPlan::Script {
                        name: "user2 desktop".into(),
                        script: script(0.5, Some(2.0), None),
                        answer: None,
                    }],
                },
            )),
            ..ForwardRules::default()
        })),
        ..Plan::default()
    });
    lab.run_until(secs(30.0));
    assert_eq!(
        until_200(lab.responses()),
        vec![
            (secs(0.0), 100),
            (secs(0.2), 180),
            (secs(20.0), 181),
            (secs(20.5), 180),
            (secs(22.0), 200)
        ]
    );
}

/// DR-FWD-1: every client busy forwards by the busy rule; without one, the caller gets
/// the busy (DR-FORK-7).
#[tokio::test(start_paused = true)]
async fn dr_fwd_1_busy_forwards_only_with_the_rule() {
    for rule in [true, false] {
        let mut lab = Lab::new(Plan {
            forks: vec![ForkPlan::Script {
                name: "desktop".into(),
                script: ScriptConfig {
                    outcome: Some((secs(1.0), ScriptOutcome::Reject(486))),
                    ..script(0.2, None, None)
                },
                answer: None,
            }],
            forwarding: rule.then(|| {
                Box::new(ForwardRules {
                    busy: Some(Forward::Voicemail),
                    ..ForwardRules::default()
                })
            }),
            ..Plan::default()
        });
        lab.run_until(secs(10.0));
        let want = if rule {
            vec![
                (secs(0.0), 100),
                (secs(0.2), 180),
                (secs(1.0), 181),
                (secs(6.0), 200),
            ]
        } else {
            vec![(secs(0.0), 100), (secs(0.2), 180), (secs(1.0), 486)]
        };
        assert_eq!(until_200(lab.responses()), want, "rule {rule}");
    }
}

#[tokio::test(start_paused = true)]
async fn dr_nh_4_dialog_creating_responses_copy_the_record_route_in_order() {
    let mut lab = Lab::new(Plan::default());
    lab.run_until(secs(2.0));
    for code in [180, 200] {
        let r = lab.last_response(code);
        let rr: Vec<&str> = r
            .lines()
            .filter(|l| l.starts_with("Record-Route:"))
            .collect();
        assert_eq!(
            rr,
            vec![
                "Record-Route: <sip:sbc1.adatum.biz:5061;transport=tls;lr>",
                "Record-Route: <sip:10.1.1.1:5060;lr>"
            ],
            "{r}"
        );
    }
    // The 100 creates no dialog and carries none.
    assert!(!lab.wire[0].1.contains("Record-Route"), "{}", lab.wire[0].1);
}

#[tokio::test(start_paused = true)]
async fn rfc3261_13_3_1_4_the_200_is_retransmitted_then_bye_1106_at_64_t1_along_the_route_set() {
    let mut lab = Lab::new(Plan::default());
    lab.run_until(secs(40.0));
    let oks: Vec<Duration> = lab
        .responses()
        .into_iter()
        .filter(|(_, c)| *c == 200)
        .map(|(t, _)| t)
        .collect();
    // Answered at 2 s; then T1 doubling to T2 = 4 s (RFC 3261 §13.3.1.4).
    assert_eq!(
        &oks[..7],
        &[
            secs(2.0),
            secs(2.5),
            secs(3.5),
            secs(5.5),
            secs(9.5),
            secs(13.5),
            secs(17.5)
        ]
    );
    let byes = lab.sent_named("BYE");
    assert_eq!(byes.len(), 1, "{:#?}", lab.sent);
    let (at, id, bye) = &byes[0];
    assert_eq!(*at, secs(34.0), "2 s + 64*T1");
    assert!(bye.contains("ms-diagnostics: 1106;"), "{bye}");
    // DR-NH-4: Request-URI the remote target, Route the route set in order.
    assert!(
        bye.starts_with("BYE sip:+17168712781@sbc1.adatum.biz:5061;transport=tls SIP/2.0"),
        "{bye}"
    );
    let routes: Vec<&str> = bye.lines().filter(|l| l.starts_with("Route:")).collect();
    assert_eq!(
        routes,
        vec![
            "Route: <sip:sbc1.adatum.biz:5061;transport=tls;lr>",
            "Route: <sip:10.1.1.1:5060;lr>"
        ]
    );
    assert!(!lab.call.is_done(), "the call waits for the BYE's answer");
    lab.answer(*id, 200, &[]);
    assert!(lab.call.is_done());
}

#[tokio::test(start_paused = true)]
async fn dr_nh_4_a_bye_with_a_wrong_to_tag_is_481_and_the_call_goes_on() {
    let mut lab = Lab::new(Plan::default());
    lab.run_until(secs(2.0));
    let tag = lab.answered_tag();
    lab.sbc_sends("ACK", 1, &tag, &[], "");
    lab.sbc_sends("BYE", 2, "not-ours", &[], "");
    assert!(lab.last_response(481).contains("CSeq: 2 BYE"));
    assert!(!lab.call.is_done());
    lab.sbc_sends("BYE", 3, &tag, &[], "");
    assert!(lab.wire.last().unwrap().1.starts_with("SIP/2.0 200 OK"));
    assert!(lab.call.is_done());
}

#[tokio::test(start_paused = true)]
async fn rfc3261_12_2_2_a_request_with_a_lower_cseq_is_500() {
    let mut lab = Lab::new(Plan::default());
    lab.run_until(secs(2.0));
    let tag = lab.answered_tag();
    lab.sbc_sends("ACK", 1, &tag, &[], "");
    lab.sbc_sends("INFO", 5, &tag, &[], "");
    lab.sbc_sends("INFO", 4, &tag, &[], "");
    assert!(lab.last_response(500).contains("CSeq: 4 INFO"));
    assert!(!lab.call.is_done());
}

#[tokio::test(start_paused = true)]
async fn dr_st_1_2_the_sbc_refreshes_and_a_refresh_that_never_comes_ends_both_sides() {
    let mut lab = Lab::new(Plan {
        invite_extra: vec!["Supported: timer", "Session-Expires: 90;refresher=uac"],
        ..Plan::default()
    });
    lab.run_until(secs(2.0));
    let ok = lab.last_response(200);
    assert!(ok.contains("Session-Expires: 90;refresher=uac\r\n"), "{ok}");
    assert!(ok.contains("Require: timer\r\n"), "{ok}");
    let tag = lab.answered_tag();
    lab.sbc_sends("ACK", 1, &tag, &[], "");
    // A refresh by UPDATE at 40 s restarts the interval.
    lab.run_until(secs(40.0));
    lab.sbc_sends(
        "UPDATE",
        2,
        &tag,
        &["Supported: timer", "Session-Expires: 90;refresher=uac"],
        "",
    );
    let refresh_ok = lab.last_response(200);
    assert!(refresh_ok.contains("CSeq: 2 UPDATE"), "{refresh_ok}");
    assert!(
        refresh_ok.contains("Session-Expires: 90;refresher=uac"),
        "{refresh_ok}"
    );
    // Then none: the proxy gives up 90 - min(32, 30) = 60 s after the last refresh.
    lab.run_until(secs(200.0));
    let byes = lab.sent_named("BYE");
    assert_eq!(byes.len(), 1, "{:#?}", lab.sent);
    assert_eq!(byes[0].0, secs(100.0));
    assert!(
        byes[0].2.contains("ms-diagnostics: 540408;"),
        "{}",
        byes[0].2
    );
    let id = byes[0].1;
    lab.answer(id, 200, &[]);
    assert!(lab.call.is_done());
}

#[tokio::test(start_paused = true)]
async fn dr_st_2_the_proxy_refreshes_by_update_at_half_the_interval() {
    // An SBC without timer support that allows UPDATE: the proxy is the refresher.
    let mut lab = Lab::new(Plan {
        invite_extra: vec!["Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE"],
        ..Plan::default()
    });
    lab.run_until(secs(2.0));
    let ok = lab.last_response(200);
    assert!(
        ok.contains("Session-Expires: 1800;refresher=uas\r\n"),
        "{ok}"
    );
    assert!(!ok.contains("Require: timer"), "{ok}");
    let tag = lab.answered_tag();
    lab.sbc_sends("ACK", 1, &tag, &[], "");
    lab.run_until(secs(902.0));
    let updates = lab.sent_named("UPDATE");
    assert_eq!(updates.len(), 1, "{:#?}", lab.sent);
    let (at, id, update) = updates[0].clone();
    assert_eq!(at, secs(902.0));
    assert!(
        update.contains("Session-Expires: 1800;refresher=uac"),
        "{update}"
    );
    assert!(update.contains("Min-SE: 90"), "{update}");
    assert!(
        update.contains("Route: <sip:sbc1.adatum.biz:5061;transport=tls;lr>"),
        "{update}"
    );
    lab.answer(id, 200, &[]);
    lab.run_until(secs(2000.0));
    let updates = lab.sent_named("UPDATE");
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[1].0, secs(1802.0));
    assert!(!lab.call.is_done());
}

#[tokio::test(start_paused = true)]
async fn dr_st_2_without_update_the_refresh_is_a_re_invite_and_its_200_is_acked() {
    let mut lab = Lab::new(Plan::default());
    lab.run_until(secs(2.0));
    let tag = lab.answered_tag();
    lab.sbc_sends("ACK", 1, &tag, &[], "");
    lab.run_until(secs(1000.0));
    let invites = lab.sent_named("INVITE");
    assert_eq!(invites.len(), 1, "{:#?}", lab.sent);
    let (_, id, reinvite) = invites[0].clone();
    assert!(
        reinvite.contains("a=rtpmap:0 PCMU/8000"),
        "the call's SDP again: {reinvite}"
    );
    assert!(reinvite.contains("CSeq: 1 INVITE"), "{reinvite}");
    lab.answer(id, 200, &["Session-Expires: 1800;refresher=uac"]);
    let acks = lab.sent_named("ACK");
    assert_eq!(acks.len(), 1, "{:#?}", lab.sent);
    assert!(acks[0].2.contains("CSeq: 1 ACK"), "{}", acks[0].2);
}

/// DR-HOLD-1 with DR-ST-2: after the SBC held the call, drhub's session refresh offers
/// the SDP the SBC has now (the held answer, same version), not the first answer: a
/// refresh must not resume a held call (RFC 3264 §8, RFC 4028 §7.4).
#[tokio::test(start_paused = true)]
async fn dr_hold_1_a_refresh_after_a_hold_offers_the_held_sdp() {
    let mut lab = Lab::new(Plan::default());
    lab.run_until(secs(2.0));
    let tag = lab.answered_tag();
    lab.sbc_sends("ACK", 1, &tag, &[], "");
    let hold = format!("{}a=inactive\r\n", SDP.replace("o=- 1 1 ", "o=- 1 2 "));
    lab.sbc_sends("INVITE", 2, &tag, &[], &hold);
    let held = lab.last_response(200);
    assert!(held.contains("a=inactive\r\n"), "{held}");
    let o_line = |t: &str| {
        t.split("\r\n")
            .find(|l| l.starts_with("o="))
            .map(str::to_owned)
    };
    lab.sbc_sends("ACK", 2, &tag, &[], "");
    lab.run_until(secs(1000.0));
    let invites = lab.sent_named("INVITE");
    assert_eq!(invites.len(), 1, "{:#?}", lab.sent);
    let reinvite = &invites[0].2;
    assert!(reinvite.contains("a=inactive\r\n"), "{reinvite}");
    assert_eq!(
        o_line(reinvite),
        o_line(&held),
        "the same SDP, the same version"
    );
}

#[tokio::test(start_paused = true)]
async fn dr_st_2_a_refresh_answered_481_ends_the_call_without_a_bye_to_the_sbc() {
    let mut lab = Lab::new(Plan {
        invite_extra: vec!["Allow: INVITE, ACK, BYE, UPDATE"],
        ..Plan::default()
    });
    lab.run_until(secs(2.0));
    let tag = lab.answered_tag();
    lab.sbc_sends("ACK", 1, &tag, &[], "");
    lab.run_until(secs(1000.0));
    let (_, id, _) = lab.sent_named("UPDATE")[0].clone();
    lab.answer(id, 481, &[]);
    assert!(lab.sent_named("BYE").is_empty());
    assert!(lab.call.is_done());
}

#[tokio::test(start_paused = true)]
async fn dr_st_3_a_re_invite_below_min_se_is_422_and_the_call_goes_on() {
    let mut lab = Lab::new(Plan::default());
    lab.run_until(secs(2.0));
    let tag = lab.answered_tag();
    lab.sbc_sends("ACK", 1, &tag, &[], "");
    lab.sbc_sends(
        "INVITE",
        2,
        &tag,
        &["Supported: timer", "Session-Expires: 30"],
        SDP,
    );
    let r = lab.last_response(422);
    assert!(r.contains("Min-SE: 90\r\n"), "{r}");
    assert!(r.contains("ms-diagnostics: 540422;"), "{r}");
    assert!(!lab.call.is_done());
    // A retry at the Min-SE is taken, with the call's SDP.
    lab.sbc_sends(
        "INVITE",
        3,
        &tag,
        &["Supported: timer", "Session-Expires: 90"],
        SDP,
    );
    let ok = lab.last_response(200);
    assert!(
        ok.contains("CSeq: 3 INVITE") && ok.contains("Session-Expires: 90;refresher=uac"),
        "{ok}"
    );
    assert!(ok.contains("m=audio 49152"), "{ok}");
}

#[tokio::test(start_paused = true)]
async fn dr_st_1_bypass_calls_carry_no_session_timer() {
    let mut lab = Lab::new(Plan {
        bypass: true,
        invite_extra: vec!["Supported: timer", "Session-Expires: 1800"],
        ..Plan::default()
    });
    lab.run_until(secs(2.0));
    let ok = lab.last_response(200);
    assert!(!ok.contains("Session-Expires"), "{ok}");
    let tag = lab.answered_tag();
    lab.sbc_sends("ACK", 1, &tag, &[], "");
    lab.run_until(secs(10_000.0));
    assert!(lab.sent.is_empty(), "{:#?}", lab.sent);
}

#[tokio::test(start_paused = true)]
async fn dr_nh_5_orphaned_bypass_call_asks_the_sbc_then_ends_when_the_dialog_is_gone() {
    let mut lab = Lab::new(Plan {
        bypass: true,
        ..Plan::default()
    });
    lab.run_until(secs(2.0));
    let tag = lab.answered_tag();
    lab.sbc_sends("ACK", 1, &tag, &[], "");
    lab.run_until(secs(10.0));
    lab.handle(CallEvent::SbcGone);
    lab.run_until(secs(129.0));
    assert!(lab.sent.is_empty());
    lab.run_until(secs(131.0));
    let probes = lab.sent_named("OPTIONS");
    assert_eq!(probes.len(), 1);
    assert_eq!(
        probes[0].0,
        secs(130.0),
        "orphan_timeout after the last connection went"
    );
    lab.answer(probes[0].1, 481, &[]);
    assert!(lab.call.is_done());
    let o = lab.call.outcome.clone().expect("outcome");
    assert_eq!(o.code, Some(540409));
}

#[tokio::test(start_paused = true)]
async fn dr_nh_5_orphaned_call_whose_sbc_answers_goes_on() {
    let mut lab = Lab::new(Plan {
        bypass: true,
        ..Plan::default()
    });
    lab.run_until(secs(2.0));
    let tag = lab.answered_tag();
    lab.sbc_sends("ACK", 1, &tag, &[], "");
    lab.handle(CallEvent::SbcGone);
    lab.run_until(secs(200.0));
    let (_, id, _) = lab.sent_named("OPTIONS")[0].clone();
    lab.answer(id, 200, &[]);
    lab.run_until(secs(5000.0));
    assert!(!lab.call.is_done());
    assert_eq!(lab.sent_named("OPTIONS").len(), 1);
    // The next loss of every connection is probed again. (A request from the SBC read
    // before its connection closed may be handled after; it proves nothing, so only the
    // probe decides.)
    lab.handle(CallEvent::SbcGone);
    lab.run_until(secs(5010.0));
    lab.sbc_sends("INFO", 2, &tag, &[], "");
    lab.run_until(secs(6000.0));
    assert_eq!(lab.sent_named("OPTIONS").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn dr_fork_8_cancel_gets_200_then_487() {
    let mut lab = Lab::new(Plan::default());
    lab.run_until(secs(1.0));
    let cancel = invite(&[])
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let cancel =
        cancel.split("Content-Type").next().unwrap().to_owned() + "Content-Length: 0\r\n\r\n";
    lab.handle
        .receive(stored(&cancel), 1, Transport::Tls)
        .expect("cancel");
    let ev = match poll(&mut lab.layer) {
        Some(Output::Event(CoreEvent::Cancel { request, .. })) => CallEvent::Cancel {
            tx: request.tx,
            request: request.request,
        },
        other => panic!("{other:?}"),
    };
    lab.handle(ev);
    assert!(lab.last_response(200).contains("CSeq: 1 CANCEL"));
    assert_eq!(lab.responses().last().map(|r| r.1), Some(487));
    assert!(lab.call.is_done());
}

#[test]
fn a_line_break_in_an_endpoint_target_cannot_split_the_invite() {
    // The target is a registered Contact (network data): whatever it holds, the leg
    // sends exactly one INVITE, never a second request smuggled after a line break.
    let attempt = |target: &str| {
        let mut actions = Vec::new();
        let leg = leg::UacLeg::start(
            ReqId(7),
            Route::Sbc {
                target: crate::transport::connect::Target {
                    sbc: "sbc1.adatum.biz".into(),
                    host: "sbc1.adatum.biz".into(),
                    port: 5061,
                    address: None,
                    transport: Transport::Tls,
                    insecure_ip: None,
                },
                listener: "sip".into(),
            },
            LocalIdentity::new(
                "sip.pstnhub.microsoft.com",
                5061,
                Transport::Tls,
                "drhub",
                Style::Faithful,
            ),
            dialog::Peer::Sbc {
                fqdn: "sbc1.adatum.biz".into(),
            },
            &leg::InviteParams {
                target,
                from: "<sip:+12065550100@sip.pstnhub.microsoft.com>".into(),
                to: "<sip:+17168712781@sbc1.adatum.biz>".into(),
                sdp: b"v=0\r\n",
                extra: &[],
                again: None,
                contact: None,
            },
            &mut actions,
        );
        assert!(leg.is_some());
        match actions.as_slice() {
            [Action::Send { request, .. }] => Stored::new(request.clone()).expect("one message"),
            other => panic!("one INVITE queued, got {other:?}"),
        }
    };
    let plain = attempt("sip:+17168712781@sbc1.adatum.biz:5061;transport=tls");
    assert_eq!(plain.message().method(), Some(Method::Invite));
    let smuggled = attempt("sip:a@192.0.2.7\r\n\r\nBYE sip:b@192.0.2.7 SIP/2.0");
    let text = String::from_utf8_lossy(smuggled.bytes());
    let first = text.split("\r\n").next().unwrap_or_default();
    assert!(first.starts_with("INVITE sip:a@192.0.2.7") && first.ends_with(" SIP/2.0"));
    assert!(!text.contains("\r\nBYE "), "{text}");
}

#[tokio::test(start_paused = true)]
async fn operator_hang_up_of_a_ringing_call_declines_it_603() {
    let mut lab = Lab::new(Plan::default());
    lab.run_until(secs(1.0));
    lab.handle(CallEvent::HangUp);
    lab.run_until(secs(1.1));
    let r = lab.last_response(603);
    assert!(r.starts_with("SIP/2.0 603 "), "{r}");
    assert!(lab.call.is_done());
    assert_eq!(lab.call.outcome.clone().expect("outcome").status, 603);
}

#[tokio::test(start_paused = true)]
async fn operator_hang_up_of_an_answered_call_sends_bye_along_the_route_set() {
    let mut lab = Lab::new(Plan::default());
    lab.run_until(secs(2.0));
    let tag = lab.answered_tag();
    lab.sbc_sends("ACK", 1, &tag, &[], "");
    lab.run_until(secs(5.0));
    lab.handle(CallEvent::HangUp);
    lab.run_until(secs(5.1));
    let byes = lab.sent_named("BYE");
    assert_eq!(byes.len(), 1, "{:#?}", lab.sent);
    // DR-NH-4: the SBC's record-routed dialog: Route headers, remote target.
    assert!(byes[0].2.contains("Route: <sip:"), "{}", byes[0].2);
    assert!(!lab.call.is_done(), "over once the BYE is answered");
    lab.answer(byes[0].1, 200, &[]);
    assert!(lab.call.is_done());
    let o = lab.call.outcome.clone().expect("outcome");
    assert_eq!(
        (o.status, o.reason.as_str()),
        (200, "ended through the control API")
    );
}
