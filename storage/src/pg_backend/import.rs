//! The database end of `wxlogin migrate` (crate::migrate): every record of another store
//! written as it stands, in one transaction, into a database that holds nothing yet.

use super::{int, method_name, pg_error, pool_error, PgBackend};
use crate::migrate::{Copied, MigrateError, Record, RecordStream};

/// Tables that must be empty for a migration: everything but the migrations' own record.
const TABLES: &[&str] = &[
    "bindings",
    "follows",
    "unfollows",
    "sessions",
    "logins",
    "access_tokens",
    "consents",
    "signatures",
    "oidc_codes",
    "oidc_documents",
];

/// Two migrations into one database at once: the second waits, then finds it full.
const IMPORT_LOCK: i64 = 0x0077_786c_696d_7074;

impl PgBackend {
    /// Writes `records` and `documents` (name, body) into this empty database; nothing at all
    /// if any write fails or the database holds anything.
    pub(crate) async fn import(
        &self,
        mut records: RecordStream,
        documents: &[(&str, Vec<u8>)],
    ) -> Result<Copied, MigrateError> {
        let mut client = self.0.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(pg_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&IMPORT_LOCK])
            .await
            .map_err(pg_error)?;
        let mut used = Vec::new();
        for table in TABLES {
            let row = tx
                .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[])
                .await
                .map_err(pg_error)?;
            if row.get(0) {
                used.push(*table);
            }
        }
        if !used.is_empty() {
            return Err(MigrateError::NotEmpty(used.join(", ")));
        }
        let mut copied = Copied::default();
        let mut newest_generation = 0;
        while let Some(batch) = records.recv().await {
            for record in batch? {
                copied.count(&record);
                let generation = match record {
                    Record::Binding(binding) => {
                        tx.execute(
                            "INSERT INTO bindings (openid, phone, bound_at, generation, unionid)
                             VALUES ($1, $2, $3, $4, $5)",
                            &[
                                &binding.openid.as_str(),
                                &binding.phone.as_str(),
                                &int(binding.bound_at),
                                &int(binding.generation),
                                &binding.unionid.as_ref().map(|u| u.as_str()),
                            ],
                        )
                        .await
                        .map_err(pg_error)?;
                        binding.generation
                    }
                    Record::Session {
                        digest,
                        openid,
                        created_at,
                        expires_at,
                        generation,
                    } => {
                        tx.execute(
                            "INSERT INTO sessions (digest, openid, created_at, expires_at, generation)
                             VALUES ($1, $2, $3, $4, $5)",
                            &[
                                &&digest[..],
                                &openid.as_str(),
                                &int(created_at),
                                &int(expires_at),
                                &int(generation),
                            ],
                        )
                        .await
                        .map_err(pg_error)?;
                        generation
                    }
                    Record::Login { openid, login } => {
                        tx.execute(
                            "INSERT INTO logins (openid, at_ms, method, client_ip)
                             VALUES ($1, $2, $3, $4)",
                            &[
                                &openid.as_str(),
                                &int(login.at_ms),
                                &method_name(login.method),
                                &login.client_ip,
                            ],
                        )
                        .await
                        .map_err(pg_error)?;
                        0
                    }
                    Record::AccessToken { digest, grant } => {
                        tx.execute(
                            "INSERT INTO access_tokens
                                 (digest, openid, client_id, scope, issued_at, expires_at, generation)
                             VALUES ($1, $2, $3, $4, $5, $6, $7)",
                            &[
                                &&digest[..],
                                &grant.openid.as_str(),
                                &grant.client_id,
                                &grant.scope,
                                &int(grant.issued_at),
                                &int(grant.expires_at),
                                &int(grant.generation),
                            ],
                        )
                        .await
                        .map_err(pg_error)?;
                        grant.generation
                    }
                    Record::Consent {
                        openid,
                        client_id,
                        scope,
                        given_at,
                        generation,
                    } => {
                        tx.execute(
                            "INSERT INTO consents (openid, client_id, scope, given_at, generation)
                             VALUES ($1, $2, $3, $4, $5)",
                            &[
                                &openid.as_str(),
                                &client_id,
                                &scope,
                                &int(given_at),
                                &int(generation),
                            ],
                        )
                        .await
                        .map_err(pg_error)?;
                        generation
                    }
                    Record::Follow { openid, at } => {
                        tx.execute(
                            "INSERT INTO follows (openid, followed_at) VALUES ($1, $2)",
                            &[&openid.as_str(), &int(at)],
                        )
                        .await
                        .map_err(pg_error)?;
                        0
                    }
                    Record::Unfollow {
                        openid,
                        generation,
                        at,
                    } => {
                        tx.execute(
                            "INSERT INTO unfollows (openid, generation, unfollowed_at)
                             VALUES ($1, $2, $3)",
                            &[&openid.as_str(), &int(generation), &at.map(int)],
                        )
                        .await
                        .map_err(pg_error)?;
                        generation
                    }
                    Record::Signature {
                        sent_at,
                        signature,
                        body_digest,
                    } => {
                        tx.execute(
                            "INSERT INTO signatures (sent_at, signature, body_digest)
                             VALUES ($1, $2, $3)",
                            &[&int(sent_at), &signature, &body_digest],
                        )
                        .await
                        .map_err(pg_error)?;
                        0
                    }
                };
                newest_generation = newest_generation.max(generation);
            }
        }
        for (name, body) in documents {
            tx.execute(
                "INSERT INTO oidc_documents (name, body, version) VALUES ($1, $2, 1)",
                &[name, body],
            )
            .await
            .map_err(pg_error)?;
            copied.documents += 1;
        }
        // Every generation made from now on is newer than every copied one, as sled's were.
        if newest_generation > 0 {
            tx.execute(
                "SELECT setval('generations', $1)",
                &[&int(newest_generation)],
            )
            .await
            .map_err(pg_error)?;
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(copied)
    }
}
