//! Holds every live scene and finds it again by id.
//!
//! Scenes are plain structs in this actor's map, not actors of their own: a scene costs a few
//! hundred bytes instead of an actor's mailbox, context, task and timer (measured in
//! docs/PERFORMANCE.md). Their TTL is one setting, so scenes expire in the order they were
//! made: a queue is the timer wheel, swept a few times a second, and a lookup past a scene's
//! expiry expires it on the spot, so nobody sees a scene outlive its TTL.
//!
//! Two indexes find a scene other than by id: its login code (code mode), for the text
//! message that carries it, and its scanner, for the reply to a confirmation request.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Addr, AsyncContext, Context, Handler, MailboxError, Message, MessageResult};
use wxlogin_storage::{OpenId, Store};

use crate::scene::state::{LoginMode, Phase, SceneError, SceneMachine, SceneStatus};
use crate::scene::{Requester, Scene};
use crate::{LoginCode, SceneId};

/// Draws of a random login code before giving up: with the code space a tenth full, the
/// chance that all of them are taken is 10⁻¹⁶.
const CODE_DRAWS: usize = 16;

/// How often expired scenes are swept out: the most a waiting long-poll hears `expired` late.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

#[derive(Clone, Copy, Debug)]
pub struct SceneSettings {
    /// How long a scene (and its QR code) lives.
    pub ttl: Duration,
    /// How long a session opened from a scene lives.
    pub session_ttl: Duration,
    /// A scan must be confirmed by the scanner replying with the number the browser shows.
    pub confirm: bool,
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
    /// Scenes that ended within the last TTL, so a late poll hears how they ended, not
    /// `not found`.
    ended: HashMap<SceneId, Ended>,
    /// When each ended scene is forgotten, oldest first.
    forget: VecDeque<(Instant, SceneId)>,
    /// The login codes of live scenes and of scenes ended within the last TTL: a code is
    /// not handed out again while someone may still send it.
    pub(crate) codes: HashMap<LoginCode, SceneId>,
    /// Scenes waiting for their scanner's confirmation, by scanner (the latest one asked).
    pub(crate) confirmations: HashMap<OpenId, SceneId>,
    pub(crate) store: Store,
    pub(crate) settings: SceneSettings,
}

