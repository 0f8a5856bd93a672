//! Black-box: an SBC sends OPTIONS (and the requests DR-VAL governs) to the real daemon
//! over mutual TLS on loopback, and reads what comes back.

mod support;

use support::*;

use drhub::transport::tls::TlsVersion;

#[tokio::test]
async fn dr_opt_1_faithful_200_has_the_captured_shape() {
    let d = TestDaemon::start().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let req = options("sbc1.adatum.biz", None, &[]);
    let r = sbc.request(&req).await;
    assert_eq!(r.status(), 200, "{}", r.text);
    let names: Vec<&str> = r
        .text
        .split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split(':').next())
        .collect();
    assert_eq!(
        names,
        [
            "FROM",
            "TO",
            "CSEQ",
            "CALL-ID",
            "VIA",
            "CONTENT-LENGTH",
            "ALLOW",
            "SERVER"
        ],
        "{}",
        r.text
    );
    assert_eq!(
        r.header("TO"),
        Some("<sip:sip.pstnhub.microsoft.com>"),
        "no To tag in the faithful profile"
    );
    assert_eq!(
        r.header("ALLOW"),
        Some("INVITE,ACK,OPTIONS,CANCEL,BYE,NOTIFY")
    );
    assert_eq!(
        r.header("SERVER"),
        Some("Microsoft.PSTNHub.SIPProxy v.2020.7.31.1 i.USWE2.3")
    );
    // Copied verbatim from the request.
    let via = req
        .lines()
        .find(|l| l.starts_with("Via:"))
        .unwrap()
        .trim_start_matches("Via: ");
    assert_eq!(r.header("VIA"), Some(via));
    assert!(r.header("CONTACT").is_none() && r.header("SUPPORTED").is_none());
}

#[tokio::test]
async fn dr_opt_1_rfc3261_profile_adds_tag_contact_accept_supported() {
    let cfg = lab_config(|t| t.replace("profile = \"faithful\"", "profile = \"rfc3261\""));
    let d = TestDaemon::start_with(cfg).await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let r = sbc.options().await;
    assert_eq!(r.status(), 200);
    assert!(r.header("To").unwrap().contains(";tag="), "{}", r.text);
    assert!(r
        .header("Contact")
        .unwrap()
        .starts_with("<sip:sip.pstnhub.microsoft.com:"));
    assert_eq!(r.header("Accept"), Some("application/sdp"));
    assert!(r.header("Supported").is_some());
}

#[tokio::test]
async fn dr_opt_1_compact_and_lowercase_headers_are_understood() {
    let d = TestDaemon::start().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let req = "OPTIONS sip:sip.pstnhub.microsoft.com:5061 SIP/2.0\r\n\
v: SIP/2.0/TLS sbc1.adatum.biz:5061;branch=z9hG4bKcompact1\r\n\
max-forwards: 70\r\n\
f: <sip:sbc1.adatum.biz>;tag=c1\r\n\
t: <sip:sip.pstnhub.microsoft.com>\r\n\
i: compact-1\r\n\
cseq: 1 OPTIONS\r\n\
m: <sip:sbc1.adatum.biz:5061;transport=tls>\r\n\
l: 0\r\n\r\n";
    let r = sbc.request(req).await;
    assert_eq!(r.status(), 200, "{}", r.text);
    assert_eq!(r.header("CALL-ID"), Some("compact-1"));
}

#[tokio::test]
async fn dr_opt_2_options_are_recorded_per_sbc() {
    let d = TestDaemon::start().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    assert_eq!(sbc.options().await.status(), 200);
    assert_eq!(sbc.options().await.status(), 200);
    let s = d.hub.health.get("sbc1.adatum.biz").expect("recorded");
    assert_eq!(s.tenant, "adatum");
    assert_eq!(s.options_received, 2);
    assert!(s.allows("REFER") && s.allows("invite"));
    let cert = s.certificate.as_ref().expect("certificate recorded");
    assert!(cert.matches("sbc1.adatum.biz"));
    assert!(cert.not_after > time::OffsetDateTime::now_utc());
    assert!(
        d.hub.flows.get(s.flow).is_some(),
        "the connection it came on is live"
    );
}

