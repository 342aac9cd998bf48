//! [`ListenerConfig`]: where a [`Listener`] connects, what it listens to, and its timings.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use matroska_core::{Dep, Error, Result, Tag};
use tokio_postgres::Socket;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

use super::listen::Listener;
use matroska_postgres::__private::{Connector, Tls};
use matroska_postgres::CredentialProvider;
use matroska_postgres::PgStoreConfig;

/// The channel the triggers notify and listeners listen to unless configured otherwise.
///
/// # Examples
///
/// ```
/// use matroska_pg_capture::listener::{DEFAULT_CHANNEL, Listener};
///
/// assert_eq!(Listener::builder("postgres://localhost/db").channel, DEFAULT_CHANNEL);
/// ```
pub const DEFAULT_CHANNEL: &str = "matroska";

/// PostgreSQL truncates identifiers to this many bytes (NAMEDATALEN - 1).
const MAX_IDENTIFIER_LEN: usize = 63;

/// Everything a [`Listener`] is started from. Begin with [`Listener::builder`] (a URL),
/// [`ListenerConfig::new`] (a `tokio_postgres::Config`) or [`ListenerConfig::from_store_config`]
/// (the connection settings of a [`PgStore`](matroska_postgres::PgStore)), adjust, then
/// [`start`](Self::start).
///
/// `Debug` never shows the password.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use matroska_pg_capture::listener::Listener;
///
/// let config = Listener::builder("postgres://app@db.internal/app")
///     .channel("matroska")
///     .watch_kinds(["article", "author"])
///     .heartbeat(Duration::from_secs(5), Duration::from_secs(3));
/// assert_eq!(config.watch_kinds, ["article", "author"]);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ListenerConfig {
    /// Where to connect (host, port, database, user, password, TLS mode...).
    pub pg: tokio_postgres::Config,
    /// The channel to `LISTEN` to (default [`DEFAULT_CHANNEL`]): any PostgreSQL identifier of at
    /// most 63 bytes, case-sensitive (it is quoted), as the triggers' `pg_notify` names it.
    pub channel: String,
    /// The entity kinds whose cached entries a gap invalidates by default (`a:<kind>` tags, see
    /// [`Dep::kind`]); an [`Applier`](super::Applier) may override them.
    pub watch_kinds: Vec<String>,
    /// The connection's `application_name`; `None` (the default) makes a unique one,
    /// `matroska-listener-<pid>-<n>`, so that each listener's backend can be found in
    /// `pg_stat_activity`.
    pub application_name: Option<String>,
    /// How long connecting (authentication included) and the `LISTEN` may take (default 5 s).
    pub connect_timeout: Duration,
    /// How often a heartbeat query (`SELECT 1`) checks the connection (default 10 s). Together
    /// with TCP keepalives, this detects half-open connections that would otherwise look healthy
    /// while nothing arrives: such a connection is declared lost within about
    /// `heartbeat_interval + heartbeat_timeout`.
    pub heartbeat_interval: Duration,
    /// How long a heartbeat may take before the connection is declared lost (default 5 s).
    pub heartbeat_timeout: Duration,
    /// The smallest delay between reconnection attempts after the first, immediate one
    /// (default 100 ms); it doubles per failure, with jitter.
    pub reconnect_min: Duration,
    /// The largest delay between reconnection attempts (default 10 s).
    pub reconnect_max: Duration,
    /// How many events the listener buffers for each subscriber (default 4,096). A subscriber
    /// that falls further behind gets a [`GapReason::Lagged`](super::GapReason::Lagged) gap, never
    /// a silent loss.
    pub buffer: usize,
    /// Supplies the password or token of every new connection (overrides the password of `pg`).
    pub credentials: Option<Arc<dyn CredentialProvider>>,
    /// A credential that expires within this margin is refreshed before use (default 60 s).
    pub credential_refresh_margin: Duration,
    /// How long one call of the credential provider may take (default 10 s).
    pub credential_timeout: Duration,
    pub(crate) connector: Arc<dyn Connector>,
    pub(crate) parse_error: Option<String>,
}

