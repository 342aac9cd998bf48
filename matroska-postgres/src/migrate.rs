//! Versioned migrations: `migrations/NNN_name.sql`, applied in order, in one transaction, under
//! an advisory lock, recorded in `{schema}.schema_versions`.

use std::time::Duration;

use matroska_core::{Error, Result};
use tokio_postgres::Client;

use crate::config::Persistence;
use crate::error::{self, PERSISTENCE_MISMATCH};
use crate::schema::SchemaName;

/// One migration file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    pub(crate) version: i32,
    pub(crate) name: &'static str,
    pub(crate) sql: &'static str,
}

/// Every migration, in order. File `NNN_name.sql` is version NNN.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "001_initial",
        sql: include_str!("../migrations/001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "002_cleanup_pass",
        sql: include_str!("../migrations/002_cleanup_pass.sql"),
    },
    Migration {
        version: 3,
        name: "003_refresh_leases",
        sql: include_str!("../migrations/003_refresh_leases.sql"),
    },
];

/// The first key of the advisory lock that serialises migrations (`"MKPG"`); the second is the
/// hash of the schema name.
const LOCK_CLASS: i32 = 0x4d4b_5047;

/// What [`PgStore::migrate`](crate::PgStore::migrate) did.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(store: matroska_postgres::PgStore) -> matroska_core::Result<()> {
/// let report = store.migrate().await?;
/// println!("applied {:?}, now at version {}", report.applied, report.version);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationReport {
    /// The migrations applied by this call (empty when the schema was up to date).
    pub applied: Vec<String>,
    /// The schema version now.
    pub version: i32,
}

/// Substitutes the placeholders of a migration.
pub(crate) fn render(sql: &str, schema: &SchemaName, persistence: Persistence) -> String {
    sql.replace("{{schema}}", &schema.quoted())
        .replace("{{persistence}}", persistence.keyword())
}

pub(crate) async fn migrate(
    client: &mut Client,
    schema: &SchemaName,
    persistence: Persistence,
    fill_window: Duration,
) -> Result<MigrationReport> {
    let s = schema.quoted();
    let what = "migrate";
    let tx = client.transaction().await.map_err(|e| error::pg(e, what))?;
    tx.batch_execute("SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = '60s'")
        .await
        .map_err(|e| error::pg(e, what))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&LOCK_CLASS, &schema.as_str()],
    )
    .await
    .map_err(|e| error::pg(e, what))?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.schema_versions (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
         );"
    ))
    .await
    .map_err(|e| error::pg(e, what))?;
    let done: Vec<i32> = tx
        .query(&format!("SELECT version FROM {s}.schema_versions"), &[])
        .await
        .map_err(|e| error::pg(e, what))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut applied = Vec::new();
    for migration in MIGRATIONS {
        if done.contains(&migration.version) {
            continue;
        }
        tx.batch_execute(&render(migration.sql, schema, persistence))
            .await
            .map_err(|e| error::pg(e, &format!("migration {}", migration.name)))?;
        tx.execute(
            &format!("INSERT INTO {s}.schema_versions (version, name) VALUES ($1, $2)"),
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(|e| error::pg(e, what))?;
        tracing::info!(schema = %schema, migration = migration.name, "matroska-postgres: applied");
        applied.push(migration.name.to_owned());
    }
    let window_ms = i64::try_from(fill_window.as_millis()).unwrap_or(i64::MAX);
    let configured = tx
        .execute(
            &format!("SELECT {s}.configure($1, $2)"),
            &[&persistence.as_str(), &window_ms],
        )
        .await;
    if let Err(err) = configured {
        if err.code().is_some_and(|c| c.code() == PERSISTENCE_MISMATCH) {
            let message = err
                .as_db_error()
                .map_or_else(|| err.to_string(), |db| db.message().to_owned());
            return Err(Error::Config(format!(
                "schema {schema}: {message}; use the persistence the schema was created with, or \
                 ALTER its tables SET LOGGED / SET UNLOGGED"
            )));
        }
        return Err(error::pg(err, what));
    }
    tx.commit().await.map_err(|e| error::pg(e, what))?;
    let version = MIGRATIONS.last().map_or(0, |m| m.version);
    Ok(MigrationReport { applied, version })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_fully_rendered() {
        let schema = SchemaName::new("s").unwrap();
        for (i, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, i32::try_from(i + 1).unwrap());
            assert!(
                migration
                    .name
                    .starts_with(&format!("{:03}_", migration.version))
            );
            for persistence in [Persistence::Unlogged, Persistence::Logged] {
                let sql = render(migration.sql, &schema, persistence);
                assert!(
                    !sql.contains("{{"),
                    "{}: unknown placeholder",
                    migration.name
                );
            }
        }
    }

    #[test]
    fn every_table_is_qualified_with_the_schema() {
        for line in MIGRATIONS.iter().flat_map(|m| m.sql.lines()) {
            let l = line.trim_start();
            for keyword in [
                "CREATE TABLE ",
                "CREATE UNLOGGED TABLE ",
                "CREATE FUNCTION ",
                "CREATE OR REPLACE FUNCTION ",
                "ALTER TABLE ",
                "FROM ",
            ] {
                if let Some(rest) = l.strip_prefix(keyword) {
                    let first = rest.split_whitespace().next().unwrap_or("");
                    let qualified = first.starts_with("{{schema}}.")
                        || first.starts_with("unnest(")
                        || first.starts_with('(')
                        || first.starts_with("idx")
                        || first.starts_with("dead")
                        || first.starts_with('x');
                    assert!(qualified, "unqualified name in: {line}");
                }
            }
        }
    }
}
