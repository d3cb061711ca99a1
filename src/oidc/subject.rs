//! Pairwise subject identifiers: each client sees its own `sub` for a user, so two sites
//! can't join their users by it, and the openid itself is never shown. `WXLOGIN_SUBJECT`
//! says what identifies the user: the account's openid, or the Open Platform's unionid, which
//! is one across the operator's accounts and apps.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use wxlogin_storage::{Binding, Store};

use super::keys::KeyError;

const FILE: &str = "pairwise-secret";
/// The database document holding the secret, for every node on PostgreSQL: one `sub` per
/// user and client whichever node answers.
pub const DOCUMENT: &str = "pairwise-secret";
const SECRET_LEN: usize = 32;

/// What a `sub` is derived from (`WXLOGIN_SUBJECT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubjectSource {
    OpenId,
    /// A user without a unionid has no subject: they can't log in to a client.
    UnionId,
}

impl std::str::FromStr for SubjectSource {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "openid" => Ok(SubjectSource::OpenId),
            "unionid" => Ok(SubjectSource::UnionId),
            _ => Err(()),
        }
    }
}

/// `sub` = base64url(HMAC-SHA256(secret, client_id ‖ 0 ‖ openid)), or with unionids
/// HMAC-SHA256(secret, client_id ‖ 0 ‖ `unionid` ‖ 0 ‖ unionid) (never equal to an openid's), with
/// a secret made once and kept in the data directory: stable across logins and restarts,
/// different per client. Deployments that copy the secret (and name clients alike) give a
/// user the same unionid `sub` everywhere.
pub struct PairwiseSubjects {
    secret: [u8; SECRET_LEN],
    source: SubjectSource,
}

impl PairwiseSubjects {
    /// The secret of the database where the store is PostgreSQL, else the one in `dir`; made
    /// on first use.
    pub async fn open(dir: &Path, store: &Store, source: SubjectSource) -> Result<Self, KeyError> {
        let Some(records) = store.oidc_records() else {
            return Self::open_file(dir, source);
        };
        let secret = records
            .update_document(DOCUMENT, |old| {
                Ok::<_, KeyError>(old.is_none().then(|| {
                    let mut secret = vec![0u8; SECRET_LEN];
                    rand::thread_rng().fill_bytes(&mut secret);
                    secret
                }))
            })
            .await?;
        let secret = secret.try_into().map_err(|_| KeyError::Corrupt {
            place: format!("the database's {DOCUMENT} document"),
            problem: format!("not {SECRET_LEN} bytes"),
        })?;
        Ok(Self { secret, source })
    }

    /// The secret in `dir`, for copying into a database; `None` if there is none.
    pub fn file_secret(dir: &Path) -> Result<Option<Vec<u8>>, KeyError> {
        let path = dir.join(FILE);
        match fs::read(&path) {
            Ok(secret) => Ok(Some(secret)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(KeyError::Io { path, source }),
        }
    }

    /// Reads the secret in `dir`, making it on first use.
    fn open_file(dir: &Path, source: SubjectSource) -> Result<Self, KeyError> {
        let path = dir.join(FILE);
        let io = |source| KeyError::Io {
            path: path.clone(),
            source,
        };
        match fs::read(&path) {
            Ok(raw) => {
                let secret = raw.try_into().map_err(|_| KeyError::Corrupt {
                    place: path.display().to_string(),
                    problem: format!("not {SECRET_LEN} bytes"),
                })?;
                Ok(Self { secret, source })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = [0u8; SECRET_LEN];
                rand::thread_rng().fill_bytes(&mut secret);
                // create_new: two starts racing can't each keep a different secret.
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io)?;
                file.write_all(&secret)
                    .and_then(|()| file.sync_all())
                    .map_err(io)?;
                Ok(Self { secret, source })
            }
            Err(e) => Err(io(e)),
        }
    }

    pub fn source(&self) -> SubjectSource {
        self.source
    }

    /// The user of `binding` as `client_id` sees them; `None` with unionids for a user
    /// WeChat has told no unionid of.
    pub fn sub(&self, client_id: &str, binding: &Binding) -> Option<String> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key");
        mac.update(client_id.as_bytes());
        mac.update(&[0]);
        match self.source {
            SubjectSource::OpenId => mac.update(binding.openid.as_str().as_bytes()),
            SubjectSource::UnionId => {
                mac.update(b"unionid\0");
                mac.update(binding.unionid.as_ref()?.as_str().as_bytes());
            }
        }
        Some(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use wxlogin_storage::{OpenId, Phone, UnionId};

    use super::*;

    fn binding(openid: &str, unionid: Option<&str>) -> Binding {
        Binding {
            openid: OpenId::parse(openid).unwrap(),
            phone: Phone::parse("13800138000").unwrap(),
            bound_at: 0,
            unionid: unionid.map(|u| UnionId::parse(u).unwrap()),
            generation: 0,
        }
    }

    #[test]
    fn stable_per_client_and_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let alice = binding("alice", None);
        let first = PairwiseSubjects::open_file(dir.path(), SubjectSource::OpenId).unwrap();
        let again = PairwiseSubjects::open_file(dir.path(), SubjectSource::OpenId).unwrap();
        assert_eq!(first.sub("shop", &alice), again.sub("shop", &alice));
        assert_ne!(first.sub("shop", &alice), first.sub("blog", &alice));
        // The separator keeps ("ab", "c…") and ("a", "bc…") apart.
        assert_ne!(
            first.sub("a", &binding("bc", None)),
            first.sub("ab", &binding("c", None))
        );
    }

    #[test]
    fn unionid_subjects_follow_the_unionid_and_never_equal_an_openids() {
        let dir = tempfile::tempdir().unwrap();
        let by_openid = PairwiseSubjects::open_file(dir.path(), SubjectSource::OpenId).unwrap();
        let by_unionid = PairwiseSubjects::open_file(dir.path(), SubjectSource::UnionId).unwrap();
        // Two accounts' openids of one person, with their one unionid.
        let here = binding("oHere", Some("uPerson"));
        let there = binding("oThere", Some("uPerson"));
        assert_eq!(
            by_unionid.sub("shop", &here),
            by_unionid.sub("shop", &there)
        );
        assert_ne!(by_openid.sub("shop", &here), by_openid.sub("shop", &there));
        // An openid that spells "unionid\0…" can't collide with a unionid subject.
        assert_ne!(
            by_unionid.sub("shop", &here),
            by_openid.sub("shop", &binding("uPerson", None))
        );
        assert_eq!(by_unionid.sub("shop", &binding("oNone", None)), None);
    }
}
