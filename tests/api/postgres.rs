//! The real binary on PostgreSQL (`WXLOGIN_DATABASE_URL`): the whole sandbox login, a restart
//! that keeps the binding, and a stopped database answering JSON 503 `storage_unavailable`,
//! after which the refused bind goes through with the same code; and a database keeping to
//! the mode it first served; and a database reached over TLS only when its CA is trusted.

use reqwest::StatusCode;
use serde_json::Value;
use wxlogin_storage::test_server::TestServer;

use crate::helpers::{assert_error, psql, run_to_exit, spawn_app_with, REAL};

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn a_login_on_postgres_survives_a_restart_and_a_stopped_database_answers_503() {
    let server = TestServer::start();
    let url = server.new_database().await;
    let mut app = spawn_app_with(&[("WXLOGIN_DATABASE_URL", &url)]).await;

    let token = app.sign_up("oPostgres", "13800000020").await;
    let me: Value = app.me(&token).await.json().await.unwrap();
    assert_eq!(me["openid"], "oPostgres", "{me}");
    let response = app
        .client
        .post(app.url("/api/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(app.me(&token).await.status(), StatusCode::UNAUTHORIZED);

    // The binding is in the database, not the process: a scan after a restart logs straight in.
    app.restart();
    let token = app.scan_in("oPostgres").await;
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);

    // Database gone between the scan and the bind: the bind is refused, as JSON, not lost.
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, "oLater", true).await;
    assert_eq!(
        app.request_code(&qr.scene_id, "13800000021").await.status(),
        StatusCode::ACCEPTED
    );
    let code = app.sms_code("13800000021").await;
    server.stop();
    assert_error(
        app.bind(&qr.scene_id, "13800000021", &code).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
    )
    .await;

    // A 503 says "try again": once the database is back, the same code binds (it was not used
    // up by the bind that could not be stored, and a new one would wait out the cooldown).
    server.start_again();
    app.wait_until_ready().await;
    let response = app.bind(&qr.scene_id, "13800000021", &code).await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// Exited 2 (a setting to fix), naming the database and each of `needles`.
fn assert_refused(env: &[(&str, &str)], needles: &[&str]) {
    let (status, stderr) = run_to_exit(env);
    assert_eq!(status.code(), Some(2), "{stderr}");
    for needle in ["WXLOGIN_DATABASE_URL"].iter().chain(needles) {
        assert!(stderr.contains(needle), "no {needle:?} in: {stderr}");
    }
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn a_database_serves_the_mode_it_first_served_whatever_data_directory_a_node_has() {
    let server = TestServer::start();
    // A real deployment's database: a sandbox node with a fresh data directory (a staging copy
    // of the settings, say) is refused, and logs nobody in as its users.
    let real = server.new_database().await;
    let mut node = spawn_app_with(&[&REAL[..], &[("WXLOGIN_DATABASE_URL", &real)]].concat()).await;
    node.stop();
    assert_refused(
        &[("WXLOGIN_DATABASE_URL", &real)],
        &["real account", "WXLOGIN_APPID"],
    );
    node.start_again();

    // A sandbox's database: real mode refuses its test users.
    let sandbox = server.new_database().await;
    let mut node = spawn_app_with(&[("WXLOGIN_DATABASE_URL", &sandbox)]).await;
    node.sign_up("oTester", "13800000039").await;
    node.stop();
    let env = [&REAL[..], &[("WXLOGIN_DATABASE_URL", &sandbox)]].concat();
    assert_refused(&env, &["sandbox's"]);
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn a_database_over_tls_is_reached_only_with_its_certificate_trusted() {
    let server = TestServer::start_tls();
    let socket_url = server.new_database().await;
    let name = socket_url
        .strip_prefix("postgres:///")
        .and_then(|rest| rest.split('?').next())
        .unwrap();
    let ca = server.ca_file();
    let ca = ca.to_str().unwrap();

    // The server's CA trusted: a whole login over TLS.
    let url = server.tls_url(name, "require");
    let app = spawn_app_with(&[("WXLOGIN_DATABASE_URL", &url), ("WXLOGIN_DATABASE_CA", ca)]).await;
    let token = app.sign_up("oOverTls", "13800000022").await;
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
    // It went over TCP with TLS (the socket would need none).
    let over_tls: u32 = psql(
        &socket_url,
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
         WHERE ssl AND datname = current_database()",
    )
    .trim()
    .parse()
    .unwrap();
    assert!(over_tls > 0, "no TLS connection from the node");

    // Not trusted (it is no public root): refused at the handshake, not fallen back.
    let (status, stderr) = run_to_exit(&[("WXLOGIN_DATABASE_URL", &url)]);
    assert!(
        !status.success(),
        "started without trusting the server: {stderr}"
    );
    assert!(stderr.contains("TLS handshake"), "{stderr}");
    // Without TLS: this server takes none over TCP.
    let plain = server.tls_url(name, "disable");
    let (status, stderr) = run_to_exit(&[
        ("WXLOGIN_DATABASE_URL", &plain),
        ("WXLOGIN_DATABASE_CA", ca),
    ]);
    assert!(!status.success(), "started without TLS: {stderr}");
    // PostgreSQL's own refusal: no pg_hba.conf line takes it without encryption.
    assert!(stderr.contains("no encryption"), "{stderr}");
}
