//! The GM HTTP API behind an API Gateway HTTP API.
//!
//! Wiring only: every route lives in `dlab_service::http`, and so does the cold start
//! (`run_lambda`). It links every adapter and verifies tokens (see its `Cargo.toml` features).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    dlab_service::http::run_lambda().await
}
