//! Trusted dice on the client: does a 5e event follow from the server rolls it names?
//!
//! The server rolls `core:dice:roll` itself and stamps the result (PROTOCOL.md, "Trusted
//! dice"), but it does not read plugin payloads: an attack that says "natural 20" is committed
//! whatever the die showed. So every client checks, from the events it applies in order:
//!
//! - every roll an event names (`rollEventId`) is a `core:dice:roll` this client saw before
//!   the event, made by the event's sender, and not used by another event;
//! - the event's numbers follow from the rolls: the formula is the one the rules call for
//!   (`1d20` + the attack bonus, the weapon's damage, doubled dice on a critical hit,
//!   `1d20` + the dexterity modifier), the faces and totals are the roll's, and hit, critical,
//!   damage, hit points, unconscious and the initiative order are what the rules make of them.
//!
//! Numbers rolled on the sender's machine (no `rollEventId`) can only be checked for
//! consistency: such an event is [`Verdict::Local`], allowed unless the GM set `$session`
//! `settings.requireServerRolls`, which makes it [`Verdict::Unverified`].

use std::collections::BTreeMap;

use dlab_core::changes::{GM_OVERRIDE, as_safe_integer};
use dlab_core::dice::{DICE_ROLL_TYPE, Formula, RollResult};
use dlab_core::event::GameEvent;
use dlab_core::ids::{EventId, InstanceId, Sequence, UserId};
use serde_json::Value;

use super::rules::{
    self, InitiativeEntry, RollRef, ability_modifier, change_condition, conditions_from,
    critical_formula, d20_formula, resolve_attack,
};
use super::{
    ATTACK, CONDITION, CONDITIONS_PATH, DAMAGE, END_TURN, HEAL, HP_PATH, INITIATIVE, NEXT_ROUND,
    PREFIX, REQUIRE_SERVER_ROLLS,
};

/// What a client may believe about a 5e event's numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every number follows from server rolls made by the sender and used once (trivially so
    /// for an event without dice, such as a condition or a turn change).
    Verified,
    /// Consistent, but some dice were rolled on the sender's machine (no server roll): allowed
    /// while the session does not require server rolls.
    Local,
    /// The numbers do not follow from the rolls, a roll is missing, foreign or reused, or the
    /// session requires server rolls and this event has local ones. The reason is for humans.
    Unverified(String),
}

/// The reason given for local dice in a session that requires server rolls.
pub const SERVER_ROLLS_REQUIRED: &str = "server rolls required";

/// A `core:dice:roll` as committed: who rolled what, and what the server's dice showed.
#[derive(Debug, Clone)]
struct SeenRoll {
    user: UserId,
    formula: String,
    /// The server's result, or why the event carries none usable.
    result: Result<RollResult, String>,
}

/// Checks 5e events against the rolls seen before them. Feed it every committed event in
/// sequence order ([`Verifier::observe`]); it keeps the rolls, which rolls were used and every
/// verdict (memory grows with the log it observes, like the log itself).
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    require_server_rolls: bool,
    rolls: BTreeMap<EventId, SeenRoll>,
    used: BTreeMap<EventId, EventId>,
    verdicts: BTreeMap<EventId, Verdict>,
    last: Option<Sequence>,
    /// Events below this sequence may not have been observed (the first observed event, or the
    /// first after a gap, e.g. a snapshot load): an unknown roll may be older, not missing.
    blind_below: Option<Sequence>,
}

impl Verifier {
    /// A verifier starting with the session's `settings.requireServerRolls` as loaded.
    pub fn new(require_server_rolls: bool) -> Self {
        Self {
            require_server_rolls,
            ..Self::default()
        }
    }

    /// Whether the session currently requires server rolls.
    pub fn require_server_rolls(&self) -> bool {
        self.require_server_rolls
    }

    /// The verdict on a 5e event already observed.
    pub fn verdict(&self, event: &EventId) -> Option<&Verdict> {
        self.verdicts.get(event)
    }

