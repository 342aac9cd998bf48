//! PgStore-specific tests against a real server: concurrency of several connections, the
//! writer-transaction interleaving (snapshots), cleanup, pool exhaustion, epochs and clear.
//!
//! Needs `MATROSKA_TEST_POSTGRES_URL` (run `./scripts/test`, which starts a private server).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    clippy::many_single_char_names
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::join_all;
use matroska_core::store::{Lookup, PutOutcome, Store};
use matroska_core::{Bytes, Dep, Key, Tag};
use matroska_postgres::PgStore;
use matroska_testkit::support::{Rng, eventually};
use support::{Schemas, URL_VAR, connect};

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

fn tag(dep: &Dep) -> Tag {
    dep.to_tag().unwrap()
}

fn bytes(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn hit(store: &PgStore, k: &Key) -> Option<Bytes> {
    match store.get(k).await.unwrap() {
        Lookup::Hit(b) => Some(b),
        Lookup::Miss(_) => None,
    }
}

async fn miss(store: &PgStore, k: &Key) -> matroska_core::store::FillToken {
    match store.get(k).await.unwrap() {
        Lookup::Miss(token) => token,
        Lookup::Hit(b) => panic!("expected a miss, got {b:?}"),
    }
}

/// Runs `body` with fresh schemas, dropping them afterwards (also when it panics).
async fn with_schemas<F, Fut>(body: F)
where
    F: FnOnce(Arc<Schemas>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = matroska_testkit::server_url(URL_VAR) else {
        return;
    };
    let schemas = Arc::new(Schemas::new(&url).await);
    let outcome = tokio::spawn(body(Arc::clone(&schemas))).await;
    schemas.drop_all().await;
    if let Err(join) = outcome {
        std::panic::resume_unwind(join.into_panic());
    }
}

/// The interleaving of the next issue's change-capture triggers, at the store level:
/// A: BEGIN; UPDATE row; SELECT schema.invalidate(...);  B: get miss -> token; read the row (old);
/// put with the token;  A: COMMIT.  B's entry must not be served after A commits, although
/// B's token was taken after A's invalidation drew its sequence number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_overlapping_an_open_writer_transaction_does_not_survive_its_commit() {
    with_schemas(|schemas| async move {
        let store = schemas.store("matroska_snap").await;
        let s = store.schema().quoted();
        let admin = schemas.admin();
        admin
            .batch_execute(&format!(
                "CREATE TABLE {s}.article (id int PRIMARY KEY, title text NOT NULL);
                 INSERT INTO {s}.article VALUES (1, 'old');"
            ))
            .await
            .unwrap();
        let t = tag(&Dep::id("article", 1));
        let k = key("article:1");

        let mut writer = connect(schemas.url()).await;
        let tx = writer.transaction().await.unwrap();
        tx.execute(
            &format!("UPDATE {s}.article SET title = 'new' WHERE id = 1"),
            &[],
        )
        .await
        .unwrap();
        tx.execute(&format!("SELECT {s}.invalidate($1)"), &[&vec![t.as_str()]])
            .await
            .unwrap();

        // B: the miss happens after the invalidation drew its seq, before the commit.
        let token = miss(&store, &k).await;
        let title: String = admin
            .query_one(&format!("SELECT title FROM {s}.article WHERE id = 1"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(title, "old", "B reads the committed (old) row");
        let outcome = store
            .put(
                &k,
                bytes(&title),
                std::slice::from_ref(&t),
                None,
                Some(&token),
            )
            .await
            .unwrap();
        // The stamp is not visible yet, so the put may store; either way it must not be served
        // once A commits.
        assert_eq!(outcome, PutOutcome::Stored);
        assert_eq!(
            hit(&store, &k).await,
            Some(bytes("old")),
            "before A commits, old is right"
        );

        tx.commit().await.unwrap();
        assert_eq!(
            hit(&store, &k).await,
            None,
            "the overlapping fill survived the commit"
        );
        assert!(!store.exists(&k).await.unwrap());

        // A fill after the commit reads the new row and is stored.
        let token = miss(&store, &k).await;
        let outcome = store
            .put(
                &k,
                bytes("new"),
                std::slice::from_ref(&t),
                None,
                Some(&token),
            )
            .await
            .unwrap();
        assert_eq!(outcome, PutOutcome::Stored);
        assert_eq!(hit(&store, &k).await, Some(bytes("new")));

        // And a token taken during an open writer transaction is refused once it committed.
        let tx = writer.transaction().await.unwrap();
        tx.execute(&format!("SELECT {s}.invalidate($1)"), &[&vec![t.as_str()]])
            .await
            .unwrap();
        let k2 = key("article:1:other");
        let token = miss(&store, &k2).await;
        tx.commit().await.unwrap();
        let outcome = store
            .put(
                &k2,
                bytes("old"),
                std::slice::from_ref(&t),
                None,
                Some(&token),
            )
            .await
            .unwrap();
        assert_eq!(outcome, PutOutcome::Stale);
        // A rolled-back invalidation changes nothing.
        let token = miss(&store, &k2).await;
        let tx = writer.transaction().await.unwrap();
        tx.execute(&format!("SELECT {s}.invalidate($1)"), &[&vec![t.as_str()]])
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        let outcome = store
            .put(
                &k2,
                bytes("v"),
                std::slice::from_ref(&t),
                None,
                Some(&token),
            )
            .await
            .unwrap();
        assert_eq!(outcome, PutOutcome::Stored);
    })
    .await;
}

/// Several connections (two stores, each with its own pool) race fills against writers that
/// update a real table and invalidate, half of them inside the writer's transaction (as the
/// triggers of the next issue will), half after the commit. After a writer's commit (and its
/// invalidation) returned, no read may see an older version of the row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_fills_and_invalidations_across_connections_never_read_stale() {
    with_schemas(|schemas| async move {
        const ROWS: i32 = 4;
        let a = schemas.store("matroska_race").await;
        let b = schemas.reopen(&a);
        let s = a.schema().quoted();
        schemas
            .admin()
            .batch_execute(&format!(
                "CREATE TABLE {s}.row (id int PRIMARY KEY, version bigint NOT NULL);
                 INSERT INTO {s}.row SELECT i, 0 FROM generate_series(0, {}) i;",
                ROWS - 1
            ))
            .await
            .unwrap();
        let committed: Arc<Vec<AtomicU64>> =
            Arc::new((0..ROWS).map(|_| AtomicU64::new(0)).collect());
        let reads = Arc::new(AtomicU64::new(0));
        let mut rng = Rng::from_env();
        let mut tasks = Vec::new();
        for w in 0..3 {
            let store = if w % 2 == 0 { a.clone() } else { b.clone() };
            let (url, s, committed) = (schemas.url().to_owned(), s.clone(), Arc::clone(&committed));
            let mut rng = Rng::new(rng.next_u64());
            tasks.push(tokio::spawn(async move {
                let mut client = connect(&url).await;
                for i in 0..60 {
                    let row = i32::try_from(rng.below(ROWS as usize)).unwrap();
                    let t = tag(&Dep::id("row", row));
                    let inside = (i + w) % 2 == 0;
                    let tx = client.transaction().await.unwrap();
                    let version: i64 = tx
                        .query_one(
                            &format!("UPDATE {s}.row SET version = version + 1 WHERE id = $1 RETURNING version"),
                            &[&row],
                        )
                        .await
                        .unwrap()
                        .get(0);
                    if inside {
                        tx.execute(&format!("SELECT {s}.invalidate($1)"), &[&vec![t.as_str()]])
                            .await
                            .unwrap();
                        tx.commit().await.unwrap();
                    } else {
                        tx.commit().await.unwrap();
                        store.invalidate(std::slice::from_ref(&t)).await.unwrap();
                    }
                    committed[usize::try_from(row).unwrap()]
                        .fetch_max(u64::try_from(version).unwrap(), Ordering::SeqCst);
                }
            }));
        }
        for r in 0..4 {
            let store = if r % 2 == 0 { a.clone() } else { b.clone() };
            let (url, s, committed, reads) = (
                schemas.url().to_owned(),
                s.clone(),
                Arc::clone(&committed),
                Arc::clone(&reads),
            );
            let mut rng = Rng::new(rng.next_u64());
            tasks.push(tokio::spawn(async move {
                let client = connect(&url).await;
                for _ in 0..150 {
                    let row = i32::try_from(rng.below(ROWS as usize)).unwrap();
                    let floor = committed[usize::try_from(row).unwrap()].load(Ordering::SeqCst);
                    let k = key(&format!("row:{row}"));
                    let seen: u64 = match store.get(&k).await.unwrap() {
                        Lookup::Hit(b) => std::str::from_utf8(&b).unwrap().parse().unwrap(),
                        Lookup::Miss(token) => {
                            let version: i64 = client
                                .query_one(&format!("SELECT version FROM {s}.row WHERE id = $1"), &[&row])
                                .await
                                .unwrap()
                                .get(0);
                            for _ in 0..rng.below(3) {
                                tokio::task::yield_now().await;
                            }
                            let t = tag(&Dep::id("row", row));
                            store
                                .put(&k, bytes(&version.to_string()), &[t], None, Some(&token))
                                .await
                                .unwrap();
                            u64::try_from(version).unwrap()
                        }
                    };
                    reads.fetch_add(1, Ordering::Relaxed);
                    assert!(
                        seen >= floor,
                        "stale read of row {row}: version {seen}, but {floor} was committed and \
                         invalidated before the read began"
                    );
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(reads.load(Ordering::Relaxed), 600);
    })
    .await;
}

/// An entry carrying several of the invalidated tags is counted once; a huge fan-out is removed
/// in several short statements, and the count is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_counts_distinct_entries_and_batches_large_fan_outs() {
    with_schemas(|schemas| async move {
        let store = schemas
            .config("matroska_count")
            .batch_size(100)
            .build()
            .unwrap();
        store.migrate().await.unwrap();
        let (a, b, c) = (
            tag(&Dep::tag("a")),
            tag(&Dep::tag("b")),
            tag(&Dep::tag("c")),
        );
        store
            .put(
                &key("both"),
                bytes("v"),
                &[a.clone(), b.clone()],
                None,
                None,
            )
            .await
            .unwrap();
        store
            .put(
                &key("only-b"),
                bytes("v"),
                std::slice::from_ref(&b),
                None,
                None,
            )
            .await
            .unwrap();
        assert_eq!(store.invalidate(&[a.clone(), b.clone()]).await.unwrap(), 2);

        let n = 1050;
        join_all((0..n).map(|i| {
            let (store, c) = (store.clone(), c.clone());
            async move {
                let tags = [c, tag(&Dep::id("row", i))];
                store
                    .put(&key(&format!("fan:{i}")), bytes("v"), &tags, None, None)
                    .await
                    .unwrap();
            }
        }))
        .await;
        assert_eq!(store.invalidate(&[c.clone(), a]).await.unwrap(), n);
        let left: i64 = schemas
            .admin()
            .query_one(
                &format!("SELECT count(*) FROM {}.entries", store.schema().quoted()),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, 0);
    })
    .await;
}

/// cleanup() removes expired entries and their index rows in bounded batches and reports the
/// count; live entries stay; the background task does the same on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_removes_expired_entries_in_batches_and_reports_the_count() {
    with_schemas(|schemas| async move {
        let store = schemas
            .config("matroska_cleanup")
            .batch_size(100)
            .build()
            .unwrap();
        store.migrate().await.unwrap();
        let s = store.schema().quoted();
        let t = tag(&Dep::tag("t"));
        let short = Some(Duration::from_millis(300));
        join_all((0..450).map(|i| {
            let (store, t) = (store.clone(), t.clone());
            async move {
                let ttl = if i < 400 { short } else { None };
                store
                    .put(&key(&format!("c:{i}")), bytes("v"), &[t], ttl, None)
                    .await
                    .unwrap();
            }
        }))
        .await;
        // Real time must pass: expiry runs on the server's clock.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            hit(&store, &key("c:0")).await,
            None,
            "expired entries are never served"
        );
        let report = store.cleanup().await.unwrap();
        assert_eq!(report.expired, 400);
        assert!(report.rounds >= 4, "bounded batches: {report:?}");
        assert!(report.complete);
        let count = |table: &'static str| {
            let (admin, s) = (schemas.admin(), s.clone());
            async move {
                admin
                    .query_one(&format!("SELECT count(*) FROM {s}.{table}"), &[])
                    .await
                    .unwrap()
                    .get::<_, i64>(0)
            }
        };
        assert_eq!(count("entries").await, 50);
        assert_eq!(
            count("tags").await,
            50,
            "index rows of removed entries are gone"
        );
        assert_eq!(hit(&store, &key("c:449")).await, Some(bytes("v")));
        assert_eq!(store.cleanup().await.unwrap().expired, 0);

        // Stamps are confirmed, then pruned two fill windows later.
        store.invalidate(std::slice::from_ref(&t)).await.unwrap();
        assert_eq!(count("stamps").await, 1);
        store.cleanup().await.unwrap();
        tokio::time::sleep(store.fill_window() * 2 + Duration::from_millis(200)).await;
        assert_eq!(store.cleanup().await.unwrap().stamps_pruned, 1);
        assert_eq!(count("stamps").await, 0);

        // The background task.
        for i in 0..20 {
            store
                .put(&key(&format!("bg:{i}")), bytes("v"), &[], short, None)
                .await
                .unwrap();
        }
        let task = store.spawn_cleanup(Duration::from_millis(100));
        eventually(
            Duration::from_secs(10),
            "background cleanup removed them",
            || async { count("entries").await == 0 },
        )
        .await;
        assert!(!task.is_finished());
        task.stop();
    })
    .await;
}

/// A put racing with an invalidation can leave an entry that only its stamp keeps dead; the
/// sweep before the stamp is pruned removes it, so pruning never brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_a_stamp_never_revives_an_entry_it_kept_dead() {
    with_schemas(|schemas| async move {
        let store = schemas.store("matroska_prune").await;
        let s = store.schema().quoted();
        let t = tag(&Dep::tag("t"));
        let k = key("raced");
        let token = miss(&store, &k).await;
        // The invalidation commits inside a writer transaction after B's put checked stamps:
        // model it by stamping in a transaction, storing, then committing.
        let mut writer = connect(schemas.url()).await;
        let tx = writer.transaction().await.unwrap();
        tx.execute(&format!("SELECT {s}.invalidate($1)"), &[&vec![t.as_str()]])
            .await
            .unwrap();
        let outcome = store
            .put(
                &k,
                bytes("stale"),
                std::slice::from_ref(&t),
                None,
                Some(&token),
            )
            .await
            .unwrap();
        assert_eq!(outcome, PutOutcome::Stored);
        tx.commit().await.unwrap();
        assert_eq!(hit(&store, &k).await, None);
        store.cleanup().await.unwrap(); // confirms the stamp
        tokio::time::sleep(store.fill_window() * 2 + Duration::from_millis(200)).await;
        let report = store.cleanup().await.unwrap();
        assert_eq!(report.stamps_pruned, 1);
        assert_eq!(hit(&store, &k).await, None, "pruning revived a stale entry");
    })
    .await;
}

/// With every connection busy, requests wait for one (up to the wait timeout) instead of
/// failing at once; past the timeout they fail with a transient error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_exhaustion_waits_then_times_out() {
    with_schemas(|schemas| async move {
        let store = schemas
            .config("matroska_pool")
            .pool_size(2)
            .pool_wait_timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        store.migrate().await.unwrap();
        let s = store.schema().quoted();
        // Hold a lock that makes every get wait on the server.
        let mut locker = connect(schemas.url()).await;
        let tx = locker.transaction().await.unwrap();
        tx.batch_execute(&format!("LOCK TABLE {s}.entries IN ACCESS EXCLUSIVE MODE"))
            .await
            .unwrap();
        let gets: Vec<_> = (0..12)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.get(&key(&format!("p:{i}"))).await })
            })
            .collect();
        eventually(
            Duration::from_secs(10),
            "the pool is exhausted and requests queue",
            || async {
                let status = store.status();
                status.size == 2 && status.available == 0 && status.waiting >= 10
            },
        )
        .await;
        tx.rollback().await.unwrap();
        for get in gets {
            assert!(matches!(get.await.unwrap().unwrap(), Lookup::Miss(_)));
        }

        // Past the wait timeout: a transient error, not a hang.
        let short = schemas
            .config("matroska_pool_short")
            .pool_size(1)
            .pool_wait_timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        short.migrate().await.unwrap();
        let s = short.schema().quoted();
        let tx = locker.transaction().await.unwrap();
        tx.batch_execute(&format!("LOCK TABLE {s}.entries IN ACCESS EXCLUSIVE MODE"))
            .await
            .unwrap();
        let holder = {
            let short = short.clone();
            tokio::spawn(async move { short.get(&key("held")).await })
        };
        eventually(
            Duration::from_secs(10),
            "the only connection is busy",
            || async { short.status().available == 0 && short.status().size == 1 },
        )
        .await;
        let err = short.get(&key("queued")).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(err.to_string().contains("no pooled connection"), "{err}");
        tx.rollback().await.unwrap();
        assert!(holder.await.unwrap().is_ok());
    })
    .await;
}

