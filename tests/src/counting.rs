//! A counting adapter for every port: wraps a [`Deps`] so that a test can count the store calls
//! one use case makes, per port and per method. Calls are deterministic, so tests may assert
//! exact counts (unlike times); `BENCHMARKS.md` lists the counts of one submit.
//!
//! A port call is one round trip on the real adapters, with two documented exceptions that
//! only apply to large results: `session_connections` reads one DynamoDB page per 1 MB, and
//! `read` on the archive reads one cursor batch per 101 documents.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dlab_core::actor::{Actor, CompendiumEntry};
use dlab_core::compaction::Snapshot;
use dlab_core::event::GameEvent;
use dlab_core::ids::{
    ActorId, CampaignId, ConflictId, ConnectionId, EventId, Sequence, SessionId, UserId,
};
use dlab_core::state::GameSessionState;
use dlab_service::Deps;
use dlab_store::model::{
    ActorKey, Campaign, CampaignKey, CampaignQuotas, CompendiumPage, CompendiumQuery, ConflictKey,
    ConflictRecord, Connection, GameSession, MemberRole, Page, PageRequest, QuotaError, Resolution,
    SessionKey, Subscription,
};
use dlab_store::{
    Acquire, Admission, ArchiveError, CampaignStore, CommitError, CommitRequest, Committed,
    ConflictStore, ConnectionRegistry, EventArchive, EventLog, LeaseToken, RateLimiter,
    Rehydration, Rejection, SnapshotStore, StoreError, Trimmed,
};
use uuid::Uuid;

/// Calls counted so far: (port, method) → calls. Clones share the tally.
#[derive(Debug, Clone, Default)]
pub struct Tally(Arc<Mutex<BTreeMap<(&'static str, &'static str), usize>>>);

impl Tally {
    fn add(&self, port: &'static str, method: &'static str) {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((port, method))
            .or_default() += 1;
    }

    /// Every count so far, and starts again from zero.
    pub fn take(&self) -> BTreeMap<(&'static str, &'static str), usize> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The calls of one port so far, by method, without resetting.
    pub fn of(&self, port: &str) -> BTreeMap<&'static str, usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|((p, _), _)| *p == port)
            .map(|((_, m), n)| (*m, *n))
            .collect()
    }

    /// Starts again from zero.
    pub fn reset(&self) {
        self.take();
    }
}

/// The port names of a [`Tally`].
pub mod port {
    /// The hot log (Redis).
    pub const LOG: &str = "log";
    /// The archive (MongoDB).
    pub const ARCHIVE: &str = "archive";
    /// Campaigns, actors and sessions (MongoDB).
    pub const CAMPAIGNS: &str = "campaigns";
    /// Snapshots (MongoDB).
    pub const SNAPSHOTS: &str = "snapshots";
    /// Connections and subscriptions (DynamoDB).
    pub const REGISTRY: &str = "registry";
    /// Rate limits (Redis).
    pub const LIMITER: &str = "limiter";
    /// The GM conflict report (MongoDB).
    pub const CONFLICTS: &str = "conflicts";
}

/// A port that counts its calls into a [`Tally`] and passes them on.
pub struct Counting<P: ?Sized> {
    inner: Arc<P>,
    port: &'static str,
    tally: Tally,
}

impl<P: ?Sized> Counting<P> {
    fn wrap(inner: Arc<P>, port: &'static str, tally: &Tally) -> Arc<Self> {
        Arc::new(Self {
            inner,
            port,
            tally: tally.clone(),
        })
    }

    fn count(&self, method: &'static str) {
        self.tally.add(self.port, method);
    }
}

/// `deps` with every store port counted into the returned tally (the notifier is not a
/// store: its posts are counted by the caller's notifier).
pub fn counted(deps: &Deps) -> (Deps, Tally) {
    let tally = Tally::default();
    let mut counted = deps.clone();
    counted.log = Counting::wrap(deps.log.clone(), port::LOG, &tally);
    counted.archive = Counting::wrap(deps.archive.clone(), port::ARCHIVE, &tally);
    counted.campaigns = Counting::wrap(deps.campaigns.clone(), port::CAMPAIGNS, &tally);
    counted.snapshots = Counting::wrap(deps.snapshots.clone(), port::SNAPSHOTS, &tally);
    counted.registry = Counting::wrap(deps.registry.clone(), port::REGISTRY, &tally);
    counted.limiter = Counting::wrap(deps.limiter.clone(), port::LIMITER, &tally);
    counted.conflicts = Counting::wrap(deps.conflicts.clone(), port::CONFLICTS, &tally);
    (counted, tally)
}

