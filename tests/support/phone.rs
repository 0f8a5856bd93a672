//! A SIP softphone on UDP, the way a lab phone talks to drhub's endpoint listener:
//! REGISTER with digest (MD5), answering the requests it gets, mirroring headers.

use std::net::SocketAddr;

use md5::{Digest, Md5};
use tokio::net::UdpSocket;

use super::{Reply, WAIT};

/// A softphone's SDP: PCMU on loopback.
pub const PHONE_SDP: &str = "v=0\r\no=- 7 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// One softphone (its UDP socket) registering as user1@adatum.biz (or any user).
pub struct Phone {
    pub sock: UdpSocket,
    pub server: SocketAddr,
}

impl Phone {
    pub async fn new(server: SocketAddr) -> Phone {
        Self::bind("127.0.0.1", server).await
    }

    /// A phone on another loopback address (`127.0.0.2` ...): a different source address
    /// for the daemon, on the same machine.
    pub async fn bind(ip: &str, server: SocketAddr) -> Phone {
        Phone {
            sock: UdpSocket::bind((ip, 0)).await.unwrap(),
            server,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    pub async fn send(&self, text: &str) {
        self.sock
            .send_to(text.as_bytes(), self.server)
            .await
            .unwrap();
    }

    pub async fn recv(&self) -> Reply {
        let mut buf = vec![0u8; 65535];
        let (n, _) = tokio::time::timeout(WAIT, self.sock.recv_from(&mut buf))
            .await
            .expect("datagram in time")
            .unwrap();
        Reply {
            text: String::from_utf8_lossy(&buf[..n]).into_owned(),
        }
    }

    /// Receives until a request with this method arrives (responses and retransmissions skipped).
    pub async fn recv_request(&self, method: &str) -> Reply {
        loop {
            let r = self.recv().await;
            if r.text.starts_with(&format!("{method} ")) {
                return r;
            }
        }
    }

    pub fn register(&self, cseq: u32, auth: Option<&str>) -> String {
        self.register_for("user1", cseq, auth)
    }

    /// A REGISTER for `user@adatum.biz` (one Call-ID per phone: raise `cseq` each time).
    pub fn register_for(&self, user: &str, cseq: u32, auth: Option<&str>) -> String {
        let a = self.addr();
        let mut s = format!(
            "REGISTER sip:adatum.biz SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bKreg{cseq}\r\nMax-Forwards: 70\r\n\
From: <sip:{user}@adatum.biz>;tag=ph1\r\nTo: <sip:{user}@adatum.biz>\r\nCall-ID: reg-{}@test\r\nCSeq: {cseq} REGISTER\r\n\
Contact: <sip:{user}@{a}>\r\nExpires: 600\r\n",
            a.port()
        );
        if let Some(auth) = auth {
            s.push_str(&format!("Authorization: {auth}\r\n"));
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        s
    }

    /// REGISTER, answer the MD5 challenge with `password`; returns the final status.
    pub async fn register_with(&self, password: &str) -> u16 {
        let challenge = self.register_as("user1", password, 1).await;
        assert_eq!(challenge.0.status(), 401, "{}", challenge.0.text);
        challenge.1.expect("an answer to the credentials").status()
    }

    /// REGISTER as `user` with CSeq `cseq` and, when challenged, again with CSeq `cseq + 1`
    /// answering the MD5 challenge with `password`: the first answer, and the second if
    /// there was one.
    pub async fn register_as(
        &self,
        user: &str,
        password: &str,
        cseq: u32,
    ) -> (Reply, Option<Reply>) {
        self.send(&self.register_for(user, cseq, None)).await;
        let challenge = self.recv().await;
        if challenge.status() != 401 {
            return (challenge, None);
        }
        let auth = Self::digest_md5(&challenge, user, password);
        self.send(&self.register_for(user, cseq + 1, Some(&auth)))
            .await;
        let answer = self.recv().await;
        (challenge, Some(answer))
    }

    /// The Authorization value answering the MD5 challenge of a 401 as `user`.
    pub fn digest_md5(challenge: &Reply, user: &str, password: &str) -> String {
        digest_md5(
            &challenge.text,
            user,
            password,
            "REGISTER",
            "sip:adatum.biz",
        )
    }

    /// Answers a request with a status, mirroring its headers; `tag` is our To tag.
    pub async fn answer(
        &self,
        req: &Reply,
        status: u16,
        phrase: &str,
        tag: &str,
        sdp: Option<&str>,
    ) {
        let contact = format!("<sip:user1@{}>", self.addr());
        self.answer_with(req, status, phrase, tag, &contact, sdp)
            .await
    }

    /// As [`Phone::answer`], with this Contact (a 3xx's target).
    pub async fn answer_with(
        &self,
        req: &Reply,
        status: u16,
        phrase: &str,
        tag: &str,
        contact: &str,
        sdp: Option<&str>,
    ) {
        let mut s = format!("SIP/2.0 {status} {phrase}\r\n");
        for h in req.text.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
            let name = h
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            match name.as_str() {
                "via" | "from" | "call-id" | "cseq" => s.push_str(&format!("{h}\r\n")),
                "to" if h.contains("tag=") => s.push_str(&format!("{h}\r\n")),
                "to" => s.push_str(&format!("{h};tag={tag}\r\n")),
                _ => {}
            }
        }
        s.push_str(&format!("Contact: {contact}\r\n"));
        match sdp {
            Some(b) => s.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )),
            None => s.push_str("Content-Length: 0\r\n\r\n"),
        }
        self.send(&s).await;
    }
}

/// The `Authorization` value answering the MD5 challenge in `challenge` (a 401's text)
/// for `user` with `password` (qop=auth, nc=1).
pub fn digest_md5(challenge: &str, user: &str, password: &str, method: &str, uri: &str) -> String {
    let md5_line = challenge
        .split("\r\n")
        .find(|l| {
            (l.starts_with("WWW-Authenticate:") || l.starts_with("Proxy-Authenticate:"))
                && l.contains("MD5")
        })
        .expect("an MD5 challenge (RFC 8760: SHA-256 first, MD5 too)");
    let param = |name: &str| {
        md5_line
            .split(&format!("{name}=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .to_owned()
    };
    let (realm, nonce) = (param("realm"), param("nonce"));
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let h = |s: String| hex(&Md5::digest(s.as_bytes()));
    let ha1 = h(format!("{user}:{realm}:{password}"));
    let ha2 = h(format!("{method}:{uri}"));
    let response = h(format!("{ha1}:{nonce}:00000001:abcdef:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, cnonce=\"abcdef\", qop=auth, nc=00000001"
    )
}
