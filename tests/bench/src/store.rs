//! The store-level scenarios of issue 12: `commit`, `replay` and `compaction` call the storage
//! adapters directly (no gateway, no sockets), so what they measure is the adapter and its
//! backend; each compares with a baseline measured in the same run (the raw Lua script, the
//! memory adapters, the log before compaction). `cold-start` is in [`crate::cold`].
//!
//! Backends come from the command line or the usual environment (`REDIS_URL`, `MONGODB_URI`);
//! a backend that is not there makes its case "skipped", which is not a failure: a machine
//! without Redis can still run the rest.

use std::time::{Duration, Instant};

use dlab_core::canonical::checksum;
use dlab_core::changes::{ACTOR_ADDED, ChangeSet, parse_changes};
use dlab_core::event::GameEvent;
use dlab_core::ids::{EventId, Sequence, SessionId, UserId};
use dlab_core::state::{GameSessionState, apply_all};
use dlab_service::Deps;
use dlab_service::auth::Authenticator;
use dlab_service::config::Settings;
use dlab_service::maintenance::{CompactionOutcome, Trigger, compact_session};
use dlab_store::memory::{MemoryEventArchive, MemoryEventLog};
use dlab_store::model::now_ms;
use dlab_store::mongo::{MongoConfig, MongoStores};
use dlab_store::redis::{RedisConfig, RedisEventLog};
use dlab_store::{CommitError, CommitRequest, EventArchive, EventLog};
use dlab_tests::lifecycle_cases::combat;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use redis::aio::MultiplexedConnection;
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{BenchError, Result};
use crate::report::{Case, Measured, Report, Side, StoreRun};
use crate::stats::Summary;

/// How long reaching a backend may take before its case is skipped.
const REACH: Duration = Duration::from_secs(5);

/// The commit script, exactly as the adapter sends it.
const COMMIT_LUA: &str = include_str!("../../../shared/store/src/redis/commit.lua");

/// Where the backends are (`None`: not configured).
#[derive(Debug, Clone, Default)]
pub struct Backends {
    /// `redis://…`
    pub redis: Option<String>,
    /// `mongodb://…`
    pub mongodb: Option<String>,
}

fn store_err(what: &str) -> impl FnOnce(String) -> BenchError + '_ {
    move |reason| BenchError::Store {
        what: what.to_owned(),
        reason,
    }
}

fn fail(what: &str, e: impl std::fmt::Display) -> BenchError {
    store_err(what)(e.to_string())
}

/// A chat event of `session` without state changes (sequence assigned by the commit).
fn chat(session: &SessionId, i: usize) -> GameEvent {
    GameEvent {
        id: EventId::new(uuid::Uuid::new_v4().to_string()),
        sequence: Sequence::ZERO,
        timestamp: now_ms(),
        client_timestamp: None,
        user_id: UserId::new("bench-user"),
        session_id: session.clone(),
        event_type: "core:chat".to_owned(),
        payload: json!({"text": format!("bench line {i}: the goblin looks at you funny")}),
        checksum: None,
    }
}

fn fresh_session(prefix: &str) -> SessionId {
    SessionId::new(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()))
}

/// The Redis event log and a raw multiplexed connection, or why they are not there.
async fn reach_redis(
    url: Option<&str>,
) -> std::result::Result<(RedisEventLog, MultiplexedConnection), String> {
    let url = url.ok_or("no Redis (set REDIS_URL or pass --redis URL)")?;
    let connect = async {
        let conn = RedisConfig::new(url)
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let mut raw = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        let _: String = redis::cmd("PING")
            .query_async(&mut raw)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((RedisEventLog::new(conn), raw))
    };
    match tokio::time::timeout(REACH, connect).await {
        Ok(Ok(pair)) => Ok(pair),
        Ok(Err(e)) => Err(format!("no Redis ({e})")),
        Err(_) => Err(format!("no Redis (no answer within {REACH:?})")),
    }
}

