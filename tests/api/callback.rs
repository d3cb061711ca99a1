//! `/wechat` as WeChat, and as an attacker, would use it.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    assert_error, event_xml, signed_query, signed_query_at, spawn_app, text_xml, unix_now,
    SANDBOX_TOKEN, SCENE_PREFIX,
};

/// A restart (a deploy, a crash) must not reopen a used signature, and the server check's URL
/// (a GET, signed exactly as a POST is in plaintext mode) must not sign a push.
#[tokio::test]
async fn neither_a_restart_nor_the_server_check_frees_a_signature() {
    let mut app = spawn_app().await;
    let token = app.sign_up("oVictim2", "13800000024").await;
    let captured = signed_query(SANDBOX_TOKEN);
    let genuine = text_xml("oVictim2", unix_now(), "hello", 4343);
    assert_eq!(
        app.post_callback(&captured, genuine).await.status(),
        StatusCode::OK
    );
    // A deploy, a crash, Restart=always: the same query string with another body.
    app.restart();
    let unfollow = event_xml("oVictim2", unix_now(), "unsubscribe", "");
    let refused = app.post_callback(&captured, unfollow.clone()).await;
    assert_error(refused, StatusCode::FORBIDDEN, "replayed_signature").await;
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);

    // The console's server check, its URL read from a log, then a push under it.
    let check = signed_query(SANDBOX_TOKEN);
    let echoed = app.get_owned(format!("/wechat?{check}&echostr=e1")).await;
    assert_eq!(echoed.text().await.unwrap(), "e1");
    let refused = app.post_callback(&check, unfollow).await;
    assert_error(refused, StatusCode::FORBIDDEN, "replayed_signature").await;
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
    // WeChat checking again is fine.
    let again = app.get_owned(format!("/wechat?{check}&echostr=e1")).await;
    assert_eq!(again.status(), StatusCode::OK);
}

#[tokio::test]
async fn server_verification_echoes_echostr_only_when_signed() {
    let app = spawn_app().await;
    let echo = |query: String| app.get_owned(format!("/wechat?{query}&echostr=hello123"));
    let response = echo(signed_query(SANDBOX_TOKEN)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "hello123");

    let forged = echo(signed_query("not-the-token")).await;
    assert_error(forged, StatusCode::FORBIDDEN, "invalid_signature").await;
    let unsigned = app.get("/wechat?echostr=hello123").await;
    assert_error(unsigned, StatusCode::FORBIDDEN, "invalid_signature").await;
    let stale = echo(signed_query_at(SANDBOX_TOKEN, unix_now() - 301)).await;
    assert_error(stale, StatusCode::FORBIDDEN, "stale_timestamp").await;
}

#[tokio::test]
async fn pushes_with_a_bad_signature_are_refused() {
    let app = spawn_app().await;
    let body = event_xml("oAttacker", unix_now(), "unsubscribe", "");
    let forged = signed_query("not-the-token");
    assert_error(
        app.post_callback(&forged, body.clone()).await,
        StatusCode::FORBIDDEN,
        "invalid_signature",
    )
    .await;
    assert_error(
        app.post_callback("", body).await,
        StatusCode::FORBIDDEN,
        "invalid_signature",
    )
    .await;
}

#[tokio::test]
async fn malformed_xml_is_a_bad_request() {
    let app = spawn_app().await;
    for body in [
        "",
        "not xml",
        "<xml><FromUserName>x</xml>",
        "<xml><a>",
        "<notxml/>",
    ] {
        let response = app.post_callback(&signed_query(SANDBOX_TOKEN), body).await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_message").await;
    }
}

