//! Scenario 4: what a pending scene costs in resident memory, and that it is given back.
//!
//! Runs its own server in real mode against a stand-in for WeChat's API, so the sandbox
//! simulator's memory (its ticket table) is not counted as the service's.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::flows::create_scenes;
use crate::http::{drive, open_many, status_ok, Error, Req, Until};
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
    let all_gone = created + create_time + 2 * ttl + sizes.settle;
    tokio::time::sleep_until(all_gone.into()).await;
    drop(conns);
    let after = rss()?;
    let growth = peak.saturating_sub(base);
    let kept = after.saturating_sub(base);
    let returned = kept * 5 <= growth;
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
            "  RSS after they expire",
            format!("{after} KiB ({kept} KiB above start)"),
            "≤ 20% of growth",
            Some(returned),
            0,
        ),
    ])
}
