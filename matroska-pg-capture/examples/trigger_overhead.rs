//! Trigger overhead: single-row UPDATE throughput on a table with Matroska's capture triggers
//! installed against the same table without them, same run, same server, same connection.
//!
//! Two identical tables of `--rows` rows; the captured one invalidates a PgStore in-transaction
//! and NOTIFYs (`--target both`, the default; or `store` / `notify`). Rounds alternate between
//! the tables (`--rounds` rounds of `--updates` autocommit UPDATEs each, random rows); the figure
//! is the median over rounds of each table's throughput, and their ratio. Two kinds of update:
//! `title` (no scope watches it: the id tag and `k:<kind>`) and `category` (the row moves between
//! two scopes: four more tags).
//!
//! `--bulk N`: instead, statements of `N` rows each (10,000 by default), timed one by one in
//! rounds that alternate between the tables like above: an UPDATE of `N` rows moving them between
//! scopes, an INSERT of `N` new rows and a DELETE of them; the figure is the median time of each
//! table's statement, and their ratio (trigger over plain: above 1 is slower). Both tables are
//! vacuumed between rounds (untimed), so dead rows do not pile up.
//!
//! ```text
//! cargo run --release -p matroska-pg-capture --example trigger_overhead -- \
//!     --postgres-url postgres://postgres@127.0.0.1:5432/postgres
//! cargo run --release -p matroska-pg-capture --example trigger_overhead -- \
//!     --postgres-url postgres://postgres@127.0.0.1:5432/postgres --bulk 10000 --rounds 9
//! ```

// Printing the figures is this program's job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::hash::{BuildHasher, RandomState};
use std::time::Instant;

use matroska_pg_capture::capture::{Capture, ScopeSet, TableCapture, TableRef};
use matroska_postgres::PgStore;

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Options {
    url: String,
    rows: i64,
    rounds: usize,
    updates: usize,
    target: String,
    /// Rows per statement of the bulk mode; `None`: single-row UPDATEs.
    bulk: Option<i64>,
}

fn parse_args() -> Result<Options, Error> {
    let mut options = Options {
        url: std::env::var("MATROSKA_TEST_POSTGRES_URL").unwrap_or_default(),
        rows: 10_000,
        rounds: 10,
        updates: 500,
        target: "both".to_owned(),
        bulk: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--postgres-url" => options.url = value()?,
            "--rows" => options.rows = value()?.parse()?,
            "--rounds" => options.rounds = value()?.parse()?,
            "--updates" => options.updates = value()?.parse()?,
            "--target" => options.target = value()?,
            "--bulk" => options.bulk = Some(value()?.parse()?),
            "-h" | "--help" => {
                println!("see the header of matroska-pg-capture/examples/trigger_overhead.rs");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if options.url.is_empty() {
        return Err("set --postgres-url or MATROSKA_TEST_POSTGRES_URL".into());
    }
    if !["both", "store", "notify"].contains(&options.target.as_str()) {
        return Err("--target is both, store or notify".into());
    }
    if options.rounds == 0 || options.updates == 0 || options.rows < 2 {
        return Err("--rounds, --updates must be positive and --rows at least 2".into());
    }
    if options.bulk.is_some_and(|n| n < 1 || n > options.rows) {
        return Err("--bulk must be between 1 and --rows".into());
    }
    Ok(options)
}

/// A small xorshift generator: random rows without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: i64) -> i64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        i64::try_from(self.0 % n.unsigned_abs()).unwrap_or(0) + 1
    }
}

#[allow(clippy::cast_precision_loss)]
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let options = parse_args()?;
    let suffix = format!("{:012x}", RandomState::new().hash_one(Instant::now()) >> 16);
    let app = format!("bench_trig_{suffix}");
    let (client, connection) = tokio_postgres::connect(&options.url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let mut admin = {
        let (c, conn) = tokio_postgres::connect(&options.url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        c
    };
    let store = PgStore::builder(&options.url)
        .schema(format!("bench_trig_store_{suffix}"))
        .build()?;
    let result = run(&options, &client, &mut admin, &app, &store).await;
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS \"{app}\" CASCADE; DROP SCHEMA IF EXISTS \"{app}_cap\" CASCADE;
             DROP SCHEMA IF EXISTS \"{}\" CASCADE;",
            store.schema()
        ))
        .await?;
    result
}

async fn run(
    options: &Options,
    client: &tokio_postgres::Client,
    admin: &mut tokio_postgres::Client,
    app: &str,
    store: &PgStore,
) -> Result<(), Error> {
    let settings = client
        .query_one(
            "SELECT version(), current_setting('fsync'), current_setting('synchronous_commit')",
            &[],
        )
        .await?;
    let (version, fsync, sync): (String, String, String) =
        (settings.get(0), settings.get(1), settings.get(2));
    println!("{version}\nfsync={fsync} synchronous_commit={sync}");
    admin
        .batch_execute(&format!("CREATE SCHEMA \"{app}\""))
        .await?;
    for table in ["plain", "captured"] {
        admin
            .batch_execute(&format!(
                "CREATE TABLE \"{app}\".{table} (id bigint PRIMARY KEY, category text,
                     published boolean, title text);
                 INSERT INTO \"{app}\".{table}
                     SELECT g, 'c' || (g % 10), g % 2 = 0, 't' || g
                     FROM generate_series(1, {}) g;",
                options.rows
            ))
            .await?;
        admin
            .batch_execute(&format!("VACUUM ANALYZE \"{app}\".{table}"))
            .await?;
    }
    let mut capture = TableCapture::new(TableRef::new(Some(app), "captured")?, "article")
        .id(["id"])
        .scope(ScopeSet::new(["category", "published"]))
        .scope(ScopeSet::new(["published"]))
        .channel(format!("{app}_ch"))
        .notify(options.target != "store");
    if options.target != "notify" {
        store.migrate().await?;
        capture = capture.store_schema(store.schema().as_str())?;
    }
    Capture::new(&format!("{app}_cap"))?
        .install(admin, &[capture])
        .await?;
    if let Some(n) = options.bulk {
        bulk(options, client, admin, app, n).await?;
        store.close();
        return Ok(());
    }
    println!(
        "{} rows per table; {} rounds of {} single-row autocommit UPDATEs per table and kind; \
         trigger target: {}",
        options.rows, options.rounds, options.updates, options.target
    );
    println!(
        "{:<10} {:>14} {:>14} {:>8} {:>14} {:>14}",
        "update", "plain ops/s", "trigger ops/s", "ratio", "plain p50 us", "trigger p50 us"
    );
    for (kind, set) in [
        ("title", "title = title || 'x'"),
        ("category", "category = category || 'x'"),
    ] {
        measure(options, client, app, kind, set).await?;
    }
    store.close();
    Ok(())
}

