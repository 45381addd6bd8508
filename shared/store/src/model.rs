//! Records kept by the stores that are not pure domain values: campaigns, sessions,
//! connections; the paging of listings and the per-campaign quotas.

use dlab_core::actor::{Actor, CompendiumEntry};
use dlab_core::ids::{ActorId, CampaignId, ConflictId, ConnectionId, EventId, SessionId, UserId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::StoreError;

/// A member's role in a campaign. Members with `gm` count as GMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    /// A player.
    Player,
    /// A co-GM.
    Gm,
}

/// A campaign member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// The user.
    pub user_id: UserId,
    /// Their role.
    pub role: MemberRole,
}

/// A campaign: its GM, members and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Campaign {
    /// Id.
    pub id: CampaignId,
    /// Display name.
    pub name: String,
    /// The user who created it and owns it.
    pub gm_user_id: UserId,
    /// Members other than the owner.
    #[serde(default)]
    pub members: Vec<Member>,
    /// Creation time (ms).
    pub created_at: u64,
}

impl Campaign {
    /// Whether the user is the owner or a member with the GM role.
    pub fn is_gm(&self, user: &UserId) -> bool {
        &self.gm_user_id == user
            || self
                .members
                .iter()
                .any(|m| &m.user_id == user && m.role == MemberRole::Gm)
    }

    /// Whether the user is the owner or any member.
    pub fn is_member(&self, user: &UserId) -> bool {
        &self.gm_user_id == user || self.members.iter().any(|m| &m.user_id == user)
    }
}

/// Lifecycle of a game session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    /// Open for events.
    Active,
    /// Ended: final snapshot taken, hot state released.
    Ended,
}

/// A game session document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GameSession {
    /// Id.
    pub id: SessionId,
    /// Its campaign.
    pub campaign_id: CampaignId,
    /// Display name.
    pub name: String,
    /// Status.
    pub status: SessionStatus,
    /// Who created it.
    pub created_by: UserId,
    /// Creation time (ms).
    pub created_at: u64,
    /// Highest sequence with every event 1..=n in the archive.
    #[serde(default)]
    pub archived_through: u64,
}

/// A WebSocket connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// API Gateway's connection id.
    pub id: ConnectionId,
    /// The verified user.
    pub user_id: UserId,
    /// Connect time (ms).
    pub connected_at: u64,
    /// When the record may be dropped (ms); API Gateway closes every socket after 2 h.
    pub expires_at: u64,
}

/// A connection subscribed to a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// The connection.
    pub connection_id: ConnectionId,
    /// The session.
    pub session_id: SessionId,
    /// The connection's user.
    pub user_id: UserId,
    /// When the record may be dropped (ms).
    pub expires_at: u64,
}

/// A compendium search.
#[derive(Debug, Clone, PartialEq)]
pub struct CompendiumQuery {
    /// Case-insensitive substring of the name.
    pub q: Option<String>,
    /// Category (`monsters`, `spells`, `equipment`).
    pub category: Option<String>,
    /// Game system (`dnd5e`).
    pub system: Option<String>,
    /// Lowest challenge rating, inclusive ([`CompendiumEntry::challenge_rating`]); entries
    /// without one are left out when this or `cr_max` is set.
    pub cr_min: Option<f64>,
    /// Highest challenge rating, inclusive.
    pub cr_max: Option<f64>,
    /// Spell level ([`CompendiumEntry::spell_level`]); entries without one are left out.
    pub level: Option<i64>,
    /// Page size (1..=100).
    pub limit: usize,
    /// Exclusive start: the last reference of the previous page.
    pub cursor: Option<String>,
    /// Most bytes of the entries' JSON on one page (see [`PageFill`]).
    pub max_bytes: usize,
}

impl Default for CompendiumQuery {
    fn default() -> Self {
        Self {
            q: None,
            category: None,
            system: None,
            cr_min: None,
            cr_max: None,
            level: None,
            limit: 20,
            cursor: None,
            max_bytes: DEFAULT_MAX_PAGE_BYTES,
        }
    }
}

