//! `matroska-pg listen`: print every event as it arrives.

use std::io::Write as _;
use std::time::Duration;

use std::time::{SystemTime, UNIX_EPOCH};

use matroska_core::Tag;
use matroska_pg_capture::listener::{Event, ListenerConfig, Operation};
use serde_json::{Value, json};

use super::BoxError;
use super::args::ListenArgs;
use super::target::{ConnectError, Target, is_hopeless};

pub(crate) async fn listen(target: &Target, args: &ListenArgs) -> Result<(), BoxError> {
    // One plain connection first: an error that retrying cannot cure (wrong password, no such
    // database or role) ends the command at once, with the server's words, where the listener
    // would retry until --connect-timeout. A server that is down is left to the listener's
    // retries.
    match super::connect(target).await {
        Ok(client) => drop(client),
        Err(error) => match error.downcast::<ConnectError>() {
            Ok(error) if is_hopeless(error.driver_error()) => return Err(error),
            Ok(error) => tracing::warn!(%error, "matroska-pg: cannot connect yet; retrying"),
            Err(other) => return Err(other),
        },
    }
    let mut config = ListenerConfig::new(target.config.clone()).channel(&args.channel);
    if let Some(tls) = target.connector()? {
        config = config.tls(tls);
    }
    let listener = config.start()?;
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
        if args.json {
            println!("{}", json(&event));
        } else {
            println!("{event}");
        }
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

/// Microseconds since the Unix epoch.
fn micros(at: SystemTime) -> Value {
    at.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_micros()).ok())
        .map_or(Value::Null, Value::from)
}

/// One event as one JSON object; unknown parts (an older trigger's payload) are `null`.
pub(crate) fn json(event: &Event) -> Value {
    match event {
        Event::Tags(batch) => json!({
            "event": "change",
            "table": batch.table(),
            "op": batch.operation().map(Operation::as_str),
            "sent_at_us": batch.sent_at().map_or(Value::Null, micros),
            "received_at_us": micros(batch.received_at()),
            "latency_us": batch
                .latency()
                .and_then(|l| u64::try_from(l.as_micros()).ok()),
            "sender_pid": batch.sender_pid(),
            "tags": batch.tags().iter().map(Tag::as_str).collect::<Vec<_>>(),
        }),
        Event::Gap(gap) => json!({
            "event": "gap",
            "reason": gap.reason().to_string(),
            "receiving": gap.reason().is_receiving(),
            "at_us": micros(gap.at()),
        }),
        other => json!({ "event": "other", "text": other.to_string() }),
    }
}
