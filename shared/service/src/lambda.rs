//! The Lambda edge: API Gateway WebSocket events in, use cases out, and the cold start every
//! function shares.
//!
//! The raw event (all `Option`s) becomes a typed [`WsEvent`] in one function; the handler then
//! answers 200 (or 401 / 429 on a refused `$connect`). Clients hear from the server only through
//! `@connections` posts. The management endpoint is `APIGW_MANAGEMENT_ENDPOINT` when set, else
//! `https://{domainName}/{stage}` from the event; one client per endpoint is kept for the
//! life of the execution environment.
//!
//! [`cold_start`] is the one start-up of every function: the AWS SDK configuration loaded once,
//! the secrets named by `*_SECRET_ARN` read, the configuration of this build's features parsed,
//! and the ports built without contacting any backend. The six WebSocket functions share
//! [`run_ws`] as their whole `main`; they differ only in the features their `Cargo.toml`
//! enables.

#[cfg(feature = "apigw")]
use std::collections::HashMap;
use std::sync::Arc;
#[cfg(feature = "apigw")]
use std::sync::Mutex;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use dlab_core::ids::ConnectionId;
use dlab_store::Notifier;
#[cfg(feature = "apigw")]
use dlab_store::apigw::ApiGatewayNotifier;
use thiserror::Error;
use tracing::{info, warn};

use crate::config::Config;
use crate::deps::Deps;
use crate::error::ServiceError;
use crate::ws;

/// What a WebSocket route asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsRoute {
    /// `$connect`, with the `?token=` value.
    Connect {
        /// The connect ticket or token.
        token: Option<String>,
    },
    /// `$disconnect`.
    Disconnect,
    /// A message on any other route.
    Message {
        /// The frame's text.
        body: String,
    },
}

/// A parsed API Gateway WebSocket event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsEvent {
    /// The connection.
    pub connection_id: ConnectionId,
    /// What it asks.
    pub route: WsRoute,
    /// `requestContext.domainName`, for the management endpoint.
    pub domain_name: Option<String>,
    /// `requestContext.stage`.
    pub stage: Option<String>,
}

impl WsEvent {
    /// `https://{domainName}/{stage}`, when both are known.
    pub fn management_endpoint(&self) -> Option<String> {
        Some(format!(
            "https://{}/{}",
            self.domain_name.as_deref()?,
            self.stage.as_deref()?
        ))
    }
}

/// The event cannot be handled at all (not a WebSocket event).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EdgeError {
    /// `requestContext.connectionId` is missing.
    #[error("requestContext.connectionId is missing")]
    NoConnectionId,
    /// `requestContext.eventType` is missing or unknown.
    #[error("requestContext.eventType is missing or unknown")]
    UnknownEventType,
}

/// Parses the raw event, once.
pub fn parse_ws_event(request: &ApiGatewayWebsocketProxyRequest) -> Result<WsEvent, EdgeError> {
    let ctx = &request.request_context;
    let connection_id = ctx
        .connection_id
        .clone()
        .filter(|c| !c.is_empty())
        .map(ConnectionId::new)
        .ok_or(EdgeError::NoConnectionId)?;
    let route = match ctx.event_type.as_deref() {
        Some("CONNECT") => WsRoute::Connect {
            token: request
                .query_string_parameters
                .first("token")
                .map(str::to_owned),
        },
        Some("DISCONNECT") => WsRoute::Disconnect,
        Some("MESSAGE") => WsRoute::Message {
            body: request.body.clone().unwrap_or_default(),
        },
        _ => return Err(EdgeError::UnknownEventType),
    };
    Ok(WsEvent {
        connection_id,
        route,
        domain_name: ctx.domain_name.clone(),
        stage: ctx.stage.clone(),
    })
}

/// Runs the use case of a parsed event; returns the HTTP status for API Gateway.
pub async fn handle(deps: &Deps, event: WsEvent) -> u16 {
    match event.route {
        WsRoute::Connect { token } => {
            match ws::connect(deps, &event.connection_id, token.as_deref()).await {
                Ok(_) => 200,
                Err(ServiceError::Auth(e)) => {
                    info!(connection = %event.connection_id, reason = %e, "connect refused");
                    401
                }
                Err(ServiceError::TooManyConnections { .. }) => 429,
                Err(e) => {
                    warn!(connection = %event.connection_id, error = %e, "connect failed");
                    500
                }
            }
        }
        WsRoute::Disconnect => {
            if let Err(e) = ws::disconnect(deps, &event.connection_id).await {
                warn!(connection = %event.connection_id, error = %e, "disconnect failed");
            }
            200
        }
        WsRoute::Message { body } => {
            ws::message(deps, &event.connection_id, &body).await;
            200
        }
    }
}

/// A response with only a status code (API Gateway ignores route response bodies here).
pub fn response(status: u16) -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = i64::from(status);
    if status >= 400 {
        r.body = Some(Body::Text(String::new()));
    }
    r
}

/// Where a handler's posts go.
enum Notifiers {
    /// Always this notifier (tests, the local gateway, a function that posts nothing).
    Fixed,
    /// An API Gateway management client per endpoint (pinned, or derived from the event).
    #[cfg(feature = "apigw")]
    PerEndpoint {
        pinned: Option<String>,
        sdk: Box<aws_config::SdkConfig>,
        cache: Mutex<HashMap<String, Arc<dyn Notifier>>>,
    },
}

