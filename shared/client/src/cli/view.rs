//! The table as `dlab join` shows it: actors with hit points, armour class and conditions, the
//! initiative order with the current turn, the last events with the trusted-dice verdict, and
//! the connection. Built from a session state and its recent events, so it is a pure function
//! of what the driver publishes (and testable without a server).

use dlab_core::event::GameEvent;
use dlab_core::ids::InstanceId;
use dlab_core::state::GameSessionState;
use serde_json::{Value, json};

use super::output::{scalar, truncate};
use crate::dnd5e::{
    self, CONDITIONS_PATH, HP_MAX_PATH, HP_PATH, REQUIRE_SERVER_ROLLS, Verdict, Verifier,
};

/// One actor instance.
#[derive(Debug, Clone, PartialEq)]
pub struct ActorRow {
    /// Its instance id.
    pub instance_id: String,
    /// Its name.
    pub name: String,
    /// Current hit points.
    pub hp: Value,
    /// Maximum hit points.
    pub hp_max: Value,
    /// Armour class.
    pub ac: Value,
    /// Conditions (lowercase names).
    pub conditions: Vec<String>,
}

/// One combatant in the initiative order.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnRow {
    /// Its instance id.
    pub instance_id: String,
    /// Its name.
    pub name: String,
    /// Its initiative total.
    pub total: Value,
    /// Whether it is this combatant's turn.
    pub current: bool,
}

/// One committed event, summarized.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Its sequence.
    pub sequence: u64,
    /// Who sent it.
    pub user: String,
    /// Its type.
    pub event_type: String,
    /// One line for people.
    pub summary: String,
    /// The trusted-dice verdict of a 5e event (`verified`, `local`, `unverified: …`).
    pub verdict: Option<String>,
}

/// What `dlab join` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct TableView {
    /// The session.
    pub session: String,
    /// The last sequence in the view.
    pub head: u64,
    /// The connection, e.g. `connected`, `reconnecting (attempt 2)`.
    pub connection: String,
    /// Whether the catch-up finished.
    pub live: bool,
    /// Our events not final yet.
    pub pending: usize,
    /// Whether the GM requires server rolls.
    pub require_server_rolls: bool,
    /// Actors, by instance id.
    pub actors: Vec<ActorRow>,
    /// Whether an encounter runs.
    pub encounter_active: bool,
    /// The round.
    pub round: Value,
    /// The initiative order.
    pub order: Vec<TurnRow>,
    /// The last events, oldest first.
    pub events: Vec<EventRow>,
    /// The last connection or server problem.
    pub last_error: Option<String>,
}

/// Connection facts the driver publishes next to the state.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// The status, in words.
    pub status: String,
    /// Whether the catch-up finished.
    pub live: bool,
    /// Our events not final yet.
    pub pending: usize,
    /// The last problem.
    pub last_error: Option<String>,
}

