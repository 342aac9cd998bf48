//! [`PgStore`]: the [`Store`] implementation.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use deadpool::managed::Object;
use matroska_core::{Error, Result, Tag};
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, ToSql, Type};

use crate::cleanup::{CleanupReport, CleanupTask};
use crate::config::{Persistence, PgStoreConfig};
use crate::credentials::CredentialCache;
use crate::error::{self, is_connection_lost};
use crate::migrate::{self, MigrationReport};
use crate::pool::{Manager, Pool, PoolCounters, Pooled};
use crate::schema::SchemaName;
use crate::sql::Sql;

mod ops;

/// The largest value the store accepts (PostgreSQL's `bytea` holds up to 1 GB).
pub const MAX_VALUE_LEN: usize = 256 * 1024 * 1024;

/// The longest time to live stored as such (about 1,000 years); longer ones are capped.
pub(crate) const MAX_TTL_MS: i64 = 1000 * 365 * 24 * 3600 * 1000;

/// How many rounds one `cleanup` or `clear` call runs at most before it returns (each round is
/// one short statement of at most `batch_size` rows per step).
const MAX_ROUNDS: u32 = 10_000;

/// A dependency-tracking cache store inside PostgreSQL.
///
/// Entries, their tag index and the invalidation stamps live in tables of the store's own schema
/// (its namespace), `UNLOGGED` by default. Every operation is one prepared statement (or one
/// function call) and one round trip on a pooled connection in autocommit: reads never write.
/// The protocol is the one of [`matroska_core::store`], with PostgreSQL snapshots in place of
/// sequence numbers where it matters: an invalidation records its transaction, a fill token
/// records the reader's snapshot, and a stamp written by a transaction the fill's snapshot does
/// not see makes the fill stale. So the invalidation may run inside the writer's own transaction
/// (see the `{schema}.invalidate(text[])` SQL function) and still no fill that overlapped it
/// survives its commit.
///
/// Clones share the pool. See the crate documentation for setup, credentials and cleanup, and
/// the protocol below for what each table holds and why no entry survives an invalidation.
///
/// # Examples
///
/// ```no_run
/// use matroska_core::{Cache, Dep};
/// use matroska_postgres::PgStore;
///
/// # async fn demo() -> matroska_core::Result<()> {
/// let store = PgStore::builder("postgres://postgres@localhost/postgres")
///     .schema("app_cache")
///     .build()?;
/// store.migrate().await?;
/// let _cleanup = store.spawn_cleanup(std::time::Duration::from_secs(60));
///
/// let cache = Cache::new(store);
/// cache.put("article:5", &"Hello").dep(Dep::id("article", 5)).await?;
/// assert_eq!(cache.get::<String>("article:5").await?.as_deref(), Some("Hello"));
/// cache.invalidate([Dep::id("article", 5)]).await?;
/// assert_eq!(cache.get::<String>("article:5").await?, None);
/// # Ok(()) }
/// ```
///
#[doc = include_str!("../PROTOCOL-store.md")]
#[derive(Clone)]
pub struct PgStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: Pool,
    /// The fewest connections kept open (`min_connections`).
    pub(crate) min_connections: usize,
    schema: SchemaName,
    sql: Sql,
    persistence: Persistence,
    fill_window: Duration,
    batch_size: i32,
    pool_wait_timeout: Duration,
    operation_timeout: Duration,
    credentials: Option<Arc<CredentialCache>>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("PgStore")
            .field("schema", &inner.schema)
            .field("persistence", &inner.persistence)
            .field("fill_window", &inner.fill_window)
            .field("pool", &inner.pool.status())
            .finish_non_exhaustive()
    }
}

