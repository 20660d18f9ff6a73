use clap::Parser;
use streamguard::config::{Cli, Command};

/// glibc's allocator took a large share of the request path in malloc/free
/// under load; mimalloc's thread-local heaps remove most of it
/// (BENCHMARKS.md, where a heartbeat's CPU goes).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = &cli.config;
    match cli.command() {
        Command::Healthcheck => return Ok(streamguard::healthcheck::check_configured(config)?),
        Command::EdgeKeys(args) => {
            let written = streamguard::grant::edge_keys::main(&args.jwks, &args.out).await;
            return written.map_err(anyhow::Error::msg);
        }
        _ => {}
    }
    let _logs = streamguard::init_logging(config);
    if cli.command() == Command::Init {
        return Ok(streamguard::init(config).await?);
    }
    #[cfg(feature = "lambda")]
    if streamguard::in_lambda() {
        return Ok(streamguard::lambda::run(config).await?);
    }
    Ok(streamguard::start(config).await?)
}
