//! Mapping driver and pool errors to [`matroska_core::Error`], keeping them as the source.

use std::time::Duration;

use deadpool::managed::{PoolError, TimeoutType};
use matroska_core::Error;
use tokio_postgres::error::SqlState;

use crate::pool::ConnectError;

/// The store name in [`Error::Backend`].
pub const STORE: &str = "postgres";

/// The SQLSTATE `put` raises when a fill token expired while it ran.
pub(crate) const TOKEN_EXPIRED: &str = "MKS01";
/// The SQLSTATE `configure` raises when the schema's persistence differs from the config.
pub(crate) const PERSISTENCE_MISMATCH: &str = "MKP01";

/// Whether the server rejected the credential (wrong password, expired token).
pub fn is_auth_failure(error: &tokio_postgres::Error) -> bool {
    matches!(
        error.code(),
        Some(code) if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    )
}

/// Whether the connection is gone, so that the same operation on a new connection may succeed.
pub(crate) fn is_connection_lost(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
        }
        // No SQLSTATE: an I/O error or an unexpected end of the connection.
        None => std::error::Error::source(error)
            .is_some_and(<dyn std::error::Error>::is::<std::io::Error>),
    }
}

/// Whether retrying later may succeed.
fn is_transient(error: &tokio_postgres::Error) -> bool {
    if is_connection_lost(error) {
        return true;
    }
    match error.code() {
        Some(code) => {
            let code = code.code();
            // Serialization failure, deadlock, insufficient resources (too many connections,
            // out of memory, disk full), query canceled (statement_timeout), lock not available,
            // operator intervention.
            code.starts_with("40")
                || code.starts_with("53")
                || matches!(code, "57014" | "55P03" | "57000")
        }
        None => false,
    }
}

/// Maps a driver error.
pub fn pg(error: tokio_postgres::Error, what: &str) -> Error {
    let transient = is_transient(&error);
    let message = match error.code() {
        Some(code)
            if *code == SqlState::UNDEFINED_TABLE
                || *code == SqlState::UNDEFINED_FUNCTION
                || *code == SqlState::INVALID_SCHEMA_NAME =>
        {
            format!("{what}: the schema is not migrated (call PgStore::migrate)")
        }
        Some(code) if is_auth_failure(&error) => {
            format!("{what}: authentication failed ({})", code.code())
        }
        _ => match error.as_db_error() {
            Some(db) => format!("{what}: {} ({})", db.message(), db.code().code()),
            None => format!("{what}: {error}"),
        },
    };
    Error::backend(STORE, message, transient, error)
}

/// Maps a failure to get a pooled connection.
pub(crate) fn pool(error: PoolError<ConnectError>, what: &str, wait: Duration) -> Error {
    match error {
        PoolError::Backend(ConnectError::Postgres(error)) => pg(error, what),
        PoolError::Backend(error @ (ConnectError::Credential(_) | ConnectError::Timeout(_))) => {
            Error::backend(STORE, format!("{what}: {error}"), true, error)
        }
        PoolError::Timeout(TimeoutType::Wait) => {
            let message = format!(
                "{what}: no pooled connection became free within {wait:?} (raise pool_size or \
                 pool_wait_timeout)"
            );
            Error::backend(
                STORE,
                message,
                true,
                PoolError::<ConnectError>::Timeout(TimeoutType::Wait),
            )
        }
        error @ PoolError::Timeout(_) => {
            Error::backend(STORE, format!("{what}: {error}"), true, error)
        }
        error => Error::backend(STORE, format!("{what}: {error}"), false, error),
    }
}
