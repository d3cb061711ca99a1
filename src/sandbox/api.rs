//! The fake WeChat API under `/sandbox/api`: `cgi-bin/token`, `cgi-bin/stable_token`,
//! `cgi-bin/qrcode/create`, `cgi-bin/getcallbackip`, `cgi-bin/ticket/getticket` and
//! `cgi-bin/user/info`, with WeChat's answers and error codes, and failures on demand (web
//! authorization's code exchange is in `web_authorization`).

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{random_ticket, random_token, Fault, Simulator, APPID, TOKEN_LIFETIME_SECS};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/sandbox/api/cgi-bin/token", web::get().to(token))
        .route(
            "/sandbox/api/cgi-bin/stable_token",
            web::post().to(stable_token),
        )
        .route(
            "/sandbox/api/cgi-bin/qrcode/create",
            web::post().to(create_qrcode),
        )
        .route(
            "/sandbox/api/cgi-bin/getcallbackip",
            web::get().to(callback_ips),
        )
        .route(
            "/sandbox/api/cgi-bin/ticket/getticket",
            web::get().to(jsapi_ticket),
        )
        .route("/sandbox/api/cgi-bin/user/info", web::get().to(user_info));
}

pub(super) fn wechat_error(errcode: i64, errmsg: &str) -> HttpResponse {
    HttpResponse::Ok().json(json!({"errcode": errcode, "errmsg": errmsg}))
}

