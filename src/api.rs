//! The control API (issue 8): JSON over HTTP on `[api] address` (loopback by default),
//! for what a lab operator asks of a running daemon: what is listening, which SBCs are
//! connected to which emulated datacenter and how healthy they are (DR-OPT-3, DR-DC-2),
//! which calls are up, and fault modes for the datacenters (DR-DC-1).
//!
//! Every answer is JSON, errors too: `{"status": 404, "error": "..."}`, but for the
//! status page (`GET /`, `GET /calls/{Call-ID}`), which is HTML. With `[api] token`
//! set, every request needs `Authorization: Bearer <token>`; a browser gives the token
//! as the password of HTTP Basic authentication.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::hub::Hub;
use crate::transport::datacenter::Mode;
use crate::transport::Direction;

/// What the handlers share.
#[derive(Clone)]
struct Api {
    hub: Arc<Hub>,
}

/// An error answered as JSON with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// The Microsoft response code, when the error is one of the catalogue's.
    code: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            code: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "status": self.status.as_u16(), "error": self.message });
        if let Some(c) = self.code {
            body["code"] = json!(c);
        }
        (self.status, Json(body)).into_response()
    }
}

/// Serves the API on `listener` until `stop` is cancelled.
pub async fn serve(listener: TcpListener, hub: Arc<Hub>, stop: CancellationToken) {
    let app = router(hub);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        warn!(error = %e, "control API stopped");
    }
}

/// The API's routes, with authentication when a token is configured.
pub fn router(hub: Arc<Hub>) -> Router {
    let token = hub.config().api.token.clone().map(Arc::<str>::from);
    let api = Api { hub };
    Router::new()
        .route("/", get(status_page))
        .route("/calls/{call_id}", get(call_page))
        .route("/api/status", get(status))
        .route("/api/calls", get(calls).post(place_call))
        .route("/api/calls/{call_id}", get(one_call).delete(hang_up))
        .route("/api/calls/{call_id}/hold", post(hold))
        .route("/api/calls/{call_id}/resume", post(resume))
        .route("/api/calls/{call_id}/transfer", post(transfer))
        .route("/api/route", get(route))
        .route("/api/datacenters", get(datacenters))
        .route("/api/datacenters/{name}", post(set_datacenter))
        .route("/metrics", get(metrics))
        .route("/api/report", get(report))
        .route("/api/reload", post(reload))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(token, authenticate))
        .with_state(api)
}

/// `POST /api/reload`: re-reads the config file (see [`crate::reload`]). `200` with
/// what was applied and what needs a restart; `422` with every error (`path: what is
/// wrong`) when the new config is refused and nothing changed; `409` when there is no
/// file to re-read.
async fn reload(State(api): State<Api>) -> Response {
    use crate::reload::Error;
    match api.hub.reload().await {
        Ok(r) => Json(json!({
            "reloaded": true,
            "applied": r.applied,
            "restart_needed": r.restart_needed,
        }))
        .into_response(),
        Err(e) => {
            let status = match e {
                Error::NoFile => StatusCode::CONFLICT,
                Error::Stopping => StatusCode::SERVICE_UNAVAILABLE,
                Error::Config { .. } | Error::Listener(_) => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let body = json!({
                "status": status.as_u16(),
                "error": e.to_string(),
                "errors": e.lines(),
            });
            (status, Json(body)).into_response()
        }
    }
}

/// `GET /api/report[?sbc=FQDN]`: the conformance report (DR-CONF), see
/// [`crate::observe::conformance`]. `404` for an SBC drhub neither knows nor heard.
async fn report(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = query_params(query.as_deref().unwrap_or(""));
    let sbc = params
        .iter()
        .find(|(k, _)| k == "sbc")
        .map(|(_, v)| v.as_str());
    let v = crate::observe::conformance::report(&api.hub, sbc);
    if let Some(s) = sbc {
        if v["sbcs"].as_array().is_none_or(Vec::is_empty) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no SBC `{s}` in the config or heard from"),
            ));
        }
    }
    Ok(Json(v))
}

