//! Token buckets per key (a client IP, a phone number, a WeChat user): in this node's memory
//! (moka, so that idle keys cost nothing and vanish on their own) on a store only this node
//! uses; in the store, one bucket per key for every node, on PostgreSQL ([`SharedLimits`]).

use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::sync::Cache;
use wxlogin_storage::{SharedLimits, StoreError};

use crate::config::Settings;

/// Most keys tracked at once by one limiter on one node; beyond that the least used are forgotten.
const MAX_KEYS: u64 = 1_000_000;

pub struct RateLimiter {
    capacity: f64,
    refill_per_sec: f64,
    buckets: Buckets,
}

enum Buckets {
    Local(Cache<String, Arc<Mutex<Bucket>>>),
    /// `kind` tells this limiter's keys from other limiters' in the shared table.
    Shared {
        limits: SharedLimits,
        kind: &'static str,
    },
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Why a request was not let through.
#[derive(Debug)]
pub enum Refused {
    /// The limit is reached: a token is free after this long.
    Wait(Duration),
    /// The shared limit could not be checked: refused all the same (fails closed).
    Unchecked(StoreError),
}

impl RateLimiter {
    /// Allows bursts of `limit` and `limit` per `period` on average; `None` when `limit` is 0,
    /// which disables the limit. Counted in the store under `kind` when it is `shared`.
    pub fn per(
        limit: u32,
        period: Duration,
        kind: &'static str,
        shared: Option<&SharedLimits>,
    ) -> Option<Self> {
        let buckets = || match shared {
            Some(limits) => Buckets::Shared {
                limits: limits.clone(),
                kind,
            },
            // A bucket left alone for a whole period is full again: forgetting it changes nothing.
            None => Buckets::Local(
                Cache::builder()
                    .max_capacity(MAX_KEYS)
                    .time_to_idle(period)
                    .build(),
            ),
        };
        (limit > 0).then(|| Self {
            capacity: f64::from(limit),
            refill_per_sec: f64::from(limit) / period.as_secs_f64(),
            buckets: buckets(),
        })
    }

    /// Takes a token for `key`, or tells how long until one is free.
    pub async fn acquire(&self, key: &str) -> Result<(), Refused> {
        let buckets = match &self.buckets {
            Buckets::Shared { limits, kind } => {
                return limits
                    .acquire(kind, key, self.capacity, self.refill_per_sec)
                    .await
                    .map_err(Refused::Unchecked)?
                    .map_err(Refused::Wait)
            }
            Buckets::Local(buckets) => buckets,
        };
        let now = Instant::now();
        let bucket = buckets.get_with_by_ref(key, || {
            Arc::new(Mutex::new(Bucket {
                tokens: self.capacity,
                updated: now,
            }))
        });
        let mut bucket = bucket.lock().unwrap_or_else(|p| p.into_inner());
        let refilled =
            now.saturating_duration_since(bucket.updated).as_secs_f64() * self.refill_per_sec;
        bucket.tokens = (bucket.tokens + refilled).min(self.capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Refused::Wait(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.refill_per_sec,
            )))
        }
    }

    /// Returns a token taken for a request that ended up doing nothing.
    async fn give_back(&self, key: &str) {
        match &self.buckets {
            Buckets::Shared { limits, kind } => {
                // Not given back, the token stays spent: the limit errs on the strict side.
                if let Err(e) = limits.give_back(kind, key, self.capacity).await {
                    tracing::warn!(error = %e, limit = kind, "a token could not be given back");
                }
            }
            Buckets::Local(buckets) => {
                if let Some(bucket) = buckets.get(key) {
                    let mut bucket = bucket.lock().unwrap_or_else(|p| p.into_inner());
                    bucket.tokens = (bucket.tokens + 1.0).min(self.capacity);
                }
            }
        }
    }
}

/// Tokens one request took from several limiters, to give back if it ends up doing nothing.
#[must_use = "tokens are kept unless given back"]
pub struct Taken<'a>(Vec<(&'a RateLimiter, &'a str)>);

impl Taken<'_> {
    pub async fn give_back(self) {
        for (limiter, key) in self.0 {
            limiter.give_back(key).await;
        }
    }
}

/// Takes a token for each enabled `(limiter, key)`, or none at all: when one refuses, those
/// already taken are given back and the refusal is answered.
pub async fn acquire_all<'a>(
    limits: &[(&'a Option<RateLimiter>, &'a str)],
) -> Result<Taken<'a>, Refused> {
    let mut taken = Taken(Vec::new());
    for &(limiter, key) in limits {
        let Some(limiter) = limiter else { continue };
        if let Err(refused) = limiter.acquire(key).await {
            taken.give_back().await;
            return Err(refused);
        }
        taken.0.push((limiter, key));
    }
    Ok(taken)
}

