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

/// A world with the event log and rate limiter on Redis and the archive, campaigns, snapshots
/// and conflicts in a fresh MongoDB database (connections in memory: their adapter has its own
/// suite), with the small lifecycle numbers; `None` when the servers are not required and not
/// reachable.
async fn real(edit: impl FnOnce(&mut Settings)) -> Option<LifeWorld> {
    if !require(Server::Redis) || !require(Server::Mongo) {
        return None;
    }
    let redis = RedisConfig::new(Server::Redis.url())
        .connect()
        .await
        .expect("Redis");
    let mut mongo_cfg = dlab_store::mongo::MongoConfig::new(Server::Mongo.url());
    mongo_cfg.database = format!("dlab_life_{}", uuid::Uuid::new_v4().simple());
    let mongo = dlab_store::mongo::MongoStores::connect(&mongo_cfg)
        .await
        .expect("MongoDB");
    let mut settings = Settings::default();
    dlab_tests::lifecycle_cases::small_lifecycle(&mut settings);
    unlimited(&mut settings);
    edit(&mut settings);
    let (mut deps, notifier) =
        Deps::memory_with_channels(Authenticator::with_secret(SECRET), settings);
    deps.log = Arc::new(RedisEventLog::new(redis.clone()));
    deps.limiter = Arc::new(dlab_store::redis::RedisRateLimiter::new(redis));
    deps.archive = Arc::new(mongo.archive());
    deps.campaigns = Arc::new(mongo.campaigns());
    deps.snapshots = Arc::new(mongo.snapshots());
    deps.conflicts = Arc::new(mongo.conflicts());
    Some(LifeWorld::over(deps, notifier))
}

mod on_the_real_servers {
    use dlab_tests::lifecycle_cases as cases;

    use super::real;

    #[tokio::test]
    async fn compaction_snapshots_trims_and_keeps_replay_contiguous() {
        let Some(w) = real(|_| {}).await else { return };
        cases::compaction_snapshots_trims_and_keeps_replay_contiguous(&w).await;
    }

    #[tokio::test]
    async fn dedup_survives_a_trim() {
        let Some(w) = real(|_| {}).await else { return };
        cases::dedup_survives_a_trim(&w).await;
    }

    #[tokio::test]
    async fn one_run_completes_the_archive_after_an_outage() {
        let Some(w) = real(|_| {}).await else { return };
        cases::one_run_completes_the_archive_after_an_outage(w).await;
    }

    #[tokio::test]
    async fn a_session_whose_archive_cannot_be_completed_is_never_trimmed_further() {
        let Some(w) = real(|_| {}).await else { return };
        cases::a_session_whose_archive_cannot_be_completed_is_never_trimmed_further(w).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_runs_at_once_make_one_snapshot() {
        let Some(w) = real(|_| {}).await else { return };
        cases::two_runs_at_once_make_one_snapshot(w).await;
    }

    #[tokio::test]
    async fn resume_below_the_hot_window() {
        let Some(w) = real(|_| {}).await else { return };
        cases::resume_below_the_hot_window_and_after_retention(&w, false).await;
    }

    #[tokio::test]
    async fn resume_after_retention_pruned_the_archive() {
        let Some(w) =
            real(|s| s.lifecycle.archive_retention = Some(std::time::Duration::ZERO)).await
        else {
            return;
        };
        cases::resume_below_the_hot_window_and_after_retention(&w, true).await;
    }

    #[tokio::test]
    async fn an_ended_session_is_readable_and_refuses_submits() {
        let Some(w) = real(|_| {}).await else { return };
        cases::an_ended_session_is_readable_and_refuses_submits(&w).await;
    }

    #[tokio::test]
    async fn an_ended_session_without_a_snapshot_is_readable() {
        let Some(w) = real(|_| {}).await else { return };
        cases::an_ended_session_without_a_snapshot_is_readable(&w).await;
    }

    #[tokio::test]
    async fn idle_sessions_are_released_and_come_back() {
        let Some(w) = real(|_| {}).await else { return };
        cases::idle_sessions_are_released_and_come_back(&w).await;
    }

    #[tokio::test]
    async fn a_sweep_releases_quiet_sessions_and_they_come_back() {
        let Some(w) = real(|s| {
            s.lifecycle.idle_release_after = std::time::Duration::from_millis(50);
        })
        .await
        else {
            return;
        };
        cases::a_sweep_releases_quiet_sessions_and_they_come_back(&w).await;
    }

    #[tokio::test]
    async fn state_documents_are_paged_by_instance() {
        let Some(w) = real(|_| {}).await else { return };
        cases::state_documents_are_paged_by_instance(&w).await;
    }

    #[tokio::test]
    async fn compact_is_409_while_another_run_holds_the_lease() {
        let Some(w) = real(|_| {}).await else { return };
        cases::compact_is_409_while_another_run_holds_the_lease(&w).await;
    }

    #[tokio::test]
    async fn the_gm_resolves_a_blind_write_race() {
        let Some(w) = real(|_| {}).await else { return };
        cases::the_gm_resolves_a_blind_write_race(&w).await;
    }

    #[tokio::test]
    async fn a_refused_compare_and_set_is_escalated_and_resolved() {
        let Some(w) = real(|_| {}).await else { return };
        cases::a_refused_compare_and_set_is_escalated_and_resolved(&w).await;
    }

    #[tokio::test]
    async fn increments_and_own_rewrites_are_not_conflicts() {
        let Some(w) = real(|_| {}).await else { return };
        cases::increments_and_own_rewrites_are_not_conflicts(&w).await;
    }

    #[tokio::test]
    async fn a_long_combat_shrinks_the_redis_hot_log_by_ninety_percent() {
        let Some(w) = real(|s| {
            s.lifecycle = dlab_service::config::Lifecycle::default();
        })
        .await
        else {
            return;
        };
        cases::combat_session_shrinks_the_hot_log(&w, 10_000).await;
    }
}
