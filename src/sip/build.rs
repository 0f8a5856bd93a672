//! Writing SIP responses straight into an output buffer.
//!
//! A response copies the request's Via, From, To, Call-ID and CSeq values verbatim
//! (RFC 3261 §8.2.6.2), byte for byte, so whatever an SBC sent (folding, odd spacing,
//! parameters we do not know) comes back as it was. [`Style`] fixes the header-name
//! spelling and order: the real service's upper-case shape (DR-OPT-1) or RFC 3261's.

use bytes::{BufMut, BytesMut};

use super::{HeaderName, Message};

/// Header spelling and order of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// As the real service: `FROM`, `TO`, `CSEQ`, `CALL-ID`, `VIA`, `CONTENT-LENGTH`,
    /// then the rest, names upper-case.
    Faithful,
    /// RFC 3261 textbook: `Via`, `From`, `To`, `Call-ID`, `CSeq`, the rest,
    /// `Content-Length` last.
    Rfc3261,
}

/// A response being written. Dropping it without [`ResponseWriter::finish`] leaves a
/// partial message in the buffer, so `finish` is `#[must_use]`-enforced by taking
/// `self`.
#[must_use = "a response is only complete after finish()"]
pub struct ResponseWriter<'o> {
    out: &'o mut BytesMut,
    style: Style,
    wrote_length: bool,
}

impl<'o> ResponseWriter<'o> {
    /// Writes the status line and the headers copied from `req`. `to_tag` is added to
    /// To when the request's To has no tag yet.
    pub fn start(
        out: &'o mut BytesMut,
        style: Style,
        req: &Message<'_>,
        status: u16,
        phrase: &str,
        to_tag: Option<&str>,
    ) -> Self {
        out.reserve(512);
        out.put_slice(b"SIP/2.0 ");
        put_decimal(out, status as usize);
        out.put_u8(b' ');
        put_clean(out, phrase);
        out.put_slice(b"\r\n");
        let mut w = ResponseWriter {
            out,
            style,
            wrote_length: false,
        };
        let to_with_tag = |w: &mut Self| {
            if let Some(to) = req.header(HeaderName::To) {
                w.raw_header("To", to);
                if let (Some(tag), false) = (to_tag, has_tag(to)) {
                    // Undo the CRLF of raw_header to append the tag on the same line.
                    w.out.truncate(w.out.len() - 2);
                    w.out.put_slice(b";tag=");
                    put_clean(w.out, tag);
                    w.out.put_slice(b"\r\n");
                }
            }
        };
        match style {
            Style::Faithful => {
                w.copy(req, HeaderName::From, "From");
                to_with_tag(&mut w);
                w.copy(req, HeaderName::CSeq, "CSeq");
                w.copy(req, HeaderName::CallId, "Call-ID");
                w.copy_all(req, HeaderName::Via, "Via");
            }
            Style::Rfc3261 => {
                w.copy_all(req, HeaderName::Via, "Via");
                w.copy(req, HeaderName::From, "From");
                to_with_tag(&mut w);
                w.copy(req, HeaderName::CallId, "Call-ID");
                w.copy(req, HeaderName::CSeq, "CSeq");
            }
        }
        w
    }

    /// Writes the status line and a [`ResponseHead`] (RFC 3261 style), with `to_tag` added
    /// to To when it has none, and the request's Record-Route when `record_route` (a
    /// dialog-creating response, §12.1.1).
    pub fn start_from_head(
        out: &'o mut BytesMut,
        head: &ResponseHead,
        status: u16,
        phrase: &str,
        to_tag: Option<&str>,
        record_route: bool,
    ) -> Self {
        out.reserve(512 + head.len());
        out.put_slice(b"SIP/2.0 ");
        put_decimal(out, status as usize);
        out.put_u8(b' ');
        put_clean(out, phrase);
        out.put_slice(b"\r\n");
        out.put_slice(head.before_to.as_bytes());
        out.put_slice(head.to.as_bytes());
        if let (Some(tag), false) = (to_tag, head.to_has_tag) {
            out.put_slice(b";tag=");
            put_clean(out, tag);
        }
        out.put_slice(b"\r\n");
        out.put_slice(head.after_to.as_bytes());
        if record_route {
            out.put_slice(head.record_route.as_bytes());
        }
        ResponseWriter {
            out,
            style: Style::Rfc3261,
            wrote_length: false,
        }
    }

