//! The write helpers: what each insert, update and delete invalidates.

use std::time::Duration;

use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use matroska_diesel::{CacheModel, Dep, Error, transaction};
use serde::{Deserialize, Serialize};

use crate::support::schema::{articles, authors};
use crate::support::{
    Article, ArticleChanges, Backend, Count, Fixture, NewArticle, Pid, list_key, page_key, scope,
};

over_every_store!(
    insert_entering_a_cached_scope_invalidates_it,
    update_moving_between_scopes_invalidates_both,
    update_of_an_unwatched_column_leaves_scopes_cached,
    delete_invalidates_the_row_and_its_scopes,
    bulk_update_by_filter_invalidates_every_affected_rows_old_and_new_scopes,
    savepoint_rollback_drops_only_its_part,
    bulk_update_runs_again_when_a_row_enters_its_filter_concurrently,
);

async fn insert_entering_a_cached_scope_invalidates_it(backend: Backend) {
    let Some(f) = Fixture::new(backend, 2).await else {
        return;
    };
    assert!(f.cache_list("news", true).await.is_empty());
    f.cache_list("tech", true).await;
    f.cache_list("news", false).await;

    let article = f.insert(1, "news", true).await;

    assert!(
        !f.cached(&list_key("news", true)).await,
        "the list it entered"
    );
    assert!(f.cached(&list_key("tech", true)).await, "another category");
    assert!(
        f.cached(&list_key("news", false)).await,
        "another published flag"
    );
    assert_eq!(f.cache_list("news", true).await, [article]);
}

async fn update_moving_between_scopes_invalidates_both(backend: Backend) {
    let Some(f) = Fixture::new(backend, 2).await else {
        return;
    };
    let moving = f.insert(1, "tech", true).await;
    f.insert(2, "sports", true).await;
    for category in ["tech", "news", "sports"] {
        f.cache_list(category, true).await;
    }
    f.cache_page(&moving).await;
    // Holds no row: only the scope the row leaves can invalidate it.
    f.cache_scope_only("count:tech", &scope("tech", true)).await;

    let id = moving.id;
    let moved =
        f.db.transaction(move |tx| {
            tx.update_by_id::<Article, _, _, _>(articles::table, id, articles::category.eq("news"))
        })
        .await
        .expect("update")
        .expect("the row exists");

    assert_eq!(moved.category, "news");
    assert!(
        !f.cached(&list_key("tech", true)).await,
        "a list holding the row"
    );
    assert!(!f.cached("count:tech").await, "the scope it left");
    assert!(
        !f.cached(&list_key("news", true)).await,
        "the scope it entered"
    );
    assert!(!f.cached(&page_key(id)).await, "the row itself");
    assert!(
        f.cached(&list_key("sports", true)).await,
        "an unrelated scope"
    );
    assert!(f.cache_list("tech", true).await.is_empty());
    assert_eq!(f.cache_list("news", true).await, [moved]);
}

async fn update_of_an_unwatched_column_leaves_scopes_cached(backend: Backend) {
    let Some(f) = Fixture::new(backend, 2).await else {
        return;
    };
    let article = f.insert(1, "news", true).await;
    let other = f.insert(1, "news", true).await;
    f.cache_list("news", true).await;
    f.cache_page(&article).await;
    f.cache_page(&other).await;
    f.cache_scope_only("count:news", &scope("news", true)).await;
    f.cache_scope_only("count:author1", Article::scope_author_id(1).dep())
        .await;

    // The edit form sets the title only (`category: None` is left out of the UPDATE).
    let changes = ArticleChanges {
        title: Some("Renamed".into()),
        category: None,
    };
    let id = article.id;
    let pool = f.db.pool().clone();
    let (renamed, invalidations) = tokio::task::spawn_blocking(move || {
        let mut conn = pool.get().expect("conn");
        transaction(&mut conn, |tx| {
            tx.update_by_id::<Article, _, _, _>(articles::table, id, &changes)
        })
    })
    .await
    .expect("join")
    .expect("update");
    assert_eq!(renamed.map(|a| a.title).as_deref(), Some("Renamed"));
    // The row, and the kind-wide dependency; no scope.
    assert_eq!(
        invalidations.deps(),
        [Article::dep_for_id(id), Article::cache_scopes().any()]
    );
    invalidations.apply(f.cache()).await.expect("invalidate");

    assert!(!f.cached(&page_key(id)).await, "the row");
    assert!(
        !f.cached(&list_key("news", true)).await,
        "a list holding the row"
    );
    assert!(f.cached("count:news").await, "its scope");
    assert!(f.cached("count:author1").await, "its other scope");
    assert!(f.cached(&page_key(other.id)).await, "another row");
}

