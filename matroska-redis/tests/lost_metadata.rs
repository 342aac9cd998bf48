//! Metadata lost while entries stay, as evictions, a restart or a hand-deleted key would lose it:
//! a tag's reverse index, a set aside, the namespace's metadata (every tag's record and stamp), the
//! namespace's state. Losing metadata only ever causes misses: never a stale hit, never a stale
//! fill, also after the fill window and after housekeeping.

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use matroska_core::store::{FillToken, Lookup, PutOutcome, Store};
use matroska_core::{Dep, Key};
use matroska_redis::RedisStore;
use matroska_testkit::support::{bytes as v, hit, key, tag};
use redis::aio::MultiplexedConnection;

use crate::support::{FILL_WINDOW, PrivateRedis, Scratch, put_many};

async fn miss_token(store: &RedisStore, k: &Key) -> FillToken {
    match store.get(k).await.unwrap() {
        Lookup::Miss(token) => token,
        Lookup::Hit(bytes) => panic!("{k}: expected a miss, got {bytes:?}"),
    }
}

async fn zscore(conn: &mut MultiplexedConnection, key: &str, member: &str) -> Option<f64> {
    redis::cmd("ZSCORE")
        .arg(key)
        .arg(member)
        .query_async(conn)
        .await
        .unwrap()
}

async fn del(conn: &mut MultiplexedConnection, key: &str) -> u64 {
    redis::cmd("DEL").arg(key).query_async(conn).await.unwrap()
}

