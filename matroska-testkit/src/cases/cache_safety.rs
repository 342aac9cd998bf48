//! The safety rules of the [`Cache`] front end, made deterministic with a scripted store
//! ([`Faulty`]) around the store under test: when a single-flight waiter may take another
//! caller's load, "no fill token, no store", and fail-open reads across a store recovery.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use matroska_core::{Cache, Dep, Fetched, Loaded, Origin, Result, Store};
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::Harness;
use crate::support::{Faulty, Op, eventually, hit, key};

const WAIT: Duration = Duration::from_secs(10);
const KEY: &str = "safety:k";

/// The row the loaders read: the database.
#[derive(Clone, Default)]
struct Row(Arc<Mutex<String>>);

impl Row {
    fn new(value: &str) -> Self {
        Self(Arc::new(Mutex::new(value.to_owned())))
    }

    fn read(&self) -> String {
        self.0.lock().clone()
    }

    fn write(&self, value: &str) {
        value.clone_into(&mut self.0.lock());
    }
}

fn dep() -> Dep {
    Dep::id("row", 1)
}

/// A `fetch` whose loader reads the row, says so, and then waits for the test's release.
struct Held {
    read: oneshot::Receiver<()>,
    release: oneshot::Sender<()>,
    task: JoinHandle<Result<Fetched<String>>>,
}

fn held_fetch<S: Store>(cache: &Cache<S>, row: &Row) -> Held {
    let (read_tx, read) = oneshot::channel();
    let (release, go) = oneshot::channel::<()>();
    let (cache, row) = (cache.clone(), row.clone());
    let task = tokio::spawn(async move {
        cache
            .fetch(KEY, || async move {
                let value = row.read();
                let _ = read_tx.send(());
                let _ = go.await;
                Ok::<_, Infallible>(Loaded::new(value).dep(dep()))
            })
            .await
    });
    Held {
        read,
        release,
        task,
    }
}

/// A `fetch` whose loader reads the row and returns at once.
fn free_fetch<S: Store>(cache: &Cache<S>, row: &Row) -> JoinHandle<Result<Fetched<String>>> {
    let (cache, row) = (cache.clone(), row.clone());
    tokio::spawn(async move {
        cache
            .fetch(KEY, || async move {
                Ok::<_, Infallible>(Loaded::new(row.read()).dep(dep()))
            })
            .await
    })
}

/// The leader's load read `v1` and is held; the row becomes `v2` and its invalidation returns;
/// then a second caller starts. Returns the leader and the second caller, once the second caller
/// has either joined the leader's flight or started a load of its own.
async fn leader_held_across_an_invalidation<S: Store>(
    cache: &Cache<S>,
    row: &Row,
    before_second: impl FnOnce(),
) -> (Held, JoinHandle<Result<Fetched<String>>>) {
    let mut leader = held_fetch(cache, row);
    (&mut leader.read).await.unwrap();
    row.write("v2");
    cache.invalidate([dep()]).await.unwrap();
    before_second();
    let second = free_fetch(cache, row);
    eventually(WAIT, "the second caller joined or loaded", || async {
        let stats = cache.stats();
        stats.loads >= 2 || stats.waits >= 1
    })
    .await;
    (leader, second)
}

/// A caller that starts after an invalidation returned never gets a value loaded before it,
/// even when a load of the same key that began before the invalidation is still in flight: the
/// store's fill tokens order the two misses, and the later one loads again.
pub async fn a_waiter_whose_miss_follows_an_invalidation_loads_again<H: Harness>(h: &H) {
    let cache = Cache::new(h.store().await);
    let row = Row::new("v1");
    let (leader, second) = leader_held_across_an_invalidation(&cache, &row, || {}).await;
    leader.release.send(()).unwrap();
    let second = second.await.unwrap().unwrap();
    assert_eq!(
        second.value, "v2",
        "a caller that started after the invalidation got the load that began before it"
    );
    let first = leader.task.await.unwrap().unwrap();
    assert_eq!(first.value, "v1", "the leader gets what it loaded");
    assert_eq!(first.origin, Origin::Loaded { stored: false });
    assert_eq!(
        cache.get::<String>(KEY).await.unwrap().as_deref(),
        Some("v2")
    );
}

