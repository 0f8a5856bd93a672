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
use super::uri::{parse_ipv6, parse_port, pct_eq_ignore_case, Host, Uri};

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
    pub(crate) fn empty(kind: ParamKind) -> Self {
        Params { raw: "", kind }
    }

    /// Validates `raw` (empty, or starting with `;`) as a list of the given kind.
    pub(crate) fn parse(raw: &'b str, kind: ParamKind) -> Result<Self, SyntaxError> {
        let raw = if kind == ParamKind::Header {
            lex::trim_lws(raw)
        } else {
            raw
        };
        let mut rest = raw;
        while !rest.is_empty() {
            let (p, next) = next_param(rest, kind)?;
            validate_param(p, kind)?;
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
    while let Some(&c) = b.get(i) {
        match c {
            b';' => break,
            b'"' if kind == ParamKind::Header => {
                i += s.get(i..).and_then(lex::quoted_len).unwrap_or(b.len() - i);
            }
            _ => i += 1,
        }
    }
    let seg = s.get(..i).unwrap_or(s);
    let rest = s.get(i..).unwrap_or("");
    let (name, value) = match seg.split_once('=') {
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
                    Some(v) => {
                        !v.is_empty()
                            && v.bytes()
                                .all(|b| lex::is_token_byte(b) || matches!(b, b'[' | b']' | b':'))
                    }
                }
        }
        ParamKind::Uri | ParamKind::Tel => {
            let name_ok = if kind == ParamKind::Uri {
                lex::is_escaped_run(p.name, lex::is_paramchar)
            } else {
                p.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            };
            !p.name.is_empty()
                && name_ok
                && p.value
                    .is_none_or(|v| !v.is_empty() && lex::is_escaped_run(v, lex::is_paramchar))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(SyntaxError::Param)
    }
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

            /// Resolves a header name as received (any case, compact forms included).
            pub fn from_name(name: &str) -> HeaderName {
                let mut buf = [0u8; 24];
                let Some(dst) = buf.get_mut(..name.len()) else {
                    return HeaderName::Other;
                };
                for (d, s) in dst.iter_mut().zip(name.bytes()) {
                    *d = s.to_ascii_lowercase();
                }
                match &*dst {
                    $( $lower $( | [$compact] )? => HeaderName::$variant, )*
                    _ => HeaderName::Other,
                }
            }
        }
    };
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
        match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "REFER" => Method::Refer,
            "NOTIFY" => Method::Notify,
            "SUBSCRIBE" => Method::Subscribe,
            "UPDATE" => Method::Update,
            "INFO" => Method::Info,
            "PRACK" => Method::Prack,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other),
        }
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
}

