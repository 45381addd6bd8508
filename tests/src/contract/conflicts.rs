//! Contract of [`ConflictStore`]: conflicts stored exactly and once per id, listed newest first
//! by pages (cursor, item count, byte budget), resolved exactly once under concurrency.
//!
//! Every body uses its own sessions (UUIDs), so bodies run in parallel against one real server.

use dlab_core::ids::{ConflictId, EventId, SessionId, UserId};
use dlab_store::model::{ConflictKey, ConflictKind, ConflictRecord, PageRequest, Resolution};
use dlab_store::{ConflictStore, StoreError};
use serde_json::json;

use super::campaign::walk;

/// A session id no other test uses.
pub fn unique_session() -> SessionId {
    SessionId::new(format!("conflicts-{}", uuid::Uuid::new_v4()))
}

/// An unresolved blind-write conflict of `session` whose options, events and choices hold
/// values a lossy store would change (an integer above `i64::MAX`, a float with a zero fraction,
/// `$`-prefixed and dotted keys).
pub fn conflict(session: &SessionId, id: &str, created_at: u64) -> ConflictRecord {
    ConflictRecord {
        conflict_id: ConflictId::new(id),
        session_id: session.clone(),
        kind: ConflictKind::BlindWrite,
        description: format!("goblin1 attributes.hp.value written twice ({id})"),
        options: vec![
            json!({"eventId": "e-1", "values": {"goblin1": {"attributes.hp.value": 2.0}}}),
            json!({"eventId": "e-2", "values": {"goblin1": {"attributes.hp.value": u64::MAX}}}),
        ],
        events: vec![
            json!({"eventId": "e-1", "userId": "alice", "sequence": 4, "timestamp": created_at}),
            json!({"eventId": "e-2", "userId": "bob", "sequence": 5, "$odd.key": [null, -1.5]}),
        ],
        choices: json!({
            "e-1": {"goblin1": {"attributes.hp.value": 2.0}},
            "e-2": {"goblin1": {"attributes.hp.value": u64::MAX}},
        }),
        created_at,
        resolved: false,
        resolution: None,
    }
}

fn resolution(by: &str) -> Resolution {
    Resolution {
        resolved_by: UserId::new(by),
        resolved_at: 1_700_000_500_000,
        override_event_id: EventId::new(uuid::Uuid::new_v4().to_string()),
        chosen_event_id: Some(EventId::new("e-2")),
        final_state: serde_json::json!({"goblin": {"attributes.hp.value": 9}}),
    }
}

