//! Transfers the proxy makes as transferor (DR-XFER-3, RFC 5589 §6, RFC 3515): the
//! REFER's `Refer-To` and `Referred-By` as Direct Routing writes them, and what a NOTIFY's
//! `message/sipfrag` body says of the transfer's progress. Pure functions; the call
//! machine sends and receives.

use std::fmt::Write as _;

/// Where a transfer goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A phone number, `+E164`: the SBC calls it out.
    Number(String),
    /// A Teams user of the same tenant, by SIP address: the SBC calls it back through
    /// the proxy with the Refer-To's `x-m`/`x-t` (DR-XFER-4).
    User(String),
}

impl Target {
    /// `+E164` (digits after the plus, 1 to 15) or `user@domain`; `None` otherwise.
    pub fn parse(to: &str) -> Option<Target> {
        let to = to.trim();
        if let Some(digits) = to.strip_prefix('+') {
            let ok = (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
            return ok.then(|| Target::Number(to.to_owned()));
        }
        let (user, domain) = to.split_once('@')?;
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        };
        (token(user) && token(domain)).then(|| Target::User(to.to_ascii_lowercase()))
    }
}

/// A Teams user's MRI (`8:orgid:<guid>`), as the real service writes it in `x-m`. drhub
/// has no directory ids, so the GUID is derived from the tenant and the SIP address,
/// the same for the same user every time (an emulator choice).
pub fn mri(tenant: &str, address: &str) -> String {
    // Two FNV-1a 64-bit hashes with different offsets make the GUID's 128 bits.
    let hash = |seed: u64| {
        let mut h = seed;
        for b in tenant
            .bytes()
            .chain([0])
            .chain(address.to_ascii_lowercase().bytes())
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    };
    let (a, b) = (hash(0xcbf2_9ce4_8422_2325), hash(0x8422_2325_cbf2_9ce4));
    format!(
        "8:orgid:{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// The REFER's `Refer-To` (DR-XFER-3): a SIP URI at the proxy's FQDN, with the number as
/// user part and `user=phone`, or the target user's `x-m` (MRI) and `x-t` (tenant).
pub fn refer_to(target: &Target, proxy: &str, tenant: &str) -> String {
    match target {
        Target::Number(n) => format!("<sip:{n}@{proxy};user=phone>"),
        Target::User(u) => format!("<sip:{proxy};x-m={};x-t={tenant}>", mri(tenant, u)),
    }
}

/// The REFER's `Referred-By` (DR-XFER-3): a SIP URI at the proxy's FQDN with the
/// transferor's MRI (`x-m`), the tenant (`x-t`), the transferor's call correlation id
/// (`x-ti`) and the target call URI, percent-encoded (`x-tt`).
pub fn referred_by(
    transferor: &str,
    proxy: &str,
    tenant: &str,
    correlation: &str,
    target_uri: &str,
) -> String {
    format!(
        "<sip:{proxy};x-m={};x-t={tenant};x-ti={correlation};x-tt={}>",
        mri(tenant, transferor),
        escape(target_uri)
    )
}

/// A dialog as the UA that receives a `Replaces` header knows it (RFC 3891 §3): its
/// Call-ID, the receiver's own tag (`to-tag`) and the other side's (`from-tag`). For the
/// SBC, drhub's tag is the `from-tag` whichever way the call was set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    pub call_id: String,
    /// The SBC's tag.
    pub to_tag: String,
    /// drhub's tag.
    pub from_tag: String,
}

impl Replaces {
    /// drhub's dialog with the SBC, as the SBC knows it: the SBC's tag is the to-tag.
    pub fn of(dialog: &super::dialog::Dialog) -> Replaces {
        Replaces {
            call_id: dialog.call_id().to_owned(),
            to_tag: dialog.remote_tag().to_owned(),
            from_tag: dialog.local_tag().to_string(),
        }
    }
}

/// DR-XFER-1: whether a message's `Allow` lists REFER; `None` when it has no `Allow`
/// (then the SBC's OPTIONS decide, DR-OPT-2).
pub fn allow_lists_refer(msg: &crate::sip::Message<'_>) -> Option<bool> {
    use crate::sip::HeaderName;
    msg.header(HeaderName::Allow)?;
    Some(
        msg.values(HeaderName::Allow)
            .any(|v| v.trim().eq_ignore_ascii_case("REFER")),
    )
}

impl std::fmt::Display for Replaces {
    /// The header's value (RFC 3891 §6.1).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{};to-tag={};from-tag={}",
            self.call_id, self.to_tag, self.from_tag
        )
    }
}

/// The consultation call of a consultative transfer (RFC 5589 §7): a call of the
/// transferring user through an SBC, whose dialog the transfer's INVITE replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consultation {
    /// drhub's Call-ID of the consultation call (its API id).
    pub call: String,
    /// Its dialog with the SBC, as the SBC knows it.
    pub replaces: Replaces,
    /// The SBC's trunk: only it knows the dialog, so only it gets the `Replaces`.
    pub trunk: std::sync::Arc<str>,
    /// The party on the SBC's side, `+E164` when it is one: the transfer's target.
    pub number: Option<String>,
}

