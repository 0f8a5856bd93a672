//! Borrowed URI views: `sip:`/`sips:` (RFC 3261 §19.1, grammar §25.1), `tel:` (RFC 3966)
//! and any other absolute URI, kept opaque.
//!
//! A [`Uri`] only exists if its text passed the grammar, so its accessors never fail and
//! never copy: user and parameter text stays escaped exactly as received (RFC 3261 §19.1.4
//! compares escaped and unescaped forms as equal, so callers compare through
//! [`pct_eq`]/[`decode_into`] instead of normalising into a `String`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::header::{Param, ParamKind, Params, SyntaxError};
use super::lex;

/// The URI scheme; `sip`, `sips` and `tel` are parsed fully, anything else stays opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme<'b> {
    /// `sip:` (RFC 3261 §19.1).
    Sip,
    /// `sips:` (RFC 3261 §19.1); policy decides whether it is supported (416 otherwise).
    Sips,
    /// `tel:` (RFC 3966).
    Tel,
    /// Any other syntactically valid scheme, as written (e.g. `soap.beep`, `isbn`, `http`).
    Other(&'b str),
}

impl<'b> Scheme<'b> {
    /// The scheme name as it should be written.
    pub fn as_str(&self) -> &'b str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
            Scheme::Other(s) => s,
        }
    }
}

/// A host as found in a SIP URI or a Via sent-by: a domain name (as written, compare
/// case-insensitively) or an IP address, already converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'b> {
    /// A hostname that matched the RFC 3261 `hostname` rule, as written.
    Domain(&'b str),
    /// A dotted-quad IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 reference; brackets are stripped (they are mandatory in SIP URIs).
    V6(Ipv6Addr),
}

impl<'b> Host<'b> {
    /// True for IPv4 and IPv6 addresses (DR-VAL-2 and DR-VAL-4 reject those as SBC identity).
    pub fn is_ip(&self) -> bool {
        !matches!(self, Host::Domain(_))
    }

