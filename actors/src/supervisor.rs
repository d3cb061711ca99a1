//! Spawns one [`SceneActor`] per scene and finds it again by id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, AsyncContext, Context, Handler, Message, MessageResult};
use moka::sync::Cache;
use wxlogin_storage::Store;

use crate::scene::SceneActor;
use crate::SceneId;

/// Most ended scenes remembered, so a late poll hears `expired` rather than `not found`.
const ENDED_SCENES_REMEMBERED: u64 = 100_000;

#[derive(Clone, Copy, Debug)]
pub struct SceneSettings {
    /// How long a scene (and its QR code) lives.
    pub ttl: Duration,
    /// How long a session opened from a scene lives.
    pub session_ttl: Duration,
}

/// Counts the supervisor keeps for admission control and metrics, readable from any thread.
#[derive(Debug, Default)]
pub struct SceneCounters {
    live: AtomicUsize,
    created: AtomicU64,
    expired: AtomicU64,
}

impl SceneCounters {
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    pub fn created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    pub fn expired(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }
}

pub struct SceneSupervisor {
    scenes: HashMap<SceneId, Addr<SceneActor>>,
    counters: Arc<SceneCounters>,
    /// Scenes that ended within the last TTL.
    ended: Cache<SceneId, ()>,
    store: Store,
    settings: SceneSettings,
}

impl SceneSupervisor {
    pub fn new(store: Store, settings: SceneSettings) -> Self {
        Self {
            scenes: HashMap::new(),
            counters: Arc::default(),
            ended: Cache::builder()
                .max_capacity(ENDED_SCENES_REMEMBERED)
                .time_to_live(settings.ttl)
                .build(),
            store,
            settings,
        }
    }
}

impl SceneSupervisor {
    /// Shared counts of live, created and expired scenes.
    pub fn counters(&self) -> Arc<SceneCounters> {
        self.counters.clone()
    }
}

impl Actor for SceneSupervisor {
    type Context = Context<Self>;
}

/// Start the actor for a new scene.
#[derive(Message)]
#[rtype(result = "()")]
pub struct OpenScene {
    pub id: SceneId,
    pub client_ip: String,
}

impl Handler<OpenScene> for SceneSupervisor {
    type Result = ();

    fn handle(&mut self, msg: OpenScene, ctx: &mut Self::Context) {
        let scene = SceneActor::new(
            msg.id.clone(),
            self.settings.ttl,
            msg.client_ip,
            self.settings.session_ttl,
            self.store.clone(),
            ctx.address(),
        );
        self.scenes.insert(msg.id, scene.start());
        self.counters
            .live
            .store(self.scenes.len(), Ordering::Relaxed);
        self.counters.created.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Message)]
#[rtype(result = "SceneLookup")]
pub struct FindScene(pub SceneId);

pub enum SceneLookup {
    Live(Addr<SceneActor>),
    /// It existed and has expired.
    Ended,
    Unknown,
}

impl Handler<FindScene> for SceneSupervisor {
    type Result = MessageResult<FindScene>;

    fn handle(&mut self, FindScene(id): FindScene, _: &mut Self::Context) -> Self::Result {
        MessageResult(match self.scenes.get(&id) {
            Some(addr) => SceneLookup::Live(addr.clone()),
            None if self.ended.contains_key(&id) => SceneLookup::Ended,
            None => SceneLookup::Unknown,
        })
    }
}

/// Sent by a scene actor as it stops.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SceneEnded(pub SceneId);

impl Handler<SceneEnded> for SceneSupervisor {
    type Result = ();

    fn handle(&mut self, SceneEnded(id): SceneEnded, _: &mut Self::Context) {
        self.scenes.remove(&id);
        self.ended.insert(id, ());
        self.counters
            .live
            .store(self.scenes.len(), Ordering::Relaxed);
        self.counters.expired.fetch_add(1, Ordering::Relaxed);
    }
}
