//! Redis-specific tests: the key layout, index lifetimes, dead-member pruning, large fan-outs
//! reclaimed in chunks, lost indexes (`allkeys-lru`), lost namespaces (restart, `FLUSHALL`,
//! eviction), `SCRIPT FLUSH`, and the behaviour while Redis is down.
//!
//! Tests that only touch their own namespace run on the shared server
//! (`MATROSKA_TEST_REDIS_URL`); the ones that restart, flush or reconfigure the server start a
//! private `redis-server` of their own.

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use matroska_core::store::{FillToken, KeyTtl, Lookup, PutOutcome, Store};
use matroska_core::{Bytes, Cache, Dep, Key, Tag};
use matroska_redis::RedisStore;
use matroska_testkit::support::{eventually, hit, key, tag};
use redis::aio::MultiplexedConnection;

use crate::support::{FILL_WINDOW, Namespaces, PrivateRedis};

const WAIT: Duration = Duration::from_secs(10);

fn v(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

async fn miss_token(store: &RedisStore, k: &Key) -> FillToken {
    match store.get(k).await.unwrap() {
        Lookup::Miss(token) => token,
        Lookup::Hit(bytes) => panic!("{k}: expected a miss, got {bytes:?}"),
    }
}

async fn pttl(conn: &mut MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(conn).await.unwrap()
}

async fn zcard(conn: &mut MultiplexedConnection, key: &str) -> u64 {
    redis::cmd("ZCARD")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap()
}

async fn exists(conn: &mut MultiplexedConnection, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<u64>(conn)
        .await
        .unwrap()
        == 1
}

async fn zscore(conn: &mut MultiplexedConnection, key: &str, member: &str) -> Option<f64> {
    redis::cmd("ZSCORE")
        .arg(key)
        .arg(member)
        .query_async(conn)
        .await
        .unwrap()
}

/// A store on the shared server in a fresh namespace, with the raw connection and the namespace
/// list to clean up. `None`: no server configured.
async fn shared(chunk: usize) -> Option<(RedisStore, MultiplexedConnection, Namespaces, String)> {
    let url = support::shared_url()?;
    let namespaces = Namespaces::new(&url);
    let store = RedisStore::builder(url.as_str())
        .prefix(namespaces.create())
        .fill_window(FILL_WINDOW)
        .reclaim_chunk(chunk)
        .build()
        .await
        .unwrap();
    let conn = support::raw(&url).await;
    Some((store, conn, namespaces, url))
}

/// The scripts build the same key names as `KeyLayout`: entries are strings, indexes sorted sets
/// holding the key and the sentinel, stamps strings, the namespace state a string.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_and_key_layout_agree() {
    let Some((store, mut conn, namespaces, url)) = shared(256).await else {
        return;
    };
    let layout = store.layout().clone();
    let (k, t) = (key("layout:k"), tag(&Dep::id("article", 5)));
    store
        .put(
            &k,
            v("v"),
            std::slice::from_ref(&t),
            Some(Duration::from_secs(60)),
            None,
        )
        .await
        .unwrap();
    let kind = |key: String| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("TYPE")
                .arg(key)
                .query_async::<String>(&mut conn)
                .await
                .unwrap()
        }
    };
    assert_eq!(kind(layout.entry(&k)).await, "string");
    assert_eq!(kind(layout.index(&t)).await, "zset");
    assert_eq!(kind(layout.stamp(&t)).await, "string");
    assert_eq!(kind(layout.seq()).await, "string");
    assert!(
        zscore(&mut conn, &layout.index(&t), k.as_str())
            .await
            .is_some()
    );
    assert_eq!(
        zscore(&mut conn, &layout.index(&t), "").await,
        Some(f64::INFINITY)
    );
    // Nothing else was created, and everything is under the namespace's hash tag.
    assert_eq!(support::count_keys(&mut conn, layout.prefix()).await, 4);
    store.invalidate(std::slice::from_ref(&t)).await.unwrap();
    assert!(!exists(&mut conn, &layout.entry(&k)).await);
    assert!(!exists(&mut conn, &layout.index(&t)).await);
    namespaces.delete_all().await;
}

