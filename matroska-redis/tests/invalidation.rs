//! Invalidations whose work does not fit in one script: the budget shared by the tags of one
//! script, indexes set aside and reclaimed in chunks, more tags than one script takes, two handles
//! invalidating one large tag at once, and an invalidation whose caller went away half-way.
//!
//! Every test runs in a fresh namespace of the shared server (`MATROSKA_TEST_REDIS_URL`), deleted
//! when the test ends, also when it fails.

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use matroska_core::store::Store;
use matroska_core::{Bytes, Dep, Key, Tag};
use matroska_redis::RedisStore;
use matroska_testkit::support::{hit, key, tag};

use crate::support::Scratch;

fn v(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// Puts `n` entries `<name>:<i>` carrying `tags` (persistent with `ttl` None).
async fn put_many(store: &RedisStore, name: &str, n: usize, tags: &[Tag], ttl: Option<Duration>) {
    for i in 0..n {
        store
            .put(&key(&format!("{name}:{i}")), v(name), tags, ttl, None)
            .await
            .unwrap();
    }
}

/// Asserts that the entry is a miss for every way of reading it, and that its key is gone.
async fn assert_gone(s: &mut Scratch, k: &Key) {
    assert_eq!(hit(&s.store, k).await, None, "{k} is served");
    assert!(!s.store.exists(k).await.unwrap(), "{k} exists");
    let raw: bool = redis::cmd("EXISTS")
        .arg(s.store.layout().entry(k))
        .query_async::<u64>(&mut s.conn)
        .await
        .unwrap()
        == 1;
    assert!(!raw, "the key of {k} is still in Redis");
}

/// One invalidation of several tags whose first index uses the whole budget of the script: the
/// later tags' persistent dependents are removed too (review C1, shape a; before the fix, the
/// sentinel of the later index, which sorts first among persistent members, made the index look
/// complete, and it was deleted without its dependents, which were then served for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_never_drops_the_persistent_dependents_of_later_tags() {
    let Some(mut s) = Scratch::new(4).await else {
        return;
    };
    let (a, b, c) = (tag(&Dep::tag("a")), tag(&Dep::tag("b")), tag(&Dep::tag("c")));
    put_many(&s.store, "a", 3, std::slice::from_ref(&a), None).await;
    put_many(&s.store, "b", 1, std::slice::from_ref(&b), None).await;
    put_many(&s.store, "c", 3, std::slice::from_ref(&c), None).await;
    let control = tag(&Dep::tag("control"));
    put_many(&s.store, "control", 2, std::slice::from_ref(&control), None).await;

    let removed = s.store.invalidate(&[a, b, c]).await.unwrap();
    for k in ["a:0", "a:2", "b:0", "c:0", "c:2"] {
        assert_gone(&mut s, &key(k)).await;
    }
    assert_eq!(removed, 7, "every dependent is counted");
    assert_eq!(hit(&s.store, &key("control:1")).await, Some(v("control")));
}

/// The review's reproduction with the default chunk of 256: 255 persistent dependents on one tag,
/// one on the next, both invalidated in one call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_default_budget_never_drops_the_dependent_of_the_next_tag() {
    let Some(mut s) = Scratch::new(256).await else {
        return;
    };
    let (p1, p2) = (tag(&Dep::id("post", 1)), tag(&Dep::id("post", 2)));
    put_many(&s.store, "list", 255, std::slice::from_ref(&p1), None).await;
    put_many(&s.store, "post2page", 1, std::slice::from_ref(&p2), None).await;
    let removed = s.store.invalidate(&[p1, p2]).await.unwrap();
    assert_gone(&mut s, &key("post2page:0")).await;
    assert_gone(&mut s, &key("list:254")).await;
    assert_eq!(removed, 256);
}