/// `create` stores a conflict exactly and once: the same id again (even with other content)
/// is `false` and changes nothing; ids are per session; `get` of an unknown id is `None`.
pub async fn create_is_idempotent_and_get_reads_back_exactly(store: &dyn ConflictStore) {
    let session = unique_session();
    let first = conflict(&session, "goblin1:attributes.hp.value:4", 1_000);
    assert!(store.create(&first).await.expect("create"), "new");
    let back = store
        .get(&session, &first.conflict_id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(back, first);
    assert_eq!(
        back.options[1]["values"]["goblin1"]["attributes.hp.value"],
        json!(u64::MAX)
    );
    assert!(back.options[0]["values"]["goblin1"]["attributes.hp.value"].is_f64());

    let mut again = first.clone();
    again.description = "reported twice".to_owned();
    again.created_at = 2_000;
    assert!(
        !store.create(&again).await.expect("create again"),
        "the same race reported twice"
    );
    assert_eq!(
        store.get(&session, &first.conflict_id).await.expect("get"),
        Some(first.clone()),
        "the first report stays"
    );

    let other = unique_session();
    let elsewhere = conflict(&other, first.conflict_id.as_str(), 1_500);
    assert!(
        store.create(&elsewhere).await.expect("create"),
        "the same id in another session is another conflict"
    );
    assert_eq!(
        store.get(&other, &first.conflict_id).await.expect("get"),
        Some(elsewhere)
    );
    assert_eq!(
        store
            .get(&session, &ConflictId::new("cas:missing"))
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        store
            .get(&unique_session(), &first.conflict_id)
            .await
            .expect("get"),
        None
    );
}

/// A session's conflicts page newest first (`createdAt` desc, then id desc): every conflict
/// once under any mix of item count and byte budget, resuming exactly after ties, `next` only
/// while more follow; other sessions' conflicts never appear.
pub async fn list_pages_newest_first(store: &dyn ConflictStore) {
    let session = unique_session();
    let mut expected = Vec::new();
    for (i, created_at) in [5_000, 7_000, 5_000, 5_000, 9_000, 7_000, 1_000]
        .iter()
        .enumerate()
    {
        let mut c = conflict(
            &session,
            &format!("{i}:{}", uuid::Uuid::new_v4()),
            *created_at,
        );
        if i == 3 {
            c.description = "x".repeat(2_000);
        }
        assert!(store.create(&c).await.expect("create"));
        expected.push(c);
    }
    assert!(
        store
            .create(&conflict(&unique_session(), "elsewhere", 6_000))
            .await
            .expect("create")
    );
    expected.sort_by(|a, b| (b.created_at, &b.conflict_id).cmp(&(a.created_at, &a.conflict_id)));
    let one = dlab_store::model::json_size(&expected[0]).expect("size");
    for (limit, max_bytes) in [
        (2, 1 << 20),
        (3, 1 << 20),
        (7, 1 << 20),
        (100, 2 * one + 1),
        (100, 10),
    ] {
        let pages = walk(
            |r| {
                let session = &session;
                Box::pin(async move { store.list(session, &r).await })
            },
            limit,
            max_bytes,
        )
        .await;
        assert_eq!(pages.concat(), expected, "limit {limit}, {max_bytes} bytes");
        if limit == 7 {
            assert_eq!(pages.len(), 1, "a full last page has no next key");
        }
        if max_bytes == 10 {
            assert_eq!(
                pages.len(),
                expected.len(),
                "one item per page over the budget"
            );
        }
    }
    let first = store
        .list(&session, &PageRequest::first(2))
        .await
        .expect("list");
    assert_eq!(first.items, expected[..2]);
    assert_eq!(
        first.next,
        Some(ConflictKey {
            created_at: expected[1].created_at,
            id: expected[1].conflict_id.clone(),
        })
    );
    let older = store
        .list(
            &session,
            &PageRequest::first(100).after(ConflictKey {
                created_at: 5_000,
                id: ConflictId::new(""),
            }),
        )
        .await
        .expect("list");
    assert_eq!(
        older.items.iter().map(|c| c.created_at).collect::<Vec<_>>(),
        vec![1_000],
        "after the oldest tie of 5000 comes 1000"
    );
    assert_eq!(older.next, None);
    let none = store
        .list(&unique_session(), &PageRequest::first(10))
        .await
        .expect("list");
    assert!(none.items.is_empty() && none.next.is_none());
}

/// Of many concurrent resolves of one conflict exactly one wins and gets the resolved record
/// (its resolution); the others, a later resolve and a resolve of a missing id get `None`; the
/// stored record is the winner's, in `get` and in the listing.
pub async fn resolve_wins_exactly_once(store: &dyn ConflictStore) {
    let session = unique_session();
    let open = conflict(&session, "cas:e-9", 3_000);
    assert!(store.create(&open).await.expect("create"));
    let attempts: Vec<Resolution> = (0..10).map(|i| resolution(&format!("gm-{i}"))).collect();
    let results: Vec<Result<Option<ConflictRecord>, StoreError>> = futures::future::join_all(
        attempts
            .iter()
            .map(|r| store.resolve(&session, &open.conflict_id, r)),
    )
    .await;
    let winners: Vec<(usize, ConflictRecord)> = results
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| r.expect("resolve").map(|c| (i, c)))
        .collect();
    assert_eq!(winners.len(), 1, "exactly one resolve wins: {winners:?}");
    let (i, won) = winners.into_iter().next().expect("one");
    let expected = ConflictRecord {
        resolved: true,
        resolution: Some(attempts[i].clone()),
        ..open.clone()
    };
    assert_eq!(won, expected);
    assert_eq!(
        store.get(&session, &open.conflict_id).await.expect("get"),
        Some(expected.clone())
    );
    assert_eq!(
        store
            .resolve(&session, &open.conflict_id, &resolution("late"))
            .await
            .expect("resolve"),
        None,
        "already resolved"
    );
    assert_eq!(
        store
            .resolve(&session, &ConflictId::new("cas:missing"), &resolution("gm"))
            .await
            .expect("resolve"),
        None,
        "missing"
    );
    assert_eq!(
        store
            .list(&session, &PageRequest::first(10))
            .await
            .expect("list")
            .items,
        vec![expected]
    );
    let mut already = conflict(&session, "cas:e-10", 3_500);
    already.resolved = true;
    already.resolution = Some(resolution("gm-early"));
    assert!(store.create(&already).await.expect("create"));
    assert_eq!(
        store
            .resolve(&session, &already.conflict_id, &resolution("gm"))
            .await
            .expect("resolve"),
        None,
        "a conflict stored resolved cannot be resolved again"
    );
    assert_eq!(
        store
            .get(&session, &already.conflict_id)
            .await
            .expect("get"),
        Some(already)
    );
}