/// An index lives as long as its longest-lived entry: its TTL grows with longer entries, turns
/// persistent with a persistent one, and never shrinks; the tag's metadata key lives as long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_ttl_only_grows() {
    let Some((store, mut conn, namespaces, url)) = shared(256).await else {
        return;
    };
    let t = tag(&Dep::tag("grows"));
    let (index, stamp) = (store.layout().index(&t), store.layout().stamp(&t));
    let put = |k: &'static str, ttl: Option<Duration>| {
        let (store, t) = (store.clone(), t.clone());
        async move {
            store.put(&key(k), v("v"), &[t], ttl, None).await.unwrap();
        }
    };
    put("short", Some(Duration::from_secs(10))).await;
    let first = pttl(&mut conn, &index).await;
    assert!((10_000..=12_500).contains(&first), "{first}");
    put("long", Some(Duration::from_secs(100))).await;
    let second = pttl(&mut conn, &index).await;
    assert!((100_000..=125_000).contains(&second), "{second}");
    put("short2", Some(Duration::from_secs(10))).await;
    assert!(
        pttl(&mut conn, &index).await > 99_000,
        "a shorter entry must not shorten it"
    );
    assert!(pttl(&mut conn, &stamp).await >= pttl(&mut conn, &index).await - 5);
    put("forever", None).await;
    assert_eq!(pttl(&mut conn, &index).await, -1);
    assert_eq!(pttl(&mut conn, &stamp).await, -1);
    put("short3", Some(Duration::from_secs(10))).await;
    assert_eq!(
        pttl(&mut conn, &index).await,
        -1,
        "persistent while a persistent entry is in it"
    );
    // Invalidation consumes the index; the stamp then only has to cover the fill window.
    assert_eq!(store.invalidate(std::slice::from_ref(&t)).await.unwrap(), 5);
    assert!(!exists(&mut conn, &index).await);
    let left = pttl(&mut conn, &stamp).await;
    assert!(left > 0 && left <= 2_000, "{left}");
    namespaces.delete_all().await;
}

/// Index members do not outlive their entries: a deleted entry, a re-put with other tags, an
/// expired entry (pruned by later puts), and a persistent entry invalidated through another tag
/// all leave the index; an index left empty goes, with its metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_members_are_pruned() {
    let Some((store, mut conn, namespaces, url)) = shared(256).await else {
        return;
    };
    let layout = store.layout().clone();
    let (a, b) = (tag(&Dep::tag("a")), tag(&Dep::tag("b")));

    // Deleted.
    store
        .put(&key("k1"), v("1"), std::slice::from_ref(&a), None, None)
        .await
        .unwrap();
    store
        .put(&key("k2"), v("2"), std::slice::from_ref(&a), None, None)
        .await
        .unwrap();
    assert!(store.delete(&key("k1")).await.unwrap());
    assert_eq!(zscore(&mut conn, &layout.index(&a), "k1").await, None);
    // Re-put with another tag.
    store
        .put(&key("k2"), v("2"), std::slice::from_ref(&b), None, None)
        .await
        .unwrap();
    assert!(
        !exists(&mut conn, &layout.index(&a)).await,
        "an index left empty goes"
    );
    assert!(
        !exists(&mut conn, &layout.stamp(&a)).await,
        "and so does its metadata"
    );
    // Invalidated through another tag: a persistent entry leaves its other indexes at once.
    store
        .put(&key("k3"), v("3"), &[a.clone(), b.clone()], None, None)
        .await
        .unwrap();
    assert_eq!(store.invalidate(std::slice::from_ref(&a)).await.unwrap(), 1);
    assert_eq!(zscore(&mut conn, &layout.index(&b), "k3").await, None);
    assert_eq!(
        zscore(&mut conn, &layout.index(&b), "k2").await,
        Some(f64::INFINITY)
    );

    // Expired: pruned by later puts to the index (a sample of them, a few members each).
    let c = tag(&Dep::tag("c"));
    for i in 0..50 {
        let k = key(&format!("short{i}"));
        store
            .put(
                &k,
                v("s"),
                std::slice::from_ref(&c),
                Some(Duration::from_millis(100)),
                None,
            )
            .await
            .unwrap();
    }
    assert_eq!(zcard(&mut conn, &layout.index(&c)).await, 51);
    // Real time: what is tested is expiry.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..200 {
        let k = key(&format!("long{i}"));
        store
            .put(
                &k,
                v("l"),
                std::slice::from_ref(&c),
                Some(Duration::from_secs(60)),
                None,
            )
            .await
            .unwrap();
    }
    let members = zcard(&mut conn, &layout.index(&c)).await;
    assert!(
        members <= 201 + 5,
        "expired members were not pruned: {members}"
    );
    namespaces.delete_all().await;
}

