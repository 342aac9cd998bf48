//! Semantics with stores: the PgStore invalidated in the writer's transaction, a MemoryStore
//! through NOTIFY and the Listener.

use std::collections::BTreeSet;

use matroska_core::store::{Lookup, PutOutcome, Store};
use matroska_core::{Bytes, Cache, Dep, Loaded, MemoryStore};
use matroska_pg_capture::listener::{Operation, TagBatch};

use super::capture_support::{Env, RawListener, connect, tags_of, url};
use super::{
    Article, applied, applying_to, article, articles_capture, cond, create_articles, hit, install,
    key, put_tags, scopes, tag_set,
};

/// A row moving from one scope to another invalidates both: in the PgStore inside the writer's
/// transaction (visible the moment COMMIT returns), and in a MemoryStore through NOTIFY and the
/// Listener. Other scopes and rows stay cached.
#[tokio::test]
async fn a_row_moving_between_scopes_invalidates_both() {
    let Some(url) = url() else { return };
    let mut env = Env::new(&url, "cap_move").await;
    create_articles(
        &env,
        &[
            article(1, "tech", true),
            article(2, "sports", true),
            article(3, "news", true),
        ],
    )
    .await;
    let store = env.store().await;
    install(
        &env,
        &[articles_capture(&env)
            .store_schema(store.schema().as_str())
            .unwrap()],
    )
    .await;
    let memory = MemoryStore::new();
    let (listener, _applier, mut applied_rx) = applying_to(&url, &env.channel, &memory).await;

    let cache = Cache::new(store.clone());
    for (key, category) in [("news", "news"), ("tech", "tech"), ("sports", "sports")] {
        let dep = cond(category, true);
        let _: String = cache
            .get_or_insert_with(key, || async move {
                Ok::<_, std::io::Error>(Loaded::new(key.to_owned()).dep(dep))
            })
            .await
            .unwrap();
        put_tags(&memory, key, &[cond(category, true)]).await;
    }
    let _: String = cache
        .get_or_insert_with("article:3", || async {
            Ok::<_, std::io::Error>(Loaded::new("3".to_owned()).dep(Dep::id("article", 3)))
        })
        .await
        .unwrap();

    let writer = connect(&url).await;
    writer
        .execute(
            &format!(
                "UPDATE {} SET category = 'news' WHERE id = 1",
                env.table("articles")
            ),
            &[],
        )
        .await
        .unwrap();
    // In-transaction: the PgStore is already invalidated when COMMIT returns.
    assert!(!hit(&store, "news").await, "the scope entered");
    assert!(!hit(&store, "tech").await, "the scope left");
    assert!(hit(&store, "sports").await);
    assert!(hit(&store, "article:3").await);
    // Through NOTIFY.
    applied(&mut applied_rx, "i:article:1").await;
    assert!(!hit(&memory, "news").await);
    assert!(!hit(&memory, "tech").await);
    assert!(hit(&memory, "sports").await);
    listener.shutdown().await;
    store.close();
    env.finish().await;
}

/// An UPDATE of a column no scope watches touches only the row's id (and `k:<kind>`).
#[tokio::test]
async fn an_unwatched_update_touches_only_the_id() {
    let Some(url) = url() else { return };
    let env = Env::new(&url, "cap_unw").await;
    create_articles(&env, &[article(1, "news", true)]).await;
    install(&env, &[articles_capture(&env)]).await;
    let mut listener = RawListener::start(&url, &env.channel).await;
    let writer = connect(&url).await;
    writer
        .execute(
            &format!(
                "UPDATE {} SET title = 'new' WHERE id = 1",
                env.table("articles")
            ),
            &[],
        )
        .await
        .unwrap();
    let sent = listener.tags(&writer, &env.channel).await;
    assert_eq!(
        sent,
        BTreeSet::from(["i:article:1".to_owned(), "k:article".to_owned()])
    );
    let old = article(1, "news", true);
    let new = Article {
        title: "new".into(),
        ..old.clone()
    };
    assert_eq!(
        sent,
        tag_set(&scopes().invalidate_for(Some(&old), Some(&new), Some(&["title"])))
    );
    env.finish().await;
}

