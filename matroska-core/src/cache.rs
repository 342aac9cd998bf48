//! [`Cache`]: the typed front end over any [`Store`].

mod batch;
mod builder;
mod fetch;
mod fetched;
mod flight;
mod loaded;
mod policy;
mod put;
mod refresh;
mod stats;
mod telemetry;

use std::borrow::Borrow;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument as _;

pub use self::builder::CacheBuilder;
pub(crate) use self::fetch::Due;
pub use self::fetched::{Fetched, Origin};
use self::flight::Flights;
pub use self::loaded::Loaded;
use self::policy::{DEFAULT_REFRESH_LEASE, Policy};
pub use self::put::Put;
pub(crate) use self::refresh::Peek;
pub use self::stats::CacheStats;
use self::stats::{Counters, add, bump};
use self::telemetry::{Op, Timings};
use crate::clock::UnixClock;
use crate::codec::{Codec, Meta, MsgPack, seal, split};
use crate::dep::{Dep, entry_tags, tags_of};
use crate::error::{Error, Result};
use crate::key::{IntoKey, Key};
use crate::store::{FillToken, KeyTtl, Lookup, PutOutcome, Store, check_ttl};

/// The default limit on an encoded value, in bytes.
pub const DEFAULT_MAX_VALUE_LEN: usize = 32 * 1024 * 1024;

/// A typed, dependency-tracking cache over a [`Store`].
///
/// Values are any `serde` type, encoded by the codec `C` (MessagePack by default) in a versioned
/// envelope. Entries declare [`Dep`]endencies; [`invalidate`](Cache::invalidate) removes every
/// entry that depends on what a write touched. [`get_or_insert_with`](Cache::get_or_insert_with)
/// is the call to use for reads: concurrent callers share one load (unless an invalidation came
/// between their misses: a caller never gets a value older than its own miss), and a load that
/// races with an invalidation of its dependencies is not stored.
///
/// Cloning a `Cache` is cheap: clones share the store, the counters and the in-flight loads.
///
/// # Examples
///
/// ```
/// use matroska_core::{Cache, Dep, Loaded, MemoryStore, Scopes};
///
/// #[derive(serde::Serialize, serde::Deserialize, Clone)]
/// struct Article { id: i64, category: String, published: bool }
///
/// # futures::executor::block_on(async {
/// let scopes = Scopes::new("article")
///     .id(|a: &Article| a.id)
///     .describe(["category", "published"], |a: &Article| (a.category.clone(), a.published));
/// let cache = Cache::new(MemoryStore::new());
///
/// let news = scopes.condition([("category", "news".into()), ("published", true.into())])?;
/// let list: Vec<Article> = cache
///     .get_or_insert_with("articles:news", || async {
///         let rows = vec![Article { id: 1, category: "news".into(), published: true }];
///         let ids = rows.iter().map(|a| Dep::id("article", a.id)).collect::<Vec<_>>();
///         Ok::<_, std::io::Error>(Loaded::new(rows).deps(ids).dep(news.clone()))
///     })
///     .await?;
/// assert_eq!(list.len(), 1);
///
/// // A new published news article enters the list: its scope is invalidated.
/// let new = Article { id: 2, category: "news".into(), published: true };
/// cache.invalidate(scopes.invalidate_for(None, Some(&new), None)).await?;
/// assert!(cache.get::<Vec<Article>>("articles:news").await?.is_none());
/// # Ok::<(), matroska_core::Error>(()) });
/// ```
pub struct Cache<S, C = MsgPack> {
    inner: Arc<Inner<S, C>>,
}

struct Inner<S, C> {
    store: S,
    codec: C,
    schema: u16,
    default_ttl: Option<Duration>,
    fail_open: bool,
    max_value_len: usize,
    flights: Flights,
    counters: Counters,
    policy: Policy,
    /// Keys with a background refresh running in this process.
    refreshing: parking_lot::Mutex<std::collections::HashSet<Key>>,
    timings: Timings,
}

impl<S, C> Clone for Cache<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: Store, C> fmt::Debug for Cache<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("store", &self.inner.store)
            .field("schema", &self.inner.schema)
            .field("default_ttl", &self.inner.default_ttl)
            .field("fail_open", &self.inner.fail_open)
            .finish_non_exhaustive()
    }
}

impl<S: Store> Cache<S, MsgPack> {
    /// A cache over `store` with the default settings (MessagePack, no default TTL, fail closed).
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = matroska_core::Cache::new(matroska_core::MemoryStore::new());
    /// # let _ = cache;
    /// ```
    pub fn new(store: S) -> Self {
        Self::builder(store).build()
    }

