//! Who asked for a login, as a scene keeps it: compact, since every pending scene holds one.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::Requester;

/// The requesting browser's IP, device and time, shown to the scanner when asked to confirm;
/// the IP also goes into the login log.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Origin {
    /// `None` when the client's address was not known.
    ip: Option<IpAddr>,
    device: Box<str>,
    /// Seconds since the Unix epoch.
    at: u32,
}

impl Origin {
    pub fn ip(&self) -> String {
        self.ip
            .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
    }

    pub fn device(&self) -> &str {
        &self.device
    }

    pub fn at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.at.into())
    }
}

impl From<&Requester> for Origin {
    fn from(requester: &Requester) -> Self {
        let since_epoch = requester.at.duration_since(UNIX_EPOCH).unwrap_or_default();
        Self {
            ip: requester.ip.parse().ok(),
            device: requester.device.as_str().into(),
            at: u32::try_from(since_epoch.as_secs()).unwrap_or(u32::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_the_scanner_is_shown() {
        let at = UNIX_EPOCH + Duration::from_secs(1_732_406_400);
        let requester = Requester {
            ip: "2001:db8::7".into(),
            device: "Chrome on Windows".into(),
            at: at + Duration::from_millis(900),
            session_digest: wxlogin_storage::SessionDigest::from_bytes([0; 32]),
        };
        let origin = Origin::from(&requester);
        assert_eq!(origin.ip(), "2001:db8::7");
        assert_eq!(origin.device(), "Chrome on Windows");
        assert_eq!(origin.at(), at);
        let unknown = Requester {
            ip: "unknown".into(),
            ..requester
        };
        assert_eq!(Origin::from(&unknown).ip(), "unknown");
    }
}
