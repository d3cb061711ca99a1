//! `/oauth/userinfo`: `sub`, and `phone_number` with the `phone` scope, for an access token
//! sent as RFC 6750 allows: `Authorization: Bearer` (§2.1), or in a POST's form body (§2.2).
//! Not in the query (§2.3): URLs end up in logs and browser history.

use actix_web::http::{header, Method};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use wxlogin_storage::SessionToken;

use super::provider;
use crate::error::ApiError;
use crate::http::session::bearer_token;
use crate::http::AppState;
use crate::oidc::codes::Scope;

pub(super) async fn userinfo(
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
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(p.user_claims(&grant.client_id, &binding, scope)))
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
    let mut tokens = url::form_urlencoded::parse(body)
        .filter(|(name, _)| name == "access_token")
        .map(|(_, value)| value.into_owned());
    let token = tokens.next();
    if tokens.next().is_some() {
        return Err(ApiError::oauth(
            "invalid_request",
            "access_token appears more than once",
        ));
    }
    Ok(token)
}
