//! Every error the HTTP API answers, and the one place each becomes a status and a JSON body
//! `{"error": code, "message": text}`. Causes are logged, never shown to the client.
//! OAuth errors also carry `error_description`, the field RFC 6749 gives their text.

use std::borrow::Cow;
use std::time::Duration;

use actix_web::body::BoxBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;
use wxlogin_actors::SceneError;
use wxlogin_storage::StoreError;

use crate::http::Refused;
use crate::sms::SmsError;
use crate::wechat::api::WechatError;
use crate::wechat::envelope::EnvelopeError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no such scene")]
    SceneNotFound,
    #[error("this QR code has expired; ask for a new one")]
    SceneExpired,
    #[error("the scene is not waiting for a phone binding")]
    NotAwaitingBind,
    #[error("not a mainland China mobile number")]
    InvalidPhone,
    #[error("the verification code is wrong")]
    InvalidCode,
    #[error("too many requests; wait before asking again")]
    TooManyRequests { retry_after: Duration },
    #[error("too many wrong codes; scan a new QR code")]
    TooManyAttempts,
    #[error("this phone is bound to another WeChat user")]
    PhoneTaken,
    #[error("the WeChat user unfollowed the official account after scanning; scan a new QR code")]
    Unfollowed,
    #[error("a valid bearer session token is required")]
    Unauthorized,
    #[error("this login was started by another browser: send the scene_secret that POST /api/qrcode answered as the X-Scene-Secret header, or the cookie it set")]
    NotSceneOwner,
    #[error("a login can't be started from another site's page")]
    CrossSite,
    #[error(
        "an access token is required: Authorization: Bearer TOKEN, or access_token in a form body"
    )]
    AccessTokenRequired,
    #[error("this origin may not read this endpoint: register it as an origin of one of the client's redirect_uris or in its allowed_origins")]
    OriginNotAllowed,
    #[error("{0}")]
    Callback(#[from] EnvelopeError),
    #[error("this signature came before with another body")]
    ReplayedSignature,
    #[error("pushes are not accepted from this address")]
    SenderNotAllowed,
    #[error("WeChat's callback addresses are not known yet; try again shortly")]
    CallbackAddressesUnknown,
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// A query string the route's parameters can't be read from.
    #[error("{0}")]
    InvalidQuery(String),
    /// A path segment the route can't read.
    #[error("{0}")]
    InvalidPath(String),
    /// A JSON body that doesn't parse, or doesn't fit the route's fields.
    #[error("{0}")]
    InvalidJson(String),
    #[error("the body must be {expected}, sent with that Content-Type")]
    UnsupportedMediaType { expected: &'static str },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("too many login QR codes are live; try again shortly")]
    Busy,
    #[error("not ready: {0}")]
    NotReady(String),
    #[error("WeChat is unavailable; try again shortly")]
    WechatUnavailable(#[from] WechatError),
    #[error("the verification code could not be sent; try again shortly")]
    SmsUnavailable(SmsError),
    #[error("too many codes were sent to this number; wait before asking again")]
    SmsRateLimited(SmsError),
    #[error("the SMS gateway cannot send to this number; check it")]
    PhoneRefused(SmsError),
    #[error("storage is unavailable (the disk may be full); try again shortly")]
    StorageUnavailable(StoreError),
    #[error("internal error")]
    Storage(StoreError),
    #[error("internal error")]
    Internal(String),
    /// An error of an OpenID Connect endpoint (token, userinfo, revocation, introspection),
    /// with RFC 6749's or RFC 6750's `error` code.
    #[error("{description}")]
    OAuth {
        code: &'static str,
        description: Cow<'static, str>,
    },
}

impl ApiError {
    pub fn oauth(code: &'static str, description: impl Into<Cow<'static, str>>) -> Self {
        ApiError::OAuth {
            code,
            description: description.into(),
        }
    }
}

/// The body of every error answer. OAuth errors repeat `message` as `error_description`, the
/// field RFC 6749 reads.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code to act on, e.g. `scene_not_found`.
    #[schema(examples("scene_not_found"))]
    pub error: Cow<'static, str>,
    /// What went wrong, for people.
    pub message: Cow<'static, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<Cow<'static, str>>,
}

impl ApiError {
    /// The `error` code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::SceneNotFound => "scene_not_found",
            ApiError::SceneExpired => "scene_expired",
            ApiError::NotAwaitingBind => "not_awaiting_bind",
            ApiError::InvalidPhone => "invalid_phone",
            ApiError::InvalidCode => "invalid_code",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::TooManyAttempts => "too_many_attempts",
            ApiError::PhoneTaken => "phone_taken",
            ApiError::Unfollowed => "unfollowed",
            ApiError::Unauthorized | ApiError::AccessTokenRequired => "unauthorized",
            ApiError::OriginNotAllowed => "origin_not_allowed",
            ApiError::NotSceneOwner => "not_scene_owner",
            ApiError::CrossSite => "cross_site_request",
            ApiError::Callback(EnvelopeError::BadSignature) => "invalid_signature",
            ApiError::Callback(EnvelopeError::StaleTimestamp) => "stale_timestamp",
            ApiError::Callback(EnvelopeError::EncryptionRequired) => "encryption_required",
            ApiError::Callback(_) => "invalid_message",
            ApiError::ReplayedSignature => "replayed_signature",
            ApiError::SenderNotAllowed => "address_not_allowed",
            ApiError::CallbackAddressesUnknown => "callback_addresses_unavailable",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::InvalidPath(_) => "invalid_path",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::UnsupportedMediaType { .. } => "unsupported_media_type",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::Busy => "busy",
            ApiError::NotReady(_) => "not_ready",
            ApiError::WechatUnavailable(_) => "wechat_unavailable",
            ApiError::SmsUnavailable(_) => "sms_unavailable",
            ApiError::SmsRateLimited(_) => "sms_rate_limited",
            ApiError::PhoneRefused(_) => "invalid_phone",
            ApiError::StorageUnavailable(_) => "storage_unavailable",
            ApiError::Storage(_) | ApiError::Internal(_) => "internal",
            ApiError::OAuth { code, .. } => code,
        }
    }
}

