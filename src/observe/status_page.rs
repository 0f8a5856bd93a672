//! The status page (issue 10): `GET /` on the API address draws what the status API,
//! the calls API and the conformance report say (the same JSON, so the page and the API
//! never disagree) as one HTML page; `GET /calls/{Call-ID}` draws a call's SIP ladder
//! from the messages the tap kept ([`super::ladder`]). Plain server-rendered HTML, an
//! inline style sheet and a few lines of script that refresh the page every two seconds:
//! no CDN, no framework, works on a lab machine without internet.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use serde_json::Value;

use super::ladder::Rung;
use crate::transport::tap::Way;

/// What the main page shows: the JSON of `GET /api/status`, `GET /api/calls` and
/// `GET /api/report`.
pub struct Overview<'a> {
    pub status: &'a Value,
    pub calls: &'a Value,
    pub report: &'a Value,
    /// Whether ladders are kept (`[api] ladder_calls` > 0).
    pub ladders: bool,
}

/// The main page.
pub fn overview(o: &Overview<'_>) -> String {
    let mut h = head("drhub status");
    let version = o.status["version"].as_str().unwrap_or("");
    let _ = write!(
        h,
        "<header><h1>drhub <small>{}</small></h1>{}</header><main>",
        esc(version),
        refresh_switch()
    );
    counters(&mut h, o.status);
    listeners(&mut h, o.status);
    sbcs(&mut h, o.status);
    calls_table(&mut h, "live", "Calls up", &o.calls["calls"], o.ladders);
    calls_table(
        &mut h,
        "recent",
        "Last calls",
        &o.calls["recent"],
        o.ladders,
    );
    report(&mut h, o.report);
    h.push_str("</main>");
    h.push_str(SCRIPT);
    h.push_str("</body></html>\n");
    h
}

/// A call's page: its facts and its ladder. `call` is the call's JSON as
/// `GET /api/calls/{id}` gives it; `names` labels peers (an SBC's address → its FQDN).
pub fn call_page(call: &Value, rungs: &[Rung], names: &HashMap<SocketAddr, String>) -> String {
    let id = call["call_id"].as_str().unwrap_or("");
    let mut h = head(&format!("drhub call {id}"));
    let _ = write!(
        h,
        "<header><h1><a href=\"/\">drhub</a> · call</h1>{}</header><main>",
        refresh_switch()
    );
    let _ = write!(
        h,
        "<section id=\"call\"><h2>{}</h2><table class=\"facts\">",
        esc(id)
    );
    for (label, key) in [
        ("Direction", "direction"),
        ("Tenant", "tenant"),
        ("User", "user"),
        ("Number", "number"),
        ("Trunk", "trunk"),
        ("State", "state"),
    ] {
        if let Some(v) = text_of(&call[key]) {
            let _ = write!(h, "<tr><th>{label}</th><td>{}</td></tr>", esc(&v));
        }
    }
    let _ = write!(
        h,
        "<tr><th>Started</th><td>{}</td></tr>",
        clock(call["started"].as_f64())
    );
    if let Some(outcome) = outcome_text(call) {
        let _ = write!(h, "<tr><th>Outcome</th><td>{}</td></tr>", esc(&outcome));
    }
    if let Some(ids) = call["legs"].as_array() {
        let ids: Vec<String> = ids.iter().filter_map(|v| v.as_str()).map(esc).collect();
        let _ = write!(
            h,
            "<tr><th>Call-IDs</th><td class=\"mono\">{}</td></tr>",
            ids.join("<br>")
        );
    }
    h.push_str("</table></section>");
    // A call with one SBC (no failover) names it by its trunk even when its connection
    // is gone (or was plain TCP, with no certificate to name it).
    let mut sbcs: Vec<SocketAddr> = rungs
        .iter()
        .filter(|r| &*r.listener != crate::transport::ENDPOINT_LISTENER)
        .map(|r| r.peer)
        .collect();
    sbcs.sort_unstable();
    sbcs.dedup();
    let mut names = names.clone();
    if let ([only], Some(trunk)) = (sbcs.as_slice(), call["trunk"].as_str()) {
        names.entry(*only).or_insert_with(|| trunk.to_owned());
    }
    ladder(&mut h, rungs, &names);
    h.push_str("</main>");
    h.push_str(SCRIPT);
    h.push_str("</body></html>\n");
    h
}

