//! Scenes that outlive their node (issue 20, part S): one row per live scene, authoritative
//! for its state, and `NOTIFY` on every change so the node holding the browser's wait hears it.
//!
//! A row is keyed by SHA-256 of the scene id: the id is the bearer of the scene, so it is never
//! stored, sent in a notification or logged. The state is the scene's own serialisation
//! (opaque here) with a version that every committed change raises. Two columns are the
//! cross-node indexes: the login code (code mode; unique, so one code never names two scenes
//! while its row lasts) and the scanner awaiting confirmation.
//!
//! Every change is a transaction that first takes the row's lock ([`SceneJournal::lock`]), so
//! transitions of one scene are serialised across nodes; the change, its notification and the
//! session a login opens commit together.
//!
//! A row holds no bearer secret: not the session token (only the digest of the session the
//! scene's secret derives), not the SMS code (only a digest keyed by that secret).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::{Object, Pool};
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;
use tokio_postgres::AsyncMessage;

use super::{insert_session, pg_error, pool_error, prepared, within, DatabaseTls, PURGE_BATCH};
use crate::{NewSession, OpenId, SessionDigest, StoreError};

/// The `LISTEN`/`NOTIFY` channel of scene changes.
const CHANNEL: &str = "wxlogin_scenes";
/// How long the listener waits before connecting again after losing its connection.
const RECONNECT_AFTER: Duration = Duration::from_millis(200);

/// One scene's row, as [`scene_row`] reads it.
const SELECT_ROW: &str =
    "SELECT version, state, expires_at_ms, session_digest FROM scenes WHERE key = $1";

/// A change of a locked row, and its notification.
const UPDATE_ROW: &str = "WITH changed AS (UPDATE scenes SET version = $2, state = $3, \
     confirming = $4, updated_at_ms = $5 WHERE key = $1 RETURNING key) \
     SELECT pg_notify($6, $7) FROM changed";

/// SHA-256 of a scene id.
pub type SceneKey = [u8; 32];

/// A scene's row as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SceneRow {
    pub version: i64,
    /// The digest of the session the scene's login opens, whose token the scene's secret
    /// derives: its browser proves the secret by it.
    pub session_digest: SessionDigest,
    pub state: Vec<u8>,
    pub expires_at: SystemTime,
}

/// A scene's first row.
pub struct NewScene<'a> {
    pub key: &'a SceneKey,
    pub state: &'a [u8],
    pub login_code: Option<&'a str>,
    pub session_digest: &'a SessionDigest,
    pub expires_at: SystemTime,
}

/// A change to a locked scene's row.
pub struct SceneChange<'a> {
    pub state: &'a [u8],
    /// The scanner whose confirmation the scene now awaits, if any.
    pub confirming: Option<&'a OpenId>,
    /// The session the change's login opens: it commits with the row (one durable commit, and
    /// never a session without its scene's login or the other way round).
    pub login: Option<NewSession<'a>>,
}

/// What the listener hears.
#[derive(Debug, PartialEq, Eq)]
pub enum SceneNotice {
    /// The scene's row was committed at `version`.
    Changed { key: SceneKey, version: i64 },
    /// The listener (re)connected: notifications may have been missed, every view reloads.
    Resync,
}

/// The scene rows of one database, and how to listen to their changes.
#[derive(Clone)]
pub struct SceneJournal(Arc<Journal>);

struct Journal {
    pool: Pool,
    /// For the listener's own connection, outside the pool.
    config: tokio_postgres::Config,
    tls: DatabaseTls,
}

impl SceneJournal {
    pub(super) fn new(pool: Pool, config: tokio_postgres::Config, tls: DatabaseTls) -> Self {
        Self(Arc::new(Journal { pool, config, tls }))
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.0.pool.get().await.map_err(pool_error)
    }

    /// Writes a new scene's row; `false` if its login code is another live row's.
    pub async fn create(&self, scene: NewScene<'_>) -> Result<bool, StoreError> {
        within(async {
            let client = self.client().await?;
            let inserted = client
                .execute(
&prepared(&client, "INSERT INTO scenes (key, version, state, login_code, session_digest, expires_at_ms, \
                     updated_at_ms) VALUES ($1, 1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING").await?,
                    &[
                        &&scene.key[..],
                        &scene.state,
                        &scene.login_code,
                        &scene.session_digest.as_ref(),
                        &unix_ms(scene.expires_at),
                        &unix_ms(SystemTime::now()),
                    ],
                )
                .await
                .map_err(pg_error)?;
            Ok(inserted == 1)
        })
        .await
    }

