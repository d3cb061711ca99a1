//! What the OpenID Connect provider keeps in PostgreSQL when several nodes serve it: the
//! authorization codes (a code issued by one node is redeemed at another, once), and named
//! documents holding its secrets (the signing-key set and the pairwise secret, as the files
//! of one node hold them), so every node signs with keys every node publishes.
//!
//! A code is stored by its SHA-256 only: a copy of the database redeems nothing. Redemption
//! locks the code's row, so two nodes redeeming one code at once are served one after the
//! other and the second finds it used.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{int, pg_error, purge_in_batches, uint, unix_now, PgBackend};
use crate::model::{OpenId, SessionToken};
use crate::StoreError;

/// The provider's tables, from [`crate::Store::oidc_records`]. Cloning is cheap.
#[derive(Clone)]
pub struct OidcRecords(PgBackend);

/// What an authorization code stands for, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub openid: OpenId,
    /// The binding generation it was issued under: a rebind since makes it worthless.
    pub generation: u64,
    /// Space-separated.
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: u64,
}

/// What a redemption found.
#[derive(Debug)]
pub enum Redemption<E> {
    /// Unknown, expired, or another client's.
    Unknown,
    /// Refused by the caller's check; left unredeemed, so the client may try again.
    Refused(E),
    /// Now redeemed, by this call alone.
    Granted(CodeGrant),
    /// Redeemed before: it is now forgotten and the access token issued for it revoked.
    Reused,
}

fn digest(code: &str) -> Vec<u8> {
    Sha256::digest(code.as_bytes()).to_vec()
}

impl OidcRecords {
    pub(super) fn new(backend: PgBackend) -> Self {
        Self(backend)
    }

    /// Stores `code` (by its digest) for `grant`, live for `ttl`. Durable on return.
    pub async fn issue_code(
        &self,
        code: &str,
        grant: &CodeGrant,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.0
            .run(move |client| async move {
                client
                    .execute(
                        "INSERT INTO oidc_codes (digest, client_id, redirect_uri, openid,
                             generation, scope, nonce, code_challenge, auth_time, expires_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                        &[
                            &digest(code),
                            &grant.client_id,
                            &grant.redirect_uri,
                            &grant.openid.as_str(),
                            &int(grant.generation),
                            &grant.scope,
                            &grant.nonce,
                            &grant.code_challenge,
                            &int(grant.auth_time),
                            &int(unix_now().saturating_add(ttl.as_secs())),
                        ],
                    )
                    .await
                    .map_err(pg_error)?;
                Ok(())
            })
            .await
    }

