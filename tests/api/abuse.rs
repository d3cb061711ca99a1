//! Limits that keep one client from spending the account's WeChat quota and SMS budget.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_error, spawn_app_with, TestApp, ADMIN_TOKEN};

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

const ADMIN: &str = ADMIN_TOKEN;
/// The address our reverse proxy appends on a line of its own.
const PROXY_SEES: &str = "203.0.113.9";

/// A request as it leaves our proxy: the client's own `X-Forwarded-For` line, then the
/// proxy's, which names the address the client really came from.
fn via_proxy(
    request: reqwest::RequestBuilder,
    client_line: &str,
    proxy_line: &str,
) -> reqwest::RequestBuilder {
    request
        .header("X-Forwarded-For", client_line)
        .header("X-Forwarded-For", proxy_line)
}

#[tokio::test]
async fn behind_a_proxy_the_line_it_appends_names_the_client() {
    let app = spawn_app_with(&[
        ("WXLOGIN_QR_PER_IP_PER_MIN", "3"),
        ("WXLOGIN_TRUST_PROXY", "1"),
        ("WXLOGIN_ADMIN_TOKEN", ADMIN),
    ])
    .await;
    app.sign_up("oProxied", "13800000075").await;
    // The client writes a new line of its own each time: it is still one client.
    let mut tickets = Vec::new();
    for i in 0..3 {
        let qr = via_proxy(
            app.client.post(app.url("/api/qrcode")),
            &format!("198.51.100.{i}"),
            PROXY_SEES,
        );
        let response = qr.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        tickets.push(body["ticket"].as_str().unwrap().to_owned());
    }
    let rotated = via_proxy(
        app.client.post(app.url("/api/qrcode")),
        "198.51.100.99",
        PROXY_SEES,
    );
    assert_error(
        rotated.send().await.unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
    )
    .await;
    // The login log names the proxy's entry, not the client's.
    app.scan(&tickets[0], "oProxied", false).await;
    let logins: Value = app
        .admin_get("/admin/logins?openid=oProxied&limit=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(logins["logins"][0]["client_ip"], PROXY_SEES, "{logins}");
}

#[tokio::test]
async fn ipv6_clients_are_limited_per_64() {
    let app = spawn_app_with(&[
        ("WXLOGIN_QR_PER_IP_PER_MIN", "3"),
        ("WXLOGIN_TRUST_PROXY", "1"),
    ])
    .await;
    // One subscriber's /64 has 2⁶⁴ addresses: a new one for each request is still one client.
    for host in 1..=3 {
        let address = format!("2001:db8:1:2::{host}");
        assert_eq!(qr_from(&app, &address).await.status(), StatusCode::OK);
    }
    assert_error(
        qr_from(&app, "2001:db8:1:2:ffff::4").await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
    )
    .await;
    assert_eq!(
        qr_from(&app, "2001:db8:1:3::1").await.status(),
        StatusCode::OK,
        "the next /64 is someone else"
    );
}

#[tokio::test]
async fn one_wechat_user_sends_codes_to_a_few_phones_per_hour_at_most() {
    let app = spawn_app_with(&[("WXLOGIN_SMS_PER_USER_PER_HOUR", "2")]).await;
    // One unbound WeChat account scans scene after scene, each asking a code for a new phone.
    for phone in ["13800000076", "13800000077"] {
        let scene = need_bind(&app, "oSprayer").await;
        assert_eq!(
            app.request_code(&scene, phone).await.status(),
            StatusCode::ACCEPTED
        );
    }
    let scene = need_bind(&app, "oSprayer").await;
    let refused = app.request_code(&scene, "13800000078").await;
    assert!(refused.headers().contains_key("retry-after"));
    assert_error(refused, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    let sent: Value = app.get("/sandbox/sms").await.json().await.unwrap();
    assert_eq!(sent.as_array().unwrap().len(), 2, "{sent}");
    // Someone else, from the same browser and for the same phone, is not held back.
    let other = need_bind(&app, "oNeighbour").await;
    assert_eq!(
        app.request_code(&other, "13800000078").await.status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn one_wechat_user_scans_a_few_scenes_per_hour_at_most() {
    let app = spawn_app_with(&[("WXLOGIN_SCANS_PER_USER_PER_HOUR", "2")]).await;
    // The first scan (sign-up) is one; a scan of a QR code someone else took costs nothing.
    app.sign_up("oScanner", "13800000079").await;
    let taken = app.create_qr().await;
    app.scan(&taken.ticket, "oFirst", true).await;
    let used = app.scan(&taken.ticket, "oScanner", false).await;
    assert!(
        used["reply"].as_str().unwrap().contains("已经被扫过"),
        "{used}"
    );
    app.scan_in("oScanner").await;
    // The third scene is refused: politely, and nothing logs in.
    let qr = app.create_qr().await;
    let refused = app.scan(&qr.ticket, "oScanner", false).await;
    assert!(
        refused["reply"]
            .as_str()
            .unwrap()
            .contains("登录尝试过于频繁"),
        "{refused}"
    );
    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "waiting", "{status}");
    // The scene is still free for its rightful scanner.
    app.sign_up("oOther", "13800000080").await;
    app.scan(&qr.ticket, "oOther", false).await;
    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "logged_in", "{status}");
}
