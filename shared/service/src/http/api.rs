//! Request bodies, query parameters and answers of the HTTP routes, and ([`doc`]) the schemas
//! of the domain documents the routes answer with, for the OpenAPI document.

use dlab_core::codes::ErrorCode;
use dlab_store::model::{ListKey, PageRequest, Quota, QuotaError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    ApiError, HttpSettings, MAX_ACTOR_BYTES, MAX_ACTORS_PER_CAMPAIGN, MAX_SESSIONS_PER_CAMPAIGN,
};

/// Longest campaign or session name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest user id accepted in a member body.
pub const MAX_USER_ID_CHARS: usize = 256;
/// Default and largest page of `GET /compendium`.
pub const COMPENDIUM_LIMIT: (usize, usize) = (20, 100);
/// Default and largest page of `GET /sessions/{id}/events`.
pub const EVENTS_LIMIT: (usize, usize) = (100, 1000);
/// Default and largest page of `GET /campaigns`, `/campaigns/{id}/actors` and
/// `/campaigns/{id}/sessions`.
pub const LIST_LIMIT: (usize, usize) = (100, 1000);

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// `POST /connect-ticket`: a short-lived token for the WebSocket URL's `?token=`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketBody {
    /// The ticket.
    pub ticket: String,
    /// Expiry, milliseconds since the epoch.
    pub expires_at: u64,
}

/// `POST /campaigns`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateCampaign {
    /// Display name (1 to 200 characters, not blank).
    #[schema(example = "Lost Mine of Phandelver")]
    pub name: String,
}

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A player.
    Player,
    /// A co-GM.
    Gm,
}

/// `POST /campaigns/{id}/members`: adds a member, or changes a member's role.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutMember {
    /// The user (the `sub` of their tokens).
    #[schema(example = "alice")]
    pub user_id: String,
    /// `player` or `gm`.
    pub role: Role,
}

/// `POST /campaigns/{id}/sessions`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSession {
    /// Display name (1 to 200 characters, not blank).
    #[schema(example = "Session 1: Goblin Arrows")]
    pub name: String,
}

/// `POST /sessions/{id}/actors`: places an actor of the session's campaign in the session.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddSessionActor {
    /// The campaign actor to copy into the session.
    pub actor_id: String,
    /// The instance id (1-64 of `A-Za-z0-9_-`); default `<slug of the name>-<4 hex>`.
    #[serde(default)]
    #[schema(example = "goblin-3f2a")]
    pub instance_id: Option<String>,
}

/// `GET /compendium` parameters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CompendiumParams {
    /// Case-insensitive substring of the name.
    pub q: Option<String>,
    /// Category (`monsters`, `spells`, `equipment`, …).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub category: Option<String>,
    /// Game system (`dnd5e`).
    pub system: Option<String>,
    /// Exact challenge rating (monsters): `1/8`, `1/4`, `1/2`, an integer or a decimal such as
    /// `0.25`, from 0 to 30. Not together with `crMin`/`crMax`.
    #[param(value_type = Option<String>, pattern = r"^(1/8|1/4|1/2|[0-9]+(\.[0-9]+)?)$", example = "1/4")]
    pub cr: Option<String>,
    /// Lowest challenge rating, inclusive (same forms as `cr`); entries without one are left
    /// out.
    #[serde(rename = "crMin")]
    #[param(rename = "crMin", value_type = Option<String>, pattern = r"^(1/8|1/4|1/2|[0-9]+(\.[0-9]+)?)$", example = "1/8")]
    pub cr_min: Option<String>,
    /// Highest challenge rating, inclusive (same forms as `cr`).
    #[serde(rename = "crMax")]
    #[param(rename = "crMax", value_type = Option<String>, pattern = r"^(1/8|1/4|1/2|[0-9]+(\.[0-9]+)?)$", example = "2")]
    pub cr_max: Option<String>,
    /// Spell level, 0 (cantrips) to 9; only spells have one.
    #[param(value_type = Option<u32>, minimum = 0, maximum = 9)]
    pub level: Option<String>,
    /// Page size, 1 to 100 (default 20); a page also stops before passing the byte budget.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `nextCursor` of the previous page (opaque); accepted only with the same `cr`, `crMin`,
    /// `crMax` and `level` as the search that made it.
    pub cursor: Option<String>,
}

