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
use matroska_core::{Dep, Key, Tag};
use matroska_redis::RedisStore;
use matroska_testkit::support::{bytes as v, hit, key, tag};

use crate::support::{Scratch, put_many};

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
    let (a, b, c) = (
        tag(&Dep::tag("a")),
        tag(&Dep::tag("b")),
        tag(&Dep::tag("c")),
    );
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
        put_many(
            &s.store,
            t.as_str(),
            1 + i % 3,
            std::slice::from_ref(t),
            None,
        )
        .await;
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

async fn exists(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<u64>(conn)
        .await
        .unwrap()
        == 1
}

async fn zcard(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> u64 {
    redis::cmd("ZCARD")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap()
}

async fn pending(s: &mut Scratch) -> Vec<String> {
    redis::cmd("ZRANGE")
        .arg(s.store.layout().pending())
        .arg(0)
        .arg(-1)
        .query_async(&mut s.conn)
        .await
        .unwrap()
}

async fn miss_token(store: &RedisStore, k: &Key) -> matroska_core::store::FillToken {
    match store.get(k).await.unwrap() {
        matroska_core::store::Lookup::Miss(token) => token,
        matroska_core::store::Lookup::Hit(bytes) => panic!("{k}: expected a miss, got {bytes:?}"),
    }
}

/// A tag with more dependents than one script removes: the invalidation is complete at once
/// (reads refuse the dependents, older fills are refused), the index is set aside and reclaimed
/// in chunks of `reclaim_chunk`, by `reclaim` or by later invalidations; `invalidate` itself loops
/// until everything is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_fan_out_is_reclaimed_in_bounded_chunks() {
    let Some(mut s) = Scratch::new(100).await else {
        return;
    };
    let layout = s.store.layout().clone();
    let hot = tag(&Dep::tag("hot"));
    let n: u64 = 1000;
    for i in 0..n {
        let tags = [hot.clone(), tag(&Dep::id("row", i))];
        s.store
            .put(&key(&format!("fan:{i}")), v("v"), &tags, None, None)
            .await
            .unwrap();
    }
    let old = miss_token(&s.store, &key("fan:new")).await;

    // Deferred: one script; nothing removed yet, the index set aside whole.
    assert_eq!(
        s.store
            .invalidate_deferred(std::slice::from_ref(&hot))
            .await
            .unwrap(),
        0
    );
    assert!(!exists(&mut s.conn, &layout.index(&hot)).await);
    let aside = pending(&mut s).await;
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(zcard(&mut s.conn, &aside[0]).await, n);
    assert!(exists(&mut s.conn, &layout.entry(&key("fan:7"))).await);
    // Correct already: dependents are misses (and a read removes the one it found stale)...
    for i in (0..n).step_by(97) {
        assert_eq!(
            hit(&s.store, &key(&format!("fan:{i}"))).await,
            None,
            "fan:{i}"
        );
    }
    assert!(!exists(&mut s.conn, &layout.entry(&key("fan:0"))).await);
    assert!(!s.store.exists(&key("fan:500")).await.unwrap());
    // ... and fills that started before are refused.
    let outcome = s
        .store
        .put(
            &key("fan:new"),
            v("x"),
            std::slice::from_ref(&hot),
            None,
            Some(&old),
        )
        .await
        .unwrap();
    assert!(!outcome.is_stored());
    // Reclaimed in chunks of 100.
    let reclaimed = s.store.reclaim().await.unwrap();
    assert_eq!(reclaimed, n - 12, "12 were removed by the reads");
    assert!(!exists(&mut s.conn, &aside[0]).await);
    assert!(!exists(&mut s.conn, &layout.pending()).await);
    // Left: the namespace's state and metadata (the hot tag's record, whose stamp covers the fill
    // window; the row tags' indexes went with their last entries, and their records too).
    assert_eq!(s.keys().await, 2);
    let record = support::record(&mut s.conn, &layout, &hot).await.unwrap();
    assert_eq!(
        (record.asides, record.aside_until),
        (0, support::Until::Never),
        "{record:?}"
    );

    // Not deferred: invalidate loops over the chunks and reports every dependent.
    put_many(&s.store, "fan", 1000, std::slice::from_ref(&hot), None).await;
    assert_eq!(
        s.store
            .invalidate(std::slice::from_ref(&hot))
            .await
            .unwrap(),
        n
    );
    assert!(!exists(&mut s.conn, &layout.pending()).await);
    for i in (0..n).step_by(97) {
        assert!(!exists(&mut s.conn, &layout.entry(&key(&format!("fan:{i}")))).await);
    }
}

