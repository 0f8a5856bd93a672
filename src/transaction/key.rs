//! Transaction keys (RFC 3261 §17.1.3, §17.2.3) and the branch generator (§8.1.1.7).
//!
//! A key owns copies of exactly the fields the RFC matches on, so it outlives the read
//! buffer the message came in, and it is a type rather than a string: a server key can
//! never be looked up among client transactions, and two keys are equal exactly when the
//! RFC says the messages belong to the same transaction.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sip::{HeaderName, Message, Method, StartLine, Via, MAGIC_COOKIE};

/// Why a message cannot be keyed: a header the matching rules need is missing or
/// malformed. The transport answers such requests with 400 (DR-ERR-3) or drops them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A response was given where a request was expected.
    #[error("not a request")]
    NotARequest,
    /// A request was given where a response was expected.
    #[error("not a response")]
    NotAResponse,
    /// No Via header.
    #[error("missing Via header")]
    MissingVia,
    /// The top Via does not parse.
    #[error("malformed top Via header")]
    MalformedVia,
    /// The top Via of a response, or of a request drhub sends, has no `z9hG4bK` branch:
    /// client transactions only exist for RFC 3261 branches (§17.1.3).
    #[error("top Via has no RFC 3261 branch")]
    NoRfc3261Branch,
    /// No CSeq header, or one that does not parse.
    #[error("missing or malformed CSeq header")]
    BadCSeq,
    /// RFC 2543 matching needs Call-ID.
    #[error("missing Call-ID header")]
    MissingCallId,
    /// RFC 2543 matching needs the From tag.
    #[error("missing or malformed From header")]
    BadFrom,
    /// RFC 2543 matching needs the To tag.
    #[error("missing or malformed To header")]
    BadTo,
}

/// A request method owned by a key: the RFC methods without allocation, others copied.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxMethod(MethodRepr);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum MethodRepr {
    Known(Method<'static>),
    Other(Box<str>),
}

impl TxMethod {
    /// INVITE, the method that selects the INVITE state machines.
    pub const INVITE: TxMethod = TxMethod(MethodRepr::Known(Method::Invite));

    /// Copies `method` out of the message.
    pub fn new(method: Method<'_>) -> TxMethod {
        let known = match method {
            Method::Invite => Method::Invite,
            Method::Ack => Method::Ack,
            Method::Bye => Method::Bye,
            Method::Cancel => Method::Cancel,
            Method::Options => Method::Options,
            Method::Register => Method::Register,
            Method::Refer => Method::Refer,
            Method::Notify => Method::Notify,
            Method::Subscribe => Method::Subscribe,
            Method::Update => Method::Update,
            Method::Info => Method::Info,
            Method::Prack => Method::Prack,
            Method::Message => Method::Message,
            Method::Publish => Method::Publish,
            Method::Other(s) => return TxMethod(MethodRepr::Other(s.into())),
        };
        TxMethod(MethodRepr::Known(known))
    }

    /// The method.
    pub fn method(&self) -> Method<'_> {
        match &self.0 {
            MethodRepr::Known(m) => *m,
            MethodRepr::Other(s) => Method::Other(s),
        }
    }

    /// True for INVITE.
    pub fn is_invite(&self) -> bool {
        self.method() == Method::Invite
    }
}

impl fmt::Display for TxMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.method().as_str())
    }
}

/// The top Via sent-by, host lower-cased (hosts compare case-insensitively, §19.1.4) and
/// the port as written (a retransmission repeats it byte for byte).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SentBy {
    host: Box<str>,
    port: Option<u16>,
}

impl SentBy {
    fn of(via: &Via<'_>) -> SentBy {
        SentBy {
            host: via.host().to_string().to_ascii_lowercase().into(),
            port: via.port(),
        }
    }
}

impl fmt::Display for SentBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// RFC 3261 §17.2.3 key of a request whose top Via branch carries the magic cookie:
/// branch, sent-by, and method (ACK folded into INVITE).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rfc3261Key {
    branch: Box<str>,
    sent_by: SentBy,
    method: TxMethod,
}

