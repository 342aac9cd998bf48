//! [`Capture`]: installs and removes the triggers of a capture schema (the registry and `list`
//! are in `registry`).

use std::collections::HashSet;
use std::fmt::Write as _;

use tokio_postgres::Client;

use super::catalog::{Resolved, resolve};
use super::declaration::{
    DEFAULT_CAPTURE_SCHEMA, Declaration, TableCapture, TableRef, capture_schema,
};
use super::encode::{helpers_sql, ident, literal};
use super::error::{CaptureError, Result};
use super::generate;
use matroska_postgres::schema::SchemaName;

/// The first key of the advisory lock that serialises installs and uninstalls (`"MKCP"`); the
/// second is the hash of the capture schema's name.
const LOCK_CLASS: i32 = 0x4d4b_4350;

/// The change capture of one capture schema: where the helper functions, the trigger functions
/// and the registry (`{capture}.installed`) live.
///
/// # Examples
///
/// ```no_run
/// use matroska_pg_capture::capture::{Capture, ScopeSet, TableCapture, TableRef};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let (mut client, connection) =
///     tokio_postgres::connect("postgres://app@localhost/app", tokio_postgres::NoTls).await?;
/// tokio::spawn(connection);
/// let articles = TableCapture::new(TableRef::parse("public.articles")?, "article")
///     .id(["id"])
///     .scope(ScopeSet::new(["category", "published"]))
///     .store_schema("app_cache")?;
/// let capture = Capture::default();
/// println!("{}", capture.script(&client, &[articles.clone()]).await?); // what install runs
/// capture.install(&mut client, &[articles]).await?;
/// for installed in capture.list(&client).await? {
///     println!("{} -> {}", installed.table, installed.kind);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    schema: SchemaName,
}

impl Default for Capture {
    fn default() -> Self {
        Self {
            schema: SchemaName::new(DEFAULT_CAPTURE_SCHEMA)
                .unwrap_or_else(|_| unreachable!("the default capture schema is valid")),
        }
    }
}

impl Capture {
    /// The capture schema `schema`.
    ///
    /// # Errors
    ///
    /// [`CaptureError::Identifier`] when it is not a valid schema name ([`SchemaName::new`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let capture = matroska_pg_capture::capture::Capture::new("shop_capture")?;
    /// assert_eq!(capture.schema().as_str(), "shop_capture");
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn new(schema: &str) -> Result<Self> {
        Ok(Self {
            schema: capture_schema(schema)?,
        })
    }

    /// The capture of a declaration's schema.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::{Capture, Declaration};
    ///
    /// let decl = Declaration::from_toml("capture_schema = \"c\"\n[[table]]\ntable = \"t\"\nkind = \"k\"\nid = \"id\"")?;
    /// assert_eq!(Capture::of(&decl).schema().as_str(), "c");
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn of(declaration: &Declaration) -> Self {
        Self {
            schema: declaration.capture_schema().clone(),
        }
    }

    /// The capture schema.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_pg_capture::capture::Capture::default().schema().as_str(), "matroska_capture");
    /// ```
    pub fn schema(&self) -> &SchemaName {
        &self.schema
    }

    /// The SQL script [`install`](Self::install) runs for `tables`, as one transaction
    /// (`BEGIN` ... `COMMIT`). It reads the catalog (column types pick the encoders) and
    /// changes nothing: `matroska-pg install --dry-run` prints it.
    ///
    /// # Errors
    ///
    /// What [`install`](Self::install) would fail with before running anything.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: tokio_postgres::Client, t: matroska_pg_capture::capture::TableCapture) -> matroska_pg_capture::capture::Result<()> {
    /// let sql = matroska_pg_capture::capture::Capture::default().script(&client, &[t]).await?;
    /// assert!(sql.starts_with("BEGIN;"));
    /// # Ok(()) }
    /// ```
    pub async fn script(&self, client: &Client, tables: &[TableCapture]) -> Result<String> {
        let body = self.body(client, tables).await?;
        Ok(format!("BEGIN;\n{body}COMMIT;\n"))
    }

