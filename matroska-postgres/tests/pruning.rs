//! PgStore stamp pruning against a real server: cleanup deletes a stamp only after a pass over
//! every entry (through the authoritative `entries.tags`) removed what it hides, so pruning never
//! makes an invalidated entry readable again, whatever index rows were lost.
//!
//! Most tests let real time pass on the server's clock (bounded polling of `cleanup()`); the
//! boundary test moves the server-side timestamps back instead, as an injectable clock would.
//!
//! Needs `MATROSKA_TEST_POSTGRES_URL` (run `./scripts/test`, which starts a private server).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod support;

use matroska_core::Dep;
use matroska_core::store::{PutOutcome, Store};
use matroska_testkit::support::{bytes, hit, key, tag};
use support::{cleanup_until_pruned, connect, miss, rows, with_schemas};

/// Defect 11: with the index row of an entry lost, an invalidation removes nothing (reads are
/// misses thanks to the stamp); cleanup must still find the entry, through `entries.tags`, before
/// it prunes the stamp, or the entry would be served again with its pre-invalidation value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_never_revives_an_invalidated_entry_whose_index_row_was_lost() {
    with_schemas(|schemas| async move {
        let store = schemas.store("matroska_lost").await;
        let s = store.schema().quoted();
        let admin = schemas.admin();
        let (t, other) = (tag(&Dep::id("article", 1)), tag(&Dep::id("article", 2)));
        let (k, control) = (key("lost:page"), key("lost:control"));
        store
            .put(&k, bytes("old"), std::slice::from_ref(&t), None, None)
            .await
            .unwrap();
        store
            .put(
                &control,
                bytes("kept"),
                std::slice::from_ref(&other),
                None,
                None,
            )
            .await
            .unwrap();
        let lost = admin
            .execute(
                &format!("DELETE FROM {s}.tags WHERE tag = $1"),
                &[&t.as_str()],
            )
            .await
            .unwrap();
        assert_eq!(lost, 1, "the index row was there to lose");

        assert_eq!(
            store.invalidate(std::slice::from_ref(&t)).await.unwrap(),
            0,
            "without its index row the invalidation finds nothing to remove"
        );
        assert_eq!(hit(&store, &k).await, None, "the stamp hides the entry");

        let report = cleanup_until_pruned(&store, 1).await;
        assert_eq!(
            hit(&store, &k).await,
            None,
            "cleanup pruned the stamp ({report:?}) and the invalidated entry is served again"
        );
        assert!(report.swept >= 1, "the entry was swept: {report:?}");
        assert_eq!(rows(admin, &store, "stamps").await, 0);
        assert_eq!(hit(&store, &control).await, Some(bytes("kept")));
    })
    .await;
}

/// Defect 11 through the SQL function change-capture triggers call: it only stamps, inside the
/// writer's transaction; the dependent whose index row was lost must stay a miss after cleanup
/// pruned the stamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_never_revives_an_entry_invalidated_through_sql_whose_index_row_was_lost() {
    with_schemas(|schemas| async move {
        let store = schemas.store("matroska_lost_sql").await;
        let s = store.schema().quoted();
        let admin = schemas.admin();
        let t = tag(&Dep::id("article", 1));
        let (k, indexed) = (key("lost:page"), key("lost:indexed"));
        for k in [&k, &indexed] {
            store
                .put(k, bytes("old"), std::slice::from_ref(&t), None, None)
                .await
                .unwrap();
        }
        let lost = admin
            .execute(
                &format!("DELETE FROM {s}.tags WHERE tag = $1 AND key = $2"),
                &[&t.as_str(), &k.as_str()],
            )
            .await
            .unwrap();
        assert_eq!(lost, 1, "the index row was there to lose");

        let mut writer = support::connect(schemas.url()).await;
        let tx = writer.transaction().await.unwrap();
        tx.execute(&format!("SELECT {s}.invalidate($1)"), &[&vec![t.as_str()]])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(hit(&store, &k).await, None, "the stamp hides the entry");
        assert_eq!(
            hit(&store, &indexed).await,
            None,
            "the stamp hides the entry"
        );

        let report = cleanup_until_pruned(&store, 1).await;
        assert_eq!(
            hit(&store, &k).await,
            None,
            "cleanup pruned the stamp ({report:?}) and the invalidated entry is served again"
        );
        assert_eq!(hit(&store, &indexed).await, None);
        assert_eq!(rows(admin, &store, "entries").await, 0, "{report:?}");
    })
    .await;
}

