//! The `GameEvent` envelope, its validation, and who may send which type.
//!
//! The server understands only the envelope: a UUID id, a well-formed type, the session, a
//! bounded payload and an optional checksum. Everything else in the payload belongs to client
//! plugins, except the state-change conventions parsed in [`crate::changes`].

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::canonical::{CHECKSUM_PREFIX, canonical_json, checksum, sha256_hex};
use crate::codes::ErrorCode;
use crate::ids::{EventId, Sequence, SessionId, UserId};

/// Default payload limit: 24 KiB of compact JSON, so a whole event fits API Gateway's 32 KB frame.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 24 * 1024;

/// Longest accepted event type string.
pub const MAX_TYPE_LEN: usize = 128;

/// A committed game event, as stored, replayed and broadcast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GameEvent {
    /// Client-chosen UUID; the idempotency key.
    pub id: EventId,
    /// Server-assigned, per session, gap-free.
    pub sequence: Sequence,
    /// Server time in milliseconds since the epoch.
    pub timestamp: u64,
    /// The client's own clock, advisory only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_timestamp: Option<u64>,
    /// Taken from the verified token, never from the client's JSON.
    pub user_id: UserId,
    /// The session this event belongs to.
    pub session_id: SessionId,
    /// `<namespace>:<name>[:<name>…]`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Opaque to the server except for the state-change conventions.
    pub payload: Value,
    /// `sha256:<hex>` of the canonical payload, when the client sent one (for
    /// `core:dice:roll`, of the payload without `result`: see [`crate::dice`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

impl GameEvent {
    /// The dedup hash of this event's content (type and payload): a re-submitted id must match it.
    pub fn content_hash(&self) -> String {
        content_hash(&self.event_type, &self.payload)
    }
}

/// The dedup hash of an event's content: SHA-256 hex of the canonical `[type, content]`, where
/// the content is [`crate::dice::submitted_content`]: the payload, except that a
/// `core:dice:roll` leaves out `payload.result`.
///
/// Why here and not in the pipeline: every adapter (the memory log, the Redis commit script's
/// id map, the SQLite and MongoDB archive ids, the id maps rebuilt from the archive on
/// rehydration) hashes through this one function, and they hash *stored* events, which carry
/// the server's roll. Leaving the result out of the hash makes the hash of a stored roll equal
/// to the hash of its submission, so a re-sent roll (same id, same formula and purpose) is a
/// duplicate answered with the original result, on every adapter and after any rebuild, and a
/// different formula or purpose under the same id is still `IdReused`. A hash carried from
/// the submission would be lost whenever ids are rebuilt from stored events.
pub fn content_hash(event_type: &str, payload: &Value) -> String {
    let content = crate::dice::submitted_content(event_type, payload);
    let pair = Value::Array(vec![
        Value::String(event_type.to_owned()),
        content.into_owned(),
    ]);
    sha256_hex(canonical_json(&pair).as_bytes())
}

/// An envelope as a client submits it, after validation. `userId`, `sequence` and `timestamp`
/// are not part of it: the server supplies them.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmittedEvent {
    /// The client's UUID, normalized to lower-case hyphenated form.
    pub id: EventId,
    /// The session the client addresses.
    pub session_id: SessionId,
    /// The validated type.
    pub event_type: String,
    /// The payload, unchanged.
    pub payload: Value,
    /// The client's clock, if sent.
    pub client_timestamp: Option<u64>,
    /// The verified checksum, if sent.
    pub checksum: Option<String>,
}

impl SubmittedEvent {
    /// Stamps the server's fields onto the envelope.
    pub fn into_event(self, sequence: Sequence, timestamp: u64, user_id: UserId) -> GameEvent {
        GameEvent {
            id: self.id,
            sequence,
            timestamp,
            client_timestamp: self.client_timestamp,
            user_id,
            session_id: self.session_id,
            event_type: self.event_type,
            payload: self.payload,
            checksum: self.checksum,
        }
    }

    /// The dedup hash of this submission's content.
    pub fn content_hash(&self) -> String {
        content_hash(&self.event_type, &self.payload)
    }
}

/// Largest `clientTimestamp` accepted: 2^53 − 1 ms, exact in every JSON client.
pub const MAX_SAFE_TIMESTAMP: u64 = (1 << 53) - 1;

/// Limits applied to every submitted envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeLimits {
    /// Maximum payload size as compact UTF-8 JSON.
    pub max_payload_bytes: usize,
}

