//! Change capture against a real server: the tags the triggers compute equal what `Scopes` and
//! `Dep` compute in Rust; a row moving between scopes; unwatched updates; rollback; the
//! two-session race with a PgStore; a 10,000-row UPDATE within the payload limit (and degraded
//! past the notification cap); TRUNCATE; install/uninstall idempotence; hostile identifiers.
//!
//! Needs `MATROSKA_TEST_POSTGRES_URL` (run `./scripts/test`, which starts private servers). Each
//! test uses its own schemas and channel, so they run in parallel.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    clippy::print_stderr
)]

mod capture_support;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use capture_support::{Env, RawListener, WAIT, connect, quote, tags_of, url};
use matroska_core::store::{Lookup, PutOutcome, Store};
use matroska_core::{Bytes, Cache, Dep, Key, Loaded, MemoryStore, Scopes, Tag, Value};
use matroska_postgres::capture::{Capture, CaptureError, ScopeSet, TableCapture, TableRef};
use matroska_postgres::listener::{Applied, ApplierHandle, Listener};
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

// ---------------------------------------------------------------------------------------------
// SQL == Rust.

/// A row of the awkward-values table.
#[derive(Debug, Clone, PartialEq)]
struct Thing {
    id: String,
    n: Option<i64>,
    i: Option<i32>,
    s: Option<i16>,
    b: Option<bool>,
    t: Option<String>,
    v: Option<String>,
    ts: Option<SystemTime>,
    tn: Option<SystemTime>,
    u: Option<String>,
    title: String,
}

fn thing_scopes() -> Scopes<Thing> {
    Scopes::new("th:ing&=")
        .id(|r: &Thing| r.id.clone())
        .describe(["t", "b"], |r: &Thing| (r.t.clone(), r.b))
        .describe(["n"], |r: &Thing| r.n)
        .describe(["s", "i"], |r: &Thing| (r.s, r.i))
        .describe(["ts"], |r: &Thing| r.ts.map(Value::from))
        .describe(["tn", "u"], |r: &Thing| {
            (r.tn.map(Value::from), r.u.clone())
        })
        .describe_watching(["v"], &["title"], |r: &Thing| r.v.clone())
        .describe([], |_: &Thing| ())
}

/// Which columns differ between two rows (what an application would pass as `modified`).
fn modified(old: &Thing, new: &Thing) -> Vec<&'static str> {
    let mut m = Vec::new();
    let mut check = |name, differs| {
        if differs {
            m.push(name);
        }
    };
    check("n", old.n != new.n);
    check("i", old.i != new.i);
    check("s", old.s != new.s);
    check("b", old.b != new.b);
    check("t", old.t != new.t);
    check("v", old.v != new.v);
    check("ts", old.ts != new.ts);
    check("tn", old.tn != new.tn);
    check("u", old.u != new.u);
    check("title", old.title != new.title);
    m
}

fn texts() -> Vec<String> {
    vec![
        String::new(),
        "plain".into(),
        "a:b".into(),
        "x&y=z".into(),
        "%25".into(),
        "(1,2)".into(),
        "#".into(),
        "é日本🔑".into(),
        "line\nbreak\ttab".into(),
        "'quote'".into(),
        "\"dq\" \\back\\slash".into(),
        "~".into(),
        "NULL".into(),
        "semi;colon".into(),
        "x".repeat(300),
        "é".repeat(150),
        format!("{}:{}", "k".repeat(100), "v".repeat(100)),
        "\u{1}control".into(),
    ]
}

