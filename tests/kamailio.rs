//! Interop: a real Kamailio 5.6 as a record-routing lab SBC in front of drhub, the way
//! a voice engineer puts one there, relaying PSTN calls from sipp:
//!
//! ```text
//! sipp UAC ("PSTN carrier", UDP) --> Kamailio (proxy, record-routes) --mutual TLS--> drhub
//! ```
//!
//! Kamailio's configuration is tests/kamailio/kamailio.cfg and tls.cfg (templates this
//! test fills with free loopback ports and the test PKI); the carrier's scenarios are
//! tests/sipp/pstn_call_uac*.xml. Every test starts its own drhub (in process) and its
//! own Kamailio (a child process in its own process group, stopped on drop; its log is
//! printed when the test fails). Skipped, loudly, where kamailio, its TLS module or
//! sipp is not installed (`.ci/run` installs them).
//!
//! What it holds drhub to:
//! - DR-VAL-2..4 through a real proxy: the SBC's Contact and top Record-Route carry the
//!   FQDN of its certificate (Kamailio rewrites the carrier's IP Contact).
//! - DR-NH-4: dialogs follow RFC 3261 §12 on every leg. drhub copies the INVITE's
//!   Record-Route into every dialog-creating response (§12.1.1), so the caller's ACK
//!   and BYE can follow the route set through the SBC; in-dialog requests with Route
//!   naming the proxy are accepted.
//! - DR-NH-1: drhub's own in-dialog requests (its BYE when the Teams user hangs up)
//!   go to the top Route's FQDN (the SBC), else the Contact, carrying the route set.
//!
//! Knobs: `DRHUB_KAMAILIO_DEBUG=3` raises Kamailio's log level; `DRHUB_KAMAILIO_WIRE=1`
//! logs every request Kamailio sends, in full (the INVITE as drhub gets it);
//! `DRHUB_KAMAILIO_KEEP=1` keeps the work directory (filled configs, logs, sipp error
//! files); `RUST_LOG=debug` shows drhub's own log.

mod support;

use std::fs;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use drhub::config::Config;
use drhub::transport::tls::TlsVersion;
use rustls_pki_types::ServerName;
use support::*;
use tokio::net::TcpStream;

const KAMAILIO_CFG: &str = include_str!("kamailio/kamailio.cfg");
const TLS_CFG: &str = include_str!("kamailio/tls.cfg");

/// User1: two virtual clients ring, the desktop sends early media and answers.
const USER1: &str = "+18338006777";
/// A user the rig adds to the lab config: answers, then hangs up (the Teams side
/// ends the call), so drhub sends its own BYE towards the SBC.
const HANGUP_USER: &str = "+18338006790";

/// The lab's user who forwards every call to +14255550123 (DR-FWD).
const FORWARDING_USER: &str = "+18338006780";

/// The SBC trunk of the lab config, where the rig sets the SBC's real TLS port.
const SBC1_TRUNK: &str = "  fqdn = \"sbc1.adatum.biz\"\n  port = 5061\n";
/// Where the rig's user goes: right before the next user of tenant adatum.
const BUSY_USER: &str = "  # Always busy: the call fails with 486 (DR-FORK-7).\n";

/// Why the rig cannot run here, if it cannot.
fn missing_tools() -> Option<String> {
    if Command::new("sipp").arg("-v").output().is_err() {
        return Some("sipp not installed (apt-get install sip-tester)".into());
    }
    let Some(modules) = module_dir() else {
        return Some(
            "kamailio not installed (apt-get install kamailio kamailio-tls-modules)".into(),
        );
    };
    if !modules.join("tls.so").exists() {
        return Some(format!(
            "Kamailio's tls module is not in {} (apt-get install kamailio-tls-modules)",
            modules.display()
        ));
    }
    None
}

/// Kamailio's module directory, as its own help text states it
/// (`-L path  Modules search path (default: /usr/lib/x86_64-linux-gnu/kamailio/modules)`).
fn module_dir() -> Option<PathBuf> {
    let out = Command::new("kamailio").arg("-h").output().ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text.lines().find(|l| l.trim_start().starts_with("-L "))?;
    let dir = line
        .split("(default: ")
        .nth(1)?
        .trim_end()
        .trim_end_matches(')');
    Some(PathBuf::from(dir))
}

fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("probe UDP port");
    s.local_addr().expect("probe UDP addr").port()
}

fn free_tcp_port() -> u16 {
    let s = TcpListener::bind("127.0.0.1:0").expect("probe TCP port");
    s.local_addr().expect("probe TCP addr").port()
}

/// The lab config for the rig: the SBC trunk at Kamailio's TLS address (DR-TLS-4: where
/// the proxy connects when it has no connection to the SBC), the hang-up user added,
/// scripted endpoints 20 times faster.
fn rig_config(sbc_tls_port: u16) -> Config {
    lab_config(move |t| {
        assert!(t.contains(SBC1_TRUNK), "lab config: sbc1 trunk block moved");
        assert!(t.contains(BUSY_USER), "lab config: busy user block moved");
        let trunk = format!(
            "  fqdn = \"sbc1.adatum.biz\"\n  port = {sbc_tls_port}\n  address = \"127.0.0.1:{sbc_tls_port}\"\n"
        );
        let hangup_user = format!(
            "  # tests/kamailio.rs: answers, then the Teams side hangs up.\n\
             \x20 [[tenant.user]]\n\
             \x20 sip_address = \"hangup@adatum.biz\"\n\
             \x20 display_name = \"Hangs Up\"\n\
             \x20 line_uri = \"tel:{HANGUP_USER}\"\n\n\
             \x20   [[tenant.user.endpoint]]\n\
             \x20   name = \"desktop\"\n\
             \x20   ring_after_seconds = 0.2\n\
             \x20   answer_after_seconds = 1\n\
             \x20   hangup_after_seconds = 6\n\n\
             {BUSY_USER}"
        );
        // Times 0.05: User1 answers after 0.1 s, the hang-up user after 0.05 s and hangs
        // up 0.3 s later.
        // The SBC keeps History-Info on forwarded calls (DR-FWD-4).
        fast(
            t.replacen(SBC1_TRUNK, &trunk, 1)
                .replacen(BUSY_USER, &hangup_user, 1)
                .replacen(
                    "forward_call_history = false",
                    "forward_call_history = true",
                    1,
                ),
            0.05,
        )
    })
}

/// A Kamailio child process in its own process group (the main process forks workers),
/// stopped on drop (see [`Kamailio::stop`]); its log is printed if the test failed.
struct Kamailio {
    child: Child,
    work: PathBuf,
    log: PathBuf,
}

impl Kamailio {
    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// Signals the main process (`group`: and every worker it forked, its process group).
    fn signal(&self, signal: &str, group: bool) {
        let pid = self.child.id();
        let target = if group {
            format!("-{pid}")
        } else {
            pid.to_string()
        };
        let _ = Command::new("kill")
            .args([signal, "--", &target])
            .stderr(Stdio::null())
            .status();
    }

    /// SIGTERM to the main process, which stops its workers and waits for them (a
    /// signal to the whole group would let workers die first, which the main process
    /// takes for a crash); SIGKILL to the group if it has not ended within 5 s.
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal("-TERM", false);
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(self.child.try_wait(), Ok(None)) {
                self.signal("-KILL", true);
                let _ = self.child.wait();
            }
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "==== Kamailio log ({}) ====\n{}==== end of Kamailio log; work dir kept: {} ====",
                self.log.display(),
                self.log_text(),
                self.work.display()
            );
        } else if std::env::var_os("DRHUB_KAMAILIO_KEEP").is_some() {
            eprintln!("Kamailio work dir kept: {}", self.work.display());
        } else {
            let _ = fs::remove_dir_all(&self.work);
        }
    }
}

/// True when something listens on 127.0.0.1:`port` (/proc/net/tcp state LISTEN, or a
/// bound /proc/net/udp socket), without connecting to it.
fn listening(table: &str, port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    fs::read_to_string(table).is_ok_and(|t| {
        t.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&local.as_str()) && (table.ends_with("udp") || f.get(3) == Some(&"0A"))
        })
    })
}

