//! The operator's API under `/admin`, behind `WXLOGIN_ADMIN_TOKEN`. Without that setting
//! none of these routes exist.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wxlogin_storage::{constant_time_eq, BindingStream, LoginCursor, OpenId, Phone};

use super::head::is_head;
use super::rejections;
use super::session::bearer_token;
use super::AppState;
use crate::audit::{self, Unbinder};
use crate::backup::BindingLine;
use crate::error::{ApiError, ErrorBody};

/// Most login-log entries in one page.
const MAX_PAGE: usize = 1000;

/// The admin routes, when an admin token is configured.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/bindings", web::get().to(find_binding))
        .route("/admin/bindings/{openid}", web::delete().to(delete_binding))
        .route("/admin/logins", web::get().to(logins))
        .route("/admin/backup", web::get().to(backup));
}

/// Checks the admin token (in constant time), then reads the query: nothing about a request
/// is looked at before it is authorized.
fn authorize<Q: serde::de::DeserializeOwned>(
    state: &AppState,
    req: &HttpRequest,
) -> Result<Q, ApiError> {
    let expected = state
        .admin_token
        .as_deref()
        .ok_or(ApiError::NotFound("no such endpoint"))?;
    let given = bearer_token(req).ok_or(ApiError::Unauthorized)?;
    if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::Unauthorized);
    }
    let query = web::Query::<Q>::from_query(req.query_string()).map_err(rejections::query)?;
    Ok(query.into_inner())
}

/// For routes that take no query parameters (any given are ignored).
#[derive(Deserialize)]
struct NoQuery {}

/// Exactly one of the two.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct BindingQuery {
    /// A mainland China mobile number.
    phone: Option<String>,
    openid: Option<String>,
}

/// The binding of a phone or an openid.
#[utoipa::path(
    get,
    path = "/admin/bindings",
    tag = "admin",
    params(BindingQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The binding", body = BindingLine),
        (status = 400, description = "`invalid_query`: not exactly one of phone and openid", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such binding (or no admin token is configured)", body = ErrorBody),
        (status = 422, description = "`invalid_phone`", body = ErrorBody),
    ),
)]
pub(super) async fn find_binding(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query: BindingQuery = authorize(&state, &req)?;
    let binding = match (&query.phone, &query.openid) {
        (Some(phone), None) => {
            let phone = Phone::parse(phone).ok_or(ApiError::InvalidPhone)?;
            state.store.binding_by_phone(&phone).await?
        }
        (None, Some(openid)) => match OpenId::parse(openid) {
            Some(openid) => state.store.binding(&openid).await?,
            None => None,
        },
        _ => {
            return Err(ApiError::InvalidQuery(
                "give exactly one of the query parameters `phone` and `openid`".into(),
            ))
        }
    };
    let binding = binding.ok_or(ApiError::NotFound("no such binding"))?;
    Ok(HttpResponse::Ok().json(BindingLine::from(&binding)))
}

/// Unbinds the user: their sessions, access tokens and codes end.
#[utoipa::path(
    delete,
    path = "/admin/bindings/{openid}",
    tag = "admin",
    params(("openid" = String, Path, description = "The user's openid")),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Unbound"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such binding", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`", body = ErrorBody),
    ),
)]
pub(super) async fn delete_binding(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    authorize::<NoQuery>(&state, &req)?;
    let openid = req.match_info().get("openid").and_then(OpenId::parse);
    let openid = openid.ok_or(ApiError::NotFound("no such binding"))?;
    // Every binding is older than the end of time: this always unbinds.
    if !state.store.unbind(&openid).await? {
        return Err(ApiError::NotFound("no such binding"));
    }
    state.forget_authorization_codes(&openid).await?;
    state.metrics.unbind();
    audit::unbind(&openid, Unbinder::Admin);
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct LoginsQuery {
    openid: String,
    /// Entries per page (50 unless given; more than 1000 is 1000, 0 is 1).
    #[param(minimum = 0)]
    limit: Option<usize>,
    /// The `next` cursor of the page before.
    before: Option<String>,
}

/// One login, newest first.
#[derive(Serialize, ToSchema)]
pub(super) struct LoginEntry {
    /// Unix milliseconds.
    at_ms: u64,
    #[schema(examples("scan", "bind", "code"))]
    method: String,
    client_ip: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct LoginsPage {
    logins: Vec<LoginEntry>,
    /// The cursor of the next page, if there is one.
    next: Option<String>,
}

/// A user's login log, a page at a time.
#[utoipa::path(
    get,
    path = "/admin/logins",
    tag = "admin",
    params(LoginsQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A page", body = LoginsPage),
        (status = 400, description = "`invalid_query`: no openid, a bad limit, or a cursor not from an earlier page", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ),
)]
pub(super) async fn logins(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query: LoginsQuery = authorize(&state, &req)?;
    let limit = query.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let before = match &query.before {
        Some(raw) => Some(LoginCursor::parse(raw).ok_or(ApiError::InvalidQuery(
            "the query parameter `before` is not a cursor from an earlier page".into(),
        ))?),
        None => None,
    };
    let Some(openid) = OpenId::parse(&query.openid) else {
        return Ok(HttpResponse::Ok().json(LoginsPage {
            logins: Vec::new(),
            next: None,
        }));
    };
    let page = state.store.logins(&openid, limit, before).await?;
    let logins = page
        .records
        .iter()
        .map(|r| LoginEntry {
            at_ms: r.at_ms,
            method: format!("{:?}", r.method).to_lowercase(),
            client_ip: r.client_ip.clone(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(LoginsPage {
        logins,
        next: page.next.map(|c| c.to_string()),
    }))
}

/// All bindings as of one moment, as JSON lines, streamed while the store reads them (binds
/// go on meanwhile).
#[utoipa::path(
    get,
    path = "/admin/backup",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "One binding per line, as JSON", content_type = "application/x-ndjson", body = BindingLine),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ),
)]
pub(super) async fn backup(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    authorize::<NoQuery>(&state, &req)?;
    if is_head(&req) {
        // Nothing is read for an answer without a body.
        return Ok(HttpResponse::Ok()
            .content_type("application/x-ndjson")
            .streaming(futures_util::stream::empty::<Result<Bytes, ApiError>>()));
    }
    let bindings = state.store.backup()?;
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .body(BackupBody { bindings, sent: 0 }))
}

struct BackupBody {
    bindings: BindingStream,
    sent: usize,
}

impl MessageBody for BackupBody {
    /// A store error ends the response early: the client sees a truncated body, not a backup.
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        match self.bindings.poll_batch(cx) {
            Poll::Ready(Some(Ok(batch))) => {
                let mut chunk = Vec::with_capacity(batch.len() * 80);
                for binding in &batch {
                    serde_json::to_writer(&mut chunk, &BindingLine::from(binding))?;
                    chunk.push(b'\n');
                }
                self.sent += batch.len();
                Poll::Ready(Some(Ok(Bytes::from(chunk))))
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::error!(error = %e, sent = self.sent, "backup failed");
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                tracing::info!(bindings = self.sent, "backup taken");
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
