//! The browser mapping, natively: a scripted session through [`WebSession`]'s string API (the
//! same calls `wasm.rs` forwards), and the JSON of every output, notification and summary.

use dlab_core::codes::ErrorCode;
use dlab_core::ids::{EventId, Sequence};
use dlab_core::protocol::ServerFrame;

use super::*;
use crate::plugin::EventDraft;
use crate::session::Rejection;

const SESSION: &str = "s1";
const ME: &str = "alice";

fn id(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

fn event(sequence: u64, user: &str, event_type: &str, payload: Value) -> Value {
    json!({
        "id": id(sequence), "sequence": sequence, "timestamp": 1_000 + sequence,
        "userId": user, "sessionId": SESSION, "type": event_type, "payload": payload,
    })
}

fn game_event(v: Value) -> GameEvent {
    serde_json::from_value(v).expect("a valid event")
}

fn ogre_added() -> Value {
    event(
        1,
        "gm",
        ACTOR_ADDED,
        json!({"instanceId": "o1", "actorId": "ogre",
               "actor": {"name": "Ogre", "attributes": {"hp": {"value": 15, "max": 15}, "ac": 11}}}),
    )
}

fn goblin_added(sequence: u64) -> Value {
    event(
        sequence,
        "gm",
        ACTOR_ADDED,
        json!({"instanceId": "g1", "actorId": "goblin",
               "actor": {"name": "Goblin 1", "attributes": {"hp": {"value": 7, "max": 7}, "ac": 15,
                         "abilities": {"dex": 14}},
                         "features": [{"name": "Scimitar", "kind": "action", "attackBonus": 4,
                                       "damage": [{"dice": "1d6+2", "type": "slashing"}]},
                                      {"name": "Nimble Escape", "kind": "bonus"}]}}),
    )
}

fn roll(sequence: u64, user: &str, formula: &str, faces: &[u32], total: i64) -> Value {
    let sides: u32 = if formula.starts_with("1d20") { 20 } else { 6 };
    let dice: Vec<Value> = faces
        .iter()
        .map(|f| json!({"sides": sides, "value": f, "kept": true}))
        .collect();
    event(
        sequence,
        user,
        DICE_ROLL_TYPE,
        json!({"formula": formula, "purpose": "attack", "result": {"dice": dice, "total": total}}),
    )
}

fn state_with_ogre() -> String {
    let mut state = GameSessionState::new(SessionId::new(SESSION), None);
    state.apply(&game_event(ogre_added())).expect("applies");
    serde_json::to_string(&state).expect("serializes")
}

fn list(text: &str) -> Vec<Value> {
    serde_json::from_str::<Vec<Value>>(text).expect("outputs are a JSON array")
}

fn notifications(outputs: &[Value]) -> Vec<Value> {
    outputs
        .iter()
        .filter(|o| o["kind"] == "notify")
        .map(|o| o["notification"].clone())
        .collect()
}

fn kinds(outputs: &[Value]) -> Vec<String> {
    notifications(outputs)
        .iter()
        .map(|n| n["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn sent(outputs: &[Value]) -> Vec<Value> {
    outputs
        .iter()
        .filter(|o| o["kind"] == "send")
        .map(|o| serde_json::from_str(o["text"].as_str().expect("text")).expect("a JSON frame"))
        .collect()
}

fn frame(name: &str, data: Value) -> String {
    json!({"event": name, "data": data}).to_string()
}

fn actor<'a>(vm: &'a Value, instance: &str) -> &'a Value {
    vm["actors"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["instanceId"] == instance))
        .unwrap_or_else(|| panic!("no actor {instance} in {vm}"))
}

fn model(s: &WebSession) -> Value {
    serde_json::from_str(&s.snapshot()).expect("the ViewModel is JSON")
}

