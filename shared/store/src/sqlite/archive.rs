//! [`EventArchive`] over table `events`, with the bookkeeping on the session's `sessions` row.

use async_trait::async_trait;
use dlab_core::event::GameEvent;
use dlab_core::ids::{EventId, Sequence, SessionId};
use rusqlite::{Connection, OptionalExtension, params};
use tracing::{debug, info, warn};

use super::engine::Handle;
use super::{bound, db, from_json, limit_of, to_i64, to_json, to_u64};
use crate::error::{ArchiveError, StoreError};
use crate::ports::EventArchive;

/// The durable archive in SQLite.
///
/// One row per event in `events`: `session_id`, `sequence`, `id`, `timestamp`, `hash` (the
/// content hash, for rehydrating dedup) and `json` (the exact event), with primary key
/// `(session_id, sequence)` and unique `(session_id, id)`. An insert looks for the holder of
/// its sequence and of its id inside its write transaction (one writer at a time, even across
/// handles: `BEGIN IMMEDIATE`), so the same event again is a no-op, another id at a taken
/// sequence is [`ArchiveError::SequenceCollision`] and this id at another sequence is
/// [`ArchiveError::IdCollision`], exactly under concurrency; the unique keys fence anything
/// that would slip past.
///
/// The bookkeeping sits on the session's row of `sessions` (as the MongoDB adapter keeps it on
/// the session document); a row made by the archive before the session exists holds only
/// these fields until `create_session` completes it:
/// - `archived_through`, only ever raised; advanced by [`EventArchive::archived_through`]
///   from the stored value over the contiguous run of sequences after it;
/// - `pruned_through`, only ever raised; a prune raises `archived_through` to it in the same
///   transaction, so removed events never lower the watermark;
/// - `last_event_at` (only raised, `NULL` until a touch or a hot mark) and `hot`, read by range
///   through the indexes `(last_event_at, id)` and `(hot, last_event_at, id)`.
#[derive(Debug, Clone)]
pub struct SqliteArchive {
    handle: Handle,
}

impl SqliteArchive {
    pub(super) fn new(handle: Handle) -> Self {
        Self { handle }
    }
}

