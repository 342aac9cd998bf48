//! The store contract: bytes and tags, race-safe fills.
//!
//! A [`Store`] keeps encoded values under [`Key`]s, each with a set of [`Tag`]s, and removes every
//! entry carrying a tag when that tag is invalidated. The typed front end,
//! [`Cache`](crate::Cache), sits on top; applications rarely call a store directly.
//!
//! Below: the protocol every store follows (the invariants, the mechanism, what a fill token
//! promises, what a store must do), then how to implement a store.
//!
#![doc = include_str!("store/protocol.md")]
//!
//! # Implementing a store
//!
//! Implement [`Store`] with one atomic step per operation (a Lua script, one SQL statement, one
//! lock scope), take a namespace so that two caches on one server never see each other, write
//! down how your store keeps each invariant (and the argument for each fast path), and run the
//! conformance suite of `matroska-testkit` against a real server: every bullet of the contracts
//! below is a named case there.
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use matroska_core::store::{FillToken, KeyTtl, Lookup, PutOutcome, Store};
//! use matroska_core::{Key, MemoryStore, Result, Tag};
//!
//! /// A store that logs every invalidation and delegates the rest.
//! #[derive(Debug, Clone)]
//! struct Logged(MemoryStore);
//!
//! #[async_trait::async_trait]
//! impl Store for Logged {
//!     fn name(&self) -> &'static str { "logged-memory" }
//!     async fn get(&self, key: &Key) -> Result<Lookup> { self.0.get(key).await }
//!     async fn put(&self, key: &Key, value: Bytes, tags: &[Tag], ttl: Option<Duration>,
//!                  token: Option<&FillToken>) -> Result<PutOutcome> {
//!         self.0.put(key, value, tags, ttl, token).await
//!     }
//!     async fn delete(&self, key: &Key) -> Result<bool> { self.0.delete(key).await }
//!     async fn invalidate(&self, tags: &[Tag]) -> Result<u64> {
//!         println!("invalidating {tags:?}");
//!         self.0.invalidate(tags).await
//!     }
//!     async fn ttl(&self, key: &Key) -> Result<KeyTtl> { self.0.ttl(key).await }
//!     async fn clear(&self) -> Result<()> { self.0.clear().await }
//! }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::key::Key;
use crate::tag::Tag;

/// How long a fill token stays valid by default: a load that takes longer is not stored.
pub const DEFAULT_FILL_WINDOW: Duration = Duration::from_secs(60);

/// What [`Store::get`] found.
///
/// # Examples
///
/// ```
/// use matroska_core::{Key, MemoryStore, store::{Lookup, Store}};
///
/// # tokio_test_block_on(async {
/// let store = MemoryStore::new();
/// match store.get(&Key::new("k")?).await? {
///     Lookup::Hit(bytes) => println!("{} bytes", bytes.len()),
///     Lookup::Miss(token) => println!("miss; fill with {token:?}"),
/// }
/// # Ok::<(), matroska_core::Error>(()) });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output { futures::executor::block_on(f) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The entry's bytes.
    Hit(Bytes),
    /// No live entry; the token makes a later [`Store::put`] race-safe.
    Miss(FillToken),
}

/// Proof of when a miss happened; a [`Store::put`] that presents it is rejected if one of the
/// entry's tags was invalidated since (Facebook memcache's leases, generalised to tags).
///
/// Tokens are opaque to applications. Stores fill in the namespace's sequence number at the miss,
/// the time of issue (milliseconds on the store's clock) and a snapshot saying who issued it and
/// whatever else the store needs (a random id of a `MemoryStore`, the namespace's epoch in Redis,
/// PostgreSQL's transaction snapshot). A store refuses a token it did not issue. See [what a fill
/// token promises](self#what-a-fill-token-promises).
///
/// # Examples
///
/// ```
/// use matroska_core::store::FillToken;
///
/// let token = FillToken::new(41, 1_700_000_000_000).with_snapshot("100:104:101");
/// assert_eq!(token.seq(), 41);
/// assert_eq!(token.snapshot(), Some("100:104:101"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FillToken {
    seq: u64,
    issued_at_ms: u64,
    snapshot: Option<Arc<str>>,
}

impl FillToken {
    /// A token for sequence number `seq`, issued at `issued_at_ms` on the store's clock.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = matroska_core::store::FillToken::new(1, 2);
    /// assert_eq!((token.seq(), token.issued_at_ms()), (1, 2));
    /// ```
    pub fn new(seq: u64, issued_at_ms: u64) -> Self {
        Self {
            seq,
            issued_at_ms,
            snapshot: None,
        }
    }