    pub async fn load(&self, key: &SceneKey) -> Result<Option<SceneRow>, StoreError> {
        within(async {
            let client = self.client().await?;
            let row = client
                .query_opt(&prepared(&client, SELECT_ROW).await?, &[&&key[..]])
                .await
                .map_err(pg_error)?;
            row.map(|row| scene_row(&row)).transpose()
        })
        .await
    }

    /// The scene showing login code `code`, if a row holds it.
    pub async fn by_login_code(&self, code: &str) -> Result<Option<SceneKey>, StoreError> {
        self.find("SELECT key FROM scenes WHERE login_code = $1", code)
            .await
    }

    /// The live scene that last asked `openid` to confirm, if one waits for them.
    pub async fn awaiting_confirmation(
        &self,
        openid: &OpenId,
    ) -> Result<Option<SceneKey>, StoreError> {
        self.find(
            "SELECT key FROM scenes WHERE confirming = $1 AND expires_at_ms > \
             (extract(epoch FROM now()) * 1000)::bigint ORDER BY updated_at_ms DESC LIMIT 1",
            openid.as_str(),
        )
        .await
    }

    async fn find(&self, query: &str, value: &str) -> Result<Option<SceneKey>, StoreError> {
        within(async {
            let client = self.client().await?;
            let row = client
                .query_opt(&prepared(&client, query).await?, &[&value])
                .await
                .map_err(pg_error)?;
            row.map(|row| {
                let key: &[u8] = row.get(0);
                key.try_into()
                    .map_err(|_| StoreError::Backend("a scene key is not 32 bytes".into()))
            })
            .transpose()
        })
        .await
    }

    /// Begins a transaction holding the scene's row lock: every other node's change of this
    /// scene waits until [`LockedScene::commit`] (or the drop of the lock).
    pub async fn lock(&self, key: &SceneKey) -> Result<LockedScene, StoreError> {
        within(async {
            let client = self.client().await?;
            let mut locked = LockedScene {
                client: Some(client),
                key: *key,
                row: None,
            };
            let client = locked.client.as_ref().expect("just set");
            let select = prepared(client, &format!("{SELECT_ROW} FOR UPDATE")).await?;
            // Sent together, one round trip: the select runs inside the transaction.
            let (_, row) = tokio::try_join!(client.batch_execute("BEGIN"), async {
                client.query_opt(&select, &[&&key[..]]).await
            })
            .map_err(pg_error)?;
            locked.row = row.map(|row| scene_row(&row)).transpose()?;
            Ok(locked)
        })
        .await
    }

    /// Deletes, [`PURGE_BATCH`] at a time, the rows of scenes that expired before
    /// `expired_before`; how many.
    pub async fn purge(&self, expired_before: SystemTime) -> Result<usize, StoreError> {
        let mut purged = 0;
        loop {
            let deleted = within(async {
                let client = self.client().await?;
                client
                    .execute(
                        &prepared(
                            &client,
                            "DELETE FROM scenes WHERE key IN (SELECT key FROM scenes \
                         WHERE expires_at_ms < $1 LIMIT $2)",
                        )
                        .await?,
                        &[&unix_ms(expired_before), &PURGE_BATCH],
                    )
                    .await
                    .map_err(pg_error)
            })
            .await?;
            purged += deleted as usize;
            if deleted < PURGE_BATCH as u64 {
                return Ok(purged);
            }
        }
    }

    /// Listens on one connection of its own (not the pool's) for as long as the receiver
    /// lives, connecting again whenever it is lost; each (re)connection is announced by a
    /// [`SceneNotice::Resync`] once `LISTEN` is in place. Must run inside a tokio runtime.
    pub fn listen(&self) -> mpsc::UnboundedReceiver<SceneNotice> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(listen(self.0.clone(), tx));
        rx
    }
}