#[async_trait]
impl<P: EventLog + ?Sized> EventLog for Counting<P> {
    async fn init_session(&self, session: &SessionId) -> Result<(), StoreError> {
        self.count("init_session");
        self.inner.init_session(session).await
    }
    async fn commit(&self, request: CommitRequest) -> Result<Committed, CommitError> {
        self.count("commit");
        self.inner.commit(request).await
    }
    async fn read(
        &self,
        session: &SessionId,
        after: Sequence,
        to: Option<Sequence>,
        limit: usize,
    ) -> Result<Vec<GameEvent>, StoreError> {
        self.count("read");
        self.inner.read(session, after, to, limit).await
    }
    async fn head(&self, session: &SessionId) -> Result<Sequence, StoreError> {
        self.count("head");
        self.inner.head(session).await
    }
    async fn set_audience(&self, session: &SessionId, token: u64) -> Result<(), StoreError> {
        self.count("set_audience");
        self.inner.set_audience(session, token).await
    }
    async fn floor(&self, session: &SessionId) -> Result<Sequence, StoreError> {
        self.count("floor");
        self.inner.floor(session).await
    }
    async fn trim_below(
        &self,
        session: &SessionId,
        sequence: Sequence,
    ) -> Result<Trimmed, StoreError> {
        self.count("trim_below");
        self.inner.trim_below(session, sequence).await
    }
    async fn state(&self, session: &SessionId) -> Result<Option<GameSessionState>, StoreError> {
        self.count("state");
        self.inner.state(session).await
    }
    async fn rehydrate(
        &self,
        state: &GameSessionState,
        events: &[GameEvent],
        ids: &[(EventId, Sequence, String)],
    ) -> Result<Rehydration, StoreError> {
        self.count("rehydrate");
        self.inner.rehydrate(state, events, ids).await
    }
    async fn release(&self, session: &SessionId) -> Result<(), StoreError> {
        self.count("release");
        self.inner.release(session).await
    }
    async fn release_if_head(
        &self,
        session: &SessionId,
        head: Sequence,
    ) -> Result<bool, StoreError> {
        self.count("release_if_head");
        self.inner.release_if_head(session, head).await
    }
    async fn end_session(&self, session: &SessionId) -> Result<(), StoreError> {
        self.count("end_session");
        self.inner.end_session(session).await
    }
    async fn try_lease(
        &self,
        session: &SessionId,
        ttl: Duration,
    ) -> Result<Option<LeaseToken>, StoreError> {
        self.count("try_lease");
        self.inner.try_lease(session, ttl).await
    }
    async fn release_lease(
        &self,
        session: &SessionId,
        token: &LeaseToken,
    ) -> Result<(), StoreError> {
        self.count("release_lease");
        self.inner.release_lease(session, token).await
    }
    async fn remember_rejection(
        &self,
        rejection: &Rejection,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.count("remember_rejection");
        self.inner.remember_rejection(rejection, ttl).await
    }
    async fn rejection(
        &self,
        session: &SessionId,
        id: &EventId,
    ) -> Result<Option<Rejection>, StoreError> {
        self.count("rejection");
        self.inner.rejection(session, id).await
    }
    async fn mark_unarchived(&self, session: &SessionId) -> Result<(), StoreError> {
        self.count("mark_unarchived");
        self.inner.mark_unarchived(session).await
    }
    async fn unarchived(&self, limit: usize) -> Result<Vec<SessionId>, StoreError> {
        self.count("unarchived");
        self.inner.unarchived(limit).await
    }
    async fn clear_unarchived(&self, session: &SessionId) -> Result<(), StoreError> {
        self.count("clear_unarchived");
        self.inner.clear_unarchived(session).await
    }
}

