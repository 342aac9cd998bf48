//! The `metrics` feature: every counter of `CacheStats` reaches the facade with the cache's and
//! the store's labels, and every store call lands in the latency histogram of its operation.
#![cfg(feature = "metrics")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;

use matroska_core::{Cache, CacheStats, Dep, Loaded, MemoryStore, Origin};
use matroska_testkit::support::{Faulty, Op};
use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// A recorded metric: its kind, name, sorted labels and value.
type Metric = (MetricKind, String, Vec<(String, String)>, DebugValue);

/// Runs `test` on a current-thread runtime with a recorder of its own (tests run in parallel),
/// and returns every metric recorded: (kind, name, sorted labels, value).
fn recorded<F: Future<Output = ()>>(test: impl FnOnce() -> F) -> Vec<Metric> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(test());
    });
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _unit, _help, value)| {
            let (kind, key) = key.into_parts();
            let mut labels: Vec<_> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            (kind, key.name().to_owned(), labels, value)
        })
        .collect()
}

fn counter(metrics: &[Metric], name: &str, labels: &[(&str, &str)]) -> u64 {
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    want.sort();
    let found: Vec<u64> = metrics
        .iter()
        .filter(|(kind, n, l, _)| *kind == MetricKind::Counter && n == name && *l == want)
        .map(|(_, _, _, value)| match value {
            DebugValue::Counter(n) => *n,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?} in {metrics:#?}");
    found[0]
}

fn histogram_count(metrics: &[Metric], operation: &str, outcome: &str) -> usize {
    metrics
        .iter()
        .filter(|(kind, name, labels, _)| {
            *kind == MetricKind::Histogram
                && name == "matroska_store_operation_duration_seconds"
                && labels.contains(&("operation".to_owned(), operation.to_owned()))
                && labels.contains(&("outcome".to_owned(), outcome.to_owned()))
                && labels.contains(&("cache".to_owned(), "articles".to_owned()))
                && labels.contains(&("store".to_owned(), "memory".to_owned()))
        })
        .map(|(_, _, _, value)| match value {
            DebugValue::Histogram(samples) => samples.len(),
            other => panic!("not a histogram: {other:?}"),
        })
        .sum()
}

/// A scenario that moves every counter, and what `stats()` said at its end.
async fn scenario(stats: &mut CacheStats, calls: &mut Vec<(Op, u64)>) {
    let store = Faulty::new(MemoryStore::new());
    let cache = Cache::builder(store.clone()).name("articles").build();
    let load = |n: u32| async move {
        tokio::task::yield_now().await;
        Ok::<_, std::io::Error>(Loaded::new(n).dep(Dep::id("article", 1)))
    };
    // A miss, then a load stored, then a hit.
    assert_eq!(cache.get::<u32>("a").await.unwrap(), None);
    cache.get_or_insert_with("a", || load(1)).await.unwrap();
    cache.get_or_insert_with("a", || load(1)).await.unwrap();
    // Two concurrent callers: one load, shared.
    let (x, y) = tokio::join!(
        cache.get_or_insert_with("b", || load(2)),
        cache.get_or_insert_with("b", || load(2)),
    );
    assert_eq!((x.unwrap(), y.unwrap()), (2, 2));
    // A load whose dependency is invalidated while it runs is rejected.
    let racing = cache.clone();
    let fetched = cache
        .fetch("c", || async move {
            racing.invalidate([Dep::id("article", 9)]).await.unwrap();
            Ok::<_, std::io::Error>(Loaded::new(3_u32).dep(Dep::id("article", 9)))
        })
        .await
        .unwrap();
    assert_eq!(fetched.origin, Origin::Loaded { stored: false });
    // An invalidation removing two entries ("a" and "b" depend on article 1).
    assert_eq!(cache.invalidate([Dep::id("article", 1)]).await.unwrap(), 2);
    // A value that no longer decodes.
    cache.put("d", &5_u32).await.unwrap();
    assert_eq!(cache.get::<String>("d").await.unwrap(), None);
    // A store error, and the other operations once each.
    store.fail(Op::Ttl, 1);
    assert!(cache.ttl("d").await.is_err());
    cache.ttl("d").await.unwrap();
    cache.has("d").await.unwrap();
    cache.delete("d").await.unwrap();
    cache.clear().await.unwrap();
    *stats = cache.stats();
    for op in [
        Op::Get,
        Op::Put,
        Op::Delete,
        Op::Invalidate,
        Op::Ttl,
        Op::Clear,
        Op::Exists,
    ] {
        calls.push((op, store.calls(op)));
    }
}

#[test]
fn every_counter_mirrors_cache_stats_with_cache_and_store_labels() {
    let mut stats = CacheStats::default();
    let mut calls = Vec::new();
    let metrics = recorded(|| scenario(&mut stats, &mut calls));
    let labels = [("cache", "articles"), ("store", "memory")];
    let with = |outcome| [labels[0], labels[1], ("outcome", outcome)];
    let c = |name| counter(&metrics, name, &labels);
    let pairs = [
        (
            counter(&metrics, "matroska_cache_reads_total", &with("hit")),
            stats.hits,
        ),
        (
            counter(&metrics, "matroska_cache_reads_total", &with("miss")),
            stats.misses,
        ),
        (c("matroska_cache_loads_total"), stats.loads),
        (c("matroska_cache_coalesced_total"), stats.coalesced),
        (c("matroska_cache_waits_total"), stats.waits),
        (
            c("matroska_cache_shares_refused_total"),
            stats.shares_refused,
        ),
        (
            counter(&metrics, "matroska_cache_fills_total", &with("stored")),
            stats.fills,
        ),
        (
            counter(&metrics, "matroska_cache_fills_total", &with("rejected")),
            stats.fills_rejected,
        ),
        (c("matroska_cache_invalidations_total"), stats.invalidations),
        (
            c("matroska_cache_entries_invalidated_total"),
            stats.entries_invalidated,
        ),
        (c("matroska_cache_decode_errors_total"), stats.decode_errors),
        (c("matroska_cache_store_errors_total"), stats.store_errors),
        (c("matroska_cache_refreshes_total"), stats.refreshes),
        (
            c("matroska_cache_refreshes_failed_total"),
            stats.refreshes_failed,
        ),
        (
            c("matroska_cache_refreshes_skipped_total"),
            stats.refreshes_skipped,
        ),
        (c("matroska_cache_stale_served_total"), stats.stale_served),
    ];
    for (reported, counted) in pairs {
        assert_eq!(reported, counted, "{stats:?}");
    }
    // The scenario moved every counter but `shares_refused` (so the comparison above is not
    // between zeros).
    assert_eq!(
        (
            stats.hits,
            stats.misses,
            stats.loads,
            stats.coalesced,
            stats.waits
        ),
        (1, 6, 3, 1, 1)
    );
    assert_eq!((stats.fills, stats.fills_rejected), (3, 1));
    assert_eq!((stats.invalidations, stats.entries_invalidated), (2, 2));
    assert_eq!((stats.decode_errors, stats.store_errors), (1, 1));
}

#[test]
fn every_store_call_lands_in_its_operation_histogram() {
    let mut stats = CacheStats::default();
    let mut calls = Vec::new();
    let metrics = recorded(|| scenario(&mut stats, &mut calls));
    for (op, n) in calls {
        let name = format!("{op:?}").to_lowercase();
        let errors = usize::from(op == Op::Ttl);
        assert_eq!(histogram_count(&metrics, &name, "error"), errors, "{name}");
        assert_eq!(
            histogram_count(&metrics, &name, "ok") + errors,
            usize::try_from(n).unwrap(),
            "{name}: every store call is timed once"
        );
        assert!(n > 0, "{name} was called");
    }
}

#[test]
fn a_cache_built_before_a_recorder_is_installed_reports_nothing_and_still_counts() {
    let cache = Cache::new(MemoryStore::new());
    let metrics = recorded(|| async {
        cache.put("k", &1).await.unwrap();
        assert_eq!(cache.get::<i32>("k").await.unwrap(), Some(1));
    });
    assert!(metrics.is_empty(), "{metrics:?}");
    assert_eq!(cache.stats().hits, 1);
}
