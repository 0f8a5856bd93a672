//! Dialogs (RFC 3261 §12) and who may speak in them.
//!
//! A [`Dialog`] is made once, from the request and response that created it (§12.1.1 for
//! the UAS side, §12.1.2 for the UAC side), and from then on builds every request drhub
//! sends in it (§12.2.1.1: Request-URI the remote target, Route the route set, CSeq one
//! up) and checks every request it receives (§12.2.2: tags, CSeq order). A [`Peer`] says
//! who is allowed to send those requests: an SBC by its certificate over any of its
//! connections (DR-NH-5), or an endpoint by its registered address; anyone else gets 481.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::Tag;
use crate::hub::ENDPOINT_LISTENER;
use crate::sip::build::RequestWriter;
use crate::sip::{HeaderName, LocalIdentity, Message, NameAddr, Transport, Uri};
use crate::transaction::Branch;
use crate::transport::Destination;

/// A dialog's identity (RFC 3261 §12): Call-ID and both tags.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: Tag,
    pub remote_tag: String,
}

/// Who may send requests in a dialog or cancel a transaction: the party it was made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// An SBC known by its certificate: a request is accepted from any of its TLS
    /// connections, inbound or outbound, whose certificate names this FQDN (DR-NH-5).
    Sbc { fqdn: Arc<str> },
    /// An SBC on the plain-TCP lab listener (DR-TLS-5): no certificate names it, so its
    /// IP address does, on that listener only.
    InsecureSbc { ip: IpAddr },
    /// A SIP endpoint: its registered address, over the transport it registered on.
    Endpoint {
        addr: SocketAddr,
        transport: Transport,
    },
}

impl Peer {
    /// Whether a request that arrived from `source` may act on this peer's dialogs.
    pub fn admits(&self, source: &Destination) -> bool {
        match (self, source) {
            (Peer::Sbc { fqdn }, Destination::Flow(f)) => {
                f.info.listener != ENDPOINT_LISTENER
                    && f.info.identity.as_ref().is_some_and(|id| id.matches(fqdn))
            }
            (Peer::InsecureSbc { ip }, Destination::Flow(f)) => {
                f.info.listener != ENDPOINT_LISTENER
                    && f.info.identity.is_none()
                    && f.info.peer.ip() == *ip
            }
            (
                Peer::Endpoint {
                    addr,
                    transport: Transport::Udp,
                },
                Destination::Udp { addr: from, .. },
            ) => from == addr,
            (Peer::Endpoint { addr, .. }, Destination::Flow(f)) => {
                f.info.listener == ENDPOINT_LISTENER && f.info.peer == *addr
            }
            _ => false,
        }
    }

    /// True for either kind of SBC.
    pub fn is_sbc(&self) -> bool {
        matches!(self, Peer::Sbc { .. } | Peer::InsecureSbc { .. })
    }
}

/// Where the next request of a dialog goes (DR-NH-1, RFC 3261 §8.1.2): the top Route's
/// URI when there is a route set, the remote target otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    pub host: String,
    pub port: Option<u16>,
    pub transport: Option<Transport>,
}

impl NextHop {
    /// The host, port and `transport` of a URI.
    pub fn of_uri(uri_text: &str) -> Option<NextHop> {
        let uri = Uri::parse(uri_text).ok()?;
        let host = uri.host()?;
        Some(NextHop {
            host: match host.ip() {
                Some(ip) => ip.to_string(),
                None => host.to_string(),
            },
            port: uri.port(),
            transport: uri.param("transport").and_then(|p| p.value).and_then(|t| {
                match t.to_ascii_lowercase().as_str() {
                    "tls" => Some(Transport::Tls),
                    "tcp" => Some(Transport::Tcp),
                    "udp" => Some(Transport::Udp),
                    _ => None,
                }
            }),
        })
    }

    /// Where a dialog a request would make sends its requests (DR-NH-1), before it
    /// exists: the request's top Record-Route, else its Contact.
    pub fn of_request(msg: &crate::sip::Message<'_>) -> Option<NextHop> {
        match msg.values(crate::sip::HeaderName::RecordRoute).next() {
            Some(rr) => NextHop::of_uri(NameAddr::parse(rr.trim()).ok()?.uri().as_str()),
            None => {
                let contact = msg.values(crate::sip::HeaderName::Contact).next()?;
                NextHop::of_uri(NameAddr::parse(contact.trim()).ok()?.uri().as_str())
            }
        }
    }
}

