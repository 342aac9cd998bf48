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
use redis::aio::MultiplexedConnection;

/// The fill window of test stores: short, so that the fill-window case does not wait a minute.
pub(crate) const FILL_WINDOW: Duration = Duration::from_secs(2);

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

/// Namespaces created by a test, deleted when it ends (also when it fails).
#[derive(Default)]
pub(crate) struct Namespaces {
    prefixes: Mutex<Vec<String>>,
}

impl Namespaces {
    pub(crate) fn create(&self) -> String {
        let prefix = random_prefix();
        self.prefixes.lock().unwrap().push(prefix.clone());
        prefix
    }

    pub(crate) async fn delete_all(&self, url: &str) {
        let prefixes = std::mem::take(&mut *self.prefixes.lock().unwrap());
        if prefixes.is_empty() {
            return;
        }
        let mut conn = raw(url).await;
        for prefix in prefixes {
            delete_namespace(&mut conn, &prefix).await;
        }
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
