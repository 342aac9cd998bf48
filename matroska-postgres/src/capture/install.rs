//! [`Capture`]: installs, lists and removes the triggers of a capture schema, and keeps its
//! registry.

use std::fmt::Write as _;
use std::time::SystemTime;

use tokio_postgres::Client;

use super::declaration::{
    DEFAULT_CAPTURE_SCHEMA, Declaration, TableCapture, TableRef, capture_schema,
};
use super::encode::{helpers_sql, ident, literal};
use super::error::{CaptureError, Result};
use super::generate::{self, Column, Encoder, Resolved};
use crate::schema::SchemaName;

/// The first key of the advisory lock that serialises installs and uninstalls (`"MKCP"`); the
/// second is the hash of the capture schema's name.
const LOCK_CLASS: i32 = 0x4d4b_4350;

/// The change capture of one capture schema: where the helper functions, the trigger functions
/// and the registry (`{capture}.installed`) live.
///
/// # Examples
///
/// ```no_run
/// use matroska_postgres::capture::{Capture, ScopeSet, TableCapture, TableRef};
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

/// One row of the registry: an installed capture.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(client: tokio_postgres::Client) -> matroska_postgres::capture::Result<()> {
/// for i in matroska_postgres::capture::Capture::default().list(&client).await? {
///     println!("{}: kind {}, channel {:?}, triggers present: {}", i.table, i.kind, i.channel, i.triggers_present);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Installed {
    /// The table, schema-qualified.
    pub table: TableRef,
    /// The entity kind.
    pub kind: String,
    /// The NOTIFY channel (`None`: notify off).
    pub channel: Option<String>,
    /// The PgStore schema invalidated in-transaction.
    pub store_schema: Option<String>,
    /// The trigger function, in the capture schema.
    pub function_name: String,
    /// The triggers (INSERT, UPDATE, DELETE, TRUNCATE).
    pub trigger_names: Vec<String>,
    /// How many of them exist on the table now (4 when healthy).
    pub triggers_present: i64,
    /// The declaration, as JSON.
    pub declaration: String,
    /// When it was installed.
    pub installed_at: SystemTime,
    /// By whom.
    pub installed_by: String,
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
    /// let capture = matroska_postgres::capture::Capture::new("shop_capture")?;
    /// assert_eq!(capture.schema().as_str(), "shop_capture");
    /// # Ok::<(), matroska_postgres::capture::CaptureError>(())
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
    /// use matroska_postgres::capture::{Capture, Declaration};
    ///
    /// let decl = Declaration::from_toml("capture_schema = \"c\"\n[[table]]\ntable = \"t\"\nkind = \"k\"\nid = \"id\"")?;
    /// assert_eq!(Capture::of(&decl).schema().as_str(), "c");
    /// # Ok::<(), matroska_postgres::capture::CaptureError>(())
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
    /// assert_eq!(matroska_postgres::capture::Capture::default().schema().as_str(), "matroska_capture");
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
    /// # async fn demo(client: tokio_postgres::Client, t: matroska_postgres::capture::TableCapture) -> matroska_postgres::capture::Result<()> {
    /// let sql = matroska_postgres::capture::Capture::default().script(&client, &[t]).await?;
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
            // A previous install under other names (an older format) is removed first.
            if let Some((function, triggers)) = self.recorded(client, &resolved).await?
                && (function != generated.names.function
                    || triggers != generated.names.triggers.as_slice())
            {
                sql.push_str(&drop_sql(
                    &self.schema,
                    Some(&resolved.quoted()),
                    &function,
                    &triggers,
                ));
            }
            let _ = writeln!(
                sql,
                "-- {} as kind {}\n{}",
                resolved.quoted(),
                literal(table.kind()),
                generated.sql
            );
        }
        Ok(sql)
    }

    /// Installs (or re-installs: idempotent) the capture of `tables`, all in one transaction:
    /// the helper functions and the registry if missing, then per table its trigger function and
    /// four statement-level triggers (AFTER INSERT, UPDATE, DELETE with transition tables, AFTER
    /// TRUNCATE), recorded in the registry.
    ///
    /// # Errors
    ///
    /// [`CaptureError`] for a table or column that does not exist, a column type that cannot be
    /// encoded, a store schema without `invalidate(text[])`, a server older than PostgreSQL 14
    /// or not in UTF8, a failed statement (nothing is then installed).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut client: tokio_postgres::Client, t: matroska_postgres::capture::TableCapture) -> matroska_postgres::capture::Result<()> {
    /// matroska_postgres::capture::Capture::default().install(&mut client, &[t]).await?;
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

    /// Removes the capture of `table` (its triggers, its function and its registry row), by the
    /// names recorded at install. Idempotent: returns whether something was installed. Works
    /// for a table renamed since (found by its recorded oid) or dropped (then only the function
    /// and the row go).
    ///
    /// # Errors
    ///
    /// [`CaptureError::Postgres`] when a statement fails (nothing is then removed).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use matroska_postgres::capture::{Capture, TableRef};
    ///
    /// # async fn demo(mut client: tokio_postgres::Client) -> matroska_postgres::capture::Result<()> {
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
        // The table by its oid (it may have been renamed); regclass output is quoted as needed.
        let current: Option<String> = tx
            .query_one(
                "SELECT (SELECT c.oid::regclass::text FROM pg_class c WHERE c.oid = $1)",
                &[&oid],
            )
            .await
            .map_err(CaptureError::pg("uninstall: find the table"))?
            .get(0);
        let mut sql = drop_sql(&self.schema, current.as_deref(), &function, &triggers);
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
    /// # async fn demo(mut client: tokio_postgres::Client) -> matroska_postgres::capture::Result<()> {
    /// let n = matroska_postgres::capture::Capture::default().uninstall_all(&mut client, false).await?;
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

    /// The registry: what is installed, with a health check (are the triggers still there?).
    /// Empty when nothing was ever installed in this capture schema.
    ///
    /// # Errors
    ///
    /// [`CaptureError::Postgres`] when the query fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: tokio_postgres::Client) -> matroska_postgres::capture::Result<()> {
    /// let installed = matroska_postgres::capture::Capture::default().list(&client).await?;
    /// assert!(installed.iter().all(|i| i.triggers_present == 4));
    /// # Ok(()) }
    /// ```
    pub async fn list(&self, client: &Client) -> Result<Vec<Installed>> {
        if !self.registry_exists(client).await? {
            return Ok(Vec::new());
        }
        let rows = client
            .query(
                &format!(
                    "SELECT i.table_schema, i.table_name, i.kind, i.channel, i.store_schema,
                            i.function_name, i.trigger_names, i.declaration::text, i.installed_at,
                            i.installed_by,
                            (SELECT count(*) FROM pg_trigger t
                             WHERE t.tgrelid = i.table_oid AND t.tgname = ANY (i.trigger_names))
                     FROM {}.installed i ORDER BY i.table_schema, i.table_name",
                    self.schema.quoted()
                ),
                &[],
            )
            .await
            .map_err(CaptureError::pg("list"))?;
        rows.iter()
            .map(|row| {
                let schema: String = row.get(0);
                let name: String = row.get(1);
                Ok(Installed {
                    table: TableRef::new(Some(&schema), &name)?,
                    kind: row.get(2),
                    channel: row.get(3),
                    store_schema: row.get(4),
                    function_name: row.get(5),
                    trigger_names: row.get(6),
                    declaration: row.get(7),
                    installed_at: row.get(8),
                    installed_by: row.get(9),
                    triggers_present: row.get(10),
                })
            })
            .collect()
    }

    /// The kinds installed with NOTIFY on `channel`: what a listener on it should watch
    /// ([`ListenerConfig::watch_kinds`](crate::ListenerConfig::watch_kinds)), so that a gap
    /// invalidates everything the triggers could have sent.
    ///
    /// # Errors
    ///
    /// [`CaptureError::Postgres`] when the query fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use matroska_postgres::capture::Capture;
    /// use matroska_postgres::listener::Listener;
    ///
    /// # async fn demo(client: tokio_postgres::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let kinds = Capture::default().installed_kinds(&client, "matroska").await?;
    /// let listener = Listener::builder("postgres://app@localhost/app").watch_kinds(kinds).start()?;
    /// # drop(listener); Ok(()) }
    /// ```
    pub async fn installed_kinds(&self, client: &Client, channel: &str) -> Result<Vec<String>> {
        if !self.registry_exists(client).await? {
            return Ok(Vec::new());
        }
        let rows = client
            .query(
                &format!(
                    "SELECT DISTINCT kind FROM {}.installed WHERE channel = $1 ORDER BY kind",
                    self.schema.quoted()
                ),
                &[&channel],
            )
            .await
            .map_err(CaptureError::pg("installed kinds"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn registry_exists(&self, client: &Client) -> Result<bool> {
        let name = format!("{}.installed", self.schema.quoted());
        let row = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
            .await
            .map_err(CaptureError::pg("read the registry"))?;
        Ok(row.get(0))
    }

    async fn recorded(
        &self,
        client: &Client,
        table: &Resolved,
    ) -> Result<Option<(String, Vec<String>)>> {
        if !self.registry_exists(client).await? {
            return Ok(None);
        }
        let rows = client
            .query(
                &format!(
                    "SELECT function_name, trigger_names FROM {}.installed
                     WHERE table_schema = $1 AND table_name = $2",
                    self.schema.quoted()
                ),
                &[&table.schema, &table.name],
            )
            .await
            .map_err(CaptureError::pg("read the registry"))?;
        Ok(rows.first().map(|r| (r.get(0), r.get(1))))
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

/// Finds the table and its columns in the catalog.
async fn resolve(client: &Client, table: &TableRef) -> Result<Resolved> {
    let rows = client
        .query(
            "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid = to_regclass($1)",
            &[&table.to_string()],
        )
        .await
        .map_err(CaptureError::pg("find the table"))?;
    let Some(row) = rows.first() else {
        let similar = client
            .query(
                "SELECT format('%I.%I', n.nspname, c.relname)
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE lower(c.relname) = lower($1) AND c.relkind IN ('r', 'p')
                   AND ($2::text IS NULL OR lower(n.nspname) = lower($2))
                 ORDER BY 1 LIMIT 5",
                &[&table.name(), &table.schema()],
            )
            .await
            .map_err(CaptureError::pg("find the table"))?;
        let similar: Vec<String> = similar.iter().map(|r| r.get(0)).collect();
        let hint = if similar.is_empty() {
            if table.schema().is_none() {
                " (not in the search_path; qualify it with its schema)".to_owned()
            } else {
                String::new()
            }
        } else {
            format!(
                " (names are case-sensitive; did you mean {}?)",
                similar.join(" or ")
            )
        };
        return Err(CaptureError::TableNotFound {
            table: table.to_string(),
            hint,
        });
    };
    let oid: u32 = row.get(0);
    let schema: String = row.get(1);
    let name: String = row.get(2);
    let relkind: String = row.get(3);
    if relkind != "r" && relkind != "p" {
        return Err(CaptureError::NotATable {
            table: format!("{}.{}", ident(&schema), ident(&name)),
            relkind,
        });
    }
    let rows = client
        .query(
            "WITH RECURSIVE cols AS (
                 SELECT a.attnum, a.attname::text AS name,
                        format_type(a.atttypid, a.atttypmod) AS shown, a.atttypid AS typ
                 FROM pg_attribute a
                 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
             ), base(attnum, typ, depth) AS (
                 SELECT attnum, typ, 0 FROM cols
                 UNION ALL
                 SELECT b.attnum, t.typbasetype, b.depth + 1
                 FROM base b JOIN pg_type t ON t.oid = b.typ
                 WHERE t.typtype = 'd'
             )
             SELECT c.name, c.shown, t.typname::text, t.typtype::text, n.nspname::text
             FROM cols c
             JOIN LATERAL (SELECT b.typ FROM base b WHERE b.attnum = c.attnum
                           ORDER BY b.depth DESC LIMIT 1) bt ON true
             JOIN pg_type t ON t.oid = bt.typ
             JOIN pg_namespace n ON n.oid = t.typnamespace
             ORDER BY c.attnum",
            &[&oid],
        )
        .await
        .map_err(CaptureError::pg("read the table's columns"))?;
    let columns = rows
        .iter()
        .map(|r| {
            let typname: String = r.get(2);
            let typtype: String = r.get(3);
            let namespace: String = r.get(4);
            Column {
                name: r.get(0),
                type_name: r.get(1),
                encoder: Encoder::of(&typname, &typtype, &namespace),
            }
        })
        .collect();
    Ok(Resolved {
        schema,
        name,
        oid,
        columns,
    })
}
