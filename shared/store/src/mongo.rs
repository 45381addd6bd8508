//! MongoDB adapters: the durable event archive, campaign data, snapshots and the GM's conflict
//! report.
//!
//! One [`mongodb::Client`] is built at cold start ([`MongoStores::connect`]) and shared by the
//! adapters; the driver pools connections behind it.
//!
//! # Layout
//! - [`MongoConfig`]: connection string, database and timeouts, read once from the environment.
//! - [`MongoStores`]: the shared client, index creation, and the adapters built from it.
//! - [`MongoEventArchive`]: collection `events`; its bookkeeping (`archivedThrough`,
//!   `prunedThrough`, `lastEventAt`, `hot`) in the session's `sessions` document.
//! - [`MongoCampaignStore`]: collections `campaigns`, `actors`, `compendium`, `sessions`.
//! - [`MongoSnapshotStore`]: collections `snapshots` and `snapshot_chunks`.
//! - [`MongoConflictStore`]: collection `conflicts`.
//!
//! # Storage
//!
//! Documents carry their queried fields natively (ids, sequences, names) and, where the value is
//! open JSON (event payloads, actor stat blocks, compendium data, session state), the exact
//! document as a JSON string in field `json`. BSON cannot hold every JSON value (integers above
//! `i64::MAX`, `$`-prefixed keys in some operations) and some servers narrow number types on the
//! way back, so the JSON string is the authoritative copy and round-trips exactly. Campaigns and
//! sessions are fully typed and stored as plain BSON documents with `_id` = their id.
//!
//! Numbers are always read back through serde types, never `get_i64`: MongoDB-compatible
//! servers may answer a small `Int64` as `Int32`, and serde's integer visitors accept both.
//!
//! # Timeouts
//!
//! The submit path (commit → archive write → confirm) must not wait on an unreachable MongoDB:
//! [`EventArchive::insert`] as a whole (server selection, the insert and any collision lookup)
//! is bounded by [`MongoConfig::operation_timeout`] and fails as [`StoreError::Unavailable`]; the
//! commit stands and backfill copies the event later. Every other operation is bounded by the
//! driver's server selection and connect timeouts.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use dlab_core::actor::{Actor, CompendiumEntry};
use dlab_core::canonical::sha256_hex;
use dlab_core::compaction::Snapshot;
use dlab_core::event::GameEvent;
use dlab_core::ids::{ActorId, CampaignId, ConflictId, EventId, Sequence, SessionId, UserId};
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{self, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, Hint, IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, Database, IndexModel};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use thiserror::Error;
use tracing::{debug, info, warn};

use crate::error::{ArchiveError, Chain, ConfigError, StoreError};
use crate::model::{
    ActorKey, Campaign, CampaignKey, CampaignQuotas, CompendiumPage, CompendiumQuery, ConflictKey,
    ConflictRecord, GameSession, Listed, Member, MemberRole, Page, PageFill, PageRequest, Quota,
    QuotaError, Resolution, SessionKey,
};
use crate::ports::{CampaignStore, ConflictStore, EventArchive, SnapshotStore};

/// The MongoDB connection string (required), e.g. `mongodb+srv://…` on Atlas.
pub const MONGODB_URI_VAR: &str = "MONGODB_URI";
/// The database name (default [`DEFAULT_DATABASE`]).
pub const MONGODB_DATABASE_VAR: &str = "MONGODB_DATABASE";
/// Server selection timeout in milliseconds (default [`DEFAULT_SERVER_SELECTION_TIMEOUT`]).
pub const MONGODB_SERVER_SELECTION_TIMEOUT_MS_VAR: &str = "MONGODB_SERVER_SELECTION_TIMEOUT_MS";
/// Bound of the archive write on the submit path in milliseconds (default
/// [`DEFAULT_OPERATION_TIMEOUT`]).
pub const MONGODB_OPERATION_TIMEOUT_MS_VAR: &str = "MONGODB_OPERATION_TIMEOUT_MS";
/// TCP/TLS connect timeout in milliseconds (default [`DEFAULT_CONNECT_TIMEOUT`]).
pub const MONGODB_CONNECT_TIMEOUT_MS_VAR: &str = "MONGODB_CONNECT_TIMEOUT_MS";

/// The database used when [`MONGODB_DATABASE_VAR`] is unset.
pub const DEFAULT_DATABASE: &str = "dungeon_lab";
/// The archive write's bound on the submit path: a slow or unreachable MongoDB costs a submit at
/// most this long.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_millis(300);
/// How long any other operation waits for a usable server. Longer than the submit bound so a
/// cold start's first TLS handshake to Atlas is not cut short; the submit path is bounded by
/// [`DEFAULT_OPERATION_TIMEOUT`] whatever this is.
pub const DEFAULT_SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// How long opening one connection may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Collection of archived events.
pub const EVENTS: &str = "events";
/// Collection of game sessions (with the archive's `archivedThrough`).
pub const SESSIONS: &str = "sessions";
/// Collection of campaigns.
pub const CAMPAIGNS: &str = "campaigns";
/// Collection of campaign actors.
pub const ACTORS: &str = "actors";
/// Collection of compendium templates.
pub const COMPENDIUM: &str = "compendium";
/// Collection of session snapshots.
pub const SNAPSHOTS: &str = "snapshots";
/// Collection of the pieces of snapshots too large for one document.
pub const SNAPSHOT_CHUNKS: &str = "snapshot_chunks";
/// Collection of the GM's conflict report.
pub const CONFLICTS: &str = "conflicts";

/// Bytes of snapshot JSON per `snapshot_chunks` document: well inside MongoDB's 16 MiB document
/// limit, and few round trips for the largest states. A snapshot up to this size is stored
/// inline in its `snapshots` document.
pub const DEFAULT_SNAPSHOT_CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// Largest chunk [`MongoSnapshotStore::with_chunk_bytes`] accepts: a chunk document must stay
/// under 16 MiB with its other fields.
pub const MAX_SNAPSHOT_CHUNK_BYTES: usize = 15 * 1024 * 1024;
/// Smallest chunk accepted: one UTF-8 character always fits, so splitting always advances.
pub const MIN_SNAPSHOT_CHUNK_BYTES: usize = 4;

const BACKEND: &str = "mongodb";
const DUPLICATE_KEY: i32 = 11000;
/// Sequences read per round trip while advancing `archivedThrough`.
const PROGRESS_CHUNK: i64 = 1000;
/// Concurrent upserts of a compendium import.
const IMPORT_CONCURRENCY: usize = 16;
/// Attempts of a member-list compare-and-set that races with other writers.
const MEMBER_ATTEMPTS: usize = 16;
/// Documents per batch of a listing's cursor: with actors of up to 256 KiB, a batch stays a few
/// MiB however large `limit` is.
const LIST_BATCH: usize = 16;

/// Where MongoDB is and how long to wait for it.
#[derive(Clone, PartialEq, Eq)]
pub struct MongoConfig {
    /// Connection string (may hold credentials: never logged, redacted in `Debug`).
    pub uri: String,
    /// Database holding every collection.
    pub database: String,
    /// How long an operation waits for a usable server (the driver's `serverSelectionTimeoutMS`).
    pub server_selection_timeout: Duration,
    /// Bound of the whole archive write on the submit path.
    pub operation_timeout: Duration,
    /// How long opening one connection may take (the driver's `connectTimeoutMS`).
    pub connect_timeout: Duration,
}

impl MongoConfig {
    /// A configuration with the default database and timeouts.
    pub fn new(uri: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            database: DEFAULT_DATABASE.to_owned(),
            server_selection_timeout: DEFAULT_SERVER_SELECTION_TIMEOUT,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// Reads [`MONGODB_URI_VAR`] (required), [`MONGODB_DATABASE_VAR`] and the optional
    /// `*_TIMEOUT_MS` variables through `lookup` (the service's configuration source: the
    /// environment, with the URI from Secrets Manager when its ARN is given).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let present = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let uri = present(MONGODB_URI_VAR).ok_or(ConfigError::Missing(MONGODB_URI_VAR))?;
        let mut config = Self::new(uri);
        if let Some(database) = present(MONGODB_DATABASE_VAR) {
            config.database = database;
        }
        let millis = |variable: &'static str, default: Duration| match present(variable) {
            None => Ok(default),
            Some(value) => match value.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
                _ => Err(ConfigError::Invalid {
                    name: variable,
                    reason: format!(
                        "must be a positive whole number of milliseconds, got {value:?}"
                    ),
                }),
            },
        };
        config.server_selection_timeout = millis(
            MONGODB_SERVER_SELECTION_TIMEOUT_MS_VAR,
            DEFAULT_SERVER_SELECTION_TIMEOUT,
        )?;
        config.operation_timeout =
            millis(MONGODB_OPERATION_TIMEOUT_MS_VAR, DEFAULT_OPERATION_TIMEOUT)?;
        config.connect_timeout = millis(MONGODB_CONNECT_TIMEOUT_MS_VAR, DEFAULT_CONNECT_TIMEOUT)?;
        Ok(config)
    }
}

impl fmt::Debug for MongoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoConfig")
            .field("uri", &redact(&self.uri))
            .field("database", &self.database)
            .field("server_selection_timeout", &self.server_selection_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// The connection string without its user information.
fn redact(uri: &str) -> String {
    match uri.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => uri.to_owned(),
            }
        }
        None => uri.to_owned(),
    }
}

/// The shared client and database, from which the adapters are made.
#[derive(Debug, Clone)]
pub struct MongoStores {
    client: Client,
    database: Database,
    operation_timeout: Duration,
}

impl MongoStores {
    /// Builds the client and creates every index (idempotent). Use at the cold start of a
    /// process that may fail when MongoDB is down.
    pub async fn connect(config: &MongoConfig) -> Result<Self, StoreError> {
        let stores = Self::open(config).await?;
        stores.ensure_indexes().await?;
        Ok(stores)
    }

