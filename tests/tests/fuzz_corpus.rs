//! The fuzz targets on stable (issue 12, reliability suite): CI cannot run `cargo fuzz` (nightly,
//! libFuzzer), so this replays every committed input of `tests/fuzz/corpus/<target>/` and
//! `tests/fuzz/regressions/<target>/` through the same harness the targets call
//! (`tests/fuzz/harness.rs`), and drives it with proptest: arbitrary bytes, arbitrary JSON, and
//! frames and envelopes shaped like the protocol's with wrong pieces in them.
//!
//! The harness asserts more than "no panic": refusals carry only the documented codes, an
//! accepted frame's wire form parses back to itself, and a refused event leaves the state alone.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};

use harness::Outcome;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// The fuzz crate's directory.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Every file under `dir` (none when it does not exist).
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Replays the corpus and the regressions of `target` through `run`; returns how many ran and
/// how many were accepted.
fn replay(target: &str, run: fn(&[u8]) -> Outcome) -> (usize, usize) {
    let mut files = inputs(&fuzz_dir().join("corpus").join(target));
    files.extend(inputs(&fuzz_dir().join("regressions").join(target)));
    let mut accepted = 0;
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let outcome = std::panic::catch_unwind(|| run(&data)).unwrap_or_else(|_| {
            panic!(
                "{} panicked the harness: {:?}",
                file.display(),
                String::from_utf8_lossy(&data)
            )
        });
        if outcome == Outcome::Accepted {
            accepted += 1;
        }
    }
    (files.len(), accepted)
}

#[test]
fn the_client_message_corpus_replays() {
    let (ran, accepted) = replay("client_message", harness::client_message);
    println!("client_message: {ran} inputs, {accepted} accepted");
    assert!(ran >= 10, "the committed corpus is missing: {ran} inputs");
    assert!(accepted > 0, "no input of the corpus is a valid frame");
}

#[test]
fn the_envelope_corpus_replays() {
    let (ran, accepted) = replay("envelope", harness::envelope);
    println!("envelope: {ran} inputs, {accepted} accepted");
    assert!(ran >= 10, "the committed corpus is missing: {ran} inputs");
    assert!(accepted > 0, "no input of the corpus is a valid event");
}

