//! Interop: a real third-party SIP stack (sipp) against the daemon's plain-TCP lab
//! listener (DR-TLS-5), as a voice engineer would run it. Debian's sipp has no TLS, so
//! the TLS side is covered by tests/options.rs; this proves the wire format works with
//! a stack we did not write. Skipped, loudly, where sipp is not installed (`.ci/run`
//! installs it).

mod support;

use std::process::Command;
use std::sync::atomic::Ordering;

use support::*;

/// A local port for sipp to bind; sipp's default (5060) would collide between tests.
fn free_port() -> String {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
    probe.local_addr().expect("probe addr").port().to_string()
}

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
            .args(["-i", "127.0.0.1", "-p", &free_port()])
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
    assert_eq!(d.hub.counters.options_ok.load(Ordering::Relaxed), 20);
    assert_eq!(d.hub.counters.rejected.load(Ordering::Relaxed), 0);
}

/// sipp as the SBC (over the plain-TCP lab listener) calls User1, whose desktop client
/// answers: 100, 180s, 200 with SDP, ACK, BYE.
/// Runs sipp as the SBC with `scenario` (in `tests/sipp/`) against `addr`, `calls` calls
/// to User1, at most 5 at a time; fails the test unless every call succeeded.
async fn sipp_calls(addr: std::net::SocketAddr, scenario: &str, calls: u32) {
    let scenario = format!("{}/tests/sipp/{scenario}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::task::spawn_blocking(move || {
        Command::new("sipp")
            .args(["-sf", &scenario, "-t", "t1", "-m", &calls.to_string()])
            .args(["-r", "10", "-l", "5", "-s", "+18338006777"])
            .args(["-i", "127.0.0.1", "-p", &free_port()])
            .args(["-timeout", "15s", "-timeout_error", "-nostdin"])
            .arg(addr.to_string())
            .output()
    })
    .await
    .expect("sipp task")
    .expect("sipp runs");
    // sipp exits 0 only when every call of the scenario succeeded.
    assert!(
        out.status.success(),
        "sipp failed ({:?}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The lab config with the plain-TCP listener on and sbc1 allowed on it (DR-TLS-5).
fn sipp_lab() -> drhub::config::Config {
    lab_config(|t| {
        fast(t, 0.05)
            .replace("enabled = false\n", "enabled = true\n")
            .replace("allow_insecure = false", "allow_insecure = true")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_sbc_calls_user1_over_tcp() {
    if !sipp_available() {
        eprintln!("SKIPPED: sipp not installed (apt-get install sip-tester)");
        return;
    }
    let d = TestDaemon::start_with(sipp_lab()).await;
    sipp_calls(d.addr("lab-tcp"), "call_uac.xml", 5).await;
    // A call is counted once its task has ended, which may be just after sipp has its
    // 200 to the BYE.
    d.calls_drained().await;
    assert_eq!(d.hub.calls.answered.load(Ordering::Relaxed), 5);
}

/// DR-HOLD-1 with a stack drhub did not write: sipp as the SBC holds each call with a
/// re-INVITE `a=inactive` sent by its route set, checks the 200 says `a=inactive`,
/// resumes (`a=sendrecv`), holds with `a=sendonly` (answered `a=inactive`) and hangs up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_sbc_holds_and_resumes_calls_over_tcp() {
    if !sipp_available() {
        eprintln!("SKIPPED: sipp not installed (apt-get install sip-tester)");
        return;
    }
    let d = TestDaemon::start_with(sipp_lab()).await;
    sipp_calls(d.addr("lab-tcp"), "call_hold_uac.xml", 3).await;
    d.calls_drained().await;
    assert_eq!(d.hub.calls.answered.load(Ordering::Relaxed), 3);
}

/// DR-HOLD-2 with a stack drhub did not write on the receiving side: on a media-bypass
/// trunk, User1's desktop holds 0.3 s after answering and resumes 0.3 s later; sipp as
/// the SBC gets drhub's re-INVITEs, checks `a=inactive` then `a=sendrecv`, answers each
/// with headers it copies from them, and gets drhub's ACKs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_sbc_gets_the_teams_clients_hold_and_resume_over_tcp() {
    if !sipp_available() {
        eprintln!("SKIPPED: sipp not installed (apt-get install sip-tester)");
        return;
    }
    let cfg = lab_config(|t| {
        let t = t.replacen("media_bypass = false", "media_bypass = true", 1).replacen(
            "    # transfer_after_seconds = 10\n    bypass = true\n",
            "    # transfer_after_seconds = 10\n    hold_after_seconds = 6\n    hold_seconds = 0.3\n    bypass = true\n",
            1,
        );
        fast(t, 0.05)
            .replace("enabled = false\n", "enabled = true\n")
            .replace("allow_insecure = false", "allow_insecure = true")
    });
    let d = TestDaemon::start_with(cfg).await;
    sipp_calls(d.addr("lab-tcp"), "teams_hold_uas_side.xml", 2).await;
    d.calls_drained().await;
    assert_eq!(d.hub.calls.answered.load(Ordering::Relaxed), 2);
}

/// DR-XFER-3 with a stack drhub did not write: sipp as an SBC that handles REFER calls
/// User1; once the call is answered the test transfers it through the control API; sipp
/// checks the REFER's Refer-To and Referred-By, answers 202, sends NOTIFY 100 and 200
/// and gets drhub's BYE for the old leg.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_sbc_handles_the_proxys_refer_over_tcp() {
    if !sipp_available() {
        eprintln!("SKIPPED: sipp not installed (apt-get install sip-tester)");
        return;
    }
    let d = TestDaemon::start_with(sipp_lab()).await;
    let addr = d.addr("lab-tcp");
    let sipp = tokio::spawn(sipp_calls(addr, "refer_uac.xml", 1));
    d.transfer_when_answered("+14255550123").await;
    sipp.await.expect("sipp task");
    d.calls_drained().await;
    let rec = d.hub.calls.recent().pop().expect("a record");
    assert_eq!(
        rec.outcome.expect("outcome").reason,
        "transferred to +14255550123"
    );
}

/// DR-XFER-3, DR-XFER-4 with a stack drhub did not write, the way Microsoft asks SBCs
/// to carry out a transfer: sipp gets the REFER to a Teams user, answers 202, calls the
/// Refer-To back through the proxy as a new dialog copying the Referred-By byte for byte
/// (a Referred-By drhub did not write would be refused 403), the target's client
/// answers, sipp NOTIFYs 200 and gets drhub's BYE for the old leg, then hangs up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_sbc_calls_the_refer_to_back_with_referred_by_over_tcp() {
    if !sipp_available() {
        eprintln!("SKIPPED: sipp not installed (apt-get install sip-tester)");
        return;
    }
    let d = TestDaemon::start_with(sipp_lab()).await;
    let addr = d.addr("lab-tcp");
    let sipp = tokio::spawn(sipp_calls(addr, "refer_back_uac.xml", 1));
    d.transfer_when_answered("user1@adatum.biz").await;
    sipp.await.expect("sipp task");
    d.calls_drained().await;
    let recent = d.hub.calls.recent();
    let reasons: Vec<String> = recent
        .iter()
        .map(|r| {
            r.outcome
                .as_ref()
                .map(|o| o.reason.clone())
                .unwrap_or_default()
        })
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r == "transferred to user1@adatum.biz"),
        "{reasons:?}"
    );
    assert_eq!(
        d.hub.calls.answered.load(Ordering::Relaxed),
        2,
        "{reasons:?}"
    );
}

