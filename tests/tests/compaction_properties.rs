//! Property: compactions at random points while concurrent submits go on lose nothing and
//! reorder nothing. Afterwards the latest snapshot plus the events after it give exactly the
//! state of all events, which is the live state, and the archive holds `1..=head` once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dlab_core::compaction::Folder;
use dlab_core::event::GameEvent;
use dlab_core::ids::{EventId, Sequence, SessionId, UserId};
use dlab_core::state::GameSessionState;
use dlab_service::Deps;
use dlab_service::config::Settings;
use dlab_service::maintenance::{self, Trigger};
use dlab_service::pipeline::{self, Origin, RangeReader};
use dlab_store::model::now_ms;
use dlab_tests::lifecycle_cases::{LifeWorld, small_lifecycle};
use proptest::prelude::*;
use serde_json::{Value, json};

/// One writer's event number `i`: a chat, an atomic add, a blind write, or a compare-and-set
/// (which may be refused as a conflict: that is part of the game).
fn event(session: &SessionId, writer: usize, i: usize, kind: u8) -> GameEvent {
    let payload: Value = match kind % 4 {
        0 => json!({"text": format!("w{writer} #{i}")}),
        1 => json!({"target": {"instanceId": "goblin"},
                    "stateChanges": {"attributes.hp.value": {"op": "inc", "by": -1}}}),
        2 => json!({"target": {"instanceId": "goblin"},
                    "stateChanges": {format!("flags.w{writer}"): {"to": i}}}),
        _ => json!({"target": {"instanceId": "goblin"},
                    "stateChanges": {"attributes.ac": {"from": 15, "to": 15}}}),
    };
    GameEvent {
        id: EventId::new(uuid::Uuid::new_v4().to_string()),
        sequence: Sequence::ZERO,
        timestamp: now_ms(),
        client_timestamp: None,
        user_id: UserId::new(format!("writer-{writer}")),
        session_id: session.clone(),
        event_type: if kind.is_multiple_of(4) {
            "core:chat"
        } else {
            "plugin:dnd5e:test"
        }
        .into(),
        payload,
        checksum: None,
    }
}

/// Folds `after < sequence <= to` onto `state` through the contiguous reader.
async fn fold_range(
    deps: &Deps,
    session: &SessionId,
    mut folder: Folder,
    to: Sequence,
) -> GameSessionState {
    let mut reader = RangeReader::new(deps, session, folder.last_sequence(), to);
    while let Some(page) = reader.next_page(7).await.expect("read") {
        for e in &page {
            folder.push(e).expect("applies");
        }
    }
    folder.finish(0).0.state
}

fn run(writers: usize, per_writer: usize, kinds: Vec<u8>, compact_every: u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut settings = Settings::default();
        small_lifecycle(&mut settings);
        settings.lifecycle.compaction_threshold = 1_000_000; // only this test's compactions
        settings.read_page = 5;
        let w = LifeWorld::memory(settings);
        let t = w.table().await;
        let deps = w.deps().clone();
        let committed = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for writer in 0..writers {
            let (deps, session, kinds, committed) = (
                deps.clone(),
                t.session.clone(),
                kinds.clone(),
                committed.clone(),
            );
            tasks.push(tokio::spawn(async move {
                for i in 0..per_writer {
                    let kind = kinds[(writer * per_writer + i) % kinds.len()];
                    match pipeline::publish(&deps, event(&session, writer, i, kind), Origin::Server)
                        .await
                    {
                        Ok(_) => {
                            committed.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(dlab_service::ServiceError::Conflict { .. }) => {}
                        Err(e) => panic!("submit failed: {e}"),
                    }
                }
            }));
        }
        let compactor = {
            let (deps, session, committed) = (deps.clone(), t.session.clone(), committed.clone());
            let total = (writers * per_writer) as u64;
            tokio::spawn(async move {
                let mut next = compact_every;
                let mut runs = 0;
                while next <= total {
                    if committed.load(Ordering::SeqCst) >= next {
                        maintenance::compact_session(&deps, &session, Trigger::Manual)
                            .await
                            .expect("compaction");
                        runs += 1;
                        next += compact_every;
                    } else {
                        tokio::task::yield_now().await;
                    }
                    if runs > 1_000 {
                        break;
                    }
                }
            })
        };
        for task in tasks {
            task.await.expect("writer");
        }
        compactor.abort();
        let _ = compactor.await;
        let head = pipeline::head(&deps, &t.session).await.unwrap();
        let live = deps
            .log
            .state(&t.session)
            .await
            .unwrap()
            .expect("hot state");
        assert_eq!(live.last_event_sequence, head);
        // snapshot + tail
        let snapshot = deps.snapshots.latest(&t.session).await.unwrap();
        let from_snapshot = fold_range(
            &deps,
            &t.session,
            Folder::start(&t.session, None, snapshot.as_ref()).unwrap(),
            head,
        )
        .await;
        // all events, from the archive alone
        let archived = deps
            .archive
            .read(&t.session, Sequence::ZERO, None, 1_000_000)
            .await
            .unwrap();
        assert_eq!(
            archived.len() as u64,
            head.get(),
            "the archive holds 1..=head"
        );
        let mut all = Folder::start(&t.session, None, None).unwrap();
        for (i, e) in archived.iter().enumerate() {
            assert_eq!(e.sequence.get(), i as u64 + 1, "once each, in order");
            all.push(e).expect("applies");
        }
        let all = all.finish(0).0.state;
        let v = |s: &GameSessionState| serde_json::to_value(s).unwrap();
        assert_eq!(v(&from_snapshot), v(&all), "snapshot + tail == all events");
        assert_eq!(v(&all), v(&live), "== the live state");
        let floor = deps.log.floor(&t.session).await.unwrap();
        assert!(floor.get() <= head.get() + 1);
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn compaction_at_random_points_with_concurrent_submits_loses_nothing(
        writers in 1usize..4,
        per_writer in 5usize..40,
        kinds in proptest::collection::vec(any::<u8>(), 1..16),
        compact_every in 1u64..25,
    ) {
        run(writers, per_writer, kinds, compact_every);
    }
}
