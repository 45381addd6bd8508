//! The EMF metric lines a test binary's operations emit, recorded process-wide so that cases
//! on a multi-threaded runtime (and the tasks they spawn) are seen too. Cases of one binary run
//! side by side, so a case reads the lines of its own session, or counts lines before and after
//! (other cases only ever add lines).

use std::sync::OnceLock;

use dlab_core::ids::SessionId;
use dlab_service::metrics::{MetricRecorder, value_of};
use serde_json::{Value, json};
use tracing_subscriber::layer::SubscriberExt;

static RECORDER: OnceLock<MetricRecorder> = OnceLock::new();

/// The process-wide recorder, installed as the global subscriber on first use (call it before
/// the operation whose metrics a case checks).
pub fn recorder() -> &'static MetricRecorder {
    RECORDER.get_or_init(|| {
        let recorder = MetricRecorder::default();
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(recorder.clone()),
        )
        .expect("no other global subscriber in a test binary");
        recorder
    })
}

/// The values of metric `name` reported for `session`, in order.
pub fn session_values(name: &str, session: &SessionId) -> Vec<f64> {
    let session = json!(session);
    recorder()
        .lines()
        .iter()
        .filter(|line| serde_json::from_str::<Value>(line).is_ok_and(|v| v["SessionId"] == session))
        .filter_map(|line| value_of(line, name))
        .collect()
}

/// How many lines of metric `name` were recorded so far (every session, or none).
pub fn count(name: &str) -> usize {
    recorder().values(name).len()
}