    /// Attaches a store-specific snapshot.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = matroska_core::store::FillToken::new(1, 2).with_snapshot("s");
    /// assert_eq!(token.snapshot(), Some("s"));
    /// ```
    #[must_use]
    pub fn with_snapshot(mut self, snapshot: impl Into<Arc<str>>) -> Self {
        self.snapshot = Some(snapshot.into());
        self
    }

    /// The namespace's sequence number when the miss happened.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_core::store::FillToken::new(7, 0).seq(), 7);
    /// ```
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// When the token was issued, in milliseconds on the store's clock.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_core::store::FillToken::new(7, 9).issued_at_ms(), 9);
    /// ```
    pub fn issued_at_ms(&self) -> u64 {
        self.issued_at_ms
    }

    /// The store-specific snapshot, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_core::store::FillToken::new(7, 9).snapshot(), None);
    /// ```
    pub fn snapshot(&self) -> Option<&str> {
        self.snapshot.as_deref()
    }
}

/// What [`Store::put`] did.
///
/// # Examples
///
/// ```
/// use matroska_core::store::PutOutcome;
///
/// assert!(PutOutcome::Stored.is_stored());
/// assert!(!PutOutcome::Stale.is_stored());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The entry is stored.
    Stored,
    /// Rejected: a tag was invalidated after the fill token was issued, or the token expired.
    Stale,
}

impl PutOutcome {
    /// Whether the entry was stored.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(matroska_core::store::PutOutcome::Stored.is_stored());
    /// ```
    pub fn is_stored(self) -> bool {
        self == Self::Stored
    }
}

/// The remaining life of a key, as [`Store::ttl`] reports it (FastPgCache's and Redis's `-2`,
/// `-1` and seconds).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use matroska_core::store::KeyTtl;
///
/// assert_eq!(KeyTtl::Missing.as_redis_seconds(), -2);
/// assert_eq!(KeyTtl::Persistent.as_redis_seconds(), -1);
/// assert_eq!(KeyTtl::Expires(Duration::from_millis(1500)).as_redis_seconds(), 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTtl {
    /// No live entry under this key.
    Missing,
    /// The entry never expires.
    Persistent,
    /// The entry expires after this long.
    Expires(Duration),
}

impl KeyTtl {
    /// The Redis convention: `-2` missing, `-1` persistent, else whole seconds left, rounded up
    /// (an entry with 0.4 s left reports 1, never 0 while it can still be read).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use matroska_core::store::KeyTtl;
    ///
    /// assert_eq!(KeyTtl::Expires(Duration::from_millis(400)).as_redis_seconds(), 1);
    /// ```
    pub fn as_redis_seconds(self) -> i64 {
        match self {
            Self::Missing => -2,
            Self::Persistent => -1,
            Self::Expires(left) => {
                let secs = left.as_millis().div_ceil(1000);
                i64::try_from(secs).unwrap_or(i64::MAX)
            }
        }
    }
}

/// The most tags one entry may carry. Every read of an entry that needs its full check, and
/// every put, costs work per tag, so the number is bounded; a list of more rows than this should
/// depend on its scope or on [`Dep::kind`](crate::Dep::kind) rather than on each row.
pub const MAX_TAGS_PER_ENTRY: usize = 1024;

/// Checks the tags of an entry before anything is written: at most [`MAX_TAGS_PER_ENTRY`].
///
/// # Errors
///
/// [`Error::TooManyTags`] when there are more.
///
/// # Examples
///
/// ```
/// use matroska_core::{Dep, store::{MAX_TAGS_PER_ENTRY, check_tags}};
///
/// let tags: Vec<_> = (0..3).map(|i| Dep::id("row", i).to_tag()).collect::<Result<_, _>>()?;
/// assert!(check_tags(&tags).is_ok());
/// let many: Vec<_> = (0..=MAX_TAGS_PER_ENTRY as i64)
///     .map(|i| Dep::id("row", i).to_tag())
///     .collect::<Result<_, _>>()?;
/// assert!(check_tags(&many).is_err());
/// # Ok::<(), matroska_core::Error>(())
/// ```
pub fn check_tags(tags: &[Tag]) -> Result<()> {
    if tags.len() > MAX_TAGS_PER_ENTRY {
        return Err(Error::TooManyTags {
            count: tags.len(),
            limit: MAX_TAGS_PER_ENTRY,
        });
    }
    Ok(())
}

