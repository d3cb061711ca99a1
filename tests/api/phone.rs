//! A phone that isn't in WeChat can't scan its own screen: where the account takes login
//! codes, its page may ask for one instead of a QR code.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_error, spawn_app, spawn_app_with};

#[tokio::test]
async fn in_auto_mode_a_page_may_ask_for_a_login_code_and_the_account_takes_it() {
    let app = spawn_app_with(&[("WXLOGIN_LOGIN_MODE", "auto")]).await;
    let page = app.get("/").await.text().await.unwrap();
    assert!(page.contains(" data-codes"), "{page}");
    // QR codes by default...
    assert!(!app.create_qr().await.ticket.is_empty());
    // ...and a login code when asked.
    let response = app
        .client
        .post(app.url("/api/qrcode?mode=code"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let scene: Value = response.json().await.unwrap();
    assert_eq!(scene["mode"], "code", "{scene}");
    let code = scene["code"].as_str().unwrap();
    app.follow("oPhoneOutsideWechat00000001").await;
    let reply = app.text("oPhoneOutsideWechat00000001", code).await;
    assert!(
        reply["reply"].as_str().unwrap().contains("手机号"),
        "{reply}"
    );
    let (_, status) = app.status(scene["scene_id"].as_str().unwrap(), 0).await;
    assert_eq!(status["state"], "need_bind", "{status}");
}

#[tokio::test]
async fn an_account_that_takes_only_qr_codes_offers_no_code() {
    let app = spawn_app().await;
    assert!(!app
        .get("/")
        .await
        .text()
        .await
        .unwrap()
        .contains(" data-codes"));
    let response = app
        .client
        .post(app.url("/api/qrcode?mode=code"))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::BAD_REQUEST, "bad_request").await;
    let response = app
        .client
        .post(app.url("/api/qrcode?mode=sms"))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::BAD_REQUEST, "bad_request").await;
}
