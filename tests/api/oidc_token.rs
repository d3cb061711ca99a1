//! The provider's token side as relying parties other than the happy path meet it: HTTP Basic
//! with form-encoded credentials, userinfo by form body, CORS for browser apps, revocation
//! (RFC 7009), introspection (RFC 7662) and what discovery claims.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreGrantType, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreResponseMode, CoreResponseType, CoreRevocableToken,
    CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AsyncHttpClient, AuthorizationCode, ClientId, ClientSecret,
    CsrfToken, HttpRequest, IntrospectionUrl, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, ProviderMetadata, RedirectUrl, RevocationUrl, TokenIntrospectionResponse,
    TokenResponse,
};
use reqwest::{header, Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::helpers::{assert_error, run_to_exit, TestApp};
use crate::oidc::{
    assert_oauth_error, code, exchange, fresh_tokens, http, param, provider, redirected, userinfo,
    Rp, BLOG_RP, ENCODED_RP, SHOP_RP, SPA, SPA_OTHER_ORIGIN, SPA_RP,
};
use crate::oidc_authorize::allow_if_asked;

/// The origin of the public client's redirect URI.
const SPA_ORIGIN: &str = "http://localhost:3000";

/// Every byte but letters and digits percent-encoded, space as `+`: what `openid-client`
/// (oauth4webapi) sends, which encodes even `- _ . ~`.
fn form_encode_all(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b' ' => "+".to_owned(),
            b if b.is_ascii_alphanumeric() => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// `Authorization: Basic` as RFC 6749 §2.3.1 has it: id and secret form-encoded first.
fn basic(id: &str, secret: &str) -> String {
    let pair = format!("{}:{}", form_encode_all(id), form_encode_all(secret));
    format!("Basic {}", STANDARD.encode(pair))
}

/// `POST path` with `form` and, when given, this `Authorization` header.
async fn post_form(
    app: &TestApp,
    path: &str,
    authorization: Option<&str>,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = http().post(app.url(path)).form(form);
    if let Some(authorization) = authorization {
        request = request.header(header::AUTHORIZATION, authorization);
    }
    request.send().await.unwrap()
}

async fn status_and_json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// The code-redemption form of `code` for `rp`.
fn redemption<'a>(rp: Rp, code: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", rp.callback),
        ("code_verifier", verifier),
    ]
}

#[tokio::test]
async fn client_secret_basic_takes_form_encoded_ids_and_secrets() {
    let app = provider().await;
    let session = app.sign_up("oEncoded", "13800000301").await;
    let (code, verifier) = code(&app, ENCODED_RP, &session, "openid").await;
    let form = redemption(ENCODED_RP, &code, &verifier);
    let refused = |authorization: String| {
        let form = form.clone();
        let app = &app;
        async move {
            let response = post_form(app, "/oauth/token", Some(&authorization), &form).await;
            assert_oauth_error(
                status_and_json(response).await,
                StatusCode::UNAUTHORIZED,
                "invalid_client",
            );
        }
    };
    // Sent raw, the secret's '+' decodes to a space, and its '%' starts an escape: no match.
    let raw = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", ENCODED_RP.id, ENCODED_RP.secret))
    );
    refused(raw).await;
    refused(basic(ENCODED_RP.id, &ENCODED_RP.secret.replace('ü', "u"))).await;
    // Refusals leave the code; the credentials encoded as the RFC says redeem it.
    let response = post_form(
        &app,
        "/oauth/token",
        Some(&basic(ENCODED_RP.id, ENCODED_RP.secret)),
        &form,
    )
    .await;
    let (status, tokens) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(tokens["id_token"].is_string(), "{tokens}");
}

