//! The cluster's limits and filters: what each node kept in memory on one node, in two tables
//! every node shares, each check one statement (one round trip), decided by the database's
//! clock so that nodes whose clocks differ still agree.
//!
//! - **Sightings** (`limit_sightings`): how often a key was seen since a window of a given
//!   lifetime opened at its first sighting; the first is 1. The callback's redelivery filter and
//!   web authorization's used states keep "first time" marks, the login-code guess throttle its
//!   misses. Two nodes seeing one key at once are serialised by the primary key: one sees 1.
//! - **Budgets** (`limit_budgets`): token buckets, as the in-memory rate limiter's (a burst of
//!   `capacity`, refilled continuously), with its take and give-back.
//!
//! Keys are stored as SHA-256 digests, never as given: they are IPs, phone numbers, openids and
//! web authorization states. Rows past their use are deleted in batches by a task of their own,
//! never on a request's path. A check that cannot reach the database in [`CHECK_TIMEOUT`]
//! answers [`StoreError::Unavailable`]: the caller refuses (fails closed).

use std::sync::{Arc, Weak};
use std::time::Duration;

use deadpool_postgres::Pool;
use sha2::{Digest, Sha256};

use super::{pg_error, pool_error, prepared, purge_in_batches, unavailable};
use crate::StoreError;

/// A limit check waits at most this long, a connection included: well inside WeChat's 5 s for
/// a callback that makes a few of them.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// How often rows past their use are deleted.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// The database's clock, in seconds.
const NOW: &str = "extract(epoch FROM clock_timestamp())::float8";

/// A sighting of a key that has a row (`s`): a closed window restarts, an open one counts.
fn count_sighting() -> String {
    format!(
        "ON CONFLICT (kind, digest) DO UPDATE SET
             sightings = CASE WHEN s.closes_at <= {NOW} THEN 1 ELSE s.sightings + 1 END,
             closes_at = CASE WHEN s.closes_at <= {NOW} THEN excluded.closes_at
                              ELSE s.closes_at END
         RETURNING sightings"
    )
}

/// The shared limits of the nodes on one database. Cloning is cheap.
#[derive(Clone)]
pub struct SharedLimits(Arc<Pool>);

impl SharedLimits {
    /// Starts the purge, which ends when the last clone goes. Must run inside a tokio runtime.
    pub(super) fn new(pool: Pool) -> Self {
        let limits = Self(Arc::new(pool));
        tokio::spawn(purge_periodically(Arc::downgrade(&limits.0)));
        limits
    }

    /// Counts a sighting of `key` under `kind`: how many there were in its current window,
    /// this one included (1: the first). A window opens at a first sighting and lasts
    /// `lifetime`; a sighting after it opens the next.
    pub async fn sight(
        &self,
        kind: &str,
        key: &str,
        lifetime: Duration,
    ) -> Result<u32, StoreError> {
        let row = self
            .query_one(
                &format!(
                    "INSERT INTO limit_sightings AS s (kind, digest, sightings, closes_at)
                     VALUES ($1::text, $2::bytea, 1, {NOW} + $3::float8)
                     {}",
                    count_sighting()
                ),
                &[&kind, &digest(key), &lifetime.as_secs_f64()],
            )
            .await?;
        Ok(count(row.get(0)))
    }

    /// [`SharedLimits::sight`], unless `key` has an open window under `unless_kind`: then
    /// `None`, and nothing counted. One round trip for a check and a sighting.
    pub async fn sight_unless(
        &self,
        kind: &str,
        key: &str,
        lifetime: Duration,
        unless_kind: &str,
    ) -> Result<Option<u32>, StoreError> {
        let row = self
            .query_opt(
                &format!(
                    "INSERT INTO limit_sightings AS s (kind, digest, sightings, closes_at)
                     SELECT $1::text, $2::bytea, 1, {NOW} + $3::float8
                     WHERE NOT EXISTS (SELECT 1 FROM limit_sightings
                                       WHERE kind = $4::text AND digest = $2::bytea
                                         AND closes_at > {NOW})
                     {}",
                    count_sighting()
                ),
                &[&kind, &digest(key), &lifetime.as_secs_f64(), &unless_kind],
            )
            .await?;
        Ok(row.map(|row| count(row.get(0))))
    }

