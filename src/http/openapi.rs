//! `GET /openapi.json`: the OpenAPI 3.1 description of every public route, made from the
//! handlers' own `#[utoipa::path]` attributes and types. A new route is one attribute on its
//! handler and one line in `paths(...)` below: tests/api/openapi.rs fails until both are there.
//! The sandbox's routes (`/sandbox/*`, only without an AppID) are a test harness, not the API,
//! and are left out.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use actix_web::{web, HttpResponse};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    admin, events, health, oidc, page, qrcode, session, token_center, web_authorization,
    wechat_callback,
};
use crate::error::ErrorBody;

const DESCRIPTION: &str = "Scan-to-log-in with a WeChat Official Account. Every error is JSON \
`{\"error\": code, \"message\": text}` (OAuth errors add `error_description`). `HEAD` is \
answered wherever `GET` is, with the same status and headers and no body. Every request that \
writes may answer `503 storage_unavailable` while the data directory takes no writes.";

#[derive(OpenApi)]
#[openapi(
    info(title = "wxlogin", description = DESCRIPTION, license(name = "MIT OR Apache-2.0")),
    paths(
        openapi_json,
        health::healthz,
        health::readyz,
        health::metrics,
        page::login_page,
        page::login_css,
        page::login_js,
        qrcode::create,
        qrcode::status,
        events::events,
        qrcode::send_code,
        qrcode::bind,
        session::me,
        session::logout,
        admin::find_binding,
        admin::delete_binding,
        admin::logins,
        admin::backup,
        oidc::discovery,
        oidc::jwks,
        oidc::authorize::authorize_by_query,
        oidc::authorize::authorize_by_form,
        oidc::token::token,
        oidc::userinfo::userinfo_by_header,
        oidc::userinfo::userinfo_by_form,
        oidc::revocation::revoke,
        oidc::introspection::introspect,
        oidc::logout::logout_by_query,
        oidc::logout::logout_by_form,
        web_authorization::start,
        web_authorization::callback,
        token_center::access_token,
        token_center::refresh_access_token,
        token_center::jsapi_ticket,
        token_center::refresh_jsapi_ticket,
        wechat_callback::verify_server,
        wechat_callback::receive,
    ),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "login", description = "A browser's login: a scene, its status, the phone bind"),
        (name = "session", description = "Who is logged in, and logging out"),
        (name = "oidc", description = "The OpenID Connect provider (with WXLOGIN_OIDC_CLIENTS)"),
        (name = "admin", description = "The operator's API (with WXLOGIN_ADMIN_TOKEN)"),
        (name = "operations", description = "Probes, metrics and this document"),
        (name = "pages", description = "The login page and its files"),
        (name = "token center", description = "WeChat's access token and JS-SDK ticket for the account's other servers (with WXLOGIN_TOKEN_CLIENTS)"),
        (name = "wechat", description = "WeChat's callback: not for browsers"),
    )
)]
struct ApiDoc;

/// How callers prove who they are, named by the operations' `security`.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let bearer = |what: &str| {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.description = Some(what.to_owned());
            SecurityScheme::Http(http)
        };
        let cookie = |name: &str, what: &str| {
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(name, what)))
        };
        let schemes: BTreeMap<&str, SecurityScheme> = BTreeMap::from([
            (
                "session_token",
                bearer("A session token, from a bind or a logged_in status"),
            ),
            (
                "session_cookie",
                cookie(
                    super::session::COOKIE,
                    "The session cookie the server sets with the token",
                ),
            ),
            (
                "scene_secret",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "X-Scene-Secret",
                    "The scene_secret POST /api/qrcode answered, for API clients",
                ))),
            ),
            (
                "browser_cookie",
                cookie(
                    "wxlogin_browser",
                    "The browser key cookie POST /api/qrcode set",
                ),
            ),
            ("admin_token", bearer("WXLOGIN_ADMIN_TOKEN")),
            (
                "token_center_key",
                bearer("A token-center client's key from WXLOGIN_TOKEN_CLIENTS"),
            ),
            (
                "access_token",
                bearer("An OpenID Connect access token from /oauth/token"),
            ),
            ("client_secret_basic", {
                let mut basic = Http::new(HttpAuthScheme::Basic);
                basic.description = Some("A client's form-encoded client_id and client_secret (RFC 6749 §2.3.1); client_secret_post sends them in the form instead".into());
                SecurityScheme::Http(basic)
            }),
        ]);
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, scheme) in schemes {
            components.add_security_scheme(name, scheme);
        }
    }
}

/// The document, made once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_json()
        .expect("the OpenAPI document serializes")
});

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(openapi_json));
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)),
)]
pub(super) async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT.as_str())
}