    /// Builds the client without contacting the server (no index creation), so a process whose
    /// main work does not need MongoDB (the submit path) can start while it is down. Indexes are
    /// then created by whichever process calls [`MongoStores::connect`] or
    /// [`MongoStores::ensure_indexes`].
    pub async fn open(config: &MongoConfig) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(&config.uri)
            .await
            .map_err(|e| StoreError::unavailable(BACKEND, "parse connection string", e))?;
        options.app_name = Some("dungeon-lab".to_owned());
        options.server_selection_timeout = Some(config.server_selection_timeout);
        options.connect_timeout = Some(config.connect_timeout);
        let client = Client::with_options(options)
            .map_err(|e| StoreError::unavailable(BACKEND, "build client", e))?;
        let database = client.database(&config.database);
        Ok(Self {
            client,
            database,
            operation_timeout: config.operation_timeout,
        })
    }

    /// Creates every index the adapters rely on. Idempotent: an existing index with the same keys
    /// and options is left as it is.
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let unique = || IndexOptions::builder().unique(true).build();
        let plan: [(&str, Vec<IndexModel>); 8] = [
            (
                EVENTS,
                vec![
                    index(doc! {"sessionId": 1, "sequence": 1}, Some(unique())),
                    index(doc! {"sessionId": 1, "id": 1}, Some(unique())),
                ],
            ),
            (
                SESSIONS,
                vec![
                    index(doc! {"campaignId": 1, "createdAt": -1, "id": -1}, None),
                    index(activity_index(), None),
                    index(hot_index(), None),
                ],
            ),
            (
                CAMPAIGNS,
                vec![
                    index(doc! {"gmUserId": 1, "id": 1}, None),
                    index(doc! {"members.userId": 1, "id": 1}, None),
                ],
            ),
            (
                ACTORS,
                vec![
                    index(doc! {"campaignId": 1, "id": 1}, Some(unique())),
                    index(doc! {"campaignId": 1, "name": 1, "id": 1}, None),
                ],
            ),
            (
                COMPENDIUM,
                vec![index(doc! {"system": 1, "category": 1}, None)],
            ),
            (
                SNAPSHOTS,
                vec![index(
                    doc! {"sessionId": 1, "upToSequence": -1},
                    Some(unique()),
                )],
            ),
            (
                SNAPSHOT_CHUNKS,
                vec![index(
                    doc! {"sessionId": 1, "upToSequence": 1, "generation": 1, "n": 1},
                    Some(unique()),
                )],
            ),
            (
                CONFLICTS,
                vec![
                    index(doc! {"sessionId": 1, "conflictId": 1}, Some(unique())),
                    index(
                        doc! {"sessionId": 1, "createdAt": -1, "conflictId": -1},
                        None,
                    ),
                ],
            ),
        ];
        for (collection, indexes) in plan {
            self.database
                .collection::<Document>(collection)
                .create_indexes(indexes)
                .await
                .map_err(|e| StoreError::unavailable(BACKEND, "create indexes", e))?;
        }
        info!(database = %self.database.name(), "mongodb indexes ensured");
        Ok(())
    }

    /// The shared client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The database holding every collection.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// The event archive.
    pub fn archive(&self) -> MongoEventArchive {
        MongoEventArchive {
            events: self.database.collection(EVENTS),
            sessions: self.database.collection(SESSIONS),
            operation_timeout: self.operation_timeout,
            indexes_checked: std::sync::Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// The campaign store.
    pub fn campaigns(&self) -> MongoCampaignStore {
        MongoCampaignStore {
            campaigns: self.database.collection(CAMPAIGNS),
            actors: self.database.collection(ACTORS),
            compendium: self.database.collection(COMPENDIUM),
            sessions: self.database.collection(SESSIONS),
        }
    }

    /// The snapshot store, chunking at [`DEFAULT_SNAPSHOT_CHUNK_BYTES`].
    pub fn snapshots(&self) -> MongoSnapshotStore {
        MongoSnapshotStore {
            snapshots: self.database.collection(SNAPSHOTS),
            chunks: self.database.collection(SNAPSHOT_CHUNKS),
            chunk_bytes: DEFAULT_SNAPSHOT_CHUNK_BYTES,
        }
    }

    /// The GM's conflict report.
    pub fn conflicts(&self) -> MongoConflictStore {
        MongoConflictStore {
            conflicts: self.database.collection(CONFLICTS),
        }
    }
}

fn index(keys: Document, options: Option<IndexOptions>) -> IndexModel {
    IndexModel::builder().keys(keys).options(options).build()
}

/// Whether `index` is unique on exactly `keys`, ascending, in this order.
fn is_unique_on(index: &IndexModel, keys: &[&str]) -> bool {
    let unique = index
        .options
        .as_ref()
        .and_then(|o| o.unique)
        .unwrap_or(false);
    let fields: Vec<&str> = index.keys.keys().map(String::as_str).collect();
    let ascending = index.keys.values().all(|v| match v {
        bson::Bson::Int32(1) => true,
        bson::Bson::Int64(1) => true,
        bson::Bson::Double(d) => *d == 1.0,
        _ => false,
    });
    unique && ascending && fields == keys
}

/// Whether a driver error is a unique-index violation (code 11000).
fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == DUPLICATE_KEY,
        ErrorKind::Command(e) => e.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(e) => e
            .write_errors
            .as_ref()
            .is_some_and(|errors| errors.iter().any(|w| w.code == DUPLICATE_KEY)),
        _ => false,
    }
}

fn unavailable(operation: &'static str) -> impl Fn(mongodb::error::Error) -> StoreError {
    move |e| StoreError::unavailable(BACKEND, operation, e)
}

/// A count or sequence as BSON's signed 64-bit integer.
fn to_i64(value: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|e| StoreError::corrupt(BACKEND, what, e))
}

/// A `u64` bound of a query, saturating (a bound above `i64::MAX` matches everything stored).
fn bound(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn decode<T: DeserializeOwned>(doc: Document, what: &'static str) -> Result<T, StoreError> {
    bson::from_document(doc).map_err(|e| StoreError::corrupt(BACKEND, what, e))
}

fn encode<T: serde::Serialize>(value: &T, what: &'static str) -> Result<Document, StoreError> {
    bson::to_document(value).map_err(|e| StoreError::corrupt(BACKEND, what, e))
}

fn to_json<T: serde::Serialize>(value: &T, what: &'static str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::corrupt(BACKEND, what, e))
}

/// The field every open-JSON document keeps its exact copy in.
#[derive(Deserialize)]
struct JsonField {
    json: String,
}

fn decode_json<T: DeserializeOwned>(doc: Document, what: &'static str) -> Result<T, StoreError> {
    let JsonField { json } = decode(doc, what)?;
    serde_json::from_str(&json).map_err(|e| StoreError::corrupt(BACKEND, what, e))
}

async fn collect(
    cursor: mongodb::Cursor<Document>,
    operation: &'static str,
) -> Result<Vec<Document>, StoreError> {
    cursor.try_collect().await.map_err(unavailable(operation))
}

/// Reads one page from a cursor opened with `limit + 1` (one item of look-ahead), decoding and
/// offering documents one at a time, so at most one batch and the page are held in memory.
async fn read_page<T: serde::Serialize + Listed>(
    mut cursor: mongodb::Cursor<Document>,
    limit: usize,
    max_bytes: usize,
    decode_item: impl Fn(Document) -> Result<T, StoreError>,
    operation: &'static str,
) -> Result<Page<T, T::Key>, StoreError> {
    let mut fill = PageFill::new(limit, max_bytes);
    while let Some(document) = cursor.try_next().await.map_err(unavailable(operation))? {
        let item = decode_item(document)?;
        if !fill
            .offer(item)
            .map_err(|e| StoreError::corrupt(BACKEND, operation, e))?
        {
            break;
        }
    }
    Ok(fill.into_page())
}

/// `limit + 1` (the look-ahead) as the driver's limit, and a batch size bounded by
/// [`LIST_BATCH`].
fn look_ahead(limit: usize) -> (i64, u32) {
    let fetch = limit.saturating_add(1);
    (
        i64::try_from(fetch).unwrap_or(i64::MAX),
        u32::try_from(fetch.min(LIST_BATCH)).unwrap_or(1),
    )
}

/// The campaign document's counter of a quota.
fn counter_field(quota: Quota) -> &'static str {
    match quota {
        Quota::Actors => "actorCount",
        Quota::Sessions => "sessionCount",
    }
}

/// How often a reservation re-reads a campaign whose counter was being initialised.
const RESERVE_ATTEMPTS: usize = 3;

/// The compare-and-set counter of a campaign document's member list.
#[derive(Deserialize)]
struct Revision {
    #[serde(default)]
    revision: Option<u64>,
}

/// Where an archived event sits, as read back for collision checks, progress and dedup.
#[derive(Deserialize)]
struct ArchivedId {
    id: String,
    sequence: u64,
}

#[derive(Deserialize)]
struct ArchivedHash {
    id: String,
    sequence: u64,
    hash: String,
}

#[derive(Deserialize)]
struct ArchivedSequence {
    sequence: u64,
}

/// The archive's bookkeeping in a session's `sessions` document.
#[derive(Deserialize, Default)]
struct Progress {
    #[serde(rename = "archivedThrough", default)]
    archived_through: u64,
    #[serde(rename = "prunedThrough", default)]
    pruned_through: u64,
}

/// The index `active_since` reads: the range of sessions with an event since a time.
fn activity_index() -> Document {
    doc! {"lastEventAt": 1}
}

/// The index `idle_hot` reads: hot sessions by the time of their last event.
fn hot_index() -> Document {
    doc! {"hot": 1, "lastEventAt": 1}
}

/// A session id as read back from a `sessions` document.
#[derive(Deserialize)]
struct SessionIdField {
    #[serde(rename = "_id")]
    id: String,
}

async fn session_ids(
    cursor: mongodb::Cursor<Document>,
    operation: &'static str,
) -> Result<Vec<SessionId>, ArchiveError> {
    collect(cursor, operation)
        .await?
        .into_iter()
        .map(|d| {
            let SessionIdField { id } = decode(d, "session id")?;
            Ok(SessionId::new(id))
        })
        .collect()
}

