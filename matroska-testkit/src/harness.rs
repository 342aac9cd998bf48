//! The [`Harness`] a store provides to the suite, and the runner behind each generated test.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use matroska_core::clock::{Clock, UnixClock};
use matroska_core::{Store, Tag};

/// How long one case may run before it fails as hung (unless `MATROSKA_MODEL_CASES` asks for a
/// long run of the model-based checker, which then has no limit).
pub const CASE_TIMEOUT: Duration = Duration::from_secs(120);

fn case_timeout() -> Duration {
    if std::env::var_os("MATROSKA_MODEL_CASES").is_some() {
        Duration::from_secs(7 * 24 * 3600)
    } else {
        CASE_TIMEOUT
    }
}

/// What the conformance suite and the model-based checker need from a store under test: fresh
/// isolated stores (also with tiny work budgets), a way to let time pass, ways to lose metadata
/// as evictions and restarts do, and the store's housekeeping.
///
/// # Examples
///
/// The harness of [`MemoryStore`](matroska_core::MemoryStore), which drives a mock clock:
///
/// ```
/// use std::time::Duration;
/// use matroska_core::{MemoryStore, Tag, clock::MockClock};
/// use matroska_testkit::Harness;
///
/// struct MemoryHarness { clock: MockClock }
///
/// impl Harness for MemoryHarness {
///     type Store = MemoryStore;
///
///     async fn store(&self) -> MemoryStore {
///         MemoryStore::builder().clock(self.clock.clone()).build()
///     }
///     async fn reopen(&self, store: &MemoryStore) -> MemoryStore {
///         store.clone()
///     }
///     async fn advance(&self, _: &MemoryStore, by: Duration) {
///         self.clock.advance(by);
///     }
///     async fn lose_index(&self, store: &MemoryStore, tag: &Tag) {
///         store.simulate_index_loss(tag);
///     }
///     async fn cleanup(&self) {}
///     async fn small_store(&self) -> MemoryStore {
///         MemoryStore::builder().clock(self.clock.clone()).reclaim_chunk(1).build()
///     }
///     async fn housekeep(&self, store: &MemoryStore) {
///         store.run_pending_tasks();
///     }
///     fn exact_time(&self) -> bool {
///         true
///     }
/// }
/// ```
pub trait Harness: Send + Sync + Sized + 'static {
    /// The store under test.
    type Store: Store + Clone;

    /// A fresh, empty store in a namespace of its own (a new key prefix, a new schema).
    fn store(&self) -> impl Future<Output = Self::Store> + Send;

    /// Another handle on the namespace of `store`, as a second process would open it (a new
    /// connection; for an in-process store, a clone).
    fn reopen(&self, store: &Self::Store) -> impl Future<Output = Self::Store> + Send;

    /// Lets `by` pass on the store's clock: advance a mock clock, or wait in real time.
    fn advance(&self, store: &Self::Store, by: Duration) -> impl Future<Output = ()> + Send;

    /// Loses the reverse index of `tag` while its entries stay, as an eviction under
    /// `allkeys-lru` or a partial write would.
    fn lose_index(&self, store: &Self::Store, tag: &Tag) -> impl Future<Output = ()> + Send;

    /// Removes everything this harness created (namespaces, schemas). Runs after every case, also
    /// when the case failed.
    fn cleanup(&self) -> impl Future<Output = ()> + Send;

    /// A fresh, empty store like [`Harness::store`], with every bounded-work knob (invalidation
    /// budgets, reclaim chunks, batch sizes) set as small as the store allows, so that every slow
    /// path (a budget running out, an index set aside, a batch continued) runs on small data.
    fn small_store(&self) -> impl Future<Output = Self::Store> + Send;

    /// Runs the store's housekeeping to completion, as its background work eventually would:
    /// reclaiming set-aside entries, pruning expired stamps and index members (`PgStore::cleanup`,
    /// `RedisStore::reclaim`, `MemoryStore::run_pending_tasks`). Housekeeping must never make an
    /// invalidated entry readable again.
    fn housekeep(&self, store: &Self::Store) -> impl Future<Output = ()> + Send;

    /// Loses the invalidation stamp of `tag` the way the store can really lose it (for Redis, an
    /// eviction of the key that holds it). Returns `false` when the store keeps no stamp that can
    /// be lost on its own (the in-process store).
    fn lose_stamp(&self, store: &Self::Store, tag: &Tag) -> impl Future<Output = bool> + Send {
        let _ = (store, tag);
        async { false }
    }

    /// Loses the namespace's shared state (sequence counter, marks), as a restart without
    /// persistence or an eviction would, while entries stay. Returns `false` when the store has
    /// no such state that can be lost on its own.
    fn lose_state(&self, store: &Self::Store) -> impl Future<Output = bool> + Send {
        let _ = store;
        async { false }
    }

    /// Whether [`Harness::advance`] moves a mock clock (exact) rather than waiting in real time
    /// (the store's server decides expiry, so checks near a deadline must allow either outcome).
    fn exact_time(&self) -> bool {
        false
    }

    /// The wall clock the cases give their caches
    /// ([`CacheBuilder::clock`](matroska_core::CacheBuilder::clock)): one that moves with
    /// [`Harness::advance`] (default: the system's wall clock, for harnesses that wait in real
    /// time).
    fn clock(&self) -> Arc<dyn Clock> {
        Arc::new(UnixClock)
    }

    /// The fill window the harness's stores are configured with.
    fn fill_window(&self) -> Duration {
        matroska_core::store::DEFAULT_FILL_WINDOW
    }

    /// How many dependents the bounded-invalidation case creates.
    fn fan_out(&self) -> usize {
        10_000
    }
}

