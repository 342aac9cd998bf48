//! The connection pool: deadpool with a manager that fetches a fresh credential for every new
//! connection and recovers from authentication failures.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use deadpool_postgres::ClientWrapper;

use crate::connect::{Connector, ignore_notifications};
use crate::credentials::{CredentialCache, CredentialError};
use crate::error::is_auth_failure;

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
        let connect = self.connector.connect(config, ignore_notifications());
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok((client, driver))) => {
                let task = tokio::spawn(async move {
                    if let Err(error) = driver.await {
                        tracing::debug!(%error, "matroska-postgres: connection ended with an error");
                    }
                });
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
