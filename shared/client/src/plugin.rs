//! Plugins: where game rules live, and the registry that routes to them.
//!
//! The server validates only the envelope (ARCHITECTURE.md, "What the system is"); a game system
//! such as D&D 5e is a client plugin that turns a player's command into an event draft, may keep
//! derived state of its own, and rebases a draft the server refused with `conflict`. Only the
//! types are defined here; the first plugin comes later.
//!
//! The session state itself is always the generic projection of `dlab-core` (the one the server
//! runs), whatever the event type: a client that skipped an event's `stateChanges` because no
//! plugin claims its type would drift from every other screen. "Ignored by the view" therefore
//! means: an event of a type no plugin owns stays in the log and advances the sequence, and no
//! plugin hook sees it.

use std::collections::BTreeMap;

use dlab_core::event::GameEvent;
use dlab_core::state::GameSessionState;
use serde_json::Value;
use thiserror::Error;

/// An event the client wants to submit: the server adds `sequence`, `timestamp` and `userId`,
/// the session client adds `id`, `sessionId` and `clientTimestamp`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDraft {
    /// `<namespace>:<name>[:<name>…]`, e.g. `plugin:dnd5e:attack`.
    pub event_type: String,
    /// The payload, with the state-change conventions where it changes state.
    pub payload: Value,
}

impl EventDraft {
    /// A draft of `event_type` with `payload`.
    pub fn new(event_type: impl Into<String>, payload: Value) -> Self {
        Self {
            event_type: event_type.into(),
            payload,
        }
    }
}

/// A player's intent, before a plugin turns it into an event (e.g. `attack` with a target).
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The command's name, unique within its plugin.
    pub name: String,
    /// Its arguments, as the UI collected them.
    pub args: Value,
}

/// Why a plugin refused or failed. Edge: shown to the player; nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PluginError {
    /// No registered plugin handles this command.
    #[error("no plugin handles the command {0:?}")]
    UnknownCommand(String),
    /// The command breaks the game's rules or misses arguments.
    #[error("{0}")]
    Invalid(String),
    /// The plugin could not fold an event into its derived state.
    #[error("plugin state: {0}")]
    Apply(String),
}

/// The server's refusal of a `compare-and-set`, as the rebase hook sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictInfo {
    /// The current value of every path of the refused event (from `event:error.current`).
    pub current: BTreeMap<String, Value>,
}

/// What the rebase hook decided about a draft the server refused with `conflict`.
#[derive(Debug, Clone, PartialEq)]
pub enum Rebase {
    /// Submit this replacement (with a NEW id: the server judges a refused id afresh, and a new
    /// id keeps the two attempts apart in logs and dedup).
    Resubmit(EventDraft),
    /// The plugin cannot decide for the players (e.g. two of them changed the same creature's
    /// conditions at once): the client reports [`crate::Notification::Escalate`] and a driver
    /// asks the GM with `POST /sessions/{id}/conflicts {eventId, reason}`.
    Escalate(String),
    /// Nothing to do beyond the rollback report (a stale turn change, a change someone else
    /// already made).
    Report,
}

/// Rebases a refused draft on fresh state. The session client calls it after `conflict`; the
/// conflict is reported as a rollback with code `conflict` whatever the hook decides.
/// `Send + Sync`: a driver shares one [`Registry`] between the session client (as its rebaser)
/// and the code that builds commands, from a task on another thread.
pub trait Rebaser: Send + Sync {
    /// What to do about `rejected`, given the server's current values and our confirmed state
    /// (which may lag behind the server's `current`).
    fn rebase(
        &self,
        rejected: &EventDraft,
        conflict: &ConflictInfo,
        confirmed: &GameSessionState,
    ) -> Rebase;
}

/// The default rebase hook: never rebases, so the caller sees the conflict and decides.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReportOnly;

impl Rebaser for ReportOnly {
    fn rebase(&self, _: &EventDraft, _: &ConflictInfo, _: &GameSessionState) -> Rebase {
        Rebase::Report
    }
}

