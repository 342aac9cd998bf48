//! Opening a connection with any TLS connector, erased behind one trait: the store's pool and
//! the listener both connect through it. The connection is driven with
//! `Connection::poll_message`, and every notification is handed to a dispatch function as soon
//! as it is read (the pool's connections ignore them).

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;

use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, Client, Notification, Socket};

/// Called for each notification, on the task that drives the connection: must not block.
pub type Dispatch = Arc<dyn Fn(&Notification) + Send + Sync>;

/// Drives the connection until it ends: `Ok` when the server closed it, `Err` on an error.
pub type Driver = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>;

/// A connection attempt: the client and the future that drives its connection.
pub type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<(Client, Driver), tokio_postgres::Error>> + Send>>;

/// A dispatch function for connections that expect no notifications.
pub(crate) fn ignore_notifications() -> Dispatch {
    Arc::new(|_: &Notification| {})
}

/// Opens a connection whose notifications go to a dispatch function (TLS erased).
pub trait Connector: Send + Sync + 'static {
    /// Opens a connection with `config`; its notifications go to `dispatch`.
    fn connect(&self, config: tokio_postgres::Config, dispatch: Dispatch) -> ConnectFuture;
}

/// Any `tokio-postgres` TLS connector (`NoTls` by default).
#[derive(Debug)]
pub struct Tls<T>(pub T);

impl<T> Connector for Tls<T>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + Sync + 'static,
    T::TlsConnect: Send + Sync,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    fn connect(&self, config: tokio_postgres::Config, dispatch: Dispatch) -> ConnectFuture {
        let tls = self.0.clone();
        Box::pin(async move {
            let (client, mut connection) = config.connect(tls).await?;
            let driver: Driver = Box::pin(async move {
                loop {
                    match poll_fn(|cx| connection.poll_message(cx)).await {
                        Some(Ok(AsyncMessage::Notification(notification))) => {
                            dispatch(&notification);
                        }
                        Some(Ok(AsyncMessage::Notice(notice))) => tracing::debug!(
                            severity = notice.severity(),
                            message = notice.message(),
                            "matroska-postgres: notice from the server"
                        ),
                        Some(Ok(_)) => {}
                        Some(Err(error)) => return Err(error),
                        None => return Ok(()),
                    }
                }
            });
            Ok((client, driver))
        })
    }
}
