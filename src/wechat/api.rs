//! WeChat's HTTP API: the access token, temporary QR codes, and the addresses WeChat pushes from.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Addr;
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use url::Url;
use wxlogin_actors::{
    AccessToken, Fetched, FetchedToken, Fetching, GetToken, Held, InvalidateToken, TokenActor,
    TokenError, TokenHealth, TokenSource,
};

use wxlogin_storage::{OpenId, UnionId};

use crate::metrics::Metrics;
use crate::wechat::ip_ranges::{BadRange, IpRanges};
use crate::wechat::shared_token::SharedSource;

/// Tries per call when WeChat is busy (errcode -1), answers 5xx, or can't be connected to.
const MAX_ATTEMPTS: u32 = 3;
/// Token fetches are tried once: the token actor's backoff is their retry, and it counts
/// every call that reaches WeChat's 2,000-a-day token endpoint.
const TOKEN_ATTEMPTS: u32 = 1;
/// The first retry waits about this long; each later one twice as long, with jitter.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// After WeChat says an endpoint's quota is used up (45009, 45011), that endpoint is not
/// called for this long. WeChat counts quotas per endpoint: a spent `user/info` quota (the
/// unionid lookups) must not stop QR codes or tokens.
const QUOTA_PAUSE: Duration = Duration::from_secs(60);
/// Where WeChat serves the image of a QR ticket; the URL-encoded ticket follows.
pub const SHOW_QRCODE: &str = "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=";

