//! `matroska-pg`: installs, lists and removes Matroska's change-capture triggers, listens to
//! what they send, and cleans up and reports on a PgStore schema. Run `matroska-pg --help`.

// Printing is this program's job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::error::Error as StdError;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use matroska_pg_capture::capture::{
    Capture, DEFAULT_CAPTURE_SCHEMA, DEFAULT_MAX_NOTIFIES, Declaration, ScopeSet, TableCapture,
    TableRef,
};
use matroska_pg_capture::listener::{DEFAULT_CHANNEL, Event, Listener};
use matroska_postgres::{PgStore, SchemaName};

type BoxError = Box<dyn StdError + Send + Sync>;

/// Matroska change capture for PostgreSQL: triggers that turn every write to an application
/// table into the cache tags it touches, invalidate a PgStore in the writer's transaction, and
/// NOTIFY the tags at commit for listeners in other processes.
#[derive(Debug, Parser)]
#[command(name = "matroska-pg", version, after_help = EXAMPLES)]
struct Cli {
    /// PostgreSQL connection URL or key=value string [default: $MATROSKA_PG_URL, then
    /// $DATABASE_URL]
    #[arg(long, global = true, value_name = "URL")]
    url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "Examples:
  matroska-pg install capture.toml --dry-run      # print the SQL, change nothing
  matroska-pg install capture.toml
  matroska-pg install --table public.articles --kind article --id id \\
      --scope category,published --scope published/published_at --store-schema app_cache
  matroska-pg list                                # with a health check; --check fails on issues
  matroska-pg listen --count 10
  matroska-pg uninstall public.articles
  matroska-pg cleanup --store-schema app_cache
  matroska-pg stats --store-schema app_cache

The declaration file format is documented in matroska-pg-capture/README.md.";

#[derive(Debug, Subcommand)]
enum Command {
    /// Install (or re-install) triggers on tables, from a TOML declaration file or from flags.
    Install(InstallArgs),
    /// Remove the triggers of tables (by the names recorded at install).
    Uninstall(UninstallArgs),
    /// List what is installed (the registry), with a health check: partitions or children
    /// without triggers, triggers disabled, captured columns renamed or dropped.
    List(ListArgs),
    /// Listen on a channel and print every event (tags and gaps) as it arrives.
    Listen(ListenArgs),
    /// Run a PgStore's cleanup until nothing is left to do, and report what it removed.
    Cleanup(CleanupArgs),
    /// Report a PgStore schema's tables (rows, sizes) and the installed triggers.
    Stats(StatsArgs),
}

#[derive(Debug, Args)]
struct CaptureSchemaArg {
    /// The schema of the helper functions, trigger functions and registry
    #[arg(long, value_name = "SCHEMA", default_value = DEFAULT_CAPTURE_SCHEMA)]
    capture_schema: String,
}

#[derive(Debug, Args)]
struct InstallArgs {
    /// A TOML declaration file (instead of --table, --kind, --id, --scope...)
    #[arg(value_name = "FILE", conflicts_with_all = ["table", "kind", "id", "scope"])]
    file: Option<PathBuf>,
    /// The table: name or schema.name; quote a part with double quotes to keep dots in it.
    /// Names are exact (no case folding)
    #[arg(long, value_name = "TABLE", requires_all = ["kind", "id"])]
    table: Option<String>,
    /// The entity kind the rows are (as in Dep::id(kind, id) and Scopes::new(kind))
    #[arg(long, value_name = "KIND")]
    kind: Option<String>,
    /// The id column(s), comma-separated; several make a tuple id
    #[arg(long, value_name = "COLUMNS", value_delimiter = ',')]
    id: Vec<String>,
    /// A scope field set, comma-separated fields (= columns); after a '/', extra watched
    /// columns: --scope category,published/title. Repeat for each set. Renamed fields and
    /// names with commas or slashes need a declaration file
    #[arg(long, value_name = "FIELDS[/WATCHED]")]
    scope: Vec<String>,
    /// The NOTIFY channel
    #[arg(long, value_name = "CHANNEL", default_value = DEFAULT_CHANNEL)]
    channel: String,
    /// A PgStore schema to invalidate inside the writer's transaction
    #[arg(long, value_name = "SCHEMA")]
    store_schema: Option<String>,
    /// Do not NOTIFY (then --store-schema is required)
    #[arg(long)]
    no_notify: bool,
    /// Notifications per transaction and channel before the rest degrades to the kind-wide tag (a:KIND)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_NOTIFIES)]
    max_notifies: u32,
    /// Print the SQL that would run, and change nothing (the catalog is read)
    #[arg(long)]
    dry_run: bool,
    /// The capture schema [default: the file's capture_schema, else matroska_capture]
    #[arg(long, value_name = "SCHEMA")]
    capture_schema: Option<String>,
}

#[derive(Debug, Args)]
struct UninstallArgs {
    /// Tables to remove the triggers of (as given at install, or schema-qualified)
    #[arg(value_name = "TABLE", required_unless_present = "all")]
    tables: Vec<String>,
    /// Remove every installed table
    #[arg(long, conflicts_with = "tables")]
    all: bool,
    /// With --all: also drop the capture schema (helper functions and registry)
    #[arg(long, requires = "all")]
    purge: bool,
    #[command(flatten)]
    capture: CaptureSchemaArg,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Print the declarations as JSON too
    #[arg(long)]
    json: bool,
    /// Exit with an error when a table's capture is incomplete or stale (for monitoring)
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    capture: CaptureSchemaArg,
}

#[derive(Debug, Args)]
struct ListenArgs {
    /// The channel
    #[arg(long, value_name = "CHANNEL", default_value = DEFAULT_CHANNEL)]
    channel: String,
    /// Exit after this many tag events (default: run until interrupted)
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// How long to wait for the first connection
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    connect_timeout: u64,
}

#[derive(Debug, Args)]
struct CleanupArgs {
    /// The PgStore schema
    #[arg(long, value_name = "SCHEMA")]
    store_schema: String,
}

#[derive(Debug, Args)]
struct StatsArgs {
    /// The PgStore schema to report on
    #[arg(long, value_name = "SCHEMA")]
    store_schema: Option<String>,
    /// Count rows exactly (default: the planner's estimates)
    #[arg(long)]
    exact: bool,
    #[command(flatten)]
    capture: CaptureSchemaArg,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&error),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&*error),
    }
}

