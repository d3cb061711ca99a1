//! One scene's state machine, free of actors and I/O so every transition is unit-tested.
//!
//! ```text
//!              ┌─confirmation off─► (admit) ──bound──► LoggedIn
//! Waiting ─scan┤                      │                  ▲
//!              │                      └─unbound─► NeedBind ─right SMS code, bind─┘
//!              └─confirmation on──► Confirm ─right number from the scanner─► (admit)
//!                                      └─0 or a wrong number from the scanner─► Denied
//! any live state ──TTL──► Expired
//! ```
//! `Denied` and `Expired` are terminal: nothing moves a scene out of them. A scan is the QR
//! event or, in code mode, the text message carrying the scene's login code; both arrive here
//! the same way.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wxlogin_storage::{constant_time_eq, OpenId, StoreError};

use crate::wall_clock;

/// How long after sending a code another may be sent for the same scene.
pub const CODE_COOLDOWN: Duration = Duration::from_secs(60);
/// Wrong codes a scene tolerates; after that it refuses every bind until it expires.
pub const MAX_WRONG_CODES: u8 = 5;

/// The public name of a scene's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Waiting,
    /// Scanned; waiting for the scanner to reply with the number the browser shows.
    Confirm,
    NeedBind,
    LoggedIn,
    /// The scanner refused the login (or answered the wrong number).
    Denied,
    Expired,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Confirm => "confirm",
            Phase::NeedBind => "need_bind",
            Phase::LoggedIn => "logged_in",
            Phase::Denied => "denied",
            Phase::Expired => "expired",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Denied | Phase::Expired)
    }

    /// Nothing but the TTL can move a scene out of this state, so a waiter is answered at once.
    pub fn is_settled(self) -> bool {
        self == Phase::LoggedIn || self.is_terminal()
    }
}

/// How the browser's user starts the login: scanning a parametric QR code, or sending the
/// account a short code from the page (for accounts WeChat won't make such QR codes for).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoginMode {
    QrCode,
    Code,
}

impl LoginMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LoginMode::QrCode => "qrcode",
            LoginMode::Code => "code",
        }
    }
}

/// What a status request sees.
#[derive(Clone, Debug)]
pub struct SceneStatus {
    pub phase: Phase,
    pub mode: LoginMode,
    /// Someone scanned: a scanner always follows the account (a `SCAN`, a `subscribe`, or a
    /// login code sent by text, which only followers can send).
    pub subscribed: bool,
    /// The scan made them follow (`subscribe`), rather than coming from a follower (`SCAN`).
    pub new_follower: bool,
    /// The scanning user has a phone bound (and is logged in: the browser derives the session
    /// token from the scene's secret).
    pub bound: bool,
    pub expires_at: Instant,
    /// Present only in [`Phase::Confirm`]: the number the browser shows and the scanner replies.
    pub confirm_number: Option<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SceneError {
    #[error("this QR code has already been scanned")]
    AlreadyScanned,
    #[error("the scene is not waiting for a phone binding")]
    NotAwaitingBind,
    #[error("the scene is not waiting for this user's confirmation")]
    NotAwaitingConfirmation,
    #[error("a code was sent recently; try again later")]
    CodeCooldown { retry_after: Duration },
    #[error("the verification code is wrong")]
    InvalidCode,
    #[error("too many wrong codes; scan a new QR code")]
    TooManyAttempts,
    #[error("the phone is bound to another WeChat user")]
    PhoneTaken,
    #[error("the WeChat user unfollowed the account after scanning")]
    Unfollowed,
    #[error("no login code is free; try again in a moment")]
    NoFreeLoginCode,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The scanner's reply to a confirmation request.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The right number: admit the scanner (see [`SceneMachine::await_bind`] and
    /// [`SceneMachine::log_in_scanned`]).
    Accepted { openid: OpenId, new_follower: bool },
    /// `0` or a wrong number: the scene is now [`Phase::Denied`].
    Denied,
}

/// What a scene keeps of a verification code: a digest of the phone and the code, keyed by the
/// scene's secret (which only its browser has), so neither can be read or tried from a row.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeDigest(pub [u8; 32]);

#[derive(Serialize, Deserialize)]
struct SentCode {
    code: CodeDigest,
    /// Exported as wall-clock time: another node reads it against its own clock.
    #[serde(with = "wall_clock")]
    sent_at: Instant,
}

/// The states that carry data are boxed: most pending scenes are `Waiting`, and each would
/// otherwise hold the largest state inline.
#[derive(Serialize, Deserialize)]
enum State {
    Waiting,
    Confirm(Box<Confirming>),
    NeedBind(Box<AwaitingBind>),
    LoggedIn,
    Denied,
    Expired,
}

#[derive(Serialize, Deserialize)]
struct Confirming {
    openid: OpenId,
    number: u8,
    /// The right number came back; the scanner is being admitted.
    confirmed: bool,
}

#[derive(Serialize, Deserialize)]
struct AwaitingBind {
    openid: OpenId,
    /// [`wxlogin_storage::Store::follow_generation`] when they scanned: an unfollow since
    /// makes the bind fail.
    follow_generation: u64,
    sent: Option<SentCode>,
    /// The right code a bind in flight took: given back if storage could not take the bind.
    spending: Option<SentCode>,
    wrong_codes: u8,
}

/// Serialisable whole: on PostgreSQL a scene's row holds it, so any node can take the scene up.
#[derive(Serialize, Deserialize)]
pub struct SceneMachine {
    state: State,
    mode: LoginMode,
    /// A scan must be confirmed by the scanner replying with the browser's number.
    confirm: bool,
    /// Someone scanned, whatever happened since (see [`SceneStatus::subscribed`]).
    scanned: bool,
    new_follower: bool,
}

impl SceneMachine {
    pub fn new(mode: LoginMode, confirm: bool) -> Self {
        Self {
            state: State::Waiting,
            mode,
            confirm,
            scanned: false,
            new_follower: false,
        }
    }

