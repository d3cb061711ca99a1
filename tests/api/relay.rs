//! `WXLOGIN_UPSTREAM_URL`: wxlogin in front of the account's own server. The pushes that are
//! not wxlogin's reach it byte for byte, under WeChat's signatures, which it checks itself; its
//! answer reaches WeChat as it gave it; a slow, failing or dead one leaves WeChat with `success`.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use wxlogin::wechat::crypto::MessageCrypto;
use wxlogin::wechat::message::Message;

use crate::account_server::{bytes_of, AccountServer};
use crate::helpers::{
    answering_server, assert_error, event_xml, fresh_nonce, signed_query, spawn_app_with, text_xml,
    unix_now, wechat_signature, TestApp, SANDBOX_TOKEN,
};

const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const SANDBOX_APPID: &str = "wxsandbox0000000";
/// The content type the account's server answers with.
const REPLY_TYPE: &str = "application/xml; charset=utf-8";

/// wxlogin relaying to `upstream`'s `/account/wechat`, with `more` settings.
async fn relaying_app(upstream: &AccountServer, more: &[(&str, &str)]) -> TestApp {
    let url = format!("{}/account/wechat", upstream.base);
    let env = [&[("WXLOGIN_UPSTREAM_URL", url.as_str())][..], more].concat();
    spawn_app_with(&env).await
}

/// A push as WeChat sends it: the query string and the body.
fn plain_push(xml: &str, openid: &str) -> (String, String) {
    let query = format!("{}&openid={openid}", signed_query(SANDBOX_TOKEN));
    (query, xml.to_owned())
}

fn safe_push(xml: &str, openid: &str) -> (String, String) {
    let encrypt = MessageCrypto::new(AES_KEY, SANDBOX_APPID)
        .unwrap()
        .encrypt(xml.as_bytes());
    let (timestamp, nonce) = (unix_now().to_string(), fresh_nonce());
    let query = format!(
        "signature={}&timestamp={timestamp}&nonce={nonce}&openid={openid}&encrypt_type=aes&msg_signature={}",
        wechat_signature(&[SANDBOX_TOKEN, &timestamp, &nonce]),
        wechat_signature(&[SANDBOX_TOKEN, &timestamp, &nonce, &encrypt])
    );
    let body = format!("<xml><ToUserName><![CDATA[gh_sandbox]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>");
    (query, body)
}

/// The push reached the upstream exactly as WeChat sent it, and its signatures checked out
/// there; WeChat got the upstream's answer exactly as the upstream gave it.
async fn assert_relayed_verbatim(
    record: &Value,
    (query, body): &(String, String),
    response: reqwest::Response,
) -> Vec<u8> {
    assert_eq!(record["method"], "POST", "{record}");
    assert_eq!(record["path"], "/account/wechat", "{record}");
    assert_eq!(record["query"], query.as_str(), "{record}");
    assert_eq!(bytes_of(record, "body"), body.as_bytes(), "{record}");
    assert_eq!(record["content_type"], "text/xml", "{record}");
    assert_eq!(record["signature_ok"], true, "{record}");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, REPLY_TYPE);
    let answer = response.bytes().await.unwrap().to_vec();
    assert_eq!(answer, bytes_of(record, "answer"));
    answer
}