    /// The address, when the host is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Domain(_) => None,
            Host::V4(a) => Some(IpAddr::V4(*a)),
            Host::V6(a) => Some(IpAddr::V6(*a)),
        }
    }

    /// The domain name, when the host is one.
    pub fn domain(&self) -> Option<&'b str> {
        match self {
            Host::Domain(d) => Some(d),
            _ => None,
        }
    }

    /// Parses `hostname / IPv4address / IPv6reference` (brackets required for IPv6).
    pub fn parse(s: &'b str) -> Result<Host<'b>, SyntaxError> {
        match scan_host(s, 0)? {
            (h, end) if end == s.len() => Ok(h),
            _ => Err(SyntaxError::Host),
        }
    }
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// Scans `host` (RFC 3261 §25.1) starting at `from`: an IPv6 reference in brackets, or a
/// run of name characters checked as `hostname` (labels of alphanumerics and inner hyphens)
/// in the same pass. Returns the host and the index just past it.
///
/// A name whose last label starts with a digit can only be an IPv4 address (the `toplabel`
/// rule), so `1.2.3` and `256.1.1.1` are rejected rather than taken as names.
#[inline(always)]
pub(crate) fn scan_host(s: &str, from: usize) -> Result<(Host<'_>, usize), SyntaxError> {
    let b = s.as_bytes();
    if b.get(from) == Some(&b'[') {
        let close =
            from + lex::find_byte(b.get(from..).unwrap_or(&[]), b']').ok_or(SyntaxError::Host)?;
        let inner = s.get(from + 1..close).ok_or(SyntaxError::Host)?;
        let a = parse_ipv6(inner).ok_or(SyntaxError::Host)?;
        return Ok((Host::V6(a), close + 1));
    }
    // A dotted quad that ends the host is taken directly (the general rule below would
    // find the same name and read it as the same address).
    if b.get(from).is_some_and(u8::is_ascii_digit) {
        if let Some((a, end)) = dotted_quad(b, from) {
            if !b
                .get(end)
                .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
            {
                return Ok((Host::V4(a), end));
            }
        }
    }
    // One pass over the name characters, checking the label structure on the way: labels
    // are non-empty and do not start or end with `-`; one trailing dot (a fully qualified
    // name) is allowed. `last_dot`/`last_dash` are one past the latest `.`/`-` (0: none),
    // so that "the byte before is a dot" is one comparison.
    let mut i = from;
    let mut last_dot = 0usize;
    let mut last_dash = 0usize;
    // Start of the last label, and of the one before it (for a trailing dot).
    let mut label = from;
    let mut prev_label = from;
    loop {
        i = lex::run(b, i, lex::ALNUM);
        match b.get(i) {
            Some(b'-') => {
                // A label cannot start with `-`.
                if i == label {
                    return Err(SyntaxError::Host);
                }
                last_dash = i + 1;
            }
            Some(b'.') => {
                // Nor be empty, nor end with `-`.
                if i == label || last_dash == i {
                    return Err(SyntaxError::Host);
                }
                last_dot = i + 1;
                prev_label = label;
                label = i + 1;
            }
            _ => break,
        }
        i += 1;
    }
    let end = i;
    // The name is not empty and its last label does not end with `-` (a trailing dot was
    // checked when it was seen, and only one is allowed).
    if end == from || last_dash == end {
        return Err(SyntaxError::Host);
    }
    let top = if last_dot == end { prev_label } else { label };
    let text = s.get(from..end).ok_or(SyntaxError::Host)?;
    // A name whose last label starts with a digit can only be an IPv4 address.
    if b.get(top).is_some_and(u8::is_ascii_digit) {
        let a = parse_ipv4(text.as_bytes()).ok_or(SyntaxError::Host)?;
        return Ok((Host::V4(a), end));
    }
    Ok((Host::Domain(text), end))
}

/// The dotted quad at `b[from..]` (the rules of [`parse_ipv4`]) and where it ends.
#[inline]
fn dotted_quad(b: &[u8], from: usize) -> Option<(Ipv4Addr, usize)> {
    let mut octets = [0u8; 4];
    let mut i = from;
    for (k, octet) in octets.iter_mut().enumerate() {
        if k > 0 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut val: u16 = 0;
        while let Some(&c) = b.get(i) {
            if !c.is_ascii_digit() || i - start == 3 {
                break;
            }
            val = val * 10 + u16::from(c - b'0');
            i += 1;
        }
        // 1-3 digits, no leading zero, at most 255.
        let digits = i - start;
        if digits == 0 || (digits > 1 && b.get(start) == Some(&b'0')) {
            return None;
        }
        *octet = u8::try_from(val).ok()?;
    }
    // A fourth digit would make it something else; leave that to the general rule.
    if b.get(i).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    Some((Ipv4Addr::from(octets), i))
}

/// Dotted-quad IPv4 (RFC 5954 `dec-octet`: 0-255, no leading zeros).
pub(crate) fn parse_ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut n = 0usize;
    let mut val: u16 = 0;
    let mut digits = 0u8;
    for &c in b {
        if c.is_ascii_digit() {
            if digits == 3 || (digits == 1 && val == 0) {
                return None;
            }
            val = val * 10 + u16::from(c - b'0');
            digits += 1;
        } else if c == b'.' && digits > 0 {
            *octets.get_mut(n)? = u8::try_from(val).ok()?;
            n += 1;
            val = 0;
            digits = 0;
        } else {
            return None;
        }
    }
    if digits == 0 || n != 3 {
        return None;
    }
    *octets.get_mut(3)? = u8::try_from(val).ok()?;
    Some(Ipv4Addr::from(octets))
}

/// Parses the text between an IPv6 reference's brackets.
///
/// RFC 5118 §4.10 (IPv6 reference bug in the RFC 3261 ABNF): RFC 3261 §25.1 took its
/// `IPv6address` rule from RFC 2373, which derives `2001:db8:::192.0.2.1` (three colons
/// before an embedded IPv4 address); RFC 5118 says an implementation must tolerate both that
/// and the correct two-colon form. Decision: accept `:::` only in that one position (right
/// before a trailing dotted IPv4 part) and read it as `::`, so both forms name the same
/// address; every other malformed address still fails (RFC 5954 fixed the grammar, and we
/// do not widen it beyond what the old one could derive).
pub(crate) fn parse_ipv6(s: &str) -> Option<Ipv6Addr> {
    if let Ok(a) = s.parse::<Ipv6Addr>() {
        return Some(a);
    }
    let i = s.as_bytes().windows(3).position(|w| w == b":::")?;
    let head = s.get(..i)?;
    let tail = s.get(i + 3..)?;
    if lex::find(tail, b':').is_some() || lex::find(tail, b'.').is_none() {
        return None;
    }
    // Rebuild "head::tail" on the stack; the longest valid text form is 45 bytes.
    let mut buf = [0u8; 64];
    let total = head.len() + 2 + tail.len();
    let out = buf.get_mut(..total)?;
    let (h, rest) = out.split_at_mut(head.len());
    h.copy_from_slice(head.as_bytes());
    let (colons, t) = rest.split_at_mut(2);
    colons.copy_from_slice(b"::");
    t.copy_from_slice(tail.as_bytes());
    std::str::from_utf8(out).ok()?.parse().ok()
}

/// A byte range within a URI (URIs longer than 64 KiB are rejected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Span {
    start: u16,
    end: u16,
}