/// `GET /metrics`: Prometheus metrics in the OpenMetrics text format (see
/// [`crate::observe::metrics`]).
async fn metrics(State(api): State<Api>) -> Response {
    let text = crate::observe::metrics::render(&api.hub);
    (
        [(header::CONTENT_TYPE, crate::observe::metrics::CONTENT_TYPE)],
        text,
    )
        .into_response()
}

/// `Authorization: Bearer <token>` when a token is configured.
async fn authenticate(
    State(token): State<Option<Arc<str>>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !authorized(given, &token) {
            crate::warn_limited!(path = %request.uri().path(), "API request refused: missing or wrong bearer token");
            let mut r = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (Authorization: Bearer <[api] token>)",
            )
            .into_response();
            // A browser asks its user for the token when challenged with Basic.
            let page =
                !request.uri().path().starts_with("/api/") && request.uri().path() != "/metrics";
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static(match page {
                    true => "Basic realm=\"drhub\", charset=\"UTF-8\"",
                    false => "Bearer",
                }),
            );
            return r;
        }
    }
    next.run(request).await
}

/// `Bearer <token>`, or (for a browser on the status page) `Basic` with the token as the
/// password and any user name.
fn authorized(given: Option<&str>, token: &str) -> bool {
    use base64::Engine as _;
    let Some((scheme, credentials)) = given.and_then(|g| g.split_once(' ')) else {
        return false;
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        return credentials.trim() == token;
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| pair.split_once(':').map(|(_, p)| p == token))
        .unwrap_or(false)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {}", request.uri().path()),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// A time as Unix seconds with milliseconds, as the API and the status page give it.
pub(crate) fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or(0.0)
}

fn mode_json(name: &str, mode: Mode) -> Value {
    let mut v = json!({ "name": name, "mode": mode.name() });
    if let Mode::Busy { retry_after } = mode {
        v["retry_after"] = json!(retry_after);
    }
    v
}

/// `GET /api/status`: listeners, SBCs with health and connections by datacenter, calls.
async fn status(State(api): State<Api>) -> Json<Value> {
    Json(status_json(&api))
}

