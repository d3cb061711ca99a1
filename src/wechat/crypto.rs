//! Safe mode (安全模式): WeChat's AES-256-CBC message encryption.
//!
//! Plaintext = 16 random bytes ‖ 4-byte big-endian length L ‖ L bytes of XML ‖ AppID,
//! PKCS#7-padded to **32-byte** blocks, encrypted with key = base64(EncodingAESKey + "=")
//! and IV = the key's first 16 bytes, then base64-encoded.

use aes::Aes256;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::Engine;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use rand::RngCore;

/// WeChat pads to 32 bytes, not to AES's 16.
const PAD_BLOCK: usize = 32;
const RANDOM_PREFIX: usize = 16;
const LENGTH_FIELD: usize = 4;
const AES_BLOCK: usize = 16;
/// An EncodingAESKey is 43 base64 characters: 32 bytes without the trailing `=`.
pub const ENCODING_AES_KEY_LEN: usize = 43;
/// WeChat's console makes keys whose last character carries stray low bits, which strict
/// base64 refuses; WeChat's own SDKs (and Python's decoder) ignore them.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the EncodingAESKey must be {ENCODING_AES_KEY_LEN} base64 characters")]
    BadKey,
    #[error("the ciphertext is not base64")]
    NotBase64,
    #[error("the ciphertext is not a whole number of AES blocks")]
    BadBlockLength,
    #[error("the padding is invalid")]
    BadPadding,
    #[error("the length field overruns the message")]
    BadLength,
    #[error("the message is for another AppID")]
    WrongAppId,
}

pub struct MessageCrypto {
    key: [u8; 32],
    appid: String,
}

impl MessageCrypto {
    pub fn new(encoding_aes_key: &str, appid: &str) -> Result<Self, CryptoError> {
        if encoding_aes_key.len() != ENCODING_AES_KEY_LEN {
            return Err(CryptoError::BadKey);
        }
        let key = LENIENT_BASE64
            .decode(format!("{encoding_aes_key}="))
            .map_err(|_| CryptoError::BadKey)?
            .try_into()
            .map_err(|_| CryptoError::BadKey)?;
        Ok(Self {
            key,
            appid: appid.to_owned(),
        })
    }

    /// Encrypts `xml` for WeChat with a fresh random prefix.
    pub fn encrypt(&self, xml: &[u8]) -> String {
        let mut prefix = [0u8; RANDOM_PREFIX];
        rand::thread_rng().fill_bytes(&mut prefix);
        self.encrypt_with_prefix(xml, &prefix)
    }

    fn encrypt_with_prefix(&self, xml: &[u8], prefix: &[u8; RANDOM_PREFIX]) -> String {
        let length = u32::try_from(xml.len()).expect("messages are far smaller than 4 GiB");
        let mut content =
            Vec::with_capacity(RANDOM_PREFIX + LENGTH_FIELD + xml.len() + self.appid.len());
        content.extend_from_slice(prefix);
        content.extend_from_slice(&length.to_be_bytes());
        content.extend_from_slice(xml);
        content.extend_from_slice(self.appid.as_bytes());
        self.seal(content)
    }

    /// Pads and encrypts `content` as it stands (the inverse of [`MessageCrypto::unseal`]).
    pub fn seal(&self, mut content: Vec<u8>) -> String {
        let pad = PAD_BLOCK - content.len() % PAD_BLOCK;
        content.resize(content.len() + pad, pad as u8);
        let len = content.len();
        let cipher = cbc::Encryptor::<Aes256>::new(&self.key.into(), self.iv().into());
        let sealed = cipher
            .encrypt_padded_mut::<NoPadding>(&mut content, len)
            .expect("content is padded to whole blocks");
        STANDARD.encode(sealed)
    }

