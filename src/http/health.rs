//! What an operator's probes and Prometheus read.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;
use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

/// Alive: the process answers HTTP.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready: storage answers, a WeChat access token can be had and, with
/// `WXLOGIN_CALLBACK_IPS=wechat`, WeChat's callback addresses are known.
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state
        .store
        .check()
        .map_err(|e| ApiError::NotReady(format!("storage: {e}")))?;
    state
        .wechat
        .token()
        .await
        .map_err(|e| ApiError::NotReady(format!("WeChat access token: {e}")))?;
    if !state.callback.senders_known() {
        return Err(ApiError::NotReady(
            "WeChat's callback addresses are not fetched yet".into(),
        ));
    }
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(&state.scene_counters))
}
