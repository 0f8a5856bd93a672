//! Black-box: the `drhub` binary as a user runs it: `check`, `certs`, and `run` serving
//! an SBC over TLS until SIGTERM.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_drhub");

#[test]
fn check_accepts_the_shipped_config_and_prints_a_summary() {
    let dir = scratch("check-ok");
    let out = Command::new(BIN)
        .current_dir(&dir)
        .args(["check", "-c"])
        .arg(shipped_config())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "proxy: sip.pstnhub.microsoft.com, sip2.pstnhub.microsoft.com, sip3.pstnhub.microsoft.com",
        "sip        tls 127.0.0.1:5061",
        "sip2       tls 127.0.0.2:5061",
        "control API: http://127.0.0.1:8080/api/status (no token)",
        "lab-tcp    tcp 127.0.0.1:5060",
        "adatum (Adatum): domains adatum.biz",
        "trunk sbc1.adatum.biz:5061",
        "user User1 <user1@adatum.biz> tel:+18338006777",
        "contoso (Contoso): domains contoso.com",
        "missing; `drhub run` creates the lab PKI",
    ] {
        assert!(stdout.contains(needle), "missing `{needle}` in:\n{stdout}");
    }
}

#[test]
fn check_reports_every_error_with_its_path_and_exits_64() {
    let dir = scratch("check-bad");
    let cfg = dir.join("bad.toml");
    std::fs::write(
        &cfg,
        r#"
[proxy]
profile = "loud"
[[listener]]
name = "sip"
address = "127.0.0.1:99999"
[[tenant]]
id = "adatum"
domains = ["adatum.biz"]
[[tenant.trunk]]
fqdn = "192.0.2.1"
sendoptions = true
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .current_dir(&dir)
        .args(["check", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "proxy.profile: ",
        "listener[0].address: `127.0.0.1:99999` is not an address",
        "tenant[0].trunk[0].fqdn: `192.0.2.1` is an IP address",
        "tenant[0].trunk[0].sendoptions: unknown field",
    ] {
        assert!(stderr.contains(needle), "missing `{needle}` in:\n{stderr}");
    }
}

/// `drhub check -c <shipped config> ARGS...` in a scratch directory: exit code, stdout,
/// stderr.
fn check_shipped(name: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let dir = scratch(name);
    let out = Command::new(BIN)
        .current_dir(&dir)
        .args(["check", "-c"])
        .arg(shipped_config())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn dr_out_1_check_prints_each_tenants_routing_table() {
    let (code, stdout, stderr) = check_shipped("route-table", &[]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    for needle in [
        "user User1 <user1@adatum.biz> tel:+18338006777, voice routing policy \"Unrestricted\"",
        "user Busy User <busy@adatum.biz> tel:+18338006778, voice routing policy Global (none assigned)",
        "    voice routing (DR-OUT-1):\n      PSTN usages: \"US and Canada\", \"International\"\n",
        "      route \"US and Canada\" priority 0: ^\\+1\\d{10}$ -> sbc1.adatum.biz, sbc2.adatum.biz; usages \"US and Canada\"\n      route \"International\" priority 1: ",
        "      policy \"Global\": usages \"US and Canada\"\n      policy \"Unrestricted\": usages \"US and Canada\", \"International\"\n",
        "      dial plan rule 0 \"Extension\": ^(\\d{4})$ -> +1833800$1 (internal extension)",
        "      dial plan rule 3 \"International 00\": ^00(\\d+)$ -> +$1",
        "      route \"US and Canada\" priority 0: ^\\+1\\d{10}$ -> sbc2.contoso.com; usages \"US and Canada\"",
    ] {
        assert!(stdout.contains(needle), "missing `{needle}` in:\n{stdout}");
    }
}

#[test]
fn dr_out_1_check_route_shows_a_routed_call_step_by_step() {
    let (code, stdout, stderr) = check_shipped(
        "route-ok",
        &["--route", "user1@adatum.biz", "00442071234567"],
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    for needle in [
        "user1@adatum.biz (tenant adatum) dials \"00442071234567\"\n",
        "1. dial plan: rule \"International 00\" (priority 3) ^00(\\d+)$ -> +$1 makes it \"+442071234567\"\n",
        "2. voice routing policy \"Unrestricted\" (assigned to the user): PSTN usages \"US and Canada\", \"International\"\n",
        "3. usage \"US and Canada\": no route matches; not matching \"US and Canada\"",
        "   usage \"International\": matching \"International\" (priority 1, ",
        "4. usage \"International\" wins",
        "    1. sbc2.adatum.biz:5061  route \"International\"\n    2. sbc1.adatum.biz:5061  route \"International\"\n",
        "routed: 2 gateways to try\n",
    ] {
        assert!(stdout.contains(needle), "missing `{needle}` in:\n{stdout}");
    }
    // Only the decision: no summary.
    assert!(!stdout.contains("listeners:"), "{stdout}");
}

#[test]
fn dr_out_1_check_route_without_a_matching_route_exits_1() {
    // busy@adatum.biz has no policy of its own: Global allows US and Canada only.
    let (code, stdout, stderr) = check_shipped(
        "route-none",
        &["--route", "busy@adatum.biz", "00442071234567"],
    );
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    for needle in [
        "2. voice routing policy \"Global\" (the user has none; the tenant's Global policy)",
        "no route: no voice route of the policy's PSTN usages matches the number; the caller gets 403 Forbidden with ms-diagnostics 510559",
    ] {
        assert!(stdout.contains(needle), "missing `{needle}` in:\n{stdout}");
    }
    let (code, _, stderr) = check_shipped(
        "route-nobody",
        &["--route", "nobody@adatum.biz", "+14255550100"],
    );
    assert_eq!(code, Some(64));
    assert!(
        stderr.contains("--route USER: nobody@adatum.biz is no user of any tenant"),
        "{stderr}"
    );
}

/// Writes the shipped config with `edit` applied and runs `drhub check` on it.
fn check_edited(name: &str, edit: impl FnOnce(String) -> String) -> (Option<i32>, String) {
    let dir = scratch(name);
    let cfg = dir.join("drhub.toml");
    let text = edit(std::fs::read_to_string(shipped_config()).unwrap());
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(BIN)
        .current_dir(&dir)
        .args(["check", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn dr_out_1_check_refuses_a_bad_number_pattern_with_its_path() {
    let (code, stderr) = check_edited("route-regex", |t| {
        t.replacen(
            "number_pattern = '^\\+[2-9]\\d{6,14}$'",
            "number_pattern = '^\\+(?!1)\\d+$'",
            1,
        )
        .replacen("pattern = '^00(\\d+)$'", "pattern = '^00(\\d+$'", 1)
    });
    assert_eq!(code, Some(64), "{stderr}");
    for needle in [
        "tenant[0].voice_route[1].number_pattern: `^\\+(?!1)\\d+$` uses negative look-ahead (`(?!`): .NET regular expressions (Teams) have it, drhub's regex engine does not",
        "tenant[0].dial_plan.normalization_rule[3].pattern: `^00(\\d+$` is not a valid regular expression: unclosed group",
    ] {
        assert!(stderr.contains(needle), "missing `{needle}` in:\n{stderr}");
    }
}

#[test]
fn dr_out_1_check_refuses_an_unknown_pstn_usage_with_its_path() {
    let (code, stderr) = check_edited("route-usage", |t| {
        t.replacen(
            "online_pstn_usages = [\"International\"]",
            "online_pstn_usages = [\"International\", \"Foo\"]",
            1,
        )
    });
    assert_eq!(code, Some(64), "{stderr}");
    let needle = "tenant[0].voice_route[1].online_pstn_usages[1]: unknown PSTN usage \"Foo\"; the tenant's pstn_usages are: \"US and Canada\", \"International\"";
    assert!(stderr.contains(needle), "missing `{needle}` in:\n{stderr}");
}

#[test]
fn run_with_a_bad_config_exits_64_before_listening() {
    let dir = scratch("run-bad");
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "[[listener]]\nname = 1\n").unwrap();
    let out = Command::new(BIN)
        .current_dir(&dir)
        .args(["run", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listener[0].name: expected a string"));
}

#[test]
fn check_flags_tls_files_that_do_not_load() {
    let dir = scratch("check-files");
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        "[[listener]]\nname = \"sip\"\naddress = \"127.0.0.1:5061\"\ncertificate = \"nowhere/proxy.pem\"\nkey = \"nowhere/proxy.key\"\nclient_ca = \"nowhere/ca.pem\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .current_dir(&dir)
        .args(["check", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("listener[0].certificate: nowhere/proxy.pem: file not found"),
        "{stderr}"
    );
}

#[test]
fn certs_writes_a_lab_pki_with_private_keys_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("certs");
    let out = Command::new(BIN)
        .current_dir(&dir)
        .args([
            "certs",
            "--dir",
            "pki",
            "--sbc",
            "*.fabrikam.com",
            "--sbc",
            "sbc7.fabrikam.com",
            "-c",
        ])
        .arg(shipped_config())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "ca.pem",
        "ca.key",
        "proxy.pem",
        "proxy.key",
        "sbc1.adatum.biz.pem",
        "sbc2.contoso.com.key",
        "star.contoso.com.pem",
        "star.fabrikam.com.pem",
        "sbc7.fabrikam.com.key",
    ] {
        assert!(
            dir.join("pki").join(f).exists(),
            "{f} not written; output:\n{stdout}"
        );
    }
    for key in ["ca.key", "proxy.key", "sbc1.adatum.biz.key"] {
        let mode = std::fs::metadata(dir.join("pki").join(key))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    assert!(
        stdout.contains("trust"),
        "tells what the SBC needs:\n{stdout}"
    );
    // The CA is reused on a second run unless --force.
    let ca = std::fs::read(dir.join("pki/ca.pem")).unwrap();
    let again = Command::new(BIN)
        .current_dir(&dir)
        .args(["certs", "--dir", "pki", "-c"])
        .arg(shipped_config())
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(std::fs::read(dir.join("pki/ca.pem")).unwrap(), ca);
    let forced = Command::new(BIN)
        .current_dir(&dir)
        .args(["certs", "--dir", "pki", "--force", "-c"])
        .arg(shipped_config())
        .output()
        .unwrap();
    assert!(forced.status.success());
    assert_ne!(std::fs::read(dir.join("pki/ca.pem")).unwrap(), ca);
}

/// The daemon binary on a fresh directory: it creates the lab PKI, serves OPTIONS over
/// mutual TLS, writes the TLS secrets to `SSLKEYLOGFILE` (Wireshark reads them), and
/// exits 0 on SIGTERM within the grace period.
#[tokio::test]
async fn run_creates_certs_serves_options_and_exits_cleanly_on_sigterm() {
    let dir = scratch("run");
    let cfg = dir.join("drhub.toml");
    let text = std::fs::read_to_string(shipped_config())
        .unwrap()
        .replace("127.0.0.1:5061", "127.0.0.1:0")
        .replace("127.0.0.2:5061", "127.0.0.2:0")
        .replace("127.0.0.3:5061", "127.0.0.3:0")
        .replace("127.0.0.1:5070", "127.0.0.1:0")
        .replace("127.0.0.1:8080", "127.0.0.1:0");
    std::fs::write(&cfg, &text).unwrap();
    let mut child = Command::new(BIN)
        .current_dir(&dir)
        .args(["run", "-c"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .env("SSLKEYLOGFILE", dir.join("keys.log"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + WAIT;
    let mut addr = None;
    let mut api = None;
    let mut log = String::new();
    let address_in = |line: &str| {
        line.split("address=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
    };
    while (addr.is_none() || api.is_none()) && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            log.push_str(&line);
            log.push('\n');
            if line.contains("listening") && line.contains("listener=sip ") {
                addr = address_in(&line);
            }
            if line.contains("control API listening") {
                api = address_in(&line);
            }
        }
    }
    let addr: std::net::SocketAddr =
        addr.unwrap_or_else(|| panic!("daemon did not report its address:\n{log}"));
    let api = api
        .unwrap_or_else(|| panic!("daemon did not report its API address:\n{log}"))
        .to_string();
    assert!(
        dir.join("certs/ca.pem").exists() && dir.join("certs/sbc1.adatum.biz.pem").exists(),
        "{log}"
    );

    // An SBC presenting certs/sbc1.adatum.biz.pem and trusting certs/ca.pem.
    let connector = tls_connector(
        &dir.join("certs"),
        Some("sbc1.adatum.biz"),
        &[drhub::transport::tls::TlsVersion::V1_2],
    );
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector.connect(server_name(), tcp).await.unwrap();
    let mut sbc = Sbc::from_stream(tls, "sbc1.adatum.biz");
    let r = sbc.options().await;
    assert_eq!(r.status(), 200, "{}", r.text);
    assert_eq!(
        r.header("SERVER"),
        Some("Microsoft.PSTNHub.SIPProxy v.2020.7.31.1 i.USWE2.3")
    );
    // The session's secrets, in the NSS key log format (TLS 1.2: CLIENT_RANDOM).
    let keys = std::fs::read_to_string(dir.join("keys.log")).unwrap_or_default();
    assert!(
        keys.starts_with("CLIENT_RANDOM "),
        "SSLKEYLOGFILE: {keys:?}"
    );

    // `drhub call` (DR-OUT-1): the daemon sends the INVITE over the SBC's open
    // connection; the SBC rings and answers; the caller hangs up after --talk.
    let caller = {
        let api = api.clone();
        std::thread::spawn(move || {
            Command::new(BIN)
                .args(["call", "user1@adatum.biz", "+14255550100", "--talk", "2"])
                .args(["--api", &api])
                .output()
                .unwrap()
        })
    };
    let inv = sbc.until_request("INVITE").await;
    assert!(
        inv.request_uri()
            .starts_with("sip:+14255550100@sbc1.adatum.biz:5061;user=phone"),
        "{}",
        inv.text
    );
    let contact = "Contact: <sip:+14255550100@sbc1.adatum.biz:5061;transport=tls>";
    sbc.send(response_tagged(
        &inv.text,
        180,
        "Ringing",
        "cli",
        &[contact],
        None,
    ))
    .await;
    sbc.answer_200(&inv, "cli", contact).await;

    // Reload with the call up (issue 10). SIGHUP re-reads the file: a new user.
    std::fs::write(&cfg, with_instant_user(text.clone())).unwrap();
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + WAIT;
    let reloaded = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.contains("configuration reloaded") => break line,
            Ok(line) => log.push_str(&(line + "\n")),
            Err(_) => assert!(Instant::now() < deadline, "no reload after SIGHUP:\n{log}"),
        }
    };
    assert!(reloaded.contains("tenants"), "{reloaded}");
    // `drhub reload` with a broken file: every error with its path, exit 64, nothing
    // changed. Then the good file again: exit 0, what was applied.
    let reload = |api: &str| {
        let api = api.to_owned();
        std::thread::spawn(move || {
            Command::new(BIN)
                .args(["reload", "--api", &api])
                .output()
                .unwrap()
        })
    };
    let broken = text.replace("tel:+18338006777", "tel:18338006777");
    std::fs::write(&cfg, &broken).unwrap();
    let out = reload(&api).join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("line_uri"), "{stderr}");
    assert!(stderr.contains("nothing changed"), "{stderr}");
    std::fs::write(&cfg, &text).unwrap();
    let out = reload(&api).join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("reloaded") && stdout.contains("applied: tenants"),
        "{stdout}"
    );

    // `drhub hold` (DR-HOLD-2): the call is held, then resumed, through the API; on this
    // non-bypass trunk the SBC sees nothing of it. An unknown Call-ID is exit 1.
    let call_id = inv.header("Call-ID").unwrap().to_owned();
    for args in [
        vec!["hold", call_id.as_str()],
        vec!["hold", call_id.as_str(), "--resume"],
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .args(["--api", &api])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("requested for"), "{text}");
    }
    let out = Command::new(BIN)
        .args(["hold", "no-such-call", "--api", &api])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no call up with Call-ID"));
    // `drhub transfer` (DR-XFER-3): a bad target and an unknown call are exit 1 with
    // the API's reason.
    for (args, why) in [
        (
            vec!["transfer", call_id.as_str(), "4255550123"],
            "neither a +E.164 number",
        ),
        (
            vec!["transfer", "no-such-call", "+14255550123"],
            "no call up with Call-ID",
        ),
        // Consultative (RFC 5589 §7): the consultation must be a call up.
        (
            vec!["transfer", call_id.as_str(), "--consult", "no-such-call"],
            "consult: no call up with Call-ID",
        ),
        (vec!["transfer", call_id.as_str()], "`to` is required"),
    ] {
        let out = Command::new(BIN)
            .args(args)
            .args(["--api", &api])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{err}");
    }
    let bye = sbc.until_request("BYE").await;
    sbc.send(response_to(&bye.text, 200, "OK", &[])).await;
    let out = caller.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("+14255550100 via sbc1.adatum.biz, sbc2.adatum.biz"),
        "{text}"
    );
    assert!(
        text.contains("ended: 200: answered by sbc1.adatum.biz; ended by the caller"),
        "{text}"
    );
    // A number with no route: refused, nothing sent, exit 1.
    let out = Command::new(BIN)
        .args(["call", "user1@adatum.biz", "+1234", "--api", &api])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused: 403 (510559)"), "{err}");

    // `drhub status` and `drhub datacenter` talk to the running daemon's API (DR-DC-1/2).
    let out = Command::new(BIN)
        .args(["status", "--api", &api])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("sbc1.adatum.biz (adatum)"), "{text}");
    assert!(text.contains("datacenters: sip;"), "{text}");
    let out = Command::new(BIN)
        .args([
            "datacenter",
            "sip",
            "busy",
            "--retry-after",
            "5",
            "--api",
            &api,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.trim(), "datacenter sip: busy (was normal)");
    let out = Command::new(BIN)
        .args(["datacenter", "sip9", "busy", "--api", &api])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no datacenter named `sip9`"));
    let out = Command::new(BIN)
        .args(["status", "--api", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(69),
        "no daemon there: EX_UNAVAILABLE"
    );

    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < WAIT,
            "daemon did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
    let (closed, _) = sbc.closed().await;
    assert!(closed);
}