#[derive(Debug, thiserror::Error)]
pub enum WechatError {
    #[error("WeChat is unreachable: {0}")]
    Unreachable(reqwest::Error),
    #[error("WeChat answered HTTP {0}")]
    Status(reqwest::StatusCode),
    #[error("WeChat error {errcode}: {errmsg}")]
    Api { errcode: i64, errmsg: String },
    #[error("unexpected answer from WeChat: {0}")]
    BadAnswer(#[from] serde_json::Error),
    #[error("no access token: {0}")]
    Token(#[from] TokenError),
    #[error("WeChat's API quota is used up; calls resume in {0:?}")]
    QuotaPaused(Duration),
    #[error("WeChat listed a callback address that does not parse: {0}")]
    BadAddress(#[from] BadRange),
}

impl WechatError {
    /// The access token was refused: refresh it and try once more.
    fn is_invalid_token(&self) -> bool {
        matches!(
            self,
            WechatError::Api {
                errcode: 40001 | 40014 | 42001,
                ..
            }
        )
    }

    /// Worth another try in a moment: WeChat busy, a server error, or no connection at all.
    fn is_transient(&self) -> bool {
        match self {
            WechatError::Api { errcode: -1, .. } => true,
            WechatError::Status(status) => status.is_server_error(),
            WechatError::Unreachable(e) => e.is_connect(),
            _ => false,
        }
    }

    /// The daily quota (45009) or the rate limit (45011): calling again soon only makes it worse.
    fn is_quota(&self) -> bool {
        matches!(
            self,
            WechatError::Api {
                errcode: 45009 | 45011,
                ..
            }
        )
    }

    /// Wrong AppID, AppSecret or server IP: retrying will not help, a person must fix it.
    fn is_misconfiguration(&self) -> bool {
        matches!(
            self,
            WechatError::Api {
                errcode: 40013 | 40125 | 40164,
                ..
            }
        )
    }
}

impl From<reqwest::Error> for WechatError {
    fn from(e: reqwest::Error) -> Self {
        // The URL carries the AppSecret or the access token: never let it reach a log.
        WechatError::Unreachable(e.without_url())
    }
}

/// What web authorization's code exchange (`sns/oauth2/access_token`) says about the user.
/// Its access token is the user's, not the account's, and of no use to us: it is not kept.
#[derive(Debug, Deserialize)]
pub struct WebAuthorized {
    pub openid: String,
    /// 1: a virtual user of the snapshot-page mode (a page previewed in Moments), not a login.
    #[serde(default)]
    pub is_snapshotuser: u8,
}

/// A temporary QR code as WeChat made it.
#[derive(Debug, Deserialize)]
pub struct QrTicket {
    pub ticket: String,
    /// What the QR image encodes.
    pub url: String,
}

impl QrTicket {
    /// The image of this QR code, served at `show_qrcode` followed by the ticket.
    fn image_url(&self, show_qrcode: &str) -> String {
        let ticket: String = url::form_urlencoded::byte_serialize(self.ticket.as_bytes()).collect();
        format!("{show_qrcode}{ticket}")
    }
}

/// Raw calls to WeChat's API at `base`, with retries for transient failures and a pause
/// after the quota runs out. Clones share the pause.
#[derive(Clone)]
pub struct WechatApi {
    http: reqwest::Client,
    base: String,
    metrics: Arc<Metrics>,
    /// Endpoints whose quota is spent, until when.
    paused_until: Arc<Mutex<HashMap<&'static str, Instant>>>,
}

#[derive(Deserialize)]
struct ErrorFields {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

/// A JS-SDK ticket (`jsapi_ticket`). Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct JsapiTicket(Arc<str>);

impl JsapiTicket {
    pub fn new(value: &str) -> Self {
        Self(value.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for JsapiTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsapiTicket(..)")
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

impl WechatApi {
    pub fn new(base: &Url, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .expect("a TLS backend is compiled in");
        Self {
            http,
            base: base.as_str().trim_end_matches('/').to_owned(),
            paused_until: Arc::default(),
            metrics,
        }
    }

    /// The classic token: fetching it invalidates the one other servers of the account hold.
    pub async fn fetch_token(
        &self,
        appid: &str,
        secret: &str,
    ) -> Result<FetchedToken, WechatError> {
        let request = self
            .http
            .get(format!("{}/cgi-bin/token", self.base))
            .query(&[
                ("grant_type", "client_credential"),
                ("appid", appid),
                ("secret", secret),
            ]);
        let answer: TokenAnswer = self.call("token", request, TOKEN_ATTEMPTS).await?;
        self.metrics.token_refreshed();
        Ok(answer.into_fetched())
    }

    /// The stable token: shared by every server of the account; `force_refresh` only when
    /// WeChat refused the current one.
    pub async fn fetch_stable_token(
        &self,
        appid: &str,
        secret: &str,
        force_refresh: bool,
    ) -> Result<FetchedToken, WechatError> {
        let request = self
            .http
            .post(format!("{}/cgi-bin/stable_token", self.base))
            .json(&json!({
                "grant_type": "client_credential",
                "appid": appid,
                "secret": secret,
                "force_refresh": force_refresh,
            }));
        let answer: TokenAnswer = self.call("stable_token", request, TOKEN_ATTEMPTS).await?;
        self.metrics.token_refreshed();
        Ok(answer.into_fetched())
    }

    pub async fn create_qrcode(
        &self,
        token: &AccessToken,
        scene: &str,
        ttl: Duration,
    ) -> Result<QrTicket, WechatError> {
        let request = self
            .http
            .post(format!("{}/cgi-bin/qrcode/create", self.base))
            .query(&[("access_token", token.as_str())])
            .json(&json!({
                "expire_seconds": ttl.as_secs(),
                "action_name": "QR_STR_SCENE",
                "action_info": {"scene": {"scene_str": scene}},
            }));
        self.call("qrcode_create", request, MAX_ATTEMPTS).await
    }

    /// The JS-SDK ticket, which WeChat limits per day as it does tokens.
    pub async fn jsapi_ticket(
        &self,
        token: &AccessToken,
    ) -> Result<Fetched<JsapiTicket>, WechatError> {
        #[derive(Deserialize)]
        struct Answer {
            ticket: String,
            expires_in: u64,
        }
        let request = self
            .http
            .get(format!("{}/cgi-bin/ticket/getticket", self.base))
            .query(&[("access_token", token.as_str()), ("type", "jsapi")]);
        let answer: Answer = self.call("getticket", request, TOKEN_ATTEMPTS).await?;
        Ok(Fetched {
            token: JsapiTicket::new(&answer.ticket),
            expires_in: stated_lifetime(answer.expires_in),
        })
    }

    /// The user's unionid (`cgi-bin/user/info`); `None` when the account has no Open Platform
    /// account or the user does not follow it.
    pub async fn unionid(
        &self,
        token: &AccessToken,
        openid: &OpenId,
    ) -> Result<Option<UnionId>, WechatError> {
        #[derive(Deserialize)]
        struct Answer {
            unionid: Option<String>,
        }
        let request = self
            .http
            .get(format!("{}/cgi-bin/user/info", self.base))
            .query(&[
                ("access_token", token.as_str()),
                ("openid", openid.as_str()),
                ("lang", "zh_CN"),
            ]);
        let answer: Answer = self.call("user_info", request, MAX_ATTEMPTS).await?;
        Ok(answer.unionid.as_deref().and_then(UnionId::parse))
    }

    /// The addresses WeChat pushes to the callback from.
    pub async fn callback_ips(&self, token: &AccessToken) -> Result<IpRanges, WechatError> {
        #[derive(Deserialize)]
        struct Answer {
            ip_list: Vec<String>,
        }
        let request = self
            .http
            .get(format!("{}/cgi-bin/getcallbackip", self.base))
            .query(&[("access_token", token.as_str())]);
        let answer: Answer = self.call("getcallbackip", request, MAX_ATTEMPTS).await?;
        Ok(IpRanges::parse(answer.ip_list.iter().map(String::as_str))?)
    }

    /// Exchanges a web authorization code for the user's openid. Tried once: a code works
    /// once, and a retry after a lost answer could only be told it was used (40163).
    pub async fn exchange_web_code(
        &self,
        appid: &str,
        secret: &str,
        code: &str,
    ) -> Result<WebAuthorized, WechatError> {
        let request = self
            .http
            .get(format!("{}/sns/oauth2/access_token", self.base))
            .query(&[
                ("appid", appid),
                ("secret", secret),
                ("code", code),
                ("grant_type", "authorization_code"),
            ]);
        self.call("sns/oauth2/access_token", request, 1).await
    }

    /// Sends `request`, retrying transient failures with exponential backoff and jitter, in
    /// `max_attempts` tries at most.
    async fn call<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
        max_attempts: u32,
    ) -> Result<T, WechatError> {
        self.check_not_paused(endpoint)?;
        let mut attempt = 0;
        loop {
            let this_try = request
                .try_clone()
                .expect("WeChat requests have in-memory bodies");
            let result = call_once(this_try).await;
            self.metrics.wechat_call(endpoint, &outcome_label(&result));
            match result {
                Err(e) if e.is_transient() && attempt + 1 < max_attempts => {
                    tracing::debug!(error = %e, attempt, "WeChat call failed; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) if e.is_quota() => {
                    tracing::warn!(error = %e, endpoint, pause = ?QUOTA_PAUSE, "WeChat quota reached; pausing calls to this endpoint");
                    self.paused_until
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(endpoint, Instant::now() + QUOTA_PAUSE);
                    return Err(e);
                }
                result => return result,
            }
        }
    }

    fn check_not_paused(&self, endpoint: &str) -> Result<(), WechatError> {
        let paused_until = self
            .paused_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(endpoint)
            .copied();
        match paused_until.map(|until| until.saturating_duration_since(Instant::now())) {
            Some(remaining) if !remaining.is_zero() => Err(WechatError::QuotaPaused(remaining)),
            _ => Ok(()),
        }
    }
}

/// WeChat's `expires_in` (7200) within bounds: a zero would have the token actor fetch in a
/// loop, an absurd value overflow its clock.
fn stated_lifetime(expires_in: u64) -> Duration {
    Duration::from_secs(expires_in.clamp(60, 86_400))
}

impl TokenAnswer {
    fn into_fetched(self) -> FetchedToken {
        FetchedToken {
            token: AccessToken::new(&self.access_token),
            expires_in: stated_lifetime(self.expires_in),
        }
    }
}

/// `FIRST_BACKOFF × 2^attempt`, scaled by a random factor in [0.5, 1.5) so that many
/// callers failing together do not retry together.
fn backoff(attempt: u32) -> Duration {
    let base = FIRST_BACKOFF * 2u32.pow(attempt);
    base.mul_f64(rand::thread_rng().gen_range(0.5..1.5))
}

/// The `errcode` label of a call: WeChat's own code, or what went wrong on the way.
fn outcome_label<T>(result: &Result<T, WechatError>) -> String {
    match result {
        Ok(_) => "0".into(),
        Err(WechatError::Api { errcode, .. }) => errcode.to_string(),
        Err(WechatError::Status(status)) => format!("http_{}", status.as_u16()),
        Err(WechatError::Unreachable(e)) if e.is_timeout() => "timeout".into(),
        Err(WechatError::Unreachable(_)) => "unreachable".into(),
        Err(_) => "bad_answer".into(),
    }
}

/// Sends a request and reads WeChat's answer: errors come as HTTP 200 with a non-zero `errcode`.
async fn call_once<T: DeserializeOwned>(
    request: reqwest::RequestBuilder,
) -> Result<T, WechatError> {
    let response = request.send().await?;
    if !response.status().is_success() {
        return Err(WechatError::Status(response.status()));
    }
    let body = response.bytes().await?;
    let fields: ErrorFields = serde_json::from_slice(&body)?;
    if fields.errcode != 0 {
        return Err(WechatError::Api {
            errcode: fields.errcode,
            errmsg: fields.errmsg,
        });
    }
    Ok(serde_json::from_slice(&body)?)
}

/// Fetches access tokens with the account's AppID and AppSecret, for the [`TokenActor`].
pub struct CredentialTokenSource {
    pub api: WechatApi,
    pub appid: String,
    pub secret: String,
    /// Use `cgi-bin/stable_token` (`WXLOGIN_STABLE_TOKEN`).
    pub stable: bool,
}

impl TokenSource for CredentialTokenSource {
    type Token = AccessToken;

    fn refused_early(&self, age: Duration, lifetime: Duration) {
        let fix = if self.stable {
            "another server of this AppID forces stable-token refreshes: have it ask wxlogin's token center instead (WXLOGIN_TOKEN_CLIENTS, GET /api/wechat/access_token)"
        } else {
            "another server of this AppID fetches its own tokens, which invalidates wxlogin's: have it ask wxlogin's token center instead (WXLOGIN_TOKEN_CLIENTS, GET /api/wechat/access_token), or set WXLOGIN_STABLE_TOKEN=1 here and use cgi-bin/stable_token there"
        };
        tracing::warn!(
            age_secs = age.as_secs(),
            lifetime_secs = lifetime.as_secs(),
            "WeChat refused the access token soon after wxlogin fetched it: {fix} (said once)"
        );
    }

    fn fetch(&self, after_rejection: bool) -> Fetching<AccessToken> {
        let (api, appid, secret, stable) = (
            self.api.clone(),
            self.appid.clone(),
            self.secret.clone(),
            self.stable,
        );
        Box::pin(async move {
            let fetched = if stable {
                api.fetch_stable_token(&appid, &secret, after_rejection)
                    .await
            } else {
                api.fetch_token(&appid, &secret).await
            };
            fetched.map_err(|e| {
                if e.is_misconfiguration() {
                    tracing::error!(error = %e, "WeChat refused the account settings: check WXLOGIN_APPID, WXLOGIN_APPSECRET and the IP whitelist");
                }
                TokenError::new(e)
            })
        })
    }
}

/// The owner of the account's access token (shared with the other nodes on PostgreSQL).
pub type AccessTokens = TokenActor<SharedSource<CredentialTokenSource>>;

/// The owner of the JS-SDK ticket, for the token center.
pub type JsapiTickets = TokenActor<SharedSource<TicketSource>>;

/// WeChat calls that need the access token, with WeChat's refresh-and-retry-once rule.
#[derive(Clone)]
pub struct WechatClient {
    api: WechatApi,
    tokens: Addr<AccessTokens>,
    /// Where QR images are served: [`SHOW_QRCODE`], or the sandbox's stand-in for it.
    show_qrcode: String,
}

impl WechatClient {
    pub fn new(api: WechatApi, tokens: Addr<AccessTokens>, show_qrcode: String) -> Self {
        Self {
            api,
            tokens,
            show_qrcode,
        }
    }

    /// The URL of the image a browser shows for `qr`.
    pub fn image_url(&self, qr: &QrTicket) -> String {
        qr.image_url(&self.show_qrcode)
    }

    /// `scene`: the `scene_str`, which scans of the code hand back as their `EventKey`.
    pub async fn create_qrcode(&self, scene: &str, ttl: Duration) -> Result<QrTicket, WechatError> {
        self.with_token(|token| {
            let api = self.api.clone();
            async move { api.create_qrcode(&token, scene, ttl).await }
        })
        .await
    }

    pub async fn callback_ips(&self) -> Result<IpRanges, WechatError> {
        self.with_token(|token| {
            let api = self.api.clone();
            async move { api.callback_ips(&token).await }
        })
        .await
    }

    /// Runs `call` with the current token; if WeChat says the token is no longer valid,
    /// invalidates exactly that token, gets a fresh one and runs `call` once more.
    async fn with_token<T, F, Fut>(&self, call: F) -> Result<T, WechatError>
    where
        F: Fn(AccessToken) -> Fut,
        Fut: Future<Output = Result<T, WechatError>>,
    {
        let token = self.token().await?;
        match call(token.clone()).await {
            Err(e) if e.is_invalid_token() => {
                tracing::info!(error = %e, "access token refused; refreshing");
                self.tokens.do_send(InvalidateToken(token));
                call(self.token().await?).await
            }
            other => other,
        }
    }

    /// The JS-SDK ticket, fetched with the current token.
    pub async fn jsapi_ticket(&self) -> Result<Fetched<JsapiTicket>, WechatError> {
        self.with_token(|token| {
            let api = self.api.clone();
            async move { api.jsapi_ticket(&token).await }
        })
        .await
    }

    pub async fn unionid(&self, openid: &OpenId) -> Result<Option<UnionId>, WechatError> {
        self.with_token(|token| {
            let api = self.api.clone();
            async move { api.unionid(&token, openid).await }
        })
        .await
    }

    /// The token actor, for the token center.
    pub fn tokens(&self) -> &Addr<AccessTokens> {
        &self.tokens
    }

    /// Starts fetching the first token now, so that `/readyz` soon knows whether WeChat
    /// answers (it only reads the token actor's state).
    pub fn prefetch_token(&self) {
        self.tokens.do_send(GetToken::new());
    }

    /// Whether a token can be had, as the token actor last saw it; fetches nothing.
    pub async fn token_health(&self) -> Result<(), WechatError> {
        let answer = self.tokens.send(TokenHealth).await;
        answer.map_err(|e| TokenError::new(std::io::Error::other(e.to_string())))??;
        Ok(())
    }

    /// A usable access token: cached, or fetched now.
    pub async fn token(&self) -> Result<AccessToken, WechatError> {
        let answer = self.tokens.send(GetToken::new()).await;
        let held: Held<AccessToken> =
            answer.map_err(|e| TokenError::new(std::io::Error::other(e.to_string())))??;
        Ok(held.token)
    }
}

/// Fetches JS-SDK tickets with the access token, for a second [`TokenActor`].
pub struct TicketSource(pub WechatClient);

impl TokenSource for TicketSource {
    type Token = JsapiTicket;

    fn fetch(&self, _after_rejection: bool) -> Fetching<JsapiTicket> {
        let client = self.0.clone();
        Box::pin(async move { client.jsapi_ticket().await.map_err(TokenError::new) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        for attempt in 0..3 {
            let base = FIRST_BACKOFF * 2u32.pow(attempt);
            let wait = backoff(attempt);
            assert!(
                wait >= base / 2 && wait < base * 3 / 2,
                "{attempt}: {wait:?}"
            );
        }
    }

    #[test]
    fn image_url_encodes_the_ticket() {
        let ticket = QrTicket {
            ticket: "gQH4+a/b=".into(),
            url: String::new(),
        };
        assert_eq!(
            ticket.image_url(SHOW_QRCODE),
            "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=gQH4%2Ba%2Fb%3D"
        );
    }

    #[test]
    fn token_refusals_are_told_apart() {
        let api = |errcode| WechatError::Api {
            errcode,
            errmsg: String::new(),
        };
        assert!(
            api(40001).is_invalid_token()
                && api(42001).is_invalid_token()
                && api(40014).is_invalid_token()
        );
        assert!(!api(-1).is_invalid_token() && !api(45009).is_invalid_token());
        assert!(api(40125).is_misconfiguration());
        assert!(api(-1).is_transient() && !api(40001).is_transient());
        assert!(WechatError::Status(reqwest::StatusCode::BAD_GATEWAY).is_transient());
        assert!(!WechatError::Status(reqwest::StatusCode::NOT_FOUND).is_transient());
        assert!(api(45009).is_quota() && api(45011).is_quota() && !api(-1).is_quota());
    }
}