/// Why a dialog could not be made from a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    #[error("no usable Contact (the remote target)")]
    NoContact,
    #[error("the {0} header is missing or malformed")]
    Header(&'static str),
    #[error("the response has no To tag")]
    NoRemoteTag,
}

/// One dialog, early or confirmed (see the module docs).
///
/// Guarantees: every request it builds carries the dialog's Call-ID and tags, the remote
/// target as Request-URI and the route set as Route headers in order (loose routing, and
/// strict-router next hops per §12.2.1.1); its CSeq numbers strictly increase.
///
/// Its text (Call-ID, both name-addrs, remote target, route set) lives in one allocation:
/// a call keeps its dialog for as long as it is up.
#[derive(Debug, Clone)]
pub struct Dialog {
    text: Text,
    local_tag: Tag,
    local_cseq: u32,
    remote_cseq: Option<u32>,
    /// How drhub names itself in this dialog (Via, Contact).
    pub local: LocalIdentity,
    pub peer: Peer,
}

/// The strings of a dialog, one after another: Call-ID, our From (name-addr with our
/// tag), their To (name-addr with their tag), the remote target, then the route set,
/// each route followed by a newline (which no header value contains).
#[derive(Debug, Clone)]
struct Text {
    all: Box<str>,
    /// Where the Call-ID, local header, remote header and remote target end.
    ends: [u32; 4],
    /// The remote tag's place inside the remote header.
    remote_tag: (u32, u32),
}

impl Text {
    fn new(
        call_id: &str,
        local: &str,
        remote: &str,
        remote_tag: &str,
        target: &str,
        routes: &[&str],
    ) -> Text {
        let mut all = String::with_capacity(
            call_id.len()
                + local.len()
                + remote.len()
                + target.len()
                + routes.iter().map(|r| r.len() + 1).sum::<usize>(),
        );
        let mut ends = [0u32; 4];
        for (i, part) in [call_id, local, remote, target].into_iter().enumerate() {
            all.push_str(part);
            ends[i] = all.len() as u32;
        }
        // `remote_tag` was parsed out of `remote`: its place is where it points to.
        let start = ends[1] as usize;
        let offset = (remote_tag.as_ptr() as usize)
            .checked_sub(remote.as_ptr() as usize)
            .filter(|o| o + remote_tag.len() <= remote.len())
            .or_else(|| remote.rfind(remote_tag));
        let at = offset.map_or(ends[2], |p| (start + p) as u32);
        for r in routes {
            all.push_str(r);
            all.push('\n');
        }
        Text {
            all: all.into(),
            ends,
            remote_tag: (at, at + remote_tag.len() as u32),
        }
    }

    fn part(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.all
            .get(start..self.ends[i] as usize)
            .unwrap_or_default()
    }

    fn remote_tag(&self) -> &str {
        self.all
            .get(self.remote_tag.0 as usize..self.remote_tag.1 as usize)
            .unwrap_or_default()
    }

    fn routes(&self) -> impl Iterator<Item = &str> + '_ {
        self.all
            .get(self.ends[3] as usize..)
            .unwrap_or_default()
            .split_terminator('\n')
    }

    /// The same text with another remote target (a target refresh).
    fn with_target(&self, target: &str) -> Text {
        let routes: Vec<&str> = self.routes().collect();
        Text::new(
            self.part(0),
            self.part(1),
            self.part(2),
            self.remote_tag(),
            target,
            &routes,
        )
    }
}

impl Dialog {
    /// The UAS side of a dialog created by `req` with a response carrying `local_tag`
    /// (RFC 3261 §12.1.1): route set = the request's Record-Route in order, remote target
    /// = its Contact, remote CSeq = its CSeq.
    pub fn uas(
        req: &Message<'_>,
        local_tag: Tag,
        local: LocalIdentity,
        peer: Peer,
    ) -> Result<Dialog, DialogError> {
        let (call_id, from, cseq) = request_side(req)?;
        let to = req
            .header(HeaderName::To)
            .ok_or(DialogError::Header("To"))?;
        let remote_tag = NameAddr::parse(from)
            .ok()
            .and_then(|f| f.tag())
            .ok_or(DialogError::Header("From"))?;
        let routes: Vec<&str> = req
            .values(HeaderName::RecordRoute)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        let target = remote_target(req)?;
        Ok(Dialog {
            text: Text::new(
                call_id,
                &format!("{to};tag={local_tag}"),
                from,
                remote_tag,
                target,
                &routes,
            ),
            local_tag,
            local_cseq: 0,
            remote_cseq: Some(cseq),
            local,
            peer,
        })
    }

