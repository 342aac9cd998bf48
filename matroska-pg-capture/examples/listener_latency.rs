//! Commit-to-invalidation latency of the change-capture listener.
//!
//! A writer connection (plain tokio-postgres, no Matroska on its path) commits one change per
//! update N, and a [`Listener`] with an applier invalidates its tag `i:bench:N` in a store
//! holding an entry `bench:N` that depends on it. The change is, by default,
//! `BEGIN; SELECT pg_notify(channel, '{"v":1,"tags":["i:bench:N"]}'); COMMIT` (what the triggers
//! send, without them). With `--trigger` it is a plain autocommit
//! `UPDATE items SET version = version + 1 WHERE id = N` on a private table with change capture
//! installed (`Capture::install`: kind `bench`, id `id`, NOTIFY only, a capture schema and a
//! channel of its own): the generated trigger computes the tags (`i:bench:N`, `k:bench`) and
//! sends them at commit, and the entry depends on `Dep::id("bench", N)`. The table and its
//! schemas are dropped at the end. Measured from the moment the commit returns to the writer:
//!
//! - default (one process, separate connections): until the subscriber received the event, and
//!   until the applier's store call returned (signalled by `on_applied`); the entry is then
//!   checked to be gone. The store is a RedisStore with `--redis-url`, else a MemoryStore.
//! - `--two-process` (needs `--redis-url`): the listener and its applier run in a child process;
//!   the writer's process polls the RedisStore with `get` until the entry is gone.
//!
//! ```text
//! ./scripts/with-servers sh -c 'cargo run --release -p matroska-pg-capture --example listener_latency -- \
//!     --postgres-url "$MATROSKA_TEST_POSTGRES_URL" --redis-url "$MATROSKA_TEST_REDIS_URL" --updates 1000'
//! # through the generated trigger, the writer and the listener in two processes:
//! cargo run --release -p matroska-pg-capture --example listener_latency -- \
//!     --postgres-url postgres://postgres@127.0.0.1:5432/postgres --redis-url redis://127.0.0.1:6379 \
//!     --updates 1000 --trigger --two-process
//! ```
//!
//! Options: `--postgres-url URL` (default `$MATROSKA_TEST_POSTGRES_URL`), `--redis-url URL`
//! (default `$MATROSKA_TEST_REDIS_URL`; `--memory` ignores it), `--updates N` (1000),
//! `--warmup N` (50), `--trigger`, `--two-process`, `--json`.

// Printing the figures is this program's job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::hash::{BuildHasher, RandomState};
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use matroska_core::store::Lookup;
use matroska_core::{Bytes, Dep, Key, MemoryStore, Store, Tag};
use matroska_pg_capture::capture::{Capture, TableCapture, TableRef};
use matroska_pg_capture::listener::{Event, Listener, encode_payload};
use matroska_redis::RedisStore;
use tokio::sync::mpsc;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

/// How long one expected event may take before the run fails.
const LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Options {
    postgres_url: String,
    redis_url: Option<String>,
    updates: usize,
    warmup: usize,
    two_process: bool,
    /// The writer UPDATEs a captured table instead of calling `pg_notify` itself.
    trigger: bool,
    json: bool,
    /// Internal: run as the listener child of `--two-process` (channel, prefix).
    child: Option<(String, String)>,
}

