//! Login codes are six digits, so sending codes at random would find live ones: a WeChat
//! user who sends [`MAX_MISSES`] codes that log nothing in within a window is ignored for the
//! rest of it. On several nodes the misses are counted in the store, so that spreading guesses
//! over nodes gains nothing.

use std::time::Duration;

use wxlogin_storage::{SharedLimits, StoreError};

use crate::http::sightings::Sightings;

/// Wrong codes an openid may send per window.
pub const MAX_MISSES: u32 = 5;
/// Openids remembered at once on one node; a flood of new openids evicts the oldest.
const CAPACITY: u64 = 100_000;

pub struct CodeGuesses(Sightings);

impl CodeGuesses {
    pub fn new(window: Duration, shared: Option<&SharedLimits>) -> Self {
        Self(Sightings::new("login_code_miss", window, CAPACITY, shared))
    }

    pub fn window(&self) -> Duration {
        self.0.lifetime()
    }

    /// The openid has used up its misses for the current window.
    pub async fn is_throttled(&self, openid: &str) -> Result<bool, StoreError> {
        Ok(self.0.sightings(openid).await? >= MAX_MISSES)
    }

    /// Counts a code that logged nothing in. True when this miss throttles the openid.
    pub async fn miss(&self, openid: &str) -> Result<bool, StoreError> {
        Ok(self.0.sight(openid).await? == MAX_MISSES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_fifth_miss_throttles_until_the_window_ends() {
        let guesses = CodeGuesses::new(Duration::from_millis(200), None);
        for _ in 1..MAX_MISSES {
            assert!(!guesses.miss("guesser").await.unwrap());
            assert!(!guesses.is_throttled("guesser").await.unwrap());
        }
        assert!(guesses.miss("guesser").await.unwrap());
        assert!(guesses.is_throttled("guesser").await.unwrap());
        assert!(!guesses.is_throttled("someone-else").await.unwrap());
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(!guesses.is_throttled("guesser").await.unwrap());
        assert!(!guesses.miss("guesser").await.unwrap());
    }
}
