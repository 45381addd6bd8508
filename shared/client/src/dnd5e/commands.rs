//! Commands → event drafts, and the rebase of a refused draft.
//!
//! Every draft changes one instance (`payload.target.instanceId` + `payload.stateChanges`,
//! PROTOCOL.md) with compare-and-set from the values of the view it was built on, so the server
//! refuses it if anyone changed them meanwhile; the descriptive fields around the changes
//! (rolls, hit, damage, hit points before and after) let every other client check the numbers
//! ([`super::Verifier`]).

use std::collections::BTreeMap;

use dlab_core::changes::as_safe_integer;
use dlab_core::dice::DiceRng;
use dlab_core::ids::InstanceId;
use dlab_core::state::GameSessionState;
use serde_json::{Map, Value, json};

use super::rules::{
    self, InitiativeEntry, RollRef, Vitals, ability_modifier, change_condition, conditions_from,
    critical_formula, d20_formula, damage_formula, find_weapon, resolve_attack,
};
use super::{
    ATTACK, CONDITION, CONDITIONS_PATH, DAMAGE, DEX_PATH, END_TURN, HEAL, HP_MAX_PATH, HP_PATH,
    INITIATIVE, NEXT_ROUND,
};
use crate::plugin::{ConflictInfo, EventDraft, PluginError, Rebase};

const ACTIVE: &str = "encounter.active";
const ROUND: &str = "encounter.round";
const TURN: &str = "encounter.currentTurn";
const ORDER: &str = "encounter.initiative";

fn invalid(message: impl Into<String>) -> PluginError {
    PluginError::Invalid(message.into())
}

/// The `$session` pseudo-instance.
pub(crate) fn session() -> InstanceId {
    InstanceId::new(InstanceId::SESSION)
}

/// An attack worked out before any die is rolled: what a driver asks the server to roll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttackPlan {
    /// Who attacks.
    pub attacker: InstanceId,
    /// Who is attacked.
    pub target: InstanceId,
    /// The weapon (feature) name.
    pub weapon: String,
    /// The to-hit roll, e.g. `1d20+4`.
    pub to_hit: String,
    /// The damage roll of a hit, e.g. `1d6+2`.
    pub damage: String,
    /// The damage roll of a critical hit (dice doubled), e.g. `2d6+2`.
    pub critical_damage: String,
    /// The target's armor class.
    pub target_ac: i64,
    /// The weapon's attack bonus (in `to_hit`).
    pub attack_bonus: i64,
    /// The damage types of the weapon's parts, in order (the first is the event's
    /// `damageType`).
    pub damage_types: Vec<String>,
}

fn require_actor(view: &GameSessionState, who: &InstanceId) -> Result<(), PluginError> {
    if who.is_session() || !view.active_actors.contains_key(who) {
        return Err(invalid(format!("{who} is not an actor in this session")));
    }
    Ok(())
}

fn current(view: &GameSessionState, who: &InstanceId, path: &str) -> Value {
    view.current(who, path).unwrap_or(Value::Null)
}

fn integer_at(view: &GameSessionState, who: &InstanceId, path: &str) -> Result<i64, PluginError> {
    as_safe_integer(&current(view, who, path))
        .ok_or_else(|| invalid(format!("{who} has no integer {path}")))
}

fn name_of(view: &GameSessionState, who: &InstanceId) -> String {
    current(view, who, "name")
        .as_str()
        .map_or_else(|| who.to_string(), str::to_owned)
}

/// The dexterity score (10 when the actor has none).
fn dex_of(view: &GameSessionState, who: &InstanceId) -> Result<i64, PluginError> {
    match current(view, who, DEX_PATH) {
        Value::Null => Ok(10),
        v => as_safe_integer(&v).ok_or_else(|| invalid(format!("{who} has a non-integer dex"))),
    }
}

