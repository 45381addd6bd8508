//! [`SnapshotStore`] over table `snapshots`.

use async_trait::async_trait;
use dlab_core::compaction::Snapshot;
use dlab_core::ids::SessionId;
use rusqlite::{OptionalExtension, params};
use tracing::debug;

use super::engine::Handle;
use super::{db, from_json, to_i64, to_json};
use crate::error::StoreError;
use crate::ports::SnapshotStore;

/// Snapshots in SQLite: one row per `(session_id, up_to_sequence)` (primary key) with the exact
/// snapshot as `json`. A put replaces the row of the same key in one statement, so a read sees
/// the previous snapshot or the new one, never a mix; no chunking is needed (SQLite holds text
/// up to 1 GB in one value). `latest` reads the highest `up_to_sequence` through the primary
/// key.
#[derive(Debug, Clone)]
pub struct SqliteSnapshotStore {
    handle: Handle,
}

impl SqliteSnapshotStore {
    pub(super) fn new(handle: Handle) -> Self {
        Self { handle }
    }
}

#[async_trait]
impl SnapshotStore for SqliteSnapshotStore {
    async fn put(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let session = snapshot.session_id.clone();
        let up_to = to_i64(snapshot.up_to_sequence.get(), "snapshot sequence")?;
        let created_at = to_i64(snapshot.created_at, "snapshot time")?;
        let json = to_json(snapshot, "snapshot")?;
        let bytes = json.len();
        self.handle
            .write("put snapshot", move |tx| {
                tx.prepare_cached(
                    "INSERT INTO snapshots (session_id, up_to_sequence, created_at, json)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (session_id, up_to_sequence) DO UPDATE
                     SET created_at = excluded.created_at, json = excluded.json",
                )
                .and_then(|mut s| s.execute(params![session.as_str(), up_to, created_at, json]))
                .map_err(db("put snapshot"))?;
                debug!(session = %session, up_to, bytes, "snapshot stored");
                Ok(())
            })
            .await
    }

    async fn latest(&self, session: &SessionId) -> Result<Option<Snapshot>, StoreError> {
        let session = session.clone();
        self.handle
            .read("read snapshot", move |conn| {
                let json: Option<String> = conn
                    .prepare_cached(
                        "SELECT json FROM snapshots WHERE session_id = ?1
                         ORDER BY up_to_sequence DESC LIMIT 1",
                    )
                    .and_then(|mut s| s.query_row([session.as_str()], |r| r.get(0)).optional())
                    .map_err(db("read snapshot"))?;
                json.map(|j| from_json(&j, "snapshot")).transpose()
            })
            .await
    }
}
