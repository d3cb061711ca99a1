//! Safe mode (安全模式): AES-encrypted pushes and replies, and what the callback refuses.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::StatusCode;
use wxlogin::wechat::crypto::MessageCrypto;
use wxlogin::wechat::message::Message;

use crate::helpers::{
    assert_error, event_xml, fresh_nonce, signed_query, spawn_app_with, text_xml, unix_now,
    wechat_signature, TestApp, SANDBOX_TOKEN,
};

const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
/// The sandbox account's AppID, which safe-mode messages carry.
const SANDBOX_APPID: &str = "wxsandbox0000000";

async fn safe_mode_app() -> TestApp {
    spawn_app_with(&[("WXLOGIN_AES_KEY", AES_KEY)]).await
}

/// POSTs `xml` encrypted for `appid`, signed over `encrypt` as `timestamp` says.
async fn post_encrypted(
    app: &TestApp,
    appid: &str,
    xml: &str,
    timestamp: u64,
    tamper: bool,
) -> reqwest::Response {
    let mut encrypt = MessageCrypto::new(AES_KEY, appid)
        .unwrap()
        .encrypt(xml.as_bytes());
    if tamper {
        let mut raw = STANDARD.decode(&encrypt).unwrap();
        raw[20] ^= 1;
        encrypt = STANDARD.encode(raw);
    }
    let (timestamp, nonce) = (timestamp.to_string(), fresh_nonce());
    let msg_signature = wechat_signature(&[SANDBOX_TOKEN, &timestamp, &nonce, &encrypt]);
    let query = format!(
        "signature={}&timestamp={timestamp}&nonce={nonce}&encrypt_type=aes&msg_signature={msg_signature}",
        wechat_signature(&[SANDBOX_TOKEN, &timestamp, &nonce])
    );
    let body = format!("<xml><ToUserName><![CDATA[gh_sandbox]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>");
    app.post_callback(&query, body).await
}

#[tokio::test]
async fn encrypted_subscribe_and_scan_drive_a_full_login() {
    let app = safe_mode_app().await;
    // The simulator now encrypts every push and decrypts (and verifies) every reply.
    let qr = app.create_qr().await;
    let delivery = app.scan(&qr.ticket, "oSafe", true).await;
    assert!(
        delivery["reply"].as_str().unwrap().contains("手机号"),
        "{delivery}"
    );
    app.request_code(&qr.scene_id, "13800000050").await;
    let code = app.sms_code("13800000050").await;
    assert_eq!(
        app.bind(&qr.scene_id, "13800000050", &code).await.status(),
        StatusCode::OK
    );

    let qr = app.create_qr().await;
    let delivery = app.scan(&qr.ticket, "oSafe", false).await;
    assert!(
        delivery["reply"].as_str().unwrap().contains("登录成功"),
        "{delivery}"
    );
    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "logged_in");
}

/// Checks the reply's MsgSignature and decrypts it.
async fn decrypt_reply(response: reqwest::Response) -> Message {
    assert_eq!(response.status(), StatusCode::OK);
    let envelope = Message::parse(&response.bytes().await.unwrap()).unwrap();
    let signed = [
        SANDBOX_TOKEN,
        &envelope.timestamp,
        &envelope.nonce,
        &envelope.encrypt,
    ];
    assert_eq!(envelope.msg_signature, wechat_signature(&signed));
    let inner = MessageCrypto::new(AES_KEY, SANDBOX_APPID)
        .unwrap()
        .decrypt(&envelope.encrypt)
        .unwrap();
    Message::parse(&inner).unwrap()
}

#[tokio::test]
async fn the_encrypted_reply_decrypts_and_its_signature_verifies() {
    let app = safe_mode_app().await;
    let qr = app.create_qr().await;
    let event = event_xml("oReader", unix_now(), "SCAN", &qr.event_key());
    let response = post_encrypted(&app, SANDBOX_APPID, &event, unix_now(), false).await;
    let reply = decrypt_reply(response).await;
    assert_eq!(reply.to_user, "oReader");
    assert!(reply.content.contains("手机号"), "{}", reply.content);
}

#[tokio::test]
async fn bad_encrypted_pushes_are_refused() {
    let app = safe_mode_app().await;
    let qr = app.create_qr().await;
    let event = event_xml("oMallory", unix_now(), "SCAN", &qr.event_key());

    let tampered = post_encrypted(&app, SANDBOX_APPID, &event, unix_now(), true).await;
    assert_error(tampered, StatusCode::BAD_REQUEST, "invalid_message").await;
    let other_account = post_encrypted(&app, "wxSomeoneElse000", &event, unix_now(), false).await;
    assert_error(other_account, StatusCode::BAD_REQUEST, "invalid_message").await;
    let stale = post_encrypted(&app, SANDBOX_APPID, &event, unix_now() - 3600, false).await;
    assert_error(stale, StatusCode::FORBIDDEN, "stale_timestamp").await;

    let encrypt = MessageCrypto::new(AES_KEY, SANDBOX_APPID)
        .unwrap()
        .encrypt(event.as_bytes());
    let query = format!(
        "{}&encrypt_type=aes&msg_signature={}",
        signed_query(SANDBOX_TOKEN),
        "0".repeat(40)
    );
    let body = format!("<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>");
    assert_error(
        app.post_callback(&query, body).await,
        StatusCode::FORBIDDEN,
        "invalid_signature",
    )
    .await;

    // None of it touched the scene.
    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "waiting");
}