impl CompendiumQuery {
    /// Whether an entry passes the challenge-rating and level filters (the memory and SQLite
    /// adapters filter with this; MongoDB filters on the fields it stores beside the entry).
    pub fn matches_numbers(&self, entry: &CompendiumEntry) -> bool {
        if self.cr_min.is_some() || self.cr_max.is_some() {
            let Some(cr) = entry.challenge_rating() else {
                return false;
            };
            if self.cr_min.is_some_and(|min| cr < min) || self.cr_max.is_some_and(|max| cr > max) {
                return false;
            }
        }
        self.level
            .is_none_or(|level| entry.spell_level() == Some(level))
    }
}

/// One page of compendium results.
#[derive(Debug, Clone, PartialEq)]
pub struct CompendiumPage {
    /// Entries ordered by reference.
    pub items: Vec<CompendiumEntry>,
    /// Cursor of the next page, if there may be one.
    pub next_cursor: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Paging.

/// Most items any listing returns on one page, whatever the request asks.
pub const MAX_PAGE_ITEMS: usize = 1000;

/// Default byte budget of one page: far under Lambda's 6 MB response limit, with room for the
/// envelope and for one item larger than the budget (a page always carries at least one item).
pub const DEFAULT_MAX_PAGE_BYTES: usize = 1024 * 1024;

/// What part of a listing to read. `K` is the listing's sort key ([`ListKey`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest<K> {
    /// Exclusive start: the key of the last item of the previous page (`None`: from the start).
    pub after: Option<K>,
    /// Most items, clamped to `1..=`[`MAX_PAGE_ITEMS`].
    pub limit: usize,
    /// Most bytes of the items' compact JSON, one separator per item included; the first item is
    /// taken whatever its size, so a page is never empty while items remain.
    pub max_bytes: usize,
}

impl<K> PageRequest<K> {
    /// The first page of `limit` items under the default byte budget.
    pub fn first(limit: usize) -> Self {
        Self {
            after: None,
            limit,
            max_bytes: DEFAULT_MAX_PAGE_BYTES,
        }
    }

    /// The same request resuming after `key`.
    pub fn after(self, key: K) -> Self {
        Self {
            after: Some(key),
            ..self
        }
    }

    /// `limit` clamped to what a store returns.
    pub fn clamped_limit(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE_ITEMS)
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T, K> {
    /// The items, in the listing's order.
    pub items: Vec<T>,
    /// The key of the last item when more items follow; `None` only when the listing is
    /// complete (stores look one item ahead, so a full last page has no next key either).
    pub next: Option<K>,
}

/// The sort key of a listing, carried between pages as an opaque cursor.
///
/// A cursor is the hex of `{"l": LISTING, "k": key}`: opaque to clients, exact (names and ids
/// round-trip byte for byte, so a range query resumes precisely), and tied to its listing so a
/// cursor of one list is refused by another.
pub trait ListKey: Serialize + DeserializeOwned + Clone {
    /// Names the listing inside the cursor.
    const LISTING: &'static str;

    /// The opaque cursor of this key.
    fn to_cursor(&self) -> String {
        #[derive(Serialize)]
        struct Envelope<'a, K> {
            l: &'a str,
            k: &'a K,
        }
        let json = serde_json::to_vec(&Envelope {
            l: Self::LISTING,
            k: self,
        })
        .expect("list keys serialize: strings and integers");
        let mut out = String::with_capacity(json.len() * 2);
        for b in json {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        out
    }