async fn delete_invalidates_the_row_and_its_scopes(backend: Backend) {
    let Some(f) = Fixture::new(backend, 2).await else {
        return;
    };
    let article = f.insert(2, "news", true).await;
    f.cache_page(&article).await;
    f.cache_scope_only("count:news", &scope("news", true)).await;
    f.cache_scope_only("count:author2", Article::scope_author_id(2).dep())
        .await;
    f.cache_scope_only("count:tech", &scope("tech", true)).await;

    let id = article.id;
    let deleted =
        f.db.transaction(move |tx| tx.delete_by_id::<Article, _, _>(articles::table, id))
            .await
            .expect("delete");

    assert_eq!(deleted, Some(article));
    assert!(!f.cached(&page_key(id)).await);
    assert!(!f.cached("count:news").await);
    assert!(!f.cached("count:author2").await);
    assert!(f.cached("count:tech").await);
    assert!(f.rows().await.is_empty());
}

async fn bulk_update_by_filter_invalidates_every_affected_rows_old_and_new_scopes(
    backend: Backend,
) {
    let Some(f) = Fixture::new(backend, 2).await else {
        return;
    };
    f.insert(1, "tech", true).await;
    f.insert(2, "tech", true).await;
    f.insert(2, "tech", false).await;
    let untouched = f.insert(1, "news", true).await;
    for (category, published) in [
        ("tech", true),
        ("tech", false),
        ("news", true),
        ("news", false),
        ("sports", true),
    ] {
        f.cache_scope_only(&list_key(category, published), &scope(category, published))
            .await;
    }
    f.cache_scope_only("count:author1", Article::scope_author_id(1).dep())
        .await;
    f.cache_page(&untouched).await;

    // Every "tech" article moves to "news".
    let moved =
        f.db.transaction(|tx| {
            let target = articles::table.filter(articles::category.eq("tech"));
            tx.update::<Article, _, _>(target, articles::category.eq("news"))
        })
        .await
        .expect("bulk update");

    assert_eq!(moved.len(), 3);
    for (category, published) in [
        ("tech", true),
        ("tech", false),
        ("news", true),
        ("news", false),
    ] {
        assert!(
            !f.cached(&list_key(category, published)).await,
            "{category}/{published}"
        );
    }
    assert!(f.cached(&list_key("sports", true)).await);
    assert!(
        f.cached("count:author1").await,
        "author_id was not modified"
    );
    assert!(
        f.cached(&page_key(untouched.id)).await,
        "a row the filter missed"
    );

    // Unpublish every "news" article: both fields of the scope, every row's old and new scope.
    f.cache_scope_only("count:author1", Article::scope_author_id(1).dep())
        .await;
    f.cache_scope_only("news/true", &scope("news", true)).await;
    f.cache_scope_only("news/false", &scope("news", false))
        .await;
    let unpublished =
        f.db.transaction(|tx| {
            let target = articles::table.filter(articles::category.eq("news"));
            tx.update::<Article, _, _>(target, articles::published.eq(false))
        })
        .await
        .expect("bulk update");
    assert_eq!(unpublished.len(), 4);
    assert!(!f.cached("news/true").await);
    assert!(!f.cached("news/false").await);
    assert!(f.cached("count:author1").await);
    assert!(f.rows().await.iter().all(|a| !a.published));
}