/// Deletes every key of a bench session: the tests' Redis is shared, so the bench leaves
/// nothing behind. Only the keys a chat-only session has (no instances besides `$session`).
async fn drop_session(conn: &mut MultiplexedConnection, session: &SessionId) {
    let keys = Keys::new(session);
    let mut names: Vec<String> = [
        "epoch", "seq", "floor", "events", "inst", "ended", "aud", "maint", "lease",
    ]
    .iter()
    .map(|n| keys.k(n))
    .collect();
    names.extend((0..=255u8).map(|b| keys.k(&format!("ids:{b:02x}"))));
    names.push(keys.k("ids:xx"));
    for n in ["base", "ovr", "meta"] {
        names.push(keys.k(&format!("i:$session:{n}")));
    }
    let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(&names).query_async(conn).await;
}

/// The key and argument layout of `commit.lua`, mirrored from the adapter (`redis.rs`) so the
/// raw baseline sends the very same call. If the adapter's layout changes, the raw call's
/// reply stops being `ok` and the bench says so instead of measuring something else.
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

    fn ids_slot(&self, id: &EventId) -> (String, String) {
        let hex: String = id.as_str().chars().filter(|c| *c != '-').collect();
        if hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            (self.k(&format!("ids:{}", &hex[..2])), hex[2..].to_owned())
        } else {
            (self.k("ids:xx"), id.as_str().to_owned())
        }
    }
}

/// One precomputed `EVALSHA` of `commit.lua` for a chat event (kind `none`).
fn raw_commit(sha: &str, event: &GameEvent) -> Result<redis::Cmd> {
    let keys = Keys::new(&event.session_id);
    let (bucket, field) = keys.ids_slot(&event.id);
    let key_list = [
        keys.k("epoch"),
        keys.k("seq"),
        keys.k("events"),
        bucket,
        keys.k("inst"),
        keys.k("ended"),
        // The audience token is always the last key.
        keys.k("aud"),
    ];
    let hash = event.content_hash();
    let short = hash.get(..16).unwrap_or(&hash).to_owned();
    let mut value = serde_json::to_value(event)?;
    if let Value::Object(map) = &mut value {
        map.remove("sequence");
    }
    let tail = value.to_string()[1..].to_owned();
    let partial =
        json!({"eventId": event.id, "timestamp": event.timestamp, "userId": event.user_id})
            .to_string();
    let meta_prefix = format!("{},\"sequence\":", &partial[..partial.len() - 1]);
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(sha)
        .arg(key_list.len())
        .arg(&key_list)
        .arg(field)
        .arg(short)
        .arg(tail)
        .arg(meta_prefix)
        .arg("none");
    Ok(cmd)
}

/// Sizes of `commit`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Commit {
    /// Commits per case and side.
    pub events: usize,
    /// Concurrent tasks of the second case (the first has 1).
    pub tasks: usize,
}

/// Deals `items` round-robin to `tasks` piles.
fn deal<T>(items: Vec<T>, tasks: usize) -> Vec<Vec<T>> {
    let mut piles: Vec<Vec<T>> = (0..tasks.max(1)).map(|_| Vec::new()).collect();
    let n = piles.len();
    for (i, item) in items.into_iter().enumerate() {
        piles[i % n].push(item);
    }
    piles
}

/// Throughput and latency of one side: `piles` run concurrently, each in order.
fn throughput(what: &str, count: usize, elapsed: Duration, latencies: &[Duration]) -> StoreRun {
    let s = Summary::of(latencies);
    StoreRun::new(what)
        .with("commits/s", count as f64 / elapsed.as_secs_f64().max(1e-9))
        .with("p50 (ms)", s.p50_ms)
        .with("p99 (ms)", s.p99_ms)
        .with("max (ms)", s.max_ms)
}

