//! The write path against a real PostgreSQL: what each write invalidates, and when.
//!
//! Every test runs in a schema of its own (`SET search_path` on each pooled connection), so the
//! tests run in parallel. They need `MATROSKA_TEST_POSTGRES_URL` (`./scripts/test` starts a
//! private server); without it they are skipped, unless servers are required (CI).
//!
//! The cache runs on `MemoryStore`; [`store`] is the one line to change for another store.

// Test fixtures: failing loudly is their job.
#![allow(clippy::expect_used, clippy::print_stderr)]

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection as _, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use futures::FutureExt as _;
use matroska_core::{MemoryStore, Store};
use matroska_diesel::{Cache, CacheModel, CachedPool, Dep, Error, transaction};
use serde::{Deserialize, Serialize};

mod schema {
    diesel::table! {
        authors (id) {
            id -> BigInt,
            name -> Text,
        }
    }

    diesel::table! {
        articles (id) {
            id -> BigInt,
            author_id -> BigInt,
            category -> Text,
            published -> Bool,
            title -> Text,
        }
    }

    diesel::joinable!(articles -> authors (author_id));
    diesel::allow_tables_to_appear_in_same_query!(articles, authors);
}

use schema::{articles, authors};

#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Queryable,
    Selectable,
    Identifiable,
    CacheModel,
    Serialize,
    Deserialize,
)]
#[diesel(table_name = articles, check_for_backend(diesel::pg::Pg))]
#[matroska(kind = "article", scope(category, published), scope(author_id))]
struct Article {
    id: i64,
    author_id: i64,
    category: String,
    published: bool,
    title: String,
}

#[derive(Insertable)]
#[diesel(table_name = articles)]
struct NewArticle<'a> {
    author_id: i64,
    category: &'a str,
    published: bool,
    title: &'a str,
}

/// An edit form: only the fields that are `Some` are set.
#[derive(AsChangeset, Clone)]
#[diesel(table_name = articles)]
struct ArticleChanges {
    title: Option<String>,
    category: Option<String>,
}

type Db = CachedPool<Arc<dyn Store>>;

/// The store under the cache: the one line to change to run these tests on another store.
fn store() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

/// A schema of its own, dropped at the end.
struct Fixture {
    url: String,
    schema: String,
    db: Db,
}

