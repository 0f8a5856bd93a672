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
    // DR-OPT-3 health, DR-DC-2 the datacenter each of its connections is on.
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

/// A call the user's registered SIP phone answers: the call lists two legs, and its
/// ladder has the phone as a third party, the SBC's and the phone's dialogs merged by
/// time (the INVITE to the phone after the SBC's INVITE, the BYE to it after the
/// SBC's BYE).
#[tokio::test]
async fn a_phones_leg_is_a_third_party_on_the_ladder() {
    let d = TestDaemon::start_with(lab_config(|t| {
        // The virtual clients ring but never answer: the phone does.
        fast(t, 0.05)
            .replace("answer_after_seconds = 0.1\n", "\n")
            .replace("answer_after_seconds = 0.125\n", "\n")
    }))
    .await;
    let api = d.addr("api");
    let phone = support::phone::Phone::new(d.addr("endpoints")).await;
    assert_eq!(phone.register_with("user1-lab-password").await, 200);
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    let inv = invite("sbc1.adatum.biz", "+18338006777", &RR);
    sbc.send(&inv).await;
    let to_phone = phone.recv_request("INVITE").await;
    phone
        .answer(
            &to_phone,
            200,
            "OK",
            "phone1",
            Some(support::phone::PHONE_SDP),
        )
        .await;
    phone.recv_request("ACK").await;
    let (ok, _) = sbc.until(200).await;
    sbc.send(routed(&inv, &ok, "ACK", 1, &[])).await;
    let call_id = req_header(&inv, "Call-ID").expect("Call-ID").to_owned();
    let phone_call_id = to_phone.header("Call-ID").expect("Call-ID").to_owned();

    let (_, page) = http_get(api, "/", &[]).await;
    let row = page
        .split(&format!("data-call-id=\"{call_id}\""))
        .nth(1)
        .and_then(|s| s.split("</tr>").next())
        .expect("the call's row");
    assert!(row.contains("<td>2</td>"), "two legs: {row}");

    assert_eq!(
        sbc.request(&routed(&inv, &ok, "BYE", 2, &[]))
            .await
            .status(),
        200
    );
    let bye = phone.recv_request("BYE").await;
    phone.answer(&bye, 200, "OK", "phone1", None).await;
    d.calls_drained().await;

    let (_, ladder) = http_get(api, &format!("/calls/{}", segment(&call_id)), &[]).await;
    assert!(
        ladder.contains(&phone_call_id),
        "the phone leg's Call-ID: {ladder}"
    );
    // The phone leg's Call-ID finds the same call.
    let (head, by_leg) = http_get(api, &format!("/calls/{}", segment(&phone_call_id)), &[]).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(arrows(&by_leg), arrows(&ladder));
    assert!(
        ladder.contains(&format!(">{}</text>", phone.addr())),
        "{ladder}"
    );
    let labels = arrows(&ladder);
    let at = |l: &str| labels.iter().position(|x| x == l);
    // SBC INVITE, 100, then drhub's INVITE to the phone; two BYEs, two 200s at the end.
    assert_eq!(labels[0], "INVITE (SDP)", "{labels:?}");
    assert!(
        labels.iter().filter(|l| *l == "INVITE (SDP)").count() == 2,
        "{labels:?}"
    );
    assert_eq!(
        labels.iter().filter(|l| *l == "BYE").count(),
        2,
        "{labels:?}"
    );
    assert!(at("BYE") > at("200 OK (SDP)"), "{labels:?}");
    // The phone's arrows go right of drhub's column (x 500): to 760.
    assert!(
        ladder.contains("x1=\"500\"") && ladder.contains("x2=\"760\""),
        "{ladder}"
    );
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

/// In Debian's headless Chromium: the page, behind the API token, lists a call placed
/// during the test while it is up; its own script moves the call to the last calls when
/// it ends (no reload by the test); the call's link opens its ladder, every arrow
/// labelled. Screenshots of both pages go to `target/screenshots/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_a_call_appears_ends_and_shows_its_ladder() {
    use std::time::Duration;
    use support::browser::{screenshot_dir, Browser};
    let Some(browser) = Browser::start_or_skip().await else {
        return;
    };
    let wait = Duration::from_secs(10);
    let d = TestDaemon::start_with(lab_config(|t| {
        t.replace("# token = \"change-me\"", "token = \"s3cret\"")
    }))
    .await;
    let api = d.addr("api");
    let mut sbc = connect_as(&d, "sbc1.adatum.biz").await.unwrap();
    assert_eq!(sbc.options().await.status(), 200);
    let (inv, ok) = answered_call(&mut sbc, "+18338006777").await;
    let call_id = req_header(&inv, "Call-ID").expect("Call-ID").to_owned();

    // The token as the Basic password, once; the browser keeps it for the origin.
    browser
        .goto(&format!("http://admin:s3cret@{api}/"))
        .await
        .expect("page with credentials");
    browser.goto(&format!("http://{api}/")).await.expect("page");
    assert_eq!(browser.title().await.unwrap(), "drhub status");
    let row = format!("#live tr.call[data-call-id=\"{call_id}\"]");
    let live = browser
        .wait_for(&row, wait)
        .await
        .expect("the call is listed as up");
    assert!(browser.text(&live).await.unwrap().contains("answered"));
    let sbc_row = browser
        .find("tr.sbc[data-fqdn=\"sbc1.adatum.biz\"]")
        .await
        .expect("sbc1's row");
    assert!(browser.text(&sbc_row).await.unwrap().contains("active"));
    browser
        .screenshot(&screenshot_dir().join("status-page.png"))
        .await
        .expect("screenshot");

    // The SBC hangs up; the page's refresh (every 2 s) moves the call.
    let bye = sbc.request(&routed(&inv, &ok, "BYE", 2, &[])).await;
    assert_eq!(bye.status(), 200);
    let ended = browser
        .wait_for_text("#recent", &call_id, wait)
        .await
        .unwrap_or_else(|e| panic!("the page did not refresh: {e}"));
    assert!(browser.text(&ended).await.unwrap().contains("200"));
    let updated = browser.find("#updated").await.unwrap();
    assert!(browser
        .text(&updated)
        .await
        .unwrap()
        .starts_with("updated "));

    let link = browser
        .find(&format!(
            "#recent tr.call[data-call-id=\"{call_id}\"] a.ladder"
        ))
        .await
        .expect("a link to the ladder");
    browser.click(&link).await.unwrap();
    browser
        .wait_for("#ladder", wait)
        .await
        .expect("the ladder page");
    let mut labels = Vec::new();
    for e in browser.find_all("#ladder text.label").await.unwrap() {
        labels.push(browser.text(&e).await.unwrap());
    }
    assert_eq!(labels.first().map(String::as_str), Some("INVITE (SDP)"));
    assert!(labels.contains(&"200 OK (SDP)".to_owned()), "{labels:?}");
    assert_eq!(
        labels.last().map(String::as_str),
        Some("200 OK"),
        "{labels:?}"
    );
    assert!(labels.contains(&"BYE".to_owned()), "{labels:?}");
    // An arrow opens its message.
    let arrows = browser.find_all("#ladder a.rung").await.unwrap();
    browser.click(&arrows[0]).await.unwrap();
    let open = browser
        .execute("return document.getElementById('m0').open", vec![])
        .await
        .unwrap();
    assert_eq!(open, serde_json::json!(true), "the INVITE's text is open");
    browser
        .screenshot(&screenshot_dir().join("status-ladder.png"))
        .await
        .expect("screenshot");
    let log = browser.log().await;
    assert!(!log.contains("Uncaught"), "script errors:\n{log}");
    browser.close().await;
    d.stop().await;
}
