//! Verification codes through the site's SMS webhook.

use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::helpers::{assert_error, fake_server, spawn_app_with};

/// The site's SMS webhook, answering `status`; each request body comes out of the receiver.
async fn webhook(status: u16) -> (String, mpsc::UnboundedReceiver<String>) {
    let (base, received) = fake_server(status, "").await;
    (format!("{base}/sms"), received)
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
    let message: Value = serde_json::from_str(&received.recv().await.unwrap()).unwrap();
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
