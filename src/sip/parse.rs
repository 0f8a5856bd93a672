//! Stream framing (RFC 3261 §18.3) and the borrowed [`Message`] view.
//!
//! [`Message::parse`] is httparse-shaped: it takes whatever bytes the transport has read,
//! returns `Ok(Status::Partial)` when they are a strict prefix of a message (never an
//! error), and otherwise a [`Message`] that borrows every string from the buffer. Header
//! lines are recorded in a fixed inline array ([`MAX_HEADERS`] entries of 8-byte offsets
//! into the header block, handed out as [`Header`] slices), so parsing allocates nothing;
//! names are resolved to [`HeaderName`] once; values are `&str` slices of the buffer, a
//! folded value included (its CR LF counts as whitespace for every tokenizer).
//!
//! Leading CRLFs are not skipped here: on a stream they are RFC 5626 §3.5.1 keep-alives
//! that the transport answers and strips (DR-TLS-3) before calling [`Message::parse`]; a
//! buffer that starts with CRLF is [`ParseError::EmptyStartLine`].
//!
//! A [`ParseError`] is a framing error or a content error ([`ParseError::is_framing`]).
//! After a framing error the stream cannot be resynchronised and the transport closes it
//! (RFC 4475 §3.1.2.3, DR-TLS-2). After a content error the message can still be delimited
//! ([`super::recover`]): it is answered and skipped, and the stream goes on (DR-ERR-3).
//! Either way the response, where one can be formed, carries [`ParseError::status`] and
//! [`ParseError::reason`].
//!
//! [`Message::check_request`] and [`Message::check_response`] then apply the RFC 3261
//! §8.2 / §16.3 message-level rules; [`Message::checked_request`] and
//! [`Message::checked_response`] do the same and hand back the typed views they parsed
//! ([`Checked`]). Policy (416, 420, 483, 403 ...) is the caller's.

use std::fmt;

use super::header::{
    CSeq, CallId, Contact, ContentLength, HeaderName, MaxForwards, Method, NameAddr, SipDate,
    SyntaxError, Via,
};
use super::lex;
use super::uri::Uri;

/// Most header lines one message may carry; more is [`ParseError::TooManyHeaders`].
pub const MAX_HEADERS: usize = 96;

/// Outcome of parsing a buffer that may hold only part of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status<T> {
    /// A whole message (or header block) was found.
    Complete(T),
    /// The buffer is a strict prefix of a message: read more and call again.
    Partial,
}

impl<T> Status<T> {
    /// The complete value, if any.
    pub fn complete(self) -> Option<T> {
        match self {
            Status::Complete(t) => Some(t),
            Status::Partial => None,
        }
    }

    /// True for `Partial`.
    pub fn is_partial(&self) -> bool {
        matches!(self, Status::Partial)
    }
}

/// Size limits a stream enforces before it has seen a whole message (DR-TLS-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest header block, start line and final CRLFCRLF included.
    pub max_header_bytes: usize,
    /// Largest Content-Length accepted.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    /// 16 KiB of headers, 64 KiB of body.
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// `SIP/major.minor`; the protocol name is matched case-insensitively (RFC 3261 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// Major version (saturates at `u32::MAX`).
    pub major: u32,
    /// Minor version (saturates at `u32::MAX`).
    pub minor: u32,
}

impl Version {
    /// SIP/2.0, the only version drhub speaks.
    pub const SIP_2_0: Version = Version { major: 2, minor: 0 };

    /// True for SIP/2.0.
    pub fn is_sip_2_0(&self) -> bool {
        *self == Self::SIP_2_0
    }

    #[inline(always)]
    fn parse_bytes(b: &[u8]) -> Option<Version> {
        // The one version seen in practice, in one comparison of seven bytes.
        if let Ok(&[s, i, p, slash, b'2', b'.', b'0']) = <&[u8; 7]>::try_from(b) {
            if [s, i, p, slash].eq_ignore_ascii_case(b"SIP/") {
                return Some(Version::SIP_2_0);
            }
        }
        if b.len() < 7 || !b.get(..4)?.eq_ignore_ascii_case(b"SIP/") {
            return None;
        }
        // 1*DIGIT "." 1*DIGIT, saturating (only 2.0 matters; the rest is "not 2.0").
        let number = |from: usize| -> Option<(u32, usize)> {
            let mut i = from;
            let mut n: u32 = 0;
            while let Some(&c) = b.get(i) {
                if !c.is_ascii_digit() {
                    break;
                }
                n = n.saturating_mul(10).saturating_add(u32::from(c - b'0'));
                i += 1;
            }
            (i > from).then_some((n, i))
        };
        let (major, i) = number(4)?;
        if b.get(i) != Some(&b'.') {
            return None;
        }
        let (minor, i) = number(i + 1)?;
        (i == b.len()).then_some(Version { major, minor })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/{}.{}", self.major, self.minor)
    }
}

/// The first line of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'b> {
    /// `Method SP Request-URI SP SIP-Version`.
    Request {
        /// The method (not yet checked to be a token; see [`Message::check_request`]).
        method: Method<'b>,
        /// The Request-URI text between the first and the last space, unparsed; parse it
        /// with [`Message::request_uri`].
        uri: &'b str,
        /// The version.
        version: Version,
    },
    /// `SIP-Version SP Status-Code SP Reason-Phrase`.
    Response {
        /// The version.
        version: Version,
        /// Three digits (range checked by [`Message::check_response`]).
        code: u16,
        /// The reason phrase, possibly empty, any UTF-8 text.
        reason: &'b str,
    },
}

/// One header line: the resolved name, the name as received, and the value with leading
/// and trailing whitespace removed (internal folds kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'b> {
    /// Resolved name (compact and any-case forms folded).
    pub name: HeaderName,
    /// The name exactly as received.
    pub raw_name: &'b str,
    /// The value, trimmed, still containing any CRLF of a fold.
    pub value: &'b str,
}

/// Where one header line sits in the header block: offsets, not slices, so that the inline
/// array stays small (8 bytes a line, all-zero when empty) and cheap to initialise and move.
/// Limits that follow: a header name is at most 255 bytes and a value at most 64 KiB.
#[derive(Debug, Clone, Copy)]
struct Slot {
    value_start: u32,
    value_len: u16,
    /// `value_start` minus the start of the name, or `u8::MAX` when that does not fit (the
    /// name is then found by scanning back from the value).
    name_back: u8,
    name: HeaderName,
}

/// An unused slot. `HeaderName::Via` is discriminant 0, so this is all zero bytes and the
/// array initialises with one `memset`; `count` says which slots are real.
const EMPTY_SLOT: Slot = Slot {
    value_start: 0,
    value_len: 0,
    name_back: 0,
    name: HeaderName::Via,
};

/// The headers the message-level checks look at: for each, where it first occurs and how
/// often, recorded while framing so that the checks never walk the header list.
const TRACKED: [HeaderName; 11] = [
    HeaderName::To,
    HeaderName::From,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::Via,
    HeaderName::MaxForwards,
    HeaderName::ContentLength,
    HeaderName::Contact,
    HeaderName::RecordRoute,
    HeaderName::Route,
    HeaderName::Date,
];

/// `TRACK[name as usize]`: the index of `name` in [`TRACKED`], or [`NOT_TRACKED`].
static TRACK: [u8; HeaderName::Other as usize + 1] = {
    let mut t = [NOT_TRACKED; HeaderName::Other as usize + 1];
    let mut i = 0;
    while i < TRACKED.len() {
        t[TRACKED[i] as usize] = i as u8;
        i += 1;
    }
    t
};

const NOT_TRACKED: u8 = u8::MAX;

/// Index in [`TRACKED`] of a name the checks use (a constant lookup for constant names).
#[inline(always)]
fn tracked(name: HeaderName) -> usize {
    usize::from(TRACK.get(name as usize).copied().unwrap_or(NOT_TRACKED))
}

/// Why a buffer is not (the start of) a SIP message on a stream.
///
/// Each variant maps to the status and reason phrase of the response drhub sends where it
/// can still form one (DR-TLS-2, DR-ERR-3). After a framing error
/// ([`is_framing`](ParseError::is_framing)) the connection is closed; after any other the
/// faulty message is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The buffer starts with CRLF (a keep-alive the transport should have stripped).
    EmptyStartLine,
    /// The first line is not `Method SP Request-URI SP SIP/x.y`.
    BadRequestLine,
    /// The first line is not `SIP/x.y SP 3DIGIT [SP Reason-Phrase]`.
    BadStatusLine,
    /// The message is framed correctly but is not SIP/2.0.
    VersionNotSupported,
    /// A line ends in a bare LF, or a CR appears that is not followed by LF.
    BadLineEnding,
    /// A header line has no colon, an empty or non-token name (or one over 255 bytes), or
    /// starts with whitespace right after the start line.
    MalformedHeaderLine,
    /// More than [`MAX_HEADERS`] header lines.
    TooManyHeaders,
    /// The header block is not valid UTF-8.
    NotUtf8,
    /// No CRLFCRLF within [`Limits::max_header_bytes`] (or one header value over 64 KiB).
    HeaderTooLarge,
    /// Content-Length above [`Limits::max_body_bytes`].
    BodyTooLarge,
    /// No Content-Length, which a stream requires (RFC 3261 §18.3, §20.14).
    MissingContentLength,
    /// A Content-Length that is not 1*DIGIT (RFC 4475 §3.1.2.3).
    InvalidContentLength,
    /// Several Content-Length headers that disagree (RFC 4475 §3.3.9).
    ConflictingContentLength,
    /// A datagram that ends before its header block does, or before Content-Length bytes
    /// of body (RFC 3261 §18.3, RFC 4475 §3.1.2.3). [`Message::parse`] never returns it: on
    /// a stream that is [`Status::Partial`].
    Truncated,
}

