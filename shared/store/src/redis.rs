//! Redis adapters: the atomic event log and the shared rate limiter, on one Redis node or on a
//! Redis Cluster / MemoryDB ([`RedisConfig::cluster`]).
//!
//! Keys are hash-tagged per session (`dl:{S}:…`), so one session lives in one cluster slot, and
//! every key a script touches is passed in `KEYS` (a cluster routes a script by its keys and
//! refuses keys of several slots). Rate-limit buckets (`dl:rl:{K}`) live in their own slots and
//! never share a script with a session's keys.
//!
//! | key | type | what |
//! |---|---|---|
//! | `dl:{S}:epoch` | string | present while the hot state exists; commits refuse without it |
//! | `dl:{S}:lease` | string | a rebuild's token while it writes (`PX`, renewed per chunk) |
//! | `dl:{S}:seq` | string | last sequence |
//! | `dl:{S}:floor` | string | lowest sequence still in the hot window (absent = 1) |
//! | `dl:{S}:events` | zset | event JSON scored by sequence |
//! | `dl:{S}:ids:<xx>` | hash | dedup map, 256 buckets by the id's first two hex digits: the id's other 30 hex digits → `sequence:<first 16 hex digits of the content hash>` (kept for the session's hot life; small buckets stay in Redis's compact listpack encoding, about 60 bytes an event) |
//! | `dl:{S}:inst` | hash | instance id → `{actorId, addedAt, addedBy, actor}` |
//! | `dl:{S}:i:<instance>:base` | hash | leaf path → canonical JSON base value |
//! | `dl:{S}:i:<instance>:ovr` | hash | leaf path → canonical JSON override value |
//! | `dl:{S}:i:<instance>:meta` | hash | leaf path → `{eventId, timestamp, userId, sequence}` |
//! | `dl:{S}:ended` | string | the end marker: commits refuse; not hot state (release and rebuild keep it) |
//! | `dl:{S}:maint` | string | the maintenance lease's token (`PX`; compaction, backfill, release) |
//! | `dl:{S}:rej:<event id>` | string | a remembered compare-and-set rejection's JSON (`PX`) |
//! | `dl:{unarchived}` | set | sessions whose archive fell behind; its own slot, no session key |
//!
//! Remembered rejections are bounded per session by their time to live and the submit rate
//! limit (at most rate × ttl of them), and expire on their own: nothing has to sweep them.
//!
//! The commit is one Lua script (`commit.lua`, sent with EVALSHA and loaded on NOSCRIPT, on
//! every node of a cluster): end marker and epoch checks, dedup, compare-and-set, INCR, ZADD and
//! override update together, reading the overrides its blind writes replace on the way. Values
//! arrive as canonical JSON strings computed here, so the script compares strings and never
//! parses JSON. Scripts that need a session's instance keys get them from the
//! caller, who reads the instance list first; the script checks that list against `inst` and
//! answers `changed` when it moved, and the caller reads again (bounded).
//!
//! A rebuild ([`EventLog::rehydrate`]) may be large (every event id of the session, a hot window
//! of ~1,200 events of up to 24 KiB), so it is not one script: it takes a lease (`SET NX PX`
//! with a random token, only while the epoch is absent), clears leftovers, writes in chunks that
//! each check and renew the lease, and sets the epoch last, again only under the lease and
//! only while the epoch is absent. Readers and commits see the session as missing until then.
//! Production Redis must not evict (`maxmemory-policy noeviction`) and should be durable
//! (MemoryDB, or AOF with `appendfsync always`); a wiped session is detected by its missing
//! epoch and rehydrated by the service.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use dlab_core::canonical::canonical_json;
use dlab_core::changes::{Change, ChangeSet};
use dlab_core::event::GameEvent;
use dlab_core::ids::{EventId, InstanceId, Sequence, SessionId};
use dlab_core::paths::flatten;
use dlab_core::state::{ActiveActor, GameSessionState, Override, session_defaults};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncCommands, Cmd, Pipeline, RedisFuture, Script, Value as RedisValue};
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use crate::error::{CommitError, InvalidCommit, StoreError};
use crate::ports::{
    Acquire, CommitRequest, Committed, EventLog, LeaseToken, RateLimiter, Rehydration, Rejection,
    ReplacedWrite, Trimmed,
};

const BACKEND: &str = "redis";

/// The set of sessions whose archive fell behind: one key in its own slot (its own hash tag),
/// never in a script with a session's keys, so marking works on a cluster too.
const UNARCHIVED: &str = "dl:{unarchived}";

/// How many times a script that lists a session's instances is tried when the instance set
/// changed between the caller's read and the script (each retry means an actor was added or
/// removed within one round trip; actors come and go at the pace of a game master).
const INSTANCE_SET_ATTEMPTS: usize = 10;

/// How long a rebuild's lease lasts without progress; every chunk renews it. A rebuild that
/// stalls longer (a frozen Lambda) loses it and can no longer write.
const REHYDRATE_LEASE: Duration = Duration::from_secs(5);

/// Upper bounds of one chunk of a rebuild: each chunk is one short script call, well inside
/// the response timeout, so the lease is renewed often and Redis is never blocked for long.
const CHUNK_PAIRS: usize = 1_000;
const CHUNK_BYTES: usize = 256 * 1024;

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Connection URL; `rediss://` enables TLS (ElastiCache / MemoryDB in-transit encryption).
    /// In cluster mode, any node of the cluster (MemoryDB's cluster endpoint).
    pub url: String,
    /// Speak the cluster protocol (Redis Cluster, MemoryDB): commands are routed to the node
    /// owning their slot and `MOVED` / `ASK` are followed. A single-node connection cannot
    /// follow a resharded or failed-over cluster.
    pub cluster: bool,
    /// Bound on each command's answer.
    pub response_timeout: Duration,
    /// Bound on (re)connecting.
    pub connection_timeout: Duration,
}

