//! Credential providers: a fresh password or token for every new connection.
//!
//! Cloud databases (AWS RDS IAM, Azure AD, Databricks Lakebase, ...) authenticate with short-lived
//! tokens. A [`CredentialProvider`] returns the current one; the pool asks for it whenever it opens
//! a connection, refreshes it before it expires, and when the server rejects it (SQLSTATE `28P01`
//! or `28000`) drops it, asks again and retries with a bounded backoff. Connections that are
//! already open are never disturbed: PostgreSQL checks credentials at connection time only.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use matroska_core::BoxError;
use parking_lot::Mutex;

/// A password or token. Its `Debug` and `Display` never show it.
///
/// # Examples
///
/// ```
/// use matroska_postgres::Secret;
///
/// let secret = Secret::new("hunter2");
/// assert_eq!(secret.expose(), "hunter2");
/// assert_eq!(format!("{secret:?}"), "Secret(***)");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a password or token.
    ///
    /// # Examples
    ///
    /// ```
    /// let _ = matroska_postgres::Secret::new("token");
    /// ```
    pub fn new(secret: impl Into<Arc<str>>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the connection attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_postgres::Secret::new("t").expose(), "t");
    /// ```
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<String> for Secret {
    fn from(secret: String) -> Self {
        Self::new(secret)
    }
}

impl From<&str> for Secret {
    fn from(secret: &str) -> Self {
        Self::new(secret)
    }
}

/// A secret and, optionally, when it stops being accepted.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use matroska_postgres::Credential;
///
/// let token = Credential::new("eyJhbGciOi...").valid_for(Duration::from_secs(3600));
/// assert!(token.expires_at().is_some());
/// ```
#[derive(Debug, Clone)]
pub struct Credential {
    secret: Secret,
    expires_at: Option<SystemTime>,
}

impl Credential {
    /// A credential without a known expiry (it is used until the server rejects it).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = matroska_postgres::Credential::new("password");
    /// assert_eq!(c.secret().expose(), "password");
    /// ```
    pub fn new(secret: impl Into<Secret>) -> Self {
        Self {
            secret: secret.into(),
            expires_at: None,
        }
    }

    /// Sets when the credential expires; the pool fetches a new one shortly before.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    ///
    /// let at = SystemTime::now() + Duration::from_secs(900);
    /// let c = matroska_postgres::Credential::new("t").expires_at_time(at);
    /// assert_eq!(c.expires_at(), Some(at));
    /// ```
    #[must_use]
    pub fn expires_at_time(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Sets the expiry to `ttl` from now.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = matroska_postgres::Credential::new("t").valid_for(std::time::Duration::from_secs(60));
    /// assert!(c.expires_at().is_some());
    /// ```
    #[must_use]
    pub fn valid_for(self, ttl: Duration) -> Self {
        self.expires_at_time(SystemTime::now() + ttl)
    }

    /// The secret.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_postgres::Credential::new("t").secret().expose(), "t");
    /// ```
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// When the credential expires, if known.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_postgres::Credential::new("t").expires_at(), None);
    /// ```
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }
}

/// Supplies the password or token for each new connection.
///
/// Called for every new connection, except that a credential with a known expiry
/// ([`Credential::valid_for`]) is reused until shortly before it expires (the refresh margin),
/// and connections opened at the same time share one call. After the server rejects a
/// credential, the next attempt calls the provider again. Calls are bounded by a timeout and no
/// lock of the pool is held while one runs, so a slow or failing provider delays only the
/// connections being opened, never requests on open ones.
///
/// Closures work too: see [`credential_fn`].
///
/// # Examples
///
/// ```
/// use matroska_core::BoxError;
/// use matroska_postgres::{Credential, CredentialProvider};
///
/// /// Reads the current password from a file that a sidecar rotates.
/// #[derive(Debug)]
/// struct PasswordFile(std::path::PathBuf);
///
/// #[async_trait::async_trait]
/// impl CredentialProvider for PasswordFile {
///     async fn credential(&self) -> Result<Credential, BoxError> {
///         let text = std::fs::read_to_string(&self.0).map_err(|e| std::sync::Arc::new(e) as BoxError)?;
///         Ok(Credential::new(text.trim()))
///     }
/// }
/// ```
#[async_trait]
pub trait CredentialProvider: fmt::Debug + Send + Sync + 'static {
    /// The credential to open a connection with now.
    async fn credential(&self) -> Result<Credential, BoxError>;
}

type CredentialFuture = Pin<Box<dyn Future<Output = Result<Credential, BoxError>> + Send>>;

/// A [`CredentialProvider`] made from an async closure; see [`credential_fn`].
pub struct FnCredentialProvider {
    f: Box<dyn Fn() -> CredentialFuture + Send + Sync>,
}