    /// How many sightings of `key` its current window holds, without counting one.
    pub async fn sightings(&self, kind: &str, key: &str) -> Result<u32, StoreError> {
        let row = self
            .query_one(
                &format!(
                    "SELECT coalesce(max(sightings), 0) FROM limit_sightings
                     WHERE kind = $1::text AND digest = $2::bytea AND closes_at > {NOW}"
                ),
                &[&kind, &digest(key)],
            )
            .await?;
        Ok(count(row.get(0)))
    }

    /// Takes back one sighting of `key` under `kind` from its open window, if it holds any.
    pub async fn give_back_sighting(&self, kind: &str, key: &str) -> Result<(), StoreError> {
        self.execute(
            &format!(
                "UPDATE limit_sightings SET sightings = sightings - 1
                 WHERE kind = $1::text AND digest = $2::bytea AND closes_at > {NOW}
                   AND sightings > 0"
            ),
            &[&kind, &digest(key)],
        )
        .await
    }

    /// Forgets `key`'s window: its next sighting is a first again.
    pub async fn forget(&self, kind: &str, key: &str) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM limit_sightings WHERE kind = $1::text AND digest = $2::bytea",
            &[&kind, &digest(key)],
        )
        .await
    }

    /// Takes a token from `key`'s bucket under `kind` (`capacity` at most, refilled by
    /// `refill_per_sec`), or tells how long until one is free. A bucket left alone until it is
    /// full again is forgotten (a new one starts full): that changes nothing.
    pub async fn acquire(
        &self,
        kind: &str,
        key: &str,
        capacity: f64,
        refill_per_sec: f64,
    ) -> Result<Result<(), Duration>, StoreError> {
        // The refilled level, from the stored row (`b`) and the time now (`excluded.updated_at`).
        let refilled = "least($3::float8, \
                        b.tokens + greatest(excluded.updated_at - b.updated_at, 0) * $4::float8)";
        // A token taken: 1, else 0.
        let taken = format!("CASE WHEN {refilled} >= 1 THEN 1 ELSE 0 END");
        let row = self
            .query_one(
                &format!(
                    "INSERT INTO limit_budgets AS b
                         (kind, digest, tokens, updated_at, granted, full_at)
                     VALUES ($1::text, $2::bytea, $3::float8 - 1, {NOW}, true,
                             {NOW} + 1 / $4::float8)
                     ON CONFLICT (kind, digest) DO UPDATE SET
                         tokens = {refilled} - {taken},
                         granted = {refilled} >= 1,
                         updated_at = excluded.updated_at,
                         full_at = excluded.updated_at
                             + ($3::float8 - {refilled} + {taken}) / $4::float8
                     RETURNING granted, tokens"
                ),
                &[&kind, &digest(key), &capacity, &refill_per_sec],
            )
            .await?;
        let (granted, tokens): (bool, f64) = (row.get(0), row.get(1));
        Ok(match granted {
            true => Ok(()),
            false => Err(Duration::from_secs_f64(
                ((1.0 - tokens) / refill_per_sec).max(0.0),
            )),
        })
    }

    /// Returns a token taken for a request that ended up doing nothing.
    pub async fn give_back(&self, kind: &str, key: &str, capacity: f64) -> Result<(), StoreError> {
        self.execute(
            "UPDATE limit_budgets SET tokens = least($3::float8, tokens + 1)
             WHERE kind = $1::text AND digest = $2::bytea",
            &[&kind, &digest(key), &capacity],
        )
        .await
    }

    async fn query_one(
        &self,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<tokio_postgres::Row, StoreError> {
        self.query_opt(statement, params).await?.ok_or_else(|| {
            StoreError::Backend("a statement that returns a row returned none".into())
        })
    }

    async fn query_opt(
        &self,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>, StoreError> {
        within_check(async {
            let client = self.0.get().await.map_err(pool_error)?;
            let statement = prepared(&client, statement).await?;
            client.query_opt(&statement, params).await.map_err(pg_error)
        })
        .await
    }

    async fn execute(
        &self,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<(), StoreError> {
        within_check(async {
            let client = self.0.get().await.map_err(pool_error)?;
            let statement = prepared(&client, statement).await?;
            client.execute(&statement, params).await.map_err(pg_error)?;
            Ok(())
        })
        .await
    }
}

/// SHA-256 of a key: the tables hold no IP, phone number or state as given.
fn digest(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

fn count(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

async fn within_check<T>(
    op: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(CHECK_TIMEOUT, op)
        .await
        .unwrap_or_else(|_| {
            Err(unavailable(
                "the database did not answer a limit check in time",
            ))
        })
}

/// Every [`PURGE_INTERVAL`] while the limits live: [`purge`].
async fn purge_periodically(pool: Weak<Pool>) {
    loop {
        tokio::time::sleep(PURGE_INTERVAL).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        purge(&pool).await;
    }
}

/// Deletes windows that closed and buckets full again, in batches: forgetting them changes no
/// answer.
async fn purge(pool: &Pool) {
    for (what, statement) in [
        (
            "limit windows",
            "DELETE FROM limit_sightings WHERE ctid IN (SELECT ctid FROM limit_sightings
                 WHERE closes_at <= extract(epoch FROM clock_timestamp()) - $1::bigint LIMIT $2)",
        ),
        (
            "limit buckets",
            "DELETE FROM limit_budgets WHERE ctid IN (SELECT ctid FROM limit_budgets
                 WHERE full_at <= extract(epoch FROM clock_timestamp()) - $1::bigint LIMIT $2)",
        ),
    ] {
        let purged = match pool.get().await {
            // $1: how long past its use a row is kept; nothing reads it then.
            Ok(client) => purge_in_batches(client, statement, 0).await,
            Err(e) => Err(pool_error(e)),
        };
        match purged {
            Ok(0) => {}
            Ok(purged) => tracing::debug!(purged, "expired {what} removed"),
            Err(e) => tracing::warn!(error = %e, "purging expired {what} failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg_backend::{PgBackend, PgSettings};
    use crate::test_server::TestServer;

    /// Two nodes' limits on one database.
    async fn two_nodes(server: &TestServer) -> (SharedLimits, SharedLimits) {
        let settings = PgSettings {
            url: server.new_database().await,
            pool_size: 2,
            ca_file: None,
        };
        let a = PgBackend::open(&settings).await.unwrap().shared_limits();
        let b = PgBackend::open(&settings).await.unwrap().shared_limits();
        (a, b)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
    async fn sightings_and_budgets_are_shared_and_stored_as_digests() {
        let server = TestServer::start();
        let (a, b) = two_nodes(&server).await;
        let window = Duration::from_millis(300);

        // Sightings: counted together, one first among racers, a new window after the lifetime.
        let racers: Vec<_> = (0..8)
            .map(|i| {
                let node = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move { node.sight("push", "k", window).await.unwrap() })
            })
            .collect();
        let mut seen = Vec::new();
        for racer in racers {
            seen.push(racer.await.unwrap());
        }
        seen.sort_unstable();
        assert_eq!(seen, (1..=8).collect::<Vec<_>>());
        assert_eq!(b.sightings("push", "k").await.unwrap(), 8);
        assert_eq!(a.sightings("other-kind", "k").await.unwrap(), 0);
        a.give_back_sighting("push", "k").await.unwrap();
        assert_eq!(b.sightings("push", "k").await.unwrap(), 7);
        // Unless another kind's window is open: counted only while it is not.
        assert_eq!(
            a.sight_unless("lease", "k", window, "push").await.unwrap(),
            None
        );
        assert_eq!(b.sightings("lease", "k").await.unwrap(), 0);
        assert_eq!(
            a.sight_unless("push", "k", window, "lease").await.unwrap(),
            Some(8)
        );
        a.forget("push", "k").await.unwrap();
        // Nothing to give back once forgotten: no window goes below nothing.
        a.give_back_sighting("push", "k").await.unwrap();
        assert_eq!(b.sight("push", "k", window).await.unwrap(), 1);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(a.sightings("push", "k").await.unwrap(), 0);
        assert_eq!(a.sight("push", "k", window).await.unwrap(), 1);

        // Budgets: a burst of 2 across nodes, the wait until a token, a token given back.
        let per_hour = 2.0 / 3600.0;
        let phone = "13800000001";
        assert_eq!(
            a.acquire("sms", phone, 2.0, per_hour).await.unwrap(),
            Ok(())
        );
        assert_eq!(
            b.acquire("sms", phone, 2.0, per_hour).await.unwrap(),
            Ok(())
        );
        let wait = a
            .acquire("sms", phone, 2.0, per_hour)
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            wait > Duration::from_secs(1790) && wait <= Duration::from_secs(1800),
            "{wait:?}"
        );
        b.give_back("sms", phone, 2.0).await.unwrap();
        assert_eq!(
            a.acquire("sms", phone, 2.0, per_hour).await.unwrap(),
            Ok(())
        );
        assert!(b
            .acquire("sms", phone, 2.0, per_hour)
            .await
            .unwrap()
            .is_err());
        // A full bucket's give-back adds nothing.
        b.give_back("sms", "13800000002", 2.0).await.unwrap();
        assert_eq!(
            b.acquire("sms", "13800000002", 1.0, per_hour)
                .await
                .unwrap(),
            Ok(())
        );

        // The tables hold digests, not the phone.
        let client = a.0.get().await.unwrap();
        let rows = client
            .query("SELECT digest FROM limit_budgets", &[])
            .await
            .unwrap();
        assert!(!rows.is_empty());
        for row in rows {
            let stored: &[u8] = row.get(0);
            assert_eq!(stored.len(), 32);
            assert!(!stored.windows(phone.len()).any(|w| w == phone.as_bytes()));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
    async fn the_purge_deletes_closed_windows_and_full_buckets_only() {
        let server = TestServer::start();
        let (a, _) = two_nodes(&server).await;
        a.sight("push", "closing", Duration::from_millis(100))
            .await
            .unwrap();
        a.sight("push", "open", Duration::from_secs(60))
            .await
            .unwrap();
        // Full again 0.1 s after the take, and not for an hour.
        a.acquire("qr", "refilling", 1.0, 10.0)
            .await
            .unwrap()
            .unwrap();
        a.acquire("sms", "spent", 1.0, 1.0 / 3600.0)
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        purge(&a.0).await;
        let client = a.0.get().await.unwrap();
        let kinds = |table: &'static str| {
            let client = &client;
            async move {
                let rows = client
                    .query(&format!("SELECT kind FROM {table}"), &[])
                    .await
                    .unwrap();
                rows.iter()
                    .map(|row| row.get::<_, String>(0))
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(kinds("limit_sightings").await, ["push"]);
        assert_eq!(kinds("limit_budgets").await, ["sms"]);
        // What is left still answers as before.
        assert_eq!(a.sightings("push", "open").await.unwrap(), 1);
        assert!(a
            .acquire("sms", "spent", 1.0, 1.0 / 3600.0)
            .await
            .unwrap()
            .is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
    async fn an_unreachable_database_answers_unavailable() {
        let server = TestServer::start();
        let (a, _) = two_nodes(&server).await;
        server.stop();
        assert!(matches!(
            a.sight("push", "k", Duration::from_secs(60)).await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            a.acquire("qr", "1.2.3.4", 1.0, 1.0).await,
            Err(StoreError::Unavailable(_))
        ));
    }
}
