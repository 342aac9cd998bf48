//! Counters of what the cache did.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a [`Cache`](crate::Cache)'s counters, from [`Cache::stats`](crate::Cache::stats).
///
/// # Examples
///
/// ```
/// use matroska_core::{Cache, MemoryStore};
///
/// # futures::executor::block_on(async {
/// let cache = Cache::new(MemoryStore::new());
/// let _ = cache.get::<String>("nothing").await?;
/// let stats = cache.stats();
/// assert_eq!((stats.hits, stats.misses), (0, 1));
/// assert_eq!(stats.hit_rate(), 0.0);
/// # Ok::<(), matroska_core::Error>(()) });
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Reads that found a live entry.
    pub hits: u64,
    /// Reads that found none (including undecodable entries and fail-open errors).
    pub misses: u64,
    /// Loader calls made by `get_or_insert_with`.
    pub loads: u64,
    /// Callers of `get_or_insert_with` that shared another caller's load.
    pub coalesced: u64,
    /// Entries stored (by `put` or after a load).
    pub fills: u64,
    /// Loaded values not stored because a dependency was invalidated during the load.
    pub fills_rejected: u64,
    /// Calls of `invalidate`.
    pub invalidations: u64,
    /// Entries that invalidations removed.
    pub entries_invalidated: u64,
    /// Entries removed because they no longer decoded.
    pub decode_errors: u64,
    /// Store errors (including those absorbed by fail-open mode).
    pub store_errors: u64,
}

impl CacheStats {
    /// Hits divided by reads (0 when there were no reads).
    ///
    /// # Examples
    ///
    /// ```
    /// let stats = matroska_core::CacheStats::default();
    /// assert_eq!(stats.hit_rate(), 0.0);
    /// ```
    #[allow(clippy::cast_precision_loss)] // Counters far below 2^52 in practice.
    pub fn hit_rate(&self) -> f64 {
        let reads = self.hits + self.misses;
        if reads == 0 {
            0.0
        } else {
            self.hits as f64 / reads as f64
        }
    }
}

macro_rules! counters {
    ($($field:ident),* $(,)?) => {
        #[derive(Debug, Default)]
        pub(super) struct Counters {
            $(pub(super) $field: AtomicU64,)*
        }

        impl Counters {
            pub(super) fn snapshot(&self) -> CacheStats {
                CacheStats { $($field: self.$field.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters!(
    hits,
    misses,
    loads,
    coalesced,
    fills,
    fills_rejected,
    invalidations,
    entries_invalidated,
    decode_errors,
    store_errors,
);

pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}
