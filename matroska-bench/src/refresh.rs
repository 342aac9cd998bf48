//! `refresh_ahead`: what refresh ahead costs on a hit and what it removes (reads that wait for a
//! loader), on `MemoryStore` and on Redis.
//!
//! Each row's `ours_ns`/`baseline_ns`/`ratio` compare a hit of [`Cache::fetch_eager`] on a
//! refresh-enabled entry (not yet due) with a plain [`Cache::fetch`] hit, interleaved medians as
//! every row (target 1.1). The extra fields describe a workload run after it, in one mode:
//! `KEYS` keys with a short TTL, readers reading them round-robin without pause for `PERIODS`
//! TTLs after a warm-up that loads every key, a loader that sleeps `LOADER_DELAY`:
//!
//! - `mode`: `on` (refresh point at 0.8 of the TTL, reads through `fetch_eager`) or `off` (plain
//!   read-through with `fetch`: the baseline that shows the waits refresh ahead removes);
//! - `caches`: caches sharing the store, each on its own connection (Redis: 2 shows the lease);
//! - `reads`, `reads_waiting` (reads that did not hit: they waited for a loader; target 0 with
//!   refresh ahead), `loads_per_key_per_ttl` (loader calls in the measured time, per key and
//!   TTL). With the refresh point at a fraction `f` of the TTL a key is loaded about every `f`
//!   TTLs, so `on` is near `1 / f` (1.25), not below 1: a refreshed value lives one TTL from its
//!   own load, never longer. `loads_per_key_per_interval` divides by the refresh interval
//!   instead (target at most 1.0: one refresh per key per interval, also with two caches).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use matroska_core::{Cache, Loaded, MemoryStore, Store};
use serde_json::{Map, Value, json};

use crate::Result;
use crate::harness::{Plan, interleave, ns_per_op};
use crate::report::Row;

/// The operation's name.
pub(crate) const OP: &str = "refresh_ahead";
/// Keys of the workload.
const KEYS: usize = 100;
/// Keys read per sample of the hit measurement.
const HIT_KEYS: u32 = 500;
/// Reader tasks of the workload.
const READERS: usize = 4;
/// TTLs measured after the warm-up.
const PERIODS: u32 = 5;
/// The loader's delay.
const LOADER_DELAY: Duration = Duration::from_millis(10);
/// The refresh point, as a fraction of the TTL.
const FRACTION: f64 = 0.8;

/// What a workload run measured.
struct Outcome {
    reads: u64,
    waiting: u64,
    loads: u64,
}

fn key(i: usize) -> String {
    format!("refresh:{i}")
}

/// What the bench's loader returns.
type Load = std::pin::Pin<
    Box<dyn Future<Output = std::result::Result<Loaded<u64>, std::io::Error>> + Send>,
>;

/// A loader that sleeps, then counts and returns a value.
fn loader(loads: &Arc<AtomicU64>) -> impl FnOnce() -> Load + Send + 'static {
    let loads = Arc::clone(loads);
    move || {
        Box::pin(async move {
            tokio::time::sleep(LOADER_DELAY).await;
            let n = loads.fetch_add(1, Ordering::Relaxed);
            Ok(Loaded::new(n))
        })
    }
}

/// Runs the workload on `caches` (reader `r` uses cache `r % caches.len()`).
async fn workload<S: Store + Clone>(
    caches: &[Cache<S>],
    ttl: Duration,
    eager: bool,
) -> Result<Outcome> {
    let loads = Arc::new(AtomicU64::new(0));
    // Warm-up: every key loaded at once.
    let warm = (0..KEYS).map(|i| {
        let cache = caches[0].clone();
        let load = loader(&loads);
        async move { cache.fetch_eager(key(i), load).await.map(|_| ()) }
    });
    for done in futures::future::join_all(warm).await {
        done?;
    }
    let before = loads.load(Ordering::Relaxed);
    let deadline = Instant::now() + ttl * PERIODS;
    let mut readers = Vec::new();
    for r in 0..READERS {
        let cache = caches[r % caches.len()].clone();
        let loads = Arc::clone(&loads);
        readers.push(tokio::spawn(async move {
            let (mut reads, mut waiting) = (0_u64, 0_u64);
            let mut i = r * KEYS / READERS;
            while Instant::now() < deadline {
                let load = loader(&loads);
                let fetched = if eager {
                    cache.fetch_eager(key(i), load).await?
                } else {
                    cache.fetch(key(i), load).await?
                };
                reads += 1;
                if !fetched.is_hit() {
                    waiting += 1;
                }
                i = (i + 1) % KEYS;
                tokio::task::yield_now().await;
            }
            Ok::<_, matroska_core::Error>((reads, waiting))
        }));
    }
    let (mut reads, mut waiting) = (0, 0);
    for reader in readers {
        let (r, w) = reader.await??;
        reads += r;
        waiting += w;
    }
    Ok(Outcome {
        reads,
        waiting,
        loads: loads.load(Ordering::Relaxed) - before,
    })
}

