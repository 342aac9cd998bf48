//! PgStore migrations against a real server: idempotent, safe to run concurrently, checked
//! persistence, and in-place upgrades of schemas created by earlier versions.
//!
//! Needs `MATROSKA_TEST_POSTGRES_URL` (run `./scripts/test`, which starts a private server).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod support;

use futures::future::join_all;
use matroska_core::Dep;
use matroska_core::store::Store;
use matroska_postgres::PgStore;
use matroska_testkit::support::{bytes, hit, key, tag};
use support::{cleanup_until_pruned, rows, with_schemas};

/// A schema created UNLOGGED cannot be opened as LOGGED by mistake; migrate is idempotent and
/// safe to run concurrently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_is_idempotent_concurrent_and_checks_persistence() {
    with_schemas(|schemas| async move {
        let config = schemas.config("matroska_migrate");
        let stores: Vec<_> = (0..4).map(|_| config.clone().build().unwrap()).collect();
        let reports = join_all(stores.iter().map(PgStore::migrate)).await;
        let mut applied: Vec<usize> = reports
            .into_iter()
            .map(|r| {
                let report = r.unwrap();
                assert_eq!(report.version, 3);
                report.applied.len()
            })
            .collect();
        applied.sort_unstable();
        assert_eq!(
            applied,
            [0, 0, 0, 3],
            "exactly one migrate applied the migrations"
        );
        let s = stores[0].schema().quoted();
        let persistence: String = schemas
            .admin()
            .query_one(
                &format!(
                    "SELECT string_agg(DISTINCT relpersistence::text, ',') FROM pg_class
                     WHERE relnamespace = '{s}'::regnamespace AND relkind = 'r'
                       AND relname IN ('entries', 'tags', 'stamps', 'epoch')"
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(persistence, "u");
        let logged = config
            .clone()
            .persistence(matroska_postgres::Persistence::Logged)
            .build()
            .unwrap();
        let err = logged.migrate().await.unwrap_err();
        assert!(matches!(err, matroska_core::Error::Config(_)), "{err}");

        let logged = schemas
            .config("matroska_logged")
            .persistence(matroska_postgres::Persistence::Logged)
            .build()
            .unwrap();
        logged.migrate().await.unwrap();
        logged
            .put(&key("k"), bytes("v"), &[], None, None)
            .await
            .unwrap();
        assert_eq!(hit(&logged, &key("k")).await, Some(bytes("v")));
    })
    .await;
}

/// A schema created by version 1 of the migrations (whose cleanup swept through the lazy index
/// only) is upgraded in place: its entries, index rows and stamps stay, and from then on cleanup
/// prunes through the pass over `entries.tags`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrating_a_version_1_schema_keeps_its_data_and_upgrades_cleanup() {
    with_schemas(|schemas| async move {
        let store = schemas.config("matroska_v1").build().unwrap();
        let s = store.schema().quoted();
        let v1 = include_str!("../migrations/001_initial.sql")
            .replace("{{schema}}", &s)
            .replace("{{persistence}}", "UNLOGGED");
        let window_ms = i64::try_from(store.fill_window().as_millis()).unwrap();
        let admin = schemas.admin();
        admin
            .batch_execute(&format!(
                "CREATE SCHEMA {s};
                 CREATE TABLE {s}.schema_versions (
                     version integer PRIMARY KEY, name text NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT clock_timestamp());
                 {v1}
                 INSERT INTO {s}.schema_versions (version, name) VALUES (1, '001_initial');
                 SELECT {s}.configure('unlogged', {window_ms});"
            ))
            .await
            .unwrap();
        let (t, other) = (tag(&Dep::id("row", 1)), tag(&Dep::id("row", 2)));
        let (k, kept, lost) = (key("k"), key("kept"), key("lost"));
        for (k, t) in [(&k, &t), (&kept, &other), (&lost, &t)] {
            store
                .put(k, bytes("v1"), std::slice::from_ref(t), None, None)
                .await
                .unwrap();
        }
        admin
            .execute(&format!("DELETE FROM {s}.tags WHERE key = 'lost'"), &[])
            .await
            .unwrap();
        // An invalidation made under version 1, not yet pruned.
        admin
            .execute(&format!("SELECT {s}.invalidate($1)"), &[&vec![t.as_str()]])
            .await
            .unwrap();

        let report = store.migrate().await.unwrap();
        assert_eq!(
            (report.applied, report.version),
            (
                vec![
                    "002_cleanup_pass".to_owned(),
                    "003_refresh_leases".to_owned()
                ],
                3
            )
        );
        assert_eq!(hit(&store, &kept).await, Some(bytes("v1")));
        assert_eq!(hit(&store, &k).await, None);
        assert_eq!(hit(&store, &lost).await, None);

        let report = cleanup_until_pruned(&store, 1).await;
        assert_eq!(hit(&store, &lost).await, None, "{report:?}");
        assert_eq!(hit(&store, &kept).await, Some(bytes("v1")));
        assert_eq!(rows(admin, &store, "entries").await, 1, "{report:?}");
    })
    .await;
}
