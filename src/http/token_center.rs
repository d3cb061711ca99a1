//! The token center (中控服务器): the account's other servers get WeChat's access token and
//! JS-SDK ticket from wxlogin's token actors instead of fetching their own, which would
//! invalidate wxlogin's. Behind `WXLOGIN_TOKEN_CLIENTS`: without it none of these routes exist.

use actix::Addr;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use wxlogin_actors::{GetToken, Held, Refresh, TokenError};
use wxlogin_storage::constant_time_eq;

use super::rejections::read_body;
use super::session::bearer_token;
use super::AppState;
use crate::config::TokenClient;
use crate::error::{ApiError, ErrorBody};
use crate::wechat::api::{AccessTokens, JsapiTickets, WechatError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/wechat/access_token", web::get().to(access_token))
        .route(
            "/api/wechat/access_token/refresh",
            web::post().to(refresh_access_token),
        )
        .route("/api/wechat/jsapi_ticket", web::get().to(jsapi_ticket))
        .route(
            "/api/wechat/jsapi_ticket/refresh",
            web::post().to(refresh_jsapi_ticket),
        );
}

pub struct TokenCenter {
    /// Each caller's name and the SHA-256 of its key: comparing digests of equal length
    /// tells nothing of a key's length either.
    clients: Vec<(String, [u8; 32])>,
    tokens: Addr<AccessTokens>,
    tickets: Addr<JsapiTickets>,
}

impl TokenCenter {
    pub fn new(
        clients: &[TokenClient],
        tokens: Addr<AccessTokens>,
        tickets: Addr<JsapiTickets>,
    ) -> Self {
        let clients = clients
            .iter()
            .map(|c| (c.name.clone(), digest(c.key.expose())))
            .collect();
        Self {
            clients,
            tokens,
            tickets,
        }
    }

    /// The caller's name. Every key is compared, in constant time, whatever matched: a missing,
    /// malformed or unknown key gets the same 401 after the same work.
    fn caller(&self, req: &HttpRequest) -> Result<&str, ApiError> {
        let given = digest(bearer_token(req).unwrap_or_default());
        let mut caller = None;
        for (name, key) in &self.clients {
            if constant_time_eq(&given, key) {
                caller = Some(name.as_str());
            }
        }
        caller.ok_or(ApiError::Unauthorized)
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The token center and the caller's name, or why not: not found without the setting, 401
/// without a known key. Nothing else about the request is read before.
fn authorize<'a>(
    state: &'a AppState,
    req: &HttpRequest,
    endpoint: &'static str,
) -> Result<&'a TokenCenter, ApiError> {
    let center = state
        .token_center
        .as_ref()
        .ok_or(ApiError::NotFound("no such endpoint"))?;
    match center.caller(req) {
        Ok(name) => {
            state.metrics.token_center_request(name, endpoint);
            Ok(center)
        }
        Err(e) => {
            state.metrics.token_center_refused();
            Err(e)
        }
    }
}

/// The account's current access token, shared with its other servers.
#[utoipa::path(
    get,
    path = "/api/wechat/access_token",
    tag = "token center",
    security(("token_center_key" = [])),
    responses(
        (status = 200, description = "The current token and how long it still lives", body = AccessTokenAnswer),
        (status = 401, description = "`unauthorized`: no known key (always the same answer, with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 404, description = "`not_found`: without `WXLOGIN_TOKEN_CLIENTS`", body = ErrorBody),
        (status = 503, description = "`wechat_unavailable`: WeChat gave none", body = ErrorBody),
    ),
)]
pub(super) async fn access_token(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let center = authorize(&state, &req, "access_token")?;
    let held = held(center.tokens.send(GetToken::new()).await)?;
    Ok(HttpResponse::Ok().json(AccessTokenAnswer {
        access_token: held.token.as_str(),
        expires_in: held.expires_in().as_secs(),
    }))
}

/// The JS-SDK's current `jsapi_ticket`.
#[utoipa::path(
    get,
    path = "/api/wechat/jsapi_ticket",
    tag = "token center",
    security(("token_center_key" = [])),
    responses(
        (status = 200, description = "The current ticket and how long it still lives", body = TicketAnswer),
        (status = 401, description = "`unauthorized`: no known key (always the same answer, with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 404, description = "`not_found`: without `WXLOGIN_TOKEN_CLIENTS`", body = ErrorBody),
        (status = 503, description = "`wechat_unavailable`: WeChat gave none", body = ErrorBody),
    ),
)]
pub(super) async fn jsapi_ticket(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let center = authorize(&state, &req, "jsapi_ticket")?;
    let held = held(center.tickets.send(GetToken::new()).await)?;
    Ok(HttpResponse::Ok().json(TicketAnswer {
        ticket: held.token.as_str(),
        expires_in: held.expires_in().as_secs(),
    }))
}