/// The harness itself sees the difference between good and bad input (so a replay that passes
/// is not a harness that accepts or refuses everything).
#[test]
fn the_harness_tells_valid_from_invalid() {
    use dlab_core::codes::ErrorCode;
    let id = "6f1c2a64-3b1e-4c7d-9a7e-2d4b8f0c1e55";
    let chat = json!({"id": id, "sessionId": "s", "type": "core:chat", "payload": {"text": "hi"}});
    let hit = json!({"id": id, "sessionId": "s", "type": "plugin:dnd5e:attack",
        "payload": {"target": {"instanceId": "goblin1"},
                    "stateChanges": {"attributes.hp.value": {"from": 15, "to": 7}}}});
    let stale = json!({"id": id, "sessionId": "s", "type": "plugin:dnd5e:attack",
        "payload": {"target": {"instanceId": "goblin1"},
                    "stateChanges": {"attributes.hp.value": {"from": 14, "to": 7}}}});
    let cases = [
        (
            harness::client_message(br#"{"action":"ping"}"#),
            Outcome::Accepted,
        ),
        (
            harness::client_message(
                json!({"action": "submit", "event": chat})
                    .to_string()
                    .as_bytes(),
            ),
            Outcome::Accepted,
        ),
        (
            harness::client_message(b"{"),
            Outcome::Refused(ErrorCode::InvalidMessage),
        ),
        (
            harness::client_message(br#"{"action":"dance"}"#),
            Outcome::Refused(ErrorCode::UnknownAction),
        ),
        (harness::client_message(&[0xff, 0xfe]), Outcome::NotText),
        (
            harness::envelope(hit.to_string().as_bytes()),
            Outcome::Accepted,
        ),
        (
            harness::envelope(stale.to_string().as_bytes()),
            Outcome::Refused(ErrorCode::Conflict),
        ),
        (
            harness::envelope(br#"{"id":"x"}"#),
            Outcome::Refused(ErrorCode::InvalidEvent),
        ),
        (harness::envelope(b"nope"), Outcome::NotJson),
    ];
    for (i, (got, want)) in cases.into_iter().enumerate() {
        assert_eq!(got, want, "case {i}");
    }
}

// ---------------------------------------------------------------------------------------------
// proptest

/// Any JSON value, nested a few levels.
fn any_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Strings near the protocol's: valid ones, near misses, and noise.
fn wordish(valid: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop_oneof![
        3 => prop::sample::select(valid).prop_map(|s| Value::String(s.to_owned())),
        1 => "[a-zA-Z0-9:_$. -]{0,20}".prop_map(Value::String),
        1 => any_json(),
    ]
    .boxed()
}

/// An event envelope with each field valid, nearly valid, missing or arbitrary.
fn envelope_shaped() -> impl Strategy<Value = Value> {
    let id = wordish(&[
        "6f1c2a64-3b1e-4c7d-9a7e-2d4b8f0c1e55",
        "6F1C2A643B1E4C7D9A7E2D4B8F0C1E55",
        "urn:uuid:6f1c2a64-3b1e-4c7d-9a7e-2d4b8f0c1e55",
        "not-a-uuid",
    ]);
    let session = wordish(&["s", "fuzz-session", ""]);
    let event_type = wordish(&[
        "core:chat",
        "plugin:dnd5e:attack",
        "core:gm_override",
        "core:session:actor_added",
        "core:session:actor_removed",
        "core:token:move",
        "core:snapshot",
        "plugin",
        "Plugin:X",
    ]);
    let path = prop::sample::select(
        &[
            "attributes.hp.value",
            "encounter.round",
            "environment.light",
            "a..b",
            "",
            "x.0.y",
        ][..],
    );
    let change = prop_oneof![
        any_json().prop_map(|v| json!({ "to": v })),
        (any_json(), any_json()).prop_map(|(f, t)| json!({"from": f, "to": t})),
        any_json().prop_map(|by| json!({"op": "inc", "by": by})),
        any_json(),
    ];
    let changes = prop::collection::btree_map(path, change, 0..4)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
        .boxed();
    let instance = wordish(&["goblin1", "$session", "nobody", "bad id!"]);
    let payload = prop_oneof![
        (instance.clone(), changes.clone())
            .prop_map(|(i, c)| json!({"target": {"instanceId": i}, "stateChanges": c})),
        (instance.clone(), any_json())
            .prop_map(|(i, a)| json!({"instanceId": i, "actorId": "a", "actor": a})),
        (instance, changes)
            .prop_map(|(i, c)| json!({"finalState": {i.as_str().unwrap_or("x"): c}})),
        any_json(),
    ];
    let optional = |v: BoxedStrategy<Value>| prop::option::weighted(0.8, v);
    (
        optional(id),
        optional(session),
        optional(event_type),
        optional(payload.boxed()),
        optional(any_json()),
        optional(any_json()),
    )
        .prop_map(|(id, session, t, payload, ts, sum)| {
            let mut m = Map::new();
            for (k, v) in [
                ("id", id),
                ("sessionId", session),
                ("type", t),
                ("payload", payload),
                ("clientTimestamp", ts),
                ("checksum", sum),
            ] {
                if let Some(v) = v {
                    m.insert(k.to_owned(), v);
                }
            }
            Value::Object(m)
        })
}

/// A client frame: a known or odd action with fields that are right, wrong or missing.
fn frame_shaped() -> impl Strategy<Value = Value> {
    let action = wordish(&[
        "subscribe",
        "submit",
        "replay",
        "unsubscribe",
        "ping",
        "ephemeral",
        "Subscribe",
    ]);
    let number = prop_oneof![
        (0u64..10).prop_map(Value::from),
        Just(json!((1u64 << 53) - 1)),
        Just(json!(1u64 << 53)),
        Just(json!(-1)),
        Just(json!(1.5)),
        any_json(),
    ];
    let fields = prop::collection::btree_map(
        prop::sample::select(
            &[
                "sessionId",
                "since",
                "from",
                "to",
                "type",
                "payload",
                "requestId",
                "extra",
            ][..],
        ),
        prop_oneof![wordish(&["s", "fuzz-session", "cursor"]), number],
        0..6,
    );
    (
        prop::option::weighted(0.9, action),
        fields,
        prop::option::weighted(0.5, envelope_shaped()),
    )
        .prop_map(|(action, fields, event)| {
            let mut m: Map<String, Value> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            if let Some(a) = action {
                m.insert("action".into(), a);
            }
            if let Some(e) = event {
                m.insert("event".into(), e);
            }
            Value::Object(m)
        })
}

proptest! {
    // A failing case is printed shrunk; save it under tests/fuzz/regressions/<target>/ (replayed
    // above) rather than in a proptest-regressions file next to a lib.rs this crate lacks.
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_break_the_parsers(data in prop::collection::vec(any::<u8>(), 0..512)) {
        harness::client_message(&data);
        harness::envelope(&data);
    }

    #[test]
    fn arbitrary_json_never_breaks_the_parsers(value in any_json()) {
        let text = value.to_string();
        harness::client_message(text.as_bytes());
        harness::envelope(text.as_bytes());
        harness::client_message(json!({"action": "submit", "event": value}).to_string().as_bytes());
    }

    #[test]
    fn protocol_shaped_frames_get_only_documented_answers(frame in frame_shaped()) {
        harness::client_message(frame.to_string().as_bytes());
    }

    #[test]
    fn protocol_shaped_envelopes_get_only_documented_answers(event in envelope_shaped()) {
        harness::envelope(event.to_string().as_bytes());
        harness::client_message(json!({"action": "submit", "event": event}).to_string().as_bytes());
    }
}
