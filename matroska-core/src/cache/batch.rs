//! Batch reads and writes: [`Cache::get_many`], [`Cache::put_many`], [`Cache::fetch_many`], one
//! store call each ([`Store::get_many`], [`Store::put_many`]: one round trip where the store can).

use std::error::Error as StdError;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::policy::Policy;
use super::stats::bump;
use super::telemetry::Op;
use super::{Cache, Fetched, Loaded, Origin};
use crate::codec::{Codec, Meta, restamp, seal, split};
use crate::dep::entry_tags;
use crate::error::{Error, Result};
use crate::key::{IntoKey, Key};
use crate::store::{FillToken, Lookup, PutEntry, Store};
use crate::tag::Tag;

/// An encoded entry with its envelope times, ready for [`Store::put`] or [`Store::put_many`].
pub(super) struct Sealed {
    pub(super) bytes: Bytes,
    pub(super) tags: Vec<Tag>,
    pub(super) ttl: Option<std::time::Duration>,
    pub(super) meta: Meta,
}

impl<S: Store, C: Codec> Cache<S, C> {
    /// Reads several values with one store call; the answers are in the order of `keys`. Each
    /// counts as one hit or one miss, as [`get`](Cache::get) does; a value that does not decode
    /// as a `T` is a miss (and is removed).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] before the store is called, or the store's error (unless [failing
    /// open](super::CacheBuilder::fail_open): then every answer is `None`).
    ///
    /// # Examples
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let cache = matroska_core::Cache::new(matroska_core::MemoryStore::new());
    /// cache.put("a", &1).await?;
    /// cache.put("c", &3).await?;
    /// assert_eq!(cache.get_many::<i32>(["a", "b", "c"]).await?, [Some(1), None, Some(3)]);
    /// # Ok::<(), matroska_core::Error>(()) });
    /// ```
    pub async fn get_many<T: DeserializeOwned>(
        &self,
        keys: impl IntoIterator<Item = impl IntoKey>,
    ) -> Result<Vec<Option<T>>> {
        let keys = into_keys(keys)?;
        let found = self.lookup_many(&keys).await?;
        Ok(found
            .into_iter()
            .map(|found| {
                let value = found.ok().map(|(value, _)| value);
                bump(if value.is_some() {
                    &self.inner.counters.hits
                } else {
                    &self.inner.counters.misses
                });
                value
            })
            .collect())
    }

    /// Stores several values with one store call, each with its own dependencies and time to
    /// live (from its [`Loaded`]; the cache's default TTL otherwise), unconditionally as
    /// [`put`](Cache::put) does.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`], [`Error::InvalidDep`], [`Error::InvalidTtl`],
    /// [`Error::ValueTooLarge`] or [`Error::Encode`] for any entry, before anything is written;
    /// the store's error (unless failing open).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::{Cache, Dep, Loaded, MemoryStore};
    ///
    /// # futures::executor::block_on(async {
    /// let cache = Cache::new(MemoryStore::new());
    /// cache
    ///     .put_many([
    ///         ("article:1", Loaded::new("one").dep(Dep::id("article", 1))),
    ///         ("article:2", Loaded::new("two").dep(Dep::id("article", 2))),
    ///     ])
    ///     .await?;
    /// cache.invalidate([Dep::id("article", 1)]).await?;
    /// assert_eq!(
    ///     cache.get_many::<String>(["article:1", "article:2"]).await?,
    ///     [None, Some("two".to_owned())]
    /// );
    /// # Ok::<(), matroska_core::Error>(()) });
    /// ```
    pub async fn put_many<K: IntoKey, T: Serialize>(
        &self,
        entries: impl IntoIterator<Item = (K, Loaded<T>)>,
    ) -> Result<()> {
        let mut keys = Vec::new();
        let mut sealed = Vec::new();
        for (key, loaded) in entries {
            let key = key.into_key()?;
            sealed.push(self.seal_loaded(&key, &loaded, None)?);
            keys.push(key);
        }
        let batch: Vec<PutEntry<'_>> = keys
            .iter()
            .zip(&sealed)
            .map(|(key, entry)| put_entry(key, entry, None))
            .collect();
        match self
            .timed(Op::PutMany, self.inner.store.put_many(&batch))
            .await
        {
            Ok(outcomes) => {
                for (key, outcome) in keys.iter().zip(outcomes) {
                    self.count_put(key, outcome);
                }
                Ok(())
            }
            Err(err) => self.absorb(err, "put_many"),
        }
    }

