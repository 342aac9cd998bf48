//! The health check behind [`Capture::list`](super::Capture::list): what changed since install
//! that leaves a table's capture incomplete (writes that fire no trigger) or stale (a trigger
//! function that no longer matches the table).

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use tokio_postgres::Client;

use super::catalog::{DESCENDANTS, ancestors};
use super::encode::ident;
use super::error::{CaptureError, Result};

/// Something that leaves an installed capture incomplete or stale, found by
/// [`Capture::list`](super::Capture::list). Each one means that some writes are not (or no
/// longer correctly) turned into invalidations; its text says what to do.
///
/// # Examples
///
/// ```
/// use matroska_pg_capture::capture::CaptureIssue;
///
/// let issue = CaptureIssue::DisabledTrigger {
///     table: r#""public"."articles""#.to_owned(),
///     trigger: "matroska_capture_upd".to_owned(),
///     replica_only: false,
/// };
/// assert!(issue.to_string().contains("ENABLE TRIGGER"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CaptureIssue {
    /// The table was dropped; only the trigger function and the registry row remain.
    TableDropped,
    /// The table has become a partition or inheritance child of `parent`: writes made through
    /// `parent` fire only its own statement triggers.
    BecamePartOf {
        /// The new parent, quoted.
        parent: String,
    },
    /// A partition or inheritance child was created or attached since install: the rows an
    /// attached table brought were not invalidated, and writes made to it directly are not
    /// captured while its triggers are `missing`.
    Joined {
        /// The partition or child, quoted.
        table: String,
        /// The capture triggers it lacks.
        missing: Vec<String>,
    },
    /// A partition or inheritance child recorded at install is no longer part of the table:
    /// detached (or made to no longer inherit), or dropped. Its rows left without an
    /// invalidation.
    Left {
        /// The partition or child, as recorded.
        table: String,
        /// Whether it was dropped (rather than detached).
        dropped: bool,
    },
    /// The table, or one of its partitions or children, lacks capture triggers: writes made to
    /// it directly are not captured.
    MissingTriggers {
        /// The table, quoted.
        table: String,
        /// The missing triggers.
        missing: Vec<String>,
    },
    /// A capture trigger is disabled (`ALTER TABLE ... DISABLE TRIGGER`), or enabled only for
    /// `session_replication_role = replica` (`replica_only`): ordinary writes are not captured.
    DisabledTrigger {
        /// The table, quoted.
        table: String,
        /// The trigger.
        trigger: String,
        /// `ENABLE REPLICA TRIGGER` rather than `DISABLE TRIGGER`.
        replica_only: bool,
    },
    /// A captured column (an id, scope field or watched column) was renamed: the trigger
    /// function still reads the old name, so writes to the table fail.
    ColumnRenamed {
        /// The name at install.
        column: String,
        /// The name now.
        now: String,
    },
    /// A captured column was dropped: writes to the table fail.
    ColumnDropped {
        /// The name at install.
        column: String,
    },
    /// A captured column's type changed: the tags computed from it may no longer be those Rust
    /// computes (or the type is no longer supported).
    ColumnRetyped {
        /// The column.
        column: String,
        /// Its type at install.
        was: String,
        /// Its type now.
        now: String,
    },
    /// Installed by an older version of the generated SQL, which recorded neither the
    /// partitions and children nor the columns: those cannot be checked.
    OlderFormat {
        /// The recorded format.
        format: i32,
    },
}

impl fmt::Display for CaptureIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const AGAIN: &str = "run install again";
        match self {
            Self::TableDropped => write!(f, "the table was dropped: uninstall it"),
            Self::BecamePartOf { parent } => write!(
                f,
                "the table became a partition or inheritance child of {parent}: writes made \
                 through {parent} are not captured; uninstall it and capture {parent} instead"
            ),
            Self::Joined { table, missing } => {
                write!(
                    f,
                    "partition or child {table} joined since install (created or attached): \
                     rows it brought were not invalidated"
                )?;
                if !missing.is_empty() {
                    write!(
                        f,
                        ", and writes made to it directly are not captured (no trigger {})",
                        missing.join(", ")
                    )?;
                }
                write!(f, "; {AGAIN} (it invalidates the kind)")
            }
            Self::Left { table, dropped } => write!(
                f,
                "partition or child {table} was {} since install: its rows left without an \
                 invalidation; {AGAIN} (it invalidates the kind)",
                if *dropped { "dropped" } else { "detached" }
            ),
            Self::MissingTriggers { table, missing } => write!(
                f,
                "{table} lacks the capture triggers {}: writes made to it directly are not \
                 captured; {AGAIN}",
                missing.join(", ")
            ),
            Self::DisabledTrigger {
                table,
                trigger,
                replica_only,
            } => {
                let state = if *replica_only {
                    "fires only under session_replication_role = replica"
                } else {
                    "is disabled"
                };
                write!(
                    f,
                    "trigger {trigger} on {table} {state}: its writes are not captured (ALTER \
                     TABLE {table} ENABLE TRIGGER {})",
                    ident(trigger)
                )
            }
            Self::ColumnRenamed { column, now } => write!(
                f,
                "captured column {column:?} was renamed to {now:?}: writes to the table fail \
                 until the declaration names it and install runs again"
            ),
            Self::ColumnDropped { column } => write!(
                f,
                "captured column {column:?} was dropped: writes to the table fail until the \
                 declaration drops it and install runs again"
            ),
            Self::ColumnRetyped { column, was, now } => write!(
                f,
                "captured column {column:?} changed type from {was} to {now}: its tags may \
                 no longer match Rust's; {AGAIN}"
            ),
            Self::OlderFormat { format } => write!(
                f,
                "installed by an older version (format {format}), which recorded neither \
                 partitions and children nor columns, so they are not checked; {AGAIN}"
            ),
        }
    }
}

