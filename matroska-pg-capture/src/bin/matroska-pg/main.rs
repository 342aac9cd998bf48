//! `matroska-pg`: installs, lists and removes Matroska's change-capture triggers, listens to
//! what they send, and cleans up and reports on a PgStore schema. Run `matroska-pg --help`.

// Printing is this program's job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod args;
mod listen;
mod store;
mod target;

use std::error::Error as StdError;
use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;
use matroska_pg_capture::capture::{
    Capture, DEFAULT_CAPTURE_SCHEMA, Declaration, ScopeSet, TableCapture, TableRef,
};

use crate::args::{Cli, Command, InstallArgs, ListArgs, UninstallArgs};
use crate::target::{ConnectError, Target};

type BoxError = Box<dyn StdError + Send + Sync>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, not for a log file or a pipe.
        .with_ansi(std::io::stderr().is_terminal())
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

async fn connect(target: &Target) -> Result<tokio_postgres::Client, BoxError> {
    match target.connector()? {
        Some(tls) => connect_with(target, tls).await,
        None => connect_with(target, tokio_postgres::NoTls).await,
    }
}

/// Connects through `tls`, keeping the cause of a failure.
async fn connect_with<T>(target: &Target, tls: T) -> Result<tokio_postgres::Client, BoxError>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = target
        .config
        .connect(tls)
        .await
        .map_err(|e| ConnectError::new(target, e))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "matroska-pg: connection ended");
        }
    });
    Ok(client)
}

async fn run(cli: Cli) -> Result<(), BoxError> {
    let target = target::resolve(cli.url.as_deref(), &|name| std::env::var(name).ok())?;
    match cli.command {
        Command::Install(args) => install(&target, args).await,
        Command::Uninstall(args) => uninstall(&target, args).await,
        Command::List(args) => list(&target, &args).await,
        Command::Listen(args) => listen::listen(&target, &args).await,
        Command::Migrate(args) => store::migrate(&target, &args).await,
        Command::Cleanup(args) => store::cleanup(&target, &args).await,
        Command::Stats(args) => store::stats(&target, &args).await,
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
        return Err(
            "give a declaration FILE, or --table, --kind and --id (or --events-only)".into(),
        );
    };
    let mut capture = TableCapture::new(TableRef::parse(&table)?, kind).id(args.id);
    if args.events_only {
        capture = capture.events_only();
    }
    let mut capture = capture
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

async fn install(target: &Target, args: InstallArgs) -> Result<(), BoxError> {
    let dry_run = args.dry_run;
    let decl = declaration(args)?;
    let mut client = connect(target).await?;
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

async fn uninstall(target: &Target, args: UninstallArgs) -> Result<(), BoxError> {
    let mut client = connect(target).await?;
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

async fn list(target: &Target, args: &ListArgs) -> Result<(), BoxError> {
    let client = connect(target).await?;
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
