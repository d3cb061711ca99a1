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

use actix_web::cookie::{Cookie, SameSite};
use actix_web::HttpRequest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use wxlogin_actors::{SceneHandle, SceneId};
use wxlogin_storage::constant_time_eq;

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
    pub fn scene_secret(&self, id: &SceneId) -> String {
        scene_secret(&self.key, id.as_str())
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

/// What a scene keeps of its secret.
pub fn secret_digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Refuses a request for `scene` that proves neither by header nor by cookie that it comes
/// from the browser that created it.
pub fn check(
    request: &HttpRequest,
    secure: bool,
    scene_id: &str,
    scene: &SceneHandle,
) -> Result<(), ApiError> {
    let proves = |secret: &str| constant_time_eq(&secret_digest(secret), scene.secret_digest());
    let by_header = request
        .headers()
        .get(SECRET_HEADER)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|secret| proves(secret.trim()));
    let by_cookie = || {
        request
            .cookie(cookie_name(secure))
            .is_some_and(|cookie| proves(&scene_secret(cookie.value(), scene_id)))
    };
    if by_header || by_cookie() {
        Ok(())
    } else {
        Err(ApiError::NotSceneOwner)
    }
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