/// The plain `signature` covers no part of the body: with a key set, a query string copied
/// from an access log must not carry a body of the attacker's choosing in plaintext.
#[tokio::test]
async fn plaintext_pushes_are_refused_in_safe_mode() {
    let app = safe_mode_app().await;
    let qr = app.create_qr().await;
    let event = event_xml("oVictim", unix_now(), "SCAN", &qr.event_key());
    let plain = app
        .post_callback(&signed_query(SANDBOX_TOKEN), event.clone())
        .await;
    assert_error(plain, StatusCode::FORBIDDEN, "encryption_required").await;
    // Saying `aes` without a `msg_signature` does not help either.
    let query = format!("{}&encrypt_type=aes", signed_query(SANDBOX_TOKEN));
    let unsigned = app.post_callback(&query, event.clone()).await;
    assert_error(unsigned, StatusCode::FORBIDDEN, "invalid_signature").await;
    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "waiting");
    app.assert_metric(
        "wxlogin_callback_events_total{type=\"invalid\",outcome=\"encryption_required\"}",
        1,
    )
    .await;

    // The same event encrypted under a msg_signature is served, and WeChat's server check,
    // which official accounts send with the plain signature in every mode, still answers.
    let encrypted = post_encrypted(&app, SANDBOX_APPID, &event, unix_now(), false).await;
    assert!(decrypt_reply(encrypted).await.content.contains("手机号"));
    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "need_bind");
    let echo = app
        .get_owned(format!(
            "/wechat?{}&echostr=hello",
            signed_query(SANDBOX_TOKEN)
        ))
        .await;
    assert_eq!(echo.text().await.unwrap(), "hello");
}

#[tokio::test]
async fn encrypted_echostr_is_decrypted_for_server_verification() {
    let app = safe_mode_app().await;
    let echostr = MessageCrypto::new(AES_KEY, SANDBOX_APPID)
        .unwrap()
        .encrypt(b"4815162342");
    let (timestamp, nonce) = (unix_now().to_string(), "7");
    let msg_signature = wechat_signature(&[SANDBOX_TOKEN, &timestamp, nonce, &echostr]);
    let url = reqwest::Url::parse_with_params(
        &app.url("/wechat"),
        [
            ("timestamp", timestamp.as_str()),
            ("nonce", nonce),
            ("msg_signature", &msg_signature),
            ("echostr", &echostr),
        ],
    )
    .unwrap();
    let response = app.client.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "4815162342");
}

#[tokio::test]
async fn an_encrypted_push_without_safe_mode_is_refused() {
    let app = spawn_app_with(&[]).await;
    let event = event_xml("oConfused", unix_now(), "SCAN", "x");
    let response = post_encrypted(&app, SANDBOX_APPID, &event, unix_now(), false).await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_message").await;
}

#[tokio::test]
async fn a_login_code_and_a_confirmation_number_travel_encrypted() {
    let app = spawn_app_with(&[
        ("WXLOGIN_AES_KEY", AES_KEY),
        ("WXLOGIN_LOGIN_MODE", "code"),
        ("WXLOGIN_CONFIRM", "number"),
    ])
    .await;
    let (scene_id, code) = app.create_code_login().await;
    let sent = text_xml("oSecret", unix_now(), &code, 1);
    let asked = post_encrypted(&app, SANDBOX_APPID, &sent, unix_now(), false).await;
    let asked = decrypt_reply(asked).await;
    assert!(asked.content.contains("两位数字"), "{}", asked.content);
    let (_, status) = app.status(&scene_id, 0).await;
    assert_eq!(status["state"], "confirm", "{status}");

    let number = status["confirm_number"].as_u64().unwrap().to_string();
    let answer = text_xml("oSecret", unix_now(), &number, 2);
    let confirmed = post_encrypted(&app, SANDBOX_APPID, &answer, unix_now(), false).await;
    let confirmed = decrypt_reply(confirmed).await;
    assert!(
        confirmed.content.contains("手机号"),
        "{}",
        confirmed.content
    );
    let (_, status) = app.status(&scene_id, 0).await;
    assert_eq!(status["state"], "need_bind");
}

#[tokio::test]
async fn code_mode_alone_and_confirmation_alone_work_under_safe_mode() {
    let code_app =
        spawn_app_with(&[("WXLOGIN_AES_KEY", AES_KEY), ("WXLOGIN_LOGIN_MODE", "code")]).await;
    let (scene_id, code) = code_app.create_code_login().await;
    let sent = code_app.text("oSafeCoder", &code).await;
    assert!(sent["reply"].as_str().unwrap().contains("手机号"), "{sent}");
    let (_, status) = code_app.status(&scene_id, 0).await;
    assert_eq!(status["state"], "need_bind");

    let confirm_app =
        spawn_app_with(&[("WXLOGIN_AES_KEY", AES_KEY), ("WXLOGIN_CONFIRM", "number")]).await;
    let qr = confirm_app.create_qr().await;
    let asked = confirm_app.scan(&qr.ticket, "oSafeScanner", true).await;
    assert!(
        asked["reply"].as_str().unwrap().contains("两位数字"),
        "{asked}"
    );
    let (_, status) = confirm_app.status(&qr.scene_id, 0).await;
    let number = status["confirm_number"].as_u64().unwrap().to_string();
    let confirmed = confirm_app.text("oSafeScanner", &number).await;
    assert!(
        confirmed["reply"].as_str().unwrap().contains("手机号"),
        "{confirmed}"
    );
    let (_, status) = confirm_app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "need_bind");
}