fn fail(error: &(dyn StdError + 'static)) -> ExitCode {
    eprintln!("matroska-pg: error: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        eprintln!("  caused by: {cause}");
        source = cause.source();
    }
    ExitCode::FAILURE
}

fn url(cli: &Cli) -> Result<String, BoxError> {
    cli.url
        .clone()
        .or_else(|| std::env::var("MATROSKA_PG_URL").ok())
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            "no database: give --url, or set MATROSKA_PG_URL or DATABASE_URL (e.g. \
             postgres://user@localhost/db)"
                .into()
        })
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, BoxError> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("invalid connection string: {e}"))?;
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "matroska-pg: connection ended");
        }
    });
    Ok(client)
}

async fn run(cli: Cli) -> Result<(), BoxError> {
    let url = url(&cli)?;
    match cli.command {
        Command::Install(args) => install(&url, args).await,
        Command::Uninstall(args) => uninstall(&url, args).await,
        Command::List(args) => list(&url, &args).await,
        Command::Listen(args) => listen(&url, &args).await,
        Command::Cleanup(args) => cleanup(&url, &args).await,
        Command::Stats(args) => stats(&url, &args).await,
    }
}

/// The declaration from a file or from flags.
fn declaration(args: InstallArgs) -> Result<Declaration, BoxError> {
    if let Some(path) = &args.file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let decl = Declaration::from_toml(&text)
            .map_err(|e| format!("{}: {e}{}", path.display(), toml_detail(&e)))?;
        return Ok(match &args.capture_schema {
            Some(schema) => Declaration::new(schema, decl.tables().to_vec())?,
            None => decl,
        });
    }
    let (Some(table), Some(kind)) = (args.table, args.kind) else {
        return Err("give a declaration FILE, or --table, --kind and --id".into());
    };
    let mut capture = TableCapture::new(TableRef::parse(&table)?, kind)
        .id(args.id)
        .channel(args.channel)
        .notify(!args.no_notify)
        .max_notifies(args.max_notifies);
    if let Some(store) = &args.store_schema {
        capture = capture.store_schema(store)?;
    }
    for scope in &args.scope {
        let (fields, watched) = scope.split_once('/').unwrap_or((scope, ""));
        let split = |list: &str| -> Vec<String> {
            list.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        capture = capture.scope(ScopeSet::new(split(fields)).watch(split(watched)));
    }
    Ok(Declaration::new(
        args.capture_schema
            .as_deref()
            .unwrap_or(DEFAULT_CAPTURE_SCHEMA),
        vec![capture],
    )?)
}

