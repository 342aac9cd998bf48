//! Cache reads inside a transaction: through the shared cache while the transaction is clean,
//! straight from the database once it has written.

use std::error::Error as StdError;
use std::sync::Arc;

use diesel::pg::PgConnection;
use matroska_core::codec::Codec;
use matroska_core::{Cache, Dep, IntoKey, Store};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::deps::{CacheDeps, loaded};
use crate::error::Error;
use crate::tx::Tx;

impl Tx<'_> {
    /// Reads `key` through `cache`, loading it with `load` on this transaction's connection on a
    /// miss. The loaded value depends on what it holds ([`CacheDeps`]) and on `deps` (the scope
    /// of a list, the id of a row that may not exist).
    ///
    /// Once the transaction is [dirty](Tx::is_dirty) (it wrote, and the cache does not know yet),
    /// the shared cache is neither read (it may hold what this transaction changed) nor filled
    /// (this transaction sees rows no one else sees yet, and may roll back): `load` runs directly.
    ///
    /// While the transaction is clean, the read goes through the cache, which needs the Tokio
    /// runtime: call this on a `spawn_blocking` thread (as inside
    /// [`CachedPool::transaction`](crate::CachedPool::transaction)), never on an async worker
    /// thread. Fills from a clean transaction are race-safe under `READ COMMITTED` (the default);
    /// do not read through the cache from a `REPEATABLE READ` or `SERIALIZABLE` transaction,
    /// whose snapshot may predate an invalidation.
    ///
    /// # Errors
    ///
    /// [`Error::Cache`] with the cache's error, or `load`'s error as
    /// [`matroska_core::Error::Loader`]; [`Error::NoRuntime`] outside a Tokio runtime.
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
    ///     tx.update_by_id::<Article, _, _, _>(articles::table, 5_i64, articles::title.eq("New"))?;
    ///     // Dirty: this reads the database (and sees "New"), not the cache.
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
        if self.is_dirty() {
            tracing::debug!("dirty transaction: loading without the shared cache");
            return load(self.conn())
                .map_err(|err| Error::Cache(matroska_core::Error::Loader(Arc::from(err.into()))));
        }
        let handle =
            tokio::runtime::Handle::try_current().map_err(|err| Error::NoRuntime(Box::new(err)))?;
        let conn = self.conn();
        let fetched = handle.block_on(cache.fetch(key, move || async move {
            load(conn).map(|value| loaded(value).deps(deps))
        }))?;
        Ok(fetched.value)
    }
}