/// A session that loaded the ogre's state, connected and caught up on the goblin and two
/// server rolls of ours (sequences 2..=4).
fn live_session() -> WebSession {
    let mut s = WebSession::new(SESSION, ME, 42);
    s.load_state(&state_with_ogre()).expect("the state loads");

    let out = list(&s.start(1_000));
    assert!(out.iter().any(|o| o["kind"] == "connect"), "{out:?}");

    let out = list(&s.on_connected(1_010));
    let subscribe = sent(&out);
    assert_eq!(subscribe.len(), 1, "{out:?}");
    assert_eq!(subscribe[0]["action"], "subscribe");
    assert_eq!(subscribe[0]["sessionId"], SESSION);
    assert_eq!(subscribe[0]["since"], 1, "from the loaded state's sequence");
    let request = subscribe[0]["requestId"].clone();
    assert!(
        notifications(&out)
            .iter()
            .any(|n| n["kind"] == "status" && n["state"] == "connected"),
        "{out:?}"
    );

    let out = list(&s.on_text(
        &frame(
            "session:subscribed",
            json!({"sessionId": SESSION, "head": 4, "since": 1, "floor": 1, "requestId": request}),
        ),
        1_020,
    ));
    assert!(
        !kinds(&out).contains(&"live".to_owned()),
        "not caught up yet"
    );
    let batch = json!({"sessionId": SESSION, "isLast": true, "complete": true,
        "requestId": request,
        "events": [goblin_added(2), roll(3, ME, "1d20+4", &[15], 19), roll(4, ME, "1d6+2", &[5], 7)]});
    let out = list(&s.on_text(&frame("events:batch", batch), 1_030));
    let n = notifications(&out);
    let applied = n.iter().find(|n| n["kind"] == "applied").expect("applied");
    let events = applied["events"].as_array().expect("events");
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["summary"], "Goblin 1 joins");
    assert_eq!(events[1]["summary"], "rolled 1d20+4 = 19");
    assert_eq!(events[1]["verdict"], Value::Null, "rolls are not judged");
    assert!(kinds(&out).contains(&"live".to_owned()), "{out:?}");
    assert!(kinds(&out).contains(&"viewChanged".to_owned()));
    s
}

