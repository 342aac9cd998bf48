//! PgStore-specific tests against a real server: concurrency of several connections, the
//! writer-transaction interleaving (snapshots), batched invalidation and pool exhaustion.
//! Housekeeping: `tests/cleanup.rs`; fill tokens: `tests/tokens.rs`; migrations:
//! `tests/migrate.rs`.
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
use matroska_core::Dep;
use matroska_core::store::{Lookup, PutOutcome, Store};
use matroska_testkit::support::{Rng, bytes, eventually, hit, key, tag};
use support::{Schemas, blocked_by, connect, miss, rows, with_schemas};

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

/// What one run of the race did.
#[derive(Debug, Default)]
struct Raced {
    reads: u64,
    hits: u64,
    stale_fills: u64,
}

/// Several connections (two stores, each with its own pool) race fills against writers that
/// update a real table and invalidate, half of them inside the writer's transaction (as the
/// change-capture triggers do), half after the commit. After a writer's commit (and its
/// invalidation) returned, no read may see an older version of the row. The run must show that
/// the race happened: some fills were refused as stale, and some reads were hits (served from
/// the store after its stamp check); a run that shows neither is repeated with a new seed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_fills_and_invalidations_across_connections_never_read_stale() {
    with_schemas(|schemas| async move {
        const ATTEMPTS: usize = 5;
        let mut seeds = Rng::from_env();
        let mut runs = Vec::new();
        for attempt in 0..ATTEMPTS {
            let seed = seeds.next_u64();
            let raced = race(&schemas, seed).await;
            eprintln!("attempt {attempt}: seed {seed}: {raced:?}");
            let shown = raced.stale_fills > 0 && raced.hits > 0;
            runs.push(raced);
            if shown {
                return;
            }
        }
        panic!("in {ATTEMPTS} runs no fill was refused as stale and read back as a hit: {runs:?}");
    })
    .await;
}

