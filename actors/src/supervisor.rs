//! Spawns a scene actor for each login, finds it again, and expires it.
//!
//! The supervisor keeps a weak address per live scene (a scene lives until it ends, not while
//! someone holds its address) and one expiry queue: every scene has the same TTL, so scenes
//! expire in the order they were made and the queue is the timer wheel, swept a few times a
//! second. Each scene also checks its own deadline before every message, so nobody sees a
//! scene outlive its TTL even between sweeps.
//!
//! Two indexes find a scene other than by id: its login code (code mode), for the text
//! message that carries it, and its scanner, for the reply to a confirmation request. Messages
//! found by an index are forwarded here and the indexes updated from the scene's reply; what a
//! scene learns by itself (a scanner asked to confirm, its end) it reports through a channel
//! that the supervisor reads before it answers anything.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::fut::{ready, ActorFutureExt, WrapFuture};
use actix::{
    Actor, Addr, AsyncContext, Context, Handler, MailboxError, Message, MessageResult,
    ResponseActFuture, WeakAddr,
};
use tokio::sync::mpsc;
use wxlogin_storage::{OpenId, Store};

use crate::scene::state::{LoginMode, SceneError, SceneMachine, SceneStatus};
use crate::scene::{
    Answer, AnswerOutcome, ConfirmationReply, EndedScene, Expire, Origin, Requester, Scan,
    ScanByCode, ScanOutcome, SceneActor, SceneReport, SceneServices, ToScene,
};
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

/// What the supervisor keeps of a live scene.
struct LiveScene {
    scene: WeakAddr<SceneActor>,
    /// See [`Requester::secret_digest`]: checked by the HTTP layer before it talks to the scene.
    secret_digest: [u8; 32],
    /// In code mode, the code that scans this scene by text message.
    code: Option<LoginCode>,
}

/// How an ended scene is reported until it is forgotten.
struct Ended {
    last: EndedScene,
    /// Still reserved, so it is not handed out while someone may still send it.
    code: Option<LoginCode>,
}

/// Scenes that ended lately, so a late poll hears how they ended, not `not found`. Kept in two
/// generations, each taking the scenes that end in one TTL-long window; when a window closes
/// the older generation is forgotten whole. An ended scene is so remembered for at least one
/// TTL and at most two, without a forget time of its own.
struct EndedScenes {
    recent: HashMap<SceneId, Ended>,
    older: HashMap<SceneId, Ended>,
    /// When `recent` becomes `older`.
    window_ends: Instant,
}

impl EndedScenes {
    fn new(ttl: Duration) -> Self {
        Self {
            recent: HashMap::new(),
            older: HashMap::new(),
            window_ends: Instant::now() + ttl,
        }
    }

    fn get(&self, id: &SceneId) -> Option<&Ended> {
        self.recent.get(id).or_else(|| self.older.get(id))
    }

    fn insert(&mut self, id: SceneId, ended: Ended) {
        self.recent.insert(id, ended);
    }

    /// Once the window has closed: a new one opens, and the generation before the one just
    /// closed is forgotten and returned.
    fn turn(&mut self, now: Instant, ttl: Duration) -> Option<HashMap<SceneId, Ended>> {
        if now < self.window_ends {
            return None;
        }
        self.window_ends = now + ttl;
        let closed = std::mem::take(&mut self.recent);
        Some(std::mem::replace(&mut self.older, closed))
    }
}

pub struct SceneSupervisor {
    scenes: HashMap<SceneId, LiveScene>,
    counters: Arc<SceneCounters>,
    /// Live scenes by expiry, oldest first.
    expiries: VecDeque<(Instant, SceneId)>,
    ended: EndedScenes,
    /// The login codes of live scenes and of remembered ended ones: a code is not handed out
    /// again while someone may still send it.
    codes: HashMap<LoginCode, SceneId>,
    /// Scenes waiting for their scanner's confirmation, by scanner (the latest one asked).
    confirmations: HashMap<OpenId, SceneId>,
    services: Arc<SceneServices>,
    reports: mpsc::UnboundedReceiver<SceneReport>,
    settings: SceneSettings,
}

impl SceneSupervisor {
    pub fn new(store: Store, settings: SceneSettings) -> Self {
        let (reports_tx, reports) = mpsc::unbounded_channel();
        Self {
            scenes: HashMap::new(),
            counters: Arc::default(),
            expiries: VecDeque::new(),
            ended: EndedScenes::new(settings.ttl),
            codes: HashMap::new(),
            confirmations: HashMap::new(),
            services: Arc::new(SceneServices {
                store,
                session_ttl: settings.session_ttl,
                reports: reports_tx,
            }),
            reports,
            settings,
        }
    }

    /// Shared counts of live, created and expired scenes.
    pub fn counters(&self) -> Arc<SceneCounters> {
        self.counters.clone()
    }

