//! Credential rotation against a real server: the role's password changes while requests run.
//!
//! Needs `MATROSKA_TEST_POSTGRES_URL` with a role that may create roles (run `./scripts/test`).
//! The test creates its own login role with a password (on any server, also a shared one such
//! as a developer's 127.0.0.1:5432) and first checks that the server rejects a wrong password
//! for it. The private server of `scripts/with-servers` requires scram-sha-256 for every role
//! but `postgres` over TCP, so a stale password is really rejected and the recovery path (drop
//! the credential, ask the provider again, retry with backoff) is exercised and asserted.
//!
//! A server that trusts the role's logins (`trust` in `pg_hba.conf`) cannot reject a credential.
//! When servers are required (`MATROSKA_TEST_REQUIRE_SERVERS` or `CI` set, as `./scripts/test`
//! does, or `MATROSKA_TEST_REQUIRE_SCRAM=1`) the test then fails, naming the missing `hba`
//! line; otherwise it checks what it can (a fresh credential per new connection, no failed
//! request) and says that the rejection was not shown.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    clippy::too_many_lines
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use matroska_core::store::Store;
use matroska_core::{Bytes, Dep, Key};
use matroska_postgres::{Credential, PgStore, credential_fn};
use matroska_testkit::support::eventually;
use parking_lot::Mutex;
use support::{URL_VAR, connect, schema_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_role_password_does_not_fail_requests() {
    let Some(url) = matroska_testkit::server_url(URL_VAR) else {
        return;
    };
    let admin = connect(&url).await;
    let role = schema_name("matroska_rot");
    let schema = schema_name("matroska_rot");
    let db: String = admin
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    // Identifiers are generated ([a-z0-9_]); passwords are literals built from digits only.
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'first-1';
             GRANT CREATE ON DATABASE \"{db}\" TO {role};"
        ))
        .await
        .unwrap();

    let outcome = tokio::spawn(run(url.clone(), role.clone(), schema.clone())).await;

    let _ = admin
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}';
             DROP SCHEMA IF EXISTS {schema} CASCADE;
             REVOKE CREATE ON DATABASE \"{db}\" FROM {role};"
        ))
        .await;
    // The terminated backends may take a moment to go away before the role can be dropped.
    eventually(
        Duration::from_secs(10),
        "the test role is dropped",
        || async {
            admin
                .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
                .await
                .is_ok()
        },
    )
    .await;
    if let Err(join) = outcome {
        std::panic::resume_unwind(join.into_panic());
    }
}

