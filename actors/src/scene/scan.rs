//! A scene is scanned (by its QR code, or by the text message carrying its login code), asks
//! for confirmation if that is on, and lets the scanner in.

use actix::fut::{ActorFutureExt, WrapFuture};
use actix::{Handler, Message, ResponseActFuture};
use rand::Rng;
use wxlogin_storage::{LoginMethod, OpenId};

use super::state::{Answer as Reply, LoginMode, SceneError};
use super::{done, Requester};
use crate::supervisor::{SceneSupervisor, ToScene};
use crate::{LoginCode, SceneId};

/// A WeChat user scanned this scene's QR code.
#[derive(Message)]
#[rtype(result = "Result<ScanOutcome, SceneError>")]
pub struct Scan {
    pub openid: OpenId,
    /// The scan came with a new follow.
    pub new_follower: bool,
}

/// A WeChat user sent the account a login code: a scan of the scene that shows it.
/// Answers `None` when no live scene has this code.
#[derive(Message)]
#[rtype(result = "Option<Result<ScanOutcome, SceneError>>")]
pub struct ScanByCode {
    pub code: LoginCode,
    pub openid: OpenId,
}

/// A WeChat user replied with a number: the answer to their pending confirmation.
/// Answers `None` when no scene waits for this user's confirmation.
#[derive(Message)]
#[rtype(result = "Option<Result<AnswerOutcome, SceneError>>")]
pub struct Answer {
    pub openid: OpenId,
    pub number: u8,
}

/// The scanner is let in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admitted {
    /// They had a phone bound: the scene's browser is logged in.
    LoggedIn(LoginMode),
    NeedBind,
}

#[derive(Clone, Debug)]
pub enum ScanOutcome {
    Admitted(Admitted),
    /// Confirmation is on: the scanner is asked to reply with the browser's number.
    Confirm(Requester),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerOutcome {
    Admitted(Admitted),
    Denied,
}

type Answered<T> = ResponseActFuture<SceneSupervisor, Option<Result<T, SceneError>>>;

impl Handler<ToScene<Scan>> for SceneSupervisor {
    type Result = Answered<ScanOutcome>;

    fn handle(
        &mut self,
        ToScene { id, msg }: ToScene<Scan>,
        _: &mut Self::Context,
    ) -> Self::Result {
        self.scan(id, msg.openid, msg.new_follower)
    }
}

impl Handler<ScanByCode> for SceneSupervisor {
    type Result = Answered<ScanOutcome>;

    fn handle(&mut self, msg: ScanByCode, _: &mut Self::Context) -> Self::Result {
        match self.codes.get(&msg.code) {
            // A text message comes from someone who already follows the account.
            Some(id) => self.scan(id.clone(), msg.openid, false),
            None => done(None),
        }
    }
}

impl Handler<Answer> for SceneSupervisor {
    type Result = Answered<AnswerOutcome>;

    fn handle(&mut self, msg: Answer, _: &mut Self::Context) -> Self::Result {
        let Some(id) = self.confirmations.get(&msg.openid).cloned() else {
            return done(None);
        };
        let Some(scene) = self.live(&id) else {
            self.confirmations.remove(&msg.openid);
            return done(None);
        };
        if scene.busy {
            return done(Some(Err(SceneError::NotAwaitingConfirmation)));
        }
        match scene.machine.answer(&msg.openid, msg.number) {
            Err(e) => done(Some(Err(e))),
            Ok(Reply::Denied) => {
                scene.notify_watchers();
                self.confirmations.remove(&msg.openid);
                // Denied is terminal: end the scene now rather than at its TTL.
                self.end(id);
                done(Some(Ok(AnswerOutcome::Denied)))
            }
            Ok(Reply::Accepted {
                openid,
                new_follower,
            }) => Box::pin(
                self.admit(id, openid, new_follower)
                    .map(|admitted, _, _| admitted.map(|r| r.map(AnswerOutcome::Admitted))),
            ),
        }
    }
}

impl SceneSupervisor {
    fn scan(&mut self, id: SceneId, openid: OpenId, new_follower: bool) -> Answered<ScanOutcome> {
        let Some(scene) = self.live(&id) else {
            return done(None);
        };
        if scene.busy {
            return done(Some(Err(SceneError::AlreadyScanned)));
        }
        if let Err(e) = scene.machine.check_scan() {
            return done(Some(Err(e)));
        }
        if scene.machine.needs_confirmation() {
            // Two digits, never starting with 0: `0` is how the scanner says no.
            let number = rand::thread_rng().gen_range(10..=99);
            let asked = scene
                .machine
                .ask_confirmation(openid.clone(), new_follower, number);
            if let Err(e) = asked {
                return done(Some(Err(e)));
            }
            scene.notify_watchers();
            let requester = scene.requester.clone();
            // A user answers the confirmation they were asked last.
            self.confirmations.insert(openid, id);
            return done(Some(Ok(ScanOutcome::Confirm(requester))));
        }
        Box::pin(
            self.admit(id, openid, new_follower)
                .map(|admitted, _, _| admitted.map(|r| r.map(ScanOutcome::Admitted))),
        )
    }

    /// Lets a scanner the scene accepts in: to `need_bind` if they have no phone bound,
    /// else a session is opened and the scene logs in.
    fn admit(&mut self, id: SceneId, openid: OpenId, new_follower: bool) -> Answered<Admitted> {
        let store = self.store.clone();
        let session_ttl = self.settings.session_ttl;
        let Some(scene) = self.live(&id) else {
            return done(None);
        };
        if let Err(e) = scene.machine.check_admit(&openid) {
            return done(Some(Err(e)));
        }
        match store.binding(&openid) {
            Err(e) => done(Some(Err(e.into()))),
            Ok(None) => {
                let follow_generation = match store.follow_generation(&openid) {
                    Ok(generation) => generation,
                    Err(e) => return done(Some(Err(e.into()))),
                };
                let result =
                    scene
                        .machine
                        .await_bind(openid.clone(), new_follower, follow_generation);
                scene.notify_watchers();
                self.confirmed(&openid, &id);
                done(Some(result.map(|()| Admitted::NeedBind)))
            }
            Ok(Some(binding)) => {
                scene.busy = true;
                let ip = scene.requester.ip.clone();
                let opening = async move {
                    store
                        .open_session(&binding, session_ttl, LoginMethod::Scan, &ip)
                        .await
                };
                Box::pin(opening.into_actor(self).map(move |opened, supervisor, _| {
                    let scene = supervisor.scenes.get_mut(&id)?;
                    scene.busy = false;
                    let token = match opened {
                        Ok(token) => token,
                        Err(e) => return Some(Err(e.into())),
                    };
                    let mode = scene.machine.mode();
                    let result = scene.machine.log_in_scanned(&openid, new_follower, token);
                    if result.is_ok() {
                        scene.notify_watchers();
                        supervisor.confirmed(&openid, &id);
                    }
                    Some(result.map(|()| Admitted::LoggedIn(mode)))
                }))
            }
        }
    }

    /// The scanner was let in: their confirmation, if one was pending for this scene, is done.
    fn confirmed(&mut self, openid: &OpenId, id: &SceneId) {
        if self.confirmations.get(openid) == Some(id) {
            self.confirmations.remove(openid);
        }
    }
}
