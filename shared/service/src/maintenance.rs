//! The session lifecycle: backfill, compaction, idle release, session end and retention
//! (ARCHITECTURE.md, "Data flow").
//!
//! - **Backfill** copies events the archive lacks from the Redis hot log (an archive write that
//!   failed or timed out), so the archive holds `1..=head` exactly once. A session whose
//!   missing events left the hot log raises `BackfillFailures`; its `archivedThrough` is stuck
//!   below the hole, and since trimming only ever goes below `archivedThrough`, it is never
//!   trimmed further.
//! - **Compaction** (under the session's lease, so two runs never overlap): backfill, then fold
//!   the previous snapshot and the archived events after it into a new snapshot once more than
//!   `compaction_threshold` events accumulated, then trim the hot log below the snapshot keeping
//!   `hot_tail` events, and prune the archive when a retention period is set. The hot log of any
//!   session is so bounded by the tail plus the threshold, however long the session.
//! - **Idle release**: a session without events for `idle_release_after` gets a final backfill
//!   and snapshot, then its hot state is released, only if no event arrived meanwhile; the next
//!   subscribe or submit rebuilds it from snapshot and archive.
//! - **Session end**: the session is marked ended (commits are refused from that moment), gets
//!   its final backfill and snapshot, and its hot state is released; it is then served from the
//!   snapshot and the archive.
//! - [`sweep`] runs all of it for the sessions that need it, found through the archive's index
//!   and the unarchived marks (never a scan of every session): the scheduled `compaction`
//!   Lambda and the local gateway's timer call it.

use std::time::{Duration, Instant};

use dlab_core::compaction::{CompactionReport, Folder};
use dlab_core::ids::{Sequence, SessionId};
use dlab_store::model::{GameSession, SessionStatus, now_ms};
use dlab_store::{ArchiveError, StoreError};
use serde::Serialize;
use tracing::{error, info, warn};

use crate::deps::Deps;
use crate::error::ServiceError;
use crate::metrics::{self, Unit};
use crate::pipeline::RangeReader;

/// Why a compaction runs: it decides the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Every `compaction_threshold`-th event, right after its commit.
    Inline,
    /// The schedule (the `compaction` Lambda, the local gateway's timer).
    Scheduled,
    /// `POST /sessions/{id}/compact`: a snapshot of any new events.
    Manual,
    /// Before an idle release or a session end: a snapshot of any new events.
    Final,
}

impl Trigger {
    /// Events since the last snapshot that make a snapshot due.
    fn threshold(self, deps: &Deps) -> u64 {
        match self {
            Trigger::Inline | Trigger::Scheduled => {
                deps.settings.lifecycle.compaction_threshold.max(1) + 1
            }
            Trigger::Manual | Trigger::Final => 1,
        }
    }
}

/// What a backfill of one session found and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackfillOutcome {
    /// The session's head (0 without hot state).
    pub head: Sequence,
    /// The archive's contiguous end after the run.
    pub archived_through: Sequence,
    /// Events copied into the archive.
    pub copied: u64,
    /// Whether the archive holds `1..=head`.
    pub complete: bool,
    /// Whether the hot state was missing (nothing to copy from).
    pub no_hot_state: bool,
}

