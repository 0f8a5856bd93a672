//! Header names and borrowed typed views of header values: [`NameAddr`] (From, To, Route,
//! Record-Route, Refer-To ...), [`Contact`], [`Via`], [`CSeq`], [`Method`], [`CallId`],
//! [`MaxForwards`], [`ContentLength`], [`SipDate`], and the one `;name=value` parameter
//! scanner ([`Params`]) they all share.
//!
//! Views are built from one comma-separated element of a header value (see
//! `Message::values`) and only exist if the element matched its RFC 3261 §25.1 rule, so
//! their accessors are infallible and never copy. CR and LF count as whitespace everywhere:
//! folded values (RFC 3261 §7.3.1) are read in place.

use std::fmt;
use std::net::IpAddr;

use super::lex;
use super::uri::{self, parse_ipv6, parse_port, pct_eq_ignore_case, Host, Uri};

/// What was wrong with a header value or URI; detail for logs, not a SIP reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyntaxError {
    /// The value is empty where something is required.
    Empty,
    /// The URI scheme is missing or malformed.
    Scheme,
    /// The userinfo (user or password) has a forbidden character or is empty before `@`.
    UserInfo,
    /// The host is neither a valid name nor a valid (bracketed, for IPv6) address.
    Host,
    /// The port is empty, not a number or above 65535.
    Port,
    /// A `;name=value` parameter is malformed (empty, bad name, bad value).
    Param,
    /// The `?headers` part of a SIP URI is malformed.
    UriHeaders,
    /// The URI has a character its grammar does not allow (space, `<`, `"` ...).
    Uri,
    /// The display name is neither a quoted string nor a run of tokens.
    DisplayName,
    /// A quoted string is unterminated or holds a forbidden character.
    Quote,
    /// `<` without `>`, or whitespace just inside the brackets.
    Angle,
    /// A URI holding `?` or `,` outside angle brackets (RFC 3261 §20.10).
    Unbracketed,
    /// Unexpected text after the value.
    Trailing,
    /// A Via sent-protocol that is not `name/version/transport`.
    Protocol,
    /// Not a decimal number.
    Number,
    /// A number above what its field allows.
    OutOfRange,
    /// A method that is not a token.
    Method,
    /// A date that is not RFC 1123 in GMT (RFC 3261 §20.17).
    Date,
    /// A Call-ID that is not `word [ "@" word ]`.
    Word,
}

impl SyntaxError {
    /// Short description for logs and diagnostics.
    pub fn describe(&self) -> &'static str {
        match self {
            SyntaxError::Empty => "empty value",
            SyntaxError::Scheme => "missing or malformed URI scheme",
            SyntaxError::UserInfo => "malformed user part",
            SyntaxError::Host => "malformed host",
            SyntaxError::Port => "malformed port",
            SyntaxError::Param => "malformed parameter",
            SyntaxError::UriHeaders => "malformed URI headers",
            SyntaxError::Uri => "forbidden character in URI",
            SyntaxError::DisplayName => "malformed display name",
            SyntaxError::Quote => "unterminated or invalid quoted string",
            SyntaxError::Angle => "unbalanced angle brackets or whitespace inside them",
            SyntaxError::Unbracketed => "URI with '?' or ',' must be in angle brackets",
            SyntaxError::Trailing => "unexpected trailing characters",
            SyntaxError::Protocol => "malformed sent-protocol",
            SyntaxError::Number => "not a number",
            SyntaxError::OutOfRange => "number out of range",
            SyntaxError::Method => "method is not a token",
            SyntaxError::Date => "not an RFC 1123 GMT date",
            SyntaxError::Word => "malformed Call-ID",
        }
    }
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

impl std::error::Error for SyntaxError {}

// ---------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------

/// Which grammar a parameter list follows; decides validation and name comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum ParamKind {
    /// `generic-param` in header values: token names, token/host/quoted values, LWS allowed
    /// around `;` and `=`.
    #[default]
    Header,
    /// `uri-parameter` (RFC 3261 §25.1): `paramchar` with escapes, no whitespace.
    Uri,
    /// `parameter` of a `tel:` URI (RFC 3966 §3): alphanum/`-` names.
    Tel,
}

/// One parameter: `name` or `name=value`, both as written (values may be quoted strings,
/// quotes included; URI parameters stay `%`-escaped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param<'b> {
    /// The parameter name as written.
    pub name: &'b str,
    /// The value, or `None` for a flag parameter such as `lr` or `rport`.
    pub value: Option<&'b str>,
}

/// A validated `;name[=value]` list, borrowed; iterating it never fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'b> {
    raw: &'b str,
    kind: ParamKind,
}

impl<'b> Params<'b> {
    /// Wraps a list a caller's own single-pass scanner has already validated.
    pub(crate) fn from_validated(raw: &'b str, kind: ParamKind) -> Self {
        Params { raw, kind }
    }

    /// Validates `raw` (empty, or starting with `;`) as a list of the given kind.
    pub(crate) fn parse(raw: &'b str, kind: ParamKind) -> Result<Self, SyntaxError> {
        Self::parse_with(raw, kind, |_| Ok(()))
    }

    /// Validates like [`Params::parse`] and hands every parameter to `seen`, so that a view
    /// can pick out (and check) the parameters it knows in the same single pass.
    pub(crate) fn parse_with(
        raw: &'b str,
        kind: ParamKind,
        mut seen: impl FnMut(Param<'b>) -> Result<(), SyntaxError>,
    ) -> Result<Self, SyntaxError> {
        if kind == ParamKind::Header {
            let raw = scan_header_params(raw, seen)?;
            return Ok(Params { raw, kind });
        }
        let mut rest = raw;
        while !rest.is_empty() {
            let (p, next) = next_param(rest, kind)?;
            validate_param(p, kind)?;
            seen(p)?;
            rest = next;
        }
        Ok(Params { raw, kind })
    }

    /// The list as received, leading `;` included.
    pub fn as_str(&self) -> &'b str {
        self.raw
    }

    /// True when there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Iterates the parameters in order.
    pub fn iter(&self) -> ParamIter<'b> {
        ParamIter {
            rest: self.raw,
            kind: self.kind,
        }
    }

    /// First parameter with this name, compared case-insensitively (URI parameter names
    /// after decoding escapes, so `%6C%72` finds `lr`).
    pub fn get(&self, name: &str) -> Option<Param<'b>> {
        let kind = self.kind;
        self.iter().find(|p| match kind {
            ParamKind::Header => lex::eq_ci(p.name, name),
            ParamKind::Uri | ParamKind::Tel => pct_eq_ignore_case(p.name, name),
        })
    }

    /// The value of the first parameter with this name, if it has one.
    pub fn value(&self, name: &str) -> Option<&'b str> {
        self.get(name).and_then(|p| p.value)
    }

    /// True if a parameter with this name is present, with or without a value.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

impl<'b> IntoIterator for Params<'b> {
    type Item = Param<'b>;
    type IntoIter = ParamIter<'b>;
    fn into_iter(self) -> ParamIter<'b> {
        self.iter()
    }
}

/// Iterator over a [`Params`] list.
#[derive(Debug, Clone)]
pub struct ParamIter<'b> {
    rest: &'b str,
    kind: ParamKind,
}

impl<'b> Iterator for ParamIter<'b> {
    type Item = Param<'b>;

