//! The official account's own server, played by tests/relay/account_server.py (Python's
//! standard library only): it checks each push's signatures itself, decrypts safe-mode pushes
//! with its own AES code, records the raw bytes it got and answers with a passive text reply.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

pub struct AccountServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    child: Child,
}

impl AccountServer {
    /// Starts `account_server.py ARGS` and waits until it listens.
    pub fn start(args: &[&str]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/relay/account_server.py");
        // -B: no __pycache__ in the source tree.
        let mut child = Command::new("python3")
            .arg("-B")
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(base) = line.strip_prefix("listening on ") {
                    let _ = tx.send(base.to_owned());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the account's server starts");
        Self { base, child }
    }

    /// What it received so far, oldest first.
    pub async fn seen(&self) -> Vec<Value> {
        let seen = reqwest::get(format!("{}/_test/seen", self.base))
            .await
            .unwrap();
        seen.json().await.unwrap()
    }

    /// Waits (at most 10 s) until it received `count` pushes, and answers them.
    pub async fn wait_for(&self, count: usize) -> Vec<Value> {
        for _ in 0..200 {
            let seen = self.seen().await;
            if seen.len() >= count {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the account's server never got {count} pushes: {:?}",
            self.seen().await
        );
    }

    /// In front of wxlogin: where it sends the login pushes on.
    pub async fn forward_to(&self, wxlogin_callback: &str) {
        let set = reqwest::Client::new()
            .post(format!("{}/_test/wxlogin", self.base))
            .body(wxlogin_callback.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(set.status(), 204);
    }
}

impl Drop for AccountServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A base64 field of a recorded push, decoded.
pub fn bytes_of(record: &Value, name: &str) -> Vec<u8> {
    STANDARD.decode(record[name].as_str().unwrap()).unwrap()
}
