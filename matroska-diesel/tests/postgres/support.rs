//! The fixture of the Diesel tests: a schema of its own on the PostgreSQL test server, a pool
//! whose connections use it, and a cache on one of three stores (memory, a PgStore in a schema of
//! its own, a RedisStore in a namespace of its own), all removed when the fixture is dropped,
//! also when the test fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use matroska_core::{MemoryStore, Store};
use matroska_diesel::{Cache, CacheModel, CachedPool, Dep, Error};
use matroska_postgres::PgStore;
use matroska_redis::RedisStore;
use serde::{Deserialize, Serialize};

pub(crate) mod schema {
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

use schema::articles;

pub(crate) const POSTGRES_URL: &str = "MATROSKA_TEST_POSTGRES_URL";
pub(crate) const REDIS_URL: &str = "MATROSKA_TEST_REDIS_URL";

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
pub(crate) struct Article {
    pub(crate) id: i64,
    pub(crate) author_id: i64,
    pub(crate) category: String,
    pub(crate) published: bool,
    pub(crate) title: String,
}

#[derive(Insertable)]
#[diesel(table_name = articles)]
pub(crate) struct NewArticle<'a> {
    pub(crate) author_id: i64,
    pub(crate) category: &'a str,
    pub(crate) published: bool,
    pub(crate) title: &'a str,
}

/// An edit form: only the fields that are `Some` are set.
#[derive(AsChangeset, Clone)]
#[diesel(table_name = articles)]
pub(crate) struct ArticleChanges {
    pub(crate) title: Option<String>,
    pub(crate) category: Option<String>,
}

#[derive(QueryableByName)]
pub(crate) struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) n: i64,
}

#[derive(QueryableByName)]
pub(crate) struct Pid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub(crate) pid: i32,
}

pub(crate) type Db = CachedPool<Arc<dyn Store>>;

/// The store under the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Memory,
    /// A PgStore in a schema of its own, on the test server.
    Postgres,
    /// A RedisStore in a namespace of its own, on `MATROSKA_TEST_REDIS_URL`.
    Redis,
}

/// Generates, for each named `async fn name(backend: Backend)`, one test per store, in the
/// modules `memory`, `pg_store` and `redis_store` (`-E 'test(/redis_store::/)'` runs one store).
macro_rules! over_every_store {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::support::Backend::Memory).await;
                }
            )*
        }
        mod pg_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::support::Backend::Postgres).await;
                }
            )*
        }
        mod redis_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::support::Backend::Redis).await;
                }
            )*
        }
    };
}

