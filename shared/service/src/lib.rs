//! Use cases of the Dungeon Lab event server: every decision, written against the ports, so
//! the Lambda functions and the local gateway only wire.
//!
//! # Layout
//! - [`access`]: the session → campaign lookup behind every membership check.
//! - [`audience`]: each session's connections, cached under its audience token, so a broadcast
//!   does not read the registry for every event.
//! - [`config`]: typed configuration from the environment.
//! - [`conflicts`]: the GM conflict report: blind-write races, escalations, resolution.
//! - [`auth`]: JWT verification (HS256 or RS256 via JWKS) and connect tickets.
//! - [`deps`]: the ports, authenticator and settings, built once per cold start.
//! - [`error`]: use-case errors and their wire codes.
//! - [`pipeline`]: commit → archive → confirm → broadcast, rehydration, contiguous reads.
//! - [`ws`]: the WebSocket use cases (connect, disconnect, subscribe, submit, replay, ping,
//!   unsubscribe, ephemeral).
//! - [`http`]: the GM HTTP API (one axum `Router`, shared by the `http-api` Lambda and the
//!   local gateway) and its OpenAPI document.
//! - [`lambda`]: API Gateway WebSocket events in, use cases out; the cold start shared by every
//!   function.
//! - [`maintenance`]: backfill, compaction, idle release and session end.
//! - [`metrics`]: CloudWatch Embedded Metric Format lines through `tracing`.
//! - [`secrets`] (feature `secrets`): AWS Secrets Manager as the source of secret settings.
//!
//! # Features
//! One per adapter (`redis`, `mongo`, `dynamo`, `apigw`) plus `secrets`, `auth` (this function
//! verifies tokens), `lambda` (the WebSocket entry) and `http` (the router); `full` for the
//! local gateway and the tests. A function enables only what its events use, so `ws-connect`
//! links no Redis or MongoDB driver; see `shared/service/Cargo.toml`.

pub mod access;
pub mod audience;
pub mod auth;
pub mod config;
pub mod conflicts;
pub mod deps;
pub mod error;
#[cfg(feature = "http")]
pub mod http;
pub mod lambda;
pub mod maintenance;
pub mod metrics;
pub mod pipeline;
#[cfg(feature = "secrets")]
pub mod secrets;
pub mod ws;

pub use deps::Deps;
pub use error::ServiceError;
