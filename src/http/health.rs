//! What an operator's probes and Prometheus read.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;
use wxlogin_actors::LoginMode;

use super::AppState;
use crate::error::{ApiError, ErrorBody};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

/// A probe's answer.
#[derive(Serialize, ToSchema)]
pub(super) struct Health {
    /// `ok` from /healthz, `ready` from /readyz.
    #[schema(examples("ok"))]
    status: &'static str,
}

/// Alive: the process answers HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process is alive", body = Health)),
)]
pub(super) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Ready: storage answers; when new scenes need WeChat's QR codes, an access token can be had
/// as far as the token actor knows; and, with `WXLOGIN_CALLBACK_IPS=wechat`, WeChat's callback
/// addresses are known. Probes never fetch a token themselves: each would be a call on WeChat's
/// daily quota. Code mode (and `auto` once it fell back) asks nothing of WeChat for a login.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready to serve logins", body = Health),
        (status = 503, description = "`not_ready`: storage, WeChat's token or its callback addresses", body = ErrorBody),
    ),
)]
pub(super) async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state
        .store
        .check()
        .map_err(|e| ApiError::NotReady(format!("storage: {e}")))?;
    if state.modes.current() == LoginMode::QrCode {
        state
            .wechat
            .token_health()
            .await
            .map_err(|e| ApiError::NotReady(format!("WeChat access token: {e}")))?;
    }
    if !state.callback.senders_known() {
        return Err(ApiError::NotReady(
            "WeChat's callback addresses are not fetched yet".into(),
        ));
    }
    Ok(HttpResponse::Ok().json(Health { status: "ready" }))
}

/// Prometheus' text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "The metrics", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)),
)]
pub(super) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(&state.scene_counters))
}