async fn commit_ours(log: &RedisEventLog, events: usize, tasks: usize) -> Result<StoreRun> {
    let session = fresh_session("bench-commit");
    log.init_session(&session)
        .await
        .map_err(|e| fail("init_session", e))?;
    let piles = deal((0..events).map(|i| chat(&session, i)).collect(), tasks);
    let start = Instant::now();
    let mut running: FuturesUnordered<_> = piles
        .into_iter()
        .map(|pile| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(pile.len());
                for event in pile {
                    let t = Instant::now();
                    let c = log
                        .commit(CommitRequest {
                            event,
                            changes: ChangeSet::None,
                        })
                        .await
                        .map_err(|e| fail("RedisEventLog::commit", e))?;
                    lat.push(t.elapsed());
                    if c.duplicate {
                        return Err(fail("RedisEventLog::commit", "a fresh id was a duplicate"));
                    }
                }
                Ok::<_, BenchError>(lat)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(events);
    while let Some(done) = running.next().await {
        latencies.extend(done.map_err(|e| fail("commit task", e))??);
    }
    let elapsed = start.elapsed();
    Ok(throughput(
        "RedisEventLog::commit",
        events,
        elapsed,
        &latencies,
    ))
}

async fn commit_raw(
    log: &RedisEventLog,
    conn: &MultiplexedConnection,
    events: usize,
    tasks: usize,
) -> Result<StoreRun> {
    let session = fresh_session("bench-commit-raw");
    log.init_session(&session)
        .await
        .map_err(|e| fail("init_session", e))?;
    let script = redis::Script::new(COMMIT_LUA);
    let sha = script.get_hash().to_owned();
    let mut c = conn.clone();
    let loaded: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(COMMIT_LUA)
        .query_async(&mut c)
        .await
        .map_err(|e| fail("SCRIPT LOAD", e))?;
    if loaded != sha {
        return Err(fail("SCRIPT LOAD", "unexpected script hash"));
    }
    let cmds = (0..events)
        .map(|i| raw_commit(&sha, &chat(&session, i)))
        .collect::<Result<Vec<_>>>()?;
    let piles = deal(cmds, tasks);
    let start = Instant::now();
    let mut running: FuturesUnordered<_> = piles
        .into_iter()
        .map(|pile| {
            let mut conn = conn.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(pile.len());
                for cmd in pile {
                    let t = Instant::now();
                    let reply: Vec<redis::Value> = cmd
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| fail("EVALSHA commit.lua", e))?;
                    lat.push(t.elapsed());
                    let ok =
                        matches!(reply.first(), Some(redis::Value::BulkString(b)) if b == b"ok");
                    if !ok {
                        return Err(fail(
                            "EVALSHA commit.lua",
                            format!("reply {reply:?} (the adapter's key layout changed?)"),
                        ));
                    }
                }
                Ok::<_, BenchError>(lat)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(events);
    while let Some(done) = running.next().await {
        latencies.extend(done.map_err(|e| fail("commit task", e))??);
    }
    let elapsed = start.elapsed();
    let mut c = conn.clone();
    drop_session(&mut c, &session).await;
    Ok(throughput(
        "EVALSHA commit.lua",
        events,
        elapsed,
        &latencies,
    ))
}

/// `commit`: the adapter's commit against the bare script, with 1 and with `tasks` tasks.
pub async fn commit(b: &Backends, smoke: bool, p: Commit) -> Report {
    let mut cases = Vec::new();
    let mut notes = Vec::new();
    match reach_redis(b.redis.as_deref()).await {
        Err(reason) => {
            for tasks in [1, p.tasks] {
                cases.push(Case::new(
                    &format!("{tasks} task(s)"),
                    Side::skipped(&reason),
                    Side::skipped(&reason),
                ));
            }
        }
        Ok((log, conn)) => {
            for tasks in [1, p.tasks] {
                eprintln!("  {tasks} task(s) ...");
                // Raw first, then ours: the cost of a cold connection or script cache falls on
                // the baseline, never in our favour.
                let base = match commit_raw(&log, &conn, p.events, tasks).await {
                    Ok(r) => Side::measured(Measured::Store(r)),
                    Err(e) => Side::failed(&e),
                };
                let ours = match commit_ours(&log, p.events, tasks).await {
                    Ok(r) => Side::measured(Measured::Store(r)),
                    Err(e) => Side::failed(&e),
                };
                let case = Case::new(&format!("{tasks} task(s)"), ours, base);
                if let Some(r) = case.ratios.get("commits/s") {
                    notes.push(format!(
                        "goal ({tasks} task(s)): commits/s >= 0.5 x raw: {} ({r:.2})",
                        if *r >= 0.5 { "met" } else { "missed" }
                    ));
                }
                cases.push(case);
            }
        }
    }
    let mut r = Report::new("commit", smoke, &p, cases).sides("RedisEventLog", "raw EVALSHA");
    r.notes = notes;
    r
}

/// Sizes of `replay`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Replay {
    /// Events in the session.
    pub events: usize,
    /// Events per read (the service's `read_page`).
    pub page: usize,
}

/// Reads `1..=head` page by page with `read`; the events read and the time it took.
async fn read_all<F, Fut>(head: u64, page: usize, mut read: F) -> Result<(u64, Duration)>
where
    F: FnMut(Sequence) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<GameEvent>>>,
{
    let start = Instant::now();
    let mut after = 0u64;
    let mut count = 0u64;
    // Bounded: every page but an empty one advances, and there are head/page of them.
    let pages = head / page.max(1) as u64 + 2;
    for _ in 0..pages {
        if after >= head {
            break;
        }
        let events = read(Sequence(after)).await?;
        let Some(last) = events.last() else { break };
        if last.sequence.get() <= after {
            return Err(fail("read", "a page did not advance"));
        }
        after = last.sequence.get();
        count += events.len() as u64;
    }
    let elapsed = start.elapsed();
    if count != head {
        return Err(fail("read", format!("read {count} events of {head}")));
    }
    Ok((count, elapsed))
}

fn rate(what: &str, count: u64, elapsed: Duration) -> StoreRun {
    StoreRun::new(what)
        .with("events/s", count as f64 / elapsed.as_secs_f64().max(1e-9))
        .with("read whole (ms)", elapsed.as_secs_f64() * 1e3)
}

/// `replay`: one session read back whole from Redis and from MongoDB, against the memory
/// adapters reading the same events.
pub async fn replay(b: &Backends, smoke: bool, p: Replay) -> Report {
    let session = fresh_session("bench-replay");
    // The events, sequenced once by the memory log; the archives store these very events.
    let memory_log = MemoryEventLog::new();
    let memory_archive = MemoryEventArchive::new();
    let mut events = Vec::with_capacity(p.events);
    let setup: Result<()> = async {
        memory_log
            .init_session(&session)
            .await
            .map_err(|e| fail("memory init", e))?;
        for i in 0..p.events {
            let c = memory_log
                .commit(CommitRequest {
                    event: chat(&session, i),
                    changes: ChangeSet::None,
                })
                .await
                .map_err(|e| fail("memory commit", e))?;
            let event = c
                .event
                .ok_or_else(|| fail("memory commit", "no event back"))?;
            memory_archive
                .insert(&event)
                .await
                .map_err(|e| fail("memory archive", e))?;
            events.push(event);
        }
        Ok(())
    }
    .await;
    let head = p.events as u64;
    let page = p.page;
    let memory_log_side = || async {
        match setup.as_ref() {
            Err(e) => Side::failed(&fail("memory set-up", e)),
            Ok(()) => match read_all(head, page, |after| {
                let log = &memory_log;
                let session = &session;
                async move {
                    log.read(session, after, None, page)
                        .await
                        .map_err(|e| fail("MemoryEventLog::read", e))
                }
            })
            .await
            {
                Ok((n, t)) => Side::measured(Measured::Store(rate("MemoryEventLog::read", n, t))),
                Err(e) => Side::failed(&e),
            },
        }
    };
    let mut cases = Vec::new();

    // The hot log.
    eprintln!("  hot log ...");
    let redis_side = match reach_redis(b.redis.as_deref()).await {
        Err(reason) => Side::skipped(reason),
        Ok((log, mut conn)) => {
            let run: Result<StoreRun> = async {
                log.init_session(&session)
                    .await
                    .map_err(|e| fail("init_session", e))?;
                // Filled 50 at a time: the fill is set-up, not measured.
                let mut fill = futures::stream::iter(events.iter().cloned())
                    .map(|mut e| {
                        let log = &log;
                        e.sequence = Sequence::ZERO;
                        async move {
                            log.commit(CommitRequest {
                                event: e,
                                changes: ChangeSet::None,
                            })
                            .await
                        }
                    })
                    .buffer_unordered(50);
                while let Some(c) = fill.next().await {
                    c.map_err(|e: CommitError| fail("fill Redis", e))?;
                }
                let (n, t) = read_all(head, page, |after| {
                    let log = &log;
                    let session = &session;
                    async move {
                        log.read(session, after, None, page)
                            .await
                            .map_err(|e| fail("RedisEventLog::read", e))
                    }
                })
                .await?;
                Ok(rate("RedisEventLog::read", n, t))
            }
            .await;
            drop_session(&mut conn, &session).await;
            match run {
                Ok(r) => Side::measured(Measured::Store(r)),
                Err(e) => Side::failed(&e),
            }
        }
    };
    cases.push(Case::new(
        "hot log: Redis",
        redis_side,
        memory_log_side().await,
    ));

    // The archive.
    eprintln!("  archive ...");
    let archive_base = match setup.as_ref() {
        Err(e) => Side::failed(&fail("memory set-up", e)),
        Ok(()) => match read_all(head, page, |after| {
            let a = &memory_archive;
            let session = &session;
            async move {
                a.read(session, after, None, page)
                    .await
                    .map_err(|e| fail("MemoryEventArchive::read", e))
            }
        })
        .await
        {
            Ok((n, t)) => Side::measured(Measured::Store(rate("MemoryEventArchive::read", n, t))),
            Err(e) => Side::failed(&e),
        },
    };
    let mongo_side = match b.mongodb.as_deref() {
        None => Side::skipped("no MongoDB (set MONGODB_URI or pass --mongodb URI)"),
        Some(uri) => {
            let mut config = MongoConfig::new(uri);
            config.database = format!("dlab_bench_{}", uuid::Uuid::new_v4().simple());
            config.server_selection_timeout = REACH;
            match tokio::time::timeout(REACH * 2, MongoStores::connect(&config)).await {
                Err(_) => Side::skipped("no MongoDB (no answer)"),
                Ok(Err(e)) => Side::skipped(format!("no MongoDB ({e})")),
                Ok(Ok(stores)) => {
                    let archive = stores.archive();
                    let run: Result<StoreRun> = async {
                        let mut fill = futures::stream::iter(events.iter())
                            .map(|e| archive.insert(e))
                            .buffer_unordered(16);
                        while let Some(r) = fill.next().await {
                            r.map_err(|e| fail("fill MongoDB", e))?;
                        }
                        let (n, t) = read_all(head, page, |after| {
                            let a = &archive;
                            let session = &session;
                            async move {
                                a.read(session, after, None, page)
                                    .await
                                    .map_err(|e| fail("MongoEventArchive::read", e))
                            }
                        })
                        .await?;
                        Ok(rate("MongoEventArchive::read", n, t))
                    }
                    .await;
                    // A fresh database per run, dropped at the end (also after a failure).
                    if let Err(e) = stores.database().drop().await {
                        eprintln!("    could not drop {}: {e}", config.database);
                    }
                    match run {
                        Ok(r) => Side::measured(Measured::Store(r)),
                        Err(e) => Side::failed(&e),
                    }
                }
            }
        }
    };
    cases.push(Case::new("archive: MongoDB", mongo_side, archive_base));
    Report::new("replay", smoke, &p, cases).sides("backend", "memory adapter")
}

/// Sizes of `compaction`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Compaction {
    /// Combat events (besides the 12 monsters' arrival).
    pub events: usize,
}

