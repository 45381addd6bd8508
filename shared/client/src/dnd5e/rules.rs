//! The D&D 5e rules as pure functions: no state, no I/O, randomness injected.
//!
//! Everything here is shared by the command builder (which writes the numbers into an event) and
//! the [`super::Verifier`] (which recomputes them from the rolls other clients name), so the two
//! can never disagree about a rule. Dice formulas are parsed and rolled by `dlab_core::dice`,
//! the grammar the server rolls with; this module only writes formulas and replays rolled faces.

use dlab_core::changes::as_safe_integer;
use dlab_core::dice::{DiceRng, Formula, Keep, RollResult, Term};
use dlab_core::ids::{EventId, InstanceId};
use serde_json::{Map, Value, json};

use crate::plugin::PluginError;

/// The conditions of the 5e rules, in the lowercase form stored at `attributes.conditions`.
pub const CONDITIONS: [&str; 15] = [
    "blinded",
    "charmed",
    "deafened",
    "exhaustion",
    "frightened",
    "grappled",
    "incapacitated",
    "invisible",
    "paralyzed",
    "petrified",
    "poisoned",
    "prone",
    "restrained",
    "stunned",
    "unconscious",
];

/// The condition a creature gains at 0 hit points and loses when healed from 0.
pub const UNCONSCIOUS: &str = "unconscious";

/// Tiebreak values stay below 2^53 so every JSON reader keeps them exact.
const TIEBREAK_MASK: u64 = (1 << 53) - 1;

fn invalid(message: impl Into<String>) -> PluginError {
    PluginError::Invalid(message.into())
}

/// The modifier of an ability score: `floor((score - 10) / 2)` (8 → -1, 9 → -1, 10 → 0).
pub fn ability_modifier(score: i64) -> i64 {
    (score - 10).div_euclid(2)
}

/// The stored (lowercase) name of a 5e condition, whatever its case; `None` if there is no such
/// condition.
pub fn normalize_condition(name: &str) -> Option<&'static str> {
    let lower = name.trim().to_ascii_lowercase();
    CONDITIONS.iter().copied().find(|c| *c == lower)
}

/// Reads `attributes.conditions`: missing (`null`) is no condition.
pub fn conditions_from(value: &Value) -> Result<Vec<String>, PluginError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|c| {
                c.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid("attributes.conditions must hold strings"))
            })
            .collect(),
        _ => Err(invalid("attributes.conditions must be an array of strings")),
    }
}

/// The conditions after adding (`add`) or removing `condition`. Adding one the creature has, or
/// removing one it lacks, is refused: an event that changes nothing would still be logged and
/// broadcast, and usually means the player acted on a stale screen.
pub fn change_condition(
    current: &[String],
    condition: &str,
    add: bool,
) -> Result<Vec<String>, PluginError> {
    let condition = normalize_condition(condition).ok_or_else(|| {
        invalid(format!(
            "{condition:?} is not a 5e condition (one of {})",
            CONDITIONS.join(", ")
        ))
    })?;
    let has = current.iter().any(|c| c == condition);
    match (add, has) {
        (true, true) => Err(invalid(format!("the creature is already {condition}"))),
        (false, false) => Err(invalid(format!("the creature is not {condition}"))),
        (true, false) => {
            let mut next = current.to_vec();
            next.push(condition.to_owned());
            Ok(next)
        }
        (false, true) => Ok(current
            .iter()
            .filter(|c| *c != condition)
            .cloned()
            .collect()),
    }
}

/// One damage part of a weapon: `{dice: "1d6+2", type: "slashing"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagePart {
    /// The dice formula.
    pub dice: String,
    /// The damage type, when the feature names one.
    pub damage_type: Option<String>,
}

/// A feature usable as an attack: it has an `attackBonus` and at least one `damage` part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weapon {
    /// The feature's name.
    pub name: String,
    /// Added to the d20.
    pub attack_bonus: i64,
    /// Its damage parts, rolled together.
    pub damage: Vec<DamagePart>,
}

