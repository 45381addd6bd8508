//! Redis adapters: the atomic event log and the shared rate limiter.
//!
//! Keys are hash-tagged per session (`dl:{S}:…`), so one session lives in one cluster slot and
//! every script touches a single slot:
//!
//! | key | type | what |
//! |---|---|---|
//! | `dl:{S}:epoch` | string | present while the hot state exists; commits refuse without it |
//! | `dl:{S}:seq` | string | last sequence |
//! | `dl:{S}:floor` | string | lowest sequence still in the hot window (absent = 1) |
//! | `dl:{S}:events` | zset | event JSON scored by sequence |
//! | `dl:{S}:ids` | hash | event id → `sequence:contentHash` (kept for the session's life) |
//! | `dl:{S}:inst` | hash | instance id → `{actorId, addedAt, addedBy, actor}` |
//! | `dl:{S}:i:<instance>:base` | hash | leaf path → canonical JSON base value |
//! | `dl:{S}:i:<instance>:ovr` | hash | leaf path → canonical JSON override value |
//! | `dl:{S}:i:<instance>:meta` | hash | leaf path → `{eventId, timestamp, userId, sequence}` |
//!
//! The commit is one Lua script (`commit.lua`, sent with EVALSHA and loaded on NOSCRIPT): epoch
//! check, dedup, compare-and-set, INCR, ZADD and override update together. Values arrive as
//! canonical JSON strings computed here, so the script compares strings and never parses JSON.
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
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script, Value as RedisValue};
use serde_json::{Value, json};
use tracing::{debug, warn};

use crate::error::{CommitError, StoreError};
use crate::ports::{CommitRequest, Committed, EventLog, RateLimiter};

/// Environment variable with the Redis URL (`redis://` or `rediss://` for TLS; AUTH as
/// `redis://user:password@host:port`).
pub const REDIS_URL_VAR: &str = "REDIS_URL";

const BACKEND: &str = "redis";

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Connection URL; `rediss://` enables TLS (ElastiCache / MemoryDB in-transit encryption).
    pub url: String,
    /// Bound on each command's answer.
    pub response_timeout: Duration,
    /// Bound on (re)connecting.
    pub connection_timeout: Duration,
}

impl RedisConfig {
    /// A config for `url` with the default timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            response_timeout: Duration::from_millis(1_000),
            connection_timeout: Duration::from_millis(1_000),
        }
    }

    /// Reads [`REDIS_URL_VAR`].
    pub fn from_env() -> Result<Self, crate::error::ConfigError> {
        std::env::var(REDIS_URL_VAR)
            .map(Self::new)
            .map_err(|_| crate::error::ConfigError::Missing(REDIS_URL_VAR))
    }

    /// Opens a self-reconnecting connection.
    pub async fn connect(&self) -> Result<ConnectionManager, StoreError> {
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| StoreError::unavailable(BACKEND, "parse url", e))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(self.response_timeout))
            .set_connection_timeout(Some(self.connection_timeout))
            .set_number_of_retries(2);
        ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| StoreError::unavailable(BACKEND, "connect", e))
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
    fn instance_prefix(&self) -> String {
        format!("{}i:", self.tag)
    }
}

/// The event log on Redis.
#[derive(Clone)]
pub struct RedisEventLog {
    conn: ConnectionManager,
    commit: Script,
    read: Script,
    trim: Script,
    state: Script,
}

impl std::fmt::Debug for RedisEventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEventLog").finish_non_exhaustive()
    }
}

impl RedisEventLog {
    /// Wraps a connection.
    pub fn new(conn: ConnectionManager) -> Self {
        Self {
            conn,
            commit: Script::new(include_str!("redis/commit.lua")),
            read: Script::new(include_str!("redis/read.lua")),
            trim: Script::new(include_str!("redis/trim.lua")),
            state: Script::new(include_str!("redis/state.lua")),
        }
    }

    fn unavailable(op: &'static str) -> impl FnOnce(redis::RedisError) -> StoreError {
        move |e| StoreError::unavailable(BACKEND, op, e)
    }

    async fn all_keys(&self, session: &SessionId) -> Result<Vec<String>, StoreError> {
        let keys = Keys::new(session);
        let mut conn = self.conn.clone();
        let instances: Vec<String> = conn
            .hkeys(keys.k("inst"))
            .await
            .map_err(Self::unavailable("list instances"))?;
        let mut out: Vec<String> = ["epoch", "seq", "floor", "events", "ids", "inst"]
            .iter()
            .map(|n| keys.k(n))
            .collect();
        for i in instances
            .iter()
            .map(String::as_str)
            .chain([InstanceId::SESSION])
        {
            for n in ["base", "ovr", "meta"] {
                out.push(keys.instance(i, n));
            }
        }
        Ok(out)
    }
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

fn parse_json(raw: &str, what: &'static str) -> Result<Value, StoreError> {
    serde_json::from_str(raw).map_err(|e| StoreError::corrupt(BACKEND, what, e))
}

#[async_trait]
impl EventLog for RedisEventLog {
    async fn init_session(&self, session: &SessionId) -> Result<(), StoreError> {
        let keys = Keys::new(session);
        let mut conn = self.conn.clone();
        let created: bool = conn
            .set_nx(keys.k("epoch"), uuid::Uuid::new_v4().to_string())
            .await
            .map_err(Self::unavailable("init session"))?;
        if created {
            let leaves: Vec<(String, String)> = flatten(&session_defaults())
                .into_iter()
                .map(|(p, v)| (p, canonical_json(&v)))
                .collect();
            let _: () = redis::pipe()
                .atomic()
                .set_nx(keys.k("seq"), 0)
                .hset_multiple(keys.instance(InstanceId::SESSION, "base"), &leaves)
                .query_async(&mut conn)
                .await
                .map_err(Self::unavailable("init session"))?;
        }
        Ok(())
    }

