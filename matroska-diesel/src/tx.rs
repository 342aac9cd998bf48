//! Transactions that collect invalidations and hand them out only after the commit.

use std::mem;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use diesel::connection::{AnsiTransactionManager, Connection, TransactionManager};
use diesel::pg::PgConnection;
use matroska_core::{Cache, Dep, Store, codec::Codec};

use crate::deps::Deps;

/// A transaction on a PostgreSQL connection that collects the dependencies its writes touch.
///
/// Made by [`transaction`] (or [`CachedPool::transaction`](crate::CachedPool::transaction)).
/// The write helpers ([`insert`](Tx::insert), [`update`](Tx::update), [`delete`](Tx::delete)
/// and their variants) add what they touch to the transaction's buffer; the buffer leaves the
/// transaction only when the outermost transaction commits, as [`Invalidations`]. A savepoint
/// ([`Tx::savepoint`]) has a buffer of its own, merged into its parent's when it is released and
/// dropped when it rolls back.
///
/// The buffer lives in this value, on the stack of the closure's caller, never in the connection:
/// an error, a rollback or a panic drops it, and a pooled connection carries nothing to its next
/// user.
///
/// Use [`conn`](Tx::conn) for reads and for writes the helpers do not cover; declare what such a
/// write touches with [`invalidate`](Tx::invalidate).
///
/// # Examples
///
/// ```no_run
/// use diesel::prelude::*;
/// use matroska_diesel::{CacheModel, Cache, transaction};
///
/// diesel::table! { articles (id) { id -> BigInt, category -> Text, title -> Text } }
///
/// #[derive(Queryable, Selectable, Identifiable, CacheModel)]
/// #[diesel(table_name = articles)]
/// #[matroska(scope(category))]
/// struct Article { id: i64, category: String, title: String }
///
/// # async fn run(conn: &mut PgConnection, cache: Cache<matroska_core::MemoryStore>) -> Result<(), matroska_diesel::Error> {
/// let (moved, invalidations) = transaction(conn, |tx| {
///     tx.update_by_id::<Article, _, _, _>(articles::table, 5_i64, articles::category.eq("news"))
/// })?;
/// // Committed: now the cache may forget the old and the new category lists, and article 5.
/// invalidations.apply(&cache).await?;
/// # Ok(()) }
/// ```
pub struct Tx<'c> {
    conn: &'c mut PgConnection,
    pending: Deps,
    dirty: bool,
}

impl<'c> Tx<'c> {
    fn new(conn: &'c mut PgConnection, dirty: bool) -> Self {
        Self {
            conn,
            pending: Deps::new(),
            dirty,
        }
    }

    /// The connection, inside this transaction.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use diesel::prelude::*;
    /// # fn f(conn: &mut PgConnection) -> Result<(), matroska_diesel::Error> {
    /// let (n, _nothing) = matroska_diesel::transaction(conn, |tx| {
    ///     diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("1")).get_result::<i32>(tx.conn())
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn conn(&mut self) -> &mut PgConnection {
        self.conn
    }

    /// Adds dependencies to invalidate after the commit, for writes made through
    /// [`conn`](Tx::conn). Marks the transaction dirty.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use diesel::prelude::*;
    /// use matroska_diesel::Dep;
    ///
    /// # fn f(conn: &mut PgConnection) -> Result<(), matroska_diesel::Error> {
    /// let ((), invalidations) = matroska_diesel::transaction(conn, |tx| {
    ///     diesel::sql_query("UPDATE settings SET theme = 'dark'").execute(tx.conn())?;
    ///     tx.invalidate([Dep::tag("settings")]);
    ///     Ok::<_, matroska_diesel::Error>(())
    /// })?;
    /// assert_eq!(invalidations.deps(), [Dep::tag("settings")]);
    /// # drop(invalidations.into_deps()); Ok(()) }
    /// ```
    pub fn invalidate(&mut self, deps: impl IntoIterator<Item = Dep>) {
        self.pending.extend(deps);
        self.dirty = true;
    }

    /// Marks the transaction dirty without adding dependencies: from now on its cache reads
    /// ([`Tx::fetch`]) neither use nor fill the shared cache.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(conn: &mut diesel::PgConnection) -> Result<(), matroska_diesel::Error> {
    /// let (dirty, _) = matroska_diesel::transaction(conn, |tx| {
    ///     tx.mark_dirty();
    ///     Ok::<_, matroska_diesel::Error>(tx.is_dirty())
    /// })?;
    /// assert!(dirty);
    /// # Ok(()) }
    /// ```
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Whether this transaction is known to be dirty: it (or a savepoint released into it) wrote
    /// through the helpers, declared invalidations or was marked dirty, or a
    /// [`fetch`](Tx::fetch) asked the database and found that it wrote by other means (raw SQL,
    /// a trigger, a rolled-back savepoint, a loader) or does not run at `READ COMMITTED`. A raw
    /// write is not seen here until the next `fetch`.
    ///
    /// # Examples
    ///
    /// See [`Tx::mark_dirty`].
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The dependencies collected so far (in this savepoint, for a savepoint).
    ///
    /// # Examples
    ///
    /// See [`Tx::savepoint`].
    pub fn pending(&self) -> &[Dep] {
        self.pending.as_slice()
    }

    pub(crate) fn conn_and_record(&mut self) -> (&mut PgConnection, Recorder<'_>) {
        (
            self.conn,
            Recorder {
                pending: &mut self.pending,
                dirty: &mut self.dirty,
            },
        )
    }

