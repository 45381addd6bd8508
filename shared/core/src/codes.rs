//! The error codes of the wire contract.
//!
//! One enum so that every layer (core validation, stores, services, HTTP) maps its failures to
//! exactly the codes PROTOCOL.md lists, and the HTTP status for each code is decided in one place.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An error code as sent in `error` and `event:error` frames and in HTTP error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not JSON, or not an object, or a field has the wrong shape.
    InvalidMessage,
    /// The `action` names nothing the server knows.
    UnknownAction,
    /// The event envelope or its state-change conventions are invalid.
    InvalidEvent,
    /// The payload is larger than the configured limit.
    PayloadTooLarge,
    /// The event's `checksum` does not match its payload.
    ChecksumMismatch,
    /// Missing, expired or badly signed token.
    Unauthorized,
    /// The caller may not do this (role, membership, server-only event type).
    Forbidden,
    /// `submit`, `replay` or `ephemeral` on a session the connection is not subscribed to.
    NotSubscribed,
    /// The session does not exist.
    SessionNotFound,
    /// The GM ended the session: it takes no more events (its log stays readable).
    SessionEnded,
    /// A compare-and-set precondition failed; the answer carries the current values.
    Conflict,
    /// Too many events or messages in a short time.
    RateLimited,
    /// A backing service is unavailable, or the session is fenced; retry later.
    Unavailable,
    /// An unexpected server fault; details are logged, never sent.
    Internal,
    /// HTTP only: the addressed resource does not exist.
    NotFound,
}

impl ErrorCode {
    /// Every code, for exhaustive tests and documentation.
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::InvalidMessage,
        ErrorCode::UnknownAction,
        ErrorCode::InvalidEvent,
        ErrorCode::PayloadTooLarge,
        ErrorCode::ChecksumMismatch,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotSubscribed,
        ErrorCode::SessionNotFound,
        ErrorCode::SessionEnded,
        ErrorCode::Conflict,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::NotFound,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::UnknownAction => "unknown_action",
            ErrorCode::InvalidEvent => "invalid_event",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::ChecksumMismatch => "checksum_mismatch",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotSubscribed => "not_subscribed",
            ErrorCode::SessionNotFound => "session_not_found",
            ErrorCode::SessionEnded => "session_ended",
            ErrorCode::Conflict => "conflict",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::NotFound => "not_found",
        }
    }

    /// The HTTP status PROTOCOL.md gives this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidMessage
            | ErrorCode::UnknownAction
            | ErrorCode::InvalidEvent
            | ErrorCode::ChecksumMismatch => 400,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden | ErrorCode::NotSubscribed => 403,
            ErrorCode::SessionNotFound | ErrorCode::NotFound => 404,
            ErrorCode::Conflict | ErrorCode::SessionEnded => 409,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde_names() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).unwrap();
            assert_eq!(back, code);
        }
    }

    #[test]
    fn statuses_follow_the_contract() {
        assert_eq!(ErrorCode::InvalidEvent.http_status(), 400);
        assert_eq!(ErrorCode::Unauthorized.http_status(), 401);
        assert_eq!(ErrorCode::Forbidden.http_status(), 403);
        assert_eq!(ErrorCode::NotFound.http_status(), 404);
        assert_eq!(ErrorCode::Conflict.http_status(), 409);
        assert_eq!(ErrorCode::RateLimited.http_status(), 429);
        assert_eq!(ErrorCode::Unavailable.http_status(), 503);
    }
}
