//! `drhub import`: a production tenant's Direct Routing set-up, as the Teams PowerShell
//! cmdlets print it (`ConvertTo-Json`), made into a `[[tenant]]` block of drhub's
//! configuration, so that a lab mirrors production.
//!
//! The inputs are the outputs of `Get-CsOnlinePSTNGateway` (trunks),
//! `Get-CsOnlineVoiceRoute`, `Get-CsOnlinePstnUsage`, `Get-CsOnlineVoiceRoutingPolicy`
//! and `Get-CsOnlineUser`; each is optional. Everything here is pure (text in, text
//! out) so that it is tested with tables; `main.rs` reads and writes the files.
//!
//! The rule for what does not fit: input that is broken or contradicts itself (not
//! JSON, a route naming a gateway the gateways file lacks) is an error naming the file
//! and the object; what Teams allows and drhub cannot have (a route without gateways, a
//! user without a number, a .NET-only regular expression) is left out and said so in
//! the fragment's header. The fragment is checked by drhub's own configuration parser
//! ([`check_fragment`]) before anyone sees it.

mod cmdlets;
mod routing;
mod toml_text;
mod trunks;
mod users;

use std::fmt;

use crate::config::{Config, ConfigError, Fqdn, SipAddress};
use cmdlets::{read_objects, Gateway, PstnUsages, User, VoiceRoute, VoiceRoutingPolicy};
use toml_text::{basic_string, string_array, Block};

pub use cmdlets::decode;

/// One input file: its name, for messages and comments, and its text.
#[derive(Debug, Clone)]
pub struct Input {
    pub source: String,
    pub text: String,
}

/// What `drhub import` was given.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub gateways: Option<Input>,
    pub routes: Option<Input>,
    pub usages: Option<Input>,
    pub policies: Option<Input>,
    pub users: Option<Input>,
    /// The tenant's id; without it, the first label of the tenant's first domain.
    pub tenant: Option<String>,
    /// Domains registered in the tenant, listed before those derived from the inputs.
    pub domains: Vec<String>,
}

/// A problem with one input: `source: message`, where the message names the object and
/// property (`[1] "Route-EU".OnlinePstnGatewayList: ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputIssue {
    pub source: String,
    pub message: String,
}

impl fmt::Display for InputIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.message)
    }
}

/// The fragment and how much went into it.
#[derive(Debug, Clone)]
pub struct Imported {
    pub fragment: String,
    pub trunks: usize,
    pub routes: usize,
    pub policies: usize,
    pub users: usize,
    /// Routes and users left out, each said so in the fragment's header.
    pub left_out: usize,
}

impl fmt::Display for Imported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trunks {}, voice routes {}, voice routing policies {}, users {}",
            self.trunks, self.routes, self.policies, self.users
        )?;
        if self.left_out > 0 {
            write!(
                f,
                "; {} left out (the fragment's header says why)",
                self.left_out
            )?;
        }
        Ok(())
    }
}

/// Turns the inputs into a `[[tenant]]` fragment, or says everything wrong with them.
pub fn import(inputs: &Inputs) -> Result<Imported, Vec<InputIssue>> {
    let parsed = Parsed::read(inputs)?;
    let mut run = Run {
        gateways_file: parsed.gateways.as_ref().map(|s| s.file.to_owned()),
        policies_file: parsed.policies.as_ref().map(|s| s.file.to_owned()),
        ..Run::default()
    };
    let usages = UsageList::new(&parsed, &mut run);
    let mut trunks = run.trunks(parsed.gateways.as_ref());
    let routes = run.routes(parsed.routes.as_ref(), &mut trunks, &usages);
    let policies = run.policies(parsed.policies.as_ref(), &usages);
    let users = run.users(parsed.users.as_ref(), &policies);
    let domains = run.domains(&inputs.domains, &trunks, &users);
    let tenant = run.tenant_id(inputs.tenant.as_deref(), &domains);
    if !run.issues.is_empty() {
        return Err(run.issues);
    }
    let mut fragment = header(&parsed, &run);
    fragment.push_str(&tenant_block(&tenant, &domains, &usages));
    let blocks = trunks
        .iter()
        .map(|t| &t.block)
        .chain(&routes)
        .chain(policies.iter().map(|p| &p.block))
        .chain(users.iter().map(|u| &u.block));
    for block in blocks {
        fragment.push('\n');
        fragment.push_str(block);
    }
    Ok(Imported {
        fragment,
        trunks: trunks.len(),
        routes: routes.len(),
        policies: policies.len(),
        users: users.len(),
        left_out: run.left_out.len(),
    })
}

/// Runs a fragment through drhub's configuration parser and validator (what
/// `drhub check` runs), after a listener, the least a configuration needs.
pub fn check_fragment(fragment: &str) -> Result<Config, ConfigError> {
    let text = format!("[[listener]]\nname = \"sip\"\naddress = \"127.0.0.1:5061\"\n\n{fragment}");
    Config::parse(&text, "the imported fragment")
}

