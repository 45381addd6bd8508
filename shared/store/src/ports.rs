//! The ports: small role-based async traits, injected as `Arc<dyn Port>`.
//!
//! Every port has a memory adapter (the embedded default of a local run) and a real adapter;
//! one contract suite (in `dlab-tests`) runs against both, so the rules below hold everywhere.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use dlab_core::actor::{Actor, CompendiumEntry};
use dlab_core::changes::ChangeSet;
use dlab_core::compaction::Snapshot;
use dlab_core::event::GameEvent;
use dlab_core::ids::{
    ActorId, CampaignId, ConflictId, ConnectionId, EventId, InstanceId, Sequence, SessionId, UserId,
};
use dlab_core::state::GameSessionState;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{ArchiveError, CommitError, NotifyError, StoreError};
use crate::model::{
    ActorKey, Campaign, CampaignKey, CampaignQuotas, CompendiumPage, CompendiumQuery, ConflictKey,
    ConflictRecord, Connection, GameSession, MemberRole, Page, PageRequest, QuotaError, Resolution,
    SessionKey, Subscription,
};

/// What to commit: an event without its sequence, and the changes parsed from it.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    /// The event; its `sequence` is ignored and assigned by the commit.
    pub event: GameEvent,
    /// `parse_changes(event.type, event.payload)`, parsed once by the caller.
    pub changes: ChangeSet,
}

/// How long an audience token ([`EventLog::set_audience`]) lives without a change.
pub const AUDIENCE_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A successful commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// The sequence of the event (the original one for a duplicate).
    pub sequence: Sequence,
    /// Whether the id had been committed before with the same content.
    pub duplicate: bool,
    /// The stored event; for a duplicate, the original — `None` when it was trimmed from the
    /// hot log (read it from the archive).
    pub event: Option<GameEvent>,
    /// For each blind write (`{to}` without `from`) of this event to a path that already had an
    /// override: the write it replaced, read in the same atomic step. The GM conflict report
    /// compares them (different users inside the window); empty for a duplicate.
    pub replaced: Vec<ReplacedWrite>,
    /// The session's audience token ([`EventLog::set_audience`]) read in the same atomic step
    /// as the sequence: a broadcaster whose cached list of the session's connections was read
    /// under this token may use it. `None` when the session has none (never set, expired, or
    /// the store lost it): read the registry. Always `None` for a duplicate.
    pub audience: Option<u64>,
}

/// The override a blind write replaced.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplacedWrite {
    /// The instance (or `$session`).
    pub instance: InstanceId,
    /// The path.
    pub path: String,
    /// The value it held.
    pub value: Value,
    /// The event that wrote it.
    pub event_id: EventId,
    /// Who sent that event.
    pub user_id: UserId,
    /// Its server time (ms).
    pub timestamp: u64,
    /// Its sequence.
    pub sequence: Sequence,
}

/// What a trim removed from the hot window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trimmed {
    /// Events removed.
    pub events: u64,
    /// Their stored bytes.
    pub bytes: u64,
}

/// A session's maintenance lease (compaction, backfill, release): the token proves the holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseToken(pub String);

/// A compare-and-set rejection, remembered briefly so its sender can escalate it to the GM
/// (`POST /sessions/{id}/conflicts`). Rejected events are otherwise not remembered: the same
/// id is judged afresh when resubmitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    /// The rejected event (sequence 0: it was never committed).
    pub event: GameEvent,
    /// The current value of every path of the event when it was refused.
    pub current: BTreeMap<String, Value>,
    /// When it was refused (ms).
    pub rejected_at: u64,
}

