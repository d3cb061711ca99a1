//! `GET` and `POST /oauth/logout`: RP-Initiated Logout 1.0, the discovery's
//! `end_session_endpoint`.
//!
//! It ends the wxlogin session of the browser it runs in (its cookie), with the user's access
//! tokens and unredeemed codes, as `POST /api/logout` does. A relying party names the user by
//! `id_token_hint`: an ID token we signed (with any key we publish; expired is fine, §2) for the
//! client. The session ends at once only when the hint is about this browser's user; any other
//! request (no hint, or a hint about someone else) asks the user first, on a page whose form
//! carries a proof of this browser's session (`session::form_proof`). So a cross-site link or
//! image can't log anyone out, and a site can log out only its own users. A cross-site POST
//! carries no SameSite=Lax cookie: it is answered `303` to the same request as a GET, a
//! top-level navigation, which does.
//!
//! `post_logout_redirect_uri` must be registered by the client (the hint's audience, or
//! `client_id`) exactly, else the request is refused with a page and nothing ends; without it
//! the user sees a "signed out" page. `state` goes back with the redirect.

use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use url::Url;
use utoipa::{IntoParams, ToSchema};

use super::pages::{form, page, refusal};
use super::{provider, request};
use crate::error::{ApiError, ErrorBody};
use crate::http::page::escape_html;
use crate::http::session::{current_session, end_session, form_proof, proves, session_token};
use crate::http::AppState;
use crate::i18n::Lang;

/// The purpose of the confirmation form's proof (see `session::form_proof`).
const PROOF_PURPOSE: &str = "oidc logout";
const PROOF: &str = "logout_proof";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(super::LOGOUT)
            .app_data(web::PayloadConfig::new(request::MAX_BODY))
            .route(web::get().to(logout_by_query))
            .route(web::post().to(logout_by_form)),
    );
}

/// RP-Initiated Logout §2's parameters, and the confirmation form's proof.
#[derive(Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub(in crate::http) struct LogoutRequest {
    id_token_hint: Option<String>,
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    logout_proof: Option<String>,
}

/// What an `id_token_hint` must say: who, for whom.
#[derive(Deserialize)]
struct Hint {
    sub: String,
    aud: String,
}

/// A relying party's sign-out request in the query.
#[utoipa::path(
    get,
    path = super::LOGOUT,
    tag = "oidc",
    params(LogoutRequest),
    security((), ("session_cookie" = [])),
    responses(
        (status = 200, description = "The confirmation page, or the signed-out page", content_type = "text/html", body = String),
        (status = 302, description = "Signed out: to the registered post_logout_redirect_uri"),
        (status = 400, description = "A page: a hint not ours, an unknown client, an unregistered redirect URI", content_type = "text/html", body = String),
        (status = 404, description = "`not_found`: OpenID Connect is not configured", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`", body = ErrorBody),
    ),
)]
pub(in crate::http) async fn logout_by_query(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    logout(state, req, web::Bytes::new()).await
}

/// The sign-out request as a form, and the confirmation page's answer.
#[utoipa::path(
    post,
    path = super::LOGOUT,
    tag = "oidc",
    request_body(content = LogoutRequest, content_type = "application/x-www-form-urlencoded"),
    security((), ("session_cookie" = [])),
    responses(
        (status = 200, description = "The confirmation page, or the signed-out page", content_type = "text/html", body = String),
        (status = 302, description = "Signed out: to the registered post_logout_redirect_uri"),
        (status = 303, description = "A POST without the session cookie (cross-site): the same request as a GET"),
        (status = 400, description = "A page: a malformed request, a hint not ours, an unknown client", content_type = "text/html", body = String),
        (status = 404, description = "`not_found`: OpenID Connect is not configured", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: over 16 KiB", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`", body = ErrorBody),
    ),
)]
pub(in crate::http) async fn logout_by_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    logout(state, req, body).await
}

