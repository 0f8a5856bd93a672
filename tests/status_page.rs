//! Black-box: the status page (issue 10, item 4) served by the control API. A
//! record-routing SBC over mutual TLS sends OPTIONS and places a call; the page lists the
//! SBC (health, connection, certificate), the call while it is up and after it ended, and
//! draws the call's SIP ladder from the messages the daemon saw. The browser test drives
//! Debian's headless Chromium against the same pages.

mod support;

use support::*;

/// The arrow labels of a ladder page, top to bottom.
fn arrows(page: &str) -> Vec<String> {
    page.split("<text class=\"label ")
        .skip(1)
        .filter_map(|s| {
            let start = s.find('>')? + 1;
            let end = s.find("</text>")?;
            Some(s[start..end].to_owned())
        })
        .collect()
}

/// A Call-ID as a path segment of `/calls/{id}`.
fn segment(call_id: &str) -> String {
    call_id
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn the_status_page_shows_sbcs_calls_and_each_calls_ladder() {
    let d = TestDaemon::start_with(lab_config(|t| fast(t, 0.05))).await;
    let api = d.addr("api");
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    assert_eq!(sbc.options().await.status(), 200);
    let (inv, ok) = answered_call(&mut sbc, "+18338006777").await;
    let call_id = req_header(&inv, "Call-ID").expect("Call-ID").to_owned();

    // While the call is up.
    let (head, page) = http_get(api, "/", &[]).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    let live = page
        .split("<section id=\"live\">")
        .nth(1)
        .and_then(|s| s.split("</section>").next())
        .expect("a section of calls up");
    assert!(
        live.contains(&format!("data-call-id=\"{call_id}\"")),
        "{live}"
    );
    assert!(live.contains(">answered<"), "{live}");
    let sbc_row = page
        .split("<tr class=\"sbc\" data-fqdn=\"sbc1.adatum.biz\">")
        .nth(1)
        .and_then(|s| s.split("</tr>").next())
        .expect("a row for sbc1");
    assert!(sbc_row.contains("state active"), "{sbc_row}");
    assert!(
        sbc_row.contains("inbound 127.0.0.1:"),
        "its connection: {sbc_row}"
    );
    assert!(
        sbc_row.contains("sbc1.adatum.biz<br><small>until "),
        "its certificate: {sbc_row}"
    );
    assert!(sbc_row.contains("<td>1</td>"), "one call up: {sbc_row}");
    assert!(page.contains("<section id=\"listeners\">") && page.contains(">sip<"));

    let bye = sbc.request(&routed(&inv, &ok, "BYE", 2, &[])).await;
    assert_eq!(bye.status(), 200);
    d.calls_drained().await;

    // After: among the last calls, 200, linked to its ladder.
    let (_, page) = http_get(api, "/", &[]).await;
    let recent = page
        .split("<section id=\"recent\">")
        .nth(1)
        .and_then(|s| s.split("</section>").next())
        .expect("a section of ended calls");
    let link = format!("href=\"/calls/{}\"", segment(&call_id));
    assert!(recent.contains(&link), "{recent}");
    assert!(recent.contains(">200 "), "{recent}");

    let (head, ladder) = http_get(api, &format!("/calls/{}", segment(&call_id)), &[]).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The user's two clients ring (a 180 each, DR-FORK-1), one brings early media
    // (183 with SDP), the other answers.
    assert_eq!(
        arrows(&ladder),
        [
            "INVITE (SDP)",
            "100 Trying",
            "180 Ringing",
            "180 Ringing",
            "183 Session Progress (SDP)",
            "200 OK (SDP)",
            "ACK",
            "BYE",
            "200 OK"
        ],
        "{ladder}"
    );
    // The SBC's column is named by its certificate; drhub's is the listener's address.
    assert!(ladder.contains(">sbc1.adatum.biz</text>"), "{ladder}");
    assert!(ladder.contains(">drhub</text>"), "{ladder}");
    // Every arrow links to its message, the message as it went on the wire.
    assert!(ladder.contains("<a href=\"#m8\" class=\"rung\">"));
    assert!(ladder.contains(&format!("Call-ID: {call_id}")));

    let (head, _) = http_get(api, "/calls/no-such-call", &[]).await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    d.stop().await;
}

/// With `[api] token`, a browser is challenged with Basic authentication and gets in
/// with the token as its password; the JSON API keeps asking for a bearer token.
#[tokio::test]
async fn the_status_page_asks_a_browser_for_the_token() {
    let d = TestDaemon::start_with(lab_config(|t| {
        t.replace("# token = \"change-me\"", "token = \"s3cret\"")
    }))
    .await;
    let api = d.addr("api");
    let (head, _) = http_get(api, "/", &[]).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: basic realm=\"drhub\""),
        "{head}"
    );
    // "admin:s3cret"
    let (head, page) = http_get(api, "/", &[("Authorization", "Basic YWRtaW46czNjcmV0")]).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(page.contains("<section id=\"sbcs\">"));
    let (head, _) = http_get(api, "/", &[("Authorization", "Basic YWRtaW46d3Jvbmc=")]).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    let (head, _) = http_get(api, "/api/status", &[]).await;
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );
    d.stop().await;
}
