//! The local gateway's persistent embedded store: the event archive, campaign data, snapshots
//! and the GM's conflict report in ONE SQLite database file (bundled SQLite, no server).
//!
//! # Layout
//! - [`SqliteStores`]: opens (creates) the file and its schema, owns the writer thread and the
//!   read pool, and hands out the adapters, which are cheap clones sharing that handle.
//! - [`SqliteArchive`]: [`EventArchive`](crate::EventArchive) over table `events`, with its
//!   bookkeeping (`archived_through`, `pruned_through`, `last_event_at`, `hot`) on the
//!   session's row of `sessions`, exactly where the MongoDB adapter keeps it.
//! - [`SqliteCampaignStore`]: [`CampaignStore`](crate::CampaignStore) over `campaigns`,
//!   `campaign_members`, `actors`, `compendium` and `sessions`.
//! - [`SqliteSnapshotStore`]: [`SnapshotStore`](crate::SnapshotStore) over `snapshots`.
//! - [`SqliteConflictStore`]: [`ConflictStore`](crate::ConflictStore) over `conflicts`.
//!
//! # Threads: never block the async runtime
//!
//! rusqlite is blocking, so no SQLite call runs on a runtime worker:
//! - **Writes** go to ONE writer thread per [`SqliteStores`], which owns the only write
//!   connection and is fed by a channel of jobs (a closure over the open `Transaction` and a
//!   oneshot for the answer). The thread takes every job waiting, opens ONE transaction
//!   (`BEGIN IMMEDIATE`), runs each job inside a `SAVEPOINT` of its own (a job that fails rolls
//!   back only its savepoint, never its neighbours' work), COMMITs once, and only THEN answers
//!   every job of the batch. That is group commit: under load many writes share one fsync, and
//!   a caller is never told "done" before its write is durable.
//! - **Reads** run on [`tokio::task::spawn_blocking`] over a small pool of read-only
//!   connections. WAL lets them read the last committed state beside the writer, without
//!   waiting for it.
//!
//! # Durability
//!
//! `journal_mode=WAL` with `synchronous=FULL`: the WAL is fsynced at every COMMIT, so an
//! acknowledged write survives a crash of the process AND of the machine (`NORMAL` would only
//! survive the process). The price of FULL is one fsync per commit; group commit pays it once
//! per batch rather than once per write, which is what keeps many concurrent small writes
//! (archive inserts from every session) cheap.
//!
//! # Several handles on one file
//!
//! Opening the same file twice (two [`SqliteStores`]) gives two writer threads, like two
//! Lambda instances on one database. `BEGIN IMMEDIATE` takes SQLite's write lock at the start of
//! the transaction, and `busy_timeout` makes the other writer wait for it (up to
//! [`BUSY_TIMEOUT`]) instead of failing, so exactly one transaction writes at a time and every
//! check-then-write inside a job (quota counts, sequence collisions, conditional resolves) is
//! exact under concurrency.
//!
//! # Storage
//!
//! Open JSON documents (events, actors, compendium entries, sessions, snapshots, conflicts) are
//! kept as the exact JSON text [`serde_json`] wrote, beside the columns that are queried (ids,
//! sequences, names, times). The text is the authoritative copy: it reads back byte for byte
//! (integers above `i64::MAX`, floats with a zero fraction, `$`-prefixed and dotted keys), as
//! the memory adapter does. Text that no longer parses is reported as
//! [`StoreError::Corrupt`], never a panic. Integers that SQLite holds natively (sequences,
//! times) must fit an `i64`; a value above that is refused as corrupt, as MongoDB's adapter does.
//!
//! The schema is versioned with `PRAGMA user_version` and migrated at open, inside one
//! transaction (see `schema`).

mod archive;
mod campaign;
mod conflicts;
mod engine;
mod schema;
mod snapshot;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::info;

use crate::error::StoreError;

pub use archive::SqliteArchive;
pub use campaign::SqliteCampaignStore;
pub use conflicts::SqliteConflictStore;
pub use snapshot::SqliteSnapshotStore;

pub use engine::WriteStats;