impl RedisConfig {
    /// A single-node config for `url` with the default timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            cluster: false,
            response_timeout: Duration::from_millis(1_000),
            connection_timeout: Duration::from_millis(1_000),
        }
    }

    /// Opens a self-reconnecting connection (a cluster client in cluster mode).
    pub async fn connect(&self) -> Result<RedisConnection, StoreError> {
        if self.cluster {
            let client = redis::cluster::ClusterClient::builder([self.url.as_str()])
                .connection_timeout(self.connection_timeout)
                .response_timeout(self.response_timeout)
                .retries(2)
                .build()
                .map_err(|e| StoreError::unavailable(BACKEND, "parse url", e))?;
            let conn = client
                .get_async_connection()
                .await
                .map_err(|e| StoreError::unavailable(BACKEND, "connect", e))?;
            return Ok(RedisConnection::Cluster(conn));
        }
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| StoreError::unavailable(BACKEND, "parse url", e))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(self.response_timeout))
            .set_connection_timeout(Some(self.connection_timeout))
            .set_number_of_retries(2);
        ConnectionManager::new_with_config(client, config)
            .await
            .map(RedisConnection::Single)
            .map_err(|e| StoreError::unavailable(BACKEND, "connect", e))
    }
}

/// The adapters' way to Redis: a connection made already, or one made on first use.
///
/// A Lambda builds its adapters at cold start but must not need Redis to start (a function
/// whose event never touches Redis would fail for nothing while Redis is down), so its handle
/// is [`RedisHandle::lazy`]: the first command connects, and a failed connect is not
/// remembered, so the next command tries again.
#[derive(Clone)]
pub struct RedisHandle(std::sync::Arc<HandleState>);

enum HandleState {
    Ready(RedisConnection),
    Lazy {
        config: RedisConfig,
        cell: tokio::sync::OnceCell<RedisConnection>,
    },
}

impl RedisHandle {
    /// A handle that connects on first use.
    pub fn lazy(config: RedisConfig) -> Self {
        Self(std::sync::Arc::new(HandleState::Lazy {
            config,
            cell: tokio::sync::OnceCell::new(),
        }))
    }

    /// The connection, connecting first if this is the first use of a lazy handle.
    pub async fn connection(&self) -> Result<RedisConnection, StoreError> {
        match self.0.as_ref() {
            HandleState::Ready(conn) => Ok(conn.clone()),
            HandleState::Lazy { config, cell } => {
                cell.get_or_try_init(|| config.connect()).await.cloned()
            }
        }
    }
}

impl From<RedisConnection> for RedisHandle {
    fn from(conn: RedisConnection) -> Self {
        Self(std::sync::Arc::new(HandleState::Ready(conn)))
    }
}

impl std::fmt::Debug for RedisHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0.as_ref() {
            HandleState::Ready(_) => "RedisHandle::Ready",
            HandleState::Lazy { .. } => "RedisHandle::Lazy",
        })
    }
}

/// A cheap-to-clone connection to Redis, shared by the adapters: one node, or a cluster.
#[derive(Clone)]
pub enum RedisConnection {
    /// One node (or a primary endpoint), reconnecting after failures.
    Single(ConnectionManager),
    /// Redis Cluster / MemoryDB: every command goes to the node owning its keys' slot.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RedisConnection::Single(_) => "RedisConnection::Single",
            RedisConnection::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, RedisValue> {
        match self {
            RedisConnection::Single(c) => c.req_packed_command(cmd),
            RedisConnection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<RedisValue>> {
        match self {
            RedisConnection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConnection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(c) => c.get_db(),
            RedisConnection::Cluster(c) => c.get_db(),
        }
    }
}

struct Keys {
    tag: String,
}

impl Keys {
    fn new(session: &SessionId) -> Self {
        Self {
            tag: format!("dl:{{{session}}}:"),
        }
    }
    fn k(&self, name: &str) -> String {
        format!("{}{name}", self.tag)
    }
    fn instance(&self, instance: &str, name: &str) -> String {
        format!("{}i:{instance}:{name}", self.tag)
    }
    /// The dedup bucket of an event id, and its field there.
    ///
    /// The map holds every id of the session for its hot life, so its size per event matters
    /// (the bound is about 100 bytes an event): one hash per two-hex-digit prefix keeps each
    /// bucket small enough for Redis's listpack encoding up to about 32,000 events (a bucket
    /// that grows past it converts to a hashtable and stays correct, only larger), and the
    /// field is the id's remaining 30 hex digits.
    fn ids_slot(&self, id: &EventId) -> (String, String) {
        let hex: String = id.as_str().chars().filter(|c| *c != '-').collect();
        if hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            (
                format!("{}ids:{}", self.tag, &hex[..2]),
                hex[2..].to_owned(),
            )
        } else {
            (format!("{}ids:xx", self.tag), id.as_str().to_owned())
        }
    }

    /// Every dedup bucket key.
    fn ids_keys(&self) -> impl Iterator<Item = String> + '_ {
        (0..=255u8)
            .map(|b| format!("{}ids:{b:02x}", self.tag))
            .chain([format!("{}ids:xx", self.tag)])
    }

    /// Every key of the session's hot state but the epoch, the rebuild lease and `inst`, for the
    /// given instances. The end marker, the maintenance lease and remembered rejections are not
    /// hot state: a release or a rebuild leaves them.
    fn data_keys(&self, instances: &[String]) -> Vec<String> {
        let mut out: Vec<String> = ["seq", "floor", "events"]
            .iter()
            .map(|n| self.k(n))
            .chain(self.ids_keys())
            .collect();
        for i in instances
            .iter()
            .map(String::as_str)
            .chain([InstanceId::SESSION])
        {
            for n in ["base", "ovr", "meta"] {
                out.push(self.instance(i, n));
            }
        }
        out
    }
}

