//! The SQL texts of the store's operations: the files of `sql/` (next to this crate's
//! `Cargo.toml`, where `sql/README.md` says how to run and `EXPLAIN` one in `psql`), with the
//! quoted schema name and the shared fragments substituted once per store.
//!
//! Every operation is one plain statement, sent as a prepared statement (planned once per
//! connection: `plan_cache_mode=force_generic_plan`) on a pooled connection in autocommit: one
//! statement and one round trip. The hot paths (get, put, invalidate) call no PL/pgSQL except on
//! a miss (`miss_token()`, for the fill token) and in the rare error branch of a put that outlived
//! the fill window (`token_expired()`); `cleanup` is a function (background work).
//!
//! Every statement is shaped so that its plan touches as few relations and nodes as possible:
//! each executor node and each relation costs a few microseconds per call, which is the whole
//! difference with a bare primary-key `SELECT`.
//!
//! The reverse index (`tags`) is maintained lazily (see `PROTOCOL-store.md`, the protocol note
//! in the `PgStore` documentation): puts add the rows they lack, invalidations leave them for the
//! next fill of the key, cleanup removes the strays.

use tokio_postgres::types::Type;

use crate::schema::SchemaName;

/// The reserved tag that `clear()` stamps (`sql/clear.sql` writes it out) and every entry
/// carries, first in `entries.tags` (no canonical tag can be `*`: they all start with a letter
/// and a colon).
pub(crate) const CLEAR_TAG: &str = "*";

/// The parameter types of `put.sql`.
pub(crate) const PUT_TYPES: &[Type] = &[
    Type::TEXT,
    Type::BYTEA,
    Type::TEXT_ARRAY,
    Type::INT8,
    Type::TEXT_ARRAY,
    Type::INT8,
];
/// The parameter types of `fill.sql`.
pub(crate) const FILL_TYPES: &[Type] = &[
    Type::TEXT,
    Type::BYTEA,
    Type::TEXT_ARRAY,
    Type::INT8,
    Type::TEXT_ARRAY,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::INT8,
];
/// The parameter types of `put_many.sql`.
pub(crate) const PUT_MANY_TYPES: &[Type] = &[
    Type::TEXT_ARRAY,
    Type::BYTEA_ARRAY,
    Type::TEXT_ARRAY,
    Type::INT8_ARRAY,
    Type::TEXT_ARRAY,
    Type::TEXT_ARRAY,
    Type::INT8_ARRAY,
    Type::INT8_ARRAY,
    Type::INT8_ARRAY,
    Type::INT8,
];

/// The statements of one schema.
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    pub(crate) get: String,
    /// `get` of many keys in one statement (one snapshot): see `batch.rs`.
    pub(crate) get_many: String,
    pub(crate) exists: String,
    pub(crate) ttl: String,
    pub(crate) delete: String,
    pub(crate) put: String,
    /// `put` of many entries with distinct keys in one statement: see `batch.rs`.
    pub(crate) put_many: String,
    pub(crate) fill: String,
    pub(crate) ensure_state: String,
    pub(crate) invalidate: String,
    pub(crate) reclaim: String,
    pub(crate) clear: String,
    pub(crate) clear_sweep: String,
    pub(crate) cleanup: String,
    pub(crate) lease: String,
    pub(crate) token: String,
    pub(crate) prune_leases: String,
}

