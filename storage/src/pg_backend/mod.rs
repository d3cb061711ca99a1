//! The PostgreSQL backend (`WXLOGIN_DATABASE_URL`): the storage interface in SQL, through a
//! pool of tokio-postgres connections, TLS by rustls.
//!
//! Durable on return: every write is one committed transaction (or one statement, which is
//! its own), and each connection asks for `synchronous_commit = on`, so a commit is answered
//! only once it is on disk (and on a synchronous standby, where the server has one). Where
//! sled relies on its own transactions, the same guarantee is SQL's here: a phone belongs to
//! one openid by a unique constraint; binds, unbinds and unfollows of one openid take a
//! transaction-scoped advisory lock on it, so an unfollow and a bind started before it never
//! interleave; a backup reads one snapshot (`REPEATABLE READ`).
//!
//! A database that cannot be reached (refused, timed out, shutting down, out of disk) answers
//! [`StoreError::Unavailable`]; [`Backend::check`] fails until a probe reaches it again.

pub mod credentials;
mod import;
mod limits;
mod mode;
mod oidc;
mod scenes;
mod schema;
#[cfg(any(test, feature = "test-server"))]
pub mod test_server;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::{
    ClientWrapper, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::backend::{Backend, BatchSender, BindingStream, Pending, BACKUP_BATCH};
use crate::model::{
    Binding, LoginCursor, LoginMethod, LoginPage, LoginRecord, NewSession, OpenId, Phone, Session,
    SessionToken, UnionId,
};
use crate::{AccessGrant, BindError, SignatureUse, StoreError};
pub use limits::SharedLimits;
pub use mode::ModeClaim;
pub use oidc::{CodeGrant, OidcRecords, Redemption};

/// The longest any one operation may take, waiting for a connection included: past it the
/// database counts as unavailable (a host that stopped answering holds no request forever).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle backend checks that the database answers, for [`Backend::check`].
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Rows one purge statement deletes: bounded, so no purge holds locks for long.
const PURGE_BATCH: i64 = 1000;

/// Where the database is and how to reach it.
#[derive(Clone)]
pub struct PgSettings {
    /// A libpq-style URL: `postgres://user:password@host:port/db?sslmode=require`.
    pub url: String,
    /// Connections at most.
    pub pool_size: usize,
    /// PEM certificates to trust for TLS besides the public roots (a private CA).
    pub ca_file: Option<std::path::PathBuf>,
}

impl PgSettings {
    /// Checks `url` is a PostgreSQL URL the driver reads; the problem, in words, if not.
    pub fn parse(
        url: &str,
        pool_size: usize,
        ca_file: Option<std::path::PathBuf>,
    ) -> Result<Self, String> {
        if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err("a URL like postgres://user:password@host/database".into());
        }
        // The driver's message names the part at fault, never the password.
        tokio_postgres::Config::from_str(url).map_err(|e| e.to_string())?;
        Ok(Self {
            url: url.to_owned(),
            pool_size,
            ca_file,
        })
    }
}

pub use scenes::{
    LockedScene, NewScene, SceneChange, SceneJournal, SceneKey, SceneNotice, SceneRow,
};

#[derive(Clone)]
pub struct PgBackend(Arc<Shared>);

struct Shared {
    pool: Pool,
    scenes: SceneJournal,
    /// The last operation or probe reached the database.
    reachable: AtomicBool,
}

impl PgBackend {
    /// Connects and brings the schema up to date. Must run inside a tokio runtime, which then
    /// drives the connections and the reachability probe.
    pub async fn open(settings: &PgSettings) -> Result<Self, StoreError> {
        let mut config = tokio_postgres::Config::from_str(&settings.url)
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        // Durable on return, whatever the server's default.
        let options = config.get_options().unwrap_or_default().to_owned();
        config.options(format!("{options} -c synchronous_commit=on").trim_start());
        // As libpq: no TLS on a local socket (and rustls would want a DNS name for its path).
        let local = |host: &tokio_postgres::config::Host| {
            matches!(host, tokio_postgres::config::Host::Unix(_))
        };
        if !config.get_hosts().is_empty() && config.get_hosts().iter().all(local) {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(OPERATION_TIMEOUT);
        }
        let tls = tls(settings.ca_file.as_deref())?;
        let pool = connection_pool(config.clone(), tls.clone(), settings.pool_size)?;
        schema::migrate(&pool).await?;
        // Scene transactions hold a connection while the scene's transition calls the store:
        // from a pool of their own, so they never wait on the connections they hold.
        let scenes = SceneJournal::new(
            connection_pool(config.clone(), tls.clone(), settings.pool_size)?,
            config,
            tls,
        );
        let shared = Arc::new(Shared {
            pool,
            scenes,
            reachable: AtomicBool::new(true),
        });
        tokio::spawn(probe(Arc::downgrade(&shared)));
        Ok(Self(shared))
    }