/// The objects of one input file.
struct Source<'a, T> {
    file: &'a str,
    objects: Vec<T>,
}

impl<T> Source<'_, T> {
    /// The file and how many objects it held, for the fragment's header.
    fn summary(&self) -> String {
        format!("{} ({} object(s))", self.file, self.objects.len())
    }

    fn issue(&self, message: String) -> InputIssue {
        InputIssue {
            source: self.file.to_owned(),
            message,
        }
    }
}

/// Every input read into its cmdlet's objects.
struct Parsed<'a> {
    gateways: Option<Source<'a, Gateway>>,
    routes: Option<Source<'a, VoiceRoute>>,
    usages: Option<Source<'a, PstnUsages>>,
    policies: Option<Source<'a, VoiceRoutingPolicy>>,
    users: Option<Source<'a, User>>,
}

impl<'a> Parsed<'a> {
    fn read(inputs: &'a Inputs) -> Result<Parsed<'a>, Vec<InputIssue>> {
        let mut issues = Vec::new();
        let parsed = Parsed {
            gateways: source(inputs.gateways.as_ref(), &mut issues),
            routes: source(inputs.routes.as_ref(), &mut issues),
            usages: source(inputs.usages.as_ref(), &mut issues),
            policies: source(inputs.policies.as_ref(), &mut issues),
            users: source(inputs.users.as_ref(), &mut issues),
        };
        if issues.is_empty() {
            Ok(parsed)
        } else {
            Err(issues)
        }
    }
}

fn source<'a, T: serde::de::DeserializeOwned>(
    input: Option<&'a Input>,
    issues: &mut Vec<InputIssue>,
) -> Option<Source<'a, T>> {
    let input = input?;
    match read_objects(&input.text) {
        Ok(objects) => Some(Source {
            file: &input.source,
            objects,
        }),
        Err(message) => {
            issues.push(InputIssue {
                source: input.source.clone(),
                message,
            });
            None
        }
    }
}

/// The tenant's PSTN usages, from `Get-CsOnlinePstnUsage` or, without it, the ones the
/// routes and policies name.
struct UsageList {
    names: Vec<String>,
    /// Whether they came from `Get-CsOnlinePstnUsage`, so that a name missing from them
    /// is an error.
    given: Option<String>,
}

impl UsageList {
    fn new(parsed: &Parsed, run: &mut Run) -> UsageList {
        let mut list = UsageList {
            names: Vec::new(),
            given: parsed.usages.as_ref().map(|s| s.file.to_owned()),
        };
        match &parsed.usages {
            Some(s) => s
                .objects
                .iter()
                .flat_map(|o| &o.usage)
                .for_each(|u| list.add(u)),
            None => {
                let routes = parsed.routes.iter().flat_map(|s| &s.objects);
                let policies = parsed.policies.iter().flat_map(|s| &s.objects);
                routes
                    .flat_map(|r| &r.online_pstn_usages)
                    .chain(policies.flat_map(|p| &p.online_pstn_usages))
                    .for_each(|u| list.add(u));
            }
        }
        if list.given.is_none() && !list.names.is_empty() {
            run.guess(
                "Without Get-CsOnlinePstnUsage, the tenant's PSTN usages are those its routes and policies name.",
            );
        }
        list
    }

    fn add(&mut self, name: &str) {
        if !name.trim().is_empty() && self.find(name).is_none() {
            self.names.push(name.to_owned());
        }
    }

    /// The usage as the tenant spells it; names compare ignoring case, as in Teams.
    fn find(&self, name: &str) -> Option<&str> {
        self.names
            .iter()
            .find(|u| u.eq_ignore_ascii_case(name))
            .map(String::as_str)
    }

    /// A route's or policy's usages, spelt as the tenant's, once each; a usage missing
    /// from `Get-CsOnlinePstnUsage` is an error (the exports contradict each other).
    fn resolve(&self, names: &[String]) -> Result<Vec<String>, String> {
        let mut out: Vec<String> = Vec::new();
        for name in names {
            let known = match (self.find(name), &self.given) {
                (Some(known), _) => known,
                (None, Some(file)) => {
                    return Err(format!(
                        "{} is not in {file} (Get-CsOnlinePstnUsage)",
                        basic_string(name)
                    ))
                }
                (None, None) => continue,
            };
            if !out.iter().any(|u| u == known) {
                out.push(known.to_owned());
            }
        }
        Ok(out)
    }
}

/// A trunk's `[[tenant.trunk]]` text, kept with its FQDN for the routes that name it.
struct Trunk {
    fqdn: Fqdn,
    block: String,
}