    /// Decrypts an `Encrypt` field and returns the XML inside, checking padding, length and AppID.
    pub fn decrypt(&self, encrypted: &str) -> Result<Vec<u8>, CryptoError> {
        let content = self.unseal(encrypted)?;
        let header = RANDOM_PREFIX + LENGTH_FIELD;
        let length_bytes = content
            .get(RANDOM_PREFIX..header)
            .ok_or(CryptoError::BadLength)?;
        let length = u32::from_be_bytes(length_bytes.try_into().expect("four bytes")) as usize;
        let xml_end = header
            .checked_add(length)
            .filter(|&end| end <= content.len())
            .ok_or(CryptoError::BadLength)?;
        if &content[xml_end..] != self.appid.as_bytes() {
            return Err(CryptoError::WrongAppId);
        }
        Ok(content[header..xml_end].to_vec())
    }

    /// Base64-decodes, decrypts and strips the 32-byte PKCS#7 padding.
    pub fn unseal(&self, encrypted: &str) -> Result<Vec<u8>, CryptoError> {
        let mut data = STANDARD
            .decode(encrypted.trim())
            .map_err(|_| CryptoError::NotBase64)?;
        if data.is_empty() || data.len() % AES_BLOCK != 0 {
            return Err(CryptoError::BadBlockLength);
        }
        let cipher = cbc::Decryptor::<Aes256>::new(&self.key.into(), self.iv().into());
        let plain_len = cipher
            .decrypt_padded_mut::<NoPadding>(&mut data)
            .map_err(|_| CryptoError::BadBlockLength)?
            .len();
        let pad = usize::from(data[plain_len - 1]);
        if pad == 0
            || pad > PAD_BLOCK
            || pad > plain_len
            || data[plain_len - pad..plain_len]
                .iter()
                .any(|&b| usize::from(b) != pad)
        {
            return Err(CryptoError::BadPadding);
        }
        data.truncate(plain_len - pad);
        Ok(data)
    }

