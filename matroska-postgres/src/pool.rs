//! The connection pool: deadpool with a manager that fetches a fresh credential for every new
//! connection and recovers from authentication failures.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use deadpool_postgres::ClientWrapper;
use tokio::task::JoinHandle;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Socket};

use crate::credentials::{CredentialCache, CredentialError};
use crate::error::is_auth_failure;

type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<(Client, JoinHandle<()>), tokio_postgres::Error>> + Send>>;

/// Opens one connection with a complete configuration (TLS erased).
pub(crate) trait Connector: Send + Sync + 'static {
    fn connect(&self, config: tokio_postgres::Config) -> ConnectFuture;
}

/// Plain TCP or Unix sockets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NoTlsConnector;

impl Connector for NoTlsConnector {
    fn connect(&self, config: tokio_postgres::Config) -> ConnectFuture {
        TlsConnector(tokio_postgres::NoTls).connect(config)
    }
}

/// Any `tokio-postgres` TLS connector.
pub(crate) struct TlsConnector<T>(pub(crate) T);

impl<T> Connector for TlsConnector<T>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + Sync + 'static,
    T::TlsConnect: Send + Sync,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    fn connect(&self, config: tokio_postgres::Config) -> ConnectFuture {
        let tls = self.0.clone();
        Box::pin(async move {
            let (client, connection) = config.connect(tls).await?;
            let task = tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "matroska-postgres: connection ended with an error");
                }
            });
            Ok((client, task))
        })
    }
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("could not connect to PostgreSQL")]
    Postgres(#[source] tokio_postgres::Error),
    #[error("could not get a credential for a new connection")]
    Credential(#[source] CredentialError),
    #[error("connecting to PostgreSQL did not finish within {0:?}")]
    Timeout(Duration),
}

/// Counters of the pool, for tests and monitoring.
#[derive(Debug, Default)]
pub(crate) struct PoolCounters {
    pub(crate) connections_opened: AtomicU64,
}

/// deadpool's manager for the store's connections.
pub(crate) struct Manager {
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) connector: Arc<dyn Connector>,
    pub(crate) credentials: Option<Arc<CredentialCache>>,
    pub(crate) connect_timeout: Duration,
    pub(crate) auth_attempts: u32,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) counters: PoolCounters,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("pg", &self.pg)
            .field("credentials", &self.credentials)
            .field("connect_timeout", &self.connect_timeout)
            .field("auth_attempts", &self.auth_attempts)
            .field("max_lifetime", &self.max_lifetime)
            .finish_non_exhaustive()
    }
}

impl Manager {
    async fn open(&self, config: tokio_postgres::Config) -> Result<ClientWrapper, ConnectError> {
        match tokio::time::timeout(self.connect_timeout, self.connector.connect(config)).await {
            Ok(Ok((client, task))) => {
                self.counters
                    .connections_opened
                    .fetch_add(1, Ordering::Relaxed);
                Ok(ClientWrapper::new(client, task))
            }
            Ok(Err(error)) => Err(ConnectError::Postgres(error)),
            Err(_) => Err(ConnectError::Timeout(self.connect_timeout)),
        }
    }
}

impl managed::Manager for Manager {
    type Type = ClientWrapper;
    type Error = ConnectError;

    async fn create(&self) -> Result<ClientWrapper, ConnectError> {
        let Some(credentials) = &self.credentials else {
            return self.open(self.pg.clone()).await;
        };
        let attempts = self.auth_attempts.max(1);
        let mut backoff = Duration::from_millis(50);
        let mut attempt = 1;
        loop {
            // No lock is held here: the cache's lock is released before it returns, and its
            // provider gate only around the provider call.
            let (secret, generation) = credentials
                .current()
                .await
                .map_err(ConnectError::Credential)?;
            let mut config = self.pg.clone();
            config.password(secret.expose());
            match self.open(config).await {
                Err(ConnectError::Postgres(error)) if is_auth_failure(&error) => {
                    credentials.rejected(generation);
                    if attempt >= attempts {
                        tracing::error!(
                            attempts,
                            %error,
                            "matroska-postgres: the server keeps rejecting fresh credentials"
                        );
                        return Err(ConnectError::Postgres(error));
                    }
                    tracing::warn!(
                        attempt,
                        %error,
                        "matroska-postgres: credential rejected; retrying with a fresh one"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn recycle(
        &self,
        client: &mut ClientWrapper,
        metrics: &Metrics,
    ) -> RecycleResult<ConnectError> {
        if client.is_closed() {
            return Err(RecycleError::message("the connection is closed"));
        }
        if self
            .max_lifetime
            .is_some_and(|lifetime| metrics.age() > lifetime)
        {
            return Err(RecycleError::message(
                "the connection reached its maximum lifetime",
            ));
        }
        Ok(())
    }
}

/// The store's pool.
pub(crate) type Pool = managed::Pool<Manager>;
/// A connection borrowed from the pool.
pub(crate) type Pooled = managed::Object<Manager>;
