//! ID-token signing keys, kept in `DATA_DIR/oidc/signing-keys.json` (mode 0600) and used through
//! `jsonwebtoken`: ES256 (P-256, made by `p256`) for every client by default, and RS256 (RSA
//! 2048, made by `rsa`) when some client registers `id_token_signed_response_alg = "RS256"`.
//!
//! Rotation publishes first and signs later: `wxlogin rotate-key` adds a key of each algorithm in
//! the file as the *next* key, in the JWKS at once but signing only from [`ROLLOVER`] later, when
//! every relying party that cached the JWKS before the rotation has fetched it again. From then on
//! the newest key of each algorithm whose time has come signs; the one before is retired then and
//! stays in the JWKS until every ID token it signed has expired, and the next rotation drops it.
//! A running server notices the file changed on its next use, so rotation needs no restart.
//!
//! Several nodes (PostgreSQL) keep the same JSON document in the database instead
//! ([`KeySet::Database`]), so every node signs with keys every node publishes; each polls the
//! document's version every [`POLL`], far within the rollover, so a rotation reaches every
//! JWKS before its key signs anywhere.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand::rngs::OsRng;
use rand::RngCore;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::RsaPrivateKey;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wxlogin_storage::{OidcRecords, Store, StoreError};

use super::{unix_now, ID_TOKEN_TTL};

const FILE: &str = "signing-keys.json";
/// The database document holding what the file holds.
pub const DOCUMENT: &str = "signing-keys";
/// How often a node on PostgreSQL looks for a rotation made elsewhere.
pub const POLL: Duration = Duration::from_secs(2);
const RSA_BITS: usize = 2048;
/// Published past a retired key's last possible token, for clocks that disagree a little.
const RETENTION_MARGIN_SECS: u64 = 300;
/// How long a relying party may cache the JWKS (its `Cache-Control: max-age`).
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(300);
/// From a rotation until its new key signs: the JWKS cache lifetime, and a margin for a relying
/// party that fetched the JWKS just before the rotation and for clocks that disagree.
pub const ROLLOVER: Duration = Duration::from_secs(JWKS_MAX_AGE.as_secs() + 60);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{place}: not a signing-key file ({problem})")]
    Corrupt { place: String, problem: String },
    #[error("the database: {0}")]
    Database(#[from] StoreError),
}

/// Where the key set is kept: a file in the data directory (one node), or a database
/// document every node reads (several nodes on PostgreSQL).
#[derive(Clone)]
pub enum KeySet {
    /// The file's directory.
    File(PathBuf),
    Database(OidcRecords),
}

/// What tells a changed key set: the file's modification time, or the document's version.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    Modified(Option<SystemTime>),
    Row(Option<i64>),
}

impl KeySet {
    /// The database's where the store is PostgreSQL, else the file in `dir`.
    pub fn of(dir: &Path, store: &Store) -> Self {
        match store.oidc_records() {
            Some(records) => Self::Database(records.clone()),
            None => Self::File(dir.to_owned()),
        }
    }

    fn place(&self) -> String {
        match self {
            Self::File(dir) => dir.join(FILE).display().to_string(),
            Self::Database(_) => format!("the database's {DOCUMENT} document"),
        }
    }

    fn corrupt(&self, problem: String) -> KeyError {
        KeyError::Corrupt {
            place: self.place(),
            problem,
        }
    }

    /// Changes the set by `change` (returning whether it changed anything, and what to
    /// return), one change at a time; a set that does not exist yet starts empty.
    async fn change<T: Send>(
        &self,
        change: impl FnOnce(&mut KeyFile) -> (bool, T) + Send,
    ) -> Result<T, KeyError> {
        match self {
            Self::File(dir) => {
                let path = dir.join(FILE);
                let mut file = read_or_empty(&path)?;
                let (changed, answer) = change(&mut file);
                if changed {
                    write(&path, &file)?;
                }
                Ok(answer)
            }
            Self::Database(records) => {
                let mut answer = None;
                records
                    .update_document(DOCUMENT, |old| {
                        let mut file = match old {
                            Some(raw) => parse(raw, self)?,
                            None => KeyFile::default(),
                        };
                        let (changed, made) = change(&mut file);
                        answer = Some(made);
                        Ok::<_, KeyError>(changed.then(|| to_json(&file)))
                    })
                    .await?;
                Ok(answer.expect("the change ran"))
            }
        }
    }

