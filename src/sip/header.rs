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
    scan_header_params_whole(s, |s, p| seen(p.param(s)))
}

/// [`scan_header_params`] with the parameters handed over as offsets.
#[inline(always)]
fn scan_header_params_whole<'b>(
    s: &'b str,
    seen: impl FnMut(&'b str, RawParam) -> Result<(), SyntaxError>,
) -> Result<&'b str, SyntaxError> {
    let scan = scan_header_params_prefix(s, seen)?;
    if scan.stop < s.len() {
        return Err(if scan.stop == scan.start {
            SyntaxError::Trailing
        } else {
            SyntaxError::Param
        });
    }
    Ok(scan.raw)
}

/// One parameter found by [`scan_header_params_prefix`], as offsets into the list: the
/// name, and the value if there is one.
#[derive(Clone, Copy)]
struct RawParam {
    name: (usize, usize),
    value: Option<(usize, usize)>,
    /// The value is a `token` (not quoted, no `[`, `]` or `:`).
    token: bool,
}

impl RawParam {
    /// The name's bytes.
    #[inline(always)]
    fn name<'s>(&self, s: &'s str) -> &'s [u8] {
        s.as_bytes().get(self.name.0..self.name.1).unwrap_or(&[])
    }

    /// True if the name is `name` (given in lower case), compared case-insensitively.
    #[inline(always)]
    fn is(&self, s: &str, name: &str) -> bool {
        self.name.1 - self.name.0 == name.len()
            && self.name(s).eq_ignore_ascii_case(name.as_bytes())
    }

    /// The value's text.
    #[inline(always)]
    fn value<'b>(&self, s: &'b str) -> Option<&'b str> {
        self.value.and_then(|(a, b)| s.get(a..b))
    }

    fn param<'b>(&self, s: &'b str) -> Param<'b> {
        Param {
            name: s.get(self.name.0..self.name.1).unwrap_or(""),
            value: self.value(s),
        }
    }
}

/// What [`scan_header_params_prefix`] found.
struct ParamScan<'b> {
    /// The parameters, trimmed of surrounding LWS.
    raw: &'b str,
    /// Where the list would start (past leading LWS).
    start: usize,
    /// The first byte after the list and any LWS that follows it, which is not `;`
    /// (`s.len()` when the list runs to the end).
    stop: usize,
}

/// [`scan_header_params`] for a list that may be followed by more text: it stops, without
/// an error, at the first non-LWS byte that does not start a parameter.
#[inline(always)]
fn scan_header_params_prefix<'b>(
    s: &'b str,
    mut seen: impl FnMut(&'b str, RawParam) -> Result<(), SyntaxError>,
) -> Result<ParamScan<'b>, SyntaxError> {
    let b = s.as_bytes();
    let lws = |i: usize| b.get(i).is_some_and(|&c| lex::is_lws(c));
    let mut i = if lws(0) { lex::skip_lws_at(b, 0) } else { 0 };
    let start = i;
    let mut end = i;
    while b.get(i) == Some(&b';') {
        let name_start = if lws(i + 1) {
            lex::skip_lws_at(b, i + 1)
        } else {
            i + 1
        };
        let name_end = lex::run(b, name_start, lex::TOKEN);
        if name_end == name_start {
            return Err(SyntaxError::Param);
        }
        i = if lws(name_end) {
            lex::skip_lws_at(b, name_end)
        } else {
            name_end
        };
        let mut value = None;
        let mut token = true;
        let mut last = name_end;
        if b.get(i) == Some(&b'=') {
            let vs = if lws(i + 1) {
                lex::skip_lws_at(b, i + 1)
            } else {
                i + 1
            };
            let ve = if b.get(vs) == Some(&b'"') {
                token = false;
                vs + s
                    .get(vs..)
                    .and_then(lex::quoted_len)
                    .ok_or(SyntaxError::Param)?
            } else {
                // gen-value: a token, or a host (which may add `[`, `]` and `:`).
                let t = lex::run_long(b, vs, lex::TOKEN);
                if b.get(t).is_some_and(|&c| lex::is_class(c, lex::GENVALUE)) {
                    token = false;
                    lex::run(b, t, lex::GENVALUE)
                } else {
                    t
                }
            };
            if ve == vs {
                return Err(SyntaxError::Param);
            }
            value = Some((vs, ve));
            last = ve;
            i = if lws(ve) { lex::skip_lws_at(b, ve) } else { ve };
        }
        seen(
            s,
            RawParam {
                name: (name_start, name_end),
                value,
                token,
            },
        )?;
        end = last;
    }
    Ok(ParamScan {
        raw: s.get(start..end).unwrap_or(""),
        start,
        stop: i,
    })
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

