//! What becomes of bytes [`Message::parse`] rejected. [`recover`] tells the transport
//! where the faulty message ends ([`delimit`]: a lenient scan for the end of the header
//! block and a single Content-Length), whether it only needed reading as Latin-1, and
//! whether the stream can go on. [`salvage`] makes the minimal request a rejection can
//! be built from (DR-ERR-3).
//!
//! Error paths only: nothing here runs for a message that parses, so the parser's
//! zero-copy, allocation-free path is untouched.

use std::fmt;

use bytes::Bytes;

use super::{HeaderName, Limits, Message, ParseError, Status, StoreError, Stored, UNLIMITED};

/// What the transport does with the front of its buffer after [`Message::parse`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// The faulty message has not fully arrived: read more (the message timeout bounds
    /// the wait).
    Partial,
    /// The header block is not UTF-8 and was read as Latin-1: `message` is that copy, a
    /// message that parses; the original took `len` bytes of the buffer.
    Latin1 {
        /// The copy, header block in UTF-8, body untouched.
        message: Stored,
        /// Bytes of the buffer the original occupies (original header block plus
        /// Content-Length); at most the buffer's length.
        len: usize,
    },
    /// A message delimited by its Content-Length but faulty: answer it (see [`salvage`]),
    /// skip its `len` bytes (at most the buffer's length) and go on.
    Malformed {
        /// Bytes of the buffer the message occupies.
        len: usize,
        /// The fault the answer names.
        error: ParseError,
    },
    /// Where the next message starts cannot be known: answer if possible, then close
    /// (DR-TLS-2).
    Unframeable(ParseError),
}

/// Decides what follows `error`, which [`Message::parse`] returned for `buf`.
///
/// A framing error ([`ParseError::is_framing`]) is [`Recovery::Unframeable`]. Otherwise
/// the message is delimited leniently ([`delimit`]); one that is not UTF-8 is read as
/// Latin-1 (each byte that is not part of a valid UTF-8 sequence becomes the Latin-1
/// character of its value, 0xFC -> "ü"; the body is left untouched) and is
/// [`Recovery::Latin1`] when that copy parses, else [`Recovery::Malformed`] with the
/// copy's own fault.
pub fn recover(buf: &[u8], error: ParseError, limits: &Limits) -> Recovery {
    if error.is_framing() {
        return Recovery::Unframeable(error);
    }
    let (head, len) = match frame(buf, limits) {
        Ok(Status::Complete(at)) => at,
        Ok(Status::Partial) => return Recovery::Partial,
        Err(e) => return Recovery::Unframeable(e),
    };
    let (Some(block), Some(body)) = (buf.get(..head), buf.get(head..len)) else {
        return Recovery::Partial;
    };
    if error != ParseError::NotUtf8 {
        return Recovery::Malformed { len, error };
    }
    let mut copy = Vec::with_capacity(len + len / 8);
    push_latin1(&mut copy, block);
    copy.extend_from_slice(body);
    match Stored::new(Bytes::from(copy)) {
        Ok(message) => Recovery::Latin1 { message, len },
        Err(StoreError::Parse(error)) => Recovery::Malformed { len, error },
        // The copy's header block ends where the original's does and has the same
        // Content-Length, so it frames exactly; should it not, the original fault stands.
        Err(_) => Recovery::Malformed { len, error },
    }
}

/// Where the message at the front of `buf` ends, read leniently, for a message the parser
/// rejected: the first CRLFCRLF within [`Limits::max_header_bytes`] ends the header
/// block, and exactly one well-formed Content-Length value (any case, compact `l`, equal
/// repeats allowed) gives the body.
///
/// `Ok(Partial)` until the whole message has arrived. Every error is a framing error: an
/// empty line that is not CRLF CRLF (a bare LF ends a line before it) is
/// [`ParseError::BadLineEnding`], since the end of the block is then ambiguous.
pub fn delimit(buf: &[u8], limits: &Limits) -> Result<Status<usize>, ParseError> {
    Ok(match frame(buf, limits)? {
        Status::Complete((_, len)) => Status::Complete(len),
        Status::Partial => Status::Partial,
    })
}

