//! wxlogin as a small OpenID Connect provider whose one login method is the WeChat scan.
//!
//! The pieces, free of HTTP: the registered [`clients`], ID-token signing [`keys`], pairwise
//! [`subject`] identifiers, authorization [`codes`], and the request's [`prompt`]. The endpoints are in `http::oidc`.

pub mod clients;
pub mod codes;
pub mod keys;
pub mod prompt;
pub mod subject;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use url::Url;
use wxlogin_storage::{Binding, Store};

use clients::Clients;
use codes::{Codes, Scope};
use keys::{KeyError, KeySet, SigningKeys};
use subject::{PairwiseSubjects, SubjectSource};

/// How long an ID token is valid; a retired signing key stays published this long after.
pub const ID_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Key polls between two purges of expired codes: about an hour.
const CODE_PURGE_POLLS: u64 = 3600 / keys::POLL.as_secs();
/// How long an access token lets its client read `/oauth/userinfo`.
pub const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(3600);

pub struct Provider {
    /// The issuer: `WXLOGIN_PUBLIC_URL`, without a trailing slash.
    pub issuer: String,
    pub clients: Arc<Clients>,
    pub keys: SigningKeys,
    pub subjects: PairwiseSubjects,
    pub codes: Codes,
}

impl Provider {
    /// Opens (making on first start) the signing keys and pairwise secret: in the data
    /// directory, or in the database where the store is PostgreSQL (shared by every node, as
    /// the codes are).
    pub async fn open(
        data_dir: &Path,
        store: &Store,
        public_url: &Url,
        clients: Arc<Clients>,
        code_ttl: Duration,
        subject: SubjectSource,
    ) -> Result<Self, KeyError> {
        let dir = key_dir(data_dir);
        let keys = SigningKeys::open(KeySet::of(&dir, store), &clients.signing_algs()).await?;
        Ok(Self {
            issuer: public_url.as_str().trim_end_matches('/').to_owned(),
            clients,
            keys,
            subjects: PairwiseSubjects::open(&dir, store, subject).await?,
            codes: Codes::new(code_ttl, store),
        })
    }

    /// Keeps up with what other nodes change in the database: key rotations, expired codes.
    /// Returns at once for one node, whose file is looked at on each use.
    pub async fn follow_other_nodes(self: Arc<Self>, store: Store) {
        if store.oidc_records().is_none() {
            return;
        }
        let mut interval = tokio::time::interval(keys::POLL);
        let mut polls: u64 = 0;
        loop {
            interval.tick().await;
            if let Err(e) = self.keys.refresh().await {
                tracing::warn!(error = %e, "reading the signing keys from the database failed");
            }
            polls += 1;
            // Once an hour or so: the codes' purge is off every request's path.
            if polls % CODE_PURGE_POLLS == 0 {
                match self.codes.purge_expired().await {
                    Ok(0) => {}
                    Ok(purged) => tracing::info!(purged, "expired authorization codes removed"),
                    Err(e) => {
                        tracing::error!(error = %e, "purging expired authorization codes failed")
                    }
                }
            }
        }
    }

    /// An absolute URL of one of our endpoints.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
}

/// The provider's secrets in `data_dir`, as the database documents `wxlogin migrate` makes of
/// them: every node then signs and derives `sub`s as this one did.
pub fn secret_documents(data_dir: &Path) -> Result<Vec<(&'static str, Vec<u8>)>, KeyError> {
    let dir = key_dir(data_dir);
    let keys = keys::file_document(&dir)?.map(|keys| (keys::DOCUMENT, keys));
    let secret = PairwiseSubjects::file_secret(&dir)?.map(|secret| (subject::DOCUMENT, secret));
    Ok(keys.into_iter().chain(secret).collect())
}

/// Where the provider's secrets live: `DATA_DIR/oidc`, beside sled's files.
pub fn key_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("oidc")
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the ID token and userinfo both say about the user.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct UserClaims {
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number_verified: Option<bool>,
    /// With the `unionid` scope, once WeChat told it (absent before, and for accounts without
    /// an Open Platform account).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
}

impl Provider {
    /// The user as `client_id` sees them; the phone (E.164, verified by SMS when bound) only
    /// with the `phone` scope, the unionid only with `unionid`. `None` for a user with no
    /// subject (`WXLOGIN_SUBJECT=unionid` and no unionid known).
    pub fn user_claims(
        &self,
        client_id: &str,
        binding: &Binding,
        scope: Scope,
    ) -> Option<UserClaims> {
        let phone = scope
            .phone
            .then(|| format!("+86{}", binding.phone.as_str()));
        Some(UserClaims {
            sub: self.subjects.sub(client_id, binding)?,
            phone_number_verified: phone.as_ref().map(|_| true),
            phone_number: phone,
            unionid: binding
                .unionid
                .as_ref()
                .filter(|_| scope.unionid)
                .map(|u| u.as_str().to_owned()),
        })
    }
}
