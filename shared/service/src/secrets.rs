//! AWS Secrets Manager as the [`SecretSource`] of a cold start: the Redis URL with its
//! password, the MongoDB URI and the HS256 secrets are not kept in plain environment variables
//! (anyone allowed `lambda:GetFunctionConfiguration` could read those); a function gets the
//! secrets' ARNs and the permission to read exactly those secrets.

use async_trait::async_trait;
use dlab_store::error::BoxError;

use crate::config::SecretSource;

/// Reads `SecretString`s with the function's own credentials.
#[derive(Debug, Clone)]
pub struct SecretsManager {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManager {
    /// A reader over the cold start's SDK configuration.
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self {
            client: aws_sdk_secretsmanager::Client::new(sdk),
        }
    }
}

#[async_trait]
impl SecretSource for SecretsManager {
    async fn secret(&self, arn: &str) -> Result<String, BoxError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| Box::new(e) as BoxError)?;
        out.secret_string()
            .map(str::to_owned)
            .ok_or_else(|| "the secret holds binary data; store the value as a SecretString".into())
    }
}
