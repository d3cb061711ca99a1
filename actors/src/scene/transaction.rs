//! A scene on PostgreSQL: its row is authoritative, the actor is this node's view of it.
//!
//! A change ([`SceneActor::transition`]) takes the row's lock (`SELECT … FOR UPDATE`, in a
//! transaction), adopts the row if another node moved it since this view last read it, runs
//! the message's own handler, and writes the new state with the next version and a `NOTIFY` in
//! the same transaction. The scene is busy throughout, so this node starts no second change;
//! other nodes wait on the lock, then see this one's result. Side effects inside (opening a
//! session) happen once: the winner of the lock does them, the next one finds the scene moved.
//! A login's session is written in the same commit as the row that logs the scene in: one
//! durable commit for the login, and never a session whose scene did not log in.
//! Waiters are told, and a denied or unfollowed scene ends, only after the commit; if the
//! commit fails the view goes back to the row and the message is answered with the store's
//! error, so nobody is told of a login that is not in the row.
//!
//! A notification of another node's change reaches the scene as [`Reload`]: it reads the row
//! and, if it moved, answers its waiters.

use actix::dev::MessageResponse;
use actix::fut::{ready, ActorFutureExt, WrapFuture};
use actix::{ActorContext, ActorFuture, ActorResponse, AsyncContext, Context, Handler, Message};
use std::pin::Pin;
use tokio::sync::oneshot;
use wxlogin_storage::{SceneChange, SceneJournal, SceneRow, StoreError};

use super::state::SceneError;
use super::{record, Live, Reply, SceneActor, ToScene, Watched};

/// A reply that can carry the store's refusal: what a change answers when its row could not
/// be locked or written.
pub(crate) trait Refusable: Sized {
    fn refused(e: StoreError) -> Option<Self>;
}

impl<T> Refusable for Result<T, SceneError> {
    fn refused(e: StoreError) -> Option<Self> {
        Some(Err(e.into()))
    }
}

impl Refusable for Watched {
    /// Never asked: a watch changes nothing.
    fn refused(_: StoreError) -> Option<Self> {
        None
    }
}

type Step<T> = Pin<Box<dyn ActorFuture<SceneActor, Output = Option<T>>>>;

