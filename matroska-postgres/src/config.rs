//! [`PgStoreConfig`]: how a [`PgStore`] connects and where it keeps its data.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use matroska_core::store::DEFAULT_FILL_WINDOW;
use matroska_core::{Error, Result};
use tokio_postgres::Socket;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

use crate::connect::{Connector, Tls};
use crate::credentials::CredentialProvider;
use crate::schema::SchemaName;
use crate::store::PgStore;

/// The schema name used when none is configured.
pub const DEFAULT_SCHEMA: &str = "matroska";

/// Whether the store's tables are written to the write-ahead log.
///
/// # Examples
///
/// ```
/// use matroska_postgres::Persistence;
///
/// assert_eq!(Persistence::default(), Persistence::Unlogged);
/// assert_eq!(Persistence::Logged.as_str(), "logged");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Persistence {
    /// `UNLOGGED` tables (the default): no WAL, so writes are cheaper. PostgreSQL empties them
    /// after a crash (not after a clean restart), and they are empty on a promoted standby: for a
    /// cache that only means misses. Fill tokens issued before such a reset are rejected.
    #[default]
    Unlogged,
    /// Ordinary (logged) tables: entries survive crashes and fail-overs, at the cost of WAL.
    Logged,
}

impl Persistence {
    /// `"unlogged"` or `"logged"`, as recorded in the schema.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_postgres::Persistence::Unlogged.as_str(), "unlogged");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unlogged => "unlogged",
            Self::Logged => "logged",
        }
    }

    /// The keyword in `CREATE ... TABLE`.
    pub(crate) fn keyword(self) -> &'static str {
        match self {
            Self::Unlogged => "UNLOGGED",
            Self::Logged => "",
        }
    }
}

/// Everything a [`PgStore`] is built from. Start from [`PgStore::builder`] (a connection URL) or
/// [`PgStoreConfig::new`] (a `tokio_postgres::Config`), adjust, then [`build`](Self::build).
///
/// Every duration is bounded by default: waiting for a pooled connection, connecting, the
/// credential provider, each statement on the server and each operation on the client.
///
/// `Debug` never shows the password.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use matroska_postgres::{Persistence, PgStore};
///
/// let store = PgStore::builder("postgres://app@db.internal/app")
///     .schema("app_cache")
///     .persistence(Persistence::Unlogged)
///     .pool_size(16)
///     .pool_wait_timeout(Duration::from_secs(2))
///     .statement_timeout(Some(Duration::from_secs(5)))
///     .build()?;
/// # let _ = store;
/// # Ok::<(), matroska_core::Error>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct PgStoreConfig {
    /// Where to connect (host, port, database, user, password, TLS mode...).
    pub pg: tokio_postgres::Config,
    /// The schema (namespace) to use; validated by [`build`](Self::build).
    pub schema: String,
    /// Table persistence, fixed when the schema is first migrated.
    pub persistence: Persistence,
    /// The most connections the pool opens (default 16).
    pub pool_size: usize,
    /// The fewest connections the pool keeps open, warm, even when idle (FastPgCache's
    /// `minconn`; default 0): see [`min_connections`](Self::min_connections).
    pub min_connections: usize,
    /// How long an operation waits for a free connection when all are busy before it fails with
    /// a transient error (default 5 s). Requests queue; they never fail at once.
    pub pool_wait_timeout: Duration,
    /// How long opening one connection may take, authentication included (default 5 s).
    pub connect_timeout: Duration,
    /// The server-side `statement_timeout` of the store's connections (default 30 s; `None`
    /// keeps the server's setting).
    pub statement_timeout: Option<Duration>,
    /// How long the client waits for one operation before giving up on it and discarding its
    /// connection (default 60 s).
    pub operation_timeout: Duration,
    /// Connections older than this are closed when they come back to the pool (default 30 min),
    /// so credentials and server settings are picked up again over time.
    pub max_connection_lifetime: Option<Duration>,
    /// How long a fill token stays valid (default 60 s). A namespace setting: `migrate` records
    /// it in the schema, and stamps are kept for at least twice this long.
    pub fill_window: Duration,
    /// How many index rows or entries one statement of an invalidation, a clear or a cleanup
    /// touches at most (default 5,000): larger jobs are split into several short statements.
    pub batch_size: u32,
    /// Supplies the password or token of every new connection (overrides the password of `pg`).
    pub credentials: Option<Arc<dyn CredentialProvider>>,
    /// A credential that expires within this margin is refreshed before use (default 60 s).
    pub credential_refresh_margin: Duration,
    /// How long one call of the credential provider may take (default 10 s).
    pub credential_timeout: Duration,
    /// How many times opening a connection is tried when the server rejects the credential, with
    /// a fresh credential and a doubling backoff (from 50 ms) each time (default 5).
    pub auth_attempts: u32,
    /// The `application_name` of the store's connections (default `"matroska"`).
    pub application_name: String,
    pub(crate) connector: Arc<dyn Connector>,
    /// A connection string that did not parse (reported by `build`).
    pub(crate) parse_error: Option<String>,
}

