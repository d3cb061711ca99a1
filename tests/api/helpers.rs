//! Starts the real `wxlogin` binary on a random loopback port (sandbox mode unless told
//! otherwise) and talks HTTP to it, with the built-in simulator playing WeChat.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// The callback token the sandbox uses when WXLOGIN_TOKEN is not set.
pub const SANDBOX_TOKEN: &str = "sandbox-token";

/// An admin token for servers started with `WXLOGIN_ADMIN_TOKEN` set to it.
pub const ADMIN_TOKEN: &str = "an-admin-token-long-enough-0123";

/// The key of the test's "browser" (see [`browser_client`]).
pub const BROWSER_KEY: &str = "test-browser-key-0123456789abcdefghijklmnop";

/// A client that acts as one browser: every request carries the `wxlogin_browser` cookie that
/// `POST /api/qrcode` hands a new browser, so the scenes it creates are its own.
pub fn browser_client() -> reqwest::Client {
    browser_client_builder().build().unwrap()
}

pub fn browser_client_builder() -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::COOKIE,
        format!("wxlogin_browser={BROWSER_KEY}").parse().unwrap(),
    );
    reqwest::Client::builder().default_headers(headers)
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub data_dir: Arc<TempDir>,
    env: Vec<(String, String)>,
    child: Child,
    log: Arc<Mutex<String>>,
}

/// The default `WXLOGIN_SCENE_PREFIX`, which a login QR code's `scene_str` starts with.
pub const SCENE_PREFIX: &str = "wxl_";

pub struct Qr {
    pub scene_id: String,
    pub ticket: String,
}

impl Qr {
    /// The `EventKey` WeChat pushes for a scan of this QR code (default prefix).
    pub fn event_key(&self) -> String {
        format!("{SCENE_PREFIX}{}", self.scene_id)
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(env: &[(&str, &str)]) -> TestApp {
    spawn_app_on(Arc::new(tempfile::tempdir().unwrap()), env).await
}

/// Starts a server on existing data.
pub async fn spawn_app_on(data_dir: Arc<TempDir>, env: &[(&str, &str)]) -> TestApp {
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    start(env, data_dir)
}

fn command(env: &[(String, String)], data_dir: &TempDir) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wxlogin"));
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("WXLOGIN_")) {
        command.env_remove(name);
    }
    command
        .env("WXLOGIN_BIND", "127.0.0.1:0")
        .env("WXLOGIN_DATA_DIR", data_dir.path())
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn start(env: Vec<(String, String)>, data_dir: Arc<TempDir>) -> TestApp {
    start_adjusted(env, data_dir, |_| {})
}

/// Starts a server whose command `adjust` changes first (to start it with other process
/// limits, say).
pub fn spawn_app_adjusted(env: &[(&str, &str)], adjust: impl FnOnce(&mut Command)) -> TestApp {
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    start_adjusted(env, Arc::new(tempfile::tempdir().unwrap()), adjust)
}

fn start_adjusted(
    env: Vec<(String, String)>,
    data_dir: Arc<TempDir>,
    adjust: impl FnOnce(&mut Command),
) -> TestApp {
    let mut command = command(&env, &data_dir);
    adjust(&mut command);
    let mut child = command.spawn().expect("the wxlogin binary starts");
    let log = Arc::new(Mutex::new(String::new()));
    drain_into(child.stderr.take().unwrap(), log.clone());
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(address) = line.strip_prefix("wxlogin listening on ") {
                let _ = tx.send(address.to_owned());
            }
        }
    });
    let address = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(address) => address,
        Err(_) => {
            let _ = child.kill();
            panic!("wxlogin did not start:\n{}", log.lock().unwrap());
        }
    };
    TestApp {
        address,
        client: browser_client(),
        data_dir,
        env,
        child,
        log,
    }
}

fn drain_into(stream: impl Read + Send + 'static, log: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut log = log.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
}

/// Real mode pointed at a port nothing listens on: it starts, and never reaches WeChat.
pub const REAL: [(&str, &str); 4] = [
    ("WXLOGIN_APPID", "wx0000000000000000"),
    ("WXLOGIN_APPSECRET", "secret"),
    ("WXLOGIN_TOKEN", "token"),
    ("WXLOGIN_WECHAT_API", "http://127.0.0.1:9"),
];

/// Six digits that are not the login or SMS `code` (for `offset` below a million).
pub fn other_code(code: &str, offset: u32) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + offset) % 1_000_000)
}