/// drhub, and Kamailio in front of it as the SBC sbc1.adatum.biz.
struct Rig {
    daemon: TestDaemon,
    /// Kamailio's carrier-facing UDP port (sipp's remote).
    sbc_udp_port: u16,
    /// Kamailio's Teams-facing TLS port (the SBC's SIP signalling port).
    sbc_tls_port: u16,
    /// Where the carrier's switch takes calls from Teams (a sipp UAS, UDP).
    carrier_port: u16,
    kamailio: Kamailio,
}

impl Rig {
    /// `None` (after a loud SKIPPED) when the tools are missing.
    async fn start(name: &str) -> Option<Rig> {
        if let Some(why) = missing_tools() {
            eprintln!("SKIPPED: {why}");
            return None;
        }
        // A port probed free can be taken by another test before Kamailio binds it (the
        // tests run in parallel): then Kamailio exits at start, and the rig is made
        // again on other ports.
        for _ in 0..3 {
            match Self::try_start(name).await {
                Ok(rig) => return Some(rig),
                Err(log) => eprintln!("Kamailio could not bind its ports; again on others:\n{log}"),
            }
        }
        panic!("Kamailio could not bind its ports three times");
    }

    /// One attempt: `Err` with Kamailio's log when it exited at start because one of its
    /// ports was taken meanwhile; any other failure panics.
    async fn try_start(name: &str) -> Result<Rig, String> {
        let modules = module_dir().expect("module dir, checked above");
        let sbc_udp_port = free_udp_port();
        let sbc_tls_port = free_tcp_port();
        let carrier_port = free_udp_port();
        let daemon = TestDaemon::start_with(rig_config(sbc_tls_port)).await;
        let drhub = daemon.tls_addr();

        let work = std::env::temp_dir().join(format!(
            "drhub-kamailio-{}-{name}-{}",
            std::process::id(),
            next_id()
        ));
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work).expect("work dir");
        let tls_cfg = work.join("tls.cfg");
        let pki_dir = pki().dir.display().to_string();
        fs::write(&tls_cfg, TLS_CFG.replace("__PKI_DIR__", &pki_dir)).expect("write tls.cfg");
        let cfg = KAMAILIO_CFG
            .replace("__MPATH__", &format!("{}/", modules.display()))
            .replace("__SBC_UDP_PORT__", &sbc_udp_port.to_string())
            .replace("__SBC_TLS_PORT__", &sbc_tls_port.to_string())
            .replace("__CARRIER_PORT__", &carrier_port.to_string())
            .replace("__DRHUB_ADDR__", &drhub.to_string())
            .replace("__DRHUB_PORT__", &drhub.port().to_string())
            .replace("__TLS_CFG__", &tls_cfg.display().to_string());
        assert!(
            !cfg.contains("__"),
            "kamailio.cfg: a placeholder is left unfilled"
        );
        let cfg_path = work.join("kamailio.cfg");
        fs::write(&cfg_path, cfg).expect("write kamailio.cfg");

        let log = work.join("kamailio.log");
        let log_file = fs::File::create(&log).expect("kamailio log");
        let mut cmd = Command::new("kamailio");
        cmd.arg("-f")
            .arg(&cfg_path)
            // Foreground main process (its pid is ours), log to stderr, work and runtime
            // files (pid, control sockets) in the work dir: no root-only paths.
            .args(["-DD", "-E", "-m", "64", "-M", "8"])
            .arg("-w")
            .arg(&work)
            .arg("-Y")
            .arg(&work)
            .current_dir(&work)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .process_group(0);
        if let Ok(level) = std::env::var("DRHUB_KAMAILIO_DEBUG") {
            cmd.arg(format!("--debug={level}"));
        }
        if std::env::var_os("DRHUB_KAMAILIO_WIRE").is_some() {
            cmd.args(["-A", "WITH_WIRE_LOG"]);
        }
        let child = cmd.spawn().expect("start kamailio");
        let mut kamailio = Kamailio {
            child,
            work: work.clone(),
            log,
        };