#[async_trait]
impl<P: EventArchive + ?Sized> EventArchive for Counting<P> {
    async fn insert(&self, event: &GameEvent) -> Result<(), ArchiveError> {
        self.count("insert");
        self.inner.insert(event).await
    }
    async fn read(
        &self,
        session: &SessionId,
        after: Sequence,
        to: Option<Sequence>,
        limit: usize,
    ) -> Result<Vec<GameEvent>, ArchiveError> {
        self.count("read");
        self.inner.read(session, after, to, limit).await
    }
    async fn archived_through(&self, session: &SessionId) -> Result<Sequence, ArchiveError> {
        self.count("archived_through");
        self.inner.archived_through(session).await
    }
    async fn ids(
        &self,
        session: &SessionId,
    ) -> Result<Vec<(EventId, Sequence, String)>, ArchiveError> {
        self.count("ids");
        self.inner.ids(session).await
    }
    async fn touch(&self, session: &SessionId, at: u64) -> Result<(), ArchiveError> {
        self.count("touch");
        self.inner.touch(session, at).await
    }
    async fn active_since(
        &self,
        since: u64,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<SessionId>, ArchiveError> {
        self.count("active_since");
        self.inner.active_since(since, after, limit).await
    }
    async fn idle_hot(&self, before: u64, limit: usize) -> Result<Vec<SessionId>, ArchiveError> {
        self.count("idle_hot");
        self.inner.idle_hot(before, limit).await
    }
    async fn set_hot(&self, session: &SessionId, hot: bool) -> Result<(), ArchiveError> {
        self.count("set_hot");
        self.inner.set_hot(session, hot).await
    }
    async fn prune(
        &self,
        session: &SessionId,
        through: Sequence,
        older_than: u64,
    ) -> Result<u64, ArchiveError> {
        self.count("prune");
        self.inner.prune(session, through, older_than).await
    }
    async fn pruned_through(&self, session: &SessionId) -> Result<Sequence, ArchiveError> {
        self.count("pruned_through");
        self.inner.pruned_through(session).await
    }
}

#[async_trait]
impl<P: ConflictStore + ?Sized> ConflictStore for Counting<P> {
    async fn create(&self, conflict: &ConflictRecord) -> Result<bool, StoreError> {
        self.count("create");
        self.inner.create(conflict).await
    }
    async fn get(
        &self,
        session: &SessionId,
        id: &ConflictId,
    ) -> Result<Option<ConflictRecord>, StoreError> {
        self.count("get");
        self.inner.get(session, id).await
    }
    async fn list(
        &self,
        session: &SessionId,
        page: &PageRequest<ConflictKey>,
    ) -> Result<Page<ConflictRecord, ConflictKey>, StoreError> {
        self.count("list");
        self.inner.list(session, page).await
    }
    async fn resolve(
        &self,
        session: &SessionId,
        id: &ConflictId,
        resolution: &Resolution,
    ) -> Result<Option<ConflictRecord>, StoreError> {
        self.count("resolve");
        self.inner.resolve(session, id, resolution).await
    }
}

#[async_trait]
impl<P: CampaignStore + ?Sized> CampaignStore for Counting<P> {
    async fn create_campaign(&self, campaign: &Campaign) -> Result<(), StoreError> {
        self.count("create_campaign");
        self.inner.create_campaign(campaign).await
    }
    async fn campaign(&self, id: &CampaignId) -> Result<Option<Campaign>, StoreError> {
        self.count("campaign");
        self.inner.campaign(id).await
    }
    async fn campaigns_of(
        &self,
        user: &UserId,
        page: &PageRequest<CampaignKey>,
    ) -> Result<Page<Campaign, CampaignKey>, StoreError> {
        self.count("campaigns_of");
        self.inner.campaigns_of(user, page).await
    }
    async fn put_member(
        &self,
        campaign: &CampaignId,
        user: &UserId,
        role: MemberRole,
    ) -> Result<Option<Campaign>, StoreError> {
        self.count("put_member");
        self.inner.put_member(campaign, user, role).await
    }
    async fn remove_member(
        &self,
        campaign: &CampaignId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        self.count("remove_member");
        self.inner.remove_member(campaign, user).await
    }
    async fn create_actor(&self, actor: &Actor, quotas: &CampaignQuotas) -> Result<(), QuotaError> {
        self.count("create_actor");
        self.inner.create_actor(actor, quotas).await
    }
    async fn create_actors(
        &self,
        actors: &[Actor],
        quotas: &CampaignQuotas,
    ) -> Result<(), QuotaError> {
        self.count("create_actors");
        self.inner.create_actors(actors, quotas).await
    }
    async fn actor(
        &self,
        campaign: &CampaignId,
        id: &ActorId,
    ) -> Result<Option<Actor>, StoreError> {
        self.count("actor");
        self.inner.actor(campaign, id).await
    }
    async fn actors(
        &self,
        campaign: &CampaignId,
        page: &PageRequest<ActorKey>,
    ) -> Result<Page<Actor, ActorKey>, StoreError> {
        self.count("actors");
        self.inner.actors(campaign, page).await
    }
    async fn update_actor(
        &self,
        actor: &Actor,
        quotas: &CampaignQuotas,
    ) -> Result<bool, QuotaError> {
        self.count("update_actor");
        self.inner.update_actor(actor, quotas).await
    }
    async fn delete_actor(&self, campaign: &CampaignId, id: &ActorId) -> Result<bool, StoreError> {
        self.count("delete_actor");
        self.inner.delete_actor(campaign, id).await
    }
    async fn put_compendium(&self, entries: &[CompendiumEntry]) -> Result<(), StoreError> {
        self.count("put_compendium");
        self.inner.put_compendium(entries).await
    }
    async fn compendium_entry(
        &self,
        reference: &str,
    ) -> Result<Option<CompendiumEntry>, StoreError> {
        self.count("compendium_entry");
        self.inner.compendium_entry(reference).await
    }
    async fn search_compendium(
        &self,
        query: &CompendiumQuery,
    ) -> Result<CompendiumPage, StoreError> {
        self.count("search_compendium");
        self.inner.search_compendium(query).await
    }
    async fn create_session(
        &self,
        session: &GameSession,
        quotas: &CampaignQuotas,
    ) -> Result<(), QuotaError> {
        self.count("create_session");
        self.inner.create_session(session, quotas).await
    }
    async fn session(&self, id: &SessionId) -> Result<Option<GameSession>, StoreError> {
        self.count("session");
        self.inner.session(id).await
    }
    async fn sessions(
        &self,
        campaign: &CampaignId,
        page: &PageRequest<SessionKey>,
    ) -> Result<Page<GameSession, SessionKey>, StoreError> {
        self.count("sessions");
        self.inner.sessions(campaign, page).await
    }
    async fn update_session(&self, session: &GameSession) -> Result<bool, StoreError> {
        self.count("update_session");
        self.inner.update_session(session).await
    }
}

#[async_trait]
impl<P: SnapshotStore + ?Sized> SnapshotStore for Counting<P> {
    async fn put(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.count("put");
        self.inner.put(snapshot).await
    }
    async fn latest(&self, session: &SessionId) -> Result<Option<Snapshot>, StoreError> {
        self.count("latest");
        self.inner.latest(session).await
    }
}

#[async_trait]
impl<P: ConnectionRegistry + ?Sized> ConnectionRegistry for Counting<P> {
    async fn add_connection(
        &self,
        connection: &Connection,
        limit: usize,
    ) -> Result<Admission, StoreError> {
        self.count("add_connection");
        self.inner.add_connection(connection, limit).await
    }
    async fn put_connection(&self, connection: &Connection) -> Result<(), StoreError> {
        self.count("put_connection");
        self.inner.put_connection(connection).await
    }
    async fn claim_ticket(&self, jti: Uuid, expires_at_ms: u64) -> Result<bool, StoreError> {
        self.count("claim_ticket");
        self.inner.claim_ticket(jti, expires_at_ms).await
    }
    async fn connection(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError> {
        self.count("connection");
        self.inner.connection(id).await
    }
    async fn connection_in(
        &self,
        id: &ConnectionId,
        session: &SessionId,
    ) -> Result<Option<(Connection, bool)>, StoreError> {
        self.count("connection_in");
        self.inner.connection_in(id, session).await
    }
    async fn subscribe(&self, subscription: &Subscription) -> Result<(), StoreError> {
        self.count("subscribe");
        self.inner.subscribe(subscription).await
    }
    async fn unsubscribe(
        &self,
        connection: &ConnectionId,
        session: &SessionId,
    ) -> Result<bool, StoreError> {
        self.count("unsubscribe");
        self.inner.unsubscribe(connection, session).await
    }
    async fn is_subscribed(
        &self,
        connection: &ConnectionId,
        session: &SessionId,
    ) -> Result<bool, StoreError> {
        self.count("is_subscribed");
        self.inner.is_subscribed(connection, session).await
    }
    async fn subscriptions_of(
        &self,
        connection: &ConnectionId,
    ) -> Result<Vec<SessionId>, StoreError> {
        self.count("subscriptions_of");
        self.inner.subscriptions_of(connection).await
    }
    async fn session_connections(
        &self,
        session: &SessionId,
    ) -> Result<Vec<Subscription>, StoreError> {
        self.count("session_connections");
        self.inner.session_connections(session).await
    }
    async fn remove_connection(&self, id: &ConnectionId) -> Result<Vec<Subscription>, StoreError> {
        self.count("remove_connection");
        self.inner.remove_connection(id).await
    }
    async fn remove_user_subscriptions(
        &self,
        user: &UserId,
        sessions: &[SessionId],
    ) -> Result<Vec<Subscription>, StoreError> {
        self.count("remove_user_subscriptions");
        self.inner.remove_user_subscriptions(user, sessions).await
    }
}

#[async_trait]
impl<P: RateLimiter + ?Sized> RateLimiter for Counting<P> {
    async fn try_acquire(
        &self,
        key: &str,
        per_second: f64,
        burst: u32,
    ) -> Result<Acquire, StoreError> {
        self.count("try_acquire");
        self.inner.try_acquire(key, per_second, burst).await
    }
}
