//! The shared steps of every use case that touches a session's log: keeping the hot state
//! present (rehydrating it from snapshot + archive), committing with the archive write awaited,
//! reading a contiguous range from the hot log and the archive, and posting frames.
//!
//! Order inside a commit (invariant 3): commit (hot log) → archive write (bounded wait) →
//! confirm → broadcast. The archive write is awaited, never spawned: a Lambda freezes after it
//! returns. If the write fails or times out the commit stands and backfill copies it later.

use std::time::Instant;

use dlab_core::event::GameEvent;
use dlab_core::ids::{ConnectionId, Sequence, SessionId};
use dlab_core::protocol::ServerFrame;
use dlab_core::state::GameSessionState;
use dlab_store::{ArchiveError, CommitError, CommitRequest, Committed, PostOutcome, StoreError};
use futures::StreamExt;
use tracing::{error, info, warn};

use crate::deps::Deps;
use crate::error::ServiceError;

/// Rebuilds a session's hot state from its latest snapshot and the archive after it.
pub async fn rehydrate(deps: &Deps, session: &SessionId) -> Result<(), ServiceError> {
    let snapshot = deps.snapshots.latest(session).await?;
    let mut state = match &snapshot {
        Some(s) if s.verify() => s.state.clone(),
        _ => GameSessionState::new(session.clone(), None),
    };
    let mut after = state.last_event_sequence;
    let mut tail = Vec::new();
    loop {
        let page = deps
            .archive
            .read(session, after, None, deps.settings.read_page)
            .await
            .map_err(archive_unavailable)?;
        let Some(last) = page.last() else { break };
        after = last.sequence;
        for event in page {
            if let Err(e) = state.apply(&event) {
                error!(session = %session, seq = event.sequence.get(), error = %e, "archived event does not apply");
                return Err(ServiceError::InvalidEvent(format!(
                    "archive of session {session} cannot be replayed"
                )));
            }
            tail.push(event);
        }
    }
    let ids = deps
        .archive
        .ids(session)
        .await
        .map_err(archive_unavailable)?;
    let outcome = deps.log.rehydrate(&state, &tail, &ids).await?;
    warn!(session = %session, head = state.last_event_sequence.get(), ?outcome, "session rehydration from snapshot and archive");
    Ok(())
}

fn archive_unavailable(e: ArchiveError) -> ServiceError {
    match e {
        ArchiveError::Store(s) => ServiceError::Unavailable(s),
        other => ServiceError::Fenced(other),
    }
}

/// The head of a session, rehydrating the hot state when it is missing.
pub async fn head(deps: &Deps, session: &SessionId) -> Result<Sequence, ServiceError> {
    match deps.log.head(session).await {
        Err(StoreError::HotStateMissing(_)) => {
            rehydrate(deps, session).await?;
            Ok(deps.log.head(session).await?)
        }
        other => Ok(other?),
    }
}

/// The lowest sequence replayable from the hot log or the archive (1 unless the archive lacks
/// what was trimmed from the hot log).
pub async fn floor(deps: &Deps, session: &SessionId) -> Result<Sequence, ServiceError> {
    let hot_floor = deps.log.floor(session).await?;
    if hot_floor.get() <= 1 {
        return Ok(Sequence(1));
    }
    let archived = deps
        .archive
        .archived_through(session)
        .await
        .map_err(archive_unavailable)?;
    Ok(if archived.get() + 1 >= hot_floor.get() {
        Sequence(1)
    } else {
        hot_floor
    })
}

/// Commits an event: atomic commit (rehydrating and retrying once when the hot state is gone),
/// then the archive write with a bounded wait. A sequence collision in the archive fences the
/// session: its hot state is dropped so the next commit rebuilds it from the archive.
pub async fn commit(deps: &Deps, request: CommitRequest) -> Result<Committed, ServiceError> {
    let session = request.event.session_id.clone();
    let committed = match deps.log.commit(request.clone()).await {
        Err(CommitError::HotStateMissing(_)) => {
            rehydrate(deps, &session).await?;
            deps.log.commit(request).await?
        }
        other => other?,
    };
    if let Some(event) = &committed.event {
        archive(deps, event).await?;
    }
    Ok(committed)
}

