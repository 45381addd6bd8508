//! The D&D 5e plugin: attacks, damage, healing, conditions, initiative and turns, and the
//! verification of the dice other clients claim to have rolled.
//!
//! The server knows nothing of 5e (ARCHITECTURE.md): it commits `plugin:dnd5e:*` events by the
//! generic state-change conventions. So the rules run on the client that acts ([`Dnd5e`] turns
//! a command into an event whose `stateChanges` compare-and-set from what the player saw), and
//! every other client checks the numbers it receives ([`Verifier`]) instead of trusting them.
//!
//! # Actor shape (the compendium copy)
//! `attributes.hp.value`, `attributes.hp.max`, `attributes.ac`, `attributes.abilities.dex`
//! (score), `attributes.conditions` (lowercase strings; missing = none) and
//! `features: [{name, kind, attackBonus, damage: [{dice, type}]}]`. Session fields live on
//! `$session`: `encounter.{active, round, currentTurn, initiative}`.
//!
//! # Commands
//! | command | arguments | event |
//! |---|---|---|
//! | `attack` | `attacker, target, weapon?, attackRoll?, damageRoll?` | `plugin:dnd5e:attack` |
//! | `damage` | `target, amount, damageType?, rollEventId?` | `plugin:dnd5e:damage` |
//! | `heal` | `target, amount, rollEventId?` | `plugin:dnd5e:heal` |
//! | `condition` | `target, condition, op: add/remove` | `plugin:dnd5e:condition` |
//! | `initiative` | `rolls?: {instanceId: roll}` | `plugin:dnd5e:initiative` |
//! | `end_turn`, `next_round` | none | `plugin:dnd5e:end_turn`, `…:next_round` |
//!
//! A roll (`attackRoll`, `damageRoll`, an initiative roll) is `{rollEventId?, formula, dice,
//! total}` ([`RollRef`]): with `rollEventId` it is the server's `core:dice:roll` (a driver asks
//! the server to roll the formulas of [`plan_attack`] / [`initiative_formula`] first); without,
//! the plugin rolls it with its own [`DiceRng`].
//!
//! # Rebase after `conflict`
//! - attack, damage, heal: the same amount applies to the current hit points; the plugin
//!   recomputes hit points and unconscious from the server's `current` and resubmits.
//! - condition: [`Rebase::Report`] if the current conditions already are what the player
//!   wanted, else [`Rebase::Escalate`] to the GM (conditions are rulings, not arithmetic).
//! - initiative, end_turn, next_round: [`Rebase::Report`] (redoing them would skip a turn).

mod commands;
pub mod rules;
mod verify;

use std::sync::Mutex;

use dlab_core::dice::DiceRng;
use dlab_core::state::GameSessionState;

pub use commands::{AttackPlan, initiative_formula, plan_attack};
pub use rules::{InitiativeEntry, RollRef, Vitals, ability_modifier};
pub use verify::{SERVER_ROLLS_REQUIRED, Verdict, Verifier};

use crate::plugin::{Command, ConflictInfo, EventDraft, Plugin, PluginError, Rebase};

/// Prefix of every event type of this plugin.
pub const PREFIX: &str = "plugin:dnd5e:";
/// An attack roll and, on a hit, its damage.
pub const ATTACK: &str = "plugin:dnd5e:attack";
/// Damage without an attack.
pub const DAMAGE: &str = "plugin:dnd5e:damage";
/// Healing.
pub const HEAL: &str = "plugin:dnd5e:heal";
/// A condition added or removed.
pub const CONDITION: &str = "plugin:dnd5e:condition";
/// Initiative rolled: the encounter starts.
pub const INITIATIVE: &str = "plugin:dnd5e:initiative";
/// The current combatant's turn ends.
pub const END_TURN: &str = "plugin:dnd5e:end_turn";
/// A new round starts at the top of the order.
pub const NEXT_ROUND: &str = "plugin:dnd5e:next_round";

/// Current hit points.
pub const HP_PATH: &str = "attributes.hp.value";
/// Maximum hit points.
pub const HP_MAX_PATH: &str = "attributes.hp.max";
/// Conditions (array of lowercase names).
pub const CONDITIONS_PATH: &str = "attributes.conditions";
/// Dexterity score.
pub const DEX_PATH: &str = "attributes.abilities.dex";
/// The `$session` setting that makes locally rolled dice unverified.
pub const REQUIRE_SERVER_ROLLS: &str = "settings.requireServerRolls";

/// The commands this plugin handles.
pub const COMMANDS: [&str; 7] = [
    "attack",
    "damage",
    "heal",
    "condition",
    "initiative",
    "end_turn",
    "next_round",
];

/// The D&D 5e plugin. Its dice generator rolls only what a command does not bring as a server
/// roll; it sits behind a mutex because [`Plugin::build`] takes `&self`.
pub struct Dnd5e {
    rng: Mutex<Box<dyn DiceRng + Send>>,
}

impl std::fmt::Debug for Dnd5e {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dnd5e").finish_non_exhaustive()
    }
}

/// A stand-in die for [`Plugin::validate`]: it rolls the maximum, so validation walks the
/// critical-hit path too (the longest formulas) without drawing from the real generator.
struct Highest;

impl DiceRng for Highest {
    fn die(&mut self, sides: u32) -> u32 {
        sides
    }
}

impl Dnd5e {
    /// A plugin that rolls local dice with `rng` (the platform's secure generator in a client,
    /// a scripted one in tests).
    pub fn new(rng: Box<dyn DiceRng + Send>) -> Self {
        Self {
            rng: Mutex::new(rng),
        }
    }
}

impl Plugin for Dnd5e {
    fn name(&self) -> &str {
        "dnd5e"
    }

    fn owns(&self, event_type: &str) -> bool {
        event_type.starts_with(PREFIX)
    }

    fn handles(&self, command: &str) -> bool {
        COMMANDS.contains(&command)
    }

    fn validate(&self, command: &Command, view: &GameSessionState) -> Result<(), PluginError> {
        commands::build(&command.name, &command.args, view, &mut Highest).map(|_| ())
    }

    fn build(&self, command: &Command, view: &GameSessionState) -> Result<EventDraft, PluginError> {
        // A panic while rolling cannot leave a generator half-updated in a way that matters:
        // any state is a valid state, so a poisoned lock is taken over.
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        commands::build(&command.name, &command.args, view, &mut **rng)
    }

    fn rebase(
        &self,
        rejected: &EventDraft,
        conflict: &ConflictInfo,
        confirmed: &GameSessionState,
    ) -> Rebase {
        commands::rebase(rejected, conflict, confirmed)
    }
}
