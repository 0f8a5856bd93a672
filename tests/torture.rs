//! RFC 4475 and RFC 5118 torture messages, one test per file, each asserting the
//! classification in `tests/torture/*/README.md` and saying why (RFC section in a comment).
//!
//! The files are datagram-style messages (they ostensibly arrived over UDP). drhub frames
//! streams (TLS, RFC 3261 §18.3), so each test first says what the stream parser does with
//! the bytes, then what `check_request`/`check_response` make of the message. Where the
//! message is well-formed but the application must refuse it (RFC 4475 §3.3), the comment
//! names the answer the application owes; that is not the parser's job.

use drhub::sip::{
    decode_into, pct_eq, unescape_quoted, Contact, HeaderName, Host, Limits, MaxForwards, Message,
    Method, ParseError, Scheme, StartLine, Status, SyntaxError, ViaTransport,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

macro_rules! fixture {
    ($dir:literal, $name:literal) => {
        include_bytes!(concat!("torture/", $dir, "/", $name, ".dat")).as_slice()
    };
}

/// Frames one message on a stream, asserting it is complete and that every strict prefix
/// of it is `Partial` (house style point 1).
fn stream(buf: &[u8]) -> Message<'_> {
    let m = match Message::parse(buf, &Limits::default()) {
        Ok(Status::Complete(m)) => m,
        other => panic!("expected a complete message, got {other:?}"),
    };
    for n in 0..m.len() {
        let p = Message::parse(&buf[..n], &Limits::default());
        assert!(matches!(p, Ok(Status::Partial)), "prefix {n}: {p:?}");
    }
    m
}

/// The header block only, as the daemon recovers it to answer a framing fault.
fn head(buf: &[u8]) -> Message<'_> {
    match Message::parse_head(buf) {
        Ok(Status::Complete(m)) => m,
        other => panic!("expected a header block, got {other:?}"),
    }
}

fn parse_err(buf: &[u8]) -> ParseError {
    match Message::parse(buf, &Limits::default()) {
        Err(e) => e,
        other => panic!("expected a parse error, got {other:?}"),
    }
}

fn check(m: &Message<'_>) -> Result<(), (u16, &'static str)> {
    let r = if m.is_request() {
        m.check_request()
    } else {
        m.check_response()
    };
    r.map_err(|i| (i.status, i.reason))
}

fn v6(s: &str) -> Host<'static> {
    Host::V6(s.parse::<Ipv6Addr>().expect("test address"))
}

fn decoded(raw: &str) -> Vec<u8> {
    let mut buf = [0u8; 256];
    decode_into(raw, &mut buf).expect("decodable").to_vec()
}

// =======================================================================================
// RFC 4475 §3.1.1: valid messages. They must parse and pass the checks.
// =======================================================================================