/// An UPDATE that changes a row's id counts as a delete of the old row and an insert of the new
/// one (every scope of both), whether one row or several move, and rows whose id is unchanged in
/// the same statement still pair.
#[tokio::test]
async fn an_update_changing_the_id_is_a_delete_and_an_insert() {
    let Some(url) = url() else { return };
    let env = Env::new(&url, "cap_idc").await;
    let rows = [
        article(1, "news", true),
        article(2, "sport", false),
        article(3, "news", true),
    ];
    create_articles(&env, &rows).await;
    install(&env, &[articles_capture(&env)]).await;
    let mut listener = RawListener::start(&url, &env.channel).await;
    let writer = connect(&url).await;
    let table = env.table("articles");
    writer
        .execute(
            &format!(
                "UPDATE {table} SET id = id + 100, title = 'moved'
                 WHERE id IN (1, 2) OR (id = 3 AND false)"
            ),
            &[],
        )
        .await
        .unwrap();
    let sent = listener.tags(&writer, &env.channel).await;
    let scopes = scopes();
    let mut expected = BTreeSet::new();
    for old in &rows[..2] {
        let new = Article {
            id: old.id + 100,
            title: "moved".into(),
            ..old.clone()
        };
        expected.extend(tag_set(&scopes.invalidate_for(Some(old), None, None)));
        expected.extend(tag_set(&scopes.invalidate_for(None, Some(&new), None)));
    }
    assert_eq!(sent, expected);
    assert!(sent.contains("i:article:1") && sent.contains("i:article:102"));

    // Paired and unpaired rows in one statement: #3 keeps its id (only its title changes),
    // #101 moves back to 1.
    writer
        .execute(
            &format!(
                "UPDATE {table} SET id = CASE WHEN id = 101 THEN 1 ELSE id END, title = 'again'
                 WHERE id IN (3, 101)"
            ),
            &[],
        )
        .await
        .unwrap();
    let sent = listener.tags(&writer, &env.channel).await;
    let moved_old = Article {
        id: 101,
        title: "moved".into(),
        ..rows[0].clone()
    };
    let moved_new = Article {
        id: 1,
        title: "again".into(),
        ..rows[0].clone()
    };
    let mut expected = tag_set(&scopes.invalidate_for(Some(&moved_old), None, None));
    expected.extend(tag_set(&scopes.invalidate_for(
        None,
        Some(&moved_new),
        None,
    )));
    expected.insert("i:article:3".to_owned());
    assert_eq!(sent, expected);
    env.finish().await;
}