    /// The WeChat credentials the nodes on this database share.
    pub fn shared_credentials(&self) -> credentials::SharedCredentials {
        credentials::SharedCredentials::new(self.clone())
    }

    /// The cluster's limits and filters, on this database's pool; each call starts a purge
    /// task, so the store makes one.
    pub(crate) fn shared_limits(&self) -> SharedLimits {
        SharedLimits::new(self.0.pool.clone())
    }

    /// The OpenID Connect provider's tables.
    pub fn oidc_records(&self) -> OidcRecords {
        OidcRecords::new(self.clone())
    }

    /// The rows of live scenes, shared by every node on this database.
    pub fn scene_journal(&self) -> SceneJournal {
        self.0.scenes.clone()
    }

    /// Runs `op` on a pooled connection within [`OPERATION_TIMEOUT`], noting whether the
    /// database answered.
    async fn run<T, E, F>(&self, op: impl FnOnce(Object) -> F) -> Result<T, E>
    where
        E: From<StoreError> + IsUnavailable,
        F: std::future::Future<Output = Result<T, E>>,
    {
        let result = within(async {
            let client = self.0.pool.get().await.map_err(pool_error)?;
            op(client).await
        })
        .await;
        self.note(&result);
        result
    }

    fn note<T, E: IsUnavailable>(&self, result: &Result<T, E>) {
        self.0.reachable.store(
            !matches!(result, Err(e) if e.is_unavailable()),
            Ordering::SeqCst,
        );
    }

    /// The backup's read: one snapshot, fetched [`BACKUP_BATCH`] at a time into `sender`
    /// until the reader goes away, each step within [`OPERATION_TIMEOUT`].
    async fn read_backup(&self, sender: &BatchSender) -> Result<(), StoreError> {
        let mut client = within(async { self.0.pool.get().await.map_err(pool_error) }).await?;
        let tx = within(async {
            client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(pg_error)
        })
        .await?;
        within(async {
            tx.batch_execute(&format!(
                "DECLARE backup NO SCROLL CURSOR FOR SELECT {BINDING_COLUMNS} FROM bindings b"
            ))
            .await
            .map_err(pg_error)
        })
        .await?;
        let fetch = format!("FETCH {BACKUP_BATCH} FROM backup");
        loop {
            let rows = within(async { tx.query(&fetch, &[]).await.map_err(pg_error) }).await?;
            if rows.is_empty() {
                return Ok(());
            }
            let batch = rows
                .iter()
                .map(|row| binding_of(row, 0))
                .collect::<Result<Vec<_>, _>>()?;
            if sender.send(Ok(batch)).await.is_err() {
                // The reader went away.
                return Ok(());
            }
        }
    }
}

/// A pool of at most `size` connections to `config`, each wait bounded by [`OPERATION_TIMEOUT`].
fn connection_pool(
    config: tokio_postgres::Config,
    tls: DatabaseTls,
    size: usize,
) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(OPERATION_TIMEOUT))
        .create_timeout(Some(OPERATION_TIMEOUT))
        .recycle_timeout(Some(OPERATION_TIMEOUT))
        .build()
        .map_err(|e| StoreError::Backend(Box::new(e)))
}

/// `op`, or [`StoreError::Unavailable`] once it has taken [`OPERATION_TIMEOUT`].
async fn within<T, E: From<StoreError>>(
    op: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    tokio::time::timeout(OPERATION_TIMEOUT, op)
        .await
        .unwrap_or_else(|_| Err(unavailable("the database did not answer in time").into()))
}

/// Every [`PROBE_INTERVAL`] while the backend lives: does the database answer?
async fn probe(shared: Weak<Shared>) {
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let answered = tokio::time::timeout(OPERATION_TIMEOUT, async {
            let client = shared.pool.get().await.ok()?;
            client.simple_query("SELECT 1").await.ok()
        })
        .await;
        let reachable = matches!(answered, Ok(Some(_)));
        if shared.reachable.swap(reachable, Ordering::SeqCst) != reachable {
            match reachable {
                true => tracing::info!("the database answers again"),
                false => tracing::error!("the database does not answer"),
            }
        }
    }
}

/// rustls for TCP connections. A Unix socket has no name to check, and no TLS (see
/// [`PgBackend::open`]): the driver still asks for a connector for it, so it gets one for a
/// placeholder name that is never used.
#[derive(Clone)]
struct DatabaseTls(MakeRustlsConnect);