    pub fn phase(&self) -> Phase {
        match self.state {
            State::Waiting => Phase::Waiting,
            State::Confirm(_) => Phase::Confirm,
            State::NeedBind(_) => Phase::NeedBind,
            State::LoggedIn => Phase::LoggedIn,
            State::Denied => Phase::Denied,
            State::Expired => Phase::Expired,
        }
    }

    pub fn mode(&self) -> LoginMode {
        self.mode
    }

    pub fn status(&self, expires_at: Instant) -> SceneStatus {
        let confirm_number = match &self.state {
            State::Confirm(confirming) => Some(confirming.number),
            _ => None,
        };
        SceneStatus {
            phase: self.phase(),
            mode: self.mode,
            subscribed: self.scanned,
            new_follower: self.new_follower,
            bound: matches!(self.state, State::LoggedIn),
            expires_at,
            confirm_number,
        }
    }

    /// The scanner whose confirmation this scene waits for.
    pub fn confirming(&self) -> Option<&OpenId> {
        match &self.state {
            State::Confirm(confirming) => Some(&confirming.openid),
            _ => None,
        }
    }

    /// The scanner this scene waits to bind a phone for.
    pub fn binding(&self) -> Option<&OpenId> {
        match &self.state {
            State::NeedBind(binding) => Some(&binding.openid),
            _ => None,
        }
    }

    /// The next scan needs no confirmation: it comes from the browser's own device. Only
    /// while nobody has scanned, so a confirmation already asked is still awaited.
    pub fn waive_confirmation(&mut self) {
        if matches!(self.state, State::Waiting) {
            self.confirm = false;
        }
    }

    /// Whether a scan must be confirmed before the scanner is admitted.
    pub fn needs_confirmation(&self) -> bool {
        self.confirm
    }

    /// A scan is taken only while nobody has scanned yet: the first scanner owns the scene.
    pub fn check_scan(&self) -> Result<(), SceneError> {
        match self.state {
            State::Waiting => Ok(()),
            _ => Err(SceneError::AlreadyScanned),
        }
    }

