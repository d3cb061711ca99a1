//! wxlogin's durable state: who is bound to which phone, live sessions, OpenID Connect access
//! tokens, and the login log.
//!
//! [`Store`] is what the service holds: a handle on a [`Backend`], whose every operation says
//! what it guarantees on return (backend.rs). The sled backend (sled_backend/) is the default:
//! every write it acknowledges is flushed and its files synced first, so it survives a
//! `kill -9` or a power cut right after; concurrent writers share their syncs (group commit).
//! The PostgreSQL backend (pg_backend/) keeps the same guarantees in a database server.

mod backend;
#[cfg(test)]
mod conformance;
pub mod migrate;
mod model;
mod pg_backend;
mod sled_backend;
mod store;

pub use backend::{Backend, BindingSink, BindingStream, Pending};
pub use model::{
    constant_time_eq, Binding, LoginCursor, LoginMethod, LoginPage, LoginRecord, NewSession,
    OpenId, Phone, Session, SessionDigest, SessionToken, UnionId,
};
pub use pg_backend::credentials::{ReplaceError, Replaced, SharedCredentials, StoredCredential};
#[cfg(any(test, feature = "test-server"))]
pub use pg_backend::test_server;
pub use pg_backend::{
    CodeGrant, LockedScene, ModeClaim, NewScene, OidcRecords, PgBackend, PgSettings, Redemption,
    SceneChange, SceneJournal, SceneKey, SceneNotice, SceneRow, SharedLimits,
};
pub use sled_backend::SignatureUse;
pub use sled_backend::{AccessGrant, SledBackend};
pub use store::{BindError, Store, StoreError};
