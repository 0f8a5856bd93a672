//! The leg towards a SIP endpoint (a registered softphone, sipp, a static contact): drhub
//! is its UAC, with a Call-ID of its own (a B2BUA never shares the SBC's).

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};

use super::Dest;
use crate::endpoint::registrar::Transport;
use crate::sip::build::RequestWriter;
use crate::sip::{HeaderName, Message};
use crate::transaction::{Branch, ClientKey};

/// One INVITE dialog (early or confirmed) with an endpoint.
#[derive(Debug)]
pub struct SipLeg {
    pub dest: Dest,
    pub transport: Transport,
    /// Where drhub's requests are addressed: the contact, then the 2xx's Contact.
    pub target: String,
    pub call_id: String,
    pub local_tag: super::Tag,
    pub remote_tag: Option<String>,
    /// The INVITE as sent (CANCEL is built from it).
    pub invite: Bytes,
    pub client: Option<ClientKey>,
    /// A provisional arrived: CANCEL may be sent (RFC 3261 §9.1).
    pub got_provisional: bool,
    /// CANCEL wanted before any provisional: sent when one arrives.
    pub cancel_pending: Option<&'static str>,
    /// The endpoint's SDP from its 183 or 2xx (what a bypass trunk passes on).
    pub sdp: Option<Bytes>,
    pub local_cseq: u32,
    /// From and To of the INVITE, for in-dialog requests.
    from: String,
    to: String,
    local: SocketAddr,
}

/// What the INVITE to an endpoint says about the call.
pub struct InviteParams<'a> {
    pub target: &'a str,
    pub local: SocketAddr,
    pub transport: Transport,
    pub proxy_fqdn: &'a str,
    /// Caller number (`+E164`) and display name (DR-TEN-5 reverse lookup).
    pub caller: Option<&'a str>,
    pub caller_name: Option<&'a str>,
    pub callee: &'a str,
    pub sdp: &'a [u8],
    pub server: &'a str,
}

fn transport_token(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
    }
}

impl SipLeg {
    /// Builds the INVITE for a new leg.
    pub fn new(dest: Dest, p: &InviteParams<'_>) -> SipLeg {
        let call_id = format!(
            "{:016x}{:08x}@{}",
            fastrand::u64(..),
            fastrand::u32(..),
            p.proxy_fqdn
        );
        let local_tag = super::Tag::random();
        let user = p.caller.unwrap_or("anonymous");
        let from = match p.caller_name {
            Some(name) => format!(
                "\"{}\" <sip:{user}@{}>",
                name.replace(['"', '\\'], ""),
                p.proxy_fqdn
            ),
            None => format!("<sip:{user}@{}>", p.proxy_fqdn),
        };
        let to = format!("<sip:{}>", p.callee);
        let mut leg = SipLeg {
            dest,
            transport: p.transport,
            target: p.target.to_owned(),
            call_id,
            local_tag,
            remote_tag: None,
            invite: Bytes::new(),
            client: None,
            got_provisional: false,
            cancel_pending: None,
            sdp: None,
            local_cseq: 1,
            from,
            to,
            local: p.local,
        };
        let mut out = BytesMut::new();
        let mut w = RequestWriter::start(&mut out, "INVITE", p.target);
        leg.common_headers(&mut w, 1, "INVITE");
        w.header(
            "Contact",
            &format!(
                "<sip:{}:{};transport={}>",
                p.local.ip(),
                p.local.port(),
                transport_token(p.transport).to_ascii_lowercase()
            ),
        );
        w.header("Allow", crate::proxy::ALLOW);
        w.header("User-Agent", p.server);
        w.header("Content-Type", "application/sdp");
        w.finish(p.sdp);
        leg.invite = out.freeze();
        leg
    }

    fn common_headers(&self, w: &mut RequestWriter<'_>, cseq: u32, method: &str) {
        w.header(
            "Via",
            &format!(
                "SIP/2.0/{} {};branch={}",
                transport_token(self.transport),
                self.local,
                Branch::generate()
            ),
        );
        w.header("Max-Forwards", "70");
        w.header("From", &format!("{};tag={}", self.from, self.local_tag));
        match &self.remote_tag {
            Some(t) => w.header("To", &format!("{};tag={t}", self.to)),
            None => w.header("To", &self.to),
        };
        w.header("Call-ID", &self.call_id);
        w.header("CSeq", &format!("{cseq} {method}"));
    }

