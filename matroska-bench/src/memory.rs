//! [`MemoryStore`] against a plain `moka::sync::Cache<Key, Bytes>` of the same capacity, holding
//! the same keys and values.
//!
//! Operations (one [`Row`] each):
//!
//! - `get_hit`: [`Store::get`] of a present key vs moka `get`;
//! - `get_miss`: [`Store::get`] of an absent key (a miss with its fill token) vs moka `get`;
//! - `put_3_tags`: [`Store::put`] with three tags, no token, no TTL, replacing a present key vs
//!   moka `insert`;
//! - `invalidate_1000`: one [`Store::invalidate`] of a tag that 1,000 entries carry vs 1,000 moka
//!   `invalidate(&key)` calls. The store's invalidation is immediate for correctness (stamps) but
//!   reclaims the entries' memory lazily, in bounded chunks on later writes;
//! - `invalidate_1000_reclaimed`: the same call followed by [`MemoryStore::run_pending_tasks`],
//!   so that all the deferred reclamation is timed too, against the same baseline.
//!
//! Setup (filling, re-putting the 1,000 entries) is never timed.

use std::hint::black_box;
use std::slice;
use std::time::Instant;

use bytes::Bytes;
use matroska_core::store::{Lookup, Store};
use matroska_core::{Dep, Key, MemoryStore, Tag};
use moka::sync::Cache as Moka;

use crate::Result;
use crate::harness::{Plan, interleave, ns_per_op};
use crate::report::Row;

/// Keys held by both caches.
const KEYS: u32 = 10_000;
/// Bytes per value.
const VALUE_LEN: usize = 200;
/// The capacity of both caches (MemoryStore's default): nothing is evicted during the run.
const CAPACITY: u64 = 100_000;
/// How many entries carry each group tag: the size of one invalidation.
const GROUP: u32 = 1_000;
/// Invalidations per sample (each with its own untimed setup); the sample is their mean.
const INVALIDATIONS_PER_SAMPLE: u32 = 4;

/// What the memory store is compared with.
const BASELINE: &str = "moka";

/// The data both sides work on.
struct Fixture {
    store: MemoryStore,
    moka: Moka<Key, Bytes>,
    value: Bytes,
    /// Present keys, `item:0` .. `item:9999`.
    keys: Vec<Key>,
    /// Keys never stored.
    absent: Vec<Key>,
    /// The three tags of each present key: its id, its group of 1,000, its shard of 16.
    tags: Vec<[Tag; 3]>,
    /// The tag carried by the group's first 1,000 keys.
    group_tag: Tag,
}

impl Fixture {
    async fn new() -> Result<Self> {
        let keys = (0..KEYS)
            .map(|i| Key::new(format!("item:{i}")))
            .collect::<Result<Vec<_>, _>>()?;
        let absent = (0..KEYS)
            .map(|i| Key::new(format!("absent:{i}")))
            .collect::<Result<Vec<_>, _>>()?;
        let tags = (0..KEYS)
            .map(|i| -> Result<[Tag; 3]> {
                Ok([
                    Dep::id("item", i64::from(i)).to_tag()?,
                    Dep::tag(format!("group{}", i / GROUP)).to_tag()?,
                    Dep::tag(format!("shard{}", i % 16)).to_tag()?,
                ])
            })
            .collect::<Result<Vec<_>>>()?;
        let fixture = Self {
            store: MemoryStore::builder().max_entries(CAPACITY).build(),
            moka: Moka::builder().max_capacity(CAPACITY).build(),
            value: Bytes::from(vec![b'v'; VALUE_LEN]),
            keys,
            absent,
            tags,
            group_tag: Dep::tag("group0").to_tag()?,
        };
        fixture.fill(KEYS).await?;
        fixture.check().await?;
        Ok(fixture)
    }

    /// (Re-)puts the first `count` keys on both sides and runs both sides' deferred work.
    async fn fill(&self, count: u32) -> Result<()> {
        for (key, tags) in self.keys.iter().zip(&self.tags).take(count as usize) {
            let outcome = self
                .store
                .put(key, self.value.clone(), tags, None, None)
                .await?;
            if !outcome.is_stored() {
                return Err(format!("memory store did not store {key}").into());
            }
            self.moka.insert(key.clone(), self.value.clone());
        }
        self.store.run_pending_tasks();
        self.moka.run_pending_tasks();
        Ok(())
    }