/// A partition or child as the registry records it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RecordedMember {
    pub(crate) oid: u32,
    pub(crate) table: String,
}

/// A captured column as the registry records it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RecordedColumn {
    name: String,
    attnum: i16,
    #[serde(rename = "type")]
    type_name: String,
}

/// What the registry recorded about one table, as the check needs it.
#[derive(Debug)]
pub(crate) struct Recorded<'a> {
    pub(crate) table_oid: u32,
    /// The trigger function, schema-qualified and quoted.
    pub(crate) function: String,
    pub(crate) triggers: &'a [String],
    pub(crate) format: i32,
    /// `None` before format 2.
    pub(crate) members: Option<Vec<RecordedMember>>,
    /// `None` before format 2.
    pub(crate) columns: Option<Vec<RecordedColumn>>,
}

/// Parses a registry JSON column (`members`, `columns`); `None` when absent (older formats).
pub(crate) fn parse_recorded<T: serde::de::DeserializeOwned>(
    json: Option<&str>,
    what: &'static str,
) -> Result<Option<Vec<T>>> {
    match json {
        None | Some("null") => Ok(None),
        Some(text) => serde_json::from_str(text)
            .map(Some)
            .map_err(|source| CaptureError::Registry { what, source }),
    }
}

/// The issues of one installed table (`quoted`), in a fixed order.
pub(crate) async fn check(
    client: &Client,
    quoted: &str,
    recorded: &Recorded<'_>,
) -> Result<Vec<CaptureIssue>> {
    let pg = CaptureError::pg("check the installed capture");
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_class WHERE oid = $1)",
            &[&recorded.table_oid],
        )
        .await
        .map_err(pg)?
        .get(0);
    if !exists {
        return Ok(vec![CaptureIssue::TableDropped]);
    }
    let mut issues = Vec::new();
    let (parents, _) = ancestors(client, recorded.table_oid).await?;
    issues.extend(
        parents
            .into_iter()
            .map(|parent| CaptureIssue::BecamePartOf { parent }),
    );
    let current: Vec<(u32, String)> = client
        .query(DESCENDANTS, &[&recorded.table_oid])
        .await
        .map_err(CaptureError::pg("check the installed capture"))?
        .iter()
        .map(|r| {
            let table = format!(
                "{}.{}",
                ident(&r.get::<_, String>(1)),
                ident(&r.get::<_, String>(2))
            );
            (r.get(0), table)
        })
        .collect();
    let mut targets = vec![(recorded.table_oid, quoted.to_owned())];
    targets.extend(current.iter().cloned());
    let present = triggers(client, recorded, &targets).await?;
    let missing_on = |oid: u32| -> Vec<String> {
        recorded
            .triggers
            .iter()
            .filter(|t| !present.iter().any(|p| p.0 == oid && &p.1 == *t))
            .cloned()
            .collect()
    };
    let mut joined = HashSet::new();
    match &recorded.members {
        None => issues.push(CaptureIssue::OlderFormat {
            format: recorded.format,
        }),
        Some(members) => {
            let was: HashSet<u32> = members.iter().map(|m| m.oid).collect();
            for (oid, table) in current.iter().filter(|(oid, _)| !was.contains(oid)) {
                joined.insert(*oid);
                issues.push(CaptureIssue::Joined {
                    table: table.clone(),
                    missing: missing_on(*oid),
                });
            }
            issues.extend(left(client, members, &current).await?);
        }
    }
    for (oid, table) in targets.iter().filter(|(oid, _)| !joined.contains(oid)) {
        let missing = missing_on(*oid);
        if !missing.is_empty() {
            issues.push(CaptureIssue::MissingTriggers {
                table: table.clone(),
                missing,
            });
        }
    }
    for (oid, trigger, enabled) in &present {
        if enabled == "D" || enabled == "R" {
            let table = targets
                .iter()
                .find(|(t, _)| t == oid)
                .map_or_else(String::new, |(_, name)| name.clone());
            issues.push(CaptureIssue::DisabledTrigger {
                table,
                trigger: trigger.clone(),
                replica_only: enabled == "R",
            });
        }
    }
    if let Some(columns) = &recorded.columns {
        issues.extend(column_issues(client, recorded.table_oid, columns).await?);
    }
    Ok(issues)
}