    async fn body(&self, client: &Client, tables: &[TableCapture]) -> Result<String> {
        check_server(client).await?;
        let mut sql = format!(
            "SELECT pg_advisory_xact_lock({LOCK_CLASS}, hashtext({}));\n\n{}\n",
            literal(self.schema.as_str()),
            helpers_sql(&self.schema)
        );
        for table in tables {
            table.validate()?;
            let resolved = resolve(client, table.table()).await?;
            if let Some(store) = table.store() {
                check_store(client, store).await?;
            }
            let generated = generate::generate(&self.schema, table, &resolved)?;
            let recorded = self.recorded(client, &resolved).await?;
            // A previous install under other names (an older format) is removed first.
            if let Some(row) = &recorded
                && (row.function != generated.names.function
                    || row.triggers != generated.names.triggers.as_slice())
            {
                sql.push_str(&drop_sql(
                    &self.schema,
                    Some(&resolved.quoted()),
                    &row.function,
                    &row.triggers,
                ));
            }
            // Triggers left on tables that are no longer partitions or children of this one.
            sql.push_str(
                &self
                    .stale_triggers_sql(client, &generated.names.function, &resolved)
                    .await?,
            );
            let _ = writeln!(
                sql,
                "-- {} as kind {}\n{}",
                resolved.quoted(),
                literal(table.kind()),
                generated.sql
            );
            // Rows that entered or left with a partition or child (attached, detached, dropped
            // since the last install) fired no trigger: everything about the kind goes.
            if let Some(row) = &recorded {
                let was: HashSet<u32> = row.members.iter().flatten().map(|m| m.oid).collect();
                let now: HashSet<u32> = resolved.members.iter().map(|m| m.oid).collect();
                if was != now {
                    let _ = writeln!(
                        sql,
                        "-- Its partitions or children changed since the last install.\n{}",
                        generate::kind_invalidation_sql(table, &resolved)?
                    );
                }
            }
        }
        Ok(sql)
    }

    /// `DROP TRIGGER` statements for the triggers that call `function` on tables other than
    /// `table` and its partitions and children (detached since the last install).
    async fn stale_triggers_sql(
        &self,
        client: &Client,
        function: &str,
        table: &Resolved,
    ) -> Result<String> {
        let targets: Vec<u32> = table.targets().map(|(oid, _)| oid).collect();
        let rows = client
            .query(
                "SELECT n.nspname::text, c.relname::text, t.tgname::text
                 FROM pg_trigger t
                 JOIN pg_class c ON c.oid = t.tgrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE t.tgfoid = to_regprocedure($1) AND NOT (t.tgrelid = ANY ($2))
                 ORDER BY 1, 2, 3",
                &[
                    &format!("{}.{}()", self.schema.quoted(), ident(function)),
                    &targets,
                ],
            )
            .await
            .map_err(CaptureError::pg("find stale triggers"))?;
        let mut sql = String::new();
        for row in &rows {
            let _ = writeln!(
                sql,
                "DROP TRIGGER IF EXISTS {} ON {}.{};",
                ident(&row.get::<_, String>(2)),
                ident(&row.get::<_, String>(0)),
                ident(&row.get::<_, String>(1))
            );
        }
        Ok(sql)
    }

