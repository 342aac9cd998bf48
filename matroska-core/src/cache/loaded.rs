//! What a loader hands back: the value and what it depends on.

use std::time::Duration;

use crate::dep::Dep;

/// The result of a loader of [`Cache::get_or_insert_with`](crate::Cache::get_or_insert_with):
/// the value, its dependencies (often known only after loading, such as the ids of the rows of a
/// list) and an optional time to live.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use matroska_core::{Dep, Loaded};
///
/// let ids = [3, 5];
/// let loaded = Loaded::new(vec!["a", "b"])
///     .deps(ids.iter().map(|id| Dep::id("article", *id)))
///     .dep(Dep::tag("homepage"))
///     .ttl(Duration::from_secs(60));
/// assert_eq!(loaded.value(), &["a", "b"]);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Loaded<T> {
    pub(crate) value: T,
    pub(crate) deps: Vec<Dep>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) refresh_after: Option<Duration>,
    pub(crate) refresh_jitter: Option<f64>,
}

impl<T> Loaded<T> {
    /// A value with no dependencies yet and the cache's default time to live.
    ///
    /// # Examples
    ///
    /// ```
    /// let loaded = matroska_core::Loaded::new(5);
    /// assert_eq!(*loaded.value(), 5);
    /// ```
    pub fn new(value: T) -> Self {
        Self {
            value,
            deps: Vec::new(),
            ttl: None,
            refresh_after: None,
            refresh_jitter: None,
        }
    }

    /// Adds a dependency.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::{Dep, Loaded};
    ///
    /// let loaded = Loaded::new("page").dep(Dep::id("article", 5));
    /// # let _ = loaded;
    /// ```
    pub fn dep(mut self, dep: Dep) -> Self {
        self.deps.push(dep);
        self
    }

    /// Adds dependencies.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::{Dep, Loaded};
    ///
    /// let loaded = Loaded::new(()).deps([Dep::id("a", 1), Dep::id("a", 2)]);
    /// # let _ = loaded;
    /// ```
    pub fn deps(mut self, deps: impl IntoIterator<Item = Dep>) -> Self {
        self.deps.extend(deps);
        self
    }

    /// Expires the entry after `ttl` (instead of the cache's default).
    ///
    /// # Examples
    ///
    /// ```
    /// let loaded = matroska_core::Loaded::new(1).ttl(std::time::Duration::from_secs(30));
    /// # let _ = loaded;
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets this entry's refresh point: `after` the load (instead of the cache's
    /// [`refresh_ahead`](crate::CacheBuilder::refresh_ahead) default). A read past it through
    /// [`Cache::fetch_eager`](crate::Cache::fetch_eager) returns the cached value and starts one
    /// background refresh. A point at or past the entry's time to live is ignored (the entry
    /// expires first).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let loaded = matroska_core::Loaded::new(1)
    ///     .ttl(Duration::from_secs(60))
    ///     .refresh_after(Duration::from_secs(45));
    /// # let _ = loaded;
    /// ```
    pub fn refresh_after(mut self, after: Duration) -> Self {
        self.refresh_after = Some(after);
        self
    }

    /// Moves this entry's refresh point earlier by a random share of up to `fraction` of it
    /// (instead of the cache's [`refresh_jitter`](crate::CacheBuilder::refresh_jitter); clamped
    /// to 0..=0.9).
    ///
    /// # Examples
    ///
    /// ```
    /// let loaded = matroska_core::Loaded::new(1).refresh_jitter(0.1);
    /// # let _ = loaded;
    /// ```
    pub fn refresh_jitter(mut self, fraction: f64) -> Self {
        self.refresh_jitter = Some(fraction);
        self
    }

    /// The loaded value.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(*matroska_core::Loaded::new('x').value(), 'x');
    /// ```
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The value, its dependencies and its time to live: to use a loader's result without the
    /// cache (a read inside a transaction that has written, say).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::{Dep, Loaded};
    ///
    /// let (value, deps, ttl) = Loaded::new(5).dep(Dep::id("a", 1)).into_parts();
    /// assert_eq!((value, deps.len(), ttl), (5, 1, None));
    /// ```
    pub fn into_parts(self) -> (T, Vec<Dep>, Option<Duration>) {
        (self.value, self.deps, self.ttl)
    }
}
