//! Contract of [`EventArchive`]: idempotent inserts, collision detection, ordered range reads,
//! the archived-through watermark and the dedup ids.
//!
//! Each body takes a fresh or shared adapter and works on its own sessions (UUIDs), so bodies
//! run in parallel against one real server.

use std::time::{Duration, Instant};

use dlab_core::codes::ErrorCode;
use dlab_core::event::GameEvent;
use dlab_core::ids::{EventId, Sequence, SessionId, UserId};
use dlab_store::{ArchiveError, EventArchive, StoreError};
use serde_json::{Value, json};

/// A session id no other test uses.
pub fn unique_session() -> SessionId {
    SessionId::new(format!("contract-{}", uuid::Uuid::new_v4()))
}

/// A fresh event id (a UUID, as clients send).
pub fn unique_id() -> EventId {
    EventId::new(uuid::Uuid::new_v4().to_string())
}

/// A payload whose numbers and keys a lossy store would change: a float with a zero fraction,
/// an integer above `i64::MAX`, a negative, a `$`-prefixed and a dotted key, mixed arrays.
pub fn awkward_payload(n: u64) -> Value {
    json!({
        "n": n,
        "half": 1.5,
        "whole_float": 2.0,
        "huge": u64::MAX,
        "negative": -42,
        "nested": {"$weird.key": [1, "two", null, true, {"a.b": []}]},
        "target": {"instanceId": "goblin1"},
    })
}

/// An event of `session` at `sequence` with `id`.
pub fn event(session: &SessionId, sequence: u64, id: &EventId) -> GameEvent {
    GameEvent {
        id: id.clone(),
        sequence: Sequence(sequence),
        timestamp: 1_700_000_000_000 + sequence,
        client_timestamp: Some(1_699_999_999_000 + sequence),
        user_id: UserId::new("alice"),
        session_id: session.clone(),
        event_type: "plugin:contract:ping".to_owned(),
        payload: awkward_payload(sequence),
        checksum: None,
    }
}

async fn insert_all(archive: &dyn EventArchive, events: &[GameEvent]) {
    for e in events {
        archive
            .insert(e)
            .await
            .unwrap_or_else(|err| panic!("insert of sequence {} failed: {err}", e.sequence));
    }
}

async fn everything(archive: &dyn EventArchive, session: &SessionId) -> Vec<GameEvent> {
    archive
        .read(session, Sequence::ZERO, None, usize::MAX)
        .await
        .expect("read")
}

/// Inserting the same event again succeeds and stores nothing new; the first write stays.
pub async fn insert_is_idempotent_for_the_same_id(archive: &dyn EventArchive) {
    let session = unique_session();
    let first = event(&session, 1, &unique_id());
    archive.insert(&first).await.expect("first insert");
    archive.insert(&first).await.expect("same event again");
    let mut changed = first.clone();
    changed.payload = json!({"other": true});
    archive
        .insert(&changed)
        .await
        .expect("same id at the same sequence is the same event");
    assert_eq!(everything(archive, &session).await, vec![first]);
}

/// Another event id at a taken sequence is [`ArchiveError::SequenceCollision`] naming the
/// holder, and the stored event is unchanged.
pub async fn another_id_at_a_taken_sequence_is_a_sequence_collision(archive: &dyn EventArchive) {
    let session = unique_session();
    let held = event(&session, 1, &unique_id());
    archive.insert(&held).await.expect("insert");
    let intruder = event(&session, 1, &unique_id());
    match archive.insert(&intruder).await {
        Err(ArchiveError::SequenceCollision {
            session: s,
            sequence,
            existing,
        }) => {
            assert_eq!(s, session);
            assert_eq!(sequence, Sequence(1));
            assert_eq!(existing, held.id.to_string());
        }
        other => panic!("expected a sequence collision, got {other:?}"),
    }
    assert_eq!(everything(archive, &session).await, vec![held]);
}

/// The same event id at another sequence is [`ArchiveError::IdCollision`] naming where it is.
pub async fn the_same_id_at_another_sequence_is_an_id_collision(archive: &dyn EventArchive) {
    let session = unique_session();
    let id = unique_id();
    let first = event(&session, 1, &id);
    archive.insert(&first).await.expect("insert");
    match archive.insert(&event(&session, 2, &id)).await {
        Err(ArchiveError::IdCollision {
            session: s,
            id: got,
            existing,
        }) => {
            assert_eq!(s, session);
            assert_eq!(got, id.to_string());
            assert_eq!(existing, Sequence(1));
        }
        other => panic!("expected an id collision, got {other:?}"),
    }
    assert_eq!(everything(archive, &session).await, vec![first]);
}

