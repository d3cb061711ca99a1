//! Moving a node from sled to PostgreSQL: `wxlogin migrate --to postgres://…` copies a stopped
//! node's store and OpenID Connect secrets, and a node started on the database goes on with
//! the same users, sessions, tokens and login log; `wxlogin restore` loads a backup there too.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::Value;
use wxlogin_storage::test_server::TestServer;

use crate::helpers::{assert_error, run_command, spawn_app_on, ADMIN_TOKEN};
use crate::oidc::{fresh_tokens, provider_with, userinfo, write_clients, SHOP_RP};

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn a_sled_node_migrated_to_postgres_keeps_its_users_sessions_tokens_and_login_log() {
    let mut old = provider_with(&[("WXLOGIN_ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    let session = old.sign_up("oMoved", "13800000240").await;
    let scanned = old.scan_in("oMoved").await;
    // An OpenID Connect login: an access token, a consent, a pairwise sub, signed ID tokens.
    let (_, access, sub) = fresh_tokens(&old, SHOP_RP, &scanned).await;
    let jwks: Value = old.get("/oauth/jwks").await.json().await.unwrap();
    let logins: Value = old
        .admin_get("/admin/logins?openid=oMoved")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(logins["logins"].as_array().unwrap().len(), 2, "{logins}");
    old.stop();

    let server = TestServer::start();
    let url = server.new_database().await;
    let source = old.data_dir.path().display().to_string();
    let migrate = || run_command(&["migrate", "--to", &url], &[("WXLOGIN_DATA_DIR", &source)]);
    let (status, stdout, stderr) = migrate();
    assert!(status.success(), "{stderr}");
    for copied in [
        "1 bindings",
        "2 sessions",
        "2 logins",
        "1 access tokens",
        "1 consents",
        "2 documents",
    ] {
        assert!(stdout.contains(copied), "{copied}: {stdout}");
    }
    assert!(
        !stdout.contains(&url),
        "the URL may hold a password: {stdout}"
    );
    // A second run finds the database in use and copies nothing.
    let (status, _, stderr) = migrate();
    assert!(
        !status.success() && stderr.contains("empty one"),
        "{stderr}"
    );

    // A fresh data directory: whatever the node knows now comes from the database.
    let fresh = Arc::new(tempfile::tempdir().unwrap());
    let clients = write_clients(fresh.path());
    let new = spawn_app_on(
        fresh,
        &[
            ("WXLOGIN_DATABASE_URL", &url),
            ("WXLOGIN_ADMIN_TOKEN", ADMIN_TOKEN),
            ("WXLOGIN_OIDC_CLIENTS", &clients),
            ("WXLOGIN_DEFAULT_LANG", "en"),
        ],
    )
    .await;
    let me: Value = new.me(&session).await.json().await.unwrap();
    assert_eq!(me["openid"], "oMoved", "{me}");
    let moved: Value = new
        .admin_get("/admin/logins?openid=oMoved")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(moved["logins"], logins["logins"]);
    // The access token, the pairwise sub and the signing keys are the ones from before.
    let info: Value = userinfo(&new, &access).await.json().await.unwrap();
    assert_eq!(info["sub"], sub.as_str(), "{info}");
    let now: Value = new.get("/oauth/jwks").await.json().await.unwrap();
    assert_eq!(now, jwks);
    assert_eq!(fresh_tokens(&new, SHOP_RP, &session).await.2, sub);

    // The phone is still taken.
    let qr = new.create_qr().await;
    new.scan(&qr.ticket, "oSomeoneElse", true).await;
    new.request_code(&qr.scene_id, "13800000240").await;
    let code = new.sms_code("13800000240").await;
    assert_error(
        new.bind(&qr.scene_id, "13800000240", &code).await,
        StatusCode::CONFLICT,
        "phone_taken",
    )
    .await;
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn a_backup_restores_into_an_empty_postgres_database() {
    let mut old = provider_with(&[("WXLOGIN_ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    old.sign_up("oBackedUp", "13800000241").await;
    let backup = old.admin_get("/admin/backup").await.text().await.unwrap();
    old.stop();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &backup).unwrap();

    let server = TestServer::start();
    let url = server.new_database().await;
    let restore = || {
        run_command(
            &["restore", file.path().to_str().unwrap()],
            &[("WXLOGIN_DATABASE_URL", &url)],
        )
    };
    let (status, stdout, stderr) = restore();
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains("restored 1 bindings into the database"),
        "{stdout}"
    );
    let (status, _, stderr) = restore();
    assert!(!status.success() && stderr.contains("empty"), "{stderr}");

    let new = spawn_app_on(
        Arc::new(tempfile::tempdir().unwrap()),
        &[("WXLOGIN_DATABASE_URL", &url)],
    )
    .await;
    // Bound already: a scan logs straight in.
    let token = new.scan_in("oBackedUp").await;
    assert_eq!(new.me(&token).await.status(), StatusCode::OK);
}
