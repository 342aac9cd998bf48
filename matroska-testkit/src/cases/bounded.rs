//! Bounded work: invalidations whose work is split by the store's budgets (script budgets,
//! reclaim chunks, batches), run on [`Harness::small_store`] so that every budget runs out, and on
//! the default store for the shapes its own budget meets. Whatever the split, every dependent is
//! a miss once `invalidate` returns, by `get` and by `exists`, also after housekeeping and once
//! the fill window has passed.

use std::time::Duration;

use futures::StreamExt as _;
use matroska_core::store::{Lookup, PutOutcome};
use matroska_core::{Dep, Key, Store, Tag};

use crate::Harness;
use crate::support::{bytes, hit, key, tag};

/// A long TTL: the entry is live through the case, and its index member expires (a store that
/// orders index members by expiry puts it before the persistent ones).
const LONG: Duration = Duration::from_secs(3600);

/// Puts `k` with `tags`, persistent or with a long TTL.
async fn put<S: Store>(store: &S, k: &Key, tags: &[Tag], expiring: bool) {
    let ttl = expiring.then_some(LONG);
    let outcome = store.put(k, bytes("v"), tags, ttl, None).await.unwrap();
    assert_eq!(outcome, PutOutcome::Stored, "{k}");
}

/// Every key is a miss, by `get` and by `exists`, on every handle.
async fn all_missing<S: Store>(handles: &[&S], keys: &[Key], when: &str) {
    for store in handles {
        for k in keys {
            assert_eq!(hit(*store, k).await, None, "{k} was served {when}");
            assert!(!store.exists(k).await.unwrap(), "{k} exists {when}");
        }
    }
}

/// Every key is still served.
async fn all_present<S: Store>(store: &S, keys: &[Key], when: &str) {
    for k in keys {
        assert_eq!(hit(store, k).await, Some(bytes("v")), "{k} is lost {when}");
    }
}

/// Puts `n` dependents per tag (alternately persistent and expiring, the first of each tag
/// expiring), plus one entry per pair of neighbouring tags; returns the dependents.
async fn dependents<S: Store>(
    store: &S,
    prefix: &str,
    tags: &[Tag],
    per_tag: &[usize],
) -> Vec<Key> {
    let mut keys = Vec::new();
    for (i, (t, n)) in tags.iter().zip(per_tag).enumerate() {
        for j in 0..*n {
            let k = key(&format!("{prefix}:{i}:{j}"));
            put(store, &k, std::slice::from_ref(t), j % 2 == 0).await;
            keys.push(k);
        }
        if let Some(next) = tags.get(i + 1) {
            let k = key(&format!("{prefix}:{i}:both"));
            put(store, &k, &[t.clone(), next.clone()], i % 2 == 1).await;
            keys.push(k);
        }
    }
    keys
}

/// One invalidation of many tags whose indexes together hold more dependents than one budget,
/// persistent and expiring mixed: every dependent is a miss afterwards, however the store split
/// the work, and the count is every dependent once.
pub async fn one_invalidation_of_many_tags_beyond_the_budget_leaves_no_dependent<H: Harness>(
    h: &H,
) {
    let store = h.small_store().await;
    let tags: Vec<Tag> = (0..12).map(|i| tag(&Dep::id("bounded", i))).collect();
    let per_tag: Vec<usize> = (0..12).map(|i| 1 + i % 4).collect();
    let keys = dependents(&store, "many", &tags, &per_tag).await;
    let bystander = key("many:bystander");
    put(&store, &bystander, &[tag(&Dep::tag("cold"))], false).await;
    let removed = store.invalidate(&tags).await.unwrap();
    assert_eq!(removed, keys.len() as u64, "every dependent, once");
    all_missing(&[&store], &keys, "after the invalidation").await;
    all_present(
        &store,
        std::slice::from_ref(&bystander),
        "after the invalidation",
    )
    .await;
    h.housekeep(&store).await;
    all_missing(&[&store], &keys, "after housekeeping").await;
    all_present(&store, &[bystander], "after housekeeping").await;
}

/// On the default store: a first tag whose index uses up (nearly, exactly, or more than) the
/// whole budget of one step, for the default budgets of the stores (16 in memory, 256 in Redis),
/// then a tag with one persistent dependent in the same call. The later tag's dependent is a miss.
pub async fn a_budget_spent_on_earlier_tags_still_sweeps_the_later_ones<H: Harness>(h: &H) {
    let store = h.store().await;
    for n in [15_u64, 16, 17, 255, 256, 257] {
        let (a, b) = (
            tag(&Dep::id("post", n * 2)),
            tag(&Dep::id("post", n * 2 + 1)),
        );
        futures::stream::iter(0..n)
            .map(|i| {
                let (store, a) = (store.clone(), a.clone());
                async move { put(&store, &key(&format!("spent:{n}:{i}")), &[a], false).await }
            })
            .buffer_unordered(16)
            .collect::<()>()
            .await;
        let last = key(&format!("spent:{n}:b"));
        put(&store, &last, std::slice::from_ref(&b), false).await;
        let removed = store.invalidate(&[a, b]).await.unwrap();
        let shape = format!("{n} persistent dependents, then one");
        assert_eq!(removed, n + 1, "{shape}");
        let first = key(&format!("spent:{n}:0"));
        all_missing(
            &[&store],
            &[last, first],
            &format!("after invalidating {shape}"),
        )
        .await;
    }
}

