//! Tenants, domains, trunks, users and numbers: the pure lookups of DR-TEN, and where a
//! user's call to the PSTN goes (DR-OUT-1).
//!
//! Built once from the configuration; every lookup is a hash probe or a walk over a
//! tenant's few routes, no I/O, so the policy and call code can ask freely and the rules
//! are tested without sockets.

use std::collections::HashMap;
use std::fmt;

use crate::config::{
    Fqdn, NumberPattern, SipAddress, Tenant, Trunk, User, VoiceRoute, VoiceRouting,
    VoiceRoutingPolicy, E164, GLOBAL_POLICY,
};
use crate::diagnostics::Diagnostic;

/// Index of a tenant inside the directory; stable for the directory's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TenantId(usize);

/// Which step of the tenant lookup found the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantMatch {
    /// DR-TEN-1: the full FQDN is one of the tenant's domains.
    Exact,
    /// DR-TEN-2: the FQDN without its first label is one of the tenant's domains.
    Parent,
}

/// What a Request-URI asks for (DR-TEN-3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Number { number: E164, ext: Option<String> },
    Address(SipAddress),
}

/// Why a Request-URI names no user (DR-TEN-3); each maps to a 404 with its own text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// `user=phone`, or digits only, but no leading `+`.
    NumberWithoutPlus,
    /// `user=phone` but the user part is not a number at all.
    NotANumber,
    /// No user part at all.
    NoUser,
}

#[derive(Debug)]
struct TenantEntry {
    tenant: Tenant,
    trunks: HashMap<String, usize>,
    numbers: HashMap<E164, Vec<usize>>,
    addresses: HashMap<SipAddress, usize>,
    /// Per PSTN usage, the indexes of its voice routes by priority, then as written.
    usage_routes: HashMap<String, Vec<usize>>,
}

/// The lab's tenants, indexed for DR-TEN lookups.
#[derive(Debug)]
pub struct Directory {
    tenants: Vec<TenantEntry>,
    domains: HashMap<String, TenantId>,
}

impl Directory {
    /// Indexes validated tenants. The configuration already refused duplicate domains
    /// and numbers, so the first entry wins only in impossible cases.
    pub fn new(tenants: &[Tenant]) -> Directory {
        let mut domains = HashMap::new();
        let entries = tenants
            .iter()
            .enumerate()
            .map(|(i, t)| {
                for d in &t.domains {
                    domains.entry(d.as_str().to_owned()).or_insert(TenantId(i));
                }
                let mut numbers: HashMap<E164, Vec<usize>> = HashMap::new();
                let mut addresses = HashMap::new();
                for (u, user) in t.users.iter().enumerate() {
                    if let Some(line) = &user.line_uri {
                        numbers.entry(line.number.clone()).or_default().push(u);
                    }
                    addresses.entry(user.sip_address.clone()).or_insert(u);
                }
                let trunks = t
                    .trunks
                    .iter()
                    .enumerate()
                    .map(|(k, tr)| (tr.fqdn.as_str().to_owned(), k))
                    .collect();
                let mut usage_routes: HashMap<String, Vec<usize>> = HashMap::new();
                for (r, route) in t.voice_routing.routes.iter().enumerate() {
                    for u in &route.online_pstn_usages {
                        usage_routes.entry(u.clone()).or_default().push(r);
                    }
                }
                for routes in usage_routes.values_mut() {
                    // Stable: equal priorities keep the order they were written in.
                    routes.sort_by_key(|r| t.voice_routing.routes[*r].priority);
                }
                TenantEntry {
                    tenant: t.clone(),
                    trunks,
                    numbers,
                    addresses,
                    usage_routes,
                }
            })
            .collect();
        Directory {
            tenants: entries,
            domains,
        }
    }

    /// DR-TEN-1 then DR-TEN-2: the tenant for an SBC FQDN (case-insensitive).
    pub fn tenant_for_sbc(&self, fqdn: &str) -> Option<(TenantId, TenantMatch)> {
        let fqdn = fqdn.trim_end_matches('.').to_ascii_lowercase();
        if let Some(id) = self.domains.get(&fqdn) {
            return Some((*id, TenantMatch::Exact));
        }
        let (_, parent) = fqdn.split_once('.')?;
        self.domains
            .get(parent)
            .map(|id| (*id, TenantMatch::Parent))
    }

    /// The tenant that registered exactly this domain (case-insensitive).
    pub fn tenant_by_domain(&self, domain: &str) -> Option<TenantId> {
        self.domains
            .get(&domain.trim_end_matches('.').to_ascii_lowercase())
            .copied()
    }

    pub fn tenant(&self, id: TenantId) -> &Tenant {
        // Invariant: a TenantId is only made by this directory, from an index into it.
        &self.tenants[id.0].tenant
    }

    pub fn tenants(&self) -> impl Iterator<Item = (TenantId, &Tenant)> {
        self.tenants
            .iter()
            .enumerate()
            .map(|(i, e)| (TenantId(i), &e.tenant))
    }

    /// The tenant's trunk for an SBC FQDN (DR-TEN-6), case-insensitive.
    pub fn trunk(&self, id: TenantId, fqdn: &str) -> Option<&Trunk> {
        let e = &self.tenants[id.0];
        let key = fqdn.trim_end_matches('.').to_ascii_lowercase();
        e.trunks.get(&key).map(|k| &e.tenant.trunks[*k])
    }

    /// DR-TEN-4: the user whose line URI carries this number, in this tenant only.
    /// With an extension, the line with that extension; without, a line without one
    /// (or the only line with that number).
    pub fn user_by_number(&self, id: TenantId, number: &E164, ext: Option<&str>) -> Option<&User> {
        let e = &self.tenants[id.0];
        let users = e.numbers.get(number)?;
        let line_ext = |u: usize| {
            e.tenant.users[u]
                .line_uri
                .as_ref()
                .and_then(|l| l.ext.as_deref())
        };
        let pick = users
            .iter()
            .copied()
            .find(|u| line_ext(*u) == ext)
            .or_else(|| (ext.is_none() && users.len() == 1).then(|| users[0]))?;
        Some(&e.tenant.users[pick])
    }

    pub fn user_by_address(&self, id: TenantId, address: &SipAddress) -> Option<&User> {
        let e = &self.tenants[id.0];
        e.addresses.get(address).map(|u| &e.tenant.users[*u])
    }

    /// DR-XFER-4: the user a transfer's Refer-To named by MRI (`x-m`), in this tenant.
    pub fn user_by_mri(&self, id: TenantId, mri: &str) -> Option<&User> {
        let e = &self.tenants[id.0];
        e.tenant.users.iter().find(|u| {
            crate::call::transfer::mri(&e.tenant.id, &u.sip_address.to_string())
                .eq_ignore_ascii_case(mri)
        })
    }

