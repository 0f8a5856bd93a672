//! The Direct Routing checks on a request from an SBC (DR-VAL, with the DR-TEN tenant
//! and trunk lookup they end in): a pure function from the parsed request, the TLS
//! peer's certificate and the directory to either the SBC's trunk or a [`Rejection`].
//!
//! OPTIONS uses it now; INVITE and every other dialog-creating request reuse it
//! unchanged, which is why nothing here knows about sockets or calls.

use crate::config::Trunk;
use crate::diagnostics::{Diagnostic, Rejection};
use crate::directory::{Directory, TenantId, TenantMatch};
use crate::sip::{HeaderName, Host, Message, Method, NameAddr, Scheme, StartLine, Uri};
use crate::transport::tls::PeerIdentity;

/// The methods the proxy advertises, as the real service does (DR-OPT-1).
pub const ALLOW: &str = "INVITE,ACK,OPTIONS,CANCEL,BYE,NOTIFY";

/// The methods the proxy accepts inside a dialog it answered: [`ALLOW`] plus UPDATE,
/// which RFC 4028 session refreshes may use (DR-ST-2). Emulator choice.
pub const DIALOG_ALLOW: &str = "INVITE,ACK,OPTIONS,CANCEL,BYE,NOTIFY,UPDATE";

/// Option tags drhub understands in `Require` (RFC 3261 §8.2.2.3).
pub const SUPPORTED_OPTIONS: &[&str] = &["timer", "100rel", "replaces", "histinfo", "norefersub"];

/// How the SBC was authenticated on its connection.
#[derive(Debug, Clone, Copy)]
pub enum PeerAuth<'a> {
    /// Mutual TLS: the verified client certificate.
    Certificate(&'a PeerIdentity),
    /// The plain-TCP lab listener: no certificate (DR-TLS-5).
    Insecure,
}

/// How the SBC on a flow was authenticated.
pub fn peer_auth(flow: &crate::transport::FlowInfo) -> PeerAuth<'_> {
    match &flow.identity {
        Some(id) => PeerAuth::Certificate(id),
        None => PeerAuth::Insecure,
    }
}

/// A request that passed every check: which SBC sent it and whose it is.
#[derive(Debug, Clone)]
pub struct Accepted<'d> {
    /// The SBC FQDN the tenant was found by (lower-case).
    pub sbc_fqdn: String,
    pub tenant: TenantId,
    pub tenant_match: TenantMatch,
    pub trunk: &'d Trunk,
    /// The first Contact's FQDN and the top Record-Route's, when they differ (DR-NH-3).
    pub contact_fqdn: String,
    pub record_route_fqdn: Option<String>,
}

