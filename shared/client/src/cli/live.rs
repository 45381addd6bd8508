//! The commands that play at the table: they join the session live over the WebSocket
//! ([`LiveSession`]), act through the D&D 5e plugin and wait for the server's verdict.
//!
//! Every die a command needs is rolled by the server first (`core:dice:roll`, trusted dice)
//! and handed to the plugin as a roll reference, so every client verifies the numbers:
//! `attack` asks for the to-hit roll, then for the damage the rules call for (doubled dice on a
//! critical hit), then submits the attack with both; `initiative` asks for one roll per
//! combatant.

use std::io::IsTerminal;
use std::time::Duration;

use dlab_core::event::GameEvent;
use dlab_core::ids::{EventId, InstanceId, SessionId, UserId};
use dlab_core::state::GameSessionState;
use serde_json::{Value, json};

use super::view::{Connection, TableView, summary};
use super::{Api, CliError, Global, Output};
use crate::dnd5e::{self, Verifier, initiative_formula, plan_attack};
use crate::native::{Endpoint, JoinOptions, LiveSession, Outcome, ViewSnapshot, default_registry};
use crate::{Command, Status};

/// How long a command waits for its event to be confirmed (rebases included).
const OUTCOME_TIMEOUT: Duration = Duration::from_secs(20);
/// How many events `join` keeps for display.
const KEEP_EVENTS: usize = 200;
/// How long `join` waits for a change before drawing the view again (the status line moves).
const REDRAW_EVERY: Duration = Duration::from_secs(30);

/// The user id a token names (`sub` of its claims, read without checking the signature: the
/// server checks it; the client only needs to recognize its own events).
pub fn token_subject(token: &str) -> Option<UserId> {
    let claims = token.split('.').nth(1)?;
    let bytes = base64url(claims)?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims["sub"].as_str().map(UserId::new)
}

/// Decodes unpadded base64url (a JWT part).
fn base64url(text: &str) -> Option<Vec<u8>> {
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}

/// The WebSocket URL of a server: `--ws-url`, else the HTTP URL with `ws`/`wss` (the local
/// gateway serves both on one port).
pub fn ws_url(global: &Global) -> String {
    if let Some(ws) = &global.ws_url {
        return ws.clone();
    }
    let base = global.url.trim_end_matches('/');
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    format!("{ws}/")
}

/// Joins `session` live as the token's user, with the 5e plugin.
async fn join(global: &Global, session: &str) -> Result<LiveSession, CliError> {
    let token = global
        .token
        .clone()
        .filter(|t| !t.trim().is_empty())
        .ok_or(CliError::NoToken)?;
    let user = token_subject(&token).ok_or_else(|| {
        CliError::Usage("the token has no readable user id (sub); is it a user token?".into())
    })?;
    let endpoint = Endpoint {
        http: global.url.clone(),
        ws: ws_url(global),
        token,
    };
    Ok(LiveSession::join(
        endpoint,
        SessionId::new(session),
        user,
        default_registry(),
        JoinOptions::default(),
    )
    .await?)
}

/// Checks that `who` is an actor instance of the session (a clear not-found before any roll).
fn require_instance(view: &GameSessionState, who: &str) -> Result<InstanceId, CliError> {
    let id = InstanceId::new(who);
    if id.is_session() || !view.active_actors.contains_key(&id) {
        let known: Vec<&str> = view.active_actors.keys().map(|k| k.as_str()).collect();
        return Err(CliError::NotInSession {
            instance: who.to_owned(),
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        });
    }
    Ok(id)
}

/// Submits `command`, follows it through rebases and returns the committed event.
async fn commit(live: &LiveSession, command: Command) -> Result<GameEvent, CliError> {
    let id = live.command(command).await?;
    settled(live, id).await
}

/// Follows our event `id` through rebases and returns the committed event.
async fn settled(live: &LiveSession, id: EventId) -> Result<GameEvent, CliError> {
    let (id, outcome) = live.settle(&id, OUTCOME_TIMEOUT).await?;
    let sequence = match outcome {
        Outcome::Confirmed { sequence } => sequence,
        Outcome::RolledBack(rejection) => {
            return Err(crate::native::DriverError::Rejected(rejection).into());
        }
        Outcome::Rebased { .. } => unreachable!("settle follows rebases"),
    };
    let snapshot = live
        .wait_until("our event to be applied", OUTCOME_TIMEOUT, |s| {
            s.last_applied >= sequence
        })
        .await?;
    snapshot
        .log
        .iter()
        .find(|e| e.id == id)
        .cloned()
        .ok_or_else(|| CliError::Usage(format!("event {id} left the recent log")))
}

