//! How often a key was seen within a window that opens at its first sighting: the callback's
//! redelivery filter and web authorization's used states (is this the first time?), the
//! login-code guess throttle (how many misses?). Kept in this node's memory (moka, so idle keys
//! vanish on their own) on a store only this node uses; in the store, shared by every node,
//! on PostgreSQL ([`SharedLimits`]), so that a key seen by one node is seen by all.

use std::time::{Duration, Instant};

use moka::ops::compute::Op;
use moka::sync::Cache;
use wxlogin_storage::{SharedLimits, StoreError};

pub struct Sightings {
    /// What the keys are, to tell them from other kinds' in the shared table.
    kind: &'static str,
    lifetime: Duration,
    seen: Seen,
}

enum Seen {
    Local(Cache<String, Window>),
    Shared(SharedLimits),
}

#[derive(Clone, Copy)]
struct Window {
    opened: Instant,
    sightings: u32,
}

impl Sightings {
    /// Windows of `lifetime`; on this node at most `capacity` keys at once (a flood of new
    /// keys evicts the least used), in the store when it is `shared`.
    pub fn new(
        kind: &'static str,
        lifetime: Duration,
        capacity: u64,
        shared: Option<&SharedLimits>,
    ) -> Self {
        let seen = match shared {
            Some(shared) => Seen::Shared(shared.clone()),
            None => Seen::Local(
                Cache::builder()
                    .max_capacity(capacity)
                    .time_to_live(lifetime)
                    .build(),
            ),
        };
        Self {
            kind,
            lifetime,
            seen,
        }
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Counts a sighting of `key`: how many its window holds, this one included.
    pub async fn sight(&self, key: &str) -> Result<u32, StoreError> {
        let cache = match &self.seen {
            Seen::Shared(shared) => return shared.sight(self.kind, key, self.lifetime).await,
            Seen::Local(cache) => cache,
        };
        let now = Instant::now();
        let window = cache
            .entry(key.to_owned())
            .and_upsert_with(|entry| {
                match entry.map(|e| e.into_value()).filter(|w| self.open(w, now)) {
                    Some(w) => Window {
                        sightings: w.sightings + 1,
                        ..w
                    },
                    None => Window {
                        opened: now,
                        sightings: 1,
                    },
                }
            })
            .into_value();
        Ok(window.sightings)
    }

    /// [`Sightings::first`], unless `key` has an open window in `unless` (of the same store):
    /// then `None`, and nothing counted. One round trip on a shared store.
    pub async fn first_unless(
        &self,
        key: &str,
        unless: &Sightings,
    ) -> Result<Option<bool>, StoreError> {
        if let Seen::Shared(shared) = &self.seen {
            let seen = shared
                .sight_unless(self.kind, key, self.lifetime, unless.kind)
                .await?;
            return Ok(seen.map(|sightings| sightings == 1));
        }
        if unless.sightings(key).await? > 0 {
            return Ok(None);
        }
        self.first(key).await.map(Some)
    }

    /// True the first time `key` is seen in a window.
    pub async fn first(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.sight(key).await? == 1)
    }

    /// How many sightings `key`'s window holds, without counting one.
    pub async fn sightings(&self, key: &str) -> Result<u32, StoreError> {
        match &self.seen {
            Seen::Shared(shared) => shared.sightings(self.kind, key).await,
            Seen::Local(cache) => Ok(cache
                .get(key)
                .filter(|w| self.open(w, Instant::now()))
                .map_or(0, |w| w.sightings)),
        }
    }

    /// Takes back one sighting of `key` from its open window, if it holds any.
    pub async fn give_back(&self, key: &str) -> Result<(), StoreError> {
        let cache = match &self.seen {
            Seen::Shared(shared) => return shared.give_back_sighting(self.kind, key).await,
            Seen::Local(cache) => cache,
        };
        let now = Instant::now();
        cache.entry(key.to_owned()).and_compute_with(|entry| {
            match entry.map(|e| e.into_value()).filter(|w| self.open(w, now)) {
                Some(w) if w.sightings > 0 => Op::Put(Window {
                    sightings: w.sightings - 1,
                    ..w
                }),
                _ => Op::Nop,
            }
        });
        Ok(())
    }

    /// Forgets `key`: its next sighting is a first again.
    pub async fn forget(&self, key: &str) -> Result<(), StoreError> {
        match &self.seen {
            Seen::Shared(shared) => shared.forget(self.kind, key).await,
            Seen::Local(cache) => {
                cache.invalidate(key);
                Ok(())
            }
        }
    }

    /// moka may keep an entry past its window (an update restarts its time to live).
    fn open(&self, window: &Window, now: Instant) -> bool {
        now.duration_since(window.opened) < self.lifetime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_within_a_window_that_opens_at_the_first_sighting() {
        let seen = Sightings::new("test", Duration::from_millis(200), 100, None);
        assert!(seen.first("a").await.unwrap());
        assert!(!seen.first("a").await.unwrap());
        assert_eq!(seen.sight("a").await.unwrap(), 3);
        assert_eq!(seen.sightings("a").await.unwrap(), 3);
        assert_eq!(seen.sightings("b").await.unwrap(), 0);
        assert!(seen.first("b").await.unwrap());
        seen.forget("a").await.unwrap();
        assert!(seen.first("a").await.unwrap());
        // Sightings inside the window do not extend it.
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(!seen.first("a").await.unwrap());
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(seen.sightings("a").await.unwrap(), 0);
        assert!(seen.first("a").await.unwrap());
    }
}
