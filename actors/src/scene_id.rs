use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

/// 192 random bits, base64url: 32 characters, well inside WeChat's 64-character
/// `scene_str` limit. Random, never derived from time: whoever knows a scene id can
/// read its login token, so it must be unguessable.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SceneId(String);

const RANDOM_BYTES: usize = 24;
const ENCODED_LEN: usize = 32;

impl SceneId {
    pub fn generate() -> Self {
        let mut bytes = [0u8; RANDOM_BYTES];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Only strings shaped like ours: anything else (a foreign EventKey, a probe) is not a scene.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = raw.len() == ENCODED_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SceneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SceneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Half is enough to correlate log lines, and too little to poll the scene.
        write!(f, "{}…", &self.0[..ENCODED_LEN / 2])
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
