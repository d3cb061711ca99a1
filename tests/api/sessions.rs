//! Bearer sessions, their persistence, and the login log.

use reqwest::StatusCode;
use serde_json::Value;
use wxlogin_storage::{LoginMethod, OpenId, Store};

use crate::helpers::{assert_error, spawn_app, spawn_app_with};

#[tokio::test]
async fn me_needs_a_valid_bearer_token() {
    let app = spawn_app().await;
    assert_error(
        app.get("/api/me").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_error(
        app.me("made-up-token").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let response = app
        .client
        .get(app.url("/api/me"))
        .header("Authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn logout_kills_the_token() {
    let app = spawn_app().await;
    let token = app.sign_up("oLogout", "13800000030").await;
    let logout = |token: String| {
        app.client
            .post(app.url("/api/logout"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(
        logout(token.clone()).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_error(
        app.me(&token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_error(
        logout(token).await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn sessions_expire() {
    let app = spawn_app_with(&[("WXLOGIN_SESSION_TTL_SECS", "1")]).await;
    let token = app.sign_up("oBrief", "13800000031").await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_error(
        app.me(&token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn bindings_and_sessions_survive_a_kill_and_restart() {
    let mut app = spawn_app().await;
    let token = app.sign_up("oDurable", "13800000032").await;
    app.restart();
    let me: Value = app.me(&token).await.json().await.unwrap();
    assert_eq!(me["phone"], "13800000032");
    // Still bound: a scan logs straight in.
    app.scan_in("oDurable").await;
}

#[tokio::test]
async fn logins_are_logged_with_time_and_client_ip() {
    let mut app = spawn_app_with(&[("WXLOGIN_TRUST_PROXY", "1")]).await;
    app.sign_up("oLogged", "13800000033").await;
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, "oLogged", false).await;
    // Behind a trusted proxy, the address the proxy appended last is the client's.
    let forwarded = app
        .client
        .post(app.url("/api/qrcode"))
        .header("X-Forwarded-For", "198.51.100.7, 203.0.113.9")
        .send()
        .await
        .unwrap();
    let ticket = forwarded.json::<Value>().await.unwrap()["ticket"]
        .as_str()
        .unwrap()
        .to_owned();
    app.scan(&ticket, "oLogged", false).await;
    app.stop();

    let store = Store::open(app.data_dir.path()).unwrap();
    let logins = store
        .logins(&OpenId::parse("oLogged").unwrap(), 10, None)
        .await
        .unwrap()
        .records;
    let seen: Vec<_> = logins
        .iter()
        .map(|l| (l.method, l.client_ip.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (LoginMethod::Scan, "203.0.113.9"),
            (LoginMethod::Scan, "127.0.0.1"),
            (LoginMethod::Bind, "127.0.0.1")
        ]
    );
    assert!(logins.windows(2).all(|w| w[0].at_ms >= w[1].at_ms));
}

#[tokio::test]
async fn without_trust_proxy_forwarded_for_is_ignored() {
    let mut app = spawn_app().await;
    app.sign_up("oDirect", "13800000034").await;
    let response = app
        .client
        .post(app.url("/api/qrcode"))
        .header("X-Forwarded-For", "198.51.100.7")
        .send()
        .await
        .unwrap();
    let ticket = response.json::<Value>().await.unwrap()["ticket"]
        .as_str()
        .unwrap()
        .to_owned();
    app.scan(&ticket, "oDirect", false).await;
    app.stop();
    let store = Store::open(app.data_dir.path()).unwrap();
    let logins = store
        .logins(&OpenId::parse("oDirect").unwrap(), 1, None)
        .await
        .unwrap();
    assert_eq!(logins.records[0].client_ip, "127.0.0.1");
}

#[tokio::test]
async fn error_bodies_are_json_everywhere() {
    let app = spawn_app().await;
    assert_error(
        app.get("/no/such/route").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let response = app
        .client
        .post(app.url("/api/qrcode/x/sms"))
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_json").await;
    let big = serde_json::json!({"phone": "1".repeat(10_000)});
    assert_error(
        app.post_json("/api/qrcode/x/sms", big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
}