/// Tokens never pass after a reset: crash recovery (simulated by emptying the unlogged state
/// as crash recovery would), a clear, or a dropped and re-migrated schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_before_a_reset_or_a_recreation_are_rejected() {
    with_schemas(|schemas| async move {
        let store = schemas.store("matroska_epoch").await;
        let s = store.schema().quoted();
        let admin = schemas.admin();
        let k = key("e");

        // Crash recovery empties every UNLOGGED table.
        let token = miss(&store, &k).await;
        admin
            .batch_execute(&format!(
                "TRUNCATE {s}.entries, {s}.tags, {s}.stamps, {s}.epoch"
            ))
            .await
            .unwrap();
        let after_crash = miss(&store, &k).await;
        assert_eq!(
            after_crash.snapshot(),
            None,
            "no state yet: a token that cannot store"
        );
        let put = store
            .put(&k, bytes("v"), &[], None, Some(&token))
            .await
            .unwrap();
        assert_eq!(put, PutOutcome::Stale, "a pre-crash token");
        let fresh = miss(&store, &k).await;
        assert_eq!(
            store
                .put(&k, bytes("v"), &[], None, Some(&fresh))
                .await
                .unwrap(),
            PutOutcome::Stored
        );

        // Drop and re-create the schema: the old token is from another epoch.
        let token = miss(&store, &key("other")).await;
        admin
            .batch_execute(&format!("DROP SCHEMA {s} CASCADE"))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let put = store
            .put(&key("other"), bytes("v"), &[], None, Some(&token))
            .await
            .unwrap();
        assert_eq!(put, PutOutcome::Stale);

        // A token from another store is refused, not an error.
        let foreign = matroska_core::store::FillToken::new(1, 1).with_snapshot("10:10:");
        let put = store
            .put(&k, bytes("v"), &[], None, Some(&foreign))
            .await
            .unwrap();
        assert_eq!(put, PutOutcome::Stale);
    })
    .await;
}

