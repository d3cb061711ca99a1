//! One tracing span per request, carrying a request id that is also sent back as
//! `X-Request-Id`; and the request's latency, by route, for the metrics.

use std::borrow::Cow;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use rand::Rng;
use tracing::Instrument;
use wxlogin_storage::OpenId;

use super::AppState;
use crate::audit::Short;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub async fn trace_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = format!("{:016x}", rand::thread_rng().gen::<u64>());
    let path = loggable_path(req.path());
    let span = tracing::info_span!("request", id = %id, method = %req.method(), path = %path);
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let started = Instant::now();
    let mut res = next.call(req).instrument(span.clone()).await?;
    let elapsed = started.elapsed();
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    if let Some(state) = state {
        state.metrics.request(&route, elapsed);
    }
    span.in_scope(|| {
        tracing::debug!(
            status = res.status().as_u16(),
            micros = elapsed.as_micros() as u64,
            "request done"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(res)
}

/// Scene ids in request paths are bearer secrets for their scene's lifetime: logs show the
/// first few characters, enough to follow one login through the log and useless to poll it.
/// Openids in admin paths are shown as the audit trail shows them ([`Short`]).
fn loggable_path(path: &str) -> Cow<'_, str> {
    const SCENE_ROUTES: &str = "/api/qrcode/";
    const BINDING_ROUTES: &str = "/admin/bindings/";
    const SHOWN: usize = 6;
    if let Some(openid) = path.strip_prefix(BINDING_ROUTES) {
        return match OpenId::parse(openid) {
            Some(openid) => Cow::Owned(format!("{BINDING_ROUTES}{}", Short(&openid))),
            None => Cow::Borrowed(BINDING_ROUTES),
        };
    }
    let Some(rest) = path.strip_prefix(SCENE_ROUTES) else {
        return Cow::Borrowed(path);
    };
    let (id, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match id.get(..SHOWN) {
        Some(shown) => Cow::Owned(format!("{SCENE_ROUTES}{shown}…{tail}")),
        None => Cow::Borrowed(path),
    }
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn scene_ids_are_cut_short_in_logged_paths() {
        let id = "AbCdEfGhIjKlMnOpQrStUvWxYz012345";
        assert_eq!(
            loggable_path(&format!("/api/qrcode/{id}/status")),
            "/api/qrcode/AbCdEf…/status"
        );
        assert_eq!(
            loggable_path(&format!("/api/qrcode/{id}")),
            "/api/qrcode/AbCdEf…"
        );
        assert_eq!(loggable_path("/api/qrcode"), "/api/qrcode");
        assert_eq!(loggable_path("/api/qrcode/ab/sms"), "/api/qrcode/ab/sms");
        assert_eq!(loggable_path("/api/me"), "/api/me");
    }

    #[test]
    fn openids_are_cut_short_in_admin_paths() {
        assert_eq!(
            loggable_path("/admin/bindings/o6_bmjrPTlm6_2sgVt7hMZOPfL2M"),
            "/admin/bindings/…OPfL2M"
        );
        assert_eq!(loggable_path("/admin/bindings/no%20id"), "/admin/bindings/");
    }
}
