//! Bearer sessions: who is logged in, and logging out.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use wxlogin_storage::SessionToken;

use super::AppState;
use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/me", web::get().to(me))
        .route("/api/logout", web::post().to(logout));
}

/// The token of an `Authorization: Bearer TOKEN` header.
pub(super) fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn bearer(req: &HttpRequest) -> Result<SessionToken, ApiError> {
    let token = bearer_token(req).ok_or(ApiError::Unauthorized)?;
    Ok(SessionToken::from_bearer(token))
}

async fn me(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let session = state
        .store
        .session(&bearer(&req)?)?
        .ok_or(ApiError::Unauthorized)?;
    Ok(HttpResponse::Ok().json(json!({
        "openid": session.binding.openid.as_str(),
        "phone": session.binding.phone.as_str(),
        "bound_at": session.binding.bound_at,
        "logged_in_at": session.created_at,
        "expires_at": session.expires_at,
    })))
}

async fn logout(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    if state.store.close_session(&bearer(&req)?).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::Unauthorized)
    }
}
