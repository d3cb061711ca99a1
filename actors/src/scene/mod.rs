//! The actor that holds one scene in memory from QR creation until its TTL runs out.

pub mod state;

use std::time::{Duration, Instant};

use actix::fut::{ready, ActorFutureExt, WrapFuture};
use actix::{
    Actor, ActorContext, Addr, AsyncContext, AtomicResponse, Context, Handler, Message,
    MessageResult,
};
use rand::Rng;
use tokio::sync::oneshot;
use wxlogin_storage::{BindError, LoginMethod, OpenId, Phone, SessionToken, Store};

use crate::supervisor::{SceneEnded, SceneSupervisor};
use crate::SceneId;
use state::{SceneError, SceneMachine, SceneStatus};

pub struct SceneActor {
    id: SceneId,
    machine: SceneMachine,
    expires_at: Instant,
    /// The browser that asked for the QR code: a scan login is logged against it.
    client_ip: String,
    session_ttl: Duration,
    store: Store,
    supervisor: Addr<SceneSupervisor>,
    /// Long-polls waiting for the next change.
    watchers: Vec<oneshot::Sender<SceneStatus>>,
}

impl SceneActor {
    pub(crate) fn new(
        id: SceneId,
        ttl: Duration,
        client_ip: String,
        session_ttl: Duration,
        store: Store,
        supervisor: Addr<SceneSupervisor>,
    ) -> Self {
        Self {
            id,
            machine: SceneMachine::default(),
            expires_at: Instant::now() + ttl,
            client_ip,
            session_ttl,
            store,
            supervisor,
            watchers: Vec::new(),
        }
    }

    fn notify_watchers(&mut self) {
        let status = self.machine.status(self.expires_at);
        for watcher in self.watchers.drain(..) {
            let _ = watcher.send(status.clone());
        }
    }
}

impl Actor for SceneActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let ttl = self.expires_at.saturating_duration_since(Instant::now());
        ctx.run_later(ttl, |scene, ctx| {
            scene.machine.expire();
            scene.notify_watchers();
            ctx.stop();
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.supervisor.do_send(SceneEnded(self.id.clone()));
    }
}

/// Answers at once with a value computed synchronously.
fn done<T: 'static>(value: T) -> AtomicResponse<SceneActor, T> {
    AtomicResponse::new(Box::pin(ready(value)))
}

/// The current status and, when asked to watch, a receiver for the next change.
#[derive(Message)]
#[rtype(result = "Watched")]
pub struct Watch {
    pub until_change: bool,
}

pub struct Watched {
    pub status: SceneStatus,
    /// `None` when not asked for, or when the scene can no longer change.
    pub change: Option<oneshot::Receiver<SceneStatus>>,
}

impl Handler<Watch> for SceneActor {
    type Result = MessageResult<Watch>;

    fn handle(&mut self, msg: Watch, _: &mut Self::Context) -> Self::Result {
        let status = self.machine.status(self.expires_at);
        let change = (msg.until_change && !status.phase.is_terminal()).then(|| {
            // Drop watchers whose browser went away, so a scene polled for minutes stays small.
            self.watchers.retain(|w| !w.is_closed());
            let (tx, rx) = oneshot::channel();
            self.watchers.push(tx);
            rx
        });
        MessageResult(Watched { status, change })
    }
}

/// A WeChat user scanned this scene's QR code.
#[derive(Message)]
#[rtype(result = "Result<ScanOutcome, SceneError>")]
pub struct Scan {
    pub openid: OpenId,
    /// The scan came with a new follow.
    pub subscribed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanOutcome {
    LoggedIn,
    NeedBind,
}

impl Handler<Scan> for SceneActor {
    // Atomic: no other message for this scene runs while the session is written.
    type Result = AtomicResponse<Self, Result<ScanOutcome, SceneError>>;

    fn handle(&mut self, msg: Scan, _: &mut Self::Context) -> Self::Result {
        if let Err(e) = self.machine.check_scan() {
            return done(Err(e));
        }
        match self.store.binding(&msg.openid) {
            Err(e) => done(Err(e.into())),
            Ok(None) => {
                let result = self.machine.await_bind(msg.openid, msg.subscribed);
                self.notify_watchers();
                done(result.map(|()| ScanOutcome::NeedBind))
            }
            Ok(Some(_)) => {
                let store = self.store.clone();
                let (ttl, ip) = (self.session_ttl, self.client_ip.clone());
                let open = async move {
                    store
                        .open_session(&msg.openid, ttl, LoginMethod::Scan, &ip)
                        .await
                };
                AtomicResponse::new(Box::pin(open.into_actor(self).map(
                    move |opened, scene, _| {
                        scene.machine.log_in_scanned(msg.subscribed, opened?)?;
                        scene.notify_watchers();
                        Ok(ScanOutcome::LoggedIn)
                    },
                )))
            }
        }
    }
}

/// Issue a verification code for `phone`; the caller delivers it.
#[derive(Message)]
#[rtype(result = "Result<String, SceneError>")]
pub struct RequestCode {
    pub phone: Phone,
}

impl Handler<RequestCode> for SceneActor {
    type Result = Result<String, SceneError>;

    fn handle(&mut self, msg: RequestCode, _: &mut Self::Context) -> Self::Result {
        let code = format!("{:06}", rand::thread_rng().gen_range(0..1_000_000));
        self.machine
            .code_sent(msg.phone, code.clone(), Instant::now())?;
        Ok(code)
    }
}

/// Bind `phone` to the scanner with the code sent to it, and log in.
#[derive(Message)]
#[rtype(result = "Result<SessionToken, SceneError>")]
pub struct Bind {
    pub phone: Phone,
    pub code: String,
    pub client_ip: String,
}

impl Handler<Bind> for SceneActor {
    type Result = AtomicResponse<Self, Result<SessionToken, SceneError>>;

    fn handle(&mut self, msg: Bind, _: &mut Self::Context) -> Self::Result {
        let openid = match self.machine.verify_code(&msg.phone, &msg.code) {
            Ok(openid) => openid,
            Err(e) => return done(Err(e)),
        };
        let store = self.store.clone();
        let ttl = self.session_ttl;
        let bind = async move {
            store.bind(&openid, &msg.phone).await.map_err(|e| match e {
                BindError::PhoneTaken => SceneError::PhoneTaken,
                BindError::Store(e) => e.into(),
            })?;
            let token = store
                .open_session(&openid, ttl, LoginMethod::Bind, &msg.client_ip)
                .await?;
            Ok::<_, SceneError>(token)
        };
        AtomicResponse::new(Box::pin(bind.into_actor(self).map(|bound, scene, _| {
            let token = bound?;
            scene.machine.log_in_bound(token.clone())?;
            scene.notify_watchers();
            Ok(token)
        })))
    }
}
