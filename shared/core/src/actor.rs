//! The unified `Actor`, compendium templates, and the two creation workflows.
//!
//! Every actor has one document shape, whatever its origin, so sessions, plugins and the
//! projection never ask "was this a compendium monster?". The compendium is a template library:
//! creating from `dnd5e:monsters:goblin` makes a full, independent copy of the template's stat
//! block and keeps `compendiumRef` only as a back-link. Later edits of the template never reach
//! an actor made from it, and an actor never reads through to its template.
//!
//! # The merge rule
//!
//! Customizations (create from a template), custom actor data (laid over the defaults) and HTTP
//! `PATCH` bodies are all applied with [`deep_merge`], one rule everywhere:
//!
//! - an object over an object merges key by key, recursively; keys the overlay does not name
//!   are kept (`{attributes: {hp: {max: 12}}}` keeps `hp.value`, `ac`, `speed`, …);
//! - anything else in the overlay (array, string, number, boolean, `null`), or an object over a
//!   non-object, replaces the base value wholesale. Arrays are never concatenated or merged by
//!   index: `spells: [...]` is the new list.
//! - `null` sets the value to `null`; it does not delete the key (this is deliberately not RFC 7396
//!   merge patch). Where the model needs a value (`attributes.ac`, `spells`), a `null` is refused.
//!
//! The one exception is custom actor data: a top-level `null` (or a blank `name`) means "use the
//! default", as in the seed's `actorData.name || "Unnamed Actor"`.
//!
//! # Protected and unknown fields
//!
//! `id`, `campaignId`, `compendiumRef`, `createdBy`, `createdAt` and `updatedAt` are set by the
//! server ([`PROTECTED_FIELDS`]). A body that sets one is refused with
//! [`ActorError::ProtectedField`], except that a `PATCH` may repeat a field's current value
//! unchanged, so a client can send back the document it fetched. A top-level field the model does
//! not have is refused rather than silently dropped. After merging, the document must still be an
//! [`Actor`]; if not, [`ActorError::InvalidCustomization`] names the offending field
//! (`attributes.ac: invalid type: string "x", expected i64`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use thiserror::Error;

use crate::codes::ErrorCode;
use crate::ids::{ActorId, CampaignId, UserId};

/// The name of a custom actor created without one (the seed's default).
pub const DEFAULT_ACTOR_NAME: &str = "Unnamed Actor";

/// Top-level fields only the server sets; bodies that change them are refused.
pub const PROTECTED_FIELDS: [&str; 6] = [
    "id",
    "campaignId",
    "compendiumRef",
    "createdBy",
    "createdAt",
    "updatedAt",
];

/// Top-level fields a customization, custom actor body or patch may set.
pub const EDITABLE_FIELDS: [&str; 6] = [
    "name",
    "type",
    "attributes",
    "spells",
    "equipment",
    "features",
];

/// Longest accepted compendium reference, so a hostile reference cannot bloat errors or keys.
pub const MAX_COMPENDIUM_REF_LEN: usize = 256;

/// What kind of actor this is; plugins and the UI branch on it (players own characters, the GM
/// runs NPCs and monsters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorType {
    /// A player character.
    Character,
    /// A non-player character; the default of a custom actor.
    Npc,
    /// A monster; the default of an actor created from a compendium template.
    Monster,
}

impl ActorType {
    /// The type as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorType::Character => "character",
            ActorType::Npc => "npc",
            ActorType::Monster => "monster",
        }
    }
}

impl fmt::Display for ActorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Hit points. `value` and `max` are typed because every session and plugin reads them; `extra`
/// keeps whatever else a system stores here (`temp`, `formula`, …) so a copy loses nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hp {
    /// Current hit points.
    pub value: i64,
    /// Maximum hit points.
    pub max: i64,
    /// Any other hit-point data of the game system, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Hp {
    /// Hit points with nothing beyond `value` and `max`.
    pub fn new(value: i64, max: i64) -> Self {
        Self {
            value,
            max,
            extra: Map::new(),
        }
    }
}

/// The complete stat block. The fields every system and the seed agree on are typed; the open
/// `extra` map holds the rest (ability scores, senses, languages, challenge rating, …) so the
/// server stays system-agnostic and a template copy is whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attributes {
    /// Hit points.
    pub hp: Hp,
    /// Armour class.
    pub ac: i64,
    /// Walking speed in feet.
    pub speed: i64,
    /// Saving throw bonuses by ability (`dex` → 2); empty when absent.
    #[serde(default)]
    pub saves: BTreeMap<String, i64>,
    /// Skill bonuses by skill (`stealth` → 6); empty when absent.
    #[serde(default)]
    pub skills: BTreeMap<String, i64>,
    /// The rest of the stat block, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Attributes {
    /// The stat block of a custom actor whose body gives none: hp 10/10, ac 10, speed 30, no
    /// saves or skills. Given attributes are merged over it, so a partial block stays valid.
    pub fn default_stat_block() -> Self {
        Self {
            hp: Hp::new(10, 10),
            ac: 10,
            speed: 30,
            saves: BTreeMap::new(),
            skills: BTreeMap::new(),
            extra: Map::new(),
        }
    }
}

impl Default for Attributes {
    /// Same as [`Attributes::default_stat_block`].
    fn default() -> Self {
        Self::default_stat_block()
    }
}

