//! What [`Cache::fetch`](crate::Cache::fetch) returns: the value and where it came from.

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
}

impl<T> Fetched<T> {
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