/// §3.1.1.1 wsinv: whitespace, folding, compact forms, odd case everywhere; all legal.
#[test]
fn rfc4475_wsinv() {
    let buf = fixture!("rfc4475", "wsinv");
    let m = stream(buf);
    assert_eq!(m.len(), buf.len());
    assert_eq!(check(&m), Ok(()));
    let ruri = m.request_uri().unwrap().unwrap();
    assert_eq!(ruri.user(), Some("vivekg"));
    assert!(ruri
        .param("unknownparam")
        .is_some_and(|p| p.value.is_none()));

    let to = m.to().unwrap().unwrap();
    assert_eq!(to.tag(), Some("1918181833n"));
    assert_eq!(
        to.uri().host(),
        Some(Host::Domain("chair-dnrc.example.com"))
    );
    let from = m.from().unwrap().unwrap();
    assert_eq!(from.display_name(), Some(r#"J Rosenberg \\\""#));
    let mut dn = [0u8; 64];
    assert_eq!(
        unescape_quoted(from.display_name().unwrap(), &mut dn),
        Some(&br#"J Rosenberg \""#[..])
    );
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(m.max_forwards(), Some(Ok(MaxForwards(68))));
    let cseq = m.cseq().unwrap().unwrap();
    assert_eq!((cseq.seq, cseq.method), (9, Method::Invite));

    let vias: Vec<_> = m.vias().map(|v| v.unwrap()).collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].host(), Host::V4(Ipv4Addr::new(192, 0, 2, 2)));
    assert_eq!(vias[0].transport(), ViaTransport::Udp);
    assert_eq!(vias[0].branch(), Some("390skdjuw"));
    assert!(!vias[0].has_magic_cookie());
    assert_eq!(vias[1].host(), Host::Domain("spindle.example.com"));
    assert_eq!(vias[1].transport(), ViaTransport::Tcp);
    assert_eq!(vias[1].branch(), Some("z9hG4bK9ikj8"));
    assert_eq!(vias[2].branch(), Some("z9hG4bK30239"));

    assert_eq!(m.header(HeaderName::Subject), Some(""));
    assert_eq!(
        m.header_by_raw_name("newfangledheader"),
        Some("newfangled value\r\n continued newfangled value")
    );
    assert_eq!(
        m.header_by_raw_name("UnknownHeaderWithUnusualValue"),
        Some(";;,,;;,;")
    );
    let route = m.values(HeaderName::Route).next().unwrap();
    let route = drhub::sip::NameAddr::parse(route).unwrap();
    let p = route.uri().params();
    assert!(p.contains("lr") && p.contains("unknown-no-value"));
    assert_eq!(p.value("unknownwith"), Some("value"));

    let contact = m.contact().unwrap().unwrap();
    let c = contact.addr().unwrap();
    assert_eq!(c.display_name(), Some(r#"Quoted string \"\""#));
    assert_eq!(c.param("newparam").and_then(|p| p.value), Some("newvalue"));
    assert!(c.param("secondparam").is_some_and(|p| p.value.is_none()));
    assert_eq!(c.param("q").and_then(|p| p.value), Some("0.33"));
    assert_eq!(m.body().len(), 150);
    // The checked views agree with the accessors.
    let c = m.checked_request().unwrap();
    assert_eq!(c.from.tag(), Some("98asjd8"));
    assert_eq!(c.top_via.branch(), Some("390skdjuw"));
    assert_eq!(c.cseq.seq, 9);
    assert_eq!(c.max_forwards, Some(MaxForwards(68)));
    assert_eq!(c.contact, Some(contact));
}

/// §3.1.1.2 intmeth: an unknown method built from every token character, and unusual
/// characters everywhere the grammar allows them.
#[test]
fn rfc4475_intmeth() {
    let buf = fixture!("rfc4475", "intmeth");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    let method = "!interesting-Method0123456789_*+`.%indeed'~";
    assert_eq!(m.method(), Some(Method::Other(method)));
    assert_eq!(m.cseq().unwrap().unwrap().method, Method::Other(method));
    let ruri = m.request_uri().unwrap().unwrap();
    assert_eq!(
        ruri.user(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        ruri.password(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    let to = m.to().unwrap().unwrap();
    // Control characters are legal inside a quoted-string only as quoted-pairs.
    assert_eq!(to.display_name(), Some("BEL:\\\x07 NUL:\\\0 DEL:\\\x7f"));
    assert_eq!(
        to.uri().user(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    let from = m.from().unwrap().unwrap();
    assert_eq!(from.display_name(), Some("token1~` token2'+_ token3*%!.-"));
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    let odd = from.param("fromParam''~+*_!.-%").and_then(|p| p.value);
    assert_eq!(
        odd,
        Some("\"\u{440}\u{430}\u{431}\u{43e}\u{442}\u{430}\u{44e}\u{449}\u{438}\u{439}\"")
    );
    assert_eq!(
        m.call_id(),
        Some("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
    );
    assert_eq!(m.max_forwards(), Some(Ok(MaxForwards(255))));
    assert_eq!(
        m.top_via().unwrap().unwrap().branch(),
        Some("z9hG4bK-.!%66*_+`'~")
    );
    assert_eq!(
        m.header_by_raw_name("extensionHeader-!.%*+_`'~"),
        Some("\u{feff}\u{5927}\u{505c}\u{96fb}")
    );
}

/// §3.1.1.3 esc01: `%` escapes in user parts and URI parameters; decoding is one level.
#[test]
fn rfc4475_esc01() {
    let buf = fixture!("rfc4475", "esc01");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    let ruri = m.request_uri().unwrap().unwrap();
    assert_eq!(ruri.user(), Some("sips%3Auser%40example.com"));
    assert_eq!(decoded(ruri.user().unwrap()), b"sips:user@example.com");
    assert_eq!(ruri.host(), Some(Host::Domain("example.net")));
    assert!(pct_eq(
        m.to().unwrap().unwrap().uri().user().unwrap(),
        "user"
    ));
    let from = m.from().unwrap().unwrap();
    assert_eq!(decoded(from.uri().user().unwrap()), b"I have spaces");
    let contact = m.contact().unwrap().unwrap();
    let uri = contact.uri().unwrap();
    assert!(pct_eq(uri.user().unwrap(), "caller"));
    // `%6C%72` is the parameter name `lr`; `v%61lue%25%34%31` decodes to `value%41`.
    assert!(uri.param("lr").is_some());
    assert_eq!(
        decoded(uri.param("name").unwrap().value.unwrap()),
        b"value%41"
    );
    assert_eq!(m.call_id(), Some("esc01.239409asdfakjkn23onasd0-3234"));
    assert_eq!(m.header(HeaderName::ContentType), Some("application/sdp"));
}

/// §3.1.1.4 escnull: `%00` in user parts must not break anything.
#[test]
fn rfc4475_escnull() {
    let buf = fixture!("rfc4475", "escnull");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    assert_eq!(m.method(), Some(Method::Register));
    assert_eq!(
        decoded(m.to().unwrap().unwrap().uri().user().unwrap()),
        b"null-\0-null"
    );
    let users: Vec<Vec<u8>> = m
        .contacts()
        .map(|c| decoded(c.unwrap().uri().unwrap().user().unwrap()))
        .collect();
    assert_eq!(users, [vec![0u8], vec![0u8, 0u8]]);
}

/// §3.1.1.5 esc02: escapes in a method and a header name are not decoded: the method is
/// not REGISTER and `C%6Fntact` is not Contact.
#[test]
fn rfc4475_esc02() {
    let buf = fixture!("rfc4475", "esc02");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    assert_eq!(m.method(), Some(Method::Other("RE%47IST%45R")));
    assert_eq!(
        m.cseq().unwrap().unwrap().method,
        Method::Other("RE%47IST%45R")
    );
    assert_eq!(m.to().unwrap().unwrap().display_name(), Some("%Z%45"));
    assert_eq!(m.contacts().count(), 2);
    assert_eq!(
        m.header_by_raw_name("C%6Fntact"),
        Some("<sip:alias2@host2.example.com>")
    );
    assert_eq!(
        m.top_via().unwrap().unwrap().branch(),
        Some("z9hG4bK209%fzsnel234")
    );
}

/// §3.1.1.6 lwsdisp: no whitespace between display name and `<`.
#[test]
fn rfc4475_lwsdisp() {
    let buf = fixture!("rfc4475", "lwsdisp");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    let from = m.from().unwrap().unwrap();
    assert_eq!(from.display_name(), Some("caller"));
    assert_eq!(from.tag(), Some("323"));
}

/// §3.1.1.7 longreq: very long values and 34 Via header fields.
#[test]
fn rfc4475_longreq() {
    let buf = fixture!("rfc4475", "longreq");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    let to = m.to().unwrap().unwrap();
    assert!(to.display_name().unwrap().contains("extremeextreme"));
    let uri = to.uri();
    assert_eq!(uri.port(), Some(6000));
    assert!(uri
        .param("unknownparam1")
        .and_then(|p| p.value)
        .is_some_and(|v| v.ends_with("longlongvalue")));
    assert!(uri
        .params()
        .iter()
        .any(|p| p.name.starts_with("longparamname") && p.value == Some("shortvalue")));
    assert!(uri
        .params()
        .iter()
        .any(|p| p.name.ends_with("ParameterNameWithNoValue") && p.value.is_none()));
    let from = m.from().unwrap().unwrap();
    assert!(!from.is_bracketed());
    assert_eq!(from.tag().map(str::len), Some(155));
    assert!(from
        .params()
        .iter()
        .any(|p| p.name.starts_with("unknownValuelessparamname") && p.value.is_none()));
    assert!(m.call_id().unwrap().ends_with("reallylongcallid"));
    let vias: Vec<_> = m.vias().map(|v| v.unwrap()).collect();
    assert_eq!(vias.len(), 34);
    assert_eq!(vias[0].host(), Host::Domain("sip33.example.com"));
    let last = vias[33];
    assert_eq!(
        last.received(),
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 5)))
    );
    assert!(last.branch().is_some_and(|b| b.len() > 200));
    assert_eq!(m.body().len(), 150);
}

/// §3.1.1.8 dblreq: a REGISTER with Content-Length 0 followed by bytes that look like an
/// INVITE. Over UDP the extra bytes are noise (RFC 3261 §18.3) and the REGISTER is handled
/// normally. On a stream, framing makes them the next message: the CRLF between the two is
/// ignored before a start line (RFC 3261 §7.5; the transport strips it, DR-TLS-3), the
/// INVITE frames and checks as a message of its own, and since its body (155 bytes) is
/// longer than its Content-Length (150), the last 5 bytes are a framing fault that closes
/// the connection.
#[test]
fn rfc4475_dblreq() {
    let buf = fixture!("rfc4475", "dblreq");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    assert_eq!(m.method(), Some(Method::Register));
    assert!(m.body().is_empty());
    let rest = &buf[m.len()..];
    assert_eq!(parse_err(rest), ParseError::EmptyStartLine);
    let rest = rest.strip_prefix(b"\r\n").unwrap();
    let invite = stream(rest);
    assert_eq!(invite.method(), Some(Method::Invite));
    assert_eq!(check(&invite), Ok(()));
    assert_eq!(invite.body().len(), 150);
    let tail = &rest[invite.len()..];
    assert_eq!(tail, b"C\r\n\r\n");
    assert_eq!(parse_err(tail), ParseError::BadRequestLine);
}

/// §3.1.1.9 semiuri: `;` in the user part means the Request-URI has no parameters.
#[test]
fn rfc4475_semiuri() {
    let buf = fixture!("rfc4475", "semiuri");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    let ruri = m.request_uri().unwrap().unwrap();
    assert_eq!(ruri.user(), Some("user;par=u%40example.net"));
    assert_eq!(ruri.host(), Some(Host::Domain("example.com")));
    assert!(ruri.params().is_empty());
    let accept: Vec<_> = m.values(HeaderName::Accept).collect();
    assert_eq!(accept.len(), 6);
    assert_eq!(accept.last(), Some(&"message/sipfrag"));
}

/// §3.1.1.10 transports: Via transports including an unknown one.
#[test]
fn rfc4475_transports() {
    let buf = fixture!("rfc4475", "transports");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    let t: Vec<_> = m.vias().map(|v| v.unwrap().transport()).collect();
    assert_eq!(
        t,
        [
            ViaTransport::Udp,
            ViaTransport::Sctp,
            ViaTransport::Tls,
            ViaTransport::Other("UNKNOWN"),
            ViaTransport::Tcp
        ]
    );
}

/// §3.1.1.11 mpart01: a multipart body with binary content, CR and LF inside it.
#[test]
fn rfc4475_mpart01() {
    let buf = fixture!("rfc4475", "mpart01");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    assert_eq!(m.method(), Some(Method::Message));
    assert_eq!(m.body().len(), 553);
    assert!(m.body().ends_with(b"--7a9cbec02ceef655--\r\n"));
    assert!(m
        .header(HeaderName::Identity)
        .is_some_and(|v| v.starts_with("r5mwreLuyDRYBi")));
    assert!(m
        .header(HeaderName::ContentType)
        .is_some_and(|v| v.starts_with("multipart/mixed")));
    let via = m.top_via().unwrap().unwrap();
    assert!(via.has_rport());
    assert_eq!(via.port(), Some(5070));
}

/// §3.1.1.12 unreason: a reason phrase in UTF-8 with unusual characters.
#[test]
fn rfc4475_unreason() {
    let buf = fixture!("rfc4475", "unreason");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    let StartLine::Response { code, reason, .. } = *m.start_line() else {
        panic!("a response")
    };
    assert_eq!(code, 200);
    assert!(reason.starts_with("= 2**3 * 5**2 \u{43d}\u{43e}"));
    assert!(reason.ends_with("\u{43f}\u{440}\u{43e}\u{441}\u{442}\u{43e}\u{435}"));
    assert_eq!(m.body().len(), 154);
}

/// §3.1.1.13 noreason: an empty reason phrase.
#[test]
fn rfc4475_noreason() {
    let buf = fixture!("rfc4475", "noreason");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    assert_eq!(
        *m.start_line(),
        StartLine::Response {
            version: drhub::sip::Version::SIP_2_0,
            code: 100,
            reason: ""
        }
    );
}

// =======================================================================================
// RFC 4475 §3.1.2: invalid messages. Rejected by the parser or the checks, without harm.
// =======================================================================================

/// §3.1.2.1 badinv01: empty Via parameters and values (`;;,;,,`) and empty Contact
/// parameters. 400.
#[test]
fn rfc4475_badinv01() {
    let buf = fixture!("rfc4475", "badinv01");
    let m = stream(buf);
    assert_eq!(check(&m), Err((400, "Malformed Via header")));
    assert!(m.contact().unwrap().is_err());
}

/// §3.1.2.2 clerr: Content-Length 9999 but 154 bytes of body. Over UDP this is a 400. On
/// a stream the parser cannot know the body is short: it waits (`Partial`) and the
/// transport's idle timeout closes the connection if nothing comes, which is what the RFC
/// says a stream receiver can do. A later message would be swallowed into the body; with a
/// body limit below 9999 the framing fault is immediate (413).
#[test]
fn rfc4475_clerr() {
    let buf = fixture!("rfc4475", "clerr");
    assert!(matches!(
        Message::parse(buf, &Limits::default()),
        Ok(Status::Partial)
    ));
    let mut longer = buf.to_vec();
    longer.extend_from_slice(fixture!("rfc4475", "lwsdisp"));
    assert!(matches!(
        Message::parse(&longer, &Limits::default()),
        Ok(Status::Partial)
    ));
    let small = Limits {
        max_body_bytes: 4096,
        ..Limits::default()
    };
    let e = Message::parse(buf, &small).unwrap_err();
    assert_eq!((e, e.status()), (ParseError::BodyTooLarge, 413));
    // The header block is intact, so the 413 (or a datagram's 400) can be addressed.
    let h = head(buf);
    assert_eq!(h.header(HeaderName::ContentLength), Some("9999"));
    assert_eq!(buf.len() - h.len(), 154);
}

/// §3.1.2.3 ncl: negative Content-Length. A stream framing fault: 400 where possible, then
/// the connection is closed (the RFC: "the framing error is not recoverable").
#[test]
fn rfc4475_ncl() {
    let buf = fixture!("rfc4475", "ncl");
    let e = parse_err(buf);
    assert_eq!(e, ParseError::InvalidContentLength);
    assert_eq!((e.status(), e.reason()), (400, "Malformed Content-Length"));
    let h = head(buf);
    assert_eq!(check(&h), Err((400, "Malformed Content-Length header")));
}

/// §3.1.2.4 scalar02: CSeq above 2^32-1 (RFC 3261 §8.1.1.5 wants < 2^31), Max-Forwards
/// 300, oversized Expires. 400.
#[test]
fn rfc4475_scalar02() {
    let buf = fixture!("rfc4475", "scalar02");
    let m = stream(buf);
    assert_eq!(check(&m), Err((400, "CSeq number out of range")));
    assert_eq!(m.max_forwards(), Some(Err(SyntaxError::OutOfRange)));
}

/// §3.1.2.5 scalarlg: a response with an oversized CSeq. Invalid; a proxy discards it.
#[test]
fn rfc4475_scalarlg() {
    let buf = fixture!("rfc4475", "scalarlg");
    let m = stream(buf);
    assert_eq!(m.status_code(), Some(503));
    assert_eq!(check(&m), Err((400, "CSeq number out of range")));
}

/// §3.1.2.6 quotbal: unterminated quoted string in To. 400.
#[test]
fn rfc4475_quotbal() {
    let buf = fixture!("rfc4475", "quotbal");
    let m = stream(buf);
    assert_eq!(check(&m), Err((400, "Malformed To header")));
    assert_eq!(m.to(), Some(Err(SyntaxError::Quote)));
}

/// §3.1.2.7 ltgtruri: Request-URI in angle brackets. 400.
#[test]
fn rfc4475_ltgtruri() {
    let buf = fixture!("rfc4475", "ltgtruri");
    let m = stream(buf);
    assert_eq!(check(&m), Err((400, "Malformed Request-URI")));
}

/// §3.1.2.8 lwsruri: whitespace inside the Request-URI (`; lr`). 400.
#[test]
fn rfc4475_lwsruri() {
    let buf = fixture!("rfc4475", "lwsruri");
    let m = stream(buf);
    assert_eq!(check(&m), Err((400, "Whitespace in Request-URI")));
}

/// §3.1.2.9 lwsstart: several spaces between Request-Line elements. 400.
#[test]
fn rfc4475_lwsstart() {
    let buf = fixture!("rfc4475", "lwsstart");
    let m = stream(buf);
    assert_eq!(check(&m), Err((400, "Extra whitespace in Request-Line")));
}

/// §3.1.2.10 trws: trailing whitespace after the SIP version. 400.
#[test]
fn rfc4475_trws() {
    let buf = fixture!("rfc4475", "trws");
    let m = stream(buf);
    assert_eq!(check(&m), Err((400, "Extra whitespace in Request-Line")));
}

/// §3.1.2.11 escruri: escaped headers in a Request-URI, which RFC 3261 §19.1.1 forbids.
/// The URI itself is well-formed (`<` `>` are escaped). 400.
#[test]
fn rfc4475_escruri() {
    let buf = fixture!("rfc4475", "escruri");
    let m = stream(buf);
    assert_eq!(
        check(&m),
        Err((400, "Request-URI must not contain headers"))
    );
    let ruri = m.request_uri().unwrap().unwrap();
    assert_eq!(
        ruri.headers().next(),
        Some(("Route", "%3Csip:example.com%3E"))
    );
}

/// §3.1.2.12 baddate: a Date not in GMT (RFC 3261 §20.17). 400.
#[test]
fn rfc4475_baddate() {
    let buf = fixture!("rfc4475", "baddate");
    let m = stream(buf);
    assert_eq!(check(&m), Err((400, "Malformed Date header")));
}

/// §3.1.2.13 regbadct: a Contact URI with `?` outside angle brackets (RFC 3261 §20.10).
/// 400.
#[test]
fn rfc4475_regbadct() {
    let buf = fixture!("rfc4475", "regbadct");
    let m = stream(buf);
    assert_eq!(check(&m), Err((400, "Malformed Contact header")));
    assert_eq!(m.contact(), Some(Err(SyntaxError::Unbracketed)));
}

/// §3.1.2.14 badaspec: whitespace inside the angle brackets of To. 400.
#[test]
fn rfc4475_badaspec() {
    let buf = fixture!("rfc4475", "badaspec");
    let m = stream(buf);
    assert_eq!(check(&m), Err((400, "Malformed To header")));
    assert_eq!(m.to(), Some(Err(SyntaxError::Angle)));
    // The quoted display name with a comma in From is fine.
    assert_eq!(
        m.from().unwrap().unwrap().display_name(),
        Some("Bell, Alexander")
    );
}

/// §3.1.2.15 baddn: unquoted display names containing a comma in From and To. 400.
#[test]
fn rfc4475_baddn() {
    let buf = fixture!("rfc4475", "baddn");
    let m = stream(buf);
    assert_eq!(check(&m), Err((400, "Malformed To header")));
    assert_eq!(m.from(), Some(Err(SyntaxError::DisplayName)));
    assert_eq!(m.to(), Some(Err(SyntaxError::DisplayName)));
}

/// §3.1.2.16 badvers: SIP/7.0. The stream parser refuses it (505); the header block is
/// still recovered so the 505 can be sent, and `check_request` agrees.
#[test]
fn rfc4475_badvers() {
    let buf = fixture!("rfc4475", "badvers");
    let e = parse_err(buf);
    assert_eq!((e, e.status()), (ParseError::VersionNotSupported, 505));
    let h = head(buf);
    assert_eq!(check(&h), Err((505, "Version Not Supported")));
    assert_eq!(h.version(), drhub::sip::Version { major: 7, minor: 0 });
}

/// §3.1.2.17 mismatch01: CSeq method INVITE on an OPTIONS. 400.
#[test]
fn rfc4475_mismatch01() {
    let buf = fixture!("rfc4475", "mismatch01");
    let m = stream(buf);
    assert_eq!(
        check(&m),
        Err((400, "CSeq method does not match request method"))
    );
}

/// §3.1.2.18 mismatch02: unknown method NEWMETHOD with CSeq INVITE. 400 (not 501: the
/// message is invalid before the method is considered).
#[test]
fn rfc4475_mismatch02() {
    let buf = fixture!("rfc4475", "mismatch02");
    let m = stream(buf);
    assert_eq!(m.method(), Some(Method::Other("NEWMETHOD")));
    assert_eq!(
        check(&m),
        Err((400, "CSeq method does not match request method"))
    );
}

/// §3.1.2.19 bigcode: status code 4294967301. Not a Status-Line; a response cannot be
/// answered, so the receiver drops it (and on a stream closes the connection).
#[test]
fn rfc4475_bigcode() {
    let buf = fixture!("rfc4475", "bigcode");
    assert_eq!(parse_err(buf), ParseError::BadStatusLine);
    assert_eq!(
        Message::parse_head(buf).unwrap_err(),
        ParseError::BadStatusLine
    );
}

// =======================================================================================
// RFC 4475 §3.2: transaction layer.
// =======================================================================================

/// §3.2.1 badbranch: the branch is the bare magic cookie, so it cannot key an RFC 3261
/// transaction; the transaction layer falls back to RFC 2543 matching. Parses and checks.
#[test]
fn rfc4475_badbranch() {
    let buf = fixture!("rfc4475", "badbranch");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    let via = m.top_via().unwrap().unwrap();
    assert!(via.has_magic_cookie());
    assert_eq!(via.rfc3261_branch(), None);
}

// =======================================================================================
// RFC 4475 §3.3: application layer. Well-formed; the application answers.
// =======================================================================================

/// §3.3.1 insuf: no To, From or Call-ID. The RFC wants a 400; the mandatory-header rule
/// of RFC 3261 §8.1.1 is part of `check_request`, so the 400 comes from there.
#[test]
fn rfc4475_insuf() {
    let buf = fixture!("rfc4475", "insuf");
    let m = stream(buf);
    assert_eq!(check(&m), Err((400, "Missing To header")));
    assert_eq!(m.from(), None);
    assert_eq!(m.call_id(), None);
}

/// §3.3.2 unkscm: unknown Request-URI scheme. Parses and checks; the application
/// answers 416 Unsupported URI Scheme.
#[test]
fn rfc4475_unkscm() {
    let buf = fixture!("rfc4475", "unkscm");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    let ruri = m.request_uri().unwrap().unwrap();
    assert_eq!(ruri.scheme(), Scheme::Other("nobodyKnowsThisScheme"));
    assert_eq!(ruri.opaque(), "totallyopaquecontent");
}

/// §3.3.3 novelsc: a hierarchical URI of a novel scheme. Parses and checks; the
/// application answers 416.
#[test]
fn rfc4475_novelsc() {
    let buf = fixture!("rfc4475", "novelsc");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    let ruri = m.request_uri().unwrap().unwrap();
    assert_eq!(ruri.scheme(), Scheme::Other("soap.beep"));
    assert_eq!(ruri.host(), None);
}

/// §3.3.4 unksm2: non-SIP URIs in To (unbracketed), From and Contact. Parses and checks;
/// a registrar answers 400 (an address-of-record must be SIP or SIPS), a proxy forwards.
#[test]
fn rfc4475_unksm2() {
    let buf = fixture!("rfc4475", "unksm2");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    assert_eq!(
        m.to().unwrap().unwrap().uri().scheme(),
        Scheme::Other("isbn")
    );
    assert_eq!(
        m.from().unwrap().unwrap().uri().scheme(),
        Scheme::Other("http")
    );
    let c = m.contact().unwrap().unwrap();
    assert_eq!(c.uri().unwrap().as_str(), "name:John_Smith");
}

/// §3.3.5 bext01: unknown Require and Proxy-Require options. Parses and checks; the
/// application answers 420 Bad Extension listing them in Unsupported.
#[test]
fn rfc4475_bext01() {
    let buf = fixture!("rfc4475", "bext01");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    let req: Vec<_> = m.values(HeaderName::Require).collect();
    assert_eq!(req, ["nothingSupportsThis", "nothingSupportsThisEither"]);
    assert_eq!(m.values(HeaderName::ProxyRequire).count(), 2);
}

/// §3.3.6 invut: unknown body type. Parses and checks; the application answers 415.
#[test]
fn rfc4475_invut() {
    let buf = fixture!("rfc4475", "invut");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    assert_eq!(
        m.header(HeaderName::ContentType),
        Some("application/unknownformat")
    );
    assert_eq!(m.body().len(), 40);
}

/// §3.3.7 regaut01: Authorization with an unknown scheme. Parses and checks; a registrar
/// challenges (401).
#[test]
fn rfc4475_regaut01() {
    let buf = fixture!("rfc4475", "regaut01");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    assert_eq!(
        m.header(HeaderName::Authorization),
        Some("NoOneKnowsThisScheme opaque-data=here")
    );
}

/// §3.3.8 multi01: several To, From, Call-ID, CSeq and Max-Forwards. The RFC wants a 400;
/// "exactly once" is part of `check_request`, so the 400 comes from there.
#[test]
fn rfc4475_multi01() {
    let buf = fixture!("rfc4475", "multi01");
    let m = stream(buf);
    assert_eq!(check(&m), Err((400, "Multiple To headers")));
    assert_eq!(m.count(HeaderName::CSeq), 2);
}

/// §3.3.9 mcl01: two different Content-Length values. On a stream the framing is
/// ambiguous: a framing fault (400 where possible, then close). The header block still
/// parses, and `check_request` names the duplicate.
#[test]
fn rfc4475_mcl01() {
    let buf = fixture!("rfc4475", "mcl01");
    assert_eq!(parse_err(buf), ParseError::ConflictingContentLength);
    let h = head(buf);
    assert_eq!(check(&h), Err((400, "Multiple Content-Length headers")));
}

/// §3.3.10 bcast: a response whose second Via is 255.255.255.255. Parses and checks; the
/// application must never send to a broadcast address when it forwards the response.
#[test]
fn rfc4475_bcast() {
    let buf = fixture!("rfc4475", "bcast");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    let second = m.vias().nth(1).unwrap().unwrap();
    assert_eq!(second.host(), Host::V4(Ipv4Addr::BROADCAST));
}

/// §3.3.11 zeromf: Max-Forwards 0. Parses and checks; the OPTIONS target answers it
/// normally (drhub's own 200, DR-OPT-1), a proxy that must forward answers 483.
#[test]
fn rfc4475_zeromf() {
    let buf = fixture!("rfc4475", "zeromf");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    assert_eq!(m.max_forwards(), Some(Ok(MaxForwards(0))));
}

/// §3.3.12 cparam01: unbracketed Contact, so `unknownparam` is a contact parameter, not a
/// URI parameter (RFC 3261 §20.10). The REGISTER succeeds.
#[test]
fn rfc4475_cparam01() {
    let buf = fixture!("rfc4475", "cparam01");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    let c = m.contact().unwrap().unwrap();
    let a = c.addr().unwrap();
    assert!(!a.is_bracketed());
    assert!(a.param("unknownparam").is_some());
    assert!(a.uri().params().is_empty());
}

/// §3.3.13 cparam02: the same parameter inside the brackets is a URI parameter.
#[test]
fn rfc4475_cparam02() {
    let buf = fixture!("rfc4475", "cparam02");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    let c = m.contact().unwrap().unwrap();
    let a = c.addr().unwrap();
    assert!(a.params().is_empty());
    assert!(a.uri().param("unknownparam").is_some());
}

/// §3.3.14 regescrt: an escaped Route header inside a bracketed Contact URI. Valid; the
/// registrar keeps it with the binding.
#[test]
fn rfc4475_regescrt() {
    let buf = fixture!("rfc4475", "regescrt");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    let c = m.contact().unwrap().unwrap();
    let (name, value) = c.uri().unwrap().headers().next().unwrap();
    assert_eq!(name, "Route");
    assert_eq!(decoded(value), b"<sip:sip.example.com>");
}

/// §3.3.15 sdp01: Accept does not include the body type the UAS would answer with.
/// Parses and checks; the UAS answers 406 Not Acceptable.
#[test]
fn rfc4475_sdp01() {
    let buf = fixture!("rfc4475", "sdp01");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    assert_eq!(m.header(HeaderName::Accept), Some("text/nobodyKnowsThis"));
}

// =======================================================================================
// RFC 4475 §3.4: backward compatibility.
// =======================================================================================

/// §3.4.1 inv2543: an RFC 2543 INVITE (no branch, no From tag, no Max-Forwards, no
/// Content-Length) that must be accepted. On a stream the missing Content-Length is a
/// framing fault (RFC 3261 §18.3); the message itself checks fine, and framed with a
/// Content-Length (as a stream sender must) it parses and checks.
#[test]
fn rfc4475_inv2543() {
    let buf = fixture!("rfc4475", "inv2543");
    assert_eq!(parse_err(buf), ParseError::MissingContentLength);
    let h = head(buf);
    assert_eq!(check(&h), Ok(()));
    let via = h.top_via().unwrap().unwrap();
    assert_eq!(via.branch(), None);
    assert_eq!(h.from().unwrap().unwrap().tag(), None);
    assert_eq!(h.max_forwards(), None);

    let split = h.len() - 2;
    let body_len = buf.len() - h.len();
    let mut framed = buf[..split].to_vec();
    framed.extend_from_slice(format!("Content-Length: {body_len}\r\n").as_bytes());
    framed.extend_from_slice(&buf[split..]);
    let m = stream(&framed);
    assert_eq!(check(&m), Ok(()));
    assert_eq!(m.body().len(), body_len);
}

// =======================================================================================
// RFC 5118: IPv6.
// =======================================================================================

/// §4.1 ipv6-good: IPv6 references in Request-URI, Via and Contact. Valid.
#[test]
fn rfc5118_ipv6_good() {
    let buf = fixture!("rfc5118", "ipv6-good");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    assert_eq!(
        m.request_uri().unwrap().unwrap().host(),
        Some(v6("2001:db8::10"))
    );
    assert_eq!(m.top_via().unwrap().unwrap().host(), v6("2001:db8::9:1"));
    let c = m.contact().unwrap().unwrap();
    assert_eq!(c.uri().unwrap().host(), Some(v6("2001:db8::1")));
    assert!(c.uri().unwrap().host().is_some_and(|h| h.is_ip()));
}

/// §4.2 ipv6-bad: an IPv6 address without brackets in the Request-URI. Invalid: 400.
#[test]
fn rfc5118_ipv6_bad() {
    let buf = fixture!("rfc5118", "ipv6-bad");
    let m = stream(buf);
    assert_eq!(check(&m), Err((400, "Malformed Request-URI")));
}

/// §4.3 port-ambiguous: `[2001:db8::10:5070]` is an address whose last group is 5070;
/// there is no port. Valid.
#[test]
fn rfc5118_port_ambiguous() {
    let buf = fixture!("rfc5118", "port-ambiguous");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    let ruri = m.request_uri().unwrap().unwrap();
    assert_eq!(ruri.host(), Some(v6("2001:db8::10:5070")));
    assert_eq!(ruri.port(), None);
}

/// §4.4 port-unambiguous: `[2001:db8::10]:5070` has port 5070. Valid.
#[test]
fn rfc5118_port_unambiguous() {
    let buf = fixture!("rfc5118", "port-unambiguous");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    let ruri = m.request_uri().unwrap().unwrap();
    assert_eq!(ruri.host(), Some(v6("2001:db8::10")));
    assert_eq!(ruri.port(), Some(5070));
}

/// §4.5 via-received-param-with-delim: `received=[...]`. RFC 3261's grammar has no
/// brackets there, but §4.5 asks receivers to accept both forms. Valid.
#[test]
fn rfc5118_via_received_param_with_delim() {
    let buf = fixture!("rfc5118", "via-received-param-with-delim");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    let via = m.top_via().unwrap().unwrap();
    assert_eq!(
        via.received(),
        Some("2001:db8::9:255".parse::<IpAddr>().unwrap())
    );
}

/// §4.5 via-received-param-no-delim: `received=` without brackets, the RFC 3261 form.
/// Valid.
#[test]
fn rfc5118_via_received_param_no_delim() {
    let buf = fixture!("rfc5118", "via-received-param-no-delim");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    let via = m.top_via().unwrap().unwrap();
    assert_eq!(
        via.received(),
        Some("2001:db8::9:255".parse::<IpAddr>().unwrap())
    );
    assert_eq!(via.branch(), Some("z9hG4bKas3"));
}

/// Frames an RFC 5118 message whose Content-Length is shorter than the body stored in the
/// file (the RFC's lengths do not count these files' CRLF body lines). On a stream the
/// message frames at Content-Length, and the left-over bytes are the start of the "next
/// message": a complete line that is no Request-Line, so a framing fault (the connection
/// closes; the message before it was already delivered intact).
fn short_content_length(buf: &[u8], left_over: usize) -> Message<'_> {
    let m = stream(buf);
    assert_eq!(buf.len() - m.len(), left_over);
    let rest = &buf[m.len()..];
    assert!(rest.ends_with(b"/90000\r\n"));
    assert_eq!(parse_err(rest), ParseError::BadRequestLine);
    m
}

/// §4.6 ipv6-in-sdp: IPv6 in the SDP body. Valid; the headers check. See
/// `short_content_length` for what a stream makes of the file's Content-Length.
#[test]
fn rfc5118_ipv6_in_sdp() {
    let buf = fixture!("rfc5118", "ipv6-in-sdp");
    let m = short_content_length(buf, 10);
    assert_eq!(check(&m), Ok(()));
    assert_eq!(m.body().len(), 241);
    assert_eq!(
        m.to().unwrap().unwrap().uri().host(),
        Some(v6("2001:db8::10"))
    );
}

/// §4.7 mult-ip-in-header: IPv6 and IPv4 Vias in one message, `received` IPv4 on an IPv6
/// sent-by. Valid.
#[test]
fn rfc5118_mult_ip_in_header() {
    let buf = fixture!("rfc5118", "mult-ip-in-header");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    let vias: Vec<_> = m.vias().map(|v| v.unwrap()).collect();
    assert_eq!(vias[0].host(), v6("2001:db8::9:1"));
    assert_eq!(vias[0].port(), Some(6050));
    assert_eq!(vias[1].host(), Host::V4(Ipv4Addr::new(192, 0, 2, 1)));
    assert_eq!(vias[2].transport(), ViaTransport::Tcp);
    assert_eq!(
        vias[2].received(),
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 200)))
    );
}

/// §4.8 mult-ip-in-sdp: IPv4 and IPv6 media lines. Valid; body not interpreted here.
#[test]
fn rfc5118_mult_ip_in_sdp() {
    let buf = fixture!("rfc5118", "mult-ip-in-sdp");
    let m = short_content_length(buf, 8);
    assert_eq!(check(&m), Ok(()));
    assert_eq!(
        m.contact().unwrap().unwrap().uri().unwrap().host(),
        Some(v6("2001:db8::9:1"))
    );
}

/// §4.9 ipv4-mapped-ipv6: `::ffff:192.0.2.2` forms in Via and Contact. Valid.
#[test]
fn rfc5118_ipv4_mapped_ipv6() {
    let buf = fixture!("rfc5118", "ipv4-mapped-ipv6");
    let m = short_content_length(buf, 9);
    assert_eq!(check(&m), Ok(()));
    let vias: Vec<_> = m.vias().map(|v| v.unwrap()).collect();
    assert_eq!(vias[0].host(), v6("::ffff:192.0.2.10"));
    assert_eq!(vias[0].port(), Some(19823));
    assert_eq!(vias[1].host(), v6("::ffff:192.0.2.2"));
    let c = m.contact().unwrap().unwrap();
    assert_eq!(c.addr().unwrap().display_name(), Some("T. desk phone"));
    assert_eq!(c.uri().unwrap().host(), Some(v6("::ffff:192.0.2.2")));
}

/// §4.10 ipv6-correct-abnf-2-colons: the correct form of an IPv6 address with an embedded
/// IPv4 part. Valid.
#[test]
fn rfc5118_ipv6_correct_abnf_2_colons() {
    let buf = fixture!("rfc5118", "ipv6-correct-abnf-2-colons");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    assert_eq!(
        m.request_uri().unwrap().unwrap().host(),
        Some(v6("2001:db8::192.0.2.1"))
    );
}

/// §4.10 ipv6-bug-abnf-3-colons: the three-colon form RFC 3261's ABNF (from RFC 2373)
/// derives. RFC 5118 says an implementation must tolerate both forms; drhub reads it as
/// the same address as the two-colon form (see `uri::parse_ipv6`).
#[test]
fn rfc5118_ipv6_bug_abnf_3_colons() {
    let buf = fixture!("rfc5118", "ipv6-bug-abnf-3-colons");
    let m = stream(buf);
    assert_eq!(check(&m), Ok(()));
    assert_eq!(
        m.request_uri().unwrap().unwrap().host(),
        Some(v6("2001:db8::192.0.2.1"))
    );
    assert_eq!(
        m.to().unwrap().unwrap().uri().host(),
        Some(v6("2001:db8::192.0.2.1"))
    );
}

// =======================================================================================
// Across the corpus.
// =======================================================================================

/// Every torture file either frames, waits, or fails with a ParseError; none panics, and
/// every header block the stream parser accepts is also accepted by `parse_head`.
#[test]
fn every_file_is_handled_without_panic() {
    for dir in ["tests/torture/rfc4475", "tests/torture/rfc5118"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut n = 0;
        for entry in std::fs::read_dir(path).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_none_or(|e| e != "dat") {
                continue;
            }
            n += 1;
            let buf = std::fs::read(&p).unwrap();
            if let Ok(Status::Complete(m)) = Message::parse(&buf, &Limits::default()) {
                let _ = check(&m);
                for c in m.contacts().flatten() {
                    let _ = c.uri().map(|u| u.is_phone());
                }
                assert!(Message::parse_head(&buf).is_ok(), "{p:?}");
            }
            let _ = Contact::parse("*");
        }
        assert!(n >= 12, "{dir} has its files");
    }
}
