//! One scene, from QR creation until its TTL runs out: an actor with its own mailbox and state.
//!
//! The supervisor starts it ([`SceneActor::start`]) and keeps only a weak address: the scene
//! keeps itself alive until it ends (its TTL, a denial, an unfollow), reports how it ended to
//! the supervisor, answers every waiting long-poll and stops. Messages from outside arrive
//! wrapped in a [`ToScene`], whose handler checks the deadline before anything else: past it
//! the scene ends on the spot and answers `None`, so nobody sees a scene outlive its TTL.
//!
//! While a store write for the scene is in flight (a scan that logs in, a bind) the scene is
//! `busy`: other scans are told it was already scanned and other binds that it is not
//! awaiting one, so a scene can never log in twice; an expiry that arrives meanwhile waits
//! for the write to finish.
//!
//! On PostgreSQL the scene's row is authoritative and this actor is one node's view of it and
//! the home of that node's waiters (see [`transaction`]): every change runs under the row's
//! lock and is committed, with its notification, before anyone hears of it.

mod bind;
mod origin;
pub(crate) mod record;
mod scan;
pub mod state;
mod transaction;
mod waiters;

pub use bind::{Bind, BindingScanner, Bound, RequestCode};
pub use origin::Origin;
pub(crate) use scan::ConfirmationReply;
pub use scan::{Admitted, Answer, AnswerOutcome, Scan, ScanByCode, ScanOnDevice, ScanOutcome};
pub(crate) use transaction::{Refusable, Reload};

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::dev::channel::channel;
use actix::dev::ContextFut;
use actix::fut::WrapFuture;
use actix::{
    Actor, ActorContext, ActorFutureExt, ActorResponse, AsyncContext, Context, Handler, Message,
    WeakAddr,
};
use tokio::sync::{mpsc, oneshot};
use wxlogin_storage::{
    Binding, LoginMethod, NewSession, OpenId, SceneJournal, SessionDigest, Store, StoreError,
};

use crate::pool::LocalPool;
use crate::SceneKey;
use state::{LoginMode, Phase, SceneMachine, SceneStatus};
use waiters::Waiters;

/// Messages a scene's mailbox holds before senders wait (actix's default).
const MAILBOX_CAPACITY: usize = 16;

thread_local! {
    /// The scenes started on this thread, polled by one task.
    static SCENES: LocalPool<ContextFut<SceneActor, Context<SceneActor>>> =
        const { LocalPool::new() };
}

/// The browser that asked for a login: where a scan login is logged from, what the scanner is
/// shown when asked to confirm, and how that browser proves it is the one.
#[derive(Clone, Debug)]
pub struct Requester {
    pub ip: String,
    /// Browser and operating system in words, e.g. "Chrome on Windows".
    pub device: String,
    pub at: SystemTime,
    /// The digest of the session the scene's login opens. Its token is derived from the scene's
    /// secret, which only the requesting browser was given: so whoever shows the secret gets
    /// the token (not whoever knows the id), and nothing stored holds the token itself.
    pub session_digest: SessionDigest,
}

/// What every scene needs from outside, shared by all of them.
pub(crate) struct SceneServices {
    pub(crate) store: Store,
    /// The scenes' rows, on PostgreSQL: then every change goes through them.
    pub(crate) journal: Option<SceneJournal>,
    pub(crate) session_ttl: Duration,
    /// Tells the supervisor what its indexes must learn.
    pub(crate) reports: mpsc::UnboundedSender<SceneReport>,
}

/// What a scene tells its supervisor.
pub(crate) enum SceneReport {
    /// `scanner` was asked to confirm this scene: their next short reply answers it.
    AwaitsConfirmation { key: SceneKey, scanner: OpenId },
    Ended {
        key: SceneKey,
        last: EndedScene,
        /// Whose confirmation the scene still awaited.
        scanner: Option<OpenId>,
        /// It ended at its TTL, rather than by a denial or an unfollow.
        by_ttl: bool,
    },
}