/// The TLS connector of a store's configuration (from its URL's `sslmode` or
/// [`PgStoreConfig::tls`]): for the change-capture listener, which connects the same way.
/// Reached through `matroska_postgres::__private`; no semver promise.
pub fn connector_of(config: &PgStoreConfig) -> Arc<dyn Connector> {
    Arc::clone(&config.connector)
}

impl fmt::Debug for PgStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // tokio_postgres::Config's Debug redacts the password.
        f.debug_struct("PgStoreConfig")
            .field("pg", &self.pg)
            .field("schema", &self.schema)
            .field("persistence", &self.persistence)
            .field("pool_size", &self.pool_size)
            .field("min_connections", &self.min_connections)
            .field("pool_wait_timeout", &self.pool_wait_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("max_connection_lifetime", &self.max_connection_lifetime)
            .field("fill_window", &self.fill_window)
            .field("batch_size", &self.batch_size)
            .field("credentials", &self.credentials)
            .field("credential_refresh_margin", &self.credential_refresh_margin)
            .field("credential_timeout", &self.credential_timeout)
            .field("auth_attempts", &self.auth_attempts)
            .field("application_name", &self.application_name)
            .finish_non_exhaustive()
    }
}

impl PgStoreConfig {
    /// A configuration with the defaults, connecting with `pg` (no TLS unless
    /// [`tls`](Self::tls) is set).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut pg = tokio_postgres::Config::new();
    /// pg.host("localhost").user("postgres").dbname("postgres");
    /// let config = matroska_postgres::PgStoreConfig::new(pg).schema("cache");
    /// assert_eq!(config.schema, "cache");
    /// ```
    pub fn new(pg: tokio_postgres::Config) -> Self {
        Self {
            pg,
            schema: DEFAULT_SCHEMA.to_owned(),
            persistence: Persistence::Unlogged,
            pool_size: 16,
            min_connections: 0,
            pool_wait_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Some(Duration::from_secs(30)),
            operation_timeout: Duration::from_secs(60),
            max_connection_lifetime: Some(Duration::from_secs(30 * 60)),
            fill_window: DEFAULT_FILL_WINDOW,
            batch_size: 5_000,
            credentials: None,
            credential_refresh_margin: Duration::from_secs(60),
            credential_timeout: Duration::from_secs(10),
            auth_attempts: 5,
            application_name: "matroska".to_owned(),
            connector: Arc::new(Tls(tokio_postgres::NoTls)),
            parse_error: None,
        }
    }

    /// Parses a connection URL or key-value string (`postgres://user@host:5432/db`,
    /// `host=... user=...`). `sslmode` and `sslrootcert` are read as libpq reads them (see the
    /// [`tls`](crate::tls) module): with the feature `rustls`, a string that names an `sslmode`
    /// other than `disable` connects through rustls; without a `sslmode`, no TLS is used.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the string does not parse (the message never contains it, as it may
    /// hold a password).
    ///
    /// # Examples
    ///
    /// ```
    /// let config = matroska_postgres::PgStoreConfig::from_url("postgres://postgres@localhost/postgres")?;
    /// # let _ = config;
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn from_url(url: &str) -> Result<Self> {
        let (pg, connector) = crate::tls::parse_url(url)?;
        let mut config = Self::new(pg);
        if let Some(connector) = connector {
            config.connector = connector;
        }
        Ok(config)
    }

