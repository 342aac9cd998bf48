//! `min_connections` (FastPgCache's `minconn`): connections kept open and warm even when idle.

use std::sync::{Arc, Weak};
use std::time::Duration;

use matroska_core::Result;

use crate::store::{Inner, PgStore};

/// How often the background task tops the pool up.
const KEEP_EVERY: Duration = Duration::from_secs(10);

impl PgStore {
    /// Opens connections until at least [`min_connections`] are open, and returns how many it
    /// opened (0 when enough are open, or none are asked for). It holds up to that many
    /// connections of the pool at once while it opens them, then returns them all, idle and
    /// ready.
    ///
    /// [`min_connections`]: crate::PgStoreConfig::min_connections
    ///
    /// # Errors
    ///
    /// The error of a connection that could not be opened (the others stay open).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> matroska_core::Result<()> {
    /// let store = matroska_postgres::PgStore::builder("postgres://app@localhost/app")
    ///     .min_connections(4)
    ///     .build()?;
    /// store.warm_up().await?;
    /// assert!(store.status().size >= 4);
    /// # Ok(()) }
    /// ```
    pub async fn warm_up(&self) -> Result<usize> {
        warm(&self.inner).await
    }

    /// Starts the background task that keeps `min_connections` open, when some are asked for
    /// and a Tokio runtime is running; it ends when the store (every clone) is dropped.
    pub(crate) fn keep_warm(&self) {
        if self.inner.min_connections == 0 {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(
                "matroska-postgres: no Tokio runtime at build; min_connections are opened by warm_up only"
            );
            return;
        };
        let inner: Weak<Inner> = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            loop {
                let Some(inner) = inner.upgrade() else {
                    return;
                };
                if let Err(err) = warm(&inner).await {
                    tracing::warn!(error = %err, "matroska-postgres: could not open the minimum of connections");
                }
                drop(inner);
                tokio::time::sleep(KEEP_EVERY).await;
            }
        });
    }
}

async fn warm(inner: &Arc<Inner>) -> Result<usize> {
    let want = inner.min_connections;
    let before = inner.pool.status().size;
    if before >= want {
        return Ok(0);
    }
    let store = PgStore {
        inner: Arc::clone(inner),
    };
    // Holding `want` connections at once makes the pool open the missing ones.
    let held = futures::future::join_all((0..want).map(|_| store.client("warm_up"))).await;
    let opened = inner.pool.status().size.saturating_sub(before);
    let mut first_error = None;
    for result in held {
        if let Err(err) = result {
            first_error.get_or_insert(err);
        }
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(opened),
    }
}
