//! The login flow as a browser and a phone see it.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_error, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_new_user_scans_binds_a_phone_and_is_logged_in() {
    let app = spawn_app().await;
    let qr = app.create_qr().await;
    let (status, body) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["state"], "waiting");
    assert_eq!(body["token"], Value::Null);
    assert_eq!(body["subscribed"], false);

    let delivery = app.scan(&qr.ticket, "oNewUser", true).await;
    assert_eq!(delivery["status"], 200);
    assert!(
        delivery["reply"].as_str().unwrap().contains("手机号"),
        "{delivery}"
    );
    let (_, body) = app.status(&qr.scene_id, 0).await;
    assert_eq!(body["state"], "need_bind");
    assert_eq!(body["subscribed"], true);
    assert_eq!(body["new_follower"], true);
    assert_eq!(body["bound"], false);

    let response = app.request_code(&qr.scene_id, "+86 13800000001").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.json::<Value>().await.unwrap()["cooldown"], 60);
    let code = app.sms_code("13800000001").await;
    let response = app.bind(&qr.scene_id, "13800000001", &code).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["state"], "logged_in");
    let token = body["token"].as_str().unwrap();

    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "logged_in");
    assert_eq!(status["bound"], true);
    assert_eq!(status["token"], token);

    let me: Value = app.me(token).await.json().await.unwrap();
    assert_eq!(me["openid"], "oNewUser");
    assert_eq!(me["phone"], "13800000001");
    assert!(me["bound_at"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn a_returning_user_is_logged_in_by_the_scan_alone() {
    let app = spawn_app().await;
    app.sign_up("oReturning", "13800000002").await;

    let qr = app.create_qr().await;
    let delivery = app.scan(&qr.ticket, "oReturning", false).await;
    assert!(
        delivery["reply"].as_str().unwrap().contains("登录成功"),
        "{delivery}"
    );
    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "logged_in");
    // A follower's scan: the browser learns they follow the account, and did already.
    assert_eq!(status["subscribed"], true);
    assert_eq!(status["new_follower"], false);
    assert_eq!(status["bound"], true);
    let me: Value = app
        .me(status["token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["phone"], "13800000002");
}

#[tokio::test]
async fn a_long_poll_answers_as_soon_as_the_scene_changes() {
    let app = spawn_app().await;
    let qr = app.create_qr().await;
    let poll = app.status(&qr.scene_id, 25);
    let scan = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        app.scan(&qr.ticket, "oPoller", true).await
    };
    let ((status, body), _) = tokio::join!(poll, scan);
    assert_eq!(status, StatusCode::OK);
    // Had the poll run out its 25 s instead, it would report the state it started in.
    assert_eq!(body["state"], "need_bind", "{body}");
}

#[tokio::test]
async fn a_long_poll_holds_while_nothing_happens() {
    let app = spawn_app().await;
    let qr = app.create_qr().await;
    let started = Instant::now();
    let (_, body) = app.status(&qr.scene_id, 1).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(body["state"], "waiting");
}

#[tokio::test]
async fn wait_beyond_thirty_seconds_is_refused() {
    let app = spawn_app().await;
    let qr = app.create_qr().await;
    let response = app
        .get(&format!("/api/qrcode/{}/status?wait=31", qr.scene_id))
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_query").await;
    let response = app
        .get(&format!("/api/qrcode/{}/status?wait=soon", qr.scene_id))
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_query").await;
}

#[tokio::test]
async fn a_phone_bound_to_one_user_cannot_be_bound_to_another() {
    let app = spawn_app().await;
    app.sign_up("oFirst", "13800000003").await;

    let qr = app.create_qr().await;
    app.scan(&qr.ticket, "oSecond", true).await;
    app.request_code(&qr.scene_id, "13800000003").await;
    let code = app.sms_code("13800000003").await;
    assert_error(
        app.bind(&qr.scene_id, "13800000003", &code).await,
        StatusCode::CONFLICT,
        "phone_taken",
    )
    .await;
    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "need_bind");
}

#[tokio::test]
async fn wrong_codes_are_refused_and_brute_force_is_stopped() {
    let app = spawn_app().await;
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, "oGuesser", true).await;
    app.request_code(&qr.scene_id, "13800000004").await;
    let code = app.sms_code("13800000004").await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    for _ in 0..5 {
        assert_error(
            app.bind(&qr.scene_id, "13800000004", wrong).await,
            StatusCode::BAD_REQUEST,
            "invalid_code",
        )
        .await;
    }
    // Even the right code is refused now.
    assert_error(
        app.bind(&qr.scene_id, "13800000004", &code).await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
    )
    .await;
}