/// A campaign actor document (the `actors` collection), the same shape whether it came from a
/// compendium template or was built by hand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    /// Server-assigned id.
    pub id: ActorId,
    /// The campaign that owns the actor; sessions only accept actors of their campaign.
    pub campaign_id: CampaignId,
    /// Display name; never blank.
    pub name: String,
    /// Character, NPC or monster (JSON `type`).
    #[serde(rename = "type")]
    pub actor_type: ActorType,
    /// The template this actor was copied from, as a back-link only; absent for custom actors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compendium_ref: Option<String>,
    /// The complete stat block.
    pub attributes: Attributes,
    /// Spells, opaque to the server.
    #[serde(default)]
    pub spells: Vec<Value>,
    /// Equipment, opaque to the server.
    #[serde(default)]
    pub equipment: Vec<Value>,
    /// Features and traits, opaque to the server.
    #[serde(default)]
    pub features: Vec<Value>,
    /// The user who created the actor (from the verified token).
    pub created_by: UserId,
    /// Creation time, milliseconds since the epoch.
    pub created_at: u64,
    /// Last change, milliseconds since the epoch.
    pub updated_at: u64,
}

impl Actor {
    /// The actor as a JSON document, e.g. for the `actor` of `core:session:actor_added`.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("an Actor always serializes: string keys, JSON values")
    }
}

/// A validated compendium reference `<system>:<category>:<slug>`, e.g. `dnd5e:monsters:goblin`.
/// Validating it before any lookup keeps malformed references out of store queries and answers
/// them with a 400 rather than a misleading 404.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CompendiumRef(String);

impl CompendiumRef {
    /// Parses a reference: exactly three non-empty parts of `a-z`, `0-9`, `_` and `-`, joined by
    /// `:`, at most [`MAX_COMPENDIUM_REF_LEN`] bytes.
    pub fn parse(value: &str) -> Result<Self, ActorError> {
        let invalid = |reason| ActorError::InvalidCompendiumRef {
            value: truncate(value),
            reason,
        };
        if value.len() > MAX_COMPENDIUM_REF_LEN {
            return Err(invalid("it is longer than 256 bytes"));
        }
        let parts: Vec<&str> = value.split(':').collect();
        if parts.len() != 3 {
            return Err(invalid("it must have the form <system>:<category>:<slug>"));
        }
        for part in parts {
            if part.is_empty() {
                return Err(invalid("a part is empty"));
            }
            let allowed =
                |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-';
            if !part.bytes().all(allowed) {
                return Err(invalid("parts may only contain a-z, 0-9, _ and -"));
            }
        }
        Ok(Self(value.to_owned()))
    }

    /// The reference as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The game system, e.g. `dnd5e`.
    pub fn system(&self) -> &str {
        self.part(0)
    }

    /// The category, e.g. `monsters`.
    pub fn category(&self) -> &str {
        self.part(1)
    }

    /// The entry's slug, e.g. `goblin`.
    pub fn slug(&self) -> &str {
        self.part(2)
    }

    fn part(&self, index: usize) -> &str {
        self.0.split(':').nth(index).unwrap_or_default()
    }
}

impl fmt::Display for CompendiumRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for CompendiumRef {
    type Err = ActorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for CompendiumRef {
    type Error = ActorError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<CompendiumRef> for String {
    fn from(value: CompendiumRef) -> Self {
        value.0
    }
}

/// A compendium entry (the `compendium` collection): a monster, spell, item, … template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompendiumEntry {
    /// `<system>:<category>:<slug>` (JSON `ref`), e.g. `dnd5e:monsters:goblin`.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The game system, e.g. `dnd5e`.
    pub system: String,
    /// The category, e.g. `monsters`, `spells`, `equipment`.
    pub category: String,
    /// Display name; the default name of an actor created from it.
    pub name: String,
    /// The entry's content. For an actor template: an object with `attributes` and optionally
    /// `type`, `spells`, `equipment` and `features`; other keys are not copied.
    #[serde(default)]
    pub data: Value,
}

impl CompendiumEntry {
    /// Whether an actor can be created from this entry. Decided by shape (an `attributes`
    /// object), not by category name, because each system names its categories freely.
    pub fn is_actor_template(&self) -> bool {
        self.data.get("attributes").is_some_and(Value::is_object)
    }

    /// The challenge rating of a monster template (`data.attributes.challengeRating`, a number:
    /// `0.25` for CR 1/4), which the compendium search filters on; `None` for anything else.
    pub fn challenge_rating(&self) -> Option<f64> {
        self.data
            .pointer("/attributes/challengeRating")
            .and_then(Value::as_f64)
            .filter(|cr| cr.is_finite())
    }

    /// The level of a spell template (`data.level`, 0 for a cantrip), which the compendium
    /// search filters on; `None` for anything that is not in the `spells` category.
    pub fn spell_level(&self) -> Option<i64> {
        if self.category != "spells" {
            return None;
        }
        self.data.get("level").and_then(Value::as_i64)
    }
}

/// `POST /campaigns/{id}/actors` with a template: `{compendiumRef, name?, customizations?}`.
/// Unknown keys are refused so a custom-actor field sent alongside `compendiumRef` is not
/// silently dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateFromTemplate {
    /// The template to copy.
    pub compendium_ref: String,
    /// The actor's name; the template's name when absent or blank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Deep-merged over the copy (see the module's merge rule); protected fields are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customizations: Option<Value>,
}

/// The two bodies `POST /campaigns/{id}/actors` accepts, told apart by `compendiumRef` (which a
/// custom actor may not carry), so the HTTP edge parses once and dispatches.
#[derive(Debug, Clone, PartialEq)]
pub enum CreateActorRequest {
    /// Copy a compendium template.
    FromTemplate(CreateFromTemplate),
    /// Build an actor from the given fields over the defaults.
    Custom(Value),
}

impl CreateActorRequest {
    /// Classifies a request body: with `compendiumRef` it is a template request, otherwise a
    /// custom actor.
    pub fn from_body(body: &Value) -> Result<Self, ActorError> {
        let obj = body.as_object().ok_or_else(|| {
            ActorError::InvalidCustomization("the request body must be a JSON object".to_owned())
        })?;
        if obj.contains_key("compendiumRef") {
            CreateFromTemplate::deserialize(body)
                .map(Self::FromTemplate)
                .map_err(|e| ActorError::InvalidCustomization(e.to_string()))
        } else {
            Ok(Self::Custom(body.clone()))
        }
    }
}

