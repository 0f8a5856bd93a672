//! Placing an outbound call (DR-OUT-1): from a user and what they dialled to a running
//! [`Outbound`](super::outbound::Outbound) call, or a refusal that says why and starts
//! nothing. The control API (`POST /api/calls`, `drhub call`) and scripted callers
//! (`[[tenant.user.call]]`) all come through here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{info, warn};

use super::outbound::{Gateway, Placement};
use super::spawn_outbound;
use crate::config::SipAddress;
use crate::config::{Fqdn, E164};
use crate::diagnostics::Diagnostic;
use crate::health::SbcState;
use crate::hub::Hub;
use crate::sip::Transport;

/// What the caller asks for.
#[derive(Debug, Clone)]
pub struct Request {
    /// The Teams user calling, `user1@adatum.biz`.
    pub user: String,
    /// What the user dialled; the tenant's dial plan normalises it.
    pub number: String,
    /// Caller ID withheld (From anonymous, `Privacy: id`).
    pub private: bool,
    /// How long the caller lets it ring before giving up (CANCEL).
    pub ring_for: Duration,
    /// How long the caller talks once answered (then BYE).
    /// `None`: a SIP endpoint, whose user hangs up.
    pub talk_for: Option<Duration>,
}

/// A call that was started.
#[derive(Debug, Clone)]
pub struct Placed {
    pub call_id: String,
    /// The number in `+E164` form, after the dial plan.
    pub number: String,
    /// The gateways in the order the call tries them.
    pub gateways: Vec<String>,
    /// Gateways of the route left out because a 503 took them out of rotation.
    pub resting: Vec<String>,
}

/// Why no call was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The request itself is wrong (400).
    Bad(String),
    /// No such user (404).
    UnknownUser(String),
    /// The user cannot call the PSTN: no phone number (403).
    NoLine(String),
    /// No viable route (403, 510559, DR-OUT-1), with the routing explanation.
    NoRoute(String),
    /// drhub cannot place calls now (503): shutting down, at its limits, no TLS.
    Unavailable(String),
}

impl Refused {
    /// The HTTP status of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            Refused::Bad(_) => 400,
            Refused::UnknownUser(_) => 404,
            Refused::NoLine(_) | Refused::NoRoute(_) => 403,
            Refused::Unavailable(_) => 503,
        }
    }

    /// The Microsoft response code, where the refusal has one.
    pub fn code(&self) -> Option<u32> {
        match self {
            Refused::NoRoute(_) => Some(Diagnostic::NoRoute.entry().code),
            _ => None,
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Bad(m)
            | Refused::UnknownUser(m)
            | Refused::NoLine(m)
            | Refused::NoRoute(m)
            | Refused::Unavailable(m) => f.write_str(m),
        }
    }
}

/// Routes the call and starts it; see the module docs.
pub fn place(hub: &Arc<Hub>, req: &Request) -> Result<Placed, Refused> {
    let (placement, placed) = plan(hub, req, None)?;
    spawn_outbound(hub.clone(), hub.call_settings(), placement, None);
    Ok(placed)
}

