//! wxlogin's durable state: who is bound to which phone, live sessions, OpenID Connect access
//! tokens, and the login log.
//!
//! Every method that changes state flushes sled to disk, and syncs its files, before it returns
//! `Ok`, so a success the service reports survives a `kill -9` or a power cut right after;
//! concurrent writers share their flushes (group commit, flush.rs).

mod flush;
mod model;
mod store;

pub use model::{
    constant_time_eq, Binding, LoginCursor, LoginMethod, LoginPage, LoginRecord, OpenId, Phone,
    Session, SessionToken,
};
pub use store::{AccessGrant, BindError, SignatureUse, Store, StoreError};