/// A set aside whose client went away is reclaimed by later invalidations, a chunk at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_sets_are_reclaimed_by_later_invalidations() {
    let Some(mut s) = Scratch::new(50).await else {
        return;
    };
    let hot = tag(&Dep::tag("hot"));
    put_many(&s.store, "ab", 120, std::slice::from_ref(&hot), None).await;
    s.store
        .invalidate_deferred(std::slice::from_ref(&hot))
        .await
        .unwrap();
    // Three unrelated invalidations each reclaim a chunk of 50 on the side.
    for i in 0..3 {
        s.store
            .invalidate(&[tag(&Dep::id("other", i))])
            .await
            .unwrap();
    }
    assert!(!exists(&mut s.conn, &s.store.layout().pending()).await);
    for i in (0..120).step_by(7) {
        assert!(
            !exists(
                &mut s.conn,
                &s.store.layout().entry(&key(&format!("ab:{i}")))
            )
            .await
        );
    }
    assert_eq!(s.keys().await, 2, "the state and the metadata");
}

/// `invalidate` counts each removed entry once, however many of the tags it carries; every one
/// of them is a miss afterwards, and nothing is left to reclaim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_carrying_several_invalidated_tags_counts_once() {
    let Some(mut s) = Scratch::new(2).await else {
        return;
    };
    let tags: Vec<Tag> = (0..4).map(|i| tag(&Dep::id("t", i))).collect();
    put_many(&s.store, "d", 10, &tags, None).await;
    // With a chunk of 2, the indexes are set aside and reclaimed over several scripts.
    assert_eq!(s.store.invalidate(&tags).await.unwrap(), 10);
    for i in 0..10 {
        assert_gone(&mut s, &key(&format!("d:{i}"))).await;
    }
    assert!(
        pending(&mut s).await.is_empty(),
        "every set aside was drained"
    );
    assert!(!exists(&mut s.conn, &s.store.layout().pending()).await);
}

/// Two handles (two processes) invalidating the same large tag at once: each call returns only
/// when the dependents it is responsible for are gone, together they remove each once, and
/// nothing is left to reclaim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_invalidating_one_large_tag_at_once() {
    let Some(mut s) = Scratch::new(16).await else {
        return;
    };
    let other = s.reopen(16).await;
    let hot = tag(&Dep::tag("hot"));
    for round in 0..3 {
        put_many(&s.store, "both", 400, std::slice::from_ref(&hot), None).await;
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let run = |store: RedisStore| {
            let (barrier, hot) = (barrier.clone(), hot.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.invalidate(std::slice::from_ref(&hot)).await.unwrap()
            })
        };
        let (a, b) = (run(s.store.clone()), run(other.clone()));
        let total = a.await.unwrap() + b.await.unwrap();
        assert_eq!(total, 400, "round {round}: each dependent counted once");
        for i in (0..400).step_by(13) {
            assert_gone(&mut s, &key(&format!("both:{i}"))).await;
        }
        assert!(pending(&mut s).await.is_empty(), "round {round}");
    }
}

/// An invalidation whose caller went away between its scripts (its future dropped after the
/// first one, which stamped the tag and set its index aside, as the caller's own): the
/// dependents are misses at once, before any housekeeping, a later invalidation leaves the set to
/// its owner for the grace period, and `reclaim()` removes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_interrupted_between_scripts_is_complete_and_reclaimable() {
    let Some(mut s) = Scratch::new(4).await else {
        return;
    };
    let hot = tag(&Dep::tag("hot"));
    put_many(&s.store, "cut", 40, std::slice::from_ref(&hot), None).await;
    // Exactly the first script of `invalidate` (not deferred), run on its own.
    let reply: Vec<redis::Value> = support::script("invalidate")
        .key(s.store.layout().seq())
        .arg(s.store.layout().base())
        .arg(2000)
        .arg("01234567")
        .arg(4)
        .arg(30_000)
        .arg("0")
        .arg(hot.as_str())
        .invoke_async(&mut s.conn)
        .await
        .unwrap();
    assert_eq!(reply.len(), 2, "nothing removed, one set aside: {reply:?}");
    for i in 0..40 {
        assert_eq!(
            hit(&s.store, &key(&format!("cut:{i}"))).await,
            None,
            "cut:{i}"
        );
    }
    // An unrelated invalidation does not take the set from its (departed) owner yet.
    s.store
        .invalidate(&[tag(&Dep::tag("other"))])
        .await
        .unwrap();
    assert_eq!(pending(&mut s).await.len(), 1);
    s.store.reclaim().await.unwrap();
    for i in 0..40 {
        assert_gone(&mut s, &key(&format!("cut:{i}"))).await;
    }
    assert!(pending(&mut s).await.is_empty());
}

