//! The `compaction` binary as Lambda runs it: a stand-in for the Lambda Runtime API on a
//! loopback port hands it one scheduled invocation, and the binary (its own cold start, the
//! configuration from the environment, the real Redis and MongoDB) answers with its sweep
//! report. The session it must repair had its archive writes lost: the run copies them from
//! Redis into MongoDB, and its stdout carries the EMF metric lines CloudWatch reads.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use dlab_core::event::GameEvent;
use dlab_core::ids::{EventId, Sequence, SessionId, UserId};
use dlab_service::Deps;
use dlab_service::auth::Authenticator;
use dlab_service::config::Settings;
use dlab_service::pipeline::{Origin, publish};
use dlab_store::model::now_ms;
use dlab_store::mongo::{MongoConfig, MongoStores};
use dlab_store::redis::{RedisConfig, RedisEventLog};
use dlab_tests::lifecycle_cases::LifeWorld;
use dlab_tests::servers::{Server, require};
use dlab_tests::ws_world::SECRET;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(120);

/// What the stand-in Runtime API saw.
#[derive(Default)]
struct Runtime {
    handed_out: Mutex<bool>,
    response: Mutex<Option<Value>>,
    error: Mutex<Option<String>>,
}

/// `GET /runtime/invocation/next`: one scheduled event, then nothing more (the call waits, as
/// on Lambda between invocations).
async fn next(State(rt): State<Arc<Runtime>>) -> (HeaderMap, String) {
    let first = !std::mem::replace(&mut *rt.handed_out.lock().unwrap(), true);
    if !first {
        std::future::pending::<()>().await;
    }
    let mut headers = HeaderMap::new();
    let deadline = now_ms() + 120_000;
    headers.insert(
        "lambda-runtime-aws-request-id",
        HeaderValue::from_static("scheduled-1"),
    );
    headers.insert(
        "lambda-runtime-deadline-ms",
        HeaderValue::from_str(&deadline.to_string()).unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:compaction"),
    );
    let event = json!({"version": "0", "id": "e1", "detail-type": "Scheduled Event",
                       "source": "aws.events", "detail": {}});
    (headers, event.to_string())
}

async fn response(
    State(rt): State<Arc<Runtime>>,
    Path(_id): Path<String>,
    body: String,
) -> StatusCode {
    *rt.response.lock().unwrap() = Some(serde_json::from_str(&body).unwrap_or(Value::Null));
    StatusCode::ACCEPTED
}

async fn error(State(rt): State<Arc<Runtime>>, body: String) -> StatusCode {
    *rt.error.lock().unwrap() = Some(body);
    StatusCode::ACCEPTED
}

struct Function {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_invocation_backfills_the_archive_and_reports() {
    if !require(Server::Redis) || !require(Server::Mongo) {
        return;
    }
    // The session: events committed to Redis whose archive writes never reached MongoDB (the
    // world archives to memory), marked for backfill as the pipeline marks a failed write.
    let redis = RedisConfig::new(Server::Redis.url())
        .connect()
        .await
        .expect("Redis");
    let (mut deps, notifier) =
        Deps::memory_with_channels(Authenticator::with_secret(SECRET), Settings::default());
    deps.log = Arc::new(RedisEventLog::new(redis));
    let w = LifeWorld::over(deps, notifier);
    let t = w.table().await;
    let session: SessionId = t.session.clone();
    for i in 0..25 {
        let event = GameEvent {
            id: EventId::new(uuid::Uuid::new_v4().to_string()),
            sequence: Sequence::ZERO,
            timestamp: now_ms(),
            client_timestamp: None,
            user_id: UserId::new("gm"),
            session_id: session.clone(),
            event_type: "core:chat".into(),
            payload: json!({ "text": format!("line {i}") }),
            checksum: None,
        };
        publish(w.deps(), event, Origin::Server)
            .await
            .expect("commit");
    }
    let head = w.head(&session).await;
    w.deps().log.mark_unarchived(&session).await.unwrap();
    let database = format!("dlab_fn_{}", uuid::Uuid::new_v4().simple());
    let mut mongo_config = MongoConfig::new(Server::Mongo.url());
    mongo_config.database = database.clone();
    let mongo = MongoStores::connect(&mongo_config).await.expect("MongoDB");
    mongo
        .ensure_indexes()
        .await
        .expect("the deployment's migrate step");
    let archive = mongo.archive();
    use dlab_store::EventArchive as _;
    assert_eq!(
        archive.archived_through(&session).await.unwrap(),
        Sequence::ZERO
    );

    let runtime = Arc::new(Runtime::default());
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(error))
        .with_state(runtime.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut command = Command::new(env!("CARGO_BIN_EXE_compaction"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "compaction")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/compaction")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("REDIS_URL", Server::Redis.url())
        .env("MONGODB_URI", Server::Mongo.url())
        .env("MONGODB_DATABASE", &database)
        // `cargo test --workspace` builds this binary with the features the whole workspace
        // asks for, which also read these two; the deployed function reads neither (the
        // template test pins its environment).
        .env("JWT_SECRET", "compaction-test-secret-of-32-bytes!")
        .env("CONNECTIONS_TABLE", "unused")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command.spawn().expect("the compaction binary starts");
    let stdout = Arc::new(Mutex::new(Vec::new()));
    {
        let out = child.stdout.take().unwrap();
        let stdout = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                stdout.lock().unwrap().push(line);
            }
        });
    }
    let function = Function { child, stdout };

    let deadline = Instant::now() + WAIT;
    let report = loop {
        if let Some(report) = runtime.response.lock().unwrap().clone() {
            break report;
        }
        if let Some(error) = runtime.error.lock().unwrap().clone() {
            panic!("the function reported an error: {error}");
        }
        assert!(
            Instant::now() < deadline,
            "no response; stdout:\n{}",
            function.stdout.lock().unwrap().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // The report is the sweep's, and the archive is complete, 1..=head exactly once.
    assert!(report["backfilled"].as_u64().unwrap() >= 1, "{report}");
    assert!(report["copied"].as_u64().unwrap() >= head.get(), "{report}");
    assert_eq!(report["stoppedEarly"], false, "{report}");
    assert_eq!(archive.archived_through(&session).await.unwrap(), head);
    let events = archive
        .read(&session, Sequence::ZERO, None, 1000)
        .await
        .unwrap();
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence.get()).collect();
    assert_eq!(sequences, (1..=head.get()).collect::<Vec<_>>());
    assert!(
        !w.deps()
            .log
            .unarchived(1000)
            .await
            .unwrap()
            .contains(&session),
        "the mark is cleared"
    );

    // Its stdout has the EMF lines: the copied events and the archive lag of this session,
    // in the function's namespace and dimension.
    let emf: Vec<Value> = {
        let lines = function.stdout.lock().unwrap();
        lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("_aws").is_some() && v["SessionId"] == json!(session))
            .collect()
    };
    let metric = |name: &str| -> Vec<f64> { emf.iter().filter_map(|v| v[name].as_f64()).collect() };
    assert_eq!(
        metric(dlab_service::metrics::BACKFILLED_EVENTS),
        vec![head.get() as f64],
        "{emf:#?}"
    );
    assert_eq!(
        metric(dlab_service::metrics::ARCHIVE_LAG).last(),
        Some(&0.0),
        "{emf:#?}"
    );
    for line in &emf {
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            dlab_service::metrics::NAMESPACE
        );
        assert_eq!(line["Function"], "compaction");
    }
}