    /// In the faithful style Content-Length comes right after Via; call this before the
    /// other headers when the body is known to be empty (it is, for the thin 200).
    pub fn content_length_now(mut self, len: usize) -> Self {
        self.length(len);
        self
    }

    /// Adds a header; `name` is given in canonical case and re-spelt per style. Control
    /// characters in `value` are replaced, so a value can never end the header early.
    pub fn header(&mut self, name: &str, value: &str) -> &mut Self {
        self.name(name);
        put_clean(self.out, value);
        self.out.put_slice(b"\r\n");
        self
    }

    /// Copies the request's Record-Route header lines unchanged and in order, as a
    /// dialog-creating response must (RFC 3261 §12.1.1: 18x with a To tag, 2xx).
    pub fn record_route(&mut self, req: &Message<'_>) -> &mut Self {
        self.copy_all(req, HeaderName::RecordRoute, "Record-Route");
        self
    }

    /// Ends the header block (with Content-Length unless already written) and appends
    /// `body`.
    pub fn finish(mut self, body: &[u8]) {
        if !self.wrote_length {
            self.length(body.len());
        }
        self.out.put_slice(b"\r\n");
        self.out.put_slice(body);
    }

    fn length(&mut self, len: usize) {
        self.name("Content-Length");
        put_decimal(self.out, len);
        self.out.put_slice(b"\r\n");
        self.wrote_length = true;
    }

    fn copy(&mut self, req: &Message<'_>, h: HeaderName, name: &str) {
        if let Some(v) = req.header(h) {
            self.raw_header(name, v);
        }
    }

    fn copy_all(&mut self, req: &Message<'_>, h: HeaderName, name: &str) {
        for header in req.headers_named(h) {
            self.raw_header(name, header.value);
        }
    }

    /// A value copied verbatim from a parsed message (already a valid header value,
    /// folding included).
    fn raw_header(&mut self, name: &str, value: &str) {
        self.name(name);
        self.out.put_slice(value.as_bytes());
        self.out.put_slice(b"\r\n");
    }

    fn name(&mut self, name: &str) {
        match self.style {
            Style::Faithful => {
                for b in name.bytes() {
                    self.out.put_u8(b.to_ascii_uppercase());
                }
            }
            Style::Rfc3261 => self.out.put_slice(name.as_bytes()),
        }
        self.out.put_slice(b": ");
    }
}

/// The headers every response to one request copies (RFC 3261 §8.2.6.2: Via, From, To,
/// Call-ID, CSeq; and Record-Route for dialog-creating responses), written out once in
/// the RFC 3261 style. A UAS that answers the same INVITE several times (100, 180, 183,
/// 200) starts each response from it instead of parsing the request again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The Via lines and From, then `To: ` (the value follows).
    before_to: Box<str>,
    to: Box<str>,
    to_has_tag: bool,
    /// The Call-ID and CSeq lines.
    after_to: Box<str>,
    /// The Record-Route lines, in order.
    record_route: Box<str>,
}

impl ResponseHead {
    /// The head of every response to `req`.
    pub fn new(req: &Message<'_>) -> ResponseHead {
        let mut before = String::with_capacity(256);
        for v in req.headers_named(HeaderName::Via) {
            before.push_str("Via: ");
            before.push_str(v.value);
            before.push_str("\r\n");
        }
        if let Some(f) = req.header(HeaderName::From) {
            before.push_str("From: ");
            before.push_str(f);
            before.push_str("\r\n");
        }
        before.push_str("To: ");
        let to = req.header(HeaderName::To).unwrap_or_default();
        let mut after = String::with_capacity(96);
        for (name, h) in [("Call-ID", HeaderName::CallId), ("CSeq", HeaderName::CSeq)] {
            if let Some(v) = req.header(h) {
                after.push_str(name);
                after.push_str(": ");
                after.push_str(v);
                after.push_str("\r\n");
            }
        }
        let mut rr = String::new();
        for v in req.headers_named(HeaderName::RecordRoute) {
            rr.push_str("Record-Route: ");
            rr.push_str(v.value);
            rr.push_str("\r\n");
        }
        ResponseHead {
            before_to: before.into(),
            to_has_tag: has_tag(to),
            to: to.into(),
            after_to: after.into(),
            record_route: rr.into(),
        }
    }