/// A snapshot of the pool and credential counters.
///
/// # Examples
///
/// ```
/// let store = matroska_postgres::PgStore::builder("postgres://localhost/db").pool_size(4).build()?;
/// let status = store.status();
/// assert_eq!((status.max_size, status.size), (4, 0));
/// # Ok::<(), matroska_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStatus {
    /// The most connections the pool opens.
    pub max_size: usize,
    /// Connections open now.
    pub size: usize,
    /// Open connections not in use.
    pub available: usize,
    /// Operations waiting for a connection.
    pub waiting: usize,
    /// Connections opened since the store was built.
    pub connections_opened: u64,
    /// Calls of the credential provider.
    pub credential_fetches: u64,
    /// Credentials the server rejected.
    pub auth_failures: u64,
}

/// A query failure before mapping: put tells a token that expired mid-put from other errors.
pub(crate) enum Failure {
    Db(tokio_postgres::Error),
    Other(Error),
}

impl PgStore {
    /// The store's statements.
    pub(crate) fn sql(&self) -> &crate::sql::Sql {
        &self.inner.sql
    }

    /// How long one operation may take.
    pub(crate) fn operation_timeout(&self) -> Duration {
        self.inner.operation_timeout
    }

    /// Starts configuring a store from a connection URL or key-value string; see
    /// [`PgStoreConfig`] for every setting. A string that does not parse is reported by
    /// [`PgStoreConfig::build`].
    ///
    /// # Examples
    ///
    /// ```
    /// let store = matroska_postgres::PgStore::builder("postgres://postgres@localhost/postgres")
    ///     .schema("cache")
    ///     .build()?;
    /// # let _ = store;
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn builder(url: &str) -> PgStoreConfig {
        PgStoreConfig::from_url_deferred(url)
    }

