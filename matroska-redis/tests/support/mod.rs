//! Helpers for the Redis store's integration tests: random namespaces, cleanup, and private
//! `redis-server` processes for the tests that restart or reconfigure the server.

// Test support: failing loudly is its job, and each test binary uses a different part of it.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::print_stderr,
    clippy::missing_panics_doc
)]

use std::hash::{BuildHasher as _, Hasher as _};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use matroska_redis::{KeyLayout, RedisStore};
use redis::Commands as _;
use redis::aio::MultiplexedConnection;

/// The fill window of test stores: short, so that the fill-window case does not wait a minute.
pub(crate) const FILL_WINDOW: Duration = Duration::from_secs(2);

/// One of the store's scripts (`lua/common.lua` followed by `lua/<name>.lua`, as the store runs
/// it), for tests that run a step of an operation on its own, as a client that stopped half-way
/// would have.
pub(crate) fn script(name: &str) -> redis::Script {
    let body = match name {
        "clear" => include_str!("../../lua/clear.lua"),
        "walk" => include_str!("../../lua/walk.lua"),
        "invalidate" => include_str!("../../lua/invalidate.lua"),
        other => panic!("no script {other}"),
    };
    redis::Script::new(&format!("{}{body}", include_str!("../../lua/common.lua")))
}

/// Whether the invalidation stamp of `tag` (or metadata about it) is still stored: its record
/// in the namespace's metadata.
pub(crate) async fn has_stamp(
    conn: &mut MultiplexedConnection,
    layout: &KeyLayout,
    tag: &matroska_core::Tag,
) -> bool {
    redis::cmd("HEXISTS")
        .arg(layout.meta())
        .arg(tag.as_str())
        .query_async::<u64>(conn)
        .await
        .unwrap()
        == 1
}

/// A time in a record: none, forever, or a time in ms on the server's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    Never,
    Forever,
    At(u64),
}

/// A tag's record in the namespace's metadata (`PROTOCOL.md`, "Tag records"), as the tests read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) stamp: u64,
    pub(crate) stamp_until: Option<u64>,
    pub(crate) index_until: Until,
    pub(crate) outside_until: Until,
    pub(crate) aside_until: Until,
    pub(crate) asides: u64,
    pub(crate) since: u64,
}

/// The record of `tag`, `None` if it has none.
pub(crate) async fn record(
    conn: &mut MultiplexedConnection,
    layout: &KeyLayout,
    tag: &matroska_core::Tag,
) -> Option<Record> {
    let text: Option<String> = redis::cmd("HGET")
        .arg(layout.meta())
        .arg(tag.as_str())
        .query_async(conn)
        .await
        .unwrap();
    let text = text?;
    let parts: Vec<&str> = text.split('|').collect();
    assert_eq!(parts.len(), 7, "{text}");
    let time = |s: &str| match s {
        "" => Until::Never,
        "inf" => Until::Forever,
        ms => Until::At(ms.parse().unwrap()),
    };
    Some(Record {
        stamp: parts[0].parse().unwrap(),
        stamp_until: (!parts[1].is_empty()).then(|| parts[1].parse().unwrap()),
        index_until: time(parts[2]),
        outside_until: time(parts[3]),
        aside_until: time(parts[4]),
        asides: parts[5].parse().unwrap(),
        since: parts[6].parse().unwrap(),
    })
}

/// The server's clock in ms.
pub(crate) async fn server_ms(conn: &mut MultiplexedConnection) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await.unwrap();
    secs * 1000 + micros / 1000
}

/// The key that holds the invalidation stamp of `tag`: what an eviction must hit to lose it (the
/// namespace's metadata, which holds every tag's record).
pub(crate) fn stamp_holder(layout: &KeyLayout, _tag: &matroska_core::Tag) -> String {
    layout.meta()
}

/// A random lower-case hex id.
pub(crate) fn random_hex() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", hasher.finish())
}