/// No script holds the server for long, whatever the fan-out: invalidating a tag with 20,000
/// dependents takes many bounded scripts (at most 256 members each); their durations, which depend
/// on the machine's load, are printed from the server's SLOWLOG but not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_invalidation_runs_as_many_bounded_scripts() {
    use futures::StreamExt as _;

    let Some(server) = support::PrivateRedis::start(&["--slowlog-log-slower-than", "20000"]).await
    else {
        return;
    };
    let store = support::store(&server.url(), "slow").await;
    let mut conn = support::raw(&server.url()).await;
    let hot = tag(&Dep::tag("hot"));
    let n: u64 = 20_000;
    futures::stream::iter(0..n)
        .map(|i| {
            let (store, hot) = (store.clone(), hot.clone());
            async move {
                let tags = [hot, tag(&Dep::id("row", i))];
                store
                    .put(&key(&format!("s:{i}")), v("v"), &tags, None, None)
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<()>()
        .await;
    let _: () = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .unwrap();
    let start = std::time::Instant::now();
    assert_eq!(
        store.invalidate(std::slice::from_ref(&hot)).await.unwrap(),
        n
    );
    let took = start.elapsed();
    let slow: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(100)
        .query_async(&mut conn)
        .await
        .unwrap();
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    let scripts = stats
        .lines()
        .find(|l| l.starts_with("cmdstat_evalsha:"))
        .unwrap_or("")
        .to_owned();
    // Wall-clock times depend on the machine's load: they are printed, never asserted. What is
    // asserted is the structure: the work was split into many bounded scripts.
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "invalidated {n} dependents in {took:?}; {scripts}; {} scripts over 20 ms",
            slow.len()
        );
    }
    let calls: u64 = scripts
        .split(['=', ','])
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    assert!(calls >= n / 256, "{calls} scripts for {n} dependents");
}

/// Entries set aside and not reclaimed yet, read after the fill window has passed: only the
/// record's memory of the set (its `aside_until`) keeps the stamp then, and they stay misses,
/// through housekeeping's pruning too; reclaiming them then removes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_aside_entries_stay_misses_past_the_fill_window() {
    let Some(mut s) = Scratch::new(4).await else {
        return;
    };
    let hot = tag(&Dep::tag("hot"));
    put_many(&s.store, "late", 30, std::slice::from_ref(&hot), None).await;
    s.store
        .invalidate_deferred(std::slice::from_ref(&hot))
        .await
        .unwrap();
    // Real time: what is tested is the fill window passing. Other invalidations meanwhile prune
    // records and walk on the side, but the set's owner window (30 s) keeps it from them.
    tokio::time::sleep(support::FILL_WINDOW + Duration::from_millis(300)).await;
    s.store
        .invalidate(&[tag(&Dep::tag("other"))])
        .await
        .unwrap();
    let record = support::record(&mut s.conn, s.store.layout(), &hot)
        .await
        .unwrap();
    assert_eq!(record.asides, 1, "{record:?}");
    for i in (0..30).step_by(3) {
        assert_eq!(
            hit(&s.store, &key(&format!("late:{i}"))).await,
            None,
            "late:{i}"
        );
    }
    for i in (1..30).step_by(3) {
        assert!(!s.store.exists(&key(&format!("late:{i}"))).await.unwrap());
    }
    s.store.reclaim().await.unwrap();
    for i in 0..30 {
        assert_gone(&mut s, &key(&format!("late:{i}"))).await;
    }
    assert_eq!(
        support::record(&mut s.conn, s.store.layout(), &hot).await,
        None
    );
}