/// Sessions are independent: the same sequence and even the same id may appear in two sessions.
pub async fn sessions_are_independent(archive: &dyn EventArchive) {
    let (a, b) = (unique_session(), unique_session());
    let id = unique_id();
    let in_a = event(&a, 1, &id);
    let in_b = event(&b, 1, &id);
    archive.insert(&in_a).await.expect("insert in a");
    archive.insert(&in_b).await.expect("insert in b");
    assert_eq!(everything(archive, &a).await, vec![in_a]);
    assert_eq!(everything(archive, &b).await, vec![in_b]);
}

/// Reads return `after < sequence <= to`, at most `limit`, in order, whatever the insert order,
/// and events come back exactly as stored (payload numbers and keys included).
pub async fn reads_are_ordered_ranges(archive: &dyn EventArchive) {
    let session = unique_session();
    let events: Vec<GameEvent> = (1..=10)
        .map(|seq| event(&session, seq, &unique_id()))
        .collect();
    let mut shuffled = events.clone();
    shuffled.reverse();
    shuffled.swap(2, 7);
    insert_all(archive, &shuffled).await;

    let session = &session;
    let read = |after: u64, to: Option<u64>, limit: usize| async move {
        archive
            .read(session, Sequence(after), to.map(Sequence), limit)
            .await
            .expect("read")
    };
    assert_eq!(read(0, None, 100).await, events, "everything, in order");
    assert_eq!(read(3, Some(7), 100).await, events[3..7], "(3, 7]");
    assert_eq!(read(3, Some(7), 2).await, events[3..5], "(3, 7] limit 2");
    assert_eq!(read(8, None, 100).await, events[8..], "(8, head]");
    assert_eq!(read(0, None, 1).await, events[..1], "limit 1");
    assert!(read(10, None, 100).await.is_empty(), "after the head");
    assert!(read(5, Some(5), 100).await.is_empty(), "empty range");
    assert!(read(5, Some(2), 100).await.is_empty(), "inverted range");
    assert!(read(0, None, 0).await.is_empty(), "limit 0");
    assert!(
        archive
            .read(&unique_session(), Sequence::ZERO, None, 100)
            .await
            .expect("read unknown session")
            .is_empty()
    );
    let back = &read(0, Some(1), 1).await[0];
    assert_eq!(back.payload["huge"], json!(u64::MAX));
    assert_eq!(back.payload["whole_float"], json!(2.0));
    assert!(back.payload["whole_float"].is_f64());
    assert_eq!(back.payload["negative"], json!(-42));
}

/// `archived_through` is the highest `n` with 1..=n all archived: it stops at the first missing
/// sequence, moves on when the gap is filled, and never goes down.
pub async fn archived_through_finds_the_first_gap_and_never_decreases(archive: &dyn EventArchive) {
    let session = unique_session();
    let through = || archived_through(archive, session.clone());
    assert_eq!(through().await, Sequence(0), "nothing archived");
    let ev = |seq| event(&session, seq, &unique_id());

    insert_all(archive, &[ev(2), ev(3)]).await;
    assert_eq!(through().await, Sequence(0), "1 is missing");
    insert_all(archive, &[ev(1), ev(5)]).await;
    assert_eq!(through().await, Sequence(3), "1, 2, 3, 5 → 3");
    assert_eq!(through().await, Sequence(3), "stable");
    insert_all(archive, &[ev(4)]).await;
    assert_eq!(through().await, Sequence(5), "gap filled → 5");
    insert_all(archive, &[ev(7)]).await;
    assert_eq!(through().await, Sequence(5), "6 missing");
    insert_all(archive, &[ev(6)]).await;
    assert_eq!(through().await, Sequence(7));
    assert_eq!(
        archive
            .archived_through(&unique_session())
            .await
            .expect("unknown session"),
        Sequence(0)
    );
}

async fn archived_through(archive: &dyn EventArchive, session: SessionId) -> Sequence {
    archive
        .archived_through(&session)
        .await
        .expect("archived_through")
}

