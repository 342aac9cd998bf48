//! The error type shared by the cache front end and every store.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

/// A boxed, shareable error source.
///
/// Sources are reference counted so that [`Error`] is cheap to clone: the callers that wait on one
/// shared load in [`Cache::get_or_insert_with`](crate::Cache::get_or_insert_with) each get the
/// leader's error.
pub type BoxError = Arc<dyn StdError + Send + Sync + 'static>;

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in Matroska.
///
/// Errors from a driver (Redis, PostgreSQL) are kept as the [`source`](StdError::source), never
/// flattened into text. [`Error::is_transient`] tells whether retrying the operation later may
/// succeed (a lost connection, a timeout, a server restart).
///
/// # Examples
///
/// ```
/// use matroska_core::{Error, Key};
///
/// let err = Key::new("").unwrap_err();
/// assert!(matches!(err, Error::InvalidKey { .. }));
/// assert!(!err.is_transient());
/// assert_eq!(err.to_string(), "invalid cache key: a key must not be empty");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A cache key was rejected before anything was written.
    #[error("invalid cache key: {reason}")]
    InvalidKey {
        /// Why the key was rejected.
        reason: String,
    },

    /// A dependency could not be turned into a tag (an empty kind, name or field).
    #[error("invalid dependency: {reason}")]
    InvalidDep {
        /// Why the dependency was rejected.
        reason: String,
    },

    /// A time to live of zero (or one that cannot be represented) was given.
    #[error("invalid time to live {ttl:?}: it must be positive")]
    InvalidTtl {
        /// The rejected value.
        ttl: Duration,
    },

    /// A namespace (Redis key prefix, PostgreSQL schema) was rejected.
    #[error("invalid namespace {namespace:?}: {reason}")]
    InvalidNamespace {
        /// The rejected namespace.
        namespace: String,
        /// Why it was rejected.
        reason: String,
    },

    /// An encoded value is larger than the limit of the cache or the store.
    #[error("value of {size} bytes exceeds the limit of {limit} bytes")]
    ValueTooLarge {
        /// Encoded size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },

    /// An entry carries more tags than a store indexes for one entry
    /// ([`MAX_TAGS_PER_ENTRY`](crate::store::MAX_TAGS_PER_ENTRY)). Depend on something coarser
    /// instead: a scope, or [`Dep::kind`](crate::Dep::kind) for everything about a kind.
    #[error(
        "an entry carries {count} tags, more than the limit of {limit}; depend on a scope or on the whole kind instead of on each row"
    )]
    TooManyTags {
        /// How many distinct tags the entry carries.
        count: usize,
        /// The limit.
        limit: usize,
    },

    /// A list condition names a field set that no [`Scopes::describe`](crate::Scopes::describe)
    /// declared, and the scopes are in strict mode.
    #[error(
        "kind {kind:?} has no described field set {fields:?} (describe it, or use lenient mode)"
    )]
    UndescribedScope {
        /// The entity kind.
        kind: String,
        /// The field names of the condition, sorted.
        fields: Vec<String>,
    },

    /// The fields a write modified name one that the [`Scopes`](crate::Scopes) of its kind
    /// neither describe, watch nor declare ([`Scopes::fields`](crate::Scopes::fields)), and the
    /// scopes are in strict mode: a misspelled name could leave lists stale.
    #[error(
        "kind {kind:?} has no field {fields:?} (describe or watch it, declare it with Scopes::fields, or use lenient mode)"
    )]
    UnknownFields {
        /// The entity kind.
        kind: String,
        /// The unknown field names, in the order given.
        fields: Vec<String>,
    },

    /// A condition or scope was malformed (a field given twice, for example).
    #[error("invalid condition for kind {kind:?}: {reason}")]
    InvalidCondition {
        /// The entity kind.
        kind: String,
        /// What is wrong.
        reason: String,
    },

    /// A value could not be encoded by the codec.
    #[error("could not encode the value")]
    Encode(#[source] BoxError),

    /// Cached bytes could not be decoded. The cache front end treats this as a miss.
    #[error("could not decode the cached value")]
    Decode(#[source] BoxError),

    /// The store's server or driver failed.
    #[error("{store} store error: {message}")]
    Backend {
        /// Which store (`"redis"`, `"postgres"`, ...).
        store: &'static str,
        /// What the store was doing.
        message: String,
        /// Whether a later retry may succeed (connection lost, timeout, server restarting).
        transient: bool,
        /// The driver's error.
        #[source]
        source: Option<BoxError>,
    },

    /// An operation did not complete within its time limit.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// What timed out.
        operation: &'static str,
        /// The limit that was exceeded.
        after: Duration,
    },

    /// The loader of [`Cache::get_or_insert_with`](crate::Cache::get_or_insert_with) failed.
    /// Every caller that shared the load gets this error; the next call loads again.
    #[error("the loader failed")]
    Loader(#[source] BoxError),

    /// The loader of [`Cache::get_or_insert_with`](crate::Cache::get_or_insert_with) panicked
    /// in another caller that this call was waiting on. The next call loads again.
    #[error("the loader panicked in the caller this call was waiting on")]
    LoaderPanicked,

    /// The store was configured wrongly.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A query for a registered fetcher could not be turned into a cache key (it is not a struct
    /// or a map), or not into the fetcher's query type.
    #[error("invalid query for fetcher {fetcher:?}: {reason}")]
    InvalidQuery {
        /// The fetcher's name.
        fetcher: String,
        /// What is wrong.
        reason: String,
    },

    /// No fetcher of this name is registered, or it is registered for other types.
    #[error("no fetcher {name:?} is registered{detail}")]
    UnknownFetcher {
        /// The name asked for.
        name: String,
        /// Empty, or why the registered one does not fit.
        detail: String,
    },

    /// The store does not implement an optional operation of the [`Store`](crate::Store)
    /// contract (a store written before it existed).
    #[error("the {store} store does not support {operation}")]
    Unsupported {
        /// Which store.
        store: &'static str,
        /// The operation.
        operation: &'static str,
    },
}

impl Error {
    /// Whether retrying the same operation later may succeed.
    ///
    /// True for lost connections, timeouts and servers that are restarting; false for invalid
    /// input, codec failures and loader errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use matroska_core::Error;
    ///
    /// let err = Error::Timeout { operation: "get", after: Duration::from_millis(250) };
    /// assert!(err.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Backend { transient, .. } => *transient,
            Self::Timeout { .. } => true,
            _ => false,
        }
    }

    /// Builds a [`Error::Backend`] error; for store implementations.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::Error;
    ///
    /// let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
    /// let err = Error::backend("redis", "GET failed", true, io);
    /// assert!(err.is_transient());
    /// assert!(std::error::Error::source(&err).is_some());
    /// ```
    pub fn backend(
        store: &'static str,
        message: impl Into<String>,
        transient: bool,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        Self::Backend {
            store,
            message: message.into(),
            transient,
            source: Some(Arc::new(source)),
        }
    }

    /// The error returned by a failed loader, if this is [`Error::Loader`] and it has type `E`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use matroska_core::Error;
    ///
    /// #[derive(Debug)]
    /// struct NotFound;
    /// impl std::fmt::Display for NotFound {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("not found") }
    /// }
    /// impl std::error::Error for NotFound {}
    ///
    /// let err = Error::Loader(Arc::new(NotFound));
    /// assert!(err.loader_error::<NotFound>().is_some());
    /// ```
    pub fn loader_error<E: StdError + 'static>(&self) -> Option<&E> {
        match self {
            Self::Loader(source) => source.downcast_ref::<E>(),
            _ => None,
        }
    }
}
