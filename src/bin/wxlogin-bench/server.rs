//! The server under load: a `wxlogin` the tool starts itself (sandbox mode, loopback, a fresh
//! data directory) or one already running at a loopback URL.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::json;

use crate::http::Error;

/// The sandbox account's callback token and AppID (see README.md).
pub const SANDBOX_TOKEN: &str = "sandbox-token";
pub const SANDBOX_APPID: &str = "wxsandbox0000000";
/// The safe-mode key of the server scenario 2 starts for safe mode.
pub const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

/// Limits a newer wxlogin may enforce; `0` turns each off so load is never refused.
const LIMITS_OFF: [&str; 4] = [
    "WXLOGIN_QR_PER_IP_PER_MIN",
    "WXLOGIN_MAX_SCENES",
    "WXLOGIN_SMS_PER_PHONE_PER_HOUR",
    "WXLOGIN_SMS_PER_IP_PER_HOUR",
];

pub struct Server {
    pub addr: SocketAddr,
    /// `None` for a server this tool did not start.
    child: Option<Child>,
    data_dir: Option<PathBuf>,
    /// What the server wrote to stderr so far.
    log: Arc<Mutex<String>>,
}

impl Server {
    /// A server someone else runs; only loopback addresses are accepted.
    pub fn target(url: &str) -> Result<Self, Error> {
        let rest = url
            .strip_prefix("http://")
            .ok_or("--url must be http://127.0.0.1:PORT")?;
        let addr: SocketAddr = rest.trim_end_matches('/').parse()?;
        if !addr.ip().is_loopback() {
            return Err("load is generated against loopback addresses only".into());
        }
        Ok(Self {
            addr,
            child: None,
            data_dir: None,
            log: Arc::default(),
        })
    }

    /// A data directory no server has used yet.
    pub fn fresh_data_dir() -> PathBuf {
        std::env::temp_dir().join(format!(
            "wxlogin-bench-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ))
    }

    /// Starts `binary` on 127.0.0.1:0 with `env` on top of the bench defaults, and waits for
    /// its `wxlogin listening on` line.
    pub fn spawn(binary: &Path, env: &[(&str, String)]) -> Result<Self, Error> {
        Self::spawn_in(binary, env, Self::fresh_data_dir())
    }

    /// As [`Server::spawn`], on `data_dir` (deleted when the server is dropped).
    pub fn spawn_in(
        binary: &Path,
        env: &[(&str, String)],
        data_dir: PathBuf,
    ) -> Result<Self, Error> {
        let mut command = Command::new(binary);
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("WXLOGIN_")) {
            command.env_remove(name);
        }
        command
            .env("WXLOGIN_BIND", "127.0.0.1:0")
            .env("WXLOGIN_DATA_DIR", &data_dir)
            .env("RUST_LOG", "warn")
            .envs(LIMITS_OFF.iter().map(|name| (name, "0")))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("wxlogin listening on http://") {
                    let _ = tx.send(address.to_owned());
                }
            }
        });
        let stderr = child.stderr.take().expect("piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (log_tx, log_rx) = mpsc::channel();
        // Keep draining, or a chatty server blocks on a full pipe.
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = lines.lock().expect("never poisoned");
                log.push_str(&line);
                log.push('\n');
            }
            let _ = log_tx.send(());
        });
        let mut server = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child: Some(child),
            data_dir: Some(data_dir),
            log,
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(address) => server.addr = address.parse()?,
            Err(_) => {
                server.kill();
                let _ = log_rx.recv_timeout(Duration::from_secs(5));
                let log = server.log.lock().expect("never poisoned").clone();
                return Err(format!("{} did not start:\n{log}", binary.display()).into());
            }
        }
        Ok(server)
    }

    /// Whether the server has logged a line containing `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.log.lock().expect("never poisoned").contains(text)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The CPU time (user and system) the server has used so far, from /proc: what a request
    /// costs, less swayed than a rate by the neighbours' load.
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()?)).ok()?;
        // The fields after the command name, which is in parentheses and may hold spaces;
        // utime and stime are the 14th and 15th of the line.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // SAFETY: sysconf only reads a system setting.
        let per_sec = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok()?;
        Some(Duration::from_micros(ticks * 1_000_000 / per_sec.max(1)))
    }

    /// The server's resident set, in KiB, from /proc.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = self.data_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A stand-in for WeChat's API (token and QR creation only), so a server in real mode can be
/// measured without the sandbox simulator's own memory in the way. Runs on its own thread
/// for as long as the tool does.
pub fn fake_wechat_api() -> Result<SocketAddr, Error> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(|| {
                App::new()
                    .route("/cgi-bin/token", web::get().to(token))
                    .route("/cgi-bin/qrcode/create", web::post().to(create_qrcode))
            })
            .workers(1)
            .disable_signals()
            .listen(listener)?
            .run();
            server.await
        })
    });
    Ok(addr)
}

async fn token() -> HttpResponse {
    HttpResponse::Ok().json(json!({"access_token": "bench", "expires_in": 7200}))
}

async fn create_qrcode() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "ticket": format!("bench{:016x}", rand::random::<u64>()),
        "expire_seconds": 60,
        "url": "http://weixin.qq.com/q/bench",
    }))
}
