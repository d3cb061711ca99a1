//! The callback's CPU work per push: signature check, safe-mode decrypt + parse, plain
//! parse, and building the passive reply.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use wxlogin::wechat::crypto::MessageCrypto;
use wxlogin::wechat::envelope::{CallbackKeys, CallbackQuery};
use wxlogin::wechat::message::{text_reply, Message};
use wxlogin::wechat::signature::{sign, verify};

const TOKEN: &str = "wxlogin-token";
const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const APPID: &str = "wx1234567890abcdef";
const NOW: u64 = 1_732_406_400;
const TIMESTAMP: &str = "1732406400";
const NONCE: &str = "8f3a9c";

/// A typical scan: an existing follower scans a login QR code.
const SCAN: &str = "<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName>\
<FromUserName><![CDATA[oAbCdEfGhIjKlMnOpQrStUvWxYz0]]></FromUserName><CreateTime>1732406400</CreateTime>\
<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[SCAN]]></Event>\
<EventKey><![CDATA[Jm2k1WcXb3Yq0t9ZrL8vN4pA6sD7fG5h]]></EventKey>\
<Ticket><![CDATA[gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xL2taZ2Z3TVRtNzJXV1Brb3ZhYmJJAAIEZ23sUwMEmm3sUw==]]></Ticket></xml>";

fn signature(c: &mut Criterion) {
    let signature = sign(&[TOKEN, TIMESTAMP, NONCE]);
    c.bench_function("signature check", |b| {
        b.iter(|| verify(&[TOKEN, TIMESTAMP, NONCE], &signature))
    });
}

fn safe_mode_open(c: &mut Criterion) {
    let crypto = MessageCrypto::new(KEY, APPID).unwrap();
    let encrypt = crypto.encrypt(SCAN.as_bytes());
    let body = format!("<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>");
    let query = CallbackQuery {
        timestamp: Some(TIMESTAMP.into()),
        nonce: Some(NONCE.into()),
        encrypt_type: Some("aes".into()),
        msg_signature: Some(sign(&[TOKEN, TIMESTAMP, NONCE, &encrypt])),
        ..CallbackQuery::default()
    };
    let keys = CallbackKeys::new(TOKEN.into(), Some(crypto), Duration::from_secs(300));
    c.bench_function("safe mode: check, decrypt and parse a scan", |b| {
        b.iter(|| keys.open(&query, body.as_bytes(), NOW).unwrap())
    });
}

fn parse(c: &mut Criterion) {
    c.bench_function("parse a scan event", |b| {
        b.iter(|| Message::parse(SCAN.as_bytes()).unwrap())
    });
}

fn reply(c: &mut Criterion) {
    c.bench_function("build a text reply", |b| {
        b.iter(|| {
            text_reply(
                "oAbCdEfGhIjKlMnOpQrStUvWxYz0",
                "gh_0123456789ab",
                NOW,
                "扫码成功！请在网页上填写手机号并完成验证，即可登录。",
            )
        })
    });
}

criterion_group!(benches, signature, safe_mode_open, parse, reply);
criterion_main!(benches);
