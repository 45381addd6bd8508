//! The API Gateway `@connections` [`Notifier`]: posts frames to WebSocket clients through the
//! management API (`POST /@connections/{id}`).
//!
//! A connection that is closed, unknown, or still inside its `$connect` handler answers
//! `410 GoneException`; that is the outcome [`PostOutcome::Gone`], not an error. The SDK
//! decides the error kind from the `x-amzn-errortype` response header (else the body's `code`
//! or `__type`), so a 410 without that header is also treated as gone.

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::config::http::HttpResponse;
use aws_sdk_apigatewaymanagement::error::SdkError;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use dlab_core::ids::ConnectionId;
use tracing::debug;

use crate::error::NotifyError;
use crate::ports::{Notifier, PostOutcome};

/// Posts through API Gateway's management API.
#[derive(Debug, Clone)]
pub struct ApiGatewayNotifier {
    client: Client,
}

impl ApiGatewayNotifier {
    /// A notifier using a ready client (its endpoint must be the API's stage URL).
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// A notifier for `endpoint` (`https://{domainName}/{stage}` on AWS, the local gateway's
    /// management URL locally), with region,
    /// credentials and retry settings from `sdk_config`. The endpoint overrides any
    /// `AWS_ENDPOINT_URL` in the shared config.
    pub fn from_endpoint(sdk_config: &aws_config::SdkConfig, endpoint: impl Into<String>) -> Self {
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk_config)
            .endpoint_url(endpoint)
            .build();
        Self::new(Client::from_conf(config))
    }

    /// The underlying client (for `GetConnection` / `DeleteConnection`).
    pub fn client(&self) -> &Client {
        &self.client
    }
}

#[async_trait]
impl Notifier for ApiGatewayNotifier {
    async fn post(
        &self,
        connection: &ConnectionId,
        data: &[u8],
    ) -> Result<PostOutcome, NotifyError> {
        let sent = self
            .client
            .post_to_connection()
            .connection_id(connection.as_str())
            .data(Blob::new(data))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(PostOutcome::Delivered),
            Err(e) if is_gone(&e) => {
                debug!(connection = %connection, "connection gone");
                Ok(PostOutcome::Gone)
            }
            Err(e) => Err(NotifyError::Failed(Box::new(e))),
        }
    }
}

/// `GoneException` as the SDK parsed it, or a bare 410 status.
fn is_gone(error: &SdkError<PostToConnectionError, HttpResponse>) -> bool {
    error
        .as_service_error()
        .is_some_and(PostToConnectionError::is_gone_exception)
        || error
            .raw_response()
            .is_some_and(|r| r.status().as_u16() == 410)
}
