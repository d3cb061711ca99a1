//! One access token for a cluster: several nodes (separate processes) on one PostgreSQL, in
//! real mode against ONE fake WeChat that counts token fetches. Nodes racing for a token make
//! one fetch and use the same token; a refused token is replaced once, and a node still
//! holding the old one takes the new one instead of fetching; the refresh ahead of expiry is
//! made once for all; the token center on every node hands out the same token and ticket.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use wxlogin_storage::test_server::TestServer;

use crate::helpers::{read_request, spawn_app_with, write_answer, TestApp};

const APPID: &str = "wx00000000000c1a57";
const CENTER_KEY: &str = "cluster-key-0123456789abcdefghijklmnopqrs";

/// What the fake WeChat saw.
#[derive(Default)]
struct Calls {
    /// `cgi-bin/token` calls: each makes a new token, `token-<n>`.
    token_fetches: u32,
    ticket_fetches: u32,
    /// The access token each `qrcode/create` carried, in order.
    qr_tokens: Vec<String>,
    /// Tokens answered 40001 from now on (WeChat invalidated them).
    refused: HashSet<String>,
}

/// WeChat's API for every node: a token fetch is answered only once the gate is open, and
/// slowly, so nodes that did not wait for each other would all fetch.
struct FakeWechat {
    base: String,
    calls: Arc<Mutex<Calls>>,
    gate: watch::Sender<bool>,
}

impl FakeWechat {
    async fn start(expires_in: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(Mutex::new(Calls::default()));
        let (gate, open) = watch::channel(false);
        let shared = calls.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (calls, mut open) = (shared.clone(), open.clone());
                tokio::spawn(async move {
                    let request = read_request(&mut stream).await;
                    let url = url::Url::parse(&format!("http://wechat{}", request.target)).unwrap();
                    let (status, answer) = answer(&url, &calls, &mut open, expires_in).await;
                    write_answer(&mut stream, status, &answer.to_string()).await;
                });
            }
        });
        Self { base, calls, gate }
    }

    fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.calls.lock().unwrap()
    }
}

async fn answer(
    url: &url::Url,
    calls: &Mutex<Calls>,
    open: &mut watch::Receiver<bool>,
    expires_in: u64,
) -> (u16, Value) {
    let pause = Duration::from_millis(300);
    let token = url
        .query_pairs()
        .find(|(name, _)| name == "access_token")
        .map(|(_, value)| value.into_owned());
    if url.path() == "/cgi-bin/qrcode/create" {
        calls.lock().unwrap().qr_tokens.extend(token.clone());
    }
    if token.is_some_and(|token| calls.lock().unwrap().refused.contains(&token)) {
        return (
            200,
            json!({"errcode": 40001, "errmsg": "invalid credential"}),
        );
    }
    match url.path() {
        "/cgi-bin/token" => {
            let n = {
                let mut calls = calls.lock().unwrap();
                calls.token_fetches += 1;
                calls.token_fetches
            };
            open.wait_for(|open| *open).await.unwrap();
            tokio::time::sleep(pause).await;
            let token = format!("token-{n}");
            (
                200,
                json!({"access_token": token, "expires_in": expires_in}),
            )
        }
        "/cgi-bin/ticket/getticket" => {
            let n = {
                let mut calls = calls.lock().unwrap();
                calls.ticket_fetches += 1;
                calls.ticket_fetches
            };
            tokio::time::sleep(pause).await;
            let ticket = format!("ticket-{n}");
            (
                200,
                json!({"errcode": 0, "errmsg": "ok", "ticket": ticket, "expires_in": 7200}),
            )
        }
        "/cgi-bin/qrcode/create" => {
            let n = calls.lock().unwrap().qr_tokens.len();
            let url = format!("http://weixin.qq.com/q/{n}");
            (
                200,
                json!({"ticket": format!("qr-{n}"), "expire_seconds": 300, "url": url}),
            )
        }
        "/cgi-bin/getcallbackip" => (200, json!({"ip_list": ["127.0.0.1"]})),
        _ => (404, json!({"errcode": 404, "errmsg": "no such endpoint"})),
    }
}

/// `n` nodes on one database, started at once, in real mode against `wechat`.
async fn nodes(n: usize, database: &str, wechat: &FakeWechat) -> Vec<TestApp> {
    let starts: Vec<_> = (0..n)
        .map(|_| {
            let (database, api) = (database.to_owned(), wechat.base.clone());
            let clients = format!("shop:{CENTER_KEY}");
            tokio::spawn(async move {
                spawn_app_with(&[
                    ("WXLOGIN_APPID", APPID),
                    ("WXLOGIN_APPSECRET", "the-app-secret"),
                    ("WXLOGIN_TOKEN", "callback-token"),
                    ("WXLOGIN_WECHAT_API", &api),
                    ("WXLOGIN_DATABASE_URL", &database),
                    // The gate may hold the first fetch while the others start.
                    ("WXLOGIN_WECHAT_TIMEOUT_SECS", "30"),
                    ("WXLOGIN_TOKEN_CLIENTS", &clients),
                ])
                .await
            })
        })
        .collect();
    let mut nodes = Vec::new();
    for start in starts {
        nodes.push(start.await.unwrap());
    }
    nodes
}

/// `POST /api/qrcode` on every node at once; all must work.
async fn qr_on_each(nodes: &[TestApp]) {
    let requests: Vec<_> = nodes
        .iter()
        .map(|node| tokio::spawn(node.client.post(node.url("/api/qrcode")).send()))
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap().unwrap().status(), StatusCode::OK);
    }
}

