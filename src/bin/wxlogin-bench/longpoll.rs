//! Scenarios 6 and 3: thousands of browsers long-polling at once, first just held open, then
//! answered by scans fired at a steady rate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::time::sleep_until;

use crate::flows::{create_scenes, state_of, status_path, Mode, Scene, Wechat};
use crate::http::{join_all, Conn, Error, Req};
use crate::report::Row;
use crate::server::Server;
use crate::Sizes;

/// Browsers, each on its own connection, each watching its own scene.
pub struct Browsers {
    conns: Vec<Conn>,
    scenes: Vec<Scene>,
}

impl Browsers {
    /// Makes one scene per browser; each browser connects when it first polls, since the
    /// server closes a connection that sends nothing for a few seconds.
    pub async fn new(setup: Vec<Conn>, sizes: &Sizes) -> Result<(Self, Vec<Conn>), Error> {
        let (scenes, setup) = create_scenes(setup, sizes.long_polls).await?;
        let browsers = Self {
            conns: Vec::new(),
            scenes,
        };
        Ok((browsers, setup))
    }

    /// Every browser asks `status?wait=wait` at once; returns when each answer is in, with
    /// the time it arrived and the state it carried.
    fn poll(
        self,
        addr: SocketAddr,
        wait: u64,
    ) -> impl std::future::Future<Output = (Vec<PollAnswer>, Self)> {
        // Connect a few hundred at a time so the listen backlog never overflows.
        let connecting = Arc::new(Semaphore::new(256));
        let mut conns: Vec<Option<Conn>> = self.conns.into_iter().map(Some).collect();
        conns.resize_with(self.scenes.len(), || None);
        let polls = conns
            .into_iter()
            .zip(self.scenes)
            .map(move |(conn, scene)| {
                let connecting = connecting.clone();
                async move {
                    let conn = match conn {
                        Some(conn) => Ok(conn),
                        None => {
                            let _permit = connecting.acquire().await.expect("never closed");
                            Conn::open(addr).await
                        }
                    };
                    let (answer, conn) = match conn {
                        Ok(mut conn) => {
                            let answer = match conn.send(&Req::get(status_path(&scene, wait))).await
                            {
                                Ok((status, body)) if status.is_success() => {
                                    state_of(&body).map_err(|e| e.to_string())
                                }
                                Ok((status, _)) => Err(format!("HTTP {status}")),
                                Err(e) => Err(e.to_string()),
                            };
                            (answer, Some(conn))
                        }
                        Err(e) => (Err(format!("connect: {e}")), None),
                    };
                    (
                        PollAnswer {
                            at: Instant::now(),
                            state: answer,
                        },
                        conn,
                        scene,
                    )
                }
            });
        async move {
            let mut answers = Vec::new();
            let mut browsers = Self {
                conns: Vec::new(),
                scenes: Vec::new(),
            };
            for (answer, conn, scene) in join_all(polls).await {
                answers.push(answer);
                browsers.conns.extend(conn);
                browsers.scenes.push(scene);
            }
            (answers, browsers)
        }
    }
}

struct PollAnswer {
    at: Instant,
    state: Result<String, String>,
}

fn count_unexpected(answers: &[PollAnswer], expected: &str) -> (u64, Option<String>) {
    let mut bad = answers
        .iter()
        .filter(|a| a.state.as_deref() != Ok(expected));
    let first = bad.next().map(|a| format!("{:?}", a.state));
    (first.iter().count() as u64 + bad.count() as u64, first)
}