async fn archive(deps: &Deps, event: &GameEvent) -> Result<(), ServiceError> {
    let started = Instant::now();
    match tokio::time::timeout(deps.settings.archive_timeout, deps.archive.insert(event)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(ArchiveError::Store(e))) => {
            warn!(session = %event.session_id, seq = event.sequence.get(), error = %e,
                  "archive write failed; the commit stands and backfill will copy it");
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
                  waited_ms = started.elapsed().as_millis() as u64,
                  "archive write timed out; the commit stands and backfill will copy it");
            Ok(())
        }
    }
}

/// Reads `after < sequence <= to` contiguously: the archive below the hot floor, the hot log
/// above. Stops early when `deadline` passes; returns the events and whether the range is
/// complete.
pub async fn read_range(
    deps: &Deps,
    session: &SessionId,
    after: Sequence,
    to: Sequence,
    deadline: Option<Instant>,
) -> Result<(Vec<GameEvent>, bool), ServiceError> {
    let mut out = Vec::new();
    let mut cursor = after;
    while cursor < to {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok((out, false));
        }
        let page = match deps
            .log
            .read(session, cursor, Some(to), deps.settings.read_page)
            .await
        {
            Ok(page) => page,
            Err(StoreError::BelowFloor { floor, .. }) => {
                let upper = Sequence(floor.get().saturating_sub(1)).min(to);
                deps.archive
                    .read(session, cursor, Some(upper), deps.settings.read_page)
                    .await
                    .map_err(archive_unavailable)?
            }
            Err(StoreError::HotStateMissing(_)) => {
                rehydrate(deps, session).await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if page.is_empty() {
            break;
        }
        for event in page {
            if event.sequence != cursor.next() {
                // A hole: the archive lacks an event (backfill has not run yet).
                error!(session = %session, expected = cursor.next().get(), got = event.sequence.get(),
                       "replay range has a hole");
                return Err(ServiceError::Unavailable(StoreError::BelowFloor {
                    session: session.clone(),
                    floor: event.sequence,
                }));
            }
            cursor = event.sequence;
            out.push(event);
        }
    }
    Ok((out, true))
}

/// Posts one frame to one connection. `Gone` removes the connection (not an error).
pub async fn send(deps: &Deps, connection: &ConnectionId, frame: &ServerFrame) {
    post_bytes(deps, connection, frame.to_json().as_bytes()).await;
}

async fn post_bytes(deps: &Deps, connection: &ConnectionId, bytes: &[u8]) {
    match deps.notifier.post(connection, bytes).await {
        Ok(PostOutcome::Delivered) => {}
        Ok(PostOutcome::Gone) => {
            info!(connection = %connection, "connection gone; removing it");
            if let Err(e) = deps.registry.remove_connection(connection).await {
                warn!(connection = %connection, error = %e, "could not remove a gone connection");
            }
        }
        Err(e) => {
            warn!(connection = %connection, error = %dlab_store::Chain(&e), "post to connection failed")
        }
    }
}

/// Posts one frame to every live connection of a session except `exclude`: serialized once,
/// posted concurrently with a bounded number in flight.
pub async fn broadcast(
    deps: &Deps,
    session: &SessionId,
    frame: &ServerFrame,
    exclude: Option<&ConnectionId>,
) -> Result<usize, ServiceError> {
    let bytes = frame.to_json().into_bytes();
    let targets: Vec<ConnectionId> = deps
        .registry
        .session_connections(session)
        .await?
        .into_iter()
        .map(|s| s.connection_id)
        .filter(|c| Some(c) != exclude)
        .collect();
    let count = targets.len();
    futures::stream::iter(targets)
        .for_each_concurrent(deps.settings.broadcast_concurrency, |c| {
            let bytes = &bytes;
            async move { post_bytes(deps, &c, bytes).await }
        })
        .await;
    Ok(count)
}