/// Reads the session's stored `(archived_through, pruned_through)` (zeros without a row).
fn progress(conn: &Connection, session: &str) -> Result<(u64, u64), StoreError> {
    let row: Option<(i64, i64)> = conn
        .prepare_cached("SELECT archived_through, pruned_through FROM sessions WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([session], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(db("read archive progress"))?;
    match row {
        None => Ok((0, 0)),
        Some((a, p)) => Ok((to_u64(a, "archived_through")?, to_u64(p, "pruned_through")?)),
    }
}

fn session_ids(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    operation: &'static str,
) -> Result<Vec<SessionId>, ArchiveError> {
    let mut statement = conn.prepare_cached(sql).map_err(db(operation))?;
    let rows = statement
        .query_map(params, |r| r.get::<_, String>(0))
        .map_err(db(operation))?;
    rows.map(|r| r.map(SessionId::new).map_err(|e| db(operation)(e).into()))
        .collect()
}

#[async_trait]
impl EventArchive for SqliteArchive {
    async fn insert(&self, event: &GameEvent) -> Result<(), ArchiveError> {
        let session = event.session_id.clone();
        let sequence = to_i64(event.sequence.get(), "event sequence")?;
        let timestamp = to_i64(event.timestamp, "event timestamp")?;
        let id = event.id.clone();
        let hash = event.content_hash();
        let json = to_json(event, "event")?;
        let seq = event.sequence;
        self.handle
            .write("archive insert", move |tx| {
                let op = "archive insert";
                let held: Option<String> = tx
                    .prepare_cached("SELECT id FROM events WHERE session_id = ?1 AND sequence = ?2")
                    .and_then(|mut s| {
                        s.query_row(params![session.as_str(), sequence], |r| r.get(0))
                            .optional()
                    })
                    .map_err(db(op))?;
                if let Some(held) = held {
                    if held == id.as_str() {
                        debug!(session = %session, seq = seq.get(), "event already archived");
                        return Ok(());
                    }
                    warn!(session = %session, seq = seq.get(), id = %id, existing = %held,
                          "archive sequence collision: the sequence counter went back");
                    return Err(ArchiveError::SequenceCollision {
                        session,
                        sequence: seq,
                        existing: held,
                    });
                }
                let other: Option<i64> = tx
                    .prepare_cached("SELECT sequence FROM events WHERE session_id = ?1 AND id = ?2")
                    .and_then(|mut s| {
                        s.query_row(params![session.as_str(), id.as_str()], |r| r.get(0))
                            .optional()
                    })
                    .map_err(db(op))?;
                if let Some(other) = other {
                    let existing = Sequence(to_u64(other, "archived sequence")?);
                    warn!(session = %session, seq = seq.get(), id = %id, existing = existing.get(),
                          "archive id collision: the event is archived at another sequence");
                    return Err(ArchiveError::IdCollision {
                        session,
                        id: id.to_string(),
                        existing,
                    });
                }
                tx.prepare_cached(
                    "INSERT INTO events (session_id, sequence, id, timestamp, hash, json)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        session.as_str(),
                        sequence,
                        id.as_str(),
                        timestamp,
                        hash,
                        json
                    ])
                })
                .map_err(db(op))?;
                debug!(session = %session, seq = seq.get(), "event archived");
                Ok(())
            })
            .await
    }

    async fn read(
        &self,
        session: &SessionId,
        after: Sequence,
        to: Option<Sequence>,
        limit: usize,
    ) -> Result<Vec<GameEvent>, ArchiveError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let session = session.clone();
        let after = bound(after.get());
        let to = to.map_or(i64::MAX, |t| bound(t.get()));
        self.handle
            .read("archive read", move |conn| {
                let op = "archive read";
                let mut statement = conn
                    .prepare_cached(
                        "SELECT json FROM events
                         WHERE session_id = ?1 AND sequence > ?2 AND sequence <= ?3
                         ORDER BY sequence LIMIT ?4",
                    )
                    .map_err(db(op))?;
                let mut rows = statement
                    .query(params![session.as_str(), after, to, limit_of(limit)])
                    .map_err(db(op))?;
                let mut events = Vec::new();
                while let Some(row) = rows.next().map_err(db(op))? {
                    let json: String = row.get(0).map_err(db(op))?;
                    events.push(from_json(&json, "archived event")?);
                }
                Ok(events)
            })
            .await
    }

    async fn archived_through(&self, session: &SessionId) -> Result<Sequence, ArchiveError> {
        let id = session.clone();
        let (stored, through) = self
            .handle
            .read("advance archived_through", move |conn| {
                let op = "advance archived_through";
                let (archived, pruned) = progress(conn, id.as_str())?;
                let stored = archived.max(pruned);
                let mut through = stored;
                let mut statement = conn
                    .prepare_cached(
                        "SELECT sequence FROM events WHERE session_id = ?1 AND sequence > ?2
                         ORDER BY sequence",
                    )
                    .map_err(db(op))?;
                let mut rows = statement
                    .query(params![id.as_str(), bound(through)])
                    .map_err(db(op))?;
                // Reads the contiguous run after the stored value, stopping at the first gap.
                while let Some(row) = rows.next().map_err(db(op))? {
                    let sequence = to_u64(row.get(0).map_err(db(op))?, "archived sequence")?;
                    if sequence != through + 1 {
                        break;
                    }
                    through = sequence;
                }
                Ok::<_, ArchiveError>((archived, through))
            })
            .await?;
        if through <= stored {
            return Ok(Sequence(through));
        }
        let id = session.clone();
        let value = to_i64(through, "archived_through")?;
        let raised = self
            .handle
            .write("store archived_through", move |tx| {
                let op = "store archived_through";
                tx.prepare_cached(
                    "INSERT INTO sessions (id, archived_through) VALUES (?1, ?2)
                     ON CONFLICT (id) DO UPDATE
                     SET archived_through = max(archived_through, excluded.archived_through)",
                )
                .and_then(|mut s| s.execute(params![id.as_str(), value]))
                .map_err(db(op))?;
                Ok::<_, ArchiveError>(progress(tx, id.as_str())?.0)
            })
            .await?;
        debug!(session = %session, through = raised, "archived_through advanced");
        Ok(Sequence(raised))
    }

    async fn ids(
        &self,
        session: &SessionId,
    ) -> Result<Vec<(EventId, Sequence, String)>, ArchiveError> {
        let session = session.clone();
        self.handle
            .read("archive ids", move |conn| {
                let op = "archive ids";
                let mut statement = conn
                    .prepare_cached(
                        "SELECT id, sequence, hash FROM events WHERE session_id = ?1
                         ORDER BY sequence",
                    )
                    .map_err(db(op))?;
                let mut rows = statement.query([session.as_str()]).map_err(db(op))?;
                let mut ids = Vec::new();
                while let Some(row) = rows.next().map_err(db(op))? {
                    let id: String = row.get(0).map_err(db(op))?;
                    let sequence = to_u64(row.get(1).map_err(db(op))?, "archived sequence")?;
                    let hash: String = row.get(2).map_err(db(op))?;
                    ids.push((EventId::new(id), Sequence(sequence), hash));
                }
                Ok(ids)
            })
            .await
    }

    async fn touch(&self, session: &SessionId, at: u64) -> Result<(), ArchiveError> {
        let id = session.clone();
        let at = to_i64(at, "last_event_at")?;
        self.handle
            .write("touch session", move |tx| {
                tx.prepare_cached(
                    "INSERT INTO sessions (id, last_event_at, hot) VALUES (?1, ?2, 1)
                     ON CONFLICT (id) DO UPDATE
                     SET last_event_at = coalesce(max(last_event_at, excluded.last_event_at),
                                                  excluded.last_event_at),
                         hot = 1",
                )
                .and_then(|mut s| s.execute(params![id.as_str(), at]))
                .map_err(db("touch session"))?;
                Ok::<_, ArchiveError>(())
            })
            .await?;
        debug!(session = %session, at, "session activity noted");
        Ok(())
    }

    async fn active_since(
        &self,
        since: u64,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<SessionId>, ArchiveError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let since = bound(since);
        let after = after.cloned();
        self.handle
            .read("list active sessions", move |conn| {
                let op = "list active sessions";
                match &after {
                    Some(after) => session_ids(
                        conn,
                        "SELECT id FROM sessions WHERE last_event_at >= ?1 AND id > ?2
                         ORDER BY id LIMIT ?3",
                        params![since, after.as_str(), limit_of(limit)],
                        op,
                    ),
                    None => session_ids(
                        conn,
                        "SELECT id FROM sessions WHERE last_event_at >= ?1 ORDER BY id LIMIT ?2",
                        params![since, limit_of(limit)],
                        op,
                    ),
                }
            })
            .await
    }

    async fn idle_hot(&self, before: u64, limit: usize) -> Result<Vec<SessionId>, ArchiveError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let before = bound(before);
        self.handle
            .read("list idle hot sessions", move |conn| {
                session_ids(
                    conn,
                    "SELECT id FROM sessions WHERE hot = 1 AND last_event_at < ?1
                     ORDER BY last_event_at, id LIMIT ?2",
                    params![before, limit_of(limit)],
                    "list idle hot sessions",
                )
            })
            .await
    }

    async fn set_hot(&self, session: &SessionId, hot: bool) -> Result<(), ArchiveError> {
        let id = session.clone();
        // A session never touched gets activity time 0 (idle since ever, active only since 0),
        // without lowering a real one.
        self.handle
            .write("set hot flag", move |tx| {
                tx.prepare_cached(
                    "INSERT INTO sessions (id, last_event_at, hot) VALUES (?1, 0, ?2)
                     ON CONFLICT (id) DO UPDATE
                     SET hot = excluded.hot, last_event_at = coalesce(last_event_at, 0)",
                )
                .and_then(|mut s| s.execute(params![id.as_str(), hot]))
                .map_err(db("set hot flag"))?;
                Ok::<_, ArchiveError>(())
            })
            .await?;
        debug!(session = %session, hot, "hot flag stored");
        Ok(())
    }

    async fn prune(
        &self,
        session: &SessionId,
        through: Sequence,
        older_than: u64,
    ) -> Result<u64, ArchiveError> {
        let id = session.clone();
        let through = bound(through.get());
        let older_than = bound(older_than);
        let pruned = self
            .handle
            .write("prune archive", move |tx| {
                let op = "prune archive";
                // The first event up to `through` that is not old enough: nothing from it on
                // goes, so what stays is contiguous.
                let blocker: Option<i64> = tx
                    .prepare_cached(
                        "SELECT min(sequence) FROM events
                         WHERE session_id = ?1 AND sequence <= ?2 AND timestamp >= ?3",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![id.as_str(), through, older_than], |r| r.get(0))
                    })
                    .map_err(db(op))?;
                let upper = blocker.map_or(through, |b| b - 1);
                let cutoff: Option<i64> = tx
                    .prepare_cached(
                        "SELECT max(sequence) FROM events WHERE session_id = ?1 AND sequence <= ?2",
                    )
                    .and_then(|mut s| s.query_row(params![id.as_str(), upper], |r| r.get(0)))
                    .map_err(db(op))?;
                let Some(cutoff) = cutoff.filter(|c| *c >= 1) else {
                    return Ok::<_, ArchiveError>(None);
                };
                tx.prepare_cached(
                    "INSERT INTO sessions (id, archived_through, pruned_through) VALUES (?1, ?2, ?2)
                     ON CONFLICT (id) DO UPDATE
                     SET pruned_through = max(pruned_through, excluded.pruned_through),
                         archived_through = max(archived_through, excluded.archived_through)",
                )
                .and_then(|mut s| s.execute(params![id.as_str(), cutoff]))
                .map_err(db(op))?;
                let removed = tx
                    .prepare_cached("DELETE FROM events WHERE session_id = ?1 AND sequence <= ?2")
                    .and_then(|mut s| s.execute(params![id.as_str(), cutoff]))
                    .map_err(db(op))?;
                Ok(Some((cutoff, removed as u64)))
            })
            .await?;
        let Some((cutoff, removed)) = pruned else {
            return Ok(0);
        };
        info!(session = %session, through = cutoff, removed, "archived events pruned");
        Ok(removed)
    }

    async fn pruned_through(&self, session: &SessionId) -> Result<Sequence, ArchiveError> {
        let id = session.clone();
        self.handle
            .read("read pruned_through", move |conn| {
                Ok::<_, ArchiveError>(Sequence(progress(conn, id.as_str())?.1))
            })
            .await
    }
}
