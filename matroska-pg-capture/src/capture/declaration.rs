//! What to capture: [`TableCapture`] (one application table: its kind, id columns and scope
//! field sets, the shape of [`Scopes`](matroska_core::Scopes)), [`Declaration`] (a TOML file of
//! them) and [`TableRef`] (a possibly schema-qualified table name).

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::encode::MAX_IDENT;
use super::error::{CaptureError, Result};
use crate::listener::DEFAULT_CHANNEL;
use matroska_postgres::schema::{SchemaName, quote_ident};

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

/// A table, optionally schema-qualified. Names are taken exactly as given (no case folding) and
/// always quoted in SQL; without a schema, the table is found through the `search_path` at
/// install time and recorded with its schema.
///
/// # Examples
///
/// ```
/// use matroska_pg_capture::capture::TableRef;
///
/// let t = TableRef::parse(r#"Sales."Order.Lines""#)?;
/// assert_eq!(t.schema(), Some("Sales"));
/// assert_eq!(t.name(), "Order.Lines");
/// assert_eq!(t.to_string(), r#""Sales"."Order.Lines""#);
/// assert_eq!(TableRef::parse("articles")?.schema(), None);
/// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TableRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schema: Option<String>,
    name: String,
}

impl TableRef {
    /// A table `name` in `schema` (`None`: found through the `search_path`).
    ///
    /// # Errors
    ///
    /// [`CaptureError::Identifier`] for an empty name, one over 63 bytes, or one with NUL.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = matroska_pg_capture::capture::TableRef::new(Some("app"), "my table")?;
    /// assert_eq!(t.to_string(), r#""app"."my table""#);
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn new(schema: Option<&str>, name: &str) -> Result<Self> {
        if let Some(schema) = schema {
            check_ident("schema name", schema)?;
        }
        check_ident("table name", name)?;
        Ok(Self {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        })
    }

    /// Parses `table`, `schema.table`, or either part in double quotes (`""` for a quote inside),
    /// which lets a part contain dots. Unquoted parts are taken as they are: `Articles` names the
    /// table `Articles`, not `articles`.
    ///
    /// # Errors
    ///
    /// [`CaptureError::Identifier`] for an empty part, more than two parts, an unclosed quote, or
    /// a part that [`TableRef::new`] refuses.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::TableRef;
    ///
    /// assert_eq!(TableRef::parse(r#""a""b".c"#)?.schema(), Some("a\"b"));
    /// assert!(TableRef::parse("a.b.c").is_err());
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |reason: &str| CaptureError::Identifier {
            what: "table",
            name: text.to_owned(),
            reason: reason.to_owned(),
        };
        let mut parts = Vec::new();
        let mut chars = text.chars().peekable();
        loop {
            let mut part = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            part.push('"');
                        }
                        Some('"') => break,
                        Some(c) => part.push(c),
                        None => return Err(bad("a quoted part is not closed")),
                    }
                }
                if !matches!(chars.peek(), None | Some('.')) {
                    return Err(bad("a quoted part must be followed by '.' or the end"));
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == '.' {
                        break;
                    }
                    if c == '"' {
                        return Err(bad("a quote inside an unquoted part; quote the whole part"));
                    }
                    part.push(c);
                    chars.next();
                }
            }
            if part.is_empty() {
                return Err(bad("it is empty or has an empty part"));
            }
            parts.push(part);
            // Past the dot, or done.
            if chars.next().is_none() {
                break;
            }
        }
        match parts.as_slice() {
            [name] => Self::new(None, name),
            [schema, name] => Self::new(Some(schema), name),
            _ => Err(bad(
                "use table or schema.table (quote parts that contain dots)",
            )),
        }
    }

    /// The schema, if given.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_pg_capture::capture::TableRef::parse("s.t")?.schema(), Some("s"));
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The table name.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_pg_capture::capture::TableRef::parse("s.t")?.name(), "t");
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for TableRef {
    /// The quoted, SQL form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = &self.schema {
            write!(f, "{}.", quote_ident(schema))?;
        }
        f.write_str(&quote_ident(&self.name))
    }
}

/// One scope field set of a table: the fields lists are filtered by (as in
/// [`Scopes::describe`](matroska_core::Scopes::describe)), the column each is read from (the
/// field's own name unless renamed), and extra watched columns (as in
/// [`Scopes::describe_watching`](matroska_core::Scopes::describe_watching)).
///
/// # Examples
///
/// ```
/// use matroska_pg_capture::capture::ScopeSet;
///
/// let set = ScopeSet::new(["category", "published"]).column("published", "is_published").watch(["title"]);
/// assert_eq!(set.fields(), ["category", "published"]);
/// assert_eq!(set.column_of("published"), "is_published");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeSet {
    fields: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    columns: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    watch: Vec<String>,
}