/// Checks a time to live before anything is written: `None` (no expiry) or at least 1 ms.
///
/// # Errors
///
/// [`Error::InvalidTtl`] for a zero duration, or one under a millisecond (stores count time in
/// milliseconds).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use matroska_core::store::check_ttl;
///
/// assert!(check_ttl(None).is_ok());
/// assert!(check_ttl(Some(Duration::from_millis(1))).is_ok());
/// assert!(check_ttl(Some(Duration::ZERO)).is_err());
/// ```
pub fn check_ttl(ttl: Option<Duration>) -> Result<()> {
    match ttl {
        Some(ttl) if ttl < Duration::from_millis(1) => Err(Error::InvalidTtl { ttl }),
        _ => Ok(()),
    }
}

/// A cache store: encoded values under keys, each entry with tags; invalidating a tag removes
/// every entry that carries it. Object-safe: `Arc<dyn Store>` is a store too.
///
/// See the [module documentation](self) for the protocol every store follows and how to write
/// one. The contract bullets below are each a case of the `matroska-testkit` conformance suite
/// (its name in brackets).
#[async_trait]
pub trait Store: fmt::Debug + Send + Sync + 'static {
    /// A short name for logs and errors: `"memory"`, `"redis"`, `"postgres"`.
    fn name(&self) -> &'static str;

    /// Looks a key up.
    ///
    /// Contract:
    /// - a stored, live entry is a [`Lookup::Hit`] with exactly the stored bytes
    ///   \[`basic::put_then_get`, `edge_cases::*`\];
    /// - a missing, expired, deleted or invalidated entry is a [`Lookup::Miss`] with a fresh token
    ///   \[`basic::missing_key_is_a_miss`, `expiry::expired_entry_is_never_served`,
    ///   `basic::the_token_of_a_miss_after_expiry_or_delete_fills_the_entry`\];
    /// - an entry carrying a tag whose stamp is newer than the entry is a miss, even when the
    ///   tag's index or stamp was lost, and after housekeeping \[`invariants::inv3_*`\].
    async fn get(&self, key: &Key) -> Result<Lookup>;

    /// Stores `value` under `key` with `tags`, replacing any previous entry and its tags.
    ///
    /// Contract:
    /// - `ttl: None` means no expiry; `Some(d)` expires after `d` (≥ 1 ms, else
    ///   [`Error::InvalidTtl`] before anything is written) \[`expiry::*`\];
    /// - more than [`MAX_TAGS_PER_ENTRY`] tags is [`Error::TooManyTags`] before anything is
    ///   written \[`edge_cases::too_many_tags_are_rejected_and_nothing_is_lost`\];
    /// - with a `token` from [`Store::get`], the put is [`PutOutcome::Stale`] and changes nothing
    ///   (an entry already there keeps its value, TTL and tags) if any of `tags` was invalidated
    ///   after the token was issued, the namespace was cleared since, the token is older than the
    ///   fill window, or another store or namespace issued it \[`invariants::inv2_*`,
    ///   `namespaces::clear_rejects_*`,
    ///   `namespaces::a_fill_token_from_another_namespace_is_refused`\];
    /// - without a token the entry is stored unconditionally (the caller vouches it is fresh)
    ///   \[`basic::a_put_without_a_token_after_its_tag_was_invalidated_is_a_hit`\];
    /// - re-putting a key replaces value and tags atomically: invalidating an old tag no longer
    ///   removes it \[`invariants::inv4_put_replaces_value_and_tags`\].
    async fn put(
        &self,
        key: &Key,
        value: Bytes,
        tags: &[Tag],
        ttl: Option<Duration>,
        token: Option<&FillToken>,
    ) -> Result<PutOutcome>;

    /// Removes a key; returns whether a live entry was removed \[`basic::delete_*`\].
    async fn delete(&self, key: &Key) -> Result<bool>;

    /// Invalidates tags: every entry carrying one of them is removed, and every fill whose token
    /// predates this call is rejected. Returns how many distinct entries carried the tags (an
    /// entry carrying several of them counts once; the count may include entries that had just
    /// expired or been replaced).
    ///
    /// Contract:
    /// - once this returns, no [`Store::get`] returns an entry that was stored before the call and
    ///   carries one of `tags`, however many tags and dependents there are
    ///   \[`invariants::inv1_no_stale_read_after_invalidation`, `bounded::*`\];
    /// - entries without these tags are untouched \[`dependencies::*`\];
    /// - invalidating a tag nobody uses is not an error and still rejects older fill tokens
    ///   \[`invariants::inv2_stale_fill_rejected_negative_result`\];
    /// - the work is bounded: a tag with very many dependents does not block the store, and the
    ///   entries set aside for later stay misses
    ///   \[`invariants::inv6_bounded_invalidation_of_many_dependents`,
    ///   `bounded::set_aside_entries_stay_misses_after_the_fill_window`\].
    async fn invalidate(&self, tags: &[Tag]) -> Result<u64>;

    /// The remaining life of a key \[`expiry::ttl_reports_*`\].
    async fn ttl(&self, key: &Key) -> Result<KeyTtl>;

    /// Removes every entry of this store's namespace (and nothing outside it), and rejects fills
    /// whose tokens predate the call, also while fills and invalidations race it
    /// \[`namespaces::clear_*`\].
    async fn clear(&self) -> Result<()>;

    /// Issues a fill token for `key` now, whatever is stored under it: for a load that replaces
    /// an entry that is still there (a refresh ahead of expiry, or the reload of a value kept
    /// past its logical expiry as a fail-safe fallback). A [`Store::put`] with it is checked
    /// exactly as one with the token of a miss.
    ///
    /// With `lease: Some(d)` it also takes the key's refresh lease for `d`, so that of the
    /// processes sharing the store one refreshes the key: while another caller's lease on the
    /// key runs, it returns `None` and changes nothing. A lease is never released early; it
    /// expires after `d`, also when its holder died. With `lease: None` it always returns a
    /// token and leaves the lease alone. Leases are a coordination hint, never a correctness
    /// device: a lost lease means at most a second refresh, whose fill is token-checked.
    ///
    /// Contract: \[`refresh::*`\] (a token of `begin_fill` fills like a miss's, a fill with it is
    /// rejected after an invalidation of the entry's tags or a clear, one lease holder at a
    /// time, a lease expires).
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] from a store that does not implement it (the default): the cache
    /// then refreshes nothing ahead, and reloads a fail-safe fallback after deleting it.
    async fn begin_fill(&self, key: &Key, lease: Option<Duration>) -> Result<Option<FillToken>> {
        let _ = (key, lease);
        Err(Error::Unsupported {
            store: self.name(),
            operation: "begin_fill",
        })
    }

    /// Whether a live entry exists under `key` (with the same checks as [`Store::get`]).
    async fn exists(&self, key: &Key) -> Result<bool> {
        Ok(matches!(self.get(key).await?, Lookup::Hit(_)))
    }

    /// The largest value this store accepts, in bytes.
    fn max_value_len(&self) -> usize {
        usize::MAX
    }

    /// Looks several keys up, in one round trip where the store can; the answers are in the
    /// order of `keys`.
    ///
    /// Contract: each answer is what [`Store::get`] of its key would have answered at some
    /// moment during the call (a hit with exactly the stored bytes, or a miss with a token that
    /// makes a later put of that key race-safe) \[`batch::get_many_*`\]. The default calls
    /// `get` for each key in turn.
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Lookup>> {
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            found.push(self.get(key).await?);
        }
        Ok(found)
    }

    /// Stores several entries, in one round trip where the store can; the outcomes are in the
    /// order of `entries`.
    ///
    /// Contract: every entry is checked first (TTL, tag count, value size): one bad entry is an
    /// error before anything is written \[`batch::put_many_checks_every_entry_first`\]. Then each
    /// entry is stored or refused exactly as [`Store::put`] with its own key, tags, TTL and
    /// token would be (a stale token refuses that entry only) \[`batch::put_many_*`\]; the batch
    /// is not one transaction: an error part-way may leave the entries before it stored. The
    /// default calls `put` for each entry in turn.
    async fn put_many(&self, entries: &[PutEntry<'_>]) -> Result<Vec<PutOutcome>> {
        check_entries(entries, self.max_value_len())?;
        let mut outcomes = Vec::with_capacity(entries.len());
        for entry in entries {
            outcomes.push(
                self.put(
                    entry.key,
                    entry.value.clone(),
                    entry.tags,
                    entry.ttl,
                    entry.token,
                )
                .await?,
            );
        }
        Ok(outcomes)
    }
}