    pub(crate) fn from_config(config: &PgStoreConfig, schema: SchemaName) -> Result<Self> {
        let mut pg = config.pg.clone();
        pg.application_name(&config.application_name);
        // Every statement of the store is a key or index lookup whose best plan does not depend
        // on the parameters: plan once per connection instead of re-planning each call. And
        // every one is best served by a plain btree index scan: without statistics (small or new
        // tables) the planner would sometimes prefer a sequential scan (under a LIMIT, or for a
        // table it believes empty) and keep that plan for the life of the connection; and a
        // bitmap scan, unlike a plain index scan, never marks the index entries of dead rows
        // (kill_prior_tuple), so under the delete-and-refill churn of a cache it would visit
        // every dead version of a key until VACUUM. No JIT: no statement runs long enough to
        // gain from it (and a disabled scan's cost, where it is the only path, would trigger it).
        let mut options = pg.get_options().unwrap_or_default().to_owned();
        options.push_str(
            " -c plan_cache_mode=force_generic_plan -c enable_seqscan=off \
             -c enable_bitmapscan=off -c jit=off",
        );
        if let Some(timeout) = config.statement_timeout {
            options.push_str(" -c statement_timeout=");
            options.push_str(&timeout.as_millis().to_string());
        }
        pg.options(options.trim_start());
        pg.keepalives(true);
        pg.keepalives_idle(Duration::from_secs(30));
        let credentials = config.credentials.clone().map(|provider| {
            Arc::new(CredentialCache::new(
                provider,
                config.credential_refresh_margin,
                config.credential_timeout,
            ))
        });
        let manager = Manager {
            pg,
            connector: Arc::clone(&config.connector),
            credentials: credentials.clone(),
            connect_timeout: config.connect_timeout,
            auth_attempts: config.auth_attempts,
            max_lifetime: config.max_connection_lifetime,
            counters: PoolCounters::default(),
        };
        // Opening a connection may take a few tries (authentication failures, with backoff) and
        // a credential fetch; bound the whole of it.
        let attempts = config.auth_attempts.max(1);
        let create_timeout = config.connect_timeout * attempts
            + Duration::from_secs(2) * attempts
            + config.credential_timeout;
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .wait_timeout(Some(config.pool_wait_timeout))
            .create_timeout(Some(create_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| Error::Config(format!("could not build the connection pool: {e}")))?;
        let store = Self {
            inner: Arc::new(Inner {
                pool,
                min_connections: config.min_connections,
                sql: Sql::new(&schema),
                schema,
                persistence: config.persistence,
                fill_window: config.fill_window,
                batch_size: i32::try_from(config.batch_size).unwrap_or(i32::MAX),
                pool_wait_timeout: config.pool_wait_timeout,
                operation_timeout: config.operation_timeout,
                credentials,
            }),
        };
        store.keep_warm();
        Ok(store)
    }

    /// The store's schema (namespace).
    ///
    /// # Examples
    ///
    /// ```
    /// let store = matroska_postgres::PgStore::builder("postgres://localhost/db").schema("c").build()?;
    /// assert_eq!(store.schema().as_str(), "c");
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn schema(&self) -> &SchemaName {
        &self.inner.schema
    }

    /// The text of the statement a [`Store::get`] runs, and the session options (`-c ..`) of
    /// the store's connections: for matroska-bench, which runs the same statement on a bare
    /// `tokio-postgres` connection with the same settings, to tell the statement's server-side
    /// cost from the store's client path. Not a stable interface.
    ///
    /// [`Store::get`]: matroska_core::store::Store::get
    #[doc(hidden)]
    pub fn get_statement_and_options(&self) -> (&str, &str) {
        let options = self.inner.pool.manager().pg.get_options().unwrap_or("");
        (&self.inner.sql.get, options)
    }

    /// The fill window this handle was configured with (the schema records it at `migrate`).
    ///
    /// # Examples
    ///
    /// ```
    /// let store = matroska_postgres::PgStore::builder("postgres://localhost/db").build()?;
    /// assert_eq!(store.fill_window(), matroska_core::store::DEFAULT_FILL_WINDOW);
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn fill_window(&self) -> Duration {
        self.inner.fill_window
    }

    /// The pool's state and counters.
    ///
    /// # Examples
    ///
    /// ```
    /// let store = matroska_postgres::PgStore::builder("postgres://localhost/db").build()?;
    /// assert_eq!(store.status().waiting, 0);
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn status(&self) -> PoolStatus {
        let inner = &self.inner;
        let status = inner.pool.status();
        let credentials = inner.credentials.as_deref();
        let load = |f: fn(&CredentialCache) -> u64| credentials.map_or(0, f);
        PoolStatus {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
            connections_opened: inner
                .pool
                .manager()
                .counters
                .connections_opened
                .load(Ordering::Relaxed),
            credential_fetches: load(|c| c.counters.fetches.load(Ordering::Relaxed)),
            auth_failures: load(|c| c.counters.auth_failures.load(Ordering::Relaxed)),
        }
    }

    /// Creates or upgrades the schema: applies the versioned SQL files of `migrations/` that it
    /// has not applied yet, in one transaction, under an advisory lock (concurrent calls are
    /// safe), and records the fill window. Idempotent.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the schema was created with another [`Persistence`]; the server's
    /// error otherwise (for example a missing `CREATE` privilege).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> matroska_core::Result<()> {
    /// let store = matroska_postgres::PgStore::builder("postgres://postgres@localhost/postgres").build()?;
    /// let report = store.migrate().await?;
    /// assert_eq!(store.migrate().await?.applied.len(), 0, "idempotent");
    /// # let _ = report; Ok(()) }
    /// ```
    pub async fn migrate(&self) -> Result<MigrationReport> {
        let inner = &self.inner;
        let mut client = self.client("migrate").await?;
        let client: &mut tokio_postgres::Client = &mut client;
        migrate::migrate(client, &inner.schema, inner.persistence, inner.fill_window).await
    }

    /// Removes expired entries, entries that invalidations hide but did not remove (an
    /// invalidation inside a writer's transaction only stamps; an interrupted one, or one that
    /// missed an entry through a lost index row, leaves some), stray index rows, and stamps that
    /// are no longer needed: in rounds of short statements touching at most `batch_size` rows
    /// each, until nothing is left (FastPgCache's `cleanup()`).
    ///
    /// Nothing it removes is ever served, whether or not it runs; without it, those rows and
    /// the stamps stay. Stamps are pruned after a pass over every entry (at most one pass per
    /// two fill windows), so that pruning never makes an invalidated entry readable again; see
    /// the protocol in the [`PgStore`] documentation. Run it periodically:
    /// [`spawn_cleanup`](Self::spawn_cleanup).
    ///
    /// # Errors
    ///
    /// The server's error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(store: matroska_postgres::PgStore) -> matroska_core::Result<()> {
    /// let report = store.cleanup().await?;
    /// println!("removed {} expired entries", report.expired);
    /// # Ok(()) }
    /// ```
    pub async fn cleanup(&self) -> Result<CleanupReport> {
        let inner = &self.inner;
        let mut report = CleanupReport::default();
        while report.rounds < MAX_ROUNDS {
            let rows = self
                .query(
                    "cleanup",
                    &inner.sql.cleanup,
                    &[Type::INT4],
                    &[&inner.batch_size],
                )
                .await?;
            let row = first(&rows, "cleanup")?;
            report.expired += count(col::<i64>(row, 0, "cleanup")?);
            report.swept += count(col::<i64>(row, 1, "cleanup")?);
            report.stamps_pruned += count(col::<i64>(row, 2, "cleanup")?);
            report.strays += count(col::<i64>(row, 3, "cleanup")?);
            report.rounds += 1;
            if !col::<bool>(row, 4, "cleanup")? {
                report.complete = true;
                break;
            }
        }
        // Run-out refresh leases (rows of keys no longer refreshed), one bounded batch.
        self.query(
            "cleanup (leases)",
            &inner.sql.prune_leases,
            &[Type::INT8],
            &[&i64::from(inner.batch_size)],
        )
        .await?;
        tracing::debug!(?report, schema = %inner.schema, "matroska-postgres: cleanup");
        Ok(report)
    }

    /// Runs [`cleanup`](Self::cleanup) every `every` in a background task, until the returned
    /// handle is dropped or stopped. Failures are logged and retried at the next tick.
    ///
    /// # Panics
    ///
    /// When called outside a Tokio runtime.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(store: matroska_postgres::PgStore) {
    /// let cleanup = store.spawn_cleanup(std::time::Duration::from_secs(30));
    /// // ... serve requests ...
    /// cleanup.stop();
    /// # }
    /// ```
    pub fn spawn_cleanup(&self, every: Duration) -> CleanupTask {
        CleanupTask::spawn(self.clone(), every)
    }

    /// Closes the pool: open connections are closed as they are returned, and later operations
    /// fail.
    ///
    /// # Examples
    ///
    /// ```
    /// let store = matroska_postgres::PgStore::builder("postgres://localhost/db").build()?;
    /// store.close();
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn close(&self) {
        self.inner.pool.close();
    }

    pub(crate) async fn client(&self, what: &str) -> Result<Pooled> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|e| error::pool(e, what, self.inner.pool_wait_timeout))
    }

    /// Runs one prepared statement; on a lost connection (server restart, terminated backend)
    /// once more on another connection. Every operation of the store may safely run twice.
    ///
    /// A connection goes back to the pool only once its statement's result has arrived: when the
    /// statement times out, loses its connection, or the caller stops waiting (its future is
    /// dropped, as a request timeout does), the connection is closed instead, so that no later
    /// operation queues behind a statement nobody waits for.
    pub(crate) async fn query_raw(
        &self,
        what: &'static str,
        sql: &str,
        types: &[Type],
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Vec<Row>, Failure> {
        let timeout = self.inner.operation_timeout;
        let mut retried = false;
        loop {
            let guard = InFlight(Some(self.client(what).await.map_err(Failure::Other)?));
            let Some(client) = guard.0.as_deref() else {
                continue;
            };
            let attempt = async {
                let statement = client.prepare_typed_cached(sql, types).await?;
                client.query(&statement, params).await
            };
            match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(rows)) => {
                    guard.done();
                    return Ok(rows);
                }
                Ok(Err(error)) if is_connection_lost(&error) => {
                    // Never hand a dead connection back to the pool (`guard` closes it).
                    if retried {
                        return Err(Failure::Db(error));
                    }
                    tracing::warn!(%error, operation = what, "matroska-postgres: connection lost; retrying once");
                    retried = true;
                }
                Ok(Err(error)) => {
                    // The server answered: the connection is ready for the next statement.
                    guard.done();
                    return Err(Failure::Db(error));
                }
                Err(_) => {
                    return Err(Failure::Other(Error::Timeout {
                        operation: what,
                        after: timeout,
                    }));
                }
            }
        }
    }

    pub(crate) async fn query(
        &self,
        what: &'static str,
        sql: &str,
        types: &[Type],
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        self.query_raw(what, sql, types, params)
            .await
            .map_err(|failure| match failure {
                Failure::Db(error) => error::pg(error, what),
                Failure::Other(error) => error,
            })
    }

    /// The batches of an invalidation by transaction `xid` after its first: each tag's index
    /// rows, in key order, in batches (the first batch's rows again, whose entries are gone).
    /// Adds the entries removed to `removed`, also when a later batch fails.
    async fn reclaim_rest(&self, tags: &[&str], xid: &str, removed: &mut u64) -> Result<()> {
        let inner = &self.inner;
        for tag in tags {
            let mut after = String::new();
            loop {
                let rows = self
                    .query(
                        "invalidate (reclaim)",
                        &inner.sql.reclaim,
                        &[Type::TEXT, Type::TEXT, Type::TEXT, Type::INT4],
                        &[tag, &xid, &after, &inner.batch_size],
                    )
                    .await?;
                let row = first(&rows, "reclaim")?;
                *removed += count(col::<i64>(row, 0, "reclaim")?);
                let scanned = count(col::<i64>(row, 1, "reclaim")?);
                match col::<Option<String>>(row, 2, "reclaim")? {
                    Some(last) if scanned >= self.batch() => after = last,
                    _ => break,
                }
            }
        }
        Ok(())
    }

    fn batch(&self) -> u64 {
        u64::try_from(self.inner.batch_size).unwrap_or(1)
    }
}

