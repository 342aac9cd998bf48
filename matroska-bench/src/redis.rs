//! [`RedisStore`] against raw commands on the same connection, in the same run: sequential calls
//! on one multiplexed connection (the store's own; the baseline sends its commands on a clone of
//! it), ~200-byte values.
//!
//! Operations (one [`Row`] each; each sample times `KEYS` calls, setup is never timed):
//!
//! - `get_hit`: [`Store::get`] of a present key (3 tags, a TTL) vs `GET` of a raw key holding
//!   the same value (target 1.25);
//! - `get_miss`: [`Store::get`] of an absent key (a miss with its fill token) vs `GET` of an
//!   absent key;
//! - `put_3_tags_ttl`: [`Store::put`] with 3 tags and a TTL, replacing a present key, vs
//!   `SET key value PX ttl` (target 1.5);
//! - `fill_3_tags_ttl`: the same put with a fill token (the stamps check), vs the same `SET`;
//! - `invalidate_10`: [`Store::invalidate`] of a tag that 10 entries carry (all removed in the
//!   same call) vs `DEL` of those 10 keys (target 2.0). Each sample runs `GROUPS` such calls,
//!   re-putting the entries untimed;
//! - `get_hit_64`: 64 gets in flight at once on the one connection (multiplexed), vs 64 raw
//!   `GET`s in flight: the time per operation, so the target 1.43 is a throughput of at least
//!   0.7x the raw one.
//!
//! The Python matroska-cache measured on the same machine (one client, redis-py) did about
//! 2,500 puts/s (3 dependencies) and 15,000 get hits/s; the rows print this store's operations
//! per second for comparison.

use std::hint::black_box;
use std::slice;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use matroska_core::store::{Lookup, Store};
use matroska_core::{Dep, Key, Tag};
use matroska_redis::RedisStore;
use matroska_redis::redis::{self, aio::ConnectionManager};

use crate::Result;
use crate::harness::{Plan, interleave, ns_per_op};
use crate::report::Row;

/// Keys held by both sides; one sample calls each once.
const KEYS: u32 = 500;
/// Bytes per value.
const VALUE_LEN: usize = 200;
/// Entries per group tag: the size of one invalidation.
const GROUP: u32 = 10;
/// Invalidations per sample.
const GROUPS: u32 = 20;
/// Gets in flight at once in `get_hit_64`.
const IN_FLIGHT: u32 = 64;
/// Gets per task in one `get_hit_64` sample.
const PER_TASK: u32 = 50;
/// The time to live of both sides' entries.
const TTL: Duration = Duration::from_secs(3600);

/// What the store is compared with.
const BASELINE: &str = "redis";

/// The operations [`run`] knows, for `--op`.
pub(crate) const OPS: &[&str] = &[
    "get_hit",
    "get_miss",
    "put_3_tags_ttl",
    "fill_3_tags_ttl",
    "invalidate_10",
    "get_hit_64",
    crate::refresh::OP,
];

struct Fixture {
    store: RedisStore,
    conn: ConnectionManager,
    value: Bytes,
    keys: Arc<[Key]>,
    absent: Vec<Key>,
    raw_keys: Arc<[String]>,
    raw_absent: Vec<String>,
    /// The three tags of each key: its id, its group of 10, its shard of 16.
    tags: Vec<[Tag; 3]>,
    group_tags: Vec<Tag>,
}

impl Fixture {
    async fn new(url: &str) -> Result<Self> {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
            % 1_000_000_000_000;
        let store = RedisStore::builder(url)
            .prefix(format!("matroska-bench:{nonce}"))
            .build()
            .await?;
        let conn = store.connection();
        let keys = (0..KEYS)
            .map(|i| Key::new(format!("item:{i}")))
            .collect::<Result<Vec<_>, _>>()?;
        let absent = (0..KEYS)
            .map(|i| Key::new(format!("absent:{i}")))
            .collect::<Result<Vec<_>, _>>()?;
        let raw_keys: Vec<String> = (0..KEYS)
            .map(|i| format!("matroska-bench-raw:{nonce}:item:{i}"))
            .collect();
        let raw_absent = (0..KEYS)
            .map(|i| format!("matroska-bench-raw:{nonce}:absent:{i}"))
            .collect();
        let tags = (0..KEYS)
            .map(|i| -> Result<[Tag; 3]> {
                Ok([
                    Dep::id("item", i64::from(i)).to_tag()?,
                    Dep::tag(format!("group{}", i / GROUP)).to_tag()?,
                    Dep::tag(format!("shard{}", i % 16)).to_tag()?,
                ])
            })
            .collect::<Result<Vec<_>>>()?;
        let group_tags = (0..KEYS / GROUP)
            .map(|g| Dep::tag(format!("group{g}")).to_tag())
            .collect::<Result<Vec<_>, _>>()?;
        let fixture = Self {
            store,
            conn,
            value: Bytes::from(vec![b'v'; VALUE_LEN]),
            keys: keys.into(),
            absent,
            raw_keys: raw_keys.into(),
            raw_absent,
            tags,
            group_tags,
        };
        fixture.fill(0..KEYS).await?;
        fixture.check().await?;
        Ok(fixture)
    }

