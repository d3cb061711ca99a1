//! All configuration, read once from the environment at start.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;
use wxlogin_storage::PgSettings;

use crate::i18n::Lang;
use crate::oidc::clients::Clients;
use crate::oidc::subject::SubjectSource;
use crate::reply_templates::Replies;
use crate::wechat::crypto::{MessageCrypto, ENCODING_AES_KEY_LEN};
use crate::wechat::ip_ranges::IpRanges;
use crate::wechat::scene_key::{SceneKeys, DEFAULT_PREFIX};

/// Every setting wxlogin reads. Any other `WXLOGIN_*` variable stops the start: it is a typo (or
/// a setting of another version), and ignoring a misspelt `WXLOGIN_APPID` would start the sandbox.
/// A new setting is added here (a unit test checks the parser reads no name missing from it).
const SETTINGS: &[&str] = &[
    "WXLOGIN_BIND",
    "WXLOGIN_DATA_DIR",
    "WXLOGIN_APPID",
    "WXLOGIN_APPSECRET",
    "WXLOGIN_TOKEN",
    "WXLOGIN_WECHAT_API",
    "WXLOGIN_SCENE_TTL_SECS",
    "WXLOGIN_SESSION_TTL_SECS",
    "WXLOGIN_SMS_WEBHOOK",
    "WXLOGIN_SMS_WEBHOOK_SECRET",
    "WXLOGIN_SMS_PROVIDER",
    "WXLOGIN_SMS_ACCESS_KEY_ID",
    "WXLOGIN_SMS_ACCESS_KEY_SECRET",
    "WXLOGIN_SMS_SIGN_NAME",
    "WXLOGIN_SMS_TEMPLATE",
    "WXLOGIN_SMS_SDK_APP_ID",
    "WXLOGIN_SMS_REGION",
    "WXLOGIN_SMS_ENDPOINT",
    "WXLOGIN_AES_KEY",
    "WXLOGIN_TIMESTAMP_WINDOW_SECS",
    "WXLOGIN_CALLBACK_IPS",
    "WXLOGIN_WECHAT_TIMEOUT_SECS",
    "WXLOGIN_STABLE_TOKEN",
    "WXLOGIN_TRUST_PROXY",
    "WXLOGIN_QR_PER_IP_PER_MIN",
    "WXLOGIN_MAX_SCENES",
    "WXLOGIN_SMS_PER_PHONE_PER_HOUR",
    "WXLOGIN_SMS_PER_IP_PER_HOUR",
    "WXLOGIN_SMS_PER_USER_PER_HOUR",
    "WXLOGIN_SCANS_PER_USER_PER_HOUR",
    "WXLOGIN_ADMIN_TOKEN",
    "WXLOGIN_SHUTDOWN_TIMEOUT_SECS",
    "WXLOGIN_PUBLIC_URL",
    "WXLOGIN_OIDC_CLIENTS",
    "WXLOGIN_OIDC_CODE_TTL_SECS",
    "WXLOGIN_SUBJECT",
    "WXLOGIN_LOGIN_MODE",
    "WXLOGIN_ACCOUNT_QR_URL",
    "WXLOGIN_CODE_GUESS_WINDOW_SECS",
    "WXLOGIN_CONFIRM",
    "WXLOGIN_SITE_NAME",
    "WXLOGIN_LOG_FORMAT",
    "WXLOGIN_LOGIN_LOG_DAYS",
    "WXLOGIN_DATABASE_URL",
    "WXLOGIN_DATABASE_POOL",
    "WXLOGIN_DATABASE_CA",
    "WXLOGIN_TOKEN_CLIENTS",
    "WXLOGIN_UPSTREAM_URL",
    "WXLOGIN_UPSTREAM_FORWARD",
    "WXLOGIN_UPSTREAM_TIMEOUT_MS",
    "WXLOGIN_SCENE_PREFIX",
    "WXLOGIN_SANDBOX_PUSH_URL",
    "WXLOGIN_SANDBOX_APPSECRET",
    "WXLOGIN_DEFAULT_LANG",
    "WXLOGIN_REPLIES",
    "WXLOGIN_OAUTH_DOMAIN",
];
/// Variables whose name starts so (in any case) must be one of [`SETTINGS`].
const PREFIX: &str = "WXLOGIN_";

/// How a limit is described when it does not parse.
const COUNT: &str = "a whole number (0 disables the limit)";

// The longest each duration may be: beyond, a value means nothing useful, and the largest would
// overflow the clocks and caches they feed (moka panics at a lifetime over 1000 years).

/// WeChat's own limit on a temporary QR code's lifetime.
const MAX_SCENE_TTL_SECS: u64 = 2_592_000;
/// A year.
const MAX_SESSION_TTL_SECS: u64 = 31_536_000;
/// An hour: a wider window lets a captured push be replayed for longer.
const MAX_TIMESTAMP_WINDOW_SECS: u64 = 3_600;
/// A minute: a request waiting on WeChat holds a browser (and WeChat's own 5 s callback) waiting.
const MAX_WECHAT_TIMEOUT_SECS: u64 = 60;
/// Ten minutes: process supervisors kill a stopping service well before.
const MAX_SHUTDOWN_TIMEOUT_SECS: u64 = 600;
/// Ten minutes, the most RFC 6749 (4.1.2) recommends for an authorization code.
const MAX_OIDC_CODE_TTL_SECS: u64 = 600;
/// A day.
const MAX_CODE_GUESS_WINDOW_SECS: u64 = 86_400;
/// WeChat gives up on an answer after 5 s: the upstream's budget leaves wxlogin half a second
/// of its own (and the network's) inside that.
const MAX_UPSTREAM_TIMEOUT_MS: u64 = 4_500;
/// Less than this, and a healthy upstream across a network would time out.
const MIN_UPSTREAM_TIMEOUT_MS: u64 = 100;

#[derive(Clone, Debug)]
pub struct Settings {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    /// PostgreSQL instead of sled in `data_dir` (`WXLOGIN_DATABASE_URL`).
    pub database: Option<Database>,
    pub account: Account,
    pub scene_ttl: Duration,
    pub session_ttl: Duration,
    /// Where verification codes go; `None`: the sandbox's phone, or the debug log.
    pub sms: Option<SmsProvider>,
    /// Take the client IP from `X-Forwarded-For` (set only behind a proxy you run).
    pub trust_proxy: bool,
    /// The EncodingAESKey for safe mode (安全模式); `None` for plaintext mode.
    pub aes_key: Option<String>,
    /// How far a callback's timestamp may be from our clock, either way.
    pub timestamp_window: Duration,
    /// Which addresses may push to the callback.
    pub callback_senders: CallbackSenders,
    /// Timeout of each call to WeChat's API.
    pub wechat_timeout: Duration,
    /// Use `cgi-bin/stable_token`, which leaves other servers' tokens valid.
    pub stable_token: bool,
    /// How long a graceful shutdown may take before in-flight requests are dropped.
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
    /// The bearer token of the admin API; `None` turns the API off.
    pub admin_token: Option<String>,
    /// Abuse limits; 0 disables each.
    pub qr_per_ip_per_min: u32,
    pub max_scenes: usize,
    pub sms_per_phone_per_hour: u32,
    pub sms_per_ip_per_hour: u32,
    /// Codes sent for the scenes one WeChat user scanned.
    pub sms_per_user_per_hour: u32,
    /// Scenes one WeChat user may scan.
    pub scans_per_user_per_hour: u32,
    /// `WXLOGIN_PUBLIC_URL`, the OpenID Connect issuer; `None`: `http://` + the bound address.
    pub public_url: Option<Url>,
    /// The OpenID Connect clients; `None` turns the provider off.
    pub oidc_clients: Option<std::sync::Arc<Clients>>,
    /// How long an authorization code may wait to be redeemed.
    pub oidc_code_ttl: Duration,
    /// What OpenID Connect subjects are derived from (`WXLOGIN_SUBJECT`).
    pub subject: SubjectSource,
    pub login_mode: LoginModeSetting,
    /// The official account's own QR image, shown in code mode; the sandbox serves its own.
    pub account_qr_url: Option<String>,
    /// Ask the scanner to confirm each login by replying with the number the browser shows.
    pub confirm: bool,
    /// The account's replies in WeChat: `WXLOGIN_REPLIES` over the defaults, naming the site
    /// as `WXLOGIN_SITE_NAME` says.
    pub replies: Replies,
    /// The pages' language when the request names none we have.
    pub default_lang: Lang,
    /// `WXLOGIN_OAUTH_DOMAIN`, the account's web authorization domain (网页授权域名), the
    /// public URL's host; `None`: no one-tap login inside WeChat.
    pub oauth_domain: Option<String>,
    /// How long an openid that sent too many wrong login codes is ignored.
    pub code_guess_window: Duration,
    /// How long the login log keeps a login; `None` keeps every one.
    pub login_log_retention: Option<Duration>,
    /// The token center's callers; empty turns it off.
    pub token_clients: Vec<TokenClient>,
    /// The account's own server behind wxlogin, which gets the pushes that are not logins;
    /// `None`: wxlogin answers every push itself.
    pub upstream: Option<Upstream>,
    /// How login scenes are named in their QR codes (`WXLOGIN_SCENE_PREFIX`).
    pub scene_keys: SceneKeys,
    /// Sandbox only: where the simulated WeChat pushes; `None`: wxlogin's own `/wechat`.
    pub sandbox_push_url: Option<Url>,
    /// Sandbox only: the simulated account's AppSecret, so that other wxlogin nodes in real
    /// mode can use this sandbox as their WeChat (a cluster test); `None`: a random one.
    pub sandbox_appsecret: Option<Secret>,
}

