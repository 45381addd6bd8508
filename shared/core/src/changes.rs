//! The state-change conventions of a payload, parsed once.
//!
//! The server reads nothing of a payload except these conventions (PROTOCOL.md, "Conventions"):
//!
//! - `payload.target.instanceId` + `payload.stateChanges: {path: change}` on any client type,
//!   where a change is `{from, to}` (compare-and-set), `{op: "inc", by}` (atomic add) or `{to}`
//!   (blind write);
//! - `core:gm_override`: `payload.finalState: {instanceId: {path: value}}` (force-set);
//! - `core:session:actor_added`: `{instanceId, actorId, actor}`, the actor's base values;
//! - `core:session:actor_removed`: `{instanceId}`.
//!
//! Parsing checks everything that needs no state (grammar, leaf values, integer `inc`), so the
//! atomic commit step only has to compare values.

use serde_json::{Map, Value};
use thiserror::Error;

use crate::ids::{ActorId, InstanceId};
use crate::paths::{PathError, is_leaf, validate_path};

/// Type of the force-set event a GM sends.
pub const GM_OVERRIDE: &str = "core:gm_override";
/// Type of the server event that places an actor in a session.
pub const ACTOR_ADDED: &str = "core:session:actor_added";
/// Type of the server event that removes an actor instance from a session.
pub const ACTOR_REMOVED: &str = "core:session:actor_removed";
/// Most paths one event may change.
pub const MAX_CHANGES: usize = 64;
/// Largest magnitude of an `inc` operand or result: integers stay exact as IEEE doubles (the
/// Redis script does its arithmetic in Lua numbers).
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// One change of one path.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Commit only if the current value equals `from` (canonical JSON; missing = `null`).
    Cas {
        /// Expected current value.
        from: Value,
        /// New value.
        to: Value,
    },
    /// Add `by` to the current integer (missing = 0).
    Inc {
        /// Signed integer amount.
        by: i64,
    },
    /// Last writer wins; reported to the GM when users race.
    Blind {
        /// New value.
        to: Value,
    },
}

/// A change addressed to a path.
#[derive(Debug, Clone, PartialEq)]
pub struct PathChange {
    /// Dotted leaf path.
    pub path: String,
    /// What to do there.
    pub change: Change,
}

/// Everything an event asks of the session state.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeSet {
    /// The event changes no state (chat, dice, token events without `stateChanges`, …).
    None,
    /// `stateChanges` on one instance (or `$session`): all paths apply together or none.
    Update {
        /// The target instance.
        instance: InstanceId,
        /// The changes, in path order.
        changes: Vec<PathChange>,
    },
    /// `core:gm_override`: values set unconditionally.
    ForceSet {
        /// `(instance, [(path, value)])` in instance order.
        targets: Vec<(InstanceId, Vec<(String, Value)>)>,
    },
    /// `core:session:actor_added`: the instance's base values.
    AddActor {
        /// The new instance.
        instance: InstanceId,
        /// The campaign actor it was copied from.
        actor_id: ActorId,
        /// The full actor document whose values become the base values.
        actor: Value,
    },
    /// `core:session:actor_removed`.
    RemoveActor {
        /// The removed instance.
        instance: InstanceId,
    },
}

