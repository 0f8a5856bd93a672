//! The proxy's own OPTIONS (DR-OPT-3) over TLS connections it opens itself (DR-TLS-4):
//! N SBCs each introduce themselves with one OPTIONS over a short inbound mutual-TLS
//! connection to the release `drhub` binary, which answers and sends its own. After the
//! next interval the proxy finds no connection open to any of them and connects to each
//! trunk's `address`: one SBC listener of this process, which presents the certificate of
//! the SBC named in the SNI and answers every OPTIONS with 200. The daemon keeps those
//! connections and reuses them every interval.
//!
//! Measures the daemon's resident memory per outbound connection (RSS after the
//! introductions, with no connection open, against RSS with all N outbound connections
//! up) and its CPU per OPTIONS over `--rounds` further intervals.
//!
//! Run: `cargo bench --bench options_out -- --sbcs 1000 --interval 60 --rounds 3`
//! (`--interval 10` for a quicker run; the defaults take about 5 minutes).

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use drhub::certs::{LabCa, LeafSpec};
use drhub::transport::tls::TlsVersion;
use support::*;

/// The bench tenant's domain: trunk `sbc<i>.bench.example` belongs to it (DR-TEN-2).
const DOMAIN: &str = "bench.example";

/// Introductions in flight at once. Kept low so that the memory of the inbound
/// connections, freed before the "before" figure but kept by the allocator for reuse,
/// stays small next to that of N outbound connections.
const INTRO_CONCURRENCY: usize = 16;

/// How long the daemon gets to notice the closed introductions before RSS is read, and
/// how long the outbound connections settle before it is read again.
const SETTLE: Duration = Duration::from_secs(2);

fn fqdn(i: usize) -> String {
    format!("sbc{i}.{DOMAIN}")
}

/// The SBC number in an SNI name `sbc<i>.bench.example`, as an index from 0.
fn sbc_index(name: &str, n: usize) -> Option<usize> {
    let i: usize = name
        .strip_prefix("sbc")?
        .strip_suffix(DOMAIN)?
        .strip_suffix('.')?
        .parse()
        .ok()?;
    (1..=n).contains(&i).then(|| i - 1)
}

/// The lab config plus the bench tenant with one trunk per SBC, every one at this
/// process's SBC listener, and the proxy's OPTIONS every `interval` seconds. The
/// activity windows are the longest allowed so no SBC changes state (and logs it) during
/// the measurement: the SBCs send one OPTIONS each, at the start.
fn bench_config(lab: &str, n: usize, interval: u64, sbc_addr: SocketAddr) -> String {
    let t = set_key(
        lab,
        "health",
        "options_interval_seconds",
        &interval.to_string(),
    );
    let t = set_key(&t, "health", "active_window_seconds", "86400");
    let mut s = set_key(&t, "health", "inactive_after_seconds", "86400");
    s.push_str(&format!(
        "\n[[tenant]]\nid = \"bench\"\nname = \"Bench\"\ndomains = [\"{DOMAIN}\"]\n"
    ));
    for i in 1..=n {
        s.push_str(&format!(
            "\n  [[tenant.trunk]]\n  fqdn = \"{}\"\n  address = \"{sbc_addr}\"\n",
            fqdn(i)
        ));
    }
    s
}

/// Kills the daemon and removes the bench directory, also when the bench panics.
struct Cleanup {
    dir: PathBuf,
    daemon: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(d) = &mut self.daemon {
            let _ = d.kill();
            let _ = d.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Issues a certificate naming only `sbc<i>.bench.example` for each SBC, all with one
/// key (an RSA key each would take minutes), and writes them to `certs` as
/// `<fqdn>.pem`/`.key` for the introductions. Returns the certificates and the key.
fn issue_sbc_certs(certs: &Path, n: usize) -> (Vec<CertificateDer<'static>>, String) {
    let ca = LabCa::load(certs).expect("the lab CA just written");
    let key = LabCa::new_key().expect("an RSA key for the SBC certificates");
    let mut chain = Vec::with_capacity(n);
    let mut key_pem = String::new();
    for i in 1..=n {
        let name = fqdn(i);
        let issued = ca
            .issue_with_key(&LeafSpec::new([name.as_str()]), &key)
            .expect("SBC certificate");
        issued.write(certs, &name).expect("write SBC certificate");
        chain.push(CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("SBC cert"));
        key_pem = issued.key_pem;
    }
    (chain, key_pem)
}

/// Picks the certificate of the SBC the proxy names in the SNI.
#[derive(Debug)]
struct BySni(HashMap<String, Arc<CertifiedKey>>);

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|name| self.0.get(name))
            .cloned()
    }
}