        let deadline = Instant::now() + WAIT;
        while !(listening("/proc/net/udp", sbc_udp_port)
            && listening("/proc/net/tcp", sbc_tls_port))
        {
            if let Ok(Some(status)) = kamailio.child.try_wait() {
                let log = kamailio.log_text();
                let taken: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("Address already in use"))
                    .collect();
                if !taken.is_empty() {
                    return Err(taken.join("\n"));
                }
                panic!("kamailio exited at start ({status})");
            }
            assert!(
                Instant::now() < deadline,
                "kamailio does not listen on udp:127.0.0.1:{sbc_udp_port} and \
                 tls:127.0.0.1:{sbc_tls_port} after {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Rig {
            daemon,
            sbc_udp_port,
            sbc_tls_port,
            carrier_port,
            kamailio,
        })
    }

    /// Runs a sipp UAC scenario against the SBC's carrier side; `Err` tells what sipp
    /// saw (its exit, the tail of its screen, its unexpected messages).
    async fn sipp(&self, scenario: &str, number: &str, calls: u32) -> Result<(), String> {
        self.run_sipp(scenario, number, calls, free_udp_port())
            .await
    }

    /// Runs a sipp UAS scenario as the carrier's switch, on the port Kamailio sends
    /// Teams' new calls to; start it before the calls.
    fn carrier(
        &self,
        scenario: &'static str,
        calls: u32,
    ) -> impl std::future::Future<Output = Result<(), String>> + '_ {
        self.run_sipp(scenario, "-", calls, self.carrier_port)
    }

    async fn run_sipp(
        &self,
        scenario: &str,
        number: &str,
        calls: u32,
        port: u16,
    ) -> Result<(), String> {
        let scenario_path = format!("{}/tests/sipp/{scenario}", env!("CARGO_MANIFEST_DIR"));
        let errors = self.kamailio.work.join(format!("{scenario}.errors.log"));
        let calls_s = calls.to_string();
        let args: Vec<String> = [
            "-sf",
            &scenario_path,
            "-t",
            "u1",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-s",
            number,
            "-m",
            &calls_s,
            "-l",
            &calls_s,
            "-r",
            "10",
            // Every expected message within 8 s (calls here take well under one), the
            // whole run within 30 s: a broken drhub fails the run, never hangs it.
            "-recv_timeout",
            "8000",
            "-timeout",
            "30s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
            "-error_file",
            &errors.display().to_string(),
            &format!("127.0.0.1:{}", self.sbc_udp_port),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let work = self.kamailio.work.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new("sipp")
                .args(&args)
                .current_dir(work)
                .stdin(Stdio::null())
                .output()
        })
        .await
        .expect("sipp task")
        .expect("run sipp");
        if out.status.success() {
            return Ok(());
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let unexpected = fs::read_to_string(&errors).unwrap_or_else(|_| "(none)".into());
        Err(format!(
            "sipp {scenario} failed ({}; exit 1 = some call failed)\n\
             ---- sipp screen (tail) ----\n{}\n---- sipp stderr ----\n{}\n\
             ---- sipp unexpected messages ({}) ----\n{}",
            out.status,
            tail(&stdout, 40),
            String::from_utf8_lossy(&out.stderr),
            errors.display(),
            head(&unexpected, 60),
        ))
    }

    /// What the SBC refused or dropped (its configuration logs each case as a script
    /// WARNING): an ACK without its Route is dropped silently on the wire, so the carrier
    /// cannot tell, but the dialog is broken all the same.
    fn sbc_complaints(&self) -> Vec<String> {
        self.kamailio
            .log_text()
            .lines()
            .filter(|l| l.contains("WARNING: <script>"))
            .map(str::to_owned)
            .collect()
    }

    fn assert_sbc_refused_nothing(&self, what: &str) {
        let complaints = self.sbc_complaints();
        assert!(
            complaints.is_empty(),
            "{what}: the SBC refused or dropped {} request(s) (log below):\n{}",
            complaints.len(),
            complaints.join("\n")
        );
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn head(text: &str, lines: usize) -> String {
    let n = text.lines().count();
    let mut s: String = text.lines().take(lines).collect::<Vec<_>>().join("\n");
    if n > lines {
        s.push_str(&format!("\n... ({} more lines in the file)", n - lines));
    }
    s
}

/// The plumbing alone, no dialog: sipp's OPTIONS relayed by Kamailio over mutual TLS
/// (DR-TLS-1) reach drhub with the Contact Kamailio writes, the FQDN of the SBC's
/// certificate (DR-VAL-2, DR-VAL-3), and get drhub's 200. Passes whatever the state of
/// drhub's dialog handling: when the call tests fail and this one passes, the rig is
/// sound and the fault is in the dialogs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_val_2_3_options_relayed_by_kamailio_get_200_from_drhub() {
    let Some(rig) = Rig::start("options").await else {
        return;
    };
    if let Err(e) = rig.sipp("options_uac.xml", USER1, 5).await {
        panic!("OPTIONS through Kamailio over mutual TLS: {e}");
    }
    rig.assert_sbc_refused_nothing("OPTIONS");
    let c = &rig.daemon.hub.counters;
    assert_eq!(c.options_ok.load(Ordering::Relaxed), 5, "OPTIONS accepted");
    assert_eq!(c.rejected.load(Ordering::Relaxed), 0, "requests rejected");
}

