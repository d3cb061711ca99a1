//! Login codes are six digits, so sending codes at random would find live ones: a WeChat
//! user who sends [`MAX_MISSES`] codes that log nothing in within a window is ignored for the
//! rest of it.

use std::time::{Duration, Instant};

use moka::sync::Cache;

/// Wrong codes an openid may send per window.
pub const MAX_MISSES: u32 = 5;
/// Openids remembered at once; a flood of new openids evicts the oldest.
const CAPACITY: u64 = 100_000;

#[derive(Clone, Copy)]
struct Window {
    started: Instant,
    misses: u32,
}

pub struct CodeGuesses {
    window: Duration,
    by_openid: Cache<String, Window>,
}

impl CodeGuesses {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            by_openid: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(window)
                .build(),
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    fn current(&self, openid: &str, now: Instant) -> Option<Window> {
        self.by_openid
            .get(openid)
            .filter(|w| now.duration_since(w.started) < self.window)
    }

    /// The openid has used up its misses for the current window.
    pub fn is_throttled(&self, openid: &str) -> bool {
        self.current(openid, Instant::now())
            .is_some_and(|w| w.misses >= MAX_MISSES)
    }

    /// Counts a code that logged nothing in. True when this miss throttles the openid.
    pub fn miss(&self, openid: &str) -> bool {
        let now = Instant::now();
        let window = self
            .by_openid
            .entry(openid.to_owned())
            .and_upsert_with(|entry| {
                match entry
                    .map(|e| e.into_value())
                    .filter(|w| now.duration_since(w.started) < self.window)
                {
                    Some(w) => Window {
                        misses: w.misses + 1,
                        ..w
                    },
                    None => Window {
                        started: now,
                        misses: 1,
                    },
                }
            })
            .into_value();
        window.misses == MAX_MISSES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fifth_miss_throttles_until_the_window_ends() {
        let guesses = CodeGuesses::new(Duration::from_millis(200));
        for _ in 1..MAX_MISSES {
            assert!(!guesses.miss("guesser"));
            assert!(!guesses.is_throttled("guesser"));
        }
        assert!(guesses.miss("guesser"));
        assert!(guesses.is_throttled("guesser"));
        assert!(!guesses.is_throttled("someone-else"));
        std::thread::sleep(Duration::from_millis(250));
        assert!(!guesses.is_throttled("guesser"));
        assert!(!guesses.miss("guesser"));
    }
}