/// A tag with more dependents than one script removes: the invalidation is complete at once
/// (reads refuse the dependents, older fills are refused), the index is set aside and reclaimed
/// in chunks of `reclaim_chunk`, by `reclaim` or by later invalidations; `invalidate` itself loops
/// until everything is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_fan_out_is_reclaimed_in_bounded_chunks() {
    let Some((store, mut conn, namespaces, url)) = shared(100).await else {
        return;
    };
    let layout = store.layout().clone();
    let hot = tag(&Dep::tag("hot"));
    let n: u64 = 1000;
    for i in 0..n {
        let tags = [hot.clone(), tag(&Dep::id("row", i))];
        store
            .put(&key(&format!("fan:{i}")), v("v"), &tags, None, None)
            .await
            .unwrap();
    }
    let old = miss_token(&store, &key("fan:new")).await;

    // Deferred: one script; nothing removed yet, the index set aside whole.
    assert_eq!(
        store
            .invalidate_deferred(std::slice::from_ref(&hot))
            .await
            .unwrap(),
        0
    );
    assert!(!exists(&mut conn, &layout.index(&hot)).await);
    let aside: Vec<String> = redis::cmd("ZRANGE")
        .arg(layout.pending())
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(zcard(&mut conn, &aside[0]).await, n + 1);
    assert!(exists(&mut conn, &layout.entry(&key("fan:7"))).await);
    // Correct already: dependents are misses (and a read removes the one it found stale)...
    for i in (0..n).step_by(97) {
        assert_eq!(
            hit(&store, &key(&format!("fan:{i}"))).await,
            None,
            "fan:{i}"
        );
    }
    assert!(!exists(&mut conn, &layout.entry(&key("fan:0"))).await);
    assert!(!store.exists(&key("fan:500")).await.unwrap());
    // ... and fills that started before are refused.
    let outcome = store
        .put(
            &key("fan:new"),
            v("x"),
            std::slice::from_ref(&hot),
            None,
            Some(&old),
        )
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stale);
    // Reclaimed in chunks of 100.
    let reclaimed = store.reclaim().await.unwrap();
    assert_eq!(reclaimed, n - 12, "12 were removed by the reads");
    assert!(!exists(&mut conn, &aside[0]).await);
    assert!(!exists(&mut conn, &layout.pending()).await);
    // Left: the namespace state and the hot tag's stamp (the row tags' indexes went with their
    // last entries, and their metadata with them).
    assert_eq!(support::count_keys(&mut conn, layout.prefix()).await, 2);

    // Not deferred: invalidate loops over the chunks and reports every dependent.
    for i in 0..n {
        let tags = [hot.clone()];
        store
            .put(&key(&format!("fan:{i}")), v("v"), &tags, None, None)
            .await
            .unwrap();
    }
    assert_eq!(
        store.invalidate(std::slice::from_ref(&hot)).await.unwrap(),
        n
    );
    assert!(!exists(&mut conn, &layout.pending()).await);
    for i in (0..n).step_by(97) {
        assert!(!exists(&mut conn, &layout.entry(&key(&format!("fan:{i}")))).await);
    }
    namespaces.delete_all().await;
}

