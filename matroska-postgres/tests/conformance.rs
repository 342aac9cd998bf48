//! The `matroska-testkit` conformance suite on PostgreSQL: every case on a schema of its own.
//!
//! Needs `MATROSKA_TEST_POSTGRES_URL` (run `./scripts/test`, which starts a private server).

#![allow(clippy::expect_used)]

mod support;

use std::time::Duration;

use matroska_core::Tag;
use matroska_postgres::PgStore;
use matroska_testkit::Harness;
use support::{FILL_WINDOW, Schemas, URL_VAR};

struct PgHarness {
    schemas: Schemas,
}

impl PgHarness {
    async fn create() -> Option<Self> {
        let url = matroska_testkit::server_url(URL_VAR)?;
        Some(Self {
            schemas: Schemas::new(&url).await,
        })
    }
}

impl Harness for PgHarness {
    type Store = PgStore;

    async fn store(&self) -> PgStore {
        self.schemas.store("matroska_test").await
    }

    async fn reopen(&self, store: &PgStore) -> PgStore {
        self.schemas.reopen(store)
    }

    async fn advance(&self, _: &PgStore, by: Duration) {
        // The server's clock decides expiry and token age: real time must pass.
        tokio::time::sleep(by).await;
    }

    async fn lose_index(&self, store: &PgStore, tag: &Tag) {
        let sql = format!(
            "DELETE FROM {}.tags WHERE tag = $1",
            store.schema().quoted()
        );
        self.schemas
            .admin()
            .execute(&sql, &[&tag.as_str()])
            .await
            .expect("delete the tag's index rows");
    }

    async fn cleanup(&self) {
        self.schemas.drop_all().await;
    }

    /// One row per invalidation batch: every continued batch runs.
    async fn small_store(&self) -> PgStore {
        let store = self
            .schemas
            .config("matroska_test")
            .batch_size(1)
            .build()
            .expect("a valid configuration");
        store.migrate().await.expect("migrate the test schema");
        store
    }

    /// `cleanup()` to completion: expired entries, the pruning pass (once stamps are two fill
    /// windows old), stray index rows.
    async fn housekeep(&self, store: &PgStore) {
        let report = store.cleanup().await.expect("cleanup");
        assert!(report.complete, "cleanup did not finish: {report:?}");
    }

    /// A stamp is a row of the same schema as the entries it hides, with the same persistence:
    /// crash recovery empties UNLOGGED stamps together with the entries, and LOGGED ones survive.
    /// Nothing removes a stamp on its own but cleanup's pruning, which first removes every
    /// entry the stamp hides (see PROTOCOL-store.md). So there is no realistic way to lose one.
    async fn lose_stamp(&self, _: &PgStore, _: &Tag) -> bool {
        false
    }

    /// Loses the epoch row while entries, index and stamps stay: what crash recovery or the
    /// promotion of a standby does to a LOGGED schema (the epoch table is always UNLOGGED). For
    /// the default UNLOGGED schema, crash recovery also empties the entries (only misses).
    async fn lose_state(&self, store: &PgStore) -> bool {
        let sql = format!("DELETE FROM {}.epoch", store.schema().quoted());
        let lost = self
            .schemas
            .admin()
            .execute(&sql, &[])
            .await
            .expect("delete the epoch row");
        lost == 1
    }

    fn fill_window(&self) -> Duration {
        FILL_WINDOW
    }

    fn fan_out(&self) -> usize {
        20_000
    }
}

matroska_testkit::conformance!(PgHarness::create());
