//! The [`CampaignStore`](dlab_store::CampaignStore) contract against the memory adapter and
//! MongoDB (nx-27017 in tests), plus the MongoDB rule that the archive's `archivedThrough`,
//! kept on the session document, survives session writes.

use dlab_store::mongo::MongoStores;
use dlab_tests::contract::campaign as contract;

/// The shared MongoDB test server, or `None` when the test should skip.
async fn mongo() -> Option<MongoStores> {
    dlab_tests::contract::test_mongo("dlab_ct_campaign").await
}

macro_rules! against_both {
    ($($body:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $body() {
                    super::contract::$body(&dlab_store::memory::MemoryCampaignStore::new()).await;
                }
            )*
        }
        mod mongo {
            $(
                #[tokio::test]
                async fn $body() {
                    let Some(stores) = super::mongo().await else { return };
                    super::contract::$body(&stores.campaigns()).await;
                }
            )*
        }
    };
}

against_both!(
    campaigns_and_membership,
    actors_round_trip_exactly,
    compendium_lookup_and_search,
    compendium_pages_by_cursor,
    sessions_newest_first_and_updated,
);

#[tokio::test]
async fn mongo_archive_progress_survives_session_writes() {
    let Some(stores) = mongo().await else { return };
    contract::archive_progress_survives_session_writes(&stores.campaigns(), &stores.archive())
        .await;
}

#[tokio::test]
async fn memory_concurrent_member_changes_are_all_kept() {
    let store = dlab_store::memory::MemoryCampaignStore::new();
    contract::concurrent_member_changes_are_all_kept(&store, &store).await;
}

/// Two clients, as two Lambda instances would have.
#[tokio::test]
async fn mongo_concurrent_member_changes_are_all_kept() {
    let (Some(a), Some(b)) = (mongo().await, mongo().await) else {
        return;
    };
    contract::concurrent_member_changes_are_all_kept(&a.campaigns(), &b.campaigns()).await;
}
