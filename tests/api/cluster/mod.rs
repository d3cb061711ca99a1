//! Three nodes on one PostgreSQL behind HAProxy (issue 20): a login whose every request lands
//! on another node, one whose scene's node is killed mid-flow, WeChat's redelivery of one push
//! to two nodes, the nodes' first access token, and the database stopped and started again.
//! The harness is in [`harness`]; HAProxy's config is docs/examples/haproxy.cfg.

mod harness;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, event_xml, signed_query, unix_now, Events};
use harness::{served_by, Cluster, Trail, CALLBACK_TOKEN, NODES};

/// A new scene through HAProxy: its id, its ticket, and the node that made it.
async fn new_scene(cluster: &Cluster, trail: &mut Trail) -> (String, String, usize) {
    let response = trail
        .send(
            "the QR code",
            cluster.browser.post(cluster.url("/api/qrcode")),
        )
        .await;
    let node = served_by(&response).unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", cluster.logs());
    let body: Value = response.json().await.unwrap();
    (
        body["scene_id"].as_str().unwrap().to_owned(),
        body["ticket"].as_str().unwrap().to_owned(),
        node,
    )
}

/// The scanned scene's code is texted to `phone` and bound; returns the session token.
async fn bind_by_sms(cluster: &Cluster, trail: &mut Trail, scene_id: &str, phone: &str) -> String {
    let response = trail
        .send(
            "the SMS code",
            cluster
                .browser
                .post(cluster.url(&format!("/api/qrcode/{scene_id}/sms")))
                .json(&json!({"phone": phone})),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "{}",
        cluster.logs()
    );
    let code = cluster.wechat.sms_code(phone).await;
    let response = trail
        .send("the bind", bind(cluster, scene_id, phone, &code))
        .await;
    assert_eq!(response.status(), StatusCode::OK, "{}", cluster.logs());
    let body: Value = response.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

fn bind(cluster: &Cluster, scene_id: &str, phone: &str, code: &str) -> reqwest::RequestBuilder {
    cluster
        .browser
        .post(cluster.url(&format!("/api/qrcode/{scene_id}/bind")))
        .json(&json!({"phone": phone, "code": code}))
}

fn me(cluster: &Cluster, token: &str) -> reqwest::RequestBuilder {
    cluster
        .browser
        .get(cluster.url("/api/me"))
        .bearer_auth(token)
}

fn status(cluster: &Cluster, scene_id: &str, wait: u64) -> reqwest::RequestBuilder {
    cluster
        .browser
        .get(cluster.url(&format!("/api/qrcode/{scene_id}/status?wait={wait}")))
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
#[cfg_attr(not(has_haproxy), ignore = "needs HAProxy")]
async fn a_login_whose_every_request_lands_on_another_node() {
    let cluster = Cluster::start().await;
    let mut trail = Trail::round_robin();
    let (scene_id, ticket, _) = new_scene(&cluster, &mut trail).await;

    // The event stream sits on a second node; the scan's push lands on the third.
    let stream = trail
        .send(
            "the event stream",
            cluster
                .browser
                .get(cluster.url(&format!("/api/qrcode/{scene_id}/events"))),
        )
        .await;
    let stream_node = served_by(&stream).unwrap();
    let mut events = Events::new(stream);
    assert_eq!(events.next().await.unwrap()["state"], "waiting");
    let delivery = cluster.scan(&ticket, "oCluster", true).await;
    assert_eq!(delivery["status"], 200, "{delivery}");
    // The push went through HAProxy too, to a node that is not the stream's.
    let pushed = cluster
        .nodes_counting("wxlogin_callback_events_total{", "type=\"subscribe\"")
        .await;
    assert_eq!(pushed.len(), 1, "{pushed:?}");
    assert_ne!(
        pushed[0], stream_node,
        "the push landed on the stream's node"
    );
    assert_eq!(
        events.next().await.unwrap()["state"],
        "need_bind",
        "{}",
        cluster.logs()
    );

    // A long-poll held on one node while the bind lands on another: the poll is given a
    // moment to be parked first (in either order its answer is the login).
    let place = trail.sent();
    let poll = tokio::spawn(status(&cluster, &scene_id, 20).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let token = bind_by_sms(&cluster, &mut trail, &scene_id, "13800000030").await;
    let poll = poll.await.unwrap().unwrap();
    trail.answered(place, "the long-poll", &poll);
    let polled: Value = poll.json().await.unwrap();
    assert_eq!(polled["state"], "logged_in", "{polled}");
    assert_eq!(events.next().await.unwrap()["state"], "logged_in");

    let response = trail.send("/api/me", me(&cluster, &token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["openid"], "oCluster", "{body}");
    let response = trail
        .send(
            "the logout",
            cluster
                .browser
                .post(cluster.url("/api/logout"))
                .bearer_auth(&token),
        )
        .await;
    assert!(response.status().is_success(), "{}", response.status());
    let response = trail
        .send("/api/me after the logout", me(&cluster, &token))
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    for node in 0..NODES {
        assert!(
            trail.nodes().contains(&node),
            "node{} never answered",
            node + 1
        );
    }
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
#[cfg_attr(not(has_haproxy), ignore = "needs HAProxy")]
async fn a_login_goes_through_when_its_scene_s_node_is_killed_after_the_scan() {
    let mut cluster = Cluster::start().await;
    let mut trail = Trail::default();
    let (scene_id, ticket, creator) = new_scene(&cluster, &mut trail).await;
    let delivery = cluster.scan(&ticket, "oSurvivor", true).await;
    assert_eq!(delivery["status"], 200, "{delivery}");

    // kill -9: no goodbye, nothing flushed, and HAProxy does not know yet.
    cluster.kill(creator);
    let response = trail
        .send("the poll after the kill", status(&cluster, &scene_id, 0))
        .await;
    assert_eq!(response.status(), StatusCode::OK, "{}", cluster.logs());
    let polled: Value = response.json().await.unwrap();
    assert_eq!(polled["state"], "need_bind", "{polled}");
    let token = bind_by_sms(&cluster, &mut trail, &scene_id, "13800000031").await;
    let response = trail
        .send("the poll after the bind", status(&cluster, &scene_id, 0))
        .await;
    let polled: Value = response.json().await.unwrap();
    assert_eq!(polled["state"], "logged_in", "{polled}");
    let response = trail.send("/api/me", me(&cluster, &token)).await;
    assert_eq!(response.status(), StatusCode::OK);

    // Every request after the kill was answered, by the nodes still alive.
    let nodes = trail.nodes();
    assert!(
        !nodes[1..].contains(&creator),
        "the killed node answered: {nodes:?}"
    );
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
#[cfg_attr(not(has_haproxy), ignore = "needs HAProxy")]
async fn one_push_redelivered_to_two_nodes_is_acted_on_once() {
    let cluster = Cluster::start().await;
    let (first, second) = (cluster.node(0), cluster.node(1));
    // A user bound on the first node, all of it there.
    let qr = first.create_qr().await;
    let signed = signed_query(CALLBACK_TOKEN);
    let subscribe = event_xml(
        "oTwice",
        unix_now(),
        "subscribe",
        &format!("qrscene_{}", qr.event_key()),
    );
    assert_eq!(first.post_callback(&signed, subscribe).await.status(), 200);
    assert_eq!(
        first
            .request_code(&qr.scene_id, "13800000032")
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let code = cluster.wechat.sms_code("13800000032").await;
    assert_eq!(
        first
            .bind(&qr.scene_id, "13800000032", &code)
            .await
            .status(),
        StatusCode::OK
    );
    let logins_before = cluster.metric_sum("wxlogin_logins_total{", "").await;

    // WeChat got no answer in time and sends the same push, same signed query string, again:
    // this time its address resolved to the other node.
    let qr = first.create_qr().await;
    let signed = signed_query(CALLBACK_TOKEN);
    let scan = event_xml("oTwice", unix_now(), "SCAN", &qr.event_key());
    let answers = [
        first.post_callback(&signed, scan.clone()).await,
        second.post_callback(&signed, scan).await,
    ];
    for answer in answers {
        assert_eq!(answer.status(), StatusCode::OK);
    }
    let (_, status) = first.status(&qr.scene_id, 0).await;
    assert_eq!(status["state"], "logged_in", "{status}");
    assert_eq!(
        cluster.metric_sum("wxlogin_logins_total{", "").await - logins_before,
        1,
        "one scan, one login"
    );
    assert_eq!(
        cluster
            .metric_sum("wxlogin_callback_events_total{", "outcome=\"redelivery\"")
            .await,
        1,
        "the second delivery is known as a redelivery:\n{}",
        cluster.logs()
    );
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
#[cfg_attr(not(has_haproxy), ignore = "needs HAProxy")]
async fn three_nodes_starting_at_once_fetch_one_access_token() {
    let cluster = Cluster::start().await;
    // Each node serves a QR code with the token it holds: a token another node's fetch
    // invalidated would be refused (40001) and fetched again.
    for node in 0..NODES {
        cluster.node(node).wait_until_ready().await;
        let response = cluster.node(node).request_qr().await;
        assert_eq!(response.status(), StatusCode::OK, "{}", cluster.logs());
    }
    assert_eq!(
        cluster.node_token_fetches().await,
        1,
        "the cluster fetches one access token:\n{}",
        cluster.logs()
    );
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
#[cfg_attr(not(has_haproxy), ignore = "needs HAProxy")]
async fn a_stopped_database_is_a_json_503_and_nothing_acknowledged_is_lost() {
    let cluster = Cluster::start().await;
    let mut trail = Trail::round_robin();
    let (scene_id, ticket, _) = new_scene(&cluster, &mut trail).await;
    cluster.scan(&ticket, "oBefore", true).await;
    let token = bind_by_sms(&cluster, &mut trail, &scene_id, "13800000033").await;

    // A second login is at its bind when the database goes.
    let (scene_id, ticket, _) = new_scene(&cluster, &mut trail).await;
    cluster.scan(&ticket, "oDuring", true).await;
    let response = trail
        .send(
            "the SMS code",
            cluster
                .browser
                .post(cluster.url(&format!("/api/qrcode/{scene_id}/sms")))
                .json(&json!({"phone": "13800000034"})),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "{}",
        cluster.logs()
    );
    let code = cluster.wechat.sms_code("13800000034").await;
    cluster.database.stop();
    // Each node answers for itself (HAProxy's checks ask only whether nodes are alive).
    for _ in 0..NODES {
        let response = trail
            .send(
                "the bind, database down",
                bind(&cluster, &scene_id, "13800000034", &code),
            )
            .await;
        assert_error(
            response,
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
        )
        .await;
        let response = trail
            .send("/api/me, database down", me(&cluster, &token))
            .await;
        assert_error(
            response,
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
        )
        .await;
    }

    cluster.database.start_again();
    for node in 0..NODES {
        cluster.node(node).wait_until_ready().await;
    }
    // The session acknowledged before the outage still works; the refused bind goes through
    // when the browser tries it again.
    let response = trail
        .send("/api/me, database back", me(&cluster, &token))
        .await;
    assert_eq!(response.status(), StatusCode::OK, "{}", cluster.logs());
    let response = trail
        .send(
            "the bind again",
            bind(&cluster, &scene_id, "13800000034", &code),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK, "{}", cluster.logs());
    let body: Value = response.json().await.unwrap();
    let response = trail
        .send(
            "/api/me of the new user",
            me(&cluster, body["token"].as_str().unwrap()),
        )
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["openid"], "oDuring", "{body}");
    // And a whole new login.
    let (scene_id, ticket, _) = new_scene(&cluster, &mut trail).await;
    cluster.scan(&ticket, "oAfter", true).await;
    bind_by_sms(&cluster, &mut trail, &scene_id, "13800000035").await;
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
#[cfg_attr(not(has_haproxy), ignore = "needs HAProxy")]
async fn a_killed_node_s_share_of_the_requests_goes_to_the_others_at_once() {
    let mut cluster = Cluster::start().await;
    cluster.kill(0);
    // Before HAProxy's checks have noticed: its turns in the round go to the live nodes
    // (the documented config's retries with redispatch), none fails.
    let mut answered = Vec::new();
    for _ in 0..2 * NODES {
        let response = cluster
            .browser
            .get(cluster.url("/healthz"))
            .send()
            .await
            .expect("HAProxy answers");
        assert_eq!(response.status(), StatusCode::OK);
        answered.push(served_by(&response).unwrap());
    }
    assert!(!answered.contains(&0), "{answered:?}");
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
#[cfg_attr(not(has_haproxy), ignore = "needs HAProxy")]
async fn with_every_node_down_haproxy_answers_a_json_503() {
    let mut cluster = Cluster::start().await;
    for node in 0..NODES {
        cluster.kill(node);
    }
    let response = cluster
        .browser
        .get(cluster.url("/api/me"))
        .send()
        .await
        .expect("HAProxy answers");
    assert_error(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
}
