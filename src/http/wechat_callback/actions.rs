//! What each pushed message does: a QR scan or a login code scans a scene, a number answers
//! a confirmation request, an unfollow unbinds, a follow in code mode is told how to log in.

use std::future::Future;

use wxlogin_actors::{
    Admitted, Answer, AnswerOutcome, FindScene, LoginCode, Scan, ScanByCode, ScanOutcome,
    SceneError, SceneId, SceneLookup,
};
use wxlogin_storage::OpenId;

use super::replies::Outcome;
use crate::audit::{self, LoginPath, Unbinder};
use crate::error::ApiError;
use crate::http::rate_limit::{self, Refused};
use crate::http::AppState;
use crate::wechat::envelope::EnvelopeError;
use crate::wechat::message::{Inbound, Message, MessageError};

/// The `type` label of a push in the metrics.
pub fn kind(message: &Message) -> &'static str {
    match message.inbound() {
        Inbound::QrScan {
            subscribed: true, ..
        } => "subscribe",
        Inbound::QrScan {
            subscribed: false, ..
        } => "scan",
        Inbound::Follow => "follow",
        Inbound::Unsubscribe => "unsubscribe",
        Inbound::Text(_) => "text",
        Inbound::Other => "other",
    }
}

/// Acts on one message.
pub async fn act(state: &AppState, message: &Message) -> Result<Outcome, ApiError> {
    let follows = matches!(
        message.inbound(),
        Inbound::QrScan {
            subscribed: true,
            ..
        } | Inbound::Follow
    );
    // Remembered in WeChat's clock, so a late unsubscribe is told from a current one.
    if let (true, Ok(openid), Some(at)) = (follows, sender(message), message.created_at()) {
        state.store.record_follow(&openid, at).await?;
    }
    match message.inbound() {
        Inbound::QrScan {
            scene_key,
            subscribed,
        } => {
            // A scene key that isn't shaped like ours belongs to some other QR code of the account.
            let Some(scene) = state.scene_keys.scene(scene_key) else {
                return Ok(Outcome::NotOurs);
            };
            let openid = sender(message)?;
            within_scan_budget(
                state,
                &openid,
                qr_scan(
                    state,
                    scene,
                    openid.clone(),
                    subscribed,
                    message.created_at(),
                ),
            )
            .await
        }
        Inbound::Text(text) => {
            let text = ascii_digits(text.trim());
            text_message(state, sender(message)?, &text, message.created_at()).await
        }
        Inbound::Follow if codes_served(state) => Ok(Outcome::HowTo { followed: true }),
        Inbound::Unsubscribe => {
            let openid = sender(message)?;
            let at = message
                .created_at()
                .ok_or_else(|| bad_field("CreateTime"))?;
            // Before the unbind: once it is done, WeChat's retry of a push that failed after
            // it finds nothing to unbind and would not come here. A late unfollow (older than
            // a newer follow) forgets codes it need not: they live a minute.
            state.forget_authorization_codes(&openid).await?;
            if !state.store.unfollow(&openid, at).await? {
                return Ok(Outcome::NothingToUnbind);
            }
            state.metrics.unbind();
            audit::unbind(&openid, Unbinder::User);
            Ok(Outcome::Unbound)
        }
        Inbound::Follow | Inbound::Other => Ok(Outcome::NotOurs),
    }
}

async fn qr_scan(
    state: &AppState,
    scene: SceneId,
    openid: OpenId,
    subscribed: bool,
    sent_at: Option<u64>,
) -> Result<Outcome, ApiError> {
    let SceneLookup::Live(scene) = state.scenes.send(FindScene(scene)).await?? else {
        return Ok(Outcome::Expired);
    };
    let scan = Scan {
        openid: openid.clone(),
        new_follower: subscribed,
        sent_at,
    };
    let Ok(scanned) = scene.send(scan).await else {
        return Ok(Outcome::Expired);
    };
    if scanned.is_ok() {
        state.unionids.after_scan(&openid);
    }
    match scanned {
        Ok(outcome) => Ok(scanned_outcome(state, &openid, outcome)),
        Err(SceneError::AlreadyScanned) => Ok(Outcome::AlreadyScanned),
        Err(SceneError::Unfollowed) => Ok(Outcome::Overtaken),
        Err(e) => Err(e.into()),
    }
}

/// Runs `scan` on the scanner's hourly budget of scenes: once it is spent, nothing is
/// scanned (so nothing logs in) and the user is told to wait; a scan that took no scene
/// (expired, already scanned, an unknown code) gives its token back.
async fn within_scan_budget(
    state: &AppState,
    openid: &OpenId,
    scan: impl Future<Output = Result<Outcome, ApiError>>,
) -> Result<Outcome, ApiError> {
    let taken = rate_limit::acquire_all(&[(&state.limits.scans_per_user, openid.as_str())]).await;
    let taken = match taken {
        Ok(taken) => taken,
        Err(Refused::Wait(retry_after)) => return Ok(Outcome::TooManyScans { retry_after }),
        Err(unchecked) => return Err(unchecked.into()),
    };
    let outcome = scan.await;
    if !outcome.as_ref().is_ok_and(Outcome::took_a_scene) {
        taken.give_back().await;
    }
    outcome
}

