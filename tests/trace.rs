//! Black-box: the protocol trace (issue 10, `[trace]`). A call over mutual TLS is
//! written decrypted to the text log (the seed trace's record format) and to the pcap
//! (each message a TCP packet between the real addresses and ports). Where sngrep and
//! tshark are installed (`.ci/run` installs them), they read drhub's own pcap: sngrep
//! finds the call's dialog, tshark dissects every message as SIP.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

/// A fresh directory for one test's trace files.
fn trace_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("drhub-trace-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Each packet of a pcap drhub wrote: (TCP source port, destination port, payload).
fn tcp_packets(file: &Path) -> Vec<(u16, u16, Vec<u8>)> {
    let b = std::fs::read(file).expect("the pcap");
    assert_eq!(&b[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "pcap magic");
    let mut at = 24;
    let mut out = Vec::new();
    while at + 16 <= b.len() {
        let len = u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
        let p = &b[at + 16..at + 16 + len];
        at += 16 + len;
        assert_eq!(&p[12..14], &[0x08, 0x00], "IPv4 on loopback");
        assert_eq!(p[23], 6, "TCP");
        let tcp = &p[34..54];
        out.push((
            u16::from_be_bytes([tcp[0], tcp[1]]),
            u16::from_be_bytes([tcp[2], tcp[3]]),
            p[54..].to_vec(),
        ));
    }
    out
}

fn first_line(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn a_call_over_mutual_tls_is_traced_decrypted_to_text_and_pcap() {
    let dir = trace_dir("call");
    let (log, pcap) = (dir.join("drhub.log"), dir.join("drhub.pcap"));
    let d = TestDaemon::start_with(lab_config(|t| {
        let t = set_key(&t, "trace", "text", &format!("\"{}\"", log.display()));
        fast(
            set_key(&t, "trace", "pcap", &format!("\"{}\"", pcap.display())),
            0.05,
        )
    }))
    .await;
    let port = d.tls_addr().port();
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    assert_eq!(sbc.options().await.status(), 200);
    let (inv, ok) = answered_call(&mut sbc, "+18338006777").await;
    let bye = sbc.request(&routed(&inv, &ok, "BYE", 2, &[])).await;
    assert_eq!(bye.status(), 200);
    d.calls_drained().await;
    // What the daemon does every 200 ms: the files get what their buffers hold.
    d.hub.tap.flush();
    let call_id = req_header(&inv, "Call-ID").unwrap().to_owned();

    // The pcap: the SBC's requests to drhub's TLS port, drhub's answers from it, in
    // order, as plain SIP.
    let packets = tcp_packets(&pcap);
    let call: Vec<(u16, u16, String)> = packets
        .iter()
        .filter(|(_, _, p)| String::from_utf8_lossy(p).contains(&call_id))
        .map(|(s, d, p)| (*s, *d, first_line(p)))
        .collect();
    let lines: Vec<&str> = call.iter().map(|(_, _, l)| l.as_str()).collect();
    assert!(
        lines[0].starts_with("INVITE sip:+18338006777@"),
        "{lines:#?}"
    );
    for want in [
        "SIP/2.0 100 Trying",
        "SIP/2.0 180 Ringing",
        "SIP/2.0 200 OK",
    ] {
        assert!(lines.contains(&want), "{want} in {lines:#?}");
    }
    assert!(lines.iter().any(|l| l.starts_with("ACK ")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.starts_with("BYE ")), "{lines:#?}");
    for (s, dst, l) in &call {
        if l.starts_with("SIP/2.0") {
            assert_eq!(*s, port, "drhub answers from its TLS port: {l}");
        } else {
            assert_eq!(*dst, port, "the SBC's requests reach drhub's TLS port: {l}");
        }
    }
    // drhub's own OPTIONS to the SBC (DR-OPT-3), once: a message is traced once.
    let own = packets
        .iter()
        .filter(|(_, _, p)| first_line(p).starts_with("OPTIONS sip:sbc1.adatum.biz"))
        .count();
    assert_eq!(own, 1, "drhub's OPTIONS traced once");
    // Every message of the capture is whole SIP (the keep-alives are not).
    assert!(packets.iter().all(
        |(_, _, p)| p.ends_with(b"\r\n\r\n") || String::from_utf8_lossy(p).contains("\r\n\r\n")
    ));

    // The text log: one record per message, in the seed's shape.
    let text = std::fs::read_to_string(&log).expect("the text log");
    assert_eq!(
        text.matches("$$begin_record").count(),
        packets.len(),
        "a record per packet"
    );
    assert_eq!(text.matches("$$end_record").count(), packets.len());
    assert!(
        text.contains("Direction: incoming\nPeer: 127.0.0.1:")
            && text.contains("\nMessage-Type: request\nStart-Line: INVITE sip:+18338006777@"),
        "{text}"
    );
    assert!(
        text.contains("Direction: outgoing\nPeer: 127.0.0.1:")
            && text.contains("\nMessage-Type: response\nStart-Line: SIP/2.0 200 OK\n"),
        "{text}"
    );
    assert!(text.contains("\nMessage-Body: v=0\n"), "the SDP");

    sngrep_sees_the_call(&pcap, &dir, &call_id);
    tshark_dissects_the_call(&pcap, &call_id);
    let _ = std::fs::remove_dir_all(&dir);
}

/// sngrep, without its interface, reads drhub's pcap and saves the SIP it parsed: the
/// call's dialog is in it.
fn sngrep_sees_the_call(pcap: &Path, dir: &Path, call_id: &str) {
    if Command::new("sngrep").arg("-V").output().is_err() {
        eprintln!("SKIPPED sngrep check: sngrep not installed (apt-get install sngrep)");
        return;
    }
    let out = dir.join("sngrep.pcap");
    let run = Command::new("sngrep")
        .arg("-N")
        .arg("-I")
        .arg(pcap)
        .arg("-O")
        .arg(&out)
        .output()
        .expect("sngrep runs");
    assert!(run.status.success(), "sngrep: {run:?}");
    let saved = std::fs::read(&out).unwrap_or_default();
    let text = String::from_utf8_lossy(&saved);
    assert!(
        text.contains(call_id) && text.contains("INVITE sip:+18338006777@"),
        "sngrep saved no dialog of the call ({} bytes): {run:?}",
        saved.len()
    );
}

/// tshark dissects every message of the call as SIP by itself, no Decode As, no key.
fn tshark_dissects_the_call(pcap: &Path, call_id: &str) {
    if Command::new("tshark").arg("-v").output().is_err() {
        eprintln!("SKIPPED tshark check: tshark not installed (apt-get install tshark)");
        return;
    }
    let run = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-Y", &format!("sip.Call-ID == \"{call_id}\"")])
        .args(["-T", "fields", "-e", "sip.Method", "-e", "sip.Status-Code"])
        .output()
        .expect("tshark runs");
    let text = String::from_utf8_lossy(&run.stdout);
    let rows: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(run.status.success(), "tshark: {run:?}");
    for want in ["INVITE", "100", "180", "200", "ACK", "BYE"] {
        assert!(
            rows.iter().any(|r| r.split_whitespace().any(|f| f == want)),
            "tshark did not dissect {want}: {rows:?}"
        );
    }
}

