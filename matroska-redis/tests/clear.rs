//! `clear()` is several scripts (the mark, then bounded steps over the namespace): what happens
//! when the namespace state is lost between them, when invalidations and puts run between them,
//! and when the client stops half-way. The steps are run by hand here, as a client that stopped
//! or was slow would have run them.

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

mod support;

use matroska_core::store::Store;
use matroska_core::{Dep, Tag};
use matroska_testkit::support::{bytes as v, hit, key, tag};

use crate::support::{Scratch, put_many};

/// Runs the first script of a clear only (it starts a new generation); returns its seq.
async fn clear_mark(s: &mut Scratch) -> u64 {
    support::script("clear")
        .key(s.store.layout().seq())
        .arg(s.store.layout().base())
        .arg(2000)
        .arg("01234567")
        .invoke_async(&mut s.conn)
        .await
        .unwrap()
}

/// One step of the walk that follows a clear: `count` buckets scanned; true when it is done.
async fn walk_step(s: &mut Scratch, count: usize) -> bool {
    let done: u64 = support::script("walk")
        .key(s.store.layout().seq())
        .arg(s.store.layout().base())
        .arg(2000)
        .arg("01234567")
        .arg(count)
        .invoke_async(&mut s.conn)
        .await
        .unwrap();
    done == 1
}

/// The namespace state lost after a clear began but before its sweep deleted the old entries
/// (an eviction, a restart of a replica): the cleared entries stay misses (before the fix the
/// clear mark was lost with the state, and they were served again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_lost_mid_clear_keeps_the_cleared_entries_misses() {
    let Some(mut s) = Scratch::new(256).await else {
        return;
    };
    let t = tag(&Dep::tag("t"));
    for i in 0..5 {
        s.store
            .put(
                &key(&format!("k{i}")),
                v("old"),
                std::slice::from_ref(&t),
                None,
                None,
            )
            .await
            .unwrap();
    }
    clear_mark(&mut s).await;
    let _: () = redis::cmd("DEL")
        .arg(s.store.layout().seq())
        .query_async(&mut s.conn)
        .await
        .unwrap();
    for i in 0..5 {
        assert_eq!(
            hit(&s.store, &key(&format!("k{i}"))).await,
            None,
            "k{i} was cleared"
        );
    }
}

/// An invalidation that sets an index aside while a clear is sweeping: its set stays known and
/// is reclaimed (before the fix the sweep deleted the list of sets aside whole, and this one,
/// newer than the clear, was left behind for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_keeps_the_sets_aside_of_invalidations_that_ran_during_it() {
    let Some(mut s) = Scratch::new(4).await else {
        return;
    };
    let hot = tag(&Dep::tag("hot"));
    clear_mark(&mut s).await;
    put_many(&s.store, "hot", 12, std::slice::from_ref(&hot), None).await;
    s.store
        .invalidate_deferred(std::slice::from_ref(&hot))
        .await
        .unwrap();
    while !walk_step(&mut s, 1000).await {}
    s.store.reclaim().await.unwrap();
    let pattern = format!("{}:r:*", s.store.layout().base());
    let (_, left): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg(&pattern)
        .arg("COUNT")
        .arg(100_000)
        .query_async(&mut s.conn)
        .await
        .unwrap();
    assert!(left.is_empty(), "sets aside never reclaimed: {left:?}");
    for i in 0..12 {
        let k = key(&format!("hot:{i}"));
        let raw: u64 = redis::cmd("EXISTS")
            .arg(s.store.layout().entry(&k))
            .query_async(&mut s.conn)
            .await
            .unwrap();
        assert_eq!(raw, 0, "hot:{i} was never reclaimed");
    }
}

/// A put that races a clear's sweep (the sweep has passed the bucket of the new index but not
/// the bucket of the tag's metadata) keeps what later invalidations need: once that index is
/// lost, an invalidation of the tag still makes the entry a miss (before the fix the sweep
/// deleted the new metadata, the loss went unnoticed and the entry was served for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_racing_a_clear_keeps_its_index_metadata() {
    let Some(mut s) = Scratch::new(256).await else {
        return;
    };
    // Enough keys that the sweep takes many steps.
    for i in 0..300 {
        s.store
            .put(
                &key(&format!("old:{i}")),
                v("old"),
                &[tag(&Dep::id("old", i))],
                None,
                None,
            )
            .await
            .unwrap();
    }
    clear_mark(&mut s).await;
    // About half-way through the walk (some 900 keys, 20 buckets a step).
    for _ in 0..25 {
        walk_step(&mut s, 20).await;
    }
    // The racing puts: many entries, each with its own tag, so that for some of them the sweep
    // has passed the index's bucket and not the metadata's.
    let tags: Vec<Tag> = (0..200).map(|i| tag(&Dep::id("new", i))).collect();
    for (i, t) in tags.iter().enumerate() {
        s.store
            .put(
                &key(&format!("racer:{i}")),
                v("new"),
                std::slice::from_ref(t),
                None,
                None,
            )
            .await
            .unwrap();
    }
    while !walk_step(&mut s, 20).await {}
    // Every surviving racer's index is lost (as an eviction would), then its tag invalidated.
    let mut survivors = 0;
    for (i, t) in tags.iter().enumerate() {
        let k = key(&format!("racer:{i}"));
        if hit(&s.store, &k).await.is_none() {
            continue;
        }
        survivors += 1;
        let _: () = redis::cmd("DEL")
            .arg(s.store.layout().index(t))
            .query_async(&mut s.conn)
            .await
            .unwrap();
        s.store.invalidate(std::slice::from_ref(t)).await.unwrap();
        assert_eq!(
            hit(&s.store, &k).await,
            None,
            "{k} served after {t} was invalidated"
        );
    }
    assert!(survivors > 0, "no put raced the sweep");
}
