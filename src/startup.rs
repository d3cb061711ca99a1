//! Wires configuration, storage, actors, WeChat and HTTP into a running server.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use actix_web::dev::Server;
use actix_web::middleware::{from_fn, ErrorHandlers};
use actix_web::{web, App, HttpServer};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use url::Url;
use wxlogin_actors::{LoginMode, SceneSettings, SceneSupervisor, TokenActor};
use wxlogin_storage::{Store, StoreError};

use crate::config::{Account, Database, Secret, Settings, SmsProvider};
use crate::error::json_error_body;
use crate::http::{
    self, AbuseLimits, AppState, Callback, LoginModes, SessionCookies, TokenCenter,
    WebAuthorization,
};
use crate::metrics::Metrics;
use crate::mode_marker::{self, ModeError};
use crate::oidc::keys::KeyError;
use crate::oidc::Provider;
use crate::sandbox::Simulator;
use crate::sms::SmsSender;
use crate::unionid::UnionIds;
use crate::wechat::api::{CredentialTokenSource, TicketSource, WechatApi, WechatClient};
use crate::wechat::crypto::MessageCrypto;
use crate::wechat::envelope::CallbackKeys;
use crate::wechat::shared_token::SharedSource;

/// How often expired sessions and tokens, and logins past their retention, are deleted.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("WXLOGIN_BIND: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "WXLOGIN_DATA_DIR: cannot open the store in {dir} (is another wxlogin using it?): {source}"
    )]
    Store { dir: String, source: StoreError },
    #[error("WXLOGIN_DATABASE_URL: cannot open the database: {}", with_causes(.0))]
    Database(StoreError),
    #[error("WXLOGIN_DATA_DIR: the OpenID Connect keys: {0}")]
    OidcKeys(#[from] KeyError),
    #[error(transparent)]
    Mode(#[from] ModeError),
}

/// An error and what caused it, as one line: the operator needs PostgreSQL's own reason (a
/// `pg_hba.conf` refusal, an untrusted certificate), which the error's own text leaves out.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = e.source();
    }
    line.replace('\n', " ")
}

impl StartupError {
    /// The process's exit status: 2, as for a bad setting, when the settings don't fit the data.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Mode(mode) => mode.exit_code(),
            _ => 1,
        }
    }
}

pub struct Application {
    server: Server,
    addr: SocketAddr,
    store: Store,
    shutdown: watch::Sender<bool>,
    shutdown_timeout: Duration,
}

impl Application {
    /// Opens storage, binds the listener and starts the actors. Must run inside an actix system.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        mode_marker::claim(&settings.data_dir, settings.is_sandbox())?;
        let store = open_store(&settings).await?;
        let listener = TcpListener::bind(settings.bind).map_err(|source| StartupError::Bind {
            addr: settings.bind,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: settings.bind,
            source,
        })?;