impl Default for EnvelopeLimits {
    fn default() -> Self {
        Self {
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
        }
    }
}

impl EnvelopeLimits {
    /// The one payload-size check, for submitted events, server events and ephemeral messages:
    /// the size is the compact UTF-8 JSON, as the frame carries it.
    pub fn check_payload(&self, payload: &Value) -> Result<(), EnvelopeError> {
        let size = serde_json::to_vec(payload).map_or(usize::MAX, |v| v.len());
        if size > self.max_payload_bytes {
            return Err(EnvelopeError::PayloadTooLarge {
                size,
                limit: self.max_payload_bytes,
            });
        }
        Ok(())
    }
}

/// Why an envelope was refused. Each variant maps to one wire code (see [`EnvelopeError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnvelopeError {
    /// The event is not a JSON object. Edge: `invalid_event`.
    #[error("event must be a JSON object")]
    NotAnObject,
    /// A required field is absent. Edge: `invalid_event`.
    #[error("event.{0} is required")]
    MissingField(&'static str),
    /// A field has the wrong JSON type. Edge: `invalid_event`.
    #[error("event.{field} must be {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// `id` is not a UUID. Edge: `invalid_event`.
    #[error("event.id must be a UUID, got {0:?}")]
    BadId(String),
    /// `type` does not follow the grammar. Edge: `invalid_event`.
    #[error("event.type {value:?} is invalid: {reason}")]
    BadType {
        /// The offending type (truncated).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The event addresses another session than the one it was sent for. Edge: `invalid_event`.
    #[error("event.sessionId {got:?} does not match the session {expected:?}")]
    WrongSession {
        /// The session the caller addressed.
        expected: String,
        /// The session in the event.
        got: String,
    },
    /// The payload exceeds the limit. Edge: `payload_too_large`.
    #[error("payload is {size} bytes, over the limit of {limit} bytes")]
    PayloadTooLarge {
        /// Compact size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// `checksum` is not of the form `sha256:<64 hex>`. Edge: `invalid_event`.
    #[error("event.checksum must be \"sha256:\" followed by 64 hex digits")]
    BadChecksumFormat,
    /// `checksum` does not match the payload. Edge: `checksum_mismatch`.
    #[error("checksum does not match the payload (expected {expected})")]
    ChecksumMismatch {
        /// The checksum the server computed.
        expected: String,
    },
}

impl EnvelopeError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            EnvelopeError::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            EnvelopeError::ChecksumMismatch { .. } => ErrorCode::ChecksumMismatch,
            _ => ErrorCode::InvalidEvent,
        }
    }
}

/// Extracts the event id from a raw submission if it is a usable UUID string, so an error can be
/// answered as `event:error` with `tempId`; `None` means the answer is a plain `error` frame.
pub fn usable_id(raw: &Value) -> Option<EventId> {
    let id = raw.get("id")?.as_str()?;
    uuid::Uuid::parse_str(id)
        .ok()
        .map(|u| EventId::new(u.hyphenated().to_string()))
}