    /// Runs `f` in a savepoint (a nested transaction). If `f` succeeds and the savepoint is
    /// released, what `f` collected joins this transaction's buffer; if `f` fails, its writes
    /// are rolled back and what it collected is dropped.
    ///
    /// # Errors
    ///
    /// `f`'s error, or the database's error on `SAVEPOINT` / `RELEASE`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use matroska_diesel::Dep;
    ///
    /// # fn f(conn: &mut diesel::PgConnection) -> Result<(), matroska_diesel::Error> {
    /// let ((), invalidations) = matroska_diesel::transaction(conn, |tx| {
    ///     tx.invalidate([Dep::tag("kept")]);
    ///     let failed: Result<(), matroska_diesel::Error> = tx.savepoint(|sp| {
    ///         sp.invalidate([Dep::tag("dropped")]);
    ///         Err(diesel::result::Error::RollbackTransaction.into())
    ///     });
    ///     assert!(failed.is_err());
    ///     assert_eq!(tx.pending(), [Dep::tag("kept")]);
    ///     Ok::<_, matroska_diesel::Error>(())
    /// })?;
    /// assert_eq!(invalidations.deps(), [Dep::tag("kept")]);
    /// # drop(invalidations.into_deps()); Ok(()) }
    /// ```
    pub fn savepoint<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<T, E>,
        E: From<diesel::result::Error>,
    {
        let dirty = self.dirty;
        let mut released = None;
        let value = self.conn.transaction::<T, E, _>(|conn| {
            let mut inner = Tx::new(conn, dirty);
            let value = f(&mut inner)?;
            released = Some((mem::take(&mut inner.pending), inner.dirty));
            Ok(value)
        })?;
        if let Some((pending, dirty)) = released {
            self.pending.extend(pending);
            self.dirty |= dirty;
        }
        Ok(value)
    }
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection has no Debug.
        f.debug_struct("Tx")
            .field("pending", &self.pending)
            .field("dirty", &self.dirty)
            .finish_non_exhaustive()
    }
}

/// Where the write helpers record what they touched.
pub(crate) struct Recorder<'a> {
    pending: &'a mut Deps,
    dirty: &'a mut bool,
}

impl Recorder<'_> {
    pub(crate) fn record(&mut self, deps: impl IntoIterator<Item = Dep>) {
        self.pending.extend(deps);
        *self.dirty = true;
    }
}

/// Runs `f` in a transaction on `conn` and returns its value with the [`Invalidations`] its
/// writes collected, to apply to the cache now that the transaction has committed.
///
/// If `f` fails, the transaction is rolled back and the invalidations are dropped. If `f` panics,
/// the transaction is rolled back (the connection is left clean, outside any transaction) and the
/// panic resumes; the invalidations are dropped.
///
/// Reads in `f` run at the connection's isolation level (PostgreSQL's default is
/// `READ COMMITTED`); [`Tx::fetch`] uses the shared cache only while the database says that the
/// transaction has written nothing and runs at `READ COMMITTED`.
///
/// # Errors
///
/// `f`'s error; the database's error on `BEGIN` / `COMMIT` (nothing to apply then: the
/// transaction did not commit); `diesel::result::Error::AlreadyInTransaction` if `conn` is
/// already in a transaction: its invalidations could then not wait for the real commit (use
/// [`Tx::savepoint`] inside the outer transaction instead).
///
/// # Examples
///
/// ```no_run
/// use diesel::prelude::*;
/// use matroska_diesel::{CacheModel, transaction};
///
/// diesel::table! { articles (id) { id -> BigInt, category -> Text, title -> Text } }
///
/// #[derive(Queryable, Selectable, Identifiable, Insertable, CacheModel)]
/// #[diesel(table_name = articles)]
/// #[matroska(scope(category))]
/// struct Article { id: i64, category: String, title: String }
///
/// # async fn run(conn: &mut PgConnection, cache: matroska_diesel::Cache<matroska_core::MemoryStore>) -> Result<(), matroska_diesel::Error> {
/// let new = Article { id: 9, category: "news".into(), title: "Hello".into() };
/// let (article, invalidations) = transaction(conn, |tx| tx.insert::<Article, _, _>(articles::table, &new))?;
/// invalidations.apply(&cache).await?;
/// # Ok(()) }
/// ```
pub fn transaction<T, E, F>(conn: &mut PgConnection, f: F) -> Result<(T, Invalidations), E>
where
    F: FnOnce(&mut Tx<'_>) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    let depth = AnsiTransactionManager::transaction_manager_status_mut(conn).transaction_depth()?;
    if depth.is_some() {
        return Err(diesel::result::Error::AlreadyInTransaction.into());
    }
    let mut committed = None;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        conn.transaction::<T, E, _>(|conn| {
            let mut tx = Tx::new(conn, false);
            let value = f(&mut tx)?;
            committed = Some(mem::take(&mut tx.pending));
            Ok(value)
        })
    }));
    match outcome {
        Ok(Ok(value)) => {
            let deps = committed.map(Deps::into_vec).unwrap_or_default();
            tracing::debug!(deps = deps.len(), "transaction committed");
            Ok((value, Invalidations { deps }))
        }
        Ok(Err(err)) => {
            if committed.is_some_and(|deps| !deps.is_empty()) {
                tracing::debug!("the commit failed: dropping its invalidations");
            }
            Err(err)
        }
        Err(panic) => {
            roll_back_after_panic(conn);
            resume_unwind(panic)
        }
    }
}

/// Diesel leaves a transaction open when its closure panics: roll back every level, so that the
/// connection (if something catches the panic and reuses it) is outside any transaction.
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

/// The dependencies a committed transaction touched, to invalidate in the cache.
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
