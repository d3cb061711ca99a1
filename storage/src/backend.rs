//! What a storage backend must do, and what each operation guarantees when it returns.
//!
//! - **Durable on return**: an `Ok` means the change is on stable storage, through a power cut
//!   too; concurrent writers may share one sync. An `Err` means it was not acknowledged: it may
//!   or may not have happened, and a read may see it until the store is reopened.
//! - **Not flushed**: visible to reads at once, durable only after a later durable write or
//!   [`Backend::flush`].
//! - **Reads** see every write that returned, durable or not.
//!
//! Every operation but [`Backend::check`] and [`Backend::backup`] is asynchronous: a backend
//! may answer from a local index (sled, at once) or from a database server (PostgreSQL, a
//! round trip), and neither blocks the actor and HTTP threads that await it. Anything longer
//! than a point lookup (scans, snapshots, syncs) runs off those threads.
//!
//! A write refused because storage cannot take it now (a full disk) is
//! [`StoreError::Unavailable`], and [`Backend::check`] fails until writes work again; a
//! backend recovers by itself once it can, without a restart.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::model::{
    Binding, LoginCursor, LoginPage, NewSession, OpenId, Phone, Session, SessionToken, UnionId,
};
use crate::{AccessGrant, BindError, SignatureUse, StoreError};