    /// Installs (or re-installs: idempotent) the capture of `tables`, all in one transaction:
    /// the helper functions and the registry if missing, then per table its trigger function and
    /// four statement-level triggers (AFTER INSERT, UPDATE, DELETE with transition tables, AFTER
    /// TRUNCATE) on the table and on each of its partitions and inheritance children (at every
    /// depth: PostgreSQL fires only the statement triggers of the table a statement names),
    /// recorded in the registry.
    ///
    /// A re-install that finds the partitions or children changed since the last one (attached,
    /// detached, created, dropped: their rows moved without firing any trigger) also invalidates
    /// `a:<kind>`, in the store schema in this transaction and by NOTIFY at commit, and removes
    /// the triggers from tables that left. [`list`](Self::list) reports such changes until then.
    ///
    /// # Errors
    ///
    /// [`CaptureError`] for a table or column that does not exist, a column type that cannot be
    /// encoded ([`CaptureError::UnsupportedType`]) or whose equality is not byte equality
    /// ([`CaptureError::InexactEquality`]), a table that is itself a partition or inheritance
    /// child ([`CaptureError::Hierarchy`], naming the table to capture instead), a store schema
    /// without `invalidate(text[])`, a server older than PostgreSQL 14 or not in UTF8, a failed
    /// statement (nothing is then installed).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut client: tokio_postgres::Client, t: matroska_pg_capture::capture::TableCapture) -> matroska_pg_capture::capture::Result<()> {
    /// matroska_pg_capture::capture::Capture::default().install(&mut client, &[t]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn install(&self, client: &mut Client, tables: &[TableCapture]) -> Result<()> {
        let body = self.body(client, tables).await?;
        let tx = client
            .transaction()
            .await
            .map_err(CaptureError::pg("install"))?;
        tx.batch_execute(&body)
            .await
            .map_err(CaptureError::pg("install"))?;
        tx.commit().await.map_err(CaptureError::pg("install"))?;
        for table in tables {
            tracing::info!(table = %table.table(), kind = table.kind(), capture = %self.schema, "matroska-postgres: change capture installed");
        }
        Ok(())
    }

    /// Removes the capture of `table` (its triggers, on the table and wherever else they call its
    /// function, such as partitions, children and tables detached since; its function; its
    /// registry row). Idempotent: returns whether something was installed. Works for a table
    /// renamed since (found by its recorded function) or dropped (then only the function and
    /// the row go).
    ///
    /// # Errors
    ///
    /// [`CaptureError::Postgres`] when a statement fails (nothing is then removed).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use matroska_pg_capture::capture::{Capture, TableRef};
    ///
    /// # async fn demo(mut client: tokio_postgres::Client) -> matroska_pg_capture::capture::Result<()> {
    /// let removed = Capture::default().uninstall(&mut client, &TableRef::parse("public.articles")?).await?;
    /// # let _ = removed; Ok(()) }
    /// ```
    pub async fn uninstall(&self, client: &mut Client, table: &TableRef) -> Result<bool> {
        if !self.registry_exists(client).await? {
            return Ok(false);
        }
        let cap = self.schema.quoted();
        // The recorded row: by schema and name, or by name alone when no schema was given (the
        // table may be gone, so the search_path cannot tell).
        let rows = match table.schema() {
            Some(schema) => client
                .query(
                    &format!(
                        "SELECT table_schema, table_name, table_oid, function_name, trigger_names \
                         FROM {cap}.installed WHERE table_schema = $1 AND table_name = $2"
                    ),
                    &[&schema, &table.name()],
                )
                .await,
            None => {
                client
                    .query(
                        &format!(
                            "SELECT i.table_schema, i.table_name, i.table_oid, i.function_name, \
                                i.trigger_names
                         FROM {cap}.installed i
                         WHERE i.table_name = $1
                         ORDER BY i.table_oid = coalesce(to_regclass($2)::oid, 0) DESC
                         LIMIT 1"
                        ),
                        &[&table.name(), &table.to_string()],
                    )
                    .await
            }
        }
        .map_err(CaptureError::pg("uninstall: read the registry"))?;
        let Some(row) = rows.first() else {
            return Ok(false);
        };
        let (schema, name): (String, String) = (row.get(0), row.get(1));
        let oid: u32 = row.get(2);
        let function: String = row.get(3);
        let triggers: Vec<String> = row.get(4);
        let tx = client
            .transaction()
            .await
            .map_err(CaptureError::pg("uninstall"))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&LOCK_CLASS, &self.schema.as_str()],
        )
        .await
        .map_err(CaptureError::pg("uninstall: lock"))?;
        // Every trigger that calls the function, wherever it is (the table, renamed or not, its
        // partitions and children, tables detached since): the function cannot go before them.
        let rows = tx
            .query(
                "SELECT format('DROP TRIGGER %I ON %I.%I;', t.tgname, n.nspname, c.relname)
                 FROM pg_trigger t
                 JOIN pg_class c ON c.oid = t.tgrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE t.tgfoid = to_regprocedure($1)
                    OR (t.tgrelid = $2 AND t.tgname = ANY ($3))
                 ORDER BY 1",
                &[&format!("{cap}.{}()", ident(&function)), &oid, &triggers],
            )
            .await
            .map_err(CaptureError::pg("uninstall: find the triggers"))?;
        let mut sql = String::new();
        for row in &rows {
            let _ = writeln!(sql, "{}", row.get::<_, String>(0));
        }
        sql.push_str(&drop_sql(&self.schema, None, &function, &[]));
        let _ = writeln!(
            sql,
            "DELETE FROM {cap}.installed WHERE table_schema = {} AND table_name = {};",
            literal(&schema),
            literal(&name)
        );
        tx.batch_execute(&sql)
            .await
            .map_err(CaptureError::pg("uninstall"))?;
        tx.commit().await.map_err(CaptureError::pg("uninstall"))?;
        tracing::info!(table = %format!("{}.{}", ident(&schema), ident(&name)), capture = %self.schema, "matroska-postgres: change capture removed");
        Ok(true)
    }

    /// Removes every capture recorded in the registry; with `purge`, also the capture schema
    /// (its helper functions and the registry). Returns how many tables were uninstalled.
    ///
    /// # Errors
    ///
    /// As [`uninstall`](Self::uninstall).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut client: tokio_postgres::Client) -> matroska_pg_capture::capture::Result<()> {
    /// let n = matroska_pg_capture::capture::Capture::default().uninstall_all(&mut client, false).await?;
    /// # let _ = n; Ok(()) }
    /// ```
    pub async fn uninstall_all(&self, client: &mut Client, purge: bool) -> Result<usize> {
        let mut removed = 0;
        for installed in self.list(client).await? {
            if self.uninstall(client, &installed.table).await? {
                removed += 1;
            }
        }
        if purge {
            client
                .batch_execute(&format!(
                    "DROP SCHEMA IF EXISTS {} CASCADE",
                    self.schema.quoted()
                ))
                .await
                .map_err(CaptureError::pg("uninstall: drop the capture schema"))?;
        }
        Ok(removed)
    }
}