    /// Reads a cursor made by [`ListKey::to_cursor`] for this listing.
    fn from_cursor(cursor: &str) -> Result<Self, CursorError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Envelope<K> {
            l: String,
            k: K,
        }
        if cursor.len() > MAX_CURSOR_CHARS {
            return Err(CursorError::TooLong {
                len: cursor.len(),
                max: MAX_CURSOR_CHARS,
            });
        }
        let raw = cursor.as_bytes();
        if !raw.len().is_multiple_of(2) {
            return Err(CursorError::NotHex);
        }
        let json = raw
            .chunks(2)
            .map(|pair| Some(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?))
            .collect::<Option<Vec<u8>>>()
            .ok_or(CursorError::NotHex)?;
        let envelope: Envelope<Self> = serde_json::from_slice(&json).map_err(CursorError::Json)?;
        if envelope.l != Self::LISTING {
            return Err(CursorError::OtherListing {
                expected: Self::LISTING,
            });
        }
        Ok(envelope.k)
    }
}

/// Longest cursor accepted: the longest key (a 200-character name of 4-byte characters and a
/// UUID) as hex is far below it, and a URL stays well inside API Gateway's limits.
pub const MAX_CURSOR_CHARS: usize = 4096;

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// A `cursor` that no page of this listing produced. Edge: 400 `invalid_message` naming the
/// parameter.
#[derive(Debug, Error)]
pub enum CursorError {
    /// Not lower-case hex.
    #[error("not a cursor of this list (malformed)")]
    NotHex,
    /// Longer than any cursor this server makes.
    #[error("not a cursor of this list ({len} characters, at most {max})")]
    TooLong {
        /// Its length.
        len: usize,
        /// [`MAX_CURSOR_CHARS`].
        max: usize,
    },
    /// Hex, but not a key.
    #[error("not a cursor of this list")]
    Json(#[source] serde_json::Error),
    /// A cursor of another listing.
    #[error("not a cursor of this list (it belongs to another list than {expected})")]
    OtherListing {
        /// The listing that was read.
        expected: &'static str,
    },
}

/// An item of a listing: knows its sort key, so a page can say where the next one starts.
pub trait Listed {
    /// The listing's sort key.
    type Key: ListKey;
    /// This item's key.
    fn key(&self) -> Self::Key;
}

/// Campaigns of a user, ordered by id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CampaignKey {
    /// The campaign id.
    pub id: CampaignId,
}

impl ListKey for CampaignKey {
    const LISTING: &'static str = "campaigns";
}

impl Listed for Campaign {
    type Key = CampaignKey;
    fn key(&self) -> CampaignKey {
        CampaignKey {
            id: self.id.clone(),
        }
    }
}

/// Actors of a campaign, ordered by name then id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ActorKey {
    /// The actor's name.
    pub name: String,
    /// The actor's id (ties of names).
    pub id: ActorId,
}

impl ListKey for ActorKey {
    const LISTING: &'static str = "actors";
}

impl Listed for Actor {
    type Key = ActorKey;
    fn key(&self) -> ActorKey {
        ActorKey {
            name: self.name.clone(),
            id: self.id.clone(),
        }
    }
}

/// Sessions of a campaign, newest first: `createdAt` descending, then id descending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionKey {
    /// Creation time (ms).
    pub created_at: u64,
    /// The session id (ties of times).
    pub id: SessionId,
}

impl ListKey for SessionKey {
    const LISTING: &'static str = "sessions";
}

impl Listed for GameSession {
    type Key = SessionKey;
    fn key(&self) -> SessionKey {
        SessionKey {
            created_at: self.created_at,
            id: self.id.clone(),
        }
    }
}

/// What kind of race a conflict reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictKind {
    /// Blind writes (`{to}` without `from`) to one path by different users inside the window.
    BlindWrite,
    /// A compare-and-set rejection its sender escalated instead of rebasing.
    CasRejection,
}

/// How the GM resolved a conflict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolution {
    /// The GM who resolved it.
    pub resolved_by: UserId,
    /// When (ms).
    pub resolved_at: u64,
    /// The `core:gm_override` event that applied the decision.
    pub override_event_id: EventId,
    /// The option chosen, when the GM chose one (else a `finalState` was given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_event_id: Option<EventId>,
    /// What the override force-set: `{instanceId: {path: value}}` (kept so a retried resolve
    /// commits the very same override).
    pub final_state: serde_json::Value,
}