/// What `GET /api/status` answers and the status page draws.
fn status_json(api: &Api) -> Value {
    let hub = &api.hub;
    let config = hub.config();
    let listeners: Vec<Value> = hub
        .listeners()
        .iter()
        .map(|(name, address)| {
            let l = config.listeners.iter().find(|l| &l.name == name);
            let mut v = json!({
                "name": name,
                "address": address.to_string(),
                "transport": l.map_or("tcp+udp".to_owned(), |l| l.transport.to_string()),
            });
            if let Some(l) = l {
                v["fqdn"] = json!(l.fqdn.to_string());
            }
            if hub.datacenters.contains(name) {
                v["datacenter"] = mode_json(name, hub.datacenters.mode(name));
            }
            v
        })
        .collect();
    let now = tokio::time::Instant::now().into_std();
    let timing = hub.health.timing();
    let mut sbcs = Vec::new();
    for tenant in &config.tenants {
        for trunk in &tenant.trunks {
            let fqdn = trunk.fqdn.to_string();
            let record = hub.health.get(&fqdn);
            let connections: Vec<Value> = hub
                .flows
                .all_by_name(&fqdn)
                .iter()
                .map(|f| {
                    json!({
                        "flow": f.id.to_string(),
                        "datacenter": f.listener,
                        "peer": f.peer.to_string(),
                        "direction": match f.direction {
                            Direction::Inbound => "inbound",
                            Direction::Outbound => "outbound",
                        },
                    })
                })
                .collect();
            let mut dcs: Vec<&str> = connections
                .iter()
                .filter_map(|c| c["datacenter"].as_str())
                .collect();
            dcs.sort_unstable();
            dcs.dedup();
            let mut v = json!({
                "fqdn": fqdn,
                "tenant": tenant.id,
                "enabled": trunk.enabled,
                "state": record.as_ref().map_or("unknown", |r| r.state_at(now, timing).as_str()),
                "datacenters": dcs,
                "connections": connections,
                "calls_up": hub.calls.trunk_load(&fqdn).0,
            });
            if let Some(cert) = record.as_ref().and_then(|r| r.certificate.as_deref()) {
                v["certificate"] = json!({
                    "names": cert.dns_names,
                    "subject_cn": cert.subject_cn,
                    "issuer": cert.issuer,
                    "not_after": cert.not_after.to_string(),
                });
            }
            if let Some(r) = record {
                v["options"] = json!({
                    "received": r.options_received,
                    "last_received": unix(r.last_options_at),
                    "last_received_on": r.listener,
                    // DR-DC-2: when the SBC failed over between datacenters.
                    "moves": r.moves.iter().map(|m| json!({
                        "at": unix(m.at),
                        "from": m.from,
                        "to": m.to,
                    })).collect::<Vec<_>>(),
                    "allow": r.allow,
                    "sent": r.outbound.sent,
                    "answered": r.outbound.answered,
                    "last_result": r.outbound.last_result,
                });
            }
            sbcs.push(v);
        }
    }
    let c = &hub.counters;
    let t = &hub.calls;
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "listeners": listeners,
        "sbcs": sbcs,
        "calls": {
            "up": t.len(),
            "started": t.started.load(Ordering::Relaxed),
            "answered": t.answered.load(Ordering::Relaxed),
            "failed": t.failed.load(Ordering::Relaxed),
        },
        "counters": {
            "requests": c.requests.load(Ordering::Relaxed),
            "rejected": c.rejected.load(Ordering::Relaxed),
            "shed": c.shed.load(Ordering::Relaxed),
            "malformed": c.malformed.load(Ordering::Relaxed),
            "connections": hub.flows.len(),
            "transactions": hub.layer.load().transactions(),
        },
    })
}

fn live_json(c: &crate::call::router::LiveCall) -> Value {
    json!({
        "call_id": &*c.call_id,
        "direction": c.direction.as_str(),
        "tenant": &*c.tenant,
        "user": &*c.user,
        "number": c.number.as_deref(),
        "trunk": &*c.trunk,
        "started": unix(c.started),
        "state": c.state.as_str(),
        "legs": c.call_ids.iter().map(|id| &**id).collect::<Vec<_>>(),
    })
}

fn record_json(c: &crate::call::router::CallRecord) -> Value {
    let mut v = json!({
        "call_id": &*c.call_id,
        "direction": c.direction.as_str(),
        "tenant": &*c.tenant,
        "user": &*c.user,
        "number": c.number.as_deref(),
        "trunk": &*c.trunk,
        "started": unix(c.started),
        "ended": c.ended.map(unix),
        "state": "ended",
        "legs": c.call_ids.iter().map(|id| &**id).collect::<Vec<_>>(),
    });
    if let Some(o) = &c.outcome {
        v["status"] = json!(o.status);
        v["code"] = json!(o.code);
        v["reason"] = json!(o.reason);
    }
    v
}

/// `GET /api/calls`: the calls up and the last ones that ended.
async fn calls(State(api): State<Api>) -> Json<Value> {
    Json(calls_json(&api))
}

fn calls_json(api: &Api) -> Value {
    let up: Vec<Value> = api.hub.calls.snapshot().iter().map(live_json).collect();
    let recent: Vec<Value> = api.hub.calls.recent().iter().map(record_json).collect();
    json!({ "calls": up, "recent": recent })
}

/// `GET /api/calls/{call_id}`: one call, live (`"state"`: `trying`, `ringing` or
/// `answered`) or among the last ended (`"state": "ended"`, with its status, code and
/// reason).
async fn one_call(
    State(api): State<Api>,
    Path(call_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    find_call(&api, &call_id).map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no call up or recently ended with Call-ID `{call_id}`"),
        )
    })
}