fn weapon_of(feature: &Value) -> Option<Weapon> {
    let attack_bonus = as_safe_integer(feature.get("attackBonus")?)?;
    let damage: Vec<DamagePart> = feature
        .get("damage")?
        .as_array()?
        .iter()
        .filter_map(|part| {
            Some(DamagePart {
                dice: part.get("dice")?.as_str()?.to_owned(),
                damage_type: part.get("type").and_then(Value::as_str).map(str::to_owned),
            })
        })
        .collect();
    if damage.is_empty() {
        return None;
    }
    Some(Weapon {
        name: feature
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("attack")
            .to_owned(),
        attack_bonus,
        damage,
    })
}

/// The weapon among `features` (the actor's `features` array): the one named `name`
/// (case-insensitive), or the first feature with an attack bonus and damage.
pub fn find_weapon(features: &Value, name: Option<&str>) -> Result<Weapon, PluginError> {
    let list = features.as_array().map(Vec::as_slice).unwrap_or_default();
    match name {
        Some(name) => {
            let feature = list
                .iter()
                .find(|f| {
                    f.get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
                })
                .ok_or_else(|| invalid(format!("the attacker has no feature named {name:?}")))?;
            weapon_of(feature).ok_or_else(|| {
                invalid(format!(
                    "{name:?} is not an attack (it needs attackBonus and damage)"
                ))
            })
        }
        None => list
            .iter()
            .find_map(weapon_of)
            .ok_or_else(|| invalid("the attacker has no feature with attackBonus and damage")),
    }
}

/// `1d20` plus a modifier, as written in every to-hit and initiative formula (`1d20+4`,
/// `1d20-1`, `1d20`).
pub fn d20_formula(modifier: i64) -> String {
    match modifier {
        0 => "1d20".to_owned(),
        m if m > 0 => format!("1d20+{m}"),
        m => format!("1d20-{}", m.unsigned_abs()),
    }
}

/// The damage formula of a weapon: its parts added (`1d8+2` and `1d6` → `1d8+2+1d6`).
pub fn damage_formula(weapon: &Weapon) -> String {
    weapon
        .damage
        .iter()
        .map(|p| p.dice.trim())
        .collect::<Vec<_>>()
        .join("+")
}

/// Parses a formula, as a rules error.
pub fn parse_formula(formula: &str) -> Result<Formula, PluginError> {
    Formula::parse(formula).map_err(|e| invalid(format!("dice formula {formula:?}: {e}")))
}

/// The critical-hit formula: every dice term rolls twice the dice (and keeps twice as many),
/// constants stay (`1d6+2` → `2d6+2`).
pub fn critical_formula(formula: &str) -> Result<String, PluginError> {
    let parsed = parse_formula(formula)?;
    let doubled: Vec<Term> = parsed
        .terms()
        .iter()
        .map(|t| match *t {
            Term::Dice {
                count,
                sides,
                keep,
                negative,
            } => Term::Dice {
                count: count * 2,
                sides,
                keep: match keep {
                    Keep::All => Keep::All,
                    Keep::Highest(n) => Keep::Highest(n * 2),
                    Keep::Lowest(n) => Keep::Lowest(n * 2),
                },
                negative,
            },
            constant => constant,
        })
        .collect();
    let text = render(&doubled);
    // Checks the doubled formula against the server's bounds (e.g. at most 100 dice).
    parse_formula(&text)?;
    Ok(text)
}

/// Writes terms back in the grammar of `dlab_core::dice`.
fn render(terms: &[Term]) -> String {
    let mut out = String::new();
    for (i, term) in terms.iter().enumerate() {
        let (negative, body) = match *term {
            Term::Constant(c) => (c < 0, c.unsigned_abs().to_string()),
            Term::Dice {
                count,
                sides,
                keep,
                negative,
            } => {
                let keep = match keep {
                    Keep::All => String::new(),
                    Keep::Highest(n) => format!("kh{n}"),
                    Keep::Lowest(n) => format!("kl{n}"),
                };
                (negative, format!("{count}d{sides}{keep}"))
            }
        };
        if negative {
            out.push('-');
        } else if i > 0 {
            out.push('+');
        }
        out.push_str(&body);
    }
    out
}

