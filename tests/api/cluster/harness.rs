//! A real cluster on this machine: one PostgreSQL ([`TestServer`]), three wxlogin nodes in real
//! mode on it, HAProxy round robin in front (docs/examples/haproxy.cfg, the file the docs show),
//! and one sandbox-mode wxlogin as the WeChat of all three: the nodes fetch tokens and QR
//! codes from its simulator (`WXLOGIN_WECHAT_API`, with the AppSecret it was given by
//! `WXLOGIN_SANDBOX_APPSECRET`), and its simulated phone pushes scans to HAProxy's `/wechat`
//! (`WXLOGIN_SANDBOX_PUSH_URL`). Codes any node texts go to the simulated phone too: the
//! nodes' SMS webhook is its `POST /sandbox/sms`.

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tempfile::TempDir;
use wxlogin_storage::test_server::{unprivileged, TestServer};

use crate::helpers::{browser_client_builder, spawn_app_adjusted, TestApp};

/// The simulated account: its AppID is the sandbox's own; the secret and the callback token
/// are the ones the simulator is told to use and the nodes are given.
pub const APPID: &str = "wxsandbox0000000";
pub const APPSECRET: &str = "cluster-test-appsecret-0123456789";
pub const CALLBACK_TOKEN: &str = "cluster-callback-token";

/// How many nodes the cluster runs.
pub const NODES: usize = 3;

/// The header HAProxy names the answering node in (`X-Served-By`: node1, node2, node3).
const SERVED_BY: &str = "x-served-by";

pub struct Cluster {
    /// `None` once [`Cluster::kill`]ed.
    nodes: Vec<Option<TestApp>>,
    pub balancer: Haproxy,
    pub wechat: TestApp,
    pub database: TestServer,
    /// A browser talking to HAProxy, on a new connection for every request.
    pub browser: reqwest::Client,
    /// The access tokens the simulated WeChat had handed out before the nodes started.
    pub tokens_before_nodes: u64,
}

