//! [`CacheBuilder`]: the settings of a [`Cache`].

use std::sync::Arc;
use std::time::Duration;

use super::flight::Flights;
use super::policy::Policy;
use super::stats::Counters;
use super::telemetry::Timings;
use super::{Cache, Inner};
use crate::clock::Clock;
use crate::codec::{Codec, MsgPack};
use crate::store::Store;

/// Configures a [`Cache`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use matroska_core::{Cache, MemoryStore, codec::Json};
///
/// let cache = Cache::builder(MemoryStore::new())
///     .codec(Json)
///     .schema_version(2)
///     .default_ttl(Duration::from_secs(600))
///     .fail_open(true)
///     .build();
/// # let _ = cache;
/// ```
#[derive(Debug)]
#[must_use]
pub struct CacheBuilder<S, C = MsgPack> {
    pub(super) store: S,
    pub(super) codec: C,
    pub(super) schema: u16,
    pub(super) default_ttl: Option<Duration>,
    pub(super) fail_open: bool,
    pub(super) max_value_len: usize,
    pub(super) name: String,
    pub(super) policy: Policy,
}

impl<S: Store, C: Codec> CacheBuilder<S, C> {
    /// The codec (default [`MsgPack`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::{Cache, MemoryStore, codec::Json};
    ///
    /// let cache = Cache::builder(MemoryStore::new()).codec(Json).build();
    /// # let _ = cache;
    /// ```
    pub fn codec<C2: Codec>(self, codec: C2) -> CacheBuilder<S, C2> {
        CacheBuilder {
            store: self.store,
            codec,
            schema: self.schema,
            default_ttl: self.default_ttl,
            fail_open: self.fail_open,
            max_value_len: self.max_value_len,
            name: self.name,
            policy: self.policy,
        }
    }

    /// The schema version written with every value (default 0). Bump it when a cached type
    /// changes incompatibly: entries written with another version are misses.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = matroska_core::Cache::builder(matroska_core::MemoryStore::new())
    ///     .schema_version(3)
    ///     .build();
    /// # let _ = cache;
    /// ```
    pub fn schema_version(mut self, version: u16) -> Self {
        self.schema = version;
        self
    }

    /// The time to live of entries that do not set one (default: none, entries do not expire).
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = matroska_core::Cache::builder(matroska_core::MemoryStore::new())
    ///     .default_ttl(std::time::Duration::from_secs(60))
    ///     .build();
    /// # let _ = cache;
    /// ```
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// Fail open (default: off): when the store has a transient failure (it is down, restarting or
    /// timing out), reads are misses and writes of values are skipped, so the application keeps
    /// working from its database. Invalidations, deletes and clears still fail loudly: losing one
    /// could leave stale data behind.
    ///
    /// A read that failed open has no fill token, so what its caller loads is never stored and
    /// never shared with other callers (nothing orders that load against the invalidations that
    /// ran meanwhile): while the store is unreachable, every
    /// [`get_or_insert_with`](Cache::get_or_insert_with) runs its own loader.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = matroska_core::Cache::builder(matroska_core::MemoryStore::new())
    ///     .fail_open(true)
    ///     .build();
    /// # let _ = cache;
    /// ```
    pub fn fail_open(mut self, fail_open: bool) -> Self {
        self.fail_open = fail_open;
        self
    }

    /// The largest encoded value accepted, in bytes (default
    /// [`DEFAULT_MAX_VALUE_LEN`](crate::DEFAULT_MAX_VALUE_LEN), 32 MiB; the store's own limit
    /// applies too).
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = matroska_core::Cache::builder(matroska_core::MemoryStore::new())
    ///     .max_value_len(1024 * 1024)
    ///     .build();
    /// # let _ = cache;
    /// ```
    pub fn max_value_len(mut self, bytes: usize) -> Self {
        self.max_value_len = bytes;
        self
    }

    /// The cache's name (default `"default"`): the `cache` label of its metrics, to tell two
    /// caches on one store apart.
    ///
    /// With the `metrics` feature, the cache reports to the recorder installed (with
    /// `metrics::set_global_recorder`, or an exporter's `install`) when [`build`](Self::build)
    /// runs: install it first. Every metric carries the labels `cache` and `store`
    /// ([`Store::name`]); the list is in the [`Cache`] docs.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = matroska_core::Cache::builder(matroska_core::MemoryStore::new())
    ///     .name("articles")
    ///     .build();
    /// # let _ = cache;
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Refresh ahead (default: off): an entry with a time to live gets a refresh point at this
    /// fraction of it (clamped to 0.01..=0.99; [`Loaded::refresh_after`](crate::Loaded::refresh_after)
    /// sets one per entry). A read through [`Cache::fetch_eager`] past that point returns the
    /// cached value at once and starts one background refresh of the key: a normal race-safe fill
    /// whose token is taken when it starts (a refresh that races an invalidation is not stored),
    /// at most one per key in this process, and one per key across the processes sharing the
    /// store while its refresh lease runs (see [`refresh_lease`](Self::refresh_lease)). An
    /// invalidated entry is gone: it is never served while a refresh runs. Background refreshes
    /// need a Tokio runtime; without one, none starts.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let cache = matroska_core::Cache::builder(matroska_core::MemoryStore::new())
    ///     .default_ttl(Duration::from_secs(60))
    ///     .refresh_ahead(0.8) // refresh from 48 s on
    ///     .refresh_jitter(0.1) // up to 10% earlier, so that entries cached together spread out
    ///     .build();
    /// # let _ = cache;
    /// ```
    pub fn refresh_ahead(mut self, fraction: f64) -> Self {
        let clamped = if fraction.is_nan() {
            0.5
        } else {
            fraction.clamp(0.01, 0.99)
        };
        if clamped.to_bits() != fraction.to_bits() {
            tracing::warn!(fraction, clamped, "refresh_ahead: fraction out of range");
        }
        self.policy.refresh_fraction = Some(clamped);
        self
    }