/// The durable archive in MongoDB.
///
/// One document per event in `events`: `sessionId`, `sequence`, `id`, `type`, `userId`,
/// `timestamp`, `hash` (the content hash, for rehydrating dedup) and `json` (the exact event).
/// Unique indexes on `(sessionId, sequence)` and `(sessionId, id)` make the insert its own
/// collision check. The archive's bookkeeping is kept in the session's `sessions` document
/// (`_id` = the session id); when the archive gets there before the session document exists,
/// it upserts a document holding just its own fields, which
/// [`MongoCampaignStore::create_session`] later completes:
/// - `archivedThrough`, only ever raised (`$max`);
/// - `prunedThrough` (retention), only ever raised; a prune raises `archivedThrough` to it in
///   the same update, so the events it removes never lower the watermark;
/// - `lastEventAt` (only raised) and `hot`, for the maintenance runs: `active_since` reads the
///   `{lastEventAt}` index by range and `idle_hot` the `{hot, lastEventAt}` index. Both queries
///   name their index (`hint`), so the work is bounded by the sessions active since the time
///   (sorted by id, at most `limit` kept) or the hot ones idle before it, never every session;
///   without the index (`migrate` not run) they fail rather than scan.
///
/// The unique indexes are what make an insert its own dedup and collision fence, and they are
/// created by the explicit `migrate` step, not at a Lambda's cold start. So the first insert of
/// each process checks once that both exist (by their keys and `unique` flag, not by name:
/// servers name indexes differently) and refuses every write with
/// [`ArchiveError::IndexesMissing`] until they do. A failed check is not remembered: the next
/// insert checks again.
#[derive(Debug, Clone)]
pub struct MongoEventArchive {
    events: Collection<Document>,
    sessions: Collection<Document>,
    operation_timeout: Duration,
    indexes_checked: std::sync::Arc<tokio::sync::OnceCell<()>>,
}

/// The unique indexes of `events` the archive's correctness rests on.
const ARCHIVE_UNIQUE_INDEXES: [[&str; 2]; 2] = [["sessionId", "sequence"], ["sessionId", "id"]];

impl MongoEventArchive {
    /// Succeeds once both unique indexes of `events` exist; see the type's docs.
    async fn check_indexes(&self) -> Result<(), ArchiveError> {
        self.indexes_checked
            .get_or_try_init(|| async {
                let cursor = self
                    .events
                    .list_indexes()
                    .await
                    .map_err(unavailable("list archive indexes"))?;
                let indexes: Vec<IndexModel> = cursor
                    .try_collect()
                    .await
                    .map_err(unavailable("list archive indexes"))?;
                let missing: Vec<String> = ARCHIVE_UNIQUE_INDEXES
                    .iter()
                    .filter(|keys| !indexes.iter().any(|i| is_unique_on(i, &keys[..])))
                    .map(|keys| keys.join("+"))
                    .collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    tracing::error!(collection = EVENTS, missing = ?missing,
                        "the archive's unique indexes are missing: refusing writes until `migrate` creates them");
                    Err(ArchiveError::IndexesMissing {
                        collection: EVENTS,
                        missing,
                    })
                }
            })
            .await
            .map(|_| ())
    }

    async fn insert_unbounded(&self, event: &GameEvent) -> Result<(), ArchiveError> {
        self.check_indexes().await?;
        let document = doc! {
            "sessionId": event.session_id.as_str(),
            "sequence": to_i64(event.sequence.get(), "event sequence")?,
            "id": event.id.as_str(),
            "type": event.event_type.as_str(),
            "userId": event.user_id.as_str(),
            "timestamp": to_i64(event.timestamp, "event timestamp")?,
            "hash": event.content_hash(),
            "json": to_json(event, "event")?,
        };
        match self.events.insert_one(document).await {
            Ok(_) => {
                debug!(session = %event.session_id, seq = event.sequence.get(), "event archived");
                Ok(())
            }
            Err(e) if is_duplicate_key(&e) => self.explain_duplicate(event, e).await,
            Err(e) => Err(StoreError::unavailable(BACKEND, "archive insert", e).into()),
        }
    }

    /// Decides what a unique-index violation means: the same event again (fine), another event
    /// at this sequence, or this event at another sequence.
    async fn explain_duplicate(
        &self,
        event: &GameEvent,
        original: mongodb::error::Error,
    ) -> Result<(), ArchiveError> {
        let session = event.session_id.as_str();
        let sequence = to_i64(event.sequence.get(), "event sequence")?;
        let projection = doc! {"_id": 0, "id": 1, "sequence": 1};
        let at_sequence = self
            .events
            .find_one(doc! {"sessionId": session, "sequence": sequence})
            .projection(projection.clone())
            .await
            .map_err(unavailable("archive collision lookup"))?;
        if let Some(held) = at_sequence {
            let held: ArchivedId = decode(held, "archived event id")?;
            if held.id == event.id.as_str() {
                debug!(
                    session,
                    seq = event.sequence.get(),
                    "event already archived"
                );
                return Ok(());
            }
            warn!(
                session,
                seq = event.sequence.get(),
                id = %event.id,
                existing = %held.id,
                "archive sequence collision: the sequence counter went back"
            );
            return Err(ArchiveError::SequenceCollision {
                session: event.session_id.clone(),
                sequence: event.sequence,
                existing: held.id,
            });
        }
        let with_id = self
            .events
            .find_one(doc! {"sessionId": session, "id": event.id.as_str()})
            .projection(projection)
            .await
            .map_err(unavailable("archive collision lookup"))?;
        if let Some(other) = with_id {
            let other: ArchivedId = decode(other, "archived event id")?;
            warn!(
                session,
                seq = event.sequence.get(),
                id = %event.id,
                existing = other.sequence,
                "archive id collision: the event is archived at another sequence"
            );
            return Err(ArchiveError::IdCollision {
                session: event.session_id.clone(),
                id: other.id,
                existing: Sequence(other.sequence),
            });
        }
        // The conflicting document is gone again (retention, a concurrent delete): retryable.
        Err(StoreError::unavailable(BACKEND, "archive insert", original).into())
    }

    /// Raises the stored `archivedThrough` to at least `through`; returns the stored value.
    async fn raise_progress(&self, session: &SessionId, through: u64) -> Result<u64, StoreError> {
        let value = to_i64(through, "archivedThrough")?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .sessions
                .find_one_and_update(
                    doc! {"_id": session.as_str()},
                    doc! {"$max": {"archivedThrough": value}},
                )
                .upsert(true)
                .return_document(ReturnDocument::After)
                .projection(doc! {"_id": 0, "archivedThrough": 1})
                .await;
            match result {
                Ok(Some(doc)) => {
                    return Ok(decode::<Progress>(doc, "archivedThrough")?.archived_through);
                }
                Ok(None) => return Ok(through),
                // Two upserts of a missing document raced; the other one created it.
                Err(e) if is_duplicate_key(&e) && attempt < 2 => continue,
                Err(e) => return Err(StoreError::unavailable(BACKEND, "store archivedThrough", e)),
            }
        }
    }
    /// The session's archive bookkeeping (zeros when it has no document).
    async fn progress(
        &self,
        session: &SessionId,
        operation: &'static str,
    ) -> Result<Progress, StoreError> {
        Ok(self
            .sessions
            .find_one(doc! {"_id": session.as_str()})
            .projection(doc! {"_id": 0, "archivedThrough": 1, "prunedThrough": 1})
            .await
            .map_err(unavailable(operation))?
            .map(|d| decode::<Progress>(d, "archive progress"))
            .transpose()?
            .unwrap_or_default())
    }

    /// Applies `update` to the session's `sessions` document, creating it when missing (the
    /// archive may get there before the session is created; see the type's docs).
    async fn upsert_session(
        &self,
        session: &SessionId,
        update: Document,
        operation: &'static str,
    ) -> Result<(), StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .sessions
                .update_one(doc! {"_id": session.as_str()}, update.clone())
                .upsert(true)
                .await
            {
                Ok(_) => return Ok(()),
                // Two upserts of a missing document raced; the other one created it.
                Err(e) if is_duplicate_key(&e) && attempt < 2 => continue,
                Err(e) => return Err(StoreError::unavailable(BACKEND, operation, e)),
            }
        }
    }

    /// The highest sequence a prune may delete through: the last stored event before the first
    /// one (from the lowest stored, up to `through`) that is not older than `older_than`, so
    /// what stays is contiguous. `None` when nothing qualifies.
    async fn prune_cutoff(
        &self,
        session: &SessionId,
        through: Sequence,
        older_than: u64,
    ) -> Result<Option<u64>, StoreError> {
        let through = bound(through.get());
        let blocker = self
            .events
            .find_one(doc! {
                "sessionId": session.as_str(),
                "sequence": {"$lte": through},
                "timestamp": {"$gte": bound(older_than)},
            })
            .sort(doc! {"sequence": 1})
            .projection(doc! {"_id": 0, "sequence": 1})
            .await
            .map_err(unavailable("find prune limit"))?
            .map(|d| decode::<ArchivedSequence>(d, "archived sequence"))
            .transpose()?;
        let upper = match blocker {
            Some(ArchivedSequence { sequence }) => bound(sequence.saturating_sub(1)),
            None => through,
        };
        if upper < 1 {
            return Ok(None);
        }
        let last = self
            .events
            .find_one(doc! {"sessionId": session.as_str(), "sequence": {"$lte": upper}})
            .sort(doc! {"sequence": -1})
            .projection(doc! {"_id": 0, "sequence": 1})
            .await
            .map_err(unavailable("find prune limit"))?
            .map(|d| decode::<ArchivedSequence>(d, "archived sequence"))
            .transpose()?;
        Ok(last.map(|l| l.sequence))
    }
}

