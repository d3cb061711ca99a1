//! The handle the rest of wxlogin holds: a [`Backend`] behind an `Arc`, so actors and HTTP
//! never name the backend, and the errors every backend answers with.

use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use crate::backend::Backend;
use crate::pg_backend::{PgBackend, PgSettings, SceneJournal};
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
            scenes: Some(backend.scene_journal()),
            backend: Arc::new(backend),
        })
    }

    pub fn new(backend: impl Backend) -> Self {
        Self {
            backend: Arc::new(backend),
            scenes: None,
        }
    }

    /// The scenes' rows shared by every node, when the store is PostgreSQL.
    pub fn scene_journal(&self) -> Option<&SceneJournal> {
        self.scenes.as_ref()
    }
}

impl Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        &*self.backend
    }
}
