use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::{Transactional, Tree};

mod access;
mod consent;
mod cut;
mod expiry;
mod export;
mod signatures;

pub use access::AccessGrant;
pub use signatures::SignatureUse;

use super::flush::GroupFlush;
use crate::model::{
    Binding, LoginCursor, LoginPage, LoginRecord, NewSession, OpenId, Phone, Session, SessionToken,
    UnionId,
};
use crate::{BindError, StoreError};

/// One open sled database and its trees; [`super::SledBackend`] replaces it when a write
/// failure leaves sled unable to write again.
pub struct SledDb {
    db: sled::Db,
    /// Every write's flush goes through here, so concurrent writes share disk syncs.
    flusher: Arc<GroupFlush>,
    /// openid → [`BindingValue`]
    bindings: Tree,
    /// phone → openid: the index that keeps a phone on one openid at most.
    phones: Tree,
    /// SHA-256(token) → [`SessionValue`]
    sessions: Tree,
    /// openid ‖ 0 ‖ SHA-256(token) → (): finds a user's sessions to revoke them.
    sessions_by_openid: Tree,
    /// openid ‖ 0 ‖ big-endian ms ‖ big-endian id → [`LoginRecord`], so a prefix scan is a user's history in time order.
    logins: Tree,
    /// SHA-256(access token) → [`access::AccessGrant`]
    access_tokens: Tree,
    /// openid ‖ 0 ‖ SHA-256(access token) → (), as for sessions.
    access_tokens_by_openid: Tree,
    /// openid → big-endian id of their last unfollow: a bind started before it is refused.
    unfollows: Tree,
    /// big-endian expires_at ‖ SHA-256(token) → (): expired sessions are a range, not a scan.
    sessions_by_expiry: Tree,
    /// big-endian ms ‖ big-endian id → openid: the login log in time order, for retention.
    logins_by_time: Tree,
    /// big-endian sent_at ‖ WeChat signature → SHA-256 of the body it signed.
    signatures: Tree,
    /// openid → big-endian `CreateTime` of their last follow, in WeChat's clock.
    follows: Tree,
    /// openid ‖ 0 ‖ client id → [`consent::ConsentValue`]: what the user let each client have.
    consents: Tree,
    /// Binding writes hold it shared; a backup holds it alone only to start or end its cut
    /// (cut.rs), never while it reads.
    binding_writes: RwLock<()>,
    /// The backups reading now: each keeps what a binding was before it changed.
    cuts: std::sync::Mutex<Vec<Arc<cut::Cut>>>,
}

#[derive(Serialize, Deserialize)]
struct BindingValue {
    phone: Phone,
    bound_at: u64,
    generation: u64,
    unionid: Option<UnionId>,
}

/// Records written before bindings had a unionid: they read as having none yet (it is fetched
/// at the user's next scan). postcard ignores trailing bytes, so an older binary reads the
/// new records as these, and a downgrade keeps working too.
#[derive(Deserialize)]
struct BindingValueV1 {
    phone: Phone,
    bound_at: u64,
    generation: u64,
}

#[derive(Serialize, Deserialize)]
struct SessionValue {
    openid: OpenId,
    created_at: u64,
    expires_at: u64,
    /// The [`Binding::generation`] it was opened under.
    generation: u64,
}

/// Records written before bindings had generations: they read as generation 0, which only
/// such old records have, so their sessions stay as valid as they were.
#[derive(Deserialize)]
struct BindingValueV0 {
    phone: Phone,
    bound_at: u64,
}

#[derive(Deserialize)]
struct SessionValueV0 {
    openid: OpenId,
    created_at: u64,
    expires_at: u64,
}

/// The newest layout first: an older record is too short for a newer layout, never the other
/// way round (see [`BindingValueV1`]).
fn decode_binding(raw: &[u8]) -> Result<BindingValue, StoreError> {
    decode(raw)
        .or_else(|_| {
            let old: BindingValueV1 = decode(raw)?;
            Ok(BindingValue {
                phone: old.phone,
                bound_at: old.bound_at,
                generation: old.generation,
                unionid: None,
            })
        })
        .or_else(|_: StoreError| {
            let old: BindingValueV0 = decode(raw)?;
            Ok(BindingValue {
                phone: old.phone,
                bound_at: old.bound_at,
                generation: 0,
                unionid: None,
            })
        })
}

