//! The OpenID Connect endpoints. Without `WXLOGIN_OIDC_CLIENTS` every one of them is 404.

pub(super) mod authorize;
mod client_auth;
pub(super) mod consent;
mod cors;
pub(super) mod introspection;
pub(super) mod logout;
pub(super) mod pages;
mod request;
pub(super) mod revocation;
pub(super) mod token;
pub(super) mod userinfo;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::oidc::keys::{SigningAlg, JWKS_MAX_AGE};
use crate::oidc::Provider;
use cors::Cors;

const DISCOVERY: &str = "/.well-known/openid-configuration";
const JWKS: &str = "/oauth/jwks";
const AUTHORIZE: &str = "/oauth/authorize";
const TOKEN: &str = "/oauth/token";
const USERINFO: &str = "/oauth/userinfo";
const REVOCATION: &str = "/oauth/revoke";
const INTROSPECTION: &str = "/oauth/introspect";
const LOGOUT: &str = "/oauth/logout";

/// Bodies of the token, revocation and introspection requests: small forms.
const FORM_LIMIT: usize = 8192;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(DISCOVERY)
            .wrap(Cors::anyone("GET"))
            .route(web::get().to(discovery)),
    )
    .service(
        web::resource(JWKS)
            .wrap(Cors::anyone("GET"))
            .route(web::get().to(jwks)),
    )
    .configure(authorize::configure)
    .configure(logout::configure)
    .service(
        web::resource(TOKEN)
            .app_data(form_config())
            .wrap(Cors::registered_origins("POST"))
            .route(web::post().to(token::token)),
    )
    .service(
        web::resource(USERINFO)
            .app_data(web::PayloadConfig::new(FORM_LIMIT))
            .wrap(Cors::registered_origins("GET, POST"))
            .route(web::get().to(userinfo::userinfo_by_header))
            .route(web::post().to(userinfo::userinfo_by_form)),
    )
    .service(
        web::resource(REVOCATION)
            .app_data(form_config())
            .wrap(Cors::registered_origins("POST"))
            .route(web::post().to(revocation::revoke)),
    )
    .service(
        web::resource(INTROSPECTION)
            .app_data(form_config())
            .route(web::post().to(introspection::introspect)),
    );
}

/// A body that is not a form of at most [`FORM_LIMIT`] bytes is an OAuth `invalid_request`.
fn form_config() -> web::FormConfig {
    web::FormConfig::default()
        .limit(FORM_LIMIT)
        .error_handler(crate::http::rejections::form)
}

/// The provider, or 404 when OpenID Connect is not configured.
fn provider(state: &AppState) -> Result<&Provider, ApiError> {
    state
        .oidc
        .as_deref()
        .ok_or(ApiError::NotFound("no such endpoint"))
}

/// Everything a relying party's library reads to use us, and only what is supported: a
/// parameter whose default is "supported" (`request_uri`, `claims`) is listed as not.
#[utoipa::path(
    get,
    path = DISCOVERY,
    tag = "oidc",
    responses(
        (status = 200, description = "The provider's metadata (OpenID Connect Discovery 1.0)", body = Object),
        (status = 404, description = "`not_found`: OpenID Connect is not configured", body = ErrorBody),
    ),
)]
pub(super) async fn discovery(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let p = provider(&state)?;
    let client_auth = ["client_secret_basic", "client_secret_post", "none"];
    Ok(HttpResponse::Ok().json(json!({
        "issuer": p.issuer,
        "authorization_endpoint": p.url(AUTHORIZE),
        "token_endpoint": p.url(TOKEN),
        "userinfo_endpoint": p.url(USERINFO),
        "jwks_uri": p.url(JWKS),
        "revocation_endpoint": p.url(REVOCATION),
        "introspection_endpoint": p.url(INTROSPECTION),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": SigningAlg::ALL,
        "scopes_supported": ["openid", "phone", "unionid"],
        "claims_supported": ["iss", "sub", "aud", "iat", "exp", "auth_time", "nonce", "phone_number", "phone_number_verified", "unionid"],
        "token_endpoint_auth_methods_supported": client_auth,
        "revocation_endpoint_auth_methods_supported": client_auth,
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": crate::oidc::prompt::SUPPORTED,
        "ui_locales_supported": crate::i18n::LANGS.map(crate::i18n::Lang::tag),
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "end_session_endpoint": p.url(LOGOUT),
    })))
}

/// The keys ID tokens are signed with.
#[utoipa::path(
    get,
    path = JWKS,
    tag = "oidc",
    responses(
        (status = 200, description = "A JWK Set (RFC 7517)", body = Object),
        (status = 404, description = "`not_found`: OpenID Connect is not configured", body = ErrorBody),
    ),
)]
pub(super) async fn jwks(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let keys = provider(&state)?
        .keys
        .jwks()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok()
        // A rotation signs with its new key only after this lifetime (src/oidc/keys.rs).
        .insert_header((
            header::CACHE_CONTROL,
            format!("max-age={}", JWKS_MAX_AGE.as_secs()),
        ))
        .json(keys))
}