    fn len(&self) -> usize {
        self.before_to.len() + self.to.len() + self.after_to.len() + self.record_route.len()
    }
}

/// A request being written (requests the proxy originates: BYE, CANCEL, INVITE ...).
/// Header names are written as given; values are cleaned like response values.
#[must_use = "a request is only complete after finish()"]
pub struct RequestWriter<'o> {
    out: &'o mut BytesMut,
}

impl<'o> RequestWriter<'o> {
    /// Writes the request line `METHOD uri SIP/2.0`.
    pub fn start(out: &'o mut BytesMut, method: &str, uri: &str) -> Self {
        out.reserve(512);
        put_clean(out, method);
        out.put_u8(b' ');
        put_clean(out, uri);
        out.put_slice(b" SIP/2.0\r\n");
        RequestWriter { out }
    }

    /// Adds a header line; control characters in `value` are replaced.
    pub fn header(&mut self, name: &str, value: &str) -> &mut Self {
        put_clean(self.out, name);
        self.out.put_slice(b": ");
        put_clean(self.out, value);
        self.out.put_slice(b"\r\n");
        self
    }

    /// Ends the header block with Content-Length and appends `body`.
    pub fn finish(self, body: &[u8]) {
        self.out.put_slice(b"Content-Length: ");
        put_decimal(self.out, body.len());
        self.out.put_slice(b"\r\n\r\n");
        self.out.put_slice(body);
    }
}

/// True when a To (or From) value already carries a `tag` parameter. Uses the parser's
/// name-addr grammar, so a `>` or `;tag` inside a quoted display name or parameter
/// value cannot mislead it.
pub fn has_tag(to: &str) -> bool {
    super::NameAddr::parse(to).is_ok_and(|n| n.tag().is_some())
}

/// Writes a status code or length as decimal, without allocating.
fn put_decimal(out: &mut BytesMut, n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}

