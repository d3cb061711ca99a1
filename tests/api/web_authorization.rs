//! One tap inside WeChat: web authorization (网页授权) through the sandbox's simulated
//! authorize page and code exchange. The state is bound to the browser that started and is
//! good once, so an attacker's code delivered to a victim's browser logs no one in.

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE, USER_AGENT};
use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{run_to_exit, spawn_app, spawn_app_with, TestApp, BROWSER_KEY};

const WECHAT_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN";

async fn app_with(env: &[(&str, &str)]) -> TestApp {
    let mut env = env.to_vec();
    env.push(("WXLOGIN_OAUTH_DOMAIN", "127.0.0.1"));
    spawn_app_with(&env).await
}

/// A client that shows redirects instead of following them.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// A browser's web authorization, started: the scene, the state WeChat carries, and the
/// cookie that binds it to that browser.
struct Started {
    scene_id: String,
    state: String,
    redirect_uri: String,
    cookie: String,
}

/// The browser with `browser_key` creates a scene and taps "log in with this WeChat".
async fn start(app: &TestApp) -> Started {
    start_returning_to(app, "").await
}

/// [`start`] from a login page that goes back to `return_to` (unless empty) once logged in.
async fn start_returning_to(app: &TestApp, return_to: &str) -> Started {
    let qr = app.create_qr().await;
    let mut path = format!("/api/qrcode/{}/web-authorization", qr.scene_id);
    if !return_to.is_empty() {
        path.push_str(&format!("?return_to={return_to}"));
    }
    let response = no_redirects()
        .get(app.url(&path))
        .header(COOKIE, format!("wxlogin_browser={BROWSER_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let url = reqwest::Url::parse(&app.url(&location)).unwrap();
    let param = |name: &str| {
        url.query_pairs()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    Started {
        scene_id: qr.scene_id,
        state: param("state"),
        redirect_uri: param("redirect_uri"),
        cookie,
    }
}

/// "WeChat" authorizes `openid` for `started`: the callback URL it redirects to, with a code.
async fn authorize(app: &TestApp, started: &Started, openid: &str, snapshot: bool) -> String {
    let mut url = reqwest::Url::parse(&app.url("/sandbox/oauth2/authorized")).unwrap();
    url.query_pairs_mut()
        .append_pair("redirect_uri", &started.redirect_uri)
        .append_pair("state", &started.state)
        .append_pair("openid", openid);
    if snapshot {
        url.query_pairs_mut().append_pair("snapshot", "1");
    }
    let response = no_redirects().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    response.headers()[LOCATION].to_str().unwrap().to_owned()
}

/// The browser carrying `cookie` (if any) arrives at `callback`.
async fn arrive(callback: &str, cookie: Option<&str>) -> (StatusCode, String, String) {
    let mut request = no_redirects().get(callback);
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get(LOCATION)
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, location, response.text().await.unwrap())
}

fn with_code(callback: &str, code: &str) -> String {
    let mut url = reqwest::Url::parse(callback).unwrap();
    let state = url
        .query_pairs()
        .find(|(n, _)| n == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    url.query_pairs_mut()
        .clear()
        .append_pair("code", code)
        .append_pair("state", &state);
    url.into()
}

async fn state_of(app: &TestApp, scene_id: &str) -> Value {
    app.status(scene_id, 0).await.1
}

#[tokio::test]
async fn the_authorize_url_is_wechats_in_its_order_and_the_state_cookie_is_lax_and_http_only() {
    let app = app_with(&[]).await;
    let qr = app.create_qr().await;
    let response = no_redirects()
        .get(app.url(&format!("/api/qrcode/{}/web-authorization", qr.scene_id)))
        .header(COOKIE, format!("wxlogin_browser={BROWSER_KEY}"))
        .send()
        .await
        .unwrap();
    let location = response.headers()[LOCATION].to_str().unwrap();
    let callback: String =
        url::form_urlencoded::byte_serialize(app.url("/web-authorization/callback").as_bytes())
            .collect();
    let prefix = format!(
        "/sandbox/oauth2/authorize?appid=wxsandbox0000000&redirect_uri={callback}&response_type=code&scope=snsapi_base&state="
    );
    assert!(location.starts_with(&prefix), "{location}");
    let state = &location[prefix.len()..location.len() - "#wechat_redirect".len()];
    assert!(location.ends_with("#wechat_redirect"), "{location}");
    assert!(
        state.len() <= 128 && state.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{state}"
    );
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap();
    for attribute in [
        "HttpOnly",
        "SameSite=Lax",
        "Path=/web-authorization/callback",
    ] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    // Only the browser that owns the scene may start.
    let stranger = no_redirects()
        .get(app.url(&format!("/api/qrcode/{}/web-authorization", qr.scene_id)))
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_bound_user_is_logged_in_with_one_tap_and_no_confirmation() {
    let app = app_with(&[("WXLOGIN_CONFIRM", "number")]).await;
    // Signed up by scanning (and confirming) once before.
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, "oWebAuthBound00000000000001", true)
        .await;
    let (_, asked) = app.status(&qr.scene_id, 0).await;
    let number = asked["confirm_number"].as_u64().unwrap().to_string();
    app.text("oWebAuthBound00000000000001", &number).await;
    app.request_code(&qr.scene_id, "13800001801").await;
    let code = app.sms_code("13800001801").await;
    assert_eq!(
        app.bind(&qr.scene_id, "13800001801", &code).await.status(),
        StatusCode::OK
    );

    let started = start(&app).await;
    let callback = authorize(&app, &started, "oWebAuthBound00000000000001", false).await;
    let (status, location, _) = arrive(&callback, Some(&started.cookie)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, "/");
    let scene = state_of(&app, &started.scene_id).await;
    assert_eq!(scene["state"], "logged_in", "{scene}");
    let me = app.me(scene["token"].as_str().unwrap()).await;
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["phone"], "13800001801");
    app.wait_for_log("web_authorization").await;
}

#[tokio::test]
async fn an_unbound_user_binds_a_phone_on_the_page() {
    let app = app_with(&[]).await;
    let started = start(&app).await;
    let callback = authorize(&app, &started, "oWebAuthNew0000000000000001", false).await;
    let (status, _, _) = arrive(&callback, Some(&started.cookie)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        state_of(&app, &started.scene_id).await["state"],
        "need_bind"
    );
    app.request_code(&started.scene_id, "13800001802").await;
    let code = app.sms_code("13800001802").await;
    assert_eq!(
        app.bind(&started.scene_id, "13800001802", &code)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_user_who_never_followed_unbinds_by_following_and_unfollowing() {
    let app = app_with(&[]).await;
    let user = "oWebAuthNoFollow00000000001";
    let started = start(&app).await;
    let callback = authorize(&app, &started, user, false).await;
    arrive(&callback, Some(&started.cookie)).await;
    let token = app.bind_phone(&started.scene_id, "13800001803").await;
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
    // No unfollow can come from a user who follows nothing: they follow, then unfollow.
    app.follow(user).await;
    app.unsubscribe(user, None).await;
    assert_eq!(app.me(&token).await.status(), StatusCode::UNAUTHORIZED);
    // Unbound: their next login asks for a phone again.
    let started = start(&app).await;
    let callback = authorize(&app, &started, user, false).await;
    arrive(&callback, Some(&started.cookie)).await;
    assert_eq!(
        state_of(&app, &started.scene_id).await["state"],
        "need_bind"
    );
}

#[tokio::test]
async fn web_authorization_spends_the_users_scan_budget_like_a_scan() {
    let app = app_with(&[("WXLOGIN_SCANS_PER_USER_PER_HOUR", "2")]).await;
    let user = "oWebAuthBudget0000000000001";
    // One scan of a QR code, one web authorization: the hour's two.
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, user, true).await;
    let started = start(&app).await;
    let callback = authorize(&app, &started, user, false).await;
    assert_eq!(
        arrive(&callback, Some(&started.cookie)).await.0,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        state_of(&app, &started.scene_id).await["state"],
        "need_bind"
    );
    // The third, by either way, logs nothing in.
    let started = start(&app).await;
    let callback = authorize(&app, &started, user, false).await;
    let (status, _, _) = arrive(&callback, Some(&started.cookie)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(state_of(&app, &started.scene_id).await["state"], "waiting");
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, user, false).await;
    assert_eq!(state_of(&app, &qr.scene_id).await["state"], "waiting");
    // Another user's budget is their own.
    let started = start(&app).await;
    let callback = authorize(&app, &started, "oWebAuthBudget0000000000002", false).await;
    assert_eq!(
        arrive(&callback, Some(&started.cookie)).await.0,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn an_attackers_code_delivered_to_a_victims_browser_logs_no_one_in() {
    let app = app_with(&[]).await;
    // The attacker starts in their own browser and gets WeChat's redirect for their account.
    let attacker = start(&app).await;
    let planted = authorize(&app, &attacker, "oWebAuthAttacker00000000001", false).await;
    // The victim has a login of their own under way, in a browser with its own state cookie.
    let victim = start(&app).await;
    let (status, _, page) = arrive(&planted, Some(&victim.cookie)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("不是从本浏览器发起的"), "{page}");
    assert_eq!(state_of(&app, &victim.scene_id).await["state"], "waiting");
    // Nor with no cookie at all.
    let (status, _, _) = arrive(&planted, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(state_of(&app, &attacker.scene_id).await["state"], "waiting");
}

#[tokio::test]
async fn a_state_is_good_once() {
    let app = app_with(&[]).await;
    let started = start(&app).await;
    let callback = authorize(&app, &started, "oWebAuthTwice00000000000001", false).await;
    // The first arrival, with a code WeChat never issued: refused, and the state spent.
    let (status, _, page) =
        arrive(&with_code(&callback, "not-a-code"), Some(&started.cookie)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("40029"), "{page}");
    // The same state again, even with the browser's cookie replayed and a good code.
    let (status, _, _) = arrive(&callback, Some(&started.cookie)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(state_of(&app, &started.scene_id).await["state"], "waiting");
}

#[tokio::test]
async fn a_code_used_twice_is_told_as_wechat_says() {
    let app = app_with(&[("WXLOGIN_DEFAULT_LANG", "en")]).await;
    let first = start(&app).await;
    let callback = authorize(&app, &first, "oWebAuthCodeUsed00000000001", false).await;
    assert_eq!(
        arrive(&callback, Some(&first.cookie)).await.0,
        StatusCode::SEE_OTHER
    );
    let code = reqwest::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(n, _)| n == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let second = start(&app).await;
    let replayed = authorize(&app, &second, "oWebAuthCodeUsed00000000001", false).await;
    let (status, _, page) = arrive(&with_code(&replayed, &code), Some(&second.cookie)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("was used already (40163)"), "{page}");
    assert_eq!(state_of(&app, &second.scene_id).await["state"], "waiting");
}

#[tokio::test]
async fn the_way_back_keeps_the_page_to_return_to() {
    // An OpenID Connect authorization to go on with (the one place a login page returns to).
    const RETURN_TO: &str = "%2Foauth%2Fauthorize%3Fclient_id%3Dx";
    const BACK: &str = "/?return_to=%2Foauth%2Fauthorize%3Fclient_id%3Dx";
    let app = app_with(&[("WXLOGIN_SCANS_PER_USER_PER_HOUR", "1")]).await;
    let started = start_returning_to(&app, RETURN_TO).await;
    let callback = authorize(&app, &started, "oWebAuthReturn0000000000001", false).await;
    let (status, location, _) = arrive(&callback, Some(&started.cookie)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, BACK);
    // Refused (this hour's one scan is spent): a page, whose link goes back the same way.
    let started = start_returning_to(&app, RETURN_TO).await;
    let callback = authorize(&app, &started, "oWebAuthReturn0000000000001", false).await;
    let response = no_redirects()
        .get(&callback)
        .header(COOKIE, &started.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.unwrap();
    assert!(page.contains(&format!("href=\"{BACK}\"")), "{page}");
}

#[tokio::test]
async fn a_snapshot_page_user_is_refused() {
    let app = app_with(&[]).await;
    let started = start(&app).await;
    let callback = authorize(&app, &started, "oWebAuthSnapshot00000000001", true).await;
    let (status, _, page) = arrive(&callback, Some(&started.cookie)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("快照页"), "{page}");
    assert_eq!(state_of(&app, &started.scene_id).await["state"], "waiting");
}

#[tokio::test]
async fn the_button_is_offered_only_inside_wechat_and_only_when_configured() {
    let page = |app: &TestApp, ua: &'static str| {
        let request = reqwest::Client::new()
            .get(app.url("/"))
            .header(USER_AGENT, ua);
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let configured = app_with(&[]).await;
    assert!(page(&configured, WECHAT_UA)
        .await
        .contains(" data-in-wechat"));
    assert!(!page(&configured, "Mozilla/5.0 Chrome/120")
        .await
        .contains(" data-in-wechat"));
    let plain = spawn_app().await;
    assert!(!page(&plain, WECHAT_UA).await.contains(" data-in-wechat"));
    let refused = reqwest::Client::new()
        .get(plain.url("/web-authorization/callback?code=a&state=b"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_sandboxs_authorize_page_redirects_only_to_the_domain_as_wechat_does() {
    let app = app_with(&[]).await;
    for path in [
        "/sandbox/oauth2/authorized?redirect_uri=https%3A%2F%2Fevil.example%2Fx&state=s&openid=oEvil",
        "/sandbox/oauth2/authorize?appid=wxsandbox0000000&redirect_uri=https%3A%2F%2Fevil.example%2Fx&response_type=code&scope=snsapi_base&state=s",
    ] {
        let response = no_redirects().get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        assert!(response.headers().get(LOCATION).is_none(), "{path}");
    }
}

#[test]
fn the_domain_must_be_the_public_urls_host() {
    let (status, stderr) = run_to_exit(&[
        ("WXLOGIN_OAUTH_DOMAIN", "login.example.com"),
        ("WXLOGIN_PUBLIC_URL", "http://other.example.com"),
    ]);
    assert!(!status.success());
    assert!(
        stderr.contains("WXLOGIN_OAUTH_DOMAIN") && stderr.contains("other.example.com"),
        "{stderr}"
    );
    let (status, stderr) = run_to_exit(&[("WXLOGIN_OAUTH_DOMAIN", "https://login.example.com/")]);
    assert!(!status.success());
    assert!(stderr.contains("WXLOGIN_OAUTH_DOMAIN"), "{stderr}");
}
