//! `wxlogin migrate --to postgres://…`: a stopped node's sled data copied whole into an empty
//! PostgreSQL database, so that the same tokens, sessions, consents and login log go on there.
//!
//! Record by record as stored, not through the interface's writes: sessions and access
//! tokens exist only as digests (their bearers hold the tokens), and each record keeps the
//! binding generation it was made under, so what was live stays live and what was ended stays
//! ended. The copy is one transaction: a failure leaves the database empty, fit for another
//! try; a database with anything in it is refused.

use std::fmt;
use std::path::Path;

use tokio::sync::mpsc;

use crate::model::{Binding, LoginRecord, OpenId};
use crate::pg_backend::PgBackend;
use crate::sled_backend::SledBackend;
use crate::{AccessGrant, PgSettings, StoreError};

/// One stored record of any kind, as the copy carries it.
pub(crate) enum Record {
    Binding(Binding),
    Session {
        digest: [u8; 32],
        openid: OpenId,
        created_at: u64,
        expires_at: u64,
        generation: u64,
    },
    /// In each user's time order.
    Login {
        openid: OpenId,
        login: LoginRecord,
    },
    AccessToken {
        digest: [u8; 32],
        grant: AccessGrant,
    },
    Consent {
        openid: OpenId,
        client_id: String,
        scope: String,
        given_at: u64,
        generation: u64,
    },
    Follow {
        openid: OpenId,
        at: u64,
    },
    Unfollow {
        openid: OpenId,
        generation: u64,
        at: Option<u64>,
    },
    /// WeChat's signatures still in a timestamp window: a push redelivered across the move is
    /// still counted once.
    Signature {
        sent_at: u64,
        signature: String,
        body_digest: Vec<u8>,
    },
}

/// Records per batch from the reading thread.
pub(crate) const BATCH: usize = 1000;
pub(crate) type RecordSender = mpsc::Sender<Result<Vec<Record>, StoreError>>;
pub(crate) type RecordStream = mpsc::Receiver<Result<Vec<Record>, StoreError>>;

/// What a migration copied, by kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Copied {
    pub bindings: usize,
    pub sessions: usize,
    pub logins: usize,
    pub access_tokens: usize,
    pub consents: usize,
    pub follows: usize,
    pub unfollows: usize,
    pub signatures: usize,
    /// Named documents given beside the store's records (the provider's secrets).
    pub documents: usize,
}

impl Copied {
    pub(crate) fn count(&mut self, record: &Record) {
        let kind = match record {
            Record::Binding(_) => &mut self.bindings,
            Record::Session { .. } => &mut self.sessions,
            Record::Login { .. } => &mut self.logins,
            Record::AccessToken { .. } => &mut self.access_tokens,
            Record::Consent { .. } => &mut self.consents,
            Record::Follow { .. } => &mut self.follows,
            Record::Unfollow { .. } => &mut self.unfollows,
            Record::Signature { .. } => &mut self.signatures,
        };
        *kind += 1;
    }
}

impl fmt::Display for Copied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bindings, {} sessions, {} logins, {} access tokens, {} consents, \
             {} follows, {} unfollows, {} callback signatures, {} documents",
            self.bindings,
            self.sessions,
            self.logins,
            self.access_tokens,
            self.consents,
            self.follows,
            self.unfollows,
            self.signatures,
            self.documents
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot open the sled store in {dir} (is a wxlogin still running on it?): {source}")]
    Source { dir: String, source: StoreError },
    #[error("cannot open the database: {0}")]
    Target(StoreError),
    #[error("the database already holds {0}: migrate into an empty one")]
    NotEmpty(String),
    #[error("copying failed, and nothing was copied: {0}")]
    Copy(#[from] StoreError),
}

/// Copies the sled store in `dir` and `documents` (name, body) into the empty database
/// `target` names, in one transaction.
pub async fn sled_to_postgres(
    dir: &Path,
    target: &PgSettings,
    documents: &[(&str, Vec<u8>)],
) -> Result<Copied, MigrateError> {
    let source = SledBackend::open(dir).map_err(|source| MigrateError::Source {
        dir: dir.display().to_string(),
        source,
    })?;
    let target = PgBackend::open(target)
        .await
        .map_err(MigrateError::Target)?;
    copy(&source, &target, documents).await
}