/// The settings every node has: the same database, the same account, the simulator as
/// WeChat and as SMS gateway, HAProxy as the proxy whose address entries it trusts.
fn node_env(database: &str, wechat: &TestApp) -> Vec<(String, String)> {
    [
        ("WXLOGIN_DATABASE_URL", database.to_owned()),
        ("WXLOGIN_APPID", APPID.to_owned()),
        ("WXLOGIN_APPSECRET", APPSECRET.to_owned()),
        ("WXLOGIN_TOKEN", CALLBACK_TOKEN.to_owned()),
        ("WXLOGIN_WECHAT_API", wechat.url("/sandbox/api")),
        ("WXLOGIN_SMS_WEBHOOK", wechat.url("/sandbox/sms")),
        ("WXLOGIN_TRUST_PROXY", "true".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}

impl Cluster {
    /// Starts everything, the three nodes at once (so they race for migrations and for the
    /// first access token), and waits until HAProxy has seen each node healthy.
    pub async fn start() -> Self {
        let database = TestServer::start();
        let url = database.new_database().await;
        // HAProxy's socket exists before the simulator is told where to push.
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let front_url = format!("http://{}", front.local_addr().unwrap());
        let wechat = crate::helpers::spawn_app_with(&[
            ("WXLOGIN_TOKEN", CALLBACK_TOKEN),
            ("WXLOGIN_SANDBOX_APPSECRET", APPSECRET),
            ("WXLOGIN_SANDBOX_PUSH_URL", &format!("{front_url}/wechat")),
        ])
        .await;
        // The sandbox fetches its own token at start: the nodes' fetches are counted after it.
        wechat.wait_until_ready().await;
        let tokens_before_nodes = token_fetches(&wechat).await;
        let env = node_env(&url, &wechat);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let nodes = std::thread::scope(|scope| {
            let starting: Vec<_> = (0..NODES)
                .map(|_| scope.spawn(|| spawn_app_adjusted(&env, |_| {})))
                .collect();
            starting
                .into_iter()
                .map(|node| Some(node.join().expect("a node starts")))
                .collect::<Vec<_>>()
        });
        let addresses: Vec<String> = nodes
            .iter()
            .flatten()
            .map(|node| node.address.trim_start_matches("http://").to_owned())
            .collect();
        let balancer = Haproxy::start(front, &addresses);
        let browser = browser_client_builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let cluster = Self {
            nodes,
            balancer,
            wechat,
            database,
            browser,
            tokens_before_nodes,
        };
        cluster.wait_until_every_node_is_up().await;
        cluster
    }

    /// Waits (at most 20 s) until HAProxy has sent `/healthz` to each node and got it back.
    async fn wait_until_every_node_is_up(&self) {
        let mut seen = [false; NODES];
        for _ in 0..400 {
            if let Ok(response) = self.browser.get(self.url("/healthz")).send().await {
                if response.status() == StatusCode::OK {
                    if let Some(node) = served_by(&response) {
                        seen[node] = true;
                    }
                }
            }
            if seen.iter().all(|up| *up) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "HAProxy never reached every node ({seen:?}):\n{}",
            self.balancer.log()
        );
    }

    /// `path` at HAProxy.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.balancer.url)
    }

    /// Node `n` (0-based, as [`served_by`] numbers them), if it was not killed.
    pub fn node(&self, n: usize) -> &TestApp {
        self.nodes[n].as_ref().expect("a live node")
    }

    /// `kill -9` node `n`.
    pub fn kill(&mut self, n: usize) {
        let mut node = self.nodes[n].take().expect("a live node");
        node.stop();
    }

    /// Logs of every node still running, for a failure's message.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(n, node)| node.as_ref().map(|node| (n, node.log())))
            .map(|(n, log)| format!("--- node{} ---\n{log}", n + 1))
            .collect()
    }

    /// The simulated user scans `ticket` (the simulator pushes to HAProxy's `/wechat`);
    /// returns what the node that got the push answered WeChat.
    pub async fn scan(&self, ticket: &str, openid: &str, follow: bool) -> Value {
        self.wechat.scan(ticket, openid, follow).await
    }

    /// How many access tokens the simulated WeChat has handed out since the nodes started.
    pub async fn node_token_fetches(&self) -> u64 {
        token_fetches(&self.wechat).await - self.tokens_before_nodes
    }

    /// The sum over the live nodes of the Prometheus samples whose line starts with `series`
    /// (a metric's name and `{`) and contains `label` (`outcome="redelivery"`, say).
    pub async fn metric_sum(&self, series: &str, label: &str) -> u64 {
        let mut sum = 0;
        for node in self.nodes.iter().flatten() {
            sum += node_metric(node, series, label).await;
        }
        sum
    }

    /// The live nodes (0-based) whose samples of `series` with `label` sum above zero.
    pub async fn nodes_counting(&self, series: &str, label: &str) -> Vec<usize> {
        let mut counting = Vec::new();
        for (n, node) in self.nodes.iter().enumerate() {
            if let Some(node) = node {
                if node_metric(node, series, label).await > 0 {
                    counting.push(n);
                }
            }
        }
        counting
    }
}

/// The sum of `node`'s Prometheus samples whose line starts with `series` and contains `label`.
async fn node_metric(node: &TestApp, series: &str, label: &str) -> u64 {
    let text = node.get("/metrics").await.text().await.unwrap();
    text.lines()
        .filter(|line| line.starts_with(series) && line.contains(label))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// How many access tokens `wechat`'s simulator has handed out, by either endpoint.
async fn token_fetches(wechat: &TestApp) -> u64 {
    let stats = wechat.sandbox_stats().await;
    stats["token_fetches"].as_u64().unwrap() + stats["stable_token_fetches"].as_u64().unwrap()
}

/// Which node answered (0-based), from HAProxy's `X-Served-By`.
pub fn served_by(response: &reqwest::Response) -> Option<usize> {
    let name = response.headers().get(SERVED_BY)?.to_str().ok()?;
    let n: usize = name.strip_prefix("node")?.parse().ok()?;
    (1..=NODES).contains(&n).then(|| n - 1)
}

/// HAProxy running docs/examples/haproxy.cfg with this machine's addresses, in the
/// foreground, unprivileged when the tests run as root, killed on drop (and with the test
/// process, by the parent-death signal).
pub struct Haproxy {
    pub url: String,
    child: Child,
    /// The config, and HAProxy's output.
    dir: TempDir,
}

/// The lines of docs/examples/haproxy.cfg the test replaces, each of which must be there
/// exactly once (so the documented file cannot drift from the one tested).
fn tested_config(documented: &str, nodes: &[String]) -> String {
    let mut replacements = vec![
        (
            "    log /dev/log local0\n".to_owned(),
            "    log stderr format raw local0\n".to_owned(),
        ),
        ("    user haproxy\n".to_owned(), String::new()),
        ("    group haproxy\n".to_owned(), String::new()),
        // The listening socket is the test's, inherited as descriptor 3.
        ("    bind :80\n".to_owned(), "    bind fd@3\n".to_owned()),
    ];
    for (n, address) in nodes.iter().enumerate() {
        replacements.push((
            format!("    server node{} 10.0.0.1{}:8080\n", n + 1, n + 1),
            format!("    server node{} {address}\n", n + 1),
        ));
    }
    let mut config = documented.to_owned();
    for (from, to) in replacements {
        assert_eq!(
            config.matches(&from).count(),
            1,
            "docs/examples/haproxy.cfg no longer has {from:?} once: update the cluster test with it"
        );
        config = config.replace(&from, &to);
    }
    config
}

/// HAProxy's binary: on `PATH`, else Debian's.
fn haproxy_binary() -> PathBuf {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("haproxy"))
        .find(|bin| bin.is_file())
        .expect("haproxy is installed (apt-get install haproxy)")
}

