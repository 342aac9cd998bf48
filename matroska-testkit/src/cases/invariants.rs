//! The consistency invariants, one or more cases each (`invN_...`); they are stated in the module
//! documentation of `matroska_core::store`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use matroska_core::store::{KeyTtl, Lookup, PutOutcome};
use matroska_core::{Cache, Dep, Loaded, Scopes, Store, Tag};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::Harness;
use crate::support::{bytes, hit, key, tag};

/// Invariant 1: Once `invalidate` returns, no entry stored before it that carries the tag is served.
pub async fn inv1_no_stale_read_after_invalidation<H: Harness>(h: &H) {
    let store = h.store().await;
    let other = h.reopen(&store).await;
    let t = tag(&Dep::id("article", 1));
    let keys: Vec<_> = (0..20).map(|i| key(&format!("inv1:{i}"))).collect();
    for k in &keys {
        store
            .put(k, bytes("v1"), std::slice::from_ref(&t), None, None)
            .await
            .unwrap();
    }
    other.invalidate(std::slice::from_ref(&t)).await.unwrap();
    for k in &keys {
        assert_eq!(hit(&store, k).await, None, "{k} survived the invalidation");
        assert_eq!(hit(&other, k).await, None, "{k} survived (second handle)");
        assert!(!store.exists(k).await.unwrap(), "{k} exists");
    }
}

/// The row a loader reads.
type Row = Arc<Mutex<Option<String>>>;

/// Runs one fill of `key` through `cache`, holding the loader after it read `row` until the test
/// lets it go: returns (a signal that the loader has read, the release, the caller's task).
fn held_fill<S: Store>(
    cache: &Cache<S>,
    k: &str,
    row: &Row,
    dep: Dep,
) -> (
    oneshot::Receiver<()>,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Option<String>>,
) {
    let (read_tx, read_rx) = oneshot::channel();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let (cache, k, row) = (cache.clone(), k.to_owned(), Arc::clone(row));
    let task = tokio::spawn(async move {
        cache
            .get_or_insert_with(k.as_str(), || async move {
                let value = row.lock().clone();
                let _ = read_tx.send(());
                let _ = go_rx.await;
                Ok::<_, Infallible>(Loaded::new(value).dep(dep))
            })
            .await
            .unwrap()
    });
    (read_rx, go_tx, task)
}

/// Invariant 2: A fill whose loader read a row before a write invalidated it is not stored (the loader is
/// held at a barrier while another task writes and invalidates).
pub async fn inv2_stale_fill_rejected_changed_row<H: Harness>(h: &H) {
    let cache = Cache::new(h.store().await);
    let row: Row = Arc::new(Mutex::new(Some("v1".into())));
    let dep = Dep::id("article", 1);
    let (read, go, task) = held_fill(&cache, "inv2:article:1", &row, dep.clone());
    read.await.unwrap();
    // The writer changes the row and invalidates while the load is in flight.
    *row.lock() = Some("v2".into());
    cache.invalidate([dep.clone()]).await.unwrap();
    go.send(()).unwrap();
    // The caller gets what it loaded (it started before the write)...
    assert_eq!(task.await.unwrap().as_deref(), Some("v1"));
    // ...but it was not cached: the next read loads the new row.
    assert_eq!(cache.stats().fills_rejected, 1);
    assert_eq!(
        cache.get::<Option<String>>("inv2:article:1").await.unwrap(),
        None
    );
    let (_, go, task) = held_fill(&cache, "inv2:article:1", &row, dep);
    go.send(()).unwrap();
    assert_eq!(task.await.unwrap().as_deref(), Some("v2"));
    assert_eq!(
        cache.get::<Option<String>>("inv2:article:1").await.unwrap(),
        Some(Some("v2".into()))
    );
}