#[tokio::test]
async fn a_repeated_field_is_refused() {
    let app = spawn_app().await;
    let qr = app.create_qr().await;
    // Read as one string, the two openids would be "oVictim" + "oAttacker"; read as either
    // one, a proxy or WAF that reads the other would disagree with us about who scanned.
    let body = format!(
        "<xml><ToUserName><![CDATA[gh_sandbox]]></ToUserName><FromUserName><![CDATA[oVictim]]></FromUserName>\
         <FromUserName><![CDATA[oAttacker]]></FromUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType>\
         <Event><![CDATA[SCAN]]></Event><EventKey><![CDATA[{}]]></EventKey></xml>",
        unix_now(),
        qr.event_key()
    );
    let response = app.post_callback(&signed_query(SANDBOX_TOKEN), body).await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_message").await;
    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "waiting");
}

#[tokio::test]
async fn doctype_and_entities_are_refused() {
    let app = spawn_app().await;
    let bodies = [
        "<!DOCTYPE xml [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><xml><FromUserName>&xxe;</FromUserName></xml>",
        "<!DOCTYPE xml [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">]><xml><Content>&b;</Content></xml>",
        "<xml><FromUserName>&xxe;</FromUserName></xml>",
    ];
    for body in bodies {
        let response = app.post_callback(&signed_query(SANDBOX_TOKEN), body).await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_message").await;
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let app = spawn_app().await;
    let body = format!("<xml><Content>{}</Content></xml>", "a".repeat(70 * 1024));
    let response = app.post_callback(&signed_query(SANDBOX_TOKEN), body).await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    // The server is still fine.
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn foreign_event_keys_and_other_messages_are_acknowledged_and_ignored() {
    let app = spawn_app().await;
    let bodies = [
        event_xml("oSomeone", unix_now(), "subscribe", ""),
        event_xml("oSomeone", unix_now(), "subscribe", "last_trade_no_4200001234"),
        event_xml("oSomeone", unix_now(), "SCAN", "12345"),
        event_xml("oSomeone", unix_now(), "CLICK", "MENU_1"),
        "<xml><FromUserName>oSomeone</FromUserName><MsgType>text</MsgType><Content>hi</Content><MsgId>1</MsgId></xml>".into(),
    ];
    for body in bodies {
        let response = app
            .post_callback(&signed_query(SANDBOX_TOKEN), body.clone())
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{body}");
        assert_eq!(response.text().await.unwrap(), "success", "{body}");
    }
}

#[tokio::test]
async fn a_scan_of_an_expired_or_unknown_scene_tells_the_user() {
    let app = spawn_app().await;
    let body = event_xml(
        "oLate",
        unix_now(),
        "SCAN",
        &format!("{SCENE_PREFIX}AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    );
    let response = app.post_callback(&signed_query(SANDBOX_TOKEN), body).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("二维码已过期"));
}

#[tokio::test]
async fn event_names_are_matched_in_any_case() {
    let app = spawn_app().await;
    let qr = app.create_qr().await;
    let body = event_xml("oLowercase", unix_now(), "scan", &qr.event_key());
    let response = app.post_callback(&signed_query(SANDBOX_TOKEN), body).await;
    assert!(response.text().await.unwrap().contains("手机号"));
    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "need_bind");
}

#[tokio::test]
async fn a_redelivered_event_changes_nothing() {
    let app = spawn_app().await;
    let qr = app.create_qr().await;
    let created = unix_now();
    let first = app
        .scan_at(&qr.ticket, "oRetried", true, Some(created))
        .await;
    assert!(first["reply"].as_str().is_some(), "{first}");
    // WeChat did not hear us in time and sends the very same event again.
    let again = app
        .scan_at(&qr.ticket, "oRetried", true, Some(created))
        .await;
    assert_eq!(again["status"], 200);
    assert_eq!(again["reply"], Value::Null, "{again}");
    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "need_bind");

    // The same for an unsubscribe: a bind between the two deliveries survives the replay.
    let token = app.sign_up("oFlaky", "13800000020").await;
    let unsubscribed_at = unix_now();
    app.unsubscribe("oFlaky", Some(unsubscribed_at)).await;
    assert_eq!(app.me(&token).await.status(), StatusCode::UNAUTHORIZED);
    let token = app.sign_up("oFlaky", "13800000020").await;
    app.unsubscribe("oFlaky", Some(unsubscribed_at)).await;
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
}

