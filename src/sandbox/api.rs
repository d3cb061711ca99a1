//! The fake WeChat API under `/sandbox/api`: `cgi-bin/token` and `cgi-bin/qrcode/create`,
//! with WeChat's answers and error codes.

use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{random_ticket, random_token, Simulator, APPID, TOKEN_LIFETIME_SECS};
use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/sandbox/api/cgi-bin/token", web::get().to(token))
        .route(
            "/sandbox/api/cgi-bin/qrcode/create",
            web::post().to(create_qrcode),
        );
}

fn wechat_error(errcode: i64, errmsg: &str) -> HttpResponse {
    HttpResponse::Ok().json(json!({"errcode": errcode, "errmsg": errmsg}))
}

fn unavailable() -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::ServiceUnavailable()
        .json(json!({"error": "sandbox_down", "message": "the simulated WeChat API is down"})))
}

#[derive(Deserialize)]
struct TokenQuery {
    appid: String,
    secret: String,
}

async fn token(
    sim: web::Data<Simulator>,
    query: web::Query<TokenQuery>,
) -> Result<HttpResponse, ApiError> {
    let mut state = sim.state();
    if state.down {
        return unavailable();
    }
    if query.appid != APPID {
        return Ok(wechat_error(40013, "invalid appid"));
    }
    if query.secret != sim.secret {
        return Ok(wechat_error(40125, "invalid appsecret"));
    }
    let token = random_token();
    state.access_token = Some(token.clone());
    state.token_fetches += 1;
    Ok(HttpResponse::Ok().json(json!({"access_token": token, "expires_in": TOKEN_LIFETIME_SECS})))
}

#[derive(Deserialize)]
struct AccessTokenQuery {
    access_token: String,
}

#[derive(Deserialize)]
struct QrRequest {
    expire_seconds: Option<u64>,
    action_name: String,
    action_info: ActionInfo,
}

#[derive(Deserialize)]
struct ActionInfo {
    scene: Scene,
}

#[derive(Deserialize)]
struct Scene {
    scene_str: String,
}

async fn create_qrcode(
    sim: web::Data<Simulator>,
    query: web::Query<AccessTokenQuery>,
    body: web::Json<QrRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut state = sim.state();
    if state.down {
        return unavailable();
    }
    if state.access_token.as_deref() != Some(query.access_token.as_str()) {
        return Ok(wechat_error(
            40001,
            "invalid credential, access_token is invalid or not latest",
        ));
    }
    let scene = &body.action_info.scene.scene_str;
    if body.action_name != "QR_STR_SCENE" || scene.is_empty() || scene.len() > 64 {
        return Ok(wechat_error(40097, "invalid args"));
    }
    let expire_seconds = body.expire_seconds.unwrap_or(60).clamp(1, 2_592_000);
    let ticket = random_ticket();
    let expires_at = Instant::now() + Duration::from_secs(expire_seconds);
    sim.tickets
        .insert(ticket.clone(), (scene.clone(), expires_at));
    state.qrcodes_created += 1;
    Ok(HttpResponse::Ok().json(json!({
        "ticket": ticket,
        "expire_seconds": expire_seconds,
        "url": format!("http://weixin.qq.com/q/sandbox{}", &random_token()[..16]),
    })))
}
