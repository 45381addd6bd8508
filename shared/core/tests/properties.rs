//! Property tests of the domain invariants (ARCHITECTURE.md 1, 6 and 7).
//!
//! (a) a snapshot of any prefix plus the rest of the log gives the same state as the whole log;
//! (b) concurrent `inc` and rebased compare-and-set updates lose no update;
//! (c) the checksum ignores key order, whitespace and number spelling, and sees every value.

use std::collections::BTreeMap;

use dlab_core::canonical::checksum;
use dlab_core::changes::{ACTOR_ADDED, ACTOR_REMOVED, GM_OVERRIDE};
use dlab_core::compaction::{Snapshot, fold};
use dlab_core::event::GameEvent;
use dlab_core::ids::{EventId, InstanceId, Sequence, SessionId, UserId};
use dlab_core::state::{ApplyError, GameSessionState};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const CASES: u32 = 256;

fn session() -> SessionId {
    SessionId::new("prop-session")
}

/// A log that keeps only the events the projection accepts, as the commit step does.
struct Log {
    state: GameSessionState,
    events: Vec<GameEvent>,
    ids: u64,
}

impl Log {
    fn new() -> Self {
        Self {
            state: GameSessionState::new(session(), None),
            events: vec![],
            ids: 0,
        }
    }

    fn submit(
        &mut self,
        user: &str,
        event_type: &str,
        payload: Value,
    ) -> Result<Sequence, ApplyError> {
        self.ids += 1;
        let sequence = self.state.last_event_sequence.next();
        let event = GameEvent {
            id: EventId::new(format!("00000000-0000-4000-8000-{:012}", self.ids)),
            sequence,
            timestamp: 1_000 + self.ids * 7,
            client_timestamp: None,
            user_id: UserId::new(user),
            session_id: session(),
            event_type: event_type.into(),
            payload,
            checksum: None,
        };
        self.state.apply(&event)?;
        self.events.push(event);
        Ok(sequence)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Add {
        slot: u8,
        hp: i64,
    },
    Remove {
        slot: u8,
    },
    Cas {
        slot: u8,
        path: u8,
        delta: i64,
        stale: bool,
    },
    Inc {
        slot: u8,
        path: u8,
        by: i64,
    },
    Blind {
        slot: u8,
        path: u8,
        value: i64,
        user: u8,
    },
    Force {
        slot: u8,
        path: u8,
        value: i64,
    },
    Session {
        by: i64,
        lighting: u8,
    },
    Chat,
}

const PATHS: [&str; 4] = [
    "attributes.hp.value",
    "attributes.ac",
    "conditions.poisoned",
    "position.x",
];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..4, 1i64..50).prop_map(|(slot, hp)| Op::Add { slot, hp }),
        (0u8..4).prop_map(|slot| Op::Remove { slot }),
        (0u8..4, 0u8..4, -10i64..10, any::<bool>()).prop_map(|(slot, path, delta, stale)| {
            Op::Cas {
                slot,
                path,
                delta,
                stale,
            }
        }),
        (0u8..4, 0u8..4, -10i64..10).prop_map(|(slot, path, by)| Op::Inc { slot, path, by }),
        (0u8..4, 0u8..4, -10i64..10, 0u8..3).prop_map(|(slot, path, value, user)| Op::Blind {
            slot,
            path,
            value,
            user
        }),
        (0u8..4, 0u8..4, -10i64..10).prop_map(|(slot, path, value)| Op::Force {
            slot,
            path,
            value
        }),
        (-2i64..3, 0u8..3).prop_map(|(by, lighting)| Op::Session { by, lighting }),
        Just(Op::Chat),
    ]
}

fn instance(slot: u8) -> String {
    format!("inst{slot}")
}