/// Works out an attack of `attacker` on `target` with `weapon` (default: the attacker's first
/// feature with an attack bonus and damage).
pub fn plan_attack(
    view: &GameSessionState,
    attacker: &InstanceId,
    target: &InstanceId,
    weapon: Option<&str>,
) -> Result<AttackPlan, PluginError> {
    require_actor(view, attacker)?;
    require_actor(view, target)?;
    let found = find_weapon(&current(view, attacker, "features"), weapon)?;
    let damage = damage_formula(&found);
    rules::parse_formula(&damage)?;
    Ok(AttackPlan {
        attacker: attacker.clone(),
        target: target.clone(),
        to_hit: d20_formula(found.attack_bonus),
        critical_damage: critical_formula(&damage)?,
        damage,
        target_ac: integer_at(view, target, "attributes.ac")?,
        attack_bonus: found.attack_bonus,
        damage_types: found
            .damage
            .iter()
            .filter_map(|p| p.damage_type.clone())
            .collect(),
        weapon: found.name,
    })
}

/// The initiative roll of `who`: `1d20` plus its dexterity modifier.
pub fn initiative_formula(
    view: &GameSessionState,
    who: &InstanceId,
) -> Result<String, PluginError> {
    require_actor(view, who)?;
    Ok(d20_formula(ability_modifier(dex_of(view, who)?)))
}

fn str_arg<'a>(args: &'a Value, name: &str) -> Result<&'a str, PluginError> {
    args.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("argument {name:?} (a string) is required")))
}

fn opt_str_arg<'a>(args: &'a Value, name: &str) -> Result<Option<&'a str>, PluginError> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("argument {name:?} must be a string"))),
    }
}

fn roll_arg(args: &Value, name: &str) -> Result<Option<RollRef>, PluginError> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => RollRef::from_json(v)
            .map(Some)
            .map_err(|e| invalid(format!("argument {name:?}: {e}"))),
    }
}

fn amount_arg(args: &Value) -> Result<i64, PluginError> {
    args.get("amount")
        .and_then(as_safe_integer)
        .filter(|a| *a >= 0)
        .ok_or_else(|| invalid("argument \"amount\" must be an integer of at least 0"))
}

/// A supplied roll must be of the formula the rules call for and add up.
fn checked(roll: RollRef, expected: &str, what: &str) -> Result<RollRef, PluginError> {
    roll.check(expected)
        .map_err(|e| invalid(format!("{what}: {e}")))?;
    Ok(roll)
}

/// The `stateChanges` of a hit-point change: hit points (and conditions, when unconscious is
/// gained or lost) compare-and-set from the values they were computed from.
fn vitals_changes(hp_from: &Value, vitals: &Vitals, conditions_from: &Value) -> Value {
    let mut changes = Map::new();
    changes.insert(HP_PATH.into(), json!({"from": hp_from, "to": vitals.after}));
    if let Some(next) = &vitals.conditions {
        changes.insert(
            CONDITIONS_PATH.into(),
            json!({"from": conditions_from, "to": next}),
        );
    }
    Value::Object(changes)
}

/// Writes hit points before/after, the unconscious flags and `stateChanges` into `payload`.
fn put_vitals(payload: &mut Map<String, Value>, hp_from: &Value, vitals: &Vitals, cond: &Value) {
    let knocked_out = vitals
        .conditions
        .as_ref()
        .is_some_and(|c| c.iter().any(|c| c == rules::UNCONSCIOUS));
    payload.insert("hpBefore".into(), json!(vitals.before));
    payload.insert("hpAfter".into(), json!(vitals.after));
    payload.insert(
        "unconscious".into(),
        json!(vitals.conditions.is_some() && knocked_out),
    );
    payload.insert(
        "conscious".into(),
        json!(vitals.conditions.is_some() && !knocked_out),
    );
    payload.insert("stateChanges".into(), vitals_changes(hp_from, vitals, cond));
}