/// DR-NH-4 (and DR-VAL-2..4 on the INVITE): the carrier calls User1 through the
/// record-routing SBC and hangs up. Kamailio's INVITE carries the SBC FQDN in Contact
/// and on top of a double Record-Route; drhub's 18x and 200 must copy that
/// Record-Route (RFC 3261 §12.1.1), so sipp's ACK and BYE follow the route set back
/// through Kamailio (which refuses in-dialog requests that do not) to drhub. The BYE
/// gets 200 and drhub's call table drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_nh_4_carrier_ack_and_bye_follow_the_record_route_through_kamailio() {
    let Some(rig) = Rig::start("carrier-hangs-up").await else {
        return;
    };
    if let Err(e) = rig.sipp("pstn_call_uac.xml", USER1, 5).await {
        panic!(
            "DR-NH-4: calls through the record-routing SBC, carrier hangs up. \
             The Kamailio log below shows each 200's Record-Route and whether the \
             ACK/BYE came along the route set.\n{e}"
        );
    }
    rig.assert_sbc_refused_nothing("DR-NH-4");
    assert_eq!(
        rig.daemon.hub.calls.answered.load(Ordering::Relaxed),
        5,
        "calls answered"
    );
    rig.daemon.calls_drained().await;
}

/// DR-HOLD-1 through a real record-routing SBC: the carrier holds (re-INVITE with
/// `a=inactive`) and resumes (`a=sendrecv`), each re-INVITE and its ACK sent by the route
/// set through Kamailio; sipp checks that drhub's answer says `a=inactive` and then
/// `a=sendrecv`, and the carrier hangs up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_hold_1_the_carrier_holds_and_resumes_through_kamailio() {
    let Some(rig) = Rig::start("carrier-holds").await else {
        return;
    };
    if let Err(e) = rig.sipp("pstn_call_hold_uac.xml", USER1, 3).await {
        panic!(
            "DR-HOLD-1: calls held and resumed through the record-routing SBC. \
             The Kamailio log below shows the re-INVITEs and drhub's answers.\n{e}"
        );
    }
    rig.assert_sbc_refused_nothing("DR-HOLD-1");
    assert_eq!(
        rig.daemon.hub.calls.answered.load(Ordering::Relaxed),
        3,
        "calls answered"
    );
    rig.daemon.calls_drained().await;
}

/// DR-XFER-1, DR-XFER-3 through a real record-routing SBC: the carrier's INVITE lists
/// REFER; once User1 answered, the Teams user transfers through the API. drhub's REFER
/// follows the dialog's route set through Kamailio to the carrier (sipp checks Refer-To
/// and Referred-By there), whose 202 and NOTIFYs come back the same way; the NOTIFY's
/// sipfrag 200 ends drhub's leg with a BYE along the route set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_xfer_3_the_refer_reaches_the_carrier_through_kamailio() {
    let Some(rig) = Rig::start("refer").await else {
        return;
    };
    let transfer = rig.daemon.transfer_when_answered("+14255550123");
    let (carrier, ()) = tokio::join!(rig.sipp("pstn_call_refer_uac.xml", USER1, 1), transfer);
    if let Err(e) = carrier {
        panic!(
            "DR-XFER-3: the REFER, NOTIFYs and BYE through the record-routing SBC. \
             The Kamailio log below shows them.\n{e}"
        );
    }
    rig.assert_sbc_refused_nothing("DR-XFER-3");
    rig.daemon.calls_drained().await;
    let rec = rig.daemon.hub.calls.recent().pop().expect("a record");
    assert_eq!(
        rec.outcome.expect("outcome").reason,
        "transferred to +14255550123"
    );
}