/// A policy as users name it.
struct Policy {
    name: String,
    block: String,
}

/// A user's SIP address (for the domains) and text.
struct ImportedUser {
    address: SipAddress,
    block: String,
}

/// What a run collects besides the blocks: errors, and what was left out or guessed.
#[derive(Default)]
struct Run {
    /// The gateways and policies files, when given: a route's gateway or a user's policy
    /// missing from them is an error.
    gateways_file: Option<String>,
    policies_file: Option<String>,
    issues: Vec<InputIssue>,
    /// Whole routes and users left out, with why.
    left_out: Vec<String>,
    /// The emulator choices this fragment depends on, for the header.
    guesses: Vec<&'static str>,
}

impl Run {
    fn guess(&mut self, choice: &'static str) {
        if !self.guesses.contains(&choice) {
            self.guesses.push(choice);
        }
    }
}

/// What no fragment has, with why.
const NEVER_IMPORTED: &[&str] = &[
    "The SBCs' certificates and keys: production's stay there; `drhub certs -c FILE` issues lab ones for the trunks below.",
    "The SBCs' addresses: drhub resolves each trunk's FQDN (hosts file) unless the trunk has an `address` (each trunk has the line, commented out).",
    "Passwords: Teams has no SIP digest password; without `password` no softphone can register as a user (each user has the line, commented out).",
    "Gateway settings drhub has no equivalent for (number translation rules, codecs, bypass mode, Location-Based Routing, PIDF-LO, proxy SBC, media relay location, IP version): each trunk lists those that were set.",
    "Dial plans, emergency and calling policies, call forwarding: not among the inputs.",
];

/// What the fragment came from, where it goes, and what it does not have.
fn header(parsed: &Parsed, run: &Run) -> String {
    let mut b = Block::new("");
    b.comment(
        "A drhub tenant written by `drhub import` from the Teams PowerShell cmdlets' output:",
    );
    let inputs = [
        (
            "Get-CsOnlinePSTNGateway",
            parsed.gateways.as_ref().map(Source::summary),
        ),
        (
            "Get-CsOnlineVoiceRoute",
            parsed.routes.as_ref().map(Source::summary),
        ),
        (
            "Get-CsOnlinePstnUsage",
            parsed.usages.as_ref().map(Source::summary),
        ),
        (
            "Get-CsOnlineVoiceRoutingPolicy",
            parsed.policies.as_ref().map(Source::summary),
        ),
        (
            "Get-CsOnlineUser",
            parsed.users.as_ref().map(Source::summary),
        ),
    ];
    for (cmdlet, summary) in inputs {
        let summary = summary.unwrap_or_else(|| "not given".to_owned());
        b.comment(&format!("  {cmdlet:<31} {summary}"));
    }
    b.comment("")
        .comment("Append it to a configuration with [proxy], [[listener]] and [certs] (config/drhub.toml")
        .comment("without its [[tenant]] blocks will do), then run `drhub check -c FILE`. Its domains")
        .comment("must be in no other [[tenant]] of that configuration.")
        .comment("")
        .comment("Not imported:");
    for what in NEVER_IMPORTED
        .iter()
        .copied()
        .chain(run.left_out.iter().map(String::as_str))
    {
        b.bullet(what);
    }
    if !run.guesses.is_empty() {
        b.comment("").comment("Emulator choices:");
        for guess in &run.guesses {
            b.bullet(guess);
        }
    }
    b.blank();
    b.into_text()
}