impl fmt::Debug for ListenerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // tokio_postgres::Config's Debug redacts the password.
        f.debug_struct("ListenerConfig")
            .field("pg", &self.pg)
            .field("channel", &self.channel)
            .field("watch_kinds", &self.watch_kinds)
            .field("application_name", &self.application_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("heartbeat_timeout", &self.heartbeat_timeout)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .field("buffer", &self.buffer)
            .field("credentials", &self.credentials)
            .field("credential_refresh_margin", &self.credential_refresh_margin)
            .field("credential_timeout", &self.credential_timeout)
            .finish_non_exhaustive()
    }
}

impl ListenerConfig {
    /// A configuration with the defaults, connecting with `pg` without TLS unless
    /// [`tls`](Self::tls) is set.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut pg = tokio_postgres::Config::new();
    /// pg.host("localhost").user("postgres").dbname("postgres");
    /// let config = matroska_pg_capture::listener::ListenerConfig::new(pg);
    /// assert_eq!(config.channel, "matroska");
    /// ```
    pub fn new(pg: tokio_postgres::Config) -> Self {
        Self {
            pg,
            channel: DEFAULT_CHANNEL.to_owned(),
            watch_kinds: Vec::new(),
            application_name: None,
            connect_timeout: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
            buffer: 4096,
            credentials: None,
            credential_refresh_margin: Duration::from_secs(60),
            credential_timeout: Duration::from_secs(10),
            connector: Arc::new(Tls(tokio_postgres::NoTls)),
            parse_error: None,
        }
    }

    /// Parses a connection URL or key-value string.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the string does not parse (the message never contains it, as it may
    /// hold a password).
    ///
    /// # Examples
    ///
    /// ```
    /// let config = matroska_pg_capture::listener::ListenerConfig::from_url("postgres://localhost/db")?;
    /// # let _ = config;
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn from_url(url: &str) -> Result<Self> {
        // `sslmode` and `sslrootcert` as libpq reads them (see `matroska_postgres::tls`).
        let (pg, connector) = matroska_postgres::__private::parse_url(url)?;
        let mut config = Self::new(pg);
        if let Some(connector) = connector {
            config.connector = connector;
        }
        Ok(config)
    }

    /// Like [`from_url`](Self::from_url), with a parse error reported by [`start`](Self::start).
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

    /// The connection settings of a store: server, user, password, credential provider and its
    /// timings, connect timeout, and its TLS connector (the one its URL's `sslmode` chose, or the
    /// one given to [`PgStoreConfig::tls`]): the listener connects as the store does.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_postgres::PgStore;
    /// use matroska_pg_capture::listener::ListenerConfig;
    ///
    /// let store_config = PgStore::builder("postgres://app@db.internal/app").schema("cache");
    /// let listener = ListenerConfig::from_store_config(&store_config).watch_kinds(["article"]);
    /// assert_eq!(listener.pg.get_user(), Some("app"));
    /// ```
    pub fn from_store_config(store: &PgStoreConfig) -> Self {
        let mut config = Self::new(store.pg.clone());
        config.credentials.clone_from(&store.credentials);
        config.credential_refresh_margin = store.credential_refresh_margin;
        config.credential_timeout = store.credential_timeout;
        config.connect_timeout = store.connect_timeout;
        config.connector = matroska_postgres::__private::connector_of(store);
        config
    }