impl fmt::Debug for FnCredentialProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnCredentialProvider")
    }
}

#[async_trait]
impl CredentialProvider for FnCredentialProvider {
    async fn credential(&self) -> Result<Credential, BoxError> {
        (self.f)().await
    }
}

/// A [`CredentialProvider`] from a closure returning a future.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use parking_lot::Mutex;
/// use matroska_postgres::{Credential, credential_fn};
///
/// let current = Arc::new(Mutex::new("first-password".to_owned()));
/// let provider = {
///     let current = Arc::clone(&current);
///     credential_fn(move || {
///         let password = current.lock().clone();
///         async move { Ok(Credential::new(password)) }
///     })
/// };
/// # let _ = provider;
/// ```
pub fn credential_fn<F, Fut>(f: F) -> FnCredentialProvider
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Credential, BoxError>> + Send + 'static,
{
    FnCredentialProvider {
        f: Box::new(move || Box::pin(f())),
    }
}

/// The credential currently in use and its generation (to drop exactly the one the server
/// rejected, not a newer one fetched meanwhile).
#[derive(Debug, Clone)]
struct Held {
    secret: Secret,
    generation: u64,
    fetched_at: Instant,
    /// Until when it may be reused for new connections (expiry minus the refresh margin); `None`
    /// for a credential without known expiry, which is fetched again for every new connection.
    reuse_until: Option<Instant>,
}

/// Counters of the credential machinery, for tests and monitoring.
#[derive(Debug, Default)]
pub(crate) struct CredentialCounters {
    pub(crate) fetches: AtomicU64,
    pub(crate) auth_failures: AtomicU64,
}

/// What the connection factory holds: the provider, the current credential, and a gate that
/// makes provider calls single-flight.
pub struct CredentialCache {
    provider: Arc<dyn CredentialProvider>,
    held: Mutex<Option<Held>>,
    /// Held across the provider call only (bounded by `fetch_timeout`); never together with
    /// `held`, never while connecting.
    gate: tokio::sync::Mutex<()>,
    next_generation: AtomicU64,
    refresh_margin: Duration,
    fetch_timeout: Duration,
    pub(crate) counters: CredentialCounters,
}

impl fmt::Debug for CredentialCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialCache")
            .field("provider", &self.provider)
            .field("refresh_margin", &self.refresh_margin)
            .field("fetch_timeout", &self.fetch_timeout)
            .finish_non_exhaustive()
    }
}

/// Why no credential could be had.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The provider returned an error.
    #[error("the credential provider failed")]
    Provider(#[source] BoxError),
    /// The provider did not answer in time.
    #[error("the credential provider did not answer within {0:?}")]
    Timeout(Duration),
}

impl CredentialCache {
    /// A cache over `provider`.
    pub fn new(
        provider: Arc<dyn CredentialProvider>,
        refresh_margin: Duration,
        fetch_timeout: Duration,
    ) -> Self {
        Self {
            provider,
            held: Mutex::new(None),
            gate: tokio::sync::Mutex::new(()),
            next_generation: AtomicU64::new(1),
            refresh_margin,
            fetch_timeout,
            counters: CredentialCounters::default(),
        }
    }

    /// The held credential, if it may be used for a connection attempt that started at `since`:
    /// it has a known expiry that is not near, or it was fetched after the attempt started
    /// (by a concurrent attempt: provider calls are shared, never queued one after another).
    fn fresh(&self, since: Instant) -> Option<(Secret, u64)> {
        let held = self.held.lock();
        let now = Instant::now();
        held.as_ref()
            .filter(|h| h.reuse_until.is_some_and(|until| now < until) || h.fetched_at >= since)
            .map(|h| (h.secret.clone(), h.generation))
    }

    /// The credential to open a new connection with, and its generation.
    pub async fn current(&self) -> Result<(Secret, u64), CredentialError> {
        let since = Instant::now();
        if let Some(fresh) = self.fresh(since) {
            return Ok(fresh);
        }
        let _gate = self.gate.lock().await;
        // A concurrent attempt may have fetched one while this one waited for the gate.
        if let Some(fresh) = self.fresh(since) {
            return Ok(fresh);
        }
        self.counters.fetches.fetch_add(1, Ordering::Relaxed);
        let credential = tokio::time::timeout(self.fetch_timeout, self.provider.credential())
            .await
            .map_err(|_| CredentialError::Timeout(self.fetch_timeout))?
            .map_err(CredentialError::Provider)?;
        let reuse_until = credential.expires_at.map(|at| {
            let left = at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            Instant::now() + left.saturating_sub(self.refresh_margin)
        });
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(generation, "matroska-postgres: fetched a new credential");
        *self.held.lock() = Some(Held {
            secret: credential.secret.clone(),
            generation,
            fetched_at: Instant::now(),
            reuse_until,
        });
        Ok((credential.secret, generation))
    }

