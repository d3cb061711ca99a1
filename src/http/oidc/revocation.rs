//! `POST /oauth/revoke`: a client revokes one of its access tokens (RFC 7009). wxlogin issues
//! no refresh tokens, so every token is looked up as an access token, whatever
//! `token_type_hint` says (§2.1: a hint only). A token that is unknown, dead already, or
//! another client's is left as it is and answered 200 all the same (§2.2), so the answer tells
//! nobody whether a token exists.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use wxlogin_storage::SessionToken;

use super::client_auth::{authenticate, BodyCredentials};
use super::provider;
use crate::error::ApiError;
use crate::http::AppState;

#[derive(Deserialize)]
pub(super) struct RevocationRequest {
    token: Option<String>,
    #[serde(flatten)]
    credentials: BodyCredentials,
}

pub(super) async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<RevocationRequest>,
) -> Result<HttpResponse, ApiError> {
    let p = provider(&state)?;
    let client = authenticate(p, &req, &form.credentials)?;
    let token = form
        .token
        .as_deref()
        .map(SessionToken::from_bearer)
        .ok_or(ApiError::oauth("invalid_request", "token is required"))?;
    let theirs = state
        .store
        .access_token(&token)
        .await?
        .is_some_and(|(grant, _)| grant.client_id == client.id);
    // Durable on return: once the client hears 200, no restart brings the token back.
    if theirs && state.store.revoke_access_token(&token).await? {
        tracing::info!(client = %client.id, "access token revoked by its client");
    }
    Ok(HttpResponse::Ok().finish())
}