#[tokio::test]
async fn dr_ten_2_wildcard_certificate_serves_a_subdomain_sbc() {
    // Carrier case: the SBC presents *.contoso.com and calls itself sbc2.contoso.com.
    let d = TestDaemon::start().await;
    let mut sbc = connect_as(&d, "star.contoso.com").await.unwrap();
    sbc.fqdn = "sbc2.contoso.com".into();
    let r = sbc.options().await;
    assert_eq!(r.status(), 200, "{}", r.text);
    assert_eq!(
        d.hub.health.get("sbc2.contoso.com").unwrap().tenant,
        "contoso"
    );
}

#[tokio::test]
async fn dr_ten_2_sbc_in_no_tenant_gets_403_510532() {
    let d = TestDaemon::start().await;
    let mut sbc = connect_as(&d, "sbc1.fabrikam.com").await.unwrap();
    let r = sbc.options().await;
    assert_eq!(r.status(), 403, "{}", r.text);
    assert_eq!(r.ms_code(), Some(510532));
    let diag = r.header("ms-diagnostics").unwrap();
    assert!(
        diag.contains("reason=\"No trunk config was found\""),
        "{diag}"
    );
    assert!(diag.contains("fqdn=\"sbc1.fabrikam.com\""), "{diag}");
    assert!(
        diag.ends_with("source=\"sip.pstnhub.microsoft.com\""),
        "{diag}"
    );
}

#[tokio::test]
async fn dr_ten_1_tenant_found_but_no_trunk_for_the_fqdn_gets_510532() {
    // sbc9.adatum.biz resolves to tenant adatum (DR-TEN-2) which has no such trunk.
    let d = TestDaemon::start().await;
    let mut sbc = connect_as(&d, "sbc9.adatum.biz").await.unwrap();
    let r = sbc.options().await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.ms_code(), Some(510532));
    assert!(r
        .header("ms-diagnostics")
        .unwrap()
        .contains("tenant=\"adatum\""));
}

#[tokio::test]
async fn dr_val_1_missing_contact_is_400() {
    let d = TestDaemon::start().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let r = sbc
        .request(&options("sbc1.adatum.biz", Some(""), &[]))
        .await;
    assert_eq!(r.status(), 400, "{}", r.text);
    assert!(r.text.starts_with("SIP/2.0 400 Contact Header Missing"));
    let r = sbc
        .request(&invite("sbc1.adatum.biz", "+18338006777", &[]).replace(
            "Contact: <sip:+17168712781@sbc1.adatum.biz:5061;transport=tls>\r\n",
            "",
        ))
        .await;
    assert_eq!(r.status(), 400, "{}", r.text);
}

#[tokio::test]
async fn dr_val_2_ip_in_contact_is_403_ipv4_and_ipv6() {
    let d = TestDaemon::start().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    for contact in [
        "<sip:192.0.2.10:5061;transport=tls>",
        "<sip:[2001:db8::10]:5061;transport=tls>",
    ] {
        let r = sbc
            .request(&options("sbc1.adatum.biz", Some(contact), &[]))
            .await;
        assert_eq!(r.status(), 403, "{contact}: {}", r.text);
        assert_eq!(r.ms_code(), Some(540431));
    }
}

#[tokio::test]
async fn dr_val_2_only_the_first_contact_counts() {
    let d = TestDaemon::start().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let good_first = "<sip:sbc1.adatum.biz:5061;transport=tls>, <sip:192.0.2.10:5061>";
    assert_eq!(
        sbc.request(&options("sbc1.adatum.biz", Some(good_first), &[]))
            .await
            .status(),
        200
    );
    let ip_first = "<sip:192.0.2.10:5061>, <sip:sbc1.adatum.biz:5061;transport=tls>";
    assert_eq!(
        sbc.request(&options("sbc1.adatum.biz", Some(ip_first), &[]))
            .await
            .status(),
        403
    );
}

