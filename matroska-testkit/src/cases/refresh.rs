//! Refresh ahead, fail-safe and item history: [`Store::begin_fill`] and its leases, and the
//! [`Cache`] rules built on them, on the store under test.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use matroska_core::store::{KeyTtl, PutOutcome, Store};
use matroska_core::{Cache, CacheStats, Dep, Error, Loaded, Origin};
use tokio::sync::Notify;

use crate::Harness;
use crate::support::{bytes, hit, key, tag};

/// A loader error.
#[derive(Debug, thiserror::Error)]
#[error("the source is down")]
struct Down;

/// Waits (bounded) until the cache's counters satisfy `done`: background refreshes finish on
/// their own time.
async fn until<S: Store>(cache: &Cache<S>, what: &str, done: impl Fn(&CacheStats) -> bool) {
    for _ in 0..4000 {
        if done(&cache.stats()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{what} did not happen: {:?}", cache.stats());
}

/// A cache on `store` with the harness's clock.
fn cache<H: Harness>(h: &H, store: H::Store) -> matroska_core::CacheBuilder<H::Store> {
    Cache::builder(store).clock(h.clock())
}

/// A token of `begin_fill`, taken while the entry is live, fills it like a miss's token.
pub async fn a_begin_fill_token_fills_like_a_miss<H: Harness>(h: &H) {
    let store = h.store().await;
    let k = key("refresh:token");
    let t = tag(&Dep::tag("refresh:t"));
    store
        .put(&k, bytes("v1"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    let token = store.begin_fill(&k, None).await.unwrap().unwrap();
    let stored = store
        .put(&k, bytes("v2"), &[t], None, Some(&token))
        .await
        .unwrap();
    assert_eq!(stored, PutOutcome::Stored);
    assert_eq!(hit(&store, &k).await, Some(bytes("v2")));
}

/// A fill with a `begin_fill` token is rejected after an invalidation of its tags or a clear,
/// and changes nothing.
pub async fn a_begin_fill_token_is_rejected_after_an_invalidation_or_a_clear<H: Harness>(h: &H) {
    let store = h.store().await;
    let k = key("refresh:raced");
    let t = tag(&Dep::tag("refresh:raced"));
    store
        .put(&k, bytes("v1"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    let token = store.begin_fill(&k, None).await.unwrap().unwrap();
    store.invalidate(std::slice::from_ref(&t)).await.unwrap();
    let outcome = store
        .put(
            &k,
            bytes("v2"),
            std::slice::from_ref(&t),
            None,
            Some(&token),
        )
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stale);
    assert_eq!(hit(&store, &k).await, None, "invalidated, and not refilled");

    store
        .put(&k, bytes("v3"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    let token = store.begin_fill(&k, None).await.unwrap().unwrap();
    store.clear().await.unwrap();
    let outcome = store
        .put(&k, bytes("v4"), &[t], None, Some(&token))
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stale);
    assert_eq!(hit(&store, &k).await, None);
}

/// One lease holder per key across handles (processes); other keys and token-only calls are not
/// blocked.
pub async fn one_lease_holder_per_key_across_handles<H: Harness>(h: &H) {
    let store = h.store().await;
    let other = h.reopen(&store).await;
    let (a, b) = (key("refresh:lease:a"), key("refresh:lease:b"));
    let long = Some(Duration::from_secs(60));
    assert!(store.begin_fill(&a, long).await.unwrap().is_some());
    assert!(other.begin_fill(&a, long).await.unwrap().is_none(), "held");
    assert!(
        store.begin_fill(&a, long).await.unwrap().is_none(),
        "held, also for its taker"
    );
    assert!(
        other.begin_fill(&b, long).await.unwrap().is_some(),
        "per key"
    );
    assert!(
        other.begin_fill(&a, None).await.unwrap().is_some(),
        "no lease asked"
    );
}

/// A lease runs out (its holder died, or finished), and the key can be leased again.
pub async fn a_lease_runs_out<H: Harness>(h: &H) {
    let store = h.store().await;
    let other = h.reopen(&store).await;
    let k = key("refresh:lease:short");
    let short = Some(Duration::from_millis(300));
    assert!(store.begin_fill(&k, short).await.unwrap().is_some());
    h.advance(&store, Duration::from_millis(700)).await;
    assert!(other.begin_fill(&k, short).await.unwrap().is_some());
}

/// `fetch` returns item history; a refresh whose value is byte-identical keeps `last_modified`
/// (and moves `last_retrieved`); one with another value moves both.
pub async fn last_modified_is_kept_across_an_identical_refresh<H: Harness>(h: &H) {
    let store = h.store().await;
    let cache = cache(h, store.clone())
        .default_ttl(Duration::from_secs(30))
        .build();
    let k = key("refresh:history");
    let source = Arc::new(AtomicU64::new(1));
    let load = {
        let source = Arc::clone(&source);
        move || {
            let value = source.load(Ordering::SeqCst);
            async move { Ok::<_, Down>(Loaded::new(value).refresh_after(Duration::from_millis(500))) }
        }
    };
    h.advance(&store, Duration::from_millis(10)).await;
    let first = cache.fetch_eager(k.clone(), load.clone()).await.unwrap();
    let loaded_at = first.last_retrieved.unwrap();
    assert_eq!(first.last_modified, Some(loaded_at));
    let again = cache.fetch_eager(k.clone(), load.clone()).await.unwrap();
    assert!(again.is_hit());
    assert_eq!(
        (again.last_retrieved, again.last_modified),
        (Some(loaded_at), Some(loaded_at))
    );

    h.advance(&store, Duration::from_millis(800)).await;
    let due = cache.fetch_eager(k.clone(), load.clone()).await.unwrap();
    assert_eq!(
        (due.value, due.origin),
        (1, Origin::Cache),
        "the cached value at once"
    );
    until(&cache, "the identical refresh", |s| s.fills == 2).await;
    let refreshed = cache.fetch_eager(k.clone(), load.clone()).await.unwrap();
    assert!(refreshed.is_hit());
    assert!(
        refreshed.last_retrieved.unwrap() > loaded_at,
        "{refreshed:?}"
    );
    assert_eq!(
        refreshed.last_modified,
        Some(loaded_at),
        "content unchanged"
    );

    source.store(2, Ordering::SeqCst);
    h.advance(&store, Duration::from_millis(800)).await;
    assert_eq!(
        cache
            .fetch_eager(k.clone(), load.clone())
            .await
            .unwrap()
            .value,
        1
    );
    until(&cache, "the changing refresh", |s| s.fills == 3).await;
    let changed = cache.fetch_eager(k, load).await.unwrap();
    assert_eq!(changed.value, 2);
    assert!(changed.last_modified.unwrap() > loaded_at, "{changed:?}");
    assert_eq!(changed.last_modified, changed.last_retrieved);
    assert_eq!(cache.stats().refreshes, 2);
}

/// A refresh that races an invalidation of the entry's dependency is not stored, and the
/// invalidated entry is never served while the refresh runs.
pub async fn a_refresh_racing_an_invalidation_is_not_stored<H: Harness>(h: &H) {
    let store = h.store().await;
    let cache = cache(h, store.clone())
        .default_ttl(Duration::from_secs(30))
        .refresh_ahead(0.02) // after 600 ms
        .build();
    let k = key("refresh:race");
    let dep = Dep::id("row", 1);
    let first = {
        let dep = dep.clone();
        move || async move { Ok::<_, Down>(Loaded::new("old".to_owned()).dep(dep)) }
    };
    cache.fetch_eager(k.clone(), first.clone()).await.unwrap();
    h.advance(&store, Duration::from_millis(900)).await;
    let release = Arc::new(Notify::new());
    let slow = {
        let (release, dep) = (Arc::clone(&release), dep.clone());
        move || async move {
            // The row is read before the write below: the value is stale when it arrives.
            release.notified().await;
            Ok::<_, Down>(Loaded::new("read before the write".to_owned()).dep(dep))
        }
    };
    let due = cache.fetch_eager(k.clone(), slow).await.unwrap();
    assert_eq!(
        due.value, "old",
        "the cached value at once, the refresh runs behind"
    );
    until(&cache, "the refresh's start", |s| s.refreshes == 1).await;
    assert_eq!(cache.invalidate([dep]).await.unwrap(), 1);
    assert_eq!(
        cache.get::<String>(k.clone()).await.unwrap(),
        None,
        "gone at once"
    );
    release.notify_one();
    until(&cache, "the refresh's fill", |s| s.fills_rejected == 1).await;
    assert_eq!(cache.get::<String>(k).await.unwrap(), None, "not stored");
}

/// Two caches on two handles (two processes) sharing the store refresh a key once: the second
/// finds the first's lease.
pub async fn one_refresher_across_two_caches<H: Harness>(h: &H) {
    let store = h.store().await;
    let other = h.reopen(&store).await;
    // Refresh after 2 s: the lease lasts that long, room for b's read on a slow machine.
    let build = |s| {
        cache(h, s)
            .default_ttl(Duration::from_secs(100))
            .refresh_ahead(0.02)
            .build()
    };
    let (a, b) = (build(store.clone()), build(other));
    let k = key("refresh:fleet");
    a.fetch_eager(k.clone(), || async { Ok::<_, Down>(Loaded::new(1_u32)) })
        .await
        .unwrap();
    h.advance(&store, Duration::from_millis(2300)).await;
    let release = Arc::new(Notify::new());
    let gated = {
        let release = Arc::clone(&release);
        move || async move {
            release.notified().await;
            Ok::<_, Down>(Loaded::new(2_u32))
        }
    };
    assert_eq!(a.fetch_eager(k.clone(), gated).await.unwrap().value, 1);
    until(&a, "a's refresh", |s| s.refreshes == 1).await;
    let b_loads = Arc::new(AtomicU64::new(0));
    let counted = {
        let b_loads = Arc::clone(&b_loads);
        move || async move {
            b_loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Down>(Loaded::new(3_u32))
        }
    };
    assert_eq!(b.fetch_eager(k.clone(), counted).await.unwrap().value, 1);
    until(&b, "b's skipped refresh", |s| s.refreshes_skipped == 1).await;
    release.notify_one();
    until(&a, "a's fill", |s| s.fills == 2).await;
    assert_eq!(b_loads.load(Ordering::SeqCst), 0, "b never loaded");
    assert_eq!(b.stats().refreshes, 0);
    let read = b
        .fetch_eager(k, || async { Ok::<_, Down>(Loaded::new(4_u32)) })
        .await
        .unwrap();
    assert_eq!((read.value, read.origin), (2, Origin::Cache), "a's refresh");
}

/// Fail-safe: after a failed load the last good, time-expired value is served (marked and
/// counted), within the maximum staleness only; never after an invalidation or a delete.
pub async fn fail_safe_serves_the_expired_value_after_an_error_never_an_invalidated_one<
    H: Harness,
>(
    h: &H,
) {
    let store = h.store().await;
    let cache = cache(h, store.clone())
        .default_ttl(Duration::from_secs(1))
        .fail_safe(Duration::from_secs(60))
        .build();
    let (k, dep) = (key("failsafe:a"), Dep::id("row", 7));
    let good = {
        let dep = dep.clone();
        move || async move { Ok::<_, Down>(Loaded::new(7_u32).dep(dep)) }
    };
    let failing = || async { Err::<Loaded<u32>, _>(Down) };
    cache.fetch(k.clone(), good.clone()).await.unwrap();
    assert!(
        matches!(cache.ttl(k.clone()).await.unwrap(), KeyTtl::Expires(left) if left <= Duration::from_secs(1)),
        "ttl reports the logical life"
    );
    h.advance(&store, Duration::from_millis(1500)).await;
    assert_eq!(cache.get::<u32>(k.clone()).await.unwrap(), None, "expired");
    assert!(!cache.has(k.clone()).await.unwrap());
    let stale = cache.fetch(k.clone(), failing).await.unwrap();
    assert_eq!((stale.value, stale.origin), (7, Origin::Stale));
    assert!(stale.is_stale() && stale.last_retrieved.is_some());
    assert_eq!(cache.stats().stale_served, 1);
    // A successful load replaces it.
    let reloaded = cache.fetch(k.clone(), good.clone()).await.unwrap();
    assert_eq!(reloaded.origin, Origin::Loaded { stored: true });

    // Invalidated: gone, never a fallback.
    h.advance(&store, Duration::from_millis(1500)).await;
    cache.invalidate([dep]).await.unwrap();
    let err = cache.fetch(k.clone(), failing).await.unwrap_err();
    assert!(err.loader_error::<Down>().is_some(), "{err}");
    // Deleted: the same.
    cache.fetch(k.clone(), good).await.unwrap();
    h.advance(&store, Duration::from_millis(1500)).await;
    cache.delete(k.clone()).await.unwrap();
    assert!(cache.fetch(k, failing).await.is_err());
    assert_eq!(cache.stats().stale_served, 1);
}

/// A fallback read before the load is not served when its entry was invalidated while the load
/// ran (the loader here invalidates, then fails).
pub async fn fail_safe_never_serves_a_value_invalidated_during_the_load<H: Harness>(h: &H) {
    let store = h.store().await;
    let cache = cache(h, store.clone())
        .default_ttl(Duration::from_secs(1))
        .fail_safe(Duration::from_secs(60))
        .build();
    let (k, dep) = (key("failsafe:raced"), Dep::id("row", 8));
    let good = {
        let dep = dep.clone();
        move || async move { Ok::<_, Down>(Loaded::new(8_u32).dep(dep)) }
    };
    cache.fetch(k.clone(), good.clone()).await.unwrap();
    h.advance(&store, Duration::from_millis(1500)).await;
    let writer = cache.clone();
    let racing = move || async move {
        // A write lands while the load runs; then the source fails.
        writer.invalidate([dep]).await.unwrap();
        Err::<Loaded<u32>, _>(Down)
    };
    let outcome = cache.fetch(k.clone(), racing).await;
    assert!(
        outcome.is_err(),
        "the invalidated value was served: {outcome:?}"
    );
    assert_eq!(cache.stats().stale_served, 0);
    // Without the write, the same failure serves the fallback.
    cache.fetch(k.clone(), good).await.unwrap();
    h.advance(&store, Duration::from_millis(1500)).await;
    let stale = cache
        .fetch(k, || async { Err::<Loaded<u32>, _>(Down) })
        .await
        .unwrap();
    assert_eq!((stale.value, stale.origin), (8, Origin::Stale));
}

/// Past the maximum staleness the error surfaces.
pub async fn fail_safe_ends_at_the_maximum_staleness<H: Harness>(h: &H) {
    let store = h.store().await;
    let cache = cache(h, store.clone())
        .default_ttl(Duration::from_millis(500))
        .fail_safe(Duration::from_millis(500))
        .build();
    let k = key("failsafe:old");
    cache
        .fetch(k.clone(), || async { Ok::<_, Down>(Loaded::new(1_u8)) })
        .await
        .unwrap();
    h.advance(&store, Duration::from_millis(1500)).await;
    let failed = cache
        .fetch(k, || async { Err::<Loaded<u8>, _>(Down) })
        .await;
    assert!(failed.is_err(), "{failed:?}");
}

/// A load running past the soft timeout serves the fail-safe value; one running past the hard
/// timeout without a fallback fails with [`Error::Timeout`].
pub async fn soft_and_hard_timeouts<H: Harness>(h: &H) {
    let store = h.store().await;
    let cache = cache(h, store.clone())
        .default_ttl(Duration::from_secs(1))
        .fail_safe(Duration::from_secs(60))
        .soft_timeout(Duration::from_millis(50))
        .hard_timeout(Duration::from_millis(300))
        .build();
    let hang = || std::future::pending::<Result<Loaded<u32>, Down>>();
    let k = key("timeout:a");
    cache
        .fetch(k.clone(), || async { Ok::<_, Down>(Loaded::new(5_u32)) })
        .await
        .unwrap();
    h.advance(&store, Duration::from_millis(1500)).await;
    let soft = cache.fetch(k, hang).await.unwrap();
    assert_eq!((soft.value, soft.origin), (5, Origin::Stale));

    let hard = cache.fetch(key("timeout:none"), hang).await.unwrap_err();
    assert!(
        matches!(hard, Error::Timeout { after, .. } if after == Duration::from_millis(300)),
        "{hard}"
    );
    assert_eq!(cache.stats().stale_served, 1);
}

/// Bytes stored by a release before item history (envelope format 1) still decode, without
/// history.
pub async fn old_envelopes_still_decode<H: Harness>(h: &H) {
    let store = h.store().await;
    let k = key("history:v1");
    // 0x6D, format 1, MessagePack, schema 0; the u64 7.
    let v1 = matroska_core::Bytes::from_static(&[0x6D, 0x01, 0x01, 0x00, 0x00, 0x07]);
    store.put(&k, v1, &[], None, None).await.unwrap();
    let cache = cache(h, store).build();
    assert_eq!(cache.get::<u64>(k.clone()).await.unwrap(), Some(7));
    let fetched = cache
        .fetch(k, || async { Ok::<_, Down>(Loaded::new(0_u64)) })
        .await
        .unwrap();
    assert!(fetched.is_hit());
    assert_eq!(
        (fetched.last_retrieved, fetched.last_modified),
        (None, None)
    );
}
