//! PgStore housekeeping against a real server: `cleanup()` reclaims expired entries, removes
//! stray index rows, and finishes invalidations that were interrupted, which stay misses before
//! and after. Stamp pruning: `tests/pruning.rs`.
//!
//! Needs `MATROSKA_TEST_POSTGRES_URL` (run `./scripts/test`, which starts a private server).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod support;

use std::time::Duration;

use futures::future::join_all;
use matroska_core::Dep;
use matroska_core::store::{PutOutcome, Store};
use matroska_testkit::support::{bytes, eventually, hit, key, tag};
use support::{
    assert_all_miss, blocked_by, cleanup_until_pruned, fan_out, hold, locker, miss, rows,
    with_schemas,
};

/// An invalidation whose later batches fail (here: the statement of a batch is cancelled while it
/// waits on a row another transaction holds) has already taken effect: it returns, every
/// dependent is a miss, the ones it did not reach stay in the table until cleanup removes them,
/// and they are misses before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_whose_batches_fail_midway_stays_a_miss_and_cleanup_finishes_it() {
    with_schemas(|schemas| async move {
        let store = schemas
            .config("matroska_midway")
            .batch_size(1)
            .build()
            .unwrap();
        store.migrate().await.unwrap();
        let t = tag(&Dep::tag("t"));
        let keys = fan_out(&store, &t, 6).await;

        let (mut locker, pid) = locker(schemas.url()).await;
        let lock = hold(&mut locker, &store, &keys[3]).await;
        let invalidation = {
            let (store, t) = (store.clone(), t.clone());
            tokio::spawn(async move { store.invalidate(&[t]).await })
        };
        let waiting = blocked_by(schemas.admin(), pid, 1).await;
        assert_all_miss(&store, &keys).await;
        let cancelled: bool = schemas
            .admin()
            .query_one("SELECT pg_cancel_backend($1)", &[&waiting[0]])
            .await
            .unwrap()
            .get(0);
        assert!(cancelled);
        let removed = invalidation.await.unwrap().unwrap();
        assert_eq!(
            removed, 3,
            "the batches before the held row removed their entry"
        );
        lock.rollback().await.unwrap();

        assert_eq!(rows(schemas.admin(), &store, "entries").await, 3);
        assert_all_miss(&store, &keys).await;
        let report = cleanup_until_pruned(&store, 1).await;
        assert_eq!(report.swept, 3, "{report:?}");
        assert_eq!(rows(schemas.admin(), &store, "entries").await, 0);
        assert_all_miss(&store, &keys).await;
    })
    .await;
}

/// An invalidation whose caller stops waiting between its batches (the future is dropped, as a
/// request timeout does) has taken effect all the same: reads are misses, and what it left is
/// removed by cleanup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_cancelled_between_batches_stays_a_miss_and_cleanup_finishes_it() {
    with_schemas(|schemas| async move {
        let store = schemas
            .config("matroska_dropped")
            .batch_size(1)
            .build()
            .unwrap();
        store.migrate().await.unwrap();
        let t = tag(&Dep::tag("t"));
        let keys = fan_out(&store, &t, 6).await;

        let (mut locker, pid) = locker(schemas.url()).await;
        let lock = hold(&mut locker, &store, &keys[3]).await;
        let invalidation = {
            let (store, t) = (store.clone(), t.clone());
            tokio::spawn(async move { store.invalidate(&[t]).await })
        };
        blocked_by(schemas.admin(), pid, 1).await;
        invalidation.abort();
        assert!(invalidation.await.unwrap_err().is_cancelled());
        assert_all_miss(&store, &keys).await;
        // The statement in flight may still delete its entry once the row is free (its
        // connection is closed, not pooled); the batches after it never run.
        lock.rollback().await.unwrap();
        assert_all_miss(&store, &keys).await;

        let report = cleanup_until_pruned(&store, 1).await;
        assert!((2..=3).contains(&report.swept), "{report:?}");
        assert_eq!(rows(schemas.admin(), &store, "entries").await, 0);
        assert_all_miss(&store, &keys).await;
    })
    .await;
}