#[async_trait]
impl EventArchive for MongoEventArchive {
    async fn insert(&self, event: &GameEvent) -> Result<(), ArchiveError> {
        match tokio::time::timeout(self.operation_timeout, self.insert_unbounded(event)).await {
            Ok(result) => result,
            Err(elapsed) => {
                warn!(
                    session = %event.session_id,
                    seq = event.sequence.get(),
                    timeout_ms = self.operation_timeout.as_millis() as u64,
                    "archive insert timed out"
                );
                Err(StoreError::unavailable(BACKEND, "archive insert", elapsed).into())
            }
        }
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
        let mut range = doc! {"$gt": bound(after.get())};
        if let Some(to) = to {
            range.insert("$lte", bound(to.get()));
        }
        let cursor = self
            .events
            .find(doc! {"sessionId": session.as_str(), "sequence": range})
            .sort(doc! {"sequence": 1})
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .projection(doc! {"_id": 0, "json": 1})
            .await
            .map_err(unavailable("archive read"))?;
        let docs = collect(cursor, "archive read").await?;
        docs.into_iter()
            .map(|d| decode_json::<GameEvent>(d, "archived event").map_err(ArchiveError::from))
            .collect()
    }

    async fn archived_through(&self, session: &SessionId) -> Result<Sequence, ArchiveError> {
        let stored = self
            .progress(session, "read archivedThrough")
            .await?
            .archived_through;
        let mut through = stored;
        loop {
            let cursor = self
                .events
                .find(doc! {"sessionId": session.as_str(), "sequence": {"$gt": bound(through)}})
                .sort(doc! {"sequence": 1})
                .limit(PROGRESS_CHUNK)
                .projection(doc! {"_id": 0, "sequence": 1})
                .await
                .map_err(unavailable("advance archivedThrough"))?;
            let docs = collect(cursor, "advance archivedThrough").await?;
            let full = docs.len() as i64 == PROGRESS_CHUNK;
            let mut contiguous = true;
            for d in docs {
                let ArchivedSequence { sequence } = decode(d, "archived sequence")?;
                if sequence != through + 1 {
                    contiguous = false;
                    break;
                }
                through = sequence;
            }
            if !(contiguous && full) {
                break;
            }
        }
        if through > stored {
            through = self.raise_progress(session, through).await?;
            debug!(session = %session, through, "archivedThrough advanced");
        }
        Ok(Sequence(through))
    }

    async fn ids(
        &self,
        session: &SessionId,
    ) -> Result<Vec<(EventId, Sequence, String)>, ArchiveError> {
        let cursor = self
            .events
            .find(doc! {"sessionId": session.as_str()})
            .sort(doc! {"sequence": 1})
            .projection(doc! {"_id": 0, "id": 1, "sequence": 1, "hash": 1})
            .await
            .map_err(unavailable("archive ids"))?;
        let docs = collect(cursor, "archive ids").await?;
        docs.into_iter()
            .map(|d| {
                let ArchivedHash { id, sequence, hash } = decode(d, "archived event id")?;
                Ok((EventId::new(id), Sequence(sequence), hash))
            })
            .collect()
    }

    async fn touch(&self, session: &SessionId, at: u64) -> Result<(), ArchiveError> {
        let at = to_i64(at, "lastEventAt")?;
        self.upsert_session(
            session,
            doc! {"$max": {"lastEventAt": at}, "$set": {"hot": true}},
            "touch session",
        )
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
        let mut filter = doc! {"lastEventAt": {"$gte": bound(since)}};
        if let Some(after) = after {
            filter.insert("_id", doc! {"$gt": after.as_str()});
        }
        let cursor = self
            .sessions
            .find(filter)
            .sort(doc! {"_id": 1})
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .hint(Hint::Keys(activity_index()))
            .projection(doc! {"_id": 1})
            .await
            .map_err(unavailable("list active sessions"))?;
        session_ids(cursor, "list active sessions").await
    }

    async fn idle_hot(&self, before: u64, limit: usize) -> Result<Vec<SessionId>, ArchiveError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let cursor = self
            .sessions
            .find(doc! {"hot": true, "lastEventAt": {"$lt": bound(before)}})
            .sort(doc! {"lastEventAt": 1, "_id": 1})
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .hint(Hint::Keys(hot_index()))
            .projection(doc! {"_id": 1})
            .await
            .map_err(unavailable("list idle hot sessions"))?;
        session_ids(cursor, "list idle hot sessions").await
    }

    async fn set_hot(&self, session: &SessionId, hot: bool) -> Result<(), ArchiveError> {
        // `$max` of 0 gives a session never touched an activity time, as the memory adapter
        // does, without lowering a real one.
        self.upsert_session(
            session,
            doc! {"$set": {"hot": hot}, "$max": {"lastEventAt": 0_i64}},
            "set hot flag",
        )
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
        let Some(cutoff) = self.prune_cutoff(session, through, older_than).await? else {
            return Ok(0);
        };
        let cutoff_i64 = to_i64(cutoff, "prunedThrough")?;
        // Recorded before the delete: a crash in between leaves old events that are already
        // counted as pruned (the next run deletes them), never a hole the watermarks miss.
        self.upsert_session(
            session,
            doc! {"$max": {"prunedThrough": cutoff_i64, "archivedThrough": cutoff_i64}},
            "store prunedThrough",
        )
        .await?;
        let deleted = self
            .events
            .delete_many(doc! {"sessionId": session.as_str(), "sequence": {"$lte": cutoff_i64}})
            .await
            .map_err(unavailable("prune archive"))?;
        info!(session = %session, through = cutoff, removed = deleted.deleted_count,
              "archived events pruned");
        Ok(deleted.deleted_count)
    }

    async fn pruned_through(&self, session: &SessionId) -> Result<Sequence, ArchiveError> {
        Ok(Sequence(
            self.progress(session, "read prunedThrough")
                .await?
                .pruned_through,
        ))
    }
}

/// Campaigns, members, actors, compendium templates and game sessions in MongoDB.
///
/// - `campaigns`: the [`Campaign`] document with `_id` = its id and a `revision` counter. A
///   member change rewrites the whole `members` list with a compare-and-set on `revision`
///   (retried on a race), so concurrent changes are never lost. Array update operators
///   (`members.$`, `$push` of documents, `$ne` on an array path) are avoided: the nx-27017 test
///   server gets them wrong, and the list is small. The document also counts its actors and
///   sessions (`actorCount`, `sessionCount`) for the quotas.
/// - `actors`: `campaignId`, `id`, `name`, `type`, `compendiumRef` and the exact actor as `json`;
///   unique `(campaignId, id)`, listed through `(campaignId, name, id)`.
/// - `compendium`: `_id` = `ref`, with `system`, `category`, `name` and the exact entry as `json`.
/// - `sessions`: the [`GameSession`] document with `_id` = its id, listed through
///   `(campaignId, createdAt desc, id desc)`. `archivedThrough` belongs to the archive: it is
///   only ever raised (`$max`), so an update carrying an older value does not lower it, and
///   reads return the stored value.
///
/// # Listings
///
/// Each page is one range query from the cursor's key along its index, sorted by the index,
/// limited to `limit + 1` (the look-ahead that tells whether more follow) and read in small
/// batches, stopping at the byte budget. No listing skips or loads the whole collection.
///
/// # Quotas
///
/// A create first takes a slot with one conditional `$inc` of the campaign's counter (it only
/// matches below the limit, so concurrent creates cannot pass it together), then inserts; an
/// insert refused for a taken id gives the slot back, and so does a delete. An insert whose
/// outcome is unknown (a timeout) keeps its slot. The two steps are not one transaction: a
/// crash between them (or a give-back that fails) leaves the counter one high,
/// so the campaign reaches its quota one item early. The error is always on the safe side:
/// nothing over the quota is ever stored. An operator resets a counter by setting it to the
/// count of the campaign's actors or sessions while nobody creates any.
#[derive(Debug, Clone)]
pub struct MongoCampaignStore {
    campaigns: Collection<Document>,
    actors: Collection<Document>,
    compendium: Collection<Document>,
    sessions: Collection<Document>,
}

impl MongoCampaignStore {
    fn actor_document(actor: &Actor) -> Result<Document, StoreError> {
        let mut document = doc! {
            "campaignId": actor.campaign_id.as_str(),
            "id": actor.id.as_str(),
            "name": actor.name.as_str(),
            "type": actor.actor_type.as_str(),
        };
        if let Some(reference) = &actor.compendium_ref {
            document.insert("compendiumRef", reference.as_str());
        }
        document.insert("json", to_json(actor, "actor")?);
        Ok(document)
    }

    /// Applies `edit` to a campaign's member list (it returns whether it changed anything) and
    /// stores the list with a compare-and-set on the document's `revision`, re-reading and
    /// re-applying when another writer got there first. Returns the campaign as stored, `None`
    /// when it does not exist.
    async fn edit_members(
        &self,
        campaign: &CampaignId,
        mut edit: impl FnMut(&mut Vec<Member>) -> bool + Send,
    ) -> Result<Option<Campaign>, StoreError> {
        for _ in 0..MEMBER_ATTEMPTS {
            let Some(document) = self
                .campaigns
                .find_one(doc! {"_id": campaign.as_str()})
                .await
                .map_err(unavailable("read campaign"))?
            else {
                return Ok(None);
            };
            let Revision { revision } = decode(document.clone(), "campaign revision")?;
            let mut current: Campaign = decode(document, "campaign")?;
            if !edit(&mut current.members) {
                return Ok(Some(current));
            }
            let members = bson::to_bson(&current.members)
                .map_err(|e| StoreError::corrupt(BACKEND, "campaign members", e))?;
            let filter = match revision {
                Some(r) => doc! {"_id": campaign.as_str(), "revision": to_i64(r, "revision")?},
                None => doc! {"_id": campaign.as_str(), "revision": {"$exists": false}},
            };
            let next = to_i64(revision.map_or(1, |r| r + 1), "revision")?;
            let result = self
                .campaigns
                .update_one(
                    filter,
                    doc! {"$set": {"members": members, "revision": next}},
                )
                .await
                .map_err(unavailable("update members"))?;
            if result.matched_count > 0 {
                return Ok(Some(current));
            }
            debug!(campaign = %campaign, "member update raced another writer; retrying");
        }
        Err(StoreError::unavailable(
            BACKEND,
            "update members",
            "the campaign kept changing under the update",
        ))
    }

