//! Client actions and server frames of the WebSocket contract (PROTOCOL.md, "WebSocket").
//!
//! This module is the one Rust rendering of the wire format, so the Lambdas, the local gateway
//! and the test clients cannot drift apart. A client text frame is parsed once, at the edge, into
//! a [`ClientRequest`]; the parser is written by hand over `serde_json::Value` so that every
//! refusal is a [`FrameError`] naming the field at fault and keeping the `action` and `requestId`
//! the `error` frame must echo. Everything the server sends is a [`ServerFrame`], serialized as
//! `{"event": "<name>", "data": {...}}`. [`split_into_batches`] keeps `events:batch` frames under
//! API Gateway's frame limit.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::codes::ErrorCode;
use crate::event::GameEvent;
use crate::ids::{ConflictId, EventId, Sequence, SessionId, UserId};

/// Longest `requestId` a client may send, in characters (PROTOCOL.md: "string, ≤ 64 chars").
pub const MAX_REQUEST_ID_CHARS: usize = 64;

/// Longest `sessionId` accepted in an action, in UTF-8 bytes; the same bound the envelope's
/// `sessionId` has, so an id that passes here is never refused later for its length.
pub const MAX_SESSION_ID_LEN: usize = 128;

/// Longest ephemeral `type`, in UTF-8 bytes; the same bound as a stored event's type.
pub const MAX_EPHEMERAL_TYPE_LEN: usize = crate::event::MAX_TYPE_LEN;

/// Default budget of one server frame: well under API Gateway's 32 KB frame, leaving room for
/// the gateway's own framing, so a batch never closes the socket with 1009.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 28 * 1024;

/// Largest sequence a client may name (`since`, `from`, `to`): 2^53 − 1, the largest integer a
/// JSON number holds exactly in every client, far beyond any session's length. Larger values
/// are `invalid_message`, so no arithmetic on a client's number can overflow.
pub const MAX_SEQUENCE: u64 = (1 << 53) - 1;

/// Longest unknown action name echoed back in an `error` frame, so a hostile client cannot make
/// the server send its garbage back at full length.
const MAX_ECHOED_ACTION_CHARS: usize = 64;

/// The client's correlation id: echoed inside `data` of every answer and error it causes, so a
/// client can match answers to requests although frames may arrive in any order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RequestId(String);

/// A `requestId` longer than [`MAX_REQUEST_ID_CHARS`]; refused so echoes stay small and bounded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("requestId must be at most {MAX_REQUEST_ID_CHARS} characters, got {chars}")]
pub struct RequestIdTooLong {
    /// The length that was offered, in characters.
    pub chars: usize,
}