fn build_log(ops: &[Op]) -> Log {
    let mut log = Log::new();
    for op in ops {
        // Rejections (conflicts, unknown instances, inc on a non-integer) are not committed.
        let _ = match op {
            Op::Add { slot, hp } => log.submit(
                "gm",
                ACTOR_ADDED,
                json!({"instanceId": instance(*slot), "actorId": format!("actor{slot}"),
                       "actor": {"name": "Goblin", "attributes": {"hp": {"value": hp, "max": hp}, "ac": 15}}}),
            ),
            Op::Remove { slot } => {
                log.submit("gm", ACTOR_REMOVED, json!({"instanceId": instance(*slot)}))
            }
            Op::Cas { slot, path, delta, stale } => {
                let inst = InstanceId::new(instance(*slot));
                let path = PATHS[*path as usize];
                let current = log.state.current(&inst, path).unwrap_or(Value::Null);
                let from = if *stale { json!(-999) } else { current.clone() };
                let to = current.as_i64().map_or(json!(*delta), |c| json!(c + delta));
                log.submit(
                    "p1",
                    "plugin:dnd5e:attack",
                    json!({"target": {"instanceId": inst}, "stateChanges": {path: {"from": from, "to": to}}}),
                )
            }
            Op::Inc { slot, path, by } => log.submit(
                "p2",
                "plugin:dnd5e:heal",
                json!({"target": {"instanceId": instance(*slot)},
                       "stateChanges": {PATHS[*path as usize]: {"op": "inc", "by": by}}}),
            ),
            Op::Blind { slot, path, value, user } => log.submit(
                &format!("p{user}"),
                "core:token:move",
                json!({"target": {"instanceId": instance(*slot)},
                       "stateChanges": {PATHS[*path as usize]: {"to": value}}}),
            ),
            Op::Force { slot, path, value } => log.submit(
                "gm",
                GM_OVERRIDE,
                json!({"finalState": {instance(*slot): {PATHS[*path as usize]: value}}}),
            ),
            Op::Session { by, lighting } => {
                let lighting = ["bright", "dim", "dark"][*lighting as usize];
                log.submit(
                "gm",
                "plugin:dnd5e:round",
                json!({"target": {"instanceId": "$session"},
                       "stateChanges": {"encounter.round": {"op": "inc", "by": by},
                                        "environment.lighting": {"to": lighting}}}),
            )
            }
            Op::Chat => log.submit("p1", "core:chat", json!({"text": "hello"})),
        };
    }
    log
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// (a) state(snapshot(events[..k]) + events[k..]) == state(events), with the snapshot
    /// passed through its JSON form as it is when stored.
    #[test]
    fn snapshot_plus_tail_equals_full_replay(ops in prop::collection::vec(op(), 0..60), cut in any::<prop::sample::Index>()) {
        let log = build_log(&ops);
        let k = cut.index(log.events.len() + 1);
        let (snapshot, report) = fold(&session(), None, None, &log.events[..k], 1).unwrap();
        prop_assert_eq!(report.original_event_count, k as u64);
        let stored: Snapshot = serde_json::from_str(&serde_json::to_string(&snapshot).unwrap()).unwrap();
        prop_assert!(stored.verify());
        let mut state = stored.state;
        for event in &log.events[k..] {
            state.apply(event).unwrap();
        }
        prop_assert_eq!(&state, &log.state);
        // Sequences are gap-free: 1..N.
        for (i, e) in log.events.iter().enumerate() {
            prop_assert_eq!(e.sequence, Sequence(i as u64 + 1));
        }
    }

    /// (b) Any interleaving of concurrent `inc` and rebased compare-and-set damage loses no
    /// update: final HP = start − total damage.
    #[test]
    fn concurrent_inc_and_rebased_cas_lose_no_update(
        clients in prop::collection::vec((any::<bool>(), prop::collection::vec(1i64..20, 1..6)), 2..6),
        schedule in prop::collection::vec(0usize..6, 0..80),
    ) {
        const START: i64 = 1_000;
        let mut log = Log::new();
        log.submit("gm", ACTOR_ADDED, json!({"instanceId": "goblin", "actorId": "a",
            "actor": {"attributes": {"hp": {"value": START, "max": START}}}})).unwrap();
        let goblin = InstanceId::new("goblin");
        // Each client: uses inc?, pending damage, its (possibly stale) view of the HP.
        let mut pending: Vec<(bool, Vec<i64>, i64)> =
            clients.iter().map(|(inc, dmg)| (*inc, dmg.clone(), START)).collect();
        let total: i64 = clients.iter().flat_map(|(_, d)| d.iter()).sum();
        fn turn(pending: &mut [(bool, Vec<i64>, i64)], c: usize, log: &mut Log) {
            let (uses_inc, dmg, view) = &mut pending[c];
            let Some(&d) = dmg.last() else { return };
            let change = if *uses_inc {
                json!({"op": "inc", "by": -d})
            } else {
                json!({"from": *view, "to": *view - d})
            };
            let payload = json!({"target": {"instanceId": "goblin"},
                                 "stateChanges": {"attributes.hp.value": change}});
            match log.submit(&format!("player{c}"), "plugin:dnd5e:attack", payload) {
                Ok(_) => {
                    dmg.pop();
                    *view -= d;
                }
                Err(ApplyError::Conflict { current }) => {
                    // Rebase on the current value and resubmit later with a new id.
                    *view = current["attributes.hp.value"].as_i64().unwrap();
                }
                Err(other) => panic!("unexpected {other}"),
            }
        }
        for c in schedule {
            if c < pending.len() {
                turn(&mut pending, c, &mut log);
            }
        }
        // Drain: every client keeps rebasing until its damage is applied (bounded).
        for _ in 0..1_000 {
            if pending.iter().all(|(_, d, _)| d.is_empty()) {
                break;
            }
            for c in 0..pending.len() {
                turn(&mut pending, c, &mut log);
            }
        }
        prop_assert!(pending.iter().all(|(_, d, _)| d.is_empty()));
        prop_assert_eq!(
            log.state.current(&goblin, "attributes.hp.value"),
            Some(json!(START - total))
        );
    }
}

