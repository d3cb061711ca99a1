//! The admin API, and backups that round-trip through `wxlogin restore`.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    assert_error, run_command, spawn_app, spawn_app_on, spawn_app_with, TestApp, ADMIN_TOKEN,
};

const ADMIN: &str = ADMIN_TOKEN;

async fn admin_app() -> TestApp {
    spawn_app_with(&[("WXLOGIN_ADMIN_TOKEN", ADMIN)]).await
}

async fn admin_get(app: &TestApp, path: &str) -> reqwest::Response {
    app.admin_get(path).await
}

#[tokio::test]
async fn without_the_setting_there_is_no_admin_api() {
    let app = spawn_app().await;
    for path in [
        "/admin/bindings?phone=13800000090",
        "/admin/logins?openid=o",
        "/admin/backup",
    ] {
        assert_error(
            admin_get(&app, path).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }
}

#[tokio::test]
async fn the_admin_token_is_required() {
    let app = admin_app().await;
    assert_error(
        app.get("/admin/backup").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let wrong = app
        .client
        .get(app.url("/admin/logins"))
        .bearer_auth("an-admin-token-long-enough-0124")
        .send()
        .await
        .unwrap();
    // Refused before the missing query parameter is even looked at.
    assert_error(wrong, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn bindings_can_be_found_and_removed() {
    let app = admin_app().await;
    let token = app.sign_up("oAdmin", "13800000090").await;
    for query in [
        "phone=13800000090",
        "phone=%2B8613800000090",
        "openid=oAdmin",
    ] {
        let found: Value = admin_get(&app, &format!("/admin/bindings?{query}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            (found["openid"].as_str(), found["phone"].as_str()),
            (Some("oAdmin"), Some("13800000090")),
            "{query}"
        );
        assert!(found["bound_at"].as_u64().unwrap() > 0);
    }
    assert_error(
        admin_get(&app, "/admin/bindings?phone=13800000091").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_error(
        admin_get(&app, "/admin/bindings").await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;

    let delete = |openid: &str| {
        app.client
            .delete(app.url(&format!("/admin/bindings/{openid}")))
            .bearer_auth(ADMIN)
            .send()
    };
    assert_eq!(
        delete("oAdmin").await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_error(
        app.me(&token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_error(
        delete("oAdmin").await.unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    app.sign_up("oOther", "13800000090").await;
}

#[tokio::test]
async fn the_login_log_pages_newest_first() {
    let app = admin_app().await;
    app.sign_up("oFrequent", "13800000092").await;
    for _ in 0..3 {
        app.scan_in("oFrequent").await;
    }
    let first: Value = admin_get(&app, "/admin/logins?openid=oFrequent&limit=3")
        .await
        .json()
        .await
        .unwrap();
    let methods: Vec<_> = first["logins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["method"].clone())
        .collect();
    assert_eq!(methods, ["scan", "scan", "scan"]);
    assert_eq!(first["logins"][0]["client_ip"], "127.0.0.1");
    let next = first["next"].as_str().unwrap();
    let second: Value = admin_get(
        &app,
        &format!("/admin/logins?openid=oFrequent&limit=3&before={next}"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(second["logins"].as_array().unwrap().len(), 1);
    assert_eq!(second["logins"][0]["method"], "bind");
    assert_eq!(second["next"], Value::Null);
    let newest = first["logins"][0]["at_ms"].as_u64().unwrap();
    assert!(second["logins"][0]["at_ms"].as_u64().unwrap() <= newest);
    assert_error(
        admin_get(&app, "/admin/logins?openid=oFrequent&before=nonsense").await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
}

#[tokio::test]
async fn a_backup_restores_into_an_empty_data_directory() {
    let mut app = admin_app().await;
    for (openid, phone) in [
        ("oOne", "13800000093"),
        ("oTwo", "13800000094"),
        ("oThree", "13800000095"),
    ] {
        app.sign_up(openid, phone).await;
    }
    let response = admin_get(&app, "/admin/backup").await;
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let backup = response.text().await.unwrap();
    assert_eq!(backup.lines().count(), 3);
    let original: Value = admin_get(&app, "/admin/bindings?openid=oTwo")
        .await
        .json()
        .await
        .unwrap();
    app.stop();

    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &backup).unwrap();
    let target = Arc::new(tempfile::tempdir().unwrap());
    let data_dir = target.path().to_str().unwrap();
    let restore = |file: &str| run_command(&["restore", file], &[("WXLOGIN_DATA_DIR", data_dir)]);
    let (status, stdout, stderr) = restore(file.path().to_str().unwrap());
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("restored 3 bindings"), "{stdout}");
    // Restoring over data is refused.
    let (status, _, stderr) = restore(file.path().to_str().unwrap());
    assert!(!status.success() && stderr.contains("empty"), "{stderr}");

    let restored = spawn_app_on(target, &[("WXLOGIN_ADMIN_TOKEN", ADMIN)]).await;
    let found: Value = admin_get(&restored, "/admin/bindings?openid=oTwo")
        .await
        .json()
        .await
        .unwrap();
    // A restore leaves the unionid to be fetched again at the next scan.
    let mut original = original;
    original.as_object_mut().unwrap().remove("unionid");
    assert_eq!(found, original);
    // Restored users log in by scanning, without binding again.
    restored.scan_in("oThree").await;
}

#[test]
fn a_backup_with_a_phone_twice_is_refused_naming_the_line() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let lines = [
        r#"{"openid":"oA","phone":"13800000096","bound_at":1}"#,
        r#"{"openid":"oB","phone":"13800000096","bound_at":2}"#,
    ];
    std::fs::write(file.path(), lines.join("\n")).unwrap();
    let (status, _, stderr) = run_command(&["restore", file.path().to_str().unwrap()], &[]);
    assert!(!status.success());
    assert!(stderr.contains("line 2"), "{stderr}");
}
