//! A signed (timestamp, nonce) pair is good for one body. In plaintext mode WeChat's
//! signature covers the token, timestamp and nonce but not the body, and the query string sits
//! in every proxy's access log: without this, whoever reads one could post any body under it
//! (a `SCAN` from the victim's openid, an `unsubscribe`) for as long as the timestamp is fresh.
//!
//! Each pair is remembered with a digest of its body until its timestamp leaves the window.
//! The same body again is a redelivery (the delivery memory then acknowledges it); another
//! body is refused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::notification::RemovalCause;
use moka::sync::Cache;
use moka::Expiry;
use sha2::{Digest, Sha256};

use crate::wechat::envelope::Signed;

/// Pairs remembered at once. Only pushes whose signature checked out get in, so only WeChat's
/// own traffic (or the Token's holder) fills it: at the default 300 s window, pushes arriving
/// on time stay about 300 s, so this is over 300 pushes a second, about 20 MB at most.
const CAPACITY: u64 = 100_000;

/// The timestamp and nonce as signed (so `0123` and `123` are different pairs, as they are
/// different signatures).
type Pair = (String, String);

#[derive(Clone)]
struct Seen {
    body: [u8; 32],
    /// How long the pair can still be accepted, so how long it is kept.
    keep: Duration,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The pair came before with another body.
    Replayed,
    /// The memory is full: refusing is safer than forgetting (see [`SeenSignatures::check`]).
    Full,
}

/// Each entry lives as long as its own pair is acceptable.
struct UntilStale;

impl Expiry<Pair, Seen> for UntilStale {
    fn expire_after_create(&self, _: &Pair, seen: &Seen, _: Instant) -> Option<Duration> {
        Some(seen.keep)
    }
}

pub struct SeenSignatures {
    window: Duration,
    capacity: u64,
    by_pair: Cache<Pair, Seen>,
    /// Entries held: counted at insertion, uncounted when moka drops them. moka's own count
    /// lags behind insertions; this one lags behind expiries only, so it errs towards full.
    held: Arc<AtomicU64>,
}

impl SeenSignatures {
    pub fn new(window: Duration) -> Self {
        Self::with_capacity(window, CAPACITY)
    }

    fn with_capacity(window: Duration, capacity: u64) -> Self {
        let held = Arc::new(AtomicU64::new(0));
        let dropped = held.clone();
        // No `max_capacity`: moka would make room by evicting (or by not admitting) an entry,
        // and a forgotten pair takes any body again. `check` refuses instead.
        let by_pair = Cache::builder()
            .expire_after(UntilStale)
            .eviction_listener(move |_, _, cause| {
                if cause != RemovalCause::Replaced {
                    dropped.fetch_sub(1, Ordering::Relaxed);
                }
            })
            .build();
        Self {
            window,
            capacity,
            by_pair,
            held,
        }
    }

    /// Accepts the first body under a pair and the same body again; refuses another one.
    ///
    /// When the memory is full, new pairs are refused (503) until entries age out: forgetting
    /// one would reopen it to any body. Since only verified pushes get in, that takes WeChat
    /// itself sending more than the capacity per window; WeChat retries refused pushes.
    pub fn check(&self, signed: &Signed<'_>, body: &[u8], now: u64) -> Result<(), Refusal> {
        let pair = (signed.timestamp.to_owned(), signed.nonce.to_owned());
        let digest: [u8; 32] = Sha256::digest(body).into();
        if let Some(seen) = self.by_pair.get(&pair) {
            return same_body(&seen, &digest);
        }
        if self.is_full() {
            return Err(Refusal::Full);
        }
        let seen = Seen {
            body: digest,
            keep: keep_for(signed.sent_at, now, self.window),
        };
        // Atomic: of two different bodies racing under a new pair, one is refused.
        let entry = self.by_pair.entry(pair).or_insert_with(|| {
            // Counted before the entry exists, so its removal can't be counted first.
            self.held.fetch_add(1, Ordering::Relaxed);
            seen
        });
        if entry.is_fresh() {
            return Ok(());
        }
        same_body(entry.value(), &digest)
    }

    fn is_full(&self) -> bool {
        let full = || self.held.load(Ordering::Relaxed) >= self.capacity;
        if !full() {
            return false;
        }
        // Expired entries are dropped by moka's housekeeping: run it before refusing.
        self.by_pair.run_pending_tasks();
        full()
    }
}

fn same_body(seen: &Seen, digest: &[u8; 32]) -> Result<(), Refusal> {
    if seen.body == *digest {
        Ok(())
    } else {
        Err(Refusal::Replayed)
    }
}

/// A timestamp `sent_at` is accepted while our clock, in whole seconds, is at most `window`
/// past it; a second on top covers the fraction `now` rounded away. A timestamp ahead of our
/// clock is kept longest: up to twice the window.
fn keep_for(sent_at: u64, now: u64, window: Duration) -> Duration {
    Duration::from_secs((sent_at + window.as_secs() + 1).saturating_sub(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::envelope::{CallbackKeys, CallbackQuery};
    use crate::wechat::signature::sign;

    const TOKEN: &str = "t";
    const NOW: u64 = 1_732_406_400;
    const WINDOW: Duration = Duration::from_secs(300);

    fn query(nonce: &str) -> CallbackQuery {
        let timestamp = NOW.to_string();
        CallbackQuery {
            signature: Some(sign(&[TOKEN, &timestamp, nonce])),
            timestamp: Some(timestamp),
            nonce: Some(nonce.into()),
            ..CallbackQuery::default()
        }
    }

    fn check(memory: &SeenSignatures, nonce: &str, body: &[u8]) -> Result<(), Refusal> {
        let keys = CallbackKeys::new(TOKEN.into(), None, WINDOW);
        let query = query(nonce);
        let signed = keys.verify(&query, body, NOW).unwrap();
        memory.check(&signed, body, NOW)
    }

    #[test]
    fn a_pair_takes_one_body_any_number_of_times() {
        let memory = SeenSignatures::new(WINDOW);
        assert_eq!(check(&memory, "1", b"<xml>a</xml>"), Ok(()));
        assert_eq!(check(&memory, "1", b"<xml>a</xml>"), Ok(()));
        assert_eq!(check(&memory, "1", b"<xml>b</xml>"), Err(Refusal::Replayed));
        assert_eq!(check(&memory, "1", b"<xml>a</xml>"), Ok(()));
        assert_eq!(check(&memory, "2", b"<xml>b</xml>"), Ok(()));
    }

    #[test]
    fn a_full_memory_refuses_new_pairs_but_still_knows_its_own() {
        let memory = SeenSignatures::with_capacity(WINDOW, 2);
        assert_eq!(check(&memory, "1", b"a"), Ok(()));
        assert_eq!(check(&memory, "2", b"b"), Ok(()));
        assert_eq!(check(&memory, "3", b"c"), Err(Refusal::Full));
        assert_eq!(check(&memory, "1", b"a"), Ok(()));
        assert_eq!(check(&memory, "2", b"x"), Err(Refusal::Replayed));
    }

    #[test]
    fn a_pair_is_kept_until_its_timestamp_leaves_the_window() {
        // On time: the window and a second; from the future: up to twice the window.
        assert_eq!(keep_for(NOW, NOW, WINDOW), Duration::from_secs(301));
        assert_eq!(keep_for(NOW + 300, NOW, WINDOW), Duration::from_secs(601));
        assert_eq!(keep_for(NOW - 300, NOW, WINDOW), Duration::from_secs(1));
    }
}
