//! `matroska-bench`: measures each Matroska store against its raw baseline in the same run and
//! prints a table (and, with `--json`, one JSON object per line) of medians and ratios.
//!
//! ```text
//! cargo run --release -p matroska-bench -- --store memory --json
//! ```
//!
//! Each store is a module with an `async fn run(Plan) -> Result<Vec<Row>>` and a list of its
//! operation names (`OPS`, for `--op`); adding one means a [`StoreKind`] variant, its options, its
//! names in the `--op` check, and a match arm in [`run`].

// Printing the results is this binary's whole job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod batch;
mod harness;
mod memory;
mod postgres;
mod redis;
mod refresh;
mod report;

use std::ffi::OsString;
use std::io::{self, Write};
use std::process::ExitCode;

use crate::harness::Plan;
use crate::report::Row;

/// The error of this binary: any error, shown to the user with its message.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;
/// A result with [`Error`].
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

const USAGE: &str = "\
Benchmarks of every Matroska store against its raw baseline.

Usage: matroska-bench [--store STORE]... [--op OP]... [--rounds N] [--json] [--postgres-url URL]
                      [--redis-url URL]

Options:
  --store STORE   a store to measure (repeatable; default: memory)
                    memory   MemoryStore vs a plain moka::sync::Cache
                    postgres PgStore vs raw tokio-postgres (needs --postgres-url)
                    redis    RedisStore vs raw commands on its connection (needs --redis-url)
  --op OP         measure only this operation (repeatable; default: all), e.g. for profiling;
                    memory: get_hit get_miss put_3_tags invalidate_1000 invalidate_1000_reclaimed
                      refresh_ahead
                    postgres: get_hit get_miss put_3_tags_ttl fill_3_tags_ttl invalidate_10
                    redis: get_hit get_miss put_3_tags_ttl fill_3_tags_ttl invalidate_10 get_hit_64
                      refresh_ahead
  --postgres-url URL  the PostgreSQL server of --store postgres (a superuser or a role that may
                    create schemas; the run creates and drops its own schemas)
  --redis-url URL the Redis server of --store redis (the run uses its own key prefixes and
                    removes its keys afterwards)
  --rounds N      measured rounds per operation, medians are reported (default: 15)
  --json          print one JSON object per row on stdout (the table then goes to stderr)
  -h, --help      print this help

Build with --release: a debug build measures the debug build.
On an idle machine, round trips to a server are fast when the benchmark and the server's
backend share a core and slow when they wake each other's idle core, and the two connections
compared may be placed differently: pin both (taskset -c 1 for the server and for the
benchmark, or different cores for the slow case) to compare like with like.";

/// Default number of measured rounds.
const DEFAULT_ROUNDS: usize = 15;
/// Unmeasured warm-up rounds before each operation.
const WARMUP_ROUNDS: usize = 2;

/// A store the benchmark can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    /// `MemoryStore` against moka.
    Memory,
    /// `PgStore` against raw tokio-postgres.
    Postgres,
    /// `RedisStore` against raw commands.
    Redis,
}

