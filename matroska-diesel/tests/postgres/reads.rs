//! Reads inside a transaction: what `Tx::fetch` may take from, and put in, the shared cache.

use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use matroska_diesel::{CacheModel as _, Error, transaction};
use matroska_pg_capture::capture::{Capture, ScopeSet, TableCapture, TableRef};

use crate::support::schema::articles;
use crate::support::{Article, Backend, Fixture, page_key, unique};

over_every_store!(
    reads_in_a_dirty_transaction_neither_use_nor_fill_the_cache,
    a_clean_read_committed_transaction_reads_and_fills_the_shared_cache,
    an_uncommitted_raw_write_read_in_its_transaction_never_reaches_the_shared_cache,
    a_loader_that_writes_keeps_its_uncommitted_value_out_of_the_shared_cache,
    a_loader_that_writes_never_hands_its_value_to_callers_waiting_on_it,
    a_write_rolled_back_to_a_savepoint_keeps_the_transaction_off_the_shared_cache,
    a_snapshot_older_than_an_invalidation_never_fills_the_shared_cache,
);

/// Loads article `id` (the page of an article).
fn load_article(id: i64) -> impl Fn(&mut PgConnection) -> QueryResult<Article> + Copy {
    move |conn: &mut PgConnection| {
        articles::table
            .find(id)
            .select(Article::as_select())
            .first::<Article>(conn)
    }
}

async fn reads_in_a_dirty_transaction_neither_use_nor_fill_the_cache(backend: Backend) {
    let Some(f) = Fixture::new(backend, 2).await else {
        return;
    };
    let article = f.insert(1, "news", true).await;
    f.cache_page(&article).await;
    let (pool, cache) = (f.db.pool().clone(), f.cache().clone());
    let id = article.id;
    let load = move |conn: &mut PgConnection| {
        articles::table
            .find(id)
            .select(Article::as_select())
            .first::<Article>(conn)
    };
    tokio::task::spawn_blocking(move || {
        let mut conn = pool.get().expect("conn");
        let outcome: Result<((), _), Error> = transaction(&mut conn, |tx| {
            // Clean: a hit.
            let read = tx.fetch(&cache, page_key(id), [], load)?;
            assert_eq!(read.title, "t");
            tx.update_by_id::<Article, _, _, _>(articles::table, id, articles::title.eq("draft"))?;
            // Dirty: the database (this transaction's own write), not the cache.
            let read = tx.fetch(&cache, page_key(id), [], load)?;
            assert_eq!(read.title, "draft");
            let missing = tx.fetch(&cache, "uncached", [Article::dep_for_id(id)], load)?;
            assert_eq!(missing.title, "draft");
            Err(diesel::result::Error::RollbackTransaction.into())
        });
        assert!(outcome.is_err());
        let handle = tokio::runtime::Handle::current();
        let cached: Option<Article> = handle.block_on(cache.get(page_key(id))).expect("get");
        assert_eq!(
            cached.map(|a| a.title).as_deref(),
            Some("t"),
            "never filled with the draft"
        );
        assert!(!handle.block_on(cache.has("uncached")).expect("has"));
    })
    .await
    .expect("join");
}

/// The boundary of the database check: a READ COMMITTED transaction that has not written (no
/// transaction id) reads through the shared cache, and its loads fill it.
async fn a_clean_read_committed_transaction_reads_and_fills_the_shared_cache(backend: Backend) {
    let Some(f) = Fixture::new(backend, 2).await else {
        return;
    };
    let cached = f.insert(1, "news", true).await;
    let uncached = f.insert(1, "news", true).await;
    f.cache_page(&cached).await;
    let (pool, cache) = (f.db.pool().clone(), f.cache().clone());
    let (hit, filled) = tokio::task::spawn_blocking(move || {
        let mut conn = pool.get().expect("conn");
        transaction(&mut conn, |tx| {
            let hit = tx.fetch(&cache, page_key(cached.id), [], |_: &mut PgConnection| {
                Err::<Article, _>("a hit does not load")
            })?;
            let filled = tx.fetch(&cache, page_key(uncached.id), [], load_article(uncached.id))?;
            assert!(!tx.is_dirty(), "reading does not make it dirty");
            Ok::<_, Error>((hit, filled))
        })
        .expect("transaction")
        .0
    })
    .await
    .expect("join");
    assert_eq!(hit.id, cached.id);
    assert_eq!(filled.id, uncached.id);
    assert_eq!(
        f.cached_page(uncached.id).await.map(|a| a.title).as_deref(),
        Some("t"),
        "a clean transaction's load is stored"
    );
}

