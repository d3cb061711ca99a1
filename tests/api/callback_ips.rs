//! `WXLOGIN_CALLBACK_IPS`: pushes only from the listed addresses, or from WeChat's own.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{
    assert_error, event_xml, fake_server, signed_query, spawn_app_with, unix_now, TestApp,
    SANDBOX_TOKEN,
};

/// A signed scan of `event_key`, POSTed by `client`.
async fn post_scan(app: &TestApp, client: &reqwest::Client, event_key: &str) -> reqwest::Response {
    let body = event_xml("oSender", unix_now(), "SCAN", event_key);
    let query = signed_query(SANDBOX_TOKEN);
    client
        .post(app.url(&format!("/wechat?{query}")))
        .header("Content-Type", "text/xml")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// A client that connects from 127.0.0.2: loopback, but not the address the simulator uses.
fn from_another_address() -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .build()
        .unwrap()
}

/// Waits (at most 10 s) until `/readyz` says ready: with `wechat`, once the list is fetched.
async fn wait_until_ready(app: &TestApp) {
    for _ in 0..200 {
        if app.get("/readyz").await.status() == StatusCode::OK {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never ready:\n{}", app.log());
}

#[tokio::test]
async fn a_list_without_loopback_refuses_the_simulator_and_everyone_here() {
    let app = spawn_app_with(&[("WXLOGIN_CALLBACK_IPS", "192.0.2.0/24, 2001:db8::/32")]).await;
    let qr = app.create_qr().await;
    let delivery = app.scan(&qr.ticket, "oSender", true).await;
    assert_eq!(delivery["status"], 403, "{delivery}");
    let direct = post_scan(&app, &app.client, &qr.event_key()).await;
    assert_error(direct, StatusCode::FORBIDDEN, "address_not_allowed").await;
    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "waiting");
    app.assert_metric(
        "wxlogin_callback_events_total{type=\"invalid\",outcome=\"address_not_allowed\"}",
        2,
    )
    .await;
    // WeChat's server check changes nothing and keeps working from anywhere.
    let echo = app
        .get_owned(format!(
            "/wechat?{}&echostr=hi",
            signed_query(SANDBOX_TOKEN)
        ))
        .await;
    assert_eq!(echo.text().await.unwrap(), "hi");
}

#[tokio::test]
async fn wechats_own_addresses_pass_and_others_are_refused() {
    let app = spawn_app_with(&[("WXLOGIN_CALLBACK_IPS", "wechat")]).await;
    wait_until_ready(&app).await;
    let qr = app.create_qr().await;
    let refused = post_scan(&app, &from_another_address(), &qr.event_key()).await;
    assert_error(refused, StatusCode::FORBIDDEN, "address_not_allowed").await;
    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "waiting");

    // The simulated WeChat pushes from the address its getcallbackip lists.
    let delivery = app.scan(&qr.ticket, "oSender", true).await;
    assert_eq!(delivery["status"], 200, "{delivery}");
    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "need_bind");
    app.assert_metric(
        "wxlogin_wechat_api_calls_total{endpoint=\"getcallbackip\",errcode=\"0\"}",
        1,
    )
    .await;
}

#[tokio::test]
async fn until_wechats_list_is_fetched_every_push_is_refused_as_unavailable() {
    // Real mode against a WeChat API that is down: no token, so no list.
    let (api, _requests) = fake_server(503, "{}").await;
    let app = spawn_app_with(&[
        ("WXLOGIN_APPID", "wx0000000000000001"),
        ("WXLOGIN_APPSECRET", "secret"),
        ("WXLOGIN_TOKEN", SANDBOX_TOKEN),
        ("WXLOGIN_WECHAT_API", &api),
        ("WXLOGIN_CALLBACK_IPS", "wechat"),
    ])
    .await;
    let push = post_scan(&app, &app.client, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await;
    assert_error(
        push,
        StatusCode::SERVICE_UNAVAILABLE,
        "callback_addresses_unavailable",
    )
    .await;
    assert_error(
        app.get("/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
    )
    .await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_checked() {
    let app = spawn_app_with(&[
        ("WXLOGIN_CALLBACK_IPS", "203.0.113.7"),
        ("WXLOGIN_TRUST_PROXY", "1"),
    ])
    .await;
    let qr = app.create_qr().await;
    let post = |forwarded: &'static str| {
        let body = event_xml("oSender", unix_now(), "SCAN", &qr.event_key());
        let query = signed_query(SANDBOX_TOKEN);
        app.client
            .post(app.url(&format!("/wechat?{query}")))
            .header("X-Forwarded-For", forwarded)
            .body(body)
            .send()
    };
    let refused = post("198.51.100.1").await.unwrap();
    assert_error(refused, StatusCode::FORBIDDEN, "address_not_allowed").await;
    let passed = post("203.0.113.7").await.unwrap();
    assert_eq!(passed.status(), StatusCode::OK);
    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "need_bind");
}
