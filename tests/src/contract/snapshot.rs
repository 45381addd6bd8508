//! Contract of [`SnapshotStore`]: snapshots read back exactly, `latest` is the highest
//! `upToSequence`, and puts are idempotent.

use dlab_core::changes::ACTOR_ADDED;
use dlab_core::compaction::{Snapshot, fold};
use dlab_core::event::GameEvent;
use dlab_core::ids::{CampaignId, EventId, Sequence, SessionId, UserId};
use dlab_store::SnapshotStore;
use serde_json::{Value, json};

/// A session id no other test uses.
pub fn unique_session() -> SessionId {
    SessionId::new(format!("snapshot-{}", uuid::Uuid::new_v4()))
}

fn event(session: &SessionId, sequence: u64, event_type: &str, payload: Value) -> GameEvent {
    GameEvent {
        id: EventId::new(uuid::Uuid::new_v4().to_string()),
        sequence: Sequence(sequence),
        timestamp: 1_700_000_000_000 + sequence,
        client_timestamp: None,
        user_id: UserId::new("gm"),
        session_id: session.clone(),
        event_type: event_type.to_owned(),
        payload,
        checksum: None,
    }
}

/// A goblin joins the session, then takes `hits` hits of 2 (`inc`), a blind write to a
/// session field and a CAS on its condition follow.
pub fn goblin_fight(session: &SessionId, hits: u64) -> Vec<GameEvent> {
    let mut events = vec![event(
        session,
        1,
        ACTOR_ADDED,
        json!({
            "instanceId": "goblin1",
            "actorId": "actor-goblin",
            "actor": {
                "name": "Goblin",
                "attributes": {"hp": {"value": 15, "max": 15}, "ac": 15, "cr": 0.25,
                               "senses": {"darkvision": 60}, "xp": u64::MAX},
                "features": [{"name": "Nimble Escape"}],
            },
        }),
    )];
    for i in 0..hits {
        events.push(event(
            session,
            i + 2,
            "plugin:dnd5e:attack",
            json!({"target": {"instanceId": "goblin1"},
                   "stateChanges": {"attributes.hp.value": {"op": "inc", "by": -2}}}),
        ));
    }
    let next = events.len() as u64 + 1;
    events.push(event(
        session,
        next,
        "plugin:dnd5e:condition",
        json!({"target": {"instanceId": "goblin1"},
               "stateChanges": {"attributes.condition": {"from": null, "to": "prone"}}}),
    ));
    events
}

/// Folds `events` (from the start of the session) into a snapshot.
pub fn snapshot_of(session: &SessionId, events: &[GameEvent]) -> Snapshot {
    let (snapshot, _) = fold(
        session,
        Some(CampaignId::new("campaign-snapshots")),
        None,
        events,
        1_700_000_100_000 + events.len() as u64,
    )
    .expect("the events fold");
    snapshot
}

/// Snapshots read back equal (state, checksum, times), still verify, and the latest is the one
/// with the highest `upToSequence` whatever the put order; other sessions are unaffected.
pub async fn latest_is_the_highest_and_round_trips(store: &dyn SnapshotStore) {
    let session = unique_session();
    let events = goblin_fight(&session, 3);
    let early = snapshot_of(&session, &events[..2]);
    let full = snapshot_of(&session, &events);
    assert_eq!(full.up_to_sequence, Sequence(5));
    assert_eq!(
        full.state.current(&"goblin1".into(), "attributes.hp.value"),
        Some(json!(9)),
        "the fixture folds as intended"
    );

    assert_eq!(store.latest(&session).await.expect("latest"), None);
    store.put(&early).await.expect("put early");
    let back = store
        .latest(&session)
        .await
        .expect("latest")
        .expect("stored");
    assert_eq!(back, early);
    assert!(back.verify(), "the checksum still matches the state");

    store.put(&full).await.expect("put full");
    let back = store
        .latest(&session)
        .await
        .expect("latest")
        .expect("stored");
    assert_eq!(back, full);
    assert!(back.verify());
    assert_eq!(
        back.state.current(&"goblin1".into(), "attributes.hp.value"),
        Some(json!(9))
    );

    store.put(&early).await.expect("put an older one again");
    assert_eq!(
        store.latest(&session).await.expect("latest"),
        Some(full.clone()),
        "an older snapshot put later is not the latest"
    );
    assert_eq!(store.latest(&unique_session()).await.expect("latest"), None);
}

