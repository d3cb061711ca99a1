//! The simulated phone and the sandbox's controls: its page, scan a ticket as a chosen openid,
//! follow and unfollow, send the account a text, read the SMS phones received, and make the
//! fake API fail on purpose.

use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use wxlogin_storage::Phone;

use super::{ActionKind, Fault, Simulator, UserAction};
use crate::error::ApiError;
use crate::http::page::{asset, escape_html, localized};
use crate::http::AppState;
use crate::i18n::{self, Lang};

pub fn configure(cfg: &mut web::ServiceConfig) {
    // The ticket comes in the query string and is read by the page's script.
    cfg.route("/sandbox/phone", web::get().to(phone_page))
        .route(
            "/sandbox/phone.js",
            web::get().to(|| async { asset("text/javascript", include_str!("phone/phone.js")) }),
        )
        .route("/sandbox/scan", web::post().to(scan))
        .route("/sandbox/follow", web::post().to(follow))
        .route("/sandbox/unsubscribe", web::post().to(unsubscribe))
        .route("/sandbox/text", web::post().to(text))
        .route("/sandbox/sms", web::get().to(all_sms))
        .route("/sandbox/sms", web::post().to(gateway_sms))
        .route("/sandbox/sms/{phone}", web::get().to(last_sms))
        .route("/sandbox/control", web::post().to(control))
        .route("/sandbox/stats", web::get().to(stats));
}

/// The simulated phone, in the request's language.
async fn phone_page(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let lang = Lang::of(&request, state.default_lang);
    let body = format!(
        " data-text=\"{}\"",
        escape_html(&lang.table_json(&["phone."]))
    );
    let html = i18n::render(
        include_str!("phone/phone.html"),
        lang,
        &[("lang", lang.tag()), ("body", &body)],
    );
    localized(&request, asset("text/html", html))
}

#[derive(Deserialize)]
struct ScanRequest {
    ticket: String,
    openid: String,
    /// `true`: a new follower, who follows while scanning (`subscribe`); else an existing follower (`SCAN`).
    #[serde(default)]
    follow: bool,
    /// Override the event's CreateTime, e.g. to replay a delivery.
    create_time: Option<u64>,
}

async fn scan(
    sim: web::Data<Simulator>,
    body: web::Json<ScanRequest>,
) -> Result<HttpResponse, ApiError> {
    let (scene, expires_at) = sim
        .tickets
        .get(&body.ticket)
        .ok_or(ApiError::NotFound("no such ticket"))?;
    if expires_at <= Instant::now() {
        return Err(ApiError::SceneExpired);
    }
    let event_key = if body.follow {
        format!("qrscene_{scene}")
    } else {
        scene
    };
    let event = ActionKind::Event {
        event: if body.follow { "subscribe" } else { "SCAN" },
        event_key: &event_key,
        ticket: &body.ticket,
    };
    deliver(&sim, &body.openid, body.create_time, event).await
}

#[derive(Deserialize)]
struct UserRequest {
    openid: String,
    create_time: Option<u64>,
}

/// Follows the account without a scan: from its own QR code, a search or an article.
async fn follow(
    sim: web::Data<Simulator>,
    body: web::Json<UserRequest>,
) -> Result<HttpResponse, ApiError> {
    let event = ActionKind::Event {
        event: "subscribe",
        event_key: "",
        ticket: "",
    };
    deliver(&sim, &body.openid, body.create_time, event).await
}

async fn unsubscribe(
    sim: web::Data<Simulator>,
    body: web::Json<UserRequest>,
) -> Result<HttpResponse, ApiError> {
    let event = ActionKind::Event {
        event: "unsubscribe",
        event_key: "",
        ticket: "",
    };
    deliver(&sim, &body.openid, body.create_time, event).await
}

#[derive(Deserialize)]
struct TextRequest {
    openid: String,
    content: String,
}

