//! WeChat's short-lived credentials (the access token, the JS-SDK ticket) as every node of a
//! cluster shares them: one row per account and kind, holding the current value, when it
//! runs out (the database's clock, so the nodes' clocks need not agree) and a version that
//! grows with each replacement.
//!
//! Only one node fetches at a time: a replacement holds the row's transaction-scoped advisory
//! lock from before it reads the row until its new value is committed, so a node that waited
//! finds the value the other one fetched and, seeing it is not the one it wanted replaced,
//! fetches nothing. The caller decides from the row it finds under the lock (its version, age
//! and lifetime left) whether it still wants it replaced: a node asking to replace the version
//! it holds gets the row's newer value instead, so a stale copy never throws a newer value
//! away.

use std::future::Future;
use std::time::Duration;

use super::{
    pg_error, pool_error, unavailable, within, IsUnavailable, PgBackend, OPERATION_TIMEOUT,
};
use crate::StoreError;

/// How long a node waits for another's replacement: longer than the longest WeChat call a
/// holder makes under the lock (`WXLOGIN_WECHAT_TIMEOUT_SECS` is at most 60).
const LOCK_WAIT: Duration = Duration::from_secs(70);

/// The first key of the credentials' advisory locks: the two-key locks are a space of their
/// own, apart from the one-key locks of openids and migrations ("wxcr" in ASCII).
const LOCK_CLASS: i32 = 0x7778_6372;

/// The credentials rows of a PostgreSQL store. Cloning is cheap.
#[derive(Clone)]
pub struct SharedCredentials(PgBackend);

/// A credential as the database holds it. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredCredential {
    pub value: String,
    /// What is left of its lifetime, by the database's clock.
    pub expires_in: Duration,
    /// How long ago it was written, by the database's clock.
    pub age: Duration,
    /// Grows by one with each replacement.
    pub version: i64,
}

impl std::fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredential")
            .field("expires_in", &self.expires_in)
            .field("age", &self.age)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// What [`SharedCredentials::replace`] did.
#[derive(Debug)]
pub enum Replaced {
    /// The row held an unexpired value the caller did not want replaced: nothing fetched.
    Found(StoredCredential),
    /// This call fetched and wrote the row's new version.
    Fetched(StoredCredential),
}

