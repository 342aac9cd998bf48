//! The conformance suite on `RedisStore`, against the server of `MATROSKA_TEST_REDIS_URL`; each
//! store in a random namespace (`matroska-test:<random>`), deleted after the case.

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use matroska_core::Tag;
use matroska_redis::RedisStore;
use matroska_testkit::Harness;

use crate::support::{FILL_WINDOW, Namespaces};

struct RedisHarness {
    url: String,
    namespaces: Namespaces,
}

impl RedisHarness {
    fn create() -> Option<Self> {
        let url = support::shared_url()?;
        Some(Self {
            namespaces: Namespaces::new(&url),
            url,
        })
    }
}

impl Harness for RedisHarness {
    type Store = RedisStore;

    async fn store(&self) -> RedisStore {
        support::store(&self.url, &self.namespaces.create()).await
    }

    /// A new store, with its own connection, on the same namespace: another process.
    async fn reopen(&self, store: &RedisStore) -> RedisStore {
        support::store(&self.url, store.layout().prefix()).await
    }

    /// Real time: Redis expires keys on its own clock.
    async fn advance(&self, _: &RedisStore, by: Duration) {
        tokio::time::sleep(by).await;
    }

    /// What `allkeys-lru` does to an index set: it is gone, its entries stay.
    async fn lose_index(&self, store: &RedisStore, tag: &Tag) {
        let mut conn = store.connection();
        let deleted: u64 = redis::cmd("DEL")
            .arg(store.layout().index(tag))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(deleted, 1, "the index of {tag} should have existed");
    }

    async fn cleanup(&self) {
        self.namespaces.delete_all().await;
    }

    /// One member per script budget: every set-aside and budget-exhausted path runs.
    async fn small_store(&self) -> RedisStore {
        RedisStore::builder(self.url.as_str())
            .prefix(self.namespaces.create())
            .fill_window(FILL_WINDOW)
            .reclaim_chunk(1)
            .build()
            .await
            .unwrap()
    }

    async fn housekeep(&self, store: &RedisStore) {
        store.reclaim().await.unwrap();
    }

    /// What an eviction of the key holding the stamp does: every tag's record lives in the
    /// namespace's metadata hash, so the whole hash goes (and the namespace starts a new
    /// generation at its next script).
    async fn lose_stamp(&self, store: &RedisStore, _tag: &Tag) -> bool {
        let mut conn = store.connection();
        let _: u64 = redis::cmd("DEL")
            .arg(store.layout().meta())
            .query_async(&mut conn)
            .await
            .unwrap();
        true
    }

    /// What an eviction of the namespace state (its sequence number, marks and generation)
    /// does.
    async fn lose_state(&self, store: &RedisStore) -> bool {
        let mut conn = store.connection();
        let _: u64 = redis::cmd("DEL")
            .arg(store.layout().seq())
            .query_async(&mut conn)
            .await
            .unwrap();
        true
    }

    fn fill_window(&self) -> Duration {
        FILL_WINDOW
    }

    fn fan_out(&self) -> usize {
        20_000
    }
}

matroska_testkit::conformance!(async { crate::RedisHarness::create() });