/// One row of the table: `--rounds` rounds of single-row UPDATEs `SET {set}` on each table.
async fn measure(
    options: &Options,
    client: &tokio_postgres::Client,
    app: &str,
    kind: &str,
    set: &str,
) -> Result<(), Error> {
    let plain = client
        .prepare(&format!("UPDATE \"{app}\".plain SET {set} WHERE id = $1"))
        .await?;
    let captured = client
        .prepare(&format!(
            "UPDATE \"{app}\".captured SET {set} WHERE id = $1"
        ))
        .await?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut plain_rates, mut trig_rates) = (Vec::new(), Vec::new());
    let (mut plain_lat, mut trig_lat) = (Vec::new(), Vec::new());
    // One warm-up round each, then alternate which table goes first.
    for round in 0..=options.rounds {
        let order = if round % 2 == 0 {
            [(&plain, false), (&captured, true)]
        } else {
            [(&captured, true), (&plain, false)]
        };
        for (statement, triggered) in order {
            let start = Instant::now();
            for _ in 0..options.updates {
                let id = rng.below(options.rows);
                let one = Instant::now();
                client.execute(statement, &[&id]).await?;
                if round > 0 {
                    let micros = one.elapsed().as_secs_f64() * 1e6;
                    if triggered {
                        trig_lat.push(micros);
                    } else {
                        plain_lat.push(micros);
                    }
                }
            }
            #[allow(clippy::cast_precision_loss)]
            let rate = options.updates as f64 / start.elapsed().as_secs_f64();
            if round > 0 {
                if triggered {
                    trig_rates.push(rate);
                } else {
                    plain_rates.push(rate);
                }
            }
        }
    }
    let (p, t) = (median(&mut plain_rates), median(&mut trig_rates));
    println!(
        "{kind:<10} {p:>14.0} {t:>14.0} {:>8.2} {:>14.1} {:>14.1}",
        t / p,
        median(&mut plain_lat),
        median(&mut trig_lat)
    );
    Ok(())
}

/// The bulk mode: `--rounds` rounds of an UPDATE, an INSERT and a DELETE of `n` rows each on each
/// table (alternating which goes first), each statement timed; the median per statement.
async fn bulk(
    options: &Options,
    client: &tokio_postgres::Client,
    admin: &tokio_postgres::Client,
    app: &str,
    n: i64,
) -> Result<(), Error> {
    println!(
        "{} rows per table; {} rounds of one {n}-row UPDATE, INSERT and DELETE per table; \
         trigger target: {}",
        options.rows, options.rounds, options.target
    );
    println!(
        "{:<10} {:>14} {:>14} {:>8}",
        "statement", "plain ms", "trigger ms", "ratio"
    );
    let (first, last) = (options.rows + 1, options.rows + n);
    let statements = |table: &str| {
        [
            // Moves every row to another scope (category and published change), and back the
            // next round.
            format!(
                "UPDATE \"{app}\".{table} SET category = category || 'x', published = NOT published
                 WHERE id <= {n}"
            ),
            format!(
                "INSERT INTO \"{app}\".{table}
                 SELECT g, 'c' || (g % 10), g % 2 = 0, 't' || g FROM generate_series({first}, {last}) g"
            ),
            format!("DELETE FROM \"{app}\".{table} WHERE id >= {first}"),
        ]
    };
    let (plain, captured) = (statements("plain"), statements("captured"));
    let mut times: [[Vec<f64>; 2]; 3] = Default::default();
    // One warm-up round, then alternate which table goes first.
    for round in 0..=options.rounds {
        let order = if round % 2 == 0 {
            [(&plain, 0), (&captured, 1)]
        } else {
            [(&captured, 1), (&plain, 0)]
        };
        for (statements, side) in order {
            for (k, sql) in statements.iter().enumerate() {
                let start = Instant::now();
                client.batch_execute(sql).await?;
                if round > 0 {
                    times[k][side].push(start.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
        // One statement each: VACUUM cannot run in the implicit transaction of a batch.
        for table in ["plain", "captured"] {
            admin
                .batch_execute(&format!("VACUUM \"{app}\".{table}"))
                .await?;
        }
    }
    for (k, name) in ["update", "insert", "delete"].iter().enumerate() {
        let [p, t] = &mut times[k];
        let (p, t) = (median(p), median(t));
        println!("{name:<10} {p:>14.1} {t:>14.1} {:>8.2}", t / p);
    }
    Ok(())
}