async fn run(url: String, role: String, schema: String) {
    let admin = connect(&url).await;
    let scram = password_is_checked(&url, &role).await;
    if !scram {
        let why = format!(
            "the server at {URL_VAR} accepts any password for role {role} (trust authentication), \
             so a rejected credential cannot be shown; use ./scripts/test (its private server \
             requires scram-sha-256 for every role but postgres), or add \
             `host all all 127.0.0.1/32 scram-sha-256` after the superuser's line in pg_hba.conf"
        );
        assert!(!rejection_required(), "{why}");
        eprintln!("note: {why}; checking rotation without a rejection");
    }

    let password = Arc::new(Mutex::new("first-1".to_owned()));
    let provider_calls = Arc::new(AtomicU64::new(0));
    let provider = {
        let (password, calls) = (Arc::clone(&password), Arc::clone(&provider_calls));
        credential_fn(move || {
            calls.fetch_add(1, Ordering::SeqCst);
            let secret = password.lock().clone();
            async move { Ok(Credential::new(secret)) }
        })
    };
    let mut pg: tokio_postgres::Config = url.parse().unwrap();
    pg.user(&role);
    let store = matroska_postgres::PgStoreConfig::new(pg)
        .schema(schema.as_str())
        .pool_size(4)
        .pool_wait_timeout(Duration::from_secs(30))
        .max_connection_lifetime(Some(Duration::from_millis(300)))
        .auth_attempts(8)
        .credentials(provider)
        .build()
        .unwrap();
    store.migrate().await.unwrap();

    // Requests run all the time; none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (store, stop, done) = (store.clone(), Arc::clone(&stop), Arc::clone(&done));
            tokio::spawn(async move { work(w, store, stop, done).await })
        })
        .collect();
    let progressed = |n: u64| {
        let done = Arc::clone(&done);
        async move {
            let target = done.load(Ordering::SeqCst) + n;
            eventually(Duration::from_secs(30), "requests keep succeeding", || {
                let done = Arc::clone(&done);
                async move { done.load(Ordering::SeqCst) >= target }
            })
            .await;
        }
    };
    progressed(50).await;
    let opened_before = store.status().connections_opened;

    // Rotate: the server changes first; the provider learns the new password a little later
    // (as a secret store propagates it). Connections recycled meanwhile are rejected.
    admin
        .batch_execute(&format!("ALTER ROLE {role} PASSWORD 'second-2'"))
        .await
        .unwrap();
    if scram {
        eventually(
            Duration::from_secs(30),
            "a stale password was rejected",
            || async { store.status().auth_failures > 0 },
        )
        .await;
    } else {
        progressed(50).await;
    }
    "second-2".clone_into(&mut password.lock());
    progressed(100).await;
    // Connections older than their lifetime are replaced as they are reused: with the new password.
    eventually(
        Duration::from_secs(30),
        "new connections were opened after the rotation",
        || async { store.status().connections_opened >= opened_before + 4 },
    )
    .await;
    progressed(100).await;

    // Forced reconnection: terminate every backend of the role while requests run.
    let terminated: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1",
            &[&role],
        )
        .await
        .unwrap()
        .get(0);
    assert!(terminated > 0);
    progressed(100).await;

    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    let status = store.status();
    eprintln!(
        "credential rotation: {} requests, {} connections opened, {} provider calls, {} auth \
         failures recovered",
        done.load(Ordering::SeqCst),
        status.connections_opened,
        provider_calls.load(Ordering::SeqCst),
        status.auth_failures
    );
    assert!(provider_calls.load(Ordering::SeqCst) >= 2);
    if scram {
        assert!(status.auth_failures > 0);
        assert!(status.credential_fetches > status.auth_failures);
    }
    store.close();
}

/// One worker: put, get, invalidate in a loop; every call must succeed.
async fn work(w: u64, store: PgStore, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let mut i = 0_u64;
    while !stop.load(Ordering::SeqCst) {
        let key = Key::new(format!("w{w}:{}", i % 20)).unwrap();
        let tag = Dep::id("row", i % 7).to_tag().unwrap();
        store
            .put(
                &key,
                Bytes::from_static(b"v"),
                std::slice::from_ref(&tag),
                None,
                None,
            )
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "put failed during rotation: {e} ({:?})",
                    std::error::Error::source(&e)
                )
            });
        store.get(&key).await.unwrap_or_else(|e| {
            panic!(
                "get failed during rotation: {e} ({:?})",
                std::error::Error::source(&e)
            )
        });
        if i.is_multiple_of(5) {
            store
                .invalidate(&[tag])
                .await
                .unwrap_or_else(|e| panic!("invalidate failed during rotation: {e}"));
        }
        done.fetch_add(1, Ordering::SeqCst);
        i += 1;
    }
}

/// Whether the rejection of a stale credential must be shown: servers are required (as in CI),
/// or `MATROSKA_TEST_REQUIRE_SCRAM=1`.
fn rejection_required() -> bool {
    let set =
        |var: &str| std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    [
        "MATROSKA_TEST_REQUIRE_SERVERS",
        "CI",
        "MATROSKA_TEST_REQUIRE_SCRAM",
    ]
    .iter()
    .any(|var| set(var))
}

/// Whether the server rejects a wrong password for `role` (scram), or lets anyone in (trust).
async fn password_is_checked(url: &str, role: &str) -> bool {
    let mut pg: tokio_postgres::Config = url.parse().unwrap();
    pg.user(role).password("certainly-wrong");
    match pg.connect(tokio_postgres::NoTls).await {
        Ok(_) => false,
        Err(e) => {
            let code = e.code().map(|c| c.code().to_owned());
            assert_eq!(code.as_deref(), Some("28P01"), "unexpected error: {e}");
            true
        }
    }
}
