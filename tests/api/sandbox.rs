//! The sandbox's QR images, as a browser uses them.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_error, spawn_app};

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
