//! The `EventLog` contract: gap-free sequences, idempotent submit, compare-and-set without
//! lost updates, typed refusals, contiguous reads, trimming, and rehydration after a wipe that
//! never erases a confirmed event, however many rebuilds race with commits.
//!
//! Every body takes a [`LogHarness`], so the same checks run against the memory adapter and
//! Redis. Each test uses its own session id (uuid), so bodies can run in parallel on one server.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dlab_core::changes::{ACTOR_ADDED, parse_changes};
use dlab_core::compaction::fold;
use dlab_core::event::GameEvent;
use dlab_core::ids::{EventId, InstanceId, Sequence, SessionId, UserId};
use dlab_core::state::GameSessionState;
use dlab_store::{
    CommitError, CommitRequest, Committed, EventLog, InvalidCommit, LeaseToken, Rehydration,
    Rejection, ReplacedWrite, StoreError,
};
use serde_json::{Value, json};

/// An adapter under test, with a way to lose a session's hot state as a wiped Redis would.
#[async_trait]
pub trait LogHarness: Send + Sync {
    /// The log.
    fn log(&self) -> Arc<dyn EventLog>;
    /// Drops the session's hot state behind the log's back.
    async fn wipe(&self, session: &SessionId);
}

/// A fresh session id, initialised in the log.
pub async fn new_session(log: &dyn EventLog) -> SessionId {
    let session = SessionId::new(format!("s-{}", uuid::Uuid::new_v4()));
    log.init_session(&session).await.expect("init session");
    session
}

/// A commit request for a new event.
pub fn request(session: &SessionId, user: &str, event_type: &str, payload: Value) -> CommitRequest {
    request_with_id(
        session,
        &uuid::Uuid::new_v4().to_string(),
        user,
        event_type,
        payload,
    )
}

/// A commit request with a chosen id (for dedup).
pub fn request_with_id(
    session: &SessionId,
    id: &str,
    user: &str,
    event_type: &str,
    payload: Value,
) -> CommitRequest {
    let event = GameEvent {
        id: EventId::new(id),
        sequence: Sequence::ZERO,
        timestamp: 1_700_000_000_000,
        client_timestamp: None,
        user_id: UserId::new(user),
        session_id: session.clone(),
        event_type: event_type.to_owned(),
        payload,
        checksum: None,
    };
    let changes = parse_changes(&event.event_type, &event.payload).expect("valid changes");
    CommitRequest { event, changes }
}

/// `core:session:actor_added` for a goblin with `hp` hit points.
pub fn add_goblin(session: &SessionId, instance: &str, hp: i64) -> CommitRequest {
    request(
        session,
        "gm",
        ACTOR_ADDED,
        json!({"instanceId": instance, "actorId": "actor-goblin",
               "actor": {"name": "Goblin", "type": "monster",
                         "attributes": {"hp": {"value": hp, "max": hp}, "ac": 15, "speed": 30},
                         "features": [{"name": "Nimble Escape"}]}}),
    )
}

/// A compare-and-set hit.
pub fn hit(session: &SessionId, user: &str, instance: &str, from: i64, to: i64) -> CommitRequest {
    request(
        session,
        user,
        "plugin:dnd5e:attack",
        json!({"target": {"instanceId": instance},
               "stateChanges": {"attributes.hp.value": {"from": from, "to": to}}}),
    )
}

/// An atomic add.
pub fn inc(session: &SessionId, user: &str, instance: &str, by: i64) -> CommitRequest {
    request(
        session,
        user,
        "plugin:dnd5e:attack",
        json!({"target": {"instanceId": instance},
               "stateChanges": {"attributes.hp.value": {"op": "inc", "by": by}}}),
    )
}

async fn all_events(log: &dyn EventLog, session: &SessionId) -> Vec<GameEvent> {
    log.read(session, Sequence::ZERO, None, 100_000)
        .await
        .expect("read")
}

async fn hp(log: &dyn EventLog, session: &SessionId, instance: &str) -> Value {
    log.state(session)
        .await
        .expect("state")
        .expect("hot state")
        .current(&InstanceId::new(instance), "attributes.hp.value")
        .expect("instance")
}

/// 200 concurrent commits from 20 tasks → sequences exactly 1..200.
pub async fn concurrent_commits_are_gap_free(h: &dyn LogHarness) {
    let log = h.log();
    let session = new_session(log.as_ref()).await;
    let mut tasks = Vec::new();
    for t in 0..20 {
        let log = log.clone();
        let session = session.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..10 {
                let c = log
                    .commit(request(
                        &session,
                        &format!("u{t}"),
                        "core:chat",
                        json!({"text": i}),
                    ))
                    .await
                    .expect("commit");
                assert!(!c.duplicate);
                seqs.push(c.sequence.get());
            }
            seqs
        }));
    }
    let mut seen = BTreeSet::new();
    for t in tasks {
        for s in t.await.expect("task") {
            assert!(seen.insert(s), "sequence {s} given twice");
        }
    }
    assert_eq!(seen, (1..=200).collect::<BTreeSet<u64>>());
    let events = all_events(log.as_ref(), &session).await;
    let seqs: Vec<u64> = events.iter().map(|e| e.sequence.get()).collect();
    assert_eq!(
        seqs,
        (1..=200).collect::<Vec<u64>>(),
        "stored log is 1..200 in order"
    );
    assert_eq!(log.head(&session).await.unwrap(), Sequence(200));
}