/// What a damage or healing does to `target` in `view`.
fn vitals_in(
    view: &GameSessionState,
    target: &InstanceId,
    heal: bool,
    amount: i64,
) -> Result<(Value, Vitals, Value), PluginError> {
    let hp_raw = current(view, target, HP_PATH);
    let hp = as_safe_integer(&hp_raw)
        .ok_or_else(|| invalid(format!("{target} has no integer {HP_PATH}")))?;
    let cond_raw = current(view, target, CONDITIONS_PATH);
    let conditions = conditions_from(&cond_raw)?;
    let vitals = if heal {
        rules::heal(
            hp,
            integer_at(view, target, HP_MAX_PATH)?,
            amount,
            &conditions,
        )
    } else {
        rules::take_damage(hp, amount, &conditions)
    };
    Ok((hp_raw, vitals, cond_raw))
}

/// Builds the draft of `command` against `view`, rolling what is not supplied with `rng`.
pub(crate) fn build(
    name: &str,
    args: &Value,
    view: &GameSessionState,
    rng: &mut dyn DiceRng,
) -> Result<EventDraft, PluginError> {
    match name {
        "attack" => attack(args, view, rng),
        "damage" | "heal" => damage_or_heal(name == "heal", args, view),
        "condition" => condition(args, view),
        "initiative" => initiative(args, view, rng),
        "end_turn" => end_turn(view),
        "next_round" => next_round(view),
        other => Err(PluginError::UnknownCommand(other.to_owned())),
    }
}

fn attack(
    args: &Value,
    view: &GameSessionState,
    rng: &mut dyn DiceRng,
) -> Result<EventDraft, PluginError> {
    let attacker = InstanceId::new(str_arg(args, "attacker")?);
    let target = InstanceId::new(str_arg(args, "target")?);
    let plan = plan_attack(view, &attacker, &target, opt_str_arg(args, "weapon")?)?;
    let supplied_attack = roll_arg(args, "attackRoll")?;
    let supplied_damage = roll_arg(args, "damageRoll")?;
    let attack_roll = match supplied_attack {
        Some(roll) => checked(roll, &plan.to_hit, "attackRoll")?,
        None if supplied_damage.is_some() => {
            return Err(invalid("a damageRoll needs the attackRoll it follows"));
        }
        None => RollRef::roll_local(&plan.to_hit, rng)?,
    };
    let natural = attack_roll.dice.first().copied().unwrap_or(0);
    let outcome = resolve_attack(natural, attack_roll.total, plan.target_ac);

    let mut payload = Map::new();
    payload.insert("target".into(), json!({"instanceId": target}));
    payload.insert(
        "attacker".into(),
        json!({"instanceId": attacker, "name": name_of(view, &attacker)}),
    );
    payload.insert("targetName".into(), json!(name_of(view, &target)));
    payload.insert("weapon".into(), json!(plan.weapon));
    payload.insert("attackBonus".into(), json!(plan.attack_bonus));
    payload.insert("weaponDamage".into(), json!(plan.damage));
    payload.insert("targetAc".into(), json!(plan.target_ac));
    let mut attack_json = attack_roll.to_json();
    attack_json["natural"] = json!(natural);
    payload.insert("attackRoll".into(), attack_json);
    payload.insert("hit".into(), json!(outcome.hit));
    payload.insert("critical".into(), json!(outcome.critical));
    if outcome.hit {
        let formula = if outcome.critical {
            &plan.critical_damage
        } else {
            &plan.damage
        };
        let damage_roll = match supplied_damage {
            Some(roll) => checked(roll, formula, "damageRoll")?,
            None => RollRef::roll_local(formula, rng)?,
        };
        let amount = damage_roll.total.max(0);
        payload.insert("damageRoll".into(), damage_roll.to_json());
        payload.insert("damage".into(), json!(amount));
        if let Some(t) = plan.damage_types.first() {
            payload.insert("damageType".into(), json!(t));
        }
        let (hp_raw, vitals, cond_raw) = vitals_in(view, &target, false, amount)?;
        put_vitals(&mut payload, &hp_raw, &vitals, &cond_raw);
    }
    Ok(EventDraft::new(ATTACK, Value::Object(payload)))
}

