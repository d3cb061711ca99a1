//! What came of a push, and the text the WeChat user is told about it.

use std::time::{Duration, SystemTime};

use time::{OffsetDateTime, UtcOffset};
use wxlogin_actors::Origin;

use super::Callback;
use crate::reply_templates::Replies;

/// Times in replies are Beijing time, which WeChat's users read.
const REPLY_UTC_OFFSET_HOURS: i8 = 8;

/// What came of a push.
#[derive(Clone, Debug)]
pub enum Outcome {
    LoggedIn,
    NeedBind,
    /// Confirmation is on: the scanner is asked to reply with the browser's number.
    ConfirmAsked(Origin),
    /// The scanner answered 0 or a wrong number.
    Denied,
    /// Someone else scanned this QR code first.
    AlreadyScanned,
    /// The scene expired, or never was.
    Expired,
    /// A login code that belongs to a scene already scanned.
    CodeUsed,
    /// A login code that belongs to no live scene.
    CodeUnknown,
    /// The sender sent too many wrong login codes and is ignored for now.
    Throttled,
    /// The sender scanned too many scenes this hour: this scan was not taken.
    TooManyScans {
        retry_after: Duration,
    },
    /// Code mode: a follow or a text that is no code. Tell them how to log in.
    HowTo {
        followed: bool,
    },
    /// A scene key or event that isn't ours.
    NotOurs,
    Unbound,
    /// An unfollow with nothing to unbind (or older than the current binding).
    NothingToUnbind,
    /// A scan or answer sent before the sender's last unfollow and delivered after it: it
    /// lets nobody in (nor can the sender, no longer a follower, be sent a reply).
    Overtaken,
}

impl Outcome {
    /// The `outcome` label of `wxlogin_callback_events_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::LoggedIn => "logged_in",
            Outcome::NeedBind => "need_bind",
            Outcome::ConfirmAsked(_) => "confirm",
            Outcome::Denied => "denied",
            Outcome::AlreadyScanned => "already_scanned",
            Outcome::Expired => "expired",
            Outcome::CodeUsed => "code_used",
            Outcome::CodeUnknown => "code_unknown",
            Outcome::Throttled => "throttled",
            Outcome::TooManyScans { .. } => "too_many_scans",
            Outcome::HowTo { .. } => "how_to",
            Outcome::NotOurs => "ignored",
            Outcome::Unbound => "unbound",
            Outcome::NothingToUnbind => "nothing_to_unbind",
            Outcome::Overtaken => "overtaken",
        }
    }

    /// The scan took a scene: its scanner is now the one logging in there.
    pub fn took_a_scene(&self) -> bool {
        matches!(
            self,
            Outcome::LoggedIn | Outcome::NeedBind | Outcome::ConfirmAsked(_)
        )
    }

    /// With an upstream, the push is the account's business rather than wxlogin's, and goes to
    /// it: a push that scanned, logged in or answered nothing of wxlogin's (`NotOurs`), and
    /// code mode's help texts (a follow, a text that is no code), which the account's own
    /// welcome and keyword replies replace. An unfollow is both: wxlogin unbinds, and the
    /// account hears of it as it would without wxlogin.
    pub fn for_the_account(&self) -> bool {
        matches!(
            self,
            Outcome::NotOurs | Outcome::HowTo { .. } | Outcome::Unbound | Outcome::NothingToUnbind
        )
    }

    /// The text the user sees in WeChat, if any.
    /// The text the user sees in WeChat, if any: the operator's templates
    /// (`WXLOGIN_REPLIES`), filled in.
    pub fn reply(&self, callback: &Callback) -> Option<String> {
        let replies = &callback.replies;
        let minutes = |window: Duration| window.as_secs().div_ceil(60).max(1).to_string();
        let text = match self {
            Outcome::LoggedIn => replies.render("logged_in", &[]),
            Outcome::NeedBind => replies.render("need_bind", &[]),
            Outcome::ConfirmAsked(origin) => confirm_request(replies, origin),
            Outcome::Denied => replies.render("denied", &[]),
            Outcome::AlreadyScanned => replies.render("already_scanned", &[]),
            Outcome::Expired => replies.render("expired", &[]),
            Outcome::CodeUsed => replies.render("code_used", &[]),
            Outcome::CodeUnknown => replies.render("code_unknown", &[]),
            Outcome::Throttled => replies.render(
                "throttled",
                &[("minutes", &minutes(callback.guesses.window()))],
            ),
            Outcome::TooManyScans { retry_after } => {
                replies.render("too_many_scans", &[("minutes", &minutes(*retry_after))])
            }
            Outcome::HowTo { followed: true } => replies.render("how_to_after_follow", &[]),
            Outcome::HowTo { followed: false } => replies.render("how_to", &[]),
            Outcome::NotOurs | Outcome::Unbound | Outcome::NothingToUnbind | Outcome::Overtaken => {
                return None
            }
        };
        Some(text)
    }
}

/// Names the site and the browser that asked to log in, so the user can tell a login they
/// started from one a phisher relayed, and asks for the number that browser shows. The
/// number itself is never in the reply (nor a placeholder of it): whoever holds the browser
/// must read it out.
fn confirm_request(replies: &Replies, origin: &Origin) -> String {
    replies.render(
        "confirm_request",
        &[
            ("device", origin.device()),
            ("ip", &origin.ip()),
            ("time", &beijing_time(origin.at())),
        ],
    )
}

fn beijing_time(at: SystemTime) -> String {
    let offset = UtcOffset::from_hms(REPLY_UTC_OFFSET_HOURS, 0, 0).expect("a valid offset");
    let t = OffsetDateTime::from(at).to_offset(offset);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn times_are_beijing_time() {
        // 2024-11-24 00:00:00 UTC.
        let at = UNIX_EPOCH + Duration::from_secs(1_732_406_400);
        assert_eq!(beijing_time(at), "2024-11-24 08:00:00");
    }

    #[test]
    fn the_confirmation_request_names_site_device_ip_and_time_but_not_the_number() {
        let origin = Origin::from(&wxlogin_actors::Requester {
            ip: "203.0.113.7".into(),
            device: "Chrome on Windows".into(),
            at: UNIX_EPOCH + Duration::from_secs(1_732_406_400),
            session_digest: wxlogin_storage::SessionDigest::from_bytes([0; 32]),
        });
        let replies = Replies::load(None, "Example 商城".into()).unwrap();
        let text = confirm_request(&replies, &origin);
        for part in [
            "Example 商城",
            "Chrome on Windows",
            "203.0.113.7",
            "2024-11-24 08:00:00",
            "两位数字",
            "回复 0",
        ] {
            assert!(text.contains(part), "{part} missing from {text}");
        }
    }
}
