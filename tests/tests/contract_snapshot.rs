//! The [`SnapshotStore`](dlab_store::SnapshotStore) contract against the memory adapter and
//! MongoDB (nx-27017 in tests), plus MongoDB's own rules: snapshots larger than a document are
//! stored in pieces, a half-written one is never the latest, damaged pieces are reported, and
//! replaced pieces are removed.

use dlab_core::compaction::Snapshot;
use dlab_store::mongo::{MongoConfig, MongoStores, SNAPSHOT_CHUNKS, SNAPSHOTS};
use dlab_store::{SnapshotStore, StoreError};
use dlab_tests::contract::snapshot as contract;
use mongodb::bson::{Document, doc};

/// The shared MongoDB test server, or `None` when the test should skip.
async fn mongo() -> Option<MongoStores> {
    dlab_tests::contract::test_mongo("dlab_ct_snapshot").await
}

/// A database of its own for a body that reads a lot: nx-27017 answers the pieces' queries by
/// scanning the collection, so the other bodies' pieces would slow it down.
async fn own_database() -> Option<MongoStores> {
    dlab_tests::contract::fresh_mongo("dlab_ct_snapshot_own").await
}

/// Another client (its own connection pool, as another Lambda instance has) of `stores`'
/// database.
async fn another_client(stores: &MongoStores) -> MongoStores {
    let mut config = MongoConfig::new(dlab_tests::servers::Server::Mongo.url());
    config.database = stores.database().name().to_owned();
    MongoStores::open(&config).await.expect("open")
}

/// Pieces small enough that the contract's large snapshot needs dozens of them.
const SMALL_CHUNK: usize = 4096;