/// A page for a call drhub knows nothing of (404).
pub fn not_found(what: &str) -> String {
    let mut h = head("drhub: not found");
    let _ = writeln!(
        h,
        "<header><h1><a href=\"/\">drhub</a></h1></header><main><p class=\"bad\">{}</p></main></body></html>",
        esc(what)
    );
    h
}

fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{}</title><style>{STYLE}</style></head><body>",
        esc(title)
    )
}

fn refresh_switch() -> &'static str {
    "<label class=\"refresh\"><input type=\"checkbox\" id=\"refresh\" checked> refresh every 2 s</label>\
     <span id=\"updated\"></span>"
}

fn counters(h: &mut String, status: &Value) {
    let calls = &status["calls"];
    let c = &status["counters"];
    h.push_str("<section id=\"counters\"><h2>Totals</h2><div class=\"tiles\">");
    for (label, v) in [
        ("calls up", &calls["up"]),
        ("calls started", &calls["started"]),
        ("answered", &calls["answered"]),
        ("failed", &calls["failed"]),
        ("requests", &c["requests"]),
        ("rejected", &c["rejected"]),
        ("shed (503)", &c["shed"]),
        ("malformed", &c["malformed"]),
        ("connections", &c["connections"]),
        ("transactions", &c["transactions"]),
    ] {
        let _ = write!(
            h,
            "<div class=\"tile\"><b>{}</b><span>{label}</span></div>",
            v.as_u64().unwrap_or(0)
        );
    }
    h.push_str("</div></section>");
}

fn listeners(h: &mut String, status: &Value) {
    h.push_str(
        "<section id=\"listeners\"><h2>Listeners and datacenters</h2><table>\
         <tr><th>Name</th><th>Address</th><th>Transport</th><th>FQDN</th><th>Mode</th></tr>",
    );
    for l in status["listeners"].as_array().into_iter().flatten() {
        let mode = match l["datacenter"]["mode"].as_str() {
            Some(m) => {
                let retry = l["datacenter"]["retry_after"]
                    .as_u64()
                    .map(|r| format!(" (Retry-After {r})"))
                    .unwrap_or_default();
                format!("<span class=\"mode {m}\">{}{retry}</span>", esc(m))
            }
            None => "—".into(),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{mode}</td></tr>",
            esc(l["name"].as_str().unwrap_or("")),
            esc(l["address"].as_str().unwrap_or("")),
            esc(l["transport"].as_str().unwrap_or("")),
            esc(l["fqdn"].as_str().unwrap_or("—")),
        );
    }
    h.push_str("</table></section>");
}

fn sbcs(h: &mut String, status: &Value) {
    h.push_str(
        "<section id=\"sbcs\"><h2>SBCs</h2><table><tr><th>FQDN</th><th>Tenant</th>\
         <th>Health</th><th>Connections</th><th>Certificate</th><th>OPTIONS in</th>\
         <th>OPTIONS out</th><th>Calls up</th></tr>",
    );
    for s in status["sbcs"].as_array().into_iter().flatten() {
        let fqdn = s["fqdn"].as_str().unwrap_or("");
        let state = s["state"].as_str().unwrap_or("unknown");
        let enabled = s["enabled"].as_bool().unwrap_or(true);
        let health = match enabled {
            true => format!("<span class=\"state {state}\">{}</span>", esc(state)),
            false => "<span class=\"state disabled\">disabled</span>".into(),
        };
        let conns: Vec<String> = s["connections"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "{} {} via {}",
                    esc(c["direction"].as_str().unwrap_or("")),
                    esc(c["peer"].as_str().unwrap_or("")),
                    esc(c["datacenter"].as_str().unwrap_or(""))
                )
            })
            .collect();
        let cert = match &s["certificate"] {
            Value::Object(_) => {
                let names: Vec<&str> = s["certificate"]["names"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                format!(
                    "{}<br><small>until {}</small>",
                    esc(&names.join(", ")),
                    esc(s["certificate"]["not_after"].as_str().unwrap_or(""))
                )
            }
            _ => "—".into(),
        };
        let o = &s["options"];
        let (opt_in, opt_out) = match o {
            Value::Object(_) => (
                format!(
                    "{} · last {} on {}",
                    o["received"].as_u64().unwrap_or(0),
                    clock(o["last_received"].as_f64()),
                    esc(o["last_received_on"].as_str().unwrap_or(""))
                ),
                format!(
                    "{} sent, {} answered · {}",
                    o["sent"].as_u64().unwrap_or(0),
                    o["answered"].as_u64().unwrap_or(0),
                    esc(&text_of(&o["last_result"]).unwrap_or_else(|| "—".into()))
                ),
            ),
            _ => ("none yet".into(), "—".into()),
        };
        let _ = write!(
            h,
            "<tr class=\"sbc\" data-fqdn=\"{f}\"><td><b>{f}</b></td><td>{}</td><td>{health}</td>\
             <td class=\"mono\">{}</td><td>{cert}</td><td>{opt_in}</td><td>{opt_out}</td><td>{}</td></tr>",
            esc(s["tenant"].as_str().unwrap_or("")),
            if conns.is_empty() { "none".into() } else { conns.join("<br>") },
            s["calls_up"].as_u64().unwrap_or(0),
            f = esc(fqdn),
        );
    }
    h.push_str("</table></section>");
}