/// The generated combat of the lifecycle suite (`tests/src/lifecycle_cases.rs`,
/// `combat_session_shrinks_the_hot_log`), committed straight to the ports instead of through
/// the HTTP world: 3 users, 12 monsters with 1,000 hp; 40% attacks as compare-and-set on the
/// current hp, 10% heals (`inc`), 20% moves, 20% chat, 10% dice. Same seed, same mix.
async fn combat(deps: &Deps, session: &SessionId, events: usize) -> Result<u64> {
    let monsters: Vec<String> = (0..12).map(|i| format!("m{i}")).collect();
    let users = ["player-1", "player-2", "gm"];
    let mut committed = 0u64;
    let commit = |event_type: &str, payload: Value, user: &str| {
        let event = GameEvent {
            id: EventId::new(uuid::Uuid::new_v4().to_string()),
            sequence: Sequence::ZERO,
            timestamp: now_ms(),
            client_timestamp: None,
            user_id: UserId::new(user),
            session_id: session.clone(),
            event_type: event_type.to_owned(),
            payload,
            checksum: None,
        };
        async move {
            let changes = parse_changes(&event.event_type, &event.payload)
                .map_err(|e| fail("combat event", e))?;
            match deps.log.commit(CommitRequest { event, changes }).await {
                Ok(c) => {
                    let e = c.event.ok_or_else(|| fail("commit", "no event back"))?;
                    // The archive gets every event, as the pipeline's archive write does.
                    deps.archive
                        .insert(&e)
                        .await
                        .map_err(|e| fail("archive", e))?;
                    Ok(true)
                }
                Err(CommitError::Conflict { .. }) => Ok(false),
                Err(e) => Err(fail("commit", e)),
            }
        }
    };
    for m in &monsters {
        let actor = json!({"name": format!("Orc {m}"), "type": "monster",
                           "attributes": {"hp": {"value": 1000, "max": 1000}, "ac": 13}});
        commit(
            ACTOR_ADDED,
            json!({"instanceId": m, "actorId": format!("actor-{m}"), "actor": actor}),
            "gm",
        )
        .await?;
    }
    let mut next = combat::rng();
    // Bounded: a conflict cannot happen with one writer, but the loop stops anyway.
    for _ in 0..events * 2 {
        if committed >= events as u64 {
            break;
        }
        let r = next();
        let user = users[(r % 3) as usize];
        let target = &monsters[((r >> 8) % 12) as usize];
        let hp = if combat::attacks(r) {
            let state = deps
                .log
                .state(session)
                .await
                .map_err(|e| fail("state", e))?
                .ok_or_else(|| fail("state", "no hot state"))?;
            combat::hp(&state, target)
        } else {
            0
        };
        let (event_type, payload) = combat::action(r, committed as usize, user, target, hp);
        if commit(event_type, payload, user).await? {
            committed += 1;
        }
    }
    Ok(committed)
}

