//! Registered fetchers and proactive refresh: eager-cache's job, done with the cache's rules.
//!
//! A [`Fetcher`] is registered once per data type: a name, a loader from a typed query, the
//! entries' time to live and refresh point. [`Fetchers::fetch`] turns a query into its
//! [canonical key](canonical_key) (order-insensitive, escaped) and reads through the cache with
//! refresh ahead ([`Cache::fetch_eager`]). Every key read is remembered for an idle window;
//! [`Fetchers::refresh_due`] (run by the task of [`Fetchers::spawn_refresher`]) refreshes the
//! remembered keys that passed their refresh point, even when nobody reads them right then, at
//! most `max_concurrent` at a time, and forgets the keys nobody read for the idle window: they
//! are left to expire. Every refresh is a normal race-safe fill under the key's refresh lease, so
//! several processes refresh a key once per interval, and a refresh racing an invalidation is
//! not stored.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use matroska_core::{Cache, Loaded, MemoryStore, fetchers::{Fetcher, Fetchers}};
//!
//! #[derive(Clone, serde::Serialize, serde::Deserialize)]
//! struct Forecast { city: String }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::builder(MemoryStore::new()).refresh_ahead(0.75).build();
//! let fetchers = Fetchers::builder(cache)
//!     .register(
//!         Fetcher::new("forecast", |q: Forecast| async move {
//!             Ok::<_, std::io::Error>(Loaded::new(format!("sunny in {}", q.city)))
//!         })
//!         .ttl(Duration::from_secs(60)),
//!     )
//!     .idle_window(Duration::from_secs(600))
//!     .build();
//! let refresher = fetchers.spawn_refresher(Duration::from_secs(1));
//! let got = fetchers.fetch::<_, String>("forecast", Forecast { city: "Oslo".into() }).await?;
//! assert_eq!(got.value, "sunny in Oslo");
//! refresher.stop().await;
//! # Ok::<(), matroska_core::Error>(()) }).unwrap();
//! ```

mod fetcher;
mod query;
mod refresher;

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use self::fetcher::Fetcher;
pub use self::query::canonical_key;
pub use self::refresher::{RefreshReport, Refresher};
use crate::cache::{Cache, Due, Fetched};
use crate::codec::{Codec, MsgPack};
use crate::error::{Error, Result};
use crate::key::Key;
use crate::store::Store;

/// How many keys are remembered for proactive refresh by default.
const DEFAULT_MAX_TRACKED: usize = 100_000;

/// Refreshes one remembered key (its fetcher and query are captured).
type RefreshFn<S, C> = Arc<dyn Fn(Cache<S, C>, Key, Due) -> BoxFuture<'static, bool> + Send + Sync>;

/// A remembered key: when it was last read, its refresh point, how to refresh it.
struct Tracked<S, C> {
    last_read_ms: u64,
    refresh_at_ms: u64,
    refresh: RefreshFn<S, C>,
}

/// A registered fetcher, typed (for [`Fetchers::fetch`]) and JSON-facing (for
/// [`Fetchers::fetch_json`]).
struct Registered<S, C> {
    typed: Arc<dyn Any + Send + Sync>,
    json: Arc<dyn JsonFetch<S, C>>,
}

/// The registered fetchers over one cache. Cloning is cheap (clones share everything).
pub struct Fetchers<S, C = MsgPack> {
    inner: Arc<Inner<S, C>>,
}

struct Inner<S, C> {
    cache: Cache<S, C>,
    registered: HashMap<Arc<str>, Registered<S, C>>,
    tracked: Mutex<HashMap<Key, Tracked<S, C>>>,
    idle_window: Duration,
    max_concurrent: usize,
    max_tracked: usize,
}

impl<S, C> Clone for Fetchers<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: Store, C> fmt::Debug for Fetchers<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.inner.registered.keys().map(|n| &**n).collect();
        names.sort_unstable();
        f.debug_struct("Fetchers")
            .field("fetchers", &names)
            .field("tracked", &self.inner.tracked.lock().len())
            .field("idle_window", &self.inner.idle_window)
            .field("max_concurrent", &self.inner.max_concurrent)
            .finish_non_exhaustive()
    }
}

/// Configures [`Fetchers`].
#[must_use]
pub struct FetchersBuilder<S, C = MsgPack> {
    cache: Cache<S, C>,
    registered: HashMap<Arc<str>, Registered<S, C>>,
    idle_window: Duration,
    max_concurrent: usize,
    max_tracked: usize,
}

impl<S: Store, C> fmt::Debug for FetchersBuilder<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchersBuilder")
            .field("fetchers", &self.registered.len())
            .field("idle_window", &self.idle_window)
            .finish_non_exhaustive()
    }
}