/// Why a payload's state-change conventions are invalid. Edge: `invalid_event`.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ChangeError {
    /// A required field of a convention is missing or of the wrong type.
    #[error("payload.{field} {problem}")]
    Field {
        /// Dotted field name within the payload.
        field: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A path does not follow the grammar.
    #[error(transparent)]
    Path(#[from] PathError),
    /// An instance id is not `$session` nor 1-64 characters of `[A-Za-z0-9_-]`.
    #[error("instanceId {0:?} is invalid: 1-64 characters of [A-Za-z0-9_-], or \"$session\"")]
    Instance(String),
    /// A `$session` path outside `encounter.*` and `environment.*` (and, for
    /// `core:gm_override` only, `settings.*`).
    #[error("$session path {0:?} must be under encounter.* or environment.*")]
    SessionPath(String),
    /// A `$session` `settings.*` path in `stateChanges`: session settings (e.g.
    /// `settings.requireServerRolls`) are the GM's, written with `core:gm_override` only.
    #[error("$session path {0:?} is a GM setting: write it with core:gm_override finalState")]
    SettingsNeedGm(String),
    /// A value to write is an object with fields: write each field by its own path.
    #[error("value at {0:?} is an object with fields: write each field by its own path")]
    NotALeaf(String),
    /// More than [`MAX_CHANGES`] paths.
    #[error("at most 64 paths per event")]
    TooManyChanges,
}

impl ChangeSet {
    /// The instances this change set touches.
    pub fn instances(&self) -> Vec<&InstanceId> {
        match self {
            ChangeSet::None => vec![],
            ChangeSet::Update { instance, .. }
            | ChangeSet::AddActor { instance, .. }
            | ChangeSet::RemoveActor { instance } => vec![instance],
            ChangeSet::ForceSet { targets } => targets.iter().map(|(i, _)| i).collect(),
        }
    }
}

/// Parses the state-change conventions of an event.
pub fn parse_changes(event_type: &str, payload: &Value) -> Result<ChangeSet, ChangeError> {
    match event_type {
        ACTOR_ADDED => {
            let instance = instance_field(payload, "instanceId")?;
            if instance.is_session() {
                return Err(ChangeError::Instance(instance.0));
            }
            let actor_id = string_field(payload, "actorId")?;
            let actor = payload
                .get("actor")
                .filter(|a| a.is_object())
                .ok_or(field("actor", "must be the actor document (an object)"))?;
            Ok(ChangeSet::AddActor {
                instance,
                actor_id: ActorId::new(actor_id),
                actor: actor.clone(),
            })
        }
        ACTOR_REMOVED => {
            let instance = instance_field(payload, "instanceId")?;
            if instance.is_session() {
                return Err(ChangeError::Instance(instance.0));
            }
            Ok(ChangeSet::RemoveActor { instance })
        }
        GM_OVERRIDE => parse_force_set(payload),
        _ => parse_update(payload),
    }
}

fn parse_update(payload: &Value) -> Result<ChangeSet, ChangeError> {
    let Some(changes) = payload.get("stateChanges") else {
        return Ok(ChangeSet::None);
    };
    let changes = changes
        .as_object()
        .ok_or(field("stateChanges", "must be an object of path → change"))?;
    if changes.is_empty() {
        return Ok(ChangeSet::None);
    }
    if changes.len() > MAX_CHANGES {
        return Err(ChangeError::TooManyChanges);
    }
    let target = payload
        .get("target")
        .ok_or(field("target.instanceId", "is required with stateChanges"))?;
    let instance = instance_field(target, "instanceId").map_err(|e| match e {
        ChangeError::Field { problem, .. } => ChangeError::Field {
            field: "target.instanceId".into(),
            problem,
        },
        other => other,
    })?;
    let mut parsed = Vec::with_capacity(changes.len());
    for (path, spec) in changes {
        check_target_path(&instance, path, Writer::Member)?;
        parsed.push(PathChange {
            path: path.clone(),
            change: parse_change(path, spec)?,
        });
    }
    Ok(ChangeSet::Update {
        instance,
        changes: parsed,
    })
}

fn parse_change(path: &str, spec: &Value) -> Result<Change, ChangeError> {
    let name = |suffix: &str| format!("stateChanges.{path}{suffix}");
    let spec = spec.as_object().ok_or_else(|| ChangeError::Field {
        field: name(""),
        problem: "must be {from, to}, {op: \"inc\", by} or {to}",
    })?;
    if let Some(op) = spec.get("op") {
        if op.as_str() != Some("inc") {
            return Err(ChangeError::Field {
                field: name(".op"),
                problem: "must be \"inc\"",
            });
        }
        if spec.contains_key("from") || spec.contains_key("to") {
            return Err(ChangeError::Field {
                field: name(""),
                problem: "an inc takes only `by`",
            });
        }
        // An inc by zero would log an event that changes nothing; refusing it keeps a
        // hostile or buggy client from growing the log with no-ops (JSON `-0` included).
        let by = spec
            .get("by")
            .and_then(as_safe_integer)
            .filter(|by| *by != 0)
            .ok_or_else(|| ChangeError::Field {
                field: name(".by"),
                problem: "must be a non-zero integer within ±(2^53 - 1)",
            })?;
        return Ok(Change::Inc { by });
    }
    let to = spec.get("to").ok_or_else(|| ChangeError::Field {
        field: name(".to"),
        problem: "is required",
    })?;
    leaf_value(path, to)?;
    match spec.get("from") {
        Some(from) => {
            leaf_value(path, from)?;
            Ok(Change::Cas {
                from: from.clone(),
                to: to.clone(),
            })
        }
        None => Ok(Change::Blind { to: to.clone() }),
    }
}

fn parse_force_set(payload: &Value) -> Result<ChangeSet, ChangeError> {
    let final_state = payload
        .get("finalState")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
        .ok_or(field(
            "finalState",
            "must be a non-empty object {instanceId: {path: value}}",
        ))?;
    let mut targets = Vec::with_capacity(final_state.len());
    let mut total = 0;
    for (instance, paths) in final_state {
        let instance = parse_instance(instance)?;
        let paths =
            paths
                .as_object()
                .filter(|m| !m.is_empty())
                .ok_or_else(|| ChangeError::Field {
                    field: format!("finalState.{instance}"),
                    problem: "must be a non-empty object {path: value}",
                })?;
        let mut sets = Vec::with_capacity(paths.len());
        for (path, value) in paths {
            check_target_path(&instance, path, Writer::Gm)?;
            leaf_value(path, value)?;
            sets.push((path.clone(), value.clone()));
        }
        total += sets.len();
        targets.push((instance, sets));
    }
    if total > MAX_CHANGES {
        return Err(ChangeError::TooManyChanges);
    }
    Ok(ChangeSet::ForceSet { targets })
}

/// Reads an integer that is exact as an IEEE double (so `7.0` counts as 7).
pub fn as_safe_integer(value: &Value) -> Option<i64> {
    let n = value.as_number()?;
    let int = if let Some(i) = n.as_i64() {
        i
    } else {
        let f = n.as_f64()?;
        if f.fract() != 0.0 || f.abs() > MAX_SAFE_INTEGER as f64 {
            return None;
        }
        f as i64
    };
    // `unsigned_abs`: `i64::MIN.abs()` overflows.
    (int.unsigned_abs() <= MAX_SAFE_INTEGER.unsigned_abs()).then_some(int)
}

/// Who a convention lets write: `stateChanges` are any member's, `finalState` the GM's (the
/// type `core:gm_*` is checked at the edge before a payload is parsed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    Member,
    Gm,
}