/// A caller of the token center (`WXLOGIN_TOKEN_CLIENTS`): a name for logs and metrics, and
/// its API key.
#[derive(Clone, Debug)]
pub struct TokenClient {
    pub name: String,
    pub key: Secret,
}

/// `WXLOGIN_UPSTREAM_*`: where the pushes that are not wxlogin's business go.
#[derive(Clone)]
pub struct Upstream {
    /// Where each push is POSTed, with WeChat's query string as its own.
    pub url: Url,
    pub forward: UpstreamForward,
    /// How long after a push arrives WeChat must have its answer: the upstream's, or `success`.
    pub budget: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("Upstream")
            .field("host", &self.url.host_str())
            .field("forward", &self.forward)
            .field("budget", &self.budget)
            .finish()
    }
}

/// Which pushes the upstream gets (`WXLOGIN_UPSTREAM_FORWARD`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamForward {
    /// Only those that are not wxlogin's own; it answers them.
    Others,
    /// Every push: wxlogin's own too, as copies whose answer is ignored.
    All,
}

impl std::str::FromStr for UpstreamForward {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "others" => Ok(UpstreamForward::Others),
            "all" => Ok(UpstreamForward::All),
            _ => Err(()),
        }
    }
}

/// How users start a login (`WXLOGIN_LOGIN_MODE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginModeSetting {
    /// Scan a parametric QR code: verified service accounts.
    QrCode,
    /// Follow the account and send it the code the page shows: every account.
    Code,
    /// QR codes until WeChat refuses to make them (errcode 48001), then codes.
    Auto,
}

impl LoginModeSetting {
    /// The setting's value, as `WXLOGIN_LOGIN_MODE` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            LoginModeSetting::QrCode => "qrcode",
            LoginModeSetting::Code => "code",
            LoginModeSetting::Auto => "auto",
        }
    }
}

impl std::str::FromStr for LoginModeSetting {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "qrcode" => Ok(LoginModeSetting::QrCode),
            "code" => Ok(LoginModeSetting::Code),
            "auto" => Ok(LoginModeSetting::Auto),
            _ => Err(()),
        }
    }
}

/// Who may push to `/wechat` (`WXLOGIN_CALLBACK_IPS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallbackSenders {
    Anyone,
    /// The addresses WeChat's `getcallbackip` lists, fetched and refreshed.
    Wechat,
    Only(IpRanges),
}

/// Which WeChat the service talks to.
#[derive(Clone, Debug)]
pub enum Account {
    /// No AppID configured: the built-in simulator plays WeChat.
    Sandbox {
        token: String,
    },
    Real {
        credentials: Credentials,
        api: Url,
    },
}

#[derive(Clone)]
pub struct Credentials {
    pub appid: String,
    pub secret: String,
    /// The callback token, shared with WeChat, that signs every push.
    pub token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("appid", &self.appid)
            .finish_non_exhaustive()
    }
}

/// The SMS sender (`WXLOGIN_SMS_PROVIDER`).
#[derive(Clone, Debug)]
pub enum SmsProvider {
    /// The site's own relay: each code POSTed as JSON, signed when a secret is set.
    Webhook { url: Url, secret: Option<Secret> },
    /// Alibaba Cloud SMS (dysmsapi `SendSms`).
    Aliyun(SmsGateway),
    /// Tencent Cloud SMS (`SendSms`, API 2021-01-11).
    Tencent(SmsGateway),
}

/// A cloud SMS account: its API key, the approved sign name and template, and where to call it.
#[derive(Clone, Debug)]
pub struct SmsGateway {
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub sign_name: String,
    /// Alibaba's `TemplateCode` (`SMS_...`) or Tencent's numeric `TemplateId`.
    pub template: String,
    /// Tencent's `SmsSdkAppId`; `None` for Alibaba, which has none.
    pub sdk_app_id: Option<String>,
    pub region: String,
    pub endpoint: Url,
}

/// A secret setting, which `Debug` (and so any log of the settings) never shows.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Where the PostgreSQL backend's database is. The URL may hold a password: never logged.
#[derive(Clone)]
pub struct Database(pub PgSettings);

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Database(pool {})", self.0.pool_size)
    }
}

/// `WXLOGIN_DATABASE_URL` and the settings that go with it.
fn database(get: &impl Fn(&str) -> Option<String>) -> Result<Option<Database>, ConfigError> {
    let Some(url) = get("WXLOGIN_DATABASE_URL") else {
        for name in ["WXLOGIN_DATABASE_POOL", "WXLOGIN_DATABASE_CA"] {
            if get(name).is_some() {
                return Err(invalid(name, "set only with WXLOGIN_DATABASE_URL"));
            }
        }
        return Ok(None);
    };
    let expected = format!("a number of connections from 1 to {MAX_DATABASE_POOL}");
    let pool_size: usize = parse(get, "WXLOGIN_DATABASE_POOL", "16", &expected)?;
    if !(1..=MAX_DATABASE_POOL).contains(&pool_size) {
        return Err(invalid(
            "WXLOGIN_DATABASE_POOL",
            format!("{pool_size} is not {expected}"),
        ));
    }
    let ca_file = get("WXLOGIN_DATABASE_CA").map(|path| PathBuf::from(path.trim()));
    if let Some(path) = &ca_file {
        if !path.is_file() {
            return Err(invalid(
                "WXLOGIN_DATABASE_CA",
                format!("{} is not a file of PEM certificates", path.display()),
            ));
        }
    }
    PgSettings::parse(url.trim(), pool_size, ca_file)
        .map(|settings| Some(Database(settings)))
        .map_err(|problem| invalid("WXLOGIN_DATABASE_URL", problem))
}

/// Connections a node may hold: far more than one node can use, far less than a server allows.
const MAX_DATABASE_POOL: usize = 1000;

impl Settings {
    pub fn is_sandbox(&self) -> bool {
        matches!(self.account, Account::Sandbox { .. })
    }
}

/// How log lines are written: for people, or one JSON object per line for a log pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(()),
        }
    }
}

/// A setting that can't be used, named so the operator knows what to fix.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {problem}")]
pub struct ConfigError {
    /// The variable to fix (an unknown one is named as it was spelt).
    pub name: String,
    pub problem: String,
}

