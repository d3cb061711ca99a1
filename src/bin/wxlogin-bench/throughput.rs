//! Scenarios 1, 2 and 5: requests per second over keep-alive connections, each measured right
//! after `/healthz` on the same connections so the ratio is taken under the same conditions.

use std::sync::Arc;
use std::time::Duration;

use crate::flows::{
    create_scenes, plain_reply, prepare, safe_reply, state_of, status_path, Mode, PendingBind,
    Wechat,
};
use crate::http::{drive, status_ok, Conn, Error, Outcome, Req, Until};
use crate::report::Row;
use crate::server::Server;
use crate::Sizes;

/// `/healthz` for the configured time: the yardstick for every other rate.
async fn healthz(
    server: &Server,
    conns: Vec<Conn>,
    sizes: &Sizes,
) -> Result<(Yardstick, Vec<Conn>), Error> {
    let reqs = Arc::new(vec![Req::get("/healthz".into())]);
    let cpu = server.cpu_time();
    let (outcome, conns) = drive(conns, reqs, Until::Elapsed(sizes.duration), status_ok).await;
    fail_on_errors("healthz", &outcome)?;
    let yardstick = Yardstick {
        rate: outcome.per_sec(),
        cpu: cpu_each(server, cpu, &outcome),
    };
    Ok((yardstick, conns))
}

/// What `/healthz` did just before a measured figure.
struct Yardstick {
    rate: f64,
    /// The server's CPU time per request.
    cpu: Option<Duration>,
}

/// The server's CPU time per request since `before`, for a server the tool started.
fn cpu_each(server: &Server, before: Option<Duration>, outcome: &Outcome) -> Option<Duration> {
    let used = server.cpu_time()?.checked_sub(before?)?;
    u32::try_from(outcome.ok.max(1)).ok().map(|n| used / n)
}

/// A rate's row, with the server's CPU per request beside `/healthz`'s when it was measured.
fn rate_row(
    name: &str,
    outcome: &Outcome,
    healthz: &Yardstick,
    cpu: Option<Duration>,
    min_ratio: Option<f64>,
    min_rate: Option<f64>,
) -> Row {
    let mut row = Row::rate(name, outcome, healthz.rate, min_ratio, min_rate);
    if let (Some(cpu), Some(base)) = (cpu, healthz.cpu) {
        row.result.push_str(&format!(
            ", CPU {:.1} µs each ({:.2}× healthz's)",
            cpu.as_secs_f64() * 1e6,
            cpu.as_secs_f64() / base.as_secs_f64().max(1e-9)
        ));
    }
    row
}

fn fail_on_errors(what: &str, outcome: &Outcome) -> Result<(), Error> {
    match &outcome.first_failure {
        Some(why) => {
            Err(format!("{what}: {} requests failed, first: {why}", outcome.failed).into())
        }
        None => Ok(()),
    }
}

/// 1: `GET .../status` (no wait) on existing scenes.
pub async fn status_polls(
    server: &Server,
    conns: Vec<Conn>,
    sizes: &Sizes,
) -> Result<(Row, Vec<Conn>), Error> {
    let (scenes, conns) = create_scenes(conns, sizes.status_scenes).await?;
    let reqs = scenes.iter().map(|s| Req::get(status_path(s, 0))).collect();
    let (healthz, conns) = healthz(server, conns, sizes).await?;
    let cpu = server.cpu_time();
    let (outcome, conns) = drive(
        conns,
        Arc::new(reqs),
        Until::Elapsed(sizes.duration),
        waiting,
    )
    .await;
    let cpu = cpu_each(server, cpu, &outcome);
    let row = rate_row(
        "1 status polls (no wait)",
        &outcome,
        &healthz,
        cpu,
        Some(0.5),
        None,
    );
    Ok((row, conns))
}

fn waiting(status: hyper::StatusCode, body: &[u8]) -> Result<(), String> {
    status_ok(status, body)?;
    match state_of(body) {
        Ok(state) if state == "waiting" => Ok(()),
        other => Err(format!("expected waiting, got {other:?}")),
    }
}

/// 2: signed SCAN events, each for its own live scene, as WeChat pushes them.
pub async fn callback_events(
    server: &Server,
    conns: Vec<Conn>,
    sizes: &Sizes,
    mode: Mode,
) -> Result<(Row, Vec<Conn>), Error> {
    let (scenes, conns) = create_scenes(conns, sizes.events).await?;
    let wechat = Wechat::sandbox();
    let reqs: Vec<_> = scenes
        .iter()
        .enumerate()
        .map(|(i, scene)| wechat.scan(scene, &format!("obench_scan_{i}"), mode))
        .collect();
    let (healthz, conns) = healthz(server, conns, sizes).await?;
    let (name, check, min_ratio) = match mode {
        Mode::Plain => ("2 callback SCAN events (plain)", plain_reply as _, 0.35),
        Mode::Safe => ("2 callback SCAN events (safe mode)", safe_reply as _, 0.3),
    };
    let cpu = server.cpu_time();
    let (outcome, conns) = drive(conns, Arc::new(reqs), Until::Exhausted, check).await;
    fail_on_errors(name, &outcome)?;
    let cpu = cpu_each(server, cpu, &outcome);
    // The replies say the callback acted; the scenes say it acted on the right scan.
    let step = (scenes.len() / sizes.verify_sample).max(1);
    let checks = scenes
        .iter()
        .step_by(step)
        .map(|s| Req::get(status_path(s, 0)))
        .collect();
    let (verified, conns) = drive(conns, Arc::new(checks), Until::Exhausted, need_bind).await;
    fail_on_errors("scanned scenes", &verified)?;
    let row = rate_row(name, &outcome, &healthz, cpu, Some(min_ratio), None);
    Ok((row, conns))
}

pub fn need_bind(status: hyper::StatusCode, body: &[u8]) -> Result<(), String> {
    status_ok(status, body)?;
    match state_of(body) {
        Ok(state) if state == "need_bind" => Ok(()),
        other => Err(format!("expected need_bind, got {other:?}")),
    }
}

/// 5: `POST .../bind` for scenes whose scanner holds a valid code; each bind is durable.
pub async fn binds(
    server: &Server,
    conns: Vec<Conn>,
    sizes: &Sizes,
) -> Result<(Row, Vec<Conn>), Error> {
    let wechat = Arc::new(Wechat::sandbox());
    let (pending, conns) = prepare(conns, sizes.binds, move |mut conn, i| {
        let wechat = wechat.clone();
        async move {
            let pending = PendingBind::prepare(&mut conn, &wechat, i).await;
            (conn, pending)
        }
    })
    .await?;
    let reqs = pending.iter().map(PendingBind::bind).collect();
    let (healthz, conns) = healthz(server, conns, sizes).await?;
    let (outcome, conns) = drive(conns, Arc::new(reqs), Until::Exhausted, status_ok).await;
    fail_on_errors("binds", &outcome)?;
    let row = Row::rate(
        "5 durable binds",
        &outcome,
        healthz.rate,
        None,
        Some(2000.0),
    );
    Ok((row, conns))
}