/// The hot log's events and their bytes (the serialized events, as the lifecycle test counts).
async fn hot_log(deps: &Deps, session: &SessionId) -> Result<(Vec<GameEvent>, u64)> {
    let head = deps.log.head(session).await.map_err(|e| fail("head", e))?;
    let floor = deps
        .log
        .floor(session)
        .await
        .map_err(|e| fail("floor", e))?;
    let hot = deps
        .log
        .read(
            session,
            Sequence(floor.get().saturating_sub(1)),
            Some(head),
            1 << 24,
        )
        .await
        .map_err(|e| fail("read", e))?;
    let mut bytes = 0u64;
    for e in &hot {
        bytes += serde_json::to_vec(e)?.len() as u64;
    }
    Ok((hot, bytes))
}

fn state_hash(state: &GameSessionState) -> Result<String> {
    Ok(checksum(&serde_json::to_value(state)?))
}

/// What one compaction run measured.
struct CompactionRun {
    events: u64,
    before: (usize, u64),
    after: (usize, u64),
    took: Duration,
    hash_equal: bool,
}

async fn compaction_run(p: Compaction) -> Result<CompactionRun> {
    let auth = Authenticator::with_secret(&format!("bench-{}", uuid::Uuid::new_v4().simple()));
    let (deps, _notifier) = Deps::memory_with_channels(auth, Settings::default());
    let session = fresh_session("bench-compaction");
    deps.log
        .init_session(&session)
        .await
        .map_err(|e| fail("init_session", e))?;
    let events = combat(&deps, &session, p.events).await?;
    let (hot, before) = hot_log(&deps, &session).await?;
    let start = Instant::now();
    let outcome = compact_session(&deps, &session, Trigger::Scheduled)
        .await
        .map_err(|e| fail("compact_session", e))?;
    let took = start.elapsed();
    if !matches!(outcome, CompactionOutcome::Done(_)) {
        return Err(fail("compact_session", format!("{outcome:?}")));
    }
    let (tail, after) = hot_log(&deps, &session).await?;
    // The state a reader rebuilds (latest snapshot + the hot tail after it) must be the live one.
    let snapshot = deps
        .snapshots
        .latest(&session)
        .await
        .map_err(|e| fail("snapshot", e))?
        .ok_or_else(|| fail("snapshot", "compaction wrote none"))?;
    let mut rebuilt = snapshot.state.clone();
    let rest: Vec<&GameEvent> = tail
        .iter()
        .filter(|e| e.sequence > snapshot.up_to_sequence)
        .collect();
    apply_all(&mut rebuilt, rest).map_err(|e| fail("apply the tail", e))?;
    let live = deps
        .log
        .state(&session)
        .await
        .map_err(|e| fail("state", e))?
        .ok_or_else(|| fail("state", "no hot state"))?;
    Ok(CompactionRun {
        events,
        before: (hot.len(), before),
        after: (tail.len(), after),
        took,
        hash_equal: state_hash(&rebuilt)? == state_hash(&live)?,
    })
}

