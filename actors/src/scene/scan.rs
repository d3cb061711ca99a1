//! A scene is scanned (by its QR code, or by the text message carrying its login code), asks
//! for confirmation if that is on, and lets the scanner in.

use actix::fut::{ActorFutureExt, WrapFuture};
use actix::{ActorResponse, Context, Message};
use rand::Rng;
use wxlogin_storage::{LoginMethod, OpenId};

use super::state::{Answer as Verdict, LoginMode, SceneError};
use super::{after_write, Live, Login, Origin, Reply, SceneActor, SceneReport};
use crate::LoginCode;

/// A WeChat user scanned this scene's QR code.
#[derive(Message)]
#[rtype(result = "Result<ScanOutcome, SceneError>")]
pub struct Scan {
    pub openid: OpenId,
    /// The scan came with a new follow.
    pub new_follower: bool,
    /// When WeChat says it was sent (`CreateTime`, WeChat's clock), if it says.
    pub sent_at: Option<u64>,
}

/// WeChat's web authorization (网页授权) named the WeChat user of the very browser that owns
/// this scene: a scan by them with no confirmation, which would only prove what the
/// browser-bound authorization already did, that the scanner holds this browser.
#[derive(Message)]
#[rtype(result = "Result<ScanOutcome, SceneError>")]
pub struct ScanOnDevice {
    pub openid: OpenId,
}

/// A WeChat user sent the account a login code: a scan of the scene that shows it.
/// Answers `None` when no live scene has this code.
#[derive(Message)]
#[rtype(result = "Option<Result<ScanOutcome, SceneError>>")]
pub struct ScanByCode {
    pub code: LoginCode,
    pub openid: OpenId,
    pub sent_at: Option<u64>,
}

/// A WeChat user replied with a number: the answer to their pending confirmation.
/// Answers `None` when no scene waits for this user's confirmation.
#[derive(Message)]
#[rtype(result = "Option<Result<AnswerOutcome, SceneError>>")]
pub struct Answer {
    pub openid: OpenId,
    pub number: u8,
    pub sent_at: Option<u64>,
}

/// An [`Answer`] the supervisor found the scene for, delivered to that scene.
#[derive(Message)]
#[rtype(result = "Result<AnswerOutcome, SceneError>")]
pub(crate) struct ConfirmationReply {
    pub(crate) openid: OpenId,
    pub(crate) number: u8,
    pub(crate) sent_at: Option<u64>,
}

/// When the message that lets a scanner in was sent (`CreateTime`: WeChat's clock, in seconds).
#[derive(Clone, Copy)]
struct Sent {
    at: u64,
    /// A `subscribe`: the sender did not follow the account just before it.
    subscribe: bool,
}