impl ParseError {
    /// Reason phrase for the response (also the log text).
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::EmptyStartLine => "Empty Start-Line",
            ParseError::BadRequestLine => "Bad Request-Line",
            ParseError::BadStatusLine => "Bad Status-Line",
            ParseError::VersionNotSupported => "Version Not Supported",
            ParseError::BadLineEnding => "Line Not Terminated By CRLF",
            ParseError::MalformedHeaderLine => "Malformed Header Line",
            ParseError::TooManyHeaders => "Too Many Headers",
            ParseError::NotUtf8 => "Header Block Is Not UTF-8",
            ParseError::HeaderTooLarge => "Header Block Too Large",
            ParseError::BodyTooLarge => "Request Entity Too Large",
            ParseError::MissingContentLength => "Missing Content-Length",
            ParseError::InvalidContentLength => "Malformed Content-Length",
            ParseError::ConflictingContentLength => "Conflicting Content-Length",
            ParseError::Truncated => "Message Truncated",
        }
    }

    /// True when the stream position of the next message cannot be known: no end of the
    /// header block within the limit, no single well-formed Content-Length, a body over
    /// the limit. The connection must close (DR-TLS-2). Every other error is about the
    /// content of a message that can still be delimited (see [`super::recover`]).
    pub fn is_framing(&self) -> bool {
        matches!(
            self,
            ParseError::HeaderTooLarge
                | ParseError::BodyTooLarge
                | ParseError::MissingContentLength
                | ParseError::InvalidContentLength
                | ParseError::ConflictingContentLength
        )
    }

    /// SIP status for the response: 505 for a version other than 2.0, 413 for a body
    /// over the limit, 400 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::VersionNotSupported => 505,
            ParseError::BodyTooLarge => 413,
            _ => 400,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())
    }
}

impl std::error::Error for ParseError {}

/// Why a parsed message fails the RFC 3261 message-level checks: the response status and
/// a reason phrase specific enough for a voice engineer reading a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid {
    /// SIP status to answer with (400 or 505).
    pub status: u16,
    /// Reason phrase, e.g. `Malformed To header`.
    pub reason: &'static str,
}

impl Invalid {
    const fn bad(reason: &'static str) -> Invalid {
        Invalid {
            status: 400,
            reason,
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for Invalid {}

/// Proof that a message passed [`Message::check_request`] or [`Message::check_response`],
/// carrying the typed views of the headers every layer needs, parsed once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked<'b> {
    /// From (exactly one, well formed).
    pub from: NameAddr<'b>,
    /// To (exactly one, well formed).
    pub to: NameAddr<'b>,
    /// Call-ID.
    pub call_id: CallId<'b>,
    /// CSeq, number below 2^31; for requests its method is the request method.
    pub cseq: CSeq<'b>,
    /// The topmost Via (every Via was checked).
    pub top_via: Via<'b>,
    /// The first Contact, if any (every Contact was checked; DR-VAL-1/2 look at this one).
    pub contact: Option<Contact<'b>>,
    /// Max-Forwards, if present (0-255).
    pub max_forwards: Option<MaxForwards>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Framed by Content-Length; `body` is exactly Content-Length bytes.
    Stream,
    /// Header block only; the body was not looked at.
    HeadOnly,
}

/// A SIP message borrowed from a read buffer.
///
/// Guarantees: the header block is UTF-8 with CRLF line endings, the start line has the
/// request or status shape, every header line is `token ":" value`, and at most
/// [`MAX_HEADERS`] of them. For [`Message::parse`], `body` is exactly Content-Length bytes
/// and the version is SIP/2.0. Nothing else is checked until
/// [`check_request`](Message::check_request) / [`check_response`](Message::check_response).
#[derive(Clone)]
pub struct Message<'b> {
    start: StartLine<'b>,
    start_raw: &'b str,
    head: &'b str,
    slots: [Slot; MAX_HEADERS],
    count: usize,
    /// Per [`TRACKED`] name: the slot of its first line, and how many lines (saturating).
    first: [u8; TRACKED.len()],
    seen: [u8; TRACKED.len()],
    body: &'b [u8],
    len: usize,
    framing: Framing,
}

/// Whether the CR or LF at `i` starts a CR LF: `Some(true)` yes, `Some(false)` a CR that
/// is the last byte so far, `None` a bare CR or LF.
#[inline(always)]
fn crlf_at(region: &[u8], i: usize) -> Option<bool> {
    match (region.get(i), region.get(i + 1)) {
        (Some(b'\r'), Some(b'\n')) => Some(true),
        (Some(b'\r'), None) => Some(false),
        _ => None,
    }
}

/// The start line as offsets into itself, found before the header block is known to be
/// complete (so before it has been validated as one `&str`).
#[derive(Debug, Clone, Copy)]
enum RawStart {
    Request {
        method_end: usize,
        uri_start: usize,
        uri_end: usize,
        version: Version,
    },
    Response {
        version: Version,
        code: u16,
        reason_start: usize,
    },
}

impl RawStart {
    /// The borrowed start line, from the validated text of the line.
    #[inline(always)]
    fn resolve(self, line: &str) -> StartLine<'_> {
        match self {
            RawStart::Request {
                method_end,
                uri_start,
                uri_end,
                version,
            } => StartLine::Request {
                method: Method::parse(line.get(..method_end).unwrap_or("")),
                uri: line.get(uri_start..uri_end).unwrap_or(""),
                version,
            },
            RawStart::Response {
                version,
                code,
                reason_start,
            } => StartLine::Response {
                version,
                code,
                reason: line.get(reason_start..).unwrap_or(""),
            },
        }
    }
}

/// Parses the start line (without CRLF). Every split point is an ASCII space, so the
/// offsets are character boundaries of the line.
fn parse_start_line(b: &[u8]) -> Result<RawStart, ParseError> {
    let is_status = match b.get(..4) {
        // Letters fold exactly under `| 0x20`; the slash is compared as it is.
        Some(&[s, i, p, b'/']) => [s | 0x20, i | 0x20, p | 0x20] == *b"sip",
        _ => false,
    };
    if is_status {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp = lex::find_byte(b, b' ').ok_or(ParseError::BadStatusLine)?;
        let version = b
            .get(..sp)
            .and_then(Version::parse_bytes)
            .ok_or(ParseError::BadStatusLine)?;
        let code = b.get(sp + 1..sp + 4).ok_or(ParseError::BadStatusLine)?;
        if !code.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::BadStatusLine);
        }
        // A missing separator before an empty reason is tolerated (RFC 4475 §3.1.1.13).
        let reason_start = match b.get(sp + 4) {
            Some(b' ') => sp + 5,
            None => b.len(),
            Some(_) => return Err(ParseError::BadStatusLine),
        };
        let code = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        return Ok(RawStart::Response {
            version,
            code,
            reason_start,
        });
    }
    // Request-Line: split at the first and the last space so that a Request-URI with
    // stray whitespace still yields a message a 400 can be built from (RFC 4475 §3.1.2.8).
    let first = lex::find_byte(b, b' ').ok_or(ParseError::BadRequestLine)?;
    let trimmed_len = b
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(0, |i| i + 1);
    // The version is short, so the last space is a few bytes from the end.
    let last = b
        .get(..trimmed_len)
        .unwrap_or(&[])
        .iter()
        .rposition(|&c| c == b' ')
        .ok_or(ParseError::BadRequestLine)?;
    if first == 0 || last <= first {
        return Err(ParseError::BadRequestLine);
    }
    let version = b
        .get(last + 1..trimmed_len)
        .and_then(Version::parse_bytes)
        .ok_or(ParseError::BadRequestLine)?;
    let uri = b.get(first + 1..last).ok_or(ParseError::BadRequestLine)?;
    if uri.iter().all(|&c| lex::is_lws(c)) {
        return Err(ParseError::BadRequestLine);
    }
    Ok(RawStart::Request {
        method_end: first,
        uri_start: first + 1,
        uri_end: last,
        version,
    })
}