impl Span {
    fn new(start: usize, end: usize) -> Result<Span, SyntaxError> {
        match (u16::try_from(start), u16::try_from(end)) {
            (Ok(start), Ok(end)) => Ok(Span { start, end }),
            _ => Err(SyntaxError::Uri),
        }
    }

    fn of(self, raw: &str) -> &str {
        raw.get(usize::from(self.start)..usize::from(self.end))
            .unwrap_or("")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SchemeTag {
    Sip,
    Sips,
    Tel,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostRepr {
    None,
    Domain(Span),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

/// A parsed URI borrowed from the message.
///
/// Guarantees: the text matched RFC 3261 §25.1 (`sip`/`sips`), RFC 3966 (`tel`) or the
/// generic `absoluteURI` rule; `%` escapes are well formed; SIP hosts are valid names or
/// addresses; no whitespace anywhere. Stored as the text plus offsets, so it is small to
/// copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'b> {
    raw: &'b str,
    scheme: SchemeTag,
    /// Index just after `scheme:`.
    rest: u16,
    user: Option<Span>,
    password: Option<Span>,
    host: HostRepr,
    port: Option<u16>,
    params: Span,
    headers: Option<Span>,
}

impl<'b> Uri<'b> {
    /// Parses one URI; the text must be exactly the URI (no brackets, no surrounding LWS).
    pub fn parse(raw: &'b str) -> Result<Uri<'b>, SyntaxError> {
        let b = raw.as_bytes();
        if b.len() > usize::from(u16::MAX) {
            return Err(SyntaxError::Uri);
        }
        let lower = |i: usize| b.get(i).map(|c| c.to_ascii_lowercase());
        // Fast paths for the schemes drhub speaks; anything else goes through the generic rule.
        let (scheme, colon) = match (lower(0), lower(1), lower(2), lower(3), b.get(4)) {
            (Some(b's'), Some(b'i'), Some(b'p'), Some(b':'), _) => (SchemeTag::Sip, 3),
            (Some(b's'), Some(b'i'), Some(b'p'), Some(b's'), Some(b':')) => (SchemeTag::Sips, 4),
            (Some(b't'), Some(b'e'), Some(b'l'), Some(b':'), _) => (SchemeTag::Tel, 3),
            _ => {
                let colon = lex::find(raw, b':').ok_or(SyntaxError::Scheme)?;
                let name = raw.get(..colon).ok_or(SyntaxError::Scheme)?;
                // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
                let mut it = name.bytes();
                let first_ok = it.next().is_some_and(|c| c.is_ascii_alphabetic());
                if !first_ok
                    || !it.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
                {
                    return Err(SyntaxError::Scheme);
                }
                (SchemeTag::Other, colon)
            }
        };
        let mut uri = Uri {
            raw,
            scheme,
            // `raw` is at most u16::MAX bytes long, so this is exact.
            rest: (colon + 1) as u16,
            user: None,
            password: None,
            host: HostRepr::None,
            port: None,
            params: Span::default(),
            headers: None,
        };
        match scheme {
            SchemeTag::Sip | SchemeTag::Sips => uri.parse_sip(colon + 1)?,
            SchemeTag::Tel => uri.parse_tel(colon + 1)?,
            SchemeTag::Other => {
                // absoluteURI: opaque-part or hier-part, all `uric` characters.
                let rest = raw.get(colon + 1..).unwrap_or("");
                if rest.is_empty() || !lex::is_escaped_run(rest, lex::URIC) {
                    return Err(SyntaxError::Uri);
                }
            }
        }
        Ok(uri)
    }

    /// `[ userinfo ] hostport uri-parameters [ headers ]`.
    ///
    /// `@` cannot appear unescaped in host, parameters or headers, so the first one ends
    /// the userinfo even when the user part holds `;` or `?` (RFC 4475 §3.1.1.9), and a
    /// URI without userinfo parses as `hostport ...` to its end only if it has no `@` at
    /// all. That form is tried first; the userinfo is looked for only when it fails.
    fn parse_sip(&mut self, from: usize) -> Result<(), SyntaxError> {
        let raw = self.raw;
        let b = raw.as_bytes();
        // A host starts with an alphanumeric or `[`; after anything else (the `+` of a
        // phone number) only a user part can follow, and the host form fails as it would.
        let e = if b
            .get(from)
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'[')
        {
            let Err(e) = self.parse_hostport(from) else {
                return Ok(());
            };
            e
        } else {
            SyntaxError::Host
        };
        let Some(at) = b.get(from..).and_then(|r| lex::find_byte(r, b'@')) else {
            return Err(e);
        };
        self.port = None;
        self.headers = None;
        let at = from + at;
        let user_end = lex::run_escaped(b, from, lex::USER).ok_or(SyntaxError::UserInfo)?;
        // user = 1*(...): an `@` with nothing before it is invalid (DR-VAL-7).
        if user_end == from {
            return Err(SyntaxError::UserInfo);
        }
        self.user = Some(Span::new(from, user_end)?);
        if user_end != at {
            if b.get(user_end) != Some(&b':') {
                return Err(SyntaxError::UserInfo);
            }
            let pw_end =
                lex::run_escaped(b, user_end + 1, lex::PASSWORD).ok_or(SyntaxError::UserInfo)?;
            if pw_end != at {
                return Err(SyntaxError::UserInfo);
            }
            self.password = Some(Span::new(user_end + 1, at)?);
        }
        self.parse_hostport(at + 1)
    }

    /// `hostport uri-parameters [ headers ]` from `i` to the end, in one forward pass.
    #[inline]
    fn parse_hostport(&mut self, i: usize) -> Result<(), SyntaxError> {
        let raw = self.raw;
        let b = raw.as_bytes();
        let mut i = self.scan_hostport(raw, i)?;
        if b.get(i) == Some(&b'?') {
            validate_uri_headers(raw.get(i + 1..).unwrap_or(""))?;
            self.headers = Some(Span::new(i + 1, b.len())?);
            i = b.len();
        }
        if i != b.len() {
            return Err(match b.get(i) {
                Some(b':') => SyntaxError::Port,
                _ => SyntaxError::Uri,
            });
        }
        Ok(())
    }

    /// `hostport uri-parameters` of the URI text starting at `t` (which may run on past
    /// the URI), from `i`: records them and returns the index of the first byte after
    /// them. Offsets are relative to `t`.
    #[inline(always)]
    fn scan_hostport(&mut self, t: &str, mut i: usize) -> Result<usize, SyntaxError> {
        let b = t.as_bytes();
        let (host, end) = scan_host(t, i)?;
        self.host = match host {
            Host::Domain(_) => HostRepr::Domain(Span::new(i, end)?),
            Host::V4(a) => HostRepr::V4(a),
            Host::V6(a) => HostRepr::V6(a),
        };
        i = end;
        if b.get(i) == Some(&b':') {
            // port = 1*DIGIT, within u16 (saturating past it).
            let start = i + 1;
            let mut j = start;
            let mut port: u32 = 0;
            while let Some(&c) = b.get(j) {
                if !c.is_ascii_digit() {
                    break;
                }
                port = (port * 10 + u32::from(c - b'0')).min(0x1_0000);
                j += 1;
            }
            if j == start {
                return Err(SyntaxError::Port);
            }
            self.port = Some(u16::try_from(port).map_err(|_| SyntaxError::Port)?);
            i = j;
        }
        // uri-parameters = *( ";" pname [ "=" pvalue ] )
        let params_start = i;
        while b.get(i) == Some(&b';') {
            let name_end = lex::run_escaped(b, i + 1, lex::PARAMCHAR).ok_or(SyntaxError::Param)?;
            if name_end == i + 1 {
                return Err(SyntaxError::Param);
            }
            i = name_end;
            if b.get(i) == Some(&b'=') {
                let value_end =
                    lex::run_escaped(b, i + 1, lex::PARAMCHAR).ok_or(SyntaxError::Param)?;
                if value_end == i + 1 {
                    return Err(SyntaxError::Param);
                }
                i = value_end;
            }
        }
        self.params = Span::new(params_start, i)?;
        Ok(i)
    }

    /// The `sip:`/`sips:` URI starting at `s[from..]` and closed by `>`, parsed in one pass
    /// without looking for the `>` first; returns it and the index of the `>`.
    ///
    /// No character of such a URI (without `?headers`) is a `>`, so a URI that parses up
    /// to a `>` is exactly the text between `<` and the first `>` after it, and the result
    /// is what [`Uri::parse`] gives for that text. `None` for anything else (other schemes,
    /// headers, a password, any error): the caller then takes the general path, which
    /// also reports the precise error.
    #[inline(always)]
    pub(crate) fn parse_bracketed(s: &'b str, from: usize) -> Option<(Uri<'b>, usize)> {
        let t = s.get(from..)?;
        let b = t.as_bytes();
        let lower = |i: usize| b.get(i).map(|c| c | 0x20);
        let (scheme, colon) = match (lower(0), lower(1), lower(2), b.get(3), b.get(4)) {
            (Some(b's'), Some(b'i'), Some(b'p'), Some(b':'), _) => (SchemeTag::Sip, 3),
            (Some(b's'), Some(b'i'), Some(b'p'), Some(b's' | b'S'), Some(b':')) => {
                (SchemeTag::Sips, 4)
            }
            _ => return None,
        };
        let mut uri = Uri {
            raw: "",
            scheme,
            rest: (colon + 1) as u16,
            user: None,
            password: None,
            host: HostRepr::None,
            port: None,
            params: Span::default(),
            headers: None,
        };
        // A host starts with an alphanumeric or `[`; anything else (`+` of a phone
        // number) can only start a user part.
        let host_first = b
            .get(colon + 1)
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'[');
        let hostport = if host_first {
            uri.scan_hostport(t, colon + 1)
        } else {
            Err(SyntaxError::Host)
        };
        let stop = match hostport {
            Ok(stop) if b.get(stop) == Some(&b'>') => stop,
            _ => {
                // `user@`: the user run cannot hold `@` or `>`, so this `@` is the first
                // one of the URI.
                let user_end = lex::run_escaped(b, colon + 1, lex::USER)?;
                if user_end == colon + 1 || b.get(user_end) != Some(&b'@') {
                    return None;
                }
                uri.user = Some(Span::new(colon + 1, user_end).ok()?);
                uri.port = None;
                let stop = uri.scan_hostport(t, user_end + 1).ok()?;
                if b.get(stop) != Some(&b'>') {
                    return None;
                }
                stop
            }
        };
        if stop > usize::from(u16::MAX) {
            return None;
        }
        uri.raw = t.get(..stop)?;
        Some((uri, from + stop))
    }

    /// `telephone-subscriber` (RFC 3966 §3); the number goes into `user`.
    fn parse_tel(&mut self, from: usize) -> Result<(), SyntaxError> {
        let rest = self.raw.get(from..).unwrap_or("");
        let end = lex::find(rest, b';').unwrap_or(rest.len());
        let number = rest.get(..end).unwrap_or("");
        // (tel: URIs are rare on the hot path; the generic parameter scanner is fine here)
        let params = Params::parse(rest.get(end..).unwrap_or(""), ParamKind::Tel)?;
        let visual = |b: u8| matches!(b, b'-' | b'.' | b'(' | b')');
        let ok = if let Some(digits) = number.strip_prefix('+') {
            // global-number-digits = "+" *phonedigit DIGIT *phonedigit
            digits.bytes().all(|b| b.is_ascii_digit() || visual(b))
                && digits.bytes().any(|b| b.is_ascii_digit())
        } else {
            // local-number-digits, which RFC 3966 §5.1.5 requires to carry phone-context.
            number
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b'*' | b'#') || visual(b))
                && number
                    .bytes()
                    .any(|b| b.is_ascii_hexdigit() || matches!(b, b'*' | b'#'))
                && params.get("phone-context").is_some()
        };
        if !ok {
            return Err(SyntaxError::UserInfo);
        }
        self.user = Some(Span::new(from, from + end)?);
        self.params = Span::new(from + end, self.raw.len())?;
        Ok(())
    }

