//! What time removes: expired sessions and access tokens' space, and logins older than the
//! retention. Each is a range of an index ordered by time, deleted in bounded batches on a
//! blocking thread, so a purge of a million records never holds an async thread (the scene
//! actors and HTTP workers run on those) for more than a batch's handoff.

use std::time::Duration;

use std::sync::Arc;

use super::{decode_session, record_prefix, unix_now, unix_now_ms, SledDb};
use crate::StoreError;

/// Records deleted per blocking call: small enough that readers and writers interleave.
pub(super) const BATCH: usize = 1000;
/// Marks a store whose indexes hold every session and login (records from before the
/// indexes are added once, at open).
const INDEXED: &[u8] = b"indexes:sessions_by_expiry,logins_by_time";

/// `sessions_by_expiry` key: expiry first, so a range up to now is everything expired.
pub(super) fn session_key(expires_at: u64, digest: &[u8; 32]) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + 32);
    key.extend_from_slice(&expires_at.to_be_bytes());
    key.extend_from_slice(digest);
    key
}

/// `logins_by_time` key: the login's time and id, as in its `logins` key.
pub(super) fn login_key(at_ms: u64, id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(16);
    key.extend_from_slice(&at_ms.to_be_bytes());
    key.extend_from_slice(&id.to_be_bytes());
    key
}

impl SledDb {
    /// Puts records from before the indexes into them, once.
    pub(super) fn index_older_records(&self) -> Result<(), StoreError> {
        if self.db.get(INDEXED)?.is_some() {
            return Ok(());
        }
        for entry in self.sessions.iter() {
            let (digest, raw) = entry?;
            let value = decode_session(&raw)?;
            let digest: [u8; 32] = digest.as_ref().try_into().map_err(|_| super::corrupt())?;
            self.sessions_by_expiry
                .insert(session_key(value.expires_at, &digest), &[])?;
        }
        for entry in self.logins.iter() {
            let (key, _) = entry?;
            let (openid, time) = split_login_key(&key).ok_or_else(super::corrupt)?;
            self.logins_by_time.insert(time, openid)?;
        }
        self.db.insert(INDEXED, &[])?;
        self.db.flush()?;
        Ok(())
    }

    /// Deletes sessions whose expiry has passed; returns how many. Expired sessions are
    /// already refused by [`SledDb::session`]; this only reclaims their space.
    pub async fn purge_expired_sessions(self: &Arc<Self>) -> Result<usize, StoreError> {
        let now = unix_now();
        self.in_batches(move |store| store.purge_sessions_batch(now))
            .await
    }

    /// Deletes logins `keep` old or older (all of them up to now for zero); returns how many.
    pub async fn purge_old_logins(self: &Arc<Self>, keep: Duration) -> Result<usize, StoreError> {
        let cutoff = unix_now_ms().saturating_sub(keep.as_millis().try_into().unwrap_or(u64::MAX));
        self.in_batches(move |store| store.purge_logins_batch(cutoff))
            .await
    }

    /// Deletes expired access tokens (already refused by lookups); returns how many.
    pub async fn purge_expired_access_tokens(self: &Arc<Self>) -> Result<usize, StoreError> {
        let now = unix_now();
        self.in_batches(move |store| store.purge_access_tokens_batch(now))
            .await
    }

    /// Runs `batch` on blocking threads until it deletes less than a full batch, then makes the
    /// deletions durable.
    pub(super) async fn in_batches(
        self: &Arc<Self>,
        batch: impl Fn(&SledDb) -> Result<usize, StoreError> + Send + Sync + Clone + 'static,
    ) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let store = self.clone();
            let batch = batch.clone();
            let deleted = tokio::task::spawn_blocking(move || batch(&store))
                .await
                .map_err(|_| StoreError::TaskFailed)??;
            total += deleted;
            if deleted < BATCH {
                break;
            }
        }
        if total > 0 {
            self.flush().await?;
        }
        Ok(total)
    }

    fn purge_sessions_batch(&self, now: u64) -> Result<usize, StoreError> {
        let end = (now + 1).to_be_bytes();
        let keys = self
            .sessions_by_expiry
            .range(..end.as_slice())
            .keys()
            .take(BATCH)
            .collect::<Result<Vec<_>, _>>()?;
        for key in &keys {
            let digest = &key[8..];
            // A session closed or revoked earlier left its index entry behind: only the entry goes.
            if let Some(raw) = self.sessions.get(digest)? {
                let value = decode_session(&raw)?;
                if value.expires_at <= now {
                    let mut index_key = record_prefix(&value.openid);
                    index_key.extend_from_slice(digest);
                    self.sessions.remove(digest)?;
                    self.sessions_by_openid.remove(index_key)?;
                }
            }
            self.sessions_by_expiry.remove(key)?;
        }
        Ok(keys.len())
    }

    /// Up to a batch of `tree`'s keys below `end` deleted.
    pub(super) fn delete_range(&self, tree: &sled::Tree, end: &[u8]) -> Result<usize, StoreError> {
        let keys = tree
            .range(..end)
            .keys()
            .take(BATCH)
            .collect::<Result<Vec<_>, _>>()?;
        for key in &keys {
            tree.remove(key)?;
        }
        Ok(keys.len())
    }

    /// Up to a batch of logins made at or before `cutoff_ms` deleted.
    fn purge_logins_batch(&self, cutoff_ms: u64) -> Result<usize, StoreError> {
        let end = cutoff_ms.saturating_add(1).to_be_bytes();
        let entries = self
            .logins_by_time
            .range(..end.as_slice())
            .take(BATCH)
            .collect::<Result<Vec<_>, _>>()?;
        for (time, openid) in &entries {
            let mut key = openid.to_vec();
            key.push(0);
            key.extend_from_slice(time);
            self.logins.remove(key)?;
            self.logins_by_time.remove(time)?;
        }
        Ok(entries.len())
    }
}