async fn listen(journal: Arc<Journal>, notices: mpsc::UnboundedSender<SceneNotice>) {
    while !notices.is_closed() {
        if let Err(e) = listen_once(&journal, &notices).await {
            tracing::warn!(error = %e, "the scene listener lost its connection; connecting again");
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

/// One connection's life: `LISTEN`, then every notification until it fails.
async fn listen_once(
    journal: &Journal,
    notices: &mpsc::UnboundedSender<SceneNotice>,
) -> Result<(), StoreError> {
    let (client, mut connection) = within(async {
        journal
            .config
            .connect(journal.tls.clone())
            .await
            .map_err(pg_error)
    })
    .await?;
    // The connection is driven here, by poll_message, not by a task of its own: it yields the
    // notifications.
    let (messages_tx, mut messages) = mpsc::unbounded_channel();
    let driver = std::future::poll_fn(move |cx| loop {
        match connection.poll_message(cx) {
            std::task::Poll::Ready(Some(Ok(message))) => {
                if messages_tx.send(message).is_err() {
                    return std::task::Poll::Ready(Ok(()));
                }
            }
            std::task::Poll::Ready(Some(Err(e))) => return std::task::Poll::Ready(Err(e)),
            std::task::Poll::Ready(None) => return std::task::Poll::Ready(Ok(())),
            std::task::Poll::Pending => return std::task::Poll::Pending,
        }
    });
    let driver = tokio::spawn(driver);
    let listened = within(async {
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(pg_error)
    })
    .await;
    if let Err(e) = listened {
        driver.abort();
        return Err(e);
    }
    if notices.send(SceneNotice::Resync).is_err() {
        driver.abort();
        return Ok(());
    }
    while let Some(message) = messages.recv().await {
        let AsyncMessage::Notification(notification) = message else {
            continue;
        };
        if let Some(notice) = parse_notice(notification.payload()) {
            if notices.send(notice).is_err() {
                break;
            }
        }
    }
    driver.abort();
    drop(client);
    Err(StoreError::Unavailable(std::io::Error::other(
        "the listening connection ended",
    )))
}

/// A held row lock: commit a change, or drop it to change nothing.
pub struct LockedScene {
    /// Taken on commit; a lock dropped with its transaction open closes its connection, which
    /// rolls it back, rather than giving the pool a connection in the middle of a transaction.
    client: Option<Object>,
    key: SceneKey,
    row: Option<SceneRow>,
}

impl LockedScene {
    /// The row as it stands under the lock; `None` if the scene has no row (purged).
    pub fn row(&self) -> Option<&SceneRow> {
        self.row.as_ref()
    }

    /// Writes `change` (if any) with the next version and its notification, and commits; the
    /// version now committed.
    pub async fn commit(mut self, change: Option<SceneChange<'_>>) -> Result<i64, StoreError> {
        let client = self.client.as_ref().expect("held until commit");
        let current = self.row.as_ref().map_or(0, |row| row.version);
        let key = self.key;
        let version = within(async {
            let mut version = current;
            if let Some(change) = change.filter(|_| self.row.is_some()) {
                version += 1;
                let payload = notice_payload(&key, version);
                let now = unix_ms(SystemTime::now());
                let confirming = change.confirming.map(OpenId::as_str);
                let params: [&(dyn ToSql + Sync); 7] = [
                    &&key[..],
                    &version,
                    &change.state,
                    &confirming,
                    &now,
                    &CHANNEL,
                    &payload,
                ];
                let update = prepared(client, UPDATE_ROW).await?;
                let update = client.execute(&update, &params);
                // Sent together, one round trip: both must succeed before the commit.
                match change.login {
                    Some(login) => {
                        let (_, updated) =
                            tokio::try_join!(insert_session(client, &login), async {
                                update.await.map_err(pg_error)
                            })?;
                        updated
                    }
                    None => update.await.map_err(pg_error)?,
                };
            }
            client.batch_execute("COMMIT").await.map_err(pg_error)?;
            Ok::<_, StoreError>(version)
        })
        .await?;
        // Committed: the connection goes back to the pool.
        self.client.take();
        Ok(version)
    }
}

impl Drop for LockedScene {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

fn scene_row(row: &tokio_postgres::Row) -> Result<SceneRow, StoreError> {
    let expires_at_ms = u64::try_from(row.get::<_, i64>(2)).unwrap_or(0);
    Ok(SceneRow {
        version: row.get(0),
        state: row.get(1),
        expires_at: UNIX_EPOCH + Duration::from_millis(expires_at_ms),
        session_digest: SessionDigest::from_bytes(
            row.get::<_, &[u8]>(3).try_into().map_err(|_| {
                StoreError::Backend("a scene's session digest is not 32 bytes".into())
            })?,
        ),
    })
}

fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `key` in hex, a colon, the version: the digest, never the id.
fn notice_payload(key: &SceneKey, version: i64) -> String {
    format!("{}:{version}", hex::encode(key))
}

fn parse_notice(payload: &str) -> Option<SceneNotice> {
    let (key, version) = payload.split_once(':')?;
    let mut decoded = [0u8; 32];
    hex::decode_to_slice(key, &mut decoded).ok()?;
    Some(SceneNotice::Changed {
        key: decoded,
        version: version.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::TestServer;
    use crate::{PgBackend, PgSettings};

    async fn journal(server: &TestServer) -> SceneJournal {
        let settings = PgSettings {
            url: server.new_database().await,
            pool_size: 2,
            ca_file: None,
        };
        PgBackend::open(&settings).await.unwrap().scene_journal()
    }

    const SESSION: SessionDigest = SessionDigest::from_bytes([9; 32]);

    fn new_scene<'a>(
        key: &'a SceneKey,
        code: Option<&'a str>,
        expires_at: SystemTime,
    ) -> NewScene<'a> {
        NewScene {
            key,
            state: b"state",
            login_code: code,
            session_digest: &SESSION,
            expires_at,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
    async fn a_row_is_changed_under_its_lock_its_code_is_its_own_and_it_is_purged_after_expiry() {
        let server = TestServer::start();
        let journal = journal(&server).await;
        let later = SystemTime::now() + Duration::from_secs(300);
        let (first, second) = ([1; 32], [2; 32]);
        assert!(journal
            .create(new_scene(&first, Some("123456"), later))
            .await
            .unwrap());
        // One code names one row.
        assert!(!journal
            .create(new_scene(&second, Some("123456"), later))
            .await
            .unwrap());
        assert_eq!(journal.by_login_code("123456").await.unwrap(), Some(first));

        // A change commits the next version; a second locker waits for it, then sees it.
        let locked = journal.lock(&first).await.unwrap();
        assert_eq!(locked.row().unwrap().version, 1);
        let waiting = tokio::spawn({
            let journal = journal.clone();
            async move { journal.lock(&first).await.unwrap().row().unwrap().clone() }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "the row is locked");
        let alice = OpenId::parse("alice").unwrap();
        let change = SceneChange {
            state: b"confirming",
            confirming: Some(&alice),
            login: None,
        };
        assert_eq!(locked.commit(Some(change)).await.unwrap(), 2);
        let seen = waiting.await.unwrap();
        assert_eq!((seen.version, &seen.state[..]), (2, &b"confirming"[..]));
        assert_eq!(seen.session_digest, SESSION);
        assert_eq!(
            journal.awaiting_confirmation(&alice).await.unwrap(),
            Some(first)
        );

        // A lock dropped without a commit changes nothing.
        let dropped = journal.lock(&first).await.unwrap();
        drop(dropped);
        assert_eq!(journal.load(&first).await.unwrap().unwrap().version, 2);

        // Purged only once expired before the given time; its code is free again.
        assert_eq!(journal.purge(SystemTime::now()).await.unwrap(), 0);
        assert_eq!(
            journal.purge(later + Duration::from_secs(1)).await.unwrap(),
            1
        );
        assert_eq!(journal.load(&first).await.unwrap(), None);
        assert!(journal
            .create(new_scene(&second, Some("123456"), later))
            .await
            .unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
    async fn a_committed_change_is_heard_by_every_listener() {
        let server = TestServer::start();
        let journal = journal(&server).await;
        let mut notices = journal.listen();
        assert_eq!(notices.recv().await, Some(SceneNotice::Resync));
        let key = [3; 32];
        let later = SystemTime::now() + Duration::from_secs(300);
        assert!(journal.create(new_scene(&key, None, later)).await.unwrap());
        let locked = journal.lock(&key).await.unwrap();
        let change = SceneChange {
            state: b"moved",
            confirming: None,
            login: None,
        };
        locked.commit(Some(change)).await.unwrap();
        assert_eq!(
            notices.recv().await,
            Some(SceneNotice::Changed { key, version: 2 })
        );
    }

    #[test]
    fn a_notice_names_the_digest_and_version_and_reads_back() {
        let key = [7u8; 32];
        let payload = notice_payload(&key, 42);
        assert_eq!(payload.len(), 64 + 3);
        assert_eq!(
            parse_notice(&payload),
            Some(SceneNotice::Changed { key, version: 42 })
        );
        assert_eq!(parse_notice("zz:1"), None);
        assert_eq!(parse_notice(&hex::encode(key)), None);
    }
}
