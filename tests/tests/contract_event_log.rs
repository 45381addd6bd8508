//! The `EventLog` and `RateLimiter` contracts against memory and Redis.

use std::sync::Arc;

use async_trait::async_trait;
use dlab_core::ids::SessionId;
use dlab_store::EventLog;
use dlab_store::memory::{MemoryEventLog, MemoryRateLimiter};
use dlab_store::redis::{RedisConfig, RedisEventLog, RedisRateLimiter};
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
    conn: redis::aio::ConnectionManager,
}

#[async_trait]
impl LogHarness for Redis {
    fn log(&self) -> Arc<dyn EventLog> {
        self.log.clone()
    }
    async fn wipe(&self, session: &SessionId) {
        // Every key of the session, found by its hash tag, deleted behind the adapter's back.
        let mut conn = self.conn.clone();
        let keys: Vec<String> = conn.keys(format!("dl:{{{session}}}:*")).await.unwrap();
        assert!(!keys.is_empty());
        let _: () = conn.del(keys).await.unwrap();
    }
}

async fn redis() -> Option<Redis> {
    if !require(Server::Redis) {
        return None;
    }
    let conn = RedisConfig::new(Server::Redis.url())
        .connect()
        .await
        .expect("connect to the test Redis");
    Some(Redis {
        log: Arc::new(RedisEventLog::new(conn.clone())),
        conn,
    })
}

fn memory() -> Memory {
    Memory(Arc::new(MemoryEventLog::new()))
}

macro_rules! both {
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
    };
}

both!(
    concurrent_commits_are_gap_free,
    resubmitted_id_is_a_duplicate,
    compare_and_set_is_all_or_nothing,
    concurrent_incs_lose_nothing,
    racing_rebased_hits_stay_gap_free,
    invalid_changes_store_nothing,
    state_matches_the_projection,
    reads_and_trims,
    wiped_hot_state_is_refused_then_rehydrated,
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