impl Replaced {
    pub fn credential(self) -> StoredCredential {
        match self {
            Replaced::Found(credential) | Replaced::Fetched(credential) => credential,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplaceError<E> {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The fetch failed; the row is as it was.
    #[error(transparent)]
    Fetch(E),
}

impl SharedCredentials {
    pub(super) fn new(backend: PgBackend) -> Self {
        Self(backend)
    }

    /// The current `kind` credential of `appid`, replaced if need be. Under the row's lock:
    /// an unexpired value that `replace_it` declines is the answer as it is; otherwise (no
    /// row, expired, or accepted by `replace_it`) `fetch`'s value becomes the row's next
    /// version, committed before the answer.
    pub async fn replace<E, Fut>(
        &self,
        appid: &str,
        kind: &str,
        replace_it: impl FnOnce(&StoredCredential) -> bool,
        fetch: impl FnOnce() -> Fut,
    ) -> Result<Replaced, ReplaceError<E>>
    where
        Fut: Future<Output = Result<(String, Duration), E>>,
    {
        let result = self
            .replace_under_lock(appid, kind, replace_it, fetch)
            .await;
        self.0.note(&result);
        result
    }

    async fn replace_under_lock<E, Fut>(
        &self,
        appid: &str,
        kind: &str,
        replace_it: impl FnOnce(&StoredCredential) -> bool,
        fetch: impl FnOnce() -> Fut,
    ) -> Result<Replaced, ReplaceError<E>>
    where
        Fut: Future<Output = Result<(String, Duration), E>>,
    {
        let mut client = within(async { self.0 .0.pool.get().await.map_err(pool_error) }).await?;
        let tx = within(async { client.transaction().await.map_err(pg_error) }).await?;
        // A holder that stops answering (a frozen node) loses the lock when the server ends
        // its session, so the others are not locked out for good.
        within(async {
            tx.batch_execute(&format!(
                "SET LOCAL lock_timeout = '{}s';
                 SET LOCAL idle_in_transaction_session_timeout = '{}s'",
                LOCK_WAIT.as_secs(),
                LOCK_WAIT.as_secs()
            ))
            .await
            .map_err(pg_error)
        })
        .await?;
        let locked = tokio::time::timeout(
            LOCK_WAIT + OPERATION_TIMEOUT,
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2 || ':' || $3))",
                &[&LOCK_CLASS, &appid, &kind],
            ),
        )
        .await;
        match locked {
            Ok(locked) => locked.map_err(pg_error)?,
            Err(_) => return Err(unavailable("the credential lock was not had in time").into()),
        };
        let row = within(async {
            tx.query_opt(
                "SELECT value, version,
                        (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint,
                        (extract(epoch FROM clock_timestamp() - replaced_at) * 1000)::bigint
                 FROM wechat_credentials WHERE appid = $1 AND kind = $2",
                &[&appid, &kind],
            )
            .await
            .map_err(pg_error)
        })
        .await?;
        let current = row.and_then(|row| {
            let (left_ms, age_ms): (i64, i64) = (row.get(2), row.get(3));
            (left_ms > 0).then(|| StoredCredential {
                value: row.get(0),
                version: row.get(1),
                expires_in: Duration::from_millis(left_ms.unsigned_abs()),
                age: Duration::from_millis(age_ms.max(0).unsigned_abs()),
            })
        });
        if let Some(current) = current.filter(|c| !replace_it(c)) {
            return Ok(Replaced::Found(current));
        }
        let (value, expires_in) = fetch().await.map_err(ReplaceError::Fetch)?;
        let lifetime_ms = i64::try_from(expires_in.as_millis()).unwrap_or(i64::MAX);
        let version: i64 = within(async {
            tx.query_one(
                "INSERT INTO wechat_credentials
                     (appid, kind, value, replaced_at, expires_at, version)
                 VALUES ($1, $2, $3, clock_timestamp(),
                         clock_timestamp() + $4::bigint * interval '1 millisecond', 1)
                 ON CONFLICT (appid, kind) DO UPDATE
                     SET value = excluded.value, replaced_at = excluded.replaced_at,
                         expires_at = excluded.expires_at,
                         version = wechat_credentials.version + 1
                 RETURNING version",
                &[&appid, &kind, &value, &lifetime_ms],
            )
            .await
            .map_err(pg_error)
        })
        .await?
        .get(0);
        within(async { tx.commit().await.map_err(pg_error) }).await?;
        Ok(Replaced::Fetched(StoredCredential {
            value,
            expires_in,
            age: Duration::ZERO,
            version,
        }))
    }
}

impl<E> IsUnavailable for ReplaceError<E> {
    fn is_unavailable(&self) -> bool {
        matches!(self, ReplaceError::Store(e) if e.is_unavailable())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::test_server::TestServer;
    use crate::PgSettings;

    const APPID: &str = "wx0000000000000001";
    const TOKEN: &str = "access_token";

    /// Counts its fetches; each answers `v<n>` after a pause long enough for racers to pile up.
    #[derive(Clone, Default)]
    struct Wechat(Arc<AtomicUsize>);

    impl Wechat {
        async fn fetch(&self, lifetime: Duration) -> Result<(String, Duration), &'static str> {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok((format!("v{n}"), lifetime))
        }

        fn fetches(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// Replaces the row when it holds version `stale`.
    fn replacing(stale: Option<i64>) -> impl FnOnce(&StoredCredential) -> bool {
        move |row| Some(row.version) == stale
    }

    async fn shared(server: &TestServer) -> SharedCredentials {
        let settings = PgSettings {
            url: server.new_database().await,
            pool_size: 16,
            ca_file: None,
        };
        PgBackend::open(&settings)
            .await
            .unwrap()
            .shared_credentials()
    }

    /// `nodes` replacements of `stale` at once, each through a backend of its own (a node);
    /// what each got.
    async fn race(
        nodes: &[SharedCredentials],
        wechat: &Wechat,
        stale: Option<i64>,
    ) -> Vec<StoredCredential> {
        let racers: Vec<_> = nodes
            .iter()
            .map(|node| {
                let (node, wechat) = (node.clone(), wechat.clone());
                tokio::spawn(async move {
                    node.replace(APPID, TOKEN, replacing(stale), || {
                        wechat.fetch(Duration::from_secs(7200))
                    })
                    .await
                    .unwrap()
                    .credential()
                })
            })
            .collect();
        let mut got = Vec::new();
        for racer in racers {
            got.push(racer.await.unwrap());
        }
        got
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
    async fn racing_nodes_fetch_once_and_a_stale_copy_never_replaces_a_newer_value() {
        let server = TestServer::start();
        let settings = PgSettings {
            url: server.new_database().await,
            pool_size: 4,
            ca_file: None,
        };
        let mut nodes = Vec::new();
        for _ in 0..6 {
            nodes.push(
                PgBackend::open(&settings)
                    .await
                    .unwrap()
                    .shared_credentials(),
            );
        }
        let wechat = Wechat::default();

        // Six nodes with no token, at once: one fetch, one value for all.
        let first = race(&nodes, &wechat, None).await;
        assert_eq!(wechat.fetches(), 1);
        assert!(
            first.iter().all(|c| c.value == "v1" && c.version == 1),
            "{first:?}"
        );

        // All six want version 1 replaced (its expiry nears, or WeChat refused it): one fetch.
        let second = race(&nodes, &wechat, Some(1)).await;
        assert_eq!(wechat.fetches(), 2);
        assert!(
            second.iter().all(|c| c.value == "v2" && c.version == 2),
            "{second:?}"
        );

        // A slow node still holding version 1 gets version 2 and fetches nothing.
        let late = nodes[0]
            .replace(APPID, TOKEN, replacing(Some(1)), || {
                wechat.fetch(Duration::from_secs(7200))
            })
            .await
            .unwrap();
        assert!(
            matches!(&late, Replaced::Found(c) if c.version == 2),
            "{late:?}"
        );
        assert_eq!(wechat.fetches(), 2);
        // The lifetime left is the row's, by the database's clock.
        let left = late.credential().expires_in;
        assert!(
            left > Duration::from_secs(7100) && left <= Duration::from_secs(7200),
            "{left:?}"
        );
    }

    #[tokio::test]
    #[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
    async fn an_expired_row_is_replaced_a_failed_fetch_changes_nothing_and_accounts_are_apart() {
        let server = TestServer::start();
        let node = shared(&server).await;
        let wechat = Wechat::default();
        let short = || wechat.fetch(Duration::from_millis(1));
        node.replace(APPID, TOKEN, replacing(None), short)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Expired: replaced even for a node that holds nothing.
        let long = || wechat.fetch(Duration::from_secs(7200));
        let replaced = node
            .replace(APPID, TOKEN, replacing(None), long)
            .await
            .unwrap();
        assert!(
            matches!(&replaced, Replaced::Fetched(c) if c.version == 2),
            "{replaced:?}"
        );

        // A failed fetch leaves the row and releases the lock.
        let failed = node
            .replace(APPID, TOKEN, replacing(Some(2)), || async {
                Err::<(String, Duration), _>("down")
            })
            .await;
        assert!(matches!(failed, Err(ReplaceError::Fetch("down"))));
        let kept = node
            .replace(APPID, TOKEN, replacing(None), long)
            .await
            .unwrap();
        assert!(
            matches!(&kept, Replaced::Found(c) if c.value == "v2"),
            "{kept:?}"
        );

        // Another kind, another account: rows of their own.
        for (appid, kind) in [(APPID, "jsapi_ticket"), ("wx0000000000000002", TOKEN)] {
            let other = node
                .replace(appid, kind, replacing(None), long)
                .await
                .unwrap();
            assert!(
                matches!(&other, Replaced::Fetched(c) if c.version == 1),
                "{other:?}"
            );
        }
        assert_eq!(wechat.fetches(), 4);
    }
}