#[tokio::test]
async fn dr_val_3_contact_fqdn_must_match_the_certificate() {
    let d = TestDaemon::start().await;
    // Exact names.
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let r = sbc
        .request(&options(
            "sbc1.adatum.biz",
            Some("<sip:sbc2.contoso.com:5061>"),
            &[],
        ))
        .await;
    assert_eq!(r.status(), 403, "{}", r.text);
    assert_eq!(r.ms_code(), Some(540403));
    let diag = r.header("ms-diagnostics").unwrap();
    assert!(
        diag.contains("fqdn=\"sbc2.contoso.com\"")
            && diag.contains("certificate=\"sbc1.adatum.biz\""),
        "{diag}"
    );
    // Case-insensitive.
    let r = sbc
        .request(&options(
            "sbc1.adatum.biz",
            Some("<sip:SBC1.Adatum.BIZ:5061>"),
            &[],
        ))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text);

    // RFC 2818 wildcard: *.adatum.biz covers sbc1.adatum.biz but not a deeper name.
    let mut wild = connect_as(&d, "star.adatum.biz").await.unwrap();
    let r = wild.request(&options("sbc1.adatum.biz", None, &[])).await;
    assert_eq!(r.status(), 200, "{}", r.text);
    let r = wild
        .request(&options("bar.sbc1.adatum.biz", None, &[]))
        .await;
    assert_eq!(r.status(), 403, "{}", r.text);
    assert_eq!(r.ms_code(), Some(540403));
    let r = wild.request(&options("adatum.biz", None, &[])).await;
    assert_eq!(
        r.status(),
        403,
        "*.adatum.biz must not match adatum.biz: {}",
        r.text
    );
}

#[tokio::test]
async fn dr_val_3_fragment_wildcard_in_the_common_name() {
    // `f*.com matches foo.com, not bar.com` (RFC 2818 §3.1), here CN=sb*.adatum.biz.
    let d = TestDaemon::start().await;
    let mut sbc = connect_as(&d, "fragment-wildcard").await.unwrap();
    let r = sbc.request(&options("sbc1.adatum.biz", None, &[])).await;
    assert_eq!(r.status(), 200, "sb* covers sbc1: {}", r.text);
    let r = sbc.request(&options("xbc1.adatum.biz", None, &[])).await;
    assert_eq!(
        (r.status(), r.ms_code()),
        (403, Some(540403)),
        "sb* must not cover xbc1: {}",
        r.text
    );
    assert!(r
        .header("ms-diagnostics")
        .unwrap()
        .contains("sb*.adatum.biz"));
}

#[tokio::test]
async fn dr_val_4_record_route_must_be_an_fqdn_on_the_certificate() {
    let d = TestDaemon::start().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let r = sbc
        .request(&options(
            "sbc1.adatum.biz",
            None,
            &["Record-Route: <sip:192.0.2.10:5061;lr>"],
        ))
        .await;
    assert_eq!((r.status(), r.ms_code()), (403, Some(540432)), "{}", r.text);
    let r = sbc
        .request(&options(
            "sbc1.adatum.biz",
            None,
            &["Record-Route: <sip:proxy.fabrikam.com:5061;lr>"],
        ))
        .await;
    assert_eq!((r.status(), r.ms_code()), (403, Some(540433)), "{}", r.text);
    let r = sbc
        .request(&options(
            "sbc1.adatum.biz",
            None,
            &["Record-Route: <sip:sbc1.adatum.biz:5061;transport=tls;lr>"],
        ))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text);
}

#[tokio::test]
async fn dr_opt_1_options_tenant_comes_from_record_route_first() {
    // A wildcard SBC whose Record-Route names an unknown subdomain: the Record-Route
    // decides the tenant lookup, so the OPTIONS fails although the Contact is fine.
    let d = TestDaemon::start().await;
    let mut wild = connect_as(&d, "star.adatum.biz").await.unwrap();
    let r = wild
        .request(&options(
            "sbc1.adatum.biz",
            None,
            &["Record-Route: <sip:sbc7.adatum.biz;lr>"],
        ))
        .await;
    assert_eq!((r.status(), r.ms_code()), (403, Some(510532)), "{}", r.text);
    assert!(r
        .header("ms-diagnostics")
        .unwrap()
        .contains("fqdn=\"sbc7.adatum.biz\""));
}