/// A call up or among the last ended, by its caller's Call-ID (or, failing that, any
/// of its legs'), as the calls API shows it.
fn find_call(api: &Api, call_id: &str) -> Option<Value> {
    let calls = &api.hub.calls;
    let live = calls.snapshot();
    let recent = calls.recent();
    let is = |id: &str| id == call_id;
    live.iter()
        .find(|c| is(&c.call_id))
        .map(live_json)
        .or_else(|| {
            recent
                .iter()
                .rev()
                .find(|c| is(&c.call_id))
                .map(record_json)
        })
        .or_else(|| {
            live.iter()
                .find(|c| c.call_ids.iter().any(|l| is(l)))
                .map(live_json)
        })
        .or_else(|| {
            recent
                .iter()
                .rev()
                .find(|c| c.call_ids.iter().any(|l| is(l)))
                .map(record_json)
        })
}

/// `GET /`: the status page (see [`crate::observe::status_page`]).
async fn status_page(State(api): State<Api>) -> Response {
    let status = status_json(&api);
    let calls = calls_json(&api);
    let report = crate::observe::conformance::report(&api.hub, None);
    html(
        StatusCode::OK,
        crate::observe::status_page::overview(&crate::observe::status_page::Overview {
            status: &status,
            calls: &calls,
            report: &report,
            ladders: api.hub.ladders.is_on(),
        }),
    )
}

/// `GET /calls/{call_id}`: a call's page with its SIP ladder, every leg's messages
/// merged by time.
async fn call_page(State(api): State<Api>, Path(call_id): Path<String>) -> Response {
    let Some(call) = find_call(&api, &call_id) else {
        return html(
            StatusCode::NOT_FOUND,
            crate::observe::status_page::not_found(&format!(
                "no call up or recently ended with Call-ID {call_id}"
            )),
        );
    };
    let ids: Vec<&str> = call["legs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let rungs = api.hub.ladders.of(&ids);
    // Label an SBC's open connections with its FQDN.
    let config = api.hub.config();
    let names = config
        .tenants
        .iter()
        .flat_map(|t| &t.trunks)
        .flat_map(|trunk| {
            let fqdn = trunk.fqdn.to_string();
            api.hub
                .flows
                .all_by_name(&fqdn)
                .iter()
                .map(|f| (f.peer, fqdn.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    html(
        StatusCode::OK,
        crate::observe::status_page::call_page(&call, &rungs, &names),
    )
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// `POST /api/calls` `{"from": "user1@adatum.biz", "to": "+14255550100"}` (optional
/// `"private": true`, `"ring_seconds"`, `"talk_seconds"`): a Teams user calls a number
/// through the SBCs its voice routing chooses (DR-OUT-1). `201` with the Call-ID and the
/// gateways in the order they will be tried; a refusal starts nothing and sends no
/// INVITE (no route: `403` with code 510559 and the routing explanation).
async fn place_call(
    State(api): State<Api>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    let body: Value = serde_json::from_slice(&body).map_err(|e| {
        bad(format!(
            "the body must be JSON such as {{\"from\": \"user1@adatum.biz\", \"to\": \"+14255550100\"}}: {e}"
        ))
    })?;
    let text = |k: &str| -> Result<String, ApiError> {
        match body.get(k) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(bad(format!("`{k}` must be a string"))),
            None => Err(bad(format!("`{k}` is required"))),
        }
    };
    let seconds = |k: &str, default: f64| -> Result<std::time::Duration, ApiError> {
        match body.get(k) {
            None => Ok(std::time::Duration::from_secs_f64(default)),
            Some(v) => v
                .as_f64()
                .filter(|s| (0.0..=86_400.0).contains(s))
                .map(std::time::Duration::from_secs_f64)
                .ok_or_else(|| bad(format!("`{k}` must be a number of seconds, 0 to 86400"))),
        }
    };
    let private = match body.get("private") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("`private` must be true or false".into())),
    };
    let req = crate::call::place::Request {
        user: text("from")?,
        number: text("to")?,
        private,
        ring_for: seconds("ring_seconds", 60.0)?,
        talk_for: Some(seconds("talk_seconds", 30.0)?),
    };
    match crate::call::place::place(&api.hub, &req) {
        Ok(p) => {
            info!(call_id = %p.call_id, from = %req.user, to = %p.number, "call placed through the API");
            Ok((
                StatusCode::CREATED,
                Json(json!({
                    "call_id": p.call_id,
                    "from": req.user,
                    "number": p.number,
                    "gateways": p.gateways,
                    "out_of_rotation": p.resting,
                    "state": "trying",
                })),
            ))
        }
        Err(r) => {
            let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST);
            let mut e = ApiError::new(status, r.to_string());
            e.code = r.code();
            Err(e)
        }
    }
}

/// `DELETE /api/calls/{call_id}`: ends a call up (BYE both ways) or ringing (603 to the
/// SBC); answers 202 at once, the call's end shows in `/api/calls` `recent`.
async fn hang_up(
    State(api): State<Api>,
    Path(call_id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if api.hub.calls.hang_up(&call_id) {
        info!(call_id = %call_id, "call hung up through the API");
        Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "call_id": call_id, "state": "ending" })),
        ))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no call up with Call-ID `{call_id}`"),
        ))
    }
}