impl<S> MakeTlsConnect<S> for DatabaseTls
where
    MakeRustlsConnect: MakeTlsConnect<S>,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = <MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect;
    type Error = <MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        let domain = if domain.is_empty() {
            "localhost"
        } else {
            domain
        };
        self.0.make_tls_connect(domain)
    }
}

fn tls(ca_file: Option<&std::path::Path>) -> Result<DatabaseTls, StoreError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let certificates = CertificateDer::pem_file_iter(path)
            .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
            .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display()).into()))?;
        roots.add_parsable_certificates(certificates);
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::Backend(Box::new(e)))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(DatabaseTls(MakeRustlsConnect::new(config)))
}

/// A driver error as the storage interface's: unreachable, refusing connections, shutting
/// down or out of resources (a full disk) is [`StoreError::Unavailable`].
pub(crate) fn pg_error(e: tokio_postgres::Error) -> StoreError {
    let unavailable = match e.code() {
        // No answer from the server at all: a connection lost or never made.
        None => true,
        Some(code) => {
            let class = &code.code()[..2];
            // 08 connection exception, 53 insufficient resources, 57 operator intervention
            // (shutdown, recovery), 58 system error (I/O).
            matches!(class, "08" | "53" | "57" | "58")
        }
    };
    if unavailable {
        StoreError::Unavailable(std::io::Error::other(e))
    } else {
        StoreError::Backend(Box::new(e))
    }
}

pub(crate) fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => pg_error(e),
        PoolError::Timeout(_) => unavailable("no database connection in time"),
        other => StoreError::Unavailable(std::io::Error::other(other.to_string())),
    }
}

fn unavailable(why: &str) -> StoreError {
    StoreError::Unavailable(std::io::Error::other(why.to_owned()))
}

/// Errors that may say the database cannot be reached.
trait IsUnavailable {
    fn is_unavailable(&self) -> bool;
}

impl IsUnavailable for StoreError {
    fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl IsUnavailable for BindError {
    fn is_unavailable(&self) -> bool {
        matches!(self, BindError::Store(e) if e.is_unavailable())
    }
}

/// `sql` prepared on this connection once and kept (deadpool's statement cache): a statement
/// sent as text is parsed and described in a round trip of its own every time.
async fn prepared(client: &ClientWrapper, sql: &str) -> Result<Statement, StoreError> {
    client.prepare_cached(sql).await.map_err(pg_error)
}

/// Opens `session` and records its login, in one statement (so one transaction of its own,
/// or a part of the caller's: a scene's login commits with its row, scenes.rs).
async fn insert_session(
    client: &ClientWrapper,
    session: &NewSession<'_>,
) -> Result<(), StoreError> {
    let now_ms = unix_now_ms();
    let created_at = now_ms / 1000;
    client
        .execute(
            &prepared(
                client,
                "WITH session AS (
                 INSERT INTO sessions (digest, openid, created_at, expires_at, generation)
                 VALUES ($1, $2, $3, $4, $5)
             )
             INSERT INTO logins (openid, at_ms, method, client_ip)
             VALUES ($2, $6, $7, $8)",
            )
            .await?,
            &[
                &session.digest.as_ref(),
                &session.binding.openid.as_str(),
                &int(created_at),
                &int(created_at.saturating_add(session.ttl.as_secs())),
                &int(session.binding.generation),
                &int(now_ms),
                &method_name(session.method),
                &session.client_ip,
            ],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}

/// A `u64` of the interface as a `bigint` column (values past `i64::MAX` mean "never").
fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn uint(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn unix_now() -> u64 {
    unix_now_ms() / 1000
}

fn method_name(method: LoginMethod) -> &'static str {
    match method {
        LoginMethod::Scan => "scan",
        LoginMethod::Bind => "bind",
    }
}

fn corrupt() -> StoreError {
    StoreError::Corrupt(postcard::Error::DeserializeBadEncoding)
}

/// A `bindings` row read as [`BINDING_COLUMNS`], from column `first` on.
fn binding_of(row: &Row, first: usize) -> Result<Binding, StoreError> {
    let unionid = match row.get::<_, Option<&str>>(first + 4) {
        Some(unionid) => Some(UnionId::parse(unionid).ok_or_else(corrupt)?),
        None => None,
    };
    Ok(Binding {
        openid: OpenId::parse(row.get(first)).ok_or_else(corrupt)?,
        phone: Phone::parse(row.get(first + 1)).ok_or_else(corrupt)?,
        bound_at: uint(row.get(first + 2)),
        generation: uint(row.get(first + 3)),
        unionid,
    })
}

const BINDING_COLUMNS: &str = "b.openid, b.phone, b.bound_at, b.generation, b.unionid";
/// How many columns [`BINDING_COLUMNS`] are: a query's own columns follow them.
const AFTER_BINDING: usize = 5;

/// Serialises the binds, unbinds and unfollows of one openid, until the transaction ends.
const LOCK_OPENID: &str = "SELECT pg_advisory_xact_lock(hashtext('wxlogin:openid:' || $1))";

/// The binding write of [`Backend::bind`] and [`Backend::restore_binding`]: checks the follow
/// generation when given, then binds under a new generation, moving the openid off its old
/// phone (the row's phone changes) and refusing a phone another openid holds.
async fn write_binding(
    mut client: Object,
    openid: &OpenId,
    phone: &Phone,
    bound_at: u64,
    follow_generation: Option<u64>,
) -> Result<Binding, BindError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute(LOCK_OPENID, &[&openid.as_str()])
        .await
        .map_err(pg_error)?;
    if let Some(expected) = follow_generation {
        let now = tx
            .query_opt(
                "SELECT generation FROM unfollows WHERE openid = $1",
                &[&openid.as_str()],
            )
            .await
            .map_err(pg_error)?
            .map_or(0, |row| uint(row.get(0)));
        if now != expected {
            return Err(BindError::Unfollowed);
        }
    }
    let written = tx
        .query_one(
            "INSERT INTO bindings (openid, phone, bound_at, generation)
             VALUES ($1, $2, $3, nextval('generations'))
             ON CONFLICT (openid) DO UPDATE
                 SET phone = excluded.phone, bound_at = excluded.bound_at,
                     generation = excluded.generation, unionid = NULL
             RETURNING generation",
            &[&openid.as_str(), &phone.as_str(), &int(bound_at)],
        )
        .await;
    let generation = match written {
        Ok(row) => uint(row.get(0)),
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            return Err(BindError::PhoneTaken)
        }
        Err(e) => return Err(pg_error(e).into()),
    };
    tx.commit().await.map_err(pg_error)?;
    Ok(Binding {
        openid: openid.clone(),
        phone: phone.clone(),
        bound_at,
        generation,
        unionid: None,
    })
}

