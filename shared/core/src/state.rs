//! `GameSessionState` and the projection `apply(state, event)`.
//!
//! The state of a session is a pure function of its committed events (ARCHITECTURE.md
//! invariants 6 and 7):
//!
//! - each active actor instance holds its **base values** (the actor document copied into the
//!   `core:session:actor_added` event) and **overrides** (leaf path → value plus the event that
//!   wrote it); later edits of the campaign actor never reach a running session;
//! - the current value of a path is its override, else the base leaf, else `null`
//!   ([`crate::paths`] defines leaves);
//! - `{from, to}` commits only if every `from` equals the current value as canonical JSON; all
//!   paths of an event apply together or none, and a mismatch reports the current value of
//!   every path of the event;
//! - `{op: "inc", by}` adds to the current integer (missing or `null` = 0; anything else is
//!   invalid);
//! - `{to}` alone is a blind write; `core:gm_override` force-sets;
//! - `$session` addresses `encounter.*` and `environment.*`, whose base values are
//!   [`session_defaults`], and `settings.*` (e.g. `settings.requireServerRolls`), which only
//!   `core:gm_override` may write: a player must not be able to lift a rule the GM set.
//!
//! The same rules run inside the atomic commit of every event-log adapter; this module is the
//! reference they are tested against, and what clients use to project the log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use thiserror::Error;

use crate::canonical::canonical_json;
use crate::changes::{
    Change, ChangeError, ChangeSet, MAX_SAFE_INTEGER, as_safe_integer, parse_changes,
};
use crate::event::GameEvent;
use crate::ids::{ActorId, CampaignId, EventId, InstanceId, Sequence, SessionId, UserId};
use crate::paths::{leaf_at, set_path};

/// One override of one path: the value and the event that wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Override {
    /// The value now at the path.
    pub value: Value,
    /// Server time of the writing event.
    pub timestamp: u64,
    /// The writing event.
    pub event_id: EventId,
    /// Who sent it.
    pub user_id: UserId,
    /// Its sequence.
    pub sequence: Sequence,
}

/// An actor instance placed in the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveActor {
    /// The campaign actor it was copied from.
    pub actor_id: ActorId,
    /// Server time of the `actor_added` event.
    pub added_at: u64,
    /// Who added it.
    pub added_by: UserId,
    /// The base document, as added.
    pub actor: Value,
    /// Live changes, keyed by dotted leaf path.
    #[serde(default)]
    pub overrides: BTreeMap<String, Override>,
}

impl ActiveActor {
    /// The current value at `path`: override, else base leaf, else `null`.
    pub fn current(&self, path: &str) -> Value {
        current_of(&self.actor, &self.overrides, path)
    }

    /// The runtime document: base values with overrides applied (in path order, so the result
    /// does not depend on the order the overrides were written in).
    pub fn runtime(&self) -> Value {
        assemble(&self.actor, &self.overrides)
    }
}

/// The base values of the `$session` pseudo-instance.
pub fn session_defaults() -> Value {
    json!({
        "encounter": {"active": false, "round": 0, "currentTurn": 0, "initiative": []},
        "environment": {"lighting": "bright", "effects": []},
        "settings": {"requireServerRolls": false}
    })
}

fn current_of(base: &Value, overrides: &BTreeMap<String, Override>, path: &str) -> Value {
    overrides
        .get(path)
        .map(|o| o.value.clone())
        .or_else(|| leaf_at(base, path).cloned())
        .unwrap_or(Value::Null)
}

fn assemble(base: &Value, overrides: &BTreeMap<String, Override>) -> Value {
    let mut doc = base.clone();
    for (path, o) in overrides {
        set_path(&mut doc, path, o.value.clone());
    }
    doc
}

/// The whole live state of a game session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "StateRepr")]
pub struct GameSessionState {
    /// The session.
    pub session_id: SessionId,
    /// Its campaign, when known (the projection does not need it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<CampaignId>,
    /// The sequence of the last applied event (0 before any).
    pub last_event_sequence: Sequence,
    /// Actor instances by instance id.
    #[serde(default)]
    pub active_actors: BTreeMap<InstanceId, ActiveActor>,
    /// Overrides of the `$session` fields (`encounter.*`, `environment.*`), kept with their
    /// provenance so a snapshot restores them exactly. An addition to the contract's state
    /// shape; `encounter` and `environment` carry the resolved values.
    #[serde(default)]
    pub session_overrides: BTreeMap<String, Override>,
    /// Resolved `encounter` (output only; recomputed from defaults and overrides).
    encounter: Value,
    /// Resolved `environment` (output only).
    environment: Value,
}

