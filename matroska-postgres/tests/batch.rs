//! PgStore's batches at their boundaries: a batch fill overlapping an open writer transaction
//! never survives its commit (the tokens of `get_many` carry its one snapshot), a token the
//! store cannot use refuses its own entry only; `put_many` as one statement carries any tag text
//! (array literals), a repeated key goes entry by entry, and a batch held past a fill window
//! rolls back and goes entry by entry, each entry checked against its own window.
//!
//! Needs `MATROSKA_TEST_POSTGRES_URL` (run `./scripts/test`, which starts a private server).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use matroska_core::store::{FillToken, Lookup, PutEntry, PutOutcome, Store};
use matroska_core::{Dep, Tag};
use matroska_testkit::support::{bytes, hit, key, tag};
use support::{blocked_by, connect, hold, locker, miss, until_statement_older_than, with_schemas};

fn token(lookup: &Lookup) -> &FillToken {
    match lookup {
        Lookup::Miss(token) => token,
        Lookup::Hit(b) => panic!("expected a miss, got {b:?}"),
    }
}

/// A: BEGIN; invalidate row 1's tag. B: `get_many` misses, reads the old rows, `put_many` fills
/// both. A: COMMIT. The entry of row 1 is never served after the commit; row 2's is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_fill_overlapping_an_open_writer_transaction_does_not_survive_its_commit() {
    with_schemas(|schemas| async move {
        let store = schemas.store("matroska_batch_snap").await;
        let s = store.schema().quoted();
        let (t1, t2) = (tag(&Dep::id("article", 1)), tag(&Dep::id("article", 2)));
        let (k1, k2) = (key("article:1"), key("article:2"));

        let mut writer = connect(schemas.url()).await;
        let tx = writer.transaction().await.unwrap();
        tx.execute(&format!("SELECT {s}.invalidate($1)"), &[&vec![t1.as_str()]])
            .await
            .unwrap();

        let found = store.get_many(&[k1.clone(), k2.clone()]).await.unwrap();
        let (tags1, tags2) = ([t1], [t2]);
        let entries = [
            PutEntry {
                tags: &tags1,
                token: Some(token(&found[0])),
                ..PutEntry::new(&k1, bytes("old 1"))
            },
            PutEntry {
                tags: &tags2,
                token: Some(token(&found[1])),
                ..PutEntry::new(&k2, bytes("old 2"))
            },
        ];
        let outcomes = store.put_many(&entries).await.unwrap();
        // The stamp is not visible yet: both may store; row 1's must not be served after A.
        assert_eq!(outcomes, [PutOutcome::Stored, PutOutcome::Stored]);
        tx.commit().await.unwrap();
        assert_eq!(
            hit(&store, &k1).await,
            None,
            "served after the writer committed"
        );
        assert_eq!(hit(&store, &k2).await, Some(bytes("old 2")));
    })
    .await;
}

/// A token from another store is refused for its own entry; the batch's other entries store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_token_refuses_its_own_entry_only() {
    with_schemas(|schemas| async move {
        let store = schemas.store("matroska_batch_foreign").await;
        let (a, b) = (key("a"), key("b"));
        let foreign = FillToken::new(1, 2).with_snapshot("not ours");
        let entries = [
            PutEntry {
                token: Some(&foreign),
                ..PutEntry::new(&a, bytes("a"))
            },
            PutEntry::new(&b, bytes("b")),
        ];
        let outcomes = store.put_many(&entries).await.unwrap();
        assert_eq!(outcomes, [PutOutcome::Stale, PutOutcome::Stored]);
        assert_eq!(hit(&store, &a).await, None);
        assert_eq!(hit(&store, &b).await, Some(bytes("b")));
    })
    .await;
}

/// Tags are any text but NUL: the batch statement passes each entry's tags as an array literal,
/// which must read back as the very tags (stored, indexed, invalidated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_keeps_tags_with_quotes_backslashes_and_braces() {
    with_schemas(|schemas| async move {
        let store = schemas.store("matroska_batch_tags").await;
        let odd = Tag::parse(r#"g:a"b\c{,} d'"#).unwrap();
        let plain = tag(&Dep::id("article", 1));
        let (k1, k2) = (key("odd"), key("plain"));
        let (tags1, tags2) = ([odd.clone(), plain.clone()], [plain.clone()]);
        let entries = [
            PutEntry {
                tags: &tags1,
                ..PutEntry::new(&k1, bytes("1"))
            },
            PutEntry {
                tags: &tags2,
                ..PutEntry::new(&k2, bytes("2"))
            },
        ];
        let outcomes = store.put_many(&entries).await.unwrap();
        assert_eq!(outcomes, [PutOutcome::Stored, PutOutcome::Stored]);
        let s = store.schema().quoted();
        let stored: Vec<String> = schemas
            .admin()
            .query_one(
                &format!("SELECT tags FROM {s}.entries WHERE key = $1"),
                &[&k1.as_str()],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(stored, ["*", odd.as_str(), plain.as_str()]);
        assert_eq!(store.invalidate(&[odd]).await.unwrap(), 1);
        assert_eq!(hit(&store, &k1).await, None);
        assert_eq!(hit(&store, &k2).await, Some(bytes("2")));
    })
    .await;
}

/// A key twice in one batch: the entries go one by one, in order (the last put wins), as
/// `put` after `put` would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_key_goes_entry_by_entry_and_the_last_put_wins() {
    with_schemas(|schemas| async move {
        let store = schemas.store("matroska_batch_twice").await;
        let (k, other) = (key("k"), key("other"));
        let entries = [
            PutEntry::new(&k, bytes("first")),
            PutEntry::new(&other, bytes("other")),
            PutEntry::new(&k, bytes("second")),
        ];
        let outcomes = store.put_many(&entries).await.unwrap();
        assert_eq!(outcomes, [PutOutcome::Stored; 3]);
        assert_eq!(hit(&store, &k).await, Some(bytes("second")));
        assert_eq!(hit(&store, &other).await, Some(bytes("other")));
    })
    .await;
}

