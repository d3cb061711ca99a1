//! What actix's extractors refuse, told in our words with our codes: actix's own texts ("Query
//! deserialize error: …", "Content type error") name the framework, not the request. Serde's
//! detail is kept where it names the field at fault.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError, UrlencodedError};
use actix_web::{web, HttpRequest};

use crate::error::ApiError;

/// The limit of JSON bodies.
pub const JSON_LIMIT: usize = 4096;

/// The extractors' configurations, each refusing with [`ApiError`]. Forms are configured where
/// they are read (the OpenID Connect endpoints), with [`form`].
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(JSON_LIMIT)
            .error_handler(|e, _| json(e).into()),
    )
    .app_data(web::QueryConfig::default().error_handler(|e, _| query(e).into()))
    .app_data(web::PathConfig::default().error_handler(|e, _| path(e).into()));
}

/// A query string that doesn't fit the route's parameters.
pub fn query(e: QueryPayloadError) -> ApiError {
    let QueryPayloadError::Deserialize(e) = e else {
        return ApiError::InvalidQuery("the query string is malformed".into());
    };
    let e = e.to_string();
    ApiError::InvalidQuery(match field_named(&e) {
        Some((Problem::Missing, field)) => format!("the query parameter `{field}` is missing"),
        Some((Problem::Twice, field)) => {
            format!("the query parameter `{field}` is given more than once")
        }
        None => format!("a query parameter is malformed: {e}"),
    })
}

/// A path segment that doesn't fit (path segments are text: only a malformed encoding).
pub fn path(e: PathError) -> ApiError {
    let PathError::Deserialize(e) = e else {
        return ApiError::InvalidPath("the path is malformed".into());
    };
    ApiError::InvalidPath(format!("a path segment is malformed: {e}"))
}

/// A JSON body that is too large, of another type, not JSON, or not the route's fields.
pub fn json(e: JsonPayloadError) -> ApiError {
    match e {
        JsonPayloadError::OverflowKnownLength { limit, .. }
        | JsonPayloadError::Overflow { limit } => ApiError::PayloadTooLarge { limit },
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType {
            expected: "application/json",
        },
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            ApiError::InvalidJson(match field_named(&e.to_string()) {
                Some((Problem::Missing, field)) => format!("the body's field `{field}` is missing"),
                Some((Problem::Twice, field)) => {
                    format!("the body's field `{field}` is given more than once")
                }
                None => format!("the body does not fit this endpoint: {e}"),
            })
        }
        JsonPayloadError::Deserialize(e) => {
            ApiError::InvalidJson(format!("the body is not valid JSON: {e}"))
        }
        JsonPayloadError::Serialize(_) | JsonPayloadError::Payload(_) => {
            ApiError::InvalidJson("the body could not be read".into())
        }
        _ => ApiError::InvalidJson("the body could not be read".into()),
    }
}

/// A form body refused, as the OAuth `invalid_request` the OpenID Connect endpoints answer.
pub fn form(e: UrlencodedError, _: &HttpRequest) -> actix_web::Error {
    let description = match e {
        UrlencodedError::Overflow { limit, .. } => format!("the body is larger than {limit} bytes"),
        UrlencodedError::Parse(e) => match field_named(&e.to_string()) {
            Some((Problem::Missing, field)) => format!("the parameter `{field}` is missing"),
            Some((Problem::Twice, field)) => {
                format!("the parameter `{field}` is given more than once")
            }
            None => format!("the form body is malformed: {e}"),
        },
        _ => "the body must be an application/x-www-form-urlencoded form".into(),
    };
    ApiError::oauth("invalid_request", description).into()
}

enum Problem {
    Missing,
    Twice,
}

/// The field serde's message is about, for the two messages that name one.
fn field_named(message: &str) -> Option<(Problem, &str)> {
    let (problem, rest) = if let Some(rest) = message.strip_prefix("missing field `") {
        (Problem::Missing, rest)
    } else {
        (Problem::Twice, message.strip_prefix("duplicate field `")?)
    };
    Some((problem, rest.split_once('`')?.0))
}

/// A body read by hand (where it must wait for a check, or be kept byte for byte), at most
/// `limit` bytes: beyond, `413 payload_too_large`.
pub(super) async fn read_body(payload: web::Payload, limit: usize) -> Result<web::Bytes, ApiError> {
    payload
        .to_bytes_limited(limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge { limit })?
        .map_err(|e| ApiError::BadRequest(format!("reading the body failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Black-box tests can't reach this one: every path parameter is text, which any segment is.
    #[test]
    fn a_path_refusal_is_in_our_words() {
        use serde::de::Error;
        let e = path(PathError::Deserialize(serde::de::value::Error::custom(
            "invalid digit",
        )));
        assert_eq!(e.code(), "invalid_path");
        assert_eq!(e.to_string(), "a path segment is malformed: invalid digit");
    }

    #[test]
    fn serde_messages_name_their_field() {
        assert!(matches!(
            field_named("missing field `phone` at line 1 column 2"),
            Some((Problem::Missing, "phone"))
        ));
        assert!(matches!(
            field_named("duplicate field `code`"),
            Some((Problem::Twice, "code"))
        ));
        assert!(field_named("invalid digit found in string").is_none());
        assert!(field_named("missing field `unterminated").is_none());
    }
}
