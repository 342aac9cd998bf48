//! Runs the eager service and drives it over HTTP: a repeat read is a hit; past the refresh point
//! a read gets the cached value at once and a later read the refreshed one, with
//! `last_modified` kept when the source did not change; a failing source serves the last good
//! value marked `x-cache: stale`; unknown types are 404 and bad queries 400; two servers on one
//! Redis (in one process, and as two processes of the service's binary) refresh a key once per
//! interval.
//!
//! The memory run is on a mock clock (no waiting); the Redis run needs `MATROSKA_TEST_REDIS_URL`
//! (skipped without it, unless servers are required) and waits in real time.

// A test: failing loudly is its job.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use matroska_core::MemoryStore;
use matroska_core::clock::MockClock;
use matroska_eager::{App, Config, Source};
use serde_json::Value;

/// A server on a free port.
struct Server {
    base: String,
    app: App,
}

async fn serve(app: App) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = app.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Server { base, app }
}

/// A response: status, `x-cache`, body.
#[derive(Debug)]
struct Got {
    status: StatusCode,
    cache: String,
    body: Value,
}

impl Got {
    fn version(&self) -> u64 {
        self.body["data"]["version"].as_u64().unwrap()
    }
    fn time(&self, field: &str) -> String {
        self.body[field].as_str().unwrap().to_owned()
    }
}

async fn get(server: &Server, path: &str) -> Got {
    get_at(&server.base, path).await.unwrap()
}

/// `GET base + path`; an error when nothing answers (yet).
async fn get_at(base: &str, path: &str) -> Result<Got, String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = Request::get(format!("{base}{path}"))
        .body(Empty::new())
        .unwrap();
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let cache = response
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok(Got {
        status,
        cache,
        body: serde_json::from_slice(&body).unwrap(),
    })
}

