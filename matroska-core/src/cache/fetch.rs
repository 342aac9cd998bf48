//! Reading through the cache: [`Cache::get_or_insert_with`] and [`Cache::fetch`], with single
//! flight (see [`flight`](super::flight) for when a caller may take another caller's load) and
//! race-safe fills.

use std::error::Error as StdError;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument as _;

use super::flight::{self, Leader, Role, Shared};
use super::stats::bump;
use super::telemetry::Op;
use super::{Cache, Fetched, Found, Loaded, Origin};
use crate::codec::{Codec, open, seal};
use crate::dep::entry_tags;
use crate::error::{Error, Result};
use crate::key::{IntoKey, Key};
use crate::store::{FillToken, Store};

/// What a call of `fetch` does after its read: return a value, or load (leading a flight, or
/// alone).
enum Settled<'a, T> {
    Done(Fetched<T>),
    Load(Option<Leader<'a>>, Option<FillToken>),
}

impl<S: Store, C: Codec> Cache<S, C> {
    /// Returns the cached value, or loads, stores and returns it.
    ///
    /// The loader returns the value with its dependencies ([`Loaded`]). Within this process,
    /// concurrent callers for one key share one loader call (single flight): each gets the value,
    /// or the loader's error as [`Error::Loader`]. A caller shares a load only when the store's
    /// fill tokens show that the load began after the caller's own miss, so a caller that starts
    /// after an invalidation returned never gets a value loaded before it; callers that cannot
    /// tell (the store failed open) load on their own.
    ///
    /// The fill is race-safe: if any dependency is invalidated between the miss and the store (a
    /// writer changed a row while the loader read it), the loaded value is returned to its caller
    /// but not stored, so the next read loads again. A load whose read failed open has no fill
    /// token and is never stored. A failure to store after a successful load (the store is down)
    /// is logged, and the value is still returned.
    ///
    /// # Errors
    ///
    /// - [`Error::Loader`] with the loader's error (the next call loads again);
    /// - [`Error::LoaderPanicked`] for callers that waited on a loader that panicked;
    /// - [`Error::InvalidKey`], [`Error::InvalidDep`], [`Error::InvalidTtl`],
    ///   [`Error::ValueTooLarge`], [`Error::TooManyTags`], [`Error::Encode`] for bad input;
    /// - the store's error on the initial read (unless failing open).
    ///
    /// # Panics
    ///
    /// If the loader panics, the panic propagates to this caller (after the callers waiting on it
    /// were told).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::{Cache, Dep, Loaded, MemoryStore};
    ///
    /// # futures::executor::block_on(async {
    /// let cache = Cache::new(MemoryStore::new());
    /// let load = || async { Ok::<_, std::io::Error>(Loaded::new("Hello".to_string()).dep(Dep::id("article", 5))) };
    /// assert_eq!(cache.get_or_insert_with("article:5", load).await?, "Hello");
    /// assert_eq!(cache.stats().loads, 1);
    /// // Cached now: the loader is not called again.
    /// assert_eq!(cache.get_or_insert_with("article:5", load).await?, "Hello");
    /// assert_eq!(cache.stats().loads, 1);
    /// # Ok::<(), matroska_core::Error>(()) });
    /// ```
    pub async fn get_or_insert_with<T, F, Fut, E>(&self, key: impl IntoKey, loader: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<Loaded<T>, E>>,
        E: Into<Box<dyn StdError + Send + Sync>>,
    {
        Ok(self.fetch(key, loader).await?.value)
    }

    /// [`get_or_insert_with`](Cache::get_or_insert_with), also telling where the value came from:
    /// the cache, this call's load (stored or not), or another caller's load.
    ///
    /// # Errors
    ///
    /// As [`get_or_insert_with`](Cache::get_or_insert_with).
    ///
    /// # Panics
    ///
    /// As [`get_or_insert_with`](Cache::get_or_insert_with): a panicking loader's panic
    /// propagates to its caller.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::{Cache, Loaded, MemoryStore, Origin};
    ///
    /// # futures::executor::block_on(async {
    /// let cache = Cache::new(MemoryStore::new());
    /// let load = || async { Ok::<_, std::io::Error>(Loaded::new("page".to_string())) };
    /// let first = cache.fetch("page:1", load).await?;
    /// assert_eq!(first.origin, Origin::Loaded { stored: true });
    /// let second = cache.fetch("page:1", load).await?;
    /// assert!(second.is_hit());
    /// assert_eq!(second.value, "page");
    /// # Ok::<(), matroska_core::Error>(()) });
    /// ```
    pub async fn fetch<T, F, Fut, E>(&self, key: impl IntoKey, loader: F) -> Result<Fetched<T>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<Loaded<T>, E>>,
        E: Into<Box<dyn StdError + Send + Sync>>,
    {
        let key = key.into_key()?;
        let span = tracing::debug_span!(
            "matroska.fetch",
            store = self.inner.store.name(),
            key = %key
        );
        let mut missed = false;
        let fetched = async {
            match self.settle(&key, &mut missed).await? {
                Settled::Done(fetched) => Ok(fetched),
                Settled::Load(leader, token) => self.load(&key, loader, leader, token).await,
            }
        }
        .instrument(span)
        .await;
        // One hit or one miss per call, as the application sees it.
        let counters = &self.inner.counters;
        match &fetched {
            Ok(fetched) if fetched.is_hit() => bump(&counters.hits),
            Ok(_) => bump(&counters.misses),
            Err(_) if missed => bump(&counters.misses),
            Err(_) => {}
        }
        fetched
    }

    /// Reads the store and, on a miss, settles this call's part in single flight: a value (from
    /// the store or another caller's load), or a load of its own (leading a flight or alone).
    async fn settle<T: DeserializeOwned>(
        &self,
        key: &Key,
        missed: &mut bool,
    ) -> Result<Settled<'_, T>> {
        let counters = &self.inner.counters;
        // Set once this call waited on a load it could not use: it then loads alone, so that it
        // waits at most once.
        let mut alone = false;
        let mut waited = false;
        // Counted once per call.
        let mut refused = false;
        let mut refuse = || {
            if !std::mem::replace(&mut refused, true) {
                bump(&counters.shares_refused);
            }
        };
        loop {
            let token = match self.lookup(key).await? {
                Found::Value(value) => {
                    return Ok(Settled::Done(Fetched {
                        value,
                        origin: Origin::Cache,
                    }));
                }
                Found::Miss(token) => token,
            };
            *missed = true;
            if alone {
                return Ok(Settled::Load(None, token));
            }
            let seq = token.as_ref().map(FillToken::seq);
            let (outcome, may_share) = match self.inner.flights.join(key, seq) {
                Role::Leader(leader) => return Ok(Settled::Load(Some(leader), token)),
                Role::Alone { passed_by } => {
                    if passed_by {
                        refuse();
                    }
                    return Ok(Settled::Load(None, token));
                }
                Role::Waiter { outcome, may_share } => (outcome, may_share),
            };
            if !std::mem::replace(&mut waited, true) {
                bump(&counters.waits);
            }
            match flight::wait(outcome).await {
                Some(Ok(shared)) => {
                    if may_share
                        && shared.stored
                        && let Ok(value) = open(&self.inner.codec, self.inner.schema, &shared.bytes)
                    {
                        bump(&counters.coalesced);
                        return Ok(Settled::Done(Fetched {
                            value,
                            origin: Origin::Shared,
                        }));
                    }
                    // The load may predate an invalidation this call's miss saw, it was not
                    // stored (a dependency was invalidated during the load, or the store failed),
                    // or it is another type under the same key: read again (the stamps decide),
                    // and on a miss load alone.
                    refuse();
                    alone = true;
                }
                // A failed load's error reaches every waiter (an error is not a stale value).
                Some(Err(err)) => return Err(err),
                // The leader was cancelled or panicked: try again.
                None => {}
            }
        }
    }

