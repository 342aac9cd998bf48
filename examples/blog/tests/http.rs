//! Drives the blog over HTTP with a randomized sequence of writes; after every write, reads every
//! page and compares each response with what the database holds (the database builds the
//! expected JSON itself), counting requests, cache hits and stale responses, which must be zero.
//!
//! Needs `MATROSKA_TEST_POSTGRES_URL` (skipped without it, unless servers are required); the
//! Redis run also needs `MATROSKA_TEST_REDIS_URL`. `MATROSKA_TEST_SEED` replays a sequence.
//!
//! ```text
//! cargo test -p matroska-blog --test http -- --nocapture
//! ```

// A test: failing loudly, and printing the counts, is its job.
#![allow(clippy::expect_used, clippy::print_stderr)]

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use matroska_blog::{App, Config};
use matroska_testkit::support::Rng;
use serde_json::{Value, json};

/// Writes per run (each followed by a read of every page).
const WRITES: usize = 200;
const CATEGORIES: [&str; 4] = ["news", "tech", "sports", "travel"];
/// Authors 1 to 3 exist; 99 never does.
const AUTHORS: [i64; 4] = [1, 2, 3, 99];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_response_on_memory() {
    let Some(url) = matroska_testkit::server_url("MATROSKA_TEST_POSTGRES_URL") else {
        return;
    };
    run("memory", url, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_response_on_redis() {
    let Some(url) = matroska_testkit::server_url("MATROSKA_TEST_POSTGRES_URL") else {
        return;
    };
    let Some(redis) = matroska_testkit::server_url("MATROSKA_TEST_REDIS_URL") else {
        return;
    };
    run("redis", url, Some(redis)).await;
}

/// The database, read directly, never through the app.
#[derive(Clone)]
struct Truth {
    url: String,
    schema: String,
}

/// Drops the test's schema at the end.
struct DropSchema(Truth);

#[derive(QueryableByName)]
struct JsonRow {
    #[diesel(sql_type = Text)]
    json: String,
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// What one page should be: its status and body.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    status: StatusCode,
    body: Value,
}

impl Truth {
    fn conn(&self) -> PgConnection {
        let mut conn = PgConnection::establish(&self.url).expect("connect");
        conn.batch_execute(&format!("SET search_path TO {}", self.schema))
            .expect("search_path");
        conn
    }

    /// Every page: articles (`ids`, existing or not), categories, authors.
    async fn pages(&self, ids: Vec<i64>) -> Vec<(String, Expected)> {
        let truth = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = truth.conn();
            let mut pages = Vec::new();
            let mut one = |path: String, sql: &str, bind: Bind| {
                let query = diesel::sql_query(sql);
                let row = match bind {
                    Bind::Id(id) => query.bind::<BigInt, _>(id).get_result::<JsonRow>(&mut conn),
                    Bind::Text(text) => query.bind::<Text, _>(text).get_result::<JsonRow>(&mut conn),
                }
                .optional()
                .expect("truth query");
                let expected = match row {
                    Some(row) => Expected {
                        status: StatusCode::OK,
                        body: serde_json::from_str(&row.json).expect("json"),
                    },
                    None => Expected {
                        status: StatusCode::NOT_FOUND,
                        body: json!({ "error": "not found" }),
                    },
                };
                pages.push((path, expected));
            };
            for id in ids {
                one(
                    format!("/articles/{id}"),
                    "SELECT json_build_object('article', row_to_json(a), 'author', row_to_json(au))::text AS json \
                     FROM articles a JOIN authors au ON au.id = a.author_id WHERE a.id = $1",
                    Bind::Id(id),
                );
            }
            for category in CATEGORIES {
                one(
                    format!("/categories/{category}/articles"),
                    "SELECT coalesce(json_agg(row_to_json(a) ORDER BY a.id), '[]')::text AS json \
                     FROM articles a WHERE a.category = $1 AND a.published",
                    Bind::Text(category.to_owned()),
                );
            }
            for author in AUTHORS {
                one(
                    format!("/authors/{author}"),
                    "SELECT json_build_object('author', row_to_json(au), 'articles', coalesce(\
                     (SELECT json_agg(row_to_json(a) ORDER BY a.id) FROM articles a WHERE a.author_id = au.id), \
                     '[]'))::text AS json FROM authors au WHERE au.id = $1",
                    Bind::Id(author),
                );
            }
            pages
        })
        .await
        .expect("truth")
    }

    async fn article_ids(&self) -> Vec<i64> {
        let truth = self.clone();
        tokio::task::spawn_blocking(move || {
            diesel::sql_query("SELECT id FROM articles ORDER BY id")
                .load::<IdRow>(&mut truth.conn())
                .expect("ids")
                .into_iter()
                .map(|r| r.id)
                .collect()
        })
        .await
        .expect("ids")
    }
}

