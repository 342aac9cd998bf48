//! Setting the app up: the database (pool, schema, tables), the cache, the routes.

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use diesel::Connection as _;
use diesel::connection::SimpleConnection as _;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use matroska_core::{CacheStats, MemoryStore, Store};
use matroska_diesel::{Cache, CachedPool};

use crate::config::Config;
use crate::error::SetupError;
use crate::routes;

/// The database pool with the cache in front of it.
pub type Db = CachedPool<Arc<dyn Store>>;

/// The tables, created if missing.
const MIGRATION: &str = include_str!("../migrations/001_blog.sql");

/// The running app's state: shared by every request.
#[derive(Debug, Clone)]
pub struct App {
    pub(crate) db: Db,
    /// The Prometheus recorder behind `GET /metrics`.
    pub(crate) metrics: Option<&'static metrics_exporter_prometheus::PrometheusHandle>,
    /// With `--listen`: the listener and the applier that invalidates the cache (kept alive
    /// while the app is).
    _capture: Option<Arc<crate::capture::Capture>>,
}

impl App {
    /// Connects to PostgreSQL, creates the schema and the tables if missing, and puts the cache
    /// (Redis, or in memory) in front.
    ///
    /// # Errors
    ///
    /// [`SetupError`] if the schema name is invalid, or the database or the store cannot be
    /// reached.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), matroska_blog::SetupError> {
    /// let app = matroska_blog::App::connect(&matroska_blog::Config::new("postgres://localhost/db", "blog")).await?;
    /// let router = app.router();
    /// # let _ = router; Ok(()) }
    /// ```
    pub async fn connect(config: &Config) -> Result<Self, SetupError> {
        let schema = check_schema(&config.schema)?;
        // Before the cache is built: it registers its metrics with the recorder installed then.
        let metrics = crate::metrics::recorder();
        let store = store(config).await?;
        let (url, size) = (config.database_url.clone(), config.pool_size);
        let pool = tokio::task::spawn_blocking(move || {
            // The schema first: pooled connections set their search_path to it.
            let mut conn = PgConnection::establish(&url)?;
            conn.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema}; {MIGRATION}"
            ))?;
            let pool = Pool::builder()
                .max_size(size)
                .min_idle(Some(1))
                .connection_customizer(Box::new(SearchPath(schema)))
                .build(ConnectionManager::<PgConnection>::new(url))?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(pool)
        })
        .await
        .map_err(|err| SetupError::Database(Box::new(err)))?
        .map_err(SetupError::Database)?;
        tracing::info!(schema = %config.schema, store = store.name(), "blog ready");
        let capture = crate::capture::start(config, &store).await?;
        // The schema names the cache: the `cache` label of its metrics.
        let cache = Cache::builder(store).name(config.schema.clone()).build();
        Ok(Self {
            db: CachedPool::new(pool, cache),
            metrics,
            _capture: capture,
        })
    }

    /// The HTTP routes.
    ///
    /// | route | what |
    /// | --- | --- |
    /// | `GET /articles/{id}` | an article with its author |
    /// | `GET /categories/{category}/articles` | the published articles of a category |
    /// | `GET /authors/{id}` | an author with all their articles |
    /// | `POST /articles` | create ([`NewArticle`](crate::NewArticle)) |
    /// | `PATCH /articles/{id}` | edit title or body ([`ArticleEdit`](crate::ArticleEdit)) |
    /// | `POST /articles/{id}/move` | move to another category ([`Move`](crate::Move)) |
    /// | `POST /articles/{id}/publish` | publish or unpublish ([`Publish`](crate::Publish)) |
    /// | `DELETE /articles/{id}` | delete |
    /// | `PATCH /authors/{id}` | rename an author ([`Rename`](crate::Rename)) |
    /// | `POST /categories/{category}/unpublish` | unpublish a whole category (one bulk update) |
    /// | `POST /authors` | create an author ([`NewAuthor`](crate::NewAuthor)) |
    /// | `GET /metrics` | the cache's metrics, Prometheus text format |
    ///
    /// Reads answer with the header `x-cache: hit` (from the cache), `miss` (loaded now) or
    /// `shared` (loaded by a concurrent request).
    ///
    /// # Examples
    ///
    /// See [`App::connect`].
    pub fn router(&self) -> Router {
        Router::new()
            .route("/articles", post(routes::create_article))
            .route(
                "/articles/{id}",
                get(routes::article)
                    .patch(routes::edit_article)
                    .delete(routes::delete_article),
            )
            .route("/articles/{id}/move", post(routes::move_article))
            .route("/articles/{id}/publish", post(routes::publish_article))
            .route("/categories/{category}/articles", get(routes::category))
            .route(
                "/categories/{category}/unpublish",
                post(routes::unpublish_category),
            )
            .route("/authors", post(routes::create_author))
            .route("/metrics", get(crate::metrics::scrape))
            .route(
                "/authors/{id}",
                get(routes::author).patch(routes::rename_author),
            )
            .with_state(self.clone())
    }

    /// The cache's counters (hits, misses, invalidations...).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(app: matroska_blog::App) {
    /// println!("hit rate {:.1}%", app.cache_stats().hit_rate() * 100.0);
    /// # }
    /// ```
    pub fn cache_stats(&self) -> CacheStats {
        self.db.cache().stats()
    }

    /// Empties the cache's namespace (tests, operators).
    ///
    /// # Errors
    ///
    /// The store's error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(app: matroska_blog::App) -> Result<(), matroska_core::Error> {
    /// app.clear_cache().await?;
    /// # Ok(()) }
    /// ```
    pub async fn clear_cache(&self) -> Result<(), matroska_core::Error> {
        self.db.cache().clear().await
    }
}

/// A plain identifier, so that it can go into SQL as is.
fn check_schema(schema: &str) -> Result<String, SetupError> {
    let valid = !schema.is_empty()
        && schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(schema.to_owned())
    } else {
        Err(SetupError::Config(format!(
            "invalid schema name {schema:?}: use lowercase letters, digits and _"
        )))
    }
}

// Async only with the `redis` feature.
#[cfg_attr(not(feature = "redis"), allow(clippy::unused_async))]
async fn store(config: &Config) -> Result<Arc<dyn Store>, SetupError> {
    let Some(url) = &config.redis_url else {
        return Ok(Arc::new(MemoryStore::new()));
    };
    #[cfg(feature = "redis")]
    {
        let store = matroska_redis::RedisStore::builder(url.as_str())
            .prefix(config.redis_prefix())
            .build()
            .await
            .map_err(SetupError::Store)?;
        Ok(Arc::new(store))
    }
    #[cfg(not(feature = "redis"))]
    {
        Err(SetupError::Config(format!(
            "--redis {url}: built without the `redis` feature"
        )))
    }
}

/// Sets each pooled connection's `search_path` to the blog's schema.
#[derive(Debug)]
struct SearchPath(String);

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for SearchPath {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&format!("SET search_path TO {}", self.0))
            .map_err(diesel::r2d2::Error::QueryError)
    }
}
