//! The client's IP address, for the login log.

use std::future::{ready, Ready};
use std::net::IpAddr;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};

use super::AppState;

/// The peer's address; behind a trusted proxy (`WXLOGIN_TRUST_PROXY`), the last
/// `X-Forwarded-For` entry, which is the one that proxy added and the client can't forge.
pub struct ClientIp(pub String);

impl FromRequest for ClientIp {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let trust_proxy = req
            .app_data::<web::Data<AppState>>()
            .is_some_and(|s| s.trust_proxy);
        let forwarded = trust_proxy
            .then(|| {
                req.headers()
                    .get("x-forwarded-for")?
                    .to_str()
                    .ok()?
                    .rsplit(',')
                    .next()?
                    .trim()
                    .parse::<IpAddr>()
                    .ok()
            })
            .flatten();
        let ip = forwarded.or_else(|| req.peer_addr().map(|addr| addr.ip()));
        ready(Ok(ClientIp(
            ip.map_or_else(|| "unknown".into(), |ip| ip.to_string()),
        )))
    }
}
