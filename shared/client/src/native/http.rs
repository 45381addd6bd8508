//! The few HTTP calls the driver makes (PROTOCOL.md, "HTTP API"): the connect ticket, state
//! and snapshot loads, escalations, and a page of events. One place maps the server's
//! `{"error": {code, message}}` bodies to [`DriverError`].

use std::time::Duration;

use dlab_core::codes::ErrorCode;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::DriverError;

/// The HTTP API of one server, as one user (bearer token).
#[derive(Clone)]
pub(crate) struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Api").field("base", &self.base).finish()
    }
}

/// Whether `url` names this machine (`localhost` or a loopback address): a proxy from the
/// environment could not reach it, so such an endpoint is always called directly.
pub(crate) fn is_loopback(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    match url.host_str() {
        Some(host) if host.eq_ignore_ascii_case("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

impl Api {
    /// A client for `base` (e.g. `https://api.example.org`) with a per-request `timeout`.
    pub(crate) fn new(base: &str, token: &str, timeout: Duration) -> Result<Self, DriverError> {
        let mut builder = reqwest::Client::builder().timeout(timeout);
        if is_loopback(base) {
            builder = builder.no_proxy();
        }
        let client = builder.build().map_err(|source| DriverError::Unreachable {
            url: base.to_owned(),
            source,
        })?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        })
    }

    /// One request; the body of a 2xx answer as text, any other status as its error.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<String, DriverError> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .client
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let unreachable = |source| DriverError::Unreachable {
            url: url.clone(),
            source,
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.map_err(unreachable)?;
        if status.is_success() {
            return Ok(text);
        }
        Err(status_error(&method, path, status, &text))
    }

    /// A 2xx JSON body.
    pub(crate) async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, DriverError> {
        let text = self.call(method, path, body).await?;
        serde_json::from_str(&text).map_err(|source| DriverError::Body {
            path: path.to_owned(),
            source,
        })
    }

    /// `POST /connect-ticket`: a short-lived, single-use ticket for the socket's `?token=`.
    pub(crate) async fn connect_ticket(&self) -> Result<String, DriverError> {
        let body = self.json(Method::POST, "/connect-ticket", None).await?;
        body.get("ticket")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| DriverError::Http {
                status: 200,
                path: "/connect-ticket".to_owned(),
                code: None,
                message: "the answer has no ticket".to_owned(),
            })
    }
}

/// The error of a non-2xx answer: 401 and 403 get their own variants (a bad token or a user
/// outside the campaign is not worth retrying), everything else keeps status and code.
fn status_error(method: &Method, path: &str, status: StatusCode, text: &str) -> DriverError {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let error = &body["error"];
    let code = error
        .get("code")
        .cloned()
        .and_then(|c| serde_json::from_value::<ErrorCode>(c).ok());
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    tracing::debug!(%method, path, status = status.as_u16(), ?code, "HTTP request refused");
    match status {
        StatusCode::UNAUTHORIZED => DriverError::Unauthorized { message },
        StatusCode::FORBIDDEN => DriverError::Forbidden { message },
        _ => DriverError::Http {
            status: status.as_u16(),
            path: path.to_owned(),
            code,
            message,
        },
    }
}