/// A transfer the proxy referred the SBC to (DR-XFER-3), waiting for the SBC's INVITE
/// back (DR-XFER-4: Microsoft asks SBCs to send every transfer's INVITE back to the
/// proxy, a number's too). Keyed by the `x-ti` of its `Referred-By`.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The `Referred-By` as the REFER carried it: the INVITE back must copy it byte for
    /// byte.
    pub referred_by: String,
    pub target: Target,
    /// The tenant id (`x-t`).
    pub tenant: String,
    /// The transferring user's SIP address: their voice routing places a number.
    pub user: String,
    /// A consultative transfer's consultation call.
    pub consultation: Option<Consultation>,
    /// The call transferred (its Call-ID), for the log.
    pub call: String,
}

/// What an INVITE drhub places for a transfer carries (DR-XFER-2, DR-XFER-4): the
/// `Referred-By` and, for a consultative transfer, the `Replaces` for the trunk that
/// knows the consultation dialog. No History-Info (DR-XFER-5).
#[derive(Debug, Clone)]
pub struct Transferred {
    pub referred_by: String,
    pub consultation: Option<Consultation>,
}

impl Transferred {
    /// The `Replaces` value for an INVITE to trunk `fqdn`: only the consultation's SBC
    /// knows the dialog.
    pub fn replaces_for(&self, fqdn: &str) -> Option<String> {
        self.consultation
            .as_ref()
            .filter(|c| c.trunk.eq_ignore_ascii_case(fqdn))
            .map(|c| c.replaces.to_string())
    }
}

/// A REFER's headers (DR-XFER-3), and the transfer drhub then waits for.
#[derive(Debug, Clone)]
pub struct Refer {
    pub refer_to: String,
    pub referred_by: String,
    /// The `x-ti`: a fresh correlation id per transfer.
    pub correlation: String,
    tenant: String,
    consultation: Option<Consultation>,
}

impl Refer {
    /// `transferor` (a SIP address) transfers to `target`, replacing `consultation`'s
    /// dialog when consultative.
    pub fn new(
        target: &Target,
        proxy: &str,
        tenant: &str,
        transferor: &str,
        consultation: Option<&Consultation>,
    ) -> Refer {
        let refer_to = refer_to(target, proxy, tenant);
        let correlation = crate::diagnostics::correlation_id();
        let target_call = target_call_uri(&refer_to, consultation);
        let referred_by = referred_by(transferor, proxy, tenant, &correlation, &target_call);
        Refer {
            refer_to,
            referred_by,
            correlation,
            tenant: tenant.to_owned(),
            consultation: consultation.cloned(),
        }
    }

    /// The transfer to remember under its `x-ti` until the SBC's INVITE back.
    pub fn pending(self, target: &Target, user: &str, call: &str) -> (String, Pending) {
        let pending = Pending {
            referred_by: self.referred_by,
            target: target.clone(),
            tenant: self.tenant,
            user: user.to_owned(),
            consultation: self.consultation,
            call: call.to_owned(),
        };
        (self.correlation, pending)
    }
}

/// The `Referred-By`'s `x-ti` (the transferor's correlation id), by which drhub finds
/// the transfer an INVITE back belongs to.
pub fn correlation_of(referred_by: &str) -> Option<&str> {
    let uri = referred_by.trim().trim_start_matches('<');
    let uri = uri.split('>').next()?;
    uri.split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("x-ti"))
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The target call URI of a transfer (the `x-tt` of `Referred-By`, RFC 5589 §7): the
/// Refer-To's URI, with the consultation dialog as an escaped `Replaces` URI header for
/// a consultative transfer.
pub fn target_call_uri(refer_to: &str, consultation: Option<&Consultation>) -> String {
    let uri = refer_to.trim_start_matches('<').trim_end_matches('>');
    match consultation {
        None => uri.to_owned(),
        Some(c) => format!("{uri}?Replaces={}", escape(&c.replaces.to_string())),
    }
}

