//! Target `parse`: stream framing ([`Message::parse`]) under the default and small
//! limits, the header-block parse of the error path ([`Message::parse_head`]), UDP
//! framing ([`frame_datagram`]), the RFC 3261 checks and every typed header view.

use drhub::sip::{
    recover, salvage, CSeq, CallId, Contact, ContentLength, HeaderName, Limits, Message, NameAddr,
    ParseError, Recovery, SipDate, StartLine, Status, Uri, Via, MAX_HEADERS,
};
use drhub::transport::udp::frame_datagram;

/// Limits small enough that the seeds cross them: 256 bytes of headers, 32 of body.
pub const SMALL: Limits = Limits {
    max_header_bytes: 256,
    max_body_bytes: 32,
};

/// At most this many strict prefixes of one message are re-parsed (spread over its
/// length, the bytes around the end of the header block always included), so that a
/// long input costs a bounded number of parses.
const PREFIXES: usize = 96;

/// At most this many pipelined messages are followed through one input.
const PIPELINE: usize = 8;

/// The names the accessors are compared for: every name the checks track, and a few
/// list-valued and ordinary ones.
const NAMES: [HeaderName; 16] = [
    HeaderName::Via,
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::Contact,
    HeaderName::ContentLength,
    HeaderName::MaxForwards,
    HeaderName::RecordRoute,
    HeaderName::Route,
    HeaderName::Date,
    HeaderName::ContentType,
    HeaderName::Allow,
    HeaderName::Supported,
    HeaderName::Authorization,
    HeaderName::Other,
];

/// The target body.
pub fn run(data: &[u8]) {
    let full = Message::parse(data, &Limits::default());
    small_limits(data, &full);
    head_only(data, &full);
    datagram(data, &full);
    // The stream loop frames message after message from one buffer.
    let mut rest = data;
    for _ in 0..PIPELINE {
        match Message::parse(rest, &Limits::default()) {
            Ok(Status::Complete(m)) => {
                framed(rest, &m);
                message(&m);
                rest = rest.get(m.len()..).unwrap_or(&[]);
            }
            Ok(Status::Partial) => {
                partial(rest);
                break;
            }
            Err(e) => {
                error(e);
                recovered(rest, e);
                break;
            }
        }
    }
}

/// The error path of the stream loop: what [`recover`] decides for bytes the parser
/// rejected, and the request [`salvage`] answers from, must hold together.
fn recovered(buf: &[u8], e: ParseError) {
    match recover(buf, e, &Limits::default()) {
        Recovery::Partial => assert!(!e.is_framing(), "a framing error is never partial"),
        Recovery::Latin1 { message: copy, len } => {
            assert_eq!(e, ParseError::NotUtf8);
            assert!(
                len <= buf.len() && len > 0,
                "Latin-1 length {len} of {}",
                buf.len()
            );
            let m = copy.message();
            assert_eq!(m.body(), buf.get(len - m.body().len()..len).unwrap_or(&[]));
            message(&m);
        }
        Recovery::Malformed { len, .. } => {
            assert!(!e.is_framing(), "a framing error is never skipped");
            assert!(len <= buf.len() && len > 0, "skip {len} of {}", buf.len());
        }
        Recovery::Unframeable(_) => {}
    }
    if let Ok(request) = salvage(buf) {
        let m = request.message();
        assert!(
            m.check_request().is_ok(),
            "a salvaged request passes the checks"
        );
        assert_ne!(
            m.method().map(|m| m.as_str()),
            Some("ACK"),
            "an ACK is never answered"
        );
        message(&m);
    }
}

