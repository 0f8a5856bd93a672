//! Assembling the daemon: certificates, listeners, the proxy; then serving until
//! shutdown and draining within a bounded grace period.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::call::Dest;
use crate::certs::{self, PkiRequest};
use crate::config::{Config, Listener, ListenerTransport};
use crate::endpoint::net::{serve_udp, EndpointDispatch};
use crate::endpoint::service::Endpoints;
use crate::proxy::Proxy;
use crate::sip;
use crate::transaction::{LayerHandle, Output, Timers, TransactionLayer};
use crate::transport::listener::{self, Listening, Shared};
use crate::transport::stream::StreamLimits;
use crate::transport::tls::{self, TlsFiles};
use crate::transport::Flows;

/// Why the daemon could not start. Each names the listener or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("listener[{index}] `{name}`: {source}")]
    Tls {
        index: usize,
        name: String,
        source: Box<tls::TlsError>,
    },
    #[error("listener[{index}] `{name}`: {path}: file not found (and it is not a lab file drhub can create; see [certs] auto_create)")]
    MissingFile {
        index: usize,
        name: String,
        path: PathBuf,
    },
    #[error("creating the lab certificates in {dir}: {source}")]
    Certs {
        dir: PathBuf,
        source: Box<certs::CertError>,
    },
    #[error(transparent)]
    Endpoints(crate::endpoint::service::EndpointError),
    #[error("listener[{index}] `{name}`: cannot listen on {address}: {source}")]
    Bind {
        index: usize,
        name: String,
        address: SocketAddr,
        source: std::io::Error,
    },
}

impl StartError {
    /// True for errors the user fixes in the configuration or its files (exit 64).
    pub fn is_config_error(&self) -> bool {
        !matches!(self, StartError::Bind { .. } | StartError::Endpoints(_))
    }
}

/// A daemon whose listeners are bound, ready to serve.
pub struct Daemon {
    config: Arc<Config>,
    listening: Vec<Listening>,
    addrs: Vec<(String, SocketAddr)>,
    proxy: Arc<Proxy>,
    flows: Arc<Flows>,
    layer: TransactionLayer<Dest>,
    layer_handle: LayerHandle<Dest>,
    endpoint_udp: Option<Arc<tokio::net::UdpSocket>>,
}

impl Daemon {
    /// Creates missing lab certificates when allowed, loads TLS, binds every enabled
    /// listener. Nothing is served until [`Daemon::serve`].
    pub async fn bind(config: Arc<Config>) -> Result<Daemon, StartError> {
        ensure_lab_pki(&config)?;
        let flows = Arc::new(Flows::default());
        let timers = Timers {
            t1: config.timers.t1,
            t2: config.timers.t2,
            t4: config.timers.t4,
        };
        let (layer, layer_handle) = TransactionLayer::new(timers);
        let endpoint_sockets = match config.endpoints.address {
            Some(address) => Some(
                crate::endpoint::service::bind(address)
                    .await
                    .map_err(StartError::Endpoints)?,
            ),
            None => None,
        };
        let endpoints = match &endpoint_sockets {
            Some((udp, _)) => {
                let e = Endpoints::new(&config, udp.clone()).map_err(StartError::Endpoints)?;
                info!(address = %e.local, "endpoint listener (UDP and TCP) for SIP endpoints");
                Some(Arc::new(e))
            }
            None => None,
        };
        let proxy = Arc::new(Proxy::new(
            config.clone(),
            flows.clone(),
            layer_handle.clone(),
            endpoints.clone(),
        ));
        let limits = StreamLimits {
            sip: sip::Limits {
                max_header_bytes: config.limits.max_header_bytes,
                max_body_bytes: config.limits.max_body_bytes,
            },
            idle_timeout: config.limits.idle_timeout,
            message_timeout: config.limits.message_timeout,
        };
        let mut listening = Vec::new();
        let mut addrs = Vec::new();
        for (index, l) in config
            .listeners
            .iter()
            .enumerate()
            .filter(|(_, l)| l.enabled)
        {
            let tls = match &l.tls {
                Some(t) => {
                    let files = TlsFiles {
                        cert: t.certificate.clone(),
                        key: t.key.clone(),
                        client_ca: t.client_ca.clone(),
                    };
                    let cfg = tls::server_config(&files, &t.versions).map_err(|source| {
                        StartError::Tls {
                            index,
                            name: l.name.clone(),
                            source: Box::new(source),
                        }
                    })?;
                    Some(TlsAcceptor::from(cfg))
                }
                None => None,
            };
            let socket = TcpListener::bind(l.address)
                .await
                .map_err(|source| StartError::Bind {
                    index,
                    name: l.name.clone(),
                    address: l.address,
                    source,
                })?;
            let local = socket.local_addr().map_err(|source| StartError::Bind {
                index,
                name: l.name.clone(),
                address: l.address,
                source,
            })?;
            info!(listener = %l.name, transport = %l.transport, address = %local, fqdn = %l.fqdn, "listening");
            if l.transport == ListenerTransport::Tcp {
                warn!(listener = %l.name, "plain TCP listener enabled: only trunks with allow_insecure = true are served there");
            }
            addrs.push((l.name.clone(), local));
            listening.push(Listening {
                name: l.name.clone(),
                dispatch: proxy.clone(),
                proxy_fqdn: l.fqdn.clone(),
                transport: l.transport,
                socket,
                tls,
                limits: limits.clone(),
                handshake_timeout: config.limits.handshake_timeout,
            });
        }
        let mut endpoint_udp = None;
        if let Some((udp, tcp)) = endpoint_sockets {
            if let Ok(a) = udp.local_addr() {
                addrs.push((crate::proxy::ENDPOINT_LISTENER.to_owned(), a));
            }
            endpoint_udp = Some(udp);
            listening.push(Listening {
                name: crate::proxy::ENDPOINT_LISTENER.to_owned(),
                dispatch: Arc::new(EndpointDispatch {
                    proxy: proxy.clone(),
                }),
                proxy_fqdn: config.primary_fqdn().clone(),
                transport: ListenerTransport::Tcp,
                socket: tcp,
                tls: None,
                limits: limits.clone(),
                handshake_timeout: config.limits.handshake_timeout,
            });
        }
        Ok(Daemon {
            config,
            listening,
            addrs,
            proxy,
            flows,
            layer,
            layer_handle,
            endpoint_udp,
        })
    }

