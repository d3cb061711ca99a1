//! Authorization codes: single-use, short-lived, bound to a client and redirect URI.
//!
//! One node keeps them in memory: a code lives 60 s, and a restart losing the codes in flight
//! only makes those users click once more. Several nodes (PostgreSQL) keep them in the
//! database, where a code issued by one node is redeemed at any other, once
//! ([`OidcRecords`]). Either way a redeemed code is remembered until its time is up, so a
//! second use is caught and the token issued from the first is revoked (RFC 6749 §4.1.2).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use moka::sync::Cache;
use rand::RngCore;
use sha2::{Digest, Sha256};
use wxlogin_storage::{
    constant_time_eq, CodeGrant, OidcRecords, OpenId, Redemption, SessionToken, Store, StoreError,
};

/// Codes that may be live at once in memory; beyond, the oldest are dropped.
const CAPACITY: u64 = 100_000;

/// What a code stands for.
#[derive(Clone, Debug)]
pub struct Grant {
    pub client_id: String,
    pub redirect_uri: String,
    pub openid: OpenId,
    /// The binding it was issued under ([`wxlogin_storage::Binding::generation`]): after a
    /// rebind the code is worthless, even where forgetting it failed.
    pub generation: u64,
    pub scope: Scope,
    pub nonce: Option<String>,
    /// The PKCE S256 challenge, when the client sent one.
    pub code_challenge: Option<String>,
    /// When the user logged in (the session's start), Unix seconds.
    pub auth_time: u64,
}

impl Grant {
    fn stored(&self) -> CodeGrant {
        CodeGrant {
            client_id: self.client_id.clone(),
            redirect_uri: self.redirect_uri.clone(),
            openid: self.openid.clone(),
            generation: self.generation,
            scope: self.scope.as_str().to_owned(),
            nonce: self.nonce.clone(),
            code_challenge: self.code_challenge.clone(),
            auth_time: self.auth_time,
        }
    }

    fn from_stored(stored: CodeGrant) -> Self {
        Self {
            // Written from a Scope's own text, so it parses.
            scope: Scope::parse(&stored.scope).unwrap_or_default(),
            client_id: stored.client_id,
            redirect_uri: stored.redirect_uri,
            openid: stored.openid,
            generation: stored.generation,
            nonce: stored.nonce,
            code_challenge: stored.code_challenge,
            auth_time: stored.auth_time,
        }
    }
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

/// What redeeming a code found: as [`Redemption`], with the provider's own grant.
#[derive(Debug)]
pub enum Redeemed<E> {
    /// Unknown, expired, or another client's.
    Unknown,
    /// Refused by the caller's check; left unredeemed, so the client may try again.
    Refused(E),
    /// Redeemed now, by this call alone.
    Granted(Grant),
    /// Redeemed before: forgotten now, and the access token it gave revoked.
    Reused,
}

/// A code in memory: its grant, and whether (and for which access token) it was redeemed.
struct Entry {
    grant: Grant,
    /// `None` until redeemed; then the access token it gave, once issued.
    redeemed: Mutex<Option<Option<SessionToken>>>,
}

enum Place {
    Memory {
        live: Cache<String, Arc<Entry>>,
        /// Where a reused code's access token is revoked.
        store: Store,
    },
    Database(OidcRecords),
}

pub struct Codes {
    ttl: Duration,
    place: Place,
}

impl Codes {
    /// Codes living `ttl`: in the database where the store is PostgreSQL, else in memory.
    pub fn new(ttl: Duration, store: &Store) -> Self {
        let place = match store.oidc_records() {
            Some(records) => Place::Database(records.clone()),
            None => Place::Memory {
                live: Cache::builder()
                    .max_capacity(CAPACITY)
                    .time_to_live(ttl)
                    .build(),
                store: store.clone(),
            },
        };
        Self { ttl, place }
    }

    /// A new code for `grant`: 256 random bits, base64url.
    pub async fn issue(&self, grant: Grant) -> Result<String, StoreError> {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let code = URL_SAFE_NO_PAD.encode(bytes);
        match &self.place {
            Place::Memory { live, .. } => {
                let entry = Entry {
                    grant,
                    redeemed: Mutex::new(None),
                };
                live.insert(code.clone(), Arc::new(entry));
            }
            Place::Database(records) => {
                records.issue_code(&code, &grant.stored(), self.ttl).await?;
            }
        }
        Ok(code)
    }

