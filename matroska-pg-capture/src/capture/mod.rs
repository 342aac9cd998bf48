//! Change capture, the sending half: generated triggers that turn every INSERT, UPDATE, DELETE
//! and TRUNCATE of an application table into the tags it touches, invalidate a
//! [`PgStore`](matroska_postgres::PgStore) inside the writer's transaction, and `NOTIFY` the tags at commit
//! for the [`Listener`](crate::listener::Listener) of other processes and stores. Nothing on the write path
//! needs Matroska: plain SQL, another language, a migration script, `psql` are all caught, on the
//! table and on each of its partitions and inheritance children (see [What the triggers cannot
//! see](#what-the-triggers-cannot-see) for the exceptions).
//!
//! ```no_run
//! use matroska_pg_capture::capture::{Capture, ScopeSet, TableCapture, TableRef};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let (mut client, connection) =
//!     tokio_postgres::connect("postgres://app@localhost/app", tokio_postgres::NoTls).await?;
//! tokio::spawn(connection);
//! // The Rust side: Scopes::new("article").id(|a| a.id)
//! //     .describe(["category", "published"], |a| (a.category.clone(), a.published))
//! let articles = TableCapture::new(TableRef::parse("public.articles")?, "article")
//!     .id(["id"])
//!     .scope(ScopeSet::new(["category", "published"]))
//!     .store_schema("app_cache")?; // optional: the PgStore, invalidated in-transaction
//! Capture::default().install(&mut client, &[articles]).await?;
//! # Ok(()) }
//! ```
//!
//! The `matroska-pg` command does the same from a TOML [`Declaration`] or flags, and lists,
//! removes, listens, cleans up and reports.
//!
//! # The tags
//!
//! The triggers compute exactly the tags that [`Scopes::invalidate_for`] and [`Dep::id`] compute
//! in Rust for the same values (the encoders are SQL functions that reproduce
//! [`matroska_core::tag`] byte for byte, see the `encode` module's table of types), per row:
//!
//! - INSERT and DELETE: the id tag of the row, and the tag of every declared scope field set;
//! - UPDATE: for each row that changed at all, the id tags of the old and the new row, and, for
//!   each field set whose fields' or watched columns changed, its tag from the old and from the
//!   new row (a row moving between scopes invalidates both). An UPDATE that changes nothing sends
//!   nothing. Old and new rows are paired by their id; a row whose id changed (or is NULL) counts
//!   as a delete plus an insert, which touches every scope of both (a superset of what Rust
//!   computes from `modified`);
//! - always `k:<kind>` ([`Scopes::any`]), as every `invalidate_for` does;
//! - TRUNCATE: `a:<kind>` ([`Dep::kind`]), everything cached about the kind, since the rows are
//!   unknown. The [`Cache`](matroska_core::Cache) attaches `a:<kind>` to every entry that depends
//!   on the kind.
//!
//! Values are read from columns of the supported types ([`SUPPORTED_TYPES`]: integers; text and
//! varchar with a deterministic collation, uuid and enums as text; boolean; timestamp and
//! timestamptz as microseconds; domains over them); install refuses any other type in an id or
//! scope field, naming the supported ones ([`CaptureError::UnsupportedType`]). It also refuses
//! the types whose SQL equality is not byte equality, with the reason
//! ([`CaptureError::InexactEquality`]): `char(n)` (a client receives the padding, the trigger's
//! text does not), `citext` and nondeterministic collations (`'News' = 'news'`); the tag of a
//! value the application holds could differ from the tag of the row. In Rust, give a `uuid` as
//! `Value::from(uuid.to_string())` (lower case, hyphenated), an enum as its label, a `timestamp`
//! without time zone as its UTC microseconds.
//!
//! # Partitions and inheritance children
//!
//! PostgreSQL fires a statement-level trigger only for the table a statement names. Install
//! therefore puts the triggers on the table and on every partition and inheritance child (at
//! every depth), all calling the one trigger function, and records them: a write made straight to
//! a partition is captured like one made through the parent. A partition or child cannot be
//! captured on its own ([`CaptureError::Hierarchy`] names the table to capture instead).
//!
//! # What the triggers cannot see
//!
//! - writes under `session_replication_role = replica` (logical replication's apply worker,
//!   tools that set it), and writes while a capture trigger is disabled (`ALTER TABLE ... DISABLE
//!   TRIGGER`, which `pg_restore --disable-triggers` issues around the data it loads): invalidate
//!   `a:<kind>` after such a load;
//! - rows that enter or leave with a table: `ATTACH` / `DETACH PARTITION`, `INHERIT` /
//!   `NO INHERIT`, `DROP TABLE` of a partition; and direct writes to a partition created after
//!   install. [`Capture::list`] reports these ([`CaptureIssue`]); installing again puts the
//!   triggers on the new members and, since the hierarchy changed, invalidates `a:<kind>`.
//!
//! [`Capture::list`] also reports a disabled trigger, and a captured column renamed or dropped
//! (writes to the table then fail) or retyped.
//!
//! # Statement-level, set-based
//!
//! One statement-level trigger per event (PostgreSQL refuses transition tables on multi-event
//! triggers), `REFERENCING OLD TABLE` / `NEW TABLE`: a statement's tags are computed by one
//! query over its transition tables, deduplicated, and sent once, so a 10,000-row UPDATE costs one
//! query, one `invalidate` call and a few notifications instead of 10,000 trigger calls.
//!
//! # What a captured write costs
//!
//! Measured with pgbench on a private server with `fsync=off` (so that the commit's flush does
//! not hide the trigger), single-row autocommit UPDATEs of a 10,000-row table with an id and one
//! two-field scope, NOTIFY only, alternating with the same table without triggers (medians of 5
//! to 9 rounds; `examples/trigger_overhead.rs` measures the same from Rust):
//!
//! | trigger function body (a single-row path, built up step by step) | throughput vs. no trigger |
//! | --- | --- |
//! | `RETURN NULL` (the statement-level trigger and its transition tables alone) | 0.93 |
//! | + reading the one old and one new row from the transition tables | 0.82 |
//! | + building the row's tags in PL/pgSQL | 0.68 |
//! | + `pg_notify` | 0.63 |
//! | + the transaction-local record of what was sent (`set_config`) | 0.57 |
//! | the generated function (one set-based query, as above) | 0.56–0.59 |
//!
//! With the commit's `fsync` on (the machine's default server), the same comparison gives
//! 0.6–0.7. A single-row path (record variables filled from the transition tables, tags built
//! statement by statement in PL/pgSQL) was built and measured at 0.57–0.62 against 0.56–0.59 for
//! the set-based query in the same runs: within the noise, so it was not kept. The floor of a PL/pgSQL
//! statement-level trigger that reads its row is about 0.82 before any tag is computed; going
//! past it needs a different mechanism (a row-level trigger changes what an event is: one per
//! row, not per statement; a trigger in C is an extension to install).
//!
//! # Where the tags go
//!
//! - **The PgStore, in the transaction** (`store_schema`): the trigger calls
//!   `{store}.invalidate(tags)`, which appends stamps recording the writer's transaction. The
//!   cache and the data commit together; a rollback changes nothing; a fill whose snapshot
//!   cannot see the writer's transaction is neither stored nor served after it commits (the
//!   store orders fills by snapshot visibility, not by a sequence). Beyond `max_store_tags` tags
//!   in one statement, `a:<kind>` is stamped instead.
//! - **NOTIFY** (`channel`, default `matroska`): one event per statement that changed rows,
//!   `{"v":1,"table":"app.articles","op":"update","at":<µs since the epoch>,"tags":[...]}` (see
//!   the [`listener`](crate::listener) module), each payload under 8,000 bytes, tags greedily
//!   packed; PostgreSQL delivers them at commit only. Tags already sent by an earlier statement
//!   of the transaction are not sent again (a transaction-local record, which a rolled-back
//!   savepoint restores with its notifications): that statement's event carries the rest, maybe
//!   none. When a transaction would send more than `max_notifies` (default 100) notifications on
//!   the channel, the rest of a kind's tags degrade to its `a:<kind>` tag, sent once: coarser,
//!   never dropped; the transaction's later events on the channel are not sent.
//!
//! # Events only
//!
//! [`TableCapture::events_only`] captures a table with no id or scope (PGCacheWatch's mode):
//! each statement that changed rows sends its event with the kind-wide tag `a:<kind>`, which
//! invalidates everything cached about the kind.
//!
//! # The registry
//!
//! `{capture}.installed` (capture schema default `matroska_capture`) records each installed
//! table: schema, name, oid, kind, channel, store schema, the function and trigger names, the
//! declaration (JSON), the format, when and by whom. Uninstall drops exactly the recorded names,
//! so schema-qualified, renamed, mixed-case and 63-byte tables are removed cleanly;
//! [`Capture::installed_kinds`] tells a listener which kinds a gap must invalidate.
//!
//! [`Scopes::invalidate_for`]: matroska_core::Scopes::invalidate_for
//! [`Scopes::any`]: matroska_core::Scopes::any
//! [`Dep::id`]: matroska_core::Dep::id
//! [`Dep::kind`]: matroska_core::Dep::kind