    /// Takes in what the scenes reported since: every answer reads the indexes after this.
    fn read_reports(&mut self) {
        while let Ok(report) = self.reports.try_recv() {
            match report {
                SceneReport::AwaitsConfirmation { id, scanner } => {
                    // A user answers the confirmation they were asked last.
                    if self.scenes.contains_key(&id) {
                        self.confirmations.insert(scanner, id);
                    }
                }
                SceneReport::Ended {
                    id,
                    last,
                    scanner,
                    by_ttl,
                } => self.ended(id, last, scanner, by_ttl),
            }
        }
    }

    /// Sends `Expire` to every scene whose TTL has run out, and forgets ended scenes one to
    /// two TTLs later.
    fn sweep(&mut self, now: Instant) {
        self.read_reports();
        while self.expiries.front().is_some_and(|(at, _)| *at <= now) {
            let (_, id) = self.expiries.pop_front().expect("just seen");
            // The scene reports its end (after a write in flight, if any).
            if let Some(scene) = self.live(&id) {
                scene.do_send(Expire);
            }
        }
        let forgotten = self.ended.turn(now, self.settings.ttl);
        for code in forgotten
            .iter()
            .flat_map(|f| f.values())
            .filter_map(|e| e.code)
        {
            self.codes.remove(&code);
        }
        self.give_back_memory(forgotten.is_some_and(|f| !f.is_empty()));
    }

    /// The scene `id` if it is live. One that is gone without reporting its end (its actor
    /// panicked) is taken as expired.
    fn live(&mut self, id: &SceneId) -> Option<Addr<SceneActor>> {
        let entry = self.scenes.get(id)?;
        let scene = entry.scene.upgrade();
        if scene.is_none() {
            let mode = match entry.code {
                Some(_) => LoginMode::Code,
                None => LoginMode::QrCode,
            };
            self.ended(id.clone(), EndedScene::unreported(mode), None, true);
        }
        scene
    }

