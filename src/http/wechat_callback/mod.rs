//! `/wechat`: the callback WeChat verifies with GET and pushes user events to with POST.
//!
//! This module is the transport (limits, authentication, redelivery, the reply envelope);
//! [`actions`] is what each message does, [`replies`] what the user is told, [`relay`] where
//! the account's own pushes go when its server sits behind wxlogin.

mod actions;
mod deliveries;
mod guesses;
mod relay;
mod replies;
mod senders;
mod signatures;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use wxlogin_storage::SharedLimits;

use super::client_ip::ClientIp;
use super::rejections::read_body;
use super::AppState;
use crate::config::{CallbackSenders, Upstream};
use crate::error::{ApiError, ErrorBody};
use crate::reply_templates::Replies;
use crate::wechat::envelope::{CallbackKeys, CallbackQuery, Opened};
use crate::wechat::message::text_reply;
use deliveries::{Deliveries, Delivery, Lease};
use guesses::CodeGuesses;
use relay::{Push, Relay};
pub use senders::follow_wechat_addresses;
use senders::Senders;

/// WeChat's messages are a few hundred bytes; anything near this is not from WeChat.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// WeChat retries an unanswered push twice over about 15 s; remember pushes acted on well past that
/// (and at least as long as a signed pair is remembered, so a redelivery under the same pair
/// is always recognised).
const REDELIVERY_MEMORY: Duration = Duration::from_secs(60);
const REDELIVERY_CAPACITY: u64 = 100_000;

/// The callback's own state: who may push, how pushes are authenticated, the memory of the
/// signatures and deliveries seen lately and of wrong login codes (the cluster's, when the
/// store is shared), the site name replies show, and the upstream that gets the account's own
/// pushes.
pub struct Callback {
    senders: Senders,
    keys: CallbackKeys,
    deliveries: Deliveries,
    guesses: CodeGuesses,
    replies: Replies,
    relay: Option<Relay>,
}

impl Callback {
    /// `timestamp_window`: how far a push's timestamp may be from our clock, as `keys` checks.
    pub fn new(
        senders: &CallbackSenders,
        keys: CallbackKeys,
        timestamp_window: Duration,
        code_guess_window: Duration,
        replies: Replies,
        upstream: Option<&Upstream>,
        shared: Option<&SharedLimits>,
    ) -> Self {
        let deliveries = Deliveries::new(
            REDELIVERY_MEMORY.max(timestamp_window * 2 + Duration::from_secs(1)),
            REDELIVERY_CAPACITY,
            shared,
        );
        Self {
            senders: Senders::new(senders),
            keys,
            deliveries,
            guesses: CodeGuesses::new(code_guess_window, shared),
            replies,
            relay: upstream.map(Relay::new),
        }
    }

    /// False while `WXLOGIN_CALLBACK_IPS=wechat` waits for WeChat's first list.
    pub fn senders_known(&self) -> bool {
        self.senders.known()
    }

    /// Takes up a push (on any node, when the store is shared) unless it was acted on already.
    async fn take_delivery(&self, key: &str) -> Result<Delivery, ApiError> {
        Ok(self.deliveries.take(key).await?)
    }

    /// The push was acted on: WeChat's retries of it are acknowledged unhandled.
    async fn delivery_handled(&self, key: &str) {
        if let Err(e) = self.deliveries.handled(key).await {
            tracing::warn!(error = %e, "a push acted on could not be marked: a retry of it, once its lease runs out, is acted on again");
        }
    }

