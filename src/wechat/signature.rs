//! The SHA-1 signatures WeChat puts on every callback request.

use sha1::{Digest, Sha1};
use wxlogin_storage::constant_time_eq;

/// `hex(sha1(concat(sorted(parts))))`, lowercase: WeChat's signature over token, timestamp and nonce.
pub fn sign(parts: &[&str]) -> String {
    let mut sorted = parts.to_vec();
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for part in sorted {
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Checks a signature over `parts` (token, timestamp, nonce and, in safe mode, the
/// ciphertext) in constant time.
pub fn verify(parts: &[&str], signature: &str) -> bool {
    let expected = sign(parts);
    constant_time_eq(
        expected.as_bytes(),
        signature.to_ascii_lowercase().as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `plain_signature` in ../shared/wechat-vectors.json (checked against wechatpy).
    const VECTORS: [(&str, &str, &str, &str); 2] = [
        (
            "123456",
            "1411443780",
            "437374425",
            "97f44b51ccbee5533bf61e753557d165ea0f4566",
        ),
        (
            "wxlogin-token",
            "1732406400",
            "8f3a9c",
            "fb1b2656fce7605e0e476bc5062570a573a1804b",
        ),
    ];

    #[test]
    fn reproduces_published_vectors() {
        for (token, timestamp, nonce, signature) in VECTORS {
            assert_eq!(sign(&[token, timestamp, nonce]), signature);
            assert!(verify(&[token, timestamp, nonce], signature));
            assert!(verify(
                &[token, timestamp, nonce],
                &signature.to_uppercase()
            ));
        }
    }

    #[test]
    fn order_of_parts_does_not_matter() {
        assert_eq!(sign(&["b", "a", "c"]), sign(&["c", "b", "a"]));
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let (token, timestamp, nonce, signature) = VECTORS[0];
        assert!(!verify(&["other", timestamp, nonce], signature));
        assert!(!verify(&[token, "1411443781", nonce], signature));
        assert!(!verify(&[token, timestamp, nonce, "ciphertext"], signature));
        assert!(!verify(&[token, timestamp, nonce], &signature[..39]));
        assert!(!verify(&[token, timestamp, nonce], ""));
    }
}