/// A backend's asynchronous answer (boxed, so that `dyn Backend` works).
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait Backend: Send + Sync + 'static {
    /// `openid`'s binding. A read.
    fn binding<'a>(
        &'a self,
        openid: &'a OpenId,
    ) -> Pending<'a, Result<Option<Binding>, StoreError>>;

    /// Who `phone` is bound to. A read.
    fn binding_by_phone<'a>(
        &'a self,
        phone: &'a Phone,
    ) -> Pending<'a, Result<Option<Binding>, StoreError>>;

    /// Changes whenever `openid` unfollows the account: read it when they scan, and a bind
    /// made for that scan is refused if they unfollowed since. A read.
    fn follow_generation<'a>(&'a self, openid: &'a OpenId) -> Pending<'a, Result<u64, StoreError>>;

    /// When `openid` last unfollowed the account, in WeChat's clock (the `unsubscribe` event's
    /// `CreateTime`): a scan sent at or before it was overtaken by that unsubscribe, however
    /// late it arrives. A read.
    fn unfollowed_at<'a>(
        &'a self,
        openid: &'a OpenId,
    ) -> Pending<'a, Result<Option<u64>, StoreError>>;

    /// Binds `phone` to `openid`, unless they unfollowed the account since `follow_generation`
    /// was read. A phone already bound to another openid is refused; an openid that is already
    /// bound moves to the new phone (it proved it owns both), ending the old binding's
    /// sessions and tokens (they belong to its generation). Durable on return.
    fn bind<'a>(
        &'a self,
        openid: &'a OpenId,
        phone: &'a Phone,
        follow_generation: u64,
    ) -> Pending<'a, Result<Binding, BindError>>;

    /// Writes a binding from a backup as it stands (bound_at included, under a new
    /// generation), checking the phone is free. Not flushed: a restore flushes once at the end.
    fn restore_binding<'a>(
        &'a self,
        openid: &'a OpenId,
        phone: &'a Phone,
        bound_at: u64,
    ) -> Pending<'a, Result<(), BindError>>;

    /// No binding at all: a fresh store, fit to restore a backup into. A read.
    fn has_no_bindings(&self) -> Pending<'_, Result<bool, StoreError>>;

    /// Every binding as of one moment (never a phone half-way between two openids), streamed
    /// while writers go on. A read; the stream ends early with an error if reading fails.
    fn backup(&self) -> Result<BindingStream, StoreError>;

    /// Removes the binding and every session and access token of `openid`. Returns whether a
    /// binding was removed. Durable on return.
    fn unbind<'a>(&'a self, openid: &'a OpenId) -> Pending<'a, Result<bool, StoreError>>;

    /// `openid` followed the account at `at`, in WeChat's clock (a `subscribe` event's
    /// `CreateTime`). Not flushed: it only tells a late unsubscribe from a current one, and
    /// losing it in a crash loses only that.
    fn record_follow<'a>(
        &'a self,
        openid: &'a OpenId,
        at: u64,
    ) -> Pending<'a, Result<(), StoreError>>;

    /// Records `unionid` on `binding` if that very binding (its generation) still stands;
    /// returns whether it was written. A binding replaced or removed meanwhile keeps none.
    /// Not flushed: a unionid lost in a crash is fetched again.
    fn set_unionid<'a>(
        &'a self,
        binding: &'a Binding,
        unionid: &'a UnionId,
    ) -> Pending<'a, Result<bool, StoreError>>;

    /// `openid` unfollowed the account at `event_time` (WeChat's clock): records it (see
    /// [`Backend::follow_generation`]) and unbinds them as [`Backend::unbind`] does, unless they
    /// followed again after it (a late, redelivered unsubscribe must not undo what came after;
    /// both times are WeChat's, so no step of our own clock reorders them). Returns whether a
    /// binding was removed. Durable on return.
    fn unfollow<'a>(
        &'a self,
        openid: &'a OpenId,
        event_time: u64,
    ) -> Pending<'a, Result<bool, StoreError>>;

    /// Starts the session named by `session.digest` under its binding and records the login.
    /// The session is live only while that very binding stands: if it was removed or replaced
    /// meanwhile, its token is refused from the start. Durable on return.
    fn open_session<'a>(&'a self, session: NewSession<'a>) -> Pending<'a, Result<(), StoreError>>;

    /// The live session of `token`: unexpired, its binding still the one it was opened
    /// under. A read.
    fn session<'a>(
        &'a self,
        token: &'a SessionToken,
    ) -> Pending<'a, Result<Option<Session>, StoreError>>;

    /// Ends the session for `token`. Returns whether there was one. Durable on return.
    fn close_session<'a>(
        &'a self,
        token: &'a SessionToken,
    ) -> Pending<'a, Result<bool, StoreError>>;

    /// A page of a user's logins, newest first, starting after `before` (a cursor from an
    /// earlier page) or at the newest. A read.
    fn logins<'a>(
        &'a self,
        openid: &'a OpenId,
        limit: usize,
        before: Option<LoginCursor>,
    ) -> Pending<'a, Result<LoginPage, StoreError>>;

    /// Stores a new access token for the user of `binding`, live while that binding stands,
    /// and returns it. Durable on return.
    fn issue_access_token<'a>(
        &'a self,
        binding: &'a Binding,
        client_id: &'a str,
        scope: &'a str,
        ttl: Duration,
    ) -> Pending<'a, Result<SessionToken, StoreError>>;

    /// The live grant of `token` and its user's binding: unexpired, and the user still bound by
    /// the binding it was issued under. A read.
    fn access_token<'a>(
        &'a self,
        token: &'a SessionToken,
    ) -> Pending<'a, Result<Option<(AccessGrant, Binding)>, StoreError>>;

    /// Revokes one access token. Returns whether it existed. Durable on return.
    fn revoke_access_token<'a>(
        &'a self,
        token: &'a SessionToken,
    ) -> Pending<'a, Result<bool, StoreError>>;

    /// Revokes every access token of `openid`; returns how many. Durable on return.
    fn revoke_access_tokens<'a>(
        &'a self,
        openid: &'a OpenId,
    ) -> Pending<'a, Result<usize, StoreError>>;

    /// Records that the user of `binding` lets `client_id` have `scope` (space-separated),
    /// replacing what they let it have before. It stands while that very binding does: a new
    /// binding (another phone) is asked again. Durable on return.
    fn remember_consent<'a>(
        &'a self,
        binding: &'a Binding,
        client_id: &'a str,
        scope: &'a str,
    ) -> Pending<'a, Result<(), StoreError>>;

    /// The scope the user of `binding` let `client_id` have, if they did under this very
    /// binding. A read.
    fn consent<'a>(
        &'a self,
        binding: &'a Binding,
        client_id: &'a str,
    ) -> Pending<'a, Result<Option<String>, StoreError>>;

    /// Records that WeChat's `signature`, made at `sent_at`, signs the body with `body_digest`,
    /// unless it already signs something (see [`SignatureUse`]). Durable on return for a first
    /// use.
    fn use_signature<'a>(
        &'a self,
        signature: &'a str,
        sent_at: u64,
        body_digest: [u8; 32],
    ) -> Pending<'a, Result<SignatureUse, StoreError>>;

    /// Forgets signatures made before `sent_before` (no timestamp window accepts them any
    /// more); returns how many. In bounded batches, off the async threads. Durable on return.
    fn purge_old_signatures(&self, sent_before: u64) -> Pending<'_, Result<usize, StoreError>>;

    /// Deletes sessions whose expiry has passed (already refused by [`Backend::session`]);
    /// returns how many. In bounded batches, off the async threads. Durable on return.
    fn purge_expired_sessions(&self) -> Pending<'_, Result<usize, StoreError>>;

    /// Deletes expired access tokens (already refused by lookups); returns how many. Durable
    /// on return.
    fn purge_expired_access_tokens(&self) -> Pending<'_, Result<usize, StoreError>>;

    /// Deletes logins `keep` old or older (every one up to now for zero); returns how many.
    /// Durable on return.
    fn purge_old_logins(&self, keep: Duration) -> Pending<'_, Result<usize, StoreError>>;

    /// Ready for writes: reads answer and the last write did not find storage unavailable (or
    /// the store has recovered since). For readiness probes: cheap, never waits on a sync.
    fn check(&self) -> Result<(), StoreError>;

    /// Makes every write that returned so far durable (for a restore's end, and shutdown).
    fn flush(&self) -> Pending<'_, Result<(), StoreError>>;
}

