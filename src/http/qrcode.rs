//! Login scenes: create a QR code, wait on its status, and bind a phone to finish.

use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use wxlogin_actors::{
    Bind, FindScene, OpenScene, Phase, RequestCode, SceneHandle, SceneId, SceneLookup, SceneStatus,
    Watch, CODE_COOLDOWN,
};
use wxlogin_storage::Phone;

use super::client_ip::ClientIp;
use super::rate_limit;
use super::AppState;
use crate::error::ApiError;

/// Longest a status request may be held.
const MAX_WAIT_SECS: u64 = 30;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/qrcode", web::post().to(create))
        .route("/api/qrcode/{scene_id}/status", web::get().to(status))
        .route("/api/qrcode/{scene_id}/sms", web::post().to(send_code))
        .route("/api/qrcode/{scene_id}/bind", web::post().to(bind));
}

#[derive(Serialize)]
struct Created {
    scene_id: String,
    ticket: String,
    qrcode_url: String,
    expires_in: u64,
}

async fn create(state: web::Data<AppState>, ip: ClientIp) -> Result<HttpResponse, ApiError> {
    // Each QR code spends WeChat quota: limit before calling.
    rate_limit::check(&state.limits.qr_per_ip, &ip.0).map_err(too_many)?;
    let max = state.limits.max_scenes;
    if max > 0 && state.scene_counters.live() >= max {
        return Err(ApiError::Busy);
    }
    let id = SceneId::generate();
    let qr = state.wechat.create_qrcode(&id, state.scene_ttl).await?;
    state
        .scenes
        .send(OpenScene {
            id: id.clone(),
            client_ip: ip.0,
        })
        .await
        .map_err(|e| ApiError::Internal(format!("scene supervisor: {e}")))?;
    Ok(HttpResponse::Ok().json(Created {
        qrcode_url: state.wechat.image_url(&qr),
        scene_id: id.to_string(),
        ticket: qr.ticket,
        expires_in: state.scene_ttl.as_secs(),
    }))
}

pub(super) async fn lookup(state: &AppState, raw_id: &str) -> Result<SceneLookup, ApiError> {
    let Some(id) = SceneId::parse(raw_id) else {
        return Ok(SceneLookup::Unknown);
    };
    state
        .scenes
        .send(FindScene(id))
        .await
        .map_err(|e| ApiError::Internal(format!("scene supervisor: {e}")))
}

/// The live scene, or why there is none.
async fn live_scene(state: &AppState, raw_id: &str) -> Result<SceneHandle, ApiError> {
    match lookup(state, raw_id).await? {
        SceneLookup::Live(scene) => Ok(scene),
        SceneLookup::Ended => Err(ApiError::SceneExpired),
        SceneLookup::Unknown => Err(ApiError::SceneNotFound),
    }
}

#[derive(Deserialize)]
struct StatusQuery {
    #[serde(default)]
    wait: u64,
}

/// A scene's status as the long-poll and the event stream answer it.
#[derive(Serialize)]
pub(super) struct StatusBody {
    state: &'static str,
    subscribed: bool,
    bound: bool,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) token: Option<String>,
}

impl From<SceneStatus> for StatusBody {
    fn from(status: SceneStatus) -> Self {
        Self {
            state: status.phase.as_str(),
            subscribed: status.subscribed,
            bound: status.bound,
            expires_in: status
                .expires_at
                .saturating_duration_since(Instant::now())
                .as_secs(),
            token: status.token.map(|t| t.as_str().to_owned()),
        }
    }
}

pub(super) fn expired() -> StatusBody {
    StatusBody {
        state: Phase::Expired.as_str(),
        subscribed: false,
        bound: false,
        expires_in: 0,
        token: None,
    }
}

async fn status(
    state: web::Data<AppState>,
    scene_id: web::Path<String>,
    query: web::Query<StatusQuery>,
) -> Result<HttpResponse, ApiError> {
    if query.wait > MAX_WAIT_SECS {
        return Err(ApiError::BadRequest(format!(
            "wait must be 0 to {MAX_WAIT_SECS} seconds"
        )));
    }
    let scene = match lookup(&state, &scene_id).await? {
        SceneLookup::Live(scene) => scene,
        SceneLookup::Ended => return Ok(HttpResponse::Ok().json(expired())),
        SceneLookup::Unknown => return Err(ApiError::SceneNotFound),
    };
    // The scene may expire between lookup and send.
    let Ok(watched) = scene
        .send(Watch {
            until_change: query.wait > 0,
        })
        .await
    else {
        return Ok(HttpResponse::Ok().json(expired()));
    };
    let mut status = watched.status;
    if let Some(change) = watched.change {
        let mut shutting_down = state.shutting_down.clone();
        tokio::select! {
            changed = change => status = changed.unwrap_or(status),
            () = tokio::time::sleep(Duration::from_secs(query.wait)) => {}
            // On shutdown the state is still the one we read: nothing changed meanwhile.
            _ = shutting_down.wait_for(|&down| down) => {}
        }
    }
    let body = StatusBody::from(status);
    let mut response = HttpResponse::Ok();
    if let Some(token) = &body.token {
        response.cookie(state.cookies.carrying(token));
    }
    Ok(response.json(body))
}

fn too_many(retry_after: Duration) -> ApiError {
    ApiError::TooManyRequests { retry_after }
}

#[derive(Deserialize)]
struct SendCode {
    phone: String,
}

async fn send_code(
    state: web::Data<AppState>,
    scene_id: web::Path<String>,
    body: web::Json<SendCode>,
    ip: ClientIp,
) -> Result<HttpResponse, ApiError> {
    let phone = Phone::parse(&body.phone).ok_or(ApiError::InvalidPhone)?;
    let scene = live_scene(&state, &scene_id).await?;
    rate_limit::check(&state.limits.sms_per_ip, &ip.0).map_err(too_many)?;
    rate_limit::check(&state.limits.sms_per_phone, phone.as_str()).map_err(too_many)?;
    let code = scene
        .send(RequestCode {
            phone: phone.clone(),
        })
        .await
        .map_err(|_| ApiError::SceneExpired)??;
    state.sms.send(&phone, &code).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({"cooldown": CODE_COOLDOWN.as_secs()})))
}

#[derive(Deserialize)]
struct BindRequest {
    phone: String,
    code: String,
}

async fn bind(
    state: web::Data<AppState>,
    scene_id: web::Path<String>,
    body: web::Json<BindRequest>,
    ip: ClientIp,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let phone = Phone::parse(&body.phone).ok_or(ApiError::InvalidPhone)?;
    let scene = live_scene(&state, &scene_id).await?;
    let token = scene
        .send(Bind {
            phone,
            code: body.code,
            client_ip: ip.0,
        })
        .await
        .map_err(|_| ApiError::SceneExpired)??;
    state.metrics.bind();
    state.metrics.login("bind");
    Ok(HttpResponse::Ok()
        .cookie(state.cookies.carrying(token.as_str()))
        .json(serde_json::json!({"state": Phase::LoggedIn.as_str(), "token": token.as_str()})))
}