/// DR-FWD-2, DR-FWD-3, DR-FWD-4 through a real record-routing SBC: the carrier calls
/// forward@adatum.biz, who forwards every call to +14255550123. The carrier hears 181;
/// drhub's forwarded INVITE goes back to the SBC, which routes it to the carrier's
/// switch (a second sipp) with the Request-URI's `cause=302` and drhub's History-Info,
/// checked there. The switch answers; the 200 reaches the carrier through drhub; the
/// carrier's BYE ends both legs, drhub's BYE following the forward leg's route set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_fwd_a_forwarded_call_goes_back_through_kamailio_to_the_carrier() {
    let Some(rig) = Rig::start("forwarded").await else {
        return;
    };
    let switch = rig.carrier("carrier_forwarded_uas.xml", 2);
    let carrier = async {
        // The switch listens before the first call.
        tokio::time::sleep(Duration::from_millis(300)).await;
        rig.sipp("pstn_call_forwarded_uac.xml", FORWARDING_USER, 2)
            .await
    };
    let (switch, carrier) = tokio::join!(switch, carrier);
    if let Err(e) = carrier {
        panic!(
            "DR-FWD: the carrier's forwarded calls.\n{e}\n---- switch ----\n{switch:?}\n---- Kamailio (tail) ----\n{}",
            tail(&rig.kamailio.log_text(), 80)
        );
    }
    if let Err(e) = switch {
        panic!("DR-FWD: the forward legs at the carrier's switch.\n{e}");
    }
    rig.assert_sbc_refused_nothing("DR-FWD");
    rig.daemon.calls_drained().await;
    let recs = rig.daemon.hub.calls.recent();
    assert_eq!(recs.len(), 2, "two calls recorded");
    for r in recs {
        let o = r.outcome.expect("outcome");
        assert!(
            o.reason
                .starts_with("forwarded (immediate) to +14255550123; answered by sbc1.adatum.biz"),
            "{}",
            o.reason
        );
    }
}

/// DR-OUT-1 through a real record-routing SBC: a Teams user's call placed through the
/// control API goes to the SBC, which routes it to the carrier's switch (sipp, checking
/// the Request-URI and From); the switch's 180 and 200 come back through Kamailio with
/// its Record-Route, and drhub's ACK and, when the caller hangs up, its BYE follow that
/// route set to the switch's Contact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_out_1_a_teams_call_reaches_the_carrier_through_kamailio() {
    let Some(rig) = Rig::start("outbound").await else {
        return;
    };
    let switch = rig.carrier("carrier_uas.xml", 1);
    let place = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let body = serde_json::json!({"from": "user1@adatum.biz", "to": "+14255550100", "talk_seconds": 0.5});
        let (status, v) = drhub::api::request(
            rig.daemon.addr("api"),
            "POST",
            "/api/calls",
            None,
            Some(&body),
        )
        .await
        .expect("API reachable");
        assert_eq!(status, 201, "{v}");
    };
    let (switch, ()) = tokio::join!(switch, place);
    if let Err(e) = switch {
        panic!(
            "DR-OUT-1: the Teams call at the carrier's switch.\n{e}\n---- Kamailio (tail) ----\n{}",
            tail(&rig.kamailio.log_text(), 40)
        );
    }
    rig.assert_sbc_refused_nothing("DR-OUT-1");
    rig.daemon.calls_drained().await;
    let rec = rig.daemon.hub.calls.recent().pop().expect("a record");
    let o = rec.outcome.expect("outcome");
    assert_eq!(o.status, 200, "{}", o.reason);
    assert!(
        o.reason.starts_with("answered by sbc1.adatum.biz"),
        "{}",
        o.reason
    );
}

