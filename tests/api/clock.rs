//! The wall clock steps back (an NTP correction, a VM restored from a snapshot): validity and
//! ordering must not hang on comparing times written before the step with times after it.
//! libfaketime (Debian `faketime`) moves the server's wall clock; its monotonic clock stays
//! real, as a real step leaves it.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{skip, spawn_app, spawn_app_on, unix_now};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

#[tokio::test]
async fn a_user_bound_before_the_clock_stepped_back_logs_in_after_it() {
    if !Path::new(LIBFAKETIME).exists() {
        skip(
            "clock::a_user_bound_before_the_clock_stepped_back_logs_in_after_it",
            "libfaketime is not installed",
            "apt-get install faketime",
        );
        return;
    }
    let mut app = spawn_app().await;
    app.sign_up("oBeforeTheStep", "13800000201").await;
    app.stop();
    let stepped = spawn_app_on(
        app.data_dir.clone(),
        &[
            ("LD_PRELOAD", LIBFAKETIME),
            ("FAKETIME", "-3600"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    )
    .await;
    let token = stepped.scan_in("oBeforeTheStep").await;
    let me = stepped.me(&token).await;
    assert_eq!(me.status(), StatusCode::OK, "{}", stepped.log());
    // The step took: the session began "an hour ago", before the binding did.
    let me: Value = me.json().await.unwrap();
    let (logged_in, bound) = (me["logged_in_at"].as_u64(), me["bound_at"].as_u64());
    assert!(logged_in.unwrap() + 3000 < unix_now(), "{me}");
    assert!(logged_in < bound, "{me}");
}