/// The most calls a table lists.
const ROWS_MAX: usize = 100;

fn calls_table(h: &mut String, id: &str, title: &str, calls: &Value, ladders: bool) {
    let list = calls.as_array().map(Vec::as_slice).unwrap_or_default();
    let _ = write!(
        h,
        "<section id=\"{id}\"><h2>{title} <small>({})</small></h2>",
        list.len()
    );
    if list.is_empty() {
        h.push_str("<p class=\"none\">none</p></section>");
        return;
    }
    h.push_str(
        "<table><tr><th>Started</th><th>Direction</th><th>User</th><th>Number</th>\
         <th>Trunk</th><th>State</th><th>Legs</th><th>Call-ID</th></tr>",
    );
    // Newest first, and no more than a page can show: under a load test the page must
    // not render every one of thousands of calls every two seconds.
    let mut newest: Vec<&Value> = list.iter().collect();
    newest.sort_by(|a, b| {
        let started = |c: &Value| c["started"].as_f64().unwrap_or(0.0);
        started(b).total_cmp(&started(a))
    });
    for c in newest.iter().take(ROWS_MAX) {
        let call_id = c["call_id"].as_str().unwrap_or("");
        let state = c["state"].as_str().unwrap_or("");
        let shown = match outcome_text(c) {
            Some(o) => format!("<span class=\"state {state}\">{}</span>", esc(&o)),
            None => format!("<span class=\"state {state}\">{}</span>", esc(state)),
        };
        let link = match ladders {
            true => format!(
                "<a class=\"ladder\" href=\"/calls/{}\">{}</a>",
                url_path(call_id),
                esc(call_id)
            ),
            false => esc(call_id),
        };
        let _ = write!(
            h,
            "<tr class=\"call\" data-call-id=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{shown}</td><td>{}</td><td class=\"mono\">{link}</td></tr>",
            esc(call_id),
            clock(c["started"].as_f64()),
            esc(c["direction"].as_str().unwrap_or("")),
            esc(c["user"].as_str().unwrap_or("")),
            esc(c["number"].as_str().unwrap_or("—")),
            esc(c["trunk"].as_str().unwrap_or("")),
            c["legs"].as_array().map_or(1, Vec::len),
        );
    }
    if list.len() > ROWS_MAX {
        let _ = write!(
            h,
            "<tr class=\"more\"><td colspan=\"8\">and {} more: <code>GET /api/calls</code> lists every one</td></tr>",
            list.len() - ROWS_MAX
        );
    }
    h.push_str("</table></section>");
}

