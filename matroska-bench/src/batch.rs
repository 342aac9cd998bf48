//! Batch operations of every store against the raw batch of its backend, in the same run: one
//! sample calls each side `BATCHES` times with `BATCH` keys, ~200-byte values; rows in
//! nanoseconds per batch call. Setup is never timed.
//!
//! - `get_many_100`: [`Store::get_many`] of 100 present keys (3 tags, a TTL) vs the raw batch
//!   read: 100 moka `get`s (memory), one `MGET` (Redis), one prepared
//!   `SELECT .. WHERE key = ANY($1)` (PostgreSQL);
//! - `put_many_100`: [`Store::put_many`] of 100 entries (3 tags, a TTL, no token), replacing
//!   present keys, vs the raw batch write: 100 moka `insert`s, one pipeline of 100 `SET .. PX`,
//!   one prepared upsert of `unnest($1, $2)`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use matroska_core::store::{Lookup, PutEntry, Store};
use matroska_core::{Dep, Key, MemoryStore, Tag};
use matroska_postgres::PgStore;
use matroska_redis::RedisStore;
use matroska_redis::redis;

use crate::Result;
use crate::harness::{Plan, interleave, ns_per_op};
use crate::report::Row;

/// Keys per batch.
const BATCH: usize = 100;
/// Batches per sample.
const BATCHES: u32 = 5;
/// Bytes per value.
const VALUE_LEN: usize = 200;
/// The time to live of every entry.
const TTL: Duration = Duration::from_secs(3600);

/// The operations of this module, for `--op`.
pub(crate) const OPS: &[&str] = &["get_many_100", "put_many_100"];

/// The keys, values and tags every store's batches use.
struct Data {
    keys: Vec<Key>,
    tags: Vec<[Tag; 3]>,
    value: Bytes,
}

impl Data {
    fn new() -> Result<Self> {
        let n = BATCH * BATCHES as usize;
        let keys = (0..n)
            .map(|i| Key::new(format!("batch:{i}")))
            .collect::<Result<Vec<_>, _>>()?;
        let tags = (0..n)
            .map(|i| -> Result<[Tag; 3]> {
                let i = i64::try_from(i)?;
                Ok([
                    Dep::id("item", i).to_tag()?,
                    Dep::tag(format!("group{}", i / 10)).to_tag()?,
                    Dep::tag(format!("shard{}", i % 16)).to_tag()?,
                ])
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            keys,
            tags,
            value: Bytes::from(vec![b'v'; VALUE_LEN]),
        })
    }

    fn entries(&self, range: std::ops::Range<usize>) -> Vec<PutEntry<'_>> {
        self.keys[range.clone()]
            .iter()
            .zip(&self.tags[range])
            .map(|(key, tags)| PutEntry {
                tags,
                ttl: Some(TTL),
                ..PutEntry::new(key, self.value.clone())
            })
            .collect()
    }

    /// One sample of `put_many`: every batch once; checks that each entry was stored.
    async fn put_many<S: Store>(&self, store: &S) -> Result<f64> {
        let batches: Vec<_> = (0..BATCHES as usize)
            .map(|b| self.entries(b * BATCH..(b + 1) * BATCH))
            .collect();
        let start = Instant::now();
        for batch in &batches {
            let outcomes = store.put_many(black_box(batch)).await?;
            if !outcomes.iter().all(|o| o.is_stored()) {
                return Err(format!("{} did not store a batch", store.name()).into());
            }
        }
        Ok(ns_per_op(start.elapsed(), BATCHES))
    }

    /// One sample of `get_many`: every batch once; checks that each key was a hit.
    async fn get_many<S: Store>(&self, store: &S) -> Result<f64> {
        let start = Instant::now();
        for batch in self.keys.chunks(BATCH) {
            let found = store.get_many(black_box(batch)).await?;
            if !found.iter().all(|f| matches!(f, Lookup::Hit(_))) {
                return Err(format!("{} missed in a batch of present keys", store.name()).into());
            }
        }
        Ok(ns_per_op(start.elapsed(), BATCHES))
    }
}

/// `get_many_100` and `put_many_100` of `store`, against `raw_get` and `raw_put` (each one
/// sample of `BATCHES` raw batches, in ns per batch).
async fn rows<S: Store>(
    plan: Plan<'_>,
    data: &Data,
    store: &S,
    baseline: &'static str,
    mut raw_get: impl AsyncFnMut() -> Result<f64>,
    mut raw_put: impl AsyncFnMut() -> Result<f64>,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    data.put_many(store).await?;
    raw_put().await?;
    if plan.wants("get_many_100") {
        let m = interleave(plan, async || data.get_many(store).await, &mut raw_get).await?;
        rows.push(Row::new(
            store.name(),
            "get_many_100",
            baseline,
            m.ours_ns,
            m.baseline_ns,
        ));
    }
    if plan.wants("put_many_100") {
        let m = interleave(plan, async || data.put_many(store).await, &mut raw_put).await?;
        rows.push(Row::new(
            store.name(),
            "put_many_100",
            baseline,
            m.ours_ns,
            m.baseline_ns,
        ));
    }
    Ok(rows)
}