impl ScopeSet {
    /// A field set; each field is read from the column of the same name.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = matroska_pg_capture::capture::ScopeSet::new(["published"]);
    /// assert_eq!(set.column_of("published"), "published");
    /// ```
    pub fn new<I, S>(fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            fields: fields.into_iter().map(Into::into).collect(),
            columns: BTreeMap::new(),
            watch: Vec::new(),
        }
    }

    /// Reads `field` from `column`.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = matroska_pg_capture::capture::ScopeSet::new(["cat"]).column("cat", "category_id");
    /// assert_eq!(set.column_of("cat"), "category_id");
    /// ```
    #[must_use]
    pub fn column(mut self, field: impl Into<String>, column: impl Into<String>) -> Self {
        self.columns.insert(field.into(), column.into());
        self
    }

    /// Columns whose change also touches this scope (besides its fields' columns).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = matroska_pg_capture::capture::ScopeSet::new(["published"]).watch(["published_at"]);
    /// assert_eq!(set.watched(), ["published_at"]);
    /// ```
    #[must_use]
    pub fn watch<I, S>(mut self, columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.watch.extend(columns.into_iter().map(Into::into));
        self
    }

    /// The field names, as declared.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_pg_capture::capture::ScopeSet::new(["a", "b"]).fields(), ["a", "b"]);
    /// ```
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// The column `field` is read from.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_pg_capture::capture::ScopeSet::new(["a"]).column_of("a"), "a");
    /// ```
    pub fn column_of<'a>(&'a self, field: &'a str) -> &'a str {
        self.columns.get(field).map_or(field, String::as_str)
    }

    /// The extra watched columns.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(matroska_pg_capture::capture::ScopeSet::new(["a"]).watched().is_empty());
    /// ```
    pub fn watched(&self) -> &[String] {
        &self.watch
    }

    /// Every column whose change touches this scope: the fields' columns and the watched ones,
    /// sorted, without repeats.
    pub(crate) fn all_watched(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self
            .fields
            .iter()
            .map(|f| self.column_of(f))
            .chain(self.watch.iter().map(String::as_str))
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }
}

/// The capture of one application table: a kind, id columns and scope field sets (the shape of
/// a [`Scopes`](matroska_core::Scopes)), where to send the tags (a NOTIFY channel, a PgStore
/// schema invalidated inside the writer's transaction, or both).
///
/// # Examples
///
/// ```
/// use matroska_pg_capture::capture::{ScopeSet, TableCapture, TableRef};
///
/// let articles = TableCapture::new(TableRef::parse("public.articles")?, "article")
///     .id(["id"])
///     .scope(ScopeSet::new(["category", "published"]))
///     .scope(ScopeSet::new(["published"]))
///     .store_schema("app_cache")?;
/// articles.validate()?;
/// assert_eq!(articles.notify_channel(), "matroska");
/// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableCapture {
    table: TableRef,
    kind: String,
    id: Vec<String>,
    scopes: Vec<ScopeSet>,
    channel: String,
    notify: bool,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_schema"
    )]
    store_schema: Option<SchemaName>,
    max_notifies: u32,
    max_store_tags: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    events_only: bool,
}

#[allow(clippy::ref_option)] // serde's serialize_with signature
fn serialize_schema<S: serde::Serializer>(
    schema: &Option<SchemaName>,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    match schema {
        Some(schema) => serializer.serialize_str(schema.as_str()),
        None => serializer.serialize_none(),
    }
}

impl TableCapture {
    /// The capture of `table` as entities of `kind`, with no id column yet (add one with
    /// [`id`](Self::id)), notifying on [`DEFAULT_CHANNEL`], no PgStore.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::{TableCapture, TableRef};
    ///
    /// let c = TableCapture::new(TableRef::parse("articles")?, "article").id(["id"]);
    /// assert_eq!(c.kind(), "article");
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn new(table: TableRef, kind: impl Into<String>) -> Self {
        Self {
            table,
            kind: kind.into(),
            id: Vec::new(),
            scopes: Vec::new(),
            channel: DEFAULT_CHANNEL.to_owned(),
            notify: true,
            store_schema: None,
            max_notifies: DEFAULT_MAX_NOTIFIES,
            max_store_tags: DEFAULT_MAX_STORE_TAGS,
            events_only: false,
        }
    }

    /// Captures the table for its change events only, with no id or scope declared (as
    /// PGCacheWatch does): every statement that changes rows sends an event naming the table and
    /// the operation, with the kind-wide tag `a:<kind>`
    /// ([`Dep::kind`](matroska_core::Dep::kind)) as its tag, which invalidates everything cached
    /// about the kind (in the PgStore too, with a store schema).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::{TableCapture, TableRef};
    ///
    /// let users = TableCapture::new(TableRef::parse("public.users")?, "user").events_only();
    /// users.validate()?;
    /// assert!(users.is_events_only());
    /// assert!(TableCapture::new(TableRef::parse("t")?, "k").validate().is_err()); // no id
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    #[must_use]
    pub fn events_only(mut self) -> Self {
        self.events_only = true;
        self
    }

