//! A scanner without a phone binds one: a verification code is sent to the phone, and the
//! right code binds it and logs the scene in.

use std::time::Instant;

use actix::fut::{ActorFutureExt, WrapFuture};
use actix::{Handler, Message, MessageResult, ResponseActFuture};
use rand::Rng;
use wxlogin_storage::{BindError, LoginMethod, OpenId, Phone, SessionToken};

use super::done;
use super::state::{LoginMode, SceneError};
use crate::supervisor::{SceneSupervisor, ToScene};

/// The scanner the scene waits to bind a phone for: whose budget a code request spends.
#[derive(Message)]
#[rtype(result = "Result<OpenId, SceneError>")]
pub struct BindingScanner;

impl Handler<ToScene<BindingScanner>> for SceneSupervisor {
    type Result = MessageResult<ToScene<BindingScanner>>;

    fn handle(
        &mut self,
        ToScene { id, .. }: ToScene<BindingScanner>,
        _: &mut Self::Context,
    ) -> Self::Result {
        MessageResult(self.live(&id).map(|scene| {
            scene
                .machine
                .binding()
                .cloned()
                .ok_or(SceneError::NotAwaitingBind)
        }))
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
#[rtype(result = "Result<Bound, SceneError>")]
pub struct Bind {
    pub phone: Phone,
    pub code: String,
    pub client_ip: String,
}

pub struct Bound {
    pub token: SessionToken,
    /// How the scene was scanned.
    pub mode: LoginMode,
}

impl Handler<ToScene<Bind>> for SceneSupervisor {
    type Result = ResponseActFuture<Self, Option<Result<Bound, SceneError>>>;

    fn handle(
        &mut self,
        ToScene { id, msg }: ToScene<Bind>,
        _: &mut Self::Context,
    ) -> Self::Result {
        let store = self.store.clone();
        let session_ttl = self.settings.session_ttl;
        let Some(scene) = self.live(&id) else {
            return done(None);
        };
        if scene.busy {
            return done(Some(Err(SceneError::NotAwaitingBind)));
        }
        let (openid, follow_generation) = match scene.machine.verify_code(&msg.phone, &msg.code) {
            Ok(verified) => verified,
            Err(e) => return done(Some(Err(e))),
        };
        scene.busy = true;
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
            Ok::<_, SceneError>(token)
        };
        Box::pin(bind.into_actor(self).map(move |bound, supervisor, _| {
            let scene = supervisor.scenes.get_mut(&id)?;
            scene.busy = false;
            if matches!(bound, Err(SceneError::Unfollowed)) {
                // They left the account: this login is over, whatever the browser does next.
                supervisor.end(id);
                return Some(Err(SceneError::Unfollowed));
            }
            Some(bound.and_then(|token| {
                scene.machine.log_in_bound(token.clone())?;
                scene.notify_watchers();
                Ok(Bound {
                    token,
                    mode: scene.machine.mode(),
                })
            }))
        }))
    }
}
