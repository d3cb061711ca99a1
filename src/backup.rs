//! Backups of the bindings as JSON lines, one `{"openid", "phone", "bound_at"}` per line:
//! written by `GET /admin/backup`, loaded by `wxlogin restore FILE`.
//!
//! Sessions and the login log are not in a backup: after a restore, users scan once more.

use std::io::BufRead;
use std::path::Path;

use serde::{Deserialize, Serialize};
use wxlogin_storage::{BindError, Binding, OpenId, Phone, Store, StoreError};

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct BindingLine {
    pub openid: String,
    pub phone: String,
    pub bound_at: u64,
    /// Shown when known. A restore does not load it: it is fetched again at the next scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
}

impl From<&Binding> for BindingLine {
    fn from(binding: &Binding) -> Self {
        Self {
            openid: binding.openid.as_str().to_owned(),
            phone: binding.phone.as_str().to_owned(),
            bound_at: binding.bound_at,
            unionid: binding.unionid.as_ref().map(|u| u.as_str().to_owned()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("cannot read the backup: {0}")]
    Read(#[from] std::io::Error),
    #[error("the store already has bindings; restore into an empty one")]
    NotEmpty,
    #[error("line {line}: {problem}")]
    Line { line: usize, problem: String },
    #[error("writing the store failed: {0}")]
    Store(#[from] StoreError),
}

/// Loads the backup at `file` into the empty `store`; returns how many bindings.
pub async fn restore(store: &Store, file: &Path) -> Result<usize, RestoreError> {
    if !store.has_no_bindings().await? {
        return Err(RestoreError::NotEmpty);
    }
    let reader = std::io::BufReader::new(std::fs::File::open(file)?);
    let mut restored = 0;
    for (index, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let fail = |problem: String| RestoreError::Line {
            line: index + 1,
            problem,
        };
        let record: BindingLine = serde_json::from_str(&line).map_err(|e| fail(e.to_string()))?;
        let openid = OpenId::parse(&record.openid).ok_or_else(|| fail("invalid openid".into()))?;
        let phone = Phone::parse(&record.phone).ok_or_else(|| fail("invalid phone".into()))?;
        store
            .restore_binding(&openid, &phone, record.bound_at)
            .await
            .map_err(|e| match e {
                BindError::PhoneTaken => fail(format!("phone {} appears twice", record.phone)),
                BindError::Unfollowed => fail(e.to_string()),
                BindError::Store(e) => RestoreError::Store(e),
            })?;
        restored += 1;
    }
    store.flush().await?;
    Ok(restored)
}
