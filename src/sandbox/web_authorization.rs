//! WeChat's web authorization (网页授权) as the sandbox plays it: the authorize page, where
//! "WeChat" asks which user is on this phone (a real one answers silently for `snsapi_base`),
//! the redirect back with a code, and the code exchange of the fake API, with WeChat's
//! errors: `40029` for a code it never issued, `40163` for one used already.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use moka::sync::Cache;
use serde::Deserialize;
use serde_json::json;
use url::Url;

use super::api::wechat_error;
use super::{random_openid, random_token, Simulator, APPID, TOKEN_LIFETIME_SECS};
use crate::error::ApiError;
use crate::http::page::{asset, escape_html, localized};
use crate::http::AppState;
use crate::i18n::{self, Lang};

/// The sandbox's stand-in for WeChat's authorize page.
pub const WEB_AUTHORIZE: &str = "/sandbox/oauth2/authorize";

/// WeChat's web authorization codes live five minutes.
const CODE_LIFETIME: Duration = Duration::from_secs(300);

/// The codes the authorize page issued: code → its user, and whether it was exchanged.
pub struct WebCodes(Cache<String, WebCode>);

#[derive(Clone)]
struct WebCode {
    openid: String,
    snapshot: bool,
    used: bool,
}

impl Default for WebCodes {
    fn default() -> Self {
        Self(
            Cache::builder()
                .max_capacity(100_000)
                .time_to_live(CODE_LIFETIME)
                .build(),
        )
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(WEB_AUTHORIZE, web::get().to(authorize))
        .route("/sandbox/oauth2/authorized", web::get().to(authorized))
        .route(
            "/sandbox/api/sns/oauth2/access_token",
            web::get().to(access_token),
        );
}

/// The authorize URL's parameters, which WeChat checks as here.
#[derive(Deserialize)]
struct AuthorizeQuery {
    appid: String,
    redirect_uri: String,
    response_type: String,
    scope: String,
    #[serde(default)]
    state: String,
}

async fn authorize(
    state: web::Data<AppState>,
    query: web::Query<AuthorizeQuery>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if query.appid != APPID || query.response_type != "code" || query.scope != "snsapi_base" {
        return Err(ApiError::BadRequest(
            "appid, response_type=code or scope=snsapi_base is wrong (WeChat shows an error page)"
                .into(),
        ));
    }
    let redirect = allowed_redirect(&state, &query.redirect_uri)?;
    let lang = Lang::of(&request, state.default_lang);
    let host = escape_html(redirect.host_str().unwrap_or_default());
    let html = i18n::render(
        include_str!("authorize.html"),
        lang,
        &[
            ("lang", lang.tag()),
            ("hint", &lang.html("authorize.hint", &[("host", &host)])),
            ("redirect_uri", &escape_html(&query.redirect_uri)),
            ("state", &escape_html(&query.state)),
            ("openid", &random_openid()),
        ],
    );
    Ok(localized(&request, asset("text/html", html)))
}

/// `redirect_uri`, if WeChat would go there: a URL on the web authorization domain (WeChat's
/// error 10003 otherwise), so the sandbox is no open redirect.
fn allowed_redirect(state: &AppState, redirect_uri: &str) -> Result<Url, ApiError> {
    let allowed = state
        .web_authorization
        .as_ref()
        .is_some_and(|authorization| authorization.allows_redirect(redirect_uri));
    if !allowed {
        return Err(ApiError::BadRequest(
            "redirect_uri is not on the web authorization domain (WeChat's 10003)".into(),
        ));
    }
    Url::parse(redirect_uri).map_err(|_| ApiError::BadRequest("redirect_uri is not a URL".into()))
}

#[derive(Deserialize)]
struct Authorized {
    redirect_uri: String,
    state: String,
    openid: String,
    snapshot: Option<String>,
}

/// The user is known: back to `redirect_uri` with a fresh code and the state.
async fn authorized(
    state: web::Data<AppState>,
    sim: web::Data<Simulator>,
    query: web::Query<Authorized>,
) -> Result<HttpResponse, ApiError> {
    let mut back = allowed_redirect(&state, &query.redirect_uri)?;
    let code = random_token();
    sim.web_codes.0.insert(
        code.clone(),
        WebCode {
            openid: query.openid.trim().to_owned(),
            snapshot: query.snapshot.is_some(),
            used: false,
        },
    );
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &query.state);
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, back.as_str()))
        .finish())
}

#[derive(Deserialize)]
struct ExchangeQuery {
    appid: String,
    secret: String,
    code: String,
    grant_type: String,
}

async fn access_token(sim: web::Data<Simulator>, query: web::Query<ExchangeQuery>) -> HttpResponse {
    if let Some(failure) = sim.api_gate().await {
        return failure;
    }
    if let Some(refusal) = sim.check_account(&query.appid, &query.secret) {
        return refusal;
    }
    if query.grant_type != "authorization_code" {
        return wechat_error(40002, "invalid grant_type");
    }
    let codes = &sim.web_codes.0;
    let Some(issued) = codes.get(&query.code) else {
        return wechat_error(40029, "invalid code");
    };
    if issued.used {
        return wechat_error(40163, "code been used");
    }
    codes.insert(
        query.code.clone(),
        WebCode {
            used: true,
            ..issued.clone()
        },
    );
    let mut answer = json!({
        "access_token": random_token(),
        "expires_in": TOKEN_LIFETIME_SECS,
        "refresh_token": random_token(),
        "openid": issued.openid,
        "scope": "snsapi_base",
    });
    if issued.snapshot {
        answer["is_snapshotuser"] = json!(1);
    }
    HttpResponse::Ok().json(answer)
}
