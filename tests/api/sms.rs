//! Verification codes through the site's SMS webhook.

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::helpers::{assert_error, spawn_app_with};

/// A one-route HTTP server that answers `status` and hands each request body to the test.
async fn webhook(status: u16) -> (String, mpsc::UnboundedReceiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sms", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            let body = loop {
                let n = stream.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break body.to_owned();
                    }
                }
            };
            let _ = tx.send(serde_json::from_str(&body).unwrap());
            let answer =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            stream.write_all(answer.as_bytes()).await.unwrap();
        }
    });
    (url, rx)
}

#[tokio::test]
async fn codes_are_posted_to_the_webhook() {
    let (url, mut received) = webhook(200).await;
    let app = spawn_app_with(&[("WXLOGIN_SMS_WEBHOOK", &url)]).await;
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, "oWebhook", true).await;
    assert_eq!(
        app.request_code(&qr.scene_id, "+8613800000040")
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let message = received.recv().await.unwrap();
    assert_eq!(message["phone"], "13800000040");
    let code = message["code"].as_str().unwrap();
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "{message}"
    );
    assert_eq!(
        app.bind(&qr.scene_id, "13800000040", code).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_failing_webhook_is_503() {
    let (url, _received) = webhook(500).await;
    let app = spawn_app_with(&[("WXLOGIN_SMS_WEBHOOK", &url)]).await;
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, "oNoSms", true).await;
    assert_error(
        app.request_code(&qr.scene_id, "13800000041").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "sms_unavailable",
    )
    .await;
}
