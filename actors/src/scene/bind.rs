//! A scanner without a phone binds one: a verification code is sent to the phone, and the
//! right code binds it and logs the scene in. The code is made and checked as a digest by the
//! caller (keyed by the scene's secret): the scene only keeps and compares it.

use std::time::Instant;

use actix::fut::{ActorFutureExt, WrapFuture};
use actix::{ActorResponse, Context, Message};
use wxlogin_storage::{BindError, Binding, LoginMethod, OpenId, Phone, StoreError};

use super::state::{CodeDigest, LoginMode, SceneError};
use super::{after_write, Live, Login, Reply, SceneActor};

/// The scanner the scene waits to bind a phone for: whose budget a code request spends.
#[derive(Message)]
#[rtype(result = "Result<OpenId, SceneError>")]
pub struct BindingScanner;

impl Live<BindingScanner> for SceneActor {
    const CHANGES: bool = false;

    fn live(&mut self, _: BindingScanner, _: &mut Context<Self>) -> Reply<BindingScanner> {
        // Asked right after the scan's answer, perhaps of a node the scan's notification has
        // not reached yet.
        self.read_committed(|scene| {
            let scanner = scene.machine.binding().cloned();
            scanner.ok_or(SceneError::NotAwaitingBind)
        })
    }
}

/// A verification code is on its way to a phone: the scene keeps its digest (which names the
/// phone too), and refuses a second within [`super::state::CODE_COOLDOWN`].
#[derive(Message)]
#[rtype(result = "Result<(), SceneError>")]
pub struct RequestCode {
    pub code: CodeDigest,
}

impl Live<RequestCode> for SceneActor {
    fn live(&mut self, msg: RequestCode, _: &mut Context<Self>) -> Reply<RequestCode> {
        let sent = if self.busy {
            Err(SceneError::NotAwaitingBind)
        } else {
            self.machine.code_sent(msg.code, Instant::now())
        };
        ActorResponse::reply(Some(sent))
    }
}

/// Bind `phone` to the scanner with the code sent to it (`code`, the digest of both), and log
/// in.
#[derive(Message)]
#[rtype(result = "Result<Bound, SceneError>")]
pub struct Bind {
    pub phone: Phone,
    pub code: CodeDigest,
    pub client_ip: String,
}

pub struct Bound {
    /// The binding just made.
    pub binding: Binding,
    /// How the scene was scanned.
    pub mode: LoginMode,
}

impl Live<Bind> for SceneActor {
    fn live(&mut self, msg: Bind, _: &mut Context<Self>) -> Reply<Bind> {
        if self.busy {
            return ActorResponse::reply(Some(Err(SceneError::NotAwaitingBind)));
        }
        let (openid, follow_generation) = match self.machine.verify_code(&msg.code) {
            Ok(verified) => verified,
            Err(e) => return ActorResponse::reply(Some(Err(e))),
        };
        self.busy = true;
        let store = self.services.store.clone();
        let opener = self.session_opener();
        let bind = async move {
            let binding = store
                .bind(&openid, &msg.phone, follow_generation)
                .await
                .map_err(|e| match e {
                    BindError::PhoneTaken => SceneError::PhoneTaken,
                    BindError::Unfollowed => SceneError::Unfollowed,
                    BindError::Store(e) => e.into(),
                })?;
            let login = Login {
                binding: binding.clone(),
                method: LoginMethod::Bind,
                client_ip: msg.client_ip,
            };
            Ok::<_, SceneError>((binding, opener.open(login).await?))
        };
        after_write(bind.into_actor(self).map(|bound, scene, ctx| {
            if matches!(bound, Err(SceneError::Unfollowed)) {
                // They left the account: this login is over, whatever the browser does next.
                scene.end(ctx, false);
                return Err(SceneError::Unfollowed);
            }
            if matches!(bound, Err(SceneError::Store(StoreError::Unavailable(_)))) {
                // Answered 503: the browser's retry with the same code must work.
                scene.machine.give_back_code();
            }
            let (binding, deferred) = bound?;
            scene.machine.log_in_bound()?;
            scene.login = deferred;
            scene.notify_waiters();
            Ok(Bound {
                binding,
                mode: scene.machine.mode(),
            })
        }))
    }
}