    /// Resolves a Request-URI target in a tenant (DR-TEN-3/4).
    pub fn user_for_target(&self, id: TenantId, target: &Target) -> Option<&User> {
        match target {
            Target::Number { number, ext } => self.user_by_number(id, number, ext.as_deref()),
            Target::Address(a) => self.user_by_address(id, a),
        }
    }

    /// DR-TEN-5: the tenant's blocked-caller pattern this number matches, if any.
    pub fn blocked_by(&self, id: TenantId, caller: &E164) -> Option<&NumberPattern> {
        self.tenants[id.0]
            .tenant
            .blocked_callers
            .iter()
            .find(|p| p.matches(caller))
    }

    /// DR-TEN-5: the caller's display name by reverse lookup in the tenant directory.
    pub fn caller_name(&self, id: TenantId, caller: &E164) -> Option<&str> {
        self.user_by_number(id, caller, None)
            .map(|u| u.display_name.as_str())
    }

    /// The user with this SIP address in whichever tenant has it (addresses name their
    /// user: the first tenant listing it wins).
    pub fn find_user(&self, address: &SipAddress) -> Option<(TenantId, &User)> {
        self.tenants.iter().enumerate().find_map(|(i, e)| {
            e.addresses
                .get(address)
                .map(|u| (TenantId(i), &e.tenant.users[*u]))
        })
    }

    /// DR-OUT-1: where a call from `user` (a user of tenant `id`) to `dialled` goes, and
    /// why. The tenant dial plan normalises `dialled` (the first matching rule by
    /// priority); the user's voice routing policy, or the tenant's `Global` one, names
    /// PSTN usages in order; the first usage with a route whose number pattern matches
    /// wins; its matching routes form load-sharing groups by priority; each route's
    /// gateways follow in list order, each gateway once. Disabled trunks are listed and
    /// skipped; SBCs `inactive` says are inactive (DR-OPT-3) go to the end of their
    /// route, still tried (DR-OUT-2).
    pub fn route(
        &self,
        id: TenantId,
        user: &User,
        dialled: &str,
        inactive: impl Fn(&Fqdn) -> bool,
    ) -> RouteDecision {
        let e = &self.tenants[id.0];
        let vr = &e.tenant.voice_routing;

        let (applied, number) = normalize(vr, dialled);
        let rules = &vr.dial_plan.rules;
        let normalization = Normalization {
            // The first match wins: every rule before it was tried and did not match.
            not_matching: rules[..applied.unwrap_or(rules.len())]
                .iter()
                .map(|r| r.name.clone())
                .collect(),
            applied: applied.map(|i| {
                let rule = &rules[i];
                AppliedRule {
                    name: rule.name.clone(),
                    priority: rule.priority,
                    pattern: rule.pattern.to_string(),
                    translation: rule.translation.to_string(),
                    is_internal_extension: rule.is_internal_extension,
                }
            }),
        };

        let (chosen, source) = policy_of(vr, user);
        let policy = PolicyChoice {
            name: chosen.map_or_else(|| GLOBAL_POLICY.to_owned(), |p| p.name.clone()),
            source,
            usages: chosen.map_or_else(Vec::new, |p| p.online_pstn_usages.clone()),
        };

        let summary = |r: &VoiceRoute| RouteSummary {
            name: r.name.clone(),
            priority: r.priority,
            number_pattern: r.number_pattern.to_string(),
        };
        let mut usages: Vec<UsageCheck> = Vec::new();
        let winner = self.matching_routes(id, &policy.usages, &number, |usage, route, hit| {
            if usages.last().is_none_or(|c| c.usage != usage) {
                usages.push(UsageCheck {
                    usage: usage.to_owned(),
                    matched: Vec::new(),
                    not_matched: Vec::new(),
                });
            }
            if let Some(check) = usages.last_mut() {
                match hit {
                    true => check.matched.push(summary(route)),
                    false => check.not_matched.push(summary(route)),
                }
            }
        });

        let outcome = match winner {
            None if policy.usages.is_empty() => RouteOutcome::NoRoute(NoRoute::NoUsages),
            None => RouteOutcome::NoRoute(NoRoute::NoMatchingRoute),
            Some((usage, matching)) => {
                let mut groups: Vec<RouteGroup> = Vec::new();
                for route in matching {
                    let matched = MatchedRoute {
                        name: route.name.clone(),
                        gateways: route
                            .online_pstn_gateway_list
                            .iter()
                            .map(|fqdn| {
                                let (port, state) = self.gateway(id, fqdn, &inactive);
                                Gateway {
                                    fqdn: fqdn.clone(),
                                    port,
                                    state,
                                }
                            })
                            .collect(),
                    };
                    match groups.last_mut() {
                        Some(g) if g.priority == route.priority => g.routes.push(matched),
                        _ => groups.push(RouteGroup {
                            priority: route.priority,
                            routes: vec![matched],
                        }),
                    }
                }
                let mut routed = Routed {
                    usage: usage.to_owned(),
                    groups,
                    gateways: Vec::new(),
                };
                routed.gateways = routed.gateways_with(|_| {});
                if routed.attempts().next().is_some() {
                    RouteOutcome::Routed(routed)
                } else {
                    RouteOutcome::NoRoute(NoRoute::AllGatewaysDisabled(routed))
                }
            }
        };
        RouteDecision {
            tenant: e.tenant.id.clone(),
            user: user.sip_address.clone(),
            dialled: dialled.to_owned(),
            normalization,
            number,
            policy,
            usages,
            outcome,
        }
    }

    /// The call's part of [`Directory::route`]: the number the routes matched and the
    /// gateways to try, in order (`shuffle` as in [`Routed::gateways_with`]), disabled
    /// ones left out; `None` when there is nothing to try. The same decision without its
    /// explanation, which a call asks for only when it is refused.
    pub fn attempts(
        &self,
        id: TenantId,
        user: &User,
        dialled: &str,
        inactive: impl Fn(&Fqdn) -> bool,
        shuffle: impl FnMut(&mut [usize]),
    ) -> Option<(String, Vec<Attempt<'_>>)> {
        let vr = &self.tenants[id.0].tenant.voice_routing;
        let (_, number) = normalize(vr, dialled);
        let usages = policy_of(vr, user)
            .0
            .map(|p| p.online_pstn_usages.as_slice());
        let (_, matching) =
            self.matching_routes(id, usages.unwrap_or_default(), &number, |_, _, _| {})?;
        let mut groups: Vec<(u32, Vec<&VoiceRoute>)> = Vec::new();
        for route in matching {
            match groups.last_mut() {
                Some((p, routes)) if *p == route.priority => routes.push(route),
                _ => groups.push((route.priority, vec![route])),
            }
        }
        let mut out = Vec::new();
        order_gateways(
            groups.iter().map(|(p, routes)| (*p, routes.as_slice())),
            |route: &&VoiceRoute| {
                let route: &VoiceRoute = route;
                route.online_pstn_gateway_list.iter().map(|fqdn| {
                    let (port, state) = self.gateway(id, fqdn, &inactive);
                    (fqdn, port, state)
                })
            },
            shuffle,
            |_, route, fqdn, port, state| {
                let route: &VoiceRoute = route;
                if out.iter().any(|a: &Attempt| a.fqdn == fqdn) {
                    return;
                }
                out.push(Attempt {
                    fqdn,
                    port,
                    state,
                    route: &route.name,
                });
            },
        );
        out.retain(|a| a.state != GatewayState::Disabled);
        (!out.is_empty()).then_some((number, out))
    }

