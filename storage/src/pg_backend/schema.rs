//! The PostgreSQL schema, as numbered migrations applied at start.
//!
//! Each migration runs once, in one transaction with the row that records it; every node that
//! starts takes the same transaction-scoped advisory lock first, so two nodes starting at once
//! apply each migration once (the second waits, then finds it recorded). A migration, once
//! released, is never edited: a change is a new one at the end.

use deadpool_postgres::Pool;

use super::pg_error;
use crate::StoreError;

/// The advisory lock every node's migration takes ("wxlogin" in ASCII).
const MIGRATION_LOCK: i64 = 0x0077_786c_6f67_696e;

/// Version n is `MIGRATIONS[n - 1]`.
const MIGRATIONS: &[&str] = &[
    // 1: everything the storage interface holds. Times are Unix seconds (`*_at`) or
    // milliseconds (`at_ms`); generations come from one sequence, as sled's ids do.
    "CREATE SEQUENCE generations;
     CREATE TABLE bindings (
         openid text PRIMARY KEY,
         phone text NOT NULL UNIQUE,
         bound_at bigint NOT NULL,
         generation bigint NOT NULL,
         unionid text
     );
     CREATE TABLE follows (openid text PRIMARY KEY, followed_at bigint NOT NULL);
     CREATE TABLE unfollows (
         openid text PRIMARY KEY,
         generation bigint NOT NULL,
         unfollowed_at bigint
     );
     CREATE TABLE sessions (
         digest bytea PRIMARY KEY,
         openid text NOT NULL,
         created_at bigint NOT NULL,
         expires_at bigint NOT NULL,
         generation bigint NOT NULL
     );
     CREATE INDEX sessions_by_openid ON sessions (openid);
     CREATE INDEX sessions_by_expiry ON sessions (expires_at);
     CREATE TABLE logins (
         id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
         openid text NOT NULL,
         at_ms bigint NOT NULL,
         method text NOT NULL,
         client_ip text NOT NULL
     );
     CREATE INDEX logins_by_openid ON logins (openid, at_ms, id);
     CREATE INDEX logins_by_time ON logins (at_ms);
     CREATE TABLE access_tokens (
         digest bytea PRIMARY KEY,
         openid text NOT NULL,
         client_id text NOT NULL,
         scope text NOT NULL,
         issued_at bigint NOT NULL,
         expires_at bigint NOT NULL,
         generation bigint NOT NULL
     );
     CREATE INDEX access_tokens_by_openid ON access_tokens (openid);
     CREATE INDEX access_tokens_by_expiry ON access_tokens (expires_at);
     CREATE TABLE consents (
         openid text NOT NULL,
         client_id text NOT NULL,
         scope text NOT NULL,
         given_at bigint NOT NULL,
         generation bigint NOT NULL,
         PRIMARY KEY (openid, client_id)
     );
     CREATE TABLE signatures (
         sent_at bigint NOT NULL,
         signature text NOT NULL,
         body_digest bytea NOT NULL,
         PRIMARY KEY (sent_at, signature)
     );",
    // 2 (issue 20, one access token for the cluster): WeChat's access token and JS-SDK ticket,
    // one row per account and kind, replaced by one node at a time (pg_backend/credentials.rs).
    "CREATE TABLE wechat_credentials (
         appid text NOT NULL,
         kind text NOT NULL,
         value text NOT NULL,
         replaced_at timestamptz NOT NULL,
         expires_at timestamptz NOT NULL,
         version bigint NOT NULL,
         PRIMARY KEY (appid, kind)
     );",
    // 3 (issue 20, cluster-wide limits and filters): what each node kept in memory on one node,
    // shared (limits.rs). Keys are SHA-256 digests; times are the database's, in seconds.
    // UNLOGGED: a check writes no WAL, so its commit waits for no disk flush (two of a scan's
    // round trips); a crash of the database empties them, as a restart empties a node's memory.
    "CREATE UNLOGGED TABLE limit_sightings (
         kind text NOT NULL,
         digest bytea NOT NULL,
         sightings bigint NOT NULL,
         closes_at float8 NOT NULL,
         PRIMARY KEY (kind, digest)
     );
     CREATE INDEX limit_sightings_by_close ON limit_sightings (closes_at);
     CREATE UNLOGGED TABLE limit_budgets (
         kind text NOT NULL,
         digest bytea NOT NULL,
         tokens float8 NOT NULL,
         updated_at float8 NOT NULL,
         granted boolean NOT NULL,
         full_at float8 NOT NULL,
         PRIMARY KEY (kind, digest)
     );
     CREATE INDEX limit_budgets_by_full ON limit_budgets (full_at);",
    // 4 (issue 20, part O: OpenID Connect across nodes): authorization codes, by their
    // SHA-256, and the provider's secrets (signing keys, pairwise secret) as named documents
    // every node reads (oidc.rs).
    "CREATE TABLE oidc_codes (
         digest bytea PRIMARY KEY,
         client_id text NOT NULL,
         redirect_uri text NOT NULL,
         openid text NOT NULL,
         generation bigint NOT NULL,
         scope text NOT NULL,
         nonce text,
         code_challenge text,
         auth_time bigint NOT NULL,
         expires_at bigint NOT NULL,
         redeemed boolean NOT NULL DEFAULT false,
         access_token bytea
     );
     CREATE INDEX oidc_codes_by_openid ON oidc_codes (openid);
     CREATE INDEX oidc_codes_by_expiry ON oidc_codes (expires_at);
     CREATE TABLE oidc_documents (
         name text PRIMARY KEY,
         body bytea NOT NULL,
         version bigint NOT NULL
     );",
    // 5 (issue 20, part S: scenes that outlive their node): one row per scene, keyed by SHA-256
    // of its id (pg_backend/scenes.rs); `state` is the scene's own serialisation, `version`
    // raised by every change; the login code and the scanner awaiting confirmation are the
    // cross-node indexes. Times are Unix milliseconds.
    "CREATE TABLE scenes (
         key bytea PRIMARY KEY,
         version bigint NOT NULL,
         state bytea NOT NULL,
         login_code text UNIQUE,
         confirming text,
         secret_digest bytea NOT NULL,
         expires_at_ms bigint NOT NULL,
         updated_at_ms bigint NOT NULL
     );
     CREATE INDEX scenes_by_confirming ON scenes (confirming) WHERE confirming IS NOT NULL;
     CREATE INDEX scenes_by_expiry ON scenes (expires_at_ms);",
    // 6 (a scene's session token is never stored): the row keeps the digest of the session its
    // secret derives, which also proves the secret. Rows of the old form hold clear tokens and
    // codes and cannot be read by this version: the logins they were are dropped (their
    // browsers ask for a new QR code).
    "DELETE FROM scenes;
     ALTER TABLE scenes RENAME COLUMN secret_digest TO session_digest;",
    // 7 (a database keeps to the mode it first served, as a data directory's `mode` file does):
    // one row, written by the first node to start on it (pg_backend/mode.rs).
    "CREATE TABLE wxlogin_mode (
         only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
         mode text NOT NULL
     );",
];

/// The schema's version once every migration is applied.
pub(super) const VERSION: usize = MIGRATIONS.len();

/// Brings the schema up to date; returns the version it is at.
pub(super) async fn migrate(pool: &Pool) -> Result<usize, StoreError> {
    let mut client = pool.get().await.map_err(super::pool_error)?;
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS wxlogin_migrations (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(pg_error)?;
    let applied: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM wxlogin_migrations",
            &[],
        )
        .await
        .map_err(pg_error)?
        .get(0);
    let applied = usize::try_from(applied).unwrap_or(0);
    if applied > VERSION {
        return Err(StoreError::Backend(
            format!(
                "the database's schema is at version {applied}, newer than this wxlogin's {}: \
                 run a newer wxlogin",
                VERSION
            )
            .into(),
        ));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        let version = i32::try_from(index + 1).expect("few migrations");
        tx.batch_execute(migration).await.map_err(pg_error)?;
        tx.execute(
            "INSERT INTO wxlogin_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(VERSION)
}