    fn next(&mut self) -> Option<Param<'b>> {
        if self.rest.is_empty() {
            return None;
        }
        match next_param(self.rest, self.kind) {
            Ok((p, rest)) => {
                self.rest = rest;
                Some(p)
            }
            Err(_) => {
                self.rest = "";
                None
            }
        }
    }
}

/// Splits the first `;name[=value]` off `s`: the single parameter scanner of this crate.
///
/// Header parameters are trimmed of LWS (`; tag = x` is `tag`/`x`, RFC 3261 SEMI/EQUAL);
/// URI parameters are taken verbatim so that whitespace is caught by validation.
fn next_param(s: &str, kind: ParamKind) -> Result<(Param<'_>, &str), SyntaxError> {
    let s = if kind == ParamKind::Header {
        lex::skip_lws(s)
    } else {
        s
    };
    let s = s.strip_prefix(';').ok_or(SyntaxError::Param)?;
    // The parameter ends at the next `;` outside a quoted string.
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        let tail = b.get(i..).unwrap_or(&[]);
        let hit = if kind == ParamKind::Header {
            lex::find_byte3(tail, b';', b'"', b';')
        } else {
            lex::find_byte(tail, b';')
        };
        let Some(j) = hit else {
            i = b.len();
            break;
        };
        i += j;
        if b.get(i) == Some(&b';') {
            break;
        }
        i += s.get(i..).and_then(lex::quoted_len).unwrap_or(b.len() - i);
    }
    let seg = s.get(..i).unwrap_or(s);
    let rest = s.get(i..).unwrap_or("");
    let (name, value) = match lex::split_at_byte(seg, b'=') {
        Some((n, v)) => (n, Some(v)),
        None => (seg, None),
    };
    let p = if kind == ParamKind::Header {
        Param {
            name: lex::trim_lws(name),
            value: value.map(lex::trim_lws),
        }
    } else {
        Param { name, value }
    };
    Ok((p, rest))
}

fn validate_param(p: Param<'_>, kind: ParamKind) -> Result<(), SyntaxError> {
    let ok = match kind {
        ParamKind::Header => {
            lex::is_token(p.name)
                && match p.value {
                    None => true,
                    // gen-value = token / host / quoted-string
                    Some(v) if v.starts_with('"') => lex::quoted_len(v) == Some(v.len()),
                    Some(v) => !v.is_empty() && lex::run(v.as_bytes(), 0, lex::GENVALUE) == v.len(),
                }
        }
        ParamKind::Uri | ParamKind::Tel => {
            let name_ok = if kind == ParamKind::Uri {
                lex::is_escaped_run(p.name, lex::PARAMCHAR)
            } else {
                p.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            };
            !p.name.is_empty()
                && name_ok
                && p.value
                    .is_none_or(|v| !v.is_empty() && lex::is_escaped_run(v, lex::PARAMCHAR))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(SyntaxError::Param)
    }
}

/// Validates `*( SEMI generic-param )` (SEMI and EQUAL allow LWS around them) in one pass,
/// handing each parameter to `seen`; returns the list trimmed of surrounding LWS.
///
/// Text before the first `;` is [`SyntaxError::Trailing`]; a malformed parameter is
/// [`SyntaxError::Param`].
fn scan_header_params<'b>(
    s: &'b str,
    mut seen: impl FnMut(Param<'b>) -> Result<(), SyntaxError>,
) -> Result<&'b str, SyntaxError> {
    let b = s.as_bytes();
    let mut i = lex::skip_lws_at(b, 0);
    let start = i;
    let mut end = i;
    while let Some(&c) = b.get(i) {
        if c != b';' {
            return Err(if i == start {
                SyntaxError::Trailing
            } else {
                SyntaxError::Param
            });
        }
        let name_start = lex::skip_lws_at(b, i + 1);
        let name_end = lex::run(b, name_start, lex::TOKEN);
        if name_end == name_start {
            return Err(SyntaxError::Param);
        }
        i = lex::skip_lws_at(b, name_end);
        let mut value = None;
        let mut last = name_end;
        if b.get(i) == Some(&b'=') {
            let vs = lex::skip_lws_at(b, i + 1);
            let ve = if b.get(vs) == Some(&b'"') {
                vs + s
                    .get(vs..)
                    .and_then(lex::quoted_len)
                    .ok_or(SyntaxError::Param)?
            } else {
                lex::run(b, vs, lex::GENVALUE)
            };
            if ve == vs {
                return Err(SyntaxError::Param);
            }
            value = s.get(vs..ve);
            last = ve;
            i = lex::skip_lws_at(b, ve);
        }
        seen(Param {
            name: s.get(name_start..name_end).unwrap_or(""),
            value,
        })?;
        end = last;
    }
    Ok(s.get(start..end).unwrap_or(""))
}

/// Strips the quotes of a quoted-string parameter value; other values are returned as is.
/// Backslash escapes stay in place (see [`unescape_quoted`]).
pub fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
}

/// Resolves the `\x` quoted-pairs of a quoted-string's content into `out`.
///
/// Returns `None` if `out` is too short.
pub fn unescape_quoted<'o>(inner: &str, out: &'o mut [u8]) -> Option<&'o [u8]> {
    let mut n = 0;
    let mut escaped = false;
    for &b in inner.as_bytes() {
        if !escaped && b == b'\\' {
            escaped = true;
            continue;
        }
        escaped = false;
        *out.get_mut(n)? = b;
        n += 1;
    }
    out.get(..n)
}

// ---------------------------------------------------------------------------------------
// Header names
// ---------------------------------------------------------------------------------------

macro_rules! header_names {
    ($( $(#[$doc:meta])* $variant:ident => $canon:literal, $lower:literal $(, $compact:literal)? ;)*) => {
        /// A header name resolved once at parse time, case-insensitively, with the compact
        /// forms of RFC 3261 §7.3.3 and the IANA registry folded in. Unknown names are
        /// [`HeaderName::Other`]; the raw name is kept beside it in the message.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum HeaderName {
            $( $(#[$doc])* $variant, )*
            /// Any header this enum does not name (look it up by its raw name).
            Other,
        }

        impl HeaderName {
            /// The canonical spelling, as drhub writes it.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $( HeaderName::$variant => $canon, )*
                    HeaderName::Other => "",
                }
            }

            /// The compact form, if the header has one.
            pub fn compact(&self) -> Option<char> {
                match self {
                    $( $( HeaderName::$variant => Some($compact as char), )? )*
                    _ => None,
                }
            }
        }

        /// Every lower-case spelling (full and compact) with its name.
        const NAME_TABLE: &[(&[u8], HeaderName)] = &[
            $( ($lower, HeaderName::$variant), $( (&[$compact], HeaderName::$variant), )? )*
        ];
    };
}

/// Slots of the open-addressing table over [`NAME_TABLE`]; a power of two well above its
/// length so probes stay short.
const NAME_SLOTS: usize = 256;

/// Longest name the table knows; anything longer is `Other` without a lookup.
const MAX_KNOWN_NAME: usize = 24;

/// ASCII case folding eight bytes at a time: `| 0x20` lower-cases letters and leaves every
/// other `token` character distinct (only `_` moves, to DEL, which no token contains).
const FOLD: u64 = 0x2020_2020_2020_2020;

/// A name as three folded little-endian words, padded with (folded) spaces: equal keys
/// mean equal names, compared with three integer comparisons.
type NameKey = [u64; 3];

const fn const_key(name: &[u8]) -> NameKey {
    let mut key = [FOLD; 3];
    let mut i = 0;
    while i < name.len() {
        let w = i / 8;
        let shift = (i % 8) * 8;
        key[w] &= !(0xffu64 << shift);
        key[w] |= ((name[i] | 0x20) as u64) << shift;
        i += 1;
    }
    key
}

const fn key_hash(key: &NameKey, len: usize) -> usize {
    let h = (key[0] ^ key[1].rotate_left(21) ^ key[2].rotate_left(42) ^ len as u64)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> 56) as usize & (NAME_SLOTS - 1)
}