    /// Takes one slot of a campaign's count quota: one conditional `$inc` of the campaign
    /// document's counter (`actorCount` / `sessionCount`) that matches only while the counter is
    /// below the limit, so of concurrent creators exactly as many succeed as slots are left.
    /// A campaign stored before counters existed gets its counter set once from a count of
    /// what it holds.
    async fn reserve(
        &self,
        campaign: &CampaignId,
        quota: Quota,
        limit: u64,
    ) -> Result<(), QuotaError> {
        self.reserve_n(campaign, quota, limit, 1).await
    }

    /// Takes `n` slots at once, or none.
    async fn reserve_n(
        &self,
        campaign: &CampaignId,
        quota: Quota,
        limit: u64,
        n: u64,
    ) -> Result<(), QuotaError> {
        let field = counter_field(quota);
        let Some(most_before) = limit.checked_sub(n) else {
            return Err(QuotaError::Exceeded {
                campaign: campaign.clone(),
                quota,
                limit,
            });
        };
        for _ in 0..RESERVE_ATTEMPTS {
            let taken = self
                .campaigns
                .update_one(
                    doc! {"_id": campaign.as_str(), field: {"$lte": bound(most_before)}},
                    doc! {"$inc": {field: bound(n)}},
                )
                .await
                .map_err(unavailable("reserve quota"))?;
            if taken.matched_count > 0 {
                return Ok(());
            }
            let Some(document) = self
                .campaigns
                .find_one(doc! {"_id": campaign.as_str()})
                .projection(doc! {field: 1})
                .await
                .map_err(unavailable("read quota"))?
            else {
                return Err(QuotaError::NoCampaign(campaign.clone()));
            };
            if document.contains_key(field) {
                return Err(QuotaError::Exceeded {
                    campaign: campaign.clone(),
                    quota,
                    limit,
                });
            }
            let counted = match quota {
                Quota::Actors => &self.actors,
                Quota::Sessions => &self.sessions,
            }
            .count_documents(doc! {"campaignId": campaign.as_str()})
            .await
            .map_err(unavailable("count for quota"))?;
            info!(campaign = %campaign, %quota, counted, "quota counter initialised");
            self.campaigns
                .update_one(
                    doc! {"_id": campaign.as_str(), field: {"$exists": false}},
                    doc! {"$set": {field: bound(counted)}},
                )
                .await
                .map_err(unavailable("initialise quota"))?;
        }
        Err(StoreError::unavailable(
            BACKEND,
            "reserve quota",
            "the campaign's quota counter kept changing",
        )
        .into())
    }

    /// Gives a slot back (a delete, or a create whose insert failed). A failure here is
    /// logged, not returned: the counter stays one high, so the campaign reaches its quota one
    /// item early, and nothing over the quota is ever stored.
    async fn release(&self, campaign: &CampaignId, quota: Quota) {
        self.release_n(campaign, quota, 1).await;
    }

    /// Gives `n` slots back (see [`Self::release`]).
    async fn release_n(&self, campaign: &CampaignId, quota: Quota, n: u64) {
        let field = counter_field(quota);
        if let Err(e) = self
            .campaigns
            .update_one(
                doc! {"_id": campaign.as_str(), field: {"$gte": bound(n)}},
                doc! {"$inc": {field: -bound(n)}},
            )
            .await
        {
            warn!(campaign = %campaign, %quota, error = %Chain(&e),
                  "a quota slot could not be given back; the counter stays one high");
        }
    }

    fn actor_key(campaign: &CampaignId, id: &ActorId) -> Document {
        doc! {"campaignId": campaign.as_str(), "id": id.as_str()}
    }

    async fn put_entry(&self, entry: &CompendiumEntry) -> Result<(), StoreError> {
        let mut document = doc! {
            "_id": entry.reference.as_str(),
            "system": entry.system.as_str(),
            "category": entry.category.as_str(),
            "name": entry.name.as_str(),
            "json": to_json(entry, "compendium entry")?,
        };
        // The search filters' fields, beside the opaque JSON.
        if let Some(cr) = entry.challenge_rating() {
            document.insert("cr", cr);
        }
        if let Some(level) = entry.spell_level() {
            document.insert("level", level);
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .compendium
                .replace_one(doc! {"_id": entry.reference.as_str()}, &document)
                .upsert(true)
                .await
            {
                Ok(_) => return Ok(()),
                // Two upserts of a new reference raced; the other one inserted it.
                Err(e) if is_duplicate_key(&e) && attempt < 2 => continue,
                Err(e) => return Err(StoreError::unavailable(BACKEND, "put compendium", e)),
            }
        }
    }

    /// Completes a session document the archive made before the session was created (it holds
    /// only `archivedThrough`); a real session (with a campaign) is a duplicate.
    async fn adopt_session(&self, session: &GameSession) -> Result<(), StoreError> {
        let adopted = self
            .sessions
            .update_one(
                doc! {"_id": session.id.as_str(), "campaignId": {"$exists": false}},
                Self::session_update(session)?,
            )
            .await
            .map_err(unavailable("create session"))?;
        if adopted.matched_count > 0 {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists(format!("session {}", session.id)))
        }
    }

    /// The session's fields for `$set`, and its `archivedThrough` for `$max`.
    fn session_update(session: &GameSession) -> Result<Document, StoreError> {
        let mut fields = encode(session, "session")?;
        fields.remove("archivedThrough");
        Ok(doc! {
            "$set": fields,
            "$max": {"archivedThrough": to_i64(session.archived_through, "archivedThrough")?},
        })
    }
}

