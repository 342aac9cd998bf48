//! [`RedisStore`]: the [`Store`] implementation.

use std::fmt;
use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use matroska_core::store::{FillToken, KeyTtl, Lookup, PutOutcome, Store, check_ttl};
use matroska_core::{Error, Key, Result, Tag};
use redis::aio::ConnectionManager;
use redis::{FromRedisValue, ScriptInvocation, Value};

use crate::config::{IntoClient, RedisConfig, RedisStoreBuilder};
use crate::error::{backend, unexpected};
use crate::keys::KeyLayout;
use crate::scripts;

/// The largest value the store accepts: Redis's limit on one string (`proto-max-bulk-len`).
const MAX_VALUE_LEN: usize = 512 * 1024 * 1024;
/// Longer TTLs are shortened to this (about 1,100 years), so that expiry times stay exact.
const MAX_TTL_MS: u64 = 1 << 45;
/// How many tags one invalidation script stamps at most; more are stamped by further scripts.
const TAGS_PER_SCRIPT: usize = 64;
/// How many keys one step of a clear scans.
const SWEEP_COUNT: usize = 1000;
/// A set aside by an invalidation whose client has not worked on it for this long is considered
/// abandoned: later invalidations reclaim it on the side.
const GRACE_MS: u64 = 30_000;
/// How long a reading of the server's clock is used for fill tokens; after that, the next miss
/// reads the clock again (through the `get` script).
const CLOCK_READING_TTL: Duration = Duration::from_secs(30);

/// A [`Store`] on Redis: every operation is one atomic Lua script, one round trip.
///
/// The store implements the consistency protocol of [`matroska_core::store`] with per-tag
/// stamps, a sequence number per namespace and reverse indexes (see [`KeyLayout`] for the keys).
/// An invalidation stamps its tags and removes their dependents in the same script, so it is
/// complete the moment it returns; fills carry a token and are refused if a dependency was
/// invalidated since the miss. A read is one plain `MGET` of the entry and the namespace's state:
/// an entry filled after the namespace's *safe mark* is served at once, an older one (after an
/// index was lost, or an invalidation too large to finish in one script) is checked against its
/// stamps by a script first. An invalidation removes at most [`RedisConfig::reclaim_chunk`]
/// dependents per script: a tag with a million dependents takes several round trips, none of
/// which holds the server for more than a few milliseconds.
///
/// Connections go through a [`ConnectionManager`] (one multiplexed connection, reconnected
/// automatically); each round trip is bounded by the connect and response timeouts, so while
/// Redis is down operations fail quickly with a transient error (see
/// [`CacheBuilder::fail_open`](matroska_core::CacheBuilder::fail_open)).
///
/// Clones share the connection.
///
/// # Examples
///
/// ```no_run
/// use matroska_core::{Cache, Dep};
/// use matroska_redis::RedisStore;
///
/// # async fn example() -> matroska_core::Result<()> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379").prefix("shop").build().await?;
/// let cache = Cache::new(store);
/// cache.put("article:5", &"Hello").dep(Dep::id("article", 5)).await?;
/// assert_eq!(cache.get::<String>("article:5").await?.as_deref(), Some("Hello"));
/// cache.invalidate([Dep::id("article", 5)]).await?;
/// assert_eq!(cache.get::<String>("article:5").await?, None);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    layout: KeyLayout,
    config: RedisConfig,
    /// The server's URL without its password, for `Debug` and logs.
    address: String,
    /// This handle's random id: part of the epoch of a namespace it creates.
    nonce: String,
    /// The fill window in ms, as the scripts take it.
    window_ms: String,
    /// The key of the namespace's state.
    seq_key: String,
    /// The server's clock, as last read: for the fill tokens of misses served by the plain read.
    clock: ServerClock,
}

