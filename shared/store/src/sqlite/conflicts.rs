//! [`ConflictStore`] over table `conflicts`.

use async_trait::async_trait;
use dlab_core::ids::{ConflictId, SessionId};
use rusqlite::{OptionalExtension, params};
use tracing::{debug, info};

use super::engine::Handle;
use super::{BACKEND, bound, db, from_json, limit_of, to_i64, to_json};
use crate::error::StoreError;
use crate::model::{ConflictKey, ConflictRecord, Page, PageFill, PageRequest, Resolution};
use crate::ports::ConflictStore;

/// The GM's conflict report in SQLite: table `conflicts`.
///
/// One row per conflict, primary key `(session_id, conflict_id)` (so `create` of a known id
/// stores nothing), with `kind`, `created_at` and `resolved` as columns, the exact record as
/// created in `json`, and once resolved the exact [`Resolution`] in `resolution_json`. A read is
/// the `json` record with the resolution laid over it, so `resolve` is ONE conditional
/// `UPDATE … WHERE resolved = 0 RETURNING …`: of concurrent resolves (even from two handles on
/// the file) exactly one matches. Listed newest first through
/// `(session_id, created_at desc, conflict_id desc)`, paged like the campaign listings.
#[derive(Debug, Clone)]
pub struct SqliteConflictStore {
    handle: Handle,
}

impl SqliteConflictStore {
    pub(super) fn new(handle: Handle) -> Self {
        Self { handle }
    }
}

/// The record of a row: `json`, with `resolution_json` (when set) laid over it.
fn decode(json: &str, resolution: Option<&str>) -> Result<ConflictRecord, StoreError> {
    let mut record: ConflictRecord = from_json(json, "conflict")?;
    if let Some(resolution) = resolution {
        record.resolution = Some(from_json(resolution, "conflict resolution")?);
        record.resolved = true;
    }
    Ok(record)
}

#[async_trait]
impl ConflictStore for SqliteConflictStore {
    async fn create(&self, conflict: &ConflictRecord) -> Result<bool, StoreError> {
        let session = conflict.session_id.clone();
        let id = conflict.conflict_id.clone();
        let kind = serde_json::to_value(conflict.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let created_at = to_i64(conflict.created_at, "conflict time")?;
        let resolved = conflict.resolved;
        let json = to_json(conflict, "conflict")?;
        self.handle
            .write("create conflict", move |tx| {
                let inserted = tx
                    .prepare_cached(
                        "INSERT INTO conflicts
                             (session_id, conflict_id, kind, created_at, resolved, json)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT (session_id, conflict_id) DO NOTHING",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            session.as_str(),
                            id.as_str(),
                            kind,
                            created_at,
                            resolved,
                            json
                        ])
                    })
                    .map_err(db("create conflict"))?;
                if inserted > 0 {
                    debug!(session = %session, conflict = %id, "conflict reported");
                }
                Ok(inserted > 0)
            })
            .await
    }

    async fn get(
        &self,
        session: &SessionId,
        id: &ConflictId,
    ) -> Result<Option<ConflictRecord>, StoreError> {
        let session = session.clone();
        let id = id.clone();
        self.handle
            .read("read conflict", move |conn| {
                let row: Option<(String, Option<String>)> = conn
                    .prepare_cached(
                        "SELECT json, resolution_json FROM conflicts
                         WHERE session_id = ?1 AND conflict_id = ?2",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![session.as_str(), id.as_str()], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })
                        .optional()
                    })
                    .map_err(db("read conflict"))?;
                row.map(|(json, resolution)| decode(&json, resolution.as_deref()))
                    .transpose()
            })
            .await
    }

    async fn list(
        &self,
        session: &SessionId,
        page: &PageRequest<ConflictKey>,
    ) -> Result<Page<ConflictRecord, ConflictKey>, StoreError> {
        let session = session.clone();
        let limit = page.clamped_limit();
        let max_bytes = page.max_bytes;
        let after = page.after.clone();
        self.handle
            .read("list conflicts", move |conn| {
                let op = "list conflicts";
                let fetch = limit_of(limit.saturating_add(1));
                let mut statement;
                let mut rows = match &after {
                    Some(key) => {
                        statement = conn
                            .prepare_cached(
                                "SELECT json, resolution_json FROM conflicts
                                 WHERE session_id = ?1 AND (created_at, conflict_id) < (?2, ?3)
                                 ORDER BY created_at DESC, conflict_id DESC LIMIT ?4",
                            )
                            .map_err(db(op))?;
                        statement.query(params![
                            session.as_str(),
                            bound(key.created_at),
                            key.id.as_str(),
                            fetch
                        ])
                    }
                    None => {
                        statement = conn
                            .prepare_cached(
                                "SELECT json, resolution_json FROM conflicts WHERE session_id = ?1
                                 ORDER BY created_at DESC, conflict_id DESC LIMIT ?2",
                            )
                            .map_err(db(op))?;
                        statement.query(params![session.as_str(), fetch])
                    }
                }
                .map_err(db(op))?;
                let mut fill = PageFill::new(limit, max_bytes);
                while let Some(row) = rows.next().map_err(db(op))? {
                    let json: String = row.get(0).map_err(db(op))?;
                    let resolution: Option<String> = row.get(1).map_err(db(op))?;
                    let record = decode(&json, resolution.as_deref())?;
                    if !fill
                        .offer(record)
                        .map_err(|e| StoreError::corrupt(BACKEND, op, e))?
                    {
                        break;
                    }
                }
                Ok(fill.into_page())
            })
            .await
    }

    async fn resolve(
        &self,
        session: &SessionId,
        id: &ConflictId,
        resolution: &Resolution,
    ) -> Result<Option<ConflictRecord>, StoreError> {
        let key = (session.clone(), id.clone());
        let resolution_json = to_json(resolution, "conflict resolution")?;
        let resolved = self
            .handle
            .write("resolve conflict", move |tx| {
                let (session, id) = &key;
                let row: Option<(String, Option<String>)> = tx
                    .prepare_cached(
                        "UPDATE conflicts SET resolved = 1, resolution_json = ?3
                         WHERE session_id = ?1 AND conflict_id = ?2 AND resolved = 0
                         RETURNING json, resolution_json",
                    )
                    .and_then(|mut s| {
                        s.query_row(
                            params![session.as_str(), id.as_str(), resolution_json],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .optional()
                    })
                    .map_err(db("resolve conflict"))?;
                row.map(|(json, resolution)| decode(&json, resolution.as_deref()))
                    .transpose()
            })
            .await?;
        match &resolved {
            Some(_) => info!(session = %session, conflict = %id, by = %resolution.resolved_by,
                             "conflict resolved"),
            None => debug!(session = %session, conflict = %id,
                           "conflict missing or already resolved"),
        }
        Ok(resolved)
    }
}