/// RFC 3261 §17.2.3 (last paragraphs) key of a request from an RFC 2543 peer, whose top
/// Via has no magic-cookie branch: Request-URI, To tag, From tag, Call-ID, CSeq number,
/// top Via and method (ACK folded into INVITE), each copied as received.
///
/// Fields compare byte for byte, which is what a retransmission produces; the RFC's
/// per-field equivalence rules would only matter for re-encoded copies, which RFC 2543
/// peers do not send.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rfc2543Key {
    request_uri: Box<str>,
    to_tag: Option<Box<str>>,
    from_tag: Option<Box<str>>,
    call_id: Box<str>,
    cseq: u32,
    top_via: Box<str>,
    method: TxMethod,
}

/// Identifies a server transaction (RFC 3261 §17.2.3).
///
/// Guarantees: a retransmitted request and the ACK for a non-2xx final response produce
/// the key of the INVITE transaction they belong to; a CANCEL has a key of its own, and
/// [`ServerKey::invite_for_cancel`] gives the key of the INVITE it cancels (§9.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerKey {
    /// Top Via branch starts with `z9hG4bK` (and has more after it).
    Rfc3261(Rfc3261Key),
    /// No usable branch: RFC 2543 matching. Boxed: rare and larger.
    Rfc2543(Box<Rfc2543Key>),
}

impl ServerKey {
    /// The key of a received request. ACK maps to INVITE (§17.2.3: "the method of the
    /// request matches the one that created the transaction, except for ACK").
    ///
    /// For an RFC 2543 ACK the To tag is the ACK's own, which equals the To tag of the
    /// *response*, not of the INVITE; the layer falls back to
    /// [`without_to_tag`](Self::without_to_tag) and checks the response's tag.
    pub fn from_request(msg: &Message<'_>) -> Result<ServerKey, KeyError> {
        let StartLine::Request { method, uri, .. } = *msg.start_line() else {
            return Err(KeyError::NotARequest);
        };
        let method = match method {
            Method::Ack => TxMethod::INVITE,
            m => TxMethod::new(m),
        };
        let top = msg
            .values(HeaderName::Via)
            .next()
            .ok_or(KeyError::MissingVia)?;
        let via = Via::parse(top).map_err(|_| KeyError::MalformedVia)?;
        if let Some(branch) = via.rfc3261_branch() {
            return Ok(ServerKey::Rfc3261(Rfc3261Key {
                branch: branch.into(),
                sent_by: SentBy::of(&via),
                method,
            }));
        }
        // RFC 3261 §17.2.3: "If the branch parameter in the top Via header field is not
        // present, or does not contain the magic cookie", RFC 2543 matching applies.
        let cseq = msg.cseq().and_then(Result::ok).ok_or(KeyError::BadCSeq)?;
        let call_id = msg.call_id().ok_or(KeyError::MissingCallId)?;
        let from = msg.from().and_then(Result::ok).ok_or(KeyError::BadFrom)?;
        let to = msg.to().and_then(Result::ok).ok_or(KeyError::BadTo)?;
        Ok(ServerKey::Rfc2543(Box::new(Rfc2543Key {
            request_uri: uri.into(),
            to_tag: to.tag().map(Into::into),
            from_tag: from.tag().map(Into::into),
            call_id: call_id.into(),
            cseq: cseq.seq,
            top_via: top.into(),
            method,
        })))
    }

    /// For a CANCEL's key, the key of the INVITE server transaction it cancels: the same
    /// fields with the method INVITE (§9.2 applies §17.2.3 "assuming that the request
    /// method is anything but CANCEL or ACK"). `None` for other methods.
    pub fn invite_for_cancel(&self) -> Option<ServerKey> {
        if self.method().method() != Method::Cancel {
            return None;
        }
        Some(match self {
            ServerKey::Rfc3261(k) => ServerKey::Rfc3261(Rfc3261Key {
                method: TxMethod::INVITE,
                ..k.clone()
            }),
            ServerKey::Rfc2543(k) => ServerKey::Rfc2543(Box::new(Rfc2543Key {
                method: TxMethod::INVITE,
                ..(**k).clone()
            })),
        })
    }

