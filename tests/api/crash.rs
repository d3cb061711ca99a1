//! Kill -9 at random moments under load, 20 times over: nothing answered as done is lost.
//! The load, the ledger and its check serve the power-cut test too (power_cut.rs).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{browser_client, spawn_app_with, TestApp};

const ADMIN: &str = "crash-test-admin-token-0123456789";
const CYCLES: usize = 20;
const WORKERS: usize = 4;

/// The settings of a server under load: the admin API on, no rate limits.
pub(crate) const LOAD_ENV: [(&str, &str); 4] = [
    ("WXLOGIN_ADMIN_TOKEN", ADMIN),
    ("WXLOGIN_QR_PER_IP_PER_MIN", "0"),
    ("WXLOGIN_SMS_PER_IP_PER_HOUR", "0"),
    ("WXLOGIN_SMS_PER_PHONE_PER_HOUR", "0"),
];

/// What the server answered as done, across every cycle.
#[derive(Default)]
pub(crate) struct Ledger {
    /// openid → phone, for every bind answered 200.
    pub(crate) bound: HashMap<String, String>,
    /// Session tokens answered by a login, with no logout ever attempted.
    live: Vec<String>,
    /// Tokens whose logout was answered 204.
    logged_out: Vec<String>,
    /// Tokens a logout was sent for (answered or not): their state is unknown.
    logout_sent: HashSet<String>,
    /// What checks found undone, dropped from the lists above so that it counts once.
    lost: Lost,
}

#[derive(Default, Clone, Copy)]
struct Lost {
    binds: usize,
    logouts: usize,
    sessions: usize,
}

/// Talks to one server incarnation; every step gives up quietly once it is killed.
struct Worker {
    client: Client,
    base: String,
    ledger: Arc<Mutex<Ledger>>,
}

impl Worker {
    async fn json(&self, request: reqwest::RequestBuilder) -> Option<(StatusCode, Value)> {
        let response = request.send().await.ok()?;
        let status = response.status();
        Some((status, response.json().await.unwrap_or(Value::Null)))
    }