#[async_trait]
impl CampaignStore for MongoCampaignStore {
    async fn create_campaign(&self, campaign: &Campaign) -> Result<(), StoreError> {
        let mut document = encode(campaign, "campaign")?;
        document.insert("_id", campaign.id.as_str());
        document.insert("revision", 0_i64);
        document.insert(counter_field(Quota::Actors), 0_i64);
        document.insert(counter_field(Quota::Sessions), 0_i64);
        match self.campaigns.insert_one(document).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Err(StoreError::AlreadyExists(format!(
                "campaign {}",
                campaign.id
            ))),
            Err(e) => Err(StoreError::unavailable(BACKEND, "create campaign", e)),
        }
    }

    async fn campaign(&self, id: &CampaignId) -> Result<Option<Campaign>, StoreError> {
        self.campaigns
            .find_one(doc! {"_id": id.as_str()})
            .await
            .map_err(unavailable("read campaign"))?
            .map(|d| decode(d, "campaign"))
            .transpose()
    }

    async fn campaigns_of(
        &self,
        user: &UserId,
        page: &PageRequest<CampaignKey>,
    ) -> Result<Page<Campaign, CampaignKey>, StoreError> {
        let limit = page.clamped_limit();
        let (fetch, batch) = look_ahead(limit);
        // One range per index ({gmUserId, id} and {members.userId, id}); the server merges
        // the two ordered scans.
        let branch = |field: &str| match &page.after {
            Some(key) => doc! {field: user.as_str(), "id": {"$gt": key.id.as_str()}},
            None => doc! {field: user.as_str()},
        };
        let cursor = self
            .campaigns
            .find(doc! {"$or": [branch("gmUserId"), branch("members.userId")]})
            .sort(doc! {"id": 1})
            .limit(fetch)
            .batch_size(batch)
            .await
            .map_err(unavailable("list campaigns"))?;
        read_page(
            cursor,
            limit,
            page.max_bytes,
            |d| decode(d, "campaign"),
            "list campaigns",
        )
        .await
    }

    async fn put_member(
        &self,
        campaign: &CampaignId,
        user: &UserId,
        role: MemberRole,
    ) -> Result<Option<Campaign>, StoreError> {
        self.edit_members(campaign, |members| {
            match members.iter_mut().find(|m| &m.user_id == user) {
                Some(m) if m.role == role => return false,
                Some(m) => m.role = role,
                None => members.push(Member {
                    user_id: user.clone(),
                    role,
                }),
            }
            true
        })
        .await
    }

    async fn remove_member(
        &self,
        campaign: &CampaignId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        let mut was_member = false;
        self.edit_members(campaign, |members| {
            let before = members.len();
            members.retain(|m| &m.user_id != user);
            was_member = members.len() != before;
            was_member
        })
        .await?;
        Ok(was_member)
    }

    async fn create_actor(&self, actor: &Actor, quotas: &CampaignQuotas) -> Result<(), QuotaError> {
        quotas.check_actor_size(actor)?;
        let document = Self::actor_document(actor)?;
        self.reserve(&actor.campaign_id, Quota::Actors, quotas.max_actors)
            .await?;
        match self.actors.insert_one(document).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => {
                self.release(&actor.campaign_id, Quota::Actors).await;
                Err(StoreError::AlreadyExists(format!("actor {}", actor.id)).into())
            }
            // The insert may have happened (a timeout): the slot stays taken, so the counter
            // is at worst one high, never low.
            Err(e) => Err(StoreError::unavailable(BACKEND, "create actor", e).into()),
        }
    }

    async fn create_actors(
        &self,
        actors: &[Actor],
        quotas: &CampaignQuotas,
    ) -> Result<(), QuotaError> {
        let Some(campaign) = crate::model::batch_campaign(actors)?.cloned() else {
            return Ok(());
        };
        let mut documents = Vec::with_capacity(actors.len());
        for actor in actors {
            quotas.check_actor_size(actor)?;
            documents.push(Self::actor_document(actor)?);
        }
        let n = actors.len() as u64;
        self.reserve_n(&campaign, Quota::Actors, quotas.max_actors, n)
            .await?;
        let Err(e) = self.actors.insert_many(documents).ordered(true).await else {
            return Ok(());
        };
        // All or nothing: whatever part of the batch went in comes out again, and the slots go
        // back. (A process that dies right here leaves the part; the ids are fresh, so nothing
        // else can be confused with it.)
        // The insert is ordered: it stops at its first failing document, so exactly those
        // before it went in (a document that failed may be another's, never to be deleted).
        // Any other failure (a timeout) leaves the outcome unknown: the whole batch comes out,
        // which touches no one else's actor because the caller gives every actor a fresh id.
        let went_in = match e.kind.as_ref() {
            ErrorKind::InsertMany(many) => many
                .write_errors
                .as_ref()
                .and_then(|errors| errors.iter().map(|w| w.index).min())
                .unwrap_or(actors.len()),
            _ => actors.len(),
        };
        let ids: Vec<&str> = actors[..went_in].iter().map(|a| a.id.as_str()).collect();
        let removed = self
            .actors
            .delete_many(doc! {"campaignId": campaign.as_str(), "id": {"$in": ids}})
            .await;
        match removed {
            Ok(_) => self.release_n(&campaign, Quota::Actors, n).await,
            Err(undo) => warn!(campaign = %campaign, error = %Chain(&undo),
                               "a failed batch of actors could not be removed again; its quota slots stay taken"),
        }
        if is_duplicate_key(&e) {
            return Err(StoreError::AlreadyExists("an actor of the batch".into()).into());
        }
        Err(StoreError::unavailable(BACKEND, "create actors", e).into())
    }

    async fn actor(
        &self,
        campaign: &CampaignId,
        id: &ActorId,
    ) -> Result<Option<Actor>, StoreError> {
        self.actors
            .find_one(Self::actor_key(campaign, id))
            .projection(doc! {"_id": 0, "json": 1})
            .await
            .map_err(unavailable("read actor"))?
            .map(|d| decode_json(d, "actor"))
            .transpose()
    }

    async fn actors(
        &self,
        campaign: &CampaignId,
        page: &PageRequest<ActorKey>,
    ) -> Result<Page<Actor, ActorKey>, StoreError> {
        let limit = page.clamped_limit();
        let (fetch, batch) = look_ahead(limit);
        let mut filter = doc! {"campaignId": campaign.as_str()};
        if let Some(key) = &page.after {
            // The index range starts at the cursor's name; the `$or` drops the ties already
            // returned.
            filter.insert("name", doc! {"$gte": key.name.as_str()});
            filter.insert(
                "$or",
                vec![
                    doc! {"name": {"$gt": key.name.as_str()}},
                    doc! {"id": {"$gt": key.id.as_str()}},
                ],
            );
        }
        let cursor = self
            .actors
            .find(filter)
            .sort(doc! {"name": 1, "id": 1})
            .limit(fetch)
            .batch_size(batch)
            .projection(doc! {"_id": 0, "json": 1})
            .await
            .map_err(unavailable("list actors"))?;
        read_page(
            cursor,
            limit,
            page.max_bytes,
            |d| decode_json(d, "actor"),
            "list actors",
        )
        .await
    }

    async fn update_actor(
        &self,
        actor: &Actor,
        quotas: &CampaignQuotas,
    ) -> Result<bool, QuotaError> {
        quotas.check_actor_size(actor)?;
        let result = self
            .actors
            .replace_one(
                Self::actor_key(&actor.campaign_id, &actor.id),
                Self::actor_document(actor)?,
            )
            .await
            .map_err(unavailable("update actor"))?;
        Ok(result.matched_count > 0)
    }

    async fn delete_actor(&self, campaign: &CampaignId, id: &ActorId) -> Result<bool, StoreError> {
        let result = self
            .actors
            .delete_one(Self::actor_key(campaign, id))
            .await
            .map_err(unavailable("delete actor"))?;
        if result.deleted_count == 0 {
            return Ok(false);
        }
        self.release(campaign, Quota::Actors).await;
        Ok(true)
    }

    async fn put_compendium(&self, entries: &[CompendiumEntry]) -> Result<(), StoreError> {
        let puts: Vec<_> = entries.iter().map(|e| self.put_entry(e)).collect();
        futures::stream::iter(puts)
            .buffer_unordered(IMPORT_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        debug!(count = entries.len(), "compendium entries stored");
        Ok(())
    }

    async fn compendium_entry(
        &self,
        reference: &str,
    ) -> Result<Option<CompendiumEntry>, StoreError> {
        self.compendium
            .find_one(doc! {"_id": reference})
            .projection(doc! {"_id": 0, "json": 1})
            .await
            .map_err(unavailable("read compendium entry"))?
            .map(|d| decode_json(d, "compendium entry"))
            .transpose()
    }

    async fn search_compendium(
        &self,
        query: &CompendiumQuery,
    ) -> Result<CompendiumPage, StoreError> {
        let limit = query.limit.clamp(1, 100);
        let mut filter = doc! {"_id": {"$gt": query.cursor.as_deref().unwrap_or_default()}};
        if let Some(system) = &query.system {
            filter.insert("system", system.as_str());
        }
        if let Some(category) = &query.category {
            filter.insert("category", category.as_str());
        }
        if let Some(q) = query.q.as_deref().filter(|q| !q.is_empty()) {
            filter.insert("name", doc! {"$regex": escape_regex(q), "$options": "i"});
        }
        if query.cr_min.is_some() || query.cr_max.is_some() {
            let mut range = doc! {"$exists": true};
            if let Some(min) = query.cr_min {
                range.insert("$gte", min);
            }
            if let Some(max) = query.cr_max {
                range.insert("$lte", max);
            }
            filter.insert("cr", range);
        }
        if let Some(level) = query.level {
            filter.insert("level", level);
        }
        let (fetch, batch) = look_ahead(limit);
        let cursor = self
            .compendium
            .find(filter)
            .sort(doc! {"_id": 1})
            .limit(fetch)
            .batch_size(batch)
            .projection(doc! {"_id": 0, "json": 1})
            .await
            .map_err(unavailable("search compendium"))?;
        let page = read_page(
            cursor,
            limit,
            query.max_bytes,
            |d| decode_json(d, "compendium entry"),
            "search compendium",
        )
        .await?;
        Ok(CompendiumPage {
            items: page.items,
            next_cursor: page.next.map(|k| k.reference),
        })
    }

    async fn create_session(
        &self,
        session: &GameSession,
        quotas: &CampaignQuotas,
    ) -> Result<(), QuotaError> {
        let mut document = encode(session, "session")?;
        document.insert("_id", session.id.as_str());
        self.reserve(&session.campaign_id, Quota::Sessions, quotas.max_sessions)
            .await?;
        let stored = match self.sessions.insert_one(document).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => self.adopt_session(session).await,
            Err(e) => Err(StoreError::unavailable(BACKEND, "create session", e)),
        };
        // Only a definite refusal gives the slot back; after a failure of unknown outcome
        // (a timeout) the counter is at worst one high, never low.
        if let Err(StoreError::AlreadyExists(_)) = &stored {
            self.release(&session.campaign_id, Quota::Sessions).await;
        }
        Ok(stored?)
    }

    async fn session(&self, id: &SessionId) -> Result<Option<GameSession>, StoreError> {
        self.sessions
            .find_one(doc! {"_id": id.as_str(), "campaignId": {"$exists": true}})
            .await
            .map_err(unavailable("read session"))?
            .map(|d| decode(d, "session"))
            .transpose()
    }

    async fn sessions(
        &self,
        campaign: &CampaignId,
        page: &PageRequest<SessionKey>,
    ) -> Result<Page<GameSession, SessionKey>, StoreError> {
        let limit = page.clamped_limit();
        let (fetch, batch) = look_ahead(limit);
        let mut filter = doc! {"campaignId": campaign.as_str()};
        if let Some(key) = &page.after {
            // The index range ends at the cursor's time; the `$or` drops the ties already
            // returned.
            let created_at = bound(key.created_at);
            filter.insert("createdAt", doc! {"$lte": created_at});
            filter.insert(
                "$or",
                vec![
                    doc! {"createdAt": {"$lt": created_at}},
                    doc! {"id": {"$lt": key.id.as_str()}},
                ],
            );
        }
        let cursor = self
            .sessions
            .find(filter)
            .sort(doc! {"createdAt": -1, "id": -1})
            .limit(fetch)
            .batch_size(batch)
            .await
            .map_err(unavailable("list sessions"))?;
        read_page(
            cursor,
            limit,
            page.max_bytes,
            |d| decode(d, "session"),
            "list sessions",
        )
        .await
    }

    async fn update_session(&self, session: &GameSession) -> Result<bool, StoreError> {
        let result = self
            .sessions
            .update_one(
                doc! {"_id": session.id.as_str(), "campaignId": {"$exists": true}},
                Self::session_update(session)?,
            )
            .await
            .map_err(unavailable("update session"))?;
        Ok(result.matched_count > 0)
    }
}