impl Haproxy {
    fn start(front: TcpListener, nodes: &[String]) -> Self {
        let documented = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/haproxy.cfg");
        let config = tested_config(&std::fs::read_to_string(documented).unwrap(), nodes);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let url = format!("http://{}", front.local_addr().unwrap());
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let mut command = Command::new(haproxy_binary());
        command
            .args(["-db", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some((uid, gid)) = unprivileged() {
            // The config must be readable by the user HAProxy runs as.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            command.uid(uid).gid(gid);
        }
        let fd = front.as_raw_fd();
        // SAFETY: dup2, fcntl and prctl are async-signal-safe and touch only this child.
        unsafe {
            command.pre_exec(move || {
                if fd == 3 {
                    // dup2 onto itself would leave close-on-exec set.
                    if libc::fcntl(3, libc::F_SETFD, 0) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, 3) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                // Dies with the test, even one killed before its destructors ran.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("haproxy starts");
        drop(front);
        Self { url, child, dir }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- HAProxy's log ---\n{}", self.log());
        }
    }
}

/// The nodes one browser's requests through HAProxy landed on, in the order they were sent.
#[derive(Default)]
pub struct Trail {
    nodes: Vec<Option<usize>>,
    /// Every node is up, so round robin moves each request on to another node.
    round_robin: bool,
}

impl Trail {
    /// A trail in which no request lands on the node of the request sent before or after it,
    /// as round robin does while every node is up (a node going down reshuffles the round).
    pub fn round_robin() -> Self {
        Self {
            round_robin: true,
            ..Self::default()
        }
    }

    /// Sends `request` and records its answer; a request HAProxy could not deliver fails the
    /// test.
    pub async fn send(
        &mut self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> reqwest::Response {
        let place = self.sent();
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        self.answered(place, what, &response);
        response
    }

    /// A request is sent whose answer comes later (a long-poll): its place in the order.
    pub fn sent(&mut self) -> usize {
        self.nodes.push(None);
        self.nodes.len() - 1
    }

    /// Notes which node answered the request sent at `place`; in a [`Trail::round_robin`],
    /// another node than the ones that answered the requests sent just before and after it.
    pub fn answered(&mut self, place: usize, what: &str, response: &reqwest::Response) {
        let node = served_by(response)
            .unwrap_or_else(|| panic!("{what}: no node answered ({})", response.status()));
        let neighbours =
            [place.checked_sub(1), Some(place + 1)].map(|n| n.filter(|_| self.round_robin));
        for neighbour in neighbours.into_iter().flatten() {
            assert_ne!(
                self.nodes.get(neighbour).copied().flatten(),
                Some(node),
                "{what} landed on node{} as the request next to it (trail {:?})",
                node + 1,
                self.nodes
            );
        }
        self.nodes[place] = Some(node);
    }

    /// The nodes that answered, in the order the requests were sent.
    pub fn nodes(&self) -> Vec<usize> {
        self.nodes.iter().flatten().copied().collect()
    }
}
