//! `GET /oauth/authorize`: the authorization code flow's front door (OpenID Connect Core §3.1.2).
//!
//! An unknown client or a redirect URI not registered exactly gets a 400 page and never a
//! redirect, so nobody can bounce users to a site of their choosing. Other errors go back to the
//! client as `error=` (RFC 6749 §4.1.2.1). A request with a live session gets a code at once;
//! one without is sent to the login page, which comes back here once the user is logged in.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use url::Url;

use super::provider;
use crate::error::ApiError;
use crate::http::page::escape_html;
use crate::http::session::current_session;
use crate::http::AppState;
use crate::oidc::codes::{valid_challenge, Grant, Scope};

/// Longer than this, a `nonce` or `state` is not a nonce but an attempt to bloat tokens.
const MAX_OPAQUE_LEN: usize = 512;

#[derive(Deserialize)]
pub(super) struct AuthorizeQuery {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    prompt: Option<String>,
}

pub(super) async fn authorize(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let p = provider(&state)?;
    // Read here rather than by an extractor: a query that doesn't parse (a parameter twice, say)
    // can't be trusted to name a redirect URI either, so it gets the page too.
    let Ok(query) = web::Query::<AuthorizeQuery>::from_query(req.query_string()) else {
        return Ok(refusal("The login request is malformed.".into()));
    };
    let q = query.into_inner();
    let Some(client) = q.client_id.as_deref().and_then(|id| p.clients.get(id)) else {
        return Ok(refusal(
            "The application asking you to log in is not registered here.".into(),
        ));
    };
    let Some(redirect_uri) = q
        .redirect_uri
        .as_deref()
        .filter(|uri| client.allows_redirect(uri))
    else {
        return Ok(refusal(format!(
            "The address to return to is not one that {} registered.",
            escape_html(&client.name)
        )));
    };
    let back = Back {
        redirect_uri,
        state: q.state.as_deref(),
    };
    if q.response_type.as_deref() != Some("code") {
        return Ok(back.error("unsupported_response_type", "only response_type=code"));
    }
    let Some(scope) = q.scope.as_deref().and_then(Scope::parse) else {
        return Ok(back.error("invalid_scope", "scope must include openid"));
    };
    let too_long = |s: &Option<String>| s.as_ref().is_some_and(|s| s.len() > MAX_OPAQUE_LEN);
    if too_long(&q.nonce) || too_long(&q.state) {
        return Ok(back.error("invalid_request", "nonce or state is too long"));
    }
    match (&q.code_challenge, q.code_challenge_method.as_deref()) {
        (Some(challenge), Some("S256")) if valid_challenge(challenge) => {}
        (None, None) if !client.is_public() => {}
        (None, None) => {
            return Ok(back.error("invalid_request", "public clients must use PKCE (S256)"))
        }
        _ => {
            return Ok(back.error(
                "invalid_request",
                "code_challenge must be a valid S256 challenge with code_challenge_method=S256",
            ))
        }
    }
    // prompt=login asks to log in afresh: send the user through the login page.
    let session = match q.prompt.as_deref() {
        Some("login") => None,
        _ => current_session(&state, &req)?,
    };
    let Some(session) = session else {
        if q.prompt.as_deref() == Some("none") {
            return Ok(back.error("login_required", "the user is not logged in"));
        }
        return Ok(to_login_page(&req));
    };
    let code = p.codes.issue(Grant {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        openid: session.binding.openid,
        scope,
        nonce: q.nonce,
        code_challenge: q.code_challenge,
        auth_time: session.created_at,
    });
    tracing::info!(client = %client.id, "authorization code issued");
    Ok(back.with(&[("code", &code)]))
}

/// Where answers go: the client's registered redirect URI, with its `state`.
struct Back<'a> {
    redirect_uri: &'a str,
    state: Option<&'a str>,
}

impl Back<'_> {
    fn error(&self, code: &str, description: &str) -> HttpResponse {
        self.with(&[("error", code), ("error_description", description)])
    }

    fn with(&self, params: &[(&str, &str)]) -> HttpResponse {
        let mut url = Url::parse(self.redirect_uri).expect("registered redirect URIs are URLs");
        {
            let mut query = url.query_pairs_mut();
            query.extend_pairs(params);
            if let Some(state) = self.state {
                query.append_pair("state", state);
            }
        }
        found(url.as_str())
    }
}

/// The login page, told to come back to this very request once logged in. `prompt=login` is
/// dropped from the way back, or the user would be sent to log in again and again.
fn to_login_page(req: &HttpRequest) -> HttpResponse {
    let query: Vec<(String, String)> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .filter(|(k, v)| !(k == "prompt" && v == "login"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let back = format!(
        "{}?{}",
        req.path(),
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish()
    );
    let login = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("return_to", &back)
        .finish();
    found(&format!("/?{login}"))
}

fn found(location: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// The 400 page for a request that can't be answered by redirect. `reason` is ours (with at
/// most a registered client's name, escaped), never the request's: nothing from the request is
/// echoed into HTML.
fn refusal(reason: String) -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Cannot log in</title></head>\n\
             <body><h1>Cannot log in</h1><p>{reason}</p><p>Go back to the site you came from and tell its owners.</p></body></html>\n"
        ))
}
