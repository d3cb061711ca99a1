//! The parameters of a request a browser brings: the query of a GET, or the form body of a
//! POST. OpenID Connect Core §3.1.2.1 asks both of the authorization endpoint, RP-Initiated
//! Logout §2 of the end-session endpoint.

use actix_web::{web, HttpMessage, HttpRequest};
use serde::de::DeserializeOwned;

/// Longest form body taken: far more than any honest request, little to parse.
pub(super) const MAX_BODY: usize = 16 * 1024;

/// The request's parameters as sent (still form-encoded), or `None` for a POST whose body is
/// not a form.
pub(super) fn raw<'a>(req: &'a HttpRequest, body: &'a [u8]) -> Option<&'a str> {
    if req.method() != actix_web::http::Method::POST {
        return Some(req.query_string());
    }
    if req.content_type() != "application/x-www-form-urlencoded" {
        return None;
    }
    std::str::from_utf8(body).ok()
}

/// `raw` read into `T`; `None` when it doesn't parse (a parameter given twice, say).
pub(super) fn parse<T: DeserializeOwned>(raw: &str) -> Option<T> {
    web::Query::<T>::from_query(raw)
        .ok()
        .map(web::Query::into_inner)
}

/// `raw` as decoded name-value pairs, in order, except those named in `dropped`.
/// `pairs` as a form-encoded query string: what goes into a `Location` is encoded anew, never
/// the raw text a client sent.
pub(super) fn encode(pairs: Vec<(String, String)>) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

pub(super) fn pairs(raw: &str, dropped: &[&str]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.as_bytes())
        .filter(|(name, _)| !dropped.contains(&name.as_ref()))
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}