fn decode_session(raw: &[u8]) -> Result<SessionValue, StoreError> {
    decode(raw).or_else(|_| {
        let old: SessionValueV0 = decode(raw)?;
        Ok(SessionValue {
            openid: old.openid,
            created_at: old.created_at,
            expires_at: old.expires_at,
            generation: 0,
        })
    })
}

impl SledDb {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new().path(dir).open()?;
        let store = Self {
            bindings: db.open_tree("bindings")?,
            phones: db.open_tree("openid_by_phone")?,
            sessions: db.open_tree("sessions")?,
            sessions_by_openid: db.open_tree("sessions_by_openid")?,
            logins: db.open_tree("logins")?,
            access_tokens: db.open_tree("access_tokens")?,
            access_tokens_by_openid: db.open_tree("access_tokens_by_openid")?,
            unfollows: db.open_tree("unfollows")?,
            sessions_by_expiry: db.open_tree("sessions_by_expiry")?,
            logins_by_time: db.open_tree("logins_by_time")?,
            signatures: db.open_tree("callback_signatures")?,
            follows: db.open_tree("follows")?,
            consents: db.open_tree("consents")?,
            flusher: Arc::new(GroupFlush::open(db.clone(), dir)?),
            db,
            binding_writes: RwLock::default(),
            cuts: Default::default(),
        };
        store.index_older_records()?;
        Ok(store)
    }

    pub fn binding(&self, openid: &OpenId) -> Result<Option<Binding>, StoreError> {
        self.bindings
            .get(openid.as_str())?
            .map(|raw| binding_from(openid.clone(), &raw))
            .transpose()
    }

    /// A number no binding or unfollow had before: 0 is what records from before generations,
    /// and users who never unfollowed, read as.
    fn next_generation(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()? + 1)
    }

    /// Changes whenever `openid` unfollows the account: read it when they scan, and a bind
    /// made for that scan is refused if they unfollowed since.
    pub fn follow_generation(&self, openid: &OpenId) -> Result<u64, StoreError> {
        Ok(self
            .unfollows
            .get(openid.as_str())?
            .map_or(0, |raw| generation_of(&raw)))
    }

    /// See [`crate::Backend::unfollowed_at`].
    pub fn unfollowed_at(&self, openid: &OpenId) -> Result<Option<u64>, StoreError> {
        Ok(self
            .unfollows
            .get(openid.as_str())?
            .and_then(|raw| unfollow_time_of(&raw)))
    }

    /// Binds `phone` to `openid`, unless they unfollowed the account since `follow_generation`
    /// was read. A phone already bound to another openid is refused; an openid that is already
    /// bound moves to the new phone (it proved it owns both), ending the old binding's sessions.
    pub async fn bind(
        &self,
        openid: &OpenId,
        phone: &Phone,
        follow_generation: u64,
    ) -> Result<Binding, BindError> {
        let binding = self.write_binding(openid, phone, unix_now(), Some(follow_generation))?;
        self.flush().await?;
        Ok(binding)
    }

    /// Writes `binding` as it stands (bound_at included, under a new generation), checking
    /// the phone is free. Not flushed: for loading a backup, which flushes once at the end.
    pub fn restore_binding(
        &self,
        openid: &OpenId,
        phone: &Phone,
        bound_at: u64,
    ) -> Result<(), BindError> {
        self.write_binding(openid, phone, bound_at, None).map(drop)
    }

    fn write_binding(
        &self,
        openid: &OpenId,
        phone: &Phone,
        bound_at: u64,
        follow_generation: Option<u64>,
    ) -> Result<Binding, BindError> {
        let generation = self.next_generation()?;
        let value = encode(&BindingValue {
            phone: phone.clone(),
            bound_at,
            generation,
            unionid: None,
        })?;
        let _shared = self
            .binding_writes
            .read()
            .unwrap_or_else(|p| p.into_inner());
        self.note_binding_change(openid)?;
        (&self.bindings, &self.phones, &self.unfollows)
            .transaction(|(bindings, phones, unfollows)| {
                if let Some(expected) = follow_generation {
                    let now = unfollows.get(openid.as_str())?;
                    if now.map_or(0, |raw| generation_of(&raw)) != expected {
                        return Err(ConflictableTransactionError::Abort(BindError::Unfollowed));
                    }
                }
                if let Some(owner) = phones.get(phone.as_str())? {
                    if owner != openid.as_str().as_bytes() {
                        return Err(ConflictableTransactionError::Abort(BindError::PhoneTaken));
                    }
                }
                if let Some(old) = bindings.insert(openid.as_str(), value.as_slice())? {
                    let old = decode_binding(&old).map_err(abort)?;
                    phones.remove(old.phone.as_str())?;
                }
                phones.insert(phone.as_str(), openid.as_str())?;
                Ok(())
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => StoreError::from(e).into(),
            })?;
        Ok(Binding {
            openid: openid.clone(),
            phone: phone.clone(),
            bound_at,
            unionid: None,
            generation,
        })
    }

    /// Records `unionid` on `binding`, if that very binding (its generation) still stands:
    /// a unionid fetched for a binding that was replaced or removed meanwhile is dropped. Not
    /// flushed: one lost in a crash is fetched again at the next scan. Returns whether it was
    /// written.
    pub fn set_unionid(&self, binding: &Binding, unionid: &UnionId) -> Result<bool, StoreError> {
        let _shared = self
            .binding_writes
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let key = binding.openid.as_str();
        let Some(old) = self.bindings.get(key)? else {
            return Ok(false);
        };
        let mut value = decode_binding(&old)?;
        if value.generation != binding.generation {
            return Ok(false);
        }
        value.unionid = Some(unionid.clone());
        self.note_binding_change(&binding.openid)?;
        // Compare-and-swap: a bind or unbind between the read and here wins.
        let swapped = self
            .bindings
            .compare_and_swap(key, Some(old), Some(encode(&value)?))?;
        Ok(swapped.is_ok())
    }

    /// Who `phone` is bound to.
    pub fn binding_by_phone(&self, phone: &Phone) -> Result<Option<Binding>, StoreError> {
        let Some(owner) = self.phones.get(phone.as_str())? else {
            return Ok(None);
        };
        let openid = OpenId::parse(&String::from_utf8_lossy(&owner)).ok_or_else(corrupt)?;
        self.binding(&openid)
    }

    /// No binding at all: a fresh data directory, fit to restore a backup into.
    pub fn has_no_bindings(&self) -> bool {
        self.bindings.is_empty()
    }

    /// Removes the binding and every session and access token of `openid`. Returns whether a
    /// binding was removed.
    pub async fn unbind(&self, openid: &OpenId) -> Result<bool, StoreError> {
        let prefix = record_prefix(openid);
        let index_keys = self
            .sessions_by_openid
            .scan_prefix(&prefix)
            .keys()
            .collect::<Result<Vec<_>, _>>()?;
        let _shared = self
            .binding_writes
            .read()
            .unwrap_or_else(|p| p.into_inner());
        self.note_binding_change(openid)?;
        let removed = (
            &self.bindings,
            &self.phones,
            &self.sessions,
            &self.sessions_by_openid,
        )
            .transaction(|(bindings, phones, sessions, index)| {
                // Read inside: a bind since a read outside would leave its phone taken.
                let Some(old) = bindings.remove(openid.as_str())? else {
                    return Ok(false);
                };
                let old = decode_binding(&old).map_err(ConflictableTransactionError::Abort)?;
                phones.remove(old.phone.as_str())?;
                for key in &index_keys {
                    index.remove(key)?;
                    sessions.remove(&key[prefix.len()..])?;
                }
                Ok::<_, ConflictableTransactionError<StoreError>>(true)
            })
            .map_err(tx_error)?;
        drop(_shared);
        if !removed {
            return Ok(false);
        }
        // Outside the transaction: the binding is gone, so lookups refuse these already.
        self.remove_access_tokens(openid)?;
        self.flush().await?;
        Ok(true)
    }

    /// `openid` followed the account at `at`, in WeChat's clock (a `subscribe` event's
    /// `CreateTime`). Not flushed: it only tells a late unsubscribe from a current one (see
    /// [`SledDb::unfollow`]), and losing it in a crash loses only that.
    pub fn record_follow(&self, openid: &OpenId, at: u64) -> Result<(), StoreError> {
        self.follows.fetch_and_update(openid.as_str(), |old| {
            let newer = old.is_none_or(|old| generation_of(old) < at);
            Some(if newer {
                at.to_be_bytes().to_vec()
            } else {
                old?.to_vec()
            })
        })?;
        Ok(())
    }

    /// `openid` unfollowed the account at `event_time` (WeChat's clock): records it (see
    /// [`SledDb::follow_generation`]) and unbinds them as [`SledDb::unbind`] does, unless they
    /// followed again after it (a late, redelivered unsubscribe must not undo what came after).
    /// Both times are WeChat's, so no step of our own clock can reorder them. Returns whether a
    /// binding was removed.
    pub async fn unfollow(&self, openid: &OpenId, event_time: u64) -> Result<bool, StoreError> {
        let followed_at = self
            .follows
            .get(openid.as_str())?
            .map(|raw| generation_of(&raw));
        if followed_at.is_some_and(|followed| followed > event_time) {
            return Ok(false);
        }
        let mut record = self.next_generation()?.to_be_bytes().to_vec();
        record.extend_from_slice(&event_time.to_be_bytes());
        self.unfollows.insert(openid.as_str(), record)?;
        let unbound = self.unbind(openid).await?;
        if !unbound {
            self.flush().await?;
        }
        Ok(unbound)
    }

    /// Starts a session under `binding` and records the login; returns the bearer token. The
    /// session is live only while that very binding stands: if it was removed or replaced
    /// meanwhile, the token is refused from the start.
    pub async fn open_session(&self, session: NewSession<'_>) -> Result<(), StoreError> {
        let NewSession {
            binding,
            digest,
            ttl,
            method,
            client_ip,
        } = session;
        let openid = &binding.openid;
        let digest = *digest.as_bytes();
        let now_ms = unix_now_ms();
        let created_at = now_ms / 1000;
        let session = encode(&SessionValue {
            openid: openid.clone(),
            created_at,
            expires_at: created_at.saturating_add(ttl.as_secs()),
            generation: binding.generation,
        })?;
        let login = encode(&LoginRecord {
            at_ms: now_ms,
            method,
            client_ip: client_ip.to_owned(),
        })?;
        let mut index_key = record_prefix(openid);
        index_key.extend_from_slice(&digest);
        let login_id = self.db.generate_id()?;
        let mut login_key = record_prefix(openid);
        login_key.extend_from_slice(&now_ms.to_be_bytes());
        login_key.extend_from_slice(&login_id.to_be_bytes());
        let expiry_key = expiry::session_key(created_at.saturating_add(ttl.as_secs()), &digest);
        let login_time_key = expiry::login_key(now_ms, login_id);

        (
            &self.sessions,
            &self.sessions_by_openid,
            &self.logins,
            &self.sessions_by_expiry,
            &self.logins_by_time,
        )
            .transaction(|(sessions, index, logins, by_expiry, by_time)| {
                if sessions.insert(&digest, session.as_slice())?.is_some() {
                    // One digest is one scene's login: a second would be a bug, never a login.
                    return Err(ConflictableTransactionError::Abort(StoreError::Backend(
                        "a session with this digest is open already".into(),
                    )));
                }
                index.insert(index_key.as_slice(), &[])?;
                logins.insert(login_key.as_slice(), login.as_slice())?;
                by_expiry.insert(expiry_key.as_slice(), &[])?;
                by_time.insert(login_time_key.as_slice(), openid.as_str().as_bytes())?;
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            })
            .map_err(tx_error)?;
        self.flush().await?;
        Ok(())
    }

    /// The live session for `token`: present, not expired, and its user still bound
    /// by the same binding it logged in under.
    pub fn session(&self, token: &SessionToken) -> Result<Option<Session>, StoreError> {
        let Some(raw) = self.sessions.get(token.digest())? else {
            return Ok(None);
        };
        let value = decode_session(&raw)?;
        if value.expires_at <= unix_now() {
            return Ok(None);
        }
        Ok(self
            .binding(&value.openid)?
            .filter(|binding| binding.holds(value.generation, value.created_at))
            .map(|binding| Session {
                binding,
                created_at: value.created_at,
                expires_at: value.expires_at,
            }))
    }

    /// Ends the session for `token`. Returns whether there was one.
    pub async fn close_session(&self, token: &SessionToken) -> Result<bool, StoreError> {
        let digest = *token.digest().as_bytes();
        let Some(raw) = self.sessions.get(digest)? else {
            return Ok(false);
        };
        let value = decode_session(&raw)?;
        let mut index_key = record_prefix(&value.openid);
        index_key.extend_from_slice(&digest);
        (&self.sessions, &self.sessions_by_openid)
            .transaction(|(sessions, index)| {
                sessions.remove(&digest)?;
                index.remove(index_key.as_slice())?;
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            })
            .map_err(tx_error)?;
        self.flush().await?;
        Ok(true)
    }

    /// A page of a user's logins, newest first, starting after `before` (a cursor from an
    /// earlier page) or at the newest.
    pub fn logins(
        &self,
        openid: &OpenId,
        limit: usize,
        before: Option<LoginCursor>,
    ) -> Result<LoginPage, StoreError> {
        let prefix = record_prefix(openid);
        let mut end = prefix.clone();
        match &before {
            Some(cursor) => end.extend_from_slice(&cursor.0),
            None => *end.last_mut().expect("the prefix ends with 0") = 1,
        }
        let mut records = Vec::new();
        let mut last_key = None;
        for entry in self
            .logins
            .range(prefix.as_slice()..end.as_slice())
            .rev()
            .take(limit)
        {
            let (key, raw) = entry?;
            records.push(decode(&raw)?);
            last_key = Some(key);
        }
        let next = last_key
            .filter(|_| records.len() == limit)
            .and_then(|key| key[prefix.len()..].try_into().ok())
            .map(LoginCursor);
        Ok(LoginPage { records, next })
    }

    /// Proves the store answers reads (for readiness checks).
    pub fn check(&self) -> Result<(), StoreError> {
        self.bindings.first()?;
        Ok(())
    }

    /// Writes everything to disk. Every write method already does; this is for shutdown.
    /// Goes through the group flush, so it shares a sync with concurrent writers.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.flusher.flush().await?;
        Ok(())
    }
}

