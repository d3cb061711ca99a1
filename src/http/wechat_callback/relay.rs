//! `WXLOGIN_UPSTREAM_URL`: the account's own server behind wxlogin. A push that is not
//! wxlogin's business is sent on exactly as WeChat sent it (POST, WeChat's query string with
//! its signatures, the body bytes, the content type), so the upstream's own signature and
//! safe-mode checks pass unchanged, and its answer goes back to WeChat verbatim. Only pushes
//! that passed every one of wxlogin's checks get here, each once (a redelivery is answered by
//! wxlogin). WeChat waits 5 s: an upstream that has not answered within the budget, answers a
//! 5xx or a redirect, or cannot be reached, leaves the push answered `success`, so the user sees
//! nothing rather than WeChat's "该公众号暂时无法提供服务".

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::{HeaderValue, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use url::Url;

use crate::config::{Upstream, UpstreamForward};
use crate::metrics::Metrics;

/// A passive reply is a few KiB at most (eight news articles); anything near this is broken.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct Relay {
    client: reqwest::Client,
    url: Url,
    forward: UpstreamForward,
    budget: Duration,
}

/// A push as WeChat sent it, to be sent on unchanged.
#[derive(Clone)]
pub struct Push {
    query: String,
    content_type: Option<HeaderValue>,
    body: Bytes,
    /// When it reached wxlogin: WeChat's clock for the answer started then.
    arrived: Instant,
}

impl Push {
    pub fn new(request: &HttpRequest, body: Bytes, arrived: Instant) -> Self {
        Self {
            query: request.query_string().to_owned(),
            content_type: request.headers().get(CONTENT_TYPE).cloned(),
            body,
            arrived,
        }
    }
}

/// The upstream's answer, to pass on as it came.
struct Answer {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("no answer within the budget")]
    Timeout,
    #[error("answered HTTP {0}")]
    Failed(StatusCode),
    #[error("answered more than {MAX_ANSWER_BYTES} bytes")]
    Oversized,
    #[error("unreachable: {0}")]
    Unreachable(reqwest::Error),
}

impl RelayError {
    /// The `outcome` label of `wxlogin_upstream_total`.
    fn label(&self) -> &'static str {
        match self {
            RelayError::Timeout => "timeout",
            RelayError::Failed(_) | RelayError::Oversized => "failed",
            RelayError::Unreachable(_) => "unreachable",
        }
    }
}

impl Relay {
    pub fn new(upstream: &Upstream) -> Self {
        let client = reqwest::Client::builder()
            // A redirect would resend a signed push wherever it points; a server answering
            // WeChat never redirects, so one is a failure.
            .redirect(reqwest::redirect::Policy::none())
            // The upstream is a server of the operator's: no proxy from the environment between.
            .no_proxy()
            .build()
            .expect("a TLS backend is compiled in");
        Self {
            client,
            url: upstream.url.clone(),
            forward: upstream.forward,
            budget: upstream.budget,
        }
    }

    /// Sends the account's push on and answers WeChat with the upstream's answer, or with
    /// `success` (after a warning and a count) when there is none in time.
    pub async fn relay(&self, push: &Push, metrics: &Metrics) -> Option<HttpResponse> {
        let answer = self.send(push, metrics, "relayed").await?;
        let mut response = HttpResponse::build(answer.status);
        if let Some(content_type) = answer.content_type {
            response.insert_header((CONTENT_TYPE, content_type));
        }
        Some(response.body(answer.body))
    }

    /// With `WXLOGIN_UPSTREAM_FORWARD=all`, sends a copy of one of wxlogin's own pushes on in
    /// the background: the upstream sees every follow and scan, and wxlogin's reply waits for
    /// nothing.
    pub fn copy(&self, push: Push, metrics: Arc<Metrics>) {
        if self.forward == UpstreamForward::All {
            let relay = self.clone();
            actix_web::rt::spawn(async move { relay.send(&push, &metrics, "copied").await });
        }
    }

    async fn send(
        &self,
        push: &Push,
        metrics: &Metrics,
        delivered: &'static str,
    ) -> Option<Answer> {
        let deadline = tokio::time::Instant::from_std(push.arrived + self.budget);
        let sent = tokio::time::timeout_at(deadline, self.exchange(push)).await;
        match sent.unwrap_or(Err(RelayError::Timeout)) {
            Ok(answer) => {
                metrics.upstream(delivered);
                Some(answer)
            }
            Err(e) => {
                metrics.upstream(e.label());
                // Neither the query string (signatures) nor the URL (it may hold a password).
                tracing::warn!(
                    upstream = self.url.host_str().unwrap_or_default(),
                    error = %e,
                    "the upstream did not take a push: WeChat was answered `success`"
                );
                None
            }
        }
    }

    async fn exchange(&self, push: &Push) -> Result<Answer, RelayError> {
        let mut url = self.url.clone();
        url.set_query(
            Some(&push.query)
                .filter(|q| !q.is_empty())
                .map(String::as_str),
        );
        let mut request = self.client.post(url).body(push.body.clone());
        if let Some(content_type) = &push.content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type.as_bytes());
        }
        let mut response = request.send().await.map_err(unreachable)?;
        let status = StatusCode::from_u16(response.status().as_u16())
            .map_err(|_| RelayError::Failed(StatusCode::BAD_GATEWAY))?;
        if status.is_server_error() || status.is_redirection() {
            return Err(RelayError::Failed(status));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(RelayError::Oversized);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            content_type,
            body: body.freeze(),
        })
    }
}

/// reqwest's errors name the URL, and with it WeChat's query string: the signatures stay out of
/// the log.
fn unreachable(e: reqwest::Error) -> RelayError {
    RelayError::Unreachable(e.without_url())
}
