//! ID-token signing keys: ES256 (P-256), generated with the `p256` crate, used through
//! `jsonwebtoken`, kept in `DATA_DIR/oidc/signing-keys.json` (mode 0600).
//!
//! The newest key signs. `wxlogin rotate-key` adds a key and retires the previous one; a retired
//! key stays in the JWKS until every ID token it signed has expired, then the next rotation drops
//! it. A running server notices the file changed on its next use, so rotation needs no restart.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::{unix_now, ID_TOKEN_TTL};

pub const ALGORITHM: Algorithm = Algorithm::ES256;
const FILE: &str = "signing-keys.json";
/// Published past a retired key's last possible token, for clocks that disagree a little.
const RETENTION_MARGIN_SECS: u64 = 300;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a signing-key file ({problem})")]
    Corrupt { path: PathBuf, problem: String },
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<StoredKey>,
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    created_at: u64,
    /// When a newer key took over signing; `None` for the signing key.
    retired_at: Option<u64>,
    /// The private key, PKCS#8 DER, base64.
    pkcs8: String,
}

impl StoredKey {
    fn generate() -> Self {
        let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let der = secret
            .to_pkcs8_der()
            .expect("a fresh P-256 key encodes as PKCS#8");
        let mut kid = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut kid);
        Self {
            kid: URL_SAFE_NO_PAD.encode(kid),
            created_at: unix_now(),
            retired_at: None,
            pkcs8: STANDARD.encode(der.as_bytes()),
        }
    }

    /// Still needed to verify a token it may have signed.
    fn published(&self, now: u64) -> bool {
        self.retired_at
            .is_none_or(|at| at + ID_TOKEN_TTL.as_secs() + RETENTION_MARGIN_SECS > now)
    }
}

/// A key ready to sign, and its public half.
struct LoadedKey {
    kid: String,
    encoding: EncodingKey,
    public: Jwk,
    stored: StoredKey,
}

struct Loaded {
    /// The file's modification time when read: a different one means a rotation happened.
    modified: Option<SystemTime>,
    keys: Vec<LoadedKey>,
}

pub struct SigningKeys {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

impl SigningKeys {
    /// Opens the keys in `dir`, making the first one if there is none.
    pub fn open(dir: &Path) -> Result<Self, KeyError> {
        let path = dir.join(FILE);
        if !path.exists() {
            write(
                &path,
                &KeyFile {
                    keys: vec![StoredKey::generate()],
                },
            )?;
        }
        let loaded = load(&path)?;
        Ok(Self {
            path,
            loaded: Mutex::new(loaded),
        })
    }

    /// Signs `claims` with the newest key.
    pub fn sign(&self, claims: &impl Serialize) -> Result<String, KeyError> {
        self.with_keys(|keys| {
            let key = keys.last().expect("a key file holds at least one key");
            let header = Header {
                kid: Some(key.kid.clone()),
                ..Header::new(ALGORITHM)
            };
            jsonwebtoken::encode(&header, claims, &key.encoding).map_err(|e| KeyError::Corrupt {
                path: self.path.clone(),
                problem: e.to_string(),
            })
        })?
    }

    /// The public keys a relying party may meet in a live token.
    pub fn jwks(&self) -> Result<JwkSet, KeyError> {
        let now = unix_now();
        self.with_keys(|keys| JwkSet {
            keys: keys
                .iter()
                .filter(|k| k.stored.published(now))
                .map(|k| k.public.clone())
                .collect(),
        })
    }

    fn with_keys<T>(&self, f: impl FnOnce(&[LoadedKey]) -> T) -> Result<T, KeyError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if modified(&self.path) != loaded.modified {
            *loaded = load(&self.path)?;
        }
        Ok(f(&loaded.keys))
    }
}

