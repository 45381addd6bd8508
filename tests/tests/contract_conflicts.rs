//! The [`ConflictStore`](dlab_store::ConflictStore) contract against the memory adapter and
//! MongoDB (nx-27017 in tests), plus MongoDB's own rules: concurrent resolves from separate
//! clients (as separate Lambda instances would send them) and the report's indexes.

use dlab_store::mongo::{CONFLICTS, MongoStores};
use dlab_tests::contract::conflicts as contract;
use futures::TryStreamExt;
use mongodb::bson::{Document, doc};

/// The shared MongoDB test server, or `None` when the test should skip.
async fn mongo() -> Option<MongoStores> {
    dlab_tests::contract::test_mongo("dlab_ct_conflicts").await
}

use dlab_tests::contract::{test_sqlite as sqlite, test_sqlite_again as sqlite_again};

macro_rules! against_both {
    ($($body:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $body() {
                    super::contract::$body(&dlab_store::memory::MemoryConflictStore::new()).await;
                }
            )*
        }
        mod mongo {
            $(
                #[tokio::test]
                async fn $body() {
                    let Some(stores) = super::mongo().await else { return };
                    super::contract::$body(&stores.conflicts()).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $body() {
                    let (_dir, stores) = super::sqlite().await;
                    super::contract::$body(&stores.conflicts()).await;
                }
            )*
        }
    };
}

against_both!(
    create_is_idempotent_and_get_reads_back_exactly,
    list_pages_newest_first,
    resolve_wins_exactly_once,
);

/// Resolves racing from ten clients (ten pools of connections): the conditional update on the
/// server decides, so exactly one wins.
#[tokio::test]
async fn mongo_resolves_from_separate_clients_win_exactly_once() {
    let Some(first) = mongo().await else { return };
    let session = contract::unique_session();
    let open = contract::conflict(&session, "cas:racing", 1_000);
    assert!(
        dlab_store::ConflictStore::create(&first.conflicts(), &open)
            .await
            .expect("create")
    );
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(mongo().await.expect("the server is up"));
    }
    let stores: Vec<_> = clients.iter().map(MongoStores::conflicts).collect();
    let resolutions: Vec<dlab_store::model::Resolution> = (0..10)
        .map(|i| dlab_store::model::Resolution {
            resolved_by: dlab_core::ids::UserId::new(format!("gm-{i}")),
            resolved_at: 2_000 + i,
            override_event_id: dlab_core::ids::EventId::new(format!("override-{i}")),
            chosen_event_id: None,
            final_state: serde_json::json!({"goblin": {"attributes.hp.value": i}}),
        })
        .collect();
    let results = futures::future::join_all(
        stores
            .iter()
            .zip(&resolutions)
            .map(|(s, r)| dlab_store::ConflictStore::resolve(s, &session, &open.conflict_id, r)),
    )
    .await;
    let won: Vec<_> = results
        .into_iter()
        .filter_map(|r| r.expect("resolve"))
        .collect();
    assert_eq!(won.len(), 1, "{won:?}");
    assert_eq!(
        dlab_store::ConflictStore::get(&first.conflicts(), &session, &open.conflict_id)
            .await
            .expect("get"),
        Some(won[0].clone())
    );
}

/// `migrate` creates the report's indexes: unique `(sessionId, conflictId)` (the dedup of
/// `create`) and the newest-first listing's `(sessionId, createdAt desc, conflictId desc)`.
#[tokio::test]
async fn mongo_conflict_indexes_exist_after_migrate() {
    let Some(stores) = mongo().await else { return };
    let indexes: Vec<mongodb::IndexModel> = stores
        .database()
        .collection::<Document>(CONFLICTS)
        .list_indexes()
        .await
        .expect("list indexes")
        .try_collect()
        .await
        .expect("list indexes");
    let has = |keys: Document, unique: bool| {
        indexes.iter().any(|i| {
            dlab_tests::contract::same_index_fields(&i.keys, &keys)
                && (!unique || i.options.as_ref().and_then(|o| o.unique) == Some(true))
        })
    };
    assert!(
        has(doc! {"sessionId": 1, "conflictId": 1}, true),
        "{indexes:?}"
    );
    assert!(
        has(
            doc! {"sessionId": 1, "createdAt": -1, "conflictId": -1},
            false
        ),
        "{indexes:?}"
    );
}

/// Resolves racing from ten handles on one file (ten writer threads, as ten processes would
/// have): the conditional update decides, so exactly one wins.
#[tokio::test]
async fn sqlite_resolves_from_separate_handles_win_exactly_once() {
    let (_dir, first) = sqlite().await;
    let session = contract::unique_session();
    let open = contract::conflict(&session, "cas:racing", 1_000);
    assert!(
        dlab_store::ConflictStore::create(&first.conflicts(), &open)
            .await
            .expect("create")
    );
    let mut handles = Vec::new();
    for _ in 0..10 {
        handles.push(sqlite_again(&first).await);
    }
    let stores: Vec<_> = handles
        .iter()
        .map(dlab_store::sqlite::SqliteStores::conflicts)
        .collect();
    let resolutions: Vec<dlab_store::model::Resolution> = (0..10)
        .map(|i| dlab_store::model::Resolution {
            resolved_by: dlab_core::ids::UserId::new(format!("gm-{i}")),
            resolved_at: 2_000 + i,
            override_event_id: dlab_core::ids::EventId::new(format!("override-{i}")),
            chosen_event_id: None,
            final_state: serde_json::json!({"goblin": {"attributes.hp.value": i}}),
        })
        .collect();
    let results = futures::future::join_all(
        stores
            .iter()
            .zip(&resolutions)
            .map(|(s, r)| dlab_store::ConflictStore::resolve(s, &session, &open.conflict_id, r)),
    )
    .await;
    let won: Vec<_> = results
        .into_iter()
        .filter_map(|r| r.expect("resolve"))
        .collect();
    assert_eq!(won.len(), 1, "{won:?}");
    assert_eq!(
        dlab_store::ConflictStore::get(&first.conflicts(), &session, &open.conflict_id)
            .await
            .expect("get"),
        Some(won[0].clone())
    );
}