    /// Learns the endpoint's tag, Contact and SDP from a response to the INVITE.
    pub fn learn(&mut self, resp: &Message<'_>) {
        if let Some(tag) = resp
            .to()
            .and_then(Result::ok)
            .and_then(|t| t.tag().map(str::to_owned))
        {
            self.remote_tag = Some(tag);
        }
        if let Some(uri) = resp
            .contact()
            .and_then(Result::ok)
            .and_then(|c| c.uri().map(|u| u.as_str().to_owned()))
        {
            if resp.status_code().is_some_and(|c| (200..300).contains(&c)) {
                self.target = uri;
            }
        }
        let is_sdp = resp
            .header(HeaderName::ContentType)
            .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/sdp"));
        if is_sdp && !resp.body().is_empty() {
            self.sdp = Some(Bytes::copy_from_slice(resp.body()));
        }
    }

    /// The ACK for a 2xx (RFC 3261 §13.2.2.4): a new transaction, to the remote target.
    pub fn ack(&self) -> Bytes {
        let mut out = BytesMut::new();
        let mut w = RequestWriter::start(&mut out, "ACK", &self.target);
        self.common_headers(&mut w, 1, "ACK");
        w.finish(b"");
        out.freeze()
    }

    /// A BYE in the confirmed dialog.
    pub fn bye(&mut self) -> Bytes {
        self.local_cseq += 1;
        let mut out = BytesMut::new();
        let mut w = RequestWriter::start(&mut out, "BYE", &self.target);
        self.common_headers(&mut w, self.local_cseq, "BYE");
        w.finish(b"");
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{Limits, Status};

    fn leg() -> SipLeg {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let udp = rt
            .block_on(tokio::net::UdpSocket::bind("127.0.0.1:0"))
            .unwrap();
        let dest = Dest::Udp {
            socket: std::sync::Arc::new(udp),
            addr: "127.0.0.1:5080".parse().unwrap(),
        };
        SipLeg::new(
            dest,
            &InviteParams {
                target: "sip:alice@127.0.0.1:5080",
                local: "127.0.0.1:5070".parse().unwrap(),
                transport: Transport::Udp,
                proxy_fqdn: "sip.pstnhub.microsoft.com",
                caller: Some("+17168712781"),
                caller_name: Some("Ca\"ller"),
                callee: "user1@adatum.biz",
                sdp: b"v=0\r\n",
                server: "drhub",
            },
        )
    }

    #[test]
    fn invite_ack_and_bye_are_valid_requests() {
        let mut l = leg();
        for bytes in [l.invite.clone(), l.ack(), l.bye()] {
            let Ok(Status::Complete(m)) = Message::parse(&bytes, &Limits::default()) else {
                panic!("unparseable: {}", String::from_utf8_lossy(&bytes))
            };
            m.check_request()
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
            assert_eq!(m.call_id(), Some(l.call_id.as_str()));
        }
        let text = String::from_utf8_lossy(&l.invite).into_owned();
        assert!(
            text.contains("From: \"Caller\" <sip:+17168712781@sip.pstnhub.microsoft.com>;tag="),
            "{text}"
        );
        assert!(
            text.contains("Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK"),
            "{text}"
        );
    }

    #[test]
    fn learning_a_2xx_retargets_in_dialog_requests() {
        let mut l = leg();
        let resp = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nFrom: <sip:a@b.c>;tag=1\r\nTo: <sip:user1@adatum.biz>;tag=ep9\r\nCall-ID: {}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.7:5099>\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n",
            l.call_id
        );
        let Ok(Status::Complete(m)) = Message::parse(resp.as_bytes(), &Limits::default()) else {
            panic!()
        };
        l.learn(&m);
        assert_eq!(l.remote_tag.as_deref(), Some("ep9"));
        assert_eq!(l.sdp.as_deref(), Some(&b"v=0\r\n"[..]));
        let bye = String::from_utf8_lossy(&l.bye()).into_owned();
        assert!(
            bye.starts_with("BYE sip:alice@192.0.2.7:5099 SIP/2.0"),
            "{bye}"
        );
        assert!(bye.contains(";tag=ep9"), "{bye}");
    }
}
