//! [`RedisConfig`] and [`RedisStoreBuilder`].

use std::fmt;
use std::time::Duration;

use matroska_core::store::DEFAULT_FILL_WINDOW;
use matroska_core::{Error, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::{STORE, backend};
use crate::keys::KeyLayout;
use crate::store::RedisStore;

/// The settings of a [`RedisStore`].
///
/// Build one with [`RedisConfig::default`] and change its fields, or through the
/// [`RedisStoreBuilder`] methods. New fields may be added in minor releases (the struct is
/// `#[non_exhaustive]`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use matroska_redis::RedisConfig;
///
/// let mut config = RedisConfig::default();
/// config.prefix = "shop".into();
/// config.response_timeout = Duration::from_millis(250);
/// assert_eq!(config.fill_window, Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The namespace: every key of the store starts with `{prefix}:` (default `"matroska"`).
    /// Validated by [`KeyLayout::new`].
    pub prefix: String,
    /// How long a fill token stays valid, on the server's clock (default 60 s): a load that takes
    /// longer is not stored.
    pub fill_window: Duration,
    /// The limit on one attempt to connect (default 1 s).
    pub connect_timeout: Duration,
    /// The limit on waiting for one reply (default 1 s). A round trip while the connection is
    /// lost waits for at most `(1 + reconnect_attempts)` connection attempts and one reply, so
    /// that an operation fails quickly with a transient error while Redis is down.
    pub response_timeout: Duration,
    /// How many more connection attempts a lost connection gets, with exponential back-off
    /// from 50 ms, before the operations waiting on it fail (default 0: one attempt). The next
    /// operation starts reconnecting again.
    pub reconnect_attempts: usize,
    /// How many index members one script looks at, at most (default 256): an invalidation of
    /// tags with more dependents sets their indexes aside and removes them in several round trips,
    /// so that no script's work grows with a tag's fan-out. Also the size of the steps of
    /// housekeeping done on the side of an invalidation.
    pub reclaim_chunk: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            prefix: "matroska".to_owned(),
            fill_window: DEFAULT_FILL_WINDOW,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            reconnect_attempts: 0,
            reclaim_chunk: 256,
        }
    }
}

impl RedisConfig {
    fn check(&self) -> Result<KeyLayout> {
        let layout = KeyLayout::new(&self.prefix)?;
        if self.fill_window < Duration::from_millis(1) {
            return Err(Error::Config(format!(
                "the fill window must be at least 1 ms, not {:?}",
                self.fill_window
            )));
        }
        if self.connect_timeout.is_zero() || self.response_timeout.is_zero() {
            return Err(Error::Config(
                "the connect and response timeouts must be positive".to_owned(),
            ));
        }
        if self.reclaim_chunk == 0 {
            return Err(Error::Config(
                "the reclaim chunk must be at least 1".to_owned(),
            ));
        }
        Ok(layout)
    }
}

/// What [`RedisStore::builder`] accepts as the server: a URL (`redis://[user:password@]host[:port][/db]`,
/// `rediss://` for TLS where the `redis` crate is built with it, `redis+unix:///path`) or a
/// [`redis::Client`].
///
/// # Examples
///
/// ```
/// use matroska_redis::IntoClient;
///
/// assert!("redis://127.0.0.1:6379/0".into_client().is_ok());
/// assert!("not a url".into_client().is_err());
/// ```
pub trait IntoClient {
    /// Turns `self` into a client (no connection is made).
    ///
    /// # Errors
    ///
    /// A non-transient [`Error::Backend`] for a URL that does not parse.
    fn into_client(self) -> Result<redis::Client>;
}

impl IntoClient for redis::Client {
    fn into_client(self) -> Result<redis::Client> {
        Ok(self)
    }
}

impl IntoClient for &str {
    fn into_client(self) -> Result<redis::Client> {
        redis::Client::open(self).map_err(|e| Error::backend(STORE, "invalid Redis URL", false, e))
    }
}

impl IntoClient for String {
    fn into_client(self) -> Result<redis::Client> {
        self.as_str().into_client()
    }
}

impl IntoClient for &String {
    fn into_client(self) -> Result<redis::Client> {
        self.as_str().into_client()
    }
}

/// Configures and connects a [`RedisStore`].
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use matroska_redis::RedisStore;
///
/// # async fn example() -> matroska_core::Result<()> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379")
///     .prefix("shop")
///     .fill_window(Duration::from_secs(30))
///     .response_timeout(Duration::from_millis(300))
///     .build()
///     .await?;
/// # let _ = store; Ok(()) }
/// ```
#[must_use]
pub struct RedisStoreBuilder {
    client: Result<redis::Client>,
    config: RedisConfig,
}

impl RedisStoreBuilder {
    pub(crate) fn new(client: impl IntoClient) -> Self {
        Self {
            client: client.into_client(),
            config: RedisConfig::default(),
        }
    }

