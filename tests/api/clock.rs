//! The wall clock steps back (an NTP correction, a VM restored from a snapshot): validity and
//! ordering must not hang on comparing times written before the step with times after it.
//! libfaketime (Debian `faketime`) moves the server's wall clock; its monotonic clock stays
//! real, as a real step leaves it.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    event_xml, signed_query, spawn_app, spawn_app_on, spawn_app_with, unix_now, TestApp,
    ADMIN_TOKEN, SANDBOX_TOKEN,
};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const ADMIN: &str = ADMIN_TOKEN;

/// The settings that start a server with its wall clock moved by `offset` (libfaketime's
/// syntax: `-3600`, `+200d`). Tests that use them are ignored without libfaketime
/// (`has_faketime`, build.rs).
fn moved_clock(offset: &'static str) -> [(&'static str, &'static str); 3] {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: apt-get install faketime"
    );
    [
        ("LD_PRELOAD", LIBFAKETIME),
        ("FAKETIME", offset),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ]
}

#[tokio::test]
#[cfg_attr(
    not(has_faketime),
    ignore = "needs libfaketime: apt-get install faketime"
)]
async fn a_user_bound_before_the_clock_stepped_back_logs_in_after_it() {
    let moved = moved_clock("-3600");
    let mut app = spawn_app().await;
    app.sign_up("oBeforeTheStep", "13800000201").await;
    app.stop();
    let stepped = spawn_app_on(app.data_dir.clone(), &moved).await;
    let token = stepped.scan_in("oBeforeTheStep").await;
    let me = stepped.me(&token).await;
    assert_eq!(me.status(), StatusCode::OK, "{}", stepped.log());
    // The step took: the session began "an hour ago", before the binding did.
    let me: Value = me.json().await.unwrap();
    let (logged_in, bound) = (me["logged_in_at"].as_u64(), me["bound_at"].as_u64());
    assert!(logged_in.unwrap() + 3000 < unix_now(), "{me}");
    assert!(logged_in < bound, "{me}");
}

/// Logins the admin API lists for `openid`.
async fn logins(app: &TestApp, openid: &str) -> usize {
    let page: Value = app
        .admin_get(&format!("/admin/logins?openid={openid}"))
        .await
        .json()
        .await
        .unwrap();
    page["logins"].as_array().unwrap().len()
}

#[tokio::test]
#[cfg_attr(
    not(has_faketime),
    ignore = "needs libfaketime: apt-get install faketime"
)]
async fn the_login_log_forgets_logins_past_its_retention() {
    let moved = moved_clock("+181d");
    let admin = [("WXLOGIN_ADMIN_TOKEN", ADMIN)];
    let mut app = spawn_app_with(&admin).await;
    app.sign_up("oOldLogin", "13800000202").await;
    assert_eq!(logins(&app, "oOldLogin").await, 1);
    app.stop();
    // 181 days on, with everything kept: still there.
    let keep = [&admin[..], &moved[..], &[("WXLOGIN_LOGIN_LOG_DAYS", "0")]].concat();
    let mut later = spawn_app_on(app.data_dir.clone(), &keep).await;
    later.wait_for_log("wxlogin started").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(logins(&later, "oOldLogin").await, 1);
    later.stop();
    // With the default 180 days, the purge at start deletes it.
    let default = [&admin[..], &moved[..]].concat();
    let later = spawn_app_on(app.data_dir.clone(), &default).await;
    later.wait_for_log("expired logins removed").await;
    assert_eq!(logins(&later, "oOldLogin").await, 0, "{}", later.log());
}

/// Bound while our clock ran 20 minutes fast, unfollowed after it was put right: WeChat's own
/// clock (this test's) orders the follow and the unfollow, so the unfollow unbinds. The pushes
/// come from the test, as WeChat would send them, not from the sandbox (which shares the
/// server's clock); the wider window lets the fast clock take WeChat's timestamps.
#[tokio::test]
#[cfg_attr(
    not(has_faketime),
    ignore = "needs libfaketime: apt-get install faketime"
)]
async fn an_unfollow_after_the_clock_stepped_back_unbinds() {
    let moved = moved_clock("+1200");
    let window = [("WXLOGIN_TIMESTAMP_WINDOW_SECS", "3600")];
    let mut fast = spawn_app_with(&[&moved[..], &window[..]].concat()).await;
    let qr = fast.create_qr().await;
    let follow = event_xml(
        "oStepped",
        unix_now(),
        "subscribe",
        &format!("qrscene_{}", qr.event_key()),
    );
    let pushed = fast
        .post_callback(&signed_query(SANDBOX_TOKEN), follow)
        .await;
    assert_eq!(pushed.status(), StatusCode::OK);
    fast.request_code(&qr.scene_id, "13800000203").await;
    let code = fast.sms_code("13800000203").await;
    let bound: Value = fast
        .bind(&qr.scene_id, "13800000203", &code)
        .await
        .json()
        .await
        .unwrap();
    let token = bound["token"].as_str().unwrap().to_owned();
    fast.stop();

    let fixed = spawn_app_on(fast.data_dir.clone(), &window).await;
    let unfollow = event_xml("oStepped", unix_now(), "unsubscribe", "");
    let pushed = fixed
        .post_callback(&signed_query(SANDBOX_TOKEN), unfollow)
        .await;
    assert_eq!(pushed.status(), StatusCode::OK);
    assert_eq!(fixed.me(&token).await.status(), StatusCode::UNAUTHORIZED);
}