    async fn post(&self, path: &str, body: Value) -> Option<(StatusCode, Value)> {
        self.json(self.client.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    async fn get(&self, path: &str) -> Option<(StatusCode, Value)> {
        self.json(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    /// A QR code scanned by `openid`: its scene id.
    async fn scanned(&self, openid: &str, follow: bool) -> Option<String> {
        let (_, qr) = self.post("/api/qrcode", json!({})).await?;
        let scan = json!({"ticket": qr["ticket"], "openid": openid, "follow": follow});
        self.post("/sandbox/scan", scan).await?;
        Some(qr["scene_id"].as_str()?.to_owned())
    }

    async fn sign_up(&self, openid: &str, phone: &str) -> Option<()> {
        let scene = self.scanned(openid, true).await?;
        self.post(&format!("/api/qrcode/{scene}/sms"), json!({"phone": phone}))
            .await?;
        let (_, sms) = self.get(&format!("/sandbox/sms/{phone}")).await?;
        let bind = json!({"phone": phone, "code": sms["code"]});
        let (status, body) = self
            .post(&format!("/api/qrcode/{scene}/bind"), bind)
            .await?;
        if status == StatusCode::OK {
            let mut ledger = self.ledger.lock().unwrap();
            ledger.bound.insert(openid.to_owned(), phone.to_owned());
            ledger.live.push(body["token"].as_str()?.to_owned());
        }
        Some(())
    }

    async fn log_in(&self, openid: &str) -> Option<()> {
        let scene = self.scanned(openid, false).await?;
        let (_, status) = self.get(&format!("/api/qrcode/{scene}/status")).await?;
        let token = status["token"].as_str()?.to_owned();
        self.ledger.lock().unwrap().live.push(token);
        Some(())
    }

    async fn log_out(&self) -> Option<()> {
        let token = {
            let mut ledger = self.ledger.lock().unwrap();
            if ledger.live.is_empty() {
                // Nobody to log out yet: not a reason to stop, as a dead server is.
                return Some(());
            }
            let index = rand::thread_rng().gen_range(0..ledger.live.len());
            let token = ledger.live.swap_remove(index);
            ledger.logout_sent.insert(token.clone());
            token
        };
        let request = self
            .client
            .post(format!("{}/api/logout", self.base))
            .bearer_auth(&token);
        if request.send().await.ok()?.status() == StatusCode::NO_CONTENT {
            self.ledger.lock().unwrap().logged_out.push(token);
        }
        Some(())
    }

    /// Signs up, logs in and logs out at random until the server dies.
    async fn run(self, name: String, phones: Arc<AtomicU32>) {
        for n in 0.. {
            let choice = rand::thread_rng().gen_range(0..3);
            let step = match choice {
                0 => {
                    let phone = format!("139{:08}", phones.fetch_add(1, Ordering::Relaxed));
                    self.sign_up(&format!("{name}_{n}"), &phone).await
                }
                1 => {
                    let openid = self.ledger.lock().unwrap().bound.keys().next().cloned();
                    match openid {
                        Some(openid) => self.log_in(&openid).await,
                        None => Some(()),
                    }
                }
                _ => self.log_out().await,
            };
            if step.is_none() {
                return;
            }
        }
    }
}

/// Starts `WORKERS` clients loading `app` until it dies, recording what it answered as done.
pub(crate) fn start_load(
    app: &TestApp,
    ledger: &Arc<Mutex<Ledger>>,
    phones: &Arc<AtomicU32>,
    tag: &str,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..WORKERS)
        .map(|w| {
            let worker = Worker {
                client: browser_client(),
                base: app.address.clone(),
                ledger: ledger.clone(),
            };
            tokio::spawn(worker.run(format!("{tag}w{w}"), phones.clone()))
        })
        .collect()
}

/// Checks everything the ledger says was done. What is no longer so is counted as lost and
/// dropped from the ledger, so that each loss counts once over many cycles.
/// Call it once the load has stopped.
pub(crate) async fn verify(app: &TestApp, shared: &Arc<Mutex<Ledger>>) {
    let mut ledger = std::mem::take(&mut *shared.lock().unwrap());
    let bound = std::mem::take(&mut ledger.bound);
    for (openid, phone) in bound {
        let found = app
            .client
            .get(app.url(&format!("/admin/bindings?openid={openid}")))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        let kept = found.status() == StatusCode::OK
            && found.json::<Value>().await.unwrap()["phone"] == phone.as_str();
        match kept {
            true => drop(ledger.bound.insert(openid, phone)),
            false => ledger.lost.binds += 1,
        }
    }
    for token in std::mem::take(&mut ledger.logged_out) {
        match app.me(&token).await.status() {
            StatusCode::UNAUTHORIZED => ledger.logged_out.push(token),
            _ => ledger.lost.logouts += 1,
        }
    }
    for token in std::mem::take(&mut ledger.live) {
        if ledger.logout_sent.contains(&token) || app.me(&token).await.status() == StatusCode::OK {
            ledger.live.push(token);
        } else {
            ledger.lost.sessions += 1;
        }
    }
    let backup = app
        .client
        .get(app.url("/admin/backup"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut phones = HashSet::new();
    for line in backup.lines() {
        let binding: Value = serde_json::from_str(line).unwrap();
        assert!(
            phones.insert(binding["phone"].to_string()),
            "a phone bound twice: {line}"
        );
    }
    *shared.lock().unwrap() = ledger;
}

impl Ledger {
    /// Fails, with the counts, if any check found something answered as done undone; and if
    /// too little was done over `cycles` to prove much.
    pub(crate) fn assert_nothing_lost(&self, cycles: usize, how: &str) {
        let live = self
            .live
            .iter()
            .filter(|t| !self.logout_sent.contains(*t))
            .count();
        let Lost {
            binds,
            logouts,
            sessions,
        } = self.lost;
        let report = format!(
            "{cycles} {how} cycles: {binds} of {} acknowledged binds lost, {logouts} of {} \
             answered logouts undone (the token works again), {sessions} of {} sessions lost",
            self.bound.len() + binds,
            self.logged_out.len() + logouts,
            live + sessions,
        );
        eprintln!("{report}");
        assert_eq!(binds + logouts + sessions, 0, "{report}");
        assert!(
            self.bound.len() >= cycles,
            "too little happened to prove much: {report}"
        );
        assert!(!self.logged_out.is_empty(), "no logout was ever answered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_answered_is_lost_across_kill_9() {
    let mut app = spawn_app_with(&LOAD_ENV).await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let phones = Arc::new(AtomicU32::new(0));
    for cycle in 0..CYCLES {
        let workers = start_load(&app, &ledger, &phones, &format!("oC{cycle}"));
        let uptime = rand::thread_rng().gen_range(50..400);
        tokio::time::sleep(Duration::from_millis(uptime)).await;
        // SIGKILL, then a fresh start on the same data: opening it must succeed every time.
        app.restart();
        for worker in workers {
            worker.await.unwrap();
        }
        verify(&app, &ledger).await;
    }
    ledger
        .lock()
        .unwrap()
        .assert_nothing_lost(CYCLES, "kill -9");
}
