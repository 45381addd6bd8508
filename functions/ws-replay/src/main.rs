//! `replay`: contiguous batches from the archive and the hot log.
//!
//! Wiring only: the cold start and the handler are `dlab-service`'s, shared by every WebSocket
//! function. What this function links is decided by the features in its `Cargo.toml`: every adapter
//! but token verification.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    dlab_service::lambda::run_ws().await
}