/// Adapts a `dyn DiceRng` to the `impl DiceRng` that `Formula::roll` takes.
struct DynRng<'a>(&'a mut dyn DiceRng);

impl DiceRng for DynRng<'_> {
    fn die(&mut self, sides: u32) -> u32 {
        self.0.die(sides)
    }
}

/// Replays given faces through a formula, recording the first face that cannot be.
struct Replay<'a> {
    faces: &'a [u32],
    at: usize,
    bad: Option<String>,
}

impl DiceRng for Replay<'_> {
    fn die(&mut self, sides: u32) -> u32 {
        let face = self.faces.get(self.at).copied();
        self.at += 1;
        match face {
            Some(v) if (1..=sides).contains(&v) => v,
            Some(v) => {
                self.bad
                    .get_or_insert_with(|| format!("a d{sides} cannot show {v}"));
                1
            }
            None => 1,
        }
    }
}

/// The result `formula` gives with these faces (one per die, in formula order): what a roll
/// that showed them totals. Refuses too few or too many faces, or a face a die cannot show.
pub fn replay(formula: &Formula, faces: &[u32]) -> Result<RollResult, String> {
    let count = formula.dice_count() as usize;
    if faces.len() != count {
        return Err(format!(
            "the formula rolls {count} dice, {} faces given",
            faces.len()
        ));
    }
    let mut rng = Replay {
        faces,
        at: 0,
        bad: None,
    };
    let result = formula.roll(&mut rng);
    match rng.bad {
        Some(bad) => Err(bad),
        None => Ok(result),
    }
}

/// A roll as an event names it: `{rollEventId?, formula, dice: [faces], total}`. With a
/// `rollEventId` it claims to be the server's `core:dice:roll` of that id; without, it was rolled
/// on the sender's machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollRef {
    /// The server's roll event, if the roll came from the server.
    pub roll_event_id: Option<EventId>,
    /// The formula rolled.
    pub formula: String,
    /// Every die's face, in formula order (dropped dice included).
    pub dice: Vec<u32>,
    /// The total.
    pub total: i64,
}

impl RollRef {
    /// Reads a roll reference from an event payload or command arguments.
    pub fn from_json(value: &Value) -> Result<RollRef, String> {
        let obj = value
            .as_object()
            .ok_or("a roll must be {rollEventId?, formula, dice, total}")?;
        let roll_event_id = match obj.get("rollEventId") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => Some(EventId::new(id.clone())),
            Some(_) => return Err("rollEventId must be a string".into()),
        };
        let formula = obj
            .get("formula")
            .and_then(Value::as_str)
            .ok_or("a roll needs its formula")?
            .to_owned();
        let dice = obj
            .get("dice")
            .and_then(Value::as_array)
            .ok_or("a roll needs its dice (the faces)")?
            .iter()
            .map(|d| {
                d.as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or("dice faces are positive integers")
            })
            .collect::<Result<Vec<u32>, _>>()?;
        let total = obj
            .get("total")
            .and_then(as_safe_integer)
            .ok_or("a roll needs its integer total")?;
        Ok(RollRef {
            roll_event_id,
            formula,
            dice,
            total,
        })
    }

    /// The JSON form, as written into events.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        if let Some(id) = &self.roll_event_id {
            obj.insert("rollEventId".into(), json!(id));
        }
        obj.insert("formula".into(), json!(self.formula));
        obj.insert("dice".into(), json!(self.dice));
        obj.insert("total".into(), json!(self.total));
        Value::Object(obj)
    }

    /// A roll of `formula` on this machine (no `rollEventId`).
    pub fn roll_local(formula: &str, rng: &mut dyn DiceRng) -> Result<RollRef, PluginError> {
        let parsed = parse_formula(formula)?;
        let result = parsed.roll(&mut DynRng(rng));
        Ok(RollRef {
            roll_event_id: None,
            formula: formula.to_owned(),
            dice: result.dice.iter().map(|d| d.value).collect(),
            total: result.total,
        })
    }

    /// Checks that this roll is of `expected` (the same formula, spacing aside) and that its
    /// faces add up to its total; returns the replayed result.
    pub fn check(&self, expected: &str) -> Result<RollResult, String> {
        let want = Formula::parse(expected).map_err(|e| format!("formula {expected:?}: {e}"))?;
        let got = Formula::parse(&self.formula)
            .map_err(|e| format!("formula {:?}: {e}", self.formula))?;
        if got != want {
            return Err(format!(
                "the roll is of {:?}, the rules call for {expected:?}",
                self.formula
            ));
        }
        let result = replay(&want, &self.dice)?;
        if result.total != self.total {
            return Err(format!(
                "the faces {:?} of {expected} total {}, not {}",
                self.dice, result.total, self.total
            ));
        }
        Ok(result)
    }
}

