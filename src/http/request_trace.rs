//! One tracing span per request, carrying a request id that is also sent back as
//! `X-Request-Id`; and the request's latency, by route, for the metrics.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use rand::Rng;
use tracing::Instrument;

use super::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub async fn trace_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = format!("{:016x}", rand::thread_rng().gen::<u64>());
    let span = tracing::info_span!("request", id = %id, method = %req.method(), path = %req.path());
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