#[tokio::test]
async fn dr_val_5_sips_uris_get_416() {
    let d = TestDaemon::start().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let r = sbc
        .request(&options(
            "sbc1.adatum.biz",
            Some("<sips:sbc1.adatum.biz:5061>"),
            &[],
        ))
        .await;
    assert_eq!((r.status(), r.ms_code()), (416, Some(540416)), "{}", r.text);
    let req = options("sbc1.adatum.biz", None, &[]).replacen("OPTIONS sip:", "OPTIONS sips:", 1);
    assert_eq!(sbc.request(&req).await.status(), 416);
    let req = options("sbc1.adatum.biz", None, &[]).replace("To: <sip:", "To: <sips:");
    assert_eq!(sbc.request(&req).await.status(), 416);
    let req = options("sbc1.adatum.biz", None, &[]).replace("From: <sip:", "From: <sips:");
    assert_eq!(sbc.request(&req).await.status(), 416);
}

#[tokio::test]
async fn dr_val_6_replaces_is_403() {
    let d = TestDaemon::start().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite(
        "sbc1.adatum.biz",
        "+18338006777",
        &["Replaces: abc@x;to-tag=1;from-tag=2"],
    );
    let r = sbc.request(&inv).await;
    assert_eq!((r.status(), r.ms_code()), (403, Some(540434)), "{}", r.text);
}