/// What a message framed from the front of `buf` guarantees.
fn framed(buf: &[u8], m: &Message<'_>) {
    let len = m.len();
    let head = m.head();
    assert!(
        len <= buf.len(),
        "len {len} beyond the {} input bytes",
        buf.len()
    );
    assert!(
        buf.starts_with(head.as_bytes()),
        "the head is not the input's start"
    );
    assert!(
        head.ends_with("\r\n\r\n"),
        "the head does not end in CRLFCRLF"
    );
    assert_eq!(
        buf.get(head.len()..len),
        Some(m.body()),
        "body is not what follows the head"
    );
    assert!(
        m.version().is_sip_2_0(),
        "a stream message that is not SIP/2.0"
    );
    assert!(m.header_count() <= MAX_HEADERS);
    assert_eq!(m.headers().len(), m.header_count());
    assert_eq!(m.headers().count(), m.header_count());
    assert!(head.starts_with(m.start_line_raw()));
    assert_eq!(
        head.as_bytes()
            .get(m.start_line_raw().len()..m.start_line_raw().len() + 2),
        Some(&b"\r\n"[..])
    );
    let cl: Vec<_> = m.headers_named(HeaderName::ContentLength).collect();
    assert!(!cl.is_empty(), "framed on a stream without Content-Length");
    for h in &cl {
        assert_eq!(
            h.value.parse::<u128>().ok(),
            Some(m.body().len() as u128),
            "Content-Length {:?} vs body {}",
            h.value,
            m.body().len()
        );
    }

    // The same bytes, alone, frame the same message.
    let exact = buf.get(..len).unwrap_or(&[]);
    match Message::parse(exact, &Limits::default()) {
        Ok(Status::Complete(again)) => same(m, &again),
        other => panic!("the first len() bytes re-parse as {other:?}"),
    }
    // Every strict prefix is Partial (house style 1): a stream read cut anywhere
    // must wait for more, never fail.
    for n in prefixes(len, head.len()) {
        let p = exact.get(..n).unwrap_or(&[]);
        let r = Message::parse(p, &Limits::default());
        assert!(
            matches!(r, Ok(Status::Partial)),
            "prefix {n} of {len}: {r:?}"
        );
    }
}

/// A buffer that is Partial: so is every prefix of it.
fn partial(buf: &[u8]) {
    let len = buf.len();
    for n in [0, 1, len / 2, len.saturating_sub(2), len.saturating_sub(1)] {
        if n >= len {
            continue;
        }
        let p = buf.get(..n).unwrap_or(&[]);
        let r = Message::parse(p, &Limits::default());
        assert!(
            matches!(r, Ok(Status::Partial)),
            "prefix {n} of a Partial {len}: {r:?}"
        );
    }
}

fn error(e: ParseError) {
    assert!(matches!(e.status(), 400 | 413 | 505));
    assert!(!e.reason().is_empty());
}

/// Strict prefix lengths to check: all of them for short messages, otherwise a spread
/// plus the bytes around the end of the header block and the end of the message.
fn prefixes(len: usize, head: usize) -> Vec<usize> {
    if len <= PREFIXES {
        return (0..len).collect();
    }
    let step = len / PREFIXES + 1;
    let mut v: Vec<usize> = (0..len).step_by(step).collect();
    for n in head.saturating_sub(4)..(head + 2).min(len) {
        v.push(n);
    }
    v.extend(len.saturating_sub(3)..len);
    v.sort_unstable();
    v.dedup();
    v
}

/// The same framing, header for header.
fn same(a: &Message<'_>, b: &Message<'_>) {
    assert_eq!(a.len(), b.len());
    assert_eq!(a.head(), b.head());
    assert_eq!(a.body(), b.body());
    assert_eq!(a.start_line(), b.start_line());
    assert!(a.headers().eq(b.headers()), "headers differ");
}

/// Small limits change a result only by refusing what is over them.
fn small_limits(data: &[u8], full: &Result<Status<Message<'_>>, ParseError>) {
    let small = Message::parse(data, &SMALL);
    match (full, &small) {
        (Ok(Status::Complete(m)), _) => {
            if m.head().len() > SMALL.max_header_bytes {
                assert_eq!(
                    small.as_ref().err(),
                    Some(&ParseError::HeaderTooLarge),
                    "head {}",
                    m.head().len()
                );
            } else if m.body().len() > SMALL.max_body_bytes {
                assert_eq!(
                    small.as_ref().err(),
                    Some(&ParseError::BodyTooLarge),
                    "body {}",
                    m.body().len()
                );
            } else {
                match &small {
                    Ok(Status::Complete(s)) => same(m, s),
                    other => panic!("within the small limits, yet {other:?}"),
                }
            }
        }
        (Ok(Status::Partial), Ok(Status::Partial)) => {}
        (Ok(Status::Partial), Err(ParseError::HeaderTooLarge | ParseError::BodyTooLarge)) => {}
        (Ok(Status::Partial), other) => panic!("Partial, yet {other:?} under small limits"),
        (Err(_), Err(_)) => {}
        (Err(e), other) => panic!("{e:?}, yet {other:?} under small limits"),
    }
}