/// Highest challenge rating in the SRD rules.
pub const MAX_CHALLENGE_RATING: f64 = 30.0;
/// Highest spell level.
pub const MAX_SPELL_LEVEL: u64 = 9;

/// Reads an optional challenge rating parameter: `1/8`, `1/4`, `1/2`, an integer or a decimal,
/// from 0 to [`MAX_CHALLENGE_RATING`]; anything else is 400 naming `what`.
pub(crate) fn cr_param(raw: Option<&str>, what: &str) -> Result<Option<f64>, ApiError> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let value = match raw {
        "1/8" => Some(0.125),
        "1/4" => Some(0.25),
        "1/2" => Some(0.5),
        _ if raw.bytes().all(|b| b.is_ascii_digit() || b == b'.') => raw.parse::<f64>().ok(),
        _ => None,
    };
    value
        .filter(|v| v.is_finite() && (0.0..=MAX_CHALLENGE_RATING).contains(v))
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{what} must be a challenge rating from 0 to 30 (an integer, a decimal such as \
                 0.25, or 1/8, 1/4, 1/2), got {:?}",
                raw.chars().take(40).collect::<String>()
            ))
        })
}

/// `POST /compendium/batch`: templates to insert or replace (the importer's deployment mode).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompendiumBatch {
    /// At most [`MAX_BATCH_ENTRIES`] entries, each checked before any is written.
    pub entries: Vec<serde_json::Value>,
}

/// Most entries of one `POST /compendium/batch`.
pub const MAX_BATCH_ENTRIES: usize = 1000;
/// Largest body of `POST /compendium/batch`: 1 MiB (other routes keep their own limit).
pub const MAX_BATCH_BYTES: usize = 1_048_576;

/// `POST /compendium/batch` answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchWritten {
    /// Entries written (inserted or replaced).
    pub written: usize,
}

/// `GET /sessions/{id}/events` parameters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsParams {
    /// Events with a sequence above this one (default 0); the previous page's `nextCursor`.
    #[param(value_type = Option<u64>, minimum = 0)]
    pub after: Option<String>,
    /// The previous page's `nextCursor` (the same as `after`; give one of the two).
    #[param(value_type = Option<String>)]
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100); a page also stops before passing the byte budget.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// Parameters of `GET /campaigns`, `/campaigns/{id}/actors` and `/campaigns/{id}/sessions`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 1000 (default 100); a page also stops before passing the byte budget
    /// (`DLAB_MAX_LIST_BYTES`, 1 MiB by default), and always holds at least one item while any
    /// remain.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The previous page's `nextCursor` (opaque).
    pub cursor: Option<String>,
}

impl ListParams {
    /// The store request: `limit` checked against [`LIST_LIMIT`], `cursor` decoded as a key of
    /// this listing, the byte budget from the settings.
    pub(crate) fn request<K: ListKey>(
        &self,
        settings: &HttpSettings,
    ) -> Result<PageRequest<K>, ApiError> {
        let (default, max) = LIST_LIMIT;
        let limit = int_param(
            self.limit.as_deref(),
            "limit",
            default as u64,
            1..=max as u64,
        )?;
        Ok(PageRequest {
            after: cursor_param(self.cursor.as_deref())?,
            limit: limit as usize,
            max_bytes: settings.max_list_bytes,
        })
    }
}

/// Decodes an optional `cursor` parameter as a key of listing `K`; a malformed one, or one of
/// another listing, is 400 naming the parameter.
pub(crate) fn cursor_param<K: ListKey>(raw: Option<&str>) -> Result<Option<K>, ApiError> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    K::from_cursor(raw)
        .map(Some)
        .map_err(|e| ApiError::bad_request(format!("cursor: {e}")))
}

impl From<QuotaError> for ApiError {
    fn from(e: QuotaError) -> Self {
        match e {
            QuotaError::Exceeded {
                campaign,
                quota,
                limit,
            } => {
                let variable = match quota {
                    Quota::Actors => MAX_ACTORS_PER_CAMPAIGN,
                    Quota::Sessions => MAX_SESSIONS_PER_CAMPAIGN,
                };
                ApiError::conflict(format!(
                    "campaign {campaign} has reached its quota of {limit} {quota} ({variable})"
                ))
            }
            QuotaError::ActorTooLarge { size, limit, .. } => ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the actor would be {size} bytes, over the quota of {limit} bytes per actor \
                     ({MAX_ACTOR_BYTES})"
                ),
            ),
            QuotaError::NoCampaign(campaign) => {
                ApiError::not_found(format!("campaign {campaign} not found"))
            }
            e @ QuotaError::OtherCampaign { .. } => ApiError::bad_request(e.to_string()),
            QuotaError::Store(e) => e.into(),
        }
    }
}

