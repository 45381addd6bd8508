//! The measured phase common to the end-to-end scenarios: wait (bounded) until every expected
//! delivery arrived, then turn the clients' receipts into latencies.
//!
//! Latencies are per event: **confirmed** is submit → the sender's `event:confirmed`;
//! **last receiver** is submit → the moment the last other client of its session had the
//! event (only for events every receiver got). Timestamps are taken by the bench's own readers
//! on one clock, so both servers are measured identically.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::client::{Client, Kind, Plan, Progress};
use crate::stats::Summary;
use crate::target::{Layout, Setup};

/// One end-to-end run against one server.
#[derive(Debug, Clone, Serialize)]
pub struct E2eRun {
    /// Which server.
    pub server: &'static str,
    /// Clients connected.
    pub clients: usize,
    /// Sessions (rooms).
    pub sessions: usize,
    /// Events submitted.
    pub events: usize,
    /// Set-up (table, connects, joins, quiet) in ms.
    pub setup_ms: f64,
    /// Whether the server went quiet after the joins before the measurement.
    pub setup_settled: bool,
    /// Confirmations plus broadcasts expected.
    pub expected_deliveries: u64,
    /// First receipts that arrived.
    pub deliveries: u64,
    /// Expected receipts that never arrived within the deadline.
    pub missing: u64,
    /// Events not seen by every receiver (or not confirmed).
    pub incomplete_events: u64,
    /// Receipts of an event a client already had.
    pub duplicates: u64,
    /// Error frames received (`event:error`, `error`).
    pub errors: u64,
    /// The first few error frames, verbatim.
    pub first_errors: Vec<String>,
    /// Sockets that ended during the run.
    pub closed_sockets: u64,
    /// Whether the wait ran out before every delivery arrived.
    pub timed_out: bool,
    /// First submit → last delivery, in ms (the seed's "every client has every result").
    pub all_seen_ms: f64,
    /// Deliveries (confirmations + broadcasts) per second over `all_seen_ms`.
    pub deliveries_per_sec: f64,
    /// Submit → `event:confirmed`.
    pub confirmed: Summary,
    /// Submit → last receiver.
    pub last_receiver: Summary,
    /// The server's RSS after the run, in KiB.
    pub server_rss_kib: Option<u64>,
    /// Submit → last receiver of every complete event, in ms (for the histogram).
    pub last_receiver_samples_ms: Vec<f64>,
}

impl E2eRun {
    /// The metrics compared between the servers. A metric that does not exist in this run is
    /// NaN (shown as `-`, `null` in JSON, and no ratio): "all seen" when something is missing,
    /// a latency when no event was complete.
    pub fn metrics(&self) -> Vec<(&'static str, f64)> {
        let or_nan = |ok: bool, v: f64| if ok { v } else { f64::NAN };
        let c = &self.confirmed;
        let l = &self.last_receiver;
        let (has_c, has_l) = (c.count > 0, l.count > 0);
        vec![
            ("all seen (ms)", or_nan(self.missing == 0, self.all_seen_ms)),
            ("deliveries/s", self.deliveries_per_sec),
            ("confirmed p50 (ms)", or_nan(has_c, c.p50_ms)),
            ("confirmed p95 (ms)", or_nan(has_c, c.p95_ms)),
            ("confirmed p99 (ms)", or_nan(has_c, c.p99_ms)),
            ("confirmed max (ms)", or_nan(has_c, c.max_ms)),
            ("last receiver p50 (ms)", or_nan(has_l, l.p50_ms)),
            ("last receiver p95 (ms)", or_nan(has_l, l.p95_ms)),
            ("last receiver p99 (ms)", or_nan(has_l, l.p99_ms)),
            ("last receiver max (ms)", or_nan(has_l, l.max_ms)),
            (
                "complete events",
                (self.events as u64 - self.incomplete_events) as f64,
            ),
            ("missing deliveries", self.missing as f64),
            ("errors", self.errors as f64),
        ]
    }
}

/// Confirmations plus broadcasts the plan should produce: each event goes to its sender once
/// and to every other client of its session once.
pub fn expected_deliveries(plan: &Plan, layout: Layout) -> u64 {
    plan.events.len() as u64 * layout.clients_per_session as u64
}

