//! [`Applier`]: a listener's events applied to a [`Store`], with a [`Strategy`] and a policy for
//! gaps.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use matroska_core::{Error, Result, Store, Tag};
use tokio::task::JoinHandle;

use super::backoff::Backoff;
use super::config::kind_tags;
use super::event::Gap;
use super::listen::Listener;
use super::strategy::{Pending, Strategy};
use super::worker::{Counters, Worker};

/// What an [`Applier`] does about a [`Gap`] (after calling its [`on_gap`](Applier::on_gap)
/// callback).
///
/// # Examples
///
/// ```
/// use matroska_pg_capture::listener::GapAction;
///
/// assert_eq!(GapAction::default(), GapAction::InvalidateKinds);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum GapAction {
    /// Invalidate `a:<kind>` for every watched kind (the default): everything cached about
    /// those kinds goes, since nothing proves it fresh. Entries that depend only on free tags
    /// ([`Dep::tag`](matroska_core::Dep::tag)) are not covered.
    #[default]
    InvalidateKinds,
    /// Clear the whole store: for a private L1 tier, where a clear is cheap and exact.
    Clear,
    /// Nothing but the callback (the application knows better; it takes the risk).
    Nothing,
}

pub(super) type GapCallback = Arc<dyn Fn(&Gap) + Send + Sync>;
pub(super) type AppliedCallback = Arc<dyn Fn(&Applied) + Send + Sync>;

/// Applies a [`Listener`]'s events to a store on a background task. Made by
/// [`Listener::applier`] (or [`Listener::apply`] with the defaults), started by
/// [`spawn`](Self::spawn).
///
/// Received tags are invalidated in the store when the [`Strategy`] says. A [`Gap`] is passed to
/// the [`on_gap`](Self::on_gap) callback and then, by default, every watched kind is invalidated
/// (see [`GapAction`]); the listener's first connection counts as a gap too (entries cached
/// before it cannot be proven fresh) unless [`trust_start`](Self::trust_start) says otherwise.
/// A store error never loses an invalidation: the tags stay pending and are retried with
/// back-off (each store call bounded by [`store_timeout`](Self::store_timeout)); if more than
/// [`max_pending_tags`](Self::max_pending_tags) pile up they collapse to their kinds' `a:<kind>`
/// tags, and if that is still too many, the applier clears the store once it answers again
/// (whatever the [`GapAction`]: only a clear covers free `g:` tags and every kind), reporting a
/// [`GapReason::Backlog`](super::GapReason::Backlog) gap. While a clear is pending, tags that arrive are not kept: the
/// clear runs after they arrived and covers them, so the backlog stays bounded.
///
/// What an applier cannot cover: a gap under [`GapAction::Nothing`] (the callback is told, the
/// store is not touched), and, under [`GapAction::InvalidateKinds`], entries of a gap's time that
/// depend only on free tags or on unwatched kinds (see [`GapAction`]). The applier's own task
/// stopping (its handle dropped, the listener shut down) ends invalidation of the store.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use matroska_pg_capture::listener::{GapAction, Listener, Strategy};
///
/// # async fn demo(redis: matroska_redis::RedisStore) -> matroska_core::Result<()> {
/// let listener = Listener::builder("postgres://app@localhost/app").start()?;
/// let applier = listener
///     .applier(redis)
///     .strategy(Strategy::RateLimited { interval: Duration::from_millis(100) })
///     .watch_kinds(["article", "author"])
///     .on_gap(|gap| tracing::warn!(%gap, "invalidations may have been missed"))
///     .spawn()?;
/// println!("{:?}", applier.stats());
/// # Ok(()) }
/// ```
#[must_use = "an applier does nothing until spawned"]
pub struct Applier<S> {
    listener: Listener,
    store: S,
    strategy: Strategy,
    watch_kinds: Option<Vec<String>>,
    gap_action: GapAction,
    trust_start: bool,
    on_gap: Option<GapCallback>,
    on_applied: Option<AppliedCallback>,
    max_batch: usize,
    max_pending: usize,
    store_timeout: Duration,
    retry_min: Duration,
    retry_max: Duration,
}