/// Removes `openid`'s binding, sessions and access tokens within `tx` (which holds the
/// openid's lock); whether there was a binding.
async fn remove_binding(
    tx: &deadpool_postgres::Transaction<'_>,
    openid: &OpenId,
) -> Result<bool, StoreError> {
    let removed = tx
        .execute(
            "DELETE FROM bindings WHERE openid = $1",
            &[&openid.as_str()],
        )
        .await
        .map_err(pg_error)?;
    if removed == 0 {
        return Ok(false);
    }
    tx.execute(
        "DELETE FROM sessions WHERE openid = $1",
        &[&openid.as_str()],
    )
    .await
    .map_err(pg_error)?;
    tx.execute(
        "DELETE FROM access_tokens WHERE openid = $1",
        &[&openid.as_str()],
    )
    .await
    .map_err(pg_error)?;
    Ok(true)
}

/// Runs `statement` (a bounded `DELETE` of `$1`-selected rows) until a batch deletes fewer
/// than [`PURGE_BATCH`]; returns how many rows went.
async fn purge_in_batches(
    client: Object,
    statement: &str,
    bound: i64,
) -> Result<usize, StoreError> {
    let statement = prepared(&client, statement).await?;
    let mut total = 0;
    loop {
        let deleted = client
            .execute(&statement, &[&bound, &PURGE_BATCH])
            .await
            .map_err(pg_error)?;
        total += deleted as usize;
        if deleted < PURGE_BATCH as u64 {
            return Ok(total);
        }
    }
}