impl<'b> Message<'b> {
    /// Frames and parses one message from the front of a stream buffer.
    ///
    /// `Ok(Partial)` for every strict prefix of a valid message (the body included); after
    /// `Complete(msg)` the next message starts at `&buf[msg.len()..]`.
    pub fn parse(buf: &'b [u8], limits: &Limits) -> Result<Status<Message<'b>>, ParseError> {
        // Built in the value that is returned, and returned from one place, so that the
        // inline header array is not copied.
        let mut out = Ok(Status::Complete(Message::empty(Framing::Stream)));
        let framed = match &mut out {
            Ok(Status::Complete(msg)) => msg.frame_stream(buf, limits),
            _ => Ok(true),
        };
        match framed {
            Ok(true) => {}
            Ok(false) => out = Ok(Status::Partial),
            Err(e) => out = Err(e),
        }
        out
    }

    /// [`parse`](Message::parse) on the message being built: `Ok(false)` for a prefix.
    fn frame_stream(&mut self, buf: &'b [u8], limits: &Limits) -> Result<bool, ParseError> {
        if !self.scan(buf, limits.max_header_bytes)? {
            return Ok(false);
        }
        if !self.version().is_sip_2_0() {
            return Err(ParseError::VersionNotSupported);
        }
        let cl = self.stream_content_length()?;
        if cl > limits.max_body_bytes {
            return Err(ParseError::BodyTooLarge);
        }
        let total = self.len.checked_add(cl).ok_or(ParseError::BodyTooLarge)?;
        let Some(body) = buf.get(self.len..total) else {
            return Ok(false);
        };
        self.body = body;
        self.len = total;
        Ok(true)
    }

    /// Parses only the start line and header block, ignoring Content-Length and the body,
    /// and accepting any `SIP/x.y` version.
    ///
    /// Used on error paths to answer a message [`parse`](Message::parse) rejected, and for
    /// datagram-style input; `len()` is the header block length and `body()` is empty.
    pub fn parse_head(buf: &'b [u8]) -> Result<Status<Message<'b>>, ParseError> {
        let mut out = Ok(Status::Complete(Message::empty(Framing::HeadOnly)));
        let framed = match &mut out {
            Ok(Status::Complete(msg)) => msg.scan(buf, usize::MAX),
            _ => Ok(true),
        };
        match framed {
            Ok(true) => {}
            Ok(false) => out = Ok(Status::Partial),
            Err(e) => out = Err(e),
        }
        out
    }

    #[inline(always)]
    fn empty(framing: Framing) -> Message<'b> {
        Message {
            start: StartLine::Response {
                version: Version::SIP_2_0,
                code: 0,
                reason: "",
            },
            start_raw: "",
            head: "",
            slots: [EMPTY_SLOT; MAX_HEADERS],
            count: 0,
            first: [0; TRACKED.len()],
            seen: [0; TRACKED.len()],
            body: &[],
            len: 0,
            framing,
        }
    }

    /// One pass over the lines of the header block, looking only at complete lines so that
    /// a prefix is never an error it would not be in full. `Ok(false)`: need more bytes.
    ///
    /// Each line is taken up to its first CR or LF (SWAR); a line must end in CR LF, so a
    /// lone CR or LF anywhere in the block is caught on the way, with no separate pass.
    /// Header names are resolved from the text before the colon; the block is validated
    /// as UTF-8 once, when it is complete.
    fn scan(&mut self, buf: &'b [u8], limit: usize) -> Result<bool, ParseError> {
        let region = buf.get(..limit.min(buf.len())).unwrap_or(buf);
        // Offsets are stored as u32; a block that long is over any sane limit anyway.
        let region = region.get(..u32::MAX as usize).unwrap_or(region);
        let need_more = if buf.len() >= limit {
            Err(ParseError::HeaderTooLarge)
        } else {
            Ok(false)
        };
        // The start line.
        let Some(cr) = lex::find_eol(region, 0) else {
            return need_more;
        };
        match crlf_at(region, cr) {
            Some(true) => {}
            Some(false) => return need_more,
            None => return Err(ParseError::BadLineEnding),
        }
        if cr == 0 {
            return Err(ParseError::EmptyStartLine);
        }
        let line = region.get(..cr).unwrap_or(&[]);
        if !line.is_ascii() && std::str::from_utf8(line).is_err() {
            return Err(ParseError::NotUtf8);
        }
        let start = parse_start_line(line)?;
        let start_len = cr;
        let mut line_start = cr + 2;
        // The slot of the latest header (continuation lines extend its value), and the
        // error its value owes, raised when it is complete (at the next header line or
        // the end of the block), where a check of the finished value would find it.
        let mut last: Option<usize> = None;
        let mut owed: Option<ParseError> = None;
        loop {
            if owed.is_none() {
                while let Some((k, next)) = self.plain_header(region, line_start) {
                    last = Some(k);
                    line_start = next;
                }
            }
            let first = match region.get(line_start) {
                Some(&c) => c,
                None => return need_more,
            };
            if first == b' ' || first == b'\t' {
                // RFC 3261 §7.3.1: a line starting with SP/HT continues the previous value.
                let Some(cr) = lex::find_eol(region, line_start) else {
                    return need_more;
                };
                match crlf_at(region, cr) {
                    Some(true) => {}
                    Some(false) => return need_more,
                    None => return Err(ParseError::BadLineEnding),
                }
                let k = last.ok_or(ParseError::MalformedHeaderLine)?;
                if let Some(e) = self.extend_value(region, k, cr) {
                    owed = Some(e);
                }
                line_start = cr + 2;
                continue;
            }
            // (A line starting with CR is the empty line or a bad line ending.)
            let hit = if first == b'\r' {
                line_start
            } else {
                match lex::find_colon_or_eol(region, line_start) {
                    Some(hit) => hit,
                    None => return need_more,
                }
            };
            let (colon, cr) = if region.get(hit) == Some(&b':') {
                match lex::find_eol(region, hit + 1) {
                    Some(cr) => (Some(hit), cr),
                    None => return need_more,
                }
            } else {
                (None, hit)
            };
            match crlf_at(region, cr) {
                Some(true) => {}
                Some(false) => return need_more,
                None => return Err(ParseError::BadLineEnding),
            }
            if let Some(e) = owed {
                return Err(e);
            }
            if cr == line_start {
                // The empty line: the header block is complete.
                let next = cr + 2;
                let block = region.get(..next).ok_or(ParseError::BadLineEnding)?;
                self.head = std::str::from_utf8(block).map_err(|_| ParseError::NotUtf8)?;
                let raw = self.head.get(..start_len).unwrap_or("");
                self.start = start.resolve(raw);
                self.start_raw = raw;
                self.len = next;
                return Ok(true);
            }
            let colon = colon.ok_or(ParseError::MalformedHeaderLine)?;
            let (k, e) = self.open_header(region, line_start, colon, cr)?;
            last = Some(k);
            owed = e;
            line_start = cr + 2;
        }
    }

    /// The common header line, `Name: value CRLF` with a known name of at most 15 bytes
    /// right before the colon, taken in straight-line code: fills the next slot and
    /// returns it with the start of the next line. `None` leaves everything untouched for
    /// [`open_header`](Message::open_header) and the general loop, which also produce
    /// every error.
    #[inline(always)]
    fn plain_header(&mut self, region: &[u8], start: usize) -> Option<(usize, usize)> {
        let w0 = lex::word_at(region, start)?;
        let m0 = lex::colon_or_control(w0);
        let (colon, w1) = if m0 != 0 {
            (start + (m0.trailing_zeros() / 8) as usize, 0)
        } else {
            let w1 = lex::word_at(region, start + 8)?;
            let m1 = lex::colon_or_control(w1);
            if m1 == 0 {
                return None;
            }
            (start + 8 + (m1.trailing_zeros() / 8) as usize, w1)
        };
        // The first flagged byte must be the colon, right after the name.
        if region.get(colon) != Some(&b':') || colon == start {
            return None;
        }
        if matches!(region.get(colon - 1), Some(b' ' | b'\t')) {
            return None;
        }
        // A known name is a token (the name holds no CR: a CR would have been flagged).
        let name = HeaderName::known_words(w0, w1, colon - start)?;
        let mut value_start = colon + 1;
        while matches!(region.get(value_start), Some(b' ' | b'\t')) {
            value_start += 1;
        }
        let cr = lex::find_eol(region, value_start)?;
        if crlf_at(region, cr) != Some(true) {
            return None;
        }
        let mut value_end = cr;
        while value_end > value_start && matches!(region.get(value_end - 1), Some(b' ' | b'\t')) {
            value_end -= 1;
        }
        let value_len = u16::try_from(value_end - value_start).ok()?;
        let k = self.count;
        let slot = self.slots.get_mut(k)?;
        // `region` is at most u32::MAX bytes long, so this cast is exact.
        *slot = Slot {
            value_start: value_start as u32,
            value_len,
            name_back: u8::try_from(value_start - start).unwrap_or(u8::MAX),
            name,
        };
        self.count += 1;
        let t = tracked(name);
        if let (Some(first), Some(seen)) = (self.first.get_mut(t), self.seen.get_mut(t)) {
            if *seen == 0 {
                // k < MAX_HEADERS, which fits a u8.
                *first = k as u8;
            }
            *seen = seen.saturating_add(1);
        }
        Some((k, cr + 2))
    }

    /// Reads `name *(SP/HT)` before the colon at `colon` of the header line
    /// `region[start..cr]` (RFC 3261 §7.3.1 HCOLON), resolving the name, and fills the next
    /// slot with it and the trimmed value; returns the slot, and the error the value owes
    /// if it is too long to record. The line holds no CR or LF before `cr`.
    #[inline]
    fn open_header(
        &mut self,
        region: &[u8],
        start: usize,
        colon: usize,
        cr: usize,
    ) -> Result<(usize, Option<ParseError>), ParseError> {
        let mut name_end = colon;
        while name_end > start && matches!(region.get(name_end - 1), Some(b' ' | b'\t')) {
            name_end -= 1;
        }
        let name_len = name_end - start;
        if name_len == 0 || name_len > usize::from(u8::MAX) {
            return Err(ParseError::MalformedHeaderLine);
        }
        let name = match HeaderName::known_at(region, start, name_len) {
            Some(name) => name,
            None => {
                let rest = region.get(start..).unwrap_or(&[]);
                if lex::run(rest, 0, lex::TOKEN) != name_len {
                    return Err(ParseError::MalformedHeaderLine);
                }
                HeaderName::Other
            }
        };
        let k = self.count;
        let slot = self.slots.get_mut(k).ok_or(ParseError::TooManyHeaders)?;
        // The value, trimmed (the line has no CR or LF, so SP and HT are all its LWS).
        let mut value_start = colon + 1;
        while value_start < cr && matches!(region.get(value_start), Some(b' ' | b'\t')) {
            value_start += 1;
        }
        let mut value_end = cr;
        while value_end > value_start && matches!(region.get(value_end - 1), Some(b' ' | b'\t')) {
            value_end -= 1;
        }
        let (value_len, owed) = match u16::try_from(value_end - value_start) {
            Ok(n) => (n, None),
            Err(_) => (0, Some(ParseError::HeaderTooLarge)),
        };
        // `region` is at most u32::MAX bytes long, so this cast is exact.
        *slot = Slot {
            value_start: value_start as u32,
            value_len,
            name_back: u8::try_from(value_start - start).unwrap_or(u8::MAX),
            name,
        };
        self.count += 1;
        let t = tracked(name);
        if let (Some(first), Some(seen)) = (self.first.get_mut(t), self.seen.get_mut(t)) {
            if *seen == 0 {
                // k < MAX_HEADERS, which fits a u8.
                *first = k as u8;
            }
            *seen = seen.saturating_add(1);
        }
        Ok((k, owed))
    }

    /// Extends the value of slot `k` over a continuation line ending at `end`, trimming
    /// LWS (folds included) around it; returns the error it owes if it got too long.
    ///
    /// A value that was empty starts at the end of what it covered, so the new start is
    /// the first non-LWS byte from there; a non-empty one keeps its start.
    fn extend_value(&mut self, region: &[u8], k: usize, end: usize) -> Option<ParseError> {
        let slot = self.slots.get_mut(k)?;
        let old_start = slot.value_start as usize;
        let mut start = old_start;
        let mut end = end;
        while start < end && region.get(start).is_some_and(|&c| lex::is_lws(c)) {
            start += 1;
        }
        while end > start && region.get(end - 1).is_some_and(|&c| lex::is_lws(c)) {
            end -= 1;
        }
        slot.value_start = start as u32;
        let back = usize::from(slot.name_back) + (start - old_start);
        slot.name_back = u8::try_from(back).unwrap_or(u8::MAX);
        match u16::try_from(end - start) {
            Ok(n) => {
                slot.value_len = n;
                None
            }
            Err(_) => {
                slot.value_len = 0;
                Some(ParseError::HeaderTooLarge)
            }
        }
    }

    /// The value of a header line.
    #[inline]
    fn value_at(&self, slot: &Slot) -> &'b str {
        let start = slot.value_start as usize;
        self.head
            .get(start..start + usize::from(slot.value_len))
            .unwrap_or("")
    }