    async fn commit(&self, request: CommitRequest) -> Result<Committed, CommitError> {
        let CommitRequest { event, changes } = request;
        let session = event.session_id.clone();
        let keys = Keys::new(&session);
        let mut inv = self.commit.prepare_invoke();
        for n in ["epoch", "seq", "events", "ids", "inst"] {
            inv.key(keys.k(n));
        }
        inv.arg(event.id.as_str())
            .arg(event.content_hash())
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
        let mut conn = self.conn.clone();
        let reply: RedisValue = inv
            .invoke_async(&mut conn)
            .await
            .map_err(|e| StoreError::unavailable(BACKEND, "commit", e))?;
        let reply = strings(reply)?;
        match reply.first().map(String::as_str) {
            Some("ok") => {
                let sequence = Sequence(
                    reply[1]
                        .parse()
                        .map_err(|e| StoreError::corrupt(BACKEND, "sequence", e))?,
                );
                debug!(session = %session, seq = sequence.get(), "event committed");
                let mut event = event;
                event.sequence = sequence;
                Ok(Committed {
                    sequence,
                    duplicate: false,
                    event: Some(event),
                })
            }
            Some("dup") => {
                let sequence = Sequence(
                    reply[1]
                        .parse()
                        .map_err(|e| StoreError::corrupt(BACKEND, "sequence", e))?,
                );
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
                })
            }
            Some("reused") => Err(CommitError::Invalid(format!(
                "event id {} was already used with different content",
                event.id
            ))),
            Some("invalid") => Err(CommitError::Invalid(
                reply.get(1).cloned().unwrap_or_default(),
            )),
            Some("conflict") => {
                let mut current = BTreeMap::new();
                for pair in reply[1..].chunks(2) {
                    current.insert(pair[0].clone(), parse_json(&pair[1], "current value")?);
                }
                Err(CommitError::Conflict { current })
            }
            Some("nohot") => Err(CommitError::HotStateMissing(session)),
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
        let mut conn = self.conn.clone();
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
                floor: Sequence(reply[1].parse().unwrap_or(1)),
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
        let mut conn = self.conn.clone();
        let (epoch, seq): (Option<String>, Option<u64>) = redis::pipe()
            .get(keys.k("epoch"))
            .get(keys.k("seq"))
            .query_async(&mut conn)
            .await
            .map_err(Self::unavailable("head"))?;
        if epoch.is_none() {
            return Err(StoreError::HotStateMissing(session.clone()));
        }
        Ok(Sequence(seq.unwrap_or(0)))
    }

    async fn floor(&self, session: &SessionId) -> Result<Sequence, StoreError> {
        let keys = Keys::new(session);
        let mut conn = self.conn.clone();
        let (epoch, floor): (Option<String>, Option<u64>) = redis::pipe()
            .get(keys.k("epoch"))
            .get(keys.k("floor"))
            .query_async(&mut conn)
            .await
            .map_err(Self::unavailable("floor"))?;
        if epoch.is_none() {
            return Err(StoreError::HotStateMissing(session.clone()));
        }
        Ok(Sequence(floor.unwrap_or(1)))
    }

    async fn trim_below(&self, session: &SessionId, sequence: Sequence) -> Result<u64, StoreError> {
        let keys = Keys::new(session);
        let mut conn = self.conn.clone();
        let removed: i64 = self
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
        Ok(removed as u64)
    }