fn damage_or_heal(
    heal: bool,
    args: &Value,
    view: &GameSessionState,
) -> Result<EventDraft, PluginError> {
    let target = InstanceId::new(str_arg(args, "target")?);
    require_actor(view, &target)?;
    let amount = amount_arg(args)?;
    let mut payload = Map::new();
    payload.insert("target".into(), json!({"instanceId": target}));
    payload.insert("targetName".into(), json!(name_of(view, &target)));
    payload.insert("amount".into(), json!(amount));
    if !heal && let Some(t) = opt_str_arg(args, "damageType")? {
        payload.insert("damageType".into(), json!(t));
    }
    if let Some(id) = opt_str_arg(args, "rollEventId")? {
        payload.insert("rollEventId".into(), json!(id));
    }
    let (hp_raw, vitals, cond_raw) = vitals_in(view, &target, heal, amount)?;
    if heal {
        payload.insert(
            "hpMax".into(),
            json!(integer_at(view, &target, HP_MAX_PATH)?),
        );
    }
    put_vitals(&mut payload, &hp_raw, &vitals, &cond_raw);
    Ok(EventDraft::new(
        if heal { HEAL } else { DAMAGE },
        Value::Object(payload),
    ))
}

fn condition(args: &Value, view: &GameSessionState) -> Result<EventDraft, PluginError> {
    let target = InstanceId::new(str_arg(args, "target")?);
    require_actor(view, &target)?;
    let add = match str_arg(args, "op")? {
        "add" => true,
        "remove" => false,
        other => {
            return Err(invalid(format!(
                "op must be \"add\" or \"remove\", not {other:?}"
            )));
        }
    };
    let wanted = str_arg(args, "condition")?;
    let cond_raw = current(view, &target, CONDITIONS_PATH);
    let next = change_condition(&conditions_from(&cond_raw)?, wanted, add)?;
    let condition = rules::normalize_condition(wanted).unwrap_or(wanted);
    Ok(EventDraft::new(
        CONDITION,
        json!({
            "target": {"instanceId": target},
            "targetName": name_of(view, &target),
            "condition": condition,
            "op": if add { "add" } else { "remove" },
            "stateChanges": {CONDITIONS_PATH: {"from": cond_raw, "to": next}},
        }),
    ))
}

fn initiative(
    args: &Value,
    view: &GameSessionState,
    rng: &mut dyn DiceRng,
) -> Result<EventDraft, PluginError> {
    let mut supplied: BTreeMap<InstanceId, RollRef> = BTreeMap::new();
    match args.get("rolls") {
        None | Some(Value::Null) => {}
        Some(Value::Object(rolls)) => {
            for (who, roll) in rolls {
                let who = InstanceId::new(who.clone());
                require_actor(view, &who)?;
                let roll = RollRef::from_json(roll)
                    .map_err(|e| invalid(format!("initiative roll of {who}: {e}")))?;
                supplied.insert(who, roll);
            }
        }
        Some(_) => return Err(invalid("rolls must be an object {instanceId: roll}")),
    }
    if view.active_actors.is_empty() {
        return Err(invalid(
            "there is no actor in the session to roll initiative for",
        ));
    }
    let salt = view.last_event_sequence.get();
    let mut rolled = Vec::with_capacity(view.active_actors.len());
    // `active_actors` is ordered by instance id, so local rolls are drawn in an order that does
    // not depend on when the actors joined.
    for who in view.active_actors.keys() {
        let dex = dex_of(view, who)?;
        let formula = d20_formula(ability_modifier(dex));
        let roll = match supplied.remove(who) {
            Some(roll) => checked(roll, &formula, &format!("initiative roll of {who}"))?,
            None => RollRef::roll_local(&formula, rng)?,
        };
        let entry = InitiativeEntry {
            instance_id: who.clone(),
            name: name_of(view, who),
            total: roll.total,
            dex,
            tiebreak: rules::tiebreak(who, &roll, salt),
        };
        rolled.push((entry, roll));
    }
    rolled.sort_by(|(a, _), (b, _)| rules::initiative_order(a, b));
    let order: Vec<Value> = rolled.iter().map(|(e, _)| e.to_json()).collect();
    let rolls: Vec<Value> = rolled
        .iter()
        .map(|(e, r)| {
            json!({"instanceId": e.instance_id, "name": e.name, "dex": e.dex,
                   "roll": r.to_json(), "total": e.total, "tiebreak": e.tiebreak})
        })
        .collect();
    let s = session();
    Ok(EventDraft::new(
        INITIATIVE,
        json!({
            "target": {"instanceId": s},
            "rolls": rolls,
            "salt": salt,
            "stateChanges": {
                ORDER: {"from": current(view, &s, ORDER), "to": order},
                ACTIVE: {"from": current(view, &s, ACTIVE), "to": true},
                ROUND: {"from": current(view, &s, ROUND), "to": 1},
                TURN: {"from": current(view, &s, TURN), "to": 0},
            },
        }),
    ))
}