/// `POST /api/calls/{call_id}/hold`: the Teams user holds an answered call (DR-HOLD-2).
/// `202`; the call's `state` turns `held` once it is done. `404` for no such call,
/// `409` for a call not answered yet.
async fn hold(
    State(api): State<Api>,
    Path(call_id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    hold_or_resume(&api, call_id, true)
}

/// `POST /api/calls/{call_id}/resume`: the Teams user takes the call off hold.
async fn resume(
    State(api): State<Api>,
    Path(call_id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    hold_or_resume(&api, call_id, false)
}

fn hold_or_resume(
    api: &Api,
    call_id: String,
    hold: bool,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    tell_answered(api, &call_id, crate::call::CallEvent::Hold(hold))?;
    let verb = if hold { "hold" } else { "resume" };
    info!(call_id = %call_id, "{verb} through the API");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "call_id": call_id, "requested": verb })),
    ))
}

/// `POST /api/calls/{call_id}/transfer` `{"to": "+14255550123"}` (or a Teams user's
/// `user2@adatum.biz`): the Teams user transfers an answered call (DR-XFER-3: a REFER
/// to the SBC; DR-XFER-2: drhub as referee when the SBC lists no REFER). With
/// `"consult": "<Call-ID>"` the transfer is consultative (RFC 5589 §7): the other,
/// answered call of the same user through an SBC is the consultation, its party the
/// target (`to` may be left out) and its dialog the one the transfer's INVITE replaces.
/// `202` at once; the call ends `transferred to ...` when the SBC's NOTIFY says the
/// transfer succeeded (or drhub's own INVITE was answered). `400` for a bad target,
/// `404`, `409` as for hold.
async fn transfer(
    State(api): State<Api>,
    Path(call_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    use crate::call::transfer::Target;
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    let body: Value = serde_json::from_slice(&body).map_err(|e| {
        bad(format!(
            "the body must be JSON such as {{\"to\": \"+14255550123\"}}: {e}"
        ))
    })?;
    let calls = api.hub.calls.snapshot();
    let live = calls.iter().find(|c| *c.call_id == *call_id);
    let consultation = match body["consult"].as_str() {
        None => None,
        Some(other) => Some(consultation(&api, live, other).await?),
    };
    let to = match (body["to"].as_str(), &consultation) {
        (Some(to), _) => to.to_owned(),
        (None, Some(c)) => c
            .number
            .clone()
            .ok_or_else(|| bad("the consultation call's party has no number: give `to`".into()))?,
        (None, None) => {
            return Err(bad(
                "`to` is required: a +E.164 number or a user's SIP address".into(),
            ))
        }
    };
    let target = Target::parse(&to).ok_or_else(|| {
        bad(format!(
            "to: `{}` is neither a +E.164 number nor a SIP address",
            to.escape_debug()
        ))
    })?;
    let dir = api.hub.directory();
    let user = live
        .and_then(|c| c.user.parse::<crate::config::SipAddress>().ok())
        .and_then(|u| dir.find_user(&u));
    // The leg drhub places itself if the SBC cannot take a REFER (DR-XFER-2): to a
    // number, through the transferring user's voice routing.
    let via = match &target {
        Target::User(u) => {
            if consultation.is_some() {
                return Err(bad(
                    "a consultation call goes through an SBC: its target is a number, not a user"
                        .into(),
                ));
            }
            // DR-XFER-4: a user of the call's own tenant.
            let address = u
                .parse::<crate::config::SipAddress>()
                .map_err(|e| bad(format!("to: {e}")))?;
            let found = dir
                .find_user(&address)
                .map(|(t, _)| dir.tenant(t).id.clone())
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::NOT_FOUND,
                        format!("{u} is no user of any tenant"),
                    )
                })?;
            if let Some(tenant) = live.map(|c| &c.tenant) {
                if **tenant != *found.as_str() {
                    return Err(bad(format!(
                        "to: {u} is a user of tenant {found}, not of the call's tenant {tenant}"
                    )));
                }
            }
            dir.find_user(&address)
                .map(|(_, u)| crate::call::router::transfer_forks(&api.hub, u))
                .unwrap_or_default()
        }
        Target::Number(n) => user
            .and_then(|(_, u)| {
                let prefer = consultation.as_ref().map(|c| &*c.trunk);
                let name = format!("transfer to {n}");
                crate::call::router::pstn_fork(&api.hub, u, n, None, name, prefer)
            })
            .into_iter()
            .collect(),
    };
    let consultative = consultation.as_ref().map(|c| c.call.clone());
    let order = crate::call::TransferOrder {
        target,
        via,
        consultation,
    };
    tell_answered(
        &api,
        &call_id,
        crate::call::CallEvent::Transfer(Box::new(order)),
    )?;
    info!(call_id = %call_id, to, consult = ?consultative, "transfer through the API");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "call_id": call_id,
            "requested": "transfer",
            "to": to,
            "consult": consultative,
        })),
    ))
}