/// Built at compile time: slot -> 1 + index into [`NAME_TABLE`], 0 for empty.
const fn build_name_index() -> [u8; NAME_SLOTS] {
    let mut t = [0u8; NAME_SLOTS];
    let mut i = 0;
    while i < NAME_TABLE.len() {
        let name = NAME_TABLE[i].0;
        let mut s = key_hash(&const_key(name), name.len());
        while t[s] != 0 {
            s = (s + 1) & (NAME_SLOTS - 1);
        }
        t[s] = (i + 1) as u8;
        i += 1;
    }
    t
}

const fn build_name_keys() -> [NameKey; NAME_TABLE.len()] {
    let mut k = [[0u64; 3]; NAME_TABLE.len()];
    let mut i = 0;
    while i < NAME_TABLE.len() {
        k[i] = const_key(NAME_TABLE[i].0);
        i += 1;
    }
    k
}

static NAME_INDEX: [u8; NAME_SLOTS] = build_name_index();
static NAME_KEYS: [NameKey; NAME_TABLE.len()] = build_name_keys();

// The table must stay sparse (short probes, indices fit in a u8) and every known name must
// fit a key.
const _: () = {
    assert!(NAME_TABLE.len() * 3 <= NAME_SLOTS);
    let mut i = 0;
    while i < NAME_TABLE.len() {
        assert!(NAME_TABLE[i].0.len() <= MAX_KNOWN_NAME);
        i += 1;
    }
};

/// Word `w` (0-2) of the key of the `n`-byte name at the start of `line`.
#[inline(always)]
fn key_word(line: &[u8], n: usize, w: usize) -> u64 {
    let start = w * 8;
    if n <= start {
        return FOLD;
    }
    let word = match line.get(start..start + 8) {
        Some(chunk) => {
            let mut a = [0u8; 8];
            a.copy_from_slice(chunk);
            u64::from_le_bytes(a)
        }
        None => {
            let mut a = [0u8; 8];
            for (d, s) in a.iter_mut().zip(line.get(start..).unwrap_or(&[])) {
                *d = *s;
            }
            u64::from_le_bytes(a)
        }
    };
    let valid = n - start;
    if valid >= 8 {
        word | FOLD
    } else {
        let mask = (1u64 << (valid * 8)) - 1;
        (word & mask) | FOLD
    }
}

impl HeaderName {
    /// Resolves a header name as received (any case, compact forms included).
    pub fn from_name(name: &str) -> HeaderName {
        Self::from_bytes(name.as_bytes())
    }

    pub(crate) fn from_bytes(name: &[u8]) -> HeaderName {
        match Self::scan(name) {
            (h, n) if n == name.len() => h,
            _ => HeaderName::Other,
        }
    }

    /// Scans the leading `token` of `line` and resolves it; returns the name and the
    /// token's length.
    pub(crate) fn scan(line: &[u8]) -> (HeaderName, usize) {
        let n = lex::run(line, 0, lex::TOKEN);
        if n == 0 || n > MAX_KNOWN_NAME {
            return (HeaderName::Other, n);
        }
        let key = [
            key_word(line, n, 0),
            key_word(line, n, 1),
            key_word(line, n, 2),
        ];
        let mut slot = key_hash(&key, n);
        // The table is at most a third full, so an empty slot always ends the probe.
        for _ in 0..NAME_SLOTS {
            let e = usize::from(NAME_INDEX.get(slot).copied().unwrap_or(0));
            let Some(i) = e.checked_sub(1) else {
                return (HeaderName::Other, n);
            };
            if let (Some(k), Some((name, id))) = (NAME_KEYS.get(i), NAME_TABLE.get(i)) {
                if *k == key && name.len() == n {
                    return (*id, n);
                }
            }
            slot = (slot + 1) & (NAME_SLOTS - 1);
        }
        (HeaderName::Other, n)
    }
}