/// A reading of the server's clock: the client's instant when a reply arrived, and the server's
/// time (ms) read while handling it. The server's time at a later instant is then at least the
/// reading plus the time elapsed: an estimate from below, so that a token never looks younger
/// than it is (a token looking older only makes a fill refused).
#[derive(Debug, Default)]
struct ServerClock {
    reading: Mutex<Option<(Instant, u64)>>,
}

impl ServerClock {
    fn observe(&self, server_ms: u64, received: Instant) {
        if let Ok(mut reading) = self.reading.lock() {
            *reading = Some((received, server_ms));
        }
    }

    /// The server's time now, from below; `None` without a recent reading.
    fn estimate(&self) -> Option<u64> {
        let (at, server_ms) = (*self.reading.lock().ok()?)?;
        let age = at.elapsed();
        if age > CLOCK_READING_TTL {
            return None;
        }
        let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        // Clocks drift apart: take off a millisecond per second (far more than they do).
        let margin = 1 + age_ms / 1000;
        Some((server_ms + age_ms).saturating_sub(margin))
    }
}

/// The namespace's state, `"n u c p epoch"` (see `lua/common.lua`).
struct Namespace<'a>(&'a str);

impl<'a> Namespace<'a> {
    fn parse(text: &'a [u8]) -> Option<Self> {
        std::str::from_utf8(text).ok().map(Self)
    }

    /// The safe mark: an entry filled at or after it may be served as it is.
    fn safe(&self) -> Option<u64> {
        self.0.split(' ').nth(1)?.parse().ok()
    }

    /// The sequence number and epoch, for a fill token.
    fn seq_and_epoch(&self) -> Option<(u64, &'a str)> {
        let mut parts = self.0.split(' ');
        let seq = parts.next()?.parse().ok()?;
        let epoch = parts.nth(3)?;
        (!epoch.is_empty() && parts.next().is_none()).then_some((seq, epoch))
    }
}

/// An entry as stored (see `lua/common.lua`): the seq it was filled at, and where its value starts.
fn parse_entry(blob: &[u8]) -> Option<(u64, usize)> {
    let digits = blob.get(..20)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let seq = std::str::from_utf8(digits).ok()?.parse().ok()?;
    if !matches!(blob.get(20)?, b'p' | b'e') {
        return None;
    }
    let colon = 21 + blob.get(21..)?.iter().position(|&b| b == b':')?;
    let tags_len: usize = std::str::from_utf8(blob.get(21..colon)?)
        .ok()?
        .parse()
        .ok()?;
    let start = colon.checked_add(1)?.checked_add(tags_len)?;
    (start <= blob.len()).then_some((seq, start))
}

impl RedisStore {
    /// Configures a store on the server at `client` (a URL or a [`redis::Client`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> matroska_core::Result<()> {
    /// let store = matroska_redis::RedisStore::builder("redis://127.0.0.1:6379")
    ///     .prefix("shop")
    ///     .build()
    ///     .await?;
    /// # let _ = store; Ok(()) }
    /// ```
    pub fn builder(client: impl IntoClient) -> RedisStoreBuilder {
        RedisStoreBuilder::new(client)
    }

    /// Connects with the default settings (prefix `"matroska"`).
    ///
    /// # Errors
    ///
    /// As [`RedisStoreBuilder::build`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> matroska_core::Result<()> {
    /// let store = matroska_redis::RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// # let _ = store; Ok(()) }
    /// ```
    pub async fn connect(client: impl IntoClient) -> Result<Self> {
        Self::builder(client).build().await
    }

    pub(crate) fn from_parts(
        conn: ConnectionManager,
        layout: KeyLayout,
        config: RedisConfig,
        address: String,
    ) -> Self {
        let window_ms = u64::try_from(config.fill_window.as_millis())
            .unwrap_or(u64::MAX)
            .to_string();
        Self {
            inner: Arc::new(Inner {
                conn,
                seq_key: layout.seq(),
                layout,
                config,
                address,
                nonce: nonce(),
                window_ms,
                clock: ServerClock::default(),
            }),
        }
    }