/// Waits until `expected` deliveries arrived or `deadline`; returns whether it timed out.
pub async fn wait_for(progress: &Progress, expected: u64, deadline: Instant) -> bool {
    loop {
        if progress.deliveries.load(Ordering::Relaxed) >= expected {
            return false;
        }
        if Instant::now() >= deadline {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Everything the analysis needs from a finished measured phase.
pub struct Finished<'a> {
    /// The server's name.
    pub server: &'static str,
    /// The table layout.
    pub layout: Layout,
    /// The events.
    pub plan: &'a Plan,
    /// The clients, by index.
    pub clients: &'a [Arc<Client>],
    /// When each event was submitted (by index; `None` if its send failed).
    pub submitted: &'a [Option<Instant>],
    /// Run-wide counters.
    pub progress: &'a Progress,
    /// How the set-up went.
    pub setup: Setup,
    /// Whether the wait ran out.
    pub timed_out: bool,
    /// The server's RSS after the run.
    pub server_rss_kib: Option<u64>,
}

/// Turns the receipts into an [`E2eRun`].
pub fn analyze(f: Finished<'_>) -> E2eRun {
    let n = f.plan.events.len();
    let mut confirmed_at: Vec<Option<Instant>> = vec![None; n];
    let mut last_at: Vec<Option<Instant>> = vec![None; n];
    let mut receivers: Vec<u64> = vec![0; n];
    let mut deliveries = 0u64;
    let mut duplicates = 0u64;
    let mut first_errors = Vec::new();
    let mut last_delivery: Option<Instant> = None;
    for client in f.clients {
        let log = client.log.lock().expect("log lock");
        duplicates += log.duplicates;
        if first_errors.len() < 5 {
            first_errors.extend(log.errors.iter().take(5 - first_errors.len()).cloned());
        }
        for r in &log.records {
            let e = r.event as usize;
            deliveries += 1;
            last_delivery = last_delivery.max(Some(r.at));
            match r.kind {
                Kind::Confirmed => confirmed_at[e] = Some(r.at),
                Kind::Applied => {
                    receivers[e] += 1;
                    last_at[e] = last_at[e].max(Some(r.at));
                }
            }
        }
    }
    let others = f.layout.clients_per_session.saturating_sub(1) as u64;
    let mut confirmed = Vec::with_capacity(n);
    let mut last = Vec::with_capacity(n);
    let mut incomplete = 0u64;
    for e in 0..n {
        let Some(sent) = f.submitted[e] else {
            incomplete += 1;
            continue;
        };
        if let Some(c) = confirmed_at[e] {
            confirmed.push(c.saturating_duration_since(sent));
        }
        let complete = confirmed_at[e].is_some() && receivers[e] == others;
        if !complete {
            incomplete += 1;
        }
        if receivers[e] == others {
            // With a single-client session the sender's confirmation is the last receipt.
            let at = if others == 0 {
                confirmed_at[e]
            } else {
                last_at[e]
            };
            if let Some(at) = at {
                last.push(at.saturating_duration_since(sent));
            }
        }
    }
    let first_submit = f.submitted.iter().flatten().min().copied();
    let all_seen = match (first_submit, last_delivery) {
        (Some(a), Some(b)) => b.saturating_duration_since(a),
        _ => Duration::ZERO,
    };
    let expected = expected_deliveries(f.plan, f.layout);
    let secs = all_seen.as_secs_f64();
    E2eRun {
        server: f.server,
        clients: f.clients.len(),
        sessions: f.layout.sessions,
        events: n,
        setup_ms: ms(f.setup.elapsed),
        setup_settled: f.setup.settled,
        expected_deliveries: expected,
        deliveries,
        missing: expected.saturating_sub(deliveries),
        incomplete_events: incomplete,
        duplicates,
        errors: f.progress.errors.load(Ordering::Relaxed),
        first_errors,
        closed_sockets: f.progress.closed.load(Ordering::Relaxed),
        timed_out: f.timed_out,
        all_seen_ms: ms(all_seen),
        deliveries_per_sec: if secs > 0.0 {
            deliveries as f64 / secs
        } else {
            0.0
        },
        confirmed: Summary::of(&confirmed),
        last_receiver: Summary::of(&last),
        server_rss_kib: f.server_rss_kib,
        last_receiver_samples_ms: last.iter().map(|d| ms(*d)).collect(),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}