header_names! {
    /// `Via` / `v`.
    Via => "Via", b"via", b'v';
    /// `From` / `f`.
    From => "From", b"from", b'f';
    /// `To` / `t`.
    To => "To", b"to", b't';
    /// `Call-ID` / `i`.
    CallId => "Call-ID", b"call-id", b'i';
    /// `CSeq`.
    CSeq => "CSeq", b"cseq";
    /// `Contact` / `m`.
    Contact => "Contact", b"contact", b'm';
    /// `Content-Length` / `l`.
    ContentLength => "Content-Length", b"content-length", b'l';
    /// `Content-Type` / `c`.
    ContentType => "Content-Type", b"content-type", b'c';
    /// `Content-Encoding` / `e`.
    ContentEncoding => "Content-Encoding", b"content-encoding", b'e';
    /// `Content-Disposition`.
    ContentDisposition => "Content-Disposition", b"content-disposition";
    /// `Content-Language`.
    ContentLanguage => "Content-Language", b"content-language";
    /// `Max-Forwards`.
    MaxForwards => "Max-Forwards", b"max-forwards";
    /// `Record-Route`.
    RecordRoute => "Record-Route", b"record-route";
    /// `Route`.
    Route => "Route", b"route";
    /// `Require`.
    Require => "Require", b"require";
    /// `Proxy-Require`.
    ProxyRequire => "Proxy-Require", b"proxy-require";
    /// `Supported` / `k`.
    Supported => "Supported", b"supported", b'k';
    /// `Unsupported`.
    Unsupported => "Unsupported", b"unsupported";
    /// `Allow`.
    Allow => "Allow", b"allow";
    /// `Allow-Events` / `u` (RFC 6665).
    AllowEvents => "Allow-Events", b"allow-events", b'u';
    /// `Accept`.
    Accept => "Accept", b"accept";
    /// `Accept-Encoding`.
    AcceptEncoding => "Accept-Encoding", b"accept-encoding";
    /// `Accept-Language`.
    AcceptLanguage => "Accept-Language", b"accept-language";
    /// `Accept-Contact` / `a` (RFC 3841).
    AcceptContact => "Accept-Contact", b"accept-contact", b'a';
    /// `Reject-Contact` / `j` (RFC 3841).
    RejectContact => "Reject-Contact", b"reject-contact", b'j';
    /// `Request-Disposition` / `d` (RFC 3841).
    RequestDisposition => "Request-Disposition", b"request-disposition", b'd';
    /// `Replaces` (RFC 3891).
    Replaces => "Replaces", b"replaces";
    /// `Refer-To` / `r` (RFC 3515).
    ReferTo => "Refer-To", b"refer-to", b'r';
    /// `Referred-By` / `b` (RFC 3892).
    ReferredBy => "Referred-By", b"referred-by", b'b';
    /// `History-Info` (RFC 7044).
    HistoryInfo => "History-Info", b"history-info";
    /// `Diversion` (RFC 5806).
    Diversion => "Diversion", b"diversion";
    /// `Session-Expires` / `x` (RFC 4028).
    SessionExpires => "Session-Expires", b"session-expires", b'x';
    /// `Min-SE` (RFC 4028).
    MinSE => "Min-SE", b"min-se";
    /// `Reason` (RFC 3326).
    Reason => "Reason", b"reason";
    /// `Server`.
    Server => "Server", b"server";
    /// `User-Agent`.
    UserAgent => "User-Agent", b"user-agent";
    /// `Subject` / `s`.
    Subject => "Subject", b"subject", b's';
    /// `Expires`.
    Expires => "Expires", b"expires";
    /// `Min-Expires`.
    MinExpires => "Min-Expires", b"min-expires";
    /// `Authorization`.
    Authorization => "Authorization", b"authorization";
    /// `WWW-Authenticate`.
    WwwAuthenticate => "WWW-Authenticate", b"www-authenticate";
    /// `Proxy-Authorization`.
    ProxyAuthorization => "Proxy-Authorization", b"proxy-authorization";
    /// `Proxy-Authenticate`.
    ProxyAuthenticate => "Proxy-Authenticate", b"proxy-authenticate";
    /// `P-Asserted-Identity` (RFC 3325).
    PAssertedIdentity => "P-Asserted-Identity", b"p-asserted-identity";
    /// `P-Preferred-Identity` (RFC 3325).
    PPreferredIdentity => "P-Preferred-Identity", b"p-preferred-identity";
    /// `Privacy` (RFC 3323).
    Privacy => "Privacy", b"privacy";
    /// `Identity` / `y` (RFC 8224).
    Identity => "Identity", b"identity", b'y';
    /// `Event` / `o` (RFC 6665).
    Event => "Event", b"event", b'o';
    /// `Subscription-State` (RFC 6665).
    SubscriptionState => "Subscription-State", b"subscription-state";
    /// `RSeq` (RFC 3262).
    RSeq => "RSeq", b"rseq";
    /// `RAck` (RFC 3262).
    RAck => "RAck", b"rack";
    /// `Retry-After`.
    RetryAfter => "Retry-After", b"retry-after";
    /// `Warning`.
    Warning => "Warning", b"warning";
    /// `Date`.
    Date => "Date", b"date";
    /// `Timestamp`.
    Timestamp => "Timestamp", b"timestamp";
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------
// Method
// ---------------------------------------------------------------------------------------

/// A request method. Methods are case-sensitive (RFC 3261 §7.1), so `invite` is
/// `Other("invite")`, not `Invite`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method<'b> {
    /// INVITE.
    Invite,
    /// ACK.
    Ack,
    /// BYE.
    Bye,
    /// CANCEL.
    Cancel,
    /// OPTIONS.
    Options,
    /// REGISTER.
    Register,
    /// REFER (RFC 3515).
    Refer,
    /// NOTIFY (RFC 6665).
    Notify,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// UPDATE (RFC 3311).
    Update,
    /// INFO (RFC 6086).
    Info,
    /// PRACK (RFC 3262).
    Prack,
    /// MESSAGE (RFC 3428).
    Message,
    /// PUBLISH (RFC 3903).
    Publish,
    /// Any other method, as written (not necessarily a valid token; see [`Method::is_token`]).
    Other(&'b str),
}

impl<'b> Method<'b> {
    /// Maps a method name; never fails, unknown names become `Other`.
    pub fn parse(s: &'b str) -> Method<'b> {
        // Dispatch on length first: at most three comparisons per method.
        let known = match s.len() {
            3 => match s {
                "ACK" => Some(Method::Ack),
                "BYE" => Some(Method::Bye),
                _ => None,
            },
            4 => (s == "INFO").then_some(Method::Info),
            5 => match s {
                "REFER" => Some(Method::Refer),
                "PRACK" => Some(Method::Prack),
                _ => None,
            },
            6 => match s {
                "INVITE" => Some(Method::Invite),
                "CANCEL" => Some(Method::Cancel),
                "NOTIFY" => Some(Method::Notify),
                "UPDATE" => Some(Method::Update),
                _ => None,
            },
            7 => match s {
                "OPTIONS" => Some(Method::Options),
                "MESSAGE" => Some(Method::Message),
                "PUBLISH" => Some(Method::Publish),
                _ => None,
            },
            8 => (s == "REGISTER").then_some(Method::Register),
            9 => (s == "SUBSCRIBE").then_some(Method::Subscribe),
            _ => None,
        };
        known.unwrap_or(Method::Other(s))
    }

    /// The method name.
    pub fn as_str(&self) -> &'b str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Refer => "REFER",
            Method::Notify => "NOTIFY",
            Method::Subscribe => "SUBSCRIBE",
            Method::Update => "UPDATE",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }

    /// True if the name is a valid `token` (always true for the known methods).
    pub fn is_token(&self) -> bool {
        lex::is_token(self.as_str())
    }
}

impl fmt::Display for Method<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------
// name-addr / addr-spec
// ---------------------------------------------------------------------------------------

/// `( name-addr / addr-spec ) *( SEMI generic-param )`: the shape of From, To, Contact,
/// Route, Record-Route, Refer-To, Referred-By, P-Asserted-Identity, Diversion ...
///
/// When the URI is not in angle brackets, every `;param` after it is a header parameter
/// (RFC 3261 §20.10), and a URI holding `?` or `,` is rejected because it would need them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'b> {
    display_name: Option<&'b str>,
    quoted: bool,
    uri: Uri<'b>,
    bracketed: bool,
    params: Params<'b>,
    tag: Option<&'b str>,
}

/// Parses header parameters after a URI, remembering the first `tag`.
fn addr_params(after: &str) -> Result<(Params<'_>, Option<&str>), SyntaxError> {
    let mut tag = None;
    let raw = scan_header_params(after, |p| {
        if tag.is_none() && p.name.len() == 3 && lex::eq_ci(p.name, "tag") {
            tag = p.value;
        }
        Ok(())
    })?;
    Ok((Params::from_validated(raw, ParamKind::Header), tag))
}

