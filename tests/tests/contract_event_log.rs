//! The `EventLog` and `RateLimiter` contracts against memory, one Redis node and a three-node
//! Redis Cluster (which stands in for MemoryDB).

use std::sync::Arc;

use async_trait::async_trait;
use dlab_core::ids::SessionId;
use dlab_store::EventLog;
use dlab_store::memory::{MemoryEventLog, MemoryRateLimiter};
use dlab_store::redis::{RedisConfig, RedisConnection, RedisEventLog, RedisRateLimiter};
use dlab_tests::contract::event_log::{self, LogHarness};
use dlab_tests::contract::rate_limiter;
use dlab_tests::servers::{Server, require};
use redis::AsyncCommands;

struct Memory(Arc<MemoryEventLog>);

#[async_trait]
impl LogHarness for Memory {
    fn log(&self) -> Arc<dyn EventLog> {
        self.0.clone()
    }
    async fn wipe(&self, session: &SessionId) {
        // Only this session's hot state, as if its keys had been lost.
        let _ = self.0.release(session).await;
    }
}

struct Redis {
    log: Arc<RedisEventLog>,
    conn: RedisConnection,
}

#[async_trait]
impl LogHarness for Redis {
    fn log(&self) -> Arc<dyn EventLog> {
        self.log.clone()
    }
    async fn wipe(&self, session: &SessionId) {
        // Every key of the session, found by its hash tag (on every node of a cluster), deleted
        // behind the adapter's back.
        let mut conn = self.conn.clone();
        let keys: Vec<String> = conn.keys(format!("dl:{{{session}}}:*")).await.unwrap();
        assert!(!keys.is_empty());
        let _: () = conn.del(keys).await.unwrap();
    }
}

async fn redis_on(server: Server) -> Option<Redis> {
    if !require(server) {
        return None;
    }
    let config = RedisConfig {
        cluster: server == Server::RedisCluster,
        ..RedisConfig::new(server.url())
    };
    let conn = config
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to the test {}: {e:?}", server.name()));
    Some(Redis {
        log: Arc::new(RedisEventLog::new(conn.clone())),
        conn,
    })
}

async fn redis() -> Option<Redis> {
    redis_on(Server::Redis).await
}

async fn cluster() -> Option<Redis> {
    redis_on(Server::RedisCluster).await
}

fn memory() -> Memory {
    Memory(Arc::new(MemoryEventLog::new()))
}

macro_rules! every_log {
    ($($name:ident),* $(,)?) => {
        mod memory_log {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                event_log::$name(&memory()).await;
            })*
        }
        mod redis_log {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if let Some(h) = redis().await {
                    event_log::$name(&h).await;
                }
            })*
        }
        mod cluster_log {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if let Some(h) = cluster().await {
                    event_log::$name(&h).await;
                }
            })*
        }
    };
}

every_log!(
    concurrent_commits_are_gap_free,
    resubmitted_id_is_a_duplicate,
    compare_and_set_is_all_or_nothing,
    concurrent_incs_lose_nothing,
    racing_rebased_hits_stay_gap_free,
    invalid_changes_store_nothing,
    state_matches_the_projection,
    state_reads_are_consistent_while_instances_change,
    reads_and_trims,
    wiped_hot_state_is_refused_then_rehydrated,
    rehydrate_over_a_live_state_changes_nothing,
    racing_rehydrates_never_erase_confirmed_events,
    big_session_rehydrates_whole,
    init_is_idempotent_and_release_drops,
    ended_session_refuses_commits,
    release_if_head_keeps_a_session_that_moved,
    maintenance_lease_is_exclusive,
    rejections_are_remembered_until_their_ttl,
    unarchived_marks_add_list_and_clear,
    blind_writes_report_the_override_they_replaced,
    commits_return_the_audience_token,
);

#[tokio::test]
async fn memory_rate_limiter() {
    rate_limiter::token_bucket(&MemoryRateLimiter::new()).await;
}

