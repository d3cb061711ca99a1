//! How a client proves who it is at the token, revocation and introspection endpoints:
//! HTTP Basic (`client_secret_basic`), `client_id` and `client_secret` in the body
//! (`client_secret_post`), or `client_id` alone for a public client (`none`).

use actix_web::http::header;
use actix_web::HttpRequest;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde::Deserialize;

use crate::error::ApiError;
use crate::oidc::clients::Client;
use crate::oidc::Provider;

/// Standard base64, padded or not: libraries differ, and padding proves nothing.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The body's part of client authentication, flattened into each endpoint's form.
#[derive(Deserialize, utoipa::ToSchema)]
pub(in crate::http) struct BodyCredentials {
    /// `client_secret_post`, or a public client's id alone; with Basic, the same id or none.
    client_id: Option<String>,
    /// `client_secret_post`: never together with Basic.
    client_secret: Option<String>,
}

/// The client the request authenticates as, from its `Authorization` header or the body's
/// `client_id` and `client_secret`. An `Authorization` header that is not well-formed Basic
/// fails, rather than leaving the body's `client_id` to name a public client on its own.
pub(super) fn authenticate<'a>(
    p: &'a Provider,
    req: &HttpRequest,
    body: &BodyCredentials,
) -> Result<&'a Client, ApiError> {
    let (client_id, client_secret) = (body.client_id.as_deref(), body.client_secret.as_deref());
    let failed = || ApiError::oauth("invalid_client", "client authentication failed");
    let mut headers = req.headers().get_all(header::AUTHORIZATION);
    let (id, secret) = match (headers.next(), headers.next()) {
        (None, _) => (
            client_id.ok_or_else(failed)?.to_owned(),
            client_secret.map(str::to_owned),
        ),
        (Some(value), None) => {
            if client_secret.is_some() {
                return Err(ApiError::oauth(
                    "invalid_request",
                    "use one client authentication method, not two",
                ));
            }
            let (id, secret) = value
                .to_str()
                .ok()
                .and_then(basic_credentials)
                .ok_or_else(failed)?;
            if client_id.is_some_and(|c| c != id) {
                return Err(failed());
            }
            (id, Some(secret))
        }
        (Some(_), Some(_)) => return Err(failed()),
    };
    p.clients
        .get(&id)
        .filter(|client| client.authenticates(secret.as_deref()))
        .ok_or_else(failed)
}

/// `Basic base64(form-encoded id ":" form-encoded secret)` (RFC 6749 §2.3.1), decoded.
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(BASE64.decode(encoded.trim()).ok()?).ok()?;
    // Form-encoding turns every ':' of the id into %3A: the first one separates.
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

/// application/x-www-form-urlencoded decoding of one value: `+` is a space, `%XX` a byte, and
/// the bytes UTF-8. A `%` without two hex digits after it is malformed, not taken literally.
fn form_decode(s: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        match b {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(rest.get(..2)?).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &rest[2..];
            }
            b => bytes.push(b),
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = |raw: &str| format!("Basic {}", BASE64.encode(raw));
        assert_eq!(
            basic_credentials(&header("my%2Dshop%5F1%2E0%7E:s%25+%2B%3A%C3%BC")),
            Some(("my-shop_1.0~".into(), "s% +:ü".into()))
        );
        // Unencoded unreserved characters are their own encoding.
        assert_eq!(
            basic_credentials(&header("shop-1:se.cr_et~")),
            Some(("shop-1".into(), "se.cr_et~".into()))
        );
        // Padding or none; any case of the scheme.
        let unpadded = format!("basic {}", header("a:b")[6..].trim_end_matches('='));
        assert_eq!(basic_credentials(&unpadded), Some(("a".into(), "b".into())));
        for malformed in [
            header("no-colon"),
            header("a:%zz"),
            header("a:%4"),
            header("%ff:b"),
            "Basic !!!".into(),
            "Bearer abc".into(),
            "Basic".into(),
        ] {
            assert_eq!(basic_credentials(&malformed), None, "{malformed}");
        }
    }
}