/// The active encounter's order, round and raw current turn; refused when none is active.
fn encounter(view: &GameSessionState) -> Result<(Vec<Value>, Value, Value), PluginError> {
    let s = session();
    if current(view, &s, ACTIVE) != Value::Bool(true) {
        return Err(invalid("no encounter is active (roll initiative first)"));
    }
    let order = match current(view, &s, ORDER) {
        Value::Array(order) if !order.is_empty() => order,
        _ => return Err(invalid("the encounter has no initiative order")),
    };
    Ok((order, current(view, &s, ROUND), current(view, &s, TURN)))
}

fn instance_at(order: &[Value], turn: i64) -> Value {
    usize::try_from(turn)
        .ok()
        .and_then(|i| order.get(i))
        .and_then(|e| e.get("instanceId"))
        .cloned()
        .unwrap_or(Value::Null)
}

fn end_turn(view: &GameSessionState) -> Result<EventDraft, PluginError> {
    let (order, round, turn_raw) = encounter(view)?;
    let turn = as_safe_integer(&turn_raw).unwrap_or(0);
    let step = rules::next_turn(turn, order.len());
    let mut changes = Map::new();
    changes.insert(TURN.into(), json!({"from": turn_raw, "to": step.to}));
    if step.new_round {
        changes.insert(ROUND.into(), json!({"op": "inc", "by": 1}));
    }
    Ok(EventDraft::new(
        END_TURN,
        json!({
            "target": {"instanceId": session()},
            "round": round,
            "fromTurn": step.from,
            "toTurn": step.to,
            "newRound": step.new_round,
            "ended": instance_at(&order, step.from),
            "next": instance_at(&order, step.to),
            "stateChanges": changes,
        }),
    ))
}

fn next_round(view: &GameSessionState) -> Result<EventDraft, PluginError> {
    let (order, round, turn_raw) = encounter(view)?;
    Ok(EventDraft::new(
        NEXT_ROUND,
        json!({
            "target": {"instanceId": session()},
            "round": round,
            "next": instance_at(&order, 0),
            "stateChanges": {
                ROUND: {"op": "inc", "by": 1},
                TURN: {"from": turn_raw, "to": 0},
            },
        }),
    ))
}

// ---- rebase ----------------------------------------------------------------------------------

/// What to do about a refused draft of this plugin (see [`super::Dnd5e`] for the rules).
pub(crate) fn rebase(
    rejected: &EventDraft,
    conflict: &ConflictInfo,
    confirmed: &GameSessionState,
) -> Rebase {
    match rejected.event_type.as_str() {
        ATTACK | DAMAGE | HEAL => rebase_vitals(rejected, conflict, confirmed),
        CONDITION => rebase_condition(rejected, conflict, confirmed),
        // Turn order and initiative were decided on a picture that is gone: redoing them
        // automatically would skip a turn or restart an encounter twice.
        _ => Rebase::Report,
    }
}

