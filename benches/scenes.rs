//! A scene's life through the actors (create → scan event → status) and a session lookup in
//! the store: the in-process work behind `POST /api/qrcode`, `/wechat` and `GET /api/me`.

use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use wxlogin_actors::{
    FindScene, LoginMode, OpenScene, Phase, Requester, Scan, SceneId, SceneLookup, SceneSettings,
    SceneSupervisor, Watch,
};
use wxlogin_storage::{LoginMethod, NewSession, OpenId, Phone, SessionToken, Store};

fn round_trip(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let system = actix::System::new();
    let settings = SceneSettings {
        ttl: Duration::from_secs(300),
        session_ttl: Duration::from_secs(3600),
        confirm: false,
    };
    let supervisor =
        system.block_on(async { actix::Actor::start(SceneSupervisor::new(store, settings)) });
    let openid = OpenId::parse("oBenchScanner").unwrap();
    c.bench_function("scene: create, scan (unbound), status", |b| {
        b.iter(|| {
            system.block_on(async {
                let id = SceneId::generate();
                let open = OpenScene {
                    id: id.clone(),
                    mode: LoginMode::QrCode,
                    requester: Requester {
                        ip: "127.0.0.1".into(),
                        device: "Chrome on Linux".into(),
                        at: SystemTime::now(),
                        session_digest: wxlogin_storage::SessionDigest::from_bytes([0; 32]),
                    },
                };
                supervisor.send(open).await.unwrap().unwrap();
                let Ok(SceneLookup::Live(scene)) =
                    supervisor.send(FindScene(id.clone())).await.unwrap()
                else {
                    panic!("the scene just opened");
                };
                let scan = Scan {
                    openid: openid.clone(),
                    new_follower: false,
                    sent_at: None,
                };
                scene.send(scan).await.unwrap().unwrap();
                let Ok(SceneLookup::Live(scene)) = supervisor.send(FindScene(id)).await.unwrap()
                else {
                    panic!("the scene is live");
                };
                let watched = scene
                    .send(Watch {
                        until_change: false,
                    })
                    .await
                    .unwrap();
                assert_eq!(watched.status.phase, Phase::NeedBind);
            })
        })
    });
}

fn session_lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let openid = OpenId::parse("oBenchUser").unwrap();
    let token = runtime.block_on(async {
        let binding = store
            .bind(&openid, &Phone::parse("13800000001").unwrap(), 0)
            .await
            .unwrap();
        let token = SessionToken::generate();
        let session = NewSession {
            binding: &binding,
            digest: &token.digest(),
            ttl: Duration::from_secs(3600),
            method: LoginMethod::Bind,
            client_ip: "127.0.0.1",
        };
        store.open_session(session).await.unwrap();
        token
    });
    let bearer = SessionToken::from_bearer(token.as_str());
    c.bench_function("session lookup", |b| {
        b.iter(|| runtime.block_on(store.session(&bearer)).unwrap().unwrap())
    });
}

criterion_group!(benches, round_trip, session_lookup);
criterion_main!(benches);
