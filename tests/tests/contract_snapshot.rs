//! The [`SnapshotStore`](dlab_store::SnapshotStore) contract against the memory adapter and
//! MongoDB (nx-27017 in tests), plus MongoDB's own rules: snapshots larger than a document are
//! stored in pieces, a half-written one is never the latest, damaged pieces are reported, and
//! replaced pieces are removed.

use dlab_core::compaction::Snapshot;
use dlab_store::mongo::{MongoStores, SNAPSHOT_CHUNKS, SNAPSHOTS};
use dlab_store::{SnapshotStore, StoreError};
use dlab_tests::contract::snapshot as contract;
use mongodb::bson::{Document, doc};

/// The shared MongoDB test server, or `None` when the test should skip.
async fn mongo() -> Option<MongoStores> {
    dlab_tests::contract::test_mongo("dlab_ct_snapshot").await
}

/// Pieces small enough that the contract's large snapshot needs dozens of them.
const SMALL_CHUNK: usize = 4096;

macro_rules! against_both {
    ($($body:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $body() {
                    super::contract::$body(&dlab_store::memory::MemorySnapshotStore::new()).await;
                }
            )*
        }
        mod mongo {
            $(
                #[tokio::test]
                async fn $body() {
                    let Some(stores) = super::mongo().await else { return };
                    super::contract::$body(&stores.snapshots()).await;
                }
            )*
        }
        mod mongo_small_chunks {
            $(
                #[tokio::test]
                async fn $body() {
                    let Some(stores) = super::mongo().await else { return };
                    let store = stores.snapshots().with_chunk_bytes(super::SMALL_CHUNK);
                    super::contract::$body(&store).await;
                }
            )*
        }
    };
}

against_both!(
    latest_is_the_highest_and_round_trips,
    put_is_idempotent,
    a_stored_snapshot_resumes_the_fold,
    a_snapshot_of_many_chunks_round_trips,
);

fn collection(stores: &MongoStores, name: &str) -> mongodb::Collection<Document> {
    stores.database().collection(name)
}

async fn pieces_of(stores: &MongoStores, snapshot: &Snapshot) -> u64 {
    collection(stores, SNAPSHOT_CHUNKS)
        .count_documents(doc! {
            "sessionId": snapshot.session_id.as_str(),
            "upToSequence": snapshot.up_to_sequence.get() as i64,
        })
        .await
        .expect("count pieces")
}

/// A put that stopped after its pieces and before its `snapshots` document (the document is
/// written last) leaves pieces nothing references: `latest` is still the previous snapshot.
#[tokio::test]
async fn mongo_a_half_written_snapshot_is_never_latest() {
    let Some(stores) = mongo().await else { return };
    let store = stores.snapshots().with_chunk_bytes(SMALL_CHUNK);
    let session = contract::unique_session();
    let events = contract::large_fight(&session, 100 * 1024);
    let earlier = contract::snapshot_of(&session, &events[..1]);
    let half = contract::snapshot_of(&session, &events);
    store.put(&earlier).await.expect("put earlier");
    store.put(&half).await.expect("put");
    let removed = collection(&stores, SNAPSHOTS)
        .delete_one(doc! {
            "sessionId": session.as_str(),
            "upToSequence": half.up_to_sequence.get() as i64,
        })
        .await
        .expect("remove the document");
    assert_eq!(removed.deleted_count, 1);
    assert!(
        pieces_of(&stores, &half).await > 2,
        "the pieces of the later snapshot are there"
    );
    assert_eq!(store.latest(&session).await.expect("latest"), Some(earlier));
}

/// A piece lost under a complete document is reported as corrupt, never reassembled into a
/// wrong state.
#[tokio::test]
async fn mongo_a_snapshot_missing_a_piece_is_corrupt() {
    let Some(stores) = mongo().await else { return };
    let store = stores.snapshots().with_chunk_bytes(SMALL_CHUNK);
    let session = contract::unique_session();
    let snapshot = contract::snapshot_of(&session, &contract::large_fight(&session, 100 * 1024));
    store.put(&snapshot).await.expect("put");
    let removed = collection(&stores, SNAPSHOT_CHUNKS)
        .delete_one(doc! {"sessionId": session.as_str(), "n": 3_i64})
        .await
        .expect("remove a piece");
    assert_eq!(removed.deleted_count, 1);
    match store.latest(&session).await {
        Err(StoreError::Corrupt { .. }) => {}
        other => panic!("expected a corrupt snapshot, got {other:?}"),
    }
}

