//! The SRD 5.1 import (`dlab_store::srd`) into memory and into MongoDB (nx-27017), and the
//! compendium filters over the imported data. Needs the package: `DLAB_SRD_PACKAGE` (see
//! `dlab_tests::srd_cases`); required under `DLAB_TEST_SERVERS=1`.

use dlab_store::memory::MemoryCampaignStore;
use dlab_tests::contract::fresh_mongo;
use dlab_tests::http_cases::{memory_world, real_world};
use dlab_tests::srd_cases::{
    check_actor_from_srd_goblin, check_filters, check_goblin, check_http_filters,
    check_name_search, imported, package,
};

#[tokio::test]
async fn memory_import_is_complete_idempotent_and_attributed() {
    let Some(package) = package() else { return };
    let store = MemoryCampaignStore::new();
    imported(&package, &store).await;
    check_name_search(&store).await;
}

#[tokio::test]
async fn memory_goblin_is_mapped() {
    let Some(package) = package() else { return };
    let store = MemoryCampaignStore::new();
    imported(&package, &store).await;
    check_goblin(&store).await;
}

#[tokio::test]
async fn memory_filters_find_goblin_and_fireball() {
    let Some(package) = package() else { return };
    let store = MemoryCampaignStore::new();
    imported(&package, &store).await;
    check_filters(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_filters_over_the_srd_on_memory() {
    let Some(package) = package() else { return };
    let world = memory_world();
    imported(&package, world.deps.campaigns.as_ref()).await;
    check_http_filters(&world).await;
    check_actor_from_srd_goblin(&world).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_import_is_complete_idempotent_and_attributed() {
    let Some(package) = package() else { return };
    let Some(mongo) = fresh_mongo("dlab_srd").await else {
        return;
    };
    let store = mongo.campaigns();
    imported(&package, &store).await;
    check_name_search(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_goblin_is_mapped_and_filters_work() {
    let Some(package) = package() else { return };
    let Some(world) = real_world().await else {
        return;
    };
    imported(&package, world.deps.campaigns.as_ref()).await;
    check_goblin(world.deps.campaigns.as_ref()).await;
    check_filters(world.deps.campaigns.as_ref()).await;
    check_http_filters(&world).await;
    check_actor_from_srd_goblin(&world).await;
}

/// The embedded default's store: the whole import and every check, on a fresh SQLite file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_import_is_complete_idempotent_attributed_and_searchable() {
    let Some(package) = package() else { return };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let stores = dlab_store::sqlite::SqliteStores::open(&dir.path().join("dlab.sqlite3"))
        .await
        .expect("open SQLite");
    let store = stores.campaigns();
    imported(&package, &store).await;
    check_name_search(&store).await;
    check_goblin(&store).await;
    check_filters(&store).await;
}

/// The attribution the server answers by default is the package's own sentence.
#[test]
fn the_default_attribution_is_the_packages() {
    let Some(package) = package() else { return };
    assert_eq!(
        package.attribution(),
        dlab_core::srd::ATTRIBUTION,
        "the SRD package changed its attribution: update dlab_core::srd::ATTRIBUTION and NOTICE"
    );
    assert_eq!(
        dlab_service::http::DEFAULT_ATTRIBUTION,
        dlab_core::srd::ATTRIBUTION
    );
}
