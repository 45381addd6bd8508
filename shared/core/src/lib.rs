//! Pure domain of the Dungeon Lab event server.
//!
//! No I/O, no async runtime, no AWS types: everything here is data and rules, so it can be
//! tested exhaustively and shared by the server, the local gateway and client SDKs.
//!
//! # Layout
//! - [`ids`]: newtype identifiers and [`ids::Sequence`].
//! - [`codes`]: the wire error codes and their HTTP statuses.
//! - [`canonical`]: RFC 8785 canonical JSON and the `sha256:` checksum.
//! - [`dice`]: trusted dice: the formula grammar and bounds, the roll through an injected
//!   [`dice::DiceRng`], and the `core:dice:roll` payload (`result` written by the server).
//! - [`event`]: the `GameEvent` envelope, its validation and type permissions.
//! - [`paths`]: dotted leaf paths, flattening documents into leaves and back.
//! - [`changes`]: the state-change conventions of a payload (CAS, `inc`, blind write, force-set,
//!   actor added/removed), parsed once into a [`changes::ChangeSet`].
//! - [`state`]: `GameSessionState` and the projection `apply(state, event)`.
//! - [`actor`]: the unified `Actor`, compendium templates and the two creation workflows.
//! - [`conflict`]: the GM conflict report (blind writes racing on one path).
//! - [`compaction`]: the snapshot fold and its counts.
//! - [`protocol`]: client actions and server frames of the WebSocket contract.
//! - [`srd`]: the mapping of SRD 5.1 monsters, spells and equipment to compendium templates.

pub mod actor;
pub mod canonical;
pub mod changes;
pub mod codes;
pub mod compaction;
pub mod conflict;
pub mod dice;
pub mod event;
pub mod ids;
pub mod paths;
pub mod protocol;
pub mod srd;
pub mod state;
