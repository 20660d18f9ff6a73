use std::sync::Arc;

use clap::Parser;
use streamguard::config::{Cli, Command};
use streamguard::domain::SystemClock;
use streamguard::{store, telemetry};
use tokio::net::TcpListener;

/// glibc's allocator spent a fifth of the request path in malloc/free under
/// load (perf); mimalloc's thread-local heaps remove most of it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.command() == Command::Healthcheck {
        return Ok(streamguard::healthcheck::check(cli.config.listen)?);
    }
    let _logs = telemetry::init_logging();
    let config = cli.config.clone();

    if cli.command() == Command::Init {
        store::init(&config.store).await?;
        tracing::info!(store = %config.store, "store is ready");
        return Ok(());
    }
    #[cfg(feature = "lambda")]
    if streamguard::lambda::is_lambda() {
        return Ok(streamguard::lambda::run(&config).await?);
    }

    let state = streamguard::app_state(&config, Arc::new(SystemClock)).await?;
    let listener = TcpListener::bind(config.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, store = %config.store, "listening");
    streamguard::serve(listener, state, streamguard::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}