    /// The bound address of every enabled listener, by listener name.
    pub fn local_addrs(&self) -> &[(String, SocketAddr)] {
        &self.addrs
    }

    /// The address of the named listener.
    pub fn addr(&self, listener: &str) -> Option<SocketAddr> {
        self.addrs
            .iter()
            .find(|(n, _)| n == listener)
            .map(|(_, a)| *a)
    }

    /// The proxy state, for status reporting and tests.
    pub fn proxy(&self) -> Arc<Proxy> {
        self.proxy.clone()
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, lets work in
    /// progress finish within `limits.shutdown_grace`, closes every connection and
    /// returns.
    pub async fn serve(self, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        let shared = Shared {
            flows: self.flows.clone(),
            permits: Arc::new(Semaphore::new(self.config.limits.max_connections)),
            stop_accepting: shutdown.clone(),
            close_connections: CancellationToken::new(),
            tracker: tracker.clone(),
        };
        for l in self.listening {
            tracker.spawn(listener::accept_loop(l, shared.clone()));
        }
        let layer_task = tokio::spawn(drive_layer(
            self.layer,
            self.layer_handle,
            self.proxy.clone(),
        ));
        if let Some(udp) = self.endpoint_udp {
            tracker.spawn(serve_udp(
                udp,
                self.proxy.clone(),
                shared.close_connections.clone(),
            ));
        }
        if let Some(endpoints) = self.proxy.endpoints().cloned() {
            let stop = shared.close_connections.clone();
            tracker.spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
                loop {
                    tokio::select! {
                        _ = tick.tick() => endpoints.expire(),
                        _ = stop.cancelled() => return,
                    }
                }
            });
        }
        shutdown.cancelled().await;
        self.proxy.set_draining();
        let grace = self.config.limits.shutdown_grace;
        let drained = tokio::time::timeout(grace, self.proxy.idle()).await.is_ok();
        if !drained {
            warn!(
                ?grace,
                "grace period over with work in progress; closing anyway"
            );
        }
        shared.close_connections.cancel();
        layer_task.abort();
        tracker.close();
        // Each connection's close is itself bounded (2 s for close_notify).
        if tokio::time::timeout(std::time::Duration::from_secs(3), tracker.wait())
            .await
            .is_err()
        {
            warn!("some connections did not close in time");
        }
    }
}

