//! Scenario 7: a live scene's status latency while the store purges expired sessions and
//! while `GET /admin/backup` streams every binding, against its idle latency.
//!
//! The data directory is filled before the server starts, straight through the storage crate:
//! bindings as a restore writes them, and one already expired session for each. The server's
//! first purge runs as it starts, so the purge is measured first, the idle service once the
//! purge has logged its end, then the backup.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::sleep_until;
use wxlogin_storage::{LoginMethod, NewSession, OpenId, Phone, SessionToken, Store};

use crate::flows::{create_scene, status_path, unix_now};
use crate::http::{join_all, open_many, Conn, Error, Req};
use crate::report::Row;
use crate::server::Server;
use crate::Sizes;

const ADMIN_TOKEN: &str = "wxlogin-bench-admin-token-0123456789abcdef";
/// In what the server logs once its purge of expired sessions is done, or has failed.
const PURGE_ENDED: &str = "expired sessions";
const PURGED: &str = "expired sessions removed";
/// Sessions opened at once while preparing: group commit shares one sync among them.
const OPENING_AT_ONCE: usize = 256;
/// Connections probing status, each sending one request per interval, and one probing
/// `/healthz` at the same pace.
const STATUS_PROBES: usize = 4;
const PROBE_INTERVAL: Duration = Duration::from_millis(5);
/// The ratio to idle the status p99 must stay within (issue 14).
const MAX_RATIO: f64 = 2.0;

pub async fn storage_stalls(binary: &Path, sizes: &Sizes) -> Result<Vec<Row>, Error> {
    let n = sizes.stall_records;
    let data_dir = Server::fresh_data_dir();
    let prepared = Instant::now();
    fill(&data_dir, n).await?;
    let prepare_secs = prepared.elapsed().as_secs_f64();
    eprintln!(
        "storage stalls: {n} bindings and {n} expired sessions written in {prepare_secs:.0}s"
    );
    let server = Server::spawn_in(
        binary,
        &[
            ("WXLOGIN_ADMIN_TOKEN", ADMIN_TOKEN.into()),
            // The purge's end is read from its log line.
            ("RUST_LOG", "warn,wxlogin::startup=info".into()),
        ],
        data_dir,
    )?;
    let mut admin = Conn::open(server.addr).await?;

    let purging = Instant::now();
    let purge = probe(&server, async {
        while !server.logged(PURGE_ENDED) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await?;
    let purge_secs = purging.elapsed().as_secs_f64();
    let purge_failed = u64::from(!server.logged(PURGED));
    if purge_failed > 0 {
        eprintln!("storage stalls: the purge failed");
    }
    let idle = probe(&server, tokio::time::sleep(sizes.duration)).await?;
    let backing_up = Instant::now();
    let mut backed_up = 0;
    let backup = probe(&server, async {
        let backup = Req::get("/admin/backup".into()).with_bearer(ADMIN_TOKEN);
        backed_up = match admin.ok(&backup).await {
            Ok(body) => body.iter().filter(|&&b| b == b'\n').count(),
            Err(e) => {
                eprintln!("storage stalls: backup failed: {e}");
                0
            }
        };
    })
    .await?;
    let backup_secs = backing_up.elapsed().as_secs_f64();
    let incomplete = u64::from(backed_up != n);
    if incomplete > 0 {
        eprintln!("storage stalls: the backup held {backed_up} bindings of {n}");
    }

    let idle_p99 = idle.status_p99();
    let row = |name: String, under: &Probe, secs: f64, failed: u64| {
        let ratio = under.status_p99() / idle_p99;
        Row::fact(
            &name,
            format!(
                "p99 {:.2} ms, {ratio:.2}× idle, {secs:.1}s",
                under.status_p99()
            ),
            "≤ 2× idle p99",
            Some(ratio <= MAX_RATIO),
            under.failed + failed,
        )
    };
    Ok(vec![
        Row::fact(
            &format!("7 status, idle ({n} records)"),
            format!("p99 {idle_p99:.2} ms, prepared in {prepare_secs:.0}s"),
            "",
            None,
            idle.failed,
        ),
        row(
            format!("  during a purge of {n} sessions"),
            &purge,
            purge_secs,
            purge_failed,
        ),
        row(
            format!("  during a backup of {n} bindings"),
            &backup,
            backup_secs,
            incomplete,
        ),
        Row::fact(
            "  /healthz p99: idle, purge, backup",
            format!(
                "{:.2} / {:.2} / {:.2} ms",
                idle.healthz_p99(),
                purge.healthz_p99(),
                backup.healthz_p99()
            ),
            "",
            None,
            0,
        ),
    ])
}

/// `n` bindings and an expired session for each in a new sandbox data directory.
async fn fill(dir: &Path, n: usize) -> Result<(), Error> {
    wxlogin::mode_marker::claim(dir, true)?;
    let store = Store::open(dir)?;
    for i in 0..n {
        store
            .restore_binding(&openid(i), &phone(i), unix_now())
            .await?;
    }
    store.flush().await?;
    let next = Arc::new(AtomicUsize::new(0));
    let openers = (0..OPENING_AT_ONCE).map(|_| {
        let (store, next) = (store.clone(), next.clone());
        async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, Error>(());
                }
                let binding = store
                    .binding(&openid(i))
                    .await?
                    .ok_or("a restored binding")?;
                let session = NewSession {
                    binding: &binding,
                    digest: &SessionToken::generate().digest(),
                    ttl: Duration::ZERO,
                    method: LoginMethod::Scan,
                    client_ip: "127.0.0.1",
                };
                store.open_session(session).await?;
            }
        }
    });
    for opened in join_all(openers).await {
        opened?;
    }
    Ok(())
}