    /// For an RFC 2543 key, the same key with no To tag: how the INVITE that created the
    /// transaction looked when the ACK carries the tag of the response. `None` for RFC 3261
    /// keys and for keys already without a To tag.
    pub fn without_to_tag(&self) -> Option<ServerKey> {
        match self {
            ServerKey::Rfc2543(k) if k.to_tag.is_some() => {
                Some(ServerKey::Rfc2543(Box::new(Rfc2543Key {
                    to_tag: None,
                    ..(**k).clone()
                })))
            }
            _ => None,
        }
    }

    /// The RFC 2543 To tag this key carries, if any.
    pub fn rfc2543_to_tag(&self) -> Option<&str> {
        match self {
            ServerKey::Rfc2543(k) => k.to_tag.as_deref(),
            ServerKey::Rfc3261(_) => None,
        }
    }

    /// The transaction's method (INVITE for an ACK's key).
    pub fn method(&self) -> &TxMethod {
        match self {
            ServerKey::Rfc3261(k) => &k.method,
            ServerKey::Rfc2543(k) => &k.method,
        }
    }

    /// The branch, for RFC 3261 keys.
    pub fn branch(&self) -> Option<&str> {
        match self {
            ServerKey::Rfc3261(k) => Some(&k.branch),
            ServerKey::Rfc2543(_) => None,
        }
    }

    /// True if this transaction is matched by RFC 2543 rules.
    pub fn is_rfc2543(&self) -> bool {
        matches!(self, ServerKey::Rfc2543(_))
    }
}

impl fmt::Display for ServerKey {
    /// `branch@sent-by/METHOD`, or `rfc2543:call-id/cseq/METHOD`: for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerKey::Rfc3261(k) => write!(f, "{}@{}/{}", k.branch, k.sent_by, k.method),
            ServerKey::Rfc2543(k) => write!(f, "rfc2543:{}/{}/{}", k.call_id, k.cseq, k.method),
        }
    }
}

/// Identifies a client transaction (RFC 3261 §17.1.3): the branch of the top Via drhub
/// put in the request, and the CSeq method (a CANCEL shares the INVITE's branch but is a
/// transaction of its own).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey {
    branch: Box<str>,
    method: TxMethod,
}

impl ClientKey {
    /// The key of a request drhub is about to send; its top Via must carry an RFC 3261
    /// branch (made by [`Branch::generate`]).
    pub fn from_request(msg: &Message<'_>) -> Result<ClientKey, KeyError> {
        let method = msg.method().ok_or(KeyError::NotARequest)?;
        Ok(ClientKey {
            branch: top_branch(msg)?.into(),
            method: TxMethod::new(method),
        })
    }

    /// The key a received response matches: top Via branch and CSeq method.
    pub fn from_response(msg: &Message<'_>) -> Result<ClientKey, KeyError> {
        if msg.is_request() {
            return Err(KeyError::NotAResponse);
        }
        let cseq = msg.cseq().and_then(Result::ok).ok_or(KeyError::BadCSeq)?;
        Ok(ClientKey {
            branch: top_branch(msg)?.into(),
            method: TxMethod::new(cseq.method),
        })
    }

    /// The branch.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The method of the request.
    pub fn method(&self) -> &TxMethod {
        &self.method
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.branch, self.method)
    }
}

fn top_branch<'b>(msg: &Message<'b>) -> Result<&'b str, KeyError> {
    let top = msg
        .values(HeaderName::Via)
        .next()
        .ok_or(KeyError::MissingVia)?;
    let via = Via::parse(top).map_err(|_| KeyError::MalformedVia)?;
    via.rfc3261_branch().ok_or(KeyError::NoRfc3261Branch)
}

/// Either kind of key: names the transaction a transmission belongs to, so a transport
/// failure can be reported back to it (§17.1.4, §17.2.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TxKey {
    /// A server transaction.
    Server(ServerKey),
    /// A client transaction.
    Client(ClientKey),
}