/// A batch held past the fill window (waiting to insert a new key that another transaction is
/// inserting) rolls back as a whole (nothing it wrote stays), then runs entry by entry: the fill
/// whose token is now too old is refused, the put without token is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_held_past_the_fill_window_goes_entry_by_entry() {
    with_schemas(|schemas| async move {
        let window = Duration::from_millis(300);
        let store = schemas
            .config("matroska_batch_slow")
            .fill_window(window)
            .build()
            .unwrap();
        store.migrate().await.unwrap();
        let (held, free) = (key("held"), key("free"));
        let token = miss(&store, &key("other")).await;
        let (mut locker, pid) = locker(schemas.url()).await;
        let lock = locker.transaction().await.unwrap();
        let insert = format!(
            "INSERT INTO {}.entries (key, value, tags, snap) \
             VALUES ($1, '\\x00', '{{*}}', pg_current_snapshot())",
            store.schema().quoted()
        );
        lock.execute(&insert, &[&held.as_str()]).await.unwrap();
        let batch = {
            let (store, held, free) = (store.clone(), held.clone(), free.clone());
            tokio::spawn(async move {
                let entries = [
                    PutEntry {
                        token: Some(&token),
                        ..PutEntry::new(&held, bytes("late"))
                    },
                    PutEntry::new(&free, bytes("free")),
                ];
                store.put_many(&entries).await
            })
        };
        let waiting = blocked_by(schemas.admin(), pid, 1).await;
        until_statement_older_than(schemas.admin(), waiting[0], window).await;
        lock.rollback().await.unwrap();
        let outcomes = batch.await.unwrap().unwrap();
        assert_eq!(outcomes, [PutOutcome::Stale, PutOutcome::Stored]);
        assert_eq!(hit(&store, &held).await, None);
        assert_eq!(hit(&store, &free).await, Some(bytes("free")));
    })
    .await;
}

/// A batch never waits for a stored entry that another transaction holds while it holds others:
/// it goes entry by entry at once. So a writer's transaction that holds one of the batch's
/// entries (its trigger invalidated it) and then takes another never waits for the batch, and
/// cannot deadlock with it; both entries end up stored, no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_never_waits_for_an_entry_while_holding_others() {
    with_schemas(|schemas| async move {
        let store = schemas.store("matroska_batch_nowait").await;
        let (k1, k2) = (key("k1"), key("k2"));
        for k in [&k1, &k2] {
            store.put(k, bytes("v0"), &[], None, None).await.unwrap();
        }
        let (mut locker, pid) = locker(schemas.url()).await;
        let lock = hold(&mut locker, &store, &k2).await;
        // Were the batch holding k1 while it waits for k2, taking k1 below would time out.
        lock.batch_execute("SET LOCAL lock_timeout = '500ms'")
            .await
            .unwrap();
        let batch = {
            let (store, k1, k2) = (store.clone(), k1.clone(), k2.clone());
            tokio::spawn(async move {
                let entries = [
                    PutEntry::new(&k1, bytes("1")),
                    PutEntry::new(&k2, bytes("2")),
                ];
                store.put_many(&entries).await
            })
        };
        // Entry by entry: the put of k1 is done, the put of k2 waits for the locker.
        blocked_by(schemas.admin(), pid, 1).await;
        let sql = format!(
            "SELECT FROM {}.entries WHERE key = $1 FOR UPDATE",
            store.schema().quoted()
        );
        lock.execute(&sql, &[&k1.as_str()]).await.unwrap();
        lock.rollback().await.unwrap();
        let outcomes = batch.await.unwrap().unwrap();
        assert_eq!(outcomes, [PutOutcome::Stored, PutOutcome::Stored]);
        assert_eq!(hit(&store, &k1).await, Some(bytes("1")));
        assert_eq!(hit(&store, &k2).await, Some(bytes("2")));
    })
    .await;
}