    /// The UAC side of a dialog our request `req` (sent with `local_tag` in its From)
    /// created with `resp` (RFC 3261 §12.1.2): route set = the response's Record-Route in
    /// reverse order, remote target = its Contact, local CSeq = the request's.
    pub fn uac(
        req: &Message<'_>,
        resp: &Message<'_>,
        local_tag: Tag,
        local: LocalIdentity,
        peer: Peer,
    ) -> Result<Dialog, DialogError> {
        let (call_id, from, cseq) = request_side(req)?;
        let (to, remote_tag, target, mut routes) = uac_remote(resp)?;
        // drhub's own Record-Route (DR-OUT-1 puts one on the INVITE to an SBC) comes back
        // in the 2xx; a B2BUA is the dialog's end, not a proxy on its path, so its entry
        // is not a hop of the route set.
        routes.retain(|r| !is_own_entry(r, &local));
        Ok(Dialog {
            text: Text::new(call_id, from, to, remote_tag, target, &routes),
            local_tag,
            local_cseq: cseq,
            remote_cseq: None,
            local,
            peer,
        })
    }

    /// Another dialog created by the same request (a forking downstream answered twice,
    /// RFC 6026 §7.2): our side as in this one, theirs from `resp`.
    pub fn sibling(&self, resp: &Message<'_>) -> Result<Dialog, DialogError> {
        let (to, remote_tag, target, routes) = uac_remote(resp)?;
        Ok(Dialog {
            text: Text::new(
                self.call_id(),
                self.text.part(1),
                to,
                remote_tag,
                target,
                &routes,
            ),
            remote_cseq: None,
            ..self.clone()
        })
    }

    pub fn id(&self) -> DialogId {
        DialogId {
            call_id: self.call_id().to_owned(),
            local_tag: self.local_tag,
            remote_tag: self.remote_tag().to_owned(),
        }
    }

    pub fn call_id(&self) -> &str {
        self.text.part(0)
    }

    pub fn local_tag(&self) -> Tag {
        self.local_tag
    }

    pub fn remote_tag(&self) -> &str {
        self.text.remote_tag()
    }

    pub fn remote_target(&self) -> &str {
        self.text.part(3)
    }

    /// The route set, in the order requests carry it.
    pub fn route_set(&self) -> Vec<&str> {
        self.text.routes().collect()
    }