/// One entry of a [`Store::put_many`]: what [`Store::put`] takes, for one key.
///
/// # Examples
///
/// ```
/// use matroska_core::store::{PutEntry, PutOutcome, Store};
/// use matroska_core::{Bytes, Key, MemoryStore};
///
/// # futures::executor::block_on(async {
/// let store = MemoryStore::new();
/// let (a, b) = (Key::new("a")?, Key::new("b")?);
/// let entries = [
///     PutEntry::new(&a, Bytes::from_static(b"1")),
///     PutEntry::new(&b, Bytes::from_static(b"2")),
/// ];
/// assert_eq!(store.put_many(&entries).await?, [PutOutcome::Stored, PutOutcome::Stored]);
/// assert_eq!(store.get_many(&[a, b]).await?.len(), 2);
/// # Ok::<(), matroska_core::Error>(()) });
/// ```
#[derive(Debug, Clone)]
pub struct PutEntry<'a> {
    /// The key.
    pub key: &'a Key,
    /// The encoded value.
    pub value: Bytes,
    /// The entry's tags.
    pub tags: &'a [Tag],
    /// Its time to live (`None`: no expiry).
    pub ttl: Option<Duration>,
    /// The fill token of the miss this value answers (`None`: stored unconditionally).
    pub token: Option<&'a FillToken>,
}