/// The HEP payload (chunk type 15) and correlation id (17) of a HEP v3 datagram.
fn hep_chunks(b: &[u8]) -> (Vec<u8>, Vec<u8>) {
    assert_eq!(&b[..4], b"HEP3");
    let (mut payload, mut correlation) = (Vec::new(), Vec::new());
    let mut i = 6;
    while i + 6 <= b.len() {
        let kind = u16::from_be_bytes([b[i + 2], b[i + 3]]);
        let len = usize::from(u16::from_be_bytes([b[i + 4], b[i + 5]]));
        match kind {
            15 => payload = b[i + 6..i + len].to_vec(),
            17 => correlation = b[i + 6..i + len].to_vec(),
            _ => {}
        }
        i += len;
    }
    (payload, correlation)
}

/// `[trace] hep`: every message of a call over mutual TLS reaches a HEP v3 collector
/// (the test's socket), its Call-ID as correlation id; then sngrep, a real HEP
/// listener (`sngrep -L`), collects a second call.
#[tokio::test]
async fn a_call_is_mirrored_to_a_hep_collector() {
    let collector = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = collector.local_addr().unwrap();
    let d = TestDaemon::start_with(lab_config(|t| {
        fast(set_key(&t, "trace", "hep", &format!("\"{to}\"")), 0.05)
    }))
    .await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let (inv, ok) = answered_call(&mut sbc, "+18338006777").await;
    let bye = sbc.request(&routed(&inv, &ok, "BYE", 2, &[])).await;
    assert_eq!(bye.status(), 200);
    let call_id = req_header(&inv, "Call-ID").unwrap().to_owned();
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while !seen
        .iter()
        .any(|l: &String| l.starts_with("SIP/2.0 200 OK") && l.contains("BYE"))
    {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), collector.recv(&mut buf))
            .await
            .expect("HEP packets keep coming")
            .unwrap();
        let (payload, correlation) = hep_chunks(&buf[..n]);
        if correlation == call_id.as_bytes() {
            let text = String::from_utf8_lossy(&payload);
            let cseq = text
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("cseq:"))
                .unwrap_or("")
                .to_owned();
            seen.push(format!("{} [{cseq}]", first_line(&payload)));
        }
    }
    assert!(seen[0].starts_with("INVITE sip:+18338006777@"), "{seen:#?}");
    for want in ["SIP/2.0 100 Trying", "SIP/2.0 180 Ringing", "ACK ", "BYE "] {
        assert!(
            seen.iter().any(|l| l.starts_with(want)),
            "{want} in {seen:#?}"
        );
    }
    d.stop().await;

    sngrep_collects_hep().await;
}

