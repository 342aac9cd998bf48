//! The listener's task: connect, `LISTEN`, watch the connection with a heartbeat, and
//! reconnect with back-off, reporting gaps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use matroska_core::Error;
use tokio::sync::{broadcast, watch};
use tokio_postgres::{Client, Notification, SimpleQueryMessage};

use super::backoff::Backoff;
use super::config::{Settings, quote_ident};
use super::event::{Event, GapReason};
use super::listen::{STABLE_AFTER, Shared};
use matroska_postgres::__private::Dispatch;
use matroska_postgres::__private::{STORE, is_auth_failure, pg};

/// Resolves once a stop is requested or every handle is gone.
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The background task: connect, listen, watch, reconnect; until stopped.
pub(super) async fn run(
    shared: Arc<Shared>,
    settings: Settings,
    sender: broadcast::Sender<Event>,
    mut stop: watch::Receiver<bool>,
) {
    let dispatch: Dispatch = {
        let shared = Arc::clone(&shared);
        let sender = sender.clone();
        Arc::new(move |notification: &Notification| shared.dispatch(&sender, notification))
    };
    let mut backoff = Backoff::new(settings.reconnect_min, settings.reconnect_max, true);
    // When receiving stopped; `None` until the first connection.
    let mut down_since: Option<Instant> = None;
    loop {
        let ended = tokio::select! {
            biased;
            () = stop_requested(&mut stop) => break,
            ended = session(&shared, &settings, &sender, &dispatch, down_since) => ended,
        };
        if let Some(lasted) = ended.connected_for {
            down_since = Some(Instant::now());
            if lasted >= STABLE_AFTER {
                backoff.reset();
            }
        }
        let delay = backoff.next_delay();
        if ended.connected_for.is_some() {
            tracing::warn!(
                error = %ended.error,
                retry_in = ?delay,
                application_name = %shared.application_name,
                "matroska-postgres listener: connection lost; reporting a gap and reconnecting"
            );
        } else {
            tracing::warn!(
                error = %ended.error,
                retry_in = ?delay,
                application_name = %shared.application_name,
                "matroska-postgres listener: could not connect"
            );
        }
        shared.disconnected(&sender, ended.error);
        tokio::select! {
            biased;
            () = stop_requested(&mut stop) => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
    shared.state.send_modify(|state| {
        state.connected = false;
        state.backend_pid = None;
        state.running = false;
    });
    tracing::debug!(
        application_name = %shared.application_name,
        "matroska-postgres listener: stopped"
    );
}

/// How a connection ended.
struct SessionEnd {
    error: Error,
    /// How long `LISTEN` was active, if it ever was.
    connected_for: Option<Duration>,
}

impl SessionEnd {
    fn failed(error: Error) -> Self {
        Self {
            error,
            connected_for: None,
        }
    }
}

/// One connection, from connecting to its end.
async fn session(
    shared: &Shared,
    settings: &Settings,
    sender: &broadcast::Sender<Event>,
    dispatch: &Dispatch,
    down_since: Option<Instant>,
) -> SessionEnd {
    let mut config = settings.pg.clone();
    let mut generation = None;
    if let Some(credentials) = &settings.credentials {
        match credentials.current().await {
            Ok((secret, current)) => {
                config.password(secret.expose());
                generation = Some(current);
            }
            Err(error) => {
                return SessionEnd::failed(Error::backend(
                    STORE,
                    "listener: could not get a credential",
                    true,
                    error,
                ));
            }
        }
    }
    let connect = settings.connector.connect(config, Arc::clone(dispatch));
    let (client, mut driver) = match tokio::time::timeout(settings.connect_timeout, connect).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(error)) => {
            if is_auth_failure(&error)
                && let (Some(credentials), Some(generation)) = (&settings.credentials, generation)
            {
                credentials.rejected(generation);
            }
            return SessionEnd::failed(pg(error, "listener: connect"));
        }
        Err(_) => {
            return SessionEnd::failed(Error::Timeout {
                operation: "listener connect",
                after: settings.connect_timeout,
            });
        }
    };
    let mut connected_at = None;
    let error = tokio::select! {
        result = &mut driver => match result {
            Ok(()) => Error::Backend {
                store: STORE,
                message: "listener: the server closed the connection".to_owned(),
                transient: true,
                source: None,
            },
            Err(error) => pg(error, "listener: connection"),
        },
        error = listen_and_watch(shared, settings, sender, &client, down_since, &mut connected_at) => error,
    };
    SessionEnd {
        error,
        connected_for: connected_at.map(|at: Instant| at.elapsed()),
    }
}

/// `LISTEN`, report the gap, then check the connection until it fails; returns why.
async fn listen_and_watch(
    shared: &Shared,
    settings: &Settings,
    sender: &broadcast::Sender<Event>,
    client: &Client,
    down_since: Option<Instant>,
    connected_at: &mut Option<Instant>,
) -> Error {
    // One round trip: LISTEN, and the backend's pid for the status.
    let sql = format!(
        "LISTEN {}; SELECT pg_backend_pid()",
        quote_ident(&shared.channel)
    );
    let messages =
        match tokio::time::timeout(settings.connect_timeout, client.simple_query(&sql)).await {
            Ok(Ok(messages)) => messages,
            Ok(Err(error)) => return pg(error, "listener: LISTEN"),
            Err(_) => {
                return Error::Timeout {
                    operation: "listener LISTEN",
                    after: settings.connect_timeout,
                };
            }
        };
    let pid = messages
        .iter()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(0).and_then(|pid| pid.parse().ok()),
            _ => None,
        })
        .unwrap_or_default();
    *connected_at = Some(Instant::now());
    let reason = match down_since {
        None => GapReason::Started,
        Some(since) => GapReason::Reconnected {
            down_for: since.elapsed(),
        },
    };
    tracing::info!(
        channel = %shared.channel,
        backend_pid = pid,
        application_name = %shared.application_name,
        %reason,
        "matroska-postgres listener: listening"
    );
    // Only now, with LISTEN active: whoever invalidates for this gap cannot miss a commit.
    shared.connected(sender, pid, reason);
    loop {
        tokio::time::sleep(settings.heartbeat_interval).await;
        match tokio::time::timeout(settings.heartbeat_timeout, client.simple_query("SELECT 1"))
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return pg(error, "listener: heartbeat"),
            Err(_) => {
                return Error::Timeout {
                    operation: "listener heartbeat",
                    after: settings.heartbeat_timeout,
                };
            }
        }
    }
}