    /// The whole URI as received.
    pub fn as_str(&self) -> &'b str {
        self.raw
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme<'b> {
        match self.scheme {
            SchemeTag::Sip => Scheme::Sip,
            SchemeTag::Sips => Scheme::Sips,
            SchemeTag::Tel => Scheme::Tel,
            SchemeTag::Other => Scheme::Other(
                self.raw
                    .get(..usize::from(self.rest).saturating_sub(1))
                    .unwrap_or(""),
            ),
        }
    }

    /// True for `sips:` URIs.
    pub fn is_sips(&self) -> bool {
        self.scheme == SchemeTag::Sips
    }

    /// The user part, still `%`-escaped; for `tel:` the number (`+1-201-555-0123`).
    pub fn user(&self) -> Option<&'b str> {
        let raw = self.raw;
        self.user.map(|s| s.of(raw))
    }

    /// The password part of the userinfo (deprecated by RFC 3261 §19.1.1, kept as received).
    pub fn password(&self) -> Option<&'b str> {
        let raw = self.raw;
        self.password.map(|s| s.of(raw))
    }

    /// The host of a `sip:`/`sips:` URI; `None` for `tel:` and opaque URIs.
    pub fn host(&self) -> Option<Host<'b>> {
        match self.host {
            HostRepr::None => None,
            HostRepr::Domain(s) => Some(Host::Domain(s.of(self.raw))),
            HostRepr::V4(a) => Some(Host::V4(a)),
            HostRepr::V6(a) => Some(Host::V6(a)),
        }
    }

    /// The explicit port, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// URI parameters (`;transport=tls;lr`), names and values still escaped.
    pub fn params(&self) -> Params<'b> {
        let kind = if self.scheme == SchemeTag::Tel {
            ParamKind::Tel
        } else {
            ParamKind::Uri
        };
        Params::from_validated(self.params.of(self.raw), kind)
    }

    /// First URI parameter with this name (case-insensitive, escapes in the name decoded).
    pub fn param(&self, name: &str) -> Option<Param<'b>> {
        self.params().get(name)
    }

    /// True if the URI carries escaped headers after `?` (forbidden in a Request-URI).
    pub fn has_headers(&self) -> bool {
        self.headers.is_some()
    }

    /// The escaped headers after `?` (`hname=hvalue` pairs joined by `&`).
    pub fn headers(&self) -> UriHeaders<'b> {
        let raw = self.raw;
        UriHeaders {
            rest: self.headers.map(|s| s.of(raw)).filter(|h| !h.is_empty()),
        }
    }

    /// Everything after `scheme:`; the only content of an opaque (`Scheme::Other`) URI.
    pub fn opaque(&self) -> &'b str {
        self.raw.get(usize::from(self.rest)..).unwrap_or("")
    }

    /// True for a `tel:` URI or a SIP URI with `user=phone` (RFC 3261 §19.1.1).
    pub fn is_phone(&self) -> bool {
        match self.scheme {
            SchemeTag::Tel => true,
            SchemeTag::Sip | SchemeTag::Sips => self
                .param("user")
                .and_then(|p| p.value)
                .is_some_and(|v| pct_eq_ignore_case(v, "phone")),
            SchemeTag::Other => false,
        }
    }

    /// Decodes the user part into `out` (no allocation); the bytes may be any octets.
    pub fn user_decoded<'o>(&self, out: &'o mut [u8]) -> Result<&'o [u8], DecodeError> {
        decode_into(self.user().unwrap_or(""), out)
    }
}

