//! Results: the comparison of both servers per case, printed as a table and written as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::error::{BenchError, Result};
use crate::measure::E2eRun;
use crate::scenarios::MemoryRun;
use crate::stats::ratio;

/// What one server's run produced.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Measured {
    /// An end-to-end run.
    E2e(Box<E2eRun>),
    /// A memory reading.
    Memory(MemoryRun),
    /// A store-level run (commit, replay, compaction, cold start).
    Store(StoreRun),
}

/// One side of a store-level case: named numbers, in table order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreRun {
    /// What ran (e.g. `RedisEventLog::commit`, `EVALSHA commit.lua`).
    pub what: String,
    /// `(metric, value)` in the order the table prints them; both sides list the same metrics.
    pub metrics: Vec<(&'static str, f64)>,
}

impl StoreRun {
    /// A run of `what` with no numbers yet.
    pub fn new(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            metrics: Vec::new(),
        }
    }

    /// Adds a metric.
    pub fn with(mut self, metric: &'static str, value: f64) -> Self {
        self.metrics.push((metric, value));
        self
    }
}

impl Measured {
    fn metrics(&self) -> Vec<(&'static str, f64)> {
        match self {
            Measured::E2e(r) => r.metrics(),
            Measured::Memory(r) => r.metrics(),
            Measured::Store(r) => r.metrics.clone(),
        }
    }

    fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Measured::E2e(r) = self {
            if r.timed_out {
                out.push(format!(
                    "{}: timed out with {} of {} deliveries missing ({} events incomplete)",
                    r.server, r.missing, r.expected_deliveries, r.incomplete_events
                ));
            }
            if r.errors > 0 {
                out.push(format!(
                    "{}: {} error frames, first: {}",
                    r.server,
                    r.errors,
                    r.first_errors.first().map(String::as_str).unwrap_or("-")
                ));
            }
            if !r.setup_settled {
                out.push(format!(
                    "{}: the server was still sending join frames when the measurement began",
                    r.server
                ));
            }
        }
        out
    }
}

/// One server's side of a case: measured, or why not.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// The results, when the run worked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Measured>,
    /// What stopped the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the run did not happen, when that is not a failure (no Redis, bootstraps not
    /// built): a smoke run on a machine without the backend still passes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl Side {
    /// A run that produced results.
    pub fn measured(m: Measured) -> Self {
        Self {
            result: Some(m),
            error: None,
            skipped: None,
        }
    }

    /// A run that did not happen, for `reason` (not a failure).
    pub fn skipped(reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self {
            result: None,
            error: None,
            skipped: Some(reason),
        }
    }

    /// A run that could not measure.
    pub fn failed(e: &BenchError) -> Self {
        eprintln!("    failed: {e}");
        Self {
            result: None,
            error: Some(e.to_string()),
            skipped: None,
        }
    }
}

/// One workload measured on both servers.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    /// The case (e.g. `paced`).
    pub name: String,
    /// The gateway.
    pub ours: Side,
    /// The socket.io relay.
    pub baseline: Side,
    /// `ours / baseline` per metric, where both exist.
    pub ratios: BTreeMap<String, f64>,
}

impl Case {
    /// Compares both sides.
    pub fn new(name: &str, ours: Side, baseline: Side) -> Self {
        let mut ratios = BTreeMap::new();
        if let (Some(o), Some(b)) = (&ours.result, &baseline.result) {
            for ((metric, ov), (_, bv)) in o.metrics().into_iter().zip(b.metrics()) {
                if let Some(r) = ratio(ov, bv) {
                    ratios.insert(metric.to_owned(), r);
                }
            }
        }
        Self {
            name: name.to_owned(),
            ours,
            baseline,
            ratios,
        }
    }

    /// The E2E runs of both sides, when both exist (for the histogram).
    pub fn e2e_pair(&self) -> (Option<&E2eRun>, Option<&E2eRun>) {
        fn pick(s: &Side) -> Option<&E2eRun> {
            match &s.result {
                Some(Measured::E2e(r)) => Some(r),
                _ => None,
            }
        }
        (pick(&self.ours), pick(&self.baseline))
    }
}

/// A table cell: one decimal, or three significant digits below 10 (sub-millisecond
/// latencies of the store-level scenarios would otherwise all print as 0.0).
fn fmt_value(v: f64) -> String {
    if v != 0.0 && v.abs() < 10.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.1}")
    }
}

/// One scenario's results.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario (`seed-load`, `rooms`, …).
    pub scenario: &'static str,
    /// Whether sizes were the tiny smoke ones.
    pub smoke: bool,
    /// The parameters.
    pub params: serde_json::Value,
    /// The cases.
    pub cases: Vec<Case>,
    /// The column headers of both sides: ours, then the baseline.
    pub sides: [&'static str; 2],
    /// Verdicts and remarks printed under the table (e.g. a goal met or missed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Report {
    /// A report of `cases` run with `params`.
    pub fn new(
        scenario: &'static str,
        smoke: bool,
        params: &impl Serialize,
        cases: Vec<Case>,
    ) -> Self {
        Self {
            scenario,
            smoke,
            params: serde_json::to_value(params).unwrap_or_default(),
            cases,
            sides: ["gateway", "socket.io relay"],
            notes: Vec::new(),
        }
    }

    /// The same report with other column headers (store-level scenarios).
    pub fn sides(mut self, ours: &'static str, baseline: &'static str) -> Self {
        self.sides = [ours, baseline];
        self
    }

    /// The stdout table: one block per case, a row per metric with both servers and the ratio.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n== {}{}  {}",
            self.scenario,
            if self.smoke { " (smoke)" } else { "" },
            self.params
        );
        for case in &self.cases {
            let _ = writeln!(
                out,
                "-- {}\n{:<26} {:>14} {:>16} {:>8}",
                case.name, "metric", self.sides[0], self.sides[1], "ratio"
            );
            let ours = case.ours.result.as_ref().map(Measured::metrics);
            let base = case.baseline.result.as_ref().map(Measured::metrics);
            let names: Vec<&str> = ours
                .as_ref()
                .or(base.as_ref())
                .map(|m| m.iter().map(|(n, _)| *n).collect())
                .unwrap_or_default();
            for (i, name) in names.iter().enumerate() {
                let cell = |m: &Option<Vec<(&str, f64)>>| {
                    m.as_ref()
                        .map(|m| m[i].1)
                        .filter(|v| v.is_finite())
                        .map_or_else(|| "-".to_owned(), fmt_value)
                };
                let r = case
                    .ratios
                    .get(*name)
                    .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
                let _ = writeln!(
                    out,
                    "{:<26} {:>14} {:>16} {:>8}",
                    name,
                    cell(&ours),
                    cell(&base),
                    r
                );
            }
            for (i, side) in [&case.ours, &case.baseline].into_iter().enumerate() {
                if let Some(e) = &side.error {
                    let _ = writeln!(out, "!! failed: {e}");
                }
                // Both sides usually skip for the same reason: say it once.
                if let Some(r) = &side.skipped
                    && (i == 0 || case.ours.skipped.as_ref() != Some(r))
                {
                    let _ = writeln!(out, "skipped: {r}");
                }
                for w in side.result.iter().flat_map(Measured::warnings) {
                    let _ = writeln!(out, "!! {w}");
                }
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "{note}");
        }
        out
    }

    /// Writes `<dir>/<scenario>.json`.
    pub fn write_json(&self, dir: &Path) -> Result<()> {
        let path = dir.join(format!("{}.json", self.scenario));
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&path, text).map_err(|source| BenchError::Io {
            what: format!("write {}", path.display()),
            source,
        })
    }
}
