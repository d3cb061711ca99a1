//! One tap inside WeChat: web authorization (网页授权, `snsapi_base`, no consent screen).
//!
//! The login page, opened in WeChat's browser, sends the browser to
//! `/api/qrcode/{scene}/web-authorization`, which WeChat's authorize page sends back to
//! `/web-authorization/callback` with a code; exchanged, the code names the WeChat user, who
//! then scans the page's own scene (the login log, audit trail, limits and metrics of a scan
//! apply) with no confirmation: they are on the very device.
//!
//! Login CSRF is the attack: an attacker's code and state, delivered to a victim's browser,
//! must not log the victim in as the attacker. So `state` is bound to the browser that started:
//! the start sets an HttpOnly cookie (SameSite=Lax, so it comes back from WeChat's redirect)
//! holding the scene and a random nonce whose SHA-256 is the state, and the callback refuses a
//! state that isn't that cookie's, or one presented before.

use std::time::Duration;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::IntoParams;
use wxlogin_actors::{
    Admitted, FindScene, ScanOnDevice, ScanOutcome, SceneError, SceneId, SceneLookup,
};
use wxlogin_storage::{constant_time_eq, OpenId, SharedLimits};

use super::oidc::pages::page;
use super::page::{allowed_return_to, escape_html};
use super::rate_limit::{self, Refused};
use super::sightings::Sightings;
use super::{qrcode, AppState};
use crate::audit::LoginPath;
use crate::error::{retry_after_secs, ApiError, ErrorBody};
use crate::i18n::Lang;
use crate::wechat::api::{WebAuthorized, WechatApi, WechatError};

/// WeChat's real authorize page.
pub const WECHAT_AUTHORIZE: &str = "https://open.weixin.qq.com/connect/oauth2/authorize";
const CALLBACK: &str = "/web-authorization/callback";
/// The cookie binding a state to its browser: `__Host-` over https (no sibling subdomain can
/// set it), sent only to the callback.
const STATE_COOKIE: &str = "wxlogin_web_authorization";
const SECURE_STATE_COOKIE: &str = "__Host-wxlogin_web_authorization";

/// WeChat's error codes of a code exchange.
const INVALID_CODE: i64 = 40029;
const CODE_USED: i64 = 40163;

/// The account's web authorization, when `WXLOGIN_OAUTH_DOMAIN` turns it on.
pub struct WebAuthorization {
    api: WechatApi,
    appid: String,
    secret: String,
    /// WeChat's authorize page, or the sandbox's.
    authorize_url: String,
    /// The callback, on the web authorization domain.
    redirect_uri: String,
    /// States presented to the callback: each is good once (on any node, when the store is
    /// shared).
    used_states: Sightings,
}

impl WebAuthorization {
    /// `public_url`: where the callback is; its host is the web authorization domain.
    pub fn new(
        api: WechatApi,
        appid: String,
        secret: String,
        authorize_url: String,
        public_url: &url::Url,
        state_lifetime: Duration,
        shared: Option<&SharedLimits>,
    ) -> Self {
        Self {
            api,
            appid,
            secret,
            authorize_url,
            redirect_uri: public_url
                .join(CALLBACK)
                .expect("a path joins a base URL")
                .into(),
            used_states: Sightings::new(
                "web_authorization_state",
                state_lifetime,
                1_000_000,
                shared,
            ),
        }
    }

    /// Whether WeChat would redirect to `uri`: only on the web authorization domain (the
    /// sandbox plays that check).
    pub fn allows_redirect(&self, uri: &str) -> bool {
        let host = |uri: &str| url::Url::parse(uri).ok()?.host_str().map(str::to_owned);
        host(uri).is_some_and(|host_name| Some(host_name) == host(&self.redirect_uri))
    }

