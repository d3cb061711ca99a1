//! `/wechat`: the callback WeChat verifies with GET and pushes user events to with POST.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{web, HttpResponse};
use moka::sync::Cache;
use wxlogin_actors::{FindScene, Scan, ScanOutcome, SceneError, SceneId, SceneLookup};
use wxlogin_storage::OpenId;

use super::AppState;
use crate::error::ApiError;
use crate::wechat::envelope::{CallbackKeys, CallbackQuery, EnvelopeError, Opened};
use crate::wechat::message::{text_reply, Inbound, Message, MessageError};

/// WeChat's messages are a few hundred bytes; anything near this is not from WeChat.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// WeChat retries an unanswered push twice over about 15 s; remember deliveries well past that.
const REDELIVERY_MEMORY: Duration = Duration::from_secs(60);
const REDELIVERY_CAPACITY: u64 = 100_000;

const REPLY_LOGGED_IN: &str = "登录成功，请回到网页继续。";
const REPLY_NEED_BIND: &str = "扫码成功！请在网页上填写手机号并完成验证，即可登录。";
const REPLY_USED: &str = "这个二维码已经被扫过了，请刷新网页获取新的二维码。";
const REPLY_EXPIRED: &str = "二维码已过期，请刷新网页获取新的二维码。";

/// The callback's own state: how pushes are authenticated, and the memory of recent deliveries.
pub struct Callback {
    keys: CallbackKeys,
    seen: Cache<String, ()>,
}

impl Callback {
    pub fn new(keys: CallbackKeys) -> Self {
        let seen = Cache::builder()
            .max_capacity(REDELIVERY_CAPACITY)
            .time_to_live(REDELIVERY_MEMORY)
            .build();
        Self { keys, seen }
    }

    /// True the first time a delivery is seen; false for WeChat's retries of it.
    fn first_delivery(&self, key: &str) -> bool {
        self.seen.entry(key.to_owned()).or_insert(()).is_fresh()
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/wechat", web::get().to(verify_server))
        .route("/wechat", web::post().to(receive));
}

/// WeChat checks the server URL by asking it to echo `echostr` under a valid signature.
async fn verify_server(
    state: web::Data<AppState>,
    query: web::Query<CallbackQuery>,
) -> Result<HttpResponse, ApiError> {
    let echo = state.callback.keys.echo(&query, unix_now())?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(echo))
}

async fn receive(
    state: web::Data<AppState>,
    query: web::Query<CallbackQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let received = open(&state, &query, payload).await;
    let (message, mode) = match received {
        Ok(opened) => (opened.message, opened.mode),
        Err(e) => {
            state.metrics.callback_event("invalid", e.code());
            return Err(e);
        }
    };
    let kind = event_kind(&message);
    let key = message.redelivery_key();
    if !state.callback.first_delivery(&key) {
        state.metrics.callback_event(kind, "redelivery");
        return Ok(acknowledge());
    }
    let outcome = match handle(&state, &message).await {
        Ok(outcome) => outcome,
        Err(e) => {
            // Let WeChat's retry be handled afresh.
            state.callback.seen.invalidate(&key);
            state.metrics.callback_event(kind, e.code());
            return Err(e);
        }
    };
    state.metrics.callback_event(kind, outcome.label());
    let Some(text) = outcome.reply() else {
        return Ok(acknowledge());
    };
    let now = unix_now();
    let reply = text_reply(&message.from_user, &message.to_user, now, text);
    Ok(HttpResponse::Ok()
        .content_type("application/xml; charset=utf-8")
        .body(state.callback.keys.seal(reply, mode, now)))
}

/// Reads the body within its limit and authenticates, decrypts and parses it.
async fn open(
    state: &AppState,
    query: &CallbackQuery,
    payload: web::Payload,
) -> Result<Opened, ApiError> {
    let body = payload
        .to_bytes_limited(MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        })?
        .map_err(|e| ApiError::BadRequest(format!("reading the body failed: {e}")))?;
    Ok(state.callback.keys.open(query, &body, unix_now())?)
}