fn binding_from(openid: OpenId, raw: &[u8]) -> Result<Binding, StoreError> {
    let value = decode_binding(raw)?;
    Ok(Binding {
        openid,
        phone: value.phone,
        bound_at: value.bound_at,
        unionid: value.unionid,
        generation: value.generation,
    })
}

/// The first 8 bytes of an `unfollows` record (its generation) or a `follows` one (its time).
fn generation_of(raw: &[u8]) -> u64 {
    raw.get(..8)
        .and_then(|first| first.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// When an `unfollows` record's unfollow happened (WeChat's clock): its second 8 bytes; records
/// written before scans were checked against it have none.
fn unfollow_time_of(raw: &[u8]) -> Option<u64> {
    raw.get(8..16)
        .and_then(|second| second.try_into().ok())
        .map(u64::from_be_bytes)
}

fn corrupt() -> StoreError {
    StoreError::Corrupt(postcard::Error::DeserializeBadEncoding)
}

/// `openid ‖ 0`: openids never contain a zero byte, so one user's prefix never matches another's.
fn record_prefix(openid: &OpenId) -> Vec<u8> {
    let mut key = Vec::with_capacity(openid.as_str().len() + 1 + 32);
    key.extend_from_slice(openid.as_str().as_bytes());
    key.push(0);
    key
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    Ok(postcard::to_stdvec(value)?)
}

fn decode<T: DeserializeOwned>(raw: &[u8]) -> Result<T, StoreError> {
    Ok(postcard::from_bytes(raw)?)
}

fn abort<E: Into<BindError>>(e: E) -> ConflictableTransactionError<BindError> {
    ConflictableTransactionError::Abort(e.into())
}

fn tx_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
    }
}

