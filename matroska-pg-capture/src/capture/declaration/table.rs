//! [`TableCapture`]: what is captured of one table (kind, id, scopes, channel, store).

use std::collections::HashSet;

use serde::Serialize;

use super::super::error::{CaptureError, Result};
use super::{
    DEFAULT_MAX_NOTIFIES, DEFAULT_MAX_STORE_TAGS, ScopeSet, TableRef, check_ident, schema_name,
    unique,
};
use crate::listener::DEFAULT_CHANNEL;
use matroska_postgres::schema::SchemaName;

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

    pub(super) fn events_only_if(mut self, events_only: bool) -> Self {
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
