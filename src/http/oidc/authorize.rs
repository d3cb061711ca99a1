//! `GET` and `POST /oauth/authorize`: the authorization code flow's front door (OpenID Connect
//! Core §3.1.2), the parameters in the query or a form body alike.
//!
//! An unknown client or a redirect URI not registered exactly gets a 400 page and never a
//! redirect, so nobody can bounce users to a site of their choosing. Other errors go back to the
//! client as `error=` (RFC 6749 §4.1.2.1, OpenID Connect Core §3.1.2.6). A request with a session
//! fresh enough for it (`prompt`, `max_age`) and the user's consent gets a code at once; without
//! the session the user is sent to the login page, which comes back here once they are logged
//! in; without the consent, they are asked (see `consent`).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use url::Url;
use utoipa::{IntoParams, ToSchema};

use super::consent::{self, consent_page};
use super::pages::refusal;
use super::{provider, request};
use crate::error::{ApiError, ErrorBody};
use crate::http::page::escape_html;
use crate::http::session::{current_session, form_proof, proves};
use crate::http::AppState;
use crate::i18n::Lang;
use crate::oidc::codes::{valid_challenge, Grant, Scope};
use crate::oidc::prompt::Prompt;
use crate::oidc::subject::SubjectSource;
use crate::oidc::unix_now;

/// Longer than this, a `nonce` or `state` is not a nonce but an attempt to bloat tokens.
const MAX_OPAQUE_LEN: usize = 512;

/// Added to the request the login page comes back with: the session must have started at this
/// time or later (Unix seconds). It stands for `prompt=login` and `max_age`, which would send
/// the user to log in again and again if they came back too.
const AUTHENTICATED_AFTER: &str = "authenticated_after";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(super::AUTHORIZE)
            .app_data(web::PayloadConfig::new(request::MAX_BODY))
            .route(web::get().to(authorize_by_query))
            .route(web::post().to(authorize_by_form)),
    );
}

/// OpenID Connect Core §3.1.2.1's parameters, all text as sent: each is checked by the handler,
/// which answers a bad one by redirect (or, before the redirect URI is trusted, a page).
#[derive(Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub(in crate::http) struct AuthorizeRequest {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    response_mode: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    prompt: Option<String>,
    max_age: Option<String>,
    request: Option<String>,
    request_uri: Option<String>,
    registration: Option<String>,
    authenticated_after: Option<String>,
    /// The consent page's answer (POST only) and its proof.
    consent: Option<String>,
    consent_proof: Option<String>,
}

/// The authorization request in the query.
#[utoipa::path(
    get,
    path = super::AUTHORIZE,
    tag = "oidc",
    params(AuthorizeRequest),
    security((), ("session_cookie" = [])),
    responses(
        (status = 200, description = "The consent page", content_type = "text/html", body = String),
        (status = 302, description = "To the client's redirect URI with `code` or `error`, or to the login page"),
        (status = 400, description = "A page: an unknown client, an unregistered redirect URI, a malformed request", content_type = "text/html", body = String),
        (status = 404, description = "`not_found`: OpenID Connect is not configured", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`", body = ErrorBody),
    ),
)]
pub(in crate::http) async fn authorize_by_query(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    authorize(state, req, web::Bytes::new()).await
}

/// The authorization request as a form, and the consent page's answer.
#[utoipa::path(
    post,
    path = super::AUTHORIZE,
    tag = "oidc",
    request_body(content = AuthorizeRequest, content_type = "application/x-www-form-urlencoded"),
    security((), ("session_cookie" = [])),
    responses(
        (status = 200, description = "The consent page", content_type = "text/html", body = String),
        (status = 302, description = "To the client's redirect URI with `code` or `error`, or to the login page"),
        (status = 400, description = "A page: an unknown client, an unregistered redirect URI, a body that is not a form", content_type = "text/html", body = String),
        (status = 404, description = "`not_found`: OpenID Connect is not configured", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: over 16 KiB", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`", body = ErrorBody),
    ),
)]
pub(in crate::http) async fn authorize_by_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(state, req, body).await
}

