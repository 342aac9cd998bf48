//! # matroska-postgres: a dependency-tracking cache inside PostgreSQL
//!
//! [`PgStore`] is a [`matroska_core::Store`]: put it under a [`matroska_core::Cache`] and cached
//! values depend on rows, invalidated when those rows change, with race-safe fills, all in the
//! PostgreSQL you already run. It covers FastPgCache's API (see the README's migration table)
//! without its faults: one round trip per operation, reads that never write (but for the first
//! miss after a crash, which recreates the epoch row), a pool that waits instead of failing, and
//! credential rotation that neither deadlocks nor disturbs open connections.
//!
//! ```no_run
//! use std::time::Duration;
//! use matroska_core::{Cache, Dep, Loaded};
//! use matroska_postgres::PgStore;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PgStore::builder("postgres://app@localhost/app").schema("app_cache").build()?;
//! store.migrate().await?; // once per deploy: creates or upgrades the schema
//! let _cleanup = store.spawn_cleanup(Duration::from_secs(60));
//! let cache = Cache::new(store);
//!
//! let title: String = cache
//!     .get_or_insert_with("article:5:title", || async {
//!         // ... read the row ...
//!         Ok::<_, std::io::Error>(Loaded::new("Hello".to_owned()).dep(Dep::id("article", 5)))
//!     })
//!     .await?;
//! // After a write to article 5:
//! cache.invalidate([Dep::id("article", 5)]).await?;
//! # let _ = title; Ok(()) }
//! ```
//!
//! ## What lives in the schema
//!
//! `migrate()` applies `migrations/NNN_name.sql` (recorded in `{schema}.schema_versions`):
//! `entries` (key, value, tags, the fill's snapshot, expiry), the reverse index `tags` (kept
//! lazily: puts add rows, cleanup removes strays), append-only invalidation `stamps` (tag,
//! invalidating transaction), and the `epoch` row. The SQL function
//! `{schema}.invalidate(text[])` stamps tags inside the caller's transaction: change-capture
//! triggers call it, and a fill that overlapped the writer's transaction is never served after
//! its commit.
//!
//! ## Change capture
//!
//! Triggers that invalidate the store inside writers' transactions and NOTIFY the touched tags,
//! the listener that applies them to other stores, and the `matroska-pg` command live in the
//! `matroska-pg-capture` crate.
//!
//! ## Credentials
//!
//! A [`CredentialProvider`] returns the password or token for each new connection; see the
//! [`credentials`] module.

pub mod cleanup;
pub mod config;
mod connect;
pub mod credentials;
mod error;
pub mod migrate;
mod pool;
pub mod schema;
mod sql;
mod store;
mod token;

pub use crate::cleanup::{CleanupReport, CleanupTask};
pub use crate::config::{DEFAULT_SCHEMA, Persistence, PgStoreConfig};
pub use crate::credentials::{
    Credential, CredentialProvider, FnCredentialProvider, Secret, credential_fn,
};
pub use crate::migrate::MigrationReport;
pub use crate::schema::SchemaName;
pub use crate::store::{MAX_VALUE_LEN, PgStore, PoolStatus};

/// Connection plumbing shared with `matroska-pg-capture` (its listener connects the way the
/// store's pool does). Not part of the public API: no semver promise.
#[doc(hidden)]
pub mod __private {
    pub use crate::connect::{ConnectFuture, Connector, Dispatch, Driver, Tls};
    pub use crate::credentials::{CredentialCache, CredentialError};
    pub use crate::error::{STORE, is_auth_failure, pg};
}
