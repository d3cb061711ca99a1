//! Scenario 4: what a pending scene costs in resident memory, alone and with a long-poll
//! waiting on it, and that it is given back.
//!
//! Runs its own server in real mode against a stand-in for WeChat's API, so the sandbox
//! simulator's memory (its ticket table) is not counted as the service's.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::flows::{create_scenes, status_path};
use crate::http::{drive, join_all, open_many, status_ok, Conn, Error, Req, Until};
use crate::report::Row;
use crate::server::{fake_wechat_api, Server};
use crate::Sizes;

pub async fn pending_scenes(binary: &Path, sizes: &Sizes) -> Result<Vec<Row>, Error> {
    let api = fake_wechat_api()?;
    let server = Server::spawn(
        binary,
        &[
            ("WXLOGIN_APPID", "wxbench0000000000".into()),
            ("WXLOGIN_APPSECRET", "bench".into()),
            ("WXLOGIN_TOKEN", "bench-token".into()),
            ("WXLOGIN_WECHAT_API", format!("http://{api}")),
            ("WXLOGIN_SCENE_TTL_SECS", sizes.memory_ttl_secs.to_string()),
        ],
    )?;
    let conns = open_many(server.addr, sizes.connections).await?;
    // Warm up connections and worker buffers so the baseline is the idle service, not a cold one.
    let warmup = Arc::new(vec![Req::get("/healthz".into())]);
    let (_, conns) = drive(conns, warmup, Until::Elapsed(sizes.duration / 5), status_ok).await;
    let rss = || server.rss_kib().ok_or("cannot read the server's VmRSS");
    let base = rss()?;

    let n = sizes.memory_scenes;
    let created = Instant::now();
    let (scenes, conns) = create_scenes(conns, n).await?;
    let create_time = created.elapsed();
    let create_secs = create_time.as_secs_f64();
    drop(scenes);
    let peak = rss()?;
    let per_scene = (peak.saturating_sub(base) * 1024) as f64 / n as f64;

    // Every scene ends one TTL after it was made; then its id is remembered for one more TTL.
    let ttl = Duration::from_secs(sizes.memory_ttl_secs);
    let all_expired = created + create_time + ttl;
    tokio::time::sleep_until((all_expired + EXPIRY_GRACE).into()).await;
    let soon_after = rss()?;
    let all_gone = all_expired + ttl + sizes.settle;
    tokio::time::sleep_until(all_gone.into()).await;
    let after = rss()?;
    let growth = peak.saturating_sub(base);
    let back_soon = peak.saturating_sub(soon_after) as f64 / growth.max(1) as f64;
    let kept = after.saturating_sub(base);
    let returned = kept * 5 <= growth;
    let held = with_long_polls(&server, conns, sizes).await?;
    Ok(vec![
        Row::fact(
            &format!("4 RSS per pending scene ({n})"),
            format!(
                "{per_scene:.0} B ({base} → {peak} KiB, {:.0}/s made)",
                n as f64 / create_secs
            ),
            "≤ 1024 B",
            Some(per_scene <= 1024.0),
            0,
        ),
        Row::fact(
            &format!("  RSS {} s after the last expired", EXPIRY_GRACE.as_secs()),
            format!(
                "{soon_after} KiB ({:.0}% of the growth back)",
                back_soon * 100.0
            ),
            "≥ 90% back",
            Some(back_soon >= 0.9),
            0,
        ),
        Row::fact(
            "  RSS after they expire",
            format!("{after} KiB ({kept} KiB above start)"),
            "≤ 20% of growth",
            Some(returned),
            0,
        ),
        held,
    ])
}

/// How soon after its expiry a scene's memory must be back.
const EXPIRY_GRACE: Duration = Duration::from_secs(3);

/// Scenes with a long-poll waiting on each, one connection per poll (the file limit allows
/// 10,000, not one per scene of the 100,000): what the scene and its poll cost beyond the
/// connection, measured as scenes made on the few load connections, then that many idle
/// connections, then their polls.
async fn with_long_polls(server: &Server, conns: Vec<Conn>, sizes: &Sizes) -> Result<Row, Error> {
    let rss = || server.rss_kib().ok_or("cannot read the server's VmRSS");
    let n = sizes.long_polls;
    let start = rss()?;
    let (scenes, _conns) = create_scenes(conns, n).await?;
    let with_scenes = rss()?;
    // Each browser's connection does one request first, so its buffers are there before the
    // baseline (the server closes a connection idle for 5 s: polls follow at once).
    let healthz = Req::get("/healthz".into());
    let warmed = join_all(
        open_many(server.addr, n)
            .await?
            .into_iter()
            .map(|mut conn| {
                let healthz = healthz.clone();
                async move {
                    let answer = conn.ok(&healthz).await;
                    answer.map(|_| conn)
                }
            }),
    )
    .await;
    let browsers = warmed.into_iter().collect::<Result<Vec<_>, _>>()?;
    let idle = rss()?;
    let polls: Vec<_> = browsers
        .into_iter()
        .zip(&scenes)
        .map(|(mut conn, scene)| {
            let poll = Req::get(status_path(scene, 30));
            tokio::spawn(async move { conn.ok(&poll).await })
        })
        .collect();
    tokio::time::sleep(sizes.settle).await;
    let polled = rss()?;
    for poll in &polls {
        poll.abort();
    }
    let per = |kib: u64| (kib * 1024) as f64 / n as f64;
    let scene = per(with_scenes.saturating_sub(start));
    let poll = per(polled.saturating_sub(idle));
    Ok(Row::fact(
        &format!("4 RSS per scene with a long-poll waiting ({n})"),
        format!(
            "{:.0} B: {scene:.0} B the scene, {poll:.0} B its parked poll (request and waiter)",
            scene + poll
        ),
        "≤ 1126 B",
        Some(scene + poll <= 1126.0),
        0,
    ))
}
