//! Refresh ahead: [`Cache::fetch_eager`] and the background refresh it starts.
//!
//! # Why a refresh is safe
//!
//! A refresh is a fill like any other: its token comes from [`Store::begin_fill`] when the
//! refresh starts, before its loader runs, so an invalidation of the entry's dependencies
//! between that moment and the put makes the store reject the put, exactly as for the load of a
//! miss. Reads never wait for a refresh and never see it until it is stored; an invalidated
//! entry is gone from the store at once, so no read serves it "while refreshing".
//!
//! # How many refreshes
//!
//! At most one per key in this process (a set of keys being refreshed), and one per key across
//! the processes sharing the store while the key's refresh lease runs: `begin_fill` hands out a
//! token only to the caller that took the lease. A lease lasts one refresh interval of the entry
//! (from its load to its refresh point, less the jitter), and never past the entry's logical
//! expiry or [`CacheBuilder::refresh_lease`](crate::CacheBuilder::refresh_lease): a process that
//! read the old entry just before the refreshed one was stored finds the lease still held, and
//! the refreshed entry's own refresh point comes after the lease ran out. A loader slower than
//! the lease may therefore run twice (once in each of two processes); both fills are
//! token-checked.

use std::error::Error as StdError;
use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument as _;

use super::fetch::Due;
use super::policy::Policy;
use super::stats::bump;
use super::telemetry::Op;
use super::{Cache, Fetched, Loaded};
use crate::codec::{Codec, split};
use crate::error::Result;
use crate::key::{IntoKey, Key};
use crate::store::{Lookup, Store};

/// What a look at an entry's refresh point found.
pub(crate) enum Peek {
    /// No live entry (or one past its logical expiry).
    Missing,
    /// Live, not yet due; its refresh point (ms since the epoch, 0: none).
    Fresh(u64),
    /// Live and past its refresh point.
    Due(Due),
}

/// Removes a key from the set of keys being refreshed when its refresh ends (also by a panic).
struct Refreshing<S, C> {
    cache: Cache<S, C>,
    key: Key,
}

impl<S, C> Drop for Refreshing<S, C> {
    fn drop(&mut self) {
        self.cache.inner.refreshing.lock().remove(&self.key);
    }
}

impl<S: Store, C: Codec> Cache<S, C> {
    /// [`fetch`](Cache::fetch) with refresh ahead: a read that finds the entry past its refresh
    /// point (see [`CacheBuilder::refresh_ahead`](crate::CacheBuilder::refresh_ahead) and
    /// [`Loaded::refresh_after`]) returns the cached value at once and starts one background
    /// refresh of the key with `loader` (on the current Tokio runtime; none starts without one).
    /// The refresh stores its value only if no dependency of the entry was invalidated since it
    /// started, like any fill; its outcome shows in the counters (`refreshes`,
    /// `refreshes_failed`, `refreshes_skipped`, `fills`, `fills_rejected`). A miss loads as
    /// `fetch` does, with single flight.
    ///
    /// The loader must be `Send + 'static` (the refresh outlives the call).
    ///
    /// # Errors
    ///
    /// As [`fetch`](Cache::fetch). A failed background refresh is logged and counted, never
    /// returned: the entry stays until it expires.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use matroska_core::{Cache, Loaded, MemoryStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache = Cache::builder(MemoryStore::new())
    ///     .default_ttl(Duration::from_secs(60))
    ///     .refresh_ahead(0.8)
    ///     .build();
    /// let load = || async { Ok::<_, std::io::Error>(Loaded::new("page".to_string())) };
    /// let first = cache.fetch_eager("page:1", load).await?;
    /// assert!(first.last_retrieved.is_some());
    /// // Within 48 s a read is a plain hit; after, it is a hit that also refreshes the entry.
    /// assert!(cache.fetch_eager("page:1", load).await?.is_hit());
    /// # Ok::<(), matroska_core::Error>(()) }).unwrap();
    /// ```
    pub async fn fetch_eager<T, F, Fut, E>(
        &self,
        key: impl IntoKey,
        loader: F,
    ) -> Result<Fetched<T>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Loaded<T>, E>> + Send + 'static,
        E: Into<Box<dyn StdError + Send + Sync>>,
    {
        let key = key.into_key()?;
        let (fetched, unused) = self.fetch_key(&key, loader).await;
        if let Some((loader, due)) = unused {
            self.start_refresh(key, loader, due);
        }
        fetched
    }

