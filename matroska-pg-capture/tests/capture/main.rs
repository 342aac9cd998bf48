//! Change capture against a real server: the tags the triggers compute equal what `Scopes` and
//! `Dep` compute in Rust (`tags`); a row moving between scopes, unwatched updates, rollback, the
//! two-session race with a PgStore, a 10,000-row UPDATE within the payload limit (and degraded
//! past the notification cap), TRUNCATE (`stores`); install/uninstall idempotence and hostile
//! identifiers (`install`); column types whose SQL equality is not byte equality (`types`);
//! partitioned tables and inheritance, and the health check of `list` (`hierarchy`).
//!
//! Needs `MATROSKA_TEST_POSTGRES_URL` (run `./scripts/test`, which starts private servers). Each
//! test uses its own schemas and channel, so they run in parallel.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    clippy::print_stderr
)]

#[path = "../capture_support/mod.rs"]
mod capture_support;

mod events;
mod hierarchy;
mod install;
mod notify_model;
mod stores;
mod tags;
mod types;

use std::collections::BTreeSet;

use capture_support::{Env, WAIT, connect};
use matroska_core::store::{Lookup, Store};
use matroska_core::{Bytes, Dep, Key, MemoryStore, Scopes, Tag};
use matroska_pg_capture::capture::{Capture, ScopeSet, TableCapture, TableRef};
use matroska_pg_capture::listener::{Applied, ApplierHandle, Listener};
use tokio::sync::mpsc;

fn tag_set(deps: &[Dep]) -> BTreeSet<String> {
    deps.iter()
        .map(|d| d.to_tag().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The article table of most tests.

#[derive(Debug, Clone, PartialEq)]
struct Article {
    id: i64,
    category: Option<String>,
    published: Option<bool>,
    title: String,
}

fn article(id: i64, category: &str, published: bool) -> Article {
    Article {
        id,
        category: Some(category.to_owned()),
        published: Some(published),
        title: format!("title {id}"),
    }
}

fn scopes() -> Scopes<Article> {
    Scopes::new("article")
        .id(|a: &Article| a.id)
        .describe(["category", "published"], |a: &Article| {
            (a.category.clone(), a.published)
        })
        .describe(["published"], |a: &Article| a.published)
        .fields(&["id", "title"])
}

fn cond(category: &str, published: bool) -> Dep {
    scopes()
        .condition([
            ("category", category.into()),
            ("published", published.into()),
        ])
        .unwrap()
}

fn articles_capture(env: &Env) -> TableCapture {
    TableCapture::new(
        TableRef::new(Some(&env.app), "articles").unwrap(),
        "article",
    )
    .id(["id"])
    .scope(ScopeSet::new(["category", "published"]))
    .scope(ScopeSet::new(["published"]))
    .channel(env.channel.clone())
}

async fn create_articles(env: &Env, rows: &[Article]) {
    env.admin
        .batch_execute(&format!(
            "CREATE TABLE {} (id bigint PRIMARY KEY, category text, published boolean, title text)",
            env.table("articles")
        ))
        .await
        .unwrap();
    for a in rows {
        env.admin
            .execute(
                &format!(
                    "INSERT INTO {} VALUES ($1, $2, $3, $4)",
                    env.table("articles")
                ),
                &[&a.id, &a.category, &a.published, &a.title],
            )
            .await
            .unwrap();
    }
}

async fn install(env: &Env, tables: &[TableCapture]) {
    let mut client = connect(&env.url).await;
    Capture::new(&env.capture)
        .unwrap()
        .install(&mut client, tables)
        .await
        .unwrap();
}

fn key(text: &str) -> Key {
    Key::new(text).unwrap()
}

async fn hit<S: Store + ?Sized>(store: &S, k: &str) -> bool {
    matches!(store.get(&key(k)).await.unwrap(), Lookup::Hit(_))
}

async fn put_tags<S: Store + ?Sized>(store: &S, k: &str, deps: &[Dep]) {
    let mut tags: Vec<Tag> = deps.iter().map(|d| d.to_tag().unwrap()).collect();
    tags.push(Dep::kind("article").to_tag().unwrap());
    store
        .put(&key(k), Bytes::from_static(b"v"), &tags, None, None)
        .await
        .unwrap();
}

/// A connected `Listener` on `channel` (watching articles) whose applier invalidates `memory`,
/// and what the applier applied, as it applies it.
async fn applying_to(
    url: &str,
    channel: &str,
    memory: &MemoryStore,
) -> (Listener, ApplierHandle, mpsc::UnboundedReceiver<Applied>) {
    let listener = Listener::builder(url)
        .channel(channel)
        .watch_kinds(["article"])
        .start()
        .unwrap();
    let (applied_tx, applied_rx) = mpsc::unbounded_channel();
    let applier = listener
        .applier(memory.clone())
        .trust_start(true)
        .on_applied(move |a| {
            let _ = applied_tx.send(a.clone());
        })
        .spawn()
        .unwrap();
    listener.wait_connected(WAIT).await.unwrap();
    (listener, applier, applied_rx)
}

/// Waits for an apply that included `tag`.
async fn applied(rx: &mut mpsc::UnboundedReceiver<Applied>, tag: &str) {
    loop {
        let applied = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("no apply in time")
            .expect("applier gone");
        if applied.tags.iter().any(|t| t.as_str() == tag) {
            return;
        }
    }
}

async fn trigger_count(env: &Env, table: &str) -> i64 {
    env.admin
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass($1) AND NOT tgisinternal",
            &[&table],
        )
        .await
        .unwrap()
        .get(0)
}
