//! The tokio driver of the client core (`dlab_client::native::LiveSession`) against the local
//! gateway: every case talks to the server only through `LiveSession` (no raw frames), and
//! checks what a player would see — the optimistic view, the confirmed state, the order of the
//! applied events — against the server's own log over HTTP.
//!
//! `tests/tests/client.rs` runs each case on the memory backend and on the real servers. Every
//! wait is bounded ([`WAIT`]); no assertion is about timing.

use std::time::Duration;

use dlab_client::native::{
    DriverError, Endpoint, JoinOptions, LiveSession, Outcome, ViewSnapshot, default_registry,
};
use dlab_client::{Command, EventDraft, Registry, Status, Verdict};
use dlab_core::codes::ErrorCode;
use dlab_core::ids::{EventId, InstanceId, Sequence, UserId};
use dlab_core::state::GameSessionState;
use local_gateway::app::Running;
use reqwest::Method;
use serde_json::{Value, json};

use crate::e2e::{self, Backend, Http, Table, User, setup_table};

/// Bound of every wait.
pub const WAIT: Duration = e2e::WAIT;
/// The HP path of the seed's goblin.
const HP: &str = "attributes.hp.value";

/// A gateway, its HTTP API and a table (GM, players, one 15-HP goblin `goblin1`).
struct World {
    running: Running,
    http: Http,
    table: Table,
}

async fn world(backend: Backend, players: usize) -> World {
    let running = backend.gateway().await;
    let http = Http::new(&running);
    let table = setup_table(&http, players, 1).await;
    World {
        running,
        http,
        table,
    }
}

impl World {
    fn endpoint(&self, user: &User) -> Endpoint {
        Endpoint {
            http: self.running.http_url(),
            ws: self.running.ws_url(),
            token: user.token.clone(),
        }
    }

