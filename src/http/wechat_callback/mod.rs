//! `/wechat`: the callback WeChat verifies with GET and pushes user events to with POST.
//!
//! This module is the transport (limits, authentication, redelivery, the reply envelope);
//! [`actions`] is what each message does, [`replies`] what the user is told.

mod actions;
mod guesses;
mod replies;
mod senders;
mod signatures;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{web, HttpResponse};
use moka::sync::Cache;

use super::client_ip::ClientIp;
use super::AppState;
use crate::config::CallbackSenders;
use crate::error::ApiError;
use crate::reply_templates::Replies;
use crate::wechat::envelope::{CallbackKeys, CallbackQuery, Opened};
use crate::wechat::message::text_reply;
use guesses::CodeGuesses;
pub use senders::follow_wechat_addresses;
use senders::Senders;

/// WeChat's messages are a few hundred bytes; anything near this is not from WeChat.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// WeChat retries an unanswered push twice over about 15 s; remember deliveries well past that
/// (and at least as long as a signed pair is remembered, so a redelivery under the same pair
/// is always recognised).
const REDELIVERY_MEMORY: Duration = Duration::from_secs(60);
const REDELIVERY_CAPACITY: u64 = 100_000;

/// The callback's own state: who may push, how pushes are authenticated, the memory of the
/// signatures and deliveries seen lately and of wrong login codes, and the site name replies show.
pub struct Callback {
    senders: Senders,
    keys: CallbackKeys,
    seen: Cache<String, ()>,
    guesses: CodeGuesses,
    replies: Replies,
}

impl Callback {
    /// `timestamp_window`: how far a push's timestamp may be from our clock, as `keys` checks.
    pub fn new(
        senders: &CallbackSenders,
        keys: CallbackKeys,
        timestamp_window: Duration,
        code_guess_window: Duration,
        replies: Replies,
    ) -> Self {
        let seen = Cache::builder()
            .max_capacity(REDELIVERY_CAPACITY)
            .time_to_live(REDELIVERY_MEMORY.max(timestamp_window * 2 + Duration::from_secs(1)))
            .build();
        Self {
            senders: Senders::new(senders),
            keys,
            seen,
            guesses: CodeGuesses::new(code_guess_window),
            replies,
        }
    }

    /// False while `WXLOGIN_CALLBACK_IPS=wechat` waits for WeChat's first list.
    pub fn senders_known(&self) -> bool {
        self.senders.known()
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
    let now = unix_now();
    let (echo, signature, sent_at) = state.callback.keys.echo(&query, now)?;
    // In plaintext mode this signature is exactly a POST's: use it up, so nobody who saw this
    // URL can push a body under it.
    signatures::use_signature(&state.store, signature, sent_at, signatures::SERVER_CHECK).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(echo))
}

async fn receive(
    state: web::Data<AppState>,
    client: ClientIp,
    query: web::Query<CallbackQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let received = open(&state, &client, &query, payload).await;
    let (message, mode) = match received {
        Ok(opened) => (opened.message, opened.mode),
        Err(e) => {
            state.metrics.callback_event("invalid", e.code());
            return Err(e);
        }
    };
    let kind = actions::kind(&message);
    let key = message.redelivery_key();
    if !state.callback.first_delivery(&key) {
        state.metrics.callback_event(kind, "redelivery");
        return Ok(acknowledge());
    }
    let outcome = match actions::act(&state, &message).await {
        Ok(outcome) => outcome,
        Err(e) => {
            // Let WeChat's retry be handled afresh.
            state.callback.seen.invalidate(&key);
            state.metrics.callback_event(kind, e.code());
            return Err(e);
        }
    };
    state.metrics.callback_event(kind, outcome.label());
    let Some(text) = outcome.reply(&state.callback) else {
        return Ok(acknowledge());
    };
    let now = unix_now();
    let reply = text_reply(&message.from_user, &message.to_user, now, &text);
    Ok(HttpResponse::Ok()
        .content_type("application/xml; charset=utf-8")
        .body(state.callback.keys.seal(reply, mode, now)))
}

/// Checks the sender's address, reads the body within its limit, authenticates it, refuses a
/// signature already used for another body, and decrypts and parses it.
async fn open(
    state: &AppState,
    client: &ClientIp,
    query: &CallbackQuery,
    payload: web::Payload,
) -> Result<Opened, ApiError> {
    state.callback.senders.admit(client.addr())?;
    let body = payload
        .to_bytes_limited(MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        })?
        .map_err(|e| ApiError::BadRequest(format!("reading the body failed: {e}")))?;
    let now = unix_now();
    let signed = state.callback.keys.verify(query, &body, now)?;
    // Before parsing: a signature whose push did not parse is used up all the same.
    signatures::use_signature(&state.store, signed.signature, signed.sent_at, &body).await?;
    Ok(signed.read()?)
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
