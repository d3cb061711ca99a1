//! Scenarios 1, 2 and 5: requests per second over keep-alive connections, each measured right
//! after `/healthz` on the same connections so the ratio is taken under the same conditions.

use std::sync::Arc;

use crate::flows::{
    create_scenes, plain_reply, prepare, safe_reply, state_of, status_path, Mode, PendingBind,
    Wechat,
};
use crate::http::{drive, status_ok, Conn, Error, Outcome, Req, Until};
use crate::report::Row;
use crate::Sizes;

/// `/healthz` for the configured time: the yardstick for every other rate.
async fn healthz(conns: Vec<Conn>, sizes: &Sizes) -> Result<(f64, Vec<Conn>), Error> {
    let reqs = Arc::new(vec![Req::get("/healthz".into())]);
    let (outcome, conns) = drive(conns, reqs, Until::Elapsed(sizes.duration), status_ok).await;
    fail_on_errors("healthz", &outcome)?;
    Ok((outcome.per_sec(), conns))
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
pub async fn status_polls(conns: Vec<Conn>, sizes: &Sizes) -> Result<(Row, Vec<Conn>), Error> {
    let (scenes, conns) = create_scenes(conns, sizes.status_scenes).await?;
    let reqs = scenes.iter().map(|s| Req::get(status_path(s, 0))).collect();
    let (healthz, conns) = healthz(conns, sizes).await?;
    let (outcome, conns) = drive(
        conns,
        Arc::new(reqs),
        Until::Elapsed(sizes.duration),
        waiting,
    )
    .await;
    let row = Row::rate(
        "1 status polls (no wait)",
        &outcome,
        healthz,
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
    let (healthz, conns) = healthz(conns, sizes).await?;
    let (name, check, min_ratio) = match mode {
        Mode::Plain => ("2 callback SCAN events (plain)", plain_reply as _, 0.35),
        Mode::Safe => ("2 callback SCAN events (safe mode)", safe_reply as _, 0.3),
    };
    let (outcome, conns) = drive(conns, Arc::new(reqs), Until::Exhausted, check).await;
    fail_on_errors(name, &outcome)?;
    // The replies say the callback acted; the scenes say it acted on the right scan.
    let step = (scenes.len() / sizes.verify_sample).max(1);
    let checks = scenes
        .iter()
        .step_by(step)
        .map(|s| Req::get(status_path(s, 0)))
        .collect();
    let (verified, conns) = drive(conns, Arc::new(checks), Until::Exhausted, need_bind).await;
    fail_on_errors("scanned scenes", &verified)?;
    let row = Row::rate(name, &outcome, healthz, Some(min_ratio), None);
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
pub async fn binds(conns: Vec<Conn>, sizes: &Sizes) -> Result<(Row, Vec<Conn>), Error> {
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
    let (healthz, conns) = healthz(conns, sizes).await?;
    let (outcome, conns) = drive(conns, Arc::new(reqs), Until::Exhausted, status_ok).await;
    fail_on_errors("binds", &outcome)?;
    let row = Row::rate("5 durable binds", &outcome, healthz, None, Some(2000.0));
    Ok((row, conns))
}
