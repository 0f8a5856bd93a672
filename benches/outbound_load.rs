//! Outbound call load (DR-OUT): the release `drhub` places calls from a scripted Teams
//! caller (`[[tenant.user.call]]`) to a load-generator SBC that answers at once, over the
//! SBC's own mutual-TLS connection; the full cycle per call is INVITE, 100, 180, 200, ACK,
//! BYE, 200, the same seven messages as an inbound call.
//!
//! `cargo bench --bench outbound_load -- --rate 2000 --seconds 20`
//!   inbound and outbound calls at that rate, in alternating 5-second phases (inbound
//!   calls from the SBC to a user whose virtual endpoint answers at once, the `calls_load`
//!   cycle; then the scripted caller's outbound calls), so that drift in the machine's
//!   speed falls on both alike: completed and failed calls, the daemon's CPU per call
//!   each way, and their ratio, overall and round by round.
//! `cargo bench --bench outbound_load -- --failover --rate 1000 --seconds 20`
//!   outbound only, to two SBCs: sbc1 (first in the route) answers every other INVITE
//!   `503` without Retry-After, so half the calls fail over to sbc2, which answers all.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedSender;

use drhub::sip::{Limits, Message, Status};
use support::*;

/// What one SBC connection saw.
#[derive(Default, Debug, Clone)]
struct Seen {
    /// Outbound INVITEs received (first transmissions, by Call-ID and CSeq).
    invites: u64,
    /// Outbound calls answered 200 (Call-IDs).
    answered: u64,
    /// Outbound INVITEs answered 503 (failover mode).
    refused: u64,
    /// Outbound BYEs answered: completed outbound calls.
    byes: u64,
    /// Inbound calls: 200 to the BYE.
    inbound_completed: u64,
    /// Inbound calls failed (a final failure to the INVITE).
    inbound_failed: u64,
}

/// One SBC: answers drhub's requests and, for inbound calls, drhub's responses.
fn serve(
    stem: &'static str,
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    refuse_every_other: bool,
) -> (UnboundedSender<String>, tokio::sync::watch::Receiver<Seen>) {
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
    let (seen_tx, seen_rx) = tokio::sync::watch::channel(Seen::default());
    let writer = to_writer.clone();
    tokio::spawn(async move {
        let mut seen = Seen::default();
        let mut invites = HashSet::new();
        let mut buf = BytesMut::with_capacity(1 << 20);
        let limits = Limits::default();
        let contact = format!("Contact: <sip:+14255550100@{stem}:5061;transport=tls>");
        let mut n = 0u64;
        loop {
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let mut out = String::new();
            while let Ok(Status::Complete(m)) = Message::parse(&buf, &limits) {
                let len = m.len();
                let text = String::from_utf8_lossy(&buf[..len]).into_owned();
                let cseq = m
                    .cseq()
                    .and_then(Result::ok)
                    .map(|c| (c.seq, c.method.as_str().to_owned()));
                match (m.method().map(|x| x.as_str()), m.status_code(), cseq) {
                    (Some("INVITE"), _, Some((seq, _))) => {
                        let call_id = m.call_id().unwrap_or_default().to_owned();
                        // A retransmission is answered again, counted once.
                        let first = invites.insert((call_id, seq));
                        if first {
                            seen.invites += 1;
                            n += 1;
                        }
                        if refuse_every_other && n % 2 == 1 {
                            if first {
                                seen.refused += 1;
                            }
                            out.push_str(&response_to(&text, 503, "Service Unavailable", &[]));
                        } else {
                            let tag = format!("b{n}");
                            out.push_str(
                                &response_tagged(&text, 100, "Trying", &tag, &[], None).replacen(
                                    &format!(";tag={tag}"),
                                    "",
                                    1,
                                ),
                            );
                            out.push_str(&response_tagged(
                                &text,
                                180,
                                "Ringing",
                                &tag,
                                &[&contact],
                                None,
                            ));
                            out.push_str(&response_tagged(
                                &text,
                                200,
                                "OK",
                                &tag,
                                &[&contact],
                                Some(SBC_ANSWER),
                            ));
                            if first {
                                seen.answered += 1;
                            }
                        }
                    }
                    (Some("BYE"), _, _) => {
                        seen.byes += 1;
                        out.push_str(&response_to(&text, 200, "OK", &[]));
                    }
                    (Some("ACK"), _, _) => {}
                    (Some(_), _, _) => out.push_str(&response_to(&text, 200, "OK", &[])),
                    // Responses: the inbound calls this SBC places.
                    (None, Some(200), Some((_, method))) if method == "INVITE" => {
                        let tag = m
                            .to()
                            .and_then(Result::ok)
                            .and_then(|t| t.tag().map(str::to_owned))
                            .unwrap_or_default();
                        let call = m.call_id().unwrap_or_default().to_owned();
                        let k: u64 = call
                            .strip_prefix("invite-")
                            .and_then(|c| c.split('@').next())
                            .and_then(|c| c.parse().ok())
                            .unwrap_or(0);
                        let inv = invite_numbered(stem, INSTANT_NUMBER, k, &[]);
                        out.push_str(&in_dialog(&inv, "ACK", Some(&tag), 1));
                        out.push_str(&in_dialog(&inv, "BYE", Some(&tag), 2));
                    }
                    (None, Some(200), Some((_, method))) if method == "BYE" => {
                        seen.inbound_completed += 1
                    }
                    (None, Some(c), Some((_, method))) if c >= 300 && method == "INVITE" => {
                        seen.inbound_failed += 1;
                        let call = m.call_id().unwrap_or_default().to_owned();
                        let k: u64 = call
                            .strip_prefix("invite-")
                            .and_then(|c| c.split('@').next())
                            .and_then(|c| c.parse().ok())
                            .unwrap_or(0);
                        let tag = m
                            .to()
                            .and_then(Result::ok)
                            .and_then(|t| t.tag().map(str::to_owned));
                        out.push_str(&ack_non2xx(
                            &invite_numbered(stem, INSTANT_NUMBER, k, &[]),
                            tag.as_deref(),
                        ));
                    }
                    _ => {}
                }
                buf.advance(len);
            }
            if !out.is_empty() {
                let _ = writer.send(out);
            }
            let _ = seen_tx.send(seen.clone());
        }
    });
    (to_writer, seen_rx)
}

