//! The sandbox's QR images and simulated phone, as a browser uses them.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_error, spawn_app, spawn_app_with};

#[tokio::test]
async fn sandbox_qr_images_are_served_by_the_service() {
    let app = spawn_app().await;
    let qr: Value = app.request_qr().await.json().await.unwrap();
    let image_url = qr["qrcode_url"].as_str().unwrap();
    let ticket: String =
        url::form_urlencoded::byte_serialize(qr["ticket"].as_str().unwrap().as_bytes()).collect();
    assert_eq!(image_url, format!("/sandbox/showqrcode?ticket={ticket}"));

    let response = app.get(image_url).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/svg+xml");
    assert!(response.text().await.unwrap().contains("<svg"));

    assert_error(
        app.get("/sandbox/showqrcode?ticket=unknown").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn the_simulated_phone_page_is_served() {
    let app = spawn_app().await;
    let response = app.get("/sandbox/phone?ticket=anything").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("<script src=\"/sandbox/phone.js\""));
    assert_eq!(app.get("/sandbox/phone.js").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_simulated_phone_lists_the_codes_sent_newest_first() {
    let app = spawn_app().await;
    assert_eq!(
        app.get("/sandbox/sms").await.json::<Value>().await.unwrap(),
        serde_json::json!([])
    );
    for (openid, phone) in [("oFirstSms", "13800000050"), ("oSecondSms", "13800000051")] {
        let qr = app.create_qr().await;
        app.scan(&qr.ticket, openid, true).await;
        app.request_code(&qr.scene_id, phone).await;
    }
    let sent: Value = app.get("/sandbox/sms").await.json().await.unwrap();
    let phones: Vec<_> = sent
        .as_array()
        .unwrap()
        .iter()
        .map(|sms| &sms["phone"])
        .collect();
    assert_eq!(phones, ["13800000051", "13800000050"]);
    assert_eq!(sent[0]["code"], app.sms_code("13800000051").await);
}

#[tokio::test]
async fn another_node_s_sms_webhook_delivers_to_the_simulated_phone() {
    let sandbox = spawn_app().await;
    let node = spawn_app_with(&[("WXLOGIN_SMS_WEBHOOK", &sandbox.url("/sandbox/sms"))]).await;
    let qr = node.create_qr().await;
    node.scan(&qr.ticket, "oElsewhere", true).await;
    assert_eq!(
        node.request_code(&qr.scene_id, "13800000052")
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    // The node's own simulated phone got it too; the sandbox's is the one other nodes share.
    assert_eq!(
        sandbox.sms_code("13800000052").await,
        node.sms_code("13800000052").await
    );
    let refused = [
        (
            "12345",
            "123456",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_phone",
        ),
        (
            "13800000053",
            "<b>1</b>",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        ("13800000053", "", StatusCode::BAD_REQUEST, "bad_request"),
    ];
    for (phone, code, status, error) in refused {
        let body = serde_json::json!({"phone": phone, "code": code});
        assert_error(sandbox.post_json("/sandbox/sms", body).await, status, error).await;
    }
    assert_eq!(
        sandbox.get("/sandbox/sms/13800000053").await.status(),
        StatusCode::NOT_FOUND
    );
}
