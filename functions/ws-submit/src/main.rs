//! `submit`: validate, rate limit, atomic commit, archive, confirm and broadcast.
//!
//! Wiring only: every decision lives in `dlab-service`. Clients and stores are built once per
//! cold start; each invocation parses the API Gateway event and runs the use case.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use dlab_service::config::Config;
use dlab_service::lambda::{WsLambda, init_tracing};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let edge = WsLambda::from_config(Config::from_env()?).await?;
    let edge = &edge;
    run(service_fn(
        move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
            Ok::<_, Error>(edge.handle(event.payload).await)
        },
    ))
    .await
}