fn unix_now() -> u64 {
    unix_now_ms() / 1000
}

fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    //! Its helpers serve `access`'s and `expiry`'s tests too.
    use super::*;
    use crate::LoginMethod;
    use std::time::Duration;

    const HOUR: Duration = Duration::from_secs(3600);

    /// The store in `dir` opened again after its last handle was dropped: sled's flusher
    /// thread lets go of the directory lock a moment later (a restart is a new process, where
    /// the lock goes with the old one).
    pub(super) fn reopen(dir: &std::path::Path) -> SledDb {
        (0..100)
            .find_map(|_| {
                SledDb::open(dir)
                    .map_err(|_| std::thread::sleep(std::time::Duration::from_millis(20)))
                    .ok()
            })
            .expect("the store reopens")
    }

    /// A login under `binding`: opens a session for a new token, as a scene's login does.
    pub(super) async fn log_in(
        store: &SledDb,
        binding: &Binding,
        ttl: Duration,
        method: crate::LoginMethod,
        client_ip: &str,
    ) -> Result<SessionToken, StoreError> {
        let token = SessionToken::generate();
        let session = NewSession {
            binding,
            digest: &token.digest(),
            ttl,
            method,
            client_ip,
        };
        store.open_session(session).await?;
        Ok(token)
    }

    pub(super) fn store() -> (tempfile::TempDir, Arc<SledDb>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledDb::open(dir.path()).unwrap());
        (dir, store)
    }

    pub(super) fn openid(s: &str) -> OpenId {
        OpenId::parse(s).unwrap()
    }

    pub(super) fn phone(s: &str) -> Phone {
        Phone::parse(s).unwrap()
    }

    #[tokio::test]
    async fn records_from_before_generations_still_read() {
        #[derive(Serialize)]
        struct OldBinding {
            phone: Phone,
            bound_at: u64,
        }
        #[derive(Serialize)]
        struct OldSession {
            openid: OpenId,
            created_at: u64,
            expires_at: u64,
        }
        let (_dir, store) = store();
        let alice = openid("alice");
        let old = encode(&OldBinding {
            phone: phone("13800000001"),
            bound_at: 1,
        });
        store.bindings.insert("alice", old.unwrap()).unwrap();
        let token = SessionToken::generate();
        let old = encode(&OldSession {
            openid: alice.clone(),
            created_at: 2,
            expires_at: unix_now() + 60,
        });
        store.sessions.insert(token.digest(), old.unwrap()).unwrap();
        let session = store.session(&token).unwrap().unwrap();
        assert_eq!(
            (session.binding.phone, session.binding.generation),
            (phone("13800000001"), 0)
        );
        // A binding from before unionids: read with none, and it can take one.
        #[derive(Serialize)]
        struct BindingV1 {
            phone: Phone,
            bound_at: u64,
            generation: u64,
        }
        let v1 = encode(&BindingV1 {
            phone: phone("13800000002"),
            bound_at: 3,
            generation: 9,
        });
        store.bindings.insert("carol", v1.unwrap()).unwrap();
        let carol = store.binding(&openid("carol")).unwrap().unwrap();
        assert_eq!(
            (carol.generation, carol.bound_at, carol.unionid.clone()),
            (9, 3, None)
        );
        let union = UnionId::parse("oUnionCarol").unwrap();
        assert!(store.set_unionid(&carol, &union).unwrap());
        let carol = store.binding(&openid("carol")).unwrap().unwrap();
        assert_eq!((carol.generation, carol.unionid), (9, Some(union)));
        assert_eq!(session.binding.unionid, None);
        // An unfollow recorded before its time was: the generation alone.
        let bob = openid("bob");
        store.unfollows.insert("bob", &7u64.to_be_bytes()).unwrap();
        assert_eq!(store.follow_generation(&bob).unwrap(), 7);
        assert_eq!(store.unfollowed_at(&bob).unwrap(), None);
    }

    #[tokio::test]
    async fn everything_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let alice = openid("alice");
        let token = {
            let store = SledDb::open(dir.path()).unwrap();
            let bound = store.bind(&alice, &phone("13800000001"), 0).await.unwrap();
            log_in(&store, &bound, HOUR, LoginMethod::Bind, "ip")
                .await
                .unwrap()
        };
        let store = reopen(dir.path());
        assert_eq!(
            store.session(&token).unwrap().unwrap().binding.phone,
            phone("13800000001")
        );
        assert_eq!(store.logins(&alice, 10, None).unwrap().records.len(), 1);
    }
}