    /// The channel (default [`DEFAULT_CHANNEL`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = matroska_pg_capture::listener::Listener::builder("postgres://localhost/db").channel("shop");
    /// assert_eq!(c.channel, "shop");
    /// ```
    #[must_use]
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = channel.into();
        self
    }

    /// The kinds a gap invalidates by default.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = matroska_pg_capture::listener::Listener::builder("postgres://localhost/db")
    ///     .watch_kinds(["article"]);
    /// assert_eq!(c.watch_kinds, ["article"]);
    /// ```
    #[must_use]
    pub fn watch_kinds<I, K>(mut self, kinds: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        self.watch_kinds = kinds.into_iter().map(Into::into).collect();
        self
    }

    /// The connection's `application_name` (default: unique per listener).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = matroska_pg_capture::listener::Listener::builder("postgres://localhost/db")
    ///     .application_name("shop-invalidator");
    /// assert_eq!(c.application_name.as_deref(), Some("shop-invalidator"));
    /// ```
    #[must_use]
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// How long connecting and `LISTEN` may take (default 5 s).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let c = matroska_pg_capture::listener::Listener::builder("postgres://localhost/db")
    ///     .connect_timeout(Duration::from_secs(2));
    /// assert_eq!(c.connect_timeout, Duration::from_secs(2));
    /// ```
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The heartbeat: a query every `interval`, failing the connection when one takes longer than
    /// `timeout` (defaults 10 s and 5 s).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let c = matroska_pg_capture::listener::Listener::builder("postgres://localhost/db")
    ///     .heartbeat(Duration::from_secs(2), Duration::from_secs(1));
    /// assert_eq!(c.heartbeat_timeout, Duration::from_secs(1));
    /// ```
    #[must_use]
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.heartbeat_interval = interval;
        self.heartbeat_timeout = timeout;
        self
    }

    /// The bounds of the reconnection back-off (defaults 100 ms and 10 s).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let c = matroska_pg_capture::listener::Listener::builder("postgres://localhost/db")
    ///     .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(30));
    /// assert_eq!(c.reconnect_max, Duration::from_secs(30));
    /// ```
    #[must_use]
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max;
        self
    }

    /// Events buffered per subscriber (default 4,096).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = matroska_pg_capture::listener::Listener::builder("postgres://localhost/db").buffer(64);
    /// assert_eq!(c.buffer, 64);
    /// ```
    #[must_use]
    pub fn buffer(mut self, events: usize) -> Self {
        self.buffer = events;
        self
    }

    /// Fetches the password or token of each new connection from `provider`.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_postgres::{Credential, credential_fn};
    ///
    /// let c = matroska_pg_capture::listener::Listener::builder("postgres://app@db.internal/app")
    ///     .credentials(credential_fn(|| async { Ok(Credential::new("token")) }));
    /// assert!(c.credentials.is_some());
    /// ```
    #[must_use]
    pub fn credentials(mut self, provider: impl CredentialProvider) -> Self {
        self.credentials = Some(Arc::new(provider));
        self
    }

    /// Connects through TLS with `tls` (any `tokio-postgres` TLS connector); the default is none.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = matroska_pg_capture::listener::Listener::builder("postgres://localhost/db")
    ///     .tls(tokio_postgres::NoTls);
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

    /// Starts the listener in the background (it must be called inside a Tokio runtime). It
    /// connects, listens, and reconnects on its own until the last [`Listener`] handle is
    /// dropped or [`Listener::shutdown`] is called; a connection failure is retried, never
    /// returned (see [`Listener::wait_connected`] and [`Listener::status`]).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a connection string that did not parse, an invalid channel or kind,
    /// a zero buffer, heartbeat or timeout, or no Tokio runtime.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> matroska_core::Result<()> {
    /// let listener = matroska_pg_capture::listener::Listener::builder("postgres://localhost/db").start()?;
    /// listener.wait_connected(std::time::Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub fn start(self) -> Result<Listener> {
        let settings = self.validate()?;
        Listener::spawn(settings)
    }

    /// Checks the configuration and resolves the defaults.
    pub(crate) fn validate(self) -> Result<Settings> {
        if let Some(error) = &self.parse_error {
            return Err(Error::Config(error.clone()));
        }
        check_channel(&self.channel)?;
        let kind_tags = kind_tags(&self.watch_kinds)?;
        let positive = [
            ("buffer", self.buffer > 0),
            ("connect_timeout", !self.connect_timeout.is_zero()),
            ("heartbeat_interval", !self.heartbeat_interval.is_zero()),
            ("heartbeat_timeout", !self.heartbeat_timeout.is_zero()),
            ("reconnect_max", !self.reconnect_max.is_zero()),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, ok)| !ok) {
            return Err(Error::Config(format!("listener: {name} must be positive")));
        }
        let application_name = match self.application_name {
            Some(name) => name,
            None => unique_application_name(),
        };
        let mut pg = self.pg;
        pg.application_name(&application_name);
        // Detect a dead peer within about a minute even when no heartbeat is in flight (the
        // kernel default, two hours, is far too slow); keep explicit settings.
        if pg.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
            pg.keepalives(true).keepalives_idle(Duration::from_secs(30));
        }
        if pg.get_keepalives_interval().is_none() {
            pg.keepalives_interval(Duration::from_secs(10));
        }
        if pg.get_keepalives_retries().is_none() {
            pg.keepalives_retries(3);
        }
        let credentials = self.credentials.map(|provider| {
            Arc::new(matroska_postgres::__private::CredentialCache::new(
                provider,
                self.credential_refresh_margin,
                self.credential_timeout,
            ))
        });
        Ok(Settings {
            pg,
            channel: self.channel,
            kind_tags: kind_tags.into(),
            application_name,
            connect_timeout: self.connect_timeout,
            heartbeat_interval: self.heartbeat_interval,
            heartbeat_timeout: self.heartbeat_timeout,
            reconnect_min: self.reconnect_min.min(self.reconnect_max),
            reconnect_max: self.reconnect_max,
            buffer: self.buffer,
            credentials,
            connector: self.connector,
        })
    }
}

