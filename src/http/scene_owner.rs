//! Which browser a login belongs to.
//!
//! Knowing a scene id must not be enough to take its session: an attacker who scans their own
//! QR code could otherwise send a victim's browser to `GET /api/qrcode/{id}/status` and plant
//! their session there (login CSRF). So `POST /api/qrcode` gives the browser a key in an
//! HttpOnly, SameSite=Strict cookie (another site's links, forms and scripts never carry it),
//! and each scene keeps the digest of its secret, an HMAC of its id under that key. Every
//! per-scene route asks for the proof: the cookie, or the secret itself in the
//! `X-Scene-Secret` header, which is how API clients without cookies prove it (another site
//! can't set that header on a victim's request without a CORS preflight, which wxlogin refuses).
//!
//! The secret is also what the scene's login hands out, so nothing stored holds a bearer value:
//! the session token is derived from the secret ([`SceneSecret::session_token`]) and the scene
//! keeps only that session's digest, which both names the session its login opens and checks
//! the secret; a verification code is kept as a digest keyed by the secret. A reader of the
//! database (PostgreSQL's scene rows) learns neither a token nor a code.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::HttpRequest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use wxlogin_actors::{CodeDigest, SceneHandle, SceneId};
use wxlogin_storage::{constant_time_eq, Phone, SessionDigest, SessionToken};

use crate::error::ApiError;

/// The cookie holding the browser's key over plain http; sent only to the scene routes.
pub const BROWSER_COOKIE: &str = "wxlogin_browser";
/// Over https: the `__Host-` prefix makes the browser refuse one set by a sibling subdomain
/// (which could otherwise toss in a key it knows, and with it plant its own scene's session),
/// and requires `Secure`, `Path=/` and no `Domain`.
pub const SECURE_BROWSER_COOKIE: &str = "__Host-wxlogin_browser";
/// The header an API client proves a scene with.
pub const SECRET_HEADER: &str = "x-scene-secret";
const COOKIE_PATH: &str = "/api/qrcode";
/// 256 random bits, base64url.
const KEY_LEN: usize = 43;

/// A browser's key: the one its cookie carries, or a new one.
pub struct BrowserKey {
    key: String,
    /// It came with the request: no cookie needs setting.
    known: bool,
}

/// The browser cookie's name: the `__Host-` one when the public URL is https.
fn cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_BROWSER_COOKIE
    } else {
        BROWSER_COOKIE
    }
}

impl BrowserKey {
    pub fn of(request: &HttpRequest, secure: bool) -> Self {
        match request.cookie(cookie_name(secure)) {
            Some(cookie) if well_formed(cookie.value()) => Self {
                key: cookie.value().to_owned(),
                known: true,
            },
            _ => {
                let mut bytes = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut bytes);
                Self {
                    key: URL_SAFE_NO_PAD.encode(bytes),
                    known: false,
                }
            }
        }
    }

    /// The secret of scene `id` for this browser.
    pub fn scene_secret(&self, id: &SceneId) -> SceneSecret {
        SceneSecret(scene_secret(&self.key, id.as_str()))
    }

    /// The cookie to set, if the browser has not got it yet.
    pub fn cookie(&self, secure: bool) -> Option<Cookie<'static>> {
        (!self.known).then(|| {
            Cookie::build(cookie_name(secure), self.key.clone())
                // `__Host-` cookies must be for the whole host.
                .path(if secure { "/" } else { COOKIE_PATH })
                .http_only(true)
                .same_site(SameSite::Strict)
                .secure(secure)
                .finish()
        })
    }
}

