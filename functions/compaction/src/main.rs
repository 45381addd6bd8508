//! The scheduled maintenance of game sessions: backfill of the archive, compaction into
//! snapshots with the hot log trimmed, idle release and retention (`dlab_service::maintenance`).
//!
//! Wiring only. It links the Redis and MongoDB adapters and Secrets Manager; no DynamoDB and no
//! `@connections` (it talks to no client).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    dlab_service::maintenance::run_lambda().await
}
