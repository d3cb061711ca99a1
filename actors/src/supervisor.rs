//! Holds every live scene and finds it again by id.
//!
//! Scenes are plain structs in this actor's map, not actors of their own: a scene costs a few
//! hundred bytes instead of an actor's mailbox, context, task and timer (measured in
//! docs/PERFORMANCE.md). Their TTL is one setting, so scenes expire in the order they were
//! made: a queue is the timer wheel, swept a few times a second, and a lookup past a scene's
//! expiry expires it on the spot, so nobody sees a scene outlive its TTL.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Addr, AsyncContext, Context, Handler, MailboxError, Message, MessageResult};
use wxlogin_storage::Store;

use crate::scene::Scene;
use crate::SceneId;

/// How often expired scenes are swept out: the most a waiting long-poll hears `expired` late.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

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
    pub(crate) scenes: HashMap<SceneId, Scene>,
    counters: Arc<SceneCounters>,
    /// Live scenes by expiry, oldest first.
    expiries: VecDeque<(Instant, SceneId)>,
    /// Scenes that ended within the last TTL, so a late poll hears `expired`, not `not found`.
    ended: HashSet<SceneId>,
    /// When each ended scene is forgotten, oldest first.
    forget: VecDeque<(Instant, SceneId)>,
    pub(crate) store: Store,
    pub(crate) settings: SceneSettings,
}

impl SceneSupervisor {
    pub fn new(store: Store, settings: SceneSettings) -> Self {
        Self {
            scenes: HashMap::new(),
            counters: Arc::default(),
            expiries: VecDeque::new(),
            ended: HashSet::new(),
            forget: VecDeque::new(),
            store,
            settings,
        }
    }

    /// Expires every scene whose TTL has run out, unless a store write for it is in flight
    /// (it expires at the first sweep after), and forgets ended scenes one TTL later.
    fn sweep(&mut self, now: Instant) {
        let mut in_flight = Vec::new();
        while self.expiries.front().is_some_and(|(at, _)| *at <= now) {
            let (at, id) = self.expiries.pop_front().expect("just seen");
            match self.scenes.get(&id) {
                Some(scene) if scene.busy => in_flight.push((at, id)),
                Some(_) => self.end(id, now),
                None => {}
            }
        }
        for entry in in_flight.into_iter().rev() {
            self.expiries.push_front(entry);
        }
        while self.forget.front().is_some_and(|(at, _)| *at <= now) {
            let (_, id) = self.forget.pop_front().expect("just seen");
            self.ended.remove(&id);
        }
        self.give_back_memory();
    }

    fn end(&mut self, id: SceneId, now: Instant) {
        if let Some(mut scene) = self.scenes.remove(&id) {
            scene.expire();
            self.ended.insert(id.clone());
            self.forget.push_back((now + self.settings.ttl, id));
            self.counters
                .live
                .store(self.scenes.len(), Ordering::Relaxed);
            self.counters.expired.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// After a wave of scenes ends, hand the emptied tables back to the allocator, and the
    /// allocator's free pages back to the system.
    fn give_back_memory(&mut self) {
        fn oversized(len: usize, capacity: usize) -> bool {
            capacity > 1024 && capacity > 4 * len
        }
        let mut shrunk = false;
        if oversized(self.scenes.len(), self.scenes.capacity()) {
            self.scenes.shrink_to_fit();
            shrunk = true;
        }
        if oversized(self.expiries.len(), self.expiries.capacity()) {
            self.expiries.shrink_to_fit();
            shrunk = true;
        }
        if oversized(self.ended.len(), self.ended.capacity()) {
            self.ended.shrink_to_fit();
            shrunk = true;
        }
        if oversized(self.forget.len(), self.forget.capacity()) {
            self.forget.shrink_to_fit();
            shrunk = true;
        }
        if shrunk {
            release_free_heap();
        }
    }

    /// The live scene `id`, expiring it first if its TTL has run out.
    pub(crate) fn live(&mut self, id: &SceneId) -> Option<&mut Scene> {
        let now = Instant::now();
        if self
            .scenes
            .get(id)
            .is_some_and(|scene| scene.expires_at <= now && !scene.busy)
        {
            self.end(id.clone(), now);
        }
        self.scenes.get_mut(id)
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

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(SWEEP_EVERY, |supervisor, _| {
            supervisor.sweep(Instant::now())
        });
    }
}

/// Open a new scene.
#[derive(Message)]
#[rtype(result = "()")]
pub struct OpenScene {
    pub id: SceneId,
    pub client_ip: String,
}

impl Handler<OpenScene> for SceneSupervisor {
    type Result = ();

    fn handle(&mut self, msg: OpenScene, _: &mut Self::Context) {
        let expires_at = Instant::now() + self.settings.ttl;
        self.scenes
            .insert(msg.id.clone(), Scene::new(expires_at, msg.client_ip));
        self.expiries.push_back((expires_at, msg.id));
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
    Live(SceneHandle),
    /// It existed and has expired.
    Ended,
    Unknown,
}

impl Handler<FindScene> for SceneSupervisor {
    type Result = MessageResult<FindScene>;

    fn handle(&mut self, FindScene(id): FindScene, ctx: &mut Self::Context) -> Self::Result {
        MessageResult(if self.live(&id).is_some() {
            SceneLookup::Live(SceneHandle {
                id,
                supervisor: ctx.address(),
            })
        } else if self.ended.contains(&id) {
            SceneLookup::Ended
        } else {
            SceneLookup::Unknown
        })
    }
}

/// A live scene, to send [`crate::Watch`], [`crate::Scan`], [`crate::RequestCode`] and
/// [`crate::Bind`] to. Once the scene has ended, `send` fails as sending to a stopped
/// actor does.
#[derive(Clone)]
pub struct SceneHandle {
    id: SceneId,
    supervisor: Addr<SceneSupervisor>,
}

impl SceneHandle {
    pub async fn send<M>(&self, msg: M) -> Result<M::Result, MailboxError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        SceneSupervisor: Handler<ToScene<M>>,
    {
        self.supervisor
            .send(ToScene {
                id: self.id.clone(),
                msg,
            })
            .await?
            .ok_or(MailboxError::Closed)
    }
}

/// `msg` for scene `id`; answers `None` when the scene is no longer live.
pub struct ToScene<M> {
    pub(crate) id: SceneId,
    pub(crate) msg: M,
}

impl<M: Message> Message for ToScene<M>
where
    M::Result: 'static,
{
    type Result = Option<M::Result>;
}

/// glibc keeps freed memory in its heaps rather than returning it (measured: none of 38 MiB
/// came back after 100,000 scenes expired); `malloc_trim` returns the free pages.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_heap() {
    // SAFETY: malloc_trim only releases memory the allocator holds free; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_heap() {}
