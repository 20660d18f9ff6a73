//! Inside AWS Lambda (`AWS_LAMBDA_RUNTIME_API` set): the same router serves
//! API Gateway events (REST API v1 and HTTP API v2 payloads) through
//! lambda_http. Every Lambda instance is its own process, so only a store
//! they all share can hold the limit: the memory and file stores are
//! refused.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Response;
use tower::ServiceExt;

use crate::domain::{Clock, SystemClock};
use crate::{AppState, Config};

use crate::telemetry::emf;
mod stage;

/// Why the service could not run in Lambda.
#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    #[error(
        "the {store} store cannot enforce a limit in AWS Lambda, where every instance is a \
         separate process: set STREAMGUARD_STORE to a shared store, e.g. dynamodb://TABLE"
    )]
    LocalStore { store: String },
    #[error("the service could not start")]
    Start(#[source] crate::StartError),
    #[error("the Lambda runtime failed")]
    Runtime(#[source] lambda_http::Error),
}

/// Whether this process was started by AWS Lambda.
pub fn is_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}

/// Serves API Gateway events from the Lambda Runtime API until Lambda
/// stops the process.
pub async fn run(config: &Config) -> Result<(), LambdaError> {
    if !config.store.is_shared() {
        return Err(LambdaError::LocalStore {
            store: config.store.to_string(),
        });
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = crate::app_state(config, clock.clone())
        .await
        .map_err(LambdaError::Start)?;
    let emf = emf::enable();
    tracing::info!(store = %config.store, "serving API Gateway events");
    let app = handler(state).map_response(move |response| {
        // CloudWatch reads EMF from stdout; a failed write loses metrics only.
        let _ = emf.flush(&mut std::io::stdout().lock(), clock.now().as_millis());
        response
    });
    lambda_http::run(app).await.map_err(LambdaError::Runtime)
}

/// The router as a service of lambda_http requests, with the API Gateway
/// stage taken off the path (and put back in front of `Location`).
pub fn handler(
    state: AppState,
) -> impl tower::Service<
    lambda_http::Request,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send,
> + Clone {
    let router = crate::router(state);
    tower::service_fn(move |mut req: lambda_http::Request| {
        let router = router.clone();
        async move {
            let stage = stage::strip(&mut req);
            let mut response = router.oneshot(req).await?;
            if let Some(stage) = stage {
                stage::restore(&mut response, &stage);
            }
            Ok(response)
        }
    })
}