    /// Runs the loader, stores its value when the token allows, and publishes the outcome to the
    /// callers waiting on this load (if it leads a flight).
    async fn load<T, F, Fut, E>(
        &self,
        key: &Key,
        loader: F,
        leader: Option<Leader<'_>>,
        token: Option<FillToken>,
    ) -> Result<Fetched<T>>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<Loaded<T>, E>>,
        E: Into<Box<dyn StdError + Send + Sync>>,
    {
        let publish = |leader: Option<Leader<'_>>, outcome| {
            if let Some(leader) = leader {
                leader.finish(outcome);
            }
        };
        bump(&self.inner.counters.loads);
        let loaded = match AssertUnwindSafe(loader()).catch_unwind().await {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(err)) => {
                let err = Error::Loader(Arc::from(err.into()));
                publish(leader, Err(err.clone()));
                return Err(err);
            }
            Err(panic) => {
                publish(leader, Err(Error::LoaderPanicked));
                std::panic::resume_unwind(panic);
            }
        };
        match self.fill(key, &loaded, token.as_ref()).await {
            Ok((bytes, stored)) => {
                publish(leader, Ok(Shared { bytes, stored }));
                Ok(Fetched {
                    value: loaded.value,
                    origin: Origin::Loaded { stored },
                })
            }
            Err(err) => {
                publish(leader, Err(err.clone()));
                Err(err)
            }
        }
    }

    /// Encodes and validates a loaded value, and stores it when a token allows. Returns the
    /// encoded bytes for the waiting callers, and whether the value was stored.
    async fn fill<T: Serialize>(
        &self,
        key: &Key,
        loaded: &Loaded<T>,
        token: Option<&FillToken>,
    ) -> Result<(Bytes, bool)> {
        let bytes = seal(&self.inner.codec, self.inner.schema, &loaded.value)?;
        let tags = entry_tags(&loaded.deps)?;
        let ttl = loaded.ttl.or(self.inner.default_ttl);
        self.check_value(&bytes, ttl)?;
        // No token, no store: nothing orders this load against the invalidations that ran
        // since the read failed open.
        let Some(token) = token else {
            return Ok((bytes, false));
        };
        let stored = match self
            .timed(
                Op::Put,
                self.inner
                    .store
                    .put(key, bytes.clone(), &tags, ttl, Some(token)),
            )
            .await
        {
            Ok(outcome) => {
                self.count_put(key, outcome);
                outcome.is_stored()
            }
            Err(err) => {
                self.count_store_error();
                tracing::warn!(error = %err, key = %key, "could not store the loaded value");
                false
            }
        };
        Ok((bytes, stored))
    }
}
