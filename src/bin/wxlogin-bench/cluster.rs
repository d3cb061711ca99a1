//! Scenario 8: nodes on one PostgreSQL (`--nodes A,B,C`, each a sandbox node in plaintext
//! mode). Each sample makes a scene on A, parks a browser's long-poll on C (after one poll
//! there, so C has taken the scene up), and pushes a scan to B; the figure is the time from
//! sending the scan to C's answer: B's transition, its commit and `NOTIFY`, C's listener,
//! C's read of the row and its answer.

use std::time::{Duration, Instant};

use crate::flows::{create_scene, state_of, status_path, Mode, Wechat};
use crate::http::{Conn, Error, Req};
use crate::longpoll::{percentile, summary};
use crate::report::Row;
use crate::server::Server;
use crate::Sizes;

/// Long enough for a request on loopback to reach C and park.
const PARK: Duration = Duration::from_millis(20);

pub async fn cross_node_wake(nodes: &[Server], sizes: &Sizes) -> Result<Vec<Row>, Error> {
    let [a, b, c] = nodes else {
        return Err("--nodes takes three URLs: where scenes are made, scanned, waited on".into());
    };
    let wechat = Wechat::sandbox();
    let mut creating = Conn::open(a.addr).await?;
    let mut scanning = Conn::open(b.addr).await?;
    let mut polling = Some(Conn::open(c.addr).await?);
    let mut woken_ms = Vec::with_capacity(sizes.cross_node_samples);
    // From the push's answer: B answers after its commit, so this is the notification alone
    // (negative when C woke before B's answer arrived, counted as 0).
    let mut after_answer_ms = Vec::with_capacity(sizes.cross_node_samples);
    let mut failed = 0;
    for i in 0..sizes.cross_node_samples {
        let scene = create_scene(&mut creating).await?;
        let mut poll = match polling.take() {
            Some(conn) => conn,
            None => Conn::open(c.addr).await?,
        };
        poll.ok(&Req::get(status_path(&scene, 0))).await?;
        let long_poll = Req::get(status_path(&scene, 10));
        let waiting = tokio::spawn(async move {
            let answer = poll.send(&long_poll).await;
            (Instant::now(), answer, poll)
        });
        tokio::time::sleep(PARK).await;
        let sent = Instant::now();
        scanning
            .ok(&wechat.scan(&scene, &format!("obench_cross_{i}"), Mode::Plain))
            .await?;
        let acknowledged = Instant::now();
        let (answered, answer, conn) = waiting.await?;
        match answer {
            Ok((status, body)) if status.is_success() && state_of(&body)? == "need_bind" => {
                woken_ms.push((answered - sent).as_secs_f64() * 1000.0);
                after_answer_ms.push(
                    answered
                        .saturating_duration_since(acknowledged)
                        .as_secs_f64()
                        * 1000.0,
                );
                polling = Some(conn);
            }
            _ => failed += 1,
        }
    }
    woken_ms.sort_by(f64::total_cmp);
    after_answer_ms.sort_by(f64::total_cmp);
    let p99 = percentile(&woken_ms, 0.99);
    Ok(vec![
        Row::fact(
            &format!("8 cross-node wake ({} scans)", woken_ms.len()),
            summary(&woken_ms),
            "p99 ≤ 10 ms",
            Some(p99 <= 10.0),
            failed,
        ),
        Row::fact(
            "  after the push's answer",
            summary(&after_answer_ms),
            "",
            None,
            0,
        ),
    ])
}
