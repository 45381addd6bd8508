//! The browser's view of the client core, as JSON: what `wasm.rs` hands to the web console.
//!
//! The browser owns the WebSocket, the HTTP calls and the timers; the core decides everything
//! else. [`WebSession`] is the browser-shaped wrapper of one [`SessionClient`]: it takes
//! strings and milliseconds, returns the core's [`Output`]s as JSON text, runs the trusted-dice
//! [`Verifier`] over every committed event (as the native driver does), and builds the
//! ViewModel the console renders ([`WebSession::snapshot`]). The JSON shapes are pinned by the
//! console's TypeScript types (`shared/web/src/core-types.ts`): every name here is part of that
//! contract.
//!
//! This module is plain Rust, compiled on every target and tested natively; the
//! `wasm-bindgen` shell (`wasm.rs`, feature `wasm`) only forwards to it, so the mapping is
//! covered by `cargo test` without a browser.

use std::error::Error as StdError;
use std::sync::Arc;

use dlab_core::changes::{ACTOR_ADDED, ACTOR_REMOVED, GM_OVERRIDE, as_safe_integer};
use dlab_core::dice::{DICE_ROLL_TYPE, DiceRng};
use dlab_core::event::GameEvent;
use dlab_core::ids::{InstanceId, SessionId, UserId};
use dlab_core::state::GameSessionState;
use serde_json::{Value, json};
use thiserror::Error;

use crate::connection::Status;
use crate::dnd5e::{self, AttackPlan, CONDITIONS_PATH, HP_MAX_PATH, HP_PATH, Verdict, Verifier};
use crate::entropy::{Entropy, SplitMix64};
use crate::plugin::{Command, EventDraft, PluginError, Registry};
use crate::session::{
    ClientConfig, HttpRequest, Notification, Output, PendingStatus, SessionClient, SnapshotError,
    SubmitError, parse_loaded_state,
};

/// The most recent committed events the ViewModel's `log` holds (the core keeps as many).
pub const MAX_LOG: usize = 200;

/// The type of a chat line.
pub const CHAT: &str = "core:chat";

/// Mixed into the constructor's seed for the dice stream, so the plugin's local dice never
/// replay the words that became event ids (an observer of ids could otherwise predict rolls).
const DICE_STREAM: u64 = 0x6469_6365_2d35_6531;

