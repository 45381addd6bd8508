//! The [`SnapshotStore`](dlab_store::SnapshotStore) contract against the memory adapter and
//! MongoDB (nx-27017 in tests).

use dlab_store::mongo::MongoStores;
use dlab_tests::contract::snapshot as contract;

/// The shared MongoDB test server, or `None` when the test should skip.
async fn mongo() -> Option<MongoStores> {
    dlab_tests::contract::test_mongo("dlab_ct_snapshot").await
}

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
    };
}

against_both!(
    latest_is_the_highest_and_round_trips,
    put_is_idempotent,
    a_stored_snapshot_resumes_the_fold,
);