/// The `type` label of a push in the metrics.
fn event_kind(message: &Message) -> &'static str {
    match message.inbound() {
        Inbound::QrScan {
            subscribed: true, ..
        } => "subscribe",
        Inbound::QrScan {
            subscribed: false, ..
        } => "scan",
        Inbound::Unsubscribe => "unsubscribe",
        Inbound::Other => "other",
    }
}

/// What came of a push.
#[derive(Clone, Copy)]
enum Outcome {
    LoggedIn,
    NeedBind,
    /// Someone else scanned this QR code first.
    AlreadyScanned,
    /// The scene expired, or never was.
    Expired,
    /// A scene key or event that isn't ours.
    NotOurs,
    Unbound,
    /// An unfollow with nothing to unbind (or older than the current binding).
    NothingToUnbind,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::LoggedIn => "logged_in",
            Outcome::NeedBind => "need_bind",
            Outcome::AlreadyScanned => "already_scanned",
            Outcome::Expired => "expired",
            Outcome::NotOurs => "ignored",
            Outcome::Unbound => "unbound",
            Outcome::NothingToUnbind => "nothing_to_unbind",
        }
    }

    /// The text the user sees in WeChat, if any.
    fn reply(self) -> Option<&'static str> {
        match self {
            Outcome::LoggedIn => Some(REPLY_LOGGED_IN),
            Outcome::NeedBind => Some(REPLY_NEED_BIND),
            Outcome::AlreadyScanned => Some(REPLY_USED),
            Outcome::Expired => Some(REPLY_EXPIRED),
            Outcome::NotOurs | Outcome::Unbound | Outcome::NothingToUnbind => None,
        }
    }
}

/// Acts on one message.
async fn handle(state: &AppState, message: &Message) -> Result<Outcome, ApiError> {
    match message.inbound() {
        Inbound::QrScan {
            scene_key,
            subscribed,
        } => {
            // A scene key that isn't shaped like ours belongs to some other QR code of the account.
            let Some(scene) = SceneId::parse(scene_key) else {
                return Ok(Outcome::NotOurs);
            };
            let openid = sender(message)?;
            let lookup = state
                .scenes
                .send(FindScene(scene))
                .await
                .map_err(|e| ApiError::Internal(format!("scene supervisor: {e}")))?;
            let SceneLookup::Live(scene) = lookup else {
                return Ok(Outcome::Expired);
            };
            let Ok(scanned) = scene.send(Scan { openid, subscribed }).await else {
                return Ok(Outcome::Expired);
            };
            match scanned {
                Ok(ScanOutcome::LoggedIn) => {
                    state.metrics.login("scan");
                    Ok(Outcome::LoggedIn)
                }
                Ok(ScanOutcome::NeedBind) => Ok(Outcome::NeedBind),
                Err(SceneError::AlreadyScanned) => Ok(Outcome::AlreadyScanned),
                Err(e) => Err(e.into()),
            }
        }
        Inbound::Unsubscribe => {
            let openid = sender(message)?;
            let at = message
                .created_at()
                .ok_or_else(|| bad_field("CreateTime"))?;
            if !state.store.unbind(&openid, at).await? {
                return Ok(Outcome::NothingToUnbind);
            }
            state.metrics.unbind();
            tracing::info!(openid = %openid, "unsubscribed: binding removed, sessions revoked");
            Ok(Outcome::Unbound)
        }
        Inbound::Other => Ok(Outcome::NotOurs),
    }
}

fn sender(message: &Message) -> Result<OpenId, ApiError> {
    OpenId::parse(&message.from_user).ok_or_else(|| bad_field("FromUserName"))
}

fn bad_field(name: &'static str) -> ApiError {
    EnvelopeError::Message(MessageError::BadField(name)).into()
}

/// WeChat's "received, no reply".
fn acknowledge() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("success")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