/// sngrep as the HEP collector (`-L udp:...`, saving what it parsed with `-O`).
async fn sngrep_collects_hep() {
    if std::process::Command::new("sngrep")
        .arg("-V")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED sngrep HEP check: sngrep not installed (apt-get install sngrep)");
        return;
    }
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = trace_dir("hep");
    let out = dir.join("hep.pcap");
    let mut sngrep = std::process::Command::new("sngrep")
        .args(["-N", "-q", "-L", &format!("udp:127.0.0.1:{port}"), "-O"])
        .arg(&out)
        .spawn()
        .expect("sngrep runs");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let d = TestDaemon::start_with(lab_config(|t| {
        fast(
            set_key(&t, "trace", "hep", &format!("\"127.0.0.1:{port}\"")),
            0.05,
        )
    }))
    .await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let (inv, ok) = answered_call(&mut sbc, "+18338006777").await;
    let bye = sbc.request(&routed(&inv, &ok, "BYE", 2, &[])).await;
    assert_eq!(bye.status(), 200);
    let call_id = req_header(&inv, "Call-ID").unwrap().to_owned();
    let mut saved = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        saved = std::fs::read(&out).unwrap_or_default();
        if String::from_utf8_lossy(&saved).contains("BYE sip:") {
            break;
        }
    }
    let _ = sngrep.kill();
    let _ = sngrep.wait();
    d.stop().await;
    let text = String::from_utf8_lossy(&saved);
    assert!(
        text.contains(&call_id) && text.contains("INVITE sip:+18338006777@"),
        "sngrep collected no dialog of the call over HEP ({} bytes saved)",
        saved.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A trunk's `trace = false` leaves its SBC's connections out of the trace (the lab's
/// other SBCs stay in): sbc1's OPTIONS and call are not in the pcap, Contoso's OPTIONS
/// is.
#[tokio::test]
async fn a_trunk_can_be_left_out_of_the_trace() {
    let dir = trace_dir("per-sbc");
    let pcap = dir.join("drhub.pcap");
    let d = TestDaemon::start_with(lab_config(|t| {
        let t = t.replacen(
            "  refer_fallback = false",
            "  trace = false\n  refer_fallback = false",
            1,
        );
        fast(
            set_key(&t, "trace", "pcap", &format!("\"{}\"", pcap.display())),
            0.05,
        )
    }))
    .await;
    let mut sbc1 = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    assert_eq!(sbc1.options().await.status(), 200);
    let (inv, ok) = answered_call(&mut sbc1, "+18338006777").await;
    let bye = sbc1.request(&routed(&inv, &ok, "BYE", 2, &[])).await;
    assert_eq!(bye.status(), 200);
    let mut contoso = connect_as(&d, "sbc2.contoso.com").await.unwrap();
    assert_eq!(contoso.options().await.status(), 200);
    d.calls_drained().await;
    // No flush by the test: the daemon's own, every 200 ms, brings the file up to date
    // while it runs (what a live `sngrep -I` or `tail -f` sees).
    let deadline = std::time::Instant::now() + WAIT;
    let answered = |p: &Path| {
        tcp_packets(p).iter().any(|(_, _, m)| {
            let m = String::from_utf8_lossy(m);
            m.starts_with("SIP/2.0 200") && m.contains("sbc2.contoso.com")
        })
    };
    while !answered(&pcap) {
        assert!(
            std::time::Instant::now() < deadline,
            "the trace was never flushed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let packets = tcp_packets(&pcap);
    let texts: Vec<String> = packets
        .iter()
        .map(|(_, _, p)| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert!(
        texts.iter().all(|t| !t.contains("sbc1.adatum.biz")),
        "sbc1 is left out: {texts:#?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("OPTIONS ") && t.contains("sbc2.contoso.com")),
        "Contoso's SBC is traced: {texts:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