impl<'a> PutEntry<'a> {
    /// An entry without tags, TTL or token.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::{Bytes, Key, store::PutEntry};
    ///
    /// let key = Key::new("k")?;
    /// let entry = PutEntry::new(&key, Bytes::new());
    /// assert!(entry.tags.is_empty() && entry.ttl.is_none() && entry.token.is_none());
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn new(key: &'a Key, value: Bytes) -> Self {
        Self {
            key,
            value,
            tags: &[],
            ttl: None,
            token: None,
        }
    }
}

/// Checks every entry of a batch put before anything is written: TTL, tag count and value size
/// (against `max_value_len`).
///
/// # Errors
///
/// [`Error::InvalidTtl`], [`Error::TooManyTags`] or [`Error::ValueTooLarge`] for the first bad
/// entry.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use matroska_core::{Bytes, Key, store::{PutEntry, check_entries}};
///
/// let key = Key::new("k")?;
/// let mut entry = PutEntry::new(&key, Bytes::from_static(b"four"));
/// assert!(check_entries(std::slice::from_ref(&entry), 4).is_ok());
/// assert!(check_entries(std::slice::from_ref(&entry), 3).is_err());
/// entry.ttl = Some(Duration::ZERO);
/// assert!(check_entries(&[entry], 4).is_err());
/// # Ok::<(), matroska_core::Error>(())
/// ```
pub fn check_entries(entries: &[PutEntry<'_>], max_value_len: usize) -> Result<()> {
    for entry in entries {
        check_ttl(entry.ttl)?;
        check_tags(entry.tags)?;
        if entry.value.len() > max_value_len {
            return Err(Error::ValueTooLarge {
                size: entry.value.len(),
                limit: max_value_len,
            });
        }
    }
    Ok(())
}

macro_rules! forward_store {
    ($($ptr:ident),*) => {$(
        #[async_trait]
        impl<S: Store + ?Sized> Store for $ptr<S> {
            fn name(&self) -> &'static str {
                (**self).name()
            }
            async fn get(&self, key: &Key) -> Result<Lookup> {
                (**self).get(key).await
            }
            async fn put(
                &self,
                key: &Key,
                value: Bytes,
                tags: &[Tag],
                ttl: Option<Duration>,
                token: Option<&FillToken>,
            ) -> Result<PutOutcome> {
                (**self).put(key, value, tags, ttl, token).await
            }
            async fn delete(&self, key: &Key) -> Result<bool> {
                (**self).delete(key).await
            }
            async fn invalidate(&self, tags: &[Tag]) -> Result<u64> {
                (**self).invalidate(tags).await
            }
            async fn ttl(&self, key: &Key) -> Result<KeyTtl> {
                (**self).ttl(key).await
            }
            async fn clear(&self) -> Result<()> {
                (**self).clear().await
            }
            async fn begin_fill(
                &self,
                key: &Key,
                lease: Option<Duration>,
            ) -> Result<Option<FillToken>> {
                (**self).begin_fill(key, lease).await
            }
            async fn exists(&self, key: &Key) -> Result<bool> {
                (**self).exists(key).await
            }
            fn max_value_len(&self) -> usize {
                (**self).max_value_len()
            }
            async fn get_many(&self, keys: &[Key]) -> Result<Vec<Lookup>> {
                (**self).get_many(keys).await
            }
            async fn put_many(&self, entries: &[PutEntry<'_>]) -> Result<Vec<PutOutcome>> {
                (**self).put_many(entries).await
            }
        }
    )*};
}
forward_store!(Arc, Box);
