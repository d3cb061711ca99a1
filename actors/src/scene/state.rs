//! One scene's state machine, free of actors and I/O so every transition is unit-tested.
//!
//! ```text
//! Waiting ──scan, bound──────────────► LoggedIn
//!    │                                   ▲
//!    └─scan, unbound─► NeedBind ─right code, bind─┘
//! any ──TTL──► Expired (terminal)
//! ```
//! New states (confirmation, text-code login) slot in as variants with their own transitions.

use std::time::{Duration, Instant};

use wxlogin_storage::{constant_time_eq, OpenId, Phone, SessionToken, StoreError};

/// How long after sending a code another may be sent for the same scene.
pub const CODE_COOLDOWN: Duration = Duration::from_secs(60);
/// Wrong codes a scene tolerates; after that it refuses every bind until it expires.
pub const MAX_WRONG_CODES: u8 = 5;

/// The public name of a scene's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Waiting,
    NeedBind,
    LoggedIn,
    Expired,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::NeedBind => "need_bind",
            Phase::LoggedIn => "logged_in",
            Phase::Expired => "expired",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Expired)
    }
}

/// What a status request sees.
#[derive(Clone, Debug)]
pub struct SceneStatus {
    pub phase: Phase,
    /// The scan came with a new follow (`subscribe`), not from an existing follower (`SCAN`).
    pub subscribed: bool,
    /// The scanning user has a phone bound.
    pub bound: bool,
    pub expires_at: Instant,
    /// Present only in [`Phase::LoggedIn`].
    pub token: Option<SessionToken>,
}

#[derive(Debug, thiserror::Error)]
pub enum SceneError {
    #[error("this QR code has already been scanned")]
    AlreadyScanned,
    #[error("the scene is not waiting for a phone binding")]
    NotAwaitingBind,
    #[error("a code was sent recently; try again later")]
    CodeCooldown { retry_after: Duration },
    #[error("the verification code is wrong")]
    InvalidCode,
    #[error("too many wrong codes; scan a new QR code")]
    TooManyAttempts,
    #[error("the phone is bound to another WeChat user")]
    PhoneTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct SentCode {
    phone: Phone,
    code: String,
    sent_at: Instant,
}

enum State {
    Waiting,
    NeedBind {
        openid: OpenId,
        sent: Option<SentCode>,
        wrong_codes: u8,
    },
    LoggedIn {
        token: SessionToken,
    },
    Expired,
}

pub struct SceneMachine {
    state: State,
    subscribed: bool,
}

impl Default for SceneMachine {
    fn default() -> Self {
        Self {
            state: State::Waiting,
            subscribed: false,
        }
    }
}

impl SceneMachine {
    pub fn phase(&self) -> Phase {
        match self.state {
            State::Waiting => Phase::Waiting,
            State::NeedBind { .. } => Phase::NeedBind,
            State::LoggedIn { .. } => Phase::LoggedIn,
            State::Expired => Phase::Expired,
        }
    }

    pub fn status(&self, expires_at: Instant) -> SceneStatus {
        let token = match &self.state {
            State::LoggedIn { token } => Some(token.clone()),
            _ => None,
        };
        SceneStatus {
            phase: self.phase(),
            subscribed: self.subscribed,
            bound: token.is_some(),
            expires_at,
            token,
        }
    }

    /// A scan is taken only while nobody has scanned yet: the first scanner owns the scene.
    pub fn check_scan(&self) -> Result<(), SceneError> {
        match self.state {
            State::Waiting => Ok(()),
            _ => Err(SceneError::AlreadyScanned),
        }
    }

    /// The scanner has no phone bound yet.
    pub fn await_bind(&mut self, openid: OpenId, subscribed: bool) -> Result<(), SceneError> {
        self.check_scan()?;
        self.subscribed = subscribed;
        self.state = State::NeedBind {
            openid,
            sent: None,
            wrong_codes: 0,
        };
        Ok(())
    }

    /// A bound scanner logs in at once.
    pub fn log_in_scanned(
        &mut self,
        subscribed: bool,
        token: SessionToken,
    ) -> Result<(), SceneError> {
        self.check_scan()?;
        self.subscribed = subscribed;
        self.state = State::LoggedIn { token };
        Ok(())
    }

    /// Records that `code` is on its way to `phone`.
    pub fn code_sent(
        &mut self,
        phone: Phone,
        code: String,
        now: Instant,
    ) -> Result<(), SceneError> {
        let State::NeedBind {
            sent, wrong_codes, ..
        } = &mut self.state
        else {
            return Err(SceneError::NotAwaitingBind);
        };
        if *wrong_codes >= MAX_WRONG_CODES {
            return Err(SceneError::TooManyAttempts);
        }
        if let Some(previous) = sent {
            let since = now.saturating_duration_since(previous.sent_at);
            if since < CODE_COOLDOWN {
                return Err(SceneError::CodeCooldown {
                    retry_after: CODE_COOLDOWN - since,
                });
            }
        }
        *sent = Some(SentCode {
            phone,
            code,
            sent_at: now,
        });
        Ok(())
    }