/// Percent-encodes everything but RFC 3261's `unreserved` characters, so that a URI can
/// stand as a URI parameter's value.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The status line of a NOTIFY's `message/sipfrag` body (RFC 3515 §2.4.5): the status
/// of the transfer's INVITE, `SIP/2.0 200 OK` when it succeeded. `None` when the body
/// does not start with a SIP status line.
pub fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?.trim();
    let rest = line.strip_prefix("SIP/2.0 ")?;
    let code: u16 = rest.split_whitespace().next()?.parse().ok()?;
    (100..700).contains(&code).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dr_xfer_3_targets_parse() {
        let cases: [(&str, Option<Target>); 7] = [
            ("+14255550123", Some(Target::Number("+14255550123".into()))),
            (
                " +442071234567 ",
                Some(Target::Number("+442071234567".into())),
            ),
            ("+", None),
            ("+1425x", None),
            (
                "User2@Contoso.com",
                Some(Target::User("user2@contoso.com".into())),
            ),
            ("user2@", None),
            ("4255550123", None),
        ];
        for (to, want) in cases {
            assert_eq!(Target::parse(to), want, "{to}");
        }
    }

    /// DR-XFER-3: the header values, in the spec's shape, and within the 400 characters
    /// an SBC must accept.
    #[test]
    fn dr_xfer_3_refer_to_and_referred_by() {
        let proxy = "sip.pstnhub.microsoft.com";
        let n = Target::Number("+14255550123".into());
        assert_eq!(
            refer_to(&n, proxy, "adatum"),
            "<sip:+14255550123@sip.pstnhub.microsoft.com;user=phone>"
        );
        let u = Target::User("user2@adatum.biz".into());
        let to = refer_to(&u, proxy, "adatum");
        assert!(
            to.starts_with("<sip:sip.pstnhub.microsoft.com;x-m=8:orgid:")
                && to.ends_with(";x-t=adatum>"),
            "{to}"
        );
        let by = referred_by(
            "user1@adatum.biz",
            proxy,
            "adatum",
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            "sip:+14255550123@sip.pstnhub.microsoft.com;user=phone",
        );
        assert!(
            by.contains(";x-t=adatum;x-ti=0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0;"),
            "{by}"
        );
        assert!(
            by.contains(";x-tt=sip%3A%2B14255550123%40sip.pstnhub.microsoft.com%3Buser%3Dphone>"),
            "{by}"
        );
        assert!(by.len() <= 400 && to.len() <= 400);
        // The same user has the same MRI; another user another.
        assert_eq!(
            mri("adatum", "User1@adatum.biz"),
            mri("adatum", "user1@adatum.biz")
        );
        assert_ne!(
            mri("adatum", "user1@adatum.biz"),
            mri("adatum", "user2@adatum.biz")
        );
        assert_eq!(
            mri("adatum", "user1@adatum.biz").len(),
            "8:orgid:".len() + 36
        );
    }

    /// RFC 3891 §6.1, RFC 5589 §7: the `Replaces` value, the `x-tt` of a consultative
    /// transfer, and which trunk gets the `Replaces`.
    #[test]
    fn dr_xfer_3_consultative_transfer_headers() {
        let c = Consultation {
            call: "c2".into(),
            replaces: Replaces {
                call_id: "abc@drhub".into(),
                to_tag: "sbc7".into(),
                from_tag: "d00d".into(),
            },
            trunk: "sbc1.adatum.biz".into(),
            number: Some("+14255550123".into()),
        };
        assert_eq!(
            c.replaces.to_string(),
            "abc@drhub;to-tag=sbc7;from-tag=d00d"
        );
        let to = "<sip:+14255550123@sip.pstnhub.microsoft.com;user=phone>";
        assert_eq!(
            target_call_uri(to, None),
            "sip:+14255550123@sip.pstnhub.microsoft.com;user=phone"
        );
        assert_eq!(
            target_call_uri(to, Some(&c)),
            "sip:+14255550123@sip.pstnhub.microsoft.com;user=phone\
             ?Replaces=abc%40drhub%3Bto-tag%3Dsbc7%3Bfrom-tag%3Dd00d"
        );
        let t = Transferred {
            referred_by: String::new(),
            consultation: Some(c),
        };
        assert_eq!(
            t.replaces_for("SBC1.adatum.biz").as_deref(),
            Some("abc@drhub;to-tag=sbc7;from-tag=d00d")
        );
        assert_eq!(t.replaces_for("sbc2.adatum.biz"), None);
    }

    /// The `x-ti` an INVITE back is matched by, wherever it stands among the parameters.
    #[test]
    fn dr_xfer_4_correlation_of_referred_by() {
        let refer = Refer::new(
            &Target::Number("+14255550123".into()),
            "sip.pstnhub.microsoft.com",
            "adatum",
            "user1@adatum.biz",
            None,
        );
        assert_eq!(
            correlation_of(&refer.referred_by),
            Some(refer.correlation.as_str())
        );
        let cases: [(&str, Option<&str>); 5] = [
            ("<sip:p;x-ti=abc;x-tt=y>", Some("abc")),
            (" <sip:p;X-TI=abc> ", Some("abc")),
            ("<sip:p;x-t=abc>", None),
            ("<sip:p;x-ti=>", None),
            ("sip:p", None),
        ];
        for (by, want) in cases {
            assert_eq!(correlation_of(by), want, "{by}");
        }
        let (ti, pending) = refer.pending(
            &Target::Number("+14255550123".into()),
            "user1@adatum.biz",
            "call-1",
        );
        assert_eq!(correlation_of(&pending.referred_by), Some(ti.as_str()));
    }

    #[test]
    fn sipfrag_status_lines() {
        let cases: [(&[u8], Option<u16>); 6] = [
            (b"SIP/2.0 100 Trying\r\n", Some(100)),
            (b"SIP/2.0 200 OK", Some(200)),
            (b"SIP/2.0 486 Busy Here\r\nContent-Length: 0\r\n", Some(486)),
            (b"SIP/2.0 99 Odd\r\n", None),
            (b"INVITE sip:x SIP/2.0\r\n", None),
            (b"\xff\xfe", None),
        ];
        for (body, want) in cases {
            assert_eq!(sipfrag_status(body), want, "{body:?}");
        }
    }
}
