//! Eviction under real memory pressure: private `redis-server`s with a small `maxmemory` and each
//! evicting policy. Whatever Redis evicts (entries, indexes, the namespace's metadata), no read
//! is ever stale and no fill from before an invalidation is stored.

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::time::Duration;

use matroska_core::store::{Lookup, PutOutcome, Store};
use matroska_core::{Bytes, Dep};
use matroska_redis::RedisStore;
use matroska_testkit::support::{bytes as v, hit, key, tag};
use redis::aio::MultiplexedConnection;

use crate::support::{PrivateRedis, put_many};

/// `INFO stats` field `evicted_keys`.
async fn evicted(conn: &mut MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("evicted_keys:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

/// Writes 8 kB filler keys (with a TTL of an hour: evictable under every policy) until Redis
/// has evicted at least `keys` keys. Writes refused for memory (nothing evictable left) are
/// counted as pressure too.
async fn pressure(conn: &mut MultiplexedConnection, keys: u64) {
    let filler = vec![b'f'; 8 * 1024];
    let start = evicted(conn).await;
    for i in 0..100_000_u64 {
        let written: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("filler:{i}"))
            .arg(&filler)
            .arg("PX")
            .arg(3_600_000)
            .query_async(conn)
            .await;
        if let Err(e) = written {
            assert_eq!(e.code(), Some("OOM"), "{e}");
        }
        if i % 16 == 0 && evicted(conn).await >= start + keys {
            return;
        }
    }
    panic!("Redis evicted fewer than {keys} keys");
}

/// A server whose memory fills up quickly, evicting with `policy`.
async fn tight_server(policy: &str) -> Option<PrivateRedis> {
    PrivateRedis::start(&[
        "--maxmemory",
        "3mb",
        "--maxmemory-policy",
        policy,
        "--maxmemory-samples",
        "10",
    ])
    .await
}

/// `volatile-ttl` evicts the keys closest to expiring first. A fill that started before an
/// invalidation is refused also after that pressure (before the fix, the tag's stamp was a key
/// with the shortest TTL around, evicted first, and the fill was stored and served).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stamp_evicted_after_its_invalidation_never_readmits_a_stale_fill() {
    let Some(server) = tight_server("volatile-ttl").await else {
        return;
    };
    let store = RedisStore::builder(server.url())
        .prefix("evict")
        .fill_window(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    let mut conn = support::raw(&server.url()).await;
    let t = tag(&Dep::id("article", 1));
    let Lookup::Miss(before) = store.get(&key("fill")).await.unwrap() else {
        panic!("expected a miss");
    };
    store.invalidate(std::slice::from_ref(&t)).await.unwrap();
    pressure(&mut conn, 50).await;
    let outcome = store
        .put(
            &key("fill"),
            v("stale"),
            std::slice::from_ref(&t),
            None,
            Some(&before),
        )
        .await;
    // Refused as stale, or (memory full) not written at all: never stored.
    if let Ok(outcome) = outcome {
        assert_eq!(
            outcome,
            PutOutcome::Stale,
            "a fill from before the invalidation"
        );
    }
    assert_eq!(hit(&store, &key("fill")).await, None);
}

/// Entries set aside by a large invalidation stay misses once the key holding their tag's stamp
/// is lost (deleted here, as an eviction would; real eviction cannot pick that key on demand),
/// also after the fill window (before the fix, a read found no stamp, re-indexed the entry and
/// served it for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_set_aside_stay_misses_after_their_stamp_is_lost() {
    let Some(mut s) = support::Scratch::new(4).await else {
        return;
    };
    let t = tag(&Dep::tag("hot"));
    put_many(&s.store, "hot", 40, std::slice::from_ref(&t), None).await;
    s.store
        .invalidate_deferred(std::slice::from_ref(&t))
        .await
        .unwrap();
    let lost: u64 = redis::cmd("DEL")
        .arg(support::stamp_holder(s.store.layout(), &t))
        .query_async(&mut s.conn)
        .await
        .unwrap();
    assert_eq!(lost, 1, "the key holding the stamp existed");
    for i in 0..40 {
        assert_eq!(
            hit(&s.store, &key(&format!("hot:{i}"))).await,
            None,
            "hot:{i} was set aside by the invalidation"
        );
    }
}

/// The policies Redis offers that evict (`noeviction` refuses writes instead).
const POLICIES: [&str; 7] = [
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
];
/// The server's memory limit in the randomized run: a few times what Redis needs empty, far less
/// than the load writes.
const MAXMEMORY: &str = "4mb";
const KEYS: usize = 200;
const TAGS: usize = 60;

/// A stored value: which key, which tags, and when its load began (the op counter at the put,
/// or at the miss whose token the fill presented).
struct Version {
    key: usize,
    tags: Vec<usize>,
    load: u64,
}