/// Drops recorded triggers (when the table still exists) and the function.
fn drop_sql(
    capture: &SchemaName,
    table: Option<&str>,
    function: &str,
    triggers: &[String],
) -> String {
    let mut sql = String::new();
    if let Some(table) = table {
        for trigger in triggers {
            let _ = writeln!(sql, "DROP TRIGGER IF EXISTS {} ON {table};", ident(trigger));
        }
    }
    let _ = writeln!(
        sql,
        "DROP FUNCTION IF EXISTS {}.{}();",
        capture.quoted(),
        ident(function)
    );
    sql
}

async fn check_server(client: &Client) -> Result<()> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int, \
                    current_setting('server_encoding')",
            &[],
        )
        .await
        .map_err(CaptureError::pg("check the server"))?;
    let version: i32 = row.get(0);
    let encoding: String = row.get(1);
    if version < 140_000 {
        return Err(CaptureError::Server {
            reason: format!(
                "PostgreSQL {version} is older than 14 (CREATE OR REPLACE TRIGGER, exact \
                 extract(epoch))"
            ),
        });
    }
    if encoding != "UTF8" {
        return Err(CaptureError::Server {
            reason: format!(
                "the database encoding is {encoding}; tags are hashed over UTF-8 bytes, so it \
                 must be UTF8"
            ),
        });
    }
    Ok(())
}

async fn check_store(client: &Client, store: &SchemaName) -> Result<()> {
    let row = client
        .query_one(
            "SELECT to_regprocedure($1) IS NOT NULL",
            &[&format!("{}.invalidate(text[])", store.quoted())],
        )
        .await
        .map_err(CaptureError::pg("check the store schema"))?;
    if row.get(0) {
        Ok(())
    } else {
        Err(CaptureError::StoreNotMigrated {
            schema: store.as_str().to_owned(),
        })
    }
}
