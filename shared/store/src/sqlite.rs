//! TEMPORARY STUB (replaced by the real adapter at merge).
#![allow(missing_docs, dead_code)]
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::StoreError;
use crate::memory::{
    MemoryCampaignStore, MemoryConflictStore, MemoryEventArchive, MemorySnapshotStore,
};

pub struct SqliteStores {
    path: PathBuf,
    a: Arc<MemoryEventArchive>,
    c: Arc<MemoryCampaignStore>,
}
impl SqliteStores {
    pub async fn open(path: &Path) -> Result<SqliteStores, StoreError> {
        Ok(Self {
            path: path.into(),
            a: Arc::new(MemoryEventArchive::new()),
            c: Arc::new(MemoryCampaignStore::new()),
        })
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn archive(&self) -> MemoryEventArchive {
        MemoryEventArchive::new()
    }
    pub fn campaigns(&self) -> MemoryCampaignStore {
        MemoryCampaignStore::new()
    }
    pub fn snapshots(&self) -> MemorySnapshotStore {
        MemorySnapshotStore::new()
    }
    pub fn conflicts(&self) -> MemoryConflictStore {
        MemoryConflictStore::new()
    }
}
