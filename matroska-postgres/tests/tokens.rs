//! PgStore fill tokens against a real server: a token is good only in the namespace, epoch and
//! fill window it was issued for, and never from the future; no put ends later than one fill
//! window after its snapshot.
//!
//! Needs `MATROSKA_TEST_POSTGRES_URL` (run `./scripts/test`, which starts a private server).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod support;

use std::time::Duration;

use matroska_core::store::{FillToken, PutOutcome, Store};
use matroska_core::{Dep, Error, Key};
use matroska_testkit::support::{bytes, hit, key, tag};
use support::{blocked_by, hold, locker, miss, rows, until_statement_older_than, with_schemas};

/// Tokens never pass after a reset: crash recovery (simulated by emptying the unlogged state
/// as crash recovery would), a clear, or a dropped and re-migrated schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_before_a_reset_or_a_recreation_are_rejected() {
    with_schemas(|schemas| async move {
        let store = schemas.store("matroska_epoch").await;
        let s = store.schema().quoted();
        let admin = schemas.admin();
        let k = key("e");

        // Crash recovery empties every UNLOGGED table.
        let token = miss(&store, &k).await;
        admin
            .batch_execute(&format!(
                "TRUNCATE {s}.entries, {s}.tags, {s}.stamps, {s}.epoch"
            ))
            .await
            .unwrap();
        // The first miss recreates the epoch row, with a new epoch.
        let fresh = miss(&store, &k).await;
        let put = store
            .put(&k, bytes("v"), &[], None, Some(&token))
            .await
            .unwrap();
        assert_eq!(put, PutOutcome::Stale, "a pre-crash token");
        assert_eq!(
            store
                .put(&k, bytes("v"), &[], None, Some(&fresh))
                .await
                .unwrap(),
            PutOutcome::Stored
        );

        // Drop and re-create the schema: the old token is from another epoch.
        let token = miss(&store, &key("other")).await;
        admin
            .batch_execute(&format!("DROP SCHEMA {s} CASCADE"))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let put = store
            .put(&key("other"), bytes("v"), &[], None, Some(&token))
            .await
            .unwrap();
        assert_eq!(put, PutOutcome::Stale);

        // A token from another store is refused, not an error.
        let foreign = FillToken::new(1, 1).with_snapshot("10:10:");
        let put = store
            .put(&k, bytes("v"), &[], None, Some(&foreign))
            .await
            .unwrap();
        assert_eq!(put, PutOutcome::Stale);
    })
    .await;
}

/// The model-based checker's finding: after the epoch row is lost while the entries stay (crash
/// recovery or a promoted standby, for a LOGGED schema), the first miss must hand out a token
/// that can store (it recreates the epoch), while every token issued before stays refused and
/// the entries stay readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_miss_after_the_epoch_row_was_lost_hands_out_a_usable_token() {
    with_schemas(|schemas| async move {
        let store = schemas.store("matroska_lost_epoch").await;
        let s = store.schema().quoted();
        let t = tag(&Dep::id("row", 1));
        let (kept, k) = (key("kept"), key("k"));
        store
            .put(&kept, bytes("kept"), std::slice::from_ref(&t), None, None)
            .await
            .unwrap();
        let before = miss(&store, &key("before")).await;
        let lost = schemas
            .admin()
            .execute(&format!("DELETE FROM {s}.epoch"), &[])
            .await
            .unwrap();
        assert_eq!(lost, 1);

        let token = miss(&store, &k).await;
        assert_eq!(
            store
                .put(&k, bytes("v"), std::slice::from_ref(&t), None, Some(&token))
                .await
                .unwrap(),
            PutOutcome::Stored,
            "the first fill after the loss"
        );
        assert_eq!(hit(&store, &k).await, Some(bytes("v")));
        assert_eq!(hit(&store, &kept).await, Some(bytes("kept")));
        assert_eq!(
            store
                .put(&key("before"), bytes("v"), &[], None, Some(&before))
                .await
                .unwrap(),
            PutOutcome::Stale,
            "a token issued before the loss"
        );
        // Invalidation works as before.
        store.invalidate(std::slice::from_ref(&t)).await.unwrap();
        assert_eq!(hit(&store, &k).await, None);
        assert_eq!(hit(&store, &kept).await, None);
    })
    .await;
}

