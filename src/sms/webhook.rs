//! The site's own SMS relay: each code POSTed as `{"phone", "code"}`, signed with
//! `X-Wxlogin-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` when
//! `WXLOGIN_SMS_WEBHOOK_SECRET` is set, so the relay can refuse texts wxlogin did not ask for.

use hmac::{Hmac, Mac};
use reqwest::header::CONTENT_TYPE;
use serde_json::json;
use sha2::Sha256;
use url::Url;
use wxlogin_storage::Phone;

use super::SmsError;
use crate::config::Secret;

pub const SIGNATURE_HEADER: &str = "X-Wxlogin-Signature";

pub async fn send(
    client: &reqwest::Client,
    url: &Url,
    secret: Option<&Secret>,
    phone: &Phone,
    code: &str,
    now: u64,
) -> Result<(), SmsError> {
    let body = json!({"phone": phone.as_str(), "code": code}).to_string();
    let mut request = client
        .post(url.clone())
        .header(CONTENT_TYPE, "application/json");
    if let Some(secret) = secret {
        request = request.header(SIGNATURE_HEADER, signature(secret.expose(), now, &body));
    }
    let response = request
        .body(body)
        .send()
        .await
        .map_err(SmsError::unreachable)?;
    if !response.status().is_success() {
        return Err(SmsError::Unreachable(format!("HTTP {}", response.status())));
    }
    Ok(())
}

/// The header's value: the time (so the relay can refuse an old request replayed) and the HMAC
/// of the time and the body together.
fn signature(secret: &str, now: u64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("{now}.{body}").as_bytes());
    format!("t={now},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expected value is Python's: `hmac.new(b"a-webhook-secret-0123456789",
    /// b'1700000000.{"phone":"13800000040","code":"123456"}', hashlib.sha256).hexdigest()`.
    #[test]
    fn the_signature_is_hmac_sha256_of_the_time_a_dot_and_the_body() {
        assert_eq!(
            signature(
                "a-webhook-secret-0123456789",
                1_700_000_000,
                r#"{"phone":"13800000040","code":"123456"}"#
            ),
            "t=1700000000,v1=6ddfed59a85b6f75700cc8b8a5921a991f6e6944f3389d09330e868f40b2a331"
        );
    }
}