impl TableView {
    /// The view of `state`, with the last `max_events` of `events` (committed, in order) and
    /// the verdicts `verifier` reached on them.
    pub fn new(
        state: &GameSessionState,
        events: &[GameEvent],
        verifier: &Verifier,
        connection: &Connection,
        max_events: usize,
    ) -> Self {
        let actors = state
            .active_actors
            .keys()
            .map(|id| {
                let at = |path: &str| state.current(id, path).unwrap_or(Value::Null);
                ActorRow {
                    instance_id: id.to_string(),
                    name: at("name").as_str().unwrap_or(id.as_str()).to_owned(),
                    hp: at(HP_PATH),
                    hp_max: at(HP_MAX_PATH),
                    ac: at("attributes.ac"),
                    conditions: dnd5e::rules::conditions_from(&at(CONDITIONS_PATH))
                        .unwrap_or_default(),
                }
            })
            .collect();
        let session = InstanceId::new(InstanceId::SESSION);
        let encounter = |path: &str| state.current(&session, path).unwrap_or(Value::Null);
        let current_turn = encounter("encounter.currentTurn").as_i64();
        let order = encounter("encounter.initiative")
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, entry)| TurnRow {
                instance_id: scalar(&entry["instanceId"]),
                name: scalar(&entry["name"]),
                total: entry["total"].clone(),
                current: i64::try_from(i).ok() == current_turn,
            })
            .collect();
        let start = events.len().saturating_sub(max_events);
        let events = events[start..]
            .iter()
            .map(|e| EventRow {
                sequence: e.sequence.get(),
                user: e.user_id.to_string(),
                event_type: e.event_type.clone(),
                summary: summary(e),
                verdict: verifier.verdict(&e.id).map(verdict_text),
            })
            .collect();
        TableView {
            session: state.session_id.to_string(),
            head: state.last_event_sequence.get(),
            connection: connection.status.clone(),
            live: connection.live,
            pending: connection.pending,
            require_server_rolls: state
                .current(&session, REQUIRE_SERVER_ROLLS)
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            actors,
            encounter_active: encounter("encounter.active").as_bool() == Some(true),
            round: encounter("encounter.round"),
            order,
            events,
            last_error: connection.last_error.clone(),
        }
    }

    /// The view as JSON (`dlab join --json`).
    pub fn to_json(&self) -> Value {
        json!({
            "sessionId": self.session,
            "head": self.head,
            "connection": {"status": self.connection, "live": self.live,
                           "pending": self.pending, "lastError": self.last_error},
            "requireServerRolls": self.require_server_rolls,
            "actors": self.actors.iter().map(|a| json!({
                "instanceId": a.instance_id, "name": a.name, "hp": a.hp, "hpMax": a.hp_max,
                "ac": a.ac, "conditions": a.conditions,
            })).collect::<Vec<_>>(),
            "encounter": {
                "active": self.encounter_active,
                "round": self.round,
                "order": self.order.iter().map(|t| json!({
                    "instanceId": t.instance_id, "name": t.name, "total": t.total,
                    "current": t.current,
                })).collect::<Vec<_>>(),
            },
            "events": self.events.iter().map(|e| json!({
                "sequence": e.sequence, "userId": e.user, "type": e.event_type,
                "summary": e.summary, "verdict": e.verdict,
            })).collect::<Vec<_>>(),
        })
    }

    /// The view as plain text, no terminal control codes.
    pub fn render(&self) -> String {
        let mut text = format!(
            "Session {}  #{}  {}{}, {} pending{}\n",
            self.session,
            self.head,
            self.connection,
            if self.live { ", live" } else { ", catching up" },
            self.pending,
            if self.require_server_rolls {
                "  (server rolls required)"
            } else {
                ""
            }
        );
        if let Some(problem) = &self.last_error {
            text.push_str(&format!("last problem: {problem}\n"));
        }
        text.push_str("\nActors\n");
        if self.actors.is_empty() {
            text.push_str("  (none)\n");
        }
        let width = self
            .actors
            .iter()
            .map(|a| a.instance_id.chars().count())
            .max()
            .unwrap_or(0);
        let name_width = self
            .actors
            .iter()
            .map(|a| a.name.chars().count())
            .max()
            .unwrap_or(0);
        for a in &self.actors {
            let mut line = format!(
                "  {:width$}  {:name_width$}  HP {:>3}/{:<3}  AC {:>2}",
                a.instance_id,
                a.name,
                scalar(&a.hp),
                scalar(&a.hp_max),
                scalar(&a.ac),
            );
            if !a.conditions.is_empty() {
                line.push_str(&format!("  [{}]", a.conditions.join(", ")));
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        if self.encounter_active || !self.order.is_empty() {
            text.push_str(&format!("\nInitiative (round {})\n", scalar(&self.round)));
            for t in &self.order {
                text.push_str(&format!(
                    "  {} {}  {}  {}\n",
                    if t.current { ">" } else { " " },
                    scalar(&t.total),
                    t.name,
                    t.instance_id
                ));
            }
        }
        text.push_str("\nLast events\n");
        if self.events.is_empty() {
            text.push_str("  (none)\n");
        }
        for e in &self.events {
            let mark = match e.verdict.as_deref() {
                Some("verified") => "  [verified]".to_owned(),
                Some("local") => "  [local dice]".to_owned(),
                Some(other) => format!("  [{}]", other.to_uppercase()),
                None => String::new(),
            };
            text.push_str(&format!(
                "  #{} {}: {}{}\n",
                e.sequence, e.user, e.summary, mark
            ));
        }
        text
    }
}

/// A verdict in words: `verified`, `local`, `unverified: <reason>`.
pub fn verdict_text(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Verified => "verified".into(),
        Verdict::Local => "local".into(),
        Verdict::Unverified(reason) => format!("unverified: {reason}"),
    }
}