/// The stored fields of a state; the resolved session fields are recomputed on load.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateRepr {
    session_id: SessionId,
    #[serde(default)]
    campaign_id: Option<CampaignId>,
    last_event_sequence: Sequence,
    #[serde(default)]
    active_actors: BTreeMap<InstanceId, ActiveActor>,
    #[serde(default)]
    session_overrides: BTreeMap<String, Override>,
}

impl From<StateRepr> for GameSessionState {
    fn from(repr: StateRepr) -> Self {
        let mut state = GameSessionState::new(repr.session_id, repr.campaign_id);
        state.last_event_sequence = repr.last_event_sequence;
        state.active_actors = repr.active_actors;
        state.session_overrides = repr.session_overrides;
        state.refresh_session_fields();
        state
    }
}

/// Why an event cannot be applied. Each variant maps to one wire code.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ApplyError {
    /// A compare-and-set precondition failed. Edge: `conflict`, with `current`.
    #[error("state changed: compare-and-set precondition failed")]
    Conflict {
        /// The current value of every path of the event.
        current: BTreeMap<String, Value>,
    },
    /// The state-change conventions are malformed. Edge: `invalid_event`.
    #[error(transparent)]
    Invalid(#[from] ChangeError),
    /// The event refers to state that does not allow it. Edge: `invalid_event`.
    #[error("{0}")]
    Rejected(String),
    /// The event is not the next one of this session's log (a projection bug or a gap).
    #[error("expected sequence {expected}, got {got}")]
    OutOfOrder {
        /// The sequence the state expects next.
        expected: Sequence,
        /// The sequence of the event.
        got: Sequence,
    },
    /// The event belongs to another session.
    #[error("event of session {got} applied to session {expected}")]
    WrongSession {
        /// This state's session.
        expected: SessionId,
        /// The event's session.
        got: SessionId,
    },
}

impl ApplyError {
    /// The wire code of this error.
    pub fn code(&self) -> crate::codes::ErrorCode {
        match self {
            ApplyError::Conflict { .. } => crate::codes::ErrorCode::Conflict,
            ApplyError::Invalid(_) | ApplyError::Rejected(_) => {
                crate::codes::ErrorCode::InvalidEvent
            }
            ApplyError::OutOfOrder { .. } | ApplyError::WrongSession { .. } => {
                crate::codes::ErrorCode::Internal
            }
        }
    }
}

/// A planned write, computed before anything is changed (all-or-nothing).
enum Write {
    Set {
        instance: InstanceId,
        path: String,
        value: Value,
    },
    Add {
        instance: InstanceId,
        actor: ActiveActor,
    },
    Remove {
        instance: InstanceId,
    },
}

impl GameSessionState {
    /// An empty session state.
    pub fn new(session_id: SessionId, campaign_id: Option<CampaignId>) -> Self {
        let mut state = Self {
            session_id,
            campaign_id,
            last_event_sequence: Sequence::ZERO,
            active_actors: BTreeMap::new(),
            session_overrides: BTreeMap::new(),
            encounter: Value::Null,
            environment: Value::Null,
        };
        state.refresh_session_fields();
        state
    }

    /// Recomputes the resolved `encounter` and `environment` from defaults and overrides.
    fn refresh_session_fields(&mut self) {
        let doc = assemble(&session_defaults(), &self.session_overrides);
        self.encounter = doc.get("encounter").cloned().unwrap_or(Value::Null);
        self.environment = doc.get("environment").cloned().unwrap_or(Value::Null);
    }

    /// Resolved encounter fields.
    pub fn encounter(&self) -> &Value {
        &self.encounter
    }

    /// Resolved environment fields.
    pub fn environment(&self) -> &Value {
        &self.environment
    }

