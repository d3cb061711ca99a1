//! CORS for the endpoints a browser app on another origin reads: discovery and the JWKS (public
//! documents: any origin), and the token, userinfo and revocation endpoints (the origins the
//! clients file registers, see `Clients::allows_origin`). Introspection is for confidential
//! clients' servers and authorization is a navigation: neither gets CORS, nor does `/api/*`.
//!
//! Credentials (`Access-Control-Allow-Credentials`) are never allowed: an app sends its tokens in
//! headers or bodies, and no cookie of ours may ride along on another site's request.

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;

use actix_web::body::BoxBody;
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, HttpResponse, ResponseError};

use crate::error::ApiError;
use crate::http::AppState;
use crate::oidc::clients::Clients;

/// How long a browser may reuse a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// Who may read an endpoint from another origin.
#[derive(Clone, Copy)]
enum Readers {
    Anyone,
    RegisteredOrigins,
}

/// The CORS policy of one resource: its readers and the methods it answers.
#[derive(Clone, Copy)]
pub(super) struct Cors {
    readers: Readers,
    methods: &'static str,
}

impl Cors {
    /// A public document: `Access-Control-Allow-Origin: *`, on every answer, so that a shared
    /// cache's copy serves every origin.
    pub(super) fn anyone(methods: &'static str) -> Self {
        Self {
            readers: Readers::Anyone,
            methods,
        }
    }

    /// An endpoint only registered origins may read; others get no CORS header at all.
    pub(super) fn registered_origins(methods: &'static str) -> Self {
        Self {
            readers: Readers::RegisteredOrigins,
            methods,
        }
    }

    /// The `Access-Control-Allow-Origin` for a request from `origin`: `None` if it may not
    /// read us.
    fn allowed_origin(
        &self,
        clients: &Clients,
        origin: Option<&HeaderValue>,
    ) -> Option<HeaderValue> {
        match self.readers {
            Readers::Anyone => Some(HeaderValue::from_static("*")),
            Readers::RegisteredOrigins => {
                let origin = origin?;
                clients
                    .allows_origin(origin.to_str().ok()?)
                    .then(|| origin.clone())
            }
        }
    }

    fn vary(&self, headers: &mut HeaderMap) {
        if let Readers::RegisteredOrigins = self.readers {
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
}

/// A preflight: an `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
fn is_preflight(req: &ServiceRequest) -> bool {
    req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

impl<S> Transform<S, ServiceRequest> for Cors
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = actix_web::Error>
        + 'static,
    S::Future: 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Transform = CorsService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(CorsService {
            service: Rc::new(service),
            cors: *self,
        }))
    }
}

pub(super) struct CorsService<S> {
    service: Rc<S>,
    cors: Cors,
}

type Answer = Pin<Box<dyn Future<Output = Result<ServiceResponse<BoxBody>, actix_web::Error>>>>;

impl<S> Service<ServiceRequest> for CorsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = actix_web::Error>
        + 'static,
    S::Future: 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Future = Answer;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let provider = req
            .app_data::<web::Data<AppState>>()
            .and_then(|state| state.oidc.clone());
        // Without a provider the endpoint is not found, preflight or not.
        let Some(provider) = provider else {
            return Box::pin(self.service.call(req));
        };
        let cors = self.cors;
        let allowed = cors.allowed_origin(&provider.clients, req.headers().get(header::ORIGIN));
        if is_preflight(&req) {
            return Box::pin(ready(Ok(preflight(cors, req, allowed))));
        }
        let service = self.service.clone();
        Box::pin(async move {
            let mut res = service.call(req).await?;
            let headers = res.headers_mut();
            cors.vary(headers);
            if let Some(origin) = allowed {
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                // So that an app can read why userinfo refused its token.
                headers.insert(
                    header::ACCESS_CONTROL_EXPOSE_HEADERS,
                    HeaderValue::from_static("WWW-Authenticate"),
                );
            }
            Ok(res)
        })
    }
}

/// The answer to a preflight: what may be sent, or, to an origin that may not read us, a 403
/// without any CORS header (which the browser takes as a refusal).
fn preflight(cors: Cors, req: ServiceRequest, allowed: Option<HeaderValue>) -> ServiceResponse {
    let mut res = match allowed {
        Some(origin) => HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, cors.methods))
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "Authorization, Content-Type",
            ))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE))
            .finish(),
        None => ApiError::OriginNotAllowed.error_response(),
    };
    cors.vary(res.headers_mut());
    req.into_response(res)
}
