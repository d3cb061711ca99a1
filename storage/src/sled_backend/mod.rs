//! The sled backend: one sled database in the data directory (db.rs), synced on every
//! acknowledged write (flush.rs), and reopened in place when a write failure leaves it unable
//! to write again.
//!
//! A write that fails with an I/O error (a full disk) leaves sled 0.34 refusing every write
//! after it until the database is reopened: it keeps the first I/O error in its
//! `global_error` and only `Config::open` clears it (pagecache/mod.rs:583). So the first such
//! failure marks the store unavailable: writes answer [`StoreError::Unavailable`] at once,
//! [`Backend::check`] fails, reads go on from the open database. A recovery thread then tries,
//! every [`RETRY`], to write and sync a probe file of [`PROBE_BYTES`] in the data directory;
//! once that works it closes the database and opens it again (recovering it from its log, as a
//! restart would: every acknowledged write was synced), and writes are taken again.

mod db;
mod flush;

use std::fs::{self, File};
use std::future::Future;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use db::SledDb;
pub use db::{AccessGrant, SignatureUse};

use crate::backend::{Backend, BindingStream, Pending};
use crate::migrate::RecordStream;
use crate::model::{
    Binding, LoginCursor, LoginPage, NewSession, OpenId, Phone, Session, SessionToken, UnionId,
};
use crate::{BindError, StoreError};

/// Batches an export holds ahead of its reader.
const EXPORT_BUFFER: usize = 4;

/// How often a recovering store checks whether space is back.
const RETRY: Duration = Duration::from_secs(1);
/// The probe's size: more than sled needs to reopen and take writes again (it rewrites its
/// 512 KiB segments).
const PROBE_BYTES: usize = 4 << 20;
/// How long a reopen waits for calls still using the old database to end, and for sled to let
/// go of its file lock after them.
const HANDOVER: Duration = Duration::from_secs(5);

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Io(e) => StoreError::Unavailable(e),
            other => StoreError::Backend(Box::new(other)),
        }
    }
}

#[derive(Clone)]
pub struct SledBackend(Arc<Shared>);

struct Shared {
    dir: PathBuf,
    /// The open database; `None` only while a reopen hands over from the old one.
    db: RwLock<Option<Arc<SledDb>>>,
    /// A write found storage unavailable and the store has not recovered yet.
    failed: AtomicBool,
}

impl SledBackend {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Ok(Self(Arc::new(Shared {
            dir: dir.to_owned(),
            db: RwLock::new(Some(Arc::new(SledDb::open(dir)?))),
            failed: AtomicBool::new(false),
        })))
    }

    /// Every record, in batches read on a thread of its own (for `wxlogin migrate`).
    pub(crate) fn export(&self) -> RecordStream {
        let (sender, records) = tokio::sync::mpsc::channel(EXPORT_BUFFER);
        let db = self.db();
        let spawned = std::thread::Builder::new()
            .name("wxlogin-export".into())
            .spawn(move || match db {
                Ok(db) => db.export(&sender),
                Err(e) => {
                    let _ = sender.blocking_send(Err(e));
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "no thread to read the store with");
        }
        records
    }

    fn db(&self) -> Result<Arc<SledDb>, StoreError> {
        self.0
            .db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| unavailable("the store is being reopened"))
    }

    /// Runs a write unless storage is known to be unavailable; an unavailable answer starts
    /// the recovery.
    async fn write<T, E, Op, Fut>(&self, op: Op) -> Result<T, E>
    where
        E: From<StoreError> + Unavailability,
        Op: FnOnce(Arc<SledDb>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if self.0.failed.load(Ordering::SeqCst) {
            return Err(unavailable("writes are refused until storage recovers").into());
        }
        let result = op(self.db()?).await;
        if let Err(e) = &result {
            if e.is_unavailable() {
                self.start_recovery();
            }
        }
        result
    }

    fn start_recovery(&self) {
        if self.0.failed.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::error!("a write found storage unavailable: refusing writes until it recovers");
        let shared = self.0.clone();
        let spawned = std::thread::Builder::new()
            .name("wxlogin-store-recovery".into())
            .spawn(move || shared.recover());
        if spawned.is_err() {
            // No thread to recover with: the next failing write tries again.
            self.0.failed.store(false, Ordering::SeqCst);
        }
    }
}

impl Shared {
    /// Waits for space, then reopens the database; returns once writes are taken again.
    fn recover(&self) {
        loop {
            std::thread::sleep(RETRY);
            if probe(&self.dir).is_err() {
                continue;
            }
            match self.reopen() {
                Ok(()) => {
                    self.failed.store(false, Ordering::SeqCst);
                    tracing::info!("space is back: the store was reopened and takes writes again");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "reopening the store failed; retrying"),
            }
        }
    }

