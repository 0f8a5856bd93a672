//! Inbound call load: an SBC over one mutual-TLS connection to the release `drhub`
//! binary, calling a user whose one virtual endpoint rings and answers at once.
//!
//! `cargo bench --bench calls_load -- --rate 2000 --seconds 60`
//!   full cycle per call (INVITE, 100, 180, 200, ACK, BYE, 200) at a fixed rate:
//!   completed and failed calls, p50/p99 INVITE-to-100, daemon CPU per call.
//!   `--ladder-calls 0` turns off the status page's ladders (`[api] ladder_calls`);
//!   `--trace 1` turns on the protocol trace (text log and pcap).
//! `cargo bench --bench calls_load -- --hold 20000`
//!   establishes that many calls (INVITE .. ACK) and keeps them up: daemon resident
//!   memory per established call.
//! `cargo bench --bench calls_load -- --target 127.0.0.1:5071 --pid 1234 --certs DIR`
//!   the same call cycle against another server (a stateful proxy in front of a UAS,
//!   see `benches/kamailio_baseline.sh`) instead of a drhub it starts itself: the SBC
//!   presents `DIR/sbc1.adatum.biz.pem` and trusts `DIR/ca.pem`, ACK and BYE follow the
//!   dialog's route set (Record-Route, Contact), and the CPU is that of the given
//!   process(es) and all their descendants. `--uas-pid PID[,PID..]` also reports the
//!   CPU of the UAS behind the proxy, separately.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use drhub::sip::{HeaderName, Limits, Message, Status};
use support::*;

const SBC: &str = "sbc1.adatum.biz";
const NUMBER: &str = INSTANT_NUMBER;

fn invite(n: u64) -> String {
    invite_numbered(SBC, NUMBER, n, &[])
}

/// ACK or BYE of call `n` on the proxy's dialog `to_tag`.
fn in_dialog_n(method: &str, n: u64, to_tag: &str, cseq: u32) -> String {
    in_dialog(&invite(n), method, Some(to_tag), cseq)
}

/// An in-dialog request that follows the dialog's route set: Request-URI the remote
/// target (the 200's Contact), Route the 200's Record-Route in reverse (RFC 3261 12.1.2).
fn routed_in_dialog(
    method: &str,
    n: u64,
    to_tag: &str,
    cseq: u32,
    target: &str,
    route: &[String],
) -> String {
    let route: Vec<&str> = route.iter().map(String::as_str).collect();
    dialog_request(&invite(n), method, cseq, to_tag, target, &route, &[])
}

/// `--target`: a server this bench does not start.
struct External {
    addr: SocketAddr,
    /// Server processes whose CPU (with their descendants') is the figure.
    pids: Vec<u32>,
    /// A UAS behind the server, reported apart.
    uas_pids: Vec<u32>,
    /// Lab PKI directory the server was given (ca.pem, sbc1.adatum.biz.pem/.key).
    certs: PathBuf,
}

fn pid_list(name: &str) -> Vec<u32> {
    str_arg(name)
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}: not a process id: {p}"))
        })
        .collect()
}

fn external() -> Option<External> {
    let addr = str_arg("--target")?;
    let addr = addr
        .parse()
        .unwrap_or_else(|_| panic!("--target: not an address: {addr}"));
    let pids = pid_list("--pid");
    assert!(
        !pids.is_empty(),
        "--target needs --pid PID[,PID..] (the server to measure)"
    );
    let certs = PathBuf::from(
        str_arg("--certs").expect("--target needs --certs DIR (the lab PKI the server uses)"),
    );
    assert!(
        arg("--hold", 0) == 0,
        "--hold is for drhub only (Kamailio's memory is shared across processes)"
    );
    Some(External {
        addr,
        pids,
        uas_pids: pid_list("--uas-pid"),
        certs,
    })
}