/// Runs DR-VAL-1..7 then DR-TEN-1/2 and the trunk lookup on a dialog-creating request
/// or OPTIONS from an SBC. The first failing rule decides the answer.
pub fn check_sbc_request<'d>(
    msg: &Message<'_>,
    peer: PeerAuth<'_>,
    directory: &'d Directory,
) -> Result<Accepted<'d>, Rejection> {
    let method = msg
        .method()
        .ok_or_else(|| Rejection::new(Diagnostic::Malformed("Not A Request")))?;
    let request_uri = match msg.start_line() {
        StartLine::Request { uri, .. } => *uri,
        StartLine::Response { .. } => {
            return Err(Rejection::new(Diagnostic::Malformed("Not A Request")))
        }
    };

    // DR-VAL-7 and DR-VAL-5 over every URI the spec names, in a fixed order so the
    // diagnostic names the first offender.
    let mut named: Vec<(&'static str, &str)> = vec![("Request-URI", request_uri)];
    for (name, h) in [("From", HeaderName::From), ("To", HeaderName::To)] {
        if let Some(v) = msg.header(h) {
            named.push((name, uri_text(v)));
        }
    }
    let contact_raw = msg.values(HeaderName::Contact).next();
    if let Some(v) = contact_raw {
        named.push(("Contact", uri_text(v)));
    }
    for (name, text) in &named {
        if has_empty_user(text) {
            return Err(Rejection::new(Diagnostic::EmptyUserPart)
                .with("header", *name)
                .with("uri", *text));
        }
    }
    for (name, text) in &named {
        if scheme_of(text).eq_ignore_ascii_case("sips") {
            return Err(Rejection::new(Diagnostic::SipsUri)
                .with("header", *name)
                .with("uri", *text));
        }
    }
    let ruri = Uri::parse(request_uri).map_err(|_| {
        Rejection::new(Diagnostic::Malformed("Malformed Request-URI")).with("uri", request_uri)
    })?;
    if !matches!(ruri.scheme(), Scheme::Sip | Scheme::Tel) {
        return Err(Rejection::new(Diagnostic::UnsupportedScheme).with("uri", request_uri));
    }

    // DR-VAL-6
    if msg.header(HeaderName::Replaces).is_some() {
        return Err(Rejection::new(Diagnostic::Replaces).with(
            "replaces",
            msg.header(HeaderName::Replaces).unwrap_or_default(),
        ));
    }
    // RFC 3261 §8.2.2.3
    let unsupported: Vec<&str> = msg
        .values(HeaderName::Require)
        .map(str::trim)
        .filter(|tag| {
            !SUPPORTED_OPTIONS
                .iter()
                .any(|s| s.eq_ignore_ascii_case(tag))
        })
        .collect();
    if !unsupported.is_empty() {
        return Err(
            Rejection::new(Diagnostic::BadExtension).with("unsupported", unsupported.join(","))
        );
    }

    // DR-VAL-1, DR-VAL-2: only the first Contact counts.
    let contact_raw = contact_raw.ok_or_else(|| {
        Rejection::new(Diagnostic::ContactMissing).with("method", method.as_str())
    })?;
    let contact = NameAddr::parse(contact_raw).map_err(|_| {
        Rejection::new(Diagnostic::Malformed("Malformed Contact Header"))
            .with("contact", contact_raw)
    })?;
    let contact_fqdn = match contact.uri().host() {
        Some(Host::Domain(d)) => d.trim_end_matches('.').to_ascii_lowercase(),
        Some(ip) => {
            return Err(Rejection::new(Diagnostic::ContactIsIp)
                .with("contact", contact_raw)
                .with("host", ip.to_string()))
        }
        None => {
            return Err(
                Rejection::new(Diagnostic::Malformed("Contact Without Host"))
                    .with("contact", contact_raw),
            )
        }
    };

    // DR-VAL-4: the top Record-Route, if any.
    let mut record_route_fqdn = None;
    if let Some(rr_raw) = msg.values(HeaderName::RecordRoute).next() {
        let rr = NameAddr::parse(rr_raw).map_err(|_| {
            Rejection::new(Diagnostic::Malformed("Malformed Record-Route Header"))
                .with("record_route", rr_raw)
        })?;
        match rr.uri().host() {
            Some(Host::Domain(d)) => {
                record_route_fqdn = Some(d.trim_end_matches('.').to_ascii_lowercase())
            }
            Some(ip) => {
                return Err(Rejection::new(Diagnostic::RecordRouteIsIp)
                    .with("record_route", rr_raw)
                    .with("host", ip.to_string()))
            }
            None => {
                return Err(
                    Rejection::new(Diagnostic::Malformed("Record-Route Without Host"))
                        .with("record_route", rr_raw),
                )
            }
        }
    }

    // DR-VAL-3 and the certificate half of DR-VAL-4.
    if let PeerAuth::Certificate(cert) = peer {
        if let Some(rr) = &record_route_fqdn {
            if !cert.matches(rr) {
                return Err(Rejection::new(Diagnostic::RecordRouteCertMismatch)
                    .with("fqdn", rr.clone())
                    .with("certificate", cert.names().collect::<Vec<_>>().join(",")));
            }
        }
        if !cert.matches(&contact_fqdn) {
            return Err(Rejection::new(Diagnostic::ContactCertMismatch)
                .with("fqdn", contact_fqdn.clone())
                .with("certificate", cert.names().collect::<Vec<_>>().join(",")));
        }
    }

    // DR-TEN-1/2: OPTIONS looks at the top Record-Route first (DR-OPT-1).
    let sbc_fqdn = match (method, &record_route_fqdn) {
        (Method::Options, Some(rr)) => rr.clone(),
        _ => contact_fqdn.clone(),
    };
    let (tenant, tenant_match) = directory.tenant_for_sbc(&sbc_fqdn).ok_or_else(|| {
        Rejection::new(Diagnostic::NoTrunk)
            .with("fqdn", sbc_fqdn.clone())
            .with("detail", "SBC FQDN not registered in any tenant")
    })?;
    let trunk = directory.trunk(tenant, &sbc_fqdn).ok_or_else(|| {
        Rejection::new(Diagnostic::NoTrunk)
            .with("fqdn", sbc_fqdn.clone())
            .with("tenant", directory.tenant(tenant).id.clone())
            .with("detail", "tenant found but it has no trunk with this FQDN")
    })?;
    if matches!(peer, PeerAuth::Insecure) && !trunk.allow_insecure {
        return Err(Rejection::new(Diagnostic::InsecureNotAllowed).with("fqdn", sbc_fqdn.clone()));
    }
    Ok(Accepted {
        sbc_fqdn,
        tenant,
        tenant_match,
        trunk,
        contact_fqdn,
        record_route_fqdn,
    })
}

/// The URI inside a name-addr or addr-spec value, as written (no parsing).
fn uri_text(value: &str) -> &str {
    let v = value.trim();
    match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v.split(';').next().unwrap_or(v).trim(),
    }
}

fn scheme_of(uri: &str) -> &str {
    uri.split_once(':').map_or("", |(s, _)| s.trim())
}

/// DR-VAL-7: `@` present but the user part before it is empty (`sip:@host`,
/// `sip::pw@host`). A URI without userinfo is fine.
fn has_empty_user(uri: &str) -> bool {
    let Some((_, rest)) = uri.split_once(':') else {
        return false;
    };
    // userinfo ends at the first '@' that comes before any parameter or header.
    let end = rest.find([';', '?']).unwrap_or(rest.len());
    match rest[..end].find('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            userinfo.split(':').next().unwrap_or("").is_empty()
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dr_val_7_empty_user_detection() {
        assert!(has_empty_user("sip:@sbc1.adatum.biz"));
        assert!(has_empty_user("sip::secret@sbc1.adatum.biz"));
        assert!(!has_empty_user("sip:sbc1.adatum.biz:5061;transport=tls"));
        assert!(!has_empty_user("sip:+1555@sbc1.adatum.biz"));
        // An @ inside a parameter is not userinfo.
        assert!(!has_empty_user("sip:sbc1.adatum.biz;x=@"));
    }

    #[test]
    fn uri_text_extraction() {
        assert_eq!(uri_text("\"A\" <sip:a@b.c;x>;tag=1"), "sip:a@b.c;x");
        assert_eq!(uri_text("sip:a@b.c;tag=1"), "sip:a@b.c");
        assert_eq!(scheme_of("SIPS:a@b.c"), "SIPS");
    }
}
