//! `$connect`: verifies the `?token=` connect ticket and stores the connection (200 or 401).
//!
//! Wiring only: the cold start and the handler are `dlab-service`'s, shared by every WebSocket
//! function. What this function links is decided by the features in its `Cargo.toml`: verifies the
//! ticket and writes the connection registry (DynamoDB): no Redis, MongoDB or @connections.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    dlab_service::lambda::run_ws().await
}