fn invalid(name: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        name: name.into(),
        problem: problem.into(),
    }
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let vars = std::env::vars_os()
            .map(|(name, value)| (name.to_string_lossy().into_owned(), value))
            .filter(|(name, _)| is_ours(name))
            .map(|(name, value)| match value.into_string() {
                Ok(value) => Ok((name, value)),
                Err(_) => Err(invalid(name, "is not valid UTF-8")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_vars(vars)
    }

    /// Reads settings from `vars` (name, value), so tests need not touch the process
    /// environment. Every `WXLOGIN_*` name among them must be a known setting.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> =
            vars.into_iter().filter(|(name, _)| is_ours(name)).collect();
        let first_unknown = vars
            .keys()
            .filter(|name| !SETTINGS.contains(&name.as_str()))
            .min();
        if let Some(name) = first_unknown {
            return Err(unknown_setting(name));
        }
        Self::from_lookup(|name| vars.get(name).cloned())
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let bind = parse(
            &get,
            "WXLOGIN_BIND",
            "127.0.0.1:8080",
            "an address like 127.0.0.1:8080",
        )?;
        let scene_ttl = seconds(&get, "WXLOGIN_SCENE_TTL_SECS", 300, MAX_SCENE_TTL_SECS)?;
        let account = account(&get)?;
        let login_mode = parse(&get, "WXLOGIN_LOGIN_MODE", "qrcode", "qrcode, code or auto")?;
        let account_qr_url = get("WXLOGIN_ACCOUNT_QR_URL")
            .map(|raw| http_url("WXLOGIN_ACCOUNT_QR_URL", &raw).map(String::from))
            .transpose()?;
        let sandbox = matches!(account, Account::Sandbox { .. });
        if login_mode != LoginModeSetting::QrCode && account_qr_url.is_none() && !sandbox {
            return Err(invalid(
                "WXLOGIN_ACCOUNT_QR_URL",
                "required when WXLOGIN_LOGIN_MODE is code or auto: the URL of your official account's QR code image (from the WeChat console), which the login page shows",
            ));
        }
        let sms = sms_provider(&get)?;
        let settings = Self {
            bind,
            data_dir: get("WXLOGIN_DATA_DIR")
                .unwrap_or_else(|| "./data".into())
                .into(),
            database: database(&get)?,
            account,
            scene_ttl,
            session_ttl: seconds(
                &get,
                "WXLOGIN_SESSION_TTL_SECS",
                604_800,
                MAX_SESSION_TTL_SECS,
            )?,
            sms,
            trust_proxy: flag(&get, "WXLOGIN_TRUST_PROXY")?,
            aes_key: get("WXLOGIN_AES_KEY")
                .map(|key| aes_key(key.trim()))
                .transpose()?,
            timestamp_window: seconds(
                &get,
                "WXLOGIN_TIMESTAMP_WINDOW_SECS",
                300,
                MAX_TIMESTAMP_WINDOW_SECS,
            )?,
            callback_senders: callback_senders(&get)?,
            wechat_timeout: seconds(
                &get,
                "WXLOGIN_WECHAT_TIMEOUT_SECS",
                5,
                MAX_WECHAT_TIMEOUT_SECS,
            )?,
            stable_token: flag(&get, "WXLOGIN_STABLE_TOKEN")?,
            shutdown_timeout: seconds(
                &get,
                "WXLOGIN_SHUTDOWN_TIMEOUT_SECS",
                10,
                MAX_SHUTDOWN_TIMEOUT_SECS,
            )?,
            admin_token: get("WXLOGIN_ADMIN_TOKEN").map(admin_token).transpose()?,
            log_format: parse(&get, "WXLOGIN_LOG_FORMAT", "text", "text or json")?,
            qr_per_ip_per_min: parse(&get, "WXLOGIN_QR_PER_IP_PER_MIN", "30", COUNT)?,
            max_scenes: parse(&get, "WXLOGIN_MAX_SCENES", "100000", COUNT)?,
            sms_per_phone_per_hour: parse(&get, "WXLOGIN_SMS_PER_PHONE_PER_HOUR", "5", COUNT)?,
            sms_per_ip_per_hour: parse(&get, "WXLOGIN_SMS_PER_IP_PER_HOUR", "20", COUNT)?,
            sms_per_user_per_hour: parse(&get, "WXLOGIN_SMS_PER_USER_PER_HOUR", "5", COUNT)?,
            scans_per_user_per_hour: parse(&get, "WXLOGIN_SCANS_PER_USER_PER_HOUR", "30", COUNT)?,
            public_url: get("WXLOGIN_PUBLIC_URL")
                .map(|raw| public_url(&raw))
                .transpose()?,
            oidc_clients: get("WXLOGIN_OIDC_CLIENTS")
                .map(|path| Clients::load(path.trim().as_ref()))
                .transpose()
                .map_err(|problem| invalid("WXLOGIN_OIDC_CLIENTS", problem))?
                .map(std::sync::Arc::new),
            oidc_code_ttl: seconds(
                &get,
                "WXLOGIN_OIDC_CODE_TTL_SECS",
                60,
                MAX_OIDC_CODE_TTL_SECS,
            )?,
            subject: subject(&get)?,
            login_mode,
            account_qr_url,
            confirm: confirm(&get)?,
            replies: Replies::load(
                get("WXLOGIN_REPLIES")
                    .map(|path| PathBuf::from(path.trim()))
                    .as_deref(),
                get("WXLOGIN_SITE_NAME")
                    .map_or_else(|| "wxlogin".into(), |name| name.trim().to_owned()),
            )
            .map_err(|problem| invalid("WXLOGIN_REPLIES", problem))?,
            default_lang: parse(&get, "WXLOGIN_DEFAULT_LANG", "zh-CN", "zh-CN or en")?,
            oauth_domain: oauth_domain(&get, bind)?,
            code_guess_window: seconds(
                &get,
                "WXLOGIN_CODE_GUESS_WINDOW_SECS",
                600,
                MAX_CODE_GUESS_WINDOW_SECS,
            )?,
            login_log_retention: login_log_retention(&get)?,
            token_clients: get("WXLOGIN_TOKEN_CLIENTS")
                .map(|raw| token_clients(&raw))
                .transpose()?
                .unwrap_or_default(),
            upstream: upstream(&get)?,
            scene_keys: SceneKeys::new(
                get("WXLOGIN_SCENE_PREFIX")
                    .as_deref()
                    .map_or(DEFAULT_PREFIX, str::trim),
            )
            .map_err(|problem| invalid("WXLOGIN_SCENE_PREFIX", problem))?,
            sandbox_push_url: sandbox_push_url(&get, sandbox)?,
            sandbox_appsecret: sandbox_only(
                &get,
                sandbox,
                "WXLOGIN_SANDBOX_APPSECRET",
                "the AppSecret outside the sandbox is WXLOGIN_APPSECRET",
            )?
            .map(|raw| match raw.trim() {
                "" => Err(invalid("WXLOGIN_SANDBOX_APPSECRET", "empty")),
                secret => Ok(Secret(secret.to_owned())),
            })
            .transpose()?,
        };
        if let Some((sign, how)) = real_deployment_sign(&settings, &get, &lookup) {
            return Err(invalid(
                "WXLOGIN_APPID",
                format!("unset, which starts the sandbox (where anyone can log in as any user), but {sign} is {how} as in a real deployment: set WXLOGIN_APPID for real mode, or unset {sign} to try the sandbox"),
            ));
        }
        Ok(settings)
    }
}

/// `WXLOGIN_OAUTH_DOMAIN`: WeChat redirects back only to its web authorization domain, so it
/// must be the host of `WXLOGIN_PUBLIC_URL` (by default the bound address), where the
/// callback is.
fn oauth_domain(
    get: &impl Fn(&str) -> Option<String>,
    bind: SocketAddr,
) -> Result<Option<String>, ConfigError> {
    const NAME: &str = "WXLOGIN_OAUTH_DOMAIN";
    let Some(domain) = get(NAME).map(|d| d.trim().to_ascii_lowercase()) else {
        return Ok(None);
    };
    if domain.contains(['/', ':']) {
        return Err(invalid(NAME, "a host name as the WeChat console takes it (网页授权域名), with no scheme, port or path, like login.example.com"));
    }
    let host = match get("WXLOGIN_PUBLIC_URL") {
        Some(public) => public_url(&public)?
            .host_str()
            .map(str::to_ascii_lowercase)
            .unwrap_or_default(),
        None => bind.ip().to_string(),
    };
    if host != domain {
        return Err(invalid(
            NAME,
            format!("{domain} is not the host of WXLOGIN_PUBLIC_URL ({host}), where the callback is: WeChat would refuse to send users back there"),
        ));
    }
    Ok(Some(domain))
}

/// Why a sandbox looks like a real deployment whose WXLOGIN_APPID is missing or misspelt: a
/// setting only real mode uses, and how it is set. Safe mode, the SMS webhook and the OpenID
/// Connect provider are all worth trying in the sandbox, so they are no sign; nor is
/// `WXLOGIN_STABLE_TOKEN`, which the simulator implements.
fn real_deployment_sign(
    settings: &Settings,
    get: &impl Fn(&str) -> Option<String>,
    raw: &impl Fn(&str) -> Option<String>,
) -> Option<(&'static str, &'static str)> {
    if !settings.is_sandbox() {
        return None;
    }
    // Set but empty (a compose file's unset substitution): someone meant a real account.
    let emptied = ["WXLOGIN_APPID", "WXLOGIN_APPSECRET"];
    if let Some(name) = emptied.into_iter().find(|name| raw(name).is_some()) {
        return Some((name, "set (empty)"));
    }
    let real_only = [
        "WXLOGIN_APPSECRET",
        "WXLOGIN_WECHAT_API",
        "WXLOGIN_ACCOUNT_QR_URL",
    ];
    if let Some(name) = real_only.into_iter().find(|name| get(name).is_some()) {
        return Some((name, "set"));
    }
    // The sandbox serves plain http; https is a public deployment's address.
    let https = settings
        .public_url
        .as_ref()
        .is_some_and(|url| url.scheme() == "https");
    https.then_some(("WXLOGIN_PUBLIC_URL", "https"))
}