/// An index holding exactly `budget` expiring members and persistent ones is not mistaken for one
/// that fits (review C1, shape b): every member is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_of_exactly_budget_expiring_members_and_persistent_ones_is_swept_whole() {
    let Some(mut s) = Scratch::new(4).await else {
        return;
    };
    let t = tag(&Dep::tag("mixed"));
    put_many(
        &s.store,
        "expiring",
        4,
        std::slice::from_ref(&t),
        Some(Duration::from_secs(600)),
    )
    .await;
    put_many(&s.store, "persistent", 2, std::slice::from_ref(&t), None).await;
    let removed = s.store.invalidate(std::slice::from_ref(&t)).await.unwrap();
    for k in ["expiring:0", "expiring:3", "persistent:0", "persistent:1"] {
        assert_gone(&mut s, &key(k)).await;
    }
    assert_eq!(removed, 6);
}

/// Budget boundaries: an index of exactly `budget` members fits (removed in the script), one more
/// is set aside; an exhausted budget sets the next index aside rather than guessing; equal
/// (persistent) scores in every position. Every dependent is a miss afterwards, and nothing is
/// left to reclaim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_boundaries_never_lose_a_dependent() {
    let Some(mut s) = Scratch::new(4).await else {
        return;
    };
    let tags: Vec<Tag> = (0..8).map(|i| tag(&Dep::id("t", i))).collect();
    // 3 (fits), 1 (spends the rest of the budget), 1 (after the budget is spent), 4 (exactly a
    // budget), 5 (one more), 0 (none), 1, 3.
    let sizes = [3, 1, 1, 4, 5, 0, 1, 3];
    for (t, n) in tags.iter().zip(sizes) {
        put_many(&s.store, t.as_str(), n, std::slice::from_ref(t), None).await;
    }
    // One expiring member among the persistent ones of the last tag.
    s.store
        .put(
            &key("expiring"),
            v("e"),
            std::slice::from_ref(&tags[7]),
            Some(Duration::from_secs(600)),
            None,
        )
        .await
        .unwrap();
    let removed = s.store.invalidate(&tags).await.unwrap();
    for (t, n) in tags.iter().zip(sizes) {
        for i in 0..n {
            assert_gone(&mut s, &key(&format!("{}:{i}", t.as_str()))).await;
        }
    }
    assert_gone(&mut s, &key("expiring")).await;
    assert_eq!(removed, 3 + 1 + 1 + 4 + 5 + 1 + 3 + 1);
    let pending = s.store.layout().pending();
    let left: u64 = redis::cmd("EXISTS")
        .arg(pending)
        .query_async(&mut s.conn)
        .await
        .unwrap();
    assert_eq!(left, 0, "nothing is left to reclaim");
}

/// More tags than one script stamps (64): every tag is stamped and every dependent removed, also
/// when the dependents of all of them together exceed the budget many times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidating_more_tags_than_one_script_takes_removes_every_dependent() {
    let Some(mut s) = Scratch::new(8).await else {
        return;
    };
    let tags: Vec<Tag> = (0..150).map(|i| tag(&Dep::id("row", i))).collect();
    for (i, t) in tags.iter().enumerate() {
        put_many(&s.store, t.as_str(), 1 + i % 3, std::slice::from_ref(t), None).await;
    }
    let old = match s.store.get(&key("fill")).await.unwrap() {
        matroska_core::store::Lookup::Miss(token) => token,
        matroska_core::store::Lookup::Hit(_) => panic!("expected a miss"),
    };
    let expected: u64 = (0..150).map(|i| 1 + i % 3).sum();
    let removed = s.store.invalidate(&tags).await.unwrap();
    for (i, t) in tags.iter().enumerate() {
        for j in 0..=i % 3 {
            assert_gone(&mut s, &key(&format!("{}:{j}", t.as_str()))).await;
        }
    }
    assert_eq!(removed, expected);
    // The last tag (stamped by the third script) refuses a fill that started before.
    let outcome = s
        .store
        .put(&key("fill"), v("stale"), &tags[149..], None, Some(&old))
        .await
        .unwrap();
    assert!(!outcome.is_stored(), "a fill from before the invalidation");
}
