//! Limits that keep one client from spending the account's WeChat quota and SMS budget.

use reqwest::StatusCode;

use crate::helpers::{assert_error, spawn_app_with, TestApp};

async fn qr_from(app: &TestApp, forwarded_for: &str) -> reqwest::Response {
    let request = app
        .client
        .post(app.url("/api/qrcode"))
        .header("X-Forwarded-For", forwarded_for);
    request.send().await.unwrap()
}

#[tokio::test]
async fn qr_codes_are_limited_per_client_ip() {
    let app = spawn_app_with(&[
        ("WXLOGIN_QR_PER_IP_PER_MIN", "3"),
        ("WXLOGIN_TRUST_PROXY", "1"),
    ])
    .await;
    for _ in 0..3 {
        assert_eq!(qr_from(&app, "198.51.100.1").await.status(), StatusCode::OK);
    }
    let refused = qr_from(&app, "198.51.100.1").await;
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_error(refused, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    assert_eq!(qr_from(&app, "198.51.100.2").await.status(), StatusCode::OK);
    assert_eq!(
        app.sandbox_stats().await["qrcodes_created"],
        4,
        "the refused one cost no quota"
    );
}

#[tokio::test]
async fn live_scenes_are_capped() {
    let app = spawn_app_with(&[("WXLOGIN_MAX_SCENES", "2"), ("WXLOGIN_SCENE_TTL_SECS", "1")]).await;
    let first = app.create_qr().await;
    app.create_qr().await;
    assert_error(
        app.request_qr().await,
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
    )
    .await;
    // Once they expire there is room again.
    let (_, status) = app.status(&first.scene_id, 5).await;
    assert_eq!(status["state"], "expired");
    let mut answered = Vec::new();
    for _ in 0..50 {
        let status = app.request_qr().await.status();
        answered.push(status);
        if status == StatusCode::OK {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no room after the scenes expired: {answered:?}");
}

#[tokio::test]
async fn zero_disables_a_limit() {
    let app = spawn_app_with(&[("WXLOGIN_QR_PER_IP_PER_MIN", "0")]).await;
    for _ in 0..35 {
        app.create_qr().await;
    }
}

/// A scene scanned by a new user, ready for codes.
async fn need_bind(app: &TestApp, openid: &str) -> String {
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, openid, true).await;
    qr.scene_id
}

#[tokio::test]
async fn codes_are_limited_per_phone() {
    let app = spawn_app_with(&[("WXLOGIN_SMS_PER_PHONE_PER_HOUR", "2")]).await;
    for openid in ["oA", "oB"] {
        let scene = need_bind(&app, openid).await;
        assert_eq!(
            app.request_code(&scene, "13800000070").await.status(),
            StatusCode::ACCEPTED
        );
    }
    let scene = need_bind(&app, "oC").await;
    assert_error(
        app.request_code(&scene, "13800000070").await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
    )
    .await;
    assert_eq!(
        app.request_code(&scene, "13800000071").await.status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn a_refused_resend_costs_no_token() {
    let app = spawn_app_with(&[("WXLOGIN_SMS_PER_PHONE_PER_HOUR", "2")]).await;
    let scene = need_bind(&app, "oHasty").await;
    assert_eq!(
        app.request_code(&scene, "13800000074").await.status(),
        StatusCode::ACCEPTED
    );
    // Inside the scene's cooldown: refused, and no SMS goes out.
    assert_error(
        app.request_code(&scene, "13800000074").await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
    )
    .await;
    // So the phone still has its second code of the hour.
    let other = need_bind(&app, "oPatient").await;
    assert_eq!(
        app.request_code(&other, "13800000074").await.status(),
        StatusCode::ACCEPTED
    );
    let third = need_bind(&app, "oLate").await;
    assert_error(
        app.request_code(&third, "13800000074").await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
    )
    .await;
}

#[tokio::test]
async fn codes_are_limited_per_client_ip() {
    let app = spawn_app_with(&[("WXLOGIN_SMS_PER_IP_PER_HOUR", "2")]).await;
    for (openid, phone) in [("oD", "13800000072"), ("oE", "13800000073")] {
        let scene = need_bind(&app, openid).await;
        assert_eq!(
            app.request_code(&scene, phone).await.status(),
            StatusCode::ACCEPTED
        );
    }
    let scene = need_bind(&app, "oF").await;
    assert_error(
        app.request_code(&scene, "13800000074").await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
    )
    .await;
}