async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let p = provider(&state)?;
    let lang = Lang::of(&req, state.default_lang);
    let Some((raw, q)) = request::raw(&req, &body)
        .and_then(|raw| Some((raw, request::parse::<LogoutRequest>(raw)?)))
    else {
        return Ok(refusal(lang, lang.html("oidc.logout_malformed", &[])));
    };
    let hint = match q.id_token_hint.as_deref() {
        Some(token) => match p.keys.verify_ignoring_expiry::<Hint>(token, &p.issuer) {
            Some(hint) => Some(hint),
            None => return Ok(refusal(lang, lang.html("oidc.logout_not_ours", &[]))),
        },
        None => None,
    };
    let client_id = match (&hint, q.client_id.as_deref()) {
        (Some(hint), Some(id)) if hint.aud != id => {
            return Ok(refusal(lang, lang.html("oidc.logout_two_apps", &[])))
        }
        (Some(hint), _) => Some(hint.aud.as_str()),
        (None, id) => id,
    };
    let client = match client_id {
        Some(id) => match p.clients.get(id) {
            Some(client) => Some(client),
            None => return Ok(refusal(lang, lang.html("oidc.logout_unregistered", &[]))),
        },
        None => None,
    };
    let redirect = match (q.post_logout_redirect_uri.as_deref(), client) {
        (None, _) => None,
        (Some(uri), Some(client)) if client.allows_post_logout_redirect(uri) => Some(uri),
        (Some(_), client) => {
            let name = client.map_or_else(
                || lang.html("oidc.the_application", &[]),
                |c| escape_html(&c.name),
            );
            return Ok(refusal(
                lang,
                lang.html("oidc.logout_bad_redirect", &[("client", &name)]),
            ));
        }
    };
    let done = Done {
        redirect,
        state: q.state.as_deref(),
        lang,
    };

    let is_post = req.method() == Method::POST;
    if is_post && session_token(&req).is_none() {
        // A cross-site POST: the browser kept its SameSite=Lax cookie back.
        return Ok(HttpResponse::SeeOther()
            .insert_header((
                header::LOCATION,
                format!(
                    "/oauth/logout?{}",
                    request::encode(request::pairs(raw, &[]))
                ),
            ))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish());
    }
    let Some(session) = current_session(&state, &req).await? else {
        return Ok(done.answer(None));
    };
    let about_this_user = hint.as_ref().is_some_and(|hint| {
        p.subjects.sub(&hint.aud, &session.binding).as_ref() == Some(&hint.sub)
    });
    let confirmed = is_post && proves(&req, PROOF_PURPOSE, q.logout_proof.as_deref());
    if !(about_this_user || confirmed) {
        let mut fields = request::pairs(raw, &[PROOF]);
        fields.push((
            PROOF.into(),
            form_proof(&req, PROOF_PURPOSE).ok_or(ApiError::Unauthorized)?,
        ));
        let asking = client.map_or_else(
            || lang.html("oidc.a_site", &[]),
            |c| format!("<strong>{}</strong>", escape_html(&c.name)),
        );
        return Ok(page(
            StatusCode::OK,
            lang,
            "oidc.sign_out_title",
            &format!(
                "<p>{}</p>\n<p>{}</p>\n{}",
                lang.html("oidc.sign_out_asks", &[("asking", &asking)]),
                lang.html("oidc.sign_out_not_asked", &[]),
                form(
                    super::LOGOUT,
                    &fields,
                    &[("", "", &lang.html("oidc.sign_out", &[]))]
                )
            ),
        ));
    }
    let token = session_token(&req).ok_or(ApiError::Unauthorized)?;
    end_session(&state, &token, Some(client_id.unwrap_or("(unnamed)"))).await?;
    Ok(done.answer(Some(state.cookies.removal())))
}

/// Where a finished sign-out goes: the registered `post_logout_redirect_uri` with `state`, or
/// our "signed out" page.
struct Done<'a> {
    redirect: Option<&'a str>,
    state: Option<&'a str>,
    lang: Lang,
}

impl Done<'_> {
    fn answer(&self, clear: Option<actix_web::cookie::Cookie<'static>>) -> HttpResponse {
        let mut response = match self.redirect {
            Some(uri) => {
                let mut url = Url::parse(uri).expect("registered redirect URIs are URLs");
                if let Some(state) = self.state {
                    url.query_pairs_mut().append_pair("state", state);
                }
                HttpResponse::Found()
                    .insert_header((header::LOCATION, url.as_str()))
                    .insert_header((header::CACHE_CONTROL, "no-store"))
                    .finish()
            }
            None => page(
                StatusCode::OK,
                self.lang,
                "oidc.signed_out_title",
                &format!("<p>{}</p>", self.lang.html("oidc.signed_out", &[])),
            ),
        };
        if let Some(cookie) = clear {
            let _ = response.add_cookie(&cookie);
        }
        response
    }
}