fn toml_detail(error: &matroska_pg_capture::capture::CaptureError) -> String {
    error
        .source()
        .map(|source| format!("\n{source}"))
        .unwrap_or_default()
}

async fn install(url: &str, args: InstallArgs) -> Result<(), BoxError> {
    let dry_run = args.dry_run;
    let decl = declaration(args)?;
    let mut client = connect(url).await?;
    let capture = Capture::of(&decl);
    if dry_run {
        let script = capture.script(&client, decl.tables()).await?;
        print!("{script}");
        return Ok(());
    }
    capture.install(&mut client, decl.tables()).await?;
    for table in decl.tables() {
        println!(
            "installed {} as kind {:?}{}{}",
            table.table(),
            table.kind(),
            if table.notifies() {
                format!(", notifying on {:?}", table.notify_channel())
            } else {
                String::new()
            },
            table
                .store()
                .map(|s| format!(", invalidating PgStore schema {s} in-transaction"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

async fn uninstall(url: &str, args: UninstallArgs) -> Result<(), BoxError> {
    let mut client = connect(url).await?;
    let capture = Capture::new(&args.capture.capture_schema)?;
    if args.all {
        let removed = capture.uninstall_all(&mut client, args.purge).await?;
        println!("removed {removed} table(s)");
        if args.purge {
            println!("dropped schema {}", capture.schema());
        }
        return Ok(());
    }
    for table in &args.tables {
        let table = TableRef::parse(table)?;
        if capture.uninstall(&mut client, &table).await? {
            println!("removed {table}");
        } else {
            println!("{table} was not installed (nothing to do)");
        }
    }
    Ok(())
}

async fn list(url: &str, args: &ListArgs) -> Result<(), BoxError> {
    let client = connect(url).await?;
    let capture = Capture::new(&args.capture.capture_schema)?;
    let installed = capture.list(&client).await?;
    if installed.is_empty() {
        println!("nothing installed in {}", capture.schema());
        return Ok(());
    }
    println!(
        "{:<40} {:<16} {:<16} {:<16} {:<10} installed at",
        "table", "kind", "channel", "store schema", "triggers"
    );
    let mut incomplete = 0;
    for i in &installed {
        let at = humantime(i.installed_at);
        println!(
            "{:<40} {:<16} {:<16} {:<16} {:<10} {at} by {}",
            i.table.to_string(),
            i.kind,
            i.channel.as_deref().unwrap_or("(no notify)"),
            i.store_schema.as_deref().unwrap_or("-"),
            if i.is_complete() {
                "4 ok".to_owned()
            } else {
                "INCOMPLETE".to_owned()
            },
            i.installed_by
        );
        if !i.members.is_empty() {
            println!("  with partitions/children: {}", i.members.join(", "));
        }
        for issue in &i.issues {
            println!("  ! {issue}");
        }
        if !i.is_complete() {
            incomplete += 1;
        }
        if args.json {
            println!("  {}", i.declaration);
        }
    }
    if args.check && incomplete > 0 {
        return Err(format!(
            "{incomplete} table(s) have incomplete or stale capture (see the lines marked !)"
        )
        .into());
    }
    Ok(())
}

fn humantime(at: std::time::SystemTime) -> String {
    match std::time::SystemTime::now().duration_since(at) {
        Ok(ago) => format!("{}s ago", ago.as_secs()),
        Err(_) => "just now".to_owned(),
    }
}

async fn listen(url: &str, args: &ListenArgs) -> Result<(), BoxError> {
    let listener = Listener::builder(url).channel(&args.channel).start()?;
    let mut events = listener.subscribe();
    listener
        .wait_connected(Duration::from_secs(args.connect_timeout))
        .await?;
    eprintln!("listening on {:?} (Ctrl-C to stop)", args.channel);
    let mut seen = 0_u64;
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(event) = event else { break };
        println!("{event}");
        std::io::stdout().flush()?;
        if matches!(event, Event::Tags(_)) {
            seen += 1;
            if args.count.is_some_and(|n| seen >= n) {
                break;
            }
        }
    }
    listener.shutdown().await;
    Ok(())
}

async fn cleanup(url: &str, args: &CleanupArgs) -> Result<(), BoxError> {
    let schema = SchemaName::new(args.store_schema.as_str())?;
    let store = PgStore::builder(url).schema(schema.as_str()).build()?;
    let report = store.cleanup().await?;
    println!(
        "cleanup of {schema}: {} expired entries removed, {} entries swept, {} stamps pruned, \
         {} rounds{}",
        report.expired,
        report.swept,
        report.stamps_pruned,
        report.rounds,
        if report.complete {
            ""
        } else {
            " (round limit reached: run it again)"
        }
    );
    store.close();
    Ok(())
}

async fn stats(url: &str, args: &StatsArgs) -> Result<(), BoxError> {
    let client = connect(url).await?;
    if let Some(schema) = &args.store_schema {
        let schema = SchemaName::new(schema.as_str())?;
        let rows = client
            .query(
                "SELECT c.relname::text, c.oid::regclass::text, c.relpersistence::text,
                        greatest(c.reltuples, 0)::bigint, pg_table_size(c.oid),
                        pg_indexes_size(c.oid)
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relkind = 'r'
                 ORDER BY c.relname",
                &[&schema.as_str()],
            )
            .await?;
        if rows.is_empty() {
            return Err(
                format!("schema {schema} has no tables (is it a migrated PgStore?)").into(),
            );
        }
        println!("PgStore schema {schema}:");
        println!(
            "  {:<20} {:>12} {:>12} {:>12} {:>9}",
            "table",
            if args.exact { "rows" } else { "rows (est.)" },
            "table bytes",
            "index bytes",
            "logged"
        );
        for row in rows {
            let name: String = row.get(0);
            let qualified: String = row.get(1);
            let mut count: i64 = row.get(3);
            if args.exact {
                count = client
                    .query_one(&format!("SELECT count(*) FROM {qualified}"), &[])
                    .await?
                    .get(0);
            }
            let persistence: String = row.get(2);
            println!(
                "  {:<20} {:>12} {:>12} {:>12} {:>9}",
                name,
                count,
                row.get::<_, i64>(4),
                row.get::<_, i64>(5),
                if persistence == "u" {
                    "unlogged"
                } else {
                    "logged"
                }
            );
        }
    }
    let capture = Capture::new(&args.capture.capture_schema)?;
    let installed = capture.list(&client).await?;
    println!(
        "change capture ({}): {} table(s)",
        capture.schema(),
        installed.len()
    );
    for i in installed {
        println!(
            "  {} as {:?}: {}/4 triggers present, {} partition(s)/child(ren), channel {}, \
             store {}{}",
            i.table,
            i.kind,
            i.triggers_present,
            i.members.len(),
            i.channel.as_deref().unwrap_or("(no notify)"),
            i.store_schema.as_deref().unwrap_or("-"),
            if i.is_complete() {
                String::new()
            } else {
                format!(", INCOMPLETE: {} issue(s) (see list)", i.issues.len())
            }
        );
    }
    Ok(())
}