impl<S: Store> fmt::Debug for Applier<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Applier")
            .field("store", &self.store.name())
            .field("strategy", &self.strategy)
            .field("watch_kinds", &self.watch_kinds)
            .field("gap_action", &self.gap_action)
            .field("trust_start", &self.trust_start)
            .field("max_batch", &self.max_batch)
            .field("max_pending", &self.max_pending)
            .field("store_timeout", &self.store_timeout)
            .finish_non_exhaustive()
    }
}

impl<S: Store> Applier<S> {
    pub(crate) fn new(listener: Listener, store: S) -> Self {
        Self {
            listener,
            store,
            strategy: Strategy::Immediate,
            watch_kinds: None,
            gap_action: GapAction::InvalidateKinds,
            trust_start: false,
            on_gap: None,
            on_applied: None,
            max_batch: 1_000,
            max_pending: 100_000,
            store_timeout: Duration::from_secs(30),
            retry_min: Duration::from_millis(50),
            retry_max: Duration::from_secs(5),
        }
    }

    /// When to apply (default [`Strategy::Immediate`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(listener: matroska_pg_capture::listener::Listener) {
    /// use std::time::Duration;
    /// use matroska_pg_capture::listener::Strategy;
    ///
    /// let applier = listener
    ///     .applier(matroska_core::MemoryStore::new())
    ///     .strategy(Strategy::Batched { window: Duration::from_millis(20) });
    /// # drop(applier); }
    /// ```
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The kinds a gap invalidates (default: the listener's
    /// [`watch_kinds`](super::ListenerConfig::watch_kinds)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(listener: matroska_pg_capture::listener::Listener) {
    /// let applier = listener.applier(matroska_core::MemoryStore::new()).watch_kinds(["article"]);
    /// # drop(applier); }
    /// ```
    pub fn watch_kinds<I, K>(mut self, kinds: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        self.watch_kinds = Some(kinds.into_iter().map(Into::into).collect());
        self
    }

    /// What a gap does to the store (default [`GapAction::InvalidateKinds`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(listener: matroska_pg_capture::listener::Listener) {
    /// use matroska_pg_capture::listener::GapAction;
    ///
    /// let l1 = matroska_core::MemoryStore::new();
    /// let applier = listener.applier(l1).gap_action(GapAction::Clear);
    /// # drop(applier); }
    /// ```
    pub fn gap_action(mut self, action: GapAction) -> Self {
        self.gap_action = action;
        self
    }

    /// Whether the store's entries from before this applier started are trusted: if `true`, the
    /// [`GapReason::Started`](super::GapReason::Started) gap only calls the callback (default `false`: it is acted on like
    /// any gap).
    ///
    /// The default is safe: what was committed before the listener ran is unknown, so a shared
    /// store (Redis, PostgreSQL) loses the watched kinds once per process start. Trust the start
    /// only when something else covered that time, e.g. another listener that kept applying to
    /// the same shared store during a rolling deploy. A fresh in-process store is empty anyway.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(listener: matroska_pg_capture::listener::Listener, redis: matroska_redis::RedisStore) {
    /// let applier = listener.applier(redis).trust_start(true);
    /// # drop(applier); }
    /// ```
    pub fn trust_start(mut self, trust: bool) -> Self {
        self.trust_start = trust;
        self
    }

    /// Called with every gap, before its action: flush a local tier, count it, alert. Runs on the
    /// applier's task, so keep it short; a panic in it is caught and logged.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(listener: matroska_pg_capture::listener::Listener) {
    /// let applier = listener
    ///     .applier(matroska_core::MemoryStore::new())
    ///     .on_gap(|gap| eprintln!("{gap}"));
    /// # drop(applier); }
    /// ```
    pub fn on_gap(mut self, callback: impl Fn(&Gap) + Send + Sync + 'static) -> Self {
        self.on_gap = Some(Arc::new(callback));
        self
    }

    /// Called after each successful apply, with what was applied (for metrics, or to signal a
    /// waiting test or benchmark). Runs on the applier's task; a panic in it is caught and
    /// logged.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(listener: matroska_pg_capture::listener::Listener) {
    /// let applier = listener
    ///     .applier(matroska_core::MemoryStore::new())
    ///     .on_applied(|applied| println!("{} tags in {:?}", applied.tags.len(), applied.took));
    /// # drop(applier); }
    /// ```
    pub fn on_applied(mut self, callback: impl Fn(&Applied) + Send + Sync + 'static) -> Self {
        self.on_applied = Some(Arc::new(callback));
        self
    }

    /// The most tags one store call gets (default 1,000); [`Strategy::Batched`] applies early
    /// once this many wait.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(listener: matroska_pg_capture::listener::Listener) {
    /// let applier = listener.applier(matroska_core::MemoryStore::new()).max_batch(200);
    /// # drop(applier); }
    /// ```
    pub fn max_batch(mut self, tags: usize) -> Self {
        self.max_batch = tags;
        self
    }

    /// The most distinct tags kept pending (default 100,000), e.g. while the store is down. Beyond
    /// it they collapse to their kinds' `a:<kind>` tags, and if that is still too many, the store
    /// is cleared instead, whatever the gap action (reported as a [`GapReason::Backlog`](super::GapReason::Backlog) gap):
    /// never a dropped invalidation.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(listener: matroska_pg_capture::listener::Listener) {
    /// let applier = listener.applier(matroska_core::MemoryStore::new()).max_pending_tags(10_000);
    /// # drop(applier); }
    /// ```
    pub fn max_pending_tags(mut self, tags: usize) -> Self {
        self.max_pending = tags;
        self
    }

    /// How long one store call may take before it counts as failed and is retried (default 30 s).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(listener: matroska_pg_capture::listener::Listener) {
    /// let applier = listener
    ///     .applier(matroska_core::MemoryStore::new())
    ///     .store_timeout(std::time::Duration::from_secs(2));
    /// # drop(applier); }
    /// ```
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// The bounds of the back-off between retries of a failing store (defaults 50 ms and 5 s).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(listener: matroska_pg_capture::listener::Listener) {
    /// use std::time::Duration;
    ///
    /// let applier = listener
    ///     .applier(matroska_core::MemoryStore::new())
    ///     .retry_backoff(Duration::from_millis(10), Duration::from_secs(1));
    /// # drop(applier); }
    /// ```
    pub fn retry_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.retry_min = min;
        self.retry_max = max;
        self
    }

