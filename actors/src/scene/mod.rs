//! One scene in memory from QR creation until its TTL runs out, and the messages it answers.
//!
//! A scene lives in the [`SceneSupervisor`]'s map; its messages reach it through a
//! [`crate::SceneHandle`]. While a store write for a scene is in flight (a scan that logs in,
//! a bind) the scene is `busy`: other scans are told it was already scanned and other binds
//! that it is not awaiting one, so a scene can never log in twice.

pub mod state;

use std::time::{Duration, Instant};

use actix::fut::{ready, ActorFutureExt, WrapFuture};
use actix::{Handler, Message, MessageResult, ResponseActFuture};
use rand::Rng;
use tokio::sync::oneshot;
use wxlogin_storage::{BindError, LoginMethod, OpenId, Phone, SessionToken};

use crate::supervisor::{SceneSupervisor, ToScene};
use state::{SceneError, SceneMachine, SceneStatus};

pub struct Scene {
    machine: SceneMachine,
    pub(crate) expires_at: Instant,
    /// The browser that asked for the QR code: a scan login is logged against it.
    client_ip: String,
    /// Long-polls waiting for the next change.
    watchers: Vec<oneshot::Sender<SceneStatus>>,
    /// A store write for this scene is in flight.
    pub(crate) busy: bool,
}

impl Scene {
    pub(crate) fn new(expires_at: Instant, client_ip: String) -> Self {
        Self {
            machine: SceneMachine::default(),
            expires_at,
            client_ip,
            watchers: Vec::new(),
            busy: false,
        }
    }

    fn notify_watchers(&mut self) {
        let status = self.machine.status(self.expires_at);
        for watcher in self.watchers.drain(..) {
            let _ = watcher.send(status.clone());
        }
    }

    /// The TTL ran out: tell every waiting poll.
    pub(crate) fn expire(&mut self) {
        self.machine.expire();
        self.notify_watchers();
    }
}

/// Answers at once with a value computed synchronously.
fn done<T: 'static>(value: T) -> ResponseActFuture<SceneSupervisor, T> {
    Box::pin(ready(value))
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

impl Handler<ToScene<Watch>> for SceneSupervisor {
    type Result = MessageResult<ToScene<Watch>>;

    fn handle(
        &mut self,
        ToScene { id, msg }: ToScene<Watch>,
        _: &mut Self::Context,
    ) -> Self::Result {
        MessageResult(self.live(&id).map(|scene| {
            let status = scene.machine.status(scene.expires_at);
            let change = (msg.until_change && !status.phase.is_terminal()).then(|| {
                // Drop watchers whose browser went away, so a scene polled for minutes stays small.
                scene.watchers.retain(|w| !w.is_closed());
                let (tx, rx) = oneshot::channel();
                scene.watchers.push(tx);
                rx
            });
            Watched { status, change }
        }))
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

impl Handler<ToScene<Scan>> for SceneSupervisor {
    type Result = ResponseActFuture<Self, Option<Result<ScanOutcome, SceneError>>>;

    fn handle(
        &mut self,
        ToScene { id, msg }: ToScene<Scan>,
        _: &mut Self::Context,
    ) -> Self::Result {
        let store = self.store.clone();
        let session_ttl = self.settings.session_ttl;
        let Some(scene) = self.live(&id) else {
            return done(None);
        };
        if scene.busy {
            return done(Some(Err(SceneError::AlreadyScanned)));
        }
        if let Err(e) = scene.machine.check_scan() {
            return done(Some(Err(e)));
        }
        match store.binding(&msg.openid) {
            Err(e) => done(Some(Err(e.into()))),
            Ok(None) => {
                let result = scene.machine.await_bind(msg.openid, msg.subscribed);
                scene.notify_watchers();
                done(Some(result.map(|()| ScanOutcome::NeedBind)))
            }
            Ok(Some(_)) => {
                scene.busy = true;
                let ip = scene.client_ip.clone();
                let open = async move {
                    store
                        .open_session(&msg.openid, session_ttl, LoginMethod::Scan, &ip)
                        .await
                };
                Box::pin(open.into_actor(self).map(move |opened, supervisor, _| {
                    let scene = supervisor.scenes.get_mut(&id)?;
                    scene.busy = false;
                    Some(opened.map_err(SceneError::from).and_then(|token| {
                        scene.machine.log_in_scanned(msg.subscribed, token)?;
                        scene.notify_watchers();
                        Ok(ScanOutcome::LoggedIn)
                    }))
                }))
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

impl Handler<ToScene<RequestCode>> for SceneSupervisor {
    type Result = MessageResult<ToScene<RequestCode>>;

    fn handle(
        &mut self,
        ToScene { id, msg }: ToScene<RequestCode>,
        _: &mut Self::Context,
    ) -> Self::Result {
        MessageResult(self.live(&id).map(|scene| {
            if scene.busy {
                return Err(SceneError::NotAwaitingBind);
            }
            let code = format!("{:06}", rand::thread_rng().gen_range(0..1_000_000));
            scene
                .machine
                .code_sent(msg.phone, code.clone(), Instant::now())?;
            Ok(code)
        }))
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

impl Handler<ToScene<Bind>> for SceneSupervisor {
    type Result = ResponseActFuture<Self, Option<Result<SessionToken, SceneError>>>;

    fn handle(
        &mut self,
        ToScene { id, msg }: ToScene<Bind>,
        _: &mut Self::Context,
    ) -> Self::Result {
        let store = self.store.clone();
        let session_ttl: Duration = self.settings.session_ttl;
        let Some(scene) = self.live(&id) else {
            return done(None);
        };
        if scene.busy {
            return done(Some(Err(SceneError::NotAwaitingBind)));
        }
        let openid = match scene.machine.verify_code(&msg.phone, &msg.code) {
            Ok(openid) => openid,
            Err(e) => return done(Some(Err(e))),
        };
        scene.busy = true;
        let bind = async move {
            store.bind(&openid, &msg.phone).await.map_err(|e| match e {
                BindError::PhoneTaken => SceneError::PhoneTaken,
                BindError::Store(e) => e.into(),
            })?;
            let token = store
                .open_session(&openid, session_ttl, LoginMethod::Bind, &msg.client_ip)
                .await?;
            Ok::<_, SceneError>(token)
        };
        Box::pin(bind.into_actor(self).map(move |bound, supervisor, _| {
            let scene = supervisor.scenes.get_mut(&id)?;
            scene.busy = false;
            Some(bound.and_then(|token| {
                scene.machine.log_in_bound(token.clone())?;
                scene.notify_watchers();
                Ok(token)
            }))
        }))
    }
}
