//! The OpenID Connect endpoints. Without `WXLOGIN_OIDC_CLIENTS` every one of them is 404.

mod authorize;
pub(super) mod consent;
mod logout;
mod pages;
mod request;
mod token;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use wxlogin_storage::SessionToken;

use super::session::bearer_token;
use super::AppState;
use crate::error::ApiError;
use crate::oidc::codes::Scope;
use crate::oidc::keys::SigningAlg;
use crate::oidc::Provider;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/.well-known/openid-configuration",
        web::get().to(discovery),
    )
    .route("/oauth/jwks", web::get().to(jwks))
    .configure(authorize::configure)
    .configure(logout::configure)
    .route("/oauth/userinfo", web::get().to(userinfo))
    .route("/oauth/userinfo", web::post().to(userinfo))
    .configure(token::configure);
}

/// The provider, or 404 when OpenID Connect is not configured.
fn provider(state: &AppState) -> Result<&Provider, ApiError> {
    state
        .oidc
        .as_deref()
        .ok_or(ApiError::NotFound("no such endpoint"))
}

async fn discovery(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let p = provider(&state)?;
    Ok(HttpResponse::Ok().json(json!({
        "issuer": p.issuer,
        "authorization_endpoint": p.url("/oauth/authorize"),
        "token_endpoint": p.url("/oauth/token"),
        "userinfo_endpoint": p.url("/oauth/userinfo"),
        "jwks_uri": p.url("/oauth/jwks"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": SigningAlg::ALL,
        "scopes_supported": ["openid", "phone"],
        "claims_supported": ["iss", "sub", "aud", "iat", "exp", "auth_time", "nonce", "phone_number", "phone_number_verified"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": crate::oidc::prompt::SUPPORTED,
        "end_session_endpoint": p.url("/oauth/logout"),
    })))
}

async fn jwks(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let keys = provider(&state)?
        .keys
        .jwks()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok()
        // Short: relying parties must see a rotation's new key soon.
        .insert_header((header::CACHE_CONTROL, "max-age=300"))
        .json(keys))
}

/// `sub`, and `phone_number` with the `phone` scope, for an access token (RFC 6750 Bearer).
async fn userinfo(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let p = provider(&state)?;
    let invalid = || ApiError::oauth("invalid_token", "the access token is not valid");
    let token = bearer_token(&req).ok_or_else(invalid)?;
    let (grant, binding) = state
        .store
        .access_token(&SessionToken::from_bearer(token))?
        .ok_or_else(invalid)?;
    let scope = Scope::parse(&grant.scope).ok_or_else(invalid)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(p.user_claims(&grant.client_id, &binding, scope)))
}
