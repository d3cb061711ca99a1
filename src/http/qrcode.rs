//! Login scenes: create a QR code, wait on its status, and bind a phone to finish.

use std::time::{Duration, Instant, SystemTime};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wxlogin_actors::{
    Bind, BindingScanner, FindScene, LoginMode, OpenScene, Phase, RequestCode, Requester,
    SceneHandle, SceneId, SceneLookup, SceneStatus, Watch, CODE_COOLDOWN,
};
use wxlogin_storage::Phone;

use super::client_ip::ClientIp;
use super::head::is_head;
use super::scene_owner::{self, BrowserKey, SceneSecret};
use super::AppState;
use super::{device, rate_limit};
use crate::audit::{self, LoginPath};
use crate::error::{ApiError, ErrorBody};
use crate::sms;
use crate::wechat::api::{QrTicket, WechatError};

/// Longest a status request may be held.
const MAX_WAIT_SECS: u64 = 30;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/qrcode", web::post().to(create))
        .route("/api/qrcode/{scene_id}/status", web::get().to(status))
        .route("/api/qrcode/{scene_id}/sms", web::post().to(send_code))
        .route("/api/qrcode/{scene_id}/bind", web::post().to(bind));
}

#[derive(Serialize, ToSchema)]
pub(super) struct Created {
    scene_id: String,
    /// Proves this client asked for the scene (see [`scene_owner`]); a browser also got it
    /// as a cookie, an API client sends it as `X-Scene-Secret`.
    scene_secret: String,
    #[schema(examples("qrcode", "code"))]
    mode: &'static str,
    /// QR mode: WeChat's ticket of the scene's own QR code.
    #[serde(skip_serializing_if = "Option::is_none")]
    ticket: Option<String>,
    /// Code mode: what the user sends the account.
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    /// QR mode: the scene's QR code; code mode: the account's, to follow it.
    qrcode_url: String,
    expires_in: u64,
}

/// WeChat makes parametric QR codes only for verified service accounts; others get this.
const API_UNAUTHORIZED: i64 = 48001;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct CreateQuery {
    /// `code`: a login code rather than a QR code (for a phone, which can't scan itself);
    /// only where the account takes codes.
    mode: Option<String>,
}

/// A new login scene: a QR code to scan, or (code mode) a code to send the account.
#[utoipa::path(
    post,
    path = "/api/qrcode",
    tag = "login",
    params(CreateQuery),
    responses(
        (status = 200, description = "The scene; a new browser also gets the `wxlogin_browser` cookie", body = Created),
        (status = 400, description = "`bad_request`: `mode=code` where the account takes no codes, or another mode", body = ErrorBody),
        (status = 403, description = "`cross_site_request`: sent by another site's page", body = ErrorBody),
        (status = 429, description = "`too_many_requests`: the per-IP limit (with `Retry-After`)", body = ErrorBody),
        (status = 503, description = "`busy` at the live-scene cap, `wechat_unavailable`, `storage_unavailable`", body = ErrorBody),
    ),
)]
pub(super) async fn create(
    state: web::Data<AppState>,
    ip: ClientIp,
    query: web::Query<CreateQuery>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    // Another site's form or script would replace the visitor's browser key (breaking their
    // own login in progress) and spend QR quota from their IP. Browsers say where a request
    // comes from; API clients send no such header.
    let from_another_site = request
        .headers()
        .get("sec-fetch-site")
        .is_some_and(|site| site.as_bytes() == b"cross-site");
    if from_another_site {
        return Err(ApiError::CrossSite);
    }
    // Each QR code spends WeChat quota: limit before calling.
    rate_limit::check(&state.limits.qr_per_ip, &ip.limit_key()).await?;
    let max = state.limits.max_scenes;
    if max > 0 && state.scene_counters.live() >= max {
        return Err(ApiError::Busy);
    }
    let codes_asked = match query.mode.as_deref() {
        None => false,
        Some("code") => true,
        Some(_) => return Err(ApiError::BadRequest("mode must be code".into())),
    };
    let asked_mode = state.modes.for_new_scene(codes_asked).ok_or_else(|| {
        ApiError::BadRequest("this account takes no login codes (WXLOGIN_LOGIN_MODE=qrcode)".into())
    })?;
    let id = SceneId::generate();
    let qr = match asked_mode {
        LoginMode::QrCode => qrcode_or_fallback(&state, &id).await?,
        LoginMode::Code => None,
    };
    let mode = if qr.is_some() {
        LoginMode::QrCode
    } else {
        LoginMode::Code
    };
    let user_agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|ua| ua.to_str().ok())
        .unwrap_or_default();
    let browser = BrowserKey::of(&request, state.cookies.secure);
    let scene_secret = browser.scene_secret(&id);
    let code = state
        .scenes
        .send(OpenScene {
            id: id.clone(),
            mode,
            requester: Requester {
                ip: ip.shown(),
                device: device::describe(user_agent),
                at: SystemTime::now(),
                session_digest: scene_secret.session_digest(),
            },
        })
        .await??;
    let (qrcode_url, ticket) = match qr {
        Some(qr) => (state.wechat.image_url(&qr), Some(qr.ticket)),
        None => (state.modes.account_qr_url.clone(), None),
    };
    let mut response = HttpResponse::Ok();
    if let Some(cookie) = browser.cookie(state.cookies.secure) {
        response.cookie(cookie);
    }
    Ok(response.json(Created {
        scene_id: id.to_string(),
        scene_secret: scene_secret.as_str().to_owned(),
        mode: mode.as_str(),
        ticket,
        code: code.map(|code| code.to_string()),
        qrcode_url,
        expires_in: state.scene_ttl.as_secs(),
    }))
}