    /// Configures a cache over `store`.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = matroska_core::Cache::builder(matroska_core::MemoryStore::new()).build();
    /// # let _ = cache;
    /// ```
    pub fn builder(store: S) -> CacheBuilder<S, MsgPack> {
        CacheBuilder {
            store,
            codec: MsgPack,
            schema: 0,
            default_ttl: None,
            fail_open: false,
            max_value_len: DEFAULT_MAX_VALUE_LEN,
            policy: Policy {
                clock: Arc::new(UnixClock),
                refresh_fraction: None,
                jitter: 0.0,
                refresh_lease: DEFAULT_REFRESH_LEASE,
                max_staleness: None,
                soft_timeout: None,
                hard_timeout: None,
            },
            name: "default".to_owned(),
        }
    }
}

/// What a read found.
enum Found<T> {
    /// A live entry: its value, its envelope's times and its bytes.
    Value(T, Meta, Bytes),
    /// An entry past its logical expiry, kept by fail-safe as a fallback.
    Expired(T, Meta, Bytes),
    /// A miss; the token makes a later fill race-safe. `None`: do not store a fill (the store
    /// failed open, or the entry kept failing to decode).
    Miss(Option<FillToken>),
}

impl<S: Store, C: Codec> Cache<S, C> {
    /// The store under this cache.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::{Cache, MemoryStore};
    ///
    /// let cache = Cache::new(MemoryStore::new());
    /// assert_eq!(cache.store().entry_count(), 0);
    /// ```
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// A snapshot of the counters.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = matroska_core::Cache::new(matroska_core::MemoryStore::new());
    /// assert_eq!(cache.stats().hits, 0);
    /// ```
    pub fn stats(&self) -> CacheStats {
        self.inner.counters.snapshot()
    }

    /// Reads a value. `None` when there is no live entry, and also when the stored bytes no
    /// longer decode as a `T` (the entry is then removed and logged).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`], or the store's error (unless [failing
    /// open](CacheBuilder::fail_open)).
    ///
    /// # Examples
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let cache = matroska_core::Cache::new(matroska_core::MemoryStore::new());
    /// cache.put("k", &42_u32).await?;
    /// assert_eq!(cache.get::<u32>("k").await?, Some(42));
    /// // A type change between put and get is a miss, never a panic.
    /// assert_eq!(cache.get::<String>("k").await?, None);
    /// # Ok::<(), matroska_core::Error>(()) });
    /// ```
    pub async fn get<T: DeserializeOwned>(&self, key: impl IntoKey) -> Result<Option<T>> {
        let key = key.into_key()?;
        let span =
            tracing::debug_span!("matroska.get", store = self.inner.store.name(), key = %key);
        async {
            Ok(match self.lookup(&key).await? {
                Found::Value(value, ..) => {
                    bump(&self.inner.counters.hits);
                    Some(value)
                }
                Found::Expired(..) | Found::Miss(_) => {
                    bump(&self.inner.counters.misses);
                    None
                }
            })
        }
        .instrument(span)
        .await
    }

    /// Whether a live entry exists (it is not decoded).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`], or the store's error (unless failing open).
    ///
    /// # Examples
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let cache = matroska_core::Cache::new(matroska_core::MemoryStore::new());
    /// assert!(!cache.has("k").await?);
    /// cache.put("k", &1).await?;
    /// assert!(cache.has("k").await?);
    /// # Ok::<(), matroska_core::Error>(()) });
    /// ```
    pub async fn has(&self, key: impl IntoKey) -> Result<bool> {
        let key = key.into_key()?;
        if self.inner.policy.max_staleness.is_some() {
            // An entry kept past its logical expiry as a fallback is not live.
            return match self.timed(Op::Get, self.inner.store.get(&key)).await {
                Ok(Lookup::Hit(bytes)) => Ok(split::<C>(self.inner.schema, &bytes)
                    .is_ok_and(|(meta, _)| !Policy::expired(&meta, self.inner.policy.now_ms()))),
                Ok(Lookup::Miss(_)) => Ok(false),
                Err(err) => self.absorb(err, "has").map(|()| false),
            };
        }
        match self.timed(Op::Exists, self.inner.store.exists(&key)).await {
            Ok(found) => Ok(found),
            Err(err) => self.absorb(err, "has").map(|()| false),
        }
    }