/// A JSON value with integer-valued and fractional numbers.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-1_000_000i64..1_000_000).prop_map(Value::from),
        (-1000i32..1000, 1u32..1000).prop_map(|(a, b)| json!(a as f64 + 1.0 / b as f64)),
        "[a-zA-Z0-9 _é\\-]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn next(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng
}

/// Writes `value` as JSON text with keys in a shuffled order, random whitespace, and integers
/// spelled in one of several equivalent ways.
fn spell(value: &Value, rng: &mut u64, out: &mut String) {
    let ws = |n: u64| [" ", "", "\n  ", "\t"][(n % 4) as usize];
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            let n = entries.len();
            for i in (1..n).rev() {
                let j = (next(rng) % (i as u64 + 1)) as usize;
                entries.swap(i, j);
            }
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(ws(next(rng)));
                out.push_str(&serde_json::to_string(k).unwrap());
                out.push_str(ws(next(rng)));
                out.push(':');
                spell(v, rng, out);
            }
            out.push_str(ws(next(rng)));
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(ws(next(rng)));
                spell(v, rng, out);
            }
            out.push(']');
        }
        Value::Number(n) if n.is_i64() => {
            let i = n.as_i64().unwrap();
            match next(rng) % 4 {
                0 => out.push_str(&format!("{i}")),
                1 => out.push_str(&format!("{i}.0")),
                2 => out.push_str(&format!("{i}.000")),
                _ => out.push_str(&format!("{i}e0")),
            }
        }
        other => out.push_str(&serde_json::to_string(other).unwrap()),
    }
}

/// Changes one leaf (the `pick`-th in document order) so the value differs.
fn mutate(value: &mut Value, pick: &mut usize) -> bool {
    match value {
        Value::Object(map) => map.values_mut().any(|v| mutate(v, pick)),
        Value::Array(items) => items.iter_mut().any(|v| mutate(v, pick)),
        leaf => {
            if *pick > 0 {
                *pick -= 1;
                return false;
            }
            *leaf = match leaf.take() {
                Value::Null => json!(0),
                Value::Bool(b) => json!(!b),
                Value::Number(n) => json!(n.as_f64().unwrap() + 1.0),
                Value::String(s) => json!(format!("{s}!")),
                _ => unreachable!(),
            };
            true
        }
    }
}

fn count_leaves(value: &Value) -> usize {
    match value {
        Value::Object(m) => m.values().map(count_leaves).sum(),
        Value::Array(a) => a.iter().map(count_leaves).sum(),
        _ => 1,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// (c) The checksum is stable under key reordering, whitespace and number spelling, and
    /// changes when any value changes.
    #[test]
    fn checksum_is_stable_under_spelling_and_sensitive_to_values(value in json_value(), seed in 1u64.., pick in any::<prop::sample::Index>()) {
        let mut rng = seed;
        let mut text = String::new();
        spell(&value, &mut rng, &mut text);
        let reparsed: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(checksum(&reparsed), checksum(&value), "text: {}", text);

        let leaves = count_leaves(&value);
        if leaves > 0 {
            let mut changed = value.clone();
            let mut n = pick.index(leaves);
            prop_assert!(mutate(&mut changed, &mut n));
            prop_assert_ne!(checksum(&changed), checksum(&value));
        }
        // Adding a key changes it too.
        let wrapped = json!({"v": value.clone()});
        let mut extended = wrapped.clone();
        extended["extra"] = json!(1);
        prop_assert_ne!(checksum(&extended), checksum(&wrapped));
    }
}

#[test]
fn conflicting_cas_after_a_rebase_reports_every_path() {
    let mut log = Log::new();
    log.submit(
        "gm",
        ACTOR_ADDED,
        json!({"instanceId": "g", "actorId": "a",
        "actor": {"attributes": {"hp": {"value": 15}}}}),
    )
    .unwrap();
    let hit = |from: i64, to: i64| {
        json!({"target": {"instanceId": "g"},
        "stateChanges": {"attributes.hp.value": {"from": from, "to": to}}})
    };
    log.submit("p1", "plugin:dnd5e:attack", hit(15, 7)).unwrap();
    let Err(ApplyError::Conflict { current }) =
        log.submit("p2", "plugin:dnd5e:attack", hit(15, 10))
    else {
        panic!("expected a conflict");
    };
    assert_eq!(
        current,
        BTreeMap::from([("attributes.hp.value".to_string(), json!(7))])
    );
    log.submit("p2", "plugin:dnd5e:attack", hit(7, 2)).unwrap();
    assert_eq!(
        log.state.current(&"g".into(), "attributes.hp.value"),
        Some(json!(2))
    );
}
