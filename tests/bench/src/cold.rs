//! `cold-start`: how long each Lambda function's release `bootstrap` takes from spawn to its
//! first poll of the Lambda Runtime API (`GET /2018-06-01/runtime/invocation/next`), against a
//! hello-world `lambda_runtime` function built the same way (`dlab-hello-lambda`).
//!
//! The bench serves a stand-in Runtime API on 127.0.0.1 that records the first poll and never
//! hands out an invocation, so what is measured is the function's own init (configuration,
//! clients, TLS roots…) and nothing else. Backends get dummy loopback addresses: functions do
//! not contact them at cold start (`Deps::from_config` is lazy), and a function that tried
//! would show up as a slow start, not hang the bench (each start is bounded).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Serialize;
use tokio::sync::Notify;

use crate::error::{BenchError, Result};
use crate::report::{Case, Measured, Report, Side, StoreRun};

/// The functions of `functions/`, by binary name (cargo-lambda's folder names).
pub const FUNCTIONS: [&str; 8] = [
    "ws-connect",
    "ws-disconnect",
    "ws-subscribe",
    "ws-submit",
    "ws-replay",
    "ws-default",
    "http-api",
    "compaction",
];

/// The baseline's binary name.
pub const HELLO: &str = "dlab-hello-lambda";

/// How the bootstraps are built (printed when they are missing).
pub const BUILD: &str = "bash infra/lambda-build.sh install; eval \"$(bash infra/lambda-build.sh env)\"; \
     bash infra/lambda-build.sh build; cargo lambda build --release -p dlab-hello-lambda";

/// The bound on one start: far above any real init, so it only stops a broken bootstrap.
const START_BOUND: Duration = Duration::from_secs(20);

/// Sizes of `cold-start`.
#[derive(Debug, Clone, Serialize)]
pub struct ColdStart {
    /// Starts per function (the median is reported).
    pub starts: usize,
    /// Where cargo-lambda put the bootstraps (`<dir>/<name>/bootstrap`).
    pub lambda_dir: PathBuf,
}

/// What the stand-in saw of the current start.
#[derive(Default)]
struct Api {
    first_poll: Mutex<Option<Instant>>,
    init_error: Mutex<Option<String>>,
    seen: Notify,
}

/// `GET …/invocation/next`: notes the first poll, then waits forever (as Lambda does between
/// invocations), so the function stays idle until it is killed.
async fn next(State(api): State<Arc<Api>>) -> StatusCode {
    {
        let mut first = api.first_poll.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(Instant::now());
        }
    }
    api.seen.notify_one();
    std::future::pending::<()>().await;
    StatusCode::NO_CONTENT
}

/// `POST …/init/error`: the function could not start.
async fn init_error(State(api): State<Arc<Api>>, body: String) -> StatusCode {
    *api.init_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(body);
    api.seen.notify_one();
    StatusCode::ACCEPTED
}

/// The environment Lambda gives every function, plus the service's required variables with
/// dummy loopback values (port 9 is discard: nothing answers, nothing is contacted at init).
fn environment(name: &str, api: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_LAMBDA_RUNTIME_API", api.to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512".to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".to_owned()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "bench".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "bench".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9".to_owned()),
        ("REDIS_URL", "redis://127.0.0.1:9".to_owned()),
        ("MONGODB_URI", "mongodb://127.0.0.1:9".to_owned()),
        ("CONNECTIONS_TABLE", "bench-connections".to_owned()),
        (
            "APIGW_MANAGEMENT_ENDPOINT",
            "http://127.0.0.1:9/bench".to_owned(),
        ),
        (
            "JWT_SECRET",
            "bench-jwt-secret-of-at-least-32-bytes!".to_owned(),
        ),
        (
            "TICKET_SECRET",
            "bench-ticket-secret-of-at-least-32-bytes".to_owned(),
        ),
    ]
}