    fn events_only_if(mut self, events_only: bool) -> Self {
        self.events_only = events_only;
        self
    }

    /// Whether the table is captured for events only (see [`events_only`](Self::events_only)).
    pub fn is_events_only(&self) -> bool {
        self.events_only
    }

    /// The id columns, in order: one gives `i:<kind>:<value>`, several a tuple `(v1,v2)`, as
    /// [`Dep::id`](matroska_core::Dep::id) with a [`Value::Tuple`](matroska_core::Value::Tuple).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::{TableCapture, TableRef};
    ///
    /// let c = TableCapture::new(TableRef::parse("lines")?, "line").id(["order_id", "n"]);
    /// assert_eq!(c.id_columns(), ["order_id", "n"]);
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    #[must_use]
    pub fn id<I, S>(mut self, columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.id = columns.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a scope field set.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::{ScopeSet, TableCapture, TableRef};
    ///
    /// let c = TableCapture::new(TableRef::parse("articles")?, "article").scope(ScopeSet::new(["published"]));
    /// assert_eq!(c.scopes().len(), 1);
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    #[must_use]
    pub fn scope(mut self, set: ScopeSet) -> Self {
        self.scopes.push(set);
        self
    }

    /// The NOTIFY channel (default [`DEFAULT_CHANNEL`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::{TableCapture, TableRef};
    ///
    /// let c = TableCapture::new(TableRef::parse("articles")?, "article").channel("shop");
    /// assert_eq!(c.notify_channel(), "shop");
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    #[must_use]
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = channel.into();
        self
    }

    /// Whether to NOTIFY at all (default true); without it only the PgStore is invalidated.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::{TableCapture, TableRef};
    ///
    /// let c = TableCapture::new(TableRef::parse("articles")?, "article").notify(false);
    /// assert!(!c.notifies());
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    #[must_use]
    pub fn notify(mut self, notify: bool) -> Self {
        self.notify = notify;
        self
    }

    /// The schema of a [`PgStore`](matroska_postgres::PgStore) in the same database whose
    /// `invalidate(text[])` the triggers call inside the writer's transaction.
    ///
    /// # Errors
    ///
    /// [`CaptureError::Identifier`] when the name is not a valid store schema
    /// ([`SchemaName::new`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::{TableCapture, TableRef};
    ///
    /// let c = TableCapture::new(TableRef::parse("articles")?, "article").store_schema("app_cache")?;
    /// assert_eq!(c.store().map(|s| s.as_str()), Some("app_cache"));
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn store_schema(mut self, schema: &str) -> Result<Self> {
        self.store_schema = Some(schema_name("store schema", schema)?);
        Ok(self)
    }

    /// Notifications per transaction and channel before degrading to `a:<kind>` (default
    /// [`DEFAULT_MAX_NOTIFIES`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::{TableCapture, TableRef};
    ///
    /// let c = TableCapture::new(TableRef::parse("articles")?, "article").max_notifies(10);
    /// assert_eq!(c.notify_limit(), 10);
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    #[must_use]
    pub fn max_notifies(mut self, limit: u32) -> Self {
        self.max_notifies = limit;
        self
    }

    /// Tags one statement stamps in the PgStore before stamping `a:<kind>` instead (default
    /// [`DEFAULT_MAX_STORE_TAGS`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::{TableCapture, TableRef};
    ///
    /// let c = TableCapture::new(TableRef::parse("articles")?, "article").max_store_tags(1000);
    /// assert_eq!(c.store_tag_limit(), 1000);
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    #[must_use]
    pub fn max_store_tags(mut self, limit: u32) -> Self {
        self.max_store_tags = limit;
        self
    }

    /// The table.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::{TableCapture, TableRef};
    ///
    /// let c = TableCapture::new(TableRef::parse("articles")?, "article");
    /// assert_eq!(c.table().name(), "articles");
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn table(&self) -> &TableRef {
        &self.table
    }

    /// The entity kind.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::{TableCapture, TableRef};
    ///
    /// assert_eq!(TableCapture::new(TableRef::parse("t")?, "k").kind(), "k");
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The id columns.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::{TableCapture, TableRef};
    ///
    /// assert!(TableCapture::new(TableRef::parse("t")?, "k").id_columns().is_empty());
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn id_columns(&self) -> &[String] {
        &self.id
    }

    /// The scope field sets.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::{TableCapture, TableRef};
    ///
    /// assert!(TableCapture::new(TableRef::parse("t")?, "k").scopes().is_empty());
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn scopes(&self) -> &[ScopeSet] {
        &self.scopes
    }

