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
    let body = payload
        .to_bytes_limited(MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        })?
        .map_err(|e| ApiError::BadRequest(format!("reading the body failed: {e}")))?;
    let now = unix_now();
    let Opened { message, mode } = state.callback.keys.open(&query, &body, now)?;
    let key = message.redelivery_key();
    if !state.callback.first_delivery(&key) {
        return Ok(acknowledge());
    }
    match handle(&state, &message).await {
        Ok(Some(text)) => {
            let reply = text_reply(&message.from_user, &message.to_user, now, text);
            Ok(HttpResponse::Ok()
                .content_type("application/xml; charset=utf-8")
                .body(state.callback.keys.seal(reply, mode, now)))
        }
        Ok(None) => Ok(acknowledge()),
        Err(e) => {
            // Let WeChat's retry be handled afresh.
            state.callback.seen.invalidate(&key);
            Err(e)
        }
    }
}

/// Acts on one message; returns the text to reply to the user, if any.
async fn handle(state: &AppState, message: &Message) -> Result<Option<&'static str>, ApiError> {
    match message.inbound() {
        Inbound::QrScan {
            scene_key,
            subscribed,
        } => {
            // A scene key that isn't shaped like ours belongs to some other QR code of the account.
            let Some(scene) = SceneId::parse(scene_key) else {
                return Ok(None);
            };
            let openid = sender(message)?;
            let lookup = state
                .scenes
                .send(FindScene(scene))
                .await
                .map_err(|e| ApiError::Internal(format!("scene supervisor: {e}")))?;
            let SceneLookup::Live(scene) = lookup else {
                return Ok(Some(REPLY_EXPIRED));
            };
            let Ok(outcome) = scene.send(Scan { openid, subscribed }).await else {
                return Ok(Some(REPLY_EXPIRED));
            };
            Ok(Some(match outcome {
                Ok(ScanOutcome::LoggedIn) => REPLY_LOGGED_IN,
                Ok(ScanOutcome::NeedBind) => REPLY_NEED_BIND,
                Err(SceneError::AlreadyScanned) => REPLY_USED,
                Err(e) => return Err(e.into()),
            }))
        }
        Inbound::Unsubscribe => {
            let openid = sender(message)?;
            let at = message
                .created_at()
                .ok_or_else(|| bad_field("CreateTime"))?;
            if state.store.unbind(&openid, at).await? {
                tracing::info!(openid = %openid, "unsubscribed: binding removed, sessions revoked");
            }
            Ok(None)
        }
        Inbound::Other => Ok(None),
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
