//! [`Fetcher`]: a loader registered once for a family of keys.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::cache::Loaded;

/// A loader's error.
pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

type Load<Q, T> = dyn Fn(Q) -> BoxFuture<'static, Result<Loaded<T>, BoxError>> + Send + Sync;

/// A loader for one data type, registered once in [`Fetchers`](super::Fetchers): a name, the
/// loader from a typed query `Q` to a value `T`, and the time to live and refresh point of the
/// entries it fills, with its jitter (a [`Loaded`] that sets its own wins).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use matroska_core::{Loaded, fetchers::Fetcher};
///
/// #[derive(serde::Serialize, serde::Deserialize, Clone)]
/// struct Forecast { city: String }
///
/// let fetcher = Fetcher::new("forecast", |q: Forecast| async move {
///     Ok::<_, std::io::Error>(Loaded::new(format!("sunny in {}", q.city)))
/// })
/// .ttl(Duration::from_secs(60))
/// .refresh_after(Duration::from_secs(45));
/// assert_eq!(fetcher.name(), "forecast");
/// ```
pub struct Fetcher<Q, T> {
    pub(super) name: Arc<str>,
    pub(super) load: Arc<Load<Q, T>>,
    pub(super) ttl: Option<Duration>,
    pub(super) refresh_after: Option<Duration>,
    pub(super) jitter: Option<f64>,
}

impl<Q, T> Clone for Fetcher<Q, T> {
    fn clone(&self) -> Self {
        Self {
            name: Arc::clone(&self.name),
            load: Arc::clone(&self.load),
            ttl: self.ttl,
            refresh_after: self.refresh_after,
            jitter: self.jitter,
        }
    }
}

impl<Q, T> fmt::Debug for Fetcher<Q, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher")
            .field("name", &self.name)
            .field("ttl", &self.ttl)
            .field("refresh_after", &self.refresh_after)
            .field("jitter", &self.jitter)
            .finish_non_exhaustive()
    }
}

impl<Q: Send + 'static, T: Send + 'static> Fetcher<Q, T> {
    /// A fetcher named `name` (the first part of its keys) loading with `load`.
    ///
    /// # Examples
    ///
    /// ```
    /// let fetcher = matroska_core::fetchers::Fetcher::new("answer", |(): ()| async {
    ///     Ok::<_, std::io::Error>(matroska_core::Loaded::new(42))
    /// });
    /// # let _ = fetcher;
    /// ```
    #[must_use]
    pub fn new<F, Fut, E>(name: impl Into<Arc<str>>, load: F) -> Self
    where
        F: Fn(Q) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Loaded<T>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let load = move |query: Q| -> BoxFuture<'static, Result<Loaded<T>, BoxError>> {
            let fut = load(query);
            Box::pin(async move { fut.await.map_err(Into::into) })
        };
        Self {
            name: name.into(),
            load: Arc::new(load),
            ttl: None,
            refresh_after: None,
            jitter: None,
        }
    }
}

impl<Q, T> Fetcher<Q, T> {
    /// The time to live of its entries (default: the cache's).
    ///
    /// # Examples
    ///
    /// ```
    /// # let fetcher = matroska_core::fetchers::Fetcher::new("a", |(): ()| async { Ok::<_, std::io::Error>(matroska_core::Loaded::new(1)) });
    /// let fetcher = fetcher.ttl(std::time::Duration::from_secs(60));
    /// # let _ = fetcher;
    /// ```
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The refresh point of its entries, after their load (default: the cache's
    /// [`refresh_ahead`](crate::CacheBuilder::refresh_ahead) fraction of the TTL).
    ///
    /// # Examples
    ///
    /// ```
    /// # let fetcher = matroska_core::fetchers::Fetcher::new("a", |(): ()| async { Ok::<_, std::io::Error>(matroska_core::Loaded::new(1)) });
    /// let fetcher = fetcher.refresh_after(std::time::Duration::from_secs(45));
    /// # let _ = fetcher;
    /// ```
    #[must_use]
    pub fn refresh_after(mut self, after: Duration) -> Self {
        self.refresh_after = Some(after);
        self
    }

    /// Moves its entries' refresh points earlier by a random share of up to `fraction` (default:
    /// the cache's [`refresh_jitter`](crate::CacheBuilder::refresh_jitter)), so that keys loaded
    /// together are not refreshed together.
    ///
    /// # Examples
    ///
    /// ```
    /// # let fetcher = matroska_core::fetchers::Fetcher::new("a", |(): ()| async { Ok::<_, std::io::Error>(matroska_core::Loaded::new(1)) });
    /// let fetcher = fetcher.jitter(0.1);
    /// # let _ = fetcher;
    /// ```
    #[must_use]
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = Some(fraction);
        self
    }

    /// Its name.
    ///
    /// # Examples
    ///
    /// ```
    /// # let fetcher = matroska_core::fetchers::Fetcher::new("a", |(): ()| async { Ok::<_, std::io::Error>(matroska_core::Loaded::new(1)) });
    /// assert_eq!(fetcher.name(), "a");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The loader of one query, with this fetcher's defaults applied.
    pub(super) fn loader(
        &self,
        query: Q,
    ) -> impl FnOnce() -> BoxFuture<'static, Result<Loaded<T>, BoxError>> + Send + 'static
    where
        Q: Send + 'static,
        T: 'static,
    {
        let (load, ttl, refresh_after, jitter) = (
            Arc::clone(&self.load),
            self.ttl,
            self.refresh_after,
            self.jitter,
        );
        move || {
            let fut = load(query);
            Box::pin(async move {
                let mut loaded = fut.await?;
                if loaded.ttl.is_none() {
                    loaded.ttl = ttl;
                }
                if loaded.refresh_after.is_none() {
                    loaded.refresh_after = refresh_after;
                }
                if loaded.refresh_jitter.is_none() {
                    loaded.refresh_jitter = jitter;
                }
                Ok(loaded)
            })
        }
    }
}
