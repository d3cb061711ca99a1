//! Authorization codes: in memory, single-use, short-lived, bound to a client and redirect URI.
//!
//! Memory is enough: a code lives 60 s, and a restart losing the codes in flight only makes those
//! users click once more. A redeemed code is remembered until its time is up, so a second use is
//! caught and the tokens issued from the first are revoked (RFC 6749 §4.1.2).

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use moka::sync::Cache;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use wxlogin_storage::{constant_time_eq, OpenId, SessionToken};

/// Codes that may be live at once; beyond, the oldest are dropped.
const CAPACITY: u64 = 100_000;

/// What a code stands for.
#[derive(Debug)]
pub struct Grant {
    pub client_id: String,
    pub redirect_uri: String,
    pub openid: OpenId,
    pub scope: Scope,
    pub nonce: Option<String>,
    /// The PKCE S256 challenge, when the client sent one.
    pub code_challenge: Option<String>,
    /// When the user logged in (the session's start), Unix seconds.
    pub auth_time: u64,
}

/// The scopes wxlogin grants: `openid` always, `phone` and `unionid` on request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    pub phone: bool,
    pub unionid: bool,
}

impl Scope {
    /// The scopes granted for a request's `scope`; `None` without `openid`. Unknown scopes are
    /// ignored, as OpenID Connect Core §3.1.2.1 allows.
    pub fn parse(raw: &str) -> Option<Self> {
        let has = |scope: &str| raw.split(' ').any(|w| w == scope);
        has("openid").then(|| Self {
            phone: has("phone"),
            unionid: has("unionid"),
        })
    }

    /// Whether a consent to `self` covers a request for `asked`.
    pub fn covers(self, asked: Scope) -> bool {
        (self.phone || !asked.phone) && (self.unionid || !asked.unionid)
    }

    pub fn as_str(self) -> &'static str {
        match (self.phone, self.unionid) {
            (false, false) => "openid",
            (true, false) => "openid phone",
            (false, true) => "openid unionid",
            (true, true) => "openid phone unionid",
        }
    }
}

/// A code's redemption: none yet, or the access token it gave.
pub struct Entry {
    pub grant: Grant,
    pub redeemed: Mutex<Option<SessionToken>>,
}

pub struct Codes {
    live: Cache<String, Arc<Entry>>,
}

impl Codes {
    pub fn new(ttl: Duration) -> Self {
        Self {
            live: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// A new code for `grant`: 256 random bits, base64url.
    pub fn issue(&self, grant: Grant) -> String {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let code = URL_SAFE_NO_PAD.encode(bytes);
        let entry = Entry {
            grant,
            redeemed: Mutex::new(None),
        };
        self.live.insert(code.clone(), Arc::new(entry));
        code
    }

    /// The live code's entry; `None` for an unknown or expired one.
    pub fn get(&self, code: &str) -> Option<Arc<Entry>> {
        self.live.get(code)
    }

    /// Forgets a code whose reuse has been dealt with.
    pub fn remove(&self, code: &str) {
        self.live.invalidate(code);
    }

    /// Forgets every code issued to `openid`, so none issued before a logout is redeemed after it.
    pub fn forget_user(&self, openid: &OpenId) {
        let theirs: Vec<_> = self
            .live
            .iter()
            .filter(|(_, entry)| entry.grant.openid == *openid)
            .map(|(code, _)| code)
            .collect();
        for code in theirs {
            self.live.invalidate(code.as_str());
        }
    }
}

/// A PKCE `code_challenge`: 43 to 128 characters of the verifier alphabet (RFC 7636 §4.2).
pub fn valid_challenge(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Checks an S256 verifier against its challenge: BASE64URL(SHA256(verifier)) == challenge.
pub fn verifier_matches(challenge: &str, verifier: &str) -> bool {
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    valid_challenge(verifier) && constant_time_eq(computed.as_bytes(), challenge.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(valid_challenge(challenge));
        assert!(verifier_matches(challenge, verifier));
        assert!(!verifier_matches(
            challenge,
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK"
        ));
        assert!(!verifier_matches(challenge, "short"));
    }

    #[test]
    fn scopes_need_openid() {
        let bare = Scope::default();
        let phone = Scope {
            phone: true,
            ..bare
        };
        let unionid = Scope {
            unionid: true,
            ..bare
        };
        assert_eq!(Scope::parse("openid"), Some(bare));
        assert_eq!(Scope::parse("phone openid email"), Some(phone));
        assert_eq!(Scope::parse("unionid openid"), Some(unionid));
        assert_eq!(Scope::parse("phone"), None);
        assert_eq!(Scope::parse("openidphone"), None);
        assert!(phone.covers(bare) && phone.covers(phone) && bare.covers(bare));
        assert!(!bare.covers(phone) && !phone.covers(unionid) && !unionid.covers(phone));
        for scope in [
            bare,
            phone,
            unionid,
            Scope {
                phone: true,
                unionid: true,
            },
        ] {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
    }

    #[test]
    fn codes_expire() {
        let codes = Codes::new(Duration::from_millis(50));
        let code = codes.issue(Grant {
            client_id: "c".into(),
            redirect_uri: "https://c/cb".into(),
            openid: OpenId::parse("alice").unwrap(),
            scope: Scope::default(),
            nonce: None,
            code_challenge: None,
            auth_time: 0,
        });
        assert!(codes.get(&code).is_some());
        std::thread::sleep(Duration::from_millis(100));
        assert!(codes.get(&code).is_none());
    }
}
