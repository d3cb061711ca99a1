//! Pairwise subject identifiers: each client sees its own `sub` for a user, so two sites
//! can't join their users by it, and the openid itself is never shown.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use wxlogin_storage::OpenId;

use super::keys::KeyError;

const FILE: &str = "pairwise-secret";
const SECRET_LEN: usize = 32;

/// `sub` = base64url(HMAC-SHA256(secret, client_id ‖ 0 ‖ openid)), with a secret made once and
/// kept in the data directory: stable across logins and restarts, different per client.
pub struct PairwiseSubjects {
    secret: [u8; SECRET_LEN],
}

impl PairwiseSubjects {
    /// Reads the secret in `dir`, making it on first use.
    pub fn open(dir: &Path) -> Result<Self, KeyError> {
        let path = dir.join(FILE);
        let io = |source| KeyError::Io {
            path: path.clone(),
            source,
        };
        match fs::read(&path) {
            Ok(raw) => {
                let secret = raw.try_into().map_err(|_| KeyError::Corrupt {
                    path: path.clone(),
                    problem: format!("not {SECRET_LEN} bytes"),
                })?;
                Ok(Self { secret })
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
                Ok(Self { secret })
            }
            Err(e) => Err(io(e)),
        }
    }

    pub fn sub(&self, client_id: &str, openid: &OpenId) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key");
        mac.update(client_id.as_bytes());
        mac.update(&[0]);
        mac.update(openid.as_str().as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_per_client_and_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let alice = OpenId::parse("alice").unwrap();
        let first = PairwiseSubjects::open(dir.path()).unwrap();
        let again = PairwiseSubjects::open(dir.path()).unwrap();
        assert_eq!(first.sub("shop", &alice), again.sub("shop", &alice));
        assert_ne!(first.sub("shop", &alice), first.sub("blog", &alice));
        // The separator keeps ("ab", "c…") and ("a", "bc…") apart.
        let bc = OpenId::parse("bc").unwrap();
        let c = OpenId::parse("c").unwrap();
        assert_ne!(first.sub("a", &bc), first.sub("ab", &c));
    }
}