fn parse_args() -> Result<Options> {
    let mut args = std::env::args().skip(1);
    let mut options = Options {
        postgres_url: std::env::var("MATROSKA_TEST_POSTGRES_URL").unwrap_or_default(),
        redis_url: std::env::var("MATROSKA_TEST_REDIS_URL")
            .ok()
            .filter(|u| !u.is_empty()),
        updates: 1000,
        warmup: 50,
        two_process: false,
        trigger: false,
        json: false,
        child: None,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--postgres-url" => options.postgres_url = value("--postgres-url")?,
            "--redis-url" => options.redis_url = Some(value("--redis-url")?),
            "--memory" => options.redis_url = None,
            "--updates" => options.updates = value("--updates")?.parse()?,
            "--warmup" => options.warmup = value("--warmup")?.parse()?,
            "--two-process" => options.two_process = true,
            "--trigger" => options.trigger = true,
            "--json" => options.json = true,
            "--child" => {
                let channel = value("--child")?;
                let prefix = value("--child")?;
                options.child = Some((channel, prefix));
            }
            "-h" | "--help" => {
                println!("see the header of matroska-pg-capture/examples/listener_latency.rs");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if options.postgres_url.is_empty() {
        return Err("set --postgres-url or MATROSKA_TEST_POSTGRES_URL".into());
    }
    if options.updates == 0 {
        return Err("--updates must be at least 1".into());
    }
    Ok(options)
}

fn unique(prefix: &str) -> String {
    let seed = (std::process::id(), Instant::now());
    format!("{prefix}_{:012x}", RandomState::new().hash_one(seed) >> 16)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let options = parse_args()?;
    if let Some((channel, prefix)) = &options.child {
        return child(&options, channel, prefix).await;
    }
    let channel = unique("bench_listener");
    let captured = if options.trigger {
        Some(Captured::install(&options, &channel).await?)
    } else {
        None
    };
    let series = if options.two_process {
        two_process(&options, &channel, captured.as_ref()).await
    } else {
        one_process(&options, &channel, captured.as_ref()).await
    };
    if let Some(captured) = captured {
        captured.remove(&options.postgres_url).await?;
    }
    report(&options, &series?);
    Ok(())
}

/// `--trigger`: a private table `items` of `--warmup` + `--updates` rows, with change capture
/// installed (kind `bench`, NOTIFY only on the run's channel, a capture schema of its own).
struct Captured {
    schema: String,
    capture: String,
}

impl Captured {
    async fn install(options: &Options, channel: &str) -> Result<Self> {
        let schema = unique("bench_listener_app");
        let captured = Self {
            capture: format!("{schema}_cap"),
            schema,
        };
        if let Err(error) = captured.create(options, channel).await {
            if let Err(cleanup) = captured.remove(&options.postgres_url).await {
                eprintln!("cleanup failed: {cleanup}");
            }
            return Err(error);
        }
        Ok(captured)
    }

    async fn create(&self, options: &Options, channel: &str) -> Result<()> {
        let mut admin = writer(&options.postgres_url).await?;
        let rows = i64::try_from(options.warmup + options.updates)?;
        admin
            .batch_execute(&format!(
                "CREATE SCHEMA \"{0}\";
                 CREATE TABLE \"{0}\".items (id bigint PRIMARY KEY, version bigint NOT NULL);
                 INSERT INTO \"{0}\".items SELECT g, 0 FROM generate_series(0, {rows} - 1) g",
                self.schema
            ))
            .await?;
        admin
            .batch_execute(&format!("VACUUM ANALYZE \"{}\".items", self.schema))
            .await?;
        let items = TableCapture::new(TableRef::new(Some(&self.schema), "items")?, "bench")
            .id(["id"])
            .channel(channel);
        Capture::new(&self.capture)?
            .install(&mut admin, &[items])
            .await?;
        Ok(())
    }

    /// The UPDATE the writer runs for update `$1`.
    fn update_sql(&self) -> String {
        format!(
            "UPDATE \"{}\".items SET version = version + 1 WHERE id = $1",
            self.schema
        )
    }

    async fn remove(&self, url: &str) -> Result<()> {
        let admin = writer(url).await?;
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE; DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.schema, self.capture
            ))
            .await?;
        Ok(())
    }
}

/// A named list of signed latencies in nanoseconds.
struct Series {
    name: &'static str,
    nanos: Vec<i64>,
}

/// `later - earlier`, negative when `later` came first.
fn signed(later: Instant, earlier: Instant) -> i64 {
    match later.checked_duration_since(earlier) {
        Some(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        None => -i64::try_from(earlier.duration_since(later).as_nanos()).unwrap_or(i64::MAX),
    }
}

async fn store_for(options: &Options, prefix: &str) -> Result<(Arc<dyn Store>, &'static str)> {
    Ok(match &options.redis_url {
        Some(url) => (
            Arc::new(
                RedisStore::builder(url.as_str())
                    .prefix(prefix)
                    .build()
                    .await?,
            ),
            "RedisStore",
        ),
        None => (Arc::new(MemoryStore::new()), "MemoryStore"),
    })
}

async fn writer(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("writer connection: {error}");
        }
    });
    Ok(client)
}

/// The writer: its connection and the statement it runs per update.
struct Writer {
    client: tokio_postgres::Client,
    statement: tokio_postgres::Statement,
    channel: String,
    /// `--trigger`: the statement is the UPDATE of a captured table.
    trigger: bool,
}

impl Writer {
    async fn new(url: &str, channel: &str, captured: Option<&Captured>) -> Result<Self> {
        let client = writer(url).await?;
        let sql = captured.map_or_else(
            || "SELECT pg_notify($1, $2)".to_owned(),
            Captured::update_sql,
        );
        let statement = client.prepare(&sql).await?;
        Ok(Self {
            client,
            statement,
            channel: channel.to_owned(),
            trigger: captured.is_some(),
        })
    }

