//! [`MemoryStore`]: the embedded, bounded, in-process store.

mod lease;
mod tag_table;

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::hash::BuildHasher as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use moka::sync::Cache as Moka;
use parking_lot::Mutex;

use self::lease::Leases;
use self::tag_table::{TagState, TagTable};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::key::Key;
use crate::store::{
    DEFAULT_FILL_WINDOW, FillToken, KeyTtl, Lookup, PutOutcome, Store, check_tags, check_ttl,
};
use crate::tag::Tag;

/// How many invalidated entries a write operation reclaims on the side, by default.
const RECLAIM_CHUNK: usize = 16;
/// Every this many writes, one shard of the tag table is swept of unused tags.
const SWEEP_EVERY: u64 = 256;

/// The embedded store: bounded, in-process, no server needed. The default store of the
/// quickstart and of tests.
///
/// Entries live in a [`moka`] cache (TinyLFU admission, bounded by entry count or by bytes, expiry
/// per entry). Each tag has a shared state holding its invalidation stamp and its reverse index;
/// an entry points at the states of its tags, so a read checks the stamps with a few atomic loads.
/// Invalidation is immediate (stamps), and the invalidated entries' memory is reclaimed in bounded
/// chunks by later writes (or at once by [`MemoryStore::run_pending_tasks`]). Reverse indexes
/// hold weak references, so members whose entry expired, was evicted or replaced are recognised
/// as dead without a lookup and pruned as the index grows.
///
/// Clones share the same entries: a clone is another handle on the same namespace. A fill token
/// is good only for the store (and clones) that issued it.
///
#[doc = include_str!("memory/protocol.md")]
///
/// # Examples
///
/// ```
/// use matroska_core::{Cache, Dep, MemoryStore};
///
/// # futures::executor::block_on(async {
/// let store = MemoryStore::builder().max_entries(10_000).build();
/// let cache = Cache::new(store);
/// cache.put("article:5", &"Hello").dep(Dep::id("article", 5)).await?;
/// assert_eq!(cache.get::<String>("article:5").await?.as_deref(), Some("Hello"));
/// cache.invalidate([Dep::id("article", 5)]).await?;
/// assert_eq!(cache.get::<String>("article:5").await?, None);
/// # Ok::<(), matroska_core::Error>(()) });
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    entries: Moka<Key, Arc<Entry>>,
    tags: TagTable,
    /// The namespace's sequence number; incremented by every invalidation and clear.
    seq: AtomicU64,
    /// Entries filled before this sequence number were cleared.
    cleared_at: AtomicU64,
    writes: AtomicU64,
    /// Invalidated entries waiting to be reclaimed.
    pending: Mutex<VecDeque<(Key, Weak<Entry>)>>,
    clock: Arc<dyn Clock>,
    fill_window: Duration,
    max_value_len: usize,
    reclaim_chunk: usize,
    /// Who issued a fill token: `mem:` and a random id of this store (shared by its clones).
    /// A token of another store, another tier, is refused.
    issuer: Arc<str>,
    /// Refresh leases ([`Store::begin_fill`]).
    leases: Leases,
}

/// A stored entry; its identity (for reclamation) is its allocation.
#[derive(Debug)]
struct Entry {
    /// The sequence number the entry was filled at.
    seq: u64,
    value: Bytes,
    tags: Box<[Arc<TagState>]>,
    ttl: Option<Duration>,
    expires_at: Option<Duration>,
}

/// Configures a [`MemoryStore`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use matroska_core::{MemoryStore, clock::MockClock};
///
/// let clock = MockClock::new();
/// let store = MemoryStore::builder()
///     .max_bytes(64 * 1024 * 1024)
///     .fill_window(Duration::from_secs(30))
///     .clock(clock.clone())
///     .build();
/// # let _ = store;
/// ```
#[derive(Debug)]
#[must_use]
pub struct MemoryStoreBuilder {
    bound: Bound,
    clock: Arc<dyn Clock>,
    fill_window: Duration,
    reclaim_chunk: usize,
}