/// A hash or sorted set to fill during a rebuild, as chunks of `(field, value)` or
/// `(score, member)` pairs.
struct Fill {
    key: String,
    kind: &'static str,
    pairs: Vec<(String, String)>,
}

impl Fill {
    fn hash(key: String, pairs: Vec<(String, String)>) -> Self {
        Self {
            key,
            kind: "hash",
            pairs,
        }
    }

    /// The pairs cut into chunks of at most [`CHUNK_PAIRS`] pairs and about [`CHUNK_BYTES`].
    fn chunks(&self) -> Vec<&[(String, String)]> {
        let mut out = Vec::new();
        let (mut start, mut bytes) = (0, 0);
        for (i, (a, b)) in self.pairs.iter().enumerate() {
            let size = a.len() + b.len();
            if i > start && (i - start >= CHUNK_PAIRS || bytes + size > CHUNK_BYTES) {
                out.push(&self.pairs[start..i]);
                start = i;
                bytes = 0;
            }
            bytes += size;
        }
        if start < self.pairs.len() {
            out.push(&self.pairs[start..]);
        }
        out
    }
}

/// The event log on Redis.
#[derive(Clone)]
pub struct RedisEventLog {
    conn: RedisHandle,
    commit: Script,
    read: Script,
    trim: Script,
    state: Script,
    init: Script,
    drop: Script,
    begin: Script,
    put: Script,
    finish: Script,
    lease_release: Script,
}

impl std::fmt::Debug for RedisEventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEventLog").finish_non_exhaustive()
    }
}

impl RedisEventLog {
    /// An event log over a connection, or over a lazy handle.
    pub fn new(conn: impl Into<RedisHandle>) -> Self {
        Self {
            conn: conn.into(),
            commit: Script::new(include_str!("redis/commit.lua")),
            read: Script::new(include_str!("redis/read.lua")),
            trim: Script::new(include_str!("redis/trim.lua")),
            state: Script::new(include_str!("redis/state.lua")),
            init: Script::new(include_str!("redis/init.lua")),
            drop: Script::new(include_str!("redis/drop.lua")),
            begin: Script::new(include_str!("redis/rehydrate_begin.lua")),
            put: Script::new(include_str!("redis/rehydrate_put.lua")),
            finish: Script::new(include_str!("redis/rehydrate_finish.lua")),
            lease_release: Script::new(include_str!("redis/lease_release.lua")),
        }
    }

    /// Deletes the session's hot state, only while the counter holds `head` when given;
    /// whether it was deleted.
    async fn drop_hot_state(
        &self,
        session: &SessionId,
        head: Option<Sequence>,
    ) -> Result<bool, StoreError> {
        let keys = Keys::new(session);
        let mut conn = self.conn.connection().await?;
        let expected = head.map_or(String::new(), |h| h.get().to_string());
        for _ in 0..INSTANCE_SET_ATTEMPTS {
            let names = self.instance_names(&keys).await?;
            let reply: String = self
                .drop
                .key(keys.k("inst"))
                .key(keys.k("seq"))
                .key(keys.k("epoch"))
                .key(keys.k("lease"))
                .key(keys.data_keys(&names))
                .arg(&expected)
                .arg(&names)
                .invoke_async(&mut conn)
                .await
                .map_err(Self::unavailable("release"))?;
            match reply.as_str() {
                "ok" => return Ok(true),
                "moved" => return Ok(false),
                _ => {}
            }
        }
        Err(StoreError::unavailable(
            BACKEND,
            "release",
            "the session's instances kept changing while it was released",
        ))
    }

    fn unavailable(op: &'static str) -> impl FnOnce(redis::RedisError) -> StoreError {
        move |e| StoreError::unavailable(BACKEND, op, e)
    }