    /// The name of a header line as received.
    fn raw_name_at(&self, slot: &Slot) -> &'b str {
        let b = self.head.as_bytes();
        let value_start = slot.value_start as usize;
        let start = match value_start.checked_sub(usize::from(slot.name_back)) {
            Some(start) if slot.name_back != u8::MAX => start,
            _ => {
                // Back over the LWS before the value, the colon, the SP/HT before it and
                // the name (a token, preceded by the LF of the line before).
                let mut i = value_start;
                while i > 0 && b.get(i - 1).is_some_and(|&c| lex::is_lws(c)) {
                    i -= 1;
                }
                i = i.saturating_sub(1);
                while i > 0 && matches!(b.get(i - 1), Some(b' ' | b'\t')) {
                    i -= 1;
                }
                while i > 0 && b.get(i - 1).is_some_and(|&c| lex::is_token_char(c)) {
                    i -= 1;
                }
                i
            }
        };
        let end = lex::run(b, start, lex::TOKEN);
        self.head.get(start..end).unwrap_or("")
    }

    /// The slot of the first line of a [`TRACKED`] name, and how many lines it has.
    #[inline(always)]
    fn first_tracked(&self, name: HeaderName) -> (usize, Option<&Slot>) {
        let t = tracked(name);
        let seen = usize::from(self.seen.get(t).copied().unwrap_or(0));
        let slot = match seen {
            0 => None,
            _ => self
                .first
                .get(t)
                .and_then(|&k| self.slots.get(usize::from(k))),
        };
        (seen, slot)
    }

    fn header_at(&self, slot: &Slot) -> Header<'b> {
        Header {
            name: slot.name,
            raw_name: self.raw_name_at(slot),
            value: self.value_at(slot),
        }
    }

    /// The Content-Length that frames this message on a stream.
    fn stream_content_length(&self) -> Result<usize, ParseError> {
        /// 1*DIGIT; all digits, so an overflow is simply a body that is too large.
        fn digits(v: &str) -> Result<u64, ParseError> {
            if v.is_empty() {
                return Err(ParseError::InvalidContentLength);
            }
            let mut n: u64 = 0;
            for c in v.bytes() {
                if !c.is_ascii_digit() {
                    return Err(ParseError::InvalidContentLength);
                }
                n = n.saturating_mul(10).saturating_add(u64::from(c - b'0'));
            }
            Ok(n)
        }
        let (seen, first) = self.first_tracked(HeaderName::ContentLength);
        let Some(&slot) = first else {
            return Err(ParseError::MissingContentLength);
        };
        let n = digits(self.value_at(&slot))?;
        if seen > 1 {
            for s in self
                .slots_from(HeaderName::ContentLength)
                .iter()
                .filter(|s| s.name == HeaderName::ContentLength)
                .skip(1)
            {
                if digits(self.value_at(s))? != n {
                    return Err(ParseError::ConflictingContentLength);
                }
            }
        }
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    // ------------------------------------------------------------------ accessors

    /// The start line.
    pub fn start_line(&self) -> &StartLine<'b> {
        &self.start
    }

    /// The start line exactly as received, without CRLF.
    pub fn start_line_raw(&self) -> &'b str {
        self.start_raw
    }

    /// The header block as received: start line, headers and the closing CRLFCRLF.
    pub fn head(&self) -> &'b str {
        self.head
    }

    /// True for requests.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method, for requests.
    pub fn method(&self) -> Option<Method<'b>> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code, for responses.
    pub fn status_code(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The SIP version of the start line.
    pub fn version(&self) -> Version {
        match self.start {
            StartLine::Request { version, .. } | StartLine::Response { version, .. } => version,
        }
    }

    /// The Request-URI, parsed, for requests.
    pub fn request_uri(&self) -> Option<Result<Uri<'b>, SyntaxError>> {
        match self.start {
            StartLine::Request { uri, .. } => Some(Uri::parse(uri)),
            StartLine::Response { .. } => None,
        }
    }

    /// All header lines in order.
    pub fn headers(&self) -> Headers<'_, 'b> {
        Headers {
            msg: self,
            slots: self.used_slots().iter(),
        }
    }

    fn used_slots(&self) -> &[Slot] {
        self.slots.get(..self.count).unwrap_or(&[])
    }

    /// Number of header lines.
    pub fn header_count(&self) -> usize {
        self.count
    }

    /// The body: exactly Content-Length bytes for [`parse`](Message::parse), empty for
    /// [`parse_head`](Message::parse_head).
    pub fn body(&self) -> &'b [u8] {
        self.body
    }

    /// Bytes of the buffer this message occupies; the next message starts there.
    #[allow(clippy::len_without_is_empty)] // a message is never empty
    pub fn len(&self) -> usize {
        self.len
    }

    /// Value of the first header with this name.
    pub fn header(&self, name: HeaderName) -> Option<&'b str> {
        self.slots_from(name)
            .iter()
            .find(|s| s.name == name)
            .map(|s| self.value_at(s))
    }

    /// Value of the first header whose raw name matches (case-insensitive; for headers
    /// [`HeaderName`] does not know, such as `ms-diagnostics`).
    pub fn header_by_raw_name(&self, name: &str) -> Option<&'b str> {
        self.headers()
            .find(|h| lex::eq_ci(h.raw_name, name))
            .map(|h| h.value)
    }

    /// All header lines with this name, in order.
    pub fn headers_named(&self, name: HeaderName) -> impl Iterator<Item = Header<'b>> + '_ {
        self.slots_from(name)
            .iter()
            .filter(move |s| s.name == name)
            .map(|s| self.header_at(s))
    }

    /// Number of header lines with this name.
    pub fn count(&self, name: HeaderName) -> usize {
        match self.seen.get(tracked(name)) {
            // At most MAX_HEADERS lines, so the saturating count is exact.
            Some(&n) => usize::from(n),
            None => self.used_slots().iter().filter(|s| s.name == name).count(),
        }
    }

    /// The used slots from the first line that can have this name on: for a [`TRACKED`]
    /// name its first line (none if it has none), otherwise all of them.
    #[inline]
    fn slots_from(&self, name: HeaderName) -> &[Slot] {
        let t = tracked(name);
        let from = match (self.seen.get(t), self.first.get(t)) {
            (Some(0), _) => self.count,
            (Some(_), Some(&k)) => usize::from(k),
            _ => 0,
        };
        self.used_slots().get(from..).unwrap_or(&[])
    }

    /// The comma-separated elements of every header line with this name, in order, split
    /// outside quoted strings and `<...>` (Via, Contact, Route, Record-Route, Allow ...).
    ///
    /// A line with an empty value yields nothing; empty elements between commas are
    /// yielded as `""` so that validation can reject them.
    pub fn values(&self, name: HeaderName) -> Values<'_, 'b> {
        Values {
            msg: self,
            slots: self.slots_from(name).iter(),
            name,
            rest: None,
        }
    }

    /// The From header, parsed.
    pub fn from(&self) -> Option<Result<NameAddr<'b>, SyntaxError>> {
        self.header(HeaderName::From).map(NameAddr::parse)
    }

    /// The To header, parsed.
    pub fn to(&self) -> Option<Result<NameAddr<'b>, SyntaxError>> {
        self.header(HeaderName::To).map(NameAddr::parse)
    }

    /// The Call-ID value.
    pub fn call_id(&self) -> Option<&'b str> {
        self.header(HeaderName::CallId)
    }

    /// The CSeq header, parsed.
    pub fn cseq(&self) -> Option<Result<CSeq<'b>, SyntaxError>> {
        self.header(HeaderName::CSeq).map(CSeq::parse)
    }

    /// Every Via element, top first.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'b>, SyntaxError>> + '_ {
        self.values(HeaderName::Via).map(Via::parse)
    }

    /// The topmost Via element.
    pub fn top_via(&self) -> Option<Result<Via<'b>, SyntaxError>> {
        self.vias().next()
    }

    /// Every Contact element.
    pub fn contacts(&self) -> impl Iterator<Item = Result<Contact<'b>, SyntaxError>> + '_ {
        self.values(HeaderName::Contact).map(Contact::parse)
    }

    /// The first Contact element (the one DR-VAL-2 looks at).
    pub fn contact(&self) -> Option<Result<Contact<'b>, SyntaxError>> {
        self.contacts().next()
    }

    /// Max-Forwards, parsed.
    pub fn max_forwards(&self) -> Option<Result<MaxForwards, SyntaxError>> {
        self.header(HeaderName::MaxForwards).map(MaxForwards::parse)
    }

    // ------------------------------------------------------------------ validity

    /// RFC 3261 §8.2 / §16.3 message-level validity of a request.
    ///
    /// Checks, in order: Request-Line shape, method token, version 2.0 (else 505),
    /// Request-URI syntax (no escaped headers), then the headers common to both kinds
    /// (see [`check_response`](Message::check_response)) and that the CSeq method equals
    /// the request method. Max-Forwards may be absent (§16.3 item 3, RFC 2543 peers).
    pub fn check_request(&self) -> Result<(), Invalid> {
        self.checked_request().map(|_| ())
    }

    /// [`check_request`](Message::check_request), returning the typed views the checks
    /// parsed on the way, so that no layer parses From, To, Call-ID, CSeq, the top Via or
    /// the first Contact twice.
    pub fn checked_request(&self) -> Result<Checked<'b>, Invalid> {
        let StartLine::Request {
            method,
            uri,
            version,
        } = self.start
        else {
            return Err(Invalid::bad("Not a request"));
        };
        // RFC 3261 §7.1: single SPs and nothing after the version
        // (RFC 4475 §3.1.2.9 lwsstart, §3.1.2.10 trws).
        let ws = |b: u8| b == b' ' || b == b'\t';
        if self.start_raw.bytes().last().is_some_and(ws)
            || uri.bytes().next().is_some_and(ws)
            || uri.bytes().last().is_some_and(ws)
        {
            return Err(Invalid::bad("Extra whitespace in Request-Line"));
        }
        if !method.is_token() {
            return Err(Invalid::bad("Malformed method in Request-Line"));
        }
        if !version.is_sip_2_0() {
            // RFC 3261 §21.5.7 505 Version Not Supported (RFC 4475 §3.1.2.16 badvers).
            return Err(Invalid {
                status: 505,
                reason: "Version Not Supported",
            });
        }
        // RFC 4475 §3.1.2.8 lwsruri: whitespace inside the Request-URI.
        if lex::has_lws(uri.as_bytes()) {
            return Err(Invalid::bad("Whitespace in Request-URI"));
        }
        let ruri = Uri::parse(uri).map_err(|_| Invalid::bad("Malformed Request-URI"))?;
        // RFC 3261 §19.1.1 table: headers are not allowed in a Request-URI (RFC 4475
        // §3.1.2.11 escruri).
        if ruri.has_headers() {
            return Err(Invalid::bad("Request-URI must not contain headers"));
        }
        self.check_common(Some(method))
    }

    /// RFC 3261 message-level validity of a response: version 2.0, a status code in
    /// 100-699 (RFC 4475 §3.1.2.19), and the common header checks: To, From, Call-ID and
    /// CSeq exactly once and well formed, CSeq number below 2^31, at least one Via and
    /// every Via well formed, Max-Forwards (optional) 0-255, Contact, Route and
    /// Record-Route well formed, one Content-Length agreeing with the body, Date in GMT.
    pub fn check_response(&self) -> Result<(), Invalid> {
        self.checked_response().map(|_| ())
    }

    /// [`check_request`](Message::check_request) or
    /// [`check_response`](Message::check_response), whichever the message is.
    pub fn check(&self) -> Result<(), Invalid> {
        if self.is_request() {
            self.check_request()
        } else {
            self.check_response()
        }
    }

    /// [`check_response`](Message::check_response), returning the typed views the checks
    /// parsed (see [`checked_request`](Message::checked_request)).
    pub fn checked_response(&self) -> Result<Checked<'b>, Invalid> {
        let StartLine::Response { version, code, .. } = self.start else {
            return Err(Invalid::bad("Not a response"));
        };
        if !version.is_sip_2_0() {
            return Err(Invalid {
                status: 505,
                reason: "Version Not Supported",
            });
        }
        if !(100..=699).contains(&code) {
            return Err(Invalid::bad("Status code out of range"));
        }
        self.check_common(None)
    }

    /// Parses every element of every line of a list-valued header, in order, as
    /// [`values`](Message::values) would split them: `item` parses the element at the
    /// start of its argument (no leading LWS) and returns where it and the LWS after it
    /// end, which must be a `,` or the end of the line; `each` sees every element.
    #[inline]
    fn for_each_item<T>(
        &self,
        name: HeaderName,
        mut item: impl FnMut(&'b str) -> Result<(T, usize), SyntaxError>,
        mut each: impl FnMut(T),
    ) -> Result<(), SyntaxError> {
        // The lines of a tracked name are counted, so the walk stops at the last one.
        let mut lines = match self.seen.get(tracked(name)) {
            Some(&n) => usize::from(n),
            None => usize::MAX,
        };
        for slot in self.slots_from(name) {
            if lines == 0 {
                break;
            }
            if slot.name != name {
                continue;
            }
            lines -= 1;
            let mut rest = self.value_at(slot);
            if rest.is_empty() {
                continue;
            }
            loop {
                let s = lex::skip_lws(rest);
                let (v, stop) = item(s)?;
                match s.as_bytes().get(stop) {
                    None => {
                        each(v);
                        break;
                    }
                    Some(b',') => {
                        each(v);
                        rest = s.get(stop + 1..).unwrap_or("");
                    }
                    Some(_) => return Err(SyntaxError::Trailing),
                }
            }
        }
        Ok(())
    }

    fn check_common(&self, method: Option<Method<'b>>) -> Result<Checked<'b>, Invalid> {
        use HeaderName as H;
        // Counts and first lines were recorded while framing.
        let n = |name: HeaderName| self.first_tracked(name).0;
        let value = |name: HeaderName| {
            self.first_tracked(name)
                .1
                .map_or("", |slot| self.value_at(slot))
        };
        // RFC 3261 §8.1.1: To, From, CSeq, Call-ID exactly once; Via at least once
        // (RFC 4475 §3.3.1 insuf, §3.3.8 multi01).
        for name in [H::To, H::From, H::CallId, H::CSeq] {
            match n(name) {
                0 => return Err(Invalid::bad(missing(name))),
                1 => {}
                _ => return Err(Invalid::bad(multiple(name))),
            }
        }
        if n(H::Via) == 0 {
            return Err(Invalid::bad("Missing Via header"));
        }
        for name in [H::MaxForwards, H::ContentLength] {
            if n(name) > 1 {
                return Err(Invalid::bad(multiple(name)));
            }
        }
        // Values are stored trimmed, so the element parser can take them as they are.
        let to = NameAddr::parse_from(value(H::To), false)
            .map_err(|_| Invalid::bad("Malformed To header"))?
            .0;
        let from = NameAddr::parse_from(value(H::From), false)
            .map_err(|_| Invalid::bad("Malformed From header"))?
            .0;
        let call_id = CallId::parse_trimmed(value(H::CallId))
            .map_err(|_| Invalid::bad("Malformed Call-ID header"))?;
        let cseq = CSeq::parse_trimmed(value(H::CSeq)).map_err(|e| {
            Invalid::bad(if e == SyntaxError::OutOfRange {
                "CSeq number out of range"
            } else {
                "Malformed CSeq header"
            })
        })?;
        // RFC 3261 §8.1.1.5: less than 2^31 (RFC 4475 §3.1.2.4 scalar02, §3.1.2.5 scalarlg).
        if cseq.seq > 0x7fff_ffff {
            return Err(Invalid::bad("CSeq number out of range"));
        }
        // RFC 3261 §8.1.1.5: the CSeq method matches the request method; ACK and CANCEL
        // carry their own method too (RFC 4475 §3.1.2.17 mismatch01, §3.1.2.18).
        if method.is_some_and(|m| m != cseq.method) {
            return Err(Invalid::bad("CSeq method does not match request method"));
        }
        // RFC 4475 §3.1.2.1 badinv01: empty Via elements and parameters.
        let mut top_via = None;
        self.for_each_item(
            H::Via,
            |s| Via::parse_from(s, true),
            |v| top_via = top_via.or(Some(v)),
        )
        .map_err(|_| Invalid::bad("Malformed Via header"))?;
        let top_via = top_via.ok_or(Invalid::bad("Missing Via header"))?;
        let max_forwards = if n(H::MaxForwards) > 0 {
            Some(MaxForwards::parse(value(H::MaxForwards)).map_err(|e| {
                Invalid::bad(if e == SyntaxError::OutOfRange {
                    "Max-Forwards out of range"
                } else {
                    "Malformed Max-Forwards header"
                })
            })?)
        } else {
            None
        };
        let mut contacts = 0usize;
        let mut star = false;
        let mut contact = None;
        self.for_each_item(H::Contact, Contact::parse_list_item, |c| {
            contacts += 1;
            star |= c == Contact::Star;
            contact = contact.or(Some(c));
        })
        .map_err(|_| Invalid::bad("Malformed Contact header"))?;
        // RFC 3261 §10.2.2: `*` stands alone.
        if star && contacts > 1 {
            return Err(Invalid::bad("Contact '*' must be the only Contact"));
        }
        for (name, reason) in [
            (H::RecordRoute, "Malformed Record-Route header"),
            (H::Route, "Malformed Route header"),
        ] {
            if n(name) == 0 {
                continue;
            }
            // route-param = name-addr: angle brackets are mandatory.
            self.for_each_item(
                name,
                |s| match NameAddr::parse_from(s, true) {
                    Ok((a, stop)) if a.is_bracketed() => Ok(((), stop)),
                    Ok(_) => Err(SyntaxError::Angle),
                    Err(e) => Err(e),
                },
                |()| {},
            )
            .map_err(|_| Invalid::bad(reason))?;
        }
        if n(H::ContentLength) > 0 {
            let cl = ContentLength::parse(value(H::ContentLength))
                .map_err(|_| Invalid::bad("Malformed Content-Length header"))?;
            let body_len = u32::try_from(self.body.len()).unwrap_or(u32::MAX);
            if self.framing == Framing::Stream && cl.0 != body_len {
                return Err(Invalid::bad("Content-Length does not match body"));
            }
        }
        // RFC 3261 §20.17: GMT only (RFC 4475 §3.1.2.12 baddate).
        if n(H::Date) > 0 {
            SipDate::parse(value(H::Date)).map_err(|_| Invalid::bad("Malformed Date header"))?;
        }
        Ok(Checked {
            from,
            to,
            call_id,
            cseq,
            top_via,
            contact,
            max_forwards,
        })
    }
}

fn missing(name: HeaderName) -> &'static str {
    match name {
        HeaderName::To => "Missing To header",
        HeaderName::From => "Missing From header",
        HeaderName::CallId => "Missing Call-ID header",
        HeaderName::CSeq => "Missing CSeq header",
        _ => "Missing mandatory header",
    }
}

