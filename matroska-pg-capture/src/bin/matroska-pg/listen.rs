//! `matroska-pg listen`: print every event as it arrives.

use std::io::Write as _;
use std::time::Duration;

use matroska_pg_capture::listener::{Event, ListenerConfig};

use super::BoxError;
use super::args::ListenArgs;
use super::target::{ConnectError, Target, is_hopeless};

pub(crate) async fn listen(target: &Target, args: &ListenArgs) -> Result<(), BoxError> {
    // One plain connection first: an error that retrying cannot cure (wrong password, no such
    // database or role) ends the command at once, with the server's words, where the listener
    // would retry until --connect-timeout. A server that is down is left to the listener's
    // retries.
    match target.config.connect(tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            drop(client);
            let _ = connection.await;
        }
        Err(error) if is_hopeless(&error) => {
            return Err(ConnectError::new(target, error).into());
        }
        Err(error) => {
            tracing::warn!(%error, "matroska-pg: cannot connect yet; retrying");
        }
    }
    let listener = ListenerConfig::new(target.config.clone())
        .channel(&args.channel)
        .start()?;
    let mut events = listener.subscribe();
    listener
        .wait_connected(Duration::from_secs(args.connect_timeout))
        .await?;
    eprintln!("listening on {:?} (Ctrl-C to stop)", args.channel);
    let mut seen = 0_u64;
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(event) = event else { break };
        println!("{event}");
        std::io::stdout().flush()?;
        if matches!(event, Event::Tags(_)) {
            seen += 1;
            if args.count.is_some_and(|n| seen >= n) {
                break;
            }
        }
    }
    listener.shutdown().await;
    Ok(())
}