async fn connect(
    dir: &std::path::Path,
    addr: std::net::SocketAddr,
    stem: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    tls_client(dir, stem)
        .connect(server_name(), tcp)
        .await
        .expect("handshake")
}

/// Waits until `done(seen)` or `limit` passes; returns the last figures and when the
/// condition held (or the limit).
async fn wait_for(
    rx: &mut tokio::sync::watch::Receiver<Seen>,
    limit: Duration,
    done: impl Fn(&Seen) -> bool,
) -> (Seen, Instant) {
    let deadline = Instant::now() + limit;
    loop {
        let s = rx.borrow().clone();
        if done(&s) || Instant::now() >= deadline {
            return (s, Instant::now());
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), rx.changed()).await;
    }
}

/// Seconds in one phase (one direction) of the interleaved comparison.
const PHASE: u64 = 5;
/// Seconds between phases, for the last calls to end.
const GAP: u64 = 2;

fn main() {
    let rate = arg("--rate", 2000);
    let seconds = arg("--seconds", 20);
    let failover = std::env::args().any(|a| a == "--failover");
    // The comparison runs in rounds, inbound then outbound, so that drift in the
    // machine's speed (a VM's neighbours) falls on both directions alike.
    let rounds = if failover {
        1
    } else {
        seconds.div_ceil(PHASE).max(1)
    };
    let phase = if failover {
        seconds
    } else {
        seconds.min(PHASE)
    };
    let per_phase = rate * phase;
    let total = per_phase * rounds;
    // Seconds after the daemon starts: round k's inbound phase, then its outbound phase
    // (the scripted caller's k-th entry).
    let settle = 3;
    let round_len = 2 * (phase + GAP);
    let inbound_at = |k: u64| settle + k * round_len;
    let outbound_at = |k: u64| {
        if failover {
            settle
        } else {
            inbound_at(k) + phase + GAP
        }
    };
    let every = 1.0 / rate as f64;
    let mut callers = String::new();
    for k in 0..rounds {
        callers.push_str(&format!(
            "\n    [[tenant.user.call]]\n    to = \"+14255550100\"\n    after_seconds = {}\n    every_seconds = {every}\n    count = {per_phase}\n    ring_seconds = 30\n    talk_seconds = 0\n",
            outbound_at(k)
        ));
    }
    let (dir, cfg) = lab("outbound", |t| {
        with_instant_user(format!("{t}\n"))
            .replace("max_per_second = 5000", "max_per_second = 1000000")
            .replace("max_concurrent = 20000", "max_concurrent = 1000000")
            .replace(
                "level = \"warn,drhub::daemon=info\"",
                "level = \"error,drhub::daemon=info\"",
            )
            .replacen(
                "    name = \"softphone\"\n    kind = \"sip\"\n",
                &format!("    name = \"softphone\"\n    kind = \"sip\"\n{callers}"),
                1,
            )
    });
    let (mut daemon, addr) = spawn_daemon(&dir, &cfg);
    let t_daemon = Instant::now();
    let pid = daemon.id();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let sbc1 = connect(&dir, addr, "sbc1.adatum.biz").await;
        let (to_sbc1, mut seen1) = serve("sbc1.adatum.biz", sbc1, failover);
        let mut seen2 = None;
        if failover {
            let sbc2 = connect(&dir, addr, "sbc2.adatum.biz").await;
            seen2 = Some(serve("sbc2.adatum.biz", sbc2, false).1);
        }
        let me0 = cpu_micros(std::process::id());
        let at = |secs: u64| t_daemon + Duration::from_secs(secs);
        let (mut in_cpu, mut in_secs, mut out_cpu) = (0u64, 0f64, 0u64);
        let mut out_secs = 0f64;
        let mut n = 0;
        let mut inbound = Seen::default();
        let mut outbound = (Seen::default(), Seen::default());
        // Per round: the daemon's CPU per call each way, in microseconds.
        let mut per_round: Vec<(f64, f64)> = Vec::new();
        for k in 0..rounds {
            let (in_before, out_before) = (in_cpu, out_cpu);
            if !failover {
                // Inbound: the SBC calls the instant user at `rate`.
                sleep_until(at(inbound_at(k))).await;
                let cpu0 = cpu_micros(pid);
                let t0 = Instant::now();
                let per_tick = (rate / 1000).max(1);
                let mut interval = tokio::time::interval(Duration::from_micros(1_000_000 * per_tick / rate));
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let goal = per_phase * (k + 1);
                while n < goal {
                    interval.tick().await;
                    let mut s = String::new();
                    for _ in 0..per_tick.min(goal - n) {
                        n += 1;
                        s.push_str(&invite_numbered("sbc1.adatum.biz", INSTANT_NUMBER, n, &[]));
                    }
                    let _ = to_sbc1.send(s);
                }
                let (s, t1) = wait_for(&mut seen1, Duration::from_secs(GAP + 8), |s| s.inbound_completed + s.inbound_failed >= goal).await;
                in_cpu += cpu_micros(pid).saturating_sub(cpu0);
                in_secs += t1.duration_since(t0).as_secs_f64();
                inbound = s;
            }
            // Outbound: drhub's scheduled caller, from `outbound_at(k)` on.
            let begin = at(outbound_at(k));
            sleep_until(begin - Duration::from_millis(200)).await;
            let cpu0 = cpu_micros(pid);
            let limit = begin + Duration::from_secs(phase + 30);
            let goal = per_phase * (k + 1);
            loop {
                let s1 = seen1.borrow().clone();
                let s2 = seen2.as_ref().map(|r| r.borrow().clone()).unwrap_or_default();
                outbound = (s1, s2);
                if outbound.0.byes + outbound.1.byes >= goal || Instant::now() >= limit {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            out_cpu += cpu_micros(pid).saturating_sub(cpu0);
            out_secs += Instant::now().duration_since(begin).as_secs_f64();
            per_round.push((
                (in_cpu - in_before) as f64 / per_phase as f64,
                (out_cpu - out_before) as f64 / per_phase as f64,
            ));
        }
        if !failover {
            println!("outbound_load: {rate} calls/s, {rounds} rounds of {phase} s each way, one TLS 1.2 connection");
            println!(
                "  inbound:  {} completed, {} failed, goodput {:.0} calls/s, daemon CPU {:.1} us per call",
                inbound.inbound_completed,
                inbound.inbound_failed,
                inbound.inbound_completed as f64 / in_secs.max(1e-3),
                in_cpu as f64 / inbound.inbound_completed.max(1) as f64
            );
        }
        let (s1, s2) = outbound;
        let completed = s1.byes + s2.byes;
        let invites = s1.invites + s2.invites;
        // Every call placed reached an SBC; those with no BYE failed somewhere.
        let never_sent = total.saturating_sub(s1.invites.saturating_sub(s1.refused) + s2.invites);
        let failed = total - completed.min(total);
        if failover {
            println!("outbound_load --failover: {rate} calls/s for {seconds} s; sbc1 answers every other INVITE 503");
            println!(
                "  sbc1: {} INVITEs, {} refused with 503, {} answered; sbc2: {} INVITEs, {} answered",
                s1.invites, s1.refused, s1.answered, s2.invites, s2.answered
            );
        }
        println!(
            "  outbound: {completed} completed, {failed} failed ({never_sent} never reached an SBC), {invites} INVITEs received, goodput {:.0} calls/s, daemon CPU {:.1} us per call",
            completed as f64 / out_secs.max(1e-3),
            out_cpu as f64 / completed.max(1) as f64
        );
        if !failover {
            println!(
                "  outbound/inbound CPU per call: {:.2}",
                (out_cpu as f64 / completed.max(1) as f64) / (in_cpu as f64 / inbound.inbound_completed.max(1) as f64)
            );
            // The rounds one by one show how far the machine's drift moves the figure.
            let mut ratios: Vec<f64> = per_round.iter().map(|(i, o)| o / i.max(1e-9)).collect();
            for (k, ((i, o), r)) in per_round.iter().zip(&ratios).enumerate() {
                println!("    round {}: inbound {i:.1} us, outbound {o:.1} us per call, ratio {r:.2}", k + 1);
            }
            ratios.sort_by(f64::total_cmp);
            if let (Some(lo), Some(hi)) = (ratios.first(), ratios.last()) {
                println!("  ratio by round: median {:.2}, range {lo:.2}-{hi:.2}", ratios[ratios.len() / 2]);
            }
        }
        let me = cpu_micros(std::process::id()).saturating_sub(me0);
        println!(
            "  load generator CPU: {:.0} % of one core",
            me as f64 / Instant::now().duration_since(t_daemon).as_secs_f64() / 10_000.0
        );
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

async fn sleep_until(t: Instant) {
    tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await;
}
