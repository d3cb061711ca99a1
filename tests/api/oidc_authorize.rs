//! The authorization side of the OpenID Connect provider: `max_age`, every `prompt`, the
//! endpoint by POST, the error codes of OpenID Connect Core §3.1.2.6, the consent the user sees
//! and gives once per client, and RP-initiated logout.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::{header, StatusCode};
use serde_json::Value;
use url::Url;

use crate::helpers::{spawn_app_on, TestApp};
use crate::oidc::{
    authorize, fresh_tokens, http, param, redirected, userinfo, Rp, SHOP, SHOP_CALLBACK, SHOP_RP,
};

/// Registered with a name full of markup, to show it is escaped.
const SHOP_NAME: &str = "Shop & <Friends>";
const SHOP_NAME_HTML: &str = "Shop &amp; &lt;Friends&gt;";
const SHOP_SIGNED_OUT: &str = "https://shop.example/signed-out";
const BLOG: Rp = Rp {
    id: "blog",
    secret: "blog-secret-0123456789abcdef0123456789",
    callback: "https://blog.example/cb",
};

/// A sandbox server with the shop (which registers where to go after signing out) and the blog.
async fn provider() -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let path = dir.path().join("clients.toml");
    std::fs::write(
        &path,
        format!(
            "[[clients]]\nid = \"{SHOP}\"\nname = \"{}\"\nredirect_uris = [\"{SHOP_CALLBACK}\"]\n\
             post_logout_redirect_uris = [\"{SHOP_SIGNED_OUT}\"]\nsecret = \"{}\"\n\n\
             [[clients]]\nid = \"{}\"\nname = \"Blog\"\nredirect_uris = [\"{}\"]\nsecret = \"{}\"\n",
            SHOP_NAME, SHOP_RP.secret, BLOG.id, BLOG.callback, BLOG.secret
        ),
    )
    .unwrap();
    let clients = path.display().to_string();
    // These tests read the pages' English.
    spawn_app_on(
        dir,
        &[
            ("WXLOGIN_OIDC_CLIENTS", &clients),
            ("WXLOGIN_DEFAULT_LANG", "en"),
        ],
    )
    .await
}

/// The shop's authorization request with `extra` parameters (the same name again replaces).
fn shop_request(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", SHOP),
        ("redirect_uri", SHOP_CALLBACK),
        ("scope", "openid phone"),
        ("state", "st"),
        ("nonce", "n-1"),
    ];
    for &(name, value) in extra {
        params.retain(|(n, _)| *n != name);
        params.push((name, value));
    }
    params
}

/// What an authorization answered, as the tests tell them apart.
#[derive(Debug, PartialEq)]
enum Answer {
    Code,
    Error(String),
    LoginPage,
    ConsentPage,
}

async fn answer_of(response: reqwest::Response) -> Answer {
    if response.status() == StatusCode::OK {
        let page = response.text().await.unwrap();
        assert!(page.contains("name=\"consent\" value=\"allow\""), "{page}");
        return Answer::ConsentPage;
    }
    let location = response.headers()[header::LOCATION].to_str().unwrap();
    if location.starts_with("/?return_to=") {
        return Answer::LoginPage;
    }
    let (target, params) = redirected(&response);
    assert_eq!(target, SHOP_CALLBACK);
    assert_eq!(param(&params, "state"), Some("st"));
    match (param(&params, "code"), param(&params, "error")) {
        (Some(_), None) => Answer::Code,
        (None, Some(error)) => Answer::Error(error.to_owned()),
        other => panic!("{other:?}"),
    }
}

