//! `Get-CsOnlineUser` objects into `[[tenant.user]]`s, and the tenant's id and domains.

use std::str::FromStr;

use super::cmdlets::User;
use super::routing::policy_name;
use super::toml_text::{basic_string, Block};
use super::{ImportedUser, InputIssue, Policy, Run, Source, Trunk};
use crate::config::{Fqdn, LineUri, SipAddress};

/// Why a user is not imported: Teams has it and drhub cannot (left out, said in the
/// header), or the inputs contradict each other (an error).
enum NotImported {
    LeftOut(String),
    Wrong(String),
}

impl Run {
    /// One user per Teams user with Enterprise Voice and a number.
    pub(super) fn users(
        &mut self,
        users: Option<&Source<User>>,
        policies: &[Policy],
    ) -> Vec<ImportedUser> {
        let Some(source) = users else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, user) in source.objects.iter().enumerate() {
            match self.user(user, policies) {
                Ok(u) => out.push(u),
                Err(NotImported::LeftOut(why)) => {
                    let who = user_label(user).map_or(format!("[{i}]"), basic_string);
                    self.left_out.push(format!("User {who}: {why}"));
                }
                Err(NotImported::Wrong(e)) => {
                    let who = user_label(user).map(basic_string).unwrap_or_default();
                    self.issues.push(source.issue(format!("[{i}] {who}.{e}")));
                }
            }
        }
        if !out.is_empty() {
            self.guess("Each user gets one scripted Teams client (`[[tenant.user.endpoint]]` \"teams\") that rings at once and answers after 2 s, so that calls to the user are answered.");
            self.guess("Users without EnterpriseVoiceEnabled or without a LineURI are left out: Direct Routing has no calls for them.");
        }
        out
    }

    fn user(&mut self, user: &User, policies: &[Policy]) -> Result<ImportedUser, NotImported> {
        let address = sip_address(user)?;
        if user.enterprise_voice_enabled == Some(false) {
            return Err(NotImported::LeftOut(
                "not enabled for Enterprise Voice (EnterpriseVoiceEnabled is false)".to_owned(),
            ));
        }
        let line = match user.line_uri.as_deref().map(str::trim) {
            None | Some("") => {
                return Err(NotImported::LeftOut(
                    "no LineURI, so no phone number for Direct Routing".to_owned(),
                ))
            }
            Some(text) => LineUri::from_str(text)
                .map_err(|e| NotImported::LeftOut(format!("LineURI: {e}")))?,
        };
        let policy = match (&user.online_voice_routing_policy, &self.policies_file) {
            (None, _) => Assigned::None,
            (Some(name), Some(file)) => Assigned::Policy(find_policy(name, policies, file)?),
            (Some(name), None) => Assigned::NotImported(name.clone()),
        };
        let block = user_block(&address, user, &line, &policy);
        Ok(ImportedUser { address, block })
    }

    /// The tenant's domains: `--domain`s first, then each gateway FQDN's parent (or the
    /// FQDN itself when its parent is a bare top-level name) unless a domain already
    /// covers it (DR-TEN-1/2), then each user's SIP domain.
    pub(super) fn domains(
        &mut self,
        given: &[String],
        trunks: &[Trunk],
        users: &[ImportedUser],
    ) -> Vec<Fqdn> {
        let mut domains: Vec<Fqdn> = Vec::new();
        for (i, d) in given.iter().enumerate() {
            match Fqdn::from_str(d) {
                Ok(d) if !domains.contains(&d) => domains.push(d),
                Ok(_) => {}
                Err(e) => self
                    .issues
                    .push(option_issue("--domain", format!("[{i}]: {e}"))),
            }
        }
        let before = domains.len();
        for trunk in trunks {
            let covered = |d: &Fqdn| d == &trunk.fqdn || Some(d.as_str()) == trunk.fqdn.parent();
            if !domains.iter().any(covered) {
                let parent = trunk.fqdn.parent().and_then(|p| Fqdn::from_str(p).ok());
                domains.push(parent.unwrap_or_else(|| trunk.fqdn.clone()));
            }
        }
        for user in users {
            if let Ok(d) = Fqdn::from_str(&user.address.domain) {
                if !domains.contains(&d) {
                    domains.push(d);
                }
            }
        }
        if domains.len() > before {
            self.guess("The tenant's domains are the --domain ones, then each gateway FQDN's parent domain (DR-TEN-2) and each user's SIP domain.");
        }
        // With other problems, no domain is likely their consequence, not news.
        if domains.is_empty() && given.is_empty() && self.issues.is_empty() {
            self.issues.push(option_issue(
                "--domain",
                "no domain for the tenant: give --domain, or gateways or users to take it from"
                    .to_owned(),
            ));
        }
        domains
    }

    /// `--tenant`, or the first label of the first domain (`fabrikam` for
    /// `fabrikam.com`).
    pub(super) fn tenant_id(&mut self, given: Option<&str>, domains: &[Fqdn]) -> String {
        if let Some(id) = given {
            if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c == '"') {
                self.issues.push(option_issue(
                    "--tenant",
                    format!(
                        "{}: must be non-empty, without spaces or quotes",
                        basic_string(id)
                    ),
                ));
            }
            return id.to_owned();
        }
        self.guess("Without --tenant, the tenant's id is the first label of its first domain.");
        let first = domains.first().map(Fqdn::as_str).unwrap_or("imported");
        first.split('.').next().unwrap_or(first).to_owned()
    }
}