/// `openid ‖ 0 ‖ ms ‖ id` → (openid, `ms ‖ id`).
fn split_login_key(key: &[u8]) -> Option<(&[u8], &[u8])> {
    let zero = key.iter().position(|&b| b == 0)?;
    let time = &key[zero + 1..];
    (time.len() == 16).then(|| (&key[..zero], time))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{log_in, openid, phone, store};
    use super::*;
    use crate::model::LoginMethod;

    #[tokio::test]
    async fn logins_older_than_the_retention_are_deleted_in_batches() {
        let (_dir, store) = store();
        let alice = openid("alice");
        let bound = store.bind(&alice, &phone("13800000001"), 0).await.unwrap();
        let logins = BATCH + 5;
        for _ in 0..logins {
            log_in(
                &store,
                &bound,
                Duration::from_secs(60),
                LoginMethod::Scan,
                "ip",
            )
            .await
            .unwrap();
        }
        assert_eq!(
            store
                .purge_old_logins(Duration::from_secs(3600))
                .await
                .unwrap(),
            0
        );
        assert_eq!(store.logins(&alice, 10, None).unwrap().records.len(), 10);
        assert_eq!(
            store.purge_old_logins(Duration::ZERO).await.unwrap(),
            logins
        );
        assert!(store.logins(&alice, 10, None).unwrap().records.is_empty());
        assert_eq!(store.logins_by_time.len(), 0);
    }

    #[tokio::test]
    async fn expired_sessions_go_by_their_index_and_closed_ones_leave_no_trace() {
        let (_dir, store) = store();
        let bound = store
            .bind(&openid("alice"), &phone("13800000001"), 0)
            .await
            .unwrap();
        let expired = log_in(&store, &bound, Duration::ZERO, LoginMethod::Scan, "ip")
            .await
            .unwrap();
        let closed = log_in(&store, &bound, Duration::ZERO, LoginMethod::Scan, "ip")
            .await
            .unwrap();
        let live = log_in(
            &store,
            &bound,
            Duration::from_secs(3600),
            LoginMethod::Scan,
            "ip",
        )
        .await
        .unwrap();
        assert!(store.close_session(&closed).await.unwrap());
        // The closed session's index entry is tidied; only the expired one counted... both are
        // entries up to now, and both go.
        assert_eq!(store.purge_expired_sessions().await.unwrap(), 2);
        assert!(store.sessions.get(expired.digest()).unwrap().is_none());
        assert!(store.session(&live).unwrap().is_some());
        assert_eq!(store.sessions_by_expiry.len(), 1);
        assert_eq!(store.sessions_by_openid.len(), 1);
    }

    #[tokio::test]
    async fn records_from_before_the_indexes_are_indexed_once_at_open() {
        let (_dir, store) = store();
        let bound = store
            .bind(&openid("alice"), &phone("13800000001"), 0)
            .await
            .unwrap();
        log_in(&store, &bound, Duration::ZERO, LoginMethod::Scan, "ip")
            .await
            .unwrap();
        // As a store written before the indexes existed would look.
        store.sessions_by_expiry.clear().unwrap();
        store.logins_by_time.clear().unwrap();
        store.db.remove(INDEXED).unwrap();
        store.index_older_records().unwrap();
        assert_eq!(store.purge_expired_sessions().await.unwrap(), 1);
        assert_eq!(store.purge_old_logins(Duration::ZERO).await.unwrap(), 1);
    }
}