    /// WeChat's authorize URL, parameters in exactly WeChat's order.
    fn authorize_url(&self, state: &str) -> String {
        let redirect: String =
            url::form_urlencoded::byte_serialize(self.redirect_uri.as_bytes()).collect();
        format!(
            "{}?appid={}&redirect_uri={redirect}&response_type=code&scope=snsapi_base&state={state}#wechat_redirect",
            self.authorize_url, self.appid
        )
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/api/qrcode/{scene_id}/web-authorization",
        web::get().to(start),
    )
    .route(CALLBACK, web::get().to(callback));
}

fn cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_STATE_COOKIE
    } else {
        STATE_COOKIE
    }
}

/// What the state cookie holds: the scene, the nonce, and the page to go back to.
struct Started {
    scene_id: String,
    nonce: String,
    return_to: Option<String>,
}

impl Started {
    fn encode(&self) -> String {
        let mut pairs = url::form_urlencoded::Serializer::new(String::new());
        pairs.append_pair("scene", &self.scene_id);
        pairs.append_pair("nonce", &self.nonce);
        if let Some(path) = &self.return_to {
            pairs.append_pair("return_to", path);
        }
        pairs.finish()
    }

    fn decode(value: &str) -> Option<Self> {
        let mut started = Self {
            scene_id: String::new(),
            nonce: String::new(),
            return_to: None,
        };
        for (name, value) in url::form_urlencoded::parse(value.as_bytes()) {
            match &*name {
                "scene" => started.scene_id = value.into_owned(),
                "nonce" => started.nonce = value.into_owned(),
                "return_to" => started.return_to = allowed_return_to(&value),
                _ => return None,
            }
        }
        (!started.scene_id.is_empty() && !started.nonce.is_empty()).then_some(started)
    }
}

