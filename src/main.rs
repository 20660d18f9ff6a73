use std::sync::Arc;

use clap::Parser;
use streamguard::StartError;
use streamguard::config::{Cli, Command};
use streamguard::domain::SystemClock;
use streamguard::telemetry::{self, LogSettings};

/// glibc's allocator took a large share of the request path in malloc/free
/// under load; mimalloc's thread-local heaps remove most of it
/// (BENCHMARKS.md, where a heartbeat's CPU goes).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command() {
        Command::Healthcheck => {
            let probed = cli.config.ops.metrics_listen.unwrap_or(cli.config.listen);
            return Ok(streamguard::healthcheck::check(probed)?);
        }
        Command::EdgeKeys(args) => {
            let written = streamguard::grant::edge_keys::main(&args.jwks, &args.out).await;
            return written.map_err(anyhow::Error::msg);
        }
        _ => {}
    }
    let config = cli.config.clone();
    #[cfg(feature = "lambda")]
    let in_lambda = streamguard::lambda::is_lambda();
    #[cfg(not(feature = "lambda"))]
    let in_lambda = false;
    let _logs = telemetry::init_logging(&LogSettings::new(config.ops.log_format, in_lambda));
    if cli.command() == Command::Init {
        streamguard::store::init(&config.store, config.store_options()).await?;
        tracing::info!(store = %config.store, "store is ready");
        return Ok(());
    }
    #[cfg(feature = "lambda")]
    if in_lambda {
        return Ok(streamguard::lambda::run(&config).await?);
    }
    let state = streamguard::app_state(&config, Arc::new(SystemClock))
        .await
        .map_err(|e| match e {
            StartError::Store(_) => {
                anyhow::Error::new(e).context(format!("store {}", config.store))
            }
            other => other.into(),
        })?;
    streamguard::give_back_freed_memory();
    Ok(streamguard::run(&config, state).await?)
}