use engine::Handle;

const BACKEND: &str = "sqlite";

/// How long a connection waits for another handle's write lock (or a checkpoint) before it
/// reports the database busy.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Read-only connections kept for reads (opened on demand, at most this many at once).
pub const READ_CONNECTIONS: usize = 4;

/// The database file, its writer thread and its read pool; the adapters are made from it.
#[derive(Debug, Clone)]
pub struct SqliteStores {
    handle: Handle,
}

impl SqliteStores {
    /// Opens the database at `path`, creating its parent directories, the file and the schema
    /// when missing (idempotent: an existing database is migrated to the current schema and
    /// otherwise left as it is), and starts its writer thread.
    pub async fn open(path: &Path) -> Result<SqliteStores, StoreError> {
        let path = path.to_path_buf();
        let handle = tokio::task::spawn_blocking(move || Handle::open(path))
            .await
            .map_err(|e| StoreError::unavailable(BACKEND, "open database", e))??;
        info!(path = %handle.path().display(), "sqlite store opened");
        Ok(SqliteStores { handle })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.handle.path()
    }

    /// What this handle's writer thread has committed since it was opened: how many
    /// transactions, and how many writes they carried (group commit puts many in one).
    pub fn write_stats(&self) -> WriteStats {
        self.handle.stats()
    }

    /// The event archive.
    pub fn archive(&self) -> SqliteArchive {
        SqliteArchive::new(self.handle.clone())
    }

    /// The campaign store.
    pub fn campaigns(&self) -> SqliteCampaignStore {
        SqliteCampaignStore::new(self.handle.clone())
    }

    /// The snapshot store.
    pub fn snapshots(&self) -> SqliteSnapshotStore {
        SqliteSnapshotStore::new(self.handle.clone())
    }

    /// The GM's conflict report.
    pub fn conflicts(&self) -> SqliteConflictStore {
        SqliteConflictStore::new(self.handle.clone())
    }
}

/// Maps a rusqlite error: a value of the wrong type or range in a column is stored data that
/// cannot be decoded (corrupt); everything else (I/O, locks, a full disk) is the backend
/// failing (unavailable, retryable).
fn db_error(operation: &'static str, e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::Utf8Error(..) => StoreError::corrupt(BACKEND, operation, e),
        other => StoreError::unavailable(BACKEND, operation, other),
    }
}

/// `map_err` helper for [`db_error`].
fn db(operation: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| db_error(operation, e)
}

/// A `u64` as SQLite's signed 64-bit integer; above `i64::MAX` it cannot be stored.
fn to_i64(value: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|e| StoreError::corrupt(BACKEND, what, e))
}

/// A stored integer read back as `u64`; a negative one is corrupt.
fn to_u64(value: i64, what: &'static str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|e| StoreError::corrupt(BACKEND, what, e))
}