/// Why a function could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// A setting is missing or unusable, or a secret could not be read.
    #[error("invalid configuration")]
    Config(#[from] crate::config::ConfigError),
    /// A client could not be built (an unparsable connection string).
    #[error("a store client could not be built")]
    Store(#[from] dlab_store::StoreError),
}

/// Everything a function has after its cold start.
pub struct ColdStart {
    /// The configuration of this build's features.
    pub config: Config,
    /// The AWS SDK configuration, loaded once.
    pub sdk: aws_config::SdkConfig,
}

/// The shared cold start: the SDK configuration loaded once, this build's secrets read from
/// Secrets Manager when their ARNs are set (feature `secrets`), the configuration parsed.
pub async fn cold_start() -> Result<ColdStart, StartError> {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    #[cfg(feature = "secrets")]
    let reader = crate::secrets::SecretsManager::new(&sdk);
    #[cfg(feature = "secrets")]
    let secrets: Option<&dyn crate::config::SecretSource> = Some(&reader);
    #[cfg(not(feature = "secrets"))]
    let secrets: Option<&dyn crate::config::SecretSource> = None;
    let config = Config::load(secrets).await?;
    Ok(ColdStart { config, sdk })
}

/// The Lambda side of the WebSocket API: dependencies built once, a notifier per endpoint.
pub struct WsLambda {
    deps: Deps,
    notifiers: Notifiers,
}

impl WsLambda {
    /// Builds every port of this build from the cold start, connecting to nothing yet.
    pub async fn from_cold_start(start: ColdStart) -> Result<Self, StartError> {
        let ColdStart { config, sdk } = start;
        #[cfg(feature = "apigw")]
        {
            let endpoint = config
                .apigw_endpoint
                .clone()
                .unwrap_or_else(|| "https://localhost".to_owned());
            let initial: Arc<dyn Notifier> =
                Arc::new(ApiGatewayNotifier::from_endpoint(&sdk, endpoint));
            let deps = Deps::from_config(&config, &sdk, initial).await?;
            Ok(Self {
                deps,
                notifiers: Notifiers::PerEndpoint {
                    pinned: config.apigw_endpoint,
                    sdk: Box::new(sdk),
                    cache: Mutex::new(HashMap::new()),
                },
            })
        }
        #[cfg(not(feature = "apigw"))]
        {
            let absent: Arc<dyn Notifier> =
                Arc::new(dlab_store::absent::Absent::new("@connections notifier"));
            let deps = Deps::from_config(&config, &sdk, absent).await?;
            Ok(Self {
                deps,
                notifiers: Notifiers::Fixed,
            })
        }
    }

    /// Wraps ready dependencies whose notifier is used for every post.
    pub fn with_deps(deps: Deps) -> Self {
        Self {
            deps,
            notifiers: Notifiers::Fixed,
        }
    }

    /// The dependencies.
    pub fn deps(&self) -> &Deps {
        &self.deps
    }

    fn deps_for(&self, event: &WsEvent) -> Deps {
        #[cfg_attr(not(feature = "apigw"), allow(unused_mut))]
        let mut deps = self.deps.clone();
        #[cfg(feature = "apigw")]
        if let Notifiers::PerEndpoint { pinned, sdk, cache } = &self.notifiers
            && let Some(endpoint) = pinned.clone().or_else(|| event.management_endpoint())
        {
            let mut map = cache.lock().expect("notifier cache");
            deps.notifier = map
                .entry(endpoint.clone())
                .or_insert_with(|| Arc::new(ApiGatewayNotifier::from_endpoint(sdk, endpoint)))
                .clone();
        }
        #[cfg(not(feature = "apigw"))]
        let _ = (event, &self.notifiers);
        deps
    }

    /// Handles one raw event.
    pub async fn handle(
        &self,
        request: ApiGatewayWebsocketProxyRequest,
    ) -> ApiGatewayProxyResponse {
        let event = match parse_ws_event(&request) {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "not a WebSocket event");
                return response(400);
            }
        };
        let deps = self.deps_for(&event);
        response(handle(&deps, event).await)
    }
}

/// The whole `main` of a WebSocket function: tracing, the cold start, then one handler per
/// event until the runtime stops.
#[cfg(feature = "lambda")]
pub async fn run_ws() -> Result<(), lambda_runtime::Error> {
    use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
    use lambda_runtime::{LambdaEvent, service_fn};
    init_tracing();
    let edge = WsLambda::from_cold_start(cold_start().await?).await?;
    let edge = &edge;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
            Ok::<_, lambda_runtime::Error>(edge.handle(event.payload).await)
        },
    ))
    .await
}

/// Structured JSON logs for Lambda (CloudWatch), level from `RUST_LOG` (default `info`).
pub fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer, filter};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Metric events are EMF lines of their own (see `metrics`), never ordinary log lines.
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(false)
        .without_time()
        .with_filter(filter::filter_fn(|m| m.target() != crate::metrics::TARGET))
        .with_filter(filter);
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(crate::metrics::EmfLayer)
        .try_init();
}