    async fn join(&self, user: &User, registry: Registry) -> LiveSession {
        LiveSession::join(
            self.endpoint(user),
            self.table.session_id(),
            UserId::new(user.id.as_str()),
            registry,
            JoinOptions::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{} joins: {e:?}", user.id))
    }

    /// Every stored event, in order (HTTP).
    async fn server_log(&self) -> Vec<Value> {
        self.http
            .all_events(&self.table.session, &self.table.gm.token)
            .await
    }
}

fn hp(state: &GameSessionState) -> Option<i64> {
    state
        .current(&InstanceId::new("goblin1"), HP)
        .and_then(|v| v.as_i64())
}

fn sequences(snapshot: &ViewSnapshot) -> Vec<u64> {
    snapshot.log.iter().map(|e| e.sequence.get()).collect()
}

fn ids(snapshot: &ViewSnapshot) -> Vec<EventId> {
    snapshot.log.iter().map(|e| e.id.clone()).collect()
}

fn json_of(state: &GameSessionState) -> Value {
    serde_json::to_value(state).expect("a state serializes")
}

fn chat(text: &str) -> EventDraft {
    EventDraft::new("core:chat", json!({ "text": text }))
}

/// Waits until `client` has applied `head` and has nothing pending.
async fn settled_at(client: &LiveSession, who: &str, head: u64) -> ViewSnapshot {
    client
        .wait_until(&format!("{who} at sequence {head}"), WAIT, |s| {
            s.last_applied == Sequence(head) && s.pending == 0
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", client.snapshot().last_error))
}

/// Submits `count` chats in chunks the server's rate limit absorbs, each chunk confirmed
/// before the next.
async fn chats(client: &LiveSession, prefix: &str, count: usize) {
    let mut sent = 0;
    while sent < count {
        let chunk = (count - sent).min(25);
        let mut submitted = Vec::with_capacity(chunk);
        for i in sent..sent + chunk {
            submitted.push(
                client
                    .submit(chat(&format!("{prefix} {i}")))
                    .await
                    .expect("a chat is accepted locally"),
            );
        }
        for id in &submitted {
            let outcome = client.outcome(id, WAIT).await.expect("an outcome");
            assert!(
                matches!(outcome, Outcome::Confirmed { .. }),
                "{id}: {outcome:?}"
            );
        }
        sent += chunk;
    }
}

// ---------------------------------------------------------------------------------------------
// Cases

/// An event the client's own checks pass but the server refuses: a player's `core:gm_override`
/// (the client cannot know it is not the GM). Made offline, it shows in the view at once; back
/// online the server answers `forbidden`, the outcome is a rollback with that code, and the
/// view returns to the confirmed state, which the server's state equals.
pub async fn rejected_event_rolls_back(backend: Backend) {
    let _turn = e2e::shared().await;
    let w = world(backend, 1).await;
    let p1 = w.join(&w.table.players[0], Registry::new()).await;
    p1.set_offline(true);
    let id = p1
        .submit(EventDraft::new(
            "core:gm_override",
            json!({"finalState": {"goblin1": {HP: 1}}}),
        ))
        .await
        .expect("the client's checks let it through");
    let before = p1.snapshot();
    assert!(
        matches!(before.status, Status::Offline { pending: 1 }),
        "{:?}",
        before.status
    );
    assert_eq!(hp(&before.view), Some(1), "optimistic: shown at once");
    assert_eq!(hp(&before.confirmed), Some(15));

    p1.set_offline(false);
    match p1.outcome(&id, WAIT).await.expect("an outcome") {
        Outcome::RolledBack(rejection) => assert_eq!(rejection.code, ErrorCode::Forbidden),
        other => panic!("expected a rollback, got {other:?}"),
    }
    let after = settled_at(&p1, "p1", w.table.setup_head()).await;
    assert_eq!(hp(&after.view), Some(15), "rolled back");
    assert_eq!(json_of(&after.view), json_of(&after.confirmed));
    assert_eq!(
        w.http
            .hp(&w.table.session, "goblin1", &w.table.gm.token)
            .await,
        15
    );
    assert_eq!(w.server_log().await.len() as u64, w.table.setup_head());
    p1.close().await;
}

/// The seed's double attack: the goblin has 15 HP, two players hit it at once for 8 and 5 with
/// a compare-and-set from 15. One commits; the other gets `conflict` and the plugin rebases it
/// on the server's value. Every client (both players and the GM) ends at 2 HP and the log holds
/// exactly three events (the goblin's arrival and the two hits).
pub async fn double_attack_rebases_to_two_hp(backend: Backend) {
    let _turn = e2e::shared().await;
    let w = world(backend, 2).await;
    let p1 = w.join(&w.table.players[0], default_registry()).await;
    let p2 = w.join(&w.table.players[1], default_registry()).await;
    let gm = w.join(&w.table.gm, default_registry()).await;

    let damage = |amount: i64| Command {
        name: "damage".to_owned(),
        args: json!({"target": "goblin1", "amount": amount}),
    };
    let (a, b) = tokio::join!(p1.command(damage(8)), p2.command(damage(5)));
    let (a, b) = (a.expect("p1's hit"), b.expect("p2's hit"));
    let ((a_final, a_outcome), (b_final, b_outcome)) = (
        p1.settle(&a, WAIT).await.expect("p1's hit settles"),
        p2.settle(&b, WAIT).await.expect("p2's hit settles"),
    );
    assert!(
        matches!(a_outcome, Outcome::Confirmed { .. }),
        "{a_outcome:?}"
    );
    assert!(
        matches!(b_outcome, Outcome::Confirmed { .. }),
        "{b_outcome:?}"
    );
    let rebased = usize::from(a_final != a) + usize::from(b_final != b);
    assert_eq!(rebased, 1, "exactly one hit was rebased");

    let head = w.table.setup_head() + 2;
    for (who, client) in [("p1", &p1), ("p2", &p2), ("gm", &gm)] {
        let s = settled_at(client, who, head).await;
        assert_eq!(hp(&s.confirmed), Some(2), "{who}");
        assert_eq!(hp(&s.view), Some(2), "{who}");
        assert_eq!(
            sequences(&s),
            vec![2, 3],
            "{who} applied both hits in order"
        );
    }
    let log = w.server_log().await;
    assert_eq!(
        log.iter()
            .map(|e| e["sequence"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let committed: Vec<&str> = log[1..].iter().map(|e| e["id"].as_str().unwrap()).collect();
    let final_ids = [a_final.as_str(), b_final.as_str()];
    assert!(
        committed.iter().all(|id| final_ids.contains(id)),
        "the log holds the two final hits: {committed:?} vs {final_ids:?}"
    );
    assert_eq!(
        ids(&gm.snapshot()),
        ids(&p1.snapshot()),
        "same events, same order"
    );
    for client in [p1, p2, gm] {
        client.close().await;
    }
}

/// A client offline while another submits 50 events (and with one event of its own queued)
/// comes back, catches up in order and ends with the other's state; its queued event goes out
/// after the catch-up.
pub async fn offline_client_catches_up_in_order(backend: Backend) {
    let _turn = e2e::shared().await;
    let w = world(backend, 2).await;
    let p1 = w.join(&w.table.players[0], Registry::new()).await;
    let p2 = w.join(&w.table.players[1], Registry::new()).await;
    let start = w.table.setup_head();

    p1.set_offline(true);
    let mine = p1
        .submit(chat("queued while offline"))
        .await
        .expect("queued");
    assert_eq!(p1.snapshot().pending, 1);

    let mut submitted = Vec::new();
    for i in 0..50 {
        let draft = if i % 10 == 9 {
            EventDraft::new(
                "plugin:test:hit",
                json!({"target": {"instanceId": "goblin1"},
                       "stateChanges": {HP: {"op": "inc", "by": -1}}}),
            )
        } else {
            chat(&format!("p2 {i}"))
        };
        submitted.push(p2.submit(draft).await.expect("accepted locally"));
        if submitted.len() % 25 == 0 {
            // Stay inside the server's submit rate (bursts of 40).
            settled_at(&p2, "p2", start + submitted.len() as u64).await;
        }
    }
    let p2_done = settled_at(&p2, "p2", start + 50).await;
    assert_eq!(hp(&p2_done.confirmed), Some(10));
    assert_eq!(
        p1.snapshot().last_applied,
        Sequence(start),
        "offline: nothing arrived"
    );

    p1.set_offline(false);
    let head = start + 51;
    let p1_done = settled_at(&p1, "p1", head).await;
    assert_eq!(
        p1.outcome(&mine, WAIT).await.expect("an outcome"),
        Outcome::Confirmed {
            sequence: Sequence(head)
        },
        "the queued event went out after the catch-up"
    );
    let p2_done = settled_at(&p2, "p2", head).await;
    assert_eq!(
        sequences(&p1_done),
        (start + 1..=head).collect::<Vec<_>>(),
        "applied in order, each once"
    );
    assert_eq!(
        ids(&p1_done),
        ids(&p2_done),
        "the same events in the same order"
    );
    assert_eq!(json_of(&p1_done.confirmed), json_of(&p2_done.confirmed));
    assert_eq!(hp(&p1_done.view), Some(10));
    assert_eq!(p1_done.state_loads, 0, "a plain catch-up, no snapshot");
    let server: Vec<String> = w
        .server_log()
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        server[start as usize..],
        ids(&p1_done)
            .iter()
            .map(|i| i.as_str().to_owned())
            .collect::<Vec<_>>()[..]
    );
    p1.close().await;
    p2.close().await;
}

/// Events past the hot tail a compaction keeps (`DLAB_HOT_TAIL`, 200 by default).
const PAST_THE_HOT_TAIL: usize = 210;

/// A client resumes after a compaction whose snapshot covers where it stopped, and the
/// archive's retention pruned the events below the snapshot: the server answers
/// `snapshot:required`, the driver loads the snapshot over HTTP, replays the tail and ends with
/// exactly the state a fresh client loads.
///
/// Retention runs with a period of days; the case prunes the archive through the port as the
/// retention step does, rather than waiting.
pub async fn resume_after_compaction_loads_the_snapshot(backend: Backend) {
    let _turn = e2e::shared().await;
    let w = world(backend, 2).await;
    let a = w.join(&w.table.players[0], Registry::new()).await;
    let b = w.join(&w.table.players[1], Registry::new()).await;
    let start = w.table.setup_head();

    chats(&b, "before", 2).await;
    let a_before = settled_at(&a, "a", start + 2).await;
    assert_eq!(sequences(&a_before), vec![start + 1, start + 2]);
    a.set_offline(true);
    a.wait_until("a offline", WAIT, |s| {
        matches!(s.status, Status::Offline { .. })
    })
    .await
    .expect("offline");

    chats(&b, "while away", PAST_THE_HOT_TAIL).await;
    let report = w
        .http
        .ok(
            Method::POST,
            &format!("/sessions/{}/compact", w.table.session),
            &w.table.gm.token,
            Some(&json!({})),
        )
        .await;
    assert_eq!(report["snapshotCreated"], true, "{report}");
    let snapshot = w
        .http
        .ok(
            Method::GET,
            &format!("/sessions/{}/snapshot", w.table.session),
            &w.table.gm.token,
            None,
        )
        .await;
    let upto = snapshot["upToSequence"].as_u64().expect("upToSequence");
    assert_eq!(upto, start + 2 + PAST_THE_HOT_TAIL as u64, "{snapshot}");
    let pruned = w
        .running
        .deps
        .archive
        .prune(&w.table.session_id(), Sequence(upto), u64::MAX)
        .await
        .expect("retention prunes");
    assert!(pruned > 0, "the archive below the snapshot is gone");
    chats(&b, "after the compaction", 3).await;
    let head = upto + 3;

    a.set_offline(false);
    let a_done = settled_at(&a, "a", head).await;
    assert_eq!(a_done.state_loads, 1, "the snapshot was loaded once");
    assert!(a_done.live);
    let mut expected = vec![start + 1, start + 2];
    expected.extend(upto + 1..=head);
    assert_eq!(
        sequences(&a_done),
        expected,
        "nothing below the snapshot was replayed; the tail was, in order"
    );

    let fresh = w.join(&w.table.gm, Registry::new()).await;
    let fresh_state = settled_at(&fresh, "a fresh client", head).await;
    assert_eq!(
        json_of(&a_done.confirmed),
        json_of(&fresh_state.confirmed),
        "converged"
    );
    assert_eq!(json_of(&a_done.view), json_of(&a_done.confirmed));
    for client in [a, b, fresh] {
        client.close().await;
    }
}

/// Trusted dice through the driver: `roll("1d20+5")` returns the server's roll (one d20 in
/// 1..=20, total = die + 5), and the committed event — in the server's log and on another
/// client — carries the same result.
pub async fn server_roll_over_the_driver(backend: Backend) {
    let _turn = e2e::shared().await;
    let w = world(backend, 1).await;
    let p1 = w.join(&w.table.players[0], Registry::new()).await;
    let gm = w.join(&w.table.gm, Registry::new()).await;

    let roll = p1.roll("1d20+5", "test").await.expect("a server roll");
    assert_eq!(roll.formula, "1d20+5");
    assert_eq!(roll.dice.len(), 1, "{roll:?}");
    assert!((1..=20).contains(&roll.dice[0]), "{roll:?}");
    assert_eq!(roll.total, i64::from(roll.dice.iter().sum::<u32>()) + 5);

    let stored = w.server_log().await;
    let event = stored
        .iter()
        .find(|e| e["id"] == roll.event_id.as_str())
        .expect("the roll is in the log");
    assert_eq!(event["sequence"], roll.sequence.get());
    assert_eq!(event["payload"]["result"]["total"], roll.total);
    let dice: Vec<u64> = event["payload"]["result"]["dice"]
        .as_array()
        .expect("dice")
        .iter()
        .map(|d| d["value"].as_u64().unwrap())
        .collect();
    assert_eq!(dice, vec![u64::from(roll.dice[0])]);

    let seen = gm
        .wait_until("the GM sees the roll", WAIT, |s| {
            s.last_applied >= roll.sequence
        })
        .await
        .expect("applied");
    let on_gm = seen
        .log
        .iter()
        .find(|e| e.id == roll.event_id)
        .expect("the GM applied the roll");
    assert_eq!(on_gm.payload["result"], event["payload"]["result"]);

    // A formula outside the grammar is refused by the server, not rolled.
    match p1.roll("1d0", "bad").await {
        Err(DriverError::Rejected(rejection)) => {
            assert_eq!(rejection.code, ErrorCode::InvalidEvent)
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    p1.close().await;
    gm.close().await;
}

/// `join` fails at once, with the right error, for a bad token and for a user outside the
/// campaign.
pub async fn join_refuses_bad_tokens_and_strangers(backend: Backend) {
    let _turn = e2e::shared().await;
    let w = world(backend, 1).await;
    let join = |token: String, user: &str| {
        LiveSession::join(
            Endpoint {
                http: w.running.http_url(),
                ws: w.running.ws_url(),
                token,
            },
            w.table.session_id(),
            UserId::new(user),
            Registry::new(),
            JoinOptions::default(),
        )
    };
    match join("not-a-token".to_owned(), "nobody").await {
        Err(DriverError::Unauthorized { .. }) => {}
        other => panic!("expected unauthorized, got {other:?}"),
    }
    let stranger = w.http.user(&format!("stranger-{}", e2e::tag())).await;
    match join(stranger.token.clone(), &stranger.id).await {
        Err(DriverError::Forbidden { .. }) => {}
        other => panic!("expected forbidden, got {other:?}"),
    }
}

/// Waits until `client` holds a verdict on `event` and returns it.
async fn verdict_on(client: &LiveSession, who: &str, event: &EventId) -> Verdict {
    let seen = client
        .wait_until(&format!("{who}'s verdict on {event}"), WAIT, |s| {
            s.verdicts.contains_key(event)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", client.snapshot().last_error));
    seen.verdicts[event].clone()
}

/// Settles `id` and asserts it was confirmed (possibly after a rebase); returns the final id.
async fn confirmed(client: &LiveSession, id: &EventId) -> EventId {
    let (last, outcome) = client.settle(id, WAIT).await.expect("settles");
    assert!(
        matches!(outcome, Outcome::Confirmed { .. }),
        "{id}: {outcome:?}"
    );
    last
}

/// Trusted dice end to end, every verdict checked on all three clients:
/// - a forged client `result` is replaced by the server's roll;
/// - an attack built from the sender's own server rolls is `Verified`;
/// - an attack naming another player's roll, and one reusing a roll, are `Unverified`;
/// - a locally rolled attack is `Local` until the GM sets `settings.requireServerRolls`, then
///   `Unverified` ("server rolls required").
pub async fn trusted_dice_verified_and_forgeries_flagged(backend: Backend) {
    let _turn = e2e::shared().await;
    let running = backend.gateway().await;
    let http = Http::new(&running);
    let table = setup_table(&http, 2, 2).await;
    let w = World {
        running,
        http,
        table,
    };
    let p1 = w.join(&w.table.players[0], default_registry()).await;
    let p2 = w.join(&w.table.players[1], default_registry()).await;
    let gm = w.join(&w.table.gm, default_registry()).await;
    let clients = [("p1", &p1), ("p2", &p2), ("gm", &gm)];
    let (goblin1, goblin2) = (InstanceId::new("goblin1"), InstanceId::new("goblin2"));

    // The seed's goblins carry no weapon: the GM arms goblin1 and makes goblin2 sturdy, so no
    // hit below ends at 0 HP.
    let arm = gm
        .submit(EventDraft::new(
            "core:gm_override",
            json!({"finalState": {
                "goblin1": {"features": [{"name": "Scimitar", "kind": "action", "attackBonus": 4,
                                          "damage": [{"dice": "1d6+2", "type": "slashing"}]}]},
                "goblin2": {HP: 200, "attributes.hp.max": 200}}}),
        ))
        .await
        .expect("the GM's override");
    confirmed(&gm, &arm).await;

    // A forged result is replaced: the roll event carries the server's dice, not 999.
    let forged = p1
        .submit(EventDraft::new(
            "core:dice:roll",
            json!({"formula": "1d20+4", "purpose": "forged",
                   "result": {"dice": [{"sides": 20, "value": 20, "kept": true}], "total": 999}}),
        ))
        .await
        .expect("a roll");
    let Outcome::Confirmed { sequence } = p1.outcome(&forged, WAIT).await.expect("an outcome")
    else {
        panic!("the roll was refused");
    };
    for (who, client) in clients {
        let s = settled_at(client, who, sequence.get()).await;
        let event = s.log.iter().find(|e| e.id == forged).expect("the roll");
        let result = &event.payload["result"];
        let total = result["total"].as_i64().expect("a total");
        let die = result["dice"][0]["value"].as_i64().expect("one die");
        assert_ne!(total, 999, "{who}: the forged result survived");
        assert_eq!(total, die + 4, "{who}: {result}");
        assert!((1..=20).contains(&die), "{who}: {result}");
    }

    // An attack from p1's own server rolls: verified everywhere.
    let attack = p1
        .attack(&goblin1, &goblin2, None)
        .await
        .expect("an attack");
    assert_eq!(attack.hit, attack.damage.is_some());
    let attack_id = confirmed(&p1, &attack.id).await;
    for (who, client) in clients {
        assert_eq!(
            verdict_on(client, who, &attack_id).await,
            Verdict::Verified,
            "{who}"
        );
    }

    // The same rolls named again: by p2 (a foreign roll) and by p1 (a reused roll). Both pass
    // the sender's own rules check (the numbers add up) and commit; every client flags them.
    let mut args = json!({"attacker": "goblin1", "target": "goblin2",
                          "attackRoll": attack.to_hit.as_roll_ref()});
    if let Some(damage) = &attack.damage {
        args["damageRoll"] = damage.as_roll_ref();
    }
    let reuse = || Command {
        name: "attack".to_owned(),
        args: args.clone(),
    };
    let foreign = p2.command(reuse()).await.expect("p2's attack");
    let foreign = confirmed(&p2, &foreign).await;
    let reused = p1.command(reuse()).await.expect("p1's second attack");
    let reused = confirmed(&p1, &reused).await;
    for (who, client) in clients {
        match verdict_on(client, who, &foreign).await {
            Verdict::Unverified(reason) => {
                assert!(reason.contains("not by the sender"), "{who}: {reason}")
            }
            other => panic!("{who}: a foreign roll gave {other:?}"),
        }
        match verdict_on(client, who, &reused).await {
            Verdict::Unverified(reason) => {
                assert!(reason.contains("already used"), "{who}: {reason}")
            }
            other => panic!("{who}: a reused roll gave {other:?}"),
        }
    }

    // Local dice: allowed, then flagged once the GM requires server rolls.
    let local = || Command {
        name: "attack".to_owned(),
        args: json!({"attacker": "goblin1", "target": "goblin2"}),
    };
    let before = p1.command(local()).await.expect("a local attack");
    let before = confirmed(&p1, &before).await;
    let rule = gm
        .submit(EventDraft::new(
            "core:gm_override",
            json!({"finalState": {"$session": {"settings.requireServerRolls": true}}}),
        ))
        .await
        .expect("the GM's rule");
    confirmed(&gm, &rule).await;
    p1.wait_until("p1 sees the rule", WAIT, |s| s.require_server_rolls)
        .await
        .expect("the rule arrives");
    let after = p1.command(local()).await.expect("a local attack");
    let after = confirmed(&p1, &after).await;
    for (who, client) in clients {
        assert_eq!(
            verdict_on(client, who, &before).await,
            Verdict::Local,
            "{who}"
        );
        assert_eq!(
            verdict_on(client, who, &after).await,
            Verdict::Unverified(dlab_client::dnd5e::SERVER_ROLLS_REQUIRED.to_owned()),
            "{who}"
        );
        assert!(client.snapshot().require_server_rolls, "{who}");
    }
    for client in [p1, p2, gm] {
        client.close().await;
    }
}