#[tokio::test]
async fn redis_rate_limiter() {
    if let Some(h) = redis().await {
        rate_limiter::token_bucket(&RedisRateLimiter::new(h.conn.clone())).await;
    }
}

#[tokio::test]
async fn cluster_rate_limiter() {
    if let Some(h) = cluster().await {
        rate_limiter::token_bucket(&RedisRateLimiter::new(h.conn.clone())).await;
    }
}

/// After `SCRIPT FLUSH` on every node, the adapter's scripts are loaded again on the node that
/// owns the session (EVALSHA answers NOSCRIPT, the script is loaded, the call is retried).
async fn scripts_come_back_after_a_flush(h: &Redis) {
    use dlab_tests::contract::event_log::{add_goblin, inc, new_session};
    let log = h.log();
    let session = new_session(log.as_ref()).await;
    log.commit(add_goblin(&session, "g", 10)).await.unwrap();
    // A probe script in the session's slot shows that the flush reached the session's node.
    let probe = redis::Script::new("return redis.call('EXISTS', KEYS[1])");
    let key = format!("dl:{{{session}}}:epoch");
    let mut conn = h.conn.clone();
    let exists: i64 = probe.key(&key).invoke_async(&mut conn).await.unwrap();
    assert_eq!(exists, 1);
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let err = redis::cmd("EVALSHA")
        .arg(probe.get_hash())
        .arg(1)
        .arg(&key)
        .query_async::<i64>(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        redis::ErrorKind::Server(redis::ServerErrorKind::NoScript),
        "{err:?}"
    );
    let c = log.commit(inc(&session, "p", "g", -1)).await.unwrap();
    assert_eq!(c.sequence.get(), 2);
    assert!(log.state(&session).await.unwrap().is_some());
    let events = log
        .read(&session, dlab_core::ids::Sequence::ZERO, None, 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
}

#[tokio::test]
async fn redis_scripts_come_back_after_a_flush() {
    if let Some(h) = redis().await {
        scripts_come_back_after_a_flush(&h).await;
    }
}

#[tokio::test]
async fn cluster_scripts_come_back_after_a_flush() {
    if let Some(h) = cluster().await {
        scripts_come_back_after_a_flush(&h).await;
    }
}

/// The cluster really is one: it has three nodes, and sessions land on different ones, so the
/// suite above exercised routing, not one node by chance.
#[tokio::test]
async fn cluster_spreads_sessions_over_its_nodes() {
    let Some(h) = cluster().await else { return };
    let mut conn = h.conn.clone();
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut conn)
        .await
        .unwrap();
    let masters: Vec<&str> = nodes.lines().filter(|l| l.contains("master")).collect();
    assert_eq!(masters.len(), 3, "{nodes}");
    let mut slots = std::collections::BTreeSet::new();
    for i in 0..32 {
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(format!("dl:{{s-{i}}}:epoch"))
            .query_async(&mut conn)
            .await
            .unwrap();
        // Three nodes split 16,384 slots into thirds.
        slots.insert(slot * 3 / 16_384);
    }
    assert_eq!(slots.len(), 3, "sessions should land on every node");
}