/// Copies what the archive lacks from the hot log; see the module docs.
pub async fn backfill_session(
    deps: &Deps,
    session: &SessionId,
) -> Result<BackfillOutcome, ServiceError> {
    let archive_err = |e: ArchiveError| match e {
        ArchiveError::Store(s) => ServiceError::Unavailable(s),
        other => ServiceError::Fenced(other),
    };
    let head = match deps.log.head(session).await {
        Ok(h) => h,
        Err(StoreError::HotStateMissing(_)) => {
            let through = deps
                .archive
                .archived_through(session)
                .await
                .map_err(archive_err)?;
            return Ok(BackfillOutcome {
                head: Sequence::ZERO,
                archived_through: through,
                copied: 0,
                complete: true,
                no_hot_state: true,
            });
        }
        Err(e) => return Err(e.into()),
    };
    let mut through = deps
        .archive
        .archived_through(session)
        .await
        .map_err(archive_err)?;
    let mut copied = 0;
    let mut lost = false;
    if through < head {
        let mut cursor = through;
        while cursor < head {
            let page = match deps
                .log
                .read(session, cursor, Some(head), deps.settings.read_page)
                .await
            {
                Ok(page) => page,
                Err(StoreError::BelowFloor { floor, .. }) => {
                    // The hot log no longer holds these: they can never be archived.
                    error!(session = %session, missing_from = cursor.next().get(),
                           missing_to = floor.get().saturating_sub(1),
                           "backfill cannot complete the archive: the hot log no longer holds these events");
                    lost = true;
                    cursor = Sequence(floor.get().saturating_sub(1));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let Some(last) = page.last().map(|e| e.sequence) else {
                break;
            };
            for event in &page {
                deps.archive.insert(event).await.map_err(archive_err)?;
                copied += 1;
            }
            cursor = last;
        }
        through = deps
            .archive
            .archived_through(session)
            .await
            .map_err(archive_err)?;
    }
    let complete = through >= head;
    if complete {
        if let Err(e) = deps.log.clear_unarchived(session).await {
            warn!(session = %session, error = %dlab_store::Chain(&e), "could not clear the backfill mark");
        }
    } else {
        lost = true;
    }
    if lost {
        metrics::emit(metrics::BACKFILL_FAILURES, 1.0, Unit::Count, Some(session));
    }
    if copied > 0 {
        metrics::emit(
            metrics::BACKFILLED_EVENTS,
            copied as f64,
            Unit::Count,
            Some(session),
        );
        info!(session = %session, copied, head = head.get(), archived_through = through.get(), "backfill copied events into the archive");
    }
    metrics::emit(
        metrics::ARCHIVE_LAG,
        head.get().saturating_sub(through.get()) as f64,
        Unit::Count,
        Some(session),
    );
    Ok(BackfillOutcome {
        head,
        archived_through: through,
        copied,
        complete,
        no_hot_state: false,
    })
}

/// What a compaction did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum CompactionOutcome {
    /// It ran: the seed's counts (`spaceSaved` = bytes removed from the hot log).
    Done(CompactionReport),
    /// Another run holds the session's lease.
    Busy,
    /// The session has no hot state (released or ended): nothing to compact.
    NoHotState,
}

/// Compacts one session under its lease; see the module docs.
pub async fn compact_session(
    deps: &Deps,
    session: &SessionId,
    trigger: Trigger,
) -> Result<CompactionOutcome, ServiceError> {
    let Some(token) = deps
        .log
        .try_lease(session, deps.settings.lifecycle.lease_ttl)
        .await?
    else {
        return Ok(CompactionOutcome::Busy);
    };
    let result = compact_locked(deps, session, trigger).await;
    if let Err(e) = deps.log.release_lease(session, &token).await {
        warn!(session = %session, error = %dlab_store::Chain(&e), "could not give the compaction lease back; it expires");
    }
    result
}

async fn compact_locked(
    deps: &Deps,
    session: &SessionId,
    trigger: Trigger,
) -> Result<CompactionOutcome, ServiceError> {
    let backfill = backfill_session(deps, session).await?;
    if backfill.no_hot_state {
        return Ok(CompactionOutcome::NoHotState);
    }
    let through = backfill.archived_through;
    let target = backfill.head.min(through);
    let latest = deps.snapshots.latest(session).await?.filter(|s| {
        let ok = s.verify();
        if !ok {
            error!(session = %session, up_to = s.up_to_sequence.get(), "latest snapshot fails its checksum; folding from the start");
        }
        ok
    });
    let base = latest.as_ref().map_or(Sequence::ZERO, |s| s.up_to_sequence);
    let mut report = CompactionReport {
        original_event_count: 0,
        compacted_event_count: 0,
        snapshot_created: false,
        space_saved: 0,
    };
    let mut snapshot_upto = base;
    if target.get().saturating_sub(base.get()) >= trigger.threshold(deps) {
        let mut folder = Folder::start(session, None, latest.as_ref())
            .map_err(|e| ServiceError::Unavailable(StoreError::corrupt("snapshot", "fold", e)))?;
        let mut reader = RangeReader::new(deps, session, base, target);
        while let Some(page) = reader.next_page(deps.settings.read_page).await? {
            for event in &page {
                folder
                    .push(event)
                    .map_err(|e| ServiceError::ArchiveCorrupt {
                        session: session.clone(),
                        sequence: event.sequence,
                        source: match e {
                            dlab_core::compaction::FoldError::Apply { source, .. } => source,
                            other => dlab_core::state::ApplyError::Rejected(other.to_string()),
                        },
                    })?;
            }
        }
        let (snapshot, folded) = folder.finish(now_ms());
        deps.snapshots.put(&snapshot).await?;
        snapshot_upto = snapshot.up_to_sequence;
        report = CompactionReport {
            space_saved: 0,
            ..folded
        };
    }
    // Trim below the snapshot, keeping the tail, and never at or above an unarchived event.
    let keep_from = snapshot_upto
        .min(through)
        .get()
        .saturating_sub(deps.settings.lifecycle.hot_tail)
        + 1;
    if keep_from > 1 {
        let trimmed = deps.log.trim_below(session, Sequence(keep_from)).await?;
        report.space_saved = i64::try_from(trimmed.bytes).unwrap_or(i64::MAX);
    }
    if let Some(retention) = deps.settings.lifecycle.archive_retention
        && snapshot_upto.get() > 0
    {
        let older_than =
            now_ms().saturating_sub(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX));
        let pruned = deps
            .archive
            .prune(session, snapshot_upto, older_than)
            .await
            .map_err(|e| match e {
                ArchiveError::Store(s) => ServiceError::Unavailable(s),
                other => ServiceError::Fenced(other),
            })?;
        if pruned > 0 {
            info!(session = %session, pruned, "archive retention pruned events covered by a snapshot");
        }
    }
    metrics::emit(metrics::COMPACTION_RUNS, 1.0, Unit::Count, Some(session));
    metrics::emit(
        metrics::BYTES_SAVED,
        report.space_saved.max(0) as f64,
        Unit::Bytes,
        Some(session),
    );
    info!(session = %session, trigger = ?trigger,
          original_event_count = report.original_event_count,
          compacted_event_count = report.compacted_event_count,
          snapshot_created = report.snapshot_created,
          space_saved = report.space_saved,
          snapshot = snapshot_upto.get(), "compaction");
    Ok(CompactionOutcome::Done(report))
}