/// What an attack roll did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttackOutcome {
    /// The d20's face.
    pub natural: u32,
    /// Whether it hit.
    pub hit: bool,
    /// Whether it is a critical hit (natural 20).
    pub critical: bool,
}

/// A natural 20 always hits and is critical; a natural 1 always misses; otherwise the total
/// must reach the target's armor class.
pub fn resolve_attack(natural: u32, total: i64, target_ac: i64) -> AttackOutcome {
    let critical = natural == 20;
    let hit = critical || (natural != 1 && total >= target_ac);
    AttackOutcome {
        natural,
        hit,
        critical,
    }
}

/// Hit points and conditions after damage or healing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vitals {
    /// Hit points before.
    pub before: i64,
    /// Hit points after.
    pub after: i64,
    /// The new conditions, when they change (unconscious gained or lost).
    pub conditions: Option<Vec<String>>,
}

/// Damage: hit points never go below 0, and reaching 0 makes the creature unconscious.
/// A negative amount counts as 0.
pub fn take_damage(hp: i64, amount: i64, conditions: &[String]) -> Vitals {
    let after = hp.saturating_sub(amount.max(0)).max(0);
    let conditions = (after == 0 && !conditions.iter().any(|c| c == UNCONSCIOUS)).then(|| {
        let mut next = conditions.to_vec();
        next.push(UNCONSCIOUS.to_owned());
        next
    });
    Vitals {
        before: hp,
        after,
        conditions,
    }
}

/// Healing: hit points rise by `amount` up to `max` (never lowered, should they be above it);
/// a creature healed from 0 is no longer unconscious. A negative amount counts as 0.
pub fn heal(hp: i64, max: i64, amount: i64, conditions: &[String]) -> Vitals {
    let base = hp.max(0);
    let after = if base >= max {
        base
    } else {
        base.saturating_add(amount.max(0)).min(max)
    };
    let conditions =
        (hp <= 0 && after > 0 && conditions.iter().any(|c| c == UNCONSCIOUS)).then(|| {
            conditions
                .iter()
                .filter(|c| *c != UNCONSCIOUS)
                .cloned()
                .collect()
        });
    Vitals {
        before: hp,
        after,
        conditions,
    }
}

/// One combatant in the initiative order, as stored in `$session` `encounter.initiative`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitiativeEntry {
    /// The actor instance.
    pub instance_id: InstanceId,
    /// Its name, for display.
    pub name: String,
    /// d20 + dexterity modifier.
    pub total: i64,
    /// The dexterity score (the first tiebreak).
    pub dex: i64,
    /// The last tiebreak, higher first (see [`tiebreak`]).
    pub tiebreak: u64,
}

impl InitiativeEntry {
    /// `{instanceId, name, total, dex, tiebreak}`.
    pub fn to_json(&self) -> Value {
        json!({
            "instanceId": self.instance_id,
            "name": self.name,
            "total": self.total,
            "dex": self.dex,
            "tiebreak": self.tiebreak,
        })
    }