/// The files of `sql/`, as `include_str!` reads them.
mod files {
    pub(super) const GET: &str = include_str!("../sql/get.sql");
    pub(super) const GET_MANY: &str = include_str!("../sql/get_many.sql");
    pub(super) const EXISTS: &str = include_str!("../sql/exists.sql");
    pub(super) const TTL: &str = include_str!("../sql/ttl.sql");
    pub(super) const DELETE: &str = include_str!("../sql/delete.sql");
    pub(super) const PUT: &str = include_str!("../sql/put.sql");
    pub(super) const PUT_MANY: &str = include_str!("../sql/put_many.sql");
    pub(super) const FILL: &str = include_str!("../sql/fill.sql");
    pub(super) const ENSURE_STATE: &str = include_str!("../sql/ensure_state.sql");
    pub(super) const INVALIDATE: &str = include_str!("../sql/invalidate.sql");
    pub(super) const RECLAIM: &str = include_str!("../sql/reclaim.sql");
    pub(super) const CLEAR: &str = include_str!("../sql/clear.sql");
    pub(super) const CLEAR_SWEEP: &str = include_str!("../sql/clear_sweep.sql");
    pub(super) const CLEANUP: &str = include_str!("../sql/cleanup.sql");
    pub(super) const LEASE: &str = include_str!("../sql/lease.sql");
    pub(super) const TOKEN: &str = include_str!("../sql/token.sql");
    pub(super) const PRUNE_LEASES: &str = include_str!("../sql/prune_leases.sql");
    pub(super) const LIVE: &str = include_str!("../sql/live.sql");
    pub(super) const INDEX_ROWS: &str = include_str!("../sql/index_rows.sql");
}

/// The statements, by file name (without `.sql`): what `examples/statements.rs` prints.
pub const STATEMENTS: &[(&str, &str)] = &[
    ("get", files::GET),
    ("get_many", files::GET_MANY),
    ("exists", files::EXISTS),
    ("ttl", files::TTL),
    ("delete", files::DELETE),
    ("put", files::PUT),
    ("put_many", files::PUT_MANY),
    ("fill", files::FILL),
    ("ensure_state", files::ENSURE_STATE),
    ("invalidate", files::INVALIDATE),
    ("reclaim", files::RECLAIM),
    ("clear", files::CLEAR),
    ("clear_sweep", files::CLEAR_SWEEP),
    ("cleanup", files::CLEANUP),
    ("lease", files::LEASE),
    ("token", files::TOKEN),
    ("prune_leases", files::PRUNE_LEASES),
];

/// The text of a file without its comment lines (the header that says what it does).
fn body(text: &str) -> String {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

/// A statement of `sql/` with its placeholders substituted for `schema`.
///
/// The fragments are substituted first (they hold `{{schema}}` too); the schema name is quoted
/// (`SchemaName` accepts no text that could carry a placeholder or end the identifier).
pub fn expand(text: &str, schema: &SchemaName) -> String {
    body(text)
        .replace("{{live}}", &body(files::LIVE))
        .replace("{{index_rows}}", &body(files::INDEX_ROWS))
        .replace("{{schema}}", &schema.quoted())
}

impl Sql {
    pub(crate) fn new(schema: &SchemaName) -> Self {
        let e = |text| expand(text, schema);
        Self {
            get: e(files::GET),
            get_many: e(files::GET_MANY),
            exists: e(files::EXISTS),
            ttl: e(files::TTL),
            delete: e(files::DELETE),
            put: e(files::PUT),
            put_many: e(files::PUT_MANY),
            fill: e(files::FILL),
            ensure_state: e(files::ENSURE_STATE),
            invalidate: e(files::INVALIDATE),
            reclaim: e(files::RECLAIM),
            clear: e(files::CLEAR),
            clear_sweep: e(files::CLEAR_SWEEP),
            cleanup: e(files::CLEANUP),
            lease: e(files::LEASE),
            token: e(files::TOKEN),
            prune_leases: e(files::PRUNE_LEASES),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_expands_without_a_placeholder_left() {
        let schema = SchemaName::new("cache_1").expect("a valid schema name");
        for (name, text) in STATEMENTS {
            let sql = expand(text, &schema);
            assert!(!sql.is_empty(), "{name}");
            assert!(!sql.contains("{{"), "{name}: {sql}");
            assert!(!sql.contains("--"), "{name}: a comment left in {sql}");
            assert!(sql.contains("\"cache_1\"."), "{name}: {sql}");
        }
    }

    #[test]
    fn the_clear_statement_stamps_the_clear_tag() {
        let schema = SchemaName::new("c").expect("a valid schema name");
        let sql = Sql::new(&schema);
        assert!(
            sql.clear.contains(&format!("'{CLEAR_TAG}'")),
            "{}",
            sql.clear
        );
        // Every field is one file's statement.
        assert_eq!(sql.get, expand(files::GET, &schema));
    }
}