    /// Makes sure each side measures what its row says: hits hit, misses miss.
    async fn check(&self) -> Result<()> {
        for (key, absent) in self.keys.iter().zip(&self.absent) {
            let hit = matches!(self.store.get(key).await?, Lookup::Hit(v) if v == self.value);
            let miss = matches!(self.store.get(absent).await?, Lookup::Miss(_));
            if !hit || !miss || self.moka.get(key).is_none() || self.moka.get(absent).is_some() {
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

    fn moka_get(&self, keys: &[Key]) -> f64 {
        let start = Instant::now();
        for key in keys {
            black_box(self.moka.get(black_box(key)));
        }
        ns_per_op(start.elapsed(), KEYS)
    }

    async fn ours_put(&self) -> Result<f64> {
        let start = Instant::now();
        for (key, tags) in self.keys.iter().zip(&self.tags) {
            let outcome = self
                .store
                .put(black_box(key), self.value.clone(), tags, None, None)
                .await?;
            black_box(outcome);
        }
        Ok(ns_per_op(start.elapsed(), KEYS))
    }

    fn moka_insert(&self) -> f64 {
        let start = Instant::now();
        for key in &self.keys {
            self.moka.insert(black_box(key).clone(), self.value.clone());
        }
        ns_per_op(start.elapsed(), KEYS)
    }

    /// Times invalidating the group tag (and, if `reclaim`, reclaiming its entries), after
    /// re-putting the group untimed. Returns nanoseconds per invalidation call.
    async fn ours_invalidate(&self, reclaim: bool) -> Result<f64> {
        let mut total = std::time::Duration::ZERO;
        for _ in 0..INVALIDATIONS_PER_SAMPLE {
            self.fill(GROUP).await?;
            let start = Instant::now();
            let removed = self
                .store
                .invalidate(slice::from_ref(black_box(&self.group_tag)))
                .await?;
            if reclaim {
                self.store.run_pending_tasks();
            }
            total += start.elapsed();
            if removed != u64::from(GROUP) {
                return Err(format!("invalidation found {removed} entries, not {GROUP}").into());
            }
        }
        Ok(ns_per_op(total, INVALIDATIONS_PER_SAMPLE))
    }

    /// Times removing the group's 1,000 keys one by one, after re-inserting them untimed.
    async fn moka_invalidate(&self) -> Result<f64> {
        let group = &self.keys[..GROUP as usize];
        let mut total = std::time::Duration::ZERO;
        for _ in 0..INVALIDATIONS_PER_SAMPLE {
            self.fill(GROUP).await?;
            let start = Instant::now();
            for key in group {
                self.moka.invalidate(black_box(key));
            }
            total += start.elapsed();
        }
        Ok(ns_per_op(total, INVALIDATIONS_PER_SAMPLE))
    }
}

/// Measures every memory-store operation the plan wants; returns one row each.
pub(crate) async fn run(plan: Plan<'_>) -> Result<Vec<Row>> {
    let fx = Fixture::new().await?;
    let fx = &fx;
    let mut rows = Vec::new();

    if plan.wants("get_hit") {
        let m = interleave(
            plan,
            async || fx.ours_get(&fx.keys).await,
            async || Ok(fx.moka_get(&fx.keys)),
        )
        .await?;
        rows.push(row("get_hit", m.ours_ns, m.baseline_ns).target(2.0));
    }
    if plan.wants("get_miss") {
        let m = interleave(
            plan,
            async || fx.ours_get(&fx.absent).await,
            async || Ok(fx.moka_get(&fx.absent)),
        )
        .await?;
        rows.push(row("get_miss", m.ours_ns, m.baseline_ns));
    }
    if plan.wants("put_3_tags") {
        let m = interleave(
            plan,
            async || fx.ours_put().await,
            async || Ok(fx.moka_insert()),
        )
        .await?;
        rows.push(row("put_3_tags", m.ours_ns, m.baseline_ns).target(3.0));
    }
    for (op, reclaim) in [
        ("invalidate_1000", false),
        ("invalidate_1000_reclaimed", true),
    ] {
        if plan.wants(op) {
            let m = interleave(
                plan,
                async || fx.ours_invalidate(reclaim).await,
                async || fx.moka_invalidate().await,
            )
            .await?;
            // "Faster than 1,000 single moka invalidations": a ratio below 1.
            rows.push(row(op, m.ours_ns, m.baseline_ns).target(1.0));
        }
    }
    if plan.wants(crate::refresh::OP) {
        rows.extend(crate::refresh::run_memory(plan).await?);
    }
    Ok(rows)
}

/// The operations [`run`] knows, for `--op`.
pub(crate) const OPS: &[&str] = &[
    "get_hit",
    "get_miss",
    "put_3_tags",
    "invalidate_1000",
    "invalidate_1000_reclaimed",
    crate::refresh::OP,
];

fn row(op: &'static str, ours_ns: f64, baseline_ns: f64) -> Row {
    Row::new("memory", op, BASELINE, ours_ns, baseline_ns)
}
