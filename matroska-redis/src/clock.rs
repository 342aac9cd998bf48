//! The client's estimate of the server's clock, for the fill tokens of misses that the plain read
//! serves without a script.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a reading of the server's clock is used for fill tokens; after that, the next miss
/// reads the clock again (through the `get` script).
pub(crate) const READING_TTL: Duration = Duration::from_secs(30);

/// A reading of the server's clock: the client's instant when a reply arrived, and the server's
/// time (ms) read while handling it. The server's time at a later instant is then at least the
/// reading plus the time elapsed: an estimate from below, so that a token never looks younger
/// than it is while the server's clock runs forward (a token looking older only makes a fill
/// refused). A server clock that steps back is caught by the scripts instead: they refuse a
/// token issued later than their clock allows, and the client then drops its reading
/// ([`ServerClock::forget`]).
#[derive(Debug, Default)]
pub(crate) struct ServerClock {
    reading: Mutex<Option<(Instant, u64)>>,
}

impl ServerClock {
    pub(crate) fn observe(&self, server_ms: u64, received: Instant) {
        if let Ok(mut reading) = self.reading.lock() {
            *reading = Some((received, server_ms));
        }
    }

    /// Drops the reading: the next miss reads the server's clock again.
    pub(crate) fn forget(&self) {
        if let Ok(mut reading) = self.reading.lock() {
            *reading = None;
        }
    }

    /// The server's time now, from below; `None` without a recent reading.
    pub(crate) fn estimate(&self) -> Option<u64> {
        self.estimate_at(Instant::now())
    }

    fn estimate_at(&self, now: Instant) -> Option<u64> {
        let (at, server_ms) = (*self.reading.lock().ok()?)?;
        let age = now.checked_duration_since(at)?;
        if age > READING_TTL {
            return None;
        }
        let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        // Clocks drift apart: take off a millisecond per second (far more than they do).
        let margin = 1 + age_ms / 1000;
        Some((server_ms + age_ms).saturating_sub(margin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_from_below_and_expires() {
        let clock = ServerClock::default();
        let at = Instant::now();
        assert_eq!(clock.estimate_at(at), None, "no reading yet");
        clock.observe(1_000_000, at);
        assert_eq!(
            clock.estimate_at(at),
            Some(999_999),
            "a millisecond's margin"
        );
        assert_eq!(
            clock.estimate_at(at + Duration::from_millis(2500)),
            Some(1_002_497),
            "elapsed time, less a millisecond per second"
        );
        assert_eq!(
            clock.estimate_at(at + READING_TTL),
            Some(1_000_000 + 30_000 - 31)
        );
        assert_eq!(
            clock.estimate_at(at + READING_TTL + Duration::from_millis(1)),
            None,
            "too old"
        );
        clock.forget();
        assert_eq!(clock.estimate_at(at), None, "forgotten");
    }
}