/// A schema created UNLOGGED cannot be opened as LOGGED by mistake; migrate is idempotent and
/// safe to run concurrently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_is_idempotent_concurrent_and_checks_persistence() {
    with_schemas(|schemas| async move {
        let config = schemas.config("matroska_migrate");
        let stores: Vec<_> = (0..4).map(|_| config.clone().build().unwrap()).collect();
        let reports = join_all(stores.iter().map(PgStore::migrate)).await;
        let applied: usize = reports.into_iter().map(|r| r.unwrap().applied.len()).sum();
        assert_eq!(applied, 1, "exactly one migrate applied the migration");
        let s = stores[0].schema().quoted();
        let persistence: String = schemas
            .admin()
            .query_one(
                &format!(
                    "SELECT string_agg(DISTINCT relpersistence::text, ',') FROM pg_class
                     WHERE relnamespace = '{s}'::regnamespace AND relkind = 'r'
                       AND relname IN ('entries', 'tags', 'stamps', 'epoch')"
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(persistence, "u");
        let logged = config
            .clone()
            .persistence(matroska_postgres::Persistence::Logged)
            .build()
            .unwrap();
        let err = logged.migrate().await.unwrap_err();
        assert!(matches!(err, matroska_core::Error::Config(_)), "{err}");

        let logged = schemas
            .config("matroska_logged")
            .persistence(matroska_postgres::Persistence::Logged)
            .build()
            .unwrap();
        logged.migrate().await.unwrap();
        logged
            .put(&key("k"), bytes("v"), &[], None, None)
            .await
            .unwrap();
        assert_eq!(hit(&logged, &key("k")).await, Some(bytes("v")));
    })
    .await;
}