/// `q` as a regular expression matching itself literally: every metacharacter escaped.
fn escape_regex(q: &str) -> String {
    let mut out = String::with_capacity(q.len() * 2);
    for c in q.chars() {
        if "\\.+*?()|[]{}^$#&-~/".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Snapshots in MongoDB, of any size.
///
/// `snapshots` holds one document per `(sessionId, upToSequence)` (unique) with `checksum`,
/// `createdAt` and either the exact snapshot as `json` (when it fits in one chunk) or a
/// reference to its pieces: `generation` (the SHA-256 hex of the JSON), `chunks` and `bytes`.
/// `snapshot_chunks` holds the pieces as `data` strings (split at character boundaries), keyed
/// by `(sessionId, upToSequence, generation, n)`.
///
/// A MongoDB document is at most 16 MiB and a session's state can be larger, hence the chunks.
/// The `snapshots` document is written last, so a put that stops half-way leaves chunks that
/// nothing references and `latest` never sees it. The generation in the chunks' key keeps two
/// puts of the same `(sessionId, upToSequence)` with different JSON (another `createdAt`) from
/// mixing their pieces: each writes its own, the document decides which are read, and the put
/// that replaced the document removes the pieces of the one it replaced. The same JSON put again
/// rewrites the same pieces. Pieces of a put that stopped before its document was written stay
/// until removed by hand (they are never read).
///
/// `latest` checks the pieces it reassembles against the document's count, length and digest;
/// when they do not match (a concurrent put just replaced them) it reads again, and after
/// [`SNAPSHOT_READ_ATTEMPTS`] reports the snapshot as corrupt.
#[derive(Debug, Clone)]
pub struct MongoSnapshotStore {
    snapshots: Collection<Document>,
    chunks: Collection<Document>,
    chunk_bytes: usize,
}

/// Reads of `latest` that may find their pieces replaced under them before giving up.
pub const SNAPSHOT_READ_ATTEMPTS: usize = 3;

/// A chunked snapshot whose pieces do not add up to what its document says.
#[derive(Debug, Error)]
pub enum SnapshotChunksError {
    /// A piece is missing or out of place.
    #[error(
        "snapshot {up_to} of session {session} (generation {generation}): expected piece {expected}, found {found:?}"
    )]
    Missing {
        /// The session.
        session: SessionId,
        /// Its `upToSequence`.
        up_to: u64,
        /// The pieces' generation.
        generation: String,
        /// The piece that should come next.
        expected: u64,
        /// The piece that came (`None`: no more pieces).
        found: Option<u64>,
    },
    /// The document has neither inline JSON nor a complete reference to pieces.
    #[error("snapshot {up_to} of session {session} has neither json nor pieces")]
    NoContent {
        /// The session.
        session: SessionId,
        /// Its `upToSequence`.
        up_to: u64,
    },
    /// The pieces are all there but their JSON is not the one the document names.
    #[error(
        "snapshot {up_to} of session {session}: reassembled {bytes} bytes do not match generation {generation}"
    )]
    Digest {
        /// The session.
        session: SessionId,
        /// Its `upToSequence`.
        up_to: u64,
        /// The pieces' generation (the expected digest).
        generation: String,
        /// Bytes reassembled.
        bytes: usize,
    },
}

/// What `latest` reads of a `snapshots` document.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SnapshotHead {
    up_to_sequence: u64,
    #[serde(default)]
    json: Option<String>,
    #[serde(default)]
    generation: Option<String>,
    #[serde(default)]
    chunks: Option<u64>,
    #[serde(default)]
    bytes: Option<u64>,
}

/// One piece of a chunked snapshot.
#[derive(Deserialize)]
struct SnapshotPiece {
    n: u64,
    data: String,
}

/// The generation of chunks a replaced `snapshots` document referenced.
#[derive(Deserialize)]
struct Generation {
    #[serde(default)]
    generation: Option<String>,
}

/// `json` cut into pieces of at most `size` bytes (at least [`MIN_SNAPSHOT_CHUNK_BYTES`]), each
/// ending on a character boundary so every piece is a valid BSON string.
fn split_chunks(json: &str, size: usize) -> Vec<&str> {
    let size = size.max(MIN_SNAPSHOT_CHUNK_BYTES);
    let mut pieces = Vec::with_capacity(json.len() / size + 1);
    let mut rest = json;
    while !rest.is_empty() {
        let mut end = size.min(rest.len());
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

impl MongoSnapshotStore {
    /// The same store cutting snapshots into pieces of `bytes` (clamped to
    /// [`MIN_SNAPSHOT_CHUNK_BYTES`]..=[`MAX_SNAPSHOT_CHUNK_BYTES`]): tests use small pieces to
    /// exercise many chunks without building huge states. Reads work whatever size wrote them.
    pub fn with_chunk_bytes(mut self, bytes: usize) -> Self {
        self.chunk_bytes = bytes.clamp(MIN_SNAPSHOT_CHUNK_BYTES, MAX_SNAPSHOT_CHUNK_BYTES);
        self
    }

    /// Writes piece `n` of a generation (an upsert: the same generation holds the same bytes).
    async fn put_piece(
        &self,
        session: &SessionId,
        up_to: i64,
        generation: &str,
        n: usize,
        data: &str,
    ) -> Result<(), StoreError> {
        let n = to_i64(n as u64, "snapshot piece")?;
        let key = doc! {
            "sessionId": session.as_str(),
            "upToSequence": up_to,
            "generation": generation,
            "n": n,
        };
        let mut document = key.clone();
        document.insert("data", data);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .chunks
                .replace_one(key.clone(), &document)
                .upsert(true)
                .await
            {
                Ok(_) => return Ok(()),
                // Two puts of the same generation raced; the other one inserted the piece.
                Err(e) if is_duplicate_key(&e) && attempt < 2 => continue,
                Err(e) => return Err(StoreError::unavailable(BACKEND, "put snapshot piece", e)),
            }
        }
    }

    /// Stores the `snapshots` document; returns the generation of chunks the one it replaced
    /// referenced.
    async fn put_head(
        &self,
        key: Document,
        document: Document,
    ) -> Result<Option<String>, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .snapshots
                .find_one_and_replace(key.clone(), document.clone())
                .upsert(true)
                .return_document(ReturnDocument::Before)
                .projection(doc! {"_id": 0, "generation": 1})
                .await
            {
                Ok(None) => return Ok(None),
                Ok(Some(previous)) => {
                    return Ok(decode::<Generation>(previous, "snapshot generation")?.generation);
                }
                // Two puts of a new snapshot raced; the other one inserted it.
                Err(e) if is_duplicate_key(&e) && attempt < 2 => continue,
                Err(e) => return Err(StoreError::unavailable(BACKEND, "put snapshot", e)),
            }
        }
    }

    /// Reassembles a chunked snapshot's JSON, or says why its pieces do not add up.
    async fn assemble(
        &self,
        session: &SessionId,
        up_to: u64,
        generation: &str,
        chunks: u64,
        bytes: u64,
    ) -> Result<Result<String, SnapshotChunksError>, StoreError> {
        let mut cursor = self
            .chunks
            .find(doc! {
                "sessionId": session.as_str(),
                "upToSequence": bound(up_to),
                "generation": generation,
            })
            .sort(doc! {"n": 1})
            .projection(doc! {"_id": 0, "n": 1, "data": 1})
            .await
            .map_err(unavailable("read snapshot pieces"))?;
        let mut json = String::with_capacity(usize::try_from(bytes).unwrap_or(0));
        let missing = |expected: u64, found: Option<u64>| SnapshotChunksError::Missing {
            session: session.clone(),
            up_to,
            generation: generation.to_owned(),
            expected,
            found,
        };
        let mut next = 0;
        while let Some(document) = cursor
            .try_next()
            .await
            .map_err(unavailable("read snapshot pieces"))?
        {
            let SnapshotPiece { n, data } = decode(document, "snapshot piece")?;
            if n != next || n >= chunks {
                return Ok(Err(missing(next, Some(n))));
            }
            json.push_str(&data);
            next += 1;
        }
        if next != chunks {
            return Ok(Err(missing(next, None)));
        }
        if json.len() as u64 != bytes || sha256_hex(json.as_bytes()) != generation {
            return Ok(Err(SnapshotChunksError::Digest {
                session: session.clone(),
                up_to,
                generation: generation.to_owned(),
                bytes: json.len(),
            }));
        }
        Ok(Ok(json))
    }
}

#[async_trait]
impl SnapshotStore for MongoSnapshotStore {
    async fn put(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let session = &snapshot.session_id;
        let up_to = to_i64(snapshot.up_to_sequence.get(), "snapshot sequence")?;
        let key = doc! {"sessionId": session.as_str(), "upToSequence": up_to};
        let mut document = doc! {
            "sessionId": session.as_str(),
            "upToSequence": up_to,
            "checksum": snapshot.checksum.as_str(),
            "createdAt": to_i64(snapshot.created_at, "snapshot time")?,
        };
        let json = to_json(snapshot, "snapshot")?;
        let bytes = json.len();
        let generation = if bytes <= self.chunk_bytes {
            document.insert("json", json);
            None
        } else {
            let generation = sha256_hex(json.as_bytes());
            let pieces = split_chunks(&json, self.chunk_bytes);
            for (n, piece) in pieces.iter().enumerate() {
                self.put_piece(session, up_to, &generation, n, piece)
                    .await?;
            }
            document.insert("generation", generation.as_str());
            document.insert("chunks", to_i64(pieces.len() as u64, "snapshot pieces")?);
            document.insert("bytes", to_i64(bytes as u64, "snapshot bytes")?);
            Some(generation)
        };
        let replaced = self.put_head(key, document).await?;
        if let Some(old) = replaced.filter(|old| Some(old) != generation.as_ref())
            && let Err(e) = self
                .chunks
                .delete_many(doc! {
                    "sessionId": session.as_str(),
                    "upToSequence": up_to,
                    "generation": old.as_str(),
                })
                .await
        {
            warn!(session = %session, up_to, generation = %old, error = %Chain(&e),
                  "pieces of a replaced snapshot could not be removed; they are never read");
        }
        debug!(session = %session, up_to, bytes, chunked = generation.is_some(), "snapshot stored");
        Ok(())
    }