    fn reopen(&self) -> Result<(), StoreError> {
        let old = self.db.write().unwrap_or_else(|p| p.into_inner()).take();
        let Some(old) = old else {
            return self.open_within(HANDOVER);
        };
        // Calls in flight on the old database hold it; they end quickly (its writes fail).
        let (old, held) = (Arc::downgrade(&old), old);
        drop(held);
        let deadline = Instant::now() + HANDOVER;
        while old.strong_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(still_used) = old.upgrade() {
            // A long reader (a backup) holds it: keep serving reads from it, retry later.
            *self.db.write().unwrap_or_else(|p| p.into_inner()) = Some(still_used);
            return Err(unavailable("the old database is still in use"));
        }
        self.open_within(HANDOVER)
    }

    /// sled lets go of its lock file a moment after the last handle is dropped.
    fn open_within(&self, patience: Duration) -> Result<(), StoreError> {
        let deadline = Instant::now() + patience;
        loop {
            match SledDb::open(&self.dir) {
                Ok(db) => {
                    *self.db.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(db));
                    return Ok(());
                }
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

/// Whether the data directory takes a write and a sync of [`PROBE_BYTES`] again.
fn probe(dir: &Path) -> io::Result<()> {
    let path = dir.join("space-probe");
    let result = File::create(&path).and_then(|mut file| {
        file.write_all(&vec![0; PROBE_BYTES])?;
        file.sync_all()
    });
    let _ = fs::remove_file(&path);
    result
}

fn unavailable(why: &str) -> StoreError {
    StoreError::Unavailable(io::Error::other(why.to_owned()))
}

/// Errors that may say storage cannot take writes now.
trait Unavailability {
    fn is_unavailable(&self) -> bool;
}

impl Unavailability for StoreError {
    fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl Unavailability for BindError {
    fn is_unavailable(&self) -> bool {
        matches!(self, BindError::Store(e) if e.is_unavailable())
    }
}

/// An answer sled had at once (a point lookup, or a write it does not flush).
fn at_once<'a, T: Send + 'a>(answer: T) -> Pending<'a, T> {
    Box::pin(std::future::ready(answer))
}

/// Reads go to the open database and answer at once; writes through [`SledBackend::write`].
/// Each method is the [`SledDb`] method of the same name.
impl Backend for SledBackend {
    fn binding<'a>(
        &'a self,
        openid: &'a OpenId,
    ) -> Pending<'a, Result<Option<Binding>, StoreError>> {
        at_once(self.db().and_then(|db| db.binding(openid)))
    }

    fn binding_by_phone<'a>(
        &'a self,
        phone: &'a Phone,
    ) -> Pending<'a, Result<Option<Binding>, StoreError>> {
        at_once(self.db().and_then(|db| db.binding_by_phone(phone)))
    }

    fn follow_generation<'a>(&'a self, openid: &'a OpenId) -> Pending<'a, Result<u64, StoreError>> {
        at_once(self.db().and_then(|db| db.follow_generation(openid)))
    }

    fn unfollowed_at<'a>(
        &'a self,
        openid: &'a OpenId,
    ) -> Pending<'a, Result<Option<u64>, StoreError>> {
        at_once(self.db().and_then(|db| db.unfollowed_at(openid)))
    }

    fn bind<'a>(
        &'a self,
        openid: &'a OpenId,
        phone: &'a Phone,
        follow_generation: u64,
    ) -> Pending<'a, Result<Binding, BindError>> {
        Box::pin(
            self.write(move |db| async move { db.bind(openid, phone, follow_generation).await }),
        )
    }

    fn restore_binding<'a>(
        &'a self,
        openid: &'a OpenId,
        phone: &'a Phone,
        bound_at: u64,
    ) -> Pending<'a, Result<(), BindError>> {
        at_once(
            self.db()
                .map_err(BindError::from)
                .and_then(|db| db.restore_binding(openid, phone, bound_at)),
        )
    }

    fn has_no_bindings(&self) -> Pending<'_, Result<bool, StoreError>> {
        at_once(self.db().map(|db| db.has_no_bindings()))
    }

    fn backup(&self) -> Result<BindingStream, StoreError> {
        self.db()?.backup()
    }

    fn unbind<'a>(&'a self, openid: &'a OpenId) -> Pending<'a, Result<bool, StoreError>> {
        Box::pin(self.write(move |db| async move { db.unbind(openid).await }))
    }

    fn record_follow<'a>(
        &'a self,
        openid: &'a OpenId,
        at: u64,
    ) -> Pending<'a, Result<(), StoreError>> {
        at_once(self.db().and_then(|db| db.record_follow(openid, at)))
    }

    fn set_unionid<'a>(
        &'a self,
        binding: &'a Binding,
        unionid: &'a UnionId,
    ) -> Pending<'a, Result<bool, StoreError>> {
        at_once(self.db().and_then(|db| db.set_unionid(binding, unionid)))
    }

    fn use_signature<'a>(
        &'a self,
        signature: &'a str,
        sent_at: u64,
        body_digest: [u8; 32],
    ) -> Pending<'a, Result<SignatureUse, StoreError>> {
        Box::pin(self.write(move |db| async move {
            db.use_signature(signature, sent_at, body_digest).await
        }))
    }

    fn purge_old_signatures(&self, sent_before: u64) -> Pending<'_, Result<usize, StoreError>> {
        Box::pin(self.write(move |db| async move { db.purge_old_signatures(sent_before).await }))
    }

    fn unfollow<'a>(
        &'a self,
        openid: &'a OpenId,
        event_time: u64,
    ) -> Pending<'a, Result<bool, StoreError>> {
        Box::pin(self.write(move |db| async move { db.unfollow(openid, event_time).await }))
    }

    fn open_session<'a>(&'a self, session: NewSession<'a>) -> Pending<'a, Result<(), StoreError>> {
        Box::pin(self.write(move |db| async move { db.open_session(session).await }))
    }

    fn session<'a>(
        &'a self,
        token: &'a SessionToken,
    ) -> Pending<'a, Result<Option<Session>, StoreError>> {
        at_once(self.db().and_then(|db| db.session(token)))
    }

    fn close_session<'a>(
        &'a self,
        token: &'a SessionToken,
    ) -> Pending<'a, Result<bool, StoreError>> {
        Box::pin(self.write(move |db| async move { db.close_session(token).await }))
    }

    fn logins<'a>(
        &'a self,
        openid: &'a OpenId,
        limit: usize,
        before: Option<LoginCursor>,
    ) -> Pending<'a, Result<LoginPage, StoreError>> {
        at_once(self.db().and_then(|db| db.logins(openid, limit, before)))
    }

    fn issue_access_token<'a>(
        &'a self,
        binding: &'a Binding,
        client_id: &'a str,
        scope: &'a str,
        ttl: Duration,
    ) -> Pending<'a, Result<SessionToken, StoreError>> {
        Box::pin(self.write(move |db| async move {
            db.issue_access_token(binding, client_id, scope, ttl).await
        }))
    }

    fn access_token<'a>(
        &'a self,
        token: &'a SessionToken,
    ) -> Pending<'a, Result<Option<(AccessGrant, Binding)>, StoreError>> {
        at_once(self.db().and_then(|db| db.access_token(token)))
    }

    fn revoke_access_token<'a>(
        &'a self,
        token: &'a SessionToken,
    ) -> Pending<'a, Result<bool, StoreError>> {
        Box::pin(self.write(move |db| async move { db.revoke_access_token(token).await }))
    }

    fn revoke_access_tokens<'a>(
        &'a self,
        openid: &'a OpenId,
    ) -> Pending<'a, Result<usize, StoreError>> {
        Box::pin(self.write(move |db| async move { db.revoke_access_tokens(openid).await }))
    }

    fn remember_consent<'a>(
        &'a self,
        binding: &'a Binding,
        client_id: &'a str,
        scope: &'a str,
    ) -> Pending<'a, Result<(), StoreError>> {
        Box::pin(
            self.write(
                move |db| async move { db.remember_consent(binding, client_id, scope).await },
            ),
        )
    }

    fn consent<'a>(
        &'a self,
        binding: &'a Binding,
        client_id: &'a str,
    ) -> Pending<'a, Result<Option<String>, StoreError>> {
        at_once(self.db().and_then(|db| db.consent(binding, client_id)))
    }

    fn purge_expired_sessions(&self) -> Pending<'_, Result<usize, StoreError>> {
        Box::pin(self.write(|db| async move { db.purge_expired_sessions().await }))
    }

    fn purge_expired_access_tokens(&self) -> Pending<'_, Result<usize, StoreError>> {
        Box::pin(self.write(|db| async move { db.purge_expired_access_tokens().await }))
    }

    fn purge_old_logins(&self, keep: Duration) -> Pending<'_, Result<usize, StoreError>> {
        Box::pin(self.write(move |db| async move { db.purge_old_logins(keep).await }))
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.0.failed.load(Ordering::SeqCst) {
            return Err(unavailable(
                "writes fail; waiting for space to reopen the store",
            ));
        }
        self.db()?.check()
    }

    fn flush(&self) -> Pending<'_, Result<(), StoreError>> {
        Box::pin(self.write(|db| async move { db.flush().await }))
    }
}
