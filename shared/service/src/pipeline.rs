//! The shared steps of every use case that touches a session's log: keeping the hot state
//! present (rebuilding it from snapshot + archive, never from an archive with holes), the one
//! publish path (commit → archive write → confirm → broadcast), contiguous range reads from the
//! hot log and the archive, and posting frames.
//!
//! Order inside a publish (invariant 3): commit (hot log) → archive write (bounded wait) →
//! confirm → broadcast. The archive write is awaited, never spawned: a Lambda freezes after it
//! returns. If the write fails or times out the commit stands and backfill copies it later —
//! unless the hot log is not durable ([`ArchiveMode::ConfirmAfterArchive`], the embedded local
//! run): then the commit waits for the archive, and a failed write undoes it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use dlab_core::changes::parse_changes;
use dlab_core::dice::{self, DICE_ROLL_TYPE, DiceRng};
use dlab_core::event::GameEvent;
use dlab_core::ids::{ConnectionId, Sequence, SessionId};
use dlab_core::protocol::{RequestId, ServerFrame};
use dlab_core::state::GameSessionState;
use dlab_store::{
    ArchiveError, CommitError, CommitRequest, Committed, PostOutcome, Rehydration, StoreError,
};
use futures::StreamExt;
use rand::TryRngCore;
use rand::rngs::OsRng;
use tracing::{error, info, warn};

use crate::config::ArchiveMode;
use crate::deps::Deps;
use crate::error::ServiceError;
use crate::metrics;

/// How often a caller that found another rebuild of the same session in progress re-reads
/// before giving up with `unavailable`.
const REBUILD_ATTEMPTS: u32 = 20;
/// First wait between those re-reads; doubled each time up to [`REBUILD_MAX_WAIT`].
const REBUILD_FIRST_WAIT: Duration = Duration::from_millis(20);
/// Longest wait between two re-reads.
const REBUILD_MAX_WAIT: Duration = Duration::from_millis(250);

/// How often one process notes a session's activity in the archive index at most.
const ACTIVITY_EVERY_MS: u64 = 60_000;
/// Sessions the activity cache remembers before it forgets the oldest notes.
const ACTIVITY_CACHE_SESSIONS: usize = 10_000;

/// When this process last noted each session's activity in the archive's index (the index that
/// backfill and idle release search), so a busy session costs one index write a minute, not
/// one per event.
#[derive(Debug, Default)]
pub struct ActivityCache {
    last: std::sync::Mutex<std::collections::HashMap<SessionId, u64>>,
}

impl ActivityCache {
    /// Whether `session`'s activity at `now` should be written (and remembers it if so).
    fn due(&self, session: &SessionId, now: u64) -> bool {
        let Ok(mut last) = self.last.lock() else {
            return true;
        };
        if last
            .get(session)
            .is_some_and(|t| now.saturating_sub(*t) < ACTIVITY_EVERY_MS)
        {
            return false;
        }
        if last.len() >= ACTIVITY_CACHE_SESSIONS {
            last.retain(|_, t| now.saturating_sub(*t) < ACTIVITY_EVERY_MS);
        }
        last.insert(session.clone(), now);
        true
    }
}

/// Notes the session's activity in the archive index (at most about once a minute per
/// process); a failure is logged: the next event tries again, and the unarchived marks cover
/// an outage.
async fn note_activity(deps: &Deps, session: &SessionId, at: u64) {
    if deps.activity.due(session, at)
        && let Err(e) = deps.archive.touch(session, at).await
    {
        warn!(session = %session, error = %dlab_store::Chain(&e), "could not note the session's activity");
    }
}