/// Adds a new signing key to the file in `dir`, retires the one before, and drops retired keys
/// no live token can need. Returns the new key's id.
pub fn rotate(dir: &Path) -> Result<String, KeyError> {
    let path = dir.join(FILE);
    let mut file = if path.exists() {
        read(&path)?
    } else {
        KeyFile { keys: Vec::new() }
    };
    let now = unix_now();
    for key in &mut file.keys {
        key.retired_at.get_or_insert(now);
    }
    file.keys.retain(|k| k.published(now));
    let key = StoredKey::generate();
    let kid = key.kid.clone();
    file.keys.push(key);
    write(&path, &file)?;
    Ok(kid)
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read(path: &Path) -> Result<KeyFile, KeyError> {
    let corrupt = |problem: String| KeyError::Corrupt {
        path: path.to_owned(),
        problem,
    };
    let text = fs::read(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })?;
    let file: KeyFile = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
    if file.keys.is_empty() {
        return Err(corrupt("no keys".into()));
    }
    Ok(file)
}

fn load(path: &Path) -> Result<Loaded, KeyError> {
    // Read the time first: a rotation racing this read is then seen on the next use.
    let modified = modified(path);
    let keys = read(path)?
        .keys
        .into_iter()
        .map(|stored| {
            let der = STANDARD.decode(&stored.pkcs8).unwrap_or_default();
            let encoding = EncodingKey::from_ec_der(&der);
            let mut public =
                Jwk::from_encoding_key(&encoding, ALGORITHM).map_err(|e| KeyError::Corrupt {
                    path: path.to_owned(),
                    problem: format!("key {}: {e}", stored.kid),
                })?;
            public.common.key_id = Some(stored.kid.clone());
            public.common.public_key_use = Some(PublicKeyUse::Signature);
            Ok(LoadedKey {
                kid: stored.kid.clone(),
                encoding,
                public,
                stored,
            })
        })
        .collect::<Result<_, KeyError>>()?;
    Ok(Loaded { modified, keys })
}

/// Replaces the file whole (write aside, sync, rename), readable by its owner only.
fn write(path: &Path, file: &KeyFile) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().expect("the key file is in a directory");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    let aside = path.with_extension("json.new");
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&aside)
        .map_err(io)?;
    out.write_all(&serde_json::to_vec_pretty(file).expect("keys serialize"))
        .and_then(|()| out.sync_all())
        .map_err(io)?;
    fs::rename(&aside, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Claims {
        sub: String,
        exp: u64,
    }

    fn verify(token: &str, jwks: &JwkSet) -> Claims {
        let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
        let key = DecodingKey::from_jwk(jwks.find(&kid).expect("kid published")).unwrap();
        let mut validation = Validation::new(ALGORITHM);
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .unwrap()
            .claims
    }

    #[test]
    fn keys_are_made_private_and_survive_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let keys = SigningKeys::open(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let claims = Claims {
            sub: "a".into(),
            exp: unix_now() + 60,
        };
        let before = keys.sign(&claims).unwrap();
        let new_kid = rotate(dir.path()).unwrap();
        let after = keys.sign(&claims).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&after).unwrap().kid,
            Some(new_kid)
        );
        let jwks = keys.jwks().unwrap();
        assert_eq!(jwks.keys.len(), 2);
        assert_eq!(verify(&before, &jwks).sub, "a");
        assert_eq!(verify(&after, &jwks).sub, "a");
    }

    #[test]
    fn long_retired_keys_leave_the_jwks() {
        let dir = tempfile::tempdir().unwrap();
        SigningKeys::open(dir.path()).unwrap();
        let path = dir.path().join(FILE);
        let mut file = read(&path).unwrap();
        file.keys[0].retired_at = Some(unix_now() - ID_TOKEN_TTL.as_secs() - 3600);
        file.keys.push(StoredKey::generate());
        write(&path, &file).unwrap();
        let keys = SigningKeys::open(dir.path()).unwrap();
        assert_eq!(keys.jwks().unwrap().keys.len(), 1);
        rotate(dir.path()).unwrap();
        assert_eq!(read(&path).unwrap().keys.len(), 2);
    }
}