#[derive(Debug, Clone, Copy)]
enum Bound {
    Entries(u64),
    Bytes(u64),
}

impl MemoryStoreBuilder {
    /// Holds at most this many entries (the default is 100,000).
    ///
    /// # Examples
    ///
    /// ```
    /// let store = matroska_core::MemoryStore::builder().max_entries(500).build();
    /// # let _ = store;
    /// ```
    pub fn max_entries(mut self, entries: u64) -> Self {
        self.bound = Bound::Entries(entries);
        self
    }

    /// Holds at most about this many bytes (keys, values and per-entry overhead). A value larger
    /// than the bound is rejected with [`Error::ValueTooLarge`].
    ///
    /// # Examples
    ///
    /// ```
    /// let store = matroska_core::MemoryStore::builder().max_bytes(1 << 20).build();
    /// # let _ = store;
    /// ```
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.bound = Bound::Bytes(bytes);
        self
    }

    /// The clock for expiry and the fill window (default: the system's monotonic clock).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::{MemoryStore, clock::MockClock};
    ///
    /// let store = MemoryStore::builder().clock(MockClock::new()).build();
    /// # let _ = store;
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How long a fill token stays valid (default [`DEFAULT_FILL_WINDOW`], 60 s): a load that
    /// takes longer is not stored.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let store = matroska_core::MemoryStore::builder().fill_window(Duration::from_secs(5)).build();
    /// # let _ = store;
    /// ```
    pub fn fill_window(mut self, window: Duration) -> Self {
        self.fill_window = window;
        self
    }

    /// How many invalidated entries each write reclaims on the side (default 16, at least 1).
    /// Invalidation itself is immediate whatever this is; it bounds the extra work of a write.
    ///
    /// # Examples
    ///
    /// ```
    /// let store = matroska_core::MemoryStore::builder().reclaim_chunk(4).build();
    /// # let _ = store;
    /// ```
    pub fn reclaim_chunk(mut self, entries: usize) -> Self {
        self.reclaim_chunk = entries.max(1);
        self
    }

    /// Builds the store.
    ///
    /// # Examples
    ///
    /// ```
    /// let store = matroska_core::MemoryStore::builder().build();
    /// # let _ = store;
    /// ```
    pub fn build(self) -> MemoryStore {
        // No eviction listener: it would double the cost of moka's writes. Reverse indexes notice
        // dead members through their weak references instead.
        let mut builder = Moka::builder().expire_after(EntryExpiry);
        let max_value_len = match self.bound {
            Bound::Entries(entries) => {
                builder = builder.max_capacity(entries);
                usize::MAX
            }
            Bound::Bytes(bytes) => {
                builder = builder.max_capacity(bytes).weigher(weigh);
                usize::try_from(bytes).unwrap_or(usize::MAX)
            }
        };
        MemoryStore {
            inner: Arc::new(Inner {
                entries: builder.build(),
                tags: TagTable::new(),
                seq: AtomicU64::new(0),
                cleared_at: AtomicU64::new(0),
                writes: AtomicU64::new(0),
                pending: Mutex::default(),
                clock: self.clock,
                fill_window: self.fill_window,
                max_value_len,
                reclaim_chunk: self.reclaim_chunk,
                issuer: issuer(),
                leases: Leases::default(),
            }),
        }
    }
}

/// A fresh, random issuer for a store's fill tokens: unique within the process (a counter) and
/// unpredictable across processes (hashed with the standard library's randomly keyed hasher).
fn issuer() -> Arc<str> {
    static STORES: AtomicU64 = AtomicU64::new(0);
    let n = STORES.fetch_add(1, Ordering::Relaxed);
    let id = std::hash::RandomState::new().hash_one(n);
    format!("mem:{id:016x}").into()
}

