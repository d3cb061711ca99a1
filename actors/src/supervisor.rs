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
//!
//! On PostgreSQL the scenes' rows are authoritative and shared by every node (see
//! scene/transaction.rs): a scene this node has no actor for (made on another node, or before
//! this node restarted) is taken up from its row, once however many ask at the same time; the
//! two indexes are the rows' columns, so a login code or a confirmation reply reaching any node
//! finds its scene; and the node's one `LISTEN` connection tells it which scenes changed.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::fut::{ready, ActorFutureExt, WrapFuture};
use actix::{
    Actor, ActorResponse, Addr, AsyncContext, Context, Handler, MailboxError, Message,
    ResponseActFuture, StreamHandler, WeakAddr,
};
use tokio::sync::{mpsc, oneshot};
use wxlogin_storage::{NewScene, OpenId, SceneNotice, SceneRow, SessionDigest, Store, StoreError};

use crate::scene::state::{LoginMode, SceneError, SceneMachine, SceneStatus};
use crate::scene::{
    record, Answer, AnswerOutcome, ConfirmationReply, EndedScene, Expire, Origin, Refusable,
    Reload, Requester, Scan, ScanByCode, ScanOutcome, SceneActor, SceneReport, SceneServices,
    ToScene,
};
use crate::wall_clock;
use crate::{LoginCode, SceneId, SceneKey};

/// Draws of a random login code before giving up: with the code space a tenth full, the
/// chance that all of them are taken is 10⁻¹⁶.
const CODE_DRAWS: usize = 16;

/// How often expired scenes are swept out: the most a waiting long-poll hears `expired` late.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// How often, on PostgreSQL, the rows of scenes nobody can ask about any more are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(60);

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
    /// See [`Requester::session_digest`]: checked by the HTTP layer before it talks to the scene.
    session_digest: SessionDigest,
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
    recent: HashMap<SceneKey, Ended>,
    older: HashMap<SceneKey, Ended>,
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

    fn get(&self, key: &SceneKey) -> Option<&Ended> {
        self.recent.get(key).or_else(|| self.older.get(key))
    }

    fn insert(&mut self, key: SceneKey, ended: Ended) {
        self.recent.insert(key, ended);
    }

    /// Once the window has closed: a new one opens, and the generation before the one just
    /// closed is forgotten and returned.
    fn turn(&mut self, now: Instant, ttl: Duration) -> Option<HashMap<SceneKey, Ended>> {
        if now < self.window_ends {
            return None;
        }
        self.window_ends = now + ttl;
        let closed = std::mem::take(&mut self.recent);
        Some(std::mem::replace(&mut self.older, closed))
    }
}

