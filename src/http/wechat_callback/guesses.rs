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

/// A login code about to be tried: a miss until it scans.
#[must_use = "a guess that scanned is given back with `CodeGuesses::hit`"]
pub struct Guess {
    /// Which guess of the window this is, the first being 1.
    nth: u32,
}

impl Guess {
    /// This guess, if it misses, is the one that uses up the openid's last.
    pub fn is_last(&self) -> bool {
        self.nth == MAX_MISSES
    }
}

impl CodeGuesses {
    pub fn new(window: Duration, shared: Option<&SharedLimits>) -> Self {
        Self(Sightings::new("login_code_miss", window, CAPACITY, shared))
    }

    pub fn window(&self) -> Duration {
        self.0.lifetime()
    }

    /// Counts a guess before the code is tried, so that guesses racing on one node or several
    /// cannot all pass one check: None once the openid has used up its misses for the window.
    pub async fn guess(&self, openid: &str) -> Result<Option<Guess>, StoreError> {
        let nth = self.0.sight(openid).await?;
        Ok((nth <= MAX_MISSES).then_some(Guess { nth }))
    }

    /// The openid has used up its misses for the current window.
    pub async fn is_throttled(&self, openid: &str) -> Result<bool, StoreError> {
        Ok(self.0.sightings(openid).await? >= MAX_MISSES)
    }

    /// The guess's code scanned, or could not be tried: it is not a miss.
    pub async fn hit(&self, openid: &str, _guess: Guess) {
        if let Err(e) = self.0.give_back(openid).await {
            tracing::warn!(error = %e, "a login code that scanned still counts as a miss");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_fifth_miss_throttles_until_the_window_ends() {
        let guesses = CodeGuesses::new(Duration::from_millis(200), None);
        for _ in 1..MAX_MISSES {
            let guess = guesses.guess("guesser").await.unwrap().expect("allowed");
            assert!(!guess.is_last());
        }
        assert!(!guesses.is_throttled("guesser").await.unwrap());
        assert!(guesses.guess("guesser").await.unwrap().unwrap().is_last());
        assert!(guesses.is_throttled("guesser").await.unwrap());
        assert!(guesses.guess("guesser").await.unwrap().is_none());
        assert!(guesses.guess("someone-else").await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(!guesses.guess("guesser").await.unwrap().unwrap().is_last());
    }

    #[tokio::test]
    async fn a_guess_that_scanned_is_given_back() {
        let guesses = CodeGuesses::new(Duration::from_secs(60), None);
        for _ in 0..10 {
            let guess = guesses.guess("user").await.unwrap().expect("allowed");
            guesses.hit("user", guess).await;
        }
        for _ in 0..MAX_MISSES {
            assert!(guesses.guess("user").await.unwrap().is_some());
        }
        assert!(guesses.guess("user").await.unwrap().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_guesses_get_no_more_than_the_misses() {
        let guesses = std::sync::Arc::new(CodeGuesses::new(Duration::from_secs(60), None));
        let racing: Vec<_> = (0..20)
            .map(|_| {
                let guesses = guesses.clone();
                tokio::spawn(async move { guesses.guess("racer").await.unwrap().is_some() })
            })
            .collect();
        let mut allowed = 0;
        for guess in racing {
            allowed += u32::from(guess.await.unwrap());
        }
        assert_eq!(allowed, MAX_MISSES);
    }
}
