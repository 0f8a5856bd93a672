//! The HTTP client the browser harness speaks WebDriver with.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

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