#[test]
fn a_scripted_session_goes_live_submits_confirms_and_rolls_back() {
    let mut s = live_session();
    let vm = model(&s);
    assert_eq!(vm["sessionId"], SESSION);
    assert_eq!(vm["status"]["state"], "connected");
    assert_eq!(vm["status"]["pending"], 0);
    assert_eq!(vm["live"], true);
    assert_eq!(vm["lastApplied"], 4);
    assert_eq!(vm["requireServerRolls"], false);
    let goblin = actor(&vm, "g1");
    assert_eq!(goblin["name"], "Goblin 1");
    assert_eq!(
        (goblin["hp"].clone(), goblin["hpMax"].clone()),
        (json!(7), json!(7))
    );
    assert_eq!(goblin["ac"], 15);
    assert_eq!(goblin["conditions"], json!([]));
    assert_eq!(goblin["pending"], false);
    assert_eq!(
        goblin["features"],
        json!([{"name": "Scimitar", "attackBonus": 4, "damage": "1d6+2",
                "damageTypes": ["slashing"]}]),
        "only features with an attack bonus"
    );
    let log: Vec<u64> = vm["log"]
        .as_array()
        .expect("log")
        .iter()
        .map(|e| e["sequence"].as_u64().expect("sequence"))
        .collect();
    assert_eq!(log, [4, 3, 2], "newest first");

    // The trusted attack: plan, then the attack naming our server rolls.
    let plan: Value =
        serde_json::from_str(&s.plan_attack("g1", "o1", None).expect("a plan")).expect("JSON");
    assert_eq!(plan["toHit"], "1d20+4");
    assert_eq!(plan["damage"], "1d6+2");
    assert_eq!(plan["criticalDamage"], "2d6+2");
    assert_eq!(plan["targetAc"], 11);
    assert_eq!(plan["weapon"], "Scimitar");
    let args = json!({"attacker": "g1", "target": "o1", "weapon": "Scimitar",
        "attackRoll": {"rollEventId": id(3), "formula": "1d20+4", "dice": [15], "total": 19},
        "damageRoll": {"rollEventId": id(4), "formula": "1d6+2", "dice": [5], "total": 7}});
    let answer: Value = serde_json::from_str(
        &s.command("attack", &args.to_string(), 2_000)
            .expect("built"),
    )
    .expect("JSON");
    let attack_id = answer["id"].as_str().expect("an id").to_owned();
    let out = answer["outputs"].as_array().expect("outputs").clone();
    let submits = sent(&out);
    assert_eq!(submits.len(), 1, "live: it goes out at once");
    assert_eq!(submits[0]["action"], "submit");
    assert_eq!(submits[0]["event"]["id"], attack_id);
    assert_eq!(submits[0]["event"]["type"], dnd5e::ATTACK);
    let vm = model(&s);
    let ogre = actor(&vm, "o1");
    assert_eq!(ogre["hp"], 8, "optimistic");
    assert_eq!(
        ogre["pending"], true,
        "the view differs from the confirmed state"
    );
    assert_eq!(actor(&vm, "g1")["pending"], false);
    assert_eq!(
        vm["pending"],
        json!([{"id": attack_id, "type": dnd5e::ATTACK, "status": "sent"}])
    );
    assert_eq!(vm["status"]["pending"], 1);

    let out = list(&s.on_text(
        &frame(
            "event:confirmed",
            json!({"tempId": attack_id, "eventId": attack_id, "sequence": 5,
                   "timestamp": 2_100, "duplicate": false}),
        ),
        2_100,
    ));
    let n = notifications(&out);
    assert!(
        n.iter().any(|n| n["kind"] == "confirmed"
            && n["id"] == attack_id.as_str()
            && n["sequence"] == 5),
        "{n:?}"
    );
    let applied = n.iter().find(|n| n["kind"] == "applied").expect("applied");
    assert_eq!(
        applied["events"][0]["summary"],
        "Goblin 1 hits Ogre with Scimitar: 7 slashing (15 → 8)"
    );
    assert_eq!(applied["events"][0]["verdict"], "verified");
    let vm = model(&s);
    assert_eq!(actor(&vm, "o1")["hp"], 8);
    assert_eq!(actor(&vm, "o1")["pending"], false, "final");
    assert_eq!(vm["pending"], json!([]));
    assert_eq!(vm["log"][0]["id"], attack_id.as_str());
    assert_eq!(vm["log"][0]["userId"], ME);
    assert_eq!(vm["log"][0]["verdict"], "verified");

    // Damage with local numbers, refused: somebody changed the ogre's hit points meanwhile.
    let answer: Value = serde_json::from_str(
        &s.command(
            "damage",
            &json!({"target": "o1", "amount": 3}).to_string(),
            3_000,
        )
        .expect("built"),
    )
    .expect("JSON");
    let damage_id = answer["id"].as_str().expect("an id").to_owned();
    assert_eq!(actor(&model(&s), "o1")["hp"], 5);
    let out = list(&s.on_text(
        &frame(
            "event:error",
            json!({"tempId": damage_id, "code": "conflict", "message": "stale hit points",
                   "current": {HP_PATH: 6}}),
        ),
        3_100,
    ));
    let n = notifications(&out);
    let rolled_back = n
        .iter()
        .find(|n| n["kind"] == "rolledBack")
        .expect("rolledBack");
    assert_eq!(rolled_back["id"], damage_id.as_str());
    assert_eq!(rolled_back["type"], dnd5e::DAMAGE);
    assert_eq!(rolled_back["code"], "conflict");
    assert_eq!(rolled_back["message"], "stale hit points");
    assert_eq!(rolled_back["current"][HP_PATH], 6);
    let rebased = n.iter().find(|n| n["kind"] == "rebased").expect("rebased");
    assert_eq!(rebased["rejected"], damage_id.as_str());
    let resubmitted = rebased["resubmitted"].as_str().expect("new id").to_owned();
    assert_ne!(resubmitted, damage_id);
    let vm = model(&s);
    assert_eq!(
        actor(&vm, "o1")["hp"],
        8,
        "the rebased draft (from 6) does not apply to our confirmed 8 yet"
    );
    assert_eq!(actor(&vm, "o1")["pending"], false);

    // The change that caused the conflict arrives: Bob's damage, claiming our used roll.
    let bobs = event(
        6,
        "bob",
        dnd5e::DAMAGE,
        json!({"target": {"instanceId": "o1"}, "targetName": "Ogre", "amount": 2,
               "rollEventId": id(4), "hpBefore": 8, "hpAfter": 6,
               "stateChanges": {HP_PATH: {"from": 8, "to": 6}}}),
    );
    let out = list(&s.on_text(&frame("event:applied", bobs), 3_200));
    let applied = notifications(&out)
        .into_iter()
        .find(|n| n["kind"] == "applied")
        .expect("applied");
    assert_eq!(
        applied["events"][0]["summary"],
        "Ogre takes 2 damage (8 → 6)"
    );
    assert_eq!(applied["events"][0]["verdict"], "unverified");
    assert!(
        applied["events"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("bob")),
        "{applied}"
    );
    let vm = model(&s);
    assert_eq!(actor(&vm, "o1")["hp"], 3, "the rebased damage now applies");
    assert_eq!(actor(&vm, "o1")["pending"], true);

    let out = list(&s.on_text(
        &frame(
            "event:confirmed",
            json!({"tempId": resubmitted, "eventId": resubmitted, "sequence": 7,
                   "timestamp": 3_300, "duplicate": false}),
        ),
        3_300,
    ));
    assert!(kinds(&out).contains(&"confirmed".to_owned()));
    let vm = model(&s);
    assert_eq!(actor(&vm, "o1")["hp"], 3);
    assert_eq!(actor(&vm, "o1")["pending"], false);
    let verdicts: Vec<(u64, Value)> = vm["log"]
        .as_array()
        .expect("log")
        .iter()
        .map(|e| (e["sequence"].as_u64().unwrap_or(0), e["verdict"].clone()))
        .collect();
    assert_eq!(
        verdicts,
        [
            (7, json!("local")),
            (6, json!("unverified")),
            (5, json!("verified")),
            (4, Value::Null),
            (3, Value::Null),
            (2, Value::Null),
        ]
    );

    let out = list(&s.stop(4_000));
    assert!(out.iter().any(|o| o["kind"] == "close"));
    assert_eq!(model(&s)["status"]["state"], "offline");
}

