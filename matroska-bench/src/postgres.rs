//! [`PgStore`] against raw `tokio-postgres` on the same server, in the same run: one connection
//! each (the store's pool holds one), with the same session settings (the raw connection gets the
//! store's `-c` options: `statement_timeout`, `plan_cache_mode`, ..., which cost the server a few
//! microseconds per statement whoever sends it), sequential calls, ~200-byte values.
//!
//! Operations (one [`Row`] each; each sample times `KEYS` calls, setup is never timed):
//!
//! - `get_hit`: [`Store::get`] of a present key (3 tags, a TTL) vs a prepared primary-key
//!   `SELECT value` on an UNLOGGED table holding the same keys and values (target 1.3);
//! - `get_miss`: [`Store::get`] of an absent key (a miss with its fill token) vs the same
//!   `SELECT` of an absent key;
//! - `get_hit_sql`: the store's own get statement (text from the store) sent by the raw client
//!   vs the raw `SELECT`: what the statement costs the server, with no store code in the way;
//! - `get_hit_client`: [`Store::get`] of a present key vs the raw client sending the store's
//!   get statement: what the store's client path (pool checkout, statement cache, operation
//!   timeout, decoding) costs on top of it. `get_hit` is about the product of these two;
//! - `put_3_tags_ttl`: [`Store::put`] with 3 tags and a TTL, replacing a present key, vs a
//!   prepared single-row upsert (`INSERT .. ON CONFLICT (key) DO UPDATE`) (target 2.0);
//! - `fill_3_tags_ttl`: the same put with a fill token (the stamps check), vs the same upsert;
//! - `invalidate_10`: [`Store::invalidate`] of a tag that 10 entries carry (the entries are
//!   removed in the same call) vs a prepared `DELETE .. WHERE key = ANY($1)` of those 10 rows
//!   (target 2.0). Each sample runs `GROUPS` such calls, re-putting the entries untimed.
//!
//! FastPgCache, measured on the same machine with one connection, did about 2,300 get hits/s
//! and 2,600 sets/s; the rows print the store's operations per second for comparison.

use std::hint::black_box;
use std::slice;
use std::time::{Duration, Instant};

use bytes::Bytes;
use matroska_core::store::{Lookup, Store};
use matroska_core::{Dep, Key, Tag};
use matroska_postgres::PgStore;

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
/// The time to live of the store's entries.
const TTL: Duration = Duration::from_secs(3600);

/// What the store is compared with.
const BASELINE: &str = "tokio-postgres";

/// The operations [`run`] knows, for `--op`.
pub(crate) const OPS: &[&str] = &[
    "get_hit",
    "get_miss",
    "get_hit_sql",
    "get_hit_client",
    "put_3_tags_ttl",
    "fill_3_tags_ttl",
    "invalidate_10",
];

struct Fixture {
    store: PgStore,
    raw: tokio_postgres::Client,
    select: tokio_postgres::Statement,
    /// The store's get statement, on the raw connection.
    store_get: tokio_postgres::Statement,
    upsert: tokio_postgres::Statement,
    delete: tokio_postgres::Statement,
    value: Bytes,
    keys: Vec<Key>,
    absent: Vec<Key>,
    /// The three tags of each key: its id, its group of 10, its shard of 16.
    tags: Vec<[Tag; 3]>,
    group_tags: Vec<Tag>,
    baseline_schema: String,
}