    /// Stores a value; add dependencies and a time to live on the returned [`Put`], then await
    /// it. The value is encoded at once.
    ///
    /// # Errors
    ///
    /// (When awaited) [`Error::InvalidKey`], [`Error::InvalidDep`], [`Error::InvalidTtl`],
    /// [`Error::ValueTooLarge`] or [`Error::Encode`] before anything is written; the store's error
    /// (unless failing open).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::{Cache, Dep, Error, MemoryStore};
    ///
    /// # futures::executor::block_on(async {
    /// let cache = Cache::new(MemoryStore::new());
    /// cache.put("article:5", &"Hello").dep(Dep::id("article", 5)).await?;
    /// assert!(matches!(cache.put("", &1).await, Err(Error::InvalidKey { .. })));
    /// # Ok::<(), matroska_core::Error>(()) });
    /// ```
    pub fn put<T: Serialize + ?Sized>(&self, key: impl IntoKey, value: &T) -> Put<'_, S, C> {
        Put {
            cache: self,
            key: key.into_key(),
            value: seal(&self.inner.codec, self.inner.schema, Meta::default(), value),
            deps: Vec::new(),
            ttl: None,
        }
    }

    /// Removes an entry; returns whether a live one was removed.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] or the store's error (always: a lost delete could leave stale data).
    ///
    /// # Examples
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let cache = matroska_core::Cache::new(matroska_core::MemoryStore::new());
    /// cache.put("k", &1).await?;
    /// assert!(cache.delete("k").await?);
    /// assert!(!cache.delete("k").await?);
    /// # Ok::<(), matroska_core::Error>(()) });
    /// ```
    pub async fn delete(&self, key: impl IntoKey) -> Result<bool> {
        let key = key.into_key()?;
        self.timed(Op::Delete, self.inner.store.delete(&key))
            .await
            .inspect_err(|_| self.count_store_error())
    }

    /// The remaining life of an entry: missing, persistent, or the time left.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`], or the store's error (failing open: [`KeyTtl::Missing`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use matroska_core::store::KeyTtl;
    ///
    /// # futures::executor::block_on(async {
    /// let cache = matroska_core::Cache::new(matroska_core::MemoryStore::new());
    /// assert_eq!(cache.ttl("k").await?, KeyTtl::Missing);
    /// cache.put("k", &1).await?;
    /// assert_eq!(cache.ttl("k").await?, KeyTtl::Persistent);
    /// cache.put("k", &1).ttl(Duration::from_secs(60)).await?;
    /// assert!(matches!(cache.ttl("k").await?, KeyTtl::Expires(d) if d <= Duration::from_secs(60)));
    /// # Ok::<(), matroska_core::Error>(()) });
    /// ```
    pub async fn ttl(&self, key: impl IntoKey) -> Result<KeyTtl> {
        let key = key.into_key()?;
        match self.timed(Op::Ttl, self.inner.store.ttl(&key)).await {
            // The store keeps a fail-safe fallback longer than its logical life.
            Ok(KeyTtl::Expires(left)) => Ok(match self.inner.policy.max_staleness {
                None => KeyTtl::Expires(left),
                Some(stale) => match left.checked_sub(stale) {
                    Some(left) if !left.is_zero() => KeyTtl::Expires(left),
                    _ => KeyTtl::Missing,
                },
            }),
            Ok(ttl) => Ok(ttl),
            Err(err) => self.absorb(err, "ttl").map(|()| KeyTtl::Missing),
        }
    }

    /// Removes every entry that depends on one of `deps`, and makes sure no load that started
    /// before this call stores its (possibly stale) result. Returns how many entries depended on
    /// them.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDep`] before anything is invalidated, or the store's error (always, even
    /// when failing open: the caller must know that an invalidation was lost).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::{Cache, Dep, MemoryStore};
    ///
    /// # futures::executor::block_on(async {
    /// let cache = Cache::new(MemoryStore::new());
    /// cache.put("a", &1).dep(Dep::id("author", 7)).await?;
    /// cache.put("b", &2).dep(Dep::id("author", 8)).await?;
    /// assert_eq!(cache.invalidate([Dep::id("author", 7)]).await?, 1);
    /// assert_eq!(cache.get::<i32>("a").await?, None);
    /// assert_eq!(cache.get::<i32>("b").await?, Some(2));
    /// # Ok::<(), matroska_core::Error>(()) });
    /// ```
    pub async fn invalidate<I>(&self, deps: I) -> Result<u64>
    where
        I: IntoIterator,
        I::Item: Borrow<Dep>,
    {
        let deps: Vec<I::Item> = deps.into_iter().collect();
        let tags = tags_of(deps.iter().map(Borrow::borrow))?;
        if tags.is_empty() {
            return Ok(0);
        }
        let span = tracing::debug_span!(
            "matroska.invalidate",
            store = self.inner.store.name(),
            tags = tags.len()
        );
        let removed = self
            .timed(Op::Invalidate, self.inner.store.invalidate(&tags))
            .instrument(span)
            .await
            .inspect_err(|err| {
                self.count_store_error();
                tracing::error!(error = %err, ?tags, "invalidation failed");
            })?;
        let counters = &self.inner.counters;
        bump(&counters.invalidations);
        add(&counters.entries_invalidated, removed);
        tracing::debug!(?tags, removed, "invalidated");
        Ok(removed)
    }

    /// Removes every entry of the store's namespace.
    ///
    /// # Errors
    ///
    /// The store's error (always).
    ///
    /// # Examples
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let cache = matroska_core::Cache::new(matroska_core::MemoryStore::new());
    /// cache.put("k", &1).await?;
    /// cache.clear().await?;
    /// assert!(!cache.has("k").await?);
    /// # Ok::<(), matroska_core::Error>(()) });
    /// ```
    pub async fn clear(&self) -> Result<()> {
        self.timed(Op::Clear, self.inner.store.clear())
            .await
            .inspect_err(|_| self.count_store_error())
    }

    /// Stores an envelope without a token (the caller vouches it is fresh), stamping its times.
    async fn put_bytes(
        &self,
        key: &Key,
        bytes: Bytes,
        deps: &[Dep],
        ttl: Option<Duration>,
    ) -> Result<()> {
        let tags = entry_tags(deps)?;
        let ttl = ttl.or(self.inner.default_ttl);
        check_ttl(ttl)?;
        let (meta, ttl) = self.inner.policy.stamp(key, ttl, None, None, None);
        let mut bytes = Vec::from(bytes);
        crate::codec::restamp(&mut bytes, meta);
        let bytes = Bytes::from(bytes);
        self.check_value(&bytes, ttl)?;
        let span =
            tracing::debug_span!("matroska.put", store = self.inner.store.name(), key = %key);
        match self
            .timed(Op::Put, self.inner.store.put(key, bytes, &tags, ttl, None))
            .instrument(span)
            .await
        {
            Ok(outcome) => {
                self.count_put(key, outcome);
                Ok(())
            }
            Err(err) => self.absorb(err, "put"),
        }
    }

    fn check_value(&self, bytes: &Bytes, ttl: Option<Duration>) -> Result<()> {
        check_ttl(ttl)?;
        if bytes.len() > self.inner.max_value_len {
            return Err(Error::ValueTooLarge {
                size: bytes.len(),
                limit: self.inner.max_value_len,
            });
        }
        Ok(())
    }

    fn count_put(&self, key: &Key, outcome: PutOutcome) {
        let counters = &self.inner.counters;
        match outcome {
            PutOutcome::Stored => bump(&counters.fills),
            PutOutcome::Stale => {
                bump(&counters.fills_rejected);
                tracing::debug!(key = %key, "fill rejected: a dependency was invalidated during the load");
            }
        }
    }

    /// Reads and decodes, removing entries that no longer decode. Counts decode errors and store
    /// errors; the caller counts the hit or the miss, once per call.
    async fn lookup<T: DeserializeOwned>(&self, key: &Key) -> Result<Found<T>> {
        let inner = &self.inner;
        // An undecodable entry is removed and read again (for a fill token); if it keeps coming
        // back undecodable (another deploy writing it), give up caching this read.
        for _ in 0..2 {
            let lookup = match self.timed(Op::Get, inner.store.get(key)).await {
                Ok(lookup) => lookup,
                Err(err) => {
                    self.absorb(err, "get")?;
                    return Ok(Found::Miss(None));
                }
            };
            match lookup {
                Lookup::Miss(token) => return Ok(Found::Miss(Some(token))),
                Lookup::Hit(bytes) => match split::<C>(inner.schema, &bytes)
                    .and_then(|(meta, payload)| Ok((meta, inner.codec.decode(payload)?)))
                {
                    Ok((meta, value)) if Policy::expired(&meta, inner.policy.now_ms()) => {
                        return Ok(Found::Expired(value, meta, bytes));
                    }
                    Ok((meta, value)) => return Ok(Found::Value(value, meta, bytes)),
                    Err(err) => {
                        bump(&inner.counters.decode_errors);
                        tracing::warn!(
                            key = %key,
                            error = %err,
                            source = ?StdError::source(&err),
                            "cached value does not decode; removing it"
                        );
                        if let Err(err) = self.timed(Op::Delete, inner.store.delete(key)).await {
                            self.absorb(err, "delete")?;
                        }
                    }
                },
            }
        }
        Ok(Found::Miss(None))
    }

    /// Awaits a store call, timing it for the latency histogram (with the `metrics` feature).
    async fn timed<T>(&self, op: Op, call: impl Future<Output = Result<T>>) -> Result<T> {
        self.inner.timings.time(op, call).await
    }

    fn count_store_error(&self) {
        bump(&self.inner.counters.store_errors);
    }

    /// Counts a store error; swallows it (logged) when failing open and it is transient.
    fn absorb(&self, err: Error, operation: &str) -> Result<()> {
        self.count_store_error();
        if self.inner.fail_open && err.is_transient() {
            tracing::warn!(error = %err, operation, "store unavailable; failing open");
            Ok(())
        } else {
            Err(err)
        }
    }
}
