//! The bench's one error type. A scenario that merely falls short (a delivery missing at its
//! deadline) is not an error: it is reported in the results. Errors are what stops a scenario
//! from measuring at all (a server that does not start, a refused HTTP call, a socket that cannot
//! open).

use std::path::PathBuf;
use std::time::Duration;

/// What stopped the bench.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A child process could not be started.
    #[error("cannot start {what} ({program}): {source}")]
    Spawn {
        what: &'static str,
        program: String,
        source: std::io::Error,
    },
    /// A child process did not print its ready line in time, or exited first.
    #[error("{what} did not become ready: {reason}")]
    NotReady { what: &'static str, reason: String },
    /// The gateway binary is not where the bench looked.
    #[error(
        "no local-gateway binary at {0} (build it with `cargo build --release -p local-gateway`, or pass --gateway PATH)"
    )]
    NoGateway(PathBuf),
    /// `npm ci` for the relay failed.
    #[error("npm ci in {dir} failed: {reason}")]
    Npm { dir: PathBuf, reason: String },
    /// An HTTP call to the gateway failed or answered an error.
    #[error("{method} {path}: {reason}")]
    Http {
        method: &'static str,
        path: String,
        reason: String,
    },
    /// A WebSocket could not be opened or written.
    #[error("WebSocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    /// A wait during set-up (not the measured phase) ran out.
    #[error("set-up timed out after {after:?}: {what}")]
    SetupTimeout { what: String, after: Duration },
    /// Reading /proc or writing results.
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// Results could not be serialized.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The histogram picture could not be drawn.
    #[error("plot {path}: {reason}")]
    Plot { path: PathBuf, reason: String },
    /// A store-level call failed or answered something unexpected.
    #[error("{what}: {reason}")]
    Store { what: String, reason: String },
    /// Ctrl-C.
    #[error("interrupted")]
    Interrupted,
}

/// The bench's result type.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;
