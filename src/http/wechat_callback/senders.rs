//! Who may push to `/wechat` (`WXLOGIN_CALLBACK_IPS`): anyone, a fixed list, or the
//! addresses WeChat's `getcallbackip` lists, refreshed hourly. In plaintext mode this is the
//! strong defence: a copied query string is no use from anywhere else.

use std::net::IpAddr;
use std::sync::RwLock;
use std::time::Duration;

use actix_web::web;

use crate::config::CallbackSenders;
use crate::error::ApiError;
use crate::http::AppState;
use crate::wechat::ip_ranges::IpRanges;

/// How often WeChat's list is fetched again (it changes now and then).
const REFRESH_EVERY: Duration = Duration::from_secs(3600);
/// After a failed fetch, how soon to try again (meanwhile the last good list stays).
const RETRY_AFTER: Duration = Duration::from_secs(60);

pub enum Senders {
    Anyone,
    Only(IpRanges),
    /// WeChat's list: `None` until the first fetch succeeds.
    Wechat(RwLock<Option<IpRanges>>),
}

impl Senders {
    pub fn new(setting: &CallbackSenders) -> Self {
        match setting {
            CallbackSenders::Anyone => Senders::Anyone,
            CallbackSenders::Only(ranges) => Senders::Only(ranges.clone()),
            CallbackSenders::Wechat => Senders::Wechat(RwLock::new(None)),
        }
    }

    /// Refuses a client outside the list (403), or every client while WeChat's list is not
    /// known yet (503). `client` is `None` when no address could be read.
    pub fn admit(&self, client: Option<IpAddr>) -> Result<(), ApiError> {
        let allowed = |ranges: &IpRanges| client.is_some_and(|ip| ranges.contains(ip));
        let admitted = match self {
            Senders::Anyone => true,
            Senders::Only(ranges) => allowed(ranges),
            Senders::Wechat(list) => {
                let list = list.read().unwrap_or_else(|p| p.into_inner());
                allowed(list.as_ref().ok_or(ApiError::CallbackAddressesUnknown)?)
            }
        };
        if admitted {
            Ok(())
        } else {
            Err(ApiError::SenderNotAllowed)
        }
    }

    /// False only while WeChat's list is needed and not fetched yet.
    pub fn known(&self) -> bool {
        match self {
            Senders::Wechat(list) => list.read().unwrap_or_else(|p| p.into_inner()).is_some(),
            _ => true,
        }
    }

    fn replace(&self, ranges: IpRanges) {
        if let Senders::Wechat(list) = self {
            *list.write().unwrap_or_else(|p| p.into_inner()) = Some(ranges);
        }
    }
}

/// With `WXLOGIN_CALLBACK_IPS=wechat`, fetches WeChat's list now and every hour, forever; a
/// failed fetch keeps the last good list and is retried in a minute. Otherwise returns at once.
pub async fn follow_wechat_addresses(state: web::Data<AppState>) {
    let senders = &state.callback.senders;
    if !matches!(senders, Senders::Wechat(_)) {
        return;
    }
    loop {
        let wait = match state.wechat.callback_ips().await {
            Ok(ranges) => {
                senders.replace(ranges);
                REFRESH_EVERY
            }
            Err(e) => {
                tracing::warn!(error = %e, known = senders.known(), "fetching WeChat's callback addresses failed; retrying in a minute");
                RETRY_AFTER
            }
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn code(result: Result<(), ApiError>) -> &'static str {
        result.map_or_else(|e| e.code(), |()| "admitted")
    }

    #[test]
    fn a_fixed_list_admits_only_its_addresses() {
        let ranges = IpRanges::parse(["203.0.113.0/24"]).unwrap();
        let senders = Senders::new(&CallbackSenders::Only(ranges));
        assert_eq!(code(senders.admit(ip("203.0.113.9"))), "admitted");
        assert_eq!(code(senders.admit(ip("127.0.0.1"))), "address_not_allowed");
        assert_eq!(code(senders.admit(None)), "address_not_allowed");
        let anyone = Senders::new(&CallbackSenders::Anyone);
        assert_eq!(code(anyone.admit(None)), "admitted");
        assert!(senders.known() && anyone.known());
    }

    #[test]
    fn wechats_list_refuses_everyone_until_it_is_fetched() {
        let senders = Senders::new(&CallbackSenders::Wechat);
        assert!(!senders.known());
        assert_eq!(
            code(senders.admit(ip("203.0.113.9"))),
            "callback_addresses_unavailable"
        );
        senders.replace(IpRanges::parse(["203.0.113.9"]).unwrap());
        assert!(senders.known());
        assert_eq!(code(senders.admit(ip("203.0.113.9"))), "admitted");
        assert_eq!(
            code(senders.admit(ip("203.0.113.8"))),
            "address_not_allowed"
        );
    }
}
