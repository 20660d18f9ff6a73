//! streamguard: at most N live playback streams per account.
//!
//! `domain` holds the rules and nothing else; `store` makes them atomic on
//! one account at a time; `http` is the API. [`app_state`] wires them from a
//! [`Config`], [`serve`] runs the router until shutdown.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub mod auth;
pub mod config;
pub mod domain;
pub mod grant;
pub mod healthcheck;
pub mod http;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod store;
pub mod telemetry;

pub use config::Config;
pub use http::{AppState, router};

use auth::Authenticator;
use domain::Clock;
use store::StoreError;

/// What keeps the service from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] auth::AuthSetupError),
    #[error(transparent)]
    GrantKey(#[from] grant::GrantKeyError),
}

/// Connects the configured store, loads identity and grant keys, and
/// gathers what the handlers share.
pub async fn app_state(config: &Config, clock: Arc<dyn Clock>) -> Result<AppState, StartError> {
    let policy = config.policy();
    let auth = match config.jwt_settings()? {
        None => Authenticator::Header,
        Some(settings) => Authenticator::Jwt(Arc::new(auth::JwtVerifier::new(settings).await?)),
    };
    let grants = match &config.grant_key {
        Some(path) => Some(Arc::new(grant::GrantSigner::load(path)?)),
        None => None,
    };
    let store = store::connect(&config.store_url(), policy, clock.clone()).await?;
    Ok(AppState::new(http::Shared {
        store,
        policy,
        auth,
        grants,
        clock,
        admin_token: config.admin_token.clone(),
        store_timeout: config.store_timeout,
        on_store_error: config.on_store_error,
        metrics: telemetry::metrics_handle(),
    }))
}

/// Serves the API on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish and makes the store durable.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let store = state.store.clone();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    store.close().await.map_err(std::io::Error::other)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}
