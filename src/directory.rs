//! Tenants, domains, trunks, users and numbers: the pure lookups of DR-TEN.
//!
//! Built once from the configuration; every lookup is a hash probe, no I/O, so the
//! policy and call code can ask freely and the rules are tested without sockets.

use std::collections::HashMap;

use crate::config::{NumberPattern, SipAddress, Tenant, Trunk, User, E164};

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
                TenantEntry {
                    tenant: t.clone(),
                    trunks,
                    numbers,
                    addresses,
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