/// An unknown variable, named with the known one nearest to it (when one is near).
fn unknown_setting(name: &str) -> ConfigError {
    let spelt = name.to_ascii_uppercase();
    let (distance, nearest) = SETTINGS
        .iter()
        .map(|known| (edit_distance(&spelt, known), *known))
        .min()
        .expect("there are settings");
    // Beyond half the name after the prefix, the nearest name is a guess that would mislead.
    let near = distance <= spelt.len().saturating_sub(PREFIX.len()) / 2;
    let hint = if near {
        format!("did you mean {nearest}?")
    } else {
        "the settings are listed in README.md".to_owned()
    };
    invalid(name, format!("not a wxlogin setting; {hint}"))
}

fn is_ours(name: &str) -> bool {
    name.get(..PREFIX.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(PREFIX))
}

/// Levenshtein distance: the fewest one-character insertions, deletions and substitutions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

fn account(get: &impl Fn(&str) -> Option<String>) -> Result<Account, ConfigError> {
    let Some(appid) = get("WXLOGIN_APPID") else {
        let token = get("WXLOGIN_TOKEN").unwrap_or_else(|| "sandbox-token".into());
        return Ok(Account::Sandbox { token });
    };
    let secret = get("WXLOGIN_APPSECRET")
        .ok_or_else(|| invalid("WXLOGIN_APPSECRET", "required with WXLOGIN_APPID"))?;
    let token = get("WXLOGIN_TOKEN")
        .ok_or_else(|| invalid("WXLOGIN_TOKEN", "required with WXLOGIN_APPID"))?;
    let api = get("WXLOGIN_WECHAT_API").unwrap_or_else(|| "https://api.weixin.qq.com".into());
    Ok(Account::Real {
        credentials: Credentials {
            appid,
            secret,
            token,
        },
        api: http_url("WXLOGIN_WECHAT_API", &api)?,
    })
}

/// Settings that only a cloud provider reads: set with another sender, they are a mistake.
const SMS_GATEWAY_SETTINGS: [&str; 7] = [
    "WXLOGIN_SMS_ACCESS_KEY_ID",
    "WXLOGIN_SMS_ACCESS_KEY_SECRET",
    "WXLOGIN_SMS_SIGN_NAME",
    "WXLOGIN_SMS_TEMPLATE",
    "WXLOGIN_SMS_SDK_APP_ID",
    "WXLOGIN_SMS_REGION",
    "WXLOGIN_SMS_ENDPOINT",
];

/// Shorter than this, an HMAC key could be guessed offline from one signed request.
const MIN_WEBHOOK_SECRET_LEN: usize = 20;

/// `WXLOGIN_SMS_PROVIDER` and the settings of the provider it names. Unset, the webhook is the
/// sender when `WXLOGIN_SMS_WEBHOOK` is set (as before the setting existed), else none.
fn sms_provider(get: &impl Fn(&str) -> Option<String>) -> Result<Option<SmsProvider>, ConfigError> {
    const NAME: &str = "WXLOGIN_SMS_PROVIDER";
    let webhook = get("WXLOGIN_SMS_WEBHOOK");
    let webhook_secret = get("WXLOGIN_SMS_WEBHOOK_SECRET");
    let gateway_setting = SMS_GATEWAY_SETTINGS
        .into_iter()
        .find(|name| get(name).is_some());
    let provider = get(NAME).map(|raw| raw.trim().to_owned());
    let provider = provider.as_deref().or(webhook.as_ref().map(|_| "webhook"));
    let gateway = |default_region: &str, default_endpoint: &str, tencent: bool| {
        if let Some(name) = webhook
            .as_ref()
            .map(|_| "WXLOGIN_SMS_WEBHOOK")
            .or(webhook_secret
                .as_ref()
                .map(|_| "WXLOGIN_SMS_WEBHOOK_SECRET"))
        {
            return Err(invalid(
                name,
                format!(
                    "set, but WXLOGIN_SMS_PROVIDER is {}: unset one of them",
                    provider.unwrap_or_default()
                ),
            ));
        }
        let required = |name: &'static str| {
            get(name).map(|v| v.trim().to_owned()).ok_or_else(|| {
                invalid(
                    name,
                    format!(
                        "required with WXLOGIN_SMS_PROVIDER={}",
                        provider.unwrap_or_default()
                    ),
                )
            })
        };
        let sdk_app_id = if tencent {
            Some(required("WXLOGIN_SMS_SDK_APP_ID")?)
        } else if get("WXLOGIN_SMS_SDK_APP_ID").is_some() {
            return Err(invalid(
                "WXLOGIN_SMS_SDK_APP_ID",
                "only Tencent Cloud SMS has an SdkAppId: unset it for aliyun",
            ));
        } else {
            None
        };
        let endpoint = get("WXLOGIN_SMS_ENDPOINT").unwrap_or_else(|| default_endpoint.into());
        Ok(SmsGateway {
            access_key_id: required("WXLOGIN_SMS_ACCESS_KEY_ID")?,
            access_key_secret: Secret(required("WXLOGIN_SMS_ACCESS_KEY_SECRET")?),
            sign_name: required("WXLOGIN_SMS_SIGN_NAME")?,
            template: required("WXLOGIN_SMS_TEMPLATE")?,
            sdk_app_id,
            region: get("WXLOGIN_SMS_REGION")
                .map_or_else(|| default_region.into(), |r| r.trim().to_owned()),
            endpoint: http_url("WXLOGIN_SMS_ENDPOINT", &endpoint)?,
        })
    };
    match provider {
        None => match (gateway_setting, webhook_secret) {
            (Some(name), _) => Err(invalid(
                name,
                "set, but no WXLOGIN_SMS_PROVIDER (aliyun or tencent) uses it",
            )),
            (None, Some(_)) => Err(invalid(
                "WXLOGIN_SMS_WEBHOOK_SECRET",
                "set, but WXLOGIN_SMS_WEBHOOK is not",
            )),
            (None, None) => Ok(None),
        },
        Some("webhook") => {
            if let Some(name) = gateway_setting {
                return Err(invalid(name, "set, but the webhook sends the codes: it is for WXLOGIN_SMS_PROVIDER=aliyun or tencent"));
            }
            let url = webhook.ok_or_else(|| {
                invalid(
                    "WXLOGIN_SMS_WEBHOOK",
                    "required with WXLOGIN_SMS_PROVIDER=webhook",
                )
            })?;
            let secret = webhook_secret
                .map(|secret| {
                    let secret = secret.trim().to_owned();
                    if secret.len() < MIN_WEBHOOK_SECRET_LEN {
                        return Err(invalid("WXLOGIN_SMS_WEBHOOK_SECRET", format!("must be at least {MIN_WEBHOOK_SECRET_LEN} characters (use a random one, e.g. openssl rand -hex 32)")));
                    }
                    Ok(Secret(secret))
                })
                .transpose()?;
            Ok(Some(SmsProvider::Webhook {
                url: http_url("WXLOGIN_SMS_WEBHOOK", &url)?,
                secret,
            }))
        }
        Some("aliyun") => Ok(Some(SmsProvider::Aliyun(gateway(
            "cn-hangzhou",
            "https://dysmsapi.aliyuncs.com/",
            false,
        )?))),
        Some("tencent") => Ok(Some(SmsProvider::Tencent(gateway(
            "ap-guangzhou",
            "https://sms.tencentcloudapi.com/",
            true,
        )?))),
        Some(other) => Err(invalid(
            NAME,
            format!("{other:?} is not webhook, aliyun or tencent"),
        )),
    }
}

fn callback_senders(get: &impl Fn(&str) -> Option<String>) -> Result<CallbackSenders, ConfigError> {
    match get("WXLOGIN_CALLBACK_IPS").as_deref().map(str::trim) {
        None => Ok(CallbackSenders::Anyone),
        Some("wechat") => Ok(CallbackSenders::Wechat),
        Some(list) => IpRanges::parse(list.split(','))
            .map(CallbackSenders::Only)
            .map_err(|e| {
                invalid(
                    "WXLOGIN_CALLBACK_IPS",
                    format!(
                        "{e}: give `wechat` or a comma-separated list of addresses and CIDR ranges"
                    ),
                )
            }),
    }
}