/// What `allkeys-lru` does to an index set (simulated by deleting it): the entries stay, but
/// after an invalidation of the tag none is ever served: not at once, not after the fill window,
/// not when a new entry recreated the index in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_index_never_yields_a_stale_hit() {
    let Some(server) =
        PrivateRedis::start(&["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"]).await
    else {
        return;
    };
    let store = support::store(&server.url(), "lru").await;
    let mut conn = support::raw(&server.url()).await;
    let layout = store.layout().clone();
    let t = tag(&Dep::id("article", 1));
    let evict = |conn: &mut MultiplexedConnection| {
        let index = layout.index(&t);
        let mut conn = conn.clone();
        async move {
            assert_eq!(del(&mut conn, &index).await, 1);
        }
    };

    // 1. Lost, then invalidated: misses, also long after the fill window.
    for i in 0..5 {
        store
            .put(
                &key(&format!("a{i}")),
                v("old"),
                std::slice::from_ref(&t),
                None,
                None,
            )
            .await
            .unwrap();
    }
    evict(&mut conn).await;
    assert_eq!(
        hit(&store, &key("a0")).await,
        Some(v("old")),
        "not invalidated yet: still fresh"
    );
    store.invalidate(std::slice::from_ref(&t)).await.unwrap();
    assert_eq!(hit(&store, &key("a1")).await, None);
    // Real time: the stamp must outlive the fill window for the entries nobody read yet, also
    // through housekeeping.
    tokio::time::sleep(FILL_WINDOW + Duration::from_millis(500)).await;
    assert_eq!(hit(&store, &key("a2")).await, None);
    store.reclaim().await.unwrap();
    for i in 3..5 {
        assert_eq!(hit(&store, &key(&format!("a{i}"))).await, None, "a{i}");
    }

    // 2. Lost, a new entry recreates the index, then invalidated: the old entry is not served.
    store
        .put(&key("b0"), v("old"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    evict(&mut conn).await;
    store
        .put(&key("b1"), v("new"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    store.invalidate(std::slice::from_ref(&t)).await.unwrap();
    assert_eq!(hit(&store, &key("b1")).await, None);
    assert_eq!(hit(&store, &key("b0")).await, None);

    // 3. Lost, read (checked and put back in a new index), then invalidated: removed with it.
    store
        .put(&key("c0"), v("old"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    store
        .put(&key("c1"), v("old"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    evict(&mut conn).await;
    store
        .put(&key("c2"), v("new"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    assert_eq!(hit(&store, &key("c0")).await, Some(v("old")));
    assert!(
        zscore(&mut conn, &layout.index(&t), "c0").await.is_some(),
        "re-indexed"
    );
    assert_eq!(
        store.invalidate(std::slice::from_ref(&t)).await.unwrap(),
        2,
        "c0 and c2"
    );
    assert_eq!(hit(&store, &key("c0")).await, None);
    assert_eq!(hit(&store, &key("c1")).await, None);
}

/// The namespace's metadata lost (every tag's record and stamp at once, as an eviction of the
/// hash would): the namespace starts a new generation, so entries set aside or filled before are
/// misses and a fill that started before an invalidation is refused, also after the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_metadata_starts_a_new_generation() {
    let Some(mut s) = Scratch::new(4).await else {
        return;
    };
    let (hot, t) = (tag(&Dep::tag("hot")), tag(&Dep::id("article", 1)));
    put_many(&s.store, "hot", 10, std::slice::from_ref(&hot), None).await;
    s.store
        .put(
            &key("fresh"),
            v("fresh"),
            std::slice::from_ref(&t),
            None,
            None,
        )
        .await
        .unwrap();
    let before = miss_token(&s.store, &key("fill")).await;
    s.store
        .invalidate_deferred(std::slice::from_ref(&hot))
        .await
        .unwrap();
    s.store.invalidate(std::slice::from_ref(&t)).await.unwrap();
    let meta = s.store.layout().meta();
    assert_eq!(del(&mut s.conn, &meta).await, 1);
    let outcome = s
        .store
        .put(
            &key("fill"),
            v("stale"),
            std::slice::from_ref(&t),
            None,
            Some(&before),
        )
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stale);
    for i in 0..10 {
        assert_eq!(
            hit(&s.store, &key(&format!("hot:{i}"))).await,
            None,
            "hot:{i}"
        );
    }
    let after = miss_token(&s.store, &key("fill")).await;
    assert_ne!(after.snapshot(), before.snapshot(), "a new generation");
    s.store.reclaim().await.unwrap();
    assert_eq!(hit(&s.store, &key("hot:3")).await, None);
    assert_eq!(s.keys().await, 2, "the old generation's keys are gone");
}

/// The namespace state lost on its own (evicted, deleted): the namespace starts a new
/// generation, as a clear would: entries filled before are misses, older tokens are refused, the
/// sequence number does not go backwards, and the store works on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_namespace_state_starts_a_new_generation() {
    let Some(mut s) = Scratch::new(256).await else {
        return;
    };
    let t = tag(&Dep::id("article", 1));
    s.store
        .put(&key("k"), v("v"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    let old = miss_token(&s.store, &key("fill")).await;
    let state = s.store.layout().seq();
    assert_eq!(del(&mut s.conn, &state).await, 1);
    let outcome = s
        .store
        .put(
            &key("fill"),
            v("raced"),
            std::slice::from_ref(&t),
            None,
            Some(&old),
        )
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stale);
    assert_eq!(
        hit(&s.store, &key("k")).await,
        None,
        "filled in the lost generation"
    );
    let new = miss_token(&s.store, &key("fill")).await;
    assert!(new.seq() > old.seq());
    assert_ne!(new.snapshot(), old.snapshot());
    s.store
        .put(&key("k"), v("again"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    assert_eq!(hit(&s.store, &key("k")).await, Some(v("again")));
    s.store.invalidate(std::slice::from_ref(&t)).await.unwrap();
    assert_eq!(hit(&s.store, &key("k")).await, None);
}

/// A set aside lost before it was reclaimed (evicted, deleted): its entries stay misses, through
/// housekeeping and past the fill window; housekeeping notices the loss and its walk removes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_set_aside_keeps_its_entries_misses() {
    let Some(mut s) = Scratch::new(4).await else {
        return;
    };
    let hot = tag(&Dep::tag("hot"));
    put_many(&s.store, "hot", 20, std::slice::from_ref(&hot), None).await;
    s.store
        .invalidate_deferred(std::slice::from_ref(&hot))
        .await
        .unwrap();
    let sets: Vec<String> = redis::cmd("ZRANGE")
        .arg(s.store.layout().pending())
        .arg(0)
        .arg(-1)
        .query_async(&mut s.conn)
        .await
        .unwrap();
    assert_eq!(sets.len(), 1);
    assert_eq!(del(&mut s.conn, &sets[0]).await, 1);
    s.store.reclaim().await.unwrap();
    // Real time: the stamp's own window passes; only the record's memory of the lost set (until
    // housekeeping's walk has removed its entries) protects them.
    tokio::time::sleep(FILL_WINDOW + Duration::from_millis(300)).await;
    for i in 0..20 {
        assert_eq!(
            hit(&s.store, &key(&format!("hot:{i}"))).await,
            None,
            "hot:{i}"
        );
    }
    s.store.reclaim().await.unwrap();
    for i in 0..20 {
        let k = key(&format!("hot:{i}"));
        let raw: u64 = redis::cmd("EXISTS")
            .arg(s.store.layout().entry(&k))
            .query_async(&mut s.conn)
            .await
            .unwrap();
        assert_eq!(raw, 0, "{k} is left behind");
    }
    assert_eq!(
        support::record(&mut s.conn, s.store.layout(), &hot).await,
        None
    );
}

/// The metadata hash lost while the state stays: a fill token issued after the last
/// invalidation (by the plain read, which cannot see the hash) is still good in the new
/// generation, since no stamp it could meet was lost; one issued before it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_issued_after_the_last_invalidation_survives_lost_metadata() {
    let Some(mut s) = Scratch::new(256).await else {
        return;
    };
    let t = tag(&Dep::id("article", 1));
    let before = miss_token(&s.store, &key("before")).await;
    s.store.invalidate(std::slice::from_ref(&t)).await.unwrap();
    let after = miss_token(&s.store, &key("after")).await;
    let meta = s.store.layout().meta();
    assert_eq!(del(&mut s.conn, &meta).await, 1);
    // A miss now still comes from the plain read (the state is intact): the same generation.
    let unnoticed = miss_token(&s.store, &key("unnoticed")).await;
    assert_eq!(unnoticed.snapshot(), after.snapshot());
    let put = |k: &'static str, token: FillToken| {
        let (store, t) = (s.store.clone(), t.clone());
        async move {
            store
                .put(&key(k), v(k), std::slice::from_ref(&t), None, Some(&token))
                .await
                .unwrap()
        }
    };
    assert_eq!(
        put("before", before).await,
        PutOutcome::Stale,
        "issued before the invalidation"
    );
    assert_eq!(put("after", after).await, PutOutcome::Stored);
    assert_eq!(put("unnoticed", unnoticed).await, PutOutcome::Stored);
    assert_eq!(hit(&s.store, &key("after")).await, Some(v("after")));
    // A clear, by contrast, refuses every older token.
    let pre_clear = miss_token(&s.store, &key("pre-clear")).await;
    s.store.clear().await.unwrap();
    assert_eq!(put("pre-clear", pre_clear).await, PutOutcome::Stale);
}
