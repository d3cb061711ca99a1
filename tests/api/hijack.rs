//! Attacks on a login in progress through the HTTP API: a scene's session goes only to the
//! browser that created it, a settled scene answers at once, nothing secret is cacheable or
//! logged, and the login page goes back only to an authorization on its own origin.

use std::time::Duration;

use reqwest::header;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, spawn_app_with, TestApp};

/// Another browser (no cookie of the scene's) or API client (no secret).
fn stranger() -> reqwest::Client {
    reqwest::Client::new()
}

/// A scene made by an API client without cookies: its id and secret.
async fn api_client_scene(app: &TestApp) -> (String, String, String) {
    let response = stranger()
        .post(app.url("/api/qrcode"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let set_cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
    for attribute in [
        "wxlogin_browser=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/api/qrcode",
    ] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let body: Value = response.json().await.unwrap();
    (
        body["scene_id"].as_str().unwrap().to_owned(),
        body["scene_secret"].as_str().unwrap().to_owned(),
        body["ticket"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn knowing_a_scene_id_is_not_enough_to_take_its_session() {
    let app = spawn_app().await;
    app.sign_up("oAttacker", "13800000101").await;
    // The attacker's own scene, logged in by the attacker's own scan.
    let (scene_id, secret, ticket) = api_client_scene(&app).await;
    app.scan(&ticket, "oAttacker", false).await;
    let status = format!("/api/qrcode/{scene_id}/status");

    // A victim's browser sent to the status URL gets neither token nor cookie.
    for wrong in [None, Some("not-the-secret")] {
        let mut request = stranger().get(app.url(&status));
        if let Some(wrong) = wrong {
            request = request.header("X-Scene-Secret", wrong);
        }
        let response = request.send().await.unwrap();
        assert!(response.headers().get(header::SET_COOKIE).is_none());
        assert_error(response, StatusCode::FORBIDDEN, "not_scene_owner").await;
    }
    // Another browser's key does not prove it either.
    let other_browser = stranger()
        .get(app.url(&status))
        .header(
            header::COOKIE,
            format!("wxlogin_browser={}", "x".repeat(43)),
        )
        .send()
        .await
        .unwrap();
    assert_error(other_browser, StatusCode::FORBIDDEN, "not_scene_owner").await;
    let events = stranger()
        .get(app.url(&format!("/api/qrcode/{scene_id}/events")))
        .send()
        .await
        .unwrap();
    assert_error(events, StatusCode::FORBIDDEN, "not_scene_owner").await;

    // The client that created it proves it with the secret.
    let response = stranger()
        .get(app.url(&status))
        .header("X-Scene-Secret", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .starts_with("wxlogin_session="));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["state"], "logged_in");
    let me = app.me(body["token"].as_str().unwrap()).await;
    assert_eq!(me.json::<Value>().await.unwrap()["openid"], "oAttacker");
}

#[tokio::test]
async fn a_stranger_can_neither_send_codes_nor_bind_for_a_scene() {
    let app = spawn_app().await;
    let (scene_id, secret, ticket) = api_client_scene(&app).await;
    app.scan(&ticket, "oNewcomer", true).await;
    let sms = format!("/api/qrcode/{scene_id}/sms");
    let phone = json!({"phone": "13800000102"});
    let refused = stranger()
        .post(app.url(&sms))
        .json(&phone)
        .send()
        .await
        .unwrap();
    assert_error(refused, StatusCode::FORBIDDEN, "not_scene_owner").await;
    let sent = stranger()
        .post(app.url(&sms))
        .header("X-Scene-Secret", &secret)
        .json(&phone)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    let code = app.sms_code("13800000102").await;
    let bind = format!("/api/qrcode/{scene_id}/bind");
    let body = json!({"phone": "13800000102", "code": code});
    let refused = stranger()
        .post(app.url(&bind))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_error(refused, StatusCode::FORBIDDEN, "not_scene_owner").await;
    let bound = stranger()
        .post(app.url(&bind))
        .header("X-Scene-Secret", &secret)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(bound.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_logged_in_scene_answers_a_waiting_poll_at_once() {
    let app = spawn_app().await;
    app.sign_up("oReturning", "13800000103").await;
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, "oReturning", false).await;
    // Held for the full wait, this would outlast the client's patience.
    let response = app
        .client
        .get(app.url(&format!("/api/qrcode/{}/status?wait=30", qr.scene_id)))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("answered before the wait ran out");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["state"], "logged_in");
}

#[tokio::test]
async fn answers_with_tokens_or_personal_data_are_never_stored_and_pages_are_never_framed() {
    let app = spawn_app().await;
    let token = app.sign_up("oPrivate", "13800000104").await;
    let qr = app.create_qr().await;
    let create = app.request_qr().await;
    let status = app
        .get(&format!("/api/qrcode/{}/status", qr.scene_id))
        .await;
    let events = app
        .get(&format!("/api/qrcode/{}/events", qr.scene_id))
        .await;
    let me = app.me(&token).await;
    let error = app.get("/api/qrcode/unknown/status").await;
    for response in [create, status, events, me, error] {
        assert_eq!(
            response.headers()[header::CACHE_CONTROL],
            "no-store",
            "{}",
            response.url()
        );
    }
    for page in ["/", "/sandbox/phone"] {
        let response = app.get(page).await;
        let policy = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{page}: {policy}"
        );
        assert_eq!(response.headers()[header::X_FRAME_OPTIONS], "DENY");
    }
}

#[tokio::test]
async fn the_log_never_holds_a_whole_scene_id() {
    let app = spawn_app_with(&[("RUST_LOG", "debug"), ("WXLOGIN_LOG_FORMAT", "json")]).await;
    let qr = app.create_qr().await;
    app.status(&qr.scene_id, 0).await;
    app.scan(&qr.ticket, "oLogged", true).await;
    app.request_code(&qr.scene_id, "13800000105").await;
    let code = app.sms_code("13800000105").await;
    app.bind(&qr.scene_id, "13800000105", &code).await;
    app.wait_for_log("/bind").await;
    let log = app.log();
    assert!(!log.contains(&qr.scene_id), "{log}");
    assert!(log.contains(&format!("/api/qrcode/{}…/bind", &qr.scene_id[..6])));
}

#[tokio::test]
async fn the_login_page_returns_only_to_an_authorization_on_its_origin() {
    let app = spawn_app().await;
    let page = |return_to: &str| {
        let url = reqwest::Url::parse_with_params(&app.url("/"), &[("return_to", return_to)]);
        let request = app.client.get(url.unwrap()).send();
        async move { request.await.unwrap().text().await.unwrap() }
    };
    let good = page("/oauth/authorize?client_id=site&state=a\"b").await;
    assert!(
        good.contains(r#" data-return-to="/oauth/authorize?client_id=site&amp;state=a%22b""#),
        "{good}"
    );
    for hostile in [
        "//evil.example/x",
        "/.//evil.example/x",
        "/a/..//evil.example",
        "/%2e%2e//evil.example",
        "/\\evil.example",
        "https://evil.example/oauth/authorize",
        "/api/logout",
    ] {
        let html = page(hostile).await;
        assert!(!html.contains("data-return-to"), "{hostile}");
    }
}

#[tokio::test]
async fn an_unfollow_while_the_scene_waits_for_a_phone_stops_the_bind() {
    let app = spawn_app().await;
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, "oLeaving", true).await;
    assert_eq!(
        app.request_code(&qr.scene_id, "13800000106").await.status(),
        StatusCode::ACCEPTED
    );
    let code = app.sms_code("13800000106").await;
    app.unsubscribe("oLeaving", None).await;
    let refused = app.bind(&qr.scene_id, "13800000106", &code).await;
    assert_error(refused, StatusCode::CONFLICT, "unfollowed").await;
    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "expired");
    // Nothing was bound: their next scan asks for a phone again.
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, "oLeaving", true).await;
    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "need_bind");
}

#[tokio::test]
async fn another_sites_page_cannot_start_a_login_in_the_visitors_browser() {
    let app = spawn_app().await;
    let from = |site: &'static str| {
        stranger()
            .post(app.url("/api/qrcode"))
            .header("Sec-Fetch-Site", site)
            .send()
    };
    let refused = from("cross-site").await.unwrap();
    assert!(refused.headers().get(header::SET_COOKIE).is_none());
    assert_error(refused, StatusCode::FORBIDDEN, "cross_site_request").await;
    for site in ["same-origin", "none"] {
        assert_eq!(from(site).await.unwrap().status(), StatusCode::OK, "{site}");
    }
}