fn target_of(draft: &EventDraft) -> Option<InstanceId> {
    draft
        .payload
        .get("target")?
        .get("instanceId")?
        .as_str()
        .map(InstanceId::new)
}

/// The conditions now: the server's `current` when the event touched them, else our confirmed
/// state (if that lags behind the server, the rebased event conflicts once more, this time with
/// the conditions in `current`).
fn conditions_now(
    conflict: &ConflictInfo,
    confirmed: &GameSessionState,
    target: &InstanceId,
) -> Value {
    conflict
        .current
        .get(CONDITIONS_PATH)
        .cloned()
        .unwrap_or_else(|| current(confirmed, target, CONDITIONS_PATH))
}

/// Damage and healing are the same amount whatever the hit points were: recompute hit points
/// and unconscious from the current values and resubmit.
fn rebase_vitals(
    rejected: &EventDraft,
    conflict: &ConflictInfo,
    confirmed: &GameSessionState,
) -> Rebase {
    let heal = rejected.event_type == HEAL;
    let Some(target) = target_of(rejected) else {
        return Rebase::Report;
    };
    let amount_field = if rejected.event_type == ATTACK {
        "damage"
    } else {
        "amount"
    };
    let Some(amount) = rejected.payload.get(amount_field).and_then(as_safe_integer) else {
        return Rebase::Report;
    };
    let Some(hp_raw) = conflict.current.get(HP_PATH).cloned() else {
        return Rebase::Report;
    };
    let Some(hp) = as_safe_integer(&hp_raw) else {
        // The creature left the session or lost its hit points: nothing to redo.
        return Rebase::Report;
    };
    let cond_raw = conditions_now(conflict, confirmed, &target);
    let Ok(conditions) = conditions_from(&cond_raw) else {
        return Rebase::Report;
    };
    let vitals = if heal {
        let max = rejected
            .payload
            .get("hpMax")
            .and_then(as_safe_integer)
            .or_else(|| as_safe_integer(&current(confirmed, &target, HP_MAX_PATH)));
        let Some(max) = max else {
            return Rebase::Report;
        };
        rules::heal(hp, max, amount, &conditions)
    } else {
        rules::take_damage(hp, amount, &conditions)
    };
    let mut payload = rejected.payload.as_object().cloned().unwrap_or_default();
    put_vitals(&mut payload, &hp_raw, &vitals, &cond_raw);
    Rebase::Resubmit(EventDraft::new(
        rejected.event_type.clone(),
        Value::Object(payload),
    ))
}

/// A condition change loses a race only to another change of the same creature's conditions.
/// If the conditions now already say what the player wanted, there is nothing left to do.
/// Otherwise the plugin does not merge: conditions are rulings that interact (grappled then
/// restrained, paralysis lifted while someone re-applies it), and the player acted on a picture
/// that was wrong, so the GM decides.
fn rebase_condition(
    rejected: &EventDraft,
    conflict: &ConflictInfo,
    confirmed: &GameSessionState,
) -> Rebase {
    let Some(target) = target_of(rejected) else {
        return Rebase::Report;
    };
    let condition = rejected
        .payload
        .get("condition")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let add = rejected.payload.get("op").and_then(Value::as_str) == Some("add");
    let based_on = rejected
        .payload
        .pointer(&format!("/stateChanges/{CONDITIONS_PATH}/from"))
        .cloned()
        .unwrap_or(Value::Null);
    let now_raw = conditions_now(conflict, confirmed, &target);
    let Ok(now) = conditions_from(&now_raw) else {
        return Rebase::Report;
    };
    if now.iter().any(|c| c == condition) == add {
        return Rebase::Report;
    }
    let verb = if add { "add" } else { "remove" };
    Rebase::Escalate(format!(
        "the conditions of {target} changed while a player tried to {verb} {condition}: \
         they were {based_on}, now {now_raw}"
    ))
}