/// A game system's rules on the client.
///
/// `Send + Sync` for the same reason as [`Rebaser`]; a plugin with mutable inner state (e.g. a
/// dice generator) keeps it behind a `Mutex`.
pub trait Plugin: Send + Sync {
    /// A stable name, e.g. `dnd5e`; keys the plugin's derived state.
    fn name(&self) -> &str;

    /// Whether this plugin owns events of `event_type` (typically a `plugin:<name>:` prefix).
    fn owns(&self, event_type: &str) -> bool;

    /// Whether this plugin handles the command named `command`.
    fn handles(&self, command: &str) -> bool;

    /// Checks a command against the current (optimistic) view without building anything.
    fn validate(&self, command: &Command, view: &GameSessionState) -> Result<(), PluginError>;

    /// Builds the event for a validated command, with `stateChanges` written as compare-and-set
    /// against `view` where the rules need it.
    fn build(&self, command: &Command, view: &GameSessionState) -> Result<EventDraft, PluginError>;

    /// Folds a committed event this plugin owns into its own derived state (for what the generic
    /// `stateChanges` projection cannot express, e.g. a combat log). Default: nothing.
    fn apply(
        &self,
        event: &GameEvent,
        state: &GameSessionState,
        derived: &mut Value,
    ) -> Result<(), PluginError> {
        let _ = (event, state, derived);
        Ok(())
    }

    /// Rebases a draft of this plugin after a `conflict`. Default: [`Rebase::Report`].
    fn rebase(
        &self,
        rejected: &EventDraft,
        conflict: &ConflictInfo,
        confirmed: &GameSessionState,
    ) -> Rebase {
        let _ = (rejected, conflict, confirmed);
        Rebase::Report
    }
}

/// The plugins of a client, in registration order (the first owner of a type wins).
#[derive(Default)]
pub struct Registry {
    plugins: Vec<Box<dyn Plugin>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.plugins.iter().map(|p| p.name()))
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a plugin.
    pub fn register(&mut self, plugin: Box<dyn Plugin>) {
        self.plugins.push(plugin);
    }

    /// The plugin that owns `event_type`, if any.
    pub fn owner(&self, event_type: &str) -> Option<&dyn Plugin> {
        self.plugins
            .iter()
            .find(|p| p.owns(event_type))
            .map(|p| p.as_ref())
    }

    /// Validates and builds the event for `command` with the plugin that handles it.
    pub fn build(
        &self,
        command: &Command,
        view: &GameSessionState,
    ) -> Result<EventDraft, PluginError> {
        let plugin = self
            .plugins
            .iter()
            .find(|p| p.handles(&command.name))
            .ok_or_else(|| PluginError::UnknownCommand(command.name.clone()))?;
        plugin.validate(command, view)?;
        plugin.build(command, view)
    }

    /// Folds a committed event into its owner's derived state (`derived` is keyed by plugin
    /// name). An event no plugin owns is ignored: it stays in the log only.
    pub fn apply(
        &self,
        event: &GameEvent,
        state: &GameSessionState,
        derived: &mut BTreeMap<String, Value>,
    ) -> Result<(), PluginError> {
        match self.owner(&event.event_type) {
            Some(plugin) => {
                let slot = derived
                    .entry(plugin.name().to_owned())
                    .or_insert(Value::Null);
                plugin.apply(event, state, slot)
            }
            None => Ok(()),
        }
    }
}

impl Rebaser for Registry {
    fn rebase(
        &self,
        rejected: &EventDraft,
        conflict: &ConflictInfo,
        confirmed: &GameSessionState,
    ) -> Rebase {
        match self.owner(&rejected.event_type) {
            Some(plugin) => plugin.rebase(rejected, conflict, confirmed),
            None => Rebase::Report,
        }
    }
}

/// A registry shared between the session client (as its rebaser) and the code that builds
/// commands with it (a driver's task, the browser session).
impl Rebaser for std::sync::Arc<Registry> {
    fn rebase(
        &self,
        rejected: &EventDraft,
        conflict: &ConflictInfo,
        confirmed: &GameSessionState,
    ) -> Rebase {
        self.as_ref().rebase(rejected, conflict, confirmed)
    }
}
