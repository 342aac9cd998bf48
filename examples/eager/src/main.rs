//! The eager-cache service. `--help` for the options.

use std::error::Error;

use matroska_eager::{App, Config, Source, USAGE};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        #[allow(clippy::print_stdout)] // The usage text is the output.
        {
            print!("{USAGE}");
        }
        return Ok(());
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .try_init()
        .map_err(|err| err as Box<dyn Error>)?;

    let config = Config::from_args(args)?;
    let app = App::connect(&config, Source::new()).await?;
    let listener = tokio::net::TcpListener::bind(config.bind).await?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    axum::serve(listener, app.router())
        .with_graceful_shutdown(async {
            if let Err(err) = tokio::signal::ctrl_c().await {
                tracing::error!(error = %err, "cannot listen for Ctrl-C");
            }
        })
        .await?;
    Ok(())
}