impl Backend for PgBackend {
    fn binding<'a>(
        &'a self,
        openid: &'a OpenId,
    ) -> Pending<'a, Result<Option<Binding>, StoreError>> {
        Box::pin(self.run(move |client| async move {
            let row = client
                .query_opt(
                    &prepared(
                        &client,
                        &format!("SELECT {BINDING_COLUMNS} FROM bindings b WHERE b.openid = $1"),
                    )
                    .await?,
                    &[&openid.as_str()],
                )
                .await
                .map_err(pg_error)?;
            row.map(|row| binding_of(&row, 0)).transpose()
        }))
    }

    fn binding_by_phone<'a>(
        &'a self,
        phone: &'a Phone,
    ) -> Pending<'a, Result<Option<Binding>, StoreError>> {
        Box::pin(self.run(move |client| async move {
            let row = client
                .query_opt(
                    &prepared(
                        &client,
                        &format!("SELECT {BINDING_COLUMNS} FROM bindings b WHERE b.phone = $1"),
                    )
                    .await?,
                    &[&phone.as_str()],
                )
                .await
                .map_err(pg_error)?;
            row.map(|row| binding_of(&row, 0)).transpose()
        }))
    }

    fn follow_generation<'a>(&'a self, openid: &'a OpenId) -> Pending<'a, Result<u64, StoreError>> {
        Box::pin(self.run(move |client| async move {
            let row = client
                .query_opt(
                    &prepared(
                        &client,
                        "SELECT generation FROM unfollows WHERE openid = $1",
                    )
                    .await?,
                    &[&openid.as_str()],
                )
                .await
                .map_err(pg_error)?;
            Ok(row.map_or(0, |row| uint(row.get(0))))
        }))
    }

    fn unfollowed_at<'a>(
        &'a self,
        openid: &'a OpenId,
    ) -> Pending<'a, Result<Option<u64>, StoreError>> {
        Box::pin(self.run(move |client| async move {
            let row = client
                .query_opt(
                    &prepared(
                        &client,
                        "SELECT unfollowed_at FROM unfollows WHERE openid = $1",
                    )
                    .await?,
                    &[&openid.as_str()],
                )
                .await
                .map_err(pg_error)?;
            Ok(row.and_then(|row| row.get::<_, Option<i64>>(0)).map(uint))
        }))
    }

    fn bind<'a>(
        &'a self,
        openid: &'a OpenId,
        phone: &'a Phone,
        follow_generation: u64,
    ) -> Pending<'a, Result<Binding, BindError>> {
        Box::pin(self.run(move |client| {
            write_binding(client, openid, phone, unix_now(), Some(follow_generation))
        }))
    }

    fn restore_binding<'a>(
        &'a self,
        openid: &'a OpenId,
        phone: &'a Phone,
        bound_at: u64,
    ) -> Pending<'a, Result<(), BindError>> {
        Box::pin(async move {
            self.run(move |client| write_binding(client, openid, phone, bound_at, None))
                .await
                .map(drop)
        })
    }

    fn has_no_bindings(&self) -> Pending<'_, Result<bool, StoreError>> {
        Box::pin(self.run(|client| async move {
            let row = client
                .query_one(
                    &prepared(&client, "SELECT NOT EXISTS (SELECT 1 FROM bindings)").await?,
                    &[],
                )
                .await
                .map_err(pg_error)?;
            Ok(row.get(0))
        }))
    }

    fn backup(&self) -> Result<BindingStream, StoreError> {
        let (sender, stream) = BindingStream::of_batches();
        let backend = self.clone();
        tokio::spawn(async move {
            let read = backend.read_backup(&sender).await;
            backend.note(&read);
            if let Err(e) = read {
                let _ = sender.send(Err(e)).await;
            }
        });
        Ok(stream)
    }

    fn unbind<'a>(&'a self, openid: &'a OpenId) -> Pending<'a, Result<bool, StoreError>> {
        Box::pin(self.run(move |mut client| async move {
            let tx = client.transaction().await.map_err(pg_error)?;
            tx.execute(LOCK_OPENID, &[&openid.as_str()])
                .await
                .map_err(pg_error)?;
            let removed = remove_binding(&tx, openid).await?;
            tx.commit().await.map_err(pg_error)?;
            Ok(removed)
        }))
    }

    fn record_follow<'a>(
        &'a self,
        openid: &'a OpenId,
        at: u64,
    ) -> Pending<'a, Result<(), StoreError>> {
        Box::pin(self.run(move |client| async move {
            client
                .execute(
                    &prepared(
                        &client,
                        "INSERT INTO follows (openid, followed_at) VALUES ($1, $2)
                     ON CONFLICT (openid) DO UPDATE
                         SET followed_at = greatest(follows.followed_at, excluded.followed_at)",
                    )
                    .await?,
                    &[&openid.as_str(), &int(at)],
                )
                .await
                .map_err(pg_error)?;
            Ok(())
        }))
    }

    fn set_unionid<'a>(
        &'a self,
        binding: &'a Binding,
        unionid: &'a UnionId,
    ) -> Pending<'a, Result<bool, StoreError>> {
        Box::pin(self.run(move |client| async move {
            // Only that very binding: a bind or unbind since changed or removed the row.
            let written = client
                .execute(
                    &prepared(
                        &client,
                        "UPDATE bindings SET unionid = $3 WHERE openid = $1 AND generation = $2",
                    )
                    .await?,
                    &[
                        &binding.openid.as_str(),
                        &int(binding.generation),
                        &unionid.as_str(),
                    ],
                )
                .await
                .map_err(pg_error)?;
            Ok(written == 1)
        }))
    }

    fn unfollow<'a>(
        &'a self,
        openid: &'a OpenId,
        event_time: u64,
    ) -> Pending<'a, Result<bool, StoreError>> {
        Box::pin(self.run(move |mut client| async move {
            let tx = client.transaction().await.map_err(pg_error)?;
            tx.execute(LOCK_OPENID, &[&openid.as_str()])
                .await
                .map_err(pg_error)?;
            let followed_after = tx
                .query_opt(
                    "SELECT 1 FROM follows WHERE openid = $1 AND followed_at > $2",
                    &[&openid.as_str(), &int(event_time)],
                )
                .await
                .map_err(pg_error)?;
            if followed_after.is_some() {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO unfollows (openid, generation, unfollowed_at)
                 VALUES ($1, nextval('generations'), $2)
                 ON CONFLICT (openid) DO UPDATE
                     SET generation = excluded.generation, unfollowed_at = excluded.unfollowed_at",
                &[&openid.as_str(), &int(event_time)],
            )
            .await
            .map_err(pg_error)?;
            let removed = remove_binding(&tx, openid).await?;
            tx.commit().await.map_err(pg_error)?;
            Ok(removed)
        }))
    }

    fn open_session<'a>(&'a self, session: NewSession<'a>) -> Pending<'a, Result<(), StoreError>> {
        Box::pin(self.run(move |client| async move { insert_session(&client, &session).await }))
    }

    fn session<'a>(
        &'a self,
        token: &'a SessionToken,
    ) -> Pending<'a, Result<Option<Session>, StoreError>> {
        Box::pin(self.run(move |client| async move {
            let row = client
                .query_opt(
                    &prepared(
                        &client,
                        &format!(
                            "SELECT {BINDING_COLUMNS}, s.generation, s.created_at, s.expires_at
                         FROM sessions s JOIN bindings b ON b.openid = s.openid
                         WHERE s.digest = $1 AND s.expires_at > $2"
                        ),
                    )
                    .await?,
                    &[&token.digest().as_ref(), &int(unix_now())],
                )
                .await
                .map_err(pg_error)?;
            let Some(row) = row else {
                return Ok(None);
            };
            let binding = binding_of(&row, 0)?;
            let own = |n| uint(row.get(AFTER_BINDING + n));
            let (generation, created_at) = (own(0), own(1));
            Ok(binding.holds(generation, created_at).then(|| Session {
                binding,
                created_at,
                expires_at: own(2),
            }))
        }))
    }

    fn close_session<'a>(
        &'a self,
        token: &'a SessionToken,
    ) -> Pending<'a, Result<bool, StoreError>> {
        Box::pin(self.run(move |client| async move {
            let deleted = client
                .execute(
                    &prepared(&client, "DELETE FROM sessions WHERE digest = $1").await?,
                    &[&token.digest().as_ref()],
                )
                .await
                .map_err(pg_error)?;
            Ok(deleted > 0)
        }))
    }

    fn logins<'a>(
        &'a self,
        openid: &'a OpenId,
        limit: usize,
        before: Option<LoginCursor>,
    ) -> Pending<'a, Result<LoginPage, StoreError>> {
        Box::pin(self.run(move |client| async move {
            // The cursor is sled's key suffix: big-endian milliseconds, then the id.
            let (before_ms, before_id) = before.map_or((i64::MAX, i64::MAX), |cursor| {
                let (ms, id) = cursor.0.split_at(8);
                (
                    int(u64::from_be_bytes(ms.try_into().expect("8 bytes"))),
                    int(u64::from_be_bytes(id.try_into().expect("8 bytes"))),
                )
            });
            let rows = client
                .query(
                    &prepared(
                        &client,
                        "SELECT at_ms, id, method, client_ip FROM logins
                     WHERE openid = $1 AND (at_ms, id) < ($2, $3)
                     ORDER BY at_ms DESC, id DESC LIMIT $4",
                    )
                    .await?,
                    &[
                        &openid.as_str(),
                        &before_ms,
                        &before_id,
                        &i64::try_from(limit).unwrap_or(i64::MAX),
                    ],
                )
                .await
                .map_err(pg_error)?;
            let mut records = Vec::with_capacity(rows.len());
            let mut last = None;
            for row in &rows {
                let (at_ms, id) = (uint(row.get(0)), uint(row.get(1)));
                let method = match row.get::<_, &str>(2) {
                    "scan" => LoginMethod::Scan,
                    "bind" => LoginMethod::Bind,
                    _ => return Err(corrupt()),
                };
                records.push(LoginRecord {
                    at_ms,
                    method,
                    client_ip: row.get(3),
                });
                last = Some((at_ms, id));
            }
            let next = last.filter(|_| records.len() == limit).map(|(ms, id)| {
                let mut key = [0; 16];
                key[..8].copy_from_slice(&ms.to_be_bytes());
                key[8..].copy_from_slice(&id.to_be_bytes());
                LoginCursor(key)
            });
            Ok(LoginPage { records, next })
        }))
    }

    fn issue_access_token<'a>(
        &'a self,
        binding: &'a Binding,
        client_id: &'a str,
        scope: &'a str,
        ttl: Duration,
    ) -> Pending<'a, Result<SessionToken, StoreError>> {
        Box::pin(self.run(move |client| async move {
            let token = SessionToken::generate();
            let issued_at = unix_now();
            client
                .execute(
                    &prepared(
                        &client,
                        "INSERT INTO access_tokens
                         (digest, openid, client_id, scope, issued_at, expires_at, generation)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .await?,
                    &[
                        &token.digest().as_ref(),
                        &binding.openid.as_str(),
                        &client_id,
                        &scope,
                        &int(issued_at),
                        &int(issued_at.saturating_add(ttl.as_secs())),
                        &int(binding.generation),
                    ],
                )
                .await
                .map_err(pg_error)?;
            Ok(token)
        }))
    }

    fn access_token<'a>(
        &'a self,
        token: &'a SessionToken,
    ) -> Pending<'a, Result<Option<(AccessGrant, Binding)>, StoreError>> {
        Box::pin(self.run(move |client| async move {
            let row = client
                .query_opt(
                    &prepared(
                        &client,
                        &format!(
                            "SELECT {BINDING_COLUMNS}, t.generation, t.issued_at, t.expires_at,
                                t.client_id, t.scope
                         FROM access_tokens t JOIN bindings b ON b.openid = t.openid
                         WHERE t.digest = $1 AND t.expires_at > $2"
                        ),
                    )
                    .await?,
                    &[&token.digest().as_ref(), &int(unix_now())],
                )
                .await
                .map_err(pg_error)?;
            let Some(row) = row else {
                return Ok(None);
            };
            let binding = binding_of(&row, 0)?;
            let grant = AccessGrant {
                openid: binding.openid.clone(),
                generation: uint(row.get(AFTER_BINDING)),
                issued_at: uint(row.get(AFTER_BINDING + 1)),
                expires_at: uint(row.get(AFTER_BINDING + 2)),
                client_id: row.get(AFTER_BINDING + 3),
                scope: row.get(AFTER_BINDING + 4),
            };
            Ok(binding
                .holds(grant.generation, grant.issued_at)
                .then_some((grant, binding)))
        }))
    }

    fn revoke_access_token<'a>(
        &'a self,
        token: &'a SessionToken,
    ) -> Pending<'a, Result<bool, StoreError>> {
        Box::pin(self.run(move |client| async move {
            let deleted = client
                .execute(
                    &prepared(&client, "DELETE FROM access_tokens WHERE digest = $1").await?,
                    &[&token.digest().as_ref()],
                )
                .await
                .map_err(pg_error)?;
            Ok(deleted > 0)
        }))
    }

    fn revoke_access_tokens<'a>(
        &'a self,
        openid: &'a OpenId,
    ) -> Pending<'a, Result<usize, StoreError>> {
        Box::pin(self.run(move |client| async move {
            let deleted = client
                .execute(
                    &prepared(&client, "DELETE FROM access_tokens WHERE openid = $1").await?,
                    &[&openid.as_str()],
                )
                .await
                .map_err(pg_error)?;
            Ok(deleted as usize)
        }))
    }

    fn remember_consent<'a>(
        &'a self,
        binding: &'a Binding,
        client_id: &'a str,
        scope: &'a str,
    ) -> Pending<'a, Result<(), StoreError>> {
        Box::pin(self.run(move |client| async move {
            client
                .execute(
                    &prepared(
                        &client,
                        "INSERT INTO consents (openid, client_id, scope, given_at, generation)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (openid, client_id) DO UPDATE
                         SET scope = excluded.scope, given_at = excluded.given_at,
                             generation = excluded.generation",
                    )
                    .await?,
                    &[
                        &binding.openid.as_str(),
                        &client_id,
                        &scope,
                        &int(unix_now()),
                        &int(binding.generation),
                    ],
                )
                .await
                .map_err(pg_error)?;
            Ok(())
        }))
    }

    fn consent<'a>(
        &'a self,
        binding: &'a Binding,
        client_id: &'a str,
    ) -> Pending<'a, Result<Option<String>, StoreError>> {
        Box::pin(self.run(move |client| async move {
            let row = client
                .query_opt(
                    &prepared(
                        &client,
                        "SELECT scope, generation, given_at FROM consents
                     WHERE openid = $1 AND client_id = $2",
                    )
                    .await?,
                    &[&binding.openid.as_str(), &client_id],
                )
                .await
                .map_err(pg_error)?;
            Ok(row
                .filter(|row| binding.holds(uint(row.get(1)), uint(row.get(2))))
                .map(|row| row.get(0)))
        }))
    }

    fn use_signature<'a>(
        &'a self,
        signature: &'a str,
        sent_at: u64,
        body_digest: [u8; 32],
    ) -> Pending<'a, Result<SignatureUse, StoreError>> {
        Box::pin(self.run(move |client| async move {
            // WeChat's signatures are hex: one signature in either case is one use.
            let signature = signature.to_ascii_lowercase();
            let first = client
                .execute(
                    &prepared(
                        &client,
                        "INSERT INTO signatures (sent_at, signature, body_digest)
                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    )
                    .await?,
                    &[&int(sent_at), &signature, &&body_digest[..]],
                )
                .await
                .map_err(pg_error)?;
            if first == 1 {
                return Ok(SignatureUse::First);
            }
            let used = client
                .query_opt(
                    &prepared(
                        &client,
                        "SELECT body_digest FROM signatures WHERE sent_at = $1 AND signature = $2",
                    )
                    .await?,
                    &[&int(sent_at), &signature],
                )
                .await
                .map_err(pg_error)?;
            // Gone since (purged: too old for any window) counts as another body: refused.
            Ok(match used {
                Some(row) if row.get::<_, &[u8]>(0) == body_digest => SignatureUse::SameBody,
                _ => SignatureUse::OtherBody,
            })
        }))
    }

    fn purge_old_signatures(&self, sent_before: u64) -> Pending<'_, Result<usize, StoreError>> {
        Box::pin(self.run(move |client| {
            purge_in_batches(
                client,
                "DELETE FROM signatures WHERE ctid IN
                     (SELECT ctid FROM signatures WHERE sent_at < $1 LIMIT $2)",
                int(sent_before),
            )
        }))
    }

    fn purge_expired_sessions(&self) -> Pending<'_, Result<usize, StoreError>> {
        Box::pin(self.run(|client| {
            purge_in_batches(
                client,
                "DELETE FROM sessions WHERE ctid IN
                     (SELECT ctid FROM sessions WHERE expires_at <= $1 LIMIT $2)",
                int(unix_now()),
            )
        }))
    }

    fn purge_expired_access_tokens(&self) -> Pending<'_, Result<usize, StoreError>> {
        Box::pin(self.run(|client| {
            purge_in_batches(
                client,
                "DELETE FROM access_tokens WHERE ctid IN
                     (SELECT ctid FROM access_tokens WHERE expires_at <= $1 LIMIT $2)",
                int(unix_now()),
            )
        }))
    }

    fn purge_old_logins(&self, keep: Duration) -> Pending<'_, Result<usize, StoreError>> {
        let keep_ms = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
        Box::pin(self.run(move |client| {
            purge_in_batches(
                client,
                "DELETE FROM logins WHERE id IN
                     (SELECT id FROM logins WHERE at_ms <= $1 LIMIT $2)",
                int(unix_now_ms().saturating_sub(keep_ms)),
            )
        }))
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.0.reachable.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(unavailable("the database does not answer"))
        }
    }

    /// Every write that returned was committed, and a commit is durable.
    fn flush(&self) -> Pending<'_, Result<(), StoreError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::TestServer;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
    async fn nodes_starting_at_once_migrate_once_and_a_restart_migrates_nothing() {
        let server = TestServer::start();
        let settings = PgSettings {
            url: server.new_database().await,
            pool_size: 2,
            ca_file: None,
        };
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let settings = settings.clone();
                tokio::spawn(async move { PgBackend::open(&settings).await.map(drop) })
            })
            .collect();
        for started in starts {
            started.await.unwrap().unwrap();
        }
        let again = PgBackend::open(&settings).await.unwrap();
        let client = again.0.pool.get().await.unwrap();
        let versions: i64 = client
            .query_one("SELECT count(*) FROM wxlogin_migrations", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(versions, schema::VERSION as i64);
    }
}
