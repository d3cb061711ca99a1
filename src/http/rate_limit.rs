//! Token buckets per key (a client IP, a phone number, a WeChat user), kept in moka so that
//! idle keys cost nothing and vanish on their own.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::sync::Cache;

use crate::config::Settings;

/// Most keys tracked at once by one limiter; beyond that the least used are forgotten.
const MAX_KEYS: u64 = 1_000_000;

pub struct RateLimiter {
    capacity: f64,
    refill_per_sec: f64,
    buckets: Cache<String, Arc<Mutex<Bucket>>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// Allows bursts of `limit` and `limit` per `period` on average; `None` when `limit` is 0,
    /// which disables the limit.
    pub fn per(limit: u32, period: Duration) -> Option<Self> {
        (limit > 0).then(|| Self {
            capacity: f64::from(limit),
            refill_per_sec: f64::from(limit) / period.as_secs_f64(),
            // A bucket left alone for a whole period is full again: forgetting it changes nothing.
            buckets: Cache::builder()
                .max_capacity(MAX_KEYS)
                .time_to_idle(period)
                .build(),
        })
    }

    /// Takes a token for `key`, or tells how long until one is free.
    pub fn acquire(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let bucket = self.buckets.get_with_by_ref(key, || {
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
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.refill_per_sec,
            ))
        }
    }

    /// Returns a token taken for a request that ended up doing nothing.
    fn give_back(&self, key: &str) {
        if let Some(bucket) = self.buckets.get(key) {
            let mut bucket = bucket.lock().unwrap_or_else(|p| p.into_inner());
            bucket.tokens = (bucket.tokens + 1.0).min(self.capacity);
        }
    }
}

/// Tokens one request took from several limiters, to give back if it ends up doing nothing.
#[must_use = "tokens are kept unless given back"]
pub struct Taken<'a>(Vec<(&'a RateLimiter, &'a str)>);

impl Taken<'_> {
    pub fn give_back(self) {
        for (limiter, key) in self.0 {
            limiter.give_back(key);
        }
    }
}

/// Takes a token for each enabled `(limiter, key)`, or none at all: when one refuses, those
/// already taken are given back and the wait is answered.
pub fn acquire_all<'a>(
    limits: &[(&'a Option<RateLimiter>, &'a str)],
) -> Result<Taken<'a>, Duration> {
    let mut taken = Taken(Vec::new());
    for &(limiter, key) in limits {
        let Some(limiter) = limiter else { continue };
        if let Err(wait) = limiter.acquire(key) {
            taken.give_back();
            return Err(wait);
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
    pub fn from_settings(settings: &Settings) -> Self {
        const MINUTE: Duration = Duration::from_secs(60);
        const HOUR: Duration = Duration::from_secs(3600);
        Self {
            qr_per_ip: RateLimiter::per(settings.qr_per_ip_per_min, MINUTE),
            sms_per_phone: RateLimiter::per(settings.sms_per_phone_per_hour, HOUR),
            sms_per_ip: RateLimiter::per(settings.sms_per_ip_per_hour, HOUR),
            sms_per_user: RateLimiter::per(settings.sms_per_user_per_hour, HOUR),
            scans_per_user: RateLimiter::per(settings.scans_per_user_per_hour, HOUR),
            max_scenes: settings.max_scenes,
        }
    }
}

/// Acquires from `limiter` when the limit is enabled.
pub fn check(limiter: &Option<RateLimiter>, key: &str) -> Result<(), Duration> {
    limiter
        .as_ref()
        .map_or(Ok(()), |limiter| limiter.acquire(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_refuses_until_refilled() {
        let limiter = RateLimiter::per(3, Duration::from_secs(60)).unwrap();
        for _ in 0..3 {
            assert!(limiter.acquire("1.2.3.4").is_ok());
        }
        let wait = limiter.acquire("1.2.3.4").unwrap_err();
        assert!(
            wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        // Keys are independent.
        assert!(limiter.acquire("5.6.7.8").is_ok());
    }

    #[test]
    fn refills_over_time() {
        let limiter = RateLimiter::per(1, Duration::from_millis(50)).unwrap();
        assert!(limiter.acquire("k").is_ok());
        assert!(limiter.acquire("k").is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert!(limiter.acquire("k").is_ok());
    }

    #[test]
    fn all_or_nothing_and_given_back() {
        let ip = RateLimiter::per(1, Duration::from_secs(3600));
        let phone = RateLimiter::per(1, Duration::from_secs(3600));
        let both = [(&ip, "1.2.3.4"), (&phone, "13800000001")];
        acquire_all(&both).unwrap().give_back();
        let kept = acquire_all(&both).unwrap();
        // Both spent: another phone from the same IP is refused, and takes nothing.
        assert!(acquire_all(&both).is_err());
        drop(kept);
        assert!(acquire_all(&[(&phone, "13800000002"), (&ip, "1.2.3.4")]).is_err());
        assert!(acquire_all(&[(&phone, "13800000002")]).is_ok());
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

    #[test]
    fn zero_disables() {
        assert!(RateLimiter::per(0, Duration::from_secs(60)).is_none());
        assert!(check(&None, "anything").is_ok());
    }
}