/// The pass that precedes pruning looks at every entry, `batch_size` per round, and resumes where
/// the previous round stopped: with one entry per round and every index row lost, each of the
/// hidden entries is found, wherever the round boundaries fall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pruning_pass_resumes_across_rounds_of_one_entry() {
    with_schemas(|schemas| async move {
        let store = schemas
            .config("matroska_pass")
            .batch_size(1)
            .build()
            .unwrap();
        store.migrate().await.unwrap();
        let s = store.schema().quoted();
        let admin = schemas.admin();
        let tags: Vec<_> = (0..5).map(|i| tag(&Dep::id("row", i))).collect();
        for (i, t) in tags.iter().enumerate() {
            store
                .put(
                    &key(&format!("p:{i}")),
                    bytes("old"),
                    std::slice::from_ref(t),
                    None,
                    None,
                )
                .await
                .unwrap();
        }
        let control = key("p:control");
        store
            .put(
                &control,
                bytes("kept"),
                &[tag(&Dep::id("other", 1))],
                None,
                None,
            )
            .await
            .unwrap();
        admin
            .execute(&format!("DELETE FROM {s}.tags WHERE key LIKE 'p:_'"), &[])
            .await
            .unwrap();
        assert_eq!(store.invalidate(&tags).await.unwrap(), 0);

        let report = cleanup_until_pruned(&store, 5).await;
        assert_eq!(report.swept, 5, "{report:?}");
        assert!(report.rounds >= 6, "one entry per round: {report:?}");
        for i in 0..5 {
            assert_eq!(
                hit(&store, &key(&format!("p:{i}"))).await,
                None,
                "{report:?}"
            );
        }
        assert_eq!(hit(&store, &control).await, Some(bytes("kept")));
        assert_eq!(rows(admin, &store, "entries").await, 1);
    })
    .await;
}

/// A put racing with an invalidation made inside a writer's transaction can store an entry that
/// only its stamp keeps dead; the pass before the stamp is pruned removes it, so pruning never
/// brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_a_stamp_never_revives_an_entry_it_kept_dead() {
    with_schemas(|schemas| async move {
        let store = schemas.store("matroska_prune").await;
        let s = store.schema().quoted();
        let t = tag(&Dep::tag("t"));
        let k = key("raced");
        let token = miss(&store, &k).await;
        // The invalidation commits inside a writer transaction after the put checked stamps:
        // stamp in a transaction, store, then commit.
        let mut writer = connect(schemas.url()).await;
        let tx = writer.transaction().await.unwrap();
        tx.execute(&format!("SELECT {s}.invalidate($1)"), &[&vec![t.as_str()]])
            .await
            .unwrap();
        let outcome = store
            .put(
                &k,
                bytes("stale"),
                std::slice::from_ref(&t),
                None,
                Some(&token),
            )
            .await
            .unwrap();
        assert_eq!(outcome, PutOutcome::Stored);
        tx.commit().await.unwrap();
        assert_eq!(hit(&store, &k).await, None);
        let report = cleanup_until_pruned(&store, 1).await;
        assert_eq!(report.swept, 1, "{report:?}");
        assert_eq!(hit(&store, &k).await, None, "pruning revived a stale entry");
    })
    .await;
}

