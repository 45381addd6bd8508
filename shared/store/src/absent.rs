//! [`Absent`]: the port a process was not built with.
//!
//! Each Lambda links only the adapters its events need (`ws-connect` has the connection
//! registry and no Redis or MongoDB driver at all), yet every use case is written against the
//! same [`Deps`](../../dlab_service/deps/struct.Deps.html) of seven ports. A port the function
//! was not built with is this adapter: every call fails with [`StoreError::NotBuilt`] naming
//! the port (edge: `internal`, and a log line that points at the deployment), never with a
//! silent success that would lose data.

use async_trait::async_trait;
use dlab_core::actor::{Actor, CompendiumEntry};
use dlab_core::compaction::Snapshot;
use dlab_core::event::GameEvent;
use std::time::Duration;

use dlab_core::ids::{
    ActorId, CampaignId, ConflictId, ConnectionId, EventId, Sequence, SessionId, UserId,
};
use dlab_core::state::GameSessionState;
use uuid::Uuid;

use crate::error::{ArchiveError, CommitError, NotifyError, StoreError};
use crate::model::{
    ActorKey, Campaign, CampaignKey, CampaignQuotas, CompendiumPage, CompendiumQuery, ConflictKey,
    ConflictRecord, Connection, GameSession, MemberRole, Page, PageRequest, QuotaError, Resolution,
    SessionKey, Subscription,
};
use crate::ports::{
    Acquire, Admission, CampaignStore, CommitRequest, Committed, ConflictStore, ConnectionRegistry,
    EventArchive, EventLog, LeaseToken, Notifier, PostOutcome, RateLimiter, Rehydration, Rejection,
    SnapshotStore, Trimmed,
};

/// A port this process was not built with; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct Absent {
    /// The port's name, for the error (`event log`, `archive`, …).
    pub port: &'static str,
}

impl Absent {
    /// The adapter standing in for `port`.
    pub const fn new(port: &'static str) -> Self {
        Self { port }
    }

    fn err(&self) -> StoreError {
        tracing::error!(
            port = self.port,
            "a port this function was not built with was called"
        );
        StoreError::NotBuilt { port: self.port }
    }
}

#[async_trait]
impl EventLog for Absent {
    async fn init_session(&self, _: &SessionId) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn commit(&self, _: CommitRequest) -> Result<Committed, CommitError> {
        Err(self.err().into())
    }
    async fn read(
        &self,
        _: &SessionId,
        _: Sequence,
        _: Option<Sequence>,
        _: usize,
    ) -> Result<Vec<GameEvent>, StoreError> {
        Err(self.err())
    }
    async fn head(&self, _: &SessionId) -> Result<Sequence, StoreError> {
        Err(self.err())
    }
    async fn set_audience(&self, _: &SessionId, _: u64) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn floor(&self, _: &SessionId) -> Result<Sequence, StoreError> {
        Err(self.err())
    }
    async fn trim_below(&self, _: &SessionId, _: Sequence) -> Result<Trimmed, StoreError> {
        Err(self.err())
    }
    async fn state(&self, _: &SessionId) -> Result<Option<GameSessionState>, StoreError> {
        Err(self.err())
    }
    async fn rehydrate(
        &self,
        _: &GameSessionState,
        _: &[GameEvent],
        _: &[(EventId, Sequence, String)],
    ) -> Result<Rehydration, StoreError> {
        Err(self.err())
    }
    async fn release(&self, _: &SessionId) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn release_if_head(&self, _: &SessionId, _: Sequence) -> Result<bool, StoreError> {
        Err(self.err())
    }
    async fn end_session(&self, _: &SessionId) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn try_lease(
        &self,
        _: &SessionId,
        _: Duration,
    ) -> Result<Option<LeaseToken>, StoreError> {
        Err(self.err())
    }
    async fn release_lease(&self, _: &SessionId, _: &LeaseToken) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn remember_rejection(&self, _: &Rejection, _: Duration) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn rejection(&self, _: &SessionId, _: &EventId) -> Result<Option<Rejection>, StoreError> {
        Err(self.err())
    }
    async fn mark_unarchived(&self, _: &SessionId) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn unarchived(&self, _: usize) -> Result<Vec<SessionId>, StoreError> {
        Err(self.err())
    }
    async fn clear_unarchived(&self, _: &SessionId) -> Result<(), StoreError> {
        Err(self.err())
    }
}