/// [`delimit`], also returning the header block's length: `(head, total)`.
fn frame(buf: &[u8], limits: &Limits) -> Result<Status<(usize, usize)>, ParseError> {
    let Some(head) = block_end(buf, limits.max_header_bytes)? else {
        return Ok(Status::Partial);
    };
    let cl = content_length(buf.get(..head).unwrap_or_default())?;
    let cl = usize::try_from(cl).unwrap_or(usize::MAX);
    if cl > limits.max_body_bytes {
        return Err(ParseError::BodyTooLarge);
    }
    let total = head.checked_add(cl).ok_or(ParseError::BodyTooLarge)?;
    Ok(if buf.len() >= total {
        Status::Complete((head, total))
    } else {
        Status::Partial
    })
}

/// Just past the first empty line, when it is CRLF CRLF and ends within `limit`.
fn block_end(buf: &[u8], limit: usize) -> Result<Option<usize>, ParseError> {
    let region = buf.get(..limit.min(buf.len())).unwrap_or(buf);
    for lf in memchr::memchr_iter(b'\n', region) {
        match (region.get(lf + 1), region.get(lf + 2)) {
            (Some(b'\n'), _) => return Err(ParseError::BadLineEnding),
            (Some(b'\r'), Some(b'\n')) => {
                let crlf = lf > 0 && region.get(lf - 1) == Some(&b'\r');
                return match crlf {
                    true => Ok(Some(lf + 3)),
                    false => Err(ParseError::BadLineEnding),
                };
            }
            // The next line has not arrived (or lies past the limit).
            (None, _) | (Some(b'\r'), None) => break,
            _ => {}
        }
    }
    if buf.len() >= limit {
        Err(ParseError::HeaderTooLarge)
    } else {
        Ok(None)
    }
}

/// The one Content-Length value of a header block (continuation lines included).
fn content_length(block: &[u8]) -> Result<u64, ParseError> {
    let mut value: Option<u64> = None;
    let mut reading: Option<Digits> = None;
    let mut settle = |d: Digits| -> Result<(), ParseError> {
        let n = d.finish()?;
        match value {
            Some(v) if v != n => Err(ParseError::ConflictingContentLength),
            _ => {
                value = Some(n);
                Ok(())
            }
        }
    };
    for line in Lines::new(block, 0).skip(1) {
        if let (Some(d), Some(b' ' | b'\t')) = (reading.as_mut(), line.first()) {
            d.feed(line)?;
            continue;
        }
        if let Some(d) = reading.take() {
            settle(d)?;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = trim_end(line.get(..colon).unwrap_or_default());
        if HeaderName::from_bytes(name) == HeaderName::ContentLength {
            let mut d = Digits::Before;
            d.feed(line.get(colon + 1..).unwrap_or_default())?;
            reading = Some(d);
        }
    }
    if let Some(d) = reading {
        settle(d)?;
    }
    value.ok_or(ParseError::MissingContentLength)
}

/// `*LWS 1*DIGIT *LWS` over the pieces of a (possibly folded) Content-Length value.
#[derive(Debug, Clone, Copy)]
enum Digits {
    Before,
    In(u64),
    After(u64),
}

impl Digits {
    fn feed(&mut self, piece: &[u8]) -> Result<(), ParseError> {
        for &c in piece {
            *self = match (*self, c) {
                (Digits::Before, b' ' | b'\t') => Digits::Before,
                (Digits::In(n) | Digits::After(n), b' ' | b'\t') => Digits::After(n),
                (Digits::Before, b'0'..=b'9') => Digits::In(u64::from(c - b'0')),
                // All digits, so an overflow is simply a body that is too large.
                (Digits::In(n), b'0'..=b'9') => {
                    Digits::In(n.saturating_mul(10).saturating_add(u64::from(c - b'0')))
                }
                _ => return Err(ParseError::InvalidContentLength),
            };
        }
        Ok(())
    }

    fn finish(self) -> Result<u64, ParseError> {
        match self {
            Digits::In(n) | Digits::After(n) => Ok(n),
            Digits::Before => Err(ParseError::InvalidContentLength),
        }
    }
}

/// Appends `bytes`, taking each byte that is not part of a valid UTF-8 sequence as the
/// Latin-1 character of its value (0xFC -> "ü", two bytes in UTF-8); valid UTF-8 is copied
/// as it is.
pub fn push_latin1(out: &mut Vec<u8>, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        out.extend_from_slice(chunk.valid().as_bytes());
        for &b in chunk.invalid() {
            let mut utf8 = [0u8; 2];
            out.extend_from_slice(char::from(b).encode_utf8(&mut utf8).as_bytes());
        }
    }
}

