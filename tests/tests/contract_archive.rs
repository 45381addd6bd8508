//! The [`EventArchive`](dlab_store::EventArchive) contract against the memory adapter and
//! MongoDB (nx-27017 in tests), plus MongoDB's own rules: a bounded submit path and a stored
//! `archivedThrough` that outlives the events it counts.

use std::time::Duration;

use dlab_core::ids::Sequence;
use dlab_store::EventArchive;
use dlab_store::memory::MemoryEventArchive;
use dlab_store::mongo::{EVENTS, MongoConfig, MongoStores};
use dlab_tests::contract::archive as contract;
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::doc;

/// The shared MongoDB test server, or `None` when the test should skip.
async fn mongo() -> Option<MongoStores> {
    dlab_tests::contract::test_mongo("dlab_ct_archive").await
}

use dlab_tests::contract::{test_sqlite as sqlite, test_sqlite_again as sqlite_again};

macro_rules! against_both {
    ($($body:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $body() {
                    super::contract::$body(&dlab_store::memory::MemoryEventArchive::new()).await;
                }
            )*
        }
        mod mongo {
            $(
                #[tokio::test]
                async fn $body() {
                    let Some(stores) = super::mongo().await else { return };
                    super::contract::$body(&stores.archive()).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $body() {
                    let (_dir, stores) = super::sqlite().await;
                    super::contract::$body(&stores.archive()).await;
                }
            )*
        }
    };
}

against_both!(
    insert_is_idempotent_for_the_same_id,
    another_id_at_a_taken_sequence_is_a_sequence_collision,
    the_same_id_at_another_sequence_is_an_id_collision,
    sessions_are_independent,
    reads_are_ordered_ranges,
    archived_through_finds_the_first_gap_and_never_decreases,
    ids_carry_content_hashes,
    prune_keeps_the_archive_contiguous,
    archived_through_never_goes_down_after_a_prune,
);

/// Bodies that list across sessions: each gets an archive of its own (a fresh database).
macro_rules! against_both_alone {
    ($($body:ident),* $(,)?) => {
        mod alone {
            mod memory {
                $(
                    #[tokio::test]
                    async fn $body() {
                        crate::contract::$body(&dlab_store::memory::MemoryEventArchive::new()).await;
                    }
                )*
            }
            mod mongo {
                $(
                    #[tokio::test]
                    async fn $body() {
                        let Some(stores) =
                            dlab_tests::contract::fresh_mongo("dlab_ct_activity").await
                        else {
                            return;
                        };
                        crate::contract::$body(&stores.archive()).await;
                    }
                )*
            }
            mod sqlite {
                $(
                    #[tokio::test]
                    async fn $body() {
                        let (_dir, stores) = crate::sqlite().await;
                        crate::contract::$body(&stores.archive()).await;
                    }
                )*
            }
        }
    };
}

against_both_alone!(
    active_since_pages_touched_sessions_by_id,
    idle_hot_lists_hot_sessions_oldest_first,
);

/// `migrate` creates the indexes the activity queries are pinned to (they are hinted, so a
/// missing index fails the query instead of scanning every session). Compared by fields: servers
/// name indexes differently.
#[tokio::test]
async fn mongo_activity_indexes_exist_after_migrate() {
    let Some(stores) = mongo().await else { return };
    let keys: Vec<mongodb::bson::Document> = stores
        .database()
        .collection::<mongodb::bson::Document>(dlab_store::mongo::SESSIONS)
        .list_indexes()
        .await
        .expect("list indexes")
        .map_ok(|i| i.keys)
        .try_collect()
        .await
        .expect("list indexes");
    for wanted in [doc! {"lastEventAt": 1}, doc! {"hot": 1, "lastEventAt": 1}] {
        assert!(
            keys.iter()
                .any(|k| dlab_tests::contract::same_index_fields(k, &wanted)),
            "no index on {wanted} in {keys:?}"
        );
    }
}

#[tokio::test]
async fn memory_racing_inserts_admit_one_event_per_sequence() {
    let archive = MemoryEventArchive::new();
    contract::racing_inserts_admit_one_event_per_sequence(&archive, &archive).await;
}

/// Two clients, as two Lambda instances would have: the unique index decides, not the adapter.
#[tokio::test]
async fn mongo_racing_inserts_admit_one_event_per_sequence() {
    let (Some(a), Some(b)) = (mongo().await, mongo().await) else {
        return;
    };
    contract::racing_inserts_admit_one_event_per_sequence(&a.archive(), &b.archive()).await;
}

