//! The sandbox: a WeChat simulator inside the service, used when no AppID is configured.
//!
//! It plays both sides of WeChat: the HTTP API the service calls ([`api`]), and the phone
//! that scans QR codes, whose events it signs and POSTs to `/wechat` over real HTTP, exactly
//! as WeChat would ([`phone`]). Sandbox routes exist only in sandbox mode.

mod api;
mod phone;

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::web;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use moka::sync::Cache;
use rand::{Rng, RngCore};
use wxlogin_storage::Phone;

use crate::config::Credentials;
use crate::wechat::message::cdata;
use crate::wechat::signature;

const APPID: &str = "wxsandbox0000000";
/// WeChat's access tokens live two hours.
const TOKEN_LIFETIME_SECS: u64 = 7200;

pub struct Simulator {
    secret: String,
    /// The callback token both sides sign with.
    token: String,
    /// Where "WeChat" delivers events: the service's own `/wechat`.
    callback_url: String,
    http: reqwest::Client,
    /// QR ticket → (scene string, expiry).
    tickets: Cache<String, (String, Instant)>,
    /// Phone → the last code "sent" to it.
    sms_outbox: Cache<String, String>,
    state: Mutex<SimState>,
}

#[derive(Default)]
struct SimState {
    access_token: Option<String>,
    /// When set, the API answers HTTP 503 to everything.
    down: bool,
    token_fetches: u64,
    qrcodes_created: u64,
}

/// A scan, unfollow or other event the simulated user performs.
pub struct UserEvent<'a> {
    pub openid: &'a str,
    pub event: &'a str,
    pub event_key: &'a str,
    pub ticket: &'a str,
    pub create_time: Option<u64>,
}

/// What the service answered to a delivered event.
pub struct Delivery {
    pub status: u16,
    /// The text of a passive reply, if there was one.
    pub reply: Option<String>,
}

impl Simulator {
    pub fn new(token: String, callback_url: String) -> Self {
        let mut secret = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut secret);
        Self {
            secret: hex::encode(secret),
            token,
            callback_url,
            http: reqwest::Client::new(),
            tickets: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(86_400))
                .build(),
            sms_outbox: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
            state: Mutex::new(SimState::default()),
        }
    }

    /// The account the service uses to talk to this simulator.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            appid: APPID.into(),
            secret: self.secret.clone(),
            token: self.token.clone(),
        }
    }

    pub fn configure(cfg: &mut web::ServiceConfig) {
        api::configure(cfg);
        phone::configure(cfg);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SimState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn deliver_sms(&self, phone: &Phone, code: &str) {
        self.sms_outbox
            .insert(phone.as_str().to_owned(), code.to_owned());
    }

    /// Signs an event as WeChat does and POSTs it to the service's callback.
    pub async fn deliver(&self, event: &UserEvent<'_>) -> Result<Delivery, reqwest::Error> {
        let now = unix_now();
        let xml = format!(
            "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{}</CreateTime>\
             <MsgType><![CDATA[event]]></MsgType><Event>{}</Event><EventKey>{}</EventKey><Ticket>{}</Ticket></xml>",
            cdata("gh_sandbox"),
            cdata(event.openid),
            event.create_time.unwrap_or(now),
            cdata(event.event),
            cdata(event.event_key),
            cdata(event.ticket),
        );
        let timestamp = now.to_string();
        let nonce = rand::thread_rng()
            .gen_range(100_000_000u32..1_000_000_000)
            .to_string();
        let signature = signature::sign(&[&self.token, &timestamp, &nonce]);
        let response = self
            .http
            .post(&self.callback_url)
            .query(&[
                ("signature", &signature),
                ("timestamp", &timestamp),
                ("nonce", &nonce),
                ("openid", &event.openid.to_owned()),
            ])
            .header("Content-Type", "text/xml")
            .body(xml)
            .send()
            .await?;
        let status = response.status().as_u16();
        let body = response.bytes().await?;
        let reply = crate::wechat::message::reply_content(&body).filter(|text| !text.is_empty());
        Ok(Delivery { status, reply })
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Random bytes in standard base64, like WeChat's tickets (which contain `+`, `/` and `=`).
fn random_ticket() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    STANDARD.encode(bytes)
}

fn random_token() -> String {
    let mut bytes = [0u8; 48];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}