    /// Takes a scene out of the live ones and remembers how it ended.
    fn ended(&mut self, id: SceneId, last: EndedScene, scanner: Option<OpenId>, by_ttl: bool) {
        let Some(scene) = self.scenes.remove(&id) else {
            return;
        };
        if let Some(scanner) = scanner {
            self.confirmed(&scanner, &id);
        }
        self.ended.insert(
            id,
            Ended {
                last,
                code: scene.code,
            },
        );
        self.counters
            .live
            .store(self.scenes.len(), Ordering::Relaxed);
        if by_ttl {
            self.counters.expired.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `openid`'s confirmation, if it was pending for this scene, is over.
    fn confirmed(&mut self, openid: &OpenId, id: &SceneId) {
        if self.confirmations.get(openid) == Some(id) {
            self.confirmations.remove(openid);
        }
    }

    /// After a wave of scenes ends, hand the emptied tables back to the allocator, and the
    /// allocator's free pages back to the system; `freed` says a table was just dropped.
    fn give_back_memory(&mut self, freed: bool) {
        fn oversized(len: usize, capacity: usize) -> bool {
            capacity > 1024 && capacity > 4 * len
        }
        let mut shrunk = freed;
        if oversized(self.scenes.len(), self.scenes.capacity()) {
            self.scenes.shrink_to_fit();
            shrunk = true;
        }
        if oversized(self.expiries.len(), self.expiries.capacity()) {
            self.expiries.shrink_to_fit();
            shrunk = true;
        }
        if oversized(self.codes.len(), self.codes.capacity()) {
            self.codes.shrink_to_fit();
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

    /// Delivers `msg` to the live scene `id`: `None` if there is none (any more).
    fn forward<M>(&mut self, id: &SceneId, msg: M) -> ResponseActFuture<Self, Option<M::Result>>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        SceneActor: Handler<ToScene<M>>,
    {
        let Some(scene) = self.live(id) else {
            return Box::pin(ready(None));
        };
        Box::pin(async move { scene.send(ToScene(msg)).await.ok().flatten() }.into_actor(self))
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
        self.read_reports();
        let code = match msg.mode {
            LoginMode::QrCode => None,
            LoginMode::Code => {
                let draws = std::iter::repeat_with(LoginCode::random).take(CODE_DRAWS);
                Some(self.reserve_code(&msg.id, draws)?)
            }
        };
        let expires_at = Instant::now() + self.settings.ttl;
        let scene = SceneActor::start(
            msg.id.clone(),
            SceneMachine::new(msg.mode, self.settings.confirm),
            expires_at,
            Origin::from(&msg.requester),
            self.services.clone(),
        );
        self.scenes.insert(
            msg.id.clone(),
            LiveScene {
                scene,
                secret_digest: msg.requester.secret_digest,
                code,
            },
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

    fn handle(&mut self, FindScene(id): FindScene, _: &mut Self::Context) -> Self::Result {
        self.read_reports();
        MessageResult(if let Some(scene) = self.live(&id) {
            SceneLookup::Live(SceneHandle {
                scene,
                secret_digest: self.scenes[&id].secret_digest,
            })
        } else if let Some(ended) = self.ended.get(&id) {
            SceneLookup::Ended(ended.last.status())
        } else {
            SceneLookup::Unknown
        })
    }
}

/// A live scene's address, to send one of [`crate::Watch`], [`crate::Scan`],
/// [`crate::RequestCode`] and [`crate::Bind`] to. Once the scene has ended, `send` fails as
/// sending to a stopped actor does.
pub struct SceneHandle {
    scene: Addr<SceneActor>,
    secret_digest: [u8; 32],
}

impl SceneHandle {
    /// See [`Requester::secret_digest`].
    pub fn secret_digest(&self) -> &[u8; 32] {
        &self.secret_digest
    }

    /// Sends `msg` and lets go of the address before the answer comes: nobody waiting on a
    /// scene holds its address (it would keep the scene's mailbox allocated after the scene
    /// ended), and the scene, woken for the message anyway, is not woken again by the last
    /// address going away.
    pub async fn send<M>(self, msg: M) -> Result<M::Result, MailboxError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        SceneActor: Handler<ToScene<M>>,
    {
        let answer = self.scene.send(ToScene(msg));
        drop(self);
        answer.await?.ok_or(MailboxError::Closed)
    }
}

impl Handler<ScanByCode> for SceneSupervisor {
    type Result = ResponseActFuture<Self, Option<Result<ScanOutcome, SceneError>>>;

    fn handle(&mut self, msg: ScanByCode, _: &mut Self::Context) -> Self::Result {
        self.read_reports();
        let Some(id) = self.codes.get(&msg.code).cloned() else {
            return Box::pin(ready(None));
        };
        // A text message comes from someone who already follows the account.
        let scan = Scan {
            openid: msg.openid,
            new_follower: false,
            sent_at: msg.sent_at,
        };
        self.forward(&id, scan)
    }
}

impl Handler<Answer> for SceneSupervisor {
    type Result = ResponseActFuture<Self, Option<Result<AnswerOutcome, SceneError>>>;

    fn handle(&mut self, msg: Answer, _: &mut Self::Context) -> Self::Result {
        self.read_reports();
        let Some(id) = self.confirmations.get(&msg.openid).cloned() else {
            return Box::pin(ready(None));
        };
        let openid = msg.openid.clone();
        let reply = ConfirmationReply {
            openid: msg.openid,
            number: msg.number,
            sent_at: msg.sent_at,
        };
        Box::pin(
            self.forward(&id, reply)
                .map(move |answered, supervisor, _| {
                    // Let in, denied or gone: nothing more to confirm. Still waiting (a wrong
                    // sender, a write in flight): it stays.
                    if !matches!(answered, Some(Err(_))) {
                        supervisor.confirmed(&openid, &id);
                    }
                    answered
                }),
        )
    }
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
    use super::*;
    use crate::Phase;

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
        let gone = Context::<SceneActor>::new().address().downgrade();
        supervisor.scenes.insert(
            first.clone(),
            LiveScene {
                scene: gone,
                secret_digest: [0; 32],
                code: Some(a),
            },
        );
        supervisor.ended(first, EndedScene::unreported(LoginMode::Code), None, true);
        let held = |supervisor: &mut SceneSupervisor| {
            supervisor
                .reserve_code(&SceneId::generate(), [a].into_iter())
                .is_err()
        };
        assert!(held(&mut supervisor));
        // Still held after one TTL, whenever in its window the scene ended; gone after two.
        supervisor.sweep(Instant::now() + Duration::from_secs(301));
        assert!(held(&mut supervisor));
        supervisor.sweep(Instant::now() + Duration::from_secs(602));
        let third = SceneId::generate();
        assert_eq!(supervisor.reserve_code(&third, [a].into_iter()).unwrap(), a);
    }

    #[test]
    fn a_scene_gone_without_a_word_is_taken_as_expired() {
        let dir = tempfile::tempdir().unwrap();
        let mut supervisor = supervisor(&dir);
        let id = SceneId::generate();
        // The address of an actor that is gone, as after a panic: it never reported its end.
        let gone = Context::<SceneActor>::new().address().downgrade();
        supervisor.scenes.insert(
            id.clone(),
            LiveScene {
                scene: gone,
                secret_digest: [0; 32],
                code: None,
            },
        );
        assert!(supervisor.live(&id).is_none());
        assert!(supervisor.scenes.is_empty());
        let last = supervisor.ended.get(&id).unwrap().last.status();
        assert_eq!(last.phase, Phase::Expired);
        assert_eq!(supervisor.counters.expired(), 1);
    }
}
