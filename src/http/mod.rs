//! The HTTP API: one module per resource, wired here.

mod admin;
mod cache_policy;
mod client_ip;
mod device;
mod events;
mod head;
mod health;
mod login_mode;
mod oidc;
mod openapi;
pub mod page;
mod qrcode;
mod rate_limit;
mod rejections;
mod request_trace;
mod scene_owner;
mod session;
mod sightings;
mod token_center;
mod web_authorization;
mod wechat_callback;

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::{web, HttpResponse};
use tokio::sync::watch;
use wxlogin_actors::{LoginMode, SceneCounters, SceneSupervisor};
use wxlogin_storage::{OpenId, Store, StoreError};

use crate::audit::{self, LoginPath};
use crate::error::ApiError;
use crate::i18n::Lang;
use crate::metrics::Metrics;
use crate::oidc::Provider;
use crate::sms::SmsSender;
use crate::unionid::UnionIds;
use crate::wechat::api::WechatClient;
use crate::wechat::scene_key::SceneKeys;
pub use cache_policy::no_store_by_default;
pub use head::head_as_get;
pub use login_mode::LoginModes;
pub use rate_limit::{AbuseLimits, Refused};
pub use request_trace::trace_requests;
pub use session::SessionCookies;
pub use token_center::TokenCenter;
pub use web_authorization::{WebAuthorization, WECHAT_AUTHORIZE};
pub use wechat_callback::{follow_wechat_addresses, Callback};

/// What every handler may use.
pub struct AppState {
    pub scenes: Addr<SceneSupervisor>,
    pub wechat: WechatClient,
    pub store: Store,
    pub sms: SmsSender,
    pub callback: Callback,
    /// Which login mode new scenes get.
    pub modes: LoginModes,
    pub scene_ttl: Duration,
    pub trust_proxy: bool,
    pub scene_counters: Arc<SceneCounters>,
    pub metrics: Arc<Metrics>,
    /// `WXLOGIN_ADMIN_TOKEN`; without it `/admin` is not found.
    pub admin_token: Option<String>,
    pub limits: AbuseLimits,
    /// Turns true when the server starts shutting down: held long-polls answer at once.
    pub shutting_down: watch::Receiver<bool>,
    /// The OpenID Connect provider; `None` without `WXLOGIN_OIDC_CLIENTS`.
    pub oidc: Option<Arc<Provider>>,
    pub cookies: SessionCookies,
    /// Looks up users' unionids after binds and scans.
    pub unionids: UnionIds,
    /// The token center; `None` without `WXLOGIN_TOKEN_CLIENTS`.
    pub token_center: Option<TokenCenter>,
    /// How login scenes are named in their QR codes, and so recognised in scans.
    pub scene_keys: SceneKeys,
    /// The pages' language when a request names none we have (`WXLOGIN_DEFAULT_LANG`).
    pub default_lang: Lang,
    /// One tap inside WeChat; `None` without `WXLOGIN_OAUTH_DOMAIN`.
    pub web_authorization: Option<WebAuthorization>,
}

impl AppState {
    /// A user was logged in: counted, and one line in the audit trail.
    pub fn logged_in(&self, user: &OpenId, path: LoginPath, mode: LoginMode) {
        self.metrics.login(path, mode);
        audit::login(user, path);
    }

    /// The user's unredeemed OpenID Connect codes die with their session or binding, so none
    /// issued before a logout or unbind yields a token after it.
    pub async fn forget_authorization_codes(&self, openid: &OpenId) -> Result<(), StoreError> {
        match &self.oidc {
            Some(oidc) => oidc.codes.forget_user(openid).await,
            None => Ok(()),
        }
    }
}

/// Every route, each module's own; each is described in `openapi` (tests/api/openapi.rs checks).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(rejections::configure)
        .configure(openapi::configure)
        .configure(health::configure)
        .configure(admin::configure)
        .configure(page::configure)
        .configure(qrcode::configure)
        .configure(events::configure)
        .configure(session::configure)
        .configure(oidc::configure)
        .configure(token_center::configure)
        .configure(web_authorization::configure)
        .configure(wechat_callback::configure);
}

/// Answers for routes that do not exist.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such endpoint"))
}
