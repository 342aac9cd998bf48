//! Cache reads inside a transaction: through the shared cache while the database says the
//! transaction sees only committed data at a fresh snapshot, straight from the database otherwise.
//!
//! # Why the database is asked
//!
//! A fill from inside a transaction is safe when the row it loads is one any other connection
//! could load at that moment: the cache's fill token, taken before the load, then orders it
//! against invalidations as it orders any other load. That holds exactly when
//!
//! - the transaction has written nothing: PostgreSQL assigns a transaction id at the first write
//!   (or row lock), so `pg_current_xact_id_if_assigned() IS NULL` says so, whoever made the
//!   write: a helper, raw SQL through [`Tx::conn`], a trigger, a savepoint since rolled back
//!   (its id stays: a conservative "dirty"), the loader itself;
//! - and every statement takes a fresh snapshot: `transaction_isolation = 'read committed'`.
//!   Under REPEATABLE READ or SERIALIZABLE the snapshot is the transaction's first, which may
//!   predate an invalidation that completed before the fill's token was taken.
//!
//! The answer "dirty" cannot become "clean" again within a transaction (an assigned id stays,
//! the isolation level is fixed at the first query), so it is kept in the [`Tx`] and later reads
//! ask nothing. "Clean" is asked again at every read, and once more after a load (the loader may
//! have written): one query per read of a clean transaction, two on a miss.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use diesel::pg::PgConnection;
use diesel::sql_types::Bool;
use diesel::{QueryResult, RunQueryDsl};
use matroska_core::codec::Codec;
use matroska_core::{Cache, Dep, IntoKey, Store};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::deps::{CacheDeps, loaded};
use crate::error::Error;
use crate::tx::Tx;

/// True when the current transaction has no transaction id (it has written nothing, locked no
/// row) and runs at READ COMMITTED (a fresh snapshot per statement).
const SEES_WHAT_OTHERS_SEE: &str = "pg_current_xact_id_if_assigned() IS NULL \
     AND current_setting('transaction_isolation') = 'read committed'";

/// Asks the database whether a load on `conn` now reads what any other connection would.
fn sees_what_others_see(conn: &mut PgConnection) -> QueryResult<bool> {
    diesel::select(diesel::dsl::sql::<Bool>(SEES_WHAT_OTHERS_SEE)).get_result(conn)
}

/// The loader wrote in its transaction: its value is that transaction's own, so it is neither
/// stored nor handed to callers waiting on the same key (they get this error).
#[derive(Debug)]
struct LoadedWhileDirty;

impl fmt::Display for LoadedWhileDirty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the loader wrote in its transaction: its value is private to that transaction and \
             was not shared",
        )
    }
}

impl StdError for LoadedWhileDirty {}

impl Tx<'_> {
    /// Reads `key` through `cache`, loading it with `load` on this transaction's connection on a
    /// miss. The loaded value depends on what it holds ([`CacheDeps`]) and on `deps` (the scope
    /// of a list, the id of a row that may not exist).
    ///
    /// The shared cache is used only while the database says that this transaction reads what
    /// any other connection would: it has no transaction id yet (it wrote nothing, by any means:
    /// a helper, raw SQL through [`conn`](Tx::conn), a savepoint since rolled back, a trigger)
    /// and it runs at `READ COMMITTED`. Otherwise (it wrote, or its snapshot may be older than an
    /// invalidation, under `REPEATABLE READ` or `SERIALIZABLE`) the cache is neither read nor
    /// filled: `load` runs directly, and the transaction is [dirty](Tx::is_dirty) from then on.
    /// A `load` that writes gets its value back but does not store it, and makes the transaction
    /// dirty; callers of the same key waiting on that load never get its value (they get an
    /// error).
    ///
    /// Checking costs one query per call while the transaction is clean (two on a miss), none
    /// once it is dirty.
    ///
    /// While the transaction is clean, the read goes through the cache, which needs the Tokio
    /// runtime: call this on a `spawn_blocking` thread (as inside
    /// [`CachedPool::transaction`](crate::CachedPool::transaction)), never on an async worker
    /// thread.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] if the check fails; [`Error::Cache`] with the cache's error, or
    /// `load`'s error as [`matroska_core::Error::Loader`]; [`Error::NoRuntime`] outside a Tokio
    /// runtime.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use diesel::prelude::*;
    /// use matroska_diesel::CacheModel;
    ///
    /// diesel::table! { articles (id) { id -> BigInt, title -> Text } }
    ///
    /// #[derive(Queryable, Selectable, Identifiable, CacheModel, serde::Serialize, serde::Deserialize)]
    /// #[diesel(table_name = articles)]
    /// struct Article { id: i64, title: String }
    ///
    /// # fn f(conn: &mut PgConnection, cache: matroska_diesel::Cache<matroska_core::MemoryStore>) -> Result<(), matroska_diesel::Error> {
    /// let (title, invalidations) = matroska_diesel::transaction(conn, |tx| {
    ///     diesel::update(articles::table.find(5)).set(articles::title.eq("New")).execute(tx.conn())?;
    ///     tx.invalidate([Article::dep_for_id(5)]);
    ///     // It wrote: this reads the database (and sees "New"), not the cache.
    ///     let article: Option<Article> = tx.fetch(&cache, "article:5", [Article::dep_for_id(5)], |conn| {
    ///         articles::table.find(5).select(Article::as_select()).first(conn).optional()
    ///     })?;
    ///     Ok::<_, matroska_diesel::Error>(article.map(|a| a.title))
    /// })?;
    /// # drop(invalidations.into_deps()); Ok(()) }
    /// ```
    pub fn fetch<T, S, C, F, E>(
        &mut self,
        cache: &Cache<S, C>,
        key: impl IntoKey,
        deps: impl IntoIterator<Item = Dep>,
        load: F,
    ) -> Result<T, Error>
    where
        T: CacheDeps + Serialize + DeserializeOwned,
        S: Store,
        C: Codec,
        F: FnOnce(&mut PgConnection) -> Result<T, E>,
        E: Into<Box<dyn StdError + Send + Sync>>,
    {
        if !self.is_dirty() && !sees_what_others_see(self.conn())? {
            tracing::debug!(
                "the transaction wrote or reads an older snapshot: the shared cache is off for \
                 the rest of it"
            );
            self.mark_dirty();
        }
        if self.is_dirty() {
            tracing::debug!("dirty transaction: loading without the shared cache");
            return load(self.conn())
                .map_err(|err| Error::Cache(matroska_core::Error::Loader(Arc::from(err.into()))));
        }
        let handle =
            tokio::runtime::Handle::try_current().map_err(|err| Error::NoRuntime(Box::new(err)))?;
        let conn = self.conn();
        let mut private = None;
        let slot = &mut private;
        let fetched = handle.block_on(cache.fetch(key, move || async move {
            let value = load(&mut *conn).map_err(Into::into)?;
            if sees_what_others_see(conn)? {
                Ok(loaded(value).deps(deps))
            } else {
                *slot = Some(value);
                Err(Box::new(LoadedWhileDirty) as Box<dyn StdError + Send + Sync>)
            }
        }));
        match (fetched, private) {
            (Ok(fetched), _) => Ok(fetched.value),
            (Err(_), Some(value)) => {
                tracing::debug!("the loader wrote: its value was not shared");
                self.mark_dirty();
                Ok(value)
            }
            (Err(err), None) => Err(err.into()),
        }
    }
}
