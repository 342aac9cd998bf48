//! Mapping `redis` errors to [`matroska_core::Error`].

use matroska_core::Error;
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// The store's name in errors and logs.
pub(crate) const STORE: &str = "redis";

/// A Redis error as [`Error::Backend`], keeping it as the source.
pub(crate) fn backend(operation: &'static str, err: RedisError) -> Error {
    let transient = is_transient(&err);
    tracing::debug!(operation, transient, error = %err, "redis store: operation failed");
    Error::backend(STORE, format!("{operation} failed"), transient, err)
}

/// The first contact with the server failed: says so in the user's terms (cannot connect, or
/// credentials refused), naming the (password-redacted) address and the driver's reason.
pub(crate) fn connect_failed(address: &str, err: RedisError) -> Error {
    let transient = is_transient(&err);
    let message = if err.kind() == ErrorKind::AuthenticationFailed {
        format!("Redis at {address} refused the credentials: {err}")
    } else if err.is_io_error()
        || err.is_connection_refusal()
        || err.is_timeout()
        || err.is_connection_dropped()
    {
        format!("cannot connect to Redis at {address}: {err}")
    } else {
        format!("cannot load the scripts into Redis at {address}: {err}")
    };
    tracing::debug!(transient, error = %err, "redis store: first contact failed");
    Error::backend(STORE, message, transient, err)
}

/// A reply the scripts never give (another program wrote into the namespace?).
pub(crate) fn unexpected(operation: &'static str, reply: &redis::Value) -> Error {
    Error::Backend {
        store: STORE,
        message: format!("{operation}: unexpected reply from Redis: {reply:?}"),
        transient: false,
        source: None,
    }
}

/// Whether retrying later may succeed: connection failures and timeouts, and the server states
/// that pass (loading its data set, a script running too long, a failover, out of memory under
/// `noeviction`).
pub(crate) fn is_transient(err: &RedisError) -> bool {
    if err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
    {
        return true;
    }
    match err.kind() {
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly,
        ) => true,
        ErrorKind::Extension => matches!(err.code(), Some("BUSY" | "OOM")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_are_recognised() {
        let io = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        assert!(is_transient(&io));
        let reset = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        ));
        assert!(is_transient(&reset));
        let timed_out = RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "slow"));
        assert!(is_transient(&timed_out));
        let wrong = RedisError::from((ErrorKind::UnexpectedReturnType, "type"));
        assert!(!is_transient(&wrong));
        let mapped = backend("get", io);
        assert!(mapped.is_transient());
        assert!(std::error::Error::source(&mapped).is_some());
        assert!(matches!(mapped, Error::Backend { store: "redis", .. }));
    }
}
