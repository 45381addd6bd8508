//! In-memory adapters: the embedded default of a local run.
//!
//! They enforce exactly the rules of the real adapters (the same contract suite runs against
//! both): the event log commits under one lock, running the domain projection
//! (`GameSessionState::apply`) as its compare-and-set, so sequences are gap-free, duplicates are
//! recognised and a conflict stores nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dlab_core::actor::{Actor, CompendiumEntry};
use dlab_core::changes::{Change, ChangeSet, MAX_SAFE_INTEGER, as_safe_integer};
use dlab_core::compaction::Snapshot;
use dlab_core::event::GameEvent;
use dlab_core::ids::{
    ActorId, CampaignId, ConflictId, ConnectionId, EventId, InstanceId, Sequence, SessionId, UserId,
};
use dlab_core::state::{ApplyError, GameSessionState};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc};
use uuid::Uuid;

const BACKEND: &str = "memory";

use crate::error::{ArchiveError, CommitError, InvalidCommit, NotifyError, StoreError};
use crate::model::{
    ActorKey, Campaign, CampaignKey, CampaignQuotas, CompendiumPage, CompendiumQuery, ConflictKey,
    ConflictRecord, Connection, GameSession, Listed, Member, MemberRole, Page, PageRequest, Quota,
    QuotaError, Resolution, SessionKey, Subscription, fill_page, now_ms,
};
use crate::ports::{
    Acquire, Admission, CampaignStore, CommitRequest, Committed, ConflictStore, ConnectionRegistry,
    EventArchive, EventLog, LeaseToken, Notifier, PostOutcome, RateLimiter, Rehydration, Rejection,
    ReplacedWrite, SnapshotStore, Trimmed,
};

#[derive(Debug)]
struct HotSession {
    state: GameSessionState,
    events: BTreeMap<u64, GameEvent>,
    ids: HashMap<EventId, (Sequence, String)>,
    floor: u64,
}

impl HotSession {
    fn new(session: &SessionId) -> Self {
        Self {
            state: GameSessionState::new(session.clone(), None),
            events: BTreeMap::new(),
            ids: HashMap::new(),
            floor: 1,
        }
    }
}

/// The event log in memory. One lock per log keeps the commit atomic.
#[derive(Debug, Default)]
pub struct MemoryEventLog {
    sessions: Mutex<HashMap<SessionId, HotSession>>,
    /// Audience tokens with when they were set. Written only while `sessions` is held and read
    /// by commits while they hold it, so a commit and a change of audience are ordered as in
    /// the Redis script.
    audiences: std::sync::Mutex<HashMap<SessionId, (u64, std::time::Instant)>>,
    /// Markers and maintenance records that are not part of any hot state (they outlive a
    /// release, as the Redis keys outside a session's hot state do).
    side: Mutex<SideState>,
}

#[derive(Debug, Default)]
struct SideState {
    ended: HashSet<SessionId>,
    leases: HashMap<SessionId, (LeaseToken, std::time::Instant)>,
    rejections: HashMap<(SessionId, EventId), (Rejection, std::time::Instant)>,
    unarchived: BTreeSet<SessionId>,
}

impl SideState {
    /// Drops expired rejections, so a flood of refused events cannot grow memory for longer
    /// than their time to live.
    fn prune_rejections(&mut self) {
        let now = std::time::Instant::now();
        self.rejections.retain(|_, (_, until)| *until > now);
    }
}

/// The writes a blind change of `changes` replaces in `state`: each blind path's override
/// (base values are not anybody's write).
fn replaced_writes(state: &GameSessionState, changes: &ChangeSet) -> Vec<ReplacedWrite> {
    let ChangeSet::Update { instance, changes } = changes else {
        return Vec::new();
    };
    let overrides = if instance.is_session() {
        Some(&state.session_overrides)
    } else {
        state.active_actors.get(instance).map(|a| &a.overrides)
    };
    let Some(overrides) = overrides else {
        return Vec::new();
    };
    changes
        .iter()
        .filter(|c| matches!(c.change, Change::Blind { .. }))
        .filter_map(|c| {
            overrides.get(&c.path).map(|o| ReplacedWrite {
                instance: instance.clone(),
                path: c.path.clone(),
                value: o.value.clone(),
                event_id: o.event_id.clone(),
                user_id: o.user_id.clone(),
                timestamp: o.timestamp,
                sequence: o.sequence,
            })
        })
        .collect()
}

impl MemoryEventLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops every session's hot state and audience token, as a wiped Redis would (for tests
    /// of rehydration).
    pub async fn wipe(&self) {
        let mut sessions = self.sessions.lock().await;
        sessions.clear();
        self.audiences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// The session's unexpired audience token; called with `sessions` held.
    fn audience(&self, session: &SessionId) -> Option<u64> {
        self.audiences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(session)
            .filter(|(_, at)| at.elapsed() < crate::ports::AUDIENCE_TTL)
            .map(|(token, _)| *token)
    }
}