/// 6: every browser holds a long-poll until it times out; all must come back `waiting`.
pub async fn held(
    server: &Server,
    browsers: Browsers,
    sizes: &Sizes,
) -> Result<(Row, Browsers), Error> {
    let n = browsers.scenes.len();
    let polling = tokio::spawn(browsers.poll(server.addr, sizes.hold_secs));
    tokio::time::sleep(Duration::from_secs(sizes.hold_secs) / 2).await;
    let fds = server
        .pid()
        .and_then(|pid| std::fs::read_dir(format!("/proc/{pid}/fd")).ok())
        .map_or("?".into(), |dir| dir.count().to_string());
    let (answers, browsers) = polling.await?;
    let (failed, first) = count_unexpected(&answers, "waiting");
    if let Some(first) = first {
        eprintln!("held long-polls: {failed} did not answer `waiting`; first: {first}");
    }
    let row = Row::fact(
        &format!("6 held long-polls ({n})"),
        format!(
            "{} held {}s, server fds {fds}",
            n as u64 - failed,
            sizes.hold_secs
        ),
        "all answer",
        Some(failed == 0),
        failed,
    );
    Ok((row, browsers))
}

/// 3: every browser long-polls; scans arrive at a steady rate, one per scene; the latency is
/// from the callback's answer to the long-poll's answer.
pub async fn notification_latency(
    server: &Server,
    callback_conns: Vec<Conn>,
    browsers: Browsers,
    sizes: &Sizes,
) -> Result<(Vec<Row>, Vec<Conn>), Error> {
    let scenes = browsers.scenes.clone();
    let n = scenes.len();
    let polling = tokio::spawn(browsers.poll(server.addr, 30));
    tokio::time::sleep(sizes.settle).await;

    let wechat = Wechat::sandbox();
    let events: Arc<Vec<Req>> = Arc::new(
        scenes
            .iter()
            .enumerate()
            .map(|(i, scene)| wechat.scan(scene, &format!("obench_notify_{i}"), Mode::Plain))
            .collect(),
    );
    let start = tokio::time::Instant::now();
    let interval = Duration::from_secs_f64(1.0 / sizes.event_rate);
    let workers = callback_conns.len();
    let firing = callback_conns.into_iter().enumerate().map(|(k, mut conn)| {
        let events = events.clone();
        async move {
            let mut answered = Vec::new();
            for i in (k..events.len()).step_by(workers) {
                sleep_until(start + interval * i as u32).await;
                let sent = Instant::now();
                let result = conn.send(&events[i]).await;
                let ok = matches!(&result, Ok((status, _)) if status.is_success());
                answered.push((i, sent, Instant::now(), ok));
            }
            (answered, conn)
        }
    });
    let mut sent_at = vec![None; n];
    let mut answered_at = vec![None; n];
    let mut failed = 0;
    let mut conns = Vec::new();
    for (answered, conn) in join_all(firing).await {
        for (i, sent, at, ok) in answered {
            failed += u64::from(!ok);
            sent_at[i] = Some(sent);
            answered_at[i] = Some(at);
        }
        conns.push(conn);
    }
    let fire_secs = start.elapsed().as_secs_f64();
    let (answers, _browsers) = polling.await?;
    let (unexpected, first) = count_unexpected(&answers, "need_bind");
    if let Some(first) = first {
        eprintln!("notified long-polls: {unexpected} did not answer `need_bind`; first: {first}");
    }
    let latencies = |from: &[Option<Instant>]| {
        let mut ms: Vec<f64> = answers
            .iter()
            .zip(from)
            .filter_map(|(answer, from)| Some(answer.at.saturating_duration_since((*from)?)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect();
        ms.sort_by(f64::total_cmp);
        ms
    };
    let after_answer = latencies(&answered_at);
    let after_send = latencies(&sent_at);
    let p99 = percentile(&after_answer, 0.99);
    let rows = vec![
        Row::fact(
            &format!("3 notify latency ({n} polls)"),
            summary(&after_answer),
            "p99 ≤ 5 ms",
            Some(p99 <= 5.0),
            failed + unexpected,
        ),
        Row::fact(
            &format!("  from callback sent ({:.0}/s)", n as f64 / fire_secs),
            summary(&after_send),
            "",
            None,
            0,
        ),
    ];
    Ok((rows, conns))
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn summary(sorted_ms: &[f64]) -> String {
    format!(
        "p50 {:.2} p99 {:.2} max {:.1} ms",
        percentile(sorted_ms, 0.5),
        percentile(sorted_ms, 0.99),
        sorted_ms.last().copied().unwrap_or(f64::NAN)
    )
}
