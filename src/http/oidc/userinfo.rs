//! `/oauth/userinfo`: `sub`, and `phone_number` with the `phone` scope, for an access token
//! sent as RFC 6750 allows: `Authorization: Bearer` (§2.1), or in a POST's form body (§2.2).
//! Not in the query (§2.3): URLs end up in logs and browser history.

use actix_web::http::{header, Method};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use wxlogin_storage::SessionToken;

use super::{provider, request};
use crate::error::{ApiError, ErrorBody};
use crate::http::session::bearer_token;
use crate::http::AppState;
use crate::oidc::codes::Scope;
use crate::oidc::UserClaims;

/// `access_token` in a POST's form body (RFC 6750 §2.2).
#[derive(serde::Deserialize, utoipa::ToSchema)]
pub(in crate::http) struct UserinfoForm {
    access_token: Option<String>,
}

/// The user, for an access token in `Authorization: Bearer`.
#[utoipa::path(
    get,
    path = super::USERINFO,
    tag = "oidc",
    security(("access_token" = [])),
    responses(
        (status = 200, description = "The user's claims", body = UserClaims),
        (status = 401, description = "No token: `unauthorized` with `WWW-Authenticate: Bearer realm=\"wxlogin\"`; a dead one: `invalid_token`", body = ErrorBody),
        (status = 404, description = "`not_found`: OpenID Connect is not configured", body = ErrorBody),
    ),
)]
pub(in crate::http) async fn userinfo_by_header(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    userinfo(state, req, web::Bytes::new()).await
}

/// The user, for an access token in the header or in a form body.
#[utoipa::path(
    post,
    path = super::USERINFO,
    tag = "oidc",
    request_body(content = Option<UserinfoForm>, content_type = "application/x-www-form-urlencoded"),
    security(("access_token" = []), ()),
    responses(
        (status = 200, description = "The user's claims", body = UserClaims),
        (status = 400, description = "`invalid_request`: the token sent two ways, or twice", body = ErrorBody),
        (status = 401, description = "No token: `unauthorized` with `WWW-Authenticate: Bearer realm=\"wxlogin\"`; a dead one: `invalid_token`", body = ErrorBody),
        (status = 404, description = "`not_found`: OpenID Connect is not configured", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: over 8 KiB", body = ErrorBody),
    ),
)]
pub(in crate::http) async fn userinfo_by_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    userinfo(state, req, body).await
}

async fn userinfo(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let p = provider(&state)?;
    let token = match (bearer_token(&req), form_token(&req, &body)?) {
        (Some(token), None) => token.to_owned(),
        (None, Some(token)) => token,
        // RFC 6750 §3.1: a request with no credentials is told only how to authenticate.
        (None, None) => return Err(ApiError::AccessTokenRequired),
        (Some(_), Some(_)) => {
            return Err(ApiError::oauth(
                "invalid_request",
                "send the access token one way, not two",
            ))
        }
    };
    let invalid = || ApiError::oauth("invalid_token", "the access token is not valid");
    let (grant, binding) = state
        .store
        .access_token(&SessionToken::from_bearer(&token))
        .await?
        .ok_or_else(invalid)?;
    let scope = Scope::parse(&grant.scope).ok_or_else(invalid)?;
    let claims = p
        .user_claims(&grant.client_id, &binding, scope)
        .ok_or_else(invalid)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(claims))
}

/// The `access_token` of a POST's `application/x-www-form-urlencoded` body, if it has one. A
/// body of another type is not read at all; one naming `access_token` twice is refused.
fn form_token(req: &HttpRequest, body: &[u8]) -> Result<Option<String>, ApiError> {
    let is_form = req.method() == Method::POST
        && req
            .mime_type()
            .ok()
            .flatten()
            .is_some_and(|mime| mime.essence_str() == "application/x-www-form-urlencoded");
    if !is_form {
        return Ok(None);
    }
    let form = std::str::from_utf8(body)
        .ok()
        .and_then(request::parse::<UserinfoForm>)
        .ok_or(ApiError::oauth(
            "invalid_request",
            "the form is malformed, or access_token appears more than once",
        ))?;
    Ok(form.access_token)
}
