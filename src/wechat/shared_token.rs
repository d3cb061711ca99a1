//! One access token (and one JS-SDK ticket) for a cluster of nodes on PostgreSQL.
//!
//! A classic `cgi-bin/token` fetch invalidates the token other servers of the account hold, so
//! nodes that each fetched their own would keep throwing each other's away. [`SharedSource`]
//! wraps a [`TokenSource`]: each fetch the token actor asks for goes through the database's
//! row for that kind ([`SharedCredentials::replace`]), which fetches only if the row still
//! holds the version this node wants replaced (or nothing usable), one node at a time. So
//! every node uses the current value, one fetch per expiry or refusal is made cluster-wide,
//! and a node whose copy is older than the row takes the row's instead of fetching. The
//! actor still caches the value: WeChat calls read no database.
//!
//! Token-center callers' reports ([`wxlogin_actors::Refresh`]) replace one value per
//! [`REPORTED_REFRESH_GAP`] for the whole cluster, not per node: a row replaced less than that
//! long ago, with no refresh ahead of expiry due yet, is only replaced when WeChat refused it.
//!
//! On one node (sled) there is no row: the wrapped source fetches on its own, as before.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use wxlogin_actors::{
    AccessToken, Fetched, Fetching, TokenError, TokenSource, REPORTED_REFRESH_GAP,
};
use wxlogin_storage::{ReplaceError, Replaced, SharedCredentials, StoredCredential};

use super::api::JsapiTicket;

/// A credential as its row holds it.
pub trait StoredValue: Sized {
    /// The row's `kind`.
    const KIND: &'static str;

    fn stored(&self) -> &str;
    fn from_stored(value: &str) -> Self;
}

impl StoredValue for AccessToken {
    const KIND: &'static str = "access_token";

    fn stored(&self) -> &str {
        self.as_str()
    }

    fn from_stored(value: &str) -> Self {
        Self::new(value)
    }
}

impl StoredValue for JsapiTicket {
    const KIND: &'static str = "jsapi_ticket";

    fn stored(&self) -> &str {
        self.as_str()
    }

    fn from_stored(value: &str) -> Self {
        Self::new(value)
    }
}

/// `S`, its fetches shared with the other nodes when the store is PostgreSQL.
pub struct SharedSource<S> {
    source: Rc<S>,
    /// The rows and the account whose row this is; `None` on one node.
    shared: Option<(SharedCredentials, Rc<str>)>,
    /// The row version of the value last handed to the token actor: the one it asks to have
    /// replaced when it fetches again.
    held: Rc<Cell<Option<i64>>>,
}

impl<S> SharedSource<S> {
    /// `source`, shared through `appid`'s row when `credentials` are given.
    pub fn new(source: S, credentials: Option<SharedCredentials>, appid: &str) -> Self {
        Self {
            source: Rc::new(source),
            shared: credentials.map(|credentials| (credentials, appid.into())),
            held: Rc::default(),
        }
    }
}

impl<S> TokenSource for SharedSource<S>
where
    S: TokenSource,
    S::Token: StoredValue,
{
    type Token = S::Token;

    fn fetch(&self, after_rejection: bool) -> Fetching<S::Token> {
        let Some((credentials, appid)) = self.shared.clone() else {
            return self.source.fetch(after_rejection);
        };
        let (source, held) = (self.source.clone(), self.held.clone());
        Box::pin(async move {
            let fetch = || async {
                let fetched = source.fetch(after_rejection).await?;
                Ok((fetched.token.stored().to_owned(), fetched.expires_in))
            };
            let kind = S::Token::KIND;
            let held_version = held.get();
            let replace_it = |row: &StoredCredential| {
                Some(row.version) == held_version && (after_rejection || !just_replaced(row))
            };
            let replaced = credentials
                .replace(&appid, kind, replace_it, fetch)
                .await
                .map_err(|e| match e {
                    ReplaceError::Store(e) => TokenError::new(e),
                    ReplaceError::Fetch(e) => e,
                })?;
            if let Replaced::Found(found) = &replaced {
                tracing::info!(
                    kind,
                    version = found.version,
                    "taken from the database, where another node put it: nothing fetched"
                );
            }
            let credential = replaced.credential();
            held.set(Some(credential.version));
            Ok(Fetched {
                token: S::Token::from_stored(&credential.value),
                expires_in: credential.expires_in,
            })
        })
    }

    fn refused_early(&self, age: Duration, lifetime: Duration) {
        self.source.refused_early(age, lifetime);
    }
}

/// Replaced less than [`REPORTED_REFRESH_GAP`] ago, and before half its lifetime (when the
/// token actor's refresh ahead of expiry comes due at the latest): only a report can ask for
/// it to be replaced so soon.
fn just_replaced(row: &StoredCredential) -> bool {
    row.age < REPORTED_REFRESH_GAP && row.age < row.expires_in
}
