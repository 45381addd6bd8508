//! Wire fixtures: one JSON file per client action and server frame (and their notable shapes),
//! each parsed into the protocol types, re-serialized, and compared with the original as JSON.
//!
//! The fixtures are what other implementations (browser clients, GM tools, SDKs) can test
//! against, so this suite also checks that they cover every name PROTOCOL.md lists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use dlab_core::canonical::checksum;
use dlab_core::dice::{DICE_ROLL_TYPE, Formula, RollResult, submitted_content};
use dlab_core::event::{EnvelopeLimits, validate_submission};
use dlab_core::protocol::{ClientMessage, ClientRequest, ServerFrame, parse_client_message};
use serde_json::Value;

/// The actions of PROTOCOL.md's client → server table, typed from the contract.
const CONTRACT_ACTIONS: [&str; 6] = [
    "subscribe",
    "submit",
    "replay",
    "unsubscribe",
    "ping",
    "ephemeral",
];

/// The frames of PROTOCOL.md's server → client table, typed from the contract.
const CONTRACT_FRAMES: [&str; 12] = [
    "session:subscribed",
    "events:batch",
    "event:confirmed",
    "event:applied",
    "event:error",
    "snapshot:required",
    "session:unsubscribed",
    "conflict:resolution_needed",
    "presence",
    "ephemeral",
    "pong",
    "error",
];

/// Frames that answer a client action and so may echo its `requestId`.
const ANSWER_FRAMES: [&str; 8] = [
    "session:subscribed",
    "events:batch",
    "event:confirmed",
    "event:error",
    "snapshot:required",
    "session:unsubscribed",
    "pong",
    "error",
];

struct Fixture {
    file: String,
    text: String,
    json: Value,
}

fn fixtures(prefix: &str) -> Vec<Fixture> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            file.ends_with(".json") && (file.starts_with("client_") || file.starts_with("server_")),
            "{file}: fixtures/ holds only client_*.json and server_*.json wire fixtures"
        );
        if !file.starts_with(prefix) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        found.push(Fixture { file, text, json });
    }
    found.sort_by(|a, b| a.file.cmp(&b.file));
    assert!(
        !found.is_empty(),
        "no {prefix}*.json fixture in {}",
        dir.display()
    );
    found
}

/// Asserts that a fixture is named after what it holds: `<prefix><name>[_<variant>].json`, with
/// the wire name's `:` written `_`.
fn assert_named_after(fixture: &Fixture, prefix: &str, wire_name: &str) {
    let stem = fixture.file[prefix.len()..].trim_end_matches(".json");
    let expected = wire_name.replace(':', "_");
    assert!(
        stem == expected || stem.starts_with(&format!("{expected}_")),
        "{} holds `{wire_name}`; name it {prefix}{expected}[_<variant>].json",
        fixture.file
    );
}

fn client_requests() -> Vec<(Fixture, ClientRequest)> {
    fixtures("client_")
        .into_iter()
        .map(|f| {
            let request =
                parse_client_message(&f.text).unwrap_or_else(|e| panic!("{}: {e}", f.file));
            (f, request)
        })
        .collect()
}

fn server_frames() -> Vec<(Fixture, ServerFrame)> {
    fixtures("server_")
        .into_iter()
        .map(|f| {
            let frame: ServerFrame =
                serde_json::from_str(&f.text).unwrap_or_else(|e| panic!("{}: {e}", f.file));
            (f, frame)
        })
        .collect()
}

#[test]
fn every_client_fixture_parses_and_reserializes_to_the_same_json() {
    for (fixture, request) in client_requests() {
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            fixture.json,
            "{} does not round-trip",
            fixture.file
        );
        let via_serde: ClientRequest = serde_json::from_value(fixture.json.clone()).unwrap();
        assert_eq!(via_serde, request, "{}", fixture.file);
        assert_eq!(fixture.json["action"], request.message.action_name());
        assert_named_after(&fixture, "client_", request.message.action_name());
    }
}

#[test]
fn every_server_fixture_parses_and_reserializes_to_the_same_json() {
    for (fixture, frame) in server_frames() {
        assert_eq!(
            serde_json::to_value(&frame).unwrap(),
            fixture.json,
            "{} does not round-trip",
            fixture.file
        );
        let text: Value = serde_json::from_str(&frame.to_json()).unwrap();
        assert_eq!(text, fixture.json, "{}: to_json differs", fixture.file);
        assert_eq!(fixture.json["event"], frame.name(), "{}", fixture.file);
        assert_named_after(&fixture, "server_", frame.name());
    }
}

/// Marks the variant of a frame; an exhaustive match, so a new variant does not compile here
/// until it is given a slot, and then fails until it has a fixture.
fn frame_slot(frame: &ServerFrame) -> usize {
    match frame {
        ServerFrame::SessionSubscribed { .. } => 0,
        ServerFrame::EventsBatch { .. } => 1,
        ServerFrame::EventConfirmed { .. } => 2,
        ServerFrame::EventApplied(_) => 3,
        ServerFrame::EventError { .. } => 4,
        ServerFrame::SnapshotRequired { .. } => 5,
        ServerFrame::SessionUnsubscribed { .. } => 6,
        ServerFrame::ConflictResolutionNeeded { .. } => 7,
        ServerFrame::Presence { .. } => 8,
        ServerFrame::Ephemeral { .. } => 9,
        ServerFrame::Pong { .. } => 10,
        ServerFrame::Error { .. } => 11,
    }
}

/// The same for client actions.
fn action_slot(message: &ClientMessage) -> usize {
    match message {
        ClientMessage::Subscribe { .. } => 0,
        ClientMessage::Submit { .. } => 1,
        ClientMessage::Replay { .. } => 2,
        ClientMessage::Unsubscribe { .. } => 3,
        ClientMessage::Ping => 4,
        ClientMessage::Ephemeral { .. } => 5,
    }
}