/// The reference model of the randomized run, and what it counted.
#[derive(Default)]
struct Model {
    versions: std::collections::HashMap<u64, Version>,
    /// Per key, the versions a read may return (more than one after a put that failed: it may
    /// or may not have been stored).
    allowed: Vec<Vec<u64>>,
    /// Per tag, the op counter when its last invalidation returned.
    invalidated: Vec<u64>,
    cleared: u64,
    next: u64,
    reads: u64,
    hits: u64,
    stale_reads: u64,
    stale_fills: u64,
    fills_refused: u64,
    errors: u64,
    /// The namespace generations seen in fill tokens (a lost metadata hash, or a clear, starts
    /// one).
    generations: std::collections::HashSet<String>,
}

impl Model {
    fn new() -> Self {
        Self {
            allowed: vec![Vec::new(); KEYS],
            invalidated: vec![0; TAGS],
            ..Self::default()
        }
    }

    /// Whether version `id`, read from `key`, is stale: not what the key holds, or loaded
    /// before an invalidation of one of its tags (or a clear) that has returned.
    fn stale(&self, key: usize, id: u64) -> bool {
        let Some(version) = self.versions.get(&id) else {
            return true;
        };
        version.key != key
            || !self.allowed[key].contains(&id)
            || self.cleared > version.load
            || version
                .tags
                .iter()
                .any(|&t| self.invalidated[t] > version.load)
    }
}

fn value_of(id: u64, len: usize) -> Bytes {
    let mut text = format!("{id:016x}");
    text.extend(std::iter::repeat_n('v', len.saturating_sub(16)));
    Bytes::from(text)
}

fn id_of(bytes: &[u8]) -> u64 {
    std::str::from_utf8(&bytes[..16])
        .ok()
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .unwrap_or(u64::MAX)
}

/// One randomized run against a fresh private server with `policy`; returns the model with its
/// counts and the server's eviction count.
#[allow(clippy::too_many_lines)]
async fn run_under_pressure(policy: &str, ops: u64, seed: u64) -> Option<(Model, u64)> {
    use matroska_testkit::support::Rng;

    let server =
        PrivateRedis::start(&["--maxmemory", MAXMEMORY, "--maxmemory-policy", policy]).await?;
    let store = RedisStore::builder(server.url())
        .prefix("pressure")
        .fill_window(Duration::from_secs(60))
        .reclaim_chunk(8)
        .build()
        .await
        .unwrap();
    let mut conn = support::raw(&server.url()).await;
    let tags: Vec<matroska_core::Tag> = (0..TAGS).map(|i| tag(&Dep::id("row", i))).collect();
    let keys: Vec<matroska_core::Key> = (0..KEYS).map(|i| key(&format!("k{i}"))).collect();
    let mut rng = Rng::new(seed);
    let mut m = Model::new();
    let filler = vec![b'f'; 8 * 1024];
    let mut fillers = 0_u64;
    for op in 1..=ops {
        // Keep the pressure on: filler keys (evictable under every policy).
        if op % 4 == 0 {
            fillers += 1;
            let _: redis::RedisResult<()> = redis::cmd("SET")
                .arg(format!("filler:{fillers}"))
                .arg(&filler)
                .arg("PX")
                .arg(3_600_000)
                .query_async(&mut conn)
                .await;
        }
        let k = rng.below(KEYS);
        let pick_tags = |rng: &mut Rng| {
            let mut picked: Vec<usize> = (0..=rng.below(3)).map(|_| rng.below(TAGS)).collect();
            picked.sort_unstable();
            picked.dedup();
            picked
        };
        let ttl = |rng: &mut Rng| (rng.below(10) < 7).then(|| Duration::from_secs(600));
        match rng.below(100) {
            // A put without a token.
            0..=24 => {
                let t = pick_tags(&mut rng);
                let id = m.next;
                m.next += 1;
                m.versions.insert(
                    id,
                    Version {
                        key: k,
                        tags: t.clone(),
                        load: op,
                    },
                );
                let entry_tags: Vec<_> = t.iter().map(|&i| tags[i].clone()).collect();
                let life = ttl(&mut rng);
                let value = value_of(id, 512 + rng.below(1024));
                if let Ok(outcome) = store.put(&keys[k], value, &entry_tags, life, None).await {
                    assert!(outcome.is_stored(), "a put without a token is stored");
                    m.allowed[k] = vec![id];
                } else {
                    // Not written, or written: either may be read.
                    m.errors += 1;
                    m.allowed[k].push(id);
                }
            }
            // A fill: a miss, maybe an invalidation of one of its tags and more pressure, the put
            // with the miss's token.
            25..=49 => {
                let Ok(Lookup::Miss(token)) = store.get(&keys[k]).await else {
                    continue;
                };
                m.generations
                    .insert(token.snapshot().unwrap_or_default().to_owned());
                let t = pick_tags(&mut rng);
                if rng.below(3) == 0 {
                    let victim = t[rng.below(t.len())];
                    if store.invalidate(&[tags[victim].clone()]).await.is_ok() {
                        m.invalidated[victim] = op;
                    } else {
                        m.errors += 1;
                    }
                    for _ in 0..4 {
                        fillers += 1;
                        let _: redis::RedisResult<()> = redis::cmd("SET")
                            .arg(format!("filler:{fillers}"))
                            .arg(&filler)
                            .arg("PX")
                            .arg(3_600_000)
                            .query_async(&mut conn)
                            .await;
                    }
                }
                let id = m.next;
                m.next += 1;
                // The load began at the miss: op - 1 orders it before this op's invalidation.
                m.versions.insert(
                    id,
                    Version {
                        key: k,
                        tags: t.clone(),
                        load: op - 1,
                    },
                );
                let entry_tags: Vec<_> = t.iter().map(|&i| tags[i].clone()).collect();
                let life = ttl(&mut rng);
                match store
                    .put(
                        &keys[k],
                        value_of(id, 512 + rng.below(1024)),
                        &entry_tags,
                        life,
                        Some(&token),
                    )
                    .await
                {
                    Ok(PutOutcome::Stored) => {
                        m.allowed[k] = vec![id];
                        if m.stale(k, id) {
                            m.stale_fills += 1;
                        }
                    }
                    Ok(PutOutcome::Stale) => m.fills_refused += 1,
                    Err(_) => {
                        m.errors += 1;
                        m.allowed[k].push(id);
                    }
                }
            }
            // An invalidation of up to 5 tags.
            50..=54 => {
                let victims: Vec<usize> = (0..=rng.below(5)).map(|_| rng.below(TAGS)).collect();
                let list: Vec<_> = victims.iter().map(|&i| tags[i].clone()).collect();
                if store.invalidate(&list).await.is_ok() {
                    for v in victims {
                        m.invalidated[v] = op;
                    }
                } else {
                    m.errors += 1;
                }
            }
            55..=56 => {
                if store.delete(&keys[k]).await.is_ok() {
                    m.allowed[k].clear();
                } else {
                    m.errors += 1;
                }
            }
            57 => {
                if store.reclaim().await.is_err() {
                    m.errors += 1;
                }
            }
            58 if rng.below(20) == 0 => {
                if store.clear().await.is_ok() {
                    m.cleared = op;
                } else {
                    m.errors += 1;
                }
            }
            // A read.
            _ => {
                m.reads += 1;
                match store.get(&keys[k]).await {
                    Ok(Lookup::Hit(bytes)) => {
                        m.hits += 1;
                        if m.stale(k, id_of(&bytes)) {
                            m.stale_reads += 1;
                        }
                    }
                    Ok(Lookup::Miss(token)) => {
                        m.generations
                            .insert(token.snapshot().unwrap_or_default().to_owned());
                    }
                    Err(_) => m.errors += 1,
                }
            }
        }
    }
    let evicted = evicted(&mut conn).await;
    Some((m, evicted))
}