    /// Subscribes to the listener and starts applying on a new task (inside a Tokio runtime).
    /// The task runs until the listener shuts down or the returned handle is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when a gap would have nothing to invalidate (the action is
    /// [`GapAction::InvalidateKinds`] and no kind is watched: watch kinds, or choose
    /// [`GapAction::Clear`] or [`GapAction::Nothing`]), for an invalid kind, a zero batch size,
    /// pending limit or store timeout, or outside a Tokio runtime.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(listener: matroska_pg_capture::listener::Listener) -> matroska_core::Result<()> {
    /// let handle = listener.applier(matroska_core::MemoryStore::new()).watch_kinds(["article"]).spawn()?;
    /// # drop(handle); Ok(()) }
    /// ```
    pub fn spawn(self) -> Result<ApplierHandle> {
        let kind_tags: Arc<[Tag]> = match &self.watch_kinds {
            Some(kinds) => kind_tags(kinds)?.into(),
            None => self.listener.watched_kind_tags().into(),
        };
        if self.gap_action == GapAction::InvalidateKinds && kind_tags.is_empty() {
            return Err(Error::Config(
                "the applier watches no kinds, so a gap could not invalidate anything: set \
                 watch_kinds (on the listener or the applier), or choose GapAction::Clear or \
                 GapAction::Nothing"
                    .to_owned(),
            ));
        }
        if self.max_batch == 0 || self.max_pending == 0 || self.store_timeout.is_zero() {
            return Err(Error::Config(
                "applier: max_batch, max_pending_tags and store_timeout must be positive"
                    .to_owned(),
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Config("an Applier must be spawned inside a Tokio runtime".to_owned())
        })?;
        let stats = Arc::new(Counters::default());
        let worker = Worker {
            subscription: self.listener.subscribe(),
            store: self.store,
            pending: Pending::new(self.strategy, self.max_batch),
            kind_tags,
            gap_action: self.gap_action,
            trust_start: self.trust_start,
            on_gap: self.on_gap,
            on_applied: self.on_applied,
            max_batch: self.max_batch,
            max_pending: self.max_pending,
            store_timeout: self.store_timeout,
            backoff: Backoff::new(self.retry_min, self.retry_max, false),
            retry_at: None,
            stats: Arc::clone(&stats),
        };
        // The worker holds only its subscription, not the listener: dropping the listener ends it.
        drop(self.listener);
        let task = runtime.spawn(worker.run());
        Ok(ApplierHandle { task, stats })
    }
}

/// What one successful apply did, passed to [`Applier::on_applied`].
///
/// # Examples
///
/// ```no_run
/// # fn demo(listener: matroska_pg_capture::listener::Listener) {
/// let applier = listener.applier(matroska_core::MemoryStore::new()).on_applied(|applied| {
///     if applied.cleared {
///         println!("cleared the store");
///     }
/// });
/// # drop(applier); }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Applied {
    /// The tags invalidated (a gap's `a:<kind>` tags included), deduplicated.
    pub tags: Vec<Tag>,
    /// Whether the store was cleared (then `tags` is empty: the clear covers them).
    pub cleared: bool,
    /// How many entries the store reported removed.
    pub removed: u64,
    /// How long the store calls took.
    pub took: Duration,
}