/// The key an IP address is limited under: an IPv4 address itself, an IPv6 address its /64
/// (one subscriber's network: whoever has one has 2⁶⁴ addresses to rotate through); an
/// IPv4-mapped IPv6 address (a dual-stack listener's IPv4 peer) is the IPv4 address.
pub fn ip_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => {
            let prefix = u128::from(ip) & !(u128::from(u64::MAX));
            format!("{}/64", Ipv6Addr::from(prefix))
        }
    }
}

/// What stops one client, or one WeChat user, from spending the account's WeChat quota or
/// SMS budget.
pub struct AbuseLimits {
    pub qr_per_ip: Option<RateLimiter>,
    pub sms_per_phone: Option<RateLimiter>,
    pub sms_per_ip: Option<RateLimiter>,
    /// Codes sent for the scenes one WeChat user (openid) scanned.
    pub sms_per_user: Option<RateLimiter>,
    /// Scenes one WeChat user may scan.
    pub scans_per_user: Option<RateLimiter>,
    /// Live scenes at most; 0 for no cap.
    pub max_scenes: usize,
}

impl AbuseLimits {
    /// The rate limits are the cluster's when `shared`; `max_scenes` is always this node's (it
    /// bounds this node's memory, where its scenes live).
    pub fn from_settings(settings: &Settings, shared: Option<&SharedLimits>) -> Self {
        const MINUTE: Duration = Duration::from_secs(60);
        const HOUR: Duration = Duration::from_secs(3600);
        let per = |limit, period, kind| RateLimiter::per(limit, period, kind, shared);
        Self {
            qr_per_ip: per(settings.qr_per_ip_per_min, MINUTE, "qr_per_ip"),
            sms_per_phone: per(settings.sms_per_phone_per_hour, HOUR, "sms_per_phone"),
            sms_per_ip: per(settings.sms_per_ip_per_hour, HOUR, "sms_per_ip"),
            sms_per_user: per(settings.sms_per_user_per_hour, HOUR, "sms_per_user"),
            scans_per_user: per(settings.scans_per_user_per_hour, HOUR, "scans_per_user"),
            max_scenes: settings.max_scenes,
        }
    }
}

/// Acquires from `limiter` when the limit is enabled.
pub async fn check(limiter: &Option<RateLimiter>, key: &str) -> Result<(), Refused> {
    match limiter {
        Some(limiter) => limiter.acquire(key).await,
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(limit: u32, period: Duration) -> Option<RateLimiter> {
        RateLimiter::per(limit, period, "test", None)
    }

    fn wait(refused: Refused) -> Duration {
        match refused {
            Refused::Wait(wait) => wait,
            Refused::Unchecked(e) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn allows_a_burst_then_refuses_until_refilled() {
        let limiter = local(3, Duration::from_secs(60)).unwrap();
        for _ in 0..3 {
            assert!(limiter.acquire("1.2.3.4").await.is_ok());
        }
        let wait = wait(limiter.acquire("1.2.3.4").await.unwrap_err());
        assert!(
            wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        // Keys are independent.
        assert!(limiter.acquire("5.6.7.8").await.is_ok());
    }

    #[tokio::test]
    async fn refills_over_time() {
        let limiter = local(1, Duration::from_millis(50)).unwrap();
        assert!(limiter.acquire("k").await.is_ok());
        assert!(limiter.acquire("k").await.is_err());
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(limiter.acquire("k").await.is_ok());
    }

    #[tokio::test]
    async fn all_or_nothing_and_given_back() {
        let ip = local(1, Duration::from_secs(3600));
        let phone = local(1, Duration::from_secs(3600));
        let both = [(&ip, "1.2.3.4"), (&phone, "13800000001")];
        acquire_all(&both).await.unwrap().give_back().await;
        let kept = acquire_all(&both).await.unwrap();
        // Both spent: another phone from the same IP is refused, and takes nothing.
        assert!(acquire_all(&both).await.is_err());
        drop(kept);
        assert!(acquire_all(&[(&phone, "13800000002"), (&ip, "1.2.3.4")])
            .await
            .is_err());
        assert!(acquire_all(&[(&phone, "13800000002")]).await.is_ok());
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_and_ipv4_by_itself() {
        let key = |ip: &str| ip_key(ip.parse().unwrap());
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(key("198.51.100.7"), "198.51.100.7");
        assert_ne!(key("198.51.100.7"), key("198.51.100.8"));
        // Not every IPv4 client in one ::ffff:0:0/64 bucket.
        assert_eq!(key("::ffff:198.51.100.7"), "198.51.100.7");
    }

    #[tokio::test]
    async fn zero_disables() {
        assert!(local(0, Duration::from_secs(60)).is_none());
        assert!(check(&None, "anything").await.is_ok());
    }
}