impl fmt::Display for TxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxKey::Server(k) => write!(f, "server {k}"),
            TxKey::Client(k) => write!(f, "client {k}"),
        }
    }
}

/// A fresh Via branch: `z9hG4bK`, 64 random bits, and a process-wide counter.
///
/// Guarantees uniqueness within the process (the counter) and, with overwhelming
/// probability, across restarts and hosts (the random part), as §8.1.1.7 asks. Only
/// token characters, so it can be written into a Via as is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Branch(Box<str>);

impl Branch {
    /// Generates a new branch.
    pub fn generate() -> Branch {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Branch(format!("{MAGIC_COOKIE}{:016x}{n:x}", fastrand::u64(..)).into())
    }

    /// The branch text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Branch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{Limits, Status};
    use std::collections::HashSet;

    fn parse(buf: &[u8]) -> Message<'_> {
        match Message::parse(buf, &Limits::default()) {
            Ok(Status::Complete(m)) => m,
            other => panic!("test message did not parse: {other:?}"),
        }
    }

    fn request(start: &str, via: &str, to: &str, cseq: &str) -> Vec<u8> {
        format!(
            "{start}\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:+1@sbc1.adatum.biz>;tag=f1\r\n\
To: {to}\r\nCall-ID: c1@sbc1\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    const INV: &str = "INVITE sip:+2@sip.pstnhub.microsoft.com SIP/2.0";
    const VIA: &str = "SIP/2.0/TLS sbc1.adatum.biz:5061;branch=z9hG4bKabc";
    const TO: &str = "<sip:+2@sip.pstnhub.microsoft.com>";

    fn key(buf: &[u8]) -> Result<ServerKey, KeyError> {
        ServerKey::from_request(&parse(buf))
    }

    #[test]
    fn server_key_rfc3261_matching_table() {
        let invite = key(&request(INV, VIA, TO, "1 INVITE")).unwrap();
        assert!(!invite.is_rfc2543());
        assert_eq!(invite.branch(), Some("z9hG4bKabc"));
        assert!(invite.method().is_invite());
        assert_eq!(invite.to_string(), "z9hG4bKabc@sbc1.adatum.biz:5061/INVITE");
        // (request, same transaction as the INVITE?)
        let cases: &[(Vec<u8>, bool)] = &[
            // A retransmission.
            (request(INV, VIA, TO, "1 INVITE"), true),
            // Host case does not matter; the ACK for a non-2xx carries the response's To tag.
            (
                request(
                    "ACK sip:+2@sip.pstnhub.microsoft.com SIP/2.0",
                    "SIP/2.0/TLS SBC1.Adatum.BIZ:5061;branch=z9hG4bKabc",
                    "<sip:+2@sip.pstnhub.microsoft.com>;tag=x",
                    "1 ACK",
                ),
                true,
            ),
            // Another branch, another sent-by port, another method: other transactions.
            (
                request(
                    INV,
                    "SIP/2.0/TLS sbc1.adatum.biz:5061;branch=z9hG4bKabd",
                    TO,
                    "1 INVITE",
                ),
                false,
            ),
            (
                request(
                    INV,
                    "SIP/2.0/TLS sbc1.adatum.biz:5062;branch=z9hG4bKabc",
                    TO,
                    "1 INVITE",
                ),
                false,
            ),
            (
                request(
                    INV,
                    "SIP/2.0/TLS sbc1.adatum.biz;branch=z9hG4bKabc",
                    TO,
                    "1 INVITE",
                ),
                false,
            ),
            // Branches compare byte for byte.
            (
                request(
                    INV,
                    "SIP/2.0/TLS sbc1.adatum.biz:5061;branch=z9hG4bKABC",
                    TO,
                    "1 INVITE",
                ),
                false,
            ),
            (
                request(
                    "CANCEL sip:+2@sip.pstnhub.microsoft.com SIP/2.0",
                    VIA,
                    TO,
                    "1 CANCEL",
                ),
                false,
            ),
            (
                request(
                    "BYE sip:+2@sip.pstnhub.microsoft.com SIP/2.0",
                    VIA,
                    TO,
                    "2 BYE",
                ),
                false,
            ),
        ];
        for (buf, same) in cases {
            let k = key(buf).unwrap();
            assert_eq!(k == invite, *same, "{}", String::from_utf8_lossy(buf));
        }
    }

    #[test]
    fn cancel_finds_the_invite_it_cancels() {
        let invite = key(&request(INV, VIA, TO, "1 INVITE")).unwrap();
        let cancel = key(&request(
            "CANCEL sip:+2@sip.pstnhub.microsoft.com SIP/2.0",
            VIA,
            TO,
            "1 CANCEL",
        ))
        .unwrap();
        assert_ne!(cancel, invite);
        assert_eq!(cancel.invite_for_cancel(), Some(invite.clone()));
        assert_eq!(invite.invite_for_cancel(), None);
        // RFC 2543 too.
        let old = "SIP/2.0/UDP 192.0.2.1";
        let invite = key(&request(INV, old, TO, "1 INVITE")).unwrap();
        let cancel = key(&request(
            "CANCEL sip:+2@sip.pstnhub.microsoft.com SIP/2.0",
            old,
            TO,
            "1 CANCEL",
        ))
        .unwrap();
        assert!(cancel.is_rfc2543());
        assert_eq!(cancel.invite_for_cancel(), Some(invite));
    }

    /// RFC 4475 §3.2.1 `badbranch`: a bare magic cookie is not an RFC 3261 branch.
    #[test]
    fn rfc2543_matching_without_magic_cookie() {
        let badbranch = b"OPTIONS sip:user@example.com SIP/2.0\r\n\
To: sip:user@example.com\r\n\
From: sip:caller@example.org;tag=33242\r\n\
Max-Forwards: 3\r\n\
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK\r\n\
Accept: application/sdp\r\n\
Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n\r\n\
CSeq: 8 OPTIONS\r\n\
l: 0\r\n\r\n";
        let k = key(badbranch).unwrap();
        assert!(k.is_rfc2543());
        assert_eq!(k.branch(), None);
        assert_eq!(
            k.to_string(),
            "rfc2543:badbranch.sadonfo23i420jv0as0derf3j3n/8/OPTIONS"
        );
        assert_eq!(key(badbranch).unwrap(), k, "a retransmission matches");
        let text = std::str::from_utf8(badbranch).unwrap();
        // Each field the RFC lists takes part in the match.
        for (from, to) in [
            ("sip:user@example.com SIP", "sip:user2@example.com SIP"),
            ("tag=33242", "tag=33243"),
            ("To: sip:user@example.com", "To: sip:user@example.com;tag=t"),
            ("badbranch.sadonfo", "goodbranch.sadonfo"),
            ("CSeq: 8", "CSeq: 9"),
            ("192.0.2.1", "192.0.2.2"),
        ] {
            let changed = text.replace(from, to);
            assert_ne!(key(changed.as_bytes()).unwrap(), k, "{from} -> {to}");
        }
        // No branch at all.
        let none = text.replace(";branch=z9hG4bK", "");
        assert!(key(none.as_bytes()).unwrap().is_rfc2543());
        // An RFC 2543 ACK: INVITE method, response To tag, fallback drops it.
        let inv = request(INV, "SIP/2.0/UDP 192.0.2.1", TO, "1 INVITE");
        let ack = request(
            "ACK sip:+2@sip.pstnhub.microsoft.com SIP/2.0",
            "SIP/2.0/UDP 192.0.2.1",
            "<sip:+2@sip.pstnhub.microsoft.com>;tag=resp",
            "1 ACK",
        );
        let (inv, ack) = (key(&inv).unwrap(), key(&ack).unwrap());
        assert_ne!(inv, ack);
        assert_eq!(ack.rfc2543_to_tag(), Some("resp"));
        assert_eq!(ack.without_to_tag(), Some(inv.clone()));
        assert_eq!(inv.without_to_tag(), None);
    }

    #[test]
    fn key_errors_name_the_missing_header() {
        let text =
            String::from_utf8(request(INV, "SIP/2.0/UDP 192.0.2.1", TO, "1 INVITE")).unwrap();
        let cases = [
            ("Call-ID: c1@sbc1\r\n", KeyError::MissingCallId),
            (
                "To: <sip:+2@sip.pstnhub.microsoft.com>\r\n",
                KeyError::BadTo,
            ),
            (
                "From: <sip:+1@sbc1.adatum.biz>;tag=f1\r\n",
                KeyError::BadFrom,
            ),
            ("CSeq: 1 INVITE\r\n", KeyError::BadCSeq),
            ("Via: SIP/2.0/UDP 192.0.2.1\r\n", KeyError::MissingVia),
        ];
        for (drop, want) in cases {
            let buf = text.replace(drop, "");
            assert_eq!(key(buf.as_bytes()), Err(want), "without {drop}");
        }
        let bad_via = text.replace("SIP/2.0/UDP 192.0.2.1", "SIP/2.0/UDP 192.0.2.1;;");
        assert_eq!(key(bad_via.as_bytes()), Err(KeyError::MalformedVia));
        let resp = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n";
        assert_eq!(key(resp), Err(KeyError::NotARequest));
        assert_eq!(
            ClientKey::from_request(&parse(resp)),
            Err(KeyError::NotARequest)
        );
    }

    #[test]
    fn client_key_is_branch_and_cseq_method() {
        let req_buf = request(INV, VIA, TO, "1 INVITE");
        let req = parse(&req_buf);
        let k = ClientKey::from_request(&req).unwrap();
        assert_eq!(k.branch(), "z9hG4bKabc");
        assert_eq!(k.to_string(), "z9hG4bKabc/INVITE");
        let resp = |via: &str, cseq: &str| {
            format!("SIP/2.0 180 Ringing\r\nVia: {via}\r\nCSeq: {cseq}\r\nl: 0\r\n\r\n")
        };
        let cases = [
            (resp(VIA, "1 INVITE"), Ok(true)),
            // sent-by is not part of the client match (§17.1.3).
            (
                resp("SIP/2.0/TLS other:1;branch=z9hG4bKabc", "1 INVITE"),
                Ok(true),
            ),
            (resp(VIA, "1 CANCEL"), Ok(false)),
            (resp("SIP/2.0/TLS h;branch=z9hG4bKx", "1 INVITE"), Ok(false)),
            (
                resp("SIP/2.0/TLS h;branch=1234", "1 INVITE"),
                Err(KeyError::NoRfc3261Branch),
            ),
            (
                resp("SIP/2.0/TLS h;branch=z9hG4bK", "1 INVITE"),
                Err(KeyError::NoRfc3261Branch),
            ),
            (resp(VIA, "x INVITE"), Err(KeyError::BadCSeq)),
        ];
        for (buf, want) in cases {
            let got = ClientKey::from_response(&parse(buf.as_bytes())).map(|r| r == k);
            assert_eq!(got, want, "{buf}");
        }
        assert_eq!(ClientKey::from_response(&req), Err(KeyError::NotAResponse));
        let other_buf = request(
            "FOO sip:+2@sip.pstnhub.microsoft.com SIP/2.0",
            VIA,
            TO,
            "1 FOO",
        );
        let other = parse(&other_buf);
        let k = ClientKey::from_request(&other).unwrap();
        assert_eq!(k.method().method(), Method::Other("FOO"));
        assert!(!k.method().is_invite());
    }

    #[test]
    fn branches_are_unique_tokens_with_the_cookie() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let b = Branch::generate();
            assert!(b.as_str().starts_with(MAGIC_COOKIE));
            assert!(b.as_str().len() > MAGIC_COOKIE.len() + 16);
            assert!(b.as_str().bytes().all(|c| c.is_ascii_alphanumeric()));
            assert!(seen.insert(b));
        }
        // And it parses back as an RFC 3261 branch.
        let b = Branch::generate();
        let via = format!("SIP/2.0/TLS sip.pstnhub.microsoft.com:5061;branch={b}");
        assert_eq!(Via::parse(&via).unwrap().rfc3261_branch(), Some(b.as_str()));
    }
}