    /// The first of `usages` with a route whose pattern matches `number`, and its
    /// matching routes in priority order; `each` sees every route looked at, in order,
    /// with whether it matched.
    fn matching_routes<'a>(
        &'a self,
        id: TenantId,
        usages: &'a [String],
        number: &str,
        mut each: impl FnMut(&'a str, &'a VoiceRoute, bool),
    ) -> Option<(&'a str, Vec<&'a VoiceRoute>)> {
        let e = &self.tenants[id.0];
        let vr = &e.tenant.voice_routing;
        for usage in usages {
            let mut matching = Vec::new();
            for r in e.usage_routes.get(usage).into_iter().flatten() {
                let route = &vr.routes[*r];
                let hit = route.number_pattern.is_match(number);
                each(usage, route, hit);
                if hit {
                    matching.push(route);
                }
            }
            if !matching.is_empty() {
                return Some((usage, matching));
            }
        }
        None
    }

    /// A route's gateway: its trunk's port and what a call does with it.
    fn gateway(
        &self,
        id: TenantId,
        fqdn: &Fqdn,
        inactive: impl Fn(&Fqdn) -> bool,
    ) -> (u16, GatewayState) {
        let trunk = self.trunk(id, fqdn.as_str());
        let state = match trunk {
            Some(t) if !t.enabled => GatewayState::Disabled,
            _ if inactive(fqdn) => GatewayState::Inactive,
            _ => GatewayState::Ready,
        };
        (trunk.map_or(5061, |t| t.port), state)
    }
}

/// The tenant dial plan applied to `dialled`: the index of the rule that rewrote it
/// (the first matching one by priority) and the number to route.
fn normalize(vr: &VoiceRouting, dialled: &str) -> (Option<usize>, String) {
    vr.dial_plan
        .rules
        .iter()
        .enumerate()
        .find_map(|(i, rule)| rule.apply(dialled).map(|n| (Some(i), n)))
        .unwrap_or_else(|| (None, dialled.to_owned()))
}

/// The user's voice routing policy, else the tenant's `Global` one, else none (Teams'
/// built-in Global policy, which has no PSTN usages).
fn policy_of<'a>(
    vr: &'a VoiceRouting,
    user: &User,
) -> (Option<&'a VoiceRoutingPolicy>, PolicySource) {
    if let Some(p) = user
        .voice_routing_policy
        .as_deref()
        .and_then(|n| vr.policy(n))
    {
        return (Some(p), PolicySource::Assigned);
    }
    match vr.global_policy() {
        Some(p) => (Some(p), PolicySource::Global),
        None => (None, PolicySource::BuiltInGlobal),
    }
}

/// The order a call tries gateways in (DR-OUT-1, DR-OUT-2): load-sharing groups by
/// priority, each group's routes in the order `shuffle` puts them (called only for
/// groups of two or more), each route's gateways as listed with its inactive SBCs after
/// its others. `emit` sees every (group priority, route, gateway) in that order, repeats included.
fn order_gateways<'r, 'g, R: 'r, G: Iterator<Item = (&'g Fqdn, u16, GatewayState)>>(
    groups: impl Iterator<Item = (u32, &'r [R])>,
    gateways: impl Fn(&'r R) -> G,
    mut shuffle: impl FnMut(&mut [usize]),
    mut emit: impl FnMut(u32, &'r R, &'g Fqdn, u16, GatewayState),
) {
    let mut order: Vec<usize> = Vec::new();
    for (priority, routes) in groups {
        order.clear();
        order.extend(0..routes.len());
        if order.len() > 1 {
            shuffle(&mut order);
        }
        for route in order.iter().filter_map(|i| routes.get(*i)) {
            for pass_inactive in [false, true] {
                for (fqdn, port, state) in gateways(route) {
                    if (state == GatewayState::Inactive) == pass_inactive {
                        emit(priority, route, fqdn, port, state);
                    }
                }
            }
        }
    }
}

/// One gateway a call tries, borrowed from the directory ([`Directory::attempts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt<'a> {
    pub fqdn: &'a Fqdn,
    pub port: u16,
    pub state: GatewayState,
    /// The voice route that put it here.
    pub route: &'a str,
}

/// Why a call to the PSTN goes where it goes (DR-OUT-1), step by step, as
/// [`Directory::route`] decided it: enough to print the decision for an admin
/// (`drhub check --route`) or log it, and for the call to try the gateways in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDecision {
    /// The caller's tenant id.
    pub tenant: String,
    pub user: SipAddress,
    /// What the user dialled, as given.
    pub dialled: String,
    pub normalization: Normalization,
    /// What the routes were matched against: the dial plan's result, else `dialled`.
    pub number: String,
    pub policy: PolicyChoice,
    /// The policy's usages looked at, in order, up to the one that won.
    pub usages: Vec<UsageCheck>,
    pub outcome: RouteOutcome,
}

impl RouteDecision {
    /// The gateways to try, when the call is routed.
    pub fn routed(&self) -> Option<&Routed> {
        match &self.outcome {
            RouteOutcome::Routed(r) => Some(r),
            RouteOutcome::NoRoute(_) => None,
        }
    }

    /// The number in `+E164` form, when the dial plan produced one (or it was dialled so).
    pub fn e164(&self) -> Option<E164> {
        self.number.parse().ok()
    }
}

/// What the tenant dial plan did: the rules tried that did not match, in priority
/// order, then the one that did, if any (the first match wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Normalization {
    pub not_matching: Vec<String>,
    pub applied: Option<AppliedRule>,
}

/// The normalisation rule that rewrote the dialled string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedRule {
    pub name: String,
    pub priority: u32,
    pub pattern: String,
    pub translation: String,
    pub is_internal_extension: bool,
}

/// The voice routing policy that applied and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyChoice {
    pub name: String,
    pub source: PolicySource,
    /// Its PSTN usages, in the order they are tried.
    pub usages: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySource {
    /// The user's own `voice_routing_policy`.
    Assigned,
    /// The user has none; the tenant's policy named `Global` applies.
    Global,
    /// The user has none and the tenant defines no `Global` policy: Teams' built-in
    /// Global policy, which has no PSTN usages.
    BuiltInGlobal,
}

