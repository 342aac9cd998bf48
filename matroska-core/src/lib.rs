//! # Matroska: a dependency-tracking cache
//!
//! Cache expensive results (query results, rendered lists, API responses) and invalidate them
//! precisely: every entry declares what it depends on, an entity ([`Dep::id`]) or a *scope*, the
//! condition of a filtered list ([`Scopes::condition`]). A write invalidates every entry whose
//! dependencies it touches, including the lists that a new or moved row now enters
//! ([`Scopes::invalidate_for`]). Loads that race with invalidations are never stored.
//!
//! This crate holds the model ([`Key`], [`Dep`], [`Tag`], [`Value`], [`Scopes`]), the typed
//! front end ([`Cache`]), the store contract ([`store::Store`]) and the embedded
//! [`MemoryStore`]. Redis and PostgreSQL stores live in `matroska-redis` and
//! `matroska-postgres`.
//!
//! ```
//! use matroska_core::{Cache, Dep, Loaded, MemoryStore, Scopes};
//!
//! #[derive(Clone, serde::Serialize, serde::Deserialize)]
//! struct Article { id: i64, category: String, published: bool, title: String }
//!
//! # futures::executor::block_on(async {
//! let articles = Scopes::new("article")
//!     .id(|a: &Article| a.id)
//!     .describe(["category", "published"], |a: &Article| (a.category.clone(), a.published));
//! let cache = Cache::new(MemoryStore::new());
//!
//! // Read through the cache: the list depends on its rows and on its filter.
//! let scope = articles.condition([("category", "news".into()), ("published", true.into())])?;
//! let news: Vec<Article> = cache
//!     .get_or_insert_with("news", || async {
//!         let rows = vec![Article { id: 1, category: "news".into(), published: true, title: "Hi".into() }];
//!         let ids: Vec<Dep> = rows.iter().map(|a| Dep::id("article", a.id)).collect();
//!         Ok::<_, std::io::Error>(Loaded::new(rows).deps(ids).dep(scope.clone()))
//!     })
//!     .await?;
//! assert_eq!(news.len(), 1);
//!
//! // An article moves from "tech" into "news": the news list is invalidated.
//! let old = Article { id: 9, category: "tech".into(), published: true, title: "Moved".into() };
//! let new = Article { category: "news".into(), ..old.clone() };
//! cache.invalidate(articles.invalidate_for(Some(&old), Some(&new), Some(&["category"]))).await?;
//! assert!(cache.get::<Vec<Article>>("news").await?.is_none());
//! # Ok::<(), matroska_core::Error>(()) });
//! ```
//!
//! # Consistency
//!
//! Every store follows one protocol (see [`store`]): invalidations stamp their tags with a
//! sequence number, a miss hands out a fill token, a fill whose dependencies were invalidated
//! after its token is rejected, and a read checks the entry's stamps. So no entry survives an
//! invalidation, not even one racing with a load, and losing index metadata only causes misses.
//!
//! # Refresh ahead, fail-safe, item history
//!
//! - [`Cache::fetch_eager`] returns an entry past its refresh point at once and refreshes it in
//!   the background ([`CacheBuilder::refresh_ahead`], [`Loaded::refresh_after`]): a normal
//!   race-safe fill, one per key across processes through the store's refresh lease
//!   ([`Store::begin_fill`]).
//! - [`CacheBuilder::fail_safe`] keeps values past their logical expiry and returns the last good
//!   one, as [`Origin::Stale`], when a load fails or passes its
//!   [soft timeout](CacheBuilder::soft_timeout); never a value that was invalidated.
//! - [`Fetched`] carries `last_retrieved` and `last_modified` from the value's envelope.
//! - `matroska_core::fetchers` (feature `json`, on by default) registers a loader per data type,
//!   keys typed queries canonically, and refreshes the keys read within an idle window ahead of
//!   expiry.
//!
//! # Observability
//!
//! Three layers, from the cheapest to wire up:
//!
//! - **Counters in process**: [`Cache::stats`] returns a [`CacheStats`] snapshot (hits, misses,
//!   loads, fills, rejected fills, shared loads, invalidations, entries removed, decode and store
//!   errors), always on.
//! - **Metrics** (feature `metrics`): every [`Cache`] reports the same counters and a latency
//!   histogram per store operation to the [`metrics`](https://docs.rs/metrics) facade, so any
//!   recorder (Prometheus with `metrics-exporter-prometheus`, StatsD, OpenTelemetry metrics
//!   through a bridge) can export them. Install the recorder before building the cache; name the
//!   cache with [`CacheBuilder::name`]. Every metric carries the labels `cache` (that name,
//!   `"default"` unless set) and `store` ([`Store::name`]: `memory`, `redis`, `postgres`):
//!
//!   | metric | kind | extra labels | mirrors |
//!   | --- | --- | --- | --- |
//!   | `matroska_cache_reads_total` | counter | `outcome`: `hit`, `miss` | `hits`, `misses` |
//!   | `matroska_cache_loads_total` | counter | | `loads` |
//!   | `matroska_cache_coalesced_total` | counter | | `coalesced` |
//!   | `matroska_cache_waits_total` | counter | | `waits` |
//!   | `matroska_cache_shares_refused_total` | counter | | `shares_refused` |
//!   | `matroska_cache_fills_total` | counter | `outcome`: `stored`, `rejected` | `fills`, `fills_rejected` |
//!   | `matroska_cache_invalidations_total` | counter | | `invalidations` |
//!   | `matroska_cache_entries_invalidated_total` | counter | | `entries_invalidated` |
//!   | `matroska_cache_decode_errors_total` | counter | | `decode_errors` |
//!   | `matroska_cache_store_errors_total` | counter | | `store_errors` |
//!   | `matroska_cache_refreshes_total` | counter | | `refreshes` |
//!   | `matroska_cache_refreshes_failed_total` | counter | | `refreshes_failed` |
//!   | `matroska_cache_refreshes_skipped_total` | counter | | `refreshes_skipped` |
//!   | `matroska_cache_stale_served_total` | counter | | `stale_served` |
//!   | `matroska_store_operation_duration_seconds` | histogram | `operation`: `get`, `put`, `delete`, `exists`, `invalidate`, `ttl`, `clear`, `get_many`, `put_many`, `begin_fill`; `outcome`: `ok`, `error` | one sample per store call the cache makes |
//!
//!   The counters count exactly what [`CacheStats`] counts (a test compares the two after a run
//!   that moves every counter); the stores themselves need no feature.
//!
//!   ```
//!   use matroska_core::{Cache, MemoryStore};
//!
//!   // After installing a recorder, e.g. metrics_exporter_prometheus::PrometheusBuilder::new()
//!   // .install_recorder(), whose handle renders the text format for a /metrics route.
//!   let articles = Cache::builder(MemoryStore::new()).name("articles").build();
//!   # let _ = articles;
//!   ```
//!
//! - **Traces**: the cache opens a `tracing` span per call (`matroska.get`, `matroska.fetch`,
//!   `matroska.put`, `matroska.invalidate`, with the fields `store` and `key` or `tags`) at the
//!   debug level, and logs rejected fills, decode errors and failed-open reads as events. They
//!   reach OpenTelemetry the way any `tracing` span does: add the
//!   [`tracing-opentelemetry`](https://docs.rs/tracing-opentelemetry) layer, built on your
//!   OpenTelemetry tracer, to the application's subscriber, with a filter that lets
//!   `matroska_core=debug` through. The spans then nest under the application's request span
//!   and are exported with it. In outline (not compiled here: this crate does not depend on
//!   OpenTelemetry):
//!
//!   ```text
//!   use tracing_subscriber::prelude::*;
//!   let tracer = opentelemetry_otlp::SpanExporter::builder() /* … */;  // your exporter
//!   tracing_subscriber::registry()
//!       .with(tracing_subscriber::EnvFilter::new("info,matroska_core=debug"))
//!       .with(tracing_opentelemetry::layer().with_tracer(tracer))
//!       .init();
//!   ```

#![cfg_attr(docsrs, feature(doc_cfg))]

mod cache;
pub mod clock;
pub mod codec;
mod dep;
mod error;
#[cfg(feature = "json")]
pub mod fetchers;
mod key;
#[cfg(feature = "memory")]
mod memory;
mod scopes;
pub mod store;
pub mod tag;
mod value;

pub use async_trait::async_trait;
pub use bytes::Bytes;

pub use crate::cache::{
    Cache, CacheBuilder, CacheStats, DEFAULT_MAX_VALUE_LEN, Fetched, Loaded, Origin, Put,
};
pub use crate::dep::Dep;
pub use crate::error::{BoxError, Error, Result};
pub use crate::key::{IntoKey, Key};
#[cfg(feature = "memory")]
pub use crate::memory::{MemoryStore, MemoryStoreBuilder};
pub use crate::scopes::Scopes;
pub use crate::store::Store;
pub use crate::tag::Tag;
pub use crate::value::{IntoValues, Value};