/// One entry of the GM's conflict report, as stored and as `GET /sessions/{id}/conflicts`
/// lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConflictRecord {
    /// Stable id (a blind-write race: `<instance>:<path>:<first sequence>`; an escalation:
    /// `cas:<event id>`), so the same race is reported once.
    pub conflict_id: ConflictId,
    /// The session.
    pub session_id: SessionId,
    /// Which kind of race.
    pub kind: ConflictKind,
    /// One line for the GM.
    pub description: String,
    /// The choices offered (each names an `eventId` and the values it stands for).
    pub options: Vec<serde_json::Value>,
    /// The events involved (writes or the rejected event), as the report describes them.
    pub events: Vec<serde_json::Value>,
    /// The values the resolution applies, per option: `{eventId: {instanceId: {path: value}}}`
    /// (what `chosenEventId` force-sets).
    pub choices: serde_json::Value,
    /// When it was reported (ms).
    pub created_at: u64,
    /// Whether the GM resolved it.
    pub resolved: bool,
    /// How, once resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
}

/// Conflicts of a session, newest first: `createdAt` descending, then id descending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictKey {
    /// Report time (ms).
    pub created_at: u64,
    /// The conflict id (ties of times).
    pub id: ConflictId,
}

impl ListKey for ConflictKey {
    const LISTING: &'static str = "conflicts";
}

impl Listed for ConflictRecord {
    type Key = ConflictKey;
    fn key(&self) -> ConflictKey {
        ConflictKey {
            created_at: self.created_at,
            id: self.conflict_id.clone(),
        }
    }
}

/// Compendium entries, ordered by reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompendiumKey {
    /// The entry's reference.
    pub reference: String,
}

impl ListKey for CompendiumKey {
    const LISTING: &'static str = "compendium";
}

impl Listed for CompendiumEntry {
    type Key = CompendiumKey;
    fn key(&self) -> CompendiumKey {
        CompendiumKey {
            reference: self.reference.clone(),
        }
    }
}

/// The compact JSON size of a value, counted without building the string.
pub fn json_size<T: Serialize + ?Sized>(value: &T) -> Result<usize, serde_json::Error> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value)?;
    Ok(count.0)
}

/// Fills one page from items offered in listing order, under an item count and a byte budget:
/// the page is cut before the item that would pass either, and the first item is always taken.
/// Every adapter and the events route page with it, so they cut at the same place.
#[derive(Debug)]
pub struct PageFill<T> {
    items: Vec<T>,
    bytes: usize,
    limit: usize,
    max_bytes: usize,
    more: bool,
}

impl<T: Serialize> PageFill<T> {
    /// An empty page of at most `limit` items (at least 1) and `max_bytes` bytes.
    pub fn new(limit: usize, max_bytes: usize) -> Self {
        Self {
            items: Vec::new(),
            bytes: 0,
            limit: limit.max(1),
            max_bytes,
            more: false,
        }
    }

    /// Offers the next item. `false` when the page is full: the item is not taken, the page
    /// records that more follow, and the caller stops reading.
    pub fn offer(&mut self, item: T) -> Result<bool, serde_json::Error> {
        if self.more {
            return Ok(false);
        }
        let size = json_size(&item)?;
        let separator = usize::from(!self.items.is_empty());
        let fits = self.items.is_empty()
            || (self.items.len() < self.limit
                && self.bytes.saturating_add(separator + size) <= self.max_bytes);
        if !fits {
            self.more = true;
            return Ok(false);
        }
        self.bytes += separator + size;
        self.items.push(item);
        Ok(true)
    }

    /// Whether an item was refused (the page is full and more follow).
    pub fn is_full(&self) -> bool {
        self.more
    }

    /// The bytes taken so far (items and separators).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The items taken, and whether an item was refused.
    pub fn into_parts(self) -> (Vec<T>, bool) {
        (self.items, self.more)
    }
}

