//! [`RedisStore`]: the [`Store`] implementation.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use matroska_core::store::{
    FillToken, KeyTtl, Lookup, PutEntry, PutOutcome, Store, check_tags, check_ttl,
};
use matroska_core::{Error, Key, Result, Tag};
use redis::aio::ConnectionManager;
use redis::{FromRedisValue, ScriptInvocation, Value};

use crate::clock::ServerClock;
use crate::config::{IntoClient, RedisConfig, RedisStoreBuilder};
use crate::error::{backend, connect_failed, unexpected};
use crate::format::{Entry, State};
use crate::keys::KeyLayout;
use crate::replies::{distinct, int, nonce, removed_and_sets, token, ttl_ms};
use crate::scripts;

/// The largest value the store accepts: Redis's limit on one string (`proto-max-bulk-len`).
pub(crate) const MAX_VALUE_LEN: usize = 512 * 1024 * 1024;
/// How many tags one invalidation script stamps at most; more are stamped by further scripts.
const TAGS_PER_SCRIPT: usize = 64;
/// How many buckets one step of a walk (after a clear, or in housekeeping) scans.
const WALK_COUNT: usize = 1000;
/// How many records one step of housekeeping's pruning looks at.
const PRUNE_COUNT: usize = 1000;
/// A set aside by an invalidation whose client has not worked on it for this long is considered
/// abandoned: later invalidations reclaim it on the side.
const GRACE_MS: u64 = 30_000;