    async fn state(&self, session: &SessionId) -> Result<Option<GameSessionState>, StoreError> {
        let keys = Keys::new(session);
        let mut conn = self.conn.clone();
        let reply: RedisValue = self
            .state
            .key(keys.k("epoch"))
            .key(keys.k("seq"))
            .key(keys.k("inst"))
            .arg(keys.instance_prefix())
            .invoke_async(&mut conn)
            .await
            .map_err(Self::unavailable("read state"))?;
        let reply = strings(reply)?;
        if reply.first().map(String::as_str) != Some("ok") {
            return Ok(None);
        }
        let corrupt = |what: &'static str| {
            move |e: std::num::ParseIntError| StoreError::corrupt(BACKEND, what, e)
        };
        let mut state = GameSessionState::new(session.clone(), None);
        state.last_event_sequence = Sequence(reply[1].parse().map_err(corrupt("sequence"))?);
        let count: usize = reply[2].parse().map_err(corrupt("instance count"))?;
        let mut at = 3;
        for _ in 0..count {
            let name = reply[at].clone();
            let record = reply[at + 1].clone();
            let n: usize = reply[at + 2].parse().map_err(corrupt("override count"))?;
            at += 3;
            let mut overrides = BTreeMap::new();
            for _ in 0..n {
                let path = reply[at].clone();
                let mut meta = parse_json(&reply[at + 2], "override metadata")?;
                meta["value"] = parse_json(&reply[at + 1], "override value")?;
                let o: Override = serde_json::from_value(meta)
                    .map_err(|e| StoreError::corrupt(BACKEND, "override", e))?;
                overrides.insert(path, o);
                at += 3;
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
    ) -> Result<(), StoreError> {
        let session = &state.session_id;
        let keys = Keys::new(session);
        let old_keys = self.all_keys(session).await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.del(&old_keys);
        pipe.set(keys.k("epoch"), uuid::Uuid::new_v4().to_string());
        pipe.set(keys.k("seq"), state.last_event_sequence.get());
        let floor = events
            .first()
            .map_or(state.last_event_sequence.get() + 1, |e| e.sequence.get());
        pipe.set(keys.k("floor"), floor);
        for e in events {
            let text = serde_json::to_string(e).expect("events serialize");
            // Same member text as the commit script writes: sequence first.
            let member = format!("{{\"sequence\":{},{}", e.sequence.get(), event_tail(e));
            debug_assert_eq!(parse_event(&member).ok().as_ref(), Some(e), "{text}");
            pipe.zadd(keys.k("events"), member, e.sequence.get());
        }
        let mut id_fields: Vec<(String, String)> = ids
            .iter()
            .map(|(id, seq, hash)| (id.to_string(), format!("{}:{hash}", seq.get())))
            .collect();
        id_fields.extend(events.iter().map(|e| {
            (
                e.id.to_string(),
                format!("{}:{}", e.sequence.get(), e.content_hash()),
            )
        }));
        for chunk in id_fields.chunks(500) {
            pipe.hset_multiple(keys.k("ids"), chunk);
        }
        let write_overrides =
            |pipe: &mut redis::Pipeline, instance: &str, overrides: &BTreeMap<String, Override>| {
                for (path, o) in overrides {
                    pipe.hset(
                        keys.instance(instance, "ovr"),
                        path,
                        canonical_json(&o.value),
                    );
                    let meta = json!({"eventId": o.event_id, "timestamp": o.timestamp,
                                  "userId": o.user_id, "sequence": o.sequence});
                    pipe.hset(keys.instance(instance, "meta"), path, meta.to_string());
                }
            };
        let session_base: Vec<(String, String)> = flatten(&session_defaults())
            .into_iter()
            .map(|(p, v)| (p, canonical_json(&v)))
            .collect();
        pipe.hset_multiple(keys.instance(InstanceId::SESSION, "base"), &session_base);
        write_overrides(&mut pipe, InstanceId::SESSION, &state.session_overrides);
        for (instance, actor) in &state.active_actors {
            let record = json!({"actorId": actor.actor_id, "addedAt": actor.added_at,
                                "addedBy": actor.added_by, "actor": actor.actor});
            pipe.hset(keys.k("inst"), instance.as_str(), record.to_string());
            let leaves: Vec<(String, String)> = flatten(&actor.actor)
                .into_iter()
                .map(|(p, v)| (p, canonical_json(&v)))
                .collect();
            if !leaves.is_empty() {
                pipe.hset_multiple(keys.instance(instance.as_str(), "base"), &leaves);
            }
            write_overrides(&mut pipe, instance.as_str(), &actor.overrides);
        }
        let mut conn = self.conn.clone();
        let _: () = pipe
            .query_async(&mut conn)
            .await
            .map_err(Self::unavailable("rehydrate"))?;
        warn!(session = %session, head = state.last_event_sequence.get(), floor, "hot state rehydrated");
        Ok(())
    }

    async fn release(&self, session: &SessionId) -> Result<(), StoreError> {
        let keys = self.all_keys(session).await?;
        let mut conn = self.conn.clone();
        let _: () = conn.del(keys).await.map_err(Self::unavailable("release"))?;
        Ok(())
    }
}

/// The token-bucket rate limiter on Redis, shared by every Lambda instance.
#[derive(Clone)]
pub struct RedisRateLimiter {
    conn: ConnectionManager,
    script: Script,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter").finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// Wraps a connection.
    pub fn new(conn: ConnectionManager) -> Self {
        Self {
            conn,
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
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let taken: i64 = self
            .script
            .key(format!("dl:rl:{{{key}}}"))
            .arg(per_second)
            .arg(burst)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| StoreError::unavailable(BACKEND, "rate limit", e))?;
        Ok(taken == 1)
    }
}