/// Why a call from the browser failed. The browser sees [`error_message`] of it as an `Error`.
#[derive(Debug, Error)]
pub enum WebError {
    /// An argument that must be JSON is not.
    #[error("{what} is not valid JSON")]
    Json {
        /// Which argument.
        what: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// `loadState` after the session started or queued events: the loaded state would silently
    /// drop them.
    #[error("loadState must come before start() and before any submit")]
    LoadTooLate,
    /// A loaded body is not a usable session state.
    #[error("the loaded state is unusable")]
    State(#[source] SnapshotError),
    /// The core refused the submit before anything was queued.
    #[error("the submit was refused")]
    Submit(#[source] SubmitError),
    /// The plugin could not build the command (or plan the attack).
    #[error("the command was refused")]
    Command(#[source] PluginError),
}

/// An error and its sources on one line (`top: cause: deeper cause`), skipping a source whose
/// text the line already holds (a wrapper that prints its source).
pub fn error_message(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Milliseconds from JavaScript (`Date.now()`, a float) for the core: negative, NaN and
/// fractional parts go (a saturating cast).
pub fn millis(now: f64) -> u64 {
    // `as` saturates and maps NaN to 0: exactly the clamp wanted.
    now as u64
}

/// The 64-bit seed of the constructor's two 32-bit halves (`crypto.getRandomValues` gives
/// 32-bit words; JavaScript numbers cannot hold 64 bits exactly).
pub fn seed_of(hi: u32, lo: u32) -> u64 {
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Local dice from a seeded generator, uniform over the faces (the biased tail of the 64-bit
/// word is rejected rather than taken modulo).
#[derive(Debug, Clone)]
pub struct SeededDice(SplitMix64);

impl SeededDice {
    /// Dice drawn from the stream of `seed`.
    pub fn new(seed: u64) -> Self {
        Self(SplitMix64::new(seed))
    }
}

impl DiceRng for SeededDice {
    fn die(&mut self, sides: u32) -> u32 {
        let sides = u64::from(sides.max(1));
        // The largest multiple of `sides` that fits; words at or above it are redrawn.
        let zone = u64::MAX - (u64::MAX % sides);
        loop {
            let word = self.0.next_u64();
            if word < zone {
                return u32::try_from(word % sides + 1).unwrap_or(1);
            }
        }
    }
}

/// One session as the browser drives it. Every method that takes `now` returns the core's
/// outputs as a JSON array (see the module docs for the shapes); the browser executes them in
/// order.
pub struct WebSession {
    config: ClientConfig,
    seed: u64,
    client: SessionClient,
    registry: Arc<Registry>,
    verifier: Verifier,
    /// Started or submitted to: a loaded state would now drop something.
    touched: bool,
}

impl std::fmt::Debug for WebSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSession")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl WebSession {
    /// A session client for `session_id` as `user_id`, from an empty state until
    /// [`Self::load_state`]. `seed` must be fresh random bits: event ids (the server's
    /// idempotency keys) and the 5e plugin's local dice are drawn from it, as distinct streams.
    pub fn new(session_id: &str, user_id: &str, seed: u64) -> Self {
        let mut config =
            ClientConfig::new(SessionId::new(session_id), UserId::new(user_id.to_owned()));
        config.max_log = MAX_LOG;
        let dice_seed = SplitMix64::new(seed ^ DICE_STREAM).next_u64();
        let mut registry = Registry::new();
        registry.register(Box::new(dnd5e::Dnd5e::new(Box::new(SeededDice::new(
            dice_seed,
        )))));
        let registry = Arc::new(registry);
        let state = GameSessionState::new(config.session_id.clone(), None);
        let verifier = Verifier::new(state.require_server_rolls());
        let client = Self::client(&config, seed, &registry, state);
        Self {
            config,
            seed,
            client,
            registry,
            verifier,
            touched: false,
        }
    }

    fn client(
        config: &ClientConfig,
        seed: u64,
        registry: &Arc<Registry>,
        state: GameSessionState,
    ) -> SessionClient {
        let mut client =
            SessionClient::with_state(config.clone(), Box::new(SplitMix64::new(seed)), state);
        client.set_rebaser(Box::new(Arc::clone(registry)));
        client
    }

    /// The body of `GET /sessions/{id}` (or a snapshot), before [`Self::start`]: the client
    /// resumes from it, and the verifier starts from its `settings.requireServerRolls`.
    pub fn load_state(&mut self, body: &str) -> Result<(), WebError> {
        if self.touched {
            return Err(WebError::LoadTooLate);
        }
        let state = parse_loaded_state(body).map_err(WebError::State)?;
        if state.session_id != self.config.session_id {
            return Err(WebError::State(SnapshotError::WrongSession {
                expected: self.config.session_id.clone(),
                got: state.session_id,
            }));
        }
        self.verifier = Verifier::new(state.require_server_rolls());
        self.client = Self::client(&self.config, self.seed, &self.registry, state);
        Ok(())
    }

    /// Starts connecting.
    pub fn start(&mut self, now: u64) -> String {
        self.touched = true;
        let out = self.client.start(now);
        self.outputs(out).to_string()
    }

    /// Stops for good (pending events stay queued).
    pub fn stop(&mut self, now: u64) -> String {
        self.touched = true;
        let out = self.client.stop(now);
        self.outputs(out).to_string()
    }

    /// The socket opened.
    pub fn on_connected(&mut self, now: u64) -> String {
        self.touched = true;
        let out = self.client.on_connected(now);
        self.outputs(out).to_string()
    }

    /// The socket closed, or the connect attempt failed.
    pub fn on_disconnected(&mut self, now: u64) -> String {
        self.touched = true;
        let out = self.client.on_disconnected(now);
        self.outputs(out).to_string()
    }

    /// A text frame from the socket.
    pub fn on_text(&mut self, text: &str, now: u64) -> String {
        self.touched = true;
        let out = self.client.on_text(text, now);
        self.outputs(out).to_string()
    }

    /// The body that answers an `{kind: "http"}` output.
    pub fn on_loaded(&mut self, body: &str, now: u64) -> Result<String, WebError> {
        self.touched = true;
        let state = parse_loaded_state(body).map_err(WebError::State)?;
        let out = self
            .client
            .on_snapshot(state, now)
            .map_err(WebError::State)?;
        Ok(self.outputs(out).to_string())
    }

    /// Time passed.
    pub fn tick(&mut self, now: u64) -> String {
        let out = self.client.tick(now);
        self.outputs(out).to_string()
    }

    /// When `tick` has work next, if ever.
    pub fn next_wake(&self) -> Option<u64> {
        self.client.next_wake()
    }

    /// Queues an event: `{id, outputs}`.
    pub fn submit(
        &mut self,
        event_type: &str,
        payload_json: &str,
        now: u64,
    ) -> Result<String, WebError> {
        let payload = parse(payload_json, "the payload")?;
        self.submit_draft(EventDraft::new(event_type, payload), now)
    }

    /// Builds a 5e command against the optimistic view and queues it: `{id, outputs}`.
    pub fn command(&mut self, name: &str, args_json: &str, now: u64) -> Result<String, WebError> {
        let args = parse(args_json, "the command's arguments")?;
        let command = Command {
            name: name.to_owned(),
            args,
        };
        let draft = self
            .registry
            .build(&command, self.client.view())
            .map_err(WebError::Command)?;
        self.submit_draft(draft, now)
    }

    fn submit_draft(&mut self, draft: EventDraft, now: u64) -> Result<String, WebError> {
        self.touched = true;
        let (id, out) = self.client.submit(draft, now).map_err(WebError::Submit)?;
        Ok(json!({"id": id, "outputs": self.outputs(out)}).to_string())
    }

    /// The attack of `attacker` on `target` worked out against the optimistic view, before any
    /// die is rolled: the formulas to ask the server to roll ([`attack_plan_json`]).
    pub fn plan_attack(
        &self,
        attacker: &str,
        target: &str,
        weapon: Option<&str>,
    ) -> Result<String, WebError> {
        let plan = dnd5e::plan_attack(
            self.client.view(),
            &InstanceId::new(attacker),
            &InstanceId::new(target),
            weapon,
        )
        .map_err(WebError::Command)?;
        Ok(attack_plan_json(&plan).to_string())
    }

    /// The ViewModel as JSON text.
    pub fn snapshot(&self) -> String {
        self.view_model().to_string()
    }

    /// The ViewModel ([`view_model`]).
    pub fn view_model(&self) -> Value {
        view_model(&self.client, &self.verifier)
    }

    /// The core's outputs as JSON; committed events pass through the verifier first, in order,
    /// so the `applied` notification carries their verdicts.
    fn outputs(&mut self, out: Vec<Output>) -> Value {
        let mut list = Vec::with_capacity(out.len());
        for output in &out {
            if let Output::Notify(Notification::Applied(events)) = output {
                for event in events {
                    self.verifier.observe(event);
                }
            }
            list.push(output_json(output, self.client.view(), &self.verifier));
        }
        Value::Array(list)
    }
}

fn parse(text: &str, what: &'static str) -> Result<Value, WebError> {
    serde_json::from_str(text).map_err(|source| WebError::Json { what, source })
}

// ---- outputs ------------------------------------------------------------------------------

/// One output as JSON: `{kind: "send", text}`, `{kind: "connect"}`, `{kind: "reconnect"}`,
/// `{kind: "close"}`, `{kind: "http", href, load, snapshotSequence?}`, `{kind: "wakeAt", at}`
/// or `{kind: "notify", notification}`. `state` names actors in summaries; `verifier` gives the
/// verdicts of applied events.
pub fn output_json(output: &Output, state: &GameSessionState, verifier: &Verifier) -> Value {
    match output {
        Output::Send(_) => json!({"kind": "send", "text": output.text()}),
        Output::Connect => json!({"kind": "connect"}),
        Output::Reconnect => json!({"kind": "reconnect"}),
        Output::Close => json!({"kind": "close"}),
        Output::Http(HttpRequest::LoadSnapshot {
            href,
            snapshot_sequence,
        }) => json!({"kind": "http", "href": href, "load": "snapshot",
                     "snapshotSequence": snapshot_sequence}),
        Output::Http(HttpRequest::LoadState { href }) => {
            json!({"kind": "http", "href": href, "load": "state"})
        }
        Output::WakeAt(at) => json!({"kind": "wakeAt", "at": at}),
        Output::Notify(n) => {
            json!({"kind": "notify", "notification": notification_json(n, state, verifier)})
        }
    }
}

/// A connection status: `{state: "connected" | "reconnecting" | "offline", attempt?, nextAt?,
/// pending?}`.
pub fn status_json(status: &Status) -> Value {
    match status {
        Status::Connected => json!({"state": "connected"}),
        Status::Reconnecting { attempt, next_at } => {
            json!({"state": "reconnecting", "attempt": attempt, "nextAt": next_at})
        }
        Status::Offline { pending } => json!({"state": "offline", "pending": pending}),
    }
}

/// One notification as JSON, `{kind, ...fields}`; every variant of [`Notification`] has its
/// kind.
pub fn notification_json(n: &Notification, state: &GameSessionState, verifier: &Verifier) -> Value {
    match n {
        Notification::StatusChanged(status) => {
            let mut v = status_json(status);
            v["kind"] = json!("status");
            v
        }
        Notification::Live => json!({"kind": "live"}),
        Notification::Applied(events) => json!({
            "kind": "applied",
            "events": events.iter().map(|e| log_entry(e, state, verifier)).collect::<Vec<_>>(),
        }),
        Notification::ViewChanged => json!({"kind": "viewChanged"}),
        Notification::Confirmed { id, sequence } => {
            json!({"kind": "confirmed", "id": id, "sequence": sequence})
        }
        Notification::RolledBack {
            id,
            draft,
            rejection,
        } => {
            let mut v = json!({
                "kind": "rolledBack", "id": id, "type": draft.event_type,
                "code": rejection.code, "message": rejection.message, "payload": draft.payload,
            });
            if let Some(current) = &rejection.current {
                v["current"] = json!(current);
            }
            v
        }
        Notification::Escalate { id, draft, reason } => {
            json!({"kind": "escalate", "id": id, "type": draft.event_type, "reason": reason})
        }
        Notification::Rebased {
            rejected,
            resubmitted,
        } => json!({"kind": "rebased", "rejected": rejected, "resubmitted": resubmitted}),
        Notification::Diverged { sequence, error } => {
            json!({"kind": "diverged", "sequence": sequence, "error": error})
        }
        Notification::ServerError {
            code,
            message,
            action,
        } => json!({"kind": "serverError", "code": code, "message": message, "action": action}),
        Notification::Unsubscribed => json!({"kind": "unsubscribed"}),
        Notification::Frame(frame) => {
            let wire = serde_json::to_value(frame).unwrap_or(Value::Null);
            json!({"kind": "frame", "event": frame.name(), "data": wire.get("data")})
        }
        Notification::BadFrame(error) => json!({"kind": "badFrame", "error": error}),
    }
}

/// An attack plan: `{attacker, target, weapon, toHit, damage, criticalDamage, targetAc,
/// attackBonus, damageTypes}`.
pub fn attack_plan_json(plan: &AttackPlan) -> Value {
    json!({
        "attacker": plan.attacker,
        "target": plan.target,
        "weapon": plan.weapon,
        "toHit": plan.to_hit,
        "damage": plan.damage,
        "criticalDamage": plan.critical_damage,
        "targetAc": plan.target_ac,
        "attackBonus": plan.attack_bonus,
        "damageTypes": plan.damage_types,
    })
}

// ---- the ViewModel ------------------------------------------------------------------------

/// What the console renders, from the client's optimistic view:
/// `{sessionId, status, live, lastApplied, knownHead, requireServerRolls, actors, encounter,
/// pending, log}` (log newest first, at most [`MAX_LOG`]).
pub fn view_model(client: &SessionClient, verifier: &Verifier) -> Value {
    let view = client.view();
    let confirmed = client.confirmed();
    let pending: Vec<Value> = client
        .pending()
        .map(|p| {
            let (status, sequence) = match p.status {
                PendingStatus::Queued => ("queued", None),
                PendingStatus::Sent => ("sent", None),
                PendingStatus::Committed(seq) => ("committed", Some(seq)),
            };
            let mut v = json!({"id": p.id, "type": p.draft.event_type, "status": status});
            if let Some(seq) = sequence {
                v["sequence"] = json!(seq);
            }
            v
        })
        .collect();
    let log: Vec<&GameEvent> = client.log().collect();
    let mut status = status_json(&client.status());
    status["pending"] = json!(pending.len());
    json!({
        "sessionId": client.view().session_id,
        "status": status,
        "live": client.is_live(),
        "lastApplied": client.last_applied(),
        "knownHead": client.known_head(),
        "requireServerRolls": verifier.require_server_rolls(),
        "actors": view.active_actors.keys().map(|id| actor_json(view, confirmed, id))
            .collect::<Vec<_>>(),
        "encounter": encounter_json(view),
        "pending": pending,
        "log": log.iter().rev().take(MAX_LOG).map(|e| log_entry(e, view, verifier))
            .collect::<Vec<_>>(),
    })
}

/// One actor of `view`: `{instanceId, name, hp, hpMax, ac, conditions, pending, features}`;
/// `pending` when its values in the view differ from the confirmed state's (a submitted change
/// not final yet, or an instance the confirmed state does not hold).
pub fn actor_json(view: &GameSessionState, confirmed: &GameSessionState, id: &InstanceId) -> Value {
    let at = |path: &str| view.current(id, path).unwrap_or(Value::Null);
    let features: Vec<Value> = at("features")
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            let bonus = as_safe_integer(f.get("attackBonus")?)?;
            let parts: Vec<&Value> = f
                .get("damage")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .collect();
            let dice: Vec<&str> = parts
                .iter()
                .filter_map(|p| p.get("dice").and_then(Value::as_str))
                .map(str::trim)
                .collect();
            let types: Vec<&str> = parts
                .iter()
                .filter_map(|p| p.get("type").and_then(Value::as_str))
                .collect();
            Some(json!({
                "name": f.get("name").and_then(Value::as_str).unwrap_or("attack"),
                "attackBonus": bonus,
                "damage": dice.join("+"),
                "damageTypes": types,
            }))
        })
        .collect();
    json!({
        "instanceId": id,
        "name": at("name").as_str().unwrap_or(id.as_str()),
        "hp": at(HP_PATH),
        "hpMax": at(HP_MAX_PATH),
        "ac": at("attributes.ac"),
        "conditions": dnd5e::rules::conditions_from(&at(CONDITIONS_PATH)).unwrap_or_default(),
        "pending": view.runtime_actor(id) != confirmed.runtime_actor(id),
        "features": features,
    })
}

/// The encounter: `{active, round, currentTurn, initiative: [{instanceId, name, total}]}`.
pub fn encounter_json(view: &GameSessionState) -> Value {
    let e = view.encounter();
    let initiative: Vec<Value> = e
        .get("initiative")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|entry| {
            json!({
                "instanceId": entry.get("instanceId"),
                "name": entry.get("name"),
                "total": entry.get("total"),
            })
        })
        .collect();
    json!({
        "active": e.get("active").and_then(Value::as_bool).unwrap_or(false),
        "round": e.get("round"),
        "currentTurn": e.get("currentTurn"),
        "initiative": initiative,
    })
}

/// The verdict as the log shows it: `(verdict, reason)`, `verdict` one of `verified`, `local`,
/// `unverified` (with the reason), or null for an event the verifier does not judge.
pub fn verdict_json(verdict: Option<&Verdict>) -> (Value, Option<String>) {
    match verdict {
        None => (Value::Null, None),
        Some(Verdict::Verified) => (json!("verified"), None),
        Some(Verdict::Local) => (json!("local"), None),
        Some(Verdict::Unverified(reason)) => (json!("unverified"), Some(reason.clone())),
    }
}

/// A committed event as the log shows it: `{id, sequence, type, userId, timestamp, summary,
/// payload, verdict, reason?}`.
pub fn log_entry(event: &GameEvent, state: &GameSessionState, verifier: &Verifier) -> Value {
    let (verdict, reason) = verdict_json(verifier.verdict(&event.id));
    let mut v = json!({
        "id": event.id,
        "sequence": event.sequence,
        "type": event.event_type,
        "userId": event.user_id,
        "timestamp": event.timestamp,
        "summary": summary(event, state),
        "payload": event.payload,
        "verdict": verdict,
    });
    if let Some(reason) = reason {
        v["reason"] = json!(reason);
    }
    v
}

// ---- summaries ----------------------------------------------------------------------------

/// A value for people: strings bare, null or missing as `?`, anything else as JSON.
fn text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "?".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The name of instance `id` (a JSON string) in `state`, else the id itself.
fn name_in(state: &GameSessionState, id: Option<&Value>) -> String {
    let Some(id) = id.and_then(Value::as_str) else {
        return text(id);
    };
    state
        .current(&InstanceId::new(id), "name")
        .and_then(|n| n.as_str().map(str::to_owned))
        .unwrap_or_else(|| id.to_owned())
}

/// A named field, else the named instance's name in `state`.
fn named(p: &Value, field: &str, instance: &str, state: &GameSessionState) -> String {
    match p.get(field).and_then(Value::as_str) {
        Some(name) => name.to_owned(),
        None => name_in(state, p.pointer(instance)),
    }
}

/// ` (15 → 8)` from `hpBefore`/`hpAfter`, or nothing.
fn hp_change(p: &Value) -> String {
    match (p.get("hpBefore"), p.get("hpAfter")) {
        (Some(before), Some(after)) => {
            format!(" ({} → {})", text(Some(before)), text(Some(after)))
        }
        _ => String::new(),
    }
}

/// `7 slashing` / `7`.
fn amount_of(amount: Option<&Value>, damage_type: Option<&Value>) -> String {
    match damage_type.and_then(Value::as_str) {
        Some(t) => format!("{} {t}", text(amount)),
        None => text(amount),
    }
}

/// At most `max` characters, with an ellipsis when cut.
fn clip(line: String, max: usize) -> String {
    if line.chars().count() <= max {
        return line;
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// One line for people about a committed event. `state` names the instances an event refers
/// to only by id. Types without a line of their own read as their type.
pub fn summary(event: &GameEvent, state: &GameSessionState) -> String {
    let p = &event.payload;
    match event.event_type.as_str() {
        dnd5e::ATTACK => {
            let attacker = p
                .pointer("/attacker/name")
                .and_then(Value::as_str)
                .map_or_else(
                    || name_in(state, p.pointer("/attacker/instanceId")),
                    str::to_owned,
                );
            let target = named(p, "targetName", "/target/instanceId", state);
            let weapon = text(p.get("weapon"));
            if p.get("hit") != Some(&Value::Bool(true)) {
                return format!(
                    "{attacker} misses {target} with {weapon} ({} vs AC {})",
                    text(p.pointer("/attackRoll/total")),
                    text(p.get("targetAc"))
                );
            }
            let verb = if p.get("critical") == Some(&Value::Bool(true)) {
                "critically hits"
            } else {
                "hits"
            };
            let mut line = format!(
                "{attacker} {verb} {target} with {weapon}: {}{}",
                amount_of(p.get("damage"), p.get("damageType")),
                hp_change(p)
            );
            if p.get("unconscious") == Some(&Value::Bool(true)) {
                line.push_str(", unconscious");
            }
            line
        }
        dnd5e::DAMAGE => format!(
            "{} takes {} damage{}",
            named(p, "targetName", "/target/instanceId", state),
            amount_of(p.get("amount"), p.get("damageType")),
            hp_change(p)
        ),
        dnd5e::HEAL => format!(
            "{} heals {}{}",
            named(p, "targetName", "/target/instanceId", state),
            text(p.get("amount")),
            hp_change(p)
        ),
        dnd5e::CONDITION => format!(
            "{} is {} {}",
            named(p, "targetName", "/target/instanceId", state),
            if p.get("op").and_then(Value::as_str) == Some("remove") {
                "no longer"
            } else {
                "now"
            },
            text(p.get("condition"))
        ),
        dnd5e::INITIATIVE => {
            let order: Vec<String> = p
                .get("rolls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|r| format!("{} {}", text(r.get("name")), text(r.get("total"))))
                .collect();
            format!("initiative: {}", order.join(", "))
        }
        dnd5e::END_TURN => format!("turn passes to {}", name_in(state, p.get("next"))),
        dnd5e::NEXT_ROUND => format!(
            "round {} starts with {}",
            p.get("round")
                .and_then(as_safe_integer)
                .map_or_else(|| "?".to_owned(), |r| (r + 1).to_string()),
            name_in(state, p.get("next"))
        ),
        DICE_ROLL_TYPE => match p.pointer("/result/total") {
            Some(total) => format!("rolled {} = {}", text(p.get("formula")), text(Some(total))),
            None => format!("rolled {}", text(p.get("formula"))),
        },
        CHAT => clip(format!("{}: {}", event.user_id, text(p.get("text"))), 200),
        ACTOR_ADDED => format!(
            "{} joins",
            p.pointer("/actor/name")
                .and_then(Value::as_str)
                .map_or_else(|| text(p.get("instanceId")), str::to_owned)
        ),
        ACTOR_REMOVED => format!("{} leaves", name_in(state, p.get("instanceId"))),
        GM_OVERRIDE => {
            let mut parts = Vec::new();
            if let Some(Value::Object(instances)) = p.get("finalState") {
                for (instance, paths) in instances {
                    if let Value::Object(paths) = paths {
                        for (path, value) in paths {
                            parts.push(format!("{instance} {path} = {}", text(Some(value))));
                        }
                    }
                }
            }
            clip(format!("GM override: {}", parts.join(", ")), 160)
        }
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests;