impl SceneActor {
    /// Runs `msg` as one change of the scene's row (see the module's comment).
    pub(super) fn transition<M>(&mut self, journal: SceneJournal, msg: M) -> Reply<M>
    where
        M: Message + 'static,
        M::Result: Refusable + 'static,
        SceneActor: Live<M>,
    {
        self.busy = true;
        let key = *self.key.as_bytes();
        let lock = async move { journal.lock(&key).await };
        ActorResponse::r#async(lock.into_actor(self).then(
            move |locked, scene, ctx| -> Step<M::Result> {
                let locked = match locked {
                    Ok(locked) => locked,
                    Err(e) => {
                        scene.transaction_done(false, ctx);
                        return Box::pin(ready(M::Result::refused(e)));
                    }
                };
                let Some(row) = locked.row().cloned() else {
                    // No row: purged, long after the scene ended.
                    scene.transaction_done(false, ctx);
                    scene.end(ctx, true);
                    return Box::pin(ready(None));
                };
                let adopted = match scene.adopt(&row) {
                    Ok(adopted) => adopted,
                    Err(e) => {
                        scene.transaction_done(false, ctx);
                        return Box::pin(ready(refuse(e)));
                    }
                };
                let phase = scene.machine.phase();
                scene.in_transaction = true;
                // The handler checks `busy` as for any message: this change is its own.
                scene.busy = false;
                let response = scene.live(msg, ctx);
                scene.busy = true;
                let (tx, rx) = oneshot::channel();
                MessageResponse::<SceneActor, ToScene<M>>::handle(response, ctx, Some(tx));
                Box::pin(rx.into_actor(scene).then(move |answer, scene, _| {
                    let answer = answer.ok().flatten();
                    // The new state, if it differs from the row's.
                    let changed = record::export(&scene.machine, &scene.origin)
                        .map(|state| (state != row.state).then_some(state));
                    let confirming = scene.machine.confirming().cloned();
                    // A login's session commits with the row that logs the scene in.
                    let login = scene.login.take();
                    let (digest, ttl) = (scene.session, scene.services.session_ttl);
                    let commit = async move {
                        let changed = changed?;
                        let change = changed.as_ref().map(|state| SceneChange {
                            state,
                            confirming: confirming.as_ref(),
                            login: login.as_ref().map(|login| login.session(&digest, ttl)),
                        });
                        locked.commit(change).await.map_err(SceneError::from)
                    };
                    commit.into_actor(scene).map(move |committed, scene, ctx| {
                        match committed {
                            Ok(version) => {
                                scene.version = u32::try_from(version).unwrap_or(u32::MAX);
                                // Waiters hear of a phase that moved, as on one node.
                                let moved = scene.machine.phase() != phase;
                                scene.transaction_done(moved || adopted, ctx);
                                answer
                            }
                            Err(e) => {
                                // Nothing was written: back to the row as it stands.
                                scene.version = 0;
                                let restored = scene.adopt(&row);
                                scene.transaction_done(adopted, ctx);
                                restored.err().or(Some(e)).and_then(refuse)
                            }
                        }
                    })
                }))
            },
        ))
    }

    /// Takes the row's state if it is newer than this view's: whether waiters must hear of it,
    /// i.e. whether its phase moved. A change only the machine sees (a code sent, a wrong
    /// code counted) wakes nobody, as on one node.
    fn adopt(&mut self, row: &SceneRow) -> Result<bool, SceneError> {
        let version = u32::try_from(row.version).unwrap_or(u32::MAX);
        if version <= self.version {
            return Ok(false);
        }
        let (machine, _) = record::import(&row.state)?;
        let moved = machine.phase() != self.machine.phase();
        self.machine = machine;
        self.version = version;
        Ok(moved)
    }

    /// The change is over (committed, or not made): waiters hear of what changed, a scene
    /// that reached a terminal state ends, and a row that moved meanwhile is read again.
    fn transaction_done(&mut self, changed: bool, ctx: &mut Context<Self>) {
        self.in_transaction = false;
        self.write_done(ctx);
        self.settle(changed, ctx);
        if std::mem::take(&mut self.stale) && ctx.state().alive() {
            ctx.notify(Reload(None));
        }
    }

    fn settle(&mut self, changed: bool, ctx: &mut Context<Self>) {
        if changed {
            self.notify_waiters();
        }
        if self.machine.phase().is_terminal() {
            self.end(ctx, false);
        }
    }

    pub(super) fn reloaded(
        &mut self,
        loaded: Result<Option<SceneRow>, StoreError>,
        ctx: &mut Context<Self>,
    ) {
        if self.busy {
            // A change started meanwhile and reads under the lock; read again after it.
            self.stale = true;
            return;
        }
        match loaded.map_err(SceneError::from).and_then(|row| match row {
            Some(row) => self.adopt(&row),
            None => Ok(false),
        }) {
            Ok(changed) => self.settle(changed, ctx),
            Err(e) => {
                tracing::warn!(scene = ?self.key, error = %e, "a scene's row could not be read")
            }
        }
    }
}

fn refuse<T: Refusable>(e: SceneError) -> Option<T> {
    match e {
        SceneError::Store(e) => T::refused(e),
        other => T::refused(StoreError::Backend(other.to_string().into())),
    }
}

/// Another node changed the scene's row (to `version`, if the notification said), or this
/// node may have missed notifications: read the row again.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Reload(pub(crate) Option<i64>);

impl Handler<Reload> for SceneActor {
    type Result = ();

    fn handle(&mut self, Reload(version): Reload, ctx: &mut Self::Context) {
        if self.outlived(ctx) {
            return;
        }
        let Some(journal) = self.services.journal.clone() else {
            return;
        };
        if version.is_some_and(|v| v <= i64::from(self.version)) {
            // This view already has it (its own change, heard back).
            return;
        }
        if self.busy {
            self.stale = true;
            return;
        }
        let key = *self.key.as_bytes();
        ctx.spawn(
            async move { journal.load(&key).await }
                .into_actor(self)
                .map(|loaded, scene, ctx| scene.reloaded(loaded, ctx)),
        );
    }
}
