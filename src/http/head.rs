//! `HEAD` wherever `GET` is: a HEAD request is routed as the GET it asks about, so it gets the
//! GET's status and headers; the server sends no body for it (actix drops a HEAD's body). What
//! would hold the answer (a long-poll, an event stream, a backup) asks [`is_head`] and answers
//! at once.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest};

/// Marks a request that came as HEAD.
#[derive(Clone, Copy)]
struct Head;

pub async fn head_as_get(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.method() == Method::HEAD {
        req.head_mut().method = Method::GET;
        req.extensions_mut().insert(Head);
    }
    next.call(req).await
}

/// Whether the request came as HEAD: its answer carries no body, so nothing should wait for one.
pub fn is_head(req: &HttpRequest) -> bool {
    req.extensions().contains::<Head>()
}