    /// Observes the next committed event: remembers rolls and the `requireServerRolls`
    /// setting, and returns the verdict on a 5e event (`None` for any other type). An event at
    /// or below the last observed sequence is a duplicate: its earlier verdict is returned.
    pub fn observe(&mut self, event: &GameEvent) -> Option<Verdict> {
        let ours = event.event_type.starts_with(PREFIX);
        if let Some(last) = self.last {
            if event.sequence <= last {
                return if ours {
                    self.verdicts.get(&event.id).cloned()
                } else {
                    None
                };
            }
            if event.sequence != last.next() {
                self.blind_below = Some(event.sequence);
            }
        } else if event.sequence > Sequence(1) {
            self.blind_below = Some(event.sequence);
        }
        self.last = Some(event.sequence);
        match event.event_type.as_str() {
            DICE_ROLL_TYPE => {
                self.remember_roll(event);
                None
            }
            GM_OVERRIDE => {
                if let Some(setting) = event
                    .payload
                    .get("finalState")
                    .and_then(|f| f.get(InstanceId::SESSION))
                    .and_then(|s| s.get(REQUIRE_SERVER_ROLLS))
                {
                    self.require_server_rolls = setting.as_bool().unwrap_or(false);
                }
                None
            }
            _ if ours => {
                let verdict = self.check(event);
                self.verdicts.insert(event.id.clone(), verdict.clone());
                Some(verdict)
            }
            _ => None,
        }
    }

    fn remember_roll(&mut self, event: &GameEvent) {
        let formula = event
            .payload
            .get("formula")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let result = event
            .payload
            .get("result")
            .ok_or_else(|| "the roll carries no server result".to_owned())
            .and_then(|r| {
                serde_json::from_value::<RollResult>(r.clone())
                    .map_err(|e| format!("the roll's result is malformed: {e}"))
            });
        self.rolls.insert(
            event.id.clone(),
            SeenRoll {
                user: event.user_id.clone(),
                formula,
                result,
            },
        );
    }

    fn check(&mut self, event: &GameEvent) -> Verdict {
        let mut check = Check {
            verifier: self,
            event,
            claimed: Vec::new(),
            local: false,
        };
        let p = &event.payload;
        let outcome = match event.event_type.as_str() {
            ATTACK => check.attack(p),
            DAMAGE => check.damage_or_heal(p, false),
            HEAL => check.damage_or_heal(p, true),
            CONDITION => check_condition(p),
            INITIATIVE => check.initiative(p),
            END_TURN | NEXT_ROUND => Ok(()),
            other => Err(format!("{other} is not an event type of the 5e rules")),
        };
        let Check { claimed, local, .. } = check;
        // A roll is spent by the first event that names it, whatever that event's numbers:
        // the log's order decides, and a later event cannot reuse it.
        for roll in claimed {
            self.used.insert(roll, event.id.clone());
        }
        match outcome {
            Err(reason) => Verdict::Unverified(reason),
            Ok(()) if local && self.require_server_rolls => {
                Verdict::Unverified(SERVER_ROLLS_REQUIRED.to_owned())
            }
            Ok(()) if local => Verdict::Local,
            Ok(()) => Verdict::Verified,
        }
    }
}

/// The state of one event's check.
struct Check<'a> {
    verifier: &'a Verifier,
    event: &'a GameEvent,
    /// Server rolls this event spends (seen, the sender's, not used before).
    claimed: Vec<EventId>,
    /// Some dice were rolled locally.
    local: bool,
}

fn int(p: &Value, field: &str) -> Result<i64, String> {
    p.get(field)
        .and_then(as_safe_integer)
        .ok_or_else(|| format!("payload.{field} is not an integer"))
}

fn boolean(p: &Value, field: &str) -> Result<bool, String> {
    p.get(field)
        .and_then(Value::as_bool)
        .ok_or_else(|| format!("payload.{field} is not a boolean"))
}

fn text<'v>(p: &'v Value, field: &str) -> Result<&'v str, String> {
    p.get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("payload.{field} is not a string"))
}

fn roll_ref(p: &Value, field: &str) -> Result<RollRef, String> {
    let value = p
        .get(field)
        .ok_or_else(|| format!("payload.{field} is missing"))?;
    RollRef::from_json(value).map_err(|e| format!("payload.{field}: {e}"))
}

fn change<'v>(p: &'v Value, path: &str) -> Option<&'v Value> {
    p.get("stateChanges")?.get(path)
}

fn faces(result: &RollResult) -> Vec<u32> {
    result.dice.iter().map(|d| d.value).collect()
}