impl Fixture {
    async fn new(url: &str) -> Result<Self> {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
            % 1_000_000_000_000;
        let store = PgStore::builder(url)
            .schema(format!("matroska_bench_{nonce}"))
            .pool_size(1)
            .build()?;
        store.migrate().await?;
        let (get_text, options) = store.get_statement_and_options();
        let mut raw_config: tokio_postgres::Config = url.parse()?;
        raw_config.options(options);
        let (raw, connection) = raw_config.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let baseline_schema = format!("matroska_bench_raw_{nonce}");
        raw.batch_execute(&format!(
            "CREATE SCHEMA {baseline_schema};
             CREATE UNLOGGED TABLE {baseline_schema}.kv (key text PRIMARY KEY, value bytea NOT NULL);"
        ))
        .await?;
        let select = raw
            .prepare(&format!(
                "SELECT value FROM {baseline_schema}.kv WHERE key = $1"
            ))
            .await?;
        let store_get = raw.prepare(get_text).await?;
        let upsert = raw
            .prepare(&format!(
                "INSERT INTO {baseline_schema}.kv (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            ))
            .await?;
        let delete = raw
            .prepare(&format!(
                "DELETE FROM {baseline_schema}.kv WHERE key = ANY ($1)"
            ))
            .await?;
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
        let group_tags = (0..KEYS / GROUP)
            .map(|g| Dep::tag(format!("group{g}")).to_tag())
            .collect::<Result<Vec<_>, _>>()?;
        let fixture = Self {
            store,
            raw,
            select,
            store_get,
            upsert,
            delete,
            value: Bytes::from(vec![b'v'; VALUE_LEN]),
            keys,
            absent,
            tags,
            group_tags,
            baseline_schema,
        };
        fixture.fill(0..KEYS).await?;
        fixture.check().await?;
        Ok(fixture)
    }

    /// (Re-)puts keys `range` on both sides.
    async fn fill(&self, range: std::ops::Range<u32>) -> Result<()> {
        for i in range {
            let (key, tags) = (&self.keys[i as usize], &self.tags[i as usize]);
            let outcome = self
                .store
                .put(key, self.value.clone(), tags, Some(TTL), None)
                .await?;
            if !outcome.is_stored() {
                return Err(format!("PgStore did not store {key}").into());
            }
            let value: &[u8] = &self.value;
            self.raw
                .execute(&self.upsert, &[&key.as_str(), &value])
                .await?;
        }
        Ok(())
    }

    async fn check(&self) -> Result<()> {
        for (key, absent) in self.keys.iter().zip(&self.absent) {
            let hit = matches!(self.store.get(key).await?, Lookup::Hit(v) if v == self.value);
            let miss = matches!(self.store.get(absent).await?, Lookup::Miss(_));
            let raw_hit = self
                .raw
                .query_opt(&self.select, &[&key.as_str()])
                .await?
                .is_some();
            if !hit || !miss || !raw_hit {
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

    async fn raw_get(&self, keys: &[Key]) -> Result<f64> {
        let start = Instant::now();
        for key in keys {
            black_box(self.raw.query_opt(&self.select, &[&key.as_str()]).await?);
        }
        Ok(ns_per_op(start.elapsed(), KEYS))
    }

    async fn raw_store_get(&self, keys: &[Key]) -> Result<f64> {
        let start = Instant::now();
        for key in keys {
            black_box(self.raw.query(&self.store_get, &[&key.as_str()]).await?);
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
                return Err(format!("PgStore did not store {key}").into());
            }
        }
        Ok(ns_per_op(start.elapsed(), KEYS))
    }

    async fn raw_upsert(&self) -> Result<f64> {
        let value: &[u8] = &self.value;
        let start = Instant::now();
        for key in &self.keys {
            black_box(
                self.raw
                    .execute(&self.upsert, &[&key.as_str(), &value])
                    .await?,
            );
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
        let mut total = Duration::ZERO;
        for g in 0..GROUPS {
            self.fill(g * GROUP..(g + 1) * GROUP).await?;
            let keys: Vec<&str> = self.keys[(g * GROUP) as usize..((g + 1) * GROUP) as usize]
                .iter()
                .map(Key::as_str)
                .collect();
            let start = Instant::now();
            let removed = self.raw.execute(&self.delete, &[&keys]).await?;
            total += start.elapsed();
            if removed != u64::from(GROUP) {
                return Err(format!("DELETE removed {removed} rows, not {GROUP}").into());
            }
        }
        Ok(ns_per_op(total, GROUPS))
    }

    async fn drop(self) -> Result<()> {
        let schema = self.store.schema().quoted();
        self.store.close();
        self.raw
            .batch_execute(&format!(
                "DROP SCHEMA {schema} CASCADE; DROP SCHEMA {} CASCADE;",
                self.baseline_schema
            ))
            .await?;
        Ok(())
    }
}

/// Measures every PgStore operation the plan wants; returns one row each.
pub(crate) async fn run(plan: Plan<'_>, url: &str) -> Result<Vec<Row>> {
    let fx = Fixture::new(url).await?;
    let rows = measure(plan, &fx).await;
    fx.drop().await?;
    rows
}

async fn measure(plan: Plan<'_>, fx: &Fixture) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    if plan.wants("get_hit") {
        let m = interleave(
            plan,
            async || fx.ours_get(&fx.keys).await,
            async || fx.raw_get(&fx.keys).await,
        )
        .await?;
        rows.push(row("get_hit", m.ours_ns, m.baseline_ns).target(1.3));
    }
    if plan.wants("get_miss") {
        let m = interleave(
            plan,
            async || fx.ours_get(&fx.absent).await,
            async || fx.raw_get(&fx.absent).await,
        )
        .await?;
        rows.push(row("get_miss", m.ours_ns, m.baseline_ns));
    }
    if plan.wants("get_hit_sql") {
        let m = interleave(
            plan,
            async || fx.raw_store_get(&fx.keys).await,
            async || fx.raw_get(&fx.keys).await,
        )
        .await?;
        rows.push(row("get_hit_sql", m.ours_ns, m.baseline_ns));
    }
    if plan.wants("get_hit_client") {
        let m = interleave(
            plan,
            async || fx.ours_get(&fx.keys).await,
            async || fx.raw_store_get(&fx.keys).await,
        )
        .await?;
        rows.push(row_vs(
            "get_hit_client",
            "raw+store SQL",
            m.ours_ns,
            m.baseline_ns,
        ));
    }
    if plan.wants("put_3_tags_ttl") {
        let m = interleave(
            plan,
            async || fx.ours_put(false).await,
            async || fx.raw_upsert().await,
        )
        .await?;
        rows.push(row("put_3_tags_ttl", m.ours_ns, m.baseline_ns).target(2.0));
    }
    if plan.wants("fill_3_tags_ttl") {
        let m = interleave(
            plan,
            async || fx.ours_put(true).await,
            async || fx.raw_upsert().await,
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
    Ok(rows)
}

fn row(op: &'static str, ours_ns: f64, baseline_ns: f64) -> Row {
    row_vs(op, BASELINE, ours_ns, baseline_ns)
}

fn row_vs(op: &'static str, baseline: &'static str, ours_ns: f64, baseline_ns: f64) -> Row {
    Row::new("postgres", op, baseline, ours_ns, baseline_ns)
}