#[tokio::test]
async fn a_malformed_basic_header_is_invalid_client() {
    let app = provider().await;
    let session = app.sign_up("oMalformed", "13800000302").await;
    let (code, verifier) = code(&app, SPA_RP, &session, "openid").await;
    let mut form = redemption(SPA_RP, &code, &verifier);
    // The public client's id in the body would authenticate it alone: a broken header beside
    // it must not be ignored.
    form.push(("client_id", SPA));
    let encode = |raw: &str| format!("Basic {}", STANDARD.encode(raw));
    for authorization in [
        "Basic".to_owned(),
        "Basic !!not base64!!".to_owned(),
        encode("spa"),
        encode("spa:%zz"),
        encode("%ff:secret"),
        "Bearer some-token".to_owned(),
    ] {
        let response = post_form(&app, "/oauth/token", Some(&authorization), &form).await;
        let challenge = response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.starts_with("Basic"), "{challenge}");
        assert_oauth_error(
            status_and_json(response).await,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        );
    }
}

#[tokio::test]
async fn a_token_request_without_grant_type_is_invalid_request() {
    let app = provider().await;
    let session = app.sign_up("oNoGrant", "13800000303").await;
    let (code, verifier) = code(&app, SHOP_RP, &session, "openid").await;
    let mut form = redemption(SHOP_RP, &code, &verifier);
    form.retain(|(name, _)| *name != "grant_type");
    assert_oauth_error(
        exchange(&app, Some((SHOP_RP.id, SHOP_RP.secret)), &form).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
}

/// `POST /oauth/userinfo` with `body` as `content_type`, and a Bearer header when given.
async fn userinfo_post(
    app: &TestApp,
    bearer: Option<&str>,
    content_type: &str,
    body: String,
) -> reqwest::Response {
    let mut request = http()
        .post(app.url("/oauth/userinfo"))
        .header(header::CONTENT_TYPE, content_type)
        .body(body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

const FORM: &str = "application/x-www-form-urlencoded";

#[tokio::test]
async fn userinfo_takes_the_access_token_in_a_form_body() {
    let app = provider().await;
    let session = app.sign_up("oFormBody", "13800000304").await;
    let (_, access, sub) = fresh_tokens(&app, SHOP_RP, &session).await;
    let response = userinfo_post(
        &app,
        None,
        "application/x-www-form-urlencoded; charset=UTF-8",
        format!("access_token={access}"),
    )
    .await;
    let (status, info) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["sub"], sub.as_str());
    assert_eq!(info["phone_number"], "+8613800000304");
    // A body of another type is not read for a token (RFC 6750 §2.2), nor is the query (§2.3:
    // URLs end up in logs).
    let json = userinfo_post(&app, None, "text/plain", format!("access_token={access}")).await;
    assert_eq!(json.status(), StatusCode::UNAUTHORIZED);
    let query = http()
        .get(app.url("/oauth/userinfo"))
        .query(&[("access_token", &access)])
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), StatusCode::UNAUTHORIZED);
    // A dead token in the body is invalid_token, as in the header.
    let dead = userinfo_post(&app, None, FORM, "access_token=nope".into()).await;
    assert!(dead.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .contains("error=\"invalid_token\""));
    assert_oauth_error(
        status_and_json(dead).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );
}

#[tokio::test]
async fn userinfo_without_credentials_only_says_how_to_authenticate() {
    let app = provider().await;
    for request in [
        http().get(app.url("/oauth/userinfo")),
        http().post(app.url("/oauth/userinfo")).form(&[("x", "y")]),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_owned();
        // RFC 6750 §3.1: no error code, nor other error information, in the challenge.
        assert_eq!(challenge, "Bearer realm=\"wxlogin\"");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized", "{body}");
        assert!(body.get("error_description").is_none(), "{body}");
    }
}

#[tokio::test]
async fn userinfo_with_the_token_sent_two_ways_is_invalid_request() {
    let app = provider().await;
    let session = app.sign_up("oTwoWays", "13800000305").await;
    let (_, access, _) = fresh_tokens(&app, SHOP_RP, &session).await;
    for (bearer, body) in [
        (Some(access.as_str()), format!("access_token={access}")),
        (None, format!("access_token={access}&access_token={access}")),
    ] {
        let response = userinfo_post(&app, bearer, FORM, body).await;
        assert_oauth_error(
            status_and_json(response).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        );
    }
}

