//! `$disconnect`: removes the connection and its subscriptions, and tells each session.
//!
//! Wiring only: the cold start and the handler are `dlab-service`'s, shared by every WebSocket
//! function. What this function links is decided by the features in its `Cargo.toml`: drops the
//! connection from the registry and posts presence: no Redis or MongoDB.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    dlab_service::lambda::run_ws().await
}