/// `[[tenant]]` and its own keys, before the tables inside it.
fn tenant_block(id: &str, domains: &[Fqdn], usages: &UsageList) -> String {
    let mut b = Block::new("");
    let domains: Vec<&str> = domains.iter().map(Fqdn::as_str).collect();
    b.table_array("tenant")
        .key("id", basic_string(id))
        .key("domains", string_array(&domains));
    if !usages.names.is_empty() {
        match &usages.given {
            Some(file) => b.comment(&format!("from Get-CsOnlinePstnUsage ({file})")),
            None => b.comment(
                "the usages the routes and policies name (no Get-CsOnlinePstnUsage was given)",
            ),
        };
        b.key("pstn_usages", string_array(&usages.names));
    }
    b.into_text()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAYS: &str = r#"[
        {"Identity": "sbc1.fabrikam.com", "Fqdn": "sbc1.fabrikam.com", "SipSignalingPort": 5061,
         "Enabled": true, "SendSipOptions": true, "MediaBypass": false, "ForwardPai": true,
         "ForwardCallHistory": false, "MaxConcurrentSessions": 100,
         "FailoverResponseCodes": "408,503,504", "FailoverTimeSeconds": 10},
        {"Identity": "sbc2.fabrikam.com", "Fqdn": "sbc2.fabrikam.com", "SipSignalingPort": 5067,
         "Enabled": false, "GatewaySiteId": "Amsterdam", "BypassMode": "None"}
    ]"#;
    const ROUTES: &str = r#"[
        {"Identity": "US", "Name": "US", "Priority": 0, "NumberPattern": "^\\+1\\d{10}$",
         "OnlinePstnGatewayList": ["sbc1.fabrikam.com", "sbc2.fabrikam.com"],
         "OnlinePstnUsages": ["US and Canada"]},
        {"Identity": "Other", "Name": "Other", "Priority": 1, "NumberPattern": "\\d+",
         "OnlinePstnGatewayList": ["sbc2.fabrikam.com"], "OnlinePstnUsages": ["International"]}
    ]"#;
    const USAGES: &str = r#"{"Identity": "Global", "Usage": ["US and Canada", "International"]}"#;
    const POLICIES: &str = r#"[
        {"Identity": "Global", "OnlinePstnUsages": ["US and Canada"], "RouteType": "BYOT"},
        {"Identity": "Tag:Unrestricted", "OnlinePstnUsages": ["US and Canada", "International"],
         "Description": "anywhere"}
    ]"#;
    const USERS: &str = r#"[
        {"UserPrincipalName": "alice@fabrikam.com", "SipAddress": "sip:alice@fabrikam.com",
         "DisplayName": "Alice", "LineURI": "tel:+14255550101", "EnterpriseVoiceEnabled": true,
         "OnlineVoiceRoutingPolicy": {"Authority": "Tenant", "Name": "Unrestricted"}},
        {"UserPrincipalName": "bob@fabrikam.com", "SipAddress": "sip:bob@fabrikam.com",
         "LineURI": "tel:+14255550102;ext=102", "EnterpriseVoiceEnabled": true,
         "OnlineVoiceRoutingPolicy": null}
    ]"#;

    /// Inputs from `(kind, json)` pairs, each kind's file called `<kind>.json`.
    fn inputs(files: &[(&str, &str)]) -> Inputs {
        let mut inputs = Inputs::default();
        for (kind, text) in files {
            let input = Some(Input {
                source: format!("{kind}.json"),
                text: (*text).to_owned(),
            });
            match *kind {
                "gateways" => inputs.gateways = input,
                "routes" => inputs.routes = input,
                "usages" => inputs.usages = input,
                "policies" => inputs.policies = input,
                "users" => inputs.users = input,
                other => panic!("no input kind {other}"),
            }
        }
        inputs
    }

    /// The fragment, after checking that drhub's own parser accepts it.
    fn fragment(inputs: &Inputs) -> String {
        let imported = import(inputs).unwrap_or_else(|e| panic!("import failed: {e:?}"));
        if let Err(e) = check_fragment(&imported.fragment) {
            panic!("drhub refuses the fragment:\n{e}\n{}", imported.fragment);
        }
        imported.fragment
    }

    /// The fragment's one tenant as TOML.
    fn tenant(fragment: &str) -> toml::Table {
        let mut table: toml::Table = toml::from_str(fragment).expect("TOML");
        match table.remove("tenant") {
            Some(toml::Value::Array(mut tenants)) if tenants.len() == 1 => {
                match tenants.remove(0) {
                    toml::Value::Table(t) => t,
                    other => panic!("tenant is {other:?}"),
                }
            }
            other => panic!("expected one [[tenant]], found {other:?}"),
        }
    }

    /// Every problem `import` reports, as `source: message`.
    fn problems(inputs: &Inputs) -> Vec<String> {
        match import(inputs) {
            Ok(i) => panic!("expected problems, got:\n{}", i.fragment),
            Err(issues) => issues.iter().map(ToString::to_string).collect(),
        }
    }

    fn strings(v: &toml::Value) -> Vec<&str> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|s| s.as_str().expect("string"))
            .collect()
    }

    #[test]
    fn every_input_maps_to_its_drhub_keys() {
        let all = inputs(&[
            ("gateways", GATEWAYS),
            ("routes", ROUTES),
            ("usages", USAGES),
            ("policies", POLICIES),
            ("users", USERS),
        ]);
        let text = fragment(&all);
        let t = tenant(&text);
        assert_eq!(t["id"].as_str(), Some("fabrikam"));
        assert_eq!(strings(&t["domains"]), ["fabrikam.com"]);
        assert_eq!(
            strings(&t["pstn_usages"]),
            ["US and Canada", "International"]
        );

        let sbc1 = &t["trunk"][0];
        assert_eq!(sbc1["fqdn"].as_str(), Some("sbc1.fabrikam.com"));
        assert_eq!(sbc1["port"].as_integer(), Some(5061));
        assert_eq!(sbc1["enabled"].as_bool(), Some(true));
        assert_eq!(sbc1["send_options"].as_bool(), Some(true));
        assert_eq!(sbc1["media_bypass"].as_bool(), Some(false));
        assert_eq!(sbc1["forward_pai"].as_bool(), Some(true));
        assert_eq!(sbc1["forward_call_history"].as_bool(), Some(false));
        assert_eq!(sbc1["max_concurrent_sessions"].as_integer(), Some(100));
        assert_eq!(sbc1["failover_time_seconds"].as_integer(), Some(10));
        let codes: Vec<i64> = sbc1["failover_response_codes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(toml::Value::as_integer)
            .collect();
        assert_eq!(codes, [408, 503, 504]);
        let sbc2 = &t["trunk"][1];
        assert_eq!(sbc2["port"].as_integer(), Some(5067));
        assert_eq!(sbc2["enabled"].as_bool(), Some(false));
        assert!(sbc2.get("max_concurrent_sessions").is_none());
        assert!(
            text.contains("# not imported: GatewaySiteId \"Amsterdam\" (Location-Based Routing)")
        );
        assert!(
            !text.contains("BypassMode"),
            "the default BypassMode is not worth a note"
        );

        let us = &t["voice_route"][0];
        assert_eq!(us["name"].as_str(), Some("US"));
        assert_eq!(us["number_pattern"].as_str(), Some(r"^\+1\d{10}$"));
        assert_eq!(us["priority"].as_integer(), Some(0));
        assert_eq!(
            strings(&us["online_pstn_gateway_list"]),
            ["sbc1.fabrikam.com", "sbc2.fabrikam.com"]
        );
        assert_eq!(strings(&us["online_pstn_usages"]), ["US and Canada"]);
        assert!(text.contains("# from Get-CsOnlineVoiceRoute \"Other\""));

        let global = &t["voice_routing_policy"][0];
        assert_eq!(global["name"].as_str(), Some("Global"));
        let unrestricted = &t["voice_routing_policy"][1];
        assert_eq!(unrestricted["name"].as_str(), Some("Unrestricted"));
        assert_eq!(unrestricted["description"].as_str(), Some("anywhere"));
        assert_eq!(
            strings(&unrestricted["online_pstn_usages"]),
            ["US and Canada", "International"]
        );

        let alice = &t["user"][0];
        assert_eq!(alice["sip_address"].as_str(), Some("alice@fabrikam.com"));
        assert_eq!(alice["display_name"].as_str(), Some("Alice"));
        assert_eq!(alice["line_uri"].as_str(), Some("tel:+14255550101"));
        assert_eq!(alice["voice_routing_policy"].as_str(), Some("Unrestricted"));
        assert_eq!(
            alice["endpoint"][0]["answer_after_seconds"].as_integer(),
            Some(2)
        );
        let bob = &t["user"][1];
        assert_eq!(bob["line_uri"].as_str(), Some("tel:+14255550102;ext=102"));
        assert!(bob.get("voice_routing_policy").is_none());
        assert!(bob.get("password").is_none());
    }

    #[test]
    fn contradicting_inputs_are_errors_naming_file_object_and_property() {
        let unknown_gateway = r#"[{"Name": "EU", "NumberPattern": "^\\+3", "Priority": 0,
            "OnlinePstnGatewayList": ["sbc9.fabrikam.com"], "OnlinePstnUsages": ["US and Canada"]}]"#;
        let unknown_usage = r#"[{"Name": "EU", "OnlinePstnGatewayList": ["sbc1.fabrikam.com"],
            "OnlinePstnUsages": ["Europe"]}]"#;
        let unknown_policy = r#"{"SipAddress": "sip:al@fabrikam.com", "LineURI": "tel:+1425",
            "OnlineVoiceRoutingPolicy": "Nowhere"}"#;
        let bad_policy_usage = r#"{"Identity": "Tag:EU", "OnlinePstnUsages": ["Europe"]}"#;
        let twice = r#"[{"Fqdn": "sbc1.fabrikam.com"}, {"Fqdn": "SBC1.fabrikam.com"}]"#;
        for (files, expected) in [
            (
                vec![("gateways", GATEWAYS), ("routes", unknown_gateway)],
                "routes.json: [0] \"EU\".OnlinePstnGatewayList: \"sbc9.fabrikam.com\" is not in gateways.json (Get-CsOnlinePSTNGateway)",
            ),
            (
                vec![("gateways", GATEWAYS), ("usages", USAGES), ("routes", unknown_usage)],
                "routes.json: [0] \"EU\".OnlinePstnUsages: \"Europe\" is not in usages.json (Get-CsOnlinePstnUsage)",
            ),
            (
                vec![("gateways", GATEWAYS), ("usages", USAGES), ("policies", bad_policy_usage)],
                "policies.json: [0] \"Tag:EU\".OnlinePstnUsages: \"Europe\" is not in usages.json (Get-CsOnlinePstnUsage)",
            ),
            (
                vec![("policies", POLICIES), ("users", unknown_policy)],
                "users.json: [0] \"sip:al@fabrikam.com\".OnlineVoiceRoutingPolicy: \"Nowhere\" is not in policies.json (Get-CsOnlineVoiceRoutingPolicy)",
            ),
            (
                vec![("gateways", twice)],
                "gateways.json: [1].Fqdn: \"sbc1.fabrikam.com\" is also an earlier gateway",
            ),
            (
                vec![("gateways", r#"{"Fqdn": "192.0.2.1"}"#)],
                "gateways.json: [0].Fqdn: `192.0.2.1` is an IP address; Direct Routing needs an FQDN",
            ),
            (
                vec![("usages", USAGES)],
                "--domain: no domain for the tenant: give --domain, or gateways or users to take it from",
            ),
        ] {
            assert_eq!(problems(&inputs(&files)), [expected], "{files:?}");
        }
    }

    #[test]
    fn bad_json_names_the_file_the_object_and_the_property() {
        for (kind, text, expected) in [
            ("gateways", "[{\"Fqdn\": ", "gateways.json: not JSON: EOF while parsing a value at line 1 column 10"),
            ("gateways", r#"[{"Fqdn": "a.b.com"}, {"Fqdn": "c.b.com", "SipSignalingPort": "5061"}]"#,
             "gateways.json: [1].SipSignalingPort: invalid type: string \"5061\", expected i64"),
            ("routes", r#"{"Name": "X", "OnlinePstnUsages": "System.Collections.Generic.List`1[System.String]"}"#,
             "routes.json: [0].OnlinePstnUsages: expected a list of names, found the string \"System.Collections.Generic.List`1[System.String]\": run ConvertTo-Json with -Depth 5"),
            ("routes", r#"[{"Name": "X", "OnlinePstnGatewayList": ["a.b.com", 7]}]"#,
             "routes.json: [0].OnlinePstnGatewayList: item 1 is a number, expected a name"),
            ("users", r#"[{"SipAddress": "sip:a@b.com", "OnlineVoiceRoutingPolicy": 3}]"#,
             "users.json: [0].OnlineVoiceRoutingPolicy: expected a policy name, found a number"),
            ("users", r#""alice""#,
             "users.json: expected ConvertTo-Json output (an object or an array of objects), found a string"),
            ("users", r#"[{"SipAddress": "sip:a@b.com"}, 5]"#, "users.json: [1]: expected an object, found a number"),
        ] {
            assert_eq!(problems(&inputs(&[(kind, text)])), [expected], "{text}");
        }
    }

    #[test]
    fn the_shapes_of_different_module_versions_are_read_alike() {
        for users in [
            // an array; keys as the current module spells them, policy as an object
            r#"[{"SipAddress": "sip:al@fabrikam.com", "LineUri": "tel:+14255550101", "OnlineVoiceRoutingPolicy": {"Authority": "Tenant", "Name": "Tag:Unrestricted"}}]"#,
            // one object; older spellings, the policy as a name
            r#"{"SIPAddress": "sip:al@fabrikam.com", "LineURI": "tel:+14255550101", "OnlineVoiceRoutingPolicy": "Unrestricted"}"#,
            // Windows PowerShell 5.1's array wrapper, keys in any case, the UPN for a SIP address
            r#"{"value": [{"userprincipalname": "AL@fabrikam.com", "LINEURI": "tel:+14255550101", "onlinevoiceroutingpolicy": {"name": "unrestricted"}}], "Count": 1}"#,
        ] {
            let text = fragment(&inputs(&[("policies", POLICIES), ("users", users)]));
            let user = &tenant(&text)["user"][0];
            assert_eq!(
                user["sip_address"].as_str(),
                Some("al@fabrikam.com"),
                "{users}"
            );
            assert_eq!(
                user["line_uri"].as_str(),
                Some("tel:+14255550101"),
                "{users}"
            );
            assert_eq!(
                user["voice_routing_policy"].as_str(),
                Some("Unrestricted"),
                "{users}"
            );
        }
        let old_port = r#"{"Identity": "sbc1.fabrikam.com", "SipSignallingPort": 5067}"#;
        let text = fragment(&inputs(&[("gateways", old_port)]));
        assert_eq!(tenant(&text)["trunk"][0]["port"].as_integer(), Some(5067));
    }

    #[test]
    fn what_drhub_cannot_have_is_left_out_and_said_so() {
        let routes = r#"[
            {"Name": "Conference", "BridgeSourcePhoneNumber": "+14255550199", "OnlinePstnUsages": ["US and Canada"]},
            {"Name": "Nowhere", "OnlinePstnGatewayList": [], "OnlinePstnUsages": ["US and Canada"]},
            {"Name": "Unused", "OnlinePstnGatewayList": ["sbc1.fabrikam.com"], "OnlinePstnUsages": []},
            {"Name": "Not the US", "NumberPattern": "^\\+(?!1)\\d+$", "OnlinePstnGatewayList": ["sbc1.fabrikam.com"], "OnlinePstnUsages": ["International"]},
            {"Name": "Kept", "NumberPattern": "^\\+1", "OnlinePstnGatewayList": ["sbc1.fabrikam.com"], "OnlinePstnUsages": ["US and Canada"]}
        ]"#;
        let users = r#"[
            {"SipAddress": "sip:novoice@fabrikam.com", "LineURI": "tel:+14255550103", "EnterpriseVoiceEnabled": false},
            {"SipAddress": "sip:nonumber@fabrikam.com", "EnterpriseVoiceEnabled": true, "LineURI": ""},
            {"SipAddress": "sip:badnumber@fabrikam.com", "LineURI": "tel:4255550104"},
            {"DisplayName": "nobody", "LineURI": "tel:+14255550105"},
            {"SipAddress": "sip:kept@fabrikam.com", "LineURI": "tel:+14255550106"}
        ]"#;
        let all = inputs(&[("gateways", GATEWAYS), ("routes", routes), ("users", users)]);
        let imported = import(&all).expect("import");
        assert_eq!(
            (imported.routes, imported.users, imported.left_out),
            (1, 1, 8)
        );
        let text = fragment(&all);
        for line in [
            "# - Route \"Conference\": an audio conferencing route (BridgeSourcePhoneNumber), not",
            "# - Route \"Nowhere\": no gateway (OnlinePstnGatewayList is empty); drhub refuses such a",
            "# - Route \"Unused\": no PSTN usage, so no policy reaches it; drhub refuses such a route",
            "# - Route \"Not the US\": NumberPattern '^\\+(?!1)\\d+$': ",
            "# - User \"sip:novoice@fabrikam.com\": not enabled for Enterprise Voice",
            "# - User \"sip:nonumber@fabrikam.com\": no LineURI, so no phone number for Direct Routing",
            "# - User \"sip:badnumber@fabrikam.com\": LineURI: `4255550104` must start with `+` (E.164)",
            "# - User [3]: no SipAddress or UserPrincipalName",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
        let t = tenant(&text);
        assert_eq!(t["voice_route"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            t["user"][0]["sip_address"].as_str(),
            Some("kept@fabrikam.com")
        );
    }

    #[test]
    fn gateway_values_outside_drhubs_ranges_are_left_out_with_a_note() {
        let gateway = r#"{"Fqdn": "sbc1.fabrikam.com", "SipSignalingPort": 0, "FailoverTimeSeconds": 0,
            "MaxConcurrentSessions": 0, "FailoverResponseCodes": "408, 503,abc,200"}"#;
        let text = fragment(&inputs(&[("gateways", gateway)]));
        let trunk = &tenant(&text)["trunk"][0];
        for key in ["port", "failover_time_seconds", "max_concurrent_sessions"] {
            assert!(trunk.get(key).is_none(), "{key} in:\n{text}");
        }
        assert_eq!(
            trunk["failover_response_codes"].as_array().map(Vec::len),
            Some(2)
        );
        for note in [
            "# not imported: SipSignalingPort 0 (drhub takes 1 to 65535; its default applies)",
            "# not imported: MaxConcurrentSessions 0 (drhub takes 1 to 4294967295; its default applies)",
            "# not imported: FailoverResponseCodes \"abc\", \"200\" (not SIP failure codes, 300 to 699)",
            "# not imported: FailoverTimeSeconds 0 (drhub takes 1 to 600; its default applies)",
        ] {
            assert!(text.contains(note), "missing `{note}` in:\n{text}");
        }
    }

    #[test]
    fn a_missing_input_is_made_up_from_the_others() {
        // Routes alone: default trunks for their gateways, usages from their names.
        let text = fragment(&inputs(&[("routes", ROUTES)]));
        let t = tenant(&text);
        let fqdns: Vec<&str> = t["trunk"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["fqdn"].as_str().unwrap())
            .collect();
        assert_eq!(fqdns, ["sbc1.fabrikam.com", "sbc2.fabrikam.com"]);
        assert!(t["trunk"][0].get("port").is_none());
        assert_eq!(
            strings(&t["pstn_usages"]),
            ["US and Canada", "International"]
        );
        assert!(text.contains("no Get-CsOnlinePSTNGateway was given: drhub's defaults"));

        // Users without policies: the assignment is a note, not a dangling name.
        let text = fragment(&inputs(&[("users", USERS)]));
        let alice = &tenant(&text)["user"][0];
        assert!(alice.get("voice_routing_policy").is_none());
        assert!(text.contains("# not imported: OnlineVoiceRoutingPolicy \"Unrestricted\" (no Get-CsOnlineVoiceRoutingPolicy was given)"));
    }

    #[test]
    fn the_tenant_takes_its_domains_and_id_from_options_and_inputs() {
        let gateways = r#"[{"Fqdn": "sbc1.eu.fabrikam.com"}, {"Fqdn": "sbc.example"}, {"Fqdn": "sbc2.eu.fabrikam.com"}]"#;
        let users = r#"{"SipAddress": "sip:al@fabrikam.net", "LineURI": "tel:+14255550101"}"#;
        let mut given = inputs(&[("gateways", gateways), ("users", users)]);
        given.domains = vec!["Fabrikam.com".to_owned()];
        let t = tenant(&fragment(&given));
        assert_eq!(
            strings(&t["domains"]),
            [
                "fabrikam.com",
                "eu.fabrikam.com",
                "sbc.example",
                "fabrikam.net"
            ]
        );
        assert_eq!(t["id"].as_str(), Some("fabrikam"));

        given.tenant = Some("lab-fabrikam".to_owned());
        assert_eq!(
            tenant(&fragment(&given))["id"].as_str(),
            Some("lab-fabrikam")
        );

        given.tenant = Some("two words".to_owned());
        given.domains = vec!["not a domain".to_owned()];
        let p = problems(&given);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].starts_with("--domain: [0]: `not a domain` is not a fully qualified domain name"),
            "{p:?}"
        );
        assert_eq!(
            p[1],
            "--tenant: \"two words\": must be non-empty, without spaces or quotes"
        );
    }

    #[test]
    fn names_with_quotes_and_line_breaks_stay_inside_their_strings() {
        let routes = r#"[{"Name": "a \"quoted\"\n[[tenant]]\nid = \"x\"", "Description": "line\nbreak # not a comment",
            "NumberPattern": "^\\+1'\\d+", "OnlinePstnGatewayList": ["sbc1.fabrikam.com"], "OnlinePstnUsages": ["U'S"]}]"#;
        let text = fragment(&inputs(&[("routes", routes)]));
        let t = tenant(&text);
        let route = &t["voice_route"][0];
        assert_eq!(
            route["name"].as_str(),
            Some("a \"quoted\"\n[[tenant]]\nid = \"x\"")
        );
        assert_eq!(
            route["description"].as_str(),
            Some("line\nbreak # not a comment")
        );
        assert_eq!(route["number_pattern"].as_str(), Some(r"^\+1'\d+"));
        assert_eq!(strings(&t["pstn_usages"]), ["U'S"]);
    }

    #[test]
    fn empty_outputs_import_nothing_of_their_kind() {
        for empty in ["", "  \r\n", "null", "[]"] {
            let mut given = inputs(&[("gateways", GATEWAYS), ("routes", empty), ("users", empty)]);
            given.domains = vec!["fabrikam.com".to_owned()];
            let imported = import(&given).expect("import");
            assert_eq!(
                (imported.trunks, imported.routes, imported.users),
                (2, 0, 0),
                "{empty:?}"
            );
        }
    }

    #[test]
    fn policy_identities_become_names() {
        for (identity, name) in [
            ("Global", "Global"),
            ("global", "Global"),
            ("Tag:US Only", "US Only"),
            ("tag:Unrestricted", "Unrestricted"),
            ("Unrestricted", "Unrestricted"),
            ("Tag:", ""),
            ("Tä", "Tä"),
        ] {
            assert_eq!(routing::policy_name(identity), name, "{identity}");
        }
    }

    #[test]
    fn input_files_decode_as_powershell_writes_them() {
        let utf16 = |be: bool| -> Vec<u8> {
            let mut bytes = if be {
                vec![0xFE, 0xFF]
            } else {
                vec![0xFF, 0xFE]
            };
            for unit in "[{\"Fqdn\": \"é\"}]".encode_utf16() {
                bytes.extend(if be {
                    unit.to_be_bytes()
                } else {
                    unit.to_le_bytes()
                });
            }
            bytes
        };
        let expected = "[{\"Fqdn\": \"é\"}]";
        for (bytes, result) in [
            (expected.as_bytes().to_vec(), Ok(expected)),
            (
                [&[0xEF, 0xBB, 0xBF][..], expected.as_bytes()].concat(),
                Ok(expected),
            ),
            (utf16(false), Ok(expected)),
            (utf16(true), Ok(expected)),
            (vec![0xFF, 0xFE, 0x41], Err("UTF-16 text of an odd length")),
            (vec![0xFF, 0xFE, 0x00, 0xD8], Err("not valid UTF-16 text")),
            (
                vec![b'[', 0xC3],
                Err("not UTF-8 text: incomplete utf-8 byte sequence from index 1"),
            ),
        ] {
            assert_eq!(
                decode(&bytes).as_deref(),
                result.map_err(str::to_owned).as_deref()
            );
        }
    }
}