impl RequestId {
    /// Wraps a string as a request id, refusing one over [`MAX_REQUEST_ID_CHARS`] characters.
    pub fn new(value: impl Into<String>) -> Result<Self, RequestIdTooLong> {
        let value = value.into();
        let chars = value.chars().count();
        if chars > MAX_REQUEST_ID_CHARS {
            Err(RequestIdTooLong { chars })
        } else {
            Ok(Self(value))
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RequestId {
    type Error = RequestIdTooLong;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<RequestId> for String {
    fn from(value: RequestId) -> Self {
        value.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One client action, tagged by `action` on the wire (PROTOCOL.md's client → server table).
///
/// Serializes to the wire form; it is read only through [`parse_client_message`] (or
/// [`ClientRequest`]'s `Deserialize`), which gives precise errors.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(
    tag = "action",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ClientMessage {
    /// Follow a session: catch up from `since`, then receive live events.
    Subscribe {
        /// The session to follow.
        session_id: SessionId,
        /// The last sequence the client has applied; 0 means from the start.
        since: Sequence,
    },
    /// Append an event to a session.
    Submit {
        /// The raw envelope, validated later by [`crate::event::validate_submission`] so its
        /// errors name the envelope field and can be answered as `event:error`.
        event: Value,
    },
    /// Re-read a range of a session's log (`from < sequence <= to`).
    Replay {
        /// The session to read.
        session_id: SessionId,
        /// Exclusive lower bound.
        from: Sequence,
        /// Inclusive upper bound; `None` means the session's head.
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<Sequence>,
    },
    /// Stop following a session.
    Unsubscribe {
        /// The session to leave.
        session_id: SessionId,
    },
    /// Liveness check that also reports the heads of subscribed sessions.
    Ping,
    /// A message relayed to the session's other connections and never stored (cursors, pings on
    /// the map).
    Ephemeral {
        /// The session whose connections receive it.
        session_id: SessionId,
        /// The client's own message type (JSON `type`).
        #[serde(rename = "type")]
        event_type: String,
        /// Relayed unchanged.
        payload: Value,
    },
}

impl ClientMessage {
    /// Every action name, in PROTOCOL.md's order: for routing tables, error messages and tests.
    pub const ACTIONS: [&'static str; 6] = [
        "subscribe",
        "submit",
        "replay",
        "unsubscribe",
        "ping",
        "ephemeral",
    ];

    /// The wire name of this action, as echoed in `error {action}`.
    pub fn action_name(&self) -> &'static str {
        match self {
            ClientMessage::Subscribe { .. } => "subscribe",
            ClientMessage::Submit { .. } => "submit",
            ClientMessage::Replay { .. } => "replay",
            ClientMessage::Unsubscribe { .. } => "unsubscribe",
            ClientMessage::Ping => "ping",
            ClientMessage::Ephemeral { .. } => "ephemeral",
        }
    }
}

/// A parsed client frame: the action plus the optional `requestId` to echo in its answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientRequest {
    /// The client's correlation id, if it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    /// The action and its fields.
    #[serde(flatten)]
    pub message: ClientMessage,
}

impl ClientRequest {
    /// Parses an already-decoded JSON frame; see [`parse_client_message`] for the rules.
    pub fn from_value(value: Value) -> Result<Self, FrameError> {
        let Value::Object(obj) = value else {
            return Err(FrameError::bare(
                ErrorCode::InvalidMessage,
                format!("message must be a JSON object, got {}", kind(&value)),
            ));
        };

        let echoed_action = match obj.get("action") {
            Some(Value::String(name)) => Some(truncate(name, MAX_ECHOED_ACTION_CHARS)),
            _ => None,
        };
        let request_id = read_request_id(&obj);
        let echoed_request_id = request_id.clone().ok().flatten();
        let fail = |code: ErrorCode, message: String| FrameError {
            code,
            message,
            action: echoed_action.clone(),
            request_id: echoed_request_id.clone(),
        };
        let request_id = request_id.map_err(|message| fail(ErrorCode::InvalidMessage, message))?;

        let action = match obj.get("action") {
            None | Some(Value::Null) => {
                return Err(fail(
                    ErrorCode::InvalidMessage,
                    "action is required".to_owned(),
                ));
            }
            Some(Value::String(name)) => name.clone(),
            Some(other) => {
                return Err(fail(
                    ErrorCode::InvalidMessage,
                    format!("action must be a string, got {}", kind(other)),
                ));
            }
        };

        let mut fields = Fields {
            obj,
            action: &action,
        };
        let message = match action.as_str() {
            "subscribe" => fields.subscribe(),
            "submit" => fields.submit(),
            "replay" => fields.replay(),
            "unsubscribe" => fields.unsubscribe(),
            "ping" => Ok(ClientMessage::Ping),
            "ephemeral" => fields.ephemeral(),
            other => {
                return Err(fail(
                    ErrorCode::UnknownAction,
                    format!(
                        "unknown action {:?}; expected one of: {}",
                        truncate(other, MAX_ECHOED_ACTION_CHARS),
                        ClientMessage::ACTIONS.join(", ")
                    ),
                ));
            }
        }
        .map_err(|message| fail(ErrorCode::InvalidMessage, message))?;

        Ok(ClientRequest {
            request_id,
            message,
        })
    }
}

impl<'de> Deserialize<'de> for ClientRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        ClientRequest::from_value(value).map_err(de::Error::custom)
    }
}

/// A client frame that cannot be acted on. Edge: an `error` frame with `code`, `message`, and
/// the `action` and `requestId` echoed when they could be read (see `From<FrameError>` for
/// [`ServerFrame`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{code}: {message}")]
pub struct FrameError {
    /// `invalid_message` or `unknown_action`.
    pub code: ErrorCode,
    /// Human-readable, names the field at fault; never contains server internals.
    pub message: String,
    /// The frame's `action` when it was a string (unknown ones truncated to 64 characters).
    pub action: Option<String>,
    /// The frame's `requestId` when it was usable.
    pub request_id: Option<RequestId>,
}

impl FrameError {
    fn bare(code: ErrorCode, message: String) -> Self {
        Self {
            code,
            message,
            action: None,
            request_id: None,
        }
    }
}

/// Parses one client text frame into a typed request (STYLE: parse at the edge, once).
///
/// Checks, in order: JSON, an object, `requestId` (absent, `null`, or a string of at most 64
/// characters), `action` (a string naming a known action; otherwise `unknown_action`), then the
/// action's fields. Every refusal but `unknown_action` is `invalid_message`, with a message naming
/// the field. Unknown extra fields are ignored so the contract can grow without breaking clients.
/// A submit's `event` is kept raw: the envelope is validated by the service, which decides
/// between `event:error` and `error`.
pub fn parse_client_message(text: &str) -> Result<ClientRequest, FrameError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        FrameError::bare(
            ErrorCode::InvalidMessage,
            format!(
                "message is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    ClientRequest::from_value(value)
}

fn read_request_id(obj: &Map<String, Value>) -> Result<Option<RequestId>, String> {
    match obj.get("requestId") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => RequestId::new(s.clone())
            .map(Some)
            .map_err(|e| e.to_string()),
        Some(other) => Err(format!(
            "requestId must be a string of at most {MAX_REQUEST_ID_CHARS} characters, got {}",
            kind(other)
        )),
    }
}

/// The fields of one action's object, read by name with messages of the form
/// `<action>.<field> must be …`.
struct Fields<'a> {
    obj: Map<String, Value>,
    action: &'a str,
}

impl Fields<'_> {
    fn subscribe(&mut self) -> Result<ClientMessage, String> {
        Ok(ClientMessage::Subscribe {
            session_id: self.session_id()?,
            since: self.sequence("since")?,
        })
    }

    fn submit(&mut self) -> Result<ClientMessage, String> {
        Ok(ClientMessage::Submit {
            event: self.required("event")?,
        })
    }

    fn replay(&mut self) -> Result<ClientMessage, String> {
        let session_id = self.session_id()?;
        let from = self.sequence("from")?;
        let to = match self.obj.get("to") {
            None | Some(Value::Null) => None,
            Some(_) => Some(self.sequence("to")?),
        };
        if let Some(to) = to
            && to < from
        {
            return Err(format!(
                "{}.to must not be below from ({from}), got {to}",
                self.action
            ));
        }
        Ok(ClientMessage::Replay {
            session_id,
            from,
            to,
        })
    }

    fn unsubscribe(&mut self) -> Result<ClientMessage, String> {
        Ok(ClientMessage::Unsubscribe {
            session_id: self.session_id()?,
        })
    }

    fn ephemeral(&mut self) -> Result<ClientMessage, String> {
        let session_id = self.session_id()?;
        let event_type = match self.required("type")? {
            Value::String(s) if !s.is_empty() && s.len() <= MAX_EPHEMERAL_TYPE_LEN => s,
            other => {
                return Err(self.wrong(
                    "type",
                    &format!("a non-empty string of at most {MAX_EPHEMERAL_TYPE_LEN} bytes"),
                    &other,
                ));
            }
        };
        let payload = self
            .obj
            .remove("payload")
            .ok_or_else(|| self.missing("payload"))?;
        Ok(ClientMessage::Ephemeral {
            session_id,
            event_type,
            payload,
        })
    }

    fn session_id(&mut self) -> Result<SessionId, String> {
        match self.required("sessionId")? {
            Value::String(s) if !s.is_empty() && s.len() <= MAX_SESSION_ID_LEN => {
                Ok(SessionId::new(s))
            }
            other => Err(self.wrong(
                "sessionId",
                &format!("a non-empty string of at most {MAX_SESSION_ID_LEN} bytes"),
                &other,
            )),
        }
    }

    /// A sequence number: a non-negative integer no larger than [`MAX_SEQUENCE`], so every
    /// later `+ 1` is exact and JavaScript clients read it without rounding.
    fn sequence(&mut self, field: &str) -> Result<Sequence, String> {
        let value = self.required(field)?;
        value
            .as_u64()
            .filter(|n| *n <= MAX_SEQUENCE)
            .map(Sequence)
            .ok_or_else(|| {
                self.wrong(
                    field,
                    "a non-negative integer of at most 9007199254740991 (2^53 - 1)",
                    &value,
                )
            })
    }

    /// Takes a field that must be present and not `null`.
    fn required(&mut self, field: &str) -> Result<Value, String> {
        match self.obj.remove(field) {
            None | Some(Value::Null) => Err(self.missing(field)),
            Some(value) => Ok(value),
        }
    }

    fn missing(&self, field: &str) -> String {
        format!("{}.{field} is required", self.action)
    }

    fn wrong(&self, field: &str, expected: &str, got: &Value) -> String {
        format!(
            "{}.{field} must be {expected}, got {}",
            self.action,
            describe(got)
        )
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A short description of an offending value: numbers are shown (they explain `-1` or `1.5`),
/// strings only by length (they may be long or private).
fn describe(value: &Value) -> String {
    match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.is_empty() => "an empty string".to_owned(),
        Value::String(s) => format!("a string of {} characters", s.chars().count()),
        other => kind(other).to_owned(),
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// Whether a subscriber arrived or left, in a `presence` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceStatus {
    /// A connection subscribed to the session.
    Joined,
    /// A connection unsubscribed or disconnected.
    Left,
}

/// Everything the server sends on a WebSocket: `{"event": "<name>", "data": {...}}`.
///
/// Answer frames (`session:subscribed`, `events:batch`, `event:confirmed`, `event:error`,
/// `snapshot:required`, `session:unsubscribed`, `pong`, `error`) carry the client's `requestId`
/// inside `data` when one was sent; broadcast frames never do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data", rename_all_fields = "camelCase")]
pub enum ServerFrame {
    /// The subscription is live; catch-up (`events:batch` or `snapshot:required`) follows.
    #[serde(rename = "session:subscribed")]
    SessionSubscribed {
        /// The session subscribed to.
        session_id: SessionId,
        /// The session's latest sequence at subscription time.
        head: Sequence,
        /// The `since` the client sent.
        since: Sequence,
        /// Lowest sequence still replayable; 1 when nothing was ever trimmed.
        floor: Sequence,
        /// Echo of the client's `requestId`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
    },
    /// A contiguous run of events, in sequence order, answering `subscribe` or `replay`.
    #[serde(rename = "events:batch")]
    EventsBatch {
        /// The session the events belong to.
        session_id: SessionId,
        /// The events, ascending by sequence.
        events: Vec<GameEvent>,
        /// Whether this is the last batch of the answer.
        is_last: bool,
        /// False only on a last batch where the server stopped early; continue with `replay`.
        complete: bool,
        /// Echo of the client's `requestId`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
    },
    /// The sender's event is committed (or was already: `duplicate`).
    #[serde(rename = "event:confirmed")]
    EventConfirmed {
        /// The id the client chose (equal to `event_id`; the name the seed clients expect).
        temp_id: EventId,
        /// The committed event's id.
        event_id: EventId,
        /// Its sequence.
        sequence: Sequence,
        /// Its server timestamp, milliseconds since the epoch.
        timestamp: u64,
        /// True when the id was already committed with the same content.
        duplicate: bool,
        /// For a `core:dice:roll`, the server's `payload.result` (`{dice, total}`) of the stored
        /// event (for a duplicate, the original roll), so the sender learns its roll without
        /// a replay. Absent for every other type.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
        /// Echo of the client's `requestId`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
    },
    /// A committed event, broadcast to the session's other connections; `data` is the event
    /// itself, so it never carries a `requestId`.
    #[serde(rename = "event:applied")]
    EventApplied(GameEvent),
    /// A submit with a usable event id was refused.
    #[serde(rename = "event:error")]
    EventError {
        /// The refused event's id.
        temp_id: EventId,
        /// Why.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
        /// For `conflict` only: the current value of every path the event addressed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        current: Option<BTreeMap<String, Value>>,
        /// For `rate_limited` only: milliseconds until a retry can succeed (an addition to the
        /// contract, documented in the README).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
        /// Echo of the client's `requestId`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
    },
    /// The requested catch-up is not replayable; load state over HTTP, live events follow.
    #[serde(rename = "snapshot:required")]
    SnapshotRequired {
        /// The session.
        session_id: SessionId,
        /// The latest snapshot's sequence, 0 when none exists yet.
        snapshot_sequence: Sequence,
        /// HTTP path to load from.
        href: String,
        /// Echo of the client's `requestId`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
    },
    /// The connection no longer follows the session (asked for, or removed from the campaign).
    #[serde(rename = "session:unsubscribed")]
    SessionUnsubscribed {
        /// The session left.
        session_id: SessionId,
        /// Echo of the client's `requestId`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
    },
    /// To the GM: blind writes raced on one path and need a decision.
    #[serde(rename = "conflict:resolution_needed")]
    ConflictResolutionNeeded {
        /// The conflict report entry.
        conflict_id: ConflictId,
        /// The session.
        session_id: SessionId,
        /// What happened, for a person.
        description: String,
        /// The choices, as the conflict report describes them.
        options: Vec<Value>,
    },
    /// Another connection joined or left the session.
    #[serde(rename = "presence")]
    Presence {
        /// The session.
        session_id: SessionId,
        /// Who.
        user_id: UserId,
        /// Joined or left.
        status: PresenceStatus,
    },
    /// A relayed `ephemeral` action from another connection.
    #[serde(rename = "ephemeral")]
    Ephemeral {
        /// The session.
        session_id: SessionId,
        /// The sender, from its verified token.
        user_id: UserId,
        /// The sender's message type (JSON `type`).
        #[serde(rename = "type")]
        event_type: String,
        /// Relayed unchanged.
        payload: Value,
    },
    /// Answer to `ping`: the head of every session this connection follows.
    #[serde(rename = "pong")]
    Pong {
        /// Session → head sequence; ordered so the frame is deterministic.
        heads: BTreeMap<SessionId, Sequence>,
        /// Echo of the client's `requestId`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
    },
    /// Failure of a non-submit action, a submit without a usable event id, or a bad frame.
    #[serde(rename = "error")]
    Error {
        /// Why.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
        /// The action that failed, when it could be read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        action: Option<String>,
        /// For `rate_limited` only: milliseconds until a retry can succeed (an addition to the
        /// contract, documented in the README).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
        /// Echo of the client's `requestId`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
    },
}

impl ServerFrame {
    /// Every frame name, in PROTOCOL.md's order: for docs, client SDKs and coverage tests.
    pub const NAMES: [&'static str; 12] = [
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

    /// The wire name (`event`) of this frame.
    pub fn name(&self) -> &'static str {
        match self {
            ServerFrame::SessionSubscribed { .. } => "session:subscribed",
            ServerFrame::EventsBatch { .. } => "events:batch",
            ServerFrame::EventConfirmed { .. } => "event:confirmed",
            ServerFrame::EventApplied(_) => "event:applied",
            ServerFrame::EventError { .. } => "event:error",
            ServerFrame::SnapshotRequired { .. } => "snapshot:required",
            ServerFrame::SessionUnsubscribed { .. } => "session:unsubscribed",
            ServerFrame::ConflictResolutionNeeded { .. } => "conflict:resolution_needed",
            ServerFrame::Presence { .. } => "presence",
            ServerFrame::Ephemeral { .. } => "ephemeral",
            ServerFrame::Pong { .. } => "pong",
            ServerFrame::Error { .. } => "error",
        }
    }

    /// The frame as compact JSON text, ready to post to a connection.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            .expect("a frame always serializes: its map keys are strings and its numbers finite")
    }

    /// The `requestId` this frame echoes, if any.
    pub fn request_id(&self) -> Option<&RequestId> {
        match self {
            ServerFrame::SessionSubscribed { request_id, .. }
            | ServerFrame::EventsBatch { request_id, .. }
            | ServerFrame::EventConfirmed { request_id, .. }
            | ServerFrame::EventError { request_id, .. }
            | ServerFrame::SnapshotRequired { request_id, .. }
            | ServerFrame::SessionUnsubscribed { request_id, .. }
            | ServerFrame::Pong { request_id, .. }
            | ServerFrame::Error { request_id, .. } => request_id.as_ref(),
            ServerFrame::EventApplied(_)
            | ServerFrame::ConflictResolutionNeeded { .. }
            | ServerFrame::Presence { .. }
            | ServerFrame::Ephemeral { .. } => None,
        }
    }

    /// Sets the echoed `requestId` on an answer frame, so services can build a frame first and
    /// correlate it in one place; broadcast frames are returned unchanged.
    pub fn with_request_id(mut self, id: Option<RequestId>) -> Self {
        match &mut self {
            ServerFrame::SessionSubscribed { request_id, .. }
            | ServerFrame::EventsBatch { request_id, .. }
            | ServerFrame::EventConfirmed { request_id, .. }
            | ServerFrame::EventError { request_id, .. }
            | ServerFrame::SnapshotRequired { request_id, .. }
            | ServerFrame::SessionUnsubscribed { request_id, .. }
            | ServerFrame::Pong { request_id, .. }
            | ServerFrame::Error { request_id, .. } => *request_id = id,
            ServerFrame::EventApplied(_)
            | ServerFrame::ConflictResolutionNeeded { .. }
            | ServerFrame::Presence { .. }
            | ServerFrame::Ephemeral { .. } => {}
        }
        self
    }
}

impl From<FrameError> for ServerFrame {
    fn from(error: FrameError) -> Self {
        ServerFrame::Error {
            code: error.code,
            message: error.message,
            action: error.action,
            retry_after_ms: None,
            request_id: error.request_id,
        }
    }
}

/// Splits events, in order, into runs whose `events:batch` frames each fit `max_frame_bytes`.
///
/// The budget counts the whole frame: envelope, the events' own `sessionId` (the longest among
/// them), `isLast`, `complete`, and a worst-case `requestId` of 64 characters, so the caller may
/// add any valid `requestId` afterwards. Packing is greedy. An empty input gives one empty batch,
/// the `isLast: true` answer to a client that is up to date. An event too big for any frame gets
/// a batch of its own (the payload limit keeps that from happening at the default sizes).
pub fn split_into_batches(events: &[GameEvent], max_frame_bytes: usize) -> Vec<Vec<GameEvent>> {
    let session_id = events
        .iter()
        .map(|e| &e.session_id)
        .max_by_key(json_len)
        .cloned()
        .unwrap_or_else(|| SessionId::new(""));
    split_with_overhead(events, max_frame_bytes, batch_overhead(&session_id))
}

/// The `events:batch` frames answering a `subscribe` catch-up or a `replay`: each within
/// `max_frame_bytes`, the last one `isLast: true` with the given `complete` (false when the
/// server stopped early), every other one `complete: true`.
pub fn batch_frames(
    session_id: &SessionId,
    events: &[GameEvent],
    complete: bool,
    request_id: Option<&RequestId>,
    max_frame_bytes: usize,
) -> Vec<ServerFrame> {
    let batches = split_with_overhead(events, max_frame_bytes, batch_overhead(session_id));
    let count = batches.len();
    batches
        .into_iter()
        .enumerate()
        .map(|(i, events)| {
            let is_last = i + 1 == count;
            ServerFrame::EventsBatch {
                session_id: session_id.clone(),
                events,
                is_last,
                complete: complete || !is_last,
                request_id: request_id.cloned(),
            }
        })
        .collect()
}

fn split_with_overhead(
    events: &[GameEvent],
    max_frame_bytes: usize,
    overhead: usize,
) -> Vec<Vec<GameEvent>> {
    let mut batches = Vec::new();
    let mut current: Vec<GameEvent> = Vec::new();
    let mut size = overhead;
    for event in events {
        let len = json_len(event);
        let separator = usize::from(!current.is_empty());
        if !current.is_empty() && size + separator + len > max_frame_bytes {
            batches.push(std::mem::take(&mut current));
            size = overhead;
        }
        size += usize::from(!current.is_empty()) + len;
        current.push(event.clone());
    }
    if !current.is_empty() || batches.is_empty() {
        batches.push(current);
    }
    batches
}

/// Size of an empty `events:batch` frame for this session with the costliest flags and the
/// costliest valid `requestId` (64 control characters, each escaped as six bytes).
fn batch_overhead(session_id: &SessionId) -> usize {
    let worst_request_id = RequestId::new("\u{0}".repeat(MAX_REQUEST_ID_CHARS))
        .expect("64 characters is within the requestId limit");
    json_len(&ServerFrame::EventsBatch {
        session_id: session_id.clone(),
        events: Vec::new(),
        is_last: false,
        complete: false,
        request_id: Some(worst_request_id),
    })
}

fn json_len<T: Serialize + ?Sized>(value: &T) -> usize {
    serde_json::to_vec(value)
        .expect("protocol values always serialize")
        .len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn parse_err(text: &str) -> FrameError {
        parse_client_message(text).expect_err("the frame must be refused")
    }

    fn assert_invalid(err: &FrameError, field: &str) {
        assert_eq!(err.code, ErrorCode::InvalidMessage, "{err:?}");
        assert!(
            err.message.contains(field),
            "message {:?} must name {field}",
            err.message
        );
    }

    fn rid(s: &str) -> Option<RequestId> {
        Some(RequestId::new(s).unwrap())
    }

    fn event(seq: u64, payload: Value) -> GameEvent {
        GameEvent {
            id: EventId::new(format!("00000000-0000-4000-8000-{seq:012}")),
            sequence: Sequence(seq),
            timestamp: 1_700_000_000_000 + seq,
            client_timestamp: None,
            user_id: UserId::new("user-1"),
            session_id: SessionId::new("session-1"),
            event_type: "plugin:dnd5e:attack".to_owned(),
            payload,
            checksum: None,
        }
    }

    // --- happy paths -------------------------------------------------------------------------

    #[test]
    fn given_every_action_when_parsed_then_fields_and_request_id_are_typed() {
        let cases = [
            (
                r#"{"action":"subscribe","sessionId":"s1","since":0,"requestId":"r1"}"#,
                ClientMessage::Subscribe {
                    session_id: SessionId::new("s1"),
                    since: Sequence(0),
                },
            ),
            (
                r#"{"action":"submit","event":{"id":"x"},"requestId":"r1"}"#,
                ClientMessage::Submit {
                    event: json!({"id": "x"}),
                },
            ),
            (
                r#"{"action":"replay","sessionId":"s1","from":3,"to":9,"requestId":"r1"}"#,
                ClientMessage::Replay {
                    session_id: SessionId::new("s1"),
                    from: Sequence(3),
                    to: Some(Sequence(9)),
                },
            ),
            (
                r#"{"action":"unsubscribe","sessionId":"s1","requestId":"r1"}"#,
                ClientMessage::Unsubscribe {
                    session_id: SessionId::new("s1"),
                },
            ),
            (r#"{"action":"ping","requestId":"r1"}"#, ClientMessage::Ping),
            (
                r#"{"action":"ephemeral","sessionId":"s1","type":"cursor","payload":null,"requestId":"r1"}"#,
                ClientMessage::Ephemeral {
                    session_id: SessionId::new("s1"),
                    event_type: "cursor".to_owned(),
                    payload: Value::Null,
                },
            ),
        ];
        let mut seen = Vec::new();
        for (text, expected) in cases {
            let request = parse_client_message(text).unwrap();
            assert_eq!(request.message, expected);
            assert_eq!(request.request_id, rid("r1"));
            assert_eq!(
                serde_json::to_value(&request).unwrap(),
                serde_json::from_str::<Value>(text).unwrap()
            );
            seen.push(request.message.action_name());
        }
        assert_eq!(seen, ClientMessage::ACTIONS);
    }

    #[test]
    fn given_optional_fields_null_or_absent_when_parsed_then_they_are_none() {
        let request = parse_client_message(
            r#"{"action":"replay","sessionId":"s","from":0,"to":null,"requestId":null}"#,
        )
        .unwrap();
        assert_eq!(request.request_id, None);
        assert_eq!(
            request.message,
            ClientMessage::Replay {
                session_id: SessionId::new("s"),
                from: Sequence(0),
                to: None
            }
        );
    }

    #[test]
    fn given_unknown_extra_fields_when_parsed_then_they_are_ignored() {
        let request = parse_client_message(r#"{"action":"ping","future":1}"#).unwrap();
        assert_eq!(request.message, ClientMessage::Ping);
    }

    #[test]
    fn given_a_request_id_of_64_multibyte_chars_when_parsed_then_it_is_accepted() {
        let id = "é".repeat(64);
        let text = json!({"action": "ping", "requestId": id}).to_string();
        assert_eq!(
            parse_client_message(&text).unwrap().request_id,
            rid(&"é".repeat(64))
        );
    }

    #[test]
    fn given_a_submit_whose_event_is_not_an_object_when_parsed_then_it_is_left_to_validation() {
        let request = parse_client_message(r#"{"action":"submit","event":"nope"}"#).unwrap();
        assert_eq!(
            request.message,
            ClientMessage::Submit {
                event: json!("nope")
            }
        );
    }

    #[test]
    fn given_json_text_when_deserialized_as_client_request_then_the_same_rules_apply() {
        let ok: ClientRequest = serde_json::from_str(r#"{"action":"ping"}"#).unwrap();
        assert_eq!(ok.message, ClientMessage::Ping);
        let err = serde_json::from_str::<ClientRequest>(r#"{"action":"subscribe"}"#).unwrap_err();
        assert!(err.to_string().contains("sessionId"), "{err}");
    }

    // --- frame-level errors ------------------------------------------------------------------

    #[test]
    fn given_text_that_is_not_json_when_parsed_then_invalid_message_without_echo() {
        let err = parse_err("{\"action\": \"ping\"");
        assert_invalid(&err, "JSON");
        assert_eq!((err.action, err.request_id), (None, None));
    }

    #[test]
    fn given_json_that_is_not_an_object_when_parsed_then_invalid_message_naming_the_message() {
        for text in ["[1,2]", "\"ping\"", "null", "3"] {
            let err = parse_err(text);
            assert_invalid(&err, "object");
            assert_eq!((err.action, err.request_id), (None, None));
        }
    }

    #[test]
    fn given_no_action_when_parsed_then_invalid_message_naming_action_and_keeping_request_id() {
        for text in [
            r#"{"requestId":"r9"}"#,
            r#"{"action":null,"requestId":"r9"}"#,
        ] {
            let err = parse_err(text);
            assert_invalid(&err, "action");
            assert_eq!(err.action, None);
            assert_eq!(err.request_id, rid("r9"));
        }
    }

    #[test]
    fn given_a_non_string_action_when_parsed_then_invalid_message_naming_action() {
        for text in [
            r#"{"action":5,"requestId":"r9"}"#,
            r#"{"action":{"name":"ping"},"requestId":"r9"}"#,
        ] {
            let err = parse_err(text);
            assert_invalid(&err, "action");
            assert_eq!(err.action, None);
            assert_eq!(err.request_id, rid("r9"));
        }
    }

    #[test]
    fn given_an_unknown_action_when_parsed_then_unknown_action_naming_it_and_echoing_it() {
        let err = parse_err(r#"{"action":"teleport","requestId":"r9"}"#);
        assert_eq!(err.code, ErrorCode::UnknownAction);
        assert!(err.message.contains("\"teleport\""), "{}", err.message);
        assert!(err.message.contains("subscribe"), "{}", err.message);
        assert_eq!(err.action.as_deref(), Some("teleport"));
        assert_eq!(err.request_id, rid("r9"));
    }

    #[test]
    fn given_a_huge_unknown_action_when_parsed_then_the_echo_is_truncated() {
        let text = json!({"action": "x".repeat(10_000)}).to_string();
        let err = parse_err(&text);
        assert_eq!(err.code, ErrorCode::UnknownAction);
        assert_eq!(err.action.unwrap().len(), 64);
        assert!(err.message.len() < 300, "{}", err.message);
    }

    #[test]
    fn given_an_action_with_different_case_when_parsed_then_it_is_unknown() {
        let err = parse_err(r#"{"action":"Ping"}"#);
        assert_eq!(err.code, ErrorCode::UnknownAction);
        assert_eq!(err.action.as_deref(), Some("Ping"));
    }

    #[test]
    fn given_a_non_string_request_id_when_parsed_then_invalid_message_keeping_the_action() {
        for text in [
            r#"{"action":"ping","requestId":42}"#,
            r#"{"action":"ping","requestId":["r"]}"#,
        ] {
            let err = parse_err(text);
            assert_invalid(&err, "requestId");
            assert_eq!(err.action.as_deref(), Some("ping"));
            assert_eq!(err.request_id, None);
        }
    }

    #[test]
    fn given_a_request_id_over_64_chars_when_parsed_then_invalid_message_keeping_the_action() {
        let text = json!({"action": "subscribe", "sessionId": "s", "since": 0,
                          "requestId": "r".repeat(65)})
        .to_string();
        let err = parse_err(&text);
        assert_invalid(&err, "requestId");
        assert!(err.message.contains("64"), "{}", err.message);
        assert_eq!(err.action.as_deref(), Some("subscribe"));
        assert_eq!(err.request_id, None);
    }

    // --- field errors of known actions -------------------------------------------------------

    /// Each case: a frame, the field its error must name.
    fn field_error_cases() -> Vec<(Value, &'static str)> {
        vec![
            (
                json!({"action": "subscribe", "since": 0}),
                "subscribe.sessionId",
            ),
            (
                json!({"action": "subscribe", "sessionId": 5, "since": 0}),
                "subscribe.sessionId",
            ),
            (
                json!({"action": "subscribe", "sessionId": "", "since": 0}),
                "subscribe.sessionId",
            ),
            (
                json!({"action": "subscribe", "sessionId": "s".repeat(129), "since": 0}),
                "subscribe.sessionId",
            ),
            (
                json!({"action": "unsubscribe", "sessionId": "é".repeat(65)}),
                "unsubscribe.sessionId",
            ),
            (
                json!({"action": "subscribe", "sessionId": "s"}),
                "subscribe.since",
            ),
            (
                json!({"action": "subscribe", "sessionId": "s", "since": -1}),
                "subscribe.since",
            ),
            (
                json!({"action": "subscribe", "sessionId": "s", "since": 1.5}),
                "subscribe.since",
            ),
            (
                json!({"action": "subscribe", "sessionId": "s", "since": "3"}),
                "subscribe.since",
            ),
            (json!({"action": "submit"}), "submit.event"),
            (json!({"action": "submit", "event": null}), "submit.event"),
            (json!({"action": "replay", "from": 0}), "replay.sessionId"),
            (json!({"action": "replay", "sessionId": "s"}), "replay.from"),
            (
                json!({"action": "replay", "sessionId": "s", "from": -2}),
                "replay.from",
            ),
            (
                json!({"action": "replay", "sessionId": "s", "from": 0, "to": "9"}),
                "replay.to",
            ),
            (
                json!({"action": "replay", "sessionId": "s", "from": 0, "to": -1}),
                "replay.to",
            ),
            (
                json!({"action": "replay", "sessionId": "s", "from": 5, "to": 4}),
                "replay.to",
            ),
            (json!({"action": "unsubscribe"}), "unsubscribe.sessionId"),
            (
                json!({"action": "unsubscribe", "sessionId": true}),
                "unsubscribe.sessionId",
            ),
            (
                json!({"action": "ephemeral", "type": "t", "payload": 1}),
                "ephemeral.sessionId",
            ),
            (
                json!({"action": "ephemeral", "sessionId": "s", "payload": 1}),
                "ephemeral.type",
            ),
            (
                json!({"action": "ephemeral", "sessionId": "s", "type": 7, "payload": 1}),
                "ephemeral.type",
            ),
            (
                json!({"action": "ephemeral", "sessionId": "s", "type": "", "payload": 1}),
                "ephemeral.type",
            ),
            (
                json!({"action": "ephemeral", "sessionId": "s", "type": "t"}),
                "ephemeral.payload",
            ),
        ]
    }

    #[test]
    fn given_a_missing_or_wrong_typed_field_when_parsed_then_invalid_message_naming_it() {
        for (mut frame, field) in field_error_cases() {
            let action = frame["action"].as_str().unwrap().to_owned();
            frame["requestId"] = json!("req-7");
            let err = parse_err(&frame.to_string());
            assert_invalid(&err, field);
            assert_eq!(err.action.as_deref(), Some(action.as_str()), "{frame}");
            assert_eq!(err.request_id, rid("req-7"), "{frame}");
        }
    }

    #[test]
    fn given_a_field_error_without_request_id_when_parsed_then_only_the_action_is_kept() {
        let err = parse_err(r#"{"action":"subscribe","sessionId":5,"since":0}"#);
        assert_invalid(&err, "sessionId");
        assert!(err.message.contains("got 5"), "{}", err.message);
        assert_eq!(err.action.as_deref(), Some("subscribe"));
        assert_eq!(err.request_id, None);
    }

    #[test]
    fn given_a_frame_error_when_turned_into_a_frame_then_it_is_an_error_frame_echoing_both() {
        let err = parse_err(r#"{"action":"replay","requestId":"q"}"#);
        let frame = ServerFrame::from(err);
        assert_eq!(frame.name(), "error");
        let value: Value = serde_json::from_str(&frame.to_json()).unwrap();
        assert_eq!(value["event"], "error");
        assert_eq!(value["data"]["code"], "invalid_message");
        assert_eq!(value["data"]["action"], "replay");
        assert_eq!(value["data"]["requestId"], "q");
    }

    // --- server frames -----------------------------------------------------------------------

    #[test]
    fn given_an_answer_frame_when_request_id_is_set_then_it_is_echoed_inside_data() {
        let frame = ServerFrame::SessionUnsubscribed {
            session_id: SessionId::new("s"),
            request_id: None,
        }
        .with_request_id(rid("abc"));
        assert_eq!(frame.request_id(), rid("abc").as_ref());
        assert_eq!(
            serde_json::to_value(&frame).unwrap(),
            json!({"event": "session:unsubscribed", "data": {"sessionId": "s", "requestId": "abc"}})
        );
    }

    #[test]
    fn given_a_broadcast_frame_when_request_id_is_set_then_it_is_ignored() {
        let frame = ServerFrame::EventApplied(event(1, json!({}))).with_request_id(rid("abc"));
        assert_eq!(frame.request_id(), None);
        let value = serde_json::to_value(&frame).unwrap();
        assert!(value["data"].get("requestId").is_none());
        assert_eq!(value["data"]["sequence"], 1);
    }

    #[test]
    fn given_an_event_error_without_current_when_serialized_then_current_is_omitted() {
        let frame = ServerFrame::EventError {
            temp_id: EventId::new("e"),
            code: ErrorCode::Forbidden,
            message: "no".to_owned(),
            current: None,
            retry_after_ms: None,
            request_id: None,
        };
        assert_eq!(
            serde_json::to_value(&frame).unwrap(),
            json!({"event": "event:error", "data": {"tempId": "e", "code": "forbidden", "message": "no"}})
        );
    }

    #[test]
    fn given_a_request_id_over_64_chars_when_a_frame_is_deserialized_then_it_is_refused() {
        let text = json!({"event": "pong", "data": {"heads": {}, "requestId": "r".repeat(65)}});
        assert!(serde_json::from_value::<ServerFrame>(text).is_err());
    }

    #[test]
    fn given_a_pong_when_serialized_then_heads_are_ordered_by_session() {
        let frame = ServerFrame::Pong {
            heads: BTreeMap::from([
                (SessionId::new("b"), Sequence(2)),
                (SessionId::new("a"), Sequence(1)),
            ]),
            request_id: None,
        };
        assert_eq!(
            frame.to_json(),
            r#"{"event":"pong","data":{"heads":{"a":1,"b":2}}}"#
        );
        assert!(ServerFrame::NAMES.contains(&frame.name()));
    }

    // --- batching ----------------------------------------------------------------------------

    #[test]
    fn given_no_events_when_split_then_one_empty_batch() {
        assert_eq!(
            split_into_batches(&[], DEFAULT_MAX_FRAME_BYTES),
            vec![Vec::new()]
        );
    }

    #[test]
    fn given_small_events_when_split_at_the_default_then_one_batch() {
        let events: Vec<_> = (1..=20).map(|s| event(s, json!({"n": s}))).collect();
        assert_eq!(
            split_into_batches(&events, DEFAULT_MAX_FRAME_BYTES),
            vec![events]
        );
    }

    #[test]
    fn given_an_event_too_big_for_any_frame_when_split_then_it_is_alone() {
        let events = vec![
            event(1, json!("x".repeat(500))),
            event(2, json!(1)),
            event(3, json!(2)),
        ];
        let batches = split_into_batches(&events, 400);
        assert_eq!(batches[0], vec![events[0].clone()]);
        assert_eq!(batches.concat(), events);
    }

    #[test]
    fn given_the_largest_allowed_event_when_batched_at_the_default_then_its_frame_fits() {
        let long = |c: char, n: usize| std::iter::repeat_n(c, n).collect::<String>();
        let overhead = r#""""#.len();
        let payload = json!(long(
            'x',
            crate::event::DEFAULT_MAX_PAYLOAD_BYTES - overhead
        ));
        assert_eq!(json_len(&payload), crate::event::DEFAULT_MAX_PAYLOAD_BYTES);
        let big = GameEvent {
            id: EventId::new("0190a5b8-0000-7000-8000-000000000000"),
            sequence: Sequence(u64::MAX),
            timestamp: u64::MAX,
            client_timestamp: Some(u64::MAX),
            user_id: UserId::new(long('\u{1}', 128)),
            session_id: SessionId::new(long('\u{1}', MAX_SESSION_ID_LEN)),
            event_type: format!("plugin:{}", long('a', crate::event::MAX_TYPE_LEN - 7)),
            payload,
            checksum: Some(format!("sha256:{}", long('0', 64))),
        };
        let frames = batch_frames(
            &big.session_id.clone(),
            &[big],
            true,
            RequestId::new(long('\u{1}', 64)).ok().as_ref(),
            DEFAULT_MAX_FRAME_BYTES,
        );
        assert_eq!(frames.len(), 1);
        assert!(frames[0].to_json().len() <= DEFAULT_MAX_FRAME_BYTES);
    }

    #[test]
    fn given_an_early_stop_when_frames_are_built_then_only_the_last_is_last_and_incomplete() {
        let events: Vec<_> = (1..=6).map(|s| event(s, json!("y".repeat(300)))).collect();
        let frames = batch_frames(
            &SessionId::new("session-1"),
            &events,
            false,
            rid("r").as_ref(),
            1200,
        );
        assert!(frames.len() > 1);
        let flags: Vec<(bool, bool)> = frames
            .iter()
            .map(|f| match f {
                ServerFrame::EventsBatch {
                    is_last,
                    complete,
                    request_id,
                    ..
                } => {
                    assert_eq!(request_id, &rid("r"));
                    (*is_last, *complete)
                }
                other => panic!("unexpected frame {other:?}"),
            })
            .collect();
        let mut expected = vec![(false, true); frames.len() - 1];
        expected.push((true, false));
        assert_eq!(flags, expected);
    }

    fn arb_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9-]{0,40}",
            proptest::collection::vec(any::<char>(), 0..40).prop_map(|c| c.into_iter().collect()),
        ]
    }

    fn arb_event() -> impl Strategy<Value = GameEvent> {
        (
            any::<u64>(),
            any::<u64>(),
            proptest::option::of(any::<u64>()),
            arb_text(),
            arb_text(),
            proptest::collection::vec((arb_text(), any::<i64>()), 0..12),
            any::<bool>(),
        )
            .prop_map(|(seq, ts, cts, user, text, fields, with_checksum)| {
                let payload = Value::Object(
                    fields
                        .into_iter()
                        .map(|(k, v)| (k, json!([v, text.clone()])))
                        .collect(),
                );
                GameEvent {
                    id: EventId::new(uuid::Uuid::from_u64_pair(seq, ts).to_string()),
                    sequence: Sequence(seq),
                    timestamp: ts,
                    client_timestamp: cts,
                    user_id: UserId::new(user),
                    session_id: SessionId::new("sess\u{1}ion-é"),
                    event_type: "plugin:test:event".to_owned(),
                    checksum: with_checksum.then(|| crate::canonical::checksum(&payload)),
                    payload,
                }
            })
    }

    proptest! {
        #[test]
        fn given_any_events_when_split_then_every_frame_fits_and_order_is_kept(
            events in proptest::collection::vec(arb_event(), 0..40),
            slack in 0usize..6000,
            request_id in proptest::collection::vec(any::<char>(), 0..=64),
            is_last in any::<bool>(),
            complete in any::<bool>(),
        ) {
            let session_id = SessionId::new("sess\u{1}ion-é");
            let largest = events.iter().map(json_len).max().unwrap_or(0);
            let limit = batch_overhead(&session_id) + largest + slack;
            let request_id = RequestId::new(request_id.into_iter().collect::<String>()).unwrap();

            let batches = split_into_batches(&events, limit);

            prop_assert_eq!(batches.concat(), events.clone());
            prop_assert!(!batches.is_empty());
            if !events.is_empty() {
                prop_assert!(batches.iter().all(|b| !b.is_empty()));
            }
            for batch in &batches {
                let frame = ServerFrame::EventsBatch {
                    session_id: session_id.clone(),
                    events: batch.clone(),
                    is_last,
                    complete,
                    request_id: Some(request_id.clone()),
                };
                let len = frame.to_json().len();
                prop_assert!(len <= limit, "frame of {} bytes over the limit {}", len, limit);
            }
            for pair in batches.windows(2) {
                let mut grown = pair[0].clone();
                grown.push(pair[1][0].clone());
                let frame = ServerFrame::EventsBatch {
                    session_id: session_id.clone(),
                    events: grown,
                    is_last: false,
                    complete: false,
                    request_id: Some(RequestId::new("\u{0}".repeat(64)).unwrap()),
                };
                prop_assert!(frame.to_json().len() > limit, "greedy packing left room");
            }
        }
    }
}