fn main() {
    let hold = arg("--hold", 0);
    let rate = arg("--rate", 2000);
    let seconds = arg("--seconds", 60);
    let ext = external();
    let routed = ext.is_some();
    // drhub, started here, unless --target names another server.
    let mut daemon = None;
    let (addr, connector, dir) = if let Some(e) = &ext {
        (
            e.addr,
            tls_connector(
                &e.certs,
                Some(SBC),
                &[drhub::transport::tls::TlsVersion::V1_2],
            ),
            None,
        )
    } else {
        // `--ladder-calls N`: the status page's ladders (`[api] ladder_calls`, 200 by
        // default as shipped; 0 measures the daemon without them).
        let ladder_calls = arg("--ladder-calls", 200);
        // `--trace 1`: the protocol trace on, its text log and pcap (`[trace]`, off as
        // shipped) in the bench's directory.
        let trace = arg("--trace", 0) == 1;
        let (dir, cfg) = lab("calls", |t| {
            let t = match trace {
                true => t
                    .replace("text = \"off\"", "text = \"trace/drhub.log\"")
                    .replace("pcap = \"off\"", "pcap = \"trace/drhub.pcap\""),
                false => t,
            };
            with_instant_user(format!("{t}\n"))
                .replace(
                    "[api]\n",
                    &format!("[api]\nladder_calls = {ladder_calls}\n"),
                )
                .replace("max_per_second = 5000", "max_per_second = 1000000")
                .replace("max_concurrent = 20000", "max_concurrent = 1000000")
                .replace(
                    "level = \"warn,drhub::daemon=info\"",
                    "level = \"error,drhub::daemon=info\"",
                )
        });
        let (child, addr) = spawn_daemon(&dir, &cfg);
        let connector = tls_client(&dir, "sbc1.adatum.biz");
        daemon = Some(child);
        (addr, connector, Some(dir))
    };
    let pid = daemon.as_ref().map(std::process::Child::id);
    // The measured server's CPU in microseconds and how many processes that sums.
    let server_cpu = || match (&ext, pid) {
        (Some(e), _) => cpu_micros_tree(&e.pids),
        (None, Some(pid)) => (cpu_micros(pid), 1),
        (None, None) => (0, 0),
    };
    // A UAS behind --target, reported apart.
    let uas_cpu = || ext.as_ref().map_or(0, |e| cpu_micros_tree(&e.uas_pids).0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let tls = connector.connect(server_name(), tcp).await.expect("handshake");
        let (mut rd, mut wr) = tokio::io::split(tls);
        let (to_writer, mut outbox) = tokio::sync::mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(first) = outbox.recv().await {
                let mut batch = first;
                while let Ok(more) = outbox.try_recv() {
                    batch.push_str(&more);
                }
                if wr.write_all(batch.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        let total = if hold > 0 { hold } else { rate * seconds };
        let per_tick = if hold > 0 { 20 } else { (rate / 1000).max(1) };
        let tick = if hold > 0 { Duration::from_millis(1) } else { Duration::from_micros(1_000_000 * per_tick / rate) };
        // When each INVITE went out, by call number; the reader takes it on the 100.
        let sent_at = std::sync::Arc::new(std::sync::Mutex::new(HashMap::<u64, Instant>::new()));
        let sender = {
            let to_writer = to_writer.clone();
            let sent_at = sent_at.clone();
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(tick);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let mut n = 0;
                while n < total {
                    interval.tick().await;
                    let mut s = String::new();
                    let now = Instant::now();
                    {
                        let mut map = sent_at.lock().unwrap_or_else(|p| p.into_inner());
                        for _ in 0..per_tick.min(total - n) {
                            n += 1;
                            map.insert(n, now);
                            s.push_str(&invite(n));
                        }
                    }
                    let _ = to_writer.send(s);
                }
            })
        };
        let started = Instant::now();
        let mut last_done = started;
        let cpu0 = server_cpu().0;
        let me0 = cpu_micros(std::process::id());
        let uas0 = uas_cpu();
        let rss0 = pid.map(rss_kib).unwrap_or(0);
        let mut latencies = Vec::with_capacity(total as usize);
        let mut up = std::collections::HashSet::new();
        let mut failures: std::collections::BTreeMap<u16, u64> = Default::default();
        let mut bye_failures: std::collections::BTreeMap<u16, u64> = Default::default();
        let (mut completed, mut failed, mut established) = (0u64, 0u64, 0u64);
        let mut buf = BytesMut::with_capacity(1 << 20);
        let limits = Limits::default();
        let deadline = Instant::now() + Duration::from_secs(seconds.max(10) * 3 + hold / 500);
        while completed + failed < total && !(hold > 0 && established + failed >= total) && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(5), rd.read_buf(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    println!("  the daemon closed the connection after {:.1} s", started.elapsed().as_secs_f64());
                    break;
                }
                Err(_) => continue,
                Ok(Ok(_)) => {}
            }
            while let Ok(Status::Complete(m)) = Message::parse(&buf, &limits) {
                let len = m.len();
                let n: u64 = m.call_id().and_then(|c| c.strip_prefix("invite-")).and_then(|c| c.split('@').next()).and_then(|c| c.parse().ok()).unwrap_or(0);
                let method = m.cseq().and_then(Result::ok).map(|c| c.method.as_str().to_owned()).unwrap_or_default();
                match (m.status_code(), method.as_str()) {
                    (Some(100), "INVITE") => {
                        let sent = sent_at.lock().unwrap_or_else(|p| p.into_inner()).remove(&n);
                        if let Some(t) = sent {
                            latencies.push(t.elapsed());
                        }
                    }
                    (Some(200), "INVITE") => {
                        let tag = m.to().and_then(Result::ok).and_then(|t| t.tag().map(str::to_owned)).unwrap_or_default();
                        let s = if routed {
                            // Through a proxy: to the UAS's Contact, via the Record-Route set.
                            let target = m.contact().and_then(Result::ok).and_then(|c| c.uri().map(|u| u.as_str().to_owned())).unwrap_or_default();
                            let mut route: Vec<String> = m.values(HeaderName::RecordRoute).map(|r| r.trim().to_owned()).collect();
                            route.reverse();
                            let mut s = routed_in_dialog("ACK", n, &tag, 1, &target, &route);
                            // A retransmitted 200 (our ACK was late) is ACKed again but hung up once.
                            if up.insert(n) {
                                s.push_str(&routed_in_dialog("BYE", n, &tag, 2, &target, &route));
                            }
                            s
                        } else {
                            let mut s = in_dialog_n("ACK", n, &tag, 1);
                            // A retransmitted 200 (sent before our ACK arrived) is ACKed
                            // again, but counts and is hung up once.
                            if up.insert(n) {
                                if hold == 0 {
                                    s.push_str(&in_dialog_n("BYE", n, &tag, 2));
                                } else {
                                    established += 1;
                                }
                            }
                            s
                        };
                        let _ = to_writer.send(s);
                    }
                    (Some(200), "BYE") => {
                        completed += 1;
                        last_done = Instant::now();
                    }
                    (Some(c), "BYE") if c >= 300 => {
                        *bye_failures.entry(c).or_insert(0u64) += 1;
                        if bye_failures.values().sum::<u64>() <= 3 {
                            println!("  BYE answered {c}: {}", String::from_utf8_lossy(&buf[..len]).lines().find(|l| l.starts_with("ms-diagnostics") || l.starts_with("Reason")).unwrap_or("(no reason)"));
                        }
                    }
                    (Some(c), "INVITE") if c >= 300 => {
                        failed += 1;
                        *failures.entry(c).or_insert(0u64) += 1;
                        // RFC 3261 §17.1.1.3: the ACK of a non-2xx, on the same
                        // connection (a shed 503's is dropped on arrival).
                        let tag = m.to().and_then(Result::ok).and_then(|t| t.tag().map(str::to_owned));
                        let _ = to_writer.send(ack_non2xx(&invite(n), tag.as_deref()));
                    }
                    // The proxy hanging up on its own is a failed call here.
                    (None, "BYE") => {
                        failed += 1;
                        if failed <= 3 {
                            println!("  the proxy hung up: {}", String::from_utf8_lossy(&buf[..len]).lines().find(|l| l.starts_with("ms-diagnostics") || l.starts_with("Reason")).unwrap_or("(no reason)"));
                        }
                    }
                    _ => {}
                }
                buf.advance(len);
            }
        }
        sender.abort();
        if Instant::now() >= deadline {
            println!("  gave up waiting {:.1} s after the start", started.elapsed().as_secs_f64());
        }

        let (cpu1, processes) = server_cpu();
        let cpu = cpu1.saturating_sub(cpu0);
        let uas = uas_cpu().saturating_sub(uas0);
        latencies.sort();
        let pct = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1))).copied().unwrap_or_default();
        if !failures.is_empty() {
            println!("  failures by status: {failures:?}");
        }
        if hold > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let pid = pid.expect("--hold measures drhub");
            let rss1 = rss_kib(pid);
            println!("calls_load --hold: {established} established calls ({failed} failed) held over one TLS connection");
            println!("  daemon RSS before {rss0} KiB, after {rss1} KiB");
            println!("  {:.2} KiB resident per established call", (rss1.saturating_sub(rss0)) as f64 / established.max(1) as f64);
            let settle = arg("--settle", 35);
            // After Timer L (64*T1 = 32 s) the INVITE transactions are gone: what an
            // established call costs for the rest of its life.
            tokio::time::sleep(Duration::from_secs(settle)).await;
            let rss2 = rss_kib(pid);
            println!(
                "  after {settle} s more (transactions ended): RSS {rss2} KiB, {:.2} KiB per established call",
                (rss2.saturating_sub(rss0)) as f64 / established.max(1) as f64
            );
        } else {
            println!("calls_load: {rate} calls/s offered for {seconds} s over one TLS 1.2 connection");
            let answered = up.len() as u64;
            let unanswered = total.saturating_sub(answered + failed);
            if answered > completed {
                println!("  {} answered calls whose BYE got no 200 (BYE answers by status: {bye_failures:?})", answered - completed);
            }
            let shed = failures.get(&503).copied().unwrap_or(0);
            println!(
                "  {completed} calls completed, {failed} failed ({shed} shed with 503, {:.1} % of offered), {unanswered} without a final response",
                100.0 * shed as f64 / total.max(1) as f64
            );
            let busy = last_done.duration_since(started).as_secs_f64().max(1e-3);
            let me = cpu_micros(std::process::id()).saturating_sub(me0);
            println!(
                "  load generator CPU: {:.0} % of one core (one thread; at 100 % its own queue adds to INVITE-to-100)",
                me as f64 / started.elapsed().as_secs_f64() / 10_000.0
            );
            println!("  goodput {:.0} calls/s (completed calls until the last one, {busy:.1} s)", completed as f64 / busy);
            println!("  INVITE-to-100: p50 {:?}, p99 {:?}, max {:?}", pct(0.50), pct(0.99), latencies.last().copied().unwrap_or_default());
            if routed {
                println!("  server CPU: {:.1} us per call (7 messages), over {processes} processes", cpu as f64 / completed.max(1) as f64);
                println!("  UAS CPU: {:.1} us per call (not counted above)", uas as f64 / completed.max(1) as f64);
            } else {
                println!("  daemon CPU: {:.1} us per call (7 messages)", cpu as f64 / completed.max(1) as f64);
            }
        }
    });
    if let Some(mut daemon) = daemon {
        let _ = daemon.kill();
        let _ = daemon.wait();
    }
    if let Some(dir) = dir {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