    /// Starts a background refresh of `key`, unless one runs in this process or there is no
    /// runtime to run it on.
    pub(super) fn start_refresh<T, F, Fut, E>(&self, key: Key, loader: F, due: Due)
    where
        T: Serialize + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Loaded<T>, E>> + Send + 'static,
        E: Into<Box<dyn StdError + Send + Sync>>,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(key = %key, "refresh due, but no Tokio runtime to run it on");
            return;
        };
        if !self.inner.refreshing.lock().insert(key.clone()) {
            return;
        }
        let guard = Refreshing {
            cache: self.clone(),
            key,
        };
        let span = tracing::debug_span!(
            "matroska.refresh",
            store = self.inner.store.name(),
            key = %guard.key
        );
        runtime.spawn(
            async move {
                guard.cache.refresh(&guard.key, loader, due).await;
                drop(guard);
            }
            .instrument(span),
        );
    }

    /// Now on the cache's clock, in ms since the epoch.
    pub(crate) fn now_ms(&self) -> u64 {
        self.inner.policy.now_ms()
    }

    /// Reads an entry's times without decoding its value: is it due for a refresh?
    pub(crate) async fn peek(&self, key: &Key) -> Result<Peek> {
        let Lookup::Hit(bytes) = self.timed(Op::Get, self.inner.store.get(key)).await? else {
            return Ok(Peek::Missing);
        };
        let Ok((meta, _)) = split::<C>(self.inner.schema, &bytes) else {
            return Ok(Peek::Missing);
        };
        let now = self.now_ms();
        Ok(if Policy::expired(&meta, now) {
            Peek::Missing
        } else if Policy::refresh_due(&meta, now) {
            Peek::Due(Due { meta, bytes })
        } else {
            Peek::Fresh(meta.refresh_at_ms)
        })
    }

    /// Refreshes `key` now, in this task, unless a refresh of it runs in this process already:
    /// the proactive refresh of registered fetchers. Returns whether its loader ran (not when a
    /// refresh runs here already, or another caller holds the lease).
    pub(crate) async fn refresh_here<T, F, Fut, E>(&self, key: &Key, loader: F, due: Due) -> bool
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<Loaded<T>, E>>,
        E: Into<Box<dyn StdError + Send + Sync>>,
    {
        if !self.inner.refreshing.lock().insert(key.clone()) {
            return false;
        }
        let _guard = Refreshing {
            cache: self.clone(),
            key: key.clone(),
        };
        let span = tracing::debug_span!(
            "matroska.refresh",
            store = self.inner.store.name(),
            key = %key
        );
        self.refresh(key, loader, due).instrument(span).await
    }

    /// One refresh: take the lease and a token, load, fill. Returns whether the loader ran.
    async fn refresh<T, F, Fut, E>(&self, key: &Key, loader: F, due: Due) -> bool
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<Loaded<T>, E>>,
        E: Into<Box<dyn StdError + Send + Sync>>,
    {
        let counters = &self.inner.counters;
        let lease = self.inner.policy.lease_for(&due.meta);
        let token = match self
            .timed(Op::BeginFill, self.inner.store.begin_fill(key, Some(lease)))
            .await
        {
            Ok(Some(token)) => token,
            Ok(None) => {
                bump(&counters.refreshes_skipped);
                tracing::debug!("refresh skipped: another caller holds the lease");
                return false;
            }
            Err(err) => {
                self.count_store_error();
                tracing::warn!(error = %err, "refresh not started: no fill token");
                return false;
            }
        };
        bump(&counters.refreshes);
        let loaded = match self.run_loader(loader, false).await {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(err)) => {
                bump(&counters.refreshes_failed);
                tracing::warn!(error = %err, source = ?StdError::source(&err), "refresh failed; the entry stays until it expires");
                return true;
            }
            Err(_panic) => {
                bump(&counters.refreshes_failed);
                tracing::error!("refresh loader panicked; the entry stays until it expires");
                return true;
            }
        };
        if let Err(err) = self
            .fill(key, &loaded, Some(&token), Some(&due.bytes))
            .await
        {
            bump(&counters.refreshes_failed);
            tracing::warn!(error = %err, "refreshed value not stored");
        }
        true
    }
}
