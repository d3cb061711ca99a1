//! A bad setting stops the service at once, naming the setting; so does a sandbox start where a
//! real deployment shows.

use std::process::ExitStatus;
use std::sync::Arc;

use reqwest::StatusCode;

use crate::helpers::{run_command, run_to_exit, spawn_app_on, spawn_app_with, REAL};
use crate::oidc::write_clients;

#[test]
fn misconfiguration_exits_naming_the_setting() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("WXLOGIN_APPID", "wx1"), ("WXLOGIN_TOKEN", "t")],
            "WXLOGIN_APPSECRET",
        ),
        (
            &[("WXLOGIN_APPID", "wx1"), ("WXLOGIN_APPSECRET", "s")],
            "WXLOGIN_TOKEN",
        ),
        (
            &[("WXLOGIN_SCENE_TTL_SECS", "five minutes")],
            "WXLOGIN_SCENE_TTL_SECS",
        ),
        (&[("WXLOGIN_BIND", "not an address")], "WXLOGIN_BIND"),
        (&[("WXLOGIN_SUBJECT", "unionid")], "WXLOGIN_SUBJECT"),
        (
            &[("WXLOGIN_AES_KEY", "only-twenty-characters")],
            "WXLOGIN_AES_KEY",
        ),
        (
            &[("WXLOGIN_WECHAT_API", "http://127.0.0.1:1")],
            "WXLOGIN_APPID",
        ),
        // A provider missing its settings, or a provider setting with no provider.
        (
            &[("WXLOGIN_SMS_PROVIDER", "aliyun")],
            "WXLOGIN_SMS_ACCESS_KEY_ID",
        ),
        (
            &[
                ("WXLOGIN_SMS_PROVIDER", "tencent"),
                ("WXLOGIN_SMS_ACCESS_KEY_ID", "id"),
                ("WXLOGIN_SMS_ACCESS_KEY_SECRET", "secret"),
                ("WXLOGIN_SMS_SIGN_NAME", "sign"),
                ("WXLOGIN_SMS_TEMPLATE", "1"),
            ],
            "WXLOGIN_SMS_SDK_APP_ID",
        ),
        (&[("WXLOGIN_SMS_TEMPLATE", "SMS_1")], "WXLOGIN_SMS_TEMPLATE"),
        (
            &[("WXLOGIN_UPSTREAM_URL", "ftp://account.example/wechat")],
            "WXLOGIN_UPSTREAM_URL",
        ),
        (
            &[
                ("WXLOGIN_UPSTREAM_URL", "http://127.0.0.1:9/wechat"),
                ("WXLOGIN_UPSTREAM_TIMEOUT_MS", "5000"),
            ],
            "WXLOGIN_UPSTREAM_TIMEOUT_MS",
        ),
        (&[("WXLOGIN_SCENE_PREFIX", "登录:")], "WXLOGIN_SCENE_PREFIX"),
        // The database's settings: a pool out of range, or either without a database.
        (
            &[
                (
                    "WXLOGIN_DATABASE_URL",
                    "postgres:///wxlogin?host=/nonexistent",
                ),
                ("WXLOGIN_DATABASE_POOL", "0"),
            ],
            "WXLOGIN_DATABASE_POOL",
        ),
        (
            &[
                (
                    "WXLOGIN_DATABASE_URL",
                    "postgres:///wxlogin?host=/nonexistent",
                ),
                ("WXLOGIN_DATABASE_POOL", "1001"),
            ],
            "WXLOGIN_DATABASE_POOL",
        ),
        (&[("WXLOGIN_DATABASE_POOL", "8")], "WXLOGIN_DATABASE_POOL"),
        (
            &[("WXLOGIN_DATABASE_CA", "/etc/ssl/certs/ca-certificates.crt")],
            "WXLOGIN_DATABASE_CA",
        ),
    ];
    for (env, setting) in cases {
        let (status, stderr) = run_to_exit(env);
        assert!(!status.success(), "{env:?} started");
        assert!(stderr.contains(setting), "{env:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
}

#[test]
fn a_port_in_use_exits_naming_the_setting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, stderr) = run_to_exit(&[("WXLOGIN_BIND", &addr)]);
    assert!(!status.success());
    assert!(stderr.contains("WXLOGIN_BIND"), "{stderr}");
}

