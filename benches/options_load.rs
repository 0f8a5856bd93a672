//! OPTIONS throughput: one SBC, one mutual-TLS connection, 64 requests in flight, against
//! the release `drhub` binary on loopback. Client and daemon share the machine.
//!
//! Run: `cargo bench --bench options_load -- --seconds 10 --inflight 64`
//! Prints transactions per second, and the daemon's CPU time per transaction.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use drhub::sip::{Limits, Message, Status};
use support::*;

fn main() {
    let seconds = arg("--seconds", 10);
    let inflight = arg("--inflight", 64) as usize;
    let (dir, cfg) = lab("options", |t| t);
    let (mut daemon, addr) = spawn_daemon(&dir, &cfg);
    let pid = daemon.id();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let tls = tls_client(&dir, "sbc1.adatum.biz")
            .connect(server_name(), tcp)
            .await
            .expect("handshake");
        let (mut rd, mut wr) = tokio::io::split(tls);
        let permits = Arc::new(Semaphore::new(inflight));
        let done = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

        let writer = {
            let permits = permits.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                let mut out = Vec::with_capacity(64 * 1024);
                while !stop.load(Ordering::Relaxed) {
                    let Ok(p) = permits.acquire().await else {
                        break;
                    };
                    p.forget();
                    let mut batch = 1;
                    while let Ok(p) = permits.try_acquire() {
                        p.forget();
                        batch += 1;
                    }
                    out.clear();
                    for _ in 0..batch {
                        n += 1;
                        out.extend_from_slice(options_n(n).as_bytes());
                    }
                    if wr.write_all(&out).await.is_err() {
                        break;
                    }
                }
            })
        };
        let reader = {
            let (permits, done, failed) = (permits.clone(), done.clone(), failed.clone());
            tokio::spawn(async move {
                let mut buf = BytesMut::with_capacity(256 * 1024);
                let limits = Limits::default();
                loop {
                    if rd.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                        break;
                    }
                    let mut answered = 0;
                    while let Ok(Status::Complete(m)) = Message::parse(&buf, &limits) {
                        let len = m.len();
                        // The proxy's own OPTIONS (DR-OPT-3, one a minute) is not an
                        // answer; this load generator leaves it unanswered.
                        if m.is_request() {
                            buf.advance(len);
                            continue;
                        }
                        if m.status_code() != Some(200) {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        buf.advance(len);
                        answered += 1;
                    }
                    done.fetch_add(answered, Ordering::Relaxed);
                    permits.add_permits(answered as usize);
                }
            })
        };
        // Warm up, then measure.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (d0, c0, t0) = (
            done.load(Ordering::Relaxed),
            cpu_micros(pid),
            Instant::now(),
        );
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let (d1, c1, elapsed) = (done.load(Ordering::Relaxed), cpu_micros(pid), t0.elapsed());
        stop.store(true, Ordering::Relaxed);
        writer.abort();
        reader.abort();
        let tx = d1 - d0;
        (
            tx as f64 / elapsed.as_secs_f64(),
            (c1 - c0) as f64 / tx.max(1) as f64,
            failed.load(Ordering::Relaxed),
            tx,
        )
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    let (rate, cpu_per_tx, failed, total) = result;
    println!("options_load: {seconds} s, {inflight} in flight over one TLS 1.2 connection");
    println!("  {total} transactions, {failed} not 200");
    println!("  throughput: {rate:.0} transactions/s");
    println!("  daemon CPU: {cpu_per_tx:.2} us per transaction");
    let _ = std::fs::remove_dir_all(&dir);
}
