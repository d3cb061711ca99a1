//! A push as it reaches `/wechat`: authenticate it, decrypt it in safe mode, parse it;
//! and seal the reply the same way the push came.

use std::time::Duration;

use rand::Rng;
use serde::Deserialize;

use super::crypto::{CryptoError, MessageCrypto};
use super::message::{cdata, Message, MessageError};
use super::signature;

/// The query string WeChat puts on every callback request.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    pub signature: Option<String>,
    pub timestamp: Option<String>,
    pub nonce: Option<String>,
    pub echostr: Option<String>,
    /// `aes` in safe mode (and in compatibility mode).
    pub encrypt_type: Option<String>,
    pub msg_signature: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the request signature is wrong")]
    BadSignature,
    #[error("the request timestamp is too far from now")]
    StaleTimestamp,
    #[error("an encrypted message arrived but WXLOGIN_AES_KEY is not set")]
    SafeModeOff,
    #[error("WXLOGIN_AES_KEY is set: pushes must be encrypted (encrypt_type=aes, msg_signature)")]
    EncryptionRequired,
    #[error("echostr is missing")]
    MissingEchostr,
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error("decryption failed: {0}")]
    Crypto(#[from] CryptoError),
}

/// How a push came, and so how its reply must go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Safe,
}

pub struct Opened {
    pub message: Message,
    pub mode: Mode,
}

/// A push whose signature checked out, not yet decrypted or parsed.
pub struct Signed<'q> {
    /// The signed timestamp, as sent and as Unix seconds.
    pub timestamp: &'q str,
    pub sent_at: u64,
    pub nonce: &'q str,
    /// The signature that was checked: `signature`, or `msg_signature` in safe mode.
    pub signature: &'q str,
    content: Content<'q>,
}

enum Content<'q> {
    Plain(&'q [u8]),
    /// The `Encrypt` the `msg_signature` covers, and the key that opens it.
    Encrypted(String, &'q MessageCrypto),
}

impl Signed<'_> {
    /// Decrypts (in safe mode) and parses the push.
    pub fn read(self) -> Result<Opened, EnvelopeError> {
        Ok(match self.content {
            Content::Plain(body) => Opened {
                message: Message::parse(body)?,
                mode: Mode::Plain,
            },
            Content::Encrypted(encrypt, crypto) => Opened {
                message: Message::parse(&crypto.decrypt(&encrypt)?)?,
                mode: Mode::Safe,
            },
        })
    }
}

/// What authenticates the callback: the shared token, the AES key in safe mode, and how far a
/// request's timestamp may stray from our clock (which bounds how long a captured request can be replayed).
pub struct CallbackKeys {
    token: String,
    crypto: Option<MessageCrypto>,
    max_skew: Duration,
}

impl CallbackKeys {
    pub fn new(token: String, crypto: Option<MessageCrypto>, max_skew: Duration) -> Self {
        Self {
            token,
            crypto,
            max_skew,
        }
    }

