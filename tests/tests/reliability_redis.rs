//! Fault tests on private Redis instances: a wiped Redis is detected and rebuilt from the
//! archive, and an append-only Redis killed with SIGKILL loses nothing it acknowledged.

use std::sync::Arc;

use dlab_core::compaction::fold;
use dlab_core::ids::{InstanceId, Sequence};
use dlab_store::memory::MemoryEventArchive;
use dlab_store::redis::{RedisConfig, RedisEventLog};
use dlab_store::{CommitError, EventArchive, EventLog, Rehydration};
use dlab_tests::contract::event_log::{add_goblin, hit, inc, new_session, request_with_id};
use dlab_tests::private::{PrivateRedis, redis_server_available};
use dlab_tests::servers::servers_required;
use serde_json::json;

fn private_redis(aof: bool) -> Option<PrivateRedis> {
    if !redis_server_available() {
        assert!(
            !servers_required(),
            "redis-server is not installed: run `bash infra/services.sh install`"
        );
        eprintln!("skipping: redis-server is not installed");
        return None;
    }
    Some(PrivateRedis::start(aof))
}

async fn log_for(redis: &PrivateRedis) -> RedisEventLog {
    RedisEventLog::new(
        RedisConfig::new(redis.url())
            .connect()
            .await
            .expect("connect"),
    )
}

#[tokio::test]
async fn flushall_is_detected_and_the_archive_rebuilds_the_session() {
    let Some(redis) = private_redis(false) else {
        return;
    };
    let log = log_for(&redis).await;
    let archive = Arc::new(MemoryEventArchive::new());
    let session = new_session(&log).await;
    let mut ids = Vec::new();
    for req in [
        add_goblin(&session, "g", 15),
        hit(&session, "p1", "g", 15, 7),
        inc(&session, "p2", "g", -2),
    ] {
        let c = log.commit(req).await.unwrap();
        let event = c.event.unwrap();
        ids.push(event.id.clone());
        archive.insert(&event).await.unwrap();
    }
    let before = log.state(&session).await.unwrap().unwrap();

    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();

    let err = log.commit(inc(&session, "p2", "g", -1)).await.unwrap_err();
    assert!(matches!(err, CommitError::HotStateMissing(_)), "{err:?}");

    // Rebuild as the service does: fold the archive, keep it as the hot window, restore dedup.
    let events = archive
        .read(&session, Sequence::ZERO, None, 10_000)
        .await
        .unwrap();
    let (snapshot, _) = fold(&session, None, None, &events, 0).unwrap();
    let known = archive.ids(&session).await.unwrap();
    assert_eq!(
        log.rehydrate(&snapshot.state, &events, &known)
            .await
            .unwrap(),
        Rehydration::Rebuilt
    );

    assert_eq!(log.state(&session).await.unwrap().unwrap(), before);
    let next = log.commit(inc(&session, "p2", "g", -1)).await.unwrap();
    assert_eq!(
        next.sequence,
        Sequence(4),
        "sequences continue without reuse"
    );
    let again = log
        .commit(request_with_id(
            &session,
            ids[1].as_str(),
            "p1",
            "plugin:dnd5e:attack",
            json!({"target": {"instanceId": "g"},
                   "stateChanges": {"attributes.hp.value": {"from": 15, "to": 7}}}),
        ))
        .await
        .unwrap();
    assert!(again.duplicate, "dedup survives the wipe");
    assert_eq!(again.sequence, Sequence(2));
    assert_eq!(
        log.state(&session)
            .await
            .unwrap()
            .unwrap()
            .current(&InstanceId::new("g"), "attributes.hp.value"),
        Some(json!(4))
    );
}

#[tokio::test]
async fn aof_redis_killed_with_sigkill_loses_nothing_acknowledged() {
    let Some(mut redis) = private_redis(true) else {
        return;
    };
    let session;
    let mut acknowledged = Vec::new();
    {
        let log = log_for(&redis).await;
        session = new_session(&log).await;
        log.commit(add_goblin(&session, "g", 100)).await.unwrap();
        for round in 0..3 {
            for _ in 0..10 {
                let c = log.commit(inc(&session, "p", "g", -1)).await.unwrap();
                acknowledged.push(c.event.unwrap());
            }
            redis.restart(); // SIGKILL, then start on the same AOF
            // The connection manager reconnects; the first call after a kill may fail once.
            let mut ok = false;
            for _ in 0..50 {
                if log.head(&session).await.is_ok() {
                    ok = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            assert!(ok, "Redis did not come back after kill {round}");
        }
    }
    let log = log_for(&redis).await;
    assert_eq!(log.head(&session).await.unwrap(), Sequence(31));
    let stored = log.read(&session, Sequence(1), None, 1_000).await.unwrap();
    assert_eq!(
        stored, acknowledged,
        "every acknowledged event survived, in order"
    );
    let dup = log
        .commit(request_with_id(
            &session,
            acknowledged[4].id.as_str(),
            "p",
            "plugin:dnd5e:attack",
            json!({"target": {"instanceId": "g"},
                   "stateChanges": {"attributes.hp.value": {"op": "inc", "by": -1}}}),
        ))
        .await
        .unwrap();
    assert!(dup.duplicate);
    assert_eq!(dup.sequence, acknowledged[4].sequence);
    let state = log.state(&session).await.unwrap().unwrap();
    assert_eq!(
        state.current(&InstanceId::new("g"), "attributes.hp.value"),
        Some(json!(70))
    );
    assert!(redis.dir().exists());
}