/// The same when the leader has no fill token (its read failed and the cache failed open): the
/// order of the two misses is unknown, so the later caller must not take the leader's value.
pub async fn a_waiter_does_not_share_a_load_whose_leader_had_no_token<H: Harness>(h: &H) {
    let store = Faulty::new(h.store().await);
    let cache = Cache::builder(store.clone()).fail_open(true).build();
    let row = Row::new("v1");
    store.fail(Op::Get, 1);
    let (leader, second) = leader_held_across_an_invalidation(&cache, &row, || {}).await;
    leader.release.send(()).unwrap();
    let second = second.await.unwrap().unwrap();
    assert_eq!(
        second.value, "v2",
        "a caller that started after the invalidation shared a load of unknown order \
         (the leader had no fill token) that began before it"
    );
    let first = leader.task.await.unwrap().unwrap();
    assert_eq!(first.value, "v1");
    assert_eq!(first.origin, Origin::Loaded { stored: false });
    assert_ne!(
        cache.get::<String>(KEY).await.unwrap().as_deref(),
        Some("v1"),
        "the load without a token was stored"
    );
}

/// The same when the later caller has no fill token (its own read failed open): it cannot tell
/// that its miss came after the invalidation, so it must not take the leader's value.
pub async fn a_waiter_without_a_token_does_not_share_an_older_load<H: Harness>(h: &H) {
    let store = Faulty::new(h.store().await);
    let cache = Cache::builder(store.clone()).fail_open(true).build();
    let row = Row::new("v1");
    let (leader, second) =
        leader_held_across_an_invalidation(&cache, &row, || store.fail(Op::Get, 1)).await;
    leader.release.send(()).unwrap();
    let second = second.await.unwrap().unwrap();
    assert_eq!(
        second.value, "v2",
        "a caller without a fill token, started after the invalidation, shared a load that \
         began before it"
    );
    assert_eq!(second.origin, Origin::Loaded { stored: false });
    assert_eq!(leader.task.await.unwrap().unwrap().value, "v1");
    assert_eq!(cache.get::<String>(KEY).await.unwrap(), None);
}

/// No fill token, no store: a load whose read failed (failing open) is returned to its caller but
/// never stored, since nothing orders it against the invalidations that ran meanwhile.
pub async fn a_load_without_a_fill_token_is_returned_but_never_stored<H: Harness>(h: &H) {
    let store = Faulty::new(h.store().await);
    let cache = Cache::builder(store.clone()).fail_open(true).build();
    let row = Row::new("v1");
    store.fail(Op::Get, 1);
    let fetched = free_fetch(&cache, &row).await.unwrap().unwrap();
    assert_eq!(fetched.value, "v1");
    assert_eq!(fetched.origin, Origin::Loaded { stored: false });
    assert_eq!(
        store.calls(Op::Put),
        0,
        "a fill without a token reached the store"
    );
    assert_eq!(hit(store.inner(), &key(KEY)).await, None);
    // With the store readable again, the next load is stored as usual.
    let fetched = free_fetch(&cache, &row).await.unwrap().unwrap();
    assert_eq!(fetched.origin, Origin::Loaded { stored: true });
    assert!(hit(store.inner(), &key(KEY)).await.is_some());
}