impl<'b> NameAddr<'b> {
    /// Parses one element of a header value (one comma-separated item).
    pub fn parse(s: &'b str) -> Result<NameAddr<'b>, SyntaxError> {
        let s = lex::trim_lws(s);
        let b = s.as_bytes();
        let mut display_name = None;
        let mut quoted = false;
        let lt = match b.first() {
            None => return Err(SyntaxError::Empty),
            Some(b'<') => 0,
            Some(b'"') => {
                let q = lex::quoted_len(s).ok_or(SyntaxError::Quote)?;
                display_name = s.get(1..q - 1);
                quoted = true;
                lex::skip_lws_at(b, q)
            }
            Some(_) => {
                let first = lex::run(b, 0, lex::TOKEN);
                if first > 0 && b.get(first) == Some(&b':') {
                    return Self::parse_addr_spec(s);
                }
                // display-name = *(token LWS): tokens separated by whitespace up to `<`.
                let mut end = first;
                let mut pos = lex::skip_lws_at(b, first);
                loop {
                    let t = lex::run(b, pos, lex::TOKEN);
                    if t == pos {
                        break;
                    }
                    end = t;
                    pos = lex::skip_lws_at(b, t);
                }
                if end == 0 {
                    return Err(SyntaxError::DisplayName);
                }
                display_name = s.get(..end);
                pos
            }
        };
        if b.get(lt) != Some(&b'<') {
            return Err(if display_name.is_some() {
                SyntaxError::DisplayName
            } else {
                SyntaxError::Angle
            });
        }
        let gt = lt + lex::find_byte(b.get(lt..).unwrap_or(&[]), b'>').ok_or(SyntaxError::Angle)?;
        // LAQUOT = SWS "<" and RAQUOT = ">" SWS: no whitespace inside (RFC 4475 §3.1.2.14).
        let inside = |i: usize| b.get(i).is_some_and(|&c| !lex::is_lws(c));
        if gt == lt + 1 || !inside(lt + 1) || !inside(gt - 1) {
            return Err(SyntaxError::Angle);
        }
        let uri = Uri::parse(s.get(lt + 1..gt).unwrap_or(""))?;
        let (params, tag) = addr_params(s.get(gt + 1..).unwrap_or(""))?;
        Ok(NameAddr {
            display_name,
            quoted,
            uri,
            bracketed: true,
            params,
            tag,
        })
    }

    fn parse_addr_spec(s: &'b str) -> Result<NameAddr<'b>, SyntaxError> {
        let b = s.as_bytes();
        let mut end = 0;
        while let Some(&c) = b.get(end) {
            if c == b';' || lex::is_lws(c) {
                break;
            }
            if c == b'?' || c == b',' {
                return Err(SyntaxError::Unbracketed);
            }
            end += 1;
        }
        let uri = Uri::parse(s.get(..end).unwrap_or(s))?;
        let (params, tag) = addr_params(s.get(end..).unwrap_or(""))?;
        Ok(NameAddr {
            display_name: None,
            quoted: false,
            uri,
            bracketed: false,
            params,
            tag,
        })
    }

    /// The display name as written: a quoted string's content without the quotes
    /// (backslash escapes kept, see [`unescape_quoted`]), or the token sequence.
    pub fn display_name(&self) -> Option<&'b str> {
        self.display_name
    }

    /// True if the display name was a quoted string.
    pub fn display_name_is_quoted(&self) -> bool {
        self.quoted
    }

    /// The URI.
    pub fn uri(&self) -> &Uri<'b> {
        &self.uri
    }

    /// True if the URI was enclosed in `<...>` (required for Route and Record-Route).
    pub fn is_bracketed(&self) -> bool {
        self.bracketed
    }

    /// The header parameters (after the URI, outside the brackets).
    pub fn params(&self) -> Params<'b> {
        self.params
    }

    /// A header parameter by name (case-insensitive).
    pub fn param(&self, name: &str) -> Option<Param<'b>> {
        self.params.get(name)
    }

    /// The `tag` parameter (From/To, RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&'b str> {
        self.tag
    }
}

/// One Contact value: `*` (REGISTER removal) or an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact<'b> {
    /// `Contact: *`.
    Star,
    /// A name-addr or addr-spec with contact parameters (`expires`, `q`, `+sip.instance` ...).
    Addr(NameAddr<'b>),
}

impl<'b> Contact<'b> {
    /// Parses one Contact element.
    pub fn parse(s: &'b str) -> Result<Contact<'b>, SyntaxError> {
        if lex::trim_lws(s) == "*" {
            Ok(Contact::Star)
        } else {
            NameAddr::parse(s).map(Contact::Addr)
        }
    }

    /// The address, unless this is `*`.
    pub fn addr(&self) -> Option<&NameAddr<'b>> {
        match self {
            Contact::Star => None,
            Contact::Addr(a) => Some(a),
        }
    }

    /// The contact's URI, unless this is `*`.
    pub fn uri(&self) -> Option<&Uri<'b>> {
        self.addr().map(NameAddr::uri)
    }
}

// ---------------------------------------------------------------------------------------
// Via
// ---------------------------------------------------------------------------------------

/// The RFC 3261 branch magic cookie (§8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// A Via transport; matched case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport<'b> {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS (the Direct Routing SBC leg).
    Tls,
    /// SCTP.
    Sctp,
    /// WebSocket (RFC 7118).
    Ws,
    /// Secure WebSocket (RFC 7118).
    Wss,
    /// Anything else, as written.
    Other(&'b str),
}

impl<'b> Transport<'b> {
    fn parse(s: &'b str) -> Transport<'b> {
        let t = match s.len() {
            2 if lex::eq_ci(s, "WS") => Transport::Ws,
            3 if lex::eq_ci(s, "UDP") => Transport::Udp,
            3 if lex::eq_ci(s, "TCP") => Transport::Tcp,
            3 if lex::eq_ci(s, "TLS") => Transport::Tls,
            3 if lex::eq_ci(s, "WSS") => Transport::Wss,
            4 if lex::eq_ci(s, "SCTP") => Transport::Sctp,
            _ => Transport::Other(s),
        };
        t
    }

    /// The transport name (upper case for the known ones).
    pub fn as_str(&self) -> &'b str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Sctp => "SCTP",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
            Transport::Other(s) => s,
        }
    }
}

/// One `via-parm`: `SIP/2.0/TLS sbc1.adatum.biz:5061;branch=z9hG4bK...`.
///
/// Guarantees: sent-protocol is three tokens, sent-by is a valid host and port, `branch`
/// is a token, `received` an IP address, `ttl` 0-255, `rport` empty or a port, `maddr` a
/// host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'b> {
    protocol_name: &'b str,
    protocol_version: &'b str,
    transport: Transport<'b>,
    host: Host<'b>,
    port: Option<u16>,
    params: Params<'b>,
    known: ViaParams<'b>,
}

/// The Via parameters RFC 3261 and RFC 3581 define, picked out while validating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct ViaParams<'b> {
    branch: Option<&'b str>,
    received: Option<IpAddr>,
    rport: Option<Option<u16>>,
    maddr: Option<Host<'b>>,
    ttl: Option<u8>,
}

impl<'b> ViaParams<'b> {
    /// Checks and records one Via parameter; the first occurrence of a name wins.
    fn note(&mut self, p: Param<'b>) -> Result<(), SyntaxError> {
        let v = p.value;
        let ok = match p.name.len() {
            6 if lex::eq_ci(p.name, "branch") => {
                self.branch = self.branch.or(v);
                v.is_some_and(lex::is_token)
            }
            8 if lex::eq_ci(p.name, "received") => {
                let ip = v.and_then(parse_received);
                self.received = self.received.or(ip);
                ip.is_some()
            }
            3 if lex::eq_ci(p.name, "ttl") => {
                let ttl = v
                    .and_then(lex::parse_digits)
                    .and_then(|n| u8::try_from(n).ok());
                self.ttl = self.ttl.or(ttl);
                ttl.is_some()
            }
            5 if lex::eq_ci(p.name, "rport") => {
                let port = v.map(parse_port);
                if self.rport.is_none() {
                    self.rport = Some(port.flatten());
                }
                port.is_none_or(|p| p.is_some())
            }
            5 if lex::eq_ci(p.name, "maddr") => {
                let host = v.and_then(|v| Host::parse(v).ok());
                self.maddr = self.maddr.or(host);
                host.is_some()
            }
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err(SyntaxError::Param)
        }
    }
}