/// DR-NH-1 (with DR-NH-4 for the caller's ACK): the Teams user hangs up. drhub's BYE
/// goes to the SBC (top Route's FQDN, else Contact) with the dialog's route set as
/// Route; Kamailio recognises its own entries, turns the Contact it wrote back into the
/// carrier's address, and sipp answers 200. The BYE must be the hang-up, not drhub
/// giving up on an ACK that never came (ms-diagnostics fails the scenario).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_nh_1_teams_bye_follows_the_route_set_to_the_carrier_through_kamailio() {
    let Some(rig) = Rig::start("teams-hangs-up").await else {
        return;
    };
    if let Err(e) = rig
        .sipp("pstn_call_uac_far_hangup.xml", HANGUP_USER, 2)
        .await
    {
        panic!(
            "DR-NH-1: calls through the record-routing SBC, Teams hangs up. \
             The Kamailio log below shows the ACK and drhub's BYE.\n{e}"
        );
    }
    // sipp cannot see its ACK dropped by the SBC; the SBC's log can.
    rig.assert_sbc_refused_nothing("DR-NH-4 (the caller's ACK)");
    assert_eq!(
        rig.daemon.hub.calls.answered.load(Ordering::Relaxed),
        2,
        "calls answered"
    );
    rig.daemon.calls_drained().await;
}

/// The rig itself, for the path drhub takes once it opens its own connections to the
/// SBC (DR-TLS-4, a trunk `address`): Kamailio's TLS listener presents the SBC certificate
/// (sbc1.adatum.biz, checked here against the lab CA), accepts a peer with the proxy's
/// certificate (an OPTIONS to the SBC gets 200) and refuses one with no certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rig_kamailio_tls_listener_takes_drhub_connections_with_a_certificate_only() {
    let Some(rig) = Rig::start("tls-listener").await else {
        return;
    };
    let addr = format!("127.0.0.1:{}", rig.sbc_tls_port);
    let name = ServerName::try_from("sbc1.adatum.biz").expect("server name");

    let as_proxy = client_tls_as(Some("proxy"), &[TlsVersion::V1_2]);
    let tcp = TcpStream::connect(&addr)
        .await
        .expect("connect to Kamailio");
    let tls = as_proxy
        .connect(name.clone(), tcp)
        .await
        .expect("mutual TLS with Kamailio as sip.pstnhub.microsoft.com");
    let mut teams = Sbc::from_stream(tls, "sip.pstnhub.microsoft.com");
    let n = next_id();
    let port = rig.sbc_tls_port;
    let ping = format!(
        "OPTIONS sip:sbc1.adatum.biz:{port};transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS sip.pstnhub.microsoft.com:5061;branch=z9hG4bKping{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:sip.pstnhub.microsoft.com:5061;transport=tls>;tag=ping{n}\r\n\
         To: <sip:sbc1.adatum.biz:{port}>\r\n\
         Call-ID: ping-{n}@sip.pstnhub.microsoft.com\r\n\
         CSeq: 1 OPTIONS\r\n\
         Contact: <sip:sip.pstnhub.microsoft.com:5061;transport=tls>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let r = teams.request(&ping).await;
    assert_eq!(r.status(), 200, "{}", r.text);

    let anonymous = client_tls_as(None, &[TlsVersion::V1_2]);
    let tcp = TcpStream::connect(&addr)
        .await
        .expect("connect to Kamailio");
    let refused = match anonymous.connect(name, tcp).await {
        Err(_) => true,
        // TLS 1.2: the refusal may only show on the first read.
        Ok(mut tls) => {
            use tokio::io::AsyncReadExt;
            let mut b = [0u8; 1];
            matches!(
                tokio::time::timeout(WAIT, tls.read(&mut b)).await,
                Ok(Ok(0)) | Ok(Err(_))
            )
        }
    };
    assert!(
        refused,
        "Kamailio accepted a TLS peer without a certificate"
    );
}