fn things() -> Vec<Thing> {
    let texts = texts();
    let micros = |m: i64| {
        if m >= 0 {
            UNIX_EPOCH + Duration::from_micros(m.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_micros(m.unsigned_abs())
        }
    };
    let times = [
        Some(micros(0)),
        Some(micros(1_709_210_096_789_012)),
        Some(micros(-1)),
        Some(micros(-2_208_988_800_000_000)),
        Some(micros(9_214_646_400_000_001)),
        None,
    ];
    let ints = [
        Some(0),
        Some(1),
        Some(-1),
        Some(i64::MAX),
        Some(i64::MIN),
        None,
    ];
    let uuids = [
        Some("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11".to_owned()),
        Some("00000000-0000-0000-0000-000000000000".to_owned()),
        None,
    ];
    texts
        .iter()
        .enumerate()
        .map(|(k, id)| Thing {
            id: id.clone(),
            n: ints[k % ints.len()],
            i: [Some(i32::MAX), Some(i32::MIN), Some(7), None][k % 4],
            s: [Some(i16::MAX), Some(i16::MIN), None][k % 3],
            b: [Some(true), Some(false), None][k % 3],
            t: if k % 5 == 4 {
                None
            } else {
                Some(texts[(k * 7) % texts.len()].clone())
            },
            v: if k % 6 == 5 {
                None
            } else {
                Some(texts[(k * 3) % texts.len()].chars().take(50).collect())
            },
            ts: times[k % times.len()],
            tn: times[(k + 2) % times.len()],
            u: uuids[k % uuids.len()].clone(),
            title: format!("title {k}"),
        })
        .collect()
}

/// The row as Rust sees it once stored: uuids in canonical lower case.
fn canonical(row: &Thing) -> Thing {
    Thing {
        u: row.u.as_ref().map(|u| u.to_lowercase()),
        ..row.clone()
    }
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

/// For every row of a table with awkward values (separators, unicode, long values that get
/// hashed, integer limits, timestamps with and without zone, before 1970, NULLs, booleans,
/// uuids, multi-field scopes, an empty field set, a watched column): the tags the triggers send
/// for its INSERT, several UPDATEs and its DELETE equal the tags `Scopes::invalidate_for`
/// computes for the same values.
#[tokio::test]
async fn sql_tags_equal_rust_tags_over_awkward_values() {
    let Some(url) = url() else { return };
    let env = Env::new(&url, "cap_eq").await;
    let table = env.table("things");
    env.admin
        .batch_execute(&format!(
            "CREATE TABLE {table} (id text PRIMARY KEY, n bigint, i integer, s smallint,
                 b boolean, t text, v varchar(60), ts timestamptz, tn timestamp, u uuid,
                 title text NOT NULL)"
        ))
        .await
        .unwrap();
    let capture = TableCapture::new(TableRef::new(Some(&env.app), "things").unwrap(), "th:ing&=")
        .id(["id"])
        .scope(ScopeSet::new(["t", "b"]))
        .scope(ScopeSet::new(["n"]))
        .scope(ScopeSet::new(["s", "i"]))
        .scope(ScopeSet::new(["ts"]))
        .scope(ScopeSet::new(["tn", "u"]))
        .scope(ScopeSet::new(["v"]).watch(["title"]))
        .scope(ScopeSet::new(Vec::<String>::new()))
        .channel(env.channel.clone());
    install(&env, &[capture]).await;
    let mut listener = RawListener::start(&url, &env.channel).await;
    let writer = connect(&url).await;
    let scopes = thing_scopes();
    let insert = format!(
        "INSERT INTO {table} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::uuid, $11)"
    );
    let update = format!(
        "UPDATE {table} SET n = $2, i = $3, s = $4, b = $5, t = $6, v = $7, ts = $8, tn = $9,
             u = $10::text::uuid, title = $11 WHERE id = $1"
    );
    let params = |r: &Thing| {
        (
            r.id.clone(),
            r.n,
            r.i,
            r.s,
            r.b,
            r.t.clone(),
            r.v.clone(),
            r.ts,
            r.tn,
            r.u.clone(),
            r.title.clone(),
        )
    };
    let mut checked = 0;
    let rows = things();
    for row in &rows {
        let p = params(row);
        writer
            .execute(
                &insert,
                &[
                    &p.0, &p.1, &p.2, &p.3, &p.4, &p.5, &p.6, &p.7, &p.8, &p.9, &p.10,
                ],
            )
            .await
            .unwrap();
        let sent = listener.tags(&writer, &env.channel).await;
        let expected = tag_set(&scopes.invalidate_for(None, Some(&canonical(row)), None));
        assert_eq!(sent, expected, "insert of {:?}", row.id);
        checked += 1;
    }
    // Updates: each row takes the values of another one (many fields change), then only its
    // title (the watched column), then nothing at all.
    for (k, row) in rows.iter().enumerate() {
        let other = &rows[(k + 1) % rows.len()];
        let new = Thing {
            id: row.id.clone(),
            title: format!("{} moved", row.title),
            ..other.clone()
        };
        for (old, new) in [
            (row.clone(), new.clone()),
            (
                new.clone(),
                Thing {
                    title: "retitled".into(),
                    ..new.clone()
                },
            ),
        ] {
            let p = params(&new);
            writer
                .execute(
                    &update,
                    &[
                        &p.0, &p.1, &p.2, &p.3, &p.4, &p.5, &p.6, &p.7, &p.8, &p.9, &p.10,
                    ],
                )
                .await
                .unwrap();
            let sent = listener.tags(&writer, &env.channel).await;
            let (old, new) = (canonical(&old), canonical(&new));
            let expected = tag_set(&scopes.invalidate_for(
                Some(&old),
                Some(&new),
                Some(&modified(&old, &new)),
            ));
            assert_eq!(sent, expected, "update of {:?}", row.id);
            checked += 1;
        }
        // An update that changes nothing sends nothing.
        writer
            .execute(
                &format!("UPDATE {table} SET title = title WHERE id = $1"),
                &[&row.id],
            )
            .await
            .unwrap();
        assert!(listener.tags(&writer, &env.channel).await.is_empty());
    }
    let current: Vec<Thing> = rows
        .iter()
        .enumerate()
        .map(|(k, row)| Thing {
            id: row.id.clone(),
            title: "retitled".into(),
            ..rows[(k + 1) % rows.len()].clone()
        })
        .collect();
    for row in &current {
        writer
            .execute(&format!("DELETE FROM {table} WHERE id = $1"), &[&row.id])
            .await
            .unwrap();
        let sent = listener.tags(&writer, &env.channel).await;
        let expected = tag_set(&scopes.invalidate_for(Some(&canonical(row)), None, None));
        assert_eq!(sent, expected, "delete of {:?}", row.id);
        checked += 1;
    }
    assert!(checked >= 4 * rows.len(), "{checked}");
    // Hashed tags did occur (long ids).
    assert!(
        tag_set(&scopes.invalidate_for(None, Some(&rows[14]), None))
            .iter()
            .any(|t| t.contains('#'))
    );
    env.finish().await;
}

/// Composite ids and the other id types: the id tag of a tuple `(v1,v2)`, uuid, timestamp and
/// boolean ids, NULL inside a tuple, against `Dep::id`.
#[tokio::test]
async fn composite_and_typed_ids_equal_rust() {
    let Some(url) = url() else { return };
    let env = Env::new(&url, "cap_ids").await;
    let table = env.table("lines");
    env.admin
        .batch_execute(&format!(
            "CREATE TABLE {table} (order_id uuid, n smallint, at timestamptz, flag boolean,
                 note text)"
        ))
        .await
        .unwrap();
    let capture = TableCapture::new(TableRef::new(Some(&env.app), "lines").unwrap(), "line")
        .id(["order_id", "n", "at", "flag"])
        .channel(env.channel.clone());
    install(&env, &[capture]).await;
    let mut listener = RawListener::start(&url, &env.channel).await;
    let writer = connect(&url).await;
    let at = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
    for (uuid, n, at, flag) in [
        (
            Some("6F9619FF-8B86-D011-B42D-00C04FC964FF"),
            Some(1_i16),
            Some(at),
            Some(true),
        ),
        (None, None, None, None),
        (
            Some("00000000-0000-0000-0000-000000000001"),
            Some(-5),
            Some(UNIX_EPOCH),
            Some(false),
        ),
    ] {
        writer
            .execute(
                &format!("INSERT INTO {table} VALUES ($1::text::uuid, $2, $3, $4, 'x')"),
                &[&uuid, &n, &at, &flag],
            )
            .await
            .unwrap();
        let sent = listener.tags(&writer, &env.channel).await;
        let id = Value::Tuple(vec![
            uuid.map(str::to_lowercase).into(),
            n.into(),
            at.map_or(Value::Null, Value::from),
            flag.into(),
        ]);
        let scopes: Scopes<()> = Scopes::new("line");
        let expected = tag_set(&[Dep::id("line", id), scopes.any()]);
        assert_eq!(sent, expected);
    }
    env.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Semantics with stores.

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
    // The third statement's tags were all sent already: two payloads, not three.
    assert_eq!(payloads.len(), 2, "{payloads:?}");
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
    writer
        .execute(
            &format!("UPDATE {table} SET category = category || 'y'"),
            &[],
        )
        .await
        .unwrap();
    let payloads = listener.until_marker(&writer, &env.channel).await;
    assert_eq!(payloads, [r#"{"v":1,"tags":["a:article"]}"#]);
    applied(&mut applied_rx, "a:article").await;
    for k in ["article:1", "article:7777", "list c3x"] {
        assert!(!hit(&memory, k).await, "{k}");
    }
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

// ---------------------------------------------------------------------------------------------
// Install, uninstall, names.

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

/// Installing twice is installing once; uninstalling twice removes once and then does nothing;
/// the dry-run script changes nothing; a re-install after uninstall works.
#[tokio::test]
async fn install_and_uninstall_are_idempotent() {
    let Some(url) = url() else { return };
    let env = Env::new(&url, "cap_idem").await;
    create_articles(&env, &[article(1, "news", true)]).await;
    let capture = Capture::new(&env.capture).unwrap();
    let mut client = connect(&url).await;
    let decl = articles_capture(&env);
    let table = env.table("articles");

    let script = capture
        .script(&client, std::slice::from_ref(&decl))
        .await
        .unwrap();
    assert!(script.starts_with("BEGIN;") && script.ends_with("COMMIT;\n"));
    assert!(capture.list(&client).await.unwrap().is_empty());
    assert_eq!(
        trigger_count(&env, &table).await,
        0,
        "the script changed nothing"
    );

    for _ in 0..2 {
        capture
            .install(&mut client, std::slice::from_ref(&decl))
            .await
            .unwrap();
        assert_eq!(trigger_count(&env, &table).await, 4);
        let listed = capture.list(&client).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].triggers_present, 4);
        assert_eq!(listed[0].kind, "article");
        assert_eq!(listed[0].channel.as_deref(), Some(env.channel.as_str()));
    }
    assert_eq!(
        capture
            .installed_kinds(&client, &env.channel)
            .await
            .unwrap(),
        ["article"]
    );
    // The script of an installed table is the same (it would re-run idempotently).
    client.batch_execute(&script).await.unwrap();
    assert_eq!(trigger_count(&env, &table).await, 4);

    let by_name = TableRef::parse("articles").unwrap(); // not in the search_path: by name
    assert!(capture.uninstall(&mut client, &by_name).await.unwrap());
    assert_eq!(trigger_count(&env, &table).await, 0);
    assert!(!capture.uninstall(&mut client, &by_name).await.unwrap());
    assert!(capture.list(&client).await.unwrap().is_empty());
    let functions: i64 = env
        .admin
        .query_one(
            "SELECT count(*) FROM pg_proc WHERE pronamespace = to_regnamespace($1)
               AND prorettype = 'trigger'::regtype",
            &[&quote(&env.capture)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(functions, 0, "the trigger function is gone");

    // Re-install, then uninstall everything and purge the schema.
    capture.install(&mut client, &[decl]).await.unwrap();
    assert_eq!(capture.uninstall_all(&mut client, true).await.unwrap(), 1);
    assert_eq!(trigger_count(&env, &table).await, 0);
    let schema: Option<String> = env
        .admin
        .query_one("SELECT to_regnamespace($1)::text", &[&quote(&env.capture)])
        .await
        .unwrap()
        .get(0);
    assert!(schema.is_none(), "purged");
    env.finish().await;
}

/// Hostile identifiers are quoted correctly (a schema and table with quotes, semicolons, spaces,
/// unicode, `$mt$`, exactly 63 bytes; mixed-case columns; a kind with separators) and the
/// captured writes still produce the right tags, then uninstall removes everything. The ones
/// that cannot be used safely are rejected with a clear error: over 63 bytes, empty, unknown
/// columns (with a case hint), unsupported types, a store schema that is not migrated.
#[tokio::test]
async fn hostile_identifiers_are_quoted_or_rejected() {
    let Some(url) = url() else { return };
    let mut env = Env::new(&url, "cap_host").await;
    let schema = format!("Sch\"ema; DROP TABLE x; -- é {}", &env.app[9..]);
    env.drop_schema(&schema);
    let long_name = format!("{}{}", "T".repeat(60), "$mt");
    assert_eq!(long_name.len(), 63);
    let names = [
        "Bobby\"); DROP TABLE students;--".to_owned(),
        "日本語 テーブル $mt$ ".to_owned(),
        long_name,
    ];
    env.admin
        .batch_execute(&format!("CREATE SCHEMA {}", quote(&schema)))
        .await
        .unwrap();
    let mut client = connect(&url).await;
    let capture = Capture::new(&env.capture).unwrap();
    for name in &names {
        let table = format!("{}.{}", quote(&schema), quote(name));
        env.admin
            .batch_execute(&format!(
                "CREATE TABLE {table} (\"I\"\"d\" integer, \"Cat egory;\" text, \"é\" boolean)"
            ))
            .await
            .unwrap();
        let decl = TableCapture::new(TableRef::new(Some(&schema), name).unwrap(), "k:in'd\\")
            .id(["I\"d"])
            .scope(
                ScopeSet::new(["cat", "pub"])
                    .column("cat", "Cat egory;")
                    .column("pub", "é"),
            )
            .channel(format!("{} \"ch\";", env.channel));
        capture
            .install(&mut client, std::slice::from_ref(&decl))
            .await
            .unwrap();
        capture.install(&mut client, &[decl]).await.unwrap();
        let channel = format!("{} \"ch\";", env.channel);
        let mut listener = RawListener::start(&url, &channel).await;
        client
            .execute(&format!("INSERT INTO {table} VALUES (7, 'a&b', true)"), &[])
            .await
            .unwrap();
        let sent = listener.tags(&client, &channel).await;
        let scopes: Scopes<(i32, String, bool)> = Scopes::new("k:in'd\\")
            .id(|r: &(i32, String, bool)| r.0)
            .describe(["cat", "pub"], |r: &(i32, String, bool)| (r.1.clone(), r.2));
        let row = (7, "a&b".to_owned(), true);
        assert_eq!(
            sent,
            tag_set(&scopes.invalidate_for(None, Some(&row), None))
        );
        assert_eq!(trigger_count(&env, &table).await, 4);
        let listed = capture.list(&client).await.unwrap();
        assert!(listed.iter().any(|i| i.table.name() == name.as_str()));
    }
    // Uninstall by the schema-qualified name, through the CLI syntax.
    for name in &names {
        let table = TableRef::parse(&format!("{}.{}", quote(&schema), quote(name))).unwrap();
        assert!(
            capture.uninstall(&mut client, &table).await.unwrap(),
            "{name}"
        );
        let qualified = format!("{}.{}", quote(&schema), quote(name));
        assert_eq!(trigger_count(&env, &qualified).await, 0, "{name}");
    }
    assert!(capture.list(&client).await.unwrap().is_empty());

    // Rejections.
    assert!(matches!(
        TableRef::new(Some(&schema), &"x".repeat(64)),
        Err(CaptureError::Identifier { .. })
    ));
    let table = TableRef::new(Some(&schema), &names[0]).unwrap();
    let base = || TableCapture::new(table.clone(), "k").id(["I\"d"]);
    let err = capture
        .install(&mut client, &[base().id(["i\"D"])])
        .await
        .unwrap_err();
    assert!(matches!(err, CaptureError::ColumnNotFound { .. }), "{err}");
    assert!(err.to_string().contains("I\\\"d"), "{err}");
    env.admin
        .batch_execute(&format!(
            "ALTER TABLE {}.{} ADD COLUMN doc jsonb",
            quote(&schema),
            quote(&names[0])
        ))
        .await
        .unwrap();
    let err = capture
        .install(&mut client, &[base().scope(ScopeSet::new(["doc"]))])
        .await
        .unwrap_err();
    assert!(matches!(err, CaptureError::UnsupportedType { .. }), "{err}");
    assert!(err.to_string().contains("jsonb") && err.to_string().contains("uuid"));
    // A watched column may have any type.
    capture
        .install(
            &mut client,
            &[base().scope(ScopeSet::new(["é"]).watch(["doc"]))],
        )
        .await
        .unwrap();
    let err = capture
        .install(&mut client, &[base().store_schema("not_a_store").unwrap()])
        .await
        .unwrap_err();
    assert!(
        matches!(err, CaptureError::StoreNotMigrated { .. }),
        "{err}"
    );
    let upper = TableRef::new(Some(&schema), &names[0].to_uppercase()).unwrap();
    let err = capture
        .install(&mut client, &[TableCapture::new(upper, "k").id(["I\"d"])])
        .await
        .unwrap_err();
    assert!(matches!(err, CaptureError::TableNotFound { .. }), "{err}");
    assert!(err.to_string().contains("did you mean"), "{err}");
    assert_eq!(capture.uninstall_all(&mut client, true).await.unwrap(), 1);
    env.finish().await;
}