/// The hot, ordered event log of each session, with its sequence counter, dedup map and live
/// state (base values and overrides).
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Creates the hot state of a new session (epoch, counter at 0, `$session` defaults).
    /// Idempotent: an existing session, or one a rebuild is writing, is left as it is.
    async fn init_session(&self, session: &SessionId) -> Result<(), StoreError>;

    /// ONE atomic step: epoch check (refuses with [`CommitError::HotStateMissing`] when the
    /// session's hot state is gone), dedup by event id (same content → the original sequence,
    /// `duplicate: true`; different content → [`CommitError::IdReused`]), the target instances
    /// (→ [`CommitError::Invalid`]), every compare-and-set precondition (mismatch →
    /// [`CommitError::Conflict`], nothing stored), `inc` arithmetic (→
    /// [`CommitError::Invalid`]), next sequence, append, override update. Checked in that
    /// order, so every adapter gives the same error for the same event.
    async fn commit(&self, request: CommitRequest) -> Result<Committed, CommitError>;

    /// Events with `after < sequence <= to` (default: head), at most `limit`, contiguous and in
    /// order. [`StoreError::BelowFloor`] when `after + 1` is below the hot window's floor.
    async fn read(
        &self,
        session: &SessionId,
        after: Sequence,
        to: Option<Sequence>,
        limit: usize,
    ) -> Result<Vec<GameEvent>, StoreError>;

    /// The last committed sequence (0 for an empty session).
    async fn head(&self, session: &SessionId) -> Result<Sequence, StoreError>;

    /// Records that the session's audience changed (a subscription was added or removed):
    /// `token` (fresh and random) is what every later commit returns as
    /// [`Committed::audience`], so a broadcaster can tell whether the list of connections it
    /// cached is still current without reading the registry for every event. Ordered with
    /// commits: a commit either returns the old token and precedes this call, or returns
    /// `token`. The token outlives a release of the hot state and expires after
    /// [`AUDIENCE_TTL`] without a change (a session with live subscribers sees one at least
    /// every two hours, when API Gateway recycles connections).
    async fn set_audience(&self, session: &SessionId, token: u64) -> Result<(), StoreError>;

    /// The lowest sequence still in the hot window (1 when nothing was trimmed).
    async fn floor(&self, session: &SessionId) -> Result<Sequence, StoreError>;

    /// Drops events below `sequence` from the hot window (never above head + 1) and raises the
    /// floor; returns what was removed. The dedup map is kept: a resubmitted id stays a
    /// duplicate with its original sequence however far the window moved.
    async fn trim_below(
        &self,
        session: &SessionId,
        sequence: Sequence,
    ) -> Result<Trimmed, StoreError>;

    /// The live state (base values, overrides, last sequence). `None` when the hot state is
    /// missing.
    async fn state(&self, session: &SessionId) -> Result<Option<GameSessionState>, StoreError>;

    /// Rebuilds the hot state after a wipe or failover from `state` (a snapshot folded with
    /// the archived events after it), the hot window `events` (contiguous, ending at the state's
    /// last sequence), and every known `(id, sequence, content hash)` for dedup.
    ///
    /// Conditional: it writes ONLY while the session has no hot state. Two handlers that both
    /// saw the hot state missing may race, and one of them may have read an older archive; if
    /// its rebuild replaced a live hot state it would erase events already confirmed. So:
    /// - [`Rehydration::Rebuilt`]: the hot state was absent and is now this one (new epoch).
    /// - [`Rehydration::AlreadyPresent`]: a hot state exists (another rebuild won, or it was
    ///   never lost); nothing was written. Re-read and carry on.
    /// - [`Rehydration::Busy`]: another rebuild is writing right now; nothing was written.
    ///   Wait briefly, then re-read (and rehydrate again if the state is still missing).
    ///
    /// A half-written rebuild is never visible: readers and commits see the session as missing
    /// until the rebuild completes, and a rebuild that stalls past its lease can no longer
    /// write (the next one clears what it left).
    async fn rehydrate(
        &self,
        state: &GameSessionState,
        events: &[GameEvent],
        ids: &[(EventId, Sequence, String)],
    ) -> Result<Rehydration, StoreError>;

    /// Deletes the session's hot state (session ended or idle; its snapshot and archive
    /// remain). The end marker of [`EventLog::end_session`] is not part of the hot state and
    /// stays.
    async fn release(&self, session: &SessionId) -> Result<(), StoreError>;

    /// Releases the hot state only if the head is still `head`, atomically: an idle session is
    /// released after its final backfill and snapshot, and an event committed in between must
    /// keep it (it might not be archived yet). Returns whether it was released.
    async fn release_if_head(
        &self,
        session: &SessionId,
        head: Sequence,
    ) -> Result<bool, StoreError>;

    /// Marks the session ended: every later commit is refused with
    /// [`CommitError::SessionEnded`], atomically with the commit's other checks, so no event
    /// slips in after the final snapshot. Idempotent; the marker outlives [`EventLog::release`].
    async fn end_session(&self, session: &SessionId) -> Result<(), StoreError>;

    /// Takes the session's maintenance lease for `ttl` when nobody holds it (`None` when a run
    /// holds it): two compactions of one session never overlap.
    async fn try_lease(
        &self,
        session: &SessionId,
        ttl: Duration,
    ) -> Result<Option<LeaseToken>, StoreError>;

    /// Gives the lease back, if `token` still holds it.
    async fn release_lease(
        &self,
        session: &SessionId,
        token: &LeaseToken,
    ) -> Result<(), StoreError>;

    /// Remembers a rejection for `ttl` (its sender may escalate it); a later one with the same
    /// event id replaces it.
    async fn remember_rejection(
        &self,
        rejection: &Rejection,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// A remembered rejection of the session, by event id.
    async fn rejection(
        &self,
        session: &SessionId,
        id: &EventId,
    ) -> Result<Option<Rejection>, StoreError>;

    /// Notes that the session's archive fell behind (an archive write failed or timed out), for
    /// the next backfill: a set outside every session's keys (its own cluster slot), written
    /// while MongoDB is down.
    async fn mark_unarchived(&self, session: &SessionId) -> Result<(), StoreError>;

    /// Up to `limit` sessions marked by [`EventLog::mark_unarchived`].
    async fn unarchived(&self, limit: usize) -> Result<Vec<SessionId>, StoreError>;

    /// Clears the mark once the session's archive is complete.
    async fn clear_unarchived(&self, session: &SessionId) -> Result<(), StoreError>;
}