/// The boundaries of the pass, with the server-side times moved back instead of waiting: a pass
/// prunes the stamps confirmed before its cut (two fill windows before it started) and no other,
/// while it removes every entry any committed stamp hides; a new pass starts at most once per
/// two fill windows; a stamp of the clear tag (a `clear()` whose sweep never ran) is pruned like
/// any other, after every entry older than it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_prunes_only_the_stamps_due_when_it_started_and_at_most_once_per_two_windows() {
    with_schemas(|schemas| async move {
        let store = schemas.store("matroska_pass_cut").await;
        let s = store.schema().quoted();
        let admin = schemas.admin();
        let window_ms = i64::try_from(store.fill_window().as_millis()).unwrap();
        let (due, young) = (tag(&Dep::id("row", 1)), tag(&Dep::id("row", 2)));
        let (k_due, k_young, k_fresh) = (key("due"), key("young"), key("fresh"));
        store
            .put(&k_due, bytes("old"), std::slice::from_ref(&due), None, None)
            .await
            .unwrap();
        store
            .put(&k_young, bytes("old"), std::slice::from_ref(&young), None, None)
            .await
            .unwrap();
        admin
            .execute(&format!("DELETE FROM {s}.tags"), &[])
            .await
            .unwrap();
        store.invalidate(&[due.clone(), young.clone()]).await.unwrap();
        let report = store.cleanup().await.unwrap();
        assert_eq!(report.stamps_pruned, 0, "just confirmed: {report:?}");
        // `due` was confirmed two windows and a second ago; `young` one second short of that.
        let age = |t: &matroska_core::Tag, ms: i64| {
            let sql = format!(
                "UPDATE {s}.stamps SET confirmed_at = clock_timestamp() - $2::bigint * interval '1 millisecond'
                 WHERE tag = $1"
            );
            let t = t.as_str().to_owned();
            async move { admin.execute(&sql, &[&t, &ms]).await.unwrap() }
        };
        age(&due, 2 * window_ms + 1000).await;
        age(&young, 2 * window_ms - 1000).await;

        let report = store.cleanup().await.unwrap();
        assert_eq!(report.stamps_pruned, 1, "only the due stamp: {report:?}");
        assert_eq!(report.swept, 2, "every hidden entry, due or not: {report:?}");
        assert_eq!(hit(&store, &k_due).await, None);
        assert_eq!(hit(&store, &k_young).await, None);
        let left: Vec<String> = admin
            .query(&format!("SELECT tag FROM {s}.stamps"), &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(left, [young.as_str()]);

        // `young` is due now, but a pass started less than two windows ago: none starts.
        age(&young, 2 * window_ms + 1000).await;
        let report = store.cleanup().await.unwrap();
        assert_eq!(report.stamps_pruned, 0, "a second pass too soon: {report:?}");

        // A clear whose sweep never ran: its stamp alone hides every older entry.
        store
            .put(&k_due, bytes("before the clear"), &[], None, None)
            .await
            .unwrap();
        admin
            .execute(
                &format!("INSERT INTO {s}.stamps (tag, xid) VALUES ('*', pg_current_xact_id())"),
                &[],
            )
            .await
            .unwrap();
        let token = miss(&store, &k_fresh).await;
        assert_eq!(
            store
                .put(&k_fresh, bytes("after"), &[], None, Some(&token))
                .await
                .unwrap(),
            PutOutcome::Stored
        );
        assert_eq!(hit(&store, &k_due).await, None, "the clear hides it");
        let report = store.cleanup().await.unwrap();
        assert_eq!(report.stamps_pruned, 0, "still too soon: {report:?}");
        for table in ["stamps", "epoch"] {
            let column = if table == "stamps" { "confirmed_at" } else { "pass_started_at" };
            admin
                .execute(
                    &format!(
                        "UPDATE {s}.{table} SET {column} = clock_timestamp()
                             - (2 * $1::bigint + 1000) * interval '1 millisecond'
                         WHERE {column} IS NOT NULL"
                    ),
                    &[&window_ms],
                )
                .await
                .unwrap();
        }
        let report = store.cleanup().await.unwrap();
        assert_eq!(report.stamps_pruned, 2, "young and the clear: {report:?}");
        assert_eq!(report.swept, 1, "the entry from before the clear: {report:?}");
        assert_eq!(rows(admin, &store, "stamps").await, 0);
        assert_eq!(hit(&store, &k_due).await, None);
        assert_eq!(hit(&store, &k_fresh).await, Some(bytes("after")));
    })
    .await;
}