impl<'b> NameAddr<'b> {
    /// Parses one element of a header value (one comma-separated item).
    pub fn parse(s: &'b str) -> Result<NameAddr<'b>, SyntaxError> {
        let s = lex::trim_lws(s);
        if s.is_empty() {
            return Err(SyntaxError::Empty);
        }
        let mut display_name = None;
        let mut quoted = false;
        let rest = if s.starts_with('"') {
            let q = lex::quoted_len(s).ok_or(SyntaxError::Quote)?;
            display_name = Some(s.get(1..q - 1).ok_or(SyntaxError::Quote)?);
            quoted = true;
            lex::skip_lws(s.get(q..).unwrap_or(""))
        } else if s.starts_with('<') {
            s
        } else {
            let first = lex::span(s, lex::is_token_byte);
            if first > 0 && s.as_bytes().get(first) == Some(&b':') {
                return Self::parse_addr_spec(s);
            }
            // display-name = *(token LWS): tokens separated by whitespace up to `<`.
            let mut pos = 0;
            let mut end = 0;
            loop {
                let rest = s.get(pos..).unwrap_or("");
                let t = lex::span(rest, lex::is_token_byte);
                if t == 0 {
                    break;
                }
                end = pos + t;
                let after = s.get(end..).unwrap_or("");
                pos = s.len() - lex::skip_lws(after).len();
            }
            if end == 0 {
                return Err(SyntaxError::DisplayName);
            }
            display_name = s.get(..end);
            s.get(pos..).unwrap_or("")
        };
        let inner_and_rest = rest.strip_prefix('<').ok_or(if display_name.is_some() {
            SyntaxError::DisplayName
        } else {
            SyntaxError::Angle
        })?;
        let close = inner_and_rest.find('>').ok_or(SyntaxError::Angle)?;
        let inner = inner_and_rest.get(..close).unwrap_or("");
        // LAQUOT = SWS "<" and RAQUOT = ">" SWS: no whitespace inside (RFC 4475 §3.1.2.14).
        let bad_edge = |b: Option<&u8>| b.is_none_or(|&b| lex::is_lws(b));
        if bad_edge(inner.as_bytes().first()) || bad_edge(inner.as_bytes().last()) {
            return Err(SyntaxError::Angle);
        }
        let uri = Uri::parse(inner)?;
        let after = inner_and_rest.get(close + 1..).unwrap_or("");
        let params = Params::parse(after, ParamKind::Header).map_err(|e| {
            if lex::skip_lws(after).starts_with(';') {
                e
            } else {
                SyntaxError::Trailing
            }
        })?;
        Ok(NameAddr {
            display_name,
            quoted,
            uri,
            bracketed: true,
            params,
        })
    }

    fn parse_addr_spec(s: &'b str) -> Result<NameAddr<'b>, SyntaxError> {
        let end = s
            .bytes()
            .position(|b| b == b';' || lex::is_lws(b))
            .unwrap_or(s.len());
        let uri_text = s.get(..end).unwrap_or(s);
        if uri_text.contains(['?', ',']) {
            return Err(SyntaxError::Unbracketed);
        }
        let uri = Uri::parse(uri_text)?;
        let after = s.get(end..).unwrap_or("");
        let params = Params::parse(after, ParamKind::Header).map_err(|e| {
            if lex::skip_lws(after).starts_with(';') {
                e
            } else {
                SyntaxError::Trailing
            }
        })?;
        Ok(NameAddr {
            display_name: None,
            quoted: false,
            uri,
            bracketed: false,
            params,
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
        self.params.value("tag")
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
        const KNOWN: [(&str, Transport<'static>); 6] = [
            ("UDP", Transport::Udp),
            ("TCP", Transport::Tcp),
            ("TLS", Transport::Tls),
            ("SCTP", Transport::Sctp),
            ("WS", Transport::Ws),
            ("WSS", Transport::Wss),
        ];
        KNOWN
            .iter()
            .find(|(n, _)| lex::eq_ci(n, s))
            .map_or(Transport::Other(s), |(_, t)| *t)
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
}

impl<'b> Via<'b> {
    /// Parses one Via element; LWS (folds included) is allowed around `/` and `:` (SLASH,
    /// COLON in RFC 3261 §25.1).
    pub fn parse(s: &'b str) -> Result<Via<'b>, SyntaxError> {
        let s = lex::trim_lws(s);
        let (protocol_name, s) = take_token(s).ok_or(SyntaxError::Protocol)?;
        let s = expect_sep(s, b'/').ok_or(SyntaxError::Protocol)?;
        let (protocol_version, s) = take_token(s).ok_or(SyntaxError::Protocol)?;
        let s = expect_sep(s, b'/').ok_or(SyntaxError::Protocol)?;
        let (transport, s) = take_token(s).ok_or(SyntaxError::Protocol)?;
        // sent-protocol LWS sent-by: at least one whitespace character.
        if !s.as_bytes().first().is_some_and(|&b| lex::is_lws(b)) {
            return Err(SyntaxError::Protocol);
        }
        let s = lex::skip_lws(s);
        let host_len = if s.starts_with('[') {
            s.find(']').map(|i| i + 1).ok_or(SyntaxError::Host)?
        } else {
            lex::span(s, |b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        };
        let host = Host::parse(s.get(..host_len).unwrap_or(""))?;
        let mut s = lex::skip_lws(s.get(host_len..).unwrap_or(""));
        let mut port = None;
        if let Some(p) = s.strip_prefix(':') {
            let p = lex::skip_lws(p);
            let n = lex::span(p, |b| b.is_ascii_digit());
            port = Some(parse_port(p.get(..n).unwrap_or("")).ok_or(SyntaxError::Port)?);
            s = p.get(n..).unwrap_or("");
        }
        if !lex::skip_lws(s).is_empty() && !lex::skip_lws(s).starts_with(';') {
            return Err(SyntaxError::Trailing);
        }
        let params = Params::parse(s, ParamKind::Header)?;
        let via = Via {
            protocol_name,
            protocol_version,
            transport: Transport::parse(transport),
            host,
            port,
            params,
        };
        via.validate_params()?;
        Ok(via)
    }

    fn validate_params(&self) -> Result<(), SyntaxError> {
        for p in self.params {
            let v = p.value;
            let ok = if lex::eq_ci(p.name, "branch") {
                v.is_some_and(lex::is_token)
            } else if lex::eq_ci(p.name, "received") {
                v.and_then(parse_received).is_some()
            } else if lex::eq_ci(p.name, "ttl") {
                v.and_then(lex::parse_digits).is_some_and(|n| n <= 255)
            } else if lex::eq_ci(p.name, "rport") {
                v.is_none_or(|v| parse_port(v).is_some())
            } else if lex::eq_ci(p.name, "maddr") {
                v.is_some_and(|v| Host::parse(v).is_ok())
            } else {
                true
            };
            if !ok {
                return Err(SyntaxError::Param);
            }
        }
        Ok(())
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
        self.params.value("branch")
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
        self.params.value("received").and_then(parse_received)
    }

    /// True if `rport` is present (with or without a value, RFC 3581).
    pub fn has_rport(&self) -> bool {
        self.params.contains("rport")
    }

    /// The `rport` value filled in by a server, if any.
    pub fn rport(&self) -> Option<u16> {
        self.params.value("rport").and_then(parse_port)
    }

    /// The `maddr` host.
    pub fn maddr(&self) -> Option<Host<'b>> {
        self.params.value("maddr").and_then(|v| Host::parse(v).ok())
    }

    /// The `ttl` parameter.
    pub fn ttl(&self) -> Option<u8> {
        self.params
            .value("ttl")
            .and_then(lex::parse_digits)
            .and_then(|n| u8::try_from(n).ok())
    }
}

/// `received = IPv4address / IPv6address`; brackets tolerated (RFC 5118 §4.5).
fn parse_received(v: &str) -> Option<IpAddr> {
    let inner = v
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(v);
    if inner.contains(':') {
        parse_ipv6(inner).map(IpAddr::V6)
    } else {
        inner.parse().ok().map(IpAddr::V4)
    }
}

fn take_token(s: &str) -> Option<(&str, &str)> {
    let n = lex::span(s, lex::is_token_byte);
    if n == 0 {
        return None;
    }
    Some((s.get(..n)?, s.get(n..)?))
}

/// `SWS sep SWS`.
fn expect_sep(s: &str, sep: u8) -> Option<&str> {
    let s = lex::skip_lws(s);
    if s.as_bytes().first() != Some(&sep) {
        return None;
    }
    Some(lex::skip_lws(s.get(1..)?))
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
        let n = lex::span(s, |b| b.is_ascii_digit());
        let digits = s.get(..n).unwrap_or("");
        if digits.is_empty() {
            return Err(SyntaxError::Number);
        }
        let rest = s.get(n..).unwrap_or("");
        if !rest.as_bytes().first().is_some_and(|&b| lex::is_lws(b)) {
            return Err(SyntaxError::Method);
        }
        let method = lex::skip_lws(rest);
        if !lex::is_token(method) {
            return Err(SyntaxError::Method);
        }
        let seq = lex::parse_digits(digits)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(SyntaxError::OutOfRange)?;
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
        let word = |w: &str| !w.is_empty() && w.bytes().all(lex::is_word_byte);
        let ok = match s.split_once('@') {
            Some((a, b)) => word(a) && word(b),
            None => word(s),
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
                || !s.get(26..29).is_some_and(|z| z == "GMT")
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
