//! The registry (`{capture}.installed`): what is installed, read back with a health check
//! ([`Installed`]), and what a re-install needs to know about the previous one.

use std::time::SystemTime;

use tokio_postgres::Client;

use super::catalog::Resolved;
use super::declaration::TableRef;
use super::encode::ident;
use super::error::{CaptureError, Result};
use super::health::{self, CaptureIssue, Recorded, RecordedColumn, RecordedMember};
use super::install::Capture;

/// One row of the registry: an installed capture, with what its health check found.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(client: tokio_postgres::Client) -> matroska_pg_capture::capture::Result<()> {
/// for i in matroska_pg_capture::capture::Capture::default().list(&client).await? {
///     println!("{}: kind {}, channel {:?}", i.table, i.kind, i.channel);
///     for issue in &i.issues {
///         println!("  ! {issue}");
///     }
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
    /// How many of them exist on the table itself now (4 when healthy; see `issues` for its
    /// partitions and children, and for disabled triggers).
    pub triggers_present: i64,
    /// The partitions and inheritance children the triggers were installed on too, quoted.
    pub members: Vec<String>,
    /// What leaves the capture incomplete or stale now (empty when healthy).
    pub issues: Vec<CaptureIssue>,
    /// The declaration, as JSON.
    pub declaration: String,
    /// When it was installed.
    pub installed_at: SystemTime,
    /// By whom.
    pub installed_by: String,
}

impl Installed {
    /// Whether every write to the table, its partitions and children fires an enabled capture
    /// trigger that matches the table's columns: no [`issues`](Self::issues).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: tokio_postgres::Client) -> matroska_pg_capture::capture::Result<()> {
    /// let list = matroska_pg_capture::capture::Capture::default().list(&client).await?;
    /// assert!(list.iter().all(|i| i.is_complete()));
    /// # Ok(()) }
    /// ```
    pub fn is_complete(&self) -> bool {
        self.issues.is_empty()
    }
}

/// What the registry holds about a table, read whatever the registry's version.
#[derive(Debug)]
pub(crate) struct RegistryRow {
    pub(crate) function: String,
    pub(crate) triggers: Vec<String>,
    pub(crate) members: Option<Vec<RecordedMember>>,
}

impl Capture {
    /// The registry: what is installed, with a health check of each table ([`Installed::issues`]):
    /// partitions or inheritance children created, attached, detached or dropped since install,
    /// capture triggers missing or disabled, captured columns renamed, dropped or retyped, the
    /// table become a partition or child itself. Empty when nothing was ever installed in this
    /// capture schema.
    ///
    /// What no catalog check can see: writes under `session_replication_role = replica` (logical
    /// replication's apply, `pg_restore --disable-triggers`, tools that set it), which fire no
    /// ordinary trigger at all.
    ///
    /// # Errors
    ///
    /// [`CaptureError::Postgres`] when a query fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: tokio_postgres::Client) -> matroska_pg_capture::capture::Result<()> {
    /// let installed = matroska_pg_capture::capture::Capture::default().list(&client).await?;
    /// assert!(installed.iter().all(|i| i.is_complete()));
    /// # Ok(()) }
    /// ```
    pub async fn list(&self, client: &Client) -> Result<Vec<Installed>> {
        if !self.registry_exists(client).await? {
            return Ok(Vec::new());
        }
        // `to_jsonb(i)`: a registry from before format 2 has no `members` or `columns`.
        let rows = client
            .query(
                &format!(
                    "SELECT i.table_schema, i.table_name, i.kind, i.channel, i.store_schema,
                            i.function_name, i.trigger_names, i.declaration::text, i.installed_at,
                            i.installed_by,
                            (SELECT count(*) FROM pg_trigger t
                             WHERE t.tgrelid = i.table_oid AND t.tgname = ANY (i.trigger_names)),
                            i.table_oid, i.format, (to_jsonb(i) -> 'members')::text,
                            (to_jsonb(i) -> 'columns')::text
                     FROM {}.installed i ORDER BY i.table_schema, i.table_name",
                    self.schema().quoted()
                ),
                &[],
            )
            .await
            .map_err(CaptureError::pg("list"))?;
        let mut installed = Vec::with_capacity(rows.len());
        for row in &rows {
            let schema: String = row.get(0);
            let name: String = row.get(1);
            let function: String = row.get(5);
            let trigger_names: Vec<String> = row.get(6);
            let members: Option<Vec<RecordedMember>> =
                health::parse_recorded(row.get(13), "members")?;
            let columns: Option<Vec<RecordedColumn>> =
                health::parse_recorded(row.get(14), "columns")?;
            let table = TableRef::new(Some(&schema), &name)?;
            let recorded = Recorded {
                table_oid: row.get(11),
                function: format!("{}.{}", self.schema().quoted(), ident(&function)),
                triggers: &trigger_names,
                format: row.get(12),
                members,
                columns,
            };
            let issues = health::check(client, &table.to_string(), &recorded).await?;
            installed.push(Installed {
                members: recorded
                    .members
                    .iter()
                    .flatten()
                    .map(|m| m.table.clone())
                    .collect(),
                table,
                kind: row.get(2),
                channel: row.get(3),
                store_schema: row.get(4),
                function_name: function,
                trigger_names,
                declaration: row.get(7),
                installed_at: row.get(8),
                installed_by: row.get(9),
                triggers_present: row.get(10),
                issues,
            });
        }
        Ok(installed)
    }

    /// The kinds installed with NOTIFY on `channel`: what a listener on it should watch
    /// ([`ListenerConfig::watch_kinds`](crate::listener::ListenerConfig::watch_kinds)), so that a gap
    /// invalidates everything the triggers could have sent.
    ///
    /// # Errors
    ///
    /// [`CaptureError::Postgres`] when the query fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use matroska_pg_capture::capture::Capture;
    /// use matroska_pg_capture::listener::Listener;
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
                    self.schema().quoted()
                ),
                &[&channel],
            )
            .await
            .map_err(CaptureError::pg("installed kinds"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub(crate) async fn registry_exists(&self, client: &Client) -> Result<bool> {
        let name = format!("{}.installed", self.schema().quoted());
        let row = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
            .await
            .map_err(CaptureError::pg("read the registry"))?;
        Ok(row.get(0))
    }

    pub(crate) async fn recorded(
        &self,
        client: &Client,
        table: &Resolved,
    ) -> Result<Option<RegistryRow>> {
        if !self.registry_exists(client).await? {
            return Ok(None);
        }
        let rows = client
            .query(
                &format!(
                    "SELECT function_name, trigger_names, (to_jsonb(i) -> 'members')::text
                     FROM {}.installed i WHERE table_schema = $1 AND table_name = $2",
                    self.schema().quoted()
                ),
                &[&table.schema, &table.name],
            )
            .await
            .map_err(CaptureError::pg("read the registry"))?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        Ok(Some(RegistryRow {
            function: row.get(0),
            triggers: row.get(1),
            members: health::parse_recorded(row.get(2), "members")?,
        }))
    }
}