    /// `settings.requireServerRolls`: the GM requires trusted server dice for plugin results
    /// (written with `core:gm_override` only; clients mark results without a verified roll).
    pub fn require_server_rolls(&self) -> bool {
        self.current(&InstanceId::session(), "settings.requireServerRolls")
            .is_some_and(|v| v == Value::Bool(true))
    }

    /// Whether the instance (or `$session`) exists in this session.
    pub fn has_instance(&self, instance: &InstanceId) -> bool {
        instance.is_session() || self.active_actors.contains_key(instance)
    }

    /// The current value at `path` of an instance (or `$session`); `None` if the instance is
    /// not in the session.
    pub fn current(&self, instance: &InstanceId, path: &str) -> Option<Value> {
        if instance.is_session() {
            Some(current_of(
                &session_defaults(),
                &self.session_overrides,
                path,
            ))
        } else {
            self.active_actors.get(instance).map(|a| a.current(path))
        }
    }

    /// The runtime actor of an instance: base document with overrides applied, plus
    /// `instanceId`.
    pub fn runtime_actor(&self, instance: &InstanceId) -> Option<Value> {
        let actor = self.active_actors.get(instance)?;
        let mut doc = actor.runtime();
        if let Value::Object(map) = &mut doc {
            map.insert("instanceId".into(), Value::String(instance.0.clone()));
        }
        Some(doc)
    }

    /// Checks an event against this state without changing it: what a commit would decide.
    pub fn check(&self, event: &GameEvent) -> Result<(), ApplyError> {
        self.plan(event).map(|_| ())
    }

    /// Applies the next committed event. On error nothing changes.
    pub fn apply(&mut self, event: &GameEvent) -> Result<(), ApplyError> {
        let writes = self.plan(event)?;
        for write in writes {
            match write {
                Write::Set {
                    instance,
                    path,
                    value,
                } => {
                    let o = Override {
                        value,
                        timestamp: event.timestamp,
                        event_id: event.id.clone(),
                        user_id: event.user_id.clone(),
                        sequence: event.sequence,
                    };
                    if instance.is_session() {
                        self.session_overrides.insert(path, o);
                    } else if let Some(actor) = self.active_actors.get_mut(&instance) {
                        actor.overrides.insert(path, o);
                    }
                }
                Write::Add { instance, actor } => {
                    self.active_actors.insert(instance, actor);
                }
                Write::Remove { instance } => {
                    self.active_actors.remove(&instance);
                }
            }
        }
        self.last_event_sequence = event.sequence;
        self.refresh_session_fields();
        Ok(())
    }

    fn plan(&self, event: &GameEvent) -> Result<Vec<Write>, ApplyError> {
        if event.session_id != self.session_id {
            return Err(ApplyError::WrongSession {
                expected: self.session_id.clone(),
                got: event.session_id.clone(),
            });
        }
        let expected = self.last_event_sequence.next();
        if event.sequence != expected {
            return Err(ApplyError::OutOfOrder {
                expected,
                got: event.sequence,
            });
        }
        let changes = parse_changes(&event.event_type, &event.payload)?;
        self.plan_changes(&changes, event)
    }

