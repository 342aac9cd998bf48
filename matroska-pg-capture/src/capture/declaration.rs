//! What to capture: [`TableCapture`] (one application table: its kind, id columns and scope
//! field sets, the shape of [`Scopes`](matroska_core::Scopes)), [`Declaration`] (a TOML file of
//! them) and [`TableRef`] (a possibly schema-qualified table name).

use std::collections::HashSet;

use serde::Deserialize;

use super::encode::MAX_IDENT;
use super::error::{CaptureError, Result};
use matroska_postgres::schema::SchemaName;

mod scope_set;
mod table;
mod table_ref;

pub use self::scope_set::ScopeSet;
pub use self::table::TableCapture;
pub use self::table_ref::TableRef;

/// The schema the helper functions, trigger functions and registry live in by default.
///
/// # Examples
///
/// ```
/// assert_eq!(matroska_pg_capture::capture::DEFAULT_CAPTURE_SCHEMA, "matroska_capture");
/// ```
pub const DEFAULT_CAPTURE_SCHEMA: &str = "matroska_capture";

/// How many notifications one transaction sends on a channel before the rest of its tags
/// degrade to `a:<kind>` (a listener buffers 4,096 events per subscriber).
///
/// # Examples
///
/// ```
/// assert_eq!(matroska_pg_capture::capture::DEFAULT_MAX_NOTIFIES, 100);
/// ```
pub const DEFAULT_MAX_NOTIFIES: u32 = 100;

/// How many tags one statement stamps in the PgStore before it stamps `a:<kind>` instead.
///
/// # Examples
///
/// ```
/// assert_eq!(matroska_pg_capture::capture::DEFAULT_MAX_STORE_TAGS, 100_000);
/// ```
pub const DEFAULT_MAX_STORE_TAGS: u32 = 100_000;