/// The transaction layer's one task: writes what it must transmit, hands core events to
/// the proxy. A failed write is reported back so the transaction ends (§17.1.4).
async fn drive_layer(
    mut layer: TransactionLayer<Dest>,
    handle: LayerHandle<Dest>,
    proxy: Arc<Proxy>,
) {
    loop {
        match layer.next().await {
            Output::Transmit(t) => {
                let sent = t.dest.send(t.bytes);
                if !sent {
                    warn!("message not sent: the connection is gone or its send queue is full");
                    if let Some(tx) = t.tx {
                        let _ = handle.transport_error(tx);
                    }
                }
            }
            Output::Event(ev) => proxy.on_core_event(ev),
        }
    }
}

/// Writes the lab PKI when a TLS listener names missing files that are the lab's own
/// (`proxy.pem`, `proxy.key`, `ca.pem` in `[certs] dir`) and `auto_create` is on.
fn ensure_lab_pki(config: &Config) -> Result<(), StartError> {
    let dir = &config.certs.dir;
    let mut need = false;
    for (index, l) in config
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| l.enabled)
    {
        let Some(t) = &l.tls else { continue };
        for path in [&t.certificate, &t.key, &t.client_ca] {
            if path.exists() {
                continue;
            }
            if config.certs.auto_create && is_lab_file(dir, path) {
                need = true;
            } else {
                return Err(missing(index, l, path));
            }
        }
    }
    if !need {
        return Ok(());
    }
    let proxy_names: Vec<String> = config.proxy.fqdns.iter().map(ToString::to_string).collect();
    let sbc = config.sbc_certificate_names();
    let req = PkiRequest {
        dir,
        proxy_names: &proxy_names,
        sbc_fqdns: &sbc,
        force: false,
    };
    let report = certs::write_lab_pki(&req).map_err(|source| StartError::Certs {
        dir: dir.clone(),
        source: Box::new(source),
    })?;
    info!(
        dir = %dir.display(),
        sbc_certificates = report.sbcs.len(),
        "created the lab PKI (certificates were missing); an SBC trusts ca.pem and presents its <fqdn>.pem/.key"
    );
    Ok(())
}

fn is_lab_file(dir: &Path, path: &Path) -> bool {
    ["proxy.pem", "proxy.key", "ca.pem"]
        .iter()
        .any(|f| path == dir.join(f))
}

fn missing(index: usize, l: &Listener, path: &Path) -> StartError {
    StartError::MissingFile {
        index,
        name: l.name.clone(),
        path: path.to_owned(),
    }
}

/// Virtual-time tests of whole calls: the real proxy, transaction layer and call tasks,
/// with the SBC on an in-memory stream, so paused tokio time drives every timer at its
/// configured value (60 s ring timeout, 64*T1 ACK wait) without waiting in real time.
#[cfg(test)]
mod virtual_time {
    use super::*;
    use crate::config::BUILTIN_LAB_CONFIG;
    use crate::sip::{Message, Status};
    use crate::transport::tls::PeerIdentity;
    use crate::transport::{FlowHandle, FlowId, FlowInfo};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    struct Lab {
        proxy: Arc<Proxy>,
        sbc: DuplexStream,
        buf: Vec<u8>,
    }

    async fn lab(edit: impl FnOnce(String) -> String) -> Lab {
        let text =
            edit(BUILTIN_LAB_CONFIG.replace("address = \"127.0.0.1:5070\"", "address = \"off\""));
        let config = Arc::new(Config::parse(&text, "test").expect("config"));
        let flows = Arc::new(Flows::default());
        let t = &config.timers;
        let (layer, handle) = TransactionLayer::new(Timers {
            t1: t.t1,
            t2: t.t2,
            t4: t.t4,
        });
        let proxy = Arc::new(Proxy::new(
            config.clone(),
            flows.clone(),
            handle.clone(),
            None,
        ));
        tokio::spawn(drive_layer(layer, handle, proxy.clone()));
        let now = time::OffsetDateTime::now_utc();
        let identity = PeerIdentity {
            subject_cn: Some("sbc1.adatum.biz".into()),
            dns_names: vec!["sbc1.adatum.biz".into()],
            ip_addresses: Vec::new(),
            not_before: now,
            not_after: now + time::Duration::days(30),
            serial: "01".into(),
            issuer: "CN=test".into(),
        };
        let info = Arc::new(FlowInfo {
            id: FlowId::next(),
            peer: "192.0.2.10:5061".parse().expect("addr"),
            local: "127.0.0.1:5061".parse().expect("addr"),
            listener: "sip".into(),
            proxy_fqdn: config.primary_fqdn().clone(),
            transport: ListenerTransport::Tls,
            identity: Some(Arc::new(identity)),
        });
        let (client, server) = tokio::io::duplex(1 << 20);
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        flows.insert(FlowHandle::new(info.clone(), tx));
        let limits = StreamLimits {
            sip: sip::Limits::default(),
            idle_timeout: config.limits.idle_timeout,
            message_timeout: config.limits.message_timeout,
        };
        tokio::spawn(crate::transport::stream::serve(
            server,
            info,
            proxy.clone(),
            limits,
            rx,
            CancellationToken::new(),
        ));
        Lab {
            proxy,
            sbc: client,
            buf: Vec::new(),
        }
    }

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

