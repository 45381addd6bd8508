//! Errors of the ports. Each variant's doc says what the edge does with it.

use std::collections::BTreeMap;

use dlab_core::codes::ErrorCode;
use dlab_core::ids::{EventId, InstanceId, Sequence, SessionId};
use serde_json::Value;
use thiserror::Error;

/// A boxed error from a backend driver, kept as the `source`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure of a store operation.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The backend could not be reached or failed. Edge: `unavailable`, retryable.
    #[error("{backend} unavailable during {operation}")]
    Unavailable {
        /// Which backend (`redis`, `mongodb`, `dynamodb`).
        backend: &'static str,
        /// What was being done.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// Stored data could not be decoded. Edge: `internal` (logged).
    #[error("corrupt {what} in {backend}")]
    Corrupt {
        /// Which backend.
        backend: &'static str,
        /// What was being decoded.
        what: &'static str,
        /// The decoding error.
        #[source]
        source: BoxError,
    },
    /// A read starts below the hot window. Edge: read the archive instead.
    #[error("sequence range starts below the hot window's floor {floor} of session {session}")]
    BelowFloor {
        /// The session.
        session: SessionId,
        /// Lowest sequence still in the hot window.
        floor: Sequence,
    },
    /// The session's hot state is missing. Edge: rehydrate.
    #[error("hot state of session {0} is missing")]
    HotStateMissing(SessionId),
    /// A create found the id taken. Edge: `invalid_message` / 409.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The port is not built into this process (each Lambda links only the adapters its events
    /// need). Edge: `internal`, logged: an event reached a function that cannot serve it, which
    /// is a deployment error.
    #[error("the {port} port is not built into this function")]
    NotBuilt {
        /// Which port.
        port: &'static str,
    },
}

impl StoreError {
    /// Wraps a backend error as [`StoreError::Unavailable`].
    pub fn unavailable(
        backend: &'static str,
        operation: &'static str,
        source: impl Into<BoxError>,
    ) -> Self {
        StoreError::Unavailable {
            backend,
            operation,
            source: source.into(),
        }
    }

    /// Wraps a decoding error as [`StoreError::Corrupt`].
    pub fn corrupt(backend: &'static str, what: &'static str, source: impl Into<BoxError>) -> Self {
        StoreError::Corrupt {
            backend,
            what,
            source: source.into(),
        }
    }

    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::Unavailable { .. } | StoreError::HotStateMissing(_) => {
                ErrorCode::Unavailable
            }
            StoreError::AlreadyExists(_) => ErrorCode::Conflict,
            StoreError::Corrupt { .. }
            | StoreError::BelowFloor { .. }
            | StoreError::NotBuilt { .. } => ErrorCode::Internal,
        }
    }
}

/// Why a commit did not happen. Nothing was stored in every case.
#[derive(Debug, Error)]
pub enum CommitError {
    /// A compare-and-set precondition failed. Edge: `event:error {code: conflict, current}`.
    #[error("compare-and-set precondition failed")]
    Conflict {
        /// The current value of every path of the event.
        current: BTreeMap<String, Value>,
    },
    /// The event id was already committed in this session with other content (a client bug
    /// or a forged id: a retry carries the same content). Edge: `invalid_event`.
    #[error("event id {id} was already used with different content")]
    IdReused {
        /// The reused id.
        id: EventId,
    },
    /// The event cannot apply to the current state. Edge: `invalid_event`, with the reason's
    /// message.
    #[error(transparent)]
    Invalid(#[from] InvalidCommit),
    /// The session's hot state is missing (wiped or failed-over Redis). Edge: rehydrate from
    /// snapshot + archive, then retry.
    #[error("hot state of session {0} is missing")]
    HotStateMissing(SessionId),
    /// The GM ended the session: nothing more is committed. Edge: `session_ended`.
    #[error("session {0} has ended")]
    SessionEnded(SessionId),
    /// The backend failed. Edge: `unavailable`.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CommitError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            CommitError::Conflict { .. } => ErrorCode::Conflict,
            CommitError::IdReused { .. } | CommitError::Invalid(_) => ErrorCode::InvalidEvent,
            CommitError::HotStateMissing(_) => ErrorCode::Unavailable,
            CommitError::SessionEnded(_) => ErrorCode::SessionEnded,
            CommitError::Store(e) => e.code(),
        }
    }
}