    /// Confirmation is on: the scanner must reply with `number`, which the browser shows.
    pub fn ask_confirmation(
        &mut self,
        openid: OpenId,
        new_follower: bool,
        number: u8,
    ) -> Result<(), SceneError> {
        self.check_scan()?;
        if !self.confirm {
            return Err(SceneError::NotAwaitingConfirmation);
        }
        self.scanned = true;
        self.new_follower = new_follower;
        self.state = State::Confirm(Box::new(Confirming {
            openid,
            number,
            confirmed: false,
        }));
        Ok(())
    }

    /// `openid` replied `number` to the confirmation request. Only the scanner's replies count.
    pub fn answer(&mut self, openid: &OpenId, number: u8) -> Result<Answer, SceneError> {
        let State::Confirm(confirming) = &mut self.state else {
            return Err(SceneError::NotAwaitingConfirmation);
        };
        if confirming.openid != *openid {
            return Err(SceneError::NotAwaitingConfirmation);
        }
        if number != confirming.number || number == 0 {
            self.state = State::Denied;
            return Ok(Answer::Denied);
        }
        confirming.confirmed = true;
        Ok(Answer::Accepted {
            openid: confirming.openid.clone(),
            new_follower: self.new_follower,
        })
    }

    /// May `openid` be let in now: a first scan without confirmation, or the confirmed scanner.
    pub fn check_admit(&self, openid: &OpenId) -> Result<(), SceneError> {
        match &self.state {
            State::Waiting if !self.confirm => Ok(()),
            State::Waiting => Err(SceneError::NotAwaitingConfirmation),
            State::Confirm(confirming) if confirming.confirmed && confirming.openid == *openid => {
                Ok(())
            }
            State::Confirm(_) => Err(SceneError::NotAwaitingConfirmation),
            _ => Err(SceneError::AlreadyScanned),
        }
    }

    /// The admitted scanner has no phone bound yet.
    pub fn await_bind(
        &mut self,
        openid: OpenId,
        new_follower: bool,
        follow_generation: u64,
    ) -> Result<(), SceneError> {
        self.check_admit(&openid)?;
        self.scanned = true;
        self.new_follower = new_follower;
        self.state = State::NeedBind(Box::new(AwaitingBind {
            openid,
            follow_generation,
            sent: None,
            spending: None,
            wrong_codes: 0,
        }));
        Ok(())
    }

    /// An admitted scanner with a phone bound logs in at once.
    pub fn log_in_scanned(
        &mut self,
        openid: &OpenId,
        new_follower: bool,
    ) -> Result<(), SceneError> {
        self.check_admit(openid)?;
        self.scanned = true;
        self.new_follower = new_follower;
        self.state = State::LoggedIn;
        Ok(())
    }

    /// Records that the code of digest `code` is on its way to the phone it names.
    pub fn code_sent(&mut self, code: CodeDigest, now: Instant) -> Result<(), SceneError> {
        let State::NeedBind(binding) = &mut self.state else {
            return Err(SceneError::NotAwaitingBind);
        };
        if binding.wrong_codes >= MAX_WRONG_CODES {
            return Err(SceneError::TooManyAttempts);
        }
        if let Some(previous) = &binding.sent {
            let since = now.saturating_duration_since(previous.sent_at);
            if since < CODE_COOLDOWN {
                return Err(SceneError::CodeCooldown {
                    retry_after: CODE_COOLDOWN - since,
                });
            }
        }
        binding.sent = Some(SentCode { code, sent_at: now });
        Ok(())
    }

    /// Checks a code (for a phone: the digest names both). A right code is used up and yields
    /// the openid to bind, with their follow generation at the scan; a wrong one counts towards
    /// [`MAX_WRONG_CODES`].
    pub fn verify_code(&mut self, code: &CodeDigest) -> Result<(OpenId, u64), SceneError> {
        let State::NeedBind(binding) = &mut self.state else {
            return Err(SceneError::NotAwaitingBind);
        };
        if binding.wrong_codes >= MAX_WRONG_CODES {
            return Err(SceneError::TooManyAttempts);
        }
        let right = binding
            .sent
            .as_ref()
            .is_some_and(|sent| constant_time_eq(&sent.code.0, &code.0));
        if !right {
            binding.wrong_codes += 1;
            return Err(SceneError::InvalidCode);
        }
        binding.spending = binding.sent.take();
        Ok((binding.openid.clone(), binding.follow_generation))
    }

