//! The time policy of a [`Cache`](crate::Cache): item history, refresh points, fail-safe and
//! timeouts. Everything here is written into, or read from, the envelope's times
//! ([`Meta`]); stores see only bytes and a time to live.

use std::hash::BuildHasher as _;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::codec::Meta;
use crate::key::Key;

/// The default longest refresh lease (see [`CacheBuilder::refresh_lease`](crate::CacheBuilder::refresh_lease)).
pub(crate) const DEFAULT_REFRESH_LEASE: Duration = Duration::from_secs(30);

/// The settings behind the envelope's times.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// The wall clock of item history and refresh points.
    pub(crate) clock: Arc<dyn Clock>,
    /// The default refresh point, as a fraction of the time to live.
    pub(crate) refresh_fraction: Option<f64>,
    /// How much earlier than its point an entry may be refreshed, as a fraction of that point.
    pub(crate) jitter: f64,
    /// The longest refresh lease.
    pub(crate) refresh_lease: Duration,
    /// Fail-safe: how long past its logical expiry a value is kept as a fallback.
    pub(crate) max_staleness: Option<Duration>,
    /// How long a load with a usable fallback may run before the fallback is served.
    pub(crate) soft_timeout: Option<Duration>,
    /// How long a load may run at all.
    pub(crate) hard_timeout: Option<Duration>,
}