/// Validates a raw submitted envelope. `userId`, `sequence` and `timestamp` in the JSON are
/// ignored: the server supplies them.
pub fn validate_submission(
    raw: &Value,
    limits: &EnvelopeLimits,
) -> Result<SubmittedEvent, EnvelopeError> {
    let obj = raw.as_object().ok_or(EnvelopeError::NotAnObject)?;

    let id = match obj.get("id") {
        None | Some(Value::Null) => return Err(EnvelopeError::MissingField("id")),
        Some(Value::String(s)) => {
            let uuid = uuid::Uuid::parse_str(s).map_err(|_| EnvelopeError::BadId(truncate(s)))?;
            EventId::new(uuid.hyphenated().to_string())
        }
        Some(_) => {
            return Err(EnvelopeError::WrongType {
                field: "id",
                expected: "a UUID string",
            });
        }
    };

    let session_id = match obj.get("sessionId") {
        None | Some(Value::Null) => return Err(EnvelopeError::MissingField("sessionId")),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 => SessionId::new(s.clone()),
        Some(_) => {
            return Err(EnvelopeError::WrongType {
                field: "sessionId",
                expected: "a non-empty string of at most 128 characters",
            });
        }
    };

    let event_type = match obj.get("type") {
        None | Some(Value::Null) => return Err(EnvelopeError::MissingField("type")),
        Some(Value::String(s)) => {
            validate_type(s)?;
            s.clone()
        }
        Some(_) => {
            return Err(EnvelopeError::WrongType {
                field: "type",
                expected: "a string",
            });
        }
    };

    let payload = match obj.get("payload") {
        None => return Err(EnvelopeError::MissingField("payload")),
        Some(p) => p.clone(),
    };
    limits.check_payload(&payload)?;

    let client_timestamp = match obj.get("clientTimestamp") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|t| *t <= MAX_SAFE_TIMESTAMP)
                .ok_or(EnvelopeError::WrongType {
                    field: "clientTimestamp",
                    expected: "a non-negative integer of at most 2^53 - 1 (milliseconds since the epoch)",
                })?,
        ),
    };

    let checksum_field = match obj.get("checksum") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let hex_part = s
                .strip_prefix(CHECKSUM_PREFIX)
                .ok_or(EnvelopeError::BadChecksumFormat)?;
            if hex_part.len() != 64 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(EnvelopeError::BadChecksumFormat);
            }
            // For a roll, the checksum covers the submission without any client `result`
            // (the server replaces it), like the dedup hash.
            let expected = checksum(&crate::dice::submitted_content(&event_type, &payload));
            if !expected.eq_ignore_ascii_case(s) {
                return Err(EnvelopeError::ChecksumMismatch { expected });
            }
            Some(expected)
        }
        Some(_) => return Err(EnvelopeError::BadChecksumFormat),
    };

    Ok(SubmittedEvent {
        id,
        session_id,
        event_type,
        payload,
        client_timestamp,
        checksum: checksum_field,
    })
}

/// Checks the type grammar: `plugin` or `core`, then one or more `:`-separated lowercase parts
/// of `[a-z0-9_-]`.
pub fn validate_type(value: &str) -> Result<(), EnvelopeError> {
    let bad = |reason| EnvelopeError::BadType {
        value: truncate(value),
        reason,
    };
    if value.len() > MAX_TYPE_LEN {
        return Err(bad("longer than 128 characters"));
    }
    let mut parts = value.split(':');
    let namespace = parts.next().unwrap_or_default();
    if namespace != "plugin" && namespace != "core" {
        return Err(bad("the namespace must be `plugin` or `core`"));
    }
    let mut names = 0;
    for part in parts {
        if part.is_empty() {
            return Err(bad("empty name part"));
        }
        if !part
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(bad("name parts are lowercase [a-z0-9_-]"));
        }
        names += 1;
    }
    if names == 0 {
        return Err(bad("expected <namespace>:<name>"));
    }
    Ok(())
}

/// Who is sending an event; decides which `core:*` types are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// A campaign member without the GM role.
    Player,
    /// The campaign's GM, or a member with `role: gm`.
    Gm,
    /// The server itself (HTTP routes that commit events).
    Server,
}

/// What a type requires of its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypePermission {
    /// Any subscribed client: `plugin:*`, `core:chat`, `core:dice:roll`, `core:token:*`.
    Client,
    /// The GM: `core:gm_*`.
    Gm,
    /// The server only: `core:session:*`, `core:snapshot*` and every other `core:*` type.
    ServerOnly,
}

/// The permission a (grammatically valid) type requires.
pub fn type_permission(event_type: &str) -> TypePermission {
    if event_type.starts_with("plugin:")
        || event_type == "core:chat"
        || event_type == "core:dice:roll"
        || event_type.starts_with("core:token:")
    {
        TypePermission::Client
    } else if event_type.starts_with("core:gm_") {
        TypePermission::Gm
    } else {
        TypePermission::ServerOnly
    }
}

/// A sender may not submit this type. Edge: `forbidden`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{event_type} may not be sent by {who}")]
pub struct TypeForbidden {
    /// The refused type.
    pub event_type: String,
    /// Who tried (for the message).
    pub who: &'static str,
}

