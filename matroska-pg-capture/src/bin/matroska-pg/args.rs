//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use matroska_pg_capture::capture::{DEFAULT_CAPTURE_SCHEMA, DEFAULT_MAX_NOTIFIES};
use matroska_pg_capture::listener::DEFAULT_CHANNEL;

/// Matroska change capture for PostgreSQL: triggers that turn every write to an application
/// table into the cache tags it touches, invalidate a PgStore in the writer's transaction, and
/// NOTIFY the tags at commit for listeners in other processes.
#[derive(Debug, Parser)]
#[command(name = "matroska-pg", version, after_help = EXAMPLES)]
pub(crate) struct Cli {
    /// PostgreSQL connection URL or key=value string [default: $MATROSKA_PG_URL, then
    /// $DATABASE_URL, then libpq's PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE]. Those
    /// variables also fill in what the URL leaves out
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) url: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

pub(crate) const EXAMPLES: &str = "Examples:
  matroska-pg install capture.toml --dry-run      # print the SQL, change nothing
  matroska-pg install capture.toml
  matroska-pg install --table public.articles --kind article --id id \\
      --scope category,published --scope published/published_at --store-schema app_cache
  matroska-pg list                                # with a health check; --check fails on issues
  matroska-pg install --table public.users --kind user --events-only
  matroska-pg listen --count 10
  matroska-pg listen --json                       # one JSON object per event
  matroska-pg uninstall public.articles
  matroska-pg migrate --store-schema app_cache   # create or upgrade a PgStore schema
  matroska-pg cleanup --store-schema app_cache
  matroska-pg stats --store-schema app_cache

The declaration file format is documented in matroska-pg-capture/README.md.";

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Install (or re-install) triggers on tables, from a TOML declaration file or from flags.
    Install(InstallArgs),
    /// Remove the triggers of tables (by the names recorded at install).
    Uninstall(UninstallArgs),
    /// List what is installed (the registry), with a health check: partitions or children
    /// without triggers, triggers disabled, captured columns renamed or dropped.
    List(ListArgs),
    /// Listen on a channel and print every event (tags and gaps) as it arrives.
    Listen(ListenArgs),
    /// Create or upgrade a PgStore schema (idempotent; what PgStore::migrate does).
    Migrate(MigrateArgs),
    /// Run a PgStore's cleanup until nothing is left to do, and report what it removed.
    Cleanup(CleanupArgs),
    /// Report a PgStore schema's tables (rows, sizes) and the installed triggers.
    Stats(StatsArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CaptureSchemaArg {
    /// The schema of the helper functions, trigger functions and registry
    #[arg(long, value_name = "SCHEMA", default_value = DEFAULT_CAPTURE_SCHEMA)]
    pub(crate) capture_schema: String,
}

#[derive(Debug, Args)]
pub(crate) struct InstallArgs {
    /// A TOML declaration file (instead of --table, --kind, --id, --scope...)
    #[arg(value_name = "FILE", conflicts_with_all = ["table", "kind", "id", "scope", "events_only"])]
    pub(crate) file: Option<PathBuf>,
    /// The table: name or schema.name; quote a part with double quotes to keep dots in it.
    /// Names are exact (no case folding)
    #[arg(long, value_name = "TABLE", requires = "kind")]
    pub(crate) table: Option<String>,
    /// The entity kind the rows are (as in Dep::id(kind, id) and Scopes::new(kind))
    #[arg(long, value_name = "KIND")]
    pub(crate) kind: Option<String>,
    /// The id column(s), comma-separated; several make a tuple id
    #[arg(long, value_name = "COLUMNS", value_delimiter = ',')]
    pub(crate) id: Vec<String>,
    /// A scope field set, comma-separated fields (= columns); after a '/', extra watched
    /// columns: --scope category,published/title. Repeat for each set. Renamed fields and
    /// names with commas or slashes need a declaration file
    #[arg(long, value_name = "FIELDS[/WATCHED]")]
    pub(crate) scope: Vec<String>,
    /// Capture change events only, with no id or scope: each statement sends an event naming
    /// the table and operation, with the kind-wide tag a:KIND
    #[arg(long, conflicts_with_all = ["id", "scope"])]
    pub(crate) events_only: bool,
    /// The NOTIFY channel
    #[arg(long, value_name = "CHANNEL", default_value = DEFAULT_CHANNEL)]
    pub(crate) channel: String,
    /// A PgStore schema to invalidate inside the writer's transaction
    #[arg(long, value_name = "SCHEMA")]
    pub(crate) store_schema: Option<String>,
    /// Do not NOTIFY (then --store-schema is required)
    #[arg(long)]
    pub(crate) no_notify: bool,
    /// Notifications per transaction and channel before the rest degrades to the kind-wide tag (a:KIND)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_NOTIFIES)]
    pub(crate) max_notifies: u32,
    /// Print the SQL that would run, and change nothing (the catalog is read)
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// The capture schema [default: the file's capture_schema, else matroska_capture]
    #[arg(long, value_name = "SCHEMA")]
    pub(crate) capture_schema: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct UninstallArgs {
    /// Tables to remove the triggers of (as given at install, or schema-qualified)
    #[arg(value_name = "TABLE", required_unless_present = "all")]
    pub(crate) tables: Vec<String>,
    /// Remove every installed table
    #[arg(long, conflicts_with = "tables")]
    pub(crate) all: bool,
    /// With --all: also drop the capture schema (helper functions and registry)
    #[arg(long, requires = "all")]
    pub(crate) purge: bool,
    #[command(flatten)]
    pub(crate) capture: CaptureSchemaArg,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print the declarations as JSON too
    #[arg(long)]
    pub(crate) json: bool,
    /// Exit with an error when a table's capture is incomplete or stale (for monitoring)
    #[arg(long)]
    pub(crate) check: bool,
    #[command(flatten)]
    pub(crate) capture: CaptureSchemaArg,
}

#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// The channel
    #[arg(long, value_name = "CHANNEL", default_value = DEFAULT_CHANNEL)]
    pub(crate) channel: String,
    /// Print one JSON object per event (for scripts): {"event":"change","table","op",
    /// "sent_at_us","received_at_us","latency_us","sender_pid","tags"} or {"event":"gap",
    /// "reason","receiving","at_us"}; times in microseconds since the Unix epoch
    #[arg(long)]
    pub(crate) json: bool,
    /// Exit after this many tag events (default: run until interrupted)
    #[arg(long, value_name = "N")]
    pub(crate) count: Option<u64>,
    /// How long to wait for the first connection
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub(crate) connect_timeout: u64,
}

#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    /// The PgStore schema
    #[arg(long, value_name = "SCHEMA")]
    pub(crate) store_schema: String,
    /// Create the tables LOGGED (crash-safe, slower writes) instead of UNLOGGED
    #[arg(long)]
    pub(crate) logged: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CleanupArgs {
    /// The PgStore schema
    #[arg(long, value_name = "SCHEMA")]
    pub(crate) store_schema: String,
}

#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// The PgStore schema to report on
    #[arg(long, value_name = "SCHEMA")]
    pub(crate) store_schema: Option<String>,
    /// Count rows exactly (default: the planner's estimates)
    #[arg(long)]
    pub(crate) exact: bool,
    #[command(flatten)]
    pub(crate) capture: CaptureSchemaArg,
}