/// One line for people about a committed event.
pub fn summary(event: &GameEvent) -> String {
    let p = &event.payload;
    let s = |v: &Value| scalar(v);
    let hp = || match (p.get("hpBefore"), p.get("hpAfter")) {
        (Some(before), Some(after)) => format!(" (HP {} -> {})", s(before), s(after)),
        _ => String::new(),
    };
    match event.event_type.as_str() {
        "core:session:actor_added" => format!(
            "{} joins as {}",
            s(&p["actor"]["name"]),
            s(&p["instanceId"])
        ),
        "core:session:actor_removed" => format!("{} leaves", s(&p["instanceId"])),
        dlab_core::dice::DICE_ROLL_TYPE => {
            let dice: Vec<String> = p["result"]["dice"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| s(&d["value"]))
                .collect();
            let mut line = format!(
                "rolls {} = {} [{}]",
                s(&p["formula"]),
                s(&p["result"]["total"]),
                dice.join(", ")
            );
            if let Some(purpose) = p["purpose"].as_str() {
                line.push_str(&format!(" for {purpose}"));
            }
            line
        }
        dnd5e::ATTACK => {
            let roll = &p["attackRoll"];
            let mut line = format!(
                "{} attacks {} with {}: {} ({} {:+}) vs AC {}: ",
                s(&p["attacker"]["name"]),
                s(&p["targetName"]),
                s(&p["weapon"]),
                s(&roll["total"]),
                s(&roll["natural"]),
                p["attackBonus"].as_i64().unwrap_or(0),
                s(&p["targetAc"]),
            );
            line.push_str(&attack_result(p));
            line.push_str(&hp());
            line
        }
        dnd5e::DAMAGE => format!(
            "{} takes {} {}damage{}",
            s(&p["targetName"]),
            s(&p["amount"]),
            p["damageType"]
                .as_str()
                .map_or_else(String::new, |t| format!("{t} ")),
            hp()
        ),
        dnd5e::HEAL => format!("{} heals {}{}", s(&p["targetName"]), s(&p["amount"]), hp()),
        dnd5e::CONDITION => format!(
            "{}: {} {}",
            s(&p["targetName"]),
            if p["op"] == "remove" {
                "no longer"
            } else {
                "now"
            },
            s(&p["condition"])
        ),
        dnd5e::INITIATIVE => {
            let order: Vec<String> = p["rolls"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| format!("{} {}", s(&r["name"]), s(&r["total"])))
                .collect();
            format!("rolls initiative: {}", order.join(", "))
        }
        dnd5e::END_TURN => "ends the turn".into(),
        dnd5e::NEXT_ROUND => "starts the next round".into(),
        dlab_core::changes::GM_OVERRIDE => {
            format!("GM override {}", truncate(&p["finalState"].to_string(), 80))
        }
        other => format!("{other} {}", truncate(&p.to_string(), 80)),
    }
}

/// `hit, 5 slashing damage` / `CRITICAL HIT, …` / `miss` of an attack payload.
pub fn attack_result(payload: &Value) -> String {
    if payload["hit"] != true {
        return "miss".into();
    }
    format!(
        "{}, {} {}damage",
        if payload["critical"] == true {
            "CRITICAL HIT"
        } else {
            "hit"
        },
        scalar(&payload["damage"]),
        payload["damageType"]
            .as_str()
            .map_or_else(String::new, |t| format!("{t} ")),
    )
}