/// One PSTN usage of the policy and its routes, split by whether the number pattern
/// matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCheck {
    pub usage: String,
    pub matched: Vec<RouteSummary>,
    pub not_matched: Vec<RouteSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSummary {
    pub name: String,
    pub priority: u32,
    pub number_pattern: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOutcome {
    /// At least one gateway to try.
    Routed(Routed),
    /// Nothing to try: the caller gets `403` with 510559 and no SBC sees an INVITE.
    NoRoute(NoRoute),
}

/// Why a call has no route (DR-OUT-1); every reason is told as 403 / 510559.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRoute {
    /// The policy lists no PSTN usage.
    NoUsages,
    /// No route of any of the policy's usages matches the number.
    NoMatchingRoute,
    /// A usage's routes match, but every gateway of them is a disabled trunk.
    AllGatewaysDisabled(Routed),
}

impl NoRoute {
    /// The rejection the caller gets.
    pub fn diagnostic(&self) -> Diagnostic {
        Diagnostic::NoRoute
    }
}

/// The usage that won, its matching routes in load-sharing groups, and the gateways in
/// the order a call tries them when no group is shuffled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub usage: String,
    /// Lowest priority first; the routes of one group have equal priority and share the
    /// load, each route's gateways as in its list.
    pub groups: Vec<RouteGroup>,
    /// Every gateway once, groups in priority order, routes as written, each route's
    /// inactive SBCs after its others; disabled ones included (and skipped).
    pub gateways: Vec<GatewayChoice>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteGroup {
    pub priority: u32,
    pub routes: Vec<MatchedRoute>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedRoute {
    pub name: String,
    /// The route's `online_pstn_gateway_list`, in its order.
    pub gateways: Vec<Gateway>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    pub fqdn: Fqdn,
    /// The trunk's SIP port.
    pub port: u16,
    pub state: GatewayState,
}

/// What a call does with a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayState {
    /// Tried in its place.
    Ready,
    /// The SBC is inactive (DR-OPT-3): tried after the others of its route (DR-OUT-2).
    Inactive,
    /// The trunk has `enabled = false`: listed, never tried (DR-TEN-6).
    Disabled,
}

/// One gateway in the order a call tries them, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayChoice {
    pub fqdn: Fqdn,
    pub port: u16,
    pub state: GatewayState,
    /// The route that put it here, and that route's priority.
    pub route: String,
    pub priority: u32,
    /// Later routes that list it too (it is tried once).
    pub also_in: Vec<String>,
}

impl Routed {
    /// The gateways in the order a call tries them, after `shuffle` has put each
    /// load-sharing group's routes (indexes `0..n` of [`RouteGroup::routes`], called only
    /// for groups of two or more) in the order this call uses them.
    pub fn gateways_with(&self, shuffle: impl FnMut(&mut [usize])) -> Vec<GatewayChoice> {
        let mut out: Vec<GatewayChoice> = Vec::new();
        order_gateways(
            self.groups
                .iter()
                .map(|g| (g.priority, g.routes.as_slice())),
            |route: &MatchedRoute| route.gateways.iter().map(|g| (&g.fqdn, g.port, g.state)),
            shuffle,
            |priority, route, fqdn, port, state| {
                if let Some(seen) = out.iter_mut().find(|c| &c.fqdn == fqdn) {
                    seen.also_in.push(route.name.clone());
                    return;
                }
                out.push(GatewayChoice {
                    fqdn: fqdn.clone(),
                    port,
                    state,
                    route: route.name.clone(),
                    priority,
                    also_in: Vec::new(),
                });
            },
        );
        out
    }

    /// The gateways a call actually tries, in order: [`Routed::gateways`] without the
    /// disabled ones.
    pub fn attempts(&self) -> impl Iterator<Item = &GatewayChoice> {
        self.gateways
            .iter()
            .filter(|g| g.state != GatewayState::Disabled)
    }
}

/// `"a", "b"`, or `none`.
fn quoted(names: impl IntoIterator<Item = impl fmt::Display>) -> String {
    let v: Vec<String> = names.into_iter().map(|n| format!("\"{n}\"")).collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

impl fmt::Display for RouteSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "\"{}\" (priority {}, {})",
            self.name, self.priority, self.number_pattern
        )
    }
}

impl fmt::Display for GatewayState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GatewayState::Ready => "ready",
            GatewayState::Inactive => "inactive SBC (DR-OPT-3): tried after the route's others",
            GatewayState::Disabled => "disabled trunk: skipped",
        })
    }
}

impl fmt::Display for NoRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NoRoute::NoUsages => "the voice routing policy lists no PSTN usage",
            NoRoute::NoMatchingRoute => {
                "no voice route of the policy's PSTN usages matches the number"
            }
            NoRoute::AllGatewaysDisabled(_) => {
                "every gateway of the matching routes is a disabled trunk"
            }
        })
    }
}

/// The decision step by step, one step a line (more lines where a step has detail).
impl fmt::Display for RouteDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} (tenant {}) dials \"{}\"",
            self.user, self.tenant, self.dialled
        )?;
        let n = &self.normalization;
        match &n.applied {
            Some(r) => {
                writeln!(
                    f,
                    "1. dial plan: rule \"{}\" (priority {}) {} -> {} makes it \"{}\"{}",
                    r.name,
                    r.priority,
                    r.pattern,
                    r.translation,
                    self.number,
                    if r.is_internal_extension {
                        " (an internal extension)"
                    } else {
                        ""
                    }
                )?;
                if !n.not_matching.is_empty() {
                    writeln!(
                        f,
                        "   rules before it that do not match: {}",
                        quoted(&n.not_matching)
                    )?;
                }
            }
            None if n.not_matching.is_empty() => writeln!(
                f,
                "1. dial plan: none; the number stays \"{}\"",
                self.number
            )?,
            None => writeln!(
                f,
                "1. dial plan: no rule matches ({}); the number stays \"{}\"",
                quoted(&n.not_matching),
                self.number
            )?,
        }
        let p = &self.policy;
        let why = match p.source {
            PolicySource::Assigned => "assigned to the user",
            PolicySource::Global => "the user has none; the tenant's Global policy",
            PolicySource::BuiltInGlobal => {
                "the user has none and the tenant defines no Global policy: Teams' built-in one"
            }
        };
        writeln!(
            f,
            "2. voice routing policy \"{}\" ({why}): PSTN usages {}",
            p.name,
            quoted(&p.usages)
        )?;
        for (i, u) in self.usages.iter().enumerate() {
            let step = if i == 0 { "3." } else { "  " };
            if u.matched.is_empty() {
                write!(f, "{step} usage \"{}\": no route matches", u.usage)?;
            } else {
                let m: Vec<String> = u.matched.iter().map(ToString::to_string).collect();
                write!(f, "{step} usage \"{}\": matching {}", u.usage, m.join(", "))?;
            }
            if u.not_matched.is_empty() && u.matched.is_empty() {
                writeln!(f, " (it has no routes)")?;
            } else if u.not_matched.is_empty() {
                writeln!(f)?;
            } else {
                let m: Vec<String> = u.not_matched.iter().map(ToString::to_string).collect();
                writeln!(f, "; not matching {}", m.join(", "))?;
            }
        }
        let routed = match &self.outcome {
            RouteOutcome::Routed(r) => Some(r),
            RouteOutcome::NoRoute(NoRoute::AllGatewaysDisabled(r)) => Some(r),
            RouteOutcome::NoRoute(_) => None,
        };
        if let Some(r) = routed {
            writeln!(
                f,
                "4. usage \"{}\" wins; its matching routes, lowest priority first (equal priorities share the load):",
                r.usage
            )?;
            for g in &r.groups {
                writeln!(
                    f,
                    "     priority {}: {}",
                    g.priority,
                    quoted(g.routes.iter().map(|r| &r.name))
                )?;
            }
            writeln!(f, "5. gateways, in the order a call tries them:")?;
            let mut n = 0;
            for g in &r.gateways {
                let place = if g.state == GatewayState::Disabled {
                    " -".to_owned()
                } else {
                    n += 1;
                    format!("{n:>2}")
                };
                write!(
                    f,
                    "   {place}. {}:{}  route \"{}\"",
                    g.fqdn, g.port, g.route
                )?;
                if !g.also_in.is_empty() {
                    write!(f, " (also in {})", quoted(&g.also_in))?;
                }
                if g.state != GatewayState::Ready {
                    write!(f, ", {}", g.state)?;
                }
                writeln!(f)?;
            }
        }
        match &self.outcome {
            RouteOutcome::Routed(r) => {
                let n = r.attempts().count();
                writeln!(
                    f,
                    "routed: {n} gateway{} to try",
                    if n == 1 { "" } else { "s" }
                )
            }
            RouteOutcome::NoRoute(why) => {
                let d = why.diagnostic().entry();
                writeln!(
                    f,
                    "no route: {why}; the caller gets {} {} with ms-diagnostics {} and no SBC is called",
                    d.status, d.phrase, d.code
                )
            }
        }
    }
}