/// Invariant 2: The same for a negative result: "no such row" loaded before the row was inserted is not
/// cached (the row's tag was never seen by the store before the insert).
pub async fn inv2_stale_fill_rejected_negative_result<H: Harness>(h: &H) {
    let cache = Cache::new(h.store().await);
    let scopes = Scopes::new("article").id(|a: &(i64, String)| a.0);
    let row: Row = Arc::new(Mutex::new(None));
    let (read, go, task) = held_fill(&cache, "inv2:article:7", &row, Dep::id("article", 7));
    read.await.unwrap();
    let inserted = (7, "new".to_owned());
    *row.lock() = Some(inserted.1.clone());
    cache
        .invalidate(scopes.invalidate_for(None, Some(&inserted), None))
        .await
        .unwrap();
    go.send(()).unwrap();
    assert_eq!(
        task.await.unwrap(),
        None,
        "the caller gets its (old) negative result"
    );
    assert_eq!(cache.stats().fills_rejected, 1);
    assert_eq!(
        cache.get::<Option<String>>("inv2:article:7").await.unwrap(),
        None,
        "the negative result must not be cached"
    );
}

/// Invariant 2: At the store level: a token taken before an invalidation of any of the entry's tags cannot
/// store; a token taken after it can.
pub async fn inv2_store_rejects_tokens_older_than_an_invalidation<H: Harness>(h: &H) {
    let store = h.store().await;
    let (a, b) = (tag(&Dep::id("article", 1)), tag(&Dep::id("author", 2)));
    let k = key("inv2:store");
    let Lookup::Miss(old) = store.get(&k).await.unwrap() else {
        panic!("miss expected");
    };
    store.invalidate(std::slice::from_ref(&b)).await.unwrap();
    let Lookup::Miss(new) = store.get(&k).await.unwrap() else {
        panic!("miss expected");
    };
    let tags = [a.clone(), b];
    let outcome = store
        .put(&k, bytes("stale"), &tags, None, Some(&old))
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stale);
    assert_eq!(hit(&store, &k).await, None);
    // A fill with only the untouched tag may use the old token.
    let outcome = store
        .put(&k, bytes("ok"), &[a], None, Some(&old))
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stored);
    let outcome = store
        .put(&k, bytes("fresh"), &tags, None, Some(&new))
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stored);
    assert_eq!(hit(&store, &k).await, Some(bytes("fresh")));
}

/// Invariant 2: A token older than the fill window cannot store (the stamps it would be checked against
/// may be gone).
pub async fn inv2_token_older_than_fill_window_is_rejected<H: Harness>(h: &H) {
    let store = h.store().await;
    let k = key("inv2:window");
    let Lookup::Miss(token) = store.get(&k).await.unwrap() else {
        panic!("miss expected");
    };
    h.advance(&store, h.fill_window() + Duration::from_millis(200))
        .await;
    let outcome = store
        .put(&k, bytes("late"), &[], None, Some(&token))
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stale);
    assert_eq!(hit(&store, &k).await, None);
}