    /// The bind the right code was verified for could not be stored (the database was
    /// unavailable, answered 503): the code is the browser's again, so its retry works; the
    /// phone got no new text, and the cooldown would refuse one for a minute.
    pub fn give_back_code(&mut self) {
        if let State::NeedBind(binding) = &mut self.state {
            if let Some(code) = binding.spending.take() {
                binding.sent = Some(code);
            }
        }
    }

    /// The phone is bound and a session opened: the bind path's login.
    pub fn log_in_bound(&mut self) -> Result<(), SceneError> {
        match self.state {
            State::NeedBind(_) => {
                self.state = State::LoggedIn;
                Ok(())
            }
            _ => Err(SceneError::NotAwaitingBind),
        }
    }

    /// Everything the machine holds, for a scene's row ([`SceneMachine::import`] reads it).
    pub fn export(&self) -> Result<Vec<u8>, SceneError> {
        Ok(postcard::to_allocvec(self).map_err(StoreError::from)?)
    }

    pub fn import(exported: &[u8]) -> Result<Self, SceneError> {
        Ok(postcard::from_bytes(exported).map_err(StoreError::from)?)
    }

    /// The TTL ran out. A terminal state stays as it is.
    pub fn expire(&mut self) {
        if !self.phase().is_terminal() {
            self.state = State::Expired;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wxlogin_storage::Phone;

    fn alice() -> OpenId {
        OpenId::parse("alice").unwrap()
    }

    fn bob() -> OpenId {
        OpenId::parse("bob").unwrap()
    }

    fn phone() -> Phone {
        Phone::parse("13800000001").unwrap()
    }

    /// A code's digest as the HTTP layer makes it, without its key: the machine only compares.
    fn code(phone: &Phone, code: &str) -> CodeDigest {
        use sha2::{Digest, Sha256};
        CodeDigest(Sha256::digest(format!("{}:{code}", phone.as_str())).into())
    }

    fn plain() -> SceneMachine {
        SceneMachine::new(LoginMode::QrCode, false)
    }

    fn confirming() -> SceneMachine {
        let mut scene = SceneMachine::new(LoginMode::Code, true);
        scene.ask_confirmation(alice(), true, 42).unwrap();
        scene
    }

    fn need_bind() -> SceneMachine {
        let mut scene = plain();
        scene.await_bind(alice(), true, 0).unwrap();
        scene
    }

    /// Exported and imported again, as another node takes the scene up from its row.
    fn moved(scene: &SceneMachine) -> SceneMachine {
        SceneMachine::import(&scene.export().unwrap()).unwrap()
    }

    #[test]
    fn an_imported_machine_goes_on_from_where_the_exported_one_was() {
        // Waiting, its confirmation setting and mode kept.
        let waiting = moved(&SceneMachine::new(LoginMode::Code, true));
        assert_eq!(waiting.phase(), Phase::Waiting);
        assert_eq!(waiting.mode(), LoginMode::Code);
        assert!(waiting.needs_confirmation());

        // Confirm: the same scanner and number; only they, with it, are let in.
        let mut asked = moved(&confirming());
        assert_eq!(asked.status(Instant::now()).confirm_number, Some(42));
        assert_eq!(asked.confirming(), Some(&alice()));
        assert!(asked.answer(&bob(), 42).is_err());
        let mut accepted = moved(&asked);
        assert!(matches!(
            accepted.answer(&alice(), 42).unwrap(),
            Answer::Accepted {
                new_follower: true,
                ..
            }
        ));
        let admitted = moved(&accepted);
        admitted.check_admit(&alice()).unwrap();
        assert!(admitted.check_admit(&bob()).is_err());

        // NeedBind: the sent code, its cooldown and the wrong-code count carry over.
        let mut binding = need_bind();
        let now = Instant::now();
        binding.code_sent(code(&phone(), "123456"), now).unwrap();
        assert!(binding.verify_code(&code(&phone(), "000000")).is_err());
        let mut binding = moved(&binding);
        assert_eq!(binding.binding(), Some(&alice()));
        assert!(matches!(
            binding.code_sent(code(&phone(), "654321"), now + Duration::from_secs(1)),
            Err(SceneError::CodeCooldown { .. })
        ));
        for _ in 1..MAX_WRONG_CODES - 1 {
            assert!(binding.verify_code(&code(&phone(), "000000")).is_err());
        }
        let mut binding = moved(&binding);
        assert_eq!(
            binding.verify_code(&code(&phone(), "123456")).unwrap(),
            (alice(), 0)
        );
        binding.log_in_bound().unwrap();

        // LoggedIn, and how they came.
        let status = moved(&binding).status(Instant::now());
        assert_eq!(status.phase, Phase::LoggedIn);
        assert!(status.bound && status.subscribed && status.new_follower);

        // Terminal states stay terminal.
        let mut denied = confirming();
        denied.answer(&alice(), 0).unwrap();
        assert_eq!(moved(&denied).phase(), Phase::Denied);
        let mut expired = plain();
        expired.expire();
        assert_eq!(moved(&expired).phase(), Phase::Expired);
    }

    #[test]
    fn a_wrong_code_count_at_its_limit_survives_the_move() {
        let mut binding = need_bind();
        binding
            .code_sent(code(&phone(), "123456"), Instant::now())
            .unwrap();
        for _ in 0..MAX_WRONG_CODES {
            assert!(binding.verify_code(&code(&phone(), "000000")).is_err());
        }
        let mut binding = moved(&binding);
        assert!(matches!(
            binding.verify_code(&code(&phone(), "123456")),
            Err(SceneError::TooManyAttempts)
        ));
    }

    #[test]
    fn garbage_is_no_machine() {
        assert!(SceneMachine::import(&[0xff; 3]).is_err());
    }

    #[test]
    fn a_bound_scan_logs_in() {
        let mut scene = plain();
        scene.log_in_scanned(&alice(), false).unwrap();
        let status = scene.status(Instant::now());
        assert_eq!(status.phase, Phase::LoggedIn);
        // A follower's scan: they follow the account, and did before.
        assert!(status.bound && status.subscribed && !status.new_follower);
    }

    #[test]
    fn an_export_holds_neither_the_code_nor_the_phone() {
        let mut scene = need_bind();
        let sent = code(&phone(), "123456");
        scene.code_sent(sent, Instant::now()).unwrap();
        let exported = scene.export().unwrap();
        let holds = |needle: &[u8]| exported.windows(needle.len()).any(|w| w == needle);
        assert!(!holds(b"123456") && !holds(b"13800000001"));
        assert!(holds(&sent.0), "the digest is what it keeps");
    }

    #[test]
    fn subscribed_is_set_by_every_scan_and_kept_to_the_end() {
        assert!(!plain().status(Instant::now()).subscribed);
        let mut scene = confirming();
        assert!(scene.status(Instant::now()).subscribed);
        scene.answer(&alice(), 0).unwrap();
        let status = scene.status(Instant::now());
        assert_eq!(status.phase, Phase::Denied);
        assert!(status.subscribed && status.new_follower);
        let mut scene = plain();
        scene.await_bind(alice(), false, 0).unwrap();
        scene.expire();
        let status = scene.status(Instant::now());
        assert!(status.subscribed && !status.new_follower);
    }

    #[test]
    fn only_logged_in_and_terminal_states_are_settled() {
        let settled: Vec<_> = [
            Phase::Waiting,
            Phase::Confirm,
            Phase::NeedBind,
            Phase::LoggedIn,
            Phase::Denied,
            Phase::Expired,
        ]
        .into_iter()
        .filter(|phase| phase.is_settled())
        .collect();
        assert_eq!(settled, [Phase::LoggedIn, Phase::Denied, Phase::Expired]);
    }

    #[test]
    fn only_the_first_scan_counts() {
        let mut scene = need_bind();
        assert_eq!(scene.status(Instant::now()).phase, Phase::NeedBind);
        assert!(scene.status(Instant::now()).new_follower);
        assert!(matches!(
            scene.await_bind(bob(), false, 0),
            Err(SceneError::AlreadyScanned)
        ));
        assert!(matches!(
            scene.log_in_scanned(&alice(), false),
            Err(SceneError::AlreadyScanned)
        ));
    }

    #[test]
    fn codes_need_need_bind() {
        let mut scene = plain();
        let now = Instant::now();
        assert_eq!(scene.binding(), None);
        assert_eq!(need_bind().binding(), Some(&alice()));
        assert!(matches!(
            scene.code_sent(code(&phone(), "123456"), now),
            Err(SceneError::NotAwaitingBind)
        ));
        assert!(matches!(
            scene.verify_code(&code(&phone(), "123456")),
            Err(SceneError::NotAwaitingBind)
        ));
    }

    #[test]
    fn the_right_code_for_the_right_phone_binds_once() {
        let mut scene = need_bind();
        scene
            .code_sent(code(&phone(), "123456"), Instant::now())
            .unwrap();
        let other = Phone::parse("13800000002").unwrap();
        assert!(matches!(
            scene.verify_code(&code(&other, "123456")),
            Err(SceneError::InvalidCode)
        ));
        assert_eq!(
            scene.verify_code(&code(&phone(), "123456")).unwrap(),
            (alice(), 0)
        );
        // Used up: the same code does not work twice.
        assert!(matches!(
            scene.verify_code(&code(&phone(), "123456")),
            Err(SceneError::InvalidCode)
        ));
        // Given back (the bind could not be stored), it works once more, and only once.
        scene.give_back_code();
        assert_eq!(
            scene.verify_code(&code(&phone(), "123456")).unwrap(),
            (alice(), 0)
        );
        assert!(matches!(
            scene.verify_code(&code(&phone(), "123456")),
            Err(SceneError::InvalidCode)
        ));
        scene.log_in_bound().unwrap();
        assert_eq!(scene.phase(), Phase::LoggedIn);
        assert_eq!(scene.binding(), None, "nobody's codes to spend any more");
        scene.give_back_code();
        assert_eq!(scene.phase(), Phase::LoggedIn);
    }

    #[test]
    fn cooldown_between_codes() {
        let mut scene = need_bind();
        let t0 = Instant::now();
        scene.code_sent(code(&phone(), "111111"), t0).unwrap();
        let err = scene.code_sent(code(&phone(), "222222"), t0 + Duration::from_secs(20));
        assert!(
            matches!(err, Err(SceneError::CodeCooldown { retry_after }) if retry_after == Duration::from_secs(40))
        );
        scene
            .code_sent(code(&phone(), "333333"), t0 + CODE_COOLDOWN)
            .unwrap();
        assert!(scene.verify_code(&code(&phone(), "111111")).is_err());
        assert!(scene.verify_code(&code(&phone(), "333333")).is_ok());
    }

    #[test]
    fn too_many_wrong_codes_lock_the_scene() {
        let mut scene = need_bind();
        scene
            .code_sent(code(&phone(), "123456"), Instant::now())
            .unwrap();
        for _ in 0..MAX_WRONG_CODES {
            assert!(matches!(
                scene.verify_code(&code(&phone(), "000000")),
                Err(SceneError::InvalidCode)
            ));
        }
        assert!(matches!(
            scene.verify_code(&code(&phone(), "123456")),
            Err(SceneError::TooManyAttempts)
        ));
        let later = Instant::now() + CODE_COOLDOWN;
        assert!(matches!(
            scene.code_sent(code(&phone(), "1"), later),
            Err(SceneError::TooManyAttempts)
        ));
    }

    #[test]
    fn with_confirmation_a_scan_waits_for_the_number() {
        let mut scene = SceneMachine::new(LoginMode::QrCode, true);
        assert!(scene.needs_confirmation());
        // Admitting straight from a scan would skip the confirmation.
        assert!(matches!(
            scene.await_bind(alice(), false, 0),
            Err(SceneError::NotAwaitingConfirmation)
        ));
        scene.ask_confirmation(alice(), true, 42).unwrap();
        let status = scene.status(Instant::now());
        assert_eq!(status.phase, Phase::Confirm);
        assert_eq!(status.confirm_number, Some(42));
        assert!(!status.bound);
        assert!(matches!(
            scene.log_in_scanned(&alice(), true),
            Err(SceneError::NotAwaitingConfirmation)
        ));
        assert!(matches!(
            scene.ask_confirmation(bob(), false, 17),
            Err(SceneError::AlreadyScanned)
        ));
    }

    #[test]
    fn confirmation_needs_confirmation_on() {
        let mut scene = plain();
        assert!(matches!(
            scene.ask_confirmation(alice(), false, 42),
            Err(SceneError::NotAwaitingConfirmation)
        ));
        assert!(matches!(
            scene.answer(&alice(), 42),
            Err(SceneError::NotAwaitingConfirmation)
        ));
    }

    #[test]
    fn the_right_number_from_the_scanner_admits_them() {
        let mut scene = confirming();
        assert_eq!(
            scene.answer(&alice(), 42).unwrap(),
            Answer::Accepted {
                openid: alice(),
                new_follower: true
            }
        );
        // Only the scanner is admitted.
        assert!(scene.check_admit(&bob()).is_err());
        scene.await_bind(alice(), true, 0).unwrap();
        assert_eq!(scene.phase(), Phase::NeedBind);
        assert_eq!(scene.status(Instant::now()).confirm_number, None);
    }

    #[test]
    fn a_confirmed_bound_scanner_logs_in() {
        let mut scene = confirming();
        scene.answer(&alice(), 42).unwrap();
        scene.log_in_scanned(&alice(), true).unwrap();
        assert_eq!(scene.phase(), Phase::LoggedIn);
        assert!(matches!(
            scene.answer(&alice(), 42),
            Err(SceneError::NotAwaitingConfirmation)
        ));
    }

    #[test]
    fn another_users_number_changes_nothing() {
        let mut scene = confirming();
        for number in [0, 41, 42] {
            assert!(matches!(
                scene.answer(&bob(), number),
                Err(SceneError::NotAwaitingConfirmation)
            ));
        }
        assert_eq!(scene.phase(), Phase::Confirm);
        assert!(matches!(
            scene.answer(&alice(), 42),
            Ok(Answer::Accepted { .. })
        ));
    }

    #[test]
    fn zero_or_a_wrong_number_denies_for_good() {
        for refusal in [0, 24, 99] {
            let mut scene = confirming();
            assert_eq!(scene.answer(&alice(), refusal).unwrap(), Answer::Denied);
            assert_eq!(scene.phase(), Phase::Denied);
            assert_terminal(&mut scene, Phase::Denied);
        }
    }

    #[test]
    fn expired_is_terminal_from_every_live_state() {
        let mut confirmed = confirming();
        confirmed.answer(&alice(), 42).unwrap();
        let mut logged_in = plain();
        logged_in.log_in_scanned(&alice(), false).unwrap();
        for mut scene in [plain(), confirming(), confirmed, need_bind(), logged_in] {
            scene.expire();
            assert_terminal(&mut scene, Phase::Expired);
        }
    }

    /// Tries every transition on a terminal scene: each must fail and leave it as it was.
    fn assert_terminal(scene: &mut SceneMachine, phase: Phase) {
        let now = Instant::now();
        assert!(scene.phase().is_terminal());
        assert!(scene.check_scan().is_err());
        assert!(scene.ask_confirmation(alice(), false, 42).is_err());
        assert!(scene.answer(&alice(), 42).is_err());
        assert!(scene.check_admit(&alice()).is_err());
        assert!(scene.await_bind(alice(), false, 0).is_err());
        assert!(scene.log_in_scanned(&alice(), false).is_err());
        assert!(scene.code_sent(code(&phone(), "1"), now).is_err());
        assert!(scene.verify_code(&code(&phone(), "1")).is_err());
        assert!(scene.log_in_bound().is_err());
        scene.expire();
        let status = scene.status(now);
        assert_eq!(status.phase, phase);
        assert_eq!((status.bound, status.confirm_number), (false, None));
    }
}
