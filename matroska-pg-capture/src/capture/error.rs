//! [`CaptureError`]: what installing, listing or removing change capture can fail with.

/// What installing, listing or removing change capture can fail with.
///
/// Every variant says what to fix; driver errors are kept as the source.
///
/// # Examples
///
/// ```
/// use matroska_pg_capture::capture::{CaptureError, TableRef};
///
/// let err = TableRef::parse("").unwrap_err();
/// assert!(matches!(err, CaptureError::Identifier { .. }));
/// assert!(err.to_string().contains("empty"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// An identifier (table, schema, column, channel) that cannot be used safely.
    #[error("invalid {what} {name:?}: {reason}")]
    Identifier {
        /// What the identifier names.
        what: &'static str,
        /// The identifier as given.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// The declaration is inconsistent (no id column, a field set described twice...).
    #[error("invalid capture declaration for {table}: {reason}")]
    Declaration {
        /// The table the declaration is about.
        table: String,
        /// What is wrong.
        reason: String,
    },
    /// A TOML declaration file that does not parse.
    #[error("the declaration file does not parse")]
    Toml(#[source] Box<toml::de::Error>),
    /// The table does not exist.
    #[error("table {table} not found{hint}")]
    TableNotFound {
        /// The table as given.
        table: String,
        /// A suggestion (tables whose name differs only in case), or nothing.
        hint: String,
    },
    /// The relation exists but is not an ordinary or partitioned table.
    #[error("{table} is not a table (relkind {relkind:?}); triggers go on tables only")]
    NotATable {
        /// The relation.
        table: String,
        /// Its `pg_class.relkind`.
        relkind: String,
    },
    /// A declared column does not exist.
    #[error("column {column:?} not found in {table} (its columns: {available})")]
    ColumnNotFound {
        /// The table.
        table: String,
        /// The missing column.
        column: String,
        /// The table's columns.
        available: String,
    },
    /// A column that must be encoded into a tag has a type the encoder does not support.
    #[error(
        "column {column:?} of {table} has type {type_name}, which cannot be encoded into a tag; \
         supported: {supported}"
    )]
    UnsupportedType {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Its type, as `format_type` prints it.
        type_name: String,
        /// The supported types.
        supported: &'static str,
    },
    /// A column that must be encoded into a tag (an id column or scope field) has a type whose
    /// SQL equality is not byte equality (`char(n)`, `citext`, a nondeterministic collation):
    /// the tag Rust computes from a value the application holds (or filters by) and the tag the
    /// trigger computes from the row could differ, and an invalidation would be missed.
    #[error(
        "column {column:?} of {table} ({type_name}) cannot be an id or scope field: {reason}; \
         use text or varchar with a deterministic collation (normalising values in the \
         application), or list it under watch"
    )]
    InexactEquality {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Its type, as `format_type` prints it.
        type_name: String,
        /// Why its equality is not byte equality.
        reason: String,
    },
    /// The table is part of a partition or inheritance hierarchy in a way capture cannot cover:
    /// it is itself a partition or child (capture its root instead), or one of its partitions
    /// or children cannot carry triggers or also inherits from a table outside the hierarchy.
    #[error("cannot capture {table}: {reason}")]
    Hierarchy {
        /// The table as resolved.
        table: String,
        /// What is wrong, and what to capture instead.
        reason: String,
    },
    /// The PgStore schema to invalidate in-transaction has no `invalidate(text[])` function.
    #[error(
        "schema {schema:?} has no function invalidate(text[]): run PgStore::migrate for it first, \
         or leave store_schema out to notify only"
    )]
    StoreNotMigrated {
        /// The store schema.
        schema: String,
    },
    /// A registry row that cannot be read (its JSON columns were changed by hand).
    #[error("the registry's {what} column does not parse")]
    Registry {
        /// Which column.
        what: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The server cannot run the generated SQL.
    #[error("unsupported server: {reason}")]
    Server {
        /// What is missing.
        reason: String,
    },
    /// A statement failed.
    #[error("{what}: {message}")]
    Postgres {
        /// What was being done.
        what: &'static str,
        /// The server's message (and SQLSTATE) or the driver's.
        message: String,
        /// The driver error.
        #[source]
        source: tokio_postgres::Error,
    },
}

impl CaptureError {
    pub(crate) fn pg(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Self {
        move |source| {
            let message = match source.as_db_error() {
                Some(db) => format!("{} ({})", db.message(), db.code().code()),
                None => source.to_string(),
            };
            Self::Postgres {
                what,
                message,
                source,
            }
        }
    }
}

/// The result type of the [`capture`](super) module.
pub type Result<T, E = CaptureError> = std::result::Result<T, E>;