/// `ids` returns every `(id, sequence, content hash)` of the session, in sequence order, with
/// the hash equal to [`GameEvent::content_hash`].
pub async fn ids_carry_content_hashes(archive: &dyn EventArchive) {
    let session = unique_session();
    let mut events: Vec<GameEvent> = (1..=4)
        .map(|seq| event(&session, seq, &unique_id()))
        .collect();
    events[2].payload = json!({"different": [1, 2, 3]});
    events[3].event_type = "plugin:contract:other".to_owned();
    insert_all(archive, &events).await;
    insert_all(archive, &[event(&unique_session(), 1, &unique_id())]).await;
    let expected: Vec<(EventId, Sequence, String)> = events
        .iter()
        .map(|e| (e.id.clone(), e.sequence, e.content_hash()))
        .collect();
    let mut got = archive.ids(&session).await.expect("ids");
    got.sort_by_key(|(_, seq, _)| *seq);
    assert_eq!(got, expected);
    assert!(
        archive
            .ids(&unique_session())
            .await
            .expect("ids of an unknown session")
            .is_empty()
    );
}

/// Two writers racing for the same sequences (two clients of one store, or one adapter used
/// concurrently): exactly one event per sequence wins, the other gets a sequence collision;
/// the same event from both succeeds twice.
pub async fn racing_inserts_admit_one_event_per_sequence(
    a: &dyn EventArchive,
    b: &dyn EventArchive,
) {
    let session = unique_session();
    for seq in 1..=8 {
        let (left, right) = (
            event(&session, seq, &unique_id()),
            event(&session, seq, &unique_id()),
        );
        let (l, r) = futures::join!(a.insert(&left), b.insert(&right));
        let winner = match (&l, &r) {
            (Ok(()), Err(ArchiveError::SequenceCollision { existing, .. })) => {
                assert_eq!(existing, &left.id.to_string());
                left
            }
            (Err(ArchiveError::SequenceCollision { existing, .. }), Ok(())) => {
                assert_eq!(existing, &right.id.to_string());
                right
            }
            other => panic!("sequence {seq}: expected one winner and one collision, got {other:?}"),
        };
        let stored = a
            .read(&session, Sequence(seq - 1), Some(Sequence(seq)), 10)
            .await
            .expect("read");
        assert_eq!(stored, vec![winner]);
    }
    let same = event(&session, 9, &unique_id());
    let (l, r) = futures::join!(a.insert(&same), b.insert(&same));
    assert!(
        l.is_ok() && r.is_ok(),
        "the same event twice: {l:?} / {r:?}"
    );
    assert_eq!(
        a.archived_through(&session).await.expect("through"),
        Sequence(9)
    );
}

/// An archive whose backend cannot be reached fails an insert as a retryable
/// [`StoreError::Unavailable`] within `bound` (the submit path must not hang on it). Returns
/// the measured time of the slower of two attempts.
pub async fn unreachable_backend_fails_fast(
    archive: &dyn EventArchive,
    bound: Duration,
) -> Duration {
    let session = unique_session();
    let mut slowest = Duration::ZERO;
    for seq in 1..=2 {
        let started = Instant::now();
        let result = archive.insert(&event(&session, seq, &unique_id())).await;
        let took = started.elapsed();
        slowest = slowest.max(took);
        match result {
            Err(ArchiveError::Store(e @ StoreError::Unavailable { .. })) => {
                assert_eq!(e.code(), ErrorCode::Unavailable);
                assert!(
                    std::error::Error::source(&e).is_some(),
                    "the driver's error is kept as the source"
                );
            }
            other => panic!("expected StoreError::Unavailable, got {other:?}"),
        }
        assert!(
            took < bound,
            "insert against an unreachable backend took {took:?}, bound {bound:?}"
        );
    }
    slowest
}

/// `count` session ids no other test uses, in id order.
fn sorted_sessions(count: usize) -> Vec<SessionId> {
    let mut sessions: Vec<SessionId> = (0..count).map(|_| unique_session()).collect();
    sessions.sort();
    sessions
}

async fn touch(archive: &dyn EventArchive, session: &SessionId, at: u64) {
    archive.touch(session, at).await.expect("touch");
}

async fn active(
    archive: &dyn EventArchive,
    since: u64,
    after: Option<&SessionId>,
    limit: usize,
) -> Vec<SessionId> {
    archive
        .active_since(since, after, limit)
        .await
        .expect("active_since")
}

async fn idle(archive: &dyn EventArchive, before: u64, limit: usize) -> Vec<SessionId> {
    archive.idle_hot(before, limit).await.expect("idle_hot")
}

