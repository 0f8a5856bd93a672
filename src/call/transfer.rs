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