fn report(h: &mut String, report: &Value) {
    h.push_str("<section id=\"report\"><h2>Conformance report</h2>");
    let sbcs = report["sbcs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if sbcs
        .iter()
        .all(|s| s["findings"].as_array().is_none_or(Vec::is_empty))
    {
        h.push_str("<p class=\"none\">nothing to report</p></section>");
        return;
    }
    h.push_str(
        "<table><tr><th>SBC</th><th>Requirement</th><th>Severity</th><th>What</th>\
         <th>Count</th><th>Last Call-ID</th><th>Last</th><th>Detail</th></tr>",
    );
    for s in sbcs {
        for f in s["findings"].as_array().into_iter().flatten() {
            let severity = f["severity"].as_str().unwrap_or("");
            let _ = write!(
                h,
                "<tr class=\"finding\"><td>{}</td><td><b>{}</b></td><td><span class=\"sev {severity}\">{}</span></td>\
                 <td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(s["sbc"].as_str().unwrap_or("")),
                esc(f["requirement"].as_str().unwrap_or("")),
                esc(severity),
                esc(f["what"].as_str().unwrap_or("")),
                f["count"].as_u64().unwrap_or(0),
                esc(f["last_call_id"].as_str().unwrap_or("—")),
                clock(f["last_at"].as_f64()),
                esc(f["detail"].as_str().unwrap_or("")),
            );
        }
    }
    h.push_str("</table></section>");
}

/// Layout of the ladder drawing, in pixels.
const TIME_COLUMN: usize = 110;
const COLUMN: usize = 260;
const TOP: usize = 64;
const ROW: usize = 30;

/// The call's SIP as a ladder: one column per party (drhub in the middle of its SBC and
/// its SIP clients), one arrow per message, each a link to the message below.
fn ladder(h: &mut String, rungs: &[Rung], names: &HashMap<SocketAddr, String>) {
    h.push_str("<section id=\"ladder-section\"><h2>SIP ladder</h2>");
    if rungs.is_empty() {
        h.push_str(
            "<p class=\"none\">no messages kept for this call (only the last \
             <code>[api] ladder_calls</code> calls are)</p></section>",
        );
        return;
    }
    // Columns: the first party drhub heard from (or spoke to) on the left, drhub, then
    // every other party in the order it appears.
    let mut parties: Vec<SocketAddr> = Vec::new();
    for r in rungs {
        if !parties.contains(&r.peer) {
            parties.push(r.peer);
        }
    }
    let column = |peer: SocketAddr| -> usize {
        match parties.iter().position(|p| *p == peer) {
            Some(0) => 0,
            Some(i) => i + 1,
            None => 1,
        }
    };
    let columns = parties.len() + 1;
    let x = |c: usize| TIME_COLUMN + c * COLUMN + COLUMN / 2;
    let width = TIME_COLUMN + columns * COLUMN;
    let height = TOP + rungs.len() * ROW + 20;
    let _ = write!(
        h,
        "<div class=\"ladder-wrap\"><svg id=\"ladder\" xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" \
         markerWidth=\"8\" markerHeight=\"8\" orient=\"auto-start-reverse\">\
         <path d=\"M0,0 L10,5 L0,10 z\"/></marker></defs>"
    );
    let local = rungs[0].local;
    for c in 0..columns {
        let (title, sub) = match c {
            1 => ("drhub".to_owned(), local.to_string()),
            _ => {
                let peer = parties[if c == 0 { 0 } else { c - 1 }];
                let transport = rungs
                    .iter()
                    .find(|r| r.peer == peer)
                    .map(|r| r.transport.to_string())
                    .unwrap_or_default();
                let name = names
                    .get(&peer)
                    .cloned()
                    .unwrap_or_else(|| peer.to_string());
                (name, format!("{peer} {transport}"))
            }
        };
        let _ = write!(
            h,
            "<text class=\"party\" x=\"{cx}\" y=\"20\">{}</text>\
             <text class=\"party-sub\" x=\"{cx}\" y=\"38\">{}</text>\
             <line class=\"life\" x1=\"{cx}\" y1=\"46\" x2=\"{cx}\" y2=\"{height}\"/>",
            esc(&title),
            esc(&sub),
            cx = x(c),
        );
    }
    let t0 = rungs[0].at;
    for (i, r) in rungs.iter().enumerate() {
        let y = TOP + i * ROW + ROW / 2;
        let (from, to) = match r.way {
            Way::In => (column(r.peer), 1),
            Way::Out => (1, column(r.peer)),
        };
        let (x1, x2) = (x(from), x(to));
        let label = arrow_label(r);
        let class = arrow_class(r);
        let offset = r.at.duration_since(t0).unwrap_or_default().as_secs_f64();
        let _ = write!(
            h,
            "<a href=\"#m{i}\" class=\"rung\"><title>{}</title>\
             <rect class=\"hit\" x=\"0\" y=\"{hy}\" width=\"{width}\" height=\"{ROW}\"/>\
             <text class=\"time\" x=\"4\" y=\"{ty}\">{offset:.3} s</text>\
             <line class=\"arrow {class}\" x1=\"{x1}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" marker-end=\"url(#arrow)\"/>\
             <text class=\"label {class}\" x=\"{lx}\" y=\"{ly}\">{}</text></a>",
            esc(r.start_line()),
            esc(&label),
            hy = y - ROW / 2,
            ty = y + 4,
            lx = x1.min(x2) + COLUMN / 2,
            ly = y - 5,
        );
    }
    h.push_str("</svg></div></section><section id=\"messages\"><h2>Messages</h2>");
    for (i, r) in rungs.iter().enumerate() {
        let _ = write!(
            h,
            "<details id=\"m{i}\"><summary><span class=\"mono\">{} {} {} {}</span> {}</summary><pre>{}</pre></details>",
            clock(Some(crate::api::unix(r.at))),
            match r.way {
                Way::In => "←",
                Way::Out => "→",
            },
            esc(&r.peer.to_string()),
            esc(&r.listener),
            esc(r.start_line()),
            esc(&r.text),
        );
    }
    h.push_str("</section>");
}

/// `INVITE (SDP)`, `180 Ringing`, `200 OK (SDP)`: as sngrep labels its arrows.
fn arrow_label(r: &Rung) -> String {
    let line = r.start_line();
    let short = match line.strip_prefix("SIP/2.0 ") {
        Some(status) => status.to_owned(),
        None => line.split(' ').next().unwrap_or("").to_owned(),
    };
    match r.has_body() {
        true if r.text.contains("application/sdp") => format!("{short} (SDP)"),
        _ => short,
    }
}

fn arrow_class(r: &Rung) -> &'static str {
    match r
        .start_line()
        .strip_prefix("SIP/2.0 ")
        .and_then(|s| s.get(..1))
    {
        Some("1") => "provisional",
        Some("2") => "success",
        Some(_) => "failure",
        None => "request",
    }
}