fn openid(i: usize) -> OpenId {
    OpenId::parse(&format!("obench_stall_{i}")).expect("a valid openid")
}

fn phone(i: usize) -> Phone {
    Phone::parse(&format!("137{i:08}")).expect("a valid phone")
}

/// Latencies in ms, each from the moment its request was due (so a stall counts for every
/// request it held back, not just the one it caught).
struct Probe {
    status: Vec<f64>,
    healthz: Vec<f64>,
    failed: u64,
}

impl Probe {
    fn status_p99(&self) -> f64 {
        p99(&self.status)
    }

    fn healthz_p99(&self) -> f64 {
        p99(&self.healthz)
    }
}

fn p99(sorted: &[f64]) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * 0.99).round() as usize]
}

/// Probes a new scene's status and `/healthz` at a steady pace until `during` completes.
async fn probe(server: &Server, during: impl Future<Output = ()>) -> Result<Probe, Error> {
    let mut conns = open_many(server.addr, STATUS_PROBES + 1).await?;
    let scene = create_scene(&mut conns[0]).await?;
    let status = Req::get(status_path(&scene, 0));
    let healthz = Req::get("/healthz".into());
    let stop = Arc::new(AtomicBool::new(false));
    let start = tokio::time::Instant::now();
    let probes = conns.into_iter().enumerate().map(|(k, mut conn)| {
        let req = if k < STATUS_PROBES {
            status.clone()
        } else {
            healthz.clone()
        };
        let stop = stop.clone();
        // Spread the probes over the interval.
        let offset = PROBE_INTERVAL * k as u32 / (STATUS_PROBES + 1) as u32;
        async move {
            let (mut ms, mut failed) = (Vec::new(), 0u64);
            for i in 0u32.. {
                let due = start + offset + PROBE_INTERVAL * i;
                sleep_until(due).await;
                match conn.send(&req).await {
                    Ok((code, _)) if code.is_success() => {
                        ms.push(due.elapsed().as_secs_f64() * 1000.0)
                    }
                    _ => failed += 1,
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            ms.sort_by(f64::total_cmp);
            (k, ms, failed)
        }
    });
    let probes: Vec<_> = probes.collect();
    let probes = tokio::spawn(join_all(probes));
    during.await;
    stop.store(true, Ordering::Relaxed);
    let mut probe = Probe {
        status: Vec::new(),
        healthz: Vec::new(),
        failed: 0,
    };
    for (k, ms, failed) in probes.await? {
        probe.failed += failed;
        if k < STATUS_PROBES {
            probe.status.extend(ms);
        } else {
            probe.healthz.extend(ms);
        }
    }
    probe.status.sort_by(f64::total_cmp);
    Ok(probe)
}
