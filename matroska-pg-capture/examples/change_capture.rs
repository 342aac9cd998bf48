//! # Change capture: a writer with plain SQL, a reader caching in Redis
//!
//! ```text
//! cargo run --release -p matroska-pg-capture --example change_capture -- \
//!     --postgres-url postgres://postgres@127.0.0.1:5432/postgres --redis-url redis://127.0.0.1:6379
//! ```
//!
//! (`--postgres-url` defaults to `$MATROSKA_TEST_POSTGRES_URL`, `--redis-url` to
//! `$MATROSKA_TEST_REDIS_URL`.)
//!
//! Two processes. This one, the **writer**, creates a private schema with an `articles` table,
//! installs Matroska's change capture on it (generated triggers that NOTIFY the tags each write
//! touches, on a channel of this run) and then writes with plain SQL only: INSERT, UPDATE and
//! DELETE through tokio-postgres, no Matroska on its write path. The other, the **reader** (this
//! program again, with `--reader`), serves pages from a `Cache` over a `RedisStore`:
//!
//! - `article:<id>`: the row (or "no such article", cached too), `Dep::id("article", id)`;
//! - `list:<category>`: the published articles of a category (id, title), which depends on the
//!   ids of its rows and on its filter, `Scopes::condition([("category", ..), ("published",
//!   true)])`, so that a row entering the list invalidates it too.
//!
//! A `Listener` in the reader receives the tags of committed writes and invalidates them in the
//! RedisStore. The reader answers commands on stdin (`list news`, `article 5`, `wait list:news
//! article:2`) with JSON lines on stdout. The writer checks every answer against the database and
//! the expected hits and misses, and exits non-zero on a stale read; after each write it asks the
//! reader to wait (at most 5 s) until the keys the write touched are gone, and prints how long
//! after its commit that was. The schemas and the Redis keys are removed at the end, also after
//! an error.

// Printing is the point of an example.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use matroska_core::{Cache, Dep, Loaded, Scopes};
use matroska_pg_capture::capture::{Capture, ScopeSet, TableCapture, TableRef};
use matroska_pg_capture::listener::{GapReason, Listener};
use matroska_redis::RedisStore;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, watch};
use tokio_postgres::Client;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

/// How long an invalidation may take to arrive after the writer's commit.
const INVALIDATION: Duration = Duration::from_secs(5);
/// How long the reader may take to start (connect, LISTEN) or to answer a read.
const ANSWER: Duration = Duration::from_secs(20);
const CATEGORIES: [&str; 2] = ["news", "sports"];

/// A row of `articles`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Article {
    id: i64,
    title: String,
    category: String,
    published: bool,
}

/// A list page: the published articles of a category, (id, title), by id.
type List = Vec<(i64, String)>;

/// This run's names, so that concurrent runs never meet.
struct Names {
    schema: String,
    capture: String,
    channel: String,
    prefix: String,
}

impl Names {
    fn new() -> Self {
        let seed = (std::process::id(), Instant::now());
        let s = format!("{:012x}", RandomState::new().hash_one(seed) >> 16);
        Self {
            schema: format!("cc_{s}"),
            capture: format!("cc_{s}_cap"),
            channel: format!("cc_{s}_ch"),
            prefix: format!("cc-{s}"),
        }
    }
}

struct Options {
    postgres_url: String,
    redis_url: String,
    /// Internal: run as the reader process, with the writer's names.
    reader: Option<Names>,
}

