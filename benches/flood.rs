//! An unauthenticated UDP flood at the endpoint listener of the release `drhub` binary,
//! while an SBC places calls over mutual TLS: what the flood costs in memory, in log and
//! in the SBC's INVITE-to-100.
//!
//! `cargo bench --bench flood -- --rate 50000 --seconds 60 --sources 1`
//!   `--rate` datagrams a second for `--seconds`, each a new request (REGISTER for an
//!   unknown user without credentials, INVITE, MESSAGE and OPTIONS in turn, each with its
//!   own Call-ID and branch), sent round robin from `--sources` addresses (127.0.1.x,
//!   127.0.2.x ...: one source is a single attacker past its rate, 1,000 sources at 50/s
//!   each stay within the per-source rate and are all answered). Meanwhile an SBC calls
//!   an instant-answer user 20 times a second. Then `--after` seconds (default 60) of
//!   quiet. Every 5 s: the daemon's resident memory, its log output and CPU; at the end
//!   the peak above idle, the memory after the quiet spell, the answers by status, and
//!   the SBC's calls and INVITE-to-100 during the flood.

mod support;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

use drhub::sip::{Limits, Message, Status};
use support::*;

const SBC: &str = "sbc1.adatum.biz";
const NUMBER: &str = INSTANT_NUMBER;
/// The SBC's call rate during the flood.
const CALLS_PER_SECOND: u64 = 20;

/// The `n`th flood datagram from `from`: a new request each time.
fn datagram(n: u64, from: SocketAddr, to: SocketAddr) -> String {
    let (method, ruri, extra) = match n % 4 {
        0 => ("REGISTER", "sip:adatum.biz".to_owned(), String::new()),
        1 => (
            "INVITE",
            format!("sip:user1@{to}"),
            "Contact: <sip:x@evil.example>\r\n".to_owned(),
        ),
        2 => ("MESSAGE", format!("sip:user1@{to}"), String::new()),
        _ => ("OPTIONS", format!("sip:{to}"), String::new()),
    };
    format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKfl{n}\r\nMax-Forwards: 70\r\n\
From: <sip:guess{n}@adatum.biz>;tag=f{n}\r\nTo: <sip:guess{n}@adatum.biz>\r\nCall-ID: flood-{n}@evil.example\r\n\
CSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

/// The `i`th source address: 127.0.1.0, 127.0.1.1 ... (250 per /24).
fn source(i: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        1 + (i / 250) as u8,
        (i % 250) as u8 + 1,
    ))
}