/// The hidden fields of the page's form, unescaped.
fn hidden_fields(page: &str) -> Vec<(String, String)> {
    let unescape = |s: &str| {
        s.replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
    page.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .map(|rest| {
            let (name, rest) = rest.split_once("\" value=\"").unwrap();
            let (value, _) = rest.split_once('"').unwrap();
            (unescape(name), unescape(value))
        })
        .collect()
}

/// Posts the form of `page` to `path` as the browser holding `session` would, with `extra`.
async fn submit(
    app: &TestApp,
    session: &str,
    path: &str,
    page: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut fields = hidden_fields(page);
    fields.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    http()
        .post(app.url(path))
        .header(header::COOKIE, format!("wxlogin_session={session}"))
        .form(&fields)
        .send()
        .await
        .unwrap()
}

/// The user's click on the consent page `response` (`allow` or `deny`).
async fn answer_consent(
    app: &TestApp,
    session: &str,
    response: reqwest::Response,
    answer: &str,
) -> reqwest::Response {
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    submit(
        app,
        session,
        "/oauth/authorize",
        &page,
        &[("consent", answer)],
    )
    .await
}

/// The user allows the client if the authorization `response` asks them (the consent page).
pub(crate) async fn allow_if_asked(
    app: &TestApp,
    session: &str,
    response: reqwest::Response,
) -> reqwest::Response {
    if response.status() != StatusCode::OK {
        return response;
    }
    answer_consent(app, session, response, "allow").await
}

/// The shop's authorization with `extra`, in the browser holding `session`.
async fn shop_authorize(
    app: &TestApp,
    session: Option<&str>,
    extra: &[(&'static str, &'static str)],
) -> reqwest::Response {
    authorize(app, session, &shop_request(extra)).await
}

/// The user allows the shop once, as its first login does.
async fn consent_to_shop(app: &TestApp, session: &str) {
    let asked = shop_authorize(app, Some(session), &[]).await;
    assert_eq!(
        answer_of(answer_consent(app, session, asked, "allow").await).await,
        Answer::Code
    );
}

/// The login page's way back: the `return_to` of a redirect to it.
fn return_to(response: &reqwest::Response) -> String {
    let location = response.headers()[header::LOCATION].to_str().unwrap();
    let url = Url::parse(&format!("http://x{location}")).unwrap();
    let (_, value) = url.query_pairs().find(|(k, _)| k == "return_to").unwrap();
    value.into_owned()
}

async fn get_with_session(app: &TestApp, session: &str, path: &str) -> reqwest::Response {
    http()
        .get(app.url(path))
        .header(header::COOKIE, format!("wxlogin_session={session}"))
        .send()
        .await
        .unwrap()
}

/// The claims of an ID token, read without verifying (the tests of oidc.rs verify them).
pub(crate) fn claims(id_token: &str) -> Value {
    let payload = id_token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// When the session started, as `/api/me` says.
async fn logged_in_at(app: &TestApp, session: &str) -> u64 {
    let me: Value = app.me(session).await.json().await.unwrap();
    me["logged_in_at"].as_u64().unwrap()
}

/// The code of a redirect to the shop, redeemed; returns the ID token's claims.
async fn redeem_answer(app: &TestApp, response: &reqwest::Response) -> Value {
    let (_, params) = redirected(response);
    let code = param(&params, "code").expect("a code");
    let (status, tokens) = crate::oidc::exchange(
        app,
        Some((SHOP, SHOP_RP.secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", SHOP_CALLBACK),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    claims(tokens["id_token"].as_str().unwrap())
}

#[tokio::test]
async fn max_age_zero_always_logs_in_again() {
    let app = provider().await;
    let old = app.sign_up("oMaxAgeZero", "13800000401").await;
    consent_to_shop(&app, &old).await;
    // Sessions count in seconds: the old one must be from an earlier second than the request.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let request = [("max_age", "0")];
    let response = shop_authorize(&app, Some(&old), &request).await;
    assert_eq!(answer_of_ref(&response), Some(Answer::LoginPage));
    let way_back = return_to(&response);
    // Back from the login page with the old session (the user did not scan): no code from it.
    let again = get_with_session(&app, &old, &way_back).await;
    assert_eq!(answer_of(again).await, Answer::LoginPage);
    // Without a page to show, max_age=0 is login_required.
    let silent = shop_authorize(&app, Some(&old), &[("max_age", "0"), ("prompt", "none")]).await;
    assert_eq!(
        answer_of(silent).await,
        Answer::Error("login_required".into())
    );

    // A fresh scan: the way back answers a code, whose ID token says when that login was.
    let fresh = app.scan_in("oMaxAgeZero").await;
    let back = get_with_session(&app, &fresh, &way_back).await;
    let claims = redeem_answer(&app, &back).await;
    assert_eq!(claims["auth_time"], logged_in_at(&app, &fresh).await);
}

/// `Some(Answer::LoginPage)` for a redirect to the login page, without consuming the answer.
fn answer_of_ref(response: &reqwest::Response) -> Option<Answer> {
    let location = response.headers().get(header::LOCATION)?.to_str().ok()?;
    location
        .starts_with("/?return_to=")
        .then_some(Answer::LoginPage)
}

#[tokio::test]
async fn max_age_reuses_a_session_younger_than_it_and_not_an_older_one() {
    let app = provider().await;
    let session = app.sign_up("oMaxAge", "13800000402").await;
    consent_to_shop(&app, &session).await;
    // Time passes between the login and the authorization, so the code's time is not the login's.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let reused = shop_authorize(&app, Some(&session), &[("max_age", "3600")]).await;
    let claims = redeem_answer(&app, &reused).await;
    assert_eq!(claims["auth_time"], logged_in_at(&app, &session).await);
    assert!(claims["iat"].as_u64().unwrap() > claims["auth_time"].as_u64().unwrap());
    // The same session is now older than one second.
    let stale = shop_authorize(&app, Some(&session), &[("max_age", "1")]).await;
    assert_eq!(answer_of(stale).await, Answer::LoginPage);
}

#[tokio::test]
async fn each_prompt_value_and_combination_does_what_it_says() {
    let app = provider().await;
    let session = app.sign_up("oPrompt", "13800000403").await;
    consent_to_shop(&app, &session).await;
    let invalid = || Answer::Error("invalid_request".into());
    let cases = [
        ("none", Answer::Code),
        ("login", Answer::LoginPage),
        ("select_account", Answer::LoginPage),
        ("consent", Answer::ConsentPage),
        ("login consent", Answer::LoginPage),
        ("consent login", Answer::LoginPage),
        ("unheard-of", Answer::Code),
        ("consent unheard-of", Answer::ConsentPage),
        ("none login", invalid()),
        ("none consent", invalid()),
        ("select_account none", invalid()),
        ("none unheard-of", invalid()),
    ];
    for (prompt, expected) in cases {
        let response = shop_authorize(&app, Some(&session), &[("prompt", prompt)]).await;
        assert_eq!(answer_of(response).await, expected, "prompt={prompt}");
    }
}

#[tokio::test]
async fn prompt_login_consent_logs_in_afresh_then_asks_consent() {
    let app = provider().await;
    let old = app.sign_up("oLoginConsent", "13800000404").await;
    consent_to_shop(&app, &old).await;
    // Sessions count in seconds: the old one must be from an earlier second than the request.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let response = shop_authorize(&app, Some(&old), &[("prompt", "login consent")]).await;
    let way_back = return_to(&response);
    assert!(way_back.contains("prompt=consent"), "{way_back}");
    assert_eq!(
        answer_of(get_with_session(&app, &old, &way_back).await).await,
        Answer::LoginPage
    );
    let fresh = app.scan_in("oLoginConsent").await;
    let asked = get_with_session(&app, &fresh, &way_back).await;
    assert_eq!(answer_of(asked).await, Answer::ConsentPage);
    let asked = get_with_session(&app, &fresh, &way_back).await;
    let allowed = answer_consent(&app, &fresh, asked, "allow").await;
    let claims = redeem_answer(&app, &allowed).await;
    assert_eq!(claims["auth_time"], logged_in_at(&app, &fresh).await);
}

#[tokio::test]
async fn prompt_none_answers_login_required_or_consent_required() {
    let app = provider().await;
    let silent = [("prompt", "none")];
    let no_session = shop_authorize(&app, None, &silent).await;
    assert_eq!(
        answer_of(no_session).await,
        Answer::Error("login_required".into())
    );
    let session = app.sign_up("oSilent", "13800000405").await;
    let no_consent = shop_authorize(&app, Some(&session), &silent).await;
    assert_eq!(
        answer_of(no_consent).await,
        Answer::Error("consent_required".into())
    );
    consent_to_shop(&app, &session).await;
    let consented = shop_authorize(&app, Some(&session), &silent).await;
    assert_eq!(answer_of(consented).await, Answer::Code);
}

#[tokio::test]
async fn post_authorize_behaves_as_get() {
    let app = provider().await;
    let session = app.sign_up("oPost", "13800000406").await;
    consent_to_shop(&app, &session).await;
    let post = |params: Vec<(&'static str, &'static str)>, session: Option<String>| {
        let mut request = http().post(app.url("/oauth/authorize")).form(&params);
        if let Some(session) = session {
            request = request.header(header::COOKIE, format!("wxlogin_session={session}"));
        }
        request.send()
    };
    let code = post(shop_request(&[]), Some(session.clone()))
        .await
        .unwrap();
    let claims = redeem_answer(&app, &code).await;
    assert_eq!(claims["aud"], SHOP);
    let without_session = post(shop_request(&[]), None).await.unwrap();
    assert_eq!(answer_of(without_session).await, Answer::LoginPage);
    let error = post(
        shop_request(&[("prompt", "none login")]),
        Some(session.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        answer_of(error).await,
        Answer::Error("invalid_request".into())
    );
    // An unregistered redirect URI gets the page, by POST as by GET.
    let evil = post(
        shop_request(&[("redirect_uri", "https://evil.example/cb")]),
        Some(session.clone()),
    )
    .await
    .unwrap();
    assert_eq!(evil.status(), StatusCode::BAD_REQUEST);
    assert!(evil.headers().get(header::LOCATION).is_none());
    // A body that is not a form can't name where to go back: the page.
    let json = http()
        .post(app.url("/oauth/authorize"))
        .json(&serde_json::json!({"client_id": SHOP, "redirect_uri": SHOP_CALLBACK}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), StatusCode::BAD_REQUEST);
    assert!(json.headers().get(header::LOCATION).is_none());
    assert!(json.text().await.unwrap().contains("malformed"));
}

#[tokio::test]
async fn unsupported_parameters_and_bad_combinations_get_their_error_codes() {
    let app = provider().await;
    let session = app.sign_up("oCodes", "13800000407").await;
    consent_to_shop(&app, &session).await;
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("request", "eyJhbGciOiJub25lIn0.e30.")],
            "request_not_supported",
        ),
        (
            &[("request_uri", "https://shop.example/request.jwt")],
            "request_uri_not_supported",
        ),
        (&[("registration", "{}")], "registration_not_supported"),
        (
            &[("response_type", "id_token")],
            "unsupported_response_type",
        ),
        (
            &[("response_type", "code id_token")],
            "unsupported_response_type",
        ),
        (&[("response_mode", "fragment")], "invalid_request"),
        (&[("scope", "profile phone")], "invalid_scope"),
        (&[("max_age", "soon")], "invalid_request"),
        (&[("max_age", "-1")], "invalid_request"),
    ];
    for (extra, error) in cases {
        let mut params: Vec<(&str, &str)> = shop_request(&[]);
        for &(name, value) in extra.iter() {
            params.retain(|(n, _)| *n != name);
            params.push((name, value));
        }
        let response = authorize(&app, Some(&session), &params).await;
        assert_eq!(
            answer_of(response).await,
            Answer::Error(error.to_string()),
            "{extra:?}"
        );
    }
    // Without response_type at all: invalid_request.
    let mut params = shop_request(&[]);
    params.retain(|(n, _)| *n != "response_type");
    let response = authorize(&app, Some(&session), &params).await;
    assert_eq!(
        answer_of(response).await,
        Answer::Error("invalid_request".into())
    );
    // Before the redirect URI is known to be the client's, nothing is redirected.
    let mut params = shop_request(&[("request", "x")]);
    params.retain(|(n, _)| *n != "redirect_uri");
    params.push(("redirect_uri", "https://evil.example/cb"));
    let response = authorize(&app, Some(&session), &params).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get(header::LOCATION).is_none());
}

#[tokio::test]
async fn consent_is_asked_once_per_client_and_remembered_across_restarts() {
    let mut app = provider().await;
    let session = app.sign_up("oConsent", "13800000408").await;
    let first = shop_authorize(&app, Some(&session), &[("scope", "openid")]).await;
    assert_eq!(answer_of(first).await, Answer::ConsentPage);
    let first = shop_authorize(&app, Some(&session), &[("scope", "openid")]).await;
    let allowed = answer_consent(&app, &session, first, "allow").await;
    assert_eq!(answer_of(allowed).await, Answer::Code);
    let second = shop_authorize(&app, Some(&session), &[("scope", "openid")]).await;
    assert_eq!(answer_of(second).await, Answer::Code);
    // Consent to log in is not consent to the phone number.
    let more = shop_authorize(&app, Some(&session), &[]).await;
    assert_eq!(answer_of(more).await, Answer::ConsentPage);
    // Per client: the blog asks for itself.
    let blog = authorize(
        &app,
        Some(&session),
        &[
            ("response_type", "code"),
            ("client_id", BLOG.id),
            ("redirect_uri", BLOG.callback),
            ("scope", "openid"),
        ],
    )
    .await;
    assert_eq!(blog.status(), StatusCode::OK);
    // Remembered on disk: after a restart, and with a new login, the shop needs no page.
    app.restart();
    let fresh = app.scan_in("oConsent").await;
    let after = shop_authorize(&app, Some(&fresh), &[("scope", "openid")]).await;
    assert_eq!(answer_of(after).await, Answer::Code);
}

#[tokio::test]
async fn declining_consent_answers_access_denied() {
    let app = provider().await;
    let session = app.sign_up("oDecline", "13800000409").await;
    let asked = shop_authorize(&app, Some(&session), &[]).await;
    let declined = answer_consent(&app, &session, asked, "deny").await;
    assert_eq!(
        answer_of(declined).await,
        Answer::Error("access_denied".into())
    );
    // Nothing is remembered: the next request asks again.
    let again = shop_authorize(&app, Some(&session), &[]).await;
    assert_eq!(answer_of(again).await, Answer::ConsentPage);
}

#[tokio::test]
async fn consent_needs_the_pages_proof_and_a_post() {
    let app = provider().await;
    let session = app.sign_up("oForgedConsent", "13800000410").await;
    let asked = shop_authorize(&app, Some(&session), &[]).await;
    let page = asked.text().await.unwrap();
    let fields = hidden_fields(&page);
    let (_, proof) = fields.iter().find(|(k, _)| k == "consent_proof").unwrap();
    // Another site's form can't know the proof.
    let forged = submit(
        &app,
        &session,
        "/oauth/authorize",
        "",
        &shop_request(&[("consent", "allow"), ("consent_proof", "guessed")]),
    )
    .await;
    assert_eq!(answer_of(forged).await, Answer::ConsentPage);
    // Another session's proof proves nothing for this one.
    let other = app.sign_up("oOtherBrowser", "13800000411").await;
    let stolen = submit(
        &app,
        &other,
        "/oauth/authorize",
        &page,
        &[("consent", "allow")],
    )
    .await;
    assert_eq!(answer_of(stolen).await, Answer::ConsentPage);
    // A link (GET) with the right proof still only shows the page.
    let mut link: Vec<(&str, &str)> = shop_request(&[("consent", "allow")]);
    link.push(("consent_proof", proof.as_str()));
    let by_link = authorize(&app, Some(&session), &link).await;
    assert_eq!(answer_of(by_link).await, Answer::ConsentPage);
    let still = shop_authorize(&app, Some(&session), &[("prompt", "none")]).await;
    assert_eq!(
        answer_of(still).await,
        Answer::Error("consent_required".into())
    );
}

#[tokio::test]
async fn the_login_and_consent_pages_name_the_client_and_the_phone_scope() {
    let app = provider().await;
    // The login page an authorization sends a user without a session to.
    let to_login = shop_authorize(&app, None, &[]).await;
    let location = to_login.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let login_page = app.get(&location).await.text().await.unwrap();
    assert!(
        login_page.contains(&format!(
            "<strong>{SHOP_NAME_HTML}</strong> asks you to log in"
        )),
        "{login_page}"
    );
    assert!(
        login_page.contains("will get your mobile number"),
        "{login_page}"
    );
    assert!(!login_page.contains("<Friends>"), "{login_page}");
    let bare = shop_authorize(&app, None, &[("scope", "openid")]).await;
    let location = bare.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let bare_page = app.get(&location).await.text().await.unwrap();
    assert!(bare_page.contains(SHOP_NAME_HTML));
    assert!(
        !bare_page.contains("will get your mobile number"),
        "{bare_page}"
    );
    // The plain login page names nobody.
    assert!(!app
        .get("/")
        .await
        .text()
        .await
        .unwrap()
        .contains("asks you"));

    // The consent page: the name, the phone number, two labelled buttons, and no framing.
    let session = app.sign_up("oPages", "13800000412").await;
    let consent = shop_authorize(&app, Some(&session), &[]).await;
    assert_eq!(consent.status(), StatusCode::OK);
    let csp = consent.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let page = consent.text().await.unwrap();
    assert!(
        page.contains(&format!("<strong>{SHOP_NAME_HTML}</strong>")),
        "{page}"
    );
    assert!(page.contains("will get your mobile number"), "{page}");
    assert!(
        page.contains(">Allow</button>") && page.contains(">Decline</button>"),
        "{page}"
    );
    assert!(!page.contains("<Friends>"), "{page}");
    let bare = shop_authorize(&app, Some(&session), &[("scope", "openid")]).await;
    assert!(!bare
        .text()
        .await
        .unwrap()
        .contains("will get your mobile number"));
}

#[tokio::test]
async fn discovery_names_the_end_session_endpoint_and_every_prompt() {
    let app = provider().await;
    let discovery: Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["end_session_endpoint"], app.url("/oauth/logout"));
    assert_eq!(
        discovery["prompt_values_supported"],
        serde_json::json!(["none", "login", "consent", "select_account"])
    );
}

/// `/oauth/logout` with `params`, by GET, in the browser holding `session`.
async fn logout(
    app: &TestApp,
    session: Option<&str>,
    params: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = http().get(app.url("/oauth/logout")).query(params);
    if let Some(session) = session {
        request = request.header(header::COOKIE, format!("wxlogin_session={session}"));
    }
    request.send().await.unwrap()
}

/// A user logged in to the shop: their session, ID token and access token.
async fn shop_user(app: &TestApp, openid: &str, phone: &str) -> (String, String, String) {
    let session = app.sign_up(openid, phone).await;
    let (id_token, access, _) = fresh_tokens(app, SHOP_RP, &session).await;
    (session, id_token, access)
}

async fn still_logged_in(app: &TestApp, session: &str) -> bool {
    app.me(session).await.status() == StatusCode::OK
}

#[tokio::test]
async fn logout_with_the_users_id_token_ends_their_session_and_tokens() {
    let app = provider().await;
    let (session, id_token, access) = shop_user(&app, "oLogout", "13800000413").await;
    let response = logout(
        &app,
        Some(&session),
        &[
            ("id_token_hint", id_token.as_str()),
            ("post_logout_redirect_uri", SHOP_SIGNED_OUT),
            ("state", "bye st"),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = Url::parse(response.headers()[header::LOCATION].to_str().unwrap()).unwrap();
    assert_eq!(&location[..url::Position::AfterPath], SHOP_SIGNED_OUT);
    assert_eq!(
        location
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1,
        "bye st"
    );
    let cleared = response.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cleared.contains("wxlogin_session=") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    assert!(!still_logged_in(&app, &session).await);
    assert_eq!(
        userinfo(&app, &access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Without a registered redirect (only the hint), the user sees that they are signed out.
    let (session, id_token, _) = shop_user(&app, "oLogout2", "13800000414").await;
    let plain = logout(
        &app,
        Some(&session),
        &[("id_token_hint", id_token.as_str())],
    )
    .await;
    assert_eq!(plain.status(), StatusCode::OK);
    assert!(plain.text().await.unwrap().contains("You are signed out"));
    assert!(!still_logged_in(&app, &session).await);
}

#[tokio::test]
async fn logout_without_a_hint_about_this_user_asks_first() {
    let app = provider().await;
    let (alice, _, alice_access) = shop_user(&app, "oAskAlice", "13800000415").await;
    let (_, bob_token, _) = shop_user(&app, "oAskBob", "13800000416").await;
    // A cross-site link with no hint, or with another user's, only shows the question.
    for params in [
        vec![("client_id", SHOP)],
        vec![("id_token_hint", bob_token.as_str())],
        vec![],
    ] {
        let asked = logout(&app, Some(&alice), &params).await;
        assert_eq!(asked.status(), StatusCode::OK, "{params:?}");
        assert!(asked.text().await.unwrap().contains("Sign out?"));
        assert!(still_logged_in(&app, &alice).await, "{params:?}");
    }
    // A form from elsewhere can't answer it.
    let forged = submit(
        &app,
        &alice,
        "/oauth/logout",
        "",
        &[("logout_proof", "guessed")],
    )
    .await;
    assert_eq!(forged.status(), StatusCode::OK);
    assert!(still_logged_in(&app, &alice).await);
    // The user's own click on the page does.
    let asked = logout(
        &app,
        Some(&alice),
        &[
            ("client_id", SHOP),
            ("post_logout_redirect_uri", SHOP_SIGNED_OUT),
            ("state", "s"),
        ],
    )
    .await;
    let page = asked.text().await.unwrap();
    assert!(
        page.contains(&format!(
            "<strong>{SHOP_NAME_HTML}</strong> asks to sign you out"
        )),
        "{page}"
    );
    let confirmed = submit(&app, &alice, "/oauth/logout", &page, &[]).await;
    assert_eq!(confirmed.status(), StatusCode::FOUND);
    let location = confirmed.headers()[header::LOCATION].to_str().unwrap();
    assert_eq!(location, format!("{SHOP_SIGNED_OUT}?state=s"));
    assert!(!still_logged_in(&app, &alice).await);
    assert_eq!(
        userinfo(&app, &alice_access).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_cross_site_post_becomes_a_get_that_carries_the_cookie() {
    let app = provider().await;
    let (_, id_token, _) = shop_user(&app, "oCrossPost", "13800000417").await;
    // A browser sends no SameSite=Lax cookie with another site's POST.
    let response = http()
        .post(app.url("/oauth/logout"))
        .form(&[("id_token_hint", id_token.as_str()), ("state", "s")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()[header::LOCATION].to_str().unwrap();
    let url = Url::parse(&app.url(location)).unwrap();
    assert_eq!(url.path(), "/oauth/logout");
    let hint = url
        .query_pairs()
        .find(|(k, _)| k == "id_token_hint")
        .unwrap()
        .1;
    assert_eq!(hint, id_token);

    // The body is re-encoded, never copied into `Location`: raw line breaks, spaces and UTF-8
    // (as a hostile page posts them) come back percent-encoded, not as a 500 or a broken header.
    let response = http()
        .post(app.url("/oauth/logout"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("state=a\r\nSet-Cookie: x=1 é")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(response.headers().get(header::SET_COOKIE).is_none());
    let location = response.headers()[header::LOCATION].to_str().unwrap();
    let url = Url::parse(&app.url(location)).unwrap();
    let state = url.query_pairs().find(|(k, _)| k == "state").unwrap().1;
    assert_eq!(state, "a\r\nSet-Cookie: x=1 é");
}

#[tokio::test]
async fn a_forged_hint_or_an_unregistered_redirect_is_refused_and_ends_nothing() {
    let app = provider().await;
    let (session, id_token, _) = shop_user(&app, "oRefusedLogout", "13800000418").await;
    let (head, rest) = id_token.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let mut claims = claims(&id_token);
    claims["sub"] = "someone-else".into();
    let tampered = format!(
        "{head}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
    );
    assert_ne!(payload, tampered.split('.').nth(1).unwrap());
    let cases: [Vec<(&str, &str)>; 5] = [
        vec![("id_token_hint", tampered.as_str())],
        vec![("id_token_hint", "not-a-token")],
        vec![
            ("id_token_hint", id_token.as_str()),
            ("post_logout_redirect_uri", "https://evil.example/"),
        ],
        // The login redirect URI is not a post-logout one.
        vec![
            ("id_token_hint", id_token.as_str()),
            ("post_logout_redirect_uri", SHOP_CALLBACK),
        ],
        // No client named: no redirect can be checked.
        vec![("post_logout_redirect_uri", SHOP_SIGNED_OUT)],
    ];
    for params in cases {
        let response = logout(&app, Some(&session), &params).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{params:?}");
        assert!(
            response.headers().get(header::LOCATION).is_none(),
            "{params:?}"
        );
        assert!(still_logged_in(&app, &session).await, "{params:?}");
    }
    // The blog can't sign out the shop's user by naming itself beside the shop's token.
    let mixed = logout(
        &app,
        Some(&session),
        &[("id_token_hint", id_token.as_str()), ("client_id", BLOG.id)],
    )
    .await;
    assert_eq!(mixed.status(), StatusCode::BAD_REQUEST);
    assert!(still_logged_in(&app, &session).await);
}