/// `WXLOGIN_UPSTREAM_URL` and its companions, which mean nothing without it.
fn upstream(get: &impl Fn(&str) -> Option<String>) -> Result<Option<Upstream>, ConfigError> {
    const NAME: &str = "WXLOGIN_UPSTREAM_URL";
    let Some(raw) = get(NAME) else {
        let companion = ["WXLOGIN_UPSTREAM_FORWARD", "WXLOGIN_UPSTREAM_TIMEOUT_MS"]
            .into_iter()
            .find(|name| get(name).is_some());
        return match companion {
            Some(name) => Err(invalid(name, format!("set, but {NAME} is not"))),
            None => Ok(None),
        };
    };
    let url = http_url(NAME, &raw)?;
    // WeChat's query string (its signatures) becomes the request's: there is no room for another.
    if url.query().is_some() || url.fragment().is_some() || url.cannot_be_a_base() {
        return Err(invalid(
            NAME,
            "must have no query or fragment: each push is sent with WeChat's own query string",
        ));
    }
    let expected = format!(
        "a whole number of milliseconds from {MIN_UPSTREAM_TIMEOUT_MS} to {MAX_UPSTREAM_TIMEOUT_MS} (WeChat waits 5 s)"
    );
    let ms: u64 = parse(get, "WXLOGIN_UPSTREAM_TIMEOUT_MS", "4000", &expected)?;
    if !(MIN_UPSTREAM_TIMEOUT_MS..=MAX_UPSTREAM_TIMEOUT_MS).contains(&ms) {
        return Err(invalid(
            "WXLOGIN_UPSTREAM_TIMEOUT_MS",
            format!("{ms} is not {expected}"),
        ));
    }
    Ok(Some(Upstream {
        url,
        forward: parse(get, "WXLOGIN_UPSTREAM_FORWARD", "others", "others or all")?,
        budget: Duration::from_millis(ms),
    }))
}

/// `WXLOGIN_SANDBOX_PUSH_URL`: only the sandbox's simulated WeChat pushes anywhere.
fn sandbox_push_url(
    get: &impl Fn(&str) -> Option<String>,
    sandbox: bool,
) -> Result<Option<Url>, ConfigError> {
    const NAME: &str = "WXLOGIN_SANDBOX_PUSH_URL";
    sandbox_only(
        get,
        sandbox,
        NAME,
        "real WeChat pushes to the URL set in its console",
    )?
    .map(|raw| http_url(NAME, &raw))
    .transpose()
}

/// A setting of the simulator: refused outside the sandbox, where it would mean nothing (and
/// suggest the operator thinks the simulator is running), for `why`.
fn sandbox_only(
    get: &impl Fn(&str) -> Option<String>,
    sandbox: bool,
    name: &str,
    why: &str,
) -> Result<Option<String>, ConfigError> {
    let value = get(name);
    if value.is_some() && !sandbox {
        return Err(invalid(
            name,
            format!("set, but WXLOGIN_APPID is too: {why}, so unset it"),
        ));
    }
    Ok(value)
}

fn confirm(get: &impl Fn(&str) -> Option<String>) -> Result<bool, ConfigError> {
    match get("WXLOGIN_CONFIRM").as_deref().map(str::trim) {
        None | Some("off") => Ok(false),
        Some("number") => Ok(true),
        Some(other) => Err(invalid(
            "WXLOGIN_CONFIRM",
            format!("{other:?} is not off or number"),
        )),
    }
}

/// `WXLOGIN_LOGIN_LOG_DAYS`: 180 by default, `0` to keep everything, a century at most.
fn login_log_retention(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<Duration>, ConfigError> {
    const NAME: &str = "WXLOGIN_LOGIN_LOG_DAYS";
    const MAX_DAYS: u64 = 36_500;
    let days: u64 = parse(
        get,
        NAME,
        "180",
        "a whole number of days (0 keeps every login)",
    )?;
    if days > MAX_DAYS {
        return Err(invalid(
            NAME,
            format!("at most {MAX_DAYS} (0 keeps every login)"),
        ));
    }
    Ok((days > 0).then(|| Duration::from_secs(days * 86_400)))
}

fn parse<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: &str,
    expected: &str,
) -> Result<T, ConfigError> {
    let raw = get(name).unwrap_or_else(|| default.into());
    raw.trim()
        .parse()
        .map_err(|_| invalid(name, format!("{raw:?} is not {expected}")))
}

/// `WXLOGIN_SUBJECT`: only for the OpenID Connect provider, which alone has subjects.
fn subject(get: &impl Fn(&str) -> Option<String>) -> Result<SubjectSource, ConfigError> {
    const NAME: &str = "WXLOGIN_SUBJECT";
    if get(NAME).is_some() && get("WXLOGIN_OIDC_CLIENTS").is_none() {
        return Err(invalid(NAME, "set, but WXLOGIN_OIDC_CLIENTS is not"));
    }
    parse(get, NAME, "openid", "openid or unionid")
}

/// A duration in whole seconds, from 1 to `max`.
fn seconds(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
    max: u64,
) -> Result<Duration, ConfigError> {
    let expected = format!("a whole number of seconds from 1 to {max}");
    let secs: u64 = parse(get, name, &default.to_string(), &expected)?;
    if !(1..=max).contains(&secs) {
        return Err(invalid(name, format!("{secs} is not {expected}")));
    }
    Ok(Duration::from_secs(secs))
}

fn flag(get: &impl Fn(&str) -> Option<String>, name: &'static str) -> Result<bool, ConfigError> {
    match get(name).as_deref().map(str::trim) {
        None | Some("0" | "false" | "no" | "off") => Ok(false),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some(other) => Err(invalid(
            name,
            format!("{other:?} is not one of 1/0, true/false, yes/no, on/off"),
        )),
    }
}

/// Shorter than this, a key could be guessed online.
const MIN_TOKEN_CLIENT_KEY_LEN: usize = 32;

/// `WXLOGIN_TOKEN_CLIENTS`: `name:key,name:key`. Names are letters, digits, `.`, `_` and `-`
/// (they label metrics and log lines); keys 32+ printable characters without `,` or spaces.
/// Neither may repeat: a request must name one caller.
fn token_clients(raw: &str) -> Result<Vec<TokenClient>, ConfigError> {
    const NAME: &str = "WXLOGIN_TOKEN_CLIENTS";
    let mut clients: Vec<TokenClient> = Vec::new();
    for (i, entry) in raw.split(',').map(str::trim).enumerate() {
        let n = i + 1;
        let (name, key) = entry.split_once(':').ok_or_else(|| {
            invalid(
                NAME,
                format!("entry {n} is not name:key (e.g. shop:$(openssl rand -hex 32))"),
            )
        })?;
        let (name, key) = (name.trim(), key.trim());
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !name_ok {
            return Err(invalid(
                NAME,
                format!("entry {n}: the name must be 1 to 64 letters, digits, '.', '_' or '-'"),
            ));
        }
        if key.len() < MIN_TOKEN_CLIENT_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(NAME, format!("{name}: the key must be at least {MIN_TOKEN_CLIENT_KEY_LEN} printable characters without spaces (use a random one, e.g. openssl rand -hex 32)")));
        }
        if clients.iter().any(|c| c.name == name) {
            return Err(invalid(NAME, format!("{name} is named twice")));
        }
        if clients.iter().any(|c| c.key.expose() == key) {
            return Err(invalid(
                NAME,
                format!("{name} has the key of another client: give each its own"),
            ));
        }
        clients.push(TokenClient {
            name: name.to_owned(),
            key: Secret(key.to_owned()),
        });
    }
    Ok(clients)
}

/// Shorter than this, a token could be guessed online.
const MIN_ADMIN_TOKEN_LEN: usize = 20;

fn admin_token(token: String) -> Result<String, ConfigError> {
    let token = token.trim().to_owned();
    if token.len() < MIN_ADMIN_TOKEN_LEN {
        return Err(invalid("WXLOGIN_ADMIN_TOKEN", format!("must be at least {MIN_ADMIN_TOKEN_LEN} characters (use a random one, e.g. openssl rand -hex 32)")));
    }
    Ok(token)
}