impl<T: Serialize + Listed> PageFill<T> {
    /// The page: its items, and the last one's key when an item was refused.
    pub fn into_page(self) -> Page<T, T::Key> {
        let next = if self.more {
            self.items.last().map(Listed::key)
        } else {
            None
        };
        Page {
            items: self.items,
            next,
        }
    }
}

/// Offers items to a page until it is full; a serialization failure is a corrupt record.
pub fn fill_page<T, I>(
    request_limit: usize,
    max_bytes: usize,
    items: I,
    backend: &'static str,
    what: &'static str,
) -> Result<Page<T, T::Key>, StoreError>
where
    T: Serialize + Listed,
    I: IntoIterator<Item = T>,
{
    let mut fill = PageFill::new(request_limit.clamp(1, MAX_PAGE_ITEMS), max_bytes);
    for item in items {
        if !fill
            .offer(item)
            .map_err(|e| StoreError::corrupt(backend, what, e))?
        {
            break;
        }
    }
    Ok(fill.into_page())
}

// ---------------------------------------------------------------------------------------------
// Quotas.

/// Default most actors per campaign.
pub const DEFAULT_MAX_ACTORS_PER_CAMPAIGN: u64 = 1000;
/// Default largest actor: its stored JSON document, in bytes.
pub const DEFAULT_MAX_ACTOR_BYTES: usize = 256 * 1024;
/// Default most sessions per campaign (ended sessions count: they keep their archive).
pub const DEFAULT_MAX_SESSIONS_PER_CAMPAIGN: u64 = 200;

/// Per-campaign limits that a create or update must respect. The stores enforce the counts
/// atomically, so concurrent creates cannot pass them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CampaignQuotas {
    /// Most actors in one campaign.
    pub max_actors: u64,
    /// Largest actor (compact JSON bytes of the stored document).
    pub max_actor_bytes: usize,
    /// Most sessions in one campaign.
    pub max_sessions: u64,
}

impl Default for CampaignQuotas {
    fn default() -> Self {
        Self {
            max_actors: DEFAULT_MAX_ACTORS_PER_CAMPAIGN,
            max_actor_bytes: DEFAULT_MAX_ACTOR_BYTES,
            max_sessions: DEFAULT_MAX_SESSIONS_PER_CAMPAIGN,
        }
    }
}

impl CampaignQuotas {
    /// Refuses an actor whose stored JSON is over [`CampaignQuotas::max_actor_bytes`].
    pub fn check_actor_size(&self, actor: &Actor) -> Result<(), QuotaError> {
        let size = json_size(actor).map_err(|e| StoreError::corrupt("quota", "actor", e))?;
        if size > self.max_actor_bytes {
            return Err(QuotaError::ActorTooLarge {
                actor: actor.id.clone(),
                size,
                limit: self.max_actor_bytes,
            });
        }
        Ok(())
    }
}

/// What a per-campaign count quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// Actors of the campaign.
    Actors,
    /// Sessions of the campaign.
    Sessions,
}

impl std::fmt::Display for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Quota::Actors => "actors",
            Quota::Sessions => "sessions",
        })
    }
}

