//! The audit trail: one info line, under the target `wxlogin::audit`, for each event that changes
//! who is logged in or bound, so operators can follow a user and alert on them
//! (`RUST_LOG=info,wxlogin::audit=info`, or filter on the target in JSON logs).
//!
//! A line names the user by [`Short`] openid, never by a token, a code or a scene id.

use std::fmt;

use wxlogin_storage::OpenId;

/// How a login came about, as audit lines and metrics name it.
#[derive(Clone, Copy, Debug)]
pub enum LoginPath {
    /// A bound user scanned the QR code, sent the login code or answered the confirmation.
    Scan,
    /// A new user bound a phone, which logged them in.
    Bind,
    /// A bound user tapped "log in with this WeChat" in WeChat's browser (web authorization).
    WebAuthorization,
}

impl LoginPath {
    pub fn as_str(self) -> &'static str {
        match self {
            LoginPath::Scan => "scan",
            LoginPath::Bind => "bind",
            LoginPath::WebAuthorization => "web_authorization",
        }
    }
}

/// Who ended a binding.
#[derive(Clone, Copy, Debug)]
pub enum Unbinder {
    /// The user unfollowed the account.
    User,
    /// An operator, through the admin API.
    Admin,
}

/// A user was logged in.
pub fn login(user: &OpenId, path: LoginPath) {
    tracing::info!(user = %Short(user), path = path.as_str(), "audit: login");
}

/// A user bound a phone number from the browser at `client_ip` (as the login log keeps it).
pub fn bind(user: &OpenId, client_ip: &str) {
    tracing::info!(user = %Short(user), client_ip, "audit: bind");
}

/// A binding ended, and the user's sessions and tokens with it.
pub fn unbind(user: &OpenId, by: Unbinder) {
    let by = match by {
        Unbinder::User => "unsubscribe",
        Unbinder::Admin => "admin",
    };
    tracing::info!(user = %Short(user), by, "audit: unbind");
}

/// A session ended: `client` is the relying party that asked (RP-initiated logout), `None` for
/// wxlogin's own `POST /api/logout`.
pub fn logout(user: &OpenId, client: Option<&str>) {
    tracing::info!(user = %Short(user), client = client.unwrap_or("-"), "audit: logout");
}

/// A relying party exchanged an authorization code for the user's tokens.
pub fn code_exchange(user: &OpenId, client: &str) {
    tracing::info!(user = %Short(user), client, "audit: code exchange");
}

/// An openid cut to its last [`Short::SHOWN`] characters: WeChat openids share a per-account
/// prefix, so the tail tells users apart in a log (and matches the admin API's full openid
/// with a `grep`), while the log alone does not hand out whole openids.
pub struct Short<'a>(pub &'a OpenId);

impl Short<'_> {
    const SHOWN: usize = 6;
}

impl fmt::Display for Short<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let openid = self.0.as_str();
        // Openids are ASCII (OpenId::parse), so any byte offset is a character boundary.
        match openid.len().checked_sub(Self::SHOWN) {
            Some(start) if start > 0 => write!(f, "…{}", &openid[start..]),
            _ => f.write_str("…"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openids_show_only_their_tail() {
        let openid = OpenId::parse("o6_bmjrPTlm6_2sgVt7hMZOPfL2M").unwrap();
        assert_eq!(Short(&openid).to_string(), "…OPfL2M");
        // One no longer than the tail shows nothing of itself.
        let short = OpenId::parse("oAbCdE").unwrap();
        assert_eq!(Short(&short).to_string(), "…");
    }
}
