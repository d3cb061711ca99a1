//! The token center: the account's other servers share wxlogin's access token and JS-SDK
//! ticket (WXLOGIN_TOKEN_CLIENTS), refresh them retry-if-unchanged, and never see each other's
//! keys; and the warning when someone else keeps replacing wxlogin's token.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, run_to_exit, spawn_app_with, TestApp};

const SHOP_KEY: &str = "shop-key-0123456789abcdefghijklmnopqrstuv";
const CRM_KEY: &str = "crm-key-ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210";
const CLIENTS: &str = "shop:shop-key-0123456789abcdefghijklmnopqrstuv,crm:crm-key-ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210";

async fn center(extra: &[(&str, &str)]) -> TestApp {
    let env = [&[("WXLOGIN_TOKEN_CLIENTS", CLIENTS)], extra].concat();
    spawn_app_with(&env).await
}

async fn get(app: &TestApp, path: &str, key: &str) -> reqwest::Response {
    let request = app.client.get(app.url(path)).bearer_auth(key);
    request.send().await.unwrap()
}

async fn refresh(app: &TestApp, path: &str, key: &str, body: Value) -> reqwest::Response {
    let request = app.client.post(app.url(path)).bearer_auth(key).json(&body);
    request.send().await.unwrap()
}

/// The JSON of a 200 answer.
async fn ok(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// Whether the sandbox's WeChat takes `token` (a call that needs one).
async fn wechat_accepts(app: &TestApp, token: &str) -> bool {
    let url = app.url("/sandbox/api/cgi-bin/getcallbackip");
    let answer: Value = app
        .client
        .get(url)
        .query(&[("access_token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer.get("ip_list").is_some()
}

#[tokio::test]
async fn without_token_clients_the_routes_are_not_found() {
    let app = spawn_app_with(&[]).await;
    for path in ["/api/wechat/access_token", "/api/wechat/jsapi_ticket"] {
        assert_error(
            get(&app, path, SHOP_KEY).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
        let path = format!("{path}/refresh");
        let answer = refresh(&app, &path, SHOP_KEY, json!({})).await;
        assert_error(answer, StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test]
async fn a_missing_or_wrong_key_gets_one_and_the_same_401() {
    let app = center(&[]).await;
    let client = &app.client;
    let url = app.url("/api/wechat/access_token");
    let near_misses = [
        &SHOP_KEY[..SHOP_KEY.len() - 1],
        &format!("{SHOP_KEY}x"),
        &SHOP_KEY.to_uppercase(),
        "x",
    ];
    let mut requests = vec![
        client.get(&url),
        client.get(&url).basic_auth("shop", Some(SHOP_KEY)),
    ];
    requests.extend(
        near_misses
            .iter()
            .map(|key| client.get(&url).bearer_auth(key)),
    );
    // A refresh with a bad body still learns nothing but 401: the key is checked first.
    let refresh_url = app.url("/api/wechat/access_token/refresh");
    requests.push(client.post(&refresh_url).bearer_auth("x").body("not json"));
    // Nor does a body larger than any limit: nothing is read before the key is known.
    requests.push(
        client
            .post(&refresh_url)
            .bearer_auth("x")
            .body(vec![b'x'; 300 * 1024]),
    );
    let mut bodies = Vec::new();
    for request in requests {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        bodies.push(response.text().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    let body: Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(body["error"], "unauthorized");
    app.assert_metric("wxlogin_token_center_refused_total", 8)
        .await;
    // A caller with a key gets at most 1 KiB read.
    let oversized = client
        .post(&refresh_url)
        .bearer_auth(SHOP_KEY)
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_client_gets_the_token_wxlogin_itself_uses_and_its_lifetime() {
    let app = center(&[]).await;
    app.create_qr().await;
    let answer = ok(get(&app, "/api/wechat/access_token", SHOP_KEY).await).await;
    let token = answer["access_token"].as_str().unwrap();
    let expires_in = answer["expires_in"].as_u64().unwrap();
    assert!((7000..=7200).contains(&expires_in), "{answer}");
    assert!(wechat_accepts(&app, token).await);
    // The other client gets the same one; wxlogin goes on using it: one fetch in all.
    let other = ok(get(&app, "/api/wechat/access_token", CRM_KEY).await).await;
    assert_eq!(other["access_token"], token);
    app.create_qr().await;
    assert_eq!(app.sandbox_stats().await["token_fetches"], 1);
}

#[tokio::test]
async fn fifty_callers_reporting_the_same_failed_token_cause_one_fetch() {
    let app = center(&[]).await;
    let first = ok(get(&app, "/api/wechat/access_token", SHOP_KEY).await).await;
    let failed = first["access_token"].as_str().unwrap().to_owned();
    // Slow fetches: every report arrives while the one refresh is under way.
    app.control(json!({"delay_ms": 300})).await;
    let mut reports = tokio::task::JoinSet::new();
    for i in 0..50 {
        let key = if i % 2 == 0 { SHOP_KEY } else { CRM_KEY };
        let request = app
            .client
            .post(app.url("/api/wechat/access_token/refresh"))
            .bearer_auth(key)
            .json(&json!({"access_token": failed}));
        reports.spawn(async move { request.send().await.unwrap() });
    }
    let mut tokens = Vec::new();
    while let Some(response) = reports.join_next().await {
        tokens.push(ok(response.unwrap()).await["access_token"].clone());
    }
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    assert_ne!(tokens[0], failed.as_str());
    assert_eq!(app.sandbox_stats().await["token_fetches"], 2);
    app.control(json!({"delay_ms": 0})).await;
    assert!(wechat_accepts(&app, tokens[0].as_str().unwrap()).await);
    // A late report of the token already replaced changes nothing.
    let late = refresh(
        &app,
        "/api/wechat/access_token/refresh",
        SHOP_KEY,
        json!({"access_token": failed}),
    )
    .await;
    assert_eq!(ok(late).await["access_token"], tokens[0]);
    assert_eq!(app.sandbox_stats().await["token_fetches"], 2);
}

#[tokio::test]
async fn a_client_reporting_good_tokens_in_a_loop_does_not_spend_the_quota() {
    let app = center(&[]).await;
    for _ in 0..20 {
        let current = ok(get(&app, "/api/wechat/access_token", SHOP_KEY).await).await;
        let report = json!({"access_token": current["access_token"]});
        ok(refresh(&app, "/api/wechat/access_token/refresh", SHOP_KEY, report).await).await;
    }
    // The first report was taken at its word; the rest came within the minute after it.
    assert_eq!(app.sandbox_stats().await["token_fetches"], 2);
}

#[tokio::test]
async fn a_refresh_body_that_is_not_the_failed_token_is_400() {
    let app = center(&[]).await;
    let path = "/api/wechat/access_token/refresh";
    for body in [
        json!({}),
        json!({"ticket": "x"}),
        json!({"access_token": 1}),
    ] {
        let answer = refresh(&app, path, SHOP_KEY, body).await;
        assert_error(answer, StatusCode::BAD_REQUEST, "bad_request").await;
    }
    let answer = refresh(
        &app,
        "/api/wechat/jsapi_ticket/refresh",
        SHOP_KEY,
        json!({}),
    )
    .await;
    assert_error(answer, StatusCode::BAD_REQUEST, "bad_request").await;
}

#[tokio::test]
async fn the_jsapi_ticket_is_fetched_once_and_refreshed_once_for_many_reports() {
    let app = center(&[]).await;
    let first = ok(get(&app, "/api/wechat/jsapi_ticket", SHOP_KEY).await).await;
    let ticket = first["ticket"].as_str().unwrap().to_owned();
    assert!(
        (7000..=7200).contains(&first["expires_in"].as_u64().unwrap()),
        "{first}"
    );
    let again = ok(get(&app, "/api/wechat/jsapi_ticket", CRM_KEY).await).await;
    assert_eq!(again["ticket"], ticket.as_str());
    assert_eq!(app.sandbox_stats().await["ticket_fetches"], 1);
    app.control(json!({"delay_ms": 300})).await;
    let mut reports = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let request = app
            .client
            .post(app.url("/api/wechat/jsapi_ticket/refresh"))
            .bearer_auth(SHOP_KEY)
            .json(&json!({"ticket": ticket}));
        reports.spawn(async move { request.send().await.unwrap() });
    }
    let mut tickets = Vec::new();
    while let Some(response) = reports.join_next().await {
        tickets.push(ok(response.unwrap()).await["ticket"].clone());
    }
    assert!(
        tickets
            .iter()
            .all(|t| *t == tickets[0] && *t != ticket.as_str()),
        "{tickets:?}"
    );
    let stats = app.sandbox_stats().await;
    assert_eq!(stats["ticket_fetches"], 2, "{stats}");
    assert_eq!(
        stats["token_fetches"], 1,
        "the ticket was fetched with the cached token"
    );
}

#[tokio::test]
async fn with_stable_tokens_a_report_refreshes_once_without_forcing() {
    let app = center(&[("WXLOGIN_STABLE_TOKEN", "1")]).await;
    let first = ok(get(&app, "/api/wechat/access_token", SHOP_KEY).await).await;
    let failed = first["access_token"].as_str().unwrap().to_owned();
    let mut reports = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let request = app
            .client
            .post(app.url("/api/wechat/access_token/refresh"))
            .bearer_auth(SHOP_KEY)
            .json(&json!({"access_token": failed}));
        reports.spawn(async move { request.send().await.unwrap() });
    }
    // One fetch, not forced: WeChat's stable token is still this one, so that is the answer
    // (a forced refresh would have invalidated it for every other server of the account).
    while let Some(response) = reports.join_next().await {
        assert_eq!(ok(response.unwrap()).await["access_token"], failed.as_str());
    }
    let stats = app.sandbox_stats().await;
    assert_eq!(stats["stable_token_fetches"], 2, "{stats}");
    assert_eq!(stats["token_fetches"], 0, "{stats}");
}

#[tokio::test]
async fn metrics_count_requests_by_client_name_and_nothing_shows_a_key_or_token() {
    let app = center(&[]).await;
    let token = ok(get(&app, "/api/wechat/access_token", SHOP_KEY).await).await;
    ok(get(&app, "/api/wechat/access_token", SHOP_KEY).await).await;
    let ticket = ok(get(&app, "/api/wechat/jsapi_ticket", CRM_KEY).await).await;
    let report = json!({"access_token": token["access_token"]});
    ok(refresh(&app, "/api/wechat/access_token/refresh", CRM_KEY, report).await).await;
    let line = |client, endpoint| {
        format!(
            "wxlogin_token_center_requests_total{{client=\"{client}\",endpoint=\"{endpoint}\"}}"
        )
    };
    app.assert_metric(&line("shop", "access_token"), 2).await;
    app.assert_metric(&line("crm", "jsapi_ticket"), 1).await;
    app.assert_metric(&line("crm", "access_token_refresh"), 1)
        .await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let log = app.log();
    for secret in [
        SHOP_KEY,
        CRM_KEY,
        token["access_token"].as_str().unwrap(),
        ticket["ticket"].as_str().unwrap(),
    ] {
        assert!(
            !metrics.contains(secret) && !log.contains(secret),
            "{secret} leaked"
        );
    }
}

#[test]
fn bad_token_clients_stop_the_start_without_showing_the_key() {
    let short = "shop:0123456789abcdef0123456789abcde";
    let twice = format!("shop:{SHOP_KEY},shop:{CRM_KEY}");
    for bad in [short, "shop", &twice] {
        let (status, stderr) = run_to_exit(&[("WXLOGIN_TOKEN_CLIENTS", bad)]);
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("WXLOGIN_TOKEN_CLIENTS"), "{stderr}");
        assert!(
            !stderr.contains("0123456789abcdef") && !stderr.contains(CRM_KEY),
            "{stderr}"
        );
    }
}

const EARLY_REFUSAL: &str = "WeChat refused the access token soon after wxlogin fetched it";

#[tokio::test]
async fn a_token_replaced_behind_wxlogins_back_is_warned_about_once_naming_the_fix() {
    let app = spawn_app_with(&[]).await;
    app.create_qr().await;
    for _ in 0..3 {
        // Another server of the account fetches a token: WeChat refuses wxlogin's.
        app.control(json!({"revoke_token": true})).await;
        app.create_qr().await;
    }
    assert_eq!(app.sandbox_stats().await["token_fetches"], 4);
    app.wait_for_log(EARLY_REFUSAL).await;
    let log = app.log();
    assert_eq!(log.matches(EARLY_REFUSAL).count(), 1, "{log}");
    let line = log.lines().find(|l| l.contains(EARLY_REFUSAL)).unwrap();
    assert!(
        line.contains("WXLOGIN_TOKEN_CLIENTS") && line.contains("WXLOGIN_STABLE_TOKEN=1"),
        "{line}"
    );
}