/// Waits (bounded) for the session's lease, for the GM routes that must not answer "busy" when
/// a scheduled run happens to hold it for a moment.
async fn compact_waiting(
    deps: &Deps,
    session: &SessionId,
    trigger: Trigger,
) -> Result<CompactionOutcome, ServiceError> {
    for _ in 0..50 {
        match compact_session(deps, session, trigger).await? {
            CompactionOutcome::Busy => tokio::time::sleep(Duration::from_millis(100)).await,
            other => return Ok(other),
        }
    }
    Ok(CompactionOutcome::Busy)
}

/// `POST /sessions/{id}/compact` (the route checks the GM): a snapshot of any new events and
/// the trim, waiting briefly for a scheduled run that holds the lease.
pub async fn compact_now(
    deps: &Deps,
    session: &SessionId,
) -> Result<CompactionOutcome, ServiceError> {
    compact_waiting(deps, session, Trigger::Manual).await
}

/// Releases an idle session's hot state after a final backfill and snapshot, unless its
/// archive is incomplete or an event arrived meanwhile. Returns whether it was released.
pub async fn release_idle(deps: &Deps, session: &SessionId) -> Result<bool, ServiceError> {
    let Some(token) = deps
        .log
        .try_lease(session, deps.settings.lifecycle.lease_ttl)
        .await?
    else {
        return Ok(false);
    };
    let result = release_locked(deps, session).await;
    if let Err(e) = deps.log.release_lease(session, &token).await {
        warn!(session = %session, error = %dlab_store::Chain(&e), "could not give the lease back; it expires");
    }
    result
}