fn check_target_path(instance: &InstanceId, path: &str, writer: Writer) -> Result<(), ChangeError> {
    validate_path(path)?;
    if instance.is_session() {
        let (head, rest) = path.split_once('.').unwrap_or((path, ""));
        if rest.is_empty() {
            return Err(ChangeError::SessionPath(path.to_owned()));
        }
        match (head, writer) {
            ("encounter" | "environment", _) | ("settings", Writer::Gm) => {}
            ("settings", Writer::Member) => {
                return Err(ChangeError::SettingsNeedGm(path.to_owned()));
            }
            _ => return Err(ChangeError::SessionPath(path.to_owned())),
        }
    }
    Ok(())
}

fn leaf_value(path: &str, value: &Value) -> Result<(), ChangeError> {
    if is_leaf(value) {
        Ok(())
    } else {
        Err(ChangeError::NotALeaf(path.to_owned()))
    }
}

/// Checks an instance id: `$session`, or 1-64 characters of `[A-Za-z0-9_-]`.
pub fn parse_instance(raw: &str) -> Result<InstanceId, ChangeError> {
    let ok = raw == InstanceId::SESSION
        || (!raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
    if ok {
        Ok(InstanceId::new(raw))
    } else {
        Err(ChangeError::Instance(raw.chars().take(80).collect()))
    }
}

fn instance_field(obj: &Value, name: &'static str) -> Result<InstanceId, ChangeError> {
    parse_instance(&string_field(obj, name)?)
}

fn string_field(obj: &Value, name: &'static str) -> Result<String, ChangeError> {
    obj.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or(field(name, "must be a non-empty string"))
}

fn field(name: &str, problem: &'static str) -> ChangeError {
    ChangeError::Field {
        field: name.to_owned(),
        problem,
    }
}

/// Builds a `stateChanges` object from path changes (client SDKs and tests).
pub fn state_changes_json(changes: &[PathChange]) -> Value {
    let mut map = Map::new();
    for c in changes {
        let spec = match &c.change {
            Change::Cas { from, to } => serde_json::json!({"from": from, "to": to}),
            Change::Inc { by } => serde_json::json!({"op": "inc", "by": by}),
            Change::Blind { to } => serde_json::json!({"to": to}),
        };
        map.insert(c.path.clone(), spec);
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn update(payload: Value) -> Result<ChangeSet, ChangeError> {
        parse_changes("plugin:dnd5e:attack", &payload)
    }

    #[test]
    fn given_from_and_to_when_parsed_then_compare_and_set() {
        let set = update(json!({"target": {"instanceId": "goblin1"},
            "stateChanges": {"attributes.hp.value": {"from": 15, "to": 7}}}))
        .unwrap();
        assert_eq!(
            set,
            ChangeSet::Update {
                instance: InstanceId::new("goblin1"),
                changes: vec![PathChange {
                    path: "attributes.hp.value".into(),
                    change: Change::Cas {
                        from: json!(15),
                        to: json!(7)
                    }
                }]
            }
        );
    }

    #[test]
    fn given_op_inc_when_parsed_then_integer_add() {
        let set = update(json!({"target": {"instanceId": "g"},
            "stateChanges": {"attributes.hp.value": {"op": "inc", "by": -5.0}}}))
        .unwrap();
        let ChangeSet::Update { changes, .. } = set else {
            panic!("expected update")
        };
        assert_eq!(changes[0].change, Change::Inc { by: -5 });
    }

    #[test]
    fn given_to_alone_when_parsed_then_blind_write() {
        let set = update(json!({"target": {"instanceId": "g"},
            "stateChanges": {"conditions": {"to": ["prone"]}}}))
        .unwrap();
        let ChangeSet::Update { changes, .. } = set else {
            panic!("expected update")
        };
        assert_eq!(
            changes[0].change,
            Change::Blind {
                to: json!(["prone"])
            }
        );
    }

    #[test]
    fn given_no_state_changes_then_nothing_to_do() {
        assert_eq!(update(json!({"text": "hi"})).unwrap(), ChangeSet::None);
        assert_eq!(update(json!("just a string")).unwrap(), ChangeSet::None);
        assert_eq!(
            update(json!({"target": {"instanceId": "g"}, "stateChanges": {}})).unwrap(),
            ChangeSet::None
        );
    }

    #[test]
    fn invalid_conventions_are_refused() {
        let cases = [
            json!({"stateChanges": {"a": {"to": 1}}}),
            json!({"target": {}, "stateChanges": {"a": {"to": 1}}}),
            json!({"target": {"instanceId": "bad id"}, "stateChanges": {"a": {"to": 1}}}),
            json!({"target": {"instanceId": "g"}, "stateChanges": []}),
            json!({"target": {"instanceId": "g"}, "stateChanges": {"a": 5}}),
            json!({"target": {"instanceId": "g"}, "stateChanges": {"a": {}}}),
            json!({"target": {"instanceId": "g"}, "stateChanges": {"a": {"from": 1}}}),
            json!({"target": {"instanceId": "g"}, "stateChanges": {"a..b": {"to": 1}}}),
            json!({"target": {"instanceId": "g"}, "stateChanges": {"a": {"op": "mul", "by": 2}}}),
            json!({"target": {"instanceId": "g"}, "stateChanges": {"a": {"op": "inc", "by": 1.5}}}),
            json!({"target": {"instanceId": "g"}, "stateChanges": {"a": {"op": "inc", "by": "1"}}}),
            json!({"target": {"instanceId": "g"}, "stateChanges": {"a": {"op": "inc", "by": 1, "to": 2}}}),
            json!({"target": {"instanceId": "g"}, "stateChanges": {"a": {"op": "inc", "by": 9007199254740993u64}}}),
            json!({"target": {"instanceId": "g"}, "stateChanges": {"a": {"op": "inc", "by": i64::MIN}}}),
            json!({"target": {"instanceId": "g"}, "stateChanges": {"a": {"op": "inc", "by": u64::MAX}}}),
            json!({"target": {"instanceId": "g"}, "stateChanges": {"a": {"op": "inc", "by": 0}}}),
            json!({"target": {"instanceId": "g"}, "stateChanges": {"a": {"op": "inc", "by": -0.0}}}),
            json!({"target": {"instanceId": "g"}, "stateChanges": {"a": {"op": "inc", "by": 1e308}}}),
            json!({"target": {"instanceId": "g"}, "stateChanges": {"a": {"to": {"x": 1}}}}),
            json!({"target": {"instanceId": "$session"}, "stateChanges": {"attributes.hp": {"to": 1}}}),
            json!({"target": {"instanceId": "$session"}, "stateChanges": {"encounter": {"to": 1}}}),
        ];
        for payload in cases {
            assert!(
                update(payload.clone()).is_err(),
                "{payload} should be refused"
            );
        }
    }

    #[test]
    fn too_many_paths_are_refused() {
        let mut changes = Map::new();
        for i in 0..65 {
            changes.insert(format!("p{i}"), json!({"to": i}));
        }
        let payload = json!({"target": {"instanceId": "g"}, "stateChanges": changes});
        assert_eq!(update(payload), Err(ChangeError::TooManyChanges));
    }

    #[test]
    fn session_fields_are_addressable() {
        let set = update(json!({"target": {"instanceId": "$session"},
            "stateChanges": {"encounter.round": {"op": "inc", "by": 1},
                             "environment.lighting": {"to": "dim"}}}))
        .unwrap();
        assert!(matches!(set, ChangeSet::Update { ref instance, .. } if instance.is_session()));
    }

    #[test]
    fn gm_override_is_a_force_set() {
        let set = parse_changes(
            GM_OVERRIDE,
            &json!({"reason": "conflict_resolution",
                    "finalState": {"goblin1": {"attributes.hp.value": 3}}}),
        )
        .unwrap();
        assert_eq!(
            set,
            ChangeSet::ForceSet {
                targets: vec![(
                    InstanceId::new("goblin1"),
                    vec![("attributes.hp.value".into(), json!(3))]
                )]
            }
        );
        assert!(parse_changes(GM_OVERRIDE, &json!({"finalState": {}})).is_err());
        assert!(parse_changes(GM_OVERRIDE, &json!({"finalState": {"g": {}}})).is_err());
        assert!(
            parse_changes(GM_OVERRIDE, &json!({"finalState": {"g": {"a": {"b": 1}}}})).is_err()
        );
    }

    #[test]
    fn session_settings_are_written_by_gm_override_only() {
        let by_gm = parse_changes(
            GM_OVERRIDE,
            &json!({"finalState": {"$session": {"settings.requireServerRolls": true}}}),
        )
        .unwrap();
        assert_eq!(
            by_gm,
            ChangeSet::ForceSet {
                targets: vec![(
                    InstanceId::session(),
                    vec![("settings.requireServerRolls".into(), json!(true))]
                )]
            }
        );
        for spec in [json!({"to": false}), json!({"from": true, "to": false})] {
            let by_member = parse_changes(
                "plugin:dnd5e:attack",
                &json!({"target": {"instanceId": "$session"},
                        "stateChanges": {"settings.requireServerRolls": spec}}),
            );
            assert_eq!(
                by_member,
                Err(ChangeError::SettingsNeedGm(
                    "settings.requireServerRolls".into()
                ))
            );
        }
        // Only the session addresses settings; an actor's own `settings.*` is an ordinary path.
        assert!(
            parse_changes(
                "plugin:x:y",
                &json!({"target": {"instanceId": "g"},
                        "stateChanges": {"settings.foo": {"to": 1}}}),
            )
            .is_ok()
        );
        // A bare head and unknown heads stay refused, for the GM too.
        for path in ["settings", "rules.x"] {
            assert_eq!(
                parse_changes(
                    GM_OVERRIDE,
                    &json!({"finalState": {"$session": {path: true}}})
                ),
                Err(ChangeError::SessionPath(path.into()))
            );
        }
    }

    #[test]
    fn actor_added_and_removed_are_parsed() {
        let added = parse_changes(
            ACTOR_ADDED,
            &json!({"instanceId": "goblin1", "actorId": "a1", "actor": {"name": "Goblin"}}),
        )
        .unwrap();
        assert!(matches!(added, ChangeSet::AddActor { .. }));
        assert!(parse_changes(ACTOR_ADDED, &json!({"instanceId": "g", "actorId": "a"})).is_err());
        assert!(
            parse_changes(
                ACTOR_ADDED,
                &json!({"instanceId": "$session", "actorId": "a", "actor": {}})
            )
            .is_err()
        );
        assert_eq!(
            parse_changes(ACTOR_REMOVED, &json!({"instanceId": "goblin1"})).unwrap(),
            ChangeSet::RemoveActor {
                instance: InstanceId::new("goblin1")
            }
        );
        assert!(parse_changes(ACTOR_REMOVED, &json!({})).is_err());
    }

    #[test]
    fn state_changes_json_round_trips() {
        let changes = vec![
            PathChange {
                path: "a".into(),
                change: Change::Cas {
                    from: json!(1),
                    to: json!(2),
                },
            },
            PathChange {
                path: "b".into(),
                change: Change::Inc { by: -3 },
            },
            PathChange {
                path: "c".into(),
                change: Change::Blind { to: json!("x") },
            },
        ];
        let payload =
            json!({"target": {"instanceId": "g"}, "stateChanges": state_changes_json(&changes)});
        let ChangeSet::Update { changes: back, .. } = update(payload).unwrap() else {
            panic!("expected update")
        };
        assert_eq!(back, changes);
    }
}