/// `compaction`: a combat session's hot log before and after one scheduled compaction on the
/// memory ports; the baseline is the same log before it.
pub async fn compaction(smoke: bool, p: Compaction) -> Report {
    let (ours, base, notes) = match compaction_run(p).await {
        Err(e) => (Side::failed(&e), Side::failed(&e), Vec::new()),
        Ok(r) => {
            let reduction = 100.0 - 100.0 * r.after.1 as f64 / (r.before.1.max(1)) as f64;
            let notes = vec![
                format!(
                    "{} combat events; compaction took {:.1} ms; state hash (snapshot + tail = live): {}",
                    r.events,
                    r.took.as_secs_f64() * 1e3,
                    if r.hash_equal { "equal" } else { "DIFFERENT" }
                ),
                format!(
                    "goal: hot log bytes reduced >= 90%: {} ({reduction:.1}%)",
                    if reduction >= 90.0 { "met" } else { "missed" }
                ),
            ];
            let ours = StoreRun::new("after compact_session")
                .with("hot-log bytes", r.after.1 as f64)
                .with("hot-log events", r.after.0 as f64)
                .with("reduction (%)", reduction)
                .with("compaction (ms)", r.took.as_secs_f64() * 1e3)
                .with("state hash equal", if r.hash_equal { 1.0 } else { 0.0 });
            let base = StoreRun::new("before")
                .with("hot-log bytes", r.before.1 as f64)
                .with("hot-log events", r.before.0 as f64)
                .with("reduction (%)", f64::NAN)
                .with("compaction (ms)", f64::NAN)
                .with("state hash equal", f64::NAN);
            let ours = if r.hash_equal {
                Side::measured(Measured::Store(ours))
            } else {
                let mut s = Side::measured(Measured::Store(ours));
                s.error = Some("the state from snapshot + tail differs from the live state".into());
                s
            };
            (ours, Side::measured(Measured::Store(base)), notes)
        }
    };
    let mut r = Report::new(
        "compaction",
        smoke,
        &p,
        vec![Case::new("combat, memory ports", ours, base)],
    )
    .sides("after", "before");
    r.notes = notes;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deal_spreads_round_robin_and_keeps_everything() {
        let piles = deal((0..7).collect(), 3);
        assert_eq!(piles, vec![vec![0, 3, 6], vec![1, 4], vec![2, 5]]);
        assert_eq!(deal(vec![1, 2], 0), vec![vec![1, 2]]);
    }

    #[test]
    fn the_raw_commit_sends_seven_keys_with_the_audience_last() {
        let session = SessionId::new("s1");
        let event = chat(&session, 0);
        let cmd = raw_commit("0123", &event).unwrap();
        let args: Vec<String> = cmd
            .args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                _ => String::new(),
            })
            .collect();
        assert_eq!(args[0], "EVALSHA");
        assert_eq!(args[2], "7");
        assert_eq!(args[3], "dl:{s1}:epoch");
        assert!(args[6].starts_with("dl:{s1}:ids:"), "{args:?}");
        assert_eq!(args[9], "dl:{s1}:aud");
        // ARGV: id field, short hash, event tail, meta prefix, kind.
        assert_eq!(args[11].len(), 16);
        assert!(!args[12].contains("\"sequence\""), "{}", args[12]);
        assert!(args[13].ends_with("\"sequence\":"), "{}", args[13]);
        assert_eq!(args.last().map(String::as_str), Some("none"));
    }
}
