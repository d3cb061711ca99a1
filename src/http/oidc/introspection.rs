//! `POST /oauth/introspect`: what an access token stands for (RFC 7662), for a confidential
//! client's server. A client learns only about its own tokens: any other (unknown, expired,
//! revoked, its user unbound, or issued to another client) is `{"active": false}`, the answer
//! §2.2 gives a token the caller may not see, so nobody can probe for other clients' tokens.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use wxlogin_storage::SessionToken;

use super::client_auth::{authenticate, BodyCredentials};
use super::provider;
use crate::error::{ApiError, ErrorBody};
use crate::http::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
pub(in crate::http) struct IntrospectionRequest {
    /// The access token. A `token_type_hint` may come too: a hint only, every token is an
    /// access token.
    token: Option<String>,
    #[serde(flatten)]
    credentials: BodyCredentials,
}

/// What one of the client's access tokens stands for (confidential clients only).
#[utoipa::path(
    post,
    path = super::INTROSPECTION,
    tag = "oidc",
    request_body(content = IntrospectionRequest, content_type = "application/x-www-form-urlencoded"),
    security(("client_secret_basic" = []), ()),
    responses(
        (status = 200, description = "`{\"active\": true, ...}` for a live token of the caller's, else `{\"active\": false}`", body = Object),
        (status = 400, description = "`invalid_request`: no token, or a body that is not a form", body = ErrorBody),
        (status = 401, description = "`invalid_client`, also for a public client", body = ErrorBody),
        (status = 404, description = "`not_found`: OpenID Connect is not configured", body = ErrorBody),
    ),
)]
pub(in crate::http) async fn introspect(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<IntrospectionRequest>,
) -> Result<HttpResponse, ApiError> {
    let p = provider(&state)?;
    let client = authenticate(p, &req, &form.credentials)?;
    // A public client's id is no secret: anyone could introspect as it.
    if client.is_public() {
        return Err(ApiError::oauth(
            "invalid_client",
            "introspection is for confidential clients",
        ));
    }
    let token = form
        .token
        .as_deref()
        .map(SessionToken::from_bearer)
        .ok_or(ApiError::oauth("invalid_request", "token is required"))?;
    let grant = state
        .store
        .access_token(&token)
        .await?
        .filter(|(grant, _)| grant.client_id == client.id)
        .and_then(|(grant, binding)| Some((p.subjects.sub(&grant.client_id, &binding)?, grant)));
    let answer = match grant {
        Some((sub, grant)) => json!({
            "active": true,
            "scope": grant.scope,
            "client_id": grant.client_id,
            "sub": sub,
            "exp": grant.expires_at,
            "iat": grant.issued_at,
            "token_type": "Bearer",
            "iss": p.issuer,
            "aud": grant.client_id,
        }),
        None => json!({"active": false}),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(answer))
}