fn multiple(name: HeaderName) -> &'static str {
    match name {
        HeaderName::To => "Multiple To headers",
        HeaderName::From => "Multiple From headers",
        HeaderName::CallId => "Multiple Call-ID headers",
        HeaderName::CSeq => "Multiple CSeq headers",
        HeaderName::MaxForwards => "Multiple Max-Forwards headers",
        HeaderName::ContentLength => "Multiple Content-Length headers",
        _ => "Multiple single-valued headers",
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("start", &self.start)
            .field("headers", &DebugHeaders(self))
            .field("body_len", &self.body.len())
            .field("len", &self.len)
            .finish()
    }
}

struct DebugHeaders<'m, 'b>(&'m Message<'b>);

impl fmt::Debug for DebugHeaders<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.headers()).finish()
    }
}

/// Iterator over the header lines of a [`Message`].
#[derive(Clone)]
pub struct Headers<'m, 'b> {
    msg: &'m Message<'b>,
    slots: std::slice::Iter<'m, Slot>,
}

impl<'b> Iterator for Headers<'_, 'b> {
    type Item = Header<'b>;

    fn next(&mut self) -> Option<Header<'b>> {
        self.slots.next().map(|s| self.msg.header_at(s))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.slots.size_hint()
    }
}

impl ExactSizeIterator for Headers<'_, '_> {}

