//! Code mode: the page shows a six-digit code, the user follows the account and sends it.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{fake_server, other_code, run_to_exit, spawn_app_with, TestApp};

const CODE_MODE: (&str, &str) = ("WXLOGIN_LOGIN_MODE", "code");
const PHONE: &str = "13800000031";

async fn code_app(extra: &[(&str, &str)]) -> TestApp {
    let env = [&[CODE_MODE][..], extra].concat();
    spawn_app_with(&env).await
}

/// The whole first login of a new user in code mode; returns the session token.
async fn sign_up_by_code(app: &TestApp, openid: &str, phone: &str) -> String {
    let (scene_id, code) = app.create_code_login().await;
    let reply = app.text(openid, &format!("  {code}\n")).await;
    assert!(
        reply["reply"].as_str().unwrap().contains("手机号"),
        "{reply}"
    );
    let (_, status) = app.status(&scene_id, 0).await;
    assert_eq!(status["state"], "need_bind", "{status}");
    assert_eq!(status["mode"], "code");
    assert_eq!(
        app.request_code(&scene_id, phone).await.status(),
        StatusCode::ACCEPTED
    );
    let sms = app.sms_code(phone).await;
    let response = app.bind(&scene_id, phone, &sms).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_new_user_follows_sends_the_code_and_binds() {
    let app = code_app(&[]).await;
    let response = app.request_qr().await;
    assert_eq!(response.status(), StatusCode::OK);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["mode"], "code");
    let code = created["code"].as_str().unwrap();
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "{created}"
    );
    assert_eq!(created["qrcode_url"], "/sandbox/account-qrcode");
    assert_eq!(created["expires_in"], 300);
    assert!(created.get("ticket").is_none(), "{created}");
    // Code mode asks nothing of WeChat.
    assert_eq!(app.sandbox_stats().await["api_calls"], 0);
    let image = app.get("/sandbox/account-qrcode").await;
    assert_eq!(image.headers()["content-type"], "image/svg+xml");

    let followed = app.follow("oCodeNewbie").await;
    assert!(
        followed["reply"].as_str().unwrap().contains("6 位登录码"),
        "{followed}"
    );
    let (_, status) = app.status(created["scene_id"].as_str().unwrap(), 0).await;
    assert_eq!(
        (status["state"].as_str(), status["mode"].as_str()),
        (Some("waiting"), Some("code"))
    );

    let token = sign_up_by_code(&app, "oCodeNewbie", PHONE).await;
    let me: Value = app.me(&token).await.json().await.unwrap();
    assert_eq!(me["openid"], "oCodeNewbie");
    assert_eq!(me["phone"], PHONE);
    app.assert_metric("wxlogin_logins_total{path=\"bind\",mode=\"code\"}", 1)
        .await;
}

#[tokio::test]
async fn a_returning_user_logs_in_with_a_code_and_the_code_then_does_nothing() {
    let app = code_app(&[]).await;
    sign_up_by_code(&app, "oCodeRegular", PHONE).await;

    let (scene_id, code) = app.create_code_login().await;
    let reply = app.text("oCodeRegular", &code).await;
    assert!(
        reply["reply"].as_str().unwrap().contains("登录成功"),
        "{reply}"
    );
    let (_, status) = app.status(&scene_id, 0).await;
    assert_eq!(status["state"], "logged_in", "{status}");
    assert_eq!(status["mode"], "code");
    let token = status["token"].as_str().unwrap().to_owned();
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);

    // The code is dead: neither its sender nor anyone else can use it again.
    for openid in ["oCodeRegular", "oCodeSomeoneElse"] {
        let again = app.text(openid, &code).await;
        assert!(
            again["reply"].as_str().unwrap().contains("已经用过"),
            "{again}"
        );
    }
    let (_, after) = app.status(&scene_id, 0).await;
    assert_eq!(after["state"], "logged_in");
    assert_eq!(after["token"].as_str(), Some(token.as_str()));
    app.assert_metric("wxlogin_logins_total{path=\"scan\",mode=\"code\"}", 1)
        .await;
    app.assert_metric("wxlogin_login_codes_rejected_total", 2)
        .await;
}

#[tokio::test]
async fn live_codes_are_unique_and_other_texts_get_the_how_to() {
    let app = code_app(&[]).await;
    let mut codes = std::collections::HashSet::new();
    for _ in 0..20 {
        let (_, code) = app.create_code_login().await;
        assert!(codes.insert(code), "a code was handed out twice");
    }
    for text in ["hello", "登录", "12345", "1234567"] {
        let reply = app.text("oCodeChatty", text).await;
        assert!(
            reply["reply"].as_str().unwrap().contains("6 位登录码"),
            "{text}: {reply}"
        );
    }
}