/// Counters of an applier, from [`ApplierHandle::stats`].
///
/// # Examples
///
/// ```no_run
/// # fn demo(handle: matroska_pg_capture::listener::ApplierHandle) {
/// let stats = handle.stats();
/// println!("{} applies, {} store errors", stats.applies, stats.store_errors);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApplierStats {
    /// Tag events received.
    pub events: u64,
    /// Gaps received or raised (each calls the gap callback).
    pub gaps: u64,
    /// Successful applies.
    pub applies: u64,
    /// Tags invalidated by them.
    pub tags_applied: u64,
    /// Entries the store reported removed.
    pub removed: u64,
    /// Store clears (gap action [`GapAction::Clear`]).
    pub clears: u64,
    /// Failed store calls (each retried).
    pub store_errors: u64,
}

/// A running [`Applier`]. Dropping it stops the applier.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(listener: matroska_pg_capture::listener::Listener) -> matroska_core::Result<()> {
/// use matroska_pg_capture::listener::Strategy;
///
/// let handle = listener.apply(matroska_core::MemoryStore::new(), Strategy::Immediate)?;
/// assert!(!handle.is_finished());
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "the applier stops when its handle is dropped"]
pub struct ApplierHandle {
    task: JoinHandle<()>,
    stats: Arc<Counters>,
}

impl ApplierHandle {
    /// The applier's counters.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(handle: matroska_pg_capture::listener::ApplierHandle) {
    /// assert_eq!(handle.stats().store_errors, 0);
    /// # }
    /// ```
    pub fn stats(&self) -> ApplierStats {
        let c = &self.stats;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ApplierStats {
            events: load(&c.events),
            gaps: load(&c.gaps),
            applies: load(&c.applies),
            tags_applied: load(&c.tags_applied),
            removed: load(&c.removed),
            clears: load(&c.clears),
            store_errors: load(&c.store_errors),
        }
    }

    /// Whether the applier has stopped (its listener shut down).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(handle: matroska_pg_capture::listener::ApplierHandle) {
    /// if handle.is_finished() {
    ///     eprintln!("no more invalidations are applied");
    /// }
    /// # }
    /// ```
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for ApplierHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