/// MongoDB down must not hang a submit: the insert fails as `Unavailable` within the operation
/// timeout (300 ms by default). Needs no server: nothing listens on port 1.
#[tokio::test]
async fn mongo_unreachable_fails_an_insert_fast() {
    let config = MongoConfig::new("mongodb://127.0.0.1:1/?directConnection=true");
    assert_eq!(config.operation_timeout, Duration::from_millis(300));
    let stores = MongoStores::open(&config)
        .await
        .expect("opening a client does not contact the server");
    let took =
        contract::unreachable_backend_fails_fast(&stores.archive(), Duration::from_secs(2)).await;
    println!(
        "insert against an unreachable MongoDB failed after {} ms",
        took.as_millis()
    );
}

/// `archivedThrough` is stored, so it never goes down even when archived events are removed
/// (a retention period) — recomputing from the events alone would fall back to 0.
#[tokio::test]
async fn mongo_archived_through_survives_removed_events() {
    let Some(stores) = mongo().await else { return };
    let archive = stores.archive();
    let session = contract::unique_session();
    for seq in 1..=4 {
        archive
            .insert(&contract::event(&session, seq, &contract::unique_id()))
            .await
            .expect("insert");
    }
    assert_eq!(
        archive.archived_through(&session).await.unwrap(),
        Sequence(4)
    );
    let removed = stores
        .database()
        .collection::<mongodb::bson::Document>(EVENTS)
        .delete_many(doc! {"sessionId": session.as_str(), "sequence": {"$lte": 3}})
        .await
        .expect("delete");
    assert_eq!(removed.deleted_count, 3);
    assert_eq!(
        archive.archived_through(&session).await.unwrap(),
        Sequence(4)
    );
    archive
        .insert(&contract::event(&session, 5, &contract::unique_id()))
        .await
        .expect("insert");
    assert_eq!(
        archive.archived_through(&session).await.unwrap(),
        Sequence(5)
    );
}

/// The watermark advances across more events than one read of the progress scan returns.
#[tokio::test]
async fn mongo_archived_through_advances_over_many_events() {
    let Some(stores) = mongo().await else { return };
    let archive = stores.archive();
    let session = contract::unique_session();
    let total = 2_105;
    let events: Vec<_> = (1..=total)
        .filter(|seq| *seq != 2_050)
        .map(|seq| contract::event(&session, seq, &contract::unique_id()))
        .collect();
    futures::stream::iter(events.iter().map(|e| archive.insert(e)))
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await
        .expect("insert");
    assert_eq!(
        archive.archived_through(&session).await.unwrap(),
        Sequence(2_049)
    );
    archive
        .insert(&contract::event(&session, 2_050, &contract::unique_id()))
        .await
        .expect("insert");
    assert_eq!(
        archive.archived_through(&session).await.unwrap(),
        Sequence(total)
    );
}

