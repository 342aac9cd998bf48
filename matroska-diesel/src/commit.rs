//! The outermost transaction: it commits, then hands out what its writes touched; a COMMIT
//! whose outcome is unknown hands them out too.

use std::mem;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::pg::PgConnection;
use matroska_core::{Cache, Dep, Store, codec::Codec};

use crate::error::Error;
use crate::tx::Tx;

/// Runs `f` in a transaction on `conn` and returns its value with the [`Invalidations`] its
/// writes collected, to apply to the cache now that the transaction has committed.
///
/// If `f` fails, the transaction is rolled back and the invalidations are dropped. If `f` panics,
/// the transaction is rolled back (the connection is left clean, outside any transaction) and the
/// panic resumes; the invalidations are dropped.
///
/// If `f` succeeds but the `COMMIT` fails, the client cannot always tell whether the transaction
/// committed (the connection may be lost after the server wrote the commit): the invalidations
/// come back inside the error, [`Error::CommitFailed`], to be applied like those of a commit.
/// Invalidating when in doubt is always safe; it costs only misses. That is why the error type
/// must hold an [`Error`] (`E: From<Error>`): keep the `Error` (or its invalidations) to apply
/// them, as [`CachedPool::transaction`](crate::CachedPool::transaction) does for you.
///
/// Reads in `f` run at the connection's isolation level (PostgreSQL's default is
/// `READ COMMITTED`); [`Tx::fetch`] uses the shared cache only while the database says that the
/// transaction has written nothing and runs at `READ COMMITTED`.
///
/// # Errors
///
/// `f`'s error; the database's error on `BEGIN`; [`Error::CommitFailed`] (converted into `E`)
/// when `COMMIT` fails, holding the invalidations; `diesel::result::Error::AlreadyInTransaction`
/// if `conn` is already in a transaction: its invalidations could then not wait for the real
/// commit (use [`Tx::savepoint`] inside the outer transaction instead).
///
/// # Examples
///
/// ```no_run
/// use diesel::prelude::*;
/// use matroska_diesel::{CacheModel, Error, transaction};
///
/// diesel::table! { articles (id) { id -> BigInt, category -> Text, title -> Text } }
///
/// #[derive(Queryable, Selectable, Identifiable, Insertable, CacheModel)]
/// #[diesel(table_name = articles)]
/// #[matroska(scope(category))]
/// struct Article { id: i64, category: String, title: String }
///
/// # async fn run(conn: &mut PgConnection, cache: matroska_diesel::Cache<matroska_core::MemoryStore>) -> Result<(), Error> {
/// let new = Article { id: 9, category: "news".into(), title: "Hello".into() };
/// match transaction(conn, |tx| tx.insert::<Article, _, _>(articles::table, &new)) {
///     Ok((_article, invalidations)) => {
///         invalidations.apply(&cache).await?;
///     }
///     // The COMMIT failed: it may have committed all the same. Invalidate, then report.
///     Err(Error::CommitFailed { source, invalidations }) => {
///         invalidations.apply(&cache).await?;
///         return Err(source.into());
///     }
///     Err(err) => return Err(err),
/// }
/// # Ok(()) }
/// ```
pub fn transaction<T, E, F>(conn: &mut PgConnection, f: F) -> Result<(T, Invalidations), E>
where
    F: FnOnce(&mut Tx<'_>) -> Result<T, E>,
    E: From<diesel::result::Error> + From<Error>,
{
    run(conn, f).map_err(|failure| match failure {
        Failure::Aborted(err) => err,
        Failure::Commit {
            source,
            invalidations,
        } => E::from(Error::CommitFailed {
            source,
            invalidations,
        }),
    })
}

/// How a transaction failed.
#[derive(Debug)]
pub(crate) enum Failure<E> {
    /// It did not commit: `f` failed (and the transaction rolled back), or `BEGIN` failed.
    Aborted(E),
    /// `COMMIT` failed: it may have committed all the same.
    Commit {
        source: diesel::result::Error,
        invalidations: Invalidations,
    },
}

/// [`transaction`], telling a failed `COMMIT` apart from every other failure.
pub(crate) fn run<T, E, F>(conn: &mut PgConnection, f: F) -> Result<(T, Invalidations), Failure<E>>
where
    F: FnOnce(&mut Tx<'_>) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    let aborted = |err: diesel::result::Error| Failure::Aborted(E::from(err));
    let depth = AnsiTransactionManager::transaction_manager_status_mut(conn)
        .transaction_depth()
        .map_err(aborted)?;
    if depth.is_some() {
        return Err(aborted(diesel::result::Error::AlreadyInTransaction));
    }
    AnsiTransactionManager::begin_transaction(conn).map_err(aborted)?;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut tx = Tx::new(conn, false);
        let value = f(&mut tx);
        (value, tx.take_pending())
    }));
    match outcome {
        Ok((Ok(value), pending)) => {
            let invalidations = Invalidations {
                deps: pending.into_vec(),
            };
            match AnsiTransactionManager::commit_transaction(conn) {
                Ok(()) => {
                    tracing::debug!(deps = invalidations.deps.len(), "transaction committed");
                    Ok((value, invalidations))
                }
                Err(source) => {
                    tracing::warn!(
                        error = %source,
                        deps = invalidations.deps.len(),
                        "COMMIT failed, so the transaction may have committed: its \
                         invalidations are handed back"
                    );
                    Err(Failure::Commit {
                        source,
                        invalidations,
                    })
                }
            }
        }
        // As Diesel's own `transaction`: roll back; if that fails too, its error wins, unless
        // the transaction manager is already broken (the caller's error says more then).
        Ok((Err(err), _dropped)) => match AnsiTransactionManager::rollback_transaction(conn) {
            Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => {
                Err(Failure::Aborted(err))
            }
            Err(rollback) => Err(aborted(rollback)),
        },
        Err(panic) => {
            roll_back_after_panic(conn);
            resume_unwind(panic)
        }
    }
}