/// A set aside whose client went away is reclaimed by later invalidations, a chunk at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_sets_are_reclaimed_by_later_invalidations() {
    let Some((store, mut conn, namespaces, url)) = shared(50).await else {
        return;
    };
    let hot = tag(&Dep::tag("hot"));
    for i in 0..120 {
        store
            .put(
                &key(&format!("ab:{i}")),
                v("v"),
                std::slice::from_ref(&hot),
                None,
                None,
            )
            .await
            .unwrap();
    }
    store
        .invalidate_deferred(std::slice::from_ref(&hot))
        .await
        .unwrap();
    // Three unrelated invalidations each reclaim a chunk of 50 on the side.
    for i in 0..3 {
        store
            .invalidate(&[tag(&Dep::id("other", i))])
            .await
            .unwrap();
    }
    assert!(!exists(&mut conn, &store.layout().pending()).await);
    assert_eq!(
        support::count_keys(&mut conn, store.layout().prefix()).await,
        1 + 3 + 1,
        "seq, 3 stamps, hot's stamp"
    );
    namespaces.delete_all().await;
}

/// `invalidate` counts each removed entry once, however many of the tags it carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_carrying_several_invalidated_tags_counts_once() {
    let Some((store, _conn, namespaces, url)) = shared(2).await else {
        return;
    };
    let tags: Vec<Tag> = (0..4).map(|i| tag(&Dep::id("t", i))).collect();
    for i in 0..10 {
        store
            .put(&key(&format!("d:{i}")), v("v"), &tags, None, None)
            .await
            .unwrap();
    }
    // With a chunk of 2, the indexes are set aside and reclaimed over several scripts.
    assert_eq!(store.invalidate(&tags).await.unwrap(), 10);
    namespaces.delete_all().await;
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
            let n: u64 = redis::cmd("DEL")
                .arg(index)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(n, 1);
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
    // Real time: the stamp must outlive the fill window for the entries nobody read yet.
    tokio::time::sleep(FILL_WINDOW + Duration::from_millis(500)).await;
    for i in 2..5 {
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

/// A restart without persistence: while Redis is down, operations fail quickly with transient
/// errors (and a fail-open cache treats them as misses and skipped puts); afterwards the store
/// reconnects by itself, nothing stale is served, fills that started before are refused, and the
/// sequence number went on upwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_without_persistence() {
    let Some(mut server) = PrivateRedis::start(&[]).await else {
        return;
    };
    let store = RedisStore::builder(server.url())
        .prefix("restart")
        .fill_window(Duration::from_secs(30))
        .connect_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let cache = Cache::builder(store.clone()).fail_open(true).build();
    let t = tag(&Dep::id("article", 1));
    store
        .put(&key("k"), v("before"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    let before = miss_token(&store, &key("fill")).await;

    server.kill();
    let start = Instant::now();
    let err = store.get(&key("k")).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(std::error::Error::source(&err).is_some());
    let err = store
        .invalidate(std::slice::from_ref(&t))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(
        cache.get::<String>("k").await.unwrap(),
        None,
        "fail open: a miss"
    );
    cache
        .put("k", &"skipped")
        .dep(Dep::id("article", 1))
        .await
        .unwrap();
    assert!(
        cache.invalidate([Dep::id("article", 1)]).await.is_err(),
        "invalidations fail loudly"
    );
    // Bounded by the connection timeouts, not hanging on TCP's minutes-long defaults (a wide
    // margin: the machine may be loaded).
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );

    server.restart().await;
    eventually(WAIT, "the store reconnects", || async {
        store.get(&key("probe")).await.is_ok()
    })
    .await;
    assert_eq!(hit(&store, &key("k")).await, None);
    let outcome = store
        .put(
            &key("fill"),
            v("raced"),
            std::slice::from_ref(&t),
            None,
            Some(&before),
        )
        .await
        .unwrap();
    assert_eq!(
        outcome,
        PutOutcome::Stale,
        "a token from before the restart"
    );
    let after = miss_token(&store, &key("fill")).await;
    assert!(
        after.seq() > before.seq(),
        "{} <= {}",
        after.seq(),
        before.seq()
    );
    assert_ne!(after.snapshot(), before.snapshot(), "a new epoch");
    let outcome = store
        .put(
            &key("fill"),
            v("fresh"),
            std::slice::from_ref(&t),
            None,
            Some(&after),
        )
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stored);
    assert_eq!(cache.get::<String>("k").await.unwrap(), None);
    // The scripts were loaded again on the fly (NOSCRIPT after the restart).
    store.invalidate(std::slice::from_ref(&t)).await.unwrap();
    assert_eq!(hit(&store, &key("fill")).await, None);
}

