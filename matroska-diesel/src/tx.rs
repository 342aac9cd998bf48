//! [`Tx`]: a transaction's connection and the buffer of what its writes touched.

use std::mem;

use diesel::connection::Connection;
use diesel::pg::PgConnection;
use matroska_core::Dep;

use crate::deps::Deps;

/// A transaction on a PostgreSQL connection that collects the dependencies its writes touch.
///
/// Made by [`transaction`](crate::transaction) (or [`CachedPool::transaction`](crate::CachedPool::transaction)).
/// The write helpers ([`insert`](Tx::insert), [`update`](Tx::update), [`delete`](Tx::delete)
/// and their variants) add what they touch to the transaction's buffer; the buffer leaves the
/// transaction only when the outermost transaction commits, as [`Invalidations`](crate::Invalidations). A savepoint
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
    pub(crate) fn new(conn: &'c mut PgConnection, dirty: bool) -> Self {
        Self {
            conn,
            pending: Deps::new(),
            dirty,
        }
    }

    /// Takes what the transaction collected (when it is about to commit).
    pub(crate) fn take_pending(&mut self) -> Deps {
        mem::take(&mut self.pending)
    }

    /// The connection, inside this transaction.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use diesel::prelude::*;
    /// # fn f(conn: &mut PgConnection) -> Result<(), matroska_diesel::Error> {
    /// let (n, _nothing) = matroska_diesel::transaction(conn, |tx| {
    ///     let n: i32 = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("1")).get_result(tx.conn())?;
    ///     Ok::<_, matroska_diesel::Error>(n)
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