    async fn version(&self) -> Result<Version, KeyError> {
        Ok(match self {
            Self::File(dir) => Version::Modified(modified(&dir.join(FILE))),
            Self::Database(records) => Version::Row(records.document_version(DOCUMENT).await?),
        })
    }

    async fn load(&self) -> Result<Loaded, KeyError> {
        match self {
            Self::File(dir) => load(&dir.join(FILE), self),
            Self::Database(records) => {
                let (version, raw) = records
                    .document(DOCUMENT)
                    .await?
                    .ok_or_else(|| self.corrupt("no keys".into()))?;
                Ok(Loaded {
                    version: Version::Row(Some(version)),
                    keys: loaded_keys(parse(&raw, self)?, self)?,
                })
            }
        }
    }
}

/// An ID-token signing algorithm a client may register (`id_token_signed_response_alg`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SigningAlg {
    #[default]
    ES256,
    RS256,
}

impl SigningAlg {
    /// What discovery lists: Discovery §3 requires RS256; a client gets it by registering it.
    pub const ALL: [Self; 2] = [Self::ES256, Self::RS256];

    fn jwt(self) -> Algorithm {
        match self {
            Self::ES256 => Algorithm::ES256,
            Self::RS256 => Algorithm::RS256,
        }
    }

    /// A new private key, PKCS#8 DER.
    fn generate(self) -> Vec<u8> {
        let der = match self {
            Self::ES256 => p256::SecretKey::random(&mut OsRng).to_pkcs8_der(),
            Self::RS256 => RsaPrivateKey::new(&mut OsRng, RSA_BITS)
                .expect("RSA key generation")
                .to_pkcs8_der(),
        };
        der.expect("a fresh key encodes as PKCS#8")
            .as_bytes()
            .to_vec()
    }