/// Why a create or update of a campaign's actor or session did not happen. Nothing was stored.
#[derive(Debug, Error)]
pub enum QuotaError {
    /// The campaign holds its quota of actors or sessions. Edge: 409 `conflict` naming the quota.
    #[error("campaign {campaign} has reached its quota of {limit} {quota}")]
    Exceeded {
        /// The campaign.
        campaign: CampaignId,
        /// Which quota.
        quota: Quota,
        /// Its limit.
        limit: u64,
    },
    /// The actor's stored JSON is over the size quota. Edge: 413 `payload_too_large`.
    #[error("actor {actor} is {size} bytes, over the quota of {limit} bytes per actor")]
    ActorTooLarge {
        /// The actor.
        actor: ActorId,
        /// Its size.
        size: usize,
        /// The quota.
        limit: usize,
    },
    /// The campaign does not exist, so nothing can be counted against it. Edge: 404.
    #[error("campaign {0} not found")]
    NoCampaign(CampaignId),
    /// A batch of actors mixes campaigns (a caller's bug: one batch is one campaign's).
    /// Edge: 400.
    #[error("actor {actor} is not of campaign {campaign}, like the rest of its batch")]
    OtherCampaign {
        /// The batch's campaign (its first actor's).
        campaign: CampaignId,
        /// The actor of another campaign.
        actor: ActorId,
    },
    /// The store failed, or the id is taken ([`StoreError::AlreadyExists`]). Edge: as the
    /// store error.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The campaign of a batch of actors ([`crate::CampaignStore::create_actors`]): the first's,
/// which every other must share. `None` for an empty batch.
pub fn batch_campaign(actors: &[Actor]) -> Result<Option<&CampaignId>, QuotaError> {
    let Some(first) = actors.first() else {
        return Ok(None);
    };
    if let Some(other) = actors.iter().find(|a| a.campaign_id != first.campaign_id) {
        return Err(QuotaError::OtherCampaign {
            campaign: first.campaign_id.clone(),
            actor: other.id.clone(),
        });
    }
    Ok(Some(&first.campaign_id))
}

/// Current time in milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod cursor_tests {
    use super::*;

    /// A key shaped like [`CampaignKey`] but of another listing.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct OtherKey {
        id: CampaignId,
    }

    impl ListKey for OtherKey {
        const LISTING: &'static str = "other";
    }

    #[test]
    fn keys_round_trip_through_opaque_cursors() {
        let actor = ActorKey {
            name: "Grikk \"the\" Bold ☠".into(),
            id: ActorId::new("a-1"),
        };
        let cursor = actor.to_cursor();
        assert!(cursor.bytes().all(|b| b.is_ascii_hexdigit()), "{cursor}");
        assert_eq!(ActorKey::from_cursor(&cursor).unwrap(), actor);
        let session = SessionKey {
            created_at: u64::MAX,
            id: SessionId::new("s"),
        };
        assert_eq!(
            SessionKey::from_cursor(&session.to_cursor()).unwrap(),
            session
        );
    }

    #[test]
    fn a_cursor_of_another_listing_with_the_same_shape_is_refused() {
        let cursor = CampaignKey {
            id: CampaignId::new("c1"),
        }
        .to_cursor();
        assert!(matches!(
            OtherKey::from_cursor(&cursor),
            Err(CursorError::OtherListing { expected: "other" })
        ));
    }

    #[test]
    fn malformed_cursors_are_refused() {
        for bad in ["", "0", "zz", "7B7D", "7b7d", "6e756c6c"] {
            assert!(CampaignKey::from_cursor(bad).is_err(), "{bad:?}");
        }
        let long = "a".repeat(MAX_CURSOR_CHARS + 2);
        assert!(matches!(
            CampaignKey::from_cursor(&long),
            Err(CursorError::TooLong { .. })
        ));
    }

    #[test]
    fn a_page_is_cut_before_the_item_that_would_pass_the_budget() {
        let item = |n: usize| "x".repeat(n);
        // "xxxx" is 6 bytes of JSON; two with a separator are 13.
        let mut fill = PageFill::new(10, 13);
        assert!(fill.offer(item(4)).unwrap());
        assert!(fill.offer(item(4)).unwrap());
        assert!(!fill.offer(item(0)).unwrap(), "a third would be 16 bytes");
        assert!(fill.is_full());
        assert_eq!(fill.bytes(), 13);
        let mut single = PageFill::new(10, 1);
        assert!(
            single.offer(item(100)).unwrap(),
            "the first item always fits"
        );
        assert!(!single.offer(item(0)).unwrap());
        let mut counted = PageFill::new(2, usize::MAX);
        assert!(counted.offer(item(1)).unwrap());
        assert!(counted.offer(item(1)).unwrap());
        assert!(!counted.offer(item(1)).unwrap(), "the limit cuts too");
    }
}