#[async_trait]
impl EventArchive for Absent {
    async fn insert(&self, _: &GameEvent) -> Result<(), ArchiveError> {
        Err(self.err().into())
    }
    async fn read(
        &self,
        _: &SessionId,
        _: Sequence,
        _: Option<Sequence>,
        _: usize,
    ) -> Result<Vec<GameEvent>, ArchiveError> {
        Err(self.err().into())
    }
    async fn archived_through(&self, _: &SessionId) -> Result<Sequence, ArchiveError> {
        Err(self.err().into())
    }
    async fn ids(&self, _: &SessionId) -> Result<Vec<(EventId, Sequence, String)>, ArchiveError> {
        Err(self.err().into())
    }
    async fn touch(&self, _: &SessionId, _: u64) -> Result<(), ArchiveError> {
        Err(self.err().into())
    }
    async fn active_since(
        &self,
        _: u64,
        _: Option<&SessionId>,
        _: usize,
    ) -> Result<Vec<SessionId>, ArchiveError> {
        Err(self.err().into())
    }
    async fn idle_hot(&self, _: u64, _: usize) -> Result<Vec<SessionId>, ArchiveError> {
        Err(self.err().into())
    }
    async fn set_hot(&self, _: &SessionId, _: bool) -> Result<(), ArchiveError> {
        Err(self.err().into())
    }
    async fn prune(&self, _: &SessionId, _: Sequence, _: u64) -> Result<u64, ArchiveError> {
        Err(self.err().into())
    }
    async fn pruned_through(&self, _: &SessionId) -> Result<Sequence, ArchiveError> {
        Err(self.err().into())
    }
}

#[async_trait]
impl ConflictStore for Absent {
    async fn create(&self, _: &ConflictRecord) -> Result<bool, StoreError> {
        Err(self.err())
    }
    async fn get(
        &self,
        _: &SessionId,
        _: &ConflictId,
    ) -> Result<Option<ConflictRecord>, StoreError> {
        Err(self.err())
    }
    async fn list(
        &self,
        _: &SessionId,
        _: &PageRequest<ConflictKey>,
    ) -> Result<Page<ConflictRecord, ConflictKey>, StoreError> {
        Err(self.err())
    }
    async fn resolve(
        &self,
        _: &SessionId,
        _: &ConflictId,
        _: &Resolution,
    ) -> Result<Option<ConflictRecord>, StoreError> {
        Err(self.err())
    }
}