    async fn latest(&self, session: &SessionId) -> Result<Option<Snapshot>, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(head) = self
                .snapshots
                .find_one(doc! {"sessionId": session.as_str()})
                .sort(doc! {"upToSequence": -1})
                .projection(doc! {
                    "_id": 0, "upToSequence": 1, "json": 1,
                    "generation": 1, "chunks": 1, "bytes": 1,
                })
                .await
                .map_err(unavailable("read snapshot"))?
            else {
                return Ok(None);
            };
            let head: SnapshotHead = decode(head, "snapshot")?;
            let json = match head {
                SnapshotHead {
                    json: Some(json), ..
                } => json,
                SnapshotHead {
                    up_to_sequence,
                    generation: Some(generation),
                    chunks: Some(chunks),
                    bytes: Some(bytes),
                    ..
                } => match self
                    .assemble(session, up_to_sequence, &generation, chunks, bytes)
                    .await?
                {
                    Ok(json) => json,
                    Err(mismatch) if attempt < SNAPSHOT_READ_ATTEMPTS => {
                        debug!(session = %session, up_to = up_to_sequence, error = %mismatch,
                               "snapshot pieces changed under the read; reading again");
                        continue;
                    }
                    Err(mismatch) => {
                        return Err(StoreError::corrupt(BACKEND, "snapshot pieces", mismatch));
                    }
                },
                SnapshotHead { up_to_sequence, .. } => {
                    return Err(StoreError::corrupt(
                        BACKEND,
                        "snapshot",
                        SnapshotChunksError::NoContent {
                            session: session.clone(),
                            up_to: up_to_sequence,
                        },
                    ));
                }
            };
            return serde_json::from_str(&json)
                .map(Some)
                .map_err(|e| StoreError::corrupt(BACKEND, "snapshot", e));
        }
    }
}

/// The GM's conflict report in MongoDB: collection `conflicts`.
///
/// One document per conflict: `sessionId`, `conflictId`, `kind`, `createdAt` and `resolved`
/// natively (what is queried), the exact record as created in `json`, and once resolved the
/// exact [`Resolution`] as `resolutionJson`. A read is the `json` record with the resolution
/// laid over it, so `resolve` is ONE conditional update (`resolved: false` → `true` with the
/// resolution), and of concurrent resolves exactly one matches.
///
/// Unique `(sessionId, conflictId)` makes `create` idempotent; the report is listed newest first
/// through `(sessionId, createdAt desc, conflictId desc)`, paged like the campaign store's
/// listings (a range query from the cursor's key, one item of look-ahead, the byte budget).
#[derive(Debug, Clone)]
pub struct MongoConflictStore {
    conflicts: Collection<Document>,
}

/// What a read of a conflict document needs.
#[derive(Deserialize)]
struct ConflictFields {
    json: String,
    #[serde(rename = "resolutionJson", default)]
    resolution_json: Option<String>,
}

fn conflict_projection() -> Document {
    doc! {"_id": 0, "json": 1, "resolutionJson": 1}
}

fn decode_conflict(document: Document) -> Result<ConflictRecord, StoreError> {
    let ConflictFields {
        json,
        resolution_json,
    } = decode(document, "conflict")?;
    let mut record: ConflictRecord =
        serde_json::from_str(&json).map_err(|e| StoreError::corrupt(BACKEND, "conflict", e))?;
    if let Some(resolution) = resolution_json {
        record.resolution = Some(
            serde_json::from_str(&resolution)
                .map_err(|e| StoreError::corrupt(BACKEND, "conflict resolution", e))?,
        );
        record.resolved = true;
    }
    Ok(record)
}

impl MongoConflictStore {
    fn key(session: &SessionId, id: &ConflictId) -> Document {
        doc! {"sessionId": session.as_str(), "conflictId": id.as_str()}
    }
}

#[async_trait]
impl ConflictStore for MongoConflictStore {
    async fn create(&self, conflict: &ConflictRecord) -> Result<bool, StoreError> {
        let kind = bson::to_bson(&conflict.kind)
            .map_err(|e| StoreError::corrupt(BACKEND, "conflict kind", e))?;
        let document = doc! {
            "sessionId": conflict.session_id.as_str(),
            "conflictId": conflict.conflict_id.as_str(),
            "kind": kind,
            "createdAt": to_i64(conflict.created_at, "conflict time")?,
            "resolved": conflict.resolved,
            "json": to_json(conflict, "conflict")?,
        };
        match self.conflicts.insert_one(document).await {
            Ok(_) => {
                debug!(session = %conflict.session_id, conflict = %conflict.conflict_id,
                       "conflict reported");
                Ok(true)
            }
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(StoreError::unavailable(BACKEND, "create conflict", e)),
        }
    }

    async fn get(
        &self,
        session: &SessionId,
        id: &ConflictId,
    ) -> Result<Option<ConflictRecord>, StoreError> {
        self.conflicts
            .find_one(Self::key(session, id))
            .projection(conflict_projection())
            .await
            .map_err(unavailable("read conflict"))?
            .map(decode_conflict)
            .transpose()
    }

    async fn list(
        &self,
        session: &SessionId,
        page: &PageRequest<ConflictKey>,
    ) -> Result<Page<ConflictRecord, ConflictKey>, StoreError> {
        let limit = page.clamped_limit();
        let (fetch, batch) = look_ahead(limit);
        let mut filter = doc! {"sessionId": session.as_str()};
        if let Some(key) = &page.after {
            // The index range ends at the cursor's time; the `$or` drops the ties already
            // returned.
            let created_at = bound(key.created_at);
            filter.insert("createdAt", doc! {"$lte": created_at});
            filter.insert(
                "$or",
                vec![
                    doc! {"createdAt": {"$lt": created_at}},
                    doc! {"conflictId": {"$lt": key.id.as_str()}},
                ],
            );
        }
        let cursor = self
            .conflicts
            .find(filter)
            .sort(doc! {"createdAt": -1, "conflictId": -1})
            .limit(fetch)
            .batch_size(batch)
            .projection(conflict_projection())
            .await
            .map_err(unavailable("list conflicts"))?;
        read_page(
            cursor,
            limit,
            page.max_bytes,
            decode_conflict,
            "list conflicts",
        )
        .await
    }

    async fn resolve(
        &self,
        session: &SessionId,
        id: &ConflictId,
        resolution: &Resolution,
    ) -> Result<Option<ConflictRecord>, StoreError> {
        let mut filter = Self::key(session, id);
        filter.insert("resolved", false);
        let resolved = self
            .conflicts
            .find_one_and_update(
                filter,
                doc! {"$set": {
                    "resolved": true,
                    "resolutionJson": to_json(resolution, "conflict resolution")?,
                }},
            )
            .return_document(ReturnDocument::After)
            .projection(conflict_projection())
            .await
            .map_err(unavailable("resolve conflict"))?
            .map(decode_conflict)
            .transpose()?;
        match &resolved {
            Some(_) => info!(session = %session, conflict = %id, by = %resolution.resolved_by,
                             "conflict resolved"),
            None => debug!(session = %session, conflict = %id,
                           "conflict missing or already resolved"),
        }
        Ok(resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn given_no_uri_then_the_error_names_the_variable() {
        let err = MongoConfig::from_lookup(lookup(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::Missing(MONGODB_URI_VAR)));
        assert!(err.to_string().contains("MONGODB_URI"));
        let err = MongoConfig::from_lookup(lookup(&[(MONGODB_URI_VAR, "  ")])).unwrap_err();
        assert!(matches!(err, ConfigError::Missing(MONGODB_URI_VAR)));
    }

    #[test]
    fn given_only_a_uri_then_defaults_apply() {
        let config =
            MongoConfig::from_lookup(lookup(&[(MONGODB_URI_VAR, "mongodb://h:1")])).unwrap();
        assert_eq!(config.uri, "mongodb://h:1");
        assert_eq!(config.database, DEFAULT_DATABASE);
        assert_eq!(config.operation_timeout, DEFAULT_OPERATION_TIMEOUT);
        assert_eq!(
            config.server_selection_timeout,
            DEFAULT_SERVER_SELECTION_TIMEOUT
        );
        assert_eq!(config.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    }

    #[test]
    fn given_timeouts_then_they_are_read_and_bad_ones_are_named() {
        let config = MongoConfig::from_lookup(lookup(&[
            (MONGODB_URI_VAR, "mongodb://h:1"),
            (MONGODB_DATABASE_VAR, "other"),
            (MONGODB_OPERATION_TIMEOUT_MS_VAR, "150"),
            (MONGODB_SERVER_SELECTION_TIMEOUT_MS_VAR, "700"),
            (MONGODB_CONNECT_TIMEOUT_MS_VAR, "900"),
        ]))
        .unwrap();
        assert_eq!(config.database, "other");
        assert_eq!(config.operation_timeout, Duration::from_millis(150));
        assert_eq!(config.server_selection_timeout, Duration::from_millis(700));
        assert_eq!(config.connect_timeout, Duration::from_millis(900));
        for bad in ["0", "-1", "soon", "1.5"] {
            let err = MongoConfig::from_lookup(lookup(&[
                (MONGODB_URI_VAR, "mongodb://h:1"),
                (MONGODB_OPERATION_TIMEOUT_MS_VAR, bad),
            ]))
            .unwrap_err();
            assert!(
                err.to_string().contains(MONGODB_OPERATION_TIMEOUT_MS_VAR),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn credentials_never_appear_in_debug_output() {
        let config = MongoConfig::new("mongodb+srv://user:s3cret@cluster.example.net/?w=majority");
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("***@cluster.example.net/?w=majority"),
            "{shown}"
        );
        assert_eq!(
            redact("mongodb://127.0.0.1:27118"),
            "mongodb://127.0.0.1:27118"
        );
    }

    #[test]
    fn snapshot_pieces_end_on_character_boundaries_and_rejoin_exactly() {
        let json = format!("{{\"notes\":\"{}\"}}", "ä☠x😀".repeat(500));
        for size in [1, 4, 5, 7, 1000, json.len(), json.len() + 1] {
            let pieces = split_chunks(&json, size);
            assert_eq!(pieces.concat(), json, "size {size}");
            let size = size.max(MIN_SNAPSHOT_CHUNK_BYTES);
            assert!(
                pieces.iter().all(|p| !p.is_empty() && p.len() <= size),
                "size {size}"
            );
            assert_eq!(pieces.len() == 1, json.len() <= size, "size {size}");
        }
        assert!(split_chunks("", 10).is_empty());
    }

    #[test]
    fn regex_metacharacters_are_escaped() {
        assert_eq!(escape_regex("Goblin (Boss)"), r"Goblin \(Boss\)");
        assert_eq!(escape_regex(r"a.b*c\d"), r"a\.b\*c\\d");
        assert_eq!(escape_regex("Élan"), "Élan");
    }
}
