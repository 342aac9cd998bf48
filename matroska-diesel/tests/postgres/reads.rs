//! Reads inside a transaction: what `Tx::fetch` may take from, and put in, the shared cache.

use diesel::prelude::*;
use matroska_diesel::{CacheModel as _, Error, transaction};

use crate::support::schema::articles;
use crate::support::{Article, Backend, Fixture, page_key};

over_every_store!(reads_in_a_dirty_transaction_neither_use_nor_fill_the_cache,);

async fn reads_in_a_dirty_transaction_neither_use_nor_fill_the_cache(backend: Backend) {
    let Some(f) = Fixture::new(backend, 2).await else {
        return;
    };
    let article = f.insert(1, "news", true).await;
    f.cache_page(&article).await;
    let (pool, cache) = (f.db.pool().clone(), f.cache().clone());
    let id = article.id;
    let load = move |conn: &mut PgConnection| {
        articles::table
            .find(id)
            .select(Article::as_select())
            .first::<Article>(conn)
    };
    tokio::task::spawn_blocking(move || {
        let mut conn = pool.get().expect("conn");
        let outcome: Result<((), _), Error> = transaction(&mut conn, |tx| {
            // Clean: a hit.
            let read = tx.fetch(&cache, page_key(id), [], load)?;
            assert_eq!(read.title, "t");
            tx.update_by_id::<Article, _, _, _>(articles::table, id, articles::title.eq("draft"))?;
            // Dirty: the database (this transaction's own write), not the cache.
            let read = tx.fetch(&cache, page_key(id), [], load)?;
            assert_eq!(read.title, "draft");
            let missing = tx.fetch(&cache, "uncached", [Article::dep_for_id(id)], load)?;
            assert_eq!(missing.title, "draft");
            Err(diesel::result::Error::RollbackTransaction.into())
        });
        assert!(outcome.is_err());
        let handle = tokio::runtime::Handle::current();
        let cached: Option<Article> = handle.block_on(cache.get(page_key(id))).expect("get");
        assert_eq!(
            cached.map(|a| a.title).as_deref(),
            Some("t"),
            "never filled with the draft"
        );
        assert!(!handle.block_on(cache.has("uncached")).expect("has"));
    })
    .await
    .expect("join");
}
