//! The Dungeon Lab client core: speaks the WebSocket protocol of PROTOCOL.md without doing any
//! I/O itself.
//!
//! Frames arrive unordered, duplicated or not at all; sockets drop every two hours; players
//! expect their action on screen before the server answers. This crate holds the decisions that
//! make that work (ordering, the optimistic queue, rebase, the reconnect policy) as a pure state
//! machine: the caller passes every input together with `now` (milliseconds) and gets back a
//! list of [`Output`]s (frames to send, sockets to open, HTTP loads, wake-up times, UI
//! notifications). There is no async runtime, no clock and no system randomness (an
//! [`Entropy`] is injected), so the same core runs under a tokio driver, in tests with a
//! scripted clock, and compiled to `wasm32-unknown-unknown` in the browser.
//!
//! # Layout
//! - [`session`]: [`SessionClient`], one session's ordering, catch-up, optimistic queue and
//!   outputs; [`ClientConfig`] with the bounds of every buffer.
//! - [`connection`]: [`Status`], the backoff ([`connection::backoff_delay`]), heartbeat and
//!   socket-age [`Timings`].
//! - [`plugin`]: [`EventDraft`], the [`Plugin`] trait, the [`Registry`] and the [`Rebaser`]
//!   hook called after a `conflict` (resubmit, escalate to the GM, or report).
//! - [`entropy`]: the [`Entropy`] trait, a deterministic generator for tests, event ids.
//! - [`dnd5e`]: the D&D 5e plugin ([`Dnd5e`]) and the trusted-dice [`Verifier`].
//! - `native` (feature `native`, default): the tokio driver, `native::LiveSession`, which
//!   does the core's I/O (WebSocket, HTTP, time). The browser build turns the feature off.
//! - `cli` (feature `native`): the `dlab` command line over the HTTP API.
//! - [`web`]: the browser's JSON view of the core ([`web::WebSession`]: outputs, the ViewModel,
//!   one-line event summaries); pure, compiled and tested on every target.
//! - `wasm` (feature `wasm`): the `wasm-bindgen` shell over [`web`] for the web console.

#[cfg(feature = "native")]
pub mod cli;
pub mod connection;
pub mod dnd5e;
pub mod entropy;
#[cfg(feature = "native")]
pub mod native;
pub mod plugin;
pub mod session;
#[cfg(feature = "wasm")]
pub mod wasm;
pub mod web;

pub use connection::{Status, Timings};
pub use dnd5e::{Dnd5e, Verdict, Verifier};
pub use entropy::{Entropy, SplitMix64};
pub use plugin::{
    Command, ConflictInfo, EventDraft, Plugin, PluginError, Rebase, Rebaser, Registry, ReportOnly,
};
pub use session::{
    ClientConfig, HttpRequest, Notification, Output, PendingStatus, PendingView, Rejection,
    SessionClient, SnapshotError, SubmitError, parse_loaded_state,
};