fn parse_args() -> Result<Options> {
    let var = |name| std::env::var(name).unwrap_or_default();
    let mut options = Options {
        postgres_url: var("MATROSKA_TEST_POSTGRES_URL"),
        redis_url: var("MATROSKA_TEST_REDIS_URL"),
        reader: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--postgres-url" => options.postgres_url = value()?,
            "--redis-url" => options.redis_url = value()?,
            "--reader" => {
                let (schema, capture, channel, prefix) = (value()?, value()?, value()?, value()?);
                options.reader = Some(Names {
                    schema,
                    capture,
                    channel,
                    prefix,
                });
            }
            other => {
                return Err(format!("unknown argument {other:?}; see the example's header").into());
            }
        }
    }
    if options.postgres_url.is_empty() || options.redis_url.is_empty() {
        return Err("set --postgres-url and --redis-url (or MATROSKA_TEST_POSTGRES_URL and MATROSKA_TEST_REDIS_URL)".into());
    }
    Ok(options)
}

/// A connection; with `schema`, its `search_path` is that schema, so the SQL reads `articles`.
async fn connect(url: &str, schema: Option<&str>) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("postgres connection: {error}");
        }
    });
    if let Some(schema) = schema {
        client
            .batch_execute(&format!("SET search_path TO \"{schema}\""))
            .await?;
    }
    Ok(client)
}

// --- The queries, the same for the reader's loads and the writer's checks. ---

async fn load_article(db: &Client, id: i64) -> Result<Option<Article>> {
    let sql = "SELECT id, title, category, published FROM articles WHERE id = $1";
    let row = db.query_opt(sql, &[&id]).await?;
    Ok(row.map(|r| Article {
        id: r.get(0),
        title: r.get(1),
        category: r.get(2),
        published: r.get(3),
    }))
}