/// Rebuilds a session's hot state from its latest snapshot and the archive after it, unless
/// it exists (or another handler is rebuilding it): the store writes only while the hot state
/// is absent, so a late rebuild from an older archive read can never erase a commit.
///
/// The archive must be contiguous from the snapshot to its end: a hole means events were never
/// archived (backfill has not copied them yet), and rebuilding over it would issue their
/// sequences again. On a hole this refuses with [`ServiceError::ArchiveHole`] and logs the
/// missing range. Only the last `rehydrate_window` events go back into the hot window (the
/// archive serves older ones), so memory stays bounded however long the session is.
pub async fn rehydrate(deps: &Deps, session: &SessionId) -> Result<Rehydration, ServiceError> {
    // An ended session is served from its snapshot and archive, never brought back.
    if let Some(doc) = deps.campaigns.session(session).await?
        && doc.status == dlab_store::model::SessionStatus::Ended
    {
        return Err(ServiceError::SessionEnded(session.clone()));
    }
    let snapshot = deps.snapshots.latest(session).await?;
    let mut state = match snapshot {
        Some(s) if s.verify() => s.state,
        Some(s) => {
            error!(session = %session, up_to = s.up_to_sequence.get(),
                   "latest snapshot fails its checksum; rebuilding from the start of the archive");
            GameSessionState::new(session.clone(), None)
        }
        None => GameSessionState::new(session.clone(), None),
    };
    let mut after = state.last_event_sequence;
    let window = deps.settings.rehydrate_window.max(1);
    let mut tail: VecDeque<GameEvent> = VecDeque::with_capacity(window.min(4096));
    loop {
        let page = deps
            .archive
            .read(session, after, None, deps.settings.read_page)
            .await
            .map_err(archive_error)?;
        if page.is_empty() {
            break;
        }
        for event in page {
            if event.sequence != after.next() {
                return Err(hole(session, after.next(), event.sequence, "rebuild"));
            }
            if let Err(source) = state.apply(&event) {
                error!(session = %session, seq = event.sequence.get(), error = %source,
                       "archived event does not apply; refusing to rebuild the hot state");
                return Err(ServiceError::ArchiveCorrupt {
                    session: session.clone(),
                    sequence: event.sequence,
                    source,
                });
            }
            after = event.sequence;
            if tail.len() == window {
                tail.pop_front();
            }
            tail.push_back(event);
        }
    }
    let ids = deps.archive.ids(session).await.map_err(archive_error)?;
    let tail: Vec<GameEvent> = tail.into();
    let outcome = deps.log.rehydrate(&state, &tail, &ids).await?;
    match outcome {
        Rehydration::Rebuilt => {
            warn!(session = %session, head = state.last_event_sequence.get(),
                  "session rehydrated from snapshot and archive");
            if let Err(e) = deps.archive.set_hot(session, true).await {
                warn!(session = %session, error = %dlab_store::Chain(&e), "could not note the rebuilt hot state");
            }
        }
        Rehydration::AlreadyPresent | Rehydration::Busy => {
            info!(session = %session, outcome = ?outcome,
                  "another handler rebuilt (or is rebuilding) the hot state; re-reading")
        }
    }
    Ok(outcome)
}

/// An error for a hole from `from` up to (not including) `next_present`, logged once here.
fn hole(
    session: &SessionId,
    from: Sequence,
    next_present: Sequence,
    during: &'static str,
) -> ServiceError {
    let to = Sequence(next_present.get().saturating_sub(1).max(from.get()));
    error!(session = %session, missing_from = from.get(), missing_to = to.get(), during,
           "the archive has a hole: refusing to serve or rebuild across it until backfill closes it");
    ServiceError::ArchiveHole {
        session: session.clone(),
        from,
        to,
    }
}

fn archive_error(e: ArchiveError) -> ServiceError {
    match e {
        ArchiveError::Store(s) => ServiceError::Unavailable(s),
        other => ServiceError::Fenced(other),
    }
}

