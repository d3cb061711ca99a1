//! WeChat's HTTP API: the access token and temporary QR codes.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix::Addr;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use url::Url;
use wxlogin_actors::{
    AccessToken, FetchedToken, GetToken, InvalidateToken, SceneId, TokenActor, TokenError,
    TokenSource,
};

/// Every WeChat call gives up after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Where the QR image for a ticket is served.
const SHOW_QRCODE: &str = "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=";

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

/// A temporary QR code as WeChat made it.
#[derive(Debug, Deserialize)]
pub struct QrTicket {
    pub ticket: String,
    /// What the QR image encodes.
    pub url: String,
}

impl QrTicket {
    /// WeChat's image of this QR code.
    pub fn image_url(&self) -> String {
        let ticket: String = url::form_urlencoded::byte_serialize(self.ticket.as_bytes()).collect();
        format!("{SHOW_QRCODE}{ticket}")
    }
}

/// Raw calls to WeChat's API at `base`.
#[derive(Clone)]
pub struct WechatApi {
    http: reqwest::Client,
    base: String,
}

#[derive(Deserialize)]
struct ErrorFields {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

impl WechatApi {
    pub fn new(base: &Url) -> Self {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("a TLS backend is compiled in");
        Self {
            http,
            base: base.as_str().trim_end_matches('/').to_owned(),
        }
    }

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
        let answer: TokenAnswer = call(request).await?;
        Ok(FetchedToken {
            token: AccessToken::new(&answer.access_token),
            expires_in: Duration::from_secs(answer.expires_in),
        })
    }

    pub async fn create_qrcode(
        &self,
        token: &AccessToken,
        scene: &SceneId,
        ttl: Duration,
    ) -> Result<QrTicket, WechatError> {
        let request = self
            .http
            .post(format!("{}/cgi-bin/qrcode/create", self.base))
            .query(&[("access_token", token.as_str())])
            .json(&json!({
                "expire_seconds": ttl.as_secs(),
                "action_name": "QR_STR_SCENE",
                "action_info": {"scene": {"scene_str": scene.as_str()}},
            }));
        call(request).await
    }
}

/// Sends a request and reads WeChat's answer: errors come as HTTP 200 with a non-zero `errcode`.
async fn call<T: DeserializeOwned>(request: reqwest::RequestBuilder) -> Result<T, WechatError> {
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
}

impl TokenSource for CredentialTokenSource {
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<FetchedToken, TokenError>>>> {
        let (api, appid, secret) = (self.api.clone(), self.appid.clone(), self.secret.clone());
        Box::pin(async move {
            api.fetch_token(&appid, &secret).await.map_err(|e| {
                if e.is_misconfiguration() {
                    tracing::error!(error = %e, "WeChat refused the account settings: check WXLOGIN_APPID, WXLOGIN_APPSECRET and the IP whitelist");
                }
                TokenError::new(e)
            })
        })
    }
}

/// WeChat calls that need the access token, with WeChat's refresh-and-retry-once rule.
#[derive(Clone)]
pub struct WechatClient {
    api: WechatApi,
    tokens: Addr<TokenActor<CredentialTokenSource>>,
}

impl WechatClient {
    pub fn new(api: WechatApi, tokens: Addr<TokenActor<CredentialTokenSource>>) -> Self {
        Self { api, tokens }
    }

    pub async fn create_qrcode(
        &self,
        scene: &SceneId,
        ttl: Duration,
    ) -> Result<QrTicket, WechatError> {
        self.with_token(|token| {
            let api = self.api.clone();
            async move { api.create_qrcode(&token, scene, ttl).await }
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

    async fn token(&self) -> Result<AccessToken, WechatError> {
        let answer = self.tokens.send(GetToken).await;
        let token = answer.map_err(|e| TokenError::new(std::io::Error::other(e.to_string())))??;
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_url_encodes_the_ticket() {
        let ticket = QrTicket {
            ticket: "gQH4+a/b=".into(),
            url: String::new(),
        };
        assert_eq!(
            ticket.image_url(),
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
    }
}
