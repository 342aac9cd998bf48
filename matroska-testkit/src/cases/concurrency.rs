//! Concurrency: single-flight loads, failing and cancelled loaders, and randomized races against
//! a reference model.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use matroska_core::{Cache, Dep, Error, Loaded, Store};
use tokio::sync::watch;

use crate::Harness;
use crate::support::{Rng, eventually};

const WAIT: Duration = Duration::from_secs(10);

/// A loader's error.
#[derive(Debug, thiserror::Error)]
#[error("the database is down")]
struct DatabaseDown;

/// Waits until `n` callers are waiting on another caller's load.
async fn waiting<S: Store>(cache: &Cache<S>, n: u64) {
    eventually(WAIT, "callers joined the load", || async {
        cache.stats().waits >= n
    })
    .await;
}

/// Concurrent callers of one key share one loader call.
pub async fn single_flight_shares_one_load<H: Harness>(h: &H) {
    let cache = Cache::new(h.store().await);
    let (go, gate) = watch::channel(false);
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (cache, mut gate, calls) = (cache.clone(), gate.clone(), Arc::clone(&calls));
            tokio::spawn(async move {
                cache
                    .get_or_insert_with("flight:k", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let _ = gate.wait_for(|open| *open).await;
                        Ok::<_, Infallible>(Loaded::new(42_u32).dep(Dep::tag("t")))
                    })
                    .await
            })
        })
        .collect();
    waiting(&cache, 7).await;
    go.send_replace(true);
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 42);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one loader call for 8 callers"
    );
    // Every other caller waited. Each took the shared value, or (where the store's order moved
    // between the misses, as PostgreSQL's does with any commit) read the stored one after it.
    let stats = cache.stats();
    assert_eq!((stats.loads, stats.waits), (1, 7), "{stats:?}");
    assert_eq!(stats.coalesced + stats.hits, 7, "{stats:?}");
    assert_eq!(stats.misses, 1 + stats.coalesced, "{stats:?}");
    assert_eq!(cache.get::<u32>("flight:k").await.unwrap(), Some(42));
}

/// A loader's error reaches every caller that shared the load; the next call loads again.
pub async fn loader_error_reaches_every_waiter_and_the_next_call_retries<H: Harness>(h: &H) {
    let cache = Cache::new(h.store().await);
    let (go, gate) = watch::channel(false);
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (cache, mut gate) = (cache.clone(), gate.clone());
            tokio::spawn(async move {
                cache
                    .get_or_insert_with("flight:err", || async move {
                        let _ = gate.wait_for(|open| *open).await;
                        Err::<Loaded<u32>, _>(DatabaseDown)
                    })
                    .await
            })
        })
        .collect();
    waiting(&cache, 3).await;
    go.send_replace(true);
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert!(err.loader_error::<DatabaseDown>().is_some(), "{err:?}");
    }
    assert_eq!(cache.stats().loads, 1);
    assert_eq!(
        cache.get::<u32>("flight:err").await.unwrap(),
        None,
        "errors are not cached"
    );
    let v = cache
        .get_or_insert_with("flight:err", || async {
            Ok::<_, Infallible>(Loaded::new(7_u32))
        })
        .await
        .unwrap();
    assert_eq!(v, 7);
}

/// A loader that panics: its caller panics, the callers waiting on it get
/// `Error::LoaderPanicked`, and the next call loads again.
pub async fn loader_panic_reaches_every_waiter_and_the_next_call_retries<H: Harness>(h: &H) {
    let cache = Cache::new(h.store().await);
    let (go, mut gate) = watch::channel(false);
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_insert_with("flight:panic", || async move {
                    let _ = gate.wait_for(|open| *open).await;
                    panic!("loader panicked on purpose (this panic is expected by the test)");
                    #[allow(unreachable_code)]
                    Ok::<_, Infallible>(Loaded::new(0_u32))
                })
                .await
        })
    };
    // The leader must hold the flight before the waiter joins it.
    eventually(WAIT, "the leader started", || async {
        cache.stats().loads == 1
    })
    .await;
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_insert_with("flight:panic", || async {
                    Ok::<_, Infallible>(Loaded::new(1_u32))
                })
                .await
        })
    };
    waiting(&cache, 1).await;
    go.send_replace(true);
    assert!(leader.await.unwrap_err().is_panic());
    assert!(matches!(waiter.await.unwrap(), Err(Error::LoaderPanicked)));
    let v = cache
        .get_or_insert_with("flight:panic", || async {
            Ok::<_, Infallible>(Loaded::new(2_u32))
        })
        .await
        .unwrap();
    assert_eq!(v, 2);
}