/// Writes text meant for one header line, replacing CR, LF and other controls by space.
fn put_clean(out: &mut BytesMut, s: &str) {
    // A fold rather than `all`: no early exit, so the check vectorises; values are short.
    let dirty = s
        .bytes()
        .fold(false, |d, b| d | ((b < 0x20 && b != b'\t') | (b == 0x7f)));
    if !dirty {
        out.put_slice(s.as_bytes());
    } else {
        for b in s.bytes() {
            out.put_u8(if b.is_ascii_control() && b != b'\t' {
                b' '
            } else {
                b
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{Limits, Status};

    const OPTIONS: &[u8] = b"OPTIONS sip:sip.pstnhub.microsoft.com:5061 SIP/2.0\r\n\
Via: SIP/2.0/TLS 192.0.2.10;branch=z9hG4bK1HQpp1BtBQ30N\r\n\
Max-Forwards: 70\r\n\
From: <sip:sbc1.adatum.biz:5061;transport=tls>;tag=SX7B39veap93c\r\n\
To: <sip:sip.pstnhub.microsoft.com>\r\n\
Call-ID: dfe4b29f-51cb-1239-3b99-06ce423ffcdb\r\n\
CSeq: 23765299 OPTIONS\r\n\
Contact: <sip:sbc1.adatum.biz:5061;transport=tls>\r\n\
Content-Length: 0\r\n\r\n";

    fn parse(buf: &[u8]) -> Message<'_> {
        match Message::parse(buf, &Limits::default()) {
            Ok(Status::Complete(m)) => m,
            other => panic!("fixture did not parse: {other:?}"),
        }
    }

    #[test]
    fn dr_opt_1_faithful_thin_200_matches_the_capture() {
        let req = parse(OPTIONS);
        let mut out = BytesMut::new();
        let mut w = ResponseWriter::start(&mut out, Style::Faithful, &req, 200, "OK", None)
            .content_length_now(0);
        w.header("Allow", "INVITE,ACK,OPTIONS,CANCEL,BYE,NOTIFY");
        w.header(
            "Server",
            "Microsoft.PSTNHub.SIPProxy v.2020.7.31.1 i.USWE2.3",
        );
        w.finish(b"");
        let expected = "SIP/2.0 200 OK\r\n\
FROM: <sip:sbc1.adatum.biz:5061;transport=tls>;tag=SX7B39veap93c\r\n\
TO: <sip:sip.pstnhub.microsoft.com>\r\n\
CSEQ: 23765299 OPTIONS\r\n\
CALL-ID: dfe4b29f-51cb-1239-3b99-06ce423ffcdb\r\n\
VIA: SIP/2.0/TLS 192.0.2.10;branch=z9hG4bK1HQpp1BtBQ30N\r\n\
CONTENT-LENGTH: 0\r\n\
ALLOW: INVITE,ACK,OPTIONS,CANCEL,BYE,NOTIFY\r\n\
SERVER: Microsoft.PSTNHub.SIPProxy v.2020.7.31.1 i.USWE2.3\r\n\r\n";
        assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
        // And what we write parses back.
        assert!(matches!(
            Message::parse(&out, &Limits::default()),
            Ok(Status::Complete(_))
        ));
    }

    #[test]
    fn rfc3261_style_adds_to_tag_and_orders_via_first() {
        let req = parse(OPTIONS);
        let mut out = BytesMut::new();
        let mut w = ResponseWriter::start(&mut out, Style::Rfc3261, &req, 200, "OK", Some("abc"));
        w.header(
            "Contact",
            "<sip:sip.pstnhub.microsoft.com:5061;transport=tls>",
        );
        w.finish(b"");
        let text = std::str::from_utf8(&out).unwrap();
        assert!(
            text.starts_with("SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS 192.0.2.10;"),
            "{text}"
        );
        assert!(
            text.contains("\r\nTo: <sip:sip.pstnhub.microsoft.com>;tag=abc\r\n"),
            "{text}"
        );
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"), "{text}");
    }

    #[test]
    fn a_response_head_writes_what_start_writes() {
        let text = String::from_utf8_lossy(OPTIONS).replace(
            "Contact:",
            "Record-Route: <sip:p1.example;lr>\r\nRecord-Route: <sip:p2.example;lr>\r\nContact:",
        );
        let req = parse(text.as_bytes());
        let head = ResponseHead::new(&req);
        for (tag, rr) in [(None, false), (Some("t1"), true)] {
            let mut a = BytesMut::new();
            let mut w = ResponseWriter::start(&mut a, Style::Rfc3261, &req, 180, "Ringing", tag);
            if rr {
                w.record_route(&req);
            }
            w.finish(b"");
            let mut b = BytesMut::new();
            ResponseWriter::start_from_head(&mut b, &head, 180, "Ringing", tag, rr).finish(b"");
            assert_eq!(a, b);
        }
    }

    #[test]
    fn existing_to_tag_is_kept_and_not_doubled() {
        assert!(has_tag("<sip:a@b.c>;tag=1"));
        assert!(has_tag("sip:a@b.c;TAG=1"));
        assert!(!has_tag("<sip:a@b.c;tag=1>"));
        assert!(!has_tag("<sip:a@b.c>;tagx=1"));
    }

    #[test]
    fn header_values_cannot_inject_lines() {
        let req = parse(OPTIONS);
        let mut out = BytesMut::new();
        let mut w = ResponseWriter::start(&mut out, Style::Rfc3261, &req, 400, "Bad\r\nX: y", None);
        w.header("Reason", "a\r\nInjected: 1");
        w.finish(b"");
        let text = std::str::from_utf8(&out).unwrap();
        assert!(!text.contains("\r\nInjected"), "{text}");
        assert!(!text.contains("\r\nX: y"), "{text}");
    }
}
