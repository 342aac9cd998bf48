//! Namespaces: two stores on one server never see each other; two handles on one namespace do;
//! `clear` empties a namespace, also while fills and invalidations race it.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use matroska_core::store::{Lookup, PutOutcome};
use matroska_core::{Cache, Dep, Key, Loaded, Origin, Store, Tag};
use tokio::sync::oneshot;

use crate::Harness;
use crate::support::{Rng, bytes, hit, key, tag};

/// Entries of one namespace are invisible in another.
pub async fn namespaces_are_isolated<H: Harness>(h: &H) {
    let (a, b) = (h.store().await, h.store().await);
    let k = key("ns:k");
    a.put(&k, bytes("a"), &[], None, None).await.unwrap();
    assert_eq!(hit(&b, &k).await, None);
    b.put(&k, bytes("b"), &[], None, None).await.unwrap();
    assert_eq!(hit(&a, &k).await, Some(bytes("a")));
    assert!(b.delete(&k).await.unwrap());
    assert_eq!(hit(&a, &k).await, Some(bytes("a")));
}

/// Invalidating a tag in one namespace leaves the other's entries and fills alone.
pub async fn invalidation_is_confined_to_the_namespace<H: Harness>(h: &H) {
    let (a, b) = (h.store().await, h.store().await);
    let t = tag(&Dep::id("article", 1));
    let k = key("ns:page");
    a.put(&k, bytes("a"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    let Lookup::Miss(token) = b.get(&k).await.unwrap() else {
        panic!("b is empty");
    };
    assert_eq!(a.invalidate(std::slice::from_ref(&t)).await.unwrap(), 1);
    let outcome = b
        .put(&k, bytes("b"), &[t], None, Some(&token))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        PutOutcome::Stored,
        "a's invalidation must not reject b's fill"
    );
}

/// `clear` empties its own namespace only.
pub async fn clear_is_confined_to_the_namespace<H: Harness>(h: &H) {
    let (a, b) = (h.store().await, h.store().await);
    for i in 0..3 {
        let k = key(&format!("ns:clear:{i}"));
        a.put(&k, bytes("a"), &[tag(&Dep::tag("t"))], None, None)
            .await
            .unwrap();
        b.put(&k, bytes("b"), &[], None, None).await.unwrap();
    }
    a.clear().await.unwrap();
    for i in 0..3 {
        let k = key(&format!("ns:clear:{i}"));
        assert_eq!(hit(&a, &k).await, None);
        assert_eq!(hit(&b, &k).await, Some(bytes("b")));
    }
    // The namespace works normally after a clear.
    a.put(&key("ns:after"), bytes("x"), &[], None, None)
        .await
        .unwrap();
    assert_eq!(hit(&a, &key("ns:after")).await, Some(bytes("x")));
}

/// A fill whose token predates a `clear` is rejected: the clear may have been a flush of
/// everything that could be stale.
pub async fn clear_rejects_fills_that_started_before_it<H: Harness>(h: &H) {
    let store = h.store().await;
    let k = key("ns:clear-fill");
    let Lookup::Miss(token) = store.get(&k).await.unwrap() else {
        panic!("empty store");
    };
    store.clear().await.unwrap();
    let outcome = store
        .put(&k, bytes("v"), &[], None, Some(&token))
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stale);
    assert_eq!(hit(&store, &k).await, None);
}

/// A second handle on the same namespace (another process) sees the same entries, and its
/// invalidations apply to the first handle.
pub async fn reopened_handle_shares_the_namespace<H: Harness>(h: &H) {
    let a = h.store().await;
    let b = h.reopen(&a).await;
    let t = tag(&Dep::id("author", 3));
    let k = key("ns:shared");
    a.put(&k, bytes("v"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    assert_eq!(hit(&b, &k).await, Some(bytes("v")));
    let Lookup::Miss(token) = a.get(&key("ns:other")).await.unwrap() else {
        panic!("miss expected");
    };
    b.invalidate(std::slice::from_ref(&t)).await.unwrap();
    assert_eq!(hit(&a, &k).await, None);
    let outcome = a
        .put(&key("ns:other"), bytes("v"), &[t], None, Some(&token))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        PutOutcome::Stale,
        "b's invalidation rejects a's older fill"
    );
}

/// A fill token of one namespace is refused by another (another cache, another tier): its
/// sequence numbers and stamps mean nothing there.
pub async fn a_fill_token_from_another_namespace_is_refused<H: Harness>(h: &H) {
    let (a, b) = (h.store().await, h.store().await);
    let k = key("ns:foreign-token");
    let t = tag(&Dep::id("article", 1));
    // Give the namespaces different histories.
    for _ in 0..3 {
        a.invalidate(std::slice::from_ref(&t)).await.unwrap();
    }
    let Lookup::Miss(from_a) = a.get(&k).await.unwrap() else {
        panic!("a is empty");
    };
    let outcome = b
        .put(
            &k,
            bytes("foreign"),
            std::slice::from_ref(&t),
            None,
            Some(&from_a),
        )
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stale, "b stored a fill with a's token");
    assert_eq!(hit(&b, &k).await, None);
    // The token is good where it came from.
    let outcome = a
        .put(&k, bytes("own"), &[t], None, Some(&from_a))
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stored);
}

/// A fetch held after reading its row; the caller's task.
type HeldFetch = (
    oneshot::Receiver<()>,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<matroska_core::Fetched<u64>>,
);