    fn invite(number: &str) -> String {
        format!(
            "INVITE sip:{number}@sip.pstnhub.microsoft.com;user=phone SIP/2.0\r\nVia: SIP/2.0/TLS sbc1.adatum.biz:5061;branch=z9hG4bKvt1\r\nMax-Forwards: 70\r\nFrom: <sip:+17168712781@sbc1.adatum.biz;user=phone>;tag=vt\r\nTo: <sip:{number}@sip.pstnhub.microsoft.com;user=phone>\r\nCall-ID: vt-1\r\nCSeq: 1 INVITE\r\nContact: <sip:+17168712781@sbc1.adatum.biz:5061;transport=tls>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
            SDP.len()
        )
    }

    impl Lab {
        /// The next message from the proxy, and the virtual time it arrived.
        async fn next(&mut self) -> (String, tokio::time::Instant) {
            loop {
                while self.buf.starts_with(b"\r\n") {
                    self.buf.drain(..2);
                }
                if let Ok(Status::Complete(m)) = Message::parse(&self.buf, &sip::Limits::default())
                {
                    let len = m.len();
                    let text = String::from_utf8_lossy(&self.buf[..len]).into_owned();
                    self.buf.drain(..len);
                    return (text, tokio::time::Instant::now());
                }
                let mut chunk = [0u8; 8192];
                let n = self.sbc.read(&mut chunk).await.expect("read");
                assert!(n > 0, "the proxy closed the connection");
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn dr_fork_7_default_ring_timeout_fires_at_exactly_60_seconds() {
        // User1's clients ring but never answer.
        let mut lab = lab(|t| {
            t.replace("answer_after_seconds = 2\n", "\n")
                .replace("answer_after_seconds = 2.5\n", "\n")
        })
        .await;
        let t0 = tokio::time::Instant::now();
        lab.sbc
            .write_all(invite("+18338006777").as_bytes())
            .await
            .expect("write");
        let final_response = loop {
            let (text, at) = lab.next().await;
            if !text.starts_with("SIP/2.0 1") {
                break (text, at);
            }
        };
        assert!(
            final_response.0.starts_with("SIP/2.0 480 "),
            "{}",
            final_response.0
        );
        assert_eq!(final_response.1 - t0, Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn two_hundred_is_retransmitted_then_bye_after_64_t1_without_ack() {
        let mut lab = lab(|t| t).await;
        let t0 = tokio::time::Instant::now();
        lab.sbc
            .write_all(invite("+18338006777").as_bytes())
            .await
            .expect("write");
        let mut oks = Vec::new();
        let bye_at = loop {
            let (text, at) = lab.next().await;
            if text.starts_with("SIP/2.0 200 ") {
                oks.push(at - t0);
            }
            if text.starts_with("BYE ") {
                assert!(text.contains("ms-diagnostics: 1106;"), "{text}");
                break at - t0;
            }
        };
        // The desktop answers at 2 s; retransmissions at +0.5, +1.5, +3.5, +7.5, then every
        // T2 = 4 s (RFC 3261 §13.3.1.4); the BYE at 2 s + 64*T1 = 34 s.
        let secs = |s: f64| Duration::from_secs_f64(s);
        assert_eq!(
            &oks[..5],
            &[secs(2.0), secs(2.5), secs(3.5), secs(5.5), secs(9.5)]
        );
        assert_eq!(bye_at, secs(34.0));
        assert_eq!(
            lab.proxy.calls().len(),
            1,
            "the call waits for the BYE's answer"
        );
    }
}