enum Bind {
    Id(i64),
    Text(String),
}

impl Drop for DropSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.0.url.clone(), self.0.schema.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(mut conn) = PgConnection::establish(&url) {
                let _ = conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
            }
        })
        .join();
    }
}

struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

struct Reply {
    status: StatusCode,
    cache: Option<String>,
    body: Value,
}

impl Http {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        let bytes = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Bytes::from(serde_json::to_vec(&body).expect("json"))
            }
            None => Bytes::new(),
        };
        let response = self
            .client
            .request(request.body(Full::new(bytes)).expect("request"))
            .await
            .expect("response");
        let status = response.status();
        let cache = response
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("a JSON body")
        };
        Reply {
            status,
            cache,
            body,
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    writes: u64,
    reads: u64,
    hits: u64,
    misses: u64,
    shared: u64,
    stale: u64,
}

/// The app on an ephemeral port, over a fresh schema with three authors.
struct Running {
    app: App,
    http: Http,
    truth: Truth,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The cache's namespace on Redis, removed at the end; `None` in memory.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    redis: Option<(String, String)>,
    _drop_schema: DropSchema,
}

async fn start(url: String, redis: Option<String>) -> Running {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let schema = format!(
        "blog_test_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let truth = Truth {
        url: url.clone(),
        schema: schema.clone(),
    };
    let drop_schema = DropSchema(truth.clone());
    let mut config = Config::new(url, schema);
    if let Some(redis) = &redis {
        config = config.redis(redis.clone());
    }
    let redis = redis.map(|url| (url, config.redis_prefix()));
    let app = App::connect(&config).await.expect("the app starts");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let server = tokio::spawn(axum::serve(listener, app.router()).into_future());
    let http = Http {
        client: Client::builder(TokioExecutor::new()).build_http(),
        base,
    };
    // Authors 1 to 3, through `POST /authors`.
    for (id, name) in [(1, "Ada"), (2, "Grace"), (3, "Barbara")] {
        let reply = http
            .call(Method::POST, "/authors", Some(json!({ "name": name })))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        assert_eq!(reply.body, json!({ "id": id, "name": name }));
    }
    Running {
        app,
        http,
        truth,
        server,
        redis,
        _drop_schema: drop_schema,
    }
}