/// `dlab attack`.
pub async fn attack(
    global: &Global,
    out: Output,
    session: &str,
    attacker: &str,
    target: &str,
    weapon: Option<&str>,
) -> Result<(), CliError> {
    let live = join(global, session).await?;
    let result = async {
        let view = live.snapshot().view;
        let attacker = require_instance(&view, attacker)?;
        let target = require_instance(&view, target)?;
        // A rules refusal (no such weapon, no armour class) is clear before any roll.
        plan_attack(&view, &attacker, &target, weapon).map_err(CliError::Plugin)?;
        let attack = live.attack(&attacker, &target, weapon).await?;
        settled(&live, attack.id).await
    }
    .await;
    live.close().await;
    let event = result?;
    out.emit(&event_json(&event), |v| {
        format!("{} [#{}]", summary(&event), output_seq(v))
    });
    Ok(())
}

fn output_seq(v: &Value) -> String {
    super::output::field(v, "sequence")
}

/// A plugin command.
pub fn command(name: &str, args: Value) -> Command {
    Command {
        name: name.to_owned(),
        args,
    }
}

/// The committed event as `--json` prints it.
fn event_json(event: &GameEvent) -> Value {
    serde_json::to_value(event).expect("an event serializes")
}

/// `dlab damage|heal|condition|end-turn`: one plugin command, printed as its event.
pub async fn simple(
    global: &Global,
    out: Output,
    session: &str,
    command: Command,
    targets: &[&str],
) -> Result<(), CliError> {
    let live = join(global, session).await?;
    let result = async {
        let view = live.snapshot().view;
        for target in targets {
            require_instance(&view, target)?;
        }
        commit(&live, command).await
    }
    .await;
    let after = live.snapshot().view;
    live.close().await;
    let event = result?;
    out.emit(&event_json(&event), |v| {
        let mut line = format!("{} [#{}]", summary(&event), output_seq(v));
        if event.event_type == dnd5e::END_TURN {
            line.push_str(&format!("; now: {}", current_turn(&after)));
        }
        line
    });
    Ok(())
}

/// Whose turn it is in `view`.
fn current_turn(view: &GameSessionState) -> String {
    let session = InstanceId::new(InstanceId::SESSION);
    let turn = view
        .current(&session, "encounter.currentTurn")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    let order = view
        .current(&session, "encounter.initiative")
        .unwrap_or(Value::Null);
    usize::try_from(turn)
        .ok()
        .and_then(|i| order.get(i))
        .map_or_else(|| "-".into(), |e| super::output::field(e, "name"))
}

/// `dlab initiative`: a server roll per combatant, then the initiative event.
pub async fn initiative(global: &Global, out: Output, session: &str) -> Result<(), CliError> {
    let live = join(global, session).await?;
    let result = async {
        let view = live.snapshot().view;
        let mut rolls = serde_json::Map::new();
        for who in view.active_actors.keys() {
            let formula = initiative_formula(&view, who).map_err(CliError::Plugin)?;
            let roll = live.roll(&formula, &format!("initiative of {who}")).await?;
            rolls.insert(who.to_string(), roll.as_roll_ref());
        }
        commit(&live, command("initiative", json!({"rolls": rolls}))).await
    }
    .await;
    live.close().await;
    let event = result?;
    out.emit(&event_json(&event), |v| {
        format!("{} [#{}]", summary(&event), output_seq(v))
    });
    Ok(())
}

/// `dlab roll`: a trusted roll by the server.
pub async fn roll(
    global: &Global,
    out: Output,
    session: &str,
    formula: &str,
    purpose: &str,
) -> Result<(), CliError> {
    let live = join(global, session).await?;
    let result = live.roll(formula, purpose).await;
    live.close().await;
    let roll = result?;
    let value = json!({
        "eventId": roll.event_id, "sequence": roll.sequence.get(), "formula": roll.formula,
        "dice": roll.dice, "total": roll.total,
    });
    out.emit(&value, |_| {
        let dice: Vec<String> = roll.dice.iter().map(u32::to_string).collect();
        format!(
            "{} = {}  [{}]  (server roll #{})",
            roll.formula,
            roll.total,
            dice.join(", "),
            roll.sequence.get()
        )
    });
    Ok(())
}

/// The connection facts of a snapshot, in words.
fn connection(snapshot: &ViewSnapshot) -> Connection {
    let status = match &snapshot.status {
        Status::Connected => "connected".to_owned(),
        Status::Reconnecting { attempt, .. } => format!("reconnecting (attempt {attempt})"),
        Status::Offline { .. } => "offline".to_owned(),
    };
    Connection {
        status,
        live: snapshot.live,
        pending: snapshot.pending,
        last_error: snapshot.last_error.clone(),
    }
}