    /// Like [`from_url`](Self::from_url), but a parse error is reported by
    /// [`build`](Self::build), so that configuration can be chained.
    pub(crate) fn from_url_deferred(url: &str) -> Self {
        Self::from_url(url).unwrap_or_else(|err| {
            let mut config = Self::new(tokio_postgres::Config::new());
            config.parse_error = Some(match err {
                Error::Config(message) => message,
                other => other.to_string(),
            });
            config
        })
    }

    /// The schema (namespace); see [`SchemaName`] for the rules (checked by `build`).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = matroska_postgres::PgStore::builder("postgres://localhost/db").schema("sessions");
    /// assert_eq!(c.schema, "sessions");
    /// ```
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Table persistence (default [`Persistence::Unlogged`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_postgres::{Persistence, PgStore};
    ///
    /// let c = PgStore::builder("postgres://localhost/db").persistence(Persistence::Logged);
    /// assert_eq!(c.persistence, Persistence::Logged);
    /// ```
    #[must_use]
    pub fn persistence(mut self, persistence: Persistence) -> Self {
        self.persistence = persistence;
        self
    }

    /// The most connections (default 16).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = matroska_postgres::PgStore::builder("postgres://localhost/db").pool_size(4);
    /// assert_eq!(c.pool_size, 4);
    /// ```
    #[must_use]
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// Keeps at least `count` connections open (FastPgCache's `minconn`; at most
    /// [`pool_size`](Self::pool_size)), so that the first requests after a quiet period do not
    /// pay for opening connections. A store built inside a Tokio runtime opens them in the
    /// background at once and tops them up every 10 s (connections closed for their age, or
    /// lost, are replaced); [`PgStore::warm_up`] does it on demand.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = matroska_postgres::PgStore::builder("postgres://localhost/db").min_connections(2);
    /// assert_eq!(c.min_connections, 2);
    /// ```
    #[must_use]
    pub fn min_connections(mut self, count: usize) -> Self {
        self.min_connections = count;
        self
    }

    /// How long to wait for a free connection (default 5 s).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let c = matroska_postgres::PgStore::builder("postgres://localhost/db")
    ///     .pool_wait_timeout(Duration::from_millis(500));
    /// assert_eq!(c.pool_wait_timeout, Duration::from_millis(500));
    /// ```
    #[must_use]
    pub fn pool_wait_timeout(mut self, timeout: Duration) -> Self {
        self.pool_wait_timeout = timeout;
        self
    }

    /// How long opening a connection may take (default 5 s).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let c = matroska_postgres::PgStore::builder("postgres://localhost/db")
    ///     .connect_timeout(Duration::from_secs(2));
    /// assert_eq!(c.connect_timeout, Duration::from_secs(2));
    /// ```
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The server-side statement timeout (default 30 s; `None`: the server's setting).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = matroska_postgres::PgStore::builder("postgres://localhost/db").statement_timeout(None);
    /// assert_eq!(c.statement_timeout, None);
    /// ```
    #[must_use]
    pub fn statement_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// How long the client waits for one operation (default 60 s).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let c = matroska_postgres::PgStore::builder("postgres://localhost/db")
    ///     .operation_timeout(Duration::from_secs(10));
    /// assert_eq!(c.operation_timeout, Duration::from_secs(10));
    /// ```
    #[must_use]
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Connections older than this are closed when returned (default 30 min; `None`: never).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let c = matroska_postgres::PgStore::builder("postgres://localhost/db")
    ///     .max_connection_lifetime(Some(Duration::from_secs(600)));
    /// assert_eq!(c.max_connection_lifetime, Some(Duration::from_secs(600)));
    /// ```
    #[must_use]
    pub fn max_connection_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.max_connection_lifetime = lifetime;
        self
    }

    /// How long fill tokens stay valid (default 60 s; recorded in the schema by `migrate`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let c = matroska_postgres::PgStore::builder("postgres://localhost/db")
    ///     .fill_window(Duration::from_secs(30));
    /// assert_eq!(c.fill_window, Duration::from_secs(30));
    /// ```
    #[must_use]
    pub fn fill_window(mut self, window: Duration) -> Self {
        self.fill_window = window;
        self
    }

    /// The most rows one statement of a bulk job touches (default 5,000).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = matroska_postgres::PgStore::builder("postgres://localhost/db").batch_size(1000);
    /// assert_eq!(c.batch_size, 1000);
    /// ```
    #[must_use]
    pub fn batch_size(mut self, rows: u32) -> Self {
        self.batch_size = rows;
        self
    }

    /// Fetches the password or token of each new connection from `provider`.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_postgres::{Credential, PgStore, credential_fn};
    ///
    /// let c = PgStore::builder("postgres://app@db.internal/app")
    ///     .credentials(credential_fn(|| async { Ok(Credential::new("token")) }));
    /// assert!(c.credentials.is_some());
    /// ```
    #[must_use]
    pub fn credentials(mut self, provider: impl CredentialProvider) -> Self {
        self.credentials = Some(Arc::new(provider));
        self
    }

    /// Refresh credentials this long before they expire (default 60 s).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let c = matroska_postgres::PgStore::builder("postgres://localhost/db")
    ///     .credential_refresh_margin(Duration::from_secs(300));
    /// assert_eq!(c.credential_refresh_margin, Duration::from_secs(300));
    /// ```
    #[must_use]
    pub fn credential_refresh_margin(mut self, margin: Duration) -> Self {
        self.credential_refresh_margin = margin;
        self
    }

    /// How many connection attempts an authentication failure may cost (default 5).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = matroska_postgres::PgStore::builder("postgres://localhost/db").auth_attempts(3);
    /// assert_eq!(c.auth_attempts, 3);
    /// ```
    #[must_use]
    pub fn auth_attempts(mut self, attempts: u32) -> Self {
        self.auth_attempts = attempts;
        self
    }

    /// Connects through TLS with `tls` (any `tokio-postgres` TLS connector, such as
    /// `tokio-postgres-rustls` or `postgres-native-tls`); the default is no TLS.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = matroska_postgres::PgStore::builder("postgres://localhost/db").tls(tokio_postgres::NoTls);
    /// # let _ = c;
    /// ```
    #[must_use]
    pub fn tls<T>(mut self, tls: T) -> Self
    where
        T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
        T::Stream: Send + Sync + 'static,
        T::TlsConnect: Send + Sync,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        self.connector = Arc::new(Tls(tls));
        self
    }

    /// Builds the store. No connection is opened yet: the pool connects on first use (call
    /// [`PgStore::migrate`] once to create the schema).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidNamespace`] for a bad schema name; [`Error::Config`] for a pool size of
    /// zero, a zero fill window or batch size.
    ///
    /// # Examples
    ///
    /// ```
    /// let store = matroska_postgres::PgStore::builder("postgres://localhost/db").build()?;
    /// assert_eq!(store.schema().as_str(), "matroska");
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn build(self) -> Result<PgStore> {
        if let Some(error) = &self.parse_error {
            return Err(Error::Config(error.clone()));
        }
        let schema = SchemaName::new(self.schema.clone())?;
        if self.pool_size == 0 {
            return Err(Error::Config("pool_size must be at least 1".to_owned()));
        }
        if self.min_connections > self.pool_size {
            return Err(Error::Config(format!(
                "min_connections ({}) must be at most pool_size ({})",
                self.min_connections, self.pool_size
            )));
        }
        if self.fill_window < Duration::from_millis(1) {
            return Err(Error::Config(
                "fill_window must be at least 1 ms".to_owned(),
            ));
        }
        if self.batch_size == 0 {
            return Err(Error::Config("batch_size must be at least 1".to_owned()));
        }
        PgStore::from_config(&self, schema)
    }
}