/// Which [`InvalidCommit`] reason an event that the projection refused has, checked in the
/// commit script's order (instances, then each `inc` in path order), so memory and Redis give
/// the same answer. `None` when the refusal is none of them (a bug: the changes were parsed
/// from the event by the caller).
fn invalid_reason(state: &GameSessionState, changes: &ChangeSet) -> Option<InvalidCommit> {
    let missing = |instance: &InstanceId| {
        (!state.has_instance(instance)).then(|| InvalidCommit::InstanceMissing {
            instance: instance.clone(),
        })
    };
    match changes {
        ChangeSet::None => None,
        ChangeSet::AddActor { instance, .. } => {
            state
                .has_instance(instance)
                .then(|| InvalidCommit::InstanceExists {
                    instance: instance.clone(),
                })
        }
        ChangeSet::RemoveActor { instance } => missing(instance),
        ChangeSet::ForceSet { targets } => targets.iter().find_map(|(i, _)| missing(i)),
        ChangeSet::Update { instance, changes } => missing(instance).or_else(|| {
            changes.iter().find_map(|c| {
                let Change::Inc { by } = c.change else {
                    return None;
                };
                let path = c.path.clone();
                let current = state.current(instance, &c.path)?;
                let base = match current {
                    Value::Null => 0,
                    other => match as_safe_integer(&other) {
                        Some(n) => n,
                        None => return Some(InvalidCommit::IncNotInteger { path }),
                    },
                };
                ((base + by).abs() > MAX_SAFE_INTEGER)
                    .then_some(InvalidCommit::IncOutOfRange { path })
            })
        }),
    }
}

#[async_trait]
impl EventLog for MemoryEventLog {
    async fn init_session(&self, session: &SessionId) -> Result<(), StoreError> {
        self.sessions
            .lock()
            .await
            .entry(session.clone())
            .or_insert_with(|| HotSession::new(session));
        Ok(())
    }

    async fn commit(&self, request: CommitRequest) -> Result<Committed, CommitError> {
        let CommitRequest { mut event, changes } = request;
        let session = event.session_id.clone();
        if self.side.lock().await.ended.contains(&session) {
            return Err(CommitError::SessionEnded(session));
        }
        let mut sessions = self.sessions.lock().await;
        let hot = sessions
            .get_mut(&session)
            .ok_or_else(|| CommitError::HotStateMissing(session.clone()))?;
        let hash = event.content_hash();
        if let Some((sequence, stored_hash)) = hot.ids.get(&event.id) {
            if *stored_hash != hash {
                return Err(CommitError::IdReused { id: event.id });
            }
            return Ok(Committed {
                sequence: *sequence,
                duplicate: true,
                event: hot.events.get(&sequence.get()).cloned(),
                replaced: Vec::new(),
                audience: None,
            });
        }
        let replaced = replaced_writes(&hot.state, &changes);
        event.sequence = hot.state.last_event_sequence.next();
        debug_assert_eq!(
            changes,
            dlab_core::changes::parse_changes(&event.event_type, &event.payload)
                .unwrap_or(ChangeSet::None)
        );
        hot.state.apply(&event).map_err(|e| match e {
            ApplyError::Conflict { current } => CommitError::Conflict { current },
            other => match invalid_reason(&hot.state, &changes) {
                Some(reason) => CommitError::Invalid(reason),
                None => StoreError::corrupt(BACKEND, "commit", other).into(),
            },
        })?;
        hot.ids.insert(event.id.clone(), (event.sequence, hash));
        hot.events.insert(event.sequence.get(), event.clone());
        let audience = self.audience(&session);
        Ok(Committed {
            sequence: event.sequence,
            duplicate: false,
            event: Some(event),
            replaced,
            audience,
        })
    }