/// Invariant 3: An entry whose tag lost its reverse index (eviction, partial write) is still not served
/// after the tag is invalidated.
pub async fn inv3_lost_index_means_miss<H: Harness>(h: &H) {
    let store = h.store().await;
    let t = tag(&Dep::id("article", 3));
    let (k, k2) = (key("inv3:page"), key("inv3:list"));
    store
        .put(&k, bytes("v"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    store
        .put(&k2, bytes("v"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    h.lose_index(&store, &t).await;
    store.invalidate(std::slice::from_ref(&t)).await.unwrap();
    assert_eq!(
        hit(&store, &k).await,
        None,
        "served after its tag was invalidated"
    );
    assert!(!store.exists(&k2).await.unwrap());
    // New fills with the tag work as usual afterwards.
    let Lookup::Miss(token) = store.get(&k).await.unwrap() else {
        panic!("miss expected");
    };
    let outcome = store
        .put(&k, bytes("v2"), &[t], None, Some(&token))
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stored);
    assert_eq!(hit(&store, &k).await, Some(bytes("v2")));
}

/// Puts `k` under `tags` with `ttl`, unconditionally.
async fn put_plain<S: Store>(
    store: &S,
    k: &matroska_core::Key,
    tags: &[Tag],
    ttl: Option<Duration>,
) {
    let outcome = store.put(k, bytes("v"), tags, ttl, None).await.unwrap();
    assert_eq!(outcome, PutOutcome::Stored, "{k}");
}

/// Every key is a miss by `get` and by `exists`.
async fn all_missing<S: Store>(store: &S, keys: &[matroska_core::Key], when: &str) {
    for k in keys {
        assert_eq!(hit(store, k).await, None, "{k} was served {when}");
        assert!(!store.exists(k).await.unwrap(), "{k} exists {when}");
    }
}

/// Runs the store's housekeeping, then lets the fill window pass, `rounds` times, then
/// housekeeping once more: every stamp the store may prune is pruned by then.
async fn housekeep_past_the_window<H: Harness>(h: &H, store: &H::Store, rounds: usize) {
    for _ in 0..rounds {
        h.housekeep(store).await;
        h.advance(store, h.fill_window() + Duration::from_millis(500))
            .await;
    }
    h.housekeep(store).await;
}

/// Invariant 3, through housekeeping: entries whose tag lost its reverse index (persistent,
/// expiring, and carrying a second tag) stay misses after the store's housekeeping has run and
/// the fill window has passed, several times over (stamps may be pruned then).
pub async fn inv3_lost_index_stays_a_miss_after_housekeeping_and_the_fill_window<H: Harness>(
    h: &H,
) {
    let store = h.store().await;
    let (a, b) = (tag(&Dep::id("article", 3)), tag(&Dep::id("author", 4)));
    let keys = [key("inv3h:page"), key("inv3h:list"), key("inv3h:both")];
    let long = Some(Duration::from_secs(3600));
    put_plain(&store, &keys[0], std::slice::from_ref(&a), None).await;
    put_plain(&store, &keys[1], std::slice::from_ref(&a), long).await;
    put_plain(&store, &keys[2], &[a.clone(), b], None).await;
    h.lose_index(&store, &a).await;
    store.invalidate(std::slice::from_ref(&a)).await.unwrap();
    all_missing(&store, &keys, "after the invalidation").await;
    housekeep_past_the_window(h, &store, 3).await;
    all_missing(&store, &keys, "after housekeeping and the fill window").await;
    let Lookup::Miss(token) = store.get(&keys[0]).await.unwrap() else {
        panic!("miss expected");
    };
    let outcome = store
        .put(&keys[0], bytes("v2"), &[a], None, Some(&token))
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stored);
}

/// Invariant 3: the lost index is one of an entry's several tags; invalidating that tag makes
/// the entry a miss, through housekeeping and the fill window, and leaves the other tag's
/// entries alone. (After housekeeping those may be misses too: a store that finds metadata lost
/// may drop more than it covered, never serve less fresh data.)
pub async fn inv3_lost_index_of_one_of_several_tags_means_miss<H: Harness>(h: &H) {
    let store = h.store().await;
    let (a, b) = (tag(&Dep::id("article", 5)), tag(&Dep::tag("homepage")));
    let (both, only_b, only_a) = (key("inv3m:both"), key("inv3m:b"), key("inv3m:a"));
    put_plain(&store, &both, &[a.clone(), b.clone()], None).await;
    put_plain(&store, &only_b, std::slice::from_ref(&b), None).await;
    put_plain(&store, &only_a, std::slice::from_ref(&a), None).await;
    h.lose_index(&store, &b).await;
    store.invalidate(std::slice::from_ref(&b)).await.unwrap();
    let gone = [both, only_b];
    all_missing(&store, &gone, "after the invalidation").await;
    assert_eq!(hit(&store, &only_a).await, Some(bytes("v")));
    housekeep_past_the_window(h, &store, 2).await;
    all_missing(&store, &gone, "after housekeeping and the fill window").await;
}

/// Invariant 3 for stamps: losing a tag's stamp after its invalidation (an eviction) never
/// brings back an entry the invalidation covered, set aside or not, nor lets a fill whose token
/// predates the invalidation store. Stores that keep no stamp that can be lost on its own skip
/// this (printed).
pub async fn inv3_a_lost_stamp_never_readmits_an_invalidated_entry<H: Harness>(h: &H) {
    let store = h.small_store().await;
    let t = tag(&Dep::id("article", 8));
    let keys: Vec<_> = (0..12).map(|i| key(&format!("inv3s:{i}"))).collect();
    for (i, k) in keys.iter().enumerate() {
        let ttl = (i % 2 == 0).then_some(Duration::from_secs(3600));
        put_plain(&store, k, std::slice::from_ref(&t), ttl).await;
    }
    let late = key("inv3s:late");
    let Lookup::Miss(before) = store.get(&late).await.unwrap() else {
        panic!("miss expected");
    };
    store.invalidate(std::slice::from_ref(&t)).await.unwrap();
    if !h.lose_stamp(&store, &t).await {
        eprintln!("note: this store keeps no stamp that can be lost on its own; nothing to test");
        return;
    }
    all_missing(&store, &keys, "after its tag's stamp was lost").await;
    let outcome = store
        .put(
            &late,
            bytes("stale"),
            std::slice::from_ref(&t),
            None,
            Some(&before),
        )
        .await
        .unwrap();
    assert_eq!(
        outcome,
        PutOutcome::Stale,
        "a fill from before the invalidation was stored once the stamp was lost"
    );
    housekeep_past_the_window(h, &store, 1).await;
    all_missing(&store, &keys, "after housekeeping and the fill window").await;
    assert_eq!(hit(&store, &late).await, None);
}

/// Invariant 2, for an existing entry: a put refused as stale changes nothing; the entry keeps
/// its value, its time to live and its tags (the stale put's extra tag is not added to it).
pub async fn inv2_a_stale_put_leaves_the_existing_entry_untouched<H: Harness>(h: &H) {
    let store = h.store().await;
    let (a, b) = (tag(&Dep::id("article", 1)), tag(&Dep::id("author", 2)));
    let k = key("inv2:untouched");
    let Lookup::Miss(before) = store.get(&k).await.unwrap() else {
        panic!("miss expected");
    };
    // Another writer stores a fresh value, then an unrelated author changes.
    let hour = Duration::from_secs(3600);
    let outcome = store
        .put(
            &k,
            bytes("fresh"),
            std::slice::from_ref(&a),
            Some(hour),
            None,
        )
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stored);
    store.invalidate(std::slice::from_ref(&b)).await.unwrap();
    let outcome = store
        .put(
            &k,
            bytes("stale"),
            &[a.clone(), b.clone()],
            None,
            Some(&before),
        )
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stale);
    assert_eq!(
        hit(&store, &k).await,
        Some(bytes("fresh")),
        "the value changed"
    );
    match store.ttl(&k).await.unwrap() {
        KeyTtl::Expires(left) => assert!(left <= hour, "{left:?}"),
        other => panic!("the time to live changed: {other:?}"),
    }
    store.invalidate(std::slice::from_ref(&b)).await.unwrap();
    assert_eq!(
        hit(&store, &k).await,
        Some(bytes("fresh")),
        "the stale put's tag was added to the entry"
    );
    store.invalidate(&[a]).await.unwrap();
    assert_eq!(hit(&store, &k).await, None, "the entry lost its own tag");
}