/// A user's policy as the fragment says it.
enum Assigned {
    None,
    /// One of the imported policies, as it spells its name.
    Policy(String),
    /// Named, but no policies were imported to name it in.
    NotImported(String),
}

fn find_policy(name: &str, policies: &[Policy], file: &str) -> Result<String, NotImported> {
    let wanted = policy_name(name);
    policies
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(&wanted))
        .map(|p| p.name.clone())
        .ok_or_else(|| {
            NotImported::Wrong(format!(
                "OnlineVoiceRoutingPolicy: {} is not in {file} (Get-CsOnlineVoiceRoutingPolicy)",
                basic_string(name)
            ))
        })
}

/// How the user is named in messages: the SIP address or else the UPN, as given.
fn user_label(user: &User) -> Option<&str> {
    non_blank(&user.sip_address).or(non_blank(&user.user_principal_name))
}

fn non_blank(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.trim().is_empty())
}

/// The user's SIP address (`sip:` removed), or else the UPN, which Teams makes the SIP
/// address by default.
fn sip_address(user: &User) -> Result<SipAddress, NotImported> {
    let raw = user_label(user)
        .ok_or_else(|| NotImported::LeftOut("no SipAddress or UserPrincipalName".to_owned()))?;
    let bare = match (raw.get(..4), raw.get(4..)) {
        (Some(scheme), Some(rest)) if scheme.eq_ignore_ascii_case("sip:") => rest,
        _ => raw,
    };
    SipAddress::from_str(bare).map_err(|e| NotImported::LeftOut(format!("SipAddress: {e}")))
}

fn user_block(address: &SipAddress, user: &User, line: &LineUri, policy: &Assigned) -> String {
    let mut b = Block::new("  ");
    let from = user_label(user).unwrap_or_default();
    b.comment(&format!("from Get-CsOnlineUser {}", basic_string(from)))
        .table_array("tenant.user")
        .key("sip_address", basic_string(&address.to_string()));
    if let Some(name) = user
        .display_name
        .as_deref()
        .filter(|n| !n.trim().is_empty())
    {
        b.key("display_name", basic_string(name));
    }
    b.key("line_uri", basic_string(&line.to_string()));
    match policy {
        Assigned::None => {}
        Assigned::Policy(name) => {
            b.key("voice_routing_policy", basic_string(name));
        }
        Assigned::NotImported(name) => {
            b.comment(&format!(
                "not imported: OnlineVoiceRoutingPolicy {} (no Get-CsOnlineVoiceRoutingPolicy was given)",
                basic_string(name)
            ));
        }
    }
    b.comment("password = \"...\"   # lab: Teams has no SIP digest password; set one to register a softphone as this user");
    b.into_text() + &teams_client()
}

/// The lab's stand-in for the user's Teams clients: one that answers.
fn teams_client() -> String {
    let mut b = Block::new("    ");
    b.blank()
        .comment("lab: a scripted Teams client that rings at once and answers after 2 s")
        .table_array("tenant.user.endpoint")
        .key("name", basic_string("teams"))
        .key("ring_after_seconds", 0.2)
        .key("answer_after_seconds", 2);
    b.into_text()
}

fn option_issue(option: &str, message: String) -> InputIssue {
    InputIssue {
        source: option.to_owned(),
        message,
    }
}
