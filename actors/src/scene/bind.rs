//! A scanner without a phone binds one: a verification code is sent to the phone, and the
//! right code binds it and logs the scene in.

use std::time::Instant;

use actix::fut::{ActorFutureExt, WrapFuture};
use actix::{ActorResponse, Context, Message};
use rand::Rng;
use wxlogin_storage::{BindError, Binding, LoginMethod, OpenId, Phone, SessionToken, StoreError};

use super::state::{LoginMode, SceneError};
use super::{after_write, Live, Reply, SceneActor};

/// The scanner the scene waits to bind a phone for: whose budget a code request spends.
#[derive(Message)]
#[rtype(result = "Result<OpenId, SceneError>")]
pub struct BindingScanner;

impl Live<BindingScanner> for SceneActor {
    const CHANGES: bool = false;

    fn live(&mut self, _: BindingScanner, _: &mut Context<Self>) -> Reply<BindingScanner> {
        let scanner = self.machine.binding().cloned();
        ActorResponse::reply(Some(scanner.ok_or(SceneError::NotAwaitingBind)))
    }
}

/// Issue a verification code for `phone`; the caller delivers it.
#[derive(Message)]
#[rtype(result = "Result<String, SceneError>")]
pub struct RequestCode {
    pub phone: Phone,
}

impl Live<RequestCode> for SceneActor {
    fn live(&mut self, msg: RequestCode, _: &mut Context<Self>) -> Reply<RequestCode> {
        ActorResponse::reply(Some(self.request_code(msg)))
    }
}

impl SceneActor {
    fn request_code(&mut self, msg: RequestCode) -> Result<String, SceneError> {
        if self.busy {
            return Err(SceneError::NotAwaitingBind);
        }
        let code = format!("{:06}", rand::thread_rng().gen_range(0..1_000_000));
        self.machine
            .code_sent(msg.phone, code.clone(), Instant::now())?;
        Ok(code)
    }
}

/// Bind `phone` to the scanner with the code sent to it, and log in.
#[derive(Message)]
#[rtype(result = "Result<Bound, SceneError>")]
pub struct Bind {
    pub phone: Phone,
    pub code: String,
    pub client_ip: String,
}

pub struct Bound {
    pub token: SessionToken,
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
        let (openid, follow_generation) = match self.machine.verify_code(&msg.phone, &msg.code) {
            Ok(verified) => verified,
            Err(e) => return ActorResponse::reply(Some(Err(e))),
        };
        self.busy = true;
        let store = self.services.store.clone();
        let session_ttl = self.services.session_ttl;
        let bind = async move {
            let binding = store
                .bind(&openid, &msg.phone, follow_generation)
                .await
                .map_err(|e| match e {
                    BindError::PhoneTaken => SceneError::PhoneTaken,
                    BindError::Unfollowed => SceneError::Unfollowed,
                    BindError::Store(e) => e.into(),
                })?;
            let token = store
                .open_session(&binding, session_ttl, LoginMethod::Bind, &msg.client_ip)
                .await?;
            Ok::<_, SceneError>((binding, token))
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
            let (binding, token) = bound?;
            scene.machine.log_in_bound(token.clone())?;
            scene.notify_waiters();
            Ok(Bound {
                token,
                binding,
                mode: scene.machine.mode(),
            })
        }))
    }
}