/// In plaintext mode the signature covers no part of the body, and the query string of every
/// push is in the access logs of every proxy in front of us.
#[tokio::test]
async fn a_captured_query_string_takes_no_other_body() {
    let app = spawn_app().await;
    let token = app.sign_up("oVictim", "13800000023").await;
    // WeChat delivers the victim's text; its query string ends up in a log.
    let captured = signed_query(SANDBOX_TOKEN);
    let genuine = text_xml("oVictim", unix_now(), "hello", 4242);
    let response = app.post_callback(&captured, genuine.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);

    // Whoever reads the log posts other bodies under it: an unfollow, a scan of their scene.
    let unfollow = event_xml("oVictim", unix_now(), "unsubscribe", "");
    let refused = app.post_callback(&captured, unfollow).await;
    assert_error(refused, StatusCode::FORBIDDEN, "replayed_signature").await;
    let qr = app.create_qr().await;
    let scan = event_xml("oVictim", unix_now(), "SCAN", &qr.event_key());
    let refused = app.post_callback(&captured, scan).await;
    assert_error(refused, StatusCode::FORBIDDEN, "replayed_signature").await;
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "waiting");
    app.assert_metric(
        "wxlogin_callback_events_total{type=\"invalid\",outcome=\"replayed_signature\"}",
        2,
    )
    .await;

    // The very same request again is WeChat redelivering it: acknowledged, nothing done.
    let again = app.post_callback(&captured, genuine).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.text().await.unwrap(), "success");
    app.assert_metric(
        "wxlogin_callback_events_total{type=\"text\",outcome=\"redelivery\"}",
        1,
    )
    .await;
}

#[tokio::test]
async fn a_late_unsubscribe_does_not_undo_a_newer_bind() {
    let app = spawn_app().await;
    let token = app.sign_up("oComeback", "13800000021").await;
    // An unsubscribe created an hour ago, delivered only now (a distinct delivery, not a retry).
    app.unsubscribe("oComeback", Some(unix_now() - 3600)).await;
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
}

/// WeChat delivers a user's SCAN after the unsubscribe they sent after it (a retry, another
/// connection): the scan was overtaken, and nobody gets in through it, neither logged in (the
/// binding is gone) nor asked to bind a phone for an openid that no longer follows.
#[tokio::test]
async fn a_scan_delivered_after_the_unsubscribe_that_followed_it_lets_nobody_in() {
    let app = spawn_app().await;
    app.sign_up("oGone", "13800000023").await;
    let qr = app.create_qr().await;
    // Later than the follow `sign_up` made now, in WeChat's clock.
    let (scanned, unfollowed) = (unix_now() + 10, unix_now() + 20);
    app.unsubscribe("oGone", Some(unfollowed)).await;
    app.scan_at(&qr.ticket, "oGone", false, Some(scanned)).await;
    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "waiting", "{status}");
    app.assert_metric(
        "wxlogin_callback_events_total{type=\"scan\",outcome=\"overtaken\"}",
        1,
    )
    .await;

    // Following again later, by scanning: a new follow after the unfollow, let in as usual.
    app.scan_at(&qr.ticket, "oGone", true, Some(unfollowed + 60))
        .await;
    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "need_bind", "{status}");
}

#[tokio::test]
async fn unsubscribing_unbinds_and_revokes_every_session() {
    let app = spawn_app().await;
    let first = app.sign_up("oLeaving", "13800000022").await;
    let second = app.scan_in("oLeaving").await;
    app.unsubscribe("oLeaving", None).await;
    for token in [&first, &second] {
        assert_error(
            app.me(token).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
    // Following again, the next scan needs a bind, and the phone is free again.
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, "oLeaving", true).await;
    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "need_bind");
    app.sign_up("oSomeoneElse", "13800000022").await;
}
