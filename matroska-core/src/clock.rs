//! Clocks: the system's monotonic clock (the in-memory store's expiry), the wall clock (the
//! cache's item history and refresh points), or a manual one for tests.

use std::fmt;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// A monotonic clock: time since an arbitrary fixed origin.
///
/// [`MemoryStore`](crate::MemoryStore) reads expiry and fill-window time from its clock, so tests
/// can move time forward deterministically with a [`MockClock`].
///
/// # Examples
///
/// ```
/// use matroska_core::clock::{Clock, SystemClock};
///
/// let clock = SystemClock;
/// let a = clock.now();
/// assert!(clock.now() >= a);
/// ```
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// The time elapsed since the clock's origin. Never decreases.
    fn now(&self) -> Duration;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Duration {
        (**self).now()
    }
}

/// The system's monotonic clock (the default).
///
/// # Examples
///
/// ```
/// use matroska_core::clock::{Clock, SystemClock};
///
/// assert!(SystemClock.now() < SystemClock.now() + std::time::Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed()
    }
}

/// The wall clock: time since the Unix epoch. The [`Cache`](crate::Cache) stamps item history
/// and refresh points with it (they are compared across processes, so a monotonic clock local
/// to one process would not do). It can step back when the system's time is set; a step only
/// moves refresh points and fail-safe deadlines, never an invalidation.
///
/// # Examples
///
/// ```
/// use matroska_core::clock::{Clock, UnixClock};
///
/// assert!(UnixClock.now().as_secs() > 1_700_000_000);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct UnixClock;

impl Clock for UnixClock {
    fn now(&self) -> Duration {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
    }
}

/// A clock that moves only when told to; clones share the same time.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use matroska_core::clock::{Clock, MockClock};
///
/// let clock = MockClock::new();
/// let handle = clock.clone();
/// handle.advance(Duration::from_secs(5));
/// assert_eq!(clock.now(), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, Default)]
pub struct MockClock {
    nanos: Arc<AtomicU64>,
}

impl MockClock {
    /// A clock at time zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::clock::{Clock, MockClock};
    ///
    /// assert_eq!(MockClock::new().now(), std::time::Duration::ZERO);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use matroska_core::clock::{Clock, MockClock};
    ///
    /// let clock = MockClock::new();
    /// clock.advance(Duration::from_millis(1500));
    /// assert_eq!(clock.now(), Duration::from_millis(1500));
    /// ```
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for MockClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}
