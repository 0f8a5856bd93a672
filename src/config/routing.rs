//! A tenant's Teams voice routing (DR-OUT-1), in the terms an admin already knows.
//!
//! The keys are the parameters of the cmdlets that build the same thing in Teams, in
//! snake_case: `pstn_usages` is `Set-CsOnlinePstnUsage`'s list, `[[tenant.voice_route]]`
//! is `New-CsOnlineVoiceRoute`, `[[tenant.voice_routing_policy]]` is
//! `New-CsOnlineVoiceRoutingPolicy`, `[tenant.dial_plan]` with its
//! `[[tenant.dial_plan.normalization_rule]]` is `New-CsTenantDialPlan` with
//! `New-CsVoiceNormalizationRule`, and a user's `voice_routing_policy` is
//! `Grant-CsOnlineVoiceRoutingPolicy`. Loading checks every name against the others and
//! compiles every regular expression once, so routing a call never fails on the config.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use super::{Fqdn, Section, Trunk};

/// The voice routing of one tenant. Every usage a route or policy names is in
/// `pstn_usages`, every gateway is a trunk of the tenant, names are unique (compared
/// case-insensitively, as PowerShell compares them) and every pattern is compiled.
#[derive(Debug, Clone, Default)]
pub struct VoiceRouting {
    /// The tenant's PSTN usages, as written.
    pub pstn_usages: Vec<String>,
    /// Voice routes in the order written; [`VoiceRoute::priority`] orders them for a call.
    pub routes: Vec<VoiceRoute>,
    pub policies: Vec<VoiceRoutingPolicy>,
    /// The tenant dial plan; empty when the tenant has none.
    pub dial_plan: DialPlan,
}

impl VoiceRouting {
    /// True when the tenant configures any voice routing at all.
    pub fn is_configured(&self) -> bool {
        !self.pstn_usages.is_empty()
            || !self.routes.is_empty()
            || !self.policies.is_empty()
            || !self.dial_plan.rules.is_empty()
    }

