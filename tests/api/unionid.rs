//! unionid: fetched from WeChat's `user/info` after a bind or a scan, stored with the binding,
//! shown by `/api/me` and the admin API; a failing or slow `user/info` never holds up a login.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp, ADMIN_TOKEN};
use crate::oidc::Rp;

async fn me(app: &TestApp, token: &str) -> Value {
    let response = app.me(token).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// The user's unionid as `/api/me` shows it, once the background lookup has stored one
/// (at most 10 s).
async fn stored_unionid(app: &TestApp, token: &str) -> String {
    for _ in 0..200 {
        if let Some(unionid) = me(app, token).await["unionid"].as_str() {
            return unionid.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no unionid was stored:\n{}", app.log());
}

/// Waits until `outcome` lookups have been counted.
async fn lookups(app: &TestApp, outcome: &str, count: u64) {
    let line = format!("wxlogin_unionid_lookups_total{{outcome=\"{outcome}\"}} {count}");
    for _ in 0..200 {
        let metrics = app.get("/metrics").await.text().await.unwrap();
        if metrics.lines().any(|l| l == line) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never {line:?}:\n{}", app.log());
}

#[tokio::test]
async fn a_bind_stores_the_unionid_and_me_and_the_admin_api_show_it() {
    let app = spawn_app_with(&[("WXLOGIN_ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    let token = app.sign_up("oAlice", "13800000001").await;
    let unionid = stored_unionid(&app, &token).await;
    assert!(unionid.starts_with('u') && unionid.len() == 28, "{unionid}");
    let admin: Value = app
        .admin_get("/admin/bindings?openid=oAlice")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(admin["unionid"], unionid.as_str(), "{admin}");
    // Another user has another one; a later scan does not ask WeChat again.
    let bob = app.sign_up("oBob", "13800000002").await;
    assert_ne!(stored_unionid(&app, &bob).await, unionid);
    lookups(&app, "stored", 2).await;
    let again = app.scan_in("oAlice").await;
    assert_eq!(me(&app, &again).await["unionid"], unionid.as_str());
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        !metrics.contains("wxlogin_unionid_lookups_total{outcome=\"stored\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_account_without_open_platform_logs_in_with_no_unionid() {
    let app = spawn_app_with(&[]).await;
    app.control(json!({"open_platform": false})).await;
    let token = app.sign_up("oAlice", "13800000001").await;
    lookups(&app, "none", 1).await;
    assert_eq!(me(&app, &token).await["unionid"], Value::Null);
}

#[tokio::test]
async fn a_failing_user_info_fails_no_login_and_the_next_scan_fetches_it() {
    let app = spawn_app_with(&[]).await;
    app.wait_until_ready().await;
    // The next calls after the QR code: user/info refuses (the openid, then WeChat is busy).
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, "oAlice", true).await;
    assert_eq!(
        app.request_code(&qr.scene_id, "13800000001").await.status(),
        StatusCode::ACCEPTED
    );
    let code = app.sms_code("13800000001").await;
    app.control(json!({"fail_next": [{"errcode": 40003}]}))
        .await;
    let response = app.bind(&qr.scene_id, "13800000001", &code).await;
    assert_eq!(response.status(), StatusCode::OK);
    let token = response.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    lookups(&app, "failed", 1).await;
    assert_eq!(me(&app, &token).await["unionid"], Value::Null);
    // The next scan of the binding that lacks it asks again.
    let again = app.scan_in("oAlice").await;
    assert!(!stored_unionid(&app, &again).await.is_empty());
}

#[tokio::test]
async fn a_slow_user_info_does_not_hold_up_the_bind() {
    let app = spawn_app_with(&[]).await;
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, "oAlice", true).await;
    assert_eq!(
        app.request_code(&qr.scene_id, "13800000001").await.status(),
        StatusCode::ACCEPTED
    );
    let code = app.sms_code("13800000001").await;
    // user/info would take far longer than the client waits for the bind's answer.
    app.control(json!({"delay_ms": 20_000})).await;
    let bind = app
        .client
        .post(app.url(&format!("/api/qrcode/{}/bind", qr.scene_id)))
        .json(&json!({"phone": "13800000001", "code": code}))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("the bind answers without waiting for user/info");
    assert_eq!(bind.status(), StatusCode::OK);
    let token = bind.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(me(&app, &token).await["unionid"], Value::Null);
}

/// With the `unionid` scope a site gets the `unionid` claim in the ID token and from userinfo;
/// without it, neither; discovery lists both the scope and the claim.
#[tokio::test]
async fn the_unionid_scope_adds_the_unionid_claim_and_only_it_does() {
    use crate::oidc::{code, provider, redeem, userinfo, SHOP_RP};
    use crate::oidc_authorize::claims;
    let app = provider().await;
    let session = app.sign_up("oUnion", "13800000011").await;
    let unionid = stored_unionid(&app, &session).await;
    let discovery: Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert!(discovery["scopes_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("unionid")));
    assert!(discovery["claims_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("unionid")));
    for (scope, expected) in [
        ("openid unionid", json!(unionid)),
        ("openid phone", Value::Null),
    ] {
        let (code, verifier) = code(&app, SHOP_RP, &session, scope).await;
        let (status, tokens) = redeem(&app, SHOP_RP, &code, &verifier).await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        let id_token = claims(tokens["id_token"].as_str().unwrap());
        assert_eq!(id_token["unionid"], expected, "{scope}: {id_token}");
        let info: Value = userinfo(&app, tokens["access_token"].as_str().unwrap())
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(info["unionid"], expected, "{scope}: {info}");
    }
}

/// `WXLOGIN_SUBJECT=unionid`: the `sub` is derived from the unionid (so deployments sharing the
/// pairwise secret give a user one `sub` across accounts), computed here independently; a user
/// WeChat tells no unionid of is refused (`access_denied`), never given an openid `sub`.
#[tokio::test]
async fn unionid_subjects_derive_from_the_unionid_and_a_user_without_one_is_refused() {
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    use crate::oidc::{code, provider_with, redeem, SHOP_RP};
    use crate::oidc_authorize::claims;
    let app = provider_with(&[("WXLOGIN_SUBJECT", "unionid")]).await;
    let session = app.sign_up("oUnionSub", "13800000012").await;
    let unionid = stored_unionid(&app, &session).await;
    let (code, verifier) = code(&app, SHOP_RP, &session, "openid").await;
    let (status, tokens) = redeem(&app, SHOP_RP, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let secret = std::fs::read(app.data_dir.path().join("oidc/pairwise-secret")).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&secret).unwrap();
    mac.update(format!("{}\0unionid\0{unionid}", SHOP_RP.id).as_bytes());
    let expected = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        mac.finalize().into_bytes(),
    );
    assert_eq!(
        claims(tokens["id_token"].as_str().unwrap())["sub"],
        expected
    );

    // Without an Open Platform account there is no unionid, so no subject.
    app.control(json!({"open_platform": false})).await;
    let other = app.sign_up("oNoUnion", "13800000013").await;
    lookups(&app, "none", 1).await;
    assert_refused(&app, SHOP_RP, &other, "openid", "access_denied").await;
}

/// The unionid joins a user across the operator's apps, which the pairwise `sub` keeps apart:
/// only a client registered with `unionid = true` may ask for it.
#[tokio::test]
async fn a_client_not_registered_for_the_unionid_scope_is_refused_it() {
    use crate::oidc::{provider, BLOG_RP};
    let app = provider().await;
    let session = app.sign_up("oNotForBlog", "13800000014").await;
    assert_refused(&app, BLOG_RP, &session, "openid unionid", "invalid_scope").await;
}

/// `/oauth/authorize` for `rp` and `scope` in the browser holding `session` (consenting if
/// asked) goes back to the client with `error` and no code.
async fn assert_refused(app: &TestApp, rp: Rp, session: &str, scope: &str, error: &str) {
    use crate::oidc::{authorize, param, pkce, redirected};
    let (_, challenge) = pkce();
    let response = authorize(
        app,
        Some(session),
        &[
            ("response_type", "code"),
            ("client_id", rp.id),
            ("redirect_uri", rp.callback),
            ("scope", scope),
            ("state", "st"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    let response = crate::oidc_authorize::allow_if_asked(app, session, response).await;
    let (target, params) = redirected(&response);
    assert_eq!(target, rp.callback);
    assert_eq!(param(&params, "error"), Some(error), "{params:?}");
    assert_eq!(param(&params, "code"), None);
}