#[tokio::test]
async fn the_accounts_pushes_reach_the_upstream_byte_for_byte_and_its_answer_reaches_wechat() {
    let upstream = AccountServer::start(&["--token", SANDBOX_TOKEN]);
    let app = relaying_app(&upstream, &[]).await;
    let now = unix_now();
    let pushes = [
        event_xml("oMenu", now, "CLICK", "MENU_NEWS"),
        // A scan of one of the account's own QR codes, and a follow through one.
        event_xml("oShopper", now, "SCAN", "shop_4200001234"),
        event_xml("oShopper2", now, "subscribe", "qrscene_shop_1"),
        // A text that is no login code nor an answer.
        text_xml("oChatty", now, "营业时间?", 7_001),
        // Two digits with no confirmation pending: an answer to the account's own menu.
        text_xml("oChatty", now, "12", 7_002),
    ];
    for (i, xml) in pushes.iter().enumerate() {
        let push = plain_push(xml, "oUser");
        let response = app.post_callback(&push.0, push.1.clone()).await;
        let seen = upstream.seen().await;
        assert_eq!(seen.len(), i + 1, "{xml}");
        let answer = assert_relayed_verbatim(&seen[i], &push, response).await;
        let reply = Message::parse(&answer).unwrap();
        assert!(
            reply.content.starts_with("the account's server got:"),
            "{reply:?}"
        );
    }
    app.assert_metric("wxlogin_upstream_total{outcome=\"relayed\"}", 5)
        .await;

    // A login is wxlogin's: the upstream never hears of it (with the default `others`).
    let qr = app.create_qr().await;
    let delivery = app.scan(&qr.ticket, "oLogin", true).await;
    assert!(
        delivery["reply"].as_str().unwrap().contains("手机号"),
        "{delivery}"
    );
    // So is WeChat's server check.
    let echo = app
        .get_owned(format!(
            "/wechat?{}&echostr=e42",
            signed_query(SANDBOX_TOKEN)
        ))
        .await;
    assert_eq!(echo.text().await.unwrap(), "e42");
    assert_eq!(upstream.seen().await.len(), 5);
}

#[tokio::test]
async fn safe_mode_pushes_reach_the_upstream_still_encrypted_and_its_encrypted_answer_reaches_wechat(
) {
    let upstream = AccountServer::start(&[
        "--token",
        SANDBOX_TOKEN,
        "--aes-key",
        AES_KEY,
        "--appid",
        SANDBOX_APPID,
    ]);
    let app = relaying_app(&upstream, &[("WXLOGIN_AES_KEY", AES_KEY)]).await;
    let xml = event_xml("oMenu", unix_now(), "CLICK", "MENU_NEWS");
    let push = safe_push(&xml, "oMenu");
    let response = app.post_callback(&push.0, push.1.clone()).await;
    let seen = upstream.wait_for(1).await;
    // The upstream checked the msg_signature over the Encrypt field and decrypted it itself.
    assert_eq!(seen[0]["plaintext"], xml.as_str());
    let answer = assert_relayed_verbatim(&seen[0], &push, response).await;
    let envelope = Message::parse(&answer).unwrap();
    let inner = MessageCrypto::new(AES_KEY, SANDBOX_APPID)
        .unwrap()
        .decrypt(&envelope.encrypt)
        .unwrap();
    let reply = Message::parse(&inner).unwrap();
    assert_eq!(reply.content, "the account's server got: CLICK");

    // And the simulated WeChat, which checks and decrypts every reply, shows it to the user.
    let delivery = app.text("oSafeChat", "hello").await;
    assert_eq!(
        delivery["reply"], "the account's server got: hello",
        "{delivery}"
    );
}