/// Eviction under real memory pressure, with every evicting policy: a seeded randomized load
/// (puts with and without TTLs, fills whose tags are invalidated between the miss and the put,
/// invalidations of several tags, deletes, housekeeping, clears, reads) against a private server
/// whose `maxmemory` the load exceeds many times, checked against a reference model: no read
/// returns a value that an invalidation (or a newer put, a delete, a clear) made stale, and no
/// fill from before an invalidation of its tags is stored. `MATROSKA_EVICTION_OPS` sets the
/// operations per policy (default 3000), `MATROSKA_TEST_SEED` the seed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)]
async fn no_stale_read_under_eviction_with_every_policy() {
    let ops: u64 = std::env::var("MATROSKA_EVICTION_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let seed: u64 = std::env::var("MATROSKA_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_261_201);
    eprintln!(
        "eviction run: {ops} operations per policy, maxmemory {MAXMEMORY}, MATROSKA_TEST_SEED={seed}"
    );
    eprintln!(
        "{:<16} {:>6} {:>6} {:>5} {:>8} {:>5} {:>8} {:>6} {:>6} {:>12}",
        "policy",
        "ops",
        "reads",
        "hits",
        "evicted",
        "gens",
        "refused",
        "errors",
        "stale",
        "stale fills"
    );
    let mut failures = Vec::new();
    for policy in POLICIES {
        let Some((m, evicted)) = run_under_pressure(policy, ops, seed).await else {
            return;
        };
        eprintln!(
            "{policy:<16} {ops:>6} {:>6} {:>5} {evicted:>8} {:>5} {:>8} {:>6} {:>6} {:>12}",
            m.reads,
            m.hits,
            m.generations.len(),
            m.fills_refused,
            m.errors,
            m.stale_reads,
            m.stale_fills,
        );
        if m.stale_reads > 0 || m.stale_fills > 0 {
            failures.push(format!(
                "{policy}: {} stale reads, {} stale fills stored",
                m.stale_reads, m.stale_fills
            ));
        }
        assert!(evicted > 0, "{policy}: the load never made Redis evict");
        assert!(m.hits > 0, "{policy}: no read was a hit");
    }
    assert!(failures.is_empty(), "{failures:?}");
}
