//! The conformance suite on `MemoryStore`: proves the reference store and the suite together.

use std::time::Duration;

use matroska_core::clock::MockClock;
use matroska_core::{MemoryStore, Tag};
use matroska_testkit::Harness;

/// Memory stores on a shared mock clock: time passes only when a case says so.
struct MemoryHarness {
    clock: MockClock,
}

impl Harness for MemoryHarness {
    type Store = MemoryStore;

    async fn store(&self) -> MemoryStore {
        // Room for the fan-out case, so that no entry is evicted by the bound.
        MemoryStore::builder()
            .max_entries(1_000_000)
            .clock(self.clock.clone())
            .build()
    }

    async fn reopen(&self, store: &MemoryStore) -> MemoryStore {
        store.clone()
    }

    async fn advance(&self, _: &MemoryStore, by: Duration) {
        self.clock.advance(by);
    }

    async fn lose_index(&self, store: &MemoryStore, tag: &Tag) {
        store.simulate_index_loss(tag);
    }

    async fn cleanup(&self) {}

    async fn small_store(&self) -> MemoryStore {
        MemoryStore::builder()
            .max_entries(1_000_000)
            .reclaim_chunk(1)
            .clock(self.clock.clone())
            .build()
    }

    async fn housekeep(&self, store: &MemoryStore) {
        store.run_pending_tasks();
    }

    fn exact_time(&self) -> bool {
        true
    }

    fn clock(&self) -> std::sync::Arc<dyn matroska_core::clock::Clock> {
        std::sync::Arc::new(self.clock.clone())
    }

    fn fan_out(&self) -> usize {
        50_000
    }
}

matroska_testkit::conformance!(async {
    Some(MemoryHarness {
        clock: MockClock::new(),
    })
});