/// What PostgreSQL's own client prints for `sql`, unaligned, one row a line.
pub fn psql(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([url, "-qAtc", sql])
        .output()
        .expect("psql runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the binary with `env` and waits for it to exit; returns its status and stderr.
pub fn run_to_exit(env: &[(&str, &str)]) -> (ExitStatus, String) {
    let (status, _, stderr) = run_command(&[], env);
    (status, stderr)
}

/// Runs `wxlogin ARGS...` with `env` (in a fresh data directory unless `env` names one) and
/// waits, at most 10 s, for it to exit; returns its status, stdout and stderr.
pub fn run_command(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let data_dir = tempfile::tempdir().unwrap();
    let env: Vec<_> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut child = command(&env, &data_dir).args(args).spawn().unwrap();
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stdout = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut stdout)
                .unwrap();
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            return (status, stdout, stderr);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("wxlogin {args:?} kept running with {env:?}");
}

/// `tests/browser`, where the Node scripts live, with the packages `npm ci` installs there.
/// Tests that run them are ignored where build.rs finds no Node or no packages (`has_node`),
/// except under CI, where a missing tool fails them here.
pub fn node_scripts() -> PathBuf {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        scripts.join("node_modules").exists(),
        "tests/browser/node_modules is missing: run (cd tests/browser && npm ci)"
    );
    scripts
}

/// The Python of `tests/rp/.venv`, where the Python relying parties' packages are
/// (`tests/rp/requirements.txt`); tests that use it are ignored without it (`has_rp_venv`).
pub fn rp_python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rp/.venv/bin/python");
    assert!(
        python.exists(),
        "tests/rp/.venv is missing: python3 -m venv tests/rp/.venv && tests/rp/.venv/bin/pip install -r tests/rp/requirements.txt"
    );
    python
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// WeChat's signature over `parts`, computed here independently of the code under test.
pub fn wechat_signature(parts: &[&str]) -> String {
    let mut parts = parts.to_vec();
    parts.sort_unstable();
    hex::encode(Sha1::digest(parts.concat()))
}

/// A query string signed with `token`, timestamped now, with a fresh nonce as WeChat signs
/// each push (a pair already used with another body is refused as a replay).
pub fn signed_query(token: &str) -> String {
    signed_query_at(token, unix_now())
}

pub fn signed_query_at(token: &str, timestamp: u64) -> String {
    let timestamp = timestamp.to_string();
    let nonce = fresh_nonce();
    format!(
        "signature={}&timestamp={timestamp}&nonce={nonce}",
        wechat_signature(&[token, &timestamp, &nonce])
    )
}

/// A random nonce, like the ones WeChat puts on each request.
pub fn fresh_nonce() -> String {
    rand::random::<u64>().to_string()
}

pub fn event_xml(openid: &str, create_time: u64, event: &str, event_key: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_sandbox]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>\
         <CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>\
         <EventKey><![CDATA[{event_key}]]></EventKey></xml>"
    )
}

pub fn text_xml(openid: &str, create_time: u64, content: &str, msg_id: u64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_sandbox]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>\
         <CreateTime>{create_time}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>\
         <MsgId>{msg_id}</MsgId></xml>"
    )
}