/// How an ended scene is reported until it is forgotten: the little of its last status that
/// is not implied by its end (it carries no token, no number, no time left).
#[derive(Clone, Copy, Debug)]
pub(crate) struct EndedScene {
    phase: Phase,
    mode: LoginMode,
    subscribed: bool,
    new_follower: bool,
}

impl EndedScene {
    pub(crate) fn from_status(last: &SceneStatus) -> Self {
        Self {
            phase: last.phase,
            mode: last.mode,
            subscribed: last.subscribed,
            new_follower: last.new_follower,
        }
    }

    /// A scene that ended without a word (its actor panicked): expired, nothing else known.
    pub(crate) fn unreported(mode: LoginMode) -> Self {
        Self {
            phase: Phase::Expired,
            mode,
            subscribed: false,
            new_follower: false,
        }
    }

    pub(crate) fn status(&self) -> SceneStatus {
        SceneStatus {
            phase: self.phase,
            mode: self.mode,
            subscribed: self.subscribed,
            new_follower: self.new_follower,
            bound: false,
            expires_at: Instant::now(),
            confirm_number: None,
        }
    }
}

pub struct SceneActor {
    key: SceneKey,
    services: Arc<SceneServices>,
    machine: SceneMachine,
    expires_at: Instant,
    origin: Origin,
    /// See [`Requester::session_digest`].
    session: SessionDigest,
    /// On PostgreSQL, the login of the change in progress: its session opens in the change's
    /// commit (transaction.rs).
    login: Option<Login>,
    /// Long-polls waiting for the next change.
    waiters: Waiters,
    /// A store write for this scene is in flight.
    busy: bool,
    /// The TTL ran out during that write: end when it finishes.
    expire_after_write: bool,
    /// On PostgreSQL: the version of the row this view reflects (0 on sled).
    version: u32,
    /// A change is being made under the row's lock: waiters hear of it, and the scene ends,
    /// only once it is committed.
    in_transaction: bool,
    /// The row changed while the scene was busy: read it again once the write is done.
    stale: bool,
}

impl SceneActor {
    /// Starts the scene on this thread's pool and returns its only lasting address, a weak
    /// one: nothing outside keeps a scene alive, it ends by itself.
    /// `version` is the version of the scene's row it starts from (0 without one).
    pub(crate) fn start(
        key: SceneKey,
        machine: SceneMachine,
        expires_at: Instant,
        origin: Origin,
        session: SessionDigest,
        services: Arc<SceneServices>,
        version: u32,
    ) -> WeakAddr<SceneActor> {
        let scene = Self {
            key,
            services,
            machine,
            expires_at,
            origin,
            session,
            login: None,
            waiters: Waiters::None,
            busy: false,
            expire_after_write: false,
            version,
            in_transaction: false,
            stale: false,
        };
        let (tx, rx) = channel(MAILBOX_CAPACITY);
        let context = Context::with_receiver(rx);
        let address = context.address().downgrade();
        drop(tx);
        SCENES.with(|pool| pool.spawn(context.into_future(scene)));
        address
    }

    fn status(&self) -> SceneStatus {
        self.machine.status(self.expires_at)
    }

    fn notify_waiters(&mut self) {
        if self.in_transaction {
            // Told once committed (transaction.rs): nobody hears of a change that may not last.
            return;
        }
        let status = self.status();
        self.waiters.answer(&status);
    }

    fn report(&self, report: SceneReport) {
        // Fails only once the supervisor is gone, and then nobody is left to tell.
        let _ = self.services.reports.send(report);
    }

    /// Past the TTL, with no write in flight: the scene ends now, before it answers anything.
    fn outlived(&mut self, ctx: &mut Context<Self>) -> bool {
        let outlived = !self.busy && Instant::now() >= self.expires_at;
        if outlived {
            self.end(ctx, true);
        }
        outlived
    }