    /// Whether a request received belongs to this dialog (§12.2.2): its Call-ID, its To
    /// tag ours, its From tag theirs.
    pub fn matches(&self, req: &Message<'_>) -> bool {
        let tag = |h: Option<Result<NameAddr<'_>, _>>| {
            h.and_then(Result::ok)
                .and_then(|n| n.tag().map(str::to_owned))
        };
        req.call_id() == Some(self.call_id())
            && tag(req.to()).as_deref() == Some(self.local_tag.as_str())
            && tag(req.from()).as_deref() == Some(self.remote_tag())
    }

    /// RFC 3261 §12.2.2: a request whose CSeq is lower than the last one received is out
    /// of order (the UAS answers 500); otherwise the CSeq becomes the last one. ACK and
    /// CANCEL carry the CSeq of what they acknowledge or cancel and are not checked.
    pub fn accept_remote_cseq(&mut self, cseq: u32) -> bool {
        match self.remote_cseq {
            Some(last) if cseq < last => false,
            _ => {
                self.remote_cseq = Some(cseq);
                true
            }
        }
    }

    /// A target refresh (§12.2: a re-INVITE or UPDATE, or the 2xx to ours): the Contact
    /// becomes the remote target. The route set never changes (§12.2).
    pub fn refresh_target(&mut self, msg: &Message<'_>) {
        if let Ok(t) = remote_target(msg) {
            if t != self.remote_target() {
                self.text = self.text.with_target(t);
            }
        }
    }

    /// Where the next request goes (DR-NH-1): the top Route when there is a route set,
    /// else the remote target.
    pub fn next_hop(&self) -> Option<NextHop> {
        match self.text.routes().next() {
            Some(route) => NextHop::of_uri(NameAddr::parse(route).ok()?.uri().as_str()),
            None => NextHop::of_uri(self.remote_target()),
        }
    }

    /// A new request in the dialog (§12.2.1.1): the next local CSeq, Request-URI and
    /// Route from the remote target and route set, a Contact on target-refreshing
    /// requests, then `extra` headers and the body (`(content type, bytes)`).
    pub fn request(
        &mut self,
        method: &str,
        extra: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Bytes {
        self.local_cseq += 1;
        let cseq = self.local_cseq;
        self.write(method, cseq, extra, body)
    }

    /// The ACK for a 2xx to the INVITE with CSeq `invite_cseq` (§13.2.2.4): a new
    /// transaction, the dialog's route, the INVITE's CSeq number.
    pub fn ack(&self, invite_cseq: u32) -> Bytes {
        self.write("ACK", invite_cseq, &[], None)
    }

    /// The CSeq number of the last request built.
    pub fn local_cseq(&self) -> u32 {
        self.local_cseq
    }

    fn write(
        &self,
        method: &str,
        cseq: u32,
        extra: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Bytes {
        // §12.2.1.1: a loose-routing first hop (lr) keeps the remote target as the
        // Request-URI; a strict router gets it as the last Route instead.
        let first = self
            .text
            .routes()
            .next()
            .and_then(|r| NameAddr::parse(r).ok());
        let strict = first
            .as_ref()
            .is_some_and(|r| r.uri().param("lr").is_none());
        let target = self.remote_target();
        let mut out = BytesMut::new();
        let mut w = match (strict, &first) {
            (true, Some(first)) => RequestWriter::start(&mut out, method, first.uri().as_str()),
            _ => RequestWriter::start(&mut out, method, target),
        };
        w.header("Via", &self.local.via(Branch::generate().as_str()));
        w.header("Max-Forwards", "70");
        for r in self.text.routes().skip(usize::from(strict)) {
            w.header("Route", r);
        }
        if strict {
            w.header("Route", &format!("<{target}>"));
        }
        w.header("From", self.text.part(1));
        w.header("To", self.text.part(2));
        w.header("Call-ID", self.call_id());
        w.header("CSeq", &format!("{cseq} {method}"));
        if matches!(
            method,
            "INVITE" | "UPDATE" | "REFER" | "SUBSCRIBE" | "NOTIFY"
        ) {
            w.header("Contact", self.local.contact());
        }
        for (name, value) in extra {
            w.header(name, value);
        }
        if method != "ACK" {
            w.header("User-Agent", self.local.server());
        }
        match body {
            Some((content_type, bytes)) => {
                w.header("Content-Type", content_type);
                w.finish(bytes);
            }
            None => w.finish(b""),
        }
        out.freeze()
    }
}

/// What a dialog takes from the request that made it: Call-ID, From, CSeq number.
fn request_side<'m>(req: &Message<'m>) -> Result<(&'m str, &'m str, u32), DialogError> {
    let from = req
        .header(HeaderName::From)
        .ok_or(DialogError::Header("From"))?;
    let cseq = req
        .cseq()
        .and_then(Result::ok)
        .ok_or(DialogError::Header("CSeq"))?
        .seq;
    let call_id = req.call_id().ok_or(DialogError::Header("Call-ID"))?;
    Ok((call_id, from, cseq))
}

/// The remote side of a UAC dialog from the response (§12.1.2): To, its tag, the remote
/// target and the route set (the Record-Route reversed).
fn uac_remote<'m>(
    resp: &Message<'m>,
) -> Result<(&'m str, &'m str, &'m str, Vec<&'m str>), DialogError> {
    let to = resp
        .header(HeaderName::To)
        .ok_or(DialogError::Header("To"))?;
    let remote_tag = NameAddr::parse(to)
        .ok()
        .and_then(|t| t.tag())
        .ok_or(DialogError::NoRemoteTag)?;
    let mut routes: Vec<&str> = resp
        .values(HeaderName::RecordRoute)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    routes.reverse();
    Ok((to, remote_tag, remote_target(resp)?, routes))
}

/// Whether a Record-Route entry names drhub itself: its host and port.
fn is_own_entry(entry: &str, local: &LocalIdentity) -> bool {
    NameAddr::parse(entry).ok().is_some_and(|n| {
        let uri = n.uri();
        uri.host()
            .is_some_and(|h| h.to_string().eq_ignore_ascii_case(local.host()))
            && uri.port().unwrap_or(5061) == local.port()
    })
}