    /// The namespace (default `"matroska"`): every key starts with `{prefix}:`.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = matroska_redis::RedisStore::builder("redis://127.0.0.1").prefix("shop");
    /// # let _ = builder;
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.prefix = prefix.into();
        self
    }

    /// How long a fill token stays valid (default 60 s).
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = matroska_redis::RedisStore::builder("redis://127.0.0.1")
    ///     .fill_window(std::time::Duration::from_secs(10));
    /// # let _ = builder;
    /// ```
    pub fn fill_window(mut self, window: std::time::Duration) -> Self {
        self.config.fill_window = window;
        self
    }

    /// The limit on one connection attempt (default 1 s).
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = matroska_redis::RedisStore::builder("redis://127.0.0.1")
    ///     .connect_timeout(std::time::Duration::from_millis(500));
    /// # let _ = builder;
    /// ```
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.config.connect_timeout = limit;
        self
    }

    /// The limit on waiting for one reply (default 1 s).
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = matroska_redis::RedisStore::builder("redis://127.0.0.1")
    ///     .response_timeout(std::time::Duration::from_millis(200));
    /// # let _ = builder;
    /// ```
    pub fn response_timeout(mut self, limit: Duration) -> Self {
        self.config.response_timeout = limit;
        self
    }

    /// How many more connection attempts a lost connection gets before the operations waiting on
    /// it fail (default 0).
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = matroska_redis::RedisStore::builder("redis://127.0.0.1").reconnect_attempts(5);
    /// # let _ = builder;
    /// ```
    pub fn reconnect_attempts(mut self, attempts: usize) -> Self {
        self.config.reconnect_attempts = attempts;
        self
    }

    /// How many dependents one script removes at most (default 256).
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = matroska_redis::RedisStore::builder("redis://127.0.0.1").reclaim_chunk(1000);
    /// # let _ = builder;
    /// ```
    pub fn reclaim_chunk(mut self, members: usize) -> Self {
        self.config.reclaim_chunk = members;
        self
    }

    /// Replaces every setting at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_redis::{RedisConfig, RedisStore};
    ///
    /// let mut config = RedisConfig::default();
    /// config.prefix = "shop".into();
    /// let builder = RedisStore::builder("redis://127.0.0.1").config(config);
    /// # let _ = builder;
    /// ```
    pub fn config(mut self, config: RedisConfig) -> Self {
        self.config = config;
        self
    }

    /// Connects (waiting for the first connection, so that a wrong address or password fails
    /// here) and loads the scripts.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidNamespace`] or [`Error::Config`] for bad settings, a non-transient
    /// [`Error::Backend`] for a URL that does not parse or a failed authentication, a transient
    /// one when the server cannot be reached.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> matroska_core::Result<()> {
    /// let store = matroska_redis::RedisStore::builder("redis://127.0.0.1").build().await?;
    /// # let _ = store; Ok(()) }
    /// ```
    pub async fn build(self) -> Result<RedisStore> {
        let store = self.build_lazy()?;
        store.load_scripts().await?;
        Ok(store)
    }

    /// Builds the store without connecting: the first operation connects. An application that
    /// [fails open](matroska_core::CacheBuilder::fail_open) can so start while Redis is down.
    ///
    /// Must be called within a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidNamespace`] or [`Error::Config`] for bad settings, [`Error::Backend`] for
    /// a URL that does not parse.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> matroska_core::Result<()> {
    /// let store = matroska_redis::RedisStore::builder("redis://127.0.0.1").build_lazy()?;
    /// # let _ = store; Ok(()) }
    /// ```
    pub fn build_lazy(self) -> Result<RedisStore> {
        let client = self.client?;
        let layout = self.config.check()?;
        let config = &self.config;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_number_of_retries(config.reconnect_attempts)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(config.connect_timeout);
        let address = redacted_address(&client);
        let manager = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| backend("connect", e))?;
        Ok(RedisStore::from_parts(
            manager,
            layout,
            self.config,
            address,
        ))
    }
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let address = match &self.client {
            Ok(client) => redacted_address(client),
            Err(_) => "<invalid URL>".to_owned(),
        };
        f.debug_struct("RedisStoreBuilder")
            .field("address", &address)
            .field("config", &self.config)
            .finish()
    }
}

/// The server's address as a URL without the password: `redis://user:***@host:port/db`.
pub(crate) fn redacted_address(client: &redis::Client) -> String {
    let info = client.get_connection_info();
    let settings = info.redis_settings();
    let scheme = match info.addr() {
        redis::ConnectionAddr::Tcp(..) => "redis://",
        redis::ConnectionAddr::TcpTls { .. } => "rediss://",
        _ => "redis+unix://",
    };
    let user = match (settings.username(), settings.password()) {
        (Some(user), Some(_)) => format!("{user}:***@"),
        (None, Some(_)) => ":***@".to_owned(),
        (Some(user), None) => format!("{user}@"),
        (None, None) => String::new(),
    };
    format!("{scheme}{user}{}/{}", info.addr(), settings.db())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_passwords() {
        let builder = RedisStoreBuilder::new("redis://alice:s3cret@example.com:6380/2");
        let text = format!("{builder:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(
            text.contains("redis://alice:***@example.com:6380/2"),
            "{text}"
        );
        let builder = RedisStoreBuilder::new("redis://:hunter2@localhost");
        let text = format!("{builder:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains(":***@localhost:6379/0"), "{text}");
    }

    #[test]
    fn settings_are_checked_before_connecting() {
        let err = RedisStoreBuilder::new("redis://127.0.0.1")
            .prefix("bad prefix")
            .build_lazy()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidNamespace { .. }), "{err}");
        let err = RedisStoreBuilder::new("redis://127.0.0.1")
            .fill_window(Duration::ZERO)
            .build_lazy()
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
        let err = RedisStoreBuilder::new("redis://127.0.0.1")
            .reclaim_chunk(0)
            .build_lazy()
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
        let err = RedisStoreBuilder::new("nonsense://x")
            .build_lazy()
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Backend {
                    transient: false,
                    ..
                }
            ),
            "{err}"
        );
    }
}
