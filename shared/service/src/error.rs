//! Errors of the use cases, and the one place that maps them to wire codes.
//!
//! Each variant's doc says what the edge does with it: the WebSocket edge sends `error` (or
//! `event:error` for a submit whose event has a usable id) with [`ServiceError::code`] and
//! [`ServiceError::public_message`]; the HTTP edge answers `{"error": {code, message}}` with the
//! code's status. Faults the client cannot fix (`unavailable`, `internal`) are logged with their
//! whole source chain and answered without internals.

use std::collections::BTreeMap;
use std::time::Duration;

use dlab_core::changes::ChangeError;
use dlab_core::codes::ErrorCode;
use dlab_core::dice::DiceError;
use dlab_core::event::{EnvelopeError, TypeForbidden};
use dlab_core::ids::{EventId, Sequence, SessionId};
use dlab_core::protocol::FrameError;
use dlab_core::state::ApplyError;
use dlab_store::{ArchiveError, CommitError, InvalidCommit, StoreError};
use serde_json::Value;
use thiserror::Error;

use crate::auth::AuthError;

/// A use case failed. [`ServiceError::code`] is the wire code; [`ServiceError::public_message`]
/// is safe to send (internals are logged, never sent).
#[derive(Debug, Error)]
pub enum ServiceError {
    /// The client frame is malformed or names an unknown action. Edge: `error` with the frame
    /// error's code (`invalid_message` or `unknown_action`).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The event envelope is invalid. Edge: `invalid_event`, `payload_too_large` or
    /// `checksum_mismatch`, as the envelope error says.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The state-change conventions of the payload are malformed. Edge: `invalid_event`.
    #[error(transparent)]
    Changes(#[from] ChangeError),
    /// A `core:dice:roll` payload or formula is invalid; nothing was stored. Edge:
    /// `invalid_event`, naming the problem.
    #[error(transparent)]
    Dice(#[from] DiceError),
    /// The operating system's random generator failed, so a trusted roll could not be made;
    /// nothing was stored. Edge: `internal` (logged).
    #[error("the operating system's random generator failed")]
    Randomness(#[source] rand::rand_core::OsError),
    /// The token was refused. Edge: `unauthorized` (HTTP 401; a refused `$connect` is 401), or
    /// `unavailable` when the key set could not be fetched.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The caller's role does not allow this. Edge: `forbidden` (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// The event type is not allowed for this sender. Edge: `forbidden`.
    #[error(transparent)]
    TypeForbidden(#[from] TypeForbidden),
    /// The connection is not subscribed to the session. Edge: `not_subscribed`.
    #[error("not subscribed to session {0}")]
    NotSubscribed(SessionId),
    /// The session does not exist. Edge: `session_not_found` (HTTP 404).
    #[error("session {0} not found")]
    SessionNotFound(SessionId),
    /// The GM ended the session; it takes no more events, its log stays readable. Edge:
    /// `session_ended` (HTTP 409).
    #[error("session {0} has ended")]
    SessionEnded(SessionId),
    /// A resource does not exist. Edge (HTTP): 404 `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// The request body or parameters are invalid. Edge: `invalid_message` (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// The conflict was resolved already (by another GM, or with another decision). Edge:
    /// `conflict` (HTTP 409).
    #[error("conflict {0} is already resolved")]
    ConflictResolved(dlab_core::ids::ConflictId),
    /// A compare-and-set precondition failed; nothing was stored. Edge: `event:error` with code
    /// `conflict` and `current` (HTTP 409).
    #[error("state changed since the event was made; rebase and resubmit with a new id")]
    Conflict {
        /// Current value of every path of the event.
        current: BTreeMap<String, Value>,
    },
    /// The event cannot apply to the session's state (unknown instance, `inc` on a
    /// non-integer, …); nothing was stored. Edge: `invalid_event`.
    #[error(transparent)]
    Refused(InvalidCommit),
    /// The event id was committed before with other content. Edge: `invalid_event`; the client
    /// must use a new id.
    #[error("event id {id} was already used with different content")]
    IdReused {
        /// The reused id.
        id: EventId,
    },
    /// Over a rate limit. Edge: `rate_limited` with `retryAfterMs` (HTTP 429).
    #[error("rate limit exceeded; retry in {} ms", retry_after.as_millis())]
    RateLimited {
        /// How long until the bucket holds a token again.
        retry_after: Duration,
    },
    /// `$connect` of a user who already holds the most open connections allowed. Edge: HTTP
    /// 429 on the upgrade.
    #[error("too many open connections (at most {limit} per user)")]
    TooManyConnections {
        /// The per-user limit.
        limit: usize,
    },
    /// A store operation failed: unreachable or timed out (`unavailable`), an id already taken
    /// (`conflict`), or undecodable data (`internal`). Edge: that code; internals are logged.
    #[error("{}", store_message(.0))]
    Unavailable(#[source] StoreError),
    /// The archive lacks events between a snapshot (or the start) and its end, so the session's
    /// hot state cannot be rebuilt or a range cannot be read without a hole. Edge:
    /// `unavailable` (backfill closes such holes; nothing is rebuilt from a log with holes).
    #[error("session {session} is temporarily unavailable")]
    ArchiveHole {
        /// The session.
        session: SessionId,
        /// First missing sequence.
        from: Sequence,
        /// Last missing sequence (the next stored one minus one, or the end of the range).
        to: Sequence,
    },
    /// An archived event does not apply on top of the ones before it: stored data is corrupt.
    /// Edge: `internal` (logged with the session and sequence).
    #[error("archived event {sequence} of session {session} does not apply")]
    ArchiveCorrupt {
        /// The session.
        session: SessionId,
        /// The event that does not apply.
        sequence: Sequence,
        /// Why.
        #[source]
        source: ApplyError,
    },
    /// The session is fenced after an archive collision (its counter went back). Edge:
    /// `unavailable`; the hot state is rebuilt from the archive on the next use.
    #[error("session temporarily unavailable")]
    Fenced(#[source] ArchiveError),
    /// The task that ran a commit ended without an answer (it panicked). Edge: `internal`;
    /// whether the event was stored is unknown: resubmit it with the same id.
    #[error("the commit task ended without an answer")]
    CommitTask(#[source] tokio::task::JoinError),
}

impl ServiceError {
    /// The wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ServiceError::Frame(e) => e.code,
            ServiceError::Envelope(e) => e.code(),
            ServiceError::Auth(e) => e.code(),
            ServiceError::Forbidden(_) | ServiceError::TypeForbidden(_) => ErrorCode::Forbidden,
            ServiceError::NotSubscribed(_) => ErrorCode::NotSubscribed,
            ServiceError::SessionNotFound(_) => ErrorCode::SessionNotFound,
            ServiceError::SessionEnded(_) => ErrorCode::SessionEnded,
            ServiceError::NotFound(_) => ErrorCode::NotFound,
            ServiceError::BadRequest(_) => ErrorCode::InvalidMessage,
            ServiceError::Conflict { .. } | ServiceError::ConflictResolved(_) => {
                ErrorCode::Conflict
            }
            ServiceError::Changes(_)
            | ServiceError::Dice(_)
            | ServiceError::Refused(_)
            | ServiceError::IdReused { .. } => ErrorCode::InvalidEvent,
            ServiceError::RateLimited { .. } | ServiceError::TooManyConnections { .. } => {
                ErrorCode::RateLimited
            }
            ServiceError::Unavailable(e) => e.code(),
            ServiceError::ArchiveHole { .. } | ServiceError::Fenced(_) => ErrorCode::Unavailable,
            ServiceError::ArchiveCorrupt { .. }
            | ServiceError::CommitTask(_)
            | ServiceError::Randomness(_) => ErrorCode::Internal,
        }
    }

    /// The message sent to the client: the error's own text, except for internal faults.
    pub fn public_message(&self) -> String {
        match self.code() {
            ErrorCode::Internal => "internal error".to_owned(),
            _ => self.to_string(),
        }
    }

    /// `retryAfterMs` for a rate-limit refusal.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            ServiceError::RateLimited { retry_after } => Some(
                u64::try_from(retry_after.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            ),
            _ => None,
        }
    }
}

fn store_message(e: &StoreError) -> String {
    match e {
        StoreError::AlreadyExists(what) => format!("{what} already exists"),
        _ => "service temporarily unavailable".to_owned(),
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        ServiceError::Unavailable(e)
    }
}

impl From<CommitError> for ServiceError {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::Conflict { current } => ServiceError::Conflict { current },
            CommitError::Invalid(reason) => ServiceError::Refused(reason),
            CommitError::IdReused { id } => ServiceError::IdReused { id },
            CommitError::SessionEnded(s) => ServiceError::SessionEnded(s),
            CommitError::HotStateMissing(s) => {
                ServiceError::Unavailable(StoreError::HotStateMissing(s))
            }
            CommitError::Store(e) => ServiceError::Unavailable(e),
        }
    }
}
