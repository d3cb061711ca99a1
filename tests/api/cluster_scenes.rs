//! Several nodes on one PostgreSQL (issue 20): a scene made on one node is served by any, its
//! changes wake waiters on every node, it survives its node's `kill -9`, and two nodes racing
//! one scene log it in once. Each node is its own `wxlogin` process with its own sandbox
//! simulator; WeChat's pushes to a node other than the creator are sent here, signed.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use wxlogin_storage::test_server::TestServer;

use crate::helpers::{
    event_xml, psql, signed_query, spawn_app_with, text_xml, unix_now, TestApp, ADMIN_TOKEN,
};

const SANDBOX_TOKEN: &str = "sandbox-token";

/// `count` nodes on one new database of `server`, all with `extra` settings. They share one
/// browser (its cookie jar): a browser's requests may land on any node.
async fn cluster(server: &TestServer, count: usize, extra: &[(&str, &str)]) -> Vec<TestApp> {
    let url = server.new_database().await;
    let env = [
        &[
            ("WXLOGIN_DATABASE_URL", url.as_str()),
            ("WXLOGIN_ADMIN_TOKEN", ADMIN_TOKEN),
        ][..],
        extra,
    ]
    .concat();
    let mut nodes = Vec::new();
    for _ in 0..count {
        nodes.push(spawn_app_with(&env).await);
    }
    let browser = nodes[0].client.clone();
    for node in &mut nodes {
        node.client = browser.clone();
    }
    nodes
}