/// A `u64` bound of a query, saturating (a bound above `i64::MAX` matches everything stored).
fn bound(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A limit as SQLite's `LIMIT` (a negative one would mean "no limit").
fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn to_json<T: Serialize + ?Sized>(value: &T, what: &'static str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::corrupt(BACKEND, what, e))
}

fn from_json<T: DeserializeOwned>(json: &str, what: &'static str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::corrupt(BACKEND, what, e))
}

/// Opens a connection with the settings every connection of the store shares.
fn connect(path: &Path, flags: rusqlite::OpenFlags) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags).map_err(db("open database"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(db("set busy timeout"))?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(db("enable foreign keys"))?;
    Ok(conn)
}

/// Where the database lives, as given to [`SqliteStores::open`].
fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ArchiveError;
    use crate::ports::{CampaignStore, EventArchive};
    use dlab_core::ids::{CampaignId, Sequence, SessionId};

    /// A database file in a directory of its own, removed on drop.
    struct TempDb(PathBuf);

    impl TempDb {
        fn new() -> Self {
            Self(std::env::temp_dir().join(format!("dlab-sqlite-{}", uuid::Uuid::new_v4())))
        }
        fn file(&self) -> PathBuf {
            self.0.join("nested").join("dlab.sqlite3")
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn raw(path: &Path) -> Connection {
        let conn = Connection::open(path).expect("open raw");
        conn.busy_timeout(BUSY_TIMEOUT).expect("busy timeout");
        conn
    }

    #[tokio::test]
    async fn open_creates_directories_and_schema_once() {
        let tmp = TempDb::new();
        let first = SqliteStores::open(&tmp.file()).await.expect("open");
        assert!(first.path().is_absolute());
        let second = SqliteStores::open(&tmp.file()).await.expect("open again");
        assert_eq!(first.path(), second.path());
        let conn = raw(&tmp.file());
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert_eq!(version, schema::VERSION);
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let tmp = TempDb::new();
        drop(SqliteStores::open(&tmp.file()).await.expect("open"));
        raw(&tmp.file())
            .pragma_update(None, "user_version", schema::VERSION + 1)
            .expect("bump");
        match SqliteStores::open(&tmp.file()).await {
            Err(StoreError::Unavailable { .. }) => {}
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn corrupt_stored_json_is_reported_not_a_panic() {
        let tmp = TempDb::new();
        let stores = SqliteStores::open(&tmp.file()).await.expect("open");
        let conn = raw(&tmp.file());
        conn.execute_batch(
            "INSERT INTO events (session_id, sequence, id, timestamp, hash, json)
                 VALUES ('s', 1, 'e', 1, 'h', '{not json');
             INSERT INTO campaigns (id, gm_user_id, json) VALUES ('c', 'gm', '[1, 2');
             INSERT INTO events (session_id, sequence, id, timestamp, hash, json)
                 VALUES ('s', 2, 'f', 1, 'h', 12);
             INSERT INTO sessions (id, archived_through) VALUES ('neg', -5);",
        )
        .expect("write damage");
        let session = SessionId::new("s");
        match stores
            .archive()
            .read(&session, Sequence::ZERO, None, 10)
            .await
        {
            Err(ArchiveError::Store(StoreError::Corrupt { .. })) => {}
            other => panic!("expected corrupt, got {other:?}"),
        }
        match stores.archive().read(&session, Sequence(1), None, 10).await {
            Err(ArchiveError::Store(StoreError::Corrupt { .. })) => {}
            other => panic!("a number where text belongs: expected corrupt, got {other:?}"),
        }
        match stores.campaigns().campaign(&CampaignId::new("c")).await {
            Err(StoreError::Corrupt { .. }) => {}
            other => panic!("expected corrupt, got {other:?}"),
        }
        match stores
            .archive()
            .archived_through(&SessionId::new("neg"))
            .await
        {
            Err(ArchiveError::Store(StoreError::Corrupt { .. })) => {}
            other => panic!("expected corrupt, got {other:?}"),
        }
    }

    /// A job that fails rolls back only its own savepoint: what it wrote before failing is
    /// gone, its neighbours in the batch are committed.
    #[tokio::test]
    async fn a_failing_job_rolls_back_only_its_own_writes() {
        let tmp = TempDb::new();
        let stores = SqliteStores::open(&tmp.file()).await.expect("open");
        let insert = |id: &'static str, fail: bool| {
            stores
                .handle
                .write("test write", move |tx| -> Result<(), StoreError> {
                    tx.execute(
                        "INSERT INTO campaigns (id, gm_user_id, json) VALUES (?1, 'gm', '{}')",
                        [id],
                    )
                    .map_err(db("test write"))?;
                    if fail {
                        return Err(StoreError::AlreadyExists(id.to_owned()));
                    }
                    Ok(())
                })
        };
        let (a, b, c) = tokio::join!(insert("a", false), insert("b", true), insert("c", false));
        assert!(a.is_ok() && c.is_ok(), "{a:?} {c:?}");
        assert!(matches!(b, Err(StoreError::AlreadyExists(_))), "{b:?}");
        let ids: Vec<String> = raw(&tmp.file())
            .prepare("SELECT id FROM campaigns ORDER BY id")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("ids");
        assert_eq!(ids, vec!["a".to_owned(), "c".to_owned()]);
    }
}