/// `active_since` lists the sessions with an event at or after `since` by session id, resumes
/// after a cursor and stops at `limit`; `touch` only raises `lastEventAt`.
///
/// Needs an archive no other body touches (it lists across sessions).
pub async fn active_since_pages_touched_sessions_by_id(archive: &dyn EventArchive) {
    let s = sorted_sessions(5);
    for (session, at) in s.iter().zip([100, 300, 200, 50, 250]) {
        touch(archive, session, at).await;
    }
    touch(archive, &s[1], 120).await;
    assert_eq!(
        active(archive, 100, None, 100).await,
        vec![s[0].clone(), s[1].clone(), s[2].clone(), s[4].clone()],
        "since is inclusive; s3 (50) is older; by session id"
    );
    assert_eq!(
        active(archive, 280, None, 100).await,
        vec![s[1].clone()],
        "a later touch at an earlier time does not lower lastEventAt"
    );
    assert_eq!(
        active(archive, 100, None, 2).await,
        vec![s[0].clone(), s[1].clone()],
        "limit"
    );
    assert_eq!(
        active(archive, 100, Some(&s[1]), 2).await,
        vec![s[2].clone(), s[4].clone()],
        "after the cursor"
    );
    assert_eq!(
        active(archive, 100, Some(&s[4]), 2).await,
        Vec::<SessionId>::new(),
        "after the last"
    );
    assert!(active(archive, 100, None, 0).await.is_empty(), "limit 0");
    assert!(
        active(archive, 301, None, 100).await.is_empty(),
        "none since"
    );

    let archived_only = unique_session();
    insert_all(archive, &[event(&archived_only, 1, &unique_id())]).await;
    assert_eq!(
        archived_through(archive, archived_only.clone()).await,
        Sequence(1)
    );
    assert_eq!(
        active(archive, 0, None, 100).await,
        s,
        "archiving records no activity"
    );
}

/// `idle_hot` lists hot sessions whose last event is before `before`, oldest first, at most
/// `limit`; `set_hot(false)` takes a session out, a `touch` or `set_hot(true)` puts it back.
///
/// Needs an archive no other body touches (it lists across sessions).
pub async fn idle_hot_lists_hot_sessions_oldest_first(archive: &dyn EventArchive) {
    let s = sorted_sessions(4);
    // By time: s2 (100), s0 (200), s3 (300), s1 (400).
    for (session, at) in s.iter().zip([200, 400, 100, 300]) {
        touch(archive, session, at).await;
    }
    assert_eq!(
        idle(archive, 350, 100).await,
        vec![s[2].clone(), s[0].clone(), s[3].clone()],
        "before is exclusive of later events; oldest first"
    );
    assert_eq!(
        idle(archive, 350, 2).await,
        vec![s[2].clone(), s[0].clone()]
    );
    assert!(idle(archive, 100, 100).await.is_empty(), "before is strict");
    assert!(idle(archive, 350, 0).await.is_empty(), "limit 0");

    archive.set_hot(&s[2], false).await.expect("set_hot");
    assert_eq!(
        idle(archive, 350, 100).await,
        vec![s[0].clone(), s[3].clone()],
        "released sessions are not hot"
    );
    assert_eq!(
        active(archive, 100, None, 100).await,
        s,
        "released sessions still count as active"
    );
    touch(archive, &s[2], 150).await;
    assert_eq!(
        idle(archive, 350, 100).await,
        vec![s[2].clone(), s[0].clone(), s[3].clone()],
        "a touch marks the session hot again"
    );
    archive.set_hot(&s[0], false).await.expect("set_hot");
    archive.set_hot(&s[0], true).await.expect("set_hot");
    assert_eq!(
        idle(archive, 350, 100).await,
        vec![s[2].clone(), s[0].clone(), s[3].clone()],
        "set_hot(true) puts it back with its time"
    );

    // A session rebuilt without any recorded event has activity time 0: idle since then, and
    // active only since 0.
    let rebuilt = unique_session();
    archive.set_hot(&rebuilt, true).await.expect("set_hot");
    assert_eq!(idle(archive, 350, 1).await, vec![rebuilt.clone()]);
    assert!(
        !active(archive, 1, None, 100).await.contains(&rebuilt),
        "set_hot records no activity"
    );
    assert!(active(archive, 0, None, 100).await.contains(&rebuilt));
}

/// An event of `session` at `sequence` with server time `timestamp`.
fn event_at(session: &SessionId, sequence: u64, timestamp: u64) -> GameEvent {
    GameEvent {
        timestamp,
        ..event(session, sequence, &unique_id())
    }
}

