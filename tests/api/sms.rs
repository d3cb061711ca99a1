//! Verification codes through the site's SMS webhook.

use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::mpsc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::helpers::{answering_server, assert_error, fake_server, spawn_app_with, unix_now};

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

const WEBHOOK_SECRET: &str = "a-webhook-secret-0123456789";

/// The receiver's check, as README tells it: HMAC-SHA256 of "<t>.<body>" under the secret.
fn signed_by_wxlogin(header: &str, body: &str) -> Option<u64> {
    let (t, v1) = header.strip_prefix("t=")?.split_once(",v1=")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    mac.verify_slice(&hex::decode(v1).ok()?).ok()?;
    t.parse().ok()
}

#[tokio::test]
async fn webhook_requests_are_signed_with_the_secret() {
    let (base, mut received) = answering_server(|_| (200, String::new())).await;
    let url = format!("{base}/sms");
    let app = spawn_app_with(&[
        ("WXLOGIN_SMS_WEBHOOK", &url),
        ("WXLOGIN_SMS_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ])
    .await;
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, "oSigned", true).await;
    let response = app.request_code(&qr.scene_id, "13800000042").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let request = received.recv().await.unwrap();
    let header = request.header("x-wxlogin-signature").expect("signed");
    let t = signed_by_wxlogin(header, &request.body).expect("a valid signature");
    // The time is now (a receiver refuses old ones: replays), and a changed body fails.
    assert!(t.abs_diff(unix_now()) < 300, "{t}");
    let forged = request.body.replace("13800000042", "13900000000");
    assert!(signed_by_wxlogin(header, &forged).is_none());
    assert!(!app.log().contains(WEBHOOK_SECRET));
}

/// A relay answering with a redirect would have the phone, the code and the signature resent
/// wherever it points: wxlogin follows none, and the code counts as not sent.
#[tokio::test]
async fn a_redirecting_webhook_is_not_followed() {
    let (base, mut received) = answering_server(|_| (307, String::new())).await;
    let app = spawn_app_with(&[
        ("WXLOGIN_SMS_WEBHOOK", &format!("{base}/sms")),
        ("WXLOGIN_SMS_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ])
    .await;
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, "oRedirected", true).await;
    let response = app.request_code(&qr.scene_id, "13800000044").await;
    assert_error(response, StatusCode::SERVICE_UNAVAILABLE, "sms_unavailable").await;
    assert_eq!(received.recv().await.unwrap().target, "/sms");
    // The answer came after any redirect would have been followed: nothing reached /moved.
    assert!(received.try_recv().is_err(), "the redirect was followed");
}

#[tokio::test]
async fn without_a_secret_the_webhook_is_unsigned_and_the_start_says_so() {
    let (base, mut received) = answering_server(|_| (200, String::new())).await;
    let app = spawn_app_with(&[("WXLOGIN_SMS_WEBHOOK", &format!("{base}/sms"))]).await;
    app.wait_for_log("WXLOGIN_SMS_WEBHOOK_SECRET is unset")
        .await;
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, "oUnsigned", true).await;
    app.request_code(&qr.scene_id, "13800000043").await;
    assert!(received
        .recv()
        .await
        .unwrap()
        .header("x-wxlogin-signature")
        .is_none());
}
