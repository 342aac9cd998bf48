//! Outages: a restart without persistence, `FLUSHALL`, `SCRIPT FLUSH`, a server that cannot be
//! reached, a server busy with a long script. Private `redis-server` processes, so that the
//! shared server is never disturbed.

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use matroska_core::store::{FillToken, KeyTtl, Lookup, PutOutcome, Store};
use matroska_core::{Cache, Dep, Key};
use matroska_redis::RedisStore;
use matroska_testkit::support::{bytes as v, eventually, hit, key, tag};
use redis::aio::MultiplexedConnection;

use crate::support::PrivateRedis;

const WAIT: Duration = Duration::from_secs(10);

async fn miss_token(store: &RedisStore, k: &Key) -> FillToken {
    match store.get(k).await.unwrap() {
        Lookup::Miss(token) => token,
        Lookup::Hit(bytes) => panic!("{k}: expected a miss, got {bytes:?}"),
    }
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

/// After FLUSHALL the namespace starts over with a new generation: a token from before is
/// refused even when its sequence number would pass every other check of the new generation
/// (the generation is what tells them apart), and the same token of the new generation is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_starts_a_new_generation() {
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
    let now = miss_token(&store, &key("fill")).await;
    // The new generation's own sequence number, under the old generation's id.
    let crafted =
        FillToken::new(now.seq(), now.issued_at_ms()).with_snapshot(old.snapshot().unwrap());
    let outcome = store
        .put(
            &key("fill"),
            v("stale"),
            std::slice::from_ref(&t),
            None,
            Some(&crafted),
        )
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stale, "refused by the generation");
    let outcome = store
        .put(
            &key("fill"),
            v("v"),
            std::slice::from_ref(&t),
            None,
            Some(&now),
        )
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stored);
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

/// A server busy running a long script answers BUSY: a transient error, reported as such; once
/// the script is killed the store works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_server_is_a_transient_error() {
    let Some(server) = PrivateRedis::start(&["--busy-reply-threshold", "100"]).await else {
        return;
    };
    let store = support::store(&server.url(), "busy").await;
    let mut blocker = support::raw(&server.url()).await;
    let busy = tokio::spawn(async move {
        redis::cmd("EVAL")
            .arg("local i = 0 while true do i = i + 1 end")
            .arg(0)
            .query_async::<redis::Value>(&mut blocker)
            .await
    });
    let mut conn = support::raw(&server.url()).await;
    // Bounded polling until the blocking script has started (then every call answers BUSY).
    let start = Instant::now();
    let err = loop {
        match store.get(&key("k")).await {
            Err(e)
                if matches!(&e, matroska_core::Error::Backend { source: Some(source), .. }
                    if source.downcast_ref::<redis::RedisError>()
                        .is_some_and(|r| r.code() == Some("BUSY"))) =>
            {
                break e;
            }
            other => {
                assert!(start.elapsed() < WAIT, "no BUSY within {WAIT:?}: {other:?}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    assert!(err.is_transient(), "{err:?}");
    let killed: String = tokio::time::timeout(
        WAIT,
        redis::cmd("SCRIPT").arg("KILL").query_async(&mut conn),
    )
    .await
    .expect("SCRIPT KILL answers")
    .unwrap();
    assert_eq!(killed, "OK");
    let outcome = tokio::time::timeout(WAIT, busy)
        .await
        .expect("the killed script returns")
        .unwrap();
    assert!(outcome.is_err(), "the killed script fails: {outcome:?}");
    assert_eq!(hit(&store, &key("k")).await, None);
}