/// The access token WeChat refused (`40001`).
#[derive(Deserialize, ToSchema)]
pub(super) struct FailedToken {
    access_token: String,
}

/// The ticket that failed.
#[derive(Deserialize, ToSchema)]
pub(super) struct FailedTicket {
    ticket: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct AccessTokenAnswer<'a> {
    access_token: &'a str,
    /// Seconds it still lives.
    expires_in: u64,
}

#[derive(Serialize, ToSchema)]
pub(super) struct TicketAnswer<'a> {
    ticket: &'a str,
    /// Seconds it still lives.
    expires_in: u64,
}

/// Reports a token WeChat refused: replaced only if it is still the current one (one fetch for
/// any number of reports), then answered as `GET` does.
#[utoipa::path(
    post,
    path = "/api/wechat/access_token/refresh",
    tag = "token center",
    security(("token_center_key" = [])),
    request_body(content = FailedToken, content_type = "application/json"),
    responses(
        (status = 200, description = "The current token: a new one if the reported one was current", body = AccessTokenAnswer),
        (status = 400, description = "`bad_request`: the body is not the JSON shown", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: a body over 1 KiB", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no known key (always the same answer, with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 404, description = "`not_found`: without `WXLOGIN_TOKEN_CLIENTS`", body = ErrorBody),
        (status = 503, description = "`wechat_unavailable`: WeChat gave none", body = ErrorBody),
    ),
)]
pub(super) async fn refresh_access_token(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let center = authorize(&state, &req, "access_token_refresh")?;
    let failed: FailedToken =
        json_body(body, "{\"access_token\": the token WeChat refused}").await?;
    let failed = wxlogin_actors::AccessToken::new(&failed.access_token);
    let held = held(center.tokens.send(Refresh(failed)).await)?;
    Ok(HttpResponse::Ok().json(AccessTokenAnswer {
        access_token: held.token.as_str(),
        expires_in: held.expires_in().as_secs(),
    }))
}

/// Reports a ticket that failed, as the access token's refresh does.
#[utoipa::path(
    post,
    path = "/api/wechat/jsapi_ticket/refresh",
    tag = "token center",
    security(("token_center_key" = [])),
    request_body(content = FailedTicket, content_type = "application/json"),
    responses(
        (status = 200, description = "The current ticket: a new one if the reported one was current", body = TicketAnswer),
        (status = 400, description = "`bad_request`: the body is not the JSON shown", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: a body over 1 KiB", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no known key (always the same answer, with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 404, description = "`not_found`: without `WXLOGIN_TOKEN_CLIENTS`", body = ErrorBody),
        (status = 503, description = "`wechat_unavailable`: WeChat gave none", body = ErrorBody),
    ),
)]
pub(super) async fn refresh_jsapi_ticket(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let center = authorize(&state, &req, "jsapi_ticket_refresh")?;
    let failed: FailedTicket = json_body(body, "{\"ticket\": the ticket that failed}").await?;
    let failed = crate::wechat::api::JsapiTicket::new(&failed.ticket);
    let held = held(center.tickets.send(Refresh(failed)).await)?;
    Ok(HttpResponse::Ok().json(TicketAnswer {
        ticket: held.token.as_str(),
        expires_in: held.expires_in().as_secs(),
    }))
}

/// A token or ticket is a few hundred bytes.
const MAX_BODY_BYTES: usize = 1024;

/// The body, read (at most [`MAX_BODY_BYTES`]) only once the caller is authorized: nobody
/// without a key makes the server buffer anything.
async fn json_body<T: serde::de::DeserializeOwned>(
    body: web::Payload,
    shape: &str,
) -> Result<T, ApiError> {
    let body = read_body(body, MAX_BODY_BYTES).await?;
    serde_json::from_slice(&body)
        .map_err(|_| ApiError::BadRequest(format!("the body must be JSON {shape}")))
}

/// A token actor's answer; its failure is WeChat's unavailability (503).
fn held<T>(
    answer: Result<Result<Held<T>, TokenError>, actix::MailboxError>,
) -> Result<Held<T>, ApiError> {
    answer?.map_err(|e| ApiError::WechatUnavailable(WechatError::Token(e)))
}
