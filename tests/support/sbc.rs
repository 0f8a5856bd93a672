//! The SBC's side of the wire, shared by the black-box tests (`tests/support/mod.rs`)
//! and the load benches (`benches/support/mod.rs` includes this file): an SBC connection
//! that frames SIP with drhub's own parser, the messages an SBC sends, the lab config
//! text and the TLS client an SBC presents.
#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use drhub::config::BUILTIN_LAB_CONFIG;
use drhub::sip::{Limits, Message, Status};
use drhub::transport::tls::TlsVersion;

/// How long a test waits for an answer before failing (not a sleep: a ceiling).
pub const WAIT: Duration = Duration::from_secs(10);

/// The shipped lab config with every listener on loopback port 0 and certificate paths
/// in `certs`; `edit` may change the TOML text before it is used.
pub fn lab_config_text(certs: &Path, edit: impl FnOnce(String) -> String) -> String {
    let dir = certs.display().to_string();
    let text = BUILTIN_LAB_CONFIG
        .replace("127.0.0.1:5061", "127.0.0.1:0")
        .replace("127.0.0.2:5061", "127.0.0.2:0")
        .replace("127.0.0.3:5061", "127.0.0.3:0")
        .replace("127.0.0.1:5060", "127.0.0.1:0")
        .replace("127.0.0.1:5070", "127.0.0.1:0")
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("\"certs/", &format!("\"{dir}/"))
        .replace("dir = \"certs\"", &format!("dir = \"{dir}\""))
        .replace("auto_create = true", "auto_create = false");
    edit(text)
}

/// A user of the lab's first tenant whose one virtual endpoint rings and answers at once,
/// for load: `instant@adatum.biz`, [`INSTANT_NUMBER`].
pub const INSTANT_USER: &str = r#"
  [[tenant.user]]
  sip_address = "instant@adatum.biz"
  display_name = "Instant"
  line_uri = "tel:+18338009999"

    [[tenant.user.endpoint]]
    name = "instant"
    ring_after_seconds = 0
    answer_after_seconds = 0
"#;

/// The number of [`INSTANT_USER`].
pub const INSTANT_NUMBER: &str = "+18338009999";

/// The lab config text with [`INSTANT_USER`] added to the first tenant.
pub fn with_instant_user(text: String) -> String {
    with_user(text, INSTANT_USER)
}

/// The lab config text with `user` (a `[[tenant.user]]` block) added to the first tenant.
pub fn with_user(text: String, user: &str) -> String {
    text.replacen(
        "[[tenant]]\nid = \"contoso\"",
        &format!("{user}\n[[tenant]]\nid = \"contoso\""),
        1,
    )
}

/// A TLS client presenting `<certs>/<stem>.pem` (none when `stem` is `None`) and trusting
/// `<certs>/ca.pem`, restricted to `versions`: an SBC towards the proxy.
pub fn tls_connector(certs: &Path, stem: Option<&str>, versions: &[TlsVersion]) -> TlsConnector {
    let provider = drhub::transport::tls::provider(versions);
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(certs.join("ca.pem")).expect("ca.pem") {
        roots.add(c.expect("ca cert")).expect("add root");
    }
    let protocol_versions: Vec<&'static rustls::SupportedProtocolVersion> = versions
        .iter()
        .map(|v| match v {
            TlsVersion::V1_2 => &rustls::version::TLS12,
            TlsVersion::V1_3 => &rustls::version::TLS13,
        })
        .collect();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&protocol_versions)
        .expect("protocol versions")
        .with_root_certificates(roots);
    let config = match stem {
        Some(stem) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_file_iter(certs.join(format!("{stem}.pem")))
                    .expect("cert file")
                    .map(|c| c.expect("cert"))
                    .collect();
            let key =
                PrivateKeyDer::from_pem_file(certs.join(format!("{stem}.key"))).expect("key file");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    TlsConnector::from(Arc::new(config))
}

/// Writes the lab PKI of the shipped config into `dir`, plus SBC certificates for
/// `extra_sbcs`: what an SBC and the daemon need to talk mutual TLS.
pub fn write_lab_pki(dir: &Path, extra_sbcs: &[&str]) {
    let config = drhub::config::Config::parse(BUILTIN_LAB_CONFIG, "lab")
        .expect("the shipped config is valid");
    let proxy: Vec<String> = config.proxy.fqdns.iter().map(ToString::to_string).collect();
    let mut sbc = config.sbc_certificate_names();
    sbc.extend(extra_sbcs.iter().map(|s| (*s).to_owned()));
    drhub::certs::write_lab_pki(&drhub::certs::PkiRequest {
        dir,
        proxy_names: &proxy,
        sbc_fqdns: &sbc,
        force: true,
    })
    .expect("lab PKI");
}