/// A [`Store`] on Redis: a read is one plain `MGET` (most of the time), every other operation one
/// atomic Lua script, one round trip.
///
/// The store implements the consistency protocol of [`matroska_core::store`] with per-tag
/// stamps, a sequence number per namespace, reverse indexes and namespace generations; the
/// crate's [`protocol`](crate::protocol) documentation describes every key and why each shortcut
/// is safe. An invalidation stamps its tags and removes their dependents in the same script, so
/// it is complete the moment it returns; fills carry a token and are refused if a dependency was
/// invalidated since the miss. A read is one plain `MGET` of the entry and the namespace's state:
/// an entry of the current generation filled after the namespace's *safe mark* is served at
/// once, an older one (after an index was lost, or an invalidation too large to finish in one
/// script) is checked against its stamps by a script first. An invalidation removes at most
/// [`RedisConfig::reclaim_chunk`] dependents per script: a tag with a million dependents takes
/// several round trips, none of which holds the server for long.
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
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) conn: ConnectionManager,
    pub(crate) layout: KeyLayout,
    config: RedisConfig,
    /// The server's URL without its password, for `Debug` and logs.
    address: String,
    /// This handle's random id: part of the generation id of a namespace generation it starts.
    pub(crate) nonce: String,
    /// The fill window in ms, as the scripts take it.
    pub(crate) window_ms: String,
    /// How far (µs) the namespace's sequence number may lag the server's clock for a plain
    /// read's miss to use it in a fill token: a hundredth of the fill window, as `TICK_US` in
    /// `lua/common.lua`.
    tick_us: u64,
    /// The key of the namespace's state.
    pub(crate) seq_key: String,
    /// The server's clock, as last read: for the fill tokens of misses served by the plain read.
    clock: ServerClock,
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
        let window = u64::try_from(config.fill_window.as_millis()).unwrap_or(u64::MAX);
        Self {
            inner: Arc::new(Inner {
                conn,
                seq_key: layout.seq(),
                layout,
                config,
                address,
                nonce: nonce(),
                window_ms: window.to_string(),
                tick_us: window.saturating_mul(10),
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
    /// assert_eq!(store.layout().meta(), "{shop}:meta");
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

    /// The namespace's housekeeping, run to completion in bounded steps: reclaims every
    /// dependent still waiting after [`RedisStore::invalidate_deferred`] (or an invalidation
    /// whose caller went away), finishes a pending walk of the namespace (which removes what a
    /// clear or a lost namespace left behind and re-checks entries after a lost index), and
    /// prunes the tag records that protect nothing any more. Invalidations do the same work a
    /// little at a time on the side; call this periodically (every minute, say) to bound memory
    /// however few invalidations there are. Returns how many invalidated entries were removed.
    ///
    /// # Errors
    ///
    /// The store's error; work done before it stays done.
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
                break;
            }
            let mut left = sets;
            while !left.is_empty() {
                let (removed, rest) = self.reclaim_sets(&left, false).await?;
                total += removed;
                left = rest;
            }
        }
        // A walk in progress finishes its pass; one wanted by then (or meanwhile) runs a pass
        // of its own, started now. Each pass is bounded; a loss found during the second waits
        // for the next call (or for invalidations, which walk on the side).
        self.run_to_end("walk", &scripts::WALK, WALK_COUNT).await?;
        self.run_to_end("walk", &scripts::WALK, WALK_COUNT).await?;
        self.run_to_end("prune", &scripts::PRUNE, PRUNE_COUNT)
            .await?;
        Ok(total)
    }

    /// Deletes every key of the store's namespace (`SCAN MATCH {prefix}:*` and `UNLINK`, a
    /// thousand keys a step): entries, indexes, metadata and the namespace's state, which
    /// [`Store::clear`] keeps. For tests, demos and decommissioning a namespace; fill tokens
    /// issued before are refused afterwards (the namespace's generation goes with it). Returns
    /// how many keys were deleted.
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
                .map_err(|e| connect_failed(&self.inner.address, e))?;
        }
        let (secs, micros): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut conn)
            .await
            .map_err(|e| backend("read the server's clock", e))?;
        self.inner
            .clock
            .observe(secs * 1000 + micros / 1000, Instant::now());
        crate::policy::report_eviction_policy(&mut conn).await;
        Ok(())
    }

    /// A script invocation with the arguments every script takes: the namespace, the fill
    /// window and this handle's nonce.
    pub(crate) fn invocation<'a>(&'a self, script: &'a redis::Script) -> ScriptInvocation<'a> {
        let inner = &self.inner;
        let mut inv = script.prepare_invoke();
        inv.arg(inner.layout.base())
            .arg(&*inner.window_ms)
            .arg(&*inner.nonce);
        inv
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
    pub(crate) async fn command<T: FromRedisValue>(
        &self,
        operation: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        let mut conn = self.inner.conn.clone();
        cmd.query_async::<T>(&mut conn)
            .await
            .map_err(|err| backend(operation, err))
    }

    /// Runs a housekeeping script (walk, prune) step by step until it reports its pass done.
    async fn run_to_end(
        &self,
        operation: &'static str,
        script: &redis::Script,
        count: usize,
    ) -> Result<u32> {
        let mut steps = 0_u32;
        loop {
            let mut inv = self.invocation(script);
            inv.key(&self.inner.seq_key).arg(count);
            steps += 1;
            match self.eval(operation, &inv).await? {
                Value::Int(1) => return Ok(steps),
                Value::Int(0) => {}
                other => return Err(unexpected(operation, &other)),
            }
        }
    }

    /// Runs the probe script: the remaining life of a live entry in ms, -1 persistent, -2 none.
    async fn probe(&self, operation: &'static str, key: &Key) -> Result<i64> {
        let mut inv = self.invocation(&scripts::PROBE);
        inv.key(self.inner.layout.entry(key)).arg(key.as_str());
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
            let mut inv = self.invocation(&scripts::INVALIDATE);
            inv.key(&inner.seq_key)
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
        let mut inv = self.invocation(&scripts::RECLAIM);
        for set in sets {
            inv.key(set);
        }
        inv.arg(self.inner.config.reclaim_chunk)
            .arg(if own { "1" } else { "0" });
        removed_and_sets("reclaim", self.eval("reclaim", &inv).await?)
    }

    /// The read the plain read could not decide alone: the `get` script checks an entry filled
    /// before the safe mark against its stamps, starts the namespace (or a new generation of
    /// it), and reads the server's clock for the fill token of a miss.
    pub(crate) async fn get_checked(&self, key: &Key, entry_key: String) -> Result<Lookup> {
        let mut inv = self.invocation(&scripts::GET);
        inv.key(entry_key).arg(key.as_str());
        match self.eval("get", &inv).await? {
            Value::BulkString(blob) => match Entry::parse(&blob) {
                Some(entry) => {
                    let at = entry.value_at;
                    Ok(Lookup::Hit(Bytes::from(blob).slice(at..)))
                }
                None => Err(unexpected("get", &Value::BulkString(blob))),
            },
            Value::Array(items) => {
                let received = Instant::now();
                let token = token(items)?;
                self.inner.clock.observe(token.issued_at_ms(), received);
                Ok(Lookup::Miss(token))
            }
            other => Err(unexpected("get", &other)),
        }
    }

    /// Whether the plain read may serve this entry: of the current generation, filled at or
    /// after the safe mark (then it is in the index of each of its tags, and not stale).
    pub(crate) fn plain_hit(state: &State<'_>, entry: &Entry<'_>) -> bool {
        entry.gen_id == state.gen_id.as_bytes() && entry.seq >= state.safe
    }

    /// The fill token of a miss that the plain read may hand out: with a recent reading of the
    /// server's clock, and a sequence number that does not lag it by more than a tick (the
    /// scripts age tokens on the sequence number).
    pub(crate) fn plain_token(&self, state: &State<'_>) -> Option<FillToken> {
        let now_ms = self.inner.clock.estimate()?;
        let lag = now_ms.saturating_mul(1000).saturating_sub(state.seq);
        (lag <= self.inner.tick_us)
            .then(|| FillToken::new(state.seq, now_ms).with_snapshot(state.gen_id))
    }
}