/// The consultation call `other` of a consultative transfer of call `live`: an answered
/// call of the same user through an SBC, asked for its dialog. `404` when there is no
/// such call, `400` when it is the call itself or another user's, `409` when it is not
/// answered.
async fn consultation(
    api: &Api,
    live: Option<&crate::call::router::LiveCall>,
    other: &str,
) -> Result<crate::call::transfer::Consultation, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    let calls = api.hub.calls.snapshot();
    let found = calls.iter().find(|c| *c.call_id == *other).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("consult: no call up with Call-ID `{other}`"),
        )
    })?;
    if let Some(live) = live {
        if live.call_id == found.call_id {
            return Err(bad("consult: a call cannot be its own consultation".into()));
        }
        if live.user != found.user {
            return Err(bad(format!(
                "consult: call `{other}` is {}'s, not {}'s",
                found.user, live.user
            )));
        }
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let unanswered = || {
        ApiError::new(
            StatusCode::CONFLICT,
            format!("consult: call `{other}` is not answered"),
        )
    };
    if !api
        .hub
        .calls
        .tell(other, crate::call::CallEvent::Consult(tx))
    {
        return Err(unanswered());
    }
    match tokio::time::timeout(std::time::Duration::from_secs(2), rx).await {
        Ok(Ok(Some(c))) => Ok(c),
        _ => Err(unanswered()),
    }
}