/// Why an actor could not be created or patched. Each variant maps to one wire code (see
/// [`ActorError::code`]); all but `CompendiumNotFound` are faults of the request body, answered
/// `invalid_message` (400). `invalid_event` is not used: these are HTTP bodies, not events.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ActorError {
    /// No compendium entry has the requested reference. Edge: `not_found` (404), with the seed's
    /// message.
    #[error("Compendium entry not found: {0}")]
    CompendiumNotFound(String),
    /// The entry exists but is not an actor template (a spell, an item) or its stat block is not
    /// a valid actor. Edge: `invalid_message` (400): the request named the wrong entry.
    #[error("compendium entry {reference} is not an actor template: {reason}")]
    NotAnActorTemplate {
        /// The entry's reference.
        reference: String,
        /// What is missing or wrong.
        reason: String,
    },
    /// A compendium reference is not `<system>:<category>:<slug>`. Edge: `invalid_message`.
    #[error("invalid compendium reference {value:?}: {reason}")]
    InvalidCompendiumRef {
        /// The offending reference (truncated).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The body sets a field only the server sets. Edge: `invalid_message`.
    #[error("{0} is set by the server and cannot be changed")]
    ProtectedField(&'static str),
    /// The body is not an object, names an unknown field, or would leave a document that is not
    /// an actor; the message names the field. Edge: `invalid_message`.
    #[error("invalid actor data: {0}")]
    InvalidCustomization(String),
}

impl ActorError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ActorError::CompendiumNotFound(_) => ErrorCode::NotFound,
            ActorError::NotAnActorTemplate { .. }
            | ActorError::InvalidCompendiumRef { .. }
            | ActorError::ProtectedField(_)
            | ActorError::InvalidCustomization(_) => ErrorCode::InvalidMessage,
        }
    }
}