fn weigh(key: &Key, entry: &Arc<Entry>) -> u32 {
    let bytes = key.as_str().len() + entry.value.len() + 16 * entry.tags.len() + 96;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// Tells moka when an entry expires, so that expired entries free their memory. Reads still check
/// expiry on the store's own clock (which tests may drive).
struct EntryExpiry;

impl moka::Expiry<Key, Arc<Entry>> for EntryExpiry {
    fn expire_after_create(&self, _: &Key, entry: &Arc<Entry>, _: Instant) -> Option<Duration> {
        entry.ttl
    }

    fn expire_after_update(
        &self,
        _: &Key,
        entry: &Arc<Entry>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        entry.ttl
    }
}

impl MemoryStore {
    /// A store holding at most 100,000 entries, on the system clock.
    ///
    /// # Examples
    ///
    /// ```
    /// let store = matroska_core::MemoryStore::new();
    /// assert_eq!(store.entry_count(), 0);
    /// ```
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Configures a store.
    ///
    /// # Examples
    ///
    /// ```
    /// let store = matroska_core::MemoryStore::builder().max_entries(10).build();
    /// # let _ = store;
    /// ```
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            bound: Bound::Entries(100_000),
            clock: Arc::new(SystemClock),
            fill_window: DEFAULT_FILL_WINDOW,
            reclaim_chunk: RECLAIM_CHUNK,
        }
    }

    /// An estimate of the number of entries held, including invalidated and expired ones not yet
    /// reclaimed.
    ///
    /// # Examples
    ///
    /// ```
    /// let store = matroska_core::MemoryStore::new();
    /// store.run_pending_tasks();
    /// assert_eq!(store.entry_count(), 0);
    /// ```
    pub fn entry_count(&self) -> u64 {
        self.inner.entries.entry_count()
    }

    /// The number of tags the store keeps state for (stamps and reverse indexes).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_core::MemoryStore::new().tag_count(), 0);
    /// ```
    pub fn tag_count(&self) -> usize {
        self.inner.tags.len()
    }

    /// The number of invalidated entries waiting to be reclaimed.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_core::MemoryStore::new().pending_reclaims(), 0);
    /// ```
    pub fn pending_reclaims(&self) -> usize {
        self.inner.pending.lock().len()
    }

    /// Does all deferred work now: reclaims every invalidated entry, drops the state of unused
    /// tags, and runs moka's maintenance (expiry, eviction).
    ///
    /// # Examples
    ///
    /// ```
    /// let store = matroska_core::MemoryStore::new();
    /// store.run_pending_tasks();
    /// assert_eq!(store.pending_reclaims(), 0);
    /// ```
    pub fn run_pending_tasks(&self) {
        let inner = &self.inner;
        while inner.reclaim(usize::MAX) > 0 {}
        inner.entries.run_pending_tasks();
        inner.tags.sweep_all(inner.clock.now(), inner.fill_window);
    }

    /// Forgets the reverse index of `tag` while its entries stay, as an eviction or a partial
    /// write can make a server store do. For tests of the "metadata loss means misses" invariant.
    #[doc(hidden)]
    pub fn simulate_index_loss(&self, tag: &Tag) {
        if let Some(state) = self.inner.tags.get(tag) {
            state.forget_members();
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.entry_count())
            .field("tags", &self.tag_count())
            .field("seq", &self.inner.seq.load(Ordering::Relaxed))
            .field("fill_window", &self.inner.fill_window)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn now(&self) -> Duration {
        self.clock.now()
    }

    fn token(&self, now: Duration) -> FillToken {
        let ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        FillToken::new(self.seq.load(Ordering::SeqCst), ms).with_snapshot(Arc::clone(&self.issuer))
    }

    /// Whether a fill token cannot be trusted: issued by another store (another tier, another
    /// process), or from this store's future (a sequence number it has not reached, a time its
    /// clock has not reached; forged or from another clock), or older than the fill window (the
    /// stamps it must be checked against may be gone), or older than the last clear.
    fn token_refused(&self, token: &FillToken, now: Duration) -> bool {
        let now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        let window_ms = u64::try_from(self.fill_window.as_millis()).unwrap_or(u64::MAX);
        let why = if token.snapshot() != Some(&*self.issuer) {
            "issued by another store"
        } else if token.seq() > self.seq.load(Ordering::SeqCst) {
            "its sequence number is ahead of the store's"
        } else if token.issued_at_ms() > now_ms {
            "issued in the future of the store's clock"
        } else if now_ms - token.issued_at_ms() >= window_ms {
            "older than the fill window"
        } else if token.seq() < self.cleared_at.load(Ordering::SeqCst) {
            "older than the last clear"
        } else {
            return false;
        };
        tracing::debug!(reason = why, ?token, "memory store: fill token refused");
        true
    }

    /// Whether `entry` was live just before an invalidation changed the stamps of `before` (each
    /// state with its stamp before the change).
    fn was_live_before(&self, entry: &Entry, before: &[(Arc<TagState>, u64)]) -> bool {
        let stamp = |state: &Arc<TagState>| {
            before
                .iter()
                .find(|(ours, _)| Arc::ptr_eq(ours, state))
                .map_or_else(|| state.stamp(), |(_, stamp)| *stamp)
        };
        entry.seq >= self.cleared_at.load(Ordering::SeqCst)
            && entry.tags.iter().all(|state| stamp(state) <= entry.seq)
            && entry.expires_at.is_none_or(|at| at > self.now())
    }

    /// Whether an entry may be served: not expired (the clock is read only for entries with a
    /// TTL), not cleared, and none of its tags invalidated since it was filled.
    fn is_live(&self, entry: &Entry) -> bool {
        entry.seq >= self.cleared_at.load(Ordering::SeqCst)
            && entry.tags.iter().all(|state| state.stamp() <= entry.seq)
            && entry.expires_at.is_none_or(|at| at > self.now())
    }

    /// Reclaims up to `budget` invalidated entries; returns how many it looked at.
    ///
    /// An entry that is gone already (its weak reference is dead) costs nothing. Otherwise the
    /// key is removed only if it still holds that very entry: a key refilled since the
    /// invalidation keeps its fresh entry. (moka may hold a replaced value for a while, so a live
    /// weak reference alone does not prove the key still holds it.) Not atomic: a put racing with
    /// the removal itself can lose its new entry, which is then a miss; never a stale read.
    fn reclaim(&self, budget: usize) -> usize {
        let batch: Vec<(Key, Weak<Entry>)> = {
            let mut pending = self.pending.lock();
            let n = budget.min(pending.len());
            pending.drain(..n).collect()
        };
        for (key, entry) in &batch {
            let Some(entry) = entry.upgrade() else {
                continue;
            };
            if self
                .entries
                .get(key)
                .is_some_and(|current| Arc::ptr_eq(&current, &entry))
            {
                self.entries.invalidate(key);
            }
        }
        batch.len()
    }

    /// Bounded housekeeping on the write path.
    fn after_write(&self) {
        self.reclaim(self.reclaim_chunk);
        if self.writes.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            let pruned = self.tags.sweep_next(self.now(), self.fill_window);
            if pruned > 0 {
                tracing::trace!(pruned, "memory store: dropped unused tag states");
            }
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, key: &Key) -> Result<Lookup> {
        let inner = &self.inner;
        match inner.entries.get(key) {
            Some(entry) if inner.is_live(&entry) => Ok(Lookup::Hit(entry.value.clone())),
            Some(_) => {
                // Stale or expired: remove it (a put racing with this loses its entry to a miss).
                inner.entries.invalidate(key);
                Ok(Lookup::Miss(inner.token(inner.now())))
            }
            None => Ok(Lookup::Miss(inner.token(inner.now()))),
        }
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
        let inner = &self.inner;
        if value.len() > inner.max_value_len {
            return Err(Error::ValueTooLarge {
                size: value.len(),
                limit: inner.max_value_len,
            });
        }
        // The clock is read only when needed: for a token's age or an expiry time.
        let now = (token.is_some() || ttl.is_some()).then(|| inner.now());
        let seq = match token.zip(now) {
            Some((token, now)) => {
                if inner.token_refused(token, now) {
                    return Ok(PutOutcome::Stale);
                }
                token.seq()
            }
            None => inner.seq.load(Ordering::SeqCst),
        };
        let states: Box<[Arc<TagState>]> =
            tags.iter().map(|t| inner.tags.get_or_insert(t)).collect();
        if states.iter().any(|state| state.stamp() > seq) {
            return Ok(PutOutcome::Stale);
        }
        let entry = Arc::new(Entry {
            seq,
            value,
            tags: states,
            ttl,
            expires_at: now.zip(ttl).map(|(now, ttl)| now + ttl),
        });
        for state in &entry.tags {
            state.add_member(key, Arc::downgrade(&entry));
        }
        inner.entries.insert(key.clone(), entry);
        inner.after_write();
        Ok(PutOutcome::Stored)
    }

    async fn delete(&self, key: &Key) -> Result<bool> {
        let inner = &self.inner;
        let removed = inner.entries.remove(key);
        if let Some(entry) = &removed {
            for state in &entry.tags {
                state.remove_member(key, entry);
            }
        }
        inner.after_write();
        Ok(removed.is_some_and(|entry| inner.is_live(&entry)))
    }

    async fn invalidate(&self, tags: &[Tag]) -> Result<u64> {
        let inner = &self.inner;
        let now = inner.now();
        let seq = inner.seq.fetch_add(1, Ordering::SeqCst) + 1;
        // Stamp each tag and take its index, remembering the stamps it had before this call.
        let mut before = Vec::with_capacity(tags.len());
        let mut taken = Vec::with_capacity(tags.len());
        for tag in tags {
            let state = inner.tags.get_or_insert(tag);
            let (stamp, members) = state.invalidate(seq, now);
            taken.push(members);
            before.push((state, stamp));
        }
        // Count the entries that were live until this call: not cleared, expired or invalidated
        // earlier (an entry removed from one tag's index by an earlier invalidation is still a
        // member of its other tags' indexes until reclaimed).
        let live = |entry: &Weak<Entry>| {
            entry
                .upgrade()
                .is_some_and(|entry| inner.was_live_before(&entry, &before))
        };
        let count = if let [members] = taken.as_slice() {
            // One index: each key is a member once.
            members.values().filter(|entry| live(entry)).count()
        } else {
            // Several: a key may be a member of several with different entries (one replaced
            // since), and an entry carrying several of the tags is one. Count keys once.
            let mut keys = HashSet::new();
            for members in &taken {
                keys.extend(
                    members
                        .iter()
                        .filter(|(_, entry)| live(entry))
                        .map(|(key, _)| key),
                );
            }
            keys.len()
        } as u64;
        let mut pending = inner.pending.lock();
        for members in taken {
            // A member taken twice is reclaimed once: the second finds it gone.
            pending.extend(members);
        }
        drop(pending);
        inner.after_write();
        Ok(count)
    }

    async fn ttl(&self, key: &Key) -> Result<KeyTtl> {
        let inner = &self.inner;
        let now = inner.now();
        Ok(match inner.entries.get(key) {
            Some(entry) if inner.is_live(&entry) => match entry.expires_at {
                None => KeyTtl::Persistent,
                Some(at) => KeyTtl::Expires(at.saturating_sub(now)),
            },
            _ => KeyTtl::Missing,
        })
    }

    async fn clear(&self) -> Result<()> {
        let inner = &self.inner;
        let seq = inner.seq.fetch_add(1, Ordering::SeqCst) + 1;
        inner.cleared_at.fetch_max(seq, Ordering::SeqCst);
        inner.entries.invalidate_all();
        inner.pending.lock().clear();
        inner.leases.clear();
        Ok(())
    }

    async fn begin_fill(&self, key: &Key, lease: Option<Duration>) -> Result<Option<FillToken>> {
        let inner = &self.inner;
        let now = inner.now();
        if let Some(length) = lease
            && !inner.leases.take(key, now, length)
        {
            return Ok(None);
        }
        Ok(Some(inner.token(now)))
    }

    fn max_value_len(&self) -> usize {
        self.inner.max_value_len
    }
}

#[cfg(test)]
mod tests;