    /// The key names of this store's namespace.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> matroska_core::Result<()> {
    /// let store = matroska_redis::RedisStore::builder("redis://127.0.0.1").prefix("shop").build().await?;
    /// assert_eq!(store.layout().seq(), "{shop}:seq");
    /// # Ok(()) }
    /// ```
    pub fn layout(&self) -> &KeyLayout {
        &self.inner.layout
    }

    /// The settings the store was built with.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> matroska_core::Result<()> {
    /// let store = matroska_redis::RedisStore::connect("redis://127.0.0.1").await?;
    /// assert_eq!(store.config().prefix, "matroska");
    /// # Ok(()) }
    /// ```
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// The store's connection (a clone of its [`ConnectionManager`]), to run other commands on
    /// the same multiplexed connection.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = matroska_redis::RedisStore::connect("redis://127.0.0.1").await?;
    /// let mut conn = store.connection();
    /// let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
    /// assert_eq!(pong, "PONG");
    /// # Ok(()) }
    /// ```
    pub fn connection(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    /// Invalidates `tags` without waiting for every dependent to be removed.
    ///
    /// The tags are stamped at once, so the invalidation is complete for readers and fills when
    /// this returns, exactly as with [`Store::invalidate`]; but only up to
    /// [`RedisConfig::reclaim_chunk`] dependents are removed now. The others are reclaimed in
    /// bounded chunks by later invalidations or by [`RedisStore::reclaim`] (until then a read of
    /// one of them finds it stale and removes it). Returns how many entries were removed so far.
    ///
    /// # Errors
    ///
    /// The store's error (transient while Redis is unreachable).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use matroska_core::Dep;
    ///
    /// # async fn example() -> matroska_core::Result<()> {
    /// let store = matroska_redis::RedisStore::connect("redis://127.0.0.1").await?;
    /// let hot = Dep::tag("homepage").to_tag()?;
    /// store.invalidate_deferred(&[hot]).await?;
    /// store.reclaim().await?;
    /// # Ok(()) }
    /// ```
    pub async fn invalidate_deferred(&self, tags: &[Tag]) -> Result<u64> {
        self.invalidate_tags(tags, true).await
    }

    /// Reclaims every dependent still waiting after [`RedisStore::invalidate_deferred`] (or an
    /// invalidation whose caller went away), in bounded chunks. Returns how many entries were
    /// removed.
    ///
    /// # Errors
    ///
    /// The store's error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> matroska_core::Result<()> {
    /// let store = matroska_redis::RedisStore::connect("redis://127.0.0.1").await?;
    /// let removed = store.reclaim().await?;
    /// println!("reclaimed {removed} invalidated entries");
    /// # Ok(()) }
    /// ```
    pub async fn reclaim(&self) -> Result<u64> {
        let mut total = 0;
        loop {
            let mut cmd = redis::cmd("ZRANGE");
            cmd.arg(self.inner.layout.pending()).arg(0).arg(15);
            let sets: Vec<String> = self.command("reclaim", &cmd).await?;
            if sets.is_empty() {
                return Ok(total);
            }
            let mut left = sets;
            while !left.is_empty() {
                let (removed, rest) = self.reclaim_sets(&left, false).await?;
                total += removed;
                left = rest;
            }
        }
    }

    /// Deletes every key of the store's namespace (`SCAN MATCH {prefix}:*` and `UNLINK`, a
    /// thousand keys a step): entries, indexes, stamps and the namespace's counters, which
    /// [`Store::clear`] keeps. For tests, demos and decommissioning a namespace; fill tokens
    /// issued before are rejected afterwards (the namespace's epoch goes with it). Returns how
    /// many keys were deleted.
    ///
    /// # Errors
    ///
    /// The store's error; keys deleted before it stay deleted.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> matroska_core::Result<()> {
    /// let store = matroska_redis::RedisStore::builder("redis://127.0.0.1")
    ///     .prefix("demo-1234")
    ///     .build()
    ///     .await?;
    /// // ... run the demo ...
    /// let deleted = store.remove_namespace().await?;
    /// println!("removed {deleted} keys");
    /// # Ok(()) }
    /// ```
    pub async fn remove_namespace(&self) -> Result<u64> {
        let pattern = self.inner.layout.pattern();
        let mut deleted = 0;
        let mut cursor = 0_u64;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, keys): (u64, Vec<String>) = self.command("remove_namespace", &scan).await?;
            if !keys.is_empty() {
                let mut unlink = redis::cmd("UNLINK");
                unlink.arg(&keys);
                let removed: u64 = self.command("remove_namespace", &unlink).await?;
                deleted += removed;
            }
            if next == 0 {
                tracing::debug!(namespace = %self.inner.layout.base(), deleted, "matroska-redis: namespace removed");
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// Loads every script and reads the server's clock (also checks the connection).
    pub(crate) async fn load_scripts(&self) -> Result<()> {
        let mut conn = self.inner.conn.clone();
        for script in scripts::all() {
            script
                .load_async(&mut conn)
                .await
                .map_err(|e| backend("load scripts", e))?;
        }
        let (secs, micros): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut conn)
            .await
            .map_err(|e| backend("read the server's clock", e))?;
        self.inner
            .clock
            .observe(secs * 1000 + micros / 1000, Instant::now());
        warn_if_metadata_can_be_evicted(&mut conn).await;
        Ok(())
    }

    /// Runs a script. The connection's timeouts bound it: the connection attempts (if the
    /// connection was lost) and one reply.
    async fn eval(
        &self,
        operation: &'static str,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<Value> {
        let mut conn = self.inner.conn.clone();
        invocation
            .invoke_async::<Value>(&mut conn)
            .await
            .map_err(|err| backend(operation, err))
    }

    /// Runs a plain command, bounded as [`RedisStore::eval`].
    async fn command<T: FromRedisValue>(
        &self,
        operation: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        let mut conn = self.inner.conn.clone();
        cmd.query_async::<T>(&mut conn)
            .await
            .map_err(|err| backend(operation, err))
    }

    /// Runs the probe script: the remaining life of a live entry in ms, -1 persistent, -2 none.
    async fn probe(&self, operation: &'static str, key: &Key) -> Result<i64> {
        let mut inv = scripts::PROBE.prepare_invoke();
        inv.key(self.inner.layout.entry(key))
            .arg(self.inner.layout.base())
            .arg(&*self.inner.window_ms)
            .arg(key.as_str());
        match self.eval(operation, &inv).await? {
            Value::Int(ms) => Ok(ms),
            other => Err(unexpected(operation, &other)),
        }
    }

    async fn invalidate_tags(&self, tags: &[Tag], defer: bool) -> Result<u64> {
        let tags = distinct(tags);
        let inner = &self.inner;
        let mut removed = 0;
        let mut rounds = 0_u32;
        for batch in tags.chunks(TAGS_PER_SCRIPT) {
            let mut inv = scripts::INVALIDATE.prepare_invoke();
            inv.key(&inner.seq_key)
                .arg(inner.layout.base())
                .arg(&*inner.window_ms)
                .arg(&*inner.nonce)
                .arg(inner.config.reclaim_chunk)
                .arg(GRACE_MS)
                .arg(if defer { "1" } else { "0" });
            for tag in batch {
                inv.arg(*tag);
            }
            let (n, mut aside) =
                removed_and_sets("invalidate", self.eval("invalidate", &inv).await?)?;
            removed += n;
            rounds += 1;
            if defer {
                continue;
            }
            while !aside.is_empty() {
                let (n, rest) = self.reclaim_sets(&aside, true).await?;
                removed += n;
                rounds += 1;
                aside = rest;
            }
        }
        tracing::debug!(
            tags = tags.len(),
            removed,
            rounds,
            defer,
            "redis store: invalidated"
        );
        Ok(removed)
    }

    /// One bounded step over sets aside; returns the entries removed and the sets not done.
    async fn reclaim_sets(&self, sets: &[String], own: bool) -> Result<(u64, Vec<String>)> {
        let inner = &self.inner;
        let mut inv = scripts::RECLAIM.prepare_invoke();
        for set in sets {
            inv.key(set);
        }
        inv.arg(inner.layout.base())
            .arg(&*inner.window_ms)
            .arg(inner.config.reclaim_chunk)
            .arg(if own { "1" } else { "0" });
        removed_and_sets("reclaim", self.eval("reclaim", &inv).await?)
    }
}

impl RedisStore {
    /// The read the plain `MGET` could not decide alone: the `get` script checks an entry filled
    /// before the safe mark against its stamps, creates the namespace, and reads the server's
    /// clock for the fill token of a miss.
    async fn get_checked(&self, key: &Key, entry_key: String) -> Result<Lookup> {
        let inner = &self.inner;
        let mut inv = scripts::GET.prepare_invoke();
        inv.key(entry_key)
            .arg(inner.layout.base())
            .arg(&*inner.window_ms)
            .arg(key.as_str())
            .arg(&*inner.nonce);
        match self.eval("get", &inv).await? {
            Value::BulkString(blob) => match parse_entry(&blob) {
                Some((_, start)) => Ok(Lookup::Hit(Bytes::from(blob).slice(start..))),
                None => Err(unexpected("get", &Value::BulkString(blob))),
            },
            Value::Array(items) => {
                let received = Instant::now();
                let token = token(items)?;
                inner.clock.observe(token.issued_at_ms(), received);
                Ok(Lookup::Miss(token))
            }
            other => Err(unexpected("get", &other)),
        }
    }
}

/// The tags without repeats.
fn distinct(tags: &[Tag]) -> Vec<&str> {
    let mut out: Vec<&str> = tags.iter().map(Tag::as_str).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// A random id for this handle (seeded by the standard library's per-process random keys).
fn nonce() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(now);
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

fn int(operation: &'static str, value: &Value) -> Result<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).map_err(|_| unexpected(operation, value)),
        other => Err(unexpected(operation, other)),
    }
}

fn text(operation: &'static str, value: Value) -> Result<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes)
            .map_err(|e| unexpected(operation, &Value::BulkString(e.into_bytes()))),
        Value::SimpleString(s) => Ok(s),
        other => Err(unexpected(operation, &other)),
    }
}

