//! Domain values that exist only in valid form ("parse, don't validate").

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A WeChat user's id within one official account.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OpenId(String);

impl OpenId {
    /// WeChat openids are 28 URL-safe characters; we accept 1..=64 of that alphabet.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = (1..=64).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        ok.then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OpenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for OpenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A WeChat user's id across the official accounts and apps of one Open Platform account.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UnionId(String);

impl UnionId {
    /// WeChat unionids are 28 URL-safe characters; we accept 1..=64 of that alphabet, as for
    /// openids.
    pub fn parse(raw: &str) -> Option<Self> {
        OpenId::parse(raw).map(|id| Self(id.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for UnionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A mainland China mobile number, normalised to its 11 digits.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Phone(String);

impl Phone {
    /// Accepts `13812345678`, `+8613812345678` and `+86 138...` (a space or dash after +86).
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        let digits = match raw.strip_prefix("+86") {
            Some(rest) => rest.strip_prefix([' ', '-']).unwrap_or(rest),
            None => raw,
        };
        let b = digits.as_bytes();
        let ok = b.len() == 11
            && b[0] == b'1'
            && (b'3'..=b'9').contains(&b[1])
            && b.iter().all(u8::is_ascii_digit);
        ok.then(|| Self(digits.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Phone {
    /// Masked, so a phone number never lands whole in a debug log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}****{}", &self.0[..3], &self.0[7..])
    }
}

/// A bearer session token as handed to the browser: 256 bits, base64url. Sessions are
/// stored by its SHA-256 digest ([`SessionDigest`]) only, and a login's token is never stored
/// anywhere: the scene's browser derives it from the scene's secret, and the scene keeps only
/// its digest (docs/SECURITY.md, what the database is trusted with).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }

    /// The token of 256 bits made elsewhere (derived from a scene's secret).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Any string is a candidate token; lookups decide whether it is a live one.
    pub fn from_bearer(raw: &str) -> Self {
        Self(raw.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> SessionDigest {
        SessionDigest(Sha256::digest(self.0.as_bytes()).into())
    }
}

/// SHA-256 of a session token: what names a session in storage, and all a scene keeps of the
/// session its login opens. It opens no session by itself.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDigest([u8; 32]);

impl SessionDigest {
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl AsRef<[u8]> for SessionDigest {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SessionDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionDigest(..)")
    }
}

/// A session to open at a login: under `binding`, for `ttl`, named by `digest`, with the
/// login's record.
#[derive(Clone, Copy, Debug)]
pub struct NewSession<'a> {
    pub binding: &'a Binding,
    pub digest: &'a SessionDigest,
    pub ttl: std::time::Duration,
    pub method: LoginMethod,
    pub client_ip: &'a str,
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(..)")
    }
}

/// Which path a login took: a scan by an already bound user, or binding a phone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoginMethod {
    Scan,
    Bind,
}

/// One openid ↔ one phone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub openid: OpenId,
    pub phone: Phone,
    /// Unix seconds.
    pub bound_at: u64,
    /// The user's unionid, once WeChat told it (`cgi-bin/user/info`, after the bind); `None`
    /// before, and for accounts without an Open Platform account.
    #[serde(skip)]
    pub unionid: Option<UnionId>,
    /// Which binding this is: every bind makes a new one, and a session is live only under the
    /// binding it was opened under. A counter, not a time, so a rebind within the same second
    /// (or after the clock stepped back) still ends the sessions of the one before.
    #[serde(skip)]
    pub generation: u64,
}

impl Binding {
    /// Whether a session, token or consent made under `generation` at `made_at` belongs to
    /// this binding. Records from before generations (0 on both sides) keep the rule they were
    /// written under: the binding must not be newer than the record.
    pub(crate) fn holds(&self, generation: u64, made_at: u64) -> bool {
        self.generation == generation && (generation != 0 || self.bound_at <= made_at)
    }
}

/// A live session as `/api/me` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub binding: Binding,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
}

/// One entry of the login log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRecord {
    /// Unix milliseconds.
    pub at_ms: u64,
    pub method: LoginMethod,
    pub client_ip: String,
}

/// Where a page of the login log ended: the next page starts just before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginCursor(pub(crate) [u8; 16]);

impl LoginCursor {
    pub fn parse(raw: &str) -> Option<Self> {
        let bytes = hex::decode(raw).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Display for LoginCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Some of a user's logins, newest first, and where the next page starts.
#[derive(Debug)]
pub struct LoginPage {
    pub records: Vec<LoginRecord>,
    pub next: Option<LoginCursor>,
}

/// Compares two secrets without an early exit, so timing tells nothing about how much matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_accepts_mainland_mobiles_with_optional_country_code() {
        for raw in [
            "13812345678",
            "+8613812345678",
            "+86 19912345678",
            " +86-15012345678 ",
        ] {
            assert!(Phone::parse(raw).is_some(), "{raw}");
        }
        assert_eq!(
            Phone::parse("+8613812345678").unwrap().as_str(),
            "13812345678"
        );
    }

    #[test]
    fn phone_rejects_everything_else() {
        for raw in [
            "",
            "1381234567",
            "138123456789",
            "12812345678",
            "23812345678",
            "1381234567a",
            "+8513812345678",
            "8613812345678",
            "+86  13812345678",
            "１３８１２３４５６７８",
        ] {
            assert!(Phone::parse(raw).is_none(), "{raw}");
        }
    }

    #[test]
    fn phone_debug_is_masked() {
        assert_eq!(
            format!("{:?}", Phone::parse("13812345678").unwrap()),
            "138****5678"
        );
    }

    #[test]
    fn openid_alphabet_and_length() {
        assert!(OpenId::parse("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o").is_some());
        assert!(OpenId::parse("").is_none());
        assert!(OpenId::parse("a b").is_none());
        assert!(OpenId::parse(&"a".repeat(65)).is_none());
    }

    #[test]
    fn constant_time_eq_compares_whole_strings() {
        assert!(constant_time_eq(b"123456", b"123456"));
        assert!(!constant_time_eq(b"123456", b"123457"));
        assert!(!constant_time_eq(b"123456", b"12345"));
    }

    #[test]
    fn session_tokens_are_256_bit_and_distinct() {
        let (a, b) = (SessionToken::generate(), SessionToken::generate());
        assert_eq!(a.as_str().len(), 43);
        assert_ne!(a, b);
        assert_ne!(a.digest(), b.digest());
    }
}