/// Invariant 4: Re-putting a key replaces its value and its tags together.
pub async fn inv4_put_replaces_value_and_tags<H: Harness>(h: &H) {
    let store = h.store().await;
    let (old, new) = (tag(&Dep::tag("old")), tag(&Dep::tag("new")));
    let k = key("inv4:k");
    store
        .put(&k, bytes("v1"), std::slice::from_ref(&old), None, None)
        .await
        .unwrap();
    store
        .put(&k, bytes("v2"), std::slice::from_ref(&new), None, None)
        .await
        .unwrap();
    store.invalidate(&[old]).await.unwrap();
    assert_eq!(
        hit(&store, &k).await,
        Some(bytes("v2")),
        "the old tag no longer applies"
    );
    store.invalidate(&[new]).await.unwrap();
    assert_eq!(hit(&store, &k).await, None, "the new tag applies");
}

/// Invariant 5: Index structures do not keep an expired entry alive.
pub async fn inv5_index_does_not_keep_expired_entries_alive<H: Harness>(h: &H) {
    let store = h.store().await;
    let t = tag(&Dep::tag("shared"));
    let (short, long) = (key("inv5:short"), key("inv5:long"));
    store
        .put(
            &short,
            bytes("s"),
            std::slice::from_ref(&t),
            Some(Duration::from_millis(200)),
            None,
        )
        .await
        .unwrap();
    store
        .put(&long, bytes("l"), &[t], None, None)
        .await
        .unwrap();
    h.advance(&store, Duration::from_millis(400)).await;
    assert_eq!(hit(&store, &short).await, None);
    assert_eq!(hit(&store, &long).await, Some(bytes("l")));
}

