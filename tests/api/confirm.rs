//! Confirmation (`WXLOGIN_CONFIRM=number`): a scan logs nothing in until the scanner replies
//! with the number the requesting browser shows, so a relayed QR code can't log a phisher in.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{spawn_app_with, TestApp};

const FIREFOX_ON_LINUX: &str =
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
const PHONE: &str = "13800000041";

async fn confirm_app(extra: &[(&str, &str)]) -> TestApp {
    let env = [
        &[
            ("WXLOGIN_CONFIRM", "number"),
            ("WXLOGIN_SITE_NAME", "Example Shop"),
        ][..],
        extra,
    ]
    .concat();
    spawn_app_with(&env).await
}

/// `POST /api/qrcode` from Firefox on Linux: the answer.
async fn create_from_firefox(app: &TestApp) -> Value {
    let response = app
        .client
        .post(app.url("/api/qrcode"))
        .header("User-Agent", FIREFOX_ON_LINUX)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// A QR code asked for by Firefox on Linux: its scene id and ticket.
async fn qr_from_firefox(app: &TestApp) -> (String, String) {
    let body = create_from_firefox(app).await;
    (
        body["scene_id"].as_str().unwrap().to_owned(),
        body["ticket"].as_str().unwrap().to_owned(),
    )
}

/// Scans and checks the confirmation request; returns the number the browser shows.
async fn scan_and_read_number(app: &TestApp, scene_id: &str, ticket: &str, openid: &str) -> u64 {
    let scanned = app.scan(ticket, openid, false).await;
    assert_confirmation_request(&scanned);
    let (_, status) = app.status(scene_id, 0).await;
    assert_eq!(status["state"], "confirm", "{status}");
    assert!(status.get("token").is_none(), "{status}");
    let number = status["confirm_number"].as_u64().unwrap();
    assert!((10..=99).contains(&number), "{status}");
    number
}

/// The reply names the site, the requesting browser's IP and device and the time, asks for
/// the number, and does not give it away.
fn assert_confirmation_request(delivery: &Value) {
    let reply = delivery["reply"].as_str().unwrap();
    for part in [
        "Example Shop",
        "127.0.0.1",
        "Firefox on Linux",
        "北京时间",
        "两位数字",
        "回复 0",
    ] {
        assert!(reply.contains(part), "{part:?} missing from {reply}");
    }
}

async fn bind_phone(app: &TestApp, openid: &str) {
    let (scene_id, ticket) = qr_from_firefox(app).await;
    let number = scan_and_read_number(app, &scene_id, &ticket, openid).await;
    let confirmed = app.text(openid, &number.to_string()).await;
    assert!(
        confirmed["reply"].as_str().unwrap().contains("手机号"),
        "{confirmed}"
    );
    let (_, status) = app.status(&scene_id, 0).await;
    assert_eq!(status["state"], "need_bind");
    assert_eq!(
        app.request_code(&scene_id, PHONE).await.status(),
        StatusCode::ACCEPTED
    );
    let code = app.sms_code(PHONE).await;
    assert_eq!(
        app.bind(&scene_id, PHONE, &code).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_right_number_logs_a_bound_user_in() {
    let app = confirm_app(&[]).await;
    bind_phone(&app, "oConfirmer").await;
    let (scene_id, ticket) = qr_from_firefox(&app).await;
    // The browser's long-poll wakes when the scene starts waiting for confirmation.
    let waiting = {
        let app_url = app.url(&format!("/api/qrcode/{scene_id}/status?wait=10"));
        let client = app.client.clone();
        tokio::spawn(async move {
            client
                .get(app_url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let number = scan_and_read_number(&app, &scene_id, &ticket, "oConfirmer").await;
    assert_eq!(waiting.await.unwrap()["state"], "confirm");

    let confirmed = app.text("oConfirmer", &format!(" {number} ")).await;
    assert!(
        confirmed["reply"].as_str().unwrap().contains("登录成功"),
        "{confirmed}"
    );
    let (_, status) = app.status(&scene_id, 0).await;
    assert_eq!(status["state"], "logged_in", "{status}");
    assert!(status.get("confirm_number").is_none());
    let token = status["token"].as_str().unwrap();
    assert_eq!(app.me(token).await.status(), StatusCode::OK);
    app.assert_metric("wxlogin_confirmations_total{result=\"accepted\"}", 2)
        .await;
}

#[tokio::test]
async fn a_wrong_number_or_zero_denies_for_good() {
    let app = confirm_app(&[]).await;
    bind_phone(&app, "oVictim").await;
    for refusal in ["0", "wrong"] {
        let (scene_id, ticket) = qr_from_firefox(&app).await;
        let number = scan_and_read_number(&app, &scene_id, &ticket, "oVictim").await;
        let answer = if refusal == "0" {
            "0".to_owned()
        } else {
            (if number == 99 { 10 } else { number + 1 }).to_string()
        };
        let denied = app.text("oVictim", &answer).await;
        assert!(
            denied["reply"].as_str().unwrap().contains("已拒绝"),
            "{denied}"
        );
        let (_, status) = app.status(&scene_id, 0).await;
        assert_eq!(status["state"], "denied", "{status}");
        assert!(status.get("token").is_none());
        // Terminal: the right number afterwards, or another scan, changes nothing.
        app.text("oVictim", &number.to_string()).await;
        let rescanned = app.scan(&ticket, "oSomeoneElse", false).await;
        assert!(
            rescanned["reply"].as_str().unwrap().contains("过期"),
            "{rescanned}"
        );
        let (_, status) = app.status(&scene_id, 0).await;
        assert_eq!(status["state"], "denied");
    }
    app.assert_metric("wxlogin_confirmations_total{result=\"denied\"}", 2)
        .await;
}

#[tokio::test]
async fn another_users_reply_changes_nothing() {
    let app = confirm_app(&[]).await;
    let (scene_id, ticket) = qr_from_firefox(&app).await;
    let number = scan_and_read_number(&app, &scene_id, &ticket, "oScanner").await;
    for text in [number.to_string(), "0".into()] {
        let reply = app.text("oBystander", &text).await;
        assert_eq!(reply["reply"], Value::Null, "{reply}");
    }
    // A second scan of the same QR code is told it was used.
    let second = app.scan(&ticket, "oBystander", false).await;
    assert!(
        second["reply"].as_str().unwrap().contains("已经被扫过"),
        "{second}"
    );
    let (_, status) = app.status(&scene_id, 0).await;
    assert_eq!(status["state"], "confirm");
    assert_eq!(status["confirm_number"], number);
    app.text("oScanner", &number.to_string()).await;
    let (_, status) = app.status(&scene_id, 0).await;
    assert_eq!(status["state"], "need_bind");
}

#[tokio::test]
async fn code_mode_and_confirmation_work_together_under_safe_mode() {
    let key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    let app = confirm_app(&[("WXLOGIN_LOGIN_MODE", "code"), ("WXLOGIN_AES_KEY", key)]).await;
    let created = create_from_firefox(&app).await;
    let scene_id = created["scene_id"].as_str().unwrap();
    let code = created["code"].as_str().unwrap();
    let asked = app.text("oSafeUser", code).await;
    assert_confirmation_request(&asked);
    let (_, status) = app.status(scene_id, 0).await;
    assert_eq!(
        (status["state"].as_str(), status["mode"].as_str()),
        (Some("confirm"), Some("code"))
    );
    let number = status["confirm_number"].as_u64().unwrap();
    let confirmed = app.text("oSafeUser", &number.to_string()).await;
    assert!(
        confirmed["reply"].as_str().unwrap().contains("手机号"),
        "{confirmed}"
    );
    let (_, status) = app.status(scene_id, 0).await;
    assert_eq!(status["state"], "need_bind");
}