impl fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw)
    }
}

/// `port = 1*DIGIT`, within `u16`.
pub(crate) fn parse_port(s: &str) -> Option<u16> {
    lex::parse_digits(s).and_then(|n| u16::try_from(n).ok())
}

/// `headers = "?" header *( "&" header )`, `header = hname "=" hvalue`.
fn validate_uri_headers(h: &str) -> Result<(), SyntaxError> {
    for pair in h.split('&') {
        // (validation only; runs once per URI that has headers, which is rare)
        let (name, value) = lex::split_at_byte(pair, b'=').ok_or(SyntaxError::UriHeaders)?;
        if name.is_empty()
            || !lex::is_escaped_run(name, lex::HNV)
            || !lex::is_escaped_run(value, lex::HNV)
        {
            return Err(SyntaxError::UriHeaders);
        }
    }
    Ok(())
}

/// Iterator over the `(hname, hvalue)` pairs of a SIP URI's headers, still escaped.
#[derive(Debug, Clone)]
pub struct UriHeaders<'b> {
    rest: Option<&'b str>,
}

impl<'b> Iterator for UriHeaders<'b> {
    type Item = (&'b str, &'b str);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest?;
        let (pair, next) = match lex::split_at_byte(rest, b'&') {
            Some((p, n)) => (p, Some(n)),
            None => (rest, None),
        };
        self.rest = next;
        Some(lex::split_at_byte(pair, b'=').unwrap_or((pair, "")))
    }
}

