//! Black-box harness: a real drhub daemon on loopback sockets, and an SBC that talks to
//! it over real mutual TLS (or plain TCP), the way a lab SBC does.
#![allow(dead_code)]

pub mod browser;
pub mod phone;
mod sbc;

pub use sbc::*;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use drhub::certs::{LabCa, LeafSpec, Usage};
use drhub::config::Config;
use drhub::hub::Hub;
use drhub::transport::tls::TlsVersion;

/// The lab PKI of the shipped config plus the odd certificates the bad-input tests
/// need, written once per test binary (RSA key generation is the slow part).
pub struct Pki {
    pub dir: PathBuf,
}

pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("drhub-test-pki-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write_lab_pki(
            &dir,
            &["sbc9.adatum.biz", "sbc1.fabrikam.com", "*.adatum.biz"],
        );
        let ca = LabCa::load(&dir).expect("lab CA");
        // serverAuth-only (what public CAs issue since 2026), expired, and untrusted.
        ca.issue(&LeafSpec::new(["sbc1.adatum.biz"]).usages(&[Usage::ServerAuth]))
            .and_then(|c| c.write(&dir, "serverauth-only"))
            .expect("serverAuth-only cert");
        ca.issue(&LeafSpec::new(["sbc1.adatum.biz"]).expired())
            .and_then(|c| c.write(&dir, "expired"))
            .expect("expired cert");
        // RFC 2818 fragment wildcard in the Common Name only: CN=sb*.adatum.biz, with a
        // SAN the SBC does not use, so DR-VAL-3 must take the CN.
        ca.issue(&LeafSpec::new(["unused.adatum.biz"]).common_name("sb*.adatum.biz"))
            .and_then(|c| c.write(&dir, "fragment-wildcard"))
            .expect("fragment wildcard cert");
        let rogue = LabCa::generate().expect("rogue CA");
        rogue
            .issue(&LeafSpec::new(["sbc1.adatum.biz"]))
            .and_then(|c| c.write(&dir, "untrusted"))
            .expect("untrusted cert");
        Pki { dir }
    })
}

impl Pki {
    pub fn cert(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.pem"))
    }
    pub fn key(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.key"))
    }
}

/// An empty directory of this test process for `name`, where a command runs.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("drhub-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `config/drhub.toml`, the lab configuration drhub ships.
pub fn shipped_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/drhub.toml")
}

/// The shipped lab config with loopback port 0 and the test PKI; `edit` may change
/// the TOML text before it is parsed.
pub fn lab_config(edit: impl FnOnce(String) -> String) -> Config {
    let text = lab_config_text(&pki().dir, edit);
    Config::parse(&text, "test config").unwrap_or_else(|e| panic!("test config invalid:\n{e}"))
}

/// A running daemon, stopped (and drained) on drop or by [`TestDaemon::stop`].
pub struct TestDaemon {
    pub config: Arc<Config>,
    pub hub: Arc<Hub>,
    addrs: Vec<(String, SocketAddr)>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl TestDaemon {
    pub async fn start() -> TestDaemon {
        Self::start_with(lab_config(|t| t)).await
    }

    pub async fn start_with(config: Config) -> TestDaemon {
        Self::start_from(config, None).await
    }

    /// A daemon on the config file `path`, which a reload re-reads.
    pub async fn start_from_file(path: &std::path::Path) -> TestDaemon {
        let config = Config::load(path).unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        Self::start_from(config, Some(path.to_owned())).await
    }

    async fn start_from(config: Config, source: Option<PathBuf>) -> TestDaemon {
        // drhub's log in the test output when RUST_LOG is set.
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        let config = Arc::new(config);
        let daemon = drhub::Daemon::bind(config.clone())
            .await
            .expect("daemon binds")
            .with_source(source);
        let addrs = daemon.local_addrs().to_vec();
        let hub = daemon.hub();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(daemon.serve(shutdown.clone()));
        TestDaemon {
            config,
            hub,
            addrs,
            shutdown,
            task: Some(task),
        }
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(n, _)| n == listener)
            .map(|(_, a)| *a)
            .expect("listener is enabled")
    }

    pub fn tls_addr(&self) -> SocketAddr {
        self.addr("sip")
    }

    /// Sends SIGTERM's equivalent and waits for the daemon to finish its drain.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            tokio::time::timeout(WAIT, t)
                .await
                .expect("daemon stops in time")
                .expect("daemon task");
        }
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A TLS client presenting the lab certificate `stem` (none for `None`).
pub fn client_tls_as(stem: Option<&str>, versions: &[TlsVersion]) -> TlsConnector {
    tls_connector(&pki().dir, stem, versions)
}

pub type TlsSbc = Sbc<tokio_rustls::client::TlsStream<TcpStream>>;

/// An SBC's side of a connection the proxy opened to it (DR-TLS-4).
pub type ServerSbc = Sbc<tokio_rustls::server::TlsStream<TcpStream>>;

/// The SBC's own TLS listener: where the proxy connects when it has no connection to the
/// SBC (a trunk's `address`). It presents `<stem>.pem` and requires a client certificate
/// from the lab CA, as an SBC does.
pub struct SbcListener {
    pub addr: SocketAddr,
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    fqdn: String,
}