#[tokio::test]
async fn a_code_is_for_the_phone_it_was_sent_to() {
    let app = spawn_app().await;
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, "oSwitcher", true).await;
    app.request_code(&qr.scene_id, "13800000005").await;
    let code = app.sms_code("13800000005").await;
    assert_error(
        app.bind(&qr.scene_id, "13800000006", &code).await,
        StatusCode::BAD_REQUEST,
        "invalid_code",
    )
    .await;
}

#[tokio::test]
async fn codes_have_a_cooldown() {
    let app = spawn_app().await;
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, "oImpatient", true).await;
    assert_eq!(
        app.request_code(&qr.scene_id, "13800000007").await.status(),
        StatusCode::ACCEPTED
    );
    let response = app.request_code(&qr.scene_id, "13800000007").await;
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
}

#[tokio::test]
async fn invalid_phones_are_refused() {
    let app = spawn_app().await;
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, "oTypo", true).await;
    for phone in ["12345", "23800000000", "+1 4155550100", "1380000000a", ""] {
        assert_error(
            app.request_code(&qr.scene_id, phone).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_phone",
        )
        .await;
        assert_error(
            app.bind(&qr.scene_id, phone, "123456").await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_phone",
        )
        .await;
    }
}

#[tokio::test]
async fn codes_and_binds_need_a_scanned_scene() {
    let app = spawn_app().await;
    let qr = app.create_qr().await;
    assert_error(
        app.request_code(&qr.scene_id, "13800000008").await,
        StatusCode::CONFLICT,
        "not_awaiting_bind",
    )
    .await;
    assert_error(
        app.bind(&qr.scene_id, "13800000008", "123456").await,
        StatusCode::CONFLICT,
        "not_awaiting_bind",
    )
    .await;
}

#[tokio::test]
async fn unknown_scenes_are_not_found() {
    let app = spawn_app().await;
    for scene in ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "not-a-scene", "%00"] {
        assert_error(
            app.get(&format!("/api/qrcode/{scene}/status")).await,
            StatusCode::NOT_FOUND,
            "scene_not_found",
        )
        .await;
        assert_error(
            app.request_code(scene, "13800000009").await,
            StatusCode::NOT_FOUND,
            "scene_not_found",
        )
        .await;
        assert_error(
            app.bind(scene, "13800000009", "123456").await,
            StatusCode::NOT_FOUND,
            "scene_not_found",
        )
        .await;
    }
}

#[tokio::test]
async fn a_scene_expires_at_its_ttl() {
    let app = spawn_app_with(&[("WXLOGIN_SCENE_TTL_SECS", "1")]).await;
    let qr = app.create_qr().await;
    // A poll that is waiting when the scene expires hears it.
    let (_, body) = app.status(&qr.scene_id, 5).await;
    assert_eq!(body["state"], "expired");
    assert_eq!(body["expires_in"], 0);
    // Later polls still hear it, and the scene takes no more actions.
    let (status, body) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["state"], "expired");
    assert_error(
        app.request_code(&qr.scene_id, "13800000010").await,
        StatusCode::GONE,
        "scene_expired",
    )
    .await;
    // The phone can't scan it any more either.
    let response = app
        .post_json(
            "/sandbox/scan",
            serde_json::json!({"ticket": qr.ticket, "openid": "oLate"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::GONE);
}

#[tokio::test]
async fn a_scene_belongs_to_its_first_scanner() {
    let app = spawn_app().await;
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, "oFirstScanner", true).await;
    let delivery = app.scan(&qr.ticket, "oSecondScanner", true).await;
    assert!(
        delivery["reply"].as_str().unwrap().contains("已经被扫过"),
        "{delivery}"
    );
    app.request_code(&qr.scene_id, "13800000011").await;
    let code = app.sms_code("13800000011").await;
    let token = app
        .bind(&qr.scene_id, "13800000011", &code)
        .await
        .json::<Value>()
        .await
        .unwrap()["token"]
        .clone();
    let me: Value = app.me(token.as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(me["openid"], "oFirstScanner");
}