    /// The signed timestamp (as sent, and in seconds) and nonce, if the timestamp is recent.
    fn fresh<'q>(
        &self,
        query: &'q CallbackQuery,
        now: u64,
    ) -> Result<(&'q str, u64, &'q str), EnvelopeError> {
        let (Some(timestamp), Some(nonce)) = (query.timestamp.as_deref(), query.nonce.as_deref())
        else {
            return Err(EnvelopeError::BadSignature);
        };
        let sent: u64 = timestamp.parse().map_err(|_| EnvelopeError::BadSignature)?;
        if sent.abs_diff(now) > self.max_skew.as_secs() {
            return Err(EnvelopeError::StaleTimestamp);
        }
        Ok((timestamp, sent, nonce))
    }

    fn check(&self, parts: &[&str], signature: Option<&str>) -> Result<(), EnvelopeError> {
        match signature {
            Some(signature) if signature::verify(parts, signature) => Ok(()),
            _ => Err(EnvelopeError::BadSignature),
        }
    }

    /// Authenticates and reads a pushed message. Signatures are checked before any decryption.
    pub fn open(
        &self,
        query: &CallbackQuery,
        body: &[u8],
        now: u64,
    ) -> Result<Opened, EnvelopeError> {
        self.verify(query, body, now)?.read()
    }

    /// Checks a push's timestamp and signature. With an AES key, only an encrypted push under
    /// a `msg_signature` passes: the plain `signature` covers no part of the body, so a query
    /// string copied from any access log would sign whatever body came with it.
    pub fn verify<'q>(
        &'q self,
        query: &'q CallbackQuery,
        body: &'q [u8],
        now: u64,
    ) -> Result<Signed<'q>, EnvelopeError> {
        let (timestamp, sent_at, nonce) = self.fresh(query, now)?;
        let encrypted = query
            .encrypt_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("aes"));
        let (content, signature) = match (encrypted, &self.crypto) {
            (false, Some(_)) => return Err(EnvelopeError::EncryptionRequired),
            (false, None) => {
                let signature = query.signature.as_deref();
                self.check(&[&self.token, timestamp, nonce], signature)?;
                (Content::Plain(body), signature)
            }
            (true, None) => return Err(EnvelopeError::SafeModeOff),
            (true, Some(crypto)) => {
                let outer = Message::parse(body)?;
                let signature = query.msg_signature.as_deref();
                self.check(&[&self.token, timestamp, nonce, &outer.encrypt], signature)?;
                (Content::Encrypted(outer.encrypt, crypto), signature)
            }
        };
        Ok(Signed {
            timestamp,
            sent_at,
            nonce,
            signature: signature.unwrap_or_default(),
            content,
        })
    }

    /// Answers WeChat's server check: `echostr` as sent, or decrypted when it comes under a `msg_signature`.
    /// Also answers the signature it checked and its time, for the caller to use them up.
    pub fn echo<'q>(
        &self,
        query: &'q CallbackQuery,
        now: u64,
    ) -> Result<(String, &'q str, u64), EnvelopeError> {
        let (timestamp, sent_at, nonce) = self.fresh(query, now)?;
        let echostr = query
            .echostr
            .as_deref()
            .ok_or(EnvelopeError::MissingEchostr)?;
        match (&self.crypto, query.msg_signature.as_deref()) {
            (Some(crypto), Some(msg_signature)) => {
                self.check(
                    &[&self.token, timestamp, nonce, echostr],
                    Some(msg_signature),
                )?;
                let plain = crypto.decrypt(echostr)?;
                let echo = String::from_utf8(plain)
                    .map_err(|_| EnvelopeError::Message(MessageError::NotUtf8))?;
                Ok((echo, msg_signature, sent_at))
            }
            _ => {
                let signature = query.signature.as_deref();
                self.check(&[&self.token, timestamp, nonce], signature)?;
                Ok((echostr.to_owned(), signature.unwrap_or_default(), sent_at))
            }
        }
    }

    /// The reply body for a push that came in `mode`.
    pub fn seal(&self, reply_xml: String, mode: Mode, now: u64) -> String {
        match (mode, &self.crypto) {
            (Mode::Safe, Some(crypto)) => {
                encrypted_envelope(&self.token, crypto, reply_xml.as_bytes(), now)
            }
            _ => reply_xml,
        }
    }
}

/// WeChat's safe-mode envelope: `<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>`.
pub fn encrypted_envelope(token: &str, crypto: &MessageCrypto, xml: &[u8], now: u64) -> String {
    let encrypt = crypto.encrypt(xml);
    let timestamp = now.to_string();
    let nonce = random_nonce();
    let msg_signature = signature::sign(&[token, &timestamp, &nonce, &encrypt]);
    format!(
        "<xml><Encrypt>{}</Encrypt><MsgSignature>{}</MsgSignature><TimeStamp>{timestamp}</TimeStamp><Nonce>{}</Nonce></xml>",
        cdata(&encrypt),
        cdata(&msg_signature),
        cdata(&nonce)
    )
}