impl<S: Store, C: Codec> Fetchers<S, C> {
    /// Registers fetchers over `cache`.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = matroska_core::Cache::new(matroska_core::MemoryStore::new());
    /// let fetchers = matroska_core::fetchers::Fetchers::builder(cache).build();
    /// # let _ = fetchers;
    /// ```
    pub fn builder(cache: Cache<S, C>) -> FetchersBuilder<S, C> {
        FetchersBuilder {
            cache,
            registered: HashMap::new(),
            idle_window: Duration::from_secs(600),
            max_concurrent: 8,
            max_tracked: DEFAULT_MAX_TRACKED,
        }
    }

    /// The cache under the fetchers.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = matroska_core::Cache::new(matroska_core::MemoryStore::new());
    /// let fetchers = matroska_core::fetchers::Fetchers::builder(cache).build();
    /// assert_eq!(fetchers.cache().stats().loads, 0);
    /// ```
    pub fn cache(&self) -> &Cache<S, C> {
        &self.inner.cache
    }

    /// How many keys are remembered for proactive refresh now.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = matroska_core::Cache::new(matroska_core::MemoryStore::new());
    /// assert_eq!(matroska_core::fetchers::Fetchers::builder(cache).build().tracked(), 0);
    /// ```
    pub fn tracked(&self) -> usize {
        self.inner.tracked.lock().len()
    }

    /// Reads the value of `query` from the fetcher `name` through the cache (with refresh
    /// ahead), and remembers the key for proactive refresh.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownFetcher`] (no such name, or registered with other types),
    /// [`Error::InvalidQuery`] and [`Error::InvalidKey`] from the query's key; otherwise as
    /// [`Cache::fetch`].
    ///
    /// # Examples
    ///
    /// See the [module documentation](self).
    pub async fn fetch<Q, T>(&self, name: &str, query: Q) -> Result<Fetched<T>>
    where
        Q: Serialize + Clone + Send + Sync + 'static,
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let fetcher = self.fetcher::<Q, T>(name)?;
        let key = canonical_key(name, &query)?;
        let fetched = self
            .inner
            .cache
            .fetch_eager(key.clone(), fetcher.loader(query.clone()))
            .await?;
        self.track(key, fetched.refresh_at_ms, move |cache, key, due| {
            let loader = fetcher.loader(query.clone());
            Box::pin(async move { cache.refresh_here(&key, loader, due).await })
        });
        Ok(fetched)
    }

    /// [`fetch`](Self::fetch) by name with a JSON query (deserialized into the fetcher's query
    /// type) and a JSON value: for services that dispatch on a name, such as an HTTP route.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownFetcher`] for a name not registered, [`Error::InvalidQuery`] for a query
    /// that is not the fetcher's query type; otherwise as [`fetch`](Self::fetch).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::{Cache, Error, Loaded, MemoryStore, fetchers::{Fetcher, Fetchers}};
    ///
    /// #[derive(Clone, serde::Serialize, serde::Deserialize)]
    /// struct User { id: u32 }
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let fetchers = Fetchers::builder(Cache::new(MemoryStore::new()))
    ///     .register(Fetcher::new("user", |q: User| async move {
    ///         Ok::<_, std::io::Error>(Loaded::new(format!("user {}", q.id)))
    ///     }))
    ///     .build();
    /// let got = fetchers.fetch_json("user", serde_json::json!({"id": 7})).await?;
    /// assert_eq!(got.value, serde_json::json!("user 7"));
    /// let bad = fetchers.fetch_json("user", serde_json::json!({"id": "x"})).await;
    /// assert!(matches!(bad, Err(Error::InvalidQuery { .. })));
    /// let unknown = fetchers.fetch_json("nobody", serde_json::json!({})).await;
    /// assert!(matches!(unknown, Err(Error::UnknownFetcher { .. })));
    /// # Ok::<(), matroska_core::Error>(()) }).unwrap();
    /// ```
    pub async fn fetch_json(
        &self,
        name: &str,
        query: serde_json::Value,
    ) -> Result<Fetched<serde_json::Value>> {
        let registered = self
            .inner
            .registered
            .get(name)
            .ok_or_else(|| Error::UnknownFetcher {
                name: name.to_owned(),
                detail: String::new(),
            })?;
        let json = Arc::clone(&registered.json);
        json.fetch(self, query).await
    }

    fn fetcher<Q: 'static, T: 'static>(&self, name: &str) -> Result<Fetcher<Q, T>> {
        let registered = self
            .inner
            .registered
            .get(name)
            .ok_or_else(|| Error::UnknownFetcher {
                name: name.to_owned(),
                detail: String::new(),
            })?;
        registered
            .typed
            .downcast_ref::<Fetcher<Q, T>>()
            .cloned()
            .ok_or_else(|| Error::UnknownFetcher {
                name: name.to_owned(),
                detail: format!(
                    " for query type {} and value type {}",
                    std::any::type_name::<Q>(),
                    std::any::type_name::<T>()
                ),
            })
    }

    /// Remembers a key read now.
    fn track(
        &self,
        key: Key,
        refresh_at_ms: u64,
        refresh: impl Fn(Cache<S, C>, Key, Due) -> BoxFuture<'static, bool> + Send + Sync + 'static,
    ) {
        let now = self.inner.cache.now_ms();
        let mut tracked = self.inner.tracked.lock();
        if let Some(known) = tracked.get_mut(&key) {
            known.last_read_ms = now;
            known.refresh_at_ms = refresh_at_ms;
            return;
        }
        if tracked.len() >= self.inner.max_tracked {
            tracing::debug!(key = %key, "fetchers: too many keys remembered; this one is not refreshed proactively");
            return;
        }
        tracked.insert(
            key,
            Tracked {
                last_read_ms: now,
                refresh_at_ms,
                refresh: Arc::new(refresh),
            },
        );
    }
}