/// A jitter fraction in 0..=0.9 (NaN: none).
pub(crate) fn clamp_jitter(fraction: f64) -> f64 {
    if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 0.9)
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Policy {
    /// Now on the cache's clock, in ms since the epoch (at least 1: 0 means "none" in an
    /// envelope).
    pub(crate) fn now_ms(&self) -> u64 {
        ms(self.clock.now()).max(1)
    }

    /// The envelope times of a value written now with time to live `ttl`, and the time to live
    /// to give the store (longer than `ttl` by the maximum staleness under fail-safe, so that the
    /// value is kept as a fallback). `modified_ms`: the previous value's `last_modified` when the
    /// new encoded value is byte-identical to it.
    pub(crate) fn stamp(
        &self,
        key: &Key,
        ttl: Option<Duration>,
        refresh_after: Option<Duration>,
        jitter: Option<f64>,
        modified_ms: Option<u64>,
    ) -> (Meta, Option<Duration>) {
        let jitter = jitter.map_or(self.jitter, clamp_jitter);
        let now = self.now_ms();
        let point = match (refresh_after, ttl, self.refresh_fraction) {
            (Some(after), Some(ttl), _) if after >= ttl => None,
            (Some(after), _, _) => Some(after),
            (None, Some(ttl), Some(fraction)) => Some(ttl.mul_f64(fraction)),
            _ => None,
        };
        let refresh_at_ms = point.map_or(0, |point| {
            let early = if jitter > 0.0 {
                // A uniform share of the jitter span, from a randomly keyed hash.
                let roll = std::hash::RandomState::new().hash_one((key, now));
                #[allow(clippy::cast_precision_loss)] // A 53-bit share is plenty.
                let share = (roll >> 11) as f64 / (1_u64 << 53) as f64;
                point.mul_f64(jitter * share)
            } else {
                Duration::ZERO
            };
            now.saturating_add(ms(point.saturating_sub(early)).max(1))
        });
        let meta = Meta {
            last_retrieved_ms: now,
            last_modified_ms: modified_ms.filter(|&m| m != 0).unwrap_or(now),
            refresh_at_ms,
            expires_at_ms: ttl.map_or(0, |ttl| now.saturating_add(ms(ttl))),
        };
        let store_ttl = match (ttl, self.max_staleness) {
            (Some(ttl), Some(stale)) => Some(ttl.saturating_add(stale)),
            (ttl, _) => ttl,
        };
        (meta, store_ttl)
    }

    /// Whether an entry is past its logical expiry.
    pub(crate) fn expired(meta: &Meta, now_ms: u64) -> bool {
        meta.expires_at_ms != 0 && now_ms >= meta.expires_at_ms
    }

    /// Whether an entry is past its refresh point.
    pub(crate) fn refresh_due(meta: &Meta, now_ms: u64) -> bool {
        meta.refresh_at_ms != 0 && now_ms >= meta.refresh_at_ms
    }

    /// Whether an expired entry may still be served as a fail-safe fallback.
    pub(crate) fn fallback_usable(&self, meta: &Meta) -> bool {
        let Some(stale) = self.max_staleness else {
            return false;
        };
        meta.expires_at_ms != 0 && self.now_ms() < meta.expires_at_ms.saturating_add(ms(stale))
    }

    /// How long a load may run: the soft timeout when a fallback is there to serve, else (and
    /// never longer than) the hard timeout.
    pub(crate) fn load_limit(&self, has_fallback: bool) -> Option<Duration> {
        let soft = self.soft_timeout.filter(|_| has_fallback);
        match (soft, self.hard_timeout) {
            (Some(soft), Some(hard)) => Some(soft.min(hard)),
            (soft, hard) => soft.or(hard),
        }
    }

    /// The refresh lease for an entry: one refresh interval (the distance from its load to its
    /// refresh point, less the jitter, so that the refreshed entry's own refresh point is never
    /// inside it), never past its logical expiry (a refresh that has not finished by then is no
    /// longer ahead of anything), at most the configured lease.
    pub(crate) fn lease_for(&self, meta: &Meta) -> Duration {
        let now = self.now_ms();
        let interval =
            Duration::from_millis(meta.refresh_at_ms.saturating_sub(meta.last_retrieved_ms))
                .mul_f64(1.0 - self.jitter);
        let mut lease = self.refresh_lease.min(interval);
        if meta.expires_at_ms > now {
            lease = lease.min(Duration::from_millis(meta.expires_at_ms - now));
        }
        lease.max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MockClock;

    fn policy(clock: &MockClock) -> Policy {
        Policy {
            clock: Arc::new(clock.clone()),
            refresh_fraction: Some(0.5),
            jitter: 0.0,
            refresh_lease: DEFAULT_REFRESH_LEASE,
            max_staleness: None,
            soft_timeout: None,
            hard_timeout: None,
        }
    }

    #[test]
    fn refresh_points_come_from_the_fraction_or_the_entry_and_never_after_expiry() {
        let clock = MockClock::new();
        clock.advance(Duration::from_secs(1000));
        let p = policy(&clock);
        let k = Key::new("k").unwrap();
        let ttl = Some(Duration::from_secs(10));
        let (meta, store_ttl) = p.stamp(&k, ttl, None, None, None);
        assert_eq!(meta.refresh_at_ms, 1_005_000);
        assert_eq!(meta.expires_at_ms, 1_010_000);
        assert_eq!(store_ttl, ttl);
        let (meta, _) = p.stamp(&k, ttl, Some(Duration::from_secs(8)), None, None);
        assert_eq!(meta.refresh_at_ms, 1_008_000);
        let (meta, _) = p.stamp(&k, ttl, Some(Duration::from_secs(10)), None, None);
        assert_eq!(meta.refresh_at_ms, 0, "a point at expiry is ignored");
        let (meta, _) = p.stamp(&k, None, None, None, None);
        assert_eq!((meta.refresh_at_ms, meta.expires_at_ms), (0, 0));
    }

    #[test]
    fn jitter_only_moves_the_point_earlier_within_its_span() {
        let clock = MockClock::new();
        let mut p = policy(&clock);
        p.jitter = 0.2;
        let ttl = Some(Duration::from_secs(100));
        let points: Vec<u64> = (0..200)
            .map(|i| {
                let k = Key::new(format!("k{i}")).unwrap();
                p.stamp(&k, ttl, None, None, None).0.refresh_at_ms
            })
            .collect();
        assert!(
            points.iter().all(|&at| (40_001..=50_001).contains(&at)),
            "{points:?}"
        );
        let distinct: std::collections::HashSet<_> = points.iter().collect();
        assert!(distinct.len() > 100, "jitter spreads the points");
        // An entry's own jitter wins over the cache's.
        let k = Key::new("k").unwrap();
        assert_eq!(
            p.stamp(&k, ttl, None, Some(0.0), None).0.refresh_at_ms,
            50_001
        );
    }

    #[test]
    fn fail_safe_extends_the_store_ttl_and_bounds_the_fallback() {
        let clock = MockClock::new();
        clock.advance(Duration::from_secs(1));
        let mut p = policy(&clock);
        p.max_staleness = Some(Duration::from_secs(60));
        let k = Key::new("k").unwrap();
        let (meta, store_ttl) = p.stamp(&k, Some(Duration::from_secs(10)), None, None, Some(7));
        assert_eq!(store_ttl, Some(Duration::from_secs(70)));
        assert_eq!(
            meta.last_modified_ms, 7,
            "an identical value keeps its time"
        );
        clock.advance(Duration::from_secs(10));
        assert!(Policy::expired(&meta, p.now_ms()));
        assert!(p.fallback_usable(&meta));
        clock.advance(Duration::from_secs(60));
        assert!(!p.fallback_usable(&meta), "past the maximum staleness");
    }

    #[test]
    fn a_lease_lasts_one_refresh_interval_and_ends_at_expiry() {
        let clock = MockClock::new();
        clock.advance(Duration::from_secs(100));
        let p = policy(&clock);
        let k = Key::new("k").unwrap();
        let (meta, _) = p.stamp(&k, Some(Duration::from_secs(10)), None, None, None);
        assert_eq!(p.lease_for(&meta), Duration::from_secs(5), "one interval");
        clock.advance(Duration::from_secs(8));
        assert_eq!(p.lease_for(&meta), Duration::from_secs(2), "until expiry");
        let (meta, _) = p.stamp(&k, Some(Duration::from_secs(1000)), None, None, None);
        assert_eq!(p.lease_for(&meta), DEFAULT_REFRESH_LEASE, "at most the cap");
    }

    #[test]
    fn the_soft_timeout_applies_only_with_a_fallback() {
        let clock = MockClock::new();
        let mut p = policy(&clock);
        p.soft_timeout = Some(Duration::from_millis(10));
        assert_eq!(p.load_limit(false), None);
        assert_eq!(p.load_limit(true), Some(Duration::from_millis(10)));
        p.hard_timeout = Some(Duration::from_millis(5));
        assert_eq!(p.load_limit(true), Some(Duration::from_millis(5)));
        assert_eq!(p.load_limit(false), Some(Duration::from_millis(5)));
    }
}