/// The state WeChat carries: SHA-256 of the nonce, in hex (WeChat takes `a-zA-Z0-9`).
fn state_of(nonce: &str) -> String {
    hex::encode(Sha256::digest(nonce.as_bytes()))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct StartQuery {
    /// Where to go once logged in (taken only as the login page takes it).
    return_to: Option<String>,
}

/// Sends the browser that owns the scene to WeChat's authorize page, with a state bound to it.
#[utoipa::path(
    get,
    path = "/api/qrcode/{scene_id}/web-authorization",
    tag = "login",
    params(("scene_id" = String, Path, description = "The scene's id"), StartQuery),
    security(("browser_cookie" = []), ("scene_secret" = [])),
    responses(
        (status = 302, description = "To WeChat's authorize page (snsapi_base), with a state bound to this browser by an HttpOnly cookie"),
        (status = 403, description = "`not_scene_owner`", body = ErrorBody),
        (status = 404, description = "`not_found`: without `WXLOGIN_OAUTH_DOMAIN`, or `scene_not_found`", body = ErrorBody),
        (status = 410, description = "The scene expired (a page)", content_type = "text/html", body = String),
    ),
)]
pub(super) async fn start(
    state: web::Data<AppState>,
    scene_id: web::Path<String>,
    query: web::Query<StartQuery>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let authorization = state
        .web_authorization
        .as_ref()
        .ok_or(ApiError::NotFound("web authorization is not configured"))?;
    let lang = Lang::of(&request, state.default_lang);
    let return_to = query.return_to.as_deref().and_then(allowed_return_to);
    let qrcode::Owned::Live(..) = qrcode::lookup(&state, &scene_id, &request).await? else {
        let back = login_page(return_to.as_deref());
        return Ok(failed(lang, StatusCode::GONE, "webauth.expired", &back));
    };
    let mut nonce = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut nonce);
    let started = Started {
        scene_id: scene_id.into_inner(),
        nonce: URL_SAFE_NO_PAD.encode(nonce),
        return_to,
    };
    let secure = state.cookies.secure;
    let cookie = Cookie::build(cookie_name(secure), started.encode())
        .path(if secure { "/" } else { CALLBACK })
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(actix_web::cookie::time::Duration::seconds(
            state.scene_ttl.as_secs() as i64,
        ))
        .finish();
    Ok(HttpResponse::Found()
        .cookie(cookie)
        .insert_header((
            header::LOCATION,
            authorization.authorize_url(&state_of(&started.nonce)),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct CallbackQuery {
    /// WeChat's code.
    code: Option<String>,
    /// The state the start sent.
    state: Option<String>,
}

/// WeChat's redirect back: check the state is this browser's, exchange the code, and scan
/// the browser's scene as the user it names.
#[utoipa::path(
    get,
    path = "/web-authorization/callback",
    tag = "login",
    params(CallbackQuery),
    responses(
        (status = 303, description = "Back to the login page (and its return_to), which watches its scene"),
        (status = 400, description = "WeChat refused the code (40029, 40163): a page", content_type = "text/html", body = String),
        (status = 403, description = "The state is not this browser's or was used, or a snapshot-page user: a page", content_type = "text/html", body = String),
        (status = 404, description = "`not_found`: without `WXLOGIN_OAUTH_DOMAIN`", body = ErrorBody),
        (status = 410, description = "The scene ended, or was scanned already: a page", content_type = "text/html", body = String),
        (status = 429, description = "The user's scans this hour are spent: a page, with `Retry-After`", content_type = "text/html", body = String),
        (status = 503, description = "WeChat failed the code exchange: a page; JSON `storage_unavailable` when the state or the scan limit, shared on several nodes, cannot be checked", body = ErrorBody),
    ),
)]
pub(super) async fn callback(
    state: web::Data<AppState>,
    query: web::Query<CallbackQuery>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let authorization = state
        .web_authorization
        .as_ref()
        .ok_or(ApiError::NotFound("web authorization is not configured"))?;
    let lang = Lang::of(&request, state.default_lang);
    let secure = state.cookies.secure;
    let checked = checked_start(authorization, &request, secure, query.state.as_deref()).await?;
    let mut answer = match checked {
        None => {
            tracing::info!(
                "web authorization refused: its state is not this browser's, or was used"
            );
            failed(lang, StatusCode::FORBIDDEN, "webauth.state", "/")
        }
        Some(started) => {
            let code = query.code.as_deref().unwrap_or_default();
            finish(&state, authorization, started, code, lang).await?
        }
    };
    // Good once: the browser forgets it, whatever came of it.
    let mut removal = Cookie::build(cookie_name(secure), "")
        .path(if secure { "/" } else { CALLBACK })
        .finish();
    removal.make_removal();
    let _ = answer.add_cookie(&removal);
    Ok(answer)
}

/// The start this callback belongs to, if its state is the one this browser's cookie binds
/// and has not been presented before (to any node, when the store is shared). A state that
/// cannot be checked is refused.
async fn checked_start(
    authorization: &WebAuthorization,
    request: &HttpRequest,
    secure: bool,
    presented: Option<&str>,
) -> Result<Option<Started>, ApiError> {
    let Some(presented) = presented else {
        return Ok(None);
    };
    let Some(cookie) = request.cookie(cookie_name(secure)) else {
        return Ok(None);
    };
    let Some(started) = Started::decode(cookie.value()) else {
        return Ok(None);
    };
    let expected = state_of(&started.nonce);
    if !constant_time_eq(expected.as_bytes(), presented.as_bytes()) {
        return Ok(None);
    }
    let first_use = authorization.used_states.first(&expected).await?;
    Ok(first_use.then_some(started))
}

async fn finish(
    state: &AppState,
    authorization: &WebAuthorization,
    started: Started,
    code: &str,
    lang: Lang,
) -> Result<HttpResponse, ApiError> {
    let back = login_page(started.return_to.as_deref());
    let refused = |status, reason| Ok(failed(lang, status, reason, &back));
    let exchanged = authorization
        .api
        .exchange_web_code(&authorization.appid, &authorization.secret, code)
        .await;
    let user = match exchanged {
        Ok(WebAuthorized {
            is_snapshotuser: 1, ..
        }) => return refused(StatusCode::FORBIDDEN, "webauth.snapshot"),
        Ok(user) => user,
        Err(WechatError::Api {
            errcode: INVALID_CODE,
            ..
        }) => return refused(StatusCode::BAD_REQUEST, "webauth.invalid_code"),
        Err(WechatError::Api {
            errcode: CODE_USED, ..
        }) => return refused(StatusCode::BAD_REQUEST, "webauth.code_used"),
        Err(e) => {
            tracing::warn!(error = %e, "web authorization: the code exchange failed");
            return refused(StatusCode::SERVICE_UNAVAILABLE, "webauth.unavailable");
        }
    };
    let Some(openid) = OpenId::parse(&user.openid) else {
        tracing::warn!("web authorization: WeChat named no valid openid");
        return refused(StatusCode::SERVICE_UNAVAILABLE, "webauth.unavailable");
    };
    match scan_on_device(state, &started.scene_id, &openid).await? {
        DeviceScan::Scanned => {}
        DeviceScan::Ended => return refused(StatusCode::GONE, "webauth.expired"),
        DeviceScan::TooMany(retry_after) => {
            let mut page = failed(
                lang,
                StatusCode::TOO_MANY_REQUESTS,
                "webauth.too_many",
                &back,
            );
            let seconds = HeaderValue::from(retry_after_secs(retry_after));
            page.headers_mut().insert(header::RETRY_AFTER, seconds);
            return Ok(page);
        }
    }
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, back))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// The login page, with the page to go back to once logged in.
fn login_page(return_to: Option<&str>) -> String {
    match return_to {
        Some(path) => format!(
            "/?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("return_to", path)
                .finish()
        ),
        None => "/".to_owned(),
    }
}