/// When the caller leading a load is cancelled, a waiting caller takes over and loads itself.
pub async fn cancelled_leader_hands_over_to_a_waiter<H: Harness>(h: &H) {
    let cache = Cache::new(h.store().await);
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_insert_with("flight:cancel", || {
                    futures::future::pending::<Result<Loaded<u32>, Infallible>>()
                })
                .await
        })
    };
    eventually(WAIT, "the leader started", || async {
        cache.stats().loads == 1
    })
    .await;
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_insert_with("flight:cancel", || async {
                    Ok::<_, Infallible>(Loaded::new(5_u32))
                })
                .await
        })
    };
    waiting(&cache, 1).await;
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    assert_eq!(waiter.await.unwrap().unwrap(), 5);
    assert_eq!(cache.get::<u32>("flight:cancel").await.unwrap(), Some(5));
}

/// The reference model of the randomized cases: a database of versioned rows.
struct Model {
    /// The current version of each row (the database).
    version: Vec<AtomicU64>,
    /// The highest version of each row whose invalidation has returned: no read that starts
    /// later may see an older version.
    committed: Vec<AtomicU64>,
}

const ROWS: usize = 8;
const KEYS: usize = 6;

/// The rows key `k` depends on (2 or 3 rows, fixed per key).
fn rows_of(k: usize) -> Vec<usize> {
    let mut rows = vec![k % ROWS, (k * 3 + 1) % ROWS];
    if k.is_multiple_of(2) {
        rows.push((k * 5 + 2) % ROWS);
    }
    rows.sort_unstable();
    rows.dedup();
    rows
}

/// How many times a randomized case may run before it gives up on racing.
const RACE_ATTEMPTS: usize = 5;

/// What the handles' caches did in one run of the race, summed.
#[derive(Debug, Default)]
struct Raced {
    hits: u64,
    misses: u64,
    fills_rejected: u64,
    coalesced: u64,
    shares_refused: u64,
}

impl Raced {
    /// Whether the run reached every path the race is about: a value served from the store (so
    /// a stale entry could have been), a fill refused because an invalidation raced its load, and
    /// a value shared by single flight (so a stale load could have been handed on).
    fn raced(&self) -> bool {
        self.hits > 0 && self.fills_rejected > 0 && self.coalesced > 0
    }
}

/// Runs the race with fresh stores until a run reached every path it is about (at most
/// [`RACE_ATTEMPTS`] runs, each from the next seed of `MATROSKA_TEST_SEED`'s generator).
async fn race_until_it_raced<H: Harness>(h: &H, handles: usize) {
    let mut seeds = Rng::from_env();
    let mut runs = Vec::new();
    for attempt in 1..=RACE_ATTEMPTS {
        let seed = seeds.next_u64();
        let raced = race(h, seed, handles).await;
        if raced.raced() {
            return;
        }
        eprintln!("race run {attempt} (seed {seed}) did not reach every path: {raced:?}");
        runs.push(raced);
    }
    panic!(
        "in {RACE_ATTEMPTS} runs the race never reached every path it checks (a hit, a refused \
         fill and a shared load in one run): {runs:?}"
    );
}