#[test]
fn errors_reach_the_browser_with_their_causes() {
    let mut s = live_session();
    let e = s
        .submit("core:chat", "{not json", 5_000)
        .expect_err("bad JSON");
    let message = error_message(&e);
    assert!(
        message.starts_with("the payload is not valid JSON: "),
        "{message}"
    );
    assert!(message.contains("line 1"), "the parser's detail: {message}");

    let e = s
        .submit("core:gm_override", "{}", 5_000)
        .expect_err("GM only");
    assert!(matches!(e, WebError::Submit(_)), "{e:?}");

    let e = s.command("fly", "{}", 5_000).expect_err("unknown");
    assert_eq!(
        error_message(&e),
        "the command was refused: no plugin handles the command \"fly\""
    );
    let e = s
        .plan_attack("g1", "nobody", None)
        .expect_err("no such target");
    assert!(error_message(&e).contains("nobody is not an actor"), "{e}");

    let e = s.load_state(&state_with_ogre()).expect_err("too late");
    assert!(matches!(e, WebError::LoadTooLate));
    let e = s.on_loaded("[]", 5_000).expect_err("not a state");
    assert!(error_message(&e).starts_with("the loaded state is unusable: not a snapshot"));

    let mut fresh = WebSession::new("other", ME, 1);
    let e = fresh
        .load_state(&state_with_ogre())
        .expect_err("another session");
    assert!(
        error_message(&e).contains("loaded for session other"),
        "{e}"
    );
}