/// Runs one case: builds a runtime, makes the harness (`None`: the store's server is not
/// configured, the case is skipped with a message), runs the case with a time limit, cleans up,
/// and re-raises the case's panic.
///
/// The [`conformance!`](crate::conformance) macro calls this; call it directly for cases of your
/// own.
///
/// # Panics
///
/// When the case fails, times out, or the runtime cannot be built.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// # use std::time::Duration;
/// # use matroska_core::{MemoryStore, Tag, clock::MockClock};
/// # struct MemoryHarness { clock: MockClock }
/// # impl matroska_testkit::Harness for MemoryHarness {
/// #     type Store = MemoryStore;
/// #     async fn store(&self) -> MemoryStore { MemoryStore::builder().clock(self.clock.clone()).build() }
/// #     async fn reopen(&self, store: &MemoryStore) -> MemoryStore { store.clone() }
/// #     async fn advance(&self, _: &MemoryStore, by: Duration) { self.clock.advance(by) }
/// #     async fn lose_index(&self, store: &MemoryStore, tag: &Tag) { store.simulate_index_loss(tag) }
/// #     async fn cleanup(&self) {}
/// #     async fn small_store(&self) -> MemoryStore { MemoryStore::builder().clock(self.clock.clone()).build() }
/// #     async fn housekeep(&self, store: &MemoryStore) { store.run_pending_tasks() }
/// # }
/// matroska_testkit::run(
///     async { Some(MemoryHarness { clock: MockClock::new() }) },
///     |h: Arc<MemoryHarness>| async move { matroska_testkit::cases::basic::put_then_get(&*h).await },
/// );
/// ```
#[allow(clippy::expect_used)] // A test runner: failing loudly is its job.
pub fn run<H, M, F, Fut>(make: M, case: F)
where
    H: Harness,
    M: Future<Output = Option<H>>,
    F: FnOnce(Arc<H>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the test runtime must build");
    runtime.block_on(async {
        let Some(harness) = make.await else {
            return;
        };
        let harness = Arc::new(harness);
        let task = tokio::spawn(case(Arc::clone(&harness)));
        let limit = case_timeout();
        let outcome = tokio::time::timeout(limit, task).await;
        AssertUnwindSafe(harness.cleanup())
            .catch_unwind()
            .await
            .unwrap_or_else(|_| eprintln!("warning: harness cleanup panicked"));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(join)) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Ok(Err(join)) => panic!("the case was cancelled: {join}"),
            Err(elapsed) => panic!("the case did not finish within {limit:?} ({elapsed})"),
        }
    });
}

/// Reads a server URL for store tests from the environment at run time.
///
/// Returns `None` (and prints why) when it is unset, so that `cargo test` on a machine without
/// servers skips those tests; but when `MATROSKA_TEST_REQUIRE_SERVERS` or `CI` is set, a missing
/// URL fails the test: CI never skips silently. `./scripts/test` starts private servers and sets
/// both.
///
/// # Panics
///
/// When the URL is missing and servers are required.
///
/// # Examples
///
/// ```
/// if let Some(url) = matroska_testkit::server_url("MATROSKA_TEST_REDIS_URL") {
///     println!("testing against {url}");
/// }
/// ```
pub fn server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let required = ["MATROSKA_TEST_REQUIRE_SERVERS", "CI"]
                .iter()
                .any(|v| std::env::var(v).is_ok_and(|x| !x.is_empty() && x != "0" && x != "false"));
            assert!(
                !required,
                "{var} is not set, and servers are required (MATROSKA_TEST_REQUIRE_SERVERS or CI is set); \
                 run ./scripts/test, which starts private servers"
            );
            eprintln!("skipped: set {var} (or run ./scripts/test) to run this test");
            None
        }
    }
}
