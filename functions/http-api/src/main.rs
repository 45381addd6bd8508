//! The GM HTTP API behind an API Gateway HTTP API.
//!
//! Wiring only: every route lives in `dlab_service::http`. Routes that commit events (actor
//! added or removed) broadcast them to the WebSocket API's connections, so
//! `APIGW_MANAGEMENT_ENDPOINT` (`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`
//! of the WebSocket API) is required here: there is no WebSocket event to derive it from.

use std::sync::Arc;

use dlab_service::config::{APIGW_MANAGEMENT_ENDPOINT, Config};
use dlab_service::deps::Deps;
use dlab_service::http::{HttpSettings, router_with};
use dlab_service::lambda::init_tracing;
use dlab_store::apigw::ApiGatewayNotifier;
use dlab_store::error::ConfigError;
use lambda_http::{Error, run};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let config = Config::from_env()?;
    let settings = HttpSettings::from_env()?;
    let endpoint = config
        .apigw_endpoint
        .clone()
        .ok_or(ConfigError::Missing(APIGW_MANAGEMENT_ENDPOINT))?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let notifier = Arc::new(ApiGatewayNotifier::from_endpoint(&sdk, endpoint));
    let deps = Deps::from_config(&config, notifier).await?;
    run(router_with(deps, settings)).await
}