async fn text(
    sim: web::Data<Simulator>,
    body: web::Json<TextRequest>,
) -> Result<HttpResponse, ApiError> {
    deliver(&sim, &body.openid, None, ActionKind::Text(&body.content)).await
}

async fn deliver(
    sim: &Simulator,
    openid: &str,
    create_time: Option<u64>,
    kind: ActionKind<'_>,
) -> Result<HttpResponse, ApiError> {
    let action = UserAction {
        openid,
        create_time,
        kind,
    };
    let delivery = sim
        .deliver(&action)
        .await
        .map_err(|e| ApiError::Internal(format!("sandbox delivery failed: {e}")))?;
    Ok(HttpResponse::Ok().json(json!({"status": delivery.status, "reply": delivery.reply})))
}

async fn all_sms(sim: web::Data<Simulator>) -> HttpResponse {
    HttpResponse::Ok().json(sim.received_sms())
}

/// The SMS webhook's request (`{"phone", "code"}`, see `crate::sms`).
#[derive(Deserialize)]
struct WebhookSms {
    phone: String,
    code: String,
}

/// The sandbox as the SMS webhook of other wxlogin nodes (`WXLOGIN_SMS_WEBHOOK` pointing
/// here, as in the cluster test and benches/cluster.sh): their codes land on the simulated
/// phone with its own, readable at `/sandbox/sms/{phone}`.
async fn gateway_sms(
    sim: web::Data<Simulator>,
    body: web::Json<WebhookSms>,
) -> Result<HttpResponse, ApiError> {
    let phone = Phone::parse(&body.phone).ok_or(ApiError::InvalidPhone)?;
    let code = body.code.trim();
    // A code as wxlogin makes them; the phone page shows it.
    if code.is_empty() || code.len() > 8 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::BadRequest(
            "the code must be 1 to 8 digits".into(),
        ));
    }
    sim.deliver_sms(&phone, code);
    Ok(HttpResponse::NoContent().finish())
}

async fn last_sms(
    sim: web::Data<Simulator>,
    phone: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let sms = sim
        .received_sms()
        .into_iter()
        .find(|sms| sms.phone == *phone)
        .ok_or(ApiError::NotFound("no code was sent to this phone"))?;
    Ok(HttpResponse::Ok().json(sms))
}

#[derive(Deserialize)]
struct Control {
    /// Make the fake API answer HTTP 503 (true) or work again (false).
    down: Option<bool>,
    /// Invalidate the issued access token, as WeChat does when another server fetches one.
    #[serde(default)]
    revoke_token: bool,
    /// Answers for the next API calls, e.g. `[{"errcode": -1}, {"status": 502}]`.
    #[serde(default)]
    fail_next: Vec<Fault>,
    /// How long every API call takes from now on.
    delay_ms: Option<u64>,
    /// Whether the account is bound to an Open Platform account (`user/info` gives unionids).
    open_platform: Option<bool>,
}

async fn control(sim: web::Data<Simulator>, body: web::Json<Control>) -> HttpResponse {
    let mut state = sim.state();
    if let Some(down) = body.down {
        state.down = down;
    }
    if body.revoke_token {
        state.access_token = None;
    }
    state.faults.extend(body.fail_next.iter().cloned());
    if let Some(delay_ms) = body.delay_ms {
        state.delay = Duration::from_millis(delay_ms);
    }
    if let Some(open_platform) = body.open_platform {
        state.no_open_platform = !open_platform;
    }
    HttpResponse::NoContent().finish()
}

async fn stats(sim: web::Data<Simulator>) -> HttpResponse {
    let state = sim.state();
    HttpResponse::Ok().json(json!({
        "api_calls": state.api_calls,
        "token_fetches": state.token_fetches,
        "stable_token_fetches": state.stable_token_fetches,
        "ticket_fetches": state.ticket_fetches,
        "qrcodes_created": state.qrcodes_created,
        "down": state.down,
    }))
}
