//! The sandbox: a WeChat simulator inside the service, used when no AppID is configured.
//!
//! It plays both sides of WeChat: the HTTP API the service calls ([`api`]), the server of QR
//! images ([`showqrcode`]), and the phone that scans QR codes, whose events it signs and POSTs
//! to `/wechat` over real HTTP, exactly as WeChat would ([`phone`]). Sandbox routes exist only
//! in sandbox mode.

mod api;
mod phone;
mod showqrcode;
mod web_authorization;

pub use showqrcode::{ACCOUNT_QRCODE, SHOW_QRCODE};
pub use web_authorization::WEB_AUTHORIZE;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::web;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use moka::sync::Cache;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use url::Url;
use wxlogin_storage::Phone;

use crate::config::Credentials;
use crate::wechat::crypto::{CryptoError, MessageCrypto};
use crate::wechat::envelope::random_nonce;
use crate::wechat::message::{cdata, Message};
use crate::wechat::signature;

const APPID: &str = "wxsandbox0000000";
/// The simulated official account's id (`ToUserName` of pushes).
const ACCOUNT: &str = "gh_sandbox";
/// WeChat's access tokens live two hours.
const TOKEN_LIFETIME_SECS: u64 = 7200;
/// How many sent texts the simulated phones remember; older ones are dropped.
const OUTBOX_CAPACITY: usize = 100;

pub struct Simulator {
    secret: String,
    /// The callback token both sides sign with.
    token: String,
    /// Where "WeChat" delivers events: the service's own `/wechat`, or
    /// `WXLOGIN_SANDBOX_PUSH_URL` (the account's own server, in front of wxlogin).
    callback_url: String,
    /// The address the simulator dials, and so delivers from: what `getcallbackip` lists.
    callback_ip: String,
    /// Safe mode: events are encrypted, replies decrypted.
    crypto: Option<MessageCrypto>,
    http: reqwest::Client,
    /// QR ticket → (scene string, expiry).
    tickets: Cache<String, (String, Instant)>,
    /// Web authorization codes, as the authorize page issued them.
    web_codes: web_authorization::WebCodes,
    state: Mutex<SimState>,
}

#[derive(Default)]
struct SimState {
    access_token: Option<String>,
    /// When set, the API answers HTTP 503 to everything.
    down: bool,
    /// Answers the next API calls get instead of a real one, in order.
    faults: VecDeque<Fault>,
    /// How long each API call takes.
    delay: Duration,
    api_calls: u64,
    token_fetches: u64,
    stable_token_fetches: u64,
    /// The account is not bound to an Open Platform account: `user/info` gives no unionid.
    no_open_platform: bool,
    /// JS-SDK tickets handed out (`getticket`).
    ticket_fetches: u64,
    qrcodes_created: u64,
    /// The texts "sent" to phones, oldest first.
    outbox: VecDeque<Sms>,
}

/// A verification code as a simulated phone received it.
#[derive(Clone, Serialize)]
struct Sms {
    phone: String,
    code: String,
    /// Unix seconds.
    sent_at: u64,
}

/// A failure the fake API can be told to give.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// HTTP 200 with this `errcode`, as WeChat reports its errors.
    Errcode(i64),
    /// This HTTP status.
    Status(u16),
}

/// Something the simulated user does that WeChat pushes to the service.
pub struct UserAction<'a> {
    pub openid: &'a str,
    /// Override the push's CreateTime, e.g. to replay a delivery.
    pub create_time: Option<u64>,
    pub kind: ActionKind<'a>,
}

pub enum ActionKind<'a> {
    /// A scan, follow or unfollow.
    Event {
        event: &'a str,
        event_key: &'a str,
        ticket: &'a str,
    },
    /// A text message to the account.
    Text(&'a str),
}

impl UserAction<'_> {
    /// The message as WeChat writes it.
    fn xml(&self, now: u64) -> String {
        let fields = match self.kind {
            ActionKind::Event {
                event,
                event_key,
                ticket,
            } => format!(
                "<MsgType><![CDATA[event]]></MsgType><Event>{}</Event><EventKey>{}</EventKey><Ticket>{}</Ticket>",
                cdata(event),
                cdata(event_key),
                cdata(ticket)
            ),
            ActionKind::Text(content) => format!(
                "<MsgType><![CDATA[text]]></MsgType><Content>{}</Content><MsgId>{}</MsgId>",
                cdata(content),
                rand::thread_rng().next_u64()
            ),
        };
        format!(
            "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{}</CreateTime>{fields}</xml>",
            cdata(ACCOUNT),
            cdata(self.openid),
            self.create_time.unwrap_or(now),
        )
    }
}

/// What the service answered to a delivered event.
pub struct Delivery {
    pub status: u16,
    /// The text of a passive reply, if there was one.
    pub reply: Option<String>,
}

/// How long a connection to our own `/wechat` may sit idle before it is dropped.
const SELF_DELIVERY_IDLE: Duration = Duration::from_secs(2);