/// Readers fill and read through caches on two handles of one namespace (two processes) while
/// writers bump row versions and invalidate them; every read is checked against the model.
async fn race<H: Harness>(h: &H, seed: u64, handles: usize) -> Raced {
    let mut seed_rng = Rng::new(seed);
    let store = h.store().await;
    let mut caches = vec![Cache::new(store.clone())];
    for _ in 1..handles {
        caches.push(Cache::new(h.reopen(&store).await));
    }
    let model = Arc::new(Model {
        version: (0..ROWS).map(|_| AtomicU64::new(0)).collect(),
        committed: (0..ROWS).map(|_| AtomicU64::new(0)).collect(),
    });
    let mut tasks = Vec::new();
    for t in 0..6_usize {
        let cache = caches[t % caches.len()].clone();
        let model = Arc::clone(&model);
        let mut rng = Rng::new(seed_rng.next_u64());
        let writer = t < 2;
        tasks.push(tokio::spawn(async move {
            for _ in 0..150 {
                if writer {
                    write(&cache, &model, &mut rng).await;
                } else {
                    read(&cache, &model, &mut rng, seed).await;
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut raced = Raced::default();
    for stats in caches.iter().map(Cache::stats) {
        raced.hits += stats.hits;
        raced.misses += stats.misses;
        raced.fills_rejected += stats.fills_rejected;
        raced.coalesced += stats.coalesced;
        raced.shares_refused += stats.shares_refused;
    }
    raced
}

async fn write<S: Store>(cache: &Cache<S>, model: &Model, rng: &mut Rng) {
    let row = rng.below(ROWS);
    let v = model.version[row].fetch_add(1, Ordering::SeqCst) + 1;
    for _ in 0..rng.below(3) {
        tokio::task::yield_now().await;
    }
    cache.invalidate([Dep::id("row", row)]).await.unwrap();
    model.committed[row].fetch_max(v, Ordering::SeqCst);
    if rng.below(10) == 0 {
        cache
            .delete(format!("race:{}", rng.below(KEYS)))
            .await
            .unwrap();
    }
}

async fn read<S: Store>(cache: &Cache<S>, model: &Model, rng: &mut Rng, seed: u64) {
    let k = rng.below(KEYS);
    let rows = rows_of(k);
    let floor: Vec<u64> = rows
        .iter()
        .map(|r| model.committed[*r].load(Ordering::SeqCst))
        .collect();
    let key = format!("race:{k}");
    let yields = 1 + rng.below(4);
    let seen: Vec<u64> = if rng.below(4) == 0 {
        match cache.get::<Vec<u64>>(&key).await.unwrap() {
            Some(seen) => seen,
            None => return,
        }
    } else {
        cache
            .get_or_insert_with(&key, || async {
                let mut seen = Vec::new();
                for r in &rows {
                    seen.push(model.version[*r].load(Ordering::SeqCst));
                    for _ in 0..yields {
                        tokio::task::yield_now().await;
                    }
                }
                let deps = rows.iter().map(|r| Dep::id("row", *r));
                Ok::<_, Infallible>(Loaded::new(seen).deps(deps))
            })
            .await
            .unwrap()
    };
    for ((row, floor), seen) in rows.iter().zip(&floor).zip(&seen) {
        assert!(
            seen >= floor,
            "stale read of {key}: row {row} at version {seen}, but version {floor} was \
             invalidated before the read began (run seed {seed})"
        );
    }
}

/// Randomized: tasks fill, read and invalidate concurrently through one cache; no read returns
/// a row version older than one whose invalidation finished before the read began.
///
/// The run must show that it raced: values served from the store, fills refused because an
/// invalidation overtook their load, and loads shared by single flight (else it runs again with
/// the next seed, a bounded number of times). `MATROSKA_TEST_SEED` replays the operations (the
/// interleaving is the scheduler's).
pub async fn randomized_fills_reads_and_invalidations_never_read_stale<H: Harness>(h: &H) {
    race_until_it_raced(h, 1).await;
}

/// Randomized, across two handles of one namespace (two processes with their own
/// single-flight maps): no stale read either.
/// It must show that it raced, as above.
pub async fn randomized_race_across_two_handles_never_reads_stale<H: Harness>(h: &H) {
    race_until_it_raced(h, 2).await;
}