// ------------------------------------------------------------------------ salvage

/// Why a faulty message gets no answer (it is logged and dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswerable {
    /// A response: responses are never answered (RFC 3261 §8.1.3.1 discards them).
    Response,
    /// An ACK: it gets no response (RFC 3261 §17.2.1, §17.2.3).
    Ack,
    /// This header is missing, or every line of it is broken.
    Missing(HeaderName),
    /// The salvaged request fails the RFC 3261 checks: why (e.g. `Malformed From
    /// header`).
    Invalid(&'static str),
}

impl fmt::Display for Unanswerable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unanswerable::Response => f.write_str("a response is never answered"),
            Unanswerable::Ack => f.write_str("an ACK is never answered"),
            Unanswerable::Missing(h) => write!(f, "no usable {} header", h.as_str()),
            Unanswerable::Invalid(why) => f.write_str(why),
        }
    }
}

/// A faulty message [`salvage`] cannot answer: why, and its Call-ID for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unanswered<'a> {
    /// Why no answer is built.
    pub why: Unanswerable,
    /// The Call-ID value, when a usable line had one (raw bytes: maybe not UTF-8).
    pub call_id: Option<&'a [u8]>,
}

/// The minimal request a rejection of a faulty message is built from (DR-ERR-3).
///
/// From the header block of `raw` (up to the first empty line, LF or CRLF line endings,
/// only lines that end), it takes every Via (`v`) and the first From (`f`), To (`t`),
/// Call-ID (`i`) and CSeq, names in any case, unfolding continuation lines and skipping
/// broken lines (no colon, a name that is not a token, a bare CR, a continuation with no
/// header). The original start line is kept when the result then passes
/// [`Message::check_request`]; otherwise it is made from the CSeq method. The request ends
/// with `Content-Length: 0` and is returned only when it parses and passes
/// [`Message::check_request`]. Values that are not UTF-8 are read as Latin-1
/// ([`push_latin1`]).
///
/// A response and an ACK are never answered. One `Vec` is allocated, for the request.
pub fn salvage(raw: &[u8]) -> Result<Stored, Unanswered<'_>> {
    let Some(start) = Lines::new(raw, 0).next() else {
        return Err(Unanswered {
            why: Unanswerable::Missing(HeaderName::Via),
            call_id: None,
        });
    };
    let first_header = memchr::memchr(b'\n', raw).map_or(raw.len(), |lf| lf + 1);
    let fields = || Fields::new(raw, first_header).filter(|f| !f.broken);
    let pick = |name: HeaderName| fields().find(|f| f.name == name);
    let (from, to, call_id, cseq) = (
        pick(HeaderName::From),
        pick(HeaderName::To),
        pick(HeaderName::CallId),
        pick(HeaderName::CSeq),
    );
    let call_id_value = call_id.map(|f| trim(f.first_value()));
    let fail = |why| {
        Err(Unanswered {
            why,
            call_id: call_id_value,
        })
    };
    if start.len() >= 4
        && start
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        return fail(Unanswerable::Response);
    }
    let start_method = start.split(|&c| c == b' ').next().unwrap_or_default();
    let cseq_method = cseq.and_then(|f| {
        f.first_value()
            .split(|&c| c == b' ' || c == b'\t')
            .filter(|w| !w.is_empty())
            .nth(1)
    });
    if start_method == b"ACK" || cseq_method == Some(b"ACK".as_slice()) {
        return fail(Unanswerable::Ack);
    }
    let required = [
        (HeaderName::Via, pick(HeaderName::Via)),
        (HeaderName::From, from),
        (HeaderName::To, to),
        (HeaderName::CallId, call_id),
        (HeaderName::CSeq, cseq),
    ];
    if let Some((name, _)) = required.iter().find(|(_, f)| f.is_none()) {
        return fail(Unanswerable::Missing(*name));
    }
    let singles = [
        ("From", from),
        ("To", to),
        ("Call-ID", call_id),
        ("CSeq", cseq),
    ];
    let mut out = Vec::with_capacity(raw.len().min(4096) + 64);
    let build = |out: &mut Vec<u8>, start_line: &[&[u8]]| {
        out.clear();
        for piece in start_line {
            push_latin1(out, piece);
        }
        out.extend_from_slice(b"\r\n");
        for via in fields().filter(|f| f.name == HeaderName::Via) {
            via.write(out, "Via");
        }
        for (name, field) in singles.iter() {
            if let Some(field) = field {
                field.write(out, name);
            }
        }
        out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    };
    build(&mut out, &[start]);
    if check(&out).is_err() {
        let method = cseq_method.unwrap_or_default();
        build(&mut out, &[method, b" sip:invalid SIP/2.0"]);
        if let Err(why) = check(&out) {
            return fail(Unanswerable::Invalid(why));
        }
    }
    Stored::new(Bytes::from(out)).or_else(|_| fail(Unanswerable::Invalid("Not a request")))
}