pub struct SceneSupervisor {
    scenes: HashMap<SceneKey, LiveScene>,
    counters: Arc<SceneCounters>,
    /// Live scenes by expiry, oldest first.
    expiries: VecDeque<(Instant, SceneKey)>,
    ended: EndedScenes,
    /// The login codes of live scenes and of remembered ended ones: a code is not handed out
    /// again while someone may still send it. (On PostgreSQL the rows' unique column.)
    codes: HashMap<LoginCode, SceneKey>,
    /// Scenes waiting for their scanner's confirmation, by scanner (the latest one asked).
    /// (On PostgreSQL the rows' column.)
    confirmations: HashMap<OpenId, SceneKey>,
    /// On PostgreSQL, the scenes whose rows are being read, and who waits for each.
    loads: HashMap<SceneKey, Vec<oneshot::Sender<bool>>>,
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
            loads: HashMap::new(),
            services: Arc::new(SceneServices {
                journal: store.scene_journal().cloned(),
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
                SceneReport::AwaitsConfirmation { key, scanner } => {
                    // A user answers the confirmation they were asked last. On PostgreSQL
                    // the rows are this index (`SceneJournal::awaiting_confirmation`).
                    if self.services.journal.is_none() && self.scenes.contains_key(&key) {
                        self.confirmations.insert(scanner, key);
                    }
                }
                SceneReport::Ended {
                    key,
                    last,
                    scanner,
                    by_ttl,
                } => self.ended(key, last, scanner, by_ttl),
            }
        }
    }

    /// Sends `Expire` to every scene whose TTL has run out, and forgets ended scenes one to
    /// two TTLs later.
    fn sweep(&mut self, now: Instant) {
        self.read_reports();
        while self.expiries.front().is_some_and(|(at, _)| *at <= now) {
            let (_, key) = self.expiries.pop_front().expect("just seen");
            // The scene reports its end (after a write in flight, if any).
            if let Some(scene) = self.live(&key) {
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
    fn live(&mut self, key: &SceneKey) -> Option<Addr<SceneActor>> {
        let entry = self.scenes.get(key)?;
        let scene = entry.scene.upgrade();
        if scene.is_none() {
            let mode = match entry.code {
                Some(_) => LoginMode::Code,
                None => LoginMode::QrCode,
            };
            self.ended(*key, EndedScene::unreported(mode), None, true);
        }
        scene
    }

    /// Takes a scene out of the live ones and remembers how it ended.
    fn ended(&mut self, key: SceneKey, last: EndedScene, scanner: Option<OpenId>, by_ttl: bool) {
        let Some(scene) = self.scenes.remove(&key) else {
            return;
        };
        if let Some(scanner) = scanner {
            self.confirmed(&scanner, &key);
        }
        self.ended.insert(
            key,
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
    fn confirmed(&mut self, openid: &OpenId, key: &SceneKey) {
        if self.confirmations.get(openid) == Some(key) {
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
        key: &SceneKey,
        mut draws: impl Iterator<Item = LoginCode>,
    ) -> Result<LoginCode, SceneError> {
        let code = draws
            .find(|code| !self.codes.contains_key(code))
            .ok_or(SceneError::NoFreeLoginCode)?;
        self.codes.insert(code, *key);
        Ok(code)
    }

    /// Delivers `msg` to the live scene `key`: `None` if there is none (any more).
    fn forward<M>(&mut self, key: &SceneKey, msg: M) -> ResponseActFuture<Self, Option<M::Result>>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        SceneActor: Handler<ToScene<M>>,
    {
        let Some(scene) = self.live(key) else {
            return Box::pin(ready(None));
        };
        Box::pin(async move { scene.send(ToScene(msg)).await.ok().flatten() }.into_actor(self))
    }

    /// Starts the scene's actor and keeps it among the live ones.
    #[allow(clippy::too_many_arguments)]
    fn start_scene(
        &mut self,
        key: SceneKey,
        machine: SceneMachine,
        expires_at: Instant,
        origin: Origin,
        session_digest: SessionDigest,
        code: Option<LoginCode>,
        version: u32,
    ) {
        let scene = SceneActor::start(
            key,
            machine,
            expires_at,
            origin,
            session_digest,
            self.services.clone(),
            version,
        );
        self.scenes.insert(
            key,
            LiveScene {
                scene,
                session_digest,
                code,
            },
        );
        // In order: a scene taken up from its row may expire before ones made here since.
        if self
            .expiries
            .back()
            .is_none_or(|(last, _)| *last <= expires_at)
        {
            self.expiries.push_back((expires_at, key));
        } else {
            let at = self.expiries.partition_point(|(due, _)| *due <= expires_at);
            self.expiries.insert(at, (expires_at, key));
        }
        self.counters
            .live
            .store(self.scenes.len(), Ordering::Relaxed);
    }

    /// What this node knows of the scene `key`.
    fn lookup(&mut self, key: &SceneKey) -> SceneLookup {
        if let Some(scene) = self.live(key) {
            SceneLookup::Live(SceneHandle {
                scene,
                session_digest: self.scenes[key].session_digest,
            })
        } else if let Some(ended) = self.ended.get(key) {
            SceneLookup::Ended(ended.last.status())
        } else {
            SceneLookup::Unknown
        }
    }

    /// On PostgreSQL, makes sure a scene this node does not know is taken up from its row, if
    /// it has one; concurrent callers share one read. Answers once it is done.
    fn take_up(
        &mut self,
        key: SceneKey,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Result<(), SceneError>> {
        let known = self.scenes.contains_key(&key) || self.ended.get(&key).is_some();
        let Some(journal) = self.services.journal.clone().filter(|_| !known) else {
            return Box::pin(ready(Ok(())));
        };
        let (tx, rx) = oneshot::channel();
        match self.loads.entry(key) {
            Entry::Occupied(mut waiting) => waiting.get_mut().push(tx),
            Entry::Vacant(first) => {
                first.insert(vec![tx]);
                let read = async move { journal.load(key.as_bytes()).await };
                ctx.spawn(read.into_actor(self).map(move |row, supervisor, _| {
                    let taken_up = supervisor.taken_up(key, row);
                    for waiter in supervisor.loads.remove(&key).into_iter().flatten() {
                        let _ = waiter.send(taken_up);
                    }
                }));
            }
        }
        Box::pin(
            async move {
                match rx.await {
                    Ok(true) => Ok(()),
                    _ => Err(StoreError::Unavailable(std::io::Error::other(
                        "the scene's row could not be read",
                    ))
                    .into()),
                }
            }
            .into_actor(self),
        )
    }

    /// A scene's row, read: a live one gets an actor here, an ended one is remembered as such.
    /// Whether it was read.
    fn taken_up(&mut self, key: SceneKey, row: Result<Option<SceneRow>, StoreError>) -> bool {
        self.read_reports();
        let row = match row {
            Ok(Some(row)) => row,
            Ok(None) => return true,
            Err(e) => {
                tracing::warn!(scene = ?key, error = %e, "a scene's row could not be read");
                return false;
            }
        };
        if self.scenes.contains_key(&key) {
            // Taken up meanwhile (the scene was made here while its row was read).
            return true;
        }
        let (mut machine, origin) = match record::import(&row.state) {
            Ok(imported) => imported,
            Err(e) => {
                tracing::warn!(scene = ?key, error = %e, "a scene's row is unreadable");
                return false;
            }
        };
        let expires_at = wall_clock::to_instant(row.expires_at);
        if machine.phase().is_terminal() || expires_at <= Instant::now() {
            machine.expire();
            let last = EndedScene::from_status(&machine.status(expires_at));
            self.ended.insert(key, Ended { last, code: None });
            return true;
        }
        let version = u32::try_from(row.version).unwrap_or(u32::MAX);
        self.start_scene(
            key,
            machine,
            expires_at,
            origin,
            row.session_digest,
            None,
            version,
        );
        true
    }

    /// On PostgreSQL: the scene an index column names, taken up here, then sent `msg`.
    fn forward_found<M>(
        &mut self,
        find: impl std::future::Future<Output = Result<Option<[u8; 32]>, StoreError>> + 'static,
        msg: M,
    ) -> ResponseActFuture<Self, Option<M::Result>>
    where
        M: Message + Send + 'static,
        M::Result: Refusable + Send,
        SceneActor: Handler<ToScene<M>>,
    {
        Box::pin(find.into_actor(self).then(move |found, supervisor, ctx| {
            let key = match found {
                Ok(Some(key)) => SceneKey(key),
                Ok(None) => return Box::pin(ready(None)) as ResponseActFuture<Self, _>,
                Err(e) => return Box::pin(ready(M::Result::refused(e))),
            };
            Box::pin(supervisor.take_up(key, ctx).then(
                move |taken_up, supervisor, _| match taken_up {
                    Ok(()) => supervisor.forward(&key, msg),
                    Err(SceneError::Store(e)) => Box::pin(ready(M::Result::refused(e))),
                    Err(_) => Box::pin(ready(None)),
                },
            ))
        }))
    }

    /// Deletes the rows of scenes that ended two TTLs ago: no node remembers them any more
    /// (each remembers an ended scene one to two TTLs), so their login codes are free again.
    fn purge(&mut self, ctx: &mut Context<Self>) {
        let Some(journal) = self.services.journal.clone() else {
            return;
        };
        let before = SystemTime::now() - 2 * self.settings.ttl;
        let purge = async move { journal.purge(before).await };
        ctx.spawn(purge.into_actor(self).map(|purged, _, _| match purged {
            Ok(0) => {}
            Ok(purged) => tracing::debug!(purged, "purged the rows of ended scenes"),
            Err(e) => tracing::warn!(error = %e, "purging ended scenes' rows failed"),
        }));
    }
}

impl Actor for SceneSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(SWEEP_EVERY, |supervisor, _| {
            supervisor.sweep(Instant::now())
        });
        if let Some(journal) = &self.services.journal {
            let mut notices = journal.listen();
            ctx.add_stream(futures_util::stream::poll_fn(move |cx| {
                notices.poll_recv(cx)
            }));
            ctx.run_interval(PURGE_EVERY, |supervisor, ctx| supervisor.purge(ctx));
        }
    }
}

/// The scenes' rows that changed on any node, from the one `LISTEN` connection.
impl StreamHandler<SceneNotice> for SceneSupervisor {
    fn handle(&mut self, notice: SceneNotice, _: &mut Self::Context) {
        self.read_reports();
        match notice {
            SceneNotice::Changed { key, version } => {
                if let Some(scene) = self.live(&SceneKey(key)) {
                    scene.do_send(Reload(Some(version)));
                }
            }
            // The listener (re)connected: whatever it missed, every scene here reads its row.
            SceneNotice::Resync => {
                for live in self.scenes.values() {
                    if let Some(scene) = live.scene.upgrade() {
                        scene.do_send(Reload(None));
                    }
                }
            }
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {
        // Only if the listener itself is gone; scenes go on, woken by their own node only.
        tracing::error!("the scene listener stopped: changes on other nodes go unheard");
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
    type Result = ActorResponse<Self, Result<Option<LoginCode>, SceneError>>;

    fn handle(&mut self, msg: OpenScene, _: &mut Self::Context) -> Self::Result {
        self.read_reports();
        let key = msg.id.key();
        let machine = SceneMachine::new(msg.mode, self.settings.confirm);
        let origin = Origin::from(&msg.requester);
        let session_digest = msg.requester.session_digest;
        let Some(journal) = self.services.journal.clone() else {
            let code = match msg.mode {
                LoginMode::QrCode => None,
                LoginMode::Code => {
                    let draws = std::iter::repeat_with(LoginCode::random).take(CODE_DRAWS);
                    match self.reserve_code(&key, draws) {
                        Ok(code) => Some(code),
                        Err(e) => return ActorResponse::reply(Err(e)),
                    }
                }
            };
            let expires_at = Instant::now() + self.settings.ttl;
            self.start_scene(key, machine, expires_at, origin, session_digest, code, 0);
            self.counters.created.fetch_add(1, Ordering::Relaxed);
            return ActorResponse::reply(Ok(code));
        };
        // On PostgreSQL the row comes first: once the QR code is out, any node may be asked.
        // A login code is the cluster's: a draw another row holds is drawn again.
        let state = match record::export(&machine, &origin) {
            Ok(state) => state,
            Err(e) => return ActorResponse::reply(Err(e)),
        };
        let draws: Vec<Option<LoginCode>> = match msg.mode {
            LoginMode::QrCode => vec![None],
            LoginMode::Code => std::iter::repeat_with(|| Some(LoginCode::random()))
                .take(CODE_DRAWS)
                .collect(),
        };
        let expires_at = SystemTime::now() + self.settings.ttl;
        let create = async move {
            for code in draws {
                let text = code.map(|code| code.to_string());
                let row = NewScene {
                    key: key.as_bytes(),
                    state: &state,
                    login_code: text.as_deref(),
                    session_digest: &session_digest,
                    expires_at,
                };
                if journal.create(row).await? {
                    return Ok(code);
                }
            }
            Err(SceneError::NoFreeLoginCode)
        };
        ActorResponse::r#async(create.into_actor(self).map(move |created, supervisor, _| {
            let code = created?;
            let expires_at = wall_clock::to_instant(expires_at);
            supervisor.start_scene(key, machine, expires_at, origin, session_digest, code, 1);
            supervisor.counters.created.fetch_add(1, Ordering::Relaxed);
            Ok(code)
        }))
    }
}

/// Find a scene by its id. On PostgreSQL a scene made on another node is taken up here; the
/// error is the database's, if its row could not be read.
#[derive(Message)]
#[rtype(result = "Result<SceneLookup, SceneError>")]
pub struct FindScene(pub SceneId);

pub enum SceneLookup {
    Live(SceneHandle),
    /// It existed and has ended: its last status.
    Ended(SceneStatus),
    Unknown,
}

impl Handler<FindScene> for SceneSupervisor {
    type Result = ActorResponse<Self, Result<SceneLookup, SceneError>>;

    fn handle(&mut self, FindScene(id): FindScene, ctx: &mut Self::Context) -> Self::Result {
        self.read_reports();
        let key = id.key();
        match self.lookup(&key) {
            SceneLookup::Unknown if self.services.journal.is_some() => ActorResponse::r#async(
                self.take_up(key, ctx)
                    .map(move |taken_up, supervisor, _| taken_up.map(|()| supervisor.lookup(&key))),
            ),
            known => ActorResponse::reply(Ok(known)),
        }
    }
}

/// A live scene's address, to send one of [`crate::Watch`], [`crate::Scan`],
/// [`crate::RequestCode`] and [`crate::Bind`] to. Once the scene has ended, `send` fails as
/// sending to a stopped actor does.
pub struct SceneHandle {
    scene: Addr<SceneActor>,
    session_digest: SessionDigest,
}

impl SceneHandle {
    /// See [`Requester::session_digest`].
    pub fn session_digest(&self) -> &SessionDigest {
        &self.session_digest
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
        // A text message comes from someone who already follows the account.
        let scan = Scan {
            openid: msg.openid,
            new_follower: false,
            sent_at: msg.sent_at,
        };
        if let Some(journal) = self.services.journal.clone() {
            let code = msg.code.to_string();
            let find = async move { journal.by_login_code(&code).await };
            return self.forward_found(find, scan);
        }
        let Some(key) = self.codes.get(&msg.code).copied() else {
            return Box::pin(ready(None));
        };
        self.forward(&key, scan)
    }
}

impl Handler<Answer> for SceneSupervisor {
    type Result = ResponseActFuture<Self, Option<Result<AnswerOutcome, SceneError>>>;

    fn handle(&mut self, msg: Answer, _: &mut Self::Context) -> Self::Result {
        self.read_reports();
        let reply = ConfirmationReply {
            openid: msg.openid.clone(),
            number: msg.number,
            sent_at: msg.sent_at,
        };
        if let Some(journal) = self.services.journal.clone() {
            let openid = msg.openid;
            let find = async move { journal.awaiting_confirmation(&openid).await };
            return self.forward_found(find, reply);
        }
        let Some(key) = self.confirmations.get(&msg.openid).copied() else {
            return Box::pin(ready(None));
        };
        let openid = msg.openid;
        Box::pin(
            self.forward(&key, reply)
                .map(move |answered, supervisor, _| {
                    // Let in, denied or gone: nothing more to confirm. Still waiting (a wrong
                    // sender, a write in flight): it stays.
                    if !matches!(answered, Some(Err(_))) {
                        supervisor.confirmed(&openid, &key);
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
        let (first, second) = (SceneId::generate().key(), SceneId::generate().key());
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
            supervisor.reserve_code(&SceneId::generate().key(), [a, b].into_iter()),
            Err(SceneError::NoFreeLoginCode)
        ));

        // Ended, the first scene keeps its code for one more TTL, then lets it go.
        let gone = Context::<SceneActor>::new().address().downgrade();
        supervisor.scenes.insert(
            first,
            LiveScene {
                scene: gone,
                session_digest: SessionDigest::from_bytes([0; 32]),
                code: Some(a),
            },
        );
        supervisor.ended(first, EndedScene::unreported(LoginMode::Code), None, true);
        let held = |supervisor: &mut SceneSupervisor| {
            supervisor
                .reserve_code(&SceneId::generate().key(), [a].into_iter())
                .is_err()
        };
        assert!(held(&mut supervisor));
        // Still held after one TTL, whenever in its window the scene ended; gone after two.
        supervisor.sweep(Instant::now() + Duration::from_secs(301));
        assert!(held(&mut supervisor));
        supervisor.sweep(Instant::now() + Duration::from_secs(602));
        let third = SceneId::generate().key();
        assert_eq!(supervisor.reserve_code(&third, [a].into_iter()).unwrap(), a);
    }

    #[test]
    fn a_scene_gone_without_a_word_is_taken_as_expired() {
        let dir = tempfile::tempdir().unwrap();
        let mut supervisor = supervisor(&dir);
        let id = SceneId::generate().key();
        // The address of an actor that is gone, as after a panic: it never reported its end.
        let gone = Context::<SceneActor>::new().address().downgrade();
        supervisor.scenes.insert(
            id,
            LiveScene {
                scene: gone,
                session_digest: SessionDigest::from_bytes([0; 32]),
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