    /// Reads an entry written by [`InitiativeEntry::to_json`].
    pub fn from_json(value: &Value) -> Option<InitiativeEntry> {
        Some(InitiativeEntry {
            instance_id: InstanceId::new(value.get("instanceId")?.as_str()?),
            name: value.get("name")?.as_str()?.to_owned(),
            total: as_safe_integer(value.get("total")?)?,
            dex: as_safe_integer(value.get("dex")?)?,
            tiebreak: value.get("tiebreak")?.as_u64()?,
        })
    }
}

/// The last tiebreak of initiative: FNV-1a of the instance id, the roll (its server id, or
/// its faces when rolled locally) and `salt` (the sequence the order was built on, so the same
/// two creatures do not tie the same way every encounter). It depends on nothing but these
/// values, so every client that builds or checks the order gets the same one; it is stored in
/// the state so nobody has to recompute it.
pub fn tiebreak(instance: &InstanceId, roll: &RollRef, salt: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    };
    feed(instance.as_str().as_bytes());
    match &roll.roll_event_id {
        Some(id) => feed(id.as_str().as_bytes()),
        None => {
            for face in &roll.dice {
                feed(&face.to_be_bytes());
            }
        }
    }
    feed(&salt.to_be_bytes());
    hash & TIEBREAK_MASK
}

/// The initiative order: total descending, then dexterity score descending, then tiebreak
/// descending, then instance id (only if two tiebreaks collide), so the order never depends on
/// the order the creatures were listed in.
pub fn initiative_order(a: &InitiativeEntry, b: &InitiativeEntry) -> std::cmp::Ordering {
    b.total
        .cmp(&a.total)
        .then(b.dex.cmp(&a.dex))
        .then(b.tiebreak.cmp(&a.tiebreak))
        .then(a.instance_id.cmp(&b.instance_id))
}

/// Sorts combatants by [`initiative_order`].
pub fn order_initiative(entries: &mut [InitiativeEntry]) {
    entries.sort_by(initiative_order);
}

/// A turn change: from `from` to `to`, starting a new round when the order wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnStep {
    /// The turn that ends.
    pub from: i64,
    /// The turn that starts.
    pub to: i64,
    /// Whether the round counter goes up.
    pub new_round: bool,
}