/// Checks that `sender` may submit `event_type`.
pub fn check_type_permission(event_type: &str, sender: Sender) -> Result<(), TypeForbidden> {
    let allowed = match (type_permission(event_type), sender) {
        (_, Sender::Server) => true,
        (TypePermission::Client, _) => true,
        (TypePermission::Gm, Sender::Gm) => true,
        (TypePermission::Gm, Sender::Player) => false,
        (TypePermission::ServerOnly, _) => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(TypeForbidden {
            event_type: event_type.to_owned(),
            who: match (type_permission(event_type), sender) {
                (TypePermission::Gm, _) => "a player (GM only)",
                _ => "a client (server only)",
            },
        })
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "6f1c2a64-3b1e-4c7d-9a7e-2d4b8f0c1e55";

    fn raw() -> Value {
        json!({"id": ID, "sessionId": "s1", "type": "plugin:dnd5e:attack",
               "payload": {"target": {"instanceId": "goblin1"}}})
    }

    fn with(key: &str, value: Value) -> Value {
        let mut r = raw();
        r[key] = value;
        r
    }

    fn without(key: &str) -> Value {
        let mut r = raw();
        r.as_object_mut().unwrap().remove(key);
        r
    }

    fn check(raw: &Value) -> Result<SubmittedEvent, EnvelopeError> {
        validate_submission(raw, &EnvelopeLimits::default())
    }

    #[test]
    fn given_a_well_formed_envelope_then_it_is_accepted_and_server_fields_are_ignored() {
        let mut r = raw();
        r["userId"] = json!("mallory");
        r["sequence"] = json!(99);
        r["clientTimestamp"] = json!(1_700_000_000_000u64);
        let ok = check(&r).unwrap();
        assert_eq!(ok.id.as_str(), ID);
        assert_eq!(ok.client_timestamp, Some(1_700_000_000_000));
        let event = ok.into_event(Sequence(3), 42, UserId::new("alice"));
        assert_eq!(event.user_id, UserId::new("alice"));
        assert_eq!(event.sequence, Sequence(3));
    }

    #[test]
    fn given_any_uuid_form_then_the_id_is_normalized() {
        let ok = check(&with("id", json!(ID.to_uppercase()))).unwrap();
        assert_eq!(ok.id.as_str(), ID);
        let ok = check(&with("id", json!(ID.replace('-', "")))).unwrap();
        assert_eq!(ok.id.as_str(), ID);
    }

    #[test]
    fn given_missing_fields_then_each_is_named() {
        for field in ["id", "sessionId", "type", "payload"] {
            assert_eq!(
                check(&without(field)),
                Err(EnvelopeError::MissingField(field))
            );
        }
        assert_eq!(
            check(&json!("not an object")),
            Err(EnvelopeError::NotAnObject)
        );
    }

    #[test]
    fn given_a_bad_uuid_then_invalid_event() {
        let err = check(&with("id", json!("not-a-uuid"))).unwrap_err();
        assert!(matches!(err, EnvelopeError::BadId(_)));
        assert_eq!(err.code(), ErrorCode::InvalidEvent);
        assert!(matches!(
            check(&with("id", json!(12))),
            Err(EnvelopeError::WrongType { field: "id", .. })
        ));
        assert_eq!(usable_id(&with("id", json!("nope"))), None);
        assert_eq!(usable_id(&raw()).unwrap().as_str(), ID);
    }

    #[test]
    fn given_a_session_id_of_the_wrong_type_then_invalid_event() {
        for bad in [
            json!(5),
            json!(""),
            json!({"id": "s1"}),
            json!("x".repeat(129)),
        ] {
            let err = check(&with("sessionId", bad)).unwrap_err();
            assert!(matches!(
                err,
                EnvelopeError::WrongType {
                    field: "sessionId",
                    ..
                }
            ));
            assert_eq!(err.code(), ErrorCode::InvalidEvent);
        }
    }

    #[test]
    fn given_bad_type_grammar_then_invalid_event() {
        for bad in [
            "attack",
            "plugin",
            "plugin:",
            "plugin::attack",
            "Plugin:dnd5e:attack",
            "plugin:DnD5e:attack",
            "game:dnd5e:attack",
            "plugin:dnd5e:att ack",
            "plugin:dnd5e:attack!",
        ] {
            let err = check(&with("type", json!(bad))).unwrap_err();
            assert!(
                matches!(err, EnvelopeError::BadType { .. }),
                "{bad}: {err:?}"
            );
            assert_eq!(err.code(), ErrorCode::InvalidEvent);
        }
        let long = format!("plugin:{}", "a".repeat(130));
        assert!(check(&with("type", json!(long))).is_err());
        assert!(check(&with("type", json!(7))).is_err());
        for good in [
            "plugin:dnd5e:attack",
            "core:token:move",
            "core:gm_override",
            "plugin:x-y_1:z",
        ] {
            assert!(validate_type(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn given_a_payload_over_the_limit_then_payload_too_large() {
        let big = json!({"blob": "x".repeat(DEFAULT_MAX_PAYLOAD_BYTES)});
        let err = check(&with("payload", big)).unwrap_err();
        assert!(matches!(err, EnvelopeError::PayloadTooLarge { .. }));
        assert_eq!(err.code(), ErrorCode::PayloadTooLarge);
        let limits = EnvelopeLimits {
            max_payload_bytes: 10,
        };
        assert!(validate_submission(&with("payload", json!("12345678")), &limits).is_ok());
        assert!(validate_submission(&with("payload", json!("123456789")), &limits).is_err());
    }

    #[test]
    fn given_a_checksum_then_it_is_verified() {
        let r = raw();
        let good = checksum(&r["payload"]);
        assert!(check(&with("checksum", json!(good))).is_ok());
        let err = check(&with(
            "checksum",
            json!(format!("sha256:{}", "0".repeat(64))),
        ))
        .unwrap_err();
        assert!(matches!(err, EnvelopeError::ChecksumMismatch { .. }));
        assert_eq!(err.code(), ErrorCode::ChecksumMismatch);
        for bad in [json!("md5:abc"), json!("sha256:xyz"), json!(5)] {
            let err = check(&with("checksum", bad)).unwrap_err();
            assert_eq!(err, EnvelopeError::BadChecksumFormat);
        }
    }

    #[test]
    fn given_a_bad_client_timestamp_then_invalid_event() {
        for bad in [json!(-1), json!("now"), json!(1.5)] {
            assert!(matches!(
                check(&with("clientTimestamp", bad)),
                Err(EnvelopeError::WrongType {
                    field: "clientTimestamp",
                    ..
                })
            ));
        }
    }

    #[test]
    fn content_hash_ignores_spelling_and_depends_on_type_and_payload() {
        let a: Value = serde_json::from_str(r#"{"b": 1.0, "a": 2}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":2,"b":1}"#).unwrap();
        assert_eq!(
            content_hash("plugin:x:y", &a),
            content_hash("plugin:x:y", &b)
        );
        assert_ne!(
            content_hash("plugin:x:y", &a),
            content_hash("plugin:x:z", &a)
        );
        assert_ne!(
            content_hash("plugin:x:y", &a),
            content_hash("plugin:x:y", &json!({"a": 3}))
        );
    }

    #[test]
    fn a_roll_is_hashed_and_checksummed_without_its_result() {
        let submitted = json!({"formula": "1d20", "purpose": "init"});
        let rolled = json!({"formula": "1d20", "purpose": "init",
                            "result": {"dice": [{"sides": 20, "value": 7, "kept": true}], "total": 7}});
        assert_eq!(
            content_hash("core:dice:roll", &submitted),
            content_hash("core:dice:roll", &rolled)
        );
        assert_ne!(
            content_hash("core:dice:roll", &submitted),
            content_hash(
                "core:dice:roll",
                &json!({"formula": "1d20+1", "purpose": "init"})
            )
        );
        // Other types keep `result` in their content.
        assert_ne!(
            content_hash("plugin:x:y", &submitted),
            content_hash("plugin:x:y", &rolled)
        );
        let mut r = raw();
        r["type"] = json!("core:dice:roll");
        r["payload"] = rolled.clone();
        r["checksum"] = json!(checksum(&submitted));
        let ok = check(&r).unwrap();
        assert_eq!(ok.checksum, Some(checksum(&submitted)));
        r["checksum"] = json!(checksum(&rolled));
        assert!(matches!(
            check(&r),
            Err(EnvelopeError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn type_permissions_follow_the_contract() {
        use Sender::*;
        for t in [
            "plugin:dnd5e:attack",
            "core:chat",
            "core:dice:roll",
            "core:token:move",
        ] {
            for s in [Player, Gm, Server] {
                assert!(check_type_permission(t, s).is_ok(), "{t} by {s:?}");
            }
        }
        assert!(check_type_permission("core:gm_override", Player).is_err());
        assert!(check_type_permission("core:gm_override", Gm).is_ok());
        for t in [
            "core:session:actor_added",
            "core:session:actor_removed",
            "core:snapshot",
            "core:snapshot_created",
            "core:compacted_state",
        ] {
            assert!(check_type_permission(t, Player).is_err(), "{t}");
            assert!(check_type_permission(t, Gm).is_err(), "{t}");
            assert!(check_type_permission(t, Server).is_ok(), "{t}");
        }
    }
}