/// sipp's built-in UAS is User1's SIP endpoint (a static contact): the SBC (the test
/// harness over mutual TLS) calls, sipp rings and answers, and the answer reaches the SBC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_uas_endpoint_answers_a_call_from_the_sbc() {
    if !sipp_available() {
        eprintln!("SKIPPED: sipp not installed (apt-get install sip-tester)");
        return;
    }
    let port = {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let cfg = lab_config(|t| {
        fast(t, 0.05)
            // User1's virtual clients ring but never answer; the softphone slot gets sipp.
            .replace("answer_after_seconds = 0.1\n", "\n")
            .replace("answer_after_seconds = 0.125\n", "\n")
            .replace("    name = \"softphone\"\n    kind = \"sip\"\n", &format!("    name = \"softphone\"\n    kind = \"sip\"\n    contact = \"sip:sipp@127.0.0.1:{port}\"\n"))
    });
    let d = TestDaemon::start_with(cfg).await;
    let mut uas = std::process::Command::new("sipp")
        .args([
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "15s",
        ])
        .arg(d.addr("endpoints").to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Give sipp a moment to bind before the call reaches it.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", "+18338006777", &[]);
    sbc.send(&inv).await;
    let ok = loop {
        let r = sbc.recv().await;
        if r.status() >= 200 {
            break r;
        }
    };
    assert_eq!(ok.status(), 200, "{}", ok.text);
    let tag = ok.to_tag().unwrap();
    sbc.send(in_dialog(&inv, "ACK", Some(&tag), 1)).await;
    assert_eq!(
        sbc.request(&in_dialog(&inv, "BYE", Some(&tag), 2))
            .await
            .status(),
        200
    );
    let status = tokio::task::spawn_blocking(move || uas.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "sipp UAS saw the call through to its BYE: {status:?}"
    );
    d.calls_drained().await;
}