async fn load_list(db: &Client, category: &str) -> Result<List> {
    let sql = "SELECT id, title FROM articles WHERE category = $1 AND published ORDER BY id";
    let rows = db.query(sql, &[&category]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The lines of `input`, read on a thread of their own.
fn lines_of(input: impl std::io::Read + Send + 'static) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(input)
            .lines()
            .map_while(std::result::Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

// --- The reader process: a Cache on Redis, kept fresh by the Listener. ---

async fn reader(options: &Options, names: &Names) -> Result<()> {
    let db = connect(&options.postgres_url, Some(&names.schema)).await?;
    // The kinds the triggers on this channel send: what a gap (a reconnect) must drop.
    let kinds = Capture::new(&names.capture)?
        .installed_kinds(&db, &names.channel)
        .await?;
    let store = RedisStore::builder(options.redis_url.as_str())
        .prefix(names.prefix.as_str())
        .build()
        .await?;
    let listener = Listener::builder(&options.postgres_url)
        .channel(&names.channel)
        .watch_kinds(kinds.clone())
        .start()?;
    let (applied_tx, mut applied) = watch::channel(0_u64);
    let _applier = listener
        .applier(store.clone())
        // The store is new (a random prefix): nothing was cached before the listener ran.
        .trust_start(true)
        .on_gap(|gap| {
            if !matches!(gap.reason(), GapReason::Started) {
                eprintln!("reader: {gap}; everything cached about the kinds is dropped");
            }
        })
        .on_applied(move |_| applied_tx.send_modify(|n| *n += 1))
        .spawn()?;
    listener.wait_connected(ANSWER).await?;

    let cache = Cache::new(store);
    let articles = Scopes::new("article")
        .id(|a: &Article| a.id)
        .describe(["category", "published"], |a: &Article| {
            (a.category.clone(), a.published)
        });
    answer(&json!({ "ready": true, "kinds": kinds, "pid": std::process::id() }))?;
    let db = &db;
    let mut commands = lines_of(std::io::stdin());
    while let Some(line) = commands.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        let reply = match words.as_slice() {
            ["article", id] => {
                let id: i64 = id.parse()?;
                let page = cache
                    .fetch(format!("article:{id}"), || async move {
                        let article = load_article(db, id).await?;
                        Ok::<_, Error>(Loaded::new(article).dep(Dep::id("article", id)))
                    })
                    .await?;
                json!({ "hit": page.is_hit(), "value": page.value })
            }
            ["list", category] => {
                let scope = articles
                    .condition([("category", (*category).into()), ("published", true.into())])?;
                let list = cache
                    .fetch(format!("list:{category}"), || async move {
                        let list = load_list(db, category).await?;
                        let ids: Vec<Dep> =
                            list.iter().map(|(id, _)| Dep::id("article", *id)).collect();
                        Ok::<_, Error>(Loaded::new(list).deps(ids).dep(scope))
                    })
                    .await?;
                json!({ "hit": list.is_hit(), "value": list.value })
            }
            ["wait", keys @ ..] => json!({ "left": wait_gone(&cache, keys, &mut applied).await? }),
            _ => json!({ "error": format!("unknown command {line:?}") }),
        };
        answer(&reply)?;
    }
    listener.shutdown().await;
    Ok(())
}

/// Waits until none of `keys` is cached (woken by each applied invalidation), at most
/// [`INVALIDATION`]; returns those still cached.
async fn wait_gone(
    cache: &Cache<RedisStore>,
    keys: &[&str],
    applied: &mut watch::Receiver<u64>,
) -> Result<Vec<String>> {
    let deadline = tokio::time::Instant::now() + INVALIDATION;
    loop {
        applied.borrow_and_update();
        let mut left = Vec::new();
        for key in keys {
            if cache.has(*key).await? {
                left.push((*key).to_owned());
            }
        }
        if left.is_empty() {
            return Ok(left);
        }
        if !matches!(
            tokio::time::timeout_at(deadline, applied.changed()).await,
            Ok(Ok(()))
        ) {
            return Ok(left);
        }
    }
}

fn answer(reply: &Json) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{reply}")?;
    out.flush()?;
    Ok(())
}

// --- The writer process: plain SQL, and a check of everything the reader serves. ---

/// The reader process, killed if still running when dropped.
struct Reader {
    child: Child,
    stdin: Option<ChildStdin>,
    replies: mpsc::UnboundedReceiver<String>,
}

impl Reader {
    fn spawn(options: &Options, names: &Names) -> Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args([
                "--postgres-url",
                &options.postgres_url,
                "--redis-url",
                &options.redis_url,
            ])
            .args([
                "--reader",
                &names.schema,
                &names.capture,
                &names.channel,
                &names.prefix,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        Ok(Self {
            stdin: child.stdin.take(),
            child,
            replies: lines_of(stdout),
        })
    }

    async fn reply(&mut self) -> Result<Json> {
        let line = tokio::time::timeout(ANSWER, self.replies.recv())
            .await
            .map_err(|_| format!("the reader did not answer within {ANSWER:?}"))?
            .ok_or("the reader exited")?;
        let reply: Json = serde_json::from_str(&line)?;
        match reply.get("error") {
            Some(error) => Err(format!("the reader: {error}").into()),
            None => Ok(reply),
        }
    }

    async fn ask(&mut self, command: &str) -> Result<Json> {
        let stdin = self.stdin.as_mut().ok_or("the reader's stdin is closed")?;
        writeln!(stdin, "{command}")?;
        stdin.flush()?;
        self.reply().await
    }

    /// Closes the reader's stdin, which ends it, and waits for it.
    async fn finish(mut self) -> Result<()> {
        drop(self.stdin.take());
        let started = Instant::now();
        while self.child.try_wait()?.is_none() {
            if started.elapsed() > ANSWER {
                return Err("the reader did not exit".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

struct Demo<'a> {
    db: &'a Client,
    reader: Reader,
}

impl Demo<'_> {
    /// Runs `sql` (autocommit), then waits until the reader no longer has the keys in `touched`.
    async fn write(&mut self, sql: &str, touched: &[&str]) -> Result<()> {
        println!("  writer: {sql}");
        self.db.batch_execute(sql).await?;
        let committed = Instant::now();
        let reply = self
            .reader
            .ask(&format!("wait {}", touched.join(" ")))
            .await?;
        let ms = committed.elapsed().as_secs_f64() * 1000.0;
        match reply["left"].as_array() {
            Some(left) if left.is_empty() => {
                println!(
                    "  reader: {} invalidated, {ms:.1} ms after the commit",
                    touched.join(", ")
                );
                Ok(())
            }
            _ => Err(format!(
                "STALE: {} still cached {INVALIDATION:?} after the commit",
                reply["left"]
            )
            .into()),
        }
    }

    /// Reads every list and article page through the reader; fails on a value that differs from
    /// the database, or when the keys that missed are not exactly `expected_misses`.
    async fn read_all(&mut self, expected_misses: &str) -> Result<()> {
        let mut missed = BTreeSet::new();
        for category in CATEGORIES {
            let reply = self.reader.ask(&format!("list {category}")).await?;
            let list: List = serde_json::from_value(reply["value"].clone())?;
            let shown: Vec<String> = list
                .iter()
                .map(|(id, title)| format!("#{id} {title}"))
                .collect();
            let fresh = serde_json::to_value(load_list(self.db, category).await?)?;
            check(
                &format!("list:{category}"),
                &reply,
                &fresh,
                &format!("[{}]", shown.join(", ")),
                &mut missed,
            )?;
        }
        for id in 1..=5 {
            let reply = self.reader.ask(&format!("article {id}")).await?;
            let shown = match serde_json::from_value::<Option<Article>>(reply["value"].clone())? {
                Some(a) => format!(
                    "#{} {:?} in {}{}",
                    a.id,
                    a.title,
                    a.category,
                    if a.published { "" } else { " (draft)" }
                ),
                None => "(no such article)".to_owned(),
            };
            let fresh = serde_json::to_value(load_article(self.db, id).await?)?;
            check(
                &format!("article:{id}"),
                &reply,
                &fresh,
                &shown,
                &mut missed,
            )?;
        }
        let expected: BTreeSet<String> =
            expected_misses.split_whitespace().map(Into::into).collect();
        if missed != expected {
            return Err(format!("expected misses {expected:?}, got {missed:?}").into());
        }
        Ok(())
    }
}

/// Prints one read, checks it against the database (`fresh`), and records a miss.
fn check(
    key: &str,
    reply: &Json,
    fresh: &Json,
    shown: &str,
    missed: &mut BTreeSet<String>,
) -> Result<()> {
    let hit = reply["hit"].as_bool().ok_or("a reply without \"hit\"")?;
    println!(
        "  {key:<13} {:<13} {shown}",
        if hit { "hit" } else { "MISS, loaded" }
    );
    if reply["value"] != *fresh {
        return Err(format!(
            "STALE read of {key}: the reader served {}, the database has {fresh}",
            reply["value"]
        )
        .into());
    }
    if !hit {
        missed.insert(key.to_owned());
    }
    Ok(())
}

async fn demo(options: &Options, names: &Names, db: &mut Client) -> Result<()> {
    db.batch_execute(&format!(
        "CREATE SCHEMA \"{0}\";
         CREATE TABLE \"{0}\".articles (id bigint PRIMARY KEY, title text NOT NULL,
             category text NOT NULL, published boolean NOT NULL);
         INSERT INTO \"{0}\".articles VALUES (1, 'Rust 2024 is out', 'news', true),
             (2, 'Local elections', 'news', true), (3, 'Cup final tonight', 'sports', true),
             (4, 'Budget', 'news', false);
         SET search_path TO \"{0}\"",
        names.schema
    ))
    .await?;
    // What `Scopes::new("article").id(..).describe(["category", "published"], ..)` says in Rust.
    let articles = TableCapture::new(TableRef::new(Some(&names.schema), "articles")?, "article")
        .id(["id"])
        .scope(ScopeSet::new(["category", "published"]))
        .channel(&names.channel);
    Capture::new(&names.capture)?
        .install(db, &[articles])
        .await?;
    println!(
        "PostgreSQL: table {}.articles, capture installed (schema {}, NOTIFY channel {})",
        names.schema, names.capture, names.channel
    );

    let mut reader = Reader::spawn(options, names)?;
    let ready = reader.reply().await?;
    println!(
        "Reader: pid {}, listening for kinds {}, caching in Redis under {{{}}}:",
        ready["pid"], ready["kinds"], names.prefix
    );
    let mut demo = Demo { db, reader };

    println!("\n1. First reads: nothing is cached, every read loads from PostgreSQL.");
    demo.read_all("list:news list:sports article:1 article:2 article:3 article:4 article:5")
        .await?;
    println!("\n2. The same reads again: all hits, served from Redis.");
    demo.read_all("").await?;
    println!(
        "\n3. #5 is inserted, published in news: it enters list:news, and its \"no such article\" page goes."
    );
    demo.write(
        "INSERT INTO articles VALUES (5, 'Matroska 0.1 released', 'news', true)",
        &["list:news", "article:5"],
    )
    .await?;
    demo.read_all("list:news article:5").await?;
    println!("\n4. #2 moves from news to sports: it leaves one list and enters the other.");
    demo.write(
        "UPDATE articles SET category = 'sports' WHERE id = 2",
        &["list:news", "list:sports", "article:2"],
    )
    .await?;
    demo.read_all("list:news list:sports article:2").await?;
    println!(
        "\n5. The draft #4 is retitled: title is no scope field and #4 is in no list; the lists stay hits."
    );
    demo.write(
        "UPDATE articles SET title = 'Budget 2026' WHERE id = 4",
        &["article:4"],
    )
    .await?;
    demo.read_all("article:4").await?;
    println!(
        "\n6. #1, shown in list:news, is retitled: its page and list:news (which depends on its rows)."
    );
    demo.write(
        "UPDATE articles SET title = 'Rust 2024 is out!' WHERE id = 1",
        &["article:1", "list:news"],
    )
    .await?;
    demo.read_all("list:news article:1").await?;
    println!("\n7. #3 is deleted: it leaves list:sports, and its page says so.");
    demo.write(
        "DELETE FROM articles WHERE id = 3",
        &["list:sports", "article:3"],
    )
    .await?;
    demo.read_all("list:sports article:3").await?;
    println!("\n8. Final reads: all hits, all fresh.");
    demo.read_all("").await?;
    demo.reader.finish().await?;
    println!(
        "\nOK: every read matched the database; each plain-SQL write invalidated what it touched."
    );
    Ok(())
}

/// Removes the capture (by its registry), the schemas and the Redis keys of this run.
async fn cleanup(options: &Options, names: &Names, db: &mut Client) -> Result<()> {
    let uninstalled = Capture::new(&names.capture)?.uninstall_all(db, true).await;
    db.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS \"{}\" CASCADE; DROP SCHEMA IF EXISTS \"{}\" CASCADE",
        names.schema, names.capture
    ))
    .await?;
    uninstalled?;
    RedisStore::builder(options.redis_url.as_str())
        .prefix(names.prefix.as_str())
        .build()
        .await?
        .remove_namespace()
        .await?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let options = parse_args()?;
    if let Some(names) = &options.reader {
        return reader(&options, names).await;
    }
    let names = Names::new();
    let mut db = connect(&options.postgres_url, None).await?;
    let result = demo(&options, &names, &mut db).await;
    let cleaned = cleanup(&options, &names, &mut db).await;
    if let Err(error) = &result {
        eprintln!("\nFAILED: {error}");
    }
    match &cleaned {
        Ok(()) => println!(
            "Cleaned up: schemas {} and {}, Redis keys {{{}}}:*",
            names.schema, names.capture, names.prefix
        ),
        Err(error) => eprintln!("cleanup failed: {error}"),
    }
    result.and(cleaned)
}
