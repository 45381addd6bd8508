//! Contract bodies: each takes a factory for a fresh adapter and checks the port's rules.

pub mod archive;
pub mod campaign;
pub mod conflicts;
pub mod event_log;
pub mod notifier;
pub mod rate_limiter;
pub mod registry;
pub mod snapshot;

/// The shared MongoDB test server with one database per test binary (named `<prefix>_<uuid>`;
/// bodies use their own ids inside it), or `None` (after saying why) when the test should skip.
pub async fn test_mongo(prefix: &str) -> Option<dlab_store::mongo::MongoStores> {
    use crate::servers::{Server, require};
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if !require(Server::Mongo) {
        return None;
    }
    let mut config = dlab_store::mongo::MongoConfig::new(Server::Mongo.url());
    config.database = NAME
        .get_or_init(|| format!("{prefix}_{}", uuid::Uuid::new_v4().simple()))
        .clone();
    Some(
        dlab_store::mongo::MongoStores::connect(&config)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e:?}", Server::Mongo.name())),
    )
}

/// A MongoDB database of its own (named `<prefix>_<uuid>`, indexes created), for bodies that
/// list across sessions and so must not see other bodies' data; `None` when the test should skip.
pub async fn fresh_mongo(prefix: &str) -> Option<dlab_store::mongo::MongoStores> {
    use crate::servers::{Server, require};
    if !require(Server::Mongo) {
        return None;
    }
    let mut config = dlab_store::mongo::MongoConfig::new(Server::Mongo.url());
    config.database = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    Some(
        dlab_store::mongo::MongoStores::connect(&config)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e:?}", Server::Mongo.name())),
    )
}

/// Whether an index's keys name the same fields as `wanted`, in the same order. Directions are
/// not compared: nx-27017 reports every key of a listed index as ascending, and the order of
/// the fields is what decides which queries an index serves by range.
pub fn same_index_fields(keys: &mongodb::bson::Document, wanted: &mongodb::bson::Document) -> bool {
    keys.keys().eq(wanted.keys())
}

/// A fresh embedded SQLite database in a temporary directory (keep the directory alive for the
/// test): every body runs on its own file.
pub async fn test_sqlite() -> (tempfile::TempDir, dlab_store::sqlite::SqliteStores) {
    let dir = tempfile::tempdir().expect("temp dir");
    let stores = dlab_store::sqlite::SqliteStores::open(&dir.path().join("dlab.sqlite3"))
        .await
        .expect("open sqlite");
    (dir, stores)
}

/// A second handle on the same file, as a second process (or Lambda instance) would have.
pub async fn test_sqlite_again(
    stores: &dlab_store::sqlite::SqliteStores,
) -> dlab_store::sqlite::SqliteStores {
    dlab_store::sqlite::SqliteStores::open(stores.path())
        .await
        .expect("open sqlite again")
}