/// The durable archive of every committed event.
#[async_trait]
pub trait EventArchive: Send + Sync {
    /// Stores an event by `(sessionId, sequence)`. Idempotent for the same event id;
    /// [`ArchiveError::SequenceCollision`] when another id holds that sequence (the counter
    /// went back: fence the session).
    async fn insert(&self, event: &GameEvent) -> Result<(), ArchiveError>;

    /// Events with `after < sequence <= to`, at most `limit`, in order.
    async fn read(
        &self,
        session: &SessionId,
        after: Sequence,
        to: Option<Sequence>,
        limit: usize,
    ) -> Result<Vec<GameEvent>, ArchiveError>;

    /// The highest `n` such that 1..=n are all archived (kept per session and advanced here).
    async fn archived_through(&self, session: &SessionId) -> Result<Sequence, ArchiveError>;

    /// Every archived `(id, sequence, content hash)` of a session, for rehydrating dedup.
    async fn ids(
        &self,
        session: &SessionId,
    ) -> Result<Vec<(EventId, Sequence, String)>, ArchiveError>;

    /// Notes that the session had an event at `at` (ms) and has hot state: the index that
    /// backfill and idle release search, so they never scan every session. `lastEventAt` only
    /// rises. Called at most about once a minute per session and process.
    async fn touch(&self, session: &SessionId, at: u64) -> Result<(), ArchiveError>;