impl<'b> Via<'b> {
    /// Parses one Via element; LWS (folds included) is allowed around `/` and `:` (SLASH,
    /// COLON in RFC 3261 §25.1).
    pub fn parse(s: &'b str) -> Result<Via<'b>, SyntaxError> {
        let s = lex::trim_lws(s);
        let b = s.as_bytes();
        // sent-protocol = protocol-name SLASH protocol-version SLASH transport
        let token_at = |from: usize| -> Result<(&'b str, usize), SyntaxError> {
            let end = lex::run(b, from, lex::TOKEN);
            if end == from {
                return Err(SyntaxError::Protocol);
            }
            Ok((s.get(from..end).unwrap_or(""), end))
        };
        let slash = |from: usize| -> Result<usize, SyntaxError> {
            let i = lex::skip_lws_at(b, from);
            if b.get(i) != Some(&b'/') {
                return Err(SyntaxError::Protocol);
            }
            Ok(lex::skip_lws_at(b, i + 1))
        };
        let (protocol_name, i) = token_at(0)?;
        let (protocol_version, i) = token_at(slash(i)?)?;
        let (transport, i) = token_at(slash(i)?)?;
        // sent-protocol LWS sent-by: at least one whitespace character.
        if !b.get(i).is_some_and(|&c| lex::is_lws(c)) {
            return Err(SyntaxError::Protocol);
        }
        let (host, end) = uri::scan_host(s, lex::skip_lws_at(b, i))?;
        let mut i = lex::skip_lws_at(b, end);
        let mut port = None;
        if b.get(i) == Some(&b':') {
            let start = lex::skip_lws_at(b, i + 1);
            let mut j = start;
            while b.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
            port = Some(parse_port(s.get(start..j).unwrap_or("")).ok_or(SyntaxError::Port)?);
            i = j;
        }
        let mut known = ViaParams::default();
        let raw = scan_header_params(s.get(i..).unwrap_or(""), |p| known.note(p))?;
        Ok(Via {
            protocol_name,
            protocol_version,
            transport: Transport::parse(transport),
            host,
            port,
            params: Params::from_validated(raw, ParamKind::Header),
            known,
        })
    }

    /// The protocol name (`SIP`).
    pub fn protocol_name(&self) -> &'b str {
        self.protocol_name
    }

    /// The protocol version (`2.0`).
    pub fn protocol_version(&self) -> &'b str {
        self.protocol_version
    }

    /// The transport.
    pub fn transport(&self) -> Transport<'b> {
        self.transport
    }

    /// The sent-by host.
    pub fn host(&self) -> Host<'b> {
        self.host
    }

    /// The sent-by port, if written.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// All Via parameters.
    pub fn params(&self) -> Params<'b> {
        self.params
    }

    /// A parameter by name (case-insensitive).
    pub fn param(&self, name: &str) -> Option<Param<'b>> {
        self.params.get(name)
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&'b str> {
        self.known.branch
    }

    /// True if the branch starts with the RFC 3261 magic cookie `z9hG4bK`.
    pub fn has_magic_cookie(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(MAGIC_COOKIE))
    }

    /// The branch if it can key an RFC 3261 transaction: the cookie plus at least one more
    /// character. `None` means RFC 2543 matching (RFC 4475 §3.2.1: a bare cookie).
    pub fn rfc3261_branch(&self) -> Option<&'b str> {
        self.branch()
            .filter(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }

    /// The `received` address; with or without brackets, as RFC 5118 §4.5 asks.
    pub fn received(&self) -> Option<IpAddr> {
        self.known.received
    }

    /// True if `rport` is present (with or without a value, RFC 3581).
    pub fn has_rport(&self) -> bool {
        self.known.rport.is_some()
    }

    /// The `rport` value filled in by a server, if any.
    pub fn rport(&self) -> Option<u16> {
        self.known.rport.flatten()
    }

    /// The `maddr` host.
    pub fn maddr(&self) -> Option<Host<'b>> {
        self.known.maddr
    }

    /// The `ttl` parameter.
    pub fn ttl(&self) -> Option<u8> {
        self.known.ttl
    }
}

/// `received = IPv4address / IPv6address`; brackets tolerated (RFC 5118 §4.5).
fn parse_received(v: &str) -> Option<IpAddr> {
    let inner = v
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(v);
    if lex::find(inner, b':').is_some() {
        parse_ipv6(inner).map(IpAddr::V6)
    } else {
        uri::parse_ipv4(inner.as_bytes()).map(IpAddr::V4)
    }
}

// ---------------------------------------------------------------------------------------
// Scalars
// ---------------------------------------------------------------------------------------

/// `CSeq: 1*DIGIT LWS Method`.
///
/// `seq` fits RFC 3261 §8.1.1.5's "32-bit unsigned"; the tighter `< 2^31` rule for
/// requests is checked by `Message::check_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'b> {
    /// The sequence number.
    pub seq: u32,
    /// The method.
    pub method: Method<'b>,
}

impl<'b> CSeq<'b> {
    /// Parses a CSeq value (folds allowed between number and method).
    pub fn parse(s: &'b str) -> Result<CSeq<'b>, SyntaxError> {
        let s = lex::trim_lws(s);
        let b = s.as_bytes();
        let mut seq: u64 = 0;
        let mut i = 0;
        while let Some(&c) = b.get(i) {
            if !c.is_ascii_digit() {
                break;
            }
            // Saturate: anything past u32 is out of range anyway.
            seq = (seq * 10 + u64::from(c - b'0')).min(u64::from(u32::MAX) + 1);
            i += 1;
        }
        if i == 0 {
            return Err(SyntaxError::Number);
        }
        if !b.get(i).is_some_and(|&c| lex::is_lws(c)) {
            return Err(SyntaxError::Method);
        }
        let method = s.get(lex::skip_lws_at(b, i)..).unwrap_or("");
        if !lex::is_token(method) {
            return Err(SyntaxError::Method);
        }
        let seq = u32::try_from(seq).map_err(|_| SyntaxError::OutOfRange)?;
        Ok(CSeq {
            seq,
            method: Method::parse(method),
        })
    }
}

/// `Max-Forwards: 1*DIGIT`, 0-255 (RFC 3261 §20.22).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxForwards(pub u8);

impl MaxForwards {
    /// Parses the value; leading zeros are fine (`0068` is 68).
    pub fn parse(s: &str) -> Result<MaxForwards, SyntaxError> {
        let s = lex::trim_lws(s);
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SyntaxError::Number);
        }
        lex::parse_digits(s)
            .and_then(|n| u8::try_from(n).ok())
            .map(MaxForwards)
            .ok_or(SyntaxError::OutOfRange)
    }
}

/// `Content-Length: 1*DIGIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentLength(pub u32);

impl ContentLength {
    /// Parses the value.
    pub fn parse(s: &str) -> Result<ContentLength, SyntaxError> {
        let s = lex::trim_lws(s);
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SyntaxError::Number);
        }
        lex::parse_digits(s)
            .and_then(|n| u32::try_from(n).ok())
            .map(ContentLength)
            .ok_or(SyntaxError::OutOfRange)
    }
}

/// `Call-ID: word [ "@" word ]` (RFC 3261 §25.1), borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallId<'b>(&'b str);

impl<'b> CallId<'b> {
    /// Validates a Call-ID value.
    pub fn parse(s: &'b str) -> Result<CallId<'b>, SyntaxError> {
        let s = lex::trim_lws(s);
        let b = s.as_bytes();
        let first = lex::run(b, 0, lex::WORD);
        let ok = match b.get(first) {
            None => first > 0,
            Some(b'@') => {
                first > 0 && {
                    let second = lex::run(b, first + 1, lex::WORD);
                    second > first + 1 && second == b.len()
                }
            }
            Some(_) => false,
        };
        if ok {
            Ok(CallId(s))
        } else {
            Err(SyntaxError::Word)
        }
    }

    /// The Call-ID text (compared byte for byte, RFC 3261 §20.8).
    pub fn as_str(&self) -> &'b str {
        self.0
    }
}

