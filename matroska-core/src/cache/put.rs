//! The builder returned by [`Cache::put`](crate::Cache::put).

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

use super::Cache;
use crate::codec::Codec;
use crate::dep::Dep;
use crate::error::Result;
use crate::key::Key;
use crate::store::Store;

/// A pending [`Cache::put`](crate::Cache::put): add dependencies and a time to live, then
/// `.await` it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use matroska_core::{Cache, Dep, MemoryStore};
///
/// # futures::executor::block_on(async {
/// let cache = Cache::new(MemoryStore::new());
/// cache
///     .put("article:5", &"Hello")
///     .dep(Dep::id("article", 5))
///     .ttl(Duration::from_secs(300))
///     .await?;
/// # Ok::<(), matroska_core::Error>(()) });
/// ```
#[must_use = "a put does nothing until it is awaited"]
pub struct Put<'a, S, C> {
    pub(super) cache: &'a Cache<S, C>,
    pub(super) key: Result<Key>,
    pub(super) value: Result<Bytes>,
    pub(super) deps: Vec<Dep>,
    pub(super) ttl: Option<Duration>,
}

impl<S, C> Put<'_, S, C> {
    /// Adds a dependency.
    ///
    /// # Examples
    ///
    /// ```
    /// # use matroska_core::{Cache, Dep, MemoryStore};
    /// # futures::executor::block_on(async {
    /// # let cache = Cache::new(MemoryStore::new());
    /// cache.put("k", &1).dep(Dep::tag("numbers")).await?;
    /// # Ok::<(), matroska_core::Error>(()) });
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
    /// # use matroska_core::{Cache, Dep, MemoryStore};
    /// # futures::executor::block_on(async {
    /// # let cache = Cache::new(MemoryStore::new());
    /// cache.put("k", &1).deps([Dep::id("a", 1), Dep::id("b", 2)]).await?;
    /// # Ok::<(), matroska_core::Error>(()) });
    /// ```
    pub fn deps(mut self, deps: impl IntoIterator<Item = Dep>) -> Self {
        self.deps.extend(deps);
        self
    }

    /// Expires the entry after `ttl` (instead of the cache's default; none means no expiry).
    ///
    /// # Examples
    ///
    /// ```
    /// # use matroska_core::{Cache, MemoryStore};
    /// # futures::executor::block_on(async {
    /// # let cache = Cache::new(MemoryStore::new());
    /// cache.put("k", &1).ttl(std::time::Duration::from_secs(60)).await?;
    /// # Ok::<(), matroska_core::Error>(()) });
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

impl<'a, S: Store, C: Codec> IntoFuture for Put<'a, S, C> {
    type Output = Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let key = self.key?;
            let value = self.value?;
            self.cache
                .put_bytes(&key, value, &self.deps, self.ttl)
                .await
        })
    }
}

impl<S, C> fmt::Debug for Put<'_, S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Put")
            .field("key", &self.key)
            .field("deps", &self.deps)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}