    /// The instance ids in the session's `inst` hash (without `$session`).
    async fn instance_names(&self, keys: &Keys) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.connection().await?;
        conn.hkeys(keys.k("inst"))
            .await
            .map_err(Self::unavailable("list instances"))
    }

    /// Every write of a rebuild, in order: instances first (so a later rebuild finds, and
    /// clears, every instance key a stalled one wrote), then dedup ids, events and values.
    fn fills(
        keys: &Keys,
        state: &GameSessionState,
        events: &[GameEvent],
        ids: &[(EventId, Sequence, String)],
    ) -> Vec<Fill> {
        let mut fills = Vec::new();
        let records: Vec<(String, String)> = state
            .active_actors
            .iter()
            .map(|(instance, actor)| {
                let record = json!({"actorId": actor.actor_id, "addedAt": actor.added_at,
                                    "addedBy": actor.added_by, "actor": actor.actor});
                (instance.to_string(), record.to_string())
            })
            .collect();
        fills.push(Fill::hash(keys.k("inst"), records));
        let mut buckets: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let all_ids = ids
            .iter()
            .map(|(id, seq, hash)| (id.clone(), *seq, hash.clone()))
            .chain(
                events
                    .iter()
                    .map(|e| (e.id.clone(), e.sequence, e.content_hash())),
            );
        for (id, seq, hash) in all_ids {
            let (bucket, field) = keys.ids_slot(&id);
            buckets
                .entry(bucket)
                .or_default()
                .push((field, id_value(seq, &hash)));
        }
        for (bucket, fields) in buckets {
            fills.push(Fill::hash(bucket, fields));
        }
        let members: Vec<(String, String)> = events
            .iter()
            .map(|e| {
                // Same member text as the commit script writes: sequence first.
                let member = format!("{{\"sequence\":{},{}", e.sequence.get(), event_tail(e));
                debug_assert_eq!(parse_event(&member).ok().as_ref(), Some(e));
                (e.sequence.get().to_string(), member)
            })
            .collect();
        fills.push(Fill {
            key: keys.k("events"),
            kind: "zset",
            pairs: members,
        });
        let leaves = |doc: &Value| -> Vec<(String, String)> {
            flatten(doc)
                .into_iter()
                .map(|(p, v)| (p, canonical_json(&v)))
                .collect()
        };
        let mut values =
            |instance: &str, base: Vec<(String, String)>, o: &BTreeMap<String, Override>| {
                fills.push(Fill::hash(keys.instance(instance, "base"), base));
                fills.push(Fill::hash(
                    keys.instance(instance, "ovr"),
                    o.iter()
                        .map(|(path, o)| (path.clone(), canonical_json(&o.value)))
                        .collect(),
                ));
                fills.push(Fill::hash(
                    keys.instance(instance, "meta"),
                    o.iter()
                        .map(|(path, o)| {
                            let meta = json!({"eventId": o.event_id, "timestamp": o.timestamp,
                                          "userId": o.user_id, "sequence": o.sequence});
                            (path.clone(), meta.to_string())
                        })
                        .collect(),
                ));
            };
        values(
            InstanceId::SESSION,
            leaves(&session_defaults()),
            &state.session_overrides,
        );
        for (instance, actor) in &state.active_actors {
            values(instance.as_str(), leaves(&actor.actor), &actor.overrides);
        }
        fills
    }

    /// Writes every chunk under the lease; `false` as soon as the lease is lost.
    async fn put_all(&self, token: &str, lease: &str, fills: &[Fill]) -> Result<bool, StoreError> {
        let mut conn = self.conn.connection().await?;
        for fill in fills {
            for chunk in fill.chunks() {
                let mut inv = self.put.key(lease);
                inv.key(&fill.key)
                    .arg(token)
                    .arg(REHYDRATE_LEASE.as_millis() as u64)
                    .arg(fill.kind);
                for (a, b) in chunk {
                    inv.arg(a).arg(b);
                }
                let written: i64 = inv
                    .invoke_async(&mut conn)
                    .await
                    .map_err(Self::unavailable("rehydrate"))?;
                if written == 0 {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// What a rebuild that lost its lease reports: the winner's state, or a rebuild still going.
    async fn after_lost_lease(&self, keys: &Keys) -> Result<Rehydration, StoreError> {
        let mut conn = self.conn.connection().await?;
        let present: bool = conn
            .exists(keys.k("epoch"))
            .await
            .map_err(Self::unavailable("rehydrate"))?;
        Ok(if present {
            Rehydration::AlreadyPresent
        } else {
            Rehydration::Busy
        })
    }
}

/// The dedup value of an event: its sequence and the first 64 bits of its content hash (a
/// resubmitted id with other content is told apart with certainty but for a 2^-64 chance).
fn id_value(sequence: Sequence, hash: &str) -> String {
    format!("{}:{}", sequence.get(), short_hash(hash))
}

/// The first 16 hex digits of a content hash.
fn short_hash(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}

fn parse_event(raw: &str) -> Result<GameEvent, StoreError> {
    serde_json::from_str(raw).map_err(|e| StoreError::corrupt(BACKEND, "event", e))
}

/// The event JSON after its opening brace, without `sequence` (the script prepends it).
fn event_tail(event: &GameEvent) -> String {
    let mut value = serde_json::to_value(event).expect("events serialize");
    if let Value::Object(map) = &mut value {
        map.remove("sequence");
    }
    let text = value.to_string();
    text[1..].to_owned()
}

fn meta_prefix(event: &GameEvent) -> String {
    let partial =
        json!({"eventId": event.id, "timestamp": event.timestamp, "userId": event.user_id});
    let text = partial.to_string();
    format!("{},\"sequence\":", &text[..text.len() - 1])
}

fn bulk(v: &RedisValue) -> Option<String> {
    match v {
        RedisValue::BulkString(b) => String::from_utf8(b.clone()).ok(),
        RedisValue::SimpleString(s) => Some(s.clone()),
        RedisValue::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn strings(v: RedisValue) -> Result<Vec<String>, StoreError> {
    match v {
        RedisValue::Array(items) => items
            .iter()
            .map(|i| {
                bulk(i).ok_or_else(|| {
                    StoreError::corrupt(BACKEND, "script reply", "non-string element")
                })
            })
            .collect(),
        other => Err(StoreError::corrupt(
            BACKEND,
            "script reply",
            format!("unexpected reply {other:?}"),
        )),
    }
}

/// The sequence at `reply[i]` of a script's reply.
fn sequence_at(reply: &[String], i: usize) -> Result<Sequence, StoreError> {
    let raw = reply
        .get(i)
        .ok_or_else(|| StoreError::corrupt(BACKEND, "sequence", "missing from the reply"))?;
    raw.parse()
        .map(Sequence)
        .map_err(|e| StoreError::corrupt(BACKEND, "sequence", e))
}

fn parse_json(raw: &str, what: &'static str) -> Result<Value, StoreError> {
    serde_json::from_str(raw).map_err(|e| StoreError::corrupt(BACKEND, what, e))
}

/// The overrides the commit script reports its blind writes replaced, as `(path, value, meta)`
/// triples after `ok` and the sequence; only an update has blind writes, so `changes` names
/// their instance. The event is committed by then, so an entry that cannot be decoded is logged
/// and left out of the conflict report rather than failing a commit that happened.
fn replaced_writes(session: &SessionId, changes: &ChangeSet, raw: &[String]) -> Vec<ReplacedWrite> {
    if raw.is_empty() {
        return Vec::new();
    }
    let ChangeSet::Update { instance, .. } = changes else {
        warn!(session = %session, fields = raw.len(), "replaced writes reported for a change set without blind writes; left out");
        return Vec::new();
    };
    if !raw.len().is_multiple_of(3) {
        warn!(session = %session, fields = raw.len(), "replaced writes are not triples; left out");
        return Vec::new();
    }
    raw.chunks_exact(3)
        .filter_map(|t| {
            let decoded = parse_json(&t[2], "override metadata").and_then(|mut meta| {
                meta["value"] = parse_json(&t[1], "override value")?;
                serde_json::from_value::<Override>(meta)
                    .map_err(|e| StoreError::corrupt(BACKEND, "override", e))
            });
            match decoded {
                Ok(o) => Some(ReplacedWrite {
                    instance: instance.clone(),
                    path: t[0].clone(),
                    value: o.value,
                    event_id: o.event_id,
                    user_id: o.user_id,
                    timestamp: o.timestamp,
                    sequence: o.sequence,
                }),
                Err(error) => {
                    warn!(session = %session, instance = %instance, path = %t[0], error = %crate::error::Chain(&error), "replaced override cannot be decoded; left out of the conflict report");
                    None
                }
            }
        })
        .collect()
}

/// A duration as whole milliseconds for `PX`, at least 1 (Redis refuses 0).
fn px(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl EventLog for RedisEventLog {
    async fn init_session(&self, session: &SessionId) -> Result<(), StoreError> {
        let keys = Keys::new(session);
        let mut inv = self.init.key(keys.k("epoch"));
        inv.key(keys.k("seq"))
            .key(keys.k("lease"))
            .key(keys.instance(InstanceId::SESSION, "base"))
            .arg(uuid::Uuid::new_v4().to_string());
        for (path, value) in flatten(&session_defaults()) {
            inv.arg(path).arg(canonical_json(&value));
        }
        let mut conn = self.conn.connection().await?;
        let _created: i64 = inv
            .invoke_async(&mut conn)
            .await
            .map_err(Self::unavailable("init session"))?;
        Ok(())
    }

    async fn commit(&self, request: CommitRequest) -> Result<Committed, CommitError> {
        let CommitRequest { event, changes } = request;
        let session = event.session_id.clone();
        let keys = Keys::new(&session);
        let mut inv = self.commit.prepare_invoke();
        let (ids_bucket, ids_field) = keys.ids_slot(&event.id);
        inv.key(keys.k("epoch"))
            .key(keys.k("seq"))
            .key(keys.k("events"))
            .key(ids_bucket)
            .key(keys.k("inst"))
            .key(keys.k("ended"));
        inv.arg(ids_field)
            .arg(short_hash(&event.content_hash()))
            .arg(event_tail(&event))
            .arg(meta_prefix(&event));
        let add_instance = |inv: &mut redis::ScriptInvocation<'_>, i: &InstanceId| {
            for n in ["base", "ovr", "meta"] {
                inv.key(keys.instance(i.as_str(), n));
            }
        };
        match &changes {
            ChangeSet::None => {
                inv.arg("none");
            }
            ChangeSet::Update { instance, changes } => {
                add_instance(&mut inv, instance);
                inv.arg("update").arg(instance.as_str()).arg(changes.len());
                for c in changes {
                    inv.arg(&c.path);
                    match &c.change {
                        Change::Cas { from, to } => inv
                            .arg("cas")
                            .arg(canonical_json(from))
                            .arg(canonical_json(to)),
                        Change::Inc { by } => inv.arg("inc").arg(by.to_string()).arg(""),
                        Change::Blind { to } => inv.arg("set").arg("").arg(canonical_json(to)),
                    };
                }
            }
            ChangeSet::ForceSet { targets } => {
                inv.arg("force").arg(targets.len());
                for (instance, sets) in targets {
                    add_instance(&mut inv, instance);
                    inv.arg(instance.as_str()).arg(sets.len());
                    for (path, value) in sets {
                        inv.arg(path).arg(canonical_json(value));
                    }
                }
            }
            ChangeSet::AddActor {
                instance,
                actor_id,
                actor,
            } => {
                add_instance(&mut inv, instance);
                let record = json!({"actorId": actor_id, "addedAt": event.timestamp,
                                    "addedBy": event.user_id, "actor": actor});
                let leaves = flatten(actor);
                inv.arg("add")
                    .arg(instance.as_str())
                    .arg(record.to_string())
                    .arg(leaves.len());
                for (path, value) in &leaves {
                    inv.arg(path).arg(canonical_json(value));
                }
            }
            ChangeSet::RemoveActor { instance } => {
                add_instance(&mut inv, instance);
                inv.arg("remove").arg(instance.as_str());
            }
        }
        inv.key(keys.k("aud"));
        let mut conn = self.conn.connection().await?;
        let reply: RedisValue = inv
            .invoke_async(&mut conn)
            .await
            .map_err(|e| StoreError::unavailable(BACKEND, "commit", e))?;
        let reply = strings(reply)?;
        match reply.first().map(String::as_str) {
            Some("ok") => {
                let sequence = sequence_at(&reply, 1)?;
                debug!(session = %session, seq = sequence.get(), "event committed");
                let audience = reply.get(2).and_then(|t| t.parse::<u64>().ok());
                let replaced = replaced_writes(&session, &changes, reply.get(3..).unwrap_or(&[]));
                let mut event = event;
                event.sequence = sequence;
                Ok(Committed {
                    sequence,
                    duplicate: false,
                    event: Some(event),
                    replaced,
                    audience,
                })
            }
            Some("dup") => {
                let sequence = sequence_at(&reply, 1)?;
                // Below the hot floor the original is in the archive (`None`); any other read
                // failure is passed on rather than mistaken for a trimmed event.
                let original = match self
                    .read(&session, Sequence(sequence.get() - 1), Some(sequence), 1)
                    .await
                {
                    Ok(mut v) => v.pop(),
                    Err(StoreError::BelowFloor { .. }) => None,
                    Err(e) => return Err(e.into()),
                };
                Ok(Committed {
                    sequence,
                    duplicate: true,
                    event: original,
                    replaced: Vec::new(),
                    audience: None,
                })
            }
            Some("reused") => Err(CommitError::IdReused { id: event.id }),
            Some("invalid") if reply.len() == 3 => {
                let subject = reply[2].clone();
                Err(CommitError::Invalid(match reply[1].as_str() {
                    "instance_missing" => InvalidCommit::InstanceMissing {
                        instance: InstanceId::new(subject),
                    },
                    "instance_exists" => InvalidCommit::InstanceExists {
                        instance: InstanceId::new(subject),
                    },
                    "inc_not_integer" => InvalidCommit::IncNotInteger { path: subject },
                    "inc_out_of_range" => InvalidCommit::IncOutOfRange { path: subject },
                    other => {
                        return Err(StoreError::corrupt(
                            BACKEND,
                            "commit reply",
                            format!("unknown invalid reason {other:?}"),
                        )
                        .into());
                    }
                }))
            }
            Some("conflict") if reply.len() % 2 == 1 => {
                let mut current = BTreeMap::new();
                for pair in reply[1..].chunks_exact(2) {
                    current.insert(pair[0].clone(), parse_json(&pair[1], "current value")?);
                }
                Err(CommitError::Conflict { current })
            }
            Some("nohot") => Err(CommitError::HotStateMissing(session)),
            Some("ended") => Err(CommitError::SessionEnded(session)),
            _ => Err(StoreError::corrupt(BACKEND, "commit reply", format!("{reply:?}")).into()),
        }
    }

    async fn read(
        &self,
        session: &SessionId,
        after: Sequence,
        to: Option<Sequence>,
        limit: usize,
    ) -> Result<Vec<GameEvent>, StoreError> {
        let keys = Keys::new(session);
        let mut conn = self.conn.connection().await?;
        let reply: RedisValue = self
            .read
            .key(keys.k("epoch"))
            .key(keys.k("floor"))
            .key(keys.k("events"))
            .arg(after.get())
            .arg(to.map_or("+inf".to_owned(), |t| t.get().to_string()))
            .arg(limit)
            .invoke_async(&mut conn)
            .await
            .map_err(Self::unavailable("read"))?;
        let reply = strings(reply)?;
        match reply.first().map(String::as_str) {
            Some("ok") => reply[1..].iter().map(|r| parse_event(r)).collect(),
            Some("below") => Err(StoreError::BelowFloor {
                session: session.clone(),
                floor: sequence_at(&reply, 1)?,
            }),
            Some("nohot") => Err(StoreError::HotStateMissing(session.clone())),
            _ => Err(StoreError::corrupt(
                BACKEND,
                "read reply",
                format!("{reply:?}"),
            )),
        }
    }

    async fn head(&self, session: &SessionId) -> Result<Sequence, StoreError> {
        let keys = Keys::new(session);
        let mut conn = self.conn.connection().await?;
        let (epoch, seq): (Option<String>, Option<u64>) = conn
            .mget(&[keys.k("epoch"), keys.k("seq")])
            .await
            .map_err(Self::unavailable("head"))?;
        if epoch.is_none() {
            return Err(StoreError::HotStateMissing(session.clone()));
        }
        Ok(Sequence(seq.unwrap_or(0)))
    }

    async fn set_audience(&self, session: &SessionId, token: u64) -> Result<(), StoreError> {
        let mut conn = self.conn.connection().await?;
        let ttl = crate::ports::AUDIENCE_TTL.as_secs();
        let () = conn
            .set_ex(Keys::new(session).k("aud"), token, ttl)
            .await
            .map_err(Self::unavailable("set_audience"))?;
        Ok(())
    }

    async fn floor(&self, session: &SessionId) -> Result<Sequence, StoreError> {
        let keys = Keys::new(session);
        let mut conn = self.conn.connection().await?;
        let (epoch, floor): (Option<String>, Option<u64>) = conn
            .mget(&[keys.k("epoch"), keys.k("floor")])
            .await
            .map_err(Self::unavailable("floor"))?;
        if epoch.is_none() {
            return Err(StoreError::HotStateMissing(session.clone()));
        }
        Ok(Sequence(floor.unwrap_or(1)))
    }

    async fn trim_below(
        &self,
        session: &SessionId,
        sequence: Sequence,
    ) -> Result<Trimmed, StoreError> {
        let keys = Keys::new(session);
        let mut conn = self.conn.connection().await?;
        let (removed, bytes): (i64, i64) = self
            .trim
            .key(keys.k("epoch"))
            .key(keys.k("seq"))
            .key(keys.k("floor"))
            .key(keys.k("events"))
            .arg(sequence.get())
            .invoke_async(&mut conn)
            .await
            .map_err(Self::unavailable("trim"))?;
        if removed < 0 {
            return Err(StoreError::HotStateMissing(session.clone()));
        }
        Ok(Trimmed {
            events: removed.unsigned_abs(),
            bytes: bytes.unsigned_abs(),
        })
    }

    async fn state(&self, session: &SessionId) -> Result<Option<GameSessionState>, StoreError> {
        let keys = Keys::new(session);
        let mut conn = self.conn.connection().await?;
        let mut reply = None;
        let mut names = self.instance_names(&keys).await?;
        for _ in 0..INSTANCE_SET_ATTEMPTS {
            let mut inv = self.state.key(keys.k("epoch"));
            inv.key(keys.k("seq")).key(keys.k("inst"));
            for name in std::iter::once(InstanceId::SESSION).chain(names.iter().map(String::as_str))
            {
                inv.key(keys.instance(name, "ovr"))
                    .key(keys.instance(name, "meta"))
                    .arg(name);
            }
            let raw: RedisValue = inv
                .invoke_async(&mut conn)
                .await
                .map_err(Self::unavailable("read state"))?;
            let raw = strings(raw)?;
            match raw.first().map(String::as_str) {
                Some("nohot") => return Ok(None),
                Some("changed") => names = raw[1..].to_vec(),
                Some("ok") => {
                    reply = Some(raw);
                    break;
                }
                _ => {
                    return Err(StoreError::corrupt(
                        BACKEND,
                        "state reply",
                        format!("{:?}", raw.first()),
                    ));
                }
            }
        }
        let Some(reply) = reply else {
            return Err(StoreError::unavailable(
                BACKEND,
                "read state",
                "the session's instances kept changing while it was read",
            ));
        };
        let mut fields = reply.into_iter().skip(1);
        let mut next = |what: &'static str| {
            fields
                .next()
                .ok_or_else(|| StoreError::corrupt(BACKEND, what, "the state reply ended early"))
        };
        let number = |raw: String, what: &'static str| {
            raw.parse::<u64>()
                .map_err(|e| StoreError::corrupt(BACKEND, what, e))
        };
        let mut state = GameSessionState::new(session.clone(), None);
        state.last_event_sequence = Sequence(number(next("sequence")?, "sequence")?);
        let count = number(next("instance count")?, "instance count")?;
        for _ in 0..count {
            let name = next("instance name")?;
            let record = next("instance record")?;
            let n = number(next("override count")?, "override count")?;
            let mut overrides = BTreeMap::new();
            for _ in 0..n {
                let path = next("override path")?;
                let value = parse_json(&next("override value")?, "override value")?;
                let mut meta = parse_json(&next("override metadata")?, "override metadata")?;
                meta["value"] = value;
                let o: Override = serde_json::from_value(meta)
                    .map_err(|e| StoreError::corrupt(BACKEND, "override", e))?;
                overrides.insert(path, o);
            }
            if name == InstanceId::SESSION {
                state.session_overrides = overrides;
            } else {
                let mut record = parse_json(&record, "instance record")?;
                record["overrides"] = json!({});
                let mut actor: ActiveActor = serde_json::from_value(record)
                    .map_err(|e| StoreError::corrupt(BACKEND, "instance record", e))?;
                actor.overrides = overrides;
                state.active_actors.insert(InstanceId::new(name), actor);
            }
        }
        // Round-trip through the wire form to recompute the resolved session fields.
        let state: GameSessionState =
            serde_json::from_value(serde_json::to_value(&state).expect("state serializes"))
                .map_err(|e| StoreError::corrupt(BACKEND, "state", e))?;
        Ok(Some(state))
    }

    async fn rehydrate(
        &self,
        state: &GameSessionState,
        events: &[GameEvent],
        ids: &[(EventId, Sequence, String)],
    ) -> Result<Rehydration, StoreError> {
        let session = &state.session_id;
        let keys = Keys::new(session);
        let lease = keys.k("lease");
        let token = uuid::Uuid::new_v4().to_string();
        let lease_ms = REHYDRATE_LEASE.as_millis() as u64;
        // Everything is prepared before the lease is taken, so the lease only has to cover
        // the writes.
        let fills = Self::fills(&keys, state, events, ids);
        let mut conn = self.conn.connection().await?;
        let mut taken = false;
        for _ in 0..INSTANCE_SET_ATTEMPTS {
            let names = self.instance_names(&keys).await?;
            let mut inv = self.begin.key(&lease);
            inv.key(keys.k("epoch"))
                .key(keys.k("inst"))
                .key(keys.data_keys(&names))
                .arg(&token)
                .arg(lease_ms)
                .arg(&names);
            let reply: String = inv
                .invoke_async(&mut conn)
                .await
                .map_err(Self::unavailable("rehydrate"))?;
            match reply.as_str() {
                "present" => return Ok(Rehydration::AlreadyPresent),
                "busy" => return Ok(Rehydration::Busy),
                "changed" => continue,
                "ok" => {
                    taken = true;
                    break;
                }
                other => {
                    return Err(StoreError::corrupt(
                        BACKEND,
                        "rehydrate reply",
                        format!("{other:?}"),
                    ));
                }
            }
        }
        if !taken {
            return Err(StoreError::unavailable(
                BACKEND,
                "rehydrate",
                "leftover instances kept changing while the rebuild started",
            ));
        }
        match self.put_all(&token, &lease, &fills).await {
            Ok(true) => {}
            Ok(false) => {
                warn!(session = %session, "rebuild lost its lease while writing; another rebuild took over");
                return self.after_lost_lease(&keys).await;
            }
            Err(e) => {
                let released: Result<i64, _> = self
                    .lease_release
                    .key(&lease)
                    .arg(&token)
                    .invoke_async(&mut conn)
                    .await;
                if let Err(release) = released {
                    debug!(session = %session, error = %release, "could not give up the rebuild lease");
                }
                return Err(e);
            }
        }
        let head = state.last_event_sequence.get();
        let floor = events.first().map_or(head + 1, |e| e.sequence.get());
        let reply: String = self
            .finish
            .key(&lease)
            .key(keys.k("epoch"))
            .key(keys.k("seq"))
            .key(keys.k("floor"))
            .arg(&token)
            .arg(uuid::Uuid::new_v4().to_string())
            .arg(head)
            .arg(floor)
            .invoke_async(&mut conn)
            .await
            .map_err(Self::unavailable("rehydrate"))?;
        match reply.as_str() {
            "ok" => {
                info!(session = %session, head, floor, events = events.len(), ids = ids.len(), "hot state rehydrated");
                Ok(Rehydration::Rebuilt)
            }
            "present" => Ok(Rehydration::AlreadyPresent),
            "lost" => {
                warn!(session = %session, "rebuild lost its lease before it finished; another rebuild took over");
                self.after_lost_lease(&keys).await
            }
            other => Err(StoreError::corrupt(
                BACKEND,
                "rehydrate reply",
                format!("{other:?}"),
            )),
        }
    }

    async fn release(&self, session: &SessionId) -> Result<(), StoreError> {
        self.drop_hot_state(session, None).await.map(|_| ())
    }

    async fn release_if_head(
        &self,
        session: &SessionId,
        head: Sequence,
    ) -> Result<bool, StoreError> {
        self.drop_hot_state(session, Some(head)).await
    }

    async fn end_session(&self, session: &SessionId) -> Result<(), StoreError> {
        let mut conn = self.conn.connection().await?;
        let () = conn
            .set(Keys::new(session).k("ended"), 1)
            .await
            .map_err(Self::unavailable("end session"))?;
        info!(session = %session, "session ended: commits refused from now on");
        Ok(())
    }

    async fn try_lease(
        &self,
        session: &SessionId,
        ttl: Duration,
    ) -> Result<Option<LeaseToken>, StoreError> {
        let token = uuid::Uuid::new_v4().to_string();
        let mut conn = self.conn.connection().await?;
        let taken: Option<String> = redis::cmd("SET")
            .arg(Keys::new(session).k("maint"))
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(px(ttl))
            .query_async(&mut conn)
            .await
            .map_err(Self::unavailable("take lease"))?;
        Ok(taken.map(|_| LeaseToken(token)))
    }

    async fn release_lease(
        &self,
        session: &SessionId,
        token: &LeaseToken,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.connection().await?;
        let released: i64 = self
            .lease_release
            .key(Keys::new(session).k("maint"))
            .arg(&token.0)
            .invoke_async(&mut conn)
            .await
            .map_err(Self::unavailable("release lease"))?;
        if released == 0 {
            debug!(session = %session, "maintenance lease had expired or passed to another run");
        }
        Ok(())
    }

    async fn remember_rejection(
        &self,
        rejection: &Rejection,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let event = &rejection.event;
        let key = Keys::new(&event.session_id).k(&format!("rej:{}", event.id));
        let json = serde_json::to_string(rejection).expect("rejections serialize");
        let mut conn = self.conn.connection().await?;
        let () = conn
            .pset_ex(key, json, px(ttl))
            .await
            .map_err(Self::unavailable("remember rejection"))?;
        Ok(())
    }

    async fn rejection(
        &self,
        session: &SessionId,
        id: &EventId,
    ) -> Result<Option<Rejection>, StoreError> {
        let mut conn = self.conn.connection().await?;
        let raw: Option<String> = conn
            .get(Keys::new(session).k(&format!("rej:{id}")))
            .await
            .map_err(Self::unavailable("read rejection"))?;
        raw.map(|r| {
            serde_json::from_str(&r).map_err(|e| StoreError::corrupt(BACKEND, "rejection", e))
        })
        .transpose()
    }

    async fn mark_unarchived(&self, session: &SessionId) -> Result<(), StoreError> {
        let mut conn = self.conn.connection().await?;
        let _added: i64 = conn
            .sadd(UNARCHIVED, session.as_str())
            .await
            .map_err(Self::unavailable("mark unarchived"))?;
        Ok(())
    }

    async fn unarchived(&self, limit: usize) -> Result<Vec<SessionId>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.connection().await?;
        // SRANDMEMBER with a positive count: at most `limit` distinct members, in random order,
        // so a session whose backfill keeps failing cannot hide the others from every run.
        let mut members: Vec<String> = redis::cmd("SRANDMEMBER")
            .arg(UNARCHIVED)
            .arg(i64::try_from(limit).unwrap_or(i64::MAX))
            .query_async(&mut conn)
            .await
            .map_err(Self::unavailable("list unarchived"))?;
        members.sort();
        Ok(members.into_iter().map(SessionId::new).collect())
    }

    async fn clear_unarchived(&self, session: &SessionId) -> Result<(), StoreError> {
        let mut conn = self.conn.connection().await?;
        let _removed: i64 = conn
            .srem(UNARCHIVED, session.as_str())
            .await
            .map_err(Self::unavailable("clear unarchived"))?;
        Ok(())
    }
}

/// The token-bucket rate limiter on Redis, shared by every Lambda instance. Each bucket is
/// its own key (`dl:rl:{key}`), in its own slot, never in a script with a session's keys.
#[derive(Clone)]
pub struct RedisRateLimiter {
    conn: RedisHandle,
    script: Script,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter").finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// A rate limiter over a connection, or over a lazy handle.
    pub fn new(conn: impl Into<RedisHandle>) -> Self {
        Self {
            conn: conn.into(),
            script: Script::new(include_str!("redis/rate.lua")),
        }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn try_acquire(
        &self,
        key: &str,
        per_second: f64,
        burst: u32,
    ) -> Result<Acquire, StoreError> {
        let mut conn = self.conn.connection().await?;
        let (taken, wait_us): (i64, u64) = self
            .script
            .key(format!("dl:rl:{{{key}}}"))
            .arg(per_second)
            .arg(burst)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| StoreError::unavailable(BACKEND, "rate limit", e))?;
        Ok(if taken == 1 {
            Acquire::Taken
        } else {
            Acquire::Limited {
                retry_after: Duration::from_micros(wait_us),
            }
        })
    }
}
