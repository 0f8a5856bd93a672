//! `Get-CsOnlineVoiceRoute` and `Get-CsOnlineVoiceRoutingPolicy` objects into
//! `[[tenant.voice_route]]`s and `[[tenant.voice_routing_policy]]`s.

use std::str::FromStr;

use super::cmdlets::{VoiceRoute, VoiceRoutingPolicy};
use super::toml_text::{basic_string, pattern_string, string_array, Block};
use super::{Policy, Run, Source, Trunk, UsageList};
use crate::config::{Fqdn, TeamsRegex, GLOBAL_POLICY};

impl Run {
    /// One route per voice route drhub can have; `trunks` gains a default trunk for each
    /// gateway named when no gateways were given.
    pub(super) fn routes(
        &mut self,
        routes: Option<&Source<VoiceRoute>>,
        trunks: &mut Vec<Trunk>,
        usages: &UsageList,
    ) -> Vec<String> {
        let Some(source) = routes else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, route) in source.objects.iter().enumerate() {
            let Some(name) = route.name.as_deref().or(route.identity.as_deref()) else {
                self.issues
                    .push(source.issue(format!("[{i}]: no Name or Identity")));
                continue;
            };
            let at = format!("[{i}] {}", basic_string(name));
            if let Some(why) = unroutable(route) {
                self.left_out
                    .push(format!("Route {}: {why}", basic_string(name)));
                continue;
            }
            let usage_list = match usages.resolve(&route.online_pstn_usages) {
                Ok(u) => u,
                Err(e) => {
                    self.issues
                        .push(source.issue(format!("{at}.OnlinePstnUsages: {e}")));
                    continue;
                }
            };
            let gateways = match self.route_gateways(route, name, trunks) {
                Ok(g) => g,
                Err(e) => {
                    self.issues
                        .push(source.issue(format!("{at}.OnlinePstnGatewayList: {e}")));
                    continue;
                }
            };
            if route
                .priority
                .is_some_and(|p| !(0..=i64::from(i32::MAX)).contains(&p))
            {
                self.issues.push(source.issue(format!(
                    "{at}.Priority: {} is not 0 to 2147483647",
                    route.priority.unwrap_or_default()
                )));
                continue;
            }
            out.push(route_block(name, route, &gateways, &usage_list));
        }
        out
    }

    /// The route's gateways as trunk FQDNs, once each. A gateway the gateways file lacks
    /// is an error; without a gateways file, it becomes a default trunk.
    fn route_gateways(
        &mut self,
        route: &VoiceRoute,
        name: &str,
        trunks: &mut Vec<Trunk>,
    ) -> Result<Vec<Fqdn>, String> {
        let mut out: Vec<Fqdn> = Vec::new();
        for gateway in &route.online_pstn_gateway_list {
            let fqdn = Fqdn::from_str(gateway)?;
            if out.contains(&fqdn) {
                continue;
            }
            if !trunks.iter().any(|t| t.fqdn == fqdn) {
                if let Some(file) = &self.gateways_file {
                    return Err(format!(
                        "{} is not in {file} (Get-CsOnlinePSTNGateway)",
                        basic_string(gateway)
                    ));
                }
                let trunk = self.default_trunk(fqdn.clone(), name);
                trunks.push(trunk);
            }
            out.push(fqdn);
        }
        Ok(out)
    }

    /// One policy per voice routing policy; a usage missing from the usages file is an
    /// error.
    pub(super) fn policies(
        &mut self,
        policies: Option<&Source<VoiceRoutingPolicy>>,
        usages: &UsageList,
    ) -> Vec<Policy> {
        let Some(source) = policies else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, policy) in source.objects.iter().enumerate() {
            let Some(identity) = policy.identity.as_deref() else {
                self.issues
                    .push(source.issue(format!("[{i}]: no Identity")));
                continue;
            };
            let name = policy_name(identity);
            match usages.resolve(&policy.online_pstn_usages) {
                Ok(u) => out.push(Policy {
                    block: policy_block(identity, &name, policy, &u),
                    name,
                }),
                Err(e) => self.issues.push(source.issue(format!(
                    "[{i}] {}.OnlinePstnUsages: {e}",
                    basic_string(identity)
                ))),
            }
        }
        out
    }
}

/// Why drhub cannot have this route, if it cannot.
fn unroutable(route: &VoiceRoute) -> Option<String> {
    if route
        .bridge_source_phone_number
        .as_deref()
        .is_some_and(|n| !n.trim().is_empty())
    {
        return Some(
            "an audio conferencing route (BridgeSourcePhoneNumber), not Direct Routing".to_owned(),
        );
    }
    if route.online_pstn_gateway_list.is_empty() {
        return Some(
            "no gateway (OnlinePstnGatewayList is empty); drhub refuses such a route".to_owned(),
        );
    }
    if route.online_pstn_usages.is_empty() {
        return Some(
            "no PSTN usage, so no policy reaches it; drhub refuses such a route".to_owned(),
        );
    }
    let pattern = route.number_pattern.as_deref()?;
    TeamsRegex::new(pattern)
        .err()
        .map(|e| format!("NumberPattern {}: {e}", pattern_string(pattern)))
}

fn route_block(name: &str, route: &VoiceRoute, gateways: &[Fqdn], usages: &[String]) -> String {
    let mut b = Block::new("  ");
    b.comment(&format!(
        "from Get-CsOnlineVoiceRoute {}",
        basic_string(name)
    ))
    .table_array("tenant.voice_route")
    .key("name", basic_string(name));
    if let Some(d) = route.description.as_deref().filter(|d| !d.is_empty()) {
        b.key("description", basic_string(d));
    }
    if let Some(p) = &route.number_pattern {
        b.key("number_pattern", pattern_string(p));
    }
    if let Some(p) = route.priority {
        b.key("priority", p);
    }
    let gateways: Vec<&str> = gateways.iter().map(Fqdn::as_str).collect();
    b.key("online_pstn_gateway_list", string_array(&gateways))
        .key("online_pstn_usages", string_array(usages));
    b.into_text()
}

/// A policy's name from its Identity: `Tag:US Only` is `US Only`, `Global` the tenant's
/// default policy, which drhub names `Global`.
pub(super) fn policy_name(identity: &str) -> String {
    let name = match (identity.get(..4), identity.get(4..)) {
        (Some(tag), Some(rest)) if tag.eq_ignore_ascii_case("tag:") => rest,
        _ => identity,
    };
    if name.eq_ignore_ascii_case(GLOBAL_POLICY) {
        GLOBAL_POLICY.to_owned()
    } else {
        name.to_owned()
    }
}

fn policy_block(
    identity: &str,
    name: &str,
    policy: &VoiceRoutingPolicy,
    usages: &[String],
) -> String {
    let mut b = Block::new("  ");
    b.comment(&format!(
        "from Get-CsOnlineVoiceRoutingPolicy {}",
        basic_string(identity)
    ))
    .table_array("tenant.voice_routing_policy")
    .key("name", basic_string(name));
    if let Some(d) = policy.description.as_deref().filter(|d| !d.is_empty()) {
        b.key("description", basic_string(d));
    }
    b.key("online_pstn_usages", string_array(usages));
    b.into_text()
}
