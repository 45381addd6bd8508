//! Newtype identifiers.
//!
//! Ids cross every module boundary; a bare `String` would let a session id be passed where a
//! campaign id is expected. Each newtype serializes as its inner value, so the wire format is
//! unchanged.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// Wraps a string as this id.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }
    };
}

string_id!(
    /// A game session: the unit of ordering. Every session has its own gap-free sequence.
    SessionId
);
string_id!(
    /// A campaign: owns actors, members and sessions.
    CampaignId
);
string_id!(
    /// A campaign actor document (the MongoDB `actors` collection).
    ActorId
);
string_id!(
    /// An actor placed in a session (e.g. `encounter1_goblin1`); many instances may share an actor.
    InstanceId
);
string_id!(
    /// The client-chosen event id (a UUID); the idempotency key of a submit.
    EventId
);
string_id!(
    /// A user, as named by the `sub` claim of a verified token.
    UserId
);
string_id!(
    /// A WebSocket connection, as named by API Gateway (or the local gateway).
    ConnectionId
);
string_id!(
    /// A GM conflict report entry.
    ConflictId
);

impl InstanceId {
    /// The pseudo-instance that addresses session-level fields (`encounter.*`, `environment.*`,
    /// and the GM's `settings.*`).
    pub const SESSION: &'static str = "$session";

    /// The `$session` pseudo-instance.
    pub fn session() -> Self {
        Self(Self::SESSION.to_owned())
    }

    /// Whether this id addresses the session itself rather than an actor instance.
    pub fn is_session(&self) -> bool {
        self.0 == Self::SESSION
    }
}

/// A per-session event sequence number: 1, 2, 3, … with no gap. 0 means "nothing yet".
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Sequence(pub u64);

impl Sequence {
    /// The sequence before the first event.
    pub const ZERO: Sequence = Sequence(0);

    /// The raw number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The sequence right after this one (saturating: sequences never come near `u64::MAX`,
    /// and a client's number is bounded by the protocol's `MAX_SEQUENCE` before any
    /// arithmetic).
    pub fn next(self) -> Sequence {
        Sequence(self.0.saturating_add(1))
    }
}

impl fmt::Display for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u64> for Sequence {
    fn from(value: u64) -> Self {
        Sequence(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_serialize_as_their_inner_value() {
        let id = SessionId::new("s-1");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"s-1\"");
        assert_eq!(serde_json::to_string(&Sequence(7)).unwrap(), "7");
        let back: Sequence = serde_json::from_str("7").unwrap();
        assert_eq!(back, Sequence(7));
    }

    #[test]
    fn session_pseudo_instance_is_recognised() {
        assert!(InstanceId::new("$session").is_session());
        assert!(!InstanceId::new("goblin1").is_session());
        assert_eq!(Sequence(4).next(), Sequence(5));
    }
}
