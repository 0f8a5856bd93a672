//! The browser harness (`tests/support/browser.rs`) against pages served by the test
//! itself: headless Chromium through chromedriver, as the status page's tests use it.
//! Skipped, loudly, where chromium or chromedriver is not installed (`.ci/run` installs
//! both).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::response::Html;
use axum::routing::get;
use axum::Router;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use support::browser::{screenshot_dir, Browser, BrowserError};

const WAIT: Duration = Duration::from_secs(10);

const FIRST: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>drhub browser smoke</title>
<style>body { font: 16px sans-serif; margin: 2em; } #late { color: #070; }</style>
</head><body>
<h1>Browser smoke test</h1>
<p><a id="next" href="/next">to the next page</a></p>
<script>
  // An element that only a running script adds, some time after the load.
  window.addEventListener("load", () => setTimeout(() => {
    const p = document.createElement("p");
    p.id = "late";
    p.textContent = "added by the script";
    console.log("browser smoke: the script ran");
    document.body.appendChild(p);
  }, 300));
</script>
</body></html>"#;

const NEXT: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>drhub browser smoke: next</title></head>
<body><h1 id="done">The second page</h1><p class="note">reached by a click</p></body></html>"#;

/// The two pages on a loopback port, for the test's lifetime.
async fn serve_pages() -> SocketAddr {
    let app = Router::new()
        .route("/", get(|| async { Html(FIRST) }))
        .route("/next", get(|| async { Html(NEXT) }));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind pages");
    let addr = listener.local_addr().expect("pages addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_loads_waits_clicks_and_screenshots() {
    let started = Instant::now();
    let Some(browser) = Browser::start_or_skip().await else {
        return;
    };
    eprintln!("browser started in {:?}", started.elapsed());
    let pages = serve_pages().await;

    browser
        .goto(&format!("http://{pages}/"))
        .await
        .expect("load the first page");
    assert_eq!(browser.title().await.expect("title"), "drhub browser smoke");
    let late = browser
        .wait_for("#late", WAIT)
        .await
        .expect("the script's element appears");
    assert_eq!(
        browser.text(&late).await.expect("its text"),
        "added by the script"
    );
    assert!(
        browser
            .page_source()
            .await
            .expect("page source")
            .contains("<p id=\"late\">added by the script</p>"),
        "the page source is the DOM as the script left it"
    );
    let log = browser.log().await;
    assert!(
        log.contains("browser smoke: the script ran"),
        "the page's console is in Chromium's log:\n{log}"
    );
    let link = browser.find("a#next").await.expect("the link");
    assert_eq!(
        browser.attribute(&link, "href").await.expect("href"),
        Some("/next".to_owned()),
        "the attribute as written, not the property"
    );
    assert_eq!(
        browser
            .attribute(&link, "data-none")
            .await
            .expect("no attr"),
        None
    );
    let count = browser
        .execute(
            "return [arguments[0].tagName, document.querySelectorAll('p').length];",
            vec![link.to_arg()],
        )
        .await
        .expect("a script");
    assert_eq!(count, json!(["A", 2]));
    let screenshot = screenshot_dir().join("browser-smoke.png");
    browser
        .screenshot(&screenshot)
        .await
        .expect("screenshot of the first page");

    browser.click(&link).await.expect("click the link");
    browser
        .wait_for_text("h1", "second page", WAIT)
        .await
        .expect("the next page");
    assert_eq!(
        browser.current_url().await.expect("url"),
        format!("http://{pages}/next")
    );
    let notes = browser.find_all("p.note").await.expect("notes");
    assert_eq!(notes.len(), 1);
    assert_eq!(
        browser.text(&notes[0]).await.expect("note"),
        "reached by a click"
    );
    assert!(browser.find_all("#late").await.expect("none").is_empty());

    // Errors name what was looked for and where.
    match browser.find("#nowhere").await {
        Err(BrowserError::WebDriver { error, .. }) => assert_eq!(error, "no such element"),
        other => panic!("find of a missing element: {other:?}"),
    }
    let timeout = browser
        .wait_for("#nowhere", Duration::from_millis(300))
        .await
        .expect_err("nothing to wait for")
        .to_string();
    assert!(
        timeout.contains("#nowhere")
            && timeout.contains("/next")
            && timeout.contains("drhub browser smoke: next"),
        "{timeout}"
    );
    let timeout = browser
        .wait_for_text("h1", "never", Duration::from_millis(300))
        .await
        .expect_err("text never there")
        .to_string();
    assert!(timeout.contains("The second page"), "{timeout}");

    browser.close().await;
    let png = std::fs::read(&screenshot).expect("the screenshot is written");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is a PNG",
        screenshot.display()
    );
    eprintln!(
        "browser smoke test done in {:?}; screenshot {} ({} bytes)",
        started.elapsed(),
        screenshot.display(),
        png.len()
    );
}

/// `drhub::api::request` (the harness's HTTP client) ends an answer at its
/// Content-Length: chromedriver keeps the connection open despite `Connection: close`.
/// Without a Content-Length it reads until the server closes. No browser needed.
#[tokio::test]
async fn api_request_reads_to_content_length_or_close() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut kept = Vec::new();
        for answer in [
            // chromedriver's style: no space after the colon; the socket stays open.
            "HTTP/1.1 200 OK\r\nContent-Length:22\r\nConnection:close\r\n\r\n{\"value\":{\"ready\":1}}\n",
            // No length: the body ends where the server closes.
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\r\n{\"error\":\"x\"}",
        ] {
            let (mut tcp, _) = listener.accept().await.expect("accept");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                tcp.read_exact(&mut byte).await.expect("request head");
                head.push(byte[0]);
            }
            tcp.write_all(answer.as_bytes()).await.expect("answer");
            if answer.contains("Content-Length") {
                kept.push(tcp);
            }
        }
        // Hold the open one until the test is over.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(kept);
    });
    let within = Duration::from_secs(5);
    let (status, value) = tokio::time::timeout(
        within,
        drhub::api::request(addr, "GET", "/status", None, None),
    )
    .await
    .expect("the answer ends at its Content-Length, not at a close")
    .expect("an answer");
    assert_eq!((status, value), (200, json!({ "value": { "ready": 1 } })));
    let (status, value) =
        tokio::time::timeout(within, drhub::api::request(addr, "GET", "/x", None, None))
            .await
            .expect("the server closes")
            .expect("an answer");
    assert_eq!((status, value), (404, json!({ "error": "x" })));
}