impl Check<'_> {
    /// The server roll `id`, if this event may use it.
    fn named(&mut self, id: &EventId, what: &str) -> Result<RollResult, String> {
        let Some(seen) = self.verifier.rolls.get(id) else {
            return Err(match self.verifier.blind_below {
                Some(from) => format!(
                    "{what} names roll {id}, which is not among the events this client saw \
                     (it may be older than sequence {from}, e.g. before a snapshot)"
                ),
                None => format!("{what} names roll {id}, which does not exist before this event"),
            });
        };
        if seen.user != self.event.user_id {
            return Err(format!(
                "{what} names roll {id}, made by {} and not by the sender {}",
                seen.user, self.event.user_id
            ));
        }
        if let Some(by) = self.verifier.used.get(id)
            && *by != self.event.id
        {
            return Err(format!(
                "{what} names roll {id}, already used by event {by}"
            ));
        }
        if self.claimed.contains(id) {
            return Err(format!(
                "{what} names roll {id} a second time in this event"
            ));
        }
        self.claimed.push(id.clone());
        seen.result
            .clone()
            .map_err(|e| format!("{what} names roll {id}: {e}"))
    }

    /// A roll the event claims for `expected`: consistent in itself and, when it names a server
    /// roll, equal to it.
    fn roll(&mut self, roll: &RollRef, expected: &str, what: &str) -> Result<RollResult, String> {
        let replayed = roll.check(expected).map_err(|e| format!("{what}: {e}"))?;
        let Some(id) = &roll.roll_event_id else {
            self.local = true;
            return Ok(replayed);
        };
        let server = self.named(id, what)?;
        let rolled_formula = &self.verifier.rolls[id].formula;
        if Formula::parse(rolled_formula).ok() != Formula::parse(expected).ok() {
            return Err(format!(
                "{what}: roll {id} was of {rolled_formula:?}, the rules call for {expected:?}"
            ));
        }
        if faces(&server) != roll.dice || server.total != roll.total {
            return Err(format!(
                "{what}: the event claims {:?} = {}, roll {id} showed {:?} = {}",
                roll.dice,
                roll.total,
                faces(&server),
                server.total
            ));
        }
        Ok(server)
    }

    fn attack(&mut self, p: &Value) -> Result<(), String> {
        let bonus = int(p, "attackBonus")?;
        let ac = int(p, "targetAc")?;
        let attack = roll_ref(p, "attackRoll")?;
        let rolled = self.roll(&attack, &d20_formula(bonus), "attackRoll")?;
        let natural = rolled.dice.first().map_or(0, |d| d.value);
        if let Some(claimed) = p.pointer("/attackRoll/natural")
            && claimed.as_u64() != Some(u64::from(natural))
        {
            return Err(format!(
                "attackRoll.natural is {claimed}, the d20 showed {natural}"
            ));
        }
        let outcome = resolve_attack(natural, rolled.total, ac);
        if boolean(p, "hit")? != outcome.hit || boolean(p, "critical")? != outcome.critical {
            return Err(format!(
                "a natural {natural} totalling {} against AC {ac} is hit: {}, critical: {}",
                rolled.total, outcome.hit, outcome.critical
            ));
        }
        if !outcome.hit {
            if p.get("stateChanges").is_some() || p.get("damageRoll").is_some() {
                return Err("a miss deals no damage".into());
            }
            return Ok(());
        }
        let weapon_damage = text(p, "weaponDamage")?;
        let formula = if outcome.critical {
            critical_formula(weapon_damage).map_err(|e| e.to_string())?
        } else {
            weapon_damage.to_owned()
        };
        let damage_roll = roll_ref(p, "damageRoll")?;
        let damage = self.roll(&damage_roll, &formula, "damageRoll")?;
        let amount = int(p, "damage")?;
        if amount != damage.total.max(0) {
            return Err(format!(
                "damage {amount} does not follow from the damage roll's total {}",
                damage.total
            ));
        }
        check_vitals(p, amount, None)
    }

    fn damage_or_heal(&mut self, p: &Value, heal: bool) -> Result<(), String> {
        let amount = int(p, "amount")?;
        if amount < 0 {
            return Err("a negative amount".into());
        }
        match p.get("rollEventId") {
            None | Some(Value::Null) => self.local = true,
            Some(Value::String(id)) => {
                let id = EventId::new(id.clone());
                let rolled = self.named(&id, "rollEventId")?;
                if amount != rolled.total.max(0) {
                    return Err(format!(
                        "amount {amount} is not the total {} of roll {id}",
                        rolled.total
                    ));
                }
            }
            Some(_) => return Err("payload.rollEventId is not a string".into()),
        }
        let max = if heal { Some(int(p, "hpMax")?) } else { None };
        check_vitals(p, amount, max)
    }

    fn initiative(&mut self, p: &Value) -> Result<(), String> {
        let salt = p
            .get("salt")
            .and_then(Value::as_u64)
            .ok_or("payload.salt is not an integer")?;
        let rolls = p
            .get("rolls")
            .and_then(Value::as_array)
            .ok_or("payload.rolls is not an array")?;
        let mut entries = Vec::with_capacity(rolls.len());
        for r in rolls {
            let who = InstanceId::new(text(r, "instanceId")?);
            let dex = int(r, "dex")?;
            let roll = roll_ref(r, "roll")?;
            let what = format!("initiative roll of {who}");
            let rolled = self.roll(&roll, &d20_formula(ability_modifier(dex)), &what)?;
            let entry = InitiativeEntry {
                tiebreak: rules::tiebreak(&who, &roll, salt),
                instance_id: who,
                name: text(r, "name")?.to_owned(),
                total: rolled.total,
                dex,
            };
            if int(r, "total")? != entry.total
                || r.get("tiebreak").and_then(Value::as_u64) != Some(entry.tiebreak)
            {
                return Err(format!("{what}: its total or tiebreak does not follow"));
            }
            entries.push(entry);
        }
        if entries
            .windows(2)
            .any(|w| rules::initiative_order(&w[0], &w[1]) != std::cmp::Ordering::Less)
        {
            return Err("the initiative order is not sorted by total, dex, tiebreak".into());
        }
        let stored: Vec<Value> = entries.iter().map(InitiativeEntry::to_json).collect();
        if change(p, "encounter.initiative").and_then(|c| c.get("to"))
            != Some(&Value::Array(stored))
        {
            return Err("the stored initiative order is not the rolled one".into());
        }
        Ok(())
    }
}