async fn release_locked(deps: &Deps, session: &SessionId) -> Result<bool, ServiceError> {
    let head = match deps.log.head(session).await {
        Ok(h) => h,
        Err(StoreError::HotStateMissing(_)) => {
            note_released(deps, session).await;
            return Ok(false);
        }
        Err(e) => return Err(e.into()),
    };
    match compact_locked(deps, session, Trigger::Final).await? {
        CompactionOutcome::Done(_) => {}
        _ => return Ok(false),
    }
    let backfill = backfill_session(deps, session).await?;
    if !backfill.complete || backfill.head != head {
        warn!(session = %session, head = head.get(), archived_through = backfill.archived_through.get(),
              "idle session kept: its archive is not complete, or an event arrived");
        return Ok(false);
    }
    if !deps.log.release_if_head(session, head).await? {
        info!(session = %session, "idle session kept: an event arrived during its release");
        return Ok(false);
    }
    note_released(deps, session).await;
    info!(session = %session, head = head.get(), "idle session released");
    Ok(true)
}

async fn note_released(deps: &Deps, session: &SessionId) {
    if let Err(e) = deps.archive.set_hot(session, false).await {
        warn!(session = %session, error = %dlab_store::Chain(&e), "could not note the released hot state");
    }
}

/// Ends a session (the route checks the GM): status `ended` first, then commits are refused,
/// then the final backfill and snapshot, then the hot state is released (kept, and logged, if
/// the archive cannot be completed). Idempotent: ending an ended session finishes what an
/// interrupted end left undone.
pub async fn end_session(
    deps: &Deps,
    mut session: GameSession,
) -> Result<GameSession, ServiceError> {
    if session.status != SessionStatus::Ended {
        session.status = SessionStatus::Ended;
        deps.campaigns.update_session(&session).await?;
    }
    deps.log.end_session(&session.id).await?;
    let mut token = None;
    for _ in 0..50 {
        token = deps
            .log
            .try_lease(&session.id, deps.settings.lifecycle.lease_ttl)
            .await?;
        if token.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(token) = token else {
        return Err(ServiceError::Unavailable(StoreError::unavailable(
            "redis",
            "end session",
            "a maintenance run holds the session; retry",
        )));
    };
    let result = async {
        if compact_locked(deps, &session.id, Trigger::Final).await? == CompactionOutcome::NoHotState
        {
            return Ok(());
        }
        let backfill = backfill_session(deps, &session.id).await?;
        if backfill.complete {
            deps.log.release(&session.id).await?;
            note_released(deps, &session.id).await;
        } else {
            error!(session = %session.id, archived_through = backfill.archived_through.get(),
                   head = backfill.head.get(), "ended session kept hot: its archive is incomplete");
        }
        Ok::<(), ServiceError>(())
    }
    .await;
    if let Err(e) = deps.log.release_lease(&session.id, &token).await {
        warn!(session = %session.id, error = %dlab_store::Chain(&e), "could not give the lease back; it expires");
    }
    result?;
    info!(session = %session.id, "session ended");
    Ok(session)
}

/// What one maintenance run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    /// Sessions checked by backfill.
    pub backfilled: u64,
    /// Events copied into the archive.
    pub copied: u64,
    /// Sessions whose archive could not be completed.
    pub backfill_failures: u64,
    /// Sessions compacted (a snapshot made or the hot log trimmed).
    pub compacted: u64,
    /// Snapshots made.
    pub snapshots: u64,
    /// Bytes removed from the hot log.
    pub space_saved: u64,
    /// Idle sessions released.
    pub released: u64,
    /// Sessions whose maintenance failed (logged).
    pub errors: u64,
    /// Whether the run stopped at its deadline with work left.
    pub stopped_early: bool,
}

