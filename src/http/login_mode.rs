//! Which login mode new scenes get: fixed by `WXLOGIN_LOGIN_MODE`, or in `auto` the QR mode
//! until WeChat first refuses to make a parametric QR code, and the code mode from then on.

use std::sync::atomic::{AtomicBool, Ordering};

use wxlogin_actors::LoginMode;

use crate::config::LoginModeSetting;

pub struct LoginModes {
    setting: LoginModeSetting,
    /// `auto` mode has fallen back to codes.
    fell_back: AtomicBool,
    /// The account's own QR code, shown in code mode.
    pub account_qr_url: String,
}

impl LoginModes {
    pub fn new(setting: LoginModeSetting, account_qr_url: String) -> Self {
        Self {
            setting,
            fell_back: AtomicBool::new(false),
            account_qr_url,
        }
    }

    pub fn current(&self) -> LoginMode {
        match self.setting {
            LoginModeSetting::QrCode => LoginMode::QrCode,
            LoginModeSetting::Code => LoginMode::Code,
            LoginModeSetting::Auto if self.fell_back.load(Ordering::Relaxed) => LoginMode::Code,
            LoginModeSetting::Auto => LoginMode::QrCode,
        }
    }

    /// WeChat refused to make a QR code for this account (errcode 48001). True when that
    /// switches `auto` over to codes, once; false when there is nothing to fall back to.
    pub fn qrcodes_refused(&self) -> bool {
        self.setting == LoginModeSetting::Auto && !self.fell_back.swap(true, Ordering::Relaxed)
    }

    /// Whether the account takes login codes by text: code mode, or auto mode, where a page
    /// may ask for a code instead of a QR code (a phone can't scan its own screen).
    pub fn codes_accepted(&self) -> bool {
        self.setting != LoginModeSetting::QrCode
    }

    /// The mode of a new scene: the current one, or code mode when the page asks for it and
    /// the account takes codes; `None` when it asks for codes that aren't taken.
    pub fn for_new_scene(&self, codes_asked: bool) -> Option<LoginMode> {
        match (codes_asked, self.codes_accepted()) {
            (false, _) => Some(self.current()),
            (true, true) => Some(LoginMode::Code),
            (true, false) => None,
        }
    }

    /// Whether a refusal can still be served in code mode.
    pub fn can_fall_back(&self) -> bool {
        self.setting == LoginModeSetting::Auto
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_falls_back_once_and_stays() {
        let modes = LoginModes::new(LoginModeSetting::Auto, String::new());
        assert_eq!(modes.current(), LoginMode::QrCode);
        assert!(modes.qrcodes_refused());
        assert!(!modes.qrcodes_refused());
        assert_eq!(modes.current(), LoginMode::Code);
    }

    #[test]
    fn a_page_may_ask_for_codes_unless_the_account_takes_only_qr_codes() {
        let auto = LoginModes::new(LoginModeSetting::Auto, String::new());
        assert_eq!(auto.for_new_scene(true), Some(LoginMode::Code));
        assert_eq!(auto.for_new_scene(false), Some(LoginMode::QrCode));
        let qr = LoginModes::new(LoginModeSetting::QrCode, String::new());
        assert!(!qr.codes_accepted());
        assert_eq!(qr.for_new_scene(true), None);
    }

    #[test]
    fn fixed_modes_never_change() {
        for (setting, mode) in [
            (LoginModeSetting::QrCode, LoginMode::QrCode),
            (LoginModeSetting::Code, LoginMode::Code),
        ] {
            let modes = LoginModes::new(setting, String::new());
            assert!(!modes.qrcodes_refused() && !modes.can_fall_back());
            assert_eq!(modes.current(), mode);
        }
    }
}
