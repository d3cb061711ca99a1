//! WeChat's redelivery filter: each push is acted on once, and a push whose handler died (its
//! node killed, or stuck past WeChat's 5 s) is acted on by WeChat's retry, on any node.
//!
//! A push goes through two marks. Taking it up takes a short lease (`handling`); acting on it
//! leaves a long mark (`handled`). A retry that finds the long mark is a redelivery; one that
//! finds a lease waits for it to turn into the long mark or to run out, and then takes it up
//! itself. A mark made before acting would answer the retry of a push that was never acted on
//! as a redelivery: the scan lost.

use std::time::{Duration, Instant};

use wxlogin_storage::{SharedLimits, StoreError};

use crate::http::sightings::Sightings;

/// How long a handler holds a push: less than WeChat's 5 s between deliveries, so a dead
/// handler's lease has run out when the retry comes, and a retry that waits for it still
/// answers within its own 5 s.
const HANDLING_LEASE: Duration = Duration::from_secs(4);
/// How often a retry waiting on a lease looks again.
const WAIT_STEP: Duration = Duration::from_millis(50);
/// A lease this close to its end is not released: it may be another handler's already.
const RELEASE_MARGIN: Duration = Duration::from_millis(500);

pub struct Deliveries {
    lease: Duration,
    handling: Sightings,
    handled: Sightings,
}

/// What a push is, once taken up.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Nobody acted on it: act, then [`Deliveries::handled`] or [`Deliveries::release`].
    Taken(Lease),
    /// Acted on already: acknowledge.
    Redelivery,
}

/// A push held: when, by this node's clock, and whether the lease is this handler's (a retry
/// that waited out its deadline acts under another handler's lease).
#[derive(Debug, PartialEq, Eq)]
pub struct Lease {
    taken_at: Instant,
    own: bool,
}

impl Deliveries {
    /// Acted-on pushes are remembered for `memory`, in the store when it is `shared`.
    pub fn new(memory: Duration, capacity: u64, shared: Option<&SharedLimits>) -> Self {
        Self::with_lease(HANDLING_LEASE, memory, capacity, shared)
    }

    fn with_lease(
        lease: Duration,
        memory: Duration,
        capacity: u64,
        shared: Option<&SharedLimits>,
    ) -> Self {
        Self {
            lease,
            handling: Sightings::new("delivery_handling", lease, capacity, shared),
            handled: Sightings::new("delivery_handled", memory, capacity, shared),
        }
    }

    /// Takes up the push `key`, waiting at most a lease while another handler holds it.
    pub async fn take(&self, key: &str) -> Result<Delivery, StoreError> {
        // A lease's window opens at its first sighting and sightings inside it do not extend
        // it, so the wait ends within a lease; the deadline keeps retries that wait behind one
        // another (replays of one push) from waiting longer.
        // Each look reads the handled mark with the lease, so a mark made while this one slept
        // is seen.
        let deadline = Instant::now() + self.lease;
        loop {
            let Some(first) = self.handling.first_unless(key, &self.handled).await? else {
                return Ok(Delivery::Redelivery);
            };
            if first || Instant::now() >= deadline {
                let taken_at = Instant::now();
                return Ok(Delivery::Taken(Lease {
                    taken_at,
                    own: first,
                }));
            }
            tokio::time::sleep(WAIT_STEP).await;
        }
    }

    /// The push taken up was acted on: its retries are redeliveries.
    pub async fn handled(&self, key: &str) -> Result<(), StoreError> {
        self.handled.sight(key).await.map(drop)
    }

    /// Acting on the push taken up failed: its retry takes it up at once. A lease that ran out,
    /// or was never this handler's, is left alone: the one held now is another's.
    pub async fn release(&self, key: &str, lease: Lease) -> Result<(), StoreError> {
        // The margin: the lease runs by the store's clock, from a moment before `taken_at`.
        if lease.own && lease.taken_at.elapsed() + RELEASE_MARGIN < self.lease {
            self.handling.forget(key).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(delivery: Delivery) -> Lease {
        match delivery {
            Delivery::Taken(lease) => lease,
            Delivery::Redelivery => panic!("taken up as a redelivery"),
        }
    }

    fn deliveries(lease_ms: u64) -> Deliveries {
        Deliveries::with_lease(
            Duration::from_millis(lease_ms),
            Duration::from_secs(60),
            100,
            None,
        )
    }

    #[tokio::test]
    async fn a_push_acted_on_is_a_redelivery_after() {
        let deliveries = deliveries(300);
        taken(deliveries.take("a").await.unwrap());
        deliveries.handled("a").await.unwrap();
        assert_eq!(deliveries.take("a").await.unwrap(), Delivery::Redelivery);
        // Past the lease too: the long mark is what tells.
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(deliveries.take("a").await.unwrap(), Delivery::Redelivery);
        taken(deliveries.take("b").await.unwrap());
    }

    #[tokio::test]
    async fn a_push_whose_handler_went_silent_is_taken_up_when_its_lease_runs_out() {
        let deliveries = deliveries(300);
        let first = Instant::now();
        taken(deliveries.take("a").await.unwrap());
        // The handler never says how it went: the retry waits out the lease, then acts.
        taken(deliveries.take("a").await.unwrap());
        assert!(first.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn a_retry_waiting_on_a_handler_that_finishes_is_a_redelivery() {
        let deliveries = std::sync::Arc::new(deliveries(10_000));
        taken(deliveries.take("a").await.unwrap());
        let retry = tokio::spawn({
            let deliveries = deliveries.clone();
            async move { deliveries.take("a").await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !retry.is_finished(),
            "the retry waits while the push is held"
        );
        deliveries.handled("a").await.unwrap();
        assert_eq!(retry.await.unwrap(), Delivery::Redelivery);
    }

    #[tokio::test]
    async fn a_push_released_after_a_failure_is_taken_up_at_once() {
        let deliveries = deliveries(10_000);
        let lease = taken(deliveries.take("a").await.unwrap());
        deliveries.release("a", lease).await.unwrap();
        let retried = Instant::now();
        taken(deliveries.take("a").await.unwrap());
        assert!(retried.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_handler_failing_after_its_lease_ran_out_frees_no_one_elses() {
        // Long enough that the third's wait below is well inside its own lease, however slow
        // this machine is.
        let deliveries = std::sync::Arc::new(deliveries(1500));
        let stale = taken(deliveries.take("a").await.unwrap());
        // The retry takes it up once the lease runs out, and holds it.
        taken(deliveries.take("a").await.unwrap());
        deliveries.release("a", stale).await.unwrap();
        let third = tokio::spawn({
            let deliveries = deliveries.clone();
            async move { deliveries.take("a").await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!third.is_finished(), "the retry's lease still holds");
        deliveries.handled("a").await.unwrap();
        assert_eq!(third.await.unwrap(), Delivery::Redelivery);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn retries_waiting_together_wait_one_lease_at_most() {
        let deliveries = std::sync::Arc::new(deliveries(400));
        taken(deliveries.take("a").await.unwrap());
        let waiting = Instant::now();
        let retries: Vec<_> = (0..4)
            .map(|_| {
                let deliveries = deliveries.clone();
                tokio::spawn(async move {
                    deliveries.take("a").await.unwrap();
                    waiting.elapsed()
                })
            })
            .collect();
        let mut longest = Duration::ZERO;
        for retry in retries {
            longest = longest.max(retry.await.unwrap());
        }
        // Without the deadline each waits for the one before it: 400, 800, 1200, 1600 ms.
        assert!(longest < Duration::from_millis(1200), "{longest:?}");
    }
}
