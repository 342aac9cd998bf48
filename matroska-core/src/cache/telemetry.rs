//! Store-call latency, and (with the `metrics` feature) the labels every metric of a cache carries.
//!
//! With the feature off, [`Timings::time`] only awaits its future: no clock is read.

use std::future::Future;

use crate::error::Result;

/// A store operation, as the latency histogram labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Get,
    Put,
    Delete,
    Exists,
    Invalidate,
    Ttl,
    Clear,
    GetMany,
    PutMany,
    BeginFill,
}

impl Op {
    #[cfg(feature = "metrics")]
    const ALL: [Self; 10] = [
        Self::Get,
        Self::Put,
        Self::Delete,
        Self::Exists,
        Self::Invalidate,
        Self::Ttl,
        Self::Clear,
        Self::GetMany,
        Self::PutMany,
        Self::BeginFill,
    ];

    #[cfg(feature = "metrics")]
    fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Put => "put",
            Self::Delete => "delete",
            Self::Exists => "exists",
            Self::Invalidate => "invalidate",
            Self::Ttl => "ttl",
            Self::Clear => "clear",
            Self::GetMany => "get_many",
            Self::PutMany => "put_many",
            Self::BeginFill => "begin_fill",
        }
    }
}

/// Times store calls into one histogram per operation and outcome.
#[derive(Debug, Default)]
pub(super) struct Timings {
    /// Indexed by `Op as usize`, then `0` for success and `1` for an error.
    #[cfg(feature = "metrics")]
    histograms: Option<Vec<[metrics::Histogram; 2]>>,
}

impl Timings {
    /// Histograms labelled by `labels`, one per operation and outcome.
    #[cfg(feature = "metrics")]
    pub(super) fn reported(labels: &Labels) -> Self {
        let histograms = Op::ALL
            .iter()
            .map(|op| {
                [
                    labels.histogram(op.as_str(), "ok"),
                    labels.histogram(op.as_str(), "error"),
                ]
            })
            .collect();
        Self {
            histograms: Some(histograms),
        }
    }

    /// Awaits a store call, recording how long it took (with the `metrics` feature).
    pub(super) async fn time<T>(&self, op: Op, call: impl Future<Output = Result<T>>) -> Result<T> {
        #[cfg(feature = "metrics")]
        if let Some(histograms) = &self.histograms {
            let start = std::time::Instant::now();
            let result = call.await;
            if let Some(pair) = histograms.get(op as usize) {
                pair[usize::from(result.is_err())].record(start.elapsed());
            }
            return result;
        }
        let _ = op;
        call.await
    }
}

/// The labels of one cache's metrics: `cache` (its name) and `store` ([`Store::name`]).
///
/// [`Store::name`]: crate::store::Store::name
#[cfg(feature = "metrics")]
#[derive(Debug, Clone)]
pub(super) struct Labels {
    pub(super) cache: String,
    pub(super) store: &'static str,
}

#[cfg(feature = "metrics")]
impl Labels {
    /// The counter `name`, with an `outcome` label when given.
    pub(super) fn counter(
        &self,
        name: &'static str,
        outcome: Option<&'static str>,
    ) -> metrics::Counter {
        let (cache, store) = (self.cache.clone(), self.store);
        if let Some(outcome) = outcome {
            metrics::counter!(name, "cache" => cache, "store" => store, "outcome" => outcome)
        } else {
            metrics::counter!(name, "cache" => cache, "store" => store)
        }
    }

    fn histogram(&self, operation: &'static str, outcome: &'static str) -> metrics::Histogram {
        metrics::histogram!(
            STORE_DURATION,
            "cache" => self.cache.clone(),
            "store" => self.store,
            "operation" => operation,
            "outcome" => outcome
        )
    }
}

/// The latency histogram's name.
#[cfg(feature = "metrics")]
const STORE_DURATION: &str = "matroska_store_operation_duration_seconds";

/// Describes every metric to the installed recorder (units and help texts).
#[cfg(feature = "metrics")]
pub(super) fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    let counters = [
        (
            "matroska_cache_reads_total",
            "Reads as the application sees them (get, fetch, get_or_insert_with), by outcome: hit or miss",
        ),
        ("matroska_cache_loads_total", "Loader calls"),
        (
            "matroska_cache_coalesced_total",
            "Reads that returned another caller's load",
        ),
        (
            "matroska_cache_waits_total",
            "Reads that waited for another caller's load",
        ),
        (
            "matroska_cache_shares_refused_total",
            "Reads that found a running load of their key and did not take its value",
        ),
        (
            "matroska_cache_fills_total",
            "Values offered to the store, by outcome: stored, or rejected as stale",
        ),
        (
            "matroska_cache_invalidations_total",
            "Successful invalidate calls that reached the store",
        ),
        (
            "matroska_cache_entries_invalidated_total",
            "Entries removed by invalidations",
        ),
        (
            "matroska_cache_decode_errors_total",
            "Stored entries that did not decode and were removed",
        ),
        (
            "matroska_cache_store_errors_total",
            "Failed store operations, including those absorbed by fail-open mode",
        ),
        (
            "matroska_cache_refreshes_total",
            "Background refreshes whose loader ran (refresh ahead)",
        ),
        (
            "matroska_cache_refreshes_failed_total",
            "Background refreshes whose loader failed or timed out",
        ),
        (
            "matroska_cache_refreshes_skipped_total",
            "Refreshes not started: another caller held the key's refresh lease",
        ),
        (
            "matroska_cache_stale_served_total",
            "Fail-safe: reads answered with the last good, time-expired value after a failed or timed-out load",
        ),
    ];
    for (name, help) in counters {
        describe_counter!(name, Unit::Count, help);
    }
    describe_histogram!(
        STORE_DURATION,
        Unit::Seconds,
        "Latency of each store call the cache makes, by operation and outcome (ok or error)"
    );
}