/// A fill token of another PgStore namespace (another schema, or the same schema name on
/// another database or server) carries that namespace's random epoch: it is refused, and
/// nothing is written. Snapshots of different databases are not comparable, so this is the only
/// way to tell them apart, and the epoch is what does it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_tokens_of_another_namespace_are_refused() {
    with_schemas(|schemas| async move {
        let (a, b) = (
            schemas.store("matroska_ns_a").await,
            schemas.store("matroska_ns_b").await,
        );
        let t = tag(&Dep::id("row", 1));
        let k = key("k");
        let from_a = miss(&a, &k).await;
        let from_b = miss(&b, &k).await;
        assert_eq!(
            b.put(
                &k,
                bytes("from a"),
                std::slice::from_ref(&t),
                None,
                Some(&from_a)
            )
            .await
            .unwrap(),
            PutOutcome::Stale
        );
        assert_eq!(hit(&b, &k).await, None);
        assert_eq!(rows(schemas.admin(), &b, "entries").await, 0);
        // Each token is good in its own namespace.
        for (store, token) in [(&a, &from_a), (&b, &from_b)] {
            assert_eq!(
                store
                    .put(
                        &k,
                        bytes("own"),
                        std::slice::from_ref(&t),
                        None,
                        Some(token)
                    )
                    .await
                    .unwrap(),
                PutOutcome::Stored
            );
        }
    })
    .await;
}

/// The same token, with its time moved: the server refuses a token issued more than one second
/// after its own clock at the put (a client or server clock step, a token forged or mixed up),
/// and accepts one up to a second ahead (`$9 <= now + 1000` in the fill statement).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_tokens_from_the_future_are_refused_beyond_one_second() {
    with_schemas(|schemas| async move {
        let store = schemas.store("matroska_future").await;
        let window_ms = u64::try_from(store.fill_window().as_millis()).unwrap();
        let t = tag(&Dep::id("row", 1));
        let at = |token: &FillToken, issued_at_ms: u64| {
            FillToken::new(token.seq(), issued_at_ms)
                .with_snapshot(token.snapshot().unwrap().to_owned())
        };
        let put = |k: Key, token: FillToken| {
            let (store, t) = (store.clone(), t.clone());
            async move {
                store
                    .put(&k, bytes("v"), &[t], None, Some(&token))
                    .await
                    .unwrap()
            }
        };

        // Beyond the second: the server's clock at the put is at most one window past the miss
        // (later, the token would be refused as expired anyway), so this token is always ahead
        // by more than a second.
        let (far, k) = (miss(&store, &key("far")).await, key("far"));
        let moved = at(&far, far.issued_at_ms() + 1000 + window_ms + 1);
        assert_eq!(put(k.clone(), moved).await, PutOutcome::Stale);
        assert_eq!(hit(&store, &k).await, None);

        // Exactly one second ahead of the miss: the server's clock has not gone back since, so
        // the token is at most one second ahead of it.
        let (near, k) = (miss(&store, &key("near")).await, key("near"));
        let moved = at(&near, near.issued_at_ms() + 1000);
        assert_eq!(put(k.clone(), moved).await, PutOutcome::Stored);
        assert_eq!(hit(&store, &k).await, Some(bytes("v")));
    })
    .await;
}

/// Every put ends within one fill window of its snapshot, or stores nothing: cleanup prunes a
/// stamp on that assumption (a put whose snapshot predates the stamp must not commit after the
/// pass that precedes pruning). A put held on a row lock past the window: with a token it is
/// refused as stale, without one it fails with a timeout; the entry keeps its earlier value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_held_past_the_fill_window_stores_nothing() {
    with_schemas(|schemas| async move {
        let window = Duration::from_millis(300);
        let store = schemas
            .config("matroska_slow_put")
            .fill_window(window)
            .build()
            .unwrap();
        store.migrate().await.unwrap();
        let t = tag(&Dep::id("row", 1));
        let k = key("k");
        store
            .put(&k, bytes("v0"), std::slice::from_ref(&t), None, None)
            .await
            .unwrap();
        for with_token in [false, true] {
            let token = if with_token {
                // A miss for another key: a token of this namespace, young at the put's start.
                Some(miss(&store, &key("other")).await)
            } else {
                None
            };
            let (mut locker, pid) = locker(schemas.url()).await;
            let lock = hold(&mut locker, &store, &k).await;
            let put = {
                let (store, k, t) = (store.clone(), k.clone(), t.clone());
                tokio::spawn(async move {
                    store
                        .put(&k, bytes("late"), &[t], None, token.as_ref())
                        .await
                })
            };
            let waiting = blocked_by(schemas.admin(), pid, 1).await;
            // Wait on the server's clock until the put's statement is older than the window.
            until_statement_older_than(schemas.admin(), waiting[0], window).await;
            lock.rollback().await.unwrap();
            match (with_token, put.await.unwrap()) {
                (true, Ok(outcome)) => assert_eq!(outcome, PutOutcome::Stale),
                (false, Err(Error::Timeout { operation, .. })) => assert_eq!(operation, "put"),
                (_, other) => panic!("with token: {with_token}: {other:?}"),
            }
            assert_eq!(
                hit(&store, &k).await,
                Some(bytes("v0")),
                "with token: {with_token}"
            );
        }
        // A put that is not held is stored as usual.
        store.put(&k, bytes("v1"), &[t], None, None).await.unwrap();
        assert_eq!(hit(&store, &k).await, Some(bytes("v1")));
    })
    .await;
}
