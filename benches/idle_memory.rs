//! Resident memory per idle TLS connection: open N mutual-TLS connections to the release
//! `drhub` binary, each sending one OPTIONS so it is fully established, then compare
//! the daemon's VmRSS with what it had before.
//!
//! Run: `cargo bench --bench idle_memory -- --connections 2000`

mod support;

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::*;

fn main() {
    let n = arg("--connections", 2000) as usize;
    // Every connection comes from 127.0.0.1: lift the per-address cap.
    let (dir, cfg) = lab("memory", |t| {
        set_key(&t, "limits", "max_connections_per_address", "1000000")
    });
    let (mut daemon, addr) = spawn_daemon(&dir, &cfg);
    let pid = daemon.id();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (before, after) = rt.block_on(async {
        let connector = tls_client(&dir, "sbc1.adatum.biz");
        // One connection first so lazily initialised state is not counted per connection.
        let mut warm = connector
            .connect(
                server_name(),
                tokio::net::TcpStream::connect(addr).await.expect("tcp"),
            )
            .await
            .expect("tls");
        warm.write_all(options_n(0).as_bytes())
            .await
            .expect("write");
        let mut buf = BytesMut::with_capacity(4096);
        warm.read_buf(&mut buf).await.expect("read");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = rss_kib(pid);
        let mut conns = Vec::with_capacity(n);
        for i in 0..n {
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
            let mut tls = connector.connect(server_name(), tcp).await.expect("tls");
            tls.write_all(options_n(i as u64 + 1).as_bytes())
                .await
                .expect("write");
            let mut buf = BytesMut::with_capacity(1024);
            tls.read_buf(&mut buf).await.expect("read");
            assert!(buf.starts_with(b"SIP/2.0 200"), "connection {i} not served");
            conns.push(tls);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = rss_kib(pid);
        drop(conns);
        (before, after)
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    let per = (after.saturating_sub(before)) as f64 / n as f64;
    println!("idle_memory: {n} idle mutual-TLS connections");
    println!("  daemon RSS before {before} KiB, after {after} KiB");
    println!("  {per:.1} KiB resident per idle TLS connection");
    let _ = std::fs::remove_dir_all(&dir);
}
