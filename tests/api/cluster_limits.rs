//! Two nodes on one PostgreSQL database share their limits and filters: a push WeChat
//! redelivers to the other node is handled once, and a limit spent on one node is spent on
//! both. Each node is its own process with its own sandbox; the pushes that must be the same
//! on both are signed here.

use reqwest::header::COOKIE;
use reqwest::StatusCode;
use serde_json::Value;
use wxlogin_storage::test_server::TestServer;

use crate::helpers::{
    assert_error, event_xml, other_code, signed_query, spawn_app_with, unix_now, TestApp,
    ADMIN_TOKEN, SANDBOX_TOKEN,
};

/// A database and two nodes on it, both with `env`.
async fn two_nodes(env: &[(&str, &str)]) -> (TestServer, TestApp, TestApp) {
    let server = TestServer::start();
    let url = server.new_database().await;
    let env = [env, &[("WXLOGIN_DATABASE_URL", url.as_str())]].concat();
    let a = spawn_app_with(&env).await;
    let b = spawn_app_with(&env).await;
    (server, a, b)
}

async fn qr_from(app: &TestApp, forwarded_for: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/qrcode"))
        .header("X-Forwarded-For", forwarded_for)
        .send()
        .await
        .unwrap()
}

/// A scene of `app`'s that `openid` scanned and that waits for a phone.
async fn need_bind(app: &TestApp, openid: &str) -> String {
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, openid, true).await;
    qr.scene_id
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn a_push_redelivered_to_the_other_node_is_handled_once() {
    let (_server, a, b) = two_nodes(&[("WXLOGIN_ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    a.sign_up("oTwoNodes", "13800000090").await;
    let qr = a.create_qr().await;
    // WeChat pushes the scan to A and, not hearing back in time, the very same request to B.
    let query = signed_query(SANDBOX_TOKEN);
    let scan = event_xml("oTwoNodes", unix_now(), "SCAN", &qr.event_key());
    let first = a.post_callback(&query, scan.clone()).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert!(first.text().await.unwrap().contains("<xml>"), "A replies");
    let again = b.post_callback(&query, scan).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.text().await.unwrap(), "success");
    b.assert_metric(
        "wxlogin_callback_events_total{type=\"scan\",outcome=\"redelivery\"}",
        1,
    )
    .await;
    let (_, status) = a.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "logged_in", "{status}");
    // One login by scan in the log both nodes write: the bind's, then this scan's.
    let page: Value = b
        .admin_get("/admin/logins?openid=oTwoNodes")
        .await
        .json()
        .await
        .unwrap();
    let methods: Vec<_> = page["logins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|login| login["method"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(methods, ["scan", "bind"], "{page}");

    // Delivered to both at the same moment: one node handles it, the other acknowledges it.
    let qr = a.create_qr().await;
    let query = signed_query(SANDBOX_TOKEN);
    let scan = event_xml("oTwoNodes", unix_now(), "SCAN", &qr.event_key());
    let (on_a, on_b) = tokio::join!(
        a.post_callback(&query, scan.clone()),
        b.post_callback(&query, scan)
    );
    let mut answers = vec![on_a.text().await.unwrap(), on_b.text().await.unwrap()];
    answers.sort();
    assert!(answers[0].contains("<xml>"), "{answers:?}");
    assert_eq!(answers[1], "success", "{answers:?}");
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn a_phone_s_codes_are_counted_on_every_node() {
    let (_server, a, b) = two_nodes(&[("WXLOGIN_SMS_PER_PHONE_PER_HOUR", "1")]).await;
    let scene = need_bind(&a, "oPhoneA").await;
    assert_eq!(
        a.request_code(&scene, "13800000091").await.status(),
        StatusCode::ACCEPTED
    );
    let scene = need_bind(&b, "oPhoneB").await;
    assert_error(
        b.request_code(&scene, "13800000091").await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
    )
    .await;
    // B's own budget for another phone is whole.
    assert_eq!(
        b.request_code(&scene, "13800000092").await.status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn an_ips_qr_codes_are_counted_on_every_node_and_an_unreachable_database_refuses() {
    let (server, a, b) = two_nodes(&[
        ("WXLOGIN_QR_PER_IP_PER_MIN", "2"),
        ("WXLOGIN_TRUST_PROXY", "1"),
    ])
    .await;
    assert_eq!(qr_from(&a, "198.51.100.9").await.status(), StatusCode::OK);
    assert_eq!(qr_from(&b, "198.51.100.9").await.status(), StatusCode::OK);
    let refused = qr_from(&a, "198.51.100.9").await;
    assert!(refused.headers().contains_key("retry-after"));
    assert_error(refused, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    assert_error(
        qr_from(&b, "198.51.100.9").await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
    )
    .await;
    assert_eq!(qr_from(&b, "198.51.100.10").await.status(), StatusCode::OK);

    // A limit that cannot be checked refuses, as JSON.
    server.stop();
    assert_error(
        qr_from(&a, "198.51.100.11").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
    )
    .await;
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn wrong_login_codes_sent_to_both_nodes_count_together() {
    let (_server, a, b) = two_nodes(&[
        ("WXLOGIN_LOGIN_MODE", "code"),
        ("WXLOGIN_CODE_GUESS_WINDOW_SECS", "600"),
    ])
    .await;
    let (scene_id, code) = a.create_code_login().await;
    let wrong = |offset: u32| other_code(&code, offset);
    for attempt in 1..=5 {
        // Three to A, two to B: the fifth, on B, is the one that throttles.
        let node = if attempt <= 3 { &a } else { &b };
        let reply = node.text("oSpreadGuesser", &wrong(attempt)).await;
        let text = reply["reply"].as_str().unwrap();
        if attempt < 5 {
            assert!(text.contains("不正确"), "attempt {attempt}: {reply}");
        } else {
            assert!(text.contains("不会被处理"), "attempt {attempt}: {reply}");
        }
    }
    // A ignores even the right code now.
    let refused = a.text("oSpreadGuesser", &code).await;
    assert!(
        refused["reply"].as_str().unwrap().contains("不会被处理"),
        "{refused}"
    );
    let (_, status) = a.status(&scene_id, 0).await;
    assert_eq!(status["state"], "waiting");
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn wrong_login_codes_sent_all_at_once_to_both_nodes_get_no_more_than_the_misses() {
    let (_server, a, b) = two_nodes(&[
        ("WXLOGIN_LOGIN_MODE", "code"),
        ("WXLOGIN_CODE_GUESS_WINDOW_SECS", "600"),
    ])
    .await;
    let (_, code) = a.create_code_login().await;
    // Forty guesses in flight together, half on each node: a check before each guess that
    // reads the count lets them all past it before any miss is counted.
    let guesses = (1..=40).map(|offset| {
        let node = if offset % 2 == 0 { &a } else { &b };
        let guess = other_code(&code, offset);
        async move { node.text("oRacingGuesser", &guess).await }
    });
    let replies = futures_util::future::join_all(guesses).await;
    let told_wrong = replies
        .iter()
        .filter(|reply| reply["reply"].as_str().unwrap().contains("不正确"))
        .count();
    // At most four told "wrong" (a miss that finds the fifth counted is told it is now
    // ignored), the rest ignored.
    assert!(told_wrong <= 4, "{told_wrong} told wrong: {replies:?}");
    let mut rejected = 0;
    for node in [&a, &b] {
        let metrics = node.get("/metrics").await.text().await.unwrap();
        rejected += metrics
            .lines()
            .find_map(|line| line.strip_prefix("wxlogin_login_codes_rejected_total "))
            .map_or(0, |n| n.parse::<u32>().unwrap());
    }
    assert_eq!(rejected, 5, "codes tried across the nodes");
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn a_web_authorization_state_used_on_one_node_is_refused_on_the_other() {
    let (_server, a, b) = two_nodes(&[("WXLOGIN_OAUTH_DOMAIN", "127.0.0.1")]).await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let qr = a.create_qr().await;
    let started = no_redirects
        .get(a.url(&format!("/api/qrcode/{}/web-authorization", qr.scene_id)))
        .header(
            COOKIE,
            format!("wxlogin_browser={}", crate::helpers::BROWSER_KEY),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::FOUND);
    let cookie = started.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let authorize =
        reqwest::Url::parse(&a.url(started.headers()["location"].to_str().unwrap())).unwrap();
    let state = authorize
        .query_pairs()
        .find(|(name, _)| name == "state")
        .map(|(_, value)| value.into_owned())
        .unwrap();
    let arrive = |app: &TestApp| {
        let url = app.url(&format!(
            "/web-authorization/callback?code=not-a-code&state={state}"
        ));
        no_redirects.get(url).header(COOKIE, &cookie).send()
    };
    // On A the state is good (the code is not: WeChat never issued it), and spent.
    let first = arrive(&a).await.unwrap();
    assert_eq!(first.status(), StatusCode::BAD_REQUEST);
    // On B it is refused before any code is exchanged.
    let again = arrive(&b).await.unwrap();
    assert_eq!(again.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn a_wechat_users_scans_are_counted_on_every_node() {
    let (_server, a, b) = two_nodes(&[("WXLOGIN_SCANS_PER_USER_PER_HOUR", "1")]).await;
    need_bind(&a, "oScansTwice").await;
    let qr = b.create_qr().await;
    let refused = b.scan(&qr.ticket, "oScansTwice", true).await;
    assert!(
        refused["reply"]
            .as_str()
            .unwrap()
            .contains("登录尝试过于频繁"),
        "{refused}"
    );
    let (_, status) = b.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "waiting", "{status}");
}