        let (credentials, api_base, show_qrcode, web_authorize, simulator) = match &settings.account
        {
            Account::Real { credentials, api } => (
                credentials.clone(),
                api.clone(),
                crate::wechat::api::SHOW_QRCODE,
                crate::http::WECHAT_AUTHORIZE,
                None,
            ),
            Account::Sandbox { token } => {
                let own = format!("http://{}", reachable(addr));
                let simulator = Arc::new(Simulator::new(
                    token.clone(),
                    reachable(addr),
                    settings.sandbox_push_url.as_ref(),
                    settings.aes_key.as_deref(),
                    settings.sandbox_appsecret.as_ref().map(Secret::expose),
                ));
                let api = Url::parse(&format!("{own}/sandbox/api"))
                    .expect("a socket address makes a valid URL");
                let show_qrcode = crate::sandbox::SHOW_QRCODE;
                (
                    simulator.credentials(),
                    api,
                    show_qrcode,
                    crate::sandbox::WEB_AUTHORIZE,
                    Some(simulator),
                )
            }
        };
        // Code mode shows the account's own QR code; the sandbox serves one of its own.
        // (Settings require one outside the sandbox whenever code mode can be served.)
        let account_qr_url = settings
            .account_qr_url
            .clone()
            .unwrap_or_else(|| crate::sandbox::ACCOUNT_QRCODE.to_owned());
        // The issuer: as configured, or this listener's own address.
        let public_url = settings.public_url.clone().unwrap_or_else(|| {
            Url::parse(&format!("http://{}", reachable(addr)))
                .expect("a socket address makes a valid URL")
        });
        let oidc = match settings.oidc_clients.clone() {
            Some(clients) => Some(Arc::new(
                Provider::open(
                    &settings.data_dir,
                    &store,
                    &public_url,
                    clients,
                    settings.oidc_code_ttl,
                    settings.subject,
                )
                .await?,
            )),
            None => None,
        };
        if let Some(oidc) = &oidc {
            actix_web::rt::spawn(oidc.clone().follow_other_nodes(store.clone()));
        }
        let metrics = Arc::new(Metrics::default());
        let api = WechatApi::new(&api_base, settings.wechat_timeout, metrics.clone());
        // Nodes on one database share the account's token; a sandbox node's simulator is a
        // WeChat of its own, whose tokens no other node could use.
        let shared_credentials = match settings.account {
            Account::Real { .. } => store.shared_credentials(),
            Account::Sandbox { .. } => None,
        };
        let token_source = CredentialTokenSource {
            api: api.clone(),
            appid: credentials.appid.clone(),
            secret: credentials.secret.clone(),
            stable: settings.stable_token,
        };
        let tokens = TokenActor::new(SharedSource::new(
            token_source,
            shared_credentials.clone(),
            &credentials.appid,
        ))
        .start();
        let supervisor = SceneSupervisor::new(
            store.clone(),
            SceneSettings {
                ttl: settings.scene_ttl,
                session_ttl: settings.session_ttl,
                confirm: settings.confirm,
            },
        );
        let scene_counters = supervisor.counters();
        let scenes = supervisor.start();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let wechat = WechatClient::new(api.clone(), tokens, show_qrcode.to_owned());
        // The JS-SDK ticket is cached by a second token actor, fetched with the first's token.
        let token_center = (!settings.token_clients.is_empty()).then(|| {
            let tickets = TokenActor::new(SharedSource::new(
                TicketSource(wechat.clone()),
                shared_credentials,
                &credentials.appid,
            ))
            .start();
            TokenCenter::new(&settings.token_clients, wechat.tokens().clone(), tickets)
        });
        let unionids = UnionIds::new(wechat.clone(), store.clone(), metrics.clone());
        let state = web::Data::new(AppState {
            scenes,
            wechat,
            unionids,
            store: store.clone(),
            sms: SmsSender::new(settings.sms.clone(), simulator.clone()),
            callback: Callback::new(
                &settings.callback_senders,
                CallbackKeys::new(
                    credentials.token.clone(),
                    settings.aes_key.as_deref().map(|key| {
                        MessageCrypto::new(key, &credentials.appid)
                            .expect("the key was checked with the settings")
                    }),
                    settings.timestamp_window,
                ),
                settings.timestamp_window,
                settings.code_guess_window,
                settings.replies.clone(),
                settings.upstream.as_ref(),
                store.shared_limits(),
            ),
            modes: LoginModes::new(settings.login_mode, account_qr_url),
            scene_ttl: settings.scene_ttl,
            trust_proxy: settings.trust_proxy,
            scene_counters,
            metrics,
            admin_token: settings.admin_token.clone(),
            limits: AbuseLimits::from_settings(&settings, store.shared_limits()),
            shutting_down: shutdown_rx,
            oidc,
            cookies: SessionCookies {
                secure: public_url.scheme() == "https",
                max_age: settings.session_ttl,
            },
            token_center,
            scene_keys: settings.scene_keys.clone(),
            default_lang: settings.default_lang,
            web_authorization: settings.oauth_domain.as_ref().map(|_| {
                WebAuthorization::new(
                    api.clone(),
                    credentials.appid.clone(),
                    credentials.secret.clone(),
                    web_authorize.to_owned(),
                    &public_url,
                    settings.scene_ttl,
                    store.shared_limits(),
                )
            }),
        });
        if state.modes.current() == LoginMode::QrCode {
            state.wechat.prefetch_token();
        }
        actix_web::rt::spawn(http::follow_wechat_addresses(state.clone()));
        let simulator = simulator.map(web::Data::from);
        let server = HttpServer::new(move || {
            let mut app = App::new()
                .wrap(from_fn(http::head_as_get))
                .wrap(ErrorHandlers::new().default_handler(json_error_body))
                .wrap(from_fn(http::no_store_by_default))
                .wrap(from_fn(http::trace_requests))
                .app_data(state.clone())
                .configure(http::configure);
            if let Some(simulator) = &simulator {
                app = app
                    .app_data(simulator.clone())
                    .configure(Simulator::configure);
            }
            app.default_service(web::to(http::not_found))
        })
        // Signals are ours to handle: held long-polls must be answered before workers stop.
        .disable_signals()
        .shutdown_timeout(settings.shutdown_timeout.as_secs())
        .listen(listener)
        .map_err(|source| StartupError::Bind { addr, source })?
        .run();