/// A put replacing a chunked snapshot of the same `(sessionId, upToSequence)` with other JSON
/// (another `createdAt`) removes the replaced pieces; the same JSON again rewrites the same
/// pieces.
#[tokio::test]
async fn mongo_replaced_pieces_are_removed() {
    let Some(stores) = mongo().await else { return };
    let store = stores.snapshots().with_chunk_bytes(SMALL_CHUNK);
    let session = contract::unique_session();
    let first = contract::snapshot_of(&session, &contract::large_fight(&session, 100 * 1024));
    let pieces = serde_json::to_string(&first)
        .expect("json")
        .len()
        .div_ceil(SMALL_CHUNK) as u64;
    store.put(&first).await.expect("put");
    let stored = pieces_of(&stores, &first).await;
    assert!(stored >= pieces, "{stored} pieces, at least {pieces}");
    store.put(&first).await.expect("put again");
    assert_eq!(pieces_of(&stores, &first).await, stored, "the same pieces");
    let refolded = Snapshot {
        created_at: first.created_at + 1,
        ..first.clone()
    };
    store.put(&refolded).await.expect("put refolded");
    assert_eq!(
        pieces_of(&stores, &refolded).await,
        stored,
        "only the new pieces remain"
    );
    assert_eq!(
        store.latest(&session).await.expect("latest"),
        Some(refolded)
    );
}

/// At the default piece size, a snapshot larger than MongoDB's 16 MiB document limit is stored
/// and read back exactly.
#[tokio::test]
async fn mongo_a_snapshot_larger_than_a_document_round_trips() {
    let Some(stores) = mongo().await else { return };
    let store = stores.snapshots();
    let session = contract::unique_session();
    let snapshot = contract::snapshot_of(&session, &contract::large_fight(&session, 17 << 20));
    let bytes = serde_json::to_string(&snapshot).expect("json").len();
    assert!(bytes > 16 << 20, "{bytes} bytes");
    let started = std::time::Instant::now();
    store.put(&snapshot).await.expect("put");
    let back = store
        .latest(&session)
        .await
        .expect("latest")
        .expect("stored");
    println!(
        "a {bytes}-byte snapshot stored and read back in {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!(back, snapshot);
    assert!(pieces_of(&stores, &snapshot).await >= 5);
}

/// A put in progress is never visible half-written: reads racing a put of a snapshot of a
/// hundred pieces see the previous snapshot or the new one, never an error or a partial state.
#[tokio::test]
async fn mongo_reads_racing_a_put_see_the_old_or_the_new_snapshot() {
    let Some(stores) = mongo().await else { return };
    let store = stores.snapshots().with_chunk_bytes(1024);
    let session = contract::unique_session();
    let events = contract::large_fight(&session, 100 * 1024);
    let earlier = contract::snapshot_of(&session, &events[..1]);
    let later = contract::snapshot_of(&session, &events);
    store.put(&earlier).await.expect("put earlier");
    let done = std::sync::atomic::AtomicBool::new(false);
    let write = async {
        store.put(&later).await.expect("put later");
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let read = async {
        let (mut old, mut new) = (0, 0);
        loop {
            let finished = done.load(std::sync::atomic::Ordering::SeqCst);
            match store.latest(&session).await {
                Ok(Some(s)) if s == earlier => old += 1,
                Ok(Some(s)) if s == later => new += 1,
                other => panic!("a read racing the put got {other:?}"),
            }
            if finished {
                return (old, new);
            }
        }
    };
    let ((), (old, new)) = futures::join!(write, read);
    println!("reads racing the put: {old} saw the previous snapshot, {new} the new one");
    assert!(new >= 1, "the read after the put sees it");
}

/// Puts of one `(sessionId, upToSequence)` with different JSON (two compactions with other
/// `createdAt`s) racing each other never mix their pieces: the latest is one of them exactly,
/// and only its pieces remain.
#[tokio::test]
async fn mongo_racing_puts_of_one_snapshot_never_mix() {
    let Some(stores) = mongo().await else { return };
    let (Some(other), store) = (
        mongo().await,
        stores.snapshots().with_chunk_bytes(SMALL_CHUNK),
    ) else {
        return;
    };
    let rival = other.snapshots().with_chunk_bytes(SMALL_CHUNK);
    for _ in 0..5 {
        let session = contract::unique_session();
        let a = contract::snapshot_of(&session, &contract::large_fight(&session, 100 * 1024));
        let b = Snapshot {
            created_at: a.created_at + 1,
            ..a.clone()
        };
        let (put_a, put_b) = futures::join!(store.put(&a), rival.put(&b));
        put_a.expect("put a");
        put_b.expect("put b");
        let latest = store
            .latest(&session)
            .await
            .expect("latest")
            .expect("stored");
        assert!(latest == a || latest == b, "a mix of two puts: {latest:?}");
        let pieces = serde_json::to_string(&latest)
            .expect("json")
            .len()
            .div_ceil(SMALL_CHUNK) as u64;
        let stored = pieces_of(&stores, &latest).await;
        assert!(
            (pieces..=pieces + 1).contains(&stored),
            "{stored} pieces stored for {pieces} of the latest"
        );
    }
}
