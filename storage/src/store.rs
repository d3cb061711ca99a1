//! The handle the rest of wxlogin holds: a [`Backend`] behind an `Arc`, so actors and HTTP
//! never name the backend, and the errors every backend answers with.

use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use crate::backend::Backend;
use crate::pg_backend::credentials::SharedCredentials;
use crate::pg_backend::{
    ModeClaim, OidcRecords, PgBackend, PgSettings, SceneJournal, SharedLimits,
};
use crate::sled_backend::SledBackend;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Writes cannot be made durable now (a full disk, an I/O error, a store being reopened);
    /// nothing was acknowledged, and they may work again shortly.
    #[error("storage is unavailable: {0}")]
    Unavailable(#[source] std::io::Error),
    #[error("storage failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("stored record is unreadable")]
    Corrupt(#[from] postcard::Error),
    #[error("a storage task on a blocking thread failed")]
    TaskFailed,
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("the phone is bound to another WeChat user")]
    PhoneTaken,
    #[error("the WeChat user unfollowed the account since they scanned")]
    Unfollowed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The durable store. Cloning is cheap: every clone shares one backend. Its operations are
/// [`Backend`]'s, each documented with what it guarantees on return.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    /// The same backend when it is PostgreSQL, for what a cluster's nodes share beyond the
    /// interface.
    postgres: Option<PgBackend>,
    /// The limits and filters nodes share; `None` on a store only this node uses.
    shared_limits: Option<SharedLimits>,
    /// The OpenID Connect provider's shared tables: only on PostgreSQL, where nodes share them.
    oidc: Option<OidcRecords>,
    /// Live scenes' rows, with PostgreSQL only: their presence is what makes a node clustered.
    scenes: Option<SceneJournal>,
}

impl Store {
    /// The sled store in `dir`, the default backend.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Ok(Self::new(SledBackend::open(dir)?))
    }

    /// The PostgreSQL store `settings` name, its schema brought up to date.
    pub async fn open_postgres(settings: &PgSettings) -> Result<Self, StoreError> {
        let backend = PgBackend::open(settings).await?;
        Ok(Self {
            shared_limits: Some(backend.shared_limits()),
            oidc: Some(backend.oidc_records()),
            scenes: Some(backend.scene_journal()),
            backend: Arc::new(backend.clone()),
            postgres: Some(backend),
        })
    }

    pub fn new(backend: impl Backend) -> Self {
        Self {
            backend: Arc::new(backend),
            postgres: None,
            shared_limits: None,
            oidc: None,
            scenes: None,
        }
    }

    /// The WeChat credentials the nodes share: only on PostgreSQL, where nodes can be several.
    pub fn shared_credentials(&self) -> Option<SharedCredentials> {
        self.postgres.as_ref().map(PgBackend::shared_credentials)
    }

    /// The cluster's limits and filters when several nodes may share this store (PostgreSQL);
    /// `None` for sled, whose node keeps its own in memory.
    pub fn shared_limits(&self) -> Option<&SharedLimits> {
        self.shared_limits.as_ref()
    }

    /// Where the OpenID Connect provider keeps its codes and secrets for every node; `None`
    /// for one node (sled), which keeps them in memory and in its data directory.
    pub fn oidc_records(&self) -> Option<&OidcRecords> {
        self.oidc.as_ref()
    }

    /// The scenes' rows shared by every node, when the store is PostgreSQL.
    pub fn scene_journal(&self) -> Option<&SceneJournal> {
        self.scenes.as_ref()
    }

    /// Claims a PostgreSQL store for `mode` ([`PgBackend::claim_mode`]); `None` for sled, whose
    /// data directory is marked beside it.
    pub async fn claim_mode(
        &self,
        mode: &str,
        only_if_empty: bool,
    ) -> Option<Result<ModeClaim, StoreError>> {
        Some(
            self.postgres
                .as_ref()?
                .claim_mode(mode, only_if_empty)
                .await,
        )
    }
}

impl Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        &*self.backend
    }
}