    /// Sessions with an event at or after `since` (ms), by session id after `after`, at most
    /// `limit`: the candidates of a backfill run.
    async fn active_since(
        &self,
        since: u64,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<SessionId>, ArchiveError>;

    /// Sessions with hot state whose last event is before `before` (ms), at most `limit`: the
    /// candidates of an idle release.
    async fn idle_hot(&self, before: u64, limit: usize) -> Result<Vec<SessionId>, ArchiveError>;

    /// Notes whether the session's hot state exists (released: `false`; rebuilt: `true`).
    async fn set_hot(&self, session: &SessionId, hot: bool) -> Result<(), ArchiveError>;

    /// Retention: deletes the session's archived events with `sequence <= through` (a snapshot
    /// covers them) whose server time is before `older_than`, keeping the archive contiguous
    /// from [`EventArchive::pruned_through`] + 1; returns how many went.
    async fn prune(
        &self,
        session: &SessionId,
        through: Sequence,
        older_than: u64,
    ) -> Result<u64, ArchiveError>;

    /// The highest sequence pruned (0 = none): events up to it are no longer replayable.
    async fn pruned_through(&self, session: &SessionId) -> Result<Sequence, ArchiveError>;
}

/// The GM's conflict report: blind writes to one path by different users inside the window,
/// and compare-and-set rejections a member escalated.
#[async_trait]
pub trait ConflictStore: Send + Sync {
    /// Stores a new conflict; `false` (nothing written) when its id exists (the same race
    /// reported twice).
    async fn create(&self, conflict: &ConflictRecord) -> Result<bool, StoreError>;

    /// A conflict of a session.
    async fn get(
        &self,
        session: &SessionId,
        id: &ConflictId,
    ) -> Result<Option<ConflictRecord>, StoreError>;

    /// One page of a session's conflicts, newest first.
    async fn list(
        &self,
        session: &SessionId,
        page: &PageRequest<ConflictKey>,
    ) -> Result<Page<ConflictRecord, ConflictKey>, StoreError>;

    /// Marks an unresolved conflict resolved (a conditional write: of two concurrent resolves
    /// one wins); the resolved record, or `None` when it is missing or already resolved.
    async fn resolve(
        &self,
        session: &SessionId,
        id: &ConflictId,
        resolution: &Resolution,
    ) -> Result<Option<ConflictRecord>, StoreError>;
}

/// Campaigns, members, actors, compendium templates and game sessions.
///
/// Listings page in the store: each reads from its [`PageRequest::after`] key by an ordered
/// range (never skipping and never loading the whole list), looks one item ahead, and cuts the
/// page with [`crate::model::PageFill`], so a page holds at most `limit` items and
/// `max_bytes` bytes of JSON (always at least one item while any remain), and
/// [`Page::next`] is `None` only when the listing is complete.
///
/// Count quotas ([`CampaignQuotas`]) hold under concurrency: of N concurrent creates when one
/// slot is left, exactly one succeeds. A delete gives its slot back, and so does a create whose
/// insert failed.
#[async_trait]
pub trait CampaignStore: Send + Sync {
    /// Stores a new campaign.
    async fn create_campaign(&self, campaign: &Campaign) -> Result<(), StoreError>;
    /// A campaign by id.
    async fn campaign(&self, id: &CampaignId) -> Result<Option<Campaign>, StoreError>;
    /// One page of the campaigns where the user is GM or member, ordered by id.
    async fn campaigns_of(
        &self,
        user: &UserId,
        page: &PageRequest<CampaignKey>,
    ) -> Result<Page<Campaign, CampaignKey>, StoreError>;
    /// Adds or updates a member; returns the updated campaign (`None` if it does not exist).
    async fn put_member(
        &self,
        campaign: &CampaignId,
        user: &UserId,
        role: MemberRole,
    ) -> Result<Option<Campaign>, StoreError>;
    /// Removes a member; returns whether they were one.
    async fn remove_member(&self, campaign: &CampaignId, user: &UserId)
    -> Result<bool, StoreError>;