/// Merges `overlay` into `base`: objects key by key, recursively; any other overlay value
/// (array, scalar, `null`), or an object over a non-object, replaces the base value wholesale.
/// The one rule for customizations, custom data and patches (see the module documentation).
pub fn deep_merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(base_map), Value::Object(overlay_map)) => {
            for (key, value) in overlay_map {
                match base_map.get_mut(key) {
                    Some(slot) => deep_merge(slot, value),
                    None => {
                        base_map.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, overlay) => *base = overlay.clone(),
    }
}

/// Creates an actor by copying a compendium template (the seed's "Option 1").
///
/// `template` is what the compendium holds under `request.compendium_ref` (`None` when nothing).
/// The copy takes the template's `type` (default `monster`), its whole `attributes`, and its
/// `spells`, `equipment` and `features`; the name is `request.name` unless blank, else the
/// template's; `compendiumRef` is the back-link. Customizations are then deep-merged over the
/// copy. The result shares nothing with the template.
pub fn create_from_template(
    template: Option<&CompendiumEntry>,
    request: &CreateFromTemplate,
    campaign: &CampaignId,
    id: ActorId,
    user: &UserId,
    now_ms: u64,
) -> Result<Actor, ActorError> {
    let reference = CompendiumRef::parse(&request.compendium_ref)?;
    let template = template
        .filter(|t| t.reference == reference.as_str())
        .ok_or_else(|| ActorError::CompendiumNotFound(request.compendium_ref.clone()))?;
    let not_template = |reason: String| ActorError::NotAnActorTemplate {
        reference: template.reference.clone(),
        reason,
    };
    let data = match template.data.as_object() {
        Some(data) if template.is_actor_template() => data,
        _ => {
            return Err(not_template(
                "its data has no `attributes` object".to_owned(),
            ));
        }
    };
    let customizations = match &request.customizations {
        None | Some(Value::Null) => None,
        Some(c) => Some(checked_overlay(c, "customizations", None)?),
    };

    let name = request
        .name
        .as_deref()
        .filter(|n| !is_blank(n))
        .unwrap_or(&template.name);
    let actor_type = present(data, "type")
        .cloned()
        .unwrap_or_else(|| json!(ActorType::Monster));
    let mut doc = json!({
        "id": id,
        "campaignId": campaign,
        "name": name,
        "type": actor_type,
        "compendiumRef": reference.as_str(),
        "attributes": data["attributes"].clone(),
        "spells": copied_list(data, "spells"),
        "equipment": copied_list(data, "equipment"),
        "features": copied_list(data, "features"),
        "createdBy": user,
        "createdAt": now_ms,
        "updatedAt": now_ms,
    });
    let copy = parse_document(&doc).map_err(not_template)?;
    let Some(overlay) = customizations else {
        return Ok(copy);
    };
    deep_merge(&mut doc, &Value::Object(overlay));
    parse_document(&doc).map_err(ActorError::InvalidCustomization)
}

/// Creates an actor from a custom body (the seed's "Option 2").
///
/// Defaults: name [`DEFAULT_ACTOR_NAME`], type `npc`, [`Attributes::default_stat_block`], empty
/// `spells`, `equipment` and `features`. The body is deep-merged over them, so
/// `{attributes: {hp: {value: 15, max: 15}}}` keeps ac 10. A top-level `null` or a blank name
/// means "use the default". A custom actor has no `compendiumRef`; setting one is refused.
pub fn create_custom(
    data: &Value,
    campaign: &CampaignId,
    id: ActorId,
    user: &UserId,
    now_ms: u64,
) -> Result<Actor, ActorError> {
    let mut overlay = checked_overlay(data, "actor data", None)?;
    overlay.retain(|key, value| {
        !(value.is_null() || key == "name" && value.as_str().is_some_and(is_blank))
    });
    let mut doc = json!({
        "name": DEFAULT_ACTOR_NAME,
        "type": ActorType::Npc,
        "attributes": Attributes::default_stat_block(),
        "spells": [],
        "equipment": [],
        "features": [],
    });
    deep_merge(&mut doc, &Value::Object(overlay));
    deep_merge(
        &mut doc,
        &json!({
            "id": id,
            "campaignId": campaign,
            "createdBy": user,
            "createdAt": now_ms,
            "updatedAt": now_ms,
        }),
    );
    parse_document(&doc).map_err(ActorError::InvalidCustomization)
}

/// Applies an HTTP `PATCH` body to an actor: deep merge under the same protections, keeping the
/// `compendiumRef` back-link and the other server fields. A protected field repeated with its
/// current value is accepted (a fetched document can be sent back). `updated_at` becomes
/// `now_ms`, but never moves backwards if the clock does.
pub fn apply_patch(actor: &Actor, patch: &Value, now_ms: u64) -> Result<Actor, ActorError> {
    let mut doc = actor.to_value();
    let overlay = checked_overlay(patch, "the patch", Some(&doc))?;
    deep_merge(&mut doc, &Value::Object(overlay));
    let mut patched = parse_document(&doc).map_err(ActorError::InvalidCustomization)?;
    patched.updated_at = now_ms.max(actor.updated_at);
    Ok(patched)
}

/// Checks a body's top-level keys and returns the editable part. With `current`, a protected
/// field equal to its current value (`null` matching an absent one) is dropped instead of refused.
fn checked_overlay(
    overlay: &Value,
    what: &str,
    current: Option<&Value>,
) -> Result<Map<String, Value>, ActorError> {
    let obj = overlay.as_object().ok_or_else(|| {
        ActorError::InvalidCustomization(format!(
            "{what} must be a JSON object, got {}",
            kind(overlay)
        ))
    })?;
    let mut editable = Map::new();
    for (key, value) in obj {
        if let Some(field) = PROTECTED_FIELDS.iter().find(|f| **f == key) {
            let unchanged =
                current.is_some_and(|doc| doc.get(key.as_str()).unwrap_or(&Value::Null) == value);
            if unchanged {
                continue;
            }
            return Err(ActorError::ProtectedField(field));
        }
        if !EDITABLE_FIELDS.contains(&key.as_str()) {
            return Err(ActorError::InvalidCustomization(format!(
                "unknown field `{}` (editable fields: {})",
                truncate(key),
                EDITABLE_FIELDS.join(", ")
            )));
        }
        editable.insert(key.clone(), value.clone());
    }
    Ok(editable)
}

/// Reads a merged document as an actor, or says what is wrong with it, naming the field.
fn parse_document(doc: &Value) -> Result<Actor, String> {
    let actor =
        Actor::deserialize(doc).map_err(|e| shape_error(doc).unwrap_or_else(|| e.to_string()))?;
    if is_blank(&actor.name) {
        return Err("name must not be empty".to_owned());
    }
    Ok(actor)
}

/// Finds the first field of `doc` that does not fit the `Actor` model. Serde's own errors do not
/// say where they happened, and the edge must tell the user which field to fix.
fn shape_error(doc: &Value) -> Option<String> {
    let Some(obj) = doc.as_object() else {
        return Some(format!("an actor must be a JSON object, got {}", kind(doc)));
    };
    field_error::<String>(obj, "", "name", true)
        .or_else(|| field_error::<ActorType>(obj, "", "type", true))
        .or_else(|| field_error::<Option<String>>(obj, "", "compendiumRef", false))
        .or_else(|| attributes_error(obj))
        .or_else(|| field_error::<Vec<Value>>(obj, "", "spells", false))
        .or_else(|| field_error::<Vec<Value>>(obj, "", "equipment", false))
        .or_else(|| field_error::<Vec<Value>>(obj, "", "features", false))
}

fn attributes_error(obj: &Map<String, Value>) -> Option<String> {
    let attributes = match object_field(obj, "", "attributes") {
        Ok(attributes) => attributes,
        Err(message) => return Some(message),
    };
    let hp = match object_field(attributes, "attributes", "hp") {
        Ok(hp) => hp,
        Err(message) => return Some(message),
    };
    field_error::<i64>(hp, "attributes.hp", "value", true)
        .or_else(|| field_error::<i64>(hp, "attributes.hp", "max", true))
        .or_else(|| field_error::<i64>(attributes, "attributes", "ac", true))
        .or_else(|| field_error::<i64>(attributes, "attributes", "speed", true))
        .or_else(|| bonus_map_error(attributes, "saves"))
        .or_else(|| bonus_map_error(attributes, "skills"))
}

fn bonus_map_error(attributes: &Map<String, Value>, key: &str) -> Option<String> {
    let bonuses = match attributes.get(key) {
        None => return None,
        Some(_) => match object_field(attributes, "attributes", key) {
            Ok(bonuses) => bonuses,
            Err(message) => return Some(message),
        },
    };
    let parent = format!("attributes.{key}");
    bonuses
        .keys()
        .find_map(|name| field_error::<i64>(bonuses, &parent, name, true))
}

fn object_field<'a>(
    obj: &'a Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<&'a Map<String, Value>, String> {
    let path = join(parent, key);
    match obj.get(key) {
        None => Err(format!("{path} is required")),
        Some(Value::Object(inner)) => Ok(inner),
        Some(other) => Err(format!("{path} must be an object, got {}", kind(other))),
    }
}

fn field_error<T: DeserializeOwned>(
    obj: &Map<String, Value>,
    parent: &str,
    key: &str,
    required: bool,
) -> Option<String> {
    let path = join(parent, key);
    match obj.get(key) {
        None if required => Some(format!("{path} is required")),
        None => None,
        Some(value) => T::deserialize(value).err().map(|e| format!("{path}: {e}")),
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{}", truncate(key))
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn present<'a>(data: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    data.get(key).filter(|v| !v.is_null())
}

fn copied_list(data: &Map<String, Value>, key: &str) -> Value {
    present(data, key).cloned().unwrap_or_else(|| json!([]))
}

fn is_blank(s: &str) -> bool {
    s.trim().is_empty()
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_700_000_000_000;

    fn goblin() -> CompendiumEntry {
        CompendiumEntry {
            reference: "dnd5e:monsters:goblin".to_owned(),
            system: "dnd5e".to_owned(),
            category: "monsters".to_owned(),
            name: "Goblin".to_owned(),
            data: json!({
                "type": "monster",
                "attributes": {
                    "hp": {"value": 7, "max": 7, "formula": "2d6"},
                    "ac": 15,
                    "speed": 30,
                    "saves": {},
                    "skills": {"stealth": 6},
                    "abilities": {"str": 8, "dex": 14, "con": 10, "int": 10, "wis": 8, "cha": 8},
                    "senses": {"darkvision": 60, "passivePerception": 9},
                    "languages": ["Common", "Goblin"],
                    "cr": 0.25
                },
                "equipment": [{"name": "Scimitar"}, {"name": "Shortbow"}],
                "features": [{"name": "Nimble Escape"}],
                "description": "not copied"
            }),
        }
    }

    fn fireball() -> CompendiumEntry {
        CompendiumEntry {
            reference: "dnd5e:spells:fireball".to_owned(),
            system: "dnd5e".to_owned(),
            category: "spells".to_owned(),
            name: "Fireball".to_owned(),
            data: json!({"level": 3, "school": "evocation", "damage": "8d6"}),
        }
    }

    fn request(
        reference: &str,
        name: Option<&str>,
        customizations: Option<Value>,
    ) -> CreateFromTemplate {
        CreateFromTemplate {
            compendium_ref: reference.to_owned(),
            name: name.map(str::to_owned),
            customizations,
        }
    }

    fn from_template(
        template: Option<&CompendiumEntry>,
        request: &CreateFromTemplate,
    ) -> Result<Actor, ActorError> {
        create_from_template(
            template,
            request,
            &CampaignId::new("c-1"),
            ActorId::new("a-1"),
            &UserId::new("gm"),
            NOW,
        )
    }

    fn custom(data: Value) -> Result<Actor, ActorError> {
        create_custom(
            &data,
            &CampaignId::new("c-1"),
            ActorId::new("a-2"),
            &UserId::new("gm"),
            NOW,
        )
    }

    fn goblin_scout() -> Actor {
        let goblin = goblin();
        from_template(
            Some(&goblin),
            &request("dnd5e:monsters:goblin", Some("Goblin Scout #1"), None),
        )
        .unwrap()
    }

    fn protected_values() -> [(&'static str, Value); 6] {
        [
            ("id", json!("other")),
            ("campaignId", json!("c-9")),
            ("compendiumRef", json!("dnd5e:monsters:orc")),
            ("createdBy", json!("mallory")),
            ("createdAt", json!(1)),
            ("updatedAt", json!(2)),
        ]
    }

    #[test]
    fn given_goblin_template_when_created_with_a_name_then_it_is_a_full_copy_with_a_back_link() {
        let goblin = goblin();

        let actor = goblin_scout();

        assert_eq!(actor.id, ActorId::new("a-1"));
        assert_eq!(actor.campaign_id, CampaignId::new("c-1"));
        assert_eq!(actor.name, "Goblin Scout #1");
        assert_eq!(actor.actor_type, ActorType::Monster);
        assert_eq!(
            actor.compendium_ref.as_deref(),
            Some("dnd5e:monsters:goblin")
        );
        assert_eq!(
            serde_json::to_value(&actor.attributes).unwrap(),
            goblin.data["attributes"]
        );
        assert_eq!(actor.attributes.hp.extra["formula"], json!("2d6"));
        assert_eq!(actor.attributes.extra["cr"], json!(0.25));
        assert_eq!(
            Value::from(actor.equipment.clone()),
            goblin.data["equipment"]
        );
        assert_eq!(Value::from(actor.features.clone()), goblin.data["features"]);
        assert!(actor.spells.is_empty());
        assert_eq!(actor.created_by, UserId::new("gm"));
        assert_eq!((actor.created_at, actor.updated_at), (NOW, NOW));
    }

    #[test]
    fn given_no_name_when_created_from_template_then_the_template_name_is_used() {
        let goblin = goblin();

        let unnamed = from_template(Some(&goblin), &request("dnd5e:monsters:goblin", None, None));
        let blank = from_template(
            Some(&goblin),
            &request("dnd5e:monsters:goblin", Some("  "), None),
        );

        assert_eq!(unnamed.unwrap().name, "Goblin");
        assert_eq!(blank.unwrap().name, "Goblin");
    }

    #[test]
    fn given_template_without_type_when_created_then_it_is_a_monster() {
        let mut goblin = goblin();
        goblin.data.as_object_mut().unwrap().remove("type");

        let actor =
            from_template(Some(&goblin), &request("dnd5e:monsters:goblin", None, None)).unwrap();

        assert_eq!(actor.actor_type, ActorType::Monster);
    }

    #[test]
    fn given_customizations_when_created_from_template_then_they_deep_merge_over_the_copy() {
        let goblin = goblin();
        let customizations = json!({
            "attributes": {"hp": {"max": 12}, "senses": {"darkvision": 120}},
            "type": "npc",
            "spells": [{"name": "Minor Illusion"}]
        });

        let actor = from_template(
            Some(&goblin),
            &request("dnd5e:monsters:goblin", Some("Boss"), Some(customizations)),
        )
        .unwrap();

        assert_eq!(actor.attributes.hp.max, 12);
        assert_eq!(actor.attributes.hp.value, 7);
        assert_eq!(actor.attributes.ac, 15);
        assert_eq!(actor.attributes.skills["stealth"], 6);
        assert_eq!(
            actor.attributes.extra["senses"],
            json!({"darkvision": 120, "passivePerception": 9})
        );
        assert_eq!(actor.actor_type, ActorType::Npc);
        assert_eq!(actor.spells, vec![json!({"name": "Minor Illusion"})]);
        assert_eq!(
            actor.compendium_ref.as_deref(),
            Some("dnd5e:monsters:goblin")
        );
    }

    #[test]
    fn given_unknown_ref_when_creating_then_not_found_with_the_seed_message() {
        let err = from_template(None, &request("dnd5e:monsters:nope", None, None)).unwrap_err();

        assert_eq!(
            err,
            ActorError::CompendiumNotFound("dnd5e:monsters:nope".to_owned())
        );
        assert_eq!(
            err.to_string(),
            "Compendium entry not found: dnd5e:monsters:nope"
        );
        assert_eq!(err.code(), ErrorCode::NotFound);
        assert_eq!(err.code().http_status(), 404);
    }

    #[test]
    fn given_an_entry_for_another_ref_when_creating_then_not_found() {
        let goblin = goblin();

        let err =
            from_template(Some(&goblin), &request("dnd5e:monsters:orc", None, None)).unwrap_err();

        assert_eq!(
            err.to_string(),
            "Compendium entry not found: dnd5e:monsters:orc"
        );
    }

    #[test]
    fn given_malformed_ref_when_creating_then_invalid_ref_before_lookup() {
        let err = from_template(None, &request("Goblin", None, None)).unwrap_err();

        assert!(
            matches!(err, ActorError::InvalidCompendiumRef { .. }),
            "{err:?}"
        );
        assert_eq!(err.code(), ErrorCode::InvalidMessage);
    }

    #[test]
    fn given_spell_entry_when_creating_an_actor_then_not_an_actor_template() {
        let fireball = fireball();

        let err = from_template(
            Some(&fireball),
            &request("dnd5e:spells:fireball", None, None),
        )
        .unwrap_err();

        assert!(
            matches!(&err, ActorError::NotAnActorTemplate { reference, .. } if reference == "dnd5e:spells:fireball"),
            "{err:?}"
        );
        assert_eq!(err.code(), ErrorCode::InvalidMessage);
        assert!(!fireball.is_actor_template());
        assert!(goblin().is_actor_template());
    }

    #[test]
    fn given_template_with_broken_stat_block_when_creating_then_not_an_actor_template_naming_it() {
        let mut goblin = goblin();
        goblin.data["attributes"]["ac"] = json!("fifteen");

        let err = from_template(Some(&goblin), &request("dnd5e:monsters:goblin", None, None))
            .unwrap_err();

        assert!(
            matches!(&err, ActorError::NotAnActorTemplate { reason, .. } if reason.contains("attributes.ac")),
            "{err:?}"
        );
    }

    #[test]
    fn given_customizations_setting_each_protected_field_then_refused() {
        let goblin = goblin();
        for (field, value) in protected_values() {
            let customizations = json!({ field: value, "name": "x" });

            let err = from_template(
                Some(&goblin),
                &request("dnd5e:monsters:goblin", None, Some(customizations)),
            )
            .unwrap_err();

            assert_eq!(err, ActorError::ProtectedField(field));
            assert_eq!(err.code(), ErrorCode::InvalidMessage);
        }
    }

    #[test]
    fn given_custom_data_setting_each_protected_field_then_refused() {
        for (field, value) in protected_values() {
            let err = custom(json!({ field: value })).unwrap_err();

            assert_eq!(err, ActorError::ProtectedField(field));
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn given_patch_changing_each_protected_field_then_refused() {
        let actor = goblin_scout();
        for (field, value) in protected_values() {
            let err = apply_patch(&actor, &json!({ field: value }), NOW + 1).unwrap_err();

            assert_eq!(err, ActorError::ProtectedField(field));
        }
    }

    #[test]
    fn given_patch_repeating_the_fetched_document_then_only_edits_apply() {
        let actor = goblin_scout();
        let mut body = actor.to_value();
        body["name"] = json!("Renamed");

        let patched = apply_patch(&actor, &body, NOW + 5).unwrap();

        assert_eq!(patched.name, "Renamed");
        assert_eq!(patched.id, actor.id);
        assert_eq!(patched.updated_at, NOW + 5);
    }

    #[test]
    fn given_unknown_top_level_field_then_refused_not_dropped() {
        let err = custom(json!({"hitPoints": 5})).unwrap_err();

        assert!(
            matches!(&err, ActorError::InvalidCustomization(m) if m.contains("`hitPoints`")),
            "{err:?}"
        );
    }

    #[test]
    fn given_non_object_bodies_then_invalid_customization() {
        let goblin = goblin();

        let custom_err = custom(json!([1, 2])).unwrap_err();
        let template_err = from_template(
            Some(&goblin),
            &request("dnd5e:monsters:goblin", None, Some(json!("big"))),
        )
        .unwrap_err();
        let patch_err = apply_patch(&goblin_scout(), &json!(3), NOW).unwrap_err();

        for err in [custom_err, template_err, patch_err] {
            assert!(
                matches!(err, ActorError::InvalidCustomization(_)),
                "{err:?}"
            );
        }
    }

    #[test]
    fn given_empty_custom_data_then_the_seed_defaults_apply() {
        let actor = custom(json!({})).unwrap();

        assert_eq!(actor.name, DEFAULT_ACTOR_NAME);
        assert_eq!(actor.actor_type, ActorType::Npc);
        assert_eq!(actor.attributes, Attributes::default_stat_block());
        assert_eq!(actor.attributes.hp, Hp::new(10, 10));
        assert_eq!((actor.attributes.ac, actor.attributes.speed), (10, 30));
        assert!(actor.spells.is_empty() && actor.equipment.is_empty() && actor.features.is_empty());
        assert_eq!(actor.compendium_ref, None);
        assert_eq!(actor.id, ActorId::new("a-2"));
        assert_eq!((actor.created_at, actor.updated_at), (NOW, NOW));
        assert!(actor.to_value().get("compendiumRef").is_none());
    }

    #[test]
    fn given_null_or_blank_custom_fields_then_defaults_apply() {
        let actor = custom(json!({"name": " ", "type": null, "spells": null})).unwrap();

        assert_eq!(actor.name, DEFAULT_ACTOR_NAME);
        assert_eq!(actor.actor_type, ActorType::Npc);
        assert!(actor.spells.is_empty());
    }

    #[test]
    fn given_partial_attributes_then_they_merge_over_the_defaults() {
        let actor = custom(json!({
            "name": "Bandit Captain",
            "type": "character",
            "attributes": {"hp": {"value": 15, "max": 15}, "saves": {"dex": 4}, "cr": 2},
            "equipment": [{"name": "Scimitar"}]
        }))
        .unwrap();

        assert_eq!(actor.name, "Bandit Captain");
        assert_eq!(actor.actor_type, ActorType::Character);
        assert_eq!(actor.attributes.hp, Hp::new(15, 15));
        assert_eq!((actor.attributes.ac, actor.attributes.speed), (10, 30));
        assert_eq!(actor.attributes.saves["dex"], 4);
        assert_eq!(actor.attributes.extra["cr"], json!(2));
        assert_eq!(actor.equipment, vec![json!({"name": "Scimitar"})]);
    }

    #[test]
    fn given_wrongly_typed_fields_then_invalid_customization_names_the_field() {
        let cases = [
            (json!({"attributes": {"ac": "x"}}), "attributes.ac"),
            (
                json!({"attributes": {"hp": {"value": "full"}}}),
                "attributes.hp.value",
            ),
            (json!({"attributes": {"hp": null}}), "attributes.hp"),
            (
                json!({"attributes": {"saves": {"dex": "+2"}}}),
                "attributes.saves.dex",
            ),
            (json!({"attributes": {"skills": []}}), "attributes.skills"),
            (json!({"attributes": 5}), "attributes"),
            (json!({"type": "dragon"}), "type"),
            (json!({"name": 5}), "name"),
            (json!({"features": {"a": 1}}), "features"),
        ];
        for (data, path) in cases {
            let err = custom(data.clone()).unwrap_err();

            match &err {
                ActorError::InvalidCustomization(message) => assert!(
                    message.starts_with(path),
                    "{data}: expected a message about {path}, got {message}"
                ),
                other => panic!("{data}: expected InvalidCustomization, got {other:?}"),
            }
            assert_eq!(err.code(), ErrorCode::InvalidMessage);
        }
    }

    #[test]
    fn given_ac_as_a_string_then_the_message_says_what_is_wrong() {
        let err = custom(json!({"attributes": {"ac": "x"}})).unwrap_err();

        assert_eq!(
            err.to_string(),
            "invalid actor data: attributes.ac: invalid type: string \"x\", expected i64"
        );
    }

    #[test]
    fn given_nested_objects_when_merged_then_keys_merge_recursively() {
        let mut base = json!({"a": {"b": 1, "c": {"d": 2, "e": 3}}, "f": 4});

        deep_merge(&mut base, &json!({"a": {"c": {"d": 20}, "g": 5}}));

        assert_eq!(
            base,
            json!({"a": {"b": 1, "c": {"d": 20, "e": 3}, "g": 5}, "f": 4})
        );
    }

    #[test]
    fn given_arrays_when_merged_then_the_overlay_array_replaces_wholesale() {
        let mut base = json!({"spells": [{"name": "a"}, {"name": "b"}, {"name": "c"}]});

        deep_merge(&mut base, &json!({"spells": [{"level": 1}]}));

        assert_eq!(base, json!({"spells": [{"level": 1}]}));
    }

    #[test]
    fn given_null_or_scalar_overlays_when_merged_then_they_replace_and_do_not_delete() {
        let mut base = json!({"senses": {"darkvision": 60}, "cr": 1, "hp": 3});

        deep_merge(
            &mut base,
            &json!({"senses": null, "cr": "1/4", "hp": {"max": 9}}),
        );

        assert_eq!(base, json!({"senses": null, "cr": "1/4", "hp": {"max": 9}}));
    }

    #[test]
    fn given_template_mutated_after_creation_then_the_actor_is_unchanged() {
        let mut goblin = goblin();
        let actor =
            from_template(Some(&goblin), &request("dnd5e:monsters:goblin", None, None)).unwrap();
        let before = actor.clone();

        goblin.data["attributes"]["hp"]["max"] = json!(99);
        goblin.data["attributes"]["senses"]["darkvision"] = json!(0);
        goblin.data["equipment"].as_array_mut().unwrap().clear();
        goblin.name = "Hobgoblin".to_owned();

        assert_eq!(actor, before);
        assert_eq!(actor.attributes.hp.max, 7);
        assert_eq!(actor.attributes.extra["senses"]["darkvision"], json!(60));
        assert_eq!(actor.equipment.len(), 2);
    }

    #[test]
    fn given_patch_when_applied_then_it_merges_bumps_updated_at_and_keeps_the_back_link() {
        let actor = goblin_scout();

        let patched = apply_patch(
            &actor,
            &json!({"attributes": {"hp": {"value": 3}}, "name": "Wounded Scout"}),
            NOW + 1_000,
        )
        .unwrap();

        assert_eq!(patched.attributes.hp.value, 3);
        assert_eq!(patched.attributes.hp.max, 7);
        assert_eq!(patched.attributes.ac, 15);
        assert_eq!(patched.name, "Wounded Scout");
        assert_eq!(patched.updated_at, NOW + 1_000);
        assert_eq!(patched.created_at, NOW);
        assert_eq!(
            patched.compendium_ref.as_deref(),
            Some("dnd5e:monsters:goblin")
        );
        assert_eq!(
            (patched.id, patched.created_by),
            (actor.id, actor.created_by)
        );
    }

    #[test]
    fn given_clock_behind_when_patching_then_updated_at_does_not_go_back() {
        let actor = goblin_scout();

        let patched = apply_patch(&actor, &json!({"name": "Later"}), NOW - 10).unwrap();

        assert_eq!(patched.updated_at, NOW);
    }

    #[test]
    fn given_patch_blanking_the_name_or_breaking_a_type_then_refused() {
        let actor = goblin_scout();

        let blank = apply_patch(&actor, &json!({"name": ""}), NOW).unwrap_err();
        let null_list = apply_patch(&actor, &json!({"equipment": null}), NOW).unwrap_err();

        assert_eq!(
            blank,
            ActorError::InvalidCustomization("name must not be empty".to_owned())
        );
        assert!(
            matches!(&null_list, ActorError::InvalidCustomization(m) if m.starts_with("equipment")),
            "{null_list:?}"
        );
    }

    #[test]
    fn given_valid_and_invalid_refs_when_parsed_then_only_three_lowercase_parts_pass() {
        let goblin: CompendiumRef = "dnd5e:monsters:goblin".parse().unwrap();
        assert_eq!(
            (goblin.system(), goblin.category(), goblin.slug()),
            ("dnd5e", "monsters", "goblin")
        );
        assert!(CompendiumRef::parse("dnd5e:monsters:goblin_boss-2").is_ok());

        for bad in [
            "",
            "goblin",
            "dnd5e:goblin",
            "dnd5e:monsters:goblin:extra",
            "dnd5e::goblin",
            "DND5E:monsters:goblin",
            "dnd5e:monsters:goblin scout",
            "dnd5e:monsters:gob/lin",
        ] {
            assert!(
                matches!(
                    CompendiumRef::parse(bad),
                    Err(ActorError::InvalidCompendiumRef { .. })
                ),
                "{bad:?} should be refused"
            );
        }
        let long = format!("dnd5e:monsters:{}", "a".repeat(MAX_COMPENDIUM_REF_LEN));
        assert!(CompendiumRef::parse(&long).is_err());
    }

    #[test]
    fn given_compendium_ref_json_then_it_round_trips_and_refuses_bad_values() {
        let parsed: CompendiumRef = serde_json::from_value(json!("dnd5e:spells:fireball")).unwrap();
        assert_eq!(
            serde_json::to_value(&parsed).unwrap(),
            json!("dnd5e:spells:fireball")
        );
        assert!(serde_json::from_value::<CompendiumRef>(json!("fireball")).is_err());
    }

    #[test]
    fn given_actor_json_then_field_names_follow_the_model() {
        let actor = goblin_scout();

        let value = actor.to_value();

        assert_eq!(value["type"], json!("monster"));
        assert_eq!(value["campaignId"], json!("c-1"));
        assert_eq!(value["compendiumRef"], json!("dnd5e:monsters:goblin"));
        assert_eq!(value["attributes"]["abilities"]["dex"], json!(14));
        assert_eq!(value["createdAt"], json!(NOW));
        let back: Actor = serde_json::from_value(value).unwrap();
        assert_eq!(back, actor);

        let mut sparse = custom(json!({})).unwrap().to_value();
        for key in ["spells", "equipment", "features"] {
            sparse.as_object_mut().unwrap().remove(key);
        }
        assert!(
            serde_json::from_value::<Actor>(sparse)
                .unwrap()
                .features
                .is_empty()
        );
    }

    #[test]
    fn given_compendium_entry_json_then_ref_is_renamed() {
        let entry = goblin();

        let value = serde_json::to_value(&entry).unwrap();

        assert_eq!(value["ref"], json!("dnd5e:monsters:goblin"));
        assert_eq!(
            serde_json::from_value::<CompendiumEntry>(value).unwrap(),
            entry
        );
    }

    #[test]
    fn given_create_bodies_then_they_are_classified_by_compendium_ref() {
        let template = CreateActorRequest::from_body(&json!({
            "compendiumRef": "dnd5e:monsters:goblin", "name": "Goblin Scout #1"
        }))
        .unwrap();
        let custom_body = CreateActorRequest::from_body(&json!({"name": "Bob"})).unwrap();
        let mixed = CreateActorRequest::from_body(&json!({
            "compendiumRef": "dnd5e:monsters:goblin", "attributes": {}
        }));

        assert_eq!(
            template,
            CreateActorRequest::FromTemplate(request(
                "dnd5e:monsters:goblin",
                Some("Goblin Scout #1"),
                None
            ))
        );
        assert_eq!(
            custom_body,
            CreateActorRequest::Custom(json!({"name": "Bob"}))
        );
        assert!(matches!(mixed, Err(ActorError::InvalidCustomization(_))));
        assert!(CreateActorRequest::from_body(&json!("x")).is_err());
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z]{0,4}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-c]{1,2}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn json_object() -> impl Strategy<Value = Value> {
        prop::collection::btree_map("[a-c]{1,2}", json_value(), 0..5)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn merging_an_empty_object_into_an_object_changes_nothing(x in json_object()) {
            let mut merged = x.clone();
            deep_merge(&mut merged, &json!({}));
            prop_assert_eq!(merged, x);
        }

        #[test]
        fn merging_the_same_overlay_twice_is_the_same_as_once(
            a in prop_oneof![json_object(), json_value()],
            b in prop_oneof![json_object(), json_value()],
        ) {
            let mut once = a.clone();
            deep_merge(&mut once, &b);
            let mut twice = once.clone();
            deep_merge(&mut twice, &b);
            prop_assert_eq!(twice, once);
        }

        #[test]
        fn a_non_object_overlay_always_wins(a in json_object(), b in json_value()) {
            prop_assume!(!b.is_object());
            let mut merged = a;
            deep_merge(&mut merged, &b);
            prop_assert_eq!(merged, b);
        }
    }
}