/// A re-submitted id returns the original sequence and stores nothing; other content → invalid.
pub async fn resubmitted_id_is_a_duplicate(h: &dyn LogHarness) {
    let log = h.log();
    let session = new_session(log.as_ref()).await;
    let id = uuid::Uuid::new_v4().to_string();
    let first = log
        .commit(request_with_id(
            &session,
            &id,
            "u1",
            "core:chat",
            json!({"text": "hi", "n": 1}),
        ))
        .await
        .unwrap();
    log.commit(request(
        &session,
        "u1",
        "core:chat",
        json!({"text": "other"}),
    ))
    .await
    .unwrap();
    // Same content, spelled differently (key order, 1.0) → same canonical hash.
    let payload: Value = serde_json::from_str(r#"{"n": 1.0, "text": "hi"}"#).unwrap();
    let again = log
        .commit(request_with_id(&session, &id, "u1", "core:chat", payload))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.sequence, first.sequence);
    assert_eq!(
        again.event.as_ref().map(|e| &e.id),
        Some(&EventId::new(&id))
    );
    assert_eq!(
        again.event.as_ref().map(|e| e.sequence),
        Some(first.sequence)
    );
    assert_eq!(
        log.head(&session).await.unwrap(),
        Sequence(2),
        "nothing new stored"
    );
    let err = log
        .commit(request_with_id(
            &session,
            &id,
            "u1",
            "core:chat",
            json!({"text": "changed"}),
        ))
        .await
        .unwrap_err();
    match &err {
        CommitError::IdReused { id: reused } => assert_eq!(reused.as_str(), id),
        other => panic!("expected IdReused, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!("event id {id} was already used with different content")
    );
    assert_eq!(log.head(&session).await.unwrap(), Sequence(2));
}

/// A stale `from` is a conflict carrying every path's current value, and stores nothing; all
/// paths of an event apply together or not at all.
pub async fn compare_and_set_is_all_or_nothing(h: &dyn LogHarness) {
    let log = h.log();
    let session = new_session(log.as_ref()).await;
    log.commit(add_goblin(&session, "goblin1", 15))
        .await
        .unwrap();
    log.commit(hit(&session, "p1", "goblin1", 15, 7))
        .await
        .unwrap();
    let before = log.state(&session).await.unwrap();
    let err = log
        .commit(request(
            &session,
            "p2",
            "plugin:dnd5e:attack",
            json!({"target": {"instanceId": "goblin1"},
                   "stateChanges": {"attributes.hp.value": {"from": 15, "to": 10},
                                    "attributes.ac": {"from": 15, "to": 12},
                                    "conditions": {"to": ["prone"]}}}),
        ))
        .await
        .unwrap_err();
    let CommitError::Conflict { current } = err else {
        panic!("expected a conflict, got {err:?}");
    };
    assert_eq!(current["attributes.hp.value"], json!(7));
    assert_eq!(current["attributes.ac"], json!(15));
    assert_eq!(current["conditions"], Value::Null);
    assert_eq!(current.len(), 3);
    assert_eq!(
        log.state(&session).await.unwrap(),
        before,
        "nothing changed"
    );
    assert_eq!(log.head(&session).await.unwrap(), Sequence(2));
    // Rebased with a new id, it applies, both paths at once.
    log.commit(request(
        &session,
        "p2",
        "plugin:dnd5e:attack",
        json!({"target": {"instanceId": "goblin1"},
               "stateChanges": {"attributes.hp.value": {"from": 7, "to": 2},
                                "attributes.ac": {"from": 15, "to": 12}}}),
    ))
    .await
    .unwrap();
    assert_eq!(hp(log.as_ref(), &session, "goblin1").await, json!(2));
}

/// Fifty concurrent `inc` of −1 give an exact result.
pub async fn concurrent_incs_lose_nothing(h: &dyn LogHarness) {
    let log = h.log();
    let session = new_session(log.as_ref()).await;
    log.commit(add_goblin(&session, "g", 100)).await.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let log = log.clone();
            let session = session.clone();
            tokio::spawn(async move {
                log.commit(inc(&session, &format!("p{i}"), "g", -1))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(hp(log.as_ref(), &session, "g").await, json!(50));
    assert_eq!(log.head(&session).await.unwrap(), Sequence(51));
}

/// Twenty players race compare-and-set hits on one goblin, rebasing on every conflict: the log
/// stays 1..N with no gap, every hit lands exactly once, and the live state equals the
/// projection of the log.
pub async fn racing_rebased_hits_stay_gap_free(h: &dyn LogHarness) {
    let log = h.log();
    let session = new_session(log.as_ref()).await;
    log.commit(add_goblin(&session, "g", 1_000)).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|p| {
            let log = log.clone();
            let session = session.clone();
            tokio::spawn(async move {
                let mut view = 1_000;
                let mut landed = 0;
                let mut conflicts = 0;
                while landed < 5 {
                    match log
                        .commit(hit(&session, &format!("p{p}"), "g", view, view - 1))
                        .await
                    {
                        Ok(_) => {
                            landed += 1;
                            view -= 1;
                        }
                        Err(CommitError::Conflict { current }) => {
                            conflicts += 1;
                            assert!(conflicts < 10_000, "no progress");
                            view = current["attributes.hp.value"].as_i64().unwrap();
                        }
                        Err(other) => panic!("{other:?}"),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let events = all_events(log.as_ref(), &session).await;
    let seqs: Vec<u64> = events.iter().map(|e| e.sequence.get()).collect();
    assert_eq!(seqs, (1..=101).collect::<Vec<u64>>());
    assert_eq!(log.head(&session).await.unwrap(), Sequence(101));
    assert_eq!(hp(log.as_ref(), &session, "g").await, json!(900));
    let (expected, _) = fold(&session, None, None, &events, 0).expect("projection");
    assert_eq!(log.state(&session).await.unwrap().unwrap(), expected.state);
}

/// Unknown instances, duplicate adds and bad `inc` arithmetic are refused with their typed
/// reason and message, and store nothing; a stale compare-and-set is reported as a conflict
/// before any `inc` problem of the same event.
pub async fn invalid_changes_store_nothing(h: &dyn LogHarness) {
    let log = h.log();
    let session = new_session(log.as_ref()).await;
    log.commit(add_goblin(&session, "g", 10)).await.unwrap();
    let instance = |i: &str| InstanceId::new(i);
    let path = |p: &str| p.to_owned();
    let cases = [
        (
            hit(&session, "p", "nobody", 1, 0),
            InvalidCommit::InstanceMissing {
                instance: instance("nobody"),
            },
            "instance nobody is not in the session",
        ),
        (
            add_goblin(&session, "g", 10),
            InvalidCommit::InstanceExists {
                instance: instance("g"),
            },
            "instance g is already in the session",
        ),
        (
            request(
                &session,
                "p",
                "plugin:x:y",
                json!({"target": {"instanceId": "g"}, "stateChanges": {"name": {"op": "inc", "by": 1}}}),
            ),
            InvalidCommit::IncNotInteger { path: path("name") },
            "inc on name: the current value is not an integer",
        ),
        (
            inc(&session, "p", "g", 9_007_199_254_740_991),
            InvalidCommit::IncOutOfRange {
                path: path("attributes.hp.value"),
            },
            "inc on attributes.hp.value: result out of range",
        ),
        (
            request(
                &session,
                "gm",
                "core:gm_override",
                json!({"finalState": {"g": {"a": 1}, "ghost": {"a": 1}}}),
            ),
            InvalidCommit::InstanceMissing {
                instance: instance("ghost"),
            },
            "instance ghost is not in the session",
        ),
        (
            request(
                &session,
                "gm",
                "core:session:actor_removed",
                json!({"instanceId": "ghost"}),
            ),
            InvalidCommit::InstanceMissing {
                instance: instance("ghost"),
            },
            "instance ghost is not in the session",
        ),
    ];
    let before = log.state(&session).await.unwrap();
    for (bad, reason, message) in cases {
        let err = log.commit(bad).await.unwrap_err();
        match &err {
            CommitError::Invalid(got) => assert_eq!(got, &reason),
            other => panic!("expected {reason:?}, got {other:?}"),
        }
        assert_eq!(err.to_string(), message);
    }
    let err = log
        .commit(request(
            &session,
            "p",
            "plugin:x:y",
            json!({"target": {"instanceId": "g"},
                   "stateChanges": {"attributes.hp.value": {"from": 3, "to": 2},
                                    "name": {"op": "inc", "by": 1}}}),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, CommitError::Conflict { .. }), "{err:?}");
    assert_eq!(log.head(&session).await.unwrap(), Sequence(1));
    assert_eq!(
        log.state(&session).await.unwrap(),
        before,
        "nothing changed"
    );
}

/// The adapter's live state equals the domain projection of its own log, for every kind of
/// change (CAS, inc, blind, force-set, `$session`, add and remove).
pub async fn state_matches_the_projection(h: &dyn LogHarness) {
    let log = h.log();
    let session = new_session(log.as_ref()).await;
    let steps = vec![
        add_goblin(&session, "g1", 15),
        add_goblin(&session, "g2", 7),
        hit(&session, "p1", "g1", 15, 7),
        inc(&session, "p2", "g2", -3),
        request(
            &session,
            "p1",
            "core:token:move",
            json!({"target": {"instanceId": "g1"}, "stateChanges": {"position.x": {"to": 3}, "position.y": {"to": 4.5}}}),
        ),
        request(
            &session,
            "gm",
            "core:gm_override",
            json!({"finalState": {"g2": {"conditions": ["prone"], "attributes.hp.value": 1}}}),
        ),
        request(
            &session,
            "gm",
            "plugin:dnd5e:round",
            json!({"target": {"instanceId": "$session"},
                   "stateChanges": {"encounter.round": {"op": "inc", "by": 1}, "environment.lighting": {"to": "dim"}}}),
        ),
        request(&session, "p1", "core:chat", json!({"text": "ouch"})),
        add_goblin(&session, "g3", 9),
        request(
            &session,
            "gm",
            "core:session:actor_removed",
            json!({"instanceId": "g3"}),
        ),
        request(
            &session,
            "p1",
            "plugin:x:y",
            json!({"target": {"instanceId": "g1"}, "stateChanges": {"notes": {"from": null, "to": {"Odd Key": 1}}}}),
        ),
    ];
    for s in steps {
        log.commit(s).await.expect("commit");
    }
    let events = all_events(log.as_ref(), &session).await;
    assert_eq!(events.len(), 11);
    let (expected, _) = fold(&session, None, None, &events, 0).expect("projection");
    let actual = log.state(&session).await.unwrap().expect("hot state");
    assert_eq!(actual, expected.state);
    assert_eq!(
        actual.current(&InstanceId::new("g2"), "attributes.hp.value"),
        Some(json!(1))
    );
    assert_eq!(actual.encounter()["round"], json!(1));
    assert!(!actual.has_instance(&InstanceId::new("g3")));
}

/// Every live state read while actors come and go is the projection of a prefix of the log: a
/// read never misses an instance that its sequence says was added, nor keeps one removed.
pub async fn state_reads_are_consistent_while_instances_change(h: &dyn LogHarness) {
    let log = h.log();
    let session = new_session(log.as_ref()).await;
    let writer = {
        let (log, session) = (log.clone(), session.clone());
        tokio::spawn(async move {
            for i in 0..30 {
                let g = format!("g{i}");
                log.commit(add_goblin(&session, &g, 10)).await.unwrap();
                log.commit(hit(&session, "p", &g, 10, 9)).await.unwrap();
                if i % 3 == 0 {
                    let gone = request(
                        &session,
                        "gm",
                        "core:session:actor_removed",
                        json!({"instanceId": g}),
                    );
                    log.commit(gone).await.unwrap();
                }
            }
        })
    };
    let mut reads = Vec::new();
    while !writer.is_finished() {
        reads.push(log.state(&session).await.unwrap().expect("hot state"));
        assert!(reads.len() < 100_000, "writer never finished");
    }
    writer.await.unwrap();
    reads.push(log.state(&session).await.unwrap().expect("hot state"));
    let events = all_events(log.as_ref(), &session).await;
    assert_eq!(events.len(), 70);
    for state in &reads {
        let upto = state.last_event_sequence.get() as usize;
        let expected = if upto == 0 {
            GameSessionState::new(session.clone(), None)
        } else {
            fold(&session, None, None, &events[..upto], 0)
                .unwrap()
                .0
                .state
        };
        assert_eq!(state, &expected, "state read at sequence {upto}");
    }
}

/// Reads are contiguous and ordered; a trim raises the floor and reads below it are refused.
pub async fn reads_and_trims(h: &dyn LogHarness) {
    let log = h.log();
    let session = new_session(log.as_ref()).await;
    assert_eq!(log.head(&session).await.unwrap(), Sequence(0));
    assert_eq!(log.floor(&session).await.unwrap(), Sequence(1));
    assert!(
        log.read(&session, Sequence(0), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    for i in 0..10 {
        log.commit(request(&session, "u", "core:chat", json!({"i": i})))
            .await
            .unwrap();
    }
    let page = log
        .read(&session, Sequence(2), Some(Sequence(8)), 3)
        .await
        .unwrap();
    let seqs: Vec<u64> = page.iter().map(|e| e.sequence.get()).collect();
    assert_eq!(seqs, vec![3, 4, 5]);
    let page = log
        .read(&session, Sequence(6), Some(Sequence(8)), 100)
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|e| e.sequence.get()).collect::<Vec<_>>(),
        vec![7, 8]
    );
    assert_eq!(page[0].payload, json!({"i": 6}));

    let before: u64 = log
        .read(&session, Sequence::ZERO, Some(Sequence(5)), 10)
        .await
        .unwrap()
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap().len() as u64)
        .sum();
    let trimmed = log.trim_below(&session, Sequence(6)).await.unwrap();
    assert_eq!(trimmed.events, 5);
    // Bytes as stored: JSON of the same events (Redis keeps the sequence first; same length).
    assert_eq!(trimmed.bytes, before, "the bytes of the removed events");
    assert_eq!(log.floor(&session).await.unwrap(), Sequence(6));
    assert_eq!(
        log.trim_below(&session, Sequence(4)).await.unwrap(),
        dlab_store::Trimmed::default(),
        "never lowers"
    );
    assert!(matches!(
        log.read(&session, Sequence(3), None, 10).await,
        Err(StoreError::BelowFloor {
            floor: Sequence(6),
            ..
        })
    ));
    let rest = log.read(&session, Sequence(5), None, 10).await.unwrap();
    assert_eq!(rest.first().map(|e| e.sequence), Some(Sequence(6)));
    assert_eq!(rest.len(), 5);
    // Never trims above head + 1.
    log.trim_below(&session, Sequence(1_000)).await.unwrap();
    assert_eq!(log.floor(&session).await.unwrap(), Sequence(11));
    assert!(
        log.read(&session, Sequence(10), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Dedup survives trimming: the original sequence is still known.
    let c = log
        .commit(request(&session, "u", "core:chat", json!({"i": 10})))
        .await
        .unwrap();
    assert_eq!(c.sequence, Sequence(11));
}

/// A wiped session refuses commits; rehydration restores state, dedup and the counter, so
/// sequences continue without reuse.
pub async fn wiped_hot_state_is_refused_then_rehydrated(h: &dyn LogHarness) {
    let log = h.log();
    let session = new_session(log.as_ref()).await;
    log.commit(add_goblin(&session, "g", 15)).await.unwrap();
    let first_id = uuid::Uuid::new_v4().to_string();
    log.commit(request_with_id(&session, &first_id, "p1", "plugin:dnd5e:attack",
        json!({"target": {"instanceId": "g"}, "stateChanges": {"attributes.hp.value": {"from": 15, "to": 9}}})))
        .await
        .unwrap();
    log.commit(inc(&session, "p2", "g", -2)).await.unwrap();
    let before = log.state(&session).await.unwrap().unwrap();
    let events = all_events(log.as_ref(), &session).await;

    h.wipe(&session).await;
    let err = log.commit(inc(&session, "p2", "g", -1)).await.unwrap_err();
    assert!(matches!(err, CommitError::HotStateMissing(_)), "{err:?}");
    assert!(log.state(&session).await.unwrap().is_none());
    assert!(matches!(
        log.head(&session).await,
        Err(StoreError::HotStateMissing(_))
    ));

    // Rebuild from a snapshot of the first event plus the rest as the hot window.
    let (snapshot, _) = fold(&session, None, None, &events[..1], 0).unwrap();
    let mut state = snapshot.state.clone();
    for e in &events[1..] {
        state.apply(e).unwrap();
    }
    let ids: Vec<_> = events
        .iter()
        .map(|e| (e.id.clone(), e.sequence, e.content_hash()))
        .collect();
    assert_eq!(
        log.rehydrate(&state, &events[1..], &ids).await.unwrap(),
        Rehydration::Rebuilt
    );
    assert_eq!(log.state(&session).await.unwrap().unwrap(), before);
    assert_eq!(log.head(&session).await.unwrap(), Sequence(3));
    assert_eq!(log.floor(&session).await.unwrap(), Sequence(2));

    let dup = log.commit(request_with_id(&session, &first_id, "p1", "plugin:dnd5e:attack",
        json!({"target": {"instanceId": "g"}, "stateChanges": {"attributes.hp.value": {"from": 15, "to": 9}}})))
        .await
        .unwrap();
    assert!(dup.duplicate);
    assert_eq!(dup.sequence, Sequence(2));
    let next = log.commit(inc(&session, "p2", "g", -1)).await.unwrap();
    assert_eq!(next.sequence, Sequence(4), "no sequence reused");
    assert_eq!(hp(log.as_ref(), &session, "g").await, json!(6));
}

/// A rehydrate while the hot state exists writes nothing and says so, even when it carries an
/// older state: a handler that saw the state missing a moment ago must not erase what was
/// committed since.
pub async fn rehydrate_over_a_live_state_changes_nothing(h: &dyn LogHarness) {
    let log = h.log();
    let session = new_session(log.as_ref()).await;
    log.commit(add_goblin(&session, "g", 15)).await.unwrap();
    let stale_events = all_events(log.as_ref(), &session).await;
    let (stale, _) = fold(&session, None, None, &stale_events, 0).unwrap();
    log.commit(inc(&session, "p", "g", -5)).await.unwrap();
    log.commit(request(&session, "p", "core:chat", json!({"text": "hi"})))
        .await
        .unwrap();
    let before = log.state(&session).await.unwrap().unwrap();
    let events = all_events(log.as_ref(), &session).await;
    let ids: Vec<_> = stale_events
        .iter()
        .map(|e| (e.id.clone(), e.sequence, e.content_hash()))
        .collect();
    assert_eq!(
        log.rehydrate(&stale.state, &stale_events, &ids)
            .await
            .unwrap(),
        Rehydration::AlreadyPresent
    );
    assert_eq!(log.state(&session).await.unwrap().unwrap(), before);
    assert_eq!(all_events(log.as_ref(), &session).await, events);
    assert_eq!(log.head(&session).await.unwrap(), Sequence(3));
    assert_eq!(log.floor(&session).await.unwrap(), Sequence(1));
    let next = log.commit(inc(&session, "p", "g", -1)).await.unwrap();
    assert_eq!(next.sequence, Sequence(4));
    assert_eq!(hp(log.as_ref(), &session, "g").await, json!(9));
}

/// The confirmed events of a session, standing in for the archive: what a commit returned is
/// recorded here before it counts as confirmed, as the service archives before it confirms.
#[derive(Default)]
struct Confirmed {
    events: Mutex<BTreeMap<u64, GameEvent>>,
    /// Sequences that two different events were both confirmed at.
    reissued: Mutex<Vec<u64>>,
}

impl Confirmed {
    fn record(&self, committed: &Committed) {
        let event = committed
            .event
            .clone()
            .expect("a new commit returns its event");
        if let Some(old) = self
            .events
            .lock()
            .unwrap()
            .insert(event.sequence.get(), event.clone())
            && old.id != event.id
        {
            self.reissued.lock().unwrap().push(event.sequence.get());
        }
    }

    fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    /// The archive as it stands now: its contiguous run from sequence 1.
    fn read(&self) -> Vec<GameEvent> {
        let events = self.events.lock().unwrap();
        events
            .values()
            .enumerate()
            .take_while(|(i, e)| e.sequence.get() == *i as u64 + 1)
            .map(|(_, e)| e.clone())
            .collect()
    }
}

/// A rebuild as the service does it from an archive read: the fold of every event, all of
/// them as the hot window, every id for dedup.
async fn rehydrate_from(
    log: &dyn EventLog,
    session: &SessionId,
    archive: &[GameEvent],
) -> Rehydration {
    let state = if archive.is_empty() {
        GameSessionState::new(session.clone(), None)
    } else {
        fold(session, None, None, archive, 0)
            .expect("the archive folds")
            .0
            .state
    };
    let ids: Vec<_> = archive
        .iter()
        .map(|e| (e.id.clone(), e.sequence, e.content_hash()))
        .collect();
    log.rehydrate(&state, archive, &ids)
        .await
        .expect("rehydrate")
}

/// Commits as the service does: on a missing hot state, rebuild from the archive as it is now
/// (waiting a little when another rebuild is busy) and retry; bounded.
async fn commit_confirmed(
    log: &dyn EventLog,
    confirmed: &Confirmed,
    rebuilt: &AtomicUsize,
    req: CommitRequest,
) {
    for _ in 0..500 {
        match log.commit(req.clone()).await {
            Ok(c) => {
                assert!(!c.duplicate, "a fresh id is never a duplicate");
                confirmed.record(&c);
                return;
            }
            Err(CommitError::HotStateMissing(session)) => {
                match rehydrate_from(log, &session, &confirmed.read()).await {
                    Rehydration::Rebuilt => {
                        rebuilt.fetch_add(1, Ordering::SeqCst);
                    }
                    Rehydration::AlreadyPresent => {}
                    Rehydration::Busy => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
            Err(other) => panic!("commit failed: {other:?}"),
        }
    }
    panic!("no commit after 500 attempts: the hot state never came back");
}

/// The race of issue 10: after a wipe, many handlers rebuild the session at once, each from
/// the archive as it stood when it read it, some of them only after commits on the rebuilt
/// state were confirmed, while other handlers keep committing. Nothing confirmed is lost, no
/// sequence is issued twice, and exactly one rebuild per wipe wins.
pub async fn racing_rehydrates_never_erase_confirmed_events(h: &dyn LogHarness) {
    let log = h.log();
    let session = new_session(log.as_ref()).await;
    let confirmed = Arc::new(Confirmed::default());
    let rebuilt = Arc::new(AtomicUsize::new(0));
    commit_confirmed(
        log.as_ref(),
        &confirmed,
        &rebuilt,
        add_goblin(&session, "g", 100_000),
    )
    .await;
    for i in 0..10 {
        let req = request(&session, "u", "core:chat", json!({"i": i}));
        commit_confirmed(log.as_ref(), &confirmed, &rebuilt, req).await;
    }
    for round in 0..3 {
        h.wipe(&session).await;
        rebuilt.store(0, Ordering::SeqCst);
        let at_wipe = confirmed.len();
        let mut tasks = Vec::new();
        for r in 0..8 {
            // Read right after the wipe; half of them rebuild only once a commit on the rebuilt
            // state was confirmed (a handler that stalled between its read and its write).
            let archive = confirmed.read();
            let (log, session, confirmed, rebuilt) = (
                log.clone(),
                session.clone(),
                confirmed.clone(),
                rebuilt.clone(),
            );
            tasks.push(tokio::spawn(async move {
                if r % 2 == 1 {
                    let mut waited = 0;
                    while confirmed.len() == at_wipe {
                        waited += 1;
                        assert!(waited < 4_000, "no commit confirmed after the wipe");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                if rehydrate_from(log.as_ref(), &session, &archive).await == Rehydration::Rebuilt {
                    rebuilt.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        for c in 0..6 {
            let (log, session, confirmed, rebuilt) = (
                log.clone(),
                session.clone(),
                confirmed.clone(),
                rebuilt.clone(),
            );
            tasks.push(tokio::spawn(async move {
                for i in 0..10 {
                    let req = if i % 2 == 0 {
                        inc(&session, &format!("p{c}"), "g", -1)
                    } else {
                        request(&session, &format!("p{c}"), "core:chat", json!({"r": round}))
                    };
                    commit_confirmed(log.as_ref(), &confirmed, &rebuilt, req).await;
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }

        assert_eq!(
            confirmed.reissued.lock().unwrap().as_slice(),
            &[] as &[u64],
            "round {round}: sequences issued to two different events"
        );
        let archive: Vec<GameEvent> = confirmed.events.lock().unwrap().values().cloned().collect();
        let head = log.head(&session).await.expect("head");
        let stored = all_events(log.as_ref(), &session).await;
        let stored_ids: BTreeMap<u64, &EventId> =
            stored.iter().map(|e| (e.sequence.get(), &e.id)).collect();
        let missing: Vec<u64> = archive
            .iter()
            .filter(|e| stored_ids.get(&e.sequence.get()) != Some(&&e.id))
            .map(|e| e.sequence.get())
            .collect();
        assert_eq!(
            missing,
            Vec::<u64>::new(),
            "round {round}: confirmed events missing from the log"
        );
        assert_eq!(
            stored.iter().map(|e| e.sequence.get()).collect::<Vec<_>>(),
            (1..=head.get()).collect::<Vec<_>>(),
            "round {round}: the log is 1..head"
        );
        assert_eq!(
            head.get(),
            archive.len() as u64,
            "round {round}: every issued sequence was confirmed once"
        );
        let (expected, _) = fold(&session, None, None, &archive, 0).expect("projection");
        assert_eq!(
            log.state(&session).await.unwrap().expect("hot state"),
            expected.state,
            "round {round}: live state = projection of the confirmed events"
        );
        assert_eq!(
            rebuilt.load(Ordering::SeqCst),
            1,
            "round {round}: exactly one rebuild wins after a wipe"
        );
    }
    assert_eq!(log.head(&session).await.unwrap(), Sequence(11 + 3 * 60));
}

/// A session as large as the hot window allows (about 1,200 events of up to 24 KiB, plus the
/// ids of every earlier event) rebuilds completely, with dedup and the counter intact.
pub async fn big_session_rehydrates_whole(h: &dyn LogHarness) {
    let log = h.log();
    let session = new_session(log.as_ref()).await;
    h.wipe(&session).await;
    let first = request(&session, "u", "core:chat", json!({"text": "first"})).event;
    let mut state = GameSessionState::new(session.clone(), None);
    let earlier: u64 = 20_000;
    state.last_event_sequence = Sequence(earlier);
    let text = "x".repeat(24 * 1024 - 200);
    let events: Vec<GameEvent> = (1..=1_200u64)
        .map(|i| {
            let mut event = if i == 1 {
                first.clone()
            } else {
                request(&session, "u", "core:chat", json!({"text": text, "i": i})).event
            };
            event.sequence = Sequence(earlier + i);
            event
        })
        .collect();
    for e in &events {
        state.apply(e).expect("applies");
    }
    let ids: Vec<_> = (1..=earlier)
        .map(|i| {
            (
                EventId::new(format!("old-{i}")),
                Sequence(i),
                format!("hash-{i}"),
            )
        })
        .collect();
    assert_eq!(
        log.rehydrate(&state, &events, &ids).await.unwrap(),
        Rehydration::Rebuilt
    );
    assert_eq!(log.head(&session).await.unwrap(), Sequence(earlier + 1_200));
    assert_eq!(log.floor(&session).await.unwrap(), Sequence(earlier + 1));
    assert_eq!(log.state(&session).await.unwrap().unwrap(), state);
    let mut stored = Vec::new();
    let mut after = Sequence(earlier);
    for _ in 0..100 {
        let page = log.read(&session, after, None, 100).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.sequence;
        stored.extend(page);
    }
    assert_eq!(stored, events, "the whole hot window came back");
    // Dedup knows the oldest id (its sequence, with a different hash: reused).
    let err = log
        .commit(request_with_id(
            &session,
            "old-1",
            "u",
            "core:chat",
            json!({}),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, CommitError::IdReused { .. }), "{err:?}");
    let dup = log
        .commit(CommitRequest {
            changes: parse_changes(&first.event_type, &first.payload).unwrap(),
            event: first.clone(),
        })
        .await
        .unwrap();
    assert!(dup.duplicate);
    assert_eq!(dup.sequence, Sequence(earlier + 1));
    let next = log
        .commit(request(&session, "u", "core:chat", json!({})))
        .await
        .unwrap();
    assert_eq!(next.sequence, Sequence(earlier + 1_201));
}

/// Init is idempotent; release drops the hot state.
pub async fn init_is_idempotent_and_release_drops(h: &dyn LogHarness) {
    let log = h.log();
    let session = new_session(log.as_ref()).await;
    log.commit(request(&session, "u", "core:chat", json!({})))
        .await
        .unwrap();
    log.init_session(&session).await.unwrap();
    assert_eq!(log.head(&session).await.unwrap(), Sequence(1));
    log.release(&session).await.unwrap();
    assert!(matches!(
        log.commit(request(&session, "u", "core:chat", json!({})))
            .await,
        Err(CommitError::HotStateMissing(_))
    ));
}

/// An ended session refuses every commit (before any other check, a resubmitted id too) and
/// stores nothing; the end outlives a release and a rebuild, and touches no other session.
pub async fn ended_session_refuses_commits(h: &dyn LogHarness) {
    let log = h.log();
    let session = new_session(log.as_ref()).await;
    let other = new_session(log.as_ref()).await;
    log.commit(add_goblin(&session, "g", 15)).await.unwrap();
    let chat = request(&session, "u", "core:chat", json!({"text": "last words"}));
    log.commit(chat.clone()).await.unwrap();
    let events = all_events(log.as_ref(), &session).await;
    let before = log.state(&session).await.unwrap().unwrap();

    log.end_session(&session).await.unwrap();
    log.end_session(&session).await.unwrap();
    let refused = |r: Result<Committed, CommitError>| match r {
        Err(CommitError::SessionEnded(s)) => assert_eq!(s, session),
        other => panic!("expected SessionEnded, got {other:?}"),
    };
    refused(log.commit(inc(&session, "p", "g", -1)).await);
    assert_eq!(log.head(&session).await.unwrap(), Sequence(2));
    assert_eq!(all_events(log.as_ref(), &session).await, events);
    assert_eq!(log.state(&session).await.unwrap().unwrap(), before);
    refused(log.commit(chat.clone()).await);
    log.commit(request(&other, "u", "core:chat", json!({})))
        .await
        .expect("another session still commits");

    log.release(&session).await.unwrap();
    refused(log.commit(inc(&session, "p", "g", -1)).await);
    assert!(log.state(&session).await.unwrap().is_none());
    assert_eq!(
        rehydrate_from(log.as_ref(), &session, &events).await,
        Rehydration::Rebuilt
    );
    refused(log.commit(inc(&session, "p", "g", -1)).await);
    assert_eq!(log.head(&session).await.unwrap(), Sequence(2));
    assert_eq!(all_events(log.as_ref(), &session).await, events);
}

/// Polls `done` every 20 ms until it holds; panics after `bound` (an expiry that never comes).
async fn wait_until<F, Fut>(bound: Duration, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !done().await {
        assert!(start.elapsed() < bound, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The maintenance lease is exclusive per session, given back only with its own token, and
/// free again once its ttl ran out; a holder whose lease expired cannot release the next
/// holder's.
pub async fn maintenance_lease_is_exclusive(h: &dyn LogHarness) {
    let log = h.log();
    let session = new_session(log.as_ref()).await;
    let other = new_session(log.as_ref()).await;
    let long = Duration::from_secs(60);
    let first = log.try_lease(&session, long).await.unwrap().expect("free");
    assert_eq!(log.try_lease(&session, long).await.unwrap(), None, "held");
    let beside = log.try_lease(&other, long).await.unwrap();
    assert!(beside.is_some(), "another session's lease is its own");

    let forged = LeaseToken("not-the-token".to_owned());
    log.release_lease(&session, &forged).await.unwrap();
    assert_eq!(
        log.try_lease(&session, long).await.unwrap(),
        None,
        "a wrong token releases nothing"
    );
    log.release_lease(&session, &first).await.unwrap();
    let short = log
        .try_lease(&session, Duration::from_millis(200))
        .await
        .unwrap()
        .expect("free after release");
    assert_ne!(short, first, "a new token each time");

    let start = std::time::Instant::now();
    let next = loop {
        if let Some(t) = log.try_lease(&session, long).await.unwrap() {
            break t;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    log.release_lease(&session, &short).await.unwrap();
    assert_eq!(
        log.try_lease(&session, long).await.unwrap(),
        None,
        "an expired holder cannot release the next holder's lease"
    );
    log.release_lease(&session, &next).await.unwrap();
    assert!(log.try_lease(&session, long).await.unwrap().is_some());
}

fn rejection_of(session: &SessionId, id: &str, hp: i64) -> Rejection {
    Rejection {
        event: request_with_id(
            session,
            id,
            "p1",
            "plugin:dnd5e:attack",
            json!({"target": {"instanceId": "g"},
                   "stateChanges": {"attributes.hp.value": {"from": 15, "to": 9}}}),
        )
        .event,
        current: BTreeMap::from([("attributes.hp.value".to_owned(), json!(hp))]),
        rejected_at: 1_700_000_000_123,
    }
}

/// A rejection is remembered by session and event id until its ttl runs out; a later one with
/// the same id replaces it.
pub async fn rejections_are_remembered_until_their_ttl(h: &dyn LogHarness) {
    let log = h.log();
    let session = new_session(log.as_ref()).await;
    let other = new_session(log.as_ref()).await;
    let id = uuid::Uuid::new_v4().to_string();
    let first = rejection_of(&session, &id, 7);
    log.remember_rejection(&first, Duration::from_secs(60))
        .await
        .unwrap();
    let eid = EventId::new(&id);
    assert_eq!(log.rejection(&session, &eid).await.unwrap(), Some(first));
    assert_eq!(log.rejection(&other, &eid).await.unwrap(), None);
    let unknown = EventId::new(uuid::Uuid::new_v4().to_string());
    assert_eq!(log.rejection(&session, &unknown).await.unwrap(), None);

    let later = rejection_of(&session, &id, 3);
    log.remember_rejection(&later, Duration::from_millis(200))
        .await
        .unwrap();
    let seen = log.rejection(&session, &eid).await.unwrap();
    // Normally still there; on a stalled machine it may already have expired.
    assert!(seen.is_none() || seen == Some(later), "{seen:?}");
    wait_until(Duration::from_secs(10), "the rejection expires", || {
        let (log, session, eid) = (log.clone(), session.clone(), eid.clone());
        async move { log.rejection(&session, &eid).await.unwrap().is_none() }
    })
    .await;
}

/// Unarchived marks are one set: marking twice lists once, a listing holds at most `limit`
/// sessions, and a cleared session is no longer listed. Other sessions' marks (other tests on
/// the same server) may be listed too, so only this test's sessions are checked.
pub async fn unarchived_marks_add_list_and_clear(h: &dyn LogHarness) {
    let log = h.log();
    let ours: Vec<SessionId> = (0..3)
        .map(|_| SessionId::new(format!("s-{}", uuid::Uuid::new_v4())))
        .collect();
    for s in &ours {
        log.mark_unarchived(s).await.unwrap();
    }
    log.mark_unarchived(&ours[0]).await.unwrap();
    let all = log.unarchived(100_000).await.unwrap();
    for s in &ours {
        assert_eq!(all.iter().filter(|x| *x == s).count(), 1, "{s} listed once");
    }
    assert_eq!(
        all.iter().collect::<BTreeSet<_>>().len(),
        all.len(),
        "no session twice"
    );
    let two = log.unarchived(2).await.unwrap();
    assert_eq!(
        two.len(),
        2,
        "at most the limit, and the limit when there are more"
    );
    assert_ne!(two[0], two[1]);
    assert!(log.unarchived(0).await.unwrap().is_empty());

    log.clear_unarchived(&ours[1]).await.unwrap();
    log.clear_unarchived(&ours[1]).await.unwrap();
    let all = log.unarchived(100_000).await.unwrap();
    assert!(!all.contains(&ours[1]), "cleared");
    assert!(all.contains(&ours[0]) && all.contains(&ours[2]));
    for s in [&ours[0], &ours[2]] {
        log.clear_unarchived(s).await.unwrap();
    }
    let all = log.unarchived(100_000).await.unwrap();
    assert!(ours.iter().all(|s| !all.contains(s)));
}

/// A blind write to `path` of `instance`, sent at server time `at`.
fn blind(
    session: &SessionId,
    user: &str,
    instance: &str,
    path: &str,
    to: Value,
    at: u64,
) -> CommitRequest {
    let mut req = request(
        session,
        user,
        "core:token:move",
        json!({"target": {"instanceId": instance}, "stateChanges": {path: {"to": to}}}),
    );
    req.event.timestamp = at;
    req
}

/// The override a committed event left at `path`, as a replaced write.
fn written_by(c: &Committed, instance: &str, path: &str, value: Value) -> ReplacedWrite {
    let e = c.event.as_ref().expect("a new commit returns its event");
    ReplacedWrite {
        instance: InstanceId::new(instance),
        path: path.to_owned(),
        value,
        event_id: e.id.clone(),
        user_id: e.user_id.clone(),
        timestamp: e.timestamp,
        sequence: c.sequence,
    }
}

/// A blind write reports each override it replaced (value and the writing event's id, user,
/// time and sequence), read before it wrote; nothing over a base value, nothing for
/// compare-and-set, `inc` or a GM force-set, nothing for a duplicate.
pub async fn blind_writes_report_the_override_they_replaced(h: &dyn LogHarness) {
    let log = h.log();
    let session = new_session(log.as_ref()).await;
    let hp = "attributes.hp.value";
    log.commit(add_goblin(&session, "g", 15)).await.unwrap();

    let over_base = log
        .commit(blind(&session, "u1", "g", hp, json!(12), 1_000))
        .await
        .unwrap();
    assert_eq!(over_base.replaced, vec![], "a base value is nobody's write");
    let req = blind(&session, "u2", "g", hp, json!(9), 2_000);
    let second = log.commit(req.clone()).await.unwrap();
    assert_eq!(
        second.replaced,
        vec![written_by(&over_base, "g", hp, json!(12))]
    );
    let dup = log.commit(req).await.unwrap();
    assert!(dup.duplicate);
    assert_eq!(dup.replaced, vec![], "a duplicate replaced nothing");

    let cas = log.commit(hit(&session, "u3", "g", 9, 8)).await.unwrap();
    assert_eq!(cas.replaced, vec![]);
    let mut req = inc(&session, "u3", "g", -2);
    req.event.timestamp = 3_000;
    let dec = log.commit(req).await.unwrap();
    assert_eq!(dec.replaced, vec![]);

    // Two paths at once: one over the `inc`'s override, one never written.
    let mut req = request(
        &session,
        "u1",
        "core:token:move",
        json!({"target": {"instanceId": "g"},
               "stateChanges": {hp: {"to": 1}, "position.x": {"to": 4}}}),
    );
    req.event.timestamp = 4_000;
    let both = log.commit(req).await.unwrap();
    assert_eq!(both.replaced, vec![written_by(&dec, "g", hp, json!(6))]);

    let force = log
        .commit(request(
            &session,
            "gm",
            "core:gm_override",
            json!({"finalState": {"g": {hp: 5}}}),
        ))
        .await
        .unwrap();
    assert_eq!(force.replaced, vec![], "a force-set is not a blind write");

    let lighting = "environment.lighting";
    let dim = log
        .commit(blind(
            &session,
            "u1",
            "$session",
            lighting,
            json!("dim"),
            5_000,
        ))
        .await
        .unwrap();
    assert_eq!(dim.replaced, vec![], "a session default is a base value");
    let dark = log
        .commit(blind(
            &session,
            "u2",
            "$session",
            lighting,
            json!(["fog", 0.5]),
            6_000,
        ))
        .await
        .unwrap();
    assert_eq!(
        dark.replaced,
        vec![written_by(&dim, "$session", lighting, json!("dim"))]
    );
    let again = log
        .commit(blind(
            &session,
            "u1",
            "$session",
            lighting,
            json!(null),
            7_000,
        ))
        .await
        .unwrap();
    assert_eq!(
        again.replaced,
        vec![written_by(&dark, "$session", lighting, json!(["fog", 0.5]))]
    );
}

/// Runs every body.
pub async fn run_all(h: &dyn LogHarness) {
    concurrent_commits_are_gap_free(h).await;
    resubmitted_id_is_a_duplicate(h).await;
    compare_and_set_is_all_or_nothing(h).await;
    concurrent_incs_lose_nothing(h).await;
    racing_rebased_hits_stay_gap_free(h).await;
    invalid_changes_store_nothing(h).await;
    state_matches_the_projection(h).await;
    state_reads_are_consistent_while_instances_change(h).await;
    reads_and_trims(h).await;
    wiped_hot_state_is_refused_then_rehydrated(h).await;
    rehydrate_over_a_live_state_changes_nothing(h).await;
    racing_rehydrates_never_erase_confirmed_events(h).await;
    big_session_rehydrates_whole(h).await;
    init_is_idempotent_and_release_drops(h).await;
    ended_session_refuses_commits(h).await;
    maintenance_lease_is_exclusive(h).await;
    rejections_are_remembered_until_their_ttl(h).await;
    unarchived_marks_add_list_and_clear(h).await;
    blind_writes_report_the_override_they_replaced(h).await;
    commits_return_the_audience_token(h).await;
}

/// An idle release drops the hot state only while the head is the one it checked: an event
/// committed in between keeps the session (it may not be archived yet).
pub async fn release_if_head_keeps_a_session_that_moved(h: &dyn LogHarness) {
    let log = h.log();
    let session = new_session(log.as_ref()).await;
    for i in 0..3 {
        log.commit(request(&session, "u1", "core:chat", json!({"i": i})))
            .await
            .expect("commit");
    }
    assert!(
        !log.release_if_head(&session, Sequence(2)).await.unwrap(),
        "the head moved on to 3"
    );
    assert_eq!(log.head(&session).await.unwrap(), Sequence(3), "kept whole");
    assert_eq!(all_events(log.as_ref(), &session).await.len(), 3);
    assert!(log.release_if_head(&session, Sequence(3)).await.unwrap());
    assert!(matches!(
        log.head(&session).await,
        Err(StoreError::HotStateMissing(_))
    ));
    assert!(log.state(&session).await.unwrap().is_none());
    assert!(
        !log.release_if_head(&session, Sequence(3)).await.unwrap(),
        "nothing left to release"
    );
}

/// The audience token: none until set; a commit returns the token current at its sequence;
/// a duplicate returns none; a new token replaces the old; the token outlives a release of
/// the hot state (it is about the registry, not the log), and sessions do not share tokens.
pub async fn commits_return_the_audience_token(h: &dyn LogHarness) {
    let log = h.log();
    let session = new_session(log.as_ref()).await;
    let other = new_session(log.as_ref()).await;
    let first = log
        .commit(request(&session, "u1", "core:chat", json!({"i": 0})))
        .await
        .expect("commit");
    assert_eq!(first.audience, None, "no token was ever set");
    log.set_audience(&session, 41).await.unwrap();
    let again = request(&session, "u1", "core:chat", json!({"i": 1}));
    let second = log.commit(again.clone()).await.expect("commit");
    assert_eq!(second.audience, Some(41));
    let duplicate = log.commit(again).await.expect("duplicate");
    assert!(duplicate.duplicate);
    assert_eq!(
        duplicate.audience, None,
        "a duplicate is not broadcast from a cache"
    );
    log.set_audience(&session, u64::MAX).await.unwrap();
    let third = log
        .commit(request(&session, "u2", "core:chat", json!({"i": 2})))
        .await
        .expect("commit");
    assert_eq!(
        third.audience,
        Some(u64::MAX),
        "the newest token, at full width"
    );
    let elsewhere = log
        .commit(request(&other, "u1", "core:chat", json!({"i": 0})))
        .await
        .expect("commit");
    assert_eq!(elsewhere.audience, None, "tokens are per session");
    assert!(log.release_if_head(&session, third.sequence).await.unwrap());
    log.init_session(&session).await.unwrap();
    let after = log
        .commit(request(&session, "u1", "core:chat", json!({"i": 3})))
        .await
        .expect("commit");
    assert_eq!(after.audience, Some(u64::MAX), "kept across a release");
}
