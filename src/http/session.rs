//! Sessions: who is logged in, and logging out. A session token is accepted as
//! `Authorization: Bearer TOKEN` or as the `wxlogin_session` cookie the server sets.

use std::time::Duration;

use actix_web::cookie::{time, Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use wxlogin_storage::{constant_time_eq, Session, SessionToken};

use super::AppState;
use crate::audit;
use crate::error::{ApiError, ErrorBody};

pub const COOKIE: &str = "wxlogin_session";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/me", web::get().to(me))
        .route("/api/logout", web::post().to(logout));
}

/// How the session cookie is set: `Secure` when the public URL is https, and as long-lived as
/// a session.
#[derive(Clone, Copy)]
pub struct SessionCookies {
    pub secure: bool,
    pub max_age: Duration,
}

impl SessionCookies {
    /// The cookie that carries `token`: HttpOnly, so page scripts never see it; SameSite=Lax, so
    /// other sites' forms and scripts don't send it, but a redirect back from a site does.
    pub fn carrying(&self, token: &str) -> Cookie<'static> {
        self.build(token.to_owned(), self.max_age.as_secs())
    }

    /// The cookie that deletes it.
    pub(super) fn removal(&self) -> Cookie<'static> {
        self.build(String::new(), 0)
    }

    fn build(&self, value: String, max_age: u64) -> Cookie<'static> {
        Cookie::build(COOKIE, value)
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure)
            .max_age(time::Duration::seconds(
                max_age.try_into().unwrap_or(i64::MAX),
            ))
            .finish()
    }
}

/// The token of an `Authorization: Bearer TOKEN` header.
pub(super) fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The session token the request carries: the bearer header first, else the cookie.
pub(super) fn session_token(req: &HttpRequest) -> Option<SessionToken> {
    if let Some(token) = bearer_token(req) {
        return Some(SessionToken::from_bearer(token));
    }
    let cookie = req.cookie(COOKIE)?;
    (!cookie.value().is_empty()).then(|| SessionToken::from_bearer(cookie.value()))
}

/// The live session of the request, if it carries one.
pub(super) async fn current_session(
    state: &AppState,
    req: &HttpRequest,
) -> Result<Option<Session>, ApiError> {
    match session_token(req) {
        Some(token) => Ok(state.store.session(&token).await?),
        None => Ok(None),
    }
}

/// Proof, for a form on one of our pages, that whoever sends it back read that page in the
/// browser holding this session: base64url(SHA-256(purpose ‖ 0 ‖ token)). Another site never
/// sees the token, so it can't make a browser submit the form for its user (CSRF); `purpose`
/// keeps a proof for one form from answering another.
pub(super) fn form_proof(req: &HttpRequest, purpose: &str) -> Option<String> {
    let token = session_token(req)?;
    let mut digest = Sha256::new();
    digest.update(purpose.as_bytes());
    digest.update([0]);
    digest.update(token.as_str().as_bytes());
    Some(URL_SAFE_NO_PAD.encode(digest.finalize()))
}

/// Whether `sent` is the request's [`form_proof`] for `purpose`.
pub(super) fn proves(req: &HttpRequest, purpose: &str, sent: Option<&str>) -> bool {
    match (form_proof(req, purpose), sent) {
        (Some(ours), Some(sent)) => constant_time_eq(ours.as_bytes(), sent.as_bytes()),
        _ => false,
    }
}

/// Who is logged in; times in Unix seconds.
#[derive(Serialize, ToSchema)]
pub(super) struct Me<'a> {
    openid: &'a str,
    phone: &'a str,
    bound_at: u64,
    /// With an Open Platform account bound to the official account; else `null`.
    unionid: Option<&'a str>,
    logged_in_at: u64,
    expires_at: u64,
}

/// The session's user.
#[utoipa::path(
    get,
    path = "/api/me",
    tag = "session",
    security(("session_token" = []), ("session_cookie" = [])),
    responses(
        (status = 200, description = "The user", body = Me),
        (status = 401, description = "`unauthorized`: no live session (with `WWW-Authenticate: Bearer`)", body = ErrorBody),
    ),
)]
pub(super) async fn me(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let session = current_session(&state, &req)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    Ok(HttpResponse::Ok().json(Me {
        openid: session.binding.openid.as_str(),
        phone: session.binding.phone.as_str(),
        bound_at: session.binding.bound_at,
        unionid: session.binding.unionid.as_ref().map(|u| u.as_str()),
        logged_in_at: session.created_at,
        expires_at: session.expires_at,
    }))
}

/// Ends the session and revokes the user's OpenID Connect access tokens and unredeemed codes:
/// logging out of wxlogin logs the user out of what sites read through it. The tokens go
/// first: if a step fails, the session is still there to log out with again, and nothing that
/// should have ended outlives it.
#[utoipa::path(
    post,
    path = "/api/logout",
    tag = "session",
    security(("session_token" = []), ("session_cookie" = [])),
    responses(
        (status = 204, description = "Logged out; the session cookie is cleared"),
        (status = 401, description = "`unauthorized`: no live session", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`", body = ErrorBody),
    ),
)]
pub(super) async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let token = session_token(&req).ok_or(ApiError::Unauthorized)?;
    if !end_session(&state, &token, None).await? {
        return Err(ApiError::Unauthorized);
    }
    Ok(HttpResponse::NoContent()
        .cookie(state.cookies.removal())
        .finish())
}

/// Ends the session of `token` with the user's access tokens and codes (see [`logout`]);
/// whether there was one. Shared with OpenID Connect's RP-initiated logout, where `client` is
/// the relying party that asked.
pub(super) async fn end_session(
    state: &AppState,
    token: &SessionToken,
    client: Option<&str>,
) -> Result<bool, ApiError> {
    let session = state.store.session(token).await?;
    if let Some(session) = &session {
        let openid = &session.binding.openid;
        state.forget_authorization_codes(openid).await?;
        state.store.revoke_access_tokens(openid).await?;
    }
    let closed = state.store.close_session(token).await?;
    if let (true, Some(session)) = (closed, &session) {
        audit::logout(&session.binding.openid, client);
    }
    Ok(closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_secure_exactly_when_the_public_url_is_https() {
        for secure in [false, true] {
            let cookies = SessionCookies {
                secure,
                max_age: Duration::from_secs(60),
            };
            let set = cookies.carrying("t0ken").to_string();
            for attribute in [
                "wxlogin_session=t0ken",
                "HttpOnly",
                "SameSite=Lax",
                "Path=/",
                "Max-Age=60",
            ] {
                assert!(set.contains(attribute), "{set}");
            }
            assert_eq!(set.contains("Secure"), secure, "{set}");
            let removal = cookies.removal().to_string();
            assert!(removal.contains("Max-Age=0"), "{removal}");
            assert_eq!(removal.contains("Secure"), secure, "{removal}");
        }
    }
}