impl TestApp {
    /// What the server has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (at most 10 s) until the log contains `needle`: the log is read from the server's
    /// stderr by another thread, so a line written just now may not be in it yet.
    pub async fn wait_for_log(&self, needle: &str) {
        for _ in 0..200 {
            if self.log().contains(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{needle:?} never appeared in the log:\n{}", self.log());
    }

    /// `GET path` with the admin token ([`ADMIN_TOKEN`]).
    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (at most 10 s) until `/readyz` answers 200: the first access token is in. A
    /// failed request counts as not ready: after a long wait (a database restarting), the
    /// pooled connection may be one the server just closed as idle.
    pub async fn wait_until_ready(&self) {
        for _ in 0..200 {
            let ready = self.client.get(self.url("/readyz")).send().await;
            if ready.is_ok_and(|response| response.status() == StatusCode::OK) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("never ready:\n{}", self.log());
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Kills the server (SIGKILL: nothing gets a chance to flush) and starts it again on the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Starts the server again on the same data and settings, after [`TestApp::stop`] or
    /// [`TestApp::terminate`].
    pub fn start_again(&mut self) {
        let next = start(self.env.clone(), self.data_dir.clone());
        *self = next;
    }

    /// Stops the server with SIGSTOP and waits until every one of its threads has stopped, so
    /// that it answers nothing more: what a power cut does to a process. A thread inside a
    /// system call stops when the call returns.
    pub async fn freeze(&self) {
        let pid = self.child.id();
        assert!(Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .unwrap()
            .success());
        let stopped = |thread: std::fs::DirEntry| {
            let stat = std::fs::read_to_string(thread.path().join("stat")).unwrap_or_default();
            // The state follows the command name, which is in parentheses.
            let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
            matches!(state, Some("T" | "t"))
        };
        for _ in 0..400 {
            let threads = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
            if threads.map_while(Result::ok).all(stopped) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("wxlogin did not stop within 2 s of SIGSTOP");
    }

    /// Kills the server and leaves its data directory for inspection.
    pub fn stop(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM and waits, at most 20 s, for the server to exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("wxlogin did not exit within 20 s of SIGTERM");
    }

    pub async fn post_json(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_owned(&self, path: String) -> reqwest::Response {
        self.get(&path).await
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn request_qr(&self) -> reqwest::Response {
        self.client
            .post(self.url("/api/qrcode"))
            .send()
            .await
            .unwrap()
    }

    pub async fn create_qr(&self) -> Qr {
        let response = self.request_qr().await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        Qr {
            scene_id: body["scene_id"].as_str().unwrap().to_owned(),
            ticket: body["ticket"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn status(&self, scene_id: &str, wait: u64) -> (StatusCode, Value) {
        let response = self
            .get(&format!("/api/qrcode/{scene_id}/status?wait={wait}"))
            .await;
        (response.status(), response.json().await.unwrap())
    }

    /// The simulated phone scans `ticket`; returns WeChat's view: the callback's HTTP status and reply text.
    pub async fn scan(&self, ticket: &str, openid: &str, follow: bool) -> Value {
        self.scan_at(ticket, openid, follow, None).await
    }

    pub async fn scan_at(
        &self,
        ticket: &str,
        openid: &str,
        follow: bool,
        create_time: Option<u64>,
    ) -> Value {
        let body = json!({"ticket": ticket, "openid": openid, "follow": follow, "create_time": create_time});
        let response = self.post_json("/sandbox/scan", body).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// The simulated user sends the account a text message; returns the callback's status and reply.
    pub async fn text(&self, openid: &str, content: &str) -> Value {
        let body = json!({"openid": openid, "content": content});
        let response = self.post_json("/sandbox/text", body).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// The simulated user follows the account without scanning a login QR code.
    pub async fn follow(&self, openid: &str) -> Value {
        let response = self
            .post_json("/sandbox/follow", json!({"openid": openid}))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// In code mode: a new scene's id and the login code its page shows.
    pub async fn create_code_login(&self) -> (String, String) {
        let response = self.request_qr().await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["mode"], "code", "{body}");
        (
            body["scene_id"].as_str().unwrap().to_owned(),
            body["code"].as_str().unwrap().to_owned(),
        )
    }

    /// The Prometheus line of `metric` (name and labels) holds `value`.
    pub async fn assert_metric(&self, metric: &str, value: u64) {
        let text = self.get("/metrics").await.text().await.unwrap();
        assert!(
            text.lines().any(|line| line == format!("{metric} {value}")),
            "no `{metric} {value}` in:\n{text}"
        );
    }

    pub async fn unsubscribe(&self, openid: &str, create_time: Option<u64>) -> Value {
        let response = self
            .post_json(
                "/sandbox/unsubscribe",
                json!({"openid": openid, "create_time": create_time}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    pub async fn request_code(&self, scene_id: &str, phone: &str) -> reqwest::Response {
        self.post_json(
            &format!("/api/qrcode/{scene_id}/sms"),
            json!({"phone": phone}),
        )
        .await
    }

    /// The last code the sandbox's simulated SMS delivered to `phone`.
    pub async fn sms_code(&self, phone: &str) -> String {
        let body: Value = self
            .get(&format!("/sandbox/sms/{phone}"))
            .await
            .json()
            .await
            .unwrap();
        body["code"].as_str().unwrap().to_owned()
    }

    pub async fn bind(&self, scene_id: &str, phone: &str, code: &str) -> reqwest::Response {
        self.post_json(
            &format!("/api/qrcode/{scene_id}/bind"),
            json!({"phone": phone, "code": code}),
        )
        .await
    }

    pub async fn me(&self, token: &str) -> reqwest::Response {
        self.client
            .get(self.url("/api/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// A new user's whole first login; returns the session token.
    pub async fn sign_up(&self, openid: &str, phone: &str) -> String {
        let qr = self.create_qr().await;
        self.scan(&qr.ticket, openid, true).await;
        self.bind_phone(&qr.scene_id, phone).await
    }

    /// The scene, scanned and waiting for a phone, is sent a code for `phone` and bound with
    /// it; returns the session token.
    pub async fn bind_phone(&self, scene_id: &str, phone: &str) -> String {
        assert_eq!(
            self.request_code(scene_id, phone).await.status(),
            StatusCode::ACCEPTED
        );
        let code = self.sms_code(phone).await;
        let response = self.bind(scene_id, phone, &code).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["token"].as_str().unwrap().to_owned()
    }

    /// A bound user scans a new QR code; returns the session token the scene carries.
    pub async fn scan_in(&self, openid: &str) -> String {
        let qr = self.create_qr().await;
        self.scan(&qr.ticket, openid, false).await;
        let (_, status) = self.status(&qr.scene_id, 0).await;
        assert_eq!(status["state"], "logged_in", "{status}");
        status["token"].as_str().unwrap().to_owned()
    }

    pub async fn control(&self, body: Value) {
        let response = self.post_json("/sandbox/control", body).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }

    pub async fn sandbox_stats(&self) -> Value {
        self.get("/sandbox/stats").await.json().await.unwrap()
    }

    /// POSTs `body` to the callback with the given query string.
    pub async fn post_callback(
        &self,
        query: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/wechat?{query}")))
            .header("Content-Type", "text/xml")
            .body(body)
            .send()
            .await
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- wxlogin's log ---\n{}", self.log.lock().unwrap());
        }
    }
}

/// A stand-in for a server the service calls (an SMS gateway, WeChat's API) on a random
/// loopback port: every request gets `status` with the JSON `answer`, and each request's body
/// comes out of the receiver. Returns the server's base URL.
pub async fn fake_server(status: u16, answer: &'static str) -> (String, UnboundedReceiver<String>) {
    let (base, mut requests) = answering_server(move |_| (status, answer.to_owned())).await;
    let (tx, rx) = unbounded_channel();
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            let _ = tx.send(request.body);
        }
    });
    (base, rx)
}

/// One HTTP request as a fake server received it.
#[derive(Debug)]
pub struct Received {
    pub method: String,
    /// The path and query, as sent.
    pub target: String,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A fake server whose answer (status, JSON body) `answer` decides from each request; each
/// request then comes out of the receiver.
pub async fn answering_server(
    answer: impl Fn(&Received) -> (u16, String) + Send + 'static,
) -> (String, UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let received = read_request(&mut stream).await;
            let (status, answer) = answer(&received);
            let _ = tx.send(received);
            write_answer(&mut stream, status, &answer).await;
        }
    });
    (base, rx)
}

/// Reads one HTTP request from `stream`, as a fake server receives it.
pub async fn read_request(stream: &mut TcpStream) -> Received {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "the client closed the connection before a whole request"
        );
        request.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&request).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let mut lines = head.lines();
            let mut start = lines.next().unwrap_or_default().split(' ');
            let method = start.next().unwrap_or_default().to_owned();
            let target = start.next().unwrap_or_default().to_owned();
            let headers: Vec<_> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            if body.len() >= length {
                return Received {
                    method,
                    target,
                    headers,
                    body: body.to_owned(),
                };
            }
        }
    }
}

/// Answers a fake server's request with `status` and the JSON `answer`, closing the connection.
pub async fn write_answer(stream: &mut TcpStream, status: u16, answer: &str) {
    // A redirect points at /moved on the same server.
    let location = if (300..400).contains(&status) {
        "location: /moved\r\n"
    } else {
        ""
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\n{location}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    );
    stream.write_all(response.as_bytes()).await.unwrap();
}

/// Asserts an error answer: status and JSON `{"error": code, "message": ...}`.
pub async fn assert_error(response: reqwest::Response, status: StatusCode, code: &str) {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("error bodies are JSON");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// Reads a `text/event-stream` answer one event at a time.
pub struct Events {
    pub response: reqwest::Response,
    buffer: String,
}

impl Events {
    pub async fn open(app: &TestApp, scene_id: &str) -> Self {
        Self::new(app.get(&format!("/api/qrcode/{scene_id}/events")).await)
    }

    /// Reads `response`, which must be an event stream.
    pub fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event's data, skipping comments; `None` once the server closed the stream.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(data) = block.strip_prefix("data: ") {
                    return Some(serde_json::from_str(data.trim_end()).unwrap());
                }
                assert!(
                    block.starts_with(':'),
                    "neither data nor comment: {block:?}"
                );
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("an event within 10 s")
                .unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}
