//! What a pending scene costs in memory, measured as resident memory of this process: 100,000
//! scene actors opened through the supervisor, then one long-poll's waiter registered on every
//! one of them (a `Watch { until_change: true }`, whose receiver is what a parked long-poll
//! holds). This is the scene's side of a long-poll; `wxlogin-bench` scenario 4 measures the
//! same over HTTP, where actix-web's parked request adds ~9.5 KiB per connection.
//!
//! `cargo bench --bench scene_memory` (100,000 scenes); under `cargo test --benches` it runs
//! 1,000, as a smoke test.

use std::time::{Duration, SystemTime};

use wxlogin_actors::{
    FindScene, LoginMode, OpenScene, Requester, SceneId, SceneLookup, SceneSettings,
    SceneSupervisor, Watch,
};
use wxlogin_storage::Store;

/// Resident memory of this process, in bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

fn main() {
    let scenes: usize = if std::env::args().any(|a| a == "--bench") {
        100_000
    } else {
        1_000
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let system = actix::System::new();
    let settings = SceneSettings {
        ttl: Duration::from_secs(600),
        session_ttl: Duration::from_secs(3600),
        confirm: false,
    };
    system.block_on(async {
        let supervisor = actix::Actor::start(SceneSupervisor::new(store, settings));
        let open = |id: SceneId| OpenScene {
            id,
            mode: LoginMode::QrCode,
            requester: Requester {
                ip: "127.0.0.1".into(),
                device: "Chrome on Linux".into(),
                at: SystemTime::now(),
                session_digest: wxlogin_storage::SessionDigest::from_bytes([0; 32]),
            },
        };
        // The ids are made before the first figure, so that they are not counted as scenes.
        let ids: Vec<SceneId> = (0..scenes).map(|_| SceneId::generate()).collect();
        let start = resident_bytes();
        for id in &ids {
            supervisor.send(open(id.clone())).await.unwrap().unwrap();
        }
        let opened = resident_bytes();
        let mut waiting = Vec::with_capacity(scenes);
        for id in &ids {
            let Ok(SceneLookup::Live(scene)) =
                supervisor.send(FindScene(id.clone())).await.unwrap()
            else {
                panic!("a scene opened a moment ago is live");
            };
            let watched = scene.send(Watch { until_change: true }).await.unwrap();
            waiting.push(watched.change.expect("a pending scene can change"));
        }
        let watched = resident_bytes();
        let per_scene = (opened - start) as f64 / scenes as f64;
        // Less the receivers' own slots in `waiting` (a pointer each), which a parked
        // long-poll keeps in its future instead.
        let per_waiter =
            (watched - opened) as f64 / scenes as f64 - std::mem::size_of_val(&waiting[0]) as f64;
        println!("scenes: {scenes}");
        println!("resident: start {start} B, opened {opened} B, watched {watched} B");
        println!("per pending scene: {per_scene:.0} B");
        println!("per long-poll waiter: {per_waiter:.0} B");
        println!(
            "per scene with a long-poll waiting: {:.0} B",
            per_scene + per_waiter
        );
        drop(waiting);
    });
}
