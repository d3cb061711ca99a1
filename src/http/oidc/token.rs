//! `POST /oauth/token`: a code for an access token and an ID token (RFC 6749 §4.1.3,
//! OpenID Connect Core §3.1.3). Clients authenticate as `client_auth` says; public clients
//! send only `client_id` and prove the code with PKCE.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::client_auth::{authenticate, BodyCredentials};
use super::provider;
use crate::audit;
use crate::error::{ApiError, ErrorBody};
use crate::http::AppState;
use crate::oidc::codes::{verifier_matches, Grant, Redeemed};
use crate::oidc::{unix_now, UserClaims, ACCESS_TOKEN_TTL, ID_TOKEN_TTL};

const BAD_CODE: &str = "the code is unknown, expired, already used, or not for this client";

#[derive(Deserialize, ToSchema)]
pub(in crate::http) struct TokenRequest {
    #[schema(examples("authorization_code"))]
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    #[serde(flatten)]
    credentials: BodyCredentials,
}

#[derive(Serialize)]
struct IdTokenClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    auth_time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(flatten)]
    user: UserClaims,
}

/// The tokens of a successful exchange.
#[derive(Serialize, ToSchema)]
pub(in crate::http) struct TokenResponse {
    access_token: String,
    #[schema(examples("Bearer"))]
    token_type: &'static str,
    expires_in: u64,
    id_token: String,
    scope: &'static str,
}

/// A code for an access token and an ID token.
#[utoipa::path(
    post,
    path = super::TOKEN,
    tag = "oidc",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    security(("client_secret_basic" = []), ()),
    responses(
        (status = 200, description = "The tokens", body = TokenResponse),
        (status = 400, description = "`invalid_request` (also a body that is not a form, or over 8 KiB), `unsupported_grant_type`, `invalid_grant`", body = ErrorBody),
        (status = 401, description = "`invalid_client` (with `WWW-Authenticate: Basic`)", body = ErrorBody),
        (status = 404, description = "`not_found`: OpenID Connect is not configured", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`", body = ErrorBody),
    ),
)]
pub(in crate::http) async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<TokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let p = provider(&state)?;
    let client = authenticate(p, &req, &form.credentials)?;
    match form.grant_type.as_deref() {
        Some("authorization_code") => {}
        None => return Err(ApiError::oauth("invalid_request", "grant_type is required")),
        Some(_) => {
            return Err(ApiError::oauth(
                "unsupported_grant_type",
                "only grant_type=authorization_code",
            ))
        }
    }
    let code = form
        .code
        .as_deref()
        .ok_or(ApiError::oauth("invalid_request", "code is required"))?;
    let bad_code = || ApiError::oauth("invalid_grant", BAD_CODE);
    // The checks run before the code is used up: a refused request leaves it redeemable.
    let checks = |grant: &Grant| {
        if form.redirect_uri.as_deref() != Some(grant.redirect_uri.as_str()) {
            return Err(ApiError::oauth(
                "invalid_grant",
                "redirect_uri differs from the authorization request's",
            ));
        }
        let pkce_ok = match (&grant.code_challenge, &form.code_verifier) {
            (Some(challenge), Some(verifier)) => verifier_matches(challenge, verifier),
            (None, None) => true,
            _ => false,
        };
        if !pkce_ok {
            return Err(ApiError::oauth(
                "invalid_grant",
                "the PKCE code_verifier does not match",
            ));
        }
        Ok(())
    };
    let grant = match p.codes.redeem(code, &client.id, checks).await? {
        Redeemed::Granted(grant) => grant,
        Redeemed::Refused(refusal) => return Err(refusal),
        Redeemed::Unknown => return Err(bad_code()),
        Redeemed::Reused => {
            tracing::warn!(client = %client.id, "an authorization code was used twice: the access token issued for it is revoked");
            return Err(bad_code());
        }
    };
    // The user may have unfollowed (or bound another phone) since logging in.
    let binding = state
        .store
        .binding(&grant.openid)
        .await?
        .filter(|binding| binding.generation == grant.generation)
        .ok_or_else(bad_code)?;
    // With unionid subjects, authorize checked there is one; a rebind since may have none yet.
    let user = p
        .user_claims(&client.id, &binding, grant.scope)
        .ok_or_else(bad_code)?;
    let access_token = state
        .store
        .issue_access_token(&binding, &client.id, grant.scope.as_str(), ACCESS_TOKEN_TTL)
        .await?;
    if !p.codes.gave(code, &access_token).await? {
        // A second use came in meanwhile and found no token to revoke yet.
        state.store.revoke_access_token(&access_token).await?;
        return Err(bad_code());
    }
    let now = unix_now();
    let id_token = p
        .keys
        .sign(
            client.id_token_signed_response_alg,
            &IdTokenClaims {
                iss: &p.issuer,
                aud: &client.id,
                iat: now,
                exp: now + ID_TOKEN_TTL.as_secs(),
                auth_time: grant.auth_time,
                nonce: grant.nonce.as_deref(),
                user,
            },
        )
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    audit::code_exchange(&binding.openid, &client.id);
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(TokenResponse {
            access_token: access_token.as_str().to_owned(),
            token_type: "Bearer",
            expires_in: ACCESS_TOKEN_TTL.as_secs(),
            id_token,
            scope: grant.scope.as_str(),
        }))
}
