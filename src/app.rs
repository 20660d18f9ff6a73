//! The application: builds the handlers' state from a [`Config`], binds
//! the configured addresses, serves the router until shutdown, and runs the
//! background upkeep (the flood limiter's idle keys).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::auth::{self, Authenticator};
use crate::config::Config;
use crate::domain::{Clock, SystemClock};
use crate::http::{self, AppState, router};
use crate::store::{self, StoreError};
use crate::{grant, plans, server, telemetry, ticks};

/// What keeps the service from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] auth::AuthSetupError),
    #[error(transparent)]
    GrantKey(#[from] grant::GrantKeyError),
    #[error(transparent)]
    Plans(#[from] plans::PlansError),
    /// Flags that do not go together.
    #[error("{0}")]
    Flags(String),
    /// A secret file (`--admin-token-file`) could not be read.
    #[error("{0}")]
    SecretFile(String),
    /// The configured store, named, failed (as [`start`] reports it).
    #[error("store {store}")]
    StoreAt {
        store: String,
        #[source]
        source: StoreError,
    },
    /// Binding an address or serving failed.
    #[error(transparent)]
    Serve(#[from] std::io::Error),
}

/// Whether this process was started by AWS Lambda.
#[cfg(feature = "lambda")]
pub fn in_lambda() -> bool {
    crate::lambda::is_lambda()
}

/// Whether this process was started by AWS Lambda: never, without the
/// `lambda` feature.
#[cfg(not(feature = "lambda"))]
pub fn in_lambda() -> bool {
    false
}

/// Starts logging as `config` asks (JSON lines under Lambda).
pub fn init_logging(config: &Config) -> telemetry::Logging {
    let settings = telemetry::LogSettings::new(config.ops.log_format, in_lambda());
    telemetry::init_logging(&settings)
}

/// `streamguard init`: prepares the configured store.
pub async fn init(config: &Config) -> Result<(), StoreError> {
    store::init(&config.store, config.store_options()).await?;
    tracing::info!(store = %config.store, "store is ready");
    Ok(())
}

/// `streamguard serve`: builds the state on the system clock, gives back
/// what the store's restore freed, and [`run`]s until shutdown.
pub async fn start(config: &Config) -> Result<(), StartError> {
    let state = app_state(config, Arc::new(SystemClock))
        .await
        .map_err(|e| match e {
            StartError::Store(source) => StartError::StoreAt {
                store: config.store.to_string(),
                source,
            },
            other => other,
        })?;
    give_back_freed_memory();
    Ok(run(config, state).await?)
}

/// Connects the configured store, loads identity and grant keys, and
/// gathers what the handlers share.
pub async fn app_state(config: &Config, clock: Arc<dyn Clock>) -> Result<AppState, StartError> {
    let mut policy = config.policy();
    let plan_header = config.plan_header().map_err(StartError::Flags)?;
    let plans_file = match &config.plans {
        Some(path) => {
            let file = plans::PlansFile::load(path)?;
            file.keep_fresh();
            policy.plans = Some(file.book());
            Some(file)
        }
        None => None,
    };
    let auth = match config.jwt_settings()? {
        None => Authenticator::Header,
        Some(settings) => Authenticator::Jwt(Arc::new(auth::JwtVerifier::new(settings).await?)),
    };
    let grants = match &config.grant_key {
        Some(path) => {
            let signer = grant::GrantSigner::load(path)?;
            signer.keep_fresh();
            Some(signer)
        }
        None => None,
    };
    let store = store::connect_with(
        &config.store,
        config.store_options(),
        policy.clone(),
        clock.clone(),
    )
    .await?;
    let state = AppState::new(http::Shared {
        store,
        policy,
        plans_file,
        plan_header,
        require_lease_secret: config.require_lease_secret,
        auth,
        grants,
        clock,
        admin_token: config.admin_token().map_err(StartError::SecretFile)?,
        store_timeout: config.store_timeout,
        on_store_error: config.on_store_error,
        metrics: telemetry::metrics_handle(),
        ops: config.ops(),
    });
    forget_idle_throttle_keys(&state);
    Ok(state)
}

/// Drops the flood limiter's idle keys every few seconds, for as long as
/// the state is in use.
pub fn forget_idle_throttle_keys(state: &AppState) {
    let weak = state.downgrade();
    let mut ticks = ticks::Ticks::new(http::throttle::FORGET_IDLE_EVERY, move || weak.upgrade());
    tokio::spawn(async move {
        while let Some(state) = ticks.next().await {
            state.ops.throttle.forget_idle();
        }
    });
}

/// Serves the API on `listener` until `shutdown` resolves (and, with
/// `--metrics-listen`, `/metrics` on `metrics`), then turns `/readyz` to
/// 503, goes on serving for `--shutdown-delay`, stops accepting, lets
/// in-flight requests finish for at most `--shutdown-timeout`, closes what
/// remains and makes the store durable.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    serving: Serving,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_metrics(listener, None, state, serving, shutdown).await
}

/// How the accept loop runs and stops: `--max-connections`,
/// `--shutdown-delay`, `--shutdown-timeout`. Not the handlers' business,
/// so not in their state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serving {
    pub max_connections: u32,
    pub shutdown_delay: Duration,
    pub shutdown_timeout: Duration,
}

