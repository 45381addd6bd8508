//! The composition root's product: every port, the authenticator and the settings, built once
//! per cold start and shared by every invocation.

use std::sync::Arc;

use dlab_store::absent::Absent;
use dlab_store::memory::{
    MemoryCampaignStore, MemoryConflictStore, MemoryConnectionRegistry, MemoryEventArchive,
    MemoryEventLog, MemoryNotifier, MemoryRateLimiter, MemorySnapshotStore,
};
use dlab_store::{
    CampaignStore, ConflictStore, ConnectionRegistry, EventArchive, EventLog, Notifier,
    RateLimiter, SnapshotStore, StoreError,
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
    /// The GM's conflict report.
    pub conflicts: Arc<dyn ConflictStore>,
    /// Posts to connections.
    pub notifier: Arc<dyn Notifier>,
    /// Token verification.
    pub auth: Authenticator,
    /// Limits and timeouts.
    pub settings: Settings,
    /// When this process last noted each session's activity in the archive index.
    pub activity: Arc<crate::pipeline::ActivityCache>,
    /// Each session's connections as last read, under their audience token.
    pub audiences: Arc<crate::audience::AudienceCache>,
    /// Serializes a session's commit with its archive write under
    /// [`crate::config::ArchiveMode::ConfirmAfterArchive`].
    pub commit_locks: Arc<crate::pipeline::CommitLocks>,
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
            conflicts: Arc::new(MemoryConflictStore::new()),
            notifier,
            auth,
            settings,
            activity: Default::default(),
            audiences: Default::default(),
            commit_locks: Default::default(),
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

    /// The real backends named by the configuration (a Lambda's cold start), built without
    /// contacting any of them: Redis connects on first use, the MongoDB and AWS clients are
    /// lazy by nature, and no index is created here (that is the `migrate` step). So a
    /// function starts while a backend it does not need for this event is down. Ports this
    /// build has no feature for are [`Absent`]; `notifier` is built by the edge, which knows
    /// the management endpoint.
    pub async fn from_config(
        config: &Config,
        aws: &aws_config::SdkConfig,
        notifier: Arc<dyn Notifier>,
    ) -> Result<Self, StoreError> {
        let _ = aws;
        let mut deps = Self {
            log: Arc::new(Absent::new("event log")),
            archive: Arc::new(Absent::new("archive")),
            campaigns: Arc::new(Absent::new("campaign store")),
            snapshots: Arc::new(Absent::new("snapshot store")),
            registry: Arc::new(Absent::new("connection registry")),
            limiter: Arc::new(Absent::new("rate limiter")),
            conflicts: Arc::new(Absent::new("conflict store")),
            notifier,
            auth: match &config.jwt {
                Some(jwt) => Authenticator::new(
                    jwt,
                    config.settings.ticket_ttl,
                    crate::auth::ConnectTokens::TicketsOnly,
                ),
                None => Authenticator::unusable(),
            },
            settings: config.settings.clone(),
            activity: Default::default(),
            audiences: Default::default(),
            commit_locks: Default::default(),
        };
        #[cfg(feature = "redis")]
        {
            let redis = dlab_store::redis::RedisHandle::lazy(config.redis.clone());
            deps.log = Arc::new(dlab_store::redis::RedisEventLog::new(redis.clone()));
            deps.limiter = Arc::new(dlab_store::redis::RedisRateLimiter::new(redis));
        }
        #[cfg(feature = "mongo")]
        {
            let mongo = dlab_store::mongo::MongoStores::open(&config.mongo).await?;
            deps.archive = Arc::new(mongo.archive());
            deps.campaigns = Arc::new(mongo.campaigns());
            deps.snapshots = Arc::new(mongo.snapshots());
            deps.conflicts = Arc::new(mongo.conflicts());
        }
        #[cfg(feature = "dynamo")]
        {
            deps.registry = Arc::new(dlab_store::dynamo::DynamoConnectionRegistry::new(
                aws_sdk_dynamodb::Client::new(aws),
                config.connections_table.clone(),
            ));
        }
        Ok(deps)
    }
}