/// `parse_head` reads the same header block `parse` framed, without the body.
fn head_only(data: &[u8], full: &Result<Status<Message<'_>>, ParseError>) {
    let head = Message::parse_head(data);
    if let Ok(Status::Complete(h)) = &head {
        assert_eq!(h.len(), h.head().len());
        assert!(h.body().is_empty());
        assert!(data.starts_with(h.head().as_bytes()));
        assert!(h.header_count() <= MAX_HEADERS);
        message(h);
    }
    match (full, &head) {
        (Ok(Status::Complete(m)), Ok(Status::Complete(h))) => {
            assert_eq!(m.head(), h.head());
            assert_eq!(m.start_line(), h.start_line());
            assert!(
                m.headers().eq(h.headers()),
                "headers differ from parse_head's"
            );
        }
        (Ok(Status::Complete(_)), other) => {
            panic!("parse framed a message, parse_head gave {other:?}")
        }
        (Err(ParseError::VersionNotSupported), h) => {
            assert!(
                matches!(h, Ok(Status::Complete(_))),
                "505 from parse, {h:?} from parse_head"
            );
        }
        (_, Ok(Status::Partial)) => {
            // Without a limit parse_head waits where parse may have given up.
            assert!(
                matches!(full, Ok(Status::Partial) | Err(ParseError::HeaderTooLarge)),
                "parse_head Partial, parse {full:?}"
            );
        }
        (_, Err(_)) => {
            assert!(full.is_err(), "parse_head failed where parse gave {full:?}");
        }
        _ => {}
    }
}

/// A UDP datagram frames as what the stream parser frames at its front, or, without
/// Content-Length, as its header block with the rest of the datagram as body; a header
/// block that is not UTF-8 frames as its Latin-1 reading (which then parses).
fn datagram(data: &[u8], full: &Result<Status<Message<'_>>, ParseError>) {
    let framed = frame_datagram(data);
    if let Ok(f) = &framed {
        let m = f.message.message();
        assert_eq!(m.len(), f.message.len());
        message(&m);
    }
    match (full, &framed) {
        (Ok(Status::Complete(m)), Ok(f)) => {
            assert!(!f.latin1, "a message that parses is not read as Latin-1");
            assert_eq!(Some(&f.message.bytes()[..]), data.get(..m.len()));
        }
        (Ok(Status::Complete(m)), Err(e)) => panic!(
            "a framed message of {} bytes refused as a datagram: {e:?}",
            m.len()
        ),
        (Err(ParseError::MissingContentLength), Ok(f)) if !f.latin1 => {
            let m = f.message.message();
            let end = memmem(data, b"\r\n\r\n").expect("a head was framed");
            assert_eq!(m.body(), data.get(end + 4..).unwrap_or(&[]));
            assert_eq!(
                m.head().len(),
                end + 4 + format!("Content-Length: {}\r\n", m.body().len()).len()
            );
        }
        // Read as Latin-1: only bytes that are not UTF-8 can have led here, and the copy's
        // header block is UTF-8 (it parsed).
        (Err(_), Ok(f)) if f.latin1 => {
            assert!(
                std::str::from_utf8(data).is_err(),
                "Latin-1 reading of UTF-8 input"
            );
            let m = f.message.message();
            assert!(std::str::from_utf8(m.head().as_bytes()).is_ok());
        }
        (_, Ok(f)) => panic!(
            "{full:?} from parse, yet framed as a datagram: {:?}",
            f.message.message()
        ),
        (_, Err(_)) => {}
    }
}

