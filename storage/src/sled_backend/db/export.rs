//! Every record, read tree by tree for `wxlogin migrate` (crate::migrate): from a stopped
//! node's store, so no cut is needed.

use sled::Tree;

use super::access::decode_grant;
use super::consent::ConsentValue;
use super::{binding_from, decode, decode_session, generation_of, unfollow_time_of, SledDb};
use crate::migrate::{Record, RecordSender, BATCH};
use crate::model::{LoginRecord, OpenId};
use crate::StoreError;

/// Splits an `openid ‖ 0 ‖ rest` key.
fn split_openid(key: &[u8]) -> Result<(OpenId, &[u8]), StoreError> {
    let zero = key
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(super::corrupt)?;
    let openid = std::str::from_utf8(&key[..zero]).map_err(|_| super::corrupt())?;
    Ok((
        OpenId::parse(openid).ok_or_else(super::corrupt)?,
        &key[zero + 1..],
    ))
}

fn openid_of(key: &[u8]) -> Result<OpenId, StoreError> {
    std::str::from_utf8(key)
        .ok()
        .and_then(OpenId::parse)
        .ok_or_else(super::corrupt)
}

fn digest_of(key: &[u8]) -> Result<[u8; 32], StoreError> {
    key.try_into().map_err(|_| super::corrupt())
}

/// Reads one tree's entry (key, value) as a record.
type ReadRecord<'a> = &'a dyn Fn(&[u8], &[u8]) -> Result<Record, StoreError>;

/// Batches records into the sender; `false` once the reader has gone away.
struct Batcher<'a> {
    sender: &'a RecordSender,
    batch: Vec<Record>,
}

impl Batcher<'_> {
    fn push(&mut self, record: Record) -> bool {
        self.batch.push(record);
        self.batch.len() < BATCH || self.send()
    }

    fn send(&mut self) -> bool {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        batch.is_empty() || self.sender.blocking_send(Ok(batch)).is_ok()
    }
}

impl SledDb {
    /// Sends every record to `sender` in batches, then ends (or sends the error that stopped
    /// it). Call from a blocking thread.
    pub fn export(&self, sender: &RecordSender) {
        let mut out = Batcher {
            sender,
            batch: Vec::with_capacity(BATCH),
        };
        if let Err(e) = self.export_into(&mut out) {
            if out.send() {
                let _ = sender.blocking_send(Err(e));
            }
            return;
        }
        out.send();
    }

    fn export_into(&self, out: &mut Batcher<'_>) -> Result<(), StoreError> {
        let each = |tree: &Tree,
                    out: &mut Batcher<'_>,
                    record: ReadRecord<'_>|
         -> Result<bool, StoreError> {
            for entry in tree.iter() {
                let (key, value) = entry?;
                if !out.push(record(&key, &value)?) {
                    return Ok(false);
                }
            }
            Ok(true)
        };
        // Bindings first: the rest refer to them.
        let steps: [(&Tree, ReadRecord<'_>); 8] = [
            (&self.bindings, &|key, value| {
                Ok(Record::Binding(binding_from(openid_of(key)?, value)?))
            }),
            (&self.sessions, &|key, value| {
                let session = decode_session(value)?;
                Ok(Record::Session {
                    digest: digest_of(key)?,
                    openid: session.openid,
                    created_at: session.created_at,
                    expires_at: session.expires_at,
                    generation: session.generation,
                })
            }),
            // Keyed by openid, then time: each user's logins in their order.
            (&self.logins, &|key, value| {
                let (openid, _) = split_openid(key)?;
                let login: LoginRecord = decode(value)?;
                Ok(Record::Login { openid, login })
            }),
            (&self.access_tokens, &|key, value| {
                Ok(Record::AccessToken {
                    digest: digest_of(key)?,
                    grant: decode_grant(value)?,
                })
            }),
            (&self.consents, &|key, value| {
                let (openid, client_id) = split_openid(key)?;
                let consent: ConsentValue = decode(value)?;
                Ok(Record::Consent {
                    openid,
                    client_id: String::from_utf8(client_id.to_vec())
                        .map_err(|_| super::corrupt())?,
                    scope: consent.scope,
                    given_at: consent.given_at,
                    generation: consent.generation,
                })
            }),
            (&self.follows, &|key, value| {
                Ok(Record::Follow {
                    openid: openid_of(key)?,
                    at: generation_of(value),
                })
            }),
            (&self.unfollows, &|key, value| {
                Ok(Record::Unfollow {
                    openid: openid_of(key)?,
                    generation: generation_of(value),
                    at: unfollow_time_of(value),
                })
            }),
            (&self.signatures, &|key, value| {
                let (sent_at, signature) = key.split_at_checked(8).ok_or_else(super::corrupt)?;
                Ok(Record::Signature {
                    sent_at: generation_of(sent_at),
                    signature: String::from_utf8(signature.to_vec())
                        .map_err(|_| super::corrupt())?,
                    body_digest: value.to_vec(),
                })
            }),
        ];
        for (tree, record) in steps {
            if !each(tree, out, record)? {
                return Ok(());
            }
        }
        Ok(())
    }
}