/// One maintenance run over the sessions that need it, until `deadline`; see the module docs.
pub async fn sweep(deps: &Deps, deadline: Instant) -> SweepReport {
    let mut report = SweepReport::default();
    let lifecycle = &deps.settings.lifecycle;
    let limit = lifecycle.sweep_limit.max(1);
    let now = now_ms();
    // 1. Sessions whose archive writes failed (marked in Redis while MongoDB was down).
    let marked = deps.log.unarchived(limit).await.unwrap_or_else(|e| {
        warn!(error = %dlab_store::Chain(&e), "could not read the backfill marks");
        report.errors += 1;
        Vec::new()
    });
    for session in marked {
        if Instant::now() >= deadline {
            report.stopped_early = true;
            return report;
        }
        count_backfill(
            &mut report,
            session.clone(),
            backfill_session(deps, &session).await,
        );
    }
    // 2. Recently active sessions: backfill, then compact those over the threshold.
    let since = now
        .saturating_sub(u64::try_from(lifecycle.backfill_window.as_millis()).unwrap_or(u64::MAX));
    let mut after: Option<SessionId> = None;
    let mut seen = 0;
    loop {
        let page = match deps
            .archive
            .active_since(since, after.as_ref(), 100.min(limit))
            .await
        {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %dlab_store::Chain(&e), "could not list active sessions");
                report.errors += 1;
                break;
            }
        };
        let Some(last) = page.last().cloned() else {
            break;
        };
        for session in page {
            if Instant::now() >= deadline {
                report.stopped_early = true;
                return report;
            }
            seen += 1;
            match compact_session(deps, &session, Trigger::Scheduled).await {
                Ok(CompactionOutcome::Done(r)) => {
                    report.backfilled += 1;
                    if r.snapshot_created || r.space_saved > 0 {
                        report.compacted += 1;
                    }
                    report.snapshots += u64::from(r.snapshot_created);
                    report.space_saved += r.space_saved.max(0) as u64;
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(session = %session, error = %dlab_store::Chain(&e), "maintenance of a session failed");
                    report.errors += 1;
                }
            }
        }
        if seen >= limit {
            break;
        }
        after = Some(last);
    }
    // 3. Idle sessions: final backfill and snapshot, then release.
    let before = now.saturating_sub(
        u64::try_from(lifecycle.idle_release_after.as_millis()).unwrap_or(u64::MAX),
    );
    match deps.archive.idle_hot(before, limit).await {
        Ok(idle) => {
            for session in idle {
                if Instant::now() >= deadline {
                    report.stopped_early = true;
                    return report;
                }
                match release_idle(deps, &session).await {
                    Ok(true) => report.released += 1,
                    Ok(false) => {}
                    Err(e) => {
                        warn!(session = %session, error = %dlab_store::Chain(&e), "idle release failed");
                        report.errors += 1;
                    }
                }
            }
        }
        Err(e) => {
            warn!(error = %dlab_store::Chain(&e), "could not list idle sessions");
            report.errors += 1;
        }
    }
    info!(
        backfilled = report.backfilled,
        copied = report.copied,
        backfill_failures = report.backfill_failures,
        compacted = report.compacted,
        snapshots = report.snapshots,
        space_saved = report.space_saved,
        released = report.released,
        errors = report.errors,
        "maintenance run"
    );
    report
}

fn count_backfill(
    report: &mut SweepReport,
    session: SessionId,
    outcome: Result<BackfillOutcome, ServiceError>,
) {
    match outcome {
        Ok(o) => {
            report.backfilled += 1;
            report.copied += o.copied;
            report.backfill_failures += u64::from(!o.complete);
        }
        Err(e) => {
            warn!(session = %session, error = %dlab_store::Chain(&e), "backfill failed");
            report.errors += 1;
        }
    }
}

/// The whole `main` of the scheduled `compaction` function: one [`sweep`] per invocation,
/// within the function's remaining time.
#[cfg(feature = "lambda")]
pub async fn run_lambda() -> Result<(), lambda_runtime::Error> {
    use lambda_runtime::{LambdaEvent, service_fn};
    crate::lambda::init_tracing();
    let start = crate::lambda::cold_start().await?;
    let absent: std::sync::Arc<dyn dlab_store::Notifier> =
        std::sync::Arc::new(dlab_store::absent::Absent::new("@connections notifier"));
    let deps = Deps::from_config(&start.config, &start.sdk, absent).await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            // Stop 10 s before the function's own deadline.
            let left = event
                .context
                .deadline()
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default()
                .saturating_sub(Duration::from_secs(10));
            let report = sweep(deps, Instant::now() + left).await;
            Ok::<_, lambda_runtime::Error>(serde_json::to_value(report)?)
        },
    ))
    .await
}