/// Why [`decode_into`] could not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The output buffer is shorter than the decoded text.
    BufferTooSmall,
    /// A `%` not followed by two hex digits.
    BadEscape,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecodeError::BufferTooSmall => "buffer too small for decoded text",
            DecodeError::BadEscape => "malformed %-escape",
        })
    }
}

impl std::error::Error for DecodeError {}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes of `raw` into `out` and returns the decoded prefix of `out`.
///
/// Decoding is one level only (RFC 3986 §2.4): `%2541` decodes to `%41`, not `A`.
pub fn decode_into<'o>(raw: &str, out: &'o mut [u8]) -> Result<&'o [u8], DecodeError> {
    let mut n = 0;
    for b in PctDecoded::new(raw) {
        let b = b.ok_or(DecodeError::BadEscape)?;
        *out.get_mut(n).ok_or(DecodeError::BufferTooSmall)? = b;
        n += 1;
    }
    out.get(..n).ok_or(DecodeError::BufferTooSmall)
}

/// Octets of a `%`-escaped string, decoded on the fly; `None` items mark a bad escape.
struct PctDecoded<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> PctDecoded<'a> {
    fn new(s: &'a str) -> Self {
        PctDecoded {
            b: s.as_bytes(),
            i: 0,
        }
    }
}

impl Iterator for PctDecoded<'_> {
    type Item = Option<u8>;

    fn next(&mut self) -> Option<Option<u8>> {
        let c = *self.b.get(self.i)?;
        if c != b'%' {
            self.i += 1;
            return Some(Some(c));
        }
        let hi = self.b.get(self.i + 1).copied().and_then(hex_val);
        let lo = self.b.get(self.i + 2).copied().and_then(hex_val);
        match (hi, lo) {
            (Some(h), Some(l)) => {
                self.i += 3;
                Some(Some(h << 4 | l))
            }
            _ => {
                self.i = self.b.len();
                Some(None)
            }
        }
    }
}