#[test]
fn fixtures_cover_every_action_and_frame_of_the_contract() {
    let contract_actions: BTreeSet<&str> = CONTRACT_ACTIONS.into_iter().collect();
    let contract_frames: BTreeSet<&str> = CONTRACT_FRAMES.into_iter().collect();
    assert_eq!(
        ClientMessage::ACTIONS.into_iter().collect::<BTreeSet<_>>(),
        contract_actions,
        "ClientMessage::ACTIONS differs from PROTOCOL.md"
    );
    assert_eq!(
        ServerFrame::NAMES.into_iter().collect::<BTreeSet<_>>(),
        contract_frames,
        "ServerFrame::NAMES differs from PROTOCOL.md"
    );

    let requests = client_requests();
    let mut action_seen = [false; 6];
    for (_, request) in &requests {
        action_seen[action_slot(&request.message)] = true;
    }
    let fixture_actions: BTreeSet<&str> = requests
        .iter()
        .map(|(_, r)| r.message.action_name())
        .collect();
    assert_eq!(
        fixture_actions, contract_actions,
        "client fixtures miss an action"
    );
    assert!(
        action_seen.iter().all(|&seen| seen),
        "a ClientMessage variant has no fixture"
    );

    let frames = server_frames();
    let mut frame_seen = [false; 12];
    for (_, frame) in &frames {
        frame_seen[frame_slot(frame)] = true;
    }
    let fixture_frames: BTreeSet<&str> = frames.iter().map(|(_, f)| f.name()).collect();
    assert_eq!(
        fixture_frames, contract_frames,
        "server fixtures miss a frame"
    );
    assert!(
        frame_seen.iter().all(|&seen| seen),
        "a ServerFrame variant has no fixture"
    );
}

#[test]
fn every_action_and_answer_frame_has_a_fixture_echoing_a_request_id() {
    let mut with_id: BTreeMap<(&str, &str), bool> = BTreeMap::new();
    for (_, request) in client_requests() {
        let entry = with_id
            .entry(("action", request.message.action_name()))
            .or_default();
        *entry |= request.request_id.is_some();
    }
    for (_, frame) in server_frames() {
        let entry = with_id.entry(("frame", frame.name())).or_default();
        *entry |= frame.request_id().is_some();
    }
    let wanted = CONTRACT_ACTIONS
        .iter()
        .map(|name| ("action", *name))
        .chain(ANSWER_FRAMES.iter().map(|name| ("frame", *name)));
    for key in wanted {
        assert_eq!(
            with_id.get(&key),
            Some(&true),
            "no fixture of {key:?} carries a requestId"
        );
    }
}

#[test]
fn the_notable_shapes_have_fixtures() {
    let frames = server_frames();
    assert!(
        frames.iter().any(|(_, f)| matches!(
            f,
            ServerFrame::EventError { code: dlab_core::codes::ErrorCode::Conflict, current: Some(c), .. }
                if !c.is_empty()
        )),
        "a conflict event:error with current"
    );
    assert!(
        frames.iter().any(|(_, f)| matches!(
            f,
            ServerFrame::EventsBatch { events, .. }
                if events.len() == 2
                    && events.iter().any(|e| e.client_timestamp.is_some() && e.checksum.is_some())
                    && events.iter().any(|e| e.client_timestamp.is_none() && e.checksum.is_none())
        )),
        "an events:batch with two events, one with clientTimestamp and checksum"
    );
    assert!(
        frames.iter().any(|(_, f)| matches!(
            f,
            ServerFrame::EventsBatch { events, is_last: true, .. } if events.is_empty()
        )),
        "the empty last events:batch"
    );
    // A trusted roll: the server's result in the confirmation and in the broadcast event.
    let roll_result = frames.iter().find_map(|(_, f)| match f {
        ServerFrame::EventConfirmed {
            result: Some(r), ..
        } => Some(r.clone()),
        _ => None,
    });
    let roll_result = roll_result.expect("an event:confirmed of a core:dice:roll with its result");
    let formula = frames
        .iter()
        .find_map(|(_, f)| match f {
            ServerFrame::EventApplied(e)
                if e.event_type == DICE_ROLL_TYPE && e.payload["result"] == roll_result =>
            {
                e.payload["formula"].as_str().map(str::to_owned)
            }
            _ => None,
        })
        .expect("an event:applied of the same core:dice:roll");
    let parsed: RollResult = serde_json::from_value(roll_result).unwrap();
    let formula = Formula::parse(&formula).unwrap();
    assert!(formula.min() <= parsed.total && parsed.total <= formula.max());
    assert_eq!(parsed.dice.len() as u32, formula.dice_count());
}

#[test]
fn the_fixture_envelopes_are_valid_and_their_checksums_match() {
    for (fixture, request) in client_requests() {
        if let ClientMessage::Submit { event } = &request.message {
            validate_submission(event, &EnvelopeLimits::default())
                .unwrap_or_else(|e| panic!("{}: {e}", fixture.file));
        }
    }
    for (fixture, frame) in server_frames() {
        let events = match &frame {
            ServerFrame::EventsBatch { events, .. } => events.clone(),
            ServerFrame::EventApplied(event) => vec![event.clone()],
            _ => continue,
        };
        for event in events {
            if let Some(sum) = &event.checksum {
                // A roll's checksum covers its submission: the payload without `result`.
                assert_eq!(
                    sum,
                    &checksum(&submitted_content(&event.event_type, &event.payload)),
                    "{}: {}",
                    fixture.file,
                    event.id
                );
            }
        }
    }
}