    /// Ends the scene (expiring it unless it reached a terminal state) and tells the
    /// supervisor how; [`Actor::stopped`] then answers the waiters.
    fn end(&mut self, ctx: &mut Context<Self>, by_ttl: bool) {
        if !ctx.state().alive() {
            // Already ending (an unfollow found by a write, then the write's own end).
            return;
        }
        if self.in_transaction {
            // The end is part of the change: committed first, then the scene ends (a stopping
            // actor would drop the transaction).
            self.machine.expire();
            return;
        }
        let scanner = self.machine.confirming().cloned();
        self.machine.expire();
        self.report(SceneReport::Ended {
            key: self.key,
            last: EndedScene::from_status(&self.status()),
            scanner,
            by_ttl,
        });
        ctx.stop();
    }

    /// What opens the session of the scene's login, once the store has said who logs in.
    fn session_opener(&self) -> SessionOpener {
        SessionOpener {
            store: self.services.store.clone(),
            digest: self.session,
            ttl: self.services.session_ttl,
            deferred: self.in_transaction,
        }
    }

    /// A store write finished: the scene takes messages again, and ends if its TTL ran out
    /// meanwhile.
    fn write_done(&mut self, ctx: &mut Context<Self>) {
        if self.in_transaction {
            // The transaction's commit finishes the write.
            return;
        }
        self.busy = false;
        if self.expire_after_write {
            self.end(ctx, true);
        }
    }
}

impl Actor for SceneActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Alive while this never-ready, zero-sized item is pending, not while someone holds
        // an address: a scene lives until it ends, whoever holds its address.
        ctx.spawn(actix::fut::wrap_future(std::future::pending::<()>()));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.notify_waiters();
    }
}

/// A login the scene's session is opened for.
pub(crate) struct Login {
    pub(crate) binding: Binding,
    pub(crate) method: LoginMethod,
    pub(crate) client_ip: String,
}

impl Login {
    pub(crate) fn session<'a>(
        &'a self,
        digest: &'a SessionDigest,
        ttl: Duration,
    ) -> NewSession<'a> {
        NewSession {
            binding: &self.binding,
            digest,
            ttl,
            method: self.method,
            client_ip: &self.client_ip,
        }
    }
}

/// The store's part of a scene's login: on sled the session opens at once; in a change on
/// PostgreSQL it opens with the change's commit (transaction.rs), so the login comes back to
/// be kept in [`SceneActor::login`] until then.
struct SessionOpener {
    store: Store,
    digest: SessionDigest,
    ttl: Duration,
    deferred: bool,
}

impl SessionOpener {
    async fn open(self, login: Login) -> Result<Option<Login>, StoreError> {
        if self.deferred {
            return Ok(Some(login));
        }
        self.store
            .open_session(login.session(&self.digest, self.ttl))
            .await?;
        Ok(None)
    }
}

/// The supervisor's word that the scene's TTL ran out.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Expire;

impl Handler<Expire> for SceneActor {
    type Result = ();

    fn handle(&mut self, _: Expire, ctx: &mut Self::Context) {
        if self.busy {
            self.expire_after_write = true;
        } else {
            self.end(ctx, true);
        }
    }
}

/// `msg` for a live scene; answered `None` once the scene has ended or outlived its TTL.
pub struct ToScene<M>(pub(crate) M);

impl<M: Message> Message for ToScene<M>
where
    M::Result: 'static,
{
    type Result = Option<M::Result>;
}

/// How a live scene answers `M`: at once or after a store write, with `Some` unless the scene
/// is gone.
pub(crate) type Reply<M> = ActorResponse<SceneActor, Option<<M as Message>::Result>>;

/// A message a live scene answers; [`ToScene`] delivers it after the deadline check.
pub(crate) trait Live<M: Message> {
    /// It may change the scene: on PostgreSQL it runs under the row's lock.
    const CHANGES: bool = true;