/// Waits (bounded) until the app's counters satisfy `done`: refreshes run in the background.
async fn until(app: &App, what: &str, done: impl Fn(&matroska_core::CacheStats) -> bool) {
    for _ in 0..2000 {
        if done(&app.stats()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{what} did not happen: {:?}", app.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_ahead_history_and_fail_safe_over_http_on_memory() {
    let clock = MockClock::new();
    clock.advance(Duration::from_secs(1_800_000_000)); // 2027-01-15
    let config = Config {
        ttl: Duration::from_secs(10),
        refresh_after: Duration::from_secs(5),
        refresh_every: Duration::from_secs(3600),
        ..Config::default()
    };
    let source = Source::new();
    let store = MemoryStore::builder().clock(clock.clone()).build();
    let app = App::with_store(&config, source.clone(), Arc::new(store), clock.clone());
    let server = serve(app).await;
    let app = &server.app;
    let path = "/data/weather?city=Oslo";

    let first = get(&server, path).await;
    assert_eq!(
        (first.status, first.cache.as_str()),
        (StatusCode::OK, "miss")
    );
    assert_eq!(first.body["data"]["query"]["city"], "Oslo");
    let loaded_at = first.time("last_retrieved");
    assert_eq!(loaded_at, "2027-01-15T08:00:00.000Z");
    assert_eq!(first.time("last_modified"), loaded_at);
    let again = get(&server, path).await;
    assert_eq!(again.cache, "hit", "a repeat read is a hit");
    assert_eq!(again.time("last_retrieved"), loaded_at);

    // Past the refresh point: the cached value at once, the refreshed one later; the source
    // did not change, so last_modified stays.
    clock.advance(Duration::from_secs(6));
    let due = get(&server, path).await;
    assert_eq!((due.cache.as_str(), due.version()), ("hit", 0));
    assert_eq!(
        due.time("last_retrieved"),
        loaded_at,
        "the old value, at once"
    );
    until(app, "the refresh", |s| s.refreshes == 1 && s.fills == 2).await;
    let refreshed = get(&server, path).await;
    assert_eq!(refreshed.cache, "hit");
    assert_eq!(refreshed.time("last_retrieved"), "2027-01-15T08:00:06.000Z");
    assert_eq!(
        refreshed.time("last_modified"),
        loaded_at,
        "content unchanged"
    );
    assert_eq!(source.loads("weather"), 2);

    // The source changes: the next refresh brings it, with a new last_modified.
    source.change();
    clock.advance(Duration::from_secs(6));
    assert_eq!(get(&server, path).await.version(), 0);
    until(app, "the second refresh", |s| s.fills == 3).await;
    let changed = get(&server, path).await;
    assert_eq!(changed.version(), 1);
    assert_eq!(changed.time("last_modified"), "2027-01-15T08:00:12.000Z");

    // The source fails after the value expired: the last good value, marked stale.
    source.set_failing(true);
    clock.advance(Duration::from_secs(11));
    let stale = get(&server, path).await;
    assert_eq!(
        (stale.status, stale.cache.as_str()),
        (StatusCode::OK, "stale")
    );
    assert_eq!(stale.version(), 1);
    assert_eq!(app.stats().stale_served, 1);
    // Nothing to fall back on: the error.
    let failed = get(&server, "/data/weather?city=Lima").await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY, "{failed:?}");
    source.set_failing(false);

    // Unknown type, bad queries.
    assert_eq!(
        get(&server, "/data/nope?x=1").await.status,
        StatusCode::NOT_FOUND
    );
    for bad in [
        "/data/user?id=abc",
        "/data/user",
        "/data/weather?town=Oslo",
        "/data/weather?city=Oslo&extra=1",
    ] {
        let got = get(&server, bad).await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{bad}: {got:?}");
    }
    let user = get(&server, "/data/user?id=7").await;
    assert_eq!((user.status, user.cache.as_str()), (StatusCode::OK, "miss"));
    // The key comes from the typed query: `07` is the number 7, the same key.
    assert_eq!(get(&server, "/data/user?id=07").await.cache, "hit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_redis_refresh_a_key_once_per_interval() {
    let Some(url) = matroska_testkit::server_url("MATROSKA_TEST_REDIS_URL") else {
        return;
    };
    let prefix = format!(
        "eager-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let config = Config {
        redis: Some(url.clone()),
        prefix: prefix.clone(),
        ttl: Duration::from_secs(8),
        refresh_after: Duration::from_secs(2),
        refresh_every: Duration::from_millis(100),
        ..Config::default()
    };
    // One upstream, two servers: each with its own connection, cache, fetchers and refresher.
    let source = Source::new();
    let a = serve(App::connect(&config, source.clone()).await.unwrap()).await;
    let b = serve(App::connect(&config, source.clone()).await.unwrap()).await;
    let path = "/data/weather?city=Rome";
    assert_eq!(get(&a, path).await.cache, "miss");
    assert_eq!(
        get(&b, path).await.cache,
        "hit",
        "the servers share the cache"
    );
    assert_eq!(source.loads("weather"), 1);

    tokio::time::sleep(Duration::from_millis(2300)).await;
    for _ in 0..5 {
        for server in [&a, &b] {
            let got = get(server, path).await;
            assert_eq!((got.status, got.cache.as_str()), (StatusCode::OK, "hit"));
        }
    }
    for _ in 0..2000 {
        if source.loads("weather") >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for server in [&a, &b] {
        assert_eq!(get(server, path).await.cache, "hit");
    }
    let (sa, sb) = (a.app.stats(), b.app.stats());
    assert_eq!(
        source.loads("weather"),
        2,
        "one refresh in the interval: {sa:?} {sb:?}"
    );
    assert_eq!(sa.refreshes + sb.refreshes, 1, "{sa:?} {sb:?}");

    let store = matroska_redis::RedisStore::builder(url.as_str())
        .prefix(prefix)
        .build()
        .await
        .unwrap();
    store.remove_namespace().await.unwrap();
}

/// The service's binary, started on a free port; killed when dropped.
struct Process {
    child: std::process::Child,
    base: String,
}

impl Process {
    async fn start(args: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_matroska-eager"))
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let process = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..400 {
            if get_at(&process.base, "/stats").await.is_ok() {
                return process;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the service did not answer on {}", process.base);
    }

    /// The loader runs of this process (misses and refreshes), from `GET /stats`.
    async fn loads(&self) -> u64 {
        let stats = get_at(&self.base, "/stats").await.unwrap().body;
        stats["loads"].as_u64().unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two processes of the service's binary on one Redis: a key is loaded once, and refreshed
/// once per refresh interval by one of them (the store's lease), while both keep serving hits.
#[tokio::test]
async fn two_server_processes_on_one_redis_refresh_a_key_once_per_interval() {
    let Some(url) = matroska_testkit::server_url("MATROSKA_TEST_REDIS_URL") else {
        return;
    };
    let prefix = format!("eager-proc-{}", std::process::id());
    let args = [
        "--redis",
        url.as_str(),
        "--prefix",
        prefix.as_str(),
        "--ttl-ms",
        "8000",
        "--refresh-ms",
        "2000",
    ];
    let (a, b) = (Process::start(&args).await, Process::start(&args).await);
    let path = "/data/weather?city=Oslo";
    assert_eq!(get_at(&a.base, path).await.unwrap().cache, "miss");
    assert_eq!(
        get_at(&b.base, path).await.unwrap().cache,
        "hit",
        "one cache"
    );

    // Past the refresh point both read on: hits, and one refresh between them.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    for _ in 0..5 {
        for p in [&a, &b] {
            let got = get_at(&p.base, path).await.unwrap();
            assert_eq!((got.status, got.cache.as_str()), (StatusCode::OK, "hit"));
        }
    }
    let mut total = 0;
    for _ in 0..400 {
        total = a.loads().await + b.loads().await;
        if total >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let total_after = a.loads().await + b.loads().await;
    assert_eq!(
        (total, total_after),
        (2, 2),
        "one load, then one refresh in the interval"
    );

    drop((a, b));
    let store = matroska_redis::RedisStore::builder(url.as_str())
        .prefix(prefix)
        .build()
        .await
        .unwrap();
    store.remove_namespace().await.unwrap();
}
