//! The [`CampaignStore`](dlab_store::CampaignStore) contract against the memory adapter and
//! MongoDB (nx-27017 in tests), plus the MongoDB rule that the archive's `archivedThrough`,
//! kept on the session document, survives session writes.

use dlab_store::mongo::MongoStores;
use dlab_tests::contract::campaign as contract;

/// The shared MongoDB test server, or `None` when the test should skip.
async fn mongo() -> Option<MongoStores> {
    dlab_tests::contract::test_mongo("dlab_ct_campaign").await
}

use dlab_tests::contract::{test_sqlite as sqlite, test_sqlite_again as sqlite_again};

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
        mod sqlite {
            $(
                #[tokio::test]
                async fn $body() {
                    let (_dir, stores) = super::sqlite().await;
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
    compendium_filters_by_challenge_rating_and_level,
    compendium_pages_by_cursor,
    sessions_newest_first_and_updated,
    campaigns_page_by_id,
    actors_page_by_name_then_id,
    sessions_page_newest_first,
    compendium_pages_by_bytes,
    actor_size_quota,
    create_actors_is_all_or_nothing,
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

#[tokio::test]
async fn memory_actor_count_quota_holds_under_concurrency() {
    let store = dlab_store::memory::MemoryCampaignStore::new();
    contract::actor_count_quota_holds_under_concurrency(&store, &store).await;
}

/// Two clients, as two Lambda instances would have.
#[tokio::test]
async fn mongo_actor_count_quota_holds_under_concurrency() {
    let (Some(a), Some(b)) = (mongo().await, mongo().await) else {
        return;
    };
    contract::actor_count_quota_holds_under_concurrency(&a.campaigns(), &b.campaigns()).await;
}

#[tokio::test]
async fn memory_session_count_quota_holds_under_concurrency() {
    let store = dlab_store::memory::MemoryCampaignStore::new();
    contract::session_count_quota_holds_under_concurrency(&store, &store).await;
}

/// Two clients, as two Lambda instances would have.
#[tokio::test]
async fn mongo_session_count_quota_holds_under_concurrency() {
    let (Some(a), Some(b)) = (mongo().await, mongo().await) else {
        return;
    };
    contract::session_count_quota_holds_under_concurrency(&a.campaigns(), &b.campaigns()).await;
}

/// A campaign stored before the quota counters existed gets its counters from a count of what
/// it holds, so its quota still holds.
#[tokio::test]
async fn mongo_a_campaign_without_counters_is_counted() {
    use dlab_store::CampaignStore;
    use dlab_store::model::{CampaignQuotas, PageRequest, Quota, QuotaError};
    let Some(stores) = mongo().await else { return };
    let store = stores.campaigns();
    let campaign = contract::new_campaign(&store).await;
    let quotas = CampaignQuotas {
        max_actors: 3,
        max_sessions: 1,
        ..CampaignQuotas::default()
    };
    for name in ["A", "B"] {
        store
            .create_actor(&contract::awkward_actor(&campaign, name), &quotas)
            .await
            .expect("create");
    }
    store
        .create_session(
            &contract::session(
                &dlab_core::ids::SessionId::new(uuid::Uuid::new_v4().to_string()),
                &campaign,
                1,
            ),
            &quotas,
        )
        .await
        .expect("create");
    stores
        .database()
        .collection::<mongodb::bson::Document>(dlab_store::mongo::CAMPAIGNS)
        .update_one(
            mongodb::bson::doc! {"_id": campaign.as_str()},
            mongodb::bson::doc! {"$unset": {"actorCount": "", "sessionCount": ""}},
        )
        .await
        .expect("drop the counters");
    store
        .create_actor(&contract::awkward_actor(&campaign, "C"), &quotas)
        .await
        .expect("the third actor fits");
    for result in [
        store
            .create_actor(&contract::awkward_actor(&campaign, "D"), &quotas)
            .await,
        store
            .create_session(
                &contract::session(
                    &dlab_core::ids::SessionId::new(uuid::Uuid::new_v4().to_string()),
                    &campaign,
                    2,
                ),
                &quotas,
            )
            .await,
    ] {
        match result {
            Err(QuotaError::Exceeded { quota, .. }) => {
                assert!(matches!(quota, Quota::Actors | Quota::Sessions))
            }
            other => panic!("expected a quota refusal, got {other:?}"),
        }
    }
    assert_eq!(
        store
            .actors(&campaign, &PageRequest::first(10))
            .await
            .expect("list")
            .items
            .len(),
        3
    );
}

/// The archive and the campaign store share one file (the archive's bookkeeping on the
/// session's row), as MongoDB's share the `sessions` documents.
#[tokio::test]
async fn sqlite_archive_progress_survives_session_writes() {
    let (_dir, stores) = sqlite().await;
    contract::archive_progress_survives_session_writes(&stores.campaigns(), &stores.archive())
        .await;
}

/// Two handles on one file, as two processes would have.
#[tokio::test]
async fn sqlite_concurrent_member_changes_are_all_kept() {
    let (_dir, a) = sqlite().await;
    let b = sqlite_again(&a).await;
    contract::concurrent_member_changes_are_all_kept(&a.campaigns(), &b.campaigns()).await;
}

/// Two handles on one file, as two processes would have.
#[tokio::test]
async fn sqlite_actor_count_quota_holds_under_concurrency() {
    let (_dir, a) = sqlite().await;
    let b = sqlite_again(&a).await;
    contract::actor_count_quota_holds_under_concurrency(&a.campaigns(), &b.campaigns()).await;
}

/// Two handles on one file, as two processes would have.
#[tokio::test]
async fn sqlite_session_count_quota_holds_under_concurrency() {
    let (_dir, a) = sqlite().await;
    let b = sqlite_again(&a).await;
    contract::session_count_quota_holds_under_concurrency(&a.campaigns(), &b.campaigns()).await;
}

/// One handle used concurrently: the quota counts of one batch's jobs see each other's writes.
#[tokio::test]
async fn sqlite_quotas_hold_under_concurrency_on_one_handle() {
    let (_dir, a) = sqlite().await;
    contract::actor_count_quota_holds_under_concurrency(&a.campaigns(), &a.campaigns()).await;
    contract::session_count_quota_holds_under_concurrency(&a.campaigns(), &a.campaigns()).await;
}