/// A list answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Where the next page starts, `null` when there is none.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A complete list (no next page).
    pub fn all(items: Vec<T>) -> Self {
        Self {
            items,
            next_cursor: None,
        }
    }

    /// A store page, its next key as an opaque cursor.
    pub fn from_store<K: ListKey>(page: dlab_store::model::Page<T, K>) -> Self {
        Self {
            items: page.items,
            next_cursor: page.next.map(|k| k.to_cursor()),
        }
    }
}

/// `GET /compendium`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompendiumPageBody<T> {
    /// Entries ordered by reference.
    pub items: Vec<T>,
    /// Where the next page starts (opaque) when more follow.
    pub next_cursor: Option<String>,
    /// Credit and license of the compendium data.
    pub attribution: String,
}

/// `POST /sessions/{id}/actors` and `DELETE /sessions/{id}/actors/{instanceId}`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionActorChange<E> {
    /// The instance added or removed.
    pub instance_id: String,
    /// The committed `core:session:actor_added` / `actor_removed` event.
    pub event: E,
}

/// Schemas of the documents the routes answer with (OpenAPI only; the values themselves are
/// the domain types of `dlab-core` and `dlab-store`).
pub mod doc {
    use std::collections::BTreeMap;

    use serde_json::Value;
    use utoipa::ToSchema;