/// A transaction left open by a panic: roll back every level, so that the connection (if
/// something catches the panic and reuses it) is outside any transaction.
fn roll_back_after_panic(conn: &mut PgConnection) {
    for _ in 0..1024 {
        match AnsiTransactionManager::transaction_manager_status_mut(conn).transaction_depth() {
            Ok(Some(_)) => {
                if let Err(err) = AnsiTransactionManager::rollback_transaction(conn) {
                    tracing::warn!(error = %err, "rollback after a panic failed");
                    return;
                }
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// The dependencies a committed transaction touched (or one whose `COMMIT` failed, and so may
/// have committed: [`Error::CommitFailed`]), to invalidate in the cache.
///
/// Apply them with [`apply`](Invalidations::apply). Dropping a non-empty `Invalidations`
/// without applying it or taking its dependencies ([`into_deps`](Invalidations::into_deps))
/// logs an error: the cache may keep values that the commit made stale.
///
/// # Examples
///
/// See [`transaction`].
#[derive(Debug, Default)]
#[must_use = "apply the invalidations to the cache, or cached values stay stale"]
pub struct Invalidations {
    deps: Vec<Dep>,
}

impl Invalidations {
    /// The dependencies, without duplicates.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(matroska_diesel::Invalidations::default().deps().is_empty());
    /// ```
    pub fn deps(&self) -> &[Dep] {
        &self.deps
    }

    /// Whether there is nothing to invalidate.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(matroska_diesel::Invalidations::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.deps.is_empty()
    }

    /// Takes the dependencies: applying them is now the caller's job.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(matroska_diesel::Invalidations::default().into_deps().is_empty());
    /// ```
    pub fn into_deps(mut self) -> Vec<Dep> {
        mem::take(&mut self.deps)
    }

    /// Invalidates the dependencies in `cache`; returns how many entries depended on them.
    ///
    /// # Errors
    ///
    /// The cache's error: the transaction committed, so cached values may be stale.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_diesel::Invalidations;
    ///
    /// # futures::executor::block_on(async {
    /// let cache = matroska_diesel::Cache::new(matroska_core::MemoryStore::new());
    /// assert_eq!(Invalidations::default().apply(&cache).await?, 0);
    /// # Ok::<(), matroska_core::Error>(()) });
    /// ```
    pub async fn apply<S: Store, C: Codec>(
        self,
        cache: &Cache<S, C>,
    ) -> matroska_core::Result<u64> {
        let deps = self.into_deps();
        cache.invalidate(&deps).await
    }
}

impl Drop for Invalidations {
    fn drop(&mut self) {
        if !self.deps.is_empty() {
            tracing::error!(
                deps = ?self.deps,
                "committed invalidations were dropped without being applied: cached values may be stale"
            );
        }
    }
}