fn main() {
    let rate = arg("--rate", 50_000);
    let seconds = arg("--seconds", 60);
    let sources = arg("--sources", 1).clamp(1, 25_000);
    let after = arg("--after", 60);
    let (dir, cfg) = lab("flood", |t| {
        let t = with_instant_user(t);
        // The log as a user runs it: warnings on.
        set_key(&t, "log", "level", "\"warn,drhub::daemon=info\"")
    });
    let d = spawn_daemon_logged(&dir, &cfg);
    let (mut daemon, tls_addr, log_bytes) = (d.child, d.sip, d.logged_bytes);
    let pid = daemon.id();
    let endpoint: SocketAddr = d.endpoints.expect("the endpoint listener");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = rss_kib(pid);
        let log0 = log_bytes.load(Ordering::Relaxed);
        let cpu0 = cpu_micros(pid);
        println!("flood: {rate} datagrams/s for {seconds} s from {sources} source address(es) to the endpoint listener; an SBC calls {CALLS_PER_SECOND}/s");
        println!("  idle RSS {idle} KiB");

        // The flooders, each counting what it is answered.
        let answers: Arc<Mutex<HashMap<u16, u64>>> = Arc::default();
        let mut socks = Vec::new();
        for i in 0..sources {
            let s = UdpSocket::bind((source(i), 0)).await.expect("bind a source address");
            let s = Arc::new(s);
            let counts = answers.clone();
            let rx = s.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut local: HashMap<u16, u64> = HashMap::new();
                let mut last = Instant::now();
                loop {
                    match tokio::time::timeout(Duration::from_millis(500), rx.recv_from(&mut buf)).await {
                        Ok(Ok((n, _))) => {
                            let code = buf.get(8..11.min(n)).and_then(|c| std::str::from_utf8(c).ok()).and_then(|c| c.parse().ok()).unwrap_or(0);
                            *local.entry(code).or_default() += 1;
                        }
                        Ok(Err(_)) => {}
                        Err(_) => {}
                    }
                    if last.elapsed() > Duration::from_millis(500) {
                        let mut all = counts.lock().unwrap_or_else(|p| p.into_inner());
                        for (k, v) in local.drain() {
                            *all.entry(k).or_default() += v;
                        }
                        last = Instant::now();
                    }
                }
            });
            socks.push(s);
        }
        let sent = Arc::new(AtomicU64::new(0));
        let flood = {
            let sent = sent.clone();
            tokio::spawn(async move {
                let per_ms = (rate / 1000).max(1);
                let mut tick = tokio::time::interval(Duration::from_millis(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let total = rate * seconds;
                let mut n = 0u64;
                while n < total {
                    tick.tick().await;
                    for _ in 0..per_ms {
                        let s = &socks[(n % sources) as usize];
                        let from = s.local_addr().expect("bound");
                        let _ = s.try_send_to(datagram(n, from, endpoint).as_bytes(), endpoint);
                        n += 1;
                    }
                    sent.store(n, Ordering::Relaxed);
                }
            })
        };

        // The SBC's calls during the flood.
        let connector = tls_client(&dir, SBC);
        let tcp = tokio::net::TcpStream::connect(tls_addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let tls = connector.connect(server_name(), tcp).await.expect("handshake");
        let (mut rd, mut wr) = tokio::io::split(tls);
        let sent_at: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
        let calls = seconds * CALLS_PER_SECOND;
        let (to_writer, mut outbox) = tokio::sync::mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(s) = outbox.recv().await {
                if wr.write_all(s.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        {
            let sent_at = sent_at.clone();
            let to_writer = to_writer.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(1000 / CALLS_PER_SECOND));
                for n in 1..=calls {
                    tick.tick().await;
                    sent_at.lock().unwrap_or_else(|p| p.into_inner()).insert(n, Instant::now());
                    let _ = to_writer.send(invite_numbered(SBC, NUMBER, n, &[]));
                }
            });
        }
        let reader = {
            let sent_at = sent_at.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let (mut completed, mut failed) = (0u64, 0u64);
                let mut buf = BytesMut::with_capacity(1 << 16);
                let limits = Limits::default();
                while completed + failed < calls {
                    match tokio::time::timeout(Duration::from_secs(40), rd.read_buf(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                        Ok(Ok(_)) => {}
                    }
                    while let Ok(Status::Complete(m)) = Message::parse(&buf, &limits) {
                        let len = m.len();
                        let n: u64 = m.call_id().and_then(|c| c.strip_prefix("invite-")).and_then(|c| c.split('@').next()).and_then(|c| c.parse().ok()).unwrap_or(0);
                        let method = m.cseq().and_then(Result::ok).map(|c| c.method.as_str().to_owned()).unwrap_or_default();
                        let inv = invite_numbered(SBC, NUMBER, n, &[]);
                        match (m.status_code(), method.as_str()) {
                            (Some(100), "INVITE") => {
                                if let Some(t) = sent_at.lock().unwrap_or_else(|p| p.into_inner()).remove(&n) {
                                    latencies.push(t.elapsed());
                                }
                            }
                            (Some(200), "INVITE") => {
                                let tag = m.to().and_then(Result::ok).and_then(|t| t.tag().map(str::to_owned)).unwrap_or_default();
                                let mut s = in_dialog(&inv, "ACK", Some(&tag), 1);
                                s.push_str(&in_dialog(&inv, "BYE", Some(&tag), 2));
                                let _ = to_writer.send(s);
                            }
                            (Some(200), "BYE") => completed += 1,
                            (Some(c), "INVITE") if c >= 300 => {
                                failed += 1;
                                let tag = m.to().and_then(Result::ok).and_then(|t| t.tag().map(str::to_owned));
                                let _ = to_writer.send(ack_non2xx(&inv, tag.as_deref()));
                            }
                            _ => {}
                        }
                        buf.advance(len);
                    }
                }
                (completed, failed, latencies)
            })
        };

        // Watch the daemon while the flood runs, then while it is quiet.
        let started = Instant::now();
        let mut peak = idle;
        let mut last_log = log0;
        let mut last_cpu = cpu0;
        let total = seconds + after;
        for step in 1..=(total / 5) {
            tokio::time::sleep_until((started + Duration::from_secs(5 * step)).into()).await;
            let rss = rss_kib(pid);
            peak = peak.max(rss);
            let log = log_bytes.load(Ordering::Relaxed);
            let cpu = cpu_micros(pid);
            println!(
                "  t={:>3} s  RSS {rss} KiB (+{} KiB)  log {:.1} KB/s  CPU {:.0} %  sent {}",
                5 * step,
                rss.saturating_sub(idle),
                (log - last_log) as f64 / 5_000.0,
                (cpu - last_cpu) as f64 / 50_000.0,
                sent.load(Ordering::Relaxed),
            );
            last_log = log;
            last_cpu = cpu;
        }
        flood.abort();
        let end = rss_kib(pid);
        let (completed, failed, mut latencies) = reader.await.unwrap_or_default();
        latencies.sort();
        let pct = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1))).copied().unwrap_or_default();
        let mut answers: Vec<(u16, u64)> = answers.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (*k, *v)).collect();
        answers.sort();
        println!("  flood answers by status: {answers:?} ({} sent)", sent.load(Ordering::Relaxed));
        println!("  peak RSS {peak} KiB: {} KiB above idle; {after} s after the flood {end} KiB ({:+} KiB against idle)", peak.saturating_sub(idle), end as i64 - idle as i64);
        println!("  log written: {} KB in all", (log_bytes.load(Ordering::Relaxed) - log0) / 1000);
        println!("  SBC calls during the flood: {completed} completed, {failed} failed of {calls}; INVITE-to-100 p50 {:?}, p99 {:?}, max {:?}", pct(0.5), pct(0.99), latencies.last().copied().unwrap_or_default());
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
