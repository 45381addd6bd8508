//! The tokio driver of the sans-IO core (feature `native`, on by default).
//!
//! [`LiveSession`] owns one [`crate::SessionClient`] in a tokio task and does its I/O: it loads
//! the session's state over HTTP, opens the WebSocket with a connect ticket, feeds frames and
//! time into the core, executes every [`crate::Output`] (sends, reconnects with the core's
//! backoff, snapshot loads, wake-ups) and publishes a [`ViewSnapshot`] after each step. Callers
//! (a CLI, a bot, the tests) submit events or plugin commands and wait for their [`Outcome`]s;
//! every wait is bounded.
//!
//! # Layout
//! - [`live`]: [`LiveSession`] and its task.
//! - this module: the endpoint, options, errors and the published types.
//! - `http` (private): the HTTP calls and the mapping of the server's error bodies.

mod http;
pub mod live;

use std::time::Duration;

use dlab_core::codes::ErrorCode;
use dlab_core::event::GameEvent;
use dlab_core::ids::{EventId, Sequence};
use dlab_core::state::GameSessionState;
use thiserror::Error;

use crate::connection::{Status, Timings};
use crate::entropy::Entropy;
use crate::plugin::PluginError;
use crate::session::{Rejection, SnapshotError, SubmitError};

pub use live::LiveSession;

/// Where the server is, and who we are to it.
#[derive(Clone)]
pub struct Endpoint {
    /// The HTTP API's base URL, e.g. `https://api.example.org` or `http://127.0.0.1:8080`.
    pub http: String,
    /// The WebSocket URL, e.g. `wss://ws.example.org/prod` or `ws://127.0.0.1:8080/`.
    pub ws: String,
    /// A user token (bearer JWT); the socket itself gets a single-use ticket made with it.
    pub token: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens never reach logs.
        f.debug_struct("Endpoint")
            .field("http", &self.http)
            .field("ws", &self.ws)
            .finish_non_exhaustive()
    }
}

/// Tuning of [`LiveSession::join`].
#[derive(Debug, Clone)]
pub struct JoinOptions {
    /// How long `join` waits for the session to be live (state loaded, socket open, caught up).
    pub live_timeout: Duration,
    /// Bound of each HTTP request and of each WebSocket handshake.
    pub request_timeout: Duration,
    /// How long a sent, unconfirmed submit waits before the core resends it (same id).
    pub submit_timeout: Duration,
    /// Reconnect backoff and heartbeat.
    pub timings: Timings,
    /// How many recent committed events the snapshot's log keeps.
    pub max_log: usize,
    /// How many final outcomes are remembered for [`LiveSession::outcome`] (oldest dropped).
    pub max_outcomes: usize,
    /// Bound of the waits a call makes on the caller's behalf (a submit's hand-over to the
    /// task, the confirmation of [`LiveSession::roll`]).
    pub wait_timeout: Duration,
}

impl Default for JoinOptions {
    /// 20 s to go live and for other waits, 10 s per request, the core's defaults otherwise,
    /// 4096 outcomes.
    fn default() -> Self {
        Self {
            live_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(10),
            submit_timeout: Duration::from_secs(10),
            timings: Timings::default(),
            max_log: 512,
            max_outcomes: 4096,
            wait_timeout: Duration::from_secs(20),
        }
    }
}

/// What became of a submitted event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Committed at `sequence` and part of the confirmed state.
    Confirmed {
        /// Its sequence.
        sequence: Sequence,
    },
    /// The server refused it; it left the view.
    RolledBack(Rejection),
    /// A `conflict` the rebaser answered: the replacement went out with a new id (wait for its
    /// outcome in turn, or use [`LiveSession::settle`]).
    Rebased {
        /// The replacement's id.
        resubmitted: EventId,
    },
}

/// A trusted roll made by the server (`core:dice:roll`, PROTOCOL.md "Trusted dice").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRoll {
    /// The roll event's id (what a plugin event names as `rollEventId`).
    pub event_id: EventId,
    /// Its sequence.
    pub sequence: Sequence,
    /// The formula as submitted.
    pub formula: String,
    /// The face of every die, in formula order (dropped `kh`/`kl` dice included).
    pub dice: Vec<u32>,
    /// The server's total.
    pub total: i64,
}

impl ServerRoll {
    /// The roll as a 5e plugin argument (`{rollEventId, formula, dice, total}`).
    pub fn as_roll_ref(&self) -> serde_json::Value {
        crate::dnd5e::rules::RollRef {
            roll_event_id: Some(self.event_id.clone()),
            formula: self.formula.clone(),
            dice: self.dice.clone(),
            total: self.total,
        }
        .to_json()
    }
}