    fn iv(&self) -> &[u8; AES_BLOCK] {
        self.key[..AES_BLOCK]
            .try_into()
            .expect("the key is 32 bytes")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::wechat::signature::sign;

    fn vectors() -> Value {
        serde_json::from_str(include_str!("../../tests/data/wechat-vectors.json")).unwrap()
    }

    fn s<'a>(v: &'a Value, field: &str) -> &'a str {
        v[field].as_str().unwrap()
    }

    #[test]
    fn decrypts_the_published_message() {
        let v = &vectors()["decrypt"];
        let signature = sign(&[
            s(v, "token"),
            s(v, "timestamp"),
            s(v, "nonce"),
            s(v, "encrypt"),
        ]);
        assert_eq!(signature, s(v, "msg_signature"));
        let crypto = MessageCrypto::new(s(v, "encoding_aes_key"), s(v, "receive_id")).unwrap();
        assert_eq!(
            crypto.decrypt(s(v, "encrypt")).unwrap(),
            s(v, "plaintext").as_bytes()
        );
    }

    #[test]
    fn encrypts_exactly_as_published() {
        for name in ["encrypt", "official_account_event"] {
            let v = &vectors()[name];
            let appid = v
                .get("receive_id")
                .or(v.get("appid"))
                .unwrap()
                .as_str()
                .unwrap();
            let crypto = MessageCrypto::new(s(v, "encoding_aes_key"), appid).unwrap();
            let prefix: [u8; 16] = s(v, "random16").as_bytes().try_into().unwrap();
            let encrypted = crypto.encrypt_with_prefix(s(v, "plaintext").as_bytes(), &prefix);
            assert_eq!(encrypted, s(v, "encrypt"), "{name}");
            let signature = sign(&[s(v, "token"), s(v, "timestamp"), s(v, "nonce"), &encrypted]);
            assert_eq!(signature, s(v, "msg_signature"), "{name}");
            assert_eq!(
                crypto.decrypt(&encrypted).unwrap(),
                s(v, "plaintext").as_bytes(),
                "{name}"
            );
        }
        let v = &vectors()["official_account_event"];
        assert_eq!(
            sign(&[s(v, "token"), s(v, "timestamp"), s(v, "nonce")]),
            s(v, "query_signature")
        );
    }

    fn crypto() -> MessageCrypto {
        MessageCrypto::new(
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
            "wx1234567890abcdef",
        )
        .unwrap()
    }

    #[test]
    fn round_trips_every_size_across_padding_boundaries() {
        let crypto = crypto();
        // 20 header bytes + 18 AppID bytes: lengths 26, 58, ... fill the 32-byte blocks exactly.
        for len in 0..300 {
            let xml: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let encrypted = crypto.encrypt(&xml);
            assert_eq!(crypto.decrypt(&encrypted).unwrap(), xml, "length {len}");
        }
        let exact = vec![b'x'; 2 * PAD_BLOCK - RANDOM_PREFIX - LENGTH_FIELD - 18];
        let sealed = STANDARD.decode(crypto.encrypt(&exact)).unwrap();
        assert_eq!(
            sealed.len(),
            3 * PAD_BLOCK,
            "a full block of padding is added"
        );
    }

    #[test]
    fn refuses_another_appid() {
        let other =
            MessageCrypto::new("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wxOTHER").unwrap();
        assert_eq!(
            crypto().decrypt(&other.encrypt(b"<xml/>")),
            Err(CryptoError::WrongAppId)
        );
    }

    #[test]
    fn refuses_bad_padding_length_and_encoding() {
        let crypto = crypto();
        // Decrypting to a last byte of 0, or of 33, is bad padding.
        for pad in [0u8, 33, 255] {
            let mut content = vec![7u8; 63];
            content.push(pad);
            let sealed = raw_encrypt(&crypto, &content);
            assert_eq!(
                crypto.unseal(&sealed),
                Err(CryptoError::BadPadding),
                "pad {pad}"
            );
        }
        // A length field pointing past the end.
        let mut content = vec![0u8; RANDOM_PREFIX];
        content.extend_from_slice(&1000u32.to_be_bytes());
        content.extend_from_slice(b"<xml/>");
        assert_eq!(
            crypto.decrypt(&crypto.seal(content)),
            Err(CryptoError::BadLength)
        );
        // Too short to hold the header.
        assert_eq!(
            crypto.decrypt(&crypto.seal(vec![1, 2, 3])),
            Err(CryptoError::BadLength)
        );
        assert_eq!(crypto.decrypt("not base64!"), Err(CryptoError::NotBase64));
        assert_eq!(crypto.decrypt(""), Err(CryptoError::BadBlockLength));
        assert_eq!(
            crypto.decrypt(&STANDARD.encode([0u8; 17])),
            Err(CryptoError::BadBlockLength)
        );
    }

    #[test]
    fn tampered_ciphertext_fails_cleanly() {
        let crypto = crypto();
        let mut sealed = STANDARD
            .decode(crypto.encrypt(b"<xml><a>1</a></xml>"))
            .unwrap();
        for i in 0..sealed.len() {
            sealed[i] ^= 0x55;
            // Anything but a panic: a CBC flip may even decrypt, to garbage that the checks catch.
            let _ = crypto.decrypt(&STANDARD.encode(&sealed));
            sealed[i] ^= 0x55;
        }
    }

    #[test]
    fn keys_must_be_43_base64_characters() {
        assert_eq!(
            MessageCrypto::new("short", "wx").err(),
            Some(CryptoError::BadKey)
        );
        assert_eq!(
            MessageCrypto::new(&"!".repeat(43), "wx").err(),
            Some(CryptoError::BadKey)
        );
    }

    /// AES-CBC of `content` with no padding added, to plant arbitrary final bytes.
    fn raw_encrypt(crypto: &MessageCrypto, content: &[u8]) -> String {
        let mut buf = content.to_vec();
        let len = buf.len();
        let cipher = cbc::Encryptor::<Aes256>::new(&crypto.key.into(), crypto.iv().into());
        STANDARD.encode(
            cipher
                .encrypt_padded_mut::<NoPadding>(&mut buf, len)
                .unwrap(),
        )
    }
}