pub fn random_nonce() -> String {
    rand::thread_rng()
        .gen_range(100_000_000u32..1_000_000_000)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "wxlogin-token";
    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const APPID: &str = "wx1234567890abcdef";
    const NOW: u64 = 1_732_406_400;

    fn keys() -> CallbackKeys {
        let crypto = MessageCrypto::new(KEY, APPID).unwrap();
        CallbackKeys::new(TOKEN.into(), Some(crypto), Duration::from_secs(300))
    }

    fn plain_keys() -> CallbackKeys {
        CallbackKeys::new(TOKEN.into(), None, Duration::from_secs(300))
    }

    fn plain_query(timestamp: u64) -> CallbackQuery {
        let timestamp = timestamp.to_string();
        CallbackQuery {
            signature: Some(signature::sign(&[TOKEN, &timestamp, "n"])),
            timestamp: Some(timestamp),
            nonce: Some("n".into()),
            ..CallbackQuery::default()
        }
    }

    const EVENT: &str = "<xml><FromUserName>oUser</FromUserName><MsgType>event</MsgType><Event>SCAN</Event><EventKey>K</EventKey></xml>";

    #[test]
    fn plain_pushes_open_within_the_time_window() {
        let keys = plain_keys();
        let opened = keys
            .open(&plain_query(NOW - 300), EVENT.as_bytes(), NOW)
            .unwrap();
        assert_eq!(
            (opened.message.from_user.as_str(), opened.mode),
            ("oUser", Mode::Plain)
        );
        assert!(matches!(
            keys.open(&plain_query(NOW - 301), EVENT.as_bytes(), NOW),
            Err(EnvelopeError::StaleTimestamp)
        ));
        assert!(matches!(
            keys.open(&plain_query(NOW + 301), EVENT.as_bytes(), NOW),
            Err(EnvelopeError::StaleTimestamp)
        ));
        let mut forged = plain_query(NOW);
        forged.nonce = Some("other".into());
        assert!(matches!(
            keys.open(&forged, EVENT.as_bytes(), NOW),
            Err(EnvelopeError::BadSignature)
        ));
    }

    /// The published official-account event, as WeChat would push it in safe mode.
    #[test]
    fn the_published_safe_mode_event_opens_and_its_reply_seals() {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/data/wechat-vectors.json")).unwrap();
        let v = &vectors["official_account_event"];
        let field = |name: &str| v[name].as_str().unwrap().to_owned();
        let query = CallbackQuery {
            signature: Some(field("query_signature")),
            timestamp: Some(field("timestamp")),
            nonce: Some(field("nonce")),
            encrypt_type: Some("aes".into()),
            msg_signature: Some(field("msg_signature")),
            ..CallbackQuery::default()
        };
        let body = format!("<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt></xml>", field("encrypt"));
        let opened = keys().open(&query, body.as_bytes(), NOW).unwrap();
        assert_eq!(opened.mode, Mode::Safe);
        assert_eq!(opened.message.event_key, "qrscene_Qm9vLXNjZW5lLTAwMDE");

        let sealed = keys().seal("<xml><Content>hi</Content></xml>".into(), Mode::Safe, NOW);
        let envelope = Message::parse(sealed.as_bytes()).unwrap();
        assert!(signature::verify(
            &[
                TOKEN,
                &envelope.timestamp,
                &envelope.nonce,
                &envelope.encrypt
            ],
            &envelope.msg_signature
        ));
        let inner = MessageCrypto::new(KEY, APPID)
            .unwrap()
            .decrypt(&envelope.encrypt)
            .unwrap();
        assert_eq!(inner, b"<xml><Content>hi</Content></xml>");

        let mut tampered = query;
        tampered.msg_signature = Some("0".repeat(40));
        assert!(matches!(
            keys().open(&tampered, body.as_bytes(), NOW),
            Err(EnvelopeError::BadSignature)
        ));
    }

    #[test]
    fn with_a_key_plaintext_pushes_are_refused_before_parsing() {
        let signed = keys().open(&plain_query(NOW), EVENT.as_bytes(), NOW);
        assert!(matches!(signed, Err(EnvelopeError::EncryptionRequired)));
        // Whatever the body: nothing of it is read.
        let garbage = keys().open(&plain_query(NOW), b"\xff", NOW);
        assert!(matches!(garbage, Err(EnvelopeError::EncryptionRequired)));
        let stale = keys().open(&plain_query(NOW - 301), EVENT.as_bytes(), NOW);
        assert!(matches!(stale, Err(EnvelopeError::StaleTimestamp)));
    }

    #[test]
    fn encrypted_pushes_need_safe_mode() {
        let keys = plain_keys();
        let mut query = plain_query(NOW);
        query.encrypt_type = Some("aes".into());
        assert!(matches!(
            keys.open(&query, b"<xml/>", NOW),
            Err(EnvelopeError::SafeModeOff)
        ));
        assert_eq!(keys.seal("<xml/>".into(), Mode::Safe, NOW), "<xml/>");
    }

    #[test]
    fn echo_in_both_modes() {
        let keys = keys();
        let mut query = plain_query(NOW);
        query.echostr = Some("12345".into());
        assert_eq!(keys.echo(&query, NOW).unwrap().0, "12345");

        let encrypted = MessageCrypto::new(KEY, APPID).unwrap().encrypt(b"67890");
        let timestamp = NOW.to_string();
        query.msg_signature = Some(signature::sign(&[TOKEN, &timestamp, "n", &encrypted]));
        query.echostr = Some(encrypted);
        assert_eq!(keys.echo(&query, NOW).unwrap().0, "67890");
        query.msg_signature = Some("bad".into());
        assert!(matches!(
            keys.echo(&query, NOW),
            Err(EnvelopeError::BadSignature)
        ));
    }
}
