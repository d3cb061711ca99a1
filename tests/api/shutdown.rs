//! SIGTERM: stop accepting, answer held long-polls, flush, exit 0.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn sigterm_answers_held_long_polls_and_exits_cleanly() {
    let mut app = spawn_app().await;
    let token = app.sign_up("oStaying", "13800000060").await;
    let waiting = app.create_qr().await;
    let scanned = app.create_qr().await;
    app.scan(&scanned.ticket, "oHalfway", true).await;

    let polls: Vec<_> = [&waiting, &scanned]
        .iter()
        .map(|qr| {
            let request = app
                .client
                .get(app.url(&format!("/api/qrcode/{}/status?wait=30", qr.scene_id)));
            tokio::spawn(async move { request.send().await })
        })
        .collect();
    // Let both polls reach the server and start waiting.
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let status = app.terminate().await;
    assert!(status.success(), "exit status {status:?}");
    let mut states = Vec::new();
    for poll in polls {
        let response = poll.await.unwrap().expect("the held poll was answered");
        assert_eq!(response.status(), StatusCode::OK);
        states.push(response.json::<Value>().await.unwrap()["state"].clone());
    }
    assert_eq!(states, ["waiting", "need_bind"]);

    // Everything answered before the stop is on disk.
    app.start_again();
    let me: Value = app.me(&token).await.json().await.unwrap();
    assert_eq!(me["phone"], "13800000060");
}