async fn run(store: &str, url: String, redis: Option<String>) {
    let blog = start(url, redis).await;
    let mut rng = Rng::from_env();
    let mut counts = Counts::default();
    let mut mismatches = String::new();
    // Every id ever created (deleted ones are read too: they must be 404), and one that never
    // exists.
    let mut ever: BTreeSet<i64> = BTreeSet::from([-1]);
    for step in 0..WRITES {
        let ids = blog.truth.article_ids().await;
        write(&blog.http, &mut rng, &ids, step, &mut counts).await;
        ever.extend(blog.truth.article_ids().await);
        ever.extend(ids);
        // Every page, against the database.
        for (path, expected) in blog.truth.pages(ever.iter().copied().collect()).await {
            let reply = blog.http.call(Method::GET, &path, None).await;
            counts.read(&reply);
            let got = Expected {
                status: reply.status,
                body: reply.body,
            };
            if got != expected {
                counts.stale += 1;
                if counts.stale <= 5 {
                    let _ = writeln!(
                        mismatches,
                        "after write {step}, GET {path} ({:?}): got {got:?}, the database has {expected:?}",
                        reply.cache
                    );
                }
            }
        }
    }
    let scraped = scrape_metrics(&blog.http).await;
    blog.server.abort();
    counts.report(store, &blog.app);
    check_metrics(&scraped, &blog.truth.schema, store, &blog.app.cache_stats());
    blog.app.clear_cache().await.expect("clear the cache");
    #[cfg(feature = "redis")]
    if let Some((url, prefix)) = &blog.redis {
        matroska_redis::RedisStore::builder(url.as_str())
            .prefix(prefix.as_str())
            .build()
            .await
            .expect("connect to Redis")
            .remove_namespace()
            .await
            .expect("remove the cache's namespace");
    }
    assert_eq!(counts.stale, 0, "stale responses:\n{mismatches}");
    assert!(counts.hits > 0, "the cache was never hit");
}

impl Counts {
    fn read(&mut self, reply: &Reply) {
        self.reads += 1;
        match reply.cache.as_deref() {
            Some("hit") => self.hits += 1,
            Some("shared") => self.shared += 1,
            _ => self.misses += 1,
        }
    }

    fn report(&self, store: &str, app: &App) {
        let requests = self.writes + self.reads;
        let hit_rate = 100.0 * f64::from(u32::try_from(self.hits).unwrap_or(u32::MAX))
            / f64::from(u32::try_from(self.reads.max(1)).unwrap_or(u32::MAX));
        let stats = app.cache_stats();
        eprintln!(
            "blog over HTTP, cache on {store}: {requests} requests ({} writes, {} reads), \
             {} hits / {} misses / {} shared (hit rate {hit_rate:.1}%), stale responses: {}; \
             cache: {} loads, {} fills, {} fills rejected, {} invalidations removing {} entries",
            self.writes,
            self.reads,
            self.hits,
            self.misses,
            self.shared,
            self.stale,
            stats.loads,
            stats.fills,
            stats.fills_rejected,
            stats.invalidations,
            stats.entries_invalidated,
        );
    }
}