/// A preflight from `origin` for `method` to `path`.
async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> reqwest::Response {
    http()
        .request(Method::OPTIONS, app.url(path))
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, method)
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap()
}

fn header_of(response: &reqwest::Response, name: header::HeaderName) -> Option<&str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

/// No header of the response says anything about CORS.
fn assert_no_cors(response: &reqwest::Response, what: &str) {
    let cors: Vec<_> = response
        .headers()
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .collect();
    assert!(cors.is_empty(), "{what}: {cors:?}");
}

#[tokio::test]
async fn registered_origins_may_call_the_token_userinfo_and_revocation_endpoints() {
    let app = provider().await;
    let session = app.sign_up("oCors", "13800000306").await;
    for origin in [SPA_ORIGIN, SPA_OTHER_ORIGIN, "https://shop.example"] {
        for (path, method, methods) in [
            ("/oauth/token", "POST", "POST"),
            ("/oauth/userinfo", "GET", "GET, POST"),
            ("/oauth/revoke", "POST", "POST"),
        ] {
            let response = preflight(&app, path, origin, method).await;
            let what = format!("{origin} {path}");
            assert_eq!(response.status(), StatusCode::NO_CONTENT, "{what}");
            assert_eq!(
                header_of(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN),
                Some(origin),
                "{what}"
            );
            assert_eq!(
                header_of(&response, header::ACCESS_CONTROL_ALLOW_METHODS),
                Some(methods)
            );
            let allowed_headers = header_of(&response, header::ACCESS_CONTROL_ALLOW_HEADERS)
                .unwrap()
                .to_ascii_lowercase();
            assert!(
                allowed_headers.contains("authorization"),
                "{allowed_headers}"
            );
            assert!(
                allowed_headers.contains("content-type"),
                "{allowed_headers}"
            );
            assert_eq!(header_of(&response, header::VARY), Some("Origin"));
            assert!(response
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
                .is_none());
        }
    }

    // The public client's whole flow as a browser app on its origin would make it.
    let (code, verifier) = code(&app, SPA_RP, &session, "openid").await;
    let mut form = redemption(SPA_RP, &code, &verifier);
    form.push(("client_id", SPA));
    let tokens = http()
        .post(app.url("/oauth/token"))
        .header(header::ORIGIN, SPA_ORIGIN)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(tokens.status(), StatusCode::OK);
    assert_eq!(
        header_of(&tokens, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(SPA_ORIGIN)
    );
    assert!(tokens
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
        .is_none());
    let access = tokens.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let info = http()
        .get(app.url("/oauth/userinfo"))
        .header(header::ORIGIN, SPA_OTHER_ORIGIN)
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), StatusCode::OK);
    assert_eq!(
        header_of(&info, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(SPA_OTHER_ORIGIN)
    );
    assert_eq!(header_of(&info, header::VARY), Some("Origin"));
    // An error is readable too, with its challenge.
    let refused = http()
        .get(app.url("/oauth/userinfo"))
        .header(header::ORIGIN, SPA_ORIGIN)
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header_of(&refused, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(SPA_ORIGIN)
    );
    assert_eq!(
        header_of(&refused, header::ACCESS_CONTROL_EXPOSE_HEADERS),
        Some("WWW-Authenticate")
    );
    let revoked = http()
        .post(app.url("/oauth/revoke"))
        .header(header::ORIGIN, SPA_ORIGIN)
        .form(&[("token", access.as_str()), ("client_id", SPA)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    assert_eq!(
        header_of(&revoked, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(SPA_ORIGIN)
    );
}

#[tokio::test]
async fn other_origins_get_no_cors_headers() {
    let app = provider().await;
    let session = app.sign_up("oNoCors", "13800000307").await;
    let (_, access, _) = fresh_tokens(&app, SHOP_RP, &session).await;
    let lookalikes = [
        "https://evil.example",
        "http://shop.example",
        "https://shop.example:8443",
        "https://shop.example.evil.example",
        "http://localhost:3001",
        "https://app.example",
        "null",
    ];
    for origin in lookalikes {
        for path in ["/oauth/token", "/oauth/userinfo", "/oauth/revoke"] {
            let response = preflight(&app, path, origin, "POST").await;
            assert_no_cors(&response, &format!("preflight {origin} {path}"));
            assert_error(response, StatusCode::FORBIDDEN, "origin_not_allowed").await;
        }
        // The request itself is answered (CORS keeps the browser from reading, not the server
        // from answering), but tells the browser nothing it may pass on.
        let info = http()
            .get(app.url("/oauth/userinfo"))
            .header(header::ORIGIN, origin)
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(info.status(), StatusCode::OK);
        assert_no_cors(&info, &format!("userinfo from {origin}"));
        assert_eq!(header_of(&info, header::VARY), Some("Origin"));
    }
}

#[tokio::test]
async fn discovery_and_jwks_are_readable_from_any_origin() {
    let app = provider().await;
    for path in ["/.well-known/openid-configuration", "/oauth/jwks"] {
        for origin in [Some("https://anyone.example"), None] {
            let mut request = http().get(app.url(path));
            if let Some(origin) = origin {
                request = request.header(header::ORIGIN, origin);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            // On every answer, so that a cached copy serves any origin.
            assert_eq!(
                header_of(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN),
                Some("*"),
                "{path} {origin:?}"
            );
            assert!(response
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
                .is_none());
        }
        let response = preflight(&app, path, "https://anyone.example", "GET").await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{path}");
        assert_eq!(
            header_of(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("*")
        );
        assert_eq!(
            header_of(&response, header::ACCESS_CONTROL_ALLOW_METHODS),
            Some("GET")
        );
    }
}

#[tokio::test]
async fn introspection_authorization_and_the_api_get_no_cors() {
    let app = provider().await;
    let session = app.sign_up("oNoCorsHere", "13800000308").await;
    for (path, method) in [
        ("/oauth/introspect", "POST"),
        ("/oauth/authorize", "GET"),
        ("/api/me", "GET"),
        ("/api/qrcode", "POST"),
    ] {
        let response = preflight(&app, path, SPA_ORIGIN, method).await;
        assert_no_cors(&response, &format!("preflight {path}"));
        assert!(!response.status().is_success(), "{path}");
    }
    let introspection = http()
        .post(app.url("/oauth/introspect"))
        .header(header::ORIGIN, SPA_ORIGIN)
        .basic_auth(SHOP_RP.id, Some(SHOP_RP.secret))
        .form(&[("token", "whatever")])
        .send()
        .await
        .unwrap();
    assert_eq!(introspection.status(), StatusCode::OK);
    assert_no_cors(&introspection, "introspection");
    let me = http()
        .get(app.url("/api/me"))
        .header(header::ORIGIN, SPA_ORIGIN)
        .bearer_auth(&session)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    assert_no_cors(&me, "/api/me");
}

#[test]
fn an_allowed_origin_with_a_path_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clients.toml");
    for bad in ["https://app.example/", "https://app.example/app", "*"] {
        std::fs::write(
            &path,
            format!(
                "[[clients]]\nid = \"spa\"\nname = \"App\"\nredirect_uris = [\"https://app.example/cb\"]\n\
                 allowed_origins = [\"{bad}\"]\n"
            ),
        )
        .unwrap();
        let (status, stderr) = run_to_exit(&[("WXLOGIN_OIDC_CLIENTS", path.to_str().unwrap())]);
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("{} line 1", path.display())),
            "{stderr}"
        );
        assert!(stderr.contains("scheme://host[:port]"), "{stderr}");
    }
}

async fn revoke(app: &TestApp, rp: Rp, form: &[(&str, &str)]) -> reqwest::Response {
    post_form(app, "/oauth/revoke", Some(&basic(rp.id, rp.secret)), form).await
}

#[tokio::test]
async fn a_client_revokes_its_access_token_for_good() {
    let mut app = provider().await;
    let session = app.sign_up("oRevokes", "13800000309").await;
    let (_, access, _) = fresh_tokens(&app, SHOP_RP, &session).await;
    let (_, kept, _) = fresh_tokens(&app, SHOP_RP, &session).await;
    // The hint is a hint: wxlogin has no refresh tokens, and finds the access token anyway.
    let response = revoke(
        &app,
        SHOP_RP,
        &[("token", &access), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        userinfo(&app, &access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Durable on return: a kill -9 right after does not bring it back. Only that token went.
    app.restart();
    assert_eq!(
        userinfo(&app, &access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(userinfo(&app, &kept).await.status(), StatusCode::OK);
    // Revoking it again, or any unknown string, is answered the same.
    for token in [access.as_str(), "never-issued"] {
        let again = revoke(&app, SHOP_RP, &[("token", token)]).await;
        assert_eq!(again.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn revoking_another_clients_token_answers_200_and_leaves_it() {
    let app = provider().await;
    let session = app.sign_up("oNotYours", "13800000310").await;
    let (_, shops, _) = fresh_tokens(&app, SHOP_RP, &session).await;
    let by_blog = revoke(&app, BLOG_RP, &[("token", &shops)]).await;
    assert_eq!(by_blog.status(), StatusCode::OK);
    let by_public_client = post_form(
        &app,
        "/oauth/revoke",
        None,
        &[("token", &shops), ("client_id", SPA)],
    )
    .await;
    assert_eq!(by_public_client.status(), StatusCode::OK);
    assert_eq!(userinfo(&app, &shops).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_public_client_revokes_its_token_with_its_id_alone() {
    let app = provider().await;
    let session = app.sign_up("oPublicRevoke", "13800000311").await;
    let (code, verifier) = code(&app, SPA_RP, &session, "openid").await;
    let mut form = redemption(SPA_RP, &code, &verifier);
    form.push(("client_id", SPA));
    let (status, tokens) = exchange(&app, None, &form).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(userinfo(&app, access).await.status(), StatusCode::OK);
    let response = post_form(
        &app,
        "/oauth/revoke",
        None,
        &[("token", access), ("client_id", SPA)],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        userinfo(&app, access).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn revocation_needs_client_authentication_and_a_token() {
    let app = provider().await;
    let session = app.sign_up("oRevokeAuth", "13800000312").await;
    let (_, access, _) = fresh_tokens(&app, SHOP_RP, &session).await;
    let cases = [
        (
            Some(basic(SHOP_RP.id, BLOG_RP.secret)),
            vec![("token", access.as_str())],
        ),
        (None, vec![("token", access.as_str())]),
        (
            None,
            vec![("token", access.as_str()), ("client_id", SHOP_RP.id)],
        ),
    ];
    for (authorization, form) in cases {
        let response = post_form(&app, "/oauth/revoke", authorization.as_deref(), &form).await;
        assert_oauth_error(
            status_and_json(response).await,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        );
    }
    assert_eq!(userinfo(&app, &access).await.status(), StatusCode::OK);
    let no_token = revoke(&app, SHOP_RP, &[("token_type_hint", "access_token")]).await;
    assert_oauth_error(
        status_and_json(no_token).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
}

pub(crate) async fn introspect(app: &TestApp, rp: Rp, token: &str) -> (StatusCode, Value) {
    let response = post_form(
        app,
        "/oauth/introspect",
        Some(&basic(rp.id, rp.secret)),
        &[("token", token)],
    )
    .await;
    status_and_json(response).await
}

#[tokio::test]
async fn introspection_describes_the_callers_own_live_token() {
    let app = provider().await;
    let session = app.sign_up("oIntrospect", "13800000313").await;
    let (_, access, sub) = fresh_tokens(&app, SHOP_RP, &session).await;
    let (status, answer) = introspect(&app, SHOP_RP, &access).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["active"], true);
    assert_eq!(answer["scope"], "openid phone");
    assert_eq!(answer["client_id"], SHOP_RP.id);
    assert_eq!(answer["aud"], SHOP_RP.id);
    assert_eq!(answer["sub"], sub.as_str());
    assert_eq!(answer["iss"], app.address.as_str());
    assert_eq!(answer["token_type"], "Bearer");
    let (iat, exp) = (
        answer["iat"].as_u64().unwrap(),
        answer["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 3600);
    assert!(iat.abs_diff(crate::helpers::unix_now()) < 60, "{answer}");
    // client_secret_post works as Basic does.
    let post = post_form(
        &app,
        "/oauth/introspect",
        None,
        &[
            ("token", &access),
            ("client_id", SHOP_RP.id),
            ("client_secret", SHOP_RP.secret),
        ],
    )
    .await;
    assert_eq!(status_and_json(post).await.1["active"], true);
}

#[tokio::test]
async fn introspection_says_inactive_for_tokens_that_are_not_the_callers_live_ones() {
    let app = provider().await;
    let session = app.sign_up("oInactive", "13800000314").await;
    let (_, shops, _) = fresh_tokens(&app, SHOP_RP, &session).await;
    let (_, revoked, _) = fresh_tokens(&app, SHOP_RP, &session).await;
    assert_eq!(
        revoke(&app, SHOP_RP, &[("token", &revoked)]).await.status(),
        StatusCode::OK
    );
    for (rp, token) in [
        (BLOG_RP, shops.as_str()),
        (SHOP_RP, revoked.as_str()),
        (SHOP_RP, "never-issued"),
    ] {
        let (status, answer) = introspect(&app, rp, token).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer, serde_json::json!({"active": false}));
    }
    // Logging out ends the user's tokens, and introspection says so.
    let logout = http()
        .post(app.url("/api/logout"))
        .bearer_auth(&session)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        introspect(&app, SHOP_RP, &shops).await.1,
        serde_json::json!({"active": false})
    );
}

#[tokio::test]
async fn a_public_client_may_not_introspect() {
    let app = provider().await;
    let session = app.sign_up("oPublicIntrospect", "13800000315").await;
    let (code, verifier) = code(&app, SPA_RP, &session, "openid").await;
    let mut form = redemption(SPA_RP, &code, &verifier);
    form.push(("client_id", SPA));
    let (_, tokens) = exchange(&app, None, &form).await;
    let access = tokens["access_token"].as_str().unwrap();
    let response = post_form(
        &app,
        "/oauth/introspect",
        None,
        &[("token", access), ("client_id", SPA)],
    )
    .await;
    assert_oauth_error(
        status_and_json(response).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    let no_token = post_form(
        &app,
        "/oauth/introspect",
        Some(&basic(SHOP_RP.id, SHOP_RP.secret)),
        &[],
    )
    .await;
    assert_oauth_error(
        status_and_json(no_token).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
}

#[tokio::test]
async fn discovery_lists_exactly_what_is_supported() {
    let app = provider().await;
    let doc: Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    // Parameters whose default is "supported" are said not to be.
    for unsupported in [
        "request_parameter_supported",
        "request_uri_parameter_supported",
        "claims_parameter_supported",
    ] {
        assert_eq!(doc[unsupported], false, "{unsupported}: {doc}");
    }
    assert_eq!(
        doc["ui_locales_supported"],
        serde_json::json!(["zh-CN", "en"])
    );
    let all = serde_json::json!(["client_secret_basic", "client_secret_post", "none"]);
    assert_eq!(doc["token_endpoint_auth_methods_supported"], all);
    assert_eq!(doc["revocation_endpoint_auth_methods_supported"], all);
    assert_eq!(
        doc["introspection_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post"])
    );
    // Every endpoint it names is there: refused for want of credentials, never 404.
    for (field, method) in [
        ("revocation_endpoint", Method::POST),
        ("introspection_endpoint", Method::POST),
        ("token_endpoint", Method::POST),
        ("userinfo_endpoint", Method::GET),
    ] {
        let url = doc[field].as_str().unwrap();
        assert_eq!(
            url,
            app.url(&format!("/oauth/{}", url.rsplit('/').next().unwrap()))
        );
        let response = http()
            .request(method, url)
            .form(&[("token", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{field}");
    }
}

/// Discovery's endpoints the core metadata type leaves out.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct TokenEndpoints {
    revocation_endpoint: String,
    introspection_endpoint: String,
}
impl AdditionalProviderMetadata for TokenEndpoints {}
type Metadata = ProviderMetadata<
    TokenEndpoints,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The `openidconnect` crate, with its defaults (client_secret_basic, credentials form-encoded
/// as RFC 6749 says), runs the flow as a client whose id and secret need encoding, then
/// introspects and revokes the access token through discovery's endpoints.
#[tokio::test]
async fn a_relying_party_library_authenticates_with_encoded_credentials_introspects_and_revokes() {
    let app = provider().await;
    let session = app.sign_up("oLibrary", "13800000316").await;
    let http = http();
    let metadata = Metadata::discover_async(IssuerUrl::new(app.address.clone()).unwrap(), &http)
        .await
        .expect("discovery");
    let endpoints = metadata.additional_metadata().clone();
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(ENCODED_RP.id.into()),
        Some(ClientSecret::new(ENCODED_RP.secret.into())),
    )
    .set_redirect_uri(RedirectUrl::new(ENCODED_RP.callback.into()).unwrap())
    // The crate takes only https revocation URLs (RFC 7009 §2), and the test server speaks
    // plain http on loopback: the crate is given the https URL, and `plain` carries its
    // request there as http.
    .set_revocation_url(
        RevocationUrl::new(endpoints.revocation_endpoint.replacen("http:", "https:", 1)).unwrap(),
    )
    .set_introspection_url(IntrospectionUrl::new(endpoints.introspection_endpoint).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, _, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge)
        .url();
    let response = http
        .get(auth_url)
        .header(header::COOKIE, format!("wxlogin_session={session}"))
        .send()
        .await
        .unwrap();
    // The first time, the user allows the client on the consent page.
    let response = allow_if_asked(&app, &session, response).await;
    let (target, params) = redirected(&response);
    assert_eq!(target, ENCODED_RP.callback);
    let code = param(&params, "code").unwrap().to_owned();
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("the code is exchanged with client_secret_basic");
    let claims = tokens
        .id_token()
        .unwrap()
        .claims(&client.id_token_verifier(), &nonce)
        .expect("the ID token verifies");
    assert_eq!(claims.audiences()[0].as_str(), ENCODED_RP.id);

    let access = tokens.access_token();
    let live = client
        .introspect(access)
        .request_async(&http)
        .await
        .expect("introspection");
    assert!(live.active());
    assert_eq!(live.sub(), Some(claims.subject().as_str()));
    assert_eq!(live.client_id().map(|c| c.as_str()), Some(ENCODED_RP.id));

    let plain = |mut request: HttpRequest| {
        let http = http.clone();
        async move {
            let url = request.uri().to_string().replacen("https:", "http:", 1);
            *request.uri_mut() = url.parse().unwrap();
            http.call(request).await
        }
    };
    client
        .revoke_token(CoreRevocableToken::AccessToken(access.clone()))
        .unwrap()
        .request_async(&plain)
        .await
        .expect("revocation");
    let dead = client
        .introspect(access)
        .request_async(&http)
        .await
        .expect("introspection");
    assert!(!dead.active());
    assert_eq!(
        userinfo(&app, access.secret()).await.status(),
        StatusCode::UNAUTHORIZED
    );
}