/// Makes sure the session's hot state exists, rebuilding it when it is missing. When another
/// handler is rebuilding it at the same moment this one waits and re-reads (bounded), so
/// concurrent rebuilds never erase each other's or a commit's work.
pub async fn ensure_hot(deps: &Deps, session: &SessionId) -> Result<(), ServiceError> {
    let mut wait = REBUILD_FIRST_WAIT;
    for _ in 0..REBUILD_ATTEMPTS {
        match deps.log.head(session).await {
            Ok(_) => return Ok(()),
            Err(StoreError::HotStateMissing(_)) => {}
            Err(e) => return Err(e.into()),
        }
        if rehydrate(deps, session).await? == Rehydration::Rebuilt {
            return Ok(());
        }
        match deps.log.head(session).await {
            Ok(_) => return Ok(()),
            Err(StoreError::HotStateMissing(_)) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(REBUILD_MAX_WAIT);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::HotStateMissing(session.clone()).into())
}

/// The head of a session, rebuilding the hot state when it is missing. An ended session's head
/// is its archive's end: its hot state is released and never rebuilt.
pub async fn head(deps: &Deps, session: &SessionId) -> Result<Sequence, ServiceError> {
    match deps.log.head(session).await {
        Err(StoreError::HotStateMissing(_)) => match ensure_hot(deps, session).await {
            Ok(()) => Ok(deps.log.head(session).await?),
            Err(ServiceError::SessionEnded(_)) => deps
                .archive
                .archived_through(session)
                .await
                .map_err(archive_error),
            Err(e) => Err(e),
        },
        other => Ok(other?),
    }
}

/// The lowest sequence replayable from the hot log or the archive: the archive's first event
/// (1 unless a retention period pruned it) when the archive reaches up to the hot window, else
/// the hot window's floor. An ended session is the archive alone.
pub async fn floor(deps: &Deps, session: &SessionId) -> Result<Sequence, ServiceError> {
    let hot_floor = match deps.log.floor(session).await {
        Ok(f) => Some(f),
        Err(StoreError::HotStateMissing(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if hot_floor.is_some_and(|f| f.get() <= 1) {
        return Ok(Sequence(1));
    }
    let pruned = deps
        .archive
        .pruned_through(session)
        .await
        .map_err(archive_error)?;
    let archive_floor = pruned.next();
    let Some(hot_floor) = hot_floor else {
        return Ok(archive_floor);
    };
    if hot_floor <= archive_floor {
        return Ok(hot_floor);
    }
    let archived = deps
        .archive
        .archived_through(session)
        .await
        .map_err(archive_error)?;
    Ok(if archived.next() >= hot_floor {
        archive_floor
    } else {
        hot_floor
    })
}

/// The commit step of [`publish`] alone, without confirm or broadcast (seeding and tests;
/// every route and submit publishes): atomic commit (rebuilding the hot state and retrying
/// once when it is gone), then the archive write with a bounded wait. A sequence collision in the archive
/// fences the session: its hot state is dropped so the next commit rebuilds it from the
/// archive.
pub async fn commit(deps: &Deps, request: CommitRequest) -> Result<Committed, ServiceError> {
    if deps.settings.archive_mode == ArchiveMode::ConfirmAfterArchive {
        // A task of its own, so the caller going away (an HTTP client that disconnects drops
        // its handler's future) cannot cut the commit off between the hot log and the archive,
        // or skip the undo of a failed write. The session's turn is held across both: its next
        // commit waits, so a failed write is undone before any later event can land above it.
        let deps = deps.clone();
        let session = request.event.session_id.clone();
        return tokio::spawn(async move {
            let turn = deps.commit_locks.turn(&session);
            let _held = turn.lock().await;
            commit_unlocked(&deps, request).await
        })
        .await
        .map_err(ServiceError::CommitTask)?;
    }
    commit_unlocked(deps, request).await
}

/// One async mutex per session for [`ArchiveMode::ConfirmAfterArchive`]: a session's commit
/// and its archive write take turns; other sessions never wait for it. The map holds weak
/// references, so a session's entry goes once no commit holds or waits for it (dead entries
/// are swept as the map grows).
#[derive(Debug, Default)]
pub struct CommitLocks {
    turns: std::sync::Mutex<CommitTurns>,
}

#[derive(Debug, Default)]
struct CommitTurns {
    by_session: std::collections::HashMap<SessionId, std::sync::Weak<tokio::sync::Mutex<()>>>,
    /// Size at which the next sweep of dead entries runs (doubles with the live count).
    sweep_at: usize,
}

/// Entries the map holds before its first sweep.
const COMMIT_LOCKS_FIRST_SWEEP: usize = 1024;

impl CommitLocks {
    /// The session's turn (lock it to commit).
    pub fn turn(&self, session: &SessionId) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        let mut turns = self
            .turns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(live) = turns
            .by_session
            .get(session)
            .and_then(std::sync::Weak::upgrade)
        {
            return live;
        }
        let fresh = std::sync::Arc::new(tokio::sync::Mutex::new(()));
        turns
            .by_session
            .insert(session.clone(), std::sync::Arc::downgrade(&fresh));
        if turns.by_session.len() >= turns.sweep_at.max(COMMIT_LOCKS_FIRST_SWEEP) {
            turns.by_session.retain(|_, turn| turn.strong_count() > 0);
            turns.sweep_at = (turns.by_session.len() * 2).max(COMMIT_LOCKS_FIRST_SWEEP);
        }
        fresh
    }

    /// Sessions with an entry (live or not yet swept), for tests.
    pub fn len(&self) -> usize {
        self.turns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .by_session
            .len()
    }

    /// Whether no session has an entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

async fn commit_unlocked(deps: &Deps, request: CommitRequest) -> Result<Committed, ServiceError> {
    let started = Instant::now();
    let session = request.event.session_id.clone();
    let committed = match deps.log.commit(request.clone()).await {
        Err(CommitError::HotStateMissing(_)) => {
            ensure_hot(deps, &session).await?;
            deps.log.commit(request).await?
        }
        other => other?,
    };
    // A duplicate's original is archived again too: idempotent, and it heals an original
    // whose first archive write timed out.
    if let Some(event) = &committed.event {
        archive(deps, event).await?;
    }
    metrics::emit(
        metrics::COMMIT_LATENCY,
        started.elapsed().as_secs_f64() * 1000.0,
        metrics::Unit::Milliseconds,
        None,
    );
    Ok(committed)
}

async fn archive(deps: &Deps, event: &GameEvent) -> Result<(), ServiceError> {
    if deps.settings.archive_mode == ArchiveMode::ConfirmAfterArchive {
        return archive_before_confirm(deps, event).await;
    }
    let started = Instant::now();
    match tokio::time::timeout(deps.settings.archive_timeout, deps.archive.insert(event)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(ArchiveError::Store(e))) => {
            warn!(session = %event.session_id, seq = event.sequence.get(), error = %dlab_store::Chain(&e),
                  "archive write failed; the commit stands and backfill will copy it");
            mark_unarchived(deps, &event.session_id).await;
            Ok(())
        }
        Ok(Err(e @ ArchiveError::IndexesMissing { .. })) => {
            error!(session = %event.session_id, seq = event.sequence.get(), error = %e,
                   "archive refuses writes; the commit stands and backfill will copy it");
            mark_unarchived(deps, &event.session_id).await;
            Ok(())
        }
        Ok(Err(collision)) => {
            error!(session = %event.session_id, seq = event.sequence.get(), error = %collision,
                   "archive collision: the sequence counter went back; fencing the session");
            if let Err(e) = deps.log.release(&event.session_id).await {
                error!(session = %event.session_id, error = %e, "could not drop the fenced hot state");
            }
            Err(ServiceError::Fenced(collision))
        }
        Err(_) => {
            warn!(session = %event.session_id, seq = event.sequence.get(),
                  waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                  "archive write timed out; the commit stands and backfill will copy it");
            mark_unarchived(deps, &event.session_id).await;
            Ok(())
        }
    }
}

/// [`ArchiveMode::ConfirmAfterArchive`]: the write is awaited without a time bound (the
/// embedded store answers once its transaction has committed or failed; giving up early could
/// leave a write that lands after the session was rebuilt without it). On failure the commit is
/// undone: the hot state is dropped, so the next call rebuilds it from the archive, where the
/// event is not, and its sequence is issued again. The caller holds the session's turn, so no
/// later event was committed meanwhile.
async fn archive_before_confirm(deps: &Deps, event: &GameEvent) -> Result<(), ServiceError> {
    let Err(failure) = deps.archive.insert(event).await else {
        return Ok(());
    };
    error!(session = %event.session_id, seq = event.sequence.get(), error = %dlab_store::Chain(&failure),
           "archive write failed; undoing the commit, nothing is confirmed");
    if let Err(e) = deps.log.release(&event.session_id).await {
        error!(session = %event.session_id, error = %dlab_store::Chain(&e),
               "could not drop the hot state of the undone commit");
    }
    Err(archive_error(failure))
}

/// Marks the session for the next backfill (in Redis, which is up: the commit just succeeded);
/// a failure is logged, and the activity index still leads backfill to the session.
async fn mark_unarchived(deps: &Deps, session: &SessionId) {
    if let Err(e) = deps.log.mark_unarchived(session).await {
        error!(session = %session, error = %dlab_store::Chain(&e), "could not mark the session for backfill");
    }
}

/// Who published an event, and so who hears `event:confirmed`.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// A client's submit: the sender gets `event:confirmed` (with its `requestId`), everyone
    /// else in the session `event:applied`.
    Connection {
        /// The sending connection.
        id: &'a ConnectionId,
        /// The submit's `requestId`.
        request_id: Option<&'a RequestId>,
    },
    /// A server event from an HTTP route (actor added or removed, GM override): every
    /// connection of the session gets `event:applied`.
    Server,
}

/// A published event.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// The stored event with its sequence (for a duplicate, the original).
    pub event: GameEvent,
    /// Whether the id had been committed before with the same content.
    pub duplicate: bool,
}

/// The one publish path of every event, from a client's submit or a server route: the trusted
/// roll of a `core:dice:roll` ([`roll_trusted_dice`]), payload limit (of the payload as
/// stored, with the roll's result), state-change conventions, atomic commit, archive write,
/// `event:confirmed` to the sender, `event:applied` to the session. `event.sequence` is ignored and assigned here.
///
/// Once the commit has happened the event is final: a broadcast that fails (registry down) is
/// logged and does not fail the publish, because the event is committed and replayable, and
/// clients notice the gap through `pong.heads`.
pub async fn publish(
    deps: &Deps,
    event: GameEvent,
    origin: Origin<'_>,
) -> Result<Published, ServiceError> {
    let event = roll_trusted_dice(event)?;
    deps.settings
        .envelope_limits()
        .check_payload(&event.payload)?;
    let changes = parse_changes(&event.event_type, &event.payload)?;
    let session = event.session_id.clone();
    let committed = match commit(
        deps,
        CommitRequest {
            event: event.clone(),
            changes,
        },
    )
    .await
    {
        Ok(c) => c,
        Err(ServiceError::Conflict { current }) => {
            if let Origin::Connection { .. } = origin {
                crate::conflicts::remember_rejection(deps, event, &current).await;
            }
            return Err(ServiceError::Conflict { current });
        }
        Err(e) => return Err(e),
    };
    let stored = match committed.event {
        Some(event) => event,
        None => archived_original(deps, &session, committed.sequence).await?,
    };
    let exclude = match origin {
        Origin::Connection { id, request_id } => {
            send(
                deps,
                id,
                &ServerFrame::EventConfirmed {
                    temp_id: stored.id.clone(),
                    event_id: stored.id.clone(),
                    sequence: stored.sequence,
                    timestamp: stored.timestamp,
                    duplicate: committed.duplicate,
                    result: (stored.event_type == DICE_ROLL_TYPE)
                        .then(|| stored.payload.get("result").cloned())
                        .flatten(),
                    request_id: request_id.cloned(),
                },
            )
            .await;
            Some(id)
        }
        Origin::Server => None,
    };
    let frame = ServerFrame::EventApplied(stored.clone());
    if let Err(e) = broadcast_to(deps, &session, &frame, exclude, committed.audience).await {
        warn!(session = %session, seq = stored.sequence.get(), error = %e,
              "broadcast failed after the commit; subscribers catch up through replay");
    }
    if !committed.duplicate {
        note_activity(deps, &session, stored.timestamp).await;
        crate::conflicts::report_blind_writes(deps, &stored, &committed.replaced).await;
        // Every `compaction_threshold`-th event compacts its session right away (the client
        // already has its answer), so the hot log stays bounded between scheduled runs.
        let threshold = deps.settings.lifecycle.compaction_threshold.max(1);
        if stored.sequence.get() % threshold == 0
            && let Err(e) = crate::maintenance::compact_session(
                deps,
                &session,
                crate::maintenance::Trigger::Inline,
            )
            .await
        {
            warn!(session = %session, error = %dlab_store::Chain(&e), "inline compaction failed; the schedule retries");
        }
    }
    Ok(Published {
        event: stored,
        duplicate: committed.duplicate,
    })
}

/// Trusted dice: a `core:dice:roll` is rolled here, in the one publish path, before the
/// commit. Its payload must be `{formula, purpose?}` (else `invalid_event` naming the problem,
/// and nothing is stored); any client `result` is dropped and the server's
/// `result: {dice, total}` from the operating system's CSPRNG written in its place, so the
/// stored and broadcast event carries the server's roll and a forged result never survives.
///
/// The dedup hash and the checksum of a roll leave `payload.result` out
/// ([`dlab_core::event::content_hash`]), so rolling here does not change the hash the stores
/// compare: a re-sent roll is a duplicate and gets the original event (and result) back; the
/// fresh roll made for it is discarded.
fn roll_trusted_dice(mut event: GameEvent) -> Result<GameEvent, ServiceError> {
    if event.event_type != DICE_ROLL_TYPE {
        return Ok(event);
    }
    let mut rng = OsDice::default();
    let payload = dice::roll_payload(&event.payload, &mut rng)?;
    if let Some(failure) = rng.failed {
        error!(session = %event.session_id, error = %failure, "the OS random generator failed; the roll is refused");
        return Err(ServiceError::Randomness(failure));
    }
    event.payload = payload;
    Ok(event)
}

/// Dice from the operating system's CSPRNG ([`rand::rngs::OsRng`]), uniform by rejection
/// sampling. A failure of the generator is kept (the roll is then refused, never committed).
#[derive(Default)]
struct OsDice {
    failed: Option<rand::rand_core::OsError>,
}

impl DiceRng for OsDice {
    fn die(&mut self, sides: u32) -> u32 {
        let sides = u64::from(sides.max(1));
        // The largest multiple of `sides` that fits in 2^32: values at or above it are
        // redrawn, so every face is equally likely.
        let zone = ((1u64 << 32) / sides) * sides;
        loop {
            if self.failed.is_some() {
                return 1;
            }
            match OsRng.try_next_u32() {
                Ok(v) if u64::from(v) < zone => return (u64::from(v) % sides) as u32 + 1,
                Ok(_) => {}
                Err(e) => self.failed = Some(e),
            }
        }
    }
}

/// The original of a duplicate whose event left the hot window: read from the archive.
async fn archived_original(
    deps: &Deps,
    session: &SessionId,
    sequence: Sequence,
) -> Result<GameEvent, ServiceError> {
    let before = Sequence(sequence.get().saturating_sub(1));
    let original = deps
        .archive
        .read(session, before, Some(sequence), 1)
        .await
        .map_err(archive_error)?
        .pop()
        .filter(|e| e.sequence == sequence);
    // Not archived yet (its archive write timed out): backfill will copy it; retry later.
    original.ok_or_else(|| hole(session, sequence, sequence.next(), "duplicate"))
}

/// Reads `after < sequence <= to` page by page, contiguously: the archive below the hot floor,
/// the hot log above. A range with a hole is never returned: an empty page or a gap before
/// `to` is [`ServiceError::ArchiveHole`] (`unavailable`).
pub struct RangeReader<'a> {
    deps: &'a Deps,
    session: &'a SessionId,
    cursor: Sequence,
    to: Sequence,
    /// The session ended and its hot state is released: read the archive only.
    archive_only: bool,
}

