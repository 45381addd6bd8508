//! `$default`: `ping`, `unsubscribe`, `ephemeral`, and `error {unknown_action}` for anything else.
//!
//! Wiring only: the cold start and the handler are `dlab-service`'s, shared by every WebSocket
//! function. What this function links is decided by the features in its `Cargo.toml`: every
//! adapter: ping reads heads (and may rebuild a session from MongoDB), ephemeral is rate limited in
//! Redis.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    dlab_service::lambda::run_ws().await
}