#[async_trait]
impl CampaignStore for Absent {
    async fn create_campaign(&self, _: &Campaign) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn campaign(&self, _: &CampaignId) -> Result<Option<Campaign>, StoreError> {
        Err(self.err())
    }
    async fn campaigns_of(
        &self,
        _: &UserId,
        _: &PageRequest<CampaignKey>,
    ) -> Result<Page<Campaign, CampaignKey>, StoreError> {
        Err(self.err())
    }
    async fn put_member(
        &self,
        _: &CampaignId,
        _: &UserId,
        _: MemberRole,
    ) -> Result<Option<Campaign>, StoreError> {
        Err(self.err())
    }
    async fn remove_member(&self, _: &CampaignId, _: &UserId) -> Result<bool, StoreError> {
        Err(self.err())
    }
    async fn create_actor(&self, _: &Actor, _: &CampaignQuotas) -> Result<(), QuotaError> {
        Err(self.err().into())
    }
    async fn create_actors(&self, _: &[Actor], _: &CampaignQuotas) -> Result<(), QuotaError> {
        Err(self.err().into())
    }
    async fn actor(&self, _: &CampaignId, _: &ActorId) -> Result<Option<Actor>, StoreError> {
        Err(self.err())
    }
    async fn actors(
        &self,
        _: &CampaignId,
        _: &PageRequest<ActorKey>,
    ) -> Result<Page<Actor, ActorKey>, StoreError> {
        Err(self.err())
    }
    async fn update_actor(&self, _: &Actor, _: &CampaignQuotas) -> Result<bool, QuotaError> {
        Err(self.err().into())
    }
    async fn delete_actor(&self, _: &CampaignId, _: &ActorId) -> Result<bool, StoreError> {
        Err(self.err())
    }
    async fn put_compendium(&self, _: &[CompendiumEntry]) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn compendium_entry(&self, _: &str) -> Result<Option<CompendiumEntry>, StoreError> {
        Err(self.err())
    }
    async fn search_compendium(&self, _: &CompendiumQuery) -> Result<CompendiumPage, StoreError> {
        Err(self.err())
    }
    async fn create_session(&self, _: &GameSession, _: &CampaignQuotas) -> Result<(), QuotaError> {
        Err(self.err().into())
    }
    async fn session(&self, _: &SessionId) -> Result<Option<GameSession>, StoreError> {
        Err(self.err())
    }
    async fn sessions(
        &self,
        _: &CampaignId,
        _: &PageRequest<SessionKey>,
    ) -> Result<Page<GameSession, SessionKey>, StoreError> {
        Err(self.err())
    }
    async fn update_session(&self, _: &GameSession) -> Result<bool, StoreError> {
        Err(self.err())
    }
}

#[async_trait]
impl SnapshotStore for Absent {
    async fn put(&self, _: &Snapshot) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn latest(&self, _: &SessionId) -> Result<Option<Snapshot>, StoreError> {
        Err(self.err())
    }
}

#[async_trait]
impl ConnectionRegistry for Absent {
    async fn add_connection(&self, _: &Connection, _: usize) -> Result<Admission, StoreError> {
        Err(self.err())
    }
    async fn claim_ticket(&self, _: Uuid, _: u64) -> Result<bool, StoreError> {
        Err(self.err())
    }
    async fn connection(&self, _: &ConnectionId) -> Result<Option<Connection>, StoreError> {
        Err(self.err())
    }
    async fn subscribe(&self, _: &Subscription) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn unsubscribe(&self, _: &ConnectionId, _: &SessionId) -> Result<bool, StoreError> {
        Err(self.err())
    }
    async fn is_subscribed(&self, _: &ConnectionId, _: &SessionId) -> Result<bool, StoreError> {
        Err(self.err())
    }
    async fn subscriptions_of(&self, _: &ConnectionId) -> Result<Vec<SessionId>, StoreError> {
        Err(self.err())
    }
    async fn session_connections(&self, _: &SessionId) -> Result<Vec<Subscription>, StoreError> {
        Err(self.err())
    }
    async fn remove_connection(&self, _: &ConnectionId) -> Result<Vec<Subscription>, StoreError> {
        Err(self.err())
    }
    async fn remove_user_subscriptions(
        &self,
        _: &UserId,
        _: &[SessionId],
    ) -> Result<Vec<Subscription>, StoreError> {
        Err(self.err())
    }
}

#[async_trait]
impl RateLimiter for Absent {
    async fn try_acquire(&self, _: &str, _: f64, _: u32) -> Result<Acquire, StoreError> {
        Err(self.err())
    }
}

#[async_trait]
impl Notifier for Absent {
    async fn post(&self, _: &ConnectionId, _: &[u8]) -> Result<PostOutcome, NotifyError> {
        Err(NotifyError::Failed(Box::new(self.err())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_call_names_the_missing_port_and_is_internal() {
        let log = Absent::new("event log");
        let err = log.head(&SessionId::new("s")).await.unwrap_err();
        assert!(matches!(err, StoreError::NotBuilt { port: "event log" }));
        assert_eq!(err.code(), dlab_core::codes::ErrorCode::Internal);
        assert!(err.to_string().contains("event log"), "{err}");
        let registry = Absent::new("connection registry");
        assert!(registry.connection(&ConnectionId::new("c")).await.is_err());
    }
}