#[test]
fn a_chat_submit_is_queued_offline_and_sent_once_live() {
    let mut s = WebSession::new(SESSION, ME, 7);
    let answer: Value =
        serde_json::from_str(&s.submit(CHAT, r#"{"text": "hello"}"#, 10).expect("queued"))
            .expect("JSON");
    assert!(sent(answer["outputs"].as_array().expect("outputs")).is_empty());
    let vm = model(&s);
    assert_eq!(vm["status"]["state"], "offline");
    assert_eq!(vm["pending"][0]["status"], "queued");
    assert!(
        s.load_state(&state_with_ogre()).is_err(),
        "a load would drop the queued chat"
    );
}

#[test]
fn snapshot_required_asks_for_a_load_and_the_loaded_body_resumes() {
    let mut s = WebSession::new(SESSION, ME, 3);
    s.start(0);
    let out = list(&s.on_connected(1));
    let request = sent(&out)[0]["requestId"].clone();
    s.on_text(
        &frame(
            "session:subscribed",
            json!({"sessionId": SESSION, "head": 1, "since": 0, "floor": 1, "requestId": request}),
        ),
        2,
    );
    let out = list(&s.on_text(
        &frame(
            "snapshot:required",
            json!({"sessionId": SESSION, "snapshotSequence": 0, "href": "/sessions/s1",
                   "requestId": request}),
        ),
        2,
    ));
    let http = out.iter().find(|o| o["kind"] == "http").expect("a load");
    assert_eq!(http["href"], "/sessions/s1");
    assert_eq!(http["load"], "snapshot");
    assert_eq!(http["snapshotSequence"], 0);
    let out = list(&s.on_loaded(&state_with_ogre(), 3).expect("loads"));
    assert!(kinds(&out).contains(&"live".to_owned()), "{out:?}");
    assert_eq!(actor(&model(&s), "o1")["hp"], 15);
    assert_eq!(s.next_wake(), Some(60_001), "the heartbeat");
}

#[test]
fn every_output_and_notification_has_its_kind() {
    let state = GameSessionState::new(SessionId::new(SESSION), None);
    let verifier = Verifier::new(false);
    let draft = EventDraft::new("plugin:dnd5e:condition", json!({"x": 1}));
    let eid = EventId::new(id(9));
    let frame: ServerFrame = serde_json::from_value(json!({"event": "presence",
        "data": {"sessionId": SESSION, "userId": "bob", "status": "joined"}}))
    .expect("a frame");
    let cases = [
        (
            Notification::StatusChanged(Status::Reconnecting {
                attempt: 2,
                next_at: 500,
            }),
            json!({"kind": "status", "state": "reconnecting", "attempt": 2, "nextAt": 500}),
        ),
        (Notification::Live, json!({"kind": "live"})),
        (
            Notification::Applied(vec![]),
            json!({"kind": "applied", "events": []}),
        ),
        (Notification::ViewChanged, json!({"kind": "viewChanged"})),
        (
            Notification::Confirmed {
                id: eid.clone(),
                sequence: Sequence(4),
            },
            json!({"kind": "confirmed", "id": id(9), "sequence": 4}),
        ),
        (
            Notification::RolledBack {
                id: eid.clone(),
                draft: draft.clone(),
                rejection: Rejection {
                    code: ErrorCode::Forbidden,
                    message: "no".into(),
                    current: None,
                },
            },
            json!({"kind": "rolledBack", "id": id(9), "type": "plugin:dnd5e:condition",
                   "code": "forbidden", "message": "no", "payload": {"x": 1}}),
        ),
        (
            Notification::Escalate {
                id: eid.clone(),
                draft,
                reason: "both changed it".into(),
            },
            json!({"kind": "escalate", "id": id(9), "type": "plugin:dnd5e:condition",
                   "reason": "both changed it"}),
        ),
        (
            Notification::Rebased {
                rejected: eid.clone(),
                resubmitted: EventId::new(id(10)),
            },
            json!({"kind": "rebased", "rejected": id(9), "resubmitted": id(10)}),
        ),
        (
            Notification::Diverged {
                sequence: Sequence(3),
                error: "bad".into(),
            },
            json!({"kind": "diverged", "sequence": 3, "error": "bad"}),
        ),
        (
            Notification::ServerError {
                code: ErrorCode::RateLimited,
                message: "slow down".into(),
                action: Some("replay".into()),
            },
            json!({"kind": "serverError", "code": "rate_limited", "message": "slow down",
                   "action": "replay"}),
        ),
        (Notification::Unsubscribed, json!({"kind": "unsubscribed"})),
        (
            Notification::Frame(frame),
            json!({"kind": "frame", "event": "presence",
                   "data": {"sessionId": SESSION, "userId": "bob", "status": "joined"}}),
        ),
        (
            Notification::BadFrame("eof".into()),
            json!({"kind": "badFrame", "error": "eof"}),
        ),
    ];
    for (n, expected) in cases {
        assert_eq!(notification_json(&n, &state, &verifier), expected);
        let wrapped = output_json(&Output::Notify(n), &state, &verifier);
        assert_eq!(wrapped, json!({"kind": "notify", "notification": expected}));
    }
    let outputs = [
        (Output::Connect, json!({"kind": "connect"})),
        (Output::Reconnect, json!({"kind": "reconnect"})),
        (Output::Close, json!({"kind": "close"})),
        (Output::WakeAt(77), json!({"kind": "wakeAt", "at": 77})),
        (
            Output::Http(HttpRequest::LoadState {
                href: "/sessions/s1".into(),
            }),
            json!({"kind": "http", "href": "/sessions/s1", "load": "state"}),
        ),
    ];
    for (o, expected) in outputs {
        assert_eq!(output_json(&o, &state, &verifier), expected);
    }
    assert_eq!(
        status_json(&Status::Offline { pending: 2 }),
        json!({"state": "offline", "pending": 2})
    );
}

#[test]
fn summaries_read_as_one_line_per_event_type() {
    let mut state = GameSessionState::new(SessionId::new(SESSION), None);
    state.apply(&game_event(ogre_added())).expect("applies");
    state.apply(&game_event(goblin_added(2))).expect("applies");
    let line = |event_type: &str, payload: Value| {
        summary(&game_event(event(9, "bob", event_type, payload)), &state)
    };
    assert_eq!(
        line(
            dnd5e::ATTACK,
            json!({"attacker": {"instanceId": "g1", "name": "Goblin 1"}, "targetName": "Ogre",
                   "weapon": "Scimitar", "hit": false, "attackRoll": {"total": 9},
                   "targetAc": 11})
        ),
        "Goblin 1 misses Ogre with Scimitar (9 vs AC 11)"
    );
    assert_eq!(
        line(
            dnd5e::ATTACK,
            json!({"attacker": {"instanceId": "g1"}, "target": {"instanceId": "o1"},
                   "weapon": "Scimitar", "hit": true, "critical": true, "damage": 15,
                   "damageType": "slashing", "hpBefore": 15, "hpAfter": 0,
                   "unconscious": true})
        ),
        "Goblin 1 critically hits Ogre with Scimitar: 15 slashing (15 → 0), unconscious",
        "names from the state when the payload has none"
    );
    assert_eq!(
        line(
            dnd5e::HEAL,
            json!({"targetName": "Ogre", "amount": 4, "hpBefore": 2, "hpAfter": 6})
        ),
        "Ogre heals 4 (2 → 6)"
    );
    assert_eq!(
        line(
            dnd5e::CONDITION,
            json!({"targetName": "Ogre", "condition": "prone", "op": "remove"})
        ),
        "Ogre is no longer prone"
    );
    assert_eq!(
        line(
            dnd5e::INITIATIVE,
            json!({"rolls": [{"name": "Goblin 1", "total": 17}, {"name": "Ogre", "total": 9}]})
        ),
        "initiative: Goblin 1 17, Ogre 9"
    );
    assert_eq!(
        line(dnd5e::END_TURN, json!({"next": "o1"})),
        "turn passes to Ogre"
    );
    assert_eq!(
        line(dnd5e::NEXT_ROUND, json!({"round": 1, "next": "g1"})),
        "round 2 starts with Goblin 1"
    );
    assert_eq!(
        line(DICE_ROLL_TYPE, json!({"formula": "1d20+4"})),
        "rolled 1d20+4"
    );
    assert_eq!(line(CHAT, json!({"text": "hi all"})), "bob: hi all");
    assert_eq!(
        line(ACTOR_REMOVED, json!({"instanceId": "o1"})),
        "Ogre leaves"
    );
    assert_eq!(
        line(
            GM_OVERRIDE,
            json!({"finalState": {"$session": {"settings.requireServerRolls": true}}})
        ),
        "GM override: $session settings.requireServerRolls = true"
    );
    assert_eq!(line("core:token:move", json!({"x": 1})), "core:token:move");
    let long = line(CHAT, json!({"text": "a".repeat(500)}));
    assert_eq!(long.chars().count(), 200);
    assert!(long.ends_with('…'));
}

#[test]
fn a_gm_override_turns_local_dice_unverified() {
    let mut s = live_session();
    let override_event = event(
        5,
        "gm",
        GM_OVERRIDE,
        json!({"finalState": {"$session": {"settings.requireServerRolls": true}}}),
    );
    s.on_text(&frame("event:applied", override_event), 5_000);
    assert_eq!(model(&s)["requireServerRolls"], true);
    let local = event(
        6,
        "bob",
        dnd5e::DAMAGE,
        json!({"target": {"instanceId": "o1"}, "targetName": "Ogre", "amount": 2,
               "hpBefore": 15, "hpAfter": 13,
               "stateChanges": {HP_PATH: {"from": 15, "to": 13}}}),
    );
    s.on_text(&frame("event:applied", local), 5_100);
    let vm = model(&s);
    assert_eq!(vm["log"][0]["verdict"], "unverified");
    assert_eq!(vm["log"][0]["reason"], dnd5e::SERVER_ROLLS_REQUIRED);
}

#[test]
fn seeded_dice_stay_on_the_die_and_reach_every_face() {
    let mut dice = SeededDice::new(5);
    let mut seen = [false; 6];
    for _ in 0..600 {
        let face = dice.die(6);
        assert!((1..=6).contains(&face), "{face}");
        seen[face as usize - 1] = true;
    }
    assert!(seen.iter().all(|s| *s), "{seen:?}");
    assert_eq!(SeededDice::new(5).die(1), 1);
    assert_eq!(SeededDice::new(5).die(0), 1, "a die without sides shows 1");
}

#[test]
fn seeds_and_times_cross_from_javascript_numbers() {
    assert_eq!(seed_of(1, 2), (1u64 << 32) | 2);
    assert_eq!(seed_of(u32::MAX, u32::MAX), u64::MAX);
    assert_eq!(millis(1_700_000_000_123.9), 1_700_000_000_123);
    assert_eq!(millis(-5.0), 0);
    assert_eq!(millis(f64::NAN), 0);
    // Equal seeds give equal ids (so the browser must seed from crypto.getRandomValues);
    // different seeds differ.
    let first_id = |seed| {
        let mut s = WebSession::new(SESSION, ME, seed);
        let answer: Value =
            serde_json::from_str(&s.submit(CHAT, "{}", 0).expect("queued")).expect("JSON");
        answer["id"].as_str().expect("id").to_owned()
    };
    assert_eq!(first_id(9), first_id(9));
    assert_ne!(first_id(9), first_id(10));
}