/// The scene's QR code from WeChat, or `None` when `auto` mode falls back to codes because
/// WeChat won't make QR codes for this account.
async fn qrcode_or_fallback(state: &AppState, id: &SceneId) -> Result<Option<QrTicket>, ApiError> {
    let key = state.scene_keys.key(id);
    match state.wechat.create_qrcode(&key, state.scene_ttl).await {
        Ok(qr) => Ok(Some(qr)),
        Err(WechatError::Api {
            errcode: API_UNAUTHORIZED,
            ..
        }) if state.modes.can_fall_back() => {
            if state.modes.qrcodes_refused() {
                tracing::warn!("WeChat refused to make a parametric QR code (errcode 48001: this account is not a verified service account); WXLOGIN_LOGIN_MODE=auto now serves every login in code mode");
                state.metrics.code_mode_fallback();
            }
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn find(state: &AppState, raw_id: &str) -> Result<SceneLookup, ApiError> {
    let Some(id) = SceneId::parse(raw_id) else {
        return Ok(SceneLookup::Unknown);
    };
    Ok(state.scenes.send(FindScene(id)).await??)
}

/// A scene as its own browser finds it.
pub(super) enum Owned {
    /// Live, and the request proved its secret.
    Live(SceneHandle, SceneSecret),
    /// It ended: its last status.
    Ended(SceneStatus),
    Unknown,
}

/// The scene, if the request comes from the browser that created it while it is live. An
/// ended scene tells anyone who knows its id how it ended: it has nothing left to hand out.
pub(super) async fn lookup(
    state: &AppState,
    raw_id: &str,
    request: &HttpRequest,
) -> Result<Owned, ApiError> {
    Ok(match find(state, raw_id).await? {
        SceneLookup::Live(scene) => {
            let secret = scene_owner::check(request, state.cookies.secure, raw_id, &scene)?;
            Owned::Live(scene, secret)
        }
        SceneLookup::Ended(last) => Owned::Ended(last),
        SceneLookup::Unknown => Owned::Unknown,
    })
}

/// The live scene and its proven secret, or why there is none.
async fn live_scene(
    state: &AppState,
    raw_id: &str,
    request: &HttpRequest,
) -> Result<(SceneHandle, SceneSecret), ApiError> {
    match lookup(state, raw_id, request).await? {
        Owned::Live(scene, secret) => Ok((scene, secret)),
        Owned::Ended(_) => Err(ApiError::SceneExpired),
        Owned::Unknown => Err(ApiError::SceneNotFound),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct StatusQuery {
    /// Hold the answer until the state changes or this many seconds pass.
    #[serde(default)]
    #[param(minimum = 0, maximum = 30)]
    wait: u64,
}

/// A scene's status as the long-poll and the event stream answer it.
#[derive(Serialize, ToSchema)]
pub(super) struct StatusBody {
    #[schema(examples("waiting", "confirm", "need_bind", "logged_in", "denied", "expired"))]
    state: &'static str,
    #[schema(examples("qrcode", "code"))]
    mode: &'static str,
    /// In `confirm`: the number the browser shows, for the scanner to reply with.
    #[serde(skip_serializing_if = "Option::is_none")]
    confirm_number: Option<u8>,
    /// The scanner follows the account (every scan, every login code sent by text).
    subscribed: bool,
    /// The scan made them follow.
    new_follower: bool,
    bound: bool,
    expires_in: u64,
    /// In `logged_in`: the session token (also set as the session cookie).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) token: Option<String>,
}

impl StatusBody {
    /// A live scene's status for the browser that proved `secret`: logged in, it carries the
    /// session token the secret derives.
    pub(super) fn of(status: SceneStatus, secret: &SceneSecret) -> Self {
        let logged_in = status.phase == Phase::LoggedIn;
        Self {
            token: logged_in.then(|| secret.session_token().as_str().to_owned()),
            ..Self::from(status)
        }
    }
}

/// An ended scene's status, or one told to anyone: never a token.
impl From<SceneStatus> for StatusBody {
    fn from(status: SceneStatus) -> Self {
        Self {
            state: status.phase.as_str(),
            mode: status.mode.as_str(),
            confirm_number: status.confirm_number,
            subscribed: status.subscribed,
            new_follower: status.new_follower,
            bound: status.bound,
            expires_in: status
                .expires_at
                .saturating_duration_since(Instant::now())
                .as_secs(),
            token: None,
        }
    }
}

/// The last status of a scene that ended after it was looked up.
pub(super) async fn ended(state: &AppState, raw_id: &str) -> Result<StatusBody, ApiError> {
    match find(state, raw_id).await? {
        SceneLookup::Ended(last) => Ok(last.into()),
        // Ended scenes never come back; and one is forgotten only a TTL after it ended.
        SceneLookup::Live(_) | SceneLookup::Unknown => Err(ApiError::SceneNotFound),
    }
}

/// The scene's status, at once or (with `wait`) when it changes.
#[utoipa::path(
    get,
    path = "/api/qrcode/{scene_id}/status",
    tag = "login",
    params(("scene_id" = String, Path, description = "The scene_id POST /api/qrcode answered"), StatusQuery),
    security(("scene_secret" = []), ("browser_cookie" = [])),
    responses(
        (status = 200, description = "The status; `logged_in` also sets the session cookie", body = StatusBody),
        (status = 400, description = "`invalid_query`: `wait` is not 0 to 30", body = ErrorBody),
        (status = 403, description = "`not_scene_owner`: another browser's live scene", body = ErrorBody),
        (status = 404, description = "`scene_not_found`", body = ErrorBody),
    ),
)]
pub(super) async fn status(
    state: web::Data<AppState>,
    scene_id: web::Path<String>,
    query: web::Query<StatusQuery>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if query.wait > MAX_WAIT_SECS {
        return Err(ApiError::InvalidQuery(format!(
            "the query parameter `wait` must be 0 to {MAX_WAIT_SECS} seconds"
        )));
    }
    // A HEAD's answer has no body to wait for.
    let wait = if is_head(&request) { 0 } else { query.wait };
    let (scene, secret) = match lookup(&state, &scene_id, &request).await? {
        Owned::Live(scene, secret) => (scene, secret),
        Owned::Ended(last) => return Ok(HttpResponse::Ok().json(StatusBody::from(last))),
        Owned::Unknown => return Err(ApiError::SceneNotFound),
    };
    // `send` lets go of the scene's address: a parked poll holds only its receiver.
    let Ok(watched) = scene
        .send(Watch {
            until_change: wait > 0,
        })
        .await
    else {
        return Ok(HttpResponse::Ok().json(ended(&state, &scene_id).await?));
    };
    let mut status = watched.status;
    if let Some(change) = watched.change {
        let mut shutting_down = state.shutting_down.clone();
        tokio::select! {
            changed = change => status = changed.unwrap_or(status),
            () = tokio::time::sleep(Duration::from_secs(wait)) => {}
            // On shutdown the state is still the one we read: nothing changed meanwhile.
            _ = shutting_down.wait_for(|&down| down) => {}
        }
    }
    let body = StatusBody::of(status, &secret);
    let mut response = HttpResponse::Ok();
    if let Some(token) = &body.token {
        response.cookie(state.cookies.carrying(token));
    }
    Ok(response.json(body))
}

#[derive(Deserialize, ToSchema)]
pub(super) struct SendCode {
    /// A mainland China mobile number, optionally with +86.
    #[schema(examples("13800138000"))]
    phone: String,
}

/// What a code request answers.
#[derive(Serialize, ToSchema)]
pub(super) struct CodeSent {
    /// Seconds before another code may be asked for this scene.
    cooldown: u64,
}

/// Sends a verification code to the phone the scanner binds.
#[utoipa::path(
    post,
    path = "/api/qrcode/{scene_id}/sms",
    tag = "login",
    params(("scene_id" = String, Path, description = "The scene, awaiting a bind")),
    security(("scene_secret" = []), ("browser_cookie" = [])),
    request_body = SendCode,
    responses(
        (status = 202, description = "A code is on its way", body = CodeSent),
        (status = 400, description = "`invalid_json`", body = ErrorBody),
        (status = 403, description = "`not_scene_owner`", body = ErrorBody),
        (status = 404, description = "`scene_not_found`", body = ErrorBody),
        (status = 409, description = "`not_awaiting_bind`", body = ErrorBody),
        (status = 410, description = "`scene_expired`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not application/json", body = ErrorBody),
        (status = 422, description = "`invalid_phone`: not a mainland number, or the SMS provider refused it", body = ErrorBody),
        (status = 429, description = "`too_many_requests` (with `Retry-After`) or `sms_rate_limited`", body = ErrorBody),
        (status = 503, description = "`sms_unavailable`; `storage_unavailable` when the limits, shared on several nodes, cannot be checked", body = ErrorBody),
    ),
)]
pub(super) async fn send_code(
    state: web::Data<AppState>,
    scene_id: web::Path<String>,
    body: web::Json<SendCode>,
    ip: ClientIp,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let phone = Phone::parse(&body.phone).ok_or(ApiError::InvalidPhone)?;
    // The scanner is fixed once the scene awaits a bind, so the codes are theirs to spend.
    let (scene, secret) = live_scene(&state, &scene_id, &request).await?;
    let scanner = scene
        .send(BindingScanner)
        .await
        .map_err(|_| ApiError::SceneExpired)??;
    let limits = &state.limits;
    let ip_key = ip.limit_key();
    let taken = rate_limit::acquire_all(&[
        (&limits.sms_per_ip, ip_key.as_str()),
        (&limits.sms_per_phone, phone.as_str()),
        (&limits.sms_per_user, scanner.as_str()),
    ])
    .await?;
    let sent = async {
        let code = sms::new_code();
        // A handle carries one message, so the scene is found again for the code.
        let (scene, _) = live_scene(&state, &scene_id, &request).await?;
        scene
            .send(RequestCode {
                code: secret.code_digest(&phone, &code),
            })
            .await
            .map_err(|_| ApiError::SceneExpired)??;
        state.sms.send(&phone, &code).await?;
        Ok::<_, ApiError>(())
    };
    if let Err(e) = sent.await {
        // No code went out (a resend inside the cooldown, say): it costs nothing.
        taken.give_back().await;
        return Err(e);
    }
    Ok(HttpResponse::Accepted().json(CodeSent {
        cooldown: CODE_COOLDOWN.as_secs(),
    }))
}

#[derive(Deserialize, ToSchema)]
pub(super) struct BindRequest {
    #[schema(examples("13800138000"))]
    phone: String,
    /// The code the SMS carried.
    #[schema(examples("123456"))]
    code: String,
}

/// A finished bind: the user is logged in.
#[derive(Serialize, ToSchema)]
pub(super) struct Bound {
    #[schema(examples("logged_in"))]
    state: &'static str,
    /// The session token (also set as the session cookie).
    token: String,
}

/// Binds the phone with its code and logs the scanner in.
#[utoipa::path(
    post,
    path = "/api/qrcode/{scene_id}/bind",
    tag = "login",
    params(("scene_id" = String, Path, description = "The scene, awaiting a bind")),
    security(("scene_secret" = []), ("browser_cookie" = [])),
    request_body = BindRequest,
    responses(
        (status = 200, description = "Logged in; the session cookie is set", body = Bound),
        (status = 400, description = "`invalid_code`, `invalid_json`", body = ErrorBody),
        (status = 403, description = "`not_scene_owner`", body = ErrorBody),
        (status = 404, description = "`scene_not_found`", body = ErrorBody),
        (status = 409, description = "`phone_taken`, `not_awaiting_bind`, `unfollowed`", body = ErrorBody),
        (status = 410, description = "`scene_expired`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not application/json", body = ErrorBody),
        (status = 422, description = "`invalid_phone`", body = ErrorBody),
        (status = 429, description = "`too_many_attempts` after 5 wrong codes", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`", body = ErrorBody),
    ),
)]
pub(super) async fn bind(
    state: web::Data<AppState>,
    scene_id: web::Path<String>,
    body: web::Json<BindRequest>,
    ip: ClientIp,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let phone = Phone::parse(&body.phone).ok_or(ApiError::InvalidPhone)?;
    let (scene, secret) = live_scene(&state, &scene_id, &request).await?;
    let code = secret.code_digest(&phone, &body.code);
    let bound = scene
        .send(Bind {
            phone,
            code,
            client_ip: ip.shown(),
        })
        .await
        .map_err(|_| ApiError::SceneExpired)??;
    state.metrics.bind();
    audit::bind(&bound.binding.openid, &ip.shown());
    state.logged_in(&bound.binding.openid, LoginPath::Bind, bound.mode);
    state.unionids.look_up_later(bound.binding);
    let token = secret.session_token();
    let token = token.as_str();
    Ok(HttpResponse::Ok()
        .cookie(state.cookies.carrying(token))
        .json(Bound {
            state: Phase::LoggedIn.as_str(),
            token: token.to_owned(),
        }))
}