/// A text is the answer to the sender's pending confirmation request, else (in code mode)
/// a login code.
async fn text_message(
    state: &AppState,
    openid: OpenId,
    text: &str,
    sent_at: Option<u64>,
) -> Result<Outcome, ApiError> {
    if let Some(number) = confirmation_answer(text) {
        let answer = Answer {
            openid: openid.clone(),
            number,
            sent_at,
        };
        match state.scenes.send(answer).await? {
            Some(Ok(AnswerOutcome::Admitted(admitted))) => {
                state.metrics.confirmation("accepted");
                return Ok(admitted_outcome(state, &openid, admitted));
            }
            Some(Ok(AnswerOutcome::Denied)) => {
                state.metrics.confirmation("denied");
                return Ok(Outcome::Denied);
            }
            // Being admitted already (WeChat's retry of the right answer): nothing to add.
            Some(Err(SceneError::NotAwaitingConfirmation)) => return Ok(Outcome::NotOurs),
            Some(Err(SceneError::Unfollowed)) => return Ok(Outcome::Overtaken),
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    if !codes_served(state) {
        return Ok(Outcome::NotOurs);
    }
    let Some(code) = LoginCode::parse(text) else {
        return Ok(Outcome::HowTo { followed: false });
    };
    within_scan_budget(state, &openid, code_scan(state, &openid, code, sent_at)).await
}

/// A login code scans the scene that shows it; a code that scans nothing counts as a guess.
async fn code_scan(
    state: &AppState,
    openid: &OpenId,
    code: LoginCode,
    sent_at: Option<u64>,
) -> Result<Outcome, ApiError> {
    let guesses = &state.callback.guesses;
    let Some(guess) = guesses.guess(openid.as_str()).await? else {
        return Ok(Outcome::Throttled);
    };
    let scanned = state
        .scenes
        .send(ScanByCode {
            code,
            openid: openid.clone(),
            sent_at,
        })
        .await;
    // Err: a miss. A failure is not one: WeChat's retry tries the code again.
    let tried = match scanned {
        Ok(Some(Ok(outcome))) => {
            state.unionids.after_scan(openid);
            Ok(Ok(scanned_outcome(state, openid, outcome)))
        }
        Ok(Some(Err(SceneError::AlreadyScanned))) => Err(Outcome::CodeUsed),
        Ok(None) => Err(Outcome::CodeUnknown),
        Ok(Some(Err(SceneError::Unfollowed))) => Ok(Ok(Outcome::Overtaken)),
        Ok(Some(Err(e))) => Ok(Err(e.into())),
        Err(e) => Ok(Err(e.into())),
    };
    let rejected = match tried {
        Ok(answer) => {
            guesses.hit(openid.as_str(), guess).await;
            return answer;
        }
        Err(rejected) => rejected,
    };
    state.metrics.login_code_rejected();
    // Guesses in flight together are told by the count they leave, not by their place in it.
    // A count that cannot be read is told as not throttled: refusing the push would have
    // WeChat's retry count this miss again.
    let throttled = guesses
        .is_throttled(openid.as_str())
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the wrong-code count could not be read after a miss");
            false
        });
    if throttled {
        if guess.is_last() {
            state.metrics.openid_throttled();
            tracing::info!(user = %audit::Short(openid), "too many wrong login codes: ignoring this openid's codes for a while");
        }
        return Ok(Outcome::Throttled);
    }
    Ok(rejected)
}

/// Chinese input methods often type full-width digits (`８０５８８９`): read them as digits.
fn ascii_digits(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '０'..='９' => char::from(b'0' + (c as u32 - '０' as u32) as u8),
            c => c,
        })
        .collect()
}

/// One or two digits: what a user replies to a confirmation request (`0` refuses).
fn confirmation_answer(text: &str) -> Option<u8> {
    let short_number = (1..=2).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit());
    short_number.then(|| text.parse().ok()).flatten()
}

/// The account takes login codes (code mode, or auto mode, whose phones may ask for one),
/// so texts and follows may be logins.
fn codes_served(state: &AppState) -> bool {
    state.modes.codes_accepted()
}

fn scanned_outcome(state: &AppState, user: &OpenId, outcome: ScanOutcome) -> Outcome {
    match outcome {
        ScanOutcome::Admitted(admitted) => admitted_outcome(state, user, admitted),
        ScanOutcome::Confirm(origin) => Outcome::ConfirmAsked(origin),
    }
}

fn admitted_outcome(state: &AppState, user: &OpenId, admitted: Admitted) -> Outcome {
    match admitted {
        Admitted::LoggedIn(mode) => {
            state.logged_in(user, LoginPath::Scan, mode);
            Outcome::LoggedIn
        }
        Admitted::NeedBind => Outcome::NeedBind,
    }
}

fn sender(message: &Message) -> Result<OpenId, ApiError> {
    OpenId::parse(&message.from_user).ok_or_else(|| bad_field("FromUserName"))
}

fn bad_field(name: &'static str) -> ApiError {
    EnvelopeError::Message(MessageError::BadField(name)).into()
}

#[cfg(test)]
mod tests {
    use super::{ascii_digits, confirmation_answer};

    #[test]
    fn full_width_digits_read_as_digits() {
        assert_eq!(ascii_digits("８０５８８９"), "805889");
        assert_eq!(ascii_digits("４2 号"), "42 号");
    }

    #[test]
    fn answers_are_one_or_two_digits() {
        assert_eq!(confirmation_answer("0"), Some(0));
        assert_eq!(confirmation_answer("42"), Some(42));
        assert_eq!(confirmation_answer("07"), Some(7));
        for text in ["", "123", "4a", "-1", "+5", "１"] {
            assert_eq!(confirmation_answer(text), None, "{text}");
        }
    }
}