    /// Stores a new actor of an existing campaign, within the campaign's actor count quota and
    /// the actor size quota.
    async fn create_actor(&self, actor: &Actor, quotas: &CampaignQuotas) -> Result<(), QuotaError>;
    /// Stores several new actors of one existing campaign at once (encounter building), all or
    /// nothing: when the campaign's actor count quota cannot take them all, or one is over the
    /// size quota or its id exists, none is stored. Every actor must belong to the campaign of
    /// the first ([`StoreError::Invalid`] otherwise); an empty slice stores nothing.
    async fn create_actors(
        &self,
        actors: &[Actor],
        quotas: &CampaignQuotas,
    ) -> Result<(), QuotaError>;
    /// An actor of a campaign.
    async fn actor(&self, campaign: &CampaignId, id: &ActorId)
    -> Result<Option<Actor>, StoreError>;
    /// One page of the actors of a campaign, by name then id.
    async fn actors(
        &self,
        campaign: &CampaignId,
        page: &PageRequest<ActorKey>,
    ) -> Result<Page<Actor, ActorKey>, StoreError>;
    /// Replaces an actor, within the actor size quota; returns whether it existed.
    async fn update_actor(
        &self,
        actor: &Actor,
        quotas: &CampaignQuotas,
    ) -> Result<bool, QuotaError>;
    /// Deletes an actor, giving its slot of the count quota back; returns whether it existed.
    async fn delete_actor(&self, campaign: &CampaignId, id: &ActorId) -> Result<bool, StoreError>;

    /// Inserts or replaces compendium templates (the importer).
    async fn put_compendium(&self, entries: &[CompendiumEntry]) -> Result<(), StoreError>;
    /// A template by reference (`dnd5e:monsters:goblin`).
    async fn compendium_entry(
        &self,
        reference: &str,
    ) -> Result<Option<CompendiumEntry>, StoreError>;
    /// Searches templates by name substring (case-insensitive), category and system, ordered
    /// by reference, paged by cursor (the last reference of the previous page) and by
    /// [`CompendiumQuery::max_bytes`].
    async fn search_compendium(
        &self,
        query: &CompendiumQuery,
    ) -> Result<CompendiumPage, StoreError>;

    /// Stores a new game session of an existing campaign, within the campaign's session count
    /// quota.
    async fn create_session(
        &self,
        session: &GameSession,
        quotas: &CampaignQuotas,
    ) -> Result<(), QuotaError>;
    /// A game session by id.
    async fn session(&self, id: &SessionId) -> Result<Option<GameSession>, StoreError>;
    /// One page of the sessions of a campaign, newest first (`createdAt` descending, then id
    /// descending).
    async fn sessions(
        &self,
        campaign: &CampaignId,
        page: &PageRequest<SessionKey>,
    ) -> Result<Page<GameSession, SessionKey>, StoreError>;
    /// Replaces a session document (status, archivedThrough); returns whether it existed.
    async fn update_session(&self, session: &GameSession) -> Result<bool, StoreError>;
}

/// Snapshots of session state.
#[async_trait]
pub trait SnapshotStore: Send + Sync {
    /// Stores a snapshot (idempotent for the same `(sessionId, upToSequence)`).
    async fn put(&self, snapshot: &Snapshot) -> Result<(), StoreError>;
    /// The snapshot with the highest `upToSequence`.
    async fn latest(&self, session: &SessionId) -> Result<Option<Snapshot>, StoreError>;
}

/// The answer of [`ConnectionRegistry::add_connection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The connection is stored and counts against its user's limit.
    Admitted,
    /// The user already holds `open` unexpired connections (at least the limit); nothing was
    /// stored.
    Refused {
        /// The user's unexpired connections.
        open: usize,
    },
}

/// Live WebSocket connections and their session subscriptions.
#[async_trait]
pub trait ConnectionRegistry: Send + Sync {
    /// Stores a connection unless its user already holds `limit` unexpired connections (the
    /// per-user cap). Only unexpired records count, so a lost `$disconnect` frees its slot when
    /// the record expires. Storing an id again (a renewal) replaces it and never counts twice.
    /// Exact under concurrency: concurrent calls for one user never admit more than `limit`.
    async fn add_connection(
        &self,
        connection: &Connection,
        limit: usize,
    ) -> Result<Admission, StoreError>;

    /// Stores a connection without a limit (it still counts against its user's).
    async fn put_connection(&self, connection: &Connection) -> Result<(), StoreError> {
        self.add_connection(connection, usize::MAX)
            .await
            .map(|_| ())
    }

    /// Records the single use of a connect ticket: `true` the first time a `jti` is claimed,
    /// `false` ever after (a replay), at least until `expires_at_ms`, when the ticket itself
    /// stops being accepted and its record may go.
    async fn claim_ticket(&self, jti: Uuid, expires_at_ms: u64) -> Result<bool, StoreError>;

