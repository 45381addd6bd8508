//! A hello-world Lambda: the `cold-start` scenario's baseline. It starts the runtime and echoes
//! each event back, nothing else, so its start-up time is what `lambda_runtime` and the process
//! cost by themselves; the real functions are compared with it. Build it like them:
//! `cargo lambda build --release -p dlab-hello-lambda`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}
