//! The PgStore commands: migrate, cleanup, stats.

use matroska_pg_capture::capture::Capture;
use matroska_postgres::{Persistence, PgStoreConfig, SchemaName};

use super::args::{CleanupArgs, MigrateArgs, StatsArgs};
use super::target::Target;
use super::{BoxError, connect};

fn store(target: &Target, schema: &SchemaName) -> Result<PgStoreConfig, BoxError> {
    let config = PgStoreConfig::new(target.config.clone()).schema(schema.as_str());
    Ok(match target.connector()? {
        Some(tls) => config.tls(tls),
        None => config,
    })
}

pub(crate) async fn migrate(target: &Target, args: &MigrateArgs) -> Result<(), BoxError> {
    let schema = SchemaName::new(args.store_schema.as_str())?;
    let persistence = if args.logged {
        Persistence::Logged
    } else {
        Persistence::Unlogged
    };
    let store = store(target, &schema)?.persistence(persistence).build()?;
    let report = store.migrate().await;
    store.close();
    let report = report?;
    if report.applied.is_empty() {
        println!(
            "PgStore schema {schema} is up to date (version {})",
            report.version
        );
    } else {
        println!(
            "PgStore schema {schema}: applied {} (now version {})",
            report.applied.join(", "),
            report.version
        );
    }
    Ok(())
}

pub(crate) async fn cleanup(target: &Target, args: &CleanupArgs) -> Result<(), BoxError> {
    let schema = SchemaName::new(args.store_schema.as_str())?;
    let store = store(target, &schema)?.build()?;
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

pub(crate) async fn stats(target: &Target, args: &StatsArgs) -> Result<(), BoxError> {
    let client = connect(target).await?;
    if let Some(schema) = &args.store_schema {
        let schema = SchemaName::new(schema.as_str())?;
        let rows = client
            .query(
                "SELECT c.relname::text, c.oid::regclass::text, c.relpersistence::text,
                        -- -1: never vacuumed or analyzed, so unknown (PostgreSQL 14+)
                        CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END, pg_table_size(c.oid),
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
            let count: Option<i64> = if args.exact {
                Some(
                    client
                        .query_one(&format!("SELECT count(*) FROM {qualified}"), &[])
                        .await?
                        .get(0),
                )
            } else {
                row.get(3)
            };
            let count = count.map_or_else(|| "unknown".to_owned(), |n| n.to_string());
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