    /// Reads several keys with one store call, and loads the missing ones with one loader call
    /// that gets the missing keys and returns their values in the same order; the loaded values
    /// are stored with one store call, each with the fill token of its own miss (so a value
    /// whose dependencies were invalidated during the load is returned but not stored, as with
    /// [`fetch`](Cache::fetch)). The answers are in the order of `keys`.
    ///
    /// Unlike `fetch`, concurrent batches do not share loads: each loads its own misses.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`]; [`Error::Loader`] when the loader fails or returns another number
    /// of values than it was asked for; the encoding and validation errors of
    /// [`put_many`](Cache::put_many); the store's error for the read (unless failing open). A
    /// failed store write is logged and counted, not returned (the values are).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::{Cache, Dep, Key, Loaded, MemoryStore};
    ///
    /// # futures::executor::block_on(async {
    /// let cache = Cache::new(MemoryStore::new());
    /// let load = |missing: Vec<Key>| async move {
    ///     let values = missing.iter().map(|key| {
    ///         Loaded::new(key.as_str().len()).dep(Dep::tag(key.as_str()))
    ///     });
    ///     Ok::<_, std::io::Error>(values.collect::<Vec<_>>())
    /// };
    /// let first = cache.fetch_many(["a", "bb"], load).await?;
    /// assert_eq!(first.iter().map(|f| f.value).collect::<Vec<_>>(), [1, 2]);
    /// let again = cache.fetch_many(["a", "bb", "ccc"], load).await?;
    /// assert!(again[0].is_hit() && again[1].is_hit() && !again[2].is_hit());
    /// # Ok::<(), matroska_core::Error>(()) });
    /// ```
    pub async fn fetch_many<T, F, Fut, E>(
        &self,
        keys: impl IntoIterator<Item = impl IntoKey>,
        loader: F,
    ) -> Result<Vec<Fetched<T>>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Vec<Key>) -> Fut,
        Fut: Future<Output = std::result::Result<Vec<Loaded<T>>, E>>,
        E: Into<Box<dyn StdError + Send + Sync>>,
    {
        let keys = into_keys(keys)?;
        let found = self.lookup_many(&keys).await?;
        let mut answers: Vec<Option<Fetched<T>>> = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        let mut tokens = Vec::new();
        for (i, found) in found.into_iter().enumerate() {
            match found {
                Ok((value, meta)) => {
                    bump(&self.inner.counters.hits);
                    answers.push(Some(Fetched::new(value, Origin::Cache, meta)));
                }
                Err(token) => {
                    bump(&self.inner.counters.misses);
                    answers.push(None);
                    missing.push(i);
                    tokens.push(token);
                }
            }
        }
        if missing.is_empty() {
            return Ok(answers.into_iter().flatten().collect());
        }
        bump(&self.inner.counters.loads);
        let wanted: Vec<Key> = missing.iter().map(|&i| keys[i].clone()).collect();
        let loaded = loader(wanted)
            .await
            .map_err(|err| Error::Loader(Arc::from(err.into())))?;
        if loaded.len() != missing.len() {
            let message = format!(
                "fetch_many: the loader returned {} values for {} keys",
                loaded.len(),
                missing.len()
            );
            return Err(Error::Loader(Arc::from(
                Box::<dyn StdError + Send + Sync>::from(message),
            )));
        }
        let sealed = missing
            .iter()
            .zip(&loaded)
            .map(|(&i, loaded)| self.seal_loaded(&keys[i], loaded, None))
            .collect::<Result<Vec<_>>>()?;
        let stored = self.fill_many(&keys, &missing, &tokens, &sealed).await;
        for (((i, loaded), stored), sealed) in
            missing.into_iter().zip(loaded).zip(stored).zip(sealed)
        {
            answers[i] = Some(Fetched::new(
                loaded.value,
                Origin::Loaded { stored },
                sealed.meta,
            ));
        }
        Ok(answers.into_iter().flatten().collect())
    }

    /// Stores loaded values whose miss handed out a token (no token: not stored, as in `fill`).
    /// Returns whether each was stored.
    async fn fill_many(
        &self,
        keys: &[Key],
        missing: &[usize],
        tokens: &[Option<FillToken>],
        sealed: &[Sealed],
    ) -> Vec<bool> {
        let mut batch = Vec::new();
        let mut slots = Vec::new();
        for (n, ((&i, token), entry)) in missing.iter().zip(tokens).zip(sealed).enumerate() {
            if let Some(token) = token {
                batch.push(put_entry(&keys[i], entry, Some(token)));
                slots.push(n);
            }
        }
        let mut stored = vec![false; missing.len()];
        if batch.is_empty() {
            return stored;
        }
        match self
            .timed(Op::PutMany, self.inner.store.put_many(&batch))
            .await
        {
            Ok(outcomes) => {
                for ((entry, outcome), n) in batch.iter().zip(outcomes).zip(slots) {
                    self.count_put(entry.key, outcome);
                    stored[n] = outcome.is_stored();
                }
            }
            Err(err) => {
                self.count_store_error();
                tracing::warn!(error = %err, entries = batch.len(), "could not store the loaded values");
            }
        }
        stored
    }

    /// Encodes and checks a loaded value for a put, and stamps its envelope times (item
    /// history, refresh point, logical expiry; the store's TTL longer by the maximum staleness
    /// under fail-safe). `last_modified` is kept from `before` (the envelope it replaces) when
    /// the encoded value is byte-identical to it.
    pub(super) fn seal_loaded<T: Serialize>(
        &self,
        key: &Key,
        loaded: &Loaded<T>,
        before: Option<&Bytes>,
    ) -> Result<Sealed> {
        let inner = &self.inner;
        let mut bytes = Vec::from(seal(
            &inner.codec,
            inner.schema,
            Meta::default(),
            &loaded.value,
        )?);
        let tags = entry_tags(&loaded.deps)?;
        let ttl = loaded.ttl.or(inner.default_ttl);
        crate::store::check_ttl(ttl)?;
        let modified = before.and_then(|before| {
            let (meta, payload) = split::<C>(inner.schema, before).ok()?;
            let (_, mine) = split::<C>(inner.schema, &bytes).ok()?;
            (payload == mine).then_some(meta.last_modified_ms)
        });
        let (meta, ttl) = inner.policy.stamp(
            key,
            ttl,
            loaded.refresh_after,
            loaded.refresh_jitter,
            modified,
        );
        restamp(&mut bytes, meta);
        let bytes = Bytes::from(bytes);
        self.check_value(&bytes, ttl)?;
        Ok(Sealed {
            bytes,
            tags,
            ttl,
            meta,
        })
    }

    /// Reads and decodes several keys: a value and its envelope times, or the fill token of the
    /// miss (`None`: do not store a fill). Undecodable entries are removed (one store call for
    /// each) and are misses without a token. An entry past its logical expiry (kept as a
    /// fail-safe fallback) is a miss whose token comes from [`Store::begin_fill`], as for a
    /// single read; batches serve no fallback and start no refresh ahead.
    async fn lookup_many<T: DeserializeOwned>(
        &self,
        keys: &[Key],
    ) -> Result<Vec<std::result::Result<(T, Meta), Option<FillToken>>>> {
        let inner = &self.inner;
        let lookups = match self.timed(Op::GetMany, inner.store.get_many(keys)).await {
            Ok(lookups) => lookups,
            Err(err) => {
                self.absorb(err, "get_many")?;
                return Ok(keys.iter().map(|_| Err(None)).collect());
            }
        };
        let mut found = Vec::with_capacity(keys.len());
        for (key, lookup) in keys.iter().zip(lookups) {
            found.push(match lookup {
                Lookup::Miss(token) => Err(Some(token)),
                Lookup::Hit(bytes) => match split::<C>(inner.schema, &bytes)
                    .and_then(|(meta, payload)| Ok((inner.codec.decode(payload)?, meta)))
                {
                    Ok((_, meta)) if Policy::expired(&meta, inner.policy.now_ms()) => {
                        Err(self.reload_token(key).await?)
                    }
                    Ok(found) => Ok(found),
                    Err(err) => {
                        bump(&inner.counters.decode_errors);
                        tracing::warn!(key = %key, error = %err, "cached value does not decode; removing it");
                        if let Err(err) = self.timed(Op::Delete, inner.store.delete(key)).await {
                            self.absorb(err, "delete")?;
                        }
                        Err(None)
                    }
                },
            });
        }
        Ok(found)
    }
}

fn into_keys(keys: impl IntoIterator<Item = impl IntoKey>) -> Result<Vec<Key>> {
    keys.into_iter().map(IntoKey::into_key).collect()
}

fn put_entry<'a>(key: &'a Key, entry: &'a Sealed, token: Option<&'a FillToken>) -> PutEntry<'a> {
    PutEntry {
        key,
        value: entry.bytes.clone(),
        tags: &entry.tags,
        ttl: entry.ttl,
        token,
    }
}
