//! What the server logs for operators: the settings in force at start, and one audit line per
//! login, bind, unbind, logout and OpenID Connect code exchange that names the user by a
//! shortened openid and never carries a secret.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, ADMIN_TOKEN};
use crate::oidc::{code, provider_with, redeem, SHOP, SHOP_RP};

/// The log's JSON lines whose message is `message`.
fn lines_saying(app: &TestApp, message: &str) -> Vec<Value> {
    app.log()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("every line is JSON"))
        .filter(|l| l["fields"]["message"] == message)
        .collect()
}

#[tokio::test]
async fn each_login_bind_unbind_logout_and_code_exchange_is_one_audit_line() {
    const ALICE: &str = "oAuditAlice000000000000A1ce";
    const BOB: &str = "oAuditBob00000000000000B0bb";
    let app = provider_with(&[
        ("WXLOGIN_LOG_FORMAT", "json"),
        ("WXLOGIN_ADMIN_TOKEN", ADMIN_TOKEN),
    ])
    .await;
    let first = app.sign_up(ALICE, "13800000201").await;
    let second = app.scan_in(ALICE).await;
    let (code, verifier) = code(&app, SHOP_RP, &second, "openid").await;
    let (status, tokens) = redeem(&app, SHOP_RP, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let logout = app
        .client
        .post(app.url("/api/logout"))
        .bearer_auth(&second)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    app.unsubscribe(ALICE, None).await;
    app.sign_up(BOB, "13800000202").await;
    let removed = app
        .client
        .delete(app.url(&format!("/admin/bindings/{BOB}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    app.wait_for_log("by\":\"admin").await;

    let alice = "…00A1ce";
    let bob = "…00B0bb";
    let fields = |message: &str| -> Vec<Value> {
        lines_saying(&app, message)
            .into_iter()
            .map(|l| l["fields"].clone())
            .collect()
    };
    let logins = fields("audit: login");
    let users_and_paths: Vec<(&str, &str)> = logins
        .iter()
        .map(|f| (f["user"].as_str().unwrap(), f["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        users_and_paths,
        [(alice, "bind"), (alice, "scan"), (bob, "bind")]
    );
    let binds = fields("audit: bind");
    assert_eq!(binds.len(), 2, "{binds:?}");
    assert_eq!(binds[0]["user"], alice);
    assert_eq!(binds[0]["client_ip"], "127.0.0.1");
    let exchanges = fields("audit: code exchange");
    assert_eq!(exchanges.len(), 1, "{exchanges:?}");
    assert_eq!(
        (&exchanges[0]["user"], &exchanges[0]["client"]),
        (&alice.into(), &SHOP.into())
    );
    let logouts = fields("audit: logout");
    assert_eq!(logouts.len(), 1, "{logouts:?}");
    assert_eq!(
        (&logouts[0]["user"], &logouts[0]["client"]),
        (&alice.into(), &"-".into())
    );
    let unbinds: Vec<(String, String)> = fields("audit: unbind")
        .iter()
        .map(|f| (f["user"].to_string(), f["by"].to_string()))
        .collect();
    assert_eq!(
        unbinds,
        [
            (format!("\"{alice}\""), "\"unsubscribe\"".to_owned()),
            (format!("\"{bob}\""), "\"admin\"".to_owned()),
        ]
    );

    let log = app.log();
    let secrets = [
        ALICE,
        BOB,
        &first,
        &second,
        &code,
        tokens["access_token"].as_str().unwrap(),
        tokens["id_token"].as_str().unwrap(),
    ];
    for secret in secrets {
        assert!(!log.contains(secret), "{secret} is in the log:\n{log}");
    }
}

#[tokio::test]
async fn the_start_line_says_which_settings_are_in_force() {
    let app = provider_with(&[
        ("WXLOGIN_LOG_FORMAT", "json"),
        ("WXLOGIN_LOGIN_MODE", "code"),
    ])
    .await;
    app.wait_for_log("wxlogin started").await;
    let started = lines_saying(&app, "wxlogin started");
    let fields = &started[0]["fields"];
    assert_eq!(fields["mode"], "sandbox");
    assert_eq!(fields["login_mode"], "code");
    assert_eq!(fields["confirm"], false);
    assert_eq!(fields["callback"], "plaintext");
    assert_eq!(
        fields["oidc_clients"],
        "blog,shop,spa,spring,wx-rp_1.0~%+: é"
    );
    assert_eq!(fields["sms"], "sandbox phone");
    assert_eq!(fields["admin_api"], false);
    let storage = fields["storage"].as_str().unwrap();
    assert_eq!(
        storage,
        format!("sled in {}", app.data_dir.path().display()),
        "{fields}"
    );
}
