//! The D&D 5e plugin, exact with scripted dice: attacks, hit points, conditions, initiative,
//! turns, rebase and escalation after `conflict`, and the trusted-dice verifier.

mod common;

use std::collections::VecDeque;

use common::{cas_payload, live_client, notes, submitted_ids};
use dlab_client::dnd5e::{
    self, AttackPlan, Dnd5e, RollRef, Verdict, Verifier, initiative_formula, plan_attack,
};
use dlab_client::{
    Command, ConflictInfo, EventDraft, Notification, Plugin, PluginError, Rebase, Registry,
};
use dlab_core::codes::ErrorCode;
use dlab_core::dice::DiceRng;
use dlab_core::event::GameEvent;
use dlab_core::ids::{EventId, InstanceId, Sequence, SessionId, UserId};
use dlab_core::protocol::ServerFrame;
use dlab_core::state::GameSessionState;
use proptest::prelude::*;
use serde_json::{Value, json};

const HP: &str = "attributes.hp.value";
const CONDITIONS: &str = "attributes.conditions";

/// Plays back the given faces and panics on any roll beyond them, so a test also proves how
/// many dice a command rolled.
struct Script(VecDeque<u32>);

impl DiceRng for Script {
    fn die(&mut self, sides: u32) -> u32 {
        let face = self.0.pop_front().expect("a roll the test did not script");
        assert!((1..=sides).contains(&face), "scripted {face} on a d{sides}");
        face
    }
}

fn plugin(faces: &[u32]) -> Dnd5e {
    Dnd5e::new(Box::new(Script(faces.iter().copied().collect())))
}

fn sid() -> SessionId {
    SessionId::new("s-5e")
}

fn id(seq: u64) -> EventId {
    EventId::new(format!("00000000-0000-4000-8000-{seq:012}"))
}

fn event(seq: u64, user: &str, event_type: &str, payload: Value) -> GameEvent {
    GameEvent {
        id: id(seq),
        sequence: Sequence(seq),
        timestamp: 1_000 + seq,
        client_timestamp: None,
        user_id: UserId::new(user),
        session_id: sid(),
        event_type: event_type.to_owned(),
        payload,
        checksum: None,
    }
}

fn pc() -> Value {
    json!({
        "name": "Lyra",
        "attributes": {"hp": {"value": 20, "max": 20}, "ac": 16, "abilities": {"dex": 14}},
        "features": [
            {"name": "Second Wind", "kind": "trait"},
            {"name": "Shortsword", "kind": "action", "attackBonus": 4,
             "damage": [{"dice": "1d6+2", "type": "piercing"}]},
            {"name": "Giant Club", "kind": "action", "attackBonus": 100,
             "damage": [{"dice": "1d4", "type": "bludgeoning"}]},
            {"name": "Flame Blade", "kind": "action", "attackBonus": 0,
             "damage": [{"dice": "1d8+3", "type": "slashing"}, {"dice": "1d6", "type": "fire"}]}
        ]
    })
}

fn goblin(hp: i64) -> Value {
    json!({
        "name": "Goblin",
        "attributes": {"hp": {"value": hp, "max": 15}, "ac": 15, "abilities": {"dex": 14}},
        "features": [{"name": "Scimitar", "kind": "action", "attackBonus": 4,
                      "damage": [{"dice": "1d6+2", "type": "slashing"}]}]
    })
}

fn creature(name: &str, dex: i64) -> Value {
    json!({"name": name,
           "attributes": {"hp": {"value": 10, "max": 10}, "ac": 12, "abilities": {"dex": dex}}})
}

/// A session holding `actors` (instance id, document), added in the order given.
fn session(actors: &[(&str, Value)]) -> GameSessionState {
    let mut state = GameSessionState::new(sid(), None);
    for (instance, actor) in actors {
        let seq = state.last_event_sequence.get() + 1;
        let added = event(
            seq,
            "gm",
            "core:session:actor_added",
            json!({"instanceId": instance, "actorId": format!("a-{instance}"), "actor": actor}),
        );
        state.apply(&added).expect("actor added");
    }
    state
}

fn battle() -> GameSessionState {
    session(&[("pc1", pc()), ("goblin1", goblin(15))])
}

fn cmd(name: &str, args: Value) -> Command {
    Command {
        name: name.to_owned(),
        args,
    }
}

fn build(p: &Dnd5e, name: &str, args: Value, view: &GameSessionState) -> EventDraft {
    p.validate(&cmd(name, args.clone()), view)
        .unwrap_or_else(|e| panic!("{name} {args}: {e}"));
    p.build(&cmd(name, args.clone()), view)
        .unwrap_or_else(|e| panic!("{name} {args}: {e}"))
}

/// Commits `draft` as the next event of `state` (as the server would) and returns it.
fn commit(state: &mut GameSessionState, user: &str, draft: &EventDraft) -> GameEvent {
    let e = event(
        state.last_event_sequence.get() + 1,
        user,
        &draft.event_type,
        draft.payload.clone(),
    );
    state
        .apply(&e)
        .unwrap_or_else(|err| panic!("{err}: {}", e.payload));
    e
}

fn at(state: &GameSessionState, who: &str, path: &str) -> Value {
    state.current(&InstanceId::new(who), path).unwrap()
}