/// The recorded partitions and children that are not among the `current` ones: detached, or
/// dropped.
async fn left(
    client: &Client,
    members: &[RecordedMember],
    current: &[(u32, String)],
) -> Result<Vec<CaptureIssue>> {
    let mut issues = Vec::new();
    for member in members
        .iter()
        .filter(|m| !current.iter().any(|(oid, _)| *oid == m.oid))
    {
        let dropped: bool = client
            .query_one(
                "SELECT NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = $1)",
                &[&member.oid],
            )
            .await
            .map_err(CaptureError::pg("check the installed capture"))?
            .get(0);
        issues.push(CaptureIssue::Left {
            table: member.table.clone(),
            dropped,
        });
    }
    Ok(issues)
}

/// The capture triggers on `targets` that call the recorded function: table, name,
/// `tgenabled` (`O` on, `D` disabled, `R` replica only, `A` always).
async fn triggers(
    client: &Client,
    recorded: &Recorded<'_>,
    targets: &[(u32, String)],
) -> Result<Vec<(u32, String, String)>> {
    let oids: Vec<u32> = targets.iter().map(|(oid, _)| *oid).collect();
    let rows = client
        .query(
            "SELECT t.tgrelid, t.tgname::text, t.tgenabled::text FROM pg_trigger t
             WHERE t.tgrelid = ANY ($1) AND t.tgname = ANY ($2)
               AND t.tgfoid = to_regprocedure($3)
             ORDER BY t.tgrelid, t.tgname",
            &[
                &oids,
                &recorded.triggers,
                &format!("{}()", recorded.function),
            ],
        )
        .await
        .map_err(CaptureError::pg("check the installed capture"))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Captured columns renamed, dropped or retyped since install (found by their attnum).
async fn column_issues(
    client: &Client,
    oid: u32,
    columns: &[RecordedColumn],
) -> Result<Vec<CaptureIssue>> {
    let attnums: Vec<i16> = columns.iter().map(|c| c.attnum).collect();
    let rows = client
        .query(
            "SELECT a.attnum, a.attname::text, format_type(a.atttypid, a.atttypmod),
                    a.attisdropped
             FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum = ANY ($2)",
            &[&oid, &attnums],
        )
        .await
        .map_err(CaptureError::pg("check the installed capture"))?;
    let mut issues = Vec::new();
    for column in columns {
        let now = rows.iter().find(|r| r.get::<_, i16>(0) == column.attnum);
        match now {
            Some(row) if !row.get::<_, bool>(3) => {
                let (name, type_name): (String, String) = (row.get(1), row.get(2));
                if name != column.name {
                    issues.push(CaptureIssue::ColumnRenamed {
                        column: column.name.clone(),
                        now: name,
                    });
                } else if type_name != column.type_name {
                    issues.push(CaptureIssue::ColumnRetyped {
                        column: column.name.clone(),
                        was: column.type_name.clone(),
                        now: type_name,
                    });
                }
            }
            _ => issues.push(CaptureIssue::ColumnDropped {
                column: column.name.clone(),
            }),
        }
    }
    Ok(issues)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_json_absent_present_or_unreadable() {
        assert!(
            parse_recorded::<RecordedMember>(None, "members")
                .unwrap()
                .is_none()
        );
        assert!(
            parse_recorded::<RecordedMember>(Some("null"), "members")
                .unwrap()
                .is_none()
        );
        let members =
            parse_recorded::<RecordedMember>(Some(r#"[{"oid":7,"table":"\"s\".\"t\""}]"#), "m")
                .unwrap()
                .unwrap();
        assert_eq!(
            (members[0].oid, members[0].table.as_str()),
            (7, r#""s"."t""#)
        );
        let err = parse_recorded::<RecordedColumn>(Some("[{]"), "columns").unwrap_err();
        assert!(
            matches!(
                err,
                CaptureError::Registry {
                    what: "columns",
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            std::error::Error::source(&err).is_some(),
            "the parse error is kept"
        );
    }
}