mod catalog;
mod declaration;
mod encode;
mod error;
mod generate;
mod health;
mod install;
mod registry;
mod sqlexpr;

pub use self::catalog::SUPPORTED_TYPES;
pub use self::declaration::{
    DEFAULT_CAPTURE_SCHEMA, DEFAULT_MAX_NOTIFIES, DEFAULT_MAX_STORE_TAGS, Declaration, ScopeSet,
    TableCapture, TableRef,
};
pub use self::error::{CaptureError, Result};
pub use self::health::CaptureIssue;
pub use self::install::Capture;
pub use self::registry::Installed;

/// The SQL that creates (or refreshes) the helper functions and the registry in a capture schema:
/// the tag encoders `esc`, `val(...)`, `fin` and `notify`. [`Capture::install`] runs it; it is
/// public for tests and for computing tags in SQL by hand.
///
/// # Examples
///
/// ```
/// let capture = matroska_postgres::SchemaName::new("matroska_capture")?;
/// let sql = matroska_pg_capture::capture::helpers_sql(&capture);
/// assert!(sql.contains("CREATE OR REPLACE FUNCTION \"matroska_capture\".fin(p text)"));
/// # Ok::<(), matroska_core::Error>(())
/// ```
pub fn helpers_sql(capture: &matroska_postgres::SchemaName) -> String {
    encode::helpers_sql(capture)
}