/// Parses `{removed, set...}`.
fn removed_and_sets(operation: &'static str, reply: Value) -> Result<(u64, Vec<String>)> {
    let Value::Array(items) = reply else {
        return Err(unexpected(operation, &reply));
    };
    let mut items = items.into_iter();
    let removed = match items.next() {
        Some(first) => int(operation, &first)?,
        None => return Err(unexpected(operation, &Value::Array(Vec::new()))),
    };
    let sets = items.map(|v| text(operation, v)).collect::<Result<_>>()?;
    Ok((removed, sets))
}

/// Parses the fill token `{seq, epoch, ms}` of a miss.
fn token(items: Vec<Value>) -> Result<FillToken> {
    if let [seq, Value::BulkString(epoch), ms] = items.as_slice()
        && let Ok(epoch) = std::str::from_utf8(epoch)
    {
        return Ok(FillToken::new(int("get", seq)?, int("get", ms)?).with_snapshot(epoch));
    }
    Err(unexpected("get", &Value::Array(items)))
}

fn ttl_ms(ttl: Option<Duration>) -> u64 {
    ttl.map_or(0, |ttl| {
        // check_ttl guarantees at least 1 ms; round up so an entry never expires early.
        u64::try_from(ttl.as_micros().div_ceil(1000))
            .unwrap_or(u64::MAX)
            .min(MAX_TTL_MS)
    })
}