    /// What the round trip series is called.
    fn name(&self) -> &'static str {
        if self.trigger {
            "writer UPDATE round trips (autocommit, trigger)"
        } else {
            "writer BEGIN..COMMIT round trips"
        }
    }

    /// Commits update `n`, whose tag is `tag`: `UPDATE .. WHERE id = n` (autocommit), or
    /// `BEGIN; SELECT pg_notify(..); COMMIT`. Returns when the commit returned.
    async fn commit(&mut self, n: i64, tag: &Tag) -> Result<Instant> {
        if self.trigger {
            let updated = self.client.execute(&self.statement, &[&n]).await?;
            if updated != 1 {
                return Err(format!("UPDATE of row {n} changed {updated} rows").into());
            }
            return Ok(Instant::now());
        }
        let payload = encode_payload(std::slice::from_ref(tag));
        let tx = self.client.transaction().await?;
        tx.execute(&self.statement, &[&self.channel, &payload])
            .await?;
        tx.commit().await?;
        Ok(Instant::now())
    }
}

/// How the writer changes things, for the report.
fn mode(captured: Option<&Captured>) -> String {
    captured.map_or_else(
        || "writer: SELECT pg_notify".to_owned(),
        |c| format!("writer: UPDATE \"{}\".items, capture trigger", c.schema),
    )
}

/// Waits for the report of `tag` on `rx`.
async fn wait_for(
    rx: &mut mpsc::UnboundedReceiver<(Instant, Vec<Tag>)>,
    tag: &Tag,
) -> Result<Instant> {
    loop {
        match tokio::time::timeout(LIMIT, rx.recv()).await {
            Ok(Some((at, tags))) if tags.contains(tag) => return Ok(at),
            Ok(Some(_)) => {}
            Ok(None) => return Err("the listener stopped".into()),
            Err(_) => return Err(format!("{tag} was not seen within {LIMIT:?}").into()),
        }
    }
}

async fn one_process(
    options: &Options,
    channel: &str,
    captured: Option<&Captured>,
) -> Result<Vec<Series>> {
    let prefix = unique("bench_listener");
    let (store, store_name) = store_for(options, &prefix).await?;
    eprintln!(
        "one process, store: {store_name}, channel {channel}, {}",
        mode(captured)
    );
    let listener = Listener::builder(&options.postgres_url)
        .channel(channel)
        .watch_kinds(["bench"])
        .start()?;
    let (applied_tx, mut applied_rx) = mpsc::unbounded_channel();
    let _applier = listener
        .applier(Arc::clone(&store))
        .trust_start(true)
        .on_applied(move |applied| {
            let _ = applied_tx.send((Instant::now(), applied.tags.clone()));
        })
        .spawn()?;
    let (event_tx, mut event_rx) = mpsc::unbounded_channel();
    let mut subscription = listener.subscribe();
    tokio::spawn(async move {
        while let Some(event) = subscription.recv().await {
            if let Event::Tags(batch) = event {
                let _ = event_tx.send((Instant::now(), batch.tags().to_vec()));
            }
        }
    });
    listener.wait_connected(LIMIT).await?;
    let mut writer = Writer::new(&options.postgres_url, channel, captured).await?;

    let (mut commit, mut event, mut applied) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..options.warmup + options.updates {
        let id = i64::try_from(n)?;
        let tag = Dep::id("bench", id).to_tag()?;
        let key = Key::new(format!("bench:{n}"))?;
        store
            .put(
                &key,
                Bytes::from_static(b"v"),
                std::slice::from_ref(&tag),
                None,
                None,
            )
            .await?;
        let begin = Instant::now();
        let committed = writer.commit(id, &tag).await?;
        let event_at = wait_for(&mut event_rx, &tag).await?;
        let applied_at = wait_for(&mut applied_rx, &tag).await?;
        if let Lookup::Hit(_) = store.get(&key).await? {
            return Err(format!("{key} is still cached after its invalidation was applied").into());
        }
        if n >= options.warmup {
            commit.push(signed(committed, begin));
            event.push(signed(event_at, committed));
            applied.push(signed(applied_at, committed));
        }
    }
    listener.shutdown().await;
    if let Some(url) = &options.redis_url {
        remove_namespace(url, &prefix).await?;
    }
    Ok(vec![
        Series {
            name: writer.name(),
            nanos: commit,
        },
        Series {
            name: "commit returned -> event at a subscriber",
            nanos: event,
        },
        Series {
            name: "commit returned -> store invalidation returned",
            nanos: applied,
        },
    ])
}

