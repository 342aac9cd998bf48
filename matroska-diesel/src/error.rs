//! The error of the Diesel integration.

use std::error::Error as StdError;

use crate::commit::Invalidations;

/// What can go wrong in `matroska-diesel`.
///
/// Database and cache errors keep their source: `Error::Database` wraps Diesel's error
/// unchanged (so `diesel::result::Error::NotFound` can be matched), `Error::Cache` the cache's.
///
/// # Examples
///
/// ```
/// use matroska_diesel::Error;
///
/// let err = Error::from(diesel::result::Error::NotFound);
/// assert!(matches!(err, Error::Database(diesel::result::Error::NotFound)));
/// assert_eq!(err.to_string(), "Record not found");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database failed, or a query was rejected.
    #[error(transparent)]
    Database(#[from] diesel::result::Error),

    /// No connection could be had from the pool.
    #[error("could not get a database connection from the pool")]
    Pool(#[source] Box<dyn StdError + Send + Sync>),

    /// The cache failed (a read, or a loader's error, as [`matroska_core::Error::Loader`]).
    #[error(transparent)]
    Cache(#[from] matroska_core::Error),

    /// The transaction committed, but invalidating what it wrote failed: cached values that
    /// depend on it may be stale until they expire or are invalidated again.
    #[error(
        "the transaction committed, but the cache invalidation failed: cached values may be stale"
    )]
    Invalidation(#[source] matroska_core::Error),

    /// `COMMIT` failed, so whether the transaction committed may be unknown: the connection can
    /// be lost after the server wrote the commit. The transaction's invalidations are here, to be
    /// applied as if it had committed (invalidating when in doubt is always safe).
    ///
    /// [`transaction`](crate::transaction) hands them back for the caller to apply;
    /// [`CachedPool::transaction`](crate::CachedPool::transaction) has applied them already, so
    /// `invalidations` is empty, unless applying them failed too (then they are the ones it
    /// could not apply). A `COMMIT` the server refused (a serialization failure, a deferred
    /// constraint) did not commit; it is reported here all the same, with `source` telling why.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use matroska_diesel::{Cache, Error, transaction};
    ///
    /// # async fn f(conn: &mut diesel::PgConnection, cache: Cache<matroska_core::MemoryStore>) -> Result<(), Error> {
    /// let outcome = transaction(conn, |tx| {
    ///     tx.invalidate([matroska_diesel::Dep::tag("settings")]);
    ///     Ok::<_, Error>(())
    /// });
    /// if let Err(Error::CommitFailed { source, invalidations }) = outcome {
    ///     invalidations.apply(&cache).await?;
    ///     return Err(source.into());
    /// }
    /// # Ok(()) }
    /// ```
    #[error("COMMIT failed: the transaction may or may not have committed")]
    CommitFailed {
        /// The database's error on `COMMIT`.
        source: diesel::result::Error,
        /// What the transaction's writes touched: apply them.
        invalidations: Invalidations,
    },

    /// An update by filter kept meeting rows that other transactions changed to match the
    /// filter between its locked read and its update, so their old images could not be read.
    /// Retrying the transaction is safe.
    #[error(
        "rows matching the update changed concurrently {attempts} times in a row; retry the \
         transaction"
    )]
    Conflict {
        /// How many times the update was tried.
        attempts: u32,
    },

    /// A cache read inside a transaction needs a Tokio runtime (run the transaction on a
    /// `spawn_blocking` thread, as [`CachedPool`](crate::CachedPool) does).
    #[error("no Tokio runtime to reach the cache from this thread")]
    NoRuntime(#[source] Box<dyn StdError + Send + Sync>),

    /// The blocking task running the transaction was cancelled (the runtime shut down).
    #[error("the blocking database task was cancelled")]
    Cancelled(#[source] Box<dyn StdError + Send + Sync>),
}