/// The name an SBC expects on the proxy's certificate.
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from("sip.pstnhub.microsoft.com").expect("server name")
}

/// One SBC connection to the daemon.
pub struct Sbc<S> {
    pub stream: S,
    buf: BytesMut,
    /// The FQDN this SBC puts in Contact and From.
    pub fqdn: String,
    /// Answer the proxy's own OPTIONS (DR-OPT-3) with 200, as an SBC does, instead of
    /// handing them to the test.
    pub answer_options: bool,
    /// The proxy's OPTIONS answered so far.
    pub proxy_options: Vec<String>,
}

/// A response as text with helpers to read it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub text: String,
}

impl Reply {
    pub fn is_response(&self) -> bool {
        self.text.starts_with("SIP/2.0 ")
    }

    /// Every value of a header (each line, case-insensitive name), in order.
    pub fn headers(&self, name: &str) -> Vec<&str> {
        self.text
            .split("\r\n")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .filter_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
            .collect()
    }

    /// The Request-URI of a request.
    pub fn request_uri(&self) -> &str {
        self.text.split(' ').nth(1).unwrap_or_default()
    }

    pub fn status(&self) -> u16 {
        self.text
            .get(8..11)
            .and_then(|s| s.parse().ok())
            .expect("status line")
    }

    /// The first header with this name (case-insensitive), value trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers(name).into_iter().next()
    }

    pub fn ms_code(&self) -> Option<u32> {
        self.header("ms-diagnostics")?
            .split(';')
            .next()?
            .parse()
            .ok()
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(1);

pub fn next_id() -> usize {
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// An OPTIONS as an SBC sends it; `extra` lines are inserted before Content-Length,
/// and `contact` replaces the Contact value (`Some("")` removes the header).
pub fn options(fqdn: &str, contact: Option<&str>, extra: &[&str]) -> String {
    options_with(fqdn, next_id() as u64, contact, extra)
}

/// The `n`th OPTIONS of an SBC (the load benches number their own).
pub fn options_numbered(fqdn: &str, n: u64) -> String {
    options_with(fqdn, n, None, &[])
}

fn options_with(fqdn: &str, n: u64, contact: Option<&str>, extra: &[&str]) -> String {
    let mut s = format!(
        "OPTIONS sip:sip.pstnhub.microsoft.com:5061;transport=tls SIP/2.0\r\n\
Via: SIP/2.0/TLS {fqdn}:5061;branch=z9hG4bKopt{n}\r\n\
Max-Forwards: 70\r\n\
From: <sip:{fqdn}:5061;transport=tls>;tag=opt{n}\r\n\
To: <sip:sip.pstnhub.microsoft.com>\r\n\
Call-ID: options-{n}@{fqdn}\r\n\
CSeq: {n} OPTIONS\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY\r\n\
User-Agent: drhub-test-sbc\r\n"
    );
    match contact {
        None => s.push_str(&format!("Contact: <sip:{fqdn}:5061;transport=tls>\r\n")),
        Some("") => {}
        Some(c) => s.push_str(&format!("Contact: {c}\r\n")),
    }
    for e in extra {
        s.push_str(e);
        s.push_str("\r\n");
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

/// An INVITE from the SBC with an SDP offer, for the DR-VAL tests on INVITE.
pub fn invite(fqdn: &str, to_number: &str, extra: &[&str]) -> String {
    invite_numbered(fqdn, to_number, next_id() as u64, extra)
}

/// The `n`th INVITE of an SBC: Call-ID `invite-<n>@<fqdn>`, From tag `inv<n>`.
pub fn invite_numbered(fqdn: &str, to_number: &str, n: u64, extra: &[&str]) -> String {
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    let mut s = format!(
        "INVITE sip:{to_number}@sip.pstnhub.microsoft.com:5061;user=phone SIP/2.0\r\n\
Via: SIP/2.0/TLS {fqdn}:5061;branch=z9hG4bKinv{n}\r\n\
Max-Forwards: 70\r\n\
From: <sip:+17168712781@{fqdn}:5061;user=phone>;tag=inv{n}\r\n\
To: <sip:{to_number}@sip.pstnhub.microsoft.com;user=phone>\r\n\
Call-ID: invite-{n}@{fqdn}\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:+17168712781@{fqdn}:5061;transport=tls>\r\n"
    );
    for e in extra {
        s.push_str(e);
        s.push_str("\r\n");
    }
    s.push_str(&format!(
        "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ));
    s
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sbc<S> {
    pub fn from_stream(stream: S, fqdn: &str) -> Self {
        Sbc {
            stream,
            buf: BytesMut::new(),
            fqdn: fqdn.to_owned(),
            answer_options: true,
            proxy_options: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).await.expect("send");
        self.stream.flush().await.expect("flush");
    }

    /// The next complete SIP message from the daemon.
    pub async fn recv(&mut self) -> Reply {
        tokio::time::timeout(WAIT, self.read())
            .await
            .expect("reply in time")
            .expect("a reply, not a close")
    }

    /// The next complete SIP message, however long it takes; `None` once the stream
    /// closes, fails or sends what cannot be framed.
    pub async fn read(&mut self) -> Option<Reply> {
        loop {
            while self.buf.starts_with(b"\r\n") {
                self.buf.advance(2);
            }
            let complete = match Message::parse(&self.buf, &Limits::default()) {
                Ok(Status::Complete(m)) => Some(m.len()),
                Ok(Status::Partial) => None,
                Err(_) => return None,
            };
            if let Some(len) = complete {
                let text = String::from_utf8_lossy(&self.buf[..len]).into_owned();
                self.buf.advance(len);
                if self.answer_options && text.starts_with("OPTIONS ") {
                    let ok = response_to(&text, 200, "OK", &[]);
                    self.stream.write_all(ok.as_bytes()).await.ok()?;
                    self.proxy_options.push(text);
                    continue;
                }
                return Some(Reply { text });
            }
            if self.stream.read_buf(&mut self.buf).await.ok()? == 0 {
                return None;
            }
        }
    }

    /// The next message if one arrives within `wait`.
    pub async fn try_recv(&mut self, wait: Duration) -> Option<Reply> {
        tokio::time::timeout(wait, self.read()).await.ok().flatten()
    }

    /// Reads until a response with `status` arrives; returns it and what came before.
    /// A final response to the INVITE other than `status` fails the test.
    pub async fn until(&mut self, status: u16) -> (Reply, Vec<Reply>) {
        let mut before = Vec::new();
        loop {
            let r = self.recv().await;
            if r.is_response() && r.status() == status {
                return (r, before);
            }
            assert!(
                !r.is_response() || r.status() < 200 || r.cseq_method() != Some("INVITE"),
                "unexpected final {}: {}",
                r.status(),
                r.text
            );
            before.push(r);
        }
    }

    /// Reads until one message matching `a` and one matching `b` arrived, in either
    /// order (drhub's ACK on one leg and its answer on the other ...); others skipped.
    pub async fn until_both(
        &mut self,
        a: impl Fn(&Reply) -> bool,
        b: impl Fn(&Reply) -> bool,
    ) -> (Reply, Reply) {
        let (mut first, mut second): (Option<Reply>, Option<Reply>) = (None, None);
        loop {
            if let (Some(x), Some(y)) = (&first, &second) {
                return (x.clone(), y.clone());
            }
            let r = self.recv().await;
            if first.is_none() && a(&r) {
                first = Some(r);
            } else if second.is_none() && b(&r) {
                second = Some(r);
            }
        }
    }

    /// Reads until a request with this method arrives (responses before it are skipped).
    pub async fn until_request(&mut self, method: &str) -> Reply {
        loop {
            let r = self.recv().await;
            if r.text.starts_with(&format!("{method} ")) {
                return r;
            }
        }
    }

    /// Closes the connection as a restarting SBC does (TLS close_notify, then FIN).
    pub async fn close(mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// Raw bytes as they arrive (for the keep-alive pong), up to `n`.
    pub async fn recv_raw(&mut self, n: usize) -> Vec<u8> {
        tokio::time::timeout(WAIT, async {
            while self.buf.len() < n {
                if self.stream.read_buf(&mut self.buf).await.expect("read") == 0 {
                    break;
                }
            }
            let take = n.min(self.buf.len());
            self.buf.split_to(take).to_vec()
        })
        .await
        .expect("bytes in time")
    }

    /// True when the daemon closes the connection (EOF or reset) within [`WAIT`],
    /// after draining any pending response bytes into the returned text.
    pub async fn closed(&mut self) -> (bool, String) {
        let r = tokio::time::timeout(WAIT, async {
            loop {
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => {}
                }
            }
        })
        .await
        .unwrap_or(false);
        (r, String::from_utf8_lossy(&self.buf).into_owned())
    }

    pub async fn options(&mut self) -> Reply {
        let req = options(&self.fqdn.clone(), None, &[]);
        self.send(req).await;
        self.recv().await
    }

    pub async fn request(&mut self, text: &str) -> Reply {
        self.send(text).await;
        self.recv().await
    }
}

/// Scales every `*_after_seconds` of the config outside `[health]` by `factor`, so
/// scripted endpoints and voicemail run in milliseconds in black-box tests (the scripts'
/// order is unchanged).
pub fn fast(text: String, factor: f64) -> String {
    let mut table = "";
    text.lines()
        .map(|l| {
            if l.starts_with('[') {
                table = l.trim();
            }
            let scaled = (table != "[health]")
                .then(|| l.split_once("_after_seconds = "))
                .flatten()
                .and_then(|(k, v)| {
                    let n = v.split_whitespace().next()?.parse::<f64>().ok()?;
                    Some(format!("{k}_after_seconds = {}", n * factor))
                });
            scaled.unwrap_or_else(|| l.to_owned())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sets `key = value` in `[table]` of a config text: replaces the key's line where the
/// text has it in that table, else adds it under the table's header (and the table at
/// the end when there is none).
pub fn set_key(text: &str, table: &str, key: &str, value: &str) -> String {
    let header = format!("[{table}]");
    let line = format!("{key} = {value}");
    let mut current = String::new();
    let mut found = false;
    let mut out: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with('[') {
                current = l.trim().to_owned();
            }
            let is_key = l
                .trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='));
            if current == header && is_key && !found {
                found = true;
                line.clone()
            } else {
                l.to_owned()
            }
        })
        .collect();
    if !found {
        match out.iter().position(|l| l.trim() == header) {
            Some(i) => out.insert(i + 1, line),
            None => out.extend([String::new(), header, line]),
        }
    }
    out.join("\n") + "\n"
}

/// Header value of a request text (first match, case-insensitive).
/// A response to a request of this method.
pub fn response_of(method: &'static str) -> impl Fn(&Reply) -> bool {
    move |r| r.is_response() && r.cseq_method() == Some(method)
}

/// A request of this method.
pub fn request_of(method: &'static str) -> impl Fn(&Reply) -> bool {
    move |r| !r.is_response() && r.cseq_method() == Some(method)
}

pub fn req_header<'a>(req: &'a str, name: &str) -> Option<&'a str> {
    req.split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
}

impl Reply {
    /// The To tag of the response.
    pub fn to_tag(&self) -> Option<String> {
        let to = self.header("To")?;
        to.split(';')
            .find_map(|p| p.trim().strip_prefix("tag=").map(str::to_owned))
    }

    /// The body after the header block.
    pub fn body(&self) -> &str {
        self.text.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    pub fn cseq_method(&self) -> Option<&str> {
        self.header("CSeq")?.split_whitespace().nth(1)
    }
}

/// An in-dialog request the SBC sends after the INVITE: ACK (2xx: new branch; non-2xx:
/// the INVITE's branch), BYE, CANCEL (the INVITE's branch and To, CSeq number).
pub fn in_dialog(invite: &str, method: &str, to_tag: Option<&str>, cseq: u32) -> String {
    let first = invite.lines().next().unwrap_or_default();
    let uri = first.split_whitespace().nth(1).unwrap_or_default();
    let via = req_header(invite, "Via").unwrap_or_default();
    let via = match method {
        "CANCEL" => via.to_owned(),
        _ => format!(
            "{};branch=z9hG4bK{}{}",
            via.split(";branch=").next().unwrap_or(via),
            method.to_lowercase(),
            next_id()
        ),
    };
    let to = req_header(invite, "To").unwrap_or_default();
    let to = match to_tag {
        Some(t) => format!("{to};tag={t}"),
        None => to.to_owned(),
    };
    format!(
        "{method} {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
        req_header(invite, "From").unwrap_or_default(),
        req_header(invite, "Call-ID").unwrap_or_default(),
    )
}

/// A request in the dialog `invite` created, sent to `target` (the remote target: the
/// Contact of the 200) with `routes` as its Route headers, as an SBC that follows the
/// dialog's route set does (RFC 3261 §12.2.1.1), plus `extra` lines.
pub fn dialog_request(
    invite: &str,
    method: &str,
    cseq: u32,
    to_tag: &str,
    target: &str,
    routes: &[&str],
    extra: &[&str],
) -> String {
    let via = req_header(invite, "Via").unwrap_or_default();
    let via = via.split(";branch=").next().unwrap_or(via);
    let mut s = format!(
        "{method} {target} SIP/2.0\r\nVia: {via};branch=z9hG4bK{}{}\r\n",
        method.to_lowercase(),
        next_id()
    );
    for r in routes {
        s.push_str(&format!("Route: {r}\r\n"));
    }
    s.push_str(&format!(
        "Max-Forwards: 70\r\nFrom: {}\r\nTo: {};tag={to_tag}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n",
        req_header(invite, "From").unwrap_or_default(),
        req_header(invite, "To").unwrap_or_default(),
        req_header(invite, "Call-ID").unwrap_or_default(),
    ));
    for e in extra {
        s.push_str(e);
        s.push_str("\r\n");
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sbc<S> {
    /// Answers drhub's INVITE `inv` as an SBC does: 200 OK with To tag `tag`, the
    /// `contact` header and the SBC's SDP ([`SBC_ANSWER`]); returns drhub's ACK.
    pub async fn answer_200(&mut self, inv: &Reply, tag: &str, contact: &str) -> Reply {
        self.send(response_tagged(
            &inv.text,
            200,
            "OK",
            tag,
            &[contact],
            Some(SBC_ANSWER),
        ))
        .await;
        self.until_request("ACK").await
    }

    /// ACKs the 200 of `invite` on dialog `tag`, then hangs up: the BYE must get 200.
    pub async fn ack_and_bye(&mut self, invite: &str, tag: &str) {
        self.send(in_dialog(invite, "ACK", Some(tag), 1)).await;
        self.send(in_dialog(invite, "BYE", Some(tag), 2)).await;
        // Retransmissions of the INVITE's 200 sent before the ACK arrived may come first.
        let r = loop {
            let r = self.recv().await;
            if r.cseq_method() != Some("INVITE") {
                break r;
            }
        };
        assert_eq!(
            (r.status(), r.cseq_method()),
            (200, Some("BYE")),
            "{}",
            r.text
        );
    }
}

/// A response to a request text: Via, From, To (with a tag when it has none), Call-ID
/// and CSeq copied, then `extra` lines.
pub fn response_to(req: &str, code: u16, phrase: &str, extra: &[&str]) -> String {
    response_tagged(req, code, phrase, &format!("sbc{}", next_id()), extra, None)
}

/// ACK for a non-2xx final: the INVITE's branch (RFC 3261 §17.1.1.3).
pub fn ack_non2xx(invite: &str, to_tag: Option<&str>) -> String {
    in_dialog(invite, "CANCEL", to_tag, 1).replacen("CANCEL", "ACK", 2)
}

/// A response to a request text with a fixed To tag (an SBC's 180 and 200 of one dialog
/// share it), `extra` lines and an optional SDP body.
pub fn response_tagged(
    req: &str,
    code: u16,
    phrase: &str,
    tag: &str,
    extra: &[&str],
    sdp: Option<&str>,
) -> String {
    let mut s = format!("SIP/2.0 {code} {phrase}\r\n");
    for l in req.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let name = l
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" => {
                s.push_str(l);
                s.push_str("\r\n");
            }
            "to" | "t" if l.contains(";tag=") => {
                s.push_str(l);
                s.push_str("\r\n");
            }
            "to" | "t" => {
                s.push_str(&format!("{l};tag={tag}\r\n"));
            }
            _ => {}
        }
    }
    for e in extra {
        s.push_str(e);
        s.push_str("\r\n");
    }
    match sdp {
        Some(b) => s.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => s.push_str("Content-Length: 0\r\n\r\n"),
    }
    s
}

/// An SBC's SRTP answer to drhub's offer (what a real SBC sends back).
pub const SBC_ANSWER: &str = "v=0\r\no=SBC 1 1 IN IP4 192.0.2.50\r\ns=-\r\nc=IN IP4 192.0.2.50\r\nt=0 0\r\nm=audio 20000 RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\na=rtcp-mux\r\n";

/// The Record-Route a record-routing SBC puts on the INVITE: its own FQDN towards the
/// proxy (DR-VAL-4), and its inside address.
pub const RR: [&str; 2] = [
    "Record-Route: <sip:sbc1.adatum.biz:5061;transport=tls;lr;r2=on>",
    "Record-Route: <sip:10.0.0.7:5060;lr;r2=on>",
];

/// An in-dialog request as a record-routing SBC sends it on after consuming its own
/// Route entries (RFC 3261 §16.12): Request-URI the proxy's Contact from the 200 (the
/// remote target), the dialog's tags, `extra` lines (a Route naming the proxy ...).
pub fn routed(invite: &str, ok: &Reply, method: &str, cseq: u32, extra: &[&str]) -> String {
    let contact = ok.header("Contact").expect("the 200 has a Contact");
    let target = contact
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap_or_default();
    let tag = ok.to_tag().expect("To tag");
    dialog_request(invite, method, cseq, &tag, target, &[], extra)
}

/// Calls `number` through a record-routing SBC and ACKs the 200; returns the INVITE and
/// the 200.
pub async fn answered_call<S>(sbc: &mut Sbc<S>, number: &str) -> (String, Reply)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let inv = invite(&sbc.fqdn.clone(), number, &RR);
    sbc.send(&inv).await;
    let (ok, _) = sbc.until(200).await;
    sbc.send(routed(&inv, &ok, "ACK", 1, &[])).await;
    (inv, ok)
}

/// `req`, a request or response ending in an empty body, with `sdp` as its body.
pub fn with_sdp(req: &str, sdp: &str) -> String {
    with_body(req, "application/sdp", sdp)
}

/// `req`, a request or response ending in an empty body, with a `content_type` body.
pub fn with_body(req: &str, content_type: &str, body: &str) -> String {
    let head = req
        .strip_suffix("Content-Length: 0\r\n\r\n")
        .expect("a message ending in an empty body");
    format!(
        "{head}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A request the SBC sends as the UAS of drhub's INVITE `inv` (its To tag `tag`), in
/// that dialog (RFC 3261 §12.1.1, §12.2.1.1): Request-URI drhub's Contact, Route the
/// INVITE's Record-Route entries in order, From and To swapped.
pub fn uas_request(inv: &str, tag: &str, method: &str, cseq: u32) -> String {
    uas_request_via(inv, tag, method, cseq, "SIP/2.0/TLS sbc1.adatum.biz:5061")
}

/// [`uas_request`] from a peer whose Via sent-by is `via` (`SIP/2.0/UDP 127.0.0.1:5062`
/// for a UDP phone).
pub fn uas_request_via(inv: &str, tag: &str, method: &str, cseq: u32, via: &str) -> String {
    let contact = req_header(inv, "Contact").expect("drhub's INVITE has a Contact");
    let target = contact
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap_or_default();
    // The Contact where the Via says the peer is (its remote target stays put).
    let (transport, sent_by) = via
        .strip_prefix("SIP/2.0/")
        .and_then(|v| v.split_once(' '))
        .unwrap_or(("TLS", "sbc1.adatum.biz:5061"));
    let contact = match transport {
        "TLS" => format!("<sip:+14255550100@{sent_by};transport=tls>"),
        t => format!("<sip:user1@{sent_by};transport={}>", t.to_ascii_lowercase()),
    };
    let mut s = format!(
        "{method} {target} SIP/2.0\r\nVia: {via};branch=z9hG4bKuas{}\r\n",
        next_id()
    );
    for l in inv.split("\r\n") {
        if let Some(rr) = l.strip_prefix("Record-Route: ") {
            s.push_str(&format!("Route: {rr}\r\n"));
        }
    }
    s.push_str(&format!(
        "Max-Forwards: 70\r\nFrom: {};tag={tag}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n\
Contact: {contact}\r\nContent-Length: 0\r\n\r\n",
        req_header(inv, "To").unwrap_or_default(),
        req_header(inv, "From").unwrap_or_default(),
        req_header(inv, "Call-ID").unwrap_or_default(),
    ));
    s
}

/// The first line of an SDP `body` that starts with `prefix` (`m=audio`, `a=crypto`).
pub fn sdp_line<'a>(body: &'a str, prefix: &str) -> &'a str {
    body.split("\r\n")
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {body}"))
}

/// The `o=` session id and version of an SDP body.
pub fn sdp_origin(body: &str) -> (String, u64) {
    let f: Vec<&str> = sdp_line(body, "o=").split_whitespace().collect();
    (f[1].to_owned(), f[2].parse().expect("an o= version"))
}

/// The direction attribute of an SDP body, `none` when it has none.
pub fn sdp_direction(body: &str) -> &str {
    body.split("\r\n")
        .find(|l| {
            matches!(
                *l,
                "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive"
            )
        })
        .unwrap_or("none")
}
