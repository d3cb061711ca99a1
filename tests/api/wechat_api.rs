//! The service against WeChat's API: token caching and refresh, outages.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_error, spawn_app, spawn_app_with};

#[tokio::test]
async fn one_token_fetch_serves_many_qr_codes() {
    let app = spawn_app().await;
    // Ten browsers at once, on a server that has no token yet.
    let mut creations = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let request = app.client.post(app.url("/api/qrcode"));
        creations.spawn(async move { request.send().await.unwrap().status() });
    }
    while let Some(status) = creations.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    app.create_qr().await;
    let stats = app.sandbox_stats().await;
    assert_eq!(stats["token_fetches"], 1, "{stats}");
    assert_eq!(stats["qrcodes_created"], 11, "{stats}");
}

#[tokio::test]
async fn a_revoked_token_is_refreshed_once_and_the_call_retried() {
    let app = spawn_app().await;
    app.create_qr().await;
    // WeChat invalidates the token (another server fetched a new one): the next call gets 40001.
    app.control(json!({"revoke_token": true})).await;
    app.create_qr().await;
    app.create_qr().await;
    assert_eq!(app.sandbox_stats().await["token_fetches"], 2);
}

#[tokio::test]
async fn wechat_down_is_503_and_the_service_recovers() {
    let app = spawn_app().await;
    app.control(json!({"down": true})).await;
    assert_error(
        app.request_qr().await,
        StatusCode::SERVICE_UNAVAILABLE,
        "wechat_unavailable",
    )
    .await;
    app.control(json!({"down": false})).await;
    app.create_qr().await;
}

#[tokio::test]
async fn an_unreachable_wechat_is_503() {
    // Real mode, pointed at a port nothing listens on.
    let app = spawn_app_with(&[
        ("WXLOGIN_APPID", "wx0000000000000000"),
        ("WXLOGIN_APPSECRET", "secret"),
        ("WXLOGIN_TOKEN", "token"),
        ("WXLOGIN_WECHAT_API", "http://127.0.0.1:9"),
    ])
    .await;
    assert_error(
        app.request_qr().await,
        StatusCode::SERVICE_UNAVAILABLE,
        "wechat_unavailable",
    )
    .await;
    // Real mode has no simulator.
    assert_eq!(
        app.get("/sandbox/stats").await.status(),
        StatusCode::NOT_FOUND
    );
}