    /// Acting on the push failed: WeChat's retry of it is handled afresh, at once.
    async fn release_delivery(&self, key: &str, lease: Lease) {
        if let Err(e) = self.deliveries.release(key, lease).await {
            tracing::warn!(error = %e, "a failed push could not be released: a retry of it waits for its lease to run out");
        }
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/wechat", web::get().to(verify_server))
        .route("/wechat", web::post().to(receive));
}

/// WeChat checks the server URL by asking it to echo `echostr` under a valid signature.
#[utoipa::path(
    get,
    path = "/wechat",
    tag = "wechat",
    params(CallbackQuery),
    responses(
        (status = 200, description = "`echostr`, echoed", content_type = "text/plain", body = String),
        (status = 400, description = "`invalid_message`: a parameter missing or malformed", body = ErrorBody),
        (status = 403, description = "`invalid_signature`, `stale_timestamp`, `replayed_signature`", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`", body = ErrorBody),
    ),
)]
pub(super) async fn verify_server(
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

/// A pushed message or event, signed (and in safe mode encrypted) by WeChat.
#[utoipa::path(
    post,
    path = "/wechat",
    tag = "wechat",
    params(CallbackQuery),
    request_body(content = String, description = "WeChat's XML message", content_type = "text/xml"),
    responses(
        (status = 200, description = "`success`, or a reply message as XML", content_type = "text/plain", body = String),
        (status = 400, description = "`invalid_message` (also a field given twice)", body = ErrorBody),
        (status = 403, description = "`invalid_signature`, `stale_timestamp`, `encryption_required`, `replayed_signature`, `address_not_allowed`", body = ErrorBody),
        (status = 409, description = "`phone_taken`, `unfollowed`, `not_awaiting_bind`: the message's action could not be taken", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: over 64 KiB", body = ErrorBody),
        (status = 503, description = "`callback_addresses_unavailable`, `wechat_unavailable`, `storage_unavailable`", body = ErrorBody),
    ),
)]
pub(super) async fn receive(
    state: web::Data<AppState>,
    client: ClientIp,
    request: HttpRequest,
    query: web::Query<CallbackQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let arrived = Instant::now();
    let received = open(&state, &client, &query, payload).await;
    let (message, mode, body) = match received {
        Ok((opened, body)) => (opened.message, opened.mode, body),
        Err(e) => {
            state.metrics.callback_event("invalid", e.code());
            return Err(e);
        }
    };
    let kind = actions::kind(&message);
    let key = message.redelivery_key();
    // A redelivery is not sent on either: the upstream sees each push once.
    let lease = match state.callback.take_delivery(&key).await {
        Ok(Delivery::Taken(lease)) => lease,
        Ok(Delivery::Redelivery) => {
            state.metrics.callback_event(kind, "redelivery");
            return Ok(acknowledge());
        }
        Err(e) => {
            state.metrics.callback_event(kind, e.code());
            return Err(e);
        }
    };
    let outcome = match actions::act(&state, &message).await {
        Ok(outcome) => outcome,
        Err(e) => {
            state.callback.release_delivery(&key, lease).await;
            state.metrics.callback_event(kind, e.code());
            return Err(e);
        }
    };
    state.callback.delivery_handled(&key).await;
    state.metrics.callback_event(kind, outcome.label());
    if let Some(relay) = &state.callback.relay {
        let push = Push::new(&request, body, arrived);
        if outcome.for_the_account() {
            let answer = relay.relay(&push, &state.metrics).await;
            return Ok(answer.unwrap_or_else(acknowledge));
        }
        relay.copy(push, state.metrics.clone());
    }
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
/// signature already used for another body, and decrypts and parses it. Also answers the body
/// as it came, for the upstream.
async fn open(
    state: &AppState,
    client: &ClientIp,
    query: &CallbackQuery,
    payload: web::Payload,
) -> Result<(Opened, Bytes), ApiError> {
    state.callback.senders.admit(client.addr())?;
    let body = read_body(payload, MAX_BODY_BYTES).await?;
    let now = unix_now();
    let signed = state.callback.keys.verify(query, &body, now)?;
    // Before parsing: a signature whose push did not parse is used up all the same.
    signatures::use_signature(&state.store, signed.signature, signed.sent_at, &body).await?;
    let opened = signed.read()?;
    Ok((opened, body))
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