#[tokio::test]
async fn five_wrong_codes_silence_an_openid_for_the_window() {
    let app = code_app(&[("WXLOGIN_CODE_GUESS_WINDOW_SECS", "3")]).await;
    let (scene_id, code) = app.create_code_login().await;
    for attempt in 1..=5 {
        let reply = app.text("oGuesser", &other_code(&code, attempt)).await;
        let text = reply["reply"].as_str().unwrap();
        if attempt < 5 {
            assert!(text.contains("不正确"), "attempt {attempt}: {reply}");
        } else {
            assert!(text.contains("不会被处理"), "attempt {attempt}: {reply}");
        }
    }
    // Even the right code is refused until the window passes.
    let refused = app.text("oGuesser", &code).await;
    assert!(
        refused["reply"].as_str().unwrap().contains("不会被处理"),
        "{refused}"
    );
    let (_, status) = app.status(&scene_id, 0).await;
    assert_eq!(status["state"], "waiting");
    app.assert_metric("wxlogin_login_codes_rejected_total", 5)
        .await;
    app.assert_metric("wxlogin_openids_throttled_total", 1)
        .await;

    tokio::time::sleep(std::time::Duration::from_millis(3_200)).await;
    let accepted = app.text("oGuesser", &code).await;
    assert!(
        accepted["reply"].as_str().unwrap().contains("手机号"),
        "{accepted}"
    );
    let (_, status) = app.status(&scene_id, 0).await;
    assert_eq!(status["state"], "need_bind");
}

#[tokio::test]
async fn codes_that_log_in_are_not_misses() {
    let app = code_app(&[("WXLOGIN_CODE_GUESS_WINDOW_SECS", "600")]).await;
    sign_up_by_code(&app, "oFrequent", "13800000071").await;
    // More logins by code in one window than the misses allowed: each code scanned.
    for login in 1..=7 {
        let (scene_id, code) = app.create_code_login().await;
        let reply = app.text("oFrequent", &code).await;
        let (_, status) = app.status(&scene_id, 0).await;
        assert_eq!(status["state"], "logged_in", "login {login}: {reply}");
    }
    app.assert_metric("wxlogin_login_codes_rejected_total", 0)
        .await;
}

#[tokio::test]
async fn auto_mode_falls_back_to_codes_when_wechat_answers_48001() {
    let app = spawn_app_with(&[("WXLOGIN_LOGIN_MODE", "auto")]).await;
    let before = app.create_qr().await;
    let (_, status) = app.status(&before.scene_id, 0).await;
    assert_eq!(status["mode"], "qrcode");
    app.assert_metric("wxlogin_code_mode_fallback", 0).await;

    app.control(serde_json::json!({"fail_next": [{"errcode": 48001}]}))
        .await;
    let (scene_id, code) = app.create_code_login().await;
    let created_before = app.sandbox_stats().await["qrcodes_created"].clone();
    let (_, later_code) = app.create_code_login().await;
    assert_ne!(code, later_code);
    // Later requests don't ask WeChat again.
    assert_eq!(app.sandbox_stats().await["qrcodes_created"], created_before);
    // Logged (once: the warning is written where the gauge is raised, and it is 1).
    app.wait_for_log("errcode 48001").await;
    app.assert_metric("wxlogin_code_mode_fallback", 1).await;

    app.text("oAutoUser", &code).await;
    let (_, status) = app.status(&scene_id, 0).await;
    assert_eq!(
        (status["state"].as_str(), status["mode"].as_str()),
        (Some("need_bind"), Some("code"))
    );
    // The QR code made before the fallback still works.
    app.scan(&before.ticket, "oAutoEarly", false).await;
    let (_, status) = app.status(&before.scene_id, 0).await;
    assert_eq!(status["state"], "need_bind");
}

#[tokio::test]
async fn plain_qrcode_mode_ignores_codes_and_the_other_modes_need_the_account_qr_code() {
    let app = spawn_app_with(&[]).await;
    let qr = app.create_qr().await;
    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["mode"], "qrcode");
    let reply = app.text("oQrUser", "123456").await;
    assert_eq!(reply["reply"], Value::Null, "{reply}");
    assert_eq!(app.follow("oQrUser").await["reply"], Value::Null);

    let real = [
        ("WXLOGIN_APPID", "wx1234567890"),
        ("WXLOGIN_APPSECRET", "secret"),
        ("WXLOGIN_TOKEN", "token"),
    ];
    for mode in ["code", "auto"] {
        let env = [&real[..], &[("WXLOGIN_LOGIN_MODE", mode)]].concat();
        let (status, stderr) = run_to_exit(&env);
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("WXLOGIN_ACCOUNT_QR_URL"), "{stderr}");
    }
}

#[tokio::test]
async fn a_real_account_in_code_mode_shows_its_own_qr_code_and_never_calls_wechat() {
    let (wechat, mut calls) = fake_server(200, r#"{"errcode":0}"#).await;
    let account_qr = "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=ACCOUNT";
    let app = code_app(&[
        ("WXLOGIN_APPID", "wx1234567890"),
        ("WXLOGIN_APPSECRET", "secret"),
        ("WXLOGIN_TOKEN", "token"),
        ("WXLOGIN_WECHAT_API", &wechat),
        ("WXLOGIN_ACCOUNT_QR_URL", account_qr),
    ])
    .await;
    let body: Value = app.request_qr().await.json().await.unwrap();
    assert_eq!(body["mode"], "code");
    assert_eq!(body["qrcode_url"], account_qr);
    assert!(calls.try_recv().is_err(), "code mode called WeChat");
}