/// The turn after `current` among `count` combatants (`count >= 1`): past the last (or out of
/// range) wraps to 0 and starts a new round.
pub fn next_turn(current: i64, count: usize) -> TurnStep {
    let last = i64::try_from(count).unwrap_or(i64::MAX) - 1;
    if current >= 0 && current < last {
        TurnStep {
            from: current,
            to: current + 1,
            new_round: false,
        }
    } else {
        TurnStep {
            from: current,
            to: 0,
            new_round: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Faces(Vec<u32>, usize);

    impl DiceRng for Faces {
        fn die(&mut self, _: u32) -> u32 {
            let v = self.0[self.1];
            self.1 += 1;
            v
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn ability_modifiers_round_down() {
        let table = [
            (1, -5),
            (8, -1),
            (9, -1),
            (10, 0),
            (11, 0),
            (14, 2),
            (15, 2),
            (20, 5),
        ];
        for (score, modifier) in table {
            assert_eq!(ability_modifier(score), modifier, "score {score}");
        }
    }

    #[test]
    fn conditions_are_matched_case_insensitively_and_stored_lowercase() {
        assert_eq!(normalize_condition("Prone"), Some("prone"));
        assert_eq!(normalize_condition("sleepy"), None);
        let next = change_condition(&strings(&["poisoned"]), "PRONE", true).unwrap();
        assert_eq!(next, strings(&["poisoned", "prone"]));
        assert!(
            change_condition(&next, "prone", true).is_err(),
            "idempotent add"
        );
        assert!(change_condition(&next, "stunned", false).is_err());
        assert_eq!(
            change_condition(&next, "poisoned", false).unwrap(),
            strings(&["prone"])
        );
        assert!(change_condition(&[], "sleepy", true).is_err());
    }

    #[test]
    fn critical_formulas_double_the_dice_and_keep_the_constants() {
        assert_eq!(critical_formula("1d6+2").unwrap(), "2d6+2");
        assert_eq!(critical_formula("1d8+2+1d6").unwrap(), "2d8+2+2d6");
        assert_eq!(critical_formula("2d4 - 1").unwrap(), "4d4-1");
        assert_eq!(critical_formula("1d20kh1-1d4").unwrap(), "2d20kh2-2d4");
        assert!(
            critical_formula("60d6").is_err(),
            "120 dice is over the bound"
        );
    }

    #[test]
    fn d20_formulas_parse_back_and_match_by_meaning() {
        assert_eq!(d20_formula(4), "1d20+4");
        assert_eq!(d20_formula(-1), "1d20-1");
        assert_eq!(d20_formula(0), "1d20");
        let r = RollRef {
            roll_event_id: None,
            formula: "1d20 + 4".into(),
            dice: vec![17],
            total: 21,
        };
        assert_eq!(r.check("1d20+4").unwrap().total, 21);
        assert!(r.check("1d20+5").is_err());
        let forged = RollRef { total: 22, ..r };
        assert!(forged.check("1d20+4").is_err());
    }

    #[test]
    fn replay_refuses_faces_a_die_cannot_show_and_wrong_counts() {
        let f = parse_formula("2d6+1").unwrap();
        assert_eq!(replay(&f, &[3, 4]).unwrap().total, 8);
        assert!(replay(&f, &[3]).is_err());
        assert!(replay(&f, &[3, 4, 5]).is_err());
        assert!(replay(&f, &[7, 1]).is_err());
    }

    #[test]
    fn local_rolls_record_every_face() {
        let r = RollRef::roll_local("2d6+2", &mut Faces(vec![5, 6], 0)).unwrap();
        assert_eq!((r.dice, r.total, r.roll_event_id), (vec![5, 6], 13, None));
    }

    #[test]
    fn attack_resolution_follows_the_natural_die() {
        assert!(resolve_attack(20, 21, 30).hit && resolve_attack(20, 21, 30).critical);
        assert!(!resolve_attack(1, 101, 5).hit);
        assert!(resolve_attack(11, 15, 15).hit);
        assert!(!resolve_attack(10, 14, 15).hit);
        assert!(!resolve_attack(19, 23, 15).critical);
    }

    #[test]
    fn damage_stops_at_zero_and_knocks_out_once() {
        let v = take_damage(5, 8, &strings(&["prone"]));
        assert_eq!(v.after, 0);
        assert_eq!(v.conditions, Some(strings(&["prone", "unconscious"])));
        let v = take_damage(0, 3, &strings(&["unconscious"]));
        assert_eq!((v.after, v.conditions), (0, None));
        let v = take_damage(10, 3, &[]);
        assert_eq!((v.after, v.conditions), (7, None));
    }

    #[test]
    fn healing_is_capped_and_wakes_only_from_zero() {
        let v = heal(3, 7, 10, &[]);
        assert_eq!((v.after, v.conditions), (7, None));
        let v = heal(0, 7, 2, &strings(&["unconscious", "prone"]));
        assert_eq!((v.after, v.conditions), (2, Some(strings(&["prone"]))));
        // Asleep by magic at 3 HP: healing does not wake the creature.
        let v = heal(3, 7, 2, &strings(&["unconscious"]));
        assert_eq!((v.after, v.conditions), (5, None));
        let v = heal(0, 7, 0, &strings(&["unconscious"]));
        assert_eq!((v.after, v.conditions), (0, None));
    }

    #[test]
    fn turns_wrap_into_a_new_round() {
        assert_eq!(
            next_turn(0, 3),
            TurnStep {
                from: 0,
                to: 1,
                new_round: false
            }
        );
        assert_eq!(
            next_turn(2, 3),
            TurnStep {
                from: 2,
                to: 0,
                new_round: true
            }
        );
        assert!(next_turn(0, 1).new_round);
        assert!(next_turn(7, 3).new_round, "out of range wraps");
    }
}
