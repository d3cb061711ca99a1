//! OpenID Connect across nodes: two binaries on one PostgreSQL database are two nodes, and a
//! relying party may meet a different one at each step: authorize on A, redeem at B, fetch the
//! JWKS from either, rotate the keys once for both.

use std::time::{Duration, Instant};

use reqwest::{header, StatusCode};
use serde_json::Value;
use wxlogin_storage::test_server::TestServer;

use crate::helpers::{run_command, TestApp};
use crate::oidc::{
    alg_and_kid, assert_oauth_error, code, fetch_jwks, http, provider_with, redeem, userinfo,
    verify_with, SHOP_RP, SPRING_RP,
};
use crate::oidc_token::introspect;

/// Two nodes on a fresh database of `server`; and its URL.
async fn two_nodes(server: &TestServer) -> (TestApp, TestApp, String) {
    let url = server.new_database().await;
    let a = provider_with(&[("WXLOGIN_DATABASE_URL", &url)]).await;
    let b = provider_with(&[("WXLOGIN_DATABASE_URL", &url)]).await;
    (a, b, url)
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn a_code_from_one_node_is_redeemed_once_at_another_and_dies_with_a_logout() {
    let server = TestServer::start();
    let (a, b, _) = two_nodes(&server).await;
    let session = a.sign_up("oCluster", "13800000230").await;

    // Issued by A, redeemed at B; the access token works on A too, with one `sub` everywhere.
    let (issued, verifier) = code(&a, SHOP_RP, &session, "openid phone").await;
    let (status, tokens) = redeem(&b, SHOP_RP, &issued, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    let mut subs = Vec::new();
    for node in [&a, &b] {
        let info: Value = userinfo(node, access).await.json().await.unwrap();
        assert_eq!(info["phone_number"], "+8613800000230", "{info}");
        subs.push(info["sub"].as_str().unwrap().to_owned());
        let (status, described) = introspect(node, SHOP_RP, access).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(described["active"], true, "{described}");
    }
    assert_eq!(subs[0], subs[1], "one pairwise secret for both nodes");
    // (Each node's issuer is its own address here; a cluster sets one WXLOGIN_PUBLIC_URL.)
    assert_eq!(
        verify_with(
            &b,
            SHOP_RP,
            fetch_jwks(&a).await,
            tokens["id_token"].as_str().unwrap()
        ),
        subs[0],
        "B's ID token verifies with A's JWKS"
    );

    // A second use, at either node, is refused, and revokes the token the first one gave.
    for node in [&a, &b] {
        assert_oauth_error(
            redeem(node, SHOP_RP, &issued, &verifier).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        );
    }
    assert_eq!(
        userinfo(&b, access).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Two redemptions racing on two nodes are a code used twice: at most one answers with
    // tokens, and no token from it stays live.
    let (issued, verifier) = code(&a, SHOP_RP, &session, "openid").await;
    let (first, second) = tokio::join!(
        redeem(&a, SHOP_RP, &issued, &verifier),
        redeem(&b, SHOP_RP, &issued, &verifier)
    );
    let granted: Vec<_> = [&first, &second]
        .into_iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .collect();
    assert!(granted.len() <= 1, "{first:?} {second:?}");
    for (_, tokens) in granted {
        let access = tokens["access_token"].as_str().unwrap();
        assert_eq!(
            userinfo(&a, access).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }

    // A code issued on A before a logout on A is refused on B.
    let (pending, verifier) = code(&a, SHOP_RP, &session, "openid").await;
    let logout = http()
        .post(a.url("/api/logout"))
        .header(header::COOKIE, format!("wxlogin_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert_oauth_error(
        redeem(&b, SHOP_RP, &pending, &verifier).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
}

/// The kids `node` publishes, sorted.
async fn kids(node: &TestApp) -> Vec<String> {
    let jwks: Value = node.get("/oauth/jwks").await.json().await.unwrap();
    let mut kids: Vec<_> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_str().unwrap().to_owned())
        .collect();
    kids.sort();
    kids
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn every_node_signs_with_keys_every_node_publishes_and_follows_a_rotation() {
    let server = TestServer::start();
    let (a, b, url) = two_nodes(&server).await;
    let published = kids(&a).await;
    assert_eq!(
        published.len(),
        2,
        "one ES256 and one RS256 key: {published:?}"
    );
    assert_eq!(kids(&b).await, published);

    let session = a.sign_up("oKeys", "13800000231").await;
    for rp in [SHOP_RP, SPRING_RP] {
        let (issued, verifier) = code(&a, rp, &session, "openid").await;
        let (status, tokens) = redeem(&a, rp, &issued, &verifier).await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        let id_token = tokens["id_token"].as_str().unwrap();
        assert!(published.contains(&alg_and_kid(id_token).1));
        // Verified with B's JWKS alone.
        verify_with(&a, rp, fetch_jwks(&b).await, id_token);
    }

    // One rotation, from any machine that reaches the database, for every node, no restart.
    let elsewhere = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) = run_command(
        &["rotate-key"],
        &[
            ("WXLOGIN_DATABASE_URL", &url),
            ("WXLOGIN_DATA_DIR", &elsewhere.path().display().to_string()),
        ],
    );
    assert!(status.success(), "{stderr}");
    let new: Vec<_> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("new signing key "))
        .map(|rest| rest.split(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(new.len(), 2, "{stdout}");
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in [&a, &b] {
        loop {
            let now = kids(node).await;
            if new.iter().all(|kid| now.contains(kid)) {
                assert_eq!(now.len(), 4, "old and next keys: {now:?}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} never published {new:?}: {now:?}",
                node.address
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(kids(&a).await, kids(&b).await);
    assert!(
        !elsewhere.path().join("oidc").exists(),
        "the rotation wrote no key file"
    );
}
