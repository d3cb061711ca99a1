//! One scene in memory from QR creation until its TTL runs out, and the messages it answers.
//!
//! A scene lives in the [`SceneSupervisor`]'s map; its messages reach it through a
//! [`crate::SceneHandle`] or, for those that find it by login code or by its scanner, through
//! the supervisor. While a store write for a scene is in flight (a scan that logs in, a bind)
//! the scene is `busy`: other scans are told it was already scanned and other binds that it is
//! not awaiting one, so a scene can never log in twice.

mod bind;
mod scan;
pub mod state;

pub use bind::{Bind, BindingScanner, Bound, RequestCode};
pub use scan::{Admitted, Answer, AnswerOutcome, Scan, ScanByCode, ScanOutcome};

use std::time::{Instant, SystemTime};

use actix::fut::ready;
use actix::{Handler, Message, MessageResult, ResponseActFuture};
use tokio::sync::oneshot;

use crate::supervisor::{SceneSupervisor, ToScene};
use crate::LoginCode;
use state::{SceneMachine, SceneStatus};

/// The browser that asked for a login: where a scan login is logged from, what the scanner is
/// shown when asked to confirm, and how that browser proves it is the one.
#[derive(Clone, Debug)]
pub struct Requester {
    pub ip: String,
    /// Browser and operating system in words, e.g. "Chrome on Windows".
    pub device: String,
    pub at: SystemTime,
    /// SHA-256 of the scene's secret, which only the requesting browser was given: the scene
    /// hands its session token to whoever shows the secret, not to whoever knows its id.
    pub secret_digest: [u8; 32],
}

pub struct Scene {
    pub(crate) machine: SceneMachine,
    pub(crate) expires_at: Instant,
    pub(crate) requester: Requester,
    /// In code mode, the code that scans this scene by text message.
    pub(crate) code: Option<LoginCode>,
    /// Long-polls waiting for the next change.
    watchers: Vec<oneshot::Sender<SceneStatus>>,
    /// A store write for this scene is in flight.
    pub(crate) busy: bool,
}

impl Scene {
    pub(crate) fn new(
        machine: SceneMachine,
        expires_at: Instant,
        requester: Requester,
        code: Option<LoginCode>,
    ) -> Self {
        Self {
            machine,
            expires_at,
            requester,
            code,
            watchers: Vec::new(),
            busy: false,
        }
    }

    pub(crate) fn notify_watchers(&mut self) {
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
pub(crate) fn done<T: 'static>(value: T) -> ResponseActFuture<SceneSupervisor, T> {
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
    /// `None` when not asked for, or when only the TTL can still change the scene.
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
            let change = (msg.until_change && !status.phase.is_settled()).then(|| {
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
