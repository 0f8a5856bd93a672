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
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(SyntaxError::Host)?;
            return parse_ipv6(inner).map(Host::V6).ok_or(SyntaxError::Host);
        }
        parse_name_or_v4(s)
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

/// `hostname / IPv4address` (RFC 3261 §25.1).
///
/// A name whose last label starts with a digit can only be an IPv4 address (the `toplabel`
/// rule), so `1.2.3` and `256.1.1.1` are rejected rather than taken as names.
fn parse_name_or_v4(s: &str) -> Result<Host<'_>, SyntaxError> {
    if s.is_empty() {
        return Err(SyntaxError::Host);
    }
    let name = s.strip_suffix('.').unwrap_or(s);
    let top = name.rsplit('.').next().unwrap_or(name);
    if top.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
        return s
            .parse::<Ipv4Addr>()
            .map(Host::V4)
            .map_err(|_| SyntaxError::Host);
    }
    for label in name.split('.') {
        let b = label.as_bytes();
        let ok = !b.is_empty()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b.first() != Some(&b'-')
            && b.last() != Some(&b'-');
        if !ok {
            return Err(SyntaxError::Host);
        }
    }
    Ok(Host::Domain(s))
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
    let i = s.find(":::")?;
    let head = s.get(..i)?;
    let tail = s.get(i + 3..)?;
    if tail.contains(':') || !tail.contains('.') {
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

/// A parsed URI borrowed from the message.
///
/// Guarantees: the text matched RFC 3261 §25.1 (`sip`/`sips`), RFC 3966 (`tel`) or the
/// generic `absoluteURI` rule; `%` escapes are well formed; SIP hosts are valid names or
/// addresses; no whitespace anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'b> {
    raw: &'b str,
    scheme: Scheme<'b>,
    user: Option<&'b str>,
    password: Option<&'b str>,
    host: Option<Host<'b>>,
    port: Option<u16>,
    params: Params<'b>,
    headers: Option<&'b str>,
    opaque: &'b str,
}

impl<'b> Uri<'b> {
    /// Parses one URI; the text must be exactly the URI (no brackets, no surrounding LWS).
    pub fn parse(raw: &'b str) -> Result<Uri<'b>, SyntaxError> {
        let colon = raw.find(':').ok_or(SyntaxError::Scheme)?;
        let scheme_str = raw.get(..colon).ok_or(SyntaxError::Scheme)?;
        let rest = raw.get(colon + 1..).ok_or(SyntaxError::Scheme)?;
        let scheme = if lex::eq_ci(scheme_str, "sip") {
            Scheme::Sip
        } else if lex::eq_ci(scheme_str, "sips") {
            Scheme::Sips
        } else if lex::eq_ci(scheme_str, "tel") {
            Scheme::Tel
        } else {
            // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
            let mut b = scheme_str.bytes();
            let first_ok = b.next().is_some_and(|c| c.is_ascii_alphabetic());
            if !first_ok || !b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
            {
                return Err(SyntaxError::Scheme);
            }
            Scheme::Other(scheme_str)
        };
        let mut uri = Uri {
            raw,
            scheme,
            user: None,
            password: None,
            host: None,
            port: None,
            params: Params::empty(ParamKind::Uri),
            headers: None,
            opaque: rest,
        };
        match scheme {
            Scheme::Sip | Scheme::Sips => uri.parse_sip(rest)?,
            Scheme::Tel => uri.parse_tel(rest)?,
            Scheme::Other(_) => {
                // absoluteURI: opaque-part or hier-part, all `uric` characters.
                if rest.is_empty() || !lex::is_escaped_run(rest, lex::is_uric) {
                    return Err(SyntaxError::Uri);
                }
            }
        }
        Ok(uri)
    }

    /// `[ userinfo ] hostport uri-parameters [ headers ]`.
    fn parse_sip(&mut self, rest: &'b str) -> Result<(), SyntaxError> {
        // `@` cannot appear unescaped in host, parameters or headers, so the first one
        // ends the userinfo even when the user part holds `;` or `?` (RFC 4475 §3.1.1.9).
        let hostpart = match memchr::memchr(b'@', rest.as_bytes()) {
            Some(at) => {
                let userinfo = rest.get(..at).ok_or(SyntaxError::UserInfo)?;
                let (user, password) = match userinfo.find(':') {
                    Some(c) => (
                        userinfo.get(..c).unwrap_or(""),
                        Some(userinfo.get(c + 1..).unwrap_or("")),
                    ),
                    None => (userinfo, None),
                };
                // user = 1*(...): an `@` with nothing before it is invalid (DR-VAL-7).
                if user.is_empty() || !lex::is_escaped_run(user, lex::is_user_byte) {
                    return Err(SyntaxError::UserInfo);
                }
                if let Some(p) = password {
                    if !lex::is_escaped_run(p, lex::is_password_byte) {
                        return Err(SyntaxError::UserInfo);
                    }
                }
                self.user = Some(user);
                self.password = password;
                rest.get(at + 1..).ok_or(SyntaxError::Host)?
            }
            None => rest,
        };
        // host [ ":" port ], then ";params", then "?headers".
        let (host, after) = if hostpart.starts_with('[') {
            let close = hostpart.find(']').ok_or(SyntaxError::Host)?;
            (
                hostpart.get(..close + 1).ok_or(SyntaxError::Host)?,
                hostpart.get(close + 1..).unwrap_or(""),
            )
        } else {
            let end = hostpart
                .bytes()
                .position(|b| matches!(b, b':' | b';' | b'?'))
                .unwrap_or(hostpart.len());
            (
                hostpart.get(..end).unwrap_or(""),
                hostpart.get(end..).unwrap_or(""),
            )
        };
        self.host = Some(Host::parse(host)?);
        let mut after = after;
        if let Some(p) = after.strip_prefix(':') {
            let end = p
                .bytes()
                .position(|b| matches!(b, b';' | b'?'))
                .unwrap_or(p.len());
            let digits = p.get(..end).unwrap_or("");
            self.port = Some(parse_port(digits).ok_or(SyntaxError::Port)?);
            after = p.get(end..).unwrap_or("");
        }
        let (params, headers) = match after.find('?') {
            Some(q) => (
                after.get(..q).unwrap_or(""),
                Some(after.get(q + 1..).unwrap_or("")),
            ),
            None => (after, None),
        };
        if !params.is_empty() && !params.starts_with(';') {
            return Err(SyntaxError::Host);
        }
        self.params = Params::parse(params, ParamKind::Uri)?;
        if let Some(h) = headers {
            validate_uri_headers(h)?;
            self.headers = Some(h);
        }
        Ok(())
    }

    /// `telephone-subscriber` (RFC 3966 §3); the number goes into `user`.
    fn parse_tel(&mut self, rest: &'b str) -> Result<(), SyntaxError> {
        let end = rest.find(';').unwrap_or(rest.len());
        let number = rest.get(..end).unwrap_or("");
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
        self.user = Some(number);
        self.params = params;
        Ok(())
    }

    /// The whole URI as received.
    pub fn as_str(&self) -> &'b str {
        self.raw
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme<'b> {
        self.scheme
    }