    /// A live (not expired) connection.
    async fn connection(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError>;
    /// A live connection and whether it is subscribed to `session` (strongly consistent), in
    /// one round trip where the store allows it: a submit or a replay needs both, and this is
    /// the only registry read on their path. `None` when the connection is not live.
    async fn connection_in(
        &self,
        id: &ConnectionId,
        session: &SessionId,
    ) -> Result<Option<(Connection, bool)>, StoreError> {
        let Some(connection) = self.connection(id).await? else {
            return Ok(None);
        };
        let subscribed = self.is_subscribed(id, session).await?;
        Ok(Some((connection, subscribed)))
    }
    /// Subscribes a connection to a session (idempotent).
    async fn subscribe(&self, subscription: &Subscription) -> Result<(), StoreError>;
    /// Unsubscribes; returns whether it was subscribed.
    async fn unsubscribe(
        &self,
        connection: &ConnectionId,
        session: &SessionId,
    ) -> Result<bool, StoreError>;
    /// Whether the connection is subscribed to the session (strongly consistent).
    async fn is_subscribed(
        &self,
        connection: &ConnectionId,
        session: &SessionId,
    ) -> Result<bool, StoreError>;
    /// The sessions a connection is subscribed to.
    async fn subscriptions_of(
        &self,
        connection: &ConnectionId,
    ) -> Result<Vec<SessionId>, StoreError>;
    /// Every live subscription of a session (all pages; expired ones filtered).
    async fn session_connections(
        &self,
        session: &SessionId,
    ) -> Result<Vec<Subscription>, StoreError>;
    /// Removes a connection (freeing its slot of the user's limit) and all its subscriptions;
    /// returns the sessions it was in.
    async fn remove_connection(&self, id: &ConnectionId) -> Result<Vec<Subscription>, StoreError>;
    /// Removes every subscription of `user` to any of `sessions` (a member left a campaign);
    /// returns what was removed.
    async fn remove_user_subscriptions(
        &self,
        user: &UserId,
        sessions: &[SessionId],
    ) -> Result<Vec<Subscription>, StoreError>;
}

/// What [`EventLog::rehydrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rehydration {
    /// The hot state was missing and has been rebuilt from the given state.
    Rebuilt,
    /// A hot state already existed; nothing was written. Re-read it.
    AlreadyPresent,
    /// Another rebuild of the session is in progress; nothing was written. Wait briefly and
    /// re-read.
    Busy,
}

/// The answer of [`RateLimiter::try_acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// A token was taken: go ahead.
    Taken,
    /// The bucket is empty. Edge: `rate_limited` with `retryAfterMs`.
    Limited {
        /// Time until one token is back (at most `1 / per_second`), measured on the limiter's
        /// clock, so clients of every instance get the same answer.
        retry_after: Duration,
    },
}

/// A token bucket per key, shared by every instance of the service.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Takes one token from `key`'s bucket (refilled at `per_second`, holding at most `burst`;
    /// a new bucket starts full). `per_second` must be positive and finite and `burst` at least
    /// 1: the caller validates its configuration.
    async fn try_acquire(
        &self,
        key: &str,
        per_second: f64,
        burst: u32,
    ) -> Result<Acquire, StoreError>;
}

/// What happened to a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostOutcome {
    /// Handed to the connection.
    Delivered,
    /// The connection is gone (410): delete it; not an error.
    Gone,
}

/// Pushes bytes to a WebSocket connection (API Gateway `@connections`).
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Posts one frame.
    async fn post(
        &self,
        connection: &ConnectionId,
        data: &[u8],
    ) -> Result<PostOutcome, NotifyError>;
}

/// Heads of several sessions at once (for `pong`).
pub async fn heads(
    log: &dyn EventLog,
    sessions: &[SessionId],
) -> Result<BTreeMap<SessionId, Sequence>, StoreError> {
    let mut out = BTreeMap::new();
    for s in sessions {
        out.insert(s.clone(), log.head(s).await?);
    }
    Ok(out)
}