/// The memory store against moka, key by key (there is no round trip to save).
pub(crate) async fn memory(plan: Plan<'_>) -> Result<Vec<Row>> {
    let data = Data::new()?;
    let store = MemoryStore::new();
    let moka: moka::sync::Cache<Key, Bytes> = moka::sync::Cache::new(100_000);
    let (data, moka) = (&data, &moka);
    rows(
        plan,
        data,
        &store,
        "moka",
        async || {
            let start = Instant::now();
            for batch in data.keys.chunks(BATCH) {
                for key in batch {
                    black_box(moka.get(black_box(key)));
                }
            }
            Ok(ns_per_op(start.elapsed(), BATCHES))
        },
        async || {
            let start = Instant::now();
            for batch in data.keys.chunks(BATCH) {
                for key in batch {
                    moka.insert(black_box(key).clone(), data.value.clone());
                }
            }
            Ok(ns_per_op(start.elapsed(), BATCHES))
        },
    )
    .await
}

/// RedisStore against one `MGET` and one pipeline of `SET .. PX` on its connection.
pub(crate) async fn redis(plan: Plan<'_>, url: &str) -> Result<Vec<Row>> {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos()
        % 1_000_000_000_000;
    let data = Data::new()?;
    let store = RedisStore::builder(url)
        .prefix(format!("matroska-bench-batch:{nonce}"))
        .build()
        .await?;
    let conn = store.connection();
    let raw_keys: Vec<String> = (0..data.keys.len())
        .map(|i| format!("matroska-bench-batch-raw:{nonce}:{i}"))
        .collect();
    let ttl_ms = u64::try_from(TTL.as_millis())?;
    let (data, raw_keys) = (&data, &raw_keys);
    let result = rows(
        plan,
        data,
        &store,
        "redis MGET/pipeline",
        async || {
            let mut conn = conn.clone();
            let start = Instant::now();
            for batch in raw_keys.chunks(BATCH) {
                let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                    .arg(black_box(batch))
                    .query_async(&mut conn)
                    .await?;
                if values.iter().any(Option::is_none) {
                    return Err("a raw MGET missed".into());
                }
            }
            Ok(ns_per_op(start.elapsed(), BATCHES))
        },
        async || {
            let mut conn = conn.clone();
            let start = Instant::now();
            for batch in raw_keys.chunks(BATCH) {
                let mut pipe = redis::pipe();
                for key in batch {
                    pipe.cmd("SET")
                        .arg(key)
                        .arg(&data.value[..])
                        .arg("PX")
                        .arg(ttl_ms)
                        .ignore();
                }
                let () = pipe.query_async(&mut conn).await?;
            }
            Ok(ns_per_op(start.elapsed(), BATCHES))
        },
    )
    .await;
    store.remove_namespace().await?;
    let mut conn = conn.clone();
    let () = redis::cmd("DEL")
        .arg(&raw_keys[..])
        .query_async(&mut conn)
        .await?;
    result
}

/// PgStore against a prepared `= ANY($1)` select and a prepared `unnest` upsert on an UNLOGGED
/// table.
pub(crate) async fn postgres(plan: Plan<'_>, url: &str) -> Result<Vec<Row>> {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos()
        % 1_000_000_000_000;
    let data = Data::new()?;
    let store = PgStore::builder(url)
        .schema(format!("matroska_bench_batch_{nonce}"))
        .pool_size(1)
        .build()?;
    store.migrate().await?;
    let (raw, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let raw_schema = format!("matroska_bench_batch_raw_{nonce}");
    raw.batch_execute(&format!(
        "CREATE SCHEMA {raw_schema};
         CREATE UNLOGGED TABLE {raw_schema}.kv (key text PRIMARY KEY, value bytea NOT NULL);"
    ))
    .await?;
    let select = raw
        .prepare(&format!(
            "SELECT key, value FROM {raw_schema}.kv WHERE key = ANY ($1)"
        ))
        .await?;
    let upsert = raw
        .prepare(&format!(
            "INSERT INTO {raw_schema}.kv (key, value) SELECT * FROM unnest($1::text[], $2::bytea[])
             ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        ))
        .await?;
    let texts: Vec<Vec<&str>> = data
        .keys
        .chunks(BATCH)
        .map(|batch| batch.iter().map(Key::as_str).collect())
        .collect();
    let values: Vec<&[u8]> = vec![&data.value[..]; BATCH];
    let (data, raw, texts, values, select, upsert) =
        (&data, &raw, &texts, &values, &select, &upsert);
    let result = rows(
        plan,
        data,
        &store,
        "pg ANY/unnest",
        async || {
            let start = Instant::now();
            for batch in texts {
                let found = raw.query(select, &[black_box(batch)]).await?;
                if found.len() != batch.len() {
                    return Err("a raw batch select missed".into());
                }
            }
            Ok(ns_per_op(start.elapsed(), BATCHES))
        },
        async || {
            let start = Instant::now();
            for batch in texts {
                black_box(raw.execute(upsert, &[batch, values]).await?);
            }
            Ok(ns_per_op(start.elapsed(), BATCHES))
        },
    )
    .await;
    let schema = store.schema().quoted();
    store.close();
    raw.batch_execute(&format!(
        "DROP SCHEMA {schema} CASCADE; DROP SCHEMA {raw_schema} CASCADE;"
    ))
    .await?;
    result
}