/// After FLUSHALL the namespace starts over with a new epoch: a token from before is refused,
/// even one whose sequence number is above every new stamp (as after a server clock gone
/// backwards), which is what the epoch is for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_starts_a_new_epoch() {
    let Some(server) = PrivateRedis::start(&[]).await else {
        return;
    };
    let store = support::store(&server.url(), "flush").await;
    let mut conn = support::raw(&server.url()).await;
    let t = tag(&Dep::id("article", 1));
    store
        .put(&key("k"), v("v"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    let old = miss_token(&store, &key("fill")).await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    assert_eq!(hit(&store, &key("k")).await, None);
    store.invalidate(std::slice::from_ref(&t)).await.unwrap();
    // A token from before the flush whose seq is above the new stamp.
    let ahead =
        FillToken::new(old.seq() * 2, old.issued_at_ms()).with_snapshot(old.snapshot().unwrap());
    let outcome = store
        .put(
            &key("fill"),
            v("stale"),
            std::slice::from_ref(&t),
            None,
            Some(&ahead),
        )
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stale, "refused by the epoch");
    // The same token in the new epoch would pass: only the epoch tells them apart.
    let now = miss_token(&store, &key("fill")).await;
    let same_epoch =
        FillToken::new(old.seq() * 2, now.issued_at_ms()).with_snapshot(now.snapshot().unwrap());
    let outcome = store
        .put(
            &key("fill"),
            v("v"),
            std::slice::from_ref(&t),
            None,
            Some(&same_epoch),
        )
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stored);
}

/// The namespace state lost on its own (evicted, deleted): entries stay, the sequence number
/// does not go backwards, older tokens are refused, and the entries are checked before they are
/// served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_namespace_state_is_recovered_safely() {
    let Some((store, mut conn, namespaces, url)) = shared(256).await else {
        return;
    };
    let t = tag(&Dep::id("article", 1));
    store
        .put(&key("k"), v("v"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    store
        .put(&key("x"), v("x"), &[tag(&Dep::tag("x"))], None, None)
        .await
        .unwrap();
    let old = miss_token(&store, &key("fill")).await;
    let _: () = redis::cmd("DEL")
        .arg(store.layout().seq())
        .query_async(&mut conn)
        .await
        .unwrap();
    let outcome = store
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
        hit(&store, &key("k")).await,
        Some(v("v")),
        "fresh entries stay readable"
    );
    let new = miss_token(&store, &key("fill")).await;
    assert!(new.seq() > old.seq());
    store.invalidate(std::slice::from_ref(&t)).await.unwrap();
    assert_eq!(hit(&store, &key("k")).await, None);
    assert_eq!(hit(&store, &key("x")).await, Some(v("x")));
    namespaces.delete_all().await;
}