/// A rebuild whose lease runs out while it writes (a frozen Lambda) can no longer write: the
/// rebuild that takes over is the only one visible, with nothing of the first mixed in.
async fn a_rebuild_that_lost_its_lease_writes_nothing(h: &Redis) {
    use dlab_core::compaction::fold;
    use dlab_core::event::GameEvent;
    use dlab_core::ids::{EventId, Sequence};
    use dlab_store::{CommitError, Rehydration};
    use dlab_tests::contract::event_log::{new_session, request, request_with_id};
    use serde_json::json;

    fn archive(session: &SessionId, n: u64, text: &str) -> Vec<GameEvent> {
        (1..=n)
            .map(|i| {
                let mut e = request(session, "u", "core:chat", json!({"text": text, "i": i})).event;
                e.sequence = Sequence(i);
                e
            })
            .collect()
    }
    fn ids(events: &[GameEvent]) -> Vec<(EventId, Sequence, String)> {
        events
            .iter()
            .map(|e| (e.id.clone(), e.sequence, e.content_hash()))
            .collect()
    }

    let log = h.log.clone();
    for _attempt in 0..5 {
        let session = new_session(log.as_ref()).await;
        h.wipe(&session).await;
        let lease = format!("dl:{{{session}}}:lease");
        let epoch = format!("dl:{{{session}}}:epoch");
        // A large rebuild: hundreds of chunks, so there is time to take its lease away.
        let slow = archive(&session, 1_200, &"a".repeat(20_000));
        let slow_state = fold(&session, None, None, &slow, 0).unwrap().0.state;
        let first = {
            let (log, slow) = (log.clone(), slow.clone());
            tokio::spawn(async move { log.rehydrate(&slow_state, &slow, &ids(&slow)).await })
        };
        // Its lease "runs out": removed while it exists and the epoch is still absent.
        // Sent with plain EVAL, not the script cache: `scripts_come_back_after_a_flush` runs
        // `SCRIPT FLUSH` on the same servers in parallel, and a flush between a cached
        // script's load and its EVALSHA answers NOSCRIPT to this probe.
        const EXPIRE: &str = "if redis.call('EXISTS', KEYS[2]) == 0 and \
             redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DEL', KEYS[1]) end return 0";
        let mut conn = h.conn.clone();
        let mut expired = false;
        // Polled until the first rebuild ends; bounded (about two minutes at most).
        for _ in 0..120_000 {
            let n: i64 = redis::cmd("EVAL")
                .arg(EXPIRE)
                .arg(2)
                .arg(&lease)
                .arg(&epoch)
                .query_async(&mut conn)
                .await
                .unwrap();
            if n == 1 {
                expired = true;
                break;
            }
            if first.is_finished() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        if !expired {
            // The first rebuild finished before its lease could be taken away; try again.
            first.await.unwrap().unwrap();
            continue;
        }
        let winner = archive(&session, 3, "b");
        let winner_state = fold(&session, None, None, &winner, 0).unwrap().0.state;
        assert_eq!(
            log.rehydrate(&winner_state, &winner, &ids(&winner))
                .await
                .unwrap(),
            Rehydration::Rebuilt
        );
        let lost = first.await.unwrap().unwrap();
        assert_ne!(
            lost,
            Rehydration::Rebuilt,
            "the rebuild without its lease lost"
        );
        assert_eq!(log.head(&session).await.unwrap(), Sequence(3));
        assert_eq!(log.state(&session).await.unwrap().unwrap(), winner_state);
        assert_eq!(
            log.read(&session, Sequence::ZERO, None, 10_000)
                .await
                .unwrap(),
            winner,
            "nothing of the first rebuild's events in the hot log"
        );
        // Nor in the dedup map: its ids are unknown, so they commit as new events.
        let stray = &slow[slow.len() - 1];
        let c = log
            .commit(request_with_id(
                &session,
                stray.id.as_str(),
                "u",
                "core:chat",
                json!({"other": true}),
            ))
            .await;
        assert!(
            !matches!(c, Err(CommitError::IdReused { .. })),
            "a stray id of the first rebuild reached the dedup map: {c:?}"
        );
        assert_eq!(c.unwrap().sequence, Sequence(4));
        return;
    }
    panic!("the first rebuild always finished before its lease could be taken away");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_rebuild_that_lost_its_lease_writes_nothing() {
    if let Some(h) = redis().await {
        a_rebuild_that_lost_its_lease_writes_nothing(&h).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_rebuild_that_lost_its_lease_writes_nothing() {
    if let Some(h) = cluster().await {
        a_rebuild_that_lost_its_lease_writes_nothing(&h).await;
    }
}