/// A write storage cannot take now (a full disk) is a 503 the client may retry; anything else
/// about storage is a 500.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => ApiError::StorageUnavailable(e),
            e => ApiError::Storage(e),
        }
    }
}

/// A limit reached is 429 with the wait; a shared limit that could not be checked refuses as
/// storage does.
impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Wait(retry_after) => ApiError::TooManyRequests { retry_after },
            Refused::Unchecked(e) => e.into(),
        }
    }
}

/// The provider's answer, told to the browser as what it can act on: wait, fix the number, or
/// try later (an empty account, a bad key or a network fault are the operator's to fix).
impl From<SmsError> for ApiError {
    fn from(e: SmsError) -> Self {
        match e {
            SmsError::RateLimited(_) => ApiError::SmsRateLimited(e),
            SmsError::InvalidNumber(_) => ApiError::PhoneRefused(e),
            SmsError::OutOfBalance(_) | SmsError::Refused(_) | SmsError::Unreachable(_) => {
                ApiError::SmsUnavailable(e)
            }
        }
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(e: actix::MailboxError) -> Self {
        ApiError::Internal(format!("scene supervisor: {e}"))
    }
}

impl From<SceneError> for ApiError {
    fn from(e: SceneError) -> Self {
        match e {
            // Callers of the HTTP API never scan or confirm; a scene in any other state is
            // simply not awaiting them.
            SceneError::AlreadyScanned
            | SceneError::NotAwaitingBind
            | SceneError::NotAwaitingConfirmation => ApiError::NotAwaitingBind,
            SceneError::NoFreeLoginCode => ApiError::Busy,
            SceneError::CodeCooldown { retry_after } => ApiError::TooManyRequests { retry_after },
            SceneError::InvalidCode => ApiError::InvalidCode,
            SceneError::TooManyAttempts => ApiError::TooManyAttempts,
            SceneError::PhoneTaken => ApiError::PhoneTaken,
            SceneError::Unfollowed => ApiError::Unfollowed,
            SceneError::Store(e) => e.into(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::SceneNotFound | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::SceneExpired => StatusCode::GONE,
            ApiError::NotAwaitingBind | ApiError::PhoneTaken | ApiError::Unfollowed => {
                StatusCode::CONFLICT
            }
            ApiError::InvalidPhone | ApiError::PhoneRefused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Callback(
                EnvelopeError::BadSignature
                | EnvelopeError::StaleTimestamp
                | EnvelopeError::EncryptionRequired,
            )
            | ApiError::ReplayedSignature
            | ApiError::SenderNotAllowed
            | ApiError::NotSceneOwner
            | ApiError::CrossSite
            | ApiError::OriginNotAllowed => StatusCode::FORBIDDEN,
            ApiError::InvalidCode
            | ApiError::Callback(_)
            | ApiError::InvalidQuery(_)
            | ApiError::InvalidPath(_)
            | ApiError::InvalidJson(_)
            | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. }
            | ApiError::TooManyAttempts
            | ApiError::SmsRateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unauthorized | ApiError::AccessTokenRequired => StatusCode::UNAUTHORIZED,
            ApiError::OAuth {
                code: "invalid_client" | "invalid_token",
                ..
            } => StatusCode::UNAUTHORIZED,
            ApiError::OAuth { .. } => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Busy
            | ApiError::CallbackAddressesUnknown
            | ApiError::NotReady(_)
            | ApiError::WechatUnavailable(_)
            | ApiError::SmsUnavailable(_)
            | ApiError::StorageUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Storage(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            ApiError::WechatUnavailable(e) => tracing::warn!(error = %e, "WeChat call failed"),
            ApiError::SmsUnavailable(e)
            | ApiError::SmsRateLimited(e)
            | ApiError::PhoneRefused(e) => {
                tracing::warn!(error = %e, "SMS delivery failed")
            }
            ApiError::Storage(e) => {
                tracing::error!(error = %e, source = ?std::error::Error::source(e), "storage failed")
            }
            ApiError::StorageUnavailable(e) => tracing::warn!(error = %e, "storage unavailable"),
            ApiError::Internal(e) => tracing::error!(error = %e, "internal error"),
            _ => {}
        }
        let mut response = HttpResponse::build(status);
        match self {
            ApiError::TooManyRequests { retry_after } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs(*retry_after)));
            }
            ApiError::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            // RFC 6750 §3.1: no error code for a request that sent no credentials.
            ApiError::AccessTokenRequired => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"wxlogin\""));
            }
            ApiError::OAuth { code, description } => {
                match *code {
                    "invalid_client" => response
                        .insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"wxlogin\"")),
                    "invalid_token" => response.insert_header((
                        header::WWW_AUTHENTICATE,
                        "Bearer realm=\"wxlogin\", error=\"invalid_token\"",
                    )),
                    _ => &mut response,
                };
                return response
                    .insert_header((header::CACHE_CONTROL, "no-store"))
                    .json(ErrorBody {
                        error: Cow::Borrowed(code),
                        message: description.clone(),
                        error_description: Some(description.clone()),
                    });
            }
            _ => {}
        }
        response.json(ErrorBody {
            error: Cow::Borrowed(self.code()),
            message: Cow::Owned(self.to_string()),
            error_description: None,
        })
    }
}

/// Middleware hook: errors raised outside our handlers (an unknown route, a wrong method,
/// a body actix refused) get the same JSON shape as ours. Our own answers, JSON or a page
/// (the authorization endpoint's), pass as they are.
pub fn json_error_body<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let ours = res.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html")
    });
    if ours {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let reason = status.canonical_reason().unwrap_or("error");
    let body = ErrorBody {
        error: Cow::Owned(reason.to_ascii_lowercase().replace([' ', '-'], "_")),
        message: Cow::Borrowed(reason),
        error_description: None,
    };
    let body = serde_json::to_string(&body).expect("an error body serializes");
    let (req, mut res) = res.into_parts();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let res = res.set_body(BoxBody::new(body));
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, res).map_into_right_body(),
    ))
}

/// `Retry-After`'s seconds for a wait: rounded up, at least 1 (0 would invite a retry at once).
pub fn retry_after_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}
