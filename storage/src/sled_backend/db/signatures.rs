//! WeChat's signed query strings, each good for one body. In plaintext mode the signature
//! covers no part of the body, so whoever reads a push's query string in an access log could
//! post any body under it while its timestamp is fresh. The callback records each signature
//! with its body's digest here, durably, so neither a second body nor a restart (a deploy, a
//! crash) reopens it.

use std::sync::Arc;

use super::{SledDb, StoreError};

/// What a signature was used for before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureUse {
    /// Never: it is now this body's.
    First,
    /// With this very body: WeChat redelivering the push.
    SameBody,
    /// With another body: a replay.
    OtherBody,
}

/// `signatures` key: the signing time first, so what has aged out of every window is a range.
fn key(sent_at: u64, signature: &str) -> Vec<u8> {
    let signature = signature.to_ascii_lowercase();
    let mut key = Vec::with_capacity(8 + signature.len());
    key.extend_from_slice(&sent_at.to_be_bytes());
    key.extend_from_slice(signature.as_bytes());
    key
}

impl SledDb {
    /// Records that `signature`, made at `sent_at`, signs the body with `body_digest`, unless it
    /// already signs something. A first use is durable on return.
    pub async fn use_signature(
        &self,
        signature: &str,
        sent_at: u64,
        body_digest: [u8; 32],
    ) -> Result<SignatureUse, StoreError> {
        let taken = self.signatures.compare_and_swap(
            key(sent_at, signature),
            None::<&[u8]>,
            Some(&body_digest[..]),
        )?;
        match taken {
            Ok(()) => {
                self.flush().await?;
                Ok(SignatureUse::First)
            }
            Err(used) if used.current.as_deref() == Some(&body_digest[..]) => {
                Ok(SignatureUse::SameBody)
            }
            Err(_) => Ok(SignatureUse::OtherBody),
        }
    }

    /// Forgets signatures made before `sent_before` (which no timestamp window accepts any more);
    /// returns how many.
    pub async fn purge_old_signatures(
        self: &Arc<Self>,
        sent_before: u64,
    ) -> Result<usize, StoreError> {
        let end = sent_before.to_be_bytes();
        self.in_batches(move |store| store.delete_range(&store.signatures, &end))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{reopen, store};
    use super::*;

    #[tokio::test]
    async fn a_signature_signs_one_body_and_outlives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = ([1; 32], [2; 32]);
        {
            let store = SledDb::open(dir.path()).unwrap();
            assert_eq!(
                store.use_signature("ABC", 10, a).await.unwrap(),
                SignatureUse::First
            );
            assert_eq!(
                store.use_signature("abc", 10, a).await.unwrap(),
                SignatureUse::SameBody
            );
            assert_eq!(
                store.use_signature("abc", 10, b).await.unwrap(),
                SignatureUse::OtherBody
            );
        }
        let store = reopen(dir.path());
        assert_eq!(
            store.use_signature("abc", 10, b).await.unwrap(),
            SignatureUse::OtherBody
        );
        assert_eq!(
            store.use_signature("abc", 11, b).await.unwrap(),
            SignatureUse::First
        );
    }

    #[tokio::test]
    async fn old_signatures_are_forgotten_by_range() {
        let (_dir, store) = store();
        for sent_at in [5, 6, 7] {
            store.use_signature("s", sent_at, [0; 32]).await.unwrap();
        }
        assert_eq!(store.purge_old_signatures(7).await.unwrap(), 2);
        assert_eq!(
            store.use_signature("s", 5, [1; 32]).await.unwrap(),
            SignatureUse::First
        );
        assert_eq!(
            store.use_signature("s", 7, [1; 32]).await.unwrap(),
            SignatureUse::OtherBody
        );
    }
}