/// A schema of its own and a cache on `backend`, removed when dropped.
pub(crate) struct Fixture {
    pub(crate) url: String,
    pub(crate) schema: String,
    /// The PgStore's schema (for [`Backend::Postgres`]).
    pub(crate) store_schema: Option<String>,
    pub(crate) db: Db,
    // Last: dropped after the pool and the cache.
    cleanup: Cleanup,
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

/// A name no other test (or test run) uses.
pub(crate) fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Fixture {
    /// `None` when a server the backend needs is not configured (the test is skipped; it fails
    /// instead when servers are required).
    pub(crate) async fn new(backend: Backend, pool_size: u32) -> Option<Self> {
        let url = matroska_testkit::server_url(POSTGRES_URL)?;
        let redis_url = match backend {
            Backend::Redis => Some(matroska_testkit::server_url(REDIS_URL)?),
            Backend::Memory | Backend::Postgres => None,
        };
        let schema = unique("matroska_diesel");
        // Registered before anything is created: a failure below still removes what was.
        let mut cleanup = Cleanup {
            url: url.clone(),
            schemas: vec![schema.clone()],
            redis: None,
        };
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
        let mut store_schema = None;
        let store: Arc<dyn Store> = match backend {
            Backend::Memory => Arc::new(MemoryStore::new()),
            Backend::Postgres => {
                let name = format!("{schema}_store");
                cleanup.schemas.push(name.clone());
                store_schema = Some(name.clone());
                let store = PgStore::builder(&url)
                    .schema(name)
                    .pool_size(2)
                    .build()
                    .expect("a PgStore");
                store.migrate().await.expect("migrate the PgStore");
                Arc::new(store)
            }
            Backend::Redis => {
                let redis_url = redis_url.expect("set above for Redis");
                let prefix = format!("matroska-test:{}", unique("diesel"));
                cleanup.redis = Some((redis_url.clone(), prefix.clone()));
                let store = RedisStore::builder(redis_url.as_str())
                    .prefix(prefix)
                    .build()
                    .await
                    .expect("a RedisStore");
                Arc::new(store)
            }
        };
        Some(Self {
            url,
            schema,
            store_schema,
            db: CachedPool::new(pool, Cache::new(store)),
            cleanup,
        })
    }

    pub(crate) fn cache(&self) -> &Cache<Arc<dyn Store>> {
        self.db.cache()
    }

    /// Also drop `schema` at the end.
    pub(crate) fn drop_schema_later(&mut self, schema: &str) {
        self.cleanup.schemas.insert(0, schema.to_owned());
    }

    /// A new connection (not pooled) using the test's schema.
    pub(crate) fn connect(&self) -> impl Fn() -> PgConnection + Clone + Send + 'static {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        move || {
            let mut conn = PgConnection::establish(&url).expect("connect");
            conn.batch_execute(&format!("SET search_path TO {schema}"))
                .expect("search_path");
            conn
        }
    }

    pub(crate) async fn insert(
        &self,
        author_id: i64,
        category: &'static str,
        published: bool,
    ) -> Article {
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
    pub(crate) async fn cache_list(&self, category: &'static str, published: bool) -> Vec<Article> {
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
    pub(crate) async fn cache_scope_only(&self, key: &str, scope: &Dep) {
        self.cache()
            .put(key, &0_u8)
            .dep(scope.clone())
            .await
            .expect("put");
    }

    pub(crate) async fn cache_page(&self, article: &Article) {
        let key = page_key(article.id);
        self.cache()
            .put(&key, article)
            .dep(article.id_dep())
            .await
            .expect("put");
    }

    pub(crate) async fn cached(&self, key: &str) -> bool {
        self.cache().has(key).await.expect("has")
    }

    /// The cached page of article `id`, if any.
    pub(crate) async fn cached_page(&self, id: i64) -> Option<Article> {
        self.cache().get(page_key(id)).await.expect("get")
    }

    pub(crate) async fn rows(&self) -> Vec<Article> {
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

/// What a fixture removes when dropped: schemas on the PostgreSQL server, a Redis namespace.
struct Cleanup {
    url: String,
    schemas: Vec<String>,
    redis: Option<(String, String)>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (url, schemas, redis) = (
            self.url.clone(),
            std::mem::take(&mut self.schemas),
            self.redis.take(),
        );
        // A thread of its own, with a runtime of its own: drop may run on an async worker.
        let outcome = std::thread::spawn(move || -> Result<(), String> {
            let mut failures = Vec::new();
            match PgConnection::establish(&url) {
                Ok(mut conn) => {
                    for schema in &schemas {
                        if let Err(err) =
                            conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        {
                            failures.push(format!("schema {schema}: {err}"));
                        }
                    }
                }
                Err(err) => failures.push(format!("schemas {schemas:?}: {err}")),
            }
            if let Some((redis_url, prefix)) = redis {
                let removed = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|err| err.to_string())
                    .and_then(|runtime| {
                        runtime.block_on(async {
                            let store = RedisStore::builder(redis_url.as_str())
                                .prefix(prefix.as_str())
                                .build()
                                .await
                                .map_err(|err| err.to_string())?;
                            store
                                .remove_namespace()
                                .await
                                .map_err(|err| err.to_string())
                        })
                    });
                if let Err(err) = removed {
                    failures.push(format!("Redis namespace {prefix}: {err}"));
                }
            }
            if failures.is_empty() {
                Ok(())
            } else {
                Err(failures.join("; "))
            }
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(failures)) => eprintln!("warning: could not clean up: {failures}"),
            Err(_) => eprintln!("warning: the cleanup thread panicked"),
        }
    }
}

pub(crate) fn list_key(category: &str, published: bool) -> String {
    format!("list:{category}:{published}")
}

pub(crate) fn page_key(id: i64) -> String {
    format!("page:{id}")
}

pub(crate) fn scope(category: &str, published: bool) -> Dep {
    Article::scope_category_published(category, published)
        .dep()
        .clone()
}