#[tokio::test]
async fn nothing_wxlogin_refuses_reaches_the_upstream() {
    let upstream = AccountServer::start(&["--token", SANDBOX_TOKEN]);
    let app = relaying_app(&upstream, &[]).await;
    let click = event_xml("oMallory", unix_now(), "CLICK", "MENU_NEWS");
    // Unsigned, badly signed, stale, or too big.
    let unsigned = format!("timestamp={}&nonce=2&openid=oMallory", unix_now());
    let unsigned = app.post_callback(&unsigned, click.clone()).await;
    assert_error(unsigned, StatusCode::FORBIDDEN, "invalid_signature").await;
    let forged = format!("{}&openid=oMallory", signed_query("not-the-token"));
    let forged = app.post_callback(&forged, click.clone()).await;
    assert_error(forged, StatusCode::FORBIDDEN, "invalid_signature").await;
    let stale = crate::helpers::signed_query_at(SANDBOX_TOKEN, unix_now() - 3600);
    let stale = app.post_callback(&stale, click.clone()).await;
    assert_error(stale, StatusCode::FORBIDDEN, "stale_timestamp").await;
    let (query, _) = plain_push(&click, "oMallory");
    let huge = format!("<xml><Content>{}</Content></xml>", "x".repeat(100_000));
    let huge = app.post_callback(&query, huge).await;
    assert_error(huge, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;

    // A query string copied from a log, with a body of the attacker's: refused, not relayed.
    let (query, body) = plain_push(&click, "oUser");
    let genuine = app.post_callback(&query, body).await;
    assert_eq!(genuine.status(), StatusCode::OK);
    let crafted = text_xml("oUser", unix_now(), "退订", 666);
    let replayed = app.post_callback(&query, crafted).await;
    assert_error(replayed, StatusCode::FORBIDDEN, "replayed_signature").await;
    // Nor does a body that isn't a message.
    let (query, _) = plain_push(&click, "oUser");
    let garbage = app.post_callback(&query, "<!DOCTYPE x><xml/>").await;
    assert_error(garbage, StatusCode::BAD_REQUEST, "invalid_message").await;

    let seen = upstream.seen().await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(bytes_of(&seen[0], "body"), click.as_bytes());
}

#[tokio::test]
async fn wechats_redelivery_is_answered_by_wxlogin_and_the_upstream_sees_each_push_once() {
    let upstream = AccountServer::start(&["--token", SANDBOX_TOKEN]);
    let app = relaying_app(&upstream, &[]).await;
    let push = plain_push(&text_xml("oUser", unix_now(), "hello", 9_001), "oUser");
    let first = app.post_callback(&push.0, push.1.clone()).await;
    assert!(first
        .text()
        .await
        .unwrap()
        .contains("the account's server got"));
    // WeChat's retries carry the same query string and body.
    for _ in 0..2 {
        let retry = app.post_callback(&push.0, push.1.clone()).await;
        assert_eq!(retry.text().await.unwrap(), "success");
    }
    assert_eq!(upstream.seen().await.len(), 1);
}

#[tokio::test]
async fn with_all_the_upstream_also_gets_a_copy_of_wxlogins_own_pushes_and_wxlogin_answers() {
    let upstream = AccountServer::start(&["--token", SANDBOX_TOKEN]);
    let app = relaying_app(&upstream, &[("WXLOGIN_UPSTREAM_FORWARD", "all")]).await;
    let qr = app.create_qr().await;
    let delivery = app.scan(&qr.ticket, "oNewFollower", true).await;
    // wxlogin's reply, not the upstream's.
    assert!(
        delivery["reply"].as_str().unwrap().contains("手机号"),
        "{delivery}"
    );
    let seen = upstream.wait_for(1).await;
    let copy = seen[0]["plaintext"].as_str().unwrap();
    assert!(
        copy.contains("<Event><![CDATA[subscribe]]></Event>"),
        "{copy}"
    );
    assert!(
        copy.contains(&format!("qrscene_{}", qr.event_key())),
        "{copy}"
    );
    assert_eq!(seen[0]["signature_ok"], true);
    // The account's own pushes are relayed as with `others`.
    let delivery = app.text("oNewFollower", "hello").await;
    assert_eq!(delivery["reply"], "the account's server got: hello");
    app.assert_metric("wxlogin_upstream_total{outcome=\"copied\"}", 1)
        .await;
}

#[tokio::test]
async fn an_unfollow_unbinds_and_reaches_the_upstream() {
    let upstream = AccountServer::start(&["--token", SANDBOX_TOKEN]);
    let app = relaying_app(&upstream, &[]).await;
    let token = app.sign_up("oLeaving", "13800000070").await;
    app.unsubscribe("oLeaving", None).await;
    assert_eq!(app.me(&token).await.status(), StatusCode::UNAUTHORIZED);
    let seen = upstream.wait_for(1).await;
    let push = seen[0]["plaintext"].as_str().unwrap();
    assert!(
        push.contains("<Event><![CDATA[unsubscribe]]></Event>"),
        "{push}"
    );
}

/// A push the upstream will not take in time, or at all, is answered `success` at once.
async fn assert_answered_success(app: &TestApp, outcome: &str) {
    let push = plain_push(&text_xml("oUser", unix_now(), "hello", 1), "oUser");
    let started = Instant::now();
    let response = app.post_callback(&push.0, push.1).await;
    // WeChat's own deadline: later, it retries and then tells the user the account is broken.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "success");
    app.assert_metric(
        &format!("wxlogin_upstream_total{{outcome=\"{outcome}\"}}"),
        1,
    )
    .await;
    app.wait_for_log("the upstream did not take a push").await;
    assert!(!app.log().contains("signature="), "{}", app.log());
}

#[tokio::test]
async fn a_slow_upstream_never_makes_wechat_miss_its_5_s_deadline() {
    let upstream = AccountServer::start(&["--token", SANDBOX_TOKEN, "--delay", "8"]);
    // The default budget, 4 s.
    let app = relaying_app(&upstream, &[]).await;
    assert_answered_success(&app, "timeout").await;
}

#[tokio::test]
async fn a_failing_or_dead_upstream_leaves_wechat_with_success() {
    let failing = AccountServer::start(&["--token", SANDBOX_TOKEN, "--status", "502"]);
    let app = relaying_app(&failing, &[]).await;
    assert_answered_success(&app, "failed").await;

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/wechat", closed.local_addr().unwrap());
    drop(closed);
    let app = spawn_app_with(&[("WXLOGIN_UPSTREAM_URL", &dead)]).await;
    assert_answered_success(&app, "unreachable").await;
}

#[tokio::test]
async fn a_redirecting_upstream_is_not_followed() {
    let (base, mut requests) = answering_server(|_| (302, String::new())).await;
    let app = spawn_app_with(&[("WXLOGIN_UPSTREAM_URL", &format!("{base}/wechat"))]).await;
    assert_answered_success(&app, "failed").await;
    let request = requests.recv().await.unwrap();
    assert!(
        request.target.starts_with("/wechat?signature="),
        "{request:?}"
    );
    // Nothing went to where the redirect pointed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(requests.try_recv().is_err());
}

#[tokio::test]
async fn login_codes_and_confirmation_answers_are_wxlogins_and_every_other_text_the_accounts() {
    let upstream = AccountServer::start(&["--token", SANDBOX_TOKEN]);
    let settings = [
        ("WXLOGIN_LOGIN_MODE", "code"),
        ("WXLOGIN_CONFIRM", "number"),
    ];
    let app = relaying_app(&upstream, &settings).await;
    // A follow and a text that is no code: the account's own welcome and keyword replies
    // stand in for code mode's how-to texts.
    let delivery = app.follow("oCoder").await;
    assert_eq!(delivery["reply"], "the account's server got: subscribe");
    let delivery = app.text("oCoder", "怎么登录").await;
    assert_eq!(delivery["reply"], "the account's server got: 怎么登录");
    // The login code, then the answer to the confirmation request it brought.
    let (scene_id, code) = app.create_code_login().await;
    let delivery = app.text("oCoder", &code).await;
    assert!(
        delivery["reply"].as_str().unwrap().contains("两位数字"),
        "{delivery}"
    );
    let (_, status) = app.status(&scene_id, 0).await;
    let number = status["confirm_number"].as_u64().unwrap().to_string();
    let delivery = app.text("oCoder", &number).await;
    assert!(
        delivery["reply"].as_str().unwrap().contains("手机号"),
        "{delivery}"
    );
    // A wrong code is a login attempt too (it counts towards the guess limit).
    let delivery = app.text("oCoder", "000000").await;
    assert!(
        delivery["reply"].as_str().unwrap().contains("登录码"),
        "{delivery}"
    );
    assert_eq!(upstream.seen().await.len(), 2);
}

#[tokio::test]
async fn an_oversized_answer_is_not_passed_on() {
    let (base, _requests) = answering_server(|_| (200, "x".repeat(70_000))).await;
    let app = spawn_app_with(&[("WXLOGIN_UPSTREAM_URL", &format!("{base}/wechat"))]).await;
    assert_answered_success(&app, "failed").await;
}
