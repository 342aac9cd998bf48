//! PgStore housekeeping against a real server: `cleanup()` reclaims expired entries, sweeps the
//! dependents of invalidations, prunes stamps and removes stray index rows, and never makes an
//! invalidated entry readable again, whatever metadata was lost and however an invalidation was
//! interrupted.
//!
//! Needs `MATROSKA_TEST_POSTGRES_URL` (run `./scripts/test`, which starts a private server).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod support;

use matroska_core::Dep;
use matroska_core::store::Store;
use matroska_testkit::support::{bytes, hit, key, tag};
use support::{cleanup_until_pruned, rows, with_schemas};

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
