//! Eviction under real memory pressure: private `redis-server`s with a small `maxmemory` and each
//! evicting policy. Whatever Redis evicts (entries, indexes, the namespace's metadata), no read
//! is ever stale and no fill from before an invalidation is stored.

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::time::Duration;

use matroska_core::store::{Lookup, PutOutcome, Store};
use matroska_core::{Bytes, Dep};
use matroska_redis::RedisStore;
use matroska_testkit::support::{hit, key, tag};
use redis::aio::MultiplexedConnection;

use crate::support::PrivateRedis;

fn v(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// `INFO stats` field `evicted_keys`.
async fn evicted(conn: &mut MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("evicted_keys:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

/// Writes 8 kB filler keys (with a TTL of an hour: evictable under every policy) until Redis
/// has evicted at least `keys` keys. Writes refused for memory (nothing evictable left) are
/// counted as pressure too.
async fn pressure(conn: &mut MultiplexedConnection, keys: u64) {
    let filler = vec![b'f'; 8 * 1024];
    let start = evicted(conn).await;
    for i in 0..100_000_u64 {
        let written: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("filler:{i}"))
            .arg(&filler)
            .arg("PX")
            .arg(3_600_000)
            .query_async(conn)
            .await;
        if let Err(e) = written {
            assert_eq!(e.code(), Some("OOM"), "{e}");
        }
        if i % 16 == 0 && evicted(conn).await >= start + keys {
            return;
        }
    }
    panic!("Redis evicted fewer than {keys} keys");
}

/// A server whose memory fills up quickly, evicting with `policy`.
async fn tight_server(policy: &str) -> Option<PrivateRedis> {
    PrivateRedis::start(&[
        "--maxmemory",
        "3mb",
        "--maxmemory-policy",
        policy,
        "--maxmemory-samples",
        "10",
    ])
    .await
}

/// `volatile-ttl` evicts the keys closest to expiring first. A fill that started before an
/// invalidation is refused also after that pressure (before the fix, the tag's stamp was a key
/// with the shortest TTL around, evicted first, and the fill was stored and served).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stamp_evicted_after_its_invalidation_never_readmits_a_stale_fill() {
    let Some(server) = tight_server("volatile-ttl").await else {
        return;
    };
    let store = RedisStore::builder(server.url())
        .prefix("evict")
        .fill_window(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    let mut conn = support::raw(&server.url()).await;
    let t = tag(&Dep::id("article", 1));
    let Lookup::Miss(before) = store.get(&key("fill")).await.unwrap() else {
        panic!("expected a miss");
    };
    store.invalidate(std::slice::from_ref(&t)).await.unwrap();
    pressure(&mut conn, 50).await;
    let outcome = store
        .put(
            &key("fill"),
            v("stale"),
            std::slice::from_ref(&t),
            None,
            Some(&before),
        )
        .await;
    // Refused as stale, or (memory full) not written at all: never stored.
    if let Ok(outcome) = outcome {
        assert_eq!(
            outcome,
            PutOutcome::Stale,
            "a fill from before the invalidation"
        );
    }
    assert_eq!(hit(&store, &key("fill")).await, None);
}

/// Entries set aside by a large invalidation stay misses once the key holding their tag's stamp
/// is lost (deleted here, as an eviction would; real eviction cannot pick that key on demand),
/// also after the fill window (before the fix, a read found no stamp, re-indexed the entry and
/// served it for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_set_aside_stay_misses_after_their_stamp_is_lost() {
    let Some(mut s) = support::Scratch::new(4).await else {
        return;
    };
    let t = tag(&Dep::tag("hot"));
    for i in 0..40 {
        s.store
            .put(
                &key(&format!("hot:{i}")),
                v("old"),
                std::slice::from_ref(&t),
                None,
                None,
            )
            .await
            .unwrap();
    }
    s.store
        .invalidate_deferred(std::slice::from_ref(&t))
        .await
        .unwrap();
    let lost: u64 = redis::cmd("DEL")
        .arg(support::stamp_holder(s.store.layout(), &t))
        .query_async(&mut s.conn)
        .await
        .unwrap();
    assert_eq!(lost, 1, "the key holding the stamp existed");
    for i in 0..40 {
        assert_eq!(
            hit(&s.store, &key(&format!("hot:{i}"))).await,
            None,
            "hot:{i} was set aside by the invalidation"
        );
    }
}