/// Gives an answered call up an operator's event: `404` for no such call, `409` for a
/// call not answered yet.
fn tell_answered(api: &Api, call_id: &str, event: crate::call::CallEvent) -> Result<(), ApiError> {
    let calls = &api.hub.calls;
    let gone = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no call up with Call-ID `{call_id}`"),
        )
    };
    let state = calls
        .snapshot()
        .iter()
        .find(|c| *c.call_id == *call_id)
        .map(|c| c.state)
        .ok_or_else(gone)?;
    if matches!(
        state,
        crate::call::router::CallState::Trying | crate::call::router::CallState::Ringing
    ) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "call `{call_id}` is {}: only an answered call can be held, resumed or transferred",
                state.as_str()
            ),
        ));
    }
    if calls.tell(call_id, event) {
        Ok(())
    } else {
        Err(gone())
    }
}

/// `GET /api/route?user=user1@adatum.biz&number=+442071234567`: where a call from the
/// user to the number would go (DR-OUT-1) with the SBCs' health now (inactive ones last,
/// DR-OPT-3), step by step. A `+` in the query is a plus, not a space.
async fn route(State(api): State<Api>, RawQuery(query): RawQuery) -> Result<Json<Value>, ApiError> {
    let bad = |m: &str| ApiError::new(StatusCode::BAD_REQUEST, m);
    let params = query_params(query.as_deref().unwrap_or(""));
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let user = param("user").ok_or_else(|| bad("`user` is required (user=user1@adatum.biz)"))?;
    let number =
        param("number").ok_or_else(|| bad("`number` is required (number=+14255550100)"))?;
    let address = user
        .parse::<crate::config::SipAddress>()
        .map_err(|e| bad(&format!("user: {e}")))?;
    let hub = &api.hub;
    let dir = hub.directory();
    let (tenant, caller) = dir.find_user(&address).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{address} is no user of any tenant"),
        )
    })?;
    let decision = dir.route(tenant, caller, number, |fqdn| {
        hub.health.state(fqdn.as_str()) == Some(crate::health::SbcState::Inactive)
    });
    let mut v = json!({
        "tenant": decision.tenant,
        "user": decision.user.to_string(),
        "dialled": decision.dialled,
        "number": decision.number,
        "normalized_by": decision.normalization.applied.as_ref().map(|r| &r.name),
        "policy": decision.policy.name,
        "explanation": decision.to_string(),
    });
    match decision.routed() {
        Some(r) => {
            v["routed"] = json!(true);
            v["usage"] = json!(r.usage);
            v["gateways"] = r
                .gateways
                .iter()
                .map(|g| {
                    json!({
                        "fqdn": g.fqdn.to_string(),
                        "port": g.port,
                        "state": g.state.to_string(),
                        "route": g.route,
                        "priority": g.priority,
                    })
                })
                .collect();
        }
        None => {
            let e = crate::diagnostics::Diagnostic::NoRoute.entry();
            v["routed"] = json!(false);
            v["status"] = json!(e.status);
            v["code"] = json!(e.code);
        }
    }
    Ok(Json(v))
}