async fn savepoint_rollback_drops_only_its_part(backend: Backend) {
    let Some(f) = Fixture::new(backend, 2).await else {
        return;
    };
    let moving = f.insert(1, "tech", true).await;
    for category in ["tech", "news", "sports"] {
        f.cache_list(category, true).await;
    }
    let id = moving.id;
    f.db.transaction(move |tx| {
        tx.update_by_id::<Article, _, _, _>(articles::table, id, articles::category.eq("news"))?;
        let failed: Result<Article, Error> = tx.savepoint(|sp| {
            let new = NewArticle {
                author_id: 2,
                category: "sports",
                published: true,
                title: "rolled back",
            };
            sp.insert::<Article, _, _>(articles::table, &new)?;
            assert!(sp.pending().contains(&scope("sports", true)));
            Err(diesel::result::Error::RollbackTransaction.into())
        });
        assert!(failed.is_err());
        assert!(!tx.pending().contains(&scope("sports", true)));
        // A savepoint that is released keeps its part.
        tx.savepoint(|sp| {
            sp.update_by_id::<Article, _, _, _>(articles::table, id, articles::title.eq("kept"))
        })?;
        Ok::<_, Error>(())
    })
    .await
    .expect("transaction");

    assert!(!f.cached(&list_key("tech", true)).await);
    assert!(!f.cached(&list_key("news", true)).await);
    assert!(
        f.cached(&list_key("sports", true)).await,
        "the rolled-back insert's scope"
    );
    let rows = f.rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].category.as_str(), rows[0].title.as_str()),
        ("news", "kept")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authors_join_deps_cover_both_sides() {
    #[derive(Debug, Queryable, Selectable, Identifiable, CacheModel, Serialize, Deserialize)]
    #[diesel(table_name = authors)]
    #[matroska(kind = "author")]
    struct Author {
        id: i64,
        name: String,
    }

    let Some(f) = Fixture::new(Backend::Memory, 2).await else {
        return;
    };
    f.insert(1, "news", true).await;
    f.insert(2, "news", true).await;
    let rows: Vec<(Article, Author)> =
        f.db.run(|conn| {
            articles::table
                .inner_join(authors::table)
                .order(articles::id)
                .select((Article::as_select(), Author::as_select()))
                .load(conn)
                .map_err(Error::from)
        })
        .await
        .expect("join");
    let deps = matroska_diesel::CacheDeps::cache_deps(&rows);
    assert_eq!(deps.len(), 4, "{deps:?}");
    assert!(deps.contains(&Dep::id("author", 2)));
    assert_eq!(rows[1].1.name, "Grace");
}

/// A row enters the filter of a bulk update between its locked read and its update (another
/// transaction commits in between): its old image is unknown, so the update rolls back its
/// savepoint and runs again; the row's old scope (as the update found it) is invalidated.
async fn bulk_update_runs_again_when_a_row_enters_its_filter_concurrently(backend: Backend) {
    let Some(f) = Fixture::new(backend, 2).await else {
        return;
    };
    let locked = f.insert(1, "tech", true).await;
    let entering = f.insert(2, "news", true).await;
    // Only the entering row's old image has author 2.
    f.cache_scope_only("author2", Article::scope_author_id(2).dep())
        .await;
    let connect = f.connect();

    // B holds a lock on the "tech" row, so that the bulk update's locked read waits for it.
    let (b_pid_tx, b_pid_rx) = std::sync::mpsc::channel();
    let (commit_tx, commit_rx) = std::sync::mpsc::channel::<()>();
    let b = std::thread::spawn({
        let connect = connect.clone();
        move || {
            let mut conn = connect();
            conn.batch_execute(&format!(
                "BEGIN; UPDATE articles SET title = 'b' WHERE id = {}",
                locked.id
            ))
            .expect("B locks the row");
            let pid = diesel::sql_query("SELECT pg_backend_pid() AS pid")
                .get_result::<Pid>(&mut conn)
                .expect("pid")
                .pid;
            b_pid_tx.send(pid).expect("send");
            commit_rx.recv().expect("commit signal");
            conn.batch_execute("COMMIT").expect("B commits");
        }
    });
    let b_pid = tokio::task::spawn_blocking(move || b_pid_rx.recv().expect("B's pid"))
        .await
        .expect("join");

    let db = f.db.clone();
    let update = tokio::spawn(async move {
        db.transaction(|tx| {
            let target = articles::table.filter(articles::category.eq("tech"));
            tx.update::<Article, _, _>(target, articles::author_id.eq(3))
        })
        .await
    });

    // The update's locked read waits for B.
    let mut probe = connect();
    matroska_testkit::support::eventually(Duration::from_secs(20), "the locked read waits", || {
        let blocked = diesel::sql_query(format!(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE {b_pid} = ANY(pg_blocking_pids(pid))"
        ))
        .get_result::<Count>(&mut probe)
        .expect("probe")
        .n;
        async move { blocked > 0 }
    })
    .await;
    // C moves the "news" row into the filter and commits; then B commits.
    let id = entering.id;
    tokio::task::spawn_blocking(move || {
        connect()
            .batch_execute(&format!(
                "UPDATE articles SET category = 'tech' WHERE id = {id}"
            ))
            .expect("C commits");
    })
    .await
    .expect("join");
    commit_tx.send(()).expect("release B");
    tokio::task::spawn_blocking(move || b.join().expect("B"))
        .await
        .expect("join");

    let updated = update.await.expect("join").expect("the update");
    assert_eq!(
        updated.len(),
        2,
        "both rows: the locked one and the one that entered"
    );
    assert!(
        !f.cached("author2").await,
        "the entering row's old scope was invalidated"
    );
}