/// A backup's bindings, arriving in batches while the backend reads them on its own thread.
///
/// Batches, not single bindings: one channel hop (and one wake of the HTTP worker that
/// streams them) per [`BACKUP_BATCH`] bindings instead of per binding.
pub struct BindingStream(mpsc::Receiver<Result<Vec<Binding>, StoreError>>);

/// Bindings per batch.
pub(crate) const BACKUP_BATCH: usize = 512;

/// Batches a backup holds in memory ahead of its reader: bounded, so a slow client slows
/// the read instead of filling memory.
const BACKUP_BUFFER: usize = 8;

impl BindingStream {
    /// A stream and the sink its backend feeds (blocking sends, from a blocking thread).
    pub fn channel() -> (BindingSink, Self) {
        let (sender, stream) = Self::of_batches();
        (
            BindingSink {
                sender,
                batch: Vec::with_capacity(BACKUP_BATCH),
            },
            stream,
        )
    }

    /// A stream and its sender, for a backend that reads whole batches of [`BACKUP_BATCH`]
    /// asynchronously (a database cursor).
    pub(crate) fn of_batches() -> (BatchSender, Self) {
        let (sender, receiver) = mpsc::channel(BACKUP_BUFFER);
        (sender, Self(receiver))
    }

    pub async fn next_batch(&mut self) -> Option<Result<Vec<Binding>, StoreError>> {
        self.0.recv().await
    }

    pub fn poll_batch(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Vec<Binding>, StoreError>>> {
        self.0.poll_recv(cx)
    }
}

pub(crate) type BatchSender = mpsc::Sender<Result<Vec<Binding>, StoreError>>;

/// The backend's end of a [`BindingStream`]; call from a blocking thread.
pub struct BindingSink {
    sender: BatchSender,
    batch: Vec<Binding>,
}

impl BindingSink {
    /// Adds one binding; `false` once the reader has gone away (stop reading).
    pub fn push(&mut self, binding: Binding) -> bool {
        self.batch.push(binding);
        self.batch.len() < BACKUP_BATCH || self.send_batch()
    }

    /// Sends what is left; the stream ends when the sink is dropped.
    pub fn finish(mut self) -> bool {
        self.send_rest()
    }

    /// Ends the stream with an error, after the bindings read so far.
    pub fn fail(mut self, error: StoreError) {
        if self.send_rest() {
            let _ = self.sender.blocking_send(Err(error));
        }
    }

    fn send_rest(&mut self) -> bool {
        self.batch.is_empty() || self.send_batch()
    }

    fn send_batch(&mut self) -> bool {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BACKUP_BATCH));
        self.sender.blocking_send(Ok(batch)).is_ok()
    }
}