    /// Redeems `code` for `client_id` if `check` accepts its grant; a code is granted once at
    /// most, on whichever node. Then [`Codes::gave`] notes the access token it gave.
    pub async fn redeem<E: Send>(
        &self,
        code: &str,
        client_id: &str,
        check: impl FnOnce(&Grant) -> Result<(), E> + Send,
    ) -> Result<Redeemed<E>, StoreError> {
        match &self.place {
            Place::Memory { live, store } => {
                let Some(entry) = live.get(code).filter(|e| e.grant.client_id == client_id) else {
                    return Ok(Redeemed::Unknown);
                };
                let reused = {
                    let mut redeemed = entry.redeemed.lock().unwrap_or_else(|p| p.into_inner());
                    match &mut *redeemed {
                        Some(gave) => gave.take(),
                        None => {
                            if let Err(refused) = check(&entry.grant) {
                                return Ok(Redeemed::Refused(refused));
                            }
                            *redeemed = Some(None);
                            return Ok(Redeemed::Granted(entry.grant.clone()));
                        }
                    }
                };
                live.invalidate(code);
                if let Some(token) = reused {
                    store.revoke_access_token(&token).await?;
                }
                Ok(Redeemed::Reused)
            }
            Place::Database(records) => Ok(
                match records
                    .redeem_code(code, client_id, |stored| {
                        check(&Grant::from_stored(stored.clone()))
                    })
                    .await?
                {
                    Redemption::Unknown => Redeemed::Unknown,
                    Redemption::Refused(refused) => Redeemed::Refused(refused),
                    Redemption::Granted(stored) => Redeemed::Granted(Grant::from_stored(stored)),
                    Redemption::Reused => Redeemed::Reused,
                },
            ),
        }
    }

    /// Notes the access token the redeemed `code` gave, for a second use to revoke; `false` if
    /// a second use came first: the caller revokes `token` then.
    pub async fn gave(&self, code: &str, token: &SessionToken) -> Result<bool, StoreError> {
        match &self.place {
            Place::Memory { live, .. } => Ok(live.get(code).is_some_and(|entry| {
                let mut redeemed = entry.redeemed.lock().unwrap_or_else(|p| p.into_inner());
                redeemed
                    .as_mut()
                    .map(|gave| *gave = Some(token.clone()))
                    .is_some()
            })),
            Place::Database(records) => records.code_gave(code, token).await,
        }
    }

    /// Forgets every code issued to `openid`, so none issued before a logout is redeemed after it.
    pub async fn forget_user(&self, openid: &OpenId) -> Result<(), StoreError> {
        match &self.place {
            Place::Memory { live, .. } => {
                let theirs: Vec<_> = live
                    .iter()
                    .filter(|(_, entry)| entry.grant.openid == *openid)
                    .map(|(code, _)| code)
                    .collect();
                for code in theirs {
                    live.invalidate(code.as_str());
                }
                Ok(())
            }
            Place::Database(records) => records.forget_codes(openid).await,
        }
    }

    /// Deletes expired codes from the database (memory forgets them by itself); how many.
    pub async fn purge_expired(&self) -> Result<usize, StoreError> {
        match &self.place {
            Place::Memory { .. } => Ok(0),
            Place::Database(records) => records.purge_expired_codes().await,
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

    fn grant() -> Grant {
        Grant {
            client_id: "c".into(),
            redirect_uri: "https://c/cb".into(),
            openid: OpenId::parse("alice").unwrap(),
            generation: 1,
            scope: Scope::default(),
            nonce: None,
            code_challenge: None,
            auth_time: 0,
        }
    }

    async fn redeem(codes: &Codes, code: &str, client: &str, accept: bool) -> Redeemed<()> {
        codes
            .redeem(code, client, |_| if accept { Ok(()) } else { Err(()) })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_code_is_granted_once_and_a_refusal_does_not_use_it_up() {
        let dir = tempfile::tempdir().unwrap();
        let codes = Codes::new(Duration::from_secs(60), &Store::open(dir.path()).unwrap());
        let code = codes.issue(grant()).await.unwrap();
        assert!(matches!(
            redeem(&codes, &code, "other", true).await,
            Redeemed::Unknown
        ));
        assert!(matches!(
            redeem(&codes, &code, "c", false).await,
            Redeemed::Refused(())
        ));
        assert!(matches!(
            redeem(&codes, &code, "c", true).await,
            Redeemed::Granted(_)
        ));
        assert!(codes.gave(&code, &SessionToken::generate()).await.unwrap());
        assert!(matches!(
            redeem(&codes, &code, "c", true).await,
            Redeemed::Reused
        ));
        assert!(matches!(
            redeem(&codes, &code, "c", true).await,
            Redeemed::Unknown
        ));
        // A token noted after a second use forgot the code is the caller's to revoke.
        assert!(!codes.gave(&code, &SessionToken::generate()).await.unwrap());
    }

    #[tokio::test]
    async fn codes_expire() {
        let dir = tempfile::tempdir().unwrap();
        let codes = Codes::new(Duration::from_millis(50), &Store::open(dir.path()).unwrap());
        let code = codes.issue(grant()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(matches!(
            redeem(&codes, &code, "c", true).await,
            Redeemed::Unknown
        ));
    }
}
