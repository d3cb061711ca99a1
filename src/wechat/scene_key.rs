//! The `scene_str` of a login QR code, which WeChat hands back as the scan's `EventKey`: the
//! scene id behind `WXLOGIN_SCENE_PREFIX`. The prefix lets an account's own server, in front of
//! wxlogin, tell login scans from its own QR codes by the key alone and forward only those; the
//! id after it keeps all its 192 random bits, and only a key with our prefix is our scene.

use wxlogin_actors::SceneId;

/// A scene id is 32 characters and `scene_str` at most 64; a short prefix leaves room to spare.
pub const MAX_PREFIX_LEN: usize = 16;
pub const DEFAULT_PREFIX: &str = "wxl_";
/// WeChat puts this before the key of a scan that makes the user follow: a prefix starting
/// so would be read as the follow's marker.
const FOLLOW_MARKER: &str = "qrscene_";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SceneKeys {
    prefix: String,
}

impl SceneKeys {
    /// 1 to [`MAX_PREFIX_LEN`] of the characters a scene id itself is made of (letters, digits,
    /// `-`, `_`): safe in XML, in a URL, and in any router's string match.
    pub fn new(prefix: &str) -> Result<Self, String> {
        let allowed = prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN || !allowed {
            return Err(format!(
                "{prefix:?} must be 1 to {MAX_PREFIX_LEN} letters, digits, - or _"
            ));
        }
        // Nor begin it: with `qrscene` some scene ids (those starting `_`) would make keys
        // that start with the marker, which an account server's SDK strips from every key.
        if prefix.starts_with(FOLLOW_MARKER) || FOLLOW_MARKER.starts_with(prefix) {
            return Err(format!(
                "{prefix:?} must not start with {FOLLOW_MARKER}, which WeChat adds itself, nor begin it"
            ));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
        })
    }

    /// The `scene_str` to ask WeChat for.
    pub fn key(&self, scene: &SceneId) -> String {
        format!("{}{scene}", self.prefix)
    }

    /// The scene a scan's key (with WeChat's follow marker already removed) names, if it is one
    /// of ours: our prefix, then something shaped like a scene id.
    pub fn scene(&self, key: &str) -> Option<SceneId> {
        SceneId::parse(key.strip_prefix(&self.prefix)?)
    }
}

impl Default for SceneKeys {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX).expect("the default prefix is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_prefix_and_only_prefixed_keys_are_scenes() {
        let keys = SceneKeys::default();
        let id = SceneId::generate();
        let key = keys.key(&id);
        assert_eq!(key, format!("wxl_{id}"));
        assert!(key.len() <= 64);
        assert_eq!(keys.scene(&key), Some(id.clone()));
        // The bare id, another prefix, the account's own keys: not ours.
        for foreign in [
            id.to_string(),
            format!("shop_{id}"),
            "wxl_".into(),
            "wxl_123".into(),
        ] {
            assert_eq!(keys.scene(&foreign), None, "{foreign}");
        }
        let longest = SceneKeys::new(&"p".repeat(MAX_PREFIX_LEN)).unwrap();
        assert!(longest.key(&id).len() <= 64);
    }

    #[test]
    fn prefixes_are_short_and_plain() {
        for bad in [
            "",
            "has space",
            "wxl:",
            "登录_",
            "<x>",
            "qrscene_x",
            "qrscene",
            "q",
            &"p".repeat(17),
        ] {
            assert!(SceneKeys::new(bad).is_err(), "{bad}");
        }
        for good in ["wxl_", "login-", "L", "a_B-9"] {
            SceneKeys::new(good).unwrap();
        }
    }
}