/// Installs change capture on `articles` that invalidates the fixture's PgStore inside the
/// writer's transaction (the triggers stamp the writer's tags with its transaction id), and
/// shows that it is live: a committed raw write removes a cached page.
async fn capture_into_the_pg_store(f: &mut Fixture) {
    let store_schema = f.store_schema.clone().expect("a PgStore fixture");
    let capture_schema = unique("matroska_diesel_cap");
    f.drop_schema_later(&capture_schema);
    let (mut client, connection) = tokio_postgres::connect(&f.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let table = TableRef::parse(&format!("{}.articles", f.schema)).expect("table");
    let articles_capture = TableCapture::new(table, "article")
        .id(["id"])
        .scope(ScopeSet::new(["category", "published"]))
        .scope(ScopeSet::new(["author_id"]))
        .notify(false)
        .store_schema(&store_schema)
        .expect("store schema");
    Capture::new(&capture_schema)
        .expect("capture schema")
        .install(&mut client, &[articles_capture])
        .await
        .expect("install capture");

    let probe = f.insert(3, "probe", true).await;
    f.cache_page(&probe).await;
    client
        .batch_execute(&format!(
            "UPDATE {}.articles SET title = 'probed' WHERE id = {}",
            f.schema, probe.id
        ))
        .await
        .expect("a committed raw write");
    assert!(
        f.cached_page(probe.id).await.is_none(),
        "change capture invalidates the PgStore"
    );
}

/// Review H1. A raw write through `tx.conn()` (no helper, no `tx.invalidate`) leaves the
/// transaction "clean" as far as the `Tx` knows; its read loads the uncommitted row on the
/// writer's connection. Neither that read's fill, nor anything after the rollback, may leave that
/// row in the shared cache: on Redis nothing would ever invalidate it (a rollback notifies
/// nothing), and on a PgStore fed by change capture the writer's stamps are invisible to the
/// fill and vanish with the rollback.
async fn an_uncommitted_raw_write_read_in_its_transaction_never_reaches_the_shared_cache(
    backend: Backend,
) {
    let Some(mut f) = Fixture::new(backend, 2).await else {
        return;
    };
    if backend == Backend::Postgres {
        capture_into_the_pg_store(&mut f).await;
    }
    let article = f.insert(1, "news", true).await;
    let id = article.id;
    let (pool, cache) = (f.db.pool().clone(), f.cache().clone());
    let dirty = tokio::task::spawn_blocking(move || {
        let mut conn = pool.get().expect("conn");
        let mut dirty = false;
        let outcome: Result<((), _), Error> = transaction(&mut conn, |tx| {
            diesel::sql_query("UPDATE articles SET title = 'uncommitted' WHERE id = $1")
                .bind::<diesel::sql_types::BigInt, _>(id)
                .execute(tx.conn())?;
            let read = tx.fetch(
                &cache,
                page_key(id),
                [Article::dep_for_id(id)],
                load_article(id),
            )?;
            assert_eq!(
                read.title, "uncommitted",
                "the transaction sees its own write"
            );
            dirty = tx.is_dirty();
            Err(diesel::result::Error::RollbackTransaction.into())
        });
        assert!(matches!(
            outcome,
            Err(Error::Database(diesel::result::Error::RollbackTransaction))
        ));
        dirty
    })
    .await
    .expect("join");

    assert_eq!(
        f.cached_page(id).await.map(|a| a.title),
        None,
        "the shared cache holds a row the database never committed"
    );
    assert!(dirty, "the database's answer marks the transaction dirty");
    let read =
        f.db.fetch(page_key(id), [Article::dep_for_id(id)], load_article(id))
            .await
            .expect("fetch");
    assert_eq!(read.value.title, "t");
}

/// A loader that writes (an `UPDATE ... RETURNING`, a get-or-create) in a clean transaction:
/// its value exists only in this transaction, so it is returned but never stored.
async fn a_loader_that_writes_keeps_its_uncommitted_value_out_of_the_shared_cache(
    backend: Backend,
) {
    let Some(f) = Fixture::new(backend, 2).await else {
        return;
    };
    let article = f.insert(1, "news", true).await;
    let id = article.id;
    let (pool, cache) = (f.db.pool().clone(), f.cache().clone());
    let dirty = tokio::task::spawn_blocking(move || {
        let mut conn = pool.get().expect("conn");
        let mut dirty = false;
        let outcome: Result<((), _), Error> = transaction(&mut conn, |tx| {
            let read = tx.fetch(&cache, page_key(id), [], |conn: &mut PgConnection| {
                diesel::update(articles::table.find(id))
                    .set(articles::title.eq("written by the loader"))
                    .returning(Article::as_returning())
                    .get_result::<Article>(conn)
            })?;
            assert_eq!(read.title, "written by the loader", "the caller gets it");
            dirty = tx.is_dirty();
            Err(diesel::result::Error::RollbackTransaction.into())
        });
        assert!(matches!(
            outcome,
            Err(Error::Database(diesel::result::Error::RollbackTransaction))
        ));
        dirty
    })
    .await
    .expect("join");
    assert_eq!(
        f.cached_page(id).await.map(|a| a.title),
        None,
        "the shared cache holds the loader's uncommitted write"
    );
    assert!(dirty, "the loader's write makes the transaction dirty");
}

/// Conservative on purpose: a savepoint that wrote and rolled back leaves the transaction with a
/// transaction id, so its later reads stay off the shared cache even though what they read is
/// committed data.
async fn a_write_rolled_back_to_a_savepoint_keeps_the_transaction_off_the_shared_cache(
    backend: Backend,
) {
    let Some(f) = Fixture::new(backend, 2).await else {
        return;
    };
    let article = f.insert(1, "news", true).await;
    let id = article.id;
    let (pool, cache) = (f.db.pool().clone(), f.cache().clone());
    let dirty = tokio::task::spawn_blocking(move || {
        let mut conn = pool.get().expect("conn");
        let outcome = transaction(&mut conn, |tx| {
            let rolled_back: Result<(), Error> = tx.savepoint(|sp| {
                sp.update_by_id::<Article, _, _, _>(articles::table, id, articles::title.eq("x"))?;
                Err(diesel::result::Error::RollbackTransaction.into())
            });
            assert!(rolled_back.is_err());
            let read = tx.fetch(&cache, page_key(id), [], load_article(id))?;
            assert_eq!(read.title, "t", "the savepoint's write is gone");
            Ok::<_, Error>(tx.is_dirty())
        });
        let (dirty, invalidations) = outcome.expect("transaction");
        assert!(invalidations.is_empty(), "the savepoint's part was dropped");
        dirty
    })
    .await
    .expect("join");
    assert!(
        !f.cached(&page_key(id)).await,
        "a transaction with a transaction id filled the shared cache"
    );
    assert!(dirty);
}

/// Review M6. Under REPEATABLE READ or SERIALIZABLE (here the session's default, as a server's
/// `default_transaction_isolation` would make it), a read loads from the transaction's snapshot,
/// which may predate a write whose invalidation has already completed: the fill's token is newer
/// than that invalidation, so the store would accept the old row, and keep it.
async fn a_snapshot_older_than_an_invalidation_never_fills_the_shared_cache(backend: Backend) {
    let Some(f) = Fixture::new(backend, 2).await else {
        return;
    };
    for isolation in ["repeatable read", "serializable"] {
        let article = f.insert(1, "news", true).await;
        let id = article.id;
        let (db, cache, connect) = (f.db.clone(), f.cache().clone(), f.connect());
        tokio::task::spawn_blocking(move || {
            let handle = tokio::runtime::Handle::current();
            let mut conn = connect();
            conn.batch_execute(&format!(
                "SET default_transaction_isolation = '{isolation}'"
            ))
            .expect("isolation");
            let outcome = transaction(&mut conn, |tx| {
                // The snapshot: taken by the transaction's first query.
                assert_eq!(load_article(id)(tx.conn())?.title, "t");
                // Another transaction commits a new title, and its invalidation completes.
                handle
                    .block_on(db.transaction(move |other| {
                        other.update_by_id::<Article, _, _, _>(
                            articles::table,
                            id,
                            articles::title.eq("new"),
                        )
                    }))
                    .expect("the other transaction");
                let read = tx.fetch(
                    &cache,
                    page_key(id),
                    [Article::dep_for_id(id)],
                    load_article(id),
                )?;
                assert_eq!(
                    read.title, "t",
                    "{isolation}: the snapshot predates the write"
                );
                Ok::<_, Error>(())
            });
            let ((), invalidations) = outcome.expect("transaction");
            assert!(invalidations.is_empty());
        })
        .await
        .expect("join");
        assert_ne!(
            f.cached_page(id).await.map(|a| a.title).as_deref(),
            Some("t"),
            "{isolation}: the shared cache holds a row older than a completed invalidation"
        );
    }
}

/// The loader's value is not even shared in this process: a caller of the same key that waits on
/// the load (single flight) gets an error or a committed value, never the transaction's own.
async fn a_loader_that_writes_never_hands_its_value_to_callers_waiting_on_it(backend: Backend) {
    let Some(f) = Fixture::new(backend, 2).await else {
        return;
    };
    let article = f.insert(1, "news", true).await;
    let id = article.id;
    let (pool, db, cache) = (f.db.pool().clone(), f.db.clone(), f.cache().clone());
    let waiter = tokio::task::spawn_blocking(move || {
        let handle = tokio::runtime::Handle::current();
        let mut conn = pool.get().expect("conn");
        let mut waiter = None;
        let outcome: Result<((), _), Error> = transaction(&mut conn, |tx| {
            let read = tx.fetch(&cache, page_key(id), [], |conn: &mut PgConnection| {
                let waits = cache.stats().waits;
                waiter = Some(
                    handle.spawn(async move { db.fetch(page_key(id), [], load_article(id)).await }),
                );
                // Bounded polling: the other caller is waiting on this load.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                while cache.stats().waits == waits {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the other caller never waited on this load"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                diesel::update(articles::table.find(id))
                    .set(articles::title.eq("written by the loader"))
                    .returning(Article::as_returning())
                    .get_result::<Article>(conn)
            })?;
            assert_eq!(read.title, "written by the loader");
            Err(diesel::result::Error::RollbackTransaction.into())
        });
        assert!(outcome.is_err());
        waiter.expect("spawned")
    })
    .await
    .expect("join");
    let waited = waiter.await.expect("join the waiter");
    assert_ne!(
        waited
            .as_ref()
            .ok()
            .map(|fetched| fetched.value.title.as_str()),
        Some("written by the loader"),
        "a waiting caller got a value that never committed"
    );
    assert_eq!(f.cache().stats().waits, 1, "the race ran");
}