    /// The server rejected the credential of `generation`: forget it (unless a newer one is
    /// already held), so that the next attempt asks the provider again.
    pub fn rejected(&self, generation: u64) {
        self.counters.auth_failures.fetch_add(1, Ordering::Relaxed);
        let mut held = self.held.lock();
        if held.as_ref().is_some_and(|h| h.generation == generation) {
            *held = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[derive(Debug, Default)]
    struct Counting {
        calls: AtomicUsize,
        ttl: Option<Duration>,
        delay: Duration,
    }

    #[async_trait]
    impl CredentialProvider for Counting {
        async fn credential(&self) -> Result<Credential, BoxError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            let c = Credential::new(format!("secret-{n}"));
            Ok(match self.ttl {
                Some(ttl) => c.valid_for(ttl),
                None => c,
            })
        }
    }

    fn cache(provider: Counting, margin: Duration) -> (Arc<Counting>, Arc<CredentialCache>) {
        let provider = Arc::new(provider);
        let cache = CredentialCache::new(
            Arc::clone(&provider) as Arc<dyn CredentialProvider>,
            margin,
            Duration::from_secs(5),
        );
        (provider, Arc::new(cache))
    }

    #[tokio::test]
    async fn without_expiry_every_new_connection_asks_the_provider() {
        let (provider, cache) = cache(Counting::default(), Duration::ZERO);
        let (s1, _) = cache.current().await.unwrap();
        let (s2, _) = cache.current().await.unwrap();
        assert_ne!(s1, s2);
        assert_eq!(provider.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn caches_until_rejected_and_drops_only_the_rejected_generation() {
        let (provider, cache) = cache(
            Counting {
                ttl: Some(Duration::from_secs(3600)),
                ..Counting::default()
            },
            Duration::ZERO,
        );
        let (s1, g1) = cache.current().await.unwrap();
        let (s1b, _) = cache.current().await.unwrap();
        assert_eq!(s1, s1b);
        assert_eq!(provider.calls.load(Ordering::SeqCst), 1);
        cache.rejected(g1);
        let (s2, g2) = cache.current().await.unwrap();
        assert_ne!(s1, s2);
        // A late rejection of the old generation does not drop the new credential.
        cache.rejected(g1);
        assert_eq!(cache.current().await.unwrap(), (s2, g2));
        assert_eq!(provider.calls.load(Ordering::SeqCst), 2);
        assert_eq!(cache.counters.auth_failures.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn refreshes_before_expiry() {
        // Far from the expiry (an hour left, refreshed 10 minutes before it): reused. The two
        // calls would have to be 50 minutes apart for this to fail.
        let (provider, cache) = cache(
            Counting {
                ttl: Some(Duration::from_secs(3600)),
                ..Counting::default()
            },
            Duration::from_secs(600),
        );
        cache.current().await.unwrap();
        cache.current().await.unwrap();
        assert_eq!(provider.calls.load(Ordering::SeqCst), 1);
        // Within the margin of the expiry, from the start: refreshed every time.
        for (ttl, margin) in [(60, 120), (600, 600)] {
            let (provider, cache) = self::cache(
                Counting {
                    ttl: Some(Duration::from_secs(ttl)),
                    ..Counting::default()
                },
                Duration::from_secs(margin),
            );
            cache.current().await.unwrap();
            cache.current().await.unwrap();
            assert_eq!(
                provider.calls.load(Ordering::SeqCst),
                2,
                "ttl {ttl}, margin {margin}"
            );
        }
    }

    #[tokio::test]
    async fn concurrent_connections_share_one_provider_call() {
        let (provider, cache) = cache(
            Counting {
                delay: Duration::from_millis(50),
                ..Counting::default()
            },
            Duration::ZERO,
        );
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let cache = Arc::clone(&cache);
                tokio::spawn(async move { cache.current().await.unwrap() })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(provider.calls.load(Ordering::SeqCst), 1);
    }

    #[derive(Debug)]
    struct Hanging;

    #[async_trait]
    impl CredentialProvider for Hanging {
        async fn credential(&self) -> Result<Credential, BoxError> {
            futures::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_hanging_provider_times_out() {
        let cache =
            CredentialCache::new(Arc::new(Hanging), Duration::ZERO, Duration::from_millis(50));
        assert!(matches!(
            cache.current().await,
            Err(CredentialError::Timeout(_))
        ));
    }
}