async fn authorize(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let p = provider(&state)?;
    let lang = Lang::of(&req, state.default_lang);
    // Read by hand rather than by an extractor: a request that doesn't parse (a parameter
    // twice, say) can't be trusted to name a redirect URI either, so it gets the page too.
    let Some((raw, q)) = request::raw(&req, &body)
        .and_then(|raw| Some((raw, request::parse::<AuthorizeRequest>(raw)?)))
    else {
        return Ok(refusal(lang, lang.html("oidc.malformed", &[])));
    };
    let Some(client) = q.client_id.as_deref().and_then(|id| p.clients.get(id)) else {
        return Ok(refusal(lang, lang.html("oidc.unregistered", &[])));
    };
    let Some(redirect_uri) = q
        .redirect_uri
        .as_deref()
        .filter(|uri| client.allows_redirect(uri))
    else {
        let name = escape_html(&client.name);
        return Ok(refusal(
            lang,
            lang.html("oidc.bad_redirect", &[("client", &name)]),
        ));
    };
    let back = Back {
        redirect_uri,
        state: q.state.as_deref(),
    };
    // OpenID Connect Core §3.1.2.6 and §6: what we don't support, each with its own code.
    if q.request.is_some() {
        return Ok(back.error("request_not_supported", "request objects are not supported"));
    }
    if q.request_uri.is_some() {
        return Ok(back.error("request_uri_not_supported", "request_uri is not supported"));
    }
    if q.registration.is_some() {
        return Ok(back.error(
            "registration_not_supported",
            "registration is not supported",
        ));
    }
    match q.response_type.as_deref() {
        Some("code") => {}
        None => return Ok(back.error("invalid_request", "response_type is required")),
        Some(_) => return Ok(back.error("unsupported_response_type", "only response_type=code")),
    }
    if q.response_mode.as_deref().is_some_and(|m| m != "query") {
        return Ok(back.error("invalid_request", "only response_mode=query"));
    }
    let Some(scope) = q.scope.as_deref().and_then(Scope::parse) else {
        return Ok(back.error("invalid_scope", "scope must include openid"));
    };
    if scope.unionid && !client.unionid {
        return Ok(back.error(
            "invalid_scope",
            "this client may not ask for unionid (its registration lacks unionid = true)",
        ));
    }
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
    let prompt = match Prompt::parse(q.prompt.as_deref()) {
        Ok(prompt) => prompt,
        Err(problem) => return Ok(back.error("invalid_request", problem)),
    };
    let seconds = |s: &Option<String>| s.as_deref().map(str::parse::<u64>).transpose();
    let (Ok(max_age), Ok(authenticated_after)) =
        (seconds(&q.max_age), seconds(&q.authenticated_after))
    else {
        return Ok(back.error("invalid_request", "max_age must be a number of seconds"));
    };

    // A session this request may use: none when it asks to log in afresh (prompt=login,
    // max_age=0), or when the login is older than max_age or than the request's own detour
    // through the login page (§3.1.2.1: the provider must then authenticate the user again).
    let now = unix_now();
    let fresh = |created_at: u64| {
        !prompt.login
            && max_age.is_none_or(|max| max > 0 && now.saturating_sub(created_at) <= max)
            && authenticated_after.is_none_or(|after| created_at >= after)
    };
    let session = current_session(&state, &req)
        .await?
        .filter(|s| fresh(s.created_at));
    let Some(session) = session else {
        if prompt.none {
            return Ok(back.error("login_required", "the user must log in"));
        }
        return Ok(to_login_page(raw, now));
    };

    // The user's consent: this request's answer from the consent page, else the one they gave
    // before, unless prompt=consent asks again.
    let is_post = req.method() == actix_web::http::Method::POST;
    let answered = is_post && proves(&req, consent::PROOF_PURPOSE, q.consent_proof.as_deref());
    match q.consent.as_deref().filter(|_| answered) {
        Some("allow") => {
            state
                .store
                .remember_consent(&session.binding, &client.id, scope.as_str())
                .await?;
        }
        Some("deny") => return Ok(back.error("access_denied", "the user declined")),
        _ => {
            let given = state
                .store
                .consent(&session.binding, &client.id)
                .await?
                .as_deref()
                .and_then(Scope::parse)
                .is_some_and(|given| given.covers(scope));
            if prompt.consent || !given {
                if prompt.none {
                    return Ok(back.error("consent_required", "the user must consent"));
                }
                let fields = request::pairs(raw, &[consent::ANSWER, consent::PROOF]);
                let proof =
                    form_proof(&req, consent::PROOF_PURPOSE).ok_or(ApiError::Unauthorized)?;
                return Ok(consent_page(client, scope, fields, proof, lang));
            }
        }
    }

    // With unionid subjects a user WeChat told no unionid of has none: refused, rather than
    // known to the site by another identity than the one it was promised.
    if p.subjects.source() == SubjectSource::UnionId
        && state.unionids.now(&session.binding).await.is_none()
    {
        return Ok(back.error(
            "access_denied",
            "WeChat gave no unionid for this user (is the official account bound to an Open Platform account?)",
        ));
    }
    let code = p
        .codes
        .issue(Grant {
            client_id: client.id.clone(),
            redirect_uri: redirect_uri.to_owned(),
            generation: session.binding.generation,
            openid: session.binding.openid,
            scope,
            nonce: q.nonce,
            code_challenge: q.code_challenge,
            auth_time: session.created_at,
        })
        .await?;
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

/// The login page, told to come back to this very request (a GET, whichever method brought
/// it) once logged in. What asked for a fresh login (`prompt=login` or `select_account`,
/// `max_age`) is replaced by `authenticated_after=now`: the session the user comes back with
/// must be newer than this moment, so coming back without logging in again gets nowhere, and
/// the fresh login satisfies it once.
fn to_login_page(raw: &str, now: u64) -> HttpResponse {
    let mut query = request::pairs(
        raw,
        &[
            "max_age",
            AUTHENTICATED_AFTER,
            consent::ANSWER,
            consent::PROOF,
        ],
    );
    for (name, value) in &mut query {
        if name == "prompt" {
            *value = value
                .split(' ')
                .filter(|v| !matches!(*v, "login" | "select_account" | ""))
                .collect::<Vec<_>>()
                .join(" ");
        }
    }
    query.retain(|(name, value)| !(name == "prompt" && value.is_empty()));
    query.push((AUTHENTICATED_AFTER.into(), now.to_string()));
    let back = format!("/oauth/authorize?{}", request::encode(query));
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