    /// True for `sips:` URIs.
    pub fn is_sips(&self) -> bool {
        self.scheme == Scheme::Sips
    }

    /// The user part, still `%`-escaped; for `tel:` the number (`+1-201-555-0123`).
    pub fn user(&self) -> Option<&'b str> {
        self.user
    }

    /// The password part of the userinfo (deprecated by RFC 3261 §19.1.1, kept as received).
    pub fn password(&self) -> Option<&'b str> {
        self.password
    }

    /// The host of a `sip:`/`sips:` URI; `None` for `tel:` and opaque URIs.
    pub fn host(&self) -> Option<Host<'b>> {
        self.host
    }

    /// The explicit port, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// URI parameters (`;transport=tls;lr`), names and values still escaped.
    pub fn params(&self) -> Params<'b> {
        self.params
    }

    /// First URI parameter with this name (case-insensitive, escapes in the name decoded).
    pub fn param(&self, name: &str) -> Option<Param<'b>> {
        self.params.get(name)
    }

    /// True if the URI carries escaped headers after `?` (forbidden in a Request-URI).
    pub fn has_headers(&self) -> bool {
        self.headers.is_some()
    }

    /// The escaped headers after `?` (`hname=hvalue` pairs joined by `&`).
    pub fn headers(&self) -> UriHeaders<'b> {
        UriHeaders {
            rest: self.headers.filter(|h| !h.is_empty()),
        }
    }

    /// Everything after `scheme:`; the only content of an opaque (`Scheme::Other`) URI.
    pub fn opaque(&self) -> &'b str {
        self.opaque
    }

    /// True for a `tel:` URI or a SIP URI with `user=phone` (RFC 3261 §19.1.1).
    pub fn is_phone(&self) -> bool {
        match self.scheme {
            Scheme::Tel => true,
            Scheme::Sip | Scheme::Sips => self
                .param("user")
                .and_then(|p| p.value)
                .is_some_and(|v| pct_eq_ignore_case(v, "phone")),
            Scheme::Other(_) => false,
        }
    }

    /// Decodes the user part into `out` (no allocation); the bytes may be any octets.
    pub fn user_decoded<'o>(&self, out: &'o mut [u8]) -> Result<&'o [u8], DecodeError> {
        decode_into(self.user.unwrap_or(""), out)
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
        let (name, value) = pair.split_once('=').ok_or(SyntaxError::UriHeaders)?;
        if name.is_empty()
            || !lex::is_escaped_run(name, lex::is_hnv)
            || !lex::is_escaped_run(value, lex::is_hnv)
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
        let (pair, next) = match rest.split_once('&') {
            Some((p, n)) => (p, Some(n)),
            None => (rest, None),
        };
        self.rest = next;
        Some(pair.split_once('=').unwrap_or((pair, "")))
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
    if !escaped.contains('%') {
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
