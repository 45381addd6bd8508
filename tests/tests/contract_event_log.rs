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
    reads_and_trims,
    wiped_hot_state_is_refused_then_rehydrated,
    rehydrate_over_a_live_state_changes_nothing,
    racing_rehydrates_never_erase_confirmed_events,
    big_session_rehydrates_whole,
    init_is_idempotent_and_release_drops,
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