impl SbcListener {
    pub async fn bind(stem: &str, fqdn: &str) -> SbcListener {
        let pki = pki();
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(pki.dir.join("ca.pem")).expect("ca.pem") {
            roots.add(c.expect("ca cert")).expect("add root");
        }
        let provider = drhub::transport::tls::provider(&[TlsVersion::V1_2]);
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .expect("client verifier");
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pki.cert(stem))
            .expect("cert file")
            .map(|c| c.expect("cert"))
            .collect();
        let key = PrivateKeyDer::from_pem_file(pki.key(stem)).expect("key file");
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .expect("server cert");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind SBC listener");
        SbcListener {
            addr: listener.local_addr().expect("addr"),
            listener,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            fqdn: fqdn.to_owned(),
        }
    }

    /// The next connection the proxy opens, after the TLS handshake; its client
    /// certificate's names come with it.
    pub async fn accept(&self) -> (ServerSbc, Vec<String>) {
        tokio::time::timeout(WAIT, async {
            let (tcp, _) = self.listener.accept().await.expect("accept");
            let tls = self
                .acceptor
                .accept(tcp)
                .await
                .expect("TLS handshake with the proxy");
            let names = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| drhub::transport::tls::PeerIdentity::from_der(c).ok())
                .map(|id| id.names().map(str::to_owned).collect())
                .unwrap_or_default();
            (Sbc::from_stream(tls, &self.fqdn), names)
        })
        .await
        .expect("the proxy connects in time")
    }

    /// Runs TLS handshakes for every connection the proxy opens, and drops them (for a
    /// proxy that is expected to refuse the handshake).
    pub fn serve_handshakes(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            while let Ok((tcp, _)) = self.listener.accept().await {
                let _ = self.acceptor.accept(tcp).await;
            }
        })
    }

    /// True if the proxy opens no connection within `wait`.
    pub async fn quiet_for(&self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.listener.accept())
            .await
            .is_err()
    }
}

/// The lab config text with `address = "<addr>"` on the trunk `fqdn` (where the proxy
/// connects to that SBC, DR-TLS-4).
pub fn with_trunk_address(text: String, fqdn: &str, addr: SocketAddr) -> String {
    let needle = format!("fqdn = \"{fqdn}\"\n");
    assert!(text.contains(&needle), "no trunk {fqdn} in the config");
    text.replacen(&needle, &format!("{needle}  address = \"{addr}\"\n"), 1)
}

/// Connects as the SBC whose lab certificate is `<stem>.pem` (usually its FQDN).
pub async fn connect_as(daemon: &TestDaemon, stem: &str) -> std::io::Result<TlsSbc> {
    let connector = client_tls_as(Some(stem), &[TlsVersion::V1_2]);
    let fqdn = if stem.starts_with("star.") {
        stem.replacen("star", "sbc5", 1)
    } else {
        stem.to_owned()
    };
    connect_with(daemon, connector, fqdn).await
}

pub async fn connect_with(
    daemon: &TestDaemon,
    connector: TlsConnector,
    fqdn: String,
) -> std::io::Result<TlsSbc> {
    connect_to(daemon.tls_addr(), connector, fqdn).await
}

/// Connects as `<stem>.pem` to another datacenter (listener) of the daemon (DR-DC-1).
pub async fn connect_as_on(
    daemon: &TestDaemon,
    listener: &str,
    stem: &str,
) -> std::io::Result<TlsSbc> {
    let connector = client_tls_as(Some(stem), &[TlsVersion::V1_2]);
    connect_to(daemon.addr(listener), connector, stem.to_owned()).await
}

pub async fn connect_to(
    addr: SocketAddr,
    connector: TlsConnector,
    fqdn: String,
) -> std::io::Result<TlsSbc> {
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = connector.connect(server_name(), tcp).await?;
    // With TLS 1.3 a refused client certificate only shows on the first read; make
    // the handshake outcome visible here by a zero-length flush.
    tls.flush().await?;
    Ok(Sbc::from_stream(tls, &fqdn))
}

pub async fn connect_tcp(addr: SocketAddr, fqdn: &str) -> Sbc<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("tcp connect");
    Sbc::from_stream(tcp, fqdn)
}

/// One `GET` to the daemon's API, raw: the head and the body, for answers that are not
/// JSON (the metrics text, the status page). `headers` are added as given.
pub async fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (String, String) {
    use tokio::io::AsyncReadExt;
    let mut tcp = TcpStream::connect(addr).await.expect("API up");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.expect("request sent");
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.expect("answer read");
    let text = String::from_utf8(answer).expect("UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP");
    (head.to_owned(), body.to_owned())
}

impl TestDaemon {
    /// The Teams user transfers the first call the API lists answered to `to` (DR-XFER:
    /// `POST /api/calls/{id}/transfer`), once there is one (within 8 s).
    pub async fn transfer_when_answered(&self, to: &str) {
        let api = self.addr("api");
        for _ in 0..400 {
            let (_, v) = drhub::api::request(api, "GET", "/api/calls", None, None)
                .await
                .expect("API reachable");
            let up = v["calls"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["state"] == "answered"))
                .and_then(|c| c["call_id"].as_str().map(str::to_owned));
            if let Some(id) = up {
                let body = serde_json::json!({ "to": to });
                let path = format!("/api/calls/{id}/transfer");
                let (s, v) = drhub::api::request(api, "POST", &path, None, Some(&body))
                    .await
                    .expect("API reachable");
                assert_eq!(s, 202, "{v}");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the call was never answered");
    }

    /// Waits until no call is up (bounded by [`WAIT`]).
    pub async fn calls_drained(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.hub.calls.is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} call(s) left in the call table",
                self.hub.calls.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
