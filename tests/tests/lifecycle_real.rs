//! Session lifecycle on the real servers: the Redis memory bound of a long session, and the
//! lifecycle cases (`dlab_tests::lifecycle_cases`) with the event log on Redis and the archive,
//! campaigns, snapshots and conflicts on MongoDB (nx-27017).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dlab_core::event::GameEvent;
use dlab_core::ids::{EventId, Sequence, UserId};
use dlab_service::Deps;
use dlab_service::auth::Authenticator;
use dlab_service::config::Settings;
use dlab_service::maintenance::{self, Trigger};
use dlab_service::pipeline::{Origin, publish};
use dlab_store::model::now_ms;
use dlab_store::redis::{RedisConfig, RedisEventLog};
use dlab_tests::lifecycle_cases::LifeWorld;
use dlab_tests::servers::{Server, require};
use dlab_tests::ws_world::SECRET;
use redis::AsyncCommands;
use serde_json::json;

fn unlimited(settings: &mut Settings) {
    for b in [
        &mut settings.rates.submit,
        &mut settings.rates.read,
        &mut settings.rates.connection,
        &mut settings.rates.control,
    ] {
        b.burst = 1_000_000;
        b.per_second = 1_000_000.0;
    }
}

/// 20,000 events in one session on real Redis with compaction running (every 1000th event
/// inline, and a scheduled run in a loop beside the writer): the hot log stays within tail +
/// threshold entries, and every key of the session together within (tail + threshold) × the
/// largest event + 100 bytes per event (`MEMORY USAGE`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_events_stay_bounded_in_redis() {
    if !require(Server::Redis) {
        return;
    }
    let conn = RedisConfig::new(Server::Redis.url())
        .connect()
        .await
        .expect("Redis");
    let mut settings = Settings::default();
    unlimited(&mut settings);
    let lifecycle = settings.lifecycle.clone();
    let (mut deps, notifier) =
        Deps::memory_with_channels(Authenticator::with_secret(SECRET), settings);
    deps.log = Arc::new(RedisEventLog::new(conn.clone()));
    let w = LifeWorld::over(deps, notifier);
    let t = w.table().await;
    let deps = w.deps().clone();
    let done = Arc::new(AtomicBool::new(false));
    let scheduled = {
        let (deps, session, done) = (deps.clone(), t.session.clone(), done.clone());
        tokio::spawn(async move {
            let mut runs = 0u32;
            while !done.load(Ordering::SeqCst) && runs < 10_000 {
                maintenance::compact_session(&deps, &session, Trigger::Scheduled)
                    .await
                    .expect("scheduled compaction");
                runs += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            runs
        })
    };
    let total = 20_000usize;
    let mut largest = 0usize;
    let started = Instant::now();
    for i in 0..total {
        let text = "x".repeat(40 + (i * 37) % 300);
        let event = GameEvent {
            id: EventId::new(uuid::Uuid::new_v4().to_string()),
            sequence: Sequence::ZERO,
            timestamp: now_ms(),
            client_timestamp: None,
            user_id: UserId::new(format!("p{}", i % 3)),
            session_id: t.session.clone(),
            event_type: "core:chat".into(),
            payload: json!({"text": text, "n": i}),
            checksum: None,
        };
        let published = publish(&deps, event, Origin::Server).await.expect("commit");
        largest = largest.max(serde_json::to_vec(&published.event).unwrap().len());
    }
    let writing = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let runs = scheduled.await.expect("scheduled task");
    maintenance::compact_session(&deps, &t.session, Trigger::Scheduled)
        .await
        .expect("final compaction");
    let mut conn = conn.clone();
    let s = &t.session;
    let entries: u64 = conn.zcard(format!("dl:{{{s}}}:events")).await.unwrap();
    let keys: Vec<String> = conn.keys(format!("dl:{{{s}}}:*")).await.unwrap();
    let mut bytes = 0u64;
    let mut ids_bytes = 0u64;
    for key in &keys {
        let used: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut conn)
            .await
            .unwrap();
        bytes += used.unwrap_or(0);
        if key.contains(":ids:") {
            ids_bytes += used.unwrap_or(0);
        }
    }
    let head = w.head(s).await.get();
    let window = lifecycle.hot_tail + lifecycle.compaction_threshold;
    let bound = window * largest as u64 + 100 * head;
    println!(
        "20k on Redis: {head} events written in {} ms ({runs} scheduled runs beside); hot log {entries} entries (bound {window}); {} keys, {bytes} bytes in all (bound {bound} = {window} x {largest} + 100 x {head}); dedup map {ids_bytes} bytes = {:.1} bytes an event",
        writing.as_millis(),
        keys.len(),
        ids_bytes as f64 / head as f64
    );
    assert!(
        entries <= window,
        "hot log of {entries} entries over {window}"
    );
    assert!(bytes <= bound, "{bytes} bytes over the bound {bound}");
    // Nothing lost: the archive holds all of it, once.
    let archived = deps
        .archive
        .read(s, Sequence::ZERO, None, 1_000_000)
        .await
        .unwrap();
    assert_eq!(archived.len() as u64, head);
    // Dedup survives the trims: the first chat (sequence 2) is still a duplicate.
    let first = archived[1].clone();
    let mut again = first.clone();
    again.sequence = Sequence::ZERO;
    let republished = publish(&deps, again, Origin::Server).await.unwrap();
    assert!(republished.duplicate);
    assert_eq!(republished.event.sequence, first.sequence);
}