impl Simulator {
    /// `callback`: where the service listens (a dialable address); `push_url`: where to push
    /// instead of its `/wechat`. `aes_key`: speak safe mode, as an account configured with
    /// that EncodingAESKey. `secret`: the account's AppSecret, when other nodes must know it
    /// (`WXLOGIN_SANDBOX_APPSECRET`); else a random one only this process knows.
    pub fn new(
        token: String,
        callback: SocketAddr,
        push_url: Option<&Url>,
        aes_key: Option<&str>,
        secret: Option<&str>,
    ) -> Self {
        let secret = secret.map_or_else(
            || {
                let mut secret = [0u8; 16];
                rand::thread_rng().fill_bytes(&mut secret);
                hex::encode(secret)
            },
            str::to_owned,
        );
        Self {
            secret,
            token,
            callback_url: push_url.map_or_else(
                || format!("http://{callback}/wechat"),
                |url| url.to_string(),
            ),
            // Dialing its own address, a machine sends from that address.
            callback_ip: callback.ip().to_string(),
            crypto: aes_key.map(|key| {
                MessageCrypto::new(key, APPID).expect("the key was checked with the settings")
            }),
            // Idle connections are dropped well before the server's keep-alive (5 s) closes them:
            // a push sent on a connection the server is closing fails as "could not be
            // reached", which a loaded machine's slow tests ran into.
            http: reqwest::Client::builder()
                .pool_idle_timeout(SELF_DELIVERY_IDLE)
                .build()
                .expect("a client with no TLS settings builds"),
            tickets: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(86_400))
                .build(),
            web_codes: web_authorization::WebCodes::default(),
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
        showqrcode::configure(cfg);
        phone::configure(cfg);
        web_authorization::configure(cfg);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SimState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn deliver_sms(&self, phone: &Phone, code: &str) {
        let mut state = self.state();
        if state.outbox.len() == OUTBOX_CAPACITY {
            state.outbox.pop_front();
        }
        state.outbox.push_back(Sms {
            phone: phone.as_str().to_owned(),
            code: code.to_owned(),
            sent_at: unix_now(),
        });
    }

    /// The texts phones received, newest first.
    fn received_sms(&self) -> Vec<Sms> {
        self.state().outbox.iter().rev().cloned().collect()
    }

    /// Signs (and in safe mode encrypts) a push as WeChat does and POSTs it to the
    /// service's callback; reads the reply the way WeChat would.
    pub async fn deliver(&self, action: &UserAction<'_>) -> Result<Delivery, DeliveryError> {
        let now = unix_now();
        let xml = action.xml(now);
        let timestamp = now.to_string();
        let nonce = random_nonce();
        let mut query = vec![
            (
                "signature",
                signature::sign(&[&self.token, &timestamp, &nonce]),
            ),
            ("timestamp", timestamp.clone()),
            ("nonce", nonce.clone()),
            ("openid", action.openid.to_owned()),
        ];
        let body = match &self.crypto {
            None => xml,
            Some(crypto) => {
                let encrypt = crypto.encrypt(xml.as_bytes());
                let msg_signature = signature::sign(&[&self.token, &timestamp, &nonce, &encrypt]);
                query.push(("encrypt_type", "aes".into()));
                query.push(("msg_signature", msg_signature));
                format!(
                    "<xml><ToUserName>{}</ToUserName><Encrypt>{}</Encrypt></xml>",
                    cdata(ACCOUNT),
                    cdata(&encrypt)
                )
            }
        };
        let response = self
            .http
            .post(&self.callback_url)
            .query(&query)
            .header("Content-Type", "text/xml")
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let body = response.bytes().await?;
        let reply = match Message::parse(&body) {
            Ok(reply) => self.read_reply(reply)?,
            // `success`, an empty body, or an error answer: no message for the user.
            Err(_) => None,
        };
        Ok(Delivery { status, reply })
    }

    /// The text of a passive reply, decrypted and its signature checked in safe mode.
    fn read_reply(&self, reply: Message) -> Result<Option<String>, DeliveryError> {
        let reply = match (&self.crypto, reply.encrypt.is_empty()) {
            (Some(crypto), false) => {
                let signed = [
                    self.token.as_str(),
                    &reply.timestamp,
                    &reply.nonce,
                    &reply.encrypt,
                ];
                if !signature::verify(&signed, &reply.msg_signature) {
                    return Err(DeliveryError::ReplySignature);
                }
                Message::parse(&crypto.decrypt(&reply.encrypt)?)
                    .map_err(|_| DeliveryError::ReplyUnreadable)?
            }
            _ => reply,
        };
        Ok(Some(reply.content).filter(|text| !text.is_empty()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the callback could not be reached: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the encrypted reply's MsgSignature is wrong")]
    ReplySignature,
    #[error("the encrypted reply does not decrypt: {0}")]
    ReplyCrypto(#[from] CryptoError),
    #[error("the decrypted reply is not a message")]
    ReplyUnreadable,
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

/// The simulated unionid of `openid`: `u` and 27 characters of its SHA-256, like WeChat's 28.
pub fn sandbox_unionid(openid: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("sandbox unionid\0{openid}").as_bytes());
    format!("u{}", &URL_SAFE_NO_PAD.encode(digest)[..27])
}

/// An openid as WeChat's look: 'o' and 27 base64url characters.
fn random_openid() -> String {
    let mut bytes = [0u8; 21];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("o{}", &URL_SAFE_NO_PAD.encode(bytes)[..27])
}

fn random_token() -> String {
    let mut bytes = [0u8; 48];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}