/// What `join` remembers between redraws: the verifier fed in sequence order and the recent
/// committed events.
struct History {
    verifier: Verifier,
    events: Vec<GameEvent>,
    last: u64,
}

impl History {
    fn observe(&mut self, event: &GameEvent) {
        if event.sequence.get() <= self.last {
            return;
        }
        self.last = event.sequence.get();
        self.verifier.observe(event);
        self.events.push(event.clone());
        if self.events.len() > KEEP_EVENTS * 2 {
            self.events.drain(..self.events.len() - KEEP_EVENTS);
        }
    }
}

/// The session's log up to `head` over HTTP, so the verifier has seen every roll before the
/// events that use them.
async fn history(api: &Api, session: &SessionId, head: u64) -> Result<History, CliError> {
    let mut history = History {
        verifier: Verifier::new(false),
        events: Vec::new(),
        last: 0,
    };
    let mut after = 0;
    while after < head {
        let (page, more) = api
            .events_page(session, after, super::api::MAX_PAGE)
            .await?;
        let Some(last) = page.last().and_then(|e| e["sequence"].as_u64()) else {
            break;
        };
        for item in page {
            let event: GameEvent = serde_json::from_value(item).map_err(|e| {
                CliError::Api(super::ApiError::Unexpected {
                    url: format!("/sessions/{session}/events"),
                    reason: format!("an event that does not parse ({e})"),
                })
            })?;
            if event.sequence.get() <= head {
                history.observe(&event);
            }
        }
        if !more || last <= after {
            break;
        }
        after = last;
    }
    Ok(history)
}

/// `dlab join`: the live table, redrawn on every change until Ctrl-C (`once`: one view, then
/// exit).
pub async fn join_view(
    global: &Global,
    out: Output,
    session: &str,
    once: bool,
    events: usize,
) -> Result<(), CliError> {
    let live = join(global, session).await?;
    let result = follow(global, out, &live, once, events).await;
    live.close().await;
    result
}

async fn follow(
    global: &Global,
    out: Output,
    live: &LiveSession,
    once: bool,
    max_events: usize,
) -> Result<(), CliError> {
    let api = super::authed(global)?;
    let first = live.snapshot();
    let mut history = history(
        &api,
        live.session_id(),
        first.confirmed.last_event_sequence.get(),
    )
    .await?;
    let tty = std::io::stdout().is_terminal() && !out.json;
    let mut shown = String::new();
    loop {
        let snapshot = live.snapshot();
        for event in &snapshot.log {
            history.observe(event);
        }
        let view = TableView::new(
            &snapshot.view,
            &history.events,
            &history.verifier,
            &connection(&snapshot),
            max_events,
        );
        let rendered = if out.json {
            view.to_json().to_string()
        } else {
            view.render()
        };
        if rendered != shown {
            if out.json {
                out.emit(&view.to_json(), |_| String::new());
            } else if tty {
                // Clear the screen and home the cursor: a terminal redraws in place.
                print!("\x1b[2J\x1b[H{rendered}");
            } else {
                if !shown.is_empty() {
                    println!("----");
                }
                print!("{rendered}");
            }
            shown = rendered;
        }
        if once {
            return Ok(());
        }
        let (applied, status, pending) = (snapshot.last_applied, snapshot.status, snapshot.pending);
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            changed = live.wait_until("a change", REDRAW_EVERY, |s| {
                s.last_applied != applied || s.status != status || s.pending != pending
            }) => match changed {
                Ok(_) | Err(crate::native::DriverError::Timeout { .. }) => {}
                Err(e) => return Err(e.into()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_is_read_from_the_token() {
        // {"alg":"HS256"} . {"sub":"alice","exp":1} . signature
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MX0.c2ln";
        assert_eq!(token_subject(token), Some(UserId::new("alice")));
        assert_eq!(token_subject("not-a-token"), None);
        assert_eq!(token_subject("a.!!!.c"), None);
        assert_eq!(base64url("aGk").unwrap(), b"hi");
        assert_eq!(base64url("aGk=").unwrap(), b"hi");
    }

    #[test]
    fn the_socket_url_follows_the_http_url() {
        let global = |url: &str, ws: Option<&str>| Global {
            url: url.into(),
            ws_url: ws.map(str::to_owned),
            token: None,
            json: false,
        };
        assert_eq!(
            ws_url(&global("http://127.0.0.1:8080", None)),
            "ws://127.0.0.1:8080/"
        );
        assert_eq!(
            ws_url(&global("https://api.example.org/", None)),
            "wss://api.example.org/"
        );
        assert_eq!(
            ws_url(&global(
                "https://api.example.org",
                Some("wss://ws.example.org/prod")
            )),
            "wss://ws.example.org/prod"
        );
    }
}