fn held_fetch<S: Store>(cache: &Cache<S>, k: String, row: u64) -> HeldFetch {
    let (read_tx, read) = oneshot::channel();
    let (release, go) = oneshot::channel::<()>();
    let cache = cache.clone();
    let task = tokio::spawn(async move {
        cache
            .fetch(k, || async move {
                let _ = read_tx.send(());
                let _ = go.await;
                Ok::<_, Infallible>(Loaded::new(row).dep(Dep::id("row", row)))
            })
            .await
            .unwrap()
    });
    (read, release, task)
}

/// Loads held across a `clear` (they read before it, they store after it) are not stored: a
/// clear rejects every fill whose token predates it, whatever its tags.
pub async fn clear_rejects_every_fill_held_across_it<H: Harness>(h: &H) {
    let cache = Cache::new(h.store().await);
    let mut held = Vec::new();
    for i in 0..4 {
        held.push(held_fetch(&cache, format!("ns:held:{i}"), i));
    }
    for (read, _, _) in &mut held {
        read.await.unwrap();
    }
    cache.clear().await.unwrap();
    for (_, release, task) in held {
        release.send(()).unwrap();
        let fetched = task.await.unwrap();
        assert_eq!(
            fetched.origin,
            Origin::Loaded { stored: false },
            "a load from before the clear was stored"
        );
    }
    for i in 0..4 {
        assert_eq!(
            cache.get::<u64>(format!("ns:held:{i}")).await.unwrap(),
            None
        );
    }
    assert_eq!(cache.stats().fills_rejected, 4);
}

/// Fills race a stream of clears: no value loaded before a clear returned is served after it.
/// (A clear here stands for "everything may have changed": each one bumps the data version.)
/// The run must show fills refused by a clear; it runs again otherwise, at most 5 times.
pub async fn clear_racing_fills_never_serves_a_value_from_before_it<H: Harness>(h: &H) {
    let mut seeds = Rng::from_env();
    for attempt in 1..=5 {
        let seed = seeds.next_u64();
        let rejected = clear_race(h, seed).await;
        if rejected > 0 {
            return;
        }
        eprintln!("clear race {attempt} (seed {seed}) refused no fill");
    }
    panic!("in 5 runs no fill raced a clear");
}

async fn clear_race<H: Harness>(h: &H, seed: u64) -> u64 {
    let cache = Cache::new(h.store().await);
    let version = Arc::new(AtomicU64::new(0));
    let mut cleared = 0;
    let mut rng = Rng::new(seed);
    // Rounds: three reads start, then a clear runs while they load.
    for _ in 0..60 {
        let floor = cleared;
        let mut reads = Vec::new();
        for reader in 0..3 {
            let (cache, version) = (cache.clone(), Arc::clone(&version));
            let k = format!("ns:race:{}", rng.below(3));
            let yields = rng.below(8);
            reads.push(tokio::spawn(async move {
                let seen = cache
                    .get_or_insert_with(k.as_str(), || async move {
                        let seen = version.load(Ordering::SeqCst);
                        for _ in 0..yields {
                            tokio::task::yield_now().await;
                        }
                        Ok::<_, Infallible>(Loaded::new(seen))
                    })
                    .await
                    .unwrap();
                assert!(
                    seen >= floor,
                    "reader {reader}: {k} holds version {seen}, but a clear after version \
                     {floor} had returned before the read began (seed {seed})"
                );
            }));
        }
        let v = version.fetch_add(1, Ordering::SeqCst) + 1;
        for _ in 0..rng.below(4) {
            tokio::task::yield_now().await;
        }
        cache.clear().await.unwrap();
        cleared = v;
        for read in reads {
            read.await.unwrap();
        }
    }
    cache.stats().fills_rejected
}

/// A `clear` racing invalidations of the namespace's tags, on another handle: once both have
/// returned, no entry from before is served on either handle, and fills with fresh tokens work.
pub async fn clear_racing_invalidations_leaves_no_entry_from_before_it<H: Harness>(h: &H) {
    let store = h.small_store().await;
    let other = h.reopen(&store).await;
    let tags: Vec<Tag> = (0..6).map(|i| tag(&Dep::id("row", i))).collect();
    let keys: Vec<Key> = (0..60).map(|i| key(&format!("ns:mixed:{i}"))).collect();
    for (i, k) in keys.iter().enumerate() {
        let ttl = (i % 2 == 0).then_some(Duration::from_secs(3600));
        store
            .put(k, bytes("old"), &[tags[i % 6].clone()], ttl, None)
            .await
            .unwrap();
    }
    let Lookup::Miss(before) = store.get(&key("ns:mixed:new")).await.unwrap() else {
        panic!("miss expected");
    };
    let barrier = Arc::new(tokio::sync::Barrier::new(tags.len() + 1));
    let mut tasks = Vec::new();
    for t in &tags {
        let (other, t, barrier) = (other.clone(), t.clone(), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            other.invalidate(std::slice::from_ref(&t)).await.unwrap();
        }));
    }
    {
        let (store, barrier) = (store.clone(), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.clear().await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for handle in [&store, &other] {
        for k in &keys {
            assert_eq!(hit(handle, k).await, None, "{k} survived");
            assert!(!handle.exists(k).await.unwrap(), "{k} exists");
        }
    }
    let outcome = store
        .put(&key("ns:mixed:new"), bytes("v"), &tags, None, Some(&before))
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stale, "a token from before the clear");
    let Lookup::Miss(after) = other.get(&keys[0]).await.unwrap() else {
        panic!("miss expected");
    };
    let outcome = other
        .put(&keys[0], bytes("new"), &tags, None, Some(&after))
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stored);
    assert_eq!(hit(&store, &keys[0]).await, Some(bytes("new")));
}
