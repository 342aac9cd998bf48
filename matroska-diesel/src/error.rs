//! The error of the Diesel integration.

use std::error::Error as StdError;

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