impl<'a> RangeReader<'a> {
    /// A reader of `after < sequence <= to`.
    pub fn new(deps: &'a Deps, session: &'a SessionId, after: Sequence, to: Sequence) -> Self {
        Self {
            deps,
            session,
            cursor: after,
            to,
            archive_only: false,
        }
    }

    /// The last sequence read so far.
    pub fn cursor(&self) -> Sequence {
        self.cursor
    }

    /// Whether the whole range has been read.
    pub fn is_done(&self) -> bool {
        self.cursor >= self.to
    }

    /// The next page (at most `limit` events), or `None` when the range is done.
    pub async fn next_page(
        &mut self,
        limit: usize,
    ) -> Result<Option<Vec<GameEvent>>, ServiceError> {
        let limit = limit.max(1);
        loop {
            if self.is_done() {
                return Ok(None);
            }
            let deps = self.deps;
            let hot = if self.archive_only {
                Err(StoreError::BelowFloor {
                    session: self.session.clone(),
                    floor: self.to.next(),
                })
            } else {
                deps.log
                    .read(self.session, self.cursor, Some(self.to), limit)
                    .await
            };
            let page = match hot {
                Ok(page) => page,
                Err(StoreError::BelowFloor { floor, .. }) => {
                    let upper = Sequence(floor.get().saturating_sub(1)).min(self.to);
                    deps.archive
                        .read(self.session, self.cursor, Some(upper), limit)
                        .await
                        .map_err(archive_error)?
                }
                Err(StoreError::HotStateMissing(_)) => {
                    match ensure_hot(deps, self.session).await {
                        Ok(()) => {}
                        Err(ServiceError::SessionEnded(_)) => self.archive_only = true,
                        Err(e) => return Err(e),
                    }
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let Some(first) = page.first() else {
                return Err(hole(
                    self.session,
                    self.cursor.next(),
                    self.to.next(),
                    "read",
                ));
            };
            if first.sequence != self.cursor.next() {
                return Err(hole(
                    self.session,
                    self.cursor.next(),
                    first.sequence,
                    "read",
                ));
            }
            let mut expected = self.cursor;
            for event in &page {
                if event.sequence != expected.next() {
                    return Err(hole(self.session, expected.next(), event.sequence, "read"));
                }
                expected = event.sequence;
            }
            self.cursor = expected;
            return Ok(Some(page));
        }
    }
}

/// Posts one frame to one connection. `Gone` removes the connection (not an error).
pub async fn send(deps: &Deps, connection: &ConnectionId, frame: &ServerFrame) {
    if post_bytes(deps, connection, frame.to_json().as_bytes()).await {
        metrics::emit(metrics::GONE_CONNECTIONS, 1.0, metrics::Unit::Count, None);
    }
}

/// Posts; `true` when the connection was gone (410) and has been removed.
async fn post_bytes(deps: &Deps, connection: &ConnectionId, bytes: &[u8]) -> bool {
    match deps.notifier.post(connection, bytes).await {
        Ok(PostOutcome::Delivered) => false,
        Ok(PostOutcome::Gone) => {
            info!(connection = %connection, "connection gone; removing it");
            match deps.registry.remove_connection(connection).await {
                Ok(removed) => {
                    for sub in removed {
                        crate::audience::left(deps, &sub.session_id).await;
                    }
                }
                Err(e) => {
                    warn!(connection = %connection, error = %e, "could not remove a gone connection")
                }
            }
            true
        }
        Err(e) => {
            warn!(connection = %connection, error = %dlab_store::Chain(&e), "post to connection failed");
            false
        }
    }
}

/// Posts one frame to every live connection of a session except `exclude`: serialized once,
/// posted concurrently with a bounded number in flight. Reads the session's connections from
/// the registry; a committed event uses [`broadcast_to`] with its audience token instead.
pub async fn broadcast(
    deps: &Deps,
    session: &SessionId,
    frame: &ServerFrame,
    exclude: Option<&ConnectionId>,
) -> Result<usize, ServiceError> {
    broadcast_to(deps, session, frame, exclude, None).await
}

/// [`broadcast`] of a frame about an event committed under the audience token `audience`:
/// the session's connections come from this process's cache when they were read under the
/// same token (see [`crate::audience`]).
pub async fn broadcast_to(
    deps: &Deps,
    session: &SessionId,
    frame: &ServerFrame,
    exclude: Option<&ConnectionId>,
    audience: Option<u64>,
) -> Result<usize, ServiceError> {
    let bytes = frame.to_json().into_bytes();
    let listeners = crate::audience::connections(deps, session, audience).await?;
    let targets: Vec<&ConnectionId> = listeners
        .iter()
        .map(|s| &s.connection_id)
        .filter(|c| Some(*c) != exclude)
        .collect();
    let count = targets.len();
    let gone = std::sync::atomic::AtomicUsize::new(0);
    futures::stream::iter(targets)
        .for_each_concurrent(deps.settings.broadcast_concurrency, |c| {
            let (bytes, gone) = (&bytes, &gone);
            async move {
                if post_bytes(deps, c, bytes).await {
                    gone.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
        .await;
    let gone = gone.into_inner();
    if gone > 0 {
        metrics::emit(
            metrics::GONE_CONNECTIONS,
            gone as f64,
            metrics::Unit::Count,
            Some(session),
        );
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_dice_stay_in_range_and_reach_every_face() {
        let mut rng = OsDice::default();
        for sides in [1, 2, 6, 20, 1000] {
            let mut seen = vec![false; sides as usize];
            for _ in 0..sides * 200 {
                let v = rng.die(sides);
                assert!((1..=sides).contains(&v), "d{sides} gave {v}");
                seen[(v - 1) as usize] = true;
            }
            assert!(seen.iter().all(|s| *s), "d{sides} missed a face");
        }
        assert!(rng.failed.is_none());
    }

    #[test]
    fn a_roll_is_made_by_the_server_and_a_bad_one_refused() {
        let event = |payload: serde_json::Value| GameEvent {
            id: dlab_core::ids::EventId::new("0190a5b8-7c3e-7a21-9f4d-2b6c8e1d3f60"),
            sequence: Sequence::ZERO,
            timestamp: 0,
            client_timestamp: None,
            user_id: dlab_core::ids::UserId::new("u"),
            session_id: SessionId::new("s"),
            event_type: DICE_ROLL_TYPE.to_owned(),
            payload,
            checksum: None,
        };
        let rolled = roll_trusted_dice(event(
            serde_json::json!({"formula": "2d20kh1", "result": {"total": 99}}),
        ))
        .unwrap();
        let total = rolled.payload["result"]["total"].as_i64().unwrap();
        assert!((1..=20).contains(&total));
        let err = roll_trusted_dice(event(serde_json::json!({"formula": "1d0"}))).unwrap_err();
        assert_eq!(err.code(), dlab_core::codes::ErrorCode::InvalidEvent);
        let mut chat = event(serde_json::json!({"result": 1}));
        chat.event_type = "core:chat".into();
        assert_eq!(roll_trusted_dice(chat.clone()).unwrap(), chat);
    }
}