    /// The NOTIFY channel.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::{TableCapture, TableRef};
    ///
    /// assert_eq!(TableCapture::new(TableRef::parse("t")?, "k").notify_channel(), "matroska");
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn notify_channel(&self) -> &str {
        &self.channel
    }

    /// Whether the triggers NOTIFY.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::{TableCapture, TableRef};
    ///
    /// assert!(TableCapture::new(TableRef::parse("t")?, "k").notifies());
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn notifies(&self) -> bool {
        self.notify
    }

    /// The PgStore schema invalidated in-transaction, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::{TableCapture, TableRef};
    ///
    /// assert!(TableCapture::new(TableRef::parse("t")?, "k").store().is_none());
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn store(&self) -> Option<&SchemaName> {
        self.store_schema.as_ref()
    }

    /// The notification limit per transaction.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::{TableCapture, TableRef};
    ///
    /// assert_eq!(TableCapture::new(TableRef::parse("t")?, "k").notify_limit(), 100);
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn notify_limit(&self) -> u32 {
        self.max_notifies
    }

    /// The store tag limit per statement.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::{TableCapture, TableRef};
    ///
    /// assert_eq!(TableCapture::new(TableRef::parse("t")?, "k").store_tag_limit(), 100_000);
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn store_tag_limit(&self) -> u32 {
        self.max_store_tags
    }

    /// Checks what can be checked without a server: a non-empty kind, at least one id column,
    /// valid identifiers, no field given twice in a set, no set described twice, a target.
    ///
    /// # Errors
    ///
    /// [`CaptureError::Identifier`] or [`CaptureError::Declaration`].
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::{TableCapture, TableRef};
    ///
    /// let no_id = TableCapture::new(TableRef::parse("t")?, "k");
    /// assert!(no_id.validate().is_err());
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| CaptureError::Declaration {
            table: self.table.to_string(),
            reason,
        };
        if self.kind.is_empty() {
            return Err(bad("the kind must not be empty".to_owned()));
        }
        if self.kind.contains('\0') {
            return Err(bad("the kind contains NUL".to_owned()));
        }
        if self.events_only {
            if !self.id.is_empty() || !self.scopes.is_empty() {
                return Err(bad(
                    "an events-only table declares no id column and no scope".to_owned(),
                ));
            }
        } else if self.id.is_empty() {
            return Err(bad(
                "declare at least one id column (or events_only, for change events with the \
                 kind-wide tag only)"
                    .to_owned(),
            ));
        }
        for column in &self.id {
            check_ident("id column", column)?;
        }
        if unique(&self.id).is_err() {
            return Err(bad("an id column is given twice".to_owned()));
        }
        let mut sets = HashSet::new();
        for set in &self.scopes {
            for field in &set.fields {
                if field.is_empty() || field.contains('\0') {
                    return Err(bad(format!(
                        "scope field {field:?} must be non-empty text without NUL"
                    )));
                }
                check_ident("scope column", set.column_of(field))?;
            }
            for field in set.columns.keys() {
                if !set.fields.contains(field) {
                    return Err(bad(format!(
                        "a column is given for {field:?}, which is not a field of the set {:?}",
                        set.fields
                    )));
                }
            }
            for column in &set.watch {
                check_ident("watched column", column)?;
            }
            let mut sorted = set.fields.clone();
            sorted.sort();
            if let Err(twice) = unique(&sorted) {
                return Err(bad(format!(
                    "field {twice:?} is given twice in {:?}",
                    set.fields
                )));
            }
            if !sets.insert(sorted) {
                return Err(bad(format!(
                    "the field set {:?} is described twice",
                    set.fields
                )));
            }
        }
        check_ident("channel", &self.channel)?;
        if !self.notify && self.store_schema.is_none() {
            return Err(bad(
                "with notify off, a store schema is needed (otherwise the triggers do nothing)"
                    .to_owned(),
            ));
        }
        if self.max_notifies < 2 {
            return Err(bad(
                "max_notifies must be at least 2 (room for the kind-wide tag)".to_owned(),
            ));
        }
        if self.max_store_tags == 0 {
            return Err(bad("max_store_tags must be positive".to_owned()));
        }
        Ok(())
    }
}

fn unique(sorted_or_not: &[String]) -> std::result::Result<(), String> {
    let mut seen = HashSet::new();
    for item in sorted_or_not {
        if !seen.insert(item) {
            return Err(item.clone());
        }
    }
    Ok(())
}

fn schema_name(what: &'static str, name: &str) -> Result<SchemaName> {
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
            if !seen.insert(table.table.clone()) {
                return Err(CaptureError::Declaration {
                    table: table.table.to_string(),
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