fn outcome_text(call: &Value) -> Option<String> {
    let status = call["status"].as_u64()?;
    let mut s = status.to_string();
    if let Some(code) = call["code"].as_u64() {
        let _ = write!(s, " ({code})");
    }
    if let Some(reason) = call["reason"].as_str() {
        let _ = write!(s, " {reason}");
    }
    Some(s)
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A Unix time as `HH:MM:SS.mmm` UTC (the page is for today's lab session; the API has
/// the full time).
fn clock(t: Option<f64>) -> String {
    match t {
        Some(t) if t > 0.0 => {
            let ms = (t * 1000.0) as u64;
            let day_ms = ms % 86_400_000;
            format!(
                "{:02}:{:02}:{:02}.{:03}",
                day_ms / 3_600_000,
                day_ms / 60_000 % 60,
                day_ms / 1000 % 60,
                day_ms % 1000
            )
        }
        _ => "—".into(),
    }
}

/// Escapes text for HTML (element content and quoted attributes).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a Call-ID for a URL path segment (RFC 3986 unreserved kept).
fn url_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

const STYLE: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}\
header{display:flex;align-items:baseline;gap:1.5em;padding:.6em 1.2em;background:#1d2b4f;color:#fff}\
header h1{margin:0;font-size:20px}header a{color:#fff;text-decoration:none}\
header small{font-weight:normal;opacity:.7}.refresh{margin-left:auto}#updated{opacity:.7}\
main{padding:0 1.2em 2em}h2{font-size:16px;margin:1.4em 0 .5em}h2 small{font-weight:normal;color:#667}\
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0002;min-width:40%}\
th,td{padding:.35em .7em;border-bottom:1px solid #e3e6ec;text-align:left;vertical-align:top}\
th{background:#eef1f6;font-weight:600}.mono,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}\
.tiles{display:flex;flex-wrap:wrap;gap:.6em}.tile{background:#fff;box-shadow:0 1px 2px #0002;padding:.5em .9em;min-width:7em}\
.tile b{display:block;font-size:20px}.tile span{color:#667;font-size:12px}\
.state,.mode,.sev{padding:.1em .5em;border-radius:1em;background:#e3e6ec;white-space:nowrap}\
.active,.answered,.normal{background:#cdeccf}.inactive,.refuse,.reset,.silent,.broke{background:#f6c9c9}\
.ringing,.trying,.busy,.held,.nearly{background:#fbe7b5}.disabled{background:#ddd;color:#777}\
.none{color:#667}.bad{color:#a11}\
.ladder-wrap{overflow-x:auto;background:#fff;box-shadow:0 1px 2px #0002}\
svg text{font:12px ui-monospace,Menlo,Consolas,monospace}\
.party{font-weight:bold;text-anchor:middle}.party-sub{text-anchor:middle;fill:#667}\
.life{stroke:#9aa3b5;stroke-dasharray:4 3}.arrow{stroke:#1d2b4f;stroke-width:1.5}\
.label{text-anchor:middle;fill:#1d2b4f}.time{fill:#667}\
.arrow.provisional{stroke:#8a6d00}.label.provisional{fill:#8a6d00}\
.arrow.success{stroke:#1d7a2b}.label.success{fill:#1d7a2b}\
.arrow.failure{stroke:#b11d1d}.label.failure{fill:#b11d1d}\
.hit{fill:transparent}.rung:hover .hit{fill:#eef1f6}.rung:hover .label{font-weight:bold}\
details{background:#fff;margin:.2em 0;padding:.3em .7em;box-shadow:0 1px 2px #0002}\
details:target{outline:2px solid #1d2b4f}pre{white-space:pre-wrap;margin:.5em 0}";

/// Refreshes `main` every two seconds while the box is ticked, keeping open messages
/// open and the scroll position where it is; an arrow's link opens its message.
const SCRIPT: &str = "<script>\
(function(){\
var box=document.getElementById('refresh'),up=document.getElementById('updated');\
function tick(){\
if(!box.checked){return;}\
fetch(location.origin+location.pathname,{cache:'no-store',credentials:'same-origin'}).then(function(r){\
if(!r.ok){throw new Error('HTTP '+r.status);}return r.text();}).then(function(t){\
var open=Array.prototype.map.call(document.querySelectorAll('details[open]'),function(d){return d.id;});\
var doc=new DOMParser().parseFromString(t,'text/html');\
var now=doc.querySelector('main');if(!now){return;}\
document.querySelector('main').innerHTML=now.innerHTML;\
open.forEach(function(id){var d=document.getElementById(id);if(d){d.open=true;}});\
up.textContent='updated '+new Date().toLocaleTimeString();\
}).catch(function(e){up.textContent='not updated: '+e.message;});}\
setInterval(tick,2000);\
function openHash(){var d=location.hash&&document.getElementById(location.hash.slice(1));\
if(d&&d.tagName==='DETAILS'){d.open=true;}}\
window.addEventListener('hashchange',openHash);openHash();\
})();\
</script>";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Transport;
    use serde_json::json;
    use std::time::UNIX_EPOCH;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(url_path("a1b2@10.0.0.1/x y"), "a1b2%4010.0.0.1%2Fx%20y");
        assert_eq!(clock(Some(3_723.25)), "01:02:03.250");
        assert_eq!(clock(None), "—");
    }

    fn rung(way: Way, peer: &str, text: &str, ms: u64) -> Rung {
        Rung {
            at: UNIX_EPOCH + std::time::Duration::from_millis(1_000_000 + ms),
            way,
            transport: Transport::Tls,
            listener: "sip".into(),
            local: "127.0.0.1:5061".parse().unwrap(),
            peer: peer.parse().unwrap(),
            text: text.into(),
        }
    }

    /// An SBC's call forked to a SIP phone: the SBC on the left, drhub, then the
    /// phone; arrows point the way the messages went, labels as sngrep writes them.
    #[test]
    fn a_ladder_has_a_column_per_party_and_an_arrow_per_message() {
        let sdp = "Content-Type: application/sdp\r\n\r\nv=0\r\n";
        let rungs = [
            rung(
                Way::In,
                "10.0.0.1:4000",
                &format!("INVITE sip:x SIP/2.0\r\n{sdp}"),
                0,
            ),
            rung(Way::Out, "10.0.0.1:4000", "SIP/2.0 100 Trying\r\n\r\n", 1),
            rung(
                Way::Out,
                "10.0.0.9:5060",
                &format!("INVITE sip:p SIP/2.0\r\n{sdp}"),
                2,
            ),
            rung(
                Way::In,
                "10.0.0.9:5060",
                "SIP/2.0 486 Busy Here\r\n\r\n",
                30,
            ),
        ];
        let names = HashMap::from([(
            "10.0.0.1:4000".parse().unwrap(),
            "sbc1.adatum.biz".to_owned(),
        )]);
        let call =
            json!({"call_id": "c<1>", "state": "ended", "status": 486, "legs": ["c<1>", "p1"]});
        let page = call_page(&call, &rungs, &names);
        assert!(page.contains("<h2>c&lt;1&gt;</h2>"), "escaped Call-ID");
        assert!(page.contains(">sbc1.adatum.biz</text>"));
        assert!(page.contains(">drhub</text>"));
        assert!(page.contains(">10.0.0.9:5060</text>"));
        assert_eq!(page.matches("class=\"rung\"").count(), 4);
        // In: from the SBC's column (x 240) to drhub's (500); the phone is at 760.
        assert!(page.contains("x1=\"240\" y1=\"79\" x2=\"500\""), "{page}");
        assert!(page.contains("x1=\"500\" y1=\"139\" x2=\"760\""), "{page}");
        assert!(page.contains(">INVITE (SDP)</text>"));
        assert!(page.contains("class=\"label failure\" x=\"630\" y=\"164\">486 Busy Here</text>"));
        assert!(page.contains("0.030 s"));
        assert!(page.contains("<details id=\"m3\">"));
        assert!(
            page.contains("<tr><th>Outcome</th><td>486</td></tr>"),
            "{page}"
        );
    }

    /// Its connection gone (or plain TCP), a call's one SBC is named by the trunk.
    #[test]
    fn a_lone_sbc_is_named_by_the_calls_trunk() {
        let rungs = [
            rung(Way::In, "10.0.0.1:4000", "INVITE sip:x SIP/2.0\r\n\r\n", 0),
            rung(Way::Out, "10.0.0.1:4000", "SIP/2.0 100 Trying\r\n\r\n", 1),
        ];
        let call = json!({"call_id": "c1", "trunk": "sbc1.adatum.biz"});
        let page = call_page(&call, &rungs, &HashMap::new());
        assert!(page.contains(">sbc1.adatum.biz</text>"), "{page}");
    }

    /// Under load the page lists the newest 100 calls and says how many more.
    #[test]
    fn a_long_list_of_calls_is_cut_newest_first() {
        let calls: Vec<_> = (0..150)
            .map(|n| json!({"call_id": format!("c{n}"), "started": 1000.0 + n as f64}))
            .collect();
        let mut h = String::new();
        calls_table(&mut h, "live", "Calls up", &json!(calls), true);
        assert!(h.contains("Calls up <small>(150)</small>"));
        assert_eq!(h.matches("<tr class=\"call\"").count(), ROWS_MAX);
        let first = h.find("data-call-id=\"c149\"").expect("the newest");
        let last = h.find("data-call-id=\"c50\"").expect("the 100th newest");
        assert!(first < last);
        assert!(!h.contains("data-call-id=\"c49\""));
        assert!(h.contains("and 50 more"));
    }

    #[test]
    fn an_overview_lists_calls_with_links_and_findings() {
        let status = json!({
            "version": "0.1.0",
            "listeners": [{"name": "sip", "address": "127.0.0.1:5061", "transport": "tls",
                           "datacenter": {"name": "sip", "mode": "busy", "retry_after": 30}}],
            "sbcs": [{"fqdn": "sbc1.adatum.biz", "tenant": "adatum", "enabled": true, "state": "active",
                      "connections": [], "calls_up": 1}],
            "calls": {"up": 1}, "counters": {}
        });
        let calls = json!({
            "calls": [{"call_id": "a b", "direction": "inbound", "user": "user1@adatum.biz",
                       "trunk": "sbc1.adatum.biz", "state": "ringing", "legs": ["a b", "x"]}],
            "recent": []
        });
        let report = json!({"sbcs": [{"sbc": "sbc1.adatum.biz", "findings": [
            {"requirement": "DR-NH-3", "severity": "nearly", "what": "<RR>", "count": 2}]}]});
        let page = overview(&Overview {
            status: &status,
            calls: &calls,
            report: &report,
            ladders: true,
        });
        assert!(page.contains("href=\"/calls/a%20b\""));
        assert!(page.contains("Retry-After 30"));
        assert!(page.contains("<b>DR-NH-3</b>") && page.contains("&lt;RR&gt;"));
        assert!(page.contains("<section id=\"recent\"><h2>Last calls <small>(0)</small></h2><p class=\"none\">none</p>"));
    }
}
