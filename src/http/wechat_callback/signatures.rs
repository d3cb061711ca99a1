//! A signed query string is good for one body. In plaintext mode WeChat's signature covers
//! the token, timestamp and nonce but not the body, and the query string sits in every proxy's
//! access log: without this, whoever reads one could post any body under it (a `SCAN` from the
//! victim's openid, an `unsubscribe`) for as long as the timestamp is fresh.
//!
//! Each signature is recorded, durably, with a digest of the body it came with (see
//! [`Store::use_signature`]): the same body again is a redelivery (the delivery memory then
//! acknowledges it); another body is refused, also after a restart. Keyed by the signature
//! itself, not the (timestamp, nonce) strings, so two spellings that sign alike are one. The
//! server check's GET uses its signature up too: in plaintext mode it is exactly what a POST
//! under the same query string would carry. Records are forgotten once no window accepts them.

use sha2::{Digest, Sha256};
use wxlogin_storage::{SignatureUse, Store};

use crate::error::ApiError;

/// What the server check's GET is recorded as having signed: no push has an empty body.
pub const SERVER_CHECK: &[u8] = b"";

/// Takes `signature` (verified, made at `sent_at`) for `body`, or refuses it.
pub async fn use_signature(
    store: &Store,
    signature: &str,
    sent_at: u64,
    body: &[u8],
) -> Result<(), ApiError> {
    let digest: [u8; 32] = Sha256::digest(body).into();
    match store.use_signature(signature, sent_at, digest).await? {
        SignatureUse::First | SignatureUse::SameBody => Ok(()),
        SignatureUse::OtherBody => Err(ApiError::ReplayedSignature),
    }
}