    fn ttl_ms() -> u64 {
        u64::try_from(TTL.as_millis()).unwrap_or(u64::MAX)
    }

    /// (Re-)puts keys `range` on both sides.
    async fn fill(&self, range: std::ops::Range<u32>) -> Result<()> {
        let mut conn = self.conn.clone();
        for i in range {
            let (key, tags) = (&self.keys[i as usize], &self.tags[i as usize]);
            let outcome = self
                .store
                .put(key, self.value.clone(), tags, Some(TTL), None)
                .await?;
            if !outcome.is_stored() {
                return Err(format!("RedisStore did not store {key}").into());
            }
            let () = redis::cmd("SET")
                .arg(&self.raw_keys[i as usize])
                .arg(&self.value[..])
                .arg("PX")
                .arg(Self::ttl_ms())
                .query_async(&mut conn)
                .await?;
        }
        Ok(())
    }

    async fn check(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        for (i, (key, absent)) in self.keys.iter().zip(&self.absent).enumerate() {
            let hit = matches!(self.store.get(key).await?, Lookup::Hit(v) if v == self.value);
            let miss = matches!(self.store.get(absent).await?, Lookup::Miss(_));
            let raw: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&self.raw_keys[i])
                .query_async(&mut conn)
                .await?;
            if !hit || !miss || raw.as_deref() != Some(&self.value[..]) {
                return Err(format!("fixture is not as expected around {key}").into());
            }
        }
        Ok(())
    }

    async fn ours_get(&self, keys: &[Key]) -> Result<f64> {
        let start = Instant::now();
        for key in keys {
            black_box(self.store.get(black_box(key)).await?);
        }
        Ok(ns_per_op(start.elapsed(), KEYS))
    }

    async fn raw_get(&self, keys: &[String]) -> Result<f64> {
        let mut conn = self.conn.clone();
        let start = Instant::now();
        for key in keys {
            let value: Option<Vec<u8>> = redis::cmd("GET")
                .arg(black_box(key))
                .query_async(&mut conn)
                .await?;
            black_box(value);
        }
        Ok(ns_per_op(start.elapsed(), KEYS))
    }

    async fn ours_put(&self, tokened: bool) -> Result<f64> {
        let token = if tokened {
            match self.store.get(&self.absent[0]).await? {
                Lookup::Miss(token) => Some(token),
                Lookup::Hit(_) => return Err("absent key is present".into()),
            }
        } else {
            None
        };
        let start = Instant::now();
        for (key, tags) in self.keys.iter().zip(&self.tags) {
            let outcome = self
                .store
                .put(
                    black_box(key),
                    self.value.clone(),
                    tags,
                    Some(TTL),
                    token.as_ref(),
                )
                .await?;
            if !outcome.is_stored() {
                return Err(format!("RedisStore did not store {key}").into());
            }
        }
        Ok(ns_per_op(start.elapsed(), KEYS))
    }

    async fn raw_set(&self) -> Result<f64> {
        let mut conn = self.conn.clone();
        let start = Instant::now();
        for key in self.raw_keys.iter() {
            let () = redis::cmd("SET")
                .arg(black_box(key))
                .arg(&self.value[..])
                .arg("PX")
                .arg(Self::ttl_ms())
                .query_async(&mut conn)
                .await?;
        }
        Ok(ns_per_op(start.elapsed(), KEYS))
    }

    async fn ours_invalidate(&self) -> Result<f64> {
        let mut total = Duration::ZERO;
        for (g, tag) in (0..GROUPS).zip(&self.group_tags) {
            self.fill(g * GROUP..(g + 1) * GROUP).await?;
            let start = Instant::now();
            let removed = self
                .store
                .invalidate(slice::from_ref(black_box(tag)))
                .await?;
            total += start.elapsed();
            if removed != u64::from(GROUP) {
                return Err(format!("invalidation removed {removed} entries, not {GROUP}").into());
            }
        }
        Ok(ns_per_op(total, GROUPS))
    }

    async fn raw_delete(&self) -> Result<f64> {
        let mut conn = self.conn.clone();
        let mut total = Duration::ZERO;
        for g in 0..GROUPS {
            self.fill(g * GROUP..(g + 1) * GROUP).await?;
            let keys = &self.raw_keys[(g * GROUP) as usize..((g + 1) * GROUP) as usize];
            let start = Instant::now();
            let removed: u64 = redis::cmd("DEL").arg(keys).query_async(&mut conn).await?;
            total += start.elapsed();
            if removed != u64::from(GROUP) {
                return Err(format!("DEL removed {removed} keys, not {GROUP}").into());
            }
        }
        Ok(ns_per_op(total, GROUPS))
    }

    /// `IN_FLIGHT` tasks, each doing `PER_TASK` gets one after the other: the connection has
    /// `IN_FLIGHT` requests outstanding at any time.
    async fn ours_get_concurrent(&self) -> Result<f64> {
        let mut tasks = tokio::task::JoinSet::new();
        let start = Instant::now();
        for t in 0..IN_FLIGHT {
            let (store, keys) = (self.store.clone(), Arc::clone(&self.keys));
            tasks.spawn(async move {
                for i in 0..PER_TASK {
                    let key = &keys[((t * PER_TASK + i) % KEYS) as usize];
                    match store.get(key).await? {
                        Lookup::Hit(bytes) => black_box(bytes),
                        Lookup::Miss(_) => return Err(format!("{key} missed").into()),
                    };
                }
                Ok::<_, crate::Error>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        Ok(ns_per_op(start.elapsed(), IN_FLIGHT * PER_TASK))
    }

    async fn raw_get_concurrent(&self) -> Result<f64> {
        let mut tasks = tokio::task::JoinSet::new();
        let start = Instant::now();
        for t in 0..IN_FLIGHT {
            let (mut conn, keys) = (self.conn.clone(), Arc::clone(&self.raw_keys));
            tasks.spawn(async move {
                for i in 0..PER_TASK {
                    let key = &keys[((t * PER_TASK + i) % KEYS) as usize];
                    let value: Option<Vec<u8>> =
                        redis::cmd("GET").arg(key).query_async(&mut conn).await?;
                    if value.is_none() {
                        return Err(format!("{key} missed").into());
                    }
                    black_box(value);
                }
                Ok::<_, crate::Error>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        Ok(ns_per_op(start.elapsed(), IN_FLIGHT * PER_TASK))
    }

    /// Removes both sides' keys.
    async fn drop(self) -> Result<()> {
        self.store.clear().await?;
        let mut conn = self.conn.clone();
        let () = redis::cmd("DEL")
            .arg(self.store.layout().seq())
            .arg(self.store.layout().meta())
            .arg(&self.raw_keys[..])
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}

/// Measures every RedisStore operation the plan wants; returns one row each.
pub(crate) async fn run(plan: Plan<'_>, url: &str) -> Result<Vec<Row>> {
    let fx = Fixture::new(url).await?;
    let rows = measure(plan, &fx).await;
    fx.drop().await?;
    let mut rows = rows?;
    if plan.wants(crate::refresh::OP) {
        rows.extend(crate::refresh::run_redis(plan, url).await?);
    }
    Ok(rows)
}

async fn measure(plan: Plan<'_>, fx: &Fixture) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    if plan.wants("get_hit") {
        let m = interleave(
            plan,
            async || fx.ours_get(&fx.keys).await,
            async || fx.raw_get(&fx.raw_keys).await,
        )
        .await?;
        rows.push(row("get_hit", m.ours_ns, m.baseline_ns).target(1.25));
    }
    if plan.wants("get_miss") {
        let m = interleave(
            plan,
            async || fx.ours_get(&fx.absent).await,
            async || fx.raw_get(&fx.raw_absent).await,
        )
        .await?;
        rows.push(row("get_miss", m.ours_ns, m.baseline_ns));
    }
    if plan.wants("put_3_tags_ttl") {
        let m = interleave(
            plan,
            async || fx.ours_put(false).await,
            async || fx.raw_set().await,
        )
        .await?;
        rows.push(row("put_3_tags_ttl", m.ours_ns, m.baseline_ns).target(1.5));
    }
    if plan.wants("fill_3_tags_ttl") {
        let m = interleave(
            plan,
            async || fx.ours_put(true).await,
            async || fx.raw_set().await,
        )
        .await?;
        rows.push(row("fill_3_tags_ttl", m.ours_ns, m.baseline_ns));
    }
    if plan.wants("invalidate_10") {
        let m = interleave(
            plan,
            async || fx.ours_invalidate().await,
            async || fx.raw_delete().await,
        )
        .await?;
        rows.push(row("invalidate_10", m.ours_ns, m.baseline_ns).target(2.0));
    }
    if plan.wants("get_hit_64") {
        // The invalidations above removed the first groups on both sides.
        fx.fill(0..KEYS).await?;
        let m = interleave(
            plan,
            async || fx.ours_get_concurrent().await,
            async || fx.raw_get_concurrent().await,
        )
        .await?;
        rows.push(row("get_hit_64", m.ours_ns, m.baseline_ns).target(1.0 / 0.7));
    }
    Ok(rows)
}

fn row(op: &'static str, ours_ns: f64, baseline_ns: f64) -> Row {
    Row::new("redis", op, BASELINE, ours_ns, baseline_ns)
}