#[derive(Debug)]
struct SearchPath(String);

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for SearchPath {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        diesel::sql_query(format!("SET search_path TO {}", self.0))
            .execute(conn)
            .map(drop)
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

const SCHEMA_SQL: &str = "
    CREATE TABLE authors (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL);
    CREATE TABLE articles (
        id BIGSERIAL PRIMARY KEY,
        author_id BIGINT NOT NULL REFERENCES authors (id),
        category TEXT NOT NULL,
        published BOOLEAN NOT NULL,
        title TEXT NOT NULL
    );
    INSERT INTO authors (name) VALUES ('Ada'), ('Grace'), ('Barbara');
";

impl Fixture {
    /// `None` when no server is configured (the test is skipped).
    async fn new(pool_size: u32) -> Option<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let url = matroska_testkit::server_url("MATROSKA_TEST_POSTGRES_URL")?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let schema = format!(
            "matroska_diesel_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let (url2, schema2) = (url.clone(), schema.clone());
        let pool = tokio::task::spawn_blocking(move || {
            let mut conn = PgConnection::establish(&url2).expect("connect");
            conn.batch_execute(&format!(
                "CREATE SCHEMA {schema2}; SET search_path TO {schema2}; {SCHEMA_SQL}"
            ))
            .expect("create the schema");
            Pool::builder()
                .max_size(pool_size)
                .min_idle(Some(0))
                .connection_customizer(Box::new(SearchPath(schema2)))
                .build(ConnectionManager::<PgConnection>::new(url2))
                .expect("pool")
        })
        .await
        .expect("setup");
        Some(Self {
            url,
            schema,
            db: CachedPool::new(pool, Cache::new(store())),
        })
    }

    fn cache(&self) -> &Cache<Arc<dyn Store>> {
        self.db.cache()
    }

    async fn insert(&self, author_id: i64, category: &'static str, published: bool) -> Article {
        self.db
            .transaction(move |tx| {
                let new = NewArticle {
                    author_id,
                    category,
                    published,
                    title: "t",
                };
                tx.insert::<Article, _, _>(articles::table, &new)
            })
            .await
            .expect("insert")
    }

    /// Caches the published-or-not list of a category (its rows and its scope), under `key`.
    async fn cache_list(&self, category: &'static str, published: bool) -> Vec<Article> {
        let (filter, scope) = Article::scope_category_published(category, published).into_parts();
        self.db
            .fetch(list_key(category, published), [scope], move |conn| {
                articles::table
                    .filter(filter)
                    .order(articles::id)
                    .select(Article::as_select())
                    .load(conn)
            })
            .await
            .expect("fetch")
            .value
    }

    /// Caches an entry that depends on a scope only (a count, say): only a scope invalidation
    /// removes it.
    async fn cache_scope_only(&self, key: &str, scope: &Dep) {
        self.cache()
            .put(key, &0_u8)
            .dep(scope.clone())
            .await
            .expect("put");
    }

    async fn cache_page(&self, article: &Article) {
        let key = page_key(article.id);
        self.cache()
            .put(&key, article)
            .dep(article.id_dep())
            .await
            .expect("put");
    }

    async fn cached(&self, key: &str) -> bool {
        self.cache().has(key).await.expect("has")
    }

    async fn rows(&self) -> Vec<Article> {
        self.db
            .run(|conn| {
                articles::table
                    .order(articles::id)
                    .select(Article::as_select())
                    .load(conn)
                    .map_err(Error::from)
            })
            .await
            .expect("rows")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // A thread of its own: drop may run on an async worker.
        let dropped = std::thread::spawn(move || {
            let mut conn = PgConnection::establish(&url)?;
            conn.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                .map_err(Into::into)
        })
        .join();
        if !matches!(
            dropped,
            Ok(Ok::<(), Box<dyn std::error::Error + Send + Sync>>(()))
        ) {
            eprintln!("warning: could not drop schema {}", self.schema);
        }
    }
}

fn list_key(category: &str, published: bool) -> String {
    format!("list:{category}:{published}")
}

fn page_key(id: i64) -> String {
    format!("page:{id}")
}

fn scope(category: &str, published: bool) -> Dep {
    Article::scope_category_published(category, published)
        .dep()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_entering_a_cached_scope_invalidates_it() {
    let Some(f) = Fixture::new(2).await else {
        return;
    };
    assert!(f.cache_list("news", true).await.is_empty());
    f.cache_list("tech", true).await;
    f.cache_list("news", false).await;

    let article = f.insert(1, "news", true).await;

    assert!(
        !f.cached(&list_key("news", true)).await,
        "the list it entered"
    );
    assert!(f.cached(&list_key("tech", true)).await, "another category");
    assert!(
        f.cached(&list_key("news", false)).await,
        "another published flag"
    );
    assert_eq!(f.cache_list("news", true).await, [article]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_moving_between_scopes_invalidates_both() {
    let Some(f) = Fixture::new(2).await else {
        return;
    };
    let moving = f.insert(1, "tech", true).await;
    f.insert(2, "sports", true).await;
    for category in ["tech", "news", "sports"] {
        f.cache_list(category, true).await;
    }
    f.cache_page(&moving).await;
    // Holds no row: only the scope the row leaves can invalidate it.
    f.cache_scope_only("count:tech", &scope("tech", true)).await;

    let id = moving.id;
    let moved =
        f.db.transaction(move |tx| {
            tx.update_by_id::<Article, _, _, _>(articles::table, id, articles::category.eq("news"))
        })
        .await
        .expect("update")
        .expect("the row exists");

    assert_eq!(moved.category, "news");
    assert!(
        !f.cached(&list_key("tech", true)).await,
        "a list holding the row"
    );
    assert!(!f.cached("count:tech").await, "the scope it left");
    assert!(
        !f.cached(&list_key("news", true)).await,
        "the scope it entered"
    );
    assert!(!f.cached(&page_key(id)).await, "the row itself");
    assert!(
        f.cached(&list_key("sports", true)).await,
        "an unrelated scope"
    );
    assert!(f.cache_list("tech", true).await.is_empty());
    assert_eq!(f.cache_list("news", true).await, [moved]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_of_an_unwatched_column_leaves_scopes_cached() {
    let Some(f) = Fixture::new(2).await else {
        return;
    };
    let article = f.insert(1, "news", true).await;
    let other = f.insert(1, "news", true).await;
    f.cache_list("news", true).await;
    f.cache_page(&article).await;
    f.cache_page(&other).await;
    f.cache_scope_only("count:news", &scope("news", true)).await;
    f.cache_scope_only("count:author1", Article::scope_author_id(1).dep())
        .await;

    // The edit form sets the title only (`category: None` is left out of the UPDATE).
    let changes = ArticleChanges {
        title: Some("Renamed".into()),
        category: None,
    };
    let id = article.id;
    let pool = f.db.pool().clone();
    let (renamed, invalidations) = tokio::task::spawn_blocking(move || {
        let mut conn = pool.get().expect("conn");
        transaction(&mut conn, |tx| {
            tx.update_by_id::<Article, _, _, _>(articles::table, id, &changes)
        })
    })
    .await
    .expect("join")
    .expect("update");
    assert_eq!(renamed.map(|a| a.title).as_deref(), Some("Renamed"));
    // The row, and the kind-wide dependency; no scope.
    assert_eq!(
        invalidations.deps(),
        [Article::dep_for_id(id), Article::cache_scopes().any()]
    );
    invalidations.apply(f.cache()).await.expect("invalidate");

    assert!(!f.cached(&page_key(id)).await, "the row");
    assert!(
        !f.cached(&list_key("news", true)).await,
        "a list holding the row"
    );
    assert!(f.cached("count:news").await, "its scope");
    assert!(f.cached("count:author1").await, "its other scope");
    assert!(f.cached(&page_key(other.id)).await, "another row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_invalidates_the_row_and_its_scopes() {
    let Some(f) = Fixture::new(2).await else {
        return;
    };
    let article = f.insert(2, "news", true).await;
    f.cache_page(&article).await;
    f.cache_scope_only("count:news", &scope("news", true)).await;
    f.cache_scope_only("count:author2", Article::scope_author_id(2).dep())
        .await;
    f.cache_scope_only("count:tech", &scope("tech", true)).await;

    let id = article.id;
    let deleted =
        f.db.transaction(move |tx| tx.delete_by_id::<Article, _, _>(articles::table, id))
            .await
            .expect("delete");

    assert_eq!(deleted, Some(article));
    assert!(!f.cached(&page_key(id)).await);
    assert!(!f.cached("count:news").await);
    assert!(!f.cached("count:author2").await);
    assert!(f.cached("count:tech").await);
    assert!(f.rows().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_update_by_filter_invalidates_every_affected_rows_old_and_new_scopes() {
    let Some(f) = Fixture::new(2).await else {
        return;
    };
    f.insert(1, "tech", true).await;
    f.insert(2, "tech", true).await;
    f.insert(2, "tech", false).await;
    let untouched = f.insert(1, "news", true).await;
    for (category, published) in [
        ("tech", true),
        ("tech", false),
        ("news", true),
        ("news", false),
        ("sports", true),
    ] {
        f.cache_scope_only(&list_key(category, published), &scope(category, published))
            .await;
    }
    f.cache_scope_only("count:author1", Article::scope_author_id(1).dep())
        .await;
    f.cache_page(&untouched).await;

    // Every "tech" article moves to "news".
    let moved =
        f.db.transaction(|tx| {
            let target = articles::table.filter(articles::category.eq("tech"));
            tx.update::<Article, _, _>(target, articles::category.eq("news"))
        })
        .await
        .expect("bulk update");

    assert_eq!(moved.len(), 3);
    for (category, published) in [
        ("tech", true),
        ("tech", false),
        ("news", true),
        ("news", false),
    ] {
        assert!(
            !f.cached(&list_key(category, published)).await,
            "{category}/{published}"
        );
    }
    assert!(f.cached(&list_key("sports", true)).await);
    assert!(
        f.cached("count:author1").await,
        "author_id was not modified"
    );
    assert!(
        f.cached(&page_key(untouched.id)).await,
        "a row the filter missed"
    );

    // Unpublish every "news" article: both fields of the scope, every row's old and new scope.
    f.cache_scope_only("count:author1", Article::scope_author_id(1).dep())
        .await;
    f.cache_scope_only("news/true", &scope("news", true)).await;
    f.cache_scope_only("news/false", &scope("news", false))
        .await;
    let unpublished =
        f.db.transaction(|tx| {
            let target = articles::table.filter(articles::category.eq("news"));
            tx.update::<Article, _, _>(target, articles::published.eq(false))
        })
        .await
        .expect("bulk update");
    assert_eq!(unpublished.len(), 4);
    assert!(!f.cached("news/true").await);
    assert!(!f.cached("news/false").await);
    assert!(f.cached("count:author1").await);
    assert!(f.rows().await.iter().all(|a| !a.published));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_drops_invalidations() {
    let Some(f) = Fixture::new(2).await else {
        return;
    };
    f.cache_list("news", true).await;
    let outcome: Result<(), Error> =
        f.db.transaction(|tx| {
            let new = NewArticle {
                author_id: 1,
                category: "news",
                published: true,
                title: "never",
            };
            tx.insert::<Article, _, _>(articles::table, &new)?;
            assert!(!tx.pending().is_empty());
            Err(diesel::result::Error::RollbackTransaction.into())
        })
        .await;
    assert!(outcome.is_err());
    assert!(
        f.cached(&list_key("news", true)).await,
        "nothing was invalidated"
    );
    assert!(f.rows().await.is_empty(), "nothing was written");
    assert_eq!(f.cache().stats().invalidations, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoint_rollback_drops_only_its_part() {
    let Some(f) = Fixture::new(2).await else {
        return;
    };
    let moving = f.insert(1, "tech", true).await;
    for category in ["tech", "news", "sports"] {
        f.cache_list(category, true).await;
    }
    let id = moving.id;
    f.db.transaction(move |tx| {
        tx.update_by_id::<Article, _, _, _>(articles::table, id, articles::category.eq("news"))?;
        let failed: Result<Article, Error> = tx.savepoint(|sp| {
            let new = NewArticle {
                author_id: 2,
                category: "sports",
                published: true,
                title: "rolled back",
            };
            sp.insert::<Article, _, _>(articles::table, &new)?;
            assert!(sp.pending().contains(&scope("sports", true)));
            Err(diesel::result::Error::RollbackTransaction.into())
        });
        assert!(failed.is_err());
        assert!(!tx.pending().contains(&scope("sports", true)));
        // A savepoint that is released keeps its part.
        tx.savepoint(|sp| {
            sp.update_by_id::<Article, _, _, _>(articles::table, id, articles::title.eq("kept"))
        })?;
        Ok::<_, Error>(())
    })
    .await
    .expect("transaction");

    assert!(!f.cached(&list_key("tech", true)).await);
    assert!(!f.cached(&list_key("news", true)).await);
    assert!(
        f.cached(&list_key("sports", true)).await,
        "the rolled-back insert's scope"
    );
    let rows = f.rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].category.as_str(), rows[0].title.as_str()),
        ("news", "kept")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_applies_invalidations_and_not_before() {
    let Some(f) = Fixture::new(2).await else {
        return;
    };
    let article = f.insert(1, "tech", true).await;
    f.cache_list("tech", true).await;
    let cache = f.cache().clone();
    let id = article.id;
    f.db.transaction(move |tx| {
        tx.update_by_id::<Article, _, _, _>(articles::table, id, articles::published.eq(false))?;
        // Written, not committed: the cache is untouched (a reader may still refill it from the
        // committed state; the invalidation after the commit removes that too).
        let handle = tokio::runtime::Handle::current();
        let cached = handle.block_on(cache.has(list_key("tech", true)));
        assert!(cached.expect("has"), "invalidated before the commit");
        Ok::<_, Error>(())
    })
    .await
    .expect("transaction");
    assert!(
        !f.cached(&list_key("tech", true)).await,
        "invalidated after the commit"
    );
    assert_eq!(
        f.cache().stats().invalidations,
        2,
        "the insert's and the update's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_panics_leave_nothing_for_the_next_user_of_a_pooled_connection() {
    // One connection: every transaction below gets the same one back (unless r2d2 discarded it).
    let Some(f) = Fixture::new(1).await else {
        return;
    };
    f.cache_list("news", true).await;
    let write = |tx: &mut matroska_diesel::Tx<'_>| {
        let new = NewArticle {
            author_id: 1,
            category: "news",
            published: true,
            title: "x",
        };
        tx.insert::<Article, _, _>(articles::table, &new)
    };

    let failed: Result<(), Error> =
        f.db.transaction(move |tx| {
            write(tx)?;
            Err(diesel::result::Error::RollbackTransaction.into())
        })
        .await;
    assert!(failed.is_err());

    let panicked = AssertUnwindSafe(f.db.transaction(move |tx| -> Result<(), Error> {
        write(tx)?;
        panic!("boom");
    }))
    .catch_unwind()
    .await;
    assert!(panicked.is_err(), "the panic resumes in the caller");

    // The next user: a clean connection, an empty buffer, and nothing was invalidated.
    let (dirty, depth) =
        f.db.transaction(|tx| {
            let depth = AnsiTransactionManager::transaction_manager_status_mut(tx.conn())
                .transaction_depth()?
                .map(std::num::NonZeroU32::get);
            Ok::<_, Error>((tx.is_dirty() || !tx.pending().is_empty(), depth))
        })
        .await
        .expect("transaction");
    assert!(!dirty);
    assert_eq!(depth, Some(1), "only this transaction is open");
    assert!(f.cached(&list_key("news", true)).await);
    assert_eq!(f.cache().stats().invalidations, 0);
    assert!(f.rows().await.is_empty());

    // Without a pool: a caught panic leaves the connection outside any transaction.
    let url = f.url.clone();
    let schema = f.schema.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&url).expect("connect");
        conn.batch_execute(&format!("SET search_path TO {schema}"))
            .expect("search_path");
        let caught = std::panic::catch_unwind(AssertUnwindSafe(|| {
            transaction(&mut conn, |tx| -> Result<(), Error> {
                write(tx)?;
                tx.savepoint(|_| -> Result<(), Error> { panic!("deeper") })
            })
        }));
        assert!(caught.is_err());
        let depth = AnsiTransactionManager::transaction_manager_status_mut(&mut conn)
            .transaction_depth()
            .expect("valid");
        assert_eq!(depth, None);
        let count: i64 = articles::table
            .count()
            .get_result(&mut conn)
            .expect("count");
        assert_eq!(count, 0);
    })
    .await
    .expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_in_a_dirty_transaction_neither_use_nor_fill_the_cache() {
    let Some(f) = Fixture::new(2).await else {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_level_transaction_inside_another_is_refused() {
    let Some(f) = Fixture::new(1).await else {
        return;
    };
    let refused =
        f.db.run(|conn| {
            conn.transaction(|conn| {
                let inner = transaction(conn, |_| Ok::<_, Error>(()));
                Ok::<_, Error>(matches!(
                    inner,
                    Err(Error::Database(diesel::result::Error::AlreadyInTransaction))
                ))
            })
        })
        .await
        .expect("run");
    assert!(
        refused,
        "its invalidations could not wait for the real commit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_caller_still_gets_its_commit_invalidated() {
    let Some(f) = Fixture::new(2).await else {
        return;
    };
    let article = f.insert(1, "tech", true).await;
    f.cache_list("tech", true).await;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let db = f.db.clone();
    let id = article.id;
    let caller = tokio::spawn(async move {
        db.transaction(move |tx| {
            let _ = started_tx.send(());
            go_rx
                .recv()
                .map_err(|_| diesel::result::Error::RollbackTransaction)?;
            tx.update_by_id::<Article, _, _, _>(articles::table, id, articles::published.eq(false))
        })
        .await
    });
    started_rx.await.expect("the transaction started");
    caller.abort();
    assert!(caller.await.expect_err("aborted").is_cancelled());
    go_tx.send(()).expect("release the transaction");
    matroska_testkit::support::eventually(
        Duration::from_secs(10),
        "the commit is invalidated",
        || {
            let cache = f.cache().clone();
            async move { !cache.has(list_key("tech", true)).await.expect("has") }
        },
    )
    .await;
    assert!(f.cache_list("tech", true).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authors_join_deps_cover_both_sides() {
    #[derive(Debug, Queryable, Selectable, Identifiable, CacheModel, Serialize, Deserialize)]
    #[diesel(table_name = authors)]
    #[matroska(kind = "author")]
    struct Author {
        id: i64,
        name: String,
    }

    let Some(f) = Fixture::new(2).await else {
        return;
    };
    f.insert(1, "news", true).await;
    f.insert(2, "news", true).await;
    let rows: Vec<(Article, Author)> =
        f.db.run(|conn| {
            articles::table
                .inner_join(authors::table)
                .order(articles::id)
                .select((Article::as_select(), Author::as_select()))
                .load(conn)
                .map_err(Error::from)
        })
        .await
        .expect("join");
    let deps = matroska_diesel::CacheDeps::cache_deps(&rows);
    assert_eq!(deps.len(), 4, "{deps:?}");
    assert!(deps.contains(&Dep::id("author", 2)));
    assert_eq!(rows[1].1.name, "Grace");
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

/// A row enters the filter of a bulk update between its locked read and its update (another
/// transaction commits in between): its old image is unknown, so the update rolls back its
/// savepoint and runs again; the row's old scope (as the update found it) is invalidated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_update_runs_again_when_a_row_enters_its_filter_concurrently() {
    let Some(f) = Fixture::new(2).await else {
        return;
    };
    let locked = f.insert(1, "tech", true).await;
    let entering = f.insert(2, "news", true).await;
    // Only the entering row's old image has author 2.
    f.cache_scope_only("author2", Article::scope_author_id(2).dep())
        .await;
    let connect = {
        let (url, schema) = (f.url.clone(), f.schema.clone());
        move || {
            let mut conn = PgConnection::establish(&url).expect("connect");
            conn.batch_execute(&format!("SET search_path TO {schema}"))
                .expect("search_path");
            conn
        }
    };

    // B holds a lock on the "tech" row, so that the bulk update's locked read waits for it.
    let (b_pid_tx, b_pid_rx) = std::sync::mpsc::channel();
    let (commit_tx, commit_rx) = std::sync::mpsc::channel::<()>();
    let b = std::thread::spawn({
        let connect = connect.clone();
        move || {
            let mut conn = connect();
            conn.batch_execute(&format!(
                "BEGIN; UPDATE articles SET title = 'b' WHERE id = {}",
                locked.id
            ))
            .expect("B locks the row");
            let pid = diesel::sql_query("SELECT pg_backend_pid() AS pid")
                .get_result::<Pid>(&mut conn)
                .expect("pid")
                .pid;
            b_pid_tx.send(pid).expect("send");
            commit_rx.recv().expect("commit signal");
            conn.batch_execute("COMMIT").expect("B commits");
        }
    });
    let b_pid = tokio::task::spawn_blocking(move || b_pid_rx.recv().expect("B's pid"))
        .await
        .expect("join");

    let db = f.db.clone();
    let update = tokio::spawn(async move {
        db.transaction(|tx| {
            let target = articles::table.filter(articles::category.eq("tech"));
            tx.update::<Article, _, _>(target, articles::author_id.eq(3))
        })
        .await
    });

    // The update's locked read waits for B.
    let mut probe = connect();
    matroska_testkit::support::eventually(Duration::from_secs(20), "the locked read waits", || {
        let blocked = diesel::sql_query(format!(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE {b_pid} = ANY(pg_blocking_pids(pid))"
        ))
        .get_result::<Count>(&mut probe)
        .expect("probe")
        .n;
        async move { blocked > 0 }
    })
    .await;
    // C moves the "news" row into the filter and commits; then B commits.
    let id = entering.id;
    tokio::task::spawn_blocking(move || {
        connect()
            .batch_execute(&format!(
                "UPDATE articles SET category = 'tech' WHERE id = {id}"
            ))
            .expect("C commits");
    })
    .await
    .expect("join");
    commit_tx.send(()).expect("release B");
    tokio::task::spawn_blocking(move || b.join().expect("B"))
        .await
        .expect("join");

    let updated = update.await.expect("join").expect("the update");
    assert_eq!(
        updated.len(),
        2,
        "both rows: the locked one and the one that entered"
    );
    assert!(
        !f.cached("author2").await,
        "the entering row's old scope was invalidated"
    );
}