/// A fresh test namespace.
pub(crate) fn random_prefix() -> String {
    format!("matroska-test:{}", random_hex())
}

/// The shared test server's URL (`None`: skip), from `MATROSKA_TEST_REDIS_URL`.
pub(crate) fn shared_url() -> Option<String> {
    matroska_testkit::server_url("MATROSKA_TEST_REDIS_URL")
}

/// A raw connection for inspecting and tampering with the server.
pub(crate) async fn raw(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// A store for tests on the server at `url`, in the namespace `prefix`.
pub(crate) async fn store(url: &str, prefix: &str) -> RedisStore {
    RedisStore::builder(url)
        .prefix(prefix)
        .fill_window(FILL_WINDOW)
        .build()
        .await
        .unwrap()
}

/// Deletes every key of the namespace `prefix` (SCAN + UNLINK).
pub(crate) async fn delete_namespace(conn: &mut MultiplexedConnection, prefix: &str) {
    let pattern = KeyLayout::new(prefix).unwrap().pattern();
    let mut cursor = 0_u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(conn)
                .await
                .unwrap();
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// The number of keys of the namespace `prefix`.
pub(crate) async fn count_keys(conn: &mut MultiplexedConnection, prefix: &str) -> usize {
    let pattern = KeyLayout::new(prefix).unwrap().pattern();
    let mut cursor = 0_u64;
    let mut count = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .unwrap();
        count += keys.len();
        if next == 0 {
            return count;
        }
        cursor = next;
    }
}

/// Namespaces created by a test, deleted when it ends: by [`Namespaces::delete_all`], and
/// also when the value is dropped, so that a failing (panicking) test leaves no keys behind.
pub(crate) struct Namespaces {
    url: String,
    prefixes: Mutex<Vec<String>>,
}

impl Namespaces {
    pub(crate) fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            prefixes: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn create(&self) -> String {
        let prefix = random_prefix();
        self.prefixes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(prefix.clone());
        prefix
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .prefixes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    pub(crate) async fn delete_all(&self) {
        let prefixes = self.take();
        if prefixes.is_empty() {
            return;
        }
        let mut conn = raw(&self.url).await;
        for prefix in prefixes {
            delete_namespace(&mut conn, &prefix).await;
        }
    }
}

impl Drop for Namespaces {
    /// Deletes what is left with a blocking connection: this runs while a failed test unwinds,
    /// where no async cleanup can be awaited.
    fn drop(&mut self) {
        let prefixes = self.take();
        if prefixes.is_empty() {
            return;
        }
        let Ok(mut conn) = redis::Client::open(self.url.as_str()).and_then(|c| c.get_connection())
        else {
            eprintln!("warning: could not connect to delete the test namespaces {prefixes:?}");
            return;
        };
        for prefix in prefixes {
            let Ok(layout) = KeyLayout::new(&prefix) else {
                continue;
            };
            let keys: Vec<String> = match conn.scan_match::<_, String>(layout.pattern()) {
                Ok(iter) => iter.filter_map(Result::ok).collect(),
                Err(e) => {
                    eprintln!("warning: could not delete the test namespace {prefix}: {e}");
                    continue;
                }
            };
            for chunk in keys.chunks(1000) {
                let _: redis::RedisResult<u64> = redis::cmd("UNLINK").arg(chunk).query(&mut conn);
            }
        }
    }
}

/// A store in a fresh namespace of the shared server, with a raw connection for inspecting and
/// tampering; the namespace is deleted when the value is dropped (also when the test fails).
pub(crate) struct Scratch {
    pub(crate) store: RedisStore,
    pub(crate) conn: MultiplexedConnection,
    pub(crate) url: String,
    pub(crate) namespaces: Namespaces,
}

impl Scratch {
    /// `None`: no server configured (and servers are not required).
    pub(crate) async fn new(chunk: usize) -> Option<Self> {
        let url = shared_url()?;
        let namespaces = Namespaces::new(&url);
        let store = RedisStore::builder(url.as_str())
            .prefix(namespaces.create())
            .fill_window(FILL_WINDOW)
            .reclaim_chunk(chunk)
            .build()
            .await
            .unwrap();
        let conn = raw(&url).await;
        Some(Self {
            store,
            conn,
            url,
            namespaces,
        })
    }

    /// Another store (its own connection) on a new namespace of the same server, deleted with
    /// this one.
    pub(crate) async fn other_namespace(&self) -> RedisStore {
        store(&self.url, &self.namespaces.create()).await
    }

    /// Another handle on this namespace, as a second process would open it.
    pub(crate) async fn reopen(&self, chunk: usize) -> RedisStore {
        RedisStore::builder(self.url.as_str())
            .prefix(self.store.layout().prefix())
            .fill_window(FILL_WINDOW)
            .reclaim_chunk(chunk)
            .build()
            .await
            .unwrap()
    }

    /// The number of keys of the namespace.
    pub(crate) async fn keys(&mut self) -> usize {
        let prefix = self.store.layout().prefix().to_owned();
        count_keys(&mut self.conn, &prefix).await
    }
}

/// A private `redis-server` on a free port in a temporary directory, killed on drop: for the tests
/// that restart, flush or reconfigure the server, so that they never disturb the shared one.
///
/// The binary is `MATROSKA_REDIS_SERVER_BIN` or `redis-server` on the `PATH`.
pub(crate) struct PrivateRedis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
    args: Vec<String>,
}

impl PrivateRedis {
    /// Starts a server with extra arguments (`None`: the binary is missing and servers are not
    /// required, so the test is skipped).
    pub(crate) async fn start(args: &[&str]) -> Option<Self> {
        let bin = PathBuf::from(
            std::env::var("MATROSKA_REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into()),
        );
        let available = Command::new(&bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !available {
            let required = ["MATROSKA_TEST_REQUIRE_SERVERS", "CI"]
                .iter()
                .any(|v| std::env::var(v).is_ok_and(|x| !x.is_empty() && x != "0" && x != "false"));
            assert!(
                !required,
                "{} not found, and servers are required",
                bin.display()
            );
            eprintln!("skipped: {} not found", bin.display());
            return None;
        }
        let dir = std::env::temp_dir().join(format!("matroska-redis-test-{}", random_hex()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            child: None,
            port: 0,
            dir,
            bin,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn().await {
                return Some(server);
            }
        }
        panic!("could not start {} on a free port", server.bin.display());
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server on `self.port`; false if it exited (the port was taken).
    async fn spawn(&mut self) -> bool {
        let log = std::fs::File::create(self.dir.join("redis.log")).unwrap();
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(&self.args)
            .stdout(log)
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Some(child) = self.child.as_mut()
                && child.try_wait().unwrap().is_some()
            {
                self.child = None;
                return false;
            }
            if self.ping().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "redis-server did not answer on port {} within 10 s",
            self.port
        );
    }

    async fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            return false;
        };
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok_and(|pong| pong == "PONG")
    }

    /// Kills the server (SIGKILL: no chance to save anything) and waits for it to exit.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, with an empty data set.
    pub(crate) async fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn().await,
            "the restarted server could not bind its port"
        );
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Puts `n` entries `{name}:0` … (their value is `name`) with the tags `tags` and the time to
/// live `ttl`.
pub(crate) async fn put_many(
    store: &RedisStore,
    name: &str,
    n: usize,
    tags: &[matroska_core::Tag],
    ttl: Option<Duration>,
) {
    use matroska_core::Store as _;
    for i in 0..n {
        let key = matroska_testkit::support::key(&format!("{name}:{i}"));
        store
            .put(
                &key,
                matroska_testkit::support::bytes(name),
                tags,
                ttl,
                None,
            )
            .await
            .unwrap();
    }
}