    /// Redeems `code` for `client_id` if `check` accepts its grant: at most one call, on any
    /// node, is ever [`Redemption::Granted`] a code. Durable on return.
    pub async fn redeem_code<E: Send>(
        &self,
        code: &str,
        client_id: &str,
        check: impl FnOnce(&CodeGrant) -> Result<(), E> + Send,
    ) -> Result<Redemption<E>, StoreError> {
        self.0
            .run(move |mut client| async move {
                let digest = digest(code);
                let tx = client.transaction().await.map_err(pg_error)?;
                // FOR UPDATE: a concurrent redemption waits here, then reads it redeemed.
                let row = tx
                    .query_opt(
                        "SELECT redirect_uri, openid, generation, scope, nonce, code_challenge,
                                auth_time, redeemed
                         FROM oidc_codes
                         WHERE digest = $1 AND client_id = $2 AND expires_at > $3
                         FOR UPDATE",
                        &[&digest, &client_id, &int(unix_now())],
                    )
                    .await
                    .map_err(pg_error)?;
                let Some(row) = row else {
                    return Ok(Redemption::Unknown);
                };
                if row.get::<_, bool>(7) {
                    tx.execute(
                        "WITH used AS (DELETE FROM oidc_codes WHERE digest = $1
                                       RETURNING access_token)
                         DELETE FROM access_tokens WHERE digest IN (SELECT access_token FROM used)",
                        &[&digest],
                    )
                    .await
                    .map_err(pg_error)?;
                    tx.commit().await.map_err(pg_error)?;
                    return Ok(Redemption::Reused);
                }
                let grant = CodeGrant {
                    client_id: client_id.to_owned(),
                    redirect_uri: row.get(0),
                    openid: OpenId::parse(row.get(1)).ok_or_else(super::corrupt)?,
                    generation: uint(row.get(2)),
                    scope: row.get(3),
                    nonce: row.get(4),
                    code_challenge: row.get(5),
                    auth_time: uint(row.get(6)),
                };
                if let Err(refused) = check(&grant) {
                    return Ok(Redemption::Refused(refused));
                }
                tx.execute(
                    "UPDATE oidc_codes SET redeemed = true WHERE digest = $1",
                    &[&digest],
                )
                .await
                .map_err(pg_error)?;
                tx.commit().await.map_err(pg_error)?;
                Ok(Redemption::Granted(grant))
            })
            .await
    }

    /// Notes the access token a redeemed `code` gave, for a second use to revoke; `false` if
    /// a second use came first (the caller revokes `token` then). Durable on return.
    pub async fn code_gave(&self, code: &str, token: &SessionToken) -> Result<bool, StoreError> {
        self.0
            .run(move |client| async move {
                let noted = client
                    .execute(
                        "UPDATE oidc_codes SET access_token = $2 WHERE digest = $1 AND redeemed",
                        &[&digest(code), &token.digest().as_ref()],
                    )
                    .await
                    .map_err(pg_error)?;
                Ok(noted == 1)
            })
            .await
    }

    /// Deletes every code issued to `openid`. Durable on return.
    pub async fn forget_codes(&self, openid: &OpenId) -> Result<(), StoreError> {
        self.0
            .run(move |client| async move {
                client
                    .execute(
                        "DELETE FROM oidc_codes WHERE openid = $1",
                        &[&openid.as_str()],
                    )
                    .await
                    .map_err(pg_error)?;
                Ok(())
            })
            .await
    }

    /// Deletes expired codes (already refused), in bounded batches; returns how many.
    pub async fn purge_expired_codes(&self) -> Result<usize, StoreError> {
        self.0
            .run(|client| {
                purge_in_batches(
                    client,
                    "DELETE FROM oidc_codes WHERE ctid IN
                         (SELECT ctid FROM oidc_codes WHERE expires_at <= $1 LIMIT $2)",
                    int(unix_now()),
                )
            })
            .await
    }

    /// The document `name`'s version, which every change increases; `None` if there is none.
    /// A cheap poll for changes.
    pub async fn document_version(&self, name: &str) -> Result<Option<i64>, StoreError> {
        self.0
            .run(move |client| async move {
                let row = client
                    .query_opt(
                        "SELECT version FROM oidc_documents WHERE name = $1",
                        &[&name],
                    )
                    .await
                    .map_err(pg_error)?;
                Ok(row.map(|row| row.get(0)))
            })
            .await
    }

    /// The document `name` and its version.
    pub async fn document(&self, name: &str) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        self.0
            .run(move |client| async move {
                let row = client
                    .query_opt(
                        "SELECT version, body FROM oidc_documents WHERE name = $1",
                        &[&name],
                    )
                    .await
                    .map_err(pg_error)?;
                Ok(row.map(|row| (row.get(0), row.get(1))))
            })
            .await
    }

    /// Changes the document `name` by `change`, which gets the current body (`None` if there is
    /// none) and returns the new one, or `None` to leave it; one change at a time across nodes.
    /// Returns the document as it stands after. Durable on return.
    pub async fn update_document<E: From<StoreError> + Send>(
        &self,
        name: &str,
        change: impl FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>, E> + Send,
    ) -> Result<Vec<u8>, E> {
        let changed = self
            .0
            .run(move |mut client| async move {
                let tx = client.transaction().await.map_err(pg_error)?;
                // The row may not exist yet: the lock is on the name, not the row.
                tx.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('wxlogin:document:' || $1))",
                    &[&name],
                )
                .await
                .map_err(pg_error)?;
                let row = tx
                    .query_opt("SELECT body FROM oidc_documents WHERE name = $1", &[&name])
                    .await
                    .map_err(pg_error)?;
                let old: Option<Vec<u8>> = row.map(|row| row.get(0));
                let new = match change(old.as_deref()) {
                    Ok(new) => new,
                    Err(e) => return Ok(Err(e)),
                };
                let Some(new) = new else {
                    return Ok(Ok(old.unwrap_or_default()));
                };
                tx.execute(
                    "INSERT INTO oidc_documents (name, body, version) VALUES ($1, $2, 1)
                     ON CONFLICT (name) DO UPDATE
                         SET body = excluded.body, version = oidc_documents.version + 1",
                    &[&name, &new],
                )
                .await
                .map_err(pg_error)?;
                tx.commit().await.map_err(pg_error)?;
                Ok::<_, StoreError>(Ok(new))
            })
            .await?;
        changed
    }
}