    fn plan_changes(
        &self,
        changes: &ChangeSet,
        event: &GameEvent,
    ) -> Result<Vec<Write>, ApplyError> {
        match changes {
            ChangeSet::None => Ok(vec![]),
            ChangeSet::AddActor {
                instance,
                actor_id,
                actor,
            } => {
                if self.active_actors.contains_key(instance) {
                    return Err(ApplyError::Rejected(format!(
                        "instance {instance} is already in the session"
                    )));
                }
                Ok(vec![Write::Add {
                    instance: instance.clone(),
                    actor: ActiveActor {
                        actor_id: actor_id.clone(),
                        added_at: event.timestamp,
                        added_by: event.user_id.clone(),
                        actor: actor.clone(),
                        overrides: BTreeMap::new(),
                    },
                }])
            }
            ChangeSet::RemoveActor { instance } => {
                self.require_instance(instance)?;
                Ok(vec![Write::Remove {
                    instance: instance.clone(),
                }])
            }
            ChangeSet::ForceSet { targets } => {
                let mut writes = Vec::new();
                for (instance, sets) in targets {
                    self.require_instance(instance)?;
                    for (path, value) in sets {
                        writes.push(Write::Set {
                            instance: instance.clone(),
                            path: path.clone(),
                            value: value.clone(),
                        });
                    }
                }
                Ok(writes)
            }
            ChangeSet::Update { instance, changes } => {
                self.require_instance(instance)?;
                let current: BTreeMap<String, Value> = changes
                    .iter()
                    .map(|c| {
                        let value = self.current(instance, &c.path).unwrap_or(Value::Null);
                        (c.path.clone(), value)
                    })
                    .collect();
                let mismatch = changes.iter().any(|c| match &c.change {
                    Change::Cas { from, .. } => {
                        canonical_json(from) != canonical_json(&current[&c.path])
                    }
                    _ => false,
                });
                if mismatch {
                    return Err(ApplyError::Conflict { current });
                }
                let mut writes = Vec::with_capacity(changes.len());
                for c in changes {
                    let value = match &c.change {
                        Change::Cas { to, .. } | Change::Blind { to } => to.clone(),
                        Change::Inc { by } => {
                            Value::from(increment(&current[&c.path], *by, &c.path)?)
                        }
                    };
                    writes.push(Write::Set {
                        instance: instance.clone(),
                        path: c.path.clone(),
                        value,
                    });
                }
                Ok(writes)
            }
        }
    }

    fn require_instance(&self, instance: &InstanceId) -> Result<(), ApplyError> {
        if self.has_instance(instance) {
            Ok(())
        } else {
            Err(ApplyError::Rejected(format!(
                "instance {instance} is not in the session"
            )))
        }
    }
}

/// `current + by` under the `inc` rule: missing or `null` counts as 0, the current value must be
/// an integer, and the result must stay within ±(2^53 − 1).
pub fn increment(current: &Value, by: i64, path: &str) -> Result<i64, ApplyError> {
    let base = match current {
        Value::Null => 0,
        other => as_safe_integer(other).ok_or_else(|| {
            ApplyError::Rejected(format!(
                "inc on {path}: the current value is not an integer"
            ))
        })?,
    };
    let sum = base
        .checked_add(by)
        .filter(|s| s.unsigned_abs() <= MAX_SAFE_INTEGER.unsigned_abs());
    let Some(sum) = sum else {
        return Err(ApplyError::Rejected(format!(
            "inc on {path}: result out of range"
        )));
    };
    Ok(sum)
}