    async fn read(
        &self,
        session: &SessionId,
        after: Sequence,
        to: Option<Sequence>,
        limit: usize,
    ) -> Result<Vec<GameEvent>, StoreError> {
        let sessions = self.sessions.lock().await;
        let Some(hot) = sessions.get(session) else {
            return Err(StoreError::HotStateMissing(session.clone()));
        };
        if after.get() + 1 < hot.floor {
            return Err(StoreError::BelowFloor {
                session: session.clone(),
                floor: Sequence(hot.floor),
            });
        }
        let to = to.map_or(u64::MAX, Sequence::get);
        Ok(hot
            .events
            .range(after.get() + 1..)
            .take_while(|(seq, _)| **seq <= to)
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn head(&self, session: &SessionId) -> Result<Sequence, StoreError> {
        let sessions = self.sessions.lock().await;
        sessions
            .get(session)
            .map(|h| h.state.last_event_sequence)
            .ok_or_else(|| StoreError::HotStateMissing(session.clone()))
    }

    async fn floor(&self, session: &SessionId) -> Result<Sequence, StoreError> {
        let sessions = self.sessions.lock().await;
        sessions
            .get(session)
            .map(|h| Sequence(h.floor))
            .ok_or_else(|| StoreError::HotStateMissing(session.clone()))
    }

    async fn trim_below(
        &self,
        session: &SessionId,
        sequence: Sequence,
    ) -> Result<Trimmed, StoreError> {
        let mut sessions = self.sessions.lock().await;
        let hot = sessions
            .get_mut(session)
            .ok_or_else(|| StoreError::HotStateMissing(session.clone()))?;
        let target = sequence
            .get()
            .min(hot.state.last_event_sequence.get().saturating_add(1));
        if target <= hot.floor {
            return Ok(Trimmed::default());
        }
        let keep = hot.events.split_off(&target);
        let removed = std::mem::replace(&mut hot.events, keep);
        hot.floor = target;
        Ok(Trimmed {
            events: removed.len() as u64,
            bytes: removed
                .values()
                .map(|e| serde_json::to_vec(e).map_or(0, |v| v.len() as u64))
                .sum(),
        })
    }

    async fn state(&self, session: &SessionId) -> Result<Option<GameSessionState>, StoreError> {
        Ok(self
            .sessions
            .lock()
            .await
            .get(session)
            .map(|h| h.state.clone()))
    }

    async fn rehydrate(
        &self,
        state: &GameSessionState,
        events: &[GameEvent],
        ids: &[(EventId, Sequence, String)],
    ) -> Result<Rehydration, StoreError> {
        let session = state.session_id.clone();
        let mut sessions = self.sessions.lock().await;
        if sessions.contains_key(&session) {
            return Ok(Rehydration::AlreadyPresent);
        }
        let mut hot = HotSession::new(&session);
        hot.state = state.clone();
        hot.floor = events
            .first()
            .map_or(state.last_event_sequence.get() + 1, |e| e.sequence.get());
        for e in events {
            hot.events.insert(e.sequence.get(), e.clone());
            hot.ids.insert(e.id.clone(), (e.sequence, e.content_hash()));
        }
        for (id, seq, hash) in ids {
            hot.ids.insert(id.clone(), (*seq, hash.clone()));
        }
        sessions.insert(session, hot);
        Ok(Rehydration::Rebuilt)
    }

    async fn release(&self, session: &SessionId) -> Result<(), StoreError> {
        self.sessions.lock().await.remove(session);
        Ok(())
    }

    async fn set_audience(&self, session: &SessionId, token: u64) -> Result<(), StoreError> {
        let _ordered_with_commits = self.sessions.lock().await;
        self.audiences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(session.clone(), (token, std::time::Instant::now()));
        Ok(())
    }

    async fn release_if_head(
        &self,
        session: &SessionId,
        head: Sequence,
    ) -> Result<bool, StoreError> {
        let mut sessions = self.sessions.lock().await;
        if sessions
            .get(session)
            .is_some_and(|h| h.state.last_event_sequence == head)
        {
            sessions.remove(session);
            return Ok(true);
        }
        Ok(false)
    }

    async fn end_session(&self, session: &SessionId) -> Result<(), StoreError> {
        self.side.lock().await.ended.insert(session.clone());
        Ok(())
    }

    async fn try_lease(
        &self,
        session: &SessionId,
        ttl: Duration,
    ) -> Result<Option<LeaseToken>, StoreError> {
        let mut side = self.side.lock().await;
        let now = std::time::Instant::now();
        if side
            .leases
            .get(session)
            .is_some_and(|(_, until)| *until > now)
        {
            return Ok(None);
        }
        let token = LeaseToken(uuid::Uuid::new_v4().to_string());
        side.leases
            .insert(session.clone(), (token.clone(), now + ttl));
        Ok(Some(token))
    }

    async fn release_lease(
        &self,
        session: &SessionId,
        token: &LeaseToken,
    ) -> Result<(), StoreError> {
        let mut side = self.side.lock().await;
        if side.leases.get(session).is_some_and(|(t, _)| t == token) {
            side.leases.remove(session);
        }
        Ok(())
    }

    async fn remember_rejection(
        &self,
        rejection: &Rejection,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut side = self.side.lock().await;
        side.prune_rejections();
        side.rejections.insert(
            (
                rejection.event.session_id.clone(),
                rejection.event.id.clone(),
            ),
            (rejection.clone(), std::time::Instant::now() + ttl),
        );
        Ok(())
    }

    async fn rejection(
        &self,
        session: &SessionId,
        id: &EventId,
    ) -> Result<Option<Rejection>, StoreError> {
        let mut side = self.side.lock().await;
        side.prune_rejections();
        Ok(side
            .rejections
            .get(&(session.clone(), id.clone()))
            .map(|(r, _)| r.clone()))
    }

    async fn mark_unarchived(&self, session: &SessionId) -> Result<(), StoreError> {
        self.side.lock().await.unarchived.insert(session.clone());
        Ok(())
    }

    async fn unarchived(&self, limit: usize) -> Result<Vec<SessionId>, StoreError> {
        Ok(self
            .side
            .lock()
            .await
            .unarchived
            .iter()
            .take(limit)
            .cloned()
            .collect())
    }

    async fn clear_unarchived(&self, session: &SessionId) -> Result<(), StoreError> {
        self.side.lock().await.unarchived.remove(session);
        Ok(())
    }
}

/// The archive in memory.
#[derive(Debug, Default)]
pub struct MemoryEventArchive {
    events: Mutex<HashMap<SessionId, BTreeMap<u64, GameEvent>>>,
    meta: Mutex<HashMap<SessionId, ArchiveMeta>>,
}

/// What the MongoDB archive keeps in a session's `sessions` document.
#[derive(Debug, Default, Clone)]
struct ArchiveMeta {
    archived_through: u64,
    pruned_through: u64,
    /// `None` until a touch or a hot mark: a session known only from its archive has had no
    /// recorded activity (MongoDB: no `lastEventAt` field).
    last_event_at: Option<u64>,
    hot: bool,
}

impl MemoryEventArchive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl EventArchive for MemoryEventArchive {
    async fn insert(&self, event: &GameEvent) -> Result<(), ArchiveError> {
        let mut all = self.events.lock().await;
        let session = all.entry(event.session_id.clone()).or_default();
        if let Some(existing) = session.get(&event.sequence.get()) {
            if existing.id == event.id {
                return Ok(());
            }
            return Err(ArchiveError::SequenceCollision {
                session: event.session_id.clone(),
                sequence: event.sequence,
                existing: existing.id.to_string(),
            });
        }
        if let Some(other) = session.values().find(|e| e.id == event.id) {
            return Err(ArchiveError::IdCollision {
                session: event.session_id.clone(),
                id: event.id.to_string(),
                existing: other.sequence,
            });
        }
        session.insert(event.sequence.get(), event.clone());
        Ok(())
    }

    async fn read(
        &self,
        session: &SessionId,
        after: Sequence,
        to: Option<Sequence>,
        limit: usize,
    ) -> Result<Vec<GameEvent>, ArchiveError> {
        let all = self.events.lock().await;
        let to = to.map_or(u64::MAX, Sequence::get);
        Ok(all
            .get(session)
            .map(|s| {
                s.range(after.get() + 1..)
                    .take_while(|(seq, _)| **seq <= to)
                    .take(limit)
                    .map(|(_, e)| e.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn archived_through(&self, session: &SessionId) -> Result<Sequence, ArchiveError> {
        let all = self.events.lock().await;
        let mut meta = self.meta.lock().await;
        let meta = meta.entry(session.clone()).or_default();
        let mut n = meta.archived_through.max(meta.pruned_through);
        if let Some(s) = all.get(session) {
            for seq in s.range(n + 1..).map(|(seq, _)| *seq) {
                if seq != n + 1 {
                    break;
                }
                n = seq;
            }
        }
        meta.archived_through = n;
        Ok(Sequence(n))
    }

    async fn ids(
        &self,
        session: &SessionId,
    ) -> Result<Vec<(EventId, Sequence, String)>, ArchiveError> {
        let all = self.events.lock().await;
        Ok(all
            .get(session)
            .map(|s| {
                s.values()
                    .map(|e| (e.id.clone(), e.sequence, e.content_hash()))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn touch(&self, session: &SessionId, at: u64) -> Result<(), ArchiveError> {
        let mut meta = self.meta.lock().await;
        let m = meta.entry(session.clone()).or_default();
        m.last_event_at = Some(m.last_event_at.map_or(at, |t| t.max(at)));
        m.hot = true;
        Ok(())
    }

    async fn active_since(
        &self,
        since: u64,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<SessionId>, ArchiveError> {
        let meta = self.meta.lock().await;
        let mut ids: Vec<&SessionId> = meta
            .iter()
            .filter(|(s, m)| {
                m.last_event_at.is_some_and(|t| t >= since) && after.is_none_or(|a| *s > a)
            })
            .map(|(s, _)| s)
            .collect();
        ids.sort();
        Ok(ids.into_iter().take(limit).cloned().collect())
    }

    async fn idle_hot(&self, before: u64, limit: usize) -> Result<Vec<SessionId>, ArchiveError> {
        let meta = self.meta.lock().await;
        let mut idle: Vec<(u64, &SessionId)> = meta
            .iter()
            .filter(|(_, m)| m.hot && m.last_event_at.unwrap_or(0) < before)
            .map(|(s, m)| (m.last_event_at.unwrap_or(0), s))
            .collect();
        idle.sort();
        Ok(idle
            .into_iter()
            .take(limit)
            .map(|(_, s)| s.clone())
            .collect())
    }

    async fn set_hot(&self, session: &SessionId, hot: bool) -> Result<(), ArchiveError> {
        let mut meta = self.meta.lock().await;
        let m = meta.entry(session.clone()).or_default();
        m.hot = hot;
        m.last_event_at.get_or_insert(0);
        Ok(())
    }

    async fn prune(
        &self,
        session: &SessionId,
        through: Sequence,
        older_than: u64,
    ) -> Result<u64, ArchiveError> {
        let mut all = self.events.lock().await;
        let Some(events) = all.get_mut(session) else {
            return Ok(0);
        };
        // The longest prefix that is old enough, so what stays is contiguous.
        let mut cutoff = 0;
        for (seq, e) in events.range(..=through.get()) {
            if e.timestamp >= older_than {
                break;
            }
            cutoff = *seq;
        }
        if cutoff == 0 {
            return Ok(0);
        }
        let keep = events.split_off(&(cutoff + 1));
        let removed = std::mem::replace(events, keep).len() as u64;
        let mut meta = self.meta.lock().await;
        let m = meta.entry(session.clone()).or_default();
        m.pruned_through = m.pruned_through.max(cutoff);
        Ok(removed)
    }

    async fn pruned_through(&self, session: &SessionId) -> Result<Sequence, ArchiveError> {
        Ok(Sequence(
            self.meta
                .lock()
                .await
                .get(session)
                .map_or(0, |m| m.pruned_through),
        ))
    }
}

/// The conflict report in memory.
#[derive(Debug, Default)]
pub struct MemoryConflictStore {
    conflicts: Mutex<BTreeMap<(SessionId, ConflictId), ConflictRecord>>,
}

impl MemoryConflictStore {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl ConflictStore for MemoryConflictStore {
    async fn create(&self, conflict: &ConflictRecord) -> Result<bool, StoreError> {
        let mut all = self.conflicts.lock().await;
        let key = (conflict.session_id.clone(), conflict.conflict_id.clone());
        if all.contains_key(&key) {
            return Ok(false);
        }
        all.insert(key, conflict.clone());
        Ok(true)
    }

    async fn get(
        &self,
        session: &SessionId,
        id: &ConflictId,
    ) -> Result<Option<ConflictRecord>, StoreError> {
        Ok(self
            .conflicts
            .lock()
            .await
            .get(&(session.clone(), id.clone()))
            .cloned())
    }

    async fn list(
        &self,
        session: &SessionId,
        page: &PageRequest<ConflictKey>,
    ) -> Result<Page<ConflictRecord, ConflictKey>, StoreError> {
        let all = self.conflicts.lock().await;
        let mut items: Vec<&ConflictRecord> =
            all.values().filter(|c| &c.session_id == session).collect();
        // Newest first: createdAt descending, then id descending.
        items.sort_by(|a, b| (b.created_at, &b.conflict_id).cmp(&(a.created_at, &a.conflict_id)));
        let after = page.after.as_ref();
        let rest = items.into_iter().filter(|c| {
            after.is_none_or(|k| (c.created_at, &c.conflict_id) < (k.created_at, &k.id))
        });
        fill_page(
            page.limit,
            page.max_bytes,
            rest.cloned(),
            BACKEND,
            "conflict",
        )
    }

    async fn resolve(
        &self,
        session: &SessionId,
        id: &ConflictId,
        resolution: &Resolution,
    ) -> Result<Option<ConflictRecord>, StoreError> {
        let mut all = self.conflicts.lock().await;
        match all.get_mut(&(session.clone(), id.clone())) {
            Some(c) if !c.resolved => {
                c.resolved = true;
                c.resolution = Some(resolution.clone());
                Ok(Some(c.clone()))
            }
            _ => Ok(None),
        }
    }
}

#[derive(Debug, Default)]
struct CampaignData {
    campaigns: BTreeMap<CampaignId, Campaign>,
    actors: BTreeMap<(CampaignId, ActorId), Actor>,
    compendium: BTreeMap<String, CompendiumEntry>,
    sessions: BTreeMap<SessionId, GameSession>,
}

impl CampaignData {
    fn actors_of<'a>(&'a self, campaign: &'a CampaignId) -> impl Iterator<Item = &'a Actor> + 'a {
        self.actors
            .range((campaign.clone(), ActorId::new(""))..)
            .take_while(move |((c, _), _)| c == campaign)
            .map(|(_, a)| a)
    }

    fn session_count(&self, campaign: &CampaignId) -> usize {
        self.sessions
            .values()
            .filter(|s| &s.campaign_id == campaign)
            .count()
    }

    /// Refuses a create when the campaign is missing or holds `limit` already.
    fn check_count(
        &self,
        campaign: &CampaignId,
        quota: Quota,
        limit: u64,
    ) -> Result<(), QuotaError> {
        self.check_room(campaign, quota, limit, 1)
    }

    /// Whether `needed` more items fit under the quota.
    fn check_room(
        &self,
        campaign: &CampaignId,
        quota: Quota,
        limit: u64,
        needed: usize,
    ) -> Result<(), QuotaError> {
        if !self.campaigns.contains_key(campaign) {
            return Err(QuotaError::NoCampaign(campaign.clone()));
        }
        let count = match quota {
            Quota::Actors => self.actors_of(campaign).count(),
            Quota::Sessions => self.session_count(campaign),
        };
        if (count as u64).saturating_add(needed as u64) > limit {
            return Err(QuotaError::Exceeded {
                campaign: campaign.clone(),
                quota,
                limit,
            });
        }
        Ok(())
    }
}

/// Campaign data in memory. Every operation runs under one lock, so a count quota is checked
/// and the item inserted in one step.
#[derive(Debug, Default)]
pub struct MemoryCampaignStore {
    data: Mutex<CampaignData>,
}

impl MemoryCampaignStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl CampaignStore for MemoryCampaignStore {
    async fn create_campaign(&self, campaign: &Campaign) -> Result<(), StoreError> {
        let mut data = self.data.lock().await;
        if data.campaigns.contains_key(&campaign.id) {
            return Err(StoreError::AlreadyExists(format!(
                "campaign {}",
                campaign.id
            )));
        }
        data.campaigns.insert(campaign.id.clone(), campaign.clone());
        Ok(())
    }

    async fn campaign(&self, id: &CampaignId) -> Result<Option<Campaign>, StoreError> {
        Ok(self.data.lock().await.campaigns.get(id).cloned())
    }

    async fn campaigns_of(
        &self,
        user: &UserId,
        page: &PageRequest<CampaignKey>,
    ) -> Result<Page<Campaign, CampaignKey>, StoreError> {
        let data = self.data.lock().await;
        let start = match &page.after {
            Some(key) => Bound::Excluded(&key.id),
            None => Bound::Unbounded,
        };
        let items = data
            .campaigns
            .range::<CampaignId, _>((start, Bound::Unbounded))
            .map(|(_, c)| c)
            .filter(|c| c.is_member(user))
            .cloned();
        fill_page(
            page.clamped_limit(),
            page.max_bytes,
            items,
            BACKEND,
            "campaign",
        )
    }

    async fn put_member(
        &self,
        campaign: &CampaignId,
        user: &UserId,
        role: MemberRole,
    ) -> Result<Option<Campaign>, StoreError> {
        let mut data = self.data.lock().await;
        let Some(c) = data.campaigns.get_mut(campaign) else {
            return Ok(None);
        };
        match c.members.iter_mut().find(|m| &m.user_id == user) {
            Some(m) => m.role = role,
            None => c.members.push(Member {
                user_id: user.clone(),
                role,
            }),
        }
        Ok(Some(c.clone()))
    }

    async fn remove_member(
        &self,
        campaign: &CampaignId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        let mut data = self.data.lock().await;
        let Some(c) = data.campaigns.get_mut(campaign) else {
            return Ok(false);
        };
        let before = c.members.len();
        c.members.retain(|m| &m.user_id != user);
        Ok(c.members.len() != before)
    }

    async fn create_actor(&self, actor: &Actor, quotas: &CampaignQuotas) -> Result<(), QuotaError> {
        quotas.check_actor_size(actor)?;
        let mut data = self.data.lock().await;
        data.check_count(&actor.campaign_id, Quota::Actors, quotas.max_actors)?;
        let key = (actor.campaign_id.clone(), actor.id.clone());
        if data.actors.contains_key(&key) {
            return Err(StoreError::AlreadyExists(format!("actor {}", actor.id)).into());
        }
        data.actors.insert(key, actor.clone());
        Ok(())
    }

    async fn create_actors(
        &self,
        actors: &[Actor],
        quotas: &CampaignQuotas,
    ) -> Result<(), QuotaError> {
        let Some(campaign) = crate::model::batch_campaign(actors)? else {
            return Ok(());
        };
        for actor in actors {
            quotas.check_actor_size(actor)?;
        }
        let mut data = self.data.lock().await;
        data.check_room(campaign, Quota::Actors, quotas.max_actors, actors.len())?;
        let mut ids = std::collections::HashSet::new();
        for actor in actors {
            let key = (actor.campaign_id.clone(), actor.id.clone());
            if data.actors.contains_key(&key) || !ids.insert(actor.id.clone()) {
                return Err(StoreError::AlreadyExists(format!("actor {}", actor.id)).into());
            }
        }
        for actor in actors {
            data.actors
                .insert((actor.campaign_id.clone(), actor.id.clone()), actor.clone());
        }
        Ok(())
    }

    async fn actor(
        &self,
        campaign: &CampaignId,
        id: &ActorId,
    ) -> Result<Option<Actor>, StoreError> {
        Ok(self
            .data
            .lock()
            .await
            .actors
            .get(&(campaign.clone(), id.clone()))
            .cloned())
    }

    async fn actors(
        &self,
        campaign: &CampaignId,
        page: &PageRequest<ActorKey>,
    ) -> Result<Page<Actor, ActorKey>, StoreError> {
        let data = self.data.lock().await;
        let mut ordered: Vec<(ActorKey, &Actor)> = data
            .actors_of(campaign)
            .map(|a| (a.key(), a))
            .filter(|(key, _)| page.after.as_ref().is_none_or(|after| key > after))
            .collect();
        ordered.sort_by(|a, b| a.0.cmp(&b.0));
        fill_page(
            page.clamped_limit(),
            page.max_bytes,
            ordered.into_iter().map(|(_, a)| a.clone()),
            BACKEND,
            "actor",
        )
    }

    async fn update_actor(
        &self,
        actor: &Actor,
        quotas: &CampaignQuotas,
    ) -> Result<bool, QuotaError> {
        quotas.check_actor_size(actor)?;
        let mut data = self.data.lock().await;
        let key = (actor.campaign_id.clone(), actor.id.clone());
        match data.actors.get_mut(&key) {
            Some(slot) => {
                *slot = actor.clone();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn delete_actor(&self, campaign: &CampaignId, id: &ActorId) -> Result<bool, StoreError> {
        Ok(self
            .data
            .lock()
            .await
            .actors
            .remove(&(campaign.clone(), id.clone()))
            .is_some())
    }

    async fn put_compendium(&self, entries: &[CompendiumEntry]) -> Result<(), StoreError> {
        let mut data = self.data.lock().await;
        for e in entries {
            data.compendium.insert(e.reference.clone(), e.clone());
        }
        Ok(())
    }

    async fn compendium_entry(
        &self,
        reference: &str,
    ) -> Result<Option<CompendiumEntry>, StoreError> {
        Ok(self.data.lock().await.compendium.get(reference).cloned())
    }

    async fn search_compendium(
        &self,
        query: &CompendiumQuery,
    ) -> Result<CompendiumPage, StoreError> {
        let data = self.data.lock().await;
        let needle = query.q.as_ref().map(|q| q.to_lowercase());
        let start = query.cursor.clone().unwrap_or_default();
        let items = data
            .compendium
            .range::<String, _>((Bound::Excluded(&start), Bound::Unbounded))
            .map(|(_, e)| e)
            .filter(|e| query.system.as_ref().is_none_or(|s| &e.system == s))
            .filter(|e| query.category.as_ref().is_none_or(|c| &e.category == c))
            .filter(|e| query.matches_numbers(e))
            .filter(|e| {
                needle
                    .as_ref()
                    .is_none_or(|n| e.name.to_lowercase().contains(n.as_str()))
            })
            .cloned();
        let page = fill_page(
            query.limit.clamp(1, 100),
            query.max_bytes,
            items,
            BACKEND,
            "compendium entry",
        )?;
        Ok(CompendiumPage {
            items: page.items,
            next_cursor: page.next.map(|k| k.reference),
        })
    }

    async fn create_session(
        &self,
        session: &GameSession,
        quotas: &CampaignQuotas,
    ) -> Result<(), QuotaError> {
        let mut data = self.data.lock().await;
        data.check_count(&session.campaign_id, Quota::Sessions, quotas.max_sessions)?;
        if data.sessions.contains_key(&session.id) {
            return Err(StoreError::AlreadyExists(format!("session {}", session.id)).into());
        }
        data.sessions.insert(session.id.clone(), session.clone());
        Ok(())
    }

    async fn session(&self, id: &SessionId) -> Result<Option<GameSession>, StoreError> {
        Ok(self.data.lock().await.sessions.get(id).cloned())
    }

    async fn sessions(
        &self,
        campaign: &CampaignId,
        page: &PageRequest<SessionKey>,
    ) -> Result<Page<GameSession, SessionKey>, StoreError> {
        let data = self.data.lock().await;
        let newest_first = |s: &GameSession| std::cmp::Reverse((s.created_at, s.id.clone()));
        let after = page
            .after
            .as_ref()
            .map(|k| std::cmp::Reverse((k.created_at, k.id.clone())));
        let mut out: Vec<&GameSession> = data
            .sessions
            .values()
            .filter(|s| &s.campaign_id == campaign)
            .filter(|s| after.as_ref().is_none_or(|a| &newest_first(s) > a))
            .collect();
        out.sort_by_key(|s| newest_first(s));
        fill_page(
            page.clamped_limit(),
            page.max_bytes,
            out.into_iter().cloned(),
            BACKEND,
            "session",
        )
    }

    async fn update_session(&self, session: &GameSession) -> Result<bool, StoreError> {
        let mut data = self.data.lock().await;
        match data.sessions.get_mut(&session.id) {
            Some(slot) => {
                // Like the Mongo adapter: archivedThrough only ever moves forward.
                let archived_through = slot.archived_through.max(session.archived_through);
                *slot = session.clone();
                slot.archived_through = archived_through;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Snapshots in memory.
#[derive(Debug, Default)]
pub struct MemorySnapshotStore {
    snapshots: Mutex<HashMap<SessionId, BTreeMap<u64, Snapshot>>>,
}

impl MemorySnapshotStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl SnapshotStore for MemorySnapshotStore {
    async fn put(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.snapshots
            .lock()
            .await
            .entry(snapshot.session_id.clone())
            .or_default()
            .insert(snapshot.up_to_sequence.get(), snapshot.clone());
        Ok(())
    }

    async fn latest(&self, session: &SessionId) -> Result<Option<Snapshot>, StoreError> {
        Ok(self
            .snapshots
            .lock()
            .await
            .get(session)
            .and_then(|s| s.values().next_back().cloned()))
    }
}

#[derive(Debug, Default)]
struct Registry {
    connections: HashMap<ConnectionId, Connection>,
    /// session → connection → subscription
    sessions: HashMap<SessionId, BTreeMap<ConnectionId, Subscription>>,
    /// Claimed ticket ids → when the ticket expires (ms); expired claims are pruned.
    tickets: HashMap<Uuid, u64>,
}

/// Connections and subscriptions in memory.
#[derive(Debug, Default)]
pub struct MemoryConnectionRegistry {
    inner: Mutex<Registry>,
}

impl MemoryConnectionRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl ConnectionRegistry for MemoryConnectionRegistry {
    async fn add_connection(
        &self,
        connection: &Connection,
        limit: usize,
    ) -> Result<Admission, StoreError> {
        let now = now_ms();
        let mut inner = self.inner.lock().await;
        let open = inner
            .connections
            .values()
            .filter(|c| c.user_id == connection.user_id && c.expires_at > now)
            .count();
        let renewal = inner
            .connections
            .get(&connection.id)
            .is_some_and(|c| c.user_id == connection.user_id && c.expires_at > now);
        if !renewal && open >= limit {
            return Ok(Admission::Refused { open });
        }
        inner
            .connections
            .insert(connection.id.clone(), connection.clone());
        Ok(Admission::Admitted)
    }

    async fn claim_ticket(&self, jti: Uuid, expires_at_ms: u64) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut inner = self.inner.lock().await;
        inner.tickets.retain(|_, expires| *expires > now);
        match inner.tickets.entry(jti) {
            std::collections::hash_map::Entry::Occupied(_) => Ok(false),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(expires_at_ms);
                Ok(true)
            }
        }
    }

    async fn connection(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError> {
        let now = now_ms();
        Ok(self
            .inner
            .lock()
            .await
            .connections
            .get(id)
            .filter(|c| c.expires_at > now)
            .cloned())
    }

    async fn connection_in(
        &self,
        id: &ConnectionId,
        session: &SessionId,
    ) -> Result<Option<(Connection, bool)>, StoreError> {
        let now = now_ms();
        let inner = self.inner.lock().await;
        let Some(connection) = inner.connections.get(id).filter(|c| c.expires_at > now) else {
            return Ok(None);
        };
        let subscribed = inner
            .sessions
            .get(session)
            .and_then(|s| s.get(id))
            .is_some_and(|s| s.expires_at > now);
        Ok(Some((connection.clone(), subscribed)))
    }

    async fn subscribe(&self, subscription: &Subscription) -> Result<(), StoreError> {
        self.inner
            .lock()
            .await
            .sessions
            .entry(subscription.session_id.clone())
            .or_default()
            .insert(subscription.connection_id.clone(), subscription.clone());
        Ok(())
    }

    async fn unsubscribe(
        &self,
        connection: &ConnectionId,
        session: &SessionId,
    ) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock().await;
        Ok(inner
            .sessions
            .get_mut(session)
            .and_then(|s| s.remove(connection))
            .is_some())
    }

    async fn is_subscribed(
        &self,
        connection: &ConnectionId,
        session: &SessionId,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let inner = self.inner.lock().await;
        Ok(inner
            .sessions
            .get(session)
            .and_then(|s| s.get(connection))
            .is_some_and(|s| s.expires_at > now))
    }

    async fn subscriptions_of(
        &self,
        connection: &ConnectionId,
    ) -> Result<Vec<SessionId>, StoreError> {
        let inner = self.inner.lock().await;
        let mut out: Vec<SessionId> = inner
            .sessions
            .iter()
            .filter(|(_, subs)| subs.contains_key(connection))
            .map(|(s, _)| s.clone())
            .collect();
        out.sort();
        Ok(out)
    }

    async fn session_connections(
        &self,
        session: &SessionId,
    ) -> Result<Vec<Subscription>, StoreError> {
        let now = now_ms();
        let inner = self.inner.lock().await;
        Ok(inner
            .sessions
            .get(session)
            .map(|s| {
                s.values()
                    .filter(|sub| sub.expires_at > now)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn remove_connection(&self, id: &ConnectionId) -> Result<Vec<Subscription>, StoreError> {
        let mut inner = self.inner.lock().await;
        inner.connections.remove(id);
        let mut removed = Vec::new();
        for subs in inner.sessions.values_mut() {
            if let Some(s) = subs.remove(id) {
                removed.push(s);
            }
        }
        removed.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        Ok(removed)
    }

    async fn remove_user_subscriptions(
        &self,
        user: &UserId,
        sessions: &[SessionId],
    ) -> Result<Vec<Subscription>, StoreError> {
        let mut inner = self.inner.lock().await;
        let mut removed = Vec::new();
        for session in sessions {
            if let Some(subs) = inner.sessions.get_mut(session) {
                let gone: Vec<ConnectionId> = subs
                    .values()
                    .filter(|s| &s.user_id == user)
                    .map(|s| s.connection_id.clone())
                    .collect();
                for c in gone {
                    if let Some(s) = subs.remove(&c) {
                        removed.push(s);
                    }
                }
            }
        }
        Ok(removed)
    }
}

/// A token bucket per key in memory.
#[derive(Debug, Default)]
pub struct MemoryRateLimiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl MemoryRateLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn try_acquire(
        &self,
        key: &str,
        per_second: f64,
        burst: u32,
    ) -> Result<Acquire, StoreError> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().await;
        let (tokens, last) = buckets.entry(key.to_owned()).or_insert((burst as f64, now));
        let refill = now.duration_since(*last).as_secs_f64() * per_second;
        *tokens = (*tokens + refill).min(burst as f64);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(Acquire::Taken)
        } else {
            Ok(Acquire::Limited {
                retry_after: Duration::from_secs_f64((1.0 - *tokens) / per_second),
            })
        }
    }
}

/// Posts to in-process channels, one per connection; a dropped receiver is `Gone`.
#[derive(Debug, Default, Clone)]
pub struct MemoryNotifier {
    channels: Arc<std::sync::Mutex<HashMap<ConnectionId, mpsc::UnboundedSender<Vec<u8>>>>>,
}

impl MemoryNotifier {
    /// No connections yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens a connection and returns the receiving end of its frames.
    pub fn open(&self, id: &ConnectionId) -> mpsc::UnboundedReceiver<Vec<u8>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.channels
            .lock()
            .expect("notifier lock")
            .insert(id.clone(), tx);
        rx
    }

    /// Closes a connection: later posts answer `Gone`.
    pub fn close(&self, id: &ConnectionId) {
        self.channels.lock().expect("notifier lock").remove(id);
    }
}

#[async_trait]
impl Notifier for MemoryNotifier {
    async fn post(
        &self,
        connection: &ConnectionId,
        data: &[u8],
    ) -> Result<PostOutcome, NotifyError> {
        let mut channels = self.channels.lock().expect("notifier lock");
        let delivered = channels
            .get(connection)
            .is_some_and(|tx| tx.send(data.to_vec()).is_ok());
        if delivered {
            Ok(PostOutcome::Delivered)
        } else {
            channels.remove(connection);
            Ok(PostOutcome::Gone)
        }
    }
}

#[cfg(test)]
mod registry_tests {
    use super::*;

    #[tokio::test]
    async fn expired_ticket_claims_are_pruned() {
        let registry = MemoryConnectionRegistry::new();
        for _ in 0..100 {
            assert!(
                registry
                    .claim_ticket(Uuid::new_v4(), now_ms() - 1)
                    .await
                    .unwrap()
            );
        }
        let live = Uuid::new_v4();
        assert!(
            registry
                .claim_ticket(live, now_ms() + 60_000)
                .await
                .unwrap()
        );
        assert_eq!(
            registry.inner.lock().await.tickets.len(),
            1,
            "only the unexpired claim is kept"
        );
        assert!(
            !registry
                .claim_ticket(live, now_ms() + 60_000)
                .await
                .unwrap()
        );
    }
}