/// A pooled connection with a statement in flight: closed when dropped, unless [`done`] says
/// that the statement's result has arrived (then it goes back to the pool). The connection is
/// there until `done` or the drop takes it.
///
/// [`done`]: InFlight::done
pub(crate) struct InFlight(pub(crate) Option<Pooled>);

impl InFlight {
    /// The statement is over: the connection goes back to the pool.
    pub(crate) fn done(mut self) {
        drop(self.0.take());
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            // Out of the pool, and closed: deadpool-postgres aborts the connection's task.
            drop(Object::take(client));
        }
    }
}

fn first<'r>(rows: &'r [Row], what: &str) -> Result<&'r Row> {
    rows.first().ok_or_else(|| Error::Backend {
        store: error::STORE,
        message: format!("{what}: the server returned no row"),
        transient: false,
        source: None,
    })
}

pub(crate) fn col<'r, T: FromSql<'r>>(row: &'r Row, index: usize, what: &str) -> Result<T> {
    row.try_get(index).map_err(|e| error::pg(e, what))
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The distinct tags, as text.
pub(crate) fn tag_texts(tags: &[Tag]) -> Vec<&str> {
    let mut texts: Vec<&str> = tags.iter().map(Tag::as_str).collect();
    texts.sort_unstable();
    texts.dedup();
    texts
}

/// What an entry's `tags` column holds: the clear tag, which every entry carries, then `tags`.
pub(crate) fn carried<'a>(tags: &[&'a str]) -> Vec<&'a str> {
    let mut carried = Vec::with_capacity(tags.len() + 1);
    carried.push(crate::sql::CLEAR_TAG);
    carried.extend_from_slice(tags);
    carried
}

/// A put's TTL in milliseconds, at most [`MAX_TTL_MS`] (`None`: persistent).
pub(crate) fn ttl_ms(ttl: Option<std::time::Duration>) -> Option<i64> {
    ttl.map(|ttl| i64::try_from(ttl.as_millis()).map_or(MAX_TTL_MS, |ms| ms.min(MAX_TTL_MS)))
}