/// Checks an identifier: what PostgreSQL keeps exactly once quoted (1 to 63 bytes, no NUL).
pub(crate) fn check_ident(what: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty".to_owned())
    } else if name.len() > MAX_IDENT {
        Some(format!(
            "it has {} bytes; PostgreSQL keeps at most {MAX_IDENT} and would silently truncate it",
            name.len()
        ))
    } else if name.contains('\0') {
        Some("it contains NUL".to_owned())
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CaptureError::Identifier {
            what,
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

pub(crate) fn unique(sorted_or_not: &[String]) -> std::result::Result<(), String> {
    let mut seen = HashSet::new();
    for item in sorted_or_not {
        if !seen.insert(item) {
            return Err(item.clone());
        }
    }
    Ok(())
}

pub(crate) fn schema_name(what: &'static str, name: &str) -> Result<SchemaName> {
    SchemaName::new(name).map_err(|error| CaptureError::Identifier {
        what,
        name: name.to_owned(),
        reason: match error {
            matroska_core::Error::InvalidNamespace { reason, .. } => reason,
            other => other.to_string(),
        },
    })
}

/// A declaration file: the capture schema and the tables to capture.
///
/// The TOML format (top-level keys are defaults that each `[[table]]` may override):
///
/// ```toml
/// capture_schema = "matroska_capture"  # helpers, trigger functions, registry (default)
/// channel = "matroska"                 # NOTIFY channel (default)
/// store_schema = "app_cache"           # PgStore invalidated in-transaction (optional)
/// notify = true                        # default
/// max_notifies = 100                   # per transaction and channel, then a:<kind>
///
/// [[table]]
/// table = "public.articles"            # or: schema = "public", name = "articles"
/// kind = "article"
/// id = ["id"]                          # or id = "id"; several columns make a tuple id
///
/// [[table.scope]]
/// fields = ["category", "published"]
/// watch = ["title"]                    # optional: more columns whose change touches the scope
///
/// [[table.scope]]
/// fields = ["published"]
/// columns = { published = "is_published" }  # optional: field name -> column
/// ```
///
/// # Examples
///
/// ```
/// use matroska_pg_capture::capture::Declaration;
///
/// let decl = Declaration::from_toml(r#"
///     store_schema = "app_cache"
///     [[table]]
///     table = "public.articles"
///     kind = "article"
///     id = "id"
///     [[table.scope]]
///     fields = ["category", "published"]
/// "#)?;
/// assert_eq!(decl.tables()[0].kind(), "article");
/// assert_eq!(decl.capture_schema().as_str(), "matroska_capture");
/// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declaration {
    capture_schema: SchemaName,
    tables: Vec<TableCapture>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDecl {
    capture_schema: Option<String>,
    channel: Option<String>,
    store_schema: Option<String>,
    notify: Option<bool>,
    max_notifies: Option<u32>,
    max_store_tags: Option<u32>,
    #[serde(default)]
    table: Vec<FileTable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTable {
    table: Option<String>,
    schema: Option<String>,
    name: Option<String>,
    kind: String,
    id: Option<OneOrMany>,
    #[serde(default)]
    events_only: bool,
    #[serde(default)]
    scope: Vec<ScopeSet>,
    channel: Option<String>,
    store_schema: Option<String>,
    notify: Option<bool>,
    max_notifies: Option<u32>,
    max_store_tags: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Declaration {
    /// A declaration of `tables` in the capture schema `capture_schema`.
    ///
    /// # Errors
    ///
    /// [`CaptureError::Identifier`] for an invalid schema name, or what
    /// [`TableCapture::validate`] finds.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::{Declaration, TableCapture, TableRef};
    ///
    /// let t = TableCapture::new(TableRef::parse("articles")?, "article").id(["id"]);
    /// let decl = Declaration::new("matroska_capture", vec![t])?;
    /// assert_eq!(decl.tables().len(), 1);
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn new(capture_schema: &str, tables: Vec<TableCapture>) -> Result<Self> {
        let capture_schema = schema_name("capture schema", capture_schema)?;
        for table in &tables {
            table.validate()?;
        }
        let mut seen = HashSet::new();
        for table in &tables {
            if !seen.insert(table.table().clone()) {
                return Err(CaptureError::Declaration {
                    table: table.table().to_string(),
                    reason: "the table is declared twice".to_owned(),
                });
            }
        }
        Ok(Self {
            capture_schema,
            tables,
        })
    }

    /// Reads a TOML declaration (see the type's documentation for the format).
    ///
    /// # Errors
    ///
    /// [`CaptureError::Toml`] for bad TOML or unknown keys, or what [`Declaration::new`] finds.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::Declaration;
    ///
    /// assert!(Declaration::from_toml("[[table]]\nkind = \"a\"").is_err()); // no table, no id
    /// ```
    pub fn from_toml(text: &str) -> Result<Self> {
        let file: FileDecl = toml::from_str(text).map_err(|e| CaptureError::Toml(Box::new(e)))?;
        let mut tables = Vec::with_capacity(file.table.len());
        for entry in file.table {
            let table = match (entry.table, entry.schema, entry.name) {
                (Some(table), None, None) => TableRef::parse(&table)?,
                (None, schema, Some(name)) => TableRef::new(schema.as_deref(), &name)?,
                _ => {
                    return Err(CaptureError::Declaration {
                        table: entry.kind,
                        reason: "give either table = \"schema.name\" or name (and schema)"
                            .to_owned(),
                    });
                }
            };
            let mut capture = TableCapture::new(table, entry.kind)
                .id(match entry.id {
                    None => Vec::new(),
                    Some(OneOrMany::One(id)) => vec![id],
                    Some(OneOrMany::Many(ids)) => ids,
                })
                .events_only_if(entry.events_only)
                .notify(entry.notify.or(file.notify).unwrap_or(true))
                .max_notifies(
                    entry
                        .max_notifies
                        .or(file.max_notifies)
                        .unwrap_or(DEFAULT_MAX_NOTIFIES),
                )
                .max_store_tags(
                    entry
                        .max_store_tags
                        .or(file.max_store_tags)
                        .unwrap_or(DEFAULT_MAX_STORE_TAGS),
                );
            if let Some(channel) = entry.channel.or_else(|| file.channel.clone()) {
                capture = capture.channel(channel);
            }
            if let Some(store) = entry.store_schema.or_else(|| file.store_schema.clone()) {
                capture = capture.store_schema(&store)?;
            }
            for set in entry.scope {
                capture = capture.scope(set);
            }
            tables.push(capture);
        }
        if tables.is_empty() {
            return Err(CaptureError::Declaration {
                table: "(none)".to_owned(),
                reason: "the file declares no [[table]]".to_owned(),
            });
        }
        Self::new(
            file.capture_schema
                .as_deref()
                .unwrap_or(DEFAULT_CAPTURE_SCHEMA),
            tables,
        )
    }

    /// The capture schema.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::{Declaration, TableCapture, TableRef};
    ///
    /// let t = TableCapture::new(TableRef::parse("t")?, "k").id(["id"]);
    /// assert_eq!(Declaration::new("cap", vec![t])?.capture_schema().as_str(), "cap");
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn capture_schema(&self) -> &SchemaName {
        &self.capture_schema
    }

    /// The tables.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::{Declaration, TableCapture, TableRef};
    ///
    /// let t = TableCapture::new(TableRef::parse("t")?, "k").id(["id"]);
    /// assert_eq!(Declaration::new("cap", vec![t])?.tables()[0].kind(), "k");
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn tables(&self) -> &[TableCapture] {
        &self.tables
    }
}

/// Checks and parses a capture schema name.
pub(crate) fn capture_schema(name: &str) -> Result<SchemaName> {
    schema_name("capture schema", name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_refs_parse_quotes_and_dots() {
        let t = TableRef::parse(r#""My ""Schema"""."a.b""#).unwrap();
        assert_eq!(t.schema(), Some("My \"Schema\""));
        assert_eq!(t.name(), "a.b");
        assert_eq!(t.to_string(), r#""My ""Schema"""."a.b""#);
        for bad in [
            "",
            ".",
            "a.",
            ".a",
            "a.b.c",
            "\"a",
            "\"a\"b",
            "a\"b",
            &"x".repeat(64),
        ] {
            assert!(TableRef::parse(bad).is_err(), "{bad:?}");
        }
        let unicode = "é".repeat(31); // 62 bytes
        assert_eq!(TableRef::parse(&unicode).unwrap().name(), unicode);
        assert!(TableRef::parse(&"é".repeat(32)).is_err());
        assert!(TableRef::parse("a; DROP TABLE x").is_ok()); // quoted, so harmless
    }

    #[test]
    fn validation_catches_inconsistent_declarations() {
        let base = || TableCapture::new(TableRef::parse("t").unwrap(), "k").id(["id"]);
        assert!(base().validate().is_ok());
        assert!(
            TableCapture::new(TableRef::parse("t").unwrap(), "")
                .id(["id"])
                .validate()
                .is_err()
        );
        assert!(base().id(["id", "id"]).validate().is_err());
        assert!(
            base()
                .scope(ScopeSet::new(["a", "b"]))
                .scope(ScopeSet::new(["b", "a"]))
                .validate()
                .is_err()
        );
        assert!(base().scope(ScopeSet::new(["a", "a"])).validate().is_err());
        assert!(
            base()
                .scope(ScopeSet::new(["a"]).column("b", "c"))
                .validate()
                .is_err()
        );
        assert!(base().channel("").validate().is_err());
        assert!(base().channel("x".repeat(64)).validate().is_err());
        assert!(base().notify(false).validate().is_err());
        assert!(base().max_notifies(1).validate().is_err());
        assert!(base().store_schema("Bad Name").is_err());
    }

    #[test]
    fn toml_declarations_with_defaults_and_overrides() {
        let decl = Declaration::from_toml(
            r#"
            channel = "shop"
            store_schema = "cache"
            [[table]]
            table = 'Sales."Order Lines"'
            kind = "line"
            id = ["order_id", "n"]
            [[table.scope]]
            fields = ["status"]
            watch = ["updated_at"]
            [[table]]
            schema = "public"
            name = "articles"
            kind = "article"
            id = "id"
            channel = "news"
            notify = false
            [[table.scope]]
            fields = ["cat"]
            columns = { cat = "category" }
            "#,
        )
        .unwrap();
        let [lines, articles] = decl.tables() else {
            panic!("two tables")
        };
        assert_eq!(lines.table().name(), "Order Lines");
        assert_eq!(lines.notify_channel(), "shop");
        assert_eq!(lines.id_columns(), ["order_id", "n"]);
        assert_eq!(lines.scopes()[0].all_watched(), ["status", "updated_at"]);
        assert_eq!(articles.notify_channel(), "news");
        assert!(!articles.notifies());
        assert_eq!(articles.store().unwrap().as_str(), "cache");
        assert_eq!(articles.scopes()[0].column_of("cat"), "category");
        assert!(matches!(
            Declaration::from_toml(
                "[[table]]\ntable = \"t\"\nkind = \"k\"\nid = \"id\"\nbogus = 1"
            ),
            Err(CaptureError::Toml(_))
        ));
        let json = serde_json::to_string(articles).unwrap();
        assert!(json.contains("\"store_schema\":\"cache\""), "{json}");
    }
}
