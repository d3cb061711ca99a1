//! OpenID Connect access tokens: like sessions, stored only as SHA-256 digests, indexed by
//! openid so logging out or unfollowing revokes every one of a user's tokens.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

use super::{decode, encode, record_prefix, tx_error, unix_now, SledDb};
use crate::model::{Binding, OpenId, SessionToken};
use crate::StoreError;

/// What an access token lets its client read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessGrant {
    pub openid: OpenId,
    pub client_id: String,
    /// The granted scopes, space-separated.
    pub scope: String,
    /// Unix seconds.
    pub issued_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// The [`Binding::generation`] it was issued under.
    pub generation: u64,
}

/// A grant written before grants had generations (see `store::BindingValueV0`).
#[derive(Deserialize)]
struct AccessGrantV0 {
    openid: OpenId,
    client_id: String,
    scope: String,
    issued_at: u64,
    expires_at: u64,
}

pub(super) fn decode_grant(raw: &[u8]) -> Result<AccessGrant, StoreError> {
    decode(raw).or_else(|_| {
        let old: AccessGrantV0 = decode(raw)?;
        Ok(AccessGrant {
            openid: old.openid,
            client_id: old.client_id,
            scope: old.scope,
            issued_at: old.issued_at,
            expires_at: old.expires_at,
            generation: 0,
        })
    })
}

impl SledDb {
    /// Stores a new access token for the user of `binding`, live while that binding stands,
    /// and returns it.
    pub async fn issue_access_token(
        &self,
        binding: &Binding,
        client_id: &str,
        scope: &str,
        ttl: Duration,
    ) -> Result<SessionToken, StoreError> {
        let openid = &binding.openid;
        let token = SessionToken::generate();
        let digest = *token.digest().as_bytes();
        let issued_at = unix_now();
        let grant = encode(&AccessGrant {
            openid: openid.clone(),
            client_id: client_id.to_owned(),
            scope: scope.to_owned(),
            issued_at,
            expires_at: issued_at.saturating_add(ttl.as_secs()),
            generation: binding.generation,
        })?;
        let mut index_key = record_prefix(openid);
        index_key.extend_from_slice(&digest);
        (&self.access_tokens, &self.access_tokens_by_openid)
            .transaction(|(tokens, index)| {
                tokens.insert(&digest, grant.as_slice())?;
                index.insert(index_key.as_slice(), &[])?;
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            })
            .map_err(tx_error)?;
        self.flush().await?;
        Ok(token)
    }

    /// The live grant of `token` and its user's binding: unexpired, and the user still bound by
    /// the binding it was issued under.
    pub fn access_token(
        &self,
        token: &SessionToken,
    ) -> Result<Option<(AccessGrant, Binding)>, StoreError> {
        let Some(raw) = self.access_tokens.get(token.digest())? else {
            return Ok(None);
        };
        let grant = decode_grant(&raw)?;
        if grant.expires_at <= unix_now() {
            return Ok(None);
        }
        Ok(self
            .binding(&grant.openid)?
            .filter(|binding| binding.holds(grant.generation, grant.issued_at))
            .map(|binding| (grant, binding)))
    }

    /// Revokes one access token. Returns whether it existed.
    pub async fn revoke_access_token(&self, token: &SessionToken) -> Result<bool, StoreError> {
        let digest = *token.digest().as_bytes();
        let Some(raw) = self.access_tokens.remove(digest)? else {
            return Ok(false);
        };
        let grant = decode_grant(&raw)?;
        let mut index_key = record_prefix(&grant.openid);
        index_key.extend_from_slice(&digest);
        self.access_tokens_by_openid.remove(index_key)?;
        self.flush().await?;
        Ok(true)
    }

    /// Revokes every access token of `openid`; returns how many there were.
    pub async fn revoke_access_tokens(&self, openid: &OpenId) -> Result<usize, StoreError> {
        let revoked = self.remove_access_tokens(openid)?;
        if revoked > 0 {
            self.flush().await?;
        }
        Ok(revoked)
    }

    /// Removes `openid`'s access tokens without flushing: for callers that flush after.
    pub(super) fn remove_access_tokens(&self, openid: &OpenId) -> Result<usize, StoreError> {
        let prefix = record_prefix(openid);
        let mut removed = 0;
        for key in self.access_tokens_by_openid.scan_prefix(&prefix).keys() {
            let key = key?;
            self.access_tokens.remove(&key[prefix.len()..])?;
            self.access_tokens_by_openid.remove(&key)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Up to a batch of expired access tokens deleted (they are few and short-lived: a scan,
    /// run on a blocking thread by [`SledDb::purge_expired_access_tokens`]).
    pub(super) fn purge_access_tokens_batch(&self, now: u64) -> Result<usize, StoreError> {
        let mut purged = 0;
        for entry in self.access_tokens.iter() {
            let (digest, raw) = entry?;
            let grant = decode_grant(&raw)?;
            if grant.expires_at > now {
                continue;
            }
            let mut index_key = record_prefix(&grant.openid);
            index_key.extend_from_slice(&digest);
            self.access_tokens.remove(&digest)?;
            self.access_tokens_by_openid.remove(index_key)?;
            purged += 1;
            if purged == super::expiry::BATCH {
                break;
            }
        }
        Ok(purged)
    }
}