/// What came of a scan on the device.
enum DeviceScan {
    Scanned,
    /// The scene is gone or was scanned already.
    Ended,
    /// The user's hourly budget of scans is spent: a scan is free after this long.
    TooMany(Duration),
}

/// The user scans the scene, on their hourly budget of scans like any scan.
async fn scan_on_device(
    state: &AppState,
    scene_id: &str,
    openid: &OpenId,
) -> Result<DeviceScan, ApiError> {
    let Some(id) = SceneId::parse(scene_id) else {
        return Ok(DeviceScan::Ended);
    };
    let SceneLookup::Live(scene) = state.scenes.send(FindScene(id)).await?? else {
        return Ok(DeviceScan::Ended);
    };
    let taken = rate_limit::acquire_all(&[(&state.limits.scans_per_user, openid.as_str())]).await;
    let taken = match taken {
        Ok(taken) => taken,
        Err(Refused::Wait(retry_after)) => return Ok(DeviceScan::TooMany(retry_after)),
        Err(unchecked) => return Err(unchecked.into()),
    };
    let scanned = scene
        .send(ScanOnDevice {
            openid: openid.clone(),
        })
        .await
        .unwrap_or(Err(SceneError::AlreadyScanned));
    match scanned {
        Ok(ScanOutcome::Admitted(Admitted::LoggedIn(mode))) => {
            state.logged_in(openid, LoginPath::WebAuthorization, mode);
        }
        Ok(ScanOutcome::Admitted(Admitted::NeedBind)) => {}
        Ok(ScanOutcome::Confirm(_)) => {
            return Err(ApiError::Internal(
                "a scan on the device asked for confirmation".into(),
            ))
        }
        Err(SceneError::AlreadyScanned | SceneError::Unfollowed) => {
            taken.give_back().await;
            return Ok(DeviceScan::Ended);
        }
        Err(e) => return Err(e.into()),
    }
    Ok(DeviceScan::Scanned)
}

/// A page saying why this did not log in, with the way `back` to the login page.
fn failed(lang: Lang, status: StatusCode, reason: &str, back: &str) -> HttpResponse {
    page(
        status,
        lang,
        "webauth.failed_title",
        &format!(
            "<p>{}</p><p><a href=\"{}\">{}</a></p>",
            lang.html(reason, &[]),
            escape_html(back),
            escape_html(&lang.text("webauth.back", &[]))
        ),
    )
}
