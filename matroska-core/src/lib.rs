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