/// Invariant 5: Index structures do not shorten the life of an entry: a long-lived entry stays
/// reachable by its tag after a short-lived entry with the same tag expired, whatever their
/// order. (The short-lived entries must still be live when their neighbours are put: on a slow
/// machine the case uses a longer time to live rather than test less.)
pub async fn inv5_index_does_not_shorten_entry_life<H: Harness>(h: &H) {
    let store = h.store().await;
    let long = Some(Duration::from_secs(3600));
    let names = |attempt: usize| {
        (
            tag(&Dep::tag(format!("short-first:{attempt}"))),
            tag(&Dep::tag(format!("long-first:{attempt}"))),
            [
                key(&format!("inv5:{attempt}:a-short")),
                key(&format!("inv5:{attempt}:a-long")),
                key(&format!("inv5:{attempt}:b-long")),
                key(&format!("inv5:{attempt}:b-short")),
            ],
        )
    };
    let mut used = 0;
    let ttl = crate::support::short_ttl(h.exact_time(), |ttl, attempt| {
        used = attempt;
        let store = store.clone();
        let (t1, t2, keys) = names(attempt);
        async move {
            let writes = [
                (&keys[0], &t1, Some(ttl)),
                (&keys[1], &t1, long),
                (&keys[2], &t2, long),
                (&keys[3], &t2, Some(ttl)),
            ];
            for (k, t, ttl) in writes {
                let outcome = store
                    .put(k, bytes("v"), std::slice::from_ref(t), ttl, None)
                    .await
                    .unwrap();
                assert_eq!(outcome, PutOutcome::Stored);
            }
        }
    })
    .await;
    let (t1, t2, keys) = names(used);
    h.advance(&store, ttl * 2).await;
    assert_eq!(
        hit(&store, &keys[0]).await,
        None,
        "the short-lived entry expired"
    );
    assert_eq!(hit(&store, &keys[1]).await, Some(bytes("v")));
    // The two long-lived entries, and perhaps the expired ones (the contract allows counting
    // entries that had just expired).
    let removed = store.invalidate(&[t1, t2]).await.unwrap();
    assert!((2..=4).contains(&removed), "{removed} entries");
    assert_eq!(hit(&store, &keys[1]).await, None);
    assert_eq!(hit(&store, &keys[2]).await, None);
}

/// Invariant 6: Invalidating a tag with very many dependents removes them all, leaves the rest, and the
/// tag is usable right after.
pub async fn inv6_bounded_invalidation_of_many_dependents<H: Harness>(h: &H) {
    let store = h.store().await;
    let n = h.fan_out();
    let hot = tag(&Dep::tag("hot"));
    futures::stream::iter(0..n)
        .map(|i| {
            let (store, hot) = (store.clone(), hot.clone());
            async move {
                let tags = [hot, tag(&Dep::id("row", i))];
                let k = key(&format!("inv6:{i}"));
                store.put(&k, bytes("v"), &tags, None, None).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<()>()
        .await;
    let bystander = key("inv6:bystander");
    store
        .put(
            &bystander,
            bytes("b"),
            &[tag(&Dep::tag("cold"))],
            None,
            None,
        )
        .await
        .unwrap();
    let removed = store.invalidate(std::slice::from_ref(&hot)).await.unwrap();
    assert_eq!(removed, n as u64);
    for i in (0..n).step_by((n / 200).max(1)).chain([n - 1]) {
        assert_eq!(
            hit(&store, &key(&format!("inv6:{i}"))).await,
            None,
            "dependent {i}"
        );
    }
    assert_eq!(hit(&store, &bystander).await, Some(bytes("b")));
    let Lookup::Miss(token) = store.get(&key("inv6:0")).await.unwrap() else {
        panic!("miss expected");
    };
    let outcome = store
        .put(&key("inv6:0"), bytes("new"), &[hot], None, Some(&token))
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stored);
}
