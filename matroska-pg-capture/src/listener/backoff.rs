//! Capped exponential back-off with jitter, for reconnecting and for retrying a failing store.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Delays between attempts: the first retry is immediate (a dropped connection is usually back at
/// once, and every moment without `LISTEN` widens the gap), then `min`, `2 min`, ... up to `max`,
/// each drawn uniformly from its upper half so that many processes do not retry in step.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
    immediate_first: bool,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration, immediate_first: bool) -> Self {
        Self {
            min,
            max: max.max(min),
            failures: 0,
            immediate_first,
        }
    }

    /// The delay before the next attempt, counting one more failure.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let failures = self.failures;
        self.failures = self.failures.saturating_add(1);
        let step = if self.immediate_first {
            match failures.checked_sub(1) {
                None => return Duration::ZERO,
                Some(step) => step,
            }
        } else {
            failures
        };
        let ceiling = self
            .min
            .checked_mul(1_u32.checked_shl(step.min(31)).unwrap_or(u32::MAX))
            .map_or(self.max, |d| d.min(self.max));
        let half = ceiling / 2;
        half + jitter(ceiling.saturating_sub(half))
    }

    /// A success: the next failure starts over.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A pseudo-random duration in `0..=span` (no cryptographic quality needed).
fn jitter(span: Duration) -> Duration {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    let random = RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed));
    Duration::from_nanos(random % nanos.saturating_add(1).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immediate_then_doubling_within_jitter_and_capped() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(1));
        let mut backoff = Backoff::new(min, max, true);
        assert_eq!(backoff.next_delay(), Duration::ZERO);
        for ceiling in [100, 200, 400, 800, 1000, 1000, 1000] {
            let delay = backoff.next_delay();
            let ceiling = Duration::from_millis(ceiling);
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{delay:?} vs {ceiling:?}"
            );
        }
        for _ in 0..100 {
            assert!(backoff.next_delay() <= max);
        }
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::ZERO);
    }

    #[test]
    fn without_immediate_first_starts_at_min() {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5), false);
        let first = backoff.next_delay();
        assert!(first >= Duration::from_millis(25) && first <= Duration::from_millis(50));
    }
}
