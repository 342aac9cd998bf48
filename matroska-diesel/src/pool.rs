//! [`CachedPool`]: sync Diesel on a pool, used from async code without blocking the runtime.

use std::error::Error as StdError;
use std::fmt;
use std::panic::resume_unwind;

use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool};
use matroska_core::codec::{Codec, MsgPack};
use matroska_core::{Cache, Dep, Fetched, IntoKey, Store};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinError;

use crate::commit::{Failure, Invalidations, run};
use crate::deps::{CacheDeps, loaded};
use crate::error::Error;
use crate::tx::Tx;

/// An r2d2 pool of PostgreSQL connections.
pub type PgPool = Pool<ConnectionManager<PgConnection>>;

/// A pool of Diesel connections together with the cache in front of them, for async code.
///
/// Diesel is synchronous: every database call here runs on Tokio's blocking threads
/// (`spawn_blocking`), so the async runtime never blocks. Writes go through
/// [`transaction`](CachedPool::transaction), which invalidates what they touched once the
/// transaction has committed; reads through [`fetch`](CachedPool::fetch).
///
/// Cloning is cheap (the pool and the cache are shared).
///
/// # Examples
///
/// ```no_run
/// use diesel::prelude::*;
/// use diesel::r2d2::{ConnectionManager, Pool};
/// use matroska_diesel::{Cache, CacheModel, CachedPool, Error};
///
/// diesel::table! { articles (id) { id -> BigInt, category -> Text, title -> Text } }
///
/// #[derive(Queryable, Selectable, Identifiable, CacheModel, serde::Serialize, serde::Deserialize)]
/// #[diesel(table_name = articles)]
/// #[matroska(scope(category))]
/// struct Article { id: i64, category: String, title: String }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = Pool::builder().build(ConnectionManager::<PgConnection>::new("postgres://localhost/blog"))?;
/// let db = CachedPool::new(pool, Cache::new(matroska_core::MemoryStore::new()));
///
/// // A cached list: its rows' ids and the scope of its filter.
/// let (filter, scope) = Article::scope_category("news").into_parts();
/// let news = db
///     .fetch("articles:news", [scope], move |conn| {
///         articles::table.filter(filter).order(articles::id).select(Article::as_select()).load(conn)
///     })
///     .await?;
///
/// // A write: the news list is invalidated once the transaction has committed.
/// db.transaction(|tx| {
///     tx.insert::<Article, _, _>(articles::table, (articles::category.eq("news"), articles::title.eq("Hi")))
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub struct CachedPool<S, C = MsgPack> {
    pool: PgPool,
    cache: Cache<S, C>,
}

impl<S, C> Clone for CachedPool<S, C> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            cache: self.cache.clone(),
        }
    }
}

impl<S: Store, C> fmt::Debug for CachedPool<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedPool")
            .field("pool", &self.pool)
            .field("cache", &self.cache)
            .finish()
    }
}

impl<S: Store, C: Codec> CachedPool<S, C> {
    /// Puts `cache` in front of `pool`.
    ///
    /// # Examples
    ///
    /// See [`CachedPool`].
    pub fn new(pool: PgPool, cache: Cache<S, C>) -> Self {
        Self { pool, cache }
    }

    /// The connection pool.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(db: matroska_diesel::CachedPool<matroska_core::MemoryStore>) {
    /// println!("{} idle connections", db.pool().state().idle_connections);
    /// # }
    /// ```
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The cache.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(db: matroska_diesel::CachedPool<matroska_core::MemoryStore>) {
    /// println!("hit rate {:.2}", db.cache().stats().hit_rate());
    /// # }
    /// ```
    pub fn cache(&self) -> &Cache<S, C> {
        &self.cache
    }

    /// Runs `f` with a pooled connection on a blocking thread: no transaction, no cache.
    ///
    /// # Errors
    ///
    /// `f`'s error, or [`Error::Pool`] / [`Error::Cancelled`] converted into it.
    ///
    /// # Panics
    ///
    /// If `f` panics, the panic resumes here.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use diesel::prelude::*;
    ///
    /// # async fn f(db: matroska_diesel::CachedPool<matroska_core::MemoryStore>) -> Result<(), matroska_diesel::Error> {
    /// let one: i32 = db
    ///     .run(|conn| Ok::<_, matroska_diesel::Error>(diesel::select(1.into_sql::<diesel::sql_types::Integer>()).get_result(conn)?))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let pool = self.pool.clone();
        blocking(move || {
            let mut conn = pool
                .get()
                .map_err(|err| E::from(Error::Pool(Box::new(err))))?;
            f(&mut conn)
        })
        .await
        .unwrap_or_else(|err| Err(E::from(err)))
    }