/// One run of the race on a new schema; panics on a stale read.
async fn race(schemas: &Schemas, seed: u64) -> Raced {
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
    let committed: Arc<Vec<AtomicU64>> = Arc::new((0..ROWS).map(|_| AtomicU64::new(0)).collect());
    let counts: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let mut rng = Rng::new(seed);
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
        let (url, s, committed, counts) = (
            schemas.url().to_owned(),
            s.clone(),
            Arc::clone(&committed),
            Arc::clone(&counts),
        );
        let mut rng = Rng::new(rng.next_u64());
        tasks.push(tokio::spawn(async move {
            let client = connect(&url).await;
            let [reads, hits, stale] = &*counts;
            for _ in 0..150 {
                let row = i32::try_from(rng.below(ROWS as usize)).unwrap();
                let floor = committed[usize::try_from(row).unwrap()].load(Ordering::SeqCst);
                let k = key(&format!("row:{row}"));
                let seen: u64 = match store.get(&k).await.unwrap() {
                    Lookup::Hit(b) => {
                        hits.fetch_add(1, Ordering::Relaxed);
                        std::str::from_utf8(&b).unwrap().parse().unwrap()
                    }
                    Lookup::Miss(token) => {
                        let version: i64 = client
                            .query_one(
                                &format!("SELECT version FROM {s}.row WHERE id = $1"),
                                &[&row],
                            )
                            .await
                            .unwrap()
                            .get(0);
                        for _ in 0..rng.below(3) {
                            tokio::task::yield_now().await;
                        }
                        let t = tag(&Dep::id("row", row));
                        let outcome = store
                            .put(&k, bytes(&version.to_string()), &[t], None, Some(&token))
                            .await
                            .unwrap();
                        if outcome == PutOutcome::Stale {
                            stale.fetch_add(1, Ordering::Relaxed);
                        }
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
    let [reads, hits, stale] = &*counts;
    let raced = Raced {
        reads: reads.load(Ordering::Relaxed),
        hits: hits.load(Ordering::Relaxed),
        stale_fills: stale.load(Ordering::Relaxed),
    };
    assert_eq!(raced.reads, 600);
    raced
}

/// An entry carrying several of the invalidated tags is counted once; a large fan-out is removed
/// in short statements of `batch_size` rows, each committed on its own: while the invalidation
/// waits on a row locked by another transaction, the batches before that row are already
/// committed (and the rows after it still there). A single statement would have committed
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_counts_distinct_entries_and_batches_large_fan_outs() {
    with_schemas(|schemas| async move {
        let store = schemas
            .config("matroska_count")
            .batch_size(100)
            .build()
            .unwrap();
        store.migrate().await.unwrap();
        let s = store.schema().quoted();
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
                    .put(&key(&format!("fan:{i:04}")), bytes("v"), &tags, None, None)
                    .await
                    .unwrap();
            }
        }))
        .await;

        // Hold the entry in the seventh batch (in key order).
        let held = key("fan:0600");
        let mut locker = connect(schemas.url()).await;
        let lock = locker.transaction().await.unwrap();
        let locker_pid: i32 = lock
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        lock.execute(
            &format!("SELECT FROM {s}.entries WHERE key = $1 FOR UPDATE"),
            &[&held.as_str()],
        )
        .await
        .unwrap();
        let invalidation = {
            let (store, c, a) = (store.clone(), c.clone(), a.clone());
            tokio::spawn(async move { store.invalidate(&[c, a]).await })
        };
        blocked_by(schemas.admin(), locker_pid, 1).await;
        let split = |op: &'static str| {
            let (admin, s, held) = (schemas.admin(), s.clone(), held.clone());
            async move {
                let sql = format!(
                    "SELECT count(*) FROM {s}.entries WHERE key {op} $1 AND key LIKE 'fan:%'"
                );
                admin
                    .query_one(&sql, &[&held.as_str()])
                    .await
                    .unwrap()
                    .get::<_, i64>(0)
            }
        };
        assert_eq!(
            split("<").await,
            0,
            "the batches before the held row are committed while the invalidation waits"
        );
        assert_eq!(
            split(">=").await,
            450,
            "the rows from the held one on are still there"
        );
        assert_eq!(
            hit(&store, &key("fan:1049")).await,
            None,
            "but already misses"
        );
        lock.rollback().await.unwrap();

        assert_eq!(invalidation.await.unwrap().unwrap(), n);
        assert_eq!(rows(schemas.admin(), &store, "entries").await, 0);
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

/// A caller that stops waiting for an operation (its future is dropped, as a request timeout
/// does) while the statement still runs on the server must not hand that busy connection back to
/// the pool: the next operation would queue behind a statement nobody waits for (here, one
/// blocked on a row lock) and fail after the operation timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_operation_does_not_return_its_busy_connection_to_the_pool() {
    with_schemas(|schemas| async move {
        let store = schemas
            .config("matroska_cancel")
            .pool_size(1)
            .operation_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        store.migrate().await.unwrap();
        let s = store.schema().quoted();
        let k = key("held");
        store.put(&k, bytes("v"), &[], None, None).await.unwrap();

        let mut locker = connect(schemas.url()).await;
        let lock = locker.transaction().await.unwrap();
        let pid: i32 = lock
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        lock.execute(
            &format!("SELECT FROM {s}.entries WHERE key = $1 FOR UPDATE"),
            &[&k.as_str()],
        )
        .await
        .unwrap();
        let delete = {
            let (store, k) = (store.clone(), k.clone());
            tokio::spawn(async move { store.delete(&k).await })
        };
        blocked_by(schemas.admin(), pid, 1).await;
        delete.abort();
        assert!(delete.await.unwrap_err().is_cancelled());

        // The row is still locked: an operation that queued behind the abandoned delete would
        // wait for it.
        let got = store.get(&key("other")).await;
        assert!(
            matches!(got, Ok(Lookup::Miss(_))),
            "the next operation waited behind the abandoned statement: {got:?}"
        );
        assert_eq!(hit(&store, &k).await, Some(bytes("v")));
        lock.rollback().await.unwrap();
    })
    .await;
}