#[tokio::test]
async fn dr_val_7_at_sign_with_empty_user_is_400() {
    let d = TestDaemon::start().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let r = sbc
        .request(&options(
            "sbc1.adatum.biz",
            Some("<sip:@sbc1.adatum.biz:5061>"),
            &[],
        ))
        .await;
    assert_eq!(r.status(), 400, "{}", r.text);
    assert_eq!(r.ms_code(), Some(540400));
    // No userinfo at all is valid (RFC 3261 §19.1.1).
    let r = sbc
        .request(&options(
            "sbc1.adatum.biz",
            Some("<sip:sbc1.adatum.biz:5061>"),
            &[],
        ))
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn dr_val_8_every_rejection_carries_reason_and_ms_diagnostics() {
    let d = TestDaemon::start().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let r = sbc
        .request(&options("sbc1.adatum.biz", Some("<sip:192.0.2.1>"), &[]))
        .await;
    let reason = r.header("REASON").expect("Reason header");
    assert!(reason.starts_with("Q.850;cause=21;text=\""), "{reason}");
    let text = reason
        .split("text=\"")
        .nth(1)
        .unwrap()
        .trim_end_matches('"');
    let (corr, phrase) = text.split_once(';').unwrap();
    assert_eq!(corr.len(), 36, "correlation id: {corr}");
    assert!(phrase.contains("IP address"), "{phrase}");
    assert!(r
        .header("MS-DIAGNOSTICS")
        .unwrap()
        .starts_with("540431;reason=\""));
}

#[tokio::test]
async fn dr_val_8_ms_diagnostics_can_be_turned_off() {
    let cfg = lab_config(|t| t.replace("ms_diagnostics = true", "ms_diagnostics = false"));
    let d = TestDaemon::start_with(cfg).await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let r = sbc
        .request(&options("sbc1.adatum.biz", Some("<sip:192.0.2.1>"), &[]))
        .await;
    assert_eq!(r.status(), 403);
    assert!(r.header("ms-diagnostics").is_none());
    assert!(
        r.header("Reason").is_some(),
        "Reason stays: the real service sends it"
    );
}

#[tokio::test]
async fn unsupported_require_gets_420_with_unsupported() {
    let d = TestDaemon::start().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let r = sbc
        .request(&options(
            "sbc1.adatum.biz",
            None,
            &["Require: nothingknown, timer"],
        ))
        .await;
    assert_eq!(r.status(), 420, "{}", r.text);
    assert_eq!(r.header("UNSUPPORTED"), Some("nothingknown"));
}

#[tokio::test]
async fn out_of_dialog_bye_and_cancel_get_481_other_methods_405() {
    let d = TestDaemon::start().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let bye = options("sbc1.adatum.biz", None, &[]).replace("OPTIONS", "BYE");
    assert_eq!(sbc.request(&bye).await.status(), 481);
    let msg = options("sbc1.adatum.biz", None, &[]).replace("OPTIONS", "MESSAGE");
    let r = sbc.request(&msg).await;
    assert_eq!(r.status(), 405);
    assert!(r.header("ALLOW").is_some());
}

#[tokio::test]
async fn dr_err_3_malformed_request_gets_400_naming_the_fault_and_connection_survives() {
    let d = TestDaemon::start().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let bad = options("sbc1.adatum.biz", None, &[]).replace("CSeq: ", "CSeq: notanumber ");
    let r = sbc.request(&bad).await;
    assert_eq!(r.status(), 400, "{}", r.text);
    assert!(
        !r.text.starts_with("SIP/2.0 400 Bad Request\r\n"),
        "the phrase names the fault: {}",
        r.text
    );
    assert_eq!(r.ms_code(), Some(540400));
    assert_eq!(
        sbc.options().await.status(),
        200,
        "same connection still served"
    );
}

#[tokio::test]
async fn dr_tls_1_serverauth_only_client_certificate_is_accepted() {
    let d = TestDaemon::start().await;
    let mut sbc = connect_as(&d, "serverauth-only").await.unwrap();
    sbc.fqdn = "sbc1.adatum.biz".into();
    assert_eq!(sbc.options().await.status(), 200);
}

/// A handshake that must fail: either the connect errors or the first read does.
async fn assert_refused(d: &TestDaemon, connector: tokio_rustls::TlsConnector) {
    match connect_with(d, connector, "sbc1.adatum.biz".into()).await {
        Err(_) => {}
        Ok(mut sbc) => {
            let req = options("sbc1.adatum.biz", None, &[]);
            use tokio::io::AsyncWriteExt;
            let _ = sbc.stream.write_all(req.as_bytes()).await;
            let (closed, got) = sbc.closed().await;
            assert!(
                closed && got.is_empty(),
                "handshake should have failed, got {got:?}"
            );
        }
    }
}

#[tokio::test]
async fn dr_tls_1_no_untrusted_or_expired_client_certificate_fails_the_handshake() {
    let d = TestDaemon::start().await;
    assert_refused(&d, client_tls_as(None, &[TlsVersion::V1_2])).await;
    assert_refused(&d, client_tls_as(Some("untrusted"), &[TlsVersion::V1_2])).await;
    assert_refused(&d, client_tls_as(Some("expired"), &[TlsVersion::V1_2])).await;
    // Nothing else is affected.
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    assert_eq!(sbc.options().await.status(), 200);
    assert_eq!(
        d.hub
            .counters
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "nothing parsed from refused connections"
    );
}

#[tokio::test]
async fn dr_tls_1_tls13_only_when_configured() {
    let only13 = || client_tls_as(Some("sbc1.adatum.biz"), &[TlsVersion::V1_3]);
    let d = TestDaemon::start().await;
    assert_refused(&d, only13()).await;
    let d13 = TestDaemon::start_with(lab_config(|t| {
        t.replace(
            "tls_versions = [\"1.2\"]",
            "tls_versions = [\"1.2\", \"1.3\"]",
        )
    }))
    .await;
    let mut sbc = connect_with(&d13, only13(), "sbc1.adatum.biz".into())
        .await
        .unwrap();
    assert_eq!(sbc.options().await.status(), 200);
    let (_, conn) = sbc.stream.get_ref();
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

#[tokio::test]
async fn dr_tls_1_negotiates_ecdhe_rsa_aes_gcm_on_tls12() {
    let d = TestDaemon::start().await;
    let sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let (_, conn) = sbc.stream.get_ref();
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let suite = format!("{:?}", conn.negotiated_cipher_suite().unwrap().suite());
    assert!(
        suite.starts_with("TLS_ECDHE_RSA_WITH_AES_") && suite.contains("GCM"),
        "{suite}"
    );
}

#[tokio::test]
async fn dr_tls_3_double_crlf_ping_gets_one_crlf_pong() {
    let d = TestDaemon::start().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    sbc.send("\r\n\r\n").await;
    assert_eq!(sbc.recv_raw(2).await, b"\r\n");
    // Keep-alives are never messages: the next OPTIONS is answered normally.
    sbc.send("\r\n\r\n").await;
    assert_eq!(sbc.recv_raw(2).await, b"\r\n");
    assert_eq!(sbc.options().await.status(), 200);
    assert_eq!(
        d.hub
            .counters
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn dr_fork_10_pipelined_and_large_messages_are_framed() {
    let d = TestDaemon::start().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    // Three requests in one write, the middle one with a body well over 1500 bytes.
    let big = "x".repeat(5000);
    let with_body = options("sbc1.adatum.biz", None, &[]).replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{big}",
            big.len()
        ),
    );
    let all = format!(
        "{}{}{}",
        options("sbc1.adatum.biz", None, &[]),
        with_body,
        options("sbc1.adatum.biz", None, &[])
    );
    sbc.send(all).await;
    for _ in 0..3 {
        assert_eq!(sbc.recv().await.status(), 200);
    }
}

/// Waits until the proxy's view of an SBC is `want` (bounded by [`WAIT`]).
async fn until_state(d: &TestDaemon, fqdn: &str, want: drhub::health::SbcState) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = d.hub.health.state(fqdn);
        if now == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{fqdn} is {now:?}, not {want:?}, after {WAIT:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn dr_opt_3_the_proxy_answers_with_its_own_options_and_an_sbc_that_answers_is_active() {
    let d = TestDaemon::start().await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    sbc.answer_options = false;
    sbc.send(options("sbc1.adatum.biz", None, &[])).await;
    let mut ours = None;
    while ours.is_none() {
        let m = sbc.recv().await;
        if m.text.starts_with("OPTIONS ") {
            ours = Some(m);
        } else {
            assert_eq!(m.status(), 200, "{}", m.text);
        }
    }
    let ours = ours.unwrap();
    // DR-NH-2: to the FQDN and port of the SBC's Contact, from the proxy's identity.
    assert_eq!(ours.request_uri(), "sip:sbc1.adatum.biz:5061;transport=tls");
    assert!(
        ours.header("Via")
            .unwrap()
            .starts_with("SIP/2.0/TLS sip.pstnhub.microsoft.com:"),
        "{}",
        ours.text
    );
    assert!(ours
        .header("From")
        .unwrap()
        .contains("sip.pstnhub.microsoft.com"));
    assert_eq!(
        d.hub.health.state("sbc1.adatum.biz"),
        Some(drhub::health::SbcState::Warning),
        "not active before its answer"
    );
    sbc.send(response_to(&ours.text, 200, "OK", &[])).await;
    until_state(&d, "sbc1.adatum.biz", drhub::health::SbcState::Active).await;
    let r = d.hub.health.get("sbc1.adatum.biz").unwrap();
    assert_eq!((r.outbound.sent, r.outbound.answered), (1, 1));
}

/// A lab with DR-OPT-3's timing shortened a hundredfold, and fast transaction timers.
fn fast_health() -> drhub::config::Config {
    lab_config(|t| {
        // Timer F = 64*T1 = 0.64 s.
        let t = set_key(&t, "timers", "t1_seconds", "0.01");
        let t = set_key(&t, "health", "options_interval_seconds", "0.2");
        let t = set_key(&t, "health", "active_window_seconds", "0.6");
        set_key(&t, "health", "inactive_after_seconds", "1")
    })
}

#[tokio::test]
async fn dr_opt_3_an_sbc_that_never_answers_the_proxys_options_becomes_inactive() {
    let d = TestDaemon::start_with(fast_health()).await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    sbc.answer_options = false;
    // It sends OPTIONS every 0.1 s and ignores the proxy's.
    let keep_sending = async {
        loop {
            sbc.send(options("sbc1.adatum.biz", None, &[])).await;
            while sbc
                .try_recv(std::time::Duration::from_millis(100))
                .await
                .is_some()
            {}
        }
    };
    tokio::select! {
        _ = keep_sending => unreachable!(),
        _ = until_state(&d, "sbc1.adatum.biz", drhub::health::SbcState::Inactive) => {}
    }
    let r = d.hub.health.get("sbc1.adatum.biz").unwrap();
    assert!(
        r.outbound.sent >= 1 && r.outbound.answered == 0,
        "{:?}",
        r.outbound
    );
    assert!(
        r.outbound
            .last_result
            .as_deref()
            .unwrap_or("")
            .contains("408"),
        "{:?}",
        r.outbound
    );
}

#[tokio::test]
async fn dr_opt_3_an_sbc_that_stops_sending_options_becomes_inactive() {
    let d = TestDaemon::start_with(fast_health()).await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    assert_eq!(sbc.options().await.status(), 200);
    // It answers the proxy's OPTIONS (the harness does) but sends no more of its own.
    let answering = async {
        loop {
            let _ = sbc.try_recv(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        _ = answering => unreachable!(),
        _ = until_state(&d, "sbc1.adatum.biz", drhub::health::SbcState::Active) => {}
    }
    let answering = async {
        loop {
            let _ = sbc.try_recv(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        _ = answering => unreachable!(),
        _ = until_state(&d, "sbc1.adatum.biz", drhub::health::SbcState::Inactive) => {}
    }
}

#[tokio::test]
async fn dr_opt_3_the_proxy_never_sends_first_to_an_sbc_it_has_not_heard_from() {
    let listener = SbcListener::bind("sbc1.adatum.biz", "sbc1.adatum.biz").await;
    let d = TestDaemon::start_with(lab_config(|t| {
        let t = with_trunk_address(t, "sbc1.adatum.biz", listener.addr);
        set_key(&t, "health", "options_interval_seconds", "0.1")
    }))
    .await;
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    sbc.answer_options = false;
    // Connected, but no OPTIONS from it: nothing from the proxy, on any connection.
    assert!(sbc
        .try_recv(std::time::Duration::from_millis(600))
        .await
        .is_none());
    assert!(
        listener
            .quiet_for(std::time::Duration::from_millis(100))
            .await
    );
    assert!(d.hub.health.get("sbc1.adatum.biz").is_none());
}

#[tokio::test]
async fn dr_tls_4_with_no_connection_open_the_proxy_connects_to_the_sbc_for_its_options() {
    let listener = SbcListener::bind("sbc1.adatum.biz", "sbc1.adatum.biz").await;
    let d = TestDaemon::start_with(lab_config(|t| {
        let t = with_trunk_address(t, "sbc1.adatum.biz", listener.addr);
        set_key(&t, "health", "options_interval_seconds", "0.2")
    }))
    .await;
    // The SBC sends one OPTIONS and goes away at once.
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    sbc.answer_options = false;
    sbc.send(options("sbc1.adatum.biz", None, &[])).await;
    sbc.close().await;
    // The proxy's next OPTIONS comes over a TLS connection it opens: its certificate
    // presented, the SBC's verified against the trunk's FQDN.
    let (mut out, names) = listener.accept().await;
    assert!(
        names.iter().any(|n| n == "sip.pstnhub.microsoft.com"),
        "{names:?}"
    );
    out.answer_options = false;
    let req = out.until_request("OPTIONS").await;
    assert_eq!(req.request_uri(), "sip:sbc1.adatum.biz:5061;transport=tls");
    out.send(response_to(&req.text, 200, "OK", &[])).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while d
        .hub
        .health
        .get("sbc1.adatum.biz")
        .unwrap()
        .outbound
        .answered
        == 0
    {
        assert!(tokio::time::Instant::now() < deadline, "answer recorded");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
