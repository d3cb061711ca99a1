//! The service against WeChat's API: token caching and refresh, outages.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, fake_server, spawn_app, spawn_app_with};

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
    app.wait_until_ready().await;
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
    // Real mode has no simulator: neither its stats nor the SMS gateway other nodes use.
    assert_eq!(
        app.get("/sandbox/stats").await.status(),
        StatusCode::NOT_FOUND
    );
    let sms = serde_json::json!({"phone": "13800000001", "code": "123456"});
    assert_eq!(
        app.post_json("/sandbox/sms", sms).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn busy_and_server_errors_are_retried() {
    let app = spawn_app().await;
    app.create_qr().await;
    let before = app.sandbox_stats().await["api_calls"].as_u64().unwrap();
    app.control(json!({"fail_next": [{"errcode": -1}, {"status": 502}]}))
        .await;
    app.create_qr().await;
    let after = app.sandbox_stats().await["api_calls"].as_u64().unwrap();
    assert_eq!(after - before, 3, "two failures, then the call that worked");
}

#[tokio::test]
async fn retries_are_bounded() {
    let app = spawn_app().await;
    app.create_qr().await;
    let before = app.sandbox_stats().await["api_calls"].as_u64().unwrap();
    app.control(json!({"fail_next": [{"errcode": -1}, {"errcode": -1}, {"errcode": -1}]}))
        .await;
    assert_error(
        app.request_qr().await,
        StatusCode::SERVICE_UNAVAILABLE,
        "wechat_unavailable",
    )
    .await;
    let after = app.sandbox_stats().await["api_calls"].as_u64().unwrap();
    assert_eq!(after - before, 3);
}

#[tokio::test]
async fn a_used_up_quota_is_503_without_hammering_wechat() {
    let app = spawn_app().await;
    app.create_qr().await;
    app.control(json!({"fail_next": [{"errcode": 45009}]}))
        .await;
    assert_error(
        app.request_qr().await,
        StatusCode::SERVICE_UNAVAILABLE,
        "wechat_unavailable",
    )
    .await;
    let calls = app.sandbox_stats().await["api_calls"].clone();
    for _ in 0..5 {
        assert_error(
            app.request_qr().await,
            StatusCode::SERVICE_UNAVAILABLE,
            "wechat_unavailable",
        )
        .await;
    }
    assert_eq!(
        app.sandbox_stats().await["api_calls"],
        calls,
        "no call while paused"
    );
}

/// WeChat counts quotas per endpoint: the unionid lookups spending `user/info`'s must leave QR
/// codes working.
#[tokio::test]
async fn a_spent_quota_pauses_only_its_own_endpoint() {
    let app = spawn_app().await;
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, "oQuota", true).await;
    assert_eq!(
        app.request_code(&qr.scene_id, "13800000021").await.status(),
        StatusCode::ACCEPTED
    );
    let code = app.sms_code("13800000021").await;
    // The next call to WeChat is the unionid lookup after the bind.
    app.control(json!({"fail_next": [{"errcode": 45009}]}))
        .await;
    assert_eq!(
        app.bind(&qr.scene_id, "13800000021", &code).await.status(),
        StatusCode::OK
    );
    app.wait_for_log("pausing calls to this endpoint").await;
    assert!(
        app.log().contains("endpoint=\"user_info\""),
        "{}",
        app.log()
    );
    assert_eq!(app.request_qr().await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_slow_wechat_times_out_as_503() {
    let app = spawn_app_with(&[("WXLOGIN_WECHAT_TIMEOUT_SECS", "1")]).await;
    app.wait_until_ready().await;
    app.control(json!({"delay_ms": 2500})).await;
    assert_error(
        app.request_qr().await,
        StatusCode::SERVICE_UNAVAILABLE,
        "wechat_unavailable",
    )
    .await;
    app.control(json!({"delay_ms": 0})).await;
    app.create_qr().await;
}

#[tokio::test]
async fn the_stable_token_endpoint_is_used_when_asked() {
    let app = spawn_app_with(&[("WXLOGIN_STABLE_TOKEN", "1")]).await;
    app.create_qr().await;
    app.create_qr().await;
    let stats = app.sandbox_stats().await;
    assert_eq!(
        (
            stats["stable_token_fetches"].as_u64(),
            stats["token_fetches"].as_u64()
        ),
        (Some(1), Some(0))
    );
    // A refused stable token is force-refreshed once.
    app.control(json!({"revoke_token": true})).await;
    app.create_qr().await;
    assert_eq!(app.sandbox_stats().await["stable_token_fetches"], 2);
}

#[tokio::test]
async fn in_real_mode_the_qr_image_is_wechats_and_there_is_no_simulator() {
    // WeChat's API as far as the service needs it: the token and the QR ticket in one answer.
    let (wechat, _requests) = fake_server(
        200,
        r#"{"access_token": "token", "expires_in": 7200, "ticket": "gQH+a/b=", "url": "http://weixin.qq.com/q/x"}"#,
    )
    .await;
    let app = spawn_app_with(&[
        ("WXLOGIN_APPID", "wx0000000000000000"),
        ("WXLOGIN_APPSECRET", "secret"),
        ("WXLOGIN_TOKEN", "token"),
        ("WXLOGIN_WECHAT_API", &wechat),
    ])
    .await;
    let qr: Value = app.request_qr().await.json().await.unwrap();
    assert_eq!(
        qr["qrcode_url"],
        "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=gQH%2Ba%2Fb%3D"
    );
    assert_eq!(app.get("/").await.status(), StatusCode::OK);
    for path in [
        "/sandbox/phone?ticket=gQH%2Ba%2Fb%3D",
        "/sandbox/showqrcode?ticket=gQH%2Ba%2Fb%3D",
        "/sandbox/sms",
    ] {
        assert_eq!(
            app.get(path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

/// For 10 s, browsers and probes keep coming to a server whose every token fetch fails as
/// `status` + `answer` says; returns how many calls reached WeChat.
async fn token_calls_in_an_outage(status: u16, answer: &'static str) -> usize {
    let (wechat, mut calls) = fake_server(status, answer).await;
    let app = spawn_app_with(&[
        ("WXLOGIN_APPID", "wx0000000000000000"),
        ("WXLOGIN_APPSECRET", "secret"),
        ("WXLOGIN_TOKEN", "token"),
        ("WXLOGIN_WECHAT_API", &wechat),
        // Every request reaches the token actor: none is stopped by the per-IP limit.
        ("WXLOGIN_QR_PER_IP_PER_MIN", "0"),
    ])
    .await;
    for _ in 0..10 {
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..5 {
            let qr = app.client.post(app.url("/api/qrcode")).send();
            let probe = app.client.get(app.url("/readyz")).send();
            requests.spawn(async move {
                assert_error(
                    qr.await.unwrap(),
                    StatusCode::SERVICE_UNAVAILABLE,
                    "wechat_unavailable",
                )
                .await
            });
            requests.spawn(async move {
                assert_error(
                    probe.await.unwrap(),
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_ready",
                )
                .await
            });
        }
        while let Some(answered) = requests.join_next().await {
            answered.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut seen = 0;
    while calls.try_recv().is_ok() {
        seen += 1;
    }
    seen
}

#[tokio::test]
async fn an_outage_costs_at_most_six_token_calls_in_its_first_ten_seconds() {
    // A misconfiguration WeChat names (the server's IP is not whitelisted), and a WeChat that
    // fails outright (which other calls retry), side by side.
    let (refused, failing) = tokio::join!(
        token_calls_in_an_outage(200, r#"{"errcode": 40164, "errmsg": "invalid ip"}"#),
        token_calls_in_an_outage(500, r#"{"error": "internal"}"#),
    );
    for (what, calls) in [("40164", refused), ("HTTP 500", failing)] {
        assert!((1..=6).contains(&calls), "{what}: {calls} token calls");
    }
}