impl Serving {
    pub fn new(config: &Config) -> Self {
        Self {
            max_connections: config.ops.max_connections,
            shutdown_delay: config.ops.shutdown_delay,
            shutdown_timeout: config.ops.shutdown_timeout,
        }
    }
}

/// [`serve`], with `/metrics` on a listener of its own.
pub async fn serve_with_metrics(
    listener: TcpListener,
    metrics: Option<TcpListener>,
    state: AppState,
    serving: Serving,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let limits = server::Limits {
        max_connections: serving.max_connections as usize,
        drain_for: serving.shutdown_timeout,
    };
    let api = tokio::spawn(server::run(
        listener,
        router(state.clone()),
        limits,
        stopping.clone(),
    ));
    let metrics = metrics.map(|listener| {
        tokio::spawn(server::run(
            listener,
            http::metrics_router(state.clone()),
            limits,
            stopping,
        ))
    });
    shutdown.await;
    state.ops.start_draining();
    if !serving.shutdown_delay.is_zero() {
        tracing::info!(delay = ?serving.shutdown_delay, "readyz answers 503; serving on until the delay ends");
        tokio::time::sleep(serving.shutdown_delay).await;
    }
    let _ = stop.send(true);
    let served = api.await.map_err(std::io::Error::other)?;
    if let Some(metrics) = metrics {
        metrics.await.map_err(std::io::Error::other)??;
    }
    // The store closes whatever happened above: the file store's final
    // sweep and flush must run.
    let closed = state.store.close().await.map_err(std::io::Error::other);
    served.and(closed)
}

/// Hands the pages mimalloc holds free back to the OS. Restoring a large
/// `file:` store frees part of what it read (rows, the journal queue),
/// which mimalloc would otherwise keep until it next purges (BENCHMARKS.md,
/// restart of `file:`). Harmless under another global allocator
/// (mimalloc's own heaps are then empty).
pub fn give_back_freed_memory() {
    // SAFETY: mi_collect takes no pointers; it only returns free pages.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// Binds the API's address (and `--metrics-listen`'s) from `config` and
/// serves `state` until SIGTERM or Ctrl-C.
pub async fn run(config: &Config, state: AppState) -> std::io::Result<()> {
    let shutdown = shutdown_signal();
    let bind = |flag: &'static str, addr: std::net::SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("{flag} {addr}: {e}")))
    };
    let listener = bind("--listen", config.listen).await?;
    let metrics = match config.ops.metrics_listen {
        Some(addr) => Some(bind("--metrics-listen", addr).await?),
        None => None,
    };
    if let Some(metrics) = &metrics {
        tracing::info!(addr = %metrics.local_addr()?, "serving /metrics");
    }
    tracing::info!(addr = %listener.local_addr()?, store = %config.store, "listening");
    let serving = Serving::new(config);
    serve_with_metrics(listener, metrics, state, serving, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is
/// called, not when the future is first polled: a SIGTERM that arrives
/// while the server is starting (a deploy that gives up on it, a test that
/// stops it as soon as it answers) must drain it, not kill it.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (term, interrupt) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(term) => {},
                () = wait(interrupt) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down: draining in-flight requests");
    }
}
