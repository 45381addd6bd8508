//! Contract bodies: each takes a factory for a fresh adapter and checks the port's rules.

pub mod archive;
pub mod campaign;
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