    /// Checks a code for `phone`. A right code is used up and yields the openid to bind;
    /// a wrong one counts towards [`MAX_WRONG_CODES`].
    pub fn verify_code(&mut self, phone: &Phone, code: &str) -> Result<OpenId, SceneError> {
        let State::NeedBind {
            openid,
            sent,
            wrong_codes,
        } = &mut self.state
        else {
            return Err(SceneError::NotAwaitingBind);
        };
        if *wrong_codes >= MAX_WRONG_CODES {
            return Err(SceneError::TooManyAttempts);
        }
        let right = sent.as_ref().is_some_and(|s| {
            s.phone == *phone && constant_time_eq(s.code.as_bytes(), code.as_bytes())
        });
        if !right {
            *wrong_codes += 1;
            return Err(SceneError::InvalidCode);
        }
        *sent = None;
        Ok(openid.clone())
    }

    /// The phone is bound and a session opened: the bind path's login.
    pub fn log_in_bound(&mut self, token: SessionToken) -> Result<(), SceneError> {
        match self.state {
            State::NeedBind { .. } => {
                self.state = State::LoggedIn { token };
                Ok(())
            }
            _ => Err(SceneError::NotAwaitingBind),
        }
    }

    pub fn expire(&mut self) {
        self.state = State::Expired;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> OpenId {
        OpenId::parse("alice").unwrap()
    }

    fn phone() -> Phone {
        Phone::parse("13800000001").unwrap()
    }

    fn need_bind() -> SceneMachine {
        let mut scene = SceneMachine::default();
        scene.await_bind(alice(), true).unwrap();
        scene
    }

    #[test]
    fn a_bound_scan_logs_in_and_carries_the_token() {
        let mut scene = SceneMachine::default();
        let token = SessionToken::generate();
        scene.log_in_scanned(false, token.clone()).unwrap();
        let status = scene.status(Instant::now());
        assert_eq!(status.phase, Phase::LoggedIn);
        assert!(status.bound && !status.subscribed);
        assert_eq!(status.token, Some(token));
    }

    #[test]
    fn only_the_first_scan_counts() {
        let mut scene = need_bind();
        assert_eq!(scene.status(Instant::now()).phase, Phase::NeedBind);
        assert!(scene.status(Instant::now()).subscribed);
        let bob = OpenId::parse("bob").unwrap();
        assert!(matches!(
            scene.await_bind(bob, false),
            Err(SceneError::AlreadyScanned)
        ));
        assert!(matches!(
            scene.log_in_scanned(false, SessionToken::generate()),
            Err(SceneError::AlreadyScanned)
        ));
    }

    #[test]
    fn codes_need_need_bind() {
        let mut scene = SceneMachine::default();
        let now = Instant::now();
        assert!(matches!(
            scene.code_sent(phone(), "123456".into(), now),
            Err(SceneError::NotAwaitingBind)
        ));
        assert!(matches!(
            scene.verify_code(&phone(), "123456"),
            Err(SceneError::NotAwaitingBind)
        ));
    }

    #[test]
    fn the_right_code_for_the_right_phone_binds_once() {
        let mut scene = need_bind();
        scene
            .code_sent(phone(), "123456".into(), Instant::now())
            .unwrap();
        let other = Phone::parse("13800000002").unwrap();
        assert!(matches!(
            scene.verify_code(&other, "123456"),
            Err(SceneError::InvalidCode)
        ));
        assert_eq!(scene.verify_code(&phone(), "123456").unwrap(), alice());
        // Used up: the same code does not work twice.
        assert!(matches!(
            scene.verify_code(&phone(), "123456"),
            Err(SceneError::InvalidCode)
        ));
        scene.log_in_bound(SessionToken::generate()).unwrap();
        assert_eq!(scene.phase(), Phase::LoggedIn);
    }

    #[test]
    fn cooldown_between_codes() {
        let mut scene = need_bind();
        let t0 = Instant::now();
        scene.code_sent(phone(), "111111".into(), t0).unwrap();
        let err = scene.code_sent(phone(), "222222".into(), t0 + Duration::from_secs(20));
        assert!(
            matches!(err, Err(SceneError::CodeCooldown { retry_after }) if retry_after == Duration::from_secs(40))
        );
        scene
            .code_sent(phone(), "333333".into(), t0 + CODE_COOLDOWN)
            .unwrap();
        assert!(scene.verify_code(&phone(), "111111").is_err());
        assert!(scene.verify_code(&phone(), "333333").is_ok());
    }

    #[test]
    fn too_many_wrong_codes_lock_the_scene() {
        let mut scene = need_bind();
        scene
            .code_sent(phone(), "123456".into(), Instant::now())
            .unwrap();
        for _ in 0..MAX_WRONG_CODES {
            assert!(matches!(
                scene.verify_code(&phone(), "000000"),
                Err(SceneError::InvalidCode)
            ));
        }
        assert!(matches!(
            scene.verify_code(&phone(), "123456"),
            Err(SceneError::TooManyAttempts)
        ));
        let later = Instant::now() + CODE_COOLDOWN;
        assert!(matches!(
            scene.code_sent(phone(), "1".into(), later),
            Err(SceneError::TooManyAttempts)
        ));
    }

    #[test]
    fn expired_is_terminal() {
        let mut scene = need_bind();
        scene.expire();
        assert!(scene.phase().is_terminal());
        assert!(scene.check_scan().is_err());
        assert!(scene.log_in_bound(SessionToken::generate()).is_err());
        assert!(scene
            .code_sent(phone(), "1".into(), Instant::now())
            .is_err());
        assert_eq!(scene.status(Instant::now()).token, None);
    }
}
