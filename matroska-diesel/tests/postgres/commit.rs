//! After the commit, and only then: rollbacks, panics, nesting, a dropped caller.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection as _, TransactionManager};
use diesel::prelude::*;
use futures::FutureExt as _;
use matroska_diesel::{CacheModel as _, Error, transaction};

use crate::support::schema::articles;
use crate::support::{Article, Backend, Fixture, NewArticle, Pid, list_key};

/// Ends this connection's server process from another connection, and waits until it has
/// exited: the next statement on `conn` (the COMMIT) fails, as when the connection is lost
/// during COMMIT, and the client cannot know whether the transaction committed.
fn lose_the_connection(conn: &mut PgConnection, other: &mut PgConnection) {
    let pid = diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result::<Pid>(conn)
        .expect("pid")
        .pid;
    let terminated: bool = diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
        "pg_terminate_backend({pid}, 30000)"
    )))
    .get_result(other)
    .expect("terminate");
    assert!(terminated, "the backend exited");
}

over_every_store!(
    rollback_drops_invalidations,
    commit_applies_invalidations_and_not_before,
    errors_and_panics_leave_nothing_for_the_next_user_of_a_pooled_connection,
    a_dropped_caller_still_gets_its_commit_invalidated,
    a_commit_with_an_unknown_outcome_through_the_pool_still_invalidates,
    a_commit_with_an_unknown_outcome_hands_its_invalidations_back,
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

/// Review M5 / issue defect 10: the connection is lost during COMMIT. The transaction may have
/// committed, so its invalidations are applied anyway (invalidating when in doubt is always
/// safe), and the caller gets the COMMIT's error.
async fn a_commit_with_an_unknown_outcome_through_the_pool_still_invalidates(backend: Backend) {
    let Some(f) = Fixture::new(backend, 2).await else {
        return;
    };
    let article = f.insert(1, "tech", true).await;
    f.cache_list("tech", true).await;
    let id = article.id;
    let connect = f.connect();
    let outcome: Result<(), Error> =
        f.db.transaction(move |tx| {
            tx.update_by_id::<Article, _, _, _>(
                articles::table,
                id,
                articles::published.eq(false),
            )?;
            lose_the_connection(tx.conn(), &mut connect());
            Ok(())
        })
        .await;
    let err = outcome.expect_err("the COMMIT cannot succeed on a lost connection");
    assert!(
        !f.cached(&list_key("tech", true)).await,
        "the list the transaction may have changed is still cached after a COMMIT with an \
         unknown outcome ({err})"
    );
    assert!(
        matches!(&err, Error::CommitFailed { invalidations, .. } if invalidations.is_empty()),
        "the COMMIT's error, its invalidations applied: {err:?}"
    );
}

/// The same without a pool: [`transaction`] cannot apply them, so it hands them back in
/// [`Error::CommitFailed`].
async fn a_commit_with_an_unknown_outcome_hands_its_invalidations_back(backend: Backend) {
    let Some(f) = Fixture::new(backend, 2).await else {
        return;
    };
    let article = f.insert(1, "tech", true).await;
    f.cache_list("tech", true).await;
    let id = article.id;
    let connect = f.connect();
    let err = tokio::task::spawn_blocking(move || {
        let mut conn = connect();
        transaction(&mut conn, |tx| {
            tx.update_by_id::<Article, _, _, _>(
                articles::table,
                id,
                articles::published.eq(false),
            )?;
            lose_the_connection(tx.conn(), &mut connect());
            Ok::<_, Error>(())
        })
        .expect_err("the COMMIT cannot succeed on a lost connection")
    })
    .await
    .expect("join");
    let Error::CommitFailed {
        source,
        invalidations,
    } = err
    else {
        panic!("a failed COMMIT hands its invalidations back, not {err:?}");
    };
    assert!(
        matches!(
            source,
            diesel::result::Error::DatabaseError(..)
                | diesel::result::Error::RollbackErrorOnCommit { .. }
        ),
        "the COMMIT's own error: {source:?}"
    );
    assert!(
        invalidations.deps().contains(&Article::dep_for_id(id)),
        "{invalidations:?}"
    );
    assert!(
        f.cached(&list_key("tech", true)).await,
        "nothing is applied behind the caller's back"
    );
    invalidations.apply(f.cache()).await.expect("invalidate");
    assert!(!f.cached(&list_key("tech", true)).await);
}