/// What node's token center hands out at `path` (`access_token` or `ticket` field `field`).
async fn center(node: &TestApp, path: &str, field: &str) -> String {
    let response = node
        .client
        .get(node.url(path))
        .bearer_auth(CENTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body[field].as_str().unwrap().to_owned()
}

async fn tokens_handed_out(nodes: &[TestApp]) -> Vec<String> {
    let mut tokens = Vec::new();
    for node in nodes {
        tokens.push(center(node, "/api/wechat/access_token", "access_token").await);
    }
    tokens
}

#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn nodes_racing_for_a_token_make_one_fetch_and_share_it_and_the_ticket() {
    let server = TestServer::start();
    let database = server.new_database().await;
    let wechat = FakeWechat::start(7200).await;
    // Each node asks for a token as it starts; the first fetch is held until all are up.
    let nodes = nodes(3, &database, &wechat).await;
    // And every node needs one for a QR code, at once, while that fetch is still held.
    let creating = tokio::spawn({
        let requests: Vec<_> = nodes
            .iter()
            .map(|node| node.client.post(node.url("/api/qrcode")).send())
            .collect();
        futures_util::future::join_all(requests)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    wechat.open_gate();
    for created in creating.await.unwrap() {
        assert_eq!(created.unwrap().status(), StatusCode::OK);
    }
    {
        let calls = wechat.calls();
        assert_eq!(calls.token_fetches, 1, "one fetch for the cluster");
        assert_eq!(calls.qr_tokens, ["token-1"; 3], "every node used it");
    }
    assert_eq!(tokens_handed_out(&nodes).await, ["token-1"; 3]);

    // The JS-SDK ticket, asked of every node at once: one getticket, one ticket.
    let tickets: Vec<_> = nodes
        .iter()
        .map(|node| center(node, "/api/wechat/jsapi_ticket", "ticket"))
        .collect();
    let tickets = futures_util::future::join_all(tickets).await;
    assert_eq!(tickets, ["ticket-1"; 3]);
    assert_eq!(wechat.calls().ticket_fetches, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn a_refused_token_is_replaced_once_and_a_node_holding_it_takes_the_new_one() {
    let server = TestServer::start();
    let database = server.new_database().await;
    let wechat = FakeWechat::start(7200).await;
    wechat.open_gate();
    let nodes = nodes(2, &database, &wechat).await;
    qr_on_each(&nodes).await;
    assert_eq!(wechat.calls().token_fetches, 1);

    // WeChat stops taking token-1 (someone fetched a classic token).
    wechat.calls().refused.insert("token-1".into());
    // The first node is refused, replaces the cluster's token and retries: one fetch.
    nodes[0].create_qr().await;
    assert_eq!(wechat.calls().token_fetches, 2);
    // The second still holds token-1: refused too, it finds token-2 in the row and fetches
    // nothing (a fetch would invalidate token-2 under the first node).
    nodes[1].create_qr().await;
    {
        let calls = wechat.calls();
        assert_eq!(calls.token_fetches, 2, "the stale copy replaced nothing");
        assert_eq!(
            calls.qr_tokens[2..],
            ["token-1", "token-2", "token-1", "token-2"],
            "each node: refused, then the one new token"
        );
    }
    assert_eq!(tokens_handed_out(&nodes).await, ["token-2"; 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn the_refresh_ahead_of_expiry_is_one_fetch_for_the_cluster() {
    let server = TestServer::start();
    let database = server.new_database().await;
    // WeChat's shortest lifetime wxlogin takes (60 s): each node refreshes 30 s in.
    let wechat = FakeWechat::start(60).await;
    wechat.open_gate();
    let nodes = nodes(2, &database, &wechat).await;
    assert_eq!(tokens_handed_out(&nodes).await, ["token-1"; 2]);
    assert_eq!(wechat.calls().token_fetches, 1);

    // Both nodes' refreshes come due within a moment of each other, about 30 s in.
    let mut handed_out = Vec::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        handed_out = tokens_handed_out(&nodes).await;
        if handed_out.iter().all(|token| token != "token-1") {
            break;
        }
    }
    assert_eq!(
        handed_out, ["token-2"; 2],
        "both nodes refreshed to one token"
    );
    assert_eq!(
        wechat.calls().token_fetches,
        2,
        "one refresh for the cluster"
    );
    qr_on_each(&nodes).await;
    assert!(wechat
        .calls()
        .qr_tokens
        .ends_with(&["token-2".to_owned(), "token-2".to_owned()]));
}

/// Token-center callers' reports throw away one token a minute for the whole cluster, not one
/// per node: a caller going round the nodes cannot spend the quota once per node.
#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
#[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
async fn reports_round_the_nodes_replace_no_token_the_cluster_just_replaced() {
    let server = TestServer::start();
    let database = server.new_database().await;
    let wechat = FakeWechat::start(7200).await;
    wechat.open_gate();
    let nodes = nodes(2, &database, &wechat).await;
    assert_eq!(tokens_handed_out(&nodes).await, ["token-1"; 2]);
    for node in &nodes {
        // Each node's own allowance would honour this report: the cluster's does not.
        let current = center(node, "/api/wechat/access_token", "access_token").await;
        let response = node
            .client
            .post(node.url("/api/wechat/access_token/refresh"))
            .bearer_auth(CENTER_KEY)
            .json(&json!({"access_token": current}))
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["access_token"], "token-1", "{body}");
    }
    assert_eq!(wechat.calls().token_fetches, 1);
    // wxlogin's own refused call still replaces it at once.
    wechat.calls().refused.insert("token-1".into());
    nodes[1].create_qr().await;
    assert_eq!(wechat.calls().token_fetches, 2);
    let current = center(&nodes[1], "/api/wechat/access_token", "access_token").await;
    assert_eq!(current, "token-2");
}