/// WeChat pushes to `node` that `openid` scanned the QR code of `scene_id`.
async fn push_scan(node: &TestApp, scene_id: &str, openid: &str, subscribe: bool) -> String {
    let (event, key) = match subscribe {
        true => ("subscribe", format!("qrscene_wxl_{scene_id}")),
        false => ("SCAN", format!("wxl_{scene_id}")),
    };
    let body = event_xml(openid, unix_now(), event, &key);
    let response = node.post_callback(&signed_query(SANDBOX_TOKEN), body).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

/// WeChat pushes to `node` a text `openid` sent the account.
async fn push_text(node: &TestApp, openid: &str, content: &str) -> String {
    let body = text_xml(openid, unix_now(), content, rand::random());
    let response = node.post_callback(&signed_query(SANDBOX_TOKEN), body).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

/// The scene's status as `node` sees it, after a long-poll of at most `wait` seconds.
async fn status(node: &TestApp, scene_id: &str, wait: u64) -> Value {
    let (code, status) = node.status(scene_id, wait).await;
    assert_eq!(code, StatusCode::OK, "{status}");
    status
}

/// The scene's event stream on `node`, read until an event in `state` (or the test's end).
async fn stream_until(node: &TestApp, scene_id: &str, state: &str) -> Value {
    let mut response = node.get(&format!("/api/qrcode/{scene_id}/events")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut text = String::new();
    loop {
        let chunk = response.chunk().await.unwrap().expect("the stream goes on");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        for event in text.split("\n\n") {
            if let Some(data) = event.strip_prefix("data: ") {
                let status: Value = serde_json::from_str(data).unwrap();
                if status["state"] == state {
                    return status;
                }
            }
        }
    }
}

/// How many logins the log holds for `openid`.
async fn logins(node: &TestApp, openid: &str) -> usize {
    let body: Value = node
        .admin_get(&format!("/admin/logins?openid={openid}"))
        .await
        .json()
        .await
        .unwrap();
    body["logins"].as_array().expect("a page of logins").len()
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn a_scan_pushed_to_one_node_wakes_the_long_poll_and_the_stream_on_another() {
    let server = TestServer::start();
    let nodes = cluster(&server, 3, &[]).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    a.sign_up("oCross", "13800000030").await;

    let qr = a.create_qr().await;
    // The browser's first poll lands on C, which never saw the scene: it takes it up.
    assert_eq!(status(c, &qr.scene_id, 0).await["state"], "waiting");
    let long_poll = {
        let c = c.client.clone();
        let url = c_url(&nodes[2], &qr.scene_id);
        tokio::spawn(async move {
            let body: Value = c.get(url).send().await.unwrap().json().await.unwrap();
            body
        })
    };
    let stream = stream_until(c, &qr.scene_id, "logged_in");
    // Both are parked on C before the scan (a poll answered at once would prove nothing).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!long_poll.is_finished());

    let scanned = async {
        push_scan(b, &qr.scene_id, "oCross", false).await;
    };
    // Bounded only so that a wake that never comes fails rather than hangs until the TTL.
    let (streamed, ()) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(stream, scanned)
    })
    .await
    .expect("the stream on C heard the scan on B");
    let polled = long_poll.await.unwrap();
    assert_eq!(polled["state"], "logged_in", "{polled}");
    assert_eq!(streamed["state"], "logged_in", "{streamed}");
    let token = polled["token"].as_str().expect("the session token");
    assert_eq!(streamed["token"], token);
    let me: Value = a.me(token).await.json().await.unwrap();
    assert_eq!(me["openid"], "oCross", "{me}");
    // A, which made the scene and holds no waiter, sees it too.
    assert_eq!(status(a, &qr.scene_id, 0).await["state"], "logged_in");
}

fn c_url(node: &TestApp, scene_id: &str) -> String {
    node.url(&format!("/api/qrcode/{scene_id}/status?wait=25"))
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn a_node_killed_after_the_scan_loses_nothing_the_bind_completes_on_the_others() {
    let server = TestServer::start();
    let mut nodes = cluster(&server, 3, &[]).await;
    let qr = nodes[0].create_qr().await;
    nodes[0].scan(&qr.ticket, "oSurvivor", true).await;
    assert_eq!(
        status(&nodes[0], &qr.scene_id, 0).await["state"],
        "need_bind"
    );

    nodes[0].stop(); // SIGKILL
    let (b, c) = (&nodes[1], &nodes[2]);
    assert_eq!(status(c, &qr.scene_id, 0).await["state"], "need_bind");
    assert_eq!(
        b.request_code(&qr.scene_id, "13800000031").await.status(),
        StatusCode::ACCEPTED
    );
    let code = b.sms_code("13800000031").await;
    // A wrong code on C counts on B: the row holds the count.
    assert_eq!(
        c.bind(&qr.scene_id, "13800000031", "000000").await.status(),
        StatusCode::BAD_REQUEST
    );
    let response = c.bind(&qr.scene_id, "13800000031", &code).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    let me: Value = b.me(token).await.json().await.unwrap();
    assert_eq!(me["openid"], "oSurvivor", "{me}");
    assert_eq!(status(b, &qr.scene_id, 0).await["state"], "logged_in");
    // The code is used up: no second bind anywhere.
    assert_ne!(
        b.bind(&qr.scene_id, "13800000031", &code).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn two_nodes_racing_one_scene_log_it_in_once() {
    let server = TestServer::start();
    let nodes = cluster(&server, 3, &[]).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    a.sign_up("oRacerOne", "13800000032").await;
    a.sign_up("oRacerTwo", "13800000033").await;
    for _ in 0..5 {
        let qr = a.create_qr().await;
        // Both racers' nodes know the scene already, so both race to lock its row.
        status(b, &qr.scene_id, 0).await;
        status(c, &qr.scene_id, 0).await;
        tokio::join!(
            push_scan(b, &qr.scene_id, "oRacerOne", false),
            push_scan(c, &qr.scene_id, "oRacerTwo", false),
        );
        let scene = status(a, &qr.scene_id, 0).await;
        assert_eq!(scene["state"], "logged_in", "{scene}");
        let winner: Value = a
            .me(scene["token"].as_str().unwrap())
            .await
            .json()
            .await
            .unwrap();
        // Every node sees the one winner's token.
        for node in [b, c] {
            assert_eq!(status(node, &qr.scene_id, 0).await["token"], scene["token"]);
        }
        assert!(winner["openid"] == "oRacerOne" || winner["openid"] == "oRacerTwo");
    }
    // One scan login per scene: five, plus the two sign-ups' binds.
    let total = logins(a, "oRacerOne").await + logins(a, "oRacerTwo").await;
    assert_eq!(total, 2 + 5);
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn a_login_code_sent_to_a_node_that_did_not_make_the_scene_logs_it_in() {
    let server = TestServer::start();
    let nodes = cluster(&server, 2, &[("WXLOGIN_LOGIN_MODE", "code")]).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let (scene_id, code) = a.create_code_login().await;
    let waiting = {
        let client = a.client.clone();
        let url = c_url(a, &scene_id);
        tokio::spawn(async move {
            let body: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            body
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reply = push_text(b, "oTexter", &code).await;
    // A new user: on to binding a phone.
    assert!(reply.contains("手机号"), "{reply}");
    assert_eq!(waiting.await.unwrap()["state"], "need_bind");
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn a_confirmation_reply_reaching_another_node_answers_it() {
    let server = TestServer::start();
    let nodes = cluster(&server, 3, &[("WXLOGIN_CONFIRM", "number")]).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let qr = a.create_qr().await;
    push_scan(b, &qr.scene_id, "oConfirmer", false).await;
    let asked = status(c, &qr.scene_id, 0).await;
    assert_eq!(asked["state"], "confirm", "{asked}");
    let number = asked["confirm_number"].as_u64().unwrap();
    // The reply reaches A, which made the scene but saw neither the scan nor the poll.
    let reply = push_text(a, "oConfirmer", &number.to_string()).await;
    // A new user, let in: on to binding a phone, seen so by every node.
    assert!(reply.contains("手机号"), "{reply}");
    for node in [a, b, c] {
        assert_eq!(status(node, &qr.scene_id, 0).await["state"], "need_bind");
    }
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn a_change_missed_while_the_listener_reconnects_still_wakes_the_waiter() {
    let server = TestServer::start();
    let url = server.new_database().await;
    let env = [("WXLOGIN_DATABASE_URL", url.as_str())];
    let a = spawn_app_with(&env).await;
    let mut c = spawn_app_with(&env).await;
    c.client = a.client.clone();
    a.sign_up("oMissed", "13800000036").await;
    let qr = a.create_qr().await;
    assert_eq!(status(&c, &qr.scene_id, 0).await["state"], "waiting");
    let long_poll = {
        let client = c.client.clone();
        let url = c_url(&c, &qr.scene_id);
        tokio::spawn(async move {
            let body: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            body
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Every node's listening connection is cut; the scan commits while they connect again
    // (200 ms later), so its notification reaches nobody: only the resync can wake C.
    cut_listeners(&url, 2);
    push_scan(&a, &qr.scene_id, "oMissed", false).await;
    let polled = long_poll.await.unwrap();
    assert_eq!(polled["state"], "logged_in", "{polled}");
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn wrong_codes_spread_over_nodes_count_once_for_the_scene() {
    let server = TestServer::start();
    let nodes = cluster(&server, 3, &[]).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let qr = a.create_qr().await;
    a.scan(&qr.ticket, "oGuesser", true).await;
    assert_eq!(
        a.request_code(&qr.scene_id, "13800000037").await.status(),
        StatusCode::ACCEPTED
    );
    let code = a.sms_code("13800000037").await;
    // Five wrong guesses, taking turns on the two nodes that did not send the code.
    for (n, node) in [b, c, b, c, b].into_iter().enumerate() {
        let guess = format!(
            "{:06}",
            (code.parse::<u32>().unwrap() + 1 + n as u32) % 1_000_000
        );
        assert_eq!(
            node.bind(&qr.scene_id, "13800000037", &guess)
                .await
                .status(),
            StatusCode::BAD_REQUEST
        );
    }
    // The scene's limit is the cluster's: even the right code is refused now, on any node.
    for node in [a, c] {
        assert_eq!(
            node.bind(&qr.scene_id, "13800000037", &code).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
}

/// Cuts every node's listening connection (`nodes` of them): each hears of changes again only
/// once it reconnects, 200 ms later.
fn cut_listeners(url: &str, nodes: usize) {
    let cut = psql(
        url,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE query = 'LISTEN wxlogin_scenes'",
    );
    assert_eq!(cut.trim(), nodes.to_string());
}

/// Every scene row as PostgreSQL's own client prints it: the state's bytes (printable ones as
/// they are), the login code column and the scanner awaiting confirmation.
fn scene_rows(url: &str) -> String {
    psql(
        url,
        "SELECT encode(state, 'escape') || ' ' || coalesce(login_code, '') || ' ' || \
         coalesce(confirming, '') FROM scenes",
    )
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn a_scenes_row_holds_no_session_token_no_code_and_no_phone() {
    let server = TestServer::start();
    let url = server.new_database().await;
    let node = spawn_app_with(&[("WXLOGIN_DATABASE_URL", url.as_str())]).await;
    let qr = node.create_qr().await;
    node.scan(&qr.ticket, "oReader", true).await;
    let phone = "13800000037";
    assert_eq!(
        node.request_code(&qr.scene_id, phone).await.status(),
        StatusCode::ACCEPTED
    );
    let code = node.sms_code(phone).await;
    let awaiting = scene_rows(&url);
    assert!(
        awaiting.contains("oReader"),
        "the row is the one read: {awaiting}"
    );
    assert!(
        !awaiting.contains(&code) && !awaiting.contains(phone),
        "{awaiting}"
    );

    let response = node.bind(&qr.scene_id, phone, &code).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_owned();
    let logged_in = scene_rows(&url);
    assert!(!logged_in.contains(&token), "{logged_in}");
    // The token the status hands out is the one the bind did, and it is a live session.
    assert_eq!(
        status(&node, &qr.scene_id, 0).await["token"],
        token.as_str()
    );
    assert_eq!(node.me(&token).await.status(), StatusCode::OK);
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn a_code_asked_of_a_node_that_has_not_heard_of_the_scan_yet_is_sent() {
    let server = TestServer::start();
    let url = server.new_database().await;
    let env = [("WXLOGIN_DATABASE_URL", url.as_str())];
    let a = spawn_app_with(&env).await;
    let mut c = spawn_app_with(&env).await;
    c.client = a.client.clone();
    let qr = a.create_qr().await;
    // C takes the scene up while it waits.
    assert_eq!(status(&c, &qr.scene_id, 0).await["state"], "waiting");
    // Every listening connection is cut, so C hears of the scan only when it reconnects
    // (200 ms later): its view still says `waiting` when the code is asked for.
    cut_listeners(&url, 2);
    push_scan(&a, &qr.scene_id, "oHurried", false).await;
    let asked = c.request_code(&qr.scene_id, "13800000038").await;
    assert_eq!(asked.status(), StatusCode::ACCEPTED);
    let code = c.sms_code("13800000038").await;
    let bound = c.bind(&qr.scene_id, "13800000038", &code).await;
    assert_eq!(bound.status(), StatusCode::OK);
}

/// A `psql` session holding a lock on every scene row until it is dropped: a node acting on a
/// scene meanwhile waits for it.
struct SceneLock(std::process::Child);

impl SceneLock {
    async fn take(url: &str) -> Self {
        use std::io::Write;
        let mut child = std::process::Command::new("psql")
            .args([url, "-qAt"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("psql runs");
        let stdin = child.stdin.as_mut().unwrap();
        stdin
            .write_all(b"BEGIN; SELECT 1 FROM scenes FOR UPDATE;\n")
            .unwrap();
        wait_for(
            url,
            "SELECT count(*) FROM pg_stat_activity \
             WHERE state = 'idle in transaction' AND query LIKE '%FOR UPDATE%'",
        )
        .await;
        Self(child)
    }
}

impl Drop for SceneLock {
    fn drop(&mut self) {
        // psql reads the end of its input, rolls back and exits.
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

/// Waits, at most 10 s, until `count_sql` counts one row or more.
async fn wait_for(url: &str, count_sql: &str) {
    for _ in 0..200 {
        if psql(url, count_sql).trim() != "0" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {count_sql}");
}

#[tokio::test]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn a_push_whose_node_died_while_acting_on_it_is_acted_on_by_the_retry() {
    let server = TestServer::start();
    let url = server.new_database().await;
    let env = [("WXLOGIN_DATABASE_URL", url.as_str())];
    let mut a = spawn_app_with(&env).await;
    let b = spawn_app_with(&env).await;
    b.sign_up("oRetried", "13800000039").await;
    let qr = b.create_qr().await;
    let query = signed_query(SANDBOX_TOKEN);
    let scan = event_xml("oRetried", unix_now(), "SCAN", &qr.event_key());

    // A takes the push up and is killed while it waits to write the scene: it never answers.
    let lock = SceneLock::take(&url).await;
    let doomed = {
        let (client, target) = (a.client.clone(), a.url(&format!("/wechat?{query}")));
        let scan = scan.clone();
        tokio::spawn(async move { client.post(target).body(scan).send().await })
    };
    wait_for(
        &url,
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
    )
    .await;
    a.stop(); // SIGKILL
    assert!(doomed.await.unwrap().is_err(), "A never answered");
    drop(lock);

    // WeChat, with no answer, sends the very same request again; it lands on B, which acts.
    let asked = std::time::Instant::now();
    let retry = b.post_callback(&query, scan).await;
    assert_eq!(retry.status(), StatusCode::OK);
    // WeChat's deadline, not a speed: B waits out what is left of A's 4 s lease, then acts.
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    let reply = retry.text().await.unwrap();
    assert!(
        reply.contains("<xml>"),
        "B acted on it and replied: {reply}"
    );
    assert_eq!(status(&b, &qr.scene_id, 0).await["state"], "logged_in");
}