    /// Moves each refresh point earlier by a random share of up to `fraction` of it (default 0,
    /// clamped to 0..=0.9): entries cached together are then not refreshed together.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = matroska_core::Cache::builder(matroska_core::MemoryStore::new())
    ///     .refresh_jitter(0.2)
    ///     .build();
    /// # let _ = cache;
    /// ```
    pub fn refresh_jitter(mut self, fraction: f64) -> Self {
        self.policy.jitter = super::policy::clamp_jitter(fraction);
        self
    }

    /// The longest refresh lease (default 30 s): how long the process that starts a refresh of a
    /// key holds it against the others sharing the store. A lease lasts one refresh interval of
    /// the entry (from its load to its refresh point, less the jitter) and ends at the entry's
    /// logical expiry, never later than this; it is never released early, so after a failed
    /// refresh the key is refreshed again (by anyone) only once the lease ran out.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = matroska_core::Cache::builder(matroska_core::MemoryStore::new())
    ///     .refresh_lease(std::time::Duration::from_secs(5))
    ///     .build();
    /// # let _ = cache;
    /// ```
    pub fn refresh_lease(mut self, lease: Duration) -> Self {
        self.policy.refresh_lease = lease.max(Duration::from_millis(1));
        self
    }

    /// Fail-safe (default: off): keep every value with a time to live for `max_staleness` past
    /// its logical expiry (the store's time to live is longer by that much), and when the load
    /// that replaces it fails or runs past the [soft timeout](Self::soft_timeout), return that
    /// last good value instead of the error, marked [`Origin::Stale`](crate::Origin::Stale) and
    /// counted in [`CacheStats::stale_served`](crate::CacheStats::stale_served). Only values that
    /// expired by time qualify: an invalidated, deleted or cleared value is gone from the store
    /// and is never a fallback. Past `max_staleness`, or without a fallback, the error surfaces.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let cache = matroska_core::Cache::builder(matroska_core::MemoryStore::new())
    ///     .default_ttl(Duration::from_secs(60))
    ///     .fail_safe(Duration::from_secs(3600))
    ///     .soft_timeout(Duration::from_millis(200))
    ///     .hard_timeout(Duration::from_secs(5))
    ///     .build();
    /// # let _ = cache;
    /// ```
    pub fn fail_safe(mut self, max_staleness: Duration) -> Self {
        self.policy.max_staleness = Some(max_staleness);
        self
    }

    /// How long a load may run while a fail-safe fallback is there to serve (default: no
    /// limit). Past it the call returns the fallback ([`Origin::Stale`](crate::Origin::Stale))
    /// and the load is abandoned (its loader's future is dropped). Without a fallback it does
    /// not apply. Needs a Tokio runtime with its timer.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = matroska_core::Cache::builder(matroska_core::MemoryStore::new())
    ///     .soft_timeout(std::time::Duration::from_millis(100))
    ///     .build();
    /// # let _ = cache;
    /// ```
    pub fn soft_timeout(mut self, limit: Duration) -> Self {
        self.policy.soft_timeout = Some(limit);
        self
    }

    /// How long any load may run (default: no limit). Past it the load is abandoned and the
    /// call returns [`Error::Timeout`](crate::Error::Timeout) (or, with a usable fail-safe
    /// fallback, that value). Needs a Tokio runtime with its timer.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = matroska_core::Cache::builder(matroska_core::MemoryStore::new())
    ///     .hard_timeout(std::time::Duration::from_secs(2))
    ///     .build();
    /// # let _ = cache;
    /// ```
    pub fn hard_timeout(mut self, limit: Duration) -> Self {
        self.policy.hard_timeout = Some(limit);
        self
    }

    /// The wall clock of item history, refresh points and fail-safe deadlines (default
    /// [`UnixClock`](crate::clock::UnixClock)). Tests pass a [`MockClock`](crate::clock::MockClock)
    /// (also given to the `MemoryStore`, so that both agree on time).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::{Cache, MemoryStore, clock::MockClock};
    ///
    /// let clock = MockClock::new();
    /// let cache = Cache::builder(MemoryStore::builder().clock(clock.clone()).build())
    ///     .clock(clock)
    ///     .build();
    /// # let _ = cache;
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.policy.clock = Arc::new(clock);
        self
    }

    /// Builds the cache.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = matroska_core::Cache::builder(matroska_core::MemoryStore::new()).build();
    /// # let _ = cache;
    /// ```
    pub fn build(self) -> Cache<S, C> {
        let max_value_len = self.max_value_len.min(self.store.max_value_len());
        #[cfg(feature = "metrics")]
        let labels = super::telemetry::Labels {
            cache: self.name,
            store: self.store.name(),
        };
        Cache {
            inner: Arc::new(Inner {
                store: self.store,
                codec: self.codec,
                schema: self.schema,
                default_ttl: self.default_ttl,
                fail_open: self.fail_open,
                max_value_len,
                flights: Flights::default(),
                #[cfg(not(feature = "metrics"))]
                counters: Counters::default(),
                #[cfg(not(feature = "metrics"))]
                timings: Timings::default(),
                #[cfg(feature = "metrics")]
                counters: Counters::reported(&labels),
                #[cfg(feature = "metrics")]
                timings: Timings::reported(&labels),
                policy: self.policy,
                refreshing: parking_lot::Mutex::default(),
            }),
        }
    }
}