#[async_trait]
impl Store for RedisStore {
    fn name(&self) -> &'static str {
        crate::error::STORE
    }

    async fn get(&self, key: &Key) -> Result<Lookup> {
        let inner = &self.inner;
        let entry_key = inner.layout.entry(key);
        // One command: the entry and the state (MGET: nil for a key of another type).
        let mut cmd = redis::cmd("MGET");
        cmd.arg(&entry_key).arg(&inner.seq_key);
        if let Value::Array(mut items) = self.command::<Value>("get", &cmd).await?
            && let (Some(Value::BulkString(state)), Some(entry), None) =
                (items.pop(), items.pop(), items.pop())
            && let Some(state) = State::parse(&state)
        {
            match entry {
                Value::BulkString(blob) => {
                    if let Some(parsed) = Entry::parse(&blob)
                        && Self::plain_hit(&state, &parsed)
                    {
                        let at = parsed.value_at;
                        return Ok(Lookup::Hit(Bytes::from(blob).slice(at..)));
                    }
                }
                Value::Nil => {
                    if let Some(token) = self.plain_token(&state) {
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
        check_tags(tags)?;
        if value.len() > MAX_VALUE_LEN {
            return Err(Error::ValueTooLarge {
                size: value.len(),
                limit: MAX_VALUE_LEN,
            });
        }
        let mut inv = self.invocation(&scripts::PUT);
        inv.key(self.inner.layout.entry(key));
        put_args(key, &value, tags, ttl, token, |arg| {
            inv.arg(arg);
        });
        self.put_outcome(self.eval("put", &inv).await?)
    }

    async fn delete(&self, key: &Key) -> Result<bool> {
        let mut inv = self.invocation(&scripts::DELETE);
        inv.key(self.inner.layout.entry(key)).arg(key.as_str());
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

    async fn begin_fill(&self, key: &Key, lease: Option<Duration>) -> Result<Option<FillToken>> {
        let mut inv = self.invocation(&scripts::BEGIN_FILL);
        let lease_ms = lease.map_or(0, |lease| ttl_ms(Some(lease)));
        inv.key(self.inner.layout.lease(key)).arg(lease_ms);
        match self.eval("begin_fill", &inv).await? {
            Value::Int(0) => Ok(None),
            Value::Array(items) => {
                let received = Instant::now();
                let token = token(items)?;
                self.inner.clock.observe(token.issued_at_ms(), received);
                Ok(Some(token))
            }
            other => Err(unexpected("begin_fill", &other)),
        }
    }

    async fn clear(&self) -> Result<()> {
        let mut inv = self.invocation(&scripts::CLEAR);
        inv.key(&self.inner.seq_key);
        int("clear", &self.eval("clear", &inv).await?)?;
        let steps = self.run_to_end("clear", &scripts::WALK, WALK_COUNT).await?;
        tracing::debug!(steps, "redis store: cleared the namespace");
        Ok(())
    }

    async fn exists(&self, key: &Key) -> Result<bool> {
        Ok(self.probe("exists", key).await? != -2)
    }

    fn max_value_len(&self) -> usize {
        MAX_VALUE_LEN
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Lookup>> {
        self.get_many_entries(keys).await
    }

    async fn put_many(&self, entries: &[PutEntry<'_>]) -> Result<Vec<PutOutcome>> {
        self.put_many_entries(entries).await
    }
}

impl RedisStore {
    /// What the `put` script's reply means.
    pub(crate) fn put_outcome(&self, reply: Value) -> Result<PutOutcome> {
        match reply {
            Value::Int(1) => Ok(PutOutcome::Stored),
            Value::Int(0) => Ok(PutOutcome::Stale),
            Value::Int(2) => {
                // Issued later than the server's clock allows: the clock stepped back (or this
                // is another server). Read it again before handing out more tokens.
                tracing::debug!(
                    "redis store: a fill token from the future was refused; reading the server's clock again"
                );
                self.inner.clock.forget();
                Ok(PutOutcome::Stale)
            }
            other => Err(unexpected("put", &other)),
        }
    }
}

/// Passes the `put` script's arguments after the common ones to `push`: the key, the value, the
/// TTL, the token (or three empty strings) and the distinct tags.
pub(crate) fn put_args(
    key: &Key,
    value: &[u8],
    tags: &[Tag],
    ttl: Option<Duration>,
    token: Option<&FillToken>,
    mut push: impl FnMut(&[u8]),
) {
    push(key.as_str().as_bytes());
    push(value);
    push(ttl_ms(ttl).to_string().as_bytes());
    match token {
        Some(token) => {
            push(token.seq().to_string().as_bytes());
            push(token.snapshot().unwrap_or("").as_bytes());
            push(token.issued_at_ms().to_string().as_bytes());
        }
        None => {
            for _ in 0..3 {
                push(b"");
            }
        }
    }
    for tag in distinct(tags) {
        push(tag.as_bytes());
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