/// An index holding exactly as many expiring members as a budget, plus persistent ones, for
/// several sizes around small budgets: the persistent members are swept too.
pub async fn an_index_of_exactly_a_budget_of_expiring_members_sweeps_the_persistent_ones<
    H: Harness,
>(
    h: &H,
) {
    let store = h.small_store().await;
    for expiring in 0..=5 {
        for persistent in 1..=2 {
            let t = tag(&Dep::id("exact", expiring * 10 + persistent));
            let mut keys = Vec::new();
            for j in 0..expiring + persistent {
                let k = key(&format!("exact:{expiring}:{persistent}:{j}"));
                put(&store, &k, std::slice::from_ref(&t), j < expiring).await;
                keys.push(k);
            }
            let removed = store.invalidate(std::slice::from_ref(&t)).await.unwrap();
            let shape = format!("{expiring} expiring + {persistent} persistent members");
            assert_eq!(removed, keys.len() as u64, "{shape}");
            all_missing(&[&store], &keys, &format!("after invalidating {shape}")).await;
        }
    }
}

/// More tags in one call than a store sends in one step (Redis scripts take 64): every dependent
/// is a miss, on the small and on the default store.
pub async fn more_than_64_tags_in_one_invalidation_leave_no_dependent<H: Harness>(h: &H) {
    for (store, name) in [
        (h.small_store().await, "small"),
        (h.store().await, "default"),
    ] {
        let tags: Vec<Tag> = (0..150).map(|i| tag(&Dep::id("wide", i))).collect();
        let per_tag = vec![1; tags.len()];
        let keys = dependents(&store, "wide", &tags, &per_tag).await;
        let bystander = key("wide:bystander");
        put(&store, &bystander, &[tag(&Dep::id("wide", 150))], false).await;
        let removed = store.invalidate(&tags).await.unwrap();
        assert_eq!(removed, keys.len() as u64, "{name} store");
        all_missing(&[&store], &keys, &format!("on the {name} store")).await;
        all_present(&store, &[bystander], &format!("on the {name} store")).await;
    }
}

/// Two handles invalidate the same large tag at once: when both have returned, no dependent is
/// served on either handle, also after housekeeping and the fill window, and the tag fills again.
pub async fn two_handles_invalidating_one_large_tag_at_once_leave_no_dependent<H: Harness>(h: &H) {
    let store = h.small_store().await;
    let other = h.reopen(&store).await;
    let t = tag(&Dep::tag("hot"));
    let n: u64 = 120;
    let keys = dependents(&store, "hot", std::slice::from_ref(&t), &[120]).await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let run = |store: H::Store| {
        let (t, barrier) = (t.clone(), std::sync::Arc::clone(&barrier));
        tokio::spawn(async move {
            barrier.wait().await;
            store.invalidate(std::slice::from_ref(&t)).await.unwrap()
        })
    };
    let (a, b) = (run(store.clone()), run(other.clone()));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert!(a <= n && b <= n, "counts {a} and {b} of {n} dependents");
    assert!(
        a + b >= n,
        "counts {a} + {b}: some dependent was counted by neither call"
    );
    all_missing(&[&store, &other], &keys, "after both invalidations").await;
    h.housekeep(&store).await;
    h.advance(&store, h.fill_window() + Duration::from_millis(500))
        .await;
    h.housekeep(&other).await;
    all_missing(
        &[&store, &other],
        &keys,
        "after housekeeping and the fill window",
    )
    .await;
    let k = &keys[0];
    let Lookup::Miss(token) = other.get(k).await.unwrap() else {
        panic!("miss expected");
    };
    let outcome = other.put(k, bytes("new"), &[t], None, Some(&token)).await;
    assert_eq!(outcome.unwrap(), PutOutcome::Stored);
    assert_eq!(hit(&store, k).await, Some(bytes("new")));
}

/// Entries an invalidation could not sweep within its budget (set aside for later) stay misses
/// once the fill window has passed (when fill tokens no longer protect anything), before and
/// after housekeeping.
pub async fn set_aside_entries_stay_misses_after_the_fill_window<H: Harness>(h: &H) {
    let store = h.small_store().await;
    let t = tag(&Dep::tag("set-aside"));
    let keys = dependents(&store, "aside", std::slice::from_ref(&t), &[40]).await;
    store.invalidate(std::slice::from_ref(&t)).await.unwrap();
    all_missing(&[&store], &keys, "after the invalidation").await;
    let past_window = h.fill_window() + Duration::from_millis(500);
    h.advance(&store, past_window).await;
    all_missing(&[&store], &keys, "after the fill window").await;
    for round in 1..=2 {
        h.housekeep(&store).await;
        all_missing(
            &[&store],
            &keys,
            &format!("after housekeeping round {round}"),
        )
        .await;
        h.advance(&store, past_window).await;
    }
    all_missing(&[&store], &keys, "two fill windows after housekeeping").await;
}