/// cleanup() removes stray index rows (the entry is gone, or no longer carries the tag), in
/// bounded steps; rows whose entry carries the tag stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_removes_stray_index_rows_and_keeps_the_others() {
    with_schemas(|schemas| async move {
        let store = schemas
            .config("matroska_strays")
            .batch_size(2)
            .build()
            .unwrap();
        store.migrate().await.unwrap();
        let (a, b, c) = (
            tag(&Dep::tag("a")),
            tag(&Dep::tag("b")),
            tag(&Dep::tag("c")),
        );
        let (retagged, invalidated, kept) = (key("retagged"), key("invalidated"), key("kept"));
        store
            .put(&retagged, bytes("v"), &[a.clone(), b.clone()], None, None)
            .await
            .unwrap();
        store
            .put(&retagged, bytes("v"), std::slice::from_ref(&a), None, None)
            .await
            .unwrap();
        store
            .put(
                &invalidated,
                bytes("v"),
                std::slice::from_ref(&c),
                None,
                None,
            )
            .await
            .unwrap();
        store
            .put(&kept, bytes("v"), &[b.clone(), c.clone()], None, None)
            .await
            .unwrap();
        store.delete(&kept).await.unwrap();
        store
            .put(&kept, bytes("v"), &[b.clone(), c.clone()], None, None)
            .await
            .unwrap();
        assert_eq!(store.invalidate(std::slice::from_ref(&c)).await.unwrap(), 2);
        store
            .put(&kept, bytes("v"), std::slice::from_ref(&b), None, None)
            .await
            .unwrap();
        // Strays: (b, retagged), (c, invalidated), (c, kept). In place: (a, retagged), (b, kept).
        assert_eq!(rows(schemas.admin(), &store, "tags").await, 5);
        let mut strays = 0;
        for _ in 0..10 {
            strays += store.cleanup().await.unwrap().strays;
        }
        assert_eq!(strays, 3);
        let left: Vec<(String, String)> = schemas
            .admin()
            .query(
                &format!(
                    "SELECT tag, key FROM {}.tags ORDER BY tag, key",
                    store.schema().quoted()
                ),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        assert_eq!(
            left,
            [
                (a.as_str().to_owned(), "retagged".to_owned()),
                (b.as_str().to_owned(), "kept".to_owned())
            ]
        );
        assert_eq!(store.invalidate(&[a, b]).await.unwrap(), 2);
    })
    .await;
}

/// A re-put racing cleanup's removal of its (stray) index row, in both orders. The put holds its
/// row (locked, in the same statement as the entry) when cleanup looks: cleanup skips it. The put
/// has not reached the index yet (it waits for the entry's row) when cleanup removes the stray
/// row: the put writes it again. Either way the entry stays invalidatable through the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_put_racing_stray_removal_keeps_its_index_row() {
    with_schemas(|schemas| async move {
        let store = schemas.store("matroska_stray_race").await;
        let s = store.schema().quoted();
        let admin = schemas.admin();
        let (t, u, other) = (
            tag(&Dep::tag("t")),
            tag(&Dep::tag("u")),
            tag(&Dep::tag("x")),
        );
        assert!(
            t.as_str() < u.as_str(),
            "a put writes its index rows in tag order"
        );
        let index_row = |tag: &matroska_core::Tag, k: &matroska_core::Key| {
            let sql = format!("SELECT count(*) FROM {s}.tags WHERE tag = $1 AND key = $2");
            let (tag, k) = (tag.as_str().to_owned(), k.as_str().to_owned());
            async move {
                admin
                    .query_one(&sql, &[&tag, &k])
                    .await
                    .unwrap()
                    .get::<_, i64>(0)
            }
        };

        // 1. The put holds (t, k) and waits for (u, k), which another transaction holds.
        let k = key("held");
        store
            .put(&k, bytes("v0"), &[t.clone(), u.clone()], None, None)
            .await
            .unwrap();
        store.invalidate(std::slice::from_ref(&t)).await.unwrap();
        assert_eq!(
            index_row(&t, &k).await,
            1,
            "the invalidation left its index rows (strays)"
        );
        let (mut locker, pid) = locker(schemas.url()).await;
        let lock = locker.transaction().await.unwrap();
        lock.execute(
            &format!("SELECT FROM {s}.tags WHERE tag = $1 AND key = $2 FOR UPDATE"),
            &[&u.as_str(), &k.as_str()],
        )
        .await
        .unwrap();
        let token = miss(&store, &k).await;
        let put = {
            let (store, k, tags) = (store.clone(), k.clone(), vec![t.clone(), u.clone()]);
            tokio::spawn(async move { store.put(&k, bytes("v1"), &tags, None, Some(&token)).await })
        };
        blocked_by(admin, pid, 1).await;
        let report = store.cleanup().await.unwrap();
        assert_eq!(report.strays, 0, "both rows are held: {report:?}");
        lock.rollback().await.unwrap();
        assert_eq!(put.await.unwrap().unwrap(), PutOutcome::Stored);
        assert_eq!((index_row(&t, &k).await, index_row(&u, &k).await), (1, 1));

        // 2. The put waits for the entry's row; cleanup removes the stray row meanwhile.
        let k2 = key("retagged");
        store
            .put(&k2, bytes("v0"), std::slice::from_ref(&t), None, None)
            .await
            .unwrap();
        store
            .put(&k2, bytes("v1"), std::slice::from_ref(&other), None, None)
            .await
            .unwrap();
        assert_eq!(index_row(&t, &k2).await, 1, "(t, retagged) is a stray");
        let lock = locker.transaction().await.unwrap();
        lock.execute(
            &format!("SELECT FROM {s}.entries WHERE key = $1 FOR UPDATE"),
            &[&k2.as_str()],
        )
        .await
        .unwrap();
        let put = {
            let (store, k2, t) = (store.clone(), k2.clone(), t.clone());
            tokio::spawn(async move { store.put(&k2, bytes("v2"), &[t], None, None).await })
        };
        blocked_by(admin, pid, 1).await;
        let mut strays = 0;
        for _ in 0..4 {
            strays += store.cleanup().await.unwrap().strays;
        }
        assert_eq!(strays, 1);
        assert_eq!(index_row(&t, &k2).await, 0, "cleanup removed the stray row");
        lock.rollback().await.unwrap();
        assert_eq!(put.await.unwrap().unwrap(), PutOutcome::Stored);
        assert_eq!(
            index_row(&t, &k2).await,
            1,
            "the put wrote its index row again"
        );

        // Both entries are found through the index: the invalidation removes them.
        assert_eq!(store.invalidate(&[t]).await.unwrap(), 2);
        assert_eq!(rows(admin, &store, "entries").await, 0);
    })
    .await;
}