    /// A campaign member.
    #[derive(ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct Member {
        /// The user.
        pub user_id: String,
        /// `player` or `gm`.
        pub role: super::Role,
    }

    /// A campaign.
    #[derive(ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct Campaign {
        /// Id.
        pub id: String,
        /// Display name.
        pub name: String,
        /// The owner (always a GM).
        pub gm_user_id: String,
        /// Members other than the owner.
        pub members: Vec<Member>,
        /// Creation time (ms).
        pub created_at: u64,
    }

    /// What kind of actor.
    #[derive(ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum ActorType {
        /// A player character.
        Character,
        /// A non-player character.
        Npc,
        /// A monster.
        Monster,
    }

    /// A campaign actor.
    #[derive(ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct Actor {
        /// Id.
        pub id: String,
        /// Its campaign.
        pub campaign_id: String,
        /// Display name.
        pub name: String,
        /// Character, NPC or monster.
        #[serde(rename = "type")]
        pub actor_type: ActorType,
        /// Back-link to the template it was copied from (absent for custom actors).
        pub compendium_ref: Option<String>,
        /// The stat block: `hp {value, max}`, `ac`, `speed`, `saves`, `skills`, and more.
        #[schema(value_type = Object)]
        pub attributes: Value,
        /// Spells.
        pub spells: Vec<Value>,
        /// Equipment.
        pub equipment: Vec<Value>,
        /// Features and traits.
        pub features: Vec<Value>,
        /// Who created it.
        pub created_by: String,
        /// Creation time (ms).
        pub created_at: u64,
        /// Last change (ms).
        pub updated_at: u64,
    }

    /// Editable actor fields: a custom actor body, or a `PATCH` (deep-merged: objects key by
    /// key, anything else replaces). `id`, `campaignId`, `compendiumRef`, `createdBy`,
    /// `createdAt` and `updatedAt` are set by the server (a `PATCH` may repeat their current
    /// values); other fields are refused.
    #[derive(ToSchema)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct ActorFields {
        /// Display name.
        pub name: Option<String>,
        /// Character, NPC or monster.
        #[serde(rename = "type")]
        pub actor_type: Option<ActorType>,
        /// Stat block, merged over the current (or default) one.
        #[schema(value_type = Option<Object>)]
        pub attributes: Option<Value>,
        /// Spells (replaces the list).
        pub spells: Option<Vec<Value>>,
        /// Equipment (replaces the list).
        pub equipment: Option<Vec<Value>>,
        /// Features (replaces the list).
        pub features: Option<Vec<Value>>,
    }

    /// Create an actor by copying a compendium template.
    #[derive(ToSchema)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct FromTemplate {
        /// `<system>:<category>:<slug>`.
        #[schema(example = "dnd5e:monsters:goblin")]
        pub compendium_ref: String,
        /// Name of the actor (default: the template's).
        pub name: Option<String>,
        /// Deep-merged over the copy (editable fields only).
        #[schema(value_type = Option<Object>)]
        pub customizations: Option<Value>,
    }

    /// `POST /campaigns/{id}/actors`: a template copy (with `compendiumRef`) or a custom actor.
    #[derive(ToSchema)]
    #[serde(untagged)]
    pub enum CreateActor {
        /// Copy a template.
        FromTemplate(FromTemplate),
        /// A custom actor over the defaults (`Unnamed Actor`, npc, hp 10/10, ac 10, speed 30).
        Custom(ActorFields),
    }

    /// A compendium template.
    #[derive(ToSchema)]
    pub struct CompendiumEntry {
        /// `<system>:<category>:<slug>`.
        #[serde(rename = "ref")]
        pub reference: String,
        /// Game system.
        pub system: String,
        /// Category.
        pub category: String,
        /// Display name.
        pub name: String,
        /// The content (for an actor template: `attributes`, `type`, `spells`, …).
        pub data: Value,
    }

    /// One entry of `POST /compendium/batch`: its `system` and `category` repeat the parts of
    /// its `ref`.
    #[derive(ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct BatchEntry {
        /// `<system>:<category>:<slug>`, each part of `a-z`, `0-9`, `_`, `-`.
        #[serde(rename = "ref")]
        #[schema(
            pattern = r"^[a-z0-9_-]+:[a-z0-9_-]+:[a-z0-9_-]+$",
            max_length = 256,
            example = "dnd5e:monsters:goblin"
        )]
        pub reference: String,
        /// The ref's first part.
        #[schema(example = "dnd5e")]
        pub system: String,
        /// The ref's second part.
        #[schema(example = "monsters")]
        pub category: String,
        /// Display name: not blank, at most 200 characters, no control characters.
        #[schema(min_length = 1, max_length = 200, example = "Goblin")]
        pub name: String,
        /// The content (an object).
        #[schema(value_type = Object)]
        pub data: Value,
    }

    /// `POST /compendium/batch` body.
    #[derive(ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct CompendiumBatch {
        /// The entries (at most 1000; the whole body at most 1 MiB).
        #[schema(max_items = 1000)]
        pub entries: Vec<BatchEntry>,
    }

    /// Lifecycle of a session.
    #[derive(ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum SessionStatus {
        /// Open for events.
        Active,
        /// Ended.
        Ended,
    }

    /// A game session.
    #[derive(ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct GameSession {
        /// Id.
        pub id: String,
        /// Its campaign.
        pub campaign_id: String,
        /// Display name.
        pub name: String,
        /// Status.
        pub status: SessionStatus,
        /// Who created it.
        pub created_by: String,
        /// Creation time (ms).
        pub created_at: u64,
        /// Highest sequence with every event up to it archived.
        pub archived_through: u64,
    }

    /// A committed game event.
    #[derive(ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct GameEvent {
        /// The UUID (idempotency key).
        pub id: String,
        /// Per-session sequence, 1, 2, 3, …
        pub sequence: u64,
        /// Server time (ms).
        pub timestamp: u64,
        /// The client's clock, if it sent one.
        pub client_timestamp: Option<u64>,
        /// The sender, from its token.
        pub user_id: String,
        /// The session.
        pub session_id: String,
        /// `<namespace>:<name>[:<name>…]`.
        #[serde(rename = "type")]
        pub event_type: String,
        /// Opaque except for the state-change conventions.
        pub payload: Value,
        /// `sha256:<hex>` of the canonical payload, if sent.
        pub checksum: Option<String>,
    }

    /// One override of one path.
    #[derive(ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct Override {
        /// The value at the path.
        pub value: Value,
        /// Server time of the writing event.
        pub timestamp: u64,
        /// The writing event.
        pub event_id: String,
        /// Its sender.
        pub user_id: String,
        /// Its sequence.
        pub sequence: u64,
    }

    /// An actor instance in a session.
    #[derive(ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct ActiveActor {
        /// The campaign actor it was copied from.
        pub actor_id: String,
        /// When it was added (ms).
        pub added_at: u64,
        /// Who added it.
        pub added_by: String,
        /// The base document, as added.
        #[schema(value_type = Object)]
        pub actor: Value,
        /// Live changes by dotted leaf path.
        pub overrides: BTreeMap<String, Override>,
    }

    /// The whole live state of a session.
    #[derive(ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct GameSessionState {
        /// The session.
        pub session_id: String,
        /// Its campaign.
        pub campaign_id: Option<String>,
        /// Sequence of the last applied event.
        pub last_event_sequence: u64,
        /// Actor instances by instance id.
        pub active_actors: BTreeMap<String, ActiveActor>,
        /// Overrides of `encounter.*` / `environment.*`, with provenance.
        pub session_overrides: BTreeMap<String, Override>,
        /// Resolved encounter fields.
        #[schema(value_type = Object)]
        pub encounter: Value,
        /// Resolved environment fields.
        #[schema(value_type = Object)]
        pub environment: Value,
    }

    /// A snapshot of a session's state.
    #[derive(ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct Snapshot {
        /// The session.
        pub session_id: String,
        /// The last event folded in.
        pub up_to_sequence: u64,
        /// The state after it.
        pub state: GameSessionState,
        /// `sha256:` of the canonical state.
        pub checksum: String,
        /// When it was made (ms).
        pub created_at: u64,
    }

    /// `{items, nextCursor}` of campaigns.
    #[derive(ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct CampaignList {
        /// Campaigns, by id.
        pub items: Vec<Campaign>,
        /// Pass as `cursor` for the next page; `null` only when the list is complete.
        pub next_cursor: Option<String>,
    }

    /// `{items, nextCursor}` of actors.
    #[derive(ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct ActorList {
        /// Actors, by name then id.
        pub items: Vec<Actor>,
        /// Pass as `cursor` for the next page; `null` only when the list is complete.
        pub next_cursor: Option<String>,
    }

    /// `{items, nextCursor}` of sessions.
    #[derive(ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct SessionList {
        /// Sessions, newest first (`createdAt` descending, then id descending).
        pub items: Vec<GameSession>,
        /// Pass as `cursor` for the next page; `null` only when the list is complete.
        pub next_cursor: Option<String>,
    }

    /// `{items, nextCursor}` of events.
    #[derive(ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct EventPage {
        /// Contiguous events in sequence order.
        pub items: Vec<GameEvent>,
        /// The last sequence of this page as a string while the head is beyond it (pass it as
        /// `after` or `cursor`); `null` only when the page reaches the head.
        pub next_cursor: Option<String>,
    }

    /// `{items, nextCursor, attribution}` of compendium entries.
    #[derive(ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct CompendiumPage {
        /// Entries by reference.
        pub items: Vec<CompendiumEntry>,
        /// Pass as `cursor` for the next page; `null` on the last.
        pub next_cursor: Option<String>,
        /// Credit and license of the data.
        pub attribution: String,
    }

    /// An actor instance added or removed.
    #[derive(ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct SessionActorChange {
        /// The instance.
        pub instance_id: String,
        /// The committed event.
        pub event: GameEvent,
    }

    /// A runtime actor: the base document with the session's overrides applied, plus
    /// `instanceId`.
    #[derive(ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct RuntimeActor {
        /// The instance.
        pub instance_id: String,
        /// Display name.
        pub name: String,
        /// The stat block with overrides (`attributes.hp.value` at its usual place).
        #[schema(value_type = Object)]
        pub attributes: Value,
    }
}

/// Reads an optional integer parameter in `range`; `what` names it in the error.
pub(crate) fn int_param(
    raw: Option<&str>,
    what: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, super::ApiError> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(default);
    };
    raw.parse::<u64>()
        .ok()
        .filter(|v| range.contains(v))
        .ok_or_else(|| {
            super::ApiError::bad_request(format!(
                "{what} must be an integer from {} to {}, got {:?}",
                range.start(),
                range.end(),
                raw.chars().take(40).collect::<String>()
            ))
        })
}

/// Checks a display name: trimmed, 1 to [`MAX_NAME_CHARS`] characters.
pub(crate) fn display_name(raw: &str) -> Result<String, super::ApiError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(super::ApiError::bad_request("name must not be blank"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(super::ApiError::bad_request(format!(
            "name must be at most {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(super::ApiError::bad_request(
            "name must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}