fn encounter(state: &GameSessionState, path: &str) -> Value {
    state
        .current(&InstanceId::new(InstanceId::SESSION), path)
        .unwrap()
}

fn invalid(r: Result<EventDraft, PluginError>) -> String {
    match r {
        Err(PluginError::Invalid(m)) => m,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

// ---- attacks ---------------------------------------------------------------------------------

#[test]
fn a_critical_hit_doubles_the_damage_dice_but_not_the_modifier() {
    let mut state = battle();
    // d20 = 20, then the two d6 of the doubled damage: 3 + 5 (+2 once) = 10.
    let p = plugin(&[20, 3, 5]);
    let draft = build(
        &p,
        "attack",
        json!({"attacker": "pc1", "target": "goblin1"}),
        &state,
    );
    let pl = &draft.payload;
    assert_eq!(draft.event_type, "plugin:dnd5e:attack");
    assert_eq!(
        pl["weapon"], "Shortsword",
        "the first feature with an attack"
    );
    assert_eq!(
        pl["attackRoll"],
        json!({"formula": "1d20+4", "dice": [20], "total": 24, "natural": 20})
    );
    assert_eq!(
        (pl["hit"].clone(), pl["critical"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(
        pl["damageRoll"],
        json!({"formula": "2d6+2", "dice": [3, 5], "total": 10})
    );
    assert_eq!(pl["damage"], 10);
    assert_eq!(pl["damageType"], "piercing");
    assert_eq!(pl["target"], json!({"instanceId": "goblin1"}));
    assert_eq!(pl["stateChanges"], json!({HP: {"from": 15, "to": 5}}));
    commit(&mut state, "p1", &draft);
    assert_eq!(at(&state, "goblin1", HP), json!(5));
}

#[test]
fn a_critical_hit_doubles_every_damage_part() {
    let state = battle();
    let p = plugin(&[20, 1, 2, 3, 4]);
    let draft = build(
        &p,
        "attack",
        json!({"attacker": "pc1", "target": "goblin1", "weapon": "flame blade"}),
        &state,
    );
    assert_eq!(
        draft.payload["weapon"], "Flame Blade",
        "found case-insensitively"
    );
    assert_eq!(draft.payload["damageRoll"]["formula"], "2d8+3+2d6");
    assert_eq!(draft.payload["damage"], 1 + 2 + 3 + 3 + 4);
}

#[test]
fn a_natural_one_misses_whatever_the_bonus() {
    let mut state = battle();
    let p = plugin(&[1]);
    let draft = build(
        &p,
        "attack",
        json!({"attacker": "pc1", "target": "goblin1", "weapon": "Giant Club"}),
        &state,
    );
    assert_eq!(draft.payload["attackRoll"]["total"], 101);
    assert_eq!(draft.payload["hit"], false);
    assert!(draft.payload.get("stateChanges").is_none());
    assert!(
        draft.payload.get("damageRoll").is_none(),
        "no damage die rolled"
    );
    commit(&mut state, "p1", &draft);
    assert_eq!(at(&state, "goblin1", HP), json!(15));
}

#[test]
fn a_natural_twenty_hits_armor_class_thirty() {
    let mut state = session(&[("pc1", pc()), ("golem", goblin(15))]);
    state
        .apply(&event(
            3,
            "gm",
            "core:gm_override",
            json!({"finalState": {"golem": {"attributes.ac": 30}}}),
        ))
        .unwrap();
    let p = plugin(&[20, 8, 8, 6, 6]);
    let draft = build(
        &p,
        "attack",
        json!({"attacker": "pc1", "target": "golem", "weapon": "Flame Blade"}),
        &state,
    );
    assert_eq!(draft.payload["targetAc"], 30);
    assert_eq!(
        draft.payload["attackRoll"]["total"], 20,
        "20 + 0 < 30, still a hit"
    );
    assert_eq!(draft.payload["hit"], true);
    assert_eq!(draft.payload["critical"], true);
}

#[test]
fn an_ordinary_attack_needs_the_armor_class() {
    let state = battle();
    let hit = build(
        &plugin(&[11, 4]),
        "attack",
        json!({"attacker": "pc1", "target": "goblin1"}),
        &state,
    );
    assert_eq!(
        (hit.payload["hit"].clone(), hit.payload["critical"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(hit.payload["damageRoll"]["formula"], "1d6+2");
    assert_eq!(hit.payload["damage"], 6);
    let miss = build(
        &plugin(&[10]),
        "attack",
        json!({"attacker": "pc1", "target": "goblin1"}),
        &state,
    );
    assert_eq!(miss.payload["attackRoll"]["total"], 14);
    assert_eq!(miss.payload["hit"], false);
}

#[test]
fn attacks_with_server_rolls_use_them_and_refuse_rolls_of_the_wrong_formula() {
    let state = battle();
    let plan: AttackPlan = plan_attack(
        &state,
        &InstanceId::new("pc1"),
        &InstanceId::new("goblin1"),
        None,
    )
    .unwrap();
    assert_eq!(
        (
            plan.to_hit.as_str(),
            plan.damage.as_str(),
            plan.critical_damage.as_str(),
            plan.target_ac
        ),
        ("1d20+4", "1d6+2", "2d6+2", 15)
    );
    let p = plugin(&[]);
    let draft = build(
        &p,
        "attack",
        json!({"attacker": "pc1", "target": "goblin1",
               "attackRoll": {"rollEventId": id(90), "formula": "1d20+4", "dice": [12], "total": 16},
               "damageRoll": {"rollEventId": id(91), "formula": "1d6+2", "dice": [6], "total": 8}}),
        &state,
    );
    assert_eq!(draft.payload["attackRoll"]["rollEventId"], json!(id(90)));
    assert_eq!(draft.payload["damage"], 8);
    let wrong = p.build(
        &cmd(
            "attack",
            json!({"attacker": "pc1", "target": "goblin1",
                   "attackRoll": {"formula": "1d20+9", "dice": [12], "total": 21}}),
        ),
        &state,
    );
    assert!(invalid(wrong).contains("1d20+4"));
    let forged = p.build(
        &cmd(
            "attack",
            json!({"attacker": "pc1", "target": "goblin1",
                   "attackRoll": {"formula": "1d20+4", "dice": [12], "total": 30}}),
        ),
        &state,
    );
    invalid(forged);
}

#[test]
fn commands_refuse_unknown_actors_weapons_and_bad_amounts() {
    let state = battle();
    let p = plugin(&[]);
    for args in [
        json!({"attacker": "nobody", "target": "goblin1"}),
        json!({"attacker": "pc1", "target": "goblin1", "weapon": "Second Wind"}),
        json!({"attacker": "pc1", "target": "goblin1", "weapon": "Bow"}),
        json!({"attacker": "goblin1"}),
    ] {
        invalid(
            p.validate(&cmd("attack", args), &state)
                .map(|_| EventDraft::new("x", json!(0))),
        );
    }
    invalid(p.build(
        &cmd("damage", json!({"target": "goblin1", "amount": -3})),
        &state,
    ));
    invalid(p.build(&cmd("heal", json!({"target": "goblin1"})), &state));
    assert_eq!(
        p.build(&cmd("fireball", json!({})), &state),
        Err(PluginError::UnknownCommand("fireball".into()))
    );
    assert!(p.handles("end_turn") && !p.handles("fireball"));
    assert!(p.owns("plugin:dnd5e:attack") && !p.owns("plugin:other:attack"));
    assert_eq!(p.name(), "dnd5e");
}

// ---- hit points and conditions ---------------------------------------------------------------

#[test]
fn healing_is_capped_at_maximum_hit_points() {
    let mut state = session(&[("goblin1", goblin(3))]);
    let p = plugin(&[]);
    let draft = build(
        &p,
        "heal",
        json!({"target": "goblin1", "amount": 100}),
        &state,
    );
    assert_eq!(
        draft.payload["stateChanges"],
        json!({HP: {"from": 3, "to": 15}})
    );
    assert_eq!(draft.payload["hpMax"], 15);
    commit(&mut state, "p1", &draft);
    assert_eq!(at(&state, "goblin1", HP), json!(15));
}

#[test]
fn dropping_to_zero_adds_unconscious_in_the_same_event_and_healing_removes_it() {
    let mut state = battle();
    let p = plugin(&[]);
    let prone = build(
        &p,
        "condition",
        json!({"target": "goblin1", "condition": "Prone", "op": "add"}),
        &state,
    );
    commit(&mut state, "p1", &prone);
    assert_eq!(at(&state, "goblin1", CONDITIONS), json!(["prone"]));

    let draft = build(
        &p,
        "damage",
        json!({"target": "goblin1", "amount": 20, "damageType": "fire"}),
        &state,
    );
    assert_eq!(
        draft.payload["stateChanges"],
        json!({HP: {"from": 15, "to": 0},
               CONDITIONS: {"from": ["prone"], "to": ["prone", "unconscious"]}})
    );
    assert_eq!(draft.payload["unconscious"], true);
    let committed = commit(&mut state, "p1", &draft);
    assert_eq!(at(&state, "goblin1", HP), json!(0), "never below 0");
    assert_eq!(
        at(&state, "goblin1", CONDITIONS),
        json!(["prone", "unconscious"])
    );
    let actor = &state.active_actors[&InstanceId::new("goblin1")];
    assert_eq!(actor.overrides[HP].event_id, committed.id);
    assert_eq!(
        actor.overrides[CONDITIONS].event_id, committed.id,
        "one event"
    );

    // More damage at 0: no second unconscious.
    let more = build(
        &p,
        "damage",
        json!({"target": "goblin1", "amount": 4}),
        &state,
    );
    assert_eq!(
        more.payload["stateChanges"],
        json!({HP: {"from": 0, "to": 0}})
    );

    let healed = build(
        &p,
        "heal",
        json!({"target": "goblin1", "amount": 4}),
        &state,
    );
    assert_eq!(
        healed.payload["stateChanges"],
        json!({HP: {"from": 0, "to": 4},
               CONDITIONS: {"from": ["prone", "unconscious"], "to": ["prone"]}})
    );
    commit(&mut state, "p1", &healed);
    assert_eq!(at(&state, "goblin1", CONDITIONS), json!(["prone"]));
}

#[test]
fn conditions_are_validated_and_an_idempotent_add_is_refused() {
    let mut state = battle();
    let p = plugin(&[]);
    let add = build(
        &p,
        "condition",
        json!({"target": "pc1", "condition": "poisoned", "op": "add"}),
        &state,
    );
    assert_eq!(
        add.payload["stateChanges"],
        json!({CONDITIONS: {"from": null, "to": ["poisoned"]}}),
        "missing conditions are compared as null, the server's current value"
    );
    commit(&mut state, "p1", &add);
    let again = p.build(
        &cmd(
            "condition",
            json!({"target": "pc1", "condition": "Poisoned", "op": "add"}),
        ),
        &state,
    );
    assert!(invalid(again).contains("already poisoned"));
    invalid(p.build(
        &cmd(
            "condition",
            json!({"target": "pc1", "condition": "sleepy", "op": "add"}),
        ),
        &state,
    ));
    invalid(p.build(
        &cmd(
            "condition",
            json!({"target": "pc1", "condition": "prone", "op": "toggle"}),
        ),
        &state,
    ));
    let remove = build(
        &p,
        "condition",
        json!({"target": "pc1", "condition": "poisoned", "op": "remove"}),
        &state,
    );
    commit(&mut state, "p1", &remove);
    assert_eq!(at(&state, "pc1", CONDITIONS), json!([]));
}

// ---- initiative and turns --------------------------------------------------------------------

fn roll_ref(formula: &str, face: u32, total: i64) -> Value {
    json!({"formula": formula, "dice": [face], "total": total})
}

#[test]
fn initiative_orders_by_total_then_dex_then_a_stored_tiebreak() {
    let actors = [
        ("alpha", creature("Alpha", 14)),
        ("bravo", creature("Bravo", 14)),
        ("charlie", creature("Charlie", 10)),
        ("delta", creature("Delta", 18)),
    ];
    let rolls = json!({
        "alpha": roll_ref("1d20+2", 13, 15),
        "bravo": roll_ref("1d20+2", 13, 15),
        "charlie": roll_ref("1d20", 15, 15),
        "delta": roll_ref("1d20+4", 8, 12),
    });
    assert_eq!(
        initiative_formula(&session(&actors), &InstanceId::new("delta")).unwrap(),
        "1d20+4"
    );
    let mut state = session(&actors);
    let draft = build(&plugin(&[]), "initiative", json!({"rolls": rolls}), &state);
    let order = draft.payload["stateChanges"]["encounter.initiative"]["to"].clone();
    let ids: Vec<&str> = order
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["instanceId"].as_str().unwrap())
        .collect();
    // Alpha and Bravo tie on total and dex: the higher stored tiebreak goes first.
    let tb = |i: usize| order[i]["tiebreak"].as_u64().unwrap();
    assert_eq!(&ids[2..], &["charlie", "delta"]);
    assert!(tb(0) > tb(1), "{order}");
    assert!(matches!(ids[..2], ["alpha", "bravo"] | ["bravo", "alpha"]));
    assert_eq!(order[0]["total"], 15);
    assert_eq!(order[2]["dex"], 10);

    commit(&mut state, "gm", &draft);
    assert_eq!(encounter(&state, "encounter.active"), json!(true));
    assert_eq!(encounter(&state, "encounter.round"), json!(1));
    assert_eq!(encounter(&state, "encounter.currentTurn"), json!(0));
    assert_eq!(encounter(&state, "encounter.initiative"), order);

    // The same actors added in another order give the same event, byte for byte.
    let mut reversed = actors.clone();
    reversed.reverse();
    let again = build(
        &plugin(&[]),
        "initiative",
        json!({"rolls": rolls}),
        &session(&reversed),
    );
    assert_eq!(again, draft);
}

#[test]
fn locally_rolled_initiative_does_not_depend_on_the_order_actors_joined() {
    let actors = [
        ("alpha", creature("Alpha", 12)),
        ("bravo", creature("Bravo", 12)),
        ("charlie", creature("Charlie", 12)),
    ];
    let mut reversed = actors.clone();
    reversed.reverse();
    // Every creature rolls 10: all tie on total and dex.
    let a = build(
        &plugin(&[10, 10, 10]),
        "initiative",
        json!({}),
        &session(&actors),
    );
    let b = build(
        &plugin(&[10, 10, 10]),
        "initiative",
        json!({}),
        &session(&reversed),
    );
    assert_eq!(a, b);
    let order = &a.payload["stateChanges"]["encounter.initiative"]["to"];
    let tiebreaks: Vec<u64> = order
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["tiebreak"].as_u64().unwrap())
        .collect();
    assert!(tiebreaks.windows(2).all(|w| w[0] > w[1]), "{order}");
}

#[test]
fn ending_the_last_turn_starts_the_next_round() {
    let mut state = session(&[
        ("a", creature("A", 10)),
        ("b", creature("B", 12)),
        ("c", creature("C", 14)),
    ]);
    let p = plugin(&[5, 6, 7]);
    invalid(p.build(&cmd("end_turn", json!({})), &state));
    invalid(p.build(&cmd("next_round", json!({})), &state));
    let init = build(&p, "initiative", json!({}), &state);
    commit(&mut state, "gm", &init);
    let mut turns = Vec::new();
    for _ in 0..4 {
        let draft = build(&p, "end_turn", json!({}), &state);
        commit(&mut state, "gm", &draft);
        turns.push((
            encounter(&state, "encounter.round"),
            encounter(&state, "encounter.currentTurn"),
            draft.payload["newRound"].clone(),
        ));
    }
    assert_eq!(
        turns,
        vec![
            (json!(1), json!(1), json!(false)),
            (json!(1), json!(2), json!(false)),
            (json!(2), json!(0), json!(true)),
            (json!(2), json!(1), json!(false)),
        ]
    );
    let wrap = build(&p, "end_turn", json!({}), &state);
    assert_eq!(
        wrap.payload["next"],
        encounter(&state, "encounter.initiative")[2]["instanceId"]
    );
    let round = build(&p, "next_round", json!({}), &state);
    assert_eq!(
        round.payload["stateChanges"],
        json!({"encounter.round": {"op": "inc", "by": 1},
               "encounter.currentTurn": {"from": 1, "to": 0}})
    );
    commit(&mut state, "gm", &round);
    assert_eq!(encounter(&state, "encounter.round"), json!(3));
    assert_eq!(encounter(&state, "encounter.currentTurn"), json!(0));
}

// ---- rebase and escalation -------------------------------------------------------------------

fn conflict(pairs: &[(&str, Value)]) -> ConflictInfo {
    ConflictInfo {
        current: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    }
}

#[test]
fn the_loser_of_a_double_attack_is_rebased_on_the_current_hit_points() {
    let mut server = battle();
    let seen = server.clone();
    // Two players attack the 15-HP goblin on the same screen: 8 and 5 damage, both from 15.
    let first = build(
        &plugin(&[15, 6]),
        "attack",
        json!({"attacker": "pc1", "target": "goblin1"}),
        &seen,
    );
    let second = build(
        &plugin(&[15, 3]),
        "attack",
        json!({"attacker": "pc1", "target": "goblin1"}),
        &seen,
    );
    assert_eq!(
        first.payload["stateChanges"][HP],
        json!({"from": 15, "to": 7})
    );
    assert_eq!(
        second.payload["stateChanges"][HP],
        json!({"from": 15, "to": 10})
    );
    commit(&mut server, "p1", &first);
    let refused = event(
        server.last_event_sequence.get() + 1,
        "p2",
        &second.event_type,
        second.payload.clone(),
    );
    let Err(dlab_core::state::ApplyError::Conflict { current }) = server.check(&refused) else {
        panic!("the second attack must conflict");
    };
    let Rebase::Resubmit(rebased) = plugin(&[]).rebase(&second, &ConflictInfo { current }, &seen)
    else {
        panic!("an attack is rebased");
    };
    assert_eq!(
        rebased.payload["stateChanges"],
        json!({HP: {"from": 7, "to": 2}})
    );
    assert_eq!(
        (
            rebased.payload["hpBefore"].clone(),
            rebased.payload["hpAfter"].clone()
        ),
        (json!(7), json!(2))
    );
    assert_eq!(
        rebased.payload["damageRoll"], second.payload["damageRoll"],
        "same rolls"
    );
    commit(&mut server, "p2", &rebased);
    assert_eq!(at(&server, "goblin1", HP), json!(2));
}

#[test]
fn a_rebased_killing_blow_adds_unconscious_with_the_current_conditions() {
    let seen = battle();
    let draft = build(
        &plugin(&[]),
        "damage",
        json!({"target": "goblin1", "amount": 5}),
        &seen,
    );
    // Meanwhile someone brought it to 3 HP and knocked it prone; `current` names only HP.
    let Rebase::Resubmit(rebased) = plugin(&[]).rebase(&draft, &conflict(&[(HP, json!(3))]), &seen)
    else {
        panic!("damage is rebased");
    };
    assert_eq!(
        rebased.payload["stateChanges"],
        json!({HP: {"from": 3, "to": 0}, CONDITIONS: {"from": null, "to": ["unconscious"]}})
    );
    // If the conditions are stale too, the next conflict names them and the rebase uses them.
    let Rebase::Resubmit(again) = plugin(&[]).rebase(
        &rebased,
        &conflict(&[(HP, json!(3)), (CONDITIONS, json!(["prone"]))]),
        &seen,
    ) else {
        panic!("rebased again");
    };
    assert_eq!(
        again.payload["stateChanges"][CONDITIONS],
        json!({"from": ["prone"], "to": ["prone", "unconscious"]})
    );
    let heal = build(
        &plugin(&[]),
        "heal",
        json!({"target": "goblin1", "amount": 4}),
        &seen,
    );
    let Rebase::Resubmit(healed) = plugin(&[]).rebase(&heal, &conflict(&[(HP, json!(13))]), &seen)
    else {
        panic!("healing is rebased");
    };
    assert_eq!(
        healed.payload["stateChanges"][HP],
        json!({"from": 13, "to": 15}),
        "capped"
    );
}

#[test]
fn a_conflicting_condition_change_goes_to_the_gm_unless_it_already_happened() {
    let seen = battle();
    let p = plugin(&[]);
    let add = build(
        &p,
        "condition",
        json!({"target": "goblin1", "condition": "prone", "op": "add"}),
        &seen,
    );
    match p.rebase(&add, &conflict(&[(CONDITIONS, json!(["grappled"]))]), &seen) {
        Rebase::Escalate(reason) => {
            assert!(
                reason.contains("goblin1") && reason.contains("prone"),
                "{reason}"
            );
        }
        other => panic!("expected an escalation, got {other:?}"),
    }
    assert_eq!(
        p.rebase(
            &add,
            &conflict(&[(CONDITIONS, json!(["grappled", "prone"]))]),
            &seen
        ),
        Rebase::Report,
        "someone else already knocked it prone"
    );
}

#[test]
fn stale_turn_changes_and_initiative_are_not_rebased() {
    let mut state = session(&[("a", creature("A", 10)), ("b", creature("B", 12))]);
    let p = plugin(&[5, 6]);
    let init = build(&p, "initiative", json!({}), &state);
    commit(&mut state, "gm", &init);
    let stale = conflict(&[("encounter.currentTurn", json!(1))]);
    for name in ["end_turn", "next_round"] {
        let draft = build(&p, name, json!({}), &state);
        assert_eq!(p.rebase(&draft, &stale, &state), Rebase::Report, "{name}");
    }
    assert_eq!(p.rebase(&init, &stale, &state), Rebase::Report);
}

#[test]
fn the_session_client_resubmits_the_rebased_damage_and_escalates_conditions() {
    let log = vec![common::goblin_added(1)];
    let mut c = live_client(20, &log, 0);
    let mut registry = Registry::new();
    registry.register(Box::new(plugin(&[])));
    c.set_rebaser(Box::new(registry));
    let p = plugin(&[]);

    let damage = p
        .build(
            &cmd("damage", json!({"target": "goblin1", "amount": 5})),
            c.view(),
        )
        .unwrap();
    assert_eq!(
        damage.payload["stateChanges"][HP],
        json!({"from": 15, "to": 10})
    );
    let (first, _) = c.submit(damage, 100).unwrap();
    let out = c.on_frame(
        ServerFrame::EventError {
            temp_id: first.clone(),
            code: ErrorCode::Conflict,
            message: "state changed".into(),
            current: Some([(HP.to_owned(), json!(7))].into()),
            retry_after_ms: None,
            request_id: None,
        },
        110,
    );
    let resubmitted = notes(&out)
        .into_iter()
        .find_map(|n| match n {
            Notification::Rebased {
                rejected,
                resubmitted,
            } if *rejected == first => Some(resubmitted.clone()),
            _ => None,
        })
        .expect("rebased");
    assert_eq!(submitted_ids(&out), vec![resubmitted.0.clone()]);
    let pending = c.pending().next().unwrap();
    assert_eq!(
        pending.draft.payload["stateChanges"][HP],
        json!({"from": 7, "to": 2})
    );

    let cond = p
        .build(
            &cmd(
                "condition",
                json!({"target": "goblin1", "condition": "prone", "op": "add"}),
            ),
            c.view(),
        )
        .unwrap();
    let (second, _) = c.submit(cond.clone(), 200).unwrap();
    let out = c.on_frame(
        ServerFrame::EventError {
            temp_id: second.clone(),
            code: ErrorCode::Conflict,
            message: "state changed".into(),
            current: Some([(CONDITIONS.to_owned(), json!(["poisoned"]))].into()),
            retry_after_ms: None,
            request_id: None,
        },
        210,
    );
    assert!(notes(&out).iter().any(|n| matches!(n,
        Notification::Escalate { id, draft, .. } if *id == second && *draft == cond)));
    assert!(submitted_ids(&out).is_empty());
    // The helper the existing scenarios use still builds plain CAS payloads.
    assert_eq!(cas_payload(&json!(1), 0)["stateChanges"][HP]["to"], 0);
}

// ---- verification ----------------------------------------------------------------------------

fn roll_event(seq: u64, user: &str, formula: &str, faces: &[(u32, u32)], total: i64) -> GameEvent {
    let dice: Vec<Value> = faces
        .iter()
        .map(|(sides, value)| json!({"sides": sides, "value": value, "kept": true}))
        .collect();
    event(
        seq,
        user,
        "core:dice:roll",
        json!({"formula": formula, "purpose": "attack", "result": {"dice": dice, "total": total}}),
    )
}

/// An attack by p1 using the server rolls of sequences 1 (d20 = 12 → 16) and 2 (d6 = 6 → 8).
fn served_attack() -> EventDraft {
    build(
        &plugin(&[]),
        "attack",
        json!({"attacker": "pc1", "target": "goblin1",
               "attackRoll": {"rollEventId": id(1), "formula": "1d20+4", "dice": [12], "total": 16},
               "damageRoll": {"rollEventId": id(2), "formula": "1d6+2", "dice": [6], "total": 8}}),
        &battle(),
    )
}

fn verifier_with_rolls(attack_user: &str, damage_user: &str) -> Verifier {
    let mut v = Verifier::new(false);
    assert_eq!(
        v.observe(&roll_event(1, attack_user, "1d20+4", &[(20, 12)], 16)),
        None
    );
    assert_eq!(
        v.observe(&roll_event(2, damage_user, "1d6+2", &[(6, 6)], 8)),
        None
    );
    v
}

fn unverified(v: Option<Verdict>) -> String {
    match v {
        Some(Verdict::Unverified(reason)) => reason,
        other => panic!("expected Unverified, got {other:?}"),
    }
}

#[test]
fn an_attack_on_server_rolls_is_verified_and_its_verdict_kept() {
    let mut v = verifier_with_rolls("p1", "p1");
    let attack = event(3, "p1", dnd5e::ATTACK, served_attack().payload);
    assert_eq!(v.observe(&attack), Some(Verdict::Verified));
    assert_eq!(v.verdict(&attack.id), Some(&Verdict::Verified));
    assert_eq!(
        v.observe(&attack),
        Some(Verdict::Verified),
        "a duplicate keeps its verdict"
    );
    assert_eq!(
        v.observe(&event(4, "p1", "core:chat", json!({"text": "hi"}))),
        None
    );
}

#[test]
fn forged_numbers_are_unverified() {
    // The d20 showed 12; the event claims a natural 20 and a critical.
    let mut forged = served_attack().payload;
    forged["attackRoll"] = json!({"rollEventId": id(1), "formula": "1d20+4", "dice": [20], "total": 24, "natural": 20});
    forged["critical"] = json!(true);
    let reason =
        unverified(verifier_with_rolls("p1", "p1").observe(&event(3, "p1", dnd5e::ATTACK, forged)));
    assert!(reason.contains("showed [12]"), "{reason}");

    // Damage that does not follow from the roll.
    let mut more = served_attack().payload;
    more["damage"] = json!(12);
    unverified(verifier_with_rolls("p1", "p1").observe(&event(3, "p1", dnd5e::ATTACK, more)));

    // Right rolls, wrong hit points.
    let mut hp = served_attack().payload;
    hp["hpAfter"] = json!(1);
    hp["stateChanges"][HP]["to"] = json!(1);
    unverified(verifier_with_rolls("p1", "p1").observe(&event(3, "p1", dnd5e::ATTACK, hp)));

    // A miss claimed as a hit: 16 against AC 20.
    let mut ac = served_attack().payload;
    ac["targetAc"] = json!(20);
    unverified(verifier_with_rolls("p1", "p1").observe(&event(3, "p1", dnd5e::ATTACK, ac)));

    // A local roll whose faces do not add up.
    let mut local = build(
        &plugin(&[15, 6]),
        "attack",
        json!({"attacker": "pc1", "target": "goblin1"}),
        &battle(),
    )
    .payload;
    local["attackRoll"]["total"] = json!(25);
    unverified(Verifier::new(false).observe(&event(1, "p1", dnd5e::ATTACK, local)));
}

#[test]
fn a_roll_of_another_user_is_unverified() {
    let mut v = verifier_with_rolls("p1", "p2");
    let reason = unverified(v.observe(&event(3, "p1", dnd5e::ATTACK, served_attack().payload)));
    assert!(reason.contains("not by the sender p1"), "{reason}");
}

#[test]
fn a_reused_roll_is_unverified() {
    let mut v = verifier_with_rolls("p1", "p1");
    assert_eq!(
        v.observe(&event(3, "p1", dnd5e::ATTACK, served_attack().payload)),
        Some(Verdict::Verified)
    );
    let mut state = battle();
    commit(&mut state, "p1", &served_attack());
    let again = build(
        &plugin(&[]),
        "damage",
        json!({"target": "goblin1", "amount": 8, "rollEventId": id(2)}),
        &state,
    );
    let reason = unverified(v.observe(&event(4, "p1", dnd5e::DAMAGE, again.payload)));
    assert!(reason.contains("already used"), "{reason}");
}

#[test]
fn a_missing_roll_and_a_roll_older_than_what_was_seen_are_unverified() {
    let draft = build(
        &plugin(&[]),
        "damage",
        json!({"target": "goblin1", "amount": 8, "rollEventId": id(77)}),
        &battle(),
    );
    let mut v = Verifier::new(false);
    v.observe(&event(1, "gm", "core:chat", json!({"text": "start"})));
    let reason = unverified(v.observe(&event(2, "p1", dnd5e::DAMAGE, draft.payload.clone())));
    assert!(reason.contains("does not exist"), "{reason}");

    // Joined after a snapshot at 40: the roll may be in the part this client never saw.
    let mut late = Verifier::new(false);
    let reason = unverified(late.observe(&event(41, "p1", dnd5e::DAMAGE, draft.payload)));
    assert!(reason.contains("older than sequence 41"), "{reason}");
}

#[test]
fn damage_and_heal_amounts_must_be_the_rolled_totals() {
    let mut v = Verifier::new(false);
    v.observe(&roll_event(1, "p1", "2d4+2", &[(4, 1), (4, 3)], 6));
    let heal = build(
        &plugin(&[]),
        "heal",
        json!({"target": "goblin1", "amount": 7, "rollEventId": id(1)}),
        &session(&[("goblin1", goblin(3))]),
    );
    let reason = unverified(v.observe(&event(2, "p1", dnd5e::HEAL, heal.payload)));
    assert!(reason.contains("not the total 6"), "{reason}");
    v.observe(&roll_event(3, "p1", "2d4+2", &[(4, 1), (4, 3)], 6));
    let heal = build(
        &plugin(&[]),
        "heal",
        json!({"target": "goblin1", "amount": 6, "rollEventId": id(3)}),
        &session(&[("goblin1", goblin(3))]),
    );
    assert_eq!(
        v.observe(&event(4, "p1", dnd5e::HEAL, heal.payload)),
        Some(Verdict::Verified)
    );
}

#[test]
fn required_server_rolls_turn_local_rolls_unverified() {
    let local = build(
        &plugin(&[15, 6]),
        "attack",
        json!({"attacker": "pc1", "target": "goblin1"}),
        &battle(),
    );
    let mut v = Verifier::new(false);
    assert!(!v.require_server_rolls());
    assert_eq!(
        v.observe(&event(1, "p1", dnd5e::ATTACK, local.payload.clone())),
        Some(Verdict::Local)
    );
    v.observe(&event(
        2,
        "gm",
        "core:gm_override",
        json!({"finalState": {"$session": {"settings.requireServerRolls": true}}}),
    ));
    assert!(v.require_server_rolls());
    assert_eq!(
        v.observe(&event(3, "p1", dnd5e::ATTACK, local.payload.clone())),
        Some(Verdict::Unverified("server rolls required".into()))
    );
    // Events without dice are not affected.
    let cond = build(
        &plugin(&[]),
        "condition",
        json!({"target": "goblin1", "condition": "prone", "op": "add"}),
        &battle(),
    );
    assert_eq!(
        v.observe(&event(4, "p1", dnd5e::CONDITION, cond.payload)),
        Some(Verdict::Verified)
    );
    let mut strict = Verifier::new(true);
    assert_eq!(
        strict.observe(&event(1, "p1", dnd5e::ATTACK, local.payload)),
        Some(Verdict::Unverified("server rolls required".into()))
    );
}

#[test]
fn initiative_on_server_rolls_is_verified_and_a_reordered_one_is_not() {
    let actors = [
        ("alpha", creature("Alpha", 14)),
        ("bravo", creature("Bravo", 8)),
    ];
    let mut v = Verifier::new(false);
    v.observe(&roll_event(1, "gm", "1d20+2", &[(20, 5)], 7));
    v.observe(&roll_event(2, "gm", "1d20-1", &[(20, 9)], 8));
    let state = session(&actors);
    let draft = build(
        &plugin(&[]),
        "initiative",
        json!({"rolls": {
            "alpha": {"rollEventId": id(1), "formula": "1d20+2", "dice": [5], "total": 7},
            "bravo": {"rollEventId": id(2), "formula": "1d20-1", "dice": [9], "total": 8}}}),
        &state,
    );
    let mut swapped = draft.payload.clone();
    let order = swapped["stateChanges"]["encounter.initiative"]["to"]
        .as_array_mut()
        .unwrap();
    order.swap(0, 1);
    assert_eq!(
        v.clone()
            .observe(&event(3, "gm", dnd5e::INITIATIVE, draft.payload)),
        Some(Verdict::Verified)
    );
    unverified(v.observe(&event(3, "gm", dnd5e::INITIATIVE, swapped)));
}

#[test]
fn forged_condition_changes_are_unverified() {
    let draft = build(
        &plugin(&[]),
        "condition",
        json!({"target": "goblin1", "condition": "prone", "op": "add"}),
        &battle(),
    );
    let mut forged = draft.payload.clone();
    forged["stateChanges"][CONDITIONS]["to"] = json!(["prone", "invisible"]);
    unverified(Verifier::new(false).observe(&event(1, "p1", dnd5e::CONDITION, forged)));
}

#[test]
fn roll_refs_round_trip_through_json() {
    let r = RollRef::from_json(
        &json!({"rollEventId": id(5), "formula": "2d6+2", "dice": [3, 4], "total": 9}),
    )
    .unwrap();
    assert_eq!(r.roll_event_id, Some(id(5)));
    assert_eq!(RollRef::from_json(&r.to_json()).unwrap(), r);
    assert!(RollRef::from_json(&json!({"formula": "1d20"})).is_err());
}

// ---- property --------------------------------------------------------------------------------

proptest! {
    /// Any sequence of damage and healing, built by the plugin and applied by the projection,
    /// keeps hit points within [0, max], and unconscious exactly when they are 0.
    #[test]
    fn hit_points_stay_within_zero_and_max(
        max in 1i64..60,
        steps in prop::collection::vec((any::<bool>(), 0i64..80), 1..30),
    ) {
        let mut state = session(&[("goblin1", json!({
            "name": "Goblin", "attributes": {"hp": {"value": max, "max": max}, "ac": 15}}))]);
        let p = plugin(&[]);
        for (heal, amount) in steps {
            let name = if heal { "heal" } else { "damage" };
            let draft = build(&p, name, json!({"target": "goblin1", "amount": amount}), &state);
            let e = commit(&mut state, "p1", &draft);
            prop_assert_eq!(Verifier::new(false).observe(&e), Some(Verdict::Local));
            let hp = at(&state, "goblin1", HP).as_i64().unwrap();
            prop_assert!((0..=max).contains(&hp), "hp {} outside [0, {}]", hp, max);
            let conditions = at(&state, "goblin1", CONDITIONS);
            let out = conditions.as_array().is_some_and(|c| c.contains(&json!("unconscious")));
            prop_assert_eq!(out, hp == 0, "conditions {} at {} HP", conditions, hp);
        }
    }
}