/// Why an event's changes cannot apply to the session's current state. Every adapter gives the
/// same reason for the same event and state (the contract suite checks it). Edge:
/// `invalid_event` with this message; the client must not retry the event unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidCommit {
    /// The event targets (updates, force-sets or removes) an instance that is not in the
    /// session.
    #[error("instance {instance} is not in the session")]
    InstanceMissing {
        /// The missing instance.
        instance: InstanceId,
    },
    /// `core:session:actor_added` names an instance that is already in the session.
    #[error("instance {instance} is already in the session")]
    InstanceExists {
        /// The taken instance id.
        instance: InstanceId,
    },
    /// An `inc` targets a path whose current value is not an integer within ±(2^53 − 1).
    #[error("inc on {path}: the current value is not an integer")]
    IncNotInteger {
        /// The path of the `inc`.
        path: String,
    },
    /// An `inc` would leave ±(2^53 − 1), the integers every client decodes exactly.
    #[error("inc on {path}: result out of range")]
    IncOutOfRange {
        /// The path of the `inc`.
        path: String,
    },
}

/// A failure of the archive.
#[derive(Debug, Error)]
pub enum ArchiveError {
    /// Another event id already holds this `(sessionId, sequence)`: the sequence counter went
    /// back. Edge: fence the session (`unavailable`), log an error, rehydrate from the archive.
    #[error("sequence {sequence} of session {session} is already held by event {existing}")]
    SequenceCollision {
        /// The session.
        session: SessionId,
        /// The contested sequence.
        sequence: Sequence,
        /// The id already stored there.
        existing: String,
    },
    /// The same event id is archived under another sequence. Edge: treated like a collision.
    #[error("event {id} of session {session} is archived at sequence {existing}")]
    IdCollision {
        /// The session.
        session: SessionId,
        /// The event id.
        id: String,
        /// Where it is stored.
        existing: Sequence,
    },
    /// The unique indexes that fence duplicates are missing (the `migrate` step has not run), so
    /// the archive refuses to write. Edge: logged as an error; the commit stands and backfill
    /// copies the event once the indexes exist.
    #[error("unique indexes {missing:?} of {collection} are missing; run the migrate step")]
    IndexesMissing {
        /// The collection.
        collection: &'static str,
        /// The missing indexes, as `field+field`.
        missing: Vec<String>,
    },
    /// The backend failed or timed out. Edge: log; the commit stands and backfill copies it.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A failure to post to a connection (not `Gone`, which is an outcome).
#[derive(Debug, Error)]
pub enum NotifyError {
    /// The management API failed. Edge: log; the event is committed and replayable.
    #[error("posting to connection failed")]
    Failed(#[source] BoxError),
}

/// A configuration problem at start-up: the one configuration error of the workspace (the
/// store's adapter configs, the service's `Config`, the HTTP settings and the local gateway all
/// report through it). Edge: the process refuses to start (a Lambda's cold start fails, the
/// local gateway exits 1), naming the variable.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A required environment variable is not set.
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    /// A variable is set to something unusable.
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// A secret named by `<name>_SECRET_ARN` could not be read from AWS Secrets Manager.
    #[error("the secret for {name} could not be read from Secrets Manager")]
    Secret {
        /// The variable the secret stands for (`REDIS_URL`, `JWT_SECRET`, …).
        name: &'static str,
        /// The SDK's error.
        #[source]
        source: BoxError,
    },
}

/// Displays an error with its whole `source()` chain (`outer: cause: root cause`), so a log
/// line says why, not only what: an SDK's "dispatch failure" alone hides the timeout or the
/// refused connection underneath.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod chain_tests {
    use super::*;

    #[test]
    fn chain_shows_every_cause() {
        let root = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
        let err = NotifyError::Failed(Box::new(root));
        assert_eq!(
            Chain(&err).to_string(),
            "posting to connection failed: connect timed out"
        );
    }
}