    fn live(&mut self, msg: M, ctx: &mut Context<SceneActor>) -> Reply<M>;
}

impl<M> Handler<ToScene<M>> for SceneActor
where
    M: Message + 'static,
    M::Result: Refusable + 'static,
    SceneActor: Live<M>,
{
    type Result = Reply<M>;

    fn handle(&mut self, ToScene(msg): ToScene<M>, ctx: &mut Self::Context) -> Reply<M> {
        if self.outlived(ctx) {
            return ActorResponse::reply(None);
        }
        match &self.services.journal {
            // Busy, the message is answered as during any write (by its own handler).
            Some(journal) if <Self as Live<M>>::CHANGES && !self.busy => {
                let journal = journal.clone();
                self.transition(journal, msg)
            }
            _ => self.live(msg, ctx),
        }
    }
}

/// The reply after a store write: the write is done whatever it answered.
fn after_write<T: 'static>(
    write: impl actix::ActorFuture<SceneActor, Output = T> + 'static,
) -> ActorResponse<SceneActor, Option<T>> {
    ActorResponse::r#async(write.map(|answer, scene: &mut SceneActor, ctx| {
        scene.write_done(ctx);
        Some(answer)
    }))
}

/// The current status and, when asked to watch, a receiver for the next change.
#[derive(Message)]
#[rtype(result = "Watched")]
pub struct Watch {
    pub until_change: bool,
}

pub struct Watched {
    pub status: SceneStatus,
    /// `None` when not asked for, or when only the TTL can still change the scene.
    pub change: Option<oneshot::Receiver<SceneStatus>>,
}

impl Live<Watch> for SceneActor {
    const CHANGES: bool = false;

    fn live(&mut self, msg: Watch, _: &mut Context<Self>) -> Reply<Watch> {
        if !msg.until_change {
            // A poll that does not wait sees whatever any node committed before it.
            return self.read_committed(|scene| Watched {
                status: scene.status(),
                change: None,
            });
        }
        let status = self.status();
        let change = (!status.phase.is_settled()).then(|| self.waiters.add());
        ActorResponse::reply(Some(Watched { status, change }))
    }
}

