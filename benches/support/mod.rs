//! Shared by the load benches: a lab PKI in a temp dir, the `drhub` release binary
//! started on it, and process figures from /proc. The SBC side (TLS client, SIP framing,
//! message builders, the lab config text) is the tests' own, `tests/support/sbc.rs`, and
//! so is the softphone, `tests/support/phone.rs`.
#![allow(dead_code)]

#[path = "../../tests/support/sbc.rs"]
mod sbc;
pub use sbc::*;

/// The UDP softphone of the tests (REGISTER with digest), for the soak's endpoints.
#[path = "../../tests/support/phone.rs"]
pub mod phone;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drhub::transport::tls::TlsVersion;

/// A temp directory with the lab PKI and a config pointing at it on port 0.
pub fn lab(name: &str, edit: impl FnOnce(String) -> String) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("drhub-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let certs_dir = dir.join("certs");
    write_lab_pki(&certs_dir, &[]);
    let text = lab_config_text(&certs_dir, |t| {
        edit(t.replace("level = \"info\"", "level = \"warn,drhub::daemon=info\""))
    });
    let cfg = dir.join("drhub.toml");
    std::fs::write(&cfg, text).expect("bench config");
    (dir, cfg)
}

/// Starts the release `drhub` binary in `dir` and returns it with the TLS address it
/// logged.
pub fn spawn_daemon(dir: &Path, cfg: &Path) -> (Child, SocketAddr) {
    let d = start_daemon(dir, cfg, false);
    (d.child, d.sip)
}

/// A daemon started by [`spawn_daemon_logged`]: its addresses and every line it logs.
pub struct LoggedDaemon {
    pub child: Child,
    /// The TLS listener's address.
    pub sip: SocketAddr,
    /// The endpoint listener's address (UDP and TCP), when it has one.
    pub endpoints: Option<SocketAddr>,
    /// Every stderr line so far, in order; the reader thread keeps appending.
    pub log: Arc<Mutex<Vec<String>>>,
    /// Bytes logged so far (kept or not).
    pub logged_bytes: Arc<AtomicU64>,
}

/// Like [`spawn_daemon`], but keeps the daemon's log lines and the endpoint listener's
/// address (for the soak, which reads the periodic `status` line).
pub fn spawn_daemon_logged(dir: &Path, cfg: &Path) -> LoggedDaemon {
    start_daemon(dir, cfg, true)
}

/// The value of `address=` in a log line.
fn logged_address(line: &str) -> Option<SocketAddr> {
    line.split("address=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|a| a.parse().ok())
}

fn start_daemon(dir: &Path, cfg: &Path, keep: bool) -> LoggedDaemon {
    let mut child = Command::new(env!("CARGO_BIN_EXE_drhub"))
        .current_dir(dir)
        .arg("run")
        .arg("-c")
        .arg(cfg)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn drhub");
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let logged_bytes = Arc::new(AtomicU64::new(0));
    {
        let log = log.clone();
        let count = logged_bytes.clone();
        // Drains the log for the daemon's whole life, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                count.fetch_add(line.len() as u64 + 1, Ordering::Relaxed);
                // What went wrong in the daemon belongs next to the bench's figures.
                if !keep && (line.contains(" WARN ") || line.contains(" ERROR ")) {
                    eprintln!("daemon: {line}");
                }
                if keep {
                    log.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(line.clone());
                }
                let _ = tx.send(line);
            }
        });
    }
    let mut endpoints = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            if line.contains("endpoint listener") {
                endpoints = endpoints.or(logged_address(&line));
            }
            if line.contains("listening") && line.contains("listener=sip ") {
                if let Some(sip) = logged_address(&line) {
                    std::thread::spawn(move || while rx.recv().is_ok() {});
                    return LoggedDaemon {
                        child,
                        sip,
                        endpoints,
                        log,
                        logged_bytes,
                    };
                }
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("drhub did not report its listening address");
}

/// A TLS client presenting `<stem>.pem` from the bench's lab PKI (`<dir>/certs`).
pub fn tls_client(dir: &Path, stem: &str) -> tokio_rustls::TlsConnector {
    tls_connector(&dir.join("certs"), Some(stem), &[TlsVersion::V1_2])
}

/// The OPTIONS sbc1.adatum.biz sends, numbered.
pub fn options_n(n: u64) -> String {
    options_numbered("sbc1.adatum.biz", n)
}

/// Resident set size of a process in KiB, from /proc.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) of a process in microseconds, from /proc.
pub fn cpu_micros(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ')' of the command name; utime and stime are 14th and 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // Linux reports in clock ticks, USER_HZ = 100 on every mainstream kernel config.
    ticks * 10_000
}

/// CPU time (user + system) in microseconds of each of these processes and of all their
/// descendants (a multi-process server such as Kamailio), and how many processes that
/// was.
pub fn cpu_micros_tree(roots: &[u32]) -> (u64, usize) {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // The field after the ')' of the command name and the state is the parent.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent_of.push((pid, ppid));
        }
    }
    let mut all: Vec<u32> = roots.to_vec();
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        for &(child, _) in parent_of.iter().filter(|(_, pp)| *pp == p) {
            if !all.contains(&child) {
                all.push(child);
            }
        }
        i += 1;
    }
    (all.iter().map(|&p| cpu_micros(p)).sum(), all.len())
}

/// The value after `name` on the command line, if any.
pub fn str_arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