/// DR-TEN-3: what a Request-URI's user part names. `phone` is true when the URI has
/// `user=phone`; `host` is the URI host, used for a SIP-address target.
pub fn classify_target(user: Option<&str>, phone: bool, host: &str) -> Result<Target, TargetError> {
    let user = user.filter(|u| !u.is_empty()).ok_or(TargetError::NoUser)?;
    // RFC 3966 parameters may trail the number inside the user part (`+1001;ext=12`).
    let (number_part, params) = match user.split_once(';') {
        Some((n, p)) => (n, Some(p)),
        None => (user, None),
    };
    let ext = params.and_then(|p| {
        p.split(';').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            k.eq_ignore_ascii_case("ext").then(|| v.to_owned())
        })
    });
    if let Some(number) = E164::parse_dialled(number_part) {
        return Ok(Target::Number { number, ext });
    }
    let looks_numeric = !number_part.is_empty()
        && number_part
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'(' | b')'));
    if looks_numeric {
        return Err(TargetError::NumberWithoutPlus);
    }
    if phone {
        return Err(TargetError::NotANumber);
    }
    let address = format!("{user}@{host}")
        .parse::<SipAddress>()
        .map_err(|_| TargetError::NotANumber)?;
    Ok(Target::Address(address))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, BUILTIN_LAB_CONFIG};

    fn lab() -> Directory {
        let c = Config::parse(BUILTIN_LAB_CONFIG, "builtin").unwrap();
        Directory::new(&c.tenants)
    }

    fn num(s: &str) -> E164 {
        s.parse().unwrap()
    }

    #[test]
    fn dr_ten_1_exact_domain_then_dr_ten_2_parent() {
        let d = lab();
        let (id, how) = d.tenant_for_sbc("adatum.biz").unwrap();
        assert_eq!(
            (d.tenant(id).id.as_str(), how),
            ("adatum", TenantMatch::Exact)
        );
        let (id, how) = d.tenant_for_sbc("SBC1.Adatum.Biz").unwrap();
        assert_eq!(
            (d.tenant(id).id.as_str(), how),
            ("adatum", TenantMatch::Parent)
        );
        let (id, _) = d.tenant_for_sbc("sbc2.contoso.com").unwrap();
        assert_eq!(d.tenant(id).id, "contoso");
        // Only one label is stripped.
        assert!(d.tenant_for_sbc("a.sbc1.adatum.biz").is_none());
        assert!(d.tenant_for_sbc("sbc9.fabrikam.com").is_none());
        assert!(d.tenant_for_sbc("biz").is_none());
    }

    #[test]
    fn dr_ten_6_trunk_by_fqdn() {
        let d = lab();
        let (id, _) = d.tenant_for_sbc("sbc1.adatum.biz").unwrap();
        assert_eq!(d.trunk(id, "SBC1.adatum.biz.").unwrap().port, 5061);
        assert!(d.trunk(id, "sbc9.adatum.biz").is_none());
    }

    #[test]
    fn dr_ten_4_non_did_number_is_scoped_to_the_tenant() {
        let d = lab();
        let (adatum, _) = d.tenant_for_sbc("sbc1.adatum.biz").unwrap();
        let (contoso, _) = d.tenant_for_sbc("sbc2.contoso.com").unwrap();
        let a = d.user_by_number(adatum, &num("+1001"), None).unwrap();
        let c = d.user_by_number(contoso, &num("+1001"), None).unwrap();
        assert_eq!(a.sip_address.to_string(), "reception@adatum.biz");
        assert_eq!(c.sip_address.to_string(), "reception@contoso.com");
        assert!(d
            .user_by_number(adatum, &num("+15555550100"), None)
            .is_none());
        assert!(d
            .user_by_number(contoso, &num("+18338006777"), None)
            .is_none());
    }

    #[test]
    fn dr_ten_3_request_uri_classification() {
        let n = |s| Target::Number {
            number: num(s),
            ext: None,
        };
        assert_eq!(
            classify_target(Some("+18338006777"), true, "h.com"),
            Ok(n("+18338006777"))
        );
        assert_eq!(
            classify_target(Some("+1-833-800-6777"), false, "h.com"),
            Ok(n("+18338006777"))
        );
        assert_eq!(
            classify_target(Some("18338006777"), true, "h.com"),
            Err(TargetError::NumberWithoutPlus)
        );
        assert_eq!(
            classify_target(Some("18338006777"), false, "h.com"),
            Err(TargetError::NumberWithoutPlus)
        );
        assert_eq!(
            classify_target(Some("alice"), true, "h.com"),
            Err(TargetError::NotANumber)
        );
        assert_eq!(
            classify_target(None, false, "h.com"),
            Err(TargetError::NoUser)
        );
        assert_eq!(
            classify_target(Some("User1"), false, "Adatum.biz"),
            Ok(Target::Address("user1@adatum.biz".parse().unwrap()))
        );
        assert_eq!(
            classify_target(Some("+1001;ext=12"), true, "h.com"),
            Ok(Target::Number {
                number: num("+1001"),
                ext: Some("12".into())
            })
        );
    }

    /// A tenant shaped like the routing examples of Microsoft's "Configure call routing
    /// for Direct Routing": two routes for the same numbers at priorities 1 and 2, a
    /// wider one at 3, two load-sharing routes at 5, and a disabled trunk.
    const ROUTING: &str = r#"
        [[listener]]
        name = "sip"
        address = "127.0.0.1:5061"

        [[tenant]]
        id = "contoso"
        domains = ["contoso.com"]
        pstn_usages = ["US and Canada", "Anything", "Dead end"]
        [[tenant.trunk]]
        fqdn = "sbc1.contoso.com"
        [[tenant.trunk]]
        fqdn = "sbc2.contoso.com"
        [[tenant.trunk]]
        fqdn = "sbc3.contoso.com"
        port = 5067
        [[tenant.trunk]]
        fqdn = "sbc4.contoso.com"
        enabled = false

        [[tenant.voice_route]]
        name = "Redmond 1"
        number_pattern = '^\+1(425|206)(\d{7})$'
        priority = 1
        online_pstn_gateway_list = ["sbc1.contoso.com", "sbc2.contoso.com"]
        online_pstn_usages = ["US and Canada"]
        [[tenant.voice_route]]
        name = "Other +1"
        number_pattern = '^\+1(\d{10})$'
        priority = 3
        online_pstn_gateway_list = ["sbc2.contoso.com"]
        online_pstn_usages = ["US and Canada"]
        [[tenant.voice_route]]
        name = "Redmond 2"
        number_pattern = '^\+1(425|206)(\d{7})$'
        priority = 2
        online_pstn_gateway_list = ["sbc3.contoso.com", "sbc1.contoso.com"]
        online_pstn_usages = ["US and Canada"]
        [[tenant.voice_route]]
        name = "Share A"
        number_pattern = '\d+'
        priority = 5
        online_pstn_gateway_list = ["sbc1.contoso.com"]
        online_pstn_usages = ["Anything"]
        [[tenant.voice_route]]
        name = "Share B"
        number_pattern = '\d+'
        priority = 5
        online_pstn_gateway_list = ["sbc4.contoso.com", "sbc2.contoso.com"]
        online_pstn_usages = ["Anything"]
        [[tenant.voice_route]]
        name = "Drained"
        number_pattern = '^\+99'
        online_pstn_gateway_list = ["sbc4.contoso.com"]
        online_pstn_usages = ["Dead end"]

        [[tenant.voice_routing_policy]]
        name = "US Only"
        online_pstn_usages = ["US and Canada"]
        [[tenant.voice_routing_policy]]
        name = "No Restrictions"
        online_pstn_usages = ["US and Canada", "Anything"]
        [[tenant.voice_routing_policy]]
        name = "Drained"
        online_pstn_usages = ["Dead end"]

        [tenant.dial_plan]
        [[tenant.dial_plan.normalization_rule]]
        name = "Outside line"
        pattern = '^9(\d+)$'
        translation = '+$1'
        priority = 1
        [[tenant.dial_plan.normalization_rule]]
        name = "Extension"
        pattern = '^(\d{4})$'
        translation = '+1425555$1'
        priority = 0
        is_internal_extension = true

        [[tenant.user]]
        sip_address = "spencer@contoso.com"
        voice_routing_policy = "US Only"
        [[tenant.user]]
        sip_address = "john@contoso.com"
        voice_routing_policy = "No Restrictions"
        [[tenant.user]]
        sip_address = "nopolicy@contoso.com"
        [[tenant.user]]
        sip_address = "drained@contoso.com"
        voice_routing_policy = "Drained"
    "#;

    fn routing_dir(text: &str) -> Directory {
        match Config::parse(text, "routing") {
            Ok(c) => Directory::new(&c.tenants),
            Err(e) => panic!("{e}"),
        }
    }

    /// Routes `dialled` for `user` with the SBCs in `inactive` inactive.
    fn route(d: &Directory, user: &str, dialled: &str, inactive: &[&str]) -> RouteDecision {
        let (id, u) = d.find_user(&user.parse().unwrap()).unwrap();
        d.route(id, u, dialled, |f| inactive.contains(&f.as_str()))
    }

    /// `fqdn:port (route) state` of each gateway, in order.
    fn gateways(list: &[GatewayChoice]) -> Vec<String> {
        list.iter()
            .map(|g| {
                let mut s = format!("{}:{} ({})", g.fqdn, g.port, g.route);
                if !g.also_in.is_empty() {
                    s.push_str(&format!(" also {}", g.also_in.join("+")));
                }
                match g.state {
                    GatewayState::Ready => {}
                    GatewayState::Inactive => s.push_str(" inactive"),
                    GatewayState::Disabled => s.push_str(" disabled"),
                }
                s
            })
            .collect()
    }

    fn routed(d: &RouteDecision) -> &Routed {
        d.routed().unwrap_or_else(|| panic!("not routed:\n{d}"))
    }

    #[test]
    fn dr_out_1_dial_plan_first_matching_rule_by_priority() {
        let d = routing_dir(ROUTING);
        #[rustfmt::skip]
        let cases: &[(&str, Option<&str>, &[&str], &str)] = &[
            // dialled, rule applied, rules tried before it, number routed
            ("0100", Some("Extension"), &[], "+14255550100"),
            // "Outside line" is written first but has the higher priority.
            ("914255550100", Some("Outside line"), &["Extension"], "+14255550100"),
            // Both rules match "9123": the lower priority wins.
            ("9123", Some("Extension"), &[], "+14255559123"),
            ("+14255550100", None, &["Extension", "Outside line"], "+14255550100"),
        ];
        for (dialled, rule, before, number) in cases {
            let r = route(&d, "spencer@contoso.com", dialled, &[]);
            assert_eq!(
                r.normalization.applied.as_ref().map(|a| a.name.as_str()),
                *rule,
                "{dialled}"
            );
            assert_eq!(r.normalization.not_matching, *before, "{dialled}");
            assert_eq!(r.number, *number, "{dialled}");
            assert_eq!(r.dialled, *dialled);
        }
        let ext = route(&d, "spencer@contoso.com", "0100", &[]);
        assert!(ext
            .normalization
            .applied
            .as_ref()
            .is_some_and(|a| a.is_internal_extension));
        assert_eq!(ext.e164().unwrap().as_str(), "+14255550100");
    }

    #[test]
    fn dr_out_1_routes_by_priority_gateways_in_list_order_each_once() {
        let d = routing_dir(ROUTING);
        let r = route(&d, "spencer@contoso.com", "+14255550100", &[]);
        assert_eq!(r.policy.name, "US Only");
        assert_eq!(r.policy.source, PolicySource::Assigned);
        let ok = routed(&r);
        assert_eq!(ok.usage, "US and Canada");
        let groups: Vec<(u32, Vec<&str>)> = ok
            .groups
            .iter()
            .map(|g| {
                (
                    g.priority,
                    g.routes.iter().map(|r| r.name.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            groups,
            [
                (1, vec!["Redmond 1"]),
                (2, vec!["Redmond 2"]),
                (3, vec!["Other +1"])
            ]
        );
        assert_eq!(
            gateways(&ok.gateways),
            [
                "sbc1.contoso.com:5061 (Redmond 1) also Redmond 2",
                "sbc2.contoso.com:5061 (Redmond 1) also Other +1",
                "sbc3.contoso.com:5067 (Redmond 2)",
            ]
        );
        // Routes of the usage looked at and not matching are named.
        let other = route(&d, "spencer@contoso.com", "+13125550100", &[]);
        let names = |v: &[RouteSummary]| v.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&other.usages[0].matched), ["Other +1"]);
        assert_eq!(
            names(&other.usages[0].not_matched),
            ["Redmond 1", "Redmond 2"]
        );
        assert_eq!(
            gateways(&routed(&other).gateways),
            ["sbc2.contoso.com:5061 (Other +1)"]
        );
    }

    #[test]
    fn dr_out_1_the_first_usage_with_a_matching_route_wins() {
        let d = routing_dir(ROUTING);
        // "Anything" would match too, but "US and Canada" comes first in the policy and
        // the later usage is never looked at.
        let us = route(&d, "john@contoso.com", "+14255550100", &[]);
        assert_eq!(routed(&us).usage, "US and Canada");
        assert_eq!(us.usages.len(), 1);
        // Abroad: the first usage has no match, the second's unanchored `\d+` matches
        // a `+` number (Regex.IsMatch finds the digits inside it).
        let abroad = route(&d, "john@contoso.com", "00442071234567", &[]);
        assert_eq!(abroad.number, "00442071234567");
        assert_eq!(abroad.usages.len(), 2);
        assert!(abroad.usages[0].matched.is_empty());
        assert_eq!(abroad.usages[0].not_matched.len(), 3);
        let plus = route(&d, "john@contoso.com", "+442071234567", &[]);
        assert_eq!(routed(&plus).usage, "Anything");
    }

    #[test]
    fn dr_out_1_equal_priorities_form_one_load_sharing_group() {
        let d = routing_dir(ROUTING);
        let r = route(&d, "john@contoso.com", "+442071234567", &[]);
        let ok = routed(&r);
        assert_eq!(ok.groups.len(), 1);
        assert_eq!(ok.groups[0].priority, 5);
        // Written order when nothing is shuffled; sbc4 is disabled: listed, skipped.
        assert_eq!(
            gateways(&ok.gateways),
            [
                "sbc1.contoso.com:5061 (Share A)",
                "sbc4.contoso.com:5061 (Share B) disabled",
                "sbc2.contoso.com:5061 (Share B)",
            ]
        );
        let tried: Vec<&str> = ok.attempts().map(|g| g.fqdn.as_str()).collect();
        assert_eq!(tried, ["sbc1.contoso.com", "sbc2.contoso.com"]);
        // The caller shuffles each group of two or more routes; here it reverses.
        let mut calls = 0;
        let shuffled = ok.gateways_with(|order| {
            calls += 1;
            order.reverse();
        });
        assert_eq!(calls, 1);
        assert_eq!(
            gateways(&shuffled),
            [
                "sbc4.contoso.com:5061 (Share B) disabled",
                "sbc2.contoso.com:5061 (Share B)",
                "sbc1.contoso.com:5061 (Share A)",
            ]
        );
        // Single-route groups are never handed to the shuffle.
        let us = route(&d, "spencer@contoso.com", "+14255550100", &[]);
        let mut calls = 0;
        routed(&us).gateways_with(|_| calls += 1);
        assert_eq!(calls, 0);
    }

    /// DR-OUT-1 / DR-OUT-2: what a call tries ([`Directory::attempts`], no explanation
    /// built) is what the explained decision lists, in the same order, for routed and
    /// refused numbers, inactive SBCs, disabled trunks and shuffled groups alike.
    #[test]
    fn dr_out_1_a_calls_attempts_are_the_explained_decisions() {
        /// fqdn, port, state, route
        type Tried = (String, u16, GatewayState, String);
        let d = routing_dir(ROUTING);
        #[rustfmt::skip]
        let cases: &[(&str, &str, &[&str])] = &[
            ("spencer@contoso.com", "+14255550100", &[]),
            ("spencer@contoso.com", "0100", &[]),
            ("spencer@contoso.com", "+14255550100", &["sbc1.contoso.com"]),
            ("spencer@contoso.com", "+14255550100", &["sbc1.contoso.com", "sbc2.contoso.com", "sbc3.contoso.com"]),
            ("spencer@contoso.com", "+442071234567", &[]),
            ("spencer@contoso.com", "12", &[]),
            ("john@contoso.com", "+442071234567", &[]),
            ("john@contoso.com", "00442071234567", &[]),
            ("drained@contoso.com", "+99123", &[]),
            ("nopolicy@contoso.com", "+14255550100", &[]),
        ];
        for (user, dialled, inactive) in cases {
            let (id, u) = d.find_user(&user.parse().unwrap()).unwrap();
            for reverse in [false, true] {
                let shuffle = |v: &mut [usize]| {
                    if reverse {
                        v.reverse()
                    }
                };
                let explained = route(&d, user, dialled, inactive);
                let want: Option<(String, Vec<Tried>)> = explained.routed().map(|r| {
                    let order = r.gateways_with(shuffle);
                    let tried = order
                        .iter()
                        .filter(|g| g.state != GatewayState::Disabled)
                        .map(|g| (g.fqdn.to_string(), g.port, g.state, g.route.clone()))
                        .collect();
                    (explained.number.clone(), tried)
                });
                let got = d
                    .attempts(id, u, dialled, |f| inactive.contains(&f.as_str()), shuffle)
                    .map(|(number, tried)| {
                        let tried = tried
                            .iter()
                            .map(|a| (a.fqdn.to_string(), a.port, a.state, a.route.to_owned()))
                            .collect();
                        (number, tried)
                    });
                assert_eq!(
                    got, want,
                    "{user} {dialled} inactive {inactive:?} reversed {reverse}"
                );
            }
        }
    }

    /// DR-OPT-3 / DR-OUT-2: an inactive SBC goes to the end of its route, still tried;
    /// where another route lists it again it keeps its first place.
    #[test]
    fn dr_out_2_inactive_sbcs_are_tried_last_in_their_route() {
        let d = routing_dir(ROUTING);
        let r = route(
            &d,
            "spencer@contoso.com",
            "+14255550100",
            &["sbc1.contoso.com"],
        );
        assert_eq!(
            gateways(&routed(&r).gateways),
            [
                "sbc2.contoso.com:5061 (Redmond 1) also Other +1",
                "sbc1.contoso.com:5061 (Redmond 1) also Redmond 2 inactive",
                "sbc3.contoso.com:5067 (Redmond 2)",
            ]
        );
        let all = route(
            &d,
            "spencer@contoso.com",
            "+14255550100",
            &["sbc1.contoso.com", "sbc2.contoso.com", "sbc3.contoso.com"],
        );
        assert_eq!(
            routed(&all).attempts().count(),
            3,
            "inactive SBCs are still tried"
        );
    }

    /// DR-OUT-2 / DR-TEN-6: a disabled trunk is listed and never tried; when nothing
    /// else is left the call has no route.
    #[test]
    fn dr_out_2_only_disabled_gateways_is_no_route() {
        let d = routing_dir(ROUTING);
        let r = route(&d, "drained@contoso.com", "+99123", &[]);
        match &r.outcome {
            RouteOutcome::NoRoute(NoRoute::AllGatewaysDisabled(x)) => {
                assert_eq!(
                    gateways(&x.gateways),
                    ["sbc4.contoso.com:5061 (Drained) disabled"]
                );
                assert_eq!(x.attempts().count(), 0);
            }
            other => panic!("{other:?}"),
        }
        // Disabled wins over inactive.
        let r = route(
            &d,
            "john@contoso.com",
            "+442071234567",
            &["sbc4.contoso.com"],
        );
        assert_eq!(routed(&r).gateways[1].state, GatewayState::Disabled);
    }

    #[test]
    fn dr_out_1_no_matching_route_is_403_510559() {
        let d = routing_dir(ROUTING);
        let r = route(&d, "spencer@contoso.com", "+442071234567", &[]);
        assert_eq!(r.outcome, RouteOutcome::NoRoute(NoRoute::NoMatchingRoute));
        let RouteOutcome::NoRoute(why) = &r.outcome else {
            unreachable!()
        };
        let e = why.diagnostic().entry();
        assert_eq!((e.status, e.code), (403, 510559));
        assert_eq!(r.usages.len(), 1);
        assert_eq!(r.usages[0].not_matched.len(), 3);
    }

    /// Grant-CsOnlineVoiceRoutingPolicy: a user without a policy gets the Global one;
    /// Teams' built-in Global has no usages when the tenant defines none.
    #[test]
    fn dr_out_1_users_without_a_policy_get_global() {
        let d = routing_dir(ROUTING);
        let r = route(&d, "nopolicy@contoso.com", "+14255550100", &[]);
        assert_eq!(r.policy.source, PolicySource::BuiltInGlobal);
        assert_eq!(r.policy.name, "Global");
        assert_eq!(r.outcome, RouteOutcome::NoRoute(NoRoute::NoUsages));
        assert!(r.usages.is_empty());

        let with_global = ROUTING.replace(
            "[tenant.dial_plan]",
            "[[tenant.voice_routing_policy]]\nname = \"global\"\nonline_pstn_usages = [\"Anything\"]\n[tenant.dial_plan]",
        );
        let d = routing_dir(&with_global);
        let r = route(&d, "nopolicy@contoso.com", "+14255550100", &[]);
        assert_eq!(
            (r.policy.name.as_str(), r.policy.source),
            ("global", PolicySource::Global)
        );
        assert_eq!(routed(&r).usage, "Anything");
        // An assigned policy is not mixed with Global.
        let r = route(&d, "spencer@contoso.com", "+442071234567", &[]);
        assert!(r.routed().is_none());
    }

    #[test]
    fn dr_out_1_the_decision_explains_itself() {
        let d = routing_dir(ROUTING);
        let text = route(
            &d,
            "spencer@contoso.com",
            "914255550100",
            &["sbc1.contoso.com"],
        )
        .to_string();
        for line in [
            "spencer@contoso.com (tenant contoso) dials \"914255550100\"",
            "1. dial plan: rule \"Outside line\" (priority 1) ^9(\\d+)$ -> +$1 makes it \"+14255550100\"",
            "   rules before it that do not match: \"Extension\"",
            "2. voice routing policy \"US Only\" (assigned to the user): PSTN usages \"US and Canada\"",
            "3. usage \"US and Canada\": matching \"Redmond 1\" (priority 1, ^\\+1(425|206)(\\d{7})$), \"Redmond 2\"",
            "     priority 2: \"Redmond 2\"",
            "    1. sbc2.contoso.com:5061  route \"Redmond 1\" (also in \"Other +1\")",
            "    2. sbc1.contoso.com:5061  route \"Redmond 1\" (also in \"Redmond 2\"), inactive SBC (DR-OPT-3)",
            "routed: 3 gateways to try",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
        let none = route(&d, "spencer@contoso.com", "12", &[]).to_string();
        assert!(
            none.contains("no route: no voice route of the policy's PSTN usages matches the number; the caller gets 403 Forbidden with ms-diagnostics 510559"),
            "{none}"
        );
        let drained = route(&d, "drained@contoso.com", "+99123", &[]).to_string();
        assert!(
            drained
                .contains("  -. sbc4.contoso.com:5061  route \"Drained\", disabled trunk: skipped"),
            "{drained}"
        );
        assert!(
            drained.contains("no route: every gateway of the matching routes is a disabled trunk"),
            "{drained}"
        );
    }

    #[test]
    fn dr_out_1_lab_config_routes() {
        let d = lab();
        let intl = route(&d, "user1@adatum.biz", "00442071234567", &[]);
        assert_eq!(intl.number, "+442071234567");
        assert_eq!(routed(&intl).usage, "International");
        let first: Vec<&str> = routed(&intl).attempts().map(|g| g.fqdn.as_str()).collect();
        assert_eq!(first, ["sbc2.adatum.biz", "sbc1.adatum.biz"]);
        // Users without a policy get Global: US and Canada only.
        let busy = route(&d, "busy@adatum.biz", "00442071234567", &[]);
        assert_eq!(busy.policy.source, PolicySource::Global);
        assert_eq!(
            busy.outcome,
            RouteOutcome::NoRoute(NoRoute::NoMatchingRoute)
        );
        let ext = route(&d, "busy@adatum.biz", "6777", &[]);
        assert_eq!(ext.number, "+18338006777");
        assert!(ext.routed().is_some());
        let contoso = route(&d, "user2@contoso.com", "+14255550100", &[]);
        assert_eq!(
            routed(&contoso).gateways[0].fqdn.as_str(),
            "sbc2.contoso.com"
        );
    }

    #[test]
    fn dr_ten_5_blocked_callers_and_caller_name() {
        let d = lab();
        let (adatum, _) = d.tenant_for_sbc("sbc1.adatum.biz").unwrap();
        assert!(d.blocked_by(adatum, &num("+19005551234")).is_some());
        assert!(d.blocked_by(adatum, &num("+17168712781")).is_none());
        assert_eq!(d.caller_name(adatum, &num("+18338006777")), Some("User1"));
        assert_eq!(d.caller_name(adatum, &num("+17168712781")), None);
    }
}