/// One start of `bootstrap`: spawn → first poll.
async fn start_once(bootstrap: &Path, name: &str, api: &Arc<Api>, addr: &str) -> Result<Duration> {
    *api.first_poll.lock().unwrap_or_else(|e| e.into_inner()) = None;
    *api.init_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
    let mut command = tokio::process::Command::new(bootstrap);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(environment(name, addr))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // The child is killed when its handle drops, whatever happens below.
        .kill_on_drop(true);
    let spawned = Instant::now();
    let mut child = command.spawn().map_err(|source| BenchError::Spawn {
        what: "a Lambda bootstrap",
        program: bootstrap.display().to_string(),
        source,
    })?;
    let deadline = spawned + START_BOUND;
    let outcome = loop {
        if let Some(at) = *api.first_poll.lock().unwrap_or_else(|e| e.into_inner()) {
            break Ok(at.saturating_duration_since(spawned));
        }
        if let Some(e) = api
            .init_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            break Err(BenchError::NotReady {
                what: "Lambda bootstrap",
                reason: format!("{name} reported an init error: {e}"),
            });
        }
        if let Ok(Some(status)) = child.try_wait() {
            break Err(BenchError::NotReady {
                what: "Lambda bootstrap",
                reason: format!("{name} exited with {status} before polling"),
            });
        }
        let now = Instant::now();
        if now >= deadline {
            break Err(BenchError::NotReady {
                what: "Lambda bootstrap",
                reason: format!("{name} did not poll within {START_BOUND:?}"),
            });
        }
        // Woken by the stand-in; the short timeout covers an exit, which nobody signals.
        let _ = tokio::time::timeout(
            (deadline - now).min(Duration::from_millis(50)),
            api.seen.notified(),
        )
        .await;
    };
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    outcome
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn side(name: &str, bootstrap: &Path, starts: &[Duration]) -> Result<StoreRun> {
    let size = std::fs::metadata(bootstrap)
        .map_err(|source| BenchError::Io {
            what: format!("stat {}", bootstrap.display()),
            source,
        })?
        .len();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(StoreRun::new(name)
        .with("init median (ms)", ms(median(starts.to_vec())))
        .with(
            "init min (ms)",
            ms(*starts.iter().min().unwrap_or(&Duration::ZERO)),
        )
        .with(
            "init max (ms)",
            ms(*starts.iter().max().unwrap_or(&Duration::ZERO)),
        )
        .with("bootstrap (MiB)", size as f64 / (1024.0 * 1024.0)))
}

/// `cold-start`: every function's bootstrap, each against the hello world, starts interleaved
/// (function, hello, function, …) so a burst of load hits both alike.
pub async fn cold_start(smoke: bool, p: ColdStart) -> Result<Report> {
    let path = |name: &str| p.lambda_dir.join(name).join("bootstrap");
    let hello = path(HELLO);
    let present: Vec<&str> = FUNCTIONS
        .iter()
        .copied()
        .filter(|f| path(f).is_file())
        .collect();
    if !hello.is_file() || present.is_empty() {
        let reason = format!(
            "build the functions first: {BUILD} (looked in {})",
            p.lambda_dir.display()
        );
        let cases = vec![Case::new(
            "all functions",
            Side::skipped(&reason),
            Side::skipped(&reason),
        )];
        return Ok(Report::new("cold-start", smoke, &p, cases).sides("function", "hello world"));
    }
    let api = Arc::new(Api::default());
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|source| BenchError::Io {
            what: "bind the stand-in Runtime API".to_owned(),
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| BenchError::Io {
            what: "the stand-in's address".to_owned(),
            source,
        })?
        .to_string();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut cases = Vec::new();
    let mut notes = Vec::new();
    for name in FUNCTIONS {
        if !present.contains(&name) {
            let reason = format!(
                "no {}: build the functions first: {BUILD}",
                path(name).display()
            );
            cases.push(Case::new(
                name,
                Side::skipped(&reason),
                Side::skipped(reason),
            ));
            continue;
        }
        eprintln!("  {name} ...");
        let mut ours = Vec::new();
        let mut base = Vec::new();
        let mut error = None;
        for _ in 0..p.starts.max(1) {
            match start_once(&path(name), name, &api, &addr).await {
                Ok(d) => ours.push(d),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
            base.push(start_once(&hello, HELLO, &api, &addr).await?);
        }
        let ours = match error {
            Some(e) => Side::failed(&e),
            None => match side(name, &path(name), &ours) {
                Ok(r) => Side::measured(Measured::Store(r)),
                Err(e) => Side::failed(&e),
            },
        };
        let base = match side(HELLO, &hello, &base) {
            Ok(r) => Side::measured(Measured::Store(r)),
            Err(e) => Side::failed(&e),
        };
        let case = Case::new(name, ours, base);
        if let Some(r) = case.ratios.get("init median (ms)") {
            notes.push(format!(
                "goal ({name}): init <= 2 x hello world: {} ({r:.2})",
                if *r <= 2.0 { "met" } else { "missed" }
            ));
        }
        cases.push(case);
    }
    server.abort();
    let mut r = Report::new("cold-start", smoke, &p, cases).sides("function", "hello world");
    r.notes = notes;
    Ok(r)
}
