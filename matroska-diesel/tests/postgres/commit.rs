//! After the commit, and only then: rollbacks, panics, nesting, a dropped caller.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection as _, TransactionManager};
use diesel::prelude::*;
use futures::FutureExt as _;
use matroska_diesel::{Error, transaction};

use crate::support::schema::articles;
use crate::support::{Article, Backend, Fixture, NewArticle, list_key};

over_every_store!(
    rollback_drops_invalidations,
    commit_applies_invalidations_and_not_before,
    errors_and_panics_leave_nothing_for_the_next_user_of_a_pooled_connection,
    a_dropped_caller_still_gets_its_commit_invalidated,
);

async fn rollback_drops_invalidations(backend: Backend) {
    let Some(f) = Fixture::new(backend, 2).await else {
        return;
    };
    f.cache_list("news", true).await;
    let outcome: Result<(), Error> =
        f.db.transaction(|tx| {
            let new = NewArticle {
                author_id: 1,
                category: "news",
                published: true,
                title: "never",
            };
            tx.insert::<Article, _, _>(articles::table, &new)?;
            assert!(!tx.pending().is_empty());
            Err(diesel::result::Error::RollbackTransaction.into())
        })
        .await;
    assert!(outcome.is_err());
    assert!(
        f.cached(&list_key("news", true)).await,
        "nothing was invalidated"
    );
    assert!(f.rows().await.is_empty(), "nothing was written");
    assert_eq!(f.cache().stats().invalidations, 0);
}

async fn commit_applies_invalidations_and_not_before(backend: Backend) {
    let Some(f) = Fixture::new(backend, 2).await else {
        return;
    };
    let article = f.insert(1, "tech", true).await;
    f.cache_list("tech", true).await;
    let cache = f.cache().clone();
    let id = article.id;
    f.db.transaction(move |tx| {
        tx.update_by_id::<Article, _, _, _>(articles::table, id, articles::published.eq(false))?;
        // Written, not committed: the cache is untouched (a reader may still refill it from the
        // committed state; the invalidation after the commit removes that too).
        let handle = tokio::runtime::Handle::current();
        let cached = handle.block_on(cache.has(list_key("tech", true)));
        assert!(cached.expect("has"), "invalidated before the commit");
        Ok::<_, Error>(())
    })
    .await
    .expect("transaction");
    assert!(
        !f.cached(&list_key("tech", true)).await,
        "invalidated after the commit"
    );
    assert_eq!(
        f.cache().stats().invalidations,
        2,
        "the insert's and the update's"
    );
}

async fn errors_and_panics_leave_nothing_for_the_next_user_of_a_pooled_connection(
    backend: Backend,
) {
    // One connection: every transaction below gets the same one back (unless r2d2 discarded it).
    let Some(f) = Fixture::new(backend, 1).await else {
        return;
    };
    f.cache_list("news", true).await;
    let write = |tx: &mut matroska_diesel::Tx<'_>| {
        let new = NewArticle {
            author_id: 1,
            category: "news",
            published: true,
            title: "x",
        };
        tx.insert::<Article, _, _>(articles::table, &new)
    };

    let failed: Result<(), Error> =
        f.db.transaction(move |tx| {
            write(tx)?;
            Err(diesel::result::Error::RollbackTransaction.into())
        })
        .await;
    assert!(failed.is_err());

    let panicked = AssertUnwindSafe(f.db.transaction(move |tx| -> Result<(), Error> {
        write(tx)?;
        panic!("boom");
    }))
    .catch_unwind()
    .await;
    assert!(panicked.is_err(), "the panic resumes in the caller");

    // The next user: a clean connection, an empty buffer, and nothing was invalidated.
    let (dirty, depth) =
        f.db.transaction(|tx| {
            let depth = AnsiTransactionManager::transaction_manager_status_mut(tx.conn())
                .transaction_depth()?
                .map(std::num::NonZeroU32::get);
            Ok::<_, Error>((tx.is_dirty() || !tx.pending().is_empty(), depth))
        })
        .await
        .expect("transaction");
    assert!(!dirty);
    assert_eq!(depth, Some(1), "only this transaction is open");
    assert!(f.cached(&list_key("news", true)).await);
    assert_eq!(f.cache().stats().invalidations, 0);
    assert!(f.rows().await.is_empty());

    // Without a pool: a caught panic leaves the connection outside any transaction.
    let url = f.url.clone();
    let schema = f.schema.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&url).expect("connect");
        conn.batch_execute(&format!("SET search_path TO {schema}"))
            .expect("search_path");
        let caught = std::panic::catch_unwind(AssertUnwindSafe(|| {
            transaction(&mut conn, |tx| -> Result<(), Error> {
                write(tx)?;
                tx.savepoint(|_| -> Result<(), Error> { panic!("deeper") })
            })
        }));
        assert!(caught.is_err());
        let depth = AnsiTransactionManager::transaction_manager_status_mut(&mut conn)
            .transaction_depth()
            .expect("valid");
        assert_eq!(depth, None);
        let count: i64 = articles::table
            .count()
            .get_result(&mut conn)
            .expect("count");
        assert_eq!(count, 0);
    })
    .await
    .expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_level_transaction_inside_another_is_refused() {
    let Some(f) = Fixture::new(Backend::Memory, 1).await else {
        return;
    };
    let refused =
        f.db.run(|conn| {
            conn.transaction(|conn| {
                let inner = transaction(conn, |_| Ok::<_, Error>(()));
                Ok::<_, Error>(matches!(
                    inner,
                    Err(Error::Database(diesel::result::Error::AlreadyInTransaction))
                ))
            })
        })
        .await
        .expect("run");
    assert!(
        refused,
        "its invalidations could not wait for the real commit"
    );
}

async fn a_dropped_caller_still_gets_its_commit_invalidated(backend: Backend) {
    let Some(f) = Fixture::new(backend, 2).await else {
        return;
    };
    let article = f.insert(1, "tech", true).await;
    f.cache_list("tech", true).await;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let db = f.db.clone();
    let id = article.id;
    let caller = tokio::spawn(async move {
        db.transaction(move |tx| {
            let _ = started_tx.send(());
            go_rx
                .recv()
                .map_err(|_| diesel::result::Error::RollbackTransaction)?;
            tx.update_by_id::<Article, _, _, _>(articles::table, id, articles::published.eq(false))
        })
        .await
    });
    started_rx.await.expect("the transaction started");
    caller.abort();
    assert!(caller.await.expect_err("aborted").is_cancelled());
    go_tx.send(()).expect("release the transaction");
    matroska_testkit::support::eventually(
        Duration::from_secs(10),
        "the commit is invalidated",
        || {
            let cache = f.cache().clone();
            async move { !cache.has(list_key("tech", true)).await.expect("has") }
        },
    )
    .await;
    assert!(f.cache_list("tech", true).await.is_empty());
}
