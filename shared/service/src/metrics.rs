//! Operational metrics as CloudWatch Embedded Metric Format (EMF) log lines.
//!
//! A Lambda's stdout goes to CloudWatch Logs, which turns a JSON line with an `_aws` member into
//! metrics: no SDK call, no extra permission, no latency on the hot path. Each metric here is a
//! `tracing` event of target [`TARGET`] whose `emf` field holds the finished JSON line;
//! [`EmfLayer`] writes that line to stdout verbatim (EMF needs `_aws` as a real JSON object at
//! the top level, which a formatted tracing line cannot give), and [`crate::lambda::init_tracing`]
//! keeps those events out of the ordinary log. Tests capture the events with any subscriber.
//!
//! Namespace `DungeonLab`, one dimension `Function` (the Lambda's name, or `local-gateway`):
//! per-session values such as the session id are properties, not dimensions, so the number of
//! metric series does not grow with the number of sessions.

use std::io::Write;

use dlab_core::ids::SessionId;
use serde_json::{Map, Value, json};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// The tracing target of metric events.
pub const TARGET: &str = "dlab::metrics";
/// The CloudWatch namespace.
pub const NAMESPACE: &str = "DungeonLab";

/// Archive lag of a session: head minus archivedThrough, after a backfill.
pub const ARCHIVE_LAG: &str = "ArchiveLag";
/// A session whose archive could not be completed (the hot log no longer holds the events).
pub const BACKFILL_FAILURES: &str = "BackfillFailures";
/// Events copied into the archive by backfill.
pub const BACKFILLED_EVENTS: &str = "BackfilledEvents";
/// Compactions that ran.
pub const COMPACTION_RUNS: &str = "CompactionRuns";
/// Bytes a compaction removed from the Redis hot log.
pub const BYTES_SAVED: &str = "BytesSaved";
/// Posts answered 410 Gone (connections that vanished without `$disconnect`).
pub const GONE_CONNECTIONS: &str = "GoneConnections";
/// Time of the atomic commit plus its archive write.
pub const COMMIT_LATENCY: &str = "CommitLatency";

/// The unit of a metric, as CloudWatch names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A plain count.
    Count,
    /// Bytes.
    Bytes,
    /// Milliseconds.
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// The `Function` dimension: the Lambda's name, or `local-gateway` elsewhere.
fn function_name() -> String {
    std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local-gateway".to_owned())
}

/// Emits one metric, with the session as a property when given.
pub fn emit(name: &'static str, value: f64, unit: Unit, session: Option<&SessionId>) {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut line = json!({
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function"]],
                "Metrics": [{"Name": name, "Unit": unit.as_str()}],
            }],
        },
        "Function": function_name(),
        name: value,
    });
    if let Some(session) = session {
        line["SessionId"] = json!(session);
    }
    tracing::info!(target: TARGET, metric = name, emf = %line, "metric");
}

/// Writes the `emf` field of metric events to stdout as one line each.
#[derive(Debug, Default, Clone, Copy)]
pub struct EmfLayer;

#[derive(Default)]
struct EmfField(Option<String>);

impl Visit for EmfField {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "emf" {
            self.0 = Some(format!("{value:?}"));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "emf" {
            self.0 = Some(value.to_owned());
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for EmfLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let mut field = EmfField::default();
        event.record(&mut field);
        if let Some(line) = field.0 {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
        }
    }
}

/// Parses a metric event's `emf` line back (tests and tools): the metric's value by name.
pub fn value_of(line: &str, name: &str) -> Option<f64> {
    let v: Map<String, Value> = serde_json::from_str(line).ok()?;
    v.get(name)?.as_f64()
}

/// A layer that keeps the `emf` lines of metric events in memory, so a test (or a tool) can
/// check what an operation reported.
#[derive(Debug, Clone, Default)]
pub struct MetricRecorder(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl MetricRecorder {
    /// The lines recorded so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The values recorded for metric `name`, in order.
    pub fn values(&self, name: &str) -> Vec<f64> {
        self.lines()
            .iter()
            .filter_map(|l| value_of(l, name))
            .collect()
    }
}

impl<S: tracing::Subscriber> Layer<S> for MetricRecorder {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let mut field = EmfField::default();
        event.record(&mut field);
        if let (Some(line), Ok(mut lines)) = (field.0, self.0.lock()) {
            lines.push(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn an_emf_line_has_the_metric_its_unit_and_the_function_dimension() {
        let recorder = MetricRecorder::default();
        let subscriber = tracing_subscriber::registry().with(recorder.clone());
        tracing::subscriber::with_default(subscriber, || {
            emit(ARCHIVE_LAG, 3.0, Unit::Count, Some(&SessionId::new("s1")));
        });
        let lines = recorder.lines();
        assert_eq!(lines.len(), 1);
        let v: Value = serde_json::from_str(&lines[0]).unwrap();
        let cw = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], NAMESPACE);
        assert_eq!(
            cw["Metrics"][0],
            json!({"Name": ARCHIVE_LAG, "Unit": "Count"})
        );
        assert_eq!(cw["Dimensions"], json!([["Function"]]));
        assert!(v["_aws"]["Timestamp"].as_u64().unwrap() > 0);
        assert!(v["Function"].is_string());
        assert_eq!(v["SessionId"], "s1");
        assert_eq!(recorder.values(ARCHIVE_LAG), vec![3.0]);
    }
}