#[cfg(test)]
mod tests {
    use dlab_core::ids::SessionId;
    use serde_json::json;

    use super::*;

    fn event(sequence: u64, event_type: &str, payload: Value) -> GameEvent {
        serde_json::from_value(json!({
            "id": format!("00000000-0000-4000-8000-{sequence:012}"),
            "sequence": sequence, "timestamp": 1, "userId": "alice", "sessionId": "s1",
            "type": event_type, "payload": payload,
        }))
        .unwrap()
    }

    fn goblin() -> Value {
        json!({"name": "Goblin 1", "attributes": {"hp": {"value": 7, "max": 7}, "ac": 15,
               "abilities": {"dex": 14}},
               "features": [{"name": "Scimitar", "kind": "action", "attackBonus": 4,
                             "damage": [{"dice": "1d6+2", "type": "slashing"}]}]})
    }

    #[test]
    fn the_view_shows_runtime_hit_points_conditions_and_verdicts() {
        let mut state = GameSessionState::new(SessionId::new("s1"), None);
        let events = vec![
            event(
                1,
                "core:session:actor_added",
                json!({"instanceId": "g1", "actorId": "a1", "actor": goblin()}),
            ),
            event(
                2,
                dnd5e::DAMAGE,
                json!({"target": {"instanceId": "g1"}, "targetName": "Goblin 1", "amount": 5,
                       "hpBefore": 7, "hpAfter": 2,
                       "stateChanges": {HP_PATH: {"from": 7, "to": 2}}}),
            ),
            event(
                3,
                dnd5e::CONDITION,
                json!({"target": {"instanceId": "g1"}, "targetName": "Goblin 1",
                       "condition": "prone", "op": "add",
                       "stateChanges": {CONDITIONS_PATH: {"from": null, "to": ["prone"]}}}),
            ),
        ];
        let mut verifier = Verifier::new(false);
        for e in &events {
            state.apply(e).unwrap();
            verifier.observe(e);
        }
        let connection = Connection {
            status: "connected".into(),
            live: true,
            pending: 0,
            last_error: None,
        };
        let view = TableView::new(&state, &events, &verifier, &connection, 2);
        assert_eq!(view.head, 3);
        assert_eq!(view.actors.len(), 1);
        assert_eq!(view.actors[0].hp, json!(2));
        assert_eq!(view.actors[0].hp_max, json!(7));
        assert_eq!(view.actors[0].conditions, ["prone"]);
        assert_eq!(view.events.len(), 2, "the last two");
        assert_eq!(view.events[0].sequence, 2);
        // Damage without a server roll is local dice; a condition has no dice to check.
        assert_eq!(view.events[0].verdict.as_deref(), Some("local"));
        assert_eq!(view.events[1].verdict.as_deref(), Some("verified"));
        let text = view.render();
        assert!(
            text.contains("g1  Goblin 1  HP   2/7    AC 15  [prone]"),
            "{text}"
        );
        assert!(text.contains("#2 alice: Goblin 1 takes 5 damage (HP 7 -> 2)  [local dice]"));
        assert!(
            text.contains("#3 alice: Goblin 1: now prone  [verified]"),
            "{text}"
        );
        assert!(!text.contains('\x1b'), "no control codes");
        let json = view.to_json();
        assert_eq!(json["actors"][0]["hp"], 2);
        assert_eq!(json["events"][1]["verdict"], "verified");
        assert_eq!(json["connection"]["live"], true);
    }

    #[test]
    fn attack_results_read_hit_miss_and_critical() {
        assert_eq!(attack_result(&json!({"hit": false})), "miss");
        assert_eq!(
            attack_result(&json!({"hit": true, "damage": 5, "damageType": "slashing"})),
            "hit, 5 slashing damage"
        );
        assert_eq!(
            attack_result(&json!({"hit": true, "critical": true, "damage": 9})),
            "CRITICAL HIT, 9 damage"
        );
    }
}