        announce(&settings, addr);
        actix_web::rt::spawn(purge_periodically(
            store.clone(),
            settings.login_log_retention,
            settings.timestamp_window,
        ));
        Ok(Self {
            server,
            addr,
            store,
            shutdown,
            shutdown_timeout: settings.shutdown_timeout,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully: stop accepting, answer every
    /// held long-poll with its current state, finish in-flight requests (for at most
    /// `WXLOGIN_SHUTDOWN_TIMEOUT_SECS`), flush storage.
    pub async fn run(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let mut server = actix_web::rt::spawn(self.server);
        tokio::select! {
            finished = &mut server => return finished.map_err(std::io::Error::other)?,
            signal = shutdown_signal() => tracing::info!(signal, "shutting down"),
        }
        let _ = self.shutdown.send(true);
        let stopped = tokio::time::timeout(self.shutdown_timeout, handle.stop(true)).await;
        if stopped.is_err() {
            tracing::warn!("requests still running at the shutdown timeout were dropped");
        }
        match self.store.flush().await {
            // Every write it acknowledged is on disk already; the ones it refused were answered 503.
            Err(StoreError::Unavailable(e)) => {
                tracing::warn!(error = %e, "storage was unavailable at shutdown; nothing acknowledged is lost")
            }
            flushed => flushed.map_err(std::io::Error::other)?,
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// The store the settings name: PostgreSQL with `WXLOGIN_DATABASE_URL`, else sled in the data
/// directory.
pub async fn open_store(settings: &Settings) -> Result<Store, StartupError> {
    match &settings.database {
        Some(Database(database)) => {
            let store = Store::open_postgres(database)
                .await
                .map_err(StartupError::Database)?;
            mode_marker::claim_database(&store, settings.is_sandbox()).await?;
            Ok(store)
        }
        None => Store::open(&settings.data_dir).map_err(|source| StartupError::Store {
            dir: settings.data_dir.display().to_string(),
            source,
        }),
    }
}

/// An address this machine can dial to reach a listener on `addr` (0.0.0.0 is not dialable).
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

fn announce(settings: &Settings, addr: SocketAddr) {
    if settings.is_sandbox() {
        tracing::warn!("SANDBOX MODE: no WXLOGIN_APPID is set, so a built-in simulator plays WeChat and anyone can log in as any user (POST /sandbox/scan). Nothing here talks to real WeChat; do not use this for real users.");
    }
    match &settings.sms {
        None if !settings.is_sandbox() => tracing::warn!(
            "WXLOGIN_SMS_PROVIDER and WXLOGIN_SMS_WEBHOOK are unset: verification codes go to the debug log only"
        ),
        Some(SmsProvider::Webhook { secret: None, .. }) => tracing::warn!(
            "WXLOGIN_SMS_WEBHOOK_SECRET is unset: the webhook's requests are not signed, so it cannot tell them from anyone else's"
        ),
        _ => {}
    }
    match crate::open_files::raise_to_hard_limit() {
        Ok((limit, Some(before))) => {
            tracing::info!(limit, before, "open-file limit raised to the hard limit")
        }
        Ok((limit, None)) => tracing::info!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "the open-file limit could not be read or raised"),
    }
    let sms = match &settings.sms {
        None if settings.is_sandbox() => "sandbox phone",
        None => "debug log",
        Some(SmsProvider::Webhook { .. }) => "webhook",
        Some(SmsProvider::Aliyun(_)) => "aliyun",
        Some(SmsProvider::Tencent(_)) => "tencent",
    };
    let oidc_clients = settings.oidc_clients.as_ref().map_or("off".into(), |c| {
        let mut ids: Vec<_> = c.ids().collect();
        ids.sort_unstable();
        ids.join(",")
    });
    tracing::info!(
        %addr,
        mode = if settings.is_sandbox() { "sandbox" } else { "wechat" },
        login_mode = settings.login_mode.as_str(),
        confirm = settings.confirm,
        callback = if settings.aes_key.is_some() { "safe mode" } else { "plaintext" },
        oidc_clients,
        storage = %match settings.database {
            // The URL may hold a password.
            Some(_) => "postgresql (WXLOGIN_DATABASE_URL)".to_owned(),
            None => format!("sled in {}", settings.data_dir.display()),
        },
        sms,
        admin_api = settings.admin_token.is_some(),
        "wxlogin started"
    );
    // Tests and scripts read the port from this line.
    println!("wxlogin listening on http://{addr}");
}

/// The name of the first of SIGTERM and SIGINT to arrive.
async fn shutdown_signal() -> &'static str {
    let mut terminate =
        signal(SignalKind::terminate()).expect("a SIGTERM handler can be installed");
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}

/// Reclaims expired sessions and access tokens, and logins past their retention. The store
/// does each on blocking threads, in batches.
async fn purge_periodically(
    store: Store,
    login_log_retention: Option<Duration>,
    timestamp_window: Duration,
) {
    let mut interval = tokio::time::interval(PURGE_INTERVAL);
    loop {
        interval.tick().await;
        log_purge("sessions", store.purge_expired_sessions().await);
        log_purge("access tokens", store.purge_expired_access_tokens().await);
        // A signature older than the window is refused as stale before it is looked up.
        let stale = unix_time().saturating_sub(timestamp_window.as_secs() + 1);
        log_purge(
            "callback signatures",
            store.purge_old_signatures(stale).await,
        );
        if let Some(keep) = login_log_retention {
            log_purge("logins", store.purge_old_logins(keep).await);
        }
    }
}

fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn log_purge(what: &str, purged: Result<usize, StoreError>) {
    match purged {
        Ok(0) => {}
        Ok(purged) => tracing::info!(purged, "expired {what} removed"),
        Err(e) => tracing::error!(error = %e, "purging expired {what} failed"),
    }
}