async fn two_process(
    options: &Options,
    channel: &str,
    captured: Option<&Captured>,
) -> Result<Vec<Series>> {
    if options.redis_url.is_none() {
        return Err("--two-process needs --redis-url (the processes share the store)".into());
    }
    let prefix = unique("bench_listener");
    let (store, _) = store_for(options, &prefix).await?;
    eprintln!(
        "two processes, store: RedisStore, channel {channel}, {}",
        mode(captured)
    );
    let mut args = vec![
        "--postgres-url".to_owned(),
        options.postgres_url.clone(),
        "--child".to_owned(),
        channel.to_owned(),
        prefix.clone(),
    ];
    if let Some(url) = &options.redis_url {
        args.extend(["--redis-url".to_owned(), url.clone()]);
    }
    let mut child = Command::new(std::env::current_exe()?)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await??;
    if ready.trim() != "ready" {
        let _ = child.kill();
        return Err(format!("the listener process did not start: {ready:?}").into());
    }
    let result = measure_two_process(options, &store, channel, captured).await;
    // Closing its stdin ends the child.
    drop(child.stdin.take());
    let _ = child.wait();
    if let Some(url) = &options.redis_url {
        remove_namespace(url, &prefix).await?;
    }
    result
}

/// Deletes every Redis key of the store's namespace `prefix` (`clear` leaves its counters).
async fn remove_namespace(url: &str, prefix: &str) -> Result<()> {
    let store = RedisStore::builder(url).prefix(prefix).build().await?;
    store.remove_namespace().await?;
    Ok(())
}

async fn measure_two_process(
    options: &Options,
    store: &Arc<dyn Store>,
    channel: &str,
    captured: Option<&Captured>,
) -> Result<Vec<Series>> {
    let mut writer = Writer::new(&options.postgres_url, channel, captured).await?;
    let (mut commit, mut gone, mut polls) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..options.warmup + options.updates {
        let id = i64::try_from(n)?;
        let tag = Dep::id("bench", id).to_tag()?;
        let key = Key::new(format!("bench:{n}"))?;
        store
            .put(
                &key,
                Bytes::from_static(b"v"),
                std::slice::from_ref(&tag),
                None,
                None,
            )
            .await?;
        let begin = Instant::now();
        let committed = writer.commit(id, &tag).await?;
        let mut count = 0_i64;
        let gone_at = loop {
            count += 1;
            if let Lookup::Miss(_) = store.get(&key).await? {
                break Instant::now();
            }
            if committed.elapsed() > LIMIT {
                return Err(format!("{key} was still cached {LIMIT:?} after the commit").into());
            }
        };
        if n >= options.warmup {
            commit.push(signed(committed, begin));
            gone.push(signed(gone_at, committed));
            polls.push(count);
        }
    }
    Ok(vec![
        Series {
            name: writer.name(),
            nanos: commit,
        },
        Series {
            name: "commit returned -> entry gone (other process, polling get)",
            nanos: gone,
        },
        Series {
            name: "gets until gone (a count, not ns)",
            nanos: polls,
        },
    ])
}

/// The listener process of `--two-process`: applies to the shared RedisStore until stdin closes.
async fn child(options: &Options, channel: &str, prefix: &str) -> Result<()> {
    let (store, _) = store_for(options, prefix).await?;
    let listener = Listener::builder(&options.postgres_url)
        .channel(channel)
        .watch_kinds(["bench"])
        .start()?;
    let _applier = listener.applier(store).trust_start(true).spawn()?;
    listener.wait_connected(LIMIT).await?;
    println!("ready");
    std::io::stdout().flush()?;
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    })
    .await?;
    listener.shutdown().await;
    Ok(())
}

fn percentile(sorted: &[i64], q: f64) -> i64 {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[allow(clippy::cast_precision_loss)]
fn report(options: &Options, series: &[Series]) {
    let micros = |nanos: i64| nanos as f64 / 1000.0;
    println!(
        "{} updates ({} warm-up), figures in microseconds",
        options.updates, options.warmup
    );
    println!(
        "{:<60} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "series", "p50", "p90", "p99", "max", "<0"
    );
    for s in series {
        let mut sorted = s.nanos.clone();
        sorted.sort_unstable();
        let negative = sorted.iter().filter(|n| **n < 0).count();
        let (p50, p90, p99, max) = (
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.9),
            percentile(&sorted, 0.99),
            sorted.last().copied().unwrap_or_default(),
        );
        if s.name.contains("count") {
            println!(
                "{:<60} {p50:>9} {p90:>9} {p99:>9} {max:>9} {negative:>9}",
                s.name
            );
        } else {
            println!(
                "{:<60} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {negative:>9}",
                s.name,
                micros(p50),
                micros(p90),
                micros(p99),
                micros(max)
            );
        }
        if options.json {
            println!(
                "{{\"series\":{:?},\"n\":{},\"p50_ns\":{p50},\"p90_ns\":{p90},\"p99_ns\":{p99},\"max_ns\":{max},\"negative\":{negative}}}",
                s.name,
                sorted.len()
            );
        }
    }
}
