//! The live status stream (`GET /api/qrcode/{id}/events`): server-sent events.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{spawn_app, spawn_app_with, Events};

#[tokio::test]
async fn the_stream_delivers_each_change_as_the_long_poll_would() {
    let app = spawn_app().await;
    let qr = app.create_qr().await;
    let mut events = Events::open(&app, &qr.scene_id).await;
    let (_, polled) = app.status(&qr.scene_id, 0).await;
    assert_eq!(
        events.next().await.unwrap(),
        polled,
        "the same JSON as the long-poll"
    );
    assert_eq!(polled["state"], "waiting");

    let scanned_at = Instant::now();
    app.scan(&qr.ticket, "oStream", true).await;
    let need_bind = events.next().await.unwrap();
    assert_eq!(need_bind["state"], "need_bind");
    assert!(
        scanned_at.elapsed() < Duration::from_secs(1),
        "delivered at once"
    );

    let phone = "13800000301";
    app.request_code(&qr.scene_id, phone).await;
    let code = app.sms_code(phone).await;
    let bound: Value = app
        .bind(&qr.scene_id, phone, &code)
        .await
        .json()
        .await
        .unwrap();
    let logged_in = events.next().await.unwrap();
    assert_eq!(logged_in["state"], "logged_in");
    assert_eq!(logged_in["token"], bound["token"]);
    assert!(
        events.next().await.is_none(),
        "the stream ends after logged_in"
    );
}

#[tokio::test]
async fn the_stream_ends_with_expiry_and_knows_no_strangers() {
    let app = spawn_app_with(&[("WXLOGIN_SCENE_TTL_SECS", "1")]).await;
    let qr = app.create_qr().await;
    let mut events = Events::open(&app, &qr.scene_id).await;
    assert_eq!(events.next().await.unwrap()["state"], "waiting");
    assert_eq!(events.next().await.unwrap()["state"], "expired");
    assert!(events.next().await.is_none());

    // An ended scene answers its expiry at once; an unknown one is 404.
    let mut ended = Events::open(&app, &qr.scene_id).await;
    assert_eq!(ended.next().await.unwrap()["state"], "expired");
    assert!(ended.next().await.is_none());
    let unknown = app
        .get("/api/qrcode/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/events")
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn open_streams_do_not_hold_up_shutdown() {
    let mut app = spawn_app_with(&[("WXLOGIN_SHUTDOWN_TIMEOUT_SECS", "30")]).await;
    let qr = app.create_qr().await;
    let mut events = Events::open(&app, &qr.scene_id).await;
    assert_eq!(events.next().await.unwrap()["state"], "waiting");
    let asked = Instant::now();
    assert!(app.terminate().await.success());
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "took {:?}",
        asked.elapsed()
    );
    assert!(events.next().await.is_none());
}

#[tokio::test]
async fn a_quiet_stream_gets_a_heartbeat_comment() {
    let app = spawn_app().await;
    let qr = app.create_qr().await;
    let mut events = Events::open(&app, &qr.scene_id).await;
    assert_eq!(events.next().await.unwrap()["state"], "waiting");
    // The first event's bytes are consumed; the next bytes, 15 s on, are the comment.
    let chunk = tokio::time::timeout(Duration::from_secs(20), events.response.chunk())
        .await
        .expect("a heartbeat within 20 s")
        .unwrap()
        .expect("the stream is still open");
    let text = std::str::from_utf8(&chunk).unwrap();
    assert!(text.starts_with(':') && text.ends_with("\n\n"), "{text:?}");
}

#[tokio::test]
async fn the_stream_follows_a_confirmation_to_its_denial_and_ends() {
    let app = spawn_app_with(&[("WXLOGIN_CONFIRM", "number")]).await;
    let qr = app.create_qr().await;
    let mut events = Events::open(&app, &qr.scene_id).await;
    assert_eq!(events.next().await.unwrap()["state"], "waiting");
    app.scan(&qr.ticket, "oStreamed", false).await;
    let confirm = events.next().await.unwrap();
    assert_eq!(confirm["state"], "confirm", "{confirm}");
    assert!(confirm["confirm_number"].is_u64(), "{confirm}");
    app.text("oStreamed", "0").await;
    assert_eq!(events.next().await.unwrap()["state"], "denied");
    assert!(
        events.next().await.is_none(),
        "the stream ends after denied"
    );

    let mut ended = Events::open(&app, &qr.scene_id).await;
    assert_eq!(ended.next().await.unwrap()["state"], "denied");
    assert!(ended.next().await.is_none());
}