/// cleanup() removes expired entries and their index rows in bounded batches and reports the
/// count; live entries stay; stamps are pruned once their pass is done; the background task
/// removes expired entries on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_removes_expired_entries_in_batches_and_reports_the_count() {
    with_schemas(|schemas| async move {
        let store = schemas
            .config("matroska_cleanup")
            .batch_size(100)
            .build()
            .unwrap();
        store.migrate().await.unwrap();
        let admin = schemas.admin();
        let t = tag(&Dep::tag("t"));
        let short = Some(Duration::from_millis(300));
        join_all((0..450).map(|i| {
            let (store, t) = (store.clone(), t.clone());
            async move {
                let ttl = if i < 400 { short } else { None };
                store
                    .put(&key(&format!("c:{i}")), bytes("v"), &[t], ttl, None)
                    .await
                    .unwrap();
            }
        }))
        .await;
        // Expiry runs on the server's clock: wait until the server sees all 400 expired.
        let expired_sql = format!(
            "SELECT count(*) FROM {}.entries WHERE expires_at <= clock_timestamp()",
            store.schema().quoted()
        );
        eventually(Duration::from_secs(10), "400 entries expired", || async {
            admin
                .query_one(&expired_sql, &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
                == 400
        })
        .await;
        assert_eq!(
            hit(&store, &key("c:0")).await,
            None,
            "expired entries are never served"
        );
        let report = store.cleanup().await.unwrap();
        assert_eq!(report.expired, 400);
        assert!(report.rounds >= 4, "bounded batches: {report:?}");
        assert!(report.complete);
        assert_eq!(rows(admin, &store, "entries").await, 50);
        assert_eq!(
            rows(admin, &store, "tags").await,
            50,
            "index rows of removed entries are gone"
        );
        assert_eq!(hit(&store, &key("c:449")).await, Some(bytes("v")));
        assert_eq!(store.cleanup().await.unwrap().expired, 0);

        // Stamps are confirmed, then pruned after the pass that follows two fill windows later.
        store.invalidate(std::slice::from_ref(&t)).await.unwrap();
        assert_eq!(rows(admin, &store, "stamps").await, 1);
        cleanup_until_pruned(&store, 1).await;
        assert_eq!(rows(admin, &store, "stamps").await, 0);

        // The background task.
        for i in 0..20 {
            store
                .put(&key(&format!("bg:{i}")), bytes("v"), &[], short, None)
                .await
                .unwrap();
        }
        let task = store.spawn_cleanup(Duration::from_millis(100));
        eventually(
            Duration::from_secs(10),
            "background cleanup removed them",
            || async { rows(admin, &store, "entries").await == 0 },
        )
        .await;
        assert!(!task.is_finished());
        task.stop();
    })
    .await;
}