impl fmt::Debug for Headers<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

/// Iterator over the list elements of one header name; see [`Message::values`].
#[derive(Clone)]
pub struct Values<'m, 'b> {
    msg: &'m Message<'b>,
    slots: std::slice::Iter<'m, Slot>,
    name: HeaderName,
    rest: Option<&'b str>,
}

impl<'b> Iterator for Values<'_, 'b> {
    type Item = &'b str;

    fn next(&mut self) -> Option<&'b str> {
        loop {
            if let Some(r) = self.rest {
                let (item, next) = lex::split_list(r);
                self.rest = next;
                return Some(item);
            }
            let name = self.name;
            let slot = self.slots.find(|s| s.name == name)?;
            let value = self.msg.value_at(slot);
            if !value.is_empty() {
                self.rest = Some(value);
            }
        }
    }
}

impl fmt::Debug for Values<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::header::ViaTransport;
    use crate::sip::uri::Host;

    const INVITE: &[u8] = include_bytes!("../../benches/fixtures/invite.sip");
    const SP183: &[u8] = include_bytes!("../../benches/fixtures/session_progress_183.sip");
    const OK200: &[u8] = include_bytes!("../../benches/fixtures/options_200.sip");

    fn complete(buf: &[u8]) -> Message<'_> {
        match Message::parse(buf, &Limits::default()) {
            Ok(Status::Complete(m)) => m,
            other => panic!("expected a complete message, got {other:?}"),
        }
    }

    fn err(buf: &[u8]) -> ParseError {
        match Message::parse(buf, &Limits::default()) {
            Err(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// Builds a request from header lines with a correct Content-Length.
    fn req(start: &str, headers: &[&str], body: &str) -> Vec<u8> {
        let mut s = String::from(start);
        s.push_str("\r\n");
        for h in headers {
            s.push_str(h);
            s.push_str("\r\n");
        }
        s.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        s.into_bytes()
    }

    const BASE: [&str; 6] = [
        "Via: SIP/2.0/TLS sbc1.adatum.biz:5061;branch=z9hG4bK1",
        "Max-Forwards: 70",
        "From: <sip:+1@sbc1.adatum.biz>;tag=a",
        "To: <sip:+2@sip.pstnhub.microsoft.com>",
        "Call-ID: c1@sbc1",
        "CSeq: 1 OPTIONS",
    ];

    #[test]
    fn fixtures_parse_and_check() {
        for f in [INVITE, SP183, OK200] {
            let m = complete(f);
            assert_eq!(m.len(), f.len());
            if m.is_request() {
                assert_eq!(m.check_request(), Ok(()));
            } else {
                assert_eq!(m.check_response(), Ok(()));
            }
        }
        let m = complete(INVITE);
        assert_eq!(m.method(), Some(Method::Invite));
        let ruri = m.request_uri().unwrap().unwrap();
        assert_eq!(ruri.user(), Some("+18338006777"));
        assert!(ruri.is_phone());
        assert_eq!(m.body().len(), 587);
        assert!(m.body().starts_with(b"v=0\r\n"));
        let via = m.top_via().unwrap().unwrap();
        assert_eq!(via.transport(), ViaTransport::Tls);
        assert_eq!(via.host(), Host::Domain("sbc1.adatum.biz"));
        assert_eq!(via.port(), Some(5061));
        assert!(via.params().contains("alias"));
        let from = m.from().unwrap().unwrap();
        assert_eq!(from.tag(), Some("1c1670816541"));
        let contact = m.contact().unwrap().unwrap();
        assert_eq!(
            contact
                .uri()
                .and_then(|u| u.param("transport"))
                .and_then(|p| p.value),
            Some("tls")
        );
        // The checked views are the accessors' views, parsed once.
        let c = m.checked_request().unwrap();
        assert_eq!(Some(Ok(c.from)), m.from());
        assert_eq!(Some(Ok(c.to)), m.to());
        assert_eq!(Some(Ok(c.cseq)), m.cseq());
        assert_eq!(Some(Ok(c.top_via)), m.top_via());
        assert_eq!(c.contact.map(Ok), m.contact());
        assert_eq!(c.call_id.as_str(), m.call_id().unwrap());
        assert_eq!(c.max_forwards, Some(MaxForwards(70)));
        assert!(m.checked_response().is_err());
        let r = complete(OK200).checked_response().unwrap();
        assert_eq!(r.contact, None);
        assert_eq!(r.max_forwards, None);
        assert_eq!(
            r.top_via.host(),
            Host::V4(std::net::Ipv4Addr::new(192, 0, 2, 10))
        );
        let allow: Vec<_> = m.values(HeaderName::Allow).collect();
        assert_eq!(allow.len(), 12);
        assert_eq!(allow.first(), Some(&"REGISTER"));

        let m = complete(OK200);
        assert_eq!(m.status_code(), Some(200));
        assert_eq!(
            m.header(HeaderName::Server),
            Some("Microsoft.PSTNHub.SIPProxy v.2020.7.31.1 i.USWE2.3")
        );
        assert_eq!(m.headers().next().map(|h| h.raw_name), Some("FROM"));
        assert_eq!(m.to().unwrap().unwrap().tag(), None);
        assert_eq!(m.cseq().unwrap().unwrap().method, Method::Options);
    }

    #[test]
    fn every_strict_prefix_is_partial() {
        for f in [INVITE, SP183, OK200] {
            for n in 0..f.len() {
                let got = Message::parse(&f[..n], &Limits::default());
                assert_eq!(got.map(|s| s.is_partial()), Ok(true), "prefix {n}");
                let head = Message::parse_head(&f[..n]);
                assert!(head.is_ok(), "head prefix {n}: {head:?}");
            }
        }
    }

    #[test]
    fn pipelined_messages_split_at_len() {
        let mut buf = Vec::new();
        buf.extend_from_slice(OK200);
        buf.extend_from_slice(INVITE);
        buf.extend_from_slice(SP183);
        buf.extend_from_slice(&INVITE[..100]);
        let mut off = 0;
        let mut kinds = Vec::new();
        loop {
            match Message::parse(&buf[off..], &Limits::default()) {
                Ok(Status::Complete(m)) => {
                    kinds.push(m.status_code().unwrap_or(0));
                    off += m.len();
                }
                Ok(Status::Partial) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(kinds, [200, 0, 183]);
        assert_eq!(off, OK200.len() + INVITE.len() + SP183.len());
    }

    #[test]
    fn limits() {
        let tight = Limits {
            max_header_bytes: 64,
            max_body_bytes: 10,
        };
        // Shorter than the limit and unterminated: still partial.
        assert_eq!(
            Message::parse(&INVITE[..63], &tight).map(|s| s.is_partial()),
            Ok(true)
        );
        assert_eq!(
            Message::parse(&INVITE[..64], &tight).unwrap_err(),
            ParseError::HeaderTooLarge
        );
        assert_eq!(
            Message::parse(INVITE, &tight).unwrap_err(),
            ParseError::HeaderTooLarge
        );
        let big = Limits {
            max_header_bytes: 4096,
            max_body_bytes: 10,
        };
        let e = Message::parse(INVITE, &big).unwrap_err();
        assert_eq!((e, e.status()), (ParseError::BodyTooLarge, 413));
        // Exactly at the limits is fine.
        let exact = Limits {
            max_header_bytes: INVITE.len() - 587,
            max_body_bytes: 587,
        };
        assert!(Message::parse(INVITE, &exact).unwrap().complete().is_some());
        let e = err(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 99999999999999999999999\r\n\r\n");
        assert_eq!(e, ParseError::BodyTooLarge);
    }

    #[test]
    fn too_many_headers() {
        let mut lines: Vec<String> = BASE.iter().map(|s| s.to_string()).collect();
        while lines.len() < MAX_HEADERS - 1 {
            lines.push(format!("X-H{}: v", lines.len()));
        }
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let ok = req("OPTIONS sip:a@b SIP/2.0", &refs, "");
        assert_eq!(complete(&ok).header_count(), MAX_HEADERS);
        lines.push("X-One-Too-Many: v".into());
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(
            err(&req("OPTIONS sip:a@b SIP/2.0", &refs, "")),
            ParseError::TooManyHeaders
        );
    }

    #[test]
    fn framing_errors() {
        let cases: &[(&[u8], ParseError)] = &[
            (
                b"\r\nOPTIONS sip:a SIP/2.0\r\n\r\n",
                ParseError::EmptyStartLine,
            ),
            (
                b"OPTIONS sip:a SIP/2.0\nl: 0\n\n",
                ParseError::BadLineEnding,
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nl: 0\n\r\n",
                ParseError::BadLineEnding,
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nl: 0\rx\r\n\r\n",
                ParseError::BadLineEnding,
            ),
            (b"OPTIONS\r\nl: 0\r\n\r\n", ParseError::BadRequestLine),
            (b"OPTIONS sip:a\r\nl: 0\r\n\r\n", ParseError::BadRequestLine),
            (
                b"OPTIONS sip:a HTTP/1.1\r\nl: 0\r\n\r\n",
                ParseError::BadRequestLine,
            ),
            (
                b" OPTIONS sip:a SIP/2.0\r\nl: 0\r\n\r\n",
                ParseError::BadRequestLine,
            ),
            (
                b"OPTIONS   SIP/2.0\r\nl: 0\r\n\r\n",
                ParseError::BadRequestLine,
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\n folded-start\r\nl: 0\r\n\r\n",
                ParseError::MalformedHeaderLine,
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nno colon\r\nl: 0\r\n\r\n",
                ParseError::MalformedHeaderLine,
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\n: empty name\r\nl: 0\r\n\r\n",
                ParseError::MalformedHeaderLine,
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nBad Name: x\r\nl: 0\r\n\r\n",
                ParseError::MalformedHeaderLine,
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nVia\r\n : x\r\nl: 0\r\n\r\n",
                ParseError::MalformedHeaderLine,
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nX: \xff\r\nl: 0\r\n\r\n",
                ParseError::NotUtf8,
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n",
                ParseError::MissingContentLength,
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nl: -999\r\n\r\n",
                ParseError::InvalidContentLength,
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nl:\r\n\r\n",
                ParseError::InvalidContentLength,
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nl: 1 2\r\n\r\n",
                ParseError::InvalidContentLength,
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nl: 13\r\nContent-Length: 5\r\n\r\n",
                ParseError::ConflictingContentLength,
            ),
            (
                b"OPTIONS sip:a SIP/7.0\r\nl: 0\r\n\r\n",
                ParseError::VersionNotSupported,
            ),
            (
                b"SIP/2.0 4294967301 big\r\nl: 0\r\n\r\n",
                ParseError::BadStatusLine,
            ),
            (
                b"SIP/2.0 20 short\r\nl: 0\r\n\r\n",
                ParseError::BadStatusLine,
            ),
            (b"SIP/2.0 2x0 OK\r\nl: 0\r\n\r\n", ParseError::BadStatusLine),
            (b"SIP/2.0\r\nl: 0\r\n\r\n", ParseError::BadStatusLine),
            (b"SIP/2.x 200 OK\r\nl: 0\r\n\r\n", ParseError::BadStatusLine),
        ];
        for (buf, want) in cases {
            assert_eq!(err(buf), *want, "{:?}", String::from_utf8_lossy(buf));
            assert!(!want.reason().is_empty());
        }
        assert_eq!(ParseError::VersionNotSupported.status(), 505);
        assert_eq!(
            ParseError::MissingContentLength.to_string(),
            "400 Missing Content-Length"
        );
        // Equal duplicates frame fine; check_request still rejects them.
        let m = complete(b"OPTIONS sip:a SIP/2.0\r\nl: 0\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(m.count(HeaderName::ContentLength), 2);
    }

    #[test]
    fn parse_head_recovers_headers_of_rejected_messages() {
        let buf = b"OPTIONS sip:a@b SIP/7.0\r\nVia: SIP/7.0/TLS h;branch=z9hG4bKx\r\nCall-ID: x\r\nl: 0\r\n\r\nrest";
        assert_eq!(err(buf), ParseError::VersionNotSupported);
        let m = Message::parse_head(buf).unwrap().complete().unwrap();
        assert_eq!(m.call_id(), Some("x"));
        assert_eq!(m.len(), buf.len() - 4);
        assert!(m.body().is_empty());
        let buf = b"INVITE sip:a@b SIP/2.0\r\nCall-ID: y\r\n\r\nv=0\r\n";
        assert_eq!(err(buf), ParseError::MissingContentLength);
        let m = Message::parse_head(buf).unwrap().complete().unwrap();
        assert_eq!(m.call_id(), Some("y"));
        assert_eq!(
            Message::parse_head(b"INVITE sip:a SIP/2.0\r\nX: y\r\n").map(|s| s.is_partial()),
            Ok(true)
        );
    }

    #[test]
    fn header_lines_compact_case_and_folding() {
        let buf = b"OPTIONS sip:a@b SIP/2.0\r\n\
v: SIP/2.0/UDP a.example;branch=z9hG4bK1 ,\r\n SIP/2.0/TCP b.example ;branch=z9hG4bK2\r\n\
VIA: SIP/2.0/TLS c.example\r\n\
f: \"A, \\\"quoted\\\" B\" <sip:a@b>;tag=1\r\n\
t:sip:c@d\r\n\
i: call\r\n\
CSEQ:\t7\r\n\tOPTIONS\r\n\
m: <sip:x@y>, \"Comma, Name\" <sip:z@w;lr>;q=0.5\r\n\
k: timer, 100rel\r\n\
k:\r\n\
Subject:   \r\n\
X-Custom :  spaced value  \r\n\
ms-diagnostics: 1;reason=\"x\"\r\n\
l: 0\r\n\r\n";
        let m = complete(buf);
        assert_eq!(m.check_request(), Ok(()));
        let vias: Vec<_> = m.vias().map(|v| v.unwrap().host()).collect();
        assert_eq!(
            vias,
            [
                Host::Domain("a.example"),
                Host::Domain("b.example"),
                Host::Domain("c.example")
            ]
        );
        let from = m.from().unwrap().unwrap();
        assert_eq!(from.display_name(), Some(r#"A, \"quoted\" B"#));
        assert_eq!(m.to().unwrap().unwrap().uri().user(), Some("c"));
        assert_eq!(m.cseq().unwrap().unwrap().seq, 7);
        assert_eq!(m.header(HeaderName::CSeq), Some("7\r\n\tOPTIONS"));
        let contacts: Vec<_> = m.contacts().map(|c| c.unwrap()).collect();
        assert_eq!(contacts.len(), 2);
        assert_eq!(
            contacts[1].addr().unwrap().display_name(),
            Some("Comma, Name")
        );
        assert_eq!(
            contacts[1].addr().unwrap().param("q").and_then(|p| p.value),
            Some("0.5")
        );
        assert_eq!(
            m.values(HeaderName::Supported).collect::<Vec<_>>(),
            ["timer", "100rel"]
        );
        assert_eq!(m.header(HeaderName::Subject), Some(""));
        assert_eq!(m.header_by_raw_name("x-custom"), Some("spaced value"));
        assert_eq!(
            m.header_by_raw_name("MS-Diagnostics"),
            Some("1;reason=\"x\"")
        );
        let raw: Vec<_> = m.headers().map(|h| h.raw_name).collect();
        assert_eq!(raw.first(), Some(&"v"));
        assert!(raw.contains(&"X-Custom"));
    }

    #[test]
    fn check_request_reasons() {
        let with = |extra: &[&str], drop: &[&str], start: &str| {
            let mut hs: Vec<&str> = BASE
                .iter()
                .copied()
                .filter(|h| !drop.iter().any(|d| h.starts_with(d)))
                .collect();
            hs.extend_from_slice(extra);
            req(start, &hs, "")
        };
        let opt = "OPTIONS sip:+2@sip.pstnhub.microsoft.com SIP/2.0";
        /// (headers added, header prefixes dropped, start line, expected outcome)
        type Case<'a> = (
            &'a [&'a str],
            &'a [&'a str],
            &'a str,
            Result<(), (u16, &'a str)>,
        );
        let cases: &[Case<'_>] = &[
            (&[], &[], opt, Ok(())),
            (&[], &["Max-Forwards"], opt, Ok(())),
            (&[], &["To"], opt, Err((400, "Missing To header"))),
            (&[], &["From"], opt, Err((400, "Missing From header"))),
            (&[], &["Call-ID"], opt, Err((400, "Missing Call-ID header"))),
            (&[], &["CSeq"], opt, Err((400, "Missing CSeq header"))),
            (&[], &["Via"], opt, Err((400, "Missing Via header"))),
            (
                &["t: <sip:x@y>"],
                &[],
                opt,
                Err((400, "Multiple To headers")),
            ),
            (
                &["i: other"],
                &[],
                opt,
                Err((400, "Multiple Call-ID headers")),
            ),
            (
                &["Max-Forwards: 70"],
                &[],
                opt,
                Err((400, "Multiple Max-Forwards headers")),
            ),
            (
                &["l: 0"],
                &[],
                opt,
                Err((400, "Multiple Content-Length headers")),
            ),
            (
                &["To: <sip:x@y>, <sip:z@w>"],
                &["To"],
                opt,
                Err((400, "Malformed To header")),
            ),
            (
                &["From: Bell, A <sip:a@b>"],
                &["From"],
                opt,
                Err((400, "Malformed From header")),
            ),
            (
                &["Call-ID: a b"],
                &["Call-ID"],
                opt,
                Err((400, "Malformed Call-ID header")),
            ),
            (
                &["CSeq: 1 INVITE"],
                &["CSeq"],
                opt,
                Err((400, "CSeq method does not match request method")),
            ),
            (
                &["CSeq: 2147483648 OPTIONS"],
                &["CSeq"],
                opt,
                Err((400, "CSeq number out of range")),
            ),
            (&["CSeq: 2147483647 OPTIONS"], &["CSeq"], opt, Ok(())),
            (
                &["CSeq: x OPTIONS"],
                &["CSeq"],
                opt,
                Err((400, "Malformed CSeq header")),
            ),
            (
                &["Via: SIP/2.0/UDP h;;"],
                &[],
                opt,
                Err((400, "Malformed Via header")),
            ),
            (
                &["Via: SIP/2.0/UDP h,"],
                &[],
                opt,
                Err((400, "Malformed Via header")),
            ),
            (
                &["Max-Forwards: 256"],
                &["Max-Forwards"],
                opt,
                Err((400, "Max-Forwards out of range")),
            ),
            (
                &["Max-Forwards: x"],
                &["Max-Forwards"],
                opt,
                Err((400, "Malformed Max-Forwards header")),
            ),
            (&["Max-Forwards: 0"], &["Max-Forwards"], opt, Ok(())),
            (
                &["Contact: <sip:a@b>;;"],
                &[],
                opt,
                Err((400, "Malformed Contact header")),
            ),
            (
                &["Contact: *, <sip:a@b>"],
                &[],
                opt,
                Err((400, "Contact '*' must be the only Contact")),
            ),
            (&["Contact: *"], &[], opt, Ok(())),
            (
                &["Record-Route: sip:a@b"],
                &[],
                opt,
                Err((400, "Malformed Record-Route header")),
            ),
            (
                &["Route: <sip:a@b;lr>, x"],
                &[],
                opt,
                Err((400, "Malformed Route header")),
            ),
            (
                &["Date: Fri, 01 Jan 2010 16:00:00 EST"],
                &[],
                opt,
                Err((400, "Malformed Date header")),
            ),
            (&["Date: Sat, 13 Nov 2010 23:29:00 GMT"], &[], opt, Ok(())),
            (
                &[],
                &[],
                "OPTIONS  sip:a@b SIP/2.0",
                Err((400, "Extra whitespace in Request-Line")),
            ),
            (
                &[],
                &[],
                "OPTIONS sip:a@b SIP/2.0 ",
                Err((400, "Extra whitespace in Request-Line")),
            ),
            (
                &[],
                &[],
                "OPTIONS sip:a@b; lr SIP/2.0",
                Err((400, "Whitespace in Request-URI")),
            ),
            (
                &[],
                &[],
                "OPTIONS <sip:a@b> SIP/2.0",
                Err((400, "Malformed Request-URI")),
            ),
            (
                &[],
                &[],
                "OPTIONS sip:a@b?Route=x SIP/2.0",
                Err((400, "Request-URI must not contain headers")),
            ),
            (
                &[],
                &[],
                "OPT(IONS sip:a@b SIP/2.0",
                Err((400, "Malformed method in Request-Line")),
            ),
        ];
        for (extra, drop, start, want) in cases {
            let buf = with(extra, drop, start);
            let m = complete(&buf);
            let got = m.check_request().map_err(|i| (i.status, i.reason));
            assert_eq!(got, *want, "{extra:?} -{drop:?} {start}");
        }
        // 505 is reported for head-only messages (parse rejects the version itself).
        let buf = with(&[], &[], "OPTIONS sip:a@b SIP/3.0");
        let m = Message::parse_head(&buf).unwrap().complete().unwrap();
        assert_eq!(m.check_request().map_err(|i| i.status), Err(505));
        let m = complete(OK200);
        assert_eq!(
            m.check_request().map_err(|i| i.reason),
            Err("Not a request")
        );
        let m = complete(INVITE);
        assert_eq!(
            m.check_response().map_err(|i| i.reason),
            Err("Not a response")
        );
    }

    #[test]
    fn check_response_reasons() {
        let resp = |start: &str| req(start, &BASE, "");
        for (start, want) in [
            ("SIP/2.0 200 OK", Ok(())),
            ("SIP/2.0 100 ", Ok(())),
            ("SIP/2.0 100", Ok(())),
            ("SIP/2.0 699 Whatever", Ok(())),
            ("SIP/2.0 099 Low", Err("Status code out of range")),
            ("SIP/2.0 700 High", Err("Status code out of range")),
        ] {
            let buf = resp(start);
            let m = complete(&buf);
            assert_eq!(m.check_response().map_err(|i| i.reason), want, "{start}");
        }
    }

    #[test]
    fn stream_content_length_mismatch_is_caught_for_head_only_framing_never() {
        // With parse_head there is no body to compare against; the check is skipped.
        let buf = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nl: 10\r\n\r\n";
        let m = Message::parse_head(buf).unwrap().complete().unwrap();
        assert_eq!(m.check_request(), Ok(()));
    }

    #[test]
    fn debug_lists_only_used_headers() {
        let m = complete(OK200);
        let d = format!("{m:?}");
        assert!(d.contains("SX7B39veap93c"));
        assert_eq!(d.matches("raw_name").count(), m.header_count());
    }
}
