//! Black-box: `drhub import` as an engineer runs it on the cmdlets' JSON in
//! `examples/import`, the fragment appended to the lab's configuration and checked by
//! `drhub check` (which routes a call through it), and the errors of bad inputs.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{scratch, shipped_config};

const BIN: &str = env!("CARGO_BIN_EXE_drhub");

/// The example of one cmdlet's output.
fn example(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/import")
        .join(file)
}

/// `drhub ARGS...` in `dir`: exit code, stdout, stderr.
fn drhub(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `drhub import` of every example, with `extra` arguments.
fn import_examples(dir: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut args = vec!["import".to_owned()];
    for (option, file) in [
        ("--gateways", "gateways.json"),
        ("--routes", "routes.json"),
        ("--usages", "usages.json"),
        ("--policies", "policies.json"),
        ("--users", "users.json"),
    ] {
        args.push(option.to_owned());
        args.push(example(file).display().to_string());
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    drhub(dir, &args)
}

/// The lab configuration without its tenants: [proxy], [[listener]]s, [certs] ...
fn lab_without_tenants() -> String {
    let text = std::fs::read_to_string(shipped_config()).unwrap();
    let end = text
        .find("\n[[tenant]]")
        .expect("the lab config has tenants");
    text[..end].to_owned()
}

fn assert_contains(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
}

#[test]
fn the_examples_import_into_a_config_that_check_accepts_and_routes_through() {
    let dir = scratch("import-examples");
    let (code, stdout, stderr) = import_examples(&dir, &["-o", "fabrikam.toml"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_contains(
        &stderr,
        &["trunks 2, voice routes 3, voice routing policies 2, users 2; 1 left out"],
    );
    let fragment = std::fs::read_to_string(dir.join("fabrikam.toml")).unwrap();
    assert_contains(
        &fragment,
        &[
            "# from Get-CsOnlineVoiceRoute \"Seattle local\"",
            "# - User \"sip:carol@fabrikam.com\": not enabled for Enterprise Voice",
            "# not imported: GatewaySiteId \"Amsterdam\" (Location-Based Routing)",
        ],
    );

    // Standard output without -o: the same text, byte for byte.
    let (code, stdout, _) = import_examples(&dir, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(stdout, fragment);

    let config = dir.join("drhub.toml");
    std::fs::write(&config, format!("{}\n{fragment}", lab_without_tenants())).unwrap();
    let config = config.display().to_string();
    let (code, stdout, stderr) = drhub(&dir, &["check", "-c", &config]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_contains(
        &stdout,
        &[
            "fabrikam (fabrikam): domains fabrikam.com",
            "trunk sbc2.fabrikam.com:5067 enabled send_options media_bypass",
            "user Alice Wood <alice@fabrikam.com> tel:+14255550101, voice routing policy \"Unrestricted\"",
            "user Bob Kelly <bob@fabrikam.com> tel:+14255550102;ext=102, voice routing policy Global (none assigned)",
            "route \"Seattle local\" priority 0: ^\\+1(206|425)\\d{7}$ -> sbc1.fabrikam.com",
        ],
    );

    let route = ["check", "-c", &config, "--route"];
    let (code, stdout, stderr) = drhub(
        &dir,
        &[&route[..], &["alice@fabrikam.com", "+12065550123"]].concat(),
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_contains(
        &stdout,
        &[
            "2. voice routing policy \"Unrestricted\" (assigned to the user)",
            "1. sbc1.fabrikam.com:5061  route \"Seattle local\"",
            "2. sbc2.fabrikam.com:5067  route \"US and Canada\"",
            "routed: 2 gateways to try",
        ],
    );
    // Bob has the imported Global policy: US and Canada only.
    let (code, stdout, _) = drhub(
        &dir,
        &[&route[..], &["bob@fabrikam.com", "+442071234567"]].concat(),
    );
    assert_eq!(code, Some(1), "{stdout}");
    assert_contains(&stdout, &["voice routing policy \"Global\"", "no route"]);
}

#[test]
fn malformed_json_exits_64_naming_the_file_and_writes_nothing() {
    let dir = scratch("import-bad-json");
    std::fs::write(
        dir.join("gateways.json"),
        "[{\"Fqdn\": \"sbc1.fabrikam.com\",",
    )
    .unwrap();
    let (code, stdout, stderr) = drhub(
        &dir,
        &["import", "--gateways", "gateways.json", "-o", "out.toml"],
    );
    assert_eq!(code, Some(64), "{stdout}\n{stderr}");
    assert_contains(
        &stderr,
        &[
            "gateways.json: not JSON: EOF while parsing",
            "nothing written",
        ],
    );
    assert!(!dir.join("out.toml").exists());
}

#[test]
fn a_route_naming_an_unknown_gateway_is_refused_with_both_names() {
    let dir = scratch("import-unknown-gateway");
    std::fs::write(
        dir.join("routes.json"),
        r#"{"Identity": "Europe", "Name": "Europe", "Priority": 3, "NumberPattern": "^\\+3",
            "OnlinePstnGatewayList": ["sbc9.fabrikam.com"], "OnlinePstnUsages": ["International"]}"#,
    )
    .unwrap();
    let gateways = example("gateways.json").display().to_string();
    let args = ["import", "--gateways", &gateways, "--routes", "routes.json"];
    let (code, stdout, stderr) = drhub(&dir, &args);
    assert_eq!(code, Some(64), "{stdout}\n{stderr}");
    assert_contains(
        &stderr,
        &[
            "routes.json: [0] \"Europe\".OnlinePstnGatewayList: \"sbc9.fabrikam.com\" is not in ",
            "gateways.json (Get-CsOnlinePSTNGateway)",
        ],
    );
    assert!(stdout.is_empty(), "{stdout}");
}

#[test]
fn utf16_as_windows_powershell_writes_it_is_read() {
    let dir = scratch("import-utf16");
    let text = std::fs::read_to_string(example("users.json")).unwrap();
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    std::fs::write(dir.join("users.json"), bytes).unwrap();
    let (code, stdout, stderr) = drhub(&dir, &["import", "--users", "users.json"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_contains(&stdout, &["sip_address = \"alice@fabrikam.com\""]);
}

#[test]
fn import_without_an_input_is_a_command_line_error() {
    let dir = scratch("import-nothing");
    let (code, _, stderr) = drhub(&dir, &["import", "--domain", "fabrikam.com"]);
    assert_eq!(code, Some(64));
    assert_contains(&stderr, &["give at least one of --gateways"]);
}
