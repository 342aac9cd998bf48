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