pub(crate) async fn copy(
    source: &SledBackend,
    target: &PgBackend,
    documents: &[(&str, Vec<u8>)],
) -> Result<Copied, MigrateError> {
    let records = source.export();
    target.import(records, documents).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::conformance::log_in;
    use crate::model::{LoginMethod, Phone, SessionToken};
    use crate::test_server::TestServer;
    use crate::{Backend, BindError};

    fn openid(raw: &str) -> OpenId {
        OpenId::parse(raw).unwrap()
    }

    fn phone(raw: &str) -> Phone {
        Phone::parse(raw).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
    async fn a_sled_store_copied_into_postgres_goes_on_there_and_a_second_copy_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sled = SledBackend::open(dir.path()).unwrap();
        let alice = sled
            .bind(&openid("alice"), &phone("13800000001"), 0)
            .await
            .unwrap();
        let session = log_in(
            &sled,
            &alice,
            Duration::from_secs(3600),
            LoginMethod::Bind,
            "10.0.0.1",
        )
        .await
        .unwrap();
        log_in(
            &sled,
            &alice,
            Duration::from_secs(3600),
            LoginMethod::Scan,
            "10.0.0.2",
        )
        .await
        .unwrap();
        let access = sled
            .issue_access_token(&alice, "shop", "openid phone", Duration::from_secs(3600))
            .await
            .unwrap();
        sled.remember_consent(&alice, "shop", "openid phone")
            .await
            .unwrap();
        // Bob bound, then unfollowed: his old session must stay dead, his phone free.
        let bob = sled
            .bind(&openid("bob"), &phone("13800000002"), 0)
            .await
            .unwrap();
        let bobs = log_in(
            &sled,
            &bob,
            Duration::from_secs(3600),
            LoginMethod::Bind,
            "10.0.0.3",
        )
        .await
        .unwrap();
        sled.record_follow(&openid("bob"), 100).await.unwrap();
        sled.unfollow(&openid("bob"), 200).await.unwrap();
        let bob_generation = sled.follow_generation(&openid("bob")).await.unwrap();
        sled.use_signature("abc", 1, [7; 32]).await.unwrap();
        drop(sled);

        let server = TestServer::start();
        let settings = PgSettings {
            url: server.new_database().await,
            pool_size: 2,
            ca_file: None,
        };
        let documents = [("signing-keys", b"{}".to_vec())];
        let copied = sled_to_postgres(dir.path(), &settings, &documents)
            .await
            .unwrap();
        assert_eq!(
            copied,
            Copied {
                bindings: 1,
                sessions: 2,
                logins: 3,
                access_tokens: 1,
                consents: 1,
                follows: 1,
                unfollows: 1,
                signatures: 1,
                documents: 1,
            }
        );

        let pg = PgBackend::open(&settings).await.unwrap();
        let moved = pg.binding(&openid("alice")).await.unwrap().unwrap();
        assert_eq!(moved, alice, "bound_at and generation kept");
        assert_eq!(pg.session(&session).await.unwrap().unwrap().binding, alice);
        assert!(pg.session(&bobs).await.unwrap().is_none());
        assert!(pg
            .session(&SessionToken::generate())
            .await
            .unwrap()
            .is_none());
        let (grant, _) = pg.access_token(&access).await.unwrap().unwrap();
        assert_eq!(
            (grant.client_id.as_str(), grant.scope.as_str()),
            ("shop", "openid phone")
        );
        assert_eq!(
            pg.consent(&alice, "shop").await.unwrap().as_deref(),
            Some("openid phone")
        );
        let logins = pg.logins(&openid("alice"), 10, None).await.unwrap().records;
        let ips: Vec<_> = logins.iter().map(|l| l.client_ip.as_str()).collect();
        assert_eq!(ips, ["10.0.0.2", "10.0.0.1"], "newest first");
        assert_eq!(
            pg.follow_generation(&openid("bob")).await.unwrap(),
            bob_generation
        );
        assert_eq!(pg.unfollowed_at(&openid("bob")).await.unwrap(), Some(200));
        assert_eq!(
            pg.use_signature("abc", 1, [8; 32]).await.unwrap(),
            crate::SignatureUse::OtherBody
        );
        assert!(matches!(
            pg.bind(&openid("carol"), &phone("13800000001"), 0).await,
            Err(BindError::PhoneTaken)
        ));
        // New generations come after every copied one: a rebind ends the copied session.
        let rebound = pg
            .bind(&openid("alice"), &phone("13800000003"), 0)
            .await
            .unwrap();
        assert!(rebound.generation > alice.generation.max(bob_generation));
        assert!(pg.session(&session).await.unwrap().is_none());

        let again = sled_to_postgres(dir.path(), &settings, &documents).await;
        assert!(matches!(again, Err(MigrateError::NotEmpty(_))), "{again:?}");
    }
}