/// Routes the call: the gateways to try, each with its SDP offer (`endpoint_offer`, the
/// calling endpoint's own, on bypass trunks; else the media processor's).
pub fn plan(
    hub: &Arc<Hub>,
    req: &Request,
    endpoint_offer: Option<&Bytes>,
) -> Result<(Placement, Placed), Refused> {
    let address = req
        .user
        .parse::<SipAddress>()
        .map_err(|e| Refused::Bad(format!("user: {e}")))?;
    let number = req.number.trim();
    if number.is_empty() || number.len() > 64 || !number.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Refused::Bad(format!(
            "number: `{}` is not a number one can dial",
            req.number.escape_debug()
        )));
    }
    let dir = hub.directory();
    let (tenant, user) = dir
        .find_user(&address)
        .ok_or_else(|| Refused::UnknownUser(format!("{address} is no user of any tenant")))?;
    let line = user.line_uri.as_ref().ok_or_else(|| {
        Refused::NoLine(format!(
            "{address} has no line_uri: a Teams user without a phone number cannot call the PSTN"
        ))
    })?;
    if hub.is_draining() {
        return Err(Refused::Unavailable("shutting down".into()));
    }
    if hub.calls.len() >= hub.config().calls.max_concurrent {
        return Err(Refused::Unavailable("max_concurrent calls reached".into()));
    }
    let Some(connector) = hub.connector() else {
        return Err(Refused::Unavailable("not serving yet".into()));
    };
    let inactive = |fqdn: &Fqdn| hub.health.state(fqdn.as_str()) == Some(SbcState::Inactive);
    // The routing decision's explanation is built only when the call is refused.
    let Some((routed_number, order)) =
        dir.attempts(tenant, user, number, inactive, fastrand::shuffle)
    else {
        let decision = dir.route(tenant, user, number, inactive);
        let e = Diagnostic::NoRoute.entry();
        warn!(user = %address, dialled = number, code = e.code, "outbound call refused: no route\n{decision}");
        return Err(Refused::NoRoute(decision.to_string()));
    };
    let Ok(e164) = routed_number.parse::<E164>() else {
        return Err(Refused::Bad(format!(
            "number: `{number}` is not +E.164 after the dial plan (`{routed_number}`)"
        )));
    };
    let now = Instant::now();
    // One media session per call, whichever gateway answers.
    let media_port = hub.media_port();
    let mut gateways = Vec::new();
    let mut resting = Vec::new();
    for g in &order {
        if let Some(until) = hub.rotation.resting_until(g.fqdn.as_str(), now) {
            info!(sbc = %g.fqdn, back_in = ?until.duration_since(now), "gateway out of rotation after 503 Retry-After (DR-OUT-3); skipped");
            resting.push(g.fqdn.to_string());
            continue;
        }
        let Some(trunk) = dir.trunk(tenant, g.fqdn.as_str()) else {
            continue;
        };
        let (listener_seen, insecure_peer) = hub.health.reach(g.fqdn.as_str()).unzip();
        // A plain-TCP lab SBC (DR-TLS-5) is reached where it last spoke from.
        let insecure_ip = insecure_peer
            .flatten()
            .filter(|_| trunk.allow_insecure)
            .map(|p| p.ip());
        let transport = if insecure_ip.is_some() {
            Transport::Tcp
        } else {
            Transport::Tls
        };
        // The datacenter the SBC last sent OPTIONS to, else the first listener.
        let preferred = listener_seen.as_deref();
        let Some((listener, local)) = connector.identity(preferred, transport) else {
            warn!(sbc = %g.fqdn, %transport, "no listener to call this SBC from; skipped");
            continue;
        };
        // DR-OUT-1: on bypass trunks the SBC gets the calling endpoint's own offer;
        // else the call makes the media processor's when it tries this gateway.
        let offer = endpoint_offer.filter(|_| trunk.media_bypass).cloned();
        gateways.push(Gateway {
            fqdn: g.fqdn.as_str().into(),
            port: trunk.port,
            address: trunk.address,
            insecure_ip,
            route: g.route.to_owned(),
            bypass: trunk.media_bypass,
            forward_pai: trunk.forward_pai,
            forward_call_history: trunk.forward_call_history,
            failover_codes: trunk.failover_response_codes.clone(),
            failover_time: trunk.failover_time,
            listener: listener.into(),
            local: local.clone(),
            offer,
            media_port,
            options_allow_refer: hub.health.allows(g.fqdn.as_str(), "REFER"),
        });
    }
    if gateways.is_empty() {
        let decision = dir.route(tenant, user, number, inactive);
        let why = format!(
            "{decision}\nevery gateway of the route is disabled or out of rotation (503 Retry-After): {}",
            resting.join(", ")
        );
        warn!(user = %address, dialled = number, "outbound call refused: no gateway to try");
        return Err(Refused::NoRoute(why));
    }
    let host = gateways[0].local.host().to_owned();
    let call_id = format!("{:016x}{:08x}@{host}", fastrand::u64(..), fastrand::u32(..));
    let placed = Placed {
        call_id: call_id.clone(),
        number: e164.to_string(),
        gateways: gateways.iter().map(|g| g.fqdn.to_string()).collect(),
        resting,
    };
    let placement = Placement {
        call_id,
        tenant: dir.tenant(tenant).id.clone(),
        user: address.to_string(),
        number: e164.to_string(),
        caller: line.number.to_string(),
        display_name: user.display_name.clone(),
        private: req.private,
        gateways,
        ring_for: req.ring_for,
        talk_for: req.talk_for,
        media: hub.media.clone(),
        carried: None,
    };
    Ok((placement, placed))
}

/// Runs every user's `[[tenant.user.call]]` until `stop`: each places its calls at its
/// times through [`place`], and logs what became of the attempt to place it (the call
/// itself logs under its own span).
pub async fn run_scheduled(hub: Arc<Hub>, stop: tokio_util::sync::CancellationToken) {
    let mut tasks = tokio::task::JoinSet::new();
    for tenant in &hub.config().tenants {
        for user in &tenant.users {
            for call in &user.calls {
                let hub = hub.clone();
                let stop = stop.clone();
                let call = call.clone();
                let user = user.sip_address.to_string();
                tasks.spawn(async move {
                    let start = tokio::time::Instant::now() + call.after;
                    let stopped = stop.cancelled();
                    tokio::pin!(stopped);
                    let mut placed = 0u32;
                    loop {
                        let at = match call.every {
                            Some(every) => start + every * placed,
                            None => start,
                        };
                        // Calls already due (a rate above the timer's 1 ms resolution)
                        // go out in this wake, without a trip through the timer wheel.
                        if at > tokio::time::Instant::now() {
                            tokio::select! {
                                _ = tokio::time::sleep_until(at) => {}
                                _ = &mut stopped => return,
                            }
                        } else if stop.is_cancelled() {
                            return;
                        }
                        let req = Request {
                            user: user.clone(),
                            number: call.to.clone(),
                            private: call.private,
                            ring_for: call.ring,
                            talk_for: Some(call.talk),
                        };
                        match place(&hub, &req) {
                            Ok(p) => info!(user = %user, to = %p.number, call_id = %p.call_id, "scripted call placed ([[tenant.user.call]])"),
                            Err(r) => warn!(user = %user, to = %call.to, status = r.status(), "scripted call not placed: {r}"),
                        }
                        placed += 1;
                        let more = call.every.is_some() && call.count.is_none_or(|c| placed < c);
                        if !more {
                            return;
                        }
                    }
                });
            }
        }
    }
    while tasks.join_next().await.is_some() {}
}