/// Putting the same snapshot again succeeds and leaves one, equal snapshot.
pub async fn put_is_idempotent(store: &dyn SnapshotStore) {
    let session = unique_session();
    let snapshot = snapshot_of(&session, &goblin_fight(&session, 1));
    for _ in 0..3 {
        store.put(&snapshot).await.expect("put");
    }
    assert_eq!(
        store.latest(&session).await.expect("latest"),
        Some(snapshot)
    );
}

/// Folding the latest stored snapshot with the following events gives the same state as
/// folding every event: what is stored is enough to resume.
pub async fn a_stored_snapshot_resumes_the_fold(store: &dyn SnapshotStore) {
    let session = unique_session();
    let events = goblin_fight(&session, 4);
    store
        .put(&snapshot_of(&session, &events[..3]))
        .await
        .expect("put");
    let stored = store
        .latest(&session)
        .await
        .expect("latest")
        .expect("stored");
    let (resumed, _) = fold(&session, None, Some(&stored), &events[3..], 1).expect("resume");
    assert_eq!(resumed.state, snapshot_of(&session, &events).state);
}

/// A session whose state is about `bytes` of JSON: goblins whose notes mix one-, two- and
/// three-byte characters (so pieces cut by bytes fall inside characters), then the fight.
pub fn large_fight(session: &SessionId, bytes: usize) -> Vec<GameEvent> {
    let per_goblin = 64 * 1024;
    let goblins = bytes.div_ceil(per_goblin).max(1);
    let notes = "ä☠x".repeat(per_goblin / 6);
    let mut events: Vec<GameEvent> = (0..goblins)
        .map(|i| {
            event(
                session,
                i as u64 + 1,
                ACTOR_ADDED,
                json!({
                    "instanceId": format!("goblin{}", i + 1),
                    "actorId": "actor-goblin",
                    "actor": {
                        "name": format!("Goblin {i}"),
                        "attributes": {"hp": {"value": 15, "max": 15}, "cr": 0.25,
                                       "xp": u64::MAX, "notes": notes},
                    },
                }),
            )
        })
        .collect();
    let next = events.len() as u64 + 1;
    events.push(event(
        session,
        next,
        "plugin:dnd5e:attack",
        json!({"target": {"instanceId": "goblin1"},
               "stateChanges": {"attributes.hp.value": {"op": "inc", "by": -2}}}),
    ));
    events
}

/// A snapshot far larger than the store's pieces (the MongoDB suite runs this with small
/// chunks) reads back exactly; putting it again, or again with another `createdAt`, leaves the
/// latest put; smaller and older snapshots around it do not get in the way.
pub async fn a_snapshot_of_many_chunks_round_trips(store: &dyn SnapshotStore) {
    let session = unique_session();
    let events = large_fight(&session, 200 * 1024);
    let small = snapshot_of(&session, &events[..1]);
    let big = snapshot_of(&session, &events);
    assert!(
        serde_json::to_string(&big).expect("json").len() > 200 * 1024,
        "the fixture is large"
    );
    store.put(&small).await.expect("put small");
    store.put(&big).await.expect("put big");
    let back = store
        .latest(&session)
        .await
        .expect("latest")
        .expect("stored");
    assert_eq!(back, big);
    assert!(back.verify(), "the checksum still matches the state");
    assert_eq!(
        back.state.current(&"goblin1".into(), "attributes.hp.value"),
        Some(json!(13))
    );

    store.put(&big).await.expect("put again");
    assert_eq!(
        store.latest(&session).await.expect("latest"),
        Some(big.clone())
    );
    let refolded = Snapshot {
        created_at: big.created_at + 1,
        ..big.clone()
    };
    store.put(&refolded).await.expect("put refolded");
    assert_eq!(
        store.latest(&session).await.expect("latest"),
        Some(refolded.clone()),
        "the same (session, upToSequence) put again is replaced"
    );
    store.put(&small).await.expect("put an older one again");
    assert_eq!(
        store.latest(&session).await.expect("latest"),
        Some(refolded)
    );
}
