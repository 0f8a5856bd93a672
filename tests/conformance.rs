//! Black-box: the conformance report (DR-CONF). A deliberately misbehaving SBC sends,
//! over mutual TLS, an INVITE with an IP address in Contact (twice), one with Replaces,
//! one to a number without `+`, one without SDP, and one to a number without
//! `user=phone` that drhub accepts. `GET /api/report` and `drhub report` list each
//! fault with its requirement ID, count and last Call-ID.

mod support;

use std::process::Command;

use drhub::api::request;
use support::*;

fn with_line(inv: &str, name: &str, value: &str) -> String {
    let mut out = Vec::new();
    let mut replaced = false;
    for l in inv.split("\r\n") {
        if l.to_ascii_lowercase()
            .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        {
            out.push(format!("{name}: {value}"));
            replaced = true;
        } else {
            out.push(l.to_owned());
        }
    }
    let s = out.join("\r\n");
    if replaced {
        s
    } else {
        s.replacen(
            "CSeq: 1 INVITE\r\n",
            &format!("CSeq: 1 INVITE\r\n{name}: {value}\r\n"),
            1,
        )
    }
}

#[tokio::test]
async fn dr_conf_the_report_lists_what_a_misbehaving_sbc_did() {
    let d = TestDaemon::start_with(lab_config(|t| fast(t, 0.05))).await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    assert_eq!(sbc.options().await.status(), 200);
    let user1 = "+18338006777";
    let mut last_ip = String::new();
    for _ in 0..2 {
        let inv = with_line(
            &invite("sbc1.adatum.biz", user1, &[]),
            "Contact",
            "<sip:+17168712781@192.0.2.50:5061;transport=tls>",
        );
        let r = sbc.request(&inv).await;
        assert_eq!(r.status(), 403, "{}", r.text);
        last_ip = req_header(&inv, "Call-ID").unwrap().to_owned();
    }
    let replaces = invite(
        "sbc1.adatum.biz",
        user1,
        &["Replaces: abc@x;to-tag=1;from-tag=2"],
    );
    assert_eq!(sbc.request(&replaces).await.status(), 403);
    let no_plus = invite("sbc1.adatum.biz", "18338006777", &[]);
    assert_eq!(sbc.request(&no_plus).await.status(), 404);
    let inv = invite("sbc1.adatum.biz", user1, &[]);
    let head = inv.split("Content-Type:").next().unwrap();
    let delayed = format!("{head}Content-Length: 0\r\n\r\n");
    assert_eq!(sbc.request(&delayed).await.status(), 415);
    // Accepted, but without user=phone.
    let bare = invite("sbc1.adatum.biz", user1, &RR).replacen(";user=phone SIP/2.0", " SIP/2.0", 1);
    sbc.send(&bare).await;
    let (ok, _) = sbc.until(200).await;
    sbc.send(routed(&bare, &ok, "ACK", 1, &[])).await;
    let bye = sbc.request(&routed(&bare, &ok, "BYE", 2, &[])).await;
    assert_eq!(bye.status(), 200);
    d.calls_drained().await;

    let (s, v) = request(
        d.addr("api"),
        "GET",
        "/api/report?sbc=sbc1.adatum.biz",
        None,
        None,
    )
    .await
    .expect("API reachable");
    assert_eq!(s, 200, "{v}");
    let sbcs = v["sbcs"].as_array().unwrap();
    assert_eq!(sbcs.len(), 1, "{v}");
    let findings = sbcs[0]["findings"].as_array().unwrap();
    let find = |req: &str, severity: &str| {
        findings
            .iter()
            .find(|f| f["requirement"] == req && f["severity"] == severity)
            .unwrap_or_else(|| panic!("no {severity} {req} in {v:#}"))
    };
    let ip = find("DR-VAL-2", "broke");
    assert_eq!(ip["count"], 2, "{v:#}");
    assert_eq!(ip["last_call_id"], last_ip.as_str());
    assert!(
        ip["detail"].as_str().unwrap().contains("192.0.2.50"),
        "{v:#}"
    );
    find("DR-VAL-6", "broke");
    find("DR-FORK-6", "broke");
    let plus = find("DR-TEN-3", "broke");
    assert!(
        plus["what"]
            .as_str()
            .unwrap()
            .contains("without a leading +"),
        "{v:#}"
    );
    let phone = find("DR-TEN-3", "nearly");
    assert_eq!(phone["last_call_id"], req_header(&bare, "Call-ID").unwrap());
    // Broken first, then nearly.
    assert_eq!(findings.last().unwrap()["severity"], "nearly", "{v:#}");

    // Every SBC of the config is listed; an unknown one is 404.
    let (_, all) = request(d.addr("api"), "GET", "/api/report", None, None)
        .await
        .unwrap();
    let names: Vec<&str> = all["sbcs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["sbc"].as_str())
        .collect();
    assert!(
        names.contains(&"sbc2.adatum.biz") && names.contains(&"sbc1.adatum.biz"),
        "{names:?}"
    );
    let (s, _) = request(
        d.addr("api"),
        "GET",
        "/api/report?sbc=nobody.example",
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(s, 404);

    // The command line, as an engineer runs it against the daemon.
    let api = d.addr("api").to_string();
    // Off the runtime's thread: the daemon answering it runs there.
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_drhub"))
            .args(["report", "--sbc", "sbc1.adatum.biz", "--api", &api])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("sbc1.adatum.biz\n"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("broke") && l.contains("DR-VAL-2") && l.contains("2x")),
        "{text}"
    );
    assert!(text.contains(&format!("Call-ID {last_ip}")), "{text}");
}
