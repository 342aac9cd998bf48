//! Proactive refresh: [`Fetchers::refresh_due`] and the task that runs it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use tokio::task::JoinHandle;

use super::Fetchers;
use crate::cache::Peek;
use crate::codec::Codec;
use crate::store::Store;

/// What one round of [`Fetchers::refresh_due`] did.
///
/// # Examples
///
/// ```
/// let report = matroska_core::fetchers::RefreshReport::default();
/// assert_eq!(report.refreshed, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefreshReport {
    /// Keys refreshed (their loader ran, with the key's lease).
    pub refreshed: usize,
    /// Keys past their refresh point whose refresh did not run here: one runs in this process
    /// already, or another process holds the lease (see `CacheStats::refreshes_skipped`).
    pub skipped: usize,
    /// Keys forgotten because nobody read them for the idle window (left to expire).
    pub idle: usize,
    /// Keys forgotten because their entry is gone (expired, invalidated, evicted): the next read
    /// loads them and remembers them again.
    pub gone: usize,
}

/// The task of [`Fetchers::spawn_refresher`]. Dropping it or calling [`Refresher::stop`] stops
/// the task (a refresh under way is cancelled; its fill either happened or did not).
#[derive(Debug)]
pub struct Refresher {
    task: JoinHandle<()>,
}

impl Refresher {
    /// Stops the task, and returns once it has ended.
    ///
    /// # Examples
    ///
    /// See [`Fetchers`](super::Fetchers).
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// Whether the task has ended.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache = matroska_core::Cache::new(matroska_core::MemoryStore::new());
    /// let fetchers = matroska_core::fetchers::Fetchers::builder(cache).build();
    /// let refresher = fetchers.spawn_refresher(std::time::Duration::from_secs(1));
    /// assert!(!refresher.is_finished());
    /// # });
    /// ```
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<S: Store, C: Codec> Fetchers<S, C> {
    /// One round of proactive refresh: forgets the keys nobody read for the idle window, and
    /// refreshes the remembered keys past their refresh point (reading each first: another
    /// process may have refreshed it), at most `max_concurrent` at once. Returns when the round's
    /// refreshes are done.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache = matroska_core::Cache::new(matroska_core::MemoryStore::new());
    /// let fetchers = matroska_core::fetchers::Fetchers::builder(cache).build();
    /// assert_eq!(fetchers.refresh_due().await.refreshed, 0);
    /// # });
    /// ```
    pub async fn refresh_due(&self) -> RefreshReport {
        let inner = &self.inner;
        let now = inner.cache.now_ms();
        let idle_ms = u64::try_from(inner.idle_window.as_millis()).unwrap_or(u64::MAX);
        let mut idle = 0;
        let due: Vec<_> = {
            let mut tracked = inner.tracked.lock();
            tracked.retain(|_, t| {
                let keep = now.saturating_sub(t.last_read_ms) <= idle_ms;
                if !keep {
                    idle += 1;
                }
                keep
            });
            tracked
                .iter()
                .filter(|(_, t)| t.refresh_at_ms != 0 && now >= t.refresh_at_ms)
                .map(|(key, t)| (key.clone(), std::sync::Arc::clone(&t.refresh)))
                .collect()
        };
        let (refreshed, skipped, gone) = (
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        );
        futures::stream::iter(due)
            .for_each_concurrent(inner.max_concurrent, |(key, refresh)| {
                let (refreshed, skipped, gone) = (&refreshed, &skipped, &gone);
                async move {
                    match inner.cache.peek(&key).await {
                        Ok(Peek::Due(due)) => {
                            if refresh(inner.cache.clone(), key, due).await {
                                refreshed.fetch_add(1, Ordering::Relaxed);
                            } else {
                                skipped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(Peek::Fresh(at)) => {
                            if let Some(t) = inner.tracked.lock().get_mut(&key) {
                                t.refresh_at_ms = at;
                            }
                        }
                        Ok(Peek::Missing) => {
                            inner.tracked.lock().remove(&key);
                            gone.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, key = %key, "proactive refresh: could not read the entry");
                        }
                    }
                }
            })
            .await;
        RefreshReport {
            refreshed: refreshed.into_inner(),
            skipped: skipped.into_inner(),
            idle,
            gone: gone.into_inner(),
        }
    }

    /// Runs [`refresh_due`](Self::refresh_due) every `every` on the current Tokio runtime until
    /// the returned [`Refresher`] is stopped or dropped.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    ///
    /// # Examples
    ///
    /// See the [module documentation](super).
    pub fn spawn_refresher(&self, every: Duration) -> Refresher {
        let fetchers = self.clone();
        let every = every.max(Duration::from_millis(1));
        let task = tokio::spawn(async move {
            loop {
                let report = fetchers.refresh_due().await;
                if report != RefreshReport::default() {
                    tracing::debug!(?report, "proactive refresh round");
                }
                tokio::time::sleep(every).await;
            }
        });
        Refresher { task }
    }
}