/// The hit cost: `fetch_eager` on a refresh-enabled entry vs `fetch` on a plain one.
async fn hit_ratio<S: Store + Clone>(plan: Plan<'_>, store: &S) -> Result<(f64, f64)> {
    let eager = Cache::builder(store.clone())
        .default_ttl(Duration::from_secs(3600))
        .refresh_ahead(FRACTION)
        .build();
    let plain = Cache::builder(store.clone())
        .default_ttl(Duration::from_secs(3600))
        .build();
    let hit_key = |side: &str, i: u32| format!("hit:{side}:{i}");
    for i in 0..HIT_KEYS {
        eager
            .fetch(hit_key("eager", i), || async {
                Ok::<_, std::io::Error>(Loaded::new(u64::from(i)))
            })
            .await?;
        plain
            .fetch(hit_key("plain", i), || async {
                Ok::<_, std::io::Error>(Loaded::new(u64::from(i)))
            })
            .await?;
    }
    let never = || async { Err::<Loaded<u64>, _>(std::io::Error::other("a hit was expected")) };
    let m = interleave(
        plan,
        async || {
            let start = Instant::now();
            for i in 0..HIT_KEYS {
                eager.fetch_eager(hit_key("eager", i), never).await?;
            }
            Ok(ns_per_op(start.elapsed(), HIT_KEYS))
        },
        async || {
            let start = Instant::now();
            for i in 0..HIT_KEYS {
                plain.fetch(hit_key("plain", i), never).await?;
            }
            Ok(ns_per_op(start.elapsed(), HIT_KEYS))
        },
    )
    .await?;
    Ok((m.ours_ns, m.baseline_ns))
}

/// One row per workload run, all with the hit medians.
#[allow(clippy::cast_precision_loss)] // Counts far below 2^52.
fn rows(
    store: &'static str,
    (ours, base): (f64, f64),
    ttl: Duration,
    runs: Vec<(&'static str, usize, Outcome)>,
) -> Vec<Row> {
    runs.into_iter()
        .map(|(mode, caches, o)| {
            let keys_ttls = KEYS as f64 * f64::from(PERIODS);
            let per_ttl = o.loads as f64 / keys_ttls;
            let interval = if mode == "on" { FRACTION } else { 1.0 };
            let mut extra = Map::new();
            extra.insert("mode".into(), json!(mode));
            extra.insert("caches".into(), json!(caches));
            extra.insert("ttl_ms".into(), json!(ttl.as_millis()));
            extra.insert("reads".into(), json!(o.reads));
            extra.insert("reads_waiting".into(), json!(o.waiting));
            extra.insert(
                "loads_per_key_per_ttl".into(),
                json!((per_ttl * 1000.0).round() / 1000.0),
            );
            extra.insert(
                "loads_per_key_per_interval".into(),
                json!((per_ttl * interval * 1000.0).round() / 1000.0),
            );
            Row::new(store, OP, "plain_hit", ours, base)
                .target(1.1)
                .extra(Value::Object(extra))
        })
        .collect()
}

/// Runs `f` on a runtime of its own with worker threads (background refreshes run beside the
/// readers), from the bench's current-thread runtime.
async fn on_worker_runtime<T: Send + 'static>(
    f: impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = Result<T>>>> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        runtime.block_on(f())
    })
    .await?
}

/// The rows of `refresh_ahead` on `MemoryStore`.
pub(crate) async fn run_memory(plan: Plan<'_>) -> Result<Vec<Row>> {
    let (rounds, warmup) = (plan.rounds, plan.warmup);
    on_worker_runtime(move || {
        Box::pin(async move {
            let plan = Plan {
                warmup,
                rounds,
                only: &[],
            };
            let ttl = Duration::from_millis(400);
            let hits = hit_ratio(plan, &MemoryStore::new()).await?;
            let mut runs = Vec::new();
            for (mode, eager) in [("on", true), ("off", false)] {
                let builder = Cache::builder(MemoryStore::new()).default_ttl(ttl);
                let cache = if eager {
                    builder.refresh_ahead(FRACTION)
                } else {
                    builder
                }
                .build();
                runs.push((mode, 1, workload(&[cache], ttl, eager).await?));
            }
            Ok(rows("memory", hits, ttl, runs))
        })
    })
    .await
}

/// The rows of `refresh_ahead` on Redis: one cache, two caches on two connections, and off.
pub(crate) async fn run_redis(plan: Plan<'_>, url: &str) -> Result<Vec<Row>> {
    let (rounds, warmup, url) = (plan.rounds, plan.warmup, url.to_owned());
    on_worker_runtime(move || {
        Box::pin(async move {
            let plan = Plan {
                warmup,
                rounds,
                only: &[],
            };
            let ttl = Duration::from_secs(1);
            let prefix =
                |what: &str| format!("matroska-bench-refresh-{what}-{}", std::process::id());
            let connect = |prefix: String| {
                let url = url.clone();
                async move {
                    matroska_redis::RedisStore::builder(url.as_str())
                        .prefix(prefix)
                        .build()
                        .await
                }
            };
            let hit_store = connect(prefix("hit")).await?;
            let hits = hit_ratio(plan, &hit_store).await;
            hit_store.remove_namespace().await?;
            let hits = hits?;
            let mut runs = Vec::new();
            for (mode, caches, eager) in [("on", 1, true), ("on", 2, true), ("off", 1, false)] {
                let name = format!("{mode}{caches}");
                let mut handles = Vec::new();
                for _ in 0..caches {
                    handles.push(connect(prefix(&name)).await?);
                }
                let built: Vec<_> = handles
                    .iter()
                    .map(|store| {
                        let builder = Cache::builder(store.clone()).default_ttl(ttl);
                        if eager {
                            builder.refresh_ahead(FRACTION)
                        } else {
                            builder
                        }
                        .build()
                    })
                    .collect();
                let outcome = workload(&built, ttl, eager).await;
                handles[0].remove_namespace().await?;
                runs.push((mode, caches, outcome?));
            }
            Ok(rows("redis", hits, ttl, runs))
        })
    })
    .await
}
