//! What an operator sees: readiness, metrics, request ids, JSON logs.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, spawn_app_adjusted, spawn_app_with};

#[tokio::test]
async fn readiness_reads_the_token_state_and_recovers_on_its_own() {
    let app = spawn_app().await;
    // The first token is fetched at start, unasked.
    app.wait_until_ready().await;
    // WeChat refuses the token, then the fetch of a new one (a wrong IP whitelist, say).
    app.control(json!({"fail_next": [{"errcode": 40001}, {"errcode": 40164}]}))
        .await;
    assert_error(
        app.request_qr().await,
        StatusCode::SERVICE_UNAVAILABLE,
        "wechat_unavailable",
    )
    .await;
    let calls = app.sandbox_stats().await["api_calls"].clone();
    for _ in 0..10 {
        assert_error(
            app.get("/readyz").await,
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
        )
        .await;
    }
    assert_eq!(
        app.sandbox_stats().await["api_calls"],
        calls,
        "probes fetch nothing"
    );
    assert_eq!(
        app.get("/healthz").await.status(),
        StatusCode::OK,
        "alive all the same"
    );
    // After the backoff window the token actor tries again by itself, with no request.
    app.wait_until_ready().await;
    app.create_qr().await;
}

#[tokio::test]
async fn in_code_mode_readiness_does_not_need_wechat() {
    let real_account_down = [
        ("WXLOGIN_APPID", "wx0000000000000000"),
        ("WXLOGIN_APPSECRET", "secret"),
        ("WXLOGIN_TOKEN", "token"),
        // Nothing listens there: every call is a refused connection.
        ("WXLOGIN_WECHAT_API", "http://127.0.0.1:9"),
        ("WXLOGIN_ACCOUNT_QR_URL", "https://example.com/account.png"),
    ];
    let code =
        spawn_app_with(&[&real_account_down[..], &[("WXLOGIN_LOGIN_MODE", "code")]].concat()).await;
    let ready: Value = code.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    code.create_code_login().await;
    // QR codes (and `auto`, until it falls back) need the token.
    for mode in ["qrcode", "auto"] {
        let app =
            spawn_app_with(&[&real_account_down[..], &[("WXLOGIN_LOGIN_MODE", mode)]].concat())
                .await;
        assert_error(
            app.get("/readyz").await,
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
        )
        .await;
    }
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let app = spawn_app().await;
    app.sign_up("oCounted", "13800000080").await;
    app.scan_in("oCounted").await;
    app.unsubscribe("oCounted", None).await;
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    for line in [
        "wxlogin_live_scenes 2",
        "wxlogin_scenes_created_total 2",
        "wxlogin_scenes_expired_total 0",
        "wxlogin_logins_total{path=\"bind\",mode=\"qrcode\"} 1",
        "wxlogin_logins_total{path=\"scan\",mode=\"qrcode\"} 1",
        "wxlogin_binds_total 1",
        "wxlogin_unbinds_total 1",
        "wxlogin_callback_events_total{type=\"subscribe\",outcome=\"need_bind\"} 1",
        "wxlogin_callback_events_total{type=\"scan\",outcome=\"logged_in\"} 1",
        "wxlogin_callback_events_total{type=\"unsubscribe\",outcome=\"unbound\"} 1",
        "wxlogin_wechat_api_calls_total{endpoint=\"token\",errcode=\"0\"} 1",
        "wxlogin_wechat_api_calls_total{endpoint=\"qrcode_create\",errcode=\"0\"} 2",
        "wxlogin_token_refreshes_total 1",
        "wxlogin_http_request_duration_seconds_count{route=\"/api/qrcode\"} 2",
        "wxlogin_http_request_duration_seconds_bucket{route=\"/api/qrcode/{scene_id}/bind\",le=\"+Inf\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
}

#[tokio::test]
async fn rejected_pushes_are_counted() {
    let app = spawn_app().await;
    let response = app
        .post_callback("signature=x&timestamp=1&nonce=1", "<xml/>")
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains(
            "wxlogin_callback_events_total{type=\"invalid\",outcome=\"stale_timestamp\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let app = spawn_app().await;
    let ids: Vec<String> = [app.get("/healthz").await, app.get("/no/such/thing").await]
        .iter()
        .map(|r| r.headers()["x-request-id"].to_str().unwrap().to_owned())
        .collect();
    assert!(ids.iter().all(|id| id.len() == 16));
    assert_ne!(ids[0], ids[1]);
}

#[tokio::test]
async fn json_logs_carry_the_request_span() {
    let app = spawn_app_with(&[("WXLOGIN_LOG_FORMAT", "json")]).await;
    app.sign_up("oLogged", "13800000081").await;
    app.unsubscribe("oLogged", None).await;
    app.wait_for_log("audit: unbind").await;
    let log = app.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    let unsubscribed = lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m == "audit: unbind")
        })
        .expect("the unbind was logged");
    assert_eq!(unsubscribed["span"]["name"], "request");
    assert_eq!(unsubscribed["span"]["id"].as_str().map(str::len), Some(16));
}

#[tokio::test]
async fn the_open_file_limit_is_raised_to_the_hard_limit_at_start() {
    use std::os::unix::process::CommandExt;
    const SOFT: libc::rlim_t = 256;
    let app = spawn_app_adjusted(&[("WXLOGIN_LOG_FORMAT", "json")], |command| {
        // SAFETY: setrlimit is async-signal-safe; the child calls nothing else before exec.
        unsafe {
            command.pre_exec(|| {
                let mut limit = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
                limit.rlim_cur = SOFT.min(limit.rlim_max);
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
                Ok(())
            });
        }
    });
    app.wait_for_log("open-file limit").await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", app.pid())).unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<_> = line.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    assert_eq!(soft, hard, "{line}");
    if hard != SOFT.to_string() {
        let log = app.log();
        let raised: Value = log
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line["fields"]["message"] == "open-file limit raised to the hard limit")
            .unwrap_or_else(|| panic!("{log}"));
        assert_eq!(raised["fields"]["limit"].to_string(), hard, "{raised}");
        assert_eq!(raised["fields"]["before"], SOFT, "{raised}");
    }
}