/// Candidates by length and initial: `NAME_BUCKETS[len][initial - 'a']` is 1 + the index
/// into [`NAME_TABLE`] of the first name of that shape (0: none), and `NAME_NEXT[i]` chains
/// to the next one the same way. Few shapes hold more than one name, so a lookup is one
/// table load and usually a single key comparison.
type Buckets = [[u8; 26]; MAX_KNOWN_NAME + 1];

const fn build_buckets() -> (Buckets, [u8; NAME_TABLE.len()]) {
    let mut buckets = [[0u8; 26]; MAX_KNOWN_NAME + 1];
    let mut next = [0u8; NAME_TABLE.len()];
    let mut i = NAME_TABLE.len();
    while i > 0 {
        i -= 1;
        let name = NAME_TABLE[i].0;
        let f = (name[0] - b'a') as usize;
        next[i] = buckets[name.len()][f];
        buckets[name.len()][f] = (i + 1) as u8;
    }
    (buckets, next)
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

const BUCKETS_AND_NEXT: (Buckets, [u8; NAME_TABLE.len()]) = build_buckets();
static NAME_BUCKETS: Buckets = BUCKETS_AND_NEXT.0;
static NAME_NEXT: [u8; NAME_TABLE.len()] = BUCKETS_AND_NEXT.1;
static NAME_KEYS: [NameKey; NAME_TABLE.len()] = build_name_keys();

// Every known name is lower case, starts with a letter, is made of letters and `-` only
// (so a folded key match proves the text was a token, given it holds no CR), fits a key,
// and the indices fit a u8.
const _: () = {
    assert!(NAME_TABLE.len() < 255);
    let mut i = 0;
    while i < NAME_TABLE.len() {
        let name = NAME_TABLE[i].0;
        assert!(!name.is_empty() && name.len() <= MAX_KNOWN_NAME);
        assert!(name[0].is_ascii_lowercase());
        let mut j = 0;
        while j < name.len() {
            assert!(name[j].is_ascii_lowercase() || name[j] == b'-');
            j += 1;
        }
        i += 1;
    }
};

/// Word `w` (0-2) of the key of the `n`-byte name at `buf[at..]`.
#[inline(always)]
fn key_word(buf: &[u8], at: usize, n: usize, w: usize) -> u64 {
    let start = at + w * 8;
    let valid = n.saturating_sub(w * 8);
    if valid == 0 {
        return FOLD;
    }
    let word = match lex::word_at(buf, start) {
        Some(x) => x,
        None => {
            let mut a = [0u8; 8];
            for (d, s) in a.iter_mut().zip(buf.get(start..).unwrap_or(&[])) {
                *d = *s;
            }
            u64::from_le_bytes(a)
        }
    };
    if valid >= 8 {
        word | FOLD
    } else {
        (word & ((1u64 << (valid * 8)) - 1)) | FOLD
    }
}

impl HeaderName {
    /// Resolves a header name as received (any case, compact forms included).
    pub fn from_name(name: &str) -> HeaderName {
        Self::from_bytes(name.as_bytes())
    }

    pub(crate) fn from_bytes(name: &[u8]) -> HeaderName {
        if name.is_empty() || lex::run(name, 0, lex::TOKEN) != name.len() {
            return HeaderName::Other;
        }
        Self::known_at(name, 0, name.len()).unwrap_or(HeaderName::Other)
    }

    /// The known name spelled by `buf[at..at + n]` (any case), if any.
    ///
    /// A match means those bytes are letters and `-`, or CR in place of `-`: callers make
    /// sure the text holds no CR, and then a match also proves it is a `token`.
    #[inline]
    pub(crate) fn known_at(buf: &[u8], at: usize, n: usize) -> Option<HeaderName> {
        let initial = usize::from((*buf.get(at)? | 0x20).wrapping_sub(b'a'));
        let e = usize::from(*NAME_BUCKETS.get(n)?.get(initial)?);
        if e == 0 {
            return None;
        }
        let key = [
            key_word(buf, at, n, 0),
            if n > 8 { key_word(buf, at, n, 1) } else { FOLD },
            if n > 16 {
                key_word(buf, at, n, 2)
            } else {
                FOLD
            },
        ];
        Self::known_key(e, &key)
    }

    /// [`known_at`](HeaderName::known_at) for a name of `n` (1-16) bytes whose first
    /// sixteen bytes, little-endian, are `w0` and `w1` (bytes past the name are ignored).
    #[inline(always)]
    pub(crate) fn known_words(w0: u64, w1: u64, n: usize) -> Option<HeaderName> {
        if n > 16 {
            return None;
        }
        let initial = usize::from(((w0 as u8) | 0x20).wrapping_sub(b'a'));
        let e = usize::from(*NAME_BUCKETS.get(n)?.get(initial)?);
        if e == 0 {
            return None;
        }
        let mask = |valid: usize| match valid {
            0 => 0,
            1..=7 => (1u64 << (valid * 8)) - 1,
            _ => u64::MAX,
        };
        let k0 = (w0 & mask(n)) | FOLD;
        let k1 = (w1 & mask(n.saturating_sub(8))) | FOLD;
        // Candidates all have length n (at most 16), so their third word is padding and,
        // for n <= 8, so is their second.
        let mut e = e;
        while let Some(i) = e.checked_sub(1) {
            if let Some(&[c0, c1, _]) = NAME_KEYS.get(i) {
                if c0 == k0 && (n <= 8 || c1 == k1) {
                    return NAME_TABLE.get(i).map(|t| t.1);
                }
            }
            e = usize::from(NAME_NEXT.get(i).copied().unwrap_or(0));
        }
        None
    }

    /// Walks the candidate chain starting at entry `e` (1-based) for `key`.
    #[inline(always)]
    fn known_key(mut e: usize, key: &NameKey) -> Option<HeaderName> {
        while let Some(i) = e.checked_sub(1) {
            if NAME_KEYS.get(i) == Some(key) {
                return NAME_TABLE.get(i).map(|t| t.1);
            }
            e = usize::from(NAME_NEXT.get(i).copied().unwrap_or(0));
        }
        None
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
        match self {
            Method::Other(s) => lex::is_token(s),
            _ => true,
        }
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

/// Parses header parameters after a URI, remembering the first `tag`: the whole of `after`
/// (`list` false), or up to the first byte that does not start a parameter, whose index
/// is returned (`after.len()` otherwise).
#[inline(always)]
fn addr_params<'b>(
    after: &'b str,
    list: bool,
) -> Result<(Params<'b>, Option<&'b str>, usize), SyntaxError> {
    let mut tag = None;
    let note = |s: &'b str, p: RawParam| {
        if tag.is_none() && p.is(s, "tag") {
            tag = p.value(s);
        }
        Ok(())
    };
    let (raw, stop) = if list {
        let scan = scan_header_params_prefix(after, note)?;
        (scan.raw, scan.stop)
    } else {
        (scan_header_params_whole(after, note)?, after.len())
    };
    Ok((Params::from_validated(raw, ParamKind::Header), tag, stop))
}

impl<'b> NameAddr<'b> {
    /// Parses one element of a header value (one comma-separated item).
    pub fn parse(s: &'b str) -> Result<NameAddr<'b>, SyntaxError> {
        Self::parse_from(lex::trim_lws(s), false).map(|(a, _)| a)
    }

    /// Parses the element at the start of `s` (which starts with no LWS). With `list`
    /// false `s` must be exactly the element (trimmed); with `list` true the element may
    /// be followed by more of a list, and the index of the first byte after it and its
    /// trailing LWS is returned, for the caller to check it is `,` or the end. No byte of
    /// a valid element is a `,` outside quoted strings and `<...>`, so an element that
    /// parses this way is exactly the one splitting the list would have produced.
    pub(crate) fn parse_from(s: &'b str, list: bool) -> Result<(NameAddr<'b>, usize), SyntaxError> {
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
                    return Self::parse_addr_spec(s, list);
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
        // A SIP URI parses in one pass up to its `>` (no whitespace inside the brackets
        // then, as a URI starts with its scheme and ends with a URI character).
        let (uri, gt) = match Uri::parse_bracketed(s, lt + 1) {
            Some(found) => found,
            None => {
                let gt = lt
                    + lex::find_byte(b.get(lt..).unwrap_or(&[]), b'>').ok_or(SyntaxError::Angle)?;
                // LAQUOT = SWS "<" and RAQUOT = ">" SWS: no whitespace inside (RFC 4475
                // §3.1.2.14).
                let inside = |i: usize| b.get(i).is_some_and(|&c| !lex::is_lws(c));
                if gt == lt + 1 || !inside(lt + 1) || !inside(gt - 1) {
                    return Err(SyntaxError::Angle);
                }
                (Uri::parse(s.get(lt + 1..gt).unwrap_or(""))?, gt)
            }
        };
        let (params, tag, stop) = addr_params(s.get(gt + 1..).unwrap_or(""), list)?;
        Ok((
            NameAddr {
                display_name,
                quoted,
                uri,
                bracketed: true,
                params,
                tag,
            },
            gt + 1 + stop,
        ))
    }

    fn parse_addr_spec(s: &'b str, list: bool) -> Result<(NameAddr<'b>, usize), SyntaxError> {
        let b = s.as_bytes();
        let mut end = 0;
        while let Some(&c) = b.get(end) {
            if c == b';' || lex::is_lws(c) || (list && c == b',') {
                break;
            }
            if c == b'?' || c == b',' {
                return Err(SyntaxError::Unbracketed);
            }
            end += 1;
        }
        let uri = Uri::parse(s.get(..end).unwrap_or(s))?;
        let (params, tag, stop) = addr_params(s.get(end..).unwrap_or(""), list)?;
        Ok((
            NameAddr {
                display_name: None,
                quoted: false,
                uri,
                bracketed: false,
                params,
                tag,
            },
            end + stop,
        ))
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

    /// The element at the start of a list, as [`NameAddr::parse_from`] with `list` set.
    pub(crate) fn parse_list_item(s: &'b str) -> Result<(Contact<'b>, usize), SyntaxError> {
        let b = s.as_bytes();
        if b.first() == Some(&b'*') {
            let stop = lex::skip_lws_at(b, 1);
            if matches!(b.get(stop), None | Some(b',')) {
                return Ok((Contact::Star, stop));
            }
        }
        NameAddr::parse_from(s, true).map(|(a, stop)| (Contact::Addr(a), stop))
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

/// The transport token of a Via, as written on the wire; matched case-insensitively.
/// (The transport a flow runs on is [`crate::sip::Transport`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViaTransport<'b> {
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

impl<'b> ViaTransport<'b> {
    fn parse(s: &'b str) -> ViaTransport<'b> {
        let t = match s.len() {
            2 if lex::eq_ci(s, "WS") => ViaTransport::Ws,
            3 if lex::eq_ci(s, "UDP") => ViaTransport::Udp,
            3 if lex::eq_ci(s, "TCP") => ViaTransport::Tcp,
            3 if lex::eq_ci(s, "TLS") => ViaTransport::Tls,
            3 if lex::eq_ci(s, "WSS") => ViaTransport::Wss,
            4 if lex::eq_ci(s, "SCTP") => ViaTransport::Sctp,
            _ => ViaTransport::Other(s),
        };
        t
    }

    /// The transport name (upper case for the known ones).
    pub fn as_str(&self) -> &'b str {
        match self {
            ViaTransport::Udp => "UDP",
            ViaTransport::Tcp => "TCP",
            ViaTransport::Tls => "TLS",
            ViaTransport::Sctp => "SCTP",
            ViaTransport::Ws => "WS",
            ViaTransport::Wss => "WSS",
            ViaTransport::Other(s) => s,
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
    transport: ViaTransport<'b>,
    host: Host<'b>,
    /// The parameters, validated (see [`Via::params`]).
    params: &'b str,
    /// The first `branch`, the one parameter every layer reads; the other known ones are
    /// found again in `params` when asked for.
    branch: Option<&'b str>,
    port: Option<u16>,
}

/// Validation of the Via parameters RFC 3261 and RFC 3581 define (their values must be
/// well formed), picking out the first `branch` on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct ViaParams<'b> {
    branch: Option<&'b str>,
}

impl<'b> ViaParams<'b> {
    /// Checks one Via parameter; the first `branch` is kept.
    #[inline]
    fn note(&mut self, s: &'b str, p: RawParam) -> Result<(), SyntaxError> {
        let ok = match p.name.1 - p.name.0 {
            6 if p.is(s, "branch") => {
                let v = p.value(s);
                self.branch = self.branch.or(v);
                v.is_some() && p.token
            }
            8 if p.is(s, "received") => p.value(s).and_then(parse_received).is_some(),
            3 if p.is(s, "ttl") => p.value(s).and_then(parse_ttl).is_some(),
            5 if p.is(s, "rport") => p.value(s).is_none_or(|v| parse_port(v).is_some()),
            5 if p.is(s, "maddr") => p.value(s).is_some_and(|v| Host::parse(v).is_ok()),
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err(SyntaxError::Param)
        }
    }
}

fn parse_ttl(v: &str) -> Option<u8> {
    lex::parse_digits(v).and_then(|n| u8::try_from(n).ok())
}

impl<'b> Via<'b> {
    /// Parses one Via element; LWS (folds included) is allowed around `/` and `:` (SLASH,
    /// COLON in RFC 3261 §25.1).
    pub fn parse(s: &'b str) -> Result<Via<'b>, SyntaxError> {
        Self::parse_from(lex::trim_lws(s), false).map(|(v, _)| v)
    }

    /// Parses the element at the start of `s`, like [`NameAddr::parse_from`].
    pub(crate) fn parse_from(s: &'b str, list: bool) -> Result<(Via<'b>, usize), SyntaxError> {
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
        // `SIP/2.0/` as it is always written takes no scanning.
        let (protocol_name, protocol_version, (transport, i)) = if b.starts_with(b"SIP/2.0/") {
            (
                s.get(..3).unwrap_or(""),
                s.get(4..7).unwrap_or(""),
                token_at(lex::skip_lws_at(b, 8))?,
            )
        } else {
            let (protocol_name, i) = token_at(0)?;
            let (protocol_version, i) = token_at(slash(i)?)?;
            (protocol_name, protocol_version, token_at(slash(i)?)?)
        };
        // sent-protocol LWS sent-by: at least one whitespace character.
        if !b.get(i).is_some_and(|&c| lex::is_lws(c)) {
            return Err(SyntaxError::Protocol);
        }
        let (host, end) = uri::scan_host(s, lex::skip_lws_at(b, i))?;
        let mut i = lex::skip_lws_at(b, end);
        let mut port = None;
        if b.get(i) == Some(&b':') {
            // port = 1*DIGIT, within u16 (saturating past it).
            let start = lex::skip_lws_at(b, i + 1);
            let mut j = start;
            let mut n: u32 = 0;
            while let Some(&c) = b.get(j) {
                if !c.is_ascii_digit() {
                    break;
                }
                n = (n * 10 + u32::from(c - b'0')).min(0x1_0000);
                j += 1;
            }
            if j == start {
                return Err(SyntaxError::Port);
            }
            port = Some(u16::try_from(n).map_err(|_| SyntaxError::Port)?);
            i = j;
        }
        let mut known = ViaParams::default();
        let rest = s.get(i..).unwrap_or("");
        let (raw, stop) = if list {
            let scan = scan_header_params_prefix(rest, |s, p| known.note(s, p))?;
            (scan.raw, i + scan.stop)
        } else {
            (
                scan_header_params_whole(rest, |s, p| known.note(s, p))?,
                s.len(),
            )
        };
        Ok((
            Via {
                protocol_name,
                protocol_version,
                transport: ViaTransport::parse(transport),
                host,
                params: raw,
                branch: known.branch,
                port,
            },
            stop,
        ))
    }

    /// The value of the first parameter named `name` (ASCII lower case, compared
    /// case-insensitively), if it has one.
    fn first_param(&self, name: &str) -> Option<Option<&'b str>> {
        self.params()
            .iter()
            .find(|p| lex::eq_ci(p.name, name))
            .map(|p| p.value)
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
    pub fn transport(&self) -> ViaTransport<'b> {
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
        Params::from_validated(self.params, ParamKind::Header)
    }

    /// A parameter by name (case-insensitive).
    pub fn param(&self, name: &str) -> Option<Param<'b>> {
        self.params().get(name)
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&'b str> {
        self.branch
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
        self.first_param("received")
            .flatten()
            .and_then(parse_received)
    }

    /// True if `rport` is present (with or without a value, RFC 3581).
    pub fn has_rport(&self) -> bool {
        self.first_param("rport").is_some()
    }

    /// The `rport` value filled in by a server, if any.
    pub fn rport(&self) -> Option<u16> {
        self.first_param("rport").flatten().and_then(parse_port)
    }

    /// The `maddr` host.
    pub fn maddr(&self) -> Option<Host<'b>> {
        self.first_param("maddr")
            .flatten()
            .and_then(|v| Host::parse(v).ok())
    }

    /// The `ttl` parameter.
    pub fn ttl(&self) -> Option<u8> {
        self.first_param("ttl").flatten().and_then(parse_ttl)
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
        Self::parse_trimmed(lex::trim_lws(s))
    }

    /// [`CSeq::parse`] of a value with no surrounding LWS (as `Message` stores them).
    pub(crate) fn parse_trimmed(s: &'b str) -> Result<CSeq<'b>, SyntaxError> {
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
        let method = Method::parse(s.get(lex::skip_lws_at(b, i)..).unwrap_or(""));
        // The known methods are tokens; anything else is checked.
        if let Method::Other(m) = method {
            if !lex::is_token(m) {
                return Err(SyntaxError::Method);
            }
        }
        let seq = u32::try_from(seq).map_err(|_| SyntaxError::OutOfRange)?;
        Ok(CSeq { seq, method })
    }
}

/// `Max-Forwards: 1*DIGIT`, 0-255 (RFC 3261 §20.22).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxForwards(pub u8);

impl MaxForwards {
    /// Parses the value; leading zeros are fine (`0068` is 68).
    pub fn parse(s: &str) -> Result<MaxForwards, SyntaxError> {
        digits_value(s)
            .and_then(|n| u8::try_from(n).map_err(|_| SyntaxError::OutOfRange))
            .map(MaxForwards)
    }
}

/// `1*DIGIT` after trimming LWS: `Number` if it is not that, else the value, saturated
/// past `u32::MAX` (which every caller's range rejects).
fn digits_value(s: &str) -> Result<u64, SyntaxError> {
    let s = lex::trim_lws(s);
    if s.is_empty() {
        return Err(SyntaxError::Number);
    }
    let mut n: u64 = 0;
    for c in s.bytes() {
        if !c.is_ascii_digit() {
            return Err(SyntaxError::Number);
        }
        n = (n * 10 + u64::from(c - b'0')).min(u64::from(u32::MAX) + 1);
    }
    Ok(n)
}

/// `Content-Length: 1*DIGIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentLength(pub u32);

impl ContentLength {
    /// Parses the value.
    pub fn parse(s: &str) -> Result<ContentLength, SyntaxError> {
        digits_value(s)
            .and_then(|n| u32::try_from(n).map_err(|_| SyntaxError::OutOfRange))
            .map(ContentLength)
    }
}

/// `Call-ID: word [ "@" word ]` (RFC 3261 §25.1), borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallId<'b>(&'b str);

impl<'b> CallId<'b> {
    /// Validates a Call-ID value.
    pub fn parse(s: &'b str) -> Result<CallId<'b>, SyntaxError> {
        Self::parse_trimmed(lex::trim_lws(s))
    }

    /// [`CallId::parse`] of a value with no surrounding LWS (as `Message` stores them).
    pub(crate) fn parse_trimmed(s: &'b str) -> Result<CallId<'b>, SyntaxError> {
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
        assert_eq!(v.transport(), ViaTransport::Tls);
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
        assert_eq!(v.transport(), ViaTransport::Udp);
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
        assert_eq!(v.transport(), ViaTransport::Wss);
        let v = Via::parse("SIP/2.0/UNKNOWN t4.example.com").unwrap();
        assert_eq!(v.transport(), ViaTransport::Other("UNKNOWN"));

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
