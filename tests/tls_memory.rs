//! Resident memory per idle SBC-side TLS connection (target: <= 32 KiB at 2,000 connections).
//!
//! Ignored by default: it opens thousands of sockets and takes a while. Run with
//! `cargo test --release --test tls_memory -- --ignored --nocapture idle_tls_connection_memory`
//! (`DRHUB_MEM_CONNS` sets the count, `DRHUB_MEM_TLS=13` makes the clients use TLS 1.3).
//!
//! The clients live in a child process (this test binary re-run as `memory_client_holder`),
//! so the parent's resident-set growth is the server side alone: the TCP socket, the
//! tokio-rustls stream with its rustls connection, and one parked task reading from it, as
//! the daemon's read loop would hold it.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use drhub::certs::{write_lab_pki, PkiRequest};
use drhub::transport::tls::{client_config, server_config, TlsFiles, TlsVersion};
use rustls::pki_types::ServerName;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const WARMUP: usize = 100;

fn lab_files(dir: &Path) -> (TlsFiles, TlsFiles) {
    let proxy = vec!["sip.pstnhub.microsoft.com".to_owned()];
    let sbcs = vec!["sbc1.adatum.biz".to_owned()];
    let report = write_lab_pki(&PkiRequest {
        dir,
        proxy_names: &proxy,
        sbc_fqdns: &sbcs,
        force: false,
    })
    .expect("lab PKI");
    let server = TlsFiles {
        cert: report.proxy.cert,
        key: report.proxy.key,
        client_ca: report.ca.cert.clone(),
    };
    let client = TlsFiles {
        cert: report.sbcs[0].files.cert.clone(),
        key: report.sbcs[0].files.key.clone(),
        client_ca: report.ca.cert,
    };
    (server, client)
}

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .expect("VmRSS line")
        * 1024
}

fn conns() -> usize {
    std::env::var("DRHUB_MEM_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

#[test]
#[ignore = "opens thousands of connections; run by hand"]
fn idle_tls_connection_memory() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tls_memory");
    let (server_files, _) = lab_files(&dir);
    let n = conns();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let config = server_config(&server_files, &[TlsVersion::V1_2, TlsVersion::V1_3])
            .expect("server config");
        let acceptor = TlsAcceptor::from(config);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");

        let exe = std::env::current_exe().expect("test binary");
        let mut child = Command::new(exe)
            .args([
                "--ignored",
                "--exact",
                "memory_client_holder",
                "--nocapture",
            ])
            .env("DRHUB_MEM_ADDR", addr.to_string())
            .env("DRHUB_MEM_DIR", &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("client process");

        let mut before = 0;
        let mut held = Vec::with_capacity(n);
        for i in 0..n {
            if i == WARMUP {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                before = rss_bytes();
            }
            let (tcp, _) =
                tokio::time::timeout(std::time::Duration::from_secs(30), listener.accept())
                    .await
                    .expect("the client process keeps connecting")
                    .expect("accept");
            let mut tls = acceptor.accept(tcp).await.expect("handshake");
            // An idle connection as the read loop holds it: a task parked in read().
            held.push(tokio::spawn(async move {
                let mut byte = [0u8; 1];
                let _ = tls.read(&mut byte).await;
                tls
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let after = rss_bytes();
        let per_conn = (after - before) / (n - WARMUP);
        println!(
            "{n} idle server-side TLS connections: {} KiB resident in all, {per_conn} bytes \
             ({:.1} KiB) each; size_of ServerConnection = {} bytes, \
             size_of server::TlsStream<TcpStream> = {} bytes",
            after / 1024,
            per_conn as f64 / 1024.0,
            std::mem::size_of::<rustls::ServerConnection>(),
            std::mem::size_of::<tokio_rustls::server::TlsStream<TcpStream>>(),
        );
        drop(child.stdin.take());
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            let _ = stdout.read_to_string(&mut out);
        }
        let _ = child.wait();
        for task in held {
            task.abort();
        }
        assert!(
            per_conn <= 32 * 1024,
            "{per_conn} bytes per idle connection"
        );
    });
}

/// The client half of `idle_tls_connection_memory`, run in a child process.
#[test]
#[ignore = "helper process of idle_tls_connection_memory"]
fn memory_client_holder() {
    let (Ok(addr), Ok(dir)) = (
        std::env::var("DRHUB_MEM_ADDR"),
        std::env::var("DRHUB_MEM_DIR"),
    ) else {
        return;
    };
    let (_, client_files) = lab_files(Path::new(&dir));
    let versions: &[TlsVersion] = match std::env::var("DRHUB_MEM_TLS").as_deref() {
        Ok("13") => &[TlsVersion::V1_3],
        _ => &[TlsVersion::V1_2],
    };
    let n = conns();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let connector =
            TlsConnector::from(client_config(&client_files, versions).expect("client config"));
        let mut held = Vec::with_capacity(n);
        for _ in 0..n {
            let tcp = TcpStream::connect(&addr).await.expect("connect");
            let name = ServerName::try_from("sip.pstnhub.microsoft.com").expect("name");
            held.push(connector.connect(name, tcp).await.expect("handshake"));
        }
        println!("READY {}", held.len());
        // Hold every connection until the parent closes our stdin.
        let _ = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = BufReader::new(std::io::stdin()).read_line(&mut line);
        })
        .await;
        drop(held);
    });
}