impl SceneActor {
    /// Answers `answer` of the scene as committed: on PostgreSQL the row is read first, so the
    /// answer holds whatever any node committed before the request, not only what this node
    /// has heard of so far (its notification may still be on its way). During a write of this
    /// node's own, the view is the latest there is.
    fn read_committed<T: 'static>(
        &mut self,
        answer: impl FnOnce(&mut SceneActor) -> T + 'static,
    ) -> ActorResponse<Self, Option<T>> {
        let journal = match &self.services.journal {
            Some(journal) if !self.busy => journal.clone(),
            _ => return ActorResponse::reply(Some(answer(self))),
        };
        let key = *self.key.as_bytes();
        let read = async move { journal.load(&key).await };
        ActorResponse::r#async(read.into_actor(self).map(|row, scene, ctx| {
            scene.reloaded(row, ctx);
            Some(answer(scene))
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use actix::fut::wrap_future;
    use actix::{Addr, MailboxError};
    use tempfile::TempDir;
    use wxlogin_storage::Phone;

    use super::*;
    use crate::{CodeDigest, SceneError, SceneId};

    struct Fixture {
        _dir: TempDir,
        services: Arc<SceneServices>,
        reports: mpsc::UnboundedReceiver<SceneReport>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (tx, reports) = mpsc::unbounded_channel();
        let services = Arc::new(SceneServices {
            store: Store::open(dir.path()).unwrap(),
            journal: None,
            session_ttl: Duration::from_secs(3600),
            reports: tx,
        });
        Fixture {
            _dir: dir,
            services,
            reports,
        }
    }

    impl Fixture {
        fn start(&self, confirm: bool, expires_at: Instant) -> Addr<SceneActor> {
            let requester = Requester {
                ip: "203.0.113.7".into(),
                device: "curl".into(),
                at: UNIX_EPOCH,
                session_digest: wxlogin_storage::SessionDigest::from_bytes([0; 32]),
            };
            SceneActor::start(
                SceneId::generate().key(),
                SceneMachine::new(LoginMode::QrCode, confirm),
                expires_at,
                Origin::from(&requester),
                requester.session_digest,
                self.services.clone(),
                0,
            )
            .upgrade()
            .expect("just started")
        }

        /// The scene's end as it reported it, if it has ended.
        fn ended(&mut self) -> Option<(Phase, bool)> {
            while let Ok(report) = self.reports.try_recv() {
                if let SceneReport::Ended { last, by_ttl, .. } = report {
                    return Some((last.phase, by_ttl));
                }
            }
            None
        }
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(300)
    }

    fn alice() -> OpenId {
        OpenId::parse("alice").unwrap()
    }

    async fn watch(scene: &Addr<SceneActor>) -> Result<Option<Watched>, MailboxError> {
        scene.send(ToScene(Watch { until_change: true })).await
    }

    /// A store write the test finishes when it likes, as a scan login or a bind does.
    struct HoldWrite(oneshot::Receiver<()>);

    impl Message for HoldWrite {
        type Result = ();
    }

    impl Live<HoldWrite> for SceneActor {
        fn live(&mut self, HoldWrite(done): HoldWrite, _: &mut Context<Self>) -> Reply<HoldWrite> {
            self.busy = true;
            after_write(wrap_future(async move {
                let _ = done.await;
            }))
        }
    }

    impl Refusable for () {
        fn refused(_: wxlogin_storage::StoreError) -> Option<Self> {
            None
        }
    }

    /// A handler with a bug.
    struct Panic;

    impl Message for Panic {
        type Result = ();
    }

    impl Live<Panic> for SceneActor {
        fn live(&mut self, _: Panic, _: &mut Context<Self>) -> Reply<Panic> {
            panic!("a bug in one scene's handler");
        }
    }

    #[actix::test]
    async fn an_expiry_during_a_write_waits_for_the_write() {
        let mut fixture = fixture();
        let scene = fixture.start(false, later());
        let (finish, done) = oneshot::channel();
        let write = scene.send(ToScene(HoldWrite(done)));
        scene.do_send(Expire);
        // The Expire came and went: the scene is still live, and has not reported an end.
        let watched = watch(&scene).await.unwrap().expect("live during its write");
        assert_eq!(watched.status.phase, Phase::Waiting);
        assert_eq!(fixture.ended(), None);
        finish.send(()).unwrap();
        assert_eq!(write.await.unwrap(), Some(()));
        // The write done, the TTL's end follows.
        assert!(watch(&scene).await.is_err());
        assert_eq!(fixture.ended(), Some((Phase::Expired, true)));
        let mut waiter = watched.change.expect("asked to watch");
        assert_eq!(waiter.try_recv().unwrap().phase, Phase::Expired);
    }

    #[actix::test]
    async fn every_message_checks_the_deadline_first() {
        let mut fixture = fixture();
        let phone = || Phone::parse("13800000001").unwrap();
        let past = Instant::now();
        let scene = fixture.start(false, past);
        assert!(watch(&scene).await.unwrap().is_none());
        assert_eq!(fixture.ended(), Some((Phase::Expired, true)));
        let scene = fixture.start(false, past);
        let scan = Scan {
            openid: alice(),
            new_follower: true,
            sent_at: None,
        };
        assert!(scene.send(ToScene(scan)).await.unwrap().is_none());
        assert_eq!(fixture.ended(), Some((Phase::Expired, true)));
        let scene = fixture.start(false, past);
        assert!(scene.send(ToScene(BindingScanner)).await.unwrap().is_none());
        assert_eq!(fixture.ended(), Some((Phase::Expired, true)));
        let scene = fixture.start(false, past);
        let request = RequestCode {
            code: CodeDigest([1; 32]),
        };
        assert!(scene.send(ToScene(request)).await.unwrap().is_none());
        assert_eq!(fixture.ended(), Some((Phase::Expired, true)));
        let scene = fixture.start(false, past);
        let bind = Bind {
            phone: phone(),
            code: CodeDigest([1; 32]),
            client_ip: "203.0.113.7".into(),
        };
        assert!(scene.send(ToScene(bind)).await.unwrap().is_none());
        assert_eq!(fixture.ended(), Some((Phase::Expired, true)));
        let scene = fixture.start(true, past);
        let reply = ConfirmationReply {
            openid: alice(),
            number: 42,
            sent_at: None,
        };
        assert!(scene.send(ToScene(reply)).await.unwrap().is_none());
        assert_eq!(fixture.ended(), Some((Phase::Expired, true)));
    }

    #[actix::test]
    async fn only_a_scene_awaiting_a_bind_names_its_scanner() {
        let fixture = fixture();
        let scene = fixture.start(false, later());
        let scanner = || async { scene.send(ToScene(BindingScanner)).await.unwrap().unwrap() };
        assert!(matches!(scanner().await, Err(SceneError::NotAwaitingBind)));
        let scan = Scan {
            openid: alice(),
            new_follower: false,
            sent_at: None,
        };
        scene.send(ToScene(scan)).await.unwrap().unwrap().unwrap();
        assert_eq!(scanner().await.unwrap(), alice());
    }

    #[actix::test]
    async fn every_waiter_hears_how_the_scene_ended() {
        let mut fixture = fixture();
        // At the TTL: two waiters, both told.
        let scene = fixture.start(false, later());
        let first = watch(&scene).await.unwrap().unwrap().change.unwrap();
        let second = watch(&scene).await.unwrap().unwrap().change.unwrap();
        scene.do_send(Expire);
        assert_eq!(first.await.unwrap().phase, Phase::Expired);
        assert_eq!(second.await.unwrap().phase, Phase::Expired);
        assert_eq!(fixture.ended(), Some((Phase::Expired, true)));

        // Denied by the scanner: the waiter hears `denied`, and the scene ends at once.
        let scene = fixture.start(true, later());
        let scan = Scan {
            openid: alice(),
            new_follower: false,
            sent_at: None,
        };
        let asked = scene.send(ToScene(scan)).await.unwrap().unwrap().unwrap();
        assert!(matches!(asked, ScanOutcome::Confirm(_)));
        let waiter = watch(&scene).await.unwrap().unwrap().change.unwrap();
        let reply = ConfirmationReply {
            openid: alice(),
            number: 0,
            sent_at: None,
        };
        let answered = scene.send(ToScene(reply)).await.unwrap().unwrap().unwrap();
        assert_eq!(answered, AnswerOutcome::Denied);
        assert_eq!(waiter.await.unwrap().phase, Phase::Denied);
        assert_eq!(fixture.ended(), Some((Phase::Denied, false)));
        assert!(watch(&scene).await.is_err());
    }

    #[actix::test]
    async fn a_panicking_handler_takes_down_only_its_own_scene() {
        let fixture = fixture();
        let buggy = fixture.start(false, later());
        let neighbour = fixture.start(false, later());
        let waiting = watch(&neighbour).await.unwrap().unwrap().change.unwrap();
        assert!(buggy.send(ToScene(Panic)).await.is_err());
        assert!(watch(&buggy).await.is_err());
        // The neighbour, polled by the same task, goes on: it answers and its waiter is held.
        let watched = watch(&neighbour).await.unwrap().expect("still live");
        assert_eq!(watched.status.phase, Phase::Waiting);
        neighbour.do_send(Expire);
        assert_eq!(waiting.await.unwrap().phase, Phase::Expired);
        // Scenes started after the panic are polled too.
        let next = fixture.start(false, later());
        assert!(watch(&next).await.unwrap().is_some());
    }
}
