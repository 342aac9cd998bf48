//! `min_connections` (FastPgCache's `minconn`): the pool keeps that many connections open,
//! opened in the background when the store is built, or on demand by `warm_up`.
//!
//! Needs `MATROSKA_TEST_POSTGRES_URL` (skipped without it, unless servers are required).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use matroska_core::Error;
use matroska_postgres::PgStore;

fn url() -> Option<String> {
    matroska_testkit::server_url("MATROSKA_TEST_POSTGRES_URL")
}

#[test]
fn more_min_connections_than_the_pool_holds_is_a_config_error() {
    let err = PgStore::builder("postgres://localhost/db")
        .pool_size(2)
        .min_connections(3)
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert!(err.to_string().contains("min_connections"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_opens_the_missing_connections_and_they_stay_open() {
    let Some(url) = url() else {
        return;
    };
    // Built outside a runtime's reach of the background task: `warm_up` alone opens them.
    let store = std::thread::scope(|s| {
        s.spawn(|| {
            PgStore::builder(&url)
                .pool_size(5)
                .min_connections(3)
                .build()
        })
        .join()
        .unwrap()
    })
    .unwrap();
    assert_eq!(store.status().size, 0, "nothing opened before warm_up");
    assert_eq!(store.warm_up().await.unwrap(), 3);
    let status = store.status();
    assert_eq!(
        (status.size, status.available),
        (3, 3),
        "three idle, open connections"
    );
    assert_eq!(store.warm_up().await.unwrap(), 0, "enough are open");
    store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_built_in_a_runtime_opens_its_minimum_in_the_background() {
    let Some(url) = url() else {
        return;
    };
    let store = PgStore::builder(&url)
        .pool_size(4)
        .min_connections(2)
        .build()
        .unwrap();
    matroska_testkit::support::eventually(
        Duration::from_secs(10),
        "two connections open without any operation",
        || async { store.status().size >= 2 },
    )
    .await;
    assert!(store.status().size <= 4);
    store.close();
}