/// Fail-open across a recovery: the store is down when a load begins, comes back, and a write is
/// invalidated while the load runs. The load's value goes to its caller but is not stored, and
/// later reads see the new row.
pub async fn fail_open_across_a_store_recovery_never_stores_a_stale_fill<H: Harness>(h: &H) {
    let store = Faulty::new(h.store().await);
    let cache = Cache::builder(store.clone()).fail_open(true).build();
    let row = Row::new("v1");
    store.down();
    let mut leader = held_fetch(&cache, &row);
    (&mut leader.read).await.unwrap();
    store.up();
    row.write("v2");
    cache.invalidate([dep()]).await.unwrap();
    leader.release.send(()).unwrap();
    let first = leader.task.await.unwrap().unwrap();
    assert_eq!(first.value, "v1", "the caller gets what it loaded");
    assert_eq!(first.origin, Origin::Loaded { stored: false });
    assert_eq!(
        store.calls(Op::Put),
        0,
        "a fill without a token reached the store"
    );
    assert_eq!(cache.get::<String>(KEY).await.unwrap(), None);
    let next = free_fetch(&cache, &row).await.unwrap().unwrap();
    assert_eq!(
        (next.value.as_str(), next.origin),
        ("v2", Origin::Loaded { stored: true })
    );
    assert_eq!(
        cache.get::<String>(KEY).await.unwrap().as_deref(),
        Some("v2")
    );
}

/// The counters count calls as the application sees them: one hit or one miss per read, a value
/// shared only when one was, whatever the cache did inside.
pub async fn counters_count_calls_as_the_application_sees_them<H: Harness>(h: &H) {
    let cache = Cache::new(h.store().await);
    let row = Row::new("v1");
    // A second caller that cannot take the leader's load (an invalidation lies between the two
    // misses) loads itself.
    let (leader, second) = leader_held_across_an_invalidation(&cache, &row, || {}).await;
    leader.release.send(()).unwrap();
    assert_eq!(second.await.unwrap().unwrap().value, "v2");
    leader.task.await.unwrap().unwrap();
    assert_eq!(
        cache.get::<String>(KEY).await.unwrap().as_deref(),
        Some("v2")
    );
    // Three calls: two fetches that missed and loaded, one get that hit.
    let stats = cache.stats();
    assert_eq!(stats.loads, 2, "{stats:?}");
    assert_eq!(
        stats.coalesced, 0,
        "no call got another caller's value: {stats:?}"
    );
    // The second caller waited for the leader's load, did not take it, and read again.
    assert_eq!((stats.waits, stats.shares_refused), (1, 1), "{stats:?}");
    assert_eq!((stats.hits, stats.misses), (1, 2), "{stats:?}");
    assert_eq!((stats.fills, stats.fills_rejected), (1, 1), "{stats:?}");
    assert!((stats.hit_rate() - 1.0 / 3.0).abs() < 1e-9, "{stats:?}");

    // A caller that waits for the leader's load: one wait and no load of its own. It takes the
    // value (one shared value, a miss), or, where the store's order moved between the two misses
    // without an invalidation of these tags (PostgreSQL's does with any commit), reads the stored
    // value after the leader (a hit).
    cache.delete(KEY).await.unwrap();
    let mut leader = held_fetch(&cache, &row);
    (&mut leader.read).await.unwrap();
    let second = free_fetch(&cache, &row);
    eventually(WAIT, "the second caller waits", || async {
        cache.stats().waits >= 2
    })
    .await;
    leader.release.send(()).unwrap();
    let second = second.await.unwrap().unwrap();
    let first = leader.task.await.unwrap().unwrap();
    assert_eq!(first.origin, Origin::Loaded { stored: true });
    assert_eq!(second.value, "v2");
    let stats = cache.stats();
    assert_eq!(
        (stats.loads, stats.waits, stats.fills),
        (3, 2, 2),
        "{stats:?}"
    );
    match second.origin {
        Origin::Shared => {
            assert_eq!((stats.coalesced, stats.shares_refused), (1, 1), "{stats:?}");
            assert_eq!((stats.hits, stats.misses), (1, 4), "{stats:?}");
        }
        Origin::Cache => {
            assert_eq!((stats.coalesced, stats.shares_refused), (0, 2), "{stats:?}");
            assert_eq!((stats.hits, stats.misses), (2, 3), "{stats:?}");
        }
        other => panic!("the second caller loaded ({other:?}) instead of waiting: {stats:?}"),
    }
}