/// The SBCs' TLS server side: each SBC's certificate by SNI, and a client certificate
/// from the lab CA required (the proxy's).
fn sbc_acceptor(certs: &Path, chain: Vec<CertificateDer<'static>>, key_pem: &str) -> TlsAcceptor {
    let provider = drhub::transport::tls::provider(&[TlsVersion::V1_2]);
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(certs.join("ca.pem")).expect("ca.pem") {
        roots.add(c.expect("ca cert")).expect("add root");
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .expect("client verifier");
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("SBC key");
    let key = provider
        .key_provider
        .load_private_key(key)
        .expect("SBC signing key");
    let by_name = chain
        .into_iter()
        .enumerate()
        .map(|(i, cert)| {
            (
                fqdn(i + 1),
                Arc::new(CertifiedKey::new(vec![cert], key.clone())),
            )
        })
        .collect();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("TLS versions")
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(BySni(by_name)));
    TlsAcceptor::from(Arc::new(config))
}

/// What the SBC listener saw.
struct Tally {
    /// Connections whose handshake completed.
    accepted: AtomicUsize,
    /// Connections up now.
    open: AtomicUsize,
    /// Handshakes that failed, or named no bench SBC.
    refused: AtomicUsize,
    /// The proxy's OPTIONS answered, in all and per SBC.
    answered: AtomicU64,
    per_sbc: Vec<AtomicU64>,
}

