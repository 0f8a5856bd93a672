//! `Get-CsOnlinePSTNGateway` objects into `[[tenant.trunk]]`s.

use std::ops::RangeInclusive;
use std::str::FromStr;

use super::cmdlets::Gateway;
use super::toml_text::{basic_string, Block};
use super::{Run, Source, Trunk};
use crate::config::Fqdn;

/// drhub's ranges, from `build_trunk`: a value outside them is left out with a note.
const PORTS: RangeInclusive<i64> = 1..=65535;
const FAILOVER_SECONDS: RangeInclusive<i64> = 1..=600;
const FAILURE_CODES: RangeInclusive<u16> = 300..=699;
/// drhub's `port` default, the SBC's when its gateway has none.
const DEFAULT_PORT: i64 = 5061;

impl Run {
    /// One trunk per gateway; a gateway without a usable FQDN, or given twice, is an
    /// error.
    pub(super) fn trunks(&mut self, gateways: Option<&Source<Gateway>>) -> Vec<Trunk> {
        let Some(source) = gateways else {
            return Vec::new();
        };
        let mut trunks: Vec<Trunk> = Vec::new();
        for (i, gateway) in source.objects.iter().enumerate() {
            let named = gateway.fqdn.as_deref().or(gateway.identity.as_deref());
            let fqdn = match named.map(Fqdn::from_str) {
                Some(Ok(fqdn)) => fqdn,
                Some(Err(e)) => {
                    self.issues.push(source.issue(format!("[{i}].Fqdn: {e}")));
                    continue;
                }
                None => {
                    self.issues
                        .push(source.issue(format!("[{i}]: no Fqdn or Identity")));
                    continue;
                }
            };
            if trunks.iter().any(|t| t.fqdn == fqdn) {
                self.issues.push(
                    source.issue(format!("[{i}].Fqdn: \"{fqdn}\" is also an earlier gateway")),
                );
                continue;
            }
            let block = trunk_block(&fqdn, gateway);
            trunks.push(Trunk { fqdn, block });
        }
        trunks
    }

    /// A trunk for a gateway a route names when no gateways were given: drhub's
    /// defaults, so that the routes can be imported on their own.
    pub(super) fn default_trunk(&mut self, fqdn: Fqdn, route: &str) -> Trunk {
        self.guess("Without Get-CsOnlinePSTNGateway, each gateway a route names is a trunk with drhub's defaults.");
        let mut b = Block::new("  ");
        b.comment(&format!(
            "named by Get-CsOnlineVoiceRoute {}; no Get-CsOnlinePSTNGateway was given: drhub's defaults",
            basic_string(route)
        ))
        .table_array("tenant.trunk")
        .key("fqdn", basic_string(fqdn.as_str()));
        lab_address(&mut b, DEFAULT_PORT);
        Trunk {
            fqdn,
            block: b.into_text(),
        }
    }
}

/// The trunk's text: each setting drhub has, then what it has not.
fn trunk_block(fqdn: &Fqdn, g: &Gateway) -> String {
    let mut t = TrunkText::default();
    let from = basic_string(g.identity.as_deref().unwrap_or(fqdn.as_str()));
    t.block
        .comment(&format!("from Get-CsOnlinePSTNGateway {from}"));
    if let Some(d) = g.description.as_deref().filter(|d| !d.trim().is_empty()) {
        t.block.comment(&format!("Description: {d}"));
    }
    t.block
        .table_array("tenant.trunk")
        .key("fqdn", basic_string(fqdn.as_str()));
    t.int("port", "SipSignalingPort", g.sip_signaling_port, PORTS);
    for (key, value) in [
        ("enabled", g.enabled),
        ("send_options", g.send_sip_options),
        ("media_bypass", g.media_bypass),
        ("forward_call_history", g.forward_call_history),
        ("forward_pai", g.forward_pai),
    ] {
        if let Some(v) = value {
            t.block.key(key, v);
        }
    }
    let sessions = 1..=i64::from(u32::MAX);
    let max = g.max_concurrent_sessions;
    t.int(
        "max_concurrent_sessions",
        "MaxConcurrentSessions",
        max,
        sessions,
    );
    if let Some(codes) = &g.failover_response_codes {
        t.response_codes(codes);
    }
    let failover = g.failover_time_seconds;
    t.int(
        "failover_time_seconds",
        "FailoverTimeSeconds",
        failover,
        FAILOVER_SECONDS,
    );
    let port = g.sip_signaling_port.filter(|p| PORTS.contains(p));
    lab_address(&mut t.block, port.unwrap_or(DEFAULT_PORT));
    for (name, value, what) in g.unmapped() {
        t.notes.push(format!("{name} {value} ({what})"));
    }
    for note in &t.notes {
        t.block.comment(&format!("not imported: {note}"));
    }
    t.block.into_text()
}

/// A trunk's lines, and notes on the values they could not take.
struct TrunkText {
    block: Block,
    notes: Vec<String>,
}

impl Default for TrunkText {
    fn default() -> TrunkText {
        TrunkText {
            block: Block::new("  "),
            notes: Vec::new(),
        }
    }
}

impl TrunkText {
    /// `key = value` when `value` is within drhub's `range`; a note otherwise.
    fn int(&mut self, key: &str, property: &str, value: Option<i64>, range: RangeInclusive<i64>) {
        match value {
            Some(v) if range.contains(&v) => {
                self.block.key(key, v);
            }
            Some(v) => self.notes.push(format!(
                "{property} {v} (drhub takes {} to {}; its default applies)",
                range.start(),
                range.end()
            )),
            None => {}
        }
    }

    /// `failover_response_codes` from `FailoverResponseCodes`: the SIP failure codes,
    /// and a note for anything else in the list.
    fn response_codes(&mut self, codes: &[String]) {
        let (valid, invalid): (Vec<_>, Vec<_>) = codes
            .iter()
            .map(|c| {
                (
                    c,
                    c.parse::<u16>().ok().filter(|n| FAILURE_CODES.contains(n)),
                )
            })
            .partition(|(_, n)| n.is_some());
        if !valid.is_empty() {
            let list: Vec<String> = valid
                .iter()
                .filter_map(|(_, n)| n.map(|n| n.to_string()))
                .collect();
            self.block
                .key("failover_response_codes", format!("[{}]", list.join(", ")));
        }
        if !invalid.is_empty() {
            let list: Vec<String> = invalid.iter().map(|(c, _)| basic_string(c)).collect();
            self.notes.push(format!(
                "FailoverResponseCodes {} (not SIP failure codes, 300 to 699)",
                list.join(", ")
            ));
        }
    }
}

/// The SBC's address in production means nothing in a lab: a commented line says where
/// to put the lab SBC's.
fn lab_address(b: &mut Block, port: i64) {
    b.comment(&format!(
        "address = \"127.0.0.1:{port}\"   # lab: where the lab SBC listens, if its FQDN does not resolve there"
    ));
}
