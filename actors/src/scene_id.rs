use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// 192 random bits, base64url: 32 characters, well inside WeChat's 64-character
/// `scene_str` limit. Random, never derived from time: whoever knows a scene id can
/// read its login token, so it must be unguessable. Kept inline (no heap allocation): a
/// pending scene's id is a large part of what it costs.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SceneId([u8; ENCODED_LEN]);

const RANDOM_BYTES: usize = 24;
const ENCODED_LEN: usize = 32;

impl SceneId {
    pub fn generate() -> Self {
        let mut bytes = [0u8; RANDOM_BYTES];
        rand::thread_rng().fill_bytes(&mut bytes);
        let mut id = [0u8; ENCODED_LEN];
        let written = URL_SAFE_NO_PAD
            .encode_slice(bytes, &mut id)
            .expect("24 bytes encode to 32 characters");
        debug_assert_eq!(written, ENCODED_LEN);
        Self(id)
    }

    /// Only strings shaped like ours: anything else (a foreign EventKey, a probe) is not a scene.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = raw.len() == ENCODED_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        Some(Self(raw.as_bytes().try_into().ok().filter(|_| ok)?))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("base64url is ASCII")
    }

    /// What the scene is known by inside wxlogin.
    pub fn key(&self) -> SceneKey {
        SceneKey(Sha256::digest(self.0).into())
    }
}

/// SHA-256 of a scene id: how scenes are kept and found, in memory and in a PostgreSQL row.
/// It names a scene without being its bearer: nobody holding only the key can poll the scene,
/// so rows, notifications and logs carry this, never the id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SceneKey(pub(crate) [u8; 32]);

impl SceneKey {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SceneKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", hex_prefix(&self.0[..4]))
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl fmt::Display for SceneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SceneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Half is enough to correlate log lines, and too little to poll the scene.
        write!(f, "{}…", &self.as_str()[..ENCODED_LEN / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_differ() {
        let a = SceneId::generate();
        assert_eq!(a.as_str().len(), ENCODED_LEN);
        assert_eq!(SceneId::parse(a.as_str()), Some(a.clone()));
        assert_ne!(a, SceneId::generate());
    }

    #[test]
    fn a_key_is_the_ids_digest_and_shows_only_a_prefix() {
        let id = SceneId::generate();
        assert_eq!(id.key(), id.key());
        assert_ne!(id.key(), SceneId::generate().key());
        let shown = format!("{:?}", id.key());
        assert_eq!(shown.chars().count(), 9);
        assert!(!shown.contains(&id.as_str()[..8]));
    }

    #[test]
    fn foreign_event_keys_are_not_scenes() {
        for raw in [
            "",
            "last_trade_no_4200001234",
            "1234",
            &"a".repeat(33),
            &"a/".repeat(16),
        ] {
            assert_eq!(SceneId::parse(raw), None, "{raw}");
        }
    }
}