impl StoreKind {
    fn parse(name: &str) -> Result<Self> {
        match name {
            "memory" => Ok(Self::Memory),
            "postgres" => Ok(Self::Postgres),
            "redis" => Ok(Self::Redis),
            other => {
                Err(format!("unknown store {other:?} (known: memory, postgres, redis)").into())
            }
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    /// Stores to measure, in order, without repeats.
    stores: Vec<StoreKind>,
    /// Whether to print JSON lines.
    json: bool,
    /// Measured rounds per operation.
    rounds: usize,
    /// Operations to measure; empty means all.
    ops: Vec<String>,
    /// The server of `--store postgres`.
    postgres_url: Option<String>,
    /// The server of `--store redis`.
    redis_url: Option<String>,
}

/// Parses the arguments (without the program name); `Ok(None)` means `--help`.
fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Option<Options>> {
    let mut args = args.into_iter();
    let mut options = Options {
        stores: Vec::new(),
        json: false,
        rounds: DEFAULT_ROUNDS,
        ops: Vec::new(),
        postgres_url: None,
        redis_url: None,
    };
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|arg| format!("argument {} is not UTF-8", arg.display()))?;
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.into())),
            _ => (arg, None),
        };
        let mut value = || -> Result<String> {
            let value = inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| Error::from(format!("{flag} needs a value (see --help)")))?;
            value
                .into_string()
                .map_err(|v| format!("value {} of {flag} is not UTF-8", v.display()).into())
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--json" if inline.is_none() => options.json = true,
            "--json" => return Err("--json takes no value".into()),
            "--store" => {
                let store = StoreKind::parse(&value()?)?;
                if !options.stores.contains(&store) {
                    options.stores.push(store);
                }
            }
            "--op" => {
                let op = value()?;
                if ![memory::OPS, postgres::OPS, redis::OPS, batch::OPS]
                    .iter()
                    .any(|ops| ops.contains(&op.as_str()))
                {
                    return Err(format!("unknown operation {op:?} (see --help)").into());
                }
                options.ops.push(op);
            }
            "--postgres-url" => options.postgres_url = Some(value()?),
            "--redis-url" => options.redis_url = Some(value()?),
            "--rounds" => {
                let text = value()?;
                options.rounds = match text.parse() {
                    Ok(n) if n >= 1 => n,
                    _ => {
                        return Err(
                            format!("--rounds needs a positive integer, not {text:?}").into()
                        );
                    }
                };
            }
            other => return Err(format!("unknown argument {other:?} (see --help)").into()),
        }
    }
    if options.stores.is_empty() {
        options.stores.push(StoreKind::Memory);
    }
    if options.stores.contains(&StoreKind::Postgres) && options.postgres_url.is_none() {
        return Err("--store postgres needs --postgres-url URL".into());
    }
    if options.stores.contains(&StoreKind::Redis) && options.redis_url.is_none() {
        return Err("--store redis needs --redis-url URL".into());
    }
    Ok(Some(options))
}

/// Measures every requested store inside one current-thread runtime, entered once, so that no
/// per-operation runtime overhead is measured.
fn run(options: &Options) -> Result<Vec<Row>> {
    let plan = Plan {
        warmup: WARMUP_ROUNDS,
        rounds: options.rounds,
        only: &options.ops,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut rows = Vec::new();
        for store in &options.stores {
            match store {
                StoreKind::Memory => {
                    rows.extend(memory::run(plan).await?);
                    rows.extend(batch::memory(plan).await?);
                }
                StoreKind::Postgres => {
                    let url = options.postgres_url.as_deref().unwrap_or_default();
                    rows.extend(postgres::run(plan, url).await?);
                    rows.extend(batch::postgres(plan, url).await?);
                }
                StoreKind::Redis => {
                    let url = options.redis_url.as_deref().unwrap_or_default();
                    rows.extend(redis::run(plan, url).await?);
                    rows.extend(batch::redis(plan, url).await?);
                }
            }
        }
        Ok(rows)
    })
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args_os().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("matroska-bench: {err}");
            return ExitCode::from(2);
        }
    };
    if cfg!(debug_assertions) {
        eprintln!("matroska-bench: warning: this is a debug build; use --release");
    }
    let outcome = run(&options).and_then(|rows| {
        if options.json {
            report::write_table(&mut io::stderr().lock(), &rows)?;
            report::write_json_lines(&mut io::stdout().lock(), &rows)?;
        } else {
            report::write_table(&mut io::stdout().lock(), &rows)?;
        }
        io::stdout().flush()?;
        Ok(())
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("matroska-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Options>> {
        parse_args(args.iter().map(OsString::from))
    }

    #[test]
    fn defaults_to_the_memory_store() {
        let options = parse(&[]).unwrap().unwrap();
        assert_eq!(options.stores, [StoreKind::Memory]);
        assert_eq!(options.rounds, DEFAULT_ROUNDS);
        assert!(!options.json);
    }

    #[test]
    fn parses_repeated_stores_ops_rounds_and_json() {
        let options = parse(&[
            "--store",
            "memory",
            "--store=memory",
            "--rounds=5",
            "--json",
            "--op",
            "get_hit",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(options.stores, [StoreKind::Memory]);
        assert_eq!(options.rounds, 5);
        assert!(options.json);
        assert_eq!(options.ops, ["get_hit"]);
        assert!(parse(&["--help"]).unwrap().is_none());
    }

    #[test]
    fn rejects_bad_arguments() {
        for args in [
            &["--store", "nope"][..],
            &["--store"],
            &["--rounds", "0"],
            &["--rounds", "x"],
            &["--fast"],
            &["--json=yes"],
            &["--op", "get_all"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }
}
