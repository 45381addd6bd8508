//! Contract bodies: each takes a factory for a fresh adapter and checks the port's rules.

pub mod archive;
pub mod campaign;
pub mod event_log;
pub mod notifier;
pub mod rate_limiter;
pub mod registry;
pub mod snapshot;