#[async_trait]
impl Store for RedisStore {
    fn name(&self) -> &'static str {
        crate::error::STORE
    }

    async fn get(&self, key: &Key) -> Result<Lookup> {
        let inner = &self.inner;
        let entry_key = inner.layout.entry(key);
        let mut cmd = redis::cmd("MGET");
        cmd.arg(&entry_key).arg(&inner.seq_key);
        if let Value::Array(mut items) = self.command::<Value>("get", &cmd).await?
            && let (Some(Value::BulkString(state)), Some(entry), None) =
                (items.pop(), items.pop(), items.pop())
            && let Some(ns) = Namespace::parse(&state)
        {
            match entry {
                // Filled after the safe mark: indexed under its tags and not stale.
                Value::BulkString(blob) => {
                    if let Some((seq, start)) = parse_entry(&blob)
                        && ns.safe().is_some_and(|safe| seq >= safe)
                    {
                        return Ok(Lookup::Hit(Bytes::from(blob).slice(start..)));
                    }
                }
                Value::Nil => {
                    if let Some(now_ms) = inner.clock.estimate()
                        && let Some((seq, epoch)) = ns.seq_and_epoch()
                    {
                        let token = FillToken::new(seq, now_ms).with_snapshot(epoch);
                        return Ok(Lookup::Miss(token));
                    }
                }
                _ => {}
            }
        }
        self.get_checked(key, entry_key).await
    }

    async fn put(
        &self,
        key: &Key,
        value: Bytes,
        tags: &[Tag],
        ttl: Option<Duration>,
        token: Option<&FillToken>,
    ) -> Result<PutOutcome> {
        check_ttl(ttl)?;
        if value.len() > MAX_VALUE_LEN {
            return Err(Error::ValueTooLarge {
                size: value.len(),
                limit: MAX_VALUE_LEN,
            });
        }
        let inner = &self.inner;
        let mut inv = scripts::PUT.prepare_invoke();
        inv.key(inner.layout.entry(key))
            .arg(inner.layout.base())
            .arg(&*inner.window_ms)
            .arg(key.as_str())
            .arg(&*inner.nonce)
            .arg(&value[..])
            .arg(ttl_ms(ttl));
        match token {
            Some(token) => inv
                .arg(token.seq())
                .arg(token.snapshot().unwrap_or(""))
                .arg(token.issued_at_ms()),
            None => inv.arg("").arg("").arg(""),
        };
        for tag in distinct(tags) {
            inv.arg(tag);
        }
        match self.eval("put", &inv).await? {
            Value::Int(1) => Ok(PutOutcome::Stored),
            Value::Int(0) => Ok(PutOutcome::Stale),
            other => Err(unexpected("put", &other)),
        }
    }

    async fn delete(&self, key: &Key) -> Result<bool> {
        let inner = &self.inner;
        let mut inv = scripts::DELETE.prepare_invoke();
        inv.key(inner.layout.entry(key))
            .arg(inner.layout.base())
            .arg(&*inner.window_ms)
            .arg(key.as_str());
        match self.eval("delete", &inv).await? {
            Value::Int(n) => Ok(n == 1),
            other => Err(unexpected("delete", &other)),
        }
    }

    async fn invalidate(&self, tags: &[Tag]) -> Result<u64> {
        self.invalidate_tags(tags, false).await
    }

    async fn ttl(&self, key: &Key) -> Result<KeyTtl> {
        Ok(match self.probe("ttl", key).await? {
            -1 => KeyTtl::Persistent,
            ms if ms >= 0 => KeyTtl::Expires(Duration::from_millis(ms.unsigned_abs())),
            _ => KeyTtl::Missing,
        })
    }

    async fn clear(&self) -> Result<()> {
        let inner = &self.inner;
        let mut inv = scripts::CLEAR.prepare_invoke();
        inv.key(&inner.seq_key)
            .arg(inner.layout.base())
            .arg(&*inner.window_ms)
            .arg(&*inner.nonce);
        let mark = int("clear", &self.eval("clear", &inv).await?)?;
        let mut cursor = "0".to_owned();
        let mut steps = 0_u32;
        loop {
            let mut inv = scripts::SWEEP.prepare_invoke();
            inv.key(&inner.seq_key)
                .arg(inner.layout.base())
                .arg(&*inner.window_ms)
                .arg(&cursor)
                .arg(SWEEP_COUNT)
                .arg(mark)
                .arg(inner.config.reclaim_chunk)
                .arg("");
            let Value::Array(items) = self.eval("clear", &inv).await? else {
                return Err(Error::Backend {
                    store: crate::error::STORE,
                    message: "clear: unexpected reply from Redis".to_owned(),
                    transient: false,
                    source: None,
                });
            };
            let mut items = items.into_iter().map(|v| text("clear", v));
            cursor = items.next().unwrap_or_else(|| Ok("0".to_owned()))?;
            steps += 1;
            for drain in items {
                let drain = drain?;
                loop {
                    let mut inv = scripts::SWEEP.prepare_invoke();
                    inv.key(&inner.seq_key)
                        .arg(inner.layout.base())
                        .arg(&*inner.window_ms)
                        .arg(&cursor)
                        .arg(SWEEP_COUNT)
                        .arg(mark)
                        .arg(inner.config.reclaim_chunk)
                        .arg(&drain);
                    steps += 1;
                    let more = match self.eval("clear", &inv).await? {
                        Value::Array(items) => {
                            matches!(items.first(), Some(Value::BulkString(b)) if b == b"1")
                        }
                        other => return Err(unexpected("clear", &other)),
                    };
                    if !more {
                        break;
                    }
                }
            }
            if cursor == "0" {
                break;
            }
        }
        tracing::debug!(steps, "redis store: cleared the namespace");
        Ok(())
    }

    async fn exists(&self, key: &Key) -> Result<bool> {
        Ok(self.probe("exists", key).await? != -2)
    }

    fn max_value_len(&self) -> usize {
        MAX_VALUE_LEN
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("address", &self.inner.address)
            .field("prefix", &self.inner.layout.prefix())
            .field("fill_window", &self.inner.config.fill_window)
            .finish_non_exhaustive()
    }
}