/// `Date: rfc1123-date` in GMT (RFC 3261 §20.17), e.g. `Sat, 13 Nov 2010 23:29:00 GMT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipDate {
    /// Year.
    pub year: u16,
    /// Month, 1-12.
    pub month: u8,
    /// Day of month, 1-31.
    pub day: u8,
    /// Hour, 0-23.
    pub hour: u8,
    /// Minute, 0-59.
    pub minute: u8,
    /// Second, 0-60 (leap second).
    pub second: u8,
}

impl SipDate {
    /// Parses `wkday "," SP 2DIGIT SP month SP 4DIGIT SP 2DIGIT ":" 2DIGIT ":" 2DIGIT SP "GMT"`.
    pub fn parse(s: &str) -> Result<SipDate, SyntaxError> {
        const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let s = lex::trim_lws(s);
        let b = s.as_bytes();
        let num = |from: usize, len: usize| -> Option<u16> {
            let t = s.get(from..from + len)?;
            u16::try_from(lex::parse_digits(t)?).ok()
        };
        let at = |i: usize, c: u8| b.get(i) == Some(&c);
        let parsed = (|| {
            if b.len() != 29
                || !DAYS
                    .iter()
                    .any(|d| s.get(0..3).is_some_and(|w| lex::eq_ci(w, d)))
                || !at(3, b',')
                || !at(4, b' ')
                || !at(7, b' ')
                || !at(11, b' ')
                || !at(16, b' ')
                || !at(19, b':')
                || !at(22, b':')
                || !at(25, b' ')
                || s.get(26..29).is_none_or(|z| z != "GMT")
            {
                return None;
            }
            let month = MONTHS
                .iter()
                .position(|m| s.get(8..11).is_some_and(|w| lex::eq_ci(w, m)))?;
            let d = SipDate {
                day: u8::try_from(num(5, 2)?).ok()?,
                month: u8::try_from(month + 1).ok()?,
                year: num(12, 4)?,
                hour: u8::try_from(num(17, 2)?).ok()?,
                minute: u8::try_from(num(20, 2)?).ok()?,
                second: u8::try_from(num(23, 2)?).ok()?,
            };
            let valid = (1..=31).contains(&d.day) && d.hour < 24 && d.minute < 60 && d.second <= 60;
            valid.then_some(d)
        })();
        parsed.ok_or(SyntaxError::Date)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::uri::Scheme;

    fn na(s: &str) -> NameAddr<'_> {
        match NameAddr::parse(s) {
            Ok(n) => n,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    #[test]
    fn header_names_resolve_case_insensitively_and_compactly() {
        let cases = [
            ("Via", HeaderName::Via),
            ("vIa", HeaderName::Via),
            ("v", HeaderName::Via),
            ("V", HeaderName::Via),
            ("f", HeaderName::From),
            ("t", HeaderName::To),
            ("i", HeaderName::CallId),
            ("I", HeaderName::CallId),
            ("CALL-ID", HeaderName::CallId),
            ("m", HeaderName::Contact),
            ("l", HeaderName::ContentLength),
            ("c", HeaderName::ContentType),
            ("e", HeaderName::ContentEncoding),
            ("k", HeaderName::Supported),
            ("s", HeaderName::Subject),
            ("o", HeaderName::Event),
            ("r", HeaderName::ReferTo),
            ("b", HeaderName::ReferredBy),
            ("x", HeaderName::SessionExpires),
            ("u", HeaderName::AllowEvents),
            ("y", HeaderName::Identity),
            ("a", HeaderName::AcceptContact),
            ("j", HeaderName::RejectContact),
            ("d", HeaderName::RequestDisposition),
            ("MaX-fOrWaRdS", HeaderName::MaxForwards),
            ("CSEQ", HeaderName::CSeq),
            ("min-se", HeaderName::MinSE),
            ("P-Asserted-Identity", HeaderName::PAssertedIdentity),
            ("www-authenticate", HeaderName::WwwAuthenticate),
            ("rack", HeaderName::RAck),
            ("C%6Fntact", HeaderName::Other),
            ("z", HeaderName::Other),
            ("ms-diagnostics", HeaderName::Other),
            (
                "a-header-name-that-is-far-too-long-for-the-table",
                HeaderName::Other,
            ),
            ("", HeaderName::Other),
        ];
        for (name, want) in cases {
            assert_eq!(HeaderName::from_name(name), want, "{name}");
        }
        assert_eq!(HeaderName::CallId.as_str(), "Call-ID");
        assert_eq!(HeaderName::Contact.compact(), Some('m'));
        assert_eq!(HeaderName::CSeq.compact(), None);
    }

    #[test]
    fn name_addr_forms() {
        let n = na(r#""J Rosenberg \\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8"#);
        assert_eq!(n.display_name(), Some(r#"J Rosenberg \\\""#));
        assert!(n.display_name_is_quoted());
        let mut buf = [0u8; 32];
        assert_eq!(
            unescape_quoted(n.display_name().unwrap(), &mut buf),
            Some(&b"J Rosenberg \\\""[..])
        );
        assert_eq!(n.tag(), Some("98asjd8"));
        assert!(n.is_bracketed());

        // Unbracketed: parameters belong to the header (RFC 3261 §20.10).
        let n = na("sip:+19725552222@gw1.example.net;unknownparam");
        assert!(!n.is_bracketed());
        assert!(n.uri().params().is_empty());
        assert!(n.param("unknownparam").is_some());
        let n = na("<sip:+19725552222@gw1.example.net;unknownparam>");
        assert!(n.uri().param("unknownparam").is_some());
        assert!(n.params().is_empty());

        let n = na("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n");
        assert_eq!(n.tag(), Some("1918181833n"));
        assert_eq!(n.uri().user(), Some("vivekg"));

        let n = na("caller<sip:caller@example.com>;tag=323");
        assert_eq!(n.display_name(), Some("caller"));
        let n = na("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>");
        assert_eq!(n.display_name(), Some("token1~` token2'+_ token3*%!.-"));
        let n = na(r#""Watson, Thomas" <sip:t.watson@example.org>;x="a;b\"c""#);
        assert_eq!(n.display_name(), Some("Watson, Thomas"));
        assert_eq!(n.param("x").and_then(|p| p.value), Some(r#""a;b\"c""#));
        assert_eq!(unquote(r#""a;b""#), "a;b");
        let n = na("<tel:+1-201-555-0123;ext=12>;tag=x");
        assert_eq!(n.uri().scheme(), Scheme::Tel);
        let n = na("\"\" <sip:a@b>");
        assert_eq!(n.display_name(), Some(""));
        let n = na("<urn:service:sos>");
        assert!(matches!(n.uri().scheme(), Scheme::Other("urn")));
    }

    #[test]
    fn name_addr_rejections() {
        let cases = [
            ("", SyntaxError::Empty),
            ("\"Mr. J. User <sip:j.user@example.com>", SyntaxError::Quote),
            (
                "\"Watson, Thomas\" < sip:t.watson@example.org >",
                SyntaxError::Angle,
            ),
            ("<sip:a@b >", SyntaxError::Angle),
            (
                "Bell, Alexander <sip:a.g.bell@example.com>",
                SyntaxError::DisplayName,
            ),
            ("<sip:a@b", SyntaxError::Angle),
            (
                "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
                SyntaxError::Unbracketed,
            ),
            ("<sip:a@b>;;;;", SyntaxError::Param),
            ("<sip:a@b>;tag=", SyntaxError::Param),
            ("<sip:a@b>;tag=a b", SyntaxError::Param),
            ("<sip:a@b> junk", SyntaxError::Trailing),
            ("sip:a@b junk", SyntaxError::Trailing),
            ("\"x\" sip:a@b", SyntaxError::DisplayName),
            ("<>", SyntaxError::Angle),
            ("<sip:a b@c>", SyntaxError::UserInfo),
            ("<sip:a@b>;tag=\"open", SyntaxError::Param),
        ];
        for (s, want) in cases {
            assert_eq!(NameAddr::parse(s), Err(want), "{s:?}");
        }
        assert_eq!(Contact::parse(" * "), Ok(Contact::Star));
        assert!(Contact::parse("*;q=1").is_err());
    }

    #[test]
    fn via_forms() {
        let v = Via::parse("SIP/2.0/TLS sbc1.adatum.biz:5061;branch=z9hG4bKac1;rport").unwrap();
        assert_eq!(v.transport(), Transport::Tls);
        assert_eq!(v.host(), Host::Domain("sbc1.adatum.biz"));
        assert_eq!(v.port(), Some(5061));
        assert_eq!(v.branch(), Some("z9hG4bKac1"));
        assert!(v.has_magic_cookie());
        assert_eq!(v.rfc3261_branch(), Some("z9hG4bKac1"));
        assert!(v.has_rport());
        assert_eq!(v.rport(), None);

        let v = Via::parse("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.protocol_name(), "SIP");
        assert_eq!(v.protocol_version(), "2.0");
        assert_eq!(v.transport(), Transport::Udp);
        assert!(!v.has_magic_cookie());
        let v = Via::parse(
            "SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8",
        )
        .unwrap();
        assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
        let v = Via::parse("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK").unwrap();
        assert!(v.has_magic_cookie());
        assert_eq!(v.rfc3261_branch(), None);

        let v =
            Via::parse("SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3")
                .unwrap();
        assert_eq!(v.received(), Some("2001:db8::9:255".parse().unwrap()));
        let v = Via::parse("SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255]").unwrap();
        assert_eq!(v.received(), Some("2001:db8::9:255".parse().unwrap()));
        let v = Via::parse("SIP/2.0/UDP host.example.com : 5060 ;maddr=224.2.0.1;ttl=16;rport=5070;received=192.0.2.1").unwrap();
        assert_eq!(v.port(), Some(5060));
        assert_eq!(v.ttl(), Some(16));
        assert_eq!(v.rport(), Some(5070));
        assert!(v.maddr().is_some_and(|h| h.is_ip()));
        let v = Via::parse("SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK").unwrap();
        assert_eq!(v.transport(), Transport::Wss);
        let v = Via::parse("SIP/2.0/UNKNOWN t4.example.com").unwrap();
        assert_eq!(v.transport(), Transport::Other("UNKNOWN"));

        for bad in [
            "",
            "SIP/2.0/UDP",
            "SIP/2.0 UDP host",
            "SIP/2.0/UDPhost",
            "SIP/2.0/UDP 192.0.2.15;;",
            "SIP/2.0/UDP 192.0.2.15;",
            "SIP/2.0/UDP host:",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP 2001:db8::1",
            "SIP/2.0/UDP host;received=example.com",
            "SIP/2.0/UDP host;ttl=256",
            "SIP/2.0/UDP host;rport=x",
            "SIP/2.0/UDP host;branch=\"quoted\"",
            "SIP/2.0/UDP host;maddr=bad_host",
            "SIP/2.0/UDP host junk",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scalars() {
        assert_eq!(
            CSeq::parse("0009\r\n  INVITE"),
            Ok(CSeq {
                seq: 9,
                method: Method::Invite
            })
        );
        assert_eq!(
            CSeq::parse("8 RE%47IST%45R").map(|c| c.method),
            Ok(Method::Other("RE%47IST%45R"))
        );
        assert_eq!(
            CSeq::parse("36893488147419103232 REGISTER"),
            Err(SyntaxError::OutOfRange)
        );
        assert_eq!(CSeq::parse("INVITE"), Err(SyntaxError::Number));
        assert_eq!(CSeq::parse("1INVITE"), Err(SyntaxError::Method));
        assert_eq!(CSeq::parse("1 INVITE x"), Err(SyntaxError::Method));
        assert_eq!(CSeq::parse("-1 INVITE"), Err(SyntaxError::Number));
        assert_eq!(MaxForwards::parse("0068"), Ok(MaxForwards(68)));
        assert_eq!(MaxForwards::parse("300"), Err(SyntaxError::OutOfRange));
        assert_eq!(MaxForwards::parse("7a"), Err(SyntaxError::Number));
        assert_eq!(ContentLength::parse(" 150 "), Ok(ContentLength(150)));
        assert_eq!(ContentLength::parse("-999"), Err(SyntaxError::Number));
        assert_eq!(
            ContentLength::parse("99999999999"),
            Err(SyntaxError::OutOfRange)
        );
        assert!(CallId::parse("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{").is_ok());
        assert!(CallId::parse("a@b@c").is_err());
        assert!(CallId::parse("a b").is_err());
        assert!(CallId::parse("").is_err());
        assert_eq!(CallId::parse(" x@y ").map(|c| c.as_str()), Ok("x@y"));
        assert_eq!(
            SipDate::parse("Sat, 15 Oct 2005 04:44:56 GMT"),
            Ok(SipDate {
                year: 2005,
                month: 10,
                day: 15,
                hour: 4,
                minute: 44,
                second: 56
            })
        );
        assert!(SipDate::parse("Fri, 01 Jan 2010 16:00:00 EST").is_err());
        assert!(SipDate::parse("Fri, 01 Foo 2010 16:00:00 GMT").is_err());
        assert!(SipDate::parse("Fri, 32 Jan 2010 16:00:00 GMT").is_err());
        assert!(SipDate::parse("Fri 01 Jan 2010 16:00:00 GMT ").is_err());
    }

    #[test]
    fn methods() {
        for m in [
            "INVITE",
            "ACK",
            "BYE",
            "CANCEL",
            "OPTIONS",
            "REGISTER",
            "REFER",
            "NOTIFY",
            "SUBSCRIBE",
            "UPDATE",
            "INFO",
            "PRACK",
            "MESSAGE",
            "PUBLISH",
            "NEWMETHOD",
        ] {
            assert_eq!(Method::parse(m).as_str(), m);
        }
        assert_eq!(Method::parse("invite"), Method::Other("invite"));
        assert!(!Method::parse("IN VITE").is_token());
    }

    #[test]
    fn params_iterate_and_compare() {
        let p = Params::parse(
            " ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33",
            ParamKind::Header,
        )
        .unwrap();
        let all: Vec<_> = p.iter().collect();
        assert_eq!(
            all,
            [
                Param {
                    name: "newparam",
                    value: Some("newvalue")
                },
                Param {
                    name: "secondparam",
                    value: None
                },
                Param {
                    name: "q",
                    value: Some("0.33")
                },
            ]
        );
        assert_eq!(p.value("Q"), Some("0.33"));
        assert!(p.contains("SECONDPARAM"));
        assert!(!p.contains("missing"));
        assert!(Params::parse(";a=b", ParamKind::Uri).is_ok());
        assert!(Params::parse("; a=b", ParamKind::Uri).is_err());
        assert!(Params::parse(";a=b;", ParamKind::Uri).is_err());
        assert!(Params::parse("x", ParamKind::Header).is_err());
    }
}