    /// The policy with this name, case-insensitively.
    pub fn policy(&self, name: &str) -> Option<&VoiceRoutingPolicy> {
        self.policies
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// The policy of users without one: the one named `Global`, if the tenant has it.
    pub fn global_policy(&self) -> Option<&VoiceRoutingPolicy> {
        self.policy(GLOBAL_POLICY)
    }
}

/// The name of the policy that applies to users without one (Grant-CsOnlineVoiceRoutingPolicy).
pub const GLOBAL_POLICY: &str = "Global";

/// One `New-CsOnlineVoiceRoute`: calls to numbers matching `number_pattern`, from users
/// whose policy lists one of `online_pstn_usages`, go to `online_pstn_gateway_list`.
#[derive(Debug, Clone)]
pub struct VoiceRoute {
    pub name: String,
    pub description: Option<String>,
    pub number_pattern: TeamsRegex,
    /// Lower is tried first; routes of equal priority share the load (DR-OUT-1).
    pub priority: u32,
    /// Trunk FQDNs of this tenant, no repeats, in failover order; never empty.
    pub online_pstn_gateway_list: Vec<Fqdn>,
    /// Names from the tenant's `pstn_usages`, spelt as there; never empty.
    pub online_pstn_usages: Vec<String>,
}

/// One `New-CsOnlineVoiceRoutingPolicy`: the PSTN usages a user may call through, in the
/// order they are tried.
#[derive(Debug, Clone)]
pub struct VoiceRoutingPolicy {
    pub name: String,
    pub description: Option<String>,
    /// Names from the tenant's `pstn_usages`, spelt as there; may be empty (no PSTN calls).
    pub online_pstn_usages: Vec<String>,
}

/// The tenant dial plan (`New-CsTenantDialPlan`): normalisation rules sorted by priority,
/// each priority used once, so "the first rule that matches" is well defined.
#[derive(Debug, Clone, Default)]
pub struct DialPlan {
    pub description: Option<String>,
    pub rules: Vec<NormalizationRule>,
}

/// One `New-CsVoiceNormalizationRule`.
#[derive(Debug, Clone)]
pub struct NormalizationRule {
    pub name: String,
    pub description: Option<String>,
    pub pattern: TeamsRegex,
    pub translation: Translation,
    pub priority: u32,
    /// Recorded and shown; it does not change where a PSTN call goes.
    pub is_internal_extension: bool,
}

impl NormalizationRule {
    /// What the rule makes of a dialled string, or `None` when its pattern does not match.
    pub fn apply(&self, dialled: &str) -> Option<String> {
        self.pattern
            .is_match(dialled)
            .then(|| self.translation.replace(&self.pattern, dialled))
    }
}

/// Teams refuses more normalisation rules than this in one dial plan (`New-CsTenantDialPlan`).
pub const MAX_NORMALIZATION_RULES: usize = 50;

/// Rules of `New-CsVoiceNormalizationRule` when the admin gives none.
const DEFAULT_RULE_PATTERN: &str = r"^(\d{11})$";
const DEFAULT_TRANSLATION: &str = "+$1";
/// `New-CsOnlineVoiceRoute`'s documented default number pattern.
const DEFAULT_NUMBER_PATTERN: &str = "[0-9]{10}";

/// A regular expression as Teams writes them (.NET syntax), compiled once and matched
/// the way .NET's `Regex.IsMatch` does: anywhere in the string unless anchored. Only
/// patterns whose meaning Rust's `regex` shares are accepted (see [`TeamsRegex::new`]).
#[derive(Debug, Clone)]
pub struct TeamsRegex {
    source: String,
    regex: regex::Regex,
    /// `.NET group number -> regex group index`: .NET numbers unnamed groups first, then
    /// named ones, left to right; `regex` numbers every group by its opening parenthesis.
    groups: Vec<usize>,
}

impl TeamsRegex {
    /// Compiles a pattern, refusing with a reason a pattern that uses .NET syntax the
    /// `regex` crate lacks (look-around, backreferences, atomic groups, conditionals,
    /// `(?'name')` groups, class subtraction, `\Z`, `\G`) or is not a regular expression.
    pub fn new(source: &str) -> Result<TeamsRegex, String> {
        if let Some(what) = dotnet_only(source) {
            return Err(format!(
                "`{source}` uses {what}: .NET regular expressions (Teams) have it, drhub's regex engine does not; write the pattern without it"
            ));
        }
        let regex = regex::Regex::new(source).map_err(|e| {
            let text = e.to_string();
            let why = text
                .lines()
                .find_map(|l| l.strip_prefix("error: "))
                .unwrap_or(text.as_str())
                .to_owned();
            format!("`{source}` is not a valid regular expression: {why}")
        })?;
        let names: Vec<Option<&str>> = regex.capture_names().collect();
        let mut groups = vec![0];
        groups.extend((1..names.len()).filter(|i| names[*i].is_none()));
        groups.extend((1..names.len()).filter(|i| names[*i].is_some()));
        Ok(TeamsRegex {
            source: source.to_owned(),
            regex,
            groups,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// .NET `Regex.IsMatch`: a match anywhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }

    /// The `regex` group index of a .NET group number.
    fn group_index(&self, dotnet: usize) -> Option<usize> {
        self.groups.get(dotnet).copied()
    }

    fn named_group(&self, name: &str) -> Option<usize> {
        self.regex
            .capture_names()
            .position(|n| n == Some(name))
            .filter(|i| *i > 0)
    }
}

impl fmt::Display for TeamsRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// The .NET construct a pattern uses that Rust's `regex` does not have, if any. Only
/// looks outside character classes (and for subtraction inside them).
fn dotnet_only(pattern: &str) -> Option<&'static str> {
    let b = pattern.as_bytes();
    let mut i = 0;
    let mut class = 0usize;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                if class == 0 {
                    match b.get(i + 1) {
                        Some(b'1'..=b'9') => return Some("a backreference (`\\1`)"),
                        Some(b'k') => return Some("a named backreference (`\\k<name>`)"),
                        Some(b'Z') => return Some("`\\Z`"),
                        Some(b'G') => return Some("`\\G`"),
                        _ => {}
                    }
                }
                i += 2;
                continue;
            }
            b'[' => {
                if class > 0 && i > 0 && b[i - 1] == b'-' {
                    return Some("character class subtraction (`[a-z-[aeiou]]`)");
                }
                class += 1;
                // A `]` right after `[` or `[^` is a literal, in .NET as in `regex`.
                if b.get(i + 1) == Some(&b'^') {
                    i += 1;
                }
                if b.get(i + 1) == Some(&b']') {
                    i += 1;
                }
            }
            b']' if class > 0 => class -= 1,
            b'(' if class == 0 && b.get(i + 1) == Some(&b'?') => {
                let rest = &pattern[i + 2..];
                let found = [
                    ("=", "look-ahead (`(?=`)"),
                    ("!", "negative look-ahead (`(?!`)"),
                    ("<=", "look-behind (`(?<=`)"),
                    ("<!", "negative look-behind (`(?<!`)"),
                    (">", "an atomic group (`(?>`)"),
                    ("(", "a conditional (`(?(`)"),
                    ("'", "a `(?'name')` group (write `(?<name>...)`)"),
                ]
                .iter()
                .find(|(p, _)| rest.starts_with(p));
                if let Some((_, what)) = found {
                    return Some(what);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// A normalisation rule's `translation`, read as a .NET replacement pattern: `$N` (every
/// digit after `$` belongs to the number), `${name}`, `$$`, `$&`, `` $` ``, `$'`, `$+`,
/// `$_`. A group the pattern does not have stays literal text, as in .NET.
#[derive(Debug, Clone)]
pub struct Translation {
    source: String,
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// A `regex` group index.
    Group(usize),
    Before,
    After,
    LastGroup,
    Input,
}

impl Translation {
    /// Reads `source` against the groups of the rule's pattern.
    pub fn new(source: &str, pattern: &TeamsRegex) -> Translation {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = source;
        while let Some(at) = rest.find('$') {
            text.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let (piece, used) = substitution(after, pattern);
            match piece {
                Some(p) => {
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(p);
                }
                None => text.push_str(&rest[at..at + 1 + used]),
            }
            rest = &after[used..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Translation {
            source: source.to_owned(),
            pieces,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// .NET `Regex.Replace(input, pattern, translation)`: every match of `pattern` in
    /// `input` replaced by the expanded translation, the text between matches kept.
    pub fn replace(&self, pattern: &TeamsRegex, input: &str) -> String {
        let mut out = String::with_capacity(input.len() + self.source.len());
        let mut last = 0;
        for caps in pattern.regex.captures_iter(input) {
            let Some(whole) = caps.get(0) else { continue };
            out.push_str(&input[last..whole.start()]);
            for piece in &self.pieces {
                match piece {
                    Piece::Text(t) => out.push_str(t),
                    Piece::Group(g) => out.push_str(caps.get(*g).map_or("", |m| m.as_str())),
                    Piece::Before => out.push_str(&input[..whole.start()]),
                    Piece::After => out.push_str(&input[whole.end()..]),
                    Piece::LastGroup => {
                        let last_group = pattern.groups.len().checked_sub(1).filter(|n| *n > 0);
                        if let Some(g) = last_group.and_then(|n| pattern.group_index(n)) {
                            out.push_str(caps.get(g).map_or("", |m| m.as_str()));
                        }
                    }
                    Piece::Input => out.push_str(input),
                }
            }
            last = whole.end();
        }
        out.push_str(&input[last..]);
        out
    }
}

impl fmt::Display for Translation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// The substitution after a `$` and how many bytes of `after` it takes; `None` when the
/// text is literal (`$` and the bytes taken are kept as written).
fn substitution(after: &str, pattern: &TeamsRegex) -> (Option<Piece>, usize) {
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 {
        let group = after[..digits]
            .parse::<usize>()
            .ok()
            .and_then(|n| pattern.group_index(n));
        return (group.map(Piece::Group), digits);
    }
    match after.as_bytes().first() {
        Some(b'$') => (Some(Piece::Text("$".to_owned())), 1),
        Some(b'&') => (Some(Piece::Group(0)), 1),
        Some(b'`') => (Some(Piece::Before), 1),
        Some(b'\'') => (Some(Piece::After), 1),
        Some(b'+') => (Some(Piece::LastGroup), 1),
        Some(b'_') => (Some(Piece::Input), 1),
        Some(b'{') => match after.find('}') {
            Some(end) => {
                let name = &after[1..end];
                let group = pattern.named_group(name).or_else(|| {
                    name.bytes()
                        .all(|b| b.is_ascii_digit())
                        .then(|| name.parse::<usize>().ok())
                        .flatten()
                        .and_then(|n| pattern.group_index(n))
                });
                (group.map(Piece::Group), end + 1)
            }
            None => (None, 0),
        },
        _ => (None, 0),
    }
}

pub(super) const ROUTE_KEYS: &[&str] = &[
    "name",
    "description",
    "number_pattern",
    "priority",
    "online_pstn_gateway_list",
    "online_pstn_usages",
];
pub(super) const POLICY_KEYS: &[&str] = &["name", "description", "online_pstn_usages"];
pub(super) const DIAL_PLAN_KEYS: &[&str] = &["description", "normalization_rule"];
pub(super) const RULE_KEYS: &[&str] = &[
    "name",
    "description",
    "pattern",
    "translation",
    "priority",
    "is_internal_extension",
];

/// Reads the tenant's voice routing; `trunks` are the tenant's trunks (gateways must be
/// among them).
pub(super) fn build(s: &Section, trunks: &[Trunk]) -> VoiceRouting {
    let mut pstn_usages: Vec<String> = Vec::new();
    for (path, u) in s.str_list("pstn_usages") {
        if u.trim().is_empty() {
            s.errs.push(path, "a PSTN usage needs a name");
        } else if let Some(j) = pstn_usages.iter().position(|x| x.eq_ignore_ascii_case(u)) {
            s.errs.push(
                path,
                format!("\"{u}\" is already pstn_usages[{j}]; a usage is listed once"),
            );
        } else {
            pstn_usages.push(u.to_owned());
        }
    }
    let usages = Usages(&pstn_usages);

    let mut routes: Vec<VoiceRoute> = Vec::new();
    let mut route_names = Names::default();
    let mut next_priority = 0u32;
    for (path, t) in s.tables("voice_route") {
        let r = Section::new(t, path, ROUTE_KEYS, s.errs);
        let name = route_names.take(&r, "voice_route");
        let number_pattern = match r.str("number_pattern") {
            Some(p) => TeamsRegex::new(p)
                .map_err(|e| r.err("number_pattern", e))
                .ok(),
            None => TeamsRegex::new(DEFAULT_NUMBER_PATTERN).ok(),
        };
        let priority = priority(&r, next_priority);
        next_priority = next_priority.max(priority.saturating_add(1));
        let gateways = gateway_list(&r, trunks);
        let route_usages = usages.list(&r, true);
        if let (Some(name), Some(number_pattern)) = (name, number_pattern) {
            routes.push(VoiceRoute {
                name,
                description: r.str("description").map(str::to_owned),
                number_pattern,
                priority,
                online_pstn_gateway_list: gateways,
                online_pstn_usages: route_usages,
            });
        }
    }

    let mut policies = Vec::new();
    let mut policy_names = Names::default();
    for (path, t) in s.tables("voice_routing_policy") {
        let p = Section::new(t, path, POLICY_KEYS, s.errs);
        let name = policy_names.take(&p, "voice_routing_policy");
        let policy_usages = usages.list(&p, false);
        if let Some(name) = name {
            policies.push(VoiceRoutingPolicy {
                name,
                description: p.str("description").map(str::to_owned),
                online_pstn_usages: policy_usages,
            });
        }
    }

    let dial_plan = if s.table.contains_key("dial_plan") {
        build_dial_plan(&s.sub("dial_plan", DIAL_PLAN_KEYS))
    } else {
        DialPlan::default()
    };
    VoiceRouting {
        pstn_usages,
        routes,
        policies,
        dial_plan,
    }
}

fn build_dial_plan(d: &Section) -> DialPlan {
    let mut rules: Vec<(String, NormalizationRule)> = Vec::new();
    let mut names = Names::default();
    let mut next_priority = 0u32;
    let tables = d.tables("normalization_rule");
    if tables.len() > MAX_NORMALIZATION_RULES {
        d.err(
            "normalization_rule",
            format!(
                "{} rules; Teams allows at most {MAX_NORMALIZATION_RULES} in a dial plan",
                tables.len()
            ),
        );
    }
    for (path, t) in tables {
        let r = Section::new(t, path, RULE_KEYS, d.errs);
        let name = names.take(&r, "normalization_rule");
        let pattern = match r.str("pattern") {
            Some(p) => TeamsRegex::new(p).map_err(|e| r.err("pattern", e)).ok(),
            None => TeamsRegex::new(DEFAULT_RULE_PATTERN).ok(),
        };
        let translation = r.str("translation").unwrap_or(DEFAULT_TRANSLATION);
        let priority = priority(&r, next_priority);
        next_priority = next_priority.max(priority.saturating_add(1));
        if let Some((other, _)) = rules.iter().find(|(_, x)| x.priority == priority) {
            r.err(
                "priority",
                format!("{priority} is also the priority of {other}; in a dial plan each rule has its own place"),
            );
        }
        let is_internal_extension = r.bool("is_internal_extension", false);
        if let (Some(name), Some(pattern)) = (name, pattern) {
            let translation = Translation::new(translation, &pattern);
            rules.push((
                r.path.clone(),
                NormalizationRule {
                    name,
                    description: r.str("description").map(str::to_owned),
                    pattern,
                    translation,
                    priority,
                    is_internal_extension,
                },
            ));
        }
    }
    let mut rules: Vec<NormalizationRule> = rules.into_iter().map(|(_, r)| r).collect();
    rules.sort_by_key(|r| r.priority);
    DialPlan {
        description: d.str("description").map(str::to_owned),
        rules,
    }
}

/// A `priority`: Teams' Int32, not negative. Without one, the entry goes after every one
/// listed before it (`next`), as Teams appends a route or rule created without one.
fn priority(s: &Section, next: u32) -> u32 {
    s.int("priority", i64::from(next), 0, i64::from(i32::MAX)) as u32
}

/// Names already taken in one list, for the "unique name" rule.
#[derive(Default)]
struct Names(HashMap<String, String>);

impl Names {
    /// The entry's required, non-empty `name`, reporting a repeat of an earlier one.
    fn take(&mut self, s: &Section, what: &str) -> Option<String> {
        let name = s.req_str("name")?;
        if name.trim().is_empty() {
            s.err("name", "must not be empty");
            return None;
        }
        let index = s
            .path
            .rsplit_once('[')
            .map(|(_, i)| i.trim_end_matches(']'))
            .unwrap_or("?");
        if let Some(first) = self.0.get(&name.to_ascii_lowercase()) {
            s.err(
                "name",
                format!(
                    "\"{name}\" is also the name of {what}[{first}]; names are unique in a tenant"
                ),
            );
            return None;
        }
        self.0.insert(name.to_ascii_lowercase(), index.to_owned());
        Some(name.to_owned())
    }
}

/// The tenant's PSTN usages, for checking the lists that name them.
struct Usages<'a>(&'a [String]);

impl Usages<'_> {
    /// The entry's `online_pstn_usages`, each one of the tenant's, spelt as there.
    fn list(&self, s: &Section, required: bool) -> Vec<String> {
        if required && !s.table.contains_key("online_pstn_usages") {
            s.err(
                "online_pstn_usages",
                "missing (required): a route no policy can reach carries no call",
            );
        }
        let mut out: Vec<String> = Vec::new();
        let items = s.str_list("online_pstn_usages");
        if required && items.is_empty() && s.table.contains_key("online_pstn_usages") {
            s.err(
                "online_pstn_usages",
                "empty: a route no policy can reach carries no call",
            );
        }
        for (path, u) in items {
            match self.0.iter().find(|x| x.eq_ignore_ascii_case(u)) {
                Some(known) if out.contains(known) => {
                    s.errs.push(path, format!("\"{u}\" is listed twice"));
                }
                Some(known) => out.push(known.clone()),
                None => s.errs.push(
                    path,
                    format!("unknown PSTN usage \"{u}\"; {}", self.known()),
                ),
            }
        }
        out
    }

    fn known(&self) -> String {
        if self.0.is_empty() {
            "the tenant has no pstn_usages (add the usage there first)".to_owned()
        } else {
            let quoted: Vec<String> = self.0.iter().map(|u| format!("\"{u}\"")).collect();
            format!("the tenant's pstn_usages are: {}", quoted.join(", "))
        }
    }
}

/// A route's `online_pstn_gateway_list`: trunk FQDNs of this tenant, once each.
fn gateway_list(s: &Section, trunks: &[Trunk]) -> Vec<Fqdn> {
    const KEY: &str = "online_pstn_gateway_list";
    if !s.table.contains_key(KEY) {
        s.err(
            KEY,
            "missing (required): the trunks this route sends calls to, in failover order",
        );
    }
    let items = s.str_list(KEY);
    if items.is_empty() && s.table.contains_key(KEY) {
        s.err(KEY, "empty: a route without a gateway carries no call");
    }
    let mut out: Vec<Fqdn> = Vec::new();
    for (path, g) in items {
        let fqdn = match Fqdn::from_str(g) {
            Ok(f) => f,
            Err(e) => {
                s.errs.push(path, e);
                continue;
            }
        };
        if out.contains(&fqdn) {
            s.errs.push(path, format!("\"{fqdn}\" is listed twice"));
        } else if trunks.iter().any(|t| t.fqdn == fqdn) {
            out.push(fqdn);
        } else {
            let names: Vec<&str> = trunks.iter().map(|t| t.fqdn.as_str()).collect();
            let known = if names.is_empty() {
                "the tenant has no [[tenant.trunk]]".to_owned()
            } else {
                format!("its trunks are: {}", names.join(", "))
            };
            s.errs.push(
                path,
                format!("\"{fqdn}\" is not a trunk of this tenant; {known}"),
            );
        }
    }
    out
}

/// A user's `voice_routing_policy`: the name of one of the tenant's policies, spelt as
/// the policy spells it.
pub(super) fn user_policy(u: &Section, routing: &VoiceRouting) -> Option<String> {
    let name = u.str("voice_routing_policy")?;
    match routing.policy(name) {
        Some(p) => Some(p.name.clone()),
        None => {
            let known: Vec<String> = routing
                .policies
                .iter()
                .map(|p| format!("\"{}\"", p.name))
                .collect();
            let known = if known.is_empty() {
                "the tenant has no [[tenant.voice_routing_policy]]".to_owned()
            } else {
                format!("the tenant's policies are: {}", known.join(", "))
            };
            u.err(
                "voice_routing_policy",
                format!("unknown voice routing policy \"{name}\"; {known}"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// One tenant with two trunks and a small routing set; tests append to it.
    const BASE: &str = r#"
        [[listener]]
        name = "sip"
        address = "127.0.0.1:5061"

        [[tenant]]
        id = "adatum"
        domains = ["adatum.biz"]
        pstn_usages = ["US and Canada", "International"]
        [[tenant.trunk]]
        fqdn = "sbc1.adatum.biz"
        [[tenant.trunk]]
        fqdn = "sbc2.adatum.biz"
        [[tenant.voice_route]]
        name = "US"
        number_pattern = '^\+1\d{10}$'
        online_pstn_gateway_list = ["sbc1.adatum.biz"]
        online_pstn_usages = ["US and Canada"]
        [[tenant.voice_routing_policy]]
        name = "Unrestricted"
        online_pstn_usages = ["US and Canada", "International"]
        [[tenant.user]]
        sip_address = "user1@adatum.biz"
        voice_routing_policy = "unrestricted"
    "#;

    use crate::config::tests::issues;

    fn routing(text: &str) -> VoiceRouting {
        match Config::parse(text, "test.toml") {
            Ok(c) => c.tenants[0].voice_routing.clone(),
            Err(e) => panic!("{e}"),
        }
    }

    fn expect_issues(text: &str, expect: &[&str]) {
        let got = issues(text);
        for e in expect {
            assert!(
                got.iter().any(|g| g.starts_with(e)),
                "missing `{e}` in {got:#?}"
            );
        }
    }

    #[test]
    fn dr_out_1_the_base_set_loads_with_names_as_the_tenant_spells_them() {
        let vr = routing(BASE);
        assert_eq!(vr.pstn_usages, ["US and Canada", "International"]);
        assert_eq!(vr.routes[0].priority, 0);
        assert_eq!(
            vr.routes[0].online_pstn_gateway_list[0].as_str(),
            "sbc1.adatum.biz"
        );
        let c = Config::parse(BASE, "t").unwrap();
        // Case-insensitive reference, stored as the policy spells it.
        assert_eq!(
            c.tenants[0].users[0].voice_routing_policy.as_deref(),
            Some("Unrestricted")
        );
        assert!(vr.global_policy().is_none());
    }

    #[test]
    fn dr_out_1_every_routing_error_is_reported_with_its_path() {
        let text = format!(
            r#"{BASE}
        [[tenant.user]]
        sip_address = "user2@adatum.biz"
        voice_routing_policy = "Nobody"
        [[tenant.voice_route]]
        name = "Broken"
        number_pattern = '^\+1(\d{{10}}$'
        priority = -1
        online_pstn_gateway_list = ["sbc9.adatum.biz", "sbc1.adatum.biz", "SBC1.adatum.biz"]
        online_pstn_usages = ["US and Canada", "Foo"]
        [[tenant.voice_route]]
        name = "us"
        number_pattern = '^(?!\+1)\d+'
        online_pstn_gateway_list = []
        [[tenant.voice_route]]
        name = "Backref"
        number_pattern = '(\d)\1'
        online_pstn_gateway_list = ["sbc2.adatum.biz"]
        online_pstn_usages = []
        gateway = "x"
        [[tenant.voice_routing_policy]]
        name = "UNRESTRICTED"
        [[tenant.voice_routing_policy]]
        name = "Local"
        online_pstn_usages = ["International", "Local", "international"]
        [tenant.dial_plan]
        [[tenant.dial_plan.normalization_rule]]
        name = "a"
        pattern = '^(\d{{4}})$'
        priority = 2
        [[tenant.dial_plan.normalization_rule]]
        name = "b"
        pattern = '[0-9'
        priority = 2
        [[tenant.dial_plan.normalization_rule]]
        name = "A"
        is_internal_extension = "yes"
        "#
        );
        expect_issues(
            &text,
            &[
                "tenant[0].user[1].voice_routing_policy: unknown voice routing policy \"Nobody\"; the tenant's policies are: \"Unrestricted\", \"Local\"",
                "tenant[0].voice_route[1].number_pattern: `^\\+1(\\d{10}$` is not a valid regular expression: unclosed group",
                "tenant[0].voice_route[1].priority: -1 is out of range",
                "tenant[0].voice_route[1].online_pstn_gateway_list[0]: \"sbc9.adatum.biz\" is not a trunk of this tenant; its trunks are: sbc1.adatum.biz, sbc2.adatum.biz",
                "tenant[0].voice_route[1].online_pstn_gateway_list[2]: \"sbc1.adatum.biz\" is listed twice",
                "tenant[0].voice_route[1].online_pstn_usages[1]: unknown PSTN usage \"Foo\"; the tenant's pstn_usages are: \"US and Canada\", \"International\"",
                "tenant[0].voice_route[2].name: \"us\" is also the name of voice_route[0]",
                "tenant[0].voice_route[2].number_pattern: `^(?!\\+1)\\d+` uses negative look-ahead (`(?!`): .NET regular expressions (Teams) have it, drhub's regex engine does not",
                "tenant[0].voice_route[2].online_pstn_gateway_list: empty",
                "tenant[0].voice_route[2].online_pstn_usages: missing (required)",
                "tenant[0].voice_route[3].number_pattern: `(\\d)\\1` uses a backreference",
                "tenant[0].voice_route[3].online_pstn_usages: empty",
                "tenant[0].voice_route[3].gateway: unknown field",
                "tenant[0].voice_routing_policy[1].name: \"UNRESTRICTED\" is also the name of voice_routing_policy[0]",
                "tenant[0].voice_routing_policy[2].online_pstn_usages[1]: unknown PSTN usage \"Local\"",
                "tenant[0].voice_routing_policy[2].online_pstn_usages[2]: \"international\" is listed twice",
                "tenant[0].dial_plan.normalization_rule[1].pattern: `[0-9` is not a valid regular expression",
                "tenant[0].dial_plan.normalization_rule[1].priority: 2 is also the priority of tenant[0].dial_plan.normalization_rule[0]",
                "tenant[0].dial_plan.normalization_rule[2].name: \"A\" is also the name of normalization_rule[0]",
                "tenant[0].dial_plan.normalization_rule[2].is_internal_extension: expected true or false",
            ],
        );
    }

    #[test]
    fn dr_out_1_usages_and_policies_need_the_tenant_lists() {
        let text = r#"
            [[listener]]
            name = "sip"
            address = "127.0.0.1:5061"
            [[tenant]]
            id = "x"
            domains = ["x.com"]
            pstn_usages = ["Local", "local", ""]
            [[tenant.voice_route]]
            name = "r"
            online_pstn_gateway_list = ["sbc1.x.com"]
            online_pstn_usages = ["Local"]
            [[tenant.user]]
            sip_address = "u@x.com"
            voice_routing_policy = "Global"
        "#;
        expect_issues(
            text,
            &[
                "tenant[0].pstn_usages[1]: \"local\" is already pstn_usages[0]",
                "tenant[0].pstn_usages[2]: a PSTN usage needs a name",
                "tenant[0].voice_route[0].online_pstn_gateway_list[0]: \"sbc1.x.com\" is not a trunk of this tenant; the tenant has no [[tenant.trunk]]",
                "tenant[0].user[0].voice_routing_policy: unknown voice routing policy \"Global\"; the tenant has no [[tenant.voice_routing_policy]]",
            ],
        );
    }

    #[test]
    fn dr_out_1_defaults_follow_the_cmdlets() {
        let text = format!(
            r#"{BASE}
        [[tenant.voice_route]]
        name = "No pattern, no priority"
        online_pstn_gateway_list = ["sbc2.adatum.biz"]
        online_pstn_usages = ["International"]
        [[tenant.voice_route]]
        name = "Explicit"
        priority = 7
        online_pstn_gateway_list = ["sbc2.adatum.biz"]
        online_pstn_usages = ["International"]
        [[tenant.voice_route]]
        name = "After explicit"
        online_pstn_gateway_list = ["sbc2.adatum.biz"]
        online_pstn_usages = ["International"]
        [tenant.dial_plan]
        [[tenant.dial_plan.normalization_rule]]
        name = "second"
        pattern = '^9(\d+)$'
        translation = '$1'
        priority = 5
        [[tenant.dial_plan.normalization_rule]]
        name = "defaults"
        priority = 1
        "#
        );
        let vr = routing(&text);
        // New-CsOnlineVoiceRoute: NumberPattern defaults to [0-9]{{10}}; without a
        // priority a route goes after every route before it.
        let r = &vr.routes[1];
        assert_eq!((r.number_pattern.as_str(), r.priority), ("[0-9]{10}", 1));
        assert_eq!(vr.routes[2].priority, 7);
        assert_eq!(vr.routes[3].priority, 8);
        // New-CsVoiceNormalizationRule: Pattern ^(\d{11})$, Translation +$1,
        // IsInternalExtension false; rules sorted by priority.
        let rules = &vr.dial_plan.rules;
        assert_eq!(rules[0].name, "defaults");
        assert_eq!(rules[0].pattern.as_str(), r"^(\d{11})$");
        assert_eq!(rules[0].translation.as_str(), "+$1");
        assert!(!rules[0].is_internal_extension);
        assert_eq!(
            rules[0].apply("14255550100").as_deref(),
            Some("+14255550100")
        );
        assert_eq!(rules[0].apply("4255550100"), None);
        assert_eq!(rules[1].name, "second");
    }

    #[test]
    fn dial_plan_holds_at_most_50_rules() {
        let mut text = format!("{BASE}\n[tenant.dial_plan]\n");
        for i in 0..=MAX_NORMALIZATION_RULES {
            text.push_str(&format!(
                "[[tenant.dial_plan.normalization_rule]]\nname = \"r{i}\"\n"
            ));
        }
        expect_issues(
            &text,
            &["tenant[0].dial_plan.normalization_rule: 51 rules; Teams allows at most 50"],
        );
    }

    #[test]
    fn dr_out_1_dotnet_constructs_regex_lacks_are_refused_by_name() {
        for (pattern, what) in [
            (r"^(?=\+1)\d+", "look-ahead"),
            (r"^\+(?!1)", "negative look-ahead"),
            (r"(?<=\+1)\d+", "look-behind"),
            (r"(?<!\+)1", "negative look-behind"),
            (r"(\d)\1", "a backreference"),
            (r"(?<a>\d)\k<a>", "a named backreference"),
            (r"(?>\d+)", "an atomic group"),
            (r"(?(1)a|b)", "a conditional"),
            (r"(?'area'\d{3})", "`(?'name')` group"),
            (r"[0-9-[5]]", "character class subtraction"),
            (r"\d+\Z", "`\\Z`"),
        ] {
            let e = TeamsRegex::new(pattern).unwrap_err();
            assert!(e.contains(what), "{pattern}: {e}");
            assert!(
                e.contains("drhub's regex engine does not"),
                "{pattern}: {e}"
            );
        }
        // What both flavours read the same compiles, including inside classes.
        for ok in [
            r"^\+1(425|206)(\d{7})$",
            r"\d+",
            ".*",
            r"^(?<area>\d{3})(\d{4})$",
            r"[(?=]",
            r"[\]-]\d",
            r"^\\1$",
            r"(?i)^x\d+\z",
        ] {
            assert!(TeamsRegex::new(ok).is_ok(), "{ok}");
        }
        let e = TeamsRegex::new("(").unwrap_err();
        assert!(
            e.starts_with("`(` is not a valid regular expression: "),
            "{e}"
        );
    }

    #[test]
    fn dr_out_1_number_patterns_match_anywhere_like_dotnet_is_match() {
        let any_digits = TeamsRegex::new(r"\d+").unwrap();
        assert!(any_digits.is_match("+442071234567"));
        let anchored = TeamsRegex::new(r"^\d+$").unwrap();
        assert!(!anchored.is_match("+442071234567"));
        let tail = TeamsRegex::new(r"0100").unwrap();
        assert!(tail.is_match("+14255550100"));
    }

    /// A translation is read as a .NET replacement pattern (`Regex.Replace`).
    #[test]
    fn dr_out_1_translations_follow_dotnet_substitutions() {
        #[rustfmt::skip]
        let cases = [
            // pattern, translation, dialled, result
            (r"^(\d{4})$", "+1425555$1", "0100", "+14255550100"),
            // Every digit after `$` is the group number; no group 10: literal.
            (r"^(\d)$", "$10", "7", "$10"),
            (r"^(\d)$", "${1}0", "7", "70"),
            // `$1a` is group 1 then "a" (for the regex crate it would name a group `1a`).
            (r"^(\d)$", "$1a", "7", "7a"),
            // Unnamed groups first, then named ones.
            (r"^(?<area>\d{3})(\d{4})$", "$1-$2", "5550100", "0100-555"),
            (r"^(?<area>\d{3})(\d{4})$", "+1425${area}$1", "5550100", "+14255550100"),
            (r"^(\d)$", "${nosuch}$x$", "7", "${nosuch}$x$"),
            (r"^(\d)$", "$$1", "7", "$1"),
            (r"5", "[$`|$&|$']", "a5b", "a[a|5|b]b"),
            (r"^(\d)(\d)?$", "$+", "7", ""),
            (r"^(\d)(\d)$", "$+", "78", "8"),
            (r"^0", "$_", "012", "01212"),
            // Every match is replaced; text outside the matches stays.
            (r"0", "x", "1001", "1xx1"),
            (r"^9(\d+)$", "+$1", "914255550100", "+14255550100"),
        ];
        for (pattern, translation, dialled, want) in cases {
            let p = TeamsRegex::new(pattern).unwrap();
            let t = Translation::new(translation, &p);
            assert_eq!(
                t.replace(&p, dialled),
                want,
                "{pattern} {translation} {dialled}"
            );
        }
    }
}
