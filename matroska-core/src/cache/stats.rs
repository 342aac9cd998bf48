//! Counters of what the cache did.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a [`Cache`](crate::Cache)'s counters, from [`Cache::stats`](crate::Cache::stats).
///
/// Every counter counts what its name says, once per occurrence, as the application sees it:
/// one call of [`get`](crate::Cache::get), [`fetch`](crate::Cache::fetch) or
/// [`get_or_insert_with`](crate::Cache::get_or_insert_with) is one hit or one miss, however many
/// times the cache read the store or waited inside the call. So [`hit_rate`](Self::hit_rate) is
/// the share of reads the application got from the cache.
///
/// # Examples
///
/// ```
/// use matroska_core::{Cache, Loaded, MemoryStore};
///
/// # futures::executor::block_on(async {
/// let cache = Cache::new(MemoryStore::new());
/// let _ = cache.get::<String>("nothing").await?;
/// let load = || async { Ok::<_, std::io::Error>(Loaded::new(1)) };
/// cache.get_or_insert_with("k", load).await?; // a miss and a load
/// cache.get_or_insert_with("k", load).await?; // a hit
/// let stats = cache.stats();
/// assert_eq!((stats.hits, stats.misses, stats.loads, stats.fills), (1, 2, 1, 1));
/// assert_eq!(stats.hit_rate(), 1.0 / 3.0);
/// # Ok::<(), matroska_core::Error>(()) });
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Reads answered by a live entry of the store: calls of `get` that found a value, and
    /// calls of `fetch`/`get_or_insert_with` whose value came from the store
    /// ([`Origin::Cache`](crate::Origin::Cache)).
    pub hits: u64,
    /// Reads not answered by the store: calls of `get` that found nothing (no live entry, an
    /// entry that does not decode, a read that failed open), and calls of
    /// `fetch`/`get_or_insert_with` that loaded or took another caller's load (also when the
    /// loader then failed).
    pub misses: u64,
    /// Loader calls.
    pub loads: u64,
    /// Calls of `fetch`/`get_or_insert_with` that returned another caller's load
    /// ([`Origin::Shared`](crate::Origin::Shared)). Each is also a miss.
    pub coalesced: u64,
    /// Calls of `fetch`/`get_or_insert_with` that waited for another caller's load (at most once
    /// per call). A wait ends in a shared value (`coalesced`), the leader's error, or a value this
    /// call could not take (see `shares_refused`).
    pub waits: u64,
    /// Calls of `fetch`/`get_or_insert_with` that found a load of their key running in this
    /// process and did not take its value, once per call: the load may predate an invalidation
    /// that this call's own miss saw, nothing ordered the two misses (no fill token, as after a
    /// read that failed open), the store did not accept the loaded value, or it does not decode
    /// as this call's type. Such a call reads again or loads itself: a caller never gets a value
    /// older than its own miss.
    pub shares_refused: u64,
    /// Entries stored: puts, and loads the store accepted.
    pub fills: u64,
    /// Loaded values the store refused to store
    /// ([`PutOutcome::Stale`](crate::store::PutOutcome::Stale)): a dependency was invalidated
    /// during the load, the namespace was cleared, or the load outlived the fill window.
    pub fills_rejected: u64,
    /// Calls of `invalidate` that reached the store (with at least one dependency) and succeeded.
    pub invalidations: u64,
    /// The sum of what those calls returned: the entries that depended on what they invalidated.
    pub entries_invalidated: u64,
    /// Stored entries that no longer decoded (another type, schema version or codec), and were
    /// removed.
    pub decode_errors: u64,
    /// Failed store operations, including those absorbed by fail-open mode.
    pub store_errors: u64,
    /// Background refreshes whose loader ran ([`Cache::fetch_eager`](crate::Cache::fetch_eager)
    /// past an entry's refresh point, with this process holding the key's refresh lease). Each
    /// is also counted in `loads`, and its fill in `fills` or `fills_rejected`.
    pub refreshes: u64,
    /// Background refreshes whose loader failed or timed out (the entry stays as it was).
    pub refreshes_failed: u64,
    /// Refreshes not started because another caller (this process or another one sharing the
    /// store) held the key's refresh lease.
    pub refreshes_skipped: u64,
    /// Fail-safe: calls that returned the last good, time-expired value because the load failed
    /// or ran past its timeout ([`Origin::Stale`](crate::Origin::Stale)). Each is also a miss.
    pub stale_served: u64,
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

/// One counter: an atomic for [`CacheStats`], and (with the `metrics` feature) the facade's
/// counter it mirrors.
#[derive(Debug, Default)]
pub(super) struct Counter {
    value: AtomicU64,
    #[cfg(feature = "metrics")]
    reported: Option<metrics::Counter>,
}

macro_rules! counters {
    ($($field:ident => $metric:literal $(, $outcome:literal)?;)*) => {
        #[derive(Debug, Default)]
        pub(super) struct Counters {
            $(pub(super) $field: Counter,)*
        }

        impl Counters {
            /// Counters that also report to the `metrics` facade, labelled by `labels`.
            #[cfg(feature = "metrics")]
            pub(super) fn reported(labels: &super::telemetry::Labels) -> Self {
                super::telemetry::describe();
                Self {
                    $($field: Counter {
                        value: AtomicU64::new(0),
                        reported: Some(labels.counter($metric, [$($outcome)?].first().copied())),
                    },)*
                }
            }

            pub(super) fn snapshot(&self) -> CacheStats {
                CacheStats { $($field: self.$field.value.load(Ordering::Relaxed),)* }
            }
        }
    };
}

// Each counter's metric name (and outcome label): see the `telemetry` module for the list.
counters!(
    hits => "matroska_cache_reads_total", "hit";
    misses => "matroska_cache_reads_total", "miss";
    loads => "matroska_cache_loads_total";
    coalesced => "matroska_cache_coalesced_total";
    waits => "matroska_cache_waits_total";
    shares_refused => "matroska_cache_shares_refused_total";
    fills => "matroska_cache_fills_total", "stored";
    fills_rejected => "matroska_cache_fills_total", "rejected";
    invalidations => "matroska_cache_invalidations_total";
    entries_invalidated => "matroska_cache_entries_invalidated_total";
    decode_errors => "matroska_cache_decode_errors_total";
    store_errors => "matroska_cache_store_errors_total";
    refreshes => "matroska_cache_refreshes_total";
    refreshes_failed => "matroska_cache_refreshes_failed_total";
    refreshes_skipped => "matroska_cache_refreshes_skipped_total";
    stale_served => "matroska_cache_stale_served_total";
);

pub(super) fn bump(counter: &Counter) {
    add(counter, 1);
}

pub(super) fn add(counter: &Counter, n: u64) {
    counter.value.fetch_add(n, Ordering::Relaxed);
    #[cfg(feature = "metrics")]
    if let Some(reported) = &counter.reported {
        reported.increment(n);
    }
}