impl<S: Store, C: Codec> FetchersBuilder<S, C> {
    /// Registers a fetcher (one of the same name is replaced).
    ///
    /// # Examples
    ///
    /// See the [module documentation](self).
    pub fn register<Q, T>(mut self, fetcher: Fetcher<Q, T>) -> Self
    where
        Q: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let name = Arc::clone(&fetcher.name);
        self.registered.insert(
            Arc::clone(&name),
            Registered {
                typed: Arc::new(fetcher),
                json: Arc::new(Json::<Q, T> {
                    name,
                    types: std::marker::PhantomData,
                }),
            },
        );
        self
    }

    /// How long a key stays remembered for proactive refresh after its last read (default 10
    /// minutes). Keys nobody read for this long are not refreshed: they expire.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = matroska_core::Cache::new(matroska_core::MemoryStore::new());
    /// let fetchers = matroska_core::fetchers::Fetchers::builder(cache)
    ///     .idle_window(std::time::Duration::from_secs(60))
    ///     .build();
    /// # let _ = fetchers;
    /// ```
    pub fn idle_window(mut self, window: Duration) -> Self {
        self.idle_window = window;
        self
    }

    /// The most proactive refreshes running at once (default 8, at least 1).
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = matroska_core::Cache::new(matroska_core::MemoryStore::new());
    /// let fetchers = matroska_core::fetchers::Fetchers::builder(cache).max_concurrent(2).build();
    /// # let _ = fetchers;
    /// ```
    pub fn max_concurrent(mut self, refreshes: usize) -> Self {
        self.max_concurrent = refreshes.max(1);
        self
    }

    /// The most keys remembered for proactive refresh (default 100,000); keys read beyond it
    /// are still cached and refreshed on read, not proactively.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = matroska_core::Cache::new(matroska_core::MemoryStore::new());
    /// let fetchers = matroska_core::fetchers::Fetchers::builder(cache).max_tracked(1000).build();
    /// # let _ = fetchers;
    /// ```
    pub fn max_tracked(mut self, keys: usize) -> Self {
        self.max_tracked = keys;
        self
    }

    /// Builds the registry.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = matroska_core::Cache::new(matroska_core::MemoryStore::new());
    /// let fetchers = matroska_core::fetchers::Fetchers::builder(cache).build();
    /// # let _ = fetchers;
    /// ```
    pub fn build(self) -> Fetchers<S, C> {
        Fetchers {
            inner: Arc::new(Inner {
                cache: self.cache,
                registered: self.registered,
                tracked: Mutex::default(),
                idle_window: self.idle_window,
                max_concurrent: self.max_concurrent,
                max_tracked: self.max_tracked,
            }),
        }
    }
}

/// A fetcher seen through JSON.
trait JsonFetch<S, C>: Send + Sync {
    fn fetch<'a>(
        &'a self,
        fetchers: &'a Fetchers<S, C>,
        query: serde_json::Value,
    ) -> BoxFuture<'a, Result<Fetched<serde_json::Value>>>;
}

struct Json<Q, T> {
    name: Arc<str>,
    types: std::marker::PhantomData<fn() -> (Q, T)>,
}

impl<S, C, Q, T> JsonFetch<S, C> for Json<Q, T>
where
    S: Store,
    C: Codec,
    Q: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn fetch<'a>(
        &'a self,
        fetchers: &'a Fetchers<S, C>,
        query: serde_json::Value,
    ) -> BoxFuture<'a, Result<Fetched<serde_json::Value>>> {
        Box::pin(async move {
            let query: Q = serde_json::from_value(query).map_err(|e| Error::InvalidQuery {
                fetcher: self.name.to_string(),
                reason: e.to_string(),
            })?;
            let fetched = fetchers.fetch::<Q, T>(&self.name, query).await?;
            fetched.try_map(|value| {
                serde_json::to_value(value).map_err(|e| Error::Encode(Arc::new(e)))
            })
        })
    }
}
