//! What each user let each OpenID Connect client have, so their next login there is a scan
//! alone. Tied to the binding it was given under, as access tokens are.

use serde::{Deserialize, Serialize};

use super::{decode, encode, record_prefix, unix_now, SledDb};
use crate::model::Binding;
use crate::StoreError;

#[derive(Serialize, Deserialize)]
pub(super) struct ConsentValue {
    /// The scopes consented to, space-separated.
    pub(super) scope: String,
    /// Unix seconds.
    pub(super) given_at: u64,
    /// The [`Binding::generation`] it was given under.
    pub(super) generation: u64,
}

/// `openid ‖ 0 ‖ client id`: openids never contain a zero byte.
fn key(binding: &Binding, client_id: &str) -> Vec<u8> {
    let mut key = record_prefix(&binding.openid);
    key.extend_from_slice(client_id.as_bytes());
    key
}

impl SledDb {
    /// Records that the user of `binding` lets `client_id` have `scope`, replacing what they
    /// let it have before.
    pub async fn remember_consent(
        &self,
        binding: &Binding,
        client_id: &str,
        scope: &str,
    ) -> Result<(), StoreError> {
        let value = encode(&ConsentValue {
            scope: scope.to_owned(),
            given_at: unix_now(),
            generation: binding.generation,
        })?;
        self.consents.insert(key(binding, client_id), value)?;
        self.flush().await
    }

    /// The scope the user of `binding` let `client_id` have, if they did under this very
    /// binding.
    pub fn consent(
        &self,
        binding: &Binding,
        client_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let Some(raw) = self.consents.get(key(binding, client_id))? else {
            return Ok(None);
        };
        let value: ConsentValue = decode(&raw)?;
        Ok(binding
            .holds(value.generation, value.given_at)
            .then_some(value.scope))
    }
}