/// `prune` deletes the longest old-enough prefix up to `through`, so the archive stays
/// contiguous above `pruned_through`; it never lowers `pruned_through`, and `archived_through`
/// never goes down because events were pruned.
pub async fn prune_keeps_the_archive_contiguous(archive: &dyn EventArchive) {
    let session = unique_session();
    // Old events (time 1000 + seq) except 6, which is recent (5000).
    let events: Vec<GameEvent> = (1..=10)
        .map(|seq| event_at(&session, seq, if seq == 6 { 5_000 } else { 1_000 + seq }))
        .collect();
    insert_all(archive, &events).await;

    assert_eq!(
        archive
            .prune(&session, Sequence(3), 4_000)
            .await
            .expect("prune"),
        3,
        "through bounds the prune"
    );
    assert_eq!(everything(archive, &session).await, events[3..]);
    assert_eq!(archive.pruned_through(&session).await.unwrap(), Sequence(3));
    assert_eq!(
        archived_through(archive, session.clone()).await,
        Sequence(10),
        "the archive still holds everything up to 10 (1..=3 as pruned)"
    );

    assert_eq!(
        archive
            .prune(&session, Sequence(9), 4_000)
            .await
            .expect("prune"),
        2,
        "stops before the first recent event (6), so nothing above it goes"
    );
    assert_eq!(everything(archive, &session).await, events[5..]);
    assert_eq!(archive.pruned_through(&session).await.unwrap(), Sequence(5));

    assert_eq!(
        archive
            .prune(&session, Sequence(9), 5_000)
            .await
            .expect("prune"),
        0,
        "older_than is strict: 6 at exactly 5000 stays"
    );
    assert_eq!(
        archive
            .prune(&session, Sequence(2), 9_000)
            .await
            .expect("prune"),
        0,
        "nothing left below 2"
    );
    assert_eq!(
        archive.pruned_through(&session).await.unwrap(),
        Sequence(5),
        "pruned_through never goes down"
    );
    assert_eq!(
        archive
            .prune(&session, Sequence(8), 9_000)
            .await
            .expect("prune"),
        3
    );
    assert_eq!(everything(archive, &session).await, events[8..]);
    assert_eq!(archive.pruned_through(&session).await.unwrap(), Sequence(8));

    // A late backfill copies an old event below the pruned point again.
    insert_all(archive, &[events[1].clone()]).await;
    assert_eq!(
        archive
            .prune(&session, Sequence(2), 9_000)
            .await
            .expect("prune"),
        1
    );
    assert_eq!(
        archive.pruned_through(&session).await.unwrap(),
        Sequence(8),
        "pruning below it never lowers pruned_through"
    );
    assert_eq!(
        archived_through(archive, session.clone()).await,
        Sequence(10)
    );
    archive
        .insert(&event_at(&session, 11, 1_011))
        .await
        .expect("insert after a prune");
    assert_eq!(
        archived_through(archive, session.clone()).await,
        Sequence(11)
    );
    assert_eq!(
        archive.ids(&session).await.expect("ids").len(),
        3,
        "pruned events are not rehydrated as dedup ids"
    );

    let unknown = unique_session();
    assert_eq!(
        archive
            .prune(&unknown, Sequence(5), u64::MAX)
            .await
            .unwrap(),
        0
    );
    assert_eq!(archive.pruned_through(&unknown).await.unwrap(), Sequence(0));
}

/// A prune before `archived_through` was ever asked: the watermark starts at the pruned point,
/// not back at 0 because event 1 is gone.
pub async fn archived_through_never_goes_down_after_a_prune(archive: &dyn EventArchive) {
    let session = unique_session();
    let events: Vec<GameEvent> = (1..=6).map(|seq| event_at(&session, seq, 1_000)).collect();
    insert_all(archive, &events).await;
    assert_eq!(
        archive
            .prune(&session, Sequence(4), 2_000)
            .await
            .expect("prune"),
        4
    );
    assert_eq!(
        archived_through(archive, session.clone()).await,
        Sequence(6)
    );
    let bare = unique_session();
    insert_all(
        archive,
        &[event_at(&bare, 1, 1_000), event_at(&bare, 2, 1_000)],
    )
    .await;
    assert_eq!(archive.prune(&bare, Sequence(2), 2_000).await.unwrap(), 2);
    assert_eq!(
        archived_through(archive, bare.clone()).await,
        Sequence(2),
        "an emptied archive keeps its watermark"
    );
}