fn memmem(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Every accessor and typed view of a parsed message, and how they must agree.
fn message(m: &Message<'_>) {
    let head = m.head();
    let span = head.as_ptr() as usize..head.as_ptr() as usize + head.len();
    let headers: Vec<_> = m.headers().collect();
    for h in &headers {
        assert!(!h.raw_name.is_empty(), "empty raw name");
        let at = h.raw_name.as_ptr() as usize;
        assert!(span.contains(&at), "raw name outside the head");
        assert_eq!(
            HeaderName::from_name(h.raw_name),
            h.name,
            "raw name {:?}",
            h.raw_name
        );
        let v = h.value.as_bytes();
        assert!(
            !matches!(v.first(), Some(b' ' | b'\t' | b'\r' | b'\n')),
            "value {:?} not trimmed",
            h.value
        );
        assert!(
            !matches!(v.last(), Some(b' ' | b'\t' | b'\r' | b'\n')),
            "value {:?} not trimmed",
            h.value
        );
        for (i, &c) in v.iter().enumerate() {
            match c {
                b'\r' => assert_eq!(v.get(i + 1), Some(&b'\n'), "bare CR in {:?}", h.value),
                b'\n' => {
                    assert!(
                        i > 0 && v.get(i - 1) == Some(&b'\r'),
                        "bare LF in {:?}",
                        h.value
                    );
                    assert!(
                        matches!(v.get(i + 1), Some(b' ' | b'\t')),
                        "CRLF not a fold in {:?}",
                        h.value
                    );
                }
                _ => {}
            }
        }
        let first_raw = headers
            .iter()
            .find(|g| g.raw_name.eq_ignore_ascii_case(h.raw_name));
        assert_eq!(m.header_by_raw_name(h.raw_name), first_raw.map(|g| g.value));
    }
    for name in NAMES {
        let mine: Vec<_> = headers.iter().filter(|h| h.name == name).copied().collect();
        assert_eq!(
            m.header(name),
            mine.first().map(|h| h.value),
            "header({name:?})"
        );
        assert_eq!(m.count(name), mine.len(), "count({name:?})");
        assert!(
            m.headers_named(name).eq(mine.iter().copied()),
            "headers_named({name:?})"
        );
        let values: Vec<_> = m.values(name).collect();
        let nonempty = mine.iter().filter(|h| !h.value.is_empty()).count();
        assert!(values.len() >= nonempty, "values({name:?}) lost a line");
    }

    // Start line.
    match m.start_line() {
        StartLine::Request { method, uri, .. } => {
            assert!(m.is_request());
            assert_eq!(m.method(), Some(*method));
            assert_eq!(m.status_code(), None);
            if let Some(Ok(u)) = m.request_uri() {
                assert_eq!(u.as_str(), *uri);
                uri_view(&u);
            }
        }
        StartLine::Response { code, .. } => {
            assert!(!m.is_request());
            assert_eq!(m.status_code(), Some(*code));
            assert!(m.request_uri().is_none());
        }
    }

    // Typed views, whatever the checks will say.
    let from = m.from();
    let to = m.to();
    for na in [from, to].into_iter().flatten().flatten() {
        name_addr(&na);
    }
    for name in [HeaderName::From, HeaderName::To] {
        for h in m.headers_named(name) {
            if let Ok(na) = NameAddr::parse(h.value) {
                name_addr(&na);
            }
        }
    }
    let cseq = m.cseq();
    if let Some(v) = m.header(HeaderName::CSeq) {
        assert_eq!(cseq, Some(CSeq::parse(v)));
    }
    if let Some(v) = m.call_id() {
        if let Ok(id) = CallId::parse(v) {
            assert!(!id.as_str().is_empty());
        }
    }
    let _ = m.max_forwards();
    for h in m.headers_named(HeaderName::ContentLength) {
        let _ = ContentLength::parse(h.value);
    }
    for h in m.headers_named(HeaderName::Date) {
        if let Ok(d) = SipDate::parse(h.value) {
            assert!((1..=12).contains(&d.month) && (1..=31).contains(&d.day));
            assert!(d.hour < 24 && d.minute < 60 && d.second <= 60);
        }
    }
    let vias: Vec<_> = m.vias().collect();
    assert_eq!(vias.len(), m.values(HeaderName::Via).count());
    assert_eq!(m.top_via(), vias.first().copied());
    for v in vias.iter().flatten() {
        via(v);
    }
    let contacts: Vec<_> = m.contacts().collect();
    assert_eq!(m.contact(), contacts.first().copied());
    for c in contacts.iter().flatten() {
        if let Contact::Addr(na) = c {
            name_addr(na);
        }
    }
    for name in [HeaderName::Route, HeaderName::RecordRoute] {
        for v in m.values(name) {
            if let Ok(na) = NameAddr::parse(v) {
                name_addr(&na);
            }
        }
    }

    checks(m);
}

/// The RFC 3261 checks: what they accept, the typed views they return agree with the
/// accessors.
fn checks(m: &Message<'_>) {
    let checked = if m.is_request() {
        assert_eq!(m.check(), m.check_request());
        assert!(m.check_response().is_err());
        m.checked_request()
    } else {
        assert_eq!(m.check(), m.check_response());
        assert!(m.check_request().is_err());
        m.checked_response()
    };
    assert_eq!(m.check(), checked.map(|_| ()));
    let c = match checked {
        Ok(c) => c,
        Err(i) => {
            assert!(matches!(i.status, 400 | 505), "{i:?}");
            assert!(!i.reason.is_empty());
            return;
        }
    };
    for name in [
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ] {
        assert_eq!(m.count(name), 1, "checked with {} {name:?}", m.count(name));
    }
    assert_eq!(m.from(), Some(Ok(c.from)));
    assert_eq!(m.to(), Some(Ok(c.to)));
    assert_eq!(m.call_id(), Some(c.call_id.as_str()));
    assert_eq!(m.cseq(), Some(Ok(c.cseq)));
    assert!(
        c.cseq.seq < 1 << 31,
        "CSeq {} passed the checks",
        c.cseq.seq
    );
    assert_eq!(m.top_via(), Some(Ok(c.top_via)));
    assert!(
        m.vias().all(|v| v.is_ok()),
        "a malformed Via passed the checks"
    );
    assert_eq!(m.contact(), c.contact.map(Ok));
    assert!(
        m.contacts().all(|v| v.is_ok()),
        "a malformed Contact passed the checks"
    );
    assert_eq!(m.max_forwards(), c.max_forwards.map(Ok));
    if let Some(method) = m.method() {
        assert_eq!(c.cseq.method, method);
        assert!(method.is_token());
        let uri = m.request_uri().expect("a request").expect("checked");
        assert!(!uri.has_headers());
    }
    if let Some(code) = m.status_code() {
        assert!((100..=699).contains(&code));
    }
}

fn name_addr(na: &NameAddr<'_>) {
    uri_view(na.uri());
    let _ = (
        na.display_name(),
        na.display_name_is_quoted(),
        na.is_bracketed(),
    );
    for p in na.params().iter() {
        assert!(
            na.param(p.name).is_some(),
            "param {:?} not found by name",
            p.name
        );
    }
    if let Some(tag) = na.tag() {
        assert!(na.param("tag").is_some(), "tag {tag:?} without a tag param");
    }
}

fn via(v: &Via<'_>) {
    let _ = (
        v.protocol_name(),
        v.protocol_version(),
        v.transport().as_str(),
    );
    let _ = (
        v.host(),
        v.port(),
        v.received(),
        v.has_rport(),
        v.rport(),
        v.maddr(),
        v.ttl(),
    );
    for p in v.params().iter() {
        assert!(
            v.param(p.name).is_some(),
            "param {:?} not found by name",
            p.name
        );
    }
    if let Some(b) = v.rfc3261_branch() {
        assert!(v.has_magic_cookie() && b.len() > 7);
        assert_eq!(v.branch(), Some(b));
    }
}

fn uri_view(u: &Uri<'_>) {
    // The raw text parses to the same view.
    assert_eq!(
        Uri::parse(u.as_str()),
        Ok(*u),
        "{:?} does not re-parse to itself",
        u.as_str()
    );
    assert_eq!(u.to_string(), u.as_str());
    let _ = (
        u.scheme().as_str(),
        u.is_sips(),
        u.user(),
        u.password(),
        u.host(),
        u.port(),
    );
    let _ = (u.opaque(), u.is_phone(), u.has_headers());
    for p in u.params().iter() {
        let _ = (p.name, p.value);
    }
    for h in u.headers() {
        let _ = h;
    }
    let mut buf = [0u8; 128];
    let _ = u.user_decoded(&mut buf);
    if let Some(host) = u.host() {
        let _ = (host.is_ip(), host.ip(), host.domain(), host.to_string());
    }
}