fn well_formed(key: &str) -> bool {
    key.len() == KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn scene_secret(key: &str, scene_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    mac.update(scene_id.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// A scene's secret, as its browser was given it (and proves it).
pub struct SceneSecret(String);

impl SceneSecret {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The token of the session the scene's login opens.
    pub fn session_token(&self) -> SessionToken {
        SessionToken::from_bytes(self.derive(b"wxlogin session token"))
    }

    /// What the scene keeps: the digest of that session.
    pub fn session_digest(&self) -> SessionDigest {
        self.session_token().digest()
    }

    /// What the scene keeps of verification code `code` sent to `phone`: only this secret's
    /// holder can make it, so a stored digest can't be tried against the million codes.
    pub fn code_digest(&self, phone: &Phone, code: &str) -> CodeDigest {
        let mut mac = self.mac(b"wxlogin verification code");
        mac.update(phone.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(code.as_bytes());
        CodeDigest(mac.finalize().into_bytes().into())
    }

    fn derive(&self, purpose: &[u8]) -> [u8; 32] {
        self.mac(purpose).finalize().into_bytes().into()
    }

    /// HMAC keyed by the secret, for one purpose.
    fn mac(&self, purpose: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.0.as_bytes()).expect("HMAC takes any key");
        mac.update(purpose);
        mac.update(b"\0");
        mac
    }
}

/// The scene's secret, if the request proves by header or by cookie that it comes from the
/// browser that created `scene`; else refused.
pub fn check(
    request: &HttpRequest,
    secure: bool,
    scene_id: &str,
    scene: &SceneHandle,
) -> Result<SceneSecret, ApiError> {
    let proves = |secret: &SceneSecret| {
        constant_time_eq(
            secret.session_digest().as_bytes(),
            scene.session_digest().as_bytes(),
        )
    };
    let by_header = request
        .headers()
        .get(SECRET_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(|secret| SceneSecret(secret.trim().to_owned()))
        .filter(proves);
    let by_cookie = || {
        request
            .cookie(cookie_name(secure))
            .map(|cookie| SceneSecret(scene_secret(cookie.value(), scene_id)))
            .filter(proves)
    };
    by_header.or_else(by_cookie).ok_or(ApiError::NotSceneOwner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scene_secret_is_per_browser_and_per_scene() {
        let (a, b) = ("a".repeat(KEY_LEN), "b".repeat(KEY_LEN));
        let (one, two) = ("1".repeat(32), "2".repeat(32));
        let secret = scene_secret(&a, &one);
        assert_eq!(secret, scene_secret(&a, &one));
        assert_ne!(secret, scene_secret(&b, &one));
        assert_ne!(secret, scene_secret(&a, &two));
        assert_eq!(secret.len(), KEY_LEN);
        assert!(well_formed(&a) && !well_formed("short") && !well_formed(&"!".repeat(KEY_LEN)));
    }

    #[test]
    fn a_secret_derives_its_session_and_keys_its_codes() {
        let secret = SceneSecret("s".repeat(KEY_LEN));
        let other = SceneSecret("t".repeat(KEY_LEN));
        let token = secret.session_token();
        assert_eq!(token, secret.session_token());
        assert_ne!(token, other.session_token());
        assert_eq!(secret.session_digest(), token.digest());
        assert_ne!(token.as_str(), secret.as_str());
        let phone = |raw| Phone::parse(raw).unwrap();
        let code = secret.code_digest(&phone("13800000001"), "123456");
        assert!(code == secret.code_digest(&phone("13800000001"), "123456"));
        assert!(code != secret.code_digest(&phone("13800000002"), "123456"));
        assert!(code != secret.code_digest(&phone("13800000001"), "123457"));
        assert!(code != other.code_digest(&phone("13800000001"), "123456"));
    }

    #[test]
    fn over_https_the_cookie_is_the_hosts_alone() {
        let new = BrowserKey {
            key: "k".repeat(KEY_LEN),
            known: false,
        };
        let secure = new.cookie(true).unwrap().to_string();
        for attribute in [
            "__Host-wxlogin_browser=",
            "Secure",
            "Path=/;",
            "HttpOnly",
            "SameSite=Strict",
        ] {
            assert!(format!("{secure};").contains(attribute), "{secure}");
        }
        assert!(!secure.contains("Domain"), "{secure}");
        let plain = new.cookie(false).unwrap().to_string();
        assert!(plain.starts_with("wxlogin_browser=") && plain.contains("Path=/api/qrcode"));
        assert!(!plain.contains("Secure"), "{plain}");
    }
}
