//! Housekeeping: [`CleanupReport`] and the background [`CleanupTask`].

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::store::PgStore;

/// What one [`PgStore::cleanup`] call removed.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(store: matroska_postgres::PgStore) -> matroska_core::Result<()> {
/// let report = store.cleanup().await?;
/// assert!(report.complete);
/// println!("{} expired entries removed in {} rounds", report.expired, report.rounds);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CleanupReport {
    /// Expired entries removed (FastPgCache's `cleanup()` count).
    pub expired: u64,
    /// Entries removed by the pass over every entry that precedes pruning stamps: entries a
    /// committed stamp hides (older than an invalidation made inside a writer's transaction,
    /// which only stamps; fills that raced with an invalidation; dependents an interrupted
    /// invalidation or `clear()` left behind, or that an invalidation missed through a lost index
    /// row).
    pub swept: u64,
    /// Stray rows removed from the tag index (rows whose entry is gone or no longer carries the
    /// tag: an invalidation leaves its entries' index rows for the next fill of the key).
    pub strays: u64,
    /// Invalidation stamps pruned: confirmed more than two fill windows before a pass over every
    /// entry began, deleted once the pass is complete.
    pub stamps_pruned: u64,
    /// Statements run (each touches at most `batch_size` rows per step).
    pub rounds: u32,
    /// Whether nothing was left to do (false only when the round limit was reached).
    pub complete: bool,
}

/// The background cleanup started by [`PgStore::spawn_cleanup`]; dropping it stops the task.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(store: matroska_postgres::PgStore) {
/// let task = store.spawn_cleanup(std::time::Duration::from_secs(60));
/// drop(task); // stops it
/// # }
/// ```
#[derive(Debug)]
pub struct CleanupTask {
    handle: JoinHandle<()>,
}

impl CleanupTask {
    pub(crate) fn spawn(store: PgStore, every: Duration) -> Self {
        let every = every.max(Duration::from_millis(10));
        let handle = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match store.cleanup().await {
                    Ok(report)
                        if report.expired + report.swept + report.stamps_pruned + report.strays
                            > 0 =>
                    {
                        tracing::debug!(?report, "matroska-postgres: background cleanup");
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "matroska-postgres: background cleanup failed");
                    }
                }
            }
        });
        Self { handle }
    }

    /// Stops the task (a round in progress is abandoned; its statement rolls back).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(store: matroska_postgres::PgStore) {
    /// store.spawn_cleanup(std::time::Duration::from_secs(60)).stop();
    /// # }
    /// ```
    pub fn stop(self) {
        self.handle.abort();
    }

    /// Whether the task has stopped.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(store: matroska_postgres::PgStore) {
    /// assert!(!store.spawn_cleanup(std::time::Duration::from_secs(60)).is_finished());
    /// # }
    /// ```
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

impl Drop for CleanupTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}