/// A trusted attack as sent: the attack event's id and the server rolls it names.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustedAttack {
    /// The `plugin:dnd5e:attack` event (it may still be rebased: settle it).
    pub id: EventId,
    /// The server's to-hit roll.
    pub to_hit: ServerRoll,
    /// The server's damage roll, on a hit.
    pub damage: Option<ServerRoll>,
    /// Whether it hits.
    pub hit: bool,
    /// Whether it is a critical hit.
    pub critical: bool,
}

/// What a watcher sees: published after every step of the core.
#[derive(Debug, Clone)]
pub struct ViewSnapshot {
    /// The optimistic view (confirmed state plus pending events): what a UI shows.
    pub view: GameSessionState,
    /// The state of the committed events only.
    pub confirmed: GameSessionState,
    /// The last sequence applied to the confirmed state.
    pub last_applied: Sequence,
    /// The highest sequence known to exist.
    pub known_head: Sequence,
    /// The connection status.
    pub status: Status,
    /// Whether the catch-up on the current socket finished (queued submits are flowing).
    pub live: bool,
    /// Our events not final yet.
    pub pending: usize,
    /// The most recent committed events, in the order they were applied.
    pub log: Vec<GameEvent>,
    /// States loaded because the core asked (`snapshot:required`, or a diverged projection).
    pub state_loads: u64,
    /// The last connection or server problem, for a status line.
    pub last_error: Option<String>,
    /// The trusted-dice verdict on each 5e event of `log` ([`crate::dnd5e::Verifier`], fed
    /// every committed event in order since the join).
    pub verdicts: std::collections::BTreeMap<EventId, crate::Verdict>,
    /// The session's `settings.requireServerRolls` as the verifier last saw it.
    pub require_server_rolls: bool,
}

/// Why a driver call failed.
#[derive(Debug, Error)]
pub enum DriverError {
    /// The server could not be reached (DNS, TCP, TLS, a timeout, a broken body).
    #[error("the server at {url} is unreachable")]
    Unreachable {
        /// The URL called.
        url: String,
        /// What the HTTP client said.
        #[source]
        source: reqwest::Error,
    },
    /// The token is missing, expired or invalid (401): get a new one, retrying will not help.
    #[error("unauthorized: {message}")]
    Unauthorized {
        /// The server's message.
        message: String,
    },
    /// The user may not do this, e.g. is not GM or member of the campaign (403).
    #[error("forbidden: {message}")]
    Forbidden {
        /// The server's message.
        message: String,
    },
    /// Any other refusal of an HTTP request, with the server's `{error: {code, message}}`.
    #[error("{path} answered {status} ({code:?}): {message}")]
    Http {
        /// The HTTP status.
        status: u16,
        /// The path called.
        path: String,
        /// The wire code, when the body had one.
        code: Option<ErrorCode>,
        /// The server's message.
        message: String,
    },
    /// The WebSocket handshake failed (refused upgrade, TCP or TLS error).
    #[error("the WebSocket handshake with {url} failed")]
    Socket {
        /// The WebSocket URL (without the ticket).
        url: String,
        /// What the WebSocket client said.
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// A 2xx answer whose body is not what the route documents.
    #[error("the answer of {path} is not the documented JSON")]
    Body {
        /// The path called.
        path: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A loaded session state was unusable.
    #[error("the loaded session state is unusable")]
    State(#[source] SnapshotError),
    /// A bounded wait ran out.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The bound.
        after: Duration,
    },
    /// The core refused the submit before anything was sent.
    #[error("the submit was refused locally")]
    Submit(#[source] SubmitError),
    /// The server refused the event (e.g. an invalid roll formula).
    #[error("the server refused the event")]
    Rejected(#[source] Rejection),
    /// No plugin could build the command.
    #[error("the command could not be built")]
    Command(#[source] PluginError),
    /// A confirmed roll event without the server's `result`.
    #[error("the roll event {0} carries no server result")]
    NoRollResult(EventId),
    /// The session was closed (or its task ended).
    #[error("the session is closed")]
    Closed,
}

/// Event ids and reconnect jitter from the operating system's generator (through `rand`'s
/// thread-local CSPRNG, seeded from the OS): unpredictable and distinct per process, as the
/// server's idempotency keys need.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn next_u64(&mut self) -> u64 {
        rand::random()
    }
}

/// Dice for rules that roll on this machine (a plugin's local rolls, when no server roll was
/// asked for): the thread-local CSPRNG, uniform over the faces (`random_range` rejects the
/// biased tail rather than taking a modulus).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsDice;

impl dlab_core::dice::DiceRng for OsDice {
    fn die(&mut self, sides: u32) -> u32 {
        rand::random_range(1..=sides.max(1))
    }
}

/// The plugins of a native client: the D&D 5e rules with [`OsDice`] for local rolls.
pub fn default_registry() -> crate::Registry {
    let mut registry = crate::Registry::new();
    registry.register(Box::new(crate::Dnd5e::new(Box::new(OsDice))));
    registry
}
