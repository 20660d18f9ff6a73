//! The real binary as AWS Lambda runs it: `AWS_LAMBDA_RUNTIME_API` points at
//! a small emulation of the Lambda Runtime API (the documented
//! `/2018-06-01/runtime/invocation/next` and `/{id}/response` protocol), the
//! store is DynamoDB on the local emulator.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::fixtures;

const BIN: &str = env!("CARGO_BIN_EXE_streamguard");

/// Static credentials and the store for the emulator (and no instance
/// metadata lookups).
fn emulator_env(store: &str) -> Vec<(&'static str, String)> {
    [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("STREAMGUARD_STORE", store),
        ("STREAMGUARD_DEFAULT_LIMIT", "1"),
        ("STREAMGUARD_STORE_TIMEOUT", "5s"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect()
}

/// What Lambda puts in a function's environment, and the emulator's.
fn lambda_env(runtime_api: &str, store: &str) -> Vec<(&'static str, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api),
        ("AWS_LAMBDA_FUNCTION_NAME", "streamguard"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/streamguard"),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/11/28/[$LATEST]0123456789abcdef",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .chain(emulator_env(store))
    .collect()
}

/// An invocation's answer: the response, or the error the function posted.
type Outcome = Result<Value, Value>;

/// Invocations waiting for their answer, by request id.
type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Outcome>>>>;

/// Pending invocations and where their answers go.
#[derive(Clone)]
struct RuntimeApi {
    next: Arc<tokio::sync::Mutex<mpsc::Receiver<(String, String)>>>,
    waiting: Waiting,
}

async fn next_invocation(State(api): State<RuntimeApi>) -> impl IntoResponse {
    let (id, event) = api
        .next
        .lock()
        .await
        .recv()
        .await
        .expect("the test is running");
    let mut headers = HeaderMap::new();
    let deadline = std::time::SystemTime::now() + Duration::from_secs(60);
    let deadline_ms = deadline
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    headers.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
    headers.insert(
        "lambda-runtime-deadline-ms",
        deadline_ms.to_string().parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:streamguard"
            .parse()
            .unwrap(),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1"
            .parse()
            .unwrap(),
    );
    headers.insert("content-type", "application/json".parse().unwrap());
    (headers, event)
}

fn answer(api: &RuntimeApi, id: &str, outcome: Outcome) {
    if let Some(waiter) = api.waiting.lock().unwrap().remove(id) {
        let _ = waiter.send(outcome);
    }
}

async fn invocation_response(
    State(api): State<RuntimeApi>,
    Path(id): Path<String>,
    body: String,
) -> &'static str {
    answer(&api, &id, Ok(serde_json::from_str(&body).unwrap()));
    "{\"status\":\"OK\"}"
}

async fn invocation_error(
    State(api): State<RuntimeApi>,
    Path(id): Path<String>,
    body: String,
) -> &'static str {
    answer(&api, &id, Err(Value::String(body)));
    "{\"status\":\"OK\"}"
}

async fn init_error(body: String) -> &'static str {
    panic!("the function reported an init error: {body}");
}

/// Queues events for the function and waits for its answers.
struct Invoker {
    queue: mpsc::Sender<(String, String)>,
    waiting: Waiting,
    count: usize,
}

impl Invoker {
    async fn invoke(&mut self, event: &str) -> Value {
        self.count += 1;
        let id = format!("00000000-0000-4000-8000-{:012}", self.count);
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap().insert(id.clone(), tx);
        self.queue.send((id, event.to_owned())).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(Ok(response))) => response,
            Ok(Ok(Err(error))) => panic!("the invocation failed: {error}"),
            _ => panic!("the function did not answer within 30 s"),
        }
    }
}

async fn start_runtime_api() -> (SocketAddr, Invoker) {
    let (queue, next) = mpsc::channel(8);
    let api = RuntimeApi {
        next: Arc::new(tokio::sync::Mutex::new(next)),
        waiting: Arc::default(),
    };
    let waiting = api.waiting.clone();
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(invocation_response),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(invocation_error),
        )
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let invoker = Invoker {
        queue,
        waiting,
        count: 0,
    };
    (addr, invoker)
}

/// Kills the function when the test ends, whatever happened.
struct Function(Child);

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_init(store: &str) -> Output {
    Command::new(BIN)
        .args(["init", "--store", store])
        .envs(emulator_env(store))
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_api_gateway_events_from_the_runtime_api() {
    let table = format!(
        "sg-lambda-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let store = format!(
        "dynamodb://{table}?region=us-east-1&endpoint={}",
        crate::emulator::endpoint()
    );
    for _ in 0..2 {
        let init = run_init(&store);
        assert!(
            init.status.success(),
            "init (idempotent) failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
    }

    let (addr, mut invoker) = start_runtime_api().await;
    let mut child = Command::new(BIN)
        .envs(lambda_env(&addr.to_string(), &store))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _function = Function(child);
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });

    let started = invoker.invoke(fixtures::V1_START).await;
    assert_eq!(started["statusCode"], 201, "{started}");
    let body: Value = serde_json::from_str(started["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["stream"]["id"], "tv-1");

    let beat = invoker.invoke(fixtures::V2_HEARTBEAT).await;
    assert_eq!(beat["statusCode"], 200, "{beat}");

    let refused = invoker.invoke(fixtures::V2_STAGED_START).await;
    assert_eq!(refused["statusCode"], 409, "{refused}");
    let body: Value = serde_json::from_str(refused["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["type"], "urn:streamguard:problem:stream-limit-reached");

    // Every stdout line is JSON: logs, and EMF documents for the decisions.
    let emf = |l: &Value, outcome: &str| {
        l["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "streamguard"
            && l["outcome"] == outcome
            && l["decisions"] == 1
    };
    type Check = Box<dyn Fn(&Value) -> bool>;
    let mut wanted: Vec<(&str, Check)> = vec![
        (
            "an EMF line for the grant",
            Box::new(move |l| emf(l, "granted")),
        ),
        (
            "an EMF line for the heartbeat",
            Box::new(move |l| emf(l, "renewed")),
        ),
        (
            "an EMF line for the refusal",
            Box::new(move |l| emf(l, "denied")),
        ),
        (
            "a JSON access log line for the 409",
            Box::new(|l| l["message"] == "request" && l["status"] == 409),
        ),
    ];
    let mut seen = Vec::new();
    while !wanted.is_empty() {
        let Ok(line) = line_rx.recv_timeout(Duration::from_secs(10)) else {
            let missing: Vec<_> = wanted.iter().map(|(what, _)| *what).collect();
            panic!("stdout lacks {missing:?}; it had {seen:#?}");
        };
        let log: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: not JSON: {line}"));
        wanted.retain(|(_, matches)| !matches(&log));
        seen.push(line);
    }
}

#[test]
fn local_stores_are_refused_in_lambda() {
    let mut stores = vec!["memory"];
    if cfg!(feature = "file") {
        stores.push("file:./never-created");
    }
    for store in stores {
        let out = Command::new(BIN)
            .envs(lambda_env("127.0.0.1:9", store))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{store} must be refused");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("cannot enforce a limit in AWS Lambda"),
            "{store}: {stderr}"
        );
        assert!(
            !std::path::Path::new("never-created").exists(),
            "nothing was created"
        );
    }
}