/// `k=v&k=v` with `%XX` decoded; `+` stays a plus (numbers are written `+E164`).
fn query_params(query: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            match (
                b[i],
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                (b'%', Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                (c, _, _) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// `GET /api/datacenters`: every datacenter and its mode.
async fn datacenters(State(api): State<Api>) -> Json<Value> {
    let list: Vec<Value> = api
        .hub
        .datacenters
        .list()
        .into_iter()
        .map(|(name, mode)| mode_json(&name, mode))
        .collect();
    Json(json!({ "datacenters": list }))
}

/// `POST /api/datacenters/{name}` with `{"mode": "busy", "retry_after": 30}`: sets a
/// datacenter's fault mode (DR-DC-1).
async fn set_datacenter(
    State(api): State<Api>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    // Any Content-Type: `curl -d '{...}'` sends a form type.
    let body: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body must be JSON such as {{\"mode\": \"busy\"}}: {e}"),
        )
    })?;
    if !api.hub.datacenters.contains(&name) {
        let known: Vec<String> = api
            .hub
            .datacenters
            .list()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no datacenter named `{name}`; there are: {}",
                known.join(", ")
            ),
        ));
    }
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    let mode = body
        .get("mode")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("`mode` is required: normal, busy, refuse, reset or silent".into()))?;
    let retry_after = match body.get("retry_after") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| (1..=86_400).contains(n))
                .ok_or_else(|| bad("`retry_after` must be whole seconds, 1 to 86400".into()))?,
        ),
    };
    let mode = Mode::parse(mode, retry_after).map_err(bad)?;
    let was = api
        .hub
        .datacenters
        .set(&name, mode)
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e.to_string()))?;
    info!(datacenter = %name, %mode, "datacenter mode set through the API");
    let mut v = mode_json(&name, mode);
    v["was"] = json!(was.name());
    Ok(Json(v))
}

/// A failed request to a running daemon's API (the CLI's `status` and `datacenter`).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the control API at {address}: {source} (is the daemon running, with [api] address = \"{address}\"?)")]
    Connect {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("control API at {address}: {source}")]
    Io {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("control API at {address}: the answer is not HTTP")]
    NotHttp { address: SocketAddr },
}

/// One HTTP/1.1 request to the API of a running daemon, `Connection: close`; returns the
/// status and the body. Small on purpose: the CLI talks to its own daemon on loopback.
pub async fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Value), ClientError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = |source| ClientError::Io { address, source };
    let mut tcp = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|source| ClientError::Connect { address, source })?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nAccept: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).await.map_err(io)?;
    tcp.write_all(body.as_bytes()).await.map_err(io)?;
    // Read to the end of the answer: its Content-Length when it gives one (a server may
    // keep the connection open after it, chromedriver does despite `Connection: close`),
    // else until the server closes.
    let mut answer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = tcp.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
        if let Some(whole) = answer_length(&answer) {
            if answer.len() >= whole {
                answer.truncate(whole);
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or(ClientError::NotHttp { address })?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(ClientError::NotHttp { address })?;
    let value = serde_json::from_str(body).unwrap_or_else(|_| json!({ "body": body }));
    Ok((status, value))
}

/// The length of a whole HTTP answer, head and body, once its head is in and gives a
/// Content-Length.
fn answer_length(answer: &[u8]) -> Option<usize> {
    let head_end = memchr::memmem::find(answer, b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&answer[..head_end]).ok()?;
    let length = head.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name.trim().eq_ignore_ascii_case("content-length") {
            value.trim().parse::<usize>().ok()
        } else {
            None
        }
    })?;
    Some(head_end + length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_or_basic_with_the_token_as_password() {
        for (given, ok) in [
            (Some("Bearer s3cret"), true),
            (Some("bearer s3cret"), true),
            (Some("Bearer wrong"), false),
            (Some("Basic YWRtaW46czNjcmV0"), true), // admin:s3cret
            (Some("Basic OnMzY3JldA=="), true),     // :s3cret
            (Some("Basic YWRtaW46d3Jvbmc="), false), // admin:wrong
            (Some("Basic %%%"), false),
            (Some("Digest x"), false),
            (Some("s3cret"), false),
            (None, false),
        ] {
            assert_eq!(authorized(given, "s3cret"), ok, "{given:?}");
        }
    }

    #[test]
    fn query_params_decode_percent_and_keep_plus() {
        assert_eq!(
            query_params("user=user1%40adatum.biz&number=+442071234567&x"),
            vec![
                ("user".into(), "user1@adatum.biz".into()),
                ("number".into(), "+442071234567".into()),
                ("x".into(), String::new()),
            ]
        );
        assert_eq!(query_params("n=%2B1%2"), vec![("n".into(), "+1%2".into())]);
        assert_eq!(query_params(""), vec![]);
    }
}
