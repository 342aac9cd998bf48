//! Shared by the integration tests: the server URL, fresh schemas, and an admin connection.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    unreachable_pub
)]

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use matroska_postgres::{PgStore, PgStoreConfig};
use parking_lot::Mutex;

pub const URL_VAR: &str = "MATROSKA_TEST_POSTGRES_URL";

/// The fill window of test stores: short, so that the window case waits little.
pub const FILL_WINDOW: Duration = Duration::from_secs(2);

/// A random, unused schema name.
pub fn schema_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = (
        SystemTime::now(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
    );
    format!("{prefix}_{:016x}", RandomState::new().hash_one(seed))
}

/// A plain connection (for setup, inspection and the writer side of races).
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Schemas created by a test, dropped at the end.
pub struct Schemas {
    url: String,
    admin: tokio_postgres::Client,
    created: Mutex<Vec<String>>,
}

impl Schemas {
    pub async fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            admin: connect(url).await,
            created: Mutex::new(Vec::new()),
        }
    }

    pub fn admin(&self) -> &tokio_postgres::Client {
        &self.admin
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The configuration of a test store on a new schema (not migrated).
    pub fn config(&self, prefix: &str) -> PgStoreConfig {
        let name = schema_name(prefix);
        self.created.lock().push(name.clone());
        PgStore::builder(&self.url)
            .schema(name)
            .fill_window(FILL_WINDOW)
            .pool_size(4)
    }

    /// A migrated store on a new schema.
    pub async fn store(&self, prefix: &str) -> PgStore {
        let store = self.config(prefix).build().unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// Another handle (own pool) on the schema of `store`.
    pub fn reopen(&self, store: &PgStore) -> PgStore {
        PgStore::builder(&self.url)
            .schema(store.schema().as_str())
            .fill_window(store.fill_window())
            .pool_size(4)
            .build()
            .unwrap()
    }

    pub async fn drop_all(&self) {
        let names = std::mem::take(&mut *self.created.lock());
        for name in names {
            let sql = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
            if let Err(e) = self.admin.batch_execute(&sql).await {
                eprintln!("warning: could not drop schema {name}: {e}");
            }
        }
    }
}

/// Runs `body` with fresh schemas, dropping them afterwards, also when it panics. Returns
/// without running it when no server is configured (and fails instead when servers are
/// required: `matroska_testkit::server_url`).
pub async fn with_schemas<F, Fut>(body: F)
where
    F: FnOnce(std::sync::Arc<Schemas>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = matroska_testkit::server_url(URL_VAR) else {
        return;
    };
    let schemas = std::sync::Arc::new(Schemas::new(&url).await);
    let outcome = tokio::spawn(body(std::sync::Arc::clone(&schemas))).await;
    schemas.drop_all().await;
    if let Err(join) = outcome {
        std::panic::resume_unwind(join.into_panic());
    }
}

/// Expects a miss and returns its fill token.
pub async fn miss(store: &PgStore, key: &matroska_core::Key) -> matroska_core::store::FillToken {
    use matroska_core::store::{Lookup, Store};
    match store.get(key).await.unwrap() {
        Lookup::Miss(token) => token,
        Lookup::Hit(b) => panic!("expected a miss for {key}, got {b:?}"),
    }
}

/// The number of rows of a table of the store's schema.
pub async fn rows(admin: &tokio_postgres::Client, store: &PgStore, table: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM {}.{table}", store.schema().quoted());
    admin.query_one(&sql, &[]).await.unwrap().get(0)
}

/// Runs `cleanup()` until it has pruned `stamps` stamps in all (they become prunable two fill
/// windows after a cleanup first sees them committed: real time on the server's clock must pass),
/// polling every 50 ms, for at most ten fill windows. Returns the summed reports' counts.
pub async fn cleanup_until_pruned(
    store: &PgStore,
    stamps: u64,
) -> matroska_postgres::CleanupReport {
    let limit = store.fill_window() * 10 + Duration::from_secs(5);
    let start = std::time::Instant::now();
    let mut sum = matroska_postgres::CleanupReport::default();
    loop {
        let report = store.cleanup().await.unwrap();
        assert!(report.complete, "{report:?}");
        sum.expired += report.expired;
        sum.swept += report.swept;
        sum.stamps_pruned += report.stamps_pruned;
        sum.strays += report.strays;
        sum.rounds += report.rounds;
        if sum.stamps_pruned >= stamps {
            return sum;
        }
        assert!(
            start.elapsed() < limit,
            "cleanup pruned {} of {stamps} stamps within {limit:?}: {sum:?}",
            sum.stamps_pruned
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (bounded polling, 30 s at most) until `count` backends wait on a lock held by the
/// backend `pid`, and returns their pids.
pub async fn blocked_by(admin: &tokio_postgres::Client, pid: i32, count: usize) -> Vec<i32> {
    let start = std::time::Instant::now();
    loop {
        let pids: Vec<i32> = admin
            .query(
                "SELECT pid FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))",
                &[&pid],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        if pids.len() >= count {
            return pids;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{count} backends did not block on backend {pid} within 30 s (blocked: {pids:?})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (on the server's clock) until the statement the backend `pid` runs is older than
/// `window`.
pub async fn until_statement_older_than(
    admin: &tokio_postgres::Client,
    pid: i32,
    window: Duration,
) {
    let age = "SELECT clock_timestamp() - query_start > $2::bigint * interval '1 millisecond'
               FROM pg_stat_activity WHERE pid = $1";
    let window_ms = i64::try_from(window.as_millis()).unwrap();
    matroska_testkit::support::eventually(
        Duration::from_secs(10),
        "the statement outlived the window",
        || async {
            admin
                .query_one(age, &[&pid, &window_ms])
                .await
                .unwrap()
                .get::<_, bool>(0)
        },
    )
    .await;
}

/// Puts `n` persistent entries `f:0..` carrying `t`; returns their keys, in key order.
pub async fn fan_out(store: &PgStore, t: &matroska_core::Tag, n: usize) -> Vec<matroska_core::Key> {
    let keys: Vec<_> = (0..n)
        .map(|i| matroska_testkit::support::key(&format!("f:{i}")))
        .collect();
    for k in &keys {
        matroska_core::store::Store::put(
            store,
            k,
            matroska_testkit::support::bytes("old"),
            std::slice::from_ref(t),
            None,
            None,
        )
        .await
        .unwrap();
    }
    keys
}

/// A connection that holds locks, and its backend pid.
pub async fn locker(url: &str) -> (tokio_postgres::Client, i32) {
    let client = connect(url).await;
    let pid = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    (client, pid)
}

/// Locks the entry of `k` in a transaction of `locker` (until it ends).
pub async fn hold<'c>(
    locker: &'c mut tokio_postgres::Client,
    store: &PgStore,
    k: &matroska_core::Key,
) -> tokio_postgres::Transaction<'c> {
    let tx = locker.transaction().await.unwrap();
    let sql = format!(
        "SELECT FROM {}.entries WHERE key = $1 FOR UPDATE",
        store.schema().quoted()
    );
    assert_eq!(tx.execute(&sql, &[&k.as_str()]).await.unwrap(), 1);
    tx
}

/// Asserts that every key is a miss.
pub async fn assert_all_miss(store: &PgStore, keys: &[matroska_core::Key]) {
    for k in keys {
        assert_eq!(
            matroska_testkit::support::hit(store, k).await,
            None,
            "{k} is served after its invalidation"
        );
    }
}
