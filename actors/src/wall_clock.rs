//! An `Instant` as wall-clock time (Unix milliseconds) and back: what a scene's row holds, so
//! another node, whose `Instant`s mean nothing here, reads it against its own clock.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `at` on the wall clock.
pub(crate) fn to_system(at: Instant) -> SystemTime {
    let (now, wall) = (Instant::now(), SystemTime::now());
    match at.checked_duration_since(now) {
        Some(ahead) => wall + ahead,
        None => wall - now.duration_since(at),
    }
}

/// `at` on this process's monotonic clock; a time too far back for it is its earliest.
pub(crate) fn to_instant(at: SystemTime) -> Instant {
    let (now, wall) = (Instant::now(), SystemTime::now());
    match at.duration_since(wall) {
        Ok(ahead) => now + ahead,
        Err(behind) => now.checked_sub(behind.duration()).unwrap_or(now),
    }
}

pub(crate) fn serialize<S: Serializer>(at: &Instant, serializer: S) -> Result<S::Ok, S::Error> {
    let ms = to_system(*at)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    ms.serialize(serializer)
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Instant, D::Error> {
    let ms = u64::deserialize(deserializer)?;
    Ok(to_instant(UNIX_EPOCH + Duration::from_millis(ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instant_goes_to_the_wall_clock_and_back_to_the_millisecond() {
        let now = Instant::now();
        for at in [
            now + Duration::from_secs(90),
            now.checked_sub(Duration::from_secs(5)).unwrap(),
        ] {
            let back = to_instant(to_system(at));
            let off = back.max(at) - back.min(at);
            assert!(off < Duration::from_millis(5), "{off:?}");
        }
    }
}