fn aes_key(key: &str) -> Result<String, ConfigError> {
    MessageCrypto::new(key, "").map_err(|_| {
        invalid("WXLOGIN_AES_KEY", format!("must be the {ENCODING_AES_KEY_LEN}-character EncodingAESKey from WeChat's console (got {} characters)", key.len()))
    })?;
    Ok(key.to_owned())
}

/// The issuer must be a plain origin (and path): OpenID Connect forbids a query or fragment.
fn public_url(raw: &str) -> Result<Url, ConfigError> {
    let url = http_url("WXLOGIN_PUBLIC_URL", raw)?;
    if url.query().is_some() || url.fragment().is_some() || url.cannot_be_a_base() {
        return Err(invalid(
            "WXLOGIN_PUBLIC_URL",
            format!("{raw:?} must have no query or fragment"),
        ));
    }
    // The login page and the OpenID Connect endpoints live at the root of the host.
    if url.path() != "/" {
        return Err(invalid(
            "WXLOGIN_PUBLIC_URL",
            format!("{raw:?} must be the root of its host (no path): serve wxlogin on a host of its own"),
        ));
    }
    Ok(url)
}

/// An http(s) URL. The errors never show the value: it may carry a password.
fn http_url(name: &'static str, raw: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw.trim()).map_err(|e| invalid(name, format!("not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(
            name,
            format!("a {}: URL, not http(s)", url.scheme()),
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn a_bad_url_is_refused_without_showing_its_password() {
        for raw in [
            "http://user:hunter2@host:99999/",
            "ftp://user:hunter2@host/",
        ] {
            let e = http_url("WXLOGIN_UPSTREAM_URL", raw)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("WXLOGIN_UPSTREAM_URL") && !e.contains("hunter2"),
                "{e}"
            );
        }
    }

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    const REAL: [(&str, &str); 3] = [
        ("WXLOGIN_APPID", "wx1"),
        ("WXLOGIN_APPSECRET", "s"),
        ("WXLOGIN_TOKEN", "t"),
    ];

    #[test]
    fn the_parser_reads_exactly_the_known_settings() {
        let read = RefCell::new(BTreeSet::new());
        for vars in [&[][..], &REAL[..]] {
            let vars: HashMap<_, _> = vars.iter().copied().collect();
            Settings::from_lookup(|name| {
                read.borrow_mut().insert(name.to_owned());
                vars.get(name).map(|v| v.to_string())
            })
            .unwrap();
        }
        let known: BTreeSet<_> = SETTINGS.iter().map(|s| s.to_string()).collect();
        assert_eq!(read.into_inner(), known);
    }

    #[test]
    fn an_unknown_setting_is_named_with_the_nearest_known_one() {
        for vars in [&[][..], &REAL[..]] {
            let vars = [vars, &[("WXLOGIN_APP_ID", "wx1")]].concat();
            let e = settings(&vars).unwrap_err();
            assert_eq!(e.name, "WXLOGIN_APP_ID");
            assert!(e.problem.contains("did you mean WXLOGIN_APPID?"), "{e}");
        }
        let e = settings(&[("wxlogin_session_ttl_secs", "60")]).unwrap_err();
        assert_eq!(e.name, "wxlogin_session_ttl_secs");
        assert!(
            e.problem.contains("did you mean WXLOGIN_SESSION_TTL_SECS?"),
            "{e}"
        );
        let e = settings(&[("WXLOGIN_FLUX_CAPACITOR", "1")]).unwrap_err();
        assert!(!e.problem.contains("did you mean"), "{e}");
        // Other variables are none of ours, and an empty known one is as good as unset.
        settings(&[
            ("RUST_LOG", "debug"),
            ("WX_LOGIN", "x"),
            ("WXLOGIN_SITE_NAME", " "),
        ])
        .unwrap();
    }

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("WXLOGIN_APPID", "WXLOGIN_APPID"), 0);
        assert_eq!(edit_distance("WXLOGIN_APP_ID", "WXLOGIN_APPID"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn every_duration_is_bounded() {
        let durations = [
            ("WXLOGIN_SCENE_TTL_SECS", MAX_SCENE_TTL_SECS),
            ("WXLOGIN_SESSION_TTL_SECS", MAX_SESSION_TTL_SECS),
            ("WXLOGIN_TIMESTAMP_WINDOW_SECS", MAX_TIMESTAMP_WINDOW_SECS),
            ("WXLOGIN_WECHAT_TIMEOUT_SECS", MAX_WECHAT_TIMEOUT_SECS),
            ("WXLOGIN_SHUTDOWN_TIMEOUT_SECS", MAX_SHUTDOWN_TIMEOUT_SECS),
            ("WXLOGIN_OIDC_CODE_TTL_SECS", MAX_OIDC_CODE_TTL_SECS),
            ("WXLOGIN_CODE_GUESS_WINDOW_SECS", MAX_CODE_GUESS_WINDOW_SECS),
        ];
        for (name, max) in durations {
            settings(&[(name, &max.to_string())]).unwrap();
            for bad in [
                "0".to_owned(),
                (max + 1).to_string(),
                u64::MAX.to_string(),
                "99999999999999999999999".to_owned(),
            ] {
                let e = settings(&[(name, &bad)]).unwrap_err();
                assert_eq!(e.name, name, "{bad}");
                assert!(e.problem.contains(&max.to_string()), "{e}");
            }
        }
    }

    #[test]
    fn the_sandbox_refuses_a_real_deployments_settings() {
        let signs = [
            ("WXLOGIN_APPSECRET", "s"),
            ("WXLOGIN_WECHAT_API", "https://api.weixin.qq.com"),
            ("WXLOGIN_ACCOUNT_QR_URL", "https://example.com/qr.jpg"),
            ("WXLOGIN_PUBLIC_URL", "https://login.example.com"),
        ];
        for sign in signs {
            let e = settings(&[sign]).unwrap_err();
            assert_eq!(e.name, "WXLOGIN_APPID", "{sign:?}");
            assert!(e.problem.contains(sign.0), "{e}");
            // With the AppID they are what real mode needs.
            settings(&[&REAL[..], &[sign]].concat()).unwrap();
        }
        // Set but empty, as a compose file's unset `${APPID}` leaves them.
        for name in ["WXLOGIN_APPID", "WXLOGIN_APPSECRET"] {
            let e = settings(&[(name, "")]).unwrap_err();
            assert_eq!(e.name, "WXLOGIN_APPID", "{e}");
            assert!(e.problem.contains(name), "{e}");
        }
        // What the sandbox is for.
        let s = settings(&[
            ("WXLOGIN_PUBLIC_URL", "http://192.168.1.2:8080"),
            (
                "WXLOGIN_AES_KEY",
                "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
            ),
            ("WXLOGIN_SMS_WEBHOOK", "https://sms.example.com/send"),
            ("WXLOGIN_TOKEN", "t"),
            ("WXLOGIN_STABLE_TOKEN", "1"),
        ])
        .unwrap();
        assert!(s.is_sandbox());
    }

    #[test]
    fn nothing_set_is_a_sandbox_on_localhost() {
        let s = settings(&[]).unwrap();
        assert!(s.is_sandbox());
        assert_eq!(s.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(s.scene_ttl, Duration::from_secs(300));
        assert_eq!(s.session_ttl, Duration::from_secs(604_800));
        assert!(!s.trust_proxy);
        assert!(s.aes_key.is_none() && !s.stable_token);
        assert_eq!(s.timestamp_window, Duration::from_secs(300));
        assert_eq!(s.callback_senders, CallbackSenders::Anyone);
        let senders = |value| {
            settings(&[("WXLOGIN_CALLBACK_IPS", value)])
                .unwrap()
                .callback_senders
        };
        assert_eq!(senders(" wechat "), CallbackSenders::Wechat);
        assert_eq!(
            senders("203.0.113.0/24, 2001:db8::1"),
            CallbackSenders::Only(IpRanges::parse(["203.0.113.0/24", "2001:db8::1"]).unwrap())
        );
        assert_eq!(s.wechat_timeout, Duration::from_secs(5));
        assert_eq!(s.shutdown_timeout, Duration::from_secs(10));
        assert_eq!((s.qr_per_ip_per_min, s.max_scenes), (30, 100_000));
        assert_eq!((s.sms_per_phone_per_hour, s.sms_per_ip_per_hour), (5, 20));
        assert_eq!(
            (s.sms_per_user_per_hour, s.scans_per_user_per_hour),
            (5, 30)
        );
        assert!(s.public_url.is_none() && s.oidc_clients.is_none());
        assert_eq!(s.oidc_code_ttl, Duration::from_secs(60));
        assert_eq!(s.login_mode, LoginModeSetting::QrCode);
        assert!(!s.confirm && s.account_qr_url.is_none());
        assert!(s.replies.render("how_to", &[]).contains("「wxlogin」"));
        assert_eq!(s.default_lang, Lang::ZhCn);
        assert_eq!(s.oauth_domain, None);
        assert_eq!(s.code_guess_window, Duration::from_secs(600));
        assert_eq!(
            s.login_log_retention,
            Some(Duration::from_secs(180 * 86_400))
        );
        assert!(s.upstream.is_none() && s.sandbox_push_url.is_none());
        assert_eq!(s.scene_keys, SceneKeys::default());
        let keep_all = settings(&[("WXLOGIN_LOGIN_LOG_DAYS", "0")]).unwrap();
        assert_eq!(keep_all.login_log_retention, None);
        // The sandbox serves its own account QR code.
        let code = settings(&[
            ("WXLOGIN_LOGIN_MODE", "code"),
            ("WXLOGIN_CONFIRM", "number"),
        ]);
        let code = code.unwrap();
        assert_eq!(code.login_mode, LoginModeSetting::Code);
        assert!(code.confirm);
        assert_eq!(
            settings(&[("WXLOGIN_MAX_SCENES", "0")]).unwrap().max_scenes,
            0
        );
        let key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
        assert_eq!(
            settings(&[("WXLOGIN_AES_KEY", key)])
                .unwrap()
                .aes_key
                .as_deref(),
            Some(key)
        );
    }

    #[test]
    fn a_full_account_is_real_mode() {
        let s = settings(&[
            ("WXLOGIN_APPID", "wx1"),
            ("WXLOGIN_APPSECRET", "topsecret"),
            ("WXLOGIN_TOKEN", "t"),
        ])
        .unwrap();
        let Account::Real { credentials, api } = s.account else {
            panic!("not real")
        };
        assert_eq!(credentials.appid, "wx1");
        assert_eq!(api.as_str(), "https://api.weixin.qq.com/");
        assert!(!format!("{credentials:?}").contains("topsecret"));
    }

    #[test]
    fn the_upstream_is_an_http_url_answered_within_wechats_deadline() {
        let url = (
            "WXLOGIN_UPSTREAM_URL",
            "https://user:pw@account.example/wechat",
        );
        let upstream = settings(&[url]).unwrap().upstream.unwrap();
        assert_eq!(upstream.url.path(), "/wechat");
        assert_eq!(upstream.forward, UpstreamForward::Others);
        assert_eq!(upstream.budget, Duration::from_millis(4000));
        assert!(!format!("{upstream:?}").contains("pw"));
        let all = settings(&[
            url,
            ("WXLOGIN_UPSTREAM_FORWARD", "all"),
            ("WXLOGIN_UPSTREAM_TIMEOUT_MS", "4500"),
        ])
        .unwrap()
        .upstream
        .unwrap();
        assert_eq!(
            (all.forward, all.budget),
            (UpstreamForward::All, Duration::from_millis(4500))
        );
        let cases: &[&[(&str, &str)]] = &[
            &[("WXLOGIN_UPSTREAM_URL", "account.example/wechat")],
            &[(
                "WXLOGIN_UPSTREAM_URL",
                "http://account.example/wechat?route=1",
            )],
            &[url, ("WXLOGIN_UPSTREAM_TIMEOUT_MS", "99")],
            &[url, ("WXLOGIN_UPSTREAM_TIMEOUT_MS", "4501")],
            &[url, ("WXLOGIN_UPSTREAM_FORWARD", "every")],
        ];
        for vars in cases {
            let name = vars.last().unwrap().0;
            assert_eq!(settings(vars).unwrap_err().name, name, "{vars:?}");
        }
        // Its companions mean nothing without it.
        for name in ["WXLOGIN_UPSTREAM_FORWARD", "WXLOGIN_UPSTREAM_TIMEOUT_MS"] {
            let e = settings(&[(name, "all")]).unwrap_err();
            assert_eq!(e.name, name);
            assert!(e.problem.contains("WXLOGIN_UPSTREAM_URL"), "{e}");
        }
    }

    #[test]
    fn the_scene_prefix_and_the_sandbox_push_url_are_checked() {
        let s = settings(&[("WXLOGIN_SCENE_PREFIX", " shop_ ")]).unwrap();
        assert_eq!(s.scene_keys, SceneKeys::new("shop_").unwrap());
        let e = settings(&[("WXLOGIN_SCENE_PREFIX", "qrscene_x")]).unwrap_err();
        assert_eq!(e.name, "WXLOGIN_SCENE_PREFIX");
        let push = ("WXLOGIN_SANDBOX_PUSH_URL", "http://127.0.0.1:9000/wechat");
        let s = settings(&[push]).unwrap();
        assert_eq!(s.sandbox_push_url.unwrap().port(), Some(9000));
        // Real WeChat pushes where its console says.
        let e = settings(&[&REAL[..], &[push]].concat()).unwrap_err();
        assert_eq!(e.name, "WXLOGIN_SANDBOX_PUSH_URL");
    }

    #[test]
    fn the_sandbox_appsecret_is_the_sandbox_s_alone() {
        assert!(settings(&[]).unwrap().sandbox_appsecret.is_none());
        let secret = ("WXLOGIN_SANDBOX_APPSECRET", " a-shared-sandbox-secret ");
        let s = settings(&[secret]).unwrap();
        assert_eq!(
            s.sandbox_appsecret.unwrap().expose(),
            "a-shared-sandbox-secret"
        );
        // Outside the sandbox the account's secret is WXLOGIN_APPSECRET's; this one would be
        // ignored, so it is refused, and the message never echoes a secret.
        let e = settings(&[&REAL[..], &[secret]].concat()).unwrap_err();
        assert_eq!(e.name, "WXLOGIN_SANDBOX_APPSECRET");
        assert!(!e.to_string().contains("a-shared-sandbox-secret"), "{e}");
    }

    const ALIYUN: [(&str, &str); 5] = [
        ("WXLOGIN_SMS_PROVIDER", "aliyun"),
        ("WXLOGIN_SMS_ACCESS_KEY_ID", "LTAIexample"),
        ("WXLOGIN_SMS_ACCESS_KEY_SECRET", "the-access-key-secret"),
        ("WXLOGIN_SMS_SIGN_NAME", "阿里云短信测试"),
        ("WXLOGIN_SMS_TEMPLATE", "SMS_154950909"),
    ];

    #[test]
    fn the_sms_provider_is_named_or_the_webhook_by_default() {
        assert!(settings(&[]).unwrap().sms.is_none());
        let webhook = settings(&[("WXLOGIN_SMS_WEBHOOK", "https://sms.example.com/send")]);
        let Some(SmsProvider::Webhook { url, secret: None }) = webhook.unwrap().sms else {
            panic!("not the unsigned webhook")
        };
        assert_eq!(url.as_str(), "https://sms.example.com/send");
        let Some(SmsProvider::Aliyun(gateway)) = settings(&ALIYUN).unwrap().sms else {
            panic!("not aliyun")
        };
        assert_eq!(gateway.endpoint.as_str(), "https://dysmsapi.aliyuncs.com/");
        assert_eq!(gateway.region, "cn-hangzhou");
        assert!(gateway.sdk_app_id.is_none());
        assert!(!format!("{gateway:?}").contains("the-access-key-secret"));
        let tencent = [
            &ALIYUN[1..],
            &[
                ("WXLOGIN_SMS_PROVIDER", "tencent"),
                ("WXLOGIN_SMS_SDK_APP_ID", "1400006666"),
            ],
        ]
        .concat();
        let Some(SmsProvider::Tencent(gateway)) = settings(&tencent).unwrap().sms else {
            panic!("not tencent")
        };
        assert_eq!(
            gateway.endpoint.as_str(),
            "https://sms.tencentcloudapi.com/"
        );
        assert_eq!(gateway.region, "ap-guangzhou");
        assert_eq!(gateway.sdk_app_id.as_deref(), Some("1400006666"));
    }

    #[test]
    fn each_bad_setting_is_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("WXLOGIN_APPID", "wx1"), ("WXLOGIN_TOKEN", "t")],
                "WXLOGIN_APPSECRET",
            ),
            (
                &[("WXLOGIN_APPID", "wx1"), ("WXLOGIN_APPSECRET", "s")],
                "WXLOGIN_TOKEN",
            ),
            (&[("WXLOGIN_APPSECRET", "s")], "WXLOGIN_APPID"),
            (&[("WXLOGIN_BIND", "localhost")], "WXLOGIN_BIND"),
            (
                &[("WXLOGIN_SCENE_TTL_SECS", "five")],
                "WXLOGIN_SCENE_TTL_SECS",
            ),
            (&[("WXLOGIN_SCENE_TTL_SECS", "0")], "WXLOGIN_SCENE_TTL_SECS"),
            (
                &[("WXLOGIN_SCENE_TTL_SECS", "2592001")],
                "WXLOGIN_SCENE_TTL_SECS",
            ),
            (
                &[("WXLOGIN_SESSION_TTL_SECS", "-1")],
                "WXLOGIN_SESSION_TTL_SECS",
            ),
            (&[("WXLOGIN_SMS_WEBHOOK", "ftp://x")], "WXLOGIN_SMS_WEBHOOK"),
            (&[("WXLOGIN_TRUST_PROXY", "maybe")], "WXLOGIN_TRUST_PROXY"),
            (&[("WXLOGIN_AES_KEY", "tooshort")], "WXLOGIN_AES_KEY"),
            (&[("WXLOGIN_AES_KEY", &"!".repeat(43))], "WXLOGIN_AES_KEY"),
            (
                &[("WXLOGIN_TIMESTAMP_WINDOW_SECS", "x")],
                "WXLOGIN_TIMESTAMP_WINDOW_SECS",
            ),
            (
                &[("WXLOGIN_WECHAT_TIMEOUT_SECS", "0")],
                "WXLOGIN_WECHAT_TIMEOUT_SECS",
            ),
            (&[("WXLOGIN_STABLE_TOKEN", "2")], "WXLOGIN_STABLE_TOKEN"),
            (
                &[("WXLOGIN_CALLBACK_IPS", "WeChat")],
                "WXLOGIN_CALLBACK_IPS",
            ),
            (
                &[("WXLOGIN_CALLBACK_IPS", "10.0.0.0/8,")],
                "WXLOGIN_CALLBACK_IPS",
            ),
            (
                &[("WXLOGIN_QR_PER_IP_PER_MIN", "-1")],
                "WXLOGIN_QR_PER_IP_PER_MIN",
            ),
            (&[("WXLOGIN_MAX_SCENES", "many")], "WXLOGIN_MAX_SCENES"),
            (
                &[("WXLOGIN_SMS_PER_PHONE_PER_HOUR", "1.5")],
                "WXLOGIN_SMS_PER_PHONE_PER_HOUR",
            ),
            (
                &[("WXLOGIN_SMS_PER_IP_PER_HOUR", "x")],
                "WXLOGIN_SMS_PER_IP_PER_HOUR",
            ),
            (
                &[("WXLOGIN_SHUTDOWN_TIMEOUT_SECS", "0")],
                "WXLOGIN_SHUTDOWN_TIMEOUT_SECS",
            ),
            (
                &[("WXLOGIN_PUBLIC_URL", "login.example")],
                "WXLOGIN_PUBLIC_URL",
            ),
            (
                &[("WXLOGIN_PUBLIC_URL", "https://login.example/?a=b")],
                "WXLOGIN_PUBLIC_URL",
            ),
            (
                &[("WXLOGIN_OIDC_CLIENTS", "/nonexistent/clients.toml")],
                "WXLOGIN_OIDC_CLIENTS",
            ),
            (
                &[("WXLOGIN_OIDC_CODE_TTL_SECS", "0")],
                "WXLOGIN_OIDC_CODE_TTL_SECS",
            ),
            (&[("WXLOGIN_LOGIN_MODE", "text")], "WXLOGIN_LOGIN_MODE"),
            (
                &[("WXLOGIN_ACCOUNT_QR_URL", "qr.png")],
                "WXLOGIN_ACCOUNT_QR_URL",
            ),
            (
                &[("WXLOGIN_PUBLIC_URL", "https://example.com/login")],
                "WXLOGIN_PUBLIC_URL",
            ),
            (&[("WXLOGIN_CONFIRM", "yes")], "WXLOGIN_CONFIRM"),
            (
                &[("WXLOGIN_CODE_GUESS_WINDOW_SECS", "0")],
                "WXLOGIN_CODE_GUESS_WINDOW_SECS",
            ),
        ];
        // Each of a provider's required settings, missing, is named; so is a setting no chosen
        // sender reads, and a short webhook secret.
        for (name, _) in &ALIYUN[1..] {
            let vars: Vec<_> = ALIYUN.iter().filter(|(n, _)| n != name).copied().collect();
            assert_eq!(settings(&vars).unwrap_err().name, *name);
        }
        let tencent_without_app = [&ALIYUN[1..], &[("WXLOGIN_SMS_PROVIDER", "tencent")]].concat();
        assert_eq!(
            settings(&tencent_without_app).unwrap_err().name,
            "WXLOGIN_SMS_SDK_APP_ID"
        );
        let sms_cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("WXLOGIN_SMS_PROVIDER", "twilio")],
                "WXLOGIN_SMS_PROVIDER",
            ),
            (
                &[("WXLOGIN_SMS_PROVIDER", "webhook")],
                "WXLOGIN_SMS_WEBHOOK",
            ),
            (&[("WXLOGIN_SMS_SIGN_NAME", "x")], "WXLOGIN_SMS_SIGN_NAME"),
            (
                &[("WXLOGIN_SMS_WEBHOOK_SECRET", "a-webhook-secret-0123456789")],
                "WXLOGIN_SMS_WEBHOOK_SECRET",
            ),
            (
                &[
                    ("WXLOGIN_SMS_WEBHOOK", "https://x/"),
                    ("WXLOGIN_SMS_WEBHOOK_SECRET", "short"),
                ],
                "WXLOGIN_SMS_WEBHOOK_SECRET",
            ),
            (
                &[
                    ("WXLOGIN_SMS_WEBHOOK", "https://x/"),
                    ("WXLOGIN_SMS_TEMPLATE", "SMS_1"),
                ],
                "WXLOGIN_SMS_TEMPLATE",
            ),
        ];
        for (vars, name) in sms_cases {
            assert_eq!(settings(vars).unwrap_err().name, *name, "{vars:?}");
        }
        let both = [&ALIYUN[..], &[("WXLOGIN_SMS_WEBHOOK", "https://x/")]].concat();
        assert_eq!(settings(&both).unwrap_err().name, "WXLOGIN_SMS_WEBHOOK");
        let endpoint = [&ALIYUN[..], &[("WXLOGIN_SMS_ENDPOINT", "ftp://x")]].concat();
        assert_eq!(
            settings(&endpoint).unwrap_err().name,
            "WXLOGIN_SMS_ENDPOINT"
        );
        for mode in ["code", "auto"] {
            let vars = [&REAL[..], &[("WXLOGIN_LOGIN_MODE", mode)]].concat();
            assert_eq!(settings(&vars).unwrap_err().name, "WXLOGIN_ACCOUNT_QR_URL");
        }
        for (vars, name) in cases {
            assert_eq!(settings(vars).unwrap_err().name, *name, "{vars:?}");
        }
    }

    #[test]
    fn token_clients_are_named_keys() {
        let key_a = "a".repeat(32);
        let key_b = "b".repeat(40);
        let raw = format!(" shop:{key_a} , crm.v2:{key_b}");
        let s = settings(&[("WXLOGIN_TOKEN_CLIENTS", &raw)]).unwrap();
        let clients: Vec<_> = s
            .token_clients
            .iter()
            .map(|c| (c.name.as_str(), c.key.expose()))
            .collect();
        assert_eq!(
            clients,
            [("shop", key_a.as_str()), ("crm.v2", key_b.as_str())]
        );
        assert!(settings(&[]).unwrap().token_clients.is_empty());
        assert!(
            !format!("{:?}", s.token_clients).contains(&key_a),
            "keys never shown"
        );
        let short = "c".repeat(31);
        for bad in [
            format!("shop{key_a}"),
            format!(":{key_a}"),
            format!("sh op:{key_a}"),
            format!("shop:{short}"),
            format!("shop:{key_a} x"),
            format!("shop:{key_a},shop:{key_b}"),
            format!("shop:{key_a},crm:{key_a}"),
            format!("shop:{key_a},"),
        ] {
            let e = settings(&[("WXLOGIN_TOKEN_CLIENTS", &bad)]).unwrap_err();
            assert_eq!(e.name, "WXLOGIN_TOKEN_CLIENTS", "{bad}");
            assert!(
                !e.problem.contains(&key_a) && !e.problem.contains(&short),
                "{e}"
            );
        }
    }
}
