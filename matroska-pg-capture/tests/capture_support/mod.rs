//! Shared by the change-capture tests: a test environment with its own schemas (dropped at the
//! end), a raw LISTEN connection that sees payloads exactly as sent, and transaction markers.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    unreachable_pub
)]

use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use futures::StreamExt as _;
use matroska_pg_capture::capture::{Capture, TableCapture};
use matroska_pg_capture::listener::TagBatch;
use matroska_postgres::PgStore;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

pub const URL_VAR: &str = "MATROSKA_TEST_POSTGRES_URL";

/// How long any one expected thing may take.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn url() -> Option<String> {
    matroska_testkit::server_url(URL_VAR)
}

/// A random, unused lower-case name.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = (
        SystemTime::now(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
    );
    format!("{prefix}_{:012x}", RandomState::new().hash_one(seed) >> 16)
}

pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A test's schemas: an application schema, a capture schema and a channel of its own.
pub struct Env {
    pub url: String,
    pub admin: tokio_postgres::Client,
    /// The application schema (created).
    pub app: String,
    /// The capture schema (created by install).
    pub capture: String,
    pub channel: String,
    drop: Vec<String>,
}

impl Env {
    pub async fn new(url: &str, prefix: &str) -> Self {
        let admin = connect(url).await;
        let app = unique(&format!("{prefix}_app"));
        admin
            .batch_execute(&format!("CREATE SCHEMA {}", quote(&app)))
            .await
            .unwrap();
        let capture = unique(&format!("{prefix}_cap"));
        Self {
            url: url.to_owned(),
            admin,
            drop: vec![app.clone(), capture.clone()],
            app,
            capture,
            channel: unique(&format!("{prefix}_ch")),
        }
    }

    /// `"app"."name"`.
    pub fn table(&self, name: &str) -> String {
        format!("{}.{}", quote(&self.app), quote(name))
    }

    /// A migrated PgStore on a new schema (dropped at the end).
    pub async fn store(&mut self) -> PgStore {
        let schema = unique("cap_store");
        self.drop.push(schema.clone());
        let store = PgStore::builder(&self.url)
            .schema(schema)
            .fill_window(Duration::from_secs(5))
            .pool_size(4)
            .build()
            .unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// Installs `capture` in this test's capture schema, then starts a raw listener on its
    /// channel and opens a writer connection.
    pub async fn install_and_listen(
        &self,
        capture: TableCapture,
    ) -> (RawListener, tokio_postgres::Client) {
        let mut admin = connect(&self.url).await;
        Capture::new(&self.capture)
            .unwrap()
            .install(&mut admin, &[capture])
            .await
            .unwrap();
        let raw = RawListener::start(&self.url, &self.channel).await;
        (raw, connect(&self.url).await)
    }

    /// Also drop `schema` at the end.
    pub fn drop_schema(&mut self, schema: &str) {
        self.drop.push(schema.to_owned());
    }

    /// Drops the test's schemas. (Dropping an `Env` without calling this, as a failing test
    /// does, drops them too, from a thread of its own.)
    pub async fn finish(mut self) {
        let schemas = std::mem::take(&mut self.drop);
        drop_schemas(&self.url, &schemas).await;
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if self.drop.is_empty() {
            return;
        }
        // A test that panicked: its runtime may be unusable, so clean up on a runtime of our
        // own, on another thread.
        let (url, schemas) = (self.url.clone(), std::mem::take(&mut self.drop));
        let cleanup =
            std::thread::spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(drop_schemas(&url, &schemas)),
                    Err(e) => eprintln!("warning: could not clean up schemas {schemas:?}: {e}"),
                }
            });
        if cleanup.join().is_err() {
            eprintln!("warning: the cleanup of a test's schemas panicked");
        }
    }
}

/// Drops `schemas` (with everything in them) on a connection of its own. A failed test may have
/// left a session holding locks in them (its connection task no longer runs): after a lock
/// timeout, the sessions holding locks on the schemas' relations are terminated, then it retries.
async fn drop_schemas(url: &str, schemas: &[String]) {
    let Ok((client, connection)) = tokio_postgres::connect(url, NoTls).await else {
        eprintln!("warning: could not connect to drop schemas {schemas:?}");
        return;
    };
    let connection = tokio::spawn(connection);
    let _ = client.batch_execute("SET lock_timeout = '3s'").await;
    for schema in schemas {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(schema));
        let mut result = client.batch_execute(&sql).await;
        if result.is_err() {
            let _ = client
                .execute(
                    "SELECT pg_terminate_backend(l.pid) FROM pg_locks l
                     JOIN pg_class c ON c.oid = l.relation
                     WHERE c.relnamespace = to_regnamespace($1) AND l.pid <> pg_backend_pid()",
                    &[&quote(schema)],
                )
                .await;
            result = client.batch_execute(&sql).await;
        }
        if let Err(e) = result {
            eprintln!("warning: could not drop schema {schema}: {e}");
        }
    }
    drop(client);
    let _ = connection.await;
}

/// A connection that LISTENs on a channel and forwards every payload, exactly as sent.
pub struct RawListener {
    _client: tokio_postgres::Client,
    rx: mpsc::UnboundedReceiver<String>,
}

pub const MARKER: &str = "marker";

impl RawListener {
    pub async fn start(url: &str, channel: &str) -> Self {
        let (client, mut connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let AsyncMessage::Notification(n) = message {
                    let _ = tx.send(n.payload().to_owned());
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {}", quote(channel)))
            .await
            .unwrap();
        Self {
            _client: client,
            rx,
        }
    }

    /// The payloads received until the marker `writer` sends now (notifications arrive in
    /// commit order, so everything committed before is in).
    pub async fn until_marker(
        &mut self,
        writer: &tokio_postgres::Client,
        channel: &str,
    ) -> Vec<String> {
        writer
            .execute("SELECT pg_notify($1, $2)", &[&channel, &MARKER])
            .await
            .unwrap();
        let mut payloads = Vec::new();
        loop {
            let payload = tokio::time::timeout(WAIT, self.rx.recv())
                .await
                .expect("no marker in time")
                .expect("listener closed");
            if payload == MARKER {
                return payloads;
            }
            payloads.push(payload);
        }
    }

    /// The tags of the payloads before the marker, checking each payload: under 8,000 bytes and
    /// a strictly valid version-1 payload.
    pub async fn tags(
        &mut self,
        writer: &tokio_postgres::Client,
        channel: &str,
    ) -> BTreeSet<String> {
        let payloads = self.until_marker(writer, channel).await;
        tags_of(&payloads)
    }
}

pub fn tags_of(payloads: &[String]) -> BTreeSet<String> {
    let mut tags = BTreeSet::new();
    for payload in payloads {
        assert!(payload.len() < 8000, "payload of {} bytes", payload.len());
        let batch = TagBatch::parse(payload, 0).unwrap_or_else(|e| panic!("{e}: {payload}"));
        tags.extend(batch.tags().iter().map(ToString::to_string));
    }
    tags
}
