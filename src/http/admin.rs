//! The operator's API under `/admin`, behind `WXLOGIN_ADMIN_TOKEN`. Without that setting
//! none of these routes exist.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use wxlogin_storage::{constant_time_eq, BindingStream, LoginCursor, OpenId, Phone};

use super::session::bearer_token;
use super::AppState;
use crate::audit::{self, Unbinder};
use crate::backup::BindingLine;
use crate::error::ApiError;

/// Most login-log entries in one page.
const MAX_PAGE: usize = 1000;

/// The admin routes, when an admin token is configured.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .route("/bindings", web::get().to(find_binding))
            .route("/bindings/{openid}", web::delete().to(delete_binding))
            .route("/logins", web::get().to(logins))
            .route("/backup", web::get().to(backup)),
    );
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
    let query = web::Query::<Q>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(query.into_inner())
}

/// For routes that take no query parameters (any given are ignored).
#[derive(Deserialize)]
struct NoQuery {}

#[derive(Deserialize)]
struct BindingQuery {
    phone: Option<String>,
    openid: Option<String>,
}

async fn find_binding(
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
            return Err(ApiError::BadRequest(
                "give exactly one of phone and openid".into(),
            ))
        }
    };
    let binding = binding.ok_or(ApiError::NotFound("no such binding"))?;
    Ok(HttpResponse::Ok().json(BindingLine::from(&binding)))
}

async fn delete_binding(
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
    state.forget_authorization_codes(&openid);
    state.metrics.unbind();
    audit::unbind(&openid, Unbinder::Admin);
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
struct LoginsQuery {
    openid: String,
    limit: Option<usize>,
    before: Option<String>,
}

async fn logins(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let query: LoginsQuery = authorize(&state, &req)?;
    let limit = query.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let before = match &query.before {
        Some(raw) => Some(LoginCursor::parse(raw).ok_or(ApiError::BadRequest(
            "before is not a cursor from an earlier page".into(),
        ))?),
        None => None,
    };
    let Some(openid) = OpenId::parse(&query.openid) else {
        return Ok(HttpResponse::Ok().json(json!({"logins": [], "next": null})));
    };
    let page = state.store.logins(&openid, limit, before).await?;
    let logins: Vec<_> = page
        .records
        .iter()
        .map(|r| json!({"at_ms": r.at_ms, "method": format!("{:?}", r.method).to_lowercase(), "client_ip": r.client_ip}))
        .collect();
    Ok(
        HttpResponse::Ok()
            .json(json!({"logins": logins, "next": page.next.map(|c| c.to_string())})),
    )
}

/// All bindings as of one moment, as JSON lines, streamed while the store reads them (binds
/// go on meanwhile).
async fn backup(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authorize::<NoQuery>(&state, &req)?;
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
