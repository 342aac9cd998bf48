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

use super::batch::Sealed;
use super::flight::{self, Leader, Role, Shared};
use super::policy::Policy;
use super::stats::bump;
use super::telemetry::Op;
use super::{Cache, Fetched, Found, Loaded, Origin};
use crate::codec::{Codec, Meta, open_meta};
use crate::error::{Error, Result};
use crate::key::{IntoKey, Key};
use crate::store::{FillToken, Lookup, Store};

/// The last good value of a key, past its logical expiry: a fail-safe fallback, and the bytes a
/// reload compares with (for `last_modified`).
pub(super) struct Previous<T> {
    pub(super) key: Key,
    pub(super) value: T,
    pub(super) meta: Meta,
    pub(super) bytes: Bytes,
}

/// A live entry past its refresh point: what a background refresh needs.
pub(crate) struct Due {
    pub(crate) meta: Meta,
    pub(crate) bytes: Bytes,
}

/// What a call of `fetch` does after its read: return a value (with a refresh due, if the entry
/// is past its refresh point), or load (leading a flight, or alone).
enum Settled<'a, T> {
    Done(Fetched<T>, Option<Due>),
    Load(Option<Leader<'a>>, Option<FillToken>, Option<Previous<T>>),
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
        self.fetch_key(&key, loader).await.0
    }

    /// `fetch` of a checked key. Also returns the loader when it was not called and the entry is
    /// past its refresh point, for [`Cache::fetch_eager`] to refresh it.
    pub(super) async fn fetch_key<T, F, Fut, E>(
        &self,
        key: &Key,
        loader: F,
    ) -> (Result<Fetched<T>>, Option<(F, Due)>)
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<Loaded<T>, E>>,
        E: Into<Box<dyn StdError + Send + Sync>>,
    {
        let span = tracing::debug_span!(
            "matroska.fetch",
            store = self.inner.store.name(),
            key = %key
        );
        let mut missed = false;
        let mut unused = None;
        let fetched = async {
            match self.settle(key, &mut missed).await? {
                Settled::Done(fetched, due) => {
                    unused = due.map(|due| (loader, due));
                    Ok(fetched)
                }
                Settled::Load(leader, token, previous) => {
                    self.load(key, loader, leader, token, previous).await
                }
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
        (fetched, unused)
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
        // The last good value, when the read found it past its logical expiry (fail-safe).
        let mut previous: Option<Previous<T>> = None;
        loop {
            let token = match self.lookup(key).await? {
                Found::Value(value, meta, bytes) => {
                    let due = Policy::refresh_due(&meta, self.inner.policy.now_ms())
                        .then_some(Due { meta, bytes });
                    return Ok(Settled::Done(Fetched::new(value, Origin::Cache, meta), due));
                }
                Found::Expired(value, meta, bytes) => {
                    let token = self.reload_token(key).await?;
                    previous = Some(Previous {
                        key: key.clone(),
                        value,
                        meta,
                        bytes,
                    });
                    token
                }
                Found::Miss(token) => token,
            };
            *missed = true;
            if alone {
                return Ok(Settled::Load(None, token, previous));
            }
            let seq = token.as_ref().map(FillToken::seq);
            let (outcome, may_share) = match self.inner.flights.join(key, seq) {
                Role::Leader(leader) => return Ok(Settled::Load(Some(leader), token, previous)),
                Role::Alone { passed_by } => {
                    if passed_by {
                        refuse();
                    }
                    return Ok(Settled::Load(None, token, previous));
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
                        && let Ok((value, meta)) =
                            open_meta(&self.inner.codec, self.inner.schema, &shared.bytes)
                    {
                        bump(&counters.coalesced);
                        return Ok(Settled::Done(
                            Fetched::new(value, Origin::Shared, meta),
                            None,
                        ));
                    }
                    // The load may predate an invalidation this call's miss saw, it was not
                    // stored (a dependency was invalidated during the load, or the store failed),
                    // or it is another type under the same key: read again (the stamps decide),
                    // and on a miss load alone.
                    refuse();
                    alone = true;
                }
                // A failed load's error reaches every waiter (an error is not a stale value),
                // unless a fail-safe fallback may stand in.
                Some(Err(err)) => {
                    return self
                        .fall_back(err, previous)
                        .await
                        .map(|fetched| Settled::Done(fetched, None));
                }
                // The leader was cancelled or panicked: try again.
                None => {}
            }
        }
    }

    /// A fill token for reloading a value kept past its logical expiry: the store's
    /// [`Store::begin_fill`]; from a store without it, the token of a miss after deleting the
    /// kept value. `None`: do not store the reload (the store failed open).
    pub(super) async fn reload_token(&self, key: &Key) -> Result<Option<FillToken>> {
        let store = &self.inner.store;
        match self.timed(Op::BeginFill, store.begin_fill(key, None)).await {
            Ok(token) => Ok(token),
            Err(Error::Unsupported { .. }) => {
                let token = async {
                    store.delete(key).await?;
                    match store.get(key).await? {
                        Lookup::Miss(token) => Ok(Some(token)),
                        Lookup::Hit(_) => Ok(None),
                    }
                };
                match token.await {
                    Ok(token) => Ok(token),
                    Err(err) => self.absorb(err, "get").map(|()| None),
                }
            }
            Err(err) => self.absorb(err, "begin_fill").map(|()| None),
        }
    }

    /// Fail-safe: the last good value instead of a failed or timed-out load's error, while it is
    /// within the maximum staleness. Any other error, or no usable fallback: the error.
    ///
    /// The fallback was read before the load; an invalidation (or a delete, a clear) may have
    /// removed it while the load ran. So the store is read again, and the fallback is served only
    /// if the store still holds exactly those bytes: an invalidated value is never served, not
    /// even one invalidated during the call.
    pub(super) async fn fall_back<T>(
        &self,
        err: Error,
        previous: Option<Previous<T>>,
    ) -> Result<Fetched<T>> {
        let fails_safe = matches!(err, Error::Loader(_) | Error::Timeout { .. });
        let Some(previous) = previous else {
            return Err(err);
        };
        if !fails_safe || !self.inner.policy.fallback_usable(&previous.meta) {
            return Err(err);
        }
        match self
            .timed(Op::Get, self.inner.store.get(&previous.key))
            .await
        {
            Ok(Lookup::Hit(bytes)) if bytes == previous.bytes => {
                bump(&self.inner.counters.stale_served);
                tracing::warn!(error = %err, "load failed; serving the last good value (fail-safe)");
                Ok(Fetched::new(previous.value, Origin::Stale, previous.meta))
            }
            Ok(_) => {
                tracing::debug!(error = %err, "load failed; the last good value is gone (invalidated, deleted or replaced)");
                Err(err)
            }
            Err(check) => {
                self.count_store_error();
                tracing::warn!(error = %err, check = %check, "load failed, and the fail-safe value could not be checked");
                Err(err)
            }
        }
    }

    /// Runs the loader within the time limit that applies, catching a panic.
    pub(super) async fn run_loader<T, F, Fut, E>(
        &self,
        loader: F,
        has_fallback: bool,
    ) -> std::result::Result<Result<Loaded<T>>, Box<dyn std::any::Any + Send>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<Loaded<T>, E>>,
        E: Into<Box<dyn StdError + Send + Sync>>,
    {
        bump(&self.inner.counters.loads);
        let run = AssertUnwindSafe(loader()).catch_unwind();
        let outcome = match self.inner.policy.load_limit(has_fallback) {
            Some(limit) => match tokio::time::timeout(limit, run).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    return Ok(Err(Error::Timeout {
                        operation: "load",
                        after: limit,
                    }));
                }
            },
            None => run.await,
        };
        outcome.map(|loaded| loaded.map_err(|err| Error::Loader(Arc::from(err.into()))))
    }

    /// Runs the loader, stores its value when the token allows, and publishes the outcome to the
    /// callers waiting on this load (if it leads a flight). A failed or timed-out load falls
    /// back on `previous` under fail-safe.
    async fn load<T, F, Fut, E>(
        &self,
        key: &Key,
        loader: F,
        leader: Option<Leader<'_>>,
        token: Option<FillToken>,
        previous: Option<Previous<T>>,
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
        let has_fallback = previous
            .as_ref()
            .is_some_and(|p| self.inner.policy.fallback_usable(&p.meta));
        let loaded = match self.run_loader(loader, has_fallback).await {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(err)) => {
                publish(leader, Err(err.clone()));
                return self.fall_back(err, previous).await;
            }
            Err(panic) => {
                publish(leader, Err(Error::LoaderPanicked));
                std::panic::resume_unwind(panic);
            }
        };
        let before = previous.as_ref().map(|p| &p.bytes);
        match self.fill(key, &loaded, token.as_ref(), before).await {
            Ok((bytes, stored, meta)) => {
                publish(leader, Ok(Shared { bytes, stored }));
                Ok(Fetched::new(loaded.value, Origin::Loaded { stored }, meta))
            }
            Err(err) => {
                publish(leader, Err(err.clone()));
                Err(err)
            }
        }
    }

    /// Encodes and validates a loaded value, stamps its times (`last_modified` kept when the
    /// encoded value is byte-identical to `before`'s), and stores it when a token allows.
    /// Returns the envelope for the waiting callers, whether it was stored, and its times.
    pub(super) async fn fill<T: Serialize>(
        &self,
        key: &Key,
        loaded: &Loaded<T>,
        token: Option<&FillToken>,
        before: Option<&Bytes>,
    ) -> Result<(Bytes, bool, Meta)> {
        let inner = &self.inner;
        let Sealed {
            bytes,
            tags,
            ttl,
            meta,
        } = self.seal_loaded(key, loaded, before)?;
        // No token, no store: nothing orders this load against the invalidations that ran
        // since the read failed open.
        let Some(token) = token else {
            return Ok((bytes, false, meta));
        };
        let stored = match self
            .timed(
                Op::Put,
                inner.store.put(key, bytes.clone(), &tags, ttl, Some(token)),
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
        Ok((bytes, stored, meta))
    }
}