/// One random write; checks its status.
async fn write(http: &Http, rng: &mut Rng, ids: &[i64], step: usize, counts: &mut Counts) {
    // An existing article most of the time, sometimes one that does not exist.
    let target = if ids.is_empty() || rng.below(10) == 0 {
        (None, 1_000_000 + i64::try_from(step).unwrap_or(0))
    } else {
        let id = ids[rng.below(ids.len())];
        (Some(id), id)
    };
    let (exists, id) = target;
    let category = CATEGORIES[rng.below(CATEGORIES.len())];
    let found = if exists.is_some() {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    let (method, path, body, expected) = match rng.below(20) {
        0..=5 => {
            let author = AUTHORS[rng.below(AUTHORS.len())];
            let expected = if author == 99 {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::CREATED
            };
            let body = json!({
                "author_id": author,
                "category": category,
                "published": rng.below(3) > 0,
                "title": format!("Title {step}"),
                "body": format!("Body {step}"),
            });
            (Method::POST, "/articles".to_owned(), Some(body), expected)
        }
        6..=9 => {
            let body = match rng.below(3) {
                0 => json!({ "title": format!("Edited {step}") }),
                1 => json!({ "body": format!("Rewritten {step}") }),
                _ => json!({ "title": format!("Both {step}"), "body": format!("Both {step}") }),
            };
            (Method::PATCH, format!("/articles/{id}"), Some(body), found)
        }
        10..=12 => (
            Method::POST,
            format!("/articles/{id}/move"),
            Some(json!({ "category": category })),
            found,
        ),
        13..=14 => (
            Method::POST,
            format!("/articles/{id}/publish"),
            Some(json!({ "published": rng.below(2) == 0 })),
            found,
        ),
        15..=16 => {
            let expected = if exists.is_some() {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::NOT_FOUND
            };
            (Method::DELETE, format!("/articles/{id}"), None, expected)
        }
        17..=18 => {
            let author = AUTHORS[rng.below(AUTHORS.len())];
            let expected = if author == 99 {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::OK
            };
            (
                Method::PATCH,
                format!("/authors/{author}"),
                Some(json!({ "name": format!("Author {step}") })),
                expected,
            )
        }
        _ => (
            Method::POST,
            format!("/categories/{category}/unpublish"),
            None,
            StatusCode::OK,
        ),
    };
    let reply = http.call(method.clone(), &path, body).await;
    counts.writes += 1;
    assert_eq!(
        reply.status, expected,
        "{method} {path} answered {:?}",
        reply.body
    );
}

/// `GET /metrics`: the Prometheus text.
async fn scrape_metrics(http: &Http) -> String {
    let response = http
        .client
        .get(format!("{}/metrics", http.base).parse().expect("uri"))
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

/// The scrape's value of `name` with exactly these labels (in any order).
fn sample(scraped: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scraped.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let rest = series
            .strip_prefix(name)?
            .strip_prefix('{')?
            .strip_suffix('}')?;
        let mut got: Vec<&str> = rest.split(',').collect();
        let mut want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        got.sort_unstable();
        want.sort_unstable();
        (got == want).then(|| value.parse().expect("a number"))
    })
}

/// The scrape reports what `CacheStats` counted (the test's cache is alone with its name), and
/// every store get was timed.
fn check_metrics(scraped: &str, cache: &str, store: &str, stats: &matroska_core::CacheStats) {
    let labels = [("cache", cache), ("store", store)];
    let with = |outcome| [labels[0], labels[1], ("outcome", outcome)];
    #[allow(clippy::cast_precision_loss)] // Counts far below 2^52.
    let checks = [
        (
            "matroska_cache_reads_total",
            with("hit").to_vec(),
            stats.hits as f64,
        ),
        (
            "matroska_cache_reads_total",
            with("miss").to_vec(),
            stats.misses as f64,
        ),
        (
            "matroska_cache_fills_total",
            with("stored").to_vec(),
            stats.fills as f64,
        ),
        (
            "matroska_cache_loads_total",
            labels.to_vec(),
            stats.loads as f64,
        ),
        (
            "matroska_cache_invalidations_total",
            labels.to_vec(),
            stats.invalidations as f64,
        ),
        (
            "matroska_cache_entries_invalidated_total",
            labels.to_vec(),
            stats.entries_invalidated as f64,
        ),
    ];
    for (name, labels, counted) in checks {
        let reported = sample(scraped, name, &labels);
        assert_eq!(reported, Some(counted), "{name} {labels:?} in\n{scraped}");
    }
    assert!(stats.hits > 0 && stats.invalidations > 0, "{stats:?}");
    let gets = sample(
        scraped,
        "matroska_store_operation_duration_seconds_count",
        &[
            labels[0],
            labels[1],
            ("operation", "get"),
            ("outcome", "ok"),
        ],
    )
    .expect("the get latency histogram");
    #[allow(clippy::cast_precision_loss)]
    let reads = (stats.hits + stats.misses) as f64;
    assert!(gets >= reads, "{gets} timed gets for {reads} reads");
    let excerpt: Vec<&str> = scraped
        .lines()
        .filter(|l| {
            l.contains(cache)
                && (l.starts_with("matroska_cache_reads")
                    || l.contains("operation=\"get\",outcome=\"ok\"")
                        && l.contains("le=\"0.0016\""))
        })
        .collect();
    eprintln!("GET /metrics (excerpt):\n{}", excerpt.join("\n"));
}
