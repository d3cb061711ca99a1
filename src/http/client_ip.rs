//! The client's IP address, for the login log, the confirmation request and the per-IP limits.

use std::future::{ready, Ready};
use std::net::{IpAddr, SocketAddr};

use actix_web::dev::Payload;
use actix_web::http::header::HeaderName;
use actix_web::{web, FromRequest, HttpRequest};

use super::rate_limit;
use super::AppState;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The peer's address; behind a trusted proxy (`WXLOGIN_TRUST_PROXY`), the last
/// `X-Forwarded-For` entry, which is the one that proxy added and the client can't forge.
/// IPv4-mapped IPv6 addresses (a dual-stack listener's) are read as the IPv4 address.
pub struct ClientIp(Option<IpAddr>);

impl ClientIp {
    /// The whole address, as the login log and the confirmation request show it.
    pub fn shown(&self) -> String {
        self.0.map_or_else(|| "unknown".into(), |ip| ip.to_string())
    }

    /// The address, if one could be read.
    pub fn addr(&self) -> Option<IpAddr> {
        self.0
    }

    /// What the per-IP limits count this client under (an IPv6 client by its /64).
    pub fn limit_key(&self) -> String {
        self.0.map_or_else(|| "unknown".into(), rate_limit::ip_key)
    }
}

impl FromRequest for ClientIp {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let trust_proxy = req
            .app_data::<web::Data<AppState>>()
            .is_some_and(|s| s.trust_proxy);
        let forwarded = trust_proxy
            .then(|| {
                last_forwarded(
                    req.headers()
                        .get_all(X_FORWARDED_FOR)
                        .map(|line| line.as_bytes()),
                )
            })
            .flatten();
        // An unreadable last entry falls back to the peer (the proxy), never to an earlier
        // entry: those are the client's to write.
        let ip = forwarded.or_else(|| req.peer_addr().map(|addr| addr.ip()));
        ready(Ok(ClientIp(ip.map(|ip| ip.to_canonical()))))
    }
}

/// The last entry of `X-Forwarded-For`'s header lines joined in order, as HTTP defines a
/// repeated header: a proxy that appends its own line is read, not the client's line before
/// it. The proxy may write a port (`203.0.113.7:41234`, `[2001:db8::1]:443`).
fn last_forwarded<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Option<IpAddr> {
    let joined = lines.collect::<Vec<_>>().join(&b","[..]);
    let last = joined.rsplit(|&b| b == b',').next()?;
    let last = std::str::from_utf8(last).ok()?.trim();
    last.parse::<IpAddr>()
        .or_else(|_| last.parse::<SocketAddr>().map(|addr| addr.ip()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last(lines: &[&str]) -> Option<IpAddr> {
        last_forwarded(lines.iter().map(|line| line.as_bytes()))
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn the_last_entry_of_the_last_line_wins() {
        assert_eq!(last(&["198.51.100.7, 203.0.113.9"]), ip("203.0.113.9"));
        // The client's own line comes first; the proxy appended its own.
        assert_eq!(last(&["198.51.100.7", "203.0.113.9"]), ip("203.0.113.9"));
        assert_eq!(
            last(&["1.1.1.1, 2.2.2.2", " 203.0.113.9 "]),
            ip("203.0.113.9")
        );
        assert_eq!(last(&["2001:db8::1"]), ip("2001:db8::1"));
    }

    #[test]
    fn ports_are_dropped() {
        assert_eq!(last(&["203.0.113.7:41234"]), ip("203.0.113.7"));
        assert_eq!(last(&["[2001:db8::1]:443"]), ip("2001:db8::1"));
    }

    #[test]
    fn an_unreadable_last_entry_is_none_not_an_earlier_one() {
        for lines in [
            &["198.51.100.7", "unknown"][..],
            &["198.51.100.7,"],
            &["198.51.100.7", ""],
            &[],
        ] {
            assert_eq!(last(lines), None, "{lines:?}");
        }
        // A client line that is not even text does not hide the proxy's.
        let lines: [&[u8]; 2] = [b"\xff\xfe", b"203.0.113.9"];
        assert_eq!(last_forwarded(lines.into_iter()), ip("203.0.113.9"));
    }
}