fn pct_cmp(escaped: &str, plain: &str, fold: bool) -> bool {
    let mut p = plain.bytes();
    for d in PctDecoded::new(escaped) {
        let (Some(d), Some(c)) = (d, p.next()) else {
            return false;
        };
        let same = if fold {
            d.eq_ignore_ascii_case(&c)
        } else {
            d == c
        };
        if !same {
            return false;
        }
    }
    p.next().is_none()
}

/// Compares an escaped URI component with plain text, octet for octet after decoding
/// (user parts are case-sensitive, RFC 3261 §19.1.4).
pub fn pct_eq(escaped: &str, plain: &str) -> bool {
    pct_cmp(escaped, plain, false)
}

/// Like [`pct_eq`] but ASCII case-insensitive (parameter names, most parameter values).
pub fn pct_eq_ignore_case(escaped: &str, plain: &str) -> bool {
    if lex::find(escaped, b'%').is_none() {
        return lex::eq_ci(escaped, plain);
    }
    pct_cmp(escaped, plain, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Uri<'_> {
        match Uri::parse(s) {
            Ok(u) => u,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    #[test]
    fn sip_uris_parse_into_parts() {
        let u = ok("sip:+18338006777@sip.pstnhub.microsoft.com:5061;user=phone");
        assert_eq!(u.scheme(), Scheme::Sip);
        assert_eq!(u.user(), Some("+18338006777"));
        assert_eq!(u.host(), Some(Host::Domain("sip.pstnhub.microsoft.com")));
        assert_eq!(u.port(), Some(5061));
        assert!(u.is_phone());
        assert_eq!(u.param("USER").and_then(|p| p.value), Some("phone"));

        let u =
            ok("sips:alice:secret@[2001:db8::1]:5061;transport=tls;lr?Subject=hi&Priority=urgent");
        assert!(u.is_sips());
        assert_eq!(u.password(), Some("secret"));
        assert_eq!(u.host(), Some(Host::V6("2001:db8::1".parse().unwrap())));
        assert_eq!(u.port(), Some(5061));
        assert!(u.param("lr").is_some_and(|p| p.value.is_none()));
        assert_eq!(u.param("transport").and_then(|p| p.value), Some("tls"));
        let hs: Vec<_> = u.headers().collect();
        assert_eq!(hs, [("Subject", "hi"), ("Priority", "urgent")]);

        let u = ok("sip:sbc1.adatum.biz:5061");
        assert_eq!(u.user(), None);
        assert_eq!(u.host(), Some(Host::Domain("sbc1.adatum.biz")));
        let u = ok("SIP:192.0.2.4");
        assert_eq!(u.host(), Some(Host::V4(Ipv4Addr::new(192, 0, 2, 4))));
        assert!(u.host().is_some_and(|h| h.is_ip()));
    }

    #[test]
    fn user_parts_with_reserved_characters() {
        // RFC 4475 §3.1.1.9: `;` in the user part, so no URI parameters at all.
        let u = ok("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user(), Some("user;par=u%40example.net"));
        assert!(u.params().is_empty());
        // RFC 4475 §3.1.1.2: every unusual user and password character.
        let u = ok("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com");
        assert_eq!(
            u.user(),
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(
            u.password(),
            Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        );
    }

    #[test]
    fn escapes_decode_once_into_caller_buffers() {
        let u = ok("sip:sips%3Auser%40example.com@example.net");
        let mut buf = [0u8; 64];
        assert_eq!(u.user_decoded(&mut buf).unwrap(), b"sips:user@example.com");
        let u = ok("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31");
        assert!(pct_eq(u.user().unwrap(), "caller"));
        assert!(u.param("lr").is_some());
        let v = u.param("name").and_then(|p| p.value).unwrap();
        assert_eq!(decode_into(v, &mut buf).unwrap(), b"value%41");
        let u = ok("sip:null-%00-null@example.com");
        assert_eq!(u.user_decoded(&mut buf).unwrap(), b"null-\0-null");
        assert_eq!(
            decode_into("abcdef", &mut [0u8; 3]),
            Err(DecodeError::BufferTooSmall)
        );
        assert_eq!(decode_into("a%4", &mut buf), Err(DecodeError::BadEscape));
        assert!(pct_eq_ignore_case("PH%4fNE", "phone"));
        assert!(!pct_eq("Caller", "caller"));
    }

    #[test]
    fn tel_and_other_schemes() {
        let u = ok("tel:+1-201-555-0123;ext=12");
        assert_eq!(u.scheme(), Scheme::Tel);
        assert_eq!(u.user(), Some("+1-201-555-0123"));
        assert_eq!(u.param("ext").and_then(|p| p.value), Some("12"));
        assert_eq!(u.host(), None);
        assert!(u.is_phone());
        let u = ok("tel:7042;phone-context=example.com");
        assert_eq!(u.user(), Some("7042"));
        assert!(
            Uri::parse("tel:7042").is_err(),
            "local number needs phone-context"
        );
        assert!(Uri::parse("tel:+").is_err());
        assert!(Uri::parse("tel:+1 201").is_err());

        for s in [
            "nobodyKnowsThisScheme:totallyopaquecontent",
            "soap.beep://192.0.2.103:3002",
            "isbn:2983792873",
            "http://www.example.com",
            "name:John_Smith",
        ] {
            let u = ok(s);
            assert!(matches!(u.scheme(), Scheme::Other(_)), "{s}");
            assert!(!u.is_phone());
        }
        assert_eq!(ok("isbn:1").scheme().as_str(), "isbn");
    }

    #[test]
    fn ipv6_references() {
        // RFC 5118 §4.3: the port-looking group is part of the address; no port.
        let u = ok("sip:[2001:db8::10:5070]");
        assert_eq!(
            u.host(),
            Some(Host::V6("2001:db8::10:5070".parse().unwrap()))
        );
        assert_eq!(u.port(), None);
        // RFC 5118 §4.4.
        let u = ok("sip:[2001:db8::10]:5070");
        assert_eq!(u.port(), Some(5070));
        // RFC 5118 §4.9: IPv4-mapped.
        let u = ok("sip:ted@[::ffff:192.0.2.2]");
        assert_eq!(
            u.host(),
            Some(Host::V6("::ffff:192.0.2.2".parse().unwrap()))
        );
        // RFC 5118 §4.10: both the correct and the RFC 2373-derived form, same address.
        let two = ok("sip:user@[2001:db8::192.0.2.1]").host();
        let three = ok("sip:user@[2001:db8:::192.0.2.1]").host();
        assert_eq!(two, three);
        assert_eq!(
            ok("sip:[:::192.0.2.1]").host(),
            ok("sip:[::192.0.2.1]").host()
        );
        assert_eq!(Host::V6("::1".parse().unwrap()).to_string(), "[::1]");
    }

    #[test]
    fn rejects_what_the_grammar_rejects() {
        for s in [
            "",
            "sip",
            "sip:",
            "sip:@example.com",              // DR-VAL-7: `@` with an empty user
            "sip:user@",                     // no host
            "sip:user@example.com; lr",      // RFC 4475 §3.1.2.8 LWS in a URI
            "sip:user@exa mple.com",         // space
            "<sip:user@example.com>",        // RFC 4475 §3.1.2.7 brackets
            "sip:user<x>@example.com",       // unescaped `<` `>`
            "sip:2001:db8::10",              // RFC 5118 §4.2 IPv6 without brackets
            "sip:[2001:db8::10",             // unterminated reference
            "sip:[2001:db8:::10]",           // three colons without an IPv4 tail
            "sip:[2001:db8::1:::192.0.2.1]", // two `::` runs after the rewrite
            "sip:[::::192.0.2.1]",
            "sip:host:", // empty port
            "sip:host:65536",
            "sip:host:50a",
            "sip:host;=x",
            "sip:host;a=",
            "sip:host;a=b c",
            "sip:host?noequals",
            "sip:host?a=b c",
            "sip:user%2@host", // bad escape
            "sip:-host.example.com",
            "sip:host..example.com",
            "sip:1.2.3", // toplabel must start with a letter
            "sip:256.1.1.1",
            "sip:a@b@c",
            "1sip:x",
            "sip x:y",
            "tel:+1;e_xt=1", // RFC 3966 pname is alphanum / "-"
            "opaque:",
            "opaque:a b",
            "opaque:<x>",
        ] {
            assert!(Uri::parse(s).is_err(), "{s:?} should be rejected");
        }
    }

    #[test]
    fn hosts_standalone() {
        assert_eq!(
            Host::parse("example.com."),
            Ok(Host::Domain("example.com."))
        );
        assert_eq!(Host::parse("[::1]").map(|h| h.is_ip()), Ok(true));
        assert!(Host::parse("::1").is_err());
        assert!(Host::parse("under_score.example").is_err());
        assert_eq!(
            Host::parse("255.255.255.255"),
            Ok(Host::V4(Ipv4Addr::BROADCAST))
        );
        assert_eq!(Host::parse("a.b").map(|h| h.domain()), Ok(Some("a.b")));
    }
}