/// Applies events in order to a state (a helper for folds and clients).
pub fn apply_all<'a>(
    state: &mut GameSessionState,
    events: impl IntoIterator<Item = &'a GameEvent>,
) -> Result<(), ApplyError> {
    for event in events {
        state.apply(event)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changes::{ACTOR_ADDED, ACTOR_REMOVED, GM_OVERRIDE};

    #[test]
    fn given_extreme_operands_when_incrementing_then_out_of_range_never_overflows() {
        let max = json!(MAX_SAFE_INTEGER);
        assert!(increment(&max, 1, "p").is_err());
        assert!(increment(&json!(-MAX_SAFE_INTEGER), -1, "p").is_err());
        assert!(
            increment(&json!(i64::MIN), 1, "p").is_err(),
            "current i64::MIN"
        );
        assert!(increment(&json!(i64::MAX), i64::MAX, "p").is_err());
        assert!(increment(&json!(-5), i64::MIN, "p").is_err());
        assert_eq!(increment(&max, -1, "p").unwrap(), MAX_SAFE_INTEGER - 1);
        assert_eq!(increment(&Value::Null, 3, "p").unwrap(), 3);
    }

    struct Log {
        state: GameSessionState,
        next: u64,
    }

    impl Log {
        fn new() -> Self {
            Self {
                state: GameSessionState::new(SessionId::new("s1"), None),
                next: 1,
            }
        }

        fn event(&self, user: &str, event_type: &str, payload: Value) -> GameEvent {
            GameEvent {
                id: EventId::new(format!("00000000-0000-4000-8000-{:012}", self.next)),
                sequence: Sequence(self.next),
                timestamp: 1_000 * self.next,
                client_timestamp: None,
                user_id: UserId::new(user),
                session_id: SessionId::new("s1"),
                event_type: event_type.into(),
                payload,
                checksum: None,
            }
        }

        fn submit(
            &mut self,
            user: &str,
            event_type: &str,
            payload: Value,
        ) -> Result<(), ApplyError> {
            let e = self.event(user, event_type, payload);
            self.state.apply(&e)?;
            self.next += 1;
            Ok(())
        }

        fn add_goblin(&mut self, instance: &str, hp: i64) {
            self.submit(
                "gm",
                ACTOR_ADDED,
                json!({"instanceId": instance, "actorId": "a-goblin",
                       "actor": {"name": "Goblin", "attributes": {"hp": {"value": hp, "max": hp}, "ac": 15}}}),
            )
            .unwrap();
        }

        fn hp(&self, instance: &str) -> Value {
            self.state
                .current(&InstanceId::new(instance), "attributes.hp.value")
                .unwrap()
        }
    }

    fn hit(instance: &str, from: i64, to: i64) -> Value {
        json!({"target": {"instanceId": instance},
               "stateChanges": {"attributes.hp.value": {"from": from, "to": to}}})
    }

    #[test]
    fn given_a_goblin_when_hit_with_matching_from_then_hp_changes_and_override_records_provenance()
    {
        let mut log = Log::new();
        log.add_goblin("goblin1", 15);
        log.submit("p1", "plugin:dnd5e:attack", hit("goblin1", 15, 7))
            .unwrap();
        assert_eq!(log.hp("goblin1"), json!(7));
        let o =
            &log.state.active_actors[&InstanceId::new("goblin1")].overrides["attributes.hp.value"];
        assert_eq!(o.user_id, UserId::new("p1"));
        assert_eq!(o.sequence, Sequence(2));
        assert_eq!(o.timestamp, 2_000);
        assert_eq!(log.state.last_event_sequence, Sequence(2));
    }

    #[test]
    fn given_a_stale_from_when_applied_then_conflict_with_current_of_every_path_and_nothing_changes()
     {
        let mut log = Log::new();
        log.add_goblin("goblin1", 15);
        log.submit("p1", "plugin:dnd5e:attack", hit("goblin1", 15, 7))
            .unwrap();
        let before = log.state.clone();
        let err = log
            .submit(
                "p2",
                "plugin:dnd5e:attack",
                json!({"target": {"instanceId": "goblin1"},
                       "stateChanges": {"attributes.hp.value": {"from": 15, "to": 10},
                                        "conditions": {"to": ["prone"]}}}),
            )
            .unwrap_err();
        assert_eq!(
            err,
            ApplyError::Conflict {
                current: BTreeMap::from([
                    ("attributes.hp.value".into(), json!(7)),
                    ("conditions".into(), Value::Null),
                ])
            }
        );
        assert_eq!(log.state, before, "a rejected event changes nothing");
    }

    #[test]
    fn given_two_paths_when_one_from_mismatches_then_neither_applies() {
        let mut log = Log::new();
        log.add_goblin("g", 15);
        let err = log.submit(
            "p1",
            "plugin:x:y",
            json!({"target": {"instanceId": "g"},
                   "stateChanges": {"attributes.hp.value": {"from": 15, "to": 1},
                                    "attributes.ac": {"from": 99, "to": 1}}}),
        );
        assert!(matches!(err, Err(ApplyError::Conflict { .. })));
        assert_eq!(log.hp("g"), json!(15));
    }

    #[test]
    fn cas_compares_canonical_json_and_missing_is_null() {
        let mut log = Log::new();
        log.add_goblin("g", 15);
        // 15.0 and 15 are the same canonical number.
        log.submit("p1", "plugin:x:y", hit("g", 15, 9)).unwrap();
        log.submit(
            "p1",
            "plugin:x:y",
            json!({"target": {"instanceId": "g"},
                   "stateChanges": {"attributes.hp.value": {"from": 9.0, "to": 8}}}),
        )
        .unwrap();
        assert_eq!(log.hp("g"), json!(8));
        log.submit(
            "p1",
            "plugin:x:y",
            json!({"target": {"instanceId": "g"},
                   "stateChanges": {"flags.blessed": {"from": null, "to": true}}}),
        )
        .unwrap();
        assert_eq!(
            log.state.current(&InstanceId::new("g"), "flags.blessed"),
            Some(json!(true))
        );
        // Object key order does not matter for arrays of objects either.
        log.submit(
            "p1",
            "plugin:x:y",
            json!({"target": {"instanceId": "g"},
                   "stateChanges": {"items": {"to": [{"a": 1, "b": 2}]}}}),
        )
        .unwrap();
        let reordered: Value = serde_json::from_str(
            r#"{"target": {"instanceId": "g"}, "stateChanges": {"items": {"from": [{"b": 2, "a": 1.0}], "to": []}}}"#,
        )
        .unwrap();
        log.submit("p1", "plugin:x:y", reordered).unwrap();
    }

    #[test]
    fn inc_adds_treats_missing_as_zero_and_refuses_non_numbers() {
        let mut log = Log::new();
        log.add_goblin("g", 15);
        let inc = |path: &str, by: i64| json!({"target": {"instanceId": "g"}, "stateChanges": {path: {"op": "inc", "by": by}}});
        log.submit("p1", "plugin:x:y", inc("attributes.hp.value", -5))
            .unwrap();
        assert_eq!(log.hp("g"), json!(10));
        log.submit("p1", "plugin:x:y", inc("counters.rage", 2))
            .unwrap();
        assert_eq!(
            log.state.current(&InstanceId::new("g"), "counters.rage"),
            Some(json!(2))
        );
        log.submit(
            "p1",
            "plugin:x:y",
            json!({"target": {"instanceId": "g"}, "stateChanges": {"name": {"op": "inc", "by": 1}}}),
        )
        .expect_err("name is a string");
        let err = log
            .submit(
                "p1",
                "plugin:x:y",
                inc("attributes.hp.value", MAX_SAFE_INTEGER),
            )
            .unwrap_err();
        assert!(matches!(err, ApplyError::Rejected(_)), "{err}");
        assert_eq!(log.hp("g"), json!(10));
    }

    #[test]
    fn require_server_rolls_defaults_off_and_follows_the_gm_override() {
        let mut state = GameSessionState::new(SessionId::new("s"), None);
        assert!(!state.require_server_rolls());
        assert_eq!(
            state.current(&InstanceId::session(), "settings.requireServerRolls"),
            Some(json!(false))
        );
        let on = GameEvent {
            id: EventId::new("e-1"),
            sequence: Sequence(1),
            timestamp: 1,
            client_timestamp: None,
            user_id: UserId::new("gm"),
            session_id: SessionId::new("s"),
            event_type: "core:gm_override".into(),
            payload: json!({"finalState": {"$session": {"settings.requireServerRolls": true}}}),
            checksum: None,
        };
        state.apply(&on).unwrap();
        assert!(state.require_server_rolls());
        // Settings are kept with their provenance, so a snapshot round trip keeps them.
        let back: GameSessionState =
            serde_json::from_value(serde_json::to_value(&state).unwrap()).unwrap();
        assert!(back.require_server_rolls());
        assert_eq!(back, state);
    }

    #[test]
    fn blind_writes_overwrite_and_gm_override_force_sets() {
        let mut log = Log::new();
        log.add_goblin("g", 15);
        log.submit(
            "p1",
            "core:token:move",
            json!({"target": {"instanceId": "g"}, "stateChanges": {"position.x": {"to": 3}}}),
        )
        .unwrap();
        log.submit(
            "p2",
            "core:token:move",
            json!({"target": {"instanceId": "g"}, "stateChanges": {"position.x": {"to": 5}}}),
        )
        .unwrap();
        assert_eq!(
            log.state.current(&InstanceId::new("g"), "position.x"),
            Some(json!(5))
        );
        log.submit(
            "gm",
            GM_OVERRIDE,
            json!({"finalState": {"g": {"attributes.hp.value": 1, "position.x": 4}}}),
        )
        .unwrap();
        assert_eq!(log.hp("g"), json!(1));
        assert_eq!(
            log.state.current(&InstanceId::new("g"), "position.x"),
            Some(json!(4))
        );
        let err = log.submit(
            "gm",
            GM_OVERRIDE,
            json!({"finalState": {"ghost": {"a": 1}}}),
        );
        assert!(matches!(err, Err(ApplyError::Rejected(_))));
    }

    #[test]
    fn session_fields_have_defaults_and_take_changes() {
        let mut log = Log::new();
        assert_eq!(log.state.encounter()["round"], json!(0));
        log.submit(
            "gm",
            "plugin:dnd5e:next_round",
            json!({"target": {"instanceId": "$session"},
                   "stateChanges": {"encounter.round": {"op": "inc", "by": 1},
                                    "encounter.active": {"from": false, "to": true},
                                    "environment.lighting": {"to": "dim"}}}),
        )
        .unwrap();
        assert_eq!(log.state.encounter()["round"], json!(1));
        assert_eq!(log.state.encounter()["active"], json!(true));
        assert_eq!(log.state.environment()["lighting"], json!("dim"));
        assert_eq!(log.state.environment()["effects"], json!([]));
    }

    #[test]
    fn unknown_instances_and_duplicate_adds_are_rejected() {
        let mut log = Log::new();
        assert!(matches!(
            log.submit("p1", "plugin:x:y", hit("nobody", 1, 0)),
            Err(ApplyError::Rejected(_))
        ));
        log.add_goblin("g", 15);
        assert!(matches!(
            log.submit(
                "gm",
                ACTOR_ADDED,
                json!({"instanceId": "g", "actorId": "a", "actor": {"name": "x"}})
            ),
            Err(ApplyError::Rejected(_))
        ));
        log.submit("gm", ACTOR_REMOVED, json!({"instanceId": "g"}))
            .unwrap();
        assert!(!log.state.has_instance(&InstanceId::new("g")));
        assert!(matches!(
            log.submit("gm", ACTOR_REMOVED, json!({"instanceId": "g"})),
            Err(ApplyError::Rejected(_))
        ));
    }

    #[test]
    fn base_values_are_those_carried_by_the_event() {
        let mut log = Log::new();
        log.add_goblin("g", 15);
        log.submit("p1", "plugin:x:y", hit("g", 15, 7)).unwrap();
        let runtime = log.state.runtime_actor(&InstanceId::new("g")).unwrap();
        assert_eq!(runtime["attributes"]["hp"]["value"], json!(7));
        assert_eq!(runtime["attributes"]["hp"]["max"], json!(15));
        assert_eq!(runtime["attributes"]["ac"], json!(15));
        assert_eq!(runtime["instanceId"], json!("g"));
        let base = &log.state.active_actors[&InstanceId::new("g")].actor;
        assert_eq!(
            base["attributes"]["hp"]["value"],
            json!(15),
            "base is untouched"
        );
    }

    #[test]
    fn events_must_come_in_sequence_for_this_session() {
        let mut log = Log::new();
        let mut e = log.event("p1", "core:chat", json!({"text": "hi"}));
        e.sequence = Sequence(2);
        assert!(matches!(
            log.state.apply(&e),
            Err(ApplyError::OutOfOrder { .. })
        ));
        e.sequence = Sequence(1);
        e.session_id = SessionId::new("other");
        assert!(matches!(
            log.state.apply(&e),
            Err(ApplyError::WrongSession { .. })
        ));
        log.submit("p1", "core:chat", json!({"text": "hi"}))
            .unwrap();
        assert_eq!(log.state.last_event_sequence, Sequence(1));
    }

    #[test]
    fn state_round_trips_through_json_with_the_contract_shape() {
        let mut log = Log::new();
        log.add_goblin("g", 15);
        log.submit("p1", "plugin:x:y", hit("g", 15, 7)).unwrap();
        log.submit(
            "gm",
            "plugin:x:z",
            json!({"target": {"instanceId": "$session"}, "stateChanges": {"environment.weather": {"to": "rain"}}}),
        )
        .unwrap();
        let json = serde_json::to_value(&log.state).unwrap();
        for key in [
            "sessionId",
            "lastEventSequence",
            "activeActors",
            "encounter",
            "environment",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        let o = &json["activeActors"]["g"]["overrides"]["attributes.hp.value"];
        for key in ["value", "timestamp", "eventId", "userId", "sequence"] {
            assert!(o.get(key).is_some(), "override missing {key}");
        }
        assert_eq!(json["environment"]["weather"], json!("rain"));
        let back: GameSessionState = serde_json::from_value(json).unwrap();
        assert_eq!(back, log.state);
    }
}