/// The RFC 3261 checks of a salvaged request: why it fails them.
fn check(request: &[u8]) -> Result<(), &'static str> {
    match Message::parse(request, &UNLIMITED) {
        Ok(Status::Complete(m)) if m.len() == request.len() => {
            m.check_request().map_err(|i| i.reason)
        }
        _ => Err("Not a request"),
    }
}

/// The lines of a header block from `pos`: each without its LF and one CR before it,
/// ending before the first empty line or the last line without an LF.
struct Lines<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    fn new(raw: &'a [u8], pos: usize) -> Lines<'a> {
        Lines { raw, pos }
    }

    /// The line at `pos` and where the next one starts.
    fn at(raw: &'a [u8], pos: usize) -> Option<(&'a [u8], usize)> {
        let rest = raw.get(pos..)?;
        let lf = memchr::memchr(b'\n', rest)?;
        let line = rest.get(..lf)?;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        Some((line, pos + lf + 1))
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (line, next) = Lines::at(self.raw, self.pos)?;
        // The start line may be empty (a fault of its own); any later empty line ends
        // the block.
        if line.is_empty() && self.pos > 0 {
            self.pos = self.raw.len();
            return None;
        }
        self.pos = next;
        Some(line)
    }
}

/// One header: its first line and continuation lines, as received.
#[derive(Debug, Clone, Copy)]
struct Field<'a> {
    name: HeaderName,
    /// The lines, each with its line ending.
    span: &'a [u8],
    broken: bool,
}