impl Sent {
    /// Whether an unfollow at `unfollowed` came after this message. A follower's message
    /// (a `SCAN`, a text) in the same second came before it: after an unfollow, the next scan
    /// is a `subscribe`. A `subscribe` in the same second is the follow after it.
    fn overtaken_by(self, unfollowed: u64) -> bool {
        if self.subscribe {
            self.at < unfollowed
        } else {
            self.at <= unfollowed
        }
    }
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
    Confirm(Origin),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerOutcome {
    Admitted(Admitted),
    Denied,
}

impl Live<Scan> for SceneActor {
    fn live(&mut self, msg: Scan, _: &mut Context<Self>) -> Reply<Scan> {
        if self.busy {
            return ActorResponse::reply(Some(Err(SceneError::AlreadyScanned)));
        }
        if let Err(e) = self.machine.check_scan() {
            return ActorResponse::reply(Some(Err(e)));
        }
        if !self.machine.needs_confirmation() {
            let sent = msg.sent_at.map(|at| Sent {
                at,
                subscribe: msg.new_follower,
            });
            return self.admit(msg.openid, msg.new_follower, sent, ScanOutcome::Admitted);
        }
        // Two digits, never starting with 0: `0` is how the scanner says no.
        let number = rand::thread_rng().gen_range(10..=99);
        let asked = self
            .machine
            .ask_confirmation(msg.openid.clone(), msg.new_follower, number);
        if let Err(e) = asked {
            return ActorResponse::reply(Some(Err(e)));
        }
        self.notify_waiters();
        self.report(SceneReport::AwaitsConfirmation {
            key: self.key,
            scanner: msg.openid,
        });
        ActorResponse::reply(Some(Ok(ScanOutcome::Confirm(self.origin.clone()))))
    }
}

impl Live<ScanOnDevice> for SceneActor {
    fn live(&mut self, msg: ScanOnDevice, ctx: &mut Context<Self>) -> Reply<ScanOnDevice> {
        self.machine.waive_confirmation();
        let scan = Scan {
            openid: msg.openid,
            new_follower: false,
            sent_at: None,
        };
        Live::<Scan>::live(self, scan, ctx)
    }
}

impl Live<ConfirmationReply> for SceneActor {
    fn live(
        &mut self,
        msg: ConfirmationReply,
        ctx: &mut Context<Self>,
    ) -> Reply<ConfirmationReply> {
        if self.busy {
            return ActorResponse::reply(Some(Err(SceneError::NotAwaitingConfirmation)));
        }
        match self.machine.answer(&msg.openid, msg.number) {
            Err(e) => ActorResponse::reply(Some(Err(e))),
            Ok(Verdict::Denied) => {
                // Denied is terminal: end the scene now rather than at its TTL.
                self.end(ctx, false);
                ActorResponse::reply(Some(Ok(AnswerOutcome::Denied)))
            }
            Ok(Verdict::Accepted {
                openid,
                new_follower,
            }) => {
                let sent = msg.sent_at.map(|at| Sent {
                    at,
                    subscribe: false,
                });
                self.admit(openid, new_follower, sent, AnswerOutcome::Admitted)
            }
        }
    }
}

impl SceneActor {
    /// Lets a scanner the scene accepts in: to `need_bind` if they have no phone bound,
    /// else a session is opened and the scene logs in. `outcome` says it in the reply's terms.
    /// A message sent before the scanner's last unfollow (see [`Sent`]) was overtaken by it:
    /// WeChat delivered the unsubscribe first, and it lets nobody in.
    fn admit<T: 'static>(
        &mut self,
        openid: OpenId,
        new_follower: bool,
        sent: Option<Sent>,
        outcome: fn(Admitted) -> T,
    ) -> ActorResponse<Self, Option<Result<T, SceneError>>> {
        if let Err(e) = self.machine.check_admit(&openid) {
            return ActorResponse::reply(Some(Err(e)));
        }
        // The scene is busy from the first read: the store may answer after a round trip, and
        // no other scan or bind may move the scene meanwhile.
        self.busy = true;
        let store = self.services.store.clone();
        let opener = self.session_opener();
        let client_ip = self.origin.ip();
        let scanner = openid.clone();
        let lookup = async move {
            // Three reads at once: each is a round trip of its own, and they are independent.
            let (unfollowed, binding, follow_generation) = tokio::try_join!(
                store.unfollowed_at(&scanner),
                store.binding(&scanner),
                store.follow_generation(&scanner),
            )?;
            if let (Some(sent), Some(unfollowed)) = (sent, unfollowed) {
                if sent.overtaken_by(unfollowed) {
                    return Err(SceneError::Unfollowed);
                }
            }
            Ok(match binding {
                None => Found::Unbound { follow_generation },
                Some(binding) => {
                    let login = Login {
                        binding,
                        method: LoginMethod::Scan,
                        client_ip,
                    };
                    Found::LoggedIn(opener.open(login).await?)
                }
            })
        };
        after_write(lookup.into_actor(self).map(move |found, scene, _| {
            let admitted = match found? {
                Found::Unbound { follow_generation } => {
                    scene
                        .machine
                        .await_bind(openid, new_follower, follow_generation)?;
                    Admitted::NeedBind
                }
                Found::LoggedIn(deferred) => {
                    let mode = scene.machine.mode();
                    scene.machine.log_in_scanned(&openid, new_follower)?;
                    scene.login = deferred;
                    Admitted::LoggedIn(mode)
                }
            };
            scene.notify_waiters();
            Ok(outcome(admitted))
        }))
    }
}

/// What the store said of a scanner the scene accepts.
enum Found {
    /// No phone bound: they bind one, unless they unfollow before.
    Unbound { follow_generation: u64 },
    /// Bound: they log in, and their session is open (or, on PostgreSQL, opens with the
    /// change's commit: this is it).
    LoggedIn(Option<Login>),
}

#[cfg(test)]
mod tests {
    use super::Sent;

    #[test]
    fn a_followers_message_in_the_second_of_an_unfollow_came_before_it_and_a_subscribe_after() {
        let scan = |at| Sent {
            at,
            subscribe: false,
        };
        let subscribe = |at| Sent {
            at,
            subscribe: true,
        };
        assert!(scan(99).overtaken_by(100));
        assert!(scan(100).overtaken_by(100));
        assert!(!scan(101).overtaken_by(100));
        assert!(subscribe(99).overtaken_by(100));
        assert!(!subscribe(100).overtaken_by(100));
    }
}