impl SceneSupervisor {
    pub fn new(store: Store, settings: SceneSettings) -> Self {
        Self {
            scenes: HashMap::new(),
            counters: Arc::default(),
            expiries: VecDeque::new(),
            ended: HashMap::new(),
            forget: VecDeque::new(),
            codes: HashMap::new(),
            confirmations: HashMap::new(),
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
                Some(_) => self.expire(id),
                None => {}
            }
        }
        for entry in in_flight.into_iter().rev() {
            self.expiries.push_front(entry);
        }
        while self.forget.front().is_some_and(|(at, _)| *at <= now) {
            let (_, id) = self.forget.pop_front().expect("just seen");
            if let Some(code) = self.ended.remove(&id).and_then(|ended| ended.code) {
                self.codes.remove(&code);
            }
        }
        self.give_back_memory();
    }

    /// The scene's TTL ran out.
    fn expire(&mut self, id: SceneId) {
        if self.end(id) {
            self.counters.expired.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes a scene out of the live ones (expiring it unless it already reached a terminal
    /// state) and remembers how it ended for one TTL. False if it was not live.
    pub(crate) fn end(&mut self, id: SceneId) -> bool {
        let Some(mut scene) = self.scenes.remove(&id) else {
            return false;
        };
        if let Some(scanner) = scene.machine.confirming() {
            if self.confirmations.get(scanner) == Some(&id) {
                self.confirmations.remove(scanner);
            }
        }
        scene.expire();
        self.ended.insert(
            id.clone(),
            Ended::from_status(scene.machine.status(Instant::now()), scene.code),
        );
        self.forget
            .push_back((Instant::now() + self.settings.ttl, id));
        self.counters
            .live
            .store(self.scenes.len(), Ordering::Relaxed);
        true
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
        if oversized(self.codes.len(), self.codes.capacity()) {
            self.codes.shrink_to_fit();
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

    /// The first of `draws` that no live or recently ended scene holds, now held by `id`: one
    /// code never serves two scenes.
    fn reserve_code(
        &mut self,
        id: &SceneId,
        mut draws: impl Iterator<Item = LoginCode>,
    ) -> Result<LoginCode, SceneError> {
        let code = draws
            .find(|code| !self.codes.contains_key(code))
            .ok_or(SceneError::NoFreeLoginCode)?;
        self.codes.insert(code, id.clone());
        Ok(code)
    }

    /// The live scene `id`, expiring it first if its TTL has run out.
    pub(crate) fn live(&mut self, id: &SceneId) -> Option<&mut Scene> {
        let now = Instant::now();
        if self
            .scenes
            .get(id)
            .is_some_and(|scene| scene.expires_at <= now && !scene.busy)
        {
            self.expire(id.clone());
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

/// How an ended scene is reported until it is forgotten: the little of its last status that
/// is not implied by its end (it carries no token, no number, no time left).
struct Ended {
    phase: Phase,
    mode: LoginMode,
    subscribed: bool,
    new_follower: bool,
    code: Option<LoginCode>,
}

impl Ended {
    fn from_status(last: SceneStatus, code: Option<LoginCode>) -> Self {
        Self {
            phase: last.phase,
            mode: last.mode,
            subscribed: last.subscribed,
            new_follower: last.new_follower,
            code,
        }
    }

    fn status(&self) -> SceneStatus {
        SceneStatus {
            phase: self.phase,
            mode: self.mode,
            subscribed: self.subscribed,
            new_follower: self.new_follower,
            bound: false,
            expires_at: Instant::now(),
            token: None,
            confirm_number: None,
        }
    }
}

/// Open a new scene. In code mode it answers the scene's login code.
#[derive(Message)]
#[rtype(result = "Result<Option<LoginCode>, SceneError>")]
pub struct OpenScene {
    pub id: SceneId,
    pub mode: LoginMode,
    pub requester: Requester,
}

impl Handler<OpenScene> for SceneSupervisor {
    type Result = Result<Option<LoginCode>, SceneError>;

    fn handle(&mut self, msg: OpenScene, _: &mut Self::Context) -> Self::Result {
        let code = match msg.mode {
            LoginMode::QrCode => None,
            LoginMode::Code => {
                let draws = std::iter::repeat_with(LoginCode::random).take(CODE_DRAWS);
                Some(self.reserve_code(&msg.id, draws)?)
            }
        };
        let expires_at = Instant::now() + self.settings.ttl;
        let machine = SceneMachine::new(msg.mode, self.settings.confirm);
        self.scenes.insert(
            msg.id.clone(),
            Scene::new(machine, expires_at, msg.requester, code),
        );
        self.expiries.push_back((expires_at, msg.id));
        self.counters
            .live
            .store(self.scenes.len(), Ordering::Relaxed);
        self.counters.created.fetch_add(1, Ordering::Relaxed);
        Ok(code)
    }
}

#[derive(Message)]
#[rtype(result = "SceneLookup")]
pub struct FindScene(pub SceneId);

pub enum SceneLookup {
    Live(SceneHandle),
    /// It existed and has ended: its last status.
    Ended(SceneStatus),
    Unknown,
}

impl Handler<FindScene> for SceneSupervisor {
    type Result = MessageResult<FindScene>;

    fn handle(&mut self, FindScene(id): FindScene, ctx: &mut Self::Context) -> Self::Result {
        MessageResult(if let Some(scene) = self.live(&id) {
            SceneLookup::Live(SceneHandle {
                secret_digest: scene.requester.secret_digest,
                id,
                supervisor: ctx.address(),
            })
        } else if let Some(ended) = self.ended.get(&id) {
            SceneLookup::Ended(ended.status())
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
    secret_digest: [u8; 32],
}

impl SceneHandle {
    /// See [`Requester::secret_digest`].
    pub fn secret_digest(&self) -> &[u8; 32] {
        &self.secret_digest
    }

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

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn code(digits: &str) -> LoginCode {
        LoginCode::parse(digits).unwrap()
    }

    fn supervisor(dir: &tempfile::TempDir) -> SceneSupervisor {
        let settings = SceneSettings {
            ttl: Duration::from_secs(300),
            session_ttl: Duration::from_secs(3600),
            confirm: false,
        };
        SceneSupervisor::new(Store::open(dir.path()).unwrap(), settings)
    }

    #[test]
    fn a_code_is_held_by_one_scene_until_it_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let mut supervisor = supervisor(&dir);
        let (first, second) = (SceneId::generate(), SceneId::generate());
        let a = code("111111");
        assert_eq!(supervisor.reserve_code(&first, [a].into_iter()).unwrap(), a);
        // A taken code is skipped; when every draw is taken, there is no code to give.
        let b = code("222222");
        assert_eq!(
            supervisor
                .reserve_code(&second, [a, b].into_iter())
                .unwrap(),
            b
        );
        assert!(matches!(
            supervisor.reserve_code(&SceneId::generate(), [a, b].into_iter()),
            Err(SceneError::NoFreeLoginCode)
        ));

        // Ended, the first scene keeps its code for one more TTL, then lets it go.
        let machine = SceneMachine::new(LoginMode::Code, false);
        let requester = Requester {
            ip: "127.0.0.1".into(),
            device: "curl".into(),
            at: SystemTime::now(),
            secret_digest: [0; 32],
        };
        supervisor.scenes.insert(
            first.clone(),
            Scene::new(machine, Instant::now(), requester, Some(a)),
        );
        assert!(supervisor.end(first));
        assert!(supervisor
            .reserve_code(&SceneId::generate(), [a].into_iter())
            .is_err());
        supervisor.sweep(Instant::now() + Duration::from_secs(301));
        let third = SceneId::generate();
        assert_eq!(supervisor.reserve_code(&third, [a].into_iter()).unwrap(), a);
    }
}