/// A checked configuration.
pub(crate) struct Settings {
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) channel: String,
    pub(crate) kind_tags: Arc<[Tag]>,
    pub(crate) application_name: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) buffer: usize,
    pub(crate) credentials: Option<Arc<matroska_postgres::__private::CredentialCache>>,
    pub(crate) connector: Arc<dyn Connector>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("channel", &self.channel)
            .field("application_name", &self.application_name)
            .finish_non_exhaustive()
    }
}

/// Checks a channel name: what `LISTEN "name"` accepts without truncating it.
pub(crate) fn check_channel(channel: &str) -> Result<()> {
    let problem = if channel.is_empty() {
        Some("it is empty")
    } else if channel.len() > MAX_IDENTIFIER_LEN {
        Some("it is longer than 63 bytes (PostgreSQL would truncate it)")
    } else if channel.contains('\0') {
        Some("it contains NUL")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(Error::Config(format!(
            "invalid listener channel {channel:?}: {problem}"
        ))),
        None => Ok(()),
    }
}

/// The channel as a quoted identifier: `LISTEN` with it names exactly the string that
/// `pg_notify(channel, ...)` is given.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The `a:<kind>` tags of kinds.
pub(crate) fn kind_tags(kinds: &[String]) -> Result<Vec<Tag>> {
    kinds
        .iter()
        .map(|kind| {
            Dep::kind(kind.as_str())
                .to_tag()
                .map_err(|e| Error::Config(format!("invalid watched kind {kind:?}: {e}")))
        })
        .collect()
}

fn unique_application_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "matroska-listener-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_checked_and_quoted() {
        assert!(check_channel("matroska").is_ok());
        assert!(check_channel("Mixed \"Case\" ch").is_ok());
        assert!(check_channel("").is_err());
        assert!(check_channel(&"x".repeat(64)).is_err());
        assert!(check_channel("a\0b").is_err());
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn validation_rejects_bad_settings_without_connecting() {
        let base = || ListenerConfig::from_url_deferred("postgres://localhost/db");
        assert!(base().validate().is_ok());
        assert!(base().buffer(0).validate().is_err());
        assert!(base().channel("").validate().is_err());
        assert!(base().watch_kinds([""]).validate().is_err());
        assert!(
            base()
                .heartbeat(Duration::ZERO, Duration::from_secs(1))
                .validate()
                .is_err()
        );
        let bad = ListenerConfig::from_url_deferred("postgres://localhost:notaport/db");
        let err = bad.validate().unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
    }

    #[test]
    fn application_names_are_unique_and_keepalives_set() {
        let a = ListenerConfig::from_url_deferred("postgres://localhost/db")
            .validate()
            .unwrap();
        let b = ListenerConfig::from_url_deferred("postgres://localhost/db")
            .validate()
            .unwrap();
        assert_ne!(a.application_name, b.application_name);
        assert_eq!(
            a.pg.get_application_name(),
            Some(a.application_name.as_str())
        );
        assert_eq!(a.pg.get_keepalives_idle(), Duration::from_secs(30));
        let debug = format!(
            "{:?}",
            ListenerConfig::from_url_deferred("postgres://u:hunter2@localhost/db")
        );
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