/// The URI of the first Contact: a dialog's remote target (§12.1.1, §12.1.2).
fn remote_target<'m>(msg: &Message<'m>) -> Result<&'m str, DialogError> {
    msg.contact()
        .and_then(Result::ok)
        .and_then(|c| c.uri().map(|u| u.as_str()))
        .ok_or(DialogError::NoContact)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::build::Style;
    use crate::sip::{Limits, Status};

    fn parse(b: &[u8]) -> Message<'_> {
        match Message::parse(b, &Limits::default()) {
            Ok(Status::Complete(m)) => m,
            other => panic!("{other:?}: {}", String::from_utf8_lossy(b)),
        }
    }

    fn proxy() -> LocalIdentity {
        LocalIdentity::new(
            "sip.pstnhub.microsoft.com",
            5061,
            Transport::Tls,
            "drhub",
            Style::Rfc3261,
        )
    }

    fn sbc() -> Peer {
        Peer::Sbc {
            fqdn: "sbc1.adatum.biz".into(),
        }
    }

    /// An INVITE through a record-routing SBC (two Record-Route lines, one with two
    /// values), as Kamailio sends it.
    const INVITE: &[u8] =
        b"INVITE sip:+18338006777@sip.pstnhub.microsoft.com:5061;user=phone SIP/2.0\r\n\
Via: SIP/2.0/TLS sbc1.adatum.biz:5061;branch=z9hG4bK1\r\n\
Record-Route: <sip:sbc1.adatum.biz:5061;transport=tls;lr;r2=on>\r\n\
Record-Route: <sip:10.0.0.1:5060;lr;r2=on>, <sip:edge.carrier.example;lr>\r\n\
From: <sip:+17168712781@sbc1.adatum.biz;user=phone>;tag=sbc-tag\r\n\
To: <sip:+18338006777@sip.pstnhub.microsoft.com;user=phone>\r\n\
Call-ID: c1@sbc1\r\n\
CSeq: 10 INVITE\r\n\
Contact: <sip:+17168712781@sbc1.adatum.biz:5061;transport=tls>\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn dr_nh_4_uas_dialog_keeps_the_record_route_set_in_order_and_routes_by_it() {
        let inv = parse(INVITE);
        let tag = Tag::random();
        let mut d = Dialog::uas(&inv, tag, proxy(), sbc()).unwrap();
        assert_eq!(
            d.route_set(),
            vec![
                "<sip:sbc1.adatum.biz:5061;transport=tls;lr;r2=on>",
                "<sip:10.0.0.1:5060;lr;r2=on>",
                "<sip:edge.carrier.example;lr>",
            ]
        );
        assert_eq!(d.remote_tag(), "sbc-tag");
        assert_eq!(d.call_id(), "c1@sbc1");
        // DR-NH-1: the next hop is the top Record-Route's FQDN.
        assert_eq!(
            d.next_hop(),
            Some(NextHop {
                host: "sbc1.adatum.biz".into(),
                port: Some(5061),
                transport: Some(Transport::Tls)
            })
        );
        let bye = d.request("BYE", &[("Reason", "Q.850;cause=16")], None);
        let m = parse(&bye);
        m.check_request().unwrap();
        // §12.2.1.1: Request-URI the remote target, Route the route set in order.
        assert_eq!(
            m.request_uri().unwrap().unwrap().as_str(),
            "sip:+17168712781@sbc1.adatum.biz:5061;transport=tls"
        );
        let routes: Vec<&str> = m.values(HeaderName::Route).collect();
        assert_eq!(routes, d.route_set());
        assert_eq!(
            m.header(HeaderName::From),
            Some(
                format!("<sip:+18338006777@sip.pstnhub.microsoft.com;user=phone>;tag={tag}")
                    .as_str()
            )
        );
        assert_eq!(
            m.header(HeaderName::To),
            Some("<sip:+17168712781@sbc1.adatum.biz;user=phone>;tag=sbc-tag")
        );
        assert_eq!(m.header(HeaderName::CSeq), Some("1 BYE"));
        let again = d.request("BYE", &[], None);
        assert_eq!(parse(&again).header(HeaderName::CSeq), Some("2 BYE"));
    }

    #[test]
    fn dr_nh_1_without_record_route_the_contact_is_the_next_hop() {
        let text = String::from_utf8_lossy(INVITE)
            .lines()
            .filter(|l| !l.starts_with("Record-Route"))
            .collect::<Vec<_>>()
            .join("\r\n")
            + "\r\n\r\n";
        let inv = parse(text.as_bytes());
        let d = Dialog::uas(&inv, Tag::random(), proxy(), sbc()).unwrap();
        assert!(d.route_set().is_empty());
        assert_eq!(d.next_hop().unwrap().host, "sbc1.adatum.biz");
        let bye = parse(&d.clone().request("BYE", &[], None))
            .values(HeaderName::Route)
            .count();
        assert_eq!(bye, 0);
    }

    #[test]
    fn strict_router_first_hop_gets_the_request_uri_and_the_target_goes_last() {
        let text = String::from_utf8_lossy(INVITE).replace(
            "Record-Route: <sip:sbc1.adatum.biz:5061;transport=tls;lr;r2=on>",
            "Record-Route: <sip:strict.adatum.biz:5061;transport=tls>",
        );
        let inv = parse(text.as_bytes());
        let mut d = Dialog::uas(&inv, Tag::random(), proxy(), sbc()).unwrap();
        let bye = d.request("BYE", &[], None);
        let m = parse(&bye);
        assert_eq!(
            m.request_uri().unwrap().unwrap().as_str(),
            "sip:strict.adatum.biz:5061;transport=tls"
        );
        let routes: Vec<&str> = m.values(HeaderName::Route).collect();
        assert_eq!(
            routes.last().copied(),
            Some("<sip:+17168712781@sbc1.adatum.biz:5061;transport=tls>")
        );
    }

    #[test]
    fn uac_dialog_reverses_the_record_route_and_acks_with_the_invite_cseq() {
        let ours = Tag::random();
        let req = format!("INVITE sip:alice@192.0.2.7:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKa\r\nFrom: <sip:+1716@sip.pstnhub.microsoft.com>;tag={ours}\r\nTo: <sip:user1@adatum.biz>\r\nCall-ID: leg@x\r\nCSeq: 1 INVITE\r\nContact: <sip:127.0.0.1:5070>\r\nContent-Length: 0\r\n\r\n");
        let resp = format!("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKa\r\nRecord-Route: <sip:p2.example;lr>, <sip:p1.example;lr>\r\nFrom: <sip:+1716@sip.pstnhub.microsoft.com>;tag={ours}\r\nTo: <sip:user1@adatum.biz>;tag=theirs\r\nCall-ID: leg@x\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.7:5099>\r\nContent-Length: 0\r\n\r\n");
        let peer = Peer::Endpoint {
            addr: "192.0.2.7:5080".parse().unwrap(),
            transport: Transport::Udp,
        };
        let d = Dialog::uac(
            &parse(req.as_bytes()),
            &parse(resp.as_bytes()),
            ours,
            proxy(),
            peer,
        )
        .unwrap();
        assert_eq!(d.remote_tag(), "theirs");
        assert_eq!(d.route_set()[0], "<sip:p1.example;lr>");
        let ack = d.ack(1);
        let m = parse(&ack);
        assert_eq!(m.header(HeaderName::CSeq), Some("1 ACK"));
        assert_eq!(
            m.request_uri().unwrap().unwrap().as_str(),
            "sip:alice@192.0.2.7:5099"
        );
        assert_eq!(
            m.header(HeaderName::To),
            Some("<sip:user1@adatum.biz>;tag=theirs")
        );
        assert!(m.header(HeaderName::Contact).is_none());
        // An incoming BYE from them matches; one with other tags does not.
        let their_bye = |from_tag: &str| {
            format!("BYE sip:127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5080;branch=z9hG4bKb\r\nFrom: <sip:user1@adatum.biz>;tag={from_tag}\r\nTo: <sip:+1716@sip.pstnhub.microsoft.com>;tag={ours}\r\nCall-ID: leg@x\r\nCSeq: 5 BYE\r\nContent-Length: 0\r\n\r\n")
        };
        assert!(d.matches(&parse(their_bye("theirs").as_bytes())));
        assert!(!d.matches(&parse(their_bye("someone-else").as_bytes())));
    }

    #[test]
    fn remote_cseq_must_not_go_backwards() {
        let mut d = Dialog::uas(&parse(INVITE), Tag::random(), proxy(), sbc()).unwrap();
        assert!(d.accept_remote_cseq(11));
        assert!(
            d.accept_remote_cseq(11),
            "equal is a retransmission's business"
        );
        assert!(!d.accept_remote_cseq(9));
    }
}
