//! [`CacheBuilder`]: the settings of a [`Cache`].

use std::sync::Arc;
use std::time::Duration;

use super::flight::Flights;
use super::stats::Counters;
use super::telemetry::Timings;
use super::{Cache, Inner};
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
            }),
        }
    }
}