/// The unique indexes are created by the explicit `migrate` step, not at cold start; an archive
/// writer in a database without them refuses every write (rather than archiving without the
/// dedup and collision fence), and writes once they exist.
#[tokio::test]
async fn mongo_archive_refuses_writes_until_its_unique_indexes_exist() {
    if !dlab_tests::servers::require(dlab_tests::servers::Server::Mongo) {
        return;
    }
    let mut config = MongoConfig::new(dlab_tests::servers::Server::Mongo.url());
    config.database = format!("dlab_ct_noindex_{}", uuid::Uuid::new_v4().simple());
    let stores = MongoStores::open(&config).await.expect("open");
    let archive = stores.archive();
    let session = contract::unique_session();
    let event = contract::event(&session, 1, &contract::unique_id());
    match archive.insert(&event).await {
        Err(dlab_store::ArchiveError::IndexesMissing { missing, .. }) => {
            assert_eq!(missing.len(), 2, "{missing:?}")
        }
        other => panic!("expected IndexesMissing, got {other:?}"),
    }
    assert!(
        archive
            .read(&session, Sequence::ZERO, None, 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing was written"
    );
    // The explicit step of a deployment (`local-gateway migrate --mongo …`).
    local_gateway::migrate::migrate(&local_gateway::migrate::MigrateOptions {
        mongo_uri: dlab_tests::servers::Server::Mongo.url(),
        mongo_database: config.database.clone(),
        dynamodb_endpoint: None,
        connections_table: String::new(),
    })
    .await
    .expect("migrate");
    archive.insert(&event).await.expect("insert once indexed");
    assert_eq!(
        archive
            .read(&session, Sequence::ZERO, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Two handles on one file, as two processes would have: `BEGIN IMMEDIATE` serializes their
/// writers, so the check-then-insert of each is exact.
#[tokio::test]
async fn sqlite_racing_inserts_admit_one_event_per_sequence() {
    let (_dir, a) = sqlite().await;
    let b = sqlite_again(&a).await;
    contract::racing_inserts_admit_one_event_per_sequence(&a.archive(), &b.archive()).await;
}

/// One handle used concurrently: jobs of one batch that collide are refused on their own
/// savepoint while their neighbours commit.
#[tokio::test]
async fn sqlite_racing_inserts_on_one_handle_admit_one_event_per_sequence() {
    let (_dir, a) = sqlite().await;
    contract::racing_inserts_admit_one_event_per_sequence(&a.archive(), &a.archive()).await;
}

/// Every acknowledged event is in the file: a handle opened after the first is dropped (its
/// writer thread gone with it) reads them all, with the archive's bookkeeping.
#[tokio::test]
async fn sqlite_acknowledged_events_survive_reopening() {
    let (dir, stores) = sqlite().await;
    let path = stores.path().to_path_buf();
    let session = contract::unique_session();
    let events: Vec<_> = (1..=25)
        .map(|seq| contract::event(&session, seq, &contract::unique_id()))
        .collect();
    let archive = stores.archive();
    for e in &events {
        archive.insert(e).await.expect("insert");
    }
    archive.touch(&session, 1_234).await.expect("touch");
    assert_eq!(
        archive.archived_through(&session).await.unwrap(),
        Sequence(25)
    );
    drop(archive);
    drop(stores);

    let reopened = dlab_store::sqlite::SqliteStores::open(&path)
        .await
        .expect("reopen");
    let archive = reopened.archive();
    assert_eq!(
        archive
            .read(&session, Sequence::ZERO, None, usize::MAX)
            .await
            .expect("read"),
        events
    );
    assert_eq!(
        archive.archived_through(&session).await.unwrap(),
        Sequence(25)
    );
    assert_eq!(
        archive.active_since(1_234, None, 10).await.unwrap(),
        vec![session.clone()]
    );
    assert_eq!(archive.ids(&session).await.unwrap().len(), 25);
    drop(dir);
}

/// 200 inserts from 200 concurrent tasks across 8 sessions all land; they were committed in
/// fewer transactions than writes (group commit), and a new handle on the file sees them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_inserts_are_group_committed() {
    let (_dir, stores) = sqlite().await;
    let sessions: Vec<_> = (0..8).map(|_| contract::unique_session()).collect();
    let events: Vec<_> = (0..200u64)
        .map(|i| {
            contract::event(
                &sessions[(i % 8) as usize],
                i / 8 + 1,
                &contract::unique_id(),
            )
        })
        .collect();
    let before = stores.write_stats();
    let tasks: Vec<_> = events
        .iter()
        .cloned()
        .map(|e| {
            let archive = stores.archive();
            tokio::spawn(async move { archive.insert(&e).await })
        })
        .collect();
    for task in futures::future::join_all(tasks).await {
        task.expect("task").expect("insert");
    }
    let stats = stores.write_stats();
    let (batches, writes) = (stats.batches - before.batches, stats.writes - before.writes);
    println!("200 concurrent inserts: {writes} writes in {batches} transactions");
    assert_eq!(writes, 200);
    assert!(
        batches < writes,
        "{batches} transactions for {writes} writes"
    );

    let other = sqlite_again(&stores).await;
    let archive = other.archive();
    for (n, session) in sessions.iter().enumerate() {
        let expected: Vec<_> = events
            .iter()
            .filter(|e| &e.session_id == session)
            .cloned()
            .collect();
        assert_eq!(expected.len(), 25, "session {n}");
        assert_eq!(
            archive
                .read(session, Sequence::ZERO, None, usize::MAX)
                .await
                .expect("read"),
            expected
        );
        assert_eq!(
            archive.archived_through(session).await.unwrap(),
            Sequence(25)
        );
    }
}
