//! What [`Cache::fetch`](crate::Cache::fetch) returns: the value, where it came from, and its
//! history.

use std::time::{Duration, SystemTime};

use crate::codec::Meta;

/// Where a value returned by [`Cache::fetch`](crate::Cache::fetch) came from: for metrics,
/// cache-status headers and tests.
///
/// # Examples
///
/// ```
/// use matroska_core::{Cache, Loaded, MemoryStore, Origin};
///
/// # futures::executor::block_on(async {
/// let cache = Cache::new(MemoryStore::new());
/// let load = || async { Ok::<_, std::io::Error>(Loaded::new(1)) };
/// assert_eq!(cache.fetch("k", load).await?.origin, Origin::Loaded { stored: true });
/// assert_eq!(cache.fetch("k", load).await?.origin, Origin::Cache);
/// # Ok::<(), matroska_core::Error>(()) });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// A live entry of the store.
    Cache,
    /// This call ran the loader. `stored` is false when the value was not cached: a dependency
    /// was invalidated during the load (the value may predate that write), or the store was
    /// unavailable.
    Loaded {
        /// Whether the loaded value is now cached.
        stored: bool,
    },
    /// Another caller's load in this process, shared with this one.
    Shared,
    /// Fail-safe: the load failed or ran past its timeout, and this is the last good value,
    /// expired by time (never an invalidated one) less than the maximum staleness ago (see
    /// [`CacheBuilder::fail_safe`](crate::CacheBuilder::fail_safe)).
    Stale,
}

/// A value and its [`Origin`].
///
/// # Examples
///
/// ```
/// use matroska_core::{Cache, Loaded, MemoryStore, Origin};
///
/// # futures::executor::block_on(async {
/// let cache = Cache::new(MemoryStore::new());
/// let fetched = cache.fetch("k", || async { Ok::<_, std::io::Error>(Loaded::new(5)) }).await?;
/// assert_eq!((fetched.value, fetched.origin), (5, Origin::Loaded { stored: true }));
/// # Ok::<(), matroska_core::Error>(()) });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fetched<T> {
    /// The value.
    pub value: T,
    /// Where it came from.
    pub origin: Origin,
    /// When the value was fetched from its source (loaded), on the cache's clock. `None` for an
    /// entry written before item history existed.
    pub last_retrieved: Option<SystemTime>,
    /// When the value's content last changed: kept across a reload whose encoded value is
    /// byte-identical, set to the load's time otherwise. `None` as `last_retrieved`.
    pub last_modified: Option<SystemTime>,
    /// The entry's refresh point, ms since the epoch (0: none); for registered fetchers.
    pub(crate) refresh_at_ms: u64,
}

impl<T> Fetched<T> {
    /// A value with the history of its envelope.
    pub(crate) fn new(value: T, origin: Origin, meta: Meta) -> Self {
        let time = |ms: u64| (ms != 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
        Self {
            value,
            origin,
            last_retrieved: time(meta.last_retrieved_ms),
            last_modified: time(meta.last_modified_ms),
            refresh_at_ms: meta.refresh_at_ms,
        }
    }

    /// The same history and origin with the value converted.
    pub(crate) fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Fetched<U>, E> {
        Ok(Fetched {
            value: f(self.value)?,
            origin: self.origin,
            last_retrieved: self.last_retrieved,
            last_modified: self.last_modified,
            refresh_at_ms: self.refresh_at_ms,
        })
    }

    /// Whether this is a fail-safe value ([`Origin::Stale`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::{Cache, Loaded, MemoryStore};
    ///
    /// # futures::executor::block_on(async {
    /// let cache = Cache::new(MemoryStore::new());
    /// let fetched = cache.fetch("k", || async { Ok::<_, std::io::Error>(Loaded::new(5)) }).await?;
    /// assert!(!fetched.is_stale());
    /// # Ok::<(), matroska_core::Error>(()) });
    /// ```
    pub fn is_stale(&self) -> bool {
        self.origin == Origin::Stale
    }

    /// Whether the value came from the cache without a load.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::{Cache, Loaded, MemoryStore};
    ///
    /// # futures::executor::block_on(async {
    /// let cache = Cache::new(MemoryStore::new());
    /// cache.put("k", &5).await?;
    /// let fetched = cache.fetch("k", || async { Ok::<_, std::io::Error>(Loaded::new(0)) }).await?;
    /// assert!(fetched.is_hit());
    /// # Ok::<(), matroska_core::Error>(()) });
    /// ```
    pub fn is_hit(&self) -> bool {
        self.origin == Origin::Cache
    }
}
