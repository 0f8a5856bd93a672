//! Interop: a real third-party SIP stack (sipp) against the daemon's plain-TCP lab
//! listener (DR-TLS-5), as a voice engineer would run it. Debian's sipp has no TLS, so
//! the TLS side is covered by tests/options.rs; this proves the wire format works with
//! a stack we did not write. Skipped, loudly, where sipp is not installed (`.ci/run`
//! installs it).

mod support;

use std::process::Command;
use std::sync::atomic::Ordering;

use support::*;

fn sipp_available() -> bool {
    Command::new("sipp").arg("-v").output().is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_options_over_tcp_get_200() {
    if !sipp_available() {
        eprintln!("SKIPPED: sipp not installed (apt-get install sip-tester)");
        return;
    }
    let cfg = lab_config(|t| {
        t.replace("enabled = false\n", "enabled = true\n")
            .replace("allow_insecure = false", "allow_insecure = true")
    });
    let d = TestDaemon::start_with(cfg).await;
    let addr = d.addr("lab-tcp");
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sipp/options_uac.xml");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("sipp")
            .args([
                "-sf", scenario, "-t", "t1", "-m", "20", "-r", "50", "-l", "5",
            ])
            .args(["-timeout", "10s", "-timeout_error", "-nostdin"])
            .arg(addr.to_string())
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // sipp exits 0 only when every call of the scenario succeeded.
    assert!(
        out.status.success(),
        "sipp failed ({:?}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(d.proxy.counters.options_ok.load(Ordering::Relaxed), 20);
    assert_eq!(d.proxy.counters.rejected.load(Ordering::Relaxed), 0);
}
