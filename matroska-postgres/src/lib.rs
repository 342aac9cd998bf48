#![doc = include_str!("../README.md")]

mod batch;
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
pub mod tls;
mod token;
mod warm;

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
    pub use crate::config::connector_of;
    pub use crate::connect::{ConnectFuture, Connector, Dispatch, Driver, Tls};
    pub use crate::credentials::{CredentialCache, CredentialError};
    pub use crate::error::{STORE, is_auth_failure, pg};
    pub use crate::sql::{STATEMENTS, expand};
    pub use crate::tls::{connector_for, parse_url};
}