/// Logs a warning when the server may evict keys other than entries (`maxmemory` set with a
/// policy other than `noeviction`): losing both a tag's index and its stamp before the tag is
/// invalidated could then serve an entry carrying it until the entry expires. Servers that refuse
/// `CONFIG GET` (managed services) are not checked.
async fn warn_if_metadata_can_be_evicted(conn: &mut redis::aio::ConnectionManager) {
    let reply: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory*")
        .query_async(conn)
        .await;
    let Ok(pairs) = reply else {
        return;
    };
    let value = |name: &str| {
        pairs
            .chunks(2)
            .find(|pair| pair.first().is_some_and(|n| n == name))
            .and_then(|pair| pair.get(1).cloned())
    };
    let maxmemory = value("maxmemory").unwrap_or_default();
    let policy = value("maxmemory-policy").unwrap_or_default();
    if maxmemory != "0" && !maxmemory.is_empty() && policy != "noeviction" {
        tracing::warn!(
            %policy,
            %maxmemory,
            "Redis may evict matroska's indexes and stamps; an evicted index alone only causes \
             misses, but losing a tag's index and its stamp before the tag is invalidated can \
             serve an entry until it expires: prefer maxmemory-policy noeviction (see the \
             matroska-redis README)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_rounded_up_to_milliseconds_and_bounded() {
        assert_eq!(ttl_ms(None), 0);
        assert_eq!(ttl_ms(Some(Duration::from_millis(1))), 1);
        assert_eq!(ttl_ms(Some(Duration::from_micros(1500))), 2);
        assert_eq!(ttl_ms(Some(Duration::from_secs(600))), 600_000);
        assert_eq!(ttl_ms(Some(Duration::MAX)), MAX_TTL_MS);
    }

    #[test]
    fn tags_are_deduplicated() {
        let a = Tag::parse("g:a").unwrap();
        let b = Tag::parse("g:b").unwrap();
        assert_eq!(distinct(&[a.clone(), b, a]), ["g:a", "g:b"]);
    }

    #[test]
    fn replies_are_parsed_without_panicking() {
        let good = vec![
            Value::Int(42),
            Value::BulkString(b"1-abc".to_vec()),
            Value::Int(7),
        ];
        let token = token(good).unwrap();
        assert_eq!((token.seq(), token.issued_at_ms()), (42, 7));
        assert_eq!(token.snapshot(), Some("1-abc"));
        assert!(super::token(vec![Value::Nil]).is_err());
        assert!(
            super::token(vec![
                Value::Int(-1),
                Value::BulkString(b"e".to_vec()),
                Value::Int(0)
            ])
            .is_err()
        );
        let (n, sets) = removed_and_sets(
            "invalidate",
            Value::Array(vec![
                Value::Int(3),
                Value::BulkString(b"{p}:r:1:g:t".to_vec()),
            ]),
        )
        .unwrap();
        assert_eq!(
            (n, sets.as_slice()),
            (3, ["{p}:r:1:g:t".to_owned()].as_slice())
        );
        assert!(removed_and_sets("invalidate", Value::Nil).is_err());
        assert!(removed_and_sets("invalidate", Value::Array(vec![])).is_err());
    }

    #[test]
    fn entries_and_namespace_state_parse() {
        let blob = b"00000000000000000042e9:\0g:a\0g:b\0value";
        let (seq, start) = parse_entry(blob).unwrap();
        assert_eq!((seq, &blob[start..]), (42, &b"value"[..]));
        let empty = b"00000000000000000007p0:";
        assert_eq!(parse_entry(empty), Some((7, 23)));
        for bad in [
            &b""[..],
            b"0000000000000000004",
            b"0000000000000000004xe0:",
            b"00000000000000000042x0:",
            b"00000000000000000042e5:ab",
            b"00000000000000000042e:",
        ] {
            assert_eq!(parse_entry(bad), None, "{bad:?}");
        }
        let ns = Namespace::parse(b"17 12 3 0 1700-abcd").unwrap();
        assert_eq!(ns.safe(), Some(12));
        assert_eq!(ns.seq_and_epoch(), Some((17, "1700-abcd")));
        assert_eq!(
            Namespace::parse(b"17 12 3 0").unwrap().seq_and_epoch(),
            None
        );
        assert_eq!(Namespace::parse(b"17 x 3 0 e").unwrap().safe(), None);
        assert_eq!(
            Namespace::parse(b"17 12 3 0 e extra")
                .unwrap()
                .seq_and_epoch(),
            None
        );
    }

    #[test]
    fn the_clock_estimate_is_from_below_and_expires() {
        let clock = ServerClock::default();
        assert_eq!(clock.estimate(), None);
        clock.observe(1_000_000, Instant::now());
        let estimate = clock.estimate().unwrap();
        assert!(
            (1_000_000 - 2..1_000_000 + 100).contains(&estimate),
            "{estimate}"
        );
        let long_ago = Instant::now().checked_sub(CLOCK_READING_TTL + Duration::from_secs(1));
        if let Some(long_ago) = long_ago {
            clock.observe(1_000_000, long_ago);
            assert_eq!(clock.estimate(), None);
        }
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce(), nonce());
        assert_eq!(nonce().len(), 16);
    }
}