impl Tally {
    fn new(n: usize) -> Tally {
        Tally {
            accepted: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            answered: AtomicU64::new(0),
            per_sbc: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn per_sbc(&self) -> Vec<u64> {
        self.per_sbc
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

/// Answers 200 to every request on one of the proxy's connections until it closes.
async fn answer_requests<S: AsyncRead + AsyncWrite + Unpin>(stream: S, sbc: usize, tally: &Tally) {
    let mut conn = Sbc::from_stream(stream, &fqdn(sbc + 1));
    conn.answer_options = false;
    while let Some(m) = conn.read().await {
        if m.is_response() {
            continue;
        }
        let ok = response_to(&m.text, 200, "OK", &[]);
        if conn.stream.write_all(ok.as_bytes()).await.is_err() || conn.stream.flush().await.is_err()
        {
            break;
        }
        if m.text.starts_with("OPTIONS ") {
            tally.answered.fetch_add(1, Ordering::Relaxed);
            tally.per_sbc[sbc].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The SBCs' listener: every connection the proxy opens, for as long as it lasts.
async fn serve_sbcs(listener: TcpListener, acceptor: TlsAcceptor, tally: Arc<Tally>) {
    let n = tally.per_sbc.len();
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, tally) = (acceptor.clone(), tally.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                tally.refused.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let Some(sbc) = tls.get_ref().1.server_name().and_then(|s| sbc_index(s, n)) else {
                tally.refused.fetch_add(1, Ordering::Relaxed);
                return;
            };
            tally.accepted.fetch_add(1, Ordering::Relaxed);
            tally.open.fetch_add(1, Ordering::Relaxed);
            answer_requests(tls, sbc, &tally).await;
            tally.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// SBC `i` introduces itself: its OPTIONS over a new mutual-TLS connection, the 200,
/// the proxy's own OPTIONS on the same connection answered, then the connection closed.
async fn introduce(addr: SocketAddr, certs: Arc<PathBuf>, i: usize) -> Result<(), String> {
    let name = fqdn(i);
    let connector = tls_connector(&certs, Some(&name), &[TlsVersion::V1_2]);
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{name}: connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let tls = connector
        .connect(server_name(), tcp)
        .await
        .map_err(|e| format!("{name}: TLS: {e}"))?;
    let mut sbc = Sbc::from_stream(tls, &name);
    sbc.answer_options = false;
    let exchange = async {
        sbc.stream
            .write_all(options_numbered(&name, 1).as_bytes())
            .await
            .map_err(|e| format!("{name}: send: {e}"))?;
        let (mut answered, mut theirs) = (false, false);
        while !(answered && theirs) {
            let Some(m) = sbc.read().await else {
                return Err(format!("{name}: closed by the proxy"));
            };
            if m.is_response() && m.status() == 200 {
                answered = true;
            } else if m.is_response() {
                let status = m.text.lines().next().unwrap_or_default().to_owned();
                return Err(format!("{name}: {status}"));
            } else {
                let ok = response_to(&m.text, 200, "OK", &[]);
                sbc.stream
                    .write_all(ok.as_bytes())
                    .await
                    .map_err(|e| format!("{name}: answer: {e}"))?;
                theirs |= m.text.starts_with("OPTIONS ");
            }
        }
        Ok(())
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .map_err(|_| format!("{name}: no 200 and OPTIONS from the proxy within {WAIT:?}"))??;
    let _ = sbc.stream.shutdown().await;
    Ok(())
}

/// The figures, printed once the daemon is gone.
struct Report {
    intro: Duration,
    rss_before: u64,
    rss_after: u64,
    /// Outbound connections up when RSS was read before and after.
    up_before: usize,
    up_after: usize,
    /// OPTIONS answered in each round of the measurement.
    per_round: Vec<u64>,
    /// (SBC, round) pairs that did not get exactly one OPTIONS.
    irregular: usize,
    daemon_cpu_micros: u64,
    bench_cpu_micros: u64,
    /// Connections opened, and handshakes refused, during the rounds.
    reconnects: usize,
    refused: usize,
}

async fn run(
    n: usize,
    interval: Duration,
    rounds: u32,
    daemon: (u32, SocketAddr),
    certs: PathBuf,
    sbc_side: (std::net::TcpListener, TlsAcceptor),
) -> Report {
    let (pid, addr) = daemon;
    let tally = Arc::new(Tally::new(n));
    let listener = TcpListener::from_std(sbc_side.0).expect("SBC listener");
    let server = tokio::spawn(serve_sbcs(listener, sbc_side.1, tally.clone()));

    // 1. Every SBC introduces itself; the proxy answers and sends its own OPTIONS back.
    let started = Instant::now();
    let certs = Arc::new(certs);
    let permits = Arc::new(Semaphore::new(INTRO_CONCURRENCY));
    let mut intros = JoinSet::new();
    for i in 1..=n {
        let permit = permits.clone().acquire_owned().await.expect("semaphore");
        let certs = certs.clone();
        intros.spawn(async move {
            let r = introduce(addr, certs, i).await;
            drop(permit);
            r
        });
    }
    let mut failed = Vec::new();
    while let Some(r) = intros.join_next().await {
        if let Err(e) = r.expect("introduction task") {
            failed.push(e);
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {n} introductions failed, e.g. {}",
        failed.len(),
        failed[0]
    );
    let intro = started.elapsed();

    // 2. The daemon with N SBCs known and no connection open.
    tokio::time::sleep(SETTLE).await;
    let rss_before = rss_kib(pid);
    let up_before = tally.open.load(Ordering::Relaxed);

    // 3. One interval after its OPTIONS over the introductions, the proxy connects to
    // every SBC.
    let deadline = started + interval * 2 + Duration::from_secs(60);
    loop {
        let open = tally.open.load(Ordering::Relaxed);
        let heard = tally.per_sbc().iter().filter(|&&c| c > 0).count();
        if open >= n && heard == n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {:?}: {open} of {n} outbound connections up, {heard} SBCs answered, {} handshakes refused",
            started.elapsed(),
            tally.refused.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(SETTLE).await;
    let rss_after = rss_kib(pid);
    let up_after = tally.open.load(Ordering::Relaxed);
    let accepted = tally.accepted.load(Ordering::Relaxed);
    let refused = tally.refused.load(Ordering::Relaxed);

    // 4. CPU over whole intervals, each holding one round of the proxy's OPTIONS.
    let t0 = tokio::time::Instant::now();
    let (cpu0, bench0) = (cpu_micros(pid), cpu_micros(std::process::id()));
    let mut per_sbc = vec![tally.per_sbc()];
    let mut totals = vec![tally.answered.load(Ordering::Relaxed)];
    for k in 1..=rounds {
        tokio::time::sleep_until(t0 + interval * k).await;
        per_sbc.push(tally.per_sbc());
        totals.push(tally.answered.load(Ordering::Relaxed));
    }
    let (cpu1, bench1) = (cpu_micros(pid), cpu_micros(std::process::id()));
    server.abort();
    let irregular = per_sbc
        .windows(2)
        .map(|w| w[0].iter().zip(&w[1]).filter(|(a, b)| *b - *a != 1).count())
        .sum();
    Report {
        intro,
        rss_before,
        rss_after,
        up_before,
        up_after,
        per_round: totals.windows(2).map(|w| w[1] - w[0]).collect(),
        irregular,
        daemon_cpu_micros: cpu1 - cpu0,
        bench_cpu_micros: bench1 - bench0,
        reconnects: tally.accepted.load(Ordering::Relaxed) - accepted,
        refused: tally.refused.load(Ordering::Relaxed) - refused,
    }
}

fn main() {
    let n = arg("--sbcs", 1000).max(1) as usize;
    let interval_s = arg("--interval", 60).max(1);
    let rounds = arg("--rounds", 3).max(1) as u32;

    let sbc_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind SBC listener");
    sbc_listener
        .set_nonblocking(true)
        .expect("nonblocking SBC listener");
    let sbc_addr = sbc_listener.local_addr().expect("SBC listener address");
    let (dir, cfg) = lab("options-out", |t| bench_config(&t, n, interval_s, sbc_addr));
    let mut cleanup = Cleanup { dir, daemon: None };
    let certs = cleanup.dir.join("certs");
    let (chain, key_pem) = issue_sbc_certs(&certs, n);
    let acceptor = sbc_acceptor(&certs, chain, &key_pem);
    let (daemon, addr) = spawn_daemon(&cleanup.dir, &cfg);
    let pid = daemon.id();
    cleanup.daemon = Some(daemon);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let r = rt.block_on(run(
        n,
        Duration::from_secs(interval_s),
        rounds,
        (pid, addr),
        certs,
        (sbc_listener, acceptor),
    ));
    drop(rt);
    drop(cleanup);

    let conns = r.up_after.saturating_sub(r.up_before);
    let per_conn = r.rss_after.saturating_sub(r.rss_before) as f64 / conns.max(1) as f64;
    let options: u64 = r.per_round.iter().sum();
    let per_round = if r.per_round.iter().all(|&c| c == r.per_round[0]) {
        format!("{} per round", r.per_round[0])
    } else {
        let each: Vec<String> = r.per_round.iter().map(u64::to_string).collect();
        format!("per round {}", each.join(", "))
    };
    println!(
        "options_out: {n} SBCs, the proxy's OPTIONS every {interval_s} s over the TLS connections it opened"
    );
    println!(
        "  introductions: {n} SBCs in {:.1} s, {INTRO_CONCURRENCY} at a time (one OPTIONS each each way, inbound, then closed)",
        r.intro.as_secs_f64()
    );
    if r.up_before > 0 {
        println!(
            "  ({} outbound connections were already up when RSS was first read)",
            r.up_before
        );
    }
    println!(
        "  outbound connections: {conns} (RSS before {} KiB, after {} KiB): {per_conn:.1} KiB per connection",
        r.rss_before, r.rss_after
    );
    println!(
        "  {rounds} rounds: {options} OPTIONS answered, {per_round}; daemon CPU {:.1} us per OPTIONS",
        r.daemon_cpu_micros as f64 / options.max(1) as f64
    );
    println!(
        "  every SBC one OPTIONS each round: {}; new connections during the rounds: {}, refused handshakes: {}; bench CPU {} ms",
        if r.irregular == 0 {
            "yes".to_owned()
        } else {
            format!("no ({} SBC-rounds without exactly one)", r.irregular)
        },
        r.reconnects,
        r.refused,
        r.bench_cpu_micros / 1000
    );
}
