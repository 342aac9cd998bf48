//! `--listen`: writes made outside the app (plain SQL, another service) invalidate the cache too.
//!
//! Capture triggers, installed on the blog's tables with `matroska-pg install` (see the README),
//! NOTIFY the tags every committed write touches; a [`Listener`] receives them and an applier
//! invalidates them in the app's store. A gap in the notifications (a lost connection)
//! invalidates everything cached about articles and authors.

use std::sync::Arc;

use matroska_core::Store;

use crate::config::Config;
use crate::error::SetupError;

/// The running listener and its applier.
#[cfg(feature = "capture")]
#[derive(Debug)]
pub(crate) struct Capture {
    _listener: matroska_pg_capture::Listener,
    _applier: matroska_pg_capture::listener::ApplierHandle,
}

#[cfg(not(feature = "capture"))]
#[derive(Debug)]
pub(crate) enum Capture {}

/// Starts listening when `--listen` is set.
#[cfg(feature = "capture")]
pub(crate) async fn start(
    config: &Config,
    store: &Arc<dyn Store>,
) -> Result<Option<Arc<Capture>>, SetupError> {
    use std::time::Duration;

    use matroska_pg_capture::listener::Strategy;

    if !config.listen {
        return Ok(None);
    }
    let listener = matroska_pg_capture::Listener::builder(&config.database_url)
        .watch_kinds(["article", "author"])
        .start()
        .map_err(SetupError::Store)?;
    let applier = listener
        .apply(Arc::clone(store), Strategy::Immediate)
        .map_err(SetupError::Store)?;
    listener
        .wait_connected(Duration::from_secs(10))
        .await
        .map_err(SetupError::Store)?;
    tracing::info!(
        channel = listener.channel(),
        "listening for capture notifications"
    );
    Ok(Some(Arc::new(Capture {
        _listener: listener,
        _applier: applier,
    })))
}

/// Without the `capture` feature, `--listen` is an error.
#[cfg(not(feature = "capture"))]
#[allow(clippy::unused_async)]
pub(crate) async fn start(
    config: &Config,
    _store: &Arc<dyn Store>,
) -> Result<Option<Arc<Capture>>, SetupError> {
    if config.listen {
        return Err(SetupError::Config(
            "--listen: built without the `capture` feature".to_owned(),
        ));
    }
    Ok(None)
}
