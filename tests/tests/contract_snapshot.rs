//! The [`SnapshotStore`](dlab_store::SnapshotStore) contract against the memory adapter and
//! MongoDB (nx-27017 in tests).

use std::sync::OnceLock;

use dlab_store::mongo::{MongoConfig, MongoStores};
use dlab_tests::contract::snapshot as contract;
use dlab_tests::servers::{Server, require};

/// One database per run of this binary; the bodies use their own session ids inside it.
fn database() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| format!("dlab_ct_snapshot_{}", uuid::Uuid::new_v4().simple()))
}

/// The shared MongoDB test server, or `None` (after saying why) when the test should skip.
async fn mongo() -> Option<MongoStores> {
    if !require(Server::Mongo) {
        return None;
    }
    let mut config = MongoConfig::new(Server::Mongo.url());
    config.database = database().to_owned();
    Some(
        MongoStores::connect(&config)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e:?}", Server::Mongo.name())),
    )
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