/// Hit points before/after and the `stateChanges` agree with damage (`max` = `None`) or
/// healing (`max` given) of `amount`, and unconscious is gained or lost as the rules say.
fn check_vitals(p: &Value, amount: i64, max: Option<i64>) -> Result<(), String> {
    let before = int(p, "hpBefore")?;
    let after = int(p, "hpAfter")?;
    let hp = change(p, HP_PATH).ok_or("the event does not change hit points")?;
    if hp.get("from").and_then(as_safe_integer) != Some(before)
        || hp.get("to").and_then(as_safe_integer) != Some(after)
    {
        return Err("hpBefore/hpAfter differ from the hit point change".into());
    }
    let conditions_change = change(p, CONDITIONS_PATH);
    let conditions = match conditions_change.and_then(|c| c.get("from")) {
        Some(from) => conditions_from(from).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    let expected = match max {
        Some(max) => rules::heal(before, max, amount, &conditions),
        None => rules::take_damage(before, amount, &conditions),
    };
    if expected.after != after {
        return Err(format!(
            "{amount} {} from {before} HP gives {}, not {after}",
            if max.is_some() { "healing" } else { "damage" },
            expected.after
        ));
    }
    // Without a conditions change the sender saw no change to make (e.g. already unconscious);
    // with one, it must be exactly the rules' change.
    if let Some(c) = conditions_change {
        let to = conditions_from(c.get("to").unwrap_or(&Value::Null)).map_err(|e| e.to_string())?;
        if expected.conditions.as_ref() != Some(&to) {
            return Err("the conditions change does not follow from the hit points".into());
        }
    }
    Ok(())
}

fn check_condition(p: &Value) -> Result<(), String> {
    let condition = text(p, "condition")?;
    let add = match text(p, "op")? {
        "add" => true,
        "remove" => false,
        other => return Err(format!("op {other:?} is neither add nor remove")),
    };
    let c = change(p, CONDITIONS_PATH).ok_or("the event does not change conditions")?;
    let from = conditions_from(c.get("from").unwrap_or(&Value::Null)).map_err(|e| e.to_string())?;
    let to = conditions_from(c.get("to").unwrap_or(&Value::Null)).map_err(|e| e.to_string())?;
    let expected = change_condition(&from, condition, add).map_err(|e| e.to_string())?;
    if expected != to {
        return Err(format!(
            "{} {condition} does not give {to:?}",
            text(p, "op")?
        ));
    }
    Ok(())
}