    /// Runs `f` in a transaction ([`transaction`](crate::transaction)) on a pooled connection, on
    /// a blocking thread; once it has committed, invalidates what its writes touched, then
    /// returns `f`'s value.
    ///
    /// The commit and the invalidation run in a task of their own: if this future is dropped
    /// while the transaction runs, the transaction still finishes and, if it commits, its
    /// invalidations are still applied. A rollback (an error from `f`) or a panic in `f` leaves
    /// nothing behind: the buffer is dropped with the transaction, and a connection that
    /// panicked is rolled back (r2d2 also discards it). If `COMMIT` fails, the transaction may
    /// have committed all the same (the connection was lost during `COMMIT`): its invalidations
    /// are applied anyway, then [`Error::CommitFailed`] is returned.
    ///
    /// # Errors
    ///
    /// `f`'s error; the database's error on `BEGIN`; [`Error::CommitFailed`] (its
    /// invalidations applied, or, if applying them failed too, handed back), [`Error::Pool`],
    /// [`Error::Cancelled`], and [`Error::Invalidation`] (the transaction committed but the
    /// cache could not be invalidated), converted into `E`.
    ///
    /// # Panics
    ///
    /// If `f` panics, the panic resumes here (after the rollback).
    ///
    /// # Examples
    ///
    /// See [`CachedPool`].
    pub async fn transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<diesel::result::Error> + From<Error> + Send + 'static,
    {
        let pool = self.pool.clone();
        let cache = self.cache.clone();
        let task = tokio::spawn(async move {
            let outcome = blocking(move || {
                let mut conn = pool
                    .get()
                    .map_err(|err| Failure::Aborted(E::from(Error::Pool(Box::new(err)))))?;
                run(&mut conn, f)
            })
            .await
            .unwrap_or_else(|err| Err(Failure::Aborted(E::from(err))));
            match outcome {
                Ok((value, invalidations)) => {
                    invalidations
                        .apply(&cache)
                        .await
                        .map_err(|err| E::from(Error::Invalidation(err)))?;
                    Ok(value)
                }
                Err(Failure::Aborted(err)) => Err(err),
                Err(Failure::Commit {
                    source,
                    invalidations,
                }) => {
                    let invalidations = apply_in_doubt(&cache, invalidations).await;
                    Err(E::from(Error::CommitFailed {
                        source,
                        invalidations,
                    }))
                }
            }
        });
        match task.await {
            Ok(outcome) => outcome,
            Err(err) => Err(E::from(joined(err))),
        }
    }

    /// Reads `key` through the cache; on a miss, runs `load` with a pooled connection on a
    /// blocking thread and caches its value, which depends on what it holds ([`CacheDeps`]) and
    /// on `deps` (the scope of a list's filter, the id of a row that may not exist). Concurrent
    /// misses of one key share one load; a load that races with an invalidation of its
    /// dependencies is returned but not stored ([`Cache::fetch`]).
    ///
    /// # Errors
    ///
    /// [`Error::Cache`]: the cache's error, or `load`'s (or the pool's) error as
    /// [`matroska_core::Error::Loader`].
    ///
    /// # Panics
    ///
    /// If `load` panics, the panic resumes here.
    ///
    /// # Examples
    ///
    /// See [`CachedPool`].
    pub async fn fetch<T, E, F>(
        &self,
        key: impl IntoKey,
        deps: impl IntoIterator<Item = Dep>,
        load: F,
    ) -> Result<Fetched<T>, Error>
    where
        T: CacheDeps + Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
        E: Into<Box<dyn StdError + Send + Sync>> + Send + 'static,
    {
        let pool = self.pool.clone();
        let deps: Vec<Dep> = deps.into_iter().collect();
        let fetched = self
            .cache
            .fetch(key, move || async move {
                let value = blocking(move || -> Result<T, Box<dyn StdError + Send + Sync>> {
                    let mut conn = pool.get()?;
                    load(&mut conn).map_err(Into::into)
                })
                .await
                .map_err(Box::new)??;
                Ok::<_, Box<dyn StdError + Send + Sync>>(loaded(value).deps(deps))
            })
            .await?;
        Ok(fetched)
    }
}

/// Applies the invalidations of a transaction whose `COMMIT` failed; returns those it could not
/// apply (none when it could).
async fn apply_in_doubt<S: Store, C: Codec>(
    cache: &Cache<S, C>,
    invalidations: Invalidations,
) -> Invalidations {
    match cache.invalidate(invalidations.deps()).await {
        Ok(removed) => {
            tracing::debug!(removed, "applied the invalidations of a failed COMMIT");
            drop(invalidations.into_deps());
            Invalidations::default()
        }
        Err(err) => {
            tracing::error!(
                error = %err,
                "COMMIT failed, and so did applying its invalidations: handing them back"
            );
            invalidations
        }
    }
}

/// Runs `f` on a blocking thread; a panic in `f` resumes in the caller.
async fn blocking<T, F>(f: F) -> Result<T, Error>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(joined)
}

/// A failed join: resumes a panic, reports a cancellation.
fn joined(err: JoinError) -> Error {
    match err.try_into_panic() {
        Ok(panic) => resume_unwind(panic),
        Err(err) => Error::Cancelled(Box::new(err)),
    }
}
