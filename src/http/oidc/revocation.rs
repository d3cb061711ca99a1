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
use crate::error::{ApiError, ErrorBody};
use crate::http::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
pub(in crate::http) struct RevocationRequest {
    /// The access token. A `token_type_hint` may come too: a hint only, every token is an
    /// access token.
    token: Option<String>,
    #[serde(flatten)]
    credentials: BodyCredentials,
}

/// Revokes one of the client's access tokens.
#[utoipa::path(
    post,
    path = super::REVOCATION,
    tag = "oidc",
    request_body(content = RevocationRequest, content_type = "application/x-www-form-urlencoded"),
    security(("client_secret_basic" = []), ()),
    responses(
        (status = 200, description = "Revoked, or never the client's to revoke (RFC 7009 §2.2)"),
        (status = 400, description = "`invalid_request`: no token, or a body that is not a form", body = ErrorBody),
        (status = 401, description = "`invalid_client`", body = ErrorBody),
        (status = 404, description = "`not_found`: OpenID Connect is not configured", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`", body = ErrorBody),
    ),
)]
pub(in crate::http) async fn revoke(
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
