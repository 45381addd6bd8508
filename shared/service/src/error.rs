//! Errors of the use cases, and the one place that maps them to wire codes.

use std::collections::BTreeMap;

use dlab_core::codes::ErrorCode;
use dlab_core::event::{EnvelopeError, TypeForbidden};
use dlab_core::ids::SessionId;
use dlab_core::protocol::FrameError;
use dlab_store::{ArchiveError, CommitError, StoreError};
use serde_json::Value;
use thiserror::Error;

use crate::auth::AuthError;

/// A use case failed. [`ServiceError::code`] is the wire code; [`ServiceError::public_message`]
/// is safe to send (internals are logged, never sent).
#[derive(Debug, Error)]
pub enum ServiceError {
    /// The client frame is malformed or names an unknown action.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The event envelope is invalid.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The token was refused.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The event type is not allowed for this sender.
    #[error(transparent)]
    TypeForbidden(#[from] TypeForbidden),
    /// The connection is not subscribed to the session.
    #[error("not subscribed to session {0}")]
    NotSubscribed(SessionId),
    /// The session does not exist.
    #[error("session {0} not found")]
    SessionNotFound(SessionId),
    /// A resource does not exist (HTTP).
    #[error("{0}")]
    NotFound(String),
    /// The request body or parameters are invalid (HTTP).
    #[error("{0}")]
    BadRequest(String),
    /// A compare-and-set precondition failed.
    #[error("state changed since the event was made; rebase and resubmit with a new id")]
    Conflict {
        /// Current value of every path of the event.
        current: BTreeMap<String, Value>,
    },
    /// The event is invalid for the current state.
    #[error("{0}")]
    InvalidEvent(String),
    /// Over the rate limit.
    #[error("rate limit exceeded; slow down")]
    RateLimited,
    /// `$connect` of a user who already holds the most open connections allowed. Edge: HTTP
    /// 429 on the upgrade.
    #[error("too many open connections (at most {limit} per user)")]
    TooManyConnections {
        /// The per-user limit.
        limit: usize,
    },
    /// A store operation failed: unreachable or timed out (`unavailable`), an id already taken
    /// (`conflict`), or undecodable data (`internal`).
    #[error("{}", store_message(.0))]
    Unavailable(#[source] StoreError),
    /// The session is fenced after an archive collision; retry later.
    #[error("session temporarily unavailable")]
    Fenced(#[source] ArchiveError),
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
            ServiceError::NotFound(_) => ErrorCode::NotFound,
            ServiceError::BadRequest(_) => ErrorCode::InvalidMessage,
            ServiceError::Conflict { .. } => ErrorCode::Conflict,
            ServiceError::InvalidEvent(_) => ErrorCode::InvalidEvent,
            ServiceError::RateLimited | ServiceError::TooManyConnections { .. } => {
                ErrorCode::RateLimited
            }
            ServiceError::Unavailable(e) => e.code(),
            ServiceError::Fenced(_) => ErrorCode::Unavailable,
        }
    }

    /// The message sent to the client: the error's own text, except for internal faults.
    pub fn public_message(&self) -> String {
        match self.code() {
            ErrorCode::Internal => "internal error".to_owned(),
            _ => self.to_string(),
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
            CommitError::Invalid(msg) => ServiceError::InvalidEvent(msg),
            CommitError::HotStateMissing(s) => {
                ServiceError::Unavailable(StoreError::HotStateMissing(s))
            }
            CommitError::Store(e) => ServiceError::Unavailable(e),
        }
    }
}