impl Simulator {
    /// What every API call goes through first: counting, the configured delay, outages and
    /// injected faults. `Some` is the failure to answer instead of the real thing.
    pub(super) async fn api_gate(&self) -> Option<HttpResponse> {
        let delay = {
            let mut state = self.state();
            state.api_calls += 1;
            state.delay
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut state = self.state();
        if state.down {
            return Some(HttpResponse::ServiceUnavailable().json(
                json!({"error": "sandbox_down", "message": "the simulated WeChat API is down"}),
            ));
        }
        state.faults.pop_front().map(|fault| match fault {
            Fault::Errcode(errcode) => wechat_error(errcode, "injected by /sandbox/control"),
            Fault::Status(status) => HttpResponse::build(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            )
            .json(json!({"error": "sandbox_fault", "message": "injected by /sandbox/control"})),
        })
    }

    /// WeChat's `40001` unless `token` is the one issued last.
    fn check_token(&self, token: &str) -> Option<HttpResponse> {
        (self.state().access_token.as_deref() != Some(token)).then(|| {
            wechat_error(
                40001,
                "invalid credential, access_token is invalid or not latest",
            )
        })
    }

    /// Checks the account, as both token endpoints do.
    pub(super) fn check_account(&self, appid: &str, secret: &str) -> Option<HttpResponse> {
        if appid != APPID {
            return Some(wechat_error(40013, "invalid appid"));
        }
        (secret != self.secret).then(|| wechat_error(40125, "invalid appsecret"))
    }
}

fn token_answer(token: &str) -> HttpResponse {
    HttpResponse::Ok().json(json!({"access_token": token, "expires_in": TOKEN_LIFETIME_SECS}))
}

#[derive(Deserialize)]
struct TokenQuery {
    appid: String,
    secret: String,
}

/// The classic token: each fetch makes a new token and invalidates the old one.
async fn token(sim: web::Data<Simulator>, query: web::Query<TokenQuery>) -> HttpResponse {
    if let Some(failure) = sim.api_gate().await {
        return failure;
    }
    if let Some(refusal) = sim.check_account(&query.appid, &query.secret) {
        return refusal;
    }
    let token = random_token();
    let mut state = sim.state();
    state.access_token = Some(token.clone());
    state.token_fetches += 1;
    token_answer(&token)
}

#[derive(Deserialize)]
struct StableTokenRequest {
    appid: String,
    secret: String,
    #[serde(default)]
    force_refresh: bool,
}

/// The stable token: the current token is handed out again unless a refresh is forced.
async fn stable_token(
    sim: web::Data<Simulator>,
    body: web::Json<StableTokenRequest>,
) -> HttpResponse {
    if let Some(failure) = sim.api_gate().await {
        return failure;
    }
    if let Some(refusal) = sim.check_account(&body.appid, &body.secret) {
        return refusal;
    }
    let mut state = sim.state();
    state.stable_token_fetches += 1;
    let token = match &state.access_token {
        Some(token) if !body.force_refresh => token.clone(),
        _ => random_token(),
    };
    state.access_token = Some(token.clone());
    token_answer(&token)
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
) -> HttpResponse {
    if let Some(failure) = sim.api_gate().await {
        return failure;
    }
    if let Some(refusal) = sim.check_token(&query.access_token) {
        return refusal;
    }
    let scene = &body.action_info.scene.scene_str;
    if body.action_name != "QR_STR_SCENE" || scene.is_empty() || scene.len() > 64 {
        return wechat_error(40097, "invalid args");
    }
    let expire_seconds = body.expire_seconds.unwrap_or(60).clamp(1, 2_592_000);
    let ticket = random_ticket();
    let expires_at = Instant::now() + Duration::from_secs(expire_seconds);
    sim.tickets
        .insert(ticket.clone(), (scene.clone(), expires_at));
    sim.state().qrcodes_created += 1;
    HttpResponse::Ok().json(json!({
        "ticket": ticket,
        "expire_seconds": expire_seconds,
        "url": format!("http://weixin.qq.com/q/sandbox{}", &random_token()[..16]),
    }))
}

/// The addresses "WeChat" pushes from: the simulator's own.
async fn callback_ips(
    sim: web::Data<Simulator>,
    query: web::Query<AccessTokenQuery>,
) -> HttpResponse {
    if let Some(failure) = sim.api_gate().await {
        return failure;
    }
    if let Some(refusal) = sim.check_token(&query.access_token) {
        return refusal;
    }
    HttpResponse::Ok().json(json!({"ip_list": [sim.callback_ip]}))
}

#[derive(Deserialize)]
struct TicketQuery {
    access_token: String,
    #[serde(rename = "type")]
    kind: String,
}

/// The JS-SDK ticket: a new one at each call, as WeChat's getticket does.
async fn jsapi_ticket(sim: web::Data<Simulator>, query: web::Query<TicketQuery>) -> HttpResponse {
    if let Some(failure) = sim.api_gate().await {
        return failure;
    }
    if let Some(refusal) = sim.check_token(&query.access_token) {
        return refusal;
    }
    if query.kind != "jsapi" {
        return wechat_error(40097, "invalid args");
    }
    sim.state().ticket_fetches += 1;
    HttpResponse::Ok().json(json!({
        "errcode": 0,
        "errmsg": "ok",
        "ticket": random_token(),
        "expires_in": TOKEN_LIFETIME_SECS,
    }))
}

#[derive(Deserialize)]
struct UserInfoQuery {
    access_token: String,
    openid: String,
}

/// A follower's profile. The simulated account is bound to an Open Platform account unless
/// `/sandbox/control` said `open_platform: false`; then no unionid is given, as WeChat does.
/// The unionid is derived from the openid, so one user keeps it across restarts.
async fn user_info(sim: web::Data<Simulator>, query: web::Query<UserInfoQuery>) -> HttpResponse {
    if let Some(failure) = sim.api_gate().await {
        return failure;
    }
    if let Some(refusal) = sim.check_token(&query.access_token) {
        return refusal;
    }
    let openid = &query.openid;
    let valid = (1..=64).contains(&openid.len())
        && openid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return wechat_error(40003, "invalid openid");
    }
    let mut answer = json!({
        "subscribe": 1,
        "openid": openid,
        "language": "zh_CN",
        "subscribe_time": super::unix_now(),
        "remark": "",
        "groupid": 0,
        "tagid_list": [],
        "subscribe_scene": "ADD_SCENE_QR_CODE",
        "qr_scene": 0,
        "qr_scene_str": "",
    });
    if !sim.state().no_open_platform {
        answer["unionid"] = json!(super::sandbox_unionid(openid));
    }
    HttpResponse::Ok().json(answer)
}
