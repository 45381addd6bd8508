//! The composition root's product: every port, the authenticator and the settings, built once
//! per cold start and shared by every invocation.

use std::sync::Arc;

use dlab_store::memory::{
    MemoryCampaignStore, MemoryConnectionRegistry, MemoryEventArchive, MemoryEventLog,
    MemoryNotifier, MemoryRateLimiter, MemorySnapshotStore,
};
use dlab_store::{
    CampaignStore, ConnectionRegistry, EventArchive, EventLog, Notifier, RateLimiter,
    SnapshotStore, StoreError,
};

use crate::auth::Authenticator;
use crate::config::{Config, Settings};

/// Everything a use case needs.
#[derive(Clone)]
pub struct Deps {
    /// Hot log and live state.
    pub log: Arc<dyn EventLog>,
    /// Durable archive.
    pub archive: Arc<dyn EventArchive>,
    /// Campaigns, actors, compendium, sessions.
    pub campaigns: Arc<dyn CampaignStore>,
    /// Snapshots.
    pub snapshots: Arc<dyn SnapshotStore>,
    /// Connections and subscriptions.
    pub registry: Arc<dyn ConnectionRegistry>,
    /// Shared rate limiter.
    pub limiter: Arc<dyn RateLimiter>,
    /// Posts to connections.
    pub notifier: Arc<dyn Notifier>,
    /// Token verification.
    pub auth: Authenticator,
    /// Limits and timeouts.
    pub settings: Settings,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Deps {
    /// Every port in memory (the embedded default of a local run, and tests), with the given
    /// notifier.
    pub fn memory(auth: Authenticator, settings: Settings, notifier: Arc<dyn Notifier>) -> Self {
        Self {
            log: Arc::new(MemoryEventLog::new()),
            archive: Arc::new(MemoryEventArchive::new()),
            campaigns: Arc::new(MemoryCampaignStore::new()),
            snapshots: Arc::new(MemorySnapshotStore::new()),
            registry: Arc::new(MemoryConnectionRegistry::new()),
            limiter: Arc::new(MemoryRateLimiter::new()),
            notifier,
            auth,
            settings,
        }
    }

    /// Every port in memory with an in-process notifier (tests).
    pub fn memory_with_channels(auth: Authenticator, settings: Settings) -> (Self, MemoryNotifier) {
        let notifier = MemoryNotifier::new();
        (
            Self::memory(auth, settings, Arc::new(notifier.clone())),
            notifier,
        )
    }

    /// The real backends named by the configuration (Lambda). `notifier` is built by the edge,
    /// which knows the management endpoint.
    pub async fn from_config(
        config: &Config,
        notifier: Arc<dyn Notifier>,
    ) -> Result<Self, StoreError> {
        let redis = dlab_store::redis::RedisConfig::new(&config.redis_url)
            .connect()
            .await?;
        let mongo = dlab_store::mongo::MongoStores::connect(&config.mongo).await?;
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let dynamo = aws_sdk_dynamodb::Client::new(&aws);
        Ok(Self {
            log: Arc::new(dlab_store::redis::RedisEventLog::new(redis.clone())),
            archive: Arc::new(mongo.archive()),
            campaigns: Arc::new(mongo.campaigns()),
            snapshots: Arc::new(mongo.snapshots()),
            registry: Arc::new(dlab_store::dynamo::DynamoConnectionRegistry::new(
                dynamo,
                config.connections_table.clone(),
            )),
            limiter: Arc::new(dlab_store::redis::RedisRateLimiter::new(redis)),
            notifier,
            auth: Authenticator::new(
                &config.jwt,
                config.settings.ticket_ttl,
                crate::auth::ConnectTokens::TicketsOnly,
            ),
            settings: config.settings.clone(),
        })
    }
}
