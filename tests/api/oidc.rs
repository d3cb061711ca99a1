//! wxlogin as an OpenID Connect provider: an independent relying-party library (the
//! `openidconnect` crate) runs the code flow against it, and every refusal is checked by hand.

use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet,
    CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use reqwest::{header, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

use crate::helpers::{run_command, run_to_exit, spawn_app_on, TestApp};
use crate::oidc_authorize::allow_if_asked;

pub(crate) const SHOP: &str = "shop";
pub(crate) const SHOP_SECRET: &str = "shop-secret-0123456789abcdef0123456789";
pub(crate) const SHOP_CALLBACK: &str = "https://shop.example/oauth2/callback";
const BLOG: &str = "blog";
const BLOG_SECRET: &str = "blog-secret-0123456789abcdef0123456789";
const BLOG_CALLBACK: &str = "https://blog.example/cb";
pub(crate) const SPA: &str = "spa";
const SPA_CALLBACK: &str = "http://localhost:3000/cb";
/// An origin the public client registers besides its redirect URI's.
pub(crate) const SPA_OTHER_ORIGIN: &str = "https://app.example:8443";

/// A confidential client as the tests use it.
#[derive(Clone, Copy)]
pub(crate) struct Rp {
    pub(crate) id: &'static str,
    pub(crate) secret: &'static str,
    pub(crate) callback: &'static str,
}

/// Registered without `id_token_signed_response_alg`: ES256.
pub(crate) const SHOP_RP: Rp = Rp {
    id: SHOP,
    secret: SHOP_SECRET,
    callback: SHOP_CALLBACK,
};
pub(crate) const BLOG_RP: Rp = Rp {
    id: BLOG,
    secret: BLOG_SECRET,
    callback: BLOG_CALLBACK,
};
/// A public client: its `secret` is never sent.
pub(crate) const SPA_RP: Rp = Rp {
    id: SPA,
    secret: "",
    callback: SPA_CALLBACK,
};
/// Registered RS256, as Spring Security expects by default.
pub(crate) const SPRING_RP: Rp = Rp {
    id: "spring",
    secret: "spring-secret-0123456789abcdef0123456789",
    callback: "https://spring.example/login/oauth2/code/wxlogin",
};
/// An id and a secret full of characters that HTTP Basic carries form-encoded (RFC 6749
/// §2.3.1): unreserved ones some libraries encode anyway, and `%`, `+`, `:`, `&`, `=`, `/`,
/// space and non-ASCII, which every library must.
pub(crate) const ENCODED_RP: Rp = Rp {
    id: "wx-rp_1.0~%+: é",
    secret: "s3-_.~%+:&= ü/0123456789abcdefghijklmnop",
    callback: "https://encoded.example/cb",
};

pub(crate) fn write_clients(dir: &Path) -> String {
    let path = dir.join("clients.toml");
    std::fs::write(
        &path,
        format!(
            "[[clients]]\nid = \"{SHOP}\"\nname = \"Shop\"\nredirect_uris = [\"{SHOP_CALLBACK}\"]\nsecret = \"{SHOP_SECRET}\"\nunionid = true\n\n\
             [[clients]]\nid = \"{BLOG}\"\nname = \"Blog\"\nredirect_uris = [\"{BLOG_CALLBACK}\"]\nsecret = \"{BLOG_SECRET}\"\n\n\
             [[clients]]\nid = \"{SPA}\"\nname = \"App\"\nredirect_uris = [\"{SPA_CALLBACK}\"]\n\
             allowed_origins = [\"{SPA_OTHER_ORIGIN}\"]\n\n\
             [[clients]]\nid = \"{}\"\nname = \"Spring\"\nredirect_uris = [\"{}\"]\nsecret = \"{}\"\n\
             id_token_signed_response_alg = \"RS256\"\n\n\
             [[clients]]\nid = \"{}\"\nname = \"Encoded\"\nredirect_uris = [\"{}\"]\nsecret = \"{}\"\n",
            SPRING_RP.id, SPRING_RP.callback, SPRING_RP.secret,
            ENCODED_RP.id, ENCODED_RP.callback, ENCODED_RP.secret
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// A sandbox server with the clients above.
pub(crate) async fn provider_with(env: &[(&str, &str)]) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let clients = write_clients(dir.path());
    let mut env = env.to_vec();
    env.push(("WXLOGIN_OIDC_CLIENTS", &clients));
    // These tests read the pages' English.
    env.push(("WXLOGIN_DEFAULT_LANG", "en"));
    spawn_app_on(dir, &env).await
}

pub(crate) async fn provider() -> TestApp {
    provider_with(&[]).await
}

/// An HTTP client that shows redirects instead of following them, as the relying party's
/// library and our checks need.
pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A PKCE verifier and its S256 challenge, computed here independently of the server.
pub(crate) fn pkce() -> (String, String) {
    let verifier = format!("verifier-{}", "x".repeat(40));
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// `GET /oauth/authorize` as the browser of the user holding `session` (a cookie) would.
pub(crate) async fn authorize(
    app: &TestApp,
    session: Option<&str>,
    params: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = http().get(app.url("/oauth/authorize")).query(params);
    if let Some(session) = session {
        request = request.header(header::COOKIE, format!("wxlogin_session={session}"));
    }
    request.send().await.unwrap()
}

/// The redirect's target and its query parameters.
pub(crate) fn redirected(response: &reqwest::Response) -> (String, Vec<(String, String)>) {
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()[header::LOCATION].to_str().unwrap();
    let url = Url::parse(location).unwrap();
    let params = url.query_pairs().into_owned().collect();
    (
        format!("{}{}", url.origin().ascii_serialization(), url.path()),
        params,
    )
}

pub(crate) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A code for `rp`, with PKCE; returns the code and the verifier.
pub(crate) async fn code(app: &TestApp, rp: Rp, session: &str, scope: &str) -> (String, String) {
    let (verifier, challenge) = pkce();
    let response = authorize(
        app,
        Some(session),
        &[
            ("response_type", "code"),
            ("client_id", rp.id),
            ("redirect_uri", rp.callback),
            ("scope", scope),
            ("state", "st"),
            ("nonce", "n-1"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    let response = allow_if_asked(app, session, response).await;
    let (target, params) = redirected(&response);
    assert_eq!(target, rp.callback);
    assert_eq!(param(&params, "state"), Some("st"));
    (param(&params, "code").expect("a code").to_owned(), verifier)
}

/// `POST /oauth/token` with `form`, authenticated by HTTP Basic when `basic` is given.
pub(crate) async fn exchange(
    app: &TestApp,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut request = http().post(app.url("/oauth/token")).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

pub(crate) async fn redeem(
    app: &TestApp,
    rp: Rp,
    code: &str,
    verifier: &str,
) -> (StatusCode, Value) {
    exchange(
        app,
        Some((rp.id, rp.secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", rp.callback),
            ("code_verifier", verifier),
        ],
    )
    .await
}

pub(crate) async fn userinfo(app: &TestApp, access_token: &str) -> reqwest::Response {
    http()
        .get(app.url("/oauth/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
}

/// An OAuth error answer: the status, RFC 6749's `error`, and our `message` beside it.
pub(crate) fn assert_oauth_error(
    (status, body): (StatusCode, Value),
    expected: StatusCode,
    code: &str,
) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    assert_eq!(body["message"], body["error_description"]);
}

#[tokio::test]
async fn a_relying_party_library_runs_the_code_flow_with_pkce() {
    relying_party_flow(SHOP_RP, CoreJwsSigningAlgorithm::EcdsaP256Sha256).await;
}

#[tokio::test]
async fn a_client_registered_rs256_gets_rs256_id_tokens() {
    relying_party_flow(SPRING_RP, CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256).await;
}

/// The `openidconnect` crate discovers wxlogin and runs the code flow with PKCE as `rp`, checks
/// the ID token is signed `alg` and verifies it through the JWKS, and reads userinfo.
async fn relying_party_flow(rp: Rp, alg: CoreJwsSigningAlgorithm) {
    let app = provider().await;
    let session = app.sign_up("oRelying", "13800000201").await;
    let http = http();

    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(app.address.clone()).unwrap(), &http)
            .await
            .expect("discovery");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(rp.id.into()),
        Some(ClientSecret::new(rp.secret.into())),
    )
    .set_redirect_uri(RedirectUrl::new(rp.callback.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("phone".into()))
        .set_pkce_challenge(challenge)
        .url();

    // The user's browser, logged in to wxlogin, follows the authorization URL.
    let response = http
        .get(auth_url)
        .header(header::COOKIE, format!("wxlogin_session={session}"))
        .send()
        .await
        .unwrap();
    // The first time, the user allows the client on the consent page.
    let response = allow_if_asked(&app, &session, response).await;
    let (target, params) = redirected(&response);
    assert_eq!(target, rp.callback);
    assert_eq!(param(&params, "state"), Some(csrf.secret().as_str()));
    let code = param(&params, "code").unwrap().to_owned();

    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("the code is exchanged");
    let id_token = tokens.id_token().expect("an ID token");
    assert_eq!(id_token.signing_alg().unwrap(), &alg);
    let claims = id_token
        .claims(&client.id_token_verifier(), &nonce)
        .expect("the ID token verifies through the JWKS");
    assert_eq!(claims.issuer().as_str(), app.address);
    assert!(claims.auth_time().is_some());
    assert_eq!(
        claims.phone_number().map(|p| p.as_str()),
        Some("+8613800000201")
    );
    assert_eq!(claims.phone_number_verified(), Some(true));
    assert!(!claims.subject().as_str().contains("oRelying"));

    let info: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(info.subject(), claims.subject());
    assert_eq!(
        info.phone_number().map(|p| p.as_str()),
        Some("+8613800000201")
    );
}

#[tokio::test]
async fn the_login_page_brings_the_user_back_to_the_authorization() {
    let app = provider().await;
    let (_, challenge) = pkce();
    let params = [
        ("response_type", "code"),
        ("client_id", SPA),
        ("redirect_uri", SPA_CALLBACK),
        ("scope", "openid"),
        ("state", "s p&a"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let response = authorize(&app, None, &params).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()[header::LOCATION].to_str().unwrap();
    assert!(location.starts_with("/?return_to="), "{location}");
    let login = Url::parse(&app.url(location)).unwrap();
    assert_eq!(login.path(), "/");
    let return_to = login
        .query_pairs()
        .find(|(k, _)| k == "return_to")
        .unwrap()
        .1
        .into_owned();
    assert!(return_to.starts_with("/oauth/authorize?"), "{return_to}");

    // The user scans in on that page: the status answer sets the session cookie...
    app.sign_up("oReturning", "13800000202").await;
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, "oReturning", false).await;
    let status = app
        .get(&format!("/api/qrcode/{}/status", qr.scene_id))
        .await;
    let cookie = status.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("wxlogin_session="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    let session = cookie["wxlogin_session=".len()..]
        .split(';')
        .next()
        .unwrap();
    let me = http()
        .get(app.url("/api/me"))
        .header(header::COOKIE, format!("wxlogin_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);

    // ...and the page goes back to the same authorization request, which now answers a code.
    let back = http()
        .get(app.url(&return_to))
        .header(header::COOKIE, format!("wxlogin_session={session}"))
        .send()
        .await
        .unwrap();
    let back = allow_if_asked(&app, session, back).await;
    let (target, answer) = redirected(&back);
    assert_eq!(target, SPA_CALLBACK);
    assert_eq!(param(&answer, "state"), Some("s p&a"));
    assert!(param(&answer, "code").is_some());

    // prompt=none without a session answers login_required instead of a page.
    let mut silent = params_vec(&[("prompt", "none")]);
    silent.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let response = http()
        .get(app.url("/oauth/authorize"))
        .query(&silent)
        .send()
        .await
        .unwrap();
    let (_, answer) = redirected(&response);
    assert_eq!(param(&answer, "error"), Some("login_required"));
}

fn params_vec(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn an_unknown_client_or_redirect_uri_gets_a_page_not_a_redirect() {
    let app = provider().await;
    let session = app.sign_up("oPage", "13800000203").await;
    let cases: &[&[(&str, &str)]] = &[
        &[
            ("client_id", SHOP),
            ("redirect_uri", "https://evil.example/cb"),
        ],
        &[
            ("client_id", SHOP),
            ("redirect_uri", "https://shop.example/oauth2/callback/x"),
        ],
        &[("client_id", SHOP)],
        &[("client_id", "nobody"), ("redirect_uri", SHOP_CALLBACK)],
    ];
    for case in cases {
        let mut params = case.to_vec();
        params.extend([("response_type", "code"), ("scope", "openid")]);
        let response = authorize(&app, Some(&session), &params).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{case:?}");
        assert!(
            response.headers().get(header::LOCATION).is_none(),
            "{case:?}"
        );
        let content_type = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(content_type.starts_with("text/html"), "{case:?}");
        let page = response.text().await.unwrap();
        assert!(page.contains("Cannot log in"), "{page}");
        // A registered client is named, so the user knows whose link was wrong.
        let known = case[0].1 == SHOP;
        assert_eq!(page.contains("that Shop registered"), known, "{page}");
    }
    // A query that doesn't parse can't be trusted to name where to go back either.
    let twice = [
        ("client_id", SHOP),
        ("client_id", SHOP),
        ("redirect_uri", SHOP_CALLBACK),
        ("response_type", "code"),
        ("scope", "openid"),
    ];
    let response = authorize(&app, Some(&session), &twice).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get(header::LOCATION).is_none());
    assert!(response.text().await.unwrap().contains("malformed"));
}

#[tokio::test]
async fn bad_authorization_requests_go_back_with_an_error() {
    let app = provider().await;
    let session = app.sign_up("oBadRequest", "13800000204").await;
    let (_, challenge) = pkce();
    // (client, parameters besides the client's own, the error expected)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (SPA, &[("scope", "openid")], "invalid_request"), // a public client without PKCE
        (SHOP, &[("scope", "phone")], "invalid_scope"),
        (
            SHOP,
            &[
                ("scope", "openid"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "plain"),
            ],
            "invalid_request",
        ),
        (
            SHOP,
            &[("scope", "openid"), ("response_type", "token")],
            "unsupported_response_type",
        ),
    ];
    for (client, extra, error) in cases {
        let redirect_uri = if *client == SPA {
            SPA_CALLBACK
        } else {
            SHOP_CALLBACK
        };
        let mut params = vec![
            ("client_id", *client),
            ("redirect_uri", redirect_uri),
            ("state", "keep"),
        ];
        params.extend(extra.iter().copied());
        if !extra.iter().any(|(k, _)| *k == "response_type") {
            params.push(("response_type", "code"));
        }
        let response = authorize(&app, Some(&session), &params).await;
        let (target, back) = redirected(&response);
        assert_eq!(target, redirect_uri);
        assert_eq!(param(&back, "error"), Some(*error), "{extra:?}");
        assert_eq!(param(&back, "state"), Some("keep"));
        assert!(param(&back, "code").is_none());
    }
}

#[tokio::test]
async fn bad_token_requests_are_refused() {
    let app = provider().await;
    let session = app.sign_up("oRefused", "13800000205").await;

    let (code, verifier) = code(&app, SHOP_RP, &session, "openid").await;
    let wrong_secret = exchange(
        &app,
        Some((SHOP, BLOG_SECRET)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", SHOP_CALLBACK),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_oauth_error(wrong_secret, StatusCode::UNAUTHORIZED, "invalid_client");
    let other_client = exchange(
        &app,
        None,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", SHOP_CALLBACK),
            ("code_verifier", &verifier),
            ("client_id", BLOG),
            ("client_secret", BLOG_SECRET),
        ],
    )
    .await;
    assert_oauth_error(other_client, StatusCode::BAD_REQUEST, "invalid_grant");
    let wrong_verifier = redeem(&app, SHOP_RP, &code, &format!("{verifier}y")).await;
    assert_oauth_error(wrong_verifier, StatusCode::BAD_REQUEST, "invalid_grant");
    let no_verifier = exchange(
        &app,
        Some((SHOP, SHOP_SECRET)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", SHOP_CALLBACK),
        ],
    )
    .await;
    assert_oauth_error(no_verifier, StatusCode::BAD_REQUEST, "invalid_grant");

    // The refusals did not use the code up; client_secret_post works as well as Basic.
    let (status, tokens) = exchange(
        &app,
        None,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", SHOP_CALLBACK),
            ("code_verifier", &verifier),
            ("client_id", SHOP),
            ("client_secret", SHOP_SECRET),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    let access_token = tokens["access_token"].as_str().unwrap();
    assert_eq!(userinfo(&app, access_token).await.status(), StatusCode::OK);

    // A second use is refused, and the access token from the first dies with it.
    assert_oauth_error(
        redeem(&app, SHOP_RP, &code, &verifier).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    let revoked = userinfo(&app, access_token).await;
    assert_eq!(revoked.status(), StatusCode::UNAUTHORIZED);
    assert!(revoked.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .contains("invalid_token"));

    // Garbage is a 4xx with the OAuth shape, never a 5xx.
    let (status, body) = exchange(
        &app,
        Some((SHOP, SHOP_SECRET)),
        &[("grant_type", "password")],
    )
    .await;
    assert_oauth_error(
        (status, body),
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
    );
    let raw = http()
        .post(app.url("/oauth/token"))
        .body("{}")
        .header(header::CONTENT_TYPE, "application/json")
        .send()
        .await
        .unwrap();
    assert_oauth_error(
        (raw.status(), raw.json().await.unwrap()),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
}

#[tokio::test]
async fn a_public_client_redeems_with_its_verifier_alone() {
    let app = provider().await;
    let session = app.sign_up("oPublic", "13800000206").await;
    let (code, verifier) = code(&app, SPA_RP, &session, "openid").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", SPA_CALLBACK),
        ("client_id", SPA),
    ];
    // Without its verifier a public client has nothing to prove the code with.
    assert_oauth_error(
        exchange(&app, None, &form).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    let mut with_verifier = form.to_vec();
    with_verifier.push(("code_verifier", &verifier));
    let (status, tokens) = exchange(&app, None, &with_verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let info: Value = userinfo(&app, tokens["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert!(
        info["sub"].is_string() && info.get("phone_number").is_none(),
        "{info}"
    );
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    let app = provider_with(&[("WXLOGIN_OIDC_CODE_TTL_SECS", "1")]).await;
    let session = app.sign_up("oLate", "13800000207").await;
    let (code, verifier) = code(&app, SHOP_RP, &session, "openid").await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_oauth_error(
        redeem(&app, SHOP_RP, &code, &verifier).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
}

/// A fresh ID token for `rp`; returns it, its access token, and the `sub`.
pub(crate) async fn fresh_tokens(app: &TestApp, rp: Rp, session: &str) -> (String, String, String) {
    let (code, verifier) = code(app, rp, session, "openid phone").await;
    let (status, tokens) = redeem(app, rp, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let info: Value = userinfo(app, &access).await.json().await.unwrap();
    (
        tokens["id_token"].as_str().unwrap().to_owned(),
        access,
        info["sub"].as_str().unwrap().to_owned(),
    )
}

/// Verifies `rp`'s `id_token` against the JWKS the server publishes now, with the relying-party
/// library.
async fn verify_now(app: &TestApp, rp: Rp, id_token: &str) -> String {
    verify_with(app, rp, fetch_jwks(app).await, id_token)
}

pub(crate) async fn fetch_jwks(app: &TestApp) -> CoreJsonWebKeySet {
    CoreJsonWebKeySet::fetch_async(
        &openidconnect::JsonWebKeySetUrl::new(app.url("/oauth/jwks")).unwrap(),
        &http(),
    )
    .await
    .unwrap()
}

/// Verifies an ID token as `rp` would holding `jwks`; returns its subject.
pub(crate) fn verify_with(
    app: &TestApp,
    rp: Rp,
    jwks: CoreJsonWebKeySet,
    id_token: &str,
) -> String {
    let verifier = CoreIdTokenVerifier::new_confidential_client(
        ClientId::new(rp.id.into()),
        ClientSecret::new(rp.secret.into()),
        IssuerUrl::new(app.address.clone()).unwrap(),
        jwks,
    )
    .set_allowed_algs([
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    ]);
    let token: CoreIdToken = id_token.parse().unwrap();
    let claims = token
        .claims(&verifier, &Nonce::new("n-1".into()))
        .expect("the ID token verifies");
    claims.subject().to_string()
}

/// The ID token's `alg` and `kid`, read from its header by hand.
pub(crate) fn alg_and_kid(id_token: &str) -> (String, String) {
    let header = id_token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    let field = |name: &str| header[name].as_str().unwrap().to_owned();
    (field("alg"), field("kid"))
}

/// A rotation publishes its new keys at once and signs with them only after the JWKS cache
/// lifetime: a relying party holding the JWKS from before the rotation verifies every token, old
/// and new (the switch itself is `keys::tests::a_rotation_publishes_the_next_key_at_once_…`).
#[tokio::test]
async fn tokens_verify_right_after_rotate_key_with_the_jwks_cached_before_it() {
    let app = provider().await;
    let session = app.sign_up("oRotate", "13800000208").await;
    let clients = [(SHOP_RP, "ES256"), (SPRING_RP, "RS256")];
    let mut before = Vec::new();
    for (rp, _) in clients {
        before.push(fresh_tokens(&app, rp, &session).await.0);
    }
    let cached = app.get("/oauth/jwks").await;
    assert_eq!(
        cached.headers()["cache-control"].to_str().unwrap(),
        "max-age=300"
    );
    let cached = fetch_jwks(&app).await;

    let data_dir = app.data_dir.path().display().to_string();
    let (status, stdout, stderr) = run_command(&["rotate-key"], &[("WXLOGIN_DATA_DIR", &data_dir)]);
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout.matches("new signing key").count(), 2, "{stdout}");

    let jwks: Value = app.get("/oauth/jwks").await.json().await.unwrap();
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        4,
        "the next keys are published at once: {jwks}"
    );
    for ((rp, alg), before) in clients.into_iter().zip(before) {
        let (after, _, _) = fresh_tokens(&app, rp, &session).await;
        assert_eq!(alg_and_kid(&after).0, alg);
        assert_eq!(
            verify_with(&app, rp, cached.clone(), &after),
            verify_with(&app, rp, cached.clone(), &before),
            "a token issued right after the rotation verifies with the JWKS cached before it"
        );
        assert_eq!(
            verify_now(&app, rp, &after).await,
            verify_now(&app, rp, &before).await
        );
    }

    let key_file = app.data_dir.path().join("oidc/signing-keys.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(key_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
#[cfg_attr(not(has_root), ignore = "needs root (CI runs the tests as root)")]
fn rotate_key_run_as_root_leaves_the_keys_to_the_service_user() {
    use std::os::unix::fs::{chown, MetadataExt};
    // The service's user and group, and another owner the key file may have been given.
    const SERVICE: u32 = 65534;
    const OTHER: (u32, u32) = (65533, 65532);
    let data = tempfile::tempdir().unwrap();
    assert_eq!(
        std::fs::metadata(data.path()).unwrap().uid(),
        0,
        "it must run as root, to give files away"
    );
    chown(data.path(), Some(SERVICE), Some(SERVICE)).unwrap();
    let dir = data.path().display().to_string();
    let rotate = || {
        let (status, _, stderr) = run_command(&["rotate-key"], &[("WXLOGIN_DATA_DIR", &dir)]);
        assert!(status.success(), "{stderr}");
    };
    let owner_and_mode = |path: &str| {
        let meta = std::fs::metadata(data.path().join(path)).unwrap();
        (meta.uid(), meta.gid(), meta.mode() & 0o777)
    };
    // On a fresh data directory: the new key directory and file take its owner.
    rotate();
    assert_eq!(owner_and_mode("oidc"), (SERVICE, SERVICE, 0o700));
    let key_file = "oidc/signing-keys.json";
    assert_eq!(owner_and_mode(key_file), (SERVICE, SERVICE, 0o600));
    // A key file that exists keeps its own owner.
    chown(data.path().join(key_file), Some(OTHER.0), Some(OTHER.1)).unwrap();
    rotate();
    assert_eq!(owner_and_mode(key_file), (OTHER.0, OTHER.1, 0o600));
    // The service's user plants a link where the new file is written, to a file of root's:
    // rotate-key must neither write through it nor give that file away.
    let roots = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(roots.path(), "root's own").unwrap();
    std::os::unix::fs::symlink(roots.path(), data.path().join("oidc/signing-keys.json.new"))
        .unwrap();
    rotate();
    let target = std::fs::metadata(roots.path()).unwrap();
    assert_eq!((target.uid(), target.gid()), (0, 0));
    assert_eq!(std::fs::read(roots.path()).unwrap(), b"root's own");
    assert_eq!(owner_and_mode(key_file), (OTHER.0, OTHER.1, 0o600));
}

#[tokio::test]
async fn the_pairwise_sub_differs_per_client_and_is_stable() {
    let mut app = provider().await;
    let session = app.sign_up("oPairwise", "13800000209").await;
    let (_, _, shop_sub) = fresh_tokens(&app, SHOP_RP, &session).await;

    let (code, verifier) = code(&app, BLOG_RP, &session, "openid").await;
    let (status, tokens) = redeem(&app, BLOG_RP, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let blog: Value = userinfo(&app, tokens["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(blog["sub"].as_str().unwrap(), shop_sub);

    // Another login, and a restart, leave the shop's sub as it was.
    let again = app.scan_in("oPairwise").await;
    assert_eq!(fresh_tokens(&app, SHOP_RP, &again).await.2, shop_sub);
    app.restart();
    let after_restart = app.scan_in("oPairwise").await;
    assert_eq!(
        fresh_tokens(&app, SHOP_RP, &after_restart).await.2,
        shop_sub
    );
}

#[tokio::test]
async fn logout_and_unfollowing_revoke_access_tokens() {
    let app = provider().await;
    let session = app.sign_up("oRevoke", "13800000210").await;
    let (_, from_this_session, _) = fresh_tokens(&app, SHOP_RP, &session).await;
    let other_session = app.scan_in("oRevoke").await;
    let (_, from_other_session, _) = fresh_tokens(&app, SHOP_RP, &other_session).await;
    // A code issued before the logout and not yet redeemed must not yield a token after it.
    let (pending, verifier) = code(&app, SHOP_RP, &session, "openid").await;
    let logout = http()
        .post(app.url("/api/logout"))
        .header(header::COOKIE, format!("wxlogin_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert!(logout.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    for token in [&from_this_session, &from_other_session] {
        assert_eq!(
            userinfo(&app, token).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_oauth_error(
        redeem(&app, SHOP_RP, &pending, &verifier).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );

    let (_, fresh, _) = fresh_tokens(&app, SHOP_RP, &other_session).await;
    assert_eq!(userinfo(&app, &fresh).await.status(), StatusCode::OK);
    let (pending, verifier) = code(&app, SHOP_RP, &other_session, "openid").await;
    app.unsubscribe("oRevoke", None).await;
    assert_eq!(
        userinfo(&app, &fresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Following and binding again at once does not revive a code from before the unfollow.
    app.sign_up("oRevoke", "13800000210").await;
    assert_oauth_error(
        redeem(&app, SHOP_RP, &pending, &verifier).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
}

#[tokio::test]
async fn access_tokens_survive_a_restart() {
    let mut app = provider().await;
    let session = app.sign_up("oDurable", "13800000211").await;
    let (_, access, sub) = fresh_tokens(&app, SHOP_RP, &session).await;
    app.restart();
    let info: Value = userinfo(&app, &access).await.json().await.unwrap();
    assert_eq!(info["sub"], sub.as_str());
    assert_eq!(info["phone_number"], "+8613800000211");
}

#[tokio::test]
async fn without_clients_every_oidc_endpoint_is_absent() {
    let app = crate::helpers::spawn_app().await;
    for path in [
        "/.well-known/openid-configuration",
        "/oauth/jwks",
        "/oauth/authorize?client_id=x",
        "/oauth/userinfo",
    ] {
        assert_eq!(
            app.get(path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let token = http()
        .post(app.url("/oauth/token"))
        .form(&[("grant_type", "authorization_code")])
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), StatusCode::NOT_FOUND);
    assert!(
        !app.data_dir.path().join("oidc").exists(),
        "no keys are made"
    );
}

#[test]
fn a_bad_clients_file_stops_the_start_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clients.toml");
    let client = "[[clients]]\nid = \"shop\"\nname = \"Shop\"\n";
    for (rest, problem) in [
        ("redirect_uris = \"https://shop.example/cb\"\n", "a sequence"),
        (
            "redirect_uris = [\"https://shop.example/cb\"]\nid_token_signed_response_alg = \"HS256\"\n",
            "`ES256` or `RS256`",
        ),
    ] {
        std::fs::write(&path, format!("{client}{rest}")).unwrap();
        let (status, stderr) = run_to_exit(&[("WXLOGIN_OIDC_CLIENTS", path.to_str().unwrap())]);
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("WXLOGIN_OIDC_CLIENTS"), "{stderr}");
        let line = 3 + rest.lines().count();
        assert!(
            stderr.contains(&format!("{} line {line}", path.display())),
            "{stderr}"
        );
        assert!(stderr.contains(problem), "{stderr}");
    }
}