/// A rolled-back transaction sends nothing and invalidates nothing; a rolled-back savepoint
/// neither sends its tags nor keeps them from being sent again later in the transaction; two
/// statements of one transaction send a tag once.
#[tokio::test]
async fn rollback_changes_nothing_and_sends_nothing() {
    let Some(url) = url() else { return };
    let mut env = Env::new(&url, "cap_rb").await;
    create_articles(
        &env,
        &(1..=6)
            .map(|i| article(i, "news", true))
            .collect::<Vec<_>>(),
    )
    .await;
    let store = env.store().await;
    install(
        &env,
        &[articles_capture(&env)
            .store_schema(store.schema().as_str())
            .unwrap()],
    )
    .await;
    let cache = Cache::new(store.clone());
    let _: String = cache
        .get_or_insert_with("article:1", || async {
            Ok::<_, std::io::Error>(Loaded::new("1".to_owned()).dep(Dep::id("article", 1)))
        })
        .await
        .unwrap();
    let mut listener = RawListener::start(&url, &env.channel).await;
    let mut writer = connect(&url).await;
    let table = env.table("articles");

    let tx = writer.transaction().await.unwrap();
    tx.execute(
        &format!("UPDATE {table} SET category = 'x' WHERE id = 1"),
        &[],
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    assert!(
        listener
            .until_marker(&writer, &env.channel)
            .await
            .is_empty()
    );
    assert!(
        hit(&store, "article:1").await,
        "a rollback invalidates nothing"
    );

    // Savepoints: id 2 kept, id 3 rolled back; id 4 rolled back then written again.
    writer
        .batch_execute(&format!(
            "BEGIN;
             UPDATE {table} SET title = 'a' WHERE id = 2;
             SAVEPOINT s1;
             UPDATE {table} SET title = 'a' WHERE id = 3;
             ROLLBACK TO SAVEPOINT s1;
             SAVEPOINT s2;
             UPDATE {table} SET title = 'a' WHERE id = 4;
             ROLLBACK TO SAVEPOINT s2;
             UPDATE {table} SET title = 'b' WHERE id = 4;
             UPDATE {table} SET title = 'c' WHERE id IN (2, 4);
             COMMIT;"
        ))
        .await
        .unwrap();
    let payloads = listener.until_marker(&writer, &env.channel).await;
    let sent = tags_of(&payloads);
    assert_eq!(
        sent,
        BTreeSet::from([
            "i:article:2".to_owned(),
            "i:article:4".to_owned(),
            "k:article".to_owned()
        ])
    );
    // Every statement that committed is an event; the third one's tags were all sent already,
    // so its event has none.
    assert_eq!(payloads.len(), 3, "{payloads:?}");
    let last = TagBatch::parse(&payloads[2], 0).unwrap();
    assert!(last.tags().is_empty(), "{payloads:?}");
    assert_eq!(last.operation(), Some(Operation::Update));
    assert!(hit(&store, "article:1").await);
    store.close();
    env.finish().await;
}

/// The race the in-transaction invalidation must win, step by step on two sessions: the writer
/// updates (its trigger stamps the PgStore inside its open transaction); the reader misses,
/// loads the OLD row on another connection, and puts it with its fill token; the writer commits:
/// the reader's entry is never served afterwards. With a rollback instead, nothing is
/// invalidated. And the same through `Cache::get_or_insert_with`.
#[tokio::test]
async fn a_fill_overlapping_the_writers_transaction_is_not_served_after_commit() {
    let Some(url) = url() else { return };
    let mut env = Env::new(&url, "cap_race").await;
    create_articles(&env, &[article(1, "news", true), article(2, "news", true)]).await;
    let store = env.store().await;
    install(
        &env,
        &[articles_capture(&env)
            .store_schema(store.schema().as_str())
            .unwrap()
            .notify(false)],
    )
    .await;
    let table = env.table("articles");
    let mut writer = connect(&url).await;
    let loader = connect(&url).await;
    let read_title = |id: i64| {
        let loader = &loader;
        let sql = format!("SELECT title FROM {table} WHERE id = $1");
        async move {
            let title: String = loader.query_one(&sql, &[&id]).await.unwrap().get(0);
            title
        }
    };
    let tags = |id: i64| {
        vec![
            Dep::id("article", id).to_tag().unwrap(),
            Dep::kind("article").to_tag().unwrap(),
        ]
    };

    for commit in [true, false] {
        let k = key(&format!("title:1:{commit}"));
        // 1. The writer updates; the trigger runs inside its transaction.
        let tx = writer.transaction().await.unwrap();
        tx.execute(
            &format!("UPDATE {table} SET title = $1 WHERE id = 1"),
            &[&format!("new {commit}")],
        )
        .await
        .unwrap();
        // 2. The reader misses, loads the old row, puts it with its token.
        let Lookup::Miss(token) = store.get(&k).await.unwrap() else {
            panic!("expected a miss")
        };
        let old = read_title(1).await;
        assert_ne!(old, format!("new {commit}"), "the writer has not committed");
        let outcome = store
            .put(&k, Bytes::from(old.clone()), &tags(1), None, Some(&token))
            .await
            .unwrap();
        // Before the commit, the old value is the committed one: storing and serving it is
        // right (the stamp is not committed yet).
        assert_eq!(outcome, PutOutcome::Stored);
        assert!(hit(&store, k.as_str()).await);
        // 3. The writer ends its transaction.
        if commit {
            tx.commit().await.unwrap();
            // 4. The reader's entry must not be served.
            assert!(
                !hit(&store, k.as_str()).await,
                "a fill that overlapped the writer's transaction was served after its commit"
            );
            assert!(
                store
                    .put(&k, Bytes::from(old), &tags(1), None, Some(&token))
                    .await
                    .unwrap()
                    == PutOutcome::Stale,
                "the old token is refused after the commit"
            );
        } else {
            tx.rollback().await.unwrap();
            assert_eq!(outcome, PutOutcome::Stored);
            assert!(
                hit(&store, k.as_str()).await,
                "a rollback invalidates nothing"
            );
        }
    }

    // Through the Cache: a load that overlaps the writer's transaction is reloaded after it.
    let cache = Cache::new(store.clone());
    let tx = writer.transaction().await.unwrap();
    tx.execute(
        &format!("UPDATE {table} SET title = 'fresh' WHERE id = 2"),
        &[],
    )
    .await
    .unwrap();
    let first: String = cache
        .get_or_insert_with("title:2", || async {
            Ok::<_, std::io::Error>(Loaded::new(read_title(2).await).dep(Dep::id("article", 2)))
        })
        .await
        .unwrap();
    assert_eq!(first, "title 2");
    tx.commit().await.unwrap();
    let second: String = cache
        .get_or_insert_with("title:2", || async {
            Ok::<_, std::io::Error>(Loaded::new(read_title(2).await).dep(Dep::id("article", 2)))
        })
        .await
        .unwrap();
    assert_eq!(second, "fresh");
    store.close();
    env.finish().await;
}

/// A 10,000-row UPDATE: one statement, every payload under 8,000 bytes, every row's id and every
/// scope left or entered sent (exactly what Rust computes, row by row); the PgStore invalidated
/// in-transaction. With a small notification cap, the same update degrades to `a:article`, which
/// still invalidates everything that depended on those rows in a store fed by the Listener.
#[tokio::test]
async fn a_bulk_update_of_10000_rows_invalidates_within_the_payload_limit() {
    let Some(url) = url() else { return };
    let mut env = Env::new(&url, "cap_bulk").await;
    let table = env.table("articles");
    create_articles(&env, &[]).await;
    env.admin
        .execute(
            &format!(
                "INSERT INTO {table} SELECT g, 'c' || (g % 10), g % 2 = 0, 't' || g
                 FROM generate_series(1, 10000) g"
            ),
            &[],
        )
        .await
        .unwrap();
    let store = env.store().await;
    let capture = articles_capture(&env)
        .store_schema(store.schema().as_str())
        .unwrap();
    install(&env, std::slice::from_ref(&capture)).await;
    let cache = Cache::new(store.clone());
    for id in [1_i64, 5000, 10000] {
        let _: String = cache
            .get_or_insert_with(format!("article:{id}"), || async move {
                Ok::<_, std::io::Error>(Loaded::new(id.to_string()).dep(Dep::id("article", id)))
            })
            .await
            .unwrap();
    }
    // An unaffected control: another kind.
    let _: String = cache
        .get_or_insert_with("author:1", || async {
            Ok::<_, std::io::Error>(Loaded::new("a".to_owned()).dep(Dep::id("author", 1)))
        })
        .await
        .unwrap();
    for k in ["article:1", "article:5000", "article:10000", "author:1"] {
        assert!(hit(&store, k).await, "{k} is cached before the update");
    }
    let mut listener = RawListener::start(&url, &env.channel).await;
    let writer = connect(&url).await;
    let rows: Vec<Article> = (1..=10000)
        .map(|g| article(g, &format!("c{}", g % 10), g % 2 == 0))
        .collect();
    writer
        .execute(
            &format!("UPDATE {table} SET category = category || 'x'"),
            &[],
        )
        .await
        .unwrap();
    let payloads = listener.until_marker(&writer, &env.channel).await;
    assert!(
        payloads.len() > 1 && payloads.len() <= 100,
        "{} payloads",
        payloads.len()
    );
    let sent = tags_of(&payloads);
    let scopes = scopes();
    let mut expected = BTreeSet::new();
    for old in &rows {
        let new = Article {
            category: old.category.as_ref().map(|c| format!("{c}x")),
            ..old.clone()
        };
        expected.extend(tag_set(&scopes.invalidate_for(
            Some(old),
            Some(&new),
            Some(&["category"]),
        )));
    }
    assert_eq!(sent.len(), expected.len());
    assert_eq!(sent, expected);
    for id in [1, 5000, 10000] {
        assert!(!hit(&store, &format!("article:{id}")).await, "article {id}");
    }
    assert!(hit(&store, "author:1").await, "the control is untouched");
    eprintln!(
        "10,000-row UPDATE: {} tags in {} payloads, largest {} bytes",
        sent.len(),
        payloads.len(),
        payloads.iter().map(String::len).max().unwrap_or(0)
    );

    // Past the cap: a:article, applied through the Listener to a MemoryStore.
    install(&env, &[capture.max_notifies(5)]).await;
    let memory = MemoryStore::new();
    let (listener2, _applier, mut applied_rx) = applying_to(&url, &env.channel, &memory).await;
    for id in [1_i64, 7777] {
        put_tags(&memory, &format!("article:{id}"), &[Dep::id("article", id)]).await;
    }
    put_tags(&memory, "list c3x", &[cond("c3x", false)]).await;
    memory
        .put(
            &key("author:1"),
            Bytes::from_static(b"v"),
            &[
                Dep::id("author", 1).to_tag().unwrap(),
                Dep::kind("author").to_tag().unwrap(),
            ],
            None,
            None,
        )
        .await
        .unwrap();
    for k in ["article:1", "article:7777", "list c3x", "author:1"] {
        assert!(hit(&memory, k).await, "{k} is cached before the update");
    }
    writer
        .execute(
            &format!("UPDATE {table} SET category = category || 'y'"),
            &[],
        )
        .await
        .unwrap();
    let payloads = listener.until_marker(&writer, &env.channel).await;
    assert_eq!(payloads.len(), 1, "{payloads:?}");
    let batch = TagBatch::parse(&payloads[0], 0).unwrap();
    assert_eq!(batch.tags(), [Dep::kind("article").to_tag().unwrap()]);
    assert_eq!(batch.operation(), Some(Operation::Update));
    applied(&mut applied_rx, "a:article").await;
    for k in ["article:1", "article:7777", "list c3x"] {
        assert!(!hit(&memory, k).await, "{k}");
    }
    assert!(hit(&memory, "author:1").await, "the control is untouched");
    listener2.shutdown().await;
    store.close();
    env.finish().await;
}

/// TRUNCATE maps to the kind-wide tag `a:article`: every entry about articles goes, in the
/// PgStore in-transaction and through NOTIFY.
#[tokio::test]
async fn truncate_invalidates_everything_about_the_kind() {
    let Some(url) = url() else { return };
    let mut env = Env::new(&url, "cap_trunc").await;
    create_articles(&env, &[article(1, "news", true)]).await;
    let store = env.store().await;
    install(
        &env,
        &[articles_capture(&env)
            .store_schema(store.schema().as_str())
            .unwrap()],
    )
    .await;
    let cache = Cache::new(store.clone());
    let _: String = cache
        .get_or_insert_with("news", || async {
            Ok::<_, std::io::Error>(Loaded::new("n".to_owned()).dep(cond("news", true)))
        })
        .await
        .unwrap();
    let _: String = cache
        .get_or_insert_with("other", || async {
            Ok::<_, std::io::Error>(Loaded::new("o".to_owned()).dep(Dep::id("author", 1)))
        })
        .await
        .unwrap();
    let mut listener = RawListener::start(&url, &env.channel).await;
    let writer = connect(&url).await;
    writer
        .batch_execute(&format!("TRUNCATE {}", env.table("articles")))
        .await
        .unwrap();
    let sent = listener.tags(&writer, &env.channel).await;
    assert_eq!(sent, BTreeSet::from(["a:article".to_owned()]));
    assert!(!hit(&store, "news").await);
    assert!(hit(&store, "other").await);
    store.close();
    env.finish().await;
}
