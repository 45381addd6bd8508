//! The parse harness of the fuzz targets, shared with the stable tests.
//!
//! One body, included by path (`#[path = ...] mod harness;`) into the `cargo fuzz` targets of
//! this crate and into `tests/tests/fuzz_corpus.rs`, which replays the committed corpus and a
//! proptest stream on stable. It is a file rather than a crate so the fuzz build (nightly,
//! sanitizers) compiles only `dlab-core` and `serde_json`, and CI's workspace does not gain a
//! member.
//!
//! Each entry point takes arbitrary bytes the way the server meets them at its edge and runs the
//! same parse chain the WebSocket service runs (PROTOCOL.md):
//! `parse_client_message` → for a submit, `usable_id` and `validate_submission` → the type's
//! permission → `parse_changes` → the projection's `check` and `apply` against a session with one
//! goblin. Beyond "no panic" it asserts what the contract promises of each step:
//! - a refused frame is `invalid_message` or `unknown_action`, with a message, and its `error`
//!   frame serializes; echoed actions and request ids stay within their bounds;
//! - an accepted frame's own wire form parses back to the same request;
//! - a refused envelope is `invalid_event`, `payload_too_large` or `checksum_mismatch`; an
//!   accepted one has a usable id, a valid type and a payload within the limit;
//! - the projection refuses with `invalid_event` or `conflict` only, and a refusal changes
//!   nothing.

use dlab_core::changes::{ACTOR_ADDED, parse_changes};
use dlab_core::codes::ErrorCode;
use dlab_core::event::{
    EnvelopeLimits, GameEvent, Sender, check_type_permission, usable_id, validate_submission,
    validate_type,
};
use dlab_core::ids::{EventId, Sequence, SessionId, UserId};
use dlab_core::protocol::{ClientMessage, MAX_REQUEST_ID_CHARS, ServerFrame, parse_client_message};
use dlab_core::state::GameSessionState;
use serde_json::{Value, json};

/// Codes a client frame may be refused with.
pub const FRAME_CODES: [ErrorCode; 2] = [ErrorCode::InvalidMessage, ErrorCode::UnknownAction];

/// Codes an event envelope may be refused with.
pub const ENVELOPE_CODES: [ErrorCode; 3] = [
    ErrorCode::InvalidEvent,
    ErrorCode::PayloadTooLarge,
    ErrorCode::ChecksumMismatch,
];

/// Codes the projection may refuse a valid envelope with.
pub const APPLY_CODES: [ErrorCode; 2] = [ErrorCode::InvalidEvent, ErrorCode::Conflict];

/// Longest unknown action the server echoes (protocol.rs keeps it private; the contract is
/// "bounded", and 64 characters is what it promises today).
const MAX_ECHOED_ACTION_CHARS: usize = 64;

/// Where an input stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not UTF-8: a WebSocket text frame never carries it (the socket layer refuses it).
    NotText,
    /// Not JSON (for the envelope target, whose input is a JSON document).
    NotJson,
    /// Refused with this code.
    Refused(ErrorCode),
    /// Accepted by every step.
    Accepted,
}

/// A client text frame, as the WebSocket service reads it.
pub fn client_message(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Outcome::NotText;
    };
    match parse_client_message(text) {
        Err(e) => {
            assert!(
                FRAME_CODES.contains(&e.code),
                "frame refused with {}",
                e.code
            );
            assert!(!e.message.is_empty(), "a refusal without a message");
            if let Some(action) = &e.action {
                assert!(action.chars().count() <= MAX_ECHOED_ACTION_CHARS);
            }
            if let Some(rid) = &e.request_id {
                assert!(rid.as_str().chars().count() <= MAX_REQUEST_ID_CHARS);
            }
            let code = e.code;
            let frame: Value = serde_json::from_str(&ServerFrame::from(e).to_json())
                .expect("an error frame is JSON");
            assert_eq!(frame["event"], "error");
            assert_eq!(frame["data"]["code"], code.as_str());
            Outcome::Refused(code)
        }
        Ok(request) => {
            let wire = serde_json::to_string(&request).expect("a request serializes");
            let again = parse_client_message(&wire)
                .unwrap_or_else(|e| panic!("the wire form {wire} of a request is refused: {e}"));
            assert_eq!(
                again, request,
                "the wire form {wire} parses to another request"
            );
            match &request.message {
                ClientMessage::Submit { event } => envelope_value(event),
                _ => Outcome::Accepted,
            }
        }
    }
}

/// A submitted event's JSON, as `submit` hands it to envelope validation.
pub fn envelope(data: &[u8]) -> Outcome {
    match serde_json::from_slice::<Value>(data) {
        Ok(value) => envelope_value(&value),
        Err(_) => Outcome::NotJson,
    }
}

fn envelope_value(raw: &Value) -> Outcome {
    let limits = EnvelopeLimits::default();
    let id = usable_id(raw);
    let submitted = match validate_submission(raw, &limits) {
        Err(e) => {
            assert!(
                ENVELOPE_CODES.contains(&e.code()),
                "envelope refused with {}",
                e.code()
            );
            assert!(!e.to_string().is_empty());
            return Outcome::Refused(e.code());
        }
        Ok(s) => s,
    };
    assert_eq!(
        Some(&submitted.id),
        id.as_ref(),
        "a valid envelope has a usable id"
    );
    validate_type(&submitted.event_type).expect("an accepted type is valid");
    limits
        .check_payload(&submitted.payload)
        .expect("an accepted payload is within the limit");
    assert_eq!(submitted.content_hash(), submitted.content_hash());
    assert!(
        check_type_permission(&submitted.event_type, Sender::Server).is_ok(),
        "the server may send every type"
    );
    if check_type_permission(&submitted.event_type, Sender::Player).is_ok() {
        assert!(check_type_permission(&submitted.event_type, Sender::Gm).is_ok());
    }
    let changes = parse_changes(&submitted.event_type, &submitted.payload);
    let event = submitted.into_event(Sequence(2), 1, UserId::new("fuzz"));
    let mut state = table(&event.session_id);
    let before = state.clone();
    let checked = state.check(&event);
    match state.apply(&event) {
        Err(e) => {
            assert!(
                APPLY_CODES.contains(&e.code()),
                "apply refused with {}",
                e.code()
            );
            assert_eq!(state, before, "a refused event changed the state");
            assert_eq!(
                checked.map_err(|e| e.code()),
                Err(e.code()),
                "check and apply differ"
            );
            Outcome::Refused(e.code())
        }
        Ok(()) => {
            assert!(checked.is_ok(), "check refused what apply took");
            assert!(changes.is_ok(), "apply took changes that do not parse");
            assert_eq!(state.last_event_sequence, Sequence(2));
            Outcome::Accepted
        }
    }
}

/// The event's session with one goblin (`goblin1`, 15 HP) at sequence 1.
fn table(session: &SessionId) -> GameSessionState {
    let session = session.clone();
    let mut state = GameSessionState::new(session.clone(), None);
    let added = GameEvent {
        id: EventId::new("00000000-0000-4000-8000-000000000001"),
        sequence: Sequence(1),
        timestamp: 0,
        client_timestamp: None,
        user_id: UserId::new("gm"),
        session_id: session,
        event_type: ACTOR_ADDED.to_owned(),
        payload: json!({"instanceId": "goblin1", "actorId": "goblin",
            "actor": {"name": "Goblin", "attributes": {"hp": {"value": 15, "max": 15}, "ac": 15}}}),
        checksum: None,
    };
    state.apply(&added).expect("the goblin joins");
    state
}