/// Tokens are judged on the server's clock: one issued (by the server's clock) longer ago than
/// the fill window is refused, one just issued is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fill_window_is_measured_on_the_servers_clock() {
    let Some((store, _conn, namespaces, url)) = shared(256).await else {
        return;
    };
    let k = key("window");
    let token = miss_token(&store, &k).await;
    let epoch = token.snapshot().unwrap().to_owned();
    let window = u64::try_from(FILL_WINDOW.as_millis()).unwrap();
    let old = FillToken::new(token.seq(), token.issued_at_ms() - window - 1)
        .with_snapshot(epoch.as_str());
    assert_eq!(
        store
            .put(&k, v("late"), &[], None, Some(&old))
            .await
            .unwrap(),
        PutOutcome::Stale
    );
    let foreign = FillToken::new(token.seq(), token.issued_at_ms());
    assert_eq!(
        store
            .put(&k, v("no epoch"), &[], None, Some(&foreign))
            .await
            .unwrap(),
        PutOutcome::Stale
    );
    assert_eq!(
        store
            .put(&k, v("ok"), &[], None, Some(&token))
            .await
            .unwrap(),
        PutOutcome::Stored
    );
    namespaces.delete_all().await;
}

/// `SCRIPT FLUSH` between calls is survived: the scripts are loaded again on `NOSCRIPT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_flush_between_calls_is_survived() {
    let Some(server) = PrivateRedis::start(&[]).await else {
        return;
    };
    let store = support::store(&server.url(), "noscript").await;
    let mut conn = support::raw(&server.url()).await;
    let t = tag(&Dep::tag("t"));
    let flush = |conn: &mut MultiplexedConnection| {
        let mut conn = conn.clone();
        async move {
            let _: () = redis::cmd("SCRIPT")
                .arg("FLUSH")
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    };
    flush(&mut conn).await;
    store
        .put(&key("k"), v("v"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    flush(&mut conn).await;
    assert!(store.exists(&key("k")).await.unwrap());
    flush(&mut conn).await;
    assert_eq!(store.ttl(&key("k")).await.unwrap(), KeyTtl::Persistent);
    flush(&mut conn).await;
    assert_eq!(store.invalidate(std::slice::from_ref(&t)).await.unwrap(), 1);
    flush(&mut conn).await;
    let token = miss_token(&store, &key("k")).await;
    flush(&mut conn).await;
    assert!(
        store
            .put(&key("k"), v("v"), &[], None, Some(&token))
            .await
            .unwrap()
            .is_stored()
    );
    flush(&mut conn).await;
    assert!(store.delete(&key("k")).await.unwrap());
    flush(&mut conn).await;
    store.clear().await.unwrap();
}

/// With nothing listening, operations fail at once with transient errors, and a fail-open
/// cache works around them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_fails_quickly_and_transiently() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = RedisStore::builder(format!("redis://127.0.0.1:{port}"))
        .prefix("down")
        .build_lazy()
        .unwrap();
    let start = Instant::now();
    let err = store.get(&key("k")).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    // Refused at once, or bounded by the connect timeout (a wide margin: the machine may be
    // loaded).
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let cache = Cache::builder(store).fail_open(true).build();
    assert_eq!(cache.get::<u32>("k").await.unwrap(), None);
    cache.put("k", &1_u32).await.unwrap();
    let loaded = cache
        .get_or_insert_with("k", || async {
            Ok::<_, std::io::Error>(matroska_core::Loaded::new(7_u32))
        })
        .await
        .unwrap();
    assert_eq!(loaded, 7);
    let err = RedisStore::builder(format!("redis://127.0.0.1:{port}"))
        .build()
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

/// A server busy running a long script answers BUSY: a transient error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_server_is_a_transient_error() {
    let Some(server) = PrivateRedis::start(&["--busy-reply-threshold", "100"]).await else {
        return;
    };
    let store = support::store(&server.url(), "busy").await;
    let mut blocker = support::raw(&server.url()).await;
    let busy = tokio::spawn(async move {
        let _ = redis::cmd("EVAL")
            .arg("local i = 0 while true do i = i + 1 end")
            .arg(0)
            .query_async::<redis::Value>(&mut blocker)
            .await;
    });
    let mut conn = support::raw(&server.url()).await;
    eventually(WAIT, "the server reports BUSY", || async {
        matches!(store.get(&key("k")).await, Err(e) if e.is_transient())
    })
    .await;
    let _: redis::RedisResult<()> = redis::cmd("SCRIPT")
        .arg("KILL")
        .query_async(&mut conn)
        .await;
    busy.await.unwrap();
    assert_eq!(hit(&store, &key("k")).await, None);
}

/// A clear drains large indexes in chunks and leaves only the namespace state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_drains_large_indexes_in_chunks() {
    let Some((store, mut conn, namespaces, url)) = shared(50).await else {
        return;
    };
    let t = tag(&Dep::tag("t"));
    for i in 0..300 {
        let tags = [t.clone(), tag(&Dep::id("row", i % 7))];
        store
            .put(&key(&format!("c:{i}")), v("v"), &tags, None, None)
            .await
            .unwrap();
    }
    store.clear().await.unwrap();
    assert_eq!(
        support::count_keys(&mut conn, store.layout().prefix()).await,
        1
    );
    assert_eq!(hit(&store, &key("c:1")).await, None);
    store
        .put(&key("c:1"), v("w"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    assert_eq!(hit(&store, &key("c:1")).await, Some(v("w")));
    namespaces.delete_all().await;
}

/// No script holds the server for long, whatever the fan-out: invalidating a tag with 20,000
/// dependents takes many bounded scripts (at most 256 members each); their durations, which depend
/// on the machine's load, are printed from the server's SLOWLOG but not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_invalidation_runs_as_many_bounded_scripts() {
    use futures::StreamExt as _;

    let Some(server) = PrivateRedis::start(&["--slowlog-log-slower-than", "20000"]).await else {
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
    let start = Instant::now();
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
    eprintln!(
        "invalidated {n} dependents in {took:?}; {scripts}; {} scripts over 20 ms",
        slow.len()
    );
    let calls: u64 = scripts
        .split(['=', ','])
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    assert!(calls >= n / 256, "{calls} scripts for {n} dependents");
}

/// `remove_namespace` deletes every key of the namespace (entries, indexes, stamps, counters)
/// and nothing of another; a fill token from before is refused, and the store works on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_namespace_deletes_every_key_and_only_those() {
    let Some((store, mut conn, namespaces, url)) = shared(256).await else {
        return;
    };
    let other = support::store(&url, &namespaces.create()).await;
    let t = tag(&Dep::id("article", 1));
    for (s, k) in [(&store, "a"), (&store, "b"), (&other, "a")] {
        s.put(&key(k), v(k), std::slice::from_ref(&t), None, None)
            .await
            .unwrap();
    }
    store.invalidate(&[tag(&Dep::tag("x"))]).await.unwrap();
    let old = miss_token(&store, &key("fill")).await;
    let prefix = store.layout().prefix().to_owned();
    let before = support::count_keys(&mut conn, &prefix).await;
    assert!(before >= 3, "{before} keys");

    let deleted = store.remove_namespace().await.unwrap();
    assert_eq!(usize::try_from(deleted).unwrap(), before);
    assert_eq!(support::count_keys(&mut conn, &prefix).await, 0);
    assert_eq!(
        hit(&other, &key("a")).await,
        Some(v("a")),
        "another namespace is untouched"
    );

    let outcome = store
        .put(&key("fill"), v("stale"), &[t], None, Some(&old))
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stale, "a token from before is refused");
    store
        .put(&key("a"), v("again"), &[], None, None)
        .await
        .unwrap();
    assert_eq!(hit(&store, &key("a")).await, Some(v("again")));
    namespaces.delete_all().await;
}