    fn encoding_key(self, pkcs8: &[u8]) -> Result<EncodingKey, String> {
        match self {
            Self::ES256 => Ok(EncodingKey::from_ec_der(pkcs8)),
            // jsonwebtoken takes RSA private keys as PKCS#1.
            Self::RS256 => RsaPrivateKey::from_pkcs8_der(pkcs8)
                .and_then(|key| Ok(key.to_pkcs1_der()?))
                .map(|der| EncodingKey::from_rsa_der(der.as_bytes()))
                .map_err(|e| e.to_string()),
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<StoredKey>,
}

impl KeyFile {
    /// The algorithms with a key in the file, each once.
    fn algs(&self) -> BTreeSet<SigningAlg> {
        self.keys.iter().map(|k| k.alg).collect()
    }
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredKey {
    /// Absent in files written before RS256: those keys are ES256.
    #[serde(default)]
    alg: SigningAlg,
    kid: String,
    created_at: u64,
    /// When it starts signing; absent in files from before rollovers: at once.
    #[serde(default)]
    signs_from: u64,
    /// When a newer key takes (or took) over signing; `None` for the newest key.
    retired_at: Option<u64>,
    /// The private key, PKCS#8 DER, base64.
    pkcs8: String,
}

impl StoredKey {
    /// A new key of `alg` that signs from `signs_from` (unix seconds) on.
    fn generate(alg: SigningAlg, signs_from: u64) -> Self {
        let mut kid = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut kid);
        Self {
            alg,
            kid: URL_SAFE_NO_PAD.encode(kid),
            created_at: unix_now(),
            signs_from,
            retired_at: None,
            pkcs8: STANDARD.encode(alg.generate()),
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
    encoding: EncodingKey,
    public: Jwk,
    stored: StoredKey,
}

struct Loaded {
    /// The set's version when read: a different one means a rotation happened.
    version: Version,
    keys: Vec<LoadedKey>,
}

pub struct SigningKeys {
    set: KeySet,
    loaded: Mutex<Loaded>,
}

/// Adds a key of each algorithm in `algs` the set has none of; whether it added any.
fn add_missing(file: &mut KeyFile, algs: &BTreeSet<SigningAlg>) -> bool {
    let missing: Vec<_> = algs
        .difference(&file.algs())
        .map(|&alg| StoredKey::generate(alg, 0))
        .collect();
    let added = !missing.is_empty();
    file.keys.extend(missing);
    added
}

impl SigningKeys {
    /// Opens the keys in `set`, making one of each algorithm in `algs` that has none yet.
    pub async fn open(set: KeySet, algs: &BTreeSet<SigningAlg>) -> Result<Self, KeyError> {
        let algs = algs.clone();
        set.change(move |file| (add_missing(file, &algs), ()))
            .await?;
        let loaded = set.load().await?;
        Ok(Self {
            set,
            loaded: Mutex::new(loaded),
        })
    }

    /// Signs `claims` with the newest key of `alg` whose time to sign has come.
    pub fn sign(&self, alg: SigningAlg, claims: &impl Serialize) -> Result<String, KeyError> {
        self.sign_at(unix_now(), alg, claims)
    }

    fn sign_at(
        &self,
        now: u64,
        alg: SigningAlg,
        claims: &impl Serialize,
    ) -> Result<String, KeyError> {
        self.with_keys(|keys| {
            let key = keys
                .iter()
                .rev()
                .find(|k| k.stored.alg == alg && k.stored.signs_from <= now)
                .ok_or_else(|| self.set.corrupt(format!("no {alg:?} key")))?;
            let header = Header {
                kid: Some(key.stored.kid.clone()),
                ..Header::new(alg.jwt())
            };
            jsonwebtoken::encode(&header, claims, &key.encoding)
                .map_err(|e| self.set.corrupt(e.to_string()))
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

    /// The claims of `token` if one of the keys we publish signed it and `issuer` issued it,
    /// expired or not: RP-Initiated Logout accepts an expired `id_token_hint`. The audience is
    /// the caller's to check.
    pub fn verify_ignoring_expiry<T: DeserializeOwned>(
        &self,
        token: &str,
        issuer: &str,
    ) -> Option<T> {
        let kid = jsonwebtoken::decode_header(token).ok()?.kid?;
        let now = unix_now();
        self.with_keys(|keys| {
            let key = keys
                .iter()
                .find(|k| k.stored.kid == kid && k.stored.published(now))?;
            let decoding = DecodingKey::from_jwk(&key.public).ok()?;
            let mut validation = Validation::new(key.stored.alg.jwt());
            validation.validate_exp = false;
            validation.validate_aud = false;
            validation.set_issuer(&[issuer]);
            jsonwebtoken::decode(token, &decoding, &validation)
                .ok()
                .map(|data| data.claims)
        })
        .ok()
        .flatten()
    }

    /// The file is looked at on each use; the database's document by [`SigningKeys::refresh`].
    fn with_keys<T>(&self, f: impl FnOnce(&[LoadedKey]) -> T) -> Result<T, KeyError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let KeySet::File(dir) = &self.set {
            let path = dir.join(FILE);
            if Version::Modified(modified(&path)) != loaded.version {
                *loaded = load(&path, &self.set)?;
            }
        }
        Ok(f(&loaded.keys))
    }

    /// Reloads the database's key set if it changed since it was read (a rotation on any
    /// node). For the file, [`SigningKeys::with_keys`] does it.
    pub async fn refresh(&self) -> Result<(), KeyError> {
        if matches!(self.set, KeySet::File(_)) {
            return Ok(());
        }
        let version = self.set.version().await?;
        let current = self
            .loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .version;
        if version != current {
            let fresh = self.set.load().await?;
            *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
        }
        Ok(())
    }
}

/// Adds a next signing key of each algorithm in `set` (ES256 when there is none), published
/// now and signing from [`ROLLOVER`] on, when the keys before it retire; drops retired keys no
/// live token can need. Returns the new keys' algorithms and ids.
pub async fn rotate(set: &KeySet) -> Result<Vec<(SigningAlg, String)>, KeyError> {
    set.change(|file| (true, rotate_keys(file))).await
}

fn rotate_keys(file: &mut KeyFile) -> Vec<(SigningAlg, String)> {
    let mut algs = file.algs();
    if algs.is_empty() {
        algs.insert(SigningAlg::default());
    }
    let now = unix_now();
    let rolled_over = now + ROLLOVER.as_secs();
    // Where no key of an algorithm signs yet (a rotation before the first start), no relying
    // party can hold an older one: the new key signs at once.
    let signs_from = |alg| {
        let signing = file
            .keys
            .iter()
            .any(|k| k.alg == alg && k.signs_from <= now);
        if signing {
            rolled_over
        } else {
            now
        }
    };
    let new: Vec<_> = algs
        .into_iter()
        .map(|alg| StoredKey::generate(alg, signs_from(alg)))
        .collect();
    for key in &mut file.keys {
        let next = new.iter().find(|n| n.alg == key.alg);
        key.retired_at
            .get_or_insert(next.map_or(rolled_over, |n| n.signs_from));
    }
    file.keys.retain(|k| k.published(now));
    let ids = new.iter().map(|k| (k.alg, k.kid.clone())).collect();
    file.keys.extend(new);
    ids
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// A key set from its JSON, as the file and the database document hold it.
fn parse(raw: &[u8], set: &KeySet) -> Result<KeyFile, KeyError> {
    let file: KeyFile = serde_json::from_slice(raw).map_err(|e| set.corrupt(e.to_string()))?;
    if file.keys.is_empty() {
        return Err(set.corrupt("no keys".into()));
    }
    Ok(file)
}

fn to_json(file: &KeyFile) -> Vec<u8> {
    serde_json::to_vec_pretty(file).expect("keys serialize")
}

fn read(path: &Path, set: &KeySet) -> Result<KeyFile, KeyError> {
    let text = fs::read(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, set)
}

fn read_or_empty(path: &Path) -> Result<KeyFile, KeyError> {
    if path.exists() {
        let set = KeySet::File(path.parent().expect("in a directory").to_owned());
        read(path, &set)
    } else {
        Ok(KeyFile::default())
    }
}

/// The key file `dir` holds, as JSON, for copying into a database; `None` if there is none.
pub fn file_document(dir: &Path) -> Result<Option<Vec<u8>>, KeyError> {
    let path = dir.join(FILE);
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(to_json(&read(&path, &KeySet::File(dir.to_owned()))?)))
}

fn load(path: &Path, set: &KeySet) -> Result<Loaded, KeyError> {
    // Read the time first: a rotation racing this read is then seen on the next use.
    let version = Version::Modified(modified(path));
    Ok(Loaded {
        version,
        keys: loaded_keys(read(path, set)?, set)?,
    })
}

fn loaded_keys(file: KeyFile, set: &KeySet) -> Result<Vec<LoadedKey>, KeyError> {
    file.keys
        .into_iter()
        .map(|stored| {
            let corrupt = |problem: String| set.corrupt(format!("key {}: {problem}", stored.kid));
            let der = STANDARD.decode(&stored.pkcs8).unwrap_or_default();
            let encoding = stored.alg.encoding_key(&der).map_err(corrupt)?;
            let mut public = Jwk::from_encoding_key(&encoding, stored.alg.jwt())
                .map_err(|e| corrupt(e.to_string()))?;
            public.common.key_id = Some(stored.kid.clone());
            public.common.public_key_use = Some(PublicKeyUse::Signature);
            Ok(LoadedKey {
                encoding,
                public,
                stored,
            })
        })
        .collect()
}

/// Replaces the file whole, readable by its owner only: the service's user, even when root
/// rotates the keys.
fn write(path: &Path, file: &KeyFile) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().expect("the key file is in a directory");
    if !dir.exists() {
        make_dir(dir).map_err(io)?;
    }
    crate::files::replace(path, &to_json(file), 0o600).map_err(io)
}

/// Makes the key directory, private, with the owner and group of the data directory it is in.
fn make_dir(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let parent = dir
        .parent()
        .expect("the key directory is in the data directory");
    let owner = fs::metadata(parent)?;
    let made = fs::metadata(dir)?;
    if (made.uid(), made.gid()) != (owner.uid(), owner.gid()) {
        std::os::unix::fs::chown(dir, Some(owner.uid()), Some(owner.gid()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use SigningAlg::{ES256, RS256};

    #[derive(Serialize, Deserialize)]
    struct Claims {
        sub: String,
        exp: u64,
    }

    fn claims() -> Claims {
        Claims {
            sub: "a".into(),
            exp: unix_now() + 60,
        }
    }

    /// Verifies `token` by the key its `kid` names, for the algorithm that key is published for.
    fn verify(token: &str, jwks: &JwkSet) -> Claims {
        let header = jsonwebtoken::decode_header(token).unwrap();
        let jwk = jwks.find(&header.kid.unwrap()).expect("kid published");
        assert_eq!(
            jwk.common.key_algorithm.unwrap().to_string(),
            format!("{:?}", header.alg)
        );
        let mut validation = Validation::new(header.alg);
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .unwrap()
            .claims
    }

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn open_in(dir: &Path, algs: &BTreeSet<SigningAlg>) -> Result<SigningKeys, KeyError> {
        block_on(SigningKeys::open(KeySet::File(dir.to_owned()), algs))
    }

    fn rotate_in(dir: &Path) -> Result<Vec<(SigningAlg, String)>, KeyError> {
        block_on(rotate(&KeySet::File(dir.to_owned())))
    }

    fn read_file(path: &Path) -> Result<KeyFile, KeyError> {
        read(path, &KeySet::File(path.parent().unwrap().to_owned()))
    }

    fn kid(token: &str) -> Option<String> {
        jsonwebtoken::decode_header(token).unwrap().kid
    }

    /// A moment when a rotation made now has rolled over.
    fn rolled_over() -> u64 {
        unix_now() + ROLLOVER.as_secs()
    }

    #[test]
    fn a_rotation_before_the_first_start_signs_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let new = rotate_in(dir.path()).unwrap();
        let keys = open_in(dir.path(), &[ES256].into()).unwrap();
        let token = keys.sign(ES256, &claims()).unwrap();
        assert_eq!(kid(&token), Some(new[0].1.clone()));
        // And a second rotation then rolls over as usual.
        let next = rotate_in(dir.path()).unwrap();
        assert_eq!(
            kid(&keys.sign(ES256, &claims()).unwrap()),
            Some(new[0].1.clone())
        );
        let later = keys.sign_at(rolled_over(), ES256, &claims()).unwrap();
        assert_eq!(kid(&later), Some(next[0].1.clone()));
    }

    #[test]
    fn a_rotation_publishes_the_next_key_at_once_and_signs_with_it_after_the_rollover() {
        let dir = tempfile::tempdir().unwrap();
        let keys = open_in(dir.path(), &[ES256].into()).unwrap();
        let current = kid(&keys.sign(ES256, &claims()).unwrap());
        let cached = keys.jwks().unwrap();
        let new = rotate_in(dir.path()).unwrap();
        let next = Some(new[0].1.clone());
        assert!(keys.jwks().unwrap().find(next.as_ref().unwrap()).is_some());

        // Until the rollover the current key signs: a relying party that cached the JWKS just
        // before the rotation still verifies every new token. (The rollover as written, not as
        // computed here: a second may have passed since.)
        let file = read_file(&dir.path().join(FILE)).unwrap();
        let rollover = file.keys.iter().find(|k| Some(&k.kid) == next.as_ref());
        let rollover = rollover.unwrap().signs_from;
        let now = unix_now();
        assert!(rollover >= now + ROLLOVER.as_secs() - 1);
        for at in [now, now + JWKS_MAX_AGE.as_secs(), rollover - 1] {
            let token = keys.sign_at(at, ES256, &claims()).unwrap();
            assert_eq!(kid(&token), current);
            assert_eq!(verify(&token, &cached).sub, "a");
        }
        let token = keys.sign_at(rollover, ES256, &claims()).unwrap();
        assert_eq!(kid(&token), next);

        // The key that signed until the rollover is published until its last token expires.
        let file = read_file(&dir.path().join(FILE)).unwrap();
        let retired = file.keys.iter().find(|k| Some(&k.kid) == current.as_ref());
        let retired = retired.unwrap();
        let last_token_expires = rollover + ID_TOKEN_TTL.as_secs();
        assert!(retired.published(last_token_expires));
        assert!(!retired.published(last_token_expires + RETENTION_MARGIN_SECS));
    }

    #[derive(Serialize, Deserialize)]
    struct Issued {
        iss: String,
        sub: String,
        exp: u64,
    }

    #[test]
    fn only_our_tokens_verify_expired_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let keys = open_in(dir.path(), &[ES256, RS256].into()).unwrap();
        let issued = |exp| Issued {
            iss: "https://us".into(),
            sub: "a".into(),
            exp,
        };
        for alg in [ES256, RS256] {
            let expired = keys.sign(alg, &issued(1)).unwrap();
            let read: Issued = keys.verify_ignoring_expiry(&expired, "https://us").unwrap();
            assert_eq!(read.sub, "a");
            assert!(keys
                .verify_ignoring_expiry::<Issued>(&expired, "https://them")
                .is_none());
        }
        // Another provider's key, even under a kid we publish, verifies nothing here.
        let other_dir = tempfile::tempdir().unwrap();
        let other = open_in(other_dir.path(), &[ES256].into()).unwrap();
        let forged = other.sign(ES256, &issued(unix_now() + 60)).unwrap();
        assert!(keys
            .verify_ignoring_expiry::<Issued>(&forged, "https://us")
            .is_none());
        let ours = keys.sign(ES256, &issued(unix_now() + 60)).unwrap();
        let (header, rest) = ours.split_once('.').unwrap();
        let (_, their_signature) = forged.rsplit_once('.').unwrap();
        let (payload, _) = rest.split_once('.').unwrap();
        let spliced = format!("{header}.{payload}.{their_signature}");
        assert!(keys
            .verify_ignoring_expiry::<Issued>(&spliced, "https://us")
            .is_none());
        assert!(keys
            .verify_ignoring_expiry::<Issued>("not.a.token", "https://us")
            .is_none());
    }

    #[test]
    fn keys_are_made_private_and_survive_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let keys = open_in(dir.path(), &[ES256].into()).unwrap();
        let mode = fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let before = keys.sign(ES256, &claims()).unwrap();
        let new = rotate_in(dir.path()).unwrap();
        assert_eq!(new.len(), 1, "only the algorithm in use");
        let after = keys.sign_at(rolled_over(), ES256, &claims()).unwrap();
        assert_eq!(kid(&after), Some(new[0].1.clone()));
        let jwks = keys.jwks().unwrap();
        assert_eq!(jwks.keys.len(), 2);
        assert_eq!(verify(&before, &jwks).sub, "a");
        assert_eq!(verify(&after, &jwks).sub, "a");
        assert!(
            keys.sign(RS256, &claims()).is_err(),
            "no RSA key was asked for"
        );
    }

    #[test]
    fn each_algorithm_signs_with_its_own_key_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        open_in(dir.path(), &[ES256].into()).unwrap();
        // A client registered RS256 later: the next start adds an RSA key beside the P-256 one.
        let keys = open_in(dir.path(), &[ES256, RS256].into()).unwrap();
        let es = keys.sign(ES256, &claims()).unwrap();
        let rs = keys.sign(RS256, &claims()).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&rs).unwrap().alg,
            Algorithm::RS256
        );
        assert_ne!(kid(&es), kid(&rs));

        let new = rotate_in(dir.path()).unwrap();
        let algs: Vec<_> = new.iter().map(|(alg, _)| *alg).collect();
        assert_eq!(algs, [ES256, RS256]);
        let jwks = keys.jwks().unwrap();
        assert_eq!(jwks.keys.len(), 4);
        for token in [&es, &rs] {
            assert_eq!(verify(token, &jwks).sub, "a");
        }
        let rs_after = keys.sign_at(rolled_over(), RS256, &claims()).unwrap();
        assert_eq!(kid(&rs_after), Some(new[1].1.clone()));
        assert_eq!(verify(&rs_after, &jwks).sub, "a");
    }

    #[test]
    fn a_key_file_from_before_rs256_reads_as_es256() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let mut stored = serde_json::to_value(StoredKey::generate(ES256, 0)).unwrap();
        stored.as_object_mut().unwrap().remove("alg");
        fs::write(&path, serde_json::json!({ "keys": [stored] }).to_string()).unwrap();
        let keys = open_in(dir.path(), &[ES256].into()).unwrap();
        let token = keys.sign(ES256, &claims()).unwrap();
        assert_eq!(verify(&token, &keys.jwks().unwrap()).sub, "a");
        assert_eq!(read_file(&path).unwrap().keys.len(), 1, "no key was added");
    }

    #[test]
    fn long_retired_keys_leave_the_jwks() {
        let dir = tempfile::tempdir().unwrap();
        open_in(dir.path(), &[ES256].into()).unwrap();
        let path = dir.path().join(FILE);
        let mut file = read_file(&path).unwrap();
        file.keys[0].retired_at = Some(unix_now() - ID_TOKEN_TTL.as_secs() - 3600);
        file.keys.push(StoredKey::generate(ES256, 0));
        write(&path, &file).unwrap();
        let keys = open_in(dir.path(), &[ES256].into()).unwrap();
        assert_eq!(keys.jwks().unwrap().keys.len(), 1);
        rotate_in(dir.path()).unwrap();
        assert_eq!(read_file(&path).unwrap().keys.len(), 2);
    }
}