/// Exited 2 (a setting to fix) with one line that contains each of `needles`.
fn assert_refused(status: ExitStatus, stderr: &str, needles: &[&str]) {
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "no {needle:?} in: {stderr}");
    }
}

#[test]
fn an_unknown_variable_stops_every_mode_naming_the_nearest_setting() {
    for mode in [&[][..], &REAL[..]] {
        let env = [mode, &[("WXLOGIN_APP_ID", "wx0000000000000000")]].concat();
        let (status, stderr) = run_to_exit(&env);
        assert_refused(
            status,
            &stderr,
            &["WXLOGIN_APP_ID", "did you mean WXLOGIN_APPID?"],
        );
    }
}

#[test]
fn the_sandbox_refuses_to_start_with_a_real_deployments_settings() {
    for sign in [
        ("WXLOGIN_APPSECRET", "secret"),
        ("WXLOGIN_WECHAT_API", "https://api.weixin.qq.com"),
        (
            "WXLOGIN_ACCOUNT_QR_URL",
            "https://example.com/account-qr.jpg",
        ),
        ("WXLOGIN_PUBLIC_URL", "https://login.example.com"),
        // Set but empty: a compose file's unset substitution.
        ("WXLOGIN_APPID", ""),
        ("WXLOGIN_APPSECRET", ""),
    ] {
        let (status, stderr) = run_to_exit(&[sign]);
        assert_refused(status, &stderr, &["WXLOGIN_APPID", sign.0, "sandbox"]);
    }
}

#[tokio::test]
async fn the_sandbox_refuses_a_data_dir_that_real_mode_used() {
    let mut app = spawn_app_with(&REAL).await;
    app.stop();
    let dir = app.data_dir.path().display().to_string();
    let (status, _, stderr) = run_command(&[], &[("WXLOGIN_DATA_DIR", &dir)]);
    assert_refused(
        status,
        &stderr,
        &["WXLOGIN_DATA_DIR", &dir, "WXLOGIN_APPID"],
    );
    // Real mode keeps starting on it.
    app.start_again();
}

#[tokio::test]
async fn the_sandbox_still_tries_safe_mode_the_sms_webhook_and_openid_connect() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let clients = write_clients(dir.path());
    let app = spawn_app_on(
        dir,
        &[
            (
                "WXLOGIN_AES_KEY",
                "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
            ),
            ("WXLOGIN_SMS_WEBHOOK", "http://127.0.0.1:9/sms"),
            ("WXLOGIN_OIDC_CLIENTS", &clients),
            ("WXLOGIN_PUBLIC_URL", "http://192.168.1.2:8080"),
        ],
    )
    .await;
    for path in ["/sandbox/stats", "/.well-known/openid-configuration"] {
        assert_eq!(app.get(path).await.status(), StatusCode::OK, "{path}");
    }
    app.wait_for_log("SANDBOX MODE").await;
}

#[test]
fn a_duration_too_long_exits_naming_it_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    // With a provider, so that the code lifetime reaches the cache it sizes.
    let clients = write_clients(dir.path());
    for name in [
        "WXLOGIN_SCENE_TTL_SECS",
        "WXLOGIN_SESSION_TTL_SECS",
        "WXLOGIN_TIMESTAMP_WINDOW_SECS",
        "WXLOGIN_WECHAT_TIMEOUT_SECS",
        "WXLOGIN_SHUTDOWN_TIMEOUT_SECS",
        "WXLOGIN_OIDC_CODE_TTL_SECS",
        "WXLOGIN_CODE_GUESS_WINDOW_SECS",
    ] {
        let huge = u64::MAX.to_string();
        let (status, stderr) = run_to_exit(&[(name, &huge), ("WXLOGIN_OIDC_CLIENTS", &clients)]);
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_refused(status, &stderr, &[name]);
    }
}
