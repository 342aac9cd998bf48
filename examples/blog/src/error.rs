//! Errors: of setup, and of requests (as HTTP responses).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use diesel::result::DatabaseErrorKind;

/// Why the app could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// A setting is wrong.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The database could not be reached or migrated.
    #[error("database setup failed")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The cache's store could not be set up.
    #[error("cache store setup failed")]
    Store(#[source] matroska_core::Error),
}

/// What a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No such row.
    #[error("not found")]
    NotFound,
    /// The request is invalid.
    #[error("{0}")]
    BadRequest(String),
    /// The database or the cache failed.
    #[error("internal error")]
    Internal(#[source] matroska_diesel::Error),
}

impl From<matroska_diesel::Error> for AppError {
    fn from(err: matroska_diesel::Error) -> Self {
        match &err {
            matroska_diesel::Error::Database(diesel::result::Error::DatabaseError(
                DatabaseErrorKind::ForeignKeyViolation,
                _,
            )) => Self::BadRequest("no such author".to_owned()),
            matroska_diesel::Error::Database(diesel::result::Error::NotFound) => Self::NotFound,
            _ => Self::Internal(err),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Internal(err) => {
                tracing::error!(error = %err, source = ?std::error::Error::source(err), "request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}