use dlab_tests::contract::{test_sqlite as sqlite, test_sqlite_again as sqlite_again};

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
        mod sqlite {
            $(
                #[tokio::test]
                async fn $body() {
                    let (_dir, stores) = super::sqlite().await;
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

/// A piece lost, or a piece whose text changed (still valid JSON of the same length), under a
/// complete document is reported as corrupt, never reassembled into another state.
#[tokio::test]
async fn mongo_damaged_pieces_are_corrupt() {
    let Some(stores) = mongo().await else { return };
    let store = stores.snapshots().with_chunk_bytes(SMALL_CHUNK);
    let chunks = collection(&stores, SNAPSHOT_CHUNKS);

    let lost = contract::unique_session();
    store
        .put(&contract::snapshot_of(
            &lost,
            &contract::large_fight(&lost, 100 * 1024),
        ))
        .await
        .expect("put");
    let removed = chunks
        .delete_one(doc! {"sessionId": lost.as_str(), "n": 3_i64})
        .await
        .expect("remove a piece");
    assert_eq!(removed.deleted_count, 1);
    match store.latest(&lost).await {
        Err(StoreError::Corrupt { .. }) => {}
        other => panic!("a missing piece: expected a corrupt snapshot, got {other:?}"),
    }

    let changed = contract::unique_session();
    store
        .put(&contract::snapshot_of(
            &changed,
            &contract::large_fight(&changed, 100 * 1024),
        ))
        .await
        .expect("put");
    let piece = chunks
        .find_one(doc! {"sessionId": changed.as_str(), "n": 5_i64})
        .await
        .expect("read a piece")
        .expect("piece 5");
    let data = piece.get_str("data").expect("data");
    assert!(data.contains("☠x"), "the piece holds notes");
    let edited = chunks
        .update_one(
            doc! {"_id": piece.get("_id").cloned().expect("_id")},
            doc! {"$set": {"data": data.replacen("☠x", "☠y", 1)}},
        )
        .await
        .expect("edit a piece");
    assert_eq!(edited.modified_count, 1);
    match store.latest(&changed).await {
        Err(StoreError::Corrupt { .. }) => {}
        other => panic!("an edited piece: expected a corrupt snapshot, got {other:?}"),
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
/// and read back exactly. In a database of its own: nx-27017 answers these queries by scanning
/// the collection, and 17 MB of pieces would slow every other body's reads.
#[tokio::test]
async fn mongo_a_snapshot_larger_than_a_document_round_trips() {
    let Some(stores) = dlab_tests::contract::fresh_mongo("dlab_ct_snapshot_large").await else {
        return;
    };
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

/// A pause of 0 to 7 ms, different for each call, so racing writers start in varying orders.
async fn jitter() {
    let ms = u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 8);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// Puts of one `(sessionId, upToSequence)` with different JSON (compactions with other
/// `createdAt`s, from three clients) racing each other never mix their pieces: the latest is
/// one of them exactly, and only its pieces remain.
#[tokio::test]
async fn mongo_racing_puts_of_one_snapshot_never_mix() {
    let Some(own) = own_database().await else {
        return;
    };
    let mut clients = vec![own];
    for _ in 0..2 {
        clients.push(another_client(&clients[0]).await);
    }
    let stores: Vec<_> = clients
        .iter()
        .map(|c| c.snapshots().with_chunk_bytes(SMALL_CHUNK))
        .collect();
    for _ in 0..8 {
        let session = contract::unique_session();
        let first = contract::snapshot_of(&session, &contract::large_fight(&session, 100 * 1024));
        let rivals: Vec<Snapshot> = (0..3)
            .map(|i| Snapshot {
                created_at: first.created_at + i,
                ..first.clone()
            })
            .collect();
        let puts = stores
            .iter()
            .zip(&rivals)
            .map(|(store, snapshot)| async move {
                jitter().await;
                store.put(snapshot).await
            });
        for put in futures::future::join_all(puts).await {
            put.expect("put");
        }
        let latest = stores[0]
            .latest(&session)
            .await
            .expect("latest")
            .expect("stored");
        assert!(rivals.contains(&latest), "a mix of puts: {latest:?}");
        let pieces = serde_json::to_string(&latest)
            .expect("json")
            .len()
            .div_ceil(SMALL_CHUNK) as u64;
        let stored = pieces_of(&clients[0], &latest).await;
        assert!(
            (pieces..=pieces + 1).contains(&stored),
            "{stored} pieces stored for {pieces} of the latest"
        );
    }
}

/// Reads racing puts that replace the same `(sessionId, upToSequence)` (whose old pieces are
/// removed under them) read again and see one of the puts exactly, never an error. Readers on
/// four clients of their own, so some read a document whose pieces are being removed.
#[tokio::test]
async fn mongo_reads_racing_replacing_puts_see_a_whole_snapshot() {
    let Some(stores) = own_database().await else {
        return;
    };
    let mut reader_clients = Vec::new();
    for _ in 0..4 {
        reader_clients.push(another_client(&stores).await);
    }
    let store = stores.snapshots().with_chunk_bytes(1024);
    let session = contract::unique_session();
    let first = contract::snapshot_of(&session, &contract::large_fight(&session, 100 * 1024));
    let versions: Vec<Snapshot> = (0..8)
        .map(|i| Snapshot {
            created_at: first.created_at + i,
            ..first.clone()
        })
        .collect();
    store.put(&versions[0]).await.expect("put");
    let done = std::sync::atomic::AtomicBool::new(false);
    let write = async {
        for version in &versions[1..] {
            store.put(version).await.expect("put");
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let readers = reader_clients.iter().map(|client| {
        let reader = client.snapshots();
        let (done, versions, session) = (&done, &versions, &session);
        async move {
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                match reader.latest(session).await {
                    Ok(Some(s)) if versions.contains(&s) => reads += 1,
                    other => panic!("a read racing replacing puts got {other:?}"),
                }
                jitter().await;
            }
            reads
        }
    });
    let ((), reads) = futures::join!(write, futures::future::join_all(readers));
    println!("{reads:?} reads raced 7 replacing puts");
    assert_eq!(
        stores.snapshots().latest(&session).await.expect("latest"),
        versions.last().cloned()
    );
}

/// A put replacing the latest snapshot is one statement: reads racing it (on another handle,
/// as another process would read) see the previous snapshot or the new one, never an error.
#[tokio::test]
async fn sqlite_reads_racing_a_put_see_the_old_or_the_new_snapshot() {
    let (_dir, stores) = sqlite().await;
    let reader_stores = sqlite_again(&stores).await;
    let store = stores.snapshots();
    let reader = reader_stores.snapshots();
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
            match reader.latest(&session).await {
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
