//! The account's own server in front of wxlogin: login QR codes carry `WXLOGIN_SCENE_PREFIX`
//! in their `scene_str`, so that server can tell their scans by the `EventKey` alone and send
//! those raw pushes on to wxlogin's `/wechat`, returning wxlogin's answer. The sandbox pushes to
//! the account's server (`WXLOGIN_SANDBOX_PUSH_URL`) as WeChat would.

use reqwest::StatusCode;
use serde_json::Value;

use crate::account_server::AccountServer;
use crate::helpers::{event_xml, signed_query, spawn_app_with, unix_now, TestApp, SANDBOX_TOKEN};

/// The account's server, routing on `prefix`, and wxlogin behind it with `more` settings.
async fn behind_the_accounts_server(
    prefix: &str,
    more: &[(&str, &str)],
) -> (AccountServer, TestApp) {
    let account = AccountServer::start(&["--token", SANDBOX_TOKEN, "--forward-prefix", prefix]);
    let push_url = format!("{}/wechat", account.base);
    let env = [&[("WXLOGIN_SANDBOX_PUSH_URL", push_url.as_str())][..], more].concat();
    let app = spawn_app_with(&env).await;
    account.forward_to(&app.url("/wechat")).await;
    (account, app)
}

fn forwarded(seen: &[Value]) -> usize {
    seen.iter().filter(|push| push["forwarded"] == true).count()
}

#[tokio::test]
async fn the_accounts_server_forwards_login_scans_by_prefix_and_the_login_completes() {
    let (account, app) = behind_the_accounts_server("wxl_", &[]).await;
    // A new user: the subscribe scan goes WeChat → the account's server → wxlogin and back.
    let token = app.sign_up("oDownstream", "13800000080").await;
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
    // A returning one.
    app.scan_in("oDownstream").await;
    let seen = account.seen().await;
    assert_eq!(forwarded(&seen), 2, "{seen:?}");
    assert!(seen.iter().all(|push| push["signature_ok"] == true));
    // The account's own traffic stays with the account's server, which answers it itself.
    let delivery = app.text("oDownstream", "hello").await;
    assert_eq!(delivery["reply"], "the account's server got: hello");
    let delivery = app.follow("oSomeoneElse").await;
    assert_eq!(delivery["reply"], "the account's server got: subscribe");
    assert_eq!(forwarded(&account.seen().await), 2);
}

#[tokio::test]
async fn a_custom_prefix_names_the_scenes_and_only_prefixed_keys_are_logins() {
    let (account, app) =
        behind_the_accounts_server("shop-login_", &[("WXLOGIN_SCENE_PREFIX", "shop-login_")]).await;
    let qr = app.create_qr().await;
    let delivery = app.scan(&qr.ticket, "oPrefixed", true).await;
    assert!(
        delivery["reply"].as_str().unwrap().contains("手机号"),
        "{delivery}"
    );
    assert_eq!(forwarded(&account.seen().await), 1);
    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "need_bind", "{status}");

    // Straight to wxlogin: the bare scene id, or the default prefix, is no scan of this scene.
    let qr = app.create_qr().await;
    for key in [qr.scene_id.clone(), format!("wxl_{}", qr.scene_id)] {
        let body = event_xml("oBare", unix_now(), "SCAN", &key);
        let response = app.post_callback(&signed_query(SANDBOX_TOKEN), body).await;
        assert_eq!(response.text().await.unwrap(), "success", "{key}");
    }
    let (_, status) = app.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "waiting", "{status}");
}