impl<'a> Field<'a> {
    /// The first line's value: what follows the colon.
    fn first_value(&self) -> &'a [u8] {
        let first = Lines::new(self.span, 0).next().unwrap_or_default();
        let after = memchr::memchr(b':', first).map_or(first.len(), |c| c + 1);
        first.get(after..).unwrap_or_default()
    }

    /// Writes `name: value CRLF`, the value unfolded: its pieces trimmed and joined by one
    /// SP.
    fn write(&self, out: &mut Vec<u8>, name: &str) {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        let pieces = std::iter::once(self.first_value()).chain(Lines::new(self.span, 0).skip(1));
        let mut first = true;
        for piece in pieces.map(trim).filter(|p| !p.is_empty()) {
            if !first {
                out.push(b' ');
            }
            first = false;
            push_latin1(out, piece);
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// The headers of a block from `pos` (just after the start line).
struct Fields<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(raw: &'a [u8], pos: usize) -> Fields<'a> {
        Fields { raw, pos }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        let (first, mut end) = Lines::at(self.raw, self.pos)?;
        if first.is_empty() {
            self.pos = self.raw.len();
            return None;
        }
        let start = self.pos;
        let continues = |l: &[u8]| matches!(l.first(), Some(b' ' | b'\t'));
        let mut broken = continues(first) || first.contains(&b'\r');
        while let Some((line, next)) = Lines::at(self.raw, end) {
            if !continues(line) {
                break;
            }
            broken |= line.contains(&b'\r');
            end = next;
        }
        self.pos = end;
        let name = memchr::memchr(b':', first)
            .and_then(|colon| first.get(..colon))
            .map(trim_end)
            .filter(|n| !n.is_empty() && n.iter().all(|&c| super::lex::is_token_char(c)));
        Some(Field {
            name: name.map_or(HeaderName::Other, HeaderName::from_bytes),
            span: self.raw.get(start..end).unwrap_or_default(),
            broken: broken || name.is_none(),
        })
    }
}

fn trim_end(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(0, |i| i + 1);
    b.get(..n).unwrap_or_default()
}

fn trim(b: &[u8]) -> &[u8] {
    let b = trim_end(b);
    let n = b
        .iter()
        .position(|&c| c != b' ' && c != b'\t')
        .unwrap_or(b.len());
    b.get(n..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        max_header_bytes: 256,
        max_body_bytes: 64,
    };

    const OPTIONS: &[u8] = b"OPTIONS sip:a.b SIP/2.0\r\nVia: SIP/2.0/TLS h.b;branch=z9hG4bK1\r\nFrom: <sip:a.b>;tag=1\r\nTo: <sip:a.b>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 2\r\n\r\nhi";

    fn parse_error(buf: &[u8]) -> ParseError {
        match Message::parse(buf, &L) {
            Err(e) => e,
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn framing_and_content_errors_are_told_apart() {
        use ParseError::*;
        let framing = [
            HeaderTooLarge,
            BodyTooLarge,
            MissingContentLength,
            InvalidContentLength,
            ConflictingContentLength,
        ];
        let content = [
            EmptyStartLine,
            BadRequestLine,
            BadStatusLine,
            VersionNotSupported,
            BadLineEnding,
            MalformedHeaderLine,
            TooManyHeaders,
            NotUtf8,
            Truncated,
        ];
        assert!(framing.iter().all(ParseError::is_framing));
        assert!(!content.iter().any(ParseError::is_framing));
        assert_eq!(Truncated.to_string(), "400 Message Truncated");
    }

    #[test]
    fn delimit_reads_the_block_end_and_one_content_length_leniently() {
        use ParseError::*;
        type Case<'a> = (&'a [u8], Result<Status<usize>, ParseError>);
        let cases: &[Case<'_>] = &[
            (b"X\r\nl: 2\r\n\r\nhi", Ok(Status::Complete(13))),
            (b"X\r\nl: 2\r\n\r\nhiNEXT", Ok(Status::Complete(13))),
            (b"X\r\nl: 2\r\n\r\nh", Ok(Status::Partial)),
            (b"X\r\nl: 2\r\n\r", Ok(Status::Partial)),
            (b"X\r\nl: 2\r\n", Ok(Status::Partial)),
            (b"X\r\nl: 2\r", Ok(Status::Partial)),
            // Any case, spaces before the colon, equal repeats, a folded value.
            (b"X\r\nCONTENT-length : 0\r\n\r\n", Ok(Status::Complete(25))),
            (
                b"X\r\nl: 1\r\nContent-Length: 1\r\n\r\nz",
                Ok(Status::Complete(31)),
            ),
            (
                b"X\r\nContent-Length:\r\n 1\r\n\r\nz",
                Ok(Status::Complete(27)),
            ),
            // Broken lines around it do not matter.
            (
                b"X\r\nno colon\r\nBad Name: x\r\nl: 0\r\n\r\n",
                Ok(Status::Complete(34)),
            ),
            (b"X\r\nY: a\nl: 0\r\n\r\n", Ok(Status::Complete(16))),
            // Framing faults.
            (b"X\r\nY: a\r\n\r\n", Err(MissingContentLength)),
            (b"X\r\nContent Length: 1\r\n\r\n", Err(MissingContentLength)),
            (b"X\r\nl: x\r\n\r\n", Err(InvalidContentLength)),
            (b"X\r\nl: 1 2\r\n\r\n", Err(InvalidContentLength)),
            (b"X\r\nl:\r\n\r\n", Err(InvalidContentLength)),
            (b"X\r\nl: -1\r\n\r\n", Err(InvalidContentLength)),
            (b"X\r\nl: 1\r\nl: 2\r\n\r\n", Err(ConflictingContentLength)),
            (b"X\r\nl: 65\r\n\r\n", Err(BodyTooLarge)),
            (
                b"X\r\nl: 99999999999999999999999\r\n\r\n",
                Err(BodyTooLarge),
            ),
            (b"X\nl: 0\n\n", Err(BadLineEnding)),
            (b"X\r\nl: 0\n\r\n", Err(BadLineEnding)),
        ];
        for (buf, want) in cases {
            assert_eq!(
                delimit(buf, &L),
                *want,
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
        // The end of the block must lie within the limit.
        let long = [b"X\r\nY: ".as_slice(), &[b'a'; 300], b"\r\nl: 0\r\n\r\n"].concat();
        assert_eq!(delimit(&long, &L), Err(HeaderTooLarge));
        assert_eq!(delimit(&long[..200], &L), Ok(Status::Partial));
        let exact = [b"X\r\nY: ".as_slice(), &[b'a'; 240], b"\r\nl: 0\r\n\r\n"].concat();
        assert_eq!(exact.len(), 256);
        assert_eq!(delimit(&exact, &L), Ok(Status::Complete(256)));
        assert_eq!(
            delimit(&[&exact[..], b"x"].concat(), &L),
            Ok(Status::Complete(256))
        );
    }

    #[test]
    fn delimit_agrees_with_the_parser_on_messages_it_frames() {
        let m = Message::parse(OPTIONS, &L).unwrap().complete().unwrap();
        assert_eq!(delimit(OPTIONS, &L), Ok(Status::Complete(m.len())));
        for n in 0..OPTIONS.len() {
            assert_eq!(
                delimit(&OPTIONS[..n], &L),
                Ok(Status::Partial),
                "prefix {n}"
            );
        }
    }

    /// OPTIONS with `from` as its From value.
    fn with_from(from: &[u8]) -> Vec<u8> {
        let s = String::from_utf8_lossy(OPTIONS).replace("<sip:a.b>;tag=1", "FROM");
        let (a, b) = s.split_once("FROM").unwrap();
        [a.as_bytes(), from, b.as_bytes()].concat()
    }

    #[test]
    fn latin1_header_block_is_read_through_a_utf8_copy_framed_on_the_original() {
        let raw = with_from(b"\"M\xfcller\" <sip:+4930123@sbc.example>;tag=1");
        let next = [raw.as_slice(), OPTIONS].concat();
        assert_eq!(parse_error(&next), ParseError::NotUtf8);
        let Recovery::Latin1 { message, len } = recover(&next, ParseError::NotUtf8, &L) else {
            panic!("{:?}", recover(&next, ParseError::NotUtf8, &L));
        };
        // The frame is the original's: the next message starts right after it.
        assert_eq!(len, raw.len());
        assert_eq!(message.len(), raw.len() + 1);
        let m = message.message();
        assert_eq!(m.check_request(), Ok(()));
        let from = m.from().unwrap().unwrap();
        assert_eq!(from.display_name(), Some("Müller"));
        assert_eq!(m.body(), b"hi");
        // Every strict prefix is still partial.
        for n in 0..raw.len() {
            let e = parse_error_or_partial(&raw[..n]);
            if let Some(e) = e {
                assert_eq!(recover(&raw[..n], e, &L), Recovery::Partial, "prefix {n}");
            }
        }
    }

    fn parse_error_or_partial(buf: &[u8]) -> Option<ParseError> {
        match Message::parse(buf, &L) {
            Ok(Status::Partial) => None,
            Err(e) => Some(e),
            Ok(Status::Complete(m)) => panic!("complete: {m:?}"),
        }
    }

    #[test]
    fn latin1_transcoding_table() {
        let cases: &[(&[u8], &str)] = &[
            (b"plain", "plain"),
            (b"M\xfcller", "Müller"),
            (b"\xe9t\xe9", "été"),
            // Valid UTF-8 stays as it is next to Latin-1 bytes.
            ("Müller \u{20ac}".as_bytes(), "Müller €"),
            (b"\xc3\xbc\xfc", "üü"),
            // A truncated UTF-8 sequence is bytes, each its own character.
            (b"\xe2\x82", "â\u{82}"),
            (b"\xff\x00", "ÿ\u{0}"),
        ];
        for (raw, want) in cases {
            let mut out = Vec::new();
            push_latin1(&mut out, raw);
            assert_eq!(std::str::from_utf8(&out), Ok(*want), "{raw:?}");
        }
    }

    #[test]
    fn recover_table() {
        use ParseError::*;
        let broken_line = b"OPTIONS sip:a.b SIP/2.0\r\nVia: SIP/2.0/TLS h.b;branch=z9hG4bK1\r\nno colon here\r\nl: 0\r\n\r\nNEXT";
        let latin1_and_broken =
            b"OPTIONS sip:a.b SIP/2.0\r\nX: \xfc\r\nno colon\r\nl: 1\r\n\r\nzNEXT";
        let cases: &[(&[u8], Recovery)] = &[
            (
                broken_line,
                Recovery::Malformed {
                    len: broken_line.len() - 4,
                    error: MalformedHeaderLine,
                },
            ),
            (
                latin1_and_broken,
                Recovery::Malformed {
                    len: latin1_and_broken.len() - 4,
                    error: MalformedHeaderLine,
                },
            ),
            (b"OPTIONS\r\nl: 0\r\n", Recovery::Partial),
            (b"OPTIONS\r\n", Recovery::Partial),
            (
                b"OPTIONS\r\nVia: x\r\n\r\n",
                Recovery::Unframeable(MissingContentLength),
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nl: 1\r\nl: 2\r\n\r\n",
                Recovery::Unframeable(ConflictingContentLength),
            ),
            (
                b"OPTIONS sip:a SIP/2.0\nl: 0\n\n",
                Recovery::Unframeable(BadLineEnding),
            ),
            (
                b"\x16\x03\x01garbage\x00\xff\r\n\r\n",
                Recovery::Unframeable(MissingContentLength),
            ),
            (
                b"OPTIONS sip:a SIP/7.0\r\nl: 0\r\n\r\n",
                Recovery::Malformed {
                    len: 31,
                    error: VersionNotSupported,
                },
            ),
        ];
        for (buf, want) in cases {
            let e = parse_error(buf);
            assert_eq!(
                recover(buf, e, &L),
                *want,
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    /// The salvaged request's header lines, for comparison.
    fn salvaged(raw: &[u8]) -> Result<String, (Unanswerable, Option<String>)> {
        match salvage(raw) {
            Ok(s) => Ok(String::from_utf8(s.bytes().to_vec()).unwrap()),
            Err(u) => Err((
                u.why,
                u.call_id.map(|c| String::from_utf8_lossy(c).into_owned()),
            )),
        }
    }

    #[test]
    fn salvage_builds_a_clean_request_from_the_mandatory_headers() {
        let clean = "OPTIONS sip:a.b SIP/2.0\r\nVia: SIP/2.0/TLS h.b;branch=z9hG4bK1\r\nFrom: <sip:a.b>;tag=1\r\nTo: <sip:a.b>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        let synthesised = clean.replace("OPTIONS sip:a.b SIP/2.0", "OPTIONS sip:invalid SIP/2.0");
        /// (the message, the salvaged request or why none, and the Call-ID found)
        type Case<'a> = (&'a [u8], Result<&'a str, (Unanswerable, Option<&'a str>)>);
        let cases: &[Case<'_>] = &[
            // Compact names, any case, broken lines skipped, body ignored.
            (
                b"OPTIONS sip:a.b SIP/2.0\r\nno colon\r\nv: SIP/2.0/TLS h.b;branch=z9hG4bK1\r\nX Y: z\r\nf: <sip:a.b>;tag=1\r\nTO: <sip:a.b>\r\ni: c1\r\ncseq: 1 OPTIONS\r\nl: 5\r\n\r\nhello",
                Ok(clean),
            ),
            // Folded values are unfolded; a bare-LF line ending is read as one.
            (
                b"OPTIONS sip:a.b SIP/2.0\r\nVia: SIP/2.0/TLS h.b\r\n ;branch=z9hG4bK1\nFrom:\r\n\t<sip:a.b>;tag=1\r\nTo: <sip:a.b>\r\nCall-ID: c1\r\nCSeq: 1\r\n OPTIONS\r\n\r\n",
                Ok("OPTIONS sip:a.b SIP/2.0\r\nVia: SIP/2.0/TLS h.b ;branch=z9hG4bK1\r\nFrom: <sip:a.b>;tag=1\r\nTo: <sip:a.b>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"),
            ),
            // LF-only messages.
            (
                b"OPTIONS sip:a.b SIP/2.0\nVia: SIP/2.0/TLS h.b;branch=z9hG4bK1\nFrom: <sip:a.b>;tag=1\nTo: <sip:a.b>\nCall-ID: c1\nCSeq: 1 OPTIONS\n\n",
                Ok(clean),
            ),
            // A broken start line is made from the CSeq method.
            (
                b"OPTIONS\r\nVia: SIP/2.0/TLS h.b;branch=z9hG4bK1\r\nFrom: <sip:a.b>;tag=1\r\nTo: <sip:a.b>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\r\n",
                Ok(&synthesised),
            ),
            (
                b"OPTIONS sip:a.b SIP/7.0\r\nVia: SIP/2.0/TLS h.b;branch=z9hG4bK1\r\nFrom: <sip:a.b>;tag=1\r\nTo: <sip:a.b>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\r\n",
                Ok(&synthesised),
            ),
            (
                b"\x01\x02\xff\r\nVia: SIP/2.0/TLS h.b;branch=z9hG4bK1\r\nFrom: <sip:a.b>;tag=1\r\nTo: <sip:a.b>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\r\n",
                Ok(&synthesised),
            ),
            // A broken first line of a header is skipped for a later good one; a line
            // with a bare CR is broken, and so is its header's continuation.
            (
                b"OPTIONS sip:a.b SIP/2.0\r\nVia: SIP/2.0/TLS h.b;branch=z9hG4bK1\r\nFrom: <sip:a.b>;ta\rg=9\r\nFrom: <sip:a.b>;tag=1\r\nTo: <sip:x.y>\r\n  x\ry\r\nTo: <sip:a.b>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\r\n",
                Ok(clean),
            ),
            // Responses and ACKs are never answered.
            (
                b"SIP/2.0 2x0 OK\r\nVia: SIP/2.0/TLS h.b;branch=z9hG4bK1\r\nCall-ID: c1\r\n\r\n",
                Err((Unanswerable::Response, Some("c1"))),
            ),
            (
                b"ACK sip:a.b SIP/2.0\r\nVia: SIP/2.0/TLS h.b;branch=z9hG4bK1\r\nFrom: <sip:a.b>;tag=1\r\nTo: <sip:a.b>\r\nCall-ID: c1\r\nCSeq: 1 ACK\r\nno colon\r\n\r\n",
                Err((Unanswerable::Ack, Some("c1"))),
            ),
            (
                b"bad start\r\nVia: SIP/2.0/TLS h.b;branch=z9hG4bK1\r\nCall-ID: c2\r\nCSeq: 1 ACK\r\n\r\n",
                Err((Unanswerable::Ack, Some("c2"))),
            ),
            // Missing or unusable mandatory headers.
            (
                b"OPTIONS sip:a.b SIP/2.0\r\nVia: SIP/2.0/TLS h.b;branch=z9hG4bK1\r\nFrom: <sip:a.b>;tag=1\r\nTo: <sip:a.b>\r\nCall-ID: c\xfc3\r\n\r\n",
                Err((Unanswerable::Missing(HeaderName::CSeq), Some("c\u{fffd}3"))),
            ),
            (
                b"OPTIONS sip:a.b SIP/2.0\r\nFrom: <sip:a.b>;tag=1\r\n\r\nVia: SIP/2.0/TLS h.b\r\n",
                Err((Unanswerable::Missing(HeaderName::Via), None)),
            ),
            (
                b"OPTIONS sip:a.b SIP/2.0\r\nVia: SIP/2.0/TLS h.b;branch=z9hG4bK1\r\nFrom: Bell, A <sip:a.b>\r\nTo: <sip:a.b>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\r\n",
                Err((Unanswerable::Invalid("Malformed From header"), Some("c1"))),
            ),
            (b"", Err((Unanswerable::Missing(HeaderName::Via), None))),
            (b"OPTIONS sip:a.b SIP/2.0", Err((Unanswerable::Missing(HeaderName::Via), None))),
        ];
        for (raw, want) in cases {
            let want = want
                .map(str::to_owned)
                .map_err(|(why, c)| (why, c.map(str::to_owned)));
            assert_eq!(salvaged(raw), want, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn salvage_keeps_every_via_in_order_and_reads_latin1() {
        let raw = b"INVITE sip:+1@a.b SIP/2.0\r\nVia: SIP/2.0/TLS p.b;branch=z9hG4bK2\r\nno colon\r\nv: SIP/2.0/TLS h.b;branch=z9hG4bK1\r\nFrom: \"M\xfcller\" <sip:+4930123@sbc.example>;tag=1\r\nTo: <sip:+1@a.b>\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\nl: 0\r\n\r\n";
        let s = salvage(raw).unwrap();
        let m = s.message();
        let vias: Vec<_> = m.vias().map(|v| v.unwrap().branch()).collect();
        assert_eq!(vias, [Some("z9hG4bK2"), Some("z9hG4bK1")]);
        assert_eq!(m.from().unwrap().unwrap().display_name(), Some("Müller"));
        assert_eq!(m.method(), Some(super::super::Method::Invite));
        assert_eq!(m.cseq().unwrap().unwrap().seq, 7);
    }
}
