//! The callback's parse-and-decrypt path, as `/wechat` runs it on every push.
//!
//! The first input byte picks plaintext or safe mode; the rest is the body. In safe mode the
//! harness signs whatever `Encrypt` the body carries, so inputs get past the signature check and
//! exercise decryption. Then the same bytes are sealed as raw plaintext and opened again, to
//! reach the length and AppID checks inside the ciphertext.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use wxlogin::wechat::crypto::MessageCrypto;
use wxlogin::wechat::envelope::{CallbackKeys, CallbackQuery};
use wxlogin::wechat::message::Message;
use wxlogin::wechat::signature::sign;

const TOKEN: &str = "fuzz-token";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const APPID: &str = "wxfuzz0000000000";
const NOW: u64 = 1_732_406_400;

fuzz_target!(|data: &[u8]| {
    let crypto = || MessageCrypto::new(AES_KEY, APPID).expect("a valid key");
    let (mode, body) = data.split_first().unwrap_or((&0, &[]));
    // With a key set plaintext pushes are refused before parsing: plaintext mode has no key.
    let key = (mode & 1 == 1).then(crypto);
    let keys = CallbackKeys::new(TOKEN.into(), key, Duration::from_secs(300));
    let timestamp = NOW.to_string();
    let mut query = CallbackQuery {
        signature: Some(sign(&[TOKEN, &timestamp, "n"])),
        timestamp: Some(timestamp.clone()),
        nonce: Some("n".into()),
        ..CallbackQuery::default()
    };
    if mode & 1 == 1 {
        let encrypt = Message::parse(body).map(|m| m.encrypt).unwrap_or_default();
        query.encrypt_type = Some("aes".into());
        query.msg_signature = Some(sign(&[TOKEN, &timestamp, "n", &encrypt]));
    }
    if let Ok(opened) = keys.open(&query, body, NOW) {
        let _ = opened.message.inbound();
        let _ = opened.message.redelivery_key();
    }
    let crypto = crypto();
    if let Ok(xml) = crypto.decrypt(&crypto.seal(body.to_vec())) {
        let _ = Message::parse(&xml);
    }
});
